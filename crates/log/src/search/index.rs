//! The live search index of a writing open: one [`Part`] list per
//! segment, fed as batches become durable and built from the log at open.
//!
//! Two things fill it, each in ascending log order:
//! - the **feed**: the writer hands each batch's entries to the indexing
//!   thread once the batch is durable (`LogWriter::finish_append`): the
//!   sequencer never waits for it;
//! - the **build**: at open, a thread reads every entry that was in the log
//!   before the feed began, as `stele verify` would (decrypted, checked
//!   against its commitment, its envelope parsed).
//!
//! What each has indexed is recorded as ranges of entries
//! ([`Coverage`]); a search reads the entries no range covers from the
//! log itself, so an answer never depends on how far the index has got.
//!
//! The index is derived data. Once a segment's day is over, the index
//! thread writes its parts to a sealed file (`parts.rs`), and the next
//! open reads that file, checked entry by entry against the sequence
//! index, instead of the segment's events. A crash loses nothing of the
//! log; whatever the files lack, the open builds from the log again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use stele_event::time::Day;
use stele_index::{EventTerms, Part};

use crate::error::{LogError, LogResult};
use crate::reader::LogReader;
use crate::search::parts::{self, Loaded};

/// Entries of one build step, indexed under one write lock.
const BUILD_STEP: u64 = 4096;

/// How long after its day ends a segment counts as closed, so that its
/// part file is written: events prepared just before midnight may reach
/// the log just after the first of the next day.
const CLOSE_MARGIN: SignedDuration = SignedDuration::from_mins(10);

/// The index of one segment (one stream, one UTC day): parts over runs of
/// its entries, each run ascending.
#[derive(Debug)]
pub(crate) struct Epoch {
    pub stream: String,
    pub day: Day,
    pub parts: Vec<Part>,
    /// Entries the segment's part file holds (0: no file).
    saved: u64,
    /// Entries the parts held when their frequent words were gathered.
    sealed: u64,
}

impl Epoch {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    /// Adds `entry`: to the part whose last entry is the greatest one
    /// below it, or to a new part when every part's last entry is past it
    /// (the build reaching a segment the feed has begun).
    fn insert(&mut self, entry: u64, terms: &EventTerms) -> LogResult<()> {
        let part = self
            .parts
            .iter_mut()
            .filter(|p| p.last_entry().is_none_or(|last| last < entry))
            .max_by_key(|p| p.last_entry());
        let part = match part {
            Some(part) => part,
            None => {
                self.parts.push(Part::new());
                let last = self.parts.len() - 1;
                &mut self.parts[last]
            }
        };
        part.insert(entry, terms)
            .map_err(|e| LogError::Internal(format!("search index: {e}")))
    }
}

/// Ranges of entries the index holds, sorted and disjoint.
#[derive(Debug, Default, Clone)]
pub(crate) struct Coverage {
    ranges: Vec<(u64, u64)>,
}

impl Coverage {
    /// Records `[from, to)` as indexed.
    pub fn add(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        self.ranges.push((from, to));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(a, b) in &self.ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ranges = merged;
    }

    /// The indexed ranges, ascending and disjoint.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The ranges of `[0, size)` that are not indexed, ascending.
    pub fn gaps(&self, size: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = 0;
        for &(a, b) in &self.ranges {
            if a >= size {
                break;
            }
            if a > at {
                gaps.push((at, a));
            }
            at = at.max(b);
        }
        if at < size {
            gaps.push((at, size));
        }
        gaps
    }
}

/// The index's state: every epoch's parts, and what they cover.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub epochs: HashMap<u32, Epoch>,
    pub coverage: Coverage,
    /// Set when indexing failed: searches then read the log for
    /// everything not covered, and `/readyz`-style reports can say so.
    pub failed: Option<String>,
    /// The latest `received_at` indexed: segments of earlier days (less
    /// [`CLOSE_MARGIN`]) are closed.
    newest: Option<Timestamp>,
}

