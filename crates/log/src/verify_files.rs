//! `verify`'s checks of the files beside the log that mirror its events:
//! `keys/kek.info` against the `key.rotated` events, and `audit/latest.json`
//! and `audit/state.json` against the `audit.attestation` event and the
//! signed checkpoints. Each file must say what the log says; the log is the
//! source of truth.
//!
//! The `key.rotated` events are found without reading every event: each
//! carries the client id `kek:<number>` under the system writer, whose hash
//! is in its index record ([`KeyEventWatch`] collects them while `verify`
//! reads the index window by window).

use std::collections::HashMap;

use serde_json::Value;

use crate::audit::Attestation;
use crate::governance::{SYSTEM_STREAM, SYSTEM_WRITER};
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::rotate::{KekAgeSource, read_kek_file};
use crate::system_event::{SystemEvent, action, client_id};

/// Rotation numbers looked for beyond the one `kek.info` names: a
/// `kek.info` rolled back further than this behind the log's latest
/// rotation is still caught by its event's content, unless it also claims
/// a rotation the log never recorded.
const LATER_ROTATIONS: u64 = 1024;

/// The entries whose idempotency hash is that of a `key.rotated` event
/// (client id `kek:<number>`, system writer), collected while the index is
/// read.
#[derive(Debug, Default)]
pub(crate) struct KeyEventWatch {
    /// Hash → rotation number.
    wanted: HashMap<u64, u64>,
    /// (rotation number, entry) of each index record carrying one.
    pub(crate) found: Vec<(u64, u64)>,
}

impl KeyEventWatch {
    /// Watches for the rotations from 1 to `kek.info`'s number plus
    /// [`LATER_ROTATIONS`].
    pub(crate) fn new(log: &LogReader) -> KeyEventWatch {
        let number = read_kek_file(log.layout()).map_or(0, |(info, _)| info.number);
        let wanted = (1..=number.saturating_add(LATER_ROTATIONS))
            .map(|n| {
                (
                    crate::prepare::idempotency_hash(SYSTEM_WRITER, &client_id::kek(n)),
                    n,
                )
            })
            .collect();
        KeyEventWatch {
            wanted,
            found: Vec::new(),
        }
    }

    /// Notes entry `index` if its idempotency hash is one watched.
    pub(crate) fn see(&mut self, index: u64, idempotency: u64) {
        if idempotency != 0
            && let Some(number) = self.wanted.get(&idempotency)
        {
            self.found.push((*number, index));
        }
    }
}

/// The `key.rotated` events of the log, by rotation number: (entry,
/// attributes, actor). Entries whose hash matched but that are not such an
/// event (a hash collision, or a client event) are left out.
fn rotation_events(log: &LogReader, watch: &KeyEventWatch) -> HashMap<u64, (u64, Value, String)> {
    let mut out = HashMap::new();
    for (number, index) in &watch.found {
        let Ok(event) = log.get(EntryIndex(*index)) else {
            continue; // the segment pass reports an unreadable entry
        };
        let envelope = event.envelope;
        if envelope.stream == SYSTEM_STREAM
            && envelope.writer == SYSTEM_WRITER
            && envelope.event.action == action::KEY_ROTATED
            && envelope.event.id.as_deref() == Some(client_id::kek(*number).as_str())
        {
            let attributes = Value::Object(envelope.event.attributes.unwrap_or_default());
            out.insert(*number, (*index, attributes, envelope.event.actor));
        }
    }
    out
}

