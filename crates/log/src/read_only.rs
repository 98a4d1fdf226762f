//! A read-only handle on a data directory, for `verify`: no lock, no
//! recovery, no file written or created, no write permission needed.
//!
//! [`Log::open_read_only`] reads the state a writing open starts from — the
//! latest checkpoint in the history, then the index's whole records (in
//! that order, so that every checkpoint read is covered by the index read
//! after it, even while a writer appends) — and instead of repairing what a
//! crash left, works out what the next writing open would do and says so,
//! one line each ([`Log::pending_recovery`]): a torn index or history tail,
//! the last append's torn segment records (their entries are left out of
//! the handle's view, as the open would cut them), bytes after a segment's
//! committed length. Everything the handle shows is the prefix a writing
//! open would keep; a record altered after it was written stays in view, so
//! that `verify` reports it. It is not a reader for serving: it never
//! refreshes, and every write is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use stele_store::fsutil;
use stele_store::history;
use stele_store::index::{IndexFile, MAX_BATCH_RECORDS};
use stele_tlog::hash::hex;

use crate::committer::Committer;
use crate::engine::{
    Log, OpenOptions, OpenedKeys, RemoveTornCreates, TailKind, check_dir, discover_segments,
    is_damaged_data, open_checkpoint, open_keys,
};
use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::meta::Meta;
use crate::publisher::{PublishState, Publisher};
use crate::tiles::TileBuilder;

impl Log {
    /// Opens the log without the directory lock and without recovery, for
    /// reading only (see the module docs). Works beside a running writer
    /// (the view is the log as it was when opened) and on a directory
    /// without write permission.
    pub fn open_read_only(dir: &Path, options: OpenOptions) -> LogResult<Log> {
        check_dir(dir)?;
        let layout = Layout::new(dir);
        let meta = Meta::read(&layout.meta())?;
        // Which key opens the data keys is decided by finishing the
        // rotation, which only a writing open does.
        for marker in [layout.kek_next(), layout.kek_info_next()] {
            if marker.exists() {
                return Err(LogError::Usage(format!(
                    "{} exists: a key rotation is running or was interrupted; the keys can be read once it is finished (a writing open of the log finishes it)",
                    marker.display()
                )));
            }
        }
        let OpenedKeys {
            kek,
            signer: _,
            attestor,
            verifier,
        } = open_keys(&layout, &meta, &options)?;

        // The history first: every checkpoint read is then covered by the
        // index read after it.
        let mut pending = Vec::new();
        let mut scan = history::scan(&layout.history())?;
        // Evidence of a rollback or a fork (`anchor.rs`), as a writing open
        // checks it. A running writer appends to the history before it
        // replaces `log/checkpoint` and the anchor, so a refusal is
        // confirmed against a fresh read of the history first.
        let anchor = options
            .anchor
            .as_deref()
            .map(|path| crate::anchor::Anchor::new(path, dir))
            .transpose()?;
        if crate::anchor::check_rollback(&layout, &meta, scan.last.as_ref(), anchor.as_ref())
            .is_err()
        {
            scan = history::scan(&layout.history())?;
            crate::anchor::check_rollback(&layout, &meta, scan.last.as_ref(), anchor.as_ref())?;
        }
        let latest = scan.last.ok_or_else(|| {
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
        if let Some(at) = scan.torn_at {
            pending.push(format!(
                "{}: the bytes from byte {at} on are not a whole checkpoint (one being appended, or torn by a crash): the next open cuts them",
                layout.history().display()
            ));
        }

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
        let (index, recovery) = IndexFile::open_read_only(&layout.index(), latest_checkpoint.size)?;
        if recovery.torn_bytes > 0 {
            pending.push(format!(
                "{}: {} bytes after entry {} that are not zeros (records being appended, or torn by a crash): the next open cuts them",
                layout.index().display(),
                recovery.torn_bytes,
                recovery.entries
            ));
        }
        let (segments, purged) = discover_segments(&layout, RemoveTornCreates::No)?;
        let publisher = Publisher::read_only(
            &layout,
            PublishState {
                size: latest_checkpoint.size,
                note: String::from_utf8_lossy(&latest.note).into_owned(),
                history: scan.index,
                requested: latest_checkpoint.size,
                published_at: None,
                error: None,
            },
        );
        let sessions = crate::session::load(&layout, &meta)?;
        let mut log = Log {
            layout,
            _lock: None,
            meta,
            kek,
            verifier,
            sessions,
            index,
            generation: None,
            segments,
            committed: HashMap::new(),
            active: Vec::new(),
            keys: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            tiles: TileBuilder::new(),
            idempotency: None,
            publisher,
            poisoned: None,
            purged,
            attestor,
            policies: Vec::new(),
            holds: Vec::new(),
            time_floor: None,
            announcements: crate::announce::Announcements::default(),
            committer: Committer::start(),
            in_flight: std::collections::VecDeque::new(),
            kept_at_open: Vec::new(),
            read_only: None,
        };
        log.load_governance()?;
        log.survey_unbacked_tail(&mut pending)?;
        log.survey_segment_tails(&mut pending)?;
        log.read_only = Some(pending);
        Ok(log)
    }

    /// For a read-only handle, what the next writing open would repair,
    /// one line each (empty when nothing); `None` for a writing handle.
    pub fn pending_recovery(&self) -> Option<&[String]> {
        self.read_only.as_deref()
    }

    /// What [`Log::cut_unbacked_tail`] would cut: the view stops before the
    /// first torn record of the last append's reach. A record altered after
    /// it was written stays in view (`verify` reports it), as do entries the
    /// open would refuse to go on from.
    fn survey_unbacked_tail(&mut self, pending: &mut Vec<String>) -> LogResult<()> {
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
                if self.purged.contains_key(&record.segment_id)
                    || !self.segments.contains_key(&record.segment_id)
                {
                    continue;
                }
                match self.open_record(index, record) {
                    Ok(_) => {}
                    Err(e) if is_damaged_data(&e) => {
                        if let Ok(mark) = self.tear_of(index, record, &e) {
                            let path = self.segments[&record.segment_id].path.display();
                            pending.push(format!(
                                "entries {index} to {} would be cut from the index at the next open: the record of entry {index} in {path} was torn by a crash ({mark}), so their append was never acknowledged; they are not verified",
                                total - 1
                            ));
                            self.index.limit(index);
                        }
                        return Ok(());
                    }
                    Err(_) => return Ok(()),
                }
            }
            start += count;
        }
        Ok(())
    }