/// What became of the search part files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartsReport {
    /// Segments whose part file the open read and the log confirmed.
    pub loaded_segments: u64,
    /// Entries those files held (not read from the log at open).
    pub loaded_entries: u64,
    /// Files the open refused, each with why (each deleted, its segment
    /// indexed from the log).
    pub refused: Vec<String>,
    /// Part files written since the open, their bytes, and the entries
    /// they hold.
    pub written: u64,
    pub written_bytes: u64,
    pub written_entries: u64,
    /// The last failure to write one (the index goes on in memory).
    pub write_error: Option<String>,
    /// Closed segments whose frequent words were gathered since the open
    /// (`stele_index::Part::frequent_words`), and how many words.
    pub gathered: u64,
    pub frequent_words: u64,
}

/// The entries of one durable batch, for the feed: (entry, segment, terms).
pub(crate) type FedBatch = Vec<(u64, u32, Arc<EventTerms>)>;

/// A log's search index; see the module docs.
#[derive(Debug, Default)]
pub struct SearchIndex {
    state: RwLock<State>,
    /// Set when the writer goes: the build stops.
    stopped: AtomicBool,
    /// Whether part files are written, and stale ones removed.
    persist: bool,
    /// Held while a part file is written or removed, so that a purge
    /// ([`Self::forget`]) never races the write of its segment's file.
    files: Mutex<()>,
    report: Mutex<PartsReport>,
}

impl SearchIndex {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// An index that writes part files, not fed (`stele index rebuild`).
    pub(crate) fn persisting() -> SearchIndex {
        SearchIndex {
            persist: true,
            ..SearchIndex::default()
        }
    }

    fn lock_report(&self) -> std::sync::MutexGuard<'_, PartsReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every part of segment `id` (its epoch is being purged), and
    /// its part file: nothing of a purged epoch stays searchable.
    pub(crate) fn forget(&self, reader: &LogReader, id: u32) {
        let _files = self.lock_files();
        self.write().epochs.remove(&id);
        if let Err(e) = parts::remove(&reader.layout().search_part(id)) {
            self.lock_report().write_error = Some(e.to_string());
        }
    }

    /// What became of the part files since the open.
    pub fn parts_report(&self) -> PartsReport {
        self.lock_report().clone()
    }

    /// The segments the index holds parts of, ascending.
    pub fn segments(&self) -> Vec<crate::ids::SegmentId> {
        let mut ids: Vec<u32> = self.read().epochs.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(crate::ids::SegmentId).collect()
    }

    /// Why indexing stopped, if it did (searches then read what it lacks
    /// from the log).
    pub fn failure(&self) -> Option<String> {
        self.read().failed.clone()
    }

    /// About how many bytes of memory the index holds.
    pub fn heap_bytes(&self) -> usize {
        self.read()
            .epochs
            .values()
            .flat_map(|e| &e.parts)
            .map(Part::heap_bytes)
            .sum()
    }

    /// How many entries of `[0, size)` are not indexed yet.
    pub fn behind(&self, size: u64) -> u64 {
        self.read()
            .coverage
            .gaps(size)
            .iter()
            .map(|(a, b)| b - a)
            .sum()
    }

