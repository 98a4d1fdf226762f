//! The [`LogWriter`]: the append path and the publish path of one open data
//! directory; its recovery is in `engine/recovery.rs`.
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
//!    ([`LogWriter::cut_unbacked_tail`]), even though the caller never got their
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
use stele_event::Envelope;
use stele_event::time::Day;
use stele_store::StoreError;
use stele_store::block::{BlockConfig, Reference};
use stele_store::fsutil::{self, DirLock, SECRET_MODE};
use stele_store::history::{self, HistoryWriter, StoredCheckpoint};
use stele_store::index::{IndexFile, IndexRecord};
use stele_store::keys::{self, DataKey, Kek, NewKek, SaltKey};
use stele_store::segment::{self, SegmentHeader, SegmentWriter};
use stele_store::sessions::{SegmentKeys, Sessions};
use stele_store::state::SegmentSnapshot;
use stele_tlog::hash::hex;
use stele_tlog::{Checkpoint, Signer, Verifier};
use zeroize::Zeroizing;

use crate::committer::{Committer, FsyncMetrics, Job};
use crate::error::{LogError, LogResult};
use crate::ids::EntryIndex;
use crate::layout::Layout;
use crate::meta::{FORMAT_VERSION, Meta};
use crate::prepare::PreparedEvent;
use crate::publisher::{PublishJob, PublishState, Publisher};
use crate::purge::{SegmentEntries, Tombstone};
use crate::reader::{LogReader, View};
use crate::search::index::{FedBatch, Feed};
use crate::system_event::SystemEvent;
use crate::tiles::TileBuilder;
use recovery::{RemoveTornCreates, discover_segments, repair_public_checkpoint};

pub(crate) mod recovery;
mod seal;

/// Most batches written but not yet durable (see [`LogWriter::begin_append`]).
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
    /// How the blocks of new entries are compressed and how large they
    /// grow (any setting reads back the same).
    pub blocks: BlockConfig,
    /// No search index: searches then read every entry they cover from
    /// the log (for measuring what the index costs).
    pub no_search_index: bool,
    /// Whether the search index writes the part files of closed segments
    /// (`DATA/search/`) and removes stale ones; without, it is held in
    /// memory only and built at each open from the files that are there
    /// and the log.
    pub search_parts: bool,
}

/// What a writer gets back once its event is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: EntryIndex,
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
    pub index: EntryIndex,
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
    /// The record key of this writer session's generation.
    key: Arc<DataKey>,
    /// Derives the salts of the entries sealed under `key`.
    salts: SaltKey,
    /// The block later blocks are compressed against (version 4), once
    /// one is staged (see `seal.rs`).
    reference: Option<Arc<Reference>>,
}

impl ActiveSegment {
    fn new(writer: SegmentWriter, key: Arc<DataKey>) -> ActiveSegment {
        let salts = key.salt_key();
        ActiveSegment {
            writer,
            key,
            salts,
            reference: None,
        }
    }
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
    /// The appended entries for the search index, handed to it once the
    /// batch is durable (empty without an index).
    search: FedBatch,
}

/// What the writer's open found that governance keeps: the key that signs
/// attestations and the purge records on disk.
pub(crate) struct AtOpen {
    pub(crate) attestor: Signer,
    pub(crate) purged: BTreeMap<u32, Tombstone>,
}

