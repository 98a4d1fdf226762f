//! `stele append`: NDJSON on standard input to durable receipts.
//!
//! `stele append` is a producer on the log's group-commit sequencer
//! ([`stele_log::sequencer`]), the same writer front the server uses. A
//! reader thread splits standard input into chunks of lines; preparation
//! workers (one per core) parse, validate and canonicalize them, draw salts
//! and compute commitments; this thread takes the prepared chunks back in
//! input order and queues each as one request on the sequencer, which
//! group-commits whatever is queued (one fdatasync per file for up to
//! 4096 events) and overlaps writing a batch with syncing the one before.
//! A printer thread waits for the requests' receipts in the order they
//! were queued and prints each request's receipts once they are durable.
//! A chunk ends at 256 lines or when no more input is buffered, so
//! interactive use gets receipts at once and bulk input gets large group
//! commits. Events are appended in order up to the first refused line;
//! that line and everything after it are not appended.
//!
//! The active policy routes every event as the server routes it (channel
//! `cli`): a stream the event names must be declared, and events that name
//! none go to `--stream` if given, else by the policy's routes to its
//! default stream. Each event's stream must also allow the local operator
//! to `append` (see [`crate::local`]); a denied line stops the input like a
//! refused one and is recorded as an `access.denied` system event.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use stele_log::sequencer::{Sequencer, SequencerConfig, SequencerHandle, SubmitError, lock_log};
use stele_log::{Log, LogResult, PreparedEvent, Preparer, Receipt};
use stele_policy::{Action, Decision, Policy, Resource};

use crate::local::{Operator, local_principal, now};
use crate::{CliResult, DataArgs, Failure, open};

/// Lines per chunk handed to a preparation worker; each prepared chunk is
/// one request to the sequencer.
const CHUNK_LINES: usize = 256;
/// Most events in one group commit.
const MAX_BATCH: usize = 4096;
/// Chunks that may wait in each worker's queue.
const QUEUE: usize = 4;
/// Requests that may wait for the sequencer: enough for the batches it
/// overlaps and the next one it gathers.
const SEQUENCER_QUEUE: usize = 4 * MAX_BATCH / CHUNK_LINES;

/// How often a wait for input checks whether an append has failed.
const FAILURE_POLL: Duration = Duration::from_millis(100);

/// Lines read from standard input, with the number of the first.
struct Chunk {
    first_line: u64,
    lines: Vec<Vec<u8>>,
    /// Input ended here with this failure (unreadable or oversize line).
    stop: Option<Failure>,
}

/// A prepared chunk: its events and, if a line was refused, why. A refused
/// line ends the input: nothing after it is appended.
struct Prepared {
    events: Vec<PreparedEvent>,
    stop: Option<Stop>,
}

/// Why the input stops.
enum Stop {
    /// A line was refused (or input failed).
    Failed(Failure),
    /// The policy does not let the operator append line `line` to `stream`;
    /// the denial is recorded once every earlier event is durable.
    Denied {
        line: u64,
        stream: String,
        decision: Decision,
    },
}

/// How the workers turn lines into events and decide whether the operator
/// may append them.
#[derive(Clone)]
struct Gate {
    /// Routes by the policy: events that name a stream, and all events when
    /// no `--stream` was given.
    routed: Preparer,
    /// `--stream`: events that name no stream go there.
    fixed: Option<Preparer>,
    policy: Arc<Policy>,
    operator: Operator,
    /// The clock (`STELE_NOW`), or `None` for the system clock.
    clock: Option<Timestamp>,
    /// `--writer` when it names someone other than the operator: recorded
    /// in each event's attributes as [`CLAIMED_WRITER`].
    claimed_writer: Option<String>,
}

/// The attribute that records the writer `--writer` claims. The envelope's
/// `writer` is always the operator who ran the command (`local:<user>`):
/// a name given on the command line is not authenticated.
pub const CLAIMED_WRITER: &str = "claimed_writer";

/// The answer to one request: its receipts once durable, or the error.
type Answer = Receiver<LogResult<Vec<Receipt>>>;

