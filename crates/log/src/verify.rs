//! `verify`: re-derive everything from the bytes on disk.
//!
//! The index is read one window of entries at a time ([`Granularity`]),
//! and segments in chunks, so memory stays bounded whatever the log's
//! size. Each window goes through two passes that run in parallel and
//! carry their state over to the next window:
//! - **Tree pass** (one thread): every index record; every leaf, full tile
//!   and entry bundle recomputed and compared with the file; at every
//!   published size the root compared with that signed checkpoint, and the
//!   partial tiles of that size compared with the files. Because every
//!   checkpoint's root is recomputed from one sequence of leaves, this also
//!   proves that all checkpoints are mutually consistent.
//! - **Segment pass** (all cores, `segments.rs`): every segment record
//!   (or block) walked in order, its checksum, its position (the index must
//!   point at exactly it), its AEAD tag under the segment's data key, and
//!   each entry's commitment recomputed from its salt (stored, or derived)
//!   and envelope.
//!
//! Plus every checkpoint note's signature and origin, `log/checkpoint`
//! being the latest of them, and the writer generation being at least every
//! generation a record was sealed under (nonces are never reused).
//! Problems are collected (up to a limit) with the file and position,
//! rather than stopping at the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::Digest;
use stele_store::fsutil;
use stele_store::index::IndexRecord;
use stele_tlog::Hash;
use stele_tlog::tile::{TILE_WIDTH, TileId};

use crate::engine::open_checkpoint;
use crate::error::LogResult;
use crate::ids::EntryIndex;
use crate::layout::Layout;
use crate::purge::IndexDigest;
use crate::reader::LogReader;
use crate::system_event::{action, client_id};
use crate::tiles::{TileBuilder, TileSink};
use segments::{CHUNK_BYTES, MIN_CHUNK_BYTES, SegmentPass};

mod segments;

/// How many problems a report keeps in detail.
pub const MAX_PROBLEMS: usize = 100;

/// Receives progress (entries checked) from a verification.
pub trait Progress: Sync {
    fn start(&self, total: u64);
    fn advance(&self, done: u64);
}

/// A progress sink that ignores everything.
#[derive(Debug)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: u64) {}
    fn advance(&self, _done: u64) {}
}

/// One failed check: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.what)
    }
}

/// What a verification checked and found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: usize,
    pub segments: usize,
    /// Segments purged by retention (their entries stay in the tree).
    pub purged_segments: usize,
    pub tiles: u64,
    pub bytes_decrypted: u64,
    /// Total problems found (the list keeps the first [`MAX_PROBLEMS`]).
    pub problem_count: u64,
    pub problems: Vec<Problem>,
    /// What needs a person's eye without being wrong (bytes recovery kept
    /// aside).
    pub notes: Vec<String>,
    /// The latest signed checkpoint (size, root) every entry was checked
    /// against; `None` when the history holds none.
    pub signed: Option<(u64, Hash)>,
    /// Time spent resting to leave the CPU to a writer's appends (a paced
    /// verification, [`Granularity::pace`]).
    pub rested: std::time::Duration,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }
}

#[derive(Debug, Default)]
struct Problems {
    count: AtomicU64,
    list: Mutex<Vec<Problem>>,
}

