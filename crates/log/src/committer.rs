//! The commit thread: makes written batches durable, in order, while the
//! writer seals and writes the next batch.
//!
//! For each batch the writer hands over (see `Log::begin_append`), the
//! thread runs steps 2b and 3 of the life of an entry (`engine.rs`):
//! fdatasync every segment the batch wrote to, then append the batch's index
//! records and fdatasync the index. Jobs run strictly one after the other,
//! so the index grows in entry order and never refers to a segment record
//! that is not durable.
//!
//! After a failure nothing more is done: every later job fails without
//! touching a file. A failed fdatasync is never retried, and no index record
//! of a later batch may take the place of the records of the failed one.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use stele_store::index::IndexAppender;
use stele_store::segment::SegmentSync;

use crate::error::{LogError, LogResult};

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
}

impl Committer {
    pub fn start() -> Committer {
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("stele-commit".into())
            .spawn(move || run(rx))
            .ok();
        Committer {
            jobs: Some(jobs),
            thread,
        }
    }

    /// Hands `job` to the thread. Its `done` receives the outcome; if the
    /// thread is gone, `done`'s sender is dropped unanswered.
    pub fn submit(&self, job: Job) {
        match (&self.jobs, &self.thread) {
            (Some(jobs), Some(_)) => {
                let _ = jobs.send(job);
            }
            // The thread could not be started: commit on the caller's
            // thread, with the same steps.
            _ => {
                let result = commit(&job);
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

fn run(rx: Receiver<Job>) {
    let mut failed: Option<String> = None;
    for job in rx {
        let result = match &failed {
            Some(why) => Err(LogError::Poisoned(format!(
                "an earlier commit failed: {why}"
            ))),
            None => commit(&job),
        };
        if let Err(e) = &result
            && failed.is_none()
        {
            failed = Some(e.to_string());
        }
        let _ = job.done.send(result);
    }
}

/// Steps 2b and 3 for one batch.
fn commit(job: &Job) -> LogResult<()> {
    // Step 2b: segment records durable. Crash before this ends: no index
    // record points at them, so the next open cuts them.
    for segment in &job.segments {
        segment.sync()?;
    }
    // Step 3: index records durable; the entries now exist. Crash before
    // this ends: a torn tail of the batch is cut at the next open; whole
    // records kept are backed by the durable segment records above.
    job.index.append_and_sync(&job.records)?;
    Ok(())
}
