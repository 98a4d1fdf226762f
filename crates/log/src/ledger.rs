//! The governance ledger: policy versions, legal holds and purges as the
//! log itself records them, read back from the `_system` stream.
//!
//! The log is the source of truth for every decision that can delete data:
//! `policy.applied`, `hold.placed`, `hold.released` and `retention.purge`
//! events are appended (durably) before the files beside the log change.
//! Those files — `policies/<seq>.json`, `holds.json`, the `.purged`
//! tombstones — are caches of this ledger. [`Log::open`] replays the ledger
//! and reconciles: a cache entry a crash left unwritten is rebuilt from its
//! event, and a cache entry that disagrees with the log, or that no event
//! records, makes the open fail naming the file and the event, so nothing
//! acts on it. `verify` replays it again from the log alone and proves that
//! every purge was due under the versions and holds recorded before it.
//!
//! Replay reads only the `_system` segments (walked record by record up to
//! their committed length), never the whole index: its cost is the number
//! of system events, not the size of the log.
//!
//! This module does not decide retention (see `stele_policy::purge_after`
//! and `governance`); it only says what the log recorded, in log order.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use stele_event::time::{parse_timestamp, timestamp_text};
use stele_policy::PolicySource;

use crate::error::{LogError, LogResult};
use crate::governance::{Hold, PolicyVersion, SYSTEM_STREAM, SYSTEM_WRITER};
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::system_event::{
    HoldRecord, PolicyApplied, RetentionDue, RetentionPurge, action, attributes_from, client_id,
};

/// One `policy.applied` event.
#[derive(Debug, Clone)]
pub(crate) struct LedgerPolicy {
    pub seq: u64,
    pub hash: String,
    pub activated_at: i64,
    pub applied_by: String,
    /// `None` in events written before the log recorded it.
    pub prior_data: Option<bool>,
    /// The policy itself; `None` in events written before the log recorded
    /// sources (the cache file's source is then checked by its hash).
    pub source: Option<PolicySource>,
    pub event_index: u64,
}

/// One `retention.purge` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerPurge {
    pub segment: u32,
    pub attributes: Value,
    pub decided_at: i64,
    pub event_index: u64,
}

/// Every governance decision the log records, in log order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub policies: Vec<LedgerPolicy>,
    pub holds: Vec<Hold>,
    pub purges: BTreeMap<u32, LedgerPurge>,
    /// `retention.due` announcements: event index → (segment, announced
    /// at, grace in seconds).
    pub announcements: BTreeMap<u64, (u32, i64, u64)>,
    /// The newest time recorded by any system event (`received_at`), Unix
    /// seconds.
    pub newest: Option<i64>,
    /// `(event index, time, what)` of every time a governance event
    /// recorded, in log order: they must never go backwards.
    pub times: Vec<(u64, i64, String)>,
    /// The index of the latest `audit.attestation` event
    /// (`audit/latest.json` must hold it).
    pub latest_attestation: Option<u64>,
}

/// A governance event of the `_system` stream, as read back; its
/// attributes are read through the writer's types
/// ([`crate::system_event`]).
struct LedgerEvent {
    index: u64,
    action: String,
    client_id: Option<String>,
    received_at: i64,
    attributes: Map<String, Value>,
}

fn seconds(text: &str) -> Option<i64> {
    parse_timestamp(text).ok()
}

fn bad(index: u64, action: &str, what: impl std::fmt::Display) -> LogError {
    LogError::Integrity(format!(
        "entry {index} ({action} in {SYSTEM_STREAM}): {what}"
    ))
}

impl LedgerEvent {
    /// The attributes read as the writer's type `T`.
    fn attributes<T: serde::de::DeserializeOwned>(&self) -> LogResult<T> {
        attributes_from(self.attributes.clone()).map_err(|e| bad(self.index, &self.action, e))
    }

    /// An RFC 3339 time of the attributes, as Unix seconds.
    fn time(&self, name: &str, value: &str) -> LogResult<i64> {
        seconds(value).ok_or_else(|| {
            bad(
                self.index,
                &self.action,
                format!("attribute {name:?} is not an RFC 3339 time: {value:?}"),
            )
        })
    }
}

/// The governance actions the ledger replays.
const LEDGER_ACTIONS: [&str; 6] = [
    action::POLICY_APPLIED,
    action::HOLD_PLACED,
    action::HOLD_RELEASED,
    action::RETENTION_PURGE,
    action::RETENTION_DUE,
    action::AUDIT_ATTESTATION,
];

