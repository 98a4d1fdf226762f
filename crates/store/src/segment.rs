//! Segment files: the sealed payloads of one stream for one epoch.
//!
//! A segment is a header followed by append-only records. Each record holds
//! one event (salt and stored envelope) sealed with the segment's data key;
//! its log index, writer generation and checksum are in clear so recovery and
//! verification can walk a segment without keys. Retention drops a whole
//! segment file with its data key. This module does not choose segments,
//! assign indices, or decide what is committed: the index file says which
//! records are part of the log.
//!
//! Layout (all integers big-endian; see `docs/formats/segment.md`):
//! ```text
//! header: "STELESEG" | version u8 (1, 2 or 3) | 0u8 x3 | segment id u32 | epoch u32
//!         | stream length u16 | stream bytes | crc32 u32 (of everything before)
//! record: body length u32 | index u64 | generation u32 | ciphertext | tag[16]
//!         | crc32 u32 (of index..tag)
//! ```
//! In versions 3 and 4 a record is a block of entries ([`crate::block`]): the same
//! frame, its first entry's number in the index field.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::block::{self, OpenBlock, ReferenceDictionary, Unpacker};
use crate::error::{StoreError, StoreResult};
use crate::fileio::{self, Open};
use crate::fsutil::{self, crc32};
use crate::keys::{DataKey, SaltKey, TAG_LEN};
use crate::sessions::SegmentKeys;

const MAGIC: &[u8; 8] = b"STELESEG";
/// Version of segments whose record bodies are canonical envelopes only
/// (written before the packed stored form; still read, and appended to in
/// that form).
pub const VERSION_CANONICAL_ONLY: u8 = 1;
/// Version of segments whose records each seal one entry, its body
/// canonical or packed (written before blocks; still read, and appended
/// to in that form). A reader that knows only version 1 refuses these
/// files by their header instead of taking packed bodies for damage.
pub const VERSION_PACKED: u8 = 2;
/// Version of segments whose records are blocks of entries
/// ([`crate::block`]), compressed, with derived salts, none compressed
/// against a reference (written before references; still read, and
/// appended to in that form).
pub const VERSION_BLOCKS: u8 = 3;
/// Version of the segments written now: blocks, some compressed against
/// an earlier block of the segment (codec 3). A reader that knows only
/// version 3 refuses these files by their header.
pub const VERSION: u8 = 4;

/// Whether this build reads (and appends to) segments of `version`.
pub fn known_version(version: u8) -> bool {
    (VERSION_CANONICAL_ONLY..=VERSION).contains(&version)
}

/// Whether segments of `version` hold blocks (else one record per entry).
pub fn holds_blocks(version: u8) -> bool {
    version >= VERSION_BLOCKS
}
/// Bytes of a record that are not ciphertext: length, index, generation, tag, crc.
pub const RECORD_OVERHEAD: usize = 4 + 8 + 4 + TAG_LEN + 4;
/// The largest record body a reader accepts; larger lengths mean corruption.
pub const MAX_RECORD_BODY: u32 = 16 * 1024 * 1024;
/// Longest stream name the header can hold.
pub const MAX_STREAM_LEN: usize = 255;

/// What a segment holds: its id (unique in the data directory), its epoch
/// (days since 1970-01-01 UTC) and its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// [`VERSION`] for new segments, or [`VERSION_CANONICAL_ONLY`].
    pub version: u8,
    pub id: u32,
    pub epoch: u32,
    pub stream: String,
}

impl SegmentHeader {
    /// Serialized header bytes.
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        if self.stream.is_empty() || self.stream.len() > MAX_STREAM_LEN {
            return Err(StoreError::Invalid(format!(
                "stream name must be 1..={MAX_STREAM_LEN} bytes"
            )));
        }
        if !known_version(self.version) {
            return Err(StoreError::Invalid(format!(
                "segment version {} cannot be written",
                self.version
            )));
        }
        let mut out = Vec::with_capacity(26 + self.stream.len());
        out.extend_from_slice(MAGIC);
        out.push(self.version);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&(self.stream.len() as u16).to_be_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Parses a header from the start of `bytes`; returns it and its length.
    pub fn decode(path: &Path, bytes: &[u8]) -> StoreResult<(SegmentHeader, usize)> {
        if bytes.len() < 22 || &bytes[..8] != MAGIC {
            return Err(StoreError::corrupt(path, 0, "not a Stele segment file"));
        }
        let version = bytes[8];
        if !known_version(version) {
            return Err(StoreError::corrupt(
                path,
                8,
                format!("unsupported segment version {}", bytes[8]),
            ));
        }
        let id = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let epoch = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let stream_len = u16::from_be_bytes([bytes[20], bytes[21]]) as usize;
        // The writer never writes another length, so a header that claims
        // one was not written by Stele, whatever its checksum says.
        if stream_len == 0 || stream_len > MAX_STREAM_LEN {
            return Err(StoreError::corrupt(
                path,
                20,
                format!("stream name length {stream_len} is outside 1..={MAX_STREAM_LEN}"),
            ));
        }
        let end = 22 + stream_len;
        if bytes.len() < end + 4 {
            return Err(StoreError::corrupt(path, 20, "segment header is truncated"));
        }
        let stored =
            u32::from_be_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if crc32(&bytes[..end]) != stored {
            return Err(StoreError::corrupt(
                path,
                end as u64,
                "segment header checksum mismatch",
            ));
        }
        let stream = std::str::from_utf8(&bytes[22..end])
            .map_err(|_| StoreError::corrupt(path, 22, "stream name is not UTF-8"))?
            .to_string();
        Ok((
            SegmentHeader {
                version,
                id,
                epoch,
                stream,
            },
            end + 4,
        ))
    }
}