/// The writer of an open log: the only thing that changes segments, the
/// index and tiles. See the module docs for the life of an entry; reads go
/// through its [`LogReader`], and governance ([`crate::Governance`]) is a
/// client of the calls it offers.
#[derive(Debug)]
pub struct LogWriter {
    layout: Layout,
    /// The directory lock: one writer per data directory.
    _lock: DirLock,
    meta: Meta,
    /// Wraps the data keys of new segments (shared with the reader, which
    /// unwraps them).
    kek: Arc<Kek>,
    /// The read side; the writer keeps its view current (see `reader.rs`).
    reader: LogReader,
    index: IndexFile,
    /// Writer generation, bumped lazily before the first append.
    generation: Option<u32>,
    /// The salt of every writer session, this one's once it began.
    sessions: Arc<Sessions>,
    segments: BTreeMap<u32, SegmentInfo>,
    /// Durable committed length of every segment (header plus every record
    /// an index entry points at). Written whole into the snapshot.
    committed: HashMap<u32, u64>,
    active: Vec<ActiveSegment>,
    tiles: TileBuilder,
    /// Idempotency key hash → first entry holding it; loaded from the index
    /// on first use.
    idempotency: Option<HashMap<u64, Vec<u64>>>,
    /// Writes tiles and publishes checkpoints on its own thread.
    publisher: Publisher,
    poisoned: Option<String>,
    /// Makes written batches durable (steps 2b and 3).
    committer: Committer,
    /// Derives salts and commitments, and compresses and seals blocks (step 1).
    sealer: seal::Sealer,
    /// Batches handed to the committer, oldest first.
    in_flight: std::collections::VecDeque<InFlight>,
    /// The search index's feed, from the end of `Log::open` on (`None`
    /// before, and when the open asked for no index).
    search: Option<Feed>,
    /// What this open's recovery kept aside in `recovered/` (one line each).
    kept_at_open: Vec<String>,
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
impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.poisoned.is_some() || !self.in_flight.is_empty() {
            return;
        }
        for active in &mut self.active {
            let _ = active.writer.trim_reserved();
        }
        let _ = self.index.trim_reserved();
    }
}

impl LogWriter {
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

    /// Opens the writer of the log in `dir` (taking its lock), before
    /// recovery: [`crate::Log::open`] runs [`Self::recover`] next, once
    /// governance has checked the purge records. Also returns what the open
    /// found for governance: the attestation signer and the tombstones.
    pub(crate) fn open(dir: &Path, options: &OpenOptions) -> LogResult<(LogWriter, AtOpen)> {
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
        } = open_keys(&layout, &meta, options)?;

        let sessions = crate::session::load(&layout, &meta)?;

        let (latest, latest_checkpoint) = latest_checkpoint(&layout, &meta, &verifier, last)?;
        let history_writer = HistoryWriter::open(&layout.history(), torn_at)?;
        repair_public_checkpoint(&layout, &latest, previous.as_ref())?;

        // A foreign index is refused before its open may cut anything.
        check_index_belongs(&layout, &meta)?;
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
        let kek = Arc::new(kek);
        let reader = LogReader::new(crate::reader::Parts {
            layout: layout.clone(),
            meta: meta.clone(),
            verifier,
            kek: kek.clone(),
            sessions: sessions.clone(),
            index: index.reader(),
            view: View {
                segments: segments.clone(),
                purged: purged.clone(),
                ..View::default()
            },
            publish: publisher.shared_state(),
            pending: None,
        });
        let writer = LogWriter {
            layout,
            _lock: lock,
            meta,
            kek,
            reader,
            index,
            generation: None,
            sessions,
            segments,
            committed: HashMap::new(),
            active: Vec::new(),
            tiles,
            idempotency: None,
            publisher,
            poisoned: None,
            committer: Committer::start(),
            sealer: seal::Sealer::new(options.blocks)?,
            in_flight: std::collections::VecDeque::new(),
            search: None,
            kept_at_open: Vec::new(),
        };
        Ok((writer, AtOpen { attestor, purged }))
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

