//! `stele search`: the search of `GET /v1/search` run by the local
//! operator on the data directory (`stele_log::search`; every entry read
//! from the log, as a reader opened on its own has no index), authorized
//! by the active policy per stream and recorded as an `events.searched`
//! event before anything is shown. A readable table by default, JSON
//! lines with `--json`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use stele_log::search::{
    self, Aggregates, Cursor, MAX_LIMIT, Order, Page, Search, page_json, parse_streams,
};
use stele_log::system_event::{Caller, EventsSearched};
use stele_log::{StoredEvent, SystemEvent};
use stele_policy::{Action, Resource};
use stele_query::Query;

use crate::read::ReadAccess;
use crate::{CliResult, DataArgs, Failure, local, print_out};

/// What `stele search` was asked.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The query (docs/search.md), e.g. 'actor:alice resource:db/prod/*
    /// time>=now-24h'; none matches every event.
    #[arg(default_value = "")]
    pub query: String,
    /// Only these streams (comma-separated); each must be readable.
    #[arg(long, value_name = "A,B")]
    pub streams: Option<String>,
    /// `newest` (highest index first) or `oldest`.
    #[arg(long, default_value = "newest")]
    pub order: String,
    /// Most events to print (1 to 1,000).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Counts to add: `hour` or `day` (a histogram of when events were
    /// received) and any of actor, action, resource, outcome, source,
    /// writer (their most frequent values).
    #[arg(long, value_name = "LIST")]
    pub aggregate: Option<String>,
    /// Continue a search from the page that printed this cursor (give the
    /// same query, streams and order).
    #[arg(long)]
    pub cursor: Option<String>,
    /// One JSON object per event on stdout (the page's counts and cursor
    /// go to stderr); `--json --summary` prints the page as one object.
    #[arg(long)]
    pub json: bool,
    /// With `--json`: the whole page (events, count, cursor, aggregates)
    /// as one JSON object, as `GET /v1/search` answers.
    #[arg(long, requires = "json")]
    pub summary: bool,
    /// Write every match (oldest first) instead of a page: `bundle` (an
    /// evidence bundle, with --out), `ndjson` or `csv` (unverified views,
    /// to stdout or --out). Needs `export` on each stream.
    #[arg(long, value_parser = ["bundle", "ndjson", "csv"], conflicts_with_all = ["json", "limit"])]
    pub export: Option<String>,
    /// The file an export is written to (through FILE.partial, renamed
    /// once complete).
    #[arg(long, value_name = "FILE", requires = "export")]
    pub out: Option<PathBuf>,
    /// With `--export bundle`: include a consistency proof from this tree
    /// size (a checkpoint the recipient already holds).
    #[arg(long, value_name = "N", requires = "export")]
    pub known_size: Option<u64>,
}

/// Which streams a search or export may cover: the streams named (each
/// authorized, a denial recorded) or, when none is, every stream the
/// policy lets the operator act on; decisions remembered per stream.
pub(crate) struct Readable {
    action: Action,
    streams: Vec<String>,
    at: jiff::Timestamp,
    policy: std::sync::Arc<stele_policy::Policy>,
    decisions: RefCell<HashMap<String, bool>>,
}

impl Readable {
    /// Authorizes `action` on each stream named.
    pub fn check(
        access: &mut ReadAccess,
        action: Action,
        streams: &[String],
        at: jiff::Timestamp,
    ) -> CliResult<Readable> {
        for stream in streams {
            access.authorize(action, Resource::Stream(stream), at)?;
        }
        Ok(Readable {
            action,
            streams: streams.to_vec(),
            at,
            policy: access.reader.active_policy(),
            decisions: RefCell::new(HashMap::new()),
        })
    }

    /// Whether the search covers `stream`.
    pub fn may(&self, access: &ReadAccess, stream: &str) -> bool {
        if !self.streams.is_empty() && !self.streams.iter().any(|s| s == stream) {
            return false;
        }
        *self
            .decisions
            .borrow_mut()
            .entry(stream.to_string())
            .or_insert_with(|| {
                access
                    .operator
                    .decide(&self.policy, self.action, Resource::Stream(stream), self.at)
                    .allowed
            })
    }
}

