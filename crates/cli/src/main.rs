//! `stele`: the one binary. Parses the command line, opens the data
//! directory, calls the engine and turns outcomes into exit codes:
//! 0 ok, 1 verification failed, input refused or access denied, 2 usage
//! or I/O error.
//! Errors are printed as one line on standard error. Every command is
//! described in `docs/cli.md`.

/// `println!` that returns an error instead of panicking when stdout is
/// gone (a closed pipe): `outln!(...)?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod append;
mod bench;
mod bench_http;
mod bench_search;
mod bench_work;
mod check;
mod govern;
mod index;
mod keyaudit;
mod local;
mod offline;
mod read;
mod search;
mod search_export;
mod serve;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};

/// mimalloc instead of the C library's allocator: ingestion allocates and
/// frees many small buffers per event on several threads, which glibc's
/// malloc serves measurably slower (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stele_log::EntryIndex;
use stele_log::verify::{self, Progress};
use stele_log::{CreateOptions, Log, LogError, OpenOptions};
use stele_policy::{Action, Resource};
use stele_store::StoreError;
use stele_store::keys::{Argon2Params, NewKek};
use zeroize::Zeroizing;

/// A tamper-evident, append-only audit log.
#[derive(Debug, Parser)]
#[command(
    name = "stele",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct DataArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// File holding the passphrase of a passphrase-protected log (otherwise
    /// the STELE_PASSPHRASE environment variable is used).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// File outside the data directory that keeps a copy of the latest
    /// signed checkpoint: a log rolled back behind it (a restored backup)
    /// is refused, and it is brought up to date at every publish.
    #[arg(long, value_name = "FILE")]
    anchor: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new log: keys, empty tree and its first signed checkpoint.
    Init {
        #[command(flatten)]
        data: DataArgs,
        /// The log's origin (checkpoint first line and key name), e.g. audit.example.com/log.
        #[arg(long)]
        origin: String,
        /// Derive the key-encryption key from a passphrase (Argon2id) instead
        /// of storing a random one in keys/kek.key.
        #[arg(long)]
        passphrase: bool,
    },
    /// Append NDJSON events from standard input; print a receipt per event
    /// once durable, then the new signed checkpoint.
    Append {
        #[command(flatten)]
        data: DataArgs,
        /// Stream for events that name none (default: the policy's routes
        /// and default stream decide).
        #[arg(long)]
        stream: Option<String>,
        /// A writer to record as claimed, in each event's attribute
        /// `claimed_writer`; the event's writer is always the operator
        /// running the command, local:$USER.
        #[arg(long, value_name = "NAME")]
        writer: Option<String>,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print a stored event (decrypted) with its salt, as JSON.
    Get {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        index: u64,
    },
    /// Print the entries of one stream in a range of indices as NDJSON (each
    /// with its salt and commitment; purged ones as their purge record),
    /// recorded first as an `events.exported` system event. At most 10,000
    /// entries per call. With --bundle, write them instead as an evidence
    /// bundle (docs/formats/bundle.md) that `stele verify-bundle` checks
    /// offline; a bundle is streamed, so its range is not limited.
    Export {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        range: read::StreamRange,
        /// Write an evidence bundle to this file instead of printing NDJSON.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// With --bundle: include a consistency proof from this tree size
        /// (a checkpoint the recipient already holds).
        #[arg(long, value_name = "N", requires = "bundle")]
        known_size: Option<u64>,
    },
    /// Print the events of one stream in a range of indices whose fields
    /// equal the filters given, as JSON (`next` says where to resume when
    /// `--limit` cut the scan short), recorded first as an `events.queried`
    /// system event. At most 10,000 entries scanned per call.
    Query {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        range: read::StreamRange,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        /// Only events received at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events received before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Most events to return (1 to 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Search every stream you may read, in the query language of
    /// docs/search.md (newest first; `--cursor` for the next page),
    /// recorded first as an `events.searched` system event.
    Search {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        args: search::SearchArgs,
    },
    /// Print inclusion or consistency proofs.
    #[command(arg_required_else_help = true)]
    Proof {
        #[command(subcommand)]
        kind: ProofKind,
    },
    /// Re-derive and check everything in the data directory.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Check a C2SP tlog-proof offline, without the data directory.
    VerifyProof {
        /// Verifier key of the log (name+hash+base64).
        #[arg(long)]
        vkey: String,
        /// The tlog-proof file.
        #[arg(long)]
        proof: PathBuf,
        /// The event as printed by `stele get` (with its salt): its
        /// commitment is recomputed and must be the proven entry.
        #[arg(long, group = "leaf")]
        event: Option<PathBuf>,
        /// The commitment (base64) from the event's receipt.
        #[arg(long, group = "leaf")]
        commitment: Option<String>,
    },
    /// Check an evidence bundle offline, without the data directory: every
    /// entry, the multi-proof, the checkpoint and the manifest signatures.
    VerifyBundle {
        /// Verifier key of the log (name+hash+base64).
        #[arg(long)]
        vkey: String,
        /// The bundle file (from `stele export --bundle`).
        file: PathBuf,
        /// The size of a checkpoint you already hold: the bundle's
        /// checkpoint must be consistent with it.
        #[arg(long, value_name = "N", requires = "known_root")]
        known_size: Option<u64>,
        /// The root hash (base64) of that checkpoint.
        #[arg(long, value_name = "B64", requires = "known_size")]
        known_root: Option<String>,
    },
    /// Check that a server's current checkpoint extends one kept earlier
    /// (signature and consistency proof): notices a rollback or a fork.
    Check(check::CheckArgs),
    /// Measure durable append throughput and latency in-process.
    Bench(bench::BenchArgs),
    /// Run the HTTP(S) service (embedded default: ./stele-data on 127.0.0.1:7800).
    Serve(serve::ServeArgs),
    /// Create, list or revoke API tokens (create and revoke need the data
    /// directory: while the server runs, use its /v1/tokens API).
    #[command(arg_required_else_help = true)]
    Token {
        #[command(subcommand)]
        action: serve::TokenAction,
    },
    /// Check, explain, apply and show policies.
    #[command(arg_required_else_help = true)]
    Policy {
        #[command(subcommand)]
        action: govern::PolicyAction,
    },
    /// Place, list and release legal holds.
    #[command(arg_required_else_help = true)]
    Hold {
        #[command(subcommand)]
        action: govern::HoldAction,
    },
    /// Retention status and purges.
    #[command(arg_required_else_help = true)]
    Retention {
        #[command(subcommand)]
        action: govern::RetentionAction,
    },
    /// Rebuild or check the search index's files (`DATA/search/`).
    #[command(arg_required_else_help = true)]
    Index {
        #[command(subcommand)]
        action: index::IndexAction,
    },
    /// Rotate the key-encryption key; show key ages.
    #[command(arg_required_else_help = true)]
    Keys {
        #[command(subcommand)]
        action: keyaudit::KeysAction,
    },
    /// Longevity audits: run one now, or report the latest attestation.
    #[command(arg_required_else_help = true)]
    Audit {
        #[command(subcommand)]
        action: keyaudit::AuditAction,
    },
}

#[derive(Debug, Subcommand)]
enum ProofKind {
    /// A C2SP tlog-proof of one entry.
    Inclusion {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        index: u64,
        /// Size of the published checkpoint to prove against (default: latest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Consistency proof hashes (base64, one per line) from size OLD to SIZE.
    Consistency {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        old: u64,
        #[arg(long)]
        size: Option<u64>,
    },
}

/// An error with its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Failure {
        let code = match &e {
            e if e.is_integrity() => 1,
            LogError::Event(_) => 1,
            _ => 2,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::usage(e.to_string())
    }
}

pub(crate) type CliResult<T> = Result<T, Failure>;

fn main() -> ExitCode {
    // A panic is a bug: one line on standard error, exit 2 (below).
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string().replace('\n', ": ");
        eprintln!("stele: internal error: {text}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `stele` or `stele proof` alone: the command's help (its
            // subcommands) on standard error, as a usage error.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("stele: error: {}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(failure)) => {
            if !failure.message.is_empty() {
                eprintln!("stele: error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// A command-line error as one line: clap's message without its "error:"
/// prefix, with what it lists below it (the missing flags, a similar
/// command's name), and the help of the command at fault.
fn usage_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut message = String::new();
    let mut command = "stele".to_owned();
    for line in rendered.lines().map(str::trim) {
        if let Some(usage) = line.strip_prefix("Usage:") {
            // `Usage: stele init --data <DIR> …`: the command is the words
            // before the first flag or placeholder.
            command = usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['-', '<', '[']))
                .collect::<Vec<_>>()
                .join(" ");
            break;
        }
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        let line = line.strip_prefix("error:").unwrap_or(line).trim();
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line);
    }
    if message.is_empty() {
        message.push_str("invalid command line");
    }
    format!("{message} (see {command} --help)")
}

/// Reads a file the user named, refusing one larger than `limit` bytes
/// (`/dev/zero` or a wrong path must not exhaust memory).
pub(crate) fn read_limited(path: &Path, limit: u64, what: &str) -> CliResult<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("{what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::usage(format!("{what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > limit {
        return Err(Failure::usage(format!(
            "{what} {}: larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Longest passphrase file read.
const MAX_PASSPHRASE_FILE: u64 = 64 * 1024;

fn run(cli: Cli) -> CliResult<u8> {
    match cli.command {
        Command::Init {
            data,
            origin,
            passphrase,
        } => init(&data, origin, passphrase),
        Command::Append {
            data,
            stream,
            writer,
        } => append::run(&data, stream.as_deref(), writer),
        Command::Checkpoint { data } => {
            let log = open(&data)?;
            print_out(&log.reader().checkpoint_note())?;
            Ok(0)
        }
        Command::Get { data, index } => read::get(&data, index),
        Command::Export {
            data,
            range,
            bundle: None,
            ..
        } => read::export(&data, &range),
        Command::Export {
            data,
            range,
            bundle: Some(out),
            known_size,
        } => read::export_bundle(&data, &range, &out, known_size),
        Command::Query {
            data,
            range,
            actor,
            action,
            resource,
            outcome,
            since,
            until,
            limit,
        } => {
            let time = |name: &str, text: Option<String>| {
                text.map(|t| stele_log::scan::parse_time(name, &t))
                    .transpose()
                    .map_err(|e| Failure::usage(format!("--{e}")))
            };
            let filters = stele_log::scan::Filters {
                actor,
                action,
                resource,
                outcome,
                since: time("since", since)?,
                until: time("until", until)?,
            };
            read::query(&data, &range, &filters, limit)
        }
        Command::Search { data, args } => search::run(&data, &args),
        Command::Proof { kind } => match kind {
            ProofKind::Inclusion { data, index, size } => {
                let log = stele_log::LogReader::open(&data.data, open_options(&data)?)?;
                let proof = log.inclusion_proof(EntryIndex(index), size)?;
                print_out(&proof.encode())?;
                Ok(0)
            }
            ProofKind::Consistency { data, old, size } => {
                let log = stele_log::LogReader::open(&data.data, open_options(&data)?)?;
                let hashes = log.consistency_proof(old, size)?;
                let mut out = String::new();
                for h in hashes {
                    out.push_str(&h.to_base64());
                    out.push('\n');
                }
                print_out(&out)?;
                Ok(0)
            }
        },
        Command::Verify { data } => verify_data(&data),
        Command::VerifyProof {
            vkey,
            proof,
            event,
            commitment,
        } => offline::verify_proof(&vkey, &proof, event.as_deref(), commitment.as_deref()),
        Command::VerifyBundle {
            vkey,
            file,
            known_size,
            known_root,
        } => offline::verify_bundle(&vkey, &file, known_size.zip(known_root.as_deref())),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Token { action } => serve::token(action),
        Command::Policy { action } => govern::policy(action),
        Command::Hold { action } => govern::hold(action),
        Command::Retention { action } => govern::retention(action),
        Command::Index { action } => index::run(action),
        Command::Keys { action } => keyaudit::keys(action),
        Command::Audit { action } => keyaudit::audit(action),
    }
}

/// Writes `text` to standard output. A reader that stopped reading
/// (`stele … | head`) ends the command quietly with exit 0: what it read
/// was shown, and what it did not want is no error.
fn print_out(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure {
            code: 0,
            message: String::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn read_passphrase(file: Option<&Path>) -> CliResult<Option<Zeroizing<String>>> {
    if let Some(path) = file {
        let bytes = read_limited(path, MAX_PASSPHRASE_FILE, "passphrase file")?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Failure::usage(format!("passphrase file {}: not UTF-8", path.display()))
        })?;
        let trimmed = text.trim_end_matches(['\n', '\r']).to_string();
        return Ok(Some(Zeroizing::new(trimmed)));
    }
    Ok(std::env::var("STELE_PASSPHRASE").ok().map(Zeroizing::new))
}

/// Opens (and so recovers) the log in `data`.
pub(crate) fn open(data: &DataArgs) -> CliResult<Log> {
    match Log::open(&data.data, open_options(data)?) {
        Ok(log) => {
            for kept in log.kept_at_open() {
                eprintln!("warning: {kept}");
            }
            Ok(log)
        }
        Err(LogError::Store(StoreError::Locked { .. })) => {
            Err(Failure::usage(locked_message(&data.data)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The passphrase a data directory's key needs, if any; checks first that
/// the directory is a log, so one that is not says so.
pub(crate) fn open_options(data: &DataArgs) -> CliResult<OpenOptions> {
    Log::read_meta(&data.data)?;
    let passphrase = if Log::needs_passphrase(&data.data)? {
        Some(read_passphrase(data.passphrase_file.as_deref())?.ok_or_else(|| {
            Failure::usage("this log's key is protected by a passphrase: set STELE_PASSPHRASE or use --passphrase-file")
        })?)
    } else {
        None
    };
    Ok(OpenOptions {
        passphrase,
        anchor: data.anchor.clone(),
        // Only `stele search` searches through its own open's index
        // (`ReadAccess::open_searching`; `stele serve` opens the log
        // itself), so no other command builds one.
        no_search_index: true,
        ..OpenOptions::default()
    })
}

/// The holder of the data directory's lock, if another process holds it
/// (read from /proc/locks, without taking the lock).
fn lock_holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(dir.join("lock")).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let me = std::process::id();
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        let f: Vec<&str> = line.split_whitespace().collect();
        let pid: u32 = f.get(4)?.parse().ok()?;
        let ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
        (f.get(1) == Some(&"FLOCK") && ino == inode && pid != me).then_some(pid)
    })
}

/// Why the data directory cannot be opened: another `stele` holds it. A
/// running server is named, with the way around it.
pub(crate) fn locked_message(dir: &Path) -> String {
    const API: &str = "use the HTTP API (GET/PUT /v1/policy, GET/POST /v1/holds, \
                       GET /v1/retention, POST /v1/retention/run, POST /v1/retention/purge, \
                       POST /v1/audit/run, GET /v1/audit/latest, GET /v1/events/{index}, \
                       GET/POST /v1/tokens, DELETE /v1/tokens/{id}; \
                       see docs/server.md) or stop the server";
    locked_message_with(dir, API)
}

/// [`locked_message`], with `advice` for when the holder is (or may be) a
/// running server.
pub(crate) fn locked_message_with(dir: &Path, advice: &str) -> String {
    let holder = lock_holder(dir);
    let command = holder.and_then(|pid| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(args)
    });
    match (holder, command) {
        (Some(pid), Some(args)) if args.iter().skip(1).any(|a| a == "serve") => format!(
            "{}: the log is open in a running `stele serve` (pid {pid}); {advice}",
            dir.display()
        ),
        (Some(pid), Some(args)) => format!(
            "{}: the data directory is in use by another stele process (pid {pid}: {}); \
             wait for it to finish",
            dir.display(),
            args.join(" ")
        ),
        _ => format!(
            "{}: the data directory is in use by another stele process; if it is a running \
             `stele serve`, {advice}",
            dir.display()
        ),
    }
}

fn init(data: &DataArgs, origin: String, passphrase: bool) -> CliResult<u8> {
    let kek = if passphrase {
        let pass = read_passphrase(data.passphrase_file.as_deref())?.ok_or_else(|| {
            Failure::usage(
                "--passphrase needs the passphrase in STELE_PASSPHRASE or --passphrase-file",
            )
        })?;
        if pass.chars().count() < 12 {
            return Err(Failure::usage(
                "the passphrase must be at least 12 characters",
            ));
        }
        NewKek::Passphrase {
            passphrase: pass,
            params: Argon2Params::default(),
        }
    } else {
        NewKek::Random
    };
    let vkey = Log::create(
        &data.data,
        CreateOptions {
            origin: origin.clone(),
            kek,
        },
    )?;
    eprintln!(
        "initialized log {origin:?} in {}; verifier key:",
        data.data.display()
    );
    print_out(&format!("{vkey}\n"))?;
    Ok(0)
}

/// A progress bar drawn with `template` when standard error is a
/// terminal, nothing otherwise.
pub(crate) fn terminal_bar(template: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Progress for Bar {
    fn start(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }
    fn advance(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(done);
        }
    }
}

fn verify_data(data: &DataArgs) -> CliResult<u8> {
    let started = std::time::Instant::now();
    let at = local::now()?;
    // Read-only: no lock, no recovery, nothing written (what a recovery
    // would do is reported as notes), so it runs beside a writer and on a
    // read-only copy. A denial cannot be recorded from here; it says so.
    let log = stele_log::LogReader::open(&data.data, open_options(data)?)?;
    local::Operator::of_reader(&log).authorize_reading(&log, Action::Verify, Resource::Log, at)?;
    let progress = Bar(terminal_bar(
        "verifying {bar:40} {percent}% {per_sec} eta {eta}",
    ));
    let report = verify::verify(&log, &progress)?;
    if let Some(bar) = &progress.0 {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for problem in &report.problems {
        eprintln!("FAIL {problem}");
    }
    if report.problem_count > report.problems.len() as u64 {
        eprintln!(
            "... and {} more problems",
            report.problem_count - report.problems.len() as u64
        );
    }
    let summary = format!(
        "{} entries, {} checkpoints, {} segments, {} tiles, {} bytes decrypted in {:.2}s ({:.0} entries/s)",
        report.entries,
        report.checkpoints,
        report.segments,
        report.tiles,
        report.bytes_decrypted,
        seconds,
        report.entries as f64 / seconds.max(1e-9)
    );
    if report.ok() {
        print_out(&format!("OK: {summary}\n"))?;
        Ok(0)
    } else {
        print_out(&format!(
            "FAILED: {} problems; {summary}\n",
            report.problem_count
        ))?;
        Ok(1)
    }
}
