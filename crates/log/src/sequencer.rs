//! Group commit: many producers, one writer thread, one fsync per batch.
//!
//! Producers send prepared events with [`SequencerHandle::append`] and block
//! until their events are durable. The writer thread takes every request
//! waiting in the queue (up to [`SequencerConfig::max_batch`] events), seals
//! and writes them as one batch, and hands the batch's fdatasyncs to the
//! log's commit thread (one fdatasync per touched file). While that runs it
//! already seals and writes the next batch (at most
//! `MAX_IN_FLIGHT` (engine) batches in flight, and only a batch of
//! at least `MIN_OVERLAP_EVENTS`: a smaller one waits for the batches in
//! flight and gathers what arrives meanwhile); each request is
//! answered with its receipts once its batch is durable. It publishes a
//! checkpoint when [`SequencerConfig::publish_every`] has passed. The queue
//! is bounded, so a slow disk pushes back on producers instead of growing
//! memory.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Log;
use crate::engine::Receipt;
use crate::error::{LogError, LogResult};
use crate::prepare::PreparedEvent;
// Their home is `shared`; re-exported here, where callers have long found them.
pub use crate::shared::{Histogram, lock_log};

/// Live counters of the writer thread, for metrics.
#[derive(Debug)]
pub struct SequencerMetrics {
    /// Requests waiting in the queue.
    pub queue_depth: std::sync::atomic::AtomicI64,
    pub batches: std::sync::atomic::AtomicU64,
    pub events: std::sync::atomic::AtomicU64,
    /// Events per batch.
    pub batch_size: Histogram,
    /// Seconds to make a batch durable (segment and index fdatasync).
    pub commit_seconds: Histogram,
    pub errors: std::sync::atomic::AtomicU64,
}

impl Default for SequencerMetrics {
    fn default() -> Self {
        SequencerMetrics {
            queue_depth: Default::default(),
            batches: Default::default(),
            events: Default::default(),
            batch_size: Histogram::new(&[
                1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
            ]),
            commit_seconds: Histogram::new(&[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            errors: Default::default(),
        }
    }
}

/// Tuning of the writer thread.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Most events in one batch (one fsync).
    pub max_batch: usize,
    /// Requests that may wait in the queue before producers are refused.
    pub queue_depth: usize,
    /// How often a checkpoint is published while entries arrive.
    pub publish_every: Duration,
    /// Longest the writer keeps the log locked while batches follow each
    /// other without a pause; then it lets the batches in flight finish
    /// and releases the lock, so that reads and administration get their
    /// turn. A writer nobody else reads beside (`stele append`) sets it to
    /// `Duration::MAX` and keeps its batches overlapping.
    pub max_hold: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            max_batch: 4096,
            queue_depth: 1024,
            publish_every: Duration::from_millis(500),
            max_hold: MAX_HOLD,
        }
    }
}

/// Called once with the outcome of a request, on the writer thread: it
/// must only hand the result over (send on a channel), never block.
pub type Reply = Box<dyn FnOnce(LogResult<Vec<Receipt>>) + Send>;

struct Request {
    events: Vec<PreparedEvent>,
    reply: Reply,
}

/// A cloneable handle for producers.
#[derive(Debug, Clone)]
pub struct SequencerHandle {
    tx: SyncSender<Request>,
    metrics: Arc<SequencerMetrics>,
}

/// Why a request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the append queue is full; retry later")]
    Busy,
    #[error("the log writer has stopped")]
    Stopped,
    /// More events than one append can hold ([`crate::MAX_BATCH`]); the
    /// request was not queued, and the caller should split it.
    #[error("a request holds at most {max} events, got {events}")]
    TooLarge { events: usize, max: usize },
    #[error(transparent)]
    Log(#[from] LogError),
}

