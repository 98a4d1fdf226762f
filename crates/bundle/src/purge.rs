//! Purge records: the `retention.purge` `_system` events a bundle carries
//! for the entries whose content a retention purge deleted. This module
//! reads one from its verified envelope and says which entries it covers;
//! the shape of the event is `docs/formats/purge.md`. It does not check
//! that the purge was allowed (that needs the policy history: `stele
//! verify` on the log does it).

use serde_json::{Map, Value};
use stele_event::Envelope;

/// Most ranges a purge event lists (`MAX_LISTED_RANGES` of the log): more
/// are refused, which bounds what a verifier keeps of each record.
pub const MAX_LISTED_RANGES: usize = 512;

/// What a `retention.purge` event says was purged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    /// The event's log index.
    pub index: u64,
    /// The purged segment's id.
    pub segment: u64,
    pub stream: String,
    /// The epoch (UTC day) as `YYYY-MM-DD`.
    pub epoch: String,
    /// When the purge was decided (RFC 3339).
    pub decided_at: String,
    /// How many entries the segment held, the lowest and the highest.
    pub entries: u64,
    pub first: u64,
    pub last: u64,
    /// The entries as inclusive ranges, when the event lists them (at most 512).
    pub ranges: Option<Vec<[u64; 2]>>,
}

impl PurgeRecord {
    /// Reads the purge record of a verified envelope at `index`: a `_system`
    /// event by the writer `stele` with action `retention.purge`, client id
    /// `purge:<segment>` and the attributes `docs/formats/purge.md` lists.
    pub fn from_envelope(index: u64, envelope: &Envelope) -> Result<PurgeRecord, String> {
        if envelope.stream != "_system" || envelope.writer != "stele" {
            return Err(format!(
                "not a system event (stream {:?}, writer {:?})",
                envelope.stream, envelope.writer
            ));
        }
        let event = &envelope.event;
        if event.action != "retention.purge" {
            return Err(format!(
                "action is {:?}, not \"retention.purge\"",
                event.action
            ));
        }
        let empty = Map::new();
        let attributes = event.attributes.as_ref().unwrap_or(&empty);
        let record = PurgeRecord {
            index,
            segment: number(attributes, "segment")?,
            stream: text(attributes, "stream")?,
            epoch: text(attributes, "epoch")?,
            decided_at: text(attributes, "decided_at")?,
            entries: number(attributes, "entries")?,
            first: number(attributes, "first")?,
            last: number(attributes, "last")?,
            ranges: ranges(attributes)?,
        };
        let expected_id = format!("purge:{}", record.segment);
        if event.id.as_deref() != Some(expected_id.as_str()) {
            return Err(format!("client id is {:?}, not {expected_id:?}", event.id));
        }
        Ok(record)
    }

    /// Whether entry `index` was one of the purged segment's: within
    /// `first..=last`, and in one of the listed ranges when they are listed.
    pub fn covers(&self, index: u64) -> bool {
        if self.entries == 0 || index < self.first || index > self.last {
            return false;
        }
        match &self.ranges {
            Some(ranges) => ranges.iter().any(|r| r[0] <= index && index <= r[1]),
            None => true,
        }
    }
}

fn number(attributes: &Map<String, Value>, name: &str) -> Result<u64, String> {
    attributes
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("attribute {name:?} is not a whole number"))
}

fn text(attributes: &Map<String, Value>, name: &str) -> Result<String, String> {
    attributes
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("attribute {name:?} is not a string"))
}

fn ranges(attributes: &Map<String, Value>) -> Result<Option<Vec<[u64; 2]>>, String> {
    let bad = || "attribute \"ranges\" is not null or a list of [from, to] pairs".to_string();
    match attributes.get("ranges") {
        Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() > MAX_LISTED_RANGES => Err(format!(
            "attribute \"ranges\" lists {} ranges, more than {MAX_LISTED_RANGES}",
            items.len()
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([from, to]) => match (from.as_u64(), to.as_u64()) {
                    (Some(from), Some(to)) if from <= to => Ok([from, to]),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad()),
    }
}
