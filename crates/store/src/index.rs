//! The sequence index: one fixed-size record per log entry, in log order.
//!
//! The index is the durable truth of the log's length. Entry `i` is the
//! 64-byte record at byte `64 + 64 * i`; it holds the entry's commitment (the
//! Merkle leaf data) and where its sealed record lives. An entry exists once
//! its index record and the segment record it points at are both durable.
//! The writer fdatasyncs a batch's segment records and its index records at
//! the same time, so after a crash the last append's index records may point
//! at segment records that never reached the disk; the log's recovery checks
//! that tail against the segments and cuts it with [`IndexFile::cut_to`].
//! This module does not know about trees or keys.
//!
//! Layout (big-endian; see `docs/formats/index.md`):
//! ```text
//! header (64): "STELEIDX" | version u8 = 1 | 0u8 x3 | log id [16] | 0u8 x32 | crc32 u32
//! record (64): commitment [32] | segment id u32 | record length u32
//!              | record offset u64 | idempotency key hash u64 (0 = none)
//!              | 0u8 x4 | crc32 u32 (of the 60 bytes before)
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{StoreError, StoreResult};
use crate::fileio;
use crate::fsutil::{self, crc32};
use crate::segment::RecordLocation;

const MAGIC: &[u8; 8] = b"STELEIDX";
const VERSION: u8 = 1;
/// Most records one append may add. Recovery relies on it: a crash can tear
/// only the last append, so an invalid record followed by more than this
/// many records cannot be a torn tail and is reported as corruption.
pub const MAX_BATCH_RECORDS: u64 = 65_536;
/// Size of the header and of every record.
pub const RECORD_LEN: u64 = 64;
const HEADER_LEN: u64 = 64;

/// One entry of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    /// The Merkle leaf data of the entry.
    pub commitment: [u8; 32],
    pub segment_id: u32,
    pub location: RecordLocation,
    /// Hash of the entry's idempotency key (writer and client id), 0 when
    /// it has none. Kept here so that de-duplication state is durable in
    /// the same write as the entry itself.
    pub idempotency: u64,
}

impl IndexRecord {
    /// The 64 bytes of the record.
    pub fn encode(&self) -> [u8; RECORD_LEN as usize] {
        let mut out = [0u8; RECORD_LEN as usize];
        out[..32].copy_from_slice(&self.commitment);
        out[32..36].copy_from_slice(&self.segment_id.to_be_bytes());
        out[36..40].copy_from_slice(&self.location.len.to_be_bytes());
        out[40..48].copy_from_slice(&self.location.offset.to_be_bytes());
        out[48..56].copy_from_slice(&self.idempotency.to_be_bytes());
        let crc = crc32(&out[..60]);
        out[60..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a record; `None` when its checksum or reserved bytes are wrong.
    pub fn decode(bytes: &[u8]) -> Option<IndexRecord> {
        if bytes.len() != RECORD_LEN as usize {
            return None;
        }
        let stored = u32::from_be_bytes(bytes[60..64].try_into().ok()?);
        if crc32(&bytes[..60]) != stored || bytes[56..60].iter().any(|b| *b != 0) {
            return None;
        }
        Some(IndexRecord {
            commitment: bytes[..32].try_into().ok()?,
            segment_id: u32::from_be_bytes(bytes[32..36].try_into().ok()?),
            location: RecordLocation {
                len: u32::from_be_bytes(bytes[36..40].try_into().ok()?),
                offset: u64::from_be_bytes(bytes[40..48].try_into().ok()?),
            },
            idempotency: u64::from_be_bytes(bytes[48..56].try_into().ok()?),
        })
    }
}

fn encode_header(log_id: &[u8; 16]) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8] = VERSION;
    out[12..28].copy_from_slice(log_id);
    let crc = crc32(&out[..60]);
    out[60..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The log id in the header of the index at `path`, with the header
/// checked (magic, checksum, version); reads nothing else and changes
/// nothing, so a caller can refuse a foreign index before opening it.
pub fn read_log_id(path: &Path) -> StoreResult<[u8; 16]> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    read_header(&file, path)
}

fn read_header(file: &File, path: &Path) -> StoreResult<[u8; 16]> {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|_| StoreError::corrupt(path, 0, "index header is missing or truncated"))?;
    if &header[..8] != MAGIC {
        return Err(StoreError::corrupt(path, 0, "not a Stele index file"));
    }
    if crc32(&header[..60]) != u32::from_be_bytes([header[60], header[61], header[62], header[63]])
    {
        return Err(StoreError::corrupt(
            path,
            60,
            "index header checksum mismatch",
        ));
    }
    if header[8] != VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported index version {}", header[8]),
        ));
    }
    let mut log_id = [0u8; 16];
    log_id.copy_from_slice(&header[12..28]);
    Ok(log_id)
}

