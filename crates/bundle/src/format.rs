//! The framing of a bundle: the magic line, the record types, their order
//! and every limit, and a reader that hands out one length-checked record
//! at a time while hashing what it read. It does not interpret record
//! bodies beyond their framing (`verify.rs` does).

use std::io::Read;

use sha2::{Digest as _, Sha256};

use crate::error::BundleError;

/// The first 16 bytes of every bundle (also the first line of its manifest).
pub const MAGIC: &[u8; 16] = b"stele/bundle/v1\n";

/// Largest canonical envelope an entry may carry (64 MiB, as for event files elsewhere).
pub const MAX_EVENT_BYTES: usize = 64 << 20;
/// Largest signed note (checkpoint or manifest).
pub const MAX_NOTE_BYTES: usize = 64 << 10;
/// Longest query text a manifest names (its JSON form stays within the note).
pub const MAX_QUERY_BYTES: usize = 16 << 10;
/// Most entries (events and purged entries) one bundle holds.
pub const MAX_ENTRIES: u64 = 1 << 32;
/// Most purge records one bundle holds: the verifier keeps each one's
/// coverage (at most 512 index ranges) in memory until the end.
pub const MAX_PURGE_RECORDS: usize = 4096;
/// Most multi-proof hashes in one gap: two per level of a tree of 2^64 leaves.
pub const MAX_GAP_HASHES: usize = 128;
/// Most hashes of an inclusion proof (one per level).
pub const MAX_INCLUSION_HASHES: usize = 64;
/// Most hashes of a consistency proof.
pub const MAX_CONSISTENCY_HASHES: usize = 128;

/// The type byte of each record. See `docs/formats/bundle.md` for the
/// order they may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// The log's signed checkpoint note; first, exactly once.
    Checkpoint = 1,
    /// A consistency proof from an older tree size; at most once, second.
    Consistency = 2,
    /// An event: index, gap hashes, salt, canonical envelope.
    Event = 3,
    /// A purged entry: index, gap hashes, commitment, its purge record's index.
    Purged = 4,
    /// A `retention.purge` event with its own inclusion proof.
    PurgeRecord = 5,
    /// The multi-proof's last gap; exactly once, after the entries.
    End = 6,
    /// The signed manifest; last, exactly once.
    Manifest = 7,
}

impl RecordType {
    /// The type of a type byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<RecordType> {
        Some(match byte {
            1 => RecordType::Checkpoint,
            2 => RecordType::Consistency,
            3 => RecordType::Event,
            4 => RecordType::Purged,
            5 => RecordType::PurgeRecord,
            6 => RecordType::End,
            7 => RecordType::Manifest,
            _ => return None,
        })
    }

    /// The record's name in messages and in the format document.
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Checkpoint => "checkpoint",
            RecordType::Consistency => "consistency",
            RecordType::Event => "event",
            RecordType::Purged => "purged",
            RecordType::PurgeRecord => "purge-record",
            RecordType::End => "end",
            RecordType::Manifest => "manifest",
        }
    }

    /// The largest body a record of this type may declare; checked before
    /// anything is allocated.
    pub fn max_body(self) -> usize {
        let gap = 1 + 32 * MAX_GAP_HASHES;
        match self {
            RecordType::Checkpoint | RecordType::Manifest => MAX_NOTE_BYTES,
            RecordType::Consistency => 8 + 1 + 32 * MAX_CONSISTENCY_HASHES,
            RecordType::Event => 8 + gap + 32 + MAX_EVENT_BYTES,
            RecordType::Purged => 8 + gap + 32 + 8,
            RecordType::PurgeRecord => 8 + 1 + 32 * MAX_INCLUSION_HASHES + 32 + MAX_EVENT_BYTES,
            RecordType::End => gap,
        }
    }
}

/// One record as read: its type, its body, and where it began.
#[derive(Debug)]
pub(crate) struct Record {
    pub kind: RecordType,
    pub body: Vec<u8>,
    pub offset: u64,
}

