//! Keys at rest: the key-encryption key (KEK), per-segment data keys wrapped
//! by it, and the Ed25519 signing seed wrapped by it.
//!
//! Envelope encryption: each segment (one stream, one epoch) has its own
//! random 256-bit data key; only its wrapped form is stored, in its own file,
//! so destroying that file crypto-shreds the segment and rotating the KEK
//! re-wraps small files instead of re-encrypting data. The KEK comes from a
//! 0600 key file or from a passphrase through Argon2id. This module does not
//! decide which segment gets which key or when keys are destroyed.
//!
//! All AEAD here is AES-256-GCM (aws-lc). Data keys use deterministic nonces
//! built from the writer generation and the log index (see
//! [`DataKey::seal_record`]); wrapping uses random nonces, as it happens only
//! a few times per key.

use std::path::Path;

use ::hmac::{Hmac, KeyInit, Mac};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{StoreError, StoreResult};
use crate::fsutil::{self, SECRET_MODE, crc32};

/// Length of every symmetric key and of the signing seed.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

const KEK_MAGIC: &[u8; 8] = b"STELEKEK";
const DEK_MAGIC: &[u8; 8] = b"STELEDEK";
const SIG_MAGIC: &[u8; 8] = b"STELESIG";
const FORMAT_VERSION: u8 = 1;
const KEK_KIND_RAW: u8 = 1;
const KEK_KIND_PASSPHRASE: u8 = 2;
const KEK_CHECK_AAD: &[u8] = b"stele/kek-check/v1";
const DEK_AAD: &[u8] = b"stele/dek/v1";
const SIG_AAD: &[u8] = b"stele/signing-key/v1";
const RECORD_AAD: &[u8] = b"stele/record/v1";
const BLOCK_AAD: &[u8] = b"stele/block/v1";
const SALT_KEY_INFO: &[u8] = b"stele/salt/v1";

