//! C2SP signed notes with Ed25519 signatures.
//!
//! A signed note is a text ending in a newline, a blank line, and one or more
//! signature lines `— <key name> base64(key ID || signature)`. This module
//! signs texts with Ed25519 keys ([`Signer`]) and opens notes against a set of
//! trusted Ed25519 keys ([`Verifier`]). Signatures by keys that are not
//! trusted (including other algorithms) are kept but never trusted, as the
//! spec requires. It does not interpret the text; see [`crate::checkpoint`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// The signature type identifier byte for Ed25519 in key IDs and verifier keys.
pub const ALG_ED25519: u8 = 0x01;
/// The most signature lines a note may carry; the spec requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;
/// The prefix of every signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Errors from creating keys, signing and opening notes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains a Unicode space or a plus sign.
    #[error("key name {name:?} is invalid: it must be non-empty and contain no spaces or '+'")]
    InvalidKeyName {
        /// The offending name.
        name: String,
    },
    /// A verifier key string is not `name+hash+base64key`.
    #[error("verifier key is malformed: {reason}")]
    MalformedVerifierKey {
        /// What was wrong.
        reason: &'static str,
    },
    /// A verifier key names an algorithm other than Ed25519.
    #[error("verifier key uses signature type {alg:#04x}, only Ed25519 (0x01) is supported")]
    UnsupportedAlgorithm {
        /// The algorithm byte.
        alg: u8,
    },
    /// The key hash in a verifier key does not match its name and public key.
    #[error("verifier key hash {claimed:08x} does not match the computed {computed:08x}")]
    KeyHashMismatch {
        /// The hash written in the verifier key.
        claimed: u32,
        /// The hash computed from the name and public key.
        computed: u32,
    },
    /// The Ed25519 public key bytes are not a valid point.
    #[error("verifier key has an invalid Ed25519 public key")]
    InvalidPublicKey,
    /// Note text to be signed is empty or does not end in a newline.
    #[error("note text must be non-empty and end with a newline")]
    TextNotNewlineTerminated,
    /// The note is not valid UTF-8.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// The note contains an ASCII control character other than newline.
    #[error("note contains control character {byte:#04x} at byte offset {offset}")]
    ControlCharacter {
        /// The character's value.
        byte: u8,
        /// Its byte offset in the note.
        offset: usize,
    },
    /// No signer was given to [`sign_note`].
    #[error("no signers given")]
    NoSigners,
    /// Two signers share both key name and key ID.
    #[error("duplicate signer {name}+{key_id:08x}")]
    DuplicateSigner {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// The note does not end with a newline.
    #[error("malformed note: does not end with a newline")]
    MissingFinalNewline,
    /// The note has no blank line separating the text from signatures.
    #[error("malformed note: no blank line before the signatures")]
    MissingSignatureSeparator,
    /// A signature line is malformed.
    #[error("malformed note: signature line {line}: {reason}")]
    MalformedSignatureLine {
        /// The 1-based number of the signature line.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The note has more signature lines than [`MAX_SIGNATURES`].
    #[error("note has {count} signature lines, more than the limit of {max}")]
    TooManySignatures {
        /// Number of signature lines.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two signatures from the same known key.
    #[error("note has two signatures by known key {name}+{key_id:08x}")]
    DuplicateSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// Two trusted verifiers share key name and key ID but have different keys.
    #[error("two trusted verifiers share the name and ID {name}+{key_id:08x}")]
    AmbiguousVerifier {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// A signature by a trusted key does not verify.
    #[error("signature by trusted key {name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature on the note is by a trusted key.
    #[error("note is not signed by any trusted key")]
    NoTrustedSignature,
    /// The signing library refused to sign.
    #[error("Ed25519 signing failed")]
    SigningFailed,
}

/// Checks a key name: non-empty, no Unicode white space, no '+'.
fn validate_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::InvalidKeyName { name: name.into() });
    }
    Ok(())
}

