//! The C2SP tlog-proof format: an offline-verifiable proof that an entry is
//! in a log, bundling a signed checkpoint with an inclusion proof.
//!
//! The text is the header `c2sp.org/tlog-proof@v1`, an optional
//! `extra <base64>` line of opaque unauthenticated data, an `index <N>`
//! line, zero or more base64 proof hashes (leaf's sibling first), an empty
//! line, and then the signed checkpoint note verbatim. This module encodes,
//! strictly parses and verifies that text; it does not decide which keys to
//! trust or what the extra data means.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::Hash;
use crate::note::{Note, NoteError, Verifier, open_note};
use crate::proof::{VerifyError, verify_inclusion};

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// An inclusion proof in a tree with a 64-bit size never has more hashes than this.
pub const MAX_PROOF_HASHES: usize = 64;

/// Errors from parsing the tlog-proof text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofFormatError {
    /// The first line is not the v1 header.
    #[error("tlog-proof line 1: expected header \"c2sp.org/tlog-proof@v1\"")]
    BadHeader,
    /// The text ends before a required line.
    #[error("tlog-proof line {line}: missing, the proof is truncated")]
    Truncated {
        /// The 1-based number of the missing line.
        line: usize,
    },
    /// The extra data is not valid base64.
    #[error("tlog-proof line 2: extra data is not valid base64")]
    BadExtra,
    /// The index line does not start with `index `.
    #[error("tlog-proof line {line}: expected \"index <N>\"")]
    MissingIndex {
        /// The 1-based line number.
        line: usize,
    },
    /// The index is not an ASCII decimal u64 without leading zeros.
    #[error(
        "tlog-proof line {line}: index {text:?} is not a decimal number without leading zeros that fits in 64 bits"
    )]
    BadIndex {
        /// The 1-based line number.
        line: usize,
        /// The index text.
        text: String,
    },
    /// A proof line is not base64 of exactly 32 bytes.
    #[error("tlog-proof line {line}: proof hash is not canonical base64 of 32 bytes")]
    BadHash {
        /// The 1-based line number.
        line: usize,
    },
    /// More proof hashes than any 64-bit tree can need.
    #[error("tlog-proof has more than {max} proof hashes")]
    TooManyHashes {
        /// The limit.
        max: usize,
    },
    /// There is nothing after the empty line.
    #[error("tlog-proof has no checkpoint after the empty line")]
    MissingCheckpoint,
}

/// Reasons a tlog-proof fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyProofError {
    /// The checkpoint note did not open with the trusted keys.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The note text is not a valid checkpoint.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint is from a different log than expected.
    #[error("checkpoint origin {got:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// The expected origin.
        expected: String,
        /// The checkpoint's origin.
        got: String,
    },
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] VerifyError),
}

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque, unauthenticated extra data (`None`: no `extra` line).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up to the root's child.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim (text, blank line, signatures).
    pub checkpoint_note: String,
}

/// Parses a decimal u64 with no sign and no leading zeros (except "0").
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl TlogProof {
    /// Encodes the proof as tlog-proof text.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&STANDARD.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint_note);
        s
    }

    /// Strictly parses tlog-proof text.
    ///
    /// The checkpoint note is taken verbatim from after the first empty line
    /// following the index; it is only checked when verifying.
    pub fn parse(text: &str) -> Result<TlogProof, ProofFormatError> {
        // Take one newline-terminated line at a time so that the remainder
        // after the empty line is exactly the checkpoint note.
        let mut rest = text;
        let mut line_no = 0usize;
        let mut next_line = |rest: &mut &str| -> Result<(usize, String), ProofFormatError> {
            line_no += 1;
            let (line, tail) = rest
                .split_once('\n')
                .ok_or(ProofFormatError::Truncated { line: line_no })?;
            let line = line.to_string();
            *rest = tail;
            Ok((line_no, line))
        };
        let (_, header) = next_line(&mut rest)?;
        if header != HEADER {
            return Err(ProofFormatError::BadHeader);
        }
        let (mut n, mut line) = next_line(&mut rest)?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| ProofFormatError::BadExtra)?,
            );
            (n, line) = next_line(&mut rest)?;
        }
        let index_text = line
            .strip_prefix("index ")
            .ok_or(ProofFormatError::MissingIndex { line: n })?;
        let index = parse_canonical_u64(index_text).ok_or_else(|| ProofFormatError::BadIndex {
            line: n,
            text: index_text.into(),
        })?;
        let mut hashes = Vec::new();
        loop {
            let (n, line) = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(ProofFormatError::TooManyHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            hashes
                .push(Hash::from_base64(&line).map_err(|_| ProofFormatError::BadHash { line: n })?);
        }
        if rest.is_empty() {
            return Err(ProofFormatError::MissingCheckpoint);
        }
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint_note: rest.into(),
        })
    }

    /// Verifies the proof for the entry whose leaf hash is `leaf`: opens the
    /// checkpoint note with the trusted `verifiers`, parses the checkpoint,
    /// checks its origin if one is expected, and checks the inclusion proof
    /// against its root. Returns the verified checkpoint.
    pub fn verify(
        &self,
        leaf: &Hash,
        verifiers: &[&Verifier],
        origin: Option<&str>,
    ) -> Result<Checkpoint, VerifyProofError> {
        self.verify_note(leaf, verifiers, origin).map(|(cp, _)| cp)
    }

    /// Like [`TlogProof::verify`], also returning the opened note so callers
    /// can see which trusted keys (for example witnesses) signed it.
    pub fn verify_note(
        &self,
        leaf: &Hash,
        verifiers: &[&Verifier],
        origin: Option<&str>,
    ) -> Result<(Checkpoint, Note), VerifyProofError> {
        let note = open_note(self.checkpoint_note.as_bytes(), verifiers)?;
        let cp = Checkpoint::parse(&note.text)?;
        if let Some(expected) = origin
            && cp.origin != expected
        {
            return Err(VerifyProofError::WrongOrigin {
                expected: expected.into(),
                got: cp.origin,
            });
        }
        verify_inclusion(leaf, self.index, cp.size, &self.hashes, &cp.root)?;
        Ok((cp, note))
    }
}
