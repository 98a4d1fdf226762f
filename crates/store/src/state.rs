//! Small state files, each replaced atomically as a whole.
//!
//! - The writer generation: a counter durably incremented every time a writer
//!   opens the log. It is part of every record nonce, so an index that is
//!   reassigned after a crash is never sealed twice under one nonce.
//! - The segment snapshot: each segment's committed length at a known index
//!   size, written when a checkpoint is published, so recovery only reads the
//!   index entries after that point to learn where each segment ends.
//!
//! Formats (see `docs/formats/state.md`): `"STELEGEN" | version u8 = 1 |
//! generation u32 | crc32 u32` and `"STELESTA" | version u8 = 1 | index size
//! u64 | count u32 | count x (segment id u32, length u64) | crc32 u32`.

use std::path::Path;

use crate::error::{StoreError, StoreResult};
use crate::fsutil::{self, crc32};

const GEN_MAGIC: &[u8; 8] = b"STELEGEN";
const SNAP_MAGIC: &[u8; 8] = b"STELESTA";
const VERSION: u8 = 1;

fn check_frame<'a>(path: &Path, bytes: &'a [u8], magic: &[u8; 8]) -> StoreResult<&'a [u8]> {
    if bytes.len() < 13 || &bytes[..8] != magic {
        return Err(StoreError::corrupt(
            path,
            0,
            "not the expected Stele state file",
        ));
    }
    fsutil::check_trailing_crc(path, bytes, "state file")?;
    let split = bytes.len() - 4;
    if bytes[8] != VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported state version {}", bytes[8]),
        ));
    }
    Ok(&bytes[9..split])
}

fn frame(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + body.len());
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the current writer generation (0 if never written).
pub fn read_generation(path: &Path) -> StoreResult<u32> {
    match fsutil::read_optional(path)? {
        None => Ok(0),
        Some(bytes) => {
            let body = check_frame(path, &bytes, GEN_MAGIC)?;
            let arr: [u8; 4] = body
                .try_into()
                .map_err(|_| StoreError::corrupt(path, 9, "generation has the wrong length"))?;
            Ok(u32::from_be_bytes(arr))
        }
    }
}

/// Durably increments the writer generation and returns the new value. Crash
/// story: the new value is used only after this returns, when it is durable;
/// a crash before that leaves the old value, which nothing used yet.
pub fn bump_generation(path: &Path) -> StoreResult<u32> {
    bump_generation_past(path, 0)
}

/// Like [`bump_generation`], but the new value is also above `at_least`
/// (the newest generation another file records). Same crash story.
pub fn bump_generation_past(path: &Path, at_least: u32) -> StoreResult<u32> {
    let next = read_generation(path)?
        .max(at_least)
        .checked_add(1)
        .ok_or_else(|| StoreError::Invalid("writer generation exhausted (2^32 opens)".into()))?;
    fsutil::atomic_replace(path, &frame(GEN_MAGIC, &next.to_be_bytes()), 0o644)?;
    Ok(next)
}

/// Committed segment lengths at a given index size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentSnapshot {
    pub index_size: u64,
    pub lengths: Vec<(u32, u64)>,
}

/// Reads the snapshot, or `None` when there is none yet.
pub fn read_snapshot(path: &Path) -> StoreResult<Option<SegmentSnapshot>> {
    let Some(bytes) = fsutil::read_optional(path)? else {
        return Ok(None);
    };
    let body = check_frame(path, &bytes, SNAP_MAGIC)?;
    let bad = || StoreError::corrupt(path, 9, "segment snapshot is malformed");
    if body.len() < 12 {
        return Err(bad());
    }
    let index_size = u64::from_be_bytes(body[..8].try_into().map_err(|_| bad())?);
    let count = u32::from_be_bytes(body[8..12].try_into().map_err(|_| bad())?) as usize;
    let rest = &body[12..];
    if rest.len() != count * 12 {
        return Err(bad());
    }
    let lengths = rest
        .chunks_exact(12)
        .map(|c| {
            let id = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let len = u64::from_be_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]);
            (id, len)
        })
        .collect();
    Ok(Some(SegmentSnapshot {
        index_size,
        lengths,
    }))
}

/// Replaces the snapshot atomically.
pub fn write_snapshot(path: &Path, snapshot: &SegmentSnapshot) -> StoreResult<()> {
    let mut body = Vec::with_capacity(12 + snapshot.lengths.len() * 12);
    body.extend_from_slice(&snapshot.index_size.to_be_bytes());
    body.extend_from_slice(&(snapshot.lengths.len() as u32).to_be_bytes());
    for (id, len) in &snapshot.lengths {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&len.to_be_bytes());
    }
    fsutil::atomic_replace(path, &frame(SNAP_MAGIC, &body), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_increments_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gen");
        assert_eq!(read_generation(&path).unwrap(), 0);
        assert_eq!(bump_generation(&path).unwrap(), 1);
        assert_eq!(bump_generation(&path).unwrap(), 2);
        assert_eq!(read_generation(&path).unwrap(), 2);
        assert_eq!(bump_generation_past(&path, 1).unwrap(), 3);
        assert_eq!(bump_generation_past(&path, 9).unwrap(), 10);
        assert_eq!(read_generation(&path).unwrap(), 10);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_generation(&path).is_err());
    }

    #[test]
    fn snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        assert_eq!(read_snapshot(&path).unwrap(), None);
        let snap = SegmentSnapshot {
            index_size: 42,
            lengths: vec![(1, 100), (3, 7000)],
        };
        write_snapshot(&path, &snap).unwrap();
        assert_eq!(read_snapshot(&path).unwrap(), Some(snap));
    }
}
