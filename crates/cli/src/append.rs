//! `stele append`: NDJSON on standard input to durable receipts.
//!
//! A reader thread splits standard input into chunks of lines; preparation
//! workers (one per core) parse, validate and canonicalize them, draw salts
//! and compute commitments; the writer (this thread) takes the prepared
//! chunks back in input order, appends them as one durable batch and only
//! then prints their receipts. A chunk ends at 256 lines or when no more
//! input is buffered, so interactive use gets receipts at once and bulk
//! input gets large group commits. Events are appended in order up to the
//! first refused line; that line and everything after it are not appended.
//!
//! The active policy routes every event as the server routes it (channel
//! `cli`): a stream the event names must be declared, and events that name
//! none go to `--stream` if given, else by the policy's routes to its
//! default stream. Each event's stream must also allow the local operator
//! to `append` (see [`crate::local`]); a denied line stops the input like a
//! refused one and is recorded as an `access.denied` system event.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use stele_log::{Log, PreparedEvent, Preparer, Receipt};
use stele_policy::{Action, Decision, Policy, Resource};

use crate::local::{Operator, local_principal, now};
use crate::{CliResult, DataArgs, Failure, open};

/// Lines per chunk handed to a preparation worker.
const CHUNK_LINES: usize = 256;
/// Most events in one group commit.
const MAX_BATCH: usize = 4096;
/// Chunks that may wait in each queue.
const QUEUE: usize = 4;

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
    /// the writer records the denial.
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