/// Reads just the header of a segment file.
pub fn read_header(path: &Path) -> StoreResult<(SegmentHeader, u64)> {
    let mut file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let mut buf = vec![0u8; 22 + MAX_STREAM_LEN + 4];
    let mut filled = 0;
    loop {
        let n = file
            .read(&mut buf[filled..])
            .map_err(|e| StoreError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        filled += n;
        if filled == buf.len() {
            break;
        }
    }
    let (header, len) = SegmentHeader::decode(path, &buf[..filled])?;
    Ok((header, len as u64))
}

/// Where a record sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    pub offset: u64,
    pub len: u32,
}

/// Appends records to one segment. Records are staged in memory by
/// [`SegmentWriter::stage`] and reach the file in one write by
/// [`SegmentWriter::write_and_sync`].
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    /// Shared with [`SegmentSync`] handles, which fdatasync it from another
    /// thread while this writer goes on writing.
    file: Arc<File>,
    header: SegmentHeader,
    /// Length of the file including staged bytes.
    staged_end: u64,
    /// Length of the durable prefix of the file.
    durable_end: u64,
    /// Length of the file: records, then zeros written ahead of them
    /// (`fsutil::write_reserving`).
    reserved_end: u64,
    /// Where the file's cached pages not yet released end
    /// ([`SegmentSync::release_cache`]).
    released_end: u64,
    staged: Vec<u8>,
}

/// How far behind the end of the records a segment's cached pages are
/// released: pages this close to the end may still sit in the kernel's
/// per-CPU lists of recently written pages, which cannot be dropped without
/// draining those lists on every CPU.
const RELEASE_LAG: u64 = 256 * 1024;
/// Cached pages are released in whole units of this size.
const RELEASE_ALIGN: u64 = 64 * 1024;

impl SegmentWriter {
    /// Creates a new segment file holding only its header, durable with its
    /// directory entry. Crash story: if the process dies before this returns,
    /// the file may be missing or hold a torn header; nothing refers to it
    /// yet, and recovery deletes a segment whose header does not parse.
    pub fn create(path: &Path, header: SegmentHeader) -> StoreResult<SegmentWriter> {
        let bytes = header.encode()?;
        if let Some(parent) = path.parent() {
            fsutil::create_dir_durable(parent)?;
        }
        let file = fileio::open_write(path, Open::CreateNew, 0o600)
            .map_err(|e| StoreError::io("create", path, e))?;
        fileio::write_at(&file, path, &bytes, 0).map_err(|e| StoreError::io("write", path, e))?;
        fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
        fsutil::fsync_dir(fsutil::parent_of(path))?;
        let len = bytes.len() as u64;
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            header,
            staged_end: len,
            durable_end: len,
            reserved_end: len,
            released_end: 0,
            staged: Vec::new(),
        })
    }

    /// Opens an existing segment for appending after `committed_end`, cutting
    /// anything beyond it (records of a batch that was never acknowledged,
    /// zeros written ahead), and makes the cut durable before returning.
    pub fn open_at(path: &Path, committed_end: u64) -> StoreResult<SegmentWriter> {
        let (header, header_len) = read_header(path)?;
        if committed_end < header_len {
            return Err(StoreError::corrupt(
                path,
                committed_end,
                "committed length is inside the header",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("stat", path, e))?
            .len();
        if len < committed_end {
            return Err(StoreError::corrupt(
                path,
                len,
                format!(
                    "segment is shorter ({len} bytes) than its committed records ({committed_end} bytes)"
                ),
            ));
        }
        if len > committed_end {
            fileio::set_len(&file, path, committed_end)
                .map_err(|e| StoreError::io("truncate", path, e))?;
            fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
        }
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            header,
            staged_end: committed_end,
            durable_end: committed_end,
            reserved_end: committed_end,
            released_end: 0,
            staged: Vec::new(),
        })
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the durable part of the file.
    pub fn durable_len(&self) -> u64 {
        self.durable_end
    }

    /// True when records are staged but not yet written.
    /// Where the records written so far and the staged ones end.
    pub fn staged_end(&self) -> u64 {
        self.staged_end
    }

    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Seals `plaintext` for log entry `index` and stages the record.
    /// Nothing touches the file until [`Self::write_and_sync`].
    pub fn stage(
        &mut self,
        key: &DataKey,
        generation: u32,
        index: u64,
        commitment: &[u8; 32],
        plaintext: &[&[u8]],
    ) -> StoreResult<RecordLocation> {
        if holds_blocks(self.header.version) {
            return Err(StoreError::Invalid(format!(
                "a segment of version {} holds blocks, not single records",
                self.header.version
            )));
        }
        let plain_len: usize = plaintext.iter().map(|p| p.len()).sum();
        let body_len = 8 + 4 + plain_len + TAG_LEN + 4;
        if body_len > MAX_RECORD_BODY as usize {
            return Err(StoreError::Invalid(format!(
                "record of {plain_len} bytes exceeds the segment record limit"
            )));
        }
        let start = self.staged.len();
        self.staged
            .extend_from_slice(&(body_len as u32).to_be_bytes());
        self.staged.extend_from_slice(&index.to_be_bytes());
        self.staged.extend_from_slice(&generation.to_be_bytes());
        let ct_start = self.staged.len();
        for part in plaintext {
            self.staged.extend_from_slice(part);
        }
        let tag = key.seal_record(generation, index, commitment, &mut self.staged[ct_start..])?;
        self.staged.extend_from_slice(&tag);
        let crc = crc32(&self.staged[start + 4..]);
        self.staged.extend_from_slice(&crc.to_be_bytes());
        let location = RecordLocation {
            offset: self.staged_end,
            len: (4 + body_len) as u32,
        };
        self.staged_end += location.len as u64;
        Ok(location)
    }

    /// Stages a record already framed and sealed (a block of a segment of
    /// version 3 or 4, [`crate::block::Packer::seal`]). Nothing touches the file
    /// until the staged bytes are written.
    pub fn stage_frame(&mut self, frame: &[u8]) -> StoreResult<RecordLocation> {
        if frame.len() > MAX_RECORD_BODY as usize + 4 || !holds_blocks(self.header.version) {
            return Err(StoreError::Invalid(format!(
                "a block of {} bytes cannot go into a segment of version {}",
                frame.len(),
                self.header.version
            )));
        }
        self.staged.extend_from_slice(frame);
        let location = RecordLocation {
            offset: self.staged_end,
            len: frame.len() as u32,
        };
        self.staged_end += frame.len() as u64;
        Ok(location)
    }

    /// Writes every staged record and fdatasyncs the file. Crash story: until
    /// this returns, the staged records may be absent, partly present or
    /// torn; no index record refers to them yet, so recovery cuts them. After
    /// it returns they are durable. On error the caller must stop writing.
    pub fn write_and_sync(&mut self) -> StoreResult<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let sync = self.write_staged()?;
        sync.sync()?;
        self.mark_durable(sync.end);
        Ok(())
    }

    /// Writes every staged record, without syncing, and returns the handle
    /// that makes them durable ([`SegmentSync::sync`], possibly on another
    /// thread). The file grows ahead of its records by zeros
    /// (`fsutil::write_reserving`), so most syncs flush only the records.
    /// Crash story: the written records are in the page cache only; no
    /// index record refers to them yet, so recovery cuts them (and the
    /// zeros). On error the caller must stop writing.
    pub fn write_staged(&mut self) -> StoreResult<SegmentSync> {
        let at = self.staged_end - self.staged.len() as u64;
        fsutil::write_reserving(
            &self.file,
            &self.path,
            at,
            &self.staged,
            &mut self.reserved_end,
        )?;
        self.staged.clear();
        let release_to =
            self.staged_end.saturating_sub(RELEASE_LAG) / RELEASE_ALIGN * RELEASE_ALIGN;
        let release = self.released_end..release_to.max(self.released_end);
        self.released_end = release.end;
        Ok(SegmentSync {
            path: self.path.clone(),
            file: self.file.clone(),
            end: self.staged_end,
            release,
        })
    }

    /// Cuts the zeros written ahead of the records, for a writer that is
    /// closed. Records written and not yet durable are kept (their sync
    /// may still be running). Crash story: no sync is needed; the file has
    /// either length after a crash, and zeros after the records are unused
    /// space either way.
    pub fn trim_reserved(&mut self) -> StoreResult<()> {
        let written_end = self.staged_end - self.staged.len() as u64;
        if self.reserved_end > written_end {
            fileio::set_len(&self.file, &self.path, written_end)
                .map_err(|e| StoreError::io("truncate", &self.path, e))?;
            self.reserved_end = written_end;
        }
        Ok(())
    }

    /// Records that a [`SegmentSync`] of this writer has returned: the file
    /// is durable up to `end`.
    pub fn mark_durable(&mut self, end: u64) {
        self.durable_end = self.durable_end.max(end.min(self.staged_end));
    }
}

