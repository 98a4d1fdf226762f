//! Purge records ("tombstones"): what a retention purge removed, and why.
//!
//! When an epoch (one segment: one stream, one UTC day) is purged, its
//! segment file and data key are deleted but its index records and Merkle
//! leaves stay, so every proof of every other entry keeps verifying. The
//! tombstone `segments/<stream>/<YYYY-MM-DD>.purged` replaces the segment
//! file: it names the segment, the entries it held (count, first, last,
//! ranges and a digest of every index), when and under which policy the
//! purge was decided, and the index of the signed `retention.purge` system
//! event in the log. It keeps the segment id reserved forever.
//!
//! The tombstone is JSON (one object, see `docs/formats/purge.md`), written
//! by atomic replace; it is small and public information (no event content).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stele_event::time::{Day, day_number};
use stele_store::fsutil;
use stele_store::index::IndexFile;

use crate::error::{LogError, LogResult};
use crate::ids::SegmentId;

/// Format version of a tombstone.
pub const TOMBSTONE_VERSION: u32 = 1;

/// At most this many index ranges are listed; beyond, only the digest,
/// first, last and count describe the entries (the event must stay under
/// the event size limit).
pub const MAX_LISTED_RANGES: usize = 512;

/// The record of one purged (or being purged) segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// Always [`TOMBSTONE_VERSION`].
    pub v: u32,
    pub segment: SegmentId,
    pub stream: String,
    /// The epoch as `YYYY-MM-DD` (UTC).
    pub epoch: Day,
    /// The same epoch as a day number (days since 1970-01-01); the log
    /// refuses a record where the two differ.
    #[serde(with = "day_number")]
    pub epoch_day: Day,
    /// When the purge was decided (Unix seconds, the clock of the decider).
    pub decided_at: i64,
    /// Earliest time the retention policy allowed the purge (Unix seconds).
    pub purge_after: i64,
    /// SHA-256 (hex) of the policy version whose rules were applied.
    pub policy: String,
    /// Who asked (`retention` for the scheduler, or the principal).
    pub requested_by: String,
    /// Number of entries the segment held.
    pub entries: u64,
    /// Lowest and highest index of those entries (0 when there are none).
    pub first: u64,
    pub last: u64,
    /// Inclusive index ranges, when there are at most
    /// [`MAX_LISTED_RANGES`] of them.
    pub ranges: Option<Vec<[u64; 2]>>,
    /// Hex SHA-256 of `"stele/purge-indices/v1\n"` followed by every index
    /// (u64 big-endian, ascending).
    pub indices_sha256: String,
    /// Index of the `retention.purge` system event; `None` until it is
    /// durable (a crash right after the decision).
    pub event_index: Option<u64>,
    /// Index of the `retention.due` event that announced the purge a grace
    /// period before it was decided (see `announce.rs`); absent in purge
    /// records written before announcements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<u64>,
}

/// The entries of one segment, read from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntries {
    pub entries: u64,
    pub first: u64,
    pub last: u64,
    pub ranges: Vec<[u64; 2]>,
    pub indices_sha256: String,
}

/// Digests a stream of indices the way [`Tombstone::indices_sha256`] says.
#[derive(Debug, Clone)]
pub struct IndexDigest {
    hasher: Sha256,
    entries: u64,
    first: u64,
    last: u64,
    ranges: Vec<[u64; 2]>,
}

impl Default for IndexDigest {
    fn default() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"stele/purge-indices/v1\n");
        IndexDigest {
            hasher,
            entries: 0,
            first: 0,
            last: 0,
            ranges: Vec::new(),
        }
    }
}

impl IndexDigest {
    /// Adds the next index (ascending).
    pub fn push(&mut self, index: u64) {
        self.hasher.update(index.to_be_bytes());
        if self.entries == 0 {
            self.first = index;
        }
        self.last = index;
        self.entries += 1;
        match self.ranges.last_mut() {
            Some(range) if range[1] + 1 == index => range[1] = index,
            _ => self.ranges.push([index, index]),
        }
    }

    pub fn finish(self) -> SegmentEntries {
        SegmentEntries {
            entries: self.entries,
            first: self.first,
            last: self.last,
            ranges: self.ranges,
            indices_sha256: stele_tlog::hash::hex(&self.hasher.finalize()),
        }
    }
}

/// Reads the whole index and describes the entries of `segment`.
pub fn segment_entries(index: &IndexFile, segment: u32) -> LogResult<SegmentEntries> {
    let mut digest = IndexDigest::default();
    let total = index.len();
    let mut start = 0;
    while start < total {
        let count = (total - start).min(65_536);
        for (offset, record) in index.read_range(start, count)?.iter().enumerate() {
            if record.segment_id == segment {
                digest.push(start + offset as u64);
            }
        }
        start += count;
    }
    Ok(digest.finish())
}

impl Tombstone {
    /// Whether `index` was one of the purged entries (by first/last and,
    /// when listed, the ranges).
    pub fn covers(&self, index: u64) -> bool {
        if self.entries == 0 || index < self.first || index > self.last {
            return false;
        }
        match &self.ranges {
            Some(ranges) => ranges.iter().any(|r| r[0] <= index && index <= r[1]),
            None => true,
        }
    }

