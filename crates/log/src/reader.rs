//! The read side of a log: [`LogReader`].
//!
//! A `LogReader` is cheap to clone and takes no writer lock: any number of
//! threads read through it while one writer appends. It holds what a read
//! needs and nothing a write changes in place:
//! - the index through its own handle ([`IndexReader`]), whose length the
//!   writer raises only once a batch is durable (step 3 of `engine.rs`), so
//!   a reader never sees an entry that could still be cut;
//! - a [`View`] of the segments, their committed lengths, the tombstones of
//!   purged epochs and the governance record (policy versions and holds),
//!   which the writer updates as it changes them: a segment is in the view
//!   before any entry that points into it, and a tombstone before its data
//!   key and segment are deleted;
//! - the caches of unwrapped data keys and open segment files;
//! - the publish state the publisher thread shares (the latest signed
//!   checkpoint and where every checkpoint is in the history).
//!
//! It serves [`LogReader::get`], proofs against published checkpoints, the
//! checkpoint history, scans (`scan.rs`) and verification (`verify.rs`).
//! A reader made by a writing open ([`crate::Log::reader`]) follows that
//! writer; one opened on its own ([`LogReader::open`], in `read_only.rs`)
//! sees the directory as it was when opened, never runs recovery and
//! writes nothing, so it works on a read-only copy and beside a running
//! `stele serve`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use stele_event::time::Day;
use stele_store::StoreError;
use stele_store::fsutil;
use stele_store::index::{IndexReader, IndexRecord, MAX_BATCH_RECORDS};
use stele_store::keys::{DataKey, Kek};
use stele_store::segment::{self, BlockCache, SegmentReader};
use stele_store::sessions::{SegmentKeys, Sessions};
use stele_store::state;
use stele_tlog::tile::TileHashReader;
use stele_tlog::{Hash, TlogProof, Verifier};

use crate::checkpoints::CheckpointHistory;
use crate::engine::recovery::{Tail, TailKind, classify_tail, read_record_bytes};
use crate::engine::{SegmentInfo, StoredEvent, decode_plaintext, proof_error};
use crate::error::{LogError, LogResult};
use crate::governance::{Hold, PolicyVersion};
use crate::ids::{EntryIndex, SegmentId};
use crate::layout::Layout;
use crate::meta::Meta;
use crate::publisher::PublishState;
use crate::purge::Tombstone;
use crate::search::SearchIndex;
use crate::tiles::DiskTiles;

/// Plaintext of opened blocks a reader keeps for reads that come back to
/// them (see [`BlockCache`]): 64 blocks of the default 256 KiB.
pub const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// A handle for reading a log; see the module docs.
#[derive(Clone)]
pub struct LogReader {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("root", &self.inner.layout.root)
            .field("size", &self.inner.index.len())
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) meta: Meta,
    pub(crate) verifier: Verifier,
    /// Replaced by the writer when a rotation installs a new KEK.
    kek: RwLock<Arc<Kek>>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) index: IndexReader,
    view: RwLock<View>,
    keys: Mutex<HashMap<u32, Arc<SegmentKeys>>>,
    readers: Mutex<HashMap<u32, Arc<SegmentReader>>>,
    /// Blocks opened by `get`, shared by every segment (and by the views
    /// frozen from this reader).
    blocks: Arc<BlockCache>,
    pub(crate) publish: Arc<Mutex<PublishState>>,
    /// For a reader opened on its own: what the next writing open would
    /// repair, one line each. `None` for a writer's reader.
    pub(crate) pending: Option<Vec<String>>,
    /// A view fixed at one moment ([`LogReader::frozen`]) while a writer
    /// may go on appending, publishing and purging beside it.
    frozen: bool,
    /// For a view frozen from a writer's reader: that reader, which
    /// follows the writer.
    live: Option<Arc<Inner>>,
    /// The writer's search index (`search/index.rs`), once its open is
    /// complete; never for a reader opened on its own.
    search: RwLock<Option<Arc<SearchIndex>>>,
}

