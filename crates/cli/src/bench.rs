//! `stele bench`: durable append throughput and commit latency, in
//! process, with the machine's fdatasync and SHA-256 speed measured in the
//! same run as baselines (these machines are noisy; only same-run ratios
//! mean much).
//!
//! Events are prepared (parsed, canonicalized, packed) before the clock
//! starts, on all cores, two million at a time; the timed part is
//! producers submitting requests to the group-commit sequencer and waiting
//! for durability, summed over the rounds.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stele_log::sequencer::{Sequencer, SequencerConfig};
use stele_log::{CreateOptions, Log, PreparedEvent, Preparer};
use stele_store::keys::NewKek;

use crate::workload::{Generator, Workload};
use crate::{CliResult, Failure};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `http`: load a running `stele serve` over HTTP(S) instead.
    #[command(subcommand)]
    mode: Option<BenchMode>,
    /// Directory to create the benchmark's own new directory in
    /// (`stele-bench-<pid>`, removed afterwards unless --keep; nothing else
    /// in DIR is touched). Default: the current directory, so the disk
    /// measured is the one the data would live on.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events to append.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Which events: `app` (application events of about 360 bytes) or
    /// `k8s` (Kubernetes audit events, through the webhook's mapping).
    #[arg(long, value_enum, default_value_t = Workload::App)]
    workload: Workload,
    /// Seed of the event generator (the same seed appends the same events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Events per request.
    #[arg(long, default_value_t = 64)]
    request: usize,
    /// Also run a full `verify` of the result and time it.
    #[arg(long)]
    verify: bool,
    /// zstd level of the blocks (-7 to 19), to measure the trade-off of
    /// bytes against speed.
    #[arg(long, default_value_t = stele_log::BlockConfig::default().level(), allow_negative_numbers = true)]
    zstd_level: i32,
    /// Plaintext gathered into one block, in KiB (1 to 1024).
    #[arg(long, default_value_t = stele_log::BlockConfig::default().target_plain() / 1024)]
    block_kib: usize,
    /// Plaintext of a block compressed against its segment's reference
    /// block, in KiB (1 to 1024; 0: no block is).
    #[arg(long, default_value_t = stele_log::BlockConfig::default().referenced_plain() / 1024)]
    referenced_block_kib: usize,
    /// Keep the benchmark directory.
    #[arg(long)]
    keep: bool,
    /// Append without the search index (to compare the cost of keeping it).
    #[arg(long)]
    no_index: bool,
    /// Then time searches of several shapes, and the index's build at open.
    #[arg(long, conflicts_with = "no_index")]
    search: bool,
    /// Spread the events' receipt times over this many days, ending now
    /// (each day and stream is an epoch of its own).
    #[arg(long, default_value_t = 1)]
    days: u32,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// CPU time used so far by every thread of this process.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU time of this process's threads named `name` (Linux
/// `/proc/self/task/*/stat`; zero elsewhere), in clock ticks turned into
/// seconds at 100 per second.
fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime and stime
        // are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        for at in [11, 12] {
            ticks += fields
                .get(at)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 10)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// fdatasync baseline: appends of `chunk` bytes, each followed by fdatasync.
