//! The segment pass of `verify`: every segment walked in order against the
//! index, one window of entries at a time, each record's (or block's)
//! checksum, position, AEAD tag and commitments checked.
//!
//! The walk reads a segment in chunks and needs no key: a record's frame
//! (length, entry number, generation, CRC) says where it ends, and a
//! block's head lists its entries. Each chunk's records are then opened
//! and checked on all cores while the next chunk is read. A block (segment
//! versions 3 and 4) holds several entries; the index must place each of them in
//! it, and no other. A block whose entries reach into the next window of
//! the index is kept (`Carry`) and checked once the window holding its
//! last entry is read, so each block is decrypted once, however the index
//! is windowed.
//!
//! A window's expected records are met in the order of their offsets, so
//! that an index record placing its entry elsewhere is named once (and
//! compared with what is there) without shifting the comparisons after
//! it. The walk stops for a later window after such a block, or before a
//! record of a later window's entry, and keeps the expected records it did
//! not reach for the walk to meet when it goes on (`Cursor::pending`): the
//! problems named are those of one walk of the whole index. (Only an
//! index record placing its entry before where an earlier window's walk
//! ended, where the walk does not go back, is named as placed "where no
//! record starts", even when a record starts there.)

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use stele_store::block::{self, ReferenceDictionary, Unpacker};
use stele_store::fsutil;
use stele_store::index::IndexRecord;
use stele_store::segment::{self, SegmentHeader, parse_record_ref, peek_record, record_len};
use stele_store::sessions::SegmentKeys;

use super::{Problems, Progress, show};
use crate::engine::SegmentInfo;
use crate::reader::LogReader;

/// Bytes of a segment read and checked at a time.
/// Larger than the largest record, so a chunk always holds a whole one.
pub(super) const CHUNK_BYTES: usize = 32 * 1024 * 1024;
/// Smallest chunk accepted by `verify_with`.
pub(super) const MIN_CHUNK_BYTES: usize = 64;

/// One segment's expected records, from the index.
#[derive(Clone)]
struct Expected {
    index: u64,
    offset: u64,
    len: u32,
    commitment: [u8; 32],
}

/// A block met by the walk whose entries reach past the window being
/// walked: checked once the rest of them are seen.
struct Carry {
    offset: u64,
    len: usize,
    frame: Vec<u8>,
    /// Every entry the block holds (its head's list).
    held: Vec<u64>,
    /// Entries matched so far, with their commitments.
    entries: Vec<(u64, [u8; 32])>,
    /// Entries of the block in later windows.
    rest: Vec<u64>,
    /// Entries of the block the index places elsewhere, named once the
    /// block is done (a block no index record points at is named as such
    /// instead, whatever the windows).
    unplaced: Vec<u64>,
    /// Some index record points at the block (matched or not).
    referenced: bool,
}

/// An open segment file being walked, window after window.
struct Cursor {
    id: u32,
    /// The segment's committed length in the view.
    committed: u64,
    file: std::fs::File,
    /// The same file opened with `O_DIRECT`, where the file system allows.
    direct: Option<std::fs::File>,
    key: Option<std::sync::Arc<SegmentKeys>>,
    /// Where records end: the committed length (zeros after it checked
    /// once, at open) or the file's length.
    file_len: u64,
    /// The next byte to walk.
    pos: u64,
    /// The walk met a record it cannot parse; the rest of the file is not
    /// walked.
    stopped: bool,
    /// The header's version: 3 and 4 for blocks.
    version: u8,
    /// The reference blocks opened so far (version 4), shared by the
    /// checking threads.
    references: Mutex<Vec<Arc<ReferenceDictionary>>>,
    carry: Option<Carry>,
    /// Expected records of earlier windows placed beyond the block carried
    /// then: walked with the next window's, once the walk goes on.
    pending: Vec<Expected>,
}

