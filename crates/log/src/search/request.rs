//! A search as a client asks for it (`GET /v1/search`, `stele search`):
//! its parameters checked in one place, the cursor that continues it, and
//! the JSON of a page, so that the server and the CLI take and give the
//! same thing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stele_query::{Field, Query};

use crate::search::run::{Aggregates, Bucket, Order, Page};

/// Events on a page when no limit is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most events on one page.
pub const MAX_LIMIT: usize = 1000;
/// Most streams one search names.
pub const MAX_STREAMS: usize = 64;
/// Most unindexed entries a server's search reads from the log before it
/// answers that the index is still being built.
pub const SERVER_MAX_UNINDEXED: u64 = 250_000;

impl Order {
    /// `newest` or `oldest`.
    pub fn parse(text: &str) -> Result<Order, String> {
        match text {
            "newest" => Ok(Order::Newest),
            "oldest" => Ok(Order::Oldest),
            other => Err(format!("order must be newest or oldest, not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Newest => "newest",
            Order::Oldest => "oldest",
        }
    }
}

/// The fields a top list may count.
const TOP_FIELDS: [(&str, Field); 6] = [
    ("actor", Field::Actor),
    ("action", Field::Action),
    ("resource", Field::Resource),
    ("outcome", Field::Outcome),
    ("source", Field::Source),
    ("writer", Field::Writer),
];

fn field_name(field: &Field) -> &'static str {
    TOP_FIELDS
        .iter()
        .find(|(_, f)| f == field)
        .map_or("", |(name, _)| name)
}

impl Aggregates {
    /// A comma-separated list: at most one of `hour` and `day` (a
    /// histogram over when the events were received) and any of `actor`,
    /// `action`, `resource`, `outcome`, `source`, `writer` (their most
    /// frequent values).
    pub fn parse(text: &str) -> Result<Aggregates, String> {
        let mut aggregates = Aggregates::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let bucket = match name {
                "hour" => Some(Bucket::Hour),
                "day" => Some(Bucket::Day),
                _ => None,
            };
            if let Some(bucket) = bucket {
                if aggregates.histogram.is_some() {
                    return Err("aggregate names at most one of hour and day".into());
                }
                aggregates.histogram = Some(bucket);
                continue;
            }
            let Some((_, field)) = TOP_FIELDS.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "aggregate {name:?} is not one of hour, day, actor, action, resource, outcome, source, writer"
                ));
            };
            if !aggregates.top.contains(field) {
                aggregates.top.push(field.clone());
            }
        }
        Ok(aggregates)
    }
}

/// Parses a comma-separated list of stream names.
pub fn parse_streams(text: &str) -> Result<Vec<String>, String> {
    let mut streams: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        crate::scan::check_stream(name).map_err(|e| format!("stream {name:?}: {e}"))?;
        if !streams.iter().any(|s| s == name) {
            streams.push(name.to_string());
        }
    }
    if streams.len() > MAX_STREAMS {
        return Err(format!("at most {MAX_STREAMS} streams per search"));
    }
    Ok(streams)
}

/// Where the next page of a search begins: the tree size it is pinned to,
/// its order, the last entry given, the clock reading its relative times
/// were fixed against, and a digest of what was asked (the query text,
/// streams and order), which the next request must repeat. It grants
/// nothing: every page is authorized again, and a cursor can only narrow
/// a search to entries already in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub size: u64,
    pub order: Order,
    pub after: u64,
    pub now: Timestamp,
    digest: [u8; 16],
}

const CURSOR_TAG: &str = "s1";