/// Checks `keys/kek.info` against the `key.rotated` events: it must
/// describe the latest rotation the log records, with that event's number,
/// kind, creation time and re-wrapped key count (so editing `created_at`
/// to make an old key look young is found), and name that event. Returns
/// (problems, notes) as `(location, what)` pairs and lines.
pub(crate) fn check_kek_info(
    log: &LogReader,
    watch: &KeyEventWatch,
) -> (Vec<(String, String)>, Vec<String>) {
    let path = log.layout().kek_info().display().to_string();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let events = rotation_events(log, watch);
    let latest = events.keys().max().copied();
    let (info, owed) = match read_kek_file(log.layout()) {
        Ok(read) => read,
        Err(e) => {
            problems.push((path, e.to_string()));
            return (problems, notes);
        }
    };
    if info.source == KekAgeSource::KeyFileModified {
        if let Some(number) = latest {
            let (index, _, _) = &events[&number];
            problems.push((
                path,
                format!(
                    "is missing, but the log records KEK rotation {number} (key.rotated event {index}): the key's age would be read from the key file instead"
                ),
            ));
        }
        return (problems, notes);
    }
    if let Some(number) = latest
        && number > info.number
    {
        let (index, _, _) = &events[&number];
        problems.push((
            path.clone(),
            format!(
                "describes KEK rotation {}, but the log records rotation {number} (key.rotated event {index}): it is older than the key it describes",
                info.number
            ),
        ));
        return (problems, notes);
    }
    let Some((index, attributes, actor)) = events.get(&info.number) else {
        match &owed {
            Some(event) if event.index.is_some() => problems.push((
                path,
                format!(
                    "names key.rotated event {} for rotation {}, but the log holds no such event",
                    event.index.unwrap_or_default(),
                    info.number
                ),
            )),
            Some(_) => notes.push(format!(
                "{path}: the key.rotated event of rotation {} is not yet appended (a crash after the rotation): the next open appends it",
                info.number
            )),
            None if latest.is_some() => problems.push((
                path,
                format!(
                    "describes KEK rotation {}, which the log does not record",
                    info.number
                ),
            )),
            None => notes.push(format!(
                "{path}: KEK rotation {} was made without a key.rotated event (only the library's rotate_kek does that); its created_at cannot be checked against the log",
                info.number
            )),
        }
        return (problems, notes);
    };
    let expected_created = stele_event::time::timestamp_text(info.created_at);
    let mut differs = Vec::new();
    if attributes.get("number").and_then(Value::as_u64) != Some(info.number) {
        differs.push("number".to_string());
    }
    if attributes.get("kind").and_then(Value::as_str) != Some(info.kind.as_str()) {
        differs.push("kind".to_string());
    }
    if attributes.get("created_at").and_then(Value::as_str) != Some(expected_created.as_str()) {
        differs.push(format!(
            "created_at ({expected_created} here, {} in the event)",
            attributes
                .get("created_at")
                .and_then(Value::as_str)
                .unwrap_or("none")
        ));
    }
    if let Some(event) = &owed {
        if attributes
            .get("data_keys_rewrapped")
            .and_then(Value::as_u64)
            != Some(event.data_keys_rewrapped)
        {
            differs.push("data_keys_rewrapped".to_string());
        }
        if &event.by != actor {
            differs.push("rotated_by".to_string());
        }
        if event.index.is_some_and(|i| i != *index) {
            differs.push(format!("event_index (the event is entry {index})"));
        }
    }
    if !differs.is_empty() {
        problems.push((
            path,
            format!(
                "does not match key.rotated event {index} of rotation {}: {}",
                info.number,
                differs.join(", ")
            ),
        ));
    }
    (problems, notes)
}

/// Checks `audit/latest.json` (a genuine attestation of this log, signed by
/// its key and recorded, member for member, as the `audit.attestation`
/// event it names) and `audit/state.json` (its verified size and root are
/// those of a signed checkpoint). `checkpoints` holds the (size, root) of
/// every signed checkpoint.
pub(crate) fn check_audit_files(
    log: &LogReader,
    checkpoints: &[(u64, stele_tlog::Hash)],
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let root = &log.layout().root;
    let latest_path = root.join("audit").join("latest.json").display().to_string();
    match crate::audit::latest_attestation(root) {
        Ok(None) => {}
        // Made after this view (by a writer beside it): checked by a later
        // verification.
        Ok(Some(attestation))
            if log.beside_writer() && attestation.event_index.is_some_and(|i| i >= log.size()) => {}
        Ok(Some(attestation)) => {
            if let Err(e) = check_attestation(log, &attestation) {
                problems.push((latest_path, e));
            }
        }
        Err(e) => problems.push((latest_path, e.to_string())),
    }
    let state_path = root.join("audit").join("state.json").display().to_string();
    match crate::audit::read_audit_state(&log.layout().root) {
        Ok(state) => {
            let signed = checkpoints.iter().any(|(size, root)| {
                *size == state.verified_size
                    && (state.verified_size == 0 && state.verified_root.is_empty()
                        || stele_tlog::hash::hex(&root.0) == state.verified_root)
            });
            let beyond_view = log.beside_writer()
                && checkpoints
                    .last()
                    .is_some_and(|(size, _)| state.verified_size > *size);
            if !signed && !beyond_view {
                problems.push((
                    state_path,
                    format!(
                        "verified_size {} with root {:?} is not a signed checkpoint of this log",
                        state.verified_size, state.verified_root
                    ),
                ));
            }
        }
        Err(e) => problems.push((state_path, e.to_string())),
    }
    problems
}

/// One attestation against the log: origin, signature, and the event it
/// names holding exactly it.
fn check_attestation(log: &LogReader, attestation: &Attestation) -> Result<(), String> {
    if attestation.origin != log.meta().origin {
        return Err(format!(
            "is an attestation of {:?}, not of this log ({:?})",
            attestation.origin,
            log.meta().origin
        ));
    }
    attestation.verify_signature(log.verifier())?;
    let index = attestation
        .event_index
        .ok_or("names no audit.attestation event")?;
    let event = log
        .get(EntryIndex(index))
        .map_err(|e| format!("its audit.attestation event {index}: {e}"))?;
    let envelope = event.envelope;
    let expected = SystemEvent::AuditAttestation {
        actor: envelope.event.actor.clone(),
        attestation: Box::new(attestation.clone()),
    }
    .attributes();
    let same = envelope.stream == SYSTEM_STREAM
        && envelope.writer == SYSTEM_WRITER
        && envelope.event.action == action::AUDIT_ATTESTATION
        && envelope.event.attributes.map(Value::Object) == Some(expected);
    if !same {
        return Err(format!(
            "entry {index} is not the audit.attestation event holding this attestation"
        ));
    }
    Ok(())
}
