//! The [`Log`]: one open data directory, its recovery, the append path, the
//! publish path and reads.
//!
//! Life of an entry (each step says what survives a crash right there):
//! 1. **Seal**: the event is sealed into its segment's staging buffer. Crash:
//!    nothing is on disk; the event was never acknowledged.
//! 2. **Segment write and fsync**: staged records are written (2a, on the
//!    writer's thread) and fdatasynced (2b, on the commit thread of
//!    `committer.rs`, while the writer seals and writes the next batch: at
//!    most [`MAX_IN_FLIGHT`] batches are written but not yet durable). Crash
//!    with no index record pointing at them: the next open cuts them
//!    (segment length comes from the index).
//! 3. **Index fsync** (commit thread, at the same time as 2b of the same
//!    batch and after steps 2b and 3 of every earlier batch): the batch's
//!    64-byte index records are appended and fdatasynced. Once both 2b and
//!    3 have returned the entries exist: they are acknowledged, and every
//!    later open integrates and publishes them. Crash before both return: a
//!    torn index tail is cut; whole index records are kept only if the
//!    segment records they point at are whole and authentic
//!    ([`Log::cut_unbacked_tail`]), even though the caller never got their
//!    receipts; the index is cut at the first that is not.
//! 4. **Integrate** (writer's thread, once the commit thread reports the
//!    batch durable; only then are its receipts returned): leaves are added
//!    to the tree; completed tiles are handed to the publisher thread, which
//!    writes them without fsync. Crash: recovery rewrites them from the
//!    index.
//! 5. **Publish** (on the publisher thread, see `publisher.rs`): partial
//!    tiles written by rename, then one `syncfs` makes every tile durable;
//!    the checkpoint is signed, appended to the history (fdatasync) and
//!    finally atomically replaces `log/checkpoint`. Crash before the history
//!    append: the checkpoint was never published and recovery signs a new
//!    one; after it: recovery rewrites `log/checkpoint` from history.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use crate::checkpoints::CheckpointHistory;
use std::sync::MutexGuard;
use stele_event::Envelope;
use stele_event::time::Day;
use stele_store::StoreError;
use stele_store::fsutil::{self, DirLock, SECRET_MODE};
use stele_store::history::{self, HistoryWriter, StoredCheckpoint};
use stele_store::index::{IndexFile, IndexRecord, MAX_BATCH_RECORDS};
use stele_store::keys::{self, DataKey, Kek, NewKek};
use stele_store::segment::{self, SegmentHeader, SegmentReader, SegmentWriter};
use stele_store::sessions::{SegmentKeys, Sessions};
use stele_store::state::{self, SegmentSnapshot};
use stele_tlog::hash::hex;
use stele_tlog::tile::TileHashReader;
use stele_tlog::{Checkpoint, Hash, Signer, TlogProof, Verifier};
use zeroize::Zeroizing;

use crate::committer::{Committer, FsyncMetrics, Job};
use crate::error::{LogError, LogResult};
use crate::governance::{Hold, PolicyVersion};
use crate::layout::Layout;
use crate::meta::{FORMAT_VERSION, Meta};
use crate::prepare::PreparedEvent;
use crate::publisher::{PublishJob, PublishState, Publisher};
use crate::purge::Tombstone;
use crate::tiles::{DiskTiles, TileBuilder};

/// Most batches written but not yet durable (see [`Log::begin_append`]).
/// Recovery relies on it: a segment's uncommitted tail holds the records of
/// at most this many batches.
pub const MAX_IN_FLIGHT: usize = 2;

/// Segments kept open for appending; older ones are closed after a batch.
const MAX_ACTIVE_SEGMENTS: usize = 64;

/// Most events in one batch: the index tail that recovery may cut as torn is
/// at most one batch long (see [`stele_store::index::MAX_BATCH_RECORDS`]).
pub const MAX_BATCH: usize = stele_store::index::MAX_BATCH_RECORDS as usize;

/// How `init` creates a log.
#[derive(Debug)]
pub struct CreateOptions {
    /// Checkpoint origin and signing key name, e.g. `audit.example.com/log`.
    pub origin: String,
    pub kek: NewKek,
}

/// How an existing log is opened.
#[derive(Debug, Default)]
pub struct OpenOptions {
    /// Passphrase for a passphrase-protected key-encryption key.
    pub passphrase: Option<Zeroizing<String>>,
    /// A file outside the data directory that keeps a copy of the latest
    /// signed checkpoint (`anchor.rs`): the open refuses a log that no
    /// longer reaches it.
    pub anchor: Option<PathBuf>,
}

/// What a writer gets back once its event is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub id: String,
    pub stream: String,
    pub commitment: [u8; 32],
    pub salt: [u8; 32],
    /// True when the event was not appended because an event with the same
    /// idempotency key (writer and client `id`) already was; the receipt is
    /// that event's.
    pub duplicate: bool,
}

/// An event read back and checked against its commitment.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub index: u64,
    pub commitment: [u8; 32],
    pub salt: [u8; 32],
    /// The canonical envelope bytes that were committed.
    pub canonical: Vec<u8>,
    pub envelope: Envelope,
}

/// A segment known on disk.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub header: SegmentHeader,
    /// The header's epoch (checked to be a [`Day`] when the file was found).
    pub day: Day,
    pub path: PathBuf,
}

#[derive(Debug)]
pub(crate) struct ActiveSegment {
    writer: SegmentWriter,
    key: Arc<DataKey>,
}

impl ActiveSegment {
    pub(crate) fn segment_id(&self) -> u32 {
        self.writer.header().id
    }
}

/// A batch written but not yet known to be durable.
#[derive(Debug)]
pub(crate) struct InFlight {
    receipts: Vec<Receipt>,
    /// Commitments of the entries appended (duplicates are not), in order.
    commitments: Vec<[u8; 32]>,
    /// (idempotency key hash, entry) of the appended entries with a key.
    keys: Vec<(u64, u64)>,
    /// Every segment written to, with its written length.
    segment_ends: Vec<(u32, u64)>,
    /// The commit thread's answer; `None` when nothing was appended. (In a
    /// mutex only so that the log can be shared between threads.)
    done: Option<Mutex<std::sync::mpsc::Receiver<LogResult<()>>>>,
}

