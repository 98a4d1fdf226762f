//! A reader opened on its own ([`LogReader::open`]), for `verify`, `get`,
//! proofs, `export` and `query` from the command line: no lock, no
//! recovery, no file written or created, no write permission needed.
//!
//! It reads the state a writing open starts from — the
//! latest checkpoint in the history, then the index's whole records (in
//! that order, so that every checkpoint read is covered by the index read
//! after it, even while a writer appends) — and instead of repairing what a
//! crash left, works out what the next writing open would do and says so,
//! one line each ([`LogReader::pending_recovery`]): a torn index or history tail,
//! the last append's torn segment records (their entries are left out of
//! the handle's view, as the open would cut them), bytes after a segment's
//! committed length. Everything the handle shows is the prefix a writing
//! open would keep; a record altered after it was written stays in view, so
//! that `verify` reports it. It never refreshes: it shows the log as it
//! was when opened (a server reads through its writer's reader instead).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use stele_store::fsutil;
use stele_store::history;
use stele_store::index::IndexFile;

use crate::engine::recovery::{RemoveTornCreates, TailKind, discover_segments};
use crate::engine::{OpenOptions, OpenedKeys, check_dir, is_damaged_data, open_keys};
use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::meta::Meta;
use crate::publisher::PublishState;
use crate::reader::{LogReader, Parts, View};

impl LogReader {
    /// Opens the log without the directory lock and without recovery, for
    /// reading only (see the module docs). Works beside a running writer
    /// (the view is the log as it was when opened) and on a directory
    /// without write permission.
    pub fn open(dir: &Path, options: OpenOptions) -> LogResult<LogReader> {
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
        let OpenedKeys { kek, verifier, .. } = open_keys(&layout, &meta, &options)?;

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
        let (latest, latest_checkpoint) =
            crate::engine::latest_checkpoint(&layout, &meta, &verifier, scan.last)?;
        if let Some(at) = scan.torn_at {
            pending.push(format!(
                "{}: the bytes from byte {at} on are not a whole checkpoint (one being appended, or torn by a crash): the next open cuts them",
                layout.history().display()
            ));
        }

        crate::engine::check_index_belongs(&layout, &meta)?;
        let (mut index, recovery) =
            IndexFile::open_read_only(&layout.index(), latest_checkpoint.size)?;
        if recovery.torn_bytes > 0 {
            pending.push(format!(
                "{}: {} bytes after entry {} that are not zeros (records being appended, or torn by a crash): the next open cuts them",
                layout.index().display(),
                recovery.torn_bytes,
                recovery.entries
            ));
        }
        let (segments, purged) = discover_segments(&layout, RemoveTornCreates::No)?;
        let publish = Arc::new(Mutex::new(PublishState {
            size: latest_checkpoint.size,
            note: String::from_utf8_lossy(&latest.note).into_owned(),
            history: scan.index,
            requested: latest_checkpoint.size,
            published_at: None,
            error: None,
        }));
        let sessions = crate::session::load(&layout, &meta)?;
        let policies = crate::governance::read_policy_versions(&layout.root)?;
        let holds = crate::governance::read_holds(&layout.holds())?;
        let reader = LogReader::new(Parts {
            layout,
            meta,
            verifier,
            kek: Arc::new(kek),
            sessions,
            index: index.reader(),
            view: View {
                segments,
                purged,
                policies,
                holds,
                ..View::default()
            },
            publish,
            pending: None,
        });
        if let Some(cut_at) = reader.survey_unbacked_tail(&mut pending)? {
            index.limit(cut_at);
        }
        if let Some(cut_at) = reader.survey_partial_blocks(&mut pending)? {
            index.limit(cut_at);
        }
        reader.survey_segment_tails(&mut pending)?;
        Ok(reader.with_pending(pending))
    }

    /// What `Log::cut_unbacked_tail` would cut: the view stops before the
    /// first torn record of the last append's reach. A record altered after
    /// it was written stays in view (`verify` reports it), as do entries the
    /// open would refuse to go on from. Returns where the view is to stop,
    /// if before the end.
    fn survey_unbacked_tail(&self, pending: &mut Vec<String>) -> LogResult<Option<u64>> {
        let Ok(Some((index, record, e))) = self.first_unreadable_in_reach() else {
            return Ok(None);
        };
        if !is_damaged_data(&e) {
            return Ok(None);
        }
        let (Ok(mark), Some(path)) = (
            self.tear_of(index, &record, &e),
            self.segment_path(record.segment_id),
        ) else {
            return Ok(None);
        };
        pending.push(format!(
            "entries {index} to {} would be cut from the index at the next open: the record of entry {index} in {} was torn by a crash ({mark}), so their append was never acknowledged; they are not verified",
            self.size() - 1,
            path.display()
        ));
        Ok(Some(index))
    }

    /// What the second step of `Log::cut_unbacked_tail` would cut: a block
    /// that holds entries at or after the end of the index (its append's
    /// index records were cut short by a crash, or are being written by a
    /// running writer) is left out of the view from its first entry on.
    /// Where the open would refuse instead (a signed checkpoint covers that
    /// entry), or the blocks do not read back, the view stays (`verify`
    /// reports it). Returns where the view is to stop, if before the end.
    fn survey_partial_blocks(&self, pending: &mut Vec<String>) -> LogResult<Option<u64>> {
        let total = self.size();
        let Ok(Some(cut)) = self.first_partial_block_in_reach(total) else {
            return Ok(None);
        };
        if cut < self.published_size() {
            return Ok(None);
        }
        pending.push(format!(
            "entries {cut} to {} would be cut from the index at the next open: a block of their append holds entries past the end of the index ({total}), so the append's index records were cut short (by a crash, or being written) and it was never acknowledged; they are not verified",
            total - 1
        ));
        Ok(Some(cut))
    }

    /// What the segment cut of a writing open would do with the bytes after
    /// each segment's committed length (the walk of `recover`, reading
    /// only). Sets the committed lengths `verify` walks to.
    fn survey_segment_tails(&self, pending: &mut Vec<String>) -> LogResult<()> {
        let total = self.size();
        let tails = self.tails()?;
        let mut lengths: BTreeMap<u32, u64> = BTreeMap::new();
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
        self.view_mut().committed = lengths.into_iter().collect();
        Ok(())
    }
}
