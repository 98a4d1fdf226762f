//! The search index on disk: one sealed file per segment whose day is
//! over, `DATA/search/<segment id>.part` (docs/formats/search.md).
//!
//! A part file is a cache of what the log holds. It is written by the
//! index thread once a segment's day is over (every entry it will ever
//! get, unless a clock set back sends it more, in which case it is
//! written again), read at the next open instead of reading the
//! segment's events, and checked there against the sequence index entry
//! by entry before a search may use it. A file that does not open, does
//! not decode, or disagrees with the log is deleted and its segment is
//! indexed from the log again: a part file never decides what a search
//! finds on its own.
//!
//! Crash story: a file is written by `atomic_replace` (a whole new file,
//! synced, renamed over the old, the directory synced), so a crash leaves
//! the old file or the new one, and at worst a `.tmp` sibling that the
//! next open removes. Losing the files loses nothing: the open indexes
//! from the log what they would have held.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stele_index::Part;
use stele_store::fsutil;
use stele_store::search_part::{self, PartHeader};

use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::reader::LogReader;

/// The bytes sealed in a part file: the number of parts (u32 BE), then
/// each part's length (u64 BE) and encoding (`stele_index`'s codec).
pub(crate) fn encode(parts: &[Part]) -> Vec<u8> {
    let encodings: Vec<Vec<u8>> = parts.iter().map(Part::encode).collect();
    let total: usize = encodings.iter().map(|e| e.len() + 8).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&(parts.len() as u32).to_be_bytes());
    for encoding in encodings {
        out.extend_from_slice(&(encoding.len() as u64).to_be_bytes());
        out.extend_from_slice(&encoding);
    }
    out
}

/// The parts of [`encode`]'s bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Part>, String> {
    let count = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("no part count")?;
    let mut at = 4usize;
    let mut parts = Vec::new();
    for _ in 0..count {
        let len = bytes
            .get(at..at + 8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])))
            .ok_or("ends before a part's length")?;
        at += 8;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or("a part longer than the file")?;
        parts.push(Part::decode(&bytes[at..end]).map_err(|e| e.to_string())?);
        at = end;
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after the parts", bytes.len() - at));
    }
    Ok(parts)
}

/// The entries of `parts`, ascending.
pub(crate) fn entries_of(parts: &[Part]) -> Vec<u64> {
    let mut entries: Vec<u64> = parts.iter().flat_map(|p| p.entries().to_vec()).collect();
    entries.sort_unstable();
    entries
}

/// Whether `header` gives the count, first and last of `entries`
/// (ascending).
fn describes(header: &PartHeader, entries: &[u64]) -> bool {
    header.entries == entries.len() as u64
        && header.first == entries.first().copied().unwrap_or(0)
        && header.last == entries.last().copied().unwrap_or(0)
}

/// The header of segment `id`'s part file holding `entries` (ascending):
/// their count, first, last, and the digest of their commitments read
/// from the sequence index, which must give `id` exactly these entries
/// between the first and the last.
pub(crate) fn header_for(reader: &LogReader, id: u32, entries: &[u64]) -> LogResult<PartHeader> {
    let mut digest = Sha256::new();
    let mut expected = entries.iter().copied().peekable();
    if let (Some(&first), Some(&last)) = (entries.first(), entries.last()) {
        let mut at = first;
        while at <= last {
            let count = (last + 1 - at).min(READ_STEP);
            for (entry, record) in (at..).zip(reader.index().read_range(at, count)?) {
                if record.segment_id != id {
                    continue;
                }
                if expected.next() != Some(entry) {
                    return Err(LogError::Internal(format!(
                        "search part of segment {id}: the index holds entry {entry} of it, which the part does not"
                    )));
                }
                digest.update(record.commitment);
            }
            at += count;
        }
    }
    if let Some(entry) = expected.next() {
        return Err(LogError::Internal(format!(
            "search part of segment {id}: holds entry {entry}, which the index gives another segment"
        )));
    }
    Ok(PartHeader {
        segment_id: id,
        entries: entries.len() as u64,
        first: entries.first().copied().unwrap_or(0),
        last: entries.last().copied().unwrap_or(0),
        commitments: digest.finalize().into(),
    })
}

/// Index records read at a time.
const READ_STEP: u64 = 65_536;

/// Writes the part file of segment `id`: `plain` is [`encode`]'s bytes
/// of the parts `header` describes (see the module docs for the crash
/// story). Returns the file's length.
pub(crate) fn write(
    reader: &LogReader,
    id: u32,
    header: &PartHeader,
    plain: &[u8],
) -> LogResult<u64> {
    let keys = reader.segment_keys(id)?;
    let file = search_part::seal(keys.data_key(), header, plain)?;
    let layout = reader.layout();
    fsutil::create_dir_durable(&layout.search_parts())?;
    fsutil::atomic_replace(&layout.search_part(id), &file, 0o600)?;
    Ok(file.len() as u64)
}

/// A part file read and opened, before the log confirms it.
pub(crate) struct Loaded {
    pub header: PartHeader,
    pub parts: Vec<Part>,
    /// Its entries, ascending.
    pub entries: Vec<u64>,
    pub path: PathBuf,
}

/// Reads and opens the part file of segment `id` at `path`: its header
/// and parts (the header checked to describe them; the digest of
/// commitments is for the caller to check against the index).
pub(crate) fn read(reader: &LogReader, id: u32, path: &Path) -> Result<Loaded, String> {
    let bytes = fsutil::read(path).map_err(|e| e.to_string())?;
    let keys = reader.segment_keys(id).map_err(|e| e.to_string())?;
    let (header, plain) =
        search_part::open(keys.data_key(), id, &bytes).map_err(|e| e.to_string())?;
    let parts = decode(&plain)?;
    let entries = entries_of(&parts);
    if !describes(&header, &entries) {
        return Err("its header does not describe its parts".into());
    }
    Ok(Loaded {
        header,
        parts,
        entries,
        path: path.to_path_buf(),
    })
}

/// What the search directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Part files by segment id, ascending.
    pub parts: Vec<(u32, PathBuf)>,
    /// Any other name (a `.tmp` a crash left, or a stranger).
    pub others: Vec<PathBuf>,
}

/// Lists the search directory (empty when there is none).
pub(crate) fn list(layout: &Layout) -> LogResult<Listing> {
    let dir = layout.search_parts();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
        Err(e) => return Err(stele_store::error::StoreError::io("read", &dir, e).into()),
    };
    let (mut parts, mut others) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| stele_store::error::StoreError::io("read", &dir, e))?;
        let path = entry.path();
        let id = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_suffix(".part"))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .filter(|digits| !digits.starts_with('0') || digits.len() == 1)
            .and_then(|digits| digits.parse::<u32>().ok());
        match id {
            Some(id) => parts.push((id, path)),
            None => others.push(path),
        }
    }
    parts.sort();
    others.sort();
    Ok(Listing { parts, others })
}

/// Removes a file of the search directory (missing is fine).
pub(crate) fn remove(path: &Path) -> LogResult<()> {
    match stele_store::fileio::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::from(stele_store::error::StoreError::io(
            "remove", path, e,
        ))),
    }
}
