//! `stele search QUERY --export bundle|ndjson|csv`: every event of the
//! streams the operator may `export` that matches QUERY, oldest first, up
//! to the latest checkpoint, as one evidence bundle (`--out FILE`;
//! `docs/formats/bundle.md`) or as NDJSON or CSV for SIEM tools (their
//! first line says they are unverified views). Recorded as an
//! `events.searched` event with its `export` format and counts before
//! anything is written where it can be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use stele_bundle::ManifestFields;
use stele_log::bundle::LogBundle;
use stele_log::search::{self, Aggregates, Order, Search, parse_streams};
use stele_log::system_event::{Caller, EventsSearched};
use stele_log::{EntryIndex, StoredEvent, SystemEvent};
use stele_policy::Action;
use stele_query::Query;

use crate::read::{ReadAccess, Recorded};
use crate::search::{Readable, SearchArgs};
use crate::{CliResult, DataArgs, Failure, local, print_out};

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An evidence bundle: the events with their proofs, verified offline
    /// by `stele verify-bundle` (needs --out).
    Bundle,
    /// One JSON object per event (an unverified view).
    Ndjson,
    /// One row per event (an unverified view).
    Csv,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Bundle => "bundle",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// Matches read from the log per search page.
const PAGE: usize = 1000;

/// Runs `stele search --export FORMAT`.
pub fn run(data: &DataArgs, args: &SearchArgs, format: Format) -> CliResult<u8> {
    if format == Format::Bundle && args.out.is_none() {
        return Err(Failure::usage("--export bundle needs --out FILE"));
    }
    if args.cursor.is_some() || args.aggregate.is_some() {
        return Err(Failure::usage(
            "--export writes every match: --cursor and --aggregate do not apply",
        ));
    }
    let streams = parse_streams(args.streams.as_deref().unwrap_or(""))
        .map_err(|e| Failure::usage(format!("--streams: {e}")))?;
    let at = local::now()?;
    let query = Query::parse(&args.query, at).map_err(|e| Failure::usage(format!("query: {e}")))?;
    let mut access = ReadAccess::open(data, "search", Recorded::Always)?;
    let readable = Readable::check(&mut access, Action::Export, &streams, at)?;
    let size = access.reader.published_size();
    // The count first: the record says how many events the export holds
    // before any of them is written where it can be read.
    let count = Pages::new(&access, &readable, &query, size).count()?;
    let caller = Caller::local();
    let event = SystemEvent::EventsSearched {
        actor: access.operator.principal.clone(),
        attributes: EventsSearched {
            query: query.to_string(),
            streams: streams.clone(),
            order: Order::Oldest.as_str().to_string(),
            size,
            continued: false,
            matched: count,
            returned: count,
            export: Some(format.name().to_string()),
            method: caller.method,
            client: caller.client,
        },
    };
    access.record(&event, at)?;
    let mut pages = Pages::new(&access, &readable, &query, size);
    let label = Label {
        query: &query,
        size,
        by: &access.operator.principal,
        at,
    };
    match (format, &args.out) {
        (Format::Bundle, Some(out)) => {
            write_bundle(&access, &mut pages, out, args.known_size, &label)
        }
        (_, Some(out)) => {
            let partial = partial_of(out);
            let file = std::fs::File::create(&partial)
                .map_err(|e| Failure::usage(format!("{}: {e}", partial.display())))?;
            let mut file = std::io::BufWriter::new(file);
            let written = write_view(&mut file, format, &mut pages, &label)
                .and_then(|n| file.flush().map(|()| n).map_err(Into::into));
            finish_file(written, &partial, out).map(|n| {
                eprintln!("wrote {}: {n} events ({})", out.display(), format.name());
                0
            })
        }
        (_, None) => {
            let mut out = Vec::new();
            let mut stdout = StdoutChunks(&mut out);
            write_view(&mut stdout, format, &mut pages, &label)?;
            stdout.flush()?;
            Ok(0)
        }
    }
}

/// What the first line of a view, and a bundle's manifest, state.
struct Label<'a> {
    query: &'a Query,
    size: u64,
    by: &'a str,
    at: jiff::Timestamp,
}