/// What [`scan`] found: the records to keep and where they end.
struct Scan {
    log_id: [u8; 16],
    /// Bytes to keep: the header and every valid record.
    keep: u64,
    recovery: IndexRecovery,
}

/// Reads the index and decides how much of it is the log (see
/// [`IndexFile::open`]); writes nothing.
fn scan(file: &File, path: &Path, trusted: u64) -> StoreResult<Scan> {
    let log_id = read_header(file, path)?;
    let file_len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    let whole = (file_len - HEADER_LEN) / RECORD_LEN;
    if whole < trusted {
        return Err(StoreError::corrupt(
            path,
            file_len,
            format!("index holds {whole} entries but a signed checkpoint covers {trusted}"),
        ));
    }
    // Check the untrusted tail record by record, reading in chunks.
    let mut valid = trusted;
    let chunk = 4096u64;
    let mut buf = vec![0u8; (chunk * RECORD_LEN) as usize];
    let mut invalid: Option<[u8; RECORD_LEN as usize]> = None;
    'scan: while valid < whole {
        let n = (whole - valid).min(chunk);
        let bytes = &mut buf[..(n * RECORD_LEN) as usize];
        file.read_exact_at(bytes, HEADER_LEN + valid * RECORD_LEN)
            .map_err(|e| StoreError::io("read", path, e))?;
        for record in bytes.chunks_exact(RECORD_LEN as usize) {
            if IndexRecord::decode(record).is_none() {
                let mut copy = [0u8; RECORD_LEN as usize];
                copy.copy_from_slice(record);
                invalid = Some(copy);
                break 'scan;
            }
            valid += 1;
        }
    }
    let keep = HEADER_LEN + valid * RECORD_LEN;
    // A whole record that fails its checks without the zeros an
    // interrupted write leaves was altered after it was written.
    if let Some(record) = invalid
        && !crate::torn::index_record_torn(&record)
    {
        return Err(StoreError::corrupt(
            path,
            keep,
            format!(
                "index record of entry {valid} is whole but fails its checksum or has reserved bytes set: altered after it was written, not torn by a crash (it does not end in the zeros an interrupted write leaves); nothing was cut"
            ),
        ));
    }
    // Zeros at the end are space written ahead of the records.
    let torn = fsutil::end_of_nonzero(file, keep, file_len)
        .map_err(|e| StoreError::io("read", path, e))?
        - keep;
    if torn > MAX_BATCH_RECORDS * RECORD_LEN {
        return Err(StoreError::corrupt(
            path,
            keep,
            format!(
                "index record of entry {valid} is invalid and {torn} bytes that are not zeros follow it: more than one append could have torn"
            ),
        ));
    }
    Ok(Scan {
        log_id,
        keep,
        recovery: IndexRecovery {
            entries: valid,
            cut_bytes: file_len - keep,
            torn_bytes: torn,
        },
    })
}

/// The open index file.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    /// Shared with [`IndexAppender`]s, which append from another thread.
    file: Arc<File>,
    /// Length of the file: records, then zeros written ahead of them
    /// (`fsutil::write_reserving`). Shared with appenders, which run one
    /// at a time.
    reserved_end: Arc<AtomicU64>,
    log_id: [u8; 16],
    /// Number of durable entries; shared with the [`IndexReader`]s, which
    /// see an entry once its record is durable.
    len: Arc<AtomicU64>,
}

