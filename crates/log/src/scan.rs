//! Reading a stream's entries in bulk through a [`LogReader`]: export
//! (every entry of a range) and query (the events of a range whose fields
//! equal the filters given). Shared by `GET /v1/export`, `GET /v1/query`
//! and the CLI's `stele export` and `stele query`, which authorize and
//! record the read each in their own way before anything is shown. A scan
//! never takes the writer: appends go on beside it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::engine::StoredEvent;
use crate::error::LogError;
use crate::ids::EntryIndex;
use crate::reader::LogReader;

/// Most entries one export or query may cover.
pub const MAX_EXPORT_RANGE: u64 = 10_000;
/// Most events one query returns (`limit`).
pub const MAX_QUERY_RESULTS: usize = 1_000;
/// Events a query returns when no limit is given.
pub const DEFAULT_QUERY_RESULTS: usize = 100;

/// The end of the range `[from, to)` an export or query covers: `to`
/// (default and at most the log size `size`), after checking the range.
pub fn range_end(size: u64, from: u64, to: Option<u64>) -> Result<u64, String> {
    let to = to.unwrap_or(size).min(size);
    if from > to || to - from > MAX_EXPORT_RANGE {
        return Err(format!(
            "need from <= to and at most {MAX_EXPORT_RANGE} entries per request (log size {size})"
        ));
    }
    Ok(to)
}

