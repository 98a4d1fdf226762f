//! The numbers that cross the log crate's edges, typed: an entry's place in
//! the log, and a segment's id. Inside the engine they are plain integers
//! (offsets into the index, keys of its maps); what the log hands out or
//! takes from the server, the CLI or a test is one of these, so an entry
//! index is never passed where a tree size or a segment id is meant.
//! Both serialize as the bare number.

use serde::{Deserialize, Serialize};

/// The index of an entry: its leaf in the Merkle tree and its record in
/// the index file, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryIndex(pub u64);

/// The id of a segment (one stream's events of one UTC day), as its
/// header, its data key file (`keys/deks/<id>.dek`) and its purge record
/// name it. Ids are never reused, purged segments' included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SegmentId(pub u32);

impl std::fmt::Display for EntryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