/// Argon2id cost parameters for passphrase-derived KEKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's 2024 recommendation for Argon2id: 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        Argon2Params {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// Fills `out` from the kernel's CSPRNG (`getrandom(2)`, blocking only
/// until the kernel's generator is first seeded at boot).
///
/// Not aws-lc's generator: it seeds a generator per thread from CPU-timing
/// jitter, which costs tens of milliseconds of CPU on the first call in
/// every thread, so a one-event `stele append` spent most of its time there
/// and every new server thread paused on its first event.
pub fn random_bytes(out: &mut [u8]) -> StoreResult<()> {
    let mut filled = 0;
    while let Some(rest) = out.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        // Reads over 256 bytes may be cut short by a signal.
        match rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => {
                return Err(StoreError::Invalid(
                    "the system random generator returned nothing".into(),
                ));
            }
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(StoreError::Invalid(format!(
                    "the system random generator failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

fn aes_key(bytes: &[u8; KEY_LEN]) -> StoreResult<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| StoreError::Invalid("AES-256-GCM rejected a 32-byte key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// The key-encryption key. It never leaves memory unwrapped.
pub struct Kek {
    key: LessSafeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// How a new KEK is made at `init`.
#[derive(Debug)]
pub enum NewKek {
    /// A random key stored in the 0600 key file.
    Random,
    /// A key derived from a passphrase; the key file stores only the salt,
    /// the cost parameters and a check value.
    Passphrase {
        passphrase: Zeroizing<String>,
        params: Argon2Params,
    },
}

impl NewKek {
    /// The kind of key file this makes.
    pub fn kind(&self) -> KekKind {
        match self {
            NewKek::Random => KekKind::File,
            NewKek::Passphrase { .. } => KekKind::Passphrase,
        }
    }
}

/// How a KEK is held: the kind byte of `kek.key`, named as in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekKind {
    /// Kind 1: the raw key is in the 0600 key file (`"file"`).
    File,
    /// Kind 2: the key is derived from a passphrase (`"passphrase"`).
    Passphrase,
}

impl KekKind {
    /// The name used in `meta.json` and `kek.info`.
    pub fn as_str(self) -> &'static str {
        match self {
            KekKind::File => "file",
            KekKind::Passphrase => "passphrase",
        }
    }

    /// Parses a name written by [`KekKind::as_str`].
    pub fn from_name(name: &str) -> Option<KekKind> {
        match name {
            "file" => Some(KekKind::File),
            "passphrase" => Some(KekKind::Passphrase),
            _ => None,
        }
    }

    /// The kind of the KEK file at `path` (header and checksum checked; the
    /// key itself is not opened).
    pub fn of_file(path: &Path) -> StoreResult<KekKind> {
        Ok(if Kek::needs_passphrase(path)? {
            KekKind::Passphrase
        } else {
            KekKind::File
        })
    }
}

fn derive_passphrase_key(
    passphrase: &str,
    salt: &[u8],
    params: Argon2Params,
) -> StoreResult<Zeroizing<[u8; KEY_LEN]>> {
    let argon_params = argon2::Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(KEY_LEN),
    )
    .map_err(|e| StoreError::Invalid(format!("Argon2id parameters: {e}")))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| StoreError::Invalid(format!("Argon2id: {e}")))?;
    Ok(out)
}

/// The tag that proves a passphrase-derived key is the right one.
fn kek_check_tag(key: &LessSafeKey) -> StoreResult<[u8; TAG_LEN]> {
    let nonce = Nonce::assume_unique_for_key([0u8; NONCE_LEN]);
    let mut empty: [u8; 0] = [];
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(KEK_CHECK_AAD), &mut empty)
        .map_err(|_| StoreError::Invalid("AES-GCM seal failed".into()))?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

impl Kek {
    /// Creates the KEK file at `path` (which must not exist) and returns the
    /// key. Crash story: the file is written and fsynced before return, with
    /// its directory; a crash before that leaves no usable file and `init`
    /// must be run again.
    pub fn create(path: &Path, how: NewKek) -> StoreResult<Kek> {
        let mut file = Vec::with_capacity(96);
        file.extend_from_slice(KEK_MAGIC);
        file.push(FORMAT_VERSION);
        let kek = match how {
            NewKek::Random => {
                let mut raw = Zeroizing::new([0u8; KEY_LEN]);
                random_bytes(raw.as_mut())?;
                file.push(KEK_KIND_RAW);
                file.extend_from_slice(raw.as_ref());
                Kek {
                    key: aes_key(&raw)?,
                }
            }
            NewKek::Passphrase { passphrase, params } => {
                let mut salt = [0u8; 16];
                random_bytes(&mut salt)?;
                let raw = derive_passphrase_key(&passphrase, &salt, params)?;
                let key = aes_key(&raw)?;
                file.push(KEK_KIND_PASSPHRASE);
                file.extend_from_slice(&params.m_cost_kib.to_be_bytes());
                file.extend_from_slice(&params.t_cost.to_be_bytes());
                file.extend_from_slice(&params.p_cost.to_be_bytes());
                file.extend_from_slice(&salt);
                file.extend_from_slice(&kek_check_tag(&key)?);
                Kek { key }
            }
        };
        let crc = crc32(&file);
        file.extend_from_slice(&crc.to_be_bytes());
        let file = Zeroizing::new(file);
        fsutil::create_new_durable(path, &file, SECRET_MODE)?;
        Ok(kek)
    }

    /// True when the KEK file at `path` needs a passphrase to open.
    pub fn needs_passphrase(path: &Path) -> StoreResult<bool> {
        let bytes = Zeroizing::new(fsutil::read(path)?);
        Ok(parse_kek_header(path, &bytes)? == KEK_KIND_PASSPHRASE)
    }

    /// Opens the KEK file. A passphrase file needs `passphrase`; a wrong one
    /// is reported as [`StoreError::WrongKey`].
    pub fn open(path: &Path, passphrase: Option<&str>) -> StoreResult<Kek> {
        let bytes = Zeroizing::new(fsutil::read(path)?);
        let kind = parse_kek_header(path, &bytes)?;
        let body = &bytes[10..bytes.len() - 4];
        match kind {
            KEK_KIND_RAW => {
                let raw: [u8; KEY_LEN] = body
                    .try_into()
                    .map_err(|_| StoreError::corrupt(path, 10, "raw key has the wrong length"))?;
                let raw = Zeroizing::new(raw);
                Ok(Kek {
                    key: aes_key(&raw)?,
                })
            }
            KEK_KIND_PASSPHRASE => {
                if body.len() != 12 + 16 + TAG_LEN {
                    return Err(StoreError::corrupt(
                        path,
                        10,
                        "passphrase key record has the wrong length",
                    ));
                }
                let passphrase = passphrase.ok_or_else(|| StoreError::WrongKey {
                    path: path.to_path_buf(),
                    what: "this key-encryption key is protected by a passphrase; set STELE_PASSPHRASE or use --passphrase-file".into(),
                })?;
                let be =
                    |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
                let params = Argon2Params {
                    m_cost_kib: be(0),
                    t_cost: be(4),
                    p_cost: be(8),
                };
                // Bounds keep an altered file from asking for absurd work
                // or memory before the check tag can refuse it.
                if params.m_cost_kib > 4 * 1024 * 1024 || params.t_cost > 64 || params.p_cost > 64 {
                    return Err(StoreError::corrupt(
                        path,
                        10,
                        "Argon2id parameters are out of the accepted range",
                    ));
                }
                let salt = &body[12..28];
                let stored_tag = &body[28..28 + TAG_LEN];
                let raw = derive_passphrase_key(passphrase, salt, params)?;
                let key = aes_key(&raw)?;
                let tag = kek_check_tag(&key)?;
                // Constant-time comparison: the tag is not secret, but there
                // is no reason to leak timing about it either.
                if aws_lc_rs::constant_time::verify_slices_are_equal(&tag, stored_tag).is_err() {
                    return Err(StoreError::WrongKey {
                        path: path.to_path_buf(),
                        what: "wrong passphrase".into(),
                    });
                }
                Ok(Kek { key })
            }
            other => Err(StoreError::corrupt(
                path,
                9,
                format!("unknown key kind {other}"),
            )),
        }
    }

    fn wrap(
        &self,
        secret: &[u8; KEY_LEN],
        aad: &[u8],
    ) -> StoreResult<[u8; NONCE_LEN + KEY_LEN + TAG_LEN]> {
        let mut out = [0u8; NONCE_LEN + KEY_LEN + TAG_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        out[..NONCE_LEN].copy_from_slice(&nonce);
        out[NONCE_LEN..NONCE_LEN + KEY_LEN].copy_from_slice(secret);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..NONCE_LEN + KEY_LEN],
            )
            .map_err(|_| StoreError::Invalid("AES-GCM seal failed".into()))?;
        out[NONCE_LEN + KEY_LEN..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().ok()?;
        let mut buf = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
        buf.copy_from_slice(&wrapped[NONCE_LEN..]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                buf.as_mut(),
            )
            .ok()?;
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(plain);
        Some(out)
    }
}

fn parse_kek_header(path: &Path, bytes: &[u8]) -> StoreResult<u8> {
    if bytes.len() < 14 || &bytes[..8] != KEK_MAGIC {
        return Err(StoreError::corrupt(
            path,
            0,
            "not a Stele key-encryption key file",
        ));
    }
    check_trailing_crc(path, bytes)?;
    if bytes[8] != FORMAT_VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported key file version {}", bytes[8]),
        ));
    }
    Ok(bytes[9])
}