/// Checks the `stream` an export or query names: any stream name, system
/// ones included (`_system` can be exported). The error says why, for the
/// caller to prefix with the parameter's name.
pub fn check_stream(stream: &str) -> Result<(), String> {
    match stele_event::check_stream_name(stream) {
        Ok(()) => Ok(()),
        Err(stele_event::EventError::InvalidStream { reason, .. }) => {
            Err(format!("not a stream name: {reason}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// An entry of the stream being scanned.
#[derive(Debug)]
pub enum StreamEntry<'a> {
    Event(u64, &'a StoredEvent),
    /// Its content was purged by retention.
    Purged(u64, &'a crate::purge::Tombstone),
}

/// Visits, in index order, the entries of `stream` in `[from, to)` (those
/// of other streams are skipped) until `visit` returns false. Returns the
/// index after the last entry read. Entries never change once written; a
/// purge during the scan shows as purge records from there on.
pub fn scan_stream(
    log: &LogReader,
    stream: &str,
    from: u64,
    to: u64,
    mut visit: impl FnMut(StreamEntry) -> bool,
) -> Result<u64, LogError> {
    for index in from..to {
        let more = match log.get(EntryIndex(index)) {
            Ok(stored) if stored.envelope.stream == stream => {
                visit(StreamEntry::Event(index, &stored))
            }
            Ok(_) => true,
            Err(LogError::Purged { tombstone, .. }) if tombstone.stream == stream => {
                visit(StreamEntry::Purged(index, &tombstone))
            }
            Err(LogError::Purged { .. }) => true,
            Err(e) => return Err(e),
        };
        if !more {
            return Ok(index + 1);
        }
    }
    Ok(to)
}

/// An entry as export and query show it.
pub fn entry_json(index: u64, stored: &StoredEvent) -> Value {
    json!({
        "index": index,
        "commitment": B64.encode(stored.commitment),
        "salt": B64.encode(stored.salt),
        "event": stored.envelope.to_json(),
    })
}

/// What an export read: NDJSON lines (entries and purge records), and how
/// many of each.
#[derive(Debug)]
pub struct Export {
    pub ndjson: Vec<u8>,
    pub exported: u64,
    pub purged: u64,
}

/// Every entry of `stream` in `[from, to)`, one JSON line each (a purged
/// one as `{"index", "purged": <tombstone>}`).
pub fn export(log: &LogReader, stream: &str, from: u64, to: u64) -> Result<Export, LogError> {
    let mut out = Export {
        ndjson: Vec::new(),
        exported: 0,
        purged: 0,
    };
    scan_stream(log, stream, from, to, |entry| {
        let line = match entry {
            StreamEntry::Event(index, stored) => {
                out.exported += 1;
                entry_json(index, stored)
            }
            StreamEntry::Purged(index, tombstone) => {
                out.purged += 1;
                json!({"index": index, "purged": tombstone})
            }
        };
        out.ndjson.extend_from_slice(line.to_string().as_bytes());
        out.ndjson.push(b'\n');
        true
    })?;
    Ok(out)
}

/// What an event must be to match a query (nothing given: every event
/// matches): these fields equal, and received (by the server's clock, the
/// envelope's `received_at`) at or after `since` and before `until`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
}

/// Parses a `since`/`until` bound: an RFC 3339 time with its offset.
pub fn parse_time(name: &str, text: &str) -> Result<jiff::Timestamp, String> {
    stele_event::parse_rfc3339(text).map_err(|e| {
        format!("{name} must be an RFC 3339 time with an offset, like 2026-01-31T12:00:00Z ({e})")
    })
}

impl Filters {
    /// Whether the event of `envelope` matches.
    pub fn matches(&self, envelope: &stele_event::Envelope) -> bool {
        let event = &envelope.event;
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        if !(same(&self.actor, Some(&event.actor))
            && same(&self.action, Some(&event.action))
            && same(&self.resource, event.resource.as_deref())
            && same(&self.outcome, event.outcome.as_deref()))
        {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        // The server wrote it; one that does not parse matches no range.
        let Ok(received) = envelope.received_at.parse::<jiff::Timestamp>() else {
            return false;
        };
        self.since.is_none_or(|since| received >= since)
            && self.until.is_none_or(|until| received < until)
    }

    /// The filters given, for the `events.queried` record.
    pub fn to_json(&self) -> Value {
        let mut filters = serde_json::Map::new();
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
            ("outcome", &self.outcome),
        ] {
            if let Some(value) = value {
                filters.insert(name.into(), Value::from(value.as_str()));
            }
        }
        for (name, value) in [("since", &self.since), ("until", &self.until)] {
            if let Some(value) = value {
                filters.insert(name.into(), Value::from(value.to_string()));
            }
        }
        Value::Object(filters)
    }
}

/// What a query found.
#[derive(Debug)]
pub struct Found {
    /// The matching events, as [`entry_json`].
    pub events: Vec<Value>,
    /// Where the scan stopped (the range's end unless `limit` cut it short).
    pub scanned_to: u64,
    /// Purged entries passed over.
    pub purged: u64,
}

/// The events of `stream` in `[from, to)` that match `filters`, at most
/// `limit` of them.
pub fn query(
    log: &LogReader,
    stream: &str,
    from: u64,
    to: u64,
    filters: &Filters,
    limit: usize,
) -> Result<Found, LogError> {
    let mut events = Vec::new();
    let mut purged = 0u64;
    let scanned_to = scan_stream(log, stream, from, to, |entry| {
        match entry {
            StreamEntry::Event(index, stored) if filters.matches(&stored.envelope) => {
                events.push(entry_json(index, stored));
            }
            StreamEntry::Event(..) => {}
            StreamEntry::Purged(..) => purged += 1,
        }
        events.len() < limit
    })?;
    Ok(Found {
        events,
        scanned_to,
        purged,
    })
}

/// A query's answer: the events, the range scanned, where to resume
/// (`null` when the range was scanned to its end) and the purged entries
/// passed over.
pub fn found_json(from: u64, to: u64, found: Found) -> Value {
    let next = (found.scanned_to < to).then_some(found.scanned_to);
    json!({
        "events": found.events,
        "from": from,
        "to": found.scanned_to,
        "next": next,
        "purged": found.purged,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{CreateOptions, Log, OpenOptions, Preparer};
    use stele_store::keys::NewKek;

    /// A scan sees every entry of its stream once, in order, skips the
    /// others, and stops where asked.
    #[test]
    fn scans_see_their_stream_in_order_and_stop_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Log::create(
            &data,
            CreateOptions {
                origin: "test.example/log".into(),
                kek: NewKek::Random,
            },
        )
        .unwrap();
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        let preparer = Preparer::new("tester", "test", "default");
        let now = jiff::Timestamp::now();
        let events: Vec<_> = (0..773)
            .map(|n| {
                let stream = if n % 3 == 0 { "a" } else { "b" };
                let raw = format!(r#"{{"actor":"u{n}","action":"x","stream":"{stream}"}}"#);
                preparer.prepare(raw.as_bytes(), now).unwrap()
            })
            .collect();
        log.writer().append_batch(&events).unwrap();
        let size = log.reader().size();
        let shared = log.reader().clone();

        let mut seen = Vec::new();
        let end = scan_stream(&shared, "a", 1, size, |entry| {
            if let StreamEntry::Event(index, stored) = entry {
                assert_eq!(stored.envelope.event.actor, format!("u{index}"));
                seen.push(index);
            }
            true
        })
        .unwrap();
        assert_eq!(end, size);
        let expected: Vec<u64> = (1..size).filter(|n| n % 3 == 0).collect();
        assert_eq!(seen, expected);

        // Stop at the 100th entry of stream "a" (index 297): the scan ends
        // right after it.
        let mut count = 0;
        let end = scan_stream(&shared, "a", 0, size, |_| {
            count += 1;
            count < 100
        })
        .unwrap();
        assert_eq!(end, 298);
    }
}
