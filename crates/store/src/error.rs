//! The one error type of the storage crate.
//!
//! Every variant says which file is involved, so the command-line tool can
//! print one line that tells the operator where to look.

use std::path::PathBuf;

/// Result alias for storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system call failed. After a failed write or fsync the
    /// caller must stop writing: the kernel may have dropped dirty pages.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk are not what the format allows (torn, truncated or
    /// altered).
    #[error("{}: {what} (at byte {offset})", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A key did not open what it should: wrong key-encryption key or
    /// passphrase, or altered key material.
    #[error("{}: {what}", path.display())]
    WrongKey { path: PathBuf, what: String },
    /// An AEAD tag did not verify: the sealed record was altered or does not
    /// belong at this position of the log.
    #[error("{}: sealed record for entry {index} does not authenticate (altered or misplaced)", path.display())]
    Authentication { path: PathBuf, index: u64 },
    /// The data directory is locked by another process.
    #[error("{}: the data directory is in use by another stele process", path.display())]
    Locked { path: PathBuf },
    /// A caller passed a value the format cannot hold.
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Wraps an `std::io::Error` with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a corruption error.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }

    /// A stable category name for metrics and exit codes.
    pub fn category(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::WrongKey { .. } => "wrong_key",
            StoreError::Authentication { .. } => "authentication",
            StoreError::Locked { .. } => "locked",
            StoreError::Invalid(_) => "invalid",
        }
    }

    /// True when the error means stored data failed an integrity check (as
    /// opposed to an operational failure such as a full disk).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::WrongKey { .. }
                | StoreError::Authentication { .. }
        )
    }
}