/// Reads the records of an [`IndexFile`] from any thread, without the
/// owner: the entries are those the owner has counted durable
/// ([`IndexFile::note_appended`]) when each read begins.
#[derive(Debug, Clone)]
pub struct IndexReader {
    path: PathBuf,
    file: Arc<File>,
    len: Arc<AtomicU64>,
}

/// Appends records to an [`IndexFile`] (see [`IndexFile::appender_at`]).
#[derive(Debug, Clone)]
pub struct IndexAppender {
    path: PathBuf,
    file: Arc<File>,
    reserved_end: Arc<AtomicU64>,
    /// Entry number of the first record appended.
    first: u64,
}

impl IndexAppender {
    /// Writes `encoded` whole records (at most [`MAX_BATCH_RECORDS`]) as
    /// entries from the appender's first on, and fdatasyncs. The file grows
    /// ahead of its records by zeros (`fsutil::write_reserving`), so most
    /// syncs flush only the records. Crash story as
    /// [`IndexFile::append_and_sync`].
    pub fn append_and_sync(&self, encoded: &[u8]) -> StoreResult<()> {
        if encoded.is_empty()
            || !(encoded.len() as u64).is_multiple_of(RECORD_LEN)
            || encoded.len() as u64 > MAX_BATCH_RECORDS * RECORD_LEN
        {
            return Err(StoreError::Invalid(
                "index append must be 1..=65536 whole records".into(),
            ));
        }
        let mut reserved_end = self.reserved_end.load(Ordering::Acquire);
        let written = fsutil::write_reserving(
            &self.file,
            &self.path,
            HEADER_LEN + self.first * RECORD_LEN,
            encoded,
            &mut reserved_end,
        );
        self.reserved_end.store(reserved_end, Ordering::Release);
        written?;
        fileio::sync_data(&self.file, &self.path)
            .map_err(|e| StoreError::io("fdatasync", &self.path, e))
    }
}

/// What [`IndexFile::open`] found beyond the trusted prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecovery {
    /// Entries kept.
    pub entries: u64,
    /// Bytes cut from the end (torn or never-completed records, and the
    /// zeros written ahead of the records).
    pub cut_bytes: u64,
    /// Of those, the bytes up to the last one that is not zero: records of
    /// an append that did not finish (0 when only zeros are cut).
    pub torn_bytes: u64,
}

