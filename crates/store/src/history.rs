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
//!
//! The history grows by one record per publish for the life of the log, so
//! nothing here holds it in memory: [`scan`] streams it once at open and
//! keeps a [`HistoryIndex`] of one [`Mark`] per [`MARK_EVERY`] records;
//! [`HistoryReader`] then reads any record or range with one seek and at
//! most `MARK_EVERY - 1` skipped records.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{StoreError, StoreResult};
use crate::fileio::{self, Open};
use crate::fsutil::{self, crc32};

const MAGIC: &[u8; 4] = b"CKPT";
/// Upper bound on one stored note; a signed checkpoint is a few hundred bytes.
pub const MAX_NOTE_LEN: u32 = 64 * 1024;
/// Bytes of a record around its note: magic, size, length, checksum.
const RECORD_OVERHEAD: u64 = 20;
/// Records between two marks of the in-memory index (16 bytes per mark).
pub const MARK_EVERY: u64 = 256;

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: Vec<u8>,
}

/// Where record number `k * MARK_EVERY` starts, and its tree size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub offset: u64,
    pub size: u64,
}

/// A sparse index of the history: how many records it holds, where its
/// complete records end, and a [`Mark`] every [`MARK_EVERY`] records.
/// Readers never read past `end`, so a record being appended is invisible
/// until [`HistoryIndex::push`] covers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryIndex {
    marks: Vec<Mark>,
    count: u64,
    end: u64,
    last_size: Option<u64>,
}

impl HistoryIndex {
    /// Number of records.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Byte length of the complete records.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Tree size of the last record.
    pub fn last_size(&self) -> Option<u64> {
        self.last_size
    }

    /// Records that a record of tree `size` and byte length `len` starts at
    /// `offset`, which must be the current end.
    pub fn push(&mut self, offset: u64, size: u64, len: u64) {
        debug_assert_eq!(offset, self.end, "history records are contiguous");
        if self.count.is_multiple_of(MARK_EVERY) {
            self.marks.push(Mark { offset, size });
        }
        self.count += 1;
        self.end = offset + len;
        self.last_size = Some(size);
    }

    /// Where to read from to reach record `k` (the end when `k` is past
    /// the last record).
    pub fn cursor(&self, k: u64) -> Cursor {
        if k >= self.count {
            return Cursor {
                offset: self.end,
                skip: 0,
                end: self.end,
            };
        }
        Cursor {
            offset: self.marks[(k / MARK_EVERY) as usize].offset,
            skip: k % MARK_EVERY,
            end: self.end,
        }
    }

    /// Where to read from to find the records of tree `size`: the last
    /// mark whose size is at most `size` (records are in non-decreasing
    /// size order). `None` when every record is larger.
    pub fn cursor_for_size(&self, size: u64) -> Option<Cursor> {
        let after = self.marks.partition_point(|m| m.size <= size);
        let mark = self.marks.get(after.checked_sub(1)?)?;
        Some(Cursor {
            offset: mark.offset,
            skip: 0,
            end: self.end,
        })
    }
}

/// A place to start reading the history: a record boundary, records to
/// skip from there, and the end of the records a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    offset: u64,
    skip: u64,
    end: u64,
}

/// What [`scan`] learns from the history file.
#[derive(Debug, Default)]
pub struct Scan {
    pub index: HistoryIndex,
    /// The last complete record (the trusted prefix at open).
    pub last: Option<StoredCheckpoint>,
    /// The record before it.
    pub previous: Option<StoredCheckpoint>,
    /// A torn last record (a crash during its append) starts here.
    pub torn_at: Option<u64>,
}

