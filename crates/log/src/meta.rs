//! `meta.json`: the identity of a data directory.
//!
//! Written last by `init`, so a directory without it was never completely
//! initialized. It holds nothing secret.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stele_store::fsutil;

use crate::error::{LogError, LogResult};

/// Current format version of the data directory: 2 since record keys are
/// derived per writer session (`keys/sessions`). A directory of format 1 is
/// still read, and becomes format 2 at its first append (`session.rs`);
/// builds that know only format 1 then refuse it instead of taking the
/// records sealed under session keys for damage.
pub const FORMAT_VERSION: u32 = 2;
/// The format of directories made before session salts.
pub const FORMAT_BEFORE_SESSIONS: u32 = 1;

/// The identity of a log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Data-directory format version.
    pub format: u32,
    /// The log's origin line (checkpoint origin and signing key name).
    pub origin: String,
    /// Random id (hex) also written in the index header.
    pub log_id: String,
    /// The verifier key of the checkpoint signing key.
    pub verifier_key: String,
    /// How the key-encryption key is held: `"file"` or `"passphrase"`.
    pub kek: String,
}

impl Meta {
    pub fn read(path: &Path) -> LogResult<Meta> {
        let bytes = match fsutil::read_optional(path)? {
            Some(bytes) => bytes,
            None => {
                return Err(LogError::NotALog(format!(
                    "{} is missing: {} is not an initialized Stele data directory (run `stele init`)",
                    path.display(),
                    fsutil::parent_of(path).display()
                )));
            }
        };
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| {
            LogError::NotALog(format!("{}: not a Stele meta file: {e}", path.display()))
        })?;
        if meta.format != FORMAT_VERSION && meta.format != FORMAT_BEFORE_SESSIONS {
            return Err(LogError::NotALog(format!(
                "{}: data directory format {} is not supported (this stele reads formats {FORMAT_BEFORE_SESSIONS} and {FORMAT_VERSION})",
                path.display(),
                meta.format
            )));
        }
        Ok(meta)
    }

    pub fn write(&self, path: &Path) -> LogResult<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| LogError::Internal(format!("cannot encode meta: {e}")))?;
        bytes.push(b'\n');
        fsutil::atomic_replace(path, &bytes, 0o644)?;
        Ok(())
    }
}
