//! The commit thread: makes written batches durable, in order, while the
//! writer seals and writes the next batch.
//!
//! For each batch the writer hands over (see `Log::begin_append`), the
//! thread runs steps 2b and 3 of the life of an entry (`engine.rs`) at the
//! same time: a second thread fdatasyncs every segment the batch wrote to
//! while this one appends the batch's index records and fdatasyncs the
//! index. The batch is durable when both return. Jobs run strictly one
//! after the other, so the index grows in entry order, and only the last
//! batch's index records can point at segment records that are not durable
//! (which recovery detects and cuts).
//!
//! After a failure nothing more is done: every later job fails without
//! touching a file. A failed fdatasync is never retried, and no index record
//! of a later batch may take the place of the records of the failed one.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use stele_store::StoreResult;
use stele_store::index::IndexAppender;
use stele_store::segment::SegmentSync;

use crate::error::{LogError, LogResult};
use crate::shared::Histogram;

/// How long the commit threads' flushes take, for metrics: the disk's own
/// latency, apart from the time a batch waits for the one before it.
#[derive(Debug)]
pub struct FsyncMetrics {
    /// Seconds per segment `fdatasync`.
    pub segment: Histogram,
    /// Seconds per index append (a `pwrite` of the batch's records) and
    /// its `fdatasync`.
    pub index: Histogram,
}

const FSYNC_BOUNDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for FsyncMetrics {
    fn default() -> Self {
        FsyncMetrics {
            segment: Histogram::new(FSYNC_BOUNDS),
            index: Histogram::new(FSYNC_BOUNDS),
        }
    }
}

/// One written batch to make durable.
pub(crate) struct Job {
    /// Every segment the batch wrote to.
    pub segments: Vec<SegmentSync>,
    pub index: IndexAppender,
    /// The batch's encoded index records.
    pub records: Vec<u8>,
    /// Receives the outcome once the records are durable (or not).
    pub done: mpsc::SyncSender<LogResult<()>>,
}

/// The commit thread; stopped (after finishing every job handed over) when
/// dropped.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<FsyncMetrics>,
}

impl Committer {
    pub fn start() -> Committer {
        let (jobs, rx) = mpsc::channel();
        let metrics = Arc::new(FsyncMetrics::default());
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("stele-commit".into())
            .spawn(move || run(rx, &thread_metrics))
            .ok();
        Committer {
            jobs: Some(jobs),
            thread,
            metrics,
        }
    }

    /// The flush latencies of this committer's threads.
    pub fn metrics(&self) -> Arc<FsyncMetrics> {
        self.metrics.clone()
    }

    /// Hands `job` to the thread. Its `done` receives the outcome; if the
    /// thread is gone, `done`'s sender is dropped unanswered.
    pub fn submit(&self, mut job: Job) {
        match (&self.jobs, &self.thread) {
            (Some(jobs), Some(_)) => {
                let _ = jobs.send(job);
            }
            // The thread could not be started: commit on the caller's
            // thread, with the same steps.
            _ => {
                let result = commit(&mut job, &SegmentSyncer::inline(), &self.metrics);
                let _ = job.done.send(result);
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(rx: Receiver<Job>, metrics: &Arc<FsyncMetrics>) {
    let syncer = SegmentSyncer::start(metrics.clone());
    let mut failed: Option<String> = None;
    for mut job in rx {
        let result = match &failed {
            Some(why) => Err(LogError::Poisoned(format!(
                "an earlier commit failed: {why}"
            ))),
            None => commit(&mut job, &syncer, metrics),
        };
        if let Err(e) = &result
            && failed.is_none()
        {
            failed = Some(e.to_string());
        }
        let _ = job.done.send(result);
    }
}

/// Steps 2b and 3 for one batch, at the same time: the segment records are
/// fdatasynced on the syncer's thread while this thread appends and
/// fdatasyncs the index records. The batch is durable only when both
/// return. Crash before that: the index may hold records of this batch
/// whose segment records are not durable, or the reverse; the next open
/// keeps only entries whose index and segment records are both whole
/// (`Log::recover`), and cuts the rest, none of which was acknowledged.
fn commit(job: &mut Job, syncer: &SegmentSyncer, metrics: &FsyncMetrics) -> LogResult<()> {
    let segments = syncer.start_sync(std::mem::take(&mut job.segments), metrics);
    let started = Instant::now();
    let index = job.index.append_and_sync(&job.records);
    metrics.index.observe(started.elapsed().as_secs_f64());
    segments.wait()?;
    index?;
    Ok(())
}

/// A second thread that fdatasyncs segments while the commit thread
/// fdatasyncs the index, so a batch waits for one flush instead of two in
/// a row.
struct SegmentSyncer {
    /// `None` when the thread could not be started: syncs then run on the
    /// caller's thread.
    channel: Option<SyncChannel>,
}

/// Segments to the syncer's thread, outcomes back.
struct SyncChannel {
    requests: Sender<Vec<SegmentSync>>,
    outcomes: Receiver<StoreResult<()>>,
}

/// Segments being synced; [`Self::wait`] returns the outcome.
enum PendingSync<'a> {
    Thread(&'a Receiver<StoreResult<()>>),
    Done(StoreResult<()>),
}

impl SegmentSyncer {
    fn start(metrics: Arc<FsyncMetrics>) -> SegmentSyncer {
        let (requests, incoming) = mpsc::channel::<Vec<SegmentSync>>();
        let (answers, outcomes) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("stele-commit-seg".into())
            .spawn(move || {
                for segments in incoming {
                    let result = sync_all(&segments, &metrics);
                    let synced = result.is_ok();
                    if answers.send(result).is_err() {
                        break;
                    }
                    // After the answer, so the batch's acknowledgement
                    // does not wait for it.
                    if synced {
                        segments.iter().for_each(SegmentSync::release_cache);
                    }
                }
            })
            .is_ok();
        SegmentSyncer {
            channel: started.then_some(SyncChannel { requests, outcomes }),
        }
    }

    /// Syncs on the caller's thread.
    fn inline() -> SegmentSyncer {
        SegmentSyncer { channel: None }
    }

    /// Begins fdatasyncing every segment in `segments` (in order).
    fn start_sync(&self, segments: Vec<SegmentSync>, metrics: &FsyncMetrics) -> PendingSync<'_> {
        let segments = match &self.channel {
            Some(channel) => match channel.requests.send(segments) {
                Ok(()) => return PendingSync::Thread(&channel.outcomes),
                // The thread is gone: sync here instead.
                Err(mpsc::SendError(segments)) => segments,
            },
            None => segments,
        };
        PendingSync::Done(sync_all(&segments, metrics))
    }
}

/// fdatasyncs every segment in order, timing each; stops at the first
/// failure.
fn sync_all(segments: &[SegmentSync], metrics: &FsyncMetrics) -> StoreResult<()> {
    segments.iter().try_for_each(|segment| {
        let started = Instant::now();
        let result = segment.sync();
        metrics.segment.observe(started.elapsed().as_secs_f64());
        result
    })
}

impl PendingSync<'_> {
    fn wait(self) -> LogResult<()> {
        match self {
            PendingSync::Thread(outcomes) => match outcomes.recv() {
                Ok(result) => Ok(result?),
                Err(_) => Err(LogError::Poisoned("the segment sync thread stopped".into())),
            },
            PendingSync::Done(result) => Ok(result?),
        }
    }
}