fn check_trailing_crc(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    fsutil::check_trailing_crc(path, bytes, "key file")
}

fn dek_aad(segment_id: u32) -> Vec<u8> {
    let mut aad = DEK_AAD.to_vec();
    aad.extend_from_slice(&segment_id.to_be_bytes());
    aad
}

/// A record-sealing key: a segment's data key, or a record key derived
/// from it for one writer session (`sessions::derive_record_key`).
pub struct DataKey {
    /// Kept for deriving record keys; zeroed when dropped.
    raw: Zeroizing<[u8; KEY_LEN]>,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The nonce of a record: writer generation (4 bytes) then log index
/// (8 bytes), both big-endian. A log index is assigned once per writer
/// generation, and the generation is durably incremented before a writer
/// starts, so an index reused after a crash (its first record was never
/// acknowledged) is sealed under a different nonce.
fn record_nonce(generation: u32, index: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&generation.to_be_bytes());
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// Associated data of a record: binds the ciphertext to its log index and to
/// the commitment logged for it, so a record moved to another position or
/// paired with another leaf fails to open.
fn record_aad(index: u64, commitment: &[u8; 32]) -> [u8; 15 + 8 + 32] {
    let mut aad = [0u8; 15 + 8 + 32];
    aad[..15].copy_from_slice(RECORD_AAD);
    aad[15..23].copy_from_slice(&index.to_be_bytes());
    aad[23..].copy_from_slice(commitment);
    aad
}

impl DataKey {
    /// Makes a fresh random data key and returns it with its wrapped file
    /// bytes for `segment_id`.
    pub fn generate(kek: &Kek, segment_id: u32) -> StoreResult<(DataKey, Vec<u8>)> {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(raw.as_mut())?;
        let file = dek_file(kek, segment_id, &raw)?;
        Ok((DataKey::from_raw(raw)?, file))
    }