impl Ledger {
    /// Replays every governance event of `log`'s `_system` stream.
    pub(crate) fn replay(log: &LogReader) -> LogResult<Ledger> {
        let mut ledger = Ledger::default();
        for event in system_events(log)? {
            ledger.newest = Some(
                ledger
                    .newest
                    .map_or(event.received_at, |n| n.max(event.received_at)),
            );
            match event.action.as_str() {
                action::POLICY_APPLIED => ledger.policy(&event)?,
                action::HOLD_PLACED => ledger.hold_placed(&event)?,
                action::HOLD_RELEASED => ledger.hold_released(&event)?,
                action::RETENTION_PURGE => ledger.purge(&event)?,
                action::RETENTION_DUE => ledger.announcement(&event)?,
                action::AUDIT_ATTESTATION => ledger.latest_attestation = Some(event.index),
                _ => {}
            }
        }
        Ok(ledger)
    }

    fn policy(&mut self, event: &LedgerEvent) -> LogResult<()> {
        let applied: PolicyApplied = event.attributes()?;
        let seq = applied.seq;
        let expected = self.policies.len() as u64 + 1;
        if seq != expected || event.client_id.as_deref() != Some(&client_id::policy(seq)) {
            return Err(bad(
                event.index,
                &event.action,
                format!("records policy version {seq}, but the next version is {expected}"),
            ));
        }
        let source = match applied.source {
            None | Some(Value::Null) => None,
            Some(value) => {
                let bytes =
                    serde_json::to_vec(&value).map_err(|e| bad(event.index, &event.action, e))?;
                Some(
                    PolicySource::from_bytes(&bytes)
                        .map_err(|e| bad(event.index, &event.action, e))?,
                )
            }
        };
        let activated_at = event.time("activated_at", &applied.activated_at)?;
        self.times.push((
            event.index,
            activated_at,
            format!("policy version {seq} activated"),
        ));
        self.policies.push(LedgerPolicy {
            seq,
            hash: applied.hash,
            activated_at,
            applied_by: applied.applied_by,
            prior_data: applied.prior_data,
            source,
            event_index: event.index,
        });
        Ok(())
    }

    fn hold_fields(event: &LedgerEvent) -> LogResult<Hold> {
        Ok(event.attributes::<HoldRecord>()?.hold())
    }

    fn hold_placed(&mut self, event: &LedgerEvent) -> LogResult<()> {
        let mut hold = Self::hold_fields(event)?;
        if event.client_id.as_deref() != Some(&client_id::hold_placed(&hold.id))
            || self.holds.iter().any(|h| h.id == hold.id)
            || hold.released_at.is_some()
        {
            return Err(bad(
                event.index,
                &event.action,
                format!("is not a first placement of hold {}", hold.id),
            ));
        }
        let placed_at = event.time("placed_at", &hold.placed_at)?;
        self.times
            .push((event.index, placed_at, format!("hold {} placed", hold.id)));
        hold.placed_event = Some(event.index);
        self.holds.push(hold);
        Ok(())
    }

    fn hold_released(&mut self, event: &LedgerEvent) -> LogResult<()> {
        let fields = Self::hold_fields(event)?;
        let released_at = event.time(
            "released_at",
            fields.released_at.as_deref().unwrap_or_default(),
        )?;
        let Some(hold) = self.holds.iter_mut().find(|h| h.id == fields.id) else {
            return Err(bad(
                event.index,
                &event.action,
                format!(
                    "releases hold {}, which no earlier hold.placed event placed",
                    fields.id
                ),
            ));
        };
        if hold.released_event.is_some()
            || event.client_id.as_deref() != Some(&client_id::hold_released(&fields.id))
            || fields.released_by.is_none()
        {
            return Err(bad(
                event.index,
                &event.action,
                format!("is not the one release of hold {}", fields.id),
            ));
        }
        hold.released_by = fields.released_by;
        hold.released_at = fields.released_at;
        hold.released_event = Some(event.index);
        self.times.push((
            event.index,
            released_at,
            format!("hold {} released", fields.id),
        ));
        Ok(())
    }

    fn purge(&mut self, event: &LedgerEvent) -> LogResult<()> {
        let purge: RetentionPurge = event.attributes()?;
        let segment = purge.segment;
        let decided_at = event.time("decided_at", &purge.decided_at)?;
        if self.purges.contains_key(&segment) {
            return Err(bad(
                event.index,
                &event.action,
                format!("purges segment {segment} a second time"),
            ));
        }
        self.times.push((
            event.index,
            decided_at,
            format!("purge of segment {segment} decided"),
        ));
        self.purges.insert(
            segment,
            LedgerPurge {
                segment,
                attributes: Value::Object(event.attributes.clone()),
                decided_at,
                event_index: event.index,
            },
        );
        Ok(())
    }

