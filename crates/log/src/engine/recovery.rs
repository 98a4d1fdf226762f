//! Recovery: what every writing open does before the log takes an append.
//!
//! A crash may leave, beyond what was acknowledged: a torn index tail,
//! index records whose segment records never became durable, records of
//! interrupted appends after a segment's committed length (or bytes that are
//! not the log's, kept aside first: `salvage.rs`), tiles and a checkpoint
//! not yet published, and a segment file whose header was cut short. Each
//! step below says what it cuts and why nothing acknowledged is in it; a
//! reader opened on its own (`read_only.rs`) uses the same walks to say
//! what the next writing open would do, without doing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use stele_event::time::Day;

use stele_store::StoreError;
use stele_store::fsutil;
use stele_store::history::StoredCheckpoint;
use stele_store::segment::{self, SegmentWriter};

use crate::engine::{LogWriter, SegmentInfo, is_damaged_data};
use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::purge::Tombstone;

impl LogWriter {
    /// Brings segments, tiles and the checkpoint up to the durable index.
    pub(crate) fn recover(&mut self) -> LogResult<()> {
        self.cut_unbacked_tail()?;
        let total = self.index.len();
        // Segment lengths: start from the snapshot of the last publish, then
        // extend with every index entry after it. The snapshot only saves
        // reading the index: an unreadable one, or one a segment disagrees
        // with (a tail holding a committed entry's record, or a segment
        // shorter than it says), is ignored and the whole index is read.
        let tails = self.reader.tails()?;
        // Cut every segment back to its committed length: anything beyond is
        // from a batch whose index records never became durable, or is not
        // the log's at all (kept aside first, see `salvage`).
        let now = Timestamp::now();
        for tail in &tails {
            self.committed.insert(tail.id, tail.keep);
            match tail.kind {
                TailKind::None => {}
                TailKind::Short => {
                    return Err(LogError::Integrity(format!(
                        "{}: {} bytes, but committed entries reach byte {}",
                        tail.path.display(),
                        tail.len,
                        tail.keep
                    )));
                }
                TailKind::Leftovers => {
                    drop(SegmentWriter::open_at(&tail.path, tail.keep)?);
                }
                TailKind::Foreign { end } => {
                    let (name, kept) = crate::salvage::keep_aside(
                        &self.layout,
                        tail.id,
                        &tail.path,
                        tail.keep,
                        end,
                        now,
                    )?;
                    // Crash story: the bytes are kept; a crash before the
                    // cut finds them again and keeps the same file again.
                    drop(SegmentWriter::open_at(&tail.path, tail.keep)?);
                    self.kept_at_open.push(format!(
                        "{} bytes after the committed records of {} were not an interrupted append's: cut, and kept in {}",
                        kept.length,
                        tail.path.display(),
                        self.layout.recovered().join(format!("{name}.bin")).display()
                    ));
                }
            }
        }

        self.share();
        // Integrate every durable entry not yet in the published tree.
        let mut next = self.tiles.size();
        while next < total {
            let count = (total - next).min(65_536);
            let records = self.index.read_range(next, count)?;
            let mut sink = &self.publisher;
            for record in records {
                self.tiles.push(&record.commitment, &mut sink)?;
            }
            next += count;
        }
        if self.tiles.size() > self.published_size() {
            self.publish()?;
        }
        Ok(())
    }

    /// The last append's segment and index records are fdatasynced at the
    /// same time (steps 2b and 3), so a crash may leave index records whose
    /// segment records never reached the disk, or reached it torn, or not
    /// at all while the zeros written ahead fill their place. Each entry of
    /// the last append's reach (`MAX_BATCH_RECORDS` entries before the
    /// end, and never below the latest signed checkpoint) is read back and
    /// authenticated (the tag binds its index and commitment); the index is
    /// cut at the first that is torn: missing, cut short, or with a sector
    /// of zeros where its bytes belong ([`stele_store::torn`]). None of the
    /// entries cut was acknowledged: their batch's fdatasyncs had not both
    /// returned. A record that is all there and still fails its checksum or
    /// tag was altered after it was written: the open fails naming it, and
    /// nothing is cut (it may be an acknowledged entry). A failure that is
    /// not damaged data (an I/O error, a segment file that is gone, a key
    /// that does not open) stops the open too; entries before the reach are
    /// not read here (`verify` does).
    ///
    /// A block (segment versions 3 and 4) holds entries of one append; if the
    /// index records of that append were cut short, the block holds
    /// entries the index no longer has, and the index is cut back to the
    /// block's first entry (and further while that leaves another block of
    /// the append partial: its blocks in other segments interleave their
    /// entries): the whole append was unacknowledged, and its blocks then
    /// lie after their segments' committed lengths, where the segments are
    /// cut like any interrupted append.
    fn cut_unbacked_tail(&mut self) -> LogResult<()> {
        match self.reader.first_unreadable_in_reach()? {
            None => {}
            Some((index, record, e)) if is_damaged_data(&e) => {
                self.reader.tear_of(index, &record, &e)?;
                // Crash story: a crash during the cut leaves the index
                // longer; the next open checks it again.
                self.index.cut_to(index)?;
            }
            Some((_, _, e)) => return Err(e),
        }
        let total = self.index.len();
        if let Some(first) = self.reader.first_partial_block_in_reach(total)? {
            if first < self.published_size() {
                return Err(LogError::Integrity(format!(
                    "a block holds entries from {first} to past the end of the index ({total}), yet a signed checkpoint covers entry {first}: the index or the segment was altered; nothing was cut"
                )));
            }
            // Crash story: as above.
            self.index.cut_to(first)?;
        }
        Ok(())
    }
}