impl Cursor {
    /// The digest of a search's query text, streams and order.
    fn digest(text: &str, streams: &[String], order: Order) -> [u8; 16] {
        let mut hash = Sha256::new();
        hash.update(b"stele/search-cursor/v1\n");
        hash.update(text.as_bytes());
        for stream in streams {
            hash.update(b"\n");
            hash.update(stream.as_bytes());
        }
        hash.update(order.as_str().as_bytes());
        let full = hash.finalize();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full[..16]);
        digest
    }

    /// The cursor after entry `after` of the search `(text, streams,
    /// order)` pinned to `size`, with relative times fixed at `now`.
    pub fn new(
        text: &str,
        streams: &[String],
        order: Order,
        size: u64,
        after: u64,
        now: Timestamp,
    ) -> Cursor {
        Cursor {
            size,
            order,
            after,
            now,
            digest: Self::digest(text, streams, order),
        }
    }

    /// The opaque text a client hands back.
    pub fn encode(&self) -> String {
        let text = format!(
            "{CURSOR_TAG}.{}.{}.{}.{}.{}",
            self.size,
            self.order.as_str(),
            self.after,
            self.now.as_nanosecond(),
            hex(&self.digest)
        );
        B64URL.encode(text)
    }

    /// Reads a cursor given back, for the search `(text, streams, order)`.
    pub fn decode(
        cursor: &str,
        text: &str,
        streams: &[String],
        order: Order,
    ) -> Result<Cursor, String> {
        let bad = || "cursor is not one this log gave".to_string();
        let bytes = B64URL.decode(cursor.trim()).map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let parts: Vec<&str> = plain.split('.').collect();
        let [tag, size, order_text, after, now, digest] = parts.as_slice() else {
            return Err(bad());
        };
        if *tag != CURSOR_TAG {
            return Err(bad());
        }
        let size: u64 = size.parse().map_err(|_| bad())?;
        let after: u64 = after.parse().map_err(|_| bad())?;
        let now: i128 = now.parse().map_err(|_| bad())?;
        let now = Timestamp::from_nanosecond(now).map_err(|_| bad())?;
        let cursor_order = Order::parse(order_text).map_err(|_| bad())?;
        if cursor_order != order || *digest != hex(&Self::digest(text, streams, order)) {
            return Err(
                "cursor belongs to another search: give the same query, streams and order as the page it came from".into(),
            );
        }
        if after >= size {
            return Err(bad());
        }
        Ok(Cursor::new(text, streams, order, size, after, now))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON of a search page: the events as `scan::entry_json` writes
/// them, counts, aggregates and the cursor of the next page (`null` on
/// the last).
pub fn page_json(
    page: &Page,
    query: &Query,
    order: Order,
    aggregates: &Aggregates,
    size: u64,
    next: Option<&Cursor>,
) -> Value {
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| crate::scan::entry_json(e.index.0, e))
        .collect();
    let mut answer = json!({
        "query": query.to_string(),
        "order": order.as_str(),
        "size": size,
        "count": page.count,
        "events": events,
        "next": next.map(Cursor::encode),
    });
    if let Some(map) = answer.as_object_mut() {
        if let Some(bucket) = aggregates.histogram {
            let buckets: Vec<Value> = page
                .histogram
                .iter()
                .map(|(start, count)| json!({"start": start.to_string(), "count": count}))
                .collect();
            let bucket = match bucket {
                Bucket::Hour => "hour",
                Bucket::Day => "day",
            };
            map.insert(
                "histogram".into(),
                json!({"bucket": bucket, "buckets": buckets}),
            );
        }
        if !page.top.is_empty() {
            let top: serde_json::Map<String, Value> = page
                .top
                .iter()
                .map(|(field, values)| {
                    let values: Vec<Value> = values
                        .iter()
                        .map(|v| json!({"value": &*v.value, "count": v.count}))
                        .collect();
                    (field_name(field).to_string(), Value::from(values))
                })
                .collect();
            map.insert("top".into(), Value::Object(top));
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_for_its_own_search_only() {
        let now: Timestamp = "2026-12-07T10:00:00.123456789Z".parse().unwrap_or_default();
        let streams = vec!["ops".to_string()];
        let cursor = Cursor::new("actor:bob", &streams, Order::Newest, 900, 512, now);
        let text = cursor.encode();
        assert_eq!(
            Cursor::decode(&text, "actor:bob", &streams, Order::Newest),
            Ok(cursor.clone())
        );
        for (q, s, o) in [
            ("actor:alice", streams.clone(), Order::Newest),
            ("actor:bob", vec![], Order::Newest),
            ("actor:bob", streams.clone(), Order::Oldest),
        ] {
            assert!(Cursor::decode(&text, q, &s, o).is_err());
        }
        for bad in ["", "xyz", &B64URL.encode("s1.5.newest.9.0.00"), &text[1..]] {
            assert!(Cursor::decode(bad, "actor:bob", &streams, Order::Newest).is_err());
        }
    }

    #[test]
    fn aggregates_and_streams_are_checked() {
        let a = Aggregates::parse("day, actor,resource,actor").unwrap_or_default();
        assert_eq!(a.histogram, Some(Bucket::Day));
        assert_eq!(a.top, vec![Field::Actor, Field::Resource]);
        assert!(Aggregates::parse("day,hour").is_err());
        assert!(Aggregates::parse("week").is_err());
        assert!(Aggregates::parse("id").is_err());
        assert_eq!(parse_streams("a, b,a"), Ok(vec!["a".into(), "b".into()]));
        assert!(parse_streams("../x").is_err());
    }
}
