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
//! The index is derived data held in memory only: a crash loses nothing
//! of the log, and the next open builds it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use stele_index::{EventTerms, Part};

use crate::error::{LogError, LogResult};
use crate::ids::EntryIndex;
use crate::reader::LogReader;

/// Entries of one build step, indexed under one write lock.
const BUILD_STEP: u64 = 4096;

/// The index of one segment (one stream, one UTC day): parts over runs of
/// its entries, each run ascending.
#[derive(Debug)]
pub(crate) struct Epoch {
    pub stream: String,
    pub parts: Vec<Part>,
}

impl Epoch {
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
}

/// The entries of one durable batch, for the feed: (entry, segment, terms).
pub(crate) type FedBatch = Vec<(u64, u32, Arc<EventTerms>)>;

/// A log's search index; see the module docs.
#[derive(Debug, Default)]
pub struct SearchIndex {
    state: RwLock<State>,
    /// Set when the writer goes: the build stops.
    stopped: AtomicBool,
}

impl SearchIndex {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every part of segment `id` (its epoch was purged).
    pub(crate) fn forget(&self, id: u32) {
        self.write().epochs.remove(&id);
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
        let mut streams: HashMap<u32, Option<String>> = HashMap::new();
        for (_, segment, _) in batch {
            streams
                .entry(*segment)
                .or_insert_with(|| reader.stored_segment_stream(*segment));
        }
        let mut state = self.write();
        for (entry, segment, terms) in batch {
            let Some(Some(stream)) = streams.get(segment) else {
                // A segment retired since: its entries are purged.
                continue;
            };
            let epoch = state.epochs.entry(*segment).or_insert_with(|| Epoch {
                stream: stream.clone(),
                parts: Vec::new(),
            });
            if let Err(e) = epoch.insert(*entry, terms) {
                state.failed = Some(e.to_string());
                return;
            }
        }
        state.coverage.add(first.0, last.0 + 1);
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
    pub fn start(reader: &LogReader, size: u64) -> LogResult<Feed> {
        let index = Arc::new(SearchIndex::default());
        let (sender, receiver) = std::sync::mpsc::channel::<FedBatch>();
        let (feed_index, feed_reader) = (index.clone(), reader.clone());
        std::thread::Builder::new()
            .name("stele-index".into())
            .spawn(move || feed_thread(&feed_index, &feed_reader, &receiver))
            .map_err(|e| LogError::Internal(format!("starting the index thread: {e}")))?;
        let (build_index, build_reader) = (index.clone(), reader.clone());
        std::thread::Builder::new()
            .name("stele-index-build".into())
            .spawn(move || build(&build_index, &build_reader, size))
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

fn feed_thread(index: &SearchIndex, reader: &LogReader, receiver: &Receiver<FedBatch>) {
    while let Ok(batch) = receiver.recv() {
        index.insert_batch(reader, &batch);
    }
}

/// Indexes `[0, size)` from the log, a step at a time. A purged entry is
/// skipped (and covered: there is nothing of it to find); any other
/// failure to read stops the build, which leaves the rest to be read by
/// each search.
fn build(index: &SearchIndex, reader: &LogReader, size: u64) {
    let mut at = 0;
    while at < size && !index.stopped.load(Ordering::Relaxed) {
        let end = (at + BUILD_STEP).min(size);
        let mut batch: FedBatch = Vec::with_capacity((end - at) as usize);
        for entry in at..end {
            match reader.get_with_segment(EntryIndex(entry)) {
                Ok((segment, stored)) => {
                    batch.push((entry, segment, Arc::new(EventTerms::of(&stored.envelope))));
                }
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
    }
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
