//! `stele export` and `stele query`: a stream's entries in bulk, read from
//! the data directory the way `GET /v1/export` and `GET /v1/query` read
//! them (`stele_server::scan`), authorized for the local operator by the
//! active policy and recorded as an `events.exported` / `events.queried`
//! system event (method `local`, client `cli`) before anything is shown.

use std::sync::Mutex;

use stele_log::system_event::{Caller, EventsExported, EventsQueried};
use stele_log::{Log, SystemEvent};
use stele_policy::{Action, Resource};
use stele_server::scan::{self, Filters, MAX_QUERY_RESULTS};

use crate::{CliResult, DataArgs, Failure, local, open, print_out};

/// Which entries: a stream and a range of indices.
#[derive(Debug, clap::Args)]
pub struct StreamRange {
    #[arg(long, value_parser = stream_name)]
    pub stream: String,
    /// First index of the range.
    #[arg(long)]
    pub from: u64,
    /// End of the range (exclusive; default and at most the log size).
    #[arg(long)]
    pub to: Option<u64>,
}

/// A `--stream` value: a stream name (checked as the server checks it).
fn stream_name(text: &str) -> Result<String, String> {
    scan::check_stream(text).map(|()| text.to_owned())
}

/// The log back from the mutex the scan shares it through.
fn unshare(shared: Mutex<Log>) -> Log {
    shared.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Prints the entries of the range's stream in the range as NDJSON.
pub fn export(data: &DataArgs, range: &StreamRange) -> CliResult<u8> {
    let (stream, from) = (range.stream.as_str(), range.from);
    let at = local::now()?;
    let mut log = open(data)?;
    let operator = local::Operator::of(&log);
    operator.authorize(&mut log, Action::Export, Resource::Stream(stream), at)?;
    let to = scan::range_end(log.size(), from, range.to).map_err(Failure::usage)?;
    let shared = Mutex::new(log);
    let export = scan::export(&shared, stream, from, to)?;
    let mut log = unshare(shared);
    let caller = Caller::local();
    let event = SystemEvent::EventsExported {
        actor: operator.principal.clone(),
        attributes: EventsExported {
            stream: stream.to_string(),
            from,
            to,
            exported: export.exported,
            purged: export.purged,
            method: caller.method,
            client: caller.client,
        },
    };
    // Recorded durably before any content is shown.
    local::append_system_event(&mut log, &event, at)?;
    print_out(&String::from_utf8_lossy(&export.ndjson))?;
    Ok(0)
}

/// Prints the events of the range's stream in the range whose fields
/// equal `filters`, at most `limit`, as one JSON object.
pub fn query(
    data: &DataArgs,
    range: &StreamRange,
    filters: &Filters,
    limit: usize,
) -> CliResult<u8> {
    let (stream, from) = (range.stream.as_str(), range.from);
    if limit == 0 || limit > MAX_QUERY_RESULTS {
        return Err(Failure::usage(format!(
            "--limit must be 1 to {MAX_QUERY_RESULTS}"
        )));
    }
    let at = local::now()?;
    let mut log = open(data)?;
    let operator = local::Operator::of(&log);
    operator.authorize(&mut log, Action::Query, Resource::Stream(stream), at)?;
    let to = scan::range_end(log.size(), from, range.to).map_err(Failure::usage)?;
    let shared = Mutex::new(log);
    let found = scan::query(&shared, stream, from, to, filters, limit)?;
    let mut log = unshare(shared);
    let caller = Caller::local();
    let event = SystemEvent::EventsQueried {
        actor: operator.principal.clone(),
        attributes: EventsQueried {
            stream: stream.to_string(),
            from,
            to: found.scanned_to,
            filters: filters.to_json(),
            matched: found.events.len() as u64,
            purged: found.purged,
            method: caller.method,
            client: caller.client,
        },
    };
    // Recorded durably before any content is shown.
    local::append_system_event(&mut log, &event, at)?;
    let answer = scan::found_json(from, to, found);
    let text = serde_json::to_string_pretty(&answer).map_err(|e| Failure::usage(e.to_string()))?;
    print_out(&format!("{text}\n"))?;
    Ok(0)
}