/// What the writer has made visible: see the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub(crate) segments: BTreeMap<u32, SegmentInfo>,
    /// Durable committed length of every segment.
    pub(crate) committed: HashMap<u32, u64>,
    /// Where the bytes the writer has written, or is writing, end in each
    /// segment it appended to (raised before the bytes are written): what
    /// lies between the committed length and this is a batch in flight.
    pub(crate) written: HashMap<u32, u64>,
    pub(crate) purged: BTreeMap<u32, Tombstone>,
    pub(crate) policies: Vec<PolicyVersion>,
    pub(crate) holds: Vec<Hold>,
}

/// What a reader is made of (see [`LogReader::new`]).
pub(crate) struct Parts {
    pub(crate) layout: Layout,
    pub(crate) meta: Meta,
    pub(crate) verifier: Verifier,
    pub(crate) kek: Arc<Kek>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) index: IndexReader,
    pub(crate) view: View,
    pub(crate) publish: Arc<Mutex<PublishState>>,
    pub(crate) pending: Option<Vec<String>>,
}

impl LogReader {
    pub(crate) fn new(parts: Parts) -> LogReader {
        LogReader {
            inner: Arc::new(Inner {
                layout: parts.layout,
                meta: parts.meta,
                verifier: parts.verifier,
                kek: RwLock::new(parts.kek),
                sessions: parts.sessions,
                index: parts.index,
                view: RwLock::new(parts.view),
                keys: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
                blocks: Arc::new(BlockCache::new(BLOCK_CACHE_BYTES)),
                publish: parts.publish,
                pending: parts.pending,
                frozen: false,
                live: None,
                search: RwLock::new(None),
            }),
        }
    }

    /// The log as it is at this moment, for a reading that takes a while
    /// (`verify`): its entries, segments, committed lengths, tombstones,
    /// governance record and published checkpoints stay as they are now,
    /// consistent with each other, however the writer goes on. The
    /// checkpoints are copied first, so none covers an entry the view
    /// lacks; the index length is read under the view's lock, which the
    /// writer holds while it raises the length and the committed lengths
    /// together.
    pub fn frozen(&self) -> LogReader {
        let publish = crate::publisher::lock(&self.inner.publish).clone();
        let view = self.view();
        let index = self.inner.index.frozen();
        LogReader {
            inner: Arc::new(Inner {
                layout: self.inner.layout.clone(),
                meta: self.inner.meta.clone(),
                verifier: self.inner.verifier.clone(),
                kek: RwLock::new(self.kek()),
                sessions: self.inner.sessions.clone(),
                index,
                view: RwLock::new(view.clone()),
                keys: Mutex::new(self.lock_keys().clone()),
                readers: Mutex::new(HashMap::new()),
                blocks: self.inner.blocks.clone(),
                publish: Arc::new(Mutex::new(publish)),
                pending: self.inner.pending.clone(),
                frozen: true,
                live: match (&self.inner.live, self.inner.pending.is_some()) {
                    (Some(live), _) => Some(live.clone()),
                    (None, false) => Some(self.inner.clone()),
                    (None, true) => None,
                },
                search: RwLock::new(self.search_index()),
            }),
        }
    }

    /// For a view frozen from a writer's: that writer's reader, which
    /// follows it.
    pub(crate) fn live(&self) -> Option<LogReader> {
        self.inner.live.clone().map(|inner| LogReader { inner })
    }

    /// For a view frozen from a writer's: whether that writer has written
    /// (or is writing) bytes of segment `id` beyond `end` by now. Those
    /// bytes are its appends since the view, not a problem of the view.
    pub(crate) fn written_beyond(&self, id: u32, end: u64) -> bool {
        let Some(live) = &self.inner.live else {
            return false;
        };
        let view = live.view.read().unwrap_or_else(|p| p.into_inner());
        view.written.get(&id).is_some_and(|w| *w > end)
            || view.committed.get(&id).is_some_and(|c| *c > end)
    }