pub fn run(data: &DataArgs, stream: Option<&str>, claimed: Option<String>) -> CliResult<u8> {
    if let Some(stream) = stream {
        stele_event::check_client_stream_name(stream)
            .map_err(|e| Failure::usage(format!("--stream: {e}")))?;
    }
    let writer = local_principal();
    if let Some(claimed) = &claimed {
        let limit = stele_event::Limits::default().max_string_bytes;
        if claimed.trim().is_empty() || claimed.len() > limit {
            return Err(Failure::usage(format!(
                "--writer: the claimed writer must be a non-empty principal name of at most \
                 {limit} bytes"
            )));
        }
    }
    let claimed_writer = claimed.filter(|claimed| *claimed != writer);
    let clock = std::env::var_os("STELE_NOW").map(|_| now()).transpose()?;
    let at = now()?;
    let mut log = open(data)?;
    let operator = Operator::of(&log);
    let policy = log.active_policy();
    // Before any input is read, as the server does before reading a body:
    // the named stream must exist and accept the operator's events, or,
    // without one, some declared stream must.
    match stream {
        Some(stream) => {
            if policy.stream(stream).is_none() {
                return Err(Failure::refused(format!(
                    "--stream: stream {stream:?} is not declared in the policy"
                )));
            }
            operator.authorize(&mut log, Action::Append, Resource::Stream(stream), at)?;
        }
        None => {
            let somewhere = policy.streams().any(|(name, _)| {
                operator
                    .decide(&policy, Action::Append, Resource::Stream(name), at)
                    .allowed
            });
            if !somewhere {
                operator.authorize(
                    &mut log,
                    Action::Append,
                    Resource::Stream(policy.default_stream()),
                    at,
                )?;
            }
        }
    }
    let gate = Gate {
        routed: Preparer::new(&writer, "cli", policy.default_stream()).with_policy(policy.clone()),
        fixed: stream.map(|s| Preparer::new(&writer, "cli", s)),
        policy,
        operator: operator.clone(),
        clock,
        claimed_writer,
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);

    let mut chunk_txs = Vec::with_capacity(workers);
    let mut result_rxs = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers + 1);
    for _ in 0..workers {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(QUEUE);
        let (result_tx, result_rx) = mpsc::sync_channel::<Prepared>(QUEUE);
        let gate = gate.clone();
        threads.push(std::thread::spawn(move || {
            prepare_chunks(&gate, chunk_rx, result_tx)
        }));
        chunk_txs.push(chunk_tx);
        result_rxs.push(result_rx);
    }
    let limit = gate.routed.limits.max_event_bytes;
    threads.push(std::thread::spawn(move || read_chunks(limit, chunk_txs)));

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut line = String::with_capacity(256);
    let mut outcome: CliResult<u8> = Ok(0);
    // Chunk k was prepared by worker k % workers, and each worker answers
    // in order, so reading the workers round-robin restores input order.
    let mut next = 0usize;
    let mut finished = false;
    while !finished {
        let mut batch: Vec<PreparedEvent> = Vec::new();
        let mut stop = None;
        // Wait for one chunk, then take every further chunk already
        // prepared, up to the batch limit: one fsync for all of them. A
        // batch in flight is finished (its receipts printed) before waiting.
        let first = match result_rxs[next % workers].try_recv() {
            Ok(prepared) => Some(prepared),
            Err(TryRecvError::Empty) => {
                finish_in_flight(&mut log, &mut out, &mut line, 0)?;
                result_rxs[next % workers].recv().ok()
            }
            Err(TryRecvError::Disconnected) => None,
        };
        match first {
            Some(prepared) => {
                next += 1;
                batch.extend(prepared.events);
                stop = prepared.stop;
            }
            None => finished = true,
        }
        while stop.is_none() && !finished && batch.len() < MAX_BATCH - CHUNK_LINES {
            match result_rxs[next % workers].try_recv() {
                Ok(prepared) => {
                    next += 1;
                    batch.extend(prepared.events);
                    stop = prepared.stop;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => finished = true,
            }
        }
        // Sealed and written now, durable on the log's commit thread while
        // the next batch is prepared; receipts are printed only once a batch
        // is durable.
        if !batch.is_empty() {
            while !log.can_begin(&batch) {
                let keep = log.in_flight().saturating_sub(1);
                finish_in_flight(&mut log, &mut out, &mut line, keep)?;
            }
            if let Err(e) = log.begin_append(&batch) {
                let _ = finish_in_flight(&mut log, &mut out, &mut line, 0);
                return Err(e.into());
            }
        }
        if stop.is_some() || finished {
            finish_in_flight(&mut log, &mut out, &mut line, 0)?;
        }
        match stop {
            None => {}
            Some(Stop::Failed(failure)) => {
                outcome = Err(failure);
                break;
            }
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
                outcome = Err(Failure::refused(format!(
                    "line {line}: {}; nothing from this line on was appended",
                    failure.message
                )));
                break;
            }
        }
    }
    // Dropping the receivers stops the workers and the reader at their next
    // send; nothing they still hold is appended. They are not joined: after
    // a refused line the reader may be blocked on a terminal that never
    // sends more, and the process exits without it.
    drop(result_rxs);
    drop(threads);
    let note = log.publish()?;
    out.write_all(note.as_bytes())?;
    out.flush()?;
    outcome
}

/// Finishes batches in flight, oldest first, until at most `keep` remain,
/// printing each one's receipts once it is durable.
fn finish_in_flight(
    log: &mut Log,
    out: &mut impl Write,
    line: &mut String,
    keep: usize,
) -> CliResult<()> {
    while log.in_flight() > keep {
        let receipts = log.finish_append()?;
        for receipt in &receipts {
            write_receipt(line, receipt);
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}

fn write_receipt(line: &mut String, receipt: &Receipt) {
    use std::fmt::Write as _;
    line.clear();
    // Ids are UUIDs and stream names are [a-z0-9._-]: nothing to escape.
    let _ = write!(
        line,
        r#"{{"index":{},"id":"{}","stream":"{}","commitment":"{}","salt":"{}""#,
        receipt.index,
        receipt.id,
        receipt.stream,
        B64.encode(receipt.commitment),
        B64.encode(receipt.salt)
    );
    // A retried event (same writer and client `id`) gets its original
    // receipt, marked.
    if receipt.duplicate {
        line.push_str(r#","duplicate":true"#);
    }
    line.push_str("}\n");
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