    /// A key from its 32 bytes.
    pub(crate) fn from_raw(raw: Zeroizing<[u8; KEY_LEN]>) -> StoreResult<DataKey> {
        Ok(DataKey {
            key: aes_key(&raw)?,
            raw,
        })
    }

    /// The key's bytes, the input of record-key derivation.
    pub(crate) fn raw(&self) -> &[u8; KEY_LEN] {
        &self.raw
    }

    /// Unwraps a data key file for `segment_id`.
    pub fn unwrap_file(
        kek: &Kek,
        segment_id: u32,
        path: &Path,
        bytes: &[u8],
    ) -> StoreResult<DataKey> {
        DataKey::from_raw(unwrap_dek_raw(kek, segment_id, path, bytes)?)
    }

    /// Re-wraps a data key file for `segment_id` from the `old` KEK to the
    /// `new` one (KEK rotation) and returns the new file bytes. The data key
    /// itself is unchanged, so the segment it seals is not re-encrypted; only
    /// the 60-byte wrap blob gets a new random nonce, ciphertext and tag. A
    /// file that `old` does not open is refused as [`StoreError::WrongKey`].
    pub fn rewrap_file(
        old: &Kek,
        new: &Kek,
        segment_id: u32,
        path: &Path,
        bytes: &[u8],
    ) -> StoreResult<Vec<u8>> {
        let raw = unwrap_dek_raw(old, segment_id, path, bytes)?;
        dek_file(new, segment_id, &raw)
    }

    /// Encrypts `in_out` in place and returns the tag. See [`record_nonce`]
    /// for why (generation, index) never repeats under one key.
    pub fn seal_record(
        &self,
        generation: u32,
        index: u64,
        commitment: &[u8; 32],
        in_out: &mut [u8],
    ) -> StoreResult<[u8; TAG_LEN]> {
        self.seal_with(
            record_nonce(generation, index),
            &record_aad(index, commitment),
            in_out,
        )
    }

