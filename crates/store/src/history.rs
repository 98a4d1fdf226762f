//! Every signed checkpoint the log has published, append-only.
//!
//! Keeping all of them lets anyone ask for a consistency proof between any
//! two, and lets `verify` check that the log never signed two inconsistent
//! tree heads. This module stores opaque note bytes with their tree size;
//! it does not parse or verify them.
//!
//! Layout (see `docs/formats/checkpoints.md`): a sequence of records
//! `"CKPT" | size u64 | note length u32 | note bytes | crc32 u32`, where the
//! checksum covers size, length and note.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{StoreError, StoreResult};
use crate::fsutil::{self, crc32};

const MAGIC: &[u8; 4] = b"CKPT";
/// Upper bound on one stored note; a signed checkpoint is a few hundred bytes.
pub const MAX_NOTE_LEN: u32 = 64 * 1024;

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: Vec<u8>,
}

/// Reads every complete record. A torn last record (a crash during its
/// append) is reported as `torn_tail = Some(offset)`; a bad record followed
/// by more data is corruption.
pub fn read_all(path: &Path) -> StoreResult<(Vec<StoredCheckpoint>, Option<u64>)> {
    let bytes = fsutil::read_optional(path)?.unwrap_or_default();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match parse_one(&bytes[pos..]) {
            Some((record, len)) => {
                out.push(record);
                pos += len;
            }
            None => {
                // A crash can tear only the last append. So the unparsable
                // rest of the file is a torn tail only if it is shorter than
                // one record can be and holds no complete record after it;
                // anything else was altered and is never cut silently.
                let rest = &bytes[pos..];
                let later_record = (1..rest.len())
                    .any(|i| rest[i..].starts_with(MAGIC) && parse_one(&rest[i..]).is_some());
                if rest.len() <= 20 + MAX_NOTE_LEN as usize
                    && !later_record
                    && !complete_but_bad(rest)
                {
                    return Ok((out, Some(pos as u64)));
                }
                return Err(StoreError::corrupt(
                    path,
                    pos as u64,
                    "checkpoint history record is corrupt",
                ));
            }
        }
    }
    Ok((out, None))
}

/// A record whose declared length fits exactly in what is left of the file
/// but whose checksum fails: complete, so not torn, but altered.
fn complete_but_bad(rest: &[u8]) -> bool {
    if rest.len() < 20 || &rest[..4] != MAGIC {
        return false;
    }
    let declared = 16 + u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize + 4;
    declared == rest.len()
}

fn parse_one(bytes: &[u8]) -> Option<(StoredCheckpoint, usize)> {
    if bytes.len() < 20 || &bytes[..4] != MAGIC {
        return None;
    }
    let size = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
    let note_len = u32::from_be_bytes(bytes[12..16].try_into().ok()?);
    if note_len > MAX_NOTE_LEN {
        return None;
    }
    let end = 16 + note_len as usize;
    if bytes.len() < end + 4 {
        return None;
    }
    let stored = u32::from_be_bytes(bytes[end..end + 4].try_into().ok()?);
    if crc32(&bytes[4..end]) != stored {
        return None;
    }
    Some((
        StoredCheckpoint {
            size,
            note: bytes[16..end].to_vec(),
        },
        end + 4,
    ))
}

/// Appender for the history file.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    file: File,
}

impl HistoryWriter {
    /// Opens (creating if needed) the history for appending. If `torn_at` is
    /// given (from [`read_all`]), the torn tail is cut first, durably.
    pub fn open(path: &Path, torn_at: Option<u64>) -> StoreResult<HistoryWriter> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        if let Some(at) = torn_at {
            file.set_len(at)
                .map_err(|e| StoreError::io("truncate", path, e))?;
            file.sync_all()
                .map_err(|e| StoreError::io("fsync", path, e))?;
        }
        if !existed {
            file.sync_all()
                .map_err(|e| StoreError::io("fsync", path, e))?;
            fsutil::fsync_dir(fsutil::parent_of(path))?;
        }
        Ok(HistoryWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one checkpoint and fdatasyncs. Crash story: before return the
    /// record may be absent or torn (cut at the next open, and the checkpoint
    /// was never published); after return it is durable.
    pub fn append(&mut self, size: u64, note: &[u8]) -> StoreResult<()> {
        if note.len() > MAX_NOTE_LEN as usize {
            return Err(StoreError::Invalid("checkpoint note too large".into()));
        }
        let mut record = Vec::with_capacity(20 + note.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&size.to_be_bytes());
        record.extend_from_slice(&(note.len() as u32).to_be_bytes());
        record.extend_from_slice(note);
        let crc = crc32(&record[4..]);
        record.extend_from_slice(&crc.to_be_bytes());
        self.file
            .write_all(&record)
            .map_err(|e| StoreError::io("write", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut w = HistoryWriter::open(&path, None).unwrap();
        w.append(1, b"note one\n").unwrap();
        w.append(5, b"note five\n").unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"CKPT\0\0\0\0\0\0\0\x09\0\0\0\x20abc").unwrap();
        drop(f);
        let (all, torn) = read_all(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1],
            StoredCheckpoint {
                size: 5,
                note: b"note five\n".to_vec()
            }
        );
        assert!(torn.is_some());
        let mut w = HistoryWriter::open(&path, torn).unwrap();
        w.append(9, b"nine\n").unwrap();
        let (all, torn) = read_all(&path).unwrap();
        assert_eq!((all.len(), torn), (3, None));

        // A corrupt complete record is an error, not a cut, even the last one.
        let mut last = std::fs::read(&path).unwrap();
        let n = last.len();
        last[n - 6] ^= 1;
        std::fs::write(&path, &last).unwrap();
        assert!(read_all(&path).is_err());
        last[n - 6] ^= 1;
        std::fs::write(&path, &last).unwrap();
        // A huge length in a middle record does not make it look torn.
        let mut bytes = std::fs::read(&path).unwrap();
        let saved = bytes[12];
        bytes[12] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_all(&path).is_err());
        bytes[12] = saved;
        std::fs::write(&path, &bytes).unwrap();
        // A corrupt record in the middle is an error, not a cut.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[18] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_all(&path).is_err());
    }
}