/// An open log. See the module docs for the life of an entry.
#[derive(Debug)]
pub struct Log {
    pub(crate) layout: Layout,
    /// The directory lock; `None` for a read-only handle, which takes none.
    pub(crate) _lock: Option<DirLock>,
    pub(crate) meta: Meta,
    pub(crate) kek: Kek,
    pub(crate) verifier: Verifier,
    pub(crate) index: IndexFile,
    /// Writer generation, bumped lazily before the first append.
    pub(crate) generation: Option<u32>,
    /// The salt of every writer session, this one's once it began.
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) segments: BTreeMap<u32, SegmentInfo>,
    /// Durable committed length of every segment (header plus every record
    /// an index entry points at). Written whole into the snapshot.
    pub(crate) committed: HashMap<u32, u64>,
    pub(crate) active: Vec<ActiveSegment>,
    pub(crate) keys: Mutex<HashMap<u32, Arc<SegmentKeys>>>,
    pub(crate) readers: Mutex<HashMap<u32, Arc<SegmentReader>>>,
    pub(crate) tiles: TileBuilder,
    /// Idempotency key hash → first entry holding it; loaded from the index
    /// on first use.
    pub(crate) idempotency: Option<HashMap<u64, Vec<u64>>>,
    /// Writes tiles and publishes checkpoints on its own thread.
    pub(crate) publisher: Publisher,
    pub(crate) poisoned: Option<String>,
    /// Tombstones of purged segments, by segment id (see `purge.rs`).
    pub(crate) purged: BTreeMap<u32, Tombstone>,
    /// Signs audit attestations (the log's checkpoint key).
    pub(crate) attestor: Signer,
    /// Applied policy versions, oldest first (see `governance.rs`).
    pub(crate) policies: Vec<PolicyVersion>,
    /// Legal holds, released ones included.
    pub(crate) holds: Vec<Hold>,
    /// The newest time the log records (Unix seconds): no governance
    /// decision is taken at an earlier time (see `governance.rs`).
    pub(crate) time_floor: Option<i64>,
    /// Epochs announced due by this process (see `announce.rs`).
    pub(crate) announcements: crate::announce::Announcements,
    /// Test hook: stop a purge after this step, as a crash would.
    pub(crate) purge_stop: Option<u8>,
    /// Makes written batches durable (steps 2b and 3).
    pub(crate) committer: Committer,
    /// Batches handed to the committer, oldest first.
    pub(crate) in_flight: std::collections::VecDeque<InFlight>,
    /// What this open's recovery kept aside in `recovered/` (one line each).
    pub(crate) kept_at_open: Vec<String>,
    /// A read-only handle ([`Log::open_read_only`]): what the next writing
    /// open would repair, one line each; `None` for a writing handle.
    pub(crate) read_only: Option<Vec<String>>,
}

fn random_log_id() -> LogResult<[u8; 16]> {
    let mut id = [0u8; 16];
    keys::random_bytes(&mut id)?;
    Ok(id)
}

/// A log closed with nothing in flight leaves its files without the zeros
/// written ahead of their records (best effort: the next open cuts any
/// that are left). With batches in flight, or after a failure, the files
/// are left as they are for recovery.
impl Drop for Log {
    fn drop(&mut self) {
        if self.poisoned.is_some() || !self.in_flight.is_empty() || self.read_only.is_some() {
            return;
        }
        for active in &mut self.active {
            let _ = active.writer.trim_reserved();
        }
        let _ = self.index.trim_reserved();
    }
}