impl Problems {
    fn add(&self, location: impl Into<String>, what: impl Into<String>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() < MAX_PROBLEMS {
            list.push(Problem {
                location: location.into(),
                what: what.into(),
            });
        }
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// How finely a verification reads (segment bytes per read, index entries
/// per window: memory is bounded by both, whatever the log's size) and on
/// how many threads it checks records.
#[derive(Debug, Clone, Copy)]
pub struct Granularity {
    /// Bytes of a segment read and checked at a time (two such buffers are
    /// held: one being checked while the next is read).
    pub chunk_bytes: usize,
    /// Index entries held at a time (their records and where the segment
    /// pass expects them: about 80 bytes each).
    pub window_entries: u64,
    /// Threads that check a chunk's records (at least 1): every core by
    /// default.
    pub threads: usize,
    /// While a writer beside the view appends, the share of one core the
    /// verification may take ([`Pacer`]); `None`: all it can.
    pub pace: Option<CpuPercent>,
}

/// A share of one core, in percent (1 to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPercent(u8);

impl CpuPercent {
    /// What the server's scheduled verification takes by default.
    pub const BACKGROUND: CpuPercent = CpuPercent(5);

    /// `None` outside 1..=100.
    pub fn new(percent: u8) -> Option<CpuPercent> {
        (1..=100).contains(&percent).then_some(CpuPercent(percent))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Keeps a verification beside a writer to its share of one core while
/// the writer appends. After each window it looks at the writer's log:
/// when it grew since the last window, the verification sleeps until its
/// busy time is at most its share of the time gone by. On a log nobody
/// appends to it never sleeps.
///
/// Priority alone cannot do this: on a kernel that does not preempt
/// kernel code (`preempt=none`), a background thread's reads and page
/// faults delay the appends' threads whatever its nice value, and on a
/// machine of two cores the appends' p99 latency then triples.
struct Pacer {
    /// The writer's reader, which follows its appends.
    live: LogReader,
    percent: u32,
    /// The writer's log size at the last window.
    seen: u64,
    busy_since: std::time::Instant,
    /// Time slept so far.
    rested: std::time::Duration,
}

impl Pacer {
    /// `None` for a view with no writer to follow, or no pace set.
    fn new(log: &LogReader, pace: Option<CpuPercent>) -> Option<Pacer> {
        let percent = u32::from(pace?.get());
        let live = log.live()?;
        (percent < 100).then(|| Pacer {
            seen: live.size(),
            live,
            percent,
            busy_since: std::time::Instant::now(),
            rested: std::time::Duration::ZERO,
        })
    }

    /// Between two windows: sleeps if the writer appended meanwhile.
    fn rest(&mut self) {
        let busy = self.busy_since.elapsed();
        let size = self.live.size();
        if size != self.seen {
            self.seen = size;
            let rest = busy * (100 - self.percent) / self.percent;
            std::thread::sleep(rest);
            self.rested += rest;
        }
        self.busy_since = std::time::Instant::now();
    }
}

impl Default for Granularity {
    fn default() -> Self {
        Granularity {
            chunk_bytes: CHUNK_BYTES,
            window_entries: WINDOW_ENTRIES,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pace: None,
        }
    }
}

/// Verifies the whole log. I/O errors that stop verification altogether
/// are returned as errors; everything else is a problem in the report.
pub fn verify(log: &LogReader, progress: &dyn Progress) -> LogResult<VerifyReport> {
    verify_with(log, progress, Granularity::default())
}

/// [`verify`], reading `granularity` at a time (small values let tests put
/// chunk and window boundaries everywhere).
pub fn verify_with(
    log: &LogReader,
    progress: &dyn Progress,
    granularity: Granularity,
) -> LogResult<VerifyReport> {
    // One moment of the log, however a writer beside goes on.
    let frozen = log.frozen();
    let log = &frozen;
    let layout = log.layout().clone();
    let problems = Problems::default();
    let total = log.size();
    progress.start(total * 2);

    let heads = checkpoint_pass(log, &problems)?;
    let mut notes = log
        .pending_recovery()
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    check_public_checkpoint(
        log,
        heads.latest_note.as_deref(),
        heads.previous_note.as_deref(),
        &problems,
        &mut notes,
    )?;
    // Entries after the latest checkpoint are durable but not yet signed
    // (a writer publishes them soon; a writing open publishes them at
    // once); their tiles are not compared, as no checkpoint commits to them.
    let signed = heads.list.last().map_or(0, |c| c.size);
    if signed < total {
        notes.push(format!(
            "{}: the latest checkpoint covers {signed} of the {total} entries; the {} after it are verified, but not yet signed (the next publish signs them)",
            show(&layout.history()),
            total - signed
        ));
    }

    let entries = entries_pass(log, &heads.list, signed, &problems, progress, granularity);
    purge_pass(log, entries.purged, &problems, &mut notes);
    // Governance from the log alone: the files beside it agree, and no
    // recorded time goes backwards.
    for (location, what) in crate::ledger::governance_problems(log) {
        problems.add(location, what);
    }
    // Every record of `tokens.json` against its token events.
    for (file, what) in crate::tokens::check_token_file(log)? {
        problems.add(file, what);
    }
    // The search part files (a cache): each opens under its segment's
    // key and holds exactly its segment's entries (`stele index verify`
    // also compares their contents with the events).
    // An index that cannot be read is a problem the index pass reports;
    // the part files then wait for a log whose index reads.
    let checks = match crate::search::verify_parts(log, total, false, &mut |_, _| {}) {
        Ok(checks) => checks,
        Err(e) => {
            notes.push(format!(
                "{}: not checked: {e}",
                show(&layout.search_parts())
            ));
            Vec::new()
        }
    };
    for check in checks {
        match check.outcome {
            crate::search::PartOutcome::Agrees => {}
            crate::search::PartOutcome::Note(what) => {
                notes.push(format!("{}: {what}", show(&check.path)));
            }
            crate::search::PartOutcome::Problem(what) => problems.add(show(&check.path), what),
        }
    }
    check_generation(&layout, entries.max_generation, &problems);
    notes.extend(salvage_pass(&layout, &problems)?);
    // Files that mirror events: each must say what the log says.
    let (kek_problems, kek_notes) = crate::verify_files::check_kek_info(log, &entries.key_events);
    notes.extend(kek_notes);
    let tree_heads: Vec<(u64, Hash)> = heads.list.iter().map(|c| (c.size, c.root)).collect();
    for (location, what) in kek_problems
        .into_iter()
        .chain(crate::verify_files::check_audit_files(log, &tree_heads))
    {
        problems.add(location, what);
    }

    let problem_count = problems.count.load(Ordering::Relaxed);
    let list = problems
        .list
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok(VerifyReport {
        entries: total,
        checkpoints: heads.list.len(),
        segments: log.segment_infos().len(),
        purged_segments: log.purge_records().len(),
        tiles: entries.tiles_checked,
        bytes_decrypted: entries.bytes_decrypted,
        problem_count,
        problems: list,
        notes,
        signed: heads.list.last().map(|c| (c.size, c.root)),
        rested: entries.rested,
    })
}

/// The signed tree heads of the history, and its last two notes.
struct Heads {
    list: Vec<TreeHead>,
    latest_note: Option<Vec<u8>>,
    previous_note: Option<Vec<u8>>,
}

/// Checkpoints: signatures, origins, sizes. The history is streamed; only
/// each tree head's size and root are kept (40 bytes, at most one per
/// entry) for the tree pass.
fn checkpoint_pass(log: &LogReader, problems: &Problems) -> LogResult<Heads> {
    let mut heads = Heads {
        list: Vec::new(),
        latest_note: None,
        previous_note: None,
    };
    let history_path = show(&log.layout().history());
    for (i, stored) in log.checkpoint_history().stream()?.enumerate() {
        let location = format!("{history_path} (checkpoint #{i})");
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                problems.add(&location, e.to_string());
                break;
            }
        };
        match open_checkpoint(log.verifier(), &log.meta().origin, &stored.note) {
            Ok(cp) => {
                if cp.size != stored.size {
                    problems.add(
                        &location,
                        format!(
                            "record says size {} but the note says {}",
                            stored.size, cp.size
                        ),
                    );
                }
                if let Some(prev) = heads.list.last()
                    && cp.size < prev.size
                {
                    problems.add(
                        &location,
                        format!(
                            "size {} is smaller than the previous checkpoint's {}",
                            cp.size, prev.size
                        ),
                    );
                }
                heads.list.push(TreeHead {
                    size: cp.size,
                    root: cp.root,
                });
            }
            Err(e) => problems.add(&location, format!("signature or format: {e}")),
        }
        heads.previous_note = heads.latest_note.replace(stored.note);
    }
    Ok(heads)
}

/// What the pass over every entry found besides problems.
struct EntriesSeen {
    /// Per purged segment, the entries the index gives it.
    purged: BTreeMap<u32, IndexDigest>,
    key_events: crate::verify_files::KeyEventWatch,
    max_generation: u64,
    tiles_checked: u64,
    bytes_decrypted: u64,
    rested: std::time::Duration,
}

/// The index is read one window at a time; each window's commitments go
/// to the tree pass and its locations to the segment pass, which run in
/// parallel and both carry their state over to the next window.
fn entries_pass(
    log: &LogReader,
    checkpoints: &[TreeHead],
    signed: u64,
    problems: &Problems,
    progress: &dyn Progress,
    granularity: Granularity,
) -> EntriesSeen {
    let chunk_bytes = granularity.chunk_bytes.max(MIN_CHUNK_BYTES);
    let window = granularity.window_entries.max(1);
    let total = log.size();
    let public = log.layout().public();
    let tiles_checked = AtomicU64::new(0);
    let bytes_decrypted = AtomicU64::new(0);
    let max_generation = AtomicU64::new(0);
    let tree_done = AtomicBool::new(false);
    let mut tree = TreePass::new(log, checkpoints, signed, problems, &tiles_checked);
    let mut segments = SegmentPass::new(
        log,
        problems,
        &bytes_decrypted,
        &max_generation,
        chunk_bytes,
        granularity.threads.max(1),
    );
    let mut key_events = crate::verify_files::KeyEventWatch::new(log);
    let mut purged: BTreeMap<u32, IndexDigest> = log
        .purge_records()
        .keys()
        .map(|id| (*id, IndexDigest::default()))
        .collect();
    let mut pacer = Pacer::new(log, granularity.pace);
    std::thread::scope(|outer| {
        outer.spawn(|| prefetch_tiles(&public, total, &tiles_checked, &tree_done));
        let mut start = 0u64;
        // At least one window, also for an empty index: the last window
        // walks every segment to its end.
        loop {
            let end = start.saturating_add(window).min(total);
            let (records, corrupt) = read_index(log, start, end, problems);
            for (i, r) in records.iter().enumerate() {
                let index = start + i as u64;
                if corrupt.binary_search(&index).is_ok() {
                    continue;
                }
                if let Some(digest) = purged.get_mut(&r.segment_id) {
                    digest.push(index);
                }
                key_events.see(index, r.idempotency);
            }
            if granularity.threads > 1 {
                std::thread::scope(|scope| {
                    scope.spawn(|| tree.push(start, &records, progress));
                    segments.window(start, &records, &corrupt, end == total, progress);
                });
            } else {
                // One thread: the passes take turns.
                tree.push(start, &records, progress);
                segments.window(start, &records, &corrupt, end == total, progress);
            }
            start = end;
            if start >= total {
                break;
            }
            if let Some(pacer) = &mut pacer {
                pacer.rest();
            }
        }
        tree.finish(total);
        tree_done.store(true, Ordering::Relaxed);
    });
    segments.finish();
    EntriesSeen {
        purged,
        key_events,
        max_generation: max_generation.load(Ordering::Relaxed),
        tiles_checked: tiles_checked.load(Ordering::Relaxed),
        bytes_decrypted: bytes_decrypted.load(Ordering::Relaxed),
        rested: pacer.map_or(std::time::Duration::ZERO, |p| p.rested),
    }
}

/// Record nonces are (writer generation, index): the stored generation
/// must be at least every generation a record was sealed under, or the
/// next writer could reuse a nonce.
fn check_generation(layout: &Layout, newest: u64, problems: &Problems) {
    let generation_path = layout.generation();
    match stele_store::state::read_generation(&generation_path) {
        Ok(stored) if u64::from(stored) >= newest => {}
        Ok(stored) => problems.add(
            show(&generation_path),
            format!(
                "holds generation {stored}, but records were sealed under generation {newest} (nonce reuse risk)"
            ),
        ),
        Err(e) => problems.add(show(&generation_path), e.to_string()),
    }
}

/// Checks `log/checkpoint` against the history: it must be the latest
/// checkpoint. A view beside a writer (a reader opened on its own, or one
/// frozen from the writer's) also accepts the one before (a publish between
/// its history append and its replace of `log/checkpoint`, which the
/// publisher or the next open finishes) and one published after the view
/// read the history.
fn check_public_checkpoint(
    log: &LogReader,
    latest: Option<&[u8]>,
    previous: Option<&[u8]>,
    problems: &Problems,
    notes: &mut Vec<String>,
) -> LogResult<()> {
    let layout = log.layout();
    let public = show(&layout.checkpoint());
    let Some(bytes) = fsutil::read_optional(&layout.checkpoint())? else {
        problems.add(public, "is missing");
        return Ok(());
    };
    if Some(bytes.as_slice()) == latest {
        return Ok(());
    }
    if log.beside_writer() {
        if Some(bytes.as_slice()) == previous {
            notes.push(format!(
                "{public} is the checkpoint before the latest in the history (a publish being finished, or interrupted by a crash): the next open rewrites it"
            ));
            return Ok(());
        }
        // Published since the history was read: it is in the history now,
        // as its last or (while being replaced) its second-to-last record.
        let now = stele_store::history::scan(&layout.history())?;
        if [now.last, now.previous]
            .iter()
            .flatten()
            .any(|c| c.note == bytes)
        {
            return Ok(());
        }
    }
    problems.add(public, "is not the latest checkpoint in the history");
    Ok(())
}

/// The index records of entries `start..end`, and the entries whose
/// record is corrupt (named as problems; each stands in the window as an
/// all-zero record, so the window keeps one record per entry, and the
/// segment pass expects nothing for it).
fn read_index(
    log: &LogReader,
    start: u64,
    end: u64,
    problems: &Problems,
) -> (Vec<IndexRecord>, Vec<u64>) {
    let mut records: Vec<IndexRecord> = Vec::with_capacity((end - start) as usize);
    let mut corrupt = Vec::new();
    let mut at = start;
    while at < end {
        let count = (end - at).min(65_536);
        match log.index().read_range(at, count) {
            Ok(chunk) => records.extend(chunk),
            Err(e) => {
                // Fall back to one record at a time to name each bad one.
                for i in at..at + count {
                    match log.index().read(i) {
                        Ok(r) => records.push(r),
                        Err(_) => {
                            problems.add(
                                show(&log.layout().index()),
                                format!("index record of entry {i} is corrupt ({e})"),
                            );
                            corrupt.push(i);
                            records.push(IndexRecord {
                                commitment: [0u8; 32],
                                segment_id: 0,
                                location: stele_store::segment::RecordLocation {
                                    offset: 0,
                                    len: 0,
                                },
                                idempotency: 0,
                            });
                        }
                    }
                }
            }
        }
        at += count;
    }
    (records, corrupt)
}

/// Bytes recovery cut from segments and kept aside (`salvage`): each is a
/// note for a person to look at; a kept file that no longer matches its
/// manifest is a problem.
fn salvage_pass(layout: &Layout, problems: &Problems) -> LogResult<Vec<String>> {
    let mut notes = Vec::new();
    for (name, kept) in crate::salvage::list(layout)? {
        let path = layout.recovered().join(format!("{name}.bin"));
        match fsutil::read_optional(&path)? {
            None => problems.add(show(&path), "is missing (its manifest is there)"),
            Some(bytes) => {
                if kept.length != bytes.len() as u64
                    || stele_tlog::hash::hex(&sha2::Sha256::digest(&bytes)) != kept.sha256
                {
                    problems.add(
                        show(&path),
                        "does not match the length and SHA-256 in its manifest",
                    );
                }
            }
        }
        let event = kept
            .event_index
            .map(|i| format!("event {i}"))
            .unwrap_or_else(|| "its event not yet appended".to_string());
        notes.push(format!(
            "{}: {} bytes after the committed length of {} (byte {}), cut and kept aside at recovery on {} ({event}); not part of the log: look at them, then delete recovered/{name}.*",
            show(&path),
            kept.length,
            kept.file,
            kept.offset,
            kept.found_at
        ));
    }
    Ok(notes)
}

/// Checks every tombstone: the entries it names are exactly those the
/// index gives its segment, its `retention.purge` event is in the log with
/// the same content, the purge was allowed when it was decided (retention
/// over under every policy version, epoch ended, no hold), and the data key
/// and segment file are gone.
/// `digests` holds, per purged segment, the entries the index gives it.
fn purge_pass(
    log: &LogReader,
    mut digests: BTreeMap<u32, IndexDigest>,
    problems: &Problems,
    notes: &mut Vec<String>,
) {
    // A purge a crash interrupted is finished by the next writing open; a
    // read-only handle reports what is left to do instead.
    let read_only = log.beside_writer();
    for (id, tombstone) in &log.purge_records() {
        let path = show(
            &log.layout()
                .tombstone(&tombstone.stream, tombstone.epoch_day),
        );
        let digest = digests.remove(id).unwrap_or_default();
        if let Err(e) = tombstone.matches(&digest.finish()) {
            problems.add(&path, e);
        }
        if let Err(e) = log.purge_was_allowed(tombstone) {
            problems.add(&path, e);
        }
        match tombstone.event_index {
            None if read_only => notes.push(format!(
                "{path}: names no retention.purge event yet (a purge a crash interrupted): the next open appends it and finishes the purge"
            )),
            None => problems.add(&path, "names no retention.purge event"),
            Some(index) => match log.get(EntryIndex(index)) {
                Ok(event) => {
                    let envelope = &event.envelope;
                    let same = envelope.stream == crate::governance::SYSTEM_STREAM
                        && envelope.writer == crate::governance::SYSTEM_WRITER
                        && envelope.event.action == action::RETENTION_PURGE
                        && envelope.event.id.as_deref() == Some(client_id::purge(*id).as_str())
                        && envelope
                            .event
                            .attributes
                            .as_ref()
                            .map(|a| serde_json::Value::Object(a.clone()))
                            == Some(tombstone.event_attributes());
                    if !same {
                        problems.add(
                            &path,
                            format!(
                                "entry {index} is not the retention.purge event of segment {id}"
                            ),
                        );
                    }
                }
                Err(e) => problems.add(&path, format!("its retention.purge event {index}: {e}")),
            },
        }
        for leftover in [
            log.layout().dek(*id),
            log.layout().segment(&tombstone.stream, tombstone.epoch_day),
        ] {
            if leftover.exists() && read_only && tombstone.event_index.is_none() {
                notes.push(format!(
                    "{}: still exists; the next open deletes it, finishing the purge of segment {id}",
                    show(&leftover)
                ));
            } else if leftover.exists() {
                problems.add(
                    show(&leftover),
                    format!("still exists, but segment {id} was purged"),
                );
            }
        }
    }
}

/// Compares each completed tile with the file on disk.
struct CompareSink<'a> {
    public: PathBuf,
    problems: &'a Problems,
    checked: &'a AtomicU64,
    /// The tree size at which the tiles now completing complete.
    at_size: u64,
    /// The latest checkpoint's size: tiles that complete after it are not
    /// compared (they may not be written yet, and nothing signed them).
    signed: u64,
}

impl CompareSink<'_> {
    fn compare(&self, path: &str, expected: &[u8]) {
        self.checked.fetch_add(1, Ordering::Relaxed);
        let full = self.public.join(path);
        let read = match crate::tiles::read_public_tile(&self.public, path) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        match read {
            Ok(bytes) if bytes == expected => {}
            Ok(bytes) if bytes.len() != expected.len() => self.problems.add(
                show(&full),
                format!("{} bytes, expected {}", bytes.len(), expected.len()),
            ),
            Ok(bytes) => {
                let at = bytes
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.problems.add(
                    show(&full),
                    format!("differs from the recomputed tile at byte {at}"),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problems.add(show(&full), "is missing")
            }
            Err(e) => self
                .problems
                .add(show(&full), format!("cannot be read: {e}")),
        }
    }
}

impl TileSink for CompareSink<'_> {
    fn full(&mut self, path: String, bytes: Vec<u8>) -> LogResult<()> {
        if self.at_size <= self.signed {
            self.compare(&path, &bytes);
        }
        Ok(())
    }
}