    /// What the segment cut of a writing open would do with the bytes after
    /// each segment's committed length (the walk of `recover`, reading
    /// only). Sets the committed lengths `verify` walks to.
    fn survey_segment_tails(&mut self, pending: &mut Vec<String>) -> LogResult<()> {
        let total = self.index.len();
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
        let mut lengths = BTreeMap::new();
        for tail in &tails {
            lengths.insert(tail.id, tail.keep);
            let path = tail.path.display();
            match tail.kind {
                // A short segment is `verify`'s to report (entries missing).
                TailKind::None | TailKind::Short => {}
                TailKind::Leftovers => {
                    let file = std::fs::File::open(&tail.path)
                        .map_err(|e| stele_store::StoreError::io("open", &tail.path, e))?;
                    let end = fsutil::end_of_nonzero(&file, tail.keep, tail.len)
                        .map_err(|e| stele_store::StoreError::io("read", &tail.path, e))?;
                    if end > tail.keep {
                        pending.push(format!(
                            "{path}: {} bytes after the committed length (byte {}) hold records of entries from {total} on (appended since by a running writer, or by an append a crash interrupted): the next open cuts them; they are not verified",
                            end - tail.keep,
                            tail.keep
                        ));
                    }
                }
                TailKind::Foreign { end } => pending.push(format!(
                    "{path}: {} bytes after the committed length (byte {}) are not records of an interrupted append: the next open keeps them in recovered/ and cuts them; they are not verified",
                    end - tail.keep,
                    tail.keep
                )),
            }
        }
        self.committed = lengths.into_iter().collect();
        Ok(())
    }
}