/// Makes the records a [`SegmentWriter`] has written durable.
#[derive(Debug, Clone)]
pub struct SegmentSync {
    path: PathBuf,
    file: Arc<File>,
    /// The file's written length when the handle was made: what `sync`
    /// makes durable (at least).
    pub end: u64,
    /// Bytes whose cached pages [`Self::release_cache`] drops once synced.
    release: std::ops::Range<u64>,
}

impl SegmentSync {
    /// fdatasyncs the file. An error means the written records may be lost:
    /// the writer must stop (a failed fdatasync is never retried).
    pub fn sync(&self) -> StoreResult<()> {
        fileio::sync_data(&self.file, &self.path)
            .map_err(|e| StoreError::io("fdatasync", &self.path, e))
    }

    /// After [`Self::sync`] succeeded: drops the file's pages that are now
    /// durable and complete (well behind the end of the records) from the
    /// page cache. Records are written once and read rarely; keeping them
    /// cached only takes memory, and on a virtual machine a page the
    /// kernel recycles is written several times faster than one it takes
    /// fresh. Only advice: the bytes stay in the file, and a later read
    /// fetches them from disk.
    pub fn release_cache(&self) {
        fsutil::drop_cached_pages(
            &self.file,
            self.release.start,
            self.release.end - self.release.start,
        );
    }
}

/// A record read back from a segment, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub index: u64,
    pub generation: u32,
    /// Ciphertext followed by the 16-byte tag.
    pub sealed: Vec<u8>,
}

impl SealedRecord {
    /// Opens the record with its data key and the commitment the index holds
    /// for it. Returns the plaintext (salt then canonical envelope).
    pub fn open(
        mut self,
        key: &DataKey,
        commitment: &[u8; 32],
        path: &Path,
    ) -> StoreResult<Vec<u8>> {
        let plain_len = key
            .open_record(self.generation, self.index, commitment, &mut self.sealed)
            .ok_or_else(|| StoreError::Authentication {
                path: path.to_path_buf(),
                index: self.index,
            })?
            .len();
        self.sealed.truncate(plain_len);
        Ok(self.sealed)
    }
}

/// A record parsed in place, still sealed.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub index: u64,
    pub generation: u32,
    /// Ciphertext followed by the 16-byte tag.
    pub sealed: &'a [u8],
}

/// Parses one record from `bytes` (which start at the record's length
/// field) without copying. Returns the record and its total length.
pub fn parse_record_ref<'a>(
    path: &Path,
    offset: u64,
    bytes: &'a [u8],
) -> StoreResult<(RecordRef<'a>, usize)> {
    if bytes.len() < 4 {
        return Err(StoreError::corrupt(path, offset, "truncated record length"));
    }
    let body_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if body_len > MAX_RECORD_BODY || (body_len as usize) < RECORD_OVERHEAD - 4 {
        return Err(StoreError::corrupt(
            path,
            offset,
            format!("impossible record length {body_len}"),
        ));
    }
    let total = 4 + body_len as usize;
    if bytes.len() < total {
        return Err(StoreError::corrupt(path, offset, "truncated record"));
    }
    let body = &bytes[4..total];
    let (content, crc_bytes) = body.split_at(body.len() - 4);
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32(content) != stored {
        return Err(StoreError::corrupt(
            path,
            offset,
            "record checksum mismatch",
        ));
    }
    let index = u64::from_be_bytes([
        content[0], content[1], content[2], content[3], content[4], content[5], content[6],
        content[7],
    ]);
    let generation = u32::from_be_bytes([content[8], content[9], content[10], content[11]]);
    Ok((
        RecordRef {
            index,
            generation,
            sealed: &content[12..],
        },
        total,
    ))
}