/// Reads one record from `reader`, which holds `remaining` more bytes.
/// `Ok(None)` when the bytes there are not a complete valid record.
fn read_record(
    reader: &mut impl Read,
    remaining: u64,
) -> std::io::Result<Option<(StoredCheckpoint, u64)>> {
    if remaining < RECORD_OVERHEAD {
        return Ok(None);
    }
    let mut head = [0u8; 16];
    reader.read_exact(&mut head)?;
    if &head[..4] != MAGIC {
        return Ok(None);
    }
    let [_, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7, n0, n1, n2, n3] = head;
    let size = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let note_len = u32::from_be_bytes([n0, n1, n2, n3]);
    let len = RECORD_OVERHEAD + u64::from(note_len);
    if note_len > MAX_NOTE_LEN || len > remaining {
        return Ok(None);
    }
    let mut rest = vec![0u8; note_len as usize + 4];
    reader.read_exact(&mut rest)?;
    let (note, stored) = rest.split_at(note_len as usize);
    let mut covered = Vec::with_capacity(12 + note.len());
    covered.extend_from_slice(&head[4..]);
    covered.extend_from_slice(note);
    if crc32(&covered).to_be_bytes() != stored {
        return Ok(None);
    }
    rest.truncate(note_len as usize);
    Ok(Some((StoredCheckpoint { size, note: rest }, len)))
}

/// Streams the whole history once: builds its index, keeps the last two
/// records, and finds a torn tail. A torn last record (a crash during its
/// append) is reported as `torn_at`; a bad record followed by more data is
/// corruption. Memory: the index and two records, whatever the file's size.
pub fn scan(path: &Path) -> StoreResult<Scan> {
    let mut out = Scan::default();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut pos = 0u64;
    while pos < len {
        let record =
            read_record(&mut reader, len - pos).map_err(|e| StoreError::io("read", path, e))?;
        let Some((record, record_len)) = record else {
            return classify_tail(path, &mut reader, pos, len).map(|torn_at| {
                out.torn_at = Some(torn_at);
                out
            });
        };
        out.index.push(pos, record.size, record_len);
        out.previous = out.last.replace(record);
        pos += record_len;
    }
    Ok(out)
}

/// The bytes from `pos` to `len` are not a valid record. A crash can tear
/// only the last append, so they are a torn tail only if they are shorter
/// than one record can be, are not a complete record with a bad checksum,
/// and hold no complete record after them; anything else was altered and
/// is never cut silently. Returns where the torn tail starts.
fn classify_tail(
    path: &Path,
    reader: &mut BufReader<File>,
    pos: u64,
    len: u64,
) -> StoreResult<u64> {
    let corrupt = || StoreError::corrupt(path, pos, "checkpoint history record is corrupt");
    if len - pos > RECORD_OVERHEAD + u64::from(MAX_NOTE_LEN) {
        return Err(corrupt());
    }
    reader
        .seek(SeekFrom::Start(pos))
        .map_err(|e| StoreError::io("seek", path, e))?;
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .map_err(|e| StoreError::io("read", path, e))?;
    let later_record = (1..rest.len()).any(|i| {
        rest[i..].starts_with(MAGIC)
            && matches!(
                read_record(&mut &rest[i..], (rest.len() - i) as u64),
                Ok(Some(_))
            )
    });
    // A complete record whose checksum fails is torn, not altered, when a
    // sector of it still holds zeros where its bytes belong (a power loss
    // kept the file's new length and only some of its sectors; see
    // `torn.rs`). Its clear head (magic, size, note length) is 16 bytes,
    // as a segment record's is.
    let torn = crate::torn::segment_record_tear(&rest, pos, rest.len() as u64).is_some();
    if later_record || (complete_but_bad(&rest) && !torn) {
        return Err(corrupt());
    }
    Ok(pos)
}

/// A record whose declared length fits exactly in what is left of the file
/// but whose checksum fails: complete, so not torn, but altered.
fn complete_but_bad(rest: &[u8]) -> bool {
    if rest.len() < RECORD_OVERHEAD as usize || &rest[..4] != MAGIC {
        return false;
    }
    let declared = RECORD_OVERHEAD as usize
        + u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize;
    declared == rest.len()
}

/// Reads records of a history from a [`Cursor`]. It reads the file
/// without any lock: records are only ever appended, and it never reads
/// past the cursor's end.
#[derive(Debug)]
pub struct HistoryReader {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
}