impl Cursor {
    /// Opens a segment for walking: its data key, its length, its header.
    /// `None` (the reason reported) when it cannot be walked at all.
    fn open(log: &LogReader, id: u32, info: &SegmentInfo, problems: &Problems) -> Option<Cursor> {
        let key = match log.segment_keys(id) {
            Ok(key) => Some(key),
            Err(e) => {
                problems.add(show(&log.layout().dek(id)), e.to_string());
                None
            }
        };
        let mut file = match std::fs::File::open(&info.path) {
            Ok(file) => file,
            Err(e) => {
                problems.add(show(&info.path), e.to_string());
                return None;
            }
        };
        let on_disk = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Records end at the committed length; the file may go on with
        // zeros written ahead of the next records, and nothing else.
        let committed = log.committed_length(id);
        let file_len = match committed.as_ref() {
            // A reader opened on its own surveyed the bytes after the
            // committed length (a note, if they are not an append's).
            Some(committed) if log.pending_recovery().is_some() => (*committed).min(on_disk),
            // The writer beside this view appended there since, or is
            // appending: those bytes are its, not this view's.
            Some(committed) if log.written_beyond(id, *committed) => (*committed).min(on_disk),
            Some(committed) if *committed < on_disk => {
                match fsutil::end_of_nonzero(&file, *committed, on_disk) {
                    Ok(end) if end == *committed => *committed,
                    Ok(_) if log.written_beyond(id, *committed) => *committed,
                    Ok(_) => {
                        problems.add(
                            show(&info.path),
                            format!(
                                "bytes after the last committed record (byte {committed}) are not zeros"
                            ),
                        );
                        on_disk
                    }
                    Err(e) => {
                        problems.add(show(&info.path), e.to_string());
                        on_disk
                    }
                }
            }
            _ => on_disk,
        };
        let mut head = vec![0u8; (file_len as usize).min(22 + 255 + 4)];
        if let Err(e) = std::io::Read::read_exact(&mut file, &mut head) {
            problems.add(show(&info.path), e.to_string());
            return None;
        }
        let header_len = match SegmentHeader::decode(&info.path, &head) {
            Ok((header, len)) if header == info.header => len as u64,
            Ok(_) => {
                problems.add(show(&info.path), "header changed while verifying");
                return None;
            }
            Err(e) => {
                problems.add(show(&info.path), e.to_string());
                return None;
            }
        };
        let committed = committed.unwrap_or(0);
        // A segment the writer beside is appending to is read through the
        // page cache: an `O_DIRECT` read holds the file's inode lock (ext4,
        // XFS) for as long as it takes, and the appends wait behind it.
        let direct = if log.written_beyond(id, committed) {
            None
        } else {
            fsutil::open_direct(&info.path)
        };
        Some(Cursor {
            id,
            committed,
            direct,
            file,
            key,
            file_len,
            pos: header_len,
            stopped: false,
            version: info.header.version,
            references: Mutex::new(Vec::new()),
            carry: None,
            pending: Vec::new(),
        })
    }
}

/// Walks every segment against the index, one window of entries at a
/// time: each segment from where the previous window left it up to its
/// last record the window expects (to its end in the last window).
pub(super) struct SegmentPass<'a> {
    log: &'a LogReader,
    problems: &'a Problems,
    bytes_decrypted: &'a AtomicU64,
    max_generation: &'a AtomicU64,
    chunk_bytes: usize,
    threads: usize,
    /// Segments walked so far; `None` for one that cannot be walked (its
    /// reason already reported).
    cursors: BTreeMap<u32, Option<Cursor>>,
    /// Segment ids the index names that do not exist, reported once.
    missing: HashSet<u32>,
    /// Per segment: indexed entries its walk did not find (how many, the
    /// first), reported once at the end.
    unreached: BTreeMap<u32, (u64, u64)>,
    /// The two chunk buffers, kept from one walk to the next.
    buffers: (ChunkBuf, ChunkBuf),
}

/// One window of the index, as the walks see it.
#[derive(Clone, Copy)]
struct Window<'a> {
    /// The window's first entry.
    base: u64,
    records: &'a [IndexRecord],
    /// Entries of the window whose index record is corrupt, sorted.
    corrupt: &'a [u64],
    /// The window that ends the index.
    last: bool,
}

impl Window<'_> {
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    /// Whether a block's entry that the window's index records do not place
    /// in it is a problem now: not when a later window may place it, nor
    /// when its own index record is corrupt (reported as such).
    fn misplaced(&self, index: u64) -> bool {
        (self.last || index < self.end()) && self.corrupt.binary_search(&index).is_err()
    }
}