/// The total length of the record starting at `bytes`, if its length field
/// is readable; used to know how much to read before parsing.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(4 + u32::from_be_bytes(head) as usize)
}

/// The entry number, writer generation and total length of the record at
/// the start of `bytes`, read from its framing alone: the checksum is not
/// checked (see [`parse_record_ref`]). `None` when the length is impossible
/// or the record does not fit in `bytes`.
pub fn peek_record(bytes: &[u8]) -> Option<(u64, u32, usize)> {
    let body_len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    if body_len > MAX_RECORD_BODY || (body_len as usize) < RECORD_OVERHEAD - 4 {
        return None;
    }
    let total = 4 + body_len as usize;
    if bytes.len() < total {
        return None;
    }
    let index = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    let generation = u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?);
    Some((index, generation, total))
}

/// Parses one record from `bytes` (which start at the record's length
/// field). Returns the record and its total length.
pub fn parse_record(path: &Path, offset: u64, bytes: &[u8]) -> StoreResult<(SealedRecord, usize)> {
    let (record, total) = parse_record_ref(path, offset, bytes)?;
    Ok((
        SealedRecord {
            index: record.index,
            generation: record.generation,
            sealed: record.sealed.to_vec(),
        },
        total,
    ))
}

/// Where a block compressed against a reference says its reference is.
#[derive(Debug, Clone, Copy)]
pub struct ReferenceAt<'a> {
    /// The segment file, and its path for errors.
    pub file: &'a File,
    pub path: &'a Path,
    /// The segment's version (only version 4 holds such blocks).
    pub version: u8,
    /// The reference block's first entry and the offset of its frame.
    pub first: u64,
    pub offset: u64,
    /// Where the block naming it begins: the reference lies wholly before.
    pub before: u64,
}

/// Reads and opens the reference block `at` names, and prepares its
/// plaintext as a dictionary. It must lie wholly before the block naming
/// it, in a segment of version 4, begin with entry `at.first`, have no
/// reference of its own, and hold at most
/// [`block::REFERENCE_MAX_PLAIN`] bytes of plaintext; it is authenticated
/// with the record key of its own generation.
pub fn open_reference(
    at: &ReferenceAt<'_>,
    keys: &SegmentKeys,
    unpacker: &mut Unpacker,
) -> StoreResult<(OpenBlock, ReferenceDictionary)> {
    let bad = |what: String| {
        StoreError::corrupt(
            at.path,
            at.before,
            format!(
                "the block here is compressed against the block at byte {}, which {what}",
                at.offset
            ),
        )
    };
    if at.version != VERSION {
        return Err(bad(format!(
            "a segment of version {} cannot refer to",
            at.version
        )));
    }
    let mut length = [0u8; 4];
    fileio::read_exact_at(at.file, at.path, &mut length, at.offset)
        .map_err(|e| bad(format!("cannot be read ({e})")))?;
    let len = 4 + u64::from(u32::from_be_bytes(length));
    if len > u64::from(MAX_RECORD_BODY) + 4
        || at.offset.checked_add(len).is_none_or(|end| end > at.before)
    {
        return Err(bad("does not end before it".into()));
    }
    let mut buf = vec![0u8; len as usize];
    fileio::read_exact_at(at.file, at.path, &mut buf, at.offset)
        .map_err(|e| bad(format!("cannot be read ({e})")))?;
    let (record, total) = parse_record_ref(at.path, at.offset, &buf)?;
    if total != buf.len() {
        return Err(bad("is not one whole block".into()));
    }
    let parsed = block::parse(at.path, at.offset, record)?;
    if parsed.first != at.first {
        return Err(bad(format!(
            "begins with entry {}, not entry {}",
            parsed.first, at.first
        )));
    }
    if parsed.reference.is_some() || parsed.plain_len > block::REFERENCE_MAX_PLAIN {
        return Err(bad(
            "is compressed against a reference itself, or holds more than 1 MiB".into(),
        ));
    }
    let key = keys.record_key(parsed.generation)?;
    let open = parsed.open(&key, at.path, at.offset, unpacker, None)?;
    let dictionary = ReferenceDictionary::new(at.offset, &open)?;
    Ok((open, dictionary))
}

/// Random-access reader of one segment file.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    file: File,
    pub header: SegmentHeader,
    pub header_len: u64,
    /// The block last opened (versions 3 and 4), by location: entries read in order
    /// find theirs here instead of decrypting it again.
    last_block: Mutex<Option<(RecordLocation, Arc<CachedBlock>)>>,
    /// The reference block last used (version 4): the blocks compressed
    /// against it are opened without reading it again.
    reference: Mutex<Option<Arc<ReferenceDictionary>>>,
    unpacker: Mutex<Option<Unpacker>>,
    /// Blocks opened before, shared with the log's other segments.
    cache: Option<Arc<BlockCache>>,
}

#[derive(Debug)]
pub struct CachedBlock {
    block: OpenBlock,
    salts: SaltKey,
}

/// Opened blocks (decrypted and decompressed) of any segment, kept for
/// the reads that come back to them (the events of a search's page are
/// scattered over a few blocks each), up to a budget of plaintext bytes;
/// the least recently used go first. Plaintext in memory only, as the
/// writer holds it; a purged segment's blocks are dropped with
/// [`BlockCache::forget_segment`].
#[derive(Debug)]
pub struct BlockCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

/// A cached block's key: segment, offset and length.
type BlockKey = (u32, u64, u32);