pub fn run(data: &DataArgs, stream: Option<&str>, claimed: Option<String>) -> CliResult<u8> {
    let writer = local_principal();
    let claimed_writer = check_arguments(stream, claimed, &writer)?;
    let clock = std::env::var_os("STELE_NOW").map(|_| now()).transpose()?;
    let at = now()?;
    let mut log = open(data)?;
    let operator = Operator::of(&log);
    let policy = log.reader().active_policy();
    authorize_before_input(&mut log, &operator, &policy, stream, at)?;
    let gate = Gate {
        routed: Preparer::new(&writer, "cli", policy.default_stream()).with_policy(policy.clone()),
        fixed: stream.map(|s| Preparer::new(&writer, "cli", s)),
        policy,
        operator: operator.clone(),
        clock,
        claimed_writer,
    };
    let prepared = start_preparation(gate);

    let shared = Arc::new(Mutex::new(log));
    // No one reads this log beside the sequencer: it need not pause to
    // let readers in, and keeps its batches overlapping. One checkpoint is
    // published, when the input ends (the sequencer's stop).
    let sequencer = Sequencer::start(
        shared.clone(),
        SequencerConfig {
            max_batch: MAX_BATCH,
            queue_depth: SEQUENCER_QUEUE,
            publish_every: Duration::MAX,
            max_hold: Duration::MAX,
        },
    );
    let failed = Arc::new(AtomicBool::new(false));
    let (answers, printer) = start_printer(failed.clone());
    let stop = submit_in_order(&sequencer.handle(), &prepared, &answers, &failed);
    // Dropping the receivers stops the workers and the reader at their next
    // send; nothing they still hold is appended. They are not joined: after
    // a refused line the reader may be blocked on a terminal that never
    // sends more, and the process exits without it.
    drop(prepared);
    drop(answers);
    // Finishes every queued request (each is answered) and publishes.
    let stopped = sequencer.stop();
    let printed = printer
        .join()
        .unwrap_or_else(|_| Err(Failure::usage("the receipt printer failed")));
    stopped?;
    printed?;
    let mut log = lock_log(&shared);
    let outcome = match stop {
        None => Ok(0),
        Some(Stop::Failed(failure)) => Err(failure),
        Some(Stop::Denied {
            line,
            stream,
            decision,
        }) => {
            let failure = operator.denied(
                &mut log,
                Action::Append,
                Resource::Stream(&stream),
                &decision,
                at,
            );
            Err(Failure::refused(format!(
                "line {line}: {}; nothing from this line on was appended",
                failure.message
            )))
        }
    };
    let note = log.writer().publish()?;
    let mut out = std::io::stdout().lock();
    out.write_all(note.as_bytes())?;
    out.flush()?;
    outcome
}

/// Checks `--stream` and `--writer` before anything is opened; returns the
/// claimed writer to record (none when it is the operator `writer`).
fn check_arguments(
    stream: Option<&str>,
    claimed: Option<String>,
    writer: &str,
) -> CliResult<Option<String>> {
    if let Some(stream) = stream {
        stele_event::check_client_stream_name(stream)
            .map_err(|e| Failure::usage(format!("--stream: {e}")))?;
    }
    if let Some(claimed) = &claimed {
        let limit = stele_event::Limits::default().max_string_bytes;
        if claimed.trim().is_empty() || claimed.len() > limit {
            return Err(Failure::usage(format!(
                "--writer: the claimed writer must be a non-empty principal name of at most \
                 {limit} bytes"
            )));
        }
    }
    Ok(claimed.filter(|claimed| claimed != writer))
}

/// Before any input is read, as the server does before reading a body:
/// the named stream must exist and accept the operator's events, or,
/// without one, some declared stream must. A denial is recorded.
fn authorize_before_input(
    log: &mut Log,
    operator: &Operator,
    policy: &Policy,
    stream: Option<&str>,
    at: Timestamp,
) -> CliResult<()> {
    match stream {
        Some(stream) => {
            if policy.stream(stream).is_none() {
                return Err(Failure::refused(format!(
                    "--stream: stream {stream:?} is not declared in the policy"
                )));
            }
            operator.authorize(log, Action::Append, Resource::Stream(stream), at)
        }
        None => {
            let checked = policy.check_some_append(std::iter::empty(), |name| {
                operator
                    .decide(policy, Action::Append, Resource::Stream(name), at)
                    .allowed
            });
            match checked {
                Ok(()) => Ok(()),
                Err(default_stream) => {
                    operator.authorize(log, Action::Append, Resource::Stream(default_stream), at)
                }
            }
        }
    }
}