impl<'a> SegmentPass<'a> {
    pub(super) fn new(
        log: &'a LogReader,
        problems: &'a Problems,
        bytes_decrypted: &'a AtomicU64,
        max_generation: &'a AtomicU64,
        chunk_bytes: usize,
        threads: usize,
    ) -> SegmentPass<'a> {
        SegmentPass {
            log,
            problems,
            bytes_decrypted,
            max_generation,
            chunk_bytes,
            threads,
            cursors: BTreeMap::new(),
            missing: HashSet::new(),
            unreached: BTreeMap::new(),
            buffers: Default::default(),
        }
    }

    /// Checks the records of one window of entries (the first being entry
    /// `base`; `corrupt` lists, sorted, those whose index record is
    /// corrupt); `last` for the window that ends the index.
    pub(super) fn window(
        &mut self,
        base: u64,
        records: &[IndexRecord],
        corrupt: &[u64],
        last: bool,
        progress: &dyn Progress,
    ) {
        let log = self.log;
        let window = Window {
            base,
            records,
            corrupt,
            last,
        };
        let mut by_segment: BTreeMap<u32, Vec<Expected>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let index = base + i as u64;
            if corrupt.binary_search(&index).is_ok() {
                progress.advance(1);
                continue;
            }
            by_segment.entry(r.segment_id).or_default().push(Expected {
                index,
                offset: r.location.offset,
                len: r.location.len,
                commitment: r.commitment,
            });
        }
        // Each segment is walked in the order of its bytes: an index record
        // placing its entry out of order (elsewhere in the file) is then
        // compared with what is there, and does not shift the comparisons
        // of the records after it (for a sound index, entries and offsets
        // rise together).
        for expected in by_segment.values_mut() {
            expected.sort_by_key(|e| (e.offset, e.index));
        }
        let (segments, purged) = (log.segment_infos(), log.purge_records());
        for (id, expected) in &by_segment {
            if !segments.contains_key(id) && !purged.contains_key(id) && self.missing.insert(*id) {
                self.problems.add(
                    show(&log.layout().segments()),
                    format!(
                        "segment {id} (entries from {}) is missing",
                        expected.first().map(|e| e.index).unwrap_or(0)
                    ),
                );
            }
        }
        for (id, info) in &segments {
            if purged.contains_key(id) {
                continue; // checked by the purge pass
            }
            let expected = by_segment.remove(id).unwrap_or_default();
            if expected.is_empty() && !last {
                continue;
            }
            let mut cursor = match self.cursors.remove(id) {
                Some(cursor) => cursor,
                None => Cursor::open(log, *id, info, self.problems),
            };
            if let Some(cursor) = &mut cursor {
                self.walk(cursor, &info.path, expected, window, progress);
            }
            self.cursors.insert(*id, cursor);
        }
    }

    /// The checks of the records and blocks of one segment (opened with
    /// `key`; its version and reference blocks in `references`).
    fn checks<'b>(
        &self,
        key: Option<&'b SegmentKeys>,
        references: References<'b>,
        path: &'b Path,
        progress: &'b dyn Progress,
    ) -> Checks<'b>
    where
        'a: 'b,
    {
        Checks {
            version: references.version,
            key,
            references,
            path,
            problems: self.problems,
            bytes_decrypted: self.bytes_decrypted,
            progress,
        }
    }

    /// Takes up the block a previous window left (`cursor.carry`): the
    /// first of `expected` (in the order of their offsets) that the index
    /// places at it are its entries of this window, and those placed
    /// before it are named (the walk went past them). Once none of its
    /// entries is left for a later window, it is checked. Returns how many
    /// of `expected` were taken.
    fn take_up_carry(
        &self,
        cursor: &mut Cursor,
        path: &Path,
        expected: &[Expected],
        window: Window<'_>,
        progress: &dyn Progress,
    ) -> usize {
        let Some(mut carry) = cursor.carry.take() else {
            return 0;
        };
        let mut k = 0;
        while let Some(exp) = expected.get(k)
            && exp.offset < carry.offset
        {
            self.problems.add(show(path), no_record_starts(exp));
            k += 1;
        }
        while let Some(exp) = expected.get(k)
            && exp.offset == carry.offset
        {
            carry.referenced = true;
            match carry.rest.binary_search(&exp.index) {
                Ok(at) if exp.len as usize == carry.len => {
                    carry.rest.remove(at);
                    carry.entries.push((exp.index, exp.commitment));
                }
                found => {
                    // Named once: not again as an entry placed elsewhere.
                    if let Ok(at) = found {
                        carry.rest.remove(at);
                    }
                    self.problems
                        .add(show(path), misplaced_in_block(exp, carry.offset, carry.len));
                }
            }
            k += 1;
        }
        let unplaced = carry.rest.iter().filter(|i| window.misplaced(**i));
        carry.unplaced.extend(unplaced);
        carry
            .rest
            .retain(|i| !window.misplaced(*i) && *i >= window.end());
        if !carry.rest.is_empty() && !window.last {
            cursor.carry = Some(carry);
            return k;
        }
        if carry.referenced || !carry.entries.is_empty() {
            for index in &carry.unplaced {
                self.problems
                    .add(show(path), unplaced_in_block(*index, carry.offset));
            }
        } else {
            self.problems
                .add(show(path), unreferenced(carry.offset, &carry.held));
        }
        if carry.entries.is_empty() {
            return k;
        }
        let item = Item {
            at: 0,
            len: carry.len,
            first: 0,
            count: carry.entries.len(),
        };
        let references = References {
            file: &cursor.file,
            version: cursor.version,
            opened: &cursor.references,
        };
        let checks = self.checks(cursor.key.as_deref(), references, path, progress);
        checks.run(&[item], &carry.entries, &carry.frame, carry.offset, 1);
        k
    }

    /// The walk stopped for a later window, after a block whose entries
    /// reach into it or before a record of it, at byte `end`: `rest` (this
    /// window's expected records not met, in the order of their offsets)
    /// are named where they fall before `end` (inside the block: no record
    /// starts there), and the others are kept for the walk to meet once it
    /// goes on.
    fn set_aside(&self, cursor: &mut Cursor, path: &Path, rest: Vec<Expected>, end: u64) {
        for exp in rest {
            if exp.offset < end {
                self.problems.add(show(path), no_record_starts(&exp));
            } else {
                cursor.pending.push(exp);
            }
        }
    }

    /// The expected records the walk did not find (in the order of their
    /// offsets), with no block waiting: those placed before where the walk
    /// of the segment ended are named (every record starting there was
    /// walked), the others counted as unreached, for
    /// [`SegmentPass::finish`].
    fn not_found(&mut self, cursor: &Cursor, path: &Path, rest: &[Expected]) {
        let passed = rest.iter().take_while(|e| e.offset < cursor.pos).count();
        for exp in &rest[..passed] {
            self.problems.add(show(path), no_record_starts(exp));
        }
        let missed = &rest[passed..];
        let Some(first) = missed.iter().map(|e| e.index).min() else {
            return;
        };
        let unreached = self.unreached.entry(cursor.id).or_insert((0, first));
        unreached.0 += missed.len() as u64;
        unreached.1 = unreached.1.min(first);
    }

    /// Walks one segment from its cursor against the records `expected`
    /// of this window (in the order of their offsets), in chunks: each
    /// chunk's records are checked (AEAD and commitment) on all cores
    /// while the next chunk is read and walked. Before the last window the
    /// walk stops after the last expected record (or after a block whose
    /// entries reach into a later window); in the last window it goes to
    /// the end of the file, so that records the index does not point at
    /// are found. Expected records it does not find are named or counted
    /// as unreached.
    fn walk(
        &mut self,
        cursor: &mut Cursor,
        path: &Path,
        mut expected: Vec<Expected>,
        window: Window<'_>,
        progress: &dyn Progress,
    ) {
        let own_end = expected
            .last()
            .map(|e| e.offset.saturating_add(u64::from(e.len)));
        if !cursor.pending.is_empty() {
            expected.append(&mut cursor.pending);
            expected.sort_by_key(|e| (e.offset, e.index));
        }
        let carried = self.take_up_carry(cursor, path, &expected, window, progress);
        if cursor.stopped {
            self.not_found(cursor, path, &expected[carried..]);
            return;
        }
        // A block still waiting for a later window: the walk goes on after
        // it then.
        if let Some(carry) = &cursor.carry {
            let end = carry.offset.saturating_add(carry.len as u64);
            let rest = expected.split_off(carried);
            self.set_aside(cursor, path, rest, end);
            return;
        }
        let expected = expected.as_slice();
        let last = window.last;
        // Reads are sized to end with this window's last expected record,
        // so that a segment with few entries in the window is not read
        // ahead of them (nor as far as a record of an earlier window
        // placed far ahead: the walk stops before that for a later window).
        let window_end = own_end.filter(|end| *end > cursor.pos && !last);
        let (log, id, committed) = (self.log, cursor.id, cursor.committed);
        let writers = move || log.written_beyond(id, committed);
        let mut walk = Walk {
            writers: &writers,
            file: &cursor.file,
            direct: cursor.direct.as_ref(),
            path,
            file_len: cursor.file_len,
            expected,
            k: carried,
            window,
            blocks: segment::holds_blocks(cursor.version),
            carry: None,
            paused: false,
            problems: self.problems,
            max_generation: self.max_generation,
        };
        let references = References {
            file: &cursor.file,
            version: cursor.version,
            opened: &cursor.references,
        };
        let checks = self.checks(cursor.key.as_deref(), references, path, progress);
        let (chunk_bytes, threads) = (self.chunk_bytes, self.threads);
        let mut pos = cursor.pos;
        let mut more = pos < cursor.file_len && (last || walk.k < expected.len());
        let mut ready: Option<(ChunkBuf, Walked)> = None;
        let (mut spare, mut idle) = std::mem::take(&mut self.buffers);
        while more || ready.is_some() {
            let next = std::thread::scope(|scope| {
                if let Some((chunk, walked)) = &ready {
                    let checks = &checks;
                    let check = move || {
                        checks.run(
                            &walked.items,
                            &walked.entries,
                            chunk.bytes(),
                            walked.pos,
                            threads,
                        )
                    };
                    // On one thread the last chunk is checked before the
                    // next is read; otherwise both at once.
                    if threads > 1 {
                        scope.spawn(check);
                    } else {
                        check();
                    }
                }
                more.then(|| {
                    let want = window_end.map_or(chunk_bytes, |end| {
                        (end.saturating_sub(pos).min(chunk_bytes as u64) as usize)
                            .max(MIN_CHUNK_BYTES)
                    });
                    walk.read_and_walk(pos, want, &mut spare)
                })
            });
            // The processed chunk's buffer is read into next time.
            let processed = ready.take().map(|(chunk, _)| chunk);
            match next {
                Some(walked) => {
                    pos += walked.len as u64;
                    more = pos < cursor.file_len
                        && !walked.stopped
                        && walk.carry.is_none()
                        && !walk.paused
                        && (last || walk.k < expected.len());
                    cursor.stopped = walked.stopped;
                    let refill = processed.unwrap_or_else(|| std::mem::take(&mut idle));
                    ready = Some((std::mem::replace(&mut spare, refill), walked));
                }
                None => idle = processed.unwrap_or_default(),
            }
        }
        self.buffers = (spare, idle);
        cursor.pos = pos;
        cursor.carry = walk.carry.take();
        let found = walk.k;
        if let Some(carry) = &cursor.carry {
            let end = carry.offset.saturating_add(carry.len as u64);
            self.set_aside(cursor, path, expected[found..].to_vec(), end);
        } else if walk.paused {
            self.set_aside(cursor, path, expected[found..].to_vec(), pos);
        } else {
            self.not_found(cursor, path, &expected[found..]);
        }
    }

    /// After the last window: the indexed entries no walk found.
    pub(super) fn finish(&self) {
        for (id, (count, first)) in &self.unreached {
            let path = self
                .log
                .segment_infos()
                .get(id)
                .map(|info| show(&info.path))
                .unwrap_or_default();
            self.problems.add(
                path,
                format!("{count} indexed entries (from entry {first}) are missing from the file"),
            );
        }
    }
}