impl HistoryReader {
    /// Opens the history at `cursor`.
    pub fn open(path: &Path, cursor: Cursor) -> StoreResult<HistoryReader> {
        let mut file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
        file.seek(SeekFrom::Start(cursor.offset))
            .map_err(|e| StoreError::io("seek", path, e))?;
        let mut reader = HistoryReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(64 * 1024, file),
            pos: cursor.offset,
            end: cursor.end,
        };
        for _ in 0..cursor.skip {
            reader.next_record()?;
        }
        Ok(reader)
    }

    /// The next record, or `None` at the end. A record that no longer
    /// parses was altered since the index was built: corruption.
    pub fn next_record(&mut self) -> StoreResult<Option<StoredCheckpoint>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let record = read_record(&mut self.reader, self.end - self.pos)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        let Some((record, len)) = record else {
            return Err(StoreError::corrupt(
                &self.path,
                self.pos,
                "checkpoint history record is corrupt",
            ));
        };
        self.pos += len;
        Ok(Some(record))
    }

    /// The next `limit` records (fewer at the end).
    pub fn take(&mut self, limit: usize) -> StoreResult<Vec<StoredCheckpoint>> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.next_record()? {
                Some(record) => out.push(record),
                None => break,
            }
        }
        Ok(out)
    }

    /// The last record of tree `size` from here on, reading no further
    /// than the first larger size.
    pub fn find_size(&mut self, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        let mut found = None;
        while let Some(record) = self.next_record()? {
            if record.size > size {
                break;
            }
            if record.size == size {
                found = Some(record);
            }
        }
        Ok(found)
    }
}

/// Appender for the history file.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    file: File,
    end: u64,
}

/// Where [`HistoryWriter::append`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub offset: u64,
    pub len: u64,
}

impl HistoryWriter {
    /// Opens (creating if needed) the history for appending. If `torn_at` is
    /// given (from [`scan`]), the torn tail is cut first, durably.
    pub fn open(path: &Path, torn_at: Option<u64>) -> StoreResult<HistoryWriter> {
        let existed = path.exists();
        let file = fileio::open_write(path, Open::Create, 0o644)
            .map_err(|e| StoreError::io("open", path, e))?;
        if let Some(at) = torn_at {
            fileio::set_len(&file, path, at).map_err(|e| StoreError::io("truncate", path, e))?;
            fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
        }
        if !existed {
            fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
            fsutil::fsync_dir(fsutil::parent_of(path))?;
        }
        let end = file
            .metadata()
            .map_err(|e| StoreError::io("stat", path, e))?
            .len();
        Ok(HistoryWriter {
            path: path.to_path_buf(),
            file,
            end,
        })
    }

    /// Appends one checkpoint and fdatasyncs. Crash story: before return the
    /// record may be absent or torn (cut at the next open, and the checkpoint
    /// was never published); after return it is durable.
    pub fn append(&mut self, size: u64, note: &[u8]) -> StoreResult<Appended> {
        if note.len() > MAX_NOTE_LEN as usize {
            return Err(StoreError::Invalid("checkpoint note too large".into()));
        }
        let mut record = Vec::with_capacity(RECORD_OVERHEAD as usize + note.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&size.to_be_bytes());
        record.extend_from_slice(&(note.len() as u32).to_be_bytes());
        record.extend_from_slice(note);
        let crc = crc32(&record[4..]);
        record.extend_from_slice(&crc.to_be_bytes());
        fileio::write_at(&self.file, &self.path, &record, self.end)
            .map_err(|e| StoreError::io("write", &self.path, e))?;
        fileio::sync_data(&self.file, &self.path)
            .map_err(|e| StoreError::io("fdatasync", &self.path, e))?;
        let appended = Appended {
            offset: self.end,
            len: record.len() as u64,
        };
        self.end += appended.len;
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(path: &Path) -> StoreResult<(Vec<StoredCheckpoint>, Option<u64>)> {
        let scan = scan(path)?;
        let out = HistoryReader::open(path, scan.index.cursor(0))?.take(usize::MAX)?;
        assert_eq!(out.len() as u64, scan.index.count());
        assert_eq!(out.last(), scan.last.as_ref());
        Ok((out, scan.torn_at))
    }

    /// A power loss can keep a last record's length and lose some of its
    /// sectors (zeros where its bytes belong): torn, cut at the next open.
    /// The same record whole with one byte changed is altered: an error.
    #[test]
    fn a_last_record_with_a_zero_sector_is_torn_not_altered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut w = HistoryWriter::open(&path, None).unwrap();
        w.append(1, b"note one\n").unwrap();
        let last = w.append(2, "x".repeat(1500).as_bytes()).unwrap();
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        let sector = (last.offset / 512 + 1) * 512;
        torn[sector as usize..sector as usize + 512].fill(0);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(scan(&path).unwrap().torn_at, Some(last.offset));
        let mut altered = whole;
        altered[sector as usize + 10] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        assert!(scan(&path).is_err());
    }