/// What lies after a segment's committed length.
pub(crate) struct Tail {
    pub(crate) id: u32,
    pub(crate) path: PathBuf,
    /// The committed length (at least the header's).
    pub(crate) keep: u64,
    /// The file's length.
    pub(crate) len: u64,
    pub(crate) kind: TailKind,
}

pub(crate) enum TailKind {
    /// The file ends at its committed length.
    None,
    /// The file is shorter than its committed entries: data is missing.
    Short,
    /// What an interrupted append leaves: records of entries at or after
    /// the log's end, then at most one record cut short, followed only by
    /// zeros. Cut.
    Leftovers,
    /// Anything else (bytes a power loss left out of order, or that someone
    /// wrote); its non-zero bytes end at `end`. Kept aside, then cut.
    Foreign { end: u64 },
}

/// Walks the bytes of a segment after its committed length `keep`, record
/// by record (memory stays bounded whatever the tail holds). Records of an
/// interrupted append carry indices at or above the recovered log size
/// `total` (they were numbered after the last durable entry); a record
/// below it is a committed entry out of place. The interrupted write
/// itself may be cut short: what reached the file is either shorter than a
/// record header, or a plausible header numbering its own uncommitted
/// entry (within the batches that may have been in flight) and declaring
/// more bytes than were written; only zeros follow it (space written
/// ahead, or that the file system extended the file with).
pub(crate) fn classify_tail(path: &Path, keep: u64, len: u64, total: u64) -> LogResult<TailKind> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let read_at = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| LogError::from(StoreError::io("read", path, e)))
    };
    let foreign = || -> LogResult<TailKind> {
        let end = fsutil::end_of_nonzero(&file, keep, len)
            .map_err(|e| StoreError::io("read", path, e))?;
        Ok(TailKind::Foreign { end })
    };
    let mut pos = keep;
    let mut record_bytes = Vec::new();
    while pos < len {
        let remaining = len - pos;
        if remaining < 12 {
            break; // too short to be anything but a torn write
        }
        let mut head = [0u8; 12];
        read_at(&mut head, pos)?;
        let declared = 4 + u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let number = u64::from_be_bytes([
            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
        ]);
        let plausible = declared <= segment::MAX_RECORD_BODY as usize + 4;
        if plausible && declared as u64 <= remaining {
            record_bytes.resize(declared, 0);
            read_at(&mut record_bytes, pos)?;
            if let Ok((record, record_len)) = segment::parse_record_ref(path, pos, &record_bytes) {
                if record.index < total {
                    return foreign();
                }
                pos += record_len as u64;
                continue;
            }
        }
        let written = fsutil::end_of_nonzero(&file, pos, len)
            .map_err(|e| StoreError::io("read", path, e))?
            - pos;
        let torn = written < 12
            || (plausible
                && declared as u64 > written
                && number >= total
                && number - total
                    < crate::engine::MAX_IN_FLIGHT as u64 * stele_store::index::MAX_BATCH_RECORDS);
        if torn {
            break;
        }
        return foreign();
    }
    Ok(TailKind::Leftovers)
}

/// The bytes of the file at `path` from `offset`, at most `len` of them
/// (fewer when the file ends first; none when it ends before `offset`).
pub(crate) fn read_record_bytes(path: &Path, offset: u64, len: u64) -> LogResult<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    let n = file_len.saturating_sub(offset).min(len);
    let mut bytes = vec![0u8; n as usize];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| StoreError::io("read", path, e))?;
    Ok(bytes)
}

