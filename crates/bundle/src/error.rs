//! The errors of this crate: [`BundleError`] for a bundle that does not
//! verify (or cannot be read), [`WriteError`] for a bundle that cannot be
//! written. Each has a stable [`BundleError::code`] / [`WriteError::code`]
//! for scripts and metrics; messages name the record, the entry's log
//! index and what failed.

/// Why a bundle does not verify. Every variant names where: the byte
/// offset of the record, or the log index of the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Reading the input failed (not a property of the bundle).
    #[error("reading the bundle at byte {offset}: {message}")]
    Io { offset: u64, message: String },
    /// The file does not begin with the 16-byte magic `stele/bundle/v1\n`.
    #[error("not a bundle: it does not begin with \"stele/bundle/v1\\n\"")]
    Magic,
    /// The file ends inside a record.
    #[error("truncated: the file ends inside {what} (record at byte {offset})")]
    Truncated { offset: u64, what: String },
    /// A record of an unknown type, out of order, over its limit, with a
    /// malformed body, or bytes after the manifest.
    #[error("framing: record at byte {offset}: {reason}")]
    Framing { offset: u64, reason: String },
    /// The checkpoint record: malformed, or not signed by the pinned key.
    #[error("checkpoint: {reason}")]
    Checkpoint { reason: String },
    /// The consistency proof is malformed, missing, or does not verify.
    #[error("consistency: {reason}")]
    Consistency { reason: String },
    /// An event or purged entry: malformed, out of order, outside the tree,
    /// or its envelope is not a valid canonical envelope.
    #[error("entry {index}: {reason}")]
    Entry { index: u64, reason: String },
    /// A purged entry whose purge record is missing or does not cover it.
    #[error("entry {index}: purged: {reason}")]
    Purged { index: u64, reason: String },
    /// A purge record: malformed, not a `retention.purge` event, or its
    /// inclusion proof does not verify.
    #[error("purge record {index}: {reason}")]
    PurgeRecord { index: u64, reason: String },
    /// The multi-proof does not rebuild the checkpoint's root.
    #[error("multi-proof: {reason}")]
    MultiProof { reason: String },
    /// The manifest: malformed, not signed by the pinned key, or naming
    /// another checkpoint.
    #[error("manifest: {reason}")]
    Manifest { reason: String },
    /// The manifest's contents hash is not that of the bytes before it.
    #[error("manifest: contents hash differs (bundle was changed after signing)")]
    ContentsHash,
    /// The manifest's counts are not what the bundle holds.
    #[error("manifest: says {manifest} {what}, the bundle holds {found}")]
    Counts {
        what: &'static str,
        manifest: u64,
        found: u64,
    },
    /// A limit of the format was exceeded.
    #[error("limit: more than {limit} {what}")]
    Limit { what: &'static str, limit: u64 },
}

impl BundleError {
    /// A stable code for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "io",
            BundleError::Magic => "magic",
            BundleError::Truncated { .. } => "truncated",
            BundleError::Framing { .. } => "framing",
            BundleError::Checkpoint { .. } => "checkpoint",
            BundleError::Consistency { .. } => "consistency",
            BundleError::Entry { .. } => "entry",
            BundleError::Purged { .. } => "purged",
            BundleError::PurgeRecord { .. } => "purge_record",
            BundleError::MultiProof { .. } => "multi_proof",
            BundleError::Manifest { .. } => "manifest",
            BundleError::ContentsHash => "contents_hash",
            BundleError::Counts { .. } => "counts",
            BundleError::Limit { .. } => "limit",
        }
    }

    /// True when the bundle could not be read at all (input failure),
    /// rather than read and found not to verify.
    pub fn is_io(&self) -> bool {
        matches!(self, BundleError::Io { .. })
    }
}

/// Why a bundle could not be written. The caller's mistakes (order,
/// indices outside the tree) are told apart from the tree disagreeing with
/// an entry and from output failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing the output failed.
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    /// The checkpoint note given is not a checkpoint, or its origin is the
    /// manifest's tag.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Entries must come in strictly ascending index order.
    #[error("entry {index}: not after entry {previous} (entries go in ascending index order)")]
    Order { index: u64, previous: u64 },
    /// The entry is not in the checkpoint's tree.
    #[error("entry {index}: not in the checkpoint's tree of size {size}")]
    OutsideTree { index: u64, size: u64 },
    /// The entry's commitment is not the tree's leaf at its index.
    #[error("entry {index}: its commitment is not the tree's leaf {index}")]
    LeafMismatch { index: u64 },
    /// The hash reader failed.
    #[error("entry {index}: reading the tree: {message}")]
    Tree { index: u64, message: String },
    /// A purged entry names a purge record not added before it.
    #[error("entry {index}: its purge record {record} was not added before it")]
    MissingPurgeRecord { index: u64, record: u64 },
    /// A field is over its limit.
    #[error("limit: {0}")]
    Limit(String),
    /// A manifest field cannot be written (or the note not signed).
    #[error("manifest: {0}")]
    Manifest(String),
    /// A previous call failed: the output is incomplete.
    #[error("an earlier write failed: the bundle is incomplete")]
    Failed,
}

impl WriteError {
    /// A stable code for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::Io(_) => "io",
            WriteError::Checkpoint(_) => "checkpoint",
            WriteError::Order { .. } => "order",
            WriteError::OutsideTree { .. } => "outside_tree",
            WriteError::LeafMismatch { .. } => "leaf_mismatch",
            WriteError::Tree { .. } => "tree",
            WriteError::MissingPurgeRecord { .. } => "missing_purge_record",
            WriteError::Limit(_) => "limit",
            WriteError::Manifest(_) => "manifest",
            WriteError::Failed => "failed",
        }
    }
}