/// Starts the reader and the preparation workers; returns each worker's
/// prepared chunks. Chunk k goes to worker k % workers, and each worker
/// answers in order, so reading the workers round-robin restores input
/// order.
fn start_preparation(gate: Gate) -> Vec<Receiver<Prepared>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let mut chunk_txs = Vec::with_capacity(workers);
    let mut result_rxs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(QUEUE);
        let (result_tx, result_rx) = mpsc::sync_channel::<Prepared>(QUEUE);
        let gate = gate.clone();
        std::thread::spawn(move || prepare_chunks(&gate, chunk_rx, result_tx));
        chunk_txs.push(chunk_tx);
        result_rxs.push(result_rx);
    }
    let limit = gate.routed.limits.max_event_bytes;
    std::thread::spawn(move || read_chunks(limit, chunk_txs));
    result_rxs
}

/// Queues the prepared chunks on the sequencer in input order, each as one
/// request, and hands each request's answer to the printer in the same
/// order. Stops at the first refused line (returned), at the end of the
/// input (`None`), or once an append has failed (`failed`: the printer
/// reports it).
fn submit_in_order(
    sequencer: &SequencerHandle,
    prepared: &[Receiver<Prepared>],
    answers: &SyncSender<Answer>,
    failed: &AtomicBool,
) -> Option<Stop> {
    let mut next = 0usize;
    loop {
        let chunk = next_chunk(prepared.get(next % prepared.len())?, failed)?;
        next += 1;
        if !chunk.events.is_empty() {
            let (reply, answer) = mpsc::sync_channel(1);
            let queued = sequencer.submit_blocking(
                chunk.events,
                Box::new(move |result| {
                    let _ = reply.send(result);
                }),
            );
            if let Err(e) = queued {
                return Some(Stop::Failed(submit_failure(e)));
            }
            if answers.send(answer).is_err() {
                return None;
            }
        }
        if chunk.stop.is_some() {
            return chunk.stop;
        }
    }
}