    /// Decrypts `ciphertext_and_tag` in place; returns the plaintext slice,
    /// or `None` if it does not authenticate.
    pub fn open_record<'a>(
        &self,
        generation: u32,
        index: u64,
        commitment: &[u8; 32],
        ciphertext_and_tag: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.open_with(
            record_nonce(generation, index),
            &record_aad(index, commitment),
            ciphertext_and_tag,
        )
    }

    /// AES-256-GCM in place under this key: the tag of `in_out`.
    fn seal_with(&self, nonce: Nonce, aad: &[u8], in_out: &mut [u8]) -> StoreResult<[u8; TAG_LEN]> {
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            .map_err(|_| StoreError::Invalid("AES-GCM seal failed".into()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens `ciphertext_and_tag` in place; `None` if it does not
    /// authenticate.
    fn open_with<'a>(
        &self,
        nonce: Nonce,
        aad: &[u8],
        ciphertext_and_tag: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.key
            .open_in_place(nonce, Aad::from(aad), ciphertext_and_tag)
            .ok()
    }
}

/// Associated data of a block (segment versions 3 and 4): its first entry and its
/// head (codec, entry count, plaintext length, the other entries'
/// numbers), so a block moved to another position, or whose list of
/// entries was changed, fails to open.
fn block_aad(first: u64, head: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(BLOCK_AAD.len() + 8 + head.len());
    aad.extend_from_slice(BLOCK_AAD);
    aad.extend_from_slice(&first.to_be_bytes());
    aad.extend_from_slice(head);
    aad
}

impl DataKey {
    /// Encrypts a block's (compressed) plaintext in place and returns the
    /// tag. The nonce is the record nonce of the block's first entry: an
    /// entry belongs to one block, and a generation numbers each entry once.
    pub fn seal_block(
        &self,
        generation: u32,
        first: u64,
        head: &[u8],
        in_out: &mut [u8],
    ) -> StoreResult<[u8; TAG_LEN]> {
        self.seal_with(
            record_nonce(generation, first),
            &block_aad(first, head),
            in_out,
        )
    }

    /// Decrypts a block's `ciphertext_and_tag` in place; returns the
    /// plaintext slice, or `None` if it does not authenticate.
    pub fn open_block<'a>(
        &self,
        generation: u32,
        first: u64,
        head: &[u8],
        ciphertext_and_tag: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.open_with(
            record_nonce(generation, first),
            &block_aad(first, head),
            ciphertext_and_tag,
        )
    }

    /// The key that derives the salts of the entries this (record) key
    /// seals: HMAC-SHA256 keyed with the key's bytes over
    /// `"stele/salt/v1"`. The salts are never stored, and die with the data
    /// key when its segment is purged.
    pub fn salt_key(&self) -> SaltKey {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.raw.as_ref());
        let tag = hmac::sign(&key, SALT_KEY_INFO);
        // HMAC keyed once: the hashes of the key's inner and outer pads are
        // kept, so each salt costs two SHA-256 compressions. HMAC pads a
        // key shorter than the hash's 64-byte block with zeros; padding the
        // 32-byte key here gives the same key, in the type `new` takes.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(tag.as_ref());
        SaltKey(<Hmac<Sha256> as KeyInit>::new(&(*block).into()))
    }
}

/// Derives entry salts (see [`DataKey::salt_key`]).
#[derive(Clone)]
pub struct SaltKey(Hmac<Sha256>);

impl std::fmt::Debug for SaltKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltKey(..)")
    }
}

impl SaltKey {
    /// The salt of entry `index`: HMAC-SHA256(salt key, index u64 BE).
    pub fn salt(&self, index: u64) -> [u8; 32] {
        let tag = self.0.clone().chain_update(index.to_be_bytes()).finalize();
        tag.into_bytes().into()
    }
}