impl IndexFile {
    /// Creates an empty index, durable with its directory entry.
    pub fn create(path: &Path, log_id: [u8; 16]) -> StoreResult<IndexFile> {
        fsutil::create_new_durable(path, &encode_header(&log_id), 0o600)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            reserved_end: Arc::new(AtomicU64::new(HEADER_LEN)),
            log_id,
            len: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Opens the index. Records below `trusted` (the size of the last signed
    /// checkpoint) are not re-read here; records from `trusted` on are
    /// checked and the file is cut at the first torn one, or where the zeros
    /// written ahead of the records begin. Only the last append can be torn
    /// by a crash, and it was not acknowledged because its fdatasync never
    /// returned; so the cut is allowed only when the first invalid record
    /// bears the mark of an interrupted write (it ends in zeros:
    /// [`crate::torn::index_record_torn`]) and the bytes after it that are
    /// not zeros span at most [`MAX_BATCH_RECORDS`] records. Anything else
    /// is corruption, never repaired silently. The cut is fsynced before
    /// returning. A file shorter than `trusted` entries is corruption too.
    pub fn open(path: &Path, trusted: u64) -> StoreResult<(IndexFile, IndexRecovery)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        let scan = scan(&file, path, trusted)?;
        if scan.recovery.cut_bytes > 0 {
            // Crash story: the cut removes only records that were never
            // acknowledged (their batch did not finish its fdatasync, or they
            // are torn). If we crash during the cut, the next open cuts again.
            fileio::set_len(&file, path, scan.keep)
                .map_err(|e| StoreError::io("truncate", path, e))?;
            fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
        }
        Ok((
            IndexFile {
                path: path.to_path_buf(),
                file: Arc::new(file),
                reserved_end: Arc::new(AtomicU64::new(scan.keep)),
                log_id: scan.log_id,
                len: Arc::new(AtomicU64::new(scan.recovery.entries)),
            },
            scan.recovery,
        ))
    }

    /// Opens the index for reading only: the same checks as [`Self::open`],
    /// but nothing is cut; the returned recovery says what the next
    /// [`Self::open`] would cut. The file is opened read-only (no write
    /// permission needed); while a writer appends, the entries are those
    /// whose records were whole when the file was read.
    pub fn open_read_only(path: &Path, trusted: u64) -> StoreResult<(IndexFile, IndexRecovery)> {
        let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
        let scan = scan(&file, path, trusted)?;
        Ok((
            IndexFile {
                path: path.to_path_buf(),
                file: Arc::new(file),
                reserved_end: Arc::new(AtomicU64::new(scan.keep)),
                log_id: scan.log_id,
                len: Arc::new(AtomicU64::new(scan.recovery.entries)),
            },
            scan.recovery,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The random id written at creation; tells one data directory from another.
    pub fn log_id(&self) -> [u8; 16] {
        self.log_id
    }

    /// Number of durable entries.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of this index that other threads keep (see [`IndexReader`]).
    pub fn reader(&self) -> IndexReader {
        IndexReader {
            path: self.path.clone(),
            file: self.file.clone(),
            len: self.len.clone(),
        }
    }

    /// Appends `records` (already encoded, in order) and fdatasyncs. Crash
    /// story: before this returns, any prefix of the records may be durable
    /// (a torn one is cut at the next open); after, all are. The entries
    /// exist once the segment records they point to are durable too. On
    /// error the caller must stop writing and reopen.
    pub fn append_and_sync(&mut self, encoded: &[u8]) -> StoreResult<()> {
        self.appender_at(self.len()).append_and_sync(encoded)?;
        self.note_appended(encoded.len() as u64 / RECORD_LEN);
        Ok(())
    }

    /// A handle that writes records from entry `first` on, from another
    /// thread. Appends must not overlap and must follow each other (`first`
    /// is the entry after the last record written): one appender at a time,
    /// and the owner of the `IndexFile` learns of each with
    /// [`Self::note_appended`].
    pub fn appender_at(&self, first: u64) -> IndexAppender {
        IndexAppender {
            path: self.path.clone(),
            file: self.file.clone(),
            reserved_end: self.reserved_end.clone(),
            first,
        }
    }

    /// Counts `records` appended (and synced) through an [`IndexAppender`].
    pub fn note_appended(&mut self, records: u64) {
        self.len.fetch_add(records, Ordering::AcqRel);
    }

    /// Cuts the zeros written ahead of the records, when the index is
    /// closed and no appender is running (an appender's records beyond
    /// [`Self::len`] would be cut too). Crash story: no sync is needed; the
    /// file has either length after a crash, and zeros after the records
    /// are unused space either way.
    pub fn trim_reserved(&mut self) -> StoreResult<()> {
        let end = HEADER_LEN + self.len() * RECORD_LEN;
        if self.reserved_end.load(Ordering::Acquire) > end {
            fileio::set_len(&self.file, &self.path, end)
                .map_err(|e| StoreError::io("truncate", &self.path, e))?;
            self.reserved_end.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// Cuts the index back to `entries` records (fewer than it holds), for
    /// recovery only: the caller has established that the records cut were
    /// never acknowledged. The cut is fsynced before returning; a crash
    /// during it leaves either length, and the next open decides again.
    pub fn cut_to(&mut self, entries: u64) -> StoreResult<()> {
        if entries >= self.len() {
            return Err(StoreError::Invalid(format!(
                "cannot cut the index to {entries} entries: it holds {}",
                self.len()
            )));
        }
        let keep = HEADER_LEN + entries * RECORD_LEN;
        fileio::set_len(&self.file, &self.path, keep)
            .map_err(|e| StoreError::io("truncate", &self.path, e))?;
        fileio::sync_all(&self.file, &self.path)
            .map_err(|e| StoreError::io("fsync", &self.path, e))?;
        self.reserved_end.store(keep, Ordering::Release);
        self.len.store(entries, Ordering::Release);
        Ok(())
    }

    /// Narrows a read-only view to its first `entries` records (fewer than
    /// it holds): reads stop there; the file is not touched. For a view
    /// that leaves out what the next recovery would cut.
    pub fn limit(&mut self, entries: u64) {
        self.len.fetch_min(entries, Ordering::AcqRel);
    }

    /// Reads entry `index`.
    pub fn read(&self, index: u64) -> StoreResult<IndexRecord> {
        self.reader().read(index)
    }

    /// Reads entries `start..start+count`, checking each checksum.
    pub fn read_range(&self, start: u64, count: u64) -> StoreResult<Vec<IndexRecord>> {
        self.reader().read_range(start, count)
    }
}

impl IndexReader {
    /// Number of durable entries.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader that keeps the number of entries this one has now, however
    /// the index grows after.
    pub fn frozen(&self) -> IndexReader {
        IndexReader {
            path: self.path.clone(),
            file: self.file.clone(),
            len: Arc::new(AtomicU64::new(self.len())),
        }
    }

    /// Reads entry `index`.
    pub fn read(&self, index: u64) -> StoreResult<IndexRecord> {
        let mut records = self.read_range(index, 1)?;
        records
            .pop()
            .ok_or_else(|| StoreError::Invalid("empty read".into()))
    }

    /// Reads entries `start..start+count`, checking each checksum.
    pub fn read_range(&self, start: u64, count: u64) -> StoreResult<Vec<IndexRecord>> {
        let end = start
            .checked_add(count)
            .filter(|end| *end <= self.len())
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "entries {start}..{} are beyond the log size {}",
                    start.saturating_add(count),
                    self.len()
                ))
            })?;
        let mut buf = vec![0u8; ((end - start) * RECORD_LEN) as usize];
        self.file
            .read_exact_at(&mut buf, HEADER_LEN + start * RECORD_LEN)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        buf.chunks_exact(RECORD_LEN as usize)
            .enumerate()
            .map(|(i, bytes)| {
                IndexRecord::decode(bytes).ok_or_else(|| {
                    StoreError::corrupt(
                        &self.path,
                        HEADER_LEN + (start + i as u64) * RECORD_LEN,
                        format!("index record of entry {} is corrupt", start + i as u64),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> IndexRecord {
        IndexRecord {
            commitment: [i as u8; 32],
            segment_id: 1,
            location: RecordLocation {
                offset: 100 + i * 10,
                len: 10,
            },
            idempotency: i,
        }
    }

    #[test]
    fn append_reopen_and_cut_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut index = IndexFile::create(&path, [7u8; 16]).unwrap();
        let mut batch = Vec::new();
        for i in 0..10 {
            batch.extend_from_slice(&record(i).encode());
        }
        index.append_and_sync(&batch).unwrap();
        drop(index);
        // The file grew ahead of its records by zeros.
        let grown = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            grown,
            2 * (HEADER_LEN + 10 * RECORD_LEN) + fsutil::MIN_RESERVE
                - (HEADER_LEN + 10 * RECORD_LEN)
        );
        // Simulate a torn write: half a record after the tenth.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&record(10).encode()[..30], HEADER_LEN + 10 * RECORD_LEN)
            .unwrap();
        drop(f);
        let (index, rec) = IndexFile::open(&path, 5).unwrap();
        assert_eq!(
            rec,
            IndexRecovery {
                entries: 10,
                cut_bytes: grown - (HEADER_LEN + 10 * RECORD_LEN),
                torn_bytes: 30,
            }
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            HEADER_LEN + 10 * RECORD_LEN
        );
        assert_eq!(index.log_id(), [7u8; 16]);
        assert_eq!(index.read(3).unwrap(), record(3));
        assert!(index.read(10).is_err());

        // A whole record after the trusted prefix with a flipped bit is
        // corruption, not a tear: the open refuses and cuts nothing.
        drop(index);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(HEADER_LEN + 7 * RECORD_LEN + 5) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = IndexFile::open(&path, 5).unwrap_err().to_string();
        assert!(
            err.contains("entry 7") && err.contains("nothing was cut"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // A torn one (its first bytes, then the zeros it was written over)
        // is cut with everything after it.
        let at = (HEADER_LEN + 7 * RECORD_LEN) as usize;
        bytes[at + 5] ^= 1;
        bytes[at + 20..at + 64].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let (index, rec) = IndexFile::open(&path, 5).unwrap();
        assert_eq!(rec.entries, 7);
        assert_eq!(index.len(), 7);
        drop(index);
        // ...but within the trusted prefix it is an error on read, never a cut.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(HEADER_LEN + 2 * RECORD_LEN + 5) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (index, rec) = IndexFile::open(&path, 5).unwrap();
        assert_eq!(rec.entries, 7);
        assert!(matches!(index.read(2), Err(StoreError::Corrupt { .. })));
        // An invalid record with more than one batch after it is corruption.
        drop(index);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let mut many = Vec::new();
        for i in 7..(8 + MAX_BATCH_RECORDS) {
            many.extend_from_slice(&record(i).encode());
        }
        f.write_all_at(&many, HEADER_LEN + 7 * RECORD_LEN).unwrap();
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(HEADER_LEN + 7 * RECORD_LEN + 5) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            IndexFile::open(&path, 5),
            Err(StoreError::Corrupt { .. })
        ));
        bytes[(HEADER_LEN + 7 * RECORD_LEN + 5) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (index, _) = IndexFile::open(&path, 5).unwrap();
        // A trusted size beyond the file is corruption.
        let beyond = index.len() + 1;
        drop(index);
        assert!(IndexFile::open(&path, beyond).is_err());
    }

    /// Appends land after the records, wherever the zeros written ahead
    /// end; reopening drops the zeros; non-zero bytes far beyond the last
    /// valid record are corruption even when zeros follow them.
    #[test]
    fn zeros_written_ahead_are_unused_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut index = IndexFile::create(&path, [1u8; 16]).unwrap();
        for i in 0..3 {
            index.append_and_sync(&record(i).encode()).unwrap();
        }
        let appender = index.appender_at(3);
        appender.append_and_sync(&record(3).encode()).unwrap();
        index.note_appended(1);
        assert_eq!(
            index.read_range(0, 4).unwrap(),
            (0..4).map(record).collect::<Vec<_>>()
        );
        drop(index);
        let (index, rec) = IndexFile::open(&path, 0).unwrap();
        assert_eq!(rec.entries, 4);
        assert_eq!(
            rec.cut_bytes,
            HEADER_LEN + RECORD_LEN + fsutil::MIN_RESERVE - (HEADER_LEN + 4 * RECORD_LEN)
        );
        drop(index);

        // One record just past the last written only in part (its first
        // bytes, then the zeros written ahead): a torn append, cut. The
        // same bytes without the zeros are not a tear.
        let mut index = IndexFile::open(&path, 0).unwrap().0;
        index.append_and_sync(&record(4).encode()).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        drop(index);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xAB; 64], HEADER_LEN + 5 * RECORD_LEN)
            .unwrap();
        let err = IndexFile::open(&path, 0).unwrap_err().to_string();
        assert!(err.contains("not torn by a crash"), "{err}");
        f.write_all_at(&[0; 40], HEADER_LEN + 5 * RECORD_LEN + 24)
            .unwrap();
        drop(f);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let (index, rec) = IndexFile::open(&path, 0).unwrap();
        assert_eq!(rec.entries, 5);
        drop(index);

        // Garbage more than one append past the last valid record.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let far = HEADER_LEN + (6 + MAX_BATCH_RECORDS) * RECORD_LEN;
        f.write_all_at(&[0xAB; 8], far).unwrap();
        f.write_all_at(&[0; 4096], far + 8).unwrap();
        drop(f);
        let err = IndexFile::open(&path, 0).unwrap_err().to_string();
        assert!(err.contains("not zeros"), "{err}");
    }
}