    /// Checks the tombstone against the entries the index holds for its
    /// segment.
    pub fn matches(&self, entries: &SegmentEntries) -> Result<(), String> {
        let listed_ok = match &self.ranges {
            Some(ranges) => ranges == &entries.ranges,
            None => entries.ranges.len() > MAX_LISTED_RANGES,
        };
        if self.entries != entries.entries
            || self.first != entries.first
            || self.last != entries.last
            || self.indices_sha256 != entries.indices_sha256
            || !listed_ok
        {
            return Err(format!(
                "says segment {} held {} entries ({}..={}, digest {}), but the index gives {} ({}..={}, digest {})",
                self.segment,
                self.entries,
                self.first,
                self.last,
                self.indices_sha256,
                entries.entries,
                entries.first,
                entries.last,
                entries.indices_sha256
            ));
        }
        Ok(())
    }

    pub fn read(path: &Path) -> LogResult<Tombstone> {
        let bytes = fsutil::read(path)?;
        let tombstone: Tombstone = serde_json::from_slice(&bytes).map_err(|e| {
            LogError::Integrity(format!("{}: not a purge record: {e}", path.display()))
        })?;
        if tombstone.v != TOMBSTONE_VERSION {
            return Err(LogError::Integrity(format!(
                "{}: unsupported purge record version {}",
                path.display(),
                tombstone.v
            )));
        }
        Ok(tombstone)
    }

    /// Writes (or rewrites) the tombstone by atomic replace. Crash: either
    /// the old content or the new one is there, never a mix.
    pub fn write(&self, path: &Path) -> LogResult<()> {
        fsutil::atomic_replace(path, &self.encode()?, 0o644)?;
        Ok(())
    }

    /// The bytes of the record's file: pretty JSON and a newline.
    fn encode(&self) -> LogResult<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| LogError::Internal(format!("purge record: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The `attributes` of the `retention.purge` system event: everything
    /// in the tombstone but the event's own index. Deterministic, so a
    /// retried append after a crash is recognised as the same event.
    pub fn event_attributes(&self) -> serde_json::Value {
        crate::SystemEvent::retention_purge(self).attributes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ranges_and_cover() {
        let mut digest = IndexDigest::default();
        for i in [3, 4, 5, 9, 11, 12] {
            digest.push(i);
        }
        let entries = digest.finish();
        assert_eq!(entries.ranges, vec![[3, 5], [9, 9], [11, 12]]);
        assert_eq!((entries.entries, entries.first, entries.last), (6, 3, 12));
        let tombstone = Tombstone {
            v: 1,
            segment: SegmentId(7),
            stream: "ops".into(),
            epoch: "2026-01-01".parse().unwrap(),
            epoch_day: Day::from_number(20454).unwrap(),
            decided_at: 0,
            purge_after: 0,
            policy: String::new(),
            requested_by: "retention".into(),
            entries: entries.entries,
            first: entries.first,
            last: entries.last,
            ranges: Some(entries.ranges.clone()),
            indices_sha256: entries.indices_sha256.clone(),
            event_index: None,
            announced: None,
        };
        assert!(tombstone.covers(4) && tombstone.covers(9) && tombstone.covers(12));
        assert!(!tombstone.covers(6) && !tombstone.covers(2) && !tombstone.covers(13));
        assert!(tombstone.matches(&entries).is_ok());
        let mut other = IndexDigest::default();
        for i in [3, 4, 5, 9, 11] {
            other.push(i);
        }
        assert!(tombstone.matches(&other.finish()).is_err());
    }

    /// Purge records and `holds.json` written before days were typed
    /// (the fuzz corpus, made by a real log) read back and encode to the
    /// very same bytes: the epoch as text and as a number, the hold dates
    /// as text.
    #[test]
    fn records_written_before_typed_days_encode_byte_for_byte() {
        let tombstones: [&[u8]; 3] = [
            include_bytes!("../../../fuzz/corpus/tombstone/2026-01-01.purged"),
            include_bytes!("../../../fuzz/corpus/tombstone/2026-01-02.purged"),
            include_bytes!("../../../fuzz/corpus/tombstone/2026-01-03.purged"),
        ];
        for (n, bytes) in tombstones.into_iter().enumerate() {
            let tombstone: Tombstone = serde_json::from_slice(bytes).unwrap();
            assert_eq!(tombstone.epoch.to_string(), format!("2026-01-0{}", n + 1));
            assert_eq!(tombstone.epoch_day.number(), 20_454 + n as u32);
            assert_eq!(tombstone.encode().unwrap(), bytes);
        }
        let holds: &[u8] = include_bytes!("../../../fuzz/corpus/holds_json/holds.json");
        let parsed = crate::governance::parse_holds(Path::new("holds.json"), holds).unwrap();
        assert!(parsed.iter().any(|h| h.from.is_some()) && parsed.iter().any(|h| h.to.is_some()));
        assert_eq!(crate::governance::encode_holds(&parsed).unwrap(), holds);
        // A hold day that is no calendar day makes the file unreadable
        // (it used to be read, then ignored: the hold unbounded there).
        let altered = String::from_utf8(holds.to_vec()).unwrap().replacen(
            "\"2026-01-01\"",
            "\"2026-02-30\"",
            1,
        );
        let refused = crate::governance::parse_holds(Path::new("holds.json"), altered.as_bytes());
        assert!(refused.is_err_and(|e| e.to_string().contains("not a calendar date")));
    }
}