/// The recommended key ID: the first four bytes, big-endian, of
/// SHA-256(name || 0x0A || signature type || public key).
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// An Ed25519 note signing key with its name.
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    // The secret key is deliberately left out so it never lands in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a key name and a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        validate_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.into(),
            key_id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public verifier key `name+hash+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(key))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    fn sign(&self, text: &str) -> Result<Vec<u8>, NoteError> {
        let sig = self
            .key
            .try_sign(text.as_bytes())
            .map_err(|_| NoteError::SigningFailed)?;
        let mut out = Vec::with_capacity(68);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A trusted Ed25519 note verification key with its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Parses a verifier key `name+hash+base64(0x01 || 32-byte public key)`.
    ///
    /// The hash must be 8 hexadecimal digits and must equal the key ID
    /// computed from the name and key, so a typo cannot silently create a
    /// verifier that matches no signature.
    pub fn from_vkey(vkey: &str) -> Result<Verifier, NoteError> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key name",
            })?;
        let (hash_hex, key_b64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key hash",
            })?;
        validate_name(name)?;
        if hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::MalformedVerifierKey {
                reason: "key hash is not 8 hexadecimal digits",
            });
        }
        let claimed =
            u32::from_str_radix(hash_hex, 16).map_err(|_| NoteError::MalformedVerifierKey {
                reason: "key hash is not 8 hexadecimal digits",
            })?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| NoteError::MalformedVerifierKey {
                reason: "public key is not valid base64",
            })?;
        let (&alg, pk) = key.split_first().ok_or(NoteError::MalformedVerifierKey {
            reason: "public key is empty",
        })?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm { alg });
        }
        let pk: [u8; 32] = pk.try_into().map_err(|_| NoteError::MalformedVerifierKey {
            reason: "Ed25519 public key is not 32 bytes",
        })?;
        let computed = key_id(name, ALG_ED25519, &pk);
        if computed != claimed {
            return Err(NoteError::KeyHashMismatch { claimed, computed });
        }
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| NoteError::InvalidPublicKey)?;
        Ok(Verifier {
            name: name.into(),
            key_id: computed,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The verifier key string this verifier was (or could have been) parsed from.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(key))
    }

    fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        let sig = Signature::from_bytes(&bytes);
        self.key.verify_strict(text, &sig).is_ok()
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID (first four bytes of the decoded signature, big-endian).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// An opened note: its text and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures by trusted keys, all verified, in note order.
    pub signatures: Vec<NoteSignature>,
    /// Signatures by keys not among the verifiers: not checked, not trusted.
    pub unverified: Vec<NoteSignature>,
}

/// Checks the whole-note character rules: no ASCII control characters but newline.
fn check_characters(text: &str) -> Result<(), NoteError> {
    if let Some((offset, &byte)) = text
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| **b < 0x20 && **b != b'\n')
    {
        return Err(NoteError::ControlCharacter { byte, offset });
    }
    Ok(())
}

/// Signs `text` with each signer and returns the signed note.
///
/// The text must be non-empty, end with a newline and contain no ASCII
/// control characters other than newline. It may contain blank lines: the
/// signatures are separated by the last blank line of the note.
pub fn sign_note(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    check_characters(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSigners);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count: signers.len(),
            max: MAX_SIGNATURES,
        });
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 100);
    out.push_str(text);
    out.push('\n');
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for s in signers {
        let id = (s.name(), s.key_id());
        if seen.contains(&id) {
            return Err(NoteError::DuplicateSigner {
                name: s.name().into(),
                key_id: s.key_id(),
            });
        }
        seen.push(id);
        let sig = s.sign(text)?;
        out.push_str(SIG_PREFIX);
        out.push_str(s.name());
        out.push(' ');
        out.push_str(&STANDARD.encode(sig));
        out.push('\n');
    }
    Ok(out)
}

/// Parses one signature line into a [`NoteSignature`].
fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let bad = |reason| NoteError::MalformedSignatureLine {
        line: number,
        reason,
    };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(bad("does not start with an em dash and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(bad("no space between key name and signature"))?;
    if validate_name(name).is_err() {
        return Err(bad("invalid key name"));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| bad("signature is not valid base64"))?;
    let Some((id, sig)) = raw.split_first_chunk::<4>() else {
        return Err(bad("signature is shorter than its 4-byte key ID"));
    };
    if sig.is_empty() {
        return Err(bad("signature has a key ID but no signature bytes"));
    }
    Ok(NoteSignature {
        name: name.into(),
        key_id: u32::from_be_bytes(*id),
        signature: sig.to_vec(),
    })
}

/// Opens a signed note, verifying it against the trusted `verifiers`.
///
/// Every signature by a trusted key (matching both name and key ID) must
/// verify, at least one must be present, and no trusted key may sign twice.
/// Signatures by other keys are returned in [`Note::unverified`].
pub fn open_note(msg: &[u8], verifiers: &[&Verifier]) -> Result<Note, NoteError> {
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::NotUtf8)?;
    check_characters(msg)?;
    if !msg.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    // The text ends at the last blank line: signature lines are never empty,
    // so the last "\n\n" is the text's final newline followed by the blank line.
    let split = msg
        .rfind("\n\n")
        .ok_or(NoteError::MissingSignatureSeparator)?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    let lines: Vec<&str> = sigs
        .strip_suffix('\n')
        .map(|s| s.split('\n').collect())
        .unwrap_or_default();
    if lines.is_empty() {
        return Err(NoteError::MalformedSignatureLine {
            line: 1,
            reason: "the note has no signature lines",
        });
    }
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count: lines.len(),
            max: MAX_SIGNATURES,
        });
    }
    let mut note = Note {
        text: text.into(),
        signatures: Vec::new(),
        unverified: Vec::new(),
    };
    for (i, line) in lines.iter().enumerate() {
        let sig = parse_signature_line(line, i + 1)?;
        let mut matching = verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_id == sig.key_id);
        let Some(v) = matching.next() else {
            // Unknown keys must be ignored; identical repeats add nothing.
            if !note.unverified.contains(&sig) {
                note.unverified.push(sig);
            }
            continue;
        };
        if matching.any(|other| other.key != v.key) {
            return Err(NoteError::AmbiguousVerifier {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if note
            .signatures
            .iter()
            .any(|s| s.name == sig.name && s.key_id == sig.key_id)
        {
            return Err(NoteError::DuplicateSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !v.verify(text.as_bytes(), &sig.signature) {
            return Err(NoteError::InvalidSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        note.signatures.push(sig);
    }
    if note.signatures.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(note)
}