fn fsync_baseline(
    dir: &std::path::Path,
    chunk: usize,
    rounds: usize,
) -> CliResult<(f64, Duration)> {
    let path = dir.join("fsync-baseline");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let buf = vec![0x5au8; chunk];
    let mut latencies = Vec::with_capacity(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    latencies.sort_unstable();
    Ok((rounds as f64 / elapsed, percentile(&latencies, 0.5)))
}

/// File-creation baseline: new 8 KiB files (the size of a full tile), the
/// cost the tile writer pays twice per 256 entries. On ext4 it varies by
/// more than ten times with how many inodes were freed recently nearby.
/// File creation slower than this (8 KiB files) makes tile writing a limit
/// and the run hard to compare: the output says so.
const SLOW_CREATE: Duration = Duration::from_micros(100);

fn create_baseline(dir: &std::path::Path, files: usize) -> CliResult<Duration> {
    let sub = dir.join("create-baseline");
    std::fs::create_dir_all(&sub)?;
    let buf = vec![0x5au8; 8192];
    let started = Instant::now();
    for i in 0..files {
        std::fs::write(sub.join(i.to_string()), &buf)?;
    }
    let per = started.elapsed() / files as u32;
    // Written back now, not by the first checkpoint's `syncfs` in the
    // measured part.
    stele_store::fsutil::sync_filesystem(&sub).map_err(|e| Failure::usage(e.to_string()))?;
    // The files stay until the whole benchmark directory is removed: on
    // ext4 without a journal, inodes deleted in the last minutes make every
    // new file's creation slower, which would slow the tiles measured next.
    Ok(per)
}

/// Bytes in the files under `path` (or of the file itself); what cannot
/// be read counts as nothing.
pub(crate) fn tree_bytes(path: &std::path::Path) -> u64 {
    tree_sum(path, &|meta| if meta.is_dir() { 0 } else { meta.len() })
}

/// Bytes allocated to the files and directories under `path`, as `du`
/// counts them.
fn disk_usage(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    tree_sum(path, &|meta| meta.blocks() * 512)
}

/// `size` of `path` and of everything under it.
fn tree_sum(path: &std::path::Path, size: &dyn Fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = size(&meta);
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| tree_sum(&entry.path(), size))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// SHA-256 baseline over `size`-byte messages, one core.
fn sha_baseline(size: usize) -> f64 {
    let message = vec![0x61u8; size];
    let salt = [7u8; 32];
    let started = Instant::now();
    let mut n = 0u64;
    let mut sink = 0u8;
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..1000 {
            sink ^= stele_event::commitment(&salt, &message)[0];
        }
        n += 1000;
    }
    std::hint::black_box(sink);
    (n as f64 * (size + 47) as f64) / started.elapsed().as_secs_f64() / 1e6
}

/// The origin of every log `stele bench` creates, by which
/// `stele bench search` knows one.
pub const ORIGIN: &str = "bench.stele.local/log";

#[derive(Debug, clap::Subcommand)]
enum BenchMode {
    /// Load generator against `stele serve` (see docs/benchmarks.md).
    Http(crate::bench_http::BenchHttpArgs),
    /// Print the benchmark's events as NDJSON, one per line (for scripts
    /// and other tools): the same events `stele bench` appends.
    Events(EventsArgs),
    /// Time the searches of `--search` again on a directory that
    /// `stele bench --search --keep` left (`stele-bench-<pid>/data`), to
    /// compare two builds on the same events.
    Search(SearchArgs),
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// The kept log's data directory.
    #[arg(long)]
    data: PathBuf,
}

#[derive(Debug, clap::Args)]
struct EventsArgs {
    /// Which events: `app` or `k8s` (Kubernetes audit events, as the
    /// webhook receives them in an `EventList`'s items).
    #[arg(long, value_enum, default_value_t = Workload::App)]
    workload: Workload,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many.
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// The number of the first event.
    #[arg(long, default_value_t = 0)]
    first: u64,
}