#[derive(Debug, Default)]
struct CacheInner {
    /// Each block and the tick of its last use.
    blocks: std::collections::HashMap<BlockKey, (Arc<CachedBlock>, u64)>,
    /// The same blocks by the tick of their last use, oldest first.
    by_use: std::collections::BTreeMap<u64, BlockKey>,
    bytes: usize,
    tick: u64,
}

impl CacheInner {
    fn remove(&mut self, key: &BlockKey) {
        if let Some((gone, used)) = self.blocks.remove(key) {
            self.by_use.remove(&used);
            self.bytes -= gone.block.plain_len();
        }
    }
}

impl BlockCache {
    /// A cache holding at most `budget` bytes of plaintext.
    pub fn new(budget: usize) -> BlockCache {
        BlockCache {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, segment: u32, at: RecordLocation) -> Option<Arc<CachedBlock>> {
        let key = (segment, at.offset, at.len);
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let (block, used) = inner.blocks.get_mut(&key)?;
        let (block, before) = (block.clone(), std::mem::replace(used, tick));
        inner.by_use.remove(&before);
        inner.by_use.insert(tick, key);
        Some(block)
    }

    fn put(&self, segment: u32, at: RecordLocation, block: Arc<CachedBlock>) {
        let size = block.block.plain_len();
        if size > self.budget {
            return;
        }
        let key = (segment, at.offset, at.len);
        let mut inner = self.lock();
        inner.remove(&key);
        while inner.bytes + size > self.budget {
            let Some((_, oldest)) = inner.by_use.first_key_value().map(|(t, k)| (*t, *k)) else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.blocks.insert(key, (block, tick));
        inner.by_use.insert(tick, key);
        inner.bytes += size;
    }

    /// Drops every block of segment `id` (its epoch was purged).
    pub fn forget_segment(&self, id: u32) {
        let mut inner = self.lock();
        let gone: Vec<BlockKey> = inner
            .blocks
            .keys()
            .filter(|(segment, _, _)| *segment == id)
            .copied()
            .collect();
        for key in gone {
            inner.remove(&key);
        }
    }

    /// Plaintext bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl SegmentReader {
    pub fn open(path: &Path) -> StoreResult<SegmentReader> {
        Self::open_cached(path, None)
    }

    /// Opens the segment at `path`, keeping the blocks it opens in
    /// `cache` as well as its own last one.
    pub fn open_cached(path: &Path, cache: Option<Arc<BlockCache>>) -> StoreResult<SegmentReader> {
        let (header, header_len) = read_header(path)?;
        let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file,
            header,
            header_len,
            last_block: Mutex::new(None),
            reference: Mutex::new(None),
            unpacker: Mutex::new(None),
            cache,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of the record (or block) at `location`, which the index
    /// says holds entry `index`.
    fn read_frame(&self, location: RecordLocation, index: u64) -> StoreResult<Vec<u8>> {
        if location.len as usize > MAX_RECORD_BODY as usize + 4 {
            return Err(StoreError::corrupt(
                &self.path,
                location.offset,
                "record length out of range",
            ));
        }
        let mut buf = vec![0u8; location.len as usize];
        fileio::read_exact_at(&self.file, &self.path, &mut buf, location.offset).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::UnexpectedEof => StoreError::corrupt(
                    &self.path,
                    location.offset,
                    format!("record of entry {index} is missing (file too short)"),
                ),
                _ => StoreError::io("read", &self.path, e),
            }
        })?;
        Ok(buf)
    }

    /// Reads the record at `location` and checks that it is entry `index`
    /// (segments of versions 1 and 2).
    pub fn read(&self, location: RecordLocation, index: u64) -> StoreResult<SealedRecord> {
        let buf = self.read_frame(location, index)?;
        let (record, total) = parse_record(&self.path, location.offset, &buf)?;
        if total != buf.len() {
            return Err(StoreError::corrupt(
                &self.path,
                location.offset,
                "record length disagrees with the index",
            ));
        }
        if record.index != index {
            return Err(StoreError::corrupt(
                &self.path,
                location.offset,
                format!(
                    "record holds entry {} where the index expects entry {index}",
                    record.index
                ),
            ));
        }
        Ok(record)
    }

    /// Reads entry `index` at `location` (from the index, with its
    /// `commitment`) and opens it: returns its salt followed by its stored
    /// envelope, whatever the segment's version (a block's entry has its
    /// salt derived). The caller checks the commitment.
    pub fn open_entry(
        &self,
        location: RecordLocation,
        index: u64,
        keys: &SegmentKeys,
        commitment: &[u8; 32],
    ) -> StoreResult<Vec<u8>> {
        if !holds_blocks(self.header.version) {
            let sealed = self.read(location, index)?;
            let key = keys.record_key(sealed.generation)?;
            return sealed.open(&key, commitment, &self.path);
        }
        let cached = self.cached_block(location, index, keys)?;
        let body = cached.block.body(index).ok_or_else(|| {
            StoreError::corrupt(
                &self.path,
                location.offset,
                format!("the block here does not hold entry {index}, which the index places in it"),
            )
        })?;
        let mut plain = Vec::with_capacity(32 + body.len());
        plain.extend_from_slice(&cached.salts.salt(index));
        plain.extend_from_slice(body);
        Ok(plain)
    }

    /// The numbers of the entries the block at `location` holds (a
    /// segment of version 3 or 4; the block is opened, so it is authentic).
    pub fn block_entries(
        &self,
        location: RecordLocation,
        index: u64,
        keys: &SegmentKeys,
    ) -> StoreResult<Vec<u64>> {
        let cached = self.cached_block(location, index, keys)?;
        Ok(cached.block.entries().map(|(index, _)| index).collect())
    }