impl SequencerHandle {
    /// Queues `events` and returns at once; `reply` is called with the
    /// receipts once they are durable (or with the error). Fails fast with
    /// [`SubmitError::Busy`] when the queue is full, so a caller can answer
    /// 503 instead of waiting. This is the call for async callers: `reply`
    /// can complete a future.
    pub fn submit(&self, events: Vec<PreparedEvent>, reply: Reply) -> Result<(), SubmitError> {
        check_request_size(&events)?;
        match self.tx.try_send(Request { events, reply }) {
            Ok(()) => {
                self.metrics
                    .queue_depth
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Appends `events` and waits until they are durable. Fails fast with
    /// [`SubmitError::Busy`] when the queue is full.
    pub fn append(&self, events: Vec<PreparedEvent>) -> Result<Vec<Receipt>, SubmitError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit(
            events,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        )?;
        match rx.recv() {
            Ok(result) => Ok(result?),
            Err(_) => Err(SubmitError::Stopped),
        }
    }

    /// Like [`Self::submit`] but waits for room in the queue instead of
    /// failing with [`SubmitError::Busy`]. Requests are appended in the
    /// order they were queued, so a single producer that submits in input
    /// order gets its events appended in input order.
    pub fn submit_blocking(
        &self,
        events: Vec<PreparedEvent>,
        reply: Reply,
    ) -> Result<(), SubmitError> {
        check_request_size(&events)?;
        self.tx
            .send(Request { events, reply })
            .map_err(|_| SubmitError::Stopped)?;
        self.metrics
            .queue_depth
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Like [`Self::append`] but waits for room in the queue.
    pub fn append_blocking(&self, events: Vec<PreparedEvent>) -> Result<Vec<Receipt>, SubmitError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit_blocking(
            events,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        )?;
        match rx.recv() {
            Ok(result) => Ok(result?),
            Err(_) => Err(SubmitError::Stopped),
        }
    }
}

/// A request larger than one batch could never be begun: refuse it before
/// it is queued, instead of failing it (and its batch) on the writer.
fn check_request_size(events: &[PreparedEvent]) -> Result<(), SubmitError> {
    if events.len() > crate::engine::MAX_BATCH {
        return Err(SubmitError::TooLarge {
            events: events.len(),
            max: crate::engine::MAX_BATCH,
        });
    }
    Ok(())
}

/// The error each request of a batch that could not be begun is answered
/// with. Only a failure that poisoned the log is reported as `Poisoned`;
/// one that left the log writable (a refused batch) keeps its own kind.
fn begin_failure(log: &Log, error: &LogError) -> LogError {
    if log.health().is_err() {
        return LogError::Poisoned(error.to_string());
    }
    match error {
        LogError::Refused(message) => LogError::Refused(message.clone()),
        LogError::Internal(message) => LogError::Internal(message.clone()),
        other => LogError::Usage(other.to_string()),
    }
}

/// The writer thread and its statistics. The log is shared: readers lock
/// it between batches.
#[derive(Debug)]
pub struct Sequencer {
    handle: Option<SequencerHandle>,
    thread: JoinHandle<SequencerStats>,
    metrics: Arc<SequencerMetrics>,
    /// Set by `stop`: the thread finishes what is queued and exits even if
    /// some handle is still alive somewhere.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Counters kept by the writer thread.
#[derive(Debug, Clone, Default)]
pub struct SequencerStats {
    pub batches: u64,
    pub events: u64,
    pub publishes: u64,
}

impl Sequencer {
    /// Starts the writer thread for a shared log.
    pub fn start(log: Arc<Mutex<Log>>, config: SequencerConfig) -> Sequencer {
        let (tx, rx) = mpsc::sync_channel(config.queue_depth.max(1));
        let metrics = Arc::new(SequencerMetrics::default());
        let thread_metrics = metrics.clone();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stopping = stopping.clone();
        let thread =
            std::thread::spawn(move || run(log, rx, config, &thread_metrics, &thread_stopping));
        Sequencer {
            handle: Some(SequencerHandle {
                tx,
                metrics: metrics.clone(),
            }),
            thread,
            metrics,
            stopping,
        }
    }

    pub fn handle(&self) -> SequencerHandle {
        match &self.handle {
            Some(h) => h.clone(),
            None => {
                // Unreachable in practice: the handle is only taken by stop().
                let (tx, _) = mpsc::sync_channel(1);
                SequencerHandle {
                    tx,
                    metrics: self.metrics.clone(),
                }
            }
        }
    }

    /// Live counters of the writer thread.
    pub fn metrics(&self) -> Arc<SequencerMetrics> {
        self.metrics.clone()
    }

    /// Finishes the requests already queued, publishes a final checkpoint
    /// and stops. Requests sent afterwards fail with `Stopped`.
    pub fn stop(mut self) -> LogResult<SequencerStats> {
        self.handle = None;
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| LogError::Poisoned("the writer thread panicked".into()))
    }
}

/// The default [`SequencerConfig::max_hold`].
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// Fewest events a batch needs to be begun while others are in flight (see
/// [`crate::engine::MAX_IN_FLIGHT`]); a smaller one waits for them to
/// finish, gathering more requests meanwhile.
const MIN_OVERLAP_EVENTS: usize = 64;

/// Moves queued requests into `requests` while the batch has room (up to
/// `max_batch` events); one too big to join is left in `pending` to start
/// the next batch.
fn take_queued(
    rx: &Receiver<Request>,
    requests: &mut Vec<Request>,
    count: &mut usize,
    pending: &mut Option<Request>,
    max_batch: usize,
) {
    while *count < max_batch {
        match rx.try_recv() {
            Ok(request) if *count + request.events.len() > crate::engine::MAX_BATCH => {
                // Too big to join this batch: it starts the next one.
                *pending = Some(request);
                break;
            }
            Ok(request) => {
                *count += request.events.len();
                requests.push(request);
            }
            Err(_) => break,
        }
    }
}

/// A batch begun on the log, with the requests to answer when it finishes.
struct Flight {
    sizes: Vec<usize>,
    replies: Vec<Reply>,
    started: Instant,
}

fn run(
    shared: Arc<Mutex<Log>>,
    rx: Receiver<Request>,
    config: SequencerConfig,
    metrics: &SequencerMetrics,
    stopping: &std::sync::atomic::AtomicBool,
) -> SequencerStats {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    let mut stats = SequencerStats::default();
    let mut last_publish = Instant::now();
    let mut pending: Option<Request> = None;
    // Batches begun on the log, oldest first. While any is in flight the
    // writer keeps the log locked (`guard`): nobody else may see a log with
    // written but not yet durable batches.
    let mut flight: VecDeque<Flight> = VecDeque::new();
    let mut guard: Option<MutexGuard<'_, Log>> = None;
    let mut held_since = Instant::now();
    loop {
        // The next request, without waiting while batches are in flight.
        let next = match pending.take() {
            Some(request) => Some(request),
            None if !flight.is_empty() => rx.try_recv().ok(),
            // Once stopping, take only what is already queued.
            None if stopping.load(SeqCst) => match rx.try_recv() {
                Ok(request) => Some(request),
                Err(_) => break,
            },
            None => match rx.recv_timeout(config.publish_every.min(Duration::from_millis(100))) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => {
                    let mut log = lock_log(&shared);
                    if last_publish.elapsed() >= config.publish_every
                        && log.reader().size() > log.reader().published_size()
                        && log.writer().publish_soon().is_ok()
                    {
                        stats.publishes += 1;
                        last_publish = Instant::now();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let Some(first) = next else {
            // Nothing more queued: finish what is in flight, let go of the
            // log.
            if let Some(log) = guard.as_mut() {
                finish_all(log, &mut flight, metrics, &mut stats);
            }
            guard = None;
            continue;
        };
        let mut requests = vec![first];
        let mut count = requests[0].events.len();
        let max_batch = config.max_batch.min(crate::engine::MAX_BATCH);
        take_queued(&rx, &mut requests, &mut count, &mut pending, max_batch);
        // A small batch gains little from being written while another
        // syncs, and costs a flush of its own: it waits for the batches in
        // flight instead, and takes in what arrives meanwhile.
        if count < MIN_OVERLAP_EVENTS
            && pending.is_none()
            && let Some(log) = guard.as_mut()
            && !flight.is_empty()
        {
            finish_all(log, &mut flight, metrics, &mut stats);
            take_queued(&rx, &mut requests, &mut count, &mut pending, max_batch);
        }
        metrics
            .queue_depth
            .fetch_sub(requests.len() as i64, Relaxed);
        let mut all = Vec::with_capacity(count);
        let mut sizes = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            sizes.push(request.events.len());
            all.extend(request.events);
            replies.push(request.reply);
        }
        let log = guard.get_or_insert_with(|| {
            held_since = Instant::now();
            lock_log(&shared)
        });
        // Room for this batch: the oldest in flight finish first.
        while !log.writer().can_begin(&all) && !flight.is_empty() {
            finish_one(log, &mut flight, metrics, &mut stats);
        }
        let started = Instant::now();
        match log.writer().begin_append(&all) {
            Ok(()) => flight.push_back(Flight {
                sizes,
                replies,
                started,
            }),
            Err(e) => {
                metrics.errors.fetch_add(1, Relaxed);
                for reply in replies {
                    reply(Err(begin_failure(log, &e)));
                }
                finish_all(log, &mut flight, metrics, &mut stats);
            }
        }
        if held_since.elapsed() >= config.max_hold {
            finish_all(log, &mut flight, metrics, &mut stats);
        }
        // Publishing runs on the publisher thread; this only queues it.
        if last_publish.elapsed() >= config.publish_every && log.writer().publish_soon().is_ok() {
            stats.publishes += 1;
            last_publish = Instant::now();
        }
        if flight.is_empty() {
            guard = None;
        }
    }
    if let Some(log) = guard.as_mut() {
        finish_all(log, &mut flight, metrics, &mut stats);
    }
    drop(guard);
    if lock_log(&shared).writer().publish().is_ok() {
        stats.publishes += 1;
    }
    stats
}

/// Finishes every batch in flight, oldest first.
fn finish_all(
    log: &mut Log,
    flight: &mut VecDeque<Flight>,
    metrics: &SequencerMetrics,
    stats: &mut SequencerStats,
) {
    while !flight.is_empty() {
        finish_one(log, flight, metrics, stats);
    }
}

/// Waits for the oldest batch in flight to be durable and answers its
/// requests: each its own receipts, or the error.
fn finish_one(
    log: &mut Log,
    flight: &mut VecDeque<Flight>,
    metrics: &SequencerMetrics,
    stats: &mut SequencerStats,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(batch) = flight.pop_front() else {
        return;
    };
    let result = log.writer().finish_append();
    metrics
        .commit_seconds
        .observe(batch.started.elapsed().as_secs_f64());
    match result {
        Ok(receipts) => {
            metrics.batches.fetch_add(1, Relaxed);
            metrics.events.fetch_add(receipts.len() as u64, Relaxed);
            metrics.batch_size.observe(receipts.len() as f64);
            stats.batches += 1;
            stats.events += receipts.len() as u64;
            let mut receipts = receipts.into_iter();
            for (size, reply) in batch.sizes.into_iter().zip(batch.replies) {
                let mine: Vec<Receipt> = receipts.by_ref().take(size).collect();
                reply(Ok(mine));
            }
        }
        Err(e) => {
            metrics.errors.fetch_add(1, Relaxed);
            let message = e.to_string();
            for reply in batch.replies {
                reply(Err(LogError::Poisoned(message.clone())));
            }
        }
    }
}
