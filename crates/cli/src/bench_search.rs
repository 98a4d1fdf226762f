//! `stele bench --search`: how fast the log answers searches once the
//! events are in, through `stele_log::search` (what `GET /v1/search`
//! runs, without HTTP and without recording each search), and how long
//! the index takes to build from the log at open.
//!
//! The queries come from the events appended: actors, resources and words
//! that are in the log, each asked for several different values, so a
//! figure is not one query repeated against a warm cache.

use std::time::{Duration, Instant};

use stele_log::search::{Aggregates, Bucket, Order, Search, search};
use stele_log::{EntryIndex, LogReader};
use stele_query::{Field, Query};

use crate::CliResult;
use crate::bench::{ms, percentile};

/// Different values asked for per shape of query.
const VALUES: u64 = 40;
/// Events a page asks for.
const PAGE: usize = 50;

/// Waits until the index covers the log; returns how long that took.
pub fn wait_indexed(reader: &LogReader) -> Duration {
    let started = Instant::now();
    if let Some(index) = reader.search_index() {
        while index.behind(reader.size()) > 0 && index.failure().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    started.elapsed()
}

/// Waits (at most ten minutes) until no closed segment waits for its part
/// file or its frequent words; returns how long that took.
fn wait_maintained(index: &stele_log::search::SearchIndex) -> Duration {
    let started = Instant::now();
    while index.parts_due() > 0 && started.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// The queries of one shape, built from entries spread over the log.
fn queries(reader: &LogReader, size: u64, shape: &str) -> CliResult<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..VALUES {
        let index = (i * 7919 + 13) * size / (VALUES * 7919 + 13);
        let envelope = reader.get(EntryIndex(index.min(size - 1)))?.envelope;
        let event = &envelope.event;
        let quoted =
            |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        let text = match shape {
            "actor" => format!("actor:{}", quoted(&event.actor)),
            "resource prefix" => {
                let resource = event.resource.clone().unwrap_or_default();
                let cut: String = resource
                    .chars()
                    .take(resource.len().saturating_sub(2))
                    .collect();
                format!("resource:{}*", quoted(&cut))
            }
            "actor + time" => {
                let received: jiff::Timestamp = envelope.received_at.parse().unwrap_or_default();
                format!(
                    "actor:{} received>={} received<{}",
                    quoted(&event.actor),
                    received - jiff::SignedDuration::from_hours(12),
                    received + jiff::SignedDuration::from_hours(12)
                )
            }
            _ => {
                // The last word of the actor: a name.
                let words = stele_query::tokens(&event.actor);
                words.get(1).cloned().unwrap_or_else(|| words.join(" "))
            }
        };
        out.push(text);
    }
    Ok(out)
}

/// Times every query of `texts`; returns the sorted times and the mean
/// number of events returned.
fn time_all(
    reader: &LogReader,
    texts: &[String],
    size: u64,
    aggregates: &Aggregates,
    limit: usize,
) -> CliResult<(Vec<Duration>, f64, f64)> {
    let now = jiff::Timestamp::now();
    let mut times = Vec::with_capacity(texts.len());
    let (mut returned, mut counted) = (0u64, 0u64);
    for text in texts {
        let query = Query::parse(text, now).map_err(|e| crate::Failure::usage(e.to_string()))?;
        let started = Instant::now();
        let page = search(
            reader,
            &Search {
                query: &query,
                order: Order::Newest,
                limit,
                size,
                after: None,
                aggregates,
                max_unindexed: Some(0),
            },
            &|_| true,
        )?;
        times.push(started.elapsed());
        returned += page.events.len() as u64;
        counted += page.count;
    }
    times.sort_unstable();
    let n = texts.len().max(1) as f64;
    Ok((times, returned as f64 / n, counted as f64 / n))
}

/// Prints how long the fed index took to cover the log once the last
/// append was acknowledged.
pub fn print_caught_up(reader: &LogReader) -> CliResult<()> {
    let caught_up = wait_indexed(reader);
    outln!(
        "index     fed as batches became durable: caught up {:.1} ms after the last acknowledgement",
        ms(caught_up)
    )
}

/// Opens the log at `data` again, times the index's build from the log
/// and the writing of its part files, opens it once more from those
/// files, then prints search latencies by shape and a count with a daily
/// histogram.
pub fn print(data: &std::path::Path, blocks: stele_log::BlockConfig) -> CliResult<()> {
    // (`data` is the log's directory; the export is written beside it.)
    let open = || {
        stele_log::Log::open(
            data,
            stele_log::OpenOptions {
                blocks,
                search_parts: true,
                ..Default::default()
            },
        )
    };
    // No part file yet: the whole index is built from the log.
    let started = Instant::now();
    let log = open()?;
    let reader = log.reader().clone();
    let opened = started.elapsed();
    let built = wait_indexed(&reader);
    let size = reader.size();
    let memory = reader.search_index().map_or(0, |i| i.heap_bytes());
    outln!(
        "index     built from the log at open: {:.2} s for {size} entries ({:.0} entries/s; the open itself {:.2} s); it holds about {:.0} MB of memory ({:.0} B per entry)",
        built.as_secs_f64(),
        size as f64 / built.as_secs_f64().max(1e-9),
        opened.as_secs_f64(),
        memory as f64 / 1e6,
        memory as f64 / size.max(1) as f64
    )?;
    print_parts(&reader, data, built)?;
    drop(reader);
    drop(log);
    // Opened again: the closed segments from their part files.
    let started = Instant::now();
    let log = open()?;
    let reader = log.reader().clone();
    let loaded = wait_indexed(&reader);
    let report = reader
        .search_index()
        .map(|i| i.parts_report())
        .unwrap_or_default();
    outln!(
        "index     at the next open: covered in {:.2} s ({} entries from {} part files, {} read from the log; {} files refused)",
        loaded.max(started.elapsed()).as_secs_f64(),
        report.loaded_entries,
        report.loaded_segments,
        size - report.loaded_entries,
        report.refused.len()
    )?;
    print_searches(&reader, data)
}

/// `stele bench search`: opens a directory kept by `stele bench --search
/// --keep` (its part files written) and times its searches again, so that
/// two builds are compared on the same events.
pub fn rerun(data: &std::path::Path) -> CliResult<()> {
    // Its searches are not recorded as a server's are: only a benchmark's
    // own log is opened, and looked at read-only first.
    let origin = LogReader::open(data, stele_log::OpenOptions::default())?
        .meta()
        .origin
        .clone();
    if origin != crate::bench::ORIGIN {
        return Err(crate::Failure::usage(format!(
            "{} holds the log {origin}, not one stele bench made ({}): stele bench search opens only a directory that stele bench --keep left",
            data.display(),
            crate::bench::ORIGIN
        )));
    }
    let log = stele_log::Log::open(
        data,
        stele_log::OpenOptions {
            search_parts: true,
            ..Default::default()
        },
    )?;
    let reader = log.reader().clone();
    let started = Instant::now();
    wait_indexed(&reader);
    outln!(
        "index     covered in {:.2} s after the open",
        started.elapsed().as_secs_f64()
    )?;
    print_searches(&reader, data)
}

/// Waits until the closed segments' frequent words are gathered, then
/// prints search latencies by shape, an export's, and a count with a
/// daily histogram.
fn print_searches(reader: &LogReader, data: &std::path::Path) -> CliResult<()> {
    if let Some(index) = reader.search_index() {
        let waited = wait_maintained(&index);
        let report = index.parts_report();
        let memory = index.heap_bytes();
        outln!(
            "index     frequent words of {} closed segments gathered {:.2} s later ({} words); the index holds about {:.0} MB of memory ({:.0} B per entry)",
            report.gathered,
            waited.as_secs_f64(),
            report.frequent_words,
            memory as f64 / 1e6,
            memory as f64 / reader.size().max(1) as f64
        )?;
    }
    let size = reader.published_size();
    if size == 0 {
        return Ok(());
    }
    let none = Aggregates::default();
    for shape in ["actor", "resource prefix", "actor + time", "free text"] {
        let texts = queries(reader, size, shape)?;
        // One pass to warm, one measured.
        time_all(reader, &texts, size, &none, PAGE)?;
        let (times, returned, counted) = time_all(reader, &texts, size, &none, PAGE)?;
        outln!(
            "search    {shape}, {VALUES} values, {PAGE} newest: p50 {:.3} ms, p99 {:.3} ms ({returned:.0} events returned, {counted:.0} matching on average)",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
        )?;
    }
    print_export(reader, data, size)?;
    let texts = queries(reader, size, "actor")?;
    let daily = Aggregates {
        histogram: Some(Bucket::Day),
        top: vec![Field::Action],
    };
    let (times, _, counted) = time_all(reader, &texts, size, &daily, 1)?;
    outln!(
        "search    count + daily histogram + top actions for one actor, {VALUES} actors: p50 {:.3} ms, p99 {:.3} ms ({counted:.0} matching on average)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
    )?;
    Ok(())
}

/// Waits until the part files of the closed segments are written, then
/// prints their size against the segments' bytes.
fn print_parts(reader: &LogReader, data: &std::path::Path, built: Duration) -> CliResult<()> {
    let Some(index) = reader.search_index() else {
        return Ok(());
    };
    let waited = wait_maintained(&index);
    let report = index.parts_report();
    let segments = crate::bench::tree_bytes(&data.join("segments"));
    outln!(
        "index     part files of {} closed segments: written {:.2} s after the build ({:.2} s after the open), {} bytes: {:.1} B per entry they hold, {:.1} % of the segments' {} bytes",
        report.written,
        waited.as_secs_f64(),
        (built + waited).as_secs_f64(),
        report.written_bytes,
        report.written_bytes as f64 / report.written_entries.max(1) as f64,
        100.0 * report.written_bytes as f64 / segments.max(1) as f64,
        segments
    )
}

/// Events an export takes in the measurement.
const EXPORT_EVENTS: u64 = 100_000;

/// Times an export of about [`EXPORT_EVENTS`] events as an evidence bundle
/// (the events received up to that entry's time), and its verification
/// offline.
fn print_export(reader: &LogReader, data: &std::path::Path, size: u64) -> CliResult<()> {
    use stele_log::search::export::{self, Format, Selection};
    let last = EXPORT_EVENTS.min(size) - 1;
    let until = reader.get(EntryIndex(last))?.envelope.received_at;
    let query = Query::parse(&format!("received<={until}"), jiff::Timestamp::now())
        .map_err(|e| crate::Failure::usage(e.to_string()))?;
    let path = data.with_file_name("bench-export.bundle");
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let events = export::write(
        reader,
        &Selection {
            query: &query,
            size,
            may_read: &|_| true,
            by: "bench",
            at: jiff::Timestamp::now(),
            max_unindexed: Some(0),
        },
        Format::Bundle,
        None,
        &mut out,
    )?;
    drop(out);
    let written = started.elapsed();
    let bytes = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(&path)?);
    let report = stele_bundle::verify(file, reader.verifier(), None)
        .map_err(|e| crate::Failure::usage(format!("the bundle does not verify: {e}")))?;
    let verified = started.elapsed();
    std::fs::remove_file(&path)?;
    outln!(
        "export    {events} events as an evidence bundle: written in {:.2} s ({:.0} B per event), verified offline in {:.2} s ({} events)",
        written.as_secs_f64(),
        bytes as f64 / events.max(1) as f64,
        verified.as_secs_f64(),
        report.events
    )
}