fn misplaced_in_block(exp: &Expected, offset: u64, len: usize) -> String {
    format!(
        "the index places entry {} in the block at byte {offset} ({} bytes), which does not hold it ({len} bytes there)",
        exp.index, exp.len
    )
}

/// A record (or block) no index entry points at.
fn unreferenced(offset: u64, held: &[u64]) -> String {
    match held {
        [one] => format!("record at byte {offset} (entry {one}) is not referenced by the index"),
        _ => format!(
            "block at byte {offset} (entries {} to {}) is not referenced by the index",
            held.first().copied().unwrap_or(0),
            held.last().copied().unwrap_or(0)
        ),
    }
}

fn no_record_starts(exp: &Expected) -> String {
    format!(
        "the index places entry {} at byte {}, where no record starts",
        exp.index, exp.offset
    )
}

fn unplaced_in_block(index: u64, offset: u64) -> String {
    format!("the block at byte {offset} holds entry {index}, which the index places elsewhere")
}

/// One record (or block) of a chunk to check: where it is in the chunk,
/// and its entries (`count` of them from `first` in [`Walked::entries`]).
#[derive(Debug, Clone, Copy)]
struct Item {
    at: usize,
    len: usize,
    first: usize,
    count: usize,
}

/// A chunk of a segment file read and walked: where it starts and the
/// records found where the index expects them, to be checked.
struct Walked {
    /// File offset of the chunk's first byte.
    pos: u64,
    /// Bytes of the chunk walked (the next chunk starts after them).
    len: usize,
    items: Vec<Item>,
    /// Entry number and commitment of each item's entries.
    entries: Vec<(u64, [u8; 32])>,
    /// The file cannot be walked further (unreadable, or a record that
    /// cannot be parsed); the records found before are still checked.
    stopped: bool,
}