/// Runs `stele search`.
pub fn run(data: &DataArgs, args: &SearchArgs) -> CliResult<u8> {
    if let Some(format) = &args.export {
        return crate::search_export::run(data, args, format);
    }
    let streams = parse_streams(args.streams.as_deref().unwrap_or(""))
        .map_err(|e| Failure::usage(format!("--streams: {e}")))?;
    let order = Order::parse(&args.order).map_err(|e| Failure::usage(format!("--{e}")))?;
    if args.limit == 0 || args.limit > MAX_LIMIT {
        return Err(Failure::usage(format!("--limit must be 1 to {MAX_LIMIT}")));
    }
    let aggregates = Aggregates::parse(args.aggregate.as_deref().unwrap_or(""))
        .map_err(|e| Failure::usage(format!("--aggregate: {e}")))?;
    let cursor = args
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &args.query, &streams, order))
        .transpose()
        .map_err(|e| Failure::usage(format!("--cursor: {e}")))?;
    let at = local::now()?;
    let now = cursor.as_ref().map_or(at, |c| c.now);
    let query =
        Query::parse(&args.query, now).map_err(|e| Failure::usage(format!("query: {e}")))?;

    let mut access = ReadAccess::open_searching(data, "search")?;
    let readable = Readable::check(&mut access, Action::Query, &streams, at)?;
    let published = access.reader.published_size();
    let size = match &cursor {
        Some(c) if c.size > published => {
            return Err(Failure::usage("--cursor: not one this log gave"));
        }
        Some(c) => c.size,
        None => published,
    };
    let may_read = |stream: &str| readable.may(&access, stream);
    let page = search::search(
        &access.reader,
        &Search {
            query: &query,
            order,
            limit: args.limit,
            size,
            after: cursor.as_ref().map(|c| c.after),
            aggregates: &aggregates,
            max_unindexed: None,
        },
        &may_read,
    )?;
    let next = match (page.more, page.events.last()) {
        (true, Some(last)) => Some(Cursor::new(
            &args.query,
            &streams,
            order,
            size,
            last.index.0,
            now,
        )),
        _ => None,
    };
    let caller = Caller::local();
    let event = SystemEvent::EventsSearched {
        actor: access.operator.principal.clone(),
        attributes: EventsSearched {
            query: query.to_string(),
            streams: streams.clone(),
            order: order.as_str().to_string(),
            size,
            continued: cursor.is_some(),
            matched: page.count,
            returned: page.events.len() as u64,
            export: None,
            method: caller.method,
            client: caller.client,
        },
    };
    // Recorded durably before anything is shown.
    access.record(&event, at)?;
    if args.json && args.summary {
        let answer = page_json(&page, &query, order, &aggregates, size, next.as_ref());
        let text =
            serde_json::to_string_pretty(&answer).map_err(|e| Failure::usage(e.to_string()))?;
        print_out(&format!("{text}\n"))?;
    } else if args.json {
        let mut out = String::new();
        for event in &page.events {
            out.push_str(&stele_log::scan::entry_json(event.index.0, event).to_string());
            out.push('\n');
        }
        print_out(&out)?;
        eprintln!("{}", footer(&page, size, next.as_ref()));
    } else {
        let answer = page_json(&page, &query, order, &aggregates, size, next.as_ref());
        print_out(&table(&page.events))?;
        print_out(&aggregates_text(&answer))?;
        print_out(&format!("{}\n", footer(&page, size, next.as_ref())))?;
    }
    Ok(0)
}

/// How many were shown of how many, and how to get the next page.
fn footer(page: &Page, size: u64, next: Option<&Cursor>) -> String {
    let mut text = format!(
        "{} of {} matching events (log size {size})",
        page.events.len(),
        page.count
    );
    if let Some(next) = next {
        text.push_str(&format!("; next page: --cursor {}", next.encode()));
    }
    text
}

/// Most characters of a column's cell before it is cut with `…`.
const CELL: usize = 32;

fn cell(text: &str) -> String {
    // Control characters never reach the terminal.
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= CELL {
        clean
    } else {
        let cut: String = clean.chars().take(CELL - 1).collect();
        format!("{cut}…")
    }
}

/// The events as a table: index, received, stream, actor, action,
/// resource, outcome.
fn table(events: &[StoredEvent]) -> String {
    let header = [
        "INDEX", "RECEIVED", "STREAM", "ACTOR", "ACTION", "RESOURCE", "OUTCOME",
    ];
    let rows: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            let v = &e.envelope;
            [
                e.index.0.to_string(),
                cell(&v.received_at),
                cell(&v.stream),
                cell(&v.event.actor),
                cell(&v.event.action),
                cell(v.event.resource.as_deref().unwrap_or("-")),
                cell(v.event.outcome.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(c);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(&header.map(str::to_string));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// The histogram and top values of a page's JSON, as text.
fn aggregates_text(answer: &Value) -> String {
    let mut out = String::new();
    if let Some(histogram) = answer.get("histogram") {
        out.push_str(&format!(
            "\nevents received per {}:\n",
            histogram["bucket"].as_str().unwrap_or("")
        ));
        for bucket in histogram["buckets"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}  {}\n",
                bucket["start"].as_str().unwrap_or(""),
                bucket["count"]
            ));
        }
    }
    if let Some(top) = answer.get("top").and_then(Value::as_object) {
        for (field, values) in top {
            out.push_str(&format!("\ntop {field}:\n"));
            for value in values.as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {:>8}  {}\n",
                    value["count"],
                    cell(value["value"].as_str().unwrap_or(""))
                ));
            }
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