    /// Whether a writer may be changing the directory beside this view
    /// (a reader opened on its own, or a frozen one): what lies beyond the
    /// view (records, checkpoints, files newer than it) is not a problem.
    pub(crate) fn beside_writer(&self) -> bool {
        self.inner.pending.is_some() || self.inner.frozen
    }

    pub(crate) fn view(&self) -> RwLockReadGuard<'_, View> {
        self.inner.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// For the writer only (see the module docs for the order it keeps).
    pub(crate) fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.inner.view.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn kek(&self) -> Arc<Kek> {
        self.inner
            .kek
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For the writer: a rotation installed a new KEK (cached data keys
    /// stay valid: only their wrapping changed).
    pub(crate) fn set_kek(&self, kek: Arc<Kek>) {
        *self.inner.kek.write().unwrap_or_else(|p| p.into_inner()) = kek;
    }

    /// The search index, if this reader follows a writer whose open is
    /// complete (else a search reads every entry from the log).
    pub fn search_index(&self) -> Option<Arc<SearchIndex>> {
        self.inner
            .search
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For the writer, at the end of its open: the index searches use.
    pub(crate) fn set_search_index(&self, index: Arc<SearchIndex>) {
        *self.inner.search.write().unwrap_or_else(|p| p.into_inner()) = Some(index);
    }

    /// The stream and day of segment `id`, if it is stored (in the view,
    /// not purged).
    pub(crate) fn stored_segment(&self, id: u32) -> Option<(String, Day)> {
        let view = self.view();
        if view.purged.contains_key(&id) {
            return None;
        }
        view.segments
            .get(&id)
            .map(|info| (info.header.stream.clone(), info.day))
    }

    /// For the writer: forgets the cached key and file of a segment whose
    /// purge deletes them, and its part of the search index.
    pub(crate) fn forget_segment(&self, id: u32) {
        if let Some(index) = self.search_index() {
            index.forget(self, id);
        }
        self.inner.blocks.forget_segment(id);
        self.lock_keys().remove(&id);
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The log's signing key, unwrapped with the key-encryption key this
    /// reader holds, for signing a bundle's manifest; not kept by the
    /// reader.
    pub(crate) fn signer(&self) -> LogResult<stele_tlog::Signer> {
        crate::engine::open_signer(&self.inner.layout, &self.inner.meta, &self.kek())
    }

    /// The stream of segment `id`, stored or purged; `None` when unknown.
    pub(crate) fn segment_stream(&self, id: u32) -> Option<String> {
        let view = self.view();
        match view.segments.get(&id) {
            Some(info) => Some(info.header.stream.clone()),
            None => view.purged.get(&id).map(|t| t.stream.clone()),
        }
    }

    /// The latest published checkpoint: its size and note, read together.
    pub(crate) fn latest_published(&self) -> (u64, String) {
        let published = self.published();
        (published.size, published.note.clone())
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.inner.index.len()
    }

    pub(crate) fn index(&self) -> &IndexReader {
        &self.inner.index
    }

    /// For a reader opened on its own, what the next writing open would
    /// repair, one line each (empty when nothing); `None` for a writer's.
    pub fn pending_recovery(&self) -> Option<&[String]> {
        self.inner.pending.as_deref()
    }

    /// The file of segment `id`, unless it is purged or not on disk.
    pub(crate) fn segment_path(&self, id: u32) -> Option<std::path::PathBuf> {
        let view = self.view();
        if view.purged.contains_key(&id) {
            return None;
        }
        view.segments.get(&id).map(|info| info.path.clone())
    }

    /// A reader opened on its own, with what a writing open would repair.
    pub(crate) fn with_pending(self, pending: Vec<String>) -> LogReader {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.pending = Some(pending);
                LogReader {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => LogReader { inner },
        }
    }

    /// Segments known on disk, by id.
    pub(crate) fn segment_infos(&self) -> BTreeMap<u32, SegmentInfo> {
        self.view().segments.clone()
    }

    /// The durable committed length of segment `id`, when known.
    pub(crate) fn committed_length(&self, id: u32) -> Option<u64> {
        self.view().committed.get(&id).copied()
    }

    /// Tombstones of every purged epoch, by segment id as the engine keys
    /// them (see [`Self::purged`]).
    pub(crate) fn purge_records(&self) -> BTreeMap<u32, Tombstone> {
        self.view().purged.clone()
    }

    /// Tombstones of every purged epoch, by segment id.
    pub fn purged(&self) -> BTreeMap<SegmentId, Tombstone> {
        self.view()
            .purged
            .iter()
            .map(|(id, t)| (SegmentId(*id), t.clone()))
            .collect()
    }

    /// Every applied policy version, oldest first.
    pub fn policy_versions(&self) -> Vec<PolicyVersion> {
        self.view().policies.clone()
    }

    /// The policy in effect (the shipped default when none was applied).
    pub fn active_policy(&self) -> Arc<stele_policy::Policy> {
        crate::governance::active_policy(&self.view().policies)
    }

    /// Every hold ever placed, released ones included.
    pub fn holds(&self) -> Vec<Hold> {
        self.view().holds.clone()
    }

    /// Re-checks a past purge against the recorded policy versions and
    /// holds (see [`crate::governance::purge_was_allowed`]).
    pub fn purge_was_allowed(&self, t: &Tombstone) -> Result<(), String> {
        let view = self.view();
        crate::governance::purge_was_allowed(&view.policies, &view.holds, t)
    }

    /// Reads every idempotency key hash from the index (8 of the 64 bytes
    /// of each entry): key hash → entries holding it.
    pub(crate) fn idempotency_keys(&self) -> LogResult<HashMap<u64, Vec<u64>>> {
        let mut known = HashMap::new();
        let total = self.inner.index.len();
        let mut start = 0;
        while start < total {
            let count = (total - start).min(65_536);
            for (offset, record) in self
                .inner
                .index
                .read_range(start, count)?
                .iter()
                .enumerate()
            {
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

    fn published(&self) -> MutexGuard<'_, PublishState> {
        crate::publisher::lock(&self.inner.publish)
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
            path: self.inner.layout.history(),
            state: self.inner.publish.clone(),
        }
    }

    pub(crate) fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<SegmentKeys>>> {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys of a segment: its unwrapped data key and the record keys
    /// derived from it (cached).
    pub(crate) fn segment_keys(&self, id: u32) -> LogResult<Arc<SegmentKeys>> {
        if let Some(key) = self.lock_keys().get(&id) {
            return Ok(key.clone());
        }
        let path = self.inner.layout.dek(id);
        let bytes = match fsutil::read_optional(&path)? {
            Some(bytes) => bytes,
            None => {
                return Err(LogError::Integrity(format!(
                    "{}: data key of segment {id} is missing",
                    path.display()
                )));
            }
        };
        let key = DataKey::unwrap_file(&self.kek(), id, &path, &bytes)?;
        let keys = Arc::new(SegmentKeys::new(id, key, self.inner.sessions.clone()));
        self.lock_keys().insert(id, keys.clone());
        Ok(keys)
    }

    fn segment_reader(&self, id: u32) -> LogResult<Arc<SegmentReader>> {
        let mut readers = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = readers.get(&id) {
            return Ok(reader.clone());
        }
        let info = self.view().segments.get(&id).cloned().ok_or_else(|| {
            LogError::Integrity(format!(
                "{}: segment {id} is missing: the index refers to it",
                self.inner.layout.segments().display()
            ))
        })?;
        let reader = Arc::new(SegmentReader::open_cached(
            &info.path,
            Some(self.inner.blocks.clone()),
        )?);
        if reader.header != info.header {
            return Err(LogError::Integrity(format!(
                "{}: header changed",
                info.path.display()
            )));
        }
        readers.insert(id, reader.clone());
        Ok(reader)
    }

    /// Reads entry `index`, decrypts it and checks it against its commitment.
    pub fn get(&self, index: EntryIndex) -> LogResult<StoredEvent> {
        Ok(self.get_with_segment(index)?.1)
    }

    /// Entry `index` as [`Self::get`] reads it, with the segment that
    /// holds it.
    pub(crate) fn get_with_segment(&self, index: EntryIndex) -> LogResult<(u32, StoredEvent)> {
        let EntryIndex(index) = index;
        let size = self.inner.index.len();
        if index >= size {
            return Err(LogError::NotFound(format!(
                "entry {index} does not exist (the log has {size} entries)"
            )));
        }
        let record = self.inner.index.read(index)?;
        Ok((record.segment_id, self.read_record(index, &record)?))
    }

    pub(crate) fn read_record(&self, index: u64, record: &IndexRecord) -> LogResult<StoredEvent> {
        if let Some(tombstone) = self.view().purged.get(&record.segment_id).cloned() {
            return Err(LogError::Purged {
                index,
                tombstone: Box::new(tombstone),
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
        let plain = reader.open_entry(record.location, index, &keys, &record.commitment)?;
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
    pub fn inclusion_proof(&self, index: EntryIndex, size: Option<u64>) -> LogResult<TlogProof> {
        let EntryIndex(index) = index;
        let (size, note) = self.require_published(size)?;
        if index >= size {
            return Err(LogError::NotFound(format!(
                "entry {index} is not in the checkpoint of size {size}"
            )));
        }
        let tiles = DiskTiles::new(&self.inner.layout.public());
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
        let tiles = DiskTiles::new(&self.inner.layout.public());
        let reader = TileHashReader::new(size, &tiles);
        stele_tlog::consistency_proof(&reader, old, size).map_err(|e| proof_error("consistency", e))
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
            && let Ok(Some(snapshot)) = state::read_snapshot(&self.inner.layout.snapshot())
            && snapshot.index_size <= self.inner.index.len()
        {
            scan_from = snapshot.index_size;
            committed.extend(snapshot.lengths.iter().copied());
            used = true;
        }
        let total = self.inner.index.len();
        let view = self.view();
        let mut start = scan_from;
        while start < total {
            let count = (total - start).min(65_536);
            for (i, record) in self
                .inner
                .index
                .read_range(start, count)?
                .iter()
                .enumerate()
            {
                let end = record.location.offset + u64::from(record.location.len);
                if view.purged.contains_key(&record.segment_id) {
                    continue;
                }
                if !view.segments.contains_key(&record.segment_id) {
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

    /// What lies after every segment's committed length. The lengths come
    /// from the snapshot of the last publish, extended with every index
    /// entry after it; the snapshot only saves reading the index: an
    /// unreadable one, or one a segment disagrees with (a tail holding a
    /// committed entry's record, or a segment shorter than it says), is
    /// ignored and the whole index is read.
    pub(crate) fn tails(&self) -> LogResult<Vec<Tail>> {
        let total = self.size();
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
        Ok(tails)
    }

    /// Where the last append's reach begins in an index of `total`
    /// entries: one append's length before the end, never below the
    /// latest signed checkpoint.
    fn reach_start(&self, total: u64) -> u64 {
        self.published_size()
            .max(total.saturating_sub(MAX_BATCH_RECORDS))
    }

    /// The first entry of the last append's reach ([`MAX_BATCH_RECORDS`]
    /// entries before the end, never below the latest signed checkpoint)
    /// whose record does not read back, with why (see
    /// `Log::cut_unbacked_tail`); entries of purged segments are passed
    /// over. An entry whose segment is not on disk is an integrity error.
    pub(crate) fn first_unreadable_in_reach(
        &self,
    ) -> LogResult<Option<(u64, IndexRecord, LogError)>> {
        let total = self.size();
        let mut start = self.reach_start(total);
        while start < total {
            let count = (total - start).min(4096);
            let records = self.index().read_range(start, count)?;
            for (i, record) in records.into_iter().enumerate() {
                let index = start + i as u64;
                {
                    let view = self.view();
                    if view.purged.contains_key(&record.segment_id) {
                        continue;
                    }
                    if !view.segments.contains_key(&record.segment_id) {
                        return Err(LogError::Integrity(format!(
                            "entry {index} refers to segment {}, which is not on disk",
                            record.segment_id
                        )));
                    }
                }
                match self.open_record(index, &record) {
                    Err(e) => return Ok(Some((index, record, e))),
                    // A block's tag does not bind its entries' commitments:
                    // each is computed again (a mismatch is not a tear).
                    Ok((plain, reader)) if segment::holds_blocks(reader.header.version) => {
                        crate::engine::decode_plaintext(
                            index,
                            &record.commitment,
                            plain,
                            reader.path(),
                        )?;
                    }
                    Ok(_) => {}
                }
            }
            start += count;
        }
        Ok(None)
    }

    /// Where the index is to be cut so that no block holds entries on both
    /// sides of its end, among the blocks the entries of the last append's
    /// reach point at: the first entry of a block that holds an entry at
    /// or after `total` (the index records of its batch were cut short:
    /// the batch was never acknowledged, and the block with it; see
    /// `LogWriter::cut_unbacked_tail`). `None` when no block does. Every
    /// entry in reach reads back (`first_unreadable_in_reach` found none).
    ///
    /// One cut can make another block partial: an append over several
    /// segments interleaves its entries, so the block of one segment may
    /// hold entries on both sides of the first entry of another's (entries
    /// 5, 7, 9 in one, 6, 8, 10 in the other: index records up to 9 leave
    /// the second partial, and cutting at 6 leaves the first so). The cut
    /// goes down until no block is partial.
    pub(crate) fn first_partial_block_in_reach(&self, total: u64) -> LogResult<Option<u64>> {
        let mut start = self.reach_start(total);
        let mut seen: std::collections::HashSet<(u32, u64)> = std::collections::HashSet::new();
        // (first, last) entry of every block in reach.
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        while start < total {
            let count = (total - start).min(4096);
            let records = self.index().read_range(start, count)?;
            for (i, record) in records.into_iter().enumerate() {
                let index = start + i as u64;
                if self.view().purged.contains_key(&record.segment_id)
                    || !seen.insert((record.segment_id, record.location.offset))
                {
                    continue;
                }
                let reader = self.segment_reader(record.segment_id)?;
                if !segment::holds_blocks(reader.header.version) {
                    continue;
                }
                let keys = self.segment_keys(record.segment_id)?;
                let entries = reader.block_entries(record.location, index, &keys)?;
                if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                    blocks.push((*first, *last));
                }
            }
            start += count;
        }
        let mut cut = total;
        while let Some(first) = blocks
            .iter()
            .filter(|(first, last)| *first < cut && *last >= cut)
            .map(|(first, _)| *first)
            .min()
        {
            cut = first;
        }
        Ok((cut < total).then_some(cut))
    }

    /// What lies after the committed length of each segment (purged ones
    /// aside: their purge is finished after recovery).
    pub(crate) fn segment_tails(
        &self,
        committed: &HashMap<u32, u64>,
        total: u64,
    ) -> LogResult<Vec<Tail>> {
        let mut tails = Vec::new();
        let view = self.view();
        for (id, info) in &view.segments {
            if view.purged.contains_key(id) {
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
            .view()
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
}