impl Walked {
    fn push(&mut self, at: usize, len: usize, entries: &[(u64, [u8; 32])]) {
        self.items.push(Item {
            at,
            len,
            first: self.entries.len(),
            count: entries.len(),
        });
        self.entries.extend_from_slice(entries);
    }
}

/// Walking one segment file in order against the records the index
/// expects in it.
struct Walk<'a> {
    /// Whether the writer beside the view has appended to the segment
    /// since: records after the view's are then its, not unreferenced.
    writers: &'a (dyn Fn() -> bool + Sync),
    file: &'a std::fs::File,
    /// The same file opened with `O_DIRECT`, where the file system allows.
    direct: Option<&'a std::fs::File>,
    path: &'a Path,
    file_len: u64,
    expected: &'a [Expected],
    /// The next expected record.
    k: usize,
    window: Window<'a>,
    /// The segment holds blocks (versions 3 and 4).
    blocks: bool,
    /// A block whose entries reach into a later window: the walk stops
    /// after it.
    carry: Option<Carry>,
    /// The walk stopped before a record of an entry of a later window
    /// (segments of records).
    paused: bool,
    problems: &'a Problems,
    max_generation: &'a AtomicU64,
}

impl Walk<'_> {
    /// Reads the chunk starting at `pos` into `chunk` and walks it: each
    /// record where the index expects it is listed for checking; anything
    /// else is a problem. A record cut by the chunk's end is left for the
    /// next chunk.
    fn read_and_walk(&mut self, pos: u64, chunk_bytes: usize, buf: &mut ChunkBuf) -> Walked {
        let mut walked = Walked {
            pos,
            len: 0,
            items: Vec::new(),
            entries: Vec::new(),
            stopped: false,
        };
        // A chunk always holds at least one whole record.
        let next_len = {
            let mut head = [0u8; 4];
            match std::os::unix::fs::FileExt::read_exact_at(self.file, &mut head, pos) {
                // A corrupt length is bounded here and refused by the parser.
                Ok(()) => {
                    4 + (u32::from_be_bytes(head) as usize).min(segment::MAX_RECORD_BODY as usize)
                }
                Err(_) => 0,
            }
        };
        let want = (self.file_len - pos).min(chunk_bytes.max(next_len) as u64) as usize;
        if let Err(e) = buf.read(self.file, self.direct, pos, want) {
            self.problems
                .add(show(self.path), format!("read at byte {pos}: {e}"));
            walked.stopped = true;
            return walked;
        }
        let chunk = buf.bytes();
        let mut at = 0usize;
        while at < chunk.len() && self.carry.is_none() && !self.paused {
            if !self.window.last && self.k == self.expected.len() {
                break;
            }
            let offset = pos + at as u64;
            // A record cut by the end of this chunk (even inside its length
            // field) is read again at the start of the next one, unless the
            // file itself ends there.
            let chunk_end = pos + chunk.len() as u64;
            let cut = match record_len(&chunk[at..]) {
                Some(len) => at + len > chunk.len() && offset + (len as u64) <= self.file_len,
                None => chunk_end < self.file_len,
            };
            if cut && at > 0 {
                break;
            }
            let parsed = if self.blocks {
                self.walk_block(offset, at, &chunk[at..], &mut walked)
            } else {
                self.walk_record(offset, at, &chunk[at..], &mut walked)
            };
            match parsed {
                Some(len) => at += len,
                None => {
                    walked.stopped = true;
                    break;
                }
            }
        }
        walked.len = at;
        walked
    }

    /// Entries the index places before byte `offset` have no record
    /// starting where it says (the walk went past them): each is named,
    /// so that one record too many or too few does not shift every later
    /// comparison.
    fn skip_misplaced(&mut self, offset: u64) {
        while let Some(exp) = self.expected.get(self.k)
            && exp.offset < offset
        {
            self.problems.add(show(self.path), no_record_starts(exp));
            self.k += 1;
        }
    }

    /// The record (segment versions 1 and 2) at the start of `bytes`;
    /// returns its length, or `None` when it cannot be parsed.
    fn walk_record(
        &mut self,
        offset: u64,
        at: usize,
        bytes: &[u8],
        walked: &mut Walked,
    ) -> Option<usize> {
        // Where the index expects it (and nothing else): the checksum is
        // checked with the decryption, on all threads (`Checks::run`).
        if let (Some(exp), Some((index, generation, len))) =
            (self.expected.get(self.k), peek_record(bytes))
            && exp.offset == offset
            && exp.len as usize == len
            && exp.index == index
            && self
                .expected
                .get(self.k + 1)
                .is_none_or(|next| next.offset != offset)
        {
            walked.push(at, len, &[(index, exp.commitment)]);
            self.max_generation
                .fetch_max(u64::from(generation), Ordering::Relaxed);
            self.k += 1;
            return Some(len);
        }
        let (record, len) = match parse_record_ref(self.path, offset, bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.problems.add(
                    show(self.path),
                    format!("{e}; the rest of the file cannot be walked"),
                );
                return None;
            }
        };
        self.skip_misplaced(offset);
        // The record of an entry of a later window: the walk goes on from
        // it then (the expected records placed at it or after it are
        // compared with what is there then), so that what it passes is
        // named as a walk of the whole index names it.
        if !self.window.last && record.index >= self.window.end() {
            self.paused = true;
            return Some(0);
        }
        let first = self.k;
        let mut matched = false;
        while let Some(exp) = self.expected.get(self.k)
            && exp.offset == offset
        {
            if !matched && exp.len as usize == len && exp.index == record.index {
                walked.push(at, len, &[(exp.index, exp.commitment)]);
                self.max_generation
                    .fetch_max(u64::from(record.generation), Ordering::Relaxed);
                matched = true;
            } else {
                self.problems.add(
                    show(self.path),
                    format!(
                        "record at byte {offset} holds entry {} ({len} bytes) but the index expects entry {} ({} bytes) there",
                        record.index, exp.index, exp.len
                    ),
                );
            }
            self.k += 1;
        }
        if self.k == first && !(self.k == self.expected.len() && (self.writers)()) {
            // Before the next expected record, or after the last one (and
            // not written by the writer beside the view since).
            self.problems.add(
                show(self.path),
                format!(
                    "record at byte {offset} (entry {}) is not referenced by the index",
                    record.index
                ),
            );
        }
        Some(len)
    }

    /// The block (segment versions 3 and 4) at the start of `bytes`: every entry
    /// its head lists must be one the index places there, and the reverse.
    /// Returns its length, or `None` when it cannot be parsed.
    fn walk_block(
        &mut self,
        offset: u64,
        at: usize,
        bytes: &[u8],
        walked: &mut Walked,
    ) -> Option<usize> {
        let framed = peek_record(bytes).and_then(|(_, generation, len)| {
            block::peek_indices(&bytes[..len]).map(|held| (generation, len, held))
        });
        let Some((generation, len, held)) = framed else {
            let what = match parse_record_ref(self.path, offset, bytes) {
                Err(e) => e.to_string(),
                Ok(_) => format!("the block at byte {offset} has an unreadable head"),
            };
            self.problems.add(
                show(self.path),
                format!("{what}; the rest of the file cannot be walked"),
            );
            return None;
        };
        self.max_generation
            .fetch_max(u64::from(generation), Ordering::Relaxed);
        self.skip_misplaced(offset);
        let mut entries: Vec<(u64, [u8; 32])> = Vec::new();
        // Entries the index places here (matched or not): each named once.
        let mut named: Vec<u64> = Vec::new();
        let first = self.k;
        while let Some(exp) = self.expected.get(self.k)
            && exp.offset == offset
        {
            let holds = held.binary_search(&exp.index).is_ok();
            if holds && exp.len as usize == len {
                entries.push((exp.index, exp.commitment));
            } else {
                self.problems
                    .add(show(self.path), misplaced_in_block(exp, offset, len));
            }
            if holds {
                named.push(exp.index);
            }
            self.k += 1;
        }
        let referenced = self.k > first;
        let mut rest = Vec::new();
        let mut unplaced = Vec::new();
        for index in held.iter().filter(|i| named.binary_search(i).is_err()) {
            if self.window.misplaced(*index) {
                unplaced.push(*index);
            } else if *index >= self.window.end() {
                rest.push(*index);
            }
        }
        if !rest.is_empty() {
            self.carry = Some(Carry {
                offset,
                len,
                frame: bytes[..len].to_vec(),
                held,
                entries,
                rest,
                unplaced,
                referenced,
            });
            return Some(len);
        }
        if referenced {
            for index in unplaced {
                self.problems
                    .add(show(self.path), unplaced_in_block(index, offset));
            }
        } else if !(self.writers)() {
            // After the view's entries: written by the writer beside it.
            self.problems
                .add(show(self.path), unreferenced(offset, &held));
        }
        if !entries.is_empty() {
            walked.push(at, len, &entries);
        }
        Some(len)
    }
}