/// `stele bench events`: the events, one per line, on standard output.
fn print_events(args: &EventsArgs) -> CliResult<u8> {
    let generator = Generator::new(args.workload, args.seed);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::with_capacity(4096);
    for n in args.first..args.first.saturating_add(args.count) {
        line.clear();
        generator.push(n, &mut line);
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            // A closed pipe (`| head`) ends the output, not an error.
            return if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(0)
            } else {
                Err(e.into())
            };
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

pub fn run(args: BenchArgs) -> CliResult<u8> {
    match args.mode {
        Some(BenchMode::Http(http)) => return crate::bench_http::run(http),
        Some(BenchMode::Events(events)) => return print_events(&events),
        Some(BenchMode::Search(search)) => {
            crate::bench_search::rerun(&search.data)?;
            return Ok(0);
        }
        None => {}
    }
    if args.events == 0 || args.producers == 0 || args.request == 0 {
        return Err(Failure::usage(
            "--events, --producers and --request must be positive",
        ));
    }
    if args.events > MAX_EVENTS
        || args.producers > MAX_PRODUCERS
        || args.request > stele_log::MAX_BATCH
    {
        return Err(Failure::usage(format!(
            "--events is at most {MAX_EVENTS}, --producers at most {MAX_PRODUCERS}, --request at most {}",
            stele_log::MAX_BATCH
        )));
    }
    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Failure::usage(format!("--dir {}: {e}", parent.display())))?;
    // A directory of its own, which must not exist yet: only what this run
    // created is ever removed.
    let dir = parent.join(format!("stele-bench-{}", std::process::id()));
    std::fs::create_dir(&dir)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    let result = bench_in(&dir, &args);
    if args.keep {
        let _ = outln!("kept      {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Bounds on the flags, so a typo is refused rather than exhausting memory.
const MAX_EVENTS: usize = 100_000_000;
const MAX_PRODUCERS: usize = 1024;

fn bench_in(dir: &std::path::Path, args: &BenchArgs) -> CliResult<u8> {
    let blocks = stele_log::BlockConfig::new(args.zstd_level, args.block_kib.saturating_mul(1024))
        .and_then(|b| b.with_referenced(args.referenced_block_kib.saturating_mul(1024)))
        .map_err(|e| Failure::usage(e.to_string()))?;
    let data = dir.join("data");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    outln!(
        "stele bench: {} {} events (seed {}), {} producers x {} events per request, {threads} cores, blocks of {} KiB ({} KiB against a reference) at zstd level {}",
        args.events,
        args.workload.name(),
        args.seed,
        args.producers,
        args.request,
        args.block_kib,
        args.referenced_block_kib,
        args.zstd_level
    )?;

    // Events are prepared a round at a time, outside the timed appends: a
    // prepared event holds its raw, canonical and stored forms and its
    // search terms (about 2.4 KB), so ten million would not fit in memory.
    let first_round = args.events.min(ROUND);
    // Event n is received at its share of the days asked, ending now.
    let end = jiff::Timestamp::now();
    let (all, mut raw_bytes) = prepare_all(args, threads, 0..first_round, end)?;
    let event_size = (raw_bytes / first_round as u64).max(1) as usize;
    let fsync_big = print_baselines(dir, event_size)?;
    let work = crate::bench_work::measure(dir, &all, blocks)?;
    outln!(
        "baseline  work per event on one core: compress and seal {:.2} µs, salt {:.2} µs, commitment {:.2} µs, Merkle {:.2} µs; for verify also authenticate and decompress {:.2} µs, canonical envelope rebuilt {:.2} µs; off the append path, the search index {:.2} µs",
        work.seal,
        work.salt,
        work.commit,
        work.merkle,
        work.open,
        work.rebuild,
        work.index
    )?;
    outln!(
        "baseline  so at most {:.0} appends/s and {:.0} verified entries/s on {threads} cores, before any I/O",
        threads as f64 * 1e6 / work.append(),
        threads as f64 * 1e6 / work.verify()
    )?;

    Log::create(
        &data,
        CreateOptions {
            origin: ORIGIN.into(),
            kek: NewKek::Random,
        },
    )?;
    let log = Log::open(
        &data,
        stele_log::OpenOptions {
            blocks,
            no_search_index: args.no_index,
            ..Default::default()
        },
    )?;

    let shared = std::sync::Arc::new(std::sync::Mutex::new(log));
    let sequencer = Sequencer::start(shared.clone(), SequencerConfig::default());
    let mut round = all;
    let mut next = first_round;
    let (mut append_secs, mut append_cpu) = (0f64, Duration::ZERO);
    let mut latencies: Vec<Duration> = Vec::new();
    let last_round_ended = loop {
        let queues = deal(std::mem::take(&mut round), args);
        let started = Instant::now();
        let cpu_before = process_cpu();
        latencies.extend(run_producers(&sequencer, queues).into_iter().flatten());
        append_secs += started.elapsed().as_secs_f64();
        append_cpu += process_cpu().saturating_sub(cpu_before);
        if next >= args.events {
            break Instant::now();
        }
        let range = next..args.events.min(next + ROUND);
        next = range.end;
        let (events, raw) = prepare_quietly(args, threads, range, end)?;
        raw_bytes += raw;
        round = events;
    };
    let stats = sequencer.stop()?;
    let log = stele_log::sequencer::lock_log(&shared);
    // The timed appends, and what it took after the last of them to stop
    // and publish.
    let total_secs = append_secs + last_round_ended.elapsed().as_secs_f64();
    let mut lat = latencies;
    lat.sort_unstable();
    if stats.events != args.events as u64 {
        return Err(Failure::usage(format!(
            "only {} of {} events were appended",
            stats.events, args.events
        )));
    }
    let rate = args.events as f64 / append_secs;
    let segments = tree_bytes(&data.join("segments"));
    let index = tree_bytes(&data.join("index"));
    let tiles = tree_bytes(&data.join("log"));
    let written = segments + index + tiles;
    outln!(
        "append    {:.0} events/s, {:.1} MB/s written, {} batches (avg {:.0} events), durable before ack",
        rate,
        written as f64 / append_secs / 1e6,
        stats.batches,
        stats.events as f64 / stats.batches.max(1) as f64
    )?;
    outln!(
        "latency   per request of {} events: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.request,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    )?;
    outln!(
        "cpu       {:.2} µs per event while appending, all threads ({:.0} % of {threads} cores busy); of it the search index's thread {:.2} µs",
        append_cpu.as_secs_f64() * 1e6 / args.events as f64,
        100.0 * append_cpu.as_secs_f64() / (append_secs * threads as f64),
        thread_cpu("stele-index").as_secs_f64() * 1e6 / args.events as f64
    )?;
    outln!(
        "publish   final checkpoint at size {} after {:.2}s total",
        log.reader().published_size(),
        total_secs
    )?;
    let per_event = |bytes: u64| bytes as f64 / args.events as f64;
    outln!(
        "disk      {:.0} B per event: segments {:.0}, index {:.0}, tiles {:.0}",
        per_event(written),
        per_event(segments),
        per_event(index),
        per_event(tiles)
    )?;
    let on_disk = disk_usage(&data);
    outln!(
        "size      raw JSON {:.0} B per event; the data directory {:.0} B per event (allocated, as du counts) = {:.2}x the raw JSON",
        per_event(raw_bytes),
        per_event(on_disk),
        on_disk as f64 / raw_bytes.max(1) as f64
    )?;
    outln!(
        "ratio     append / (fdatasync-per-256-events baseline) = {:.2}",
        rate / (fsync_big * 256.0)
    )?;
    outln!(
        "ratio     append / (per-event work on {threads} cores) = {:.2}",
        rate * work.append() / (threads as f64 * 1e6)
    )?;

    print_gets(log.reader(), args.events as u64)?;
    if args.search {
        crate::bench_search::print_caught_up(log.reader())?;
    }

    if args.verify {
        let started = Instant::now();
        let report = stele_log::verify::verify(log.reader(), &stele_log::verify::NoProgress)?;
        let secs = started.elapsed().as_secs_f64();
        outln!(
            "verify    {:.0} events/s ({} entries, {} bytes decrypted, {} tiles) {}",
            report.entries as f64 / secs,
            report.entries,
            report.bytes_decrypted,
            report.tiles,
            if report.ok() { "OK" } else { "FAILED" }
        )?;
        outln!(
            "ratio     verify / (per-event work on {threads} cores) = {:.2}",
            report.entries as f64 / secs * work.verify() / (threads as f64 * 1e6)
        )?;
        if !report.ok() {
            return Ok(1);
        }
    }
    if args.search {
        // The log opened again: the index built from it, then searched.
        drop(log);
        drop(shared);
        crate::bench_search::print(&data, blocks)?;
    }
    Ok(0)
}

/// Entries read back by [`print_gets`].
const GETS: u64 = 10_000;

/// Times `get` of entries spread over the log (a fixed stride through it,
/// so every run reads the same ones): a first pass, from disk (the writer
/// dropped its pages), then the same entries again, warm.
fn print_gets(log: &stele_log::LogReader, size: u64) -> CliResult<()> {
    let count = GETS.min(size);
    if count == 0 {
        return Ok(());
    }
    // A stride coprime with the size visits `count` distinct entries.
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut stride = (size / count).max(1) * 7 + 1;
    while gcd(stride, size) != 1 {
        stride += 1;
    }
    let picks: Vec<u64> = (0..count).map(|i| (i * stride) % size).collect();
    for pass in ["first read", "warm"] {
        let mut times = Vec::with_capacity(picks.len());
        for index in &picks {
            let started = Instant::now();
            log.get(stele_log::EntryIndex(*index))?;
            times.push(started.elapsed());
        }
        times.sort_unstable();
        outln!(
            "get       {count} entries spread over the log, {pass}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times.last().copied().unwrap_or_default())
        )?;
    }
    Ok(())
}

/// Measures and prints the same-run baselines (fdatasync rates, SHA-256,
/// file creation); returns the rate of fdatasyncs after a 256-event append.
fn print_baselines(dir: &std::path::Path, event_size: usize) -> CliResult<f64> {
    let (fsync_small, fsync_small_p50) = fsync_baseline(dir, event_size, 500)?;
    let (fsync_big, _) = fsync_baseline(dir, 256 * event_size, 500)?;
    let sha = sha_baseline(event_size);
    outln!(
        "baseline  fdatasync after a {} B append: {:.0}/s (p50 {:.3} ms)",
        event_size,
        fsync_small,
        ms(fsync_small_p50)
    )?;
    outln!(
        "baseline  fdatasync after a {} KiB append (256 events): {:.0}/s = {:.0} events/s",
        256 * event_size / 1024,
        fsync_big,
        fsync_big * 256.0
    )?;
    outln!("baseline  SHA-256 on one core: {sha:.0} MB/s")?;
    let create = create_baseline(dir, 500)?;
    outln!(
        "baseline  creating an 8 KiB file: {:.0} µs (tiles need 2 per 256 events: {:.0} events/s for one thread)",
        create.as_secs_f64() * 1e6,
        128.0 / create.as_secs_f64().max(1e-9)
    )?;
    if create > SLOW_CREATE {
        outln!(
            "note      creating files is slow on this file system right now; on ext4 without a journal, files deleted in the last minutes slow every creation (docs/benchmarks.md): compare only runs with similar baselines"
        )?;
    }
    Ok(fsync_big)
}

/// Events prepared at a time (about 5 GB of them): the appends of each
/// round are timed, the preparing is not.
const ROUND: usize = 2_000_000;

/// Prepares the events of `range` (the first round), on `threads` threads,
/// and prints the rate; returns the events and the bytes of their raw JSON.
fn prepare_all(
    args: &BenchArgs,
    threads: usize,
    range: std::ops::Range<usize>,
    end: jiff::Timestamp,
) -> CliResult<(Vec<PreparedEvent>, u64)> {
    let count = range.len().max(1);
    let started = Instant::now();
    let (all, raw_bytes) = prepare_quietly(args, threads, range, end)?;
    let prepare_secs = started.elapsed().as_secs_f64();
    let stored_bytes: usize = all.iter().map(|e| e.stored().len()).sum();
    let canonical_bytes: usize = all.iter().map(|e| e.canonical().len()).sum();
    outln!(
        "prepare   {:.0} events/s on {threads} threads (parse, canonical JSON, pack); raw JSON {} B, stored envelope {} B (before compression), canonical envelope {} B on average",
        count as f64 / prepare_secs,
        raw_bytes / count as u64,
        stored_bytes / count,
        canonical_bytes / count
    )?;
    Ok((all, raw_bytes))
}

/// Prepares the events of `range` of the run's `args.events`, on `threads`
/// threads, received over the days asked up to `end`; returns them and the
/// bytes of their raw JSON.
fn prepare_quietly(
    args: &BenchArgs,
    threads: usize,
    range: std::ops::Range<usize>,
    end: jiff::Timestamp,
) -> CliResult<(Vec<PreparedEvent>, u64)> {
    let preparer = Preparer::new("bench", "bench", "default");
    let generator = Generator::new(args.workload, args.seed);
    let span = i64::from(args.days.max(1)) * 86_400_000_000_000;
    let total = args.events.max(1) as i64;
    let received = move |n: u64| {
        let back = span - (n as i64).saturating_mul(span / total);
        jiff::Timestamp::from_nanosecond(end.as_nanosecond() - i128::from(back.max(0)))
            .unwrap_or(end)
    };
    let per = range.len().div_ceil(threads);
    let prepared: Vec<(Vec<PreparedEvent>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (preparer, generator) = (&preparer, &generator);
                let range = range.clone();
                scope.spawn(move || {
                    let lo = (range.start + t * per).min(range.end) as u64;
                    let hi = (range.start + (t + 1) * per).min(range.end) as u64;
                    prepare_range(preparer, generator, lo..hi, &received)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok((Vec::new(), 0))))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(|e| Failure::usage(format!("preparing events: {e}")))?;
    let raw_bytes = prepared.iter().map(|(_, bytes)| bytes).sum::<u64>();
    let all: Vec<PreparedEvent> = prepared
        .into_iter()
        .flat_map(|(events, _)| events)
        .collect();
    Ok((all, raw_bytes))
}

/// Generates and prepares events `range`; returns them and the bytes of
/// their raw JSON. Kubernetes audit events go through the webhook's
/// mapping, a list of up to 1,000 at a time, as the server takes them.
fn prepare_range(
    preparer: &Preparer,
    generator: &Generator,
    range: std::ops::Range<u64>,
    received: &(dyn Fn(u64) -> jiff::Timestamp + Sync),
) -> Result<(Vec<PreparedEvent>, u64), String> {
    let mut events = Vec::with_capacity((range.end - range.start) as usize);
    let mut raw_bytes = 0u64;
    match generator.workload() {
        Workload::App => {
            for n in range {
                let raw = generator.event(n);
                raw_bytes += raw.len() as u64;
                events.push(
                    preparer
                        .prepare(&raw, received(n))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        Workload::K8s => {
            let limits = stele_ingest::BodyLimits::default();
            let mut body = Vec::new();
            let mut first = range.start;
            while first < range.end {
                let end = (first + 1_000).min(range.end);
                body.clear();
                generator.push_list(first..end, &mut body);
                let items =
                    stele_ingest::parse_event_list(&body, &limits).map_err(|e| e.to_string())?;
                for (n, item) in (first..).zip(items) {
                    raw_bytes += item.raw.len() as u64;
                    events.push(
                        preparer
                            .prepare_parsed(item.event, item.raw, received(n))
                            .map_err(|e| e.to_string())?,
                    );
                }
                first = end;
            }
        }
    }
    Ok((events, raw_bytes))
}

/// Splits the events into requests of `args.request`, dealt round-robin
/// to `args.producers` producers.
fn deal(all: Vec<PreparedEvent>, args: &BenchArgs) -> Vec<Vec<Vec<PreparedEvent>>> {
    let mut queues: Vec<Vec<Vec<PreparedEvent>>> =
        (0..args.producers).map(|_| Vec::new()).collect();
    let mut events = all.into_iter();
    let mut p = 0;
    loop {
        let request: Vec<PreparedEvent> = events.by_ref().take(args.request).collect();
        if request.is_empty() {
            break;
        }
        queues[p % args.producers].push(request);
        p += 1;
    }
    queues
}

/// Runs one thread per producer, each appending its requests in turn
/// through the sequencer; returns every request's latency.
fn run_producers(
    sequencer: &Sequencer,
    queues: Vec<Vec<Vec<PreparedEvent>>>,
) -> Vec<Vec<Duration>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = queues
            .into_iter()
            .map(|queue| {
                let handle = sequencer.handle();
                scope.spawn(move || {
                    let mut lat = Vec::with_capacity(queue.len());
                    for request in queue {
                        let t = Instant::now();
                        if handle.append_blocking(request).is_err() {
                            break;
                        }
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