    /// The read side of this log (clone it to read from other threads
    /// while this handle appends; see `reader.rs`).
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.index.len()
    }

    /// Size of the latest published checkpoint.
    pub fn published_size(&self) -> u64 {
        self.reader.published_size()
    }

    /// Makes the writer's segments and their committed lengths the
    /// reader's view (governance shares its own state, see
    /// `Governance::share`).
    /// Called after every change to them, before anything that depends on
    /// the change (an entry pointing into a new segment, the deletion of a
    /// purged segment's key) can be seen.
    pub(crate) fn share(&self) {
        let mut view = self.reader.view_mut();
        view.segments.clone_from(&self.segments);
        view.committed.clone_from(&self.committed);
    }

    /// Whether the log still accepts writes (no earlier write, fsync or
    /// publish failure).
    pub fn health(&self) -> LogResult<()> {
        self.check_writable()
    }

    pub(crate) fn check_writable(&self) -> LogResult<()> {
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
        let Some(mut batch) = self.in_flight.pop_front() else {
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
        // The segments' committed lengths and the index length grow
        // together under the reader's view lock (`LogReader::frozen` reads
        // both under it).
        {
            let mut view = self.reader.view_mut();
            for (id, end) in &batch.segment_ends {
                if let Some(active) = self.active.iter_mut().find(|a| a.segment_id() == *id) {
                    active.writer.mark_durable(*end);
                }
                let committed = self.committed.entry(*id).or_insert(0);
                *committed = (*committed).max(*end);
                view.committed.insert(*id, *committed);
            }
            self.index.note_appended(batch.commitments.len() as u64);
        }
        if let Some(known) = self.idempotency.as_mut() {
            for (hash, index) in &batch.keys {
                known.entry(*hash).or_default().push(*index);
            }
        }
        // The batch is durable: the search index may hold it.
        if let Some(feed) = &self.search {
            feed.send(std::mem::take(&mut batch.search));
        }
        // Step 4: integrate. Full tiles go to the publisher thread.
        let mut sink = &self.publisher;
        for commitment in &batch.commitments {
            self.tiles.push(commitment, &mut sink)?;
        }
        Ok(batch.receipts)
    }

    /// Starts the search index (`search/index.rs`): fed from the next
    /// batch on, and built from the log for every entry before it. Called
    /// once the open is complete (nothing is in flight).
    pub(crate) fn start_search(&mut self, persist: bool) -> LogResult<()> {
        if self.search.is_some() {
            return Ok(());
        }
        let feed = Feed::start(&self.reader, self.index.len(), persist)?;
        self.reader.set_search_index(feed.index().clone());
        self.search = Some(feed);
        Ok(())
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
        let mut receipts: Vec<Receipt> = Vec::with_capacity(events.len());
        let mut placed: Vec<seal::Placed> = Vec::with_capacity(events.len());
        // Receipt position of each placed entry.
        let mut receipt_of: Vec<usize> = Vec::with_capacity(events.len());
        let mut keys: Vec<(u64, u64)> = Vec::new();
        // Idempotency keys of this batch: hash → (receipt position, event).
        let mut batch_keys: HashMap<u64, Vec<(usize, &PreparedEvent)>> = HashMap::new();
        // Each event is numbered and placed in its segment; an event whose
        // idempotency key is already in the log (or earlier in this batch)
        // is not appended.
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
            let index = first + placed.len() as u64;
            let slot = self.active_segment(&event.stream, event.epoch)?;
            placed.push(seal::Placed { index, event, slot });
            receipt_of.push(receipts.len());
            receipts.push(Receipt {
                index: EntryIndex(index),
                id: event.id.clone(),
                stream: event.stream.clone(),
                commitment: [0; 32],
                salt: [0; 32],
                duplicate: false,
            });
            if event.idempotency != 0 {
                keys.push((event.idempotency, index));
            }
        }
        // Step 1: salts, commitments, sealed bytes staged.
        let sealed = self.sealer.seal(&mut self.active, generation, &placed)?;
        let mut index_bytes = Vec::with_capacity(placed.len() * 64);
        let mut commitments: Vec<[u8; 32]> = Vec::with_capacity(placed.len());
        for ((entry, sealed), position) in placed.iter().zip(&sealed).zip(&receipt_of) {
            let record = IndexRecord {
                commitment: sealed.commitment,
                segment_id: self.active[entry.slot].segment_id(),
                location: sealed.location,
                idempotency: entry.event.idempotency,
            };
            index_bytes.extend_from_slice(&record.encode());
            let receipt = &mut receipts[*position];
            receipt.commitment = sealed.commitment;
            receipt.salt = sealed.salt;
            commitments.push(sealed.commitment);
        }
        // An event retrying one earlier in this batch gets that one's
        // receipt, now that it is sealed.
        for position in 0..receipts.len() {
            if receipts[position].duplicate && receipts[position].index.0 >= first {
                let original = receipt_of[(receipts[position].index.0 - first) as usize];
                receipts[position].commitment = receipts[original].commitment;
                receipts[position].salt = receipts[original].salt;
            }
        }
        if commitments.is_empty() {
            return Ok(InFlight {
                receipts,
                commitments,
                keys,
                segment_ends: Vec::new(),
                done: None,
                search: Vec::new(),
            });
        }
        let search: FedBatch = match self.search {
            Some(_) => placed
                .iter()
                .map(|p| {
                    (
                        p.index,
                        self.active[p.slot].segment_id(),
                        p.event.terms.clone(),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        // Step 2a: segment records written (page cache only). Readers learn
        // where the bytes will end first (a verification beside this
        // writer then knows whose they are).
        {
            let mut view = self.reader.view_mut();
            for active in self.active.iter().filter(|a| a.writer.has_staged()) {
                view.written
                    .insert(active.segment_id(), active.writer.staged_end());
            }
        }
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
            search,
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
            let stored = match self.reader.get(EntryIndex(index)) {
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
                index: EntryIndex(index),
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

    fn load_idempotency_keys(&self) -> LogResult<HashMap<u64, Vec<u64>>> {
        self.reader.idempotency_keys()
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
            .reader
            .view()
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
                let key = self
                    .reader
                    .segment_keys(id)?
                    .record_key(self.session_generation()?)?;
                ActiveSegment::new(writer, key)
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
        let info = SegmentInfo {
            header,
            day: epoch,
            path,
        };
        self.committed.insert(id, writer.durable_len());
        self.segments.insert(id, info.clone());
        // In the reader's view before any entry points into it.
        {
            let mut view = self.reader.view_mut();
            view.committed.insert(id, writer.durable_len());
            view.segments.insert(id, info);
        }
        let keys = Arc::new(SegmentKeys::new(id, key, self.sessions.clone()));
        self.reader.lock_keys().insert(id, keys.clone());
        let key = keys.record_key(self.session_generation()?)?;
        Ok(ActiveSegment::new(writer, key))
    }

    /// Stops appending to segment `id` (its epoch is about to be purged).
    /// Nothing is staged between batches, so closing its writer loses
    /// nothing; an append to its epoch is refused from the tombstone on.
    pub(crate) fn close_segment(&mut self, id: u32) {
        self.active.retain(|a| a.segment_id() != id);
    }

    /// Forgets segment `id`, whose purge deleted its data key and file:
    /// neither the writer nor the reader knows it from here (its tombstone
    /// stands for it).
    pub(crate) fn retire_segment(&mut self, id: u32) {
        self.close_segment(id);
        self.reader.forget_segment(id);
        self.segments.remove(&id);
        self.committed.remove(&id);
        self.share();
    }

    /// Appends one system event to `_system` and waits for it to be
    /// durable: governance's one way to record a decision. The event is
    /// built (and its size checked) before anything is written. An event
    /// with a client id (see [`SystemEvent::client_id`]) retried with
    /// identical content returns the original receipt instead of appending
    /// again.
    pub fn append_system(&mut self, event: &SystemEvent, now: Timestamp) -> LogResult<Receipt> {
        let prepared = event.prepare("system", now)?;
        let receipt = self
            .append_batch(std::slice::from_ref(&prepared))?
            .into_iter()
            .next()
            .ok_or_else(|| LogError::Internal("system event was not appended".into()))?;
        self.publish_soon()?;
        Ok(receipt)
    }

    /// The stored segments by id (a retired one is no longer here).
    pub(crate) fn stored_segments(&self) -> &BTreeMap<u32, SegmentInfo> {
        &self.segments
    }

    /// The entries of segment `id`, read from the index in one pass (a
    /// purge records them and compares with them).
    pub(crate) fn segment_entries(&self, id: u32) -> LogResult<SegmentEntries> {
        crate::purge::segment_entries(&self.index, id)
    }

    /// The key-encryption key that wraps the data keys of new segments.
    pub(crate) fn kek(&self) -> &Arc<Kek> {
        &self.kek
    }

    /// Makes `kek` the one new data keys are wrapped under, for this writer
    /// and its reader (a key rotation passed its commit point).
    pub(crate) fn install_kek(&mut self, kek: Kek) {
        self.kek = Arc::new(kek);
        self.reader.set_kek(self.kek.clone());
    }

    /// The identity file's contents, for a key rotation to update.
    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    /// The generation of this handle's writer session, which begins before
    /// any segment is opened for appending.
    fn session_generation(&self) -> LogResult<u32> {
        self.generation
            .ok_or_else(|| LogError::Internal("no writer session has begun".into()))
    }

    fn next_segment_id(&self) -> LogResult<u32> {
        // Purged segments keep their ids reserved through their tombstones.
        let mut max = self.segments.keys().next_back().copied().unwrap_or(0).max(
            self.reader
                .view()
                .purged
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0),
        );
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

    /// Publishes a signed checkpoint over every integrated entry (step 5 of
    /// the module docs, run by the publisher thread) and waits for its note.
    /// Publishing with nothing new returns the current note.
    pub fn publish(&mut self) -> LogResult<String> {
        self.check_writable()?;
        if self.tiles.size() == self.published_size() {
            return Ok(self.reader.checkpoint_note());
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
        if self.tiles.size() <= self.publisher.state().requested {
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
}

/// Classifies a failure to build a proof from the stored tiles: a request
/// outside the tree is the caller's mistake, a tile that cannot be read is
/// the store's (I/O, or corruption when its bytes are wrong), and a tile
/// the tree should have but cannot exist is corruption.
pub(crate) fn proof_error(
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
        index: EntryIndex(index),
        commitment: *commitment,
        salt,
        canonical,
        envelope,
    })
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

/// The latest checkpoint of the history (`last`, as a scan found it),
/// opened with the log's key: the trusted prefix every open starts from.
pub(crate) fn latest_checkpoint(
    layout: &Layout,
    meta: &Meta,
    verifier: &Verifier,
    last: Option<StoredCheckpoint>,
) -> LogResult<(StoredCheckpoint, Checkpoint)> {
    let history = layout.history();
    let latest = last.ok_or_else(|| {
        LogError::Integrity(format!("{}: no checkpoint recorded", history.display()))
    })?;
    let checkpoint = open_checkpoint(verifier, &meta.origin, &latest.note).map_err(|e| {
        LogError::Integrity(format!("{}: latest checkpoint: {e}", history.display()))
    })?;
    Ok((latest, checkpoint))
}

/// Refuses an index that belongs to another log (its log id is not the
/// one in `meta.json`), before anything reads or cuts it.
pub(crate) fn check_index_belongs(layout: &Layout, meta: &Meta) -> LogResult<()> {
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
    Ok(())
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

/// Unwraps the log's signing key with `kek` and checks it against the
/// verifier key in `meta.json`. Reads only. The one place a `Signer` is
/// made from the key file: checkpoints, attestations and bundle manifests
/// are all signed by what this returns.
pub(crate) fn open_signer(layout: &Layout, meta: &Meta, kek: &Kek) -> LogResult<Signer> {
    let signing_path = layout.signing_key();
    let seed = keys::unwrap_signing_seed(kek, &signing_path, &fsutil::read(&signing_path)?)?;
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
    Ok(signer)
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
    let signer = open_signer(layout, meta, &kek)?;
    let verifier = signer.verifier();
    // A second handle on the same key signs audit attestations; the
    // first moves to the publisher thread.
    let attestor = open_signer(layout, meta, &kek)?;
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
