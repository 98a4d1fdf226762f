//! Errors of the log engine, with a category that maps to exit codes.

use stele_store::StoreError;

/// Result alias for the engine.
pub type LogResult<T> = Result<T, LogError>;

/// What went wrong. `Integrity` means stored data does not verify; the other
/// variants are operational or caller errors.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Event(#[from] stele_event::EventError),
    /// Stored data failed a check: altered, missing or inconsistent.
    #[error("integrity: {0}")]
    Integrity(String),
    /// The caller asked for something the log does not allow (a malformed
    /// request, an operation out of order).
    #[error("{0}")]
    Usage(String),
    /// The caller asked for something that does not exist: an entry beyond
    /// the tree, a checkpoint size never published, an unknown hold or
    /// epoch.
    #[error("{0}")]
    NotFound(String),
    /// A step that cannot fail on a sound log did (encoding, signing, a
    /// counter or the tree at its limit): a fault of Stele, not the caller.
    #[error("internal: {0}")]
    Internal(String),
    /// The data directory is missing, incomplete or not a Stele log.
    #[error("{0}")]
    NotALog(String),
    /// A policy forbids it (early deletion, an undeclared stream, …).
    #[error("refused: {0}")]
    Refused(String),
    /// The entry's content was deleted by a retention purge.
    #[error(
        "entry {index} was purged by policy: stream {:?} epoch {} (retention ended {}), recorded by the retention.purge event at index {}",
        tombstone.stream,
        tombstone.epoch,
        stele_event::time::timestamp_text(tombstone.purge_after),
        tombstone.event_index.map(|i| i.to_string()).unwrap_or_else(|| "(pending)".into())
    )]
    Purged {
        index: u64,
        tombstone: Box<crate::purge::Tombstone>,
    },
    /// A bundle could not be written (its output failed, or an entry
    /// disagrees with the tree).
    #[error(transparent)]
    Bundle(#[from] stele_bundle::WriteError),
    /// A search would read more entries from the log than its limit,
    /// because the search index has not reached them yet (it is being
    /// built after an open). Retrying later succeeds.
    #[error(
        "the search index is still being built: {unindexed} entries are not indexed yet (a search reads at most {limit} from the log); retry shortly"
    )]
    IndexBehind { unindexed: u64, limit: u64 },
    /// An earlier write or fsync failed; this handle refuses further writes.
    #[error("the log stopped writing after an earlier failure ({0}); reopen it to recover")]
    Poisoned(String),
}

impl LogError {
    /// True when the error is a verification failure (exit code 1) rather
    /// than a usage or I/O problem (exit code 2).
    pub fn is_integrity(&self) -> bool {
        match self {
            LogError::Integrity(_) => true,
            LogError::Refused(_) | LogError::Purged { .. } => true,
            LogError::Store(e) => e.is_integrity(),
            LogError::Bundle(e) => matches!(
                e,
                stele_bundle::WriteError::LeafMismatch { .. }
                    | stele_bundle::WriteError::Tree { .. }
            ),
            _ => false,
        }
    }

    /// A stable category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            LogError::Store(e) => e.category(),
            LogError::Event(e) => e.category(),
            LogError::Integrity(_) => "integrity",
            LogError::Usage(_) => "usage",
            LogError::NotFound(_) => "not_found",
            LogError::Internal(_) => "internal",
            LogError::NotALog(_) => "not_a_log",
            LogError::Poisoned(_) => "poisoned",
            LogError::Refused(_) => "refused",
            LogError::Purged { .. } => "purged",
            LogError::IndexBehind { .. } => "index_behind",
            LogError::Bundle(e) => e.code(),
        }
    }
}