/// The next prepared chunk from `worker`, or `None` when the input ended
/// (a worker that hung up has prepared every chunk it was given) or an
/// append failed. While it waits for input (a terminal), a failed append
/// still ends the wait within [`FAILURE_POLL`].
fn next_chunk(worker: &Receiver<Prepared>, failed: &AtomicBool) -> Option<Prepared> {
    loop {
        if failed.load(Ordering::SeqCst) {
            return None;
        }
        match worker.recv_timeout(FAILURE_POLL) {
            Ok(chunk) => return Some(chunk),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn submit_failure(e: SubmitError) -> Failure {
    match e {
        SubmitError::Log(e) => e.into(),
        other => Failure::usage(other.to_string()),
    }
}

/// Starts the thread that prints receipts: it waits for each request's
/// answer in the order the requests were queued and prints its receipts,
/// one line each, once they are durable. The first failed append sets
/// `failed` (nothing more is queued) and is what the thread returns; the
/// receipts of every request that did succeed are printed all the same.
fn start_printer(
    failed: Arc<AtomicBool>,
) -> (SyncSender<Answer>, std::thread::JoinHandle<CliResult<()>>) {
    let (answers, queue) = mpsc::sync_channel::<Answer>(SEQUENCER_QUEUE);
    let printer = std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
        let mut lines = Vec::with_capacity(CHUNK_LINES * 200);
        let mut outcome = Ok(());
        for answer in queue {
            let receipts = match answer.recv() {
                Ok(Ok(receipts)) => receipts,
                Ok(Err(e)) => {
                    failed.store(true, Ordering::SeqCst);
                    if outcome.is_ok() {
                        outcome = Err(Failure::from(e));
                    }
                    continue;
                }
                Err(_) => {
                    failed.store(true, Ordering::SeqCst);
                    if outcome.is_ok() {
                        outcome = Err(submit_failure(SubmitError::Stopped));
                    }
                    continue;
                }
            };
            lines.clear();
            for receipt in &receipts {
                stele_log::receipt_json::write_receipt(receipt, &mut lines);
                lines.push(b'\n');
            }
            if let Err(e) = out.write_all(&lines).and_then(|()| out.flush()) {
                failed.store(true, Ordering::SeqCst);
                return Err(Failure::from(e));
            }
        }
        outcome
    });
    (answers, printer)
}

/// Records the writer `--writer` claims in the event's attributes (as
/// [`CLAIMED_WRITER`]). An event that already names another claimed
/// writer there is refused rather than silently changed.
fn claim_writer(event: &mut stele_event::ClientEvent, claimed: Option<&str>) -> Result<(), String> {
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let attributes = event.attributes.get_or_insert_with(Default::default);
    match attributes.get(CLAIMED_WRITER) {
        Some(serde_json::Value::String(own)) if own == claimed => Ok(()),
        Some(_) => Err(format!(
            "attributes.{CLAIMED_WRITER}: the event names another claimed writer than --writer"
        )),
        None => {
            attributes.insert(CLAIMED_WRITER.into(), claimed.into());
            Ok(())
        }
    }
}

fn prepare_chunks(gate: &Gate, chunks: Receiver<Chunk>, results: SyncSender<Prepared>) {
    let mut decisions: HashMap<String, Decision> = HashMap::new();
    for chunk in chunks {
        let mut events = Vec::with_capacity(chunk.lines.len());
        let mut stop = None;
        let now = gate.clock.unwrap_or_else(Timestamp::now);
        for (offset, raw) in chunk.lines.iter().enumerate() {
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let line_no = chunk.first_line + offset as u64;
            let prepared = stele_event::parse_client_event(raw, &gate.routed.limits)
                .map_err(|e| e.to_string())
                .and_then(|mut parsed| {
                    claim_writer(&mut parsed, gate.claimed_writer.as_deref())?;
                    let preparer = match (&parsed.stream, &gate.fixed) {
                        (None, Some(fixed)) => fixed,
                        _ => &gate.routed,
                    };
                    preparer
                        .prepare_parsed(parsed, raw, now)
                        .map_err(|e| e.to_string())
                });
            match prepared {
                Ok(event) => {
                    let decision = decisions.entry(event.stream.clone()).or_insert_with(|| {
                        gate.operator.decide(
                            &gate.policy,
                            Action::Append,
                            Resource::Stream(&event.stream),
                            now,
                        )
                    });
                    if !decision.allowed {
                        stop = Some(Stop::Denied {
                            line: line_no,
                            stream: event.stream.clone(),
                            decision: decision.clone(),
                        });
                        break;
                    }
                    events.push(event);
                }
                Err(e) => {
                    stop = Some(Stop::Failed(Failure::refused(format!(
                        "line {line_no}: {e}; nothing from this line on was appended"
                    ))));
                    break;
                }
            }
        }
        let stop = stop.or(chunk.stop.map(Stop::Failed));
        let last = stop.is_some();
        if results.send(Prepared { events, stop }).is_err() || last {
            return;
        }
    }
}

fn read_chunks(limit: usize, workers: Vec<SyncSender<Chunk>>) {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut line_no = 0u64;
    let mut sent = 0usize;
    let mut chunk = Chunk {
        first_line: 1,
        lines: Vec::with_capacity(CHUNK_LINES),
        stop: None,
    };
    loop {
        let mut raw = Vec::with_capacity(512);
        line_no += 1;
        // Read at most a little more than the limit, so an endless line
        // cannot take unbounded memory.
        let read = (&mut input)
            .take(limit as u64 + 3)
            .read_until(b'\n', &mut raw);
        let mut end = false;
        match read {
            Ok(0) => end = true,
            Ok(_) => {
                if raw.last() == Some(&b'\n') {
                    raw.pop();
                    if raw.last() == Some(&b'\r') {
                        raw.pop();
                    }
                }
                if raw.len() > limit {
                    chunk.stop = Some(Failure::refused(format!(
                        "line {line_no}: event is larger than the {limit}-byte limit; nothing from this line on was appended"
                    )));
                    end = true;
                } else {
                    chunk.lines.push(raw);
                }
            }
            Err(e) => {
                chunk.stop = Some(Failure::usage(format!("reading standard input: {e}")));
                end = true;
            }
        }
        if end || chunk.lines.len() >= CHUNK_LINES || input.buffer().is_empty() {
            let next_first = line_no + 1;
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    first_line: next_first,
                    lines: Vec::with_capacity(CHUNK_LINES),
                    stop: None,
                },
            );
            if !full.lines.is_empty() || full.stop.is_some() {
                if workers[sent % workers.len()].send(full).is_err() {
                    return;
                }
                sent += 1;
            }
        }
        if end {
            return;
        }
    }
}