    fn announcement(&mut self, event: &LedgerEvent) -> LogResult<()> {
        let due: RetentionDue = event.attributes()?;
        let at = event.time("announced_at", &due.announced_at)?;
        self.announcements
            .insert(event.index, (due.segment, at, due.grace_seconds));
        Ok(())
    }

    /// Why the purge of `record` was not announced as `retention.due`
    /// requires, if it was not: an announcement of the same segment,
    /// earlier in the log, at least its grace period before the decision.
    /// A purge that names no announcement is accepted only before the
    /// log's first announcement (written by a build that did not announce).
    pub(crate) fn unannounced(&self, record: &LedgerPurge) -> Option<String> {
        let Some(announced) = record.attributes.get("announced") else {
            let first = self.announcements.keys().next()?;
            return (*first < record.event_index).then(|| {
                format!(
                    "the purge of segment {} (entry {}) names no retention.due announcement",
                    record.segment, record.event_index
                )
            });
        };
        let Some(index) = announced.as_u64() else {
            return Some(format!(
                "entry {}: \"announced\" is not an entry",
                record.event_index
            ));
        };
        match self.announcements.get(&index) {
            Some(&(segment, at, grace))
                if segment == record.segment
                    && index < record.event_index
                    && record.decided_at.saturating_sub(at) >= grace as i64 =>
            {
                None
            }
            Some(&(segment, at, grace)) => Some(format!(
                "the purge of segment {} (entry {}, decided {}) does not follow its announcement (entry {index}: segment {segment}, announced {}, grace {grace} s)",
                record.segment,
                record.event_index,
                timestamp_text(record.decided_at),
                timestamp_text(at)
            )),
            None => Some(format!(
                "the purge of segment {} (entry {}) names entry {index}, which is not a retention.due announcement",
                record.segment, record.event_index
            )),
        }
    }

    /// The first governance time that is earlier than one recorded before it
    /// in the log, as a message.
    pub(crate) fn backwards_time(&self) -> Option<String> {
        let mut newest: Option<&(u64, i64, String)> = None;
        for entry in &self.times {
            if let Some(before) = newest
                && entry.1 < before.1
            {
                return Some(format!(
                    "entry {}: {} at {}, earlier than entry {}: {} at {}",
                    entry.0,
                    entry.2,
                    timestamp_text(entry.1),
                    before.0,
                    before.2,
                    timestamp_text(before.1)
                ));
            }
            if newest.is_none_or(|n| entry.1 >= n.1) {
                newest = Some(entry);
            }
        }
        None
    }
}

/// Every event of the `_system` stream with a governance action, in log
/// order, read by walking the `_system` segments up to their committed
/// lengths (each entry then read back through the index, which checks its
/// location, tag and commitment).
fn system_events(log: &LogReader) -> LogResult<Vec<LedgerEvent>> {
    let mut indices: Vec<u64> = Vec::new();
    let (segments, purged) = (log.segment_infos(), log.purge_records());
    for (id, info) in &segments {
        if info.header.stream != SYSTEM_STREAM || purged.contains_key(id) {
            continue;
        }
        let bytes = std::fs::read(&info.path)
            .map_err(|e| stele_store::StoreError::io("read", &info.path, e))?;
        let (header, header_len) = stele_store::segment::read_header(&info.path)?;
        let end = log
            .committed_length(*id)
            .unwrap_or(bytes.len() as u64)
            .min(bytes.len() as u64) as usize;
        let mut offset = header_len as usize;
        while offset < end {
            let Some((index, _, total)) = stele_store::segment::peek_record(&bytes[offset..end])
            else {
                return Err(LogError::Integrity(format!(
                    "{}: the record at byte {offset} cannot be read",
                    info.path.display()
                )));
            };
            // A block holds several entries (segment versions 3 and 4).
            let held = if stele_store::segment::holds_blocks(header.version) {
                stele_store::block::peek_indices(&bytes[offset..end]).ok_or_else(|| {
                    LogError::Integrity(format!(
                        "{}: the block at byte {offset} cannot be read",
                        info.path.display()
                    ))
                })?
            } else {
                vec![index]
            };
            // Records past the log's size are a running writer's (or an
            // interrupted append's) and not part of what is read here.
            indices.extend(held.into_iter().filter(|index| *index < log.size()));
            offset += total;
        }
    }
    indices.sort_unstable();
    let mut events = Vec::new();
    for index in indices {
        let stored = log.get(EntryIndex(index))?;
        let envelope = stored.envelope;
        if envelope.writer != SYSTEM_WRITER || envelope.stream != SYSTEM_STREAM {
            continue;
        }
        let action = envelope.event.action.clone();
        if !LEDGER_ACTIONS.contains(&action.as_str()) {
            continue;
        }
        let received_at = seconds(&envelope.received_at).ok_or_else(|| {
            bad(
                index,
                &action,
                format!("received_at {:?} is not a time", envelope.received_at),
            )
        })?;
        events.push(LedgerEvent {
            index,
            action,
            client_id: envelope.event.id.clone(),
            received_at,
            attributes: envelope.event.attributes.clone().unwrap_or_default(),
        });
    }
    Ok(events)
}