/// Checks a data key file for `segment_id` and unwraps its raw key.
fn unwrap_dek_raw(
    kek: &Kek,
    segment_id: u32,
    path: &Path,
    bytes: &[u8],
) -> StoreResult<Zeroizing<[u8; KEY_LEN]>> {
    if bytes.len() != 8 + 1 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN + 4 || &bytes[..8] != DEK_MAGIC {
        return Err(StoreError::corrupt(path, 0, "not a Stele data key file"));
    }
    check_trailing_crc(path, bytes)?;
    if bytes[8] != FORMAT_VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported data key version {}", bytes[8]),
        ));
    }
    let stored_id = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    if stored_id != segment_id {
        return Err(StoreError::corrupt(
            path,
            9,
            format!("data key belongs to segment {stored_id}, not {segment_id}"),
        ));
    }
    kek
            .unwrap_key(&bytes[13..bytes.len() - 4], &dek_aad(segment_id))
            .ok_or_else(|| StoreError::WrongKey {
                path: path.to_path_buf(),
                what: "the key-encryption key does not open this data key (wrong key, or the file was altered)".into(),
            })
}

/// The bytes of a data key file: `raw` wrapped by `kek` for `segment_id`.
fn dek_file(kek: &Kek, segment_id: u32, raw: &[u8; KEY_LEN]) -> StoreResult<Vec<u8>> {
    let wrapped = kek.wrap(raw, &dek_aad(segment_id))?;
    let mut file = Vec::with_capacity(8 + 1 + 4 + wrapped.len() + 4);
    file.extend_from_slice(DEK_MAGIC);
    file.push(FORMAT_VERSION);
    file.extend_from_slice(&segment_id.to_be_bytes());
    file.extend_from_slice(&wrapped);
    let crc = crc32(&file);
    file.extend_from_slice(&crc.to_be_bytes());
    Ok(file)
}

/// Wraps the Ed25519 signing seed under the KEK for the key file.
pub fn wrap_signing_seed(kek: &Kek, seed: &[u8; KEY_LEN]) -> StoreResult<Vec<u8>> {
    let wrapped = kek.wrap(seed, SIG_AAD)?;
    let mut file = Vec::with_capacity(8 + 1 + wrapped.len() + 4);
    file.extend_from_slice(SIG_MAGIC);
    file.push(FORMAT_VERSION);
    file.extend_from_slice(&wrapped);
    let crc = crc32(&file);
    file.extend_from_slice(&crc.to_be_bytes());
    Ok(file)
}

/// Opens the signing key file.
pub fn unwrap_signing_seed(
    kek: &Kek,
    path: &Path,
    bytes: &[u8],
) -> StoreResult<Zeroizing<[u8; KEY_LEN]>> {
    if bytes.len() != 8 + 1 + NONCE_LEN + KEY_LEN + TAG_LEN + 4 || &bytes[..8] != SIG_MAGIC {
        return Err(StoreError::corrupt(path, 0, "not a Stele signing key file"));
    }
    check_trailing_crc(path, bytes)?;
    if bytes[8] != FORMAT_VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported signing key version {}", bytes[8]),
        ));
    }
    kek.unwrap_key(&bytes[9..bytes.len() - 4], SIG_AAD)
        .ok_or_else(|| StoreError::WrongKey {
            path: path.to_path_buf(),
            what: "the key-encryption key does not open the signing key (wrong key, or the file was altered)".into(),
        })
}