    /// Indexes the entries of `batch` (entries ascending), streams from
    /// `reader`'s view.
    fn insert_batch(&self, reader: &LogReader, batch: &[(u64, u32, Arc<EventTerms>)]) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let mut segments: HashMap<u32, Option<(String, Day)>> = HashMap::new();
        for (_, segment, _) in batch {
            segments
                .entry(*segment)
                .or_insert_with(|| reader.stored_segment(*segment));
        }
        let mut state = self.write();
        for (entry, segment, terms) in batch {
            let Some(Some((stream, day))) = segments.get(segment) else {
                // A segment retired since: its entries are purged.
                continue;
            };
            let epoch = state.epochs.entry(*segment).or_insert_with(|| Epoch {
                stream: stream.clone(),
                day: *day,
                parts: Vec::new(),
                saved: 0,
                sealed: 0,
            });
            if let Err(e) = epoch.insert(*entry, terms) {
                state.failed = Some(e.to_string());
                return;
            }
            if let Some(at) = terms.received() {
                state.newest = Some(state.newest.map_or(at, |n| n.max(at)));
            }
        }
        state.coverage.add(first.0, last.0 + 1);
    }

    /// The closed segments for which `pending` holds: a segment is closed
    /// once the index has seen an event received [`CLOSE_MARGIN`] into a
    /// later day.
    fn closed(&self, pending: impl Fn(&Epoch) -> bool) -> Vec<u32> {
        let state = self.read();
        let closed_before = state
            .newest
            .and_then(|at| at.checked_sub(CLOSE_MARGIN).ok())
            .and_then(|at| Day::of(at).ok());
        let Some(closed_before) = closed_before else {
            return Vec::new();
        };
        state
            .epochs
            .iter()
            .filter(|(_, e)| e.day < closed_before && pending(e))
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many closed segments wait for their part file to be written
    /// (when the index writes them) or their frequent words gathered.
    pub fn parts_due(&self) -> usize {
        self.closed(|e| (self.persist && e.len() != e.saved) || e.len() != e.sealed)
            .len()
    }

    /// Gathers the frequent words of the parts of every closed segment
    /// that has grown since its last gathering ([`Part::frequent_words`]):
    /// a part at a time under the read lock, so that searches (and the
    /// feed, whose write a search would otherwise queue behind) wait at
    /// most one part's gathering, then kept under the write lock unless
    /// the part grew in between (the next round gathers it again).
    fn gather_frequent_words(&self) {
        for id in self.closed(|e| e.len() != e.sealed) {
            let Some(count) = self.read().epochs.get(&id).map(|e| e.parts.len()) else {
                continue; // purged meanwhile
            };
            let (mut kept, mut words) = (true, 0);
            for i in 0..count {
                if self.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let gathered = self
                    .read()
                    .epochs
                    .get(&id)
                    .and_then(|epoch| epoch.parts.get(i).map(Part::frequent_words));
                let Some(gathered) = gathered else {
                    kept = false;
                    break;
                };
                words += gathered.len();
                let mut state = self.write();
                let part = state.epochs.get_mut(&id).and_then(|e| e.parts.get_mut(i));
                kept &= part.is_some_and(|part| part.keep_frequent_words(gathered));
            }
            let mut state = self.write();
            let Some(epoch) = state.epochs.get_mut(&id) else {
                continue;
            };
            if kept && epoch.parts.len() == count {
                epoch.sealed = epoch.len();
                drop(state);
                let mut report = self.lock_report();
                report.gathered += 1;
                report.frequent_words += words as u64;
            }
        }
    }

    /// The parts thread's round: frequent words gathered, then part files
    /// written.
    fn maintain_closed(&self, reader: &LogReader) {
        self.gather_frequent_words();
        self.persist_closed(reader);
    }

    /// Writes the part file of every closed segment that is [`Self::due`]
    /// (see `parts.rs`); stops at the first failure, which the report
    /// keeps.
    pub(crate) fn persist_closed(&self, reader: &LogReader) {
        if !self.persist {
            return;
        }
        for id in self.closed(|e| e.len() != e.saved) {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            let _files = self.lock_files();
            // Encoded under the read lock; sealed and written without it.
            let encoded = self
                .read()
                .epochs
                .get(&id)
                .map(|epoch| (parts::entries_of(&epoch.parts), parts::encode(&epoch.parts)));
            let Some((entries, plain)) = encoded else {
                continue; // purged meanwhile
            };
            let written = parts::header_for(reader, id, &entries).and_then(|header| {
                let bytes = parts::write(reader, id, &header, &plain)?;
                Ok((header, bytes))
            });
            match written {
                Ok((header, bytes)) => {
                    if let Some(epoch) = self.write().epochs.get_mut(&id) {
                        epoch.saved = header.entries;
                    }
                    let mut report = self.lock_report();
                    report.written += 1;
                    report.written_bytes += bytes;
                    report.written_entries += header.entries;
                }
                Err(e) => {
                    self.lock_report().write_error =
                        Some(format!("writing the search part of segment {id}: {e}"));
                    return;
                }
            }
        }
    }
}

/// The writer's handle on the index: it sends each durable batch to the
/// indexing thread, and stops the build when dropped.
#[derive(Debug)]
pub(crate) struct Feed {
    index: Arc<SearchIndex>,
    sender: Option<Sender<FedBatch>>,
}