    #[test]
    fn append_read_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut w = HistoryWriter::open(&path, None).unwrap();
        w.append(1, b"note one\n").unwrap();
        w.append(5, b"note five\n").unwrap();
        drop(w);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"CKPT\0\0\0\0\0\0\0\x09\0\0\0\x20abc").unwrap();
        drop(f);
        let (all_records, torn) = all(&path).unwrap();
        assert_eq!(all_records.len(), 2);
        assert_eq!(
            all_records[1],
            StoredCheckpoint {
                size: 5,
                note: b"note five\n".to_vec()
            }
        );
        let scanned = scan(&path).unwrap();
        assert_eq!(scanned.previous.unwrap().size, 1);
        assert!(torn.is_some());
        let mut w = HistoryWriter::open(&path, torn).unwrap();
        let appended = w.append(9, b"nine\n").unwrap();
        assert_eq!(appended.offset, torn.unwrap());
        let (all_records, torn) = all(&path).unwrap();
        assert_eq!((all_records.len(), torn), (3, None));

        // A corrupt complete record is an error, not a cut, even the last one.
        let mut last = std::fs::read(&path).unwrap();
        let n = last.len();
        last[n - 6] ^= 1;
        std::fs::write(&path, &last).unwrap();
        assert!(scan(&path).is_err());
        last[n - 6] ^= 1;
        std::fs::write(&path, &last).unwrap();
        // A huge length in a middle record does not make it look torn.
        let mut bytes = std::fs::read(&path).unwrap();
        let saved = bytes[12];
        bytes[12] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        assert!(scan(&path).is_err());
        bytes[12] = saved;
        std::fs::write(&path, &bytes).unwrap();
        // A corrupt record in the middle is an error, not a cut.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[18] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(scan(&path).is_err());
    }

    #[test]
    fn missing_file_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let scanned = scan(&dir.path().join("checkpoints")).unwrap();
        assert_eq!(scanned.index.count(), 0);
        assert!(scanned.last.is_none() && scanned.torn_at.is_none());
    }

    /// Pages and size lookups across many marks agree with a plain list,
    /// and records appended after the index was taken stay invisible.
    #[test]
    fn pages_and_lookups_across_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut w = HistoryWriter::open(&path, None).unwrap();
        let mut index = HistoryIndex::default();
        let mut expected = Vec::new();
        // Sizes 0, 3, 6, … with every tenth size stored twice.
        let mut size = 0u64;
        for i in 0..(3 * MARK_EVERY + 17) {
            let note = format!("note {i} of size {size}\n").into_bytes();
            let at = w.append(size, &note).unwrap();
            index.push(at.offset, size, at.len);
            expected.push(StoredCheckpoint { size, note });
            if i % 10 != 0 {
                size += 3;
            }
        }
        assert_eq!(scan(&path).unwrap().index, index);
        let page = |from: u64, limit: usize| {
            HistoryReader::open(&path, index.cursor(from))
                .unwrap()
                .take(limit)
                .unwrap()
        };
        let find = |size: u64| match index.cursor_for_size(size) {
            Some(cursor) => HistoryReader::open(&path, cursor)
                .unwrap()
                .find_size(size)
                .unwrap(),
            None => None,
        };
        for (from, limit) in [
            (0, 1),
            (0, 1000),
            (255, 2),
            (256, 256),
            (700, 500),
            (781, 5),
            (5000, 3),
        ] {
            let page = page(from, limit);
            let want: Vec<_> = expected
                .iter()
                .skip(from as usize)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(page, want, "page {from}+{limit}");
        }
        for probe in 0..=size + 2 {
            let want = expected.iter().rev().find(|c| c.size == probe).cloned();
            assert_eq!(find(probe), want, "size {probe}");
        }
        // A record appended later is not visible through the old index.
        w.append(size + 100, b"later\n").unwrap();
        assert_eq!(find(size + 100), None);
        assert_eq!(page(index.count(), 10), vec![]);
        assert_eq!(page(index.count() - 1, 10).len(), 1);
    }
}