/// A chunk of a segment in memory: `len` bytes of `raw` from `start` (a
/// read with `O_DIRECT` lands at a block-aligned address and covers whole
/// blocks, so the chunk need not begin at the start of the buffer).
#[derive(Default)]
struct ChunkBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl ChunkBuf {
    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// Reads `len` bytes at `pos`: from the disk straight into the buffer
    /// where the file could be opened with `O_DIRECT` (no page cache to
    /// fill, nothing copied: the cheaper read on a cold cache, and a
    /// verification does not evict what the server uses), else through the
    /// page cache.
    fn read(
        &mut self,
        file: &std::fs::File,
        direct: Option<&std::fs::File>,
        pos: u64,
        len: usize,
    ) -> std::io::Result<()> {
        self.len = 0;
        if let Some(direct) = direct
            && let Ok(start) = fsutil::read_direct_at(direct, &mut self.raw, pos, len)
        {
            self.start = start;
            self.len = len;
            return Ok(());
        }
        if self.raw.len() < len {
            self.raw.resize(len, 0);
        }
        std::os::unix::fs::FileExt::read_exact_at(file, &mut self.raw[..len], pos)?;
        // The pages read are dropped again, as the writer drops its synced
        // ones: a verification leaves the cache as it found it.
        fsutil::drop_cached_pages(file, pos, len as u64);
        self.start = 0;
        self.len = len;
        Ok(())
    }
}

