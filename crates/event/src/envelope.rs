//! The stored envelope: a validated client event plus the fields the server
//! assigns (event id, effective stream, receive time, writer, source) and
//! the original payload text. Its RFC 8785 canonical bytes are what gets
//! encrypted at rest and committed in the log. This module builds envelopes
//! ([`new_envelope`]), writes their canonical bytes on a fast path, and reads
//! them back strictly. It does no encryption and no hashing beyond what
//! [`crate::commitment`] offers.
//!
//! Layout decision: `event` holds the client's normalized fields exactly as
//! [`crate::parse_client_event`] returned them, its own `stream` and `source`
//! included when the client sent them. The top-level `stream` and `source`
//! are the effective values (client's, else the default stream or ingestion
//! channel). Keeping `event` unmodified means it is always what parsing
//! `payload` yields, which a verifier can check ([`Envelope::verify_payload`]);
//! the price is a few duplicated bytes when the client names its stream.

use serde_json::{Map, Value};

use crate::client::{self, ClientEvent, Mode};
use crate::error::EventError;
use crate::jcs;
use crate::json::{self, BigIntegers, ParseOptions};
use crate::limits::{Limits, MAX_DEPTH_CEILING};
use crate::{commitment, parse_client_event};

/// The value of the envelope's `v` member.
pub const ENVELOPE_VERSION: u64 = 1;

/// Envelope members, in canonical (UTF-16 code unit = ASCII byte) order.
pub const ENVELOPE_MEMBERS: [&str; 8] = [
    "event",
    "id",
    "payload",
    "received_at",
    "source",
    "stream",
    "v",
    "writer",
];

/// Deepest nesting accepted when reading an envelope back: `event` adds one
/// level around a client document, which was itself at most
/// [`MAX_DEPTH_CEILING`] deep.
const ENVELOPE_MAX_DEPTH: usize = MAX_DEPTH_CEILING + 1;

/// One stored event. See the module documentation for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Server-assigned event id: a UUID (v7 in practice) in lowercase
    /// hyphenated form.
    pub id: String,
    /// Effective stream: the client's, else the default the caller gave.
    pub stream: String,
    /// Server receive time, RFC 3339 UTC as `jiff::Timestamp` displays it.
    pub received_at: String,
    /// The authenticated principal that appended the event.
    pub writer: String,
    /// The client's `source` if given, else the ingestion channel.
    pub source: Option<String>,
    /// The client event as parsed and normalized.
    pub event: ClientEvent,
    /// The original event text, exactly as received.
    pub payload: String,
}

