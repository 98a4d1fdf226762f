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

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use stele_log::{PreparedEvent, Preparer, Receipt};

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
    stop: Option<Failure>,
}

pub fn run(data: &DataArgs, stream: &str, writer: Option<String>) -> CliResult<u8> {
    stele_event::check_client_stream_name(stream)
        .map_err(|e| Failure::usage(format!("--stream: {e}")))?;
    let writer = writer.unwrap_or_else(|| {
        format!(
            "local:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )
    });
    let mut log = open(data)?;
    let preparer = Preparer::new(&writer, "cli", stream);
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
        let preparer = preparer.clone();
        threads.push(std::thread::spawn(move || {
            prepare_chunks(&preparer, chunk_rx, result_tx)
        }));
        chunk_txs.push(chunk_tx);
        result_rxs.push(result_rx);
    }
    let limit = preparer.limits.max_event_bytes;
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
        // prepared, up to the batch limit: one fsync for all of them.
        match result_rxs[next % workers].recv() {
            Ok(prepared) => {
                next += 1;
                batch.extend(prepared.events);
                stop = prepared.stop;
            }
            Err(_) => finished = true,
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
        let receipts = log.append_batch(&batch)?;
        // The receipts are printed only now that the batch is durable.
        for receipt in &receipts {
            write_receipt(&mut line, receipt);
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        if let Some(failure) = stop {
            outcome = Err(failure);
            break;
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

fn prepare_chunks(preparer: &Preparer, chunks: Receiver<Chunk>, results: SyncSender<Prepared>) {
    for chunk in chunks {
        let mut events = Vec::with_capacity(chunk.lines.len());
        let mut stop = None;
        let now = jiff::Timestamp::now();
        for (offset, raw) in chunk.lines.iter().enumerate() {
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match preparer.prepare(raw, now) {
                Ok(event) => events.push(event),
                Err(e) => {
                    let line_no = chunk.first_line + offset as u64;
                    stop = Some(Failure::refused(format!(
                        "line {line_no}: {e}; nothing from this line on was appended"
                    )));
                    break;
                }
            }
        }
        let stop = stop.or(chunk.stop);
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