/// Where two records of the same thing disagree, as a message naming both.
pub(crate) fn disagreement(file: &std::path::Path, event: u64, what: &str) -> LogError {
    LogError::Integrity(format!(
        "{}: {what} (the log's event is entry {event}); the file beside the log disagrees with the log, so nothing acts on it — restore the file from the log's record or investigate who changed it",
        file.display()
    ))
}

/// Which fields of a cached hold differ from the log's record of it.
pub(crate) fn hold_differences(cached: &Hold, logged: &Hold) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let pairs: [(&'static str, bool); 10] = [
        ("streams", cached.streams == logged.streams),
        ("from", cached.from == logged.from),
        ("to", cached.to == logged.to),
        ("reason", cached.reason == logged.reason),
        ("placed_by", cached.placed_by == logged.placed_by),
        ("placed_at", cached.placed_at == logged.placed_at),
        ("released_by", cached.released_by == logged.released_by),
        ("released_at", cached.released_at == logged.released_at),
        ("placed_event", cached.placed_event == logged.placed_event),
        (
            "released_event",
            cached.released_event == logged.released_event,
        ),
    ];
    for (name, same) in pairs {
        if !same {
            fields.push(name);
        }
    }
    fields
}

/// Indexes of the ledger's holds by id.
pub(crate) fn holds_by_id(holds: &[Hold]) -> HashMap<&str, &Hold> {
    holds.iter().map(|h| (h.id.as_str(), h)).collect()
}

/// Which fields of a cached policy version differ from the log's record.
pub(crate) fn policy_differences(cached: &PolicyVersion, logged: &LedgerPolicy) -> Vec<String> {
    let mut differs = Vec::new();
    if cached.seq != logged.seq {
        differs.push(format!("seq {} (the log: {})", cached.seq, logged.seq));
    }
    if cached.hash != logged.hash {
        differs.push(format!("hash {} (the log: {})", cached.hash, logged.hash));
    }
    if cached.activated_at != logged.activated_at {
        differs.push("activated_at".to_string());
    }
    if cached.applied_by != logged.applied_by {
        differs.push("applied_by".to_string());
    }
    if logged.prior_data.is_some_and(|p| p != cached.prior_data) {
        differs.push("prior_data".to_string());
    }
    if cached.event_index.is_some_and(|i| i != logged.event_index) {
        differs.push("event_index".to_string());
    }
    differs
}

/// What `verify` finds wrong with governance, from the log alone: the
/// ledger replays (every event well formed and in order), its recorded
/// times never go backwards, and the files beside the log — read from
/// disk again, not from the open handle — say exactly what the log says.
/// Each problem is `(where, what)`.
/// `audit/latest.json` against the latest `audit.attestation` event: a
/// file removed, or put back from an earlier attestation (one that
/// reported a clean run, say), while the log records a later one. That the
/// file holds exactly the event it names is checked with the other audit
/// files (`verify_files`).
fn attestation_problem(log: &LogReader, ledger: &Ledger) -> Option<(String, String)> {
    let latest = ledger.latest_attestation?;
    let path = crate::audit::audit_dir(&log.layout().root).join("latest.json");
    match crate::audit::latest_attestation(&log.layout().root) {
        Ok(Some(attestation)) => match attestation.event_index {
            Some(index) if index < latest => Some((
                path.display().to_string(),
                format!(
                    "holds the attestation of entry {index}, but the log's latest audit.attestation event is entry {latest}; a writing open rebuilds it from the event"
                ),
            )),
            // The latest (or one made beside a read-only view), or one
            // naming no event: the audit file checks judge it.
            _ => None,
        },
        Ok(None) => Some((
            path.display().to_string(),
            format!(
                "is missing, but the log records an audit.attestation event (entry {latest}); a writing open rebuilds it from the event"
            ),
        )),
        // Unreadable: reported by the audit file checks.
        Err(_) => None,
    }
}