/// Re-wraps the signing key file from the `old` KEK to the `new` one (KEK
/// rotation) and returns the new file bytes; the seed, and so the verifier
/// key, is unchanged.
pub fn rewrap_signing_seed(
    old: &Kek,
    new: &Kek,
    path: &Path,
    bytes: &[u8],
) -> StoreResult<Vec<u8>> {
    let seed = unwrap_signing_seed(old, path, bytes)?;
    wrap_signing_seed(new, &seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Salts are never stored: a log written by any build reads back only
    /// if the derivation never changes. Values from Python's `hmac`
    /// (HMAC-SHA256(HMAC-SHA256(key, "stele/salt/v1"), index u64 BE)).
    #[test]
    fn entry_salts_match_known_answers() {
        let raw: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        let salts = DataKey::from_raw(Zeroizing::new(raw)).unwrap().salt_key();
        let hex = |salt: [u8; 32]| salt.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(salts.salt(0)),
            "8140ada055d21f59dca8f63a8c25d04ca38437e82f1b06a50f83fb4615a8c85d"
        );
        assert_eq!(
            hex(salts.salt(1)),
            "4069580a9c364cdc5032c2960465905f4969349093ee627b60f12c09e45fafae"
        );
        assert_eq!(
            hex(salts.salt(5_000_000_000)),
            "9a49163c80fd8ff3f2f804cd91a8c386534cb51e98e18a4a6fa415c8f8743e8c"
        );
        // The same as aws-lc's HMAC, for other keys too.
        for seed in 0..8u8 {
            let raw: [u8; KEY_LEN] =
                std::array::from_fn(|i| (i as u8).wrapping_mul(seed | 1) ^ seed);
            let salts = DataKey::from_raw(Zeroizing::new(raw)).unwrap().salt_key();
            let outer = hmac::Key::new(hmac::HMAC_SHA256, &raw);
            let key = hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&outer, SALT_KEY_INFO).as_ref(),
            );
            for index in [0u64, 7, 1 << 40, u64::MAX] {
                let expected = hmac::sign(&key, &index.to_be_bytes());
                assert_eq!(&salts.salt(index)[..], expected.as_ref());
            }
        }
    }

    fn cheap() -> Argon2Params {
        Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Every byte of a large request is filled (reads over 256 bytes may
    /// come back short), and two draws differ.
    #[test]
    fn random_bytes_fills_everything() {
        for len in [0, 1, 42, 256, 257, 65_536, 1 << 20] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            random_bytes(&mut a).unwrap();
            random_bytes(&mut b).unwrap();
            for (x, y) in a.chunks(32).zip(b.chunks(32)) {
                // 32 zero bytes, or the same 32 bytes twice, by chance: 2^-256.
                if x.len() == 32 {
                    assert!(x.iter().any(|&v| v != 0), "unfilled bytes in {len}");
                    assert_ne!(x, y, "two draws of {len} bytes agree");
                }
            }
            if len >= 32 {
                assert!(
                    a[len - 32..].iter().any(|&v| v != 0),
                    "unfilled tail in {len}"
                );
            }
        }
    }

    #[test]
    fn raw_kek_round_trip_and_dek() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        let kek = Kek::create(&path, NewKek::Random).unwrap();
        assert!(!Kek::needs_passphrase(&path).unwrap());
        let (dek, file) = DataKey::generate(&kek, 7).unwrap();
        let reopened = Kek::open(&path, None).unwrap();
        let dek2 = DataKey::unwrap_file(&reopened, 7, &path, &file).unwrap();
        let commitment = [9u8; 32];
        let mut buf = b"hello".to_vec();
        let tag = dek.seal_record(3, 42, &commitment, &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        assert_eq!(
            dek2.open_record(3, 42, &commitment, &mut buf.clone())
                .unwrap(),
            b"hello"
        );
        // Wrong index, generation or commitment: refused.
        assert!(
            dek2.open_record(3, 43, &commitment, &mut buf.clone())
                .is_none()
        );
        assert!(
            dek2.open_record(4, 42, &commitment, &mut buf.clone())
                .is_none()
        );
        assert!(
            dek2.open_record(3, 42, &[8u8; 32], &mut buf.clone())
                .is_none()
        );
        // A data key file of another segment is refused.
        assert!(DataKey::unwrap_file(&reopened, 8, &path, &file).is_err());
    }

    #[test]
    fn passphrase_kek_detects_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        let kek = Kek::create(
            &path,
            NewKek::Passphrase {
                passphrase: Zeroizing::new("correct horse".into()),
                params: cheap(),
            },
        )
        .unwrap();
        assert!(Kek::needs_passphrase(&path).unwrap());
        let seed = [5u8; 32];
        let file = wrap_signing_seed(&kek, &seed).unwrap();
        let good = Kek::open(&path, Some("correct horse")).unwrap();
        assert_eq!(*unwrap_signing_seed(&good, &path, &file).unwrap(), seed);
        assert!(matches!(
            Kek::open(&path, Some("wrong")),
            Err(StoreError::WrongKey { .. })
        ));
        assert!(matches!(
            Kek::open(&path, None),
            Err(StoreError::WrongKey { .. })
        ));
    }

    #[test]
    fn other_kek_cannot_open_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = Kek::create(&dir.path().join("a"), NewKek::Random).unwrap();
        let b = Kek::create(&dir.path().join("b"), NewKek::Random).unwrap();
        let file = wrap_signing_seed(&a, &[1u8; 32]).unwrap();
        assert!(matches!(
            unwrap_signing_seed(&b, Path::new("s"), &file),
            Err(StoreError::WrongKey { .. })
        ));
        let mut altered = file.clone();
        altered[12] ^= 1;
        assert!(matches!(
            unwrap_signing_seed(&a, Path::new("s"), &altered),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn rewrap_keeps_the_data_key_and_drops_the_old_kek() {
        let dir = tempfile::tempdir().unwrap();
        let old = Kek::create(&dir.path().join("old"), NewKek::Random).unwrap();
        let new = Kek::create(
            &dir.path().join("new"),
            NewKek::Passphrase {
                passphrase: Zeroizing::new("new secret".into()),
                params: cheap(),
            },
        )
        .unwrap();
        let path = Path::new("3.dek");
        let (dek, file) = DataKey::generate(&old, 3).unwrap();
        let commitment = [1u8; 32];
        let mut sealed = b"record".to_vec();
        let tag = dek.seal_record(1, 9, &commitment, &mut sealed).unwrap();
        sealed.extend_from_slice(&tag);

        let rewrapped = DataKey::rewrap_file(&old, &new, 3, path, &file).unwrap();
        assert_eq!(rewrapped.len(), file.len());
        assert_ne!(rewrapped, file);
        // The same data key comes out under the new KEK: old records open.
        let reopened = DataKey::unwrap_file(&new, 3, path, &rewrapped).unwrap();
        assert_eq!(
            reopened
                .open_record(1, 9, &commitment, &mut sealed.clone())
                .unwrap(),
            b"record"
        );
        // The old KEK no longer opens the re-wrapped file, and a file the
        // old KEK does not open cannot be re-wrapped.
        assert!(matches!(
            DataKey::unwrap_file(&old, 3, path, &rewrapped),
            Err(StoreError::WrongKey { .. })
        ));
        assert!(matches!(
            DataKey::rewrap_file(&old, &new, 3, path, &rewrapped),
            Err(StoreError::WrongKey { .. })
        ));
        // The id stays bound.
        assert!(DataKey::rewrap_file(&old, &new, 4, path, &file).is_err());

        let seed = [7u8; 32];
        let signing = wrap_signing_seed(&old, &seed).unwrap();
        let signing2 = rewrap_signing_seed(&old, &new, path, &signing).unwrap();
        assert_eq!(*unwrap_signing_seed(&new, path, &signing2).unwrap(), seed);
        assert!(unwrap_signing_seed(&old, path, &signing2).is_err());
    }

    #[test]
    fn kek_kind_names_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        Kek::create(&raw, NewKek::Random).unwrap();
        assert_eq!(KekKind::of_file(&raw).unwrap(), KekKind::File);
        for kind in [KekKind::File, KekKind::Passphrase] {
            assert_eq!(KekKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(KekKind::from_name("other"), None);
        assert_eq!(NewKek::Random.kind(), KekKind::File);
    }
}
