//! `stele append`: NDJSON on standard input to durable receipts.
//!
//! Two threads: a reader that splits lines and prepares events (parse,
//! validate, canonical envelope, salt, commitment), and the writer (this
//! thread) that appends each batch durably and only then prints its
//! receipts. A batch ends at 1024 events or when no more input is buffered,
//! so interactive use gets receipts at once and bulk input gets large
//! group commits. Events are appended in order up to the first refused
//! line; that line and everything after it are not appended.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::sync::mpsc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use stele_log::{PreparedEvent, Preparer, Receipt};

use crate::{CliResult, DataArgs, Failure, open};

/// Most events in one group commit.
const MAX_BATCH: usize = 1024;

enum Batch {
    Events(Vec<PreparedEvent>),
    /// Events before the refused line, and why the line was refused.
    Stop(Vec<PreparedEvent>, Failure),
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
    let (tx, rx) = mpsc::sync_channel::<Batch>(8);
    let reader = std::thread::spawn(move || read_events(&preparer, tx));

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut line = String::with_capacity(256);
    let mut outcome: CliResult<u8> = Ok(0);
    for batch in rx {
        let (events, stop) = match batch {
            Batch::Events(events) => (events, None),
            Batch::Stop(events, failure) => (events, Some(failure)),
        };
        let receipts = log.append_batch(&events)?;
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
    // Dropping the receiver stops the reader at its next send.
    let _ = reader.join();
    let note = log.publish()?;
    out.write_all(note.as_bytes())?;
    out.flush()?;
    outcome
}

fn write_receipt(line: &mut String, receipt: &Receipt) {
    use std::fmt::Write as _;
    line.clear();
    // Ids are UUIDs and stream names are [a-z0-9._-]: nothing to escape.
    let _ = writeln!(
        line,
        r#"{{"index":{},"id":"{}","stream":"{}","commitment":"{}","salt":"{}"}}"#,
        receipt.index,
        receipt.id,
        receipt.stream,
        B64.encode(receipt.commitment),
        B64.encode(receipt.salt)
    );
}

fn read_events(preparer: &Preparer, tx: mpsc::SyncSender<Batch>) {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let limit = preparer.limits.max_event_bytes;
    let mut raw = Vec::with_capacity(1024);
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut line_no = 0u64;
    loop {
        raw.clear();
        line_no += 1;
        // Read at most one byte more than the limit (plus CR LF), so an
        // endless line cannot take unbounded memory.
        let read = (&mut input)
            .take(limit as u64 + 3)
            .read_until(b'\n', &mut raw);
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Batch::Stop(
                    events,
                    Failure::usage(format!("reading standard input: {e}")),
                ));
                return;
            }
        }
        let ended = raw.last() == Some(&b'\n');
        if ended {
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
        }
        if raw.len() > limit {
            let failure = Failure::refused(format!(
                "line {line_no}: event is larger than the {limit}-byte limit; nothing from this line on was appended"
            ));
            let _ = tx.send(Batch::Stop(events, failure));
            return;
        }
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match preparer.prepare(&raw, jiff::Timestamp::now()) {
            Ok(event) => events.push(event),
            Err(e) => {
                let failure = Failure::refused(format!(
                    "line {line_no}: {e}; nothing from this line on was appended"
                ));
                let _ = tx.send(Batch::Stop(events, failure));
                return;
            }
        }
        if events.len() >= MAX_BATCH || input.buffer().is_empty() {
            let batch = std::mem::replace(&mut events, Vec::with_capacity(MAX_BATCH));
            if tx.send(Batch::Events(batch)).is_err() {
                return;
            }
        }
    }
    if !events.is_empty() {
        let _ = tx.send(Batch::Events(events));
    }
}