/// Checks records and blocks: checksum, decryption and commitments.
struct Checks<'a> {
    version: u8,
    key: Option<&'a SegmentKeys>,
    references: References<'a>,
    path: &'a Path,
    problems: &'a Problems,
    bytes_decrypted: &'a AtomicU64,
    progress: &'a dyn Progress,
}

/// Records a checking thread takes at a time (blocks: a few).
const PROCESS_RECORDS: usize = 256;
const PROCESS_BLOCKS: usize = 2;

impl Checks<'_> {
    /// Checks `items` of `chunk` (which starts at byte `chunk_pos` of the
    /// file), split across `threads`.
    fn run(
        &self,
        items: &[Item],
        entries: &[(u64, [u8; 32])],
        chunk: &[u8],
        chunk_pos: u64,
        threads: usize,
    ) {
        if items.is_empty() {
            return;
        }
        let Some(key) = self.key else {
            // Nothing can be decrypted; the checksums can still be checked.
            for item in items {
                let offset = chunk_pos + item.at as u64;
                if let Err(e) =
                    parse_record_ref(self.path, offset, &chunk[item.at..item.at + item.len])
                {
                    let index = entries[item.first].0;
                    self.problems
                        .add(show(self.path), format!("entry {index}: {e}"));
                }
                self.progress.advance(item.count as u64);
            }
            return;
        };
        let grab = if segment::holds_blocks(self.version) {
            PROCESS_BLOCKS
        } else {
            PROCESS_RECORDS
        };
        // Threads take a few items at a time as they go, so that one slowed
        // down (sharing its core with the tree pass or the next read) does
        // not hold the others up at the end of the chunk.
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, items.len()) {
                scope.spawn(|| {
                    let mut state = CheckState::default();
                    let mut decrypted = 0u64;
                    loop {
                        let first = next.fetch_add(grab, Ordering::Relaxed);
                        let Some(taken) = items.get(first..(first + grab).min(items.len())) else {
                            break;
                        };
                        for item in taken {
                            let offset = chunk_pos + item.at as u64;
                            let bytes = &chunk[item.at..item.at + item.len];
                            let mine = &entries[item.first..item.first + item.count];
                            let checked = if segment::holds_blocks(self.version) {
                                let block = BlockAt {
                                    path: self.path,
                                    bytes,
                                    offset,
                                };
                                check_block(key, &self.references, block, mine, &mut state)
                            } else {
                                check_record(key, self.path, bytes, offset, &mine[0].1, &mut state)
                            };
                            match checked {
                                Ok(n) => decrypted += n,
                                Err((index, what)) => self.problems.add(
                                    show(self.path),
                                    format!("entry {}: {what}", index.unwrap_or(mine[0].0)),
                                ),
                            }
                            self.progress.advance(item.count as u64);
                        }
                    }
                    self.bytes_decrypted.fetch_add(decrypted, Ordering::Relaxed);
                });
            }
        });
    }
}

/// What a checking thread keeps from one record to the next.
#[derive(Default)]
struct CheckState {
    buffer: Vec<u8>,
    scratch: Vec<u8>,
    unpacker: Option<Unpacker>,
}