/// The tree pass reads every full tile once, in order; when they are not
/// in the page cache that is a chain of small random reads, one waiting
/// for the other. This thread asks the kernel for the tiles ahead of it
/// (at most [`PREFETCH_AHEAD`] beyond the tiles compared so far), so their
/// reads overlap. Only a hint: what the tree pass reads is unchanged.
fn prefetch_tiles(public: &Path, size: u64, compared: &AtomicU64, done: &AtomicBool) {
    let width = TILE_WIDTH;
    let mut issued = 0u64;
    for k in 0..size / width {
        let mut paths = Vec::with_capacity(3);
        if let Ok(id) = TileId::new(0, k, width as u16) {
            paths.push(id.entries_path());
            paths.push(id.path());
        }
        // Tiles of higher levels complete with the last tile below them.
        let (mut level, mut n) = (1u8, k + 1);
        while n % width == 0 {
            n /= width;
            if let Ok(id) = TileId::new(level, n - 1, width as u16) {
                paths.push(id.path());
            }
            level += 1;
        }
        for path in paths {
            while issued >= compared.load(Ordering::Relaxed) + PREFETCH_AHEAD {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            if done.load(Ordering::Relaxed) {
                return;
            }
            fsutil::prefetch(&public.join(path));
            issued += 1;
        }
    }
}

/// Tiles [`prefetch_tiles`] asks for ahead of the tree pass (8 KiB each).
const PREFETCH_AHEAD: u64 = 1024;

/// The size and root of one stored checkpoint, for the tree pass.
#[derive(Debug, Clone, Copy)]
struct TreeHead {
    size: u64,
    root: Hash,
}

/// Rebuilds the tree from the commitments, window by window: every leaf,
/// full tile and entry bundle compared with its file, and at every size a
/// checkpoint was signed for, its root and that size's partial tiles.
struct TreePass<'a> {
    checkpoints: &'a [TreeHead],
    problems: &'a Problems,
    sink: CompareSink<'a>,
    builder: TileBuilder,
    /// The first checkpoint not yet reached.
    next_checkpoint: usize,
    index_path: String,
    history_path: String,
    /// A leaf was refused: the tree cannot be built further.
    stopped: bool,
}