/// The pages of a search over every match, oldest first.
struct Pages<'a> {
    access: &'a ReadAccess,
    readable: &'a Readable,
    query: &'a Query,
    aggregates: Aggregates,
    size: u64,
    after: Option<u64>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(
        access: &'a ReadAccess,
        readable: &'a Readable,
        query: &'a Query,
        size: u64,
    ) -> Pages<'a> {
        Pages {
            access,
            readable,
            query,
            aggregates: Aggregates::default(),
            size,
            after: None,
            done: false,
        }
    }

    fn search(&self, limit: usize) -> CliResult<search::Page> {
        let may_read = |stream: &str| self.readable.may(self.access, stream);
        Ok(search::search(
            &self.access.reader,
            &Search {
                query: self.query,
                order: Order::Oldest,
                limit,
                size: self.size,
                after: self.after,
                aggregates: &self.aggregates,
                max_unindexed: None,
            },
            &may_read,
        )?)
    }

    /// How many events match in all.
    fn count(&self) -> CliResult<u64> {
        Ok(self.search(1)?.count)
    }

    /// The next page's events, or `None` after the last.
    fn next(&mut self) -> CliResult<Option<Vec<StoredEvent>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.search(PAGE)?;
        self.done = !page.more;
        self.after = page.events.last().map(|e| e.index.0);
        Ok(Some(page.events))
    }
}

fn partial_of(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{name}.partial"))
}

/// Renames the finished `partial` file to `out`, or removes it on error.
fn finish_file(written: CliResult<u64>, partial: &Path, out: &Path) -> CliResult<u64> {
    match written {
        Ok(n) => {
            std::fs::rename(partial, out)
                .map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
    }
}

fn write_bundle(
    access: &ReadAccess,
    pages: &mut Pages<'_>,
    out: &Path,
    known_size: Option<u64>,
    label: &Label<'_>,
) -> CliResult<u8> {
    let partial = partial_of(out);
    let file = std::fs::File::create(&partial)
        .map_err(|e| Failure::usage(format!("{}: {e}", partial.display())))?;
    let written = (|| -> CliResult<u64> {
        let mut bundle =
            LogBundle::begin(&access.reader, known_size, std::io::BufWriter::new(file))?;
        while let Some(events) = pages.next()? {
            for event in events {
                bundle.add(EntryIndex(event.index.0))?;
            }
        }
        let fields = ManifestFields {
            query: format!("{} (tree size {})", label.query, label.size),
            by: label.by.to_string(),
            at: label.at.to_string(),
        };
        let (mut file, summary) = bundle.finish(&fields)?;
        file.flush()?;
        Ok(summary.events)
    })();
    let n = finish_file(written, &partial, out)?;
    print_out(&format!(
        "wrote {}: {n} events matching {} up to tree size {}, with their proofs (stele verify-bundle checks it)\n",
        out.display(),
        label.query,
        label.size
    ))?;
    Ok(0)
}

/// The CSV columns of a view.
const COLUMNS: [&str; 10] = [
    "index",
    "received_at",
    "stream",
    "actor",
    "action",
    "resource",
    "outcome",
    "writer",
    "source",
    "id",
];

/// One CSV field: quoted when it holds a comma, quote, or line break;
/// a leading `=`, `+`, `-` or `@` (a formula to a spreadsheet) is
/// prefixed with `'`.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Writes the view's label line, then every matching event; returns how
/// many.
fn write_view(
    out: &mut dyn Write,
    format: Format,
    pages: &mut Pages<'_>,
    label: &Label<'_>,
) -> CliResult<u64> {
    let note = format!(
        "unverified view of the stele log: events matching {} up to tree size {}, exported by {} at {}; an evidence bundle (--export bundle) proves them",
        label.query, label.size, label.by, label.at
    );
    match format {
        Format::Csv => {
            writeln!(out, "# {note}")?;
            writeln!(out, "{}", COLUMNS.join(","))?;
        }
        _ => writeln!(out, "{}", json!({ "unverified_view": note }))?,
    }
    let mut n = 0u64;
    while let Some(events) = pages.next()? {
        for event in &events {
            n += 1;
            if format == Format::Csv {
                let e = &event.envelope;
                let row = [
                    event.index.0.to_string(),
                    e.received_at.clone(),
                    e.stream.clone(),
                    e.event.actor.clone(),
                    e.event.action.clone(),
                    e.event.resource.clone().unwrap_or_default(),
                    e.event.outcome.clone().unwrap_or_default(),
                    e.writer.clone(),
                    e.source.clone().unwrap_or_default(),
                    e.id.clone(),
                ];
                let row: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", row.join(","))?;
            } else {
                writeln!(out, "{}", stele_log::scan::entry_json(event.index.0, event))?;
            }
        }
    }
    Ok(n)
}

/// Standard output, written a chunk at a time through `print_out` (which
/// turns a closed pipe into a quiet exit).
struct StdoutChunks<'a>(&'a mut Vec<u8>);

impl Write for StdoutChunks<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        if self.0.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(self.0)?;
        self.0.clear();
        stdout.flush()
    }
}