/// A failed check: the entry it concerns (`None`: the record's first),
/// and why.
type CheckError = (Option<u64>, String);

/// Opens one record, rebuilds the canonical envelope (into `scratch` when
/// it is packed) and recomputes its commitment; returns plaintext bytes.
fn check_record(
    keys: &SegmentKeys,
    path: &Path,
    bytes: &[u8],
    offset: u64,
    commitment: &[u8; 32],
    state: &mut CheckState,
) -> Result<u64, CheckError> {
    let fail = |what: String| (None, what);
    let (record, _) = parse_record_ref(path, offset, bytes).map_err(|e| fail(e.to_string()))?;
    state.buffer.clear();
    state.buffer.extend_from_slice(record.sealed);
    let key = keys
        .record_key(record.generation)
        .map_err(|e| fail(e.to_string()))?;
    let plain = key
        .open_record(
            record.generation,
            record.index,
            commitment,
            &mut state.buffer,
        )
        .ok_or_else(|| {
            fail("sealed record does not authenticate (altered, or under another key)".into())
        })?;
    if plain.len() < 32 {
        return Err(fail("plaintext is shorter than its salt".into()));
    }
    let (salt, stored) = plain.split_at(32);
    let mut salt_arr = [0u8; 32];
    salt_arr.copy_from_slice(salt);
    let canonical = stele_event::canonical_from_stored(stored, &mut state.scratch)
        .map_err(|e| fail(e.to_string()))?;
    if &stele_event::commitment(&salt_arr, canonical) != commitment {
        return Err(fail("decrypted event does not match its commitment".into()));
    }
    Ok(plain.len() as u64)
}

/// The reference blocks of one segment (version 4) opened so far, shared
/// by the threads checking it.
struct References<'a> {
    file: &'a std::fs::File,
    version: u8,
    opened: &'a Mutex<Vec<Arc<ReferenceDictionary>>>,
}

impl References<'_> {
    /// The reference block `(first, at)` that the block at `before` names,
    /// opened and checked (once per walk of the segment).
    fn get(
        &self,
        (first, at): (u64, u64),
        before: u64,
        path: &Path,
        keys: &SegmentKeys,
        unpacker: &mut Unpacker,
    ) -> stele_store::StoreResult<Arc<ReferenceDictionary>> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = opened.iter().find(|r| (r.first, r.offset) == (first, at)) {
            return Ok(known.clone());
        }
        let (_, dictionary) = segment::open_reference(
            &segment::ReferenceAt {
                file: self.file,
                path,
                version: self.version,
                first,
                offset: at,
                before,
            },
            keys,
            unpacker,
        )?;
        let dictionary = Arc::new(dictionary);
        opened.push(dictionary.clone());
        Ok(dictionary)
    }
}

/// A block's frame, where it lies in its segment file.
#[derive(Clone, Copy)]
struct BlockAt<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    offset: u64,
}

/// Opens one block and checks each of `entries` (number and commitment
/// from the index) against it: its salt derived, its canonical envelope
/// rebuilt, its commitment recomputed. Returns plaintext bytes.
fn check_block(
    keys: &SegmentKeys,
    references: &References<'_>,
    BlockAt {
        path,
        bytes,
        offset,
    }: BlockAt<'_>,
    entries: &[(u64, [u8; 32])],
    state: &mut CheckState,
) -> Result<u64, CheckError> {
    let fail = |what: String| (None, what);
    let (record, _) = parse_record_ref(path, offset, bytes).map_err(|e| fail(e.to_string()))?;
    let parsed = block::parse(path, offset, record).map_err(|e| fail(e.to_string()))?;
    let key = keys
        .record_key(parsed.generation)
        .map_err(|e| fail(e.to_string()))?;
    if state.unpacker.is_none() {
        state.unpacker = Some(Unpacker::new().map_err(|e| fail(e.to_string()))?);
    }
    let Some(unpacker) = state.unpacker.as_mut() else {
        return Err(fail("no zstd context".into()));
    };
    let reference = match parsed.reference {
        None => None,
        Some(named) => Some(
            references
                .get(named, offset, path, keys, unpacker)
                .map_err(|e| fail(e.to_string()))?,
        ),
    };
    let open = parsed
        .open(&key, path, offset, unpacker, reference.as_deref())
        .map_err(|e| match e {
            stele_store::StoreError::Authentication { .. } => {
                fail("sealed block does not authenticate (altered, or under another key)".into())
            }
            other => fail(other.to_string()),
        })?;
    let salts = key.salt_key();
    for (index, commitment) in entries {
        let stored = open
            .body(*index)
            .ok_or_else(|| (Some(*index), "the block does not hold it".to_string()))?;
        let canonical = stele_event::canonical_from_stored(stored, &mut state.scratch)
            .map_err(|e| (Some(*index), e.to_string()))?;
        if &stele_event::commitment(&salts.salt(*index), canonical) != commitment {
            return Err((
                Some(*index),
                "decrypted event does not match its commitment".into(),
            ));
        }
    }
    Ok(open.plain_len() as u64)
}