/// Reads records one at a time, checking the magic first and every
/// declared length against its type's limit before allocating it, and
/// hashing every byte read except the manifest record's (the contents hash).
pub(crate) struct RecordReader<R: Read> {
    input: R,
    offset: u64,
    contents: Sha256,
}

impl<R: Read> RecordReader<R> {
    /// Reads and checks the magic.
    pub fn new(mut input: R) -> Result<RecordReader<R>, BundleError> {
        let mut magic = [0u8; 16];
        let got = read_full(&mut input, &mut magic, 0)?;
        if got < magic.len() || &magic != MAGIC {
            return Err(BundleError::Magic);
        }
        let mut contents = Sha256::new();
        contents.update(magic);
        Ok(RecordReader {
            input,
            offset: 16,
            contents,
        })
    }

    /// The next record, or `None` at a clean end of input (between records).
    pub fn next(&mut self) -> Result<Option<Record>, BundleError> {
        let offset = self.offset;
        let mut header = [0u8; 5];
        let got = read_full(&mut self.input, &mut header, offset)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(BundleError::Truncated {
                offset,
                what: "a record header".into(),
            });
        }
        let kind = RecordType::from_byte(header[0]).ok_or(BundleError::Framing {
            offset,
            reason: format!("unknown record type {}", header[0]),
        })?;
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        if len > kind.max_body() {
            return Err(BundleError::Framing {
                offset,
                reason: format!(
                    "{} record declares {declared} bytes, more than its limit of {}",
                    kind.name(),
                    kind.max_body()
                ),
            });
        }
        // Grown as bytes arrive, so a short file declaring a long record
        // costs only what it holds.
        let mut body = Vec::new();
        let got = read_body(&mut self.input, &mut body, len, offset + 5)?;
        if got < len {
            return Err(BundleError::Truncated {
                offset,
                what: format!(
                    "the {} record, which declares {len} bytes but has {got}",
                    kind.name()
                ),
            });
        }
        if kind != RecordType::Manifest {
            self.contents.update(header);
            self.contents.update(&body);
        }
        self.offset = offset + 5 + len as u64;
        Ok(Some(Record { kind, body, offset }))
    }

    /// SHA-256 of every byte read so far, the manifest record excluded.
    pub fn contents_hash(&self) -> [u8; 32] {
        self.contents.clone().finalize().into()
    }

    /// Where the next record begins.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Reads up to `len` bytes into `body` until the input ends; returns how
/// many bytes came.
fn read_body(
    input: &mut impl Read,
    body: &mut Vec<u8>,
    len: usize,
    offset: u64,
) -> Result<usize, BundleError> {
    input
        .take(len as u64)
        .read_to_end(body)
        .map_err(|source| BundleError::Io {
            offset: offset + body.len() as u64,
            message: source.to_string(),
        })
}

/// Reads until `buf` is full or the input ends; returns how many bytes came.
fn read_full(input: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, BundleError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(BundleError::Io {
                    offset: offset + filled as u64,
                    message: source.to_string(),
                });
            }
        }
    }
    Ok(filled)
}

/// A cursor over one record's body that names what it could not read.
pub(crate) struct Body<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    pub fn new(bytes: &'a [u8]) -> Body<'a> {
        Body { bytes, at: 0 }
    }

    /// The next `n` bytes, or the name of the field that is cut short.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "body ends inside its {field} ({} bytes left, {n} needed)",
                self.bytes.len() - self.at
            ));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, String> {
        let bytes = self.take(8, field)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    pub fn hash(&mut self, field: &'static str) -> Result<[u8; 32], String> {
        let bytes = self.take(32, field)?;
        let mut array = [0u8; 32];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// A count byte followed by that many hashes, refused above `max`.
    pub fn hashes(&mut self, max: usize, field: &'static str) -> Result<Vec<[u8; 32]>, String> {
        let count = usize::from(self.take(1, field)?[0]);
        if count > max {
            return Err(format!("{field}: {count} hashes, more than {max}"));
        }
        (0..count).map(|_| self.hash(field)).collect()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    /// Refuses bytes left over after the last field.
    pub fn end(&self) -> Result<(), String> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last field")),
        }
    }
}