impl<'a> TreePass<'a> {
    fn new(
        log: &LogReader,
        checkpoints: &'a [TreeHead],
        signed: u64,
        problems: &'a Problems,
        tiles_checked: &'a AtomicU64,
    ) -> TreePass<'a> {
        let mut pass = TreePass {
            checkpoints,
            problems,
            sink: CompareSink {
                public: log.layout().public(),
                problems,
                checked: tiles_checked,
                at_size: 0,
                signed,
            },
            builder: TileBuilder::new(),
            next_checkpoint: 0,
            index_path: show(&log.layout().index()),
            history_path: show(&log.layout().history()),
            stopped: false,
        };
        pass.check_at_size();
        pass
    }

    /// Compares every checkpoint of the tree's current size.
    fn check_at_size(&mut self) {
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint)
            && cp.size == self.builder.size()
        {
            if cp.root != self.builder.root() {
                self.problems.add(
                    &self.history_path,
                    format!(
                        "checkpoint of size {} has root {} but the entries give {}",
                        cp.size,
                        cp.root.to_base64(),
                        self.builder.root().to_base64()
                    ),
                );
            }
            match self.builder.partial_tiles() {
                Ok(tiles) => {
                    for (path, bytes) in tiles {
                        self.sink.compare(&path, &bytes);
                    }
                }
                Err(e) => self.problems.add(&self.history_path, e.to_string()),
            }
            self.next_checkpoint += 1;
        }
    }

    /// Adds the entries of one window, the first being entry `base`.
    fn push(&mut self, base: u64, records: &[IndexRecord], progress: &dyn Progress) {
        if self.stopped {
            progress.advance(records.len() as u64);
            return;
        }
        for (i, record) in records.iter().enumerate() {
            self.sink.at_size = base + i as u64 + 1;
            if let Err(e) = self.builder.push(&record.commitment, &mut self.sink) {
                self.problems
                    .add(&self.index_path, format!("entry {}: {e}", base + i as u64));
                self.stopped = true;
                // Entries before `i` were counted in whole blocks only.
                progress.advance((records.len() - i / 65_536 * 65_536) as u64);
                return;
            }
            self.check_at_size();
            if i % 65_536 == 65_535 {
                progress.advance(65_536);
            }
        }
        progress.advance(records.len() as u64 % 65_536);
    }

    /// After the last window: a checkpoint larger than the index is wrong.
    fn finish(&self, total: u64) {
        if let Some(cp) = self.checkpoints.get(self.next_checkpoint)
            && !self.stopped
        {
            self.problems.add(
                &self.history_path,
                format!(
                    "checkpoint of size {} is beyond the {total} entries in the index",
                    cp.size
                ),
            );
        }
    }
}

/// Index entries held at a time (about 80 bytes each: 20 MiB).
const WINDOW_ENTRIES: u64 = 256 * 1024;