pub(crate) fn governance_problems(log: &LogReader) -> Vec<(String, String)> {
    let problems = governance_problems_in(log);
    // A frozen view beside a running writer: a policy, hold or attestation
    // recorded since the view was taken has its file already. Only what
    // the log as it is now does not account for either is a problem.
    match log.live() {
        Some(live) if !problems.is_empty() => {
            let now = governance_problems_in(&live);
            problems.into_iter().filter(|p| now.contains(p)).collect()
        }
        _ => problems,
    }
}

fn governance_problems_in(log: &LogReader) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let ledger = match Ledger::replay(log) {
        Ok(ledger) => ledger,
        Err(e) => {
            problems.push((SYSTEM_STREAM.to_string(), e.to_string()));
            return problems;
        }
    };
    if let Some(what) = ledger.backwards_time() {
        problems.push((
            SYSTEM_STREAM.to_string(),
            format!("governance time goes backwards: {what}"),
        ));
    }
    let root = &log.layout().root;
    if let Some(problem) = attestation_problem(log, &ledger) {
        problems.push(problem);
    }
    let policies_dir = root.join("policies");
    match crate::governance::read_policy_versions(root) {
        Err(e) => problems.push((policies_dir.display().to_string(), e.to_string())),
        Ok(cached) => {
            for (position, logged) in ledger.policies.iter().enumerate() {
                let file = policies_dir.join(format!("{:06}.json", logged.seq));
                match cached.get(position) {
                    None => problems.push((
                        file.display().to_string(),
                        format!(
                            "missing: the log records policy version {} (entry {})",
                            logged.seq, logged.event_index
                        ),
                    )),
                    Some(version) => {
                        let differs = policy_differences(version, logged);
                        if !differs.is_empty() || version.event_index.is_none() {
                            problems.push((
                                file.display().to_string(),
                                format!(
                                    "differs from its policy.applied event (entry {}): {}",
                                    logged.event_index,
                                    if differs.is_empty() {
                                        "event_index".to_string()
                                    } else {
                                        differs.join(", ")
                                    }
                                ),
                            ));
                        }
                    }
                }
            }
            for extra in cached.iter().skip(ledger.policies.len()) {
                problems.push((
                    policies_dir
                        .join(format!("{:06}.json", extra.seq))
                        .display()
                        .to_string(),
                    format!(
                        "no policy.applied event in the log records policy version {}",
                        extra.seq
                    ),
                ));
            }
        }
    }
    let holds_path = root.join("holds.json");
    match crate::governance::read_holds(&holds_path) {
        Err(e) => problems.push((holds_path.display().to_string(), e.to_string())),
        Ok(cached) => {
            let logged = holds_by_id(&ledger.holds);
            for hold in &cached {
                match logged.get(hold.id.as_str()) {
                    None => problems.push((
                        holds_path.display().to_string(),
                        format!("no hold.placed event in the log records hold {}", hold.id),
                    )),
                    Some(record) => {
                        let differs = hold_differences(hold, record);
                        if !differs.is_empty() {
                            problems.push((
                                holds_path.display().to_string(),
                                format!(
                                    "hold {} differs from its events (entries {}{}) in {}",
                                    hold.id,
                                    record.placed_event.unwrap_or_default(),
                                    record
                                        .released_event
                                        .map(|r| format!(", {r}"))
                                        .unwrap_or_default(),
                                    differs.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
            let cached_ids: std::collections::HashSet<&str> =
                cached.iter().map(|h| h.id.as_str()).collect();
            for hold in &ledger.holds {
                if !cached_ids.contains(hold.id.as_str()) {
                    problems.push((
                        holds_path.display().to_string(),
                        format!(
                            "missing hold {}, which the log places (entry {})",
                            hold.id,
                            hold.placed_event.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    for record in ledger.purges.values() {
        if let Some(what) = ledger.unannounced(record) {
            problems.push((SYSTEM_STREAM.to_string(), what));
        }
    }
    for (id, record) in &ledger.purges {
        if !log.purge_records().contains_key(id) {
            // The event names the stream and day, hence the file's path.
            // The event names the stream and day, hence the file (shown
            // only: nothing is opened by this name).
            let file = match (
                record.attributes["stream"].as_str(),
                record.attributes["epoch"].as_str(),
            ) {
                (Some(stream), Some(epoch)) => format!(
                    "{} (segment {id})",
                    log.layout()
                        .segments()
                        .join(stream)
                        .join(format!("{epoch}.purged"))
                        .display()
                ),
                _ => format!("segment {id}"),
            };
            problems.push((
                file,
                format!(
                    "the log records its purge (entry {}), but its purge record is missing",
                    record.event_index
                ),
            ));
        }
    }
    problems
}