/// Builds the envelope for a freshly parsed event.
///
/// `raw` must be the bytes `parsed` was parsed from; they are kept verbatim
/// as `payload`. `id` is the server-assigned event id (a lowercase
/// hyphenated UUID), `received_at` the server clock reading, `writer` the
/// authenticated principal, `default_stream` the stream used when the client
/// names none (system streams allowed), and `channel` the ingestion channel
/// recorded as `source` when the client gives none.
pub fn new_envelope(
    parsed: ClientEvent,
    raw: &[u8],
    id: String,
    received_at: jiff::Timestamp,
    writer: &str,
    default_stream: &str,
    channel: &str,
) -> Result<Envelope, EventError> {
    let payload = std::str::from_utf8(raw)
        .map_err(|e| EventError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?
        .to_owned();
    check_event_id(&id)?;
    if writer.is_empty() {
        return Err(EventError::InvalidEnvelope {
            field: "writer".to_owned(),
            reason: "the writer must be a non-empty principal name",
        });
    }
    client::check_stored_invariants(&parsed)?;
    let stream = match &parsed.stream {
        Some(stream) => stream.clone(),
        None => {
            client::check_stream_at(default_stream, true, "stream")?;
            default_stream.to_owned()
        }
    };
    let source = match &parsed.source {
        Some(source) => source.clone(),
        None if channel.is_empty() => {
            return Err(EventError::InvalidEnvelope {
                field: "source".to_owned(),
                reason: "the ingestion channel must be non-empty",
            });
        }
        None => channel.to_owned(),
    };
    let received_at = received_at.to_string();
    // A Timestamp always displays in normalized form (UTC, `Z`, no trailing
    // fractional zeros); only instants before year 0000, which RFC 3339
    // cannot express, display otherwise (with a signed six-digit year).
    client::check_rfc3339_syntax(&received_at).map_err(|reason| EventError::InvalidTime {
        field: "received_at".to_owned(),
        reason: reason.to_owned(),
    })?;
    Ok(Envelope {
        id,
        stream,
        received_at,
        writer: writer.to_owned(),
        source: Some(source),
        event: parsed,
        payload,
    })
}

/// Computes the canonical envelope bytes from an envelope given as JSON, for
/// an offline verifier: the result, with the event's salt, gives the
/// commitment via [`crate::commitment`].
///
/// The JSON must be exactly an envelope (no extra or `null` members, `v` = 1,
/// normalized timestamps). Numbers in `attributes` must be the values the
/// canonical text holds; note that `serde_json` parses floats exactly only
/// with its `float_roundtrip` feature, so verifiers holding the canonical
/// bytes should prefer [`Envelope::from_canonical`].
pub fn envelope_canonical_from_json(value: &Value) -> Result<Vec<u8>, EventError> {
    Envelope::from_json(value).map(|envelope| envelope.canonical_bytes())
}

impl Envelope {
    /// The envelope as JSON: the `v` member plus every field, absent
    /// optional fields omitted.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("v".into(), Value::from(ENVELOPE_VERSION));
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("stream".into(), Value::String(self.stream.clone()));
        map.insert(
            "received_at".into(),
            Value::String(self.received_at.clone()),
        );
        map.insert("writer".into(), Value::String(self.writer.clone()));
        if let Some(source) = &self.source {
            map.insert("source".into(), Value::String(source.clone()));
        }
        map.insert("event".into(), self.event.to_json());
        map.insert("payload".into(), Value::String(self.payload.clone()));
        Value::Object(map)
    }

    /// The canonical (RFC 8785) bytes of [`Self::to_json`], written directly
    /// without building a `Value`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.estimated_canonical_len());
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out`, so a hot loop can reuse one
    /// buffer.
    ///
    /// Members are written in the fixed order of [`ENVELOPE_MEMBERS`]; only
    /// `event.attributes` goes through the general canonicalizer.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical_marked(out);
    }

    /// The canonical bytes and the stored form of the envelope: packed
    /// (see `stored.rs`) when that is smaller, else the canonical bytes
    /// again. The commitment is over the first; the second is what a
    /// segment record keeps after the salt.
    pub fn canonical_and_stored(&self) -> (Vec<u8>, Vec<u8>) {
        let mut canonical = Vec::with_capacity(self.estimated_canonical_len());
        let payload_at = self.write_canonical_marked(&mut canonical);
        let stored =
            crate::stored::pack(&canonical, payload_at).unwrap_or_else(|| canonical.clone());
        (canonical, stored)
    }

    /// [`Self::write_canonical`], returning where in `out` the `payload`
    /// string (quotes included) was written.
    fn write_canonical_marked(&self, out: &mut Vec<u8>) -> std::ops::Range<usize> {
        out.extend_from_slice(b"{\"event\":");
        self.event.write_canonical(out);
        out.extend_from_slice(b",\"id\":");
        jcs::write_string(&self.id, out);
        out.extend_from_slice(b",\"payload\":");
        let payload_start = out.len();
        jcs::write_string(&self.payload, out);
        let payload_at = payload_start..out.len();
        out.extend_from_slice(b",\"received_at\":");
        jcs::write_string(&self.received_at, out);
        if let Some(source) = &self.source {
            out.extend_from_slice(b",\"source\":");
            jcs::write_string(source, out);
        }
        out.extend_from_slice(b",\"stream\":");
        jcs::write_string(&self.stream, out);
        out.extend_from_slice(b",\"v\":1,\"writer\":");
        jcs::write_string(&self.writer, out);
        out.push(b'}');
        payload_at
    }

    /// Over-estimates the canonical length so one allocation usually
    /// suffices: the payload is escaped once in `payload` and appears
    /// (re-serialized) in `event`, and escaping rarely grows text by half.
    fn estimated_canonical_len(&self) -> usize {
        let fixed = self.id.len()
            + self.stream.len()
            + self.received_at.len()
            + self.writer.len()
            + self.source.as_ref().map_or(0, String::len);
        128 + fixed + self.payload.len() * 2 + self.event.estimated_canonical_len() / 2
    }

    /// The commitment of this envelope under `salt`; see
    /// [`crate::commitment`].
    pub fn commitment(&self, salt: &[u8; 32]) -> [u8; 32] {
        commitment(salt, &self.canonical_bytes())
    }

    /// Reads canonical envelope bytes back, strictly: they must parse as
    /// JSON without duplicate keys, have exactly the envelope shape with
    /// `v` = 1, and re-canonicalize to the identical bytes.
    pub fn from_canonical(bytes: &[u8]) -> Result<Envelope, EventError> {
        let value = json::parse(
            bytes,
            ParseOptions {
                max_depth: ENVELOPE_MAX_DEPTH,
                // Canonical text writes doubles below 1e21 as plain
                // integers, so big integer literals are read as doubles; the
                // byte comparison below refuses any that were not exact.
                big_integers: BigIntegers::AsDouble,
            },
        )?;
        let envelope = Self::from_value(value)?;
        if envelope.canonical_bytes() != bytes {
            return Err(EventError::NotCanonical);
        }
        Ok(envelope)
    }

    /// Reads an envelope from its JSON form (as [`Self::to_json`] makes it),
    /// checking the shape strictly but not the byte form.
    pub fn from_json(value: &Value) -> Result<Envelope, EventError> {
        Self::from_value(value.clone())
    }

    fn from_value(value: Value) -> Result<Envelope, EventError> {
        let mut map = match value {
            Value::Object(map) => map,
            other => {
                return Err(EventError::NotAnObject {
                    found: json::type_name(&other),
                });
            }
        };
        if let Some(key) = map.keys().find(|k| !ENVELOPE_MEMBERS.contains(&k.as_str())) {
            return Err(EventError::UnknownField { field: key.clone() });
        }
        match map.remove("v") {
            None => {
                return Err(EventError::MissingField {
                    field: "v".to_owned(),
                });
            }
            Some(Value::Number(n)) if n.as_u64() == Some(ENVELOPE_VERSION) => {}
            Some(other) => {
                return Err(EventError::UnsupportedVersion {
                    found: other.to_string(),
                });
            }
        }
        let id = take_string(&mut map, "id", true)?;
        check_event_id(&id)?;
        let stream = take_string(&mut map, "stream", true)?;
        client::check_stream_at(&stream, true, "stream")?;
        let received_at = take_string(&mut map, "received_at", true)?;
        client::check_normalized_time(&received_at, "received_at")?;
        let writer = take_string(&mut map, "writer", true)?;
        let source = if map.contains_key("source") {
            Some(take_string(&mut map, "source", false)?)
        } else {
            None
        };
        let event = match map.remove("event") {
            None => {
                return Err(EventError::MissingField {
                    field: "event".to_owned(),
                });
            }
            Some(Value::Object(event)) => client::read_event_map(event, Mode::Stored, "event.")?,
            Some(other) => {
                return Err(EventError::WrongType {
                    field: "event".to_owned(),
                    expected: "an object",
                    found: json::type_name(&other),
                });
            }
        };
        let payload = take_string(&mut map, "payload", true)?;
        Ok(Envelope {
            id,
            stream,
            received_at,
            writer,
            source,
            event,
            payload,
        })
    }

    /// Checks that `payload` parses, under `limits`, to exactly `event`:
    /// the stored normalized fields are then provably derived from the
    /// original text rather than merely stored next to it.
    pub fn verify_payload(&self, limits: &Limits) -> Result<(), EventError> {
        let reparsed = parse_client_event(self.payload.as_bytes(), limits)?;
        // Compared in canonical form: a float such as 1.0 in the payload
        // reads back from canonical text as the integer 1, which is the same
        // JSON number but a different `Value`.
        if reparsed.canonical_bytes() == self.event.canonical_bytes() {
            Ok(())
        } else {
            Err(EventError::InvalidEnvelope {
                field: "event".to_owned(),
                reason: "does not match what the payload parses to",
            })
        }
    }
}

/// Removes a required string member from an envelope object.
fn take_string(
    map: &mut Map<String, Value>,
    name: &str,
    non_empty: bool,
) -> Result<String, EventError> {
    match map.remove(name) {
        None => Err(EventError::MissingField {
            field: name.to_owned(),
        }),
        Some(Value::String(s)) if non_empty && s.is_empty() => Err(EventError::EmptyString {
            field: name.to_owned(),
        }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EventError::WrongType {
            field: name.to_owned(),
            expected: if non_empty {
                "a non-empty string"
            } else {
                "a string"
            },
            found: json::type_name(&other),
        }),
    }
}

/// Checks that an event id is a UUID in lowercase hyphenated form, the only
/// spelling the server produces, so one id has one canonical form.
fn check_event_id(id: &str) -> Result<(), EventError> {
    let invalid = || EventError::InvalidEnvelope {
        field: "id".to_owned(),
        reason: "must be a UUID in lowercase hyphenated form",
    };
    let uuid = uuid::Uuid::try_parse(id).map_err(|_| invalid())?;
    let mut buffer = uuid::Uuid::encode_buffer();
    if uuid.hyphenated().encode_lower(&mut buffer) == id {
        Ok(())
    } else {
        Err(invalid())
    }
}