impl Feed {
    /// Starts the indexing thread over `reader`'s log and a build of
    /// `[0, size)` (the entries before the feed begins).
    /// With `persist`, part files are written and stale ones removed.
    pub fn start(reader: &LogReader, size: u64, persist: bool) -> LogResult<Feed> {
        let index = Arc::new(SearchIndex {
            persist,
            ..SearchIndex::default()
        });
        // Part files are written on a thread of their own, woken after
        // each batch and at the end of the build, so that writing one never
        // holds up the feed.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let (parts_index, parts_reader) = (index.clone(), reader.clone());
        std::thread::Builder::new()
            .name("stele-index-parts".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    parts_index.maintain_closed(&parts_reader);
                }
            })
            .map_err(|e| LogError::Internal(format!("starting the index parts thread: {e}")))?;
        let (sender, receiver) = std::sync::mpsc::channel::<FedBatch>();
        let (feed_index, feed_reader, feed_wake) = (index.clone(), reader.clone(), wake.clone());
        std::thread::Builder::new()
            .name("stele-index".into())
            .spawn(move || feed_thread(&feed_index, &feed_reader, &receiver, &feed_wake))
            .map_err(|e| LogError::Internal(format!("starting the index thread: {e}")))?;
        let (build_index, build_reader) = (index.clone(), reader.clone());
        std::thread::Builder::new()
            .name("stele-index-build".into())
            .spawn(move || {
                build(&build_index, &build_reader, size, &mut |_| {});
                let _ = wake.try_send(());
            })
            .map_err(|e| LogError::Internal(format!("starting the index build: {e}")))?;
        Ok(Feed {
            index,
            sender: Some(sender),
        })
    }

    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    /// Hands a durable batch to the indexing thread (never waits).
    pub fn send(&self, batch: FedBatch) {
        if batch.is_empty() {
            return;
        }
        if let Some(sender) = &self.sender
            && sender.send(batch).is_err()
        {
            self.index.write().failed = Some("the index thread stopped".into());
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.index.stopped.store(true, Ordering::Relaxed);
        self.sender = None;
    }
}

fn feed_thread(
    index: &SearchIndex,
    reader: &LogReader,
    receiver: &Receiver<FedBatch>,
    wake: &SyncSender<()>,
) {
    while let Ok(batch) = receiver.recv() {
        index.insert_batch(reader, &batch);
        // Full: the parts thread is awake already and looks again.
        let _ = wake.try_send(());
    }
}

/// Indexes `[0, size)`: the segments whose part files the log confirms
/// from those files, everything else from the log, a step at a time. A
/// purged entry is skipped (and covered: there is nothing of it to
/// find); any other failure to read stops the build, which leaves the
/// rest to be read by each search.
/// `progress` is told how many entries are done after each step.
pub(crate) fn build(
    index: &SearchIndex,
    reader: &LogReader,
    size: u64,
    progress: &mut dyn FnMut(u64),
) {
    let loaded = match load_parts(index, reader, size) {
        Ok(loaded) => loaded,
        Err(e) => {
            index.write().failed = Some(format!("reading the search parts: {e}"));
            return;
        }
    };
    let mut at = 0;
    while at < size && !index.stopped.load(Ordering::Relaxed) {
        let end = (at + BUILD_STEP).min(size);
        let records = match reader.index().read_range(at, end - at) {
            Ok(records) => records,
            Err(e) => {
                index.write().failed = Some(format!("building from entry {at}: {e}"));
                return;
            }
        };
        let mut batch: FedBatch = Vec::with_capacity(records.len());
        for (entry, record) in (at..end).zip(&records) {
            if loaded
                .get(&record.segment_id)
                .is_some_and(|&last| entry <= last)
            {
                continue; // in a part file the log confirmed
            }
            match reader.read_record(entry, record) {
                Ok(stored) => batch.push((
                    entry,
                    record.segment_id,
                    Arc::new(EventTerms::of(&stored.envelope)),
                )),
                Err(LogError::Purged { .. }) => {}
                Err(e) => {
                    index.write().failed = Some(format!("building from entry {entry}: {e}"));
                    return;
                }
            }
        }
        index.insert_batch(reader, &batch);
        index.write().coverage.add(at, end);
        at = end;
        progress(at);
    }
}