/// Brings `log/checkpoint` up to the latest history record. A crash between
/// the history append and the replace leaves the previous checkpoint (or
/// none, or a temporary file) there; anything else was not written by this
/// log and is reported, never overwritten.
pub(crate) fn repair_public_checkpoint(
    layout: &Layout,
    latest: &StoredCheckpoint,
    previous: Option<&StoredCheckpoint>,
) -> LogResult<()> {
    let public_note = fsutil::read_optional(&layout.checkpoint())?;
    if public_note.as_deref() == Some(latest.note.as_slice()) {
        return Ok(());
    }
    let previous = previous.map(|c| c.note.as_slice());
    let tmp_exists = fsutil::tmp_sibling(&layout.checkpoint()).exists();
    match public_note.as_deref() {
        None => {}
        Some(bytes) if Some(bytes) == previous || tmp_exists => {}
        Some(_) => {
            return Err(LogError::Integrity(format!(
                "{} is not a checkpoint this log published (altered?)",
                layout.checkpoint().display()
            )));
        }
    }
    fsutil::atomic_replace(&layout.checkpoint(), &latest.note, 0o644)?;
    Ok(())
}

/// Finds every segment file and reads its header. A file whose header is
/// torn (shorter than a complete header: a crash during creation) is
/// removed (left alone and skipped by a read-only open); any other
/// unreadable segment is an integrity error.
pub(crate) fn discover_segments(layout: &Layout, remove: RemoveTornCreates) -> LogResult<Segments> {
    let mut out = BTreeMap::new();
    let mut purged: BTreeMap<u32, Tombstone> = BTreeMap::new();
    let root = layout.segments();
    let streams = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, purged)),
        Err(e) => return Err(StoreError::io("read directory", &root, e).into()),
    };
    for stream_dir in streams {
        let stream_dir = stream_dir.map_err(|e| StoreError::io("read directory", &root, e))?;
        if !stream_dir.path().is_dir() {
            continue;
        }
        let dir = stream_dir.path();
        for file in
            std::fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))?
        {
            let file = file.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) == Some("purged") {
                let tombstone = Tombstone::read(&path)?;
                let expected = dir.join(format!("{}.purged", tombstone.epoch));
                if expected != path
                    || tombstone.epoch_day != tombstone.epoch
                    || dir.file_name().and_then(|n| n.to_str()) != Some(tombstone.stream.as_str())
                {
                    return Err(LogError::Integrity(format!(
                        "{}: names stream {:?} epoch {} (moved or altered?)",
                        path.display(),
                        tombstone.stream,
                        tombstone.epoch
                    )));
                }
                if let Some(previous) = purged.insert(tombstone.segment.0, tombstone) {
                    return Err(LogError::Integrity(format!(
                        "two purge records claim segment {} (one is {})",
                        previous.segment,
                        path.display()
                    )));
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("seg") {
                continue;
            }
            match segment::read_header(&path) {
                Ok((header, _)) => {
                    let day = Day::from_number(header.epoch).map_err(|e| {
                        LogError::Integrity(format!("{}: header: {e}", path.display()))
                    })?;
                    if let Some(previous) = out.insert(
                        header.id,
                        SegmentInfo {
                            header: header.clone(),
                            day,
                            path: path.clone(),
                        },
                    ) {
                        return Err(LogError::Integrity(format!(
                            "{} and {} both claim segment id {}",
                            previous.path.display(),
                            path.display(),
                            header.id
                        )));
                    }
                }
                Err(e) => {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                    if len < 22 + 4 + 256 && is_torn_create(&path) {
                        if remove == RemoveTornCreates::No {
                            continue; // the read-only open notes it
                        }
                        // Nothing can refer to a segment whose header never
                        // became durable, so removing it loses nothing.
                        stele_store::fileio::remove_file(&path)
                            .map_err(|e| StoreError::io("remove", &path, e))?;
                        fsutil::fsync_dir(&dir)?;
                    } else {
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Ok((out, purged))
}

/// Whether [`discover_segments`] removes a segment file whose header a
/// crash cut short (a writing open) or leaves it (a read-only one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveTornCreates {
    Yes,
    No,
}

/// Segments on disk by id, and tombstones of purged ones.
type Segments = (BTreeMap<u32, SegmentInfo>, BTreeMap<u32, Tombstone>);

/// A segment file that holds only a prefix of a header, nothing, or only
/// zeros where its header was written: the
/// trace of a crash inside [`SegmentWriter::create`], never of a segment
/// that held records.
fn is_torn_create(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // A power loss can keep the new file's length and lose its bytes
    // (zeros where the header was, on file systems that order neither).
    if bytes.iter().all(|b| *b == 0) {
        return true;
    }
    let magic = b"STELESEG";
    let n = bytes.len().min(magic.len());
    if bytes[..n] != magic[..n] {
        return false;
    }
    if bytes.len() < 22 {
        return true;
    }
    let needed = 22 + usize::from(u16::from_be_bytes([bytes[20], bytes[21]])) + 4;
    bytes.len() < needed
}