    /// The block at `location` opened, from the cache or read now.
    fn cached_block(
        &self,
        location: RecordLocation,
        index: u64,
        keys: &SegmentKeys,
    ) -> StoreResult<Arc<CachedBlock>> {
        let cached = self
            .last_block
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| *at == location)
            .map(|(_, block)| block.clone());
        if let Some(block) = cached {
            return Ok(block);
        }
        let shared = self
            .cache
            .as_ref()
            .and_then(|c| c.get(self.header.id, location));
        let block = match shared {
            Some(block) => block,
            None => {
                let block = Arc::new(self.open_block(location, index, keys)?);
                if let Some(cache) = &self.cache {
                    cache.put(self.header.id, location, block.clone());
                }
                block
            }
        };
        *self.last_block.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((location, block.clone()));
        Ok(block)
    }

    fn open_block(
        &self,
        location: RecordLocation,
        index: u64,
        keys: &SegmentKeys,
    ) -> StoreResult<CachedBlock> {
        let buf = self.read_frame(location, index)?;
        let (record, total) = parse_record_ref(&self.path, location.offset, &buf)?;
        if total != buf.len() {
            return Err(StoreError::corrupt(
                &self.path,
                location.offset,
                "block length disagrees with the index",
            ));
        }
        let parsed = block::parse(&self.path, location.offset, record)?;
        let key = keys.record_key(parsed.generation)?;
        let mut unpacker = self.unpacker.lock().unwrap_or_else(|p| p.into_inner());
        if unpacker.is_none() {
            *unpacker = Some(Unpacker::new()?);
        }
        let Some(unpacker) = unpacker.as_mut() else {
            return Err(StoreError::Invalid("no zstd context".into()));
        };
        let reference = match parsed.reference {
            None => None,
            Some((first, offset)) => {
                let mut slot = self.reference.lock().unwrap_or_else(|p| p.into_inner());
                match slot.as_ref() {
                    Some(known) if (known.first, known.offset) == (first, offset) => {
                        Some(known.clone())
                    }
                    _ => {
                        let (_, dictionary) = open_reference(
                            &ReferenceAt {
                                file: &self.file,
                                path: &self.path,
                                version: self.header.version,
                                first,
                                offset,
                                before: location.offset,
                            },
                            keys,
                            unpacker,
                        )?;
                        let dictionary = Arc::new(dictionary);
                        *slot = Some(dictionary.clone());
                        Some(dictionary)
                    }
                }
            }
        };
        let block = parsed.open(
            &key,
            &self.path,
            location.offset,
            unpacker,
            reference.as_deref(),
        )?;
        Ok(CachedBlock {
            block,
            salts: key.salt_key(),
        })
    }

    /// Reads the whole file (for sequential verification).
    pub fn read_all(&self) -> StoreResult<Vec<u8>> {
        fsutil::read(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Kek, NewKek};

    #[test]
    fn header_versions() {
        let path = Path::new("x.seg");
        for version in [
            VERSION_CANONICAL_ONLY,
            VERSION_PACKED,
            VERSION_BLOCKS,
            VERSION,
        ] {
            let header = SegmentHeader {
                version,
                id: 7,
                epoch: 20000,
                stream: "app".into(),
            };
            let bytes = header.encode().unwrap();
            assert_eq!(bytes[8], version);
            assert_eq!(SegmentHeader::decode(path, &bytes).unwrap().0, header);
        }
        let mut header = SegmentHeader {
            version: 5,
            id: 7,
            epoch: 20000,
            stream: "app".into(),
        };
        assert!(
            header.encode().is_err(),
            "an unknown version is never written"
        );
        header.version = VERSION;
        let mut bytes = header.encode().unwrap();
        bytes[8] = 5;
        let err = SegmentHeader::decode(path, &bytes).unwrap_err().to_string();
        assert!(err.contains("unsupported segment version 5"), "{err}");
    }

    /// A header carrying a stream name length the writer never writes (0,
    /// or over 255) whose checksum matches is refused as corrupt, not
    /// taken for a header that `encode` could not write back (found by the
    /// `segment_header` fuzz target).
    #[test]
    fn header_stream_length_outside_what_the_writer_writes() {
        let path = Path::new("x.seg");
        for stream_len in [0usize, MAX_STREAM_LEN + 1, usize::from(u16::MAX)] {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&[0, 0, 0]);
            bytes.extend_from_slice(&7u32.to_be_bytes());
            bytes.extend_from_slice(&20000u32.to_be_bytes());
            bytes.extend_from_slice(&(stream_len as u16).to_be_bytes());
            bytes.extend(std::iter::repeat_n(b'a', stream_len));
            let crc = crc32(&bytes);
            bytes.extend_from_slice(&crc.to_be_bytes());
            let err = SegmentHeader::decode(path, &bytes).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { .. }),
                "stream length {stream_len}: {err}"
            );
            assert!(
                err.to_string().contains("stream name length"),
                "stream length {stream_len}: {err}"
            );
        }
    }

    #[test]
    fn stage_write_read_open_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 1).unwrap();
        let path = dir.path().join("s/a.seg");
        let header = SegmentHeader {
            version: VERSION_PACKED,
            id: 1,
            epoch: 20000,
            stream: "default".into(),
        };
        let mut writer = SegmentWriter::create(&path, header.clone()).unwrap();
        let c = [3u8; 32];
        let loc0 = writer
            .stage(&key, 1, 0, &c, &[b"salt", b"event zero"])
            .unwrap();
        let loc1 = writer.stage(&key, 1, 1, &c, &[b"event one"]).unwrap();
        writer.write_and_sync().unwrap();
        let committed = writer.durable_len();
        // An unacknowledged record staged and written after the commit point.
        writer.stage(&key, 1, 2, &c, &[b"orphan"]).unwrap();
        writer.write_and_sync().unwrap();
        drop(writer);

        let reader = SegmentReader::open(&path).unwrap();
        assert_eq!(reader.header, header);
        let rec = reader.read(loc0, 0).unwrap();
        assert_eq!(
            rec.clone().open(&key, &c, &path).unwrap(),
            b"saltevent zero"
        );
        assert!(rec.open(&key, &[4u8; 32], &path).is_err());
        assert!(
            reader.read(loc1, 0).is_err(),
            "index mismatch must be caught"
        );

        let writer = SegmentWriter::open_at(&path, committed).unwrap();
        assert_eq!(writer.durable_len(), committed);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
    }

    /// Cached pages are released only well behind the records written,
    /// in aligned pieces that follow one another, and never past what the
    /// handle syncs; every record still reads back afterwards.
    #[test]
    fn released_pages_lag_the_records_and_reads_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 1).unwrap();
        let path = dir.path().join("a.seg");
        let header = SegmentHeader {
            version: VERSION_PACKED,
            id: 1,
            epoch: 20000,
            stream: "default".into(),
        };
        let mut writer = SegmentWriter::create(&path, header).unwrap();
        let c = [9u8; 32];
        let payload = vec![0x42u8; 700];
        let mut locations = Vec::new();
        let mut released_to = 0;
        let mut index = 0u64;
        for batch in 0..300u64 {
            for _ in 0..(1 + batch % 7) {
                locations.push(writer.stage(&key, 1, index, &c, &[&payload]).unwrap());
                index += 1;
            }
            let sync = writer.write_staged().unwrap();
            let release = sync.release.clone();
            assert_eq!(release.start, released_to, "pieces follow one another");
            assert_eq!(release.end % RELEASE_ALIGN, 0);
            if !release.is_empty() {
                assert!(
                    release.end + RELEASE_LAG <= sync.end,
                    "{release:?} vs {}",
                    sync.end
                );
            }
            released_to = release.end;
            sync.sync().unwrap();
            writer.mark_durable(sync.end);
            sync.release_cache();
        }
        assert!(released_to > 0, "a file this long releases something");
        drop(writer);
        let reader = SegmentReader::open(&path).unwrap();
        for (i, loc) in locations.into_iter().enumerate() {
            let plain = reader
                .read(loc, i as u64)
                .unwrap()
                .open(&key, &c, &path)
                .unwrap();
            assert_eq!(plain, payload);
        }
    }

    #[test]
    fn corrupt_record_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 1).unwrap();
        let path = dir.path().join("a.seg");
        let mut writer = SegmentWriter::create(
            &path,
            SegmentHeader {
                version: VERSION_PACKED,
                id: 1,
                epoch: 1,
                stream: "s".into(),
            },
        )
        .unwrap();
        let loc = writer.stage(&key, 1, 0, &[0u8; 32], &[b"payload"]).unwrap();
        writer.write_and_sync().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = loc.offset as usize + 20;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        assert!(matches!(
            reader.read(loc, 0),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// Segment 4 of stream `app`, version [`VERSION`], to be created at the
    /// returned path under `dir`: the data key that seals its blocks, and
    /// the record keys a reader opens them with (generation 1 sealed under
    /// the data key itself).
    fn block_segment(dir: &Path) -> (DataKey, SegmentKeys, PathBuf) {
        use crate::sessions::{SessionTable, Sessions};
        let kek = Kek::create(&dir.join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 4).unwrap();
        let same = DataKey::from_raw(zeroize::Zeroizing::new(*key.raw())).unwrap();
        let sessions = Arc::new(Sessions::new(
            &dir.join("sessions"),
            SessionTable::without_file(),
        ));
        (key, SegmentKeys::new(4, same, sessions), dir.join("a.seg"))
    }

    /// Creates the segment [`block_segment`] describes at `path`.
    fn block_writer(path: &Path) -> SegmentWriter {
        let header = SegmentHeader {
            version: VERSION,
            id: 4,
            epoch: 20000,
            stream: "app".into(),
        };
        SegmentWriter::create(path, header).unwrap()
    }

    /// Blocks staged into a version-3 segment read back entry by entry,
    /// each with its derived salt; an entry the block does not hold, or a
    /// block whose bytes changed, is refused.
    #[test]
    fn blocks_stage_and_open_by_entry() {
        use crate::block::{LEVEL, Packer};
        let dir = tempfile::tempdir().unwrap();
        let (key, keys, path) = block_segment(dir.path());
        let mut writer = block_writer(&path);
        assert!(writer.stage(&key, 1, 0, &[0; 32], &[b"x"]).is_err());
        let mut packer = Packer::new(LEVEL).unwrap();
        let mut locations = Vec::new();
        for first in [0u64, 10] {
            let entries: Vec<(u64, &[u8])> =
                vec![(first, b"zero".as_slice()), (first + 2, b"two".as_slice())];
            let mut frame = Vec::new();
            packer.seal(&key, 1, &entries, None, &mut frame).unwrap();
            locations.push(writer.stage_frame(&frame).unwrap());
        }
        writer.write_and_sync().unwrap();
        drop(writer);
        let reader = SegmentReader::open(&path).unwrap();
        let salts = key.salt_key();
        for (location, first) in locations.iter().zip([0u64, 10]) {
            let plain = reader
                .open_entry(*location, first + 2, &keys, &[0; 32])
                .unwrap();
            assert_eq!(&plain[..32], &salts.salt(first + 2));
            assert_eq!(&plain[32..], b"two");
            let plain = reader
                .open_entry(*location, first, &keys, &[0; 32])
                .unwrap();
            assert_eq!(&plain[32..], b"zero");
            assert!(
                reader
                    .open_entry(*location, first + 1, &keys, &[0; 32])
                    .is_err()
            );
        }
        // A shared cache keeps the blocks its readers opened, within its
        // budget, most recently used first.
        let cache = Arc::new(BlockCache::new(usize::MAX));
        let cached = SegmentReader::open_cached(&path, Some(cache.clone())).unwrap();
        cached.open_entry(locations[0], 0, &keys, &[0; 32]).unwrap();
        let one = cache.bytes();
        assert!(one > 0);
        cached
            .open_entry(locations[1], 12, &keys, &[0; 32])
            .unwrap();
        assert_eq!(cache.bytes(), 2 * one);
        let small = Arc::new(BlockCache::new(one));
        let reader = SegmentReader::open_cached(&path, Some(small.clone())).unwrap();
        reader.open_entry(locations[0], 0, &keys, &[0; 32]).unwrap();
        reader
            .open_entry(locations[1], 10, &keys, &[0; 32])
            .unwrap();
        assert_eq!(small.bytes(), one);

        let mut bytes = std::fs::read(&path).unwrap();
        let at = locations[1].offset as usize + 30;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        assert!(matches!(
            reader.open_entry(locations[1], 10, &keys, &[0; 32]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(reader.open_entry(locations[0], 0, &keys, &[0; 32]).is_ok());
        // A block opened (and authenticated) before the change is served
        // from the cache until its segment is forgotten; then it is read
        // again, and refused.
        let again = SegmentReader::open_cached(&path, Some(cache.clone())).unwrap();
        assert!(again.open_entry(locations[1], 10, &keys, &[0; 32]).is_ok());
        cache.forget_segment(4);
        assert_eq!(cache.bytes(), 0);
        let again = SegmentReader::open_cached(&path, Some(cache.clone())).unwrap();
        assert!(matches!(
            again.open_entry(locations[1], 10, &keys, &[0; 32]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// A segment of version 4: a reference block, then blocks compressed
    /// against it. They read back entry by entry, smaller than the same
    /// entries compressed alone; a damaged reference makes them unreadable
    /// (never misread), and a block whose head names another reference,
    /// or a reference that is not an earlier whole block, is refused.
    #[test]
    fn blocks_compressed_against_a_reference() {
        use crate::block::{CODEC_ZSTD_REFERENCED, LEVEL, Packer, Reference};
        let dir = tempfile::tempdir().unwrap();
        let (key, keys, path) = block_segment(dir.path());
        let event = |n: u64| {
            format!(
                r#"{{"actor":"user-{}@example.com","action":"document.{}","resource":"documents/{}","n":{n}}}"#,
                n % 37,
                ["read", "share", "delete"][(n % 3) as usize],
                n * 7919 % 5000
            )
            .into_bytes()
        };
        let bodies: Vec<Vec<u8>> = (0..1200).map(event).collect();
        let entries: Vec<(u64, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(n, b)| (n as u64, b.as_slice()))
            .collect();
        let mut writer = block_writer(&path);
        let mut packer = Packer::new(LEVEL).unwrap();
        let mut frame = Vec::new();
        packer
            .seal(&key, 1, &entries[..1000], None, &mut frame)
            .unwrap();
        let first_block = writer.stage_frame(&frame).unwrap();
        let reference = Reference::new(first_block.offset, &entries[..1000], LEVEL).unwrap();
        // The reference must come before the block.
        assert!(
            packer
                .seal(&key, 1, &entries[..10], Some(&reference), &mut Vec::new())
                .is_err()
        );
        let mut later = Vec::new();
        for range in [1000..1100, 1100..1200] {
            let mut frame = Vec::new();
            packer
                .seal(
                    &key,
                    1,
                    &entries[range.clone()],
                    Some(&reference),
                    &mut frame,
                )
                .unwrap();
            assert_eq!(frame[block::FRAME_HEAD], CODEC_ZSTD_REFERENCED);
            let mut alone = Vec::new();
            packer
                .seal(&key, 1, &entries[range.clone()], None, &mut alone)
                .unwrap();
            assert!(
                frame.len() < alone.len(),
                "{} against a reference, {} alone",
                frame.len(),
                alone.len()
            );
            later.push((
                range.start as u64,
                writer.stage_frame(&frame).unwrap(),
                frame,
            ));
        }
        writer.write_and_sync().unwrap();
        drop(writer);
        let reader = SegmentReader::open(&path).unwrap();
        for (first, location, _) in &later {
            for n in [*first, first + 57, first + 99] {
                let plain = reader.open_entry(*location, n, &keys, &[0; 32]).unwrap();
                assert_eq!(&plain[32..], &bodies[n as usize][..], "entry {n}");
            }
        }
        assert_eq!(
            &reader.open_entry(first_block, 3, &keys, &[0; 32]).unwrap()[32..],
            &bodies[3][..]
        );

        // The head names another earlier entry as the reference's first
        // (checksum fixed): refused before or at the tag, never misread.
        let (_, location, frame) = &later[1];
        let original = std::fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let head = location.offset as usize + block::FRAME_HEAD;
        // codec, count (1 byte: 100), length (2 bytes), back (varint).
        assert_eq!(bytes[head + 4], 0x80 | (1100 & 0x7f) as u8);
        bytes[head + 4] ^= 0x01;
        let end = location.offset as usize + frame.len() - 4;
        let crc = crc32(&bytes[location.offset as usize + 4..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        assert!(reader.open_entry(*location, 1100, &keys, &[0; 32]).is_err());

        // A flipped bit in the reference: every block against it fails.
        let mut bytes = original.clone();
        bytes[first_block.offset as usize + 100] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        for (first, location, _) in &later {
            assert!(matches!(
                reader.open_entry(*location, *first, &keys, &[0; 32]),
                Err(StoreError::Corrupt { .. })
            ));
        }

        // The same blocks in a segment of version 3 are refused.
        let mut bytes = original.clone();
        let (old_header, _) = SegmentHeader::decode(&path, &original).unwrap();
        let v3 = SegmentHeader {
            version: VERSION_BLOCKS,
            ..old_header
        }
        .encode()
        .unwrap();
        bytes[..v3.len()].copy_from_slice(&v3);
        std::fs::write(&path, &bytes).unwrap();
        let reader = SegmentReader::open(&path).unwrap();
        assert_eq!(
            &reader.open_entry(first_block, 3, &keys, &[0; 32]).unwrap()[32..],
            &bodies[3][..]
        );
        let err = reader
            .open_entry(later[0].1, 1000, &keys, &[0; 32])
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 3 cannot refer"), "{err}");
    }
}