/// Reads the part files, checks each against the sequence index over
/// `[0, size)`, and puts those the log confirms in the index; returns
/// their segments with the last entry each file holds. A file that does
/// not open, or whose entries are not exactly the first entries of its
/// segment with the commitments it names, is refused (and, when the
/// index writes files, deleted).
fn load_parts(index: &SearchIndex, reader: &LogReader, size: u64) -> LogResult<HashMap<u32, u64>> {
    let parts::Listing {
        parts: files,
        others,
    } = parts::list(reader.layout())?;
    if index.persist {
        for path in &others {
            parts::remove(path)?;
        }
    }
    let refuse = |path: &std::path::Path, why: String| -> LogResult<()> {
        index
            .lock_report()
            .refused
            .push(format!("{}: {why}", path.display()));
        if index.persist {
            parts::remove(path)?;
        }
        Ok(())
    };
    let mut loaded: HashMap<u32, Loaded> = HashMap::new();
    for (id, path) in files {
        if reader.stored_segment(id).is_none() {
            // Its segment is purged (or was never there): nothing to keep.
            if index.persist {
                parts::remove(&path)?;
            }
            continue;
        }
        match parts::read(reader, id, &path) {
            Ok(file) => {
                loaded.insert(id, file);
            }
            Err(why) => refuse(&path, why)?,
        }
    }
    if loaded.is_empty() {
        return Ok(HashMap::new());
    }
    let disagree = check_against_index(index, reader, &loaded, size)?;
    let mut confirmed = HashMap::new();
    for (id, file) in loaded {
        if let Some(why) = disagree.get(&id) {
            refuse(&file.path, why.clone())?;
            continue;
        }
        let Some((stream, day)) = reader.stored_segment(id) else {
            continue;
        };
        let len = file.entries.len() as u64;
        let mut report = index.lock_report();
        report.loaded_segments += 1;
        report.loaded_entries += len;
        drop(report);
        index.write().epochs.insert(
            id,
            Epoch {
                stream,
                day,
                parts: file.parts,
                saved: len,
                sealed: 0,
            },
        );
        confirmed.insert(id, file.header.last);
    }
    Ok(confirmed)
}

/// The files whose entries are not exactly the first entries the
/// sequence index gives their segment in `[0, size)`, with the
/// commitments their header names; with why.
pub(crate) fn check_against_index(
    index: &SearchIndex,
    reader: &LogReader,
    loaded: &HashMap<u32, Loaded>,
    size: u64,
) -> LogResult<HashMap<u32, String>> {
    let mut next: HashMap<u32, (usize, Sha256)> =
        loaded.keys().map(|&id| (id, (0, Sha256::new()))).collect();
    let mut disagree = HashMap::new();
    let mut at = 0;
    while at < size {
        if index.stopped.load(Ordering::Relaxed) {
            return Ok(loaded
                .keys()
                .map(|&id| (id, "not checked".into()))
                .collect());
        }
        let end = (at + 16 * BUILD_STEP).min(size);
        let records = reader.index().read_range(at, end - at)?;
        for (entry, record) in (at..end).zip(&records) {
            let id = record.segment_id;
            let (Some(file), Some((cursor, digest))) = (loaded.get(&id), next.get_mut(&id)) else {
                continue;
            };
            if file.entries.get(*cursor) == Some(&entry) {
                *cursor += 1;
                digest.update(record.commitment);
            } else if entry <= file.header.last {
                disagree.entry(id).or_insert_with(|| {
                    format!("the log holds entry {entry} of its segment, which it lacks")
                });
            }
        }
        at = end;
    }
    for (id, (cursor, digest)) in next {
        let file = &loaded[&id];
        if cursor != file.entries.len() {
            disagree.entry(id).or_insert_with(|| {
                format!(
                    "holds entry {}, which the log does not give its segment",
                    file.entries[cursor]
                )
            });
        } else if <[u8; 32]>::from(digest.finalize()) != file.header.commitments {
            disagree
                .entry(id)
                .or_insert_with(|| "its entries' commitments are not those of the log".into());
        }
    }
    Ok(disagree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_merges_ranges_and_names_the_gaps() {
        let mut c = Coverage::default();
        assert_eq!(c.gaps(10), vec![(0, 10)]);
        c.add(3, 5);
        c.add(8, 12);
        assert_eq!(c.gaps(10), vec![(0, 3), (5, 8)]);
        c.add(5, 8);
        c.add(0, 3);
        assert_eq!(c.gaps(10), Vec::<(u64, u64)>::new());
        assert_eq!(c.gaps(14), vec![(12, 14)]);
        c.add(20, 20);
        assert_eq!(c.ranges, vec![(0, 12)]);
    }
}
