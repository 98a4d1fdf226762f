//! Evidence bundles: one self-contained file holding selected log entries
//! and everything a third party needs to check them offline with nothing
//! but the log's verifier key.
//!
//! A bundle is a magic line followed by typed, length-prefixed records: the
//! log's signed checkpoint, an optional consistency proof from an older
//! tree size, the entries in ascending log index (events with their salt
//! and canonical envelope, entries whose content a retention purge deleted,
//! named by their commitment, and the signed `retention.purge` events that
//! record those purges), a compact multi-proof carried in the records
//! themselves, and a manifest signed with the log's key. The byte format is
//! `docs/formats/bundle.md`.
//!
//! This crate is pure, like `stele-tlog`: it reads from any
//! [`std::io::Read`], writes to any [`std::io::Write`], and does no file
//! I/O, reads no clock and draws no randomness. Both directions stream:
//! [`BundleWriter`] and [`verify`] hold O(log n) hashes of the tree and the
//! purge records (at most [`MAX_PURGE_RECORDS`]), never the entries, so a
//! bundle of millions of events is written and checked in bounded memory.
//! It knows nothing of data directories, keys on disk or queries: the log
//! crate selects the entries and signs; this crate frames and proves.

mod error;
mod format;
mod manifest;
pub mod multiproof;
mod purge;
mod verify;
mod write;

pub use error::{BundleError, WriteError};
pub use format::{
    MAGIC, MAX_CONSISTENCY_HASHES, MAX_ENTRIES, MAX_EVENT_BYTES, MAX_GAP_HASHES,
    MAX_INCLUSION_HASHES, MAX_NOTE_BYTES, MAX_PURGE_RECORDS, MAX_QUERY_BYTES, RecordType,
};
pub use manifest::{MANIFEST_TAG, Manifest, ManifestFields};
pub use purge::PurgeRecord;
pub use verify::{ConsistencyCheck, PurgedEpoch, Report, verify};
pub use write::{BundleWriter, Consistency, Summary};
