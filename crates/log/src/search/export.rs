//! Every match of a search, written out: as an evidence bundle
//! (`crate::bundle`, `docs/formats/bundle.md`), or as NDJSON or CSV for
//! SIEM tools, whose first line says they are unverified views. Shared by
//! `stele search --export` and `POST /v1/exports`, which authorize and
//! record the export (with [`count`]) before calling [`write`].
//!
//! The matches are read a page at a time, oldest first: memory holds one
//! page of events, however many match.

use std::io::Write;

use serde_json::json;
use stele_bundle::ManifestFields;
use stele_query::Query;

use crate::bundle::LogBundle;
use crate::error::{LogError, LogResult};
use crate::reader::LogReader;
use crate::search::run::{Aggregates, Order, Search, search};

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An evidence bundle: the events with their proofs.
    Bundle,
    /// One JSON object per event (an unverified view).
    Ndjson,
    /// One row per event (an unverified view).
    Csv,
}

impl Format {
    /// `bundle`, `ndjson` or `csv`.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "bundle" => Ok(Format::Bundle),
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "format must be bundle, ndjson or csv, not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Bundle => "bundle",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// The media type of an export in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Bundle => "application/vnd.stele.bundle",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Matches read from the log per page.
const PAGE: usize = 1000;

/// What is exported: a query's matches in `[0, size)` in the streams
/// `may_read` allows, and who asked when (stated in a view's first line
/// and a bundle's manifest).
#[derive(Clone, Copy)]
pub struct Selection<'a> {
    pub query: &'a Query,
    pub size: u64,
    pub may_read: &'a dyn Fn(&str) -> bool,
    pub by: &'a str,
    pub at: jiff::Timestamp,
    /// Most unindexed entries each page may read from the log.
    pub max_unindexed: Option<u64>,
}

impl std::fmt::Debug for Selection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("query", &self.query.to_string())
            .field("size", &self.size)
            .finish()
    }
}

impl Selection<'_> {
    fn page(
        &self,
        reader: &LogReader,
        after: Option<u64>,
        limit: usize,
    ) -> LogResult<crate::search::Page> {
        search(
            reader,
            &Search {
                query: self.query,
                order: Order::Oldest,
                limit,
                size: self.size,
                after,
                aggregates: &Aggregates::default(),
                max_unindexed: self.max_unindexed,
            },
            self.may_read,
        )
    }

    /// Visits every match, oldest first, a page at a time.
    fn each(
        &self,
        reader: &LogReader,
        mut visit: impl FnMut(&crate::StoredEvent) -> LogResult<()>,
    ) -> LogResult<u64> {
        let (mut after, mut n) = (None, 0u64);
        loop {
            let page = self.page(reader, after, PAGE)?;
            for event in &page.events {
                visit(event)?;
                n += 1;
            }
            after = page.events.last().map(|e| e.index.0);
            if !page.more || after.is_none() {
                return Ok(n);
            }
        }
    }
}

/// How many events an export of `selection` holds.
pub fn count(reader: &LogReader, selection: &Selection<'_>) -> LogResult<u64> {
    Ok(selection.page(reader, None, 1)?.count)
}

/// Writes every match of `selection` to `out` in `format`; returns how
/// many events were written. A bundle carries a consistency proof from
/// `known_size` when one is given.
pub fn write(
    reader: &LogReader,
    selection: &Selection<'_>,
    format: Format,
    known_size: Option<u64>,
    out: &mut dyn Write,
) -> LogResult<u64> {
    let io = |e: std::io::Error| LogError::Internal(format!("writing the export: {e}"));
    if format == Format::Bundle {
        let mut bundle = LogBundle::begin(reader, known_size, out)?;
        selection.each(reader, |event| bundle.add_read(event))?;
        let fields = ManifestFields {
            query: format!("{} (tree size {})", selection.query, selection.size),
            by: selection.by.to_string(),
            at: selection.at.to_string(),
        };
        let (out, summary) = bundle.finish(&fields)?;
        out.flush().map_err(io)?;
        return Ok(summary.events);
    }
    let note = format!(
        "unverified view of the stele log: events matching {} up to tree size {}, exported by {} at {}; an evidence bundle proves them",
        selection.query, selection.size, selection.by, selection.at
    );
    if format == Format::Csv {
        writeln!(out, "# {note}").map_err(io)?;
        writeln!(out, "{}", COLUMNS.join(",")).map_err(io)?;
    } else {
        writeln!(out, "{}", json!({ "unverified_view": note })).map_err(io)?;
    }
    let n = selection.each(reader, |event| {
        if format == Format::Csv {
            writeln!(out, "{}", csv_row(event)).map_err(io)
        } else {
            writeln!(out, "{}", crate::scan::entry_json(event.index.0, event)).map_err(io)
        }
    })?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// The CSV columns of a view.
pub const COLUMNS: [&str; 10] = [
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

fn csv_row(event: &crate::StoredEvent) -> String {
    let e = &event.envelope;
    let fields = [
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
    let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    fields.join(",")
}

/// One CSV field: quoted when it holds a comma, quote, or line break; a
/// leading `=`, `+`, `-` or `@` (a formula to a spreadsheet) is prefixed
/// with `'`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=sum(A1)"), "'=sum(A1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