impl Log {
    /// Creates a new log in `dir` (which must be absent or empty) and
    /// returns its verifier key. Crash story: `meta.json` is written last, so
    /// a crash leaves a directory that `open` refuses as incomplete; remove
    /// it and run `init` again.
    pub fn create(dir: &Path, options: CreateOptions) -> LogResult<String> {
        let layout = Layout::new(dir);
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| StoreError::io("read directory", dir, e))?;
            if entries.next().is_some() {
                return Err(LogError::Usage(format!(
                    "{} is not empty; choose a new directory for a new log",
                    dir.display()
                )));
            }
        }
        // The origin must be a valid key name; Signer checks that.
        let mut seed = Zeroizing::new([0u8; 32]);
        keys::random_bytes(seed.as_mut())?;
        let signer = Signer::new(&options.origin, *seed)
            .map_err(|e| LogError::Usage(format!("origin {:?}: {e}", options.origin)))?;
        fsutil::create_dir_durable(&layout.keys())?;
        fsutil::create_dir_durable(&layout.deks())?;
        fsutil::create_dir_durable(&layout.segments())?;
        fsutil::create_dir_durable(&layout.public())?;
        let kek_kind = match options.kek {
            NewKek::Random => "file",
            NewKek::Passphrase { .. } => "passphrase",
        };
        let kek = Kek::create(&layout.kek(), options.kek)?;
        let wrapped = keys::wrap_signing_seed(&kek, &seed)?;
        fsutil::create_new_durable(&layout.signing_key(), &wrapped, SECRET_MODE)?;
        let log_id = random_log_id()?;
        IndexFile::create(&layout.index(), log_id)?;
        // The empty tree gets a signed checkpoint too, so every log has one.
        let checkpoint = Checkpoint::new(options.origin.clone(), 0, stele_tlog::empty_root());
        let note = stele_tlog::sign_note(&checkpoint.to_body(), &[&signer])
            .map_err(|e| LogError::Internal(e.to_string()))?;
        let mut history = HistoryWriter::open(&layout.history(), None)?;
        history.append(0, note.as_bytes())?;
        fsutil::atomic_replace(&layout.checkpoint(), note.as_bytes(), 0o644)?;
        // Every generation of a new log seals under a session salt.
        stele_store::sessions::create(&layout.sessions(), 1)?;
        let meta = Meta {
            format: FORMAT_VERSION,
            origin: options.origin,
            log_id: hex(&log_id),
            verifier_key: signer.verifier_key(),
            kek: kek_kind.to_string(),
        };
        meta.write(&layout.meta())?;
        fsutil::fsync_dir(dir)?;
        Ok(meta.verifier_key)
    }

    /// Reads the identity of a data directory without opening it.
    pub fn read_meta(dir: &Path) -> LogResult<Meta> {
        check_dir(dir)?;
        Meta::read(&Layout::new(dir).meta())
    }

    /// True when the log's key-encryption key needs a passphrase.
    pub fn needs_passphrase(dir: &Path) -> LogResult<bool> {
        check_dir(dir)?;
        Ok(Kek::needs_passphrase(&Layout::new(dir).kek())?)
    }

    /// Opens the log and recovers: cuts torn tails, integrates every durable
    /// entry and publishes a checkpoint covering all of them.
    pub fn open(dir: &Path, options: OpenOptions) -> LogResult<Log> {
        check_dir(dir)?;
        let layout = Layout::new(dir);
        let meta = Meta::read(&layout.meta())?;
        let lock = DirLock::acquire(&layout.lock())?;
        // The latest checkpoint in the history is the trusted prefix.
        let history::Scan {
            index: history,
            last,
            previous,
            torn_at,
        } = history::scan(&layout.history())?;
        // Evidence of a rollback or a fork refuses the open before any
        // file is changed (recovery, a rotation finished, the anchor).
        let anchor = options
            .anchor
            .as_deref()
            .map(|path| crate::anchor::Anchor::new(path, dir))
            .transpose()?;
        crate::anchor::check_rollback(&layout, &meta, last.as_ref(), anchor.as_ref())?;
        // An interrupted KEK rotation is finished (or undone) before any key is read.
        let meta = crate::rotate::finish_interrupted_rotation(&layout, meta)?;
        let OpenedKeys {
            kek,
            signer,
            attestor,
            verifier,
        } = open_keys(&layout, &meta, &options)?;

        let sessions = crate::session::load(&layout, &meta)?;

        let latest = last.ok_or_else(|| {
            LogError::Integrity(format!(
                "{}: no checkpoint recorded",
                layout.history().display()
            ))
        })?;
        let latest_checkpoint =
            open_checkpoint(&verifier, &meta.origin, &latest.note).map_err(|e| {
                LogError::Integrity(format!(
                    "{}: latest checkpoint: {e}",
                    layout.history().display()
                ))
            })?;
        let history_writer = HistoryWriter::open(&layout.history(), torn_at)?;
        repair_public_checkpoint(&layout, &latest, previous.as_ref())?;

        // A foreign index is refused before its open may cut anything.
        let index_log_id = stele_store::index::read_log_id(&layout.index())?;
        if hex(&index_log_id) != meta.log_id {
            return Err(LogError::NotALog(format!(
                "{} belongs to another log: its log id {} is not the log_id {} in {} (one of the two files was replaced or altered)",
                layout.index().display(),
                hex(&index_log_id),
                meta.log_id,
                layout.meta().display()
            )));
        }
        let (index, _recovery) = IndexFile::open(&layout.index(), latest_checkpoint.size)?;

        let (segments, purged) = discover_segments(&layout, RemoveTornCreates::Yes)?;
        let tiles = TileBuilder::load(&layout.public(), latest_checkpoint.size)?;
        if tiles.root() != latest_checkpoint.root {
            return Err(LogError::Integrity(format!(
                "the partial tiles of the latest checkpoint (size {}) do not give its root: one of {} was altered",
                latest_checkpoint.size,
                tiles
                    .edge_paths()
                    .iter()
                    .map(|p| layout.public().join(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }

        let publisher = Publisher::start(
            &layout,
            &meta.origin,
            signer,
            history_writer,
            anchor,
            PublishState {
                size: latest_checkpoint.size,
                note: String::from_utf8_lossy(&latest.note).into_owned(),
                history,
                requested: latest_checkpoint.size,
                published_at: None,
                error: None,
            },
        );
        let mut log = Log {
            layout,
            _lock: Some(lock),
            meta,
            kek,
            verifier,
            index,
            generation: None,
            sessions,
            segments,
            committed: HashMap::new(),
            active: Vec::new(),
            keys: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            tiles,
            idempotency: None,
            publisher,
            poisoned: None,
            purged,
            attestor,
            policies: Vec::new(),
            holds: Vec::new(),
            time_floor: None,
            announcements: crate::announce::Announcements::default(),
            purge_stop: None,
            committer: Committer::start(),
            in_flight: std::collections::VecDeque::new(),
            kept_at_open: Vec::new(),
            read_only: None,
        };
        log.load_governance()?;
        // A purge record must be genuine before recovery treats its
        // segment as gone.
        log.check_pending_purges()?;
        log.recover()?;
        // The files beside the log are checked against (and, where a crash
        // left them behind, rebuilt from) the log's own record.
        log.reconcile_governance()?;
        log.finish_governance()?;
        Ok(log)
    }

    /// Brings segments, tiles and the checkpoint up to the durable index.
    fn recover(&mut self) -> LogResult<()> {
        self.cut_unbacked_tail()?;
        let total = self.index.len();
        // Segment lengths: start from the snapshot of the last publish, then
        // extend with every index entry after it. The snapshot only saves
        // reading the index: an unreadable one, or one a segment disagrees
        // with (a tail holding a committed entry's record, or a segment
        // shorter than it says), is ignored and the whole index is read.
        let (mut committed, from_snapshot) = self.committed_lengths(true)?;
        let mut tails = self.segment_tails(&committed, total)?;
        if from_snapshot
            && tails
                .iter()
                .any(|t| matches!(t.kind, TailKind::Short | TailKind::Foreign { .. }))
        {
            (committed, _) = self.committed_lengths(false)?;
            tails = self.segment_tails(&committed, total)?;
        }
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

    /// The committed length of every segment the index points into: the end
    /// of its last record that a durable index entry points at. With
    /// `use_snapshot`, the lengths of `segments.state` stand for the entries
    /// it covers (returned `true` when it was used).
    pub(crate) fn committed_lengths(
        &self,
        use_snapshot: bool,
    ) -> LogResult<(HashMap<u32, u64>, bool)> {
        let mut committed: HashMap<u32, u64> = HashMap::new();
        let mut scan_from = 0;
        let mut used = false;
        if use_snapshot
            && let Ok(Some(snapshot)) = state::read_snapshot(&self.layout.snapshot())
            && snapshot.index_size <= self.index.len()
        {
            scan_from = snapshot.index_size;
            committed.extend(snapshot.lengths.iter().copied());
            used = true;
        }
        let total = self.index.len();
        let mut start = scan_from;
        while start < total {
            let count = (total - start).min(65_536);
            for (i, record) in self.index.read_range(start, count)?.iter().enumerate() {
                let end = record.location.offset + u64::from(record.location.len);
                if self.purged.contains_key(&record.segment_id) {
                    continue;
                }
                if !self.segments.contains_key(&record.segment_id) {
                    return Err(LogError::Integrity(format!(
                        "entry {} refers to segment {}, which is not on disk",
                        start + i as u64,
                        record.segment_id
                    )));
                }
                let slot = committed.entry(record.segment_id).or_insert(0);
                *slot = (*slot).max(end);
            }
            start += count;
        }
        Ok((committed, used))
    }

    /// What lies after the committed length of each segment (purged ones
    /// aside: their purge is finished after recovery).
    pub(crate) fn segment_tails(
        &self,
        committed: &HashMap<u32, u64>,
        total: u64,
    ) -> LogResult<Vec<Tail>> {
        let mut tails = Vec::new();
        for (id, info) in &self.segments {
            if self.purged.contains_key(id) {
                continue;
            }
            let (_, header_len) = segment::read_header(&info.path)?;
            let keep = committed.get(id).copied().unwrap_or(0).max(header_len);
            let len = std::fs::metadata(&info.path)
                .map_err(|e| StoreError::io("stat", &info.path, e))?
                .len();
            let kind = match len.cmp(&keep) {
                std::cmp::Ordering::Less => TailKind::Short,
                std::cmp::Ordering::Equal => TailKind::None,
                std::cmp::Ordering::Greater => classify_tail(&info.path, keep, len, total)?,
            };
            tails.push(Tail {
                id: *id,
                path: info.path.clone(),
                keep,
                len,
                kind,
            });
        }
        Ok(tails)
    }

    /// The last append's segment and index records are fdatasynced at the
    /// same time (steps 2b and 3), so a crash may leave index records whose
    /// segment records never reached the disk, or reached it torn, or not
    /// at all while the zeros written ahead fill their place. Each entry of
    /// the last append's reach ([`MAX_BATCH_RECORDS`] entries before the
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
    fn cut_unbacked_tail(&mut self) -> LogResult<()> {
        let total = self.index.len();
        let from = self
            .published_size()
            .max(total.saturating_sub(MAX_BATCH_RECORDS));
        let mut start = from;
        while start < total {
            let count = (total - start).min(4096);
            let records = self.index.read_range(start, count)?;
            for (i, record) in records.iter().enumerate() {
                let index = start + i as u64;
                if self.purged.contains_key(&record.segment_id) {
                    continue;
                }
                if !self.segments.contains_key(&record.segment_id) {
                    return Err(LogError::Integrity(format!(
                        "entry {index} refers to segment {}, which is not on disk",
                        record.segment_id
                    )));
                }
                match self.open_record(index, record) {
                    Ok(_) => {}
                    Err(e) if is_damaged_data(&e) => {
                        self.tear_of(index, record, &e)?;
                        // Crash story: a crash during the cut leaves the
                        // index longer; the next open checks it again.
                        self.index.cut_to(index)?;
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            start += count;
        }
        Ok(())
    }

    /// Decides whether the record of entry `index`, which failed to read
    /// back with `failure`, was torn by a crash (`Ok`: it may be cut) or
    /// altered after it was written (an integrity error naming the segment,
    /// the byte and the entry).
    pub(crate) fn tear_of(
        &self,
        index: u64,
        record: &IndexRecord,
        failure: &LogError,
    ) -> LogResult<stele_store::torn::TearMark> {
        let path = self
            .segments
            .get(&record.segment_id)
            .map(|info| info.path.clone())
            .ok_or_else(|| {
                LogError::Integrity(format!(
                    "entry {index} refers to segment {}, which is not on disk",
                    record.segment_id
                ))
            })?;
        let offset = record.location.offset;
        let len = u64::from(record.location.len);
        let altered = |why: String| {
            LogError::Integrity(format!(
                "{}: the record of entry {index} at byte {offset} ({len} bytes) {why}, yet does not read back ({failure}): altered after it was written, not torn by a crash; nothing was cut (the entry may have been acknowledged: restore the segment from a backup)",
                path.display()
            ))
        };
        // A valid index record never gives an impossible length, and no
        // crash tears one into it.
        if len > u64::from(segment::MAX_RECORD_BODY) + 4 {
            return Err(altered("has a length no record can have".into()));
        }
        let on_disk = read_record_bytes(&path, offset, len)?;
        match stele_store::torn::segment_record_tear(&on_disk, offset, len) {
            Some(mark) => Ok(mark),
            None => Err(altered("is all there, with no sector of zeros".into())),
        }
    }

    /// What this open's recovery cut from segments and kept aside in
    /// `recovered/` (bytes that were not an interrupted append's), one
    /// line each for the operator; each is also a `log.recovered` event.
    pub fn kept_at_open(&self) -> &[String] {
        &self.kept_at_open
    }

    /// How long each segment and index flush of this handle's appends
    /// took (shared: readable while the log is busy).
    pub fn fsync_metrics(&self) -> Arc<FsyncMetrics> {
        self.committer.metrics()
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    pub(crate) fn segment_infos(&self) -> &BTreeMap<u32, SegmentInfo> {
        &self.segments
    }

    /// The durable committed length of segment `id`, when known.
    pub(crate) fn committed_length(&self, id: u32) -> Option<u64> {
        self.committed.get(&id).copied()
    }

    pub(crate) fn index_file(&self) -> &IndexFile {
        &self.index
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.index.len()
    }

    fn published(&self) -> MutexGuard<'_, PublishState> {
        self.publisher.state()
    }

    /// Size of the latest published checkpoint.
    pub fn published_size(&self) -> u64 {
        self.published().size
    }

    /// Time since this process last published a checkpoint.
    pub fn checkpoint_age(&self) -> Option<std::time::Duration> {
        self.published().published_at.map(|at| at.elapsed())
    }

    /// The latest signed checkpoint note.
    pub fn checkpoint_note(&self) -> String {
        self.published().note.clone()
    }

    /// Number of published checkpoints (including the empty tree's).
    pub fn history_count(&self) -> u64 {
        self.published().history.count()
    }

    /// A reader of the published checkpoints that does not hold the log:
    /// pages and lookups read the history file, taking the publish state's
    /// lock only to copy where to read.
    pub fn checkpoint_history(&self) -> CheckpointHistory {
        CheckpointHistory {
            path: self.layout.history(),
            state: self.publisher.shared_state(),
        }
    }

    /// Whether the log still accepts writes (no earlier write, fsync or
    /// publish failure).
    pub fn health(&self) -> LogResult<()> {
        self.check_writable()
    }

    pub(crate) fn check_writable(&self) -> LogResult<()> {
        if self.read_only.is_some() {
            return Err(LogError::Usage(
                "this handle on the log is read-only (opened for verification): it writes nothing"
                    .into(),
            ));
        }
        match &self.poisoned {
            Some(why) => Err(LogError::Poisoned(why.clone())),
            None => self.publisher.check(),
        }
    }

    /// Records a write failure: this handle never writes again.
    pub(crate) fn poison(&mut self, error: LogError) -> LogError {
        if self.poisoned.is_none() {
            self.poisoned = Some(error.to_string());
        }
        error
    }

    /// Appends a batch durably (steps 1–4 of the module docs) and returns
    /// the receipts. On any error the handle is poisoned. No batch may be in
    /// flight (see [`Self::begin_append`]).
    pub fn append_batch(&mut self, events: &[PreparedEvent]) -> LogResult<Vec<Receipt>> {
        if !self.in_flight.is_empty() {
            return Err(LogError::Usage(
                "batches are in flight: finish them before appending".into(),
            ));
        }
        self.begin_append(events)?;
        self.finish_append()
    }

    /// Number of batches begun and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// True when `events` may be begun now: fewer than `MAX_IN_FLIGHT`
    /// batches are in flight, and if the batch carries idempotency keys,
    /// none is (a retry must be compared with durable entries only).
    pub fn can_begin(&self, events: &[PreparedEvent]) -> bool {
        self.in_flight.is_empty()
            || (self.in_flight.len() < MAX_IN_FLIGHT && events.iter().all(|e| e.idempotency == 0))
    }

    /// Steps 1 and 2a for a batch: seals and writes it, and hands its
    /// fdatasyncs and index records to the commit thread. The batch's
    /// receipts come from the matching [`Self::finish_append`] (batches
    /// finish in the order they began). On any error the handle is
    /// poisoned.
    pub fn begin_append(&mut self, events: &[PreparedEvent]) -> LogResult<()> {
        self.check_writable()?;
        if events.len() > MAX_BATCH {
            return Err(LogError::Usage(format!(
                "a batch holds at most {MAX_BATCH} events, got {}",
                events.len()
            )));
        }
        if !self.can_begin(events) {
            return Err(LogError::Usage(format!(
                "{} batches are in flight: finish one before beginning another",
                self.in_flight.len()
            )));
        }
        match self.begin_inner(events) {
            Ok(batch) => {
                self.in_flight.push_back(batch);
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Waits until the oldest batch in flight is durable, integrates it
    /// (step 4) and returns its receipts. On any error the handle is
    /// poisoned; every batch still in flight then fails too.
    pub fn finish_append(&mut self) -> LogResult<Vec<Receipt>> {
        let Some(batch) = self.in_flight.pop_front() else {
            return Err(LogError::Usage("no batch is in flight".into()));
        };
        if let Some(done) = batch.done {
            let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
            let outcome = done
                .recv()
                .unwrap_or_else(|_| Err(LogError::Poisoned("the commit thread stopped".into())));
            if let Err(e) = outcome {
                return Err(self.poison(e));
            }
        }
        self.check_writable()?;
        // The entries exist now (step 3 returned on the commit thread), and
        // so do their idempotency keys (they are part of the index records).
        self.index.note_appended(batch.commitments.len() as u64);
        if let Some(known) = self.idempotency.as_mut() {
            for (hash, index) in &batch.keys {
                known.entry(*hash).or_default().push(*index);
            }
        }
        for (id, end) in &batch.segment_ends {
            if let Some(active) = self.active.iter_mut().find(|a| a.segment_id() == *id) {
                active.writer.mark_durable(*end);
            }
            let committed = self.committed.entry(*id).or_insert(0);
            *committed = (*committed).max(*end);
        }
        // Step 4: integrate. Full tiles go to the publisher thread.
        let mut sink = &self.publisher;
        for commitment in &batch.commitments {
            self.tiles.push(commitment, &mut sink)?;
        }
        Ok(batch.receipts)
    }

    /// The index the next appended entry gets: after every durable entry
    /// and every entry in flight.
    fn next_index(&self) -> u64 {
        self.index.len()
            + self
                .in_flight
                .iter()
                .map(|b| b.commitments.len() as u64)
                .sum::<u64>()
    }

    fn begin_inner(&mut self, events: &[PreparedEvent]) -> LogResult<InFlight> {
        let generation = match self.generation {
            Some(g) => g,
            None => {
                let g = crate::session::begin(&self.layout, &mut self.meta, &self.sessions)?;
                self.generation = Some(g);
                g
            }
        };
        let first = self.next_index();
        let mut index_bytes = Vec::with_capacity(events.len() * 64);
        let mut receipts: Vec<Receipt> = Vec::with_capacity(events.len());
        let mut commitments: Vec<[u8; 32]> = Vec::with_capacity(events.len());
        let mut keys: Vec<(u64, u64)> = Vec::new();
        // Idempotency keys of this batch: hash → (receipt position, event).
        let mut batch_keys: HashMap<u64, Vec<(usize, &PreparedEvent)>> = HashMap::new();
        let mut canonical_scratch = Vec::new();
        // Step 1: seal into staging buffers; an event whose idempotency key
        // is already in the log (or earlier in this batch) is not appended.
        for event in events {
            if event.idempotency != 0 {
                if let Some(receipt) = self.duplicate_of(event, &batch_keys, &receipts)? {
                    receipts.push(receipt);
                    continue;
                }
                batch_keys
                    .entry(event.idempotency)
                    .or_default()
                    .push((receipts.len(), event));
            }
            let index = first + commitments.len() as u64;
            let slot = self.active_segment(&event.stream, event.epoch)?;
            let active = &mut self.active[slot];
            // A segment begun before the packed form (version 1) keeps
            // canonical bodies, so the builds that wrote it can still read it.
            let body = if active.writer.header().version == segment::VERSION_CANONICAL_ONLY {
                stele_event::canonical_from_stored(&event.stored, &mut canonical_scratch)
                    .map_err(|e| LogError::Internal(format!("event {}: {e}", event.id)))?
            } else {
                &event.stored
            };
            let location = active.writer.stage(
                &active.key,
                generation,
                index,
                &event.commitment,
                &[&event.salt, body],
            )?;
            let record = IndexRecord {
                commitment: event.commitment,
                segment_id: active.writer.header().id,
                location,
                idempotency: event.idempotency,
            };
            index_bytes.extend_from_slice(&record.encode());
            receipts.push(Receipt {
                index,
                id: event.id.clone(),
                stream: event.stream.clone(),
                commitment: event.commitment,
                salt: event.salt,
                duplicate: false,
            });
            if event.idempotency != 0 {
                keys.push((event.idempotency, index));
            }
            commitments.push(event.commitment);
        }
        if commitments.is_empty() {
            return Ok(InFlight {
                receipts,
                commitments,
                keys,
                segment_ends: Vec::new(),
                done: None,
            });
        }
        // Step 2a: segment records written (page cache only).
        let mut syncs = Vec::new();
        let mut segment_ends = Vec::new();
        for active in &mut self.active {
            if active.writer.has_staged() {
                let sync = active.writer.write_staged()?;
                segment_ends.push((active.segment_id(), sync.end));
                syncs.push(sync);
            }
        }
        self.close_idle_segments(&segment_ends);
        // Steps 2b and 3 on the commit thread.
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.committer.submit(Job {
            segments: syncs,
            index: self.index.appender_at(first),
            records: index_bytes,
            done,
        });
        Ok(InFlight {
            receipts,
            commitments,
            keys,
            segment_ends,
            done: Some(Mutex::new(answer)),
        })
    }

    /// A long-running writer keeps only [`MAX_ACTIVE_SEGMENTS`] segments
    /// open, closing the oldest first. Nothing is staged at this point, so
    /// closing one loses nothing (the commit thread holds its own handle).
    /// A segment that a batch in flight wrote to (`written`: the batch being
    /// begun) stays open: opened again, it would be cut back to its
    /// committed length, which does not yet count those records.
    fn close_idle_segments(&mut self, written: &[(u32, u64)]) {
        let mut excess = self.active.len().saturating_sub(MAX_ACTIVE_SEGMENTS);
        if excess == 0 {
            return;
        }
        let busy: std::collections::HashSet<u32> = written
            .iter()
            .chain(self.in_flight.iter().flat_map(|b| b.segment_ends.iter()))
            .map(|(id, _)| *id)
            .collect();
        self.active.retain_mut(|active| {
            if excess > 0 && !busy.contains(&active.segment_id()) {
                excess -= 1;
                // Best effort: zeros left behind are cut at the next open.
                let _ = active.writer.trim_reserved();
                false
            } else {
                true
            }
        });
    }

    /// The receipt of the event `event` retries, if there is one: an event
    /// with the same idempotency key (writer and client id) and the same
    /// payload, earlier in this batch or in the log. Hash matches are
    /// confirmed against the stored key and payload.
    fn duplicate_of(
        &mut self,
        event: &PreparedEvent,
        batch_keys: &HashMap<u64, Vec<(usize, &PreparedEvent)>>,
        receipts: &[Receipt],
    ) -> LogResult<Option<Receipt>> {
        if let Some(earlier) = batch_keys.get(&event.idempotency) {
            for (position, other) in earlier {
                if other.idempotency_key == event.idempotency_key
                    && other.payload_digest == event.payload_digest
                {
                    let mut receipt = receipts[*position].clone();
                    receipt.duplicate = true;
                    return Ok(Some(receipt));
                }
            }
        }
        if self.idempotency.is_none() {
            self.idempotency = Some(self.load_idempotency_keys()?);
        }
        let candidates = self
            .idempotency
            .as_ref()
            .and_then(|known| known.get(&event.idempotency))
            .cloned()
            .unwrap_or_default();
        for index in candidates {
            let stored = match self.get(index) {
                Ok(stored) => stored,
                // A purged event can no longer be compared: not a retry.
                Err(LogError::Purged { .. }) => continue,
                Err(e) => return Err(e),
            };
            let stored_key = stored.envelope.event.id.as_deref().map(|client_id| {
                crate::prepare::idempotency_key(&stored.envelope.writer, client_id)
            });
            if stored_key.as_deref() != Some(event.idempotency_key.as_str())
                || crate::prepare::payload_digest(stored.envelope.payload.as_bytes())
                    != event.payload_digest
            {
                continue;
            }
            return Ok(Some(Receipt {
                index,
                id: stored.envelope.id,
                stream: stored.envelope.stream,
                commitment: stored.commitment,
                salt: stored.salt,
                duplicate: true,
            }));
        }
        Ok(None)
    }

    /// Loads the idempotency index (once per open; appends keep it current).
    pub(crate) fn load_idempotency(&mut self) -> LogResult<()> {
        if self.idempotency.is_none() {
            self.idempotency = Some(self.load_idempotency_keys()?);
        }
        Ok(())
    }

    /// Runs `f` over the idempotency index: the loaded one, or one read
    /// for this call when none is loaded (read-only callers).
    pub(crate) fn with_idempotency<R>(
        &self,
        f: impl FnOnce(&HashMap<u64, Vec<u64>>) -> R,
    ) -> LogResult<R> {
        match &self.idempotency {
            Some(known) => Ok(f(known)),
            None => Ok(f(&self.load_idempotency_keys()?)),
        }
    }

    /// Reads every idempotency key hash from the index (64 bytes per entry).
    fn load_idempotency_keys(&self) -> LogResult<HashMap<u64, Vec<u64>>> {
        let mut known = HashMap::new();
        let total = self.index.len();
        let mut start = 0;
        while start < total {
            let count = (total - start).min(65_536);
            for (offset, record) in self.index.read_range(start, count)?.iter().enumerate() {
                if record.idempotency != 0 {
                    known
                        .entry(record.idempotency)
                        .or_insert_with(Vec::new)
                        .push(start + offset as u64);
                }
            }
            start += count;
        }
        Ok(known)
    }

    /// The active writer for (stream, epoch), opening or creating its segment.
    fn active_segment(&mut self, stream: &str, epoch: Day) -> LogResult<usize> {
        if let Some(pos) = self.active.iter().position(|a| {
            a.writer.header().epoch == epoch.number() && a.writer.header().stream == stream
        }) {
            return Ok(pos);
        }
        stele_event::check_stream_name(stream)?;
        if let Some(t) = self
            .purged
            .values()
            .find(|t| t.epoch_day == epoch && t.stream == stream)
        {
            return Err(LogError::Refused(format!(
                "stream {stream:?} epoch {} was purged by policy (retention.purge event {}); it cannot receive new events (is the clock wrong?)",
                t.epoch,
                t.event_index
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "pending".into())
            )));
        }
        let existing = self
            .segments
            .iter()
            .find(|(_, info)| info.day == epoch && info.header.stream == stream)
            .map(|(id, info)| (*id, info.path.clone()));
        let active = match existing {
            Some((id, path)) => {
                let committed = self.committed.get(&id).copied().ok_or_else(|| {
                    LogError::Integrity(format!("{}: committed length unknown", path.display()))
                })?;
                let writer = SegmentWriter::open_at(&path, committed)?;
                ActiveSegment {
                    writer,
                    key: self
                        .segment_keys(id)?
                        .record_key(self.session_generation()?)?,
                }
            }
            None => self.create_segment(stream, epoch)?,
        };
        self.active.push(active);
        Ok(self.active.len() - 1)
    }

    /// Creates a segment and its data key. Crash story: the wrapped data key
    /// is made durable first, then the segment file with its header; a crash
    /// between leaves an unused key file whose id is never handed out again
    /// (ids are above every key file), and a segment file holding only part
    /// of its header is removed at the next open.
    fn create_segment(&mut self, stream: &str, epoch: Day) -> LogResult<ActiveSegment> {
        let id = self.next_segment_id()?;
        let (key, wrapped) = DataKey::generate(&self.kek, id)?;
        fsutil::create_dir_durable(&self.layout.deks())?;
        fsutil::atomic_replace(&self.layout.dek(id), &wrapped, SECRET_MODE)?;
        let header = SegmentHeader {
            version: segment::VERSION,
            id,
            epoch: epoch.number(),
            stream: stream.to_string(),
        };
        let path = self.layout.segment(stream, epoch);
        let writer = SegmentWriter::create(&path, header.clone())?;
        self.committed.insert(id, writer.durable_len());
        self.segments.insert(
            id,
            SegmentInfo {
                header,
                day: epoch,
                path,
            },
        );
        let keys = Arc::new(SegmentKeys::new(id, key, self.sessions.clone()));
        self.lock_keys().insert(id, keys.clone());
        let key = keys.record_key(self.session_generation()?)?;
        Ok(ActiveSegment { writer, key })
    }

    /// The generation of this handle's writer session, which begins before
    /// any segment is opened for appending.
    fn session_generation(&self) -> LogResult<u32> {
        self.generation
            .ok_or_else(|| LogError::Internal("no writer session has begun".into()))
    }

    fn next_segment_id(&self) -> LogResult<u32> {
        // Purged segments keep their ids reserved through their tombstones.
        let mut max = self
            .segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.purged.keys().next_back().copied().unwrap_or(0));
        // Data key files outlive nothing they describe, but an id whose key
        // file exists may have been handed out just before a crash.
        if let Ok(entries) = std::fs::read_dir(self.layout.deks()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".dek"))
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    max = max.max(id);
                }
            }
        }
        max.checked_add(1)
            .ok_or_else(|| LogError::Internal("segment ids exhausted".into()))
    }

    pub(crate) fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<SegmentKeys>>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys of a segment: its unwrapped data key and the record keys
    /// derived from it (cached).
    pub(crate) fn segment_keys(&self, id: u32) -> LogResult<Arc<SegmentKeys>> {
        if let Some(key) = self.lock_keys().get(&id) {
            return Ok(key.clone());
        }
        let path = self.layout.dek(id);
        let bytes = match fsutil::read_optional(&path)? {
            Some(bytes) => bytes,
            None => {
                return Err(LogError::Integrity(format!(
                    "{}: data key of segment {id} is missing",
                    path.display()
                )));
            }
        };
        let key = DataKey::unwrap_file(&self.kek, id, &path, &bytes)?;
        let keys = Arc::new(SegmentKeys::new(id, key, self.sessions.clone()));
        self.lock_keys().insert(id, keys.clone());
        Ok(keys)
    }

    fn segment_reader(&self, id: u32) -> LogResult<Arc<SegmentReader>> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = readers.get(&id) {
            return Ok(reader.clone());
        }
        let info = self.segments.get(&id).ok_or_else(|| {
            LogError::Integrity(format!(
                "{}: segment {id} is missing: the index refers to it",
                self.layout.segments().display()
            ))
        })?;
        let reader = Arc::new(SegmentReader::open(&info.path)?);
        if reader.header != info.header {
            return Err(LogError::Integrity(format!(
                "{}: header changed",
                info.path.display()
            )));
        }
        readers.insert(id, reader.clone());
        Ok(reader)
    }

    /// Publishes a signed checkpoint over every integrated entry (step 5 of
    /// the module docs, run by the publisher thread) and waits for its note.
    /// Publishing with nothing new returns the current note.
    pub fn publish(&mut self) -> LogResult<String> {
        self.check_writable()?;
        if self.tiles.size() == self.published_size() {
            return Ok(self.checkpoint_note());
        }
        let job = self.publish_job()?;
        match self.publisher.publish_now(job) {
            Ok(note) => Ok(note),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Asks the publisher thread for a checkpoint over every integrated
    /// entry and returns at once; a no-op when one is already on its way.
    pub fn publish_soon(&mut self) -> LogResult<()> {
        self.check_writable()?;
        if self.tiles.size() <= self.published().requested {
            return Ok(());
        }
        let job = self.publish_job()?;
        match self.publisher.publish_later(job) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// The tree head and files of a publish at the current size. The
    /// snapshot holds the committed length of every segment at this index
    /// size; the next recovery trusts it and reads only the index entries
    /// after it.
    fn publish_job(&self) -> LogResult<PublishJob> {
        let mut lengths: Vec<(u32, u64)> =
            self.committed.iter().map(|(id, len)| (*id, *len)).collect();
        lengths.sort_unstable();
        Ok(PublishJob {
            size: self.tiles.size(),
            root: self.tiles.root(),
            partial_tiles: self.tiles.partial_tiles()?,
            snapshot: SegmentSnapshot {
                index_size: self.tiles.size(),
                lengths,
            },
        })
    }

    /// Reads entry `index`, decrypts it and checks it against its commitment.
    pub fn get(&self, index: u64) -> LogResult<StoredEvent> {
        if index >= self.index.len() {
            return Err(LogError::NotFound(format!(
                "entry {index} does not exist (the log has {} entries)",
                self.index.len()
            )));
        }
        let record = self.index.read(index)?;
        self.read_record(index, &record)
    }

    pub(crate) fn read_record(&self, index: u64, record: &IndexRecord) -> LogResult<StoredEvent> {
        if let Some(tombstone) = self.purged.get(&record.segment_id) {
            return Err(LogError::Purged {
                index,
                tombstone: Box::new(tombstone.clone()),
            });
        }
        let (plain, reader) = self.open_record(index, record)?;
        decode_plaintext(index, &record.commitment, plain, reader.path())
    }

    /// Reads entry `index`'s sealed record and opens it: the plaintext is
    /// authentic and belongs at this index with this commitment.
    pub(crate) fn open_record(
        &self,
        index: u64,
        record: &IndexRecord,
    ) -> LogResult<(Vec<u8>, Arc<SegmentReader>)> {
        let reader = self.segment_reader(record.segment_id)?;
        let keys = self.segment_keys(record.segment_id)?;
        let sealed = reader.read(record.location, index)?;
        let key = keys.record_key(sealed.generation)?;
        let plain = sealed.open(&key, &record.commitment, reader.path())?;
        Ok((plain, reader))
    }

    fn require_published(&self, size: Option<u64>) -> LogResult<(u64, Vec<u8>)> {
        let (latest, latest_note) = {
            let published = self.published();
            (published.size, published.note.clone())
        };
        let size = size.unwrap_or(latest);
        if size == latest {
            return Ok((size, latest_note.into_bytes()));
        }
        match self.checkpoint_history().find_size(size)? {
            Some(stored) => Ok((size, stored.note)),
            None => Err(LogError::NotFound(format!(
                "no checkpoint of size {size} was published (latest is {latest})"
            ))),
        }
    }

    /// A C2SP tlog-proof of entry `index` against the published checkpoint
    /// of `size` (the latest by default).
    pub fn inclusion_proof(&self, index: u64, size: Option<u64>) -> LogResult<TlogProof> {
        let (size, note) = self.require_published(size)?;
        if index >= size {
            return Err(LogError::NotFound(format!(
                "entry {index} is not in the checkpoint of size {size}"
            )));
        }
        let tiles = DiskTiles::new(&self.layout.public());
        let reader = TileHashReader::new(size, &tiles);
        let hashes = stele_tlog::inclusion_proof(&reader, index, size)
            .map_err(|e| proof_error("inclusion", e))?;
        Ok(TlogProof {
            extra: None,
            index,
            hashes,
            checkpoint_note: String::from_utf8_lossy(&note).into_owned(),
        })
    }

    /// Consistency proof from tree size `old` to the published checkpoint
    /// of `size` (the latest by default).
    pub fn consistency_proof(&self, old: u64, size: Option<u64>) -> LogResult<Vec<Hash>> {
        let (size, _) = self.require_published(size)?;
        if old == 0 {
            return Err(LogError::Usage(
                "old size must be at least 1: nothing is proven consistent with the empty tree"
                    .into(),
            ));
        }
        if old > size {
            return Err(LogError::Usage(format!(
                "old size {old} is larger than the checkpoint size {size}"
            )));
        }
        let tiles = DiskTiles::new(&self.layout.public());
        let reader = TileHashReader::new(size, &tiles);
        stele_tlog::consistency_proof(&reader, old, size).map_err(|e| proof_error("consistency", e))
    }
}

/// Classifies a failure to build a proof from the stored tiles: a request
/// outside the tree is the caller's mistake, a tile that cannot be read is
/// the store's (I/O, or corruption when its bytes are wrong), and a tile
/// the tree should have but cannot exist is corruption.
fn proof_error(
    kind: &str,
    e: stele_tlog::ProofError<stele_tlog::tile::TileHashError<StoreError>>,
) -> LogError {
    use stele_tlog::ProofError;
    use stele_tlog::tile::TileHashError;
    match e {
        ProofError::Reader(TileHashError::Reader(store)) => LogError::Store(store),
        ProofError::Reader(other) => {
            LogError::Integrity(format!("cannot build {kind} proof: {other}"))
        }
        request => LogError::Usage(format!("cannot build {kind} proof: {request}")),
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
fn classify_tail(path: &Path, keep: u64, len: u64, total: u64) -> LogResult<TailKind> {
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
                && number - total < MAX_IN_FLIGHT as u64 * stele_store::index::MAX_BATCH_RECORDS);
        if torn {
            break;
        }
        return foreign();
    }
    Ok(TailKind::Leftovers)
}

/// The bytes of the file at `path` from `offset`, at most `len` of them
/// (fewer when the file ends first; none when it ends before `offset`).
fn read_record_bytes(path: &Path, offset: u64, len: u64) -> LogResult<Vec<u8>> {
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

/// True when reading an entry failed because the bytes on disk are not a
/// whole, authentic record (as a crash leaves an unsynced write), rather
/// than because of an I/O error or a missing file or key.
pub(crate) fn is_damaged_data(error: &LogError) -> bool {
    matches!(
        error,
        LogError::Store(StoreError::Corrupt { .. } | StoreError::Authentication { .. })
    )
}

/// Splits a record's plaintext into salt and stored envelope, rebuilds the
/// canonical bytes and checks both against the commitment in the index.
/// Public only for the fuzz targets.
#[doc(hidden)]
pub fn decode_plaintext(
    index: u64,
    commitment: &[u8; 32],
    mut plain: Vec<u8>,
    path: &Path,
) -> LogResult<StoredEvent> {
    if plain.len() < 32 {
        return Err(LogError::Integrity(format!(
            "{}: entry {index} is shorter than its salt",
            path.display()
        )));
    }
    let stored = plain.split_off(32);
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&plain);
    let mut scratch = Vec::new();
    let canonical = stele_event::canonical_from_stored(&stored, &mut scratch)
        .map_err(|e| LogError::Integrity(format!("{}: entry {index}: {e}", path.display())))?
        .to_vec();
    if &stele_event::commitment(&salt, &canonical) != commitment {
        return Err(LogError::Integrity(format!(
            "{}: entry {index} does not match its commitment",
            path.display()
        )));
    }
    let envelope = Envelope::from_canonical(&canonical).map_err(|e| {
        LogError::Integrity(format!(
            "{}: entry {index} is not a canonical envelope: {e}",
            path.display()
        ))
    })?;
    Ok(StoredEvent {
        index,
        commitment: *commitment,
        salt,
        canonical,
        envelope,
    })
}

/// Brings `log/checkpoint` up to the latest history record. A crash between
/// the history append and the replace leaves the previous checkpoint (or
/// none, or a temporary file) there; anything else was not written by this
/// log and is reported, never overwritten.
fn repair_public_checkpoint(
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

/// Verifies a stored checkpoint note and parses it.
pub(crate) fn open_checkpoint(
    verifier: &Verifier,
    origin: &str,
    note: &[u8],
) -> Result<Checkpoint, String> {
    let opened = stele_tlog::open_note(note, &[verifier]).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(&opened.text).map_err(|e| e.to_string())?;
    if checkpoint.origin != origin {
        return Err(format!(
            "origin {:?} is not {:?}",
            checkpoint.origin, origin
        ));
    }
    Ok(checkpoint)
}

/// The keys of an open log, checked against `meta.json`.
pub(crate) struct OpenedKeys {
    pub(crate) kek: Kek,
    /// Signs checkpoints (moves to the publisher thread).
    pub(crate) signer: Signer,
    /// A second handle on the same key: signs audit attestations.
    pub(crate) attestor: Signer,
    pub(crate) verifier: Verifier,
}

/// Opens the key-encryption key and the signing key, and checks both
/// against `meta.json`. Reads only.
pub(crate) fn open_keys(
    layout: &Layout,
    meta: &Meta,
    options: &OpenOptions,
) -> LogResult<OpenedKeys> {
    let kek = Kek::open(
        &layout.kek(),
        options.passphrase.as_deref().map(|s| s.as_str()),
    )?;
    let signing_path = layout.signing_key();
    let seed = keys::unwrap_signing_seed(&kek, &signing_path, &fsutil::read(&signing_path)?)?;
    // The seed is any 32 bytes: only the origin (the key's name) can be
    // refused, and it comes from `meta.json`.
    let signer = Signer::new(&meta.origin, *seed).map_err(|e| {
        LogError::Integrity(format!(
            "{}: origin {:?} is not a valid key name: {e}",
            layout.meta().display(),
            meta.origin
        ))
    })?;
    if signer.verifier_key() != meta.verifier_key {
        return Err(LogError::Integrity(format!(
            "{}: the signing key does not match the verifier key in {}",
            signing_path.display(),
            layout.meta().display()
        )));
    }
    let verifier = signer.verifier();
    // A second handle on the same key signs audit attestations; the
    // first moves to the publisher thread.
    let attestor = Signer::new(&meta.origin, *seed)
        .map_err(|e| LogError::Integrity(format!("{}: origin: {e}", layout.meta().display())))?;
    let kek_kind = if Kek::needs_passphrase(&layout.kek())? {
        "passphrase"
    } else {
        "file"
    };
    if meta.kek != kek_kind {
        return Err(LogError::Integrity(format!(
            "{}: says the key-encryption key is held as {:?}, but {} is a {kek_kind:?} key",
            layout.meta().display(),
            meta.kek,
            layout.kek().display()
        )));
    }
    Ok(OpenedKeys {
        kek,
        signer,
        attestor,
        verifier,
    })
}

pub(crate) fn check_dir(dir: &Path) -> LogResult<()> {
    if !dir.is_dir() {
        return Err(LogError::NotALog(format!(
            "{} does not exist or is not a directory",
            dir.display()
        )));
    }
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
                if let Some(previous) = purged.insert(tombstone.segment, tombstone) {
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
