//! The client event: the one JSON object a client appends, its validation
//! ([`parse_client_event`]) and its normalized form ([`ClientEvent`]). Also
//! the stream name rules, which clients and the system share. It is not the
//! stored record: that is [`crate::Envelope`], which wraps a `ClientEvent`
//! with server-assigned fields.
//!
//! The same field reader validates both fresh client input (with
//! [`Limits`], `null` meaning absent, reserved streams refused) and the
//! `event` member of a stored envelope (no limits, since they were applied
//! at ingestion and may have changed since; `null` refused, since canonical
//! envelopes omit absent members; timestamps must already be normalized).

use serde_json::{Map, Value};

use crate::error::EventError;
use crate::jcs;
use crate::json::{self, BigIntegers, Members, ParseOptions};
use crate::limits::Limits;

/// Longest stream name, in bytes, reserved `_` prefix included.
pub const STREAM_NAME_MAX: usize = 64;

/// How many members a client event may have.
const FIELD_COUNT: usize = 9;

/// The members a client event may have, in the order they are validated.
const EVENT_FIELDS: [&str; FIELD_COUNT] = [
    "actor",
    "action",
    "resource",
    "outcome",
    "time",
    "id",
    "stream",
    "source",
    "attributes",
];

/// A validated, normalized client event.
///
/// `time`, when present, is normalized to UTC RFC 3339 as `jiff` displays a
/// `Timestamp` (`2026-11-26T04:51:57.123Z`: `Z`, no trailing fractional
/// zeros). Every other string is kept exactly as sent (after JSON
/// unescaping); no Unicode normalization is applied, as RFC 8785 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEvent {
    /// Who did it; non-empty.
    pub actor: String,
    /// What was done; non-empty.
    pub action: String,
    /// What it was done to.
    pub resource: Option<String>,
    /// How it ended, e.g. `success`; free text.
    pub outcome: Option<String>,
    /// When it happened according to the client, normalized to UTC.
    pub time: Option<String>,
    /// Client idempotency key; non-empty.
    pub id: Option<String>,
    /// Stream the client asked for; never reserved (`_`-prefixed).
    pub stream: Option<String>,
    /// Where the client says the event comes from.
    pub source: Option<String>,
    /// Free-form structured details.
    pub attributes: Option<Map<String, Value>>,
}

/// Parses and validates one client event.
///
/// Refuses, with an [`EventError`] naming the field or limit: input over
/// `limits.max_event_bytes`; invalid UTF-8; anything that is not exactly one
/// JSON object (trailing data included); duplicate keys at any depth;
/// nesting deeper than `limits.max_depth`; integer literals beyond ±2^53;
/// numbers that overflow a double; unknown top-level members; members of
/// the wrong type, empty where non-empty is required, or over their length
/// limit; timestamps that are not RFC 3339; invalid or reserved stream
/// names; `attributes` with more than `limits.max_attribute_keys` keys.
/// `null` for an optional member means the member is absent.
pub fn parse_client_event(raw: &[u8], limits: &Limits) -> Result<ClientEvent, EventError> {
    if raw.len() > limits.max_event_bytes {
        return Err(EventError::EventTooLarge {
            size: raw.len(),
            limit: limits.max_event_bytes,
        });
    }
    let members = json::parse_members(
        raw,
        ParseOptions {
            max_depth: limits.effective_max_depth(),
            big_integers: BigIntegers::Refuse,
        },
        &EVENT_FIELDS,
    )?;
    read_event(members, Mode::Client(limits), "")
}

impl ClientEvent {
    /// The event as a JSON object, absent members omitted.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("actor".into(), Value::String(self.actor.clone()));
        map.insert("action".into(), Value::String(self.action.clone()));
        let optional = [
            ("resource", &self.resource),
            ("outcome", &self.outcome),
            ("time", &self.time),
            ("id", &self.id),
            ("stream", &self.stream),
            ("source", &self.source),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.insert(name.into(), Value::String(value.clone()));
            }
        }
        if let Some(attributes) = &self.attributes {
            map.insert("attributes".into(), Value::Object(attributes.clone()));
        }
        Value::Object(map)
    }

    /// The RFC 8785 canonical form of [`Self::to_json`], written directly.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.estimated_canonical_len());
        self.write_canonical(&mut out);
        out
    }

    /// A cheap over-estimate of the canonical length for fields other than
    /// `attributes`, used to size buffers so that writing rarely reallocates.
    pub(crate) fn estimated_canonical_len(&self) -> usize {
        let optional = [
            &self.resource,
            &self.outcome,
            &self.time,
            &self.id,
            &self.stream,
            &self.source,
        ];
        let strings: usize = optional
            .iter()
            .filter_map(|s| s.as_ref())
            .map(String::len)
            .sum();
        128 + (self.actor.len() + self.action.len() + strings) * 9 / 8
    }

    /// Appends the canonical form to `out`.
    ///
    /// Member names are all ASCII, so UTF-16 order is byte order:
    /// `action`, `actor`, `attributes`, `id`, `outcome`, `resource`,
    /// `source`, `stream`, `time`. `action` and `actor` are always present,
    /// so every later member is written with a leading comma.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"action\":");
        jcs::write_string(&self.action, out);
        out.extend_from_slice(b",\"actor\":");
        jcs::write_string(&self.actor, out);
        if let Some(attributes) = &self.attributes {
            out.extend_from_slice(b",\"attributes\":");
            jcs::write_object(attributes, out);
        }
        let tail: [(&[u8], &Option<String>); 6] = [
            (b",\"id\":", &self.id),
            (b",\"outcome\":", &self.outcome),
            (b",\"resource\":", &self.resource),
            (b",\"source\":", &self.source),
            (b",\"stream\":", &self.stream),
            (b",\"time\":", &self.time),
        ];
        for (name, value) in tail {
            if let Some(value) = value {
                out.extend_from_slice(name);
                jcs::write_string(value, out);
            }
        }
        out.push(b'}');
    }
}

/// Checks a stream name a client asked for: `[a-z0-9][a-z0-9._-]*`, at most
/// [`STREAM_NAME_MAX`] bytes. Names starting with `_` are reserved for the
/// system and refused with [`EventError::ReservedStream`].
pub fn check_client_stream_name(name: &str) -> Result<(), EventError> {
    check_stream_at(name, false, "stream")
}

/// Checks any stream name, system ones included: a client name, or `_`
/// followed by a client name, at most [`STREAM_NAME_MAX`] bytes in all.
pub fn check_stream_name(name: &str) -> Result<(), EventError> {
    check_stream_at(name, true, "stream")
}

/// Whether a stream name is in the system's reserved namespace.
pub fn is_reserved_stream_name(name: &str) -> bool {
    name.starts_with('_')
}

pub(crate) fn check_stream_at(
    name: &str,
    allow_reserved: bool,
    path: &str,
) -> Result<(), EventError> {
    let invalid = |reason| EventError::InvalidStream {
        field: path.to_owned(),
        reason,
    };
    let body = match name.strip_prefix('_') {
        Some(_) if !allow_reserved => {
            return Err(EventError::ReservedStream {
                field: path.to_owned(),
            });
        }
        Some(rest) => rest,
        None => name,
    };
    if name.len() > STREAM_NAME_MAX {
        return Err(invalid("longer than 64 bytes"));
    }
    let mut chars = body.bytes();
    match chars.next() {
        None => return Err(invalid("empty")),
        Some(b'a'..=b'z' | b'0'..=b'9') => {}
        Some(_) => return Err(invalid("must start with a-z or 0-9")),
    }
    if chars.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-')) {
        Ok(())
    } else {
        Err(invalid("only a-z, 0-9, '.', '_' and '-' are allowed"))
    }
}

/// Checks the exact RFC 3339 `date-time` syntax (§5.6), which `jiff`'s more
/// lenient ISO 8601 parser would otherwise widen (basic format, space
/// separator, bracketed annotations). Calendar validity is left to `jiff`.
pub(crate) fn check_rfc3339_syntax(s: &str) -> Result<(), &'static str> {
    const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
    let b = s.as_bytes();
    if b.len() < SHAPE.len() + 1 {
        return Err("too short");
    }
    for (i, (&want, &got)) in SHAPE.iter().zip(b).enumerate() {
        let ok = match want {
            b'd' => got.is_ascii_digit(),
            b'T' => got == b'T' || got == b't',
            _ => got == want,
        };
        if !ok {
            return Err(if i == 10 {
                "expected 'T' between date and time"
            } else {
                "expected YYYY-MM-DDTHH:MM:SS"
            });
        }
    }
    let mut rest = &b[SHAPE.len()..];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let digits = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err("expected digits after '.'");
        }
        rest = &after_dot[digits..];
    }
    match rest {
        [b'Z' | b'z'] => Ok(()),
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            // RFC 3339 §5.6: time-numoffset is a time-hour (00-23) and a
            // time-minute (00-59); jiff alone would take up to ±25:59.
            if (h1 - b'0') * 10 + (h2 - b'0') > 23 || *m1 > b'5' {
                return Err("offset beyond ±23:59");
            }
            Ok(())
        }
        _ => Err("expected 'Z' or a ±HH:MM offset at the end"),
    }
}

/// Parses an RFC 3339 `date-time` as a client sends it (event `time`,
/// query bounds): exactly the RFC's syntax, offsets within ±23:59, and an
/// instant within years 0000 to 9999 in UTC.
pub fn parse_rfc3339(s: &str) -> Result<jiff::Timestamp, String> {
    let normalized = normalize_time(s)?;
    normalized.parse().map_err(|e: jiff::Error| e.to_string())
}

/// Parses an RFC 3339 timestamp and returns it in the normalized UTC form.
/// The output is checked to be RFC 3339 too, so that an offset pushing the
/// instant outside years 0000..=9999 is refused rather than stored in a form
/// later readers would refuse.
pub(crate) fn normalize_time(s: &str) -> Result<String, String> {
    check_rfc3339_syntax(s).map_err(str::to_owned)?;
    let timestamp: jiff::Timestamp = s.parse().map_err(|e: jiff::Error| e.to_string())?;
    let normalized = timestamp.to_string();
    check_rfc3339_syntax(&normalized)
        .map_err(|_| "instant is outside years 0000 to 9999 in UTC".to_owned())?;
    Ok(normalized)
}

/// Checks that `s` is already in the normalized form [`normalize_time`]
/// produces; stored envelopes must not carry any other spelling.
pub(crate) fn check_normalized_time(s: &str, path: &str) -> Result<(), EventError> {
    match normalize_time(s) {
        Ok(normalized) if normalized == s => Ok(()),
        Ok(normalized) => Err(EventError::InvalidTime {
            field: path.to_owned(),
            reason: format!("not in normalized UTC form (expected {normalized})"),
        }),
        Err(reason) => Err(EventError::InvalidTime {
            field: path.to_owned(),
            reason,
        }),
    }
}

/// Checks the invariants every stored event must meet, for events that did
/// not come through [`parse_client_event`] (for example built by hand before
/// [`crate::new_envelope`]): without them the envelope could be written but
/// not read back by [`crate::Envelope::from_canonical`].
pub(crate) fn check_stored_invariants(event: &ClientEvent) -> Result<(), EventError> {
    for (name, value) in [
        ("event.actor", &event.actor),
        ("event.action", &event.action),
    ] {
        if value.is_empty() {
            return Err(EventError::EmptyString {
                field: name.to_owned(),
            });
        }
    }
    if event.id.as_deref() == Some("") {
        return Err(EventError::EmptyString {
            field: "event.id".to_owned(),
        });
    }
    if let Some(time) = &event.time {
        check_normalized_time(time, "event.time")?;
    }
    if let Some(stream) = &event.stream {
        check_stream_at(stream, true, "event.stream")?;
    }
    Ok(())
}

/// Which rules the field reader applies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode<'a> {
    /// Fresh client input, checked against limits.
    Client(&'a Limits),
    /// The `event` member of a stored envelope.
    Stored,
}

/// Which length limit a string member falls under.
#[derive(Debug, Clone, Copy)]
enum LengthLimit {
    Text,
    Id,
}

/// Reads a client event out of a JSON object given as an already parsed map
/// (the `event` member of an envelope).
pub(crate) fn read_event_map(
    map: Map<String, Value>,
    mode: Mode<'_>,
    prefix: &str,
) -> Result<ClientEvent, EventError> {
    read_event(Members::from_map(map, &EVENT_FIELDS), mode, prefix)
}

/// Reads a client event out of the members of a JSON object; `prefix` is
/// prepended to field paths in errors (`""` for client input, `"event."`
/// inside an envelope).
fn read_event(
    mut members: Members<FIELD_COUNT>,
    mode: Mode<'_>,
    prefix: &str,
) -> Result<ClientEvent, EventError> {
    // Unknown members are reported first: a misspelled `actor` is better
    // reported as unknown than as missing.
    if let Some(key) = &members.unknown {
        return Err(EventError::UnknownField {
            field: format!("{prefix}{key}"),
        });
    }
    let mut reader = Reader {
        members: &mut members,
        mode,
        prefix,
    };
    let actor = reader.required_text("actor")?;
    let action = reader.required_text("action")?;
    let resource = reader.optional_string("resource", false, Some(LengthLimit::Text))?;
    let outcome = reader.optional_string("outcome", false, Some(LengthLimit::Text))?;
    let time = match reader.optional_string("time", false, None)? {
        None => None,
        Some(raw) => Some(reader.time(&raw)?),
    };
    let id = reader.optional_string("id", true, Some(LengthLimit::Id))?;
    let stream = reader.optional_string("stream", false, None)?;
    if let Some(name) = &stream {
        let reserved_ok = matches!(mode, Mode::Stored);
        check_stream_at(name, reserved_ok, &reader.path("stream"))?;
    }
    let source = reader.optional_string("source", false, Some(LengthLimit::Text))?;
    let attributes = reader.attributes()?;
    Ok(ClientEvent {
        actor,
        action,
        resource,
        outcome,
        time,
        id,
        stream,
        source,
        attributes,
    })
}

/// Member-by-member reader over the object being validated; members are
/// taken as they are read so that values move out without copying.
struct Reader<'m, 'l> {
    members: &'m mut Members<FIELD_COUNT>,
    mode: Mode<'l>,
    prefix: &'m str,
}

impl Reader<'_, '_> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Takes a member out of the object.
    fn member(&mut self, name: &str) -> Option<Value> {
        let i = EVENT_FIELDS.iter().position(|field| *field == name)?;
        self.members.take(i)
    }

    /// Takes a member; in client mode `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        match (self.member(name), self.mode) {
            (Some(Value::Null), Mode::Client(_)) => None,
            (value, _) => value,
        }
    }

    /// Takes a required member; `null` is not absence here but a value of
    /// the wrong type, which makes for the more precise error.
    fn required_text(&mut self, name: &str) -> Result<String, EventError> {
        match self.member(name) {
            None => Err(EventError::MissingField {
                field: self.path(name),
            }),
            Some(value) => self.string(name, value, true, Some(LengthLimit::Text)),
        }
    }

    fn optional_string(
        &mut self,
        name: &str,
        non_empty: bool,
        limit: Option<LengthLimit>,
    ) -> Result<Option<String>, EventError> {
        match self.take(name) {
            None => Ok(None),
            Some(value) => self.string(name, value, non_empty, limit).map(Some),
        }
    }

    fn string(
        &self,
        name: &str,
        value: Value,
        non_empty: bool,
        limit: Option<LengthLimit>,
    ) -> Result<String, EventError> {
        let Value::String(s) = value else {
            return Err(EventError::WrongType {
                field: self.path(name),
                expected: if non_empty {
                    "a non-empty string"
                } else {
                    "a string"
                },
                found: json::type_name(&value),
            });
        };
        if non_empty && s.is_empty() {
            return Err(EventError::EmptyString {
                field: self.path(name),
            });
        }
        if let (Mode::Client(limits), Some(kind)) = (self.mode, limit) {
            match kind {
                LengthLimit::Text if s.len() > limits.max_string_bytes => {
                    return Err(EventError::StringTooLong {
                        field: self.path(name),
                        len: s.len(),
                        limit: limits.max_string_bytes,
                    });
                }
                LengthLimit::Id if s.len() > limits.max_id_bytes => {
                    return Err(EventError::IdTooLong {
                        field: self.path(name),
                        len: s.len(),
                        limit: limits.max_id_bytes,
                    });
                }
                _ => {}
            }
        }
        Ok(s)
    }

    fn time(&self, raw: &str) -> Result<String, EventError> {
        let path = self.path("time");
        match self.mode {
            Mode::Client(_) => normalize_time(raw).map_err(|reason| EventError::InvalidTime {
                field: path,
                reason,
            }),
            Mode::Stored => check_normalized_time(raw, &path).map(|()| raw.to_owned()),
        }
    }

    fn attributes(&mut self) -> Result<Option<Map<String, Value>>, EventError> {
        let attributes = match self.take("attributes") {
            None => return Ok(None),
            Some(Value::Object(attributes)) => attributes,
            Some(other) => {
                return Err(EventError::WrongType {
                    field: self.path("attributes"),
                    expected: "an object",
                    found: json::type_name(&other),
                });
            }
        };
        if let Mode::Client(limits) = self.mode {
            let count = count_keys(&attributes);
            if count > limits.max_attribute_keys {
                return Err(EventError::TooManyAttributeKeys {
                    count,
                    limit: limits.max_attribute_keys,
                });
            }
        }
        Ok(Some(attributes))
    }
}

/// Counts object keys at every depth under (and including) `map`.
fn count_keys(map: &Map<String, Value>) -> usize {
    map.len() + map.values().map(count_keys_in).sum::<usize>()
}

fn count_keys_in(value: &Value) -> usize {
    match value {
        Value::Object(map) => count_keys(map),
        Value::Array(items) => items.iter().map(count_keys_in).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_syntax() {
        for ok in [
            "2026-11-26T04:51:57Z",
            "2026-11-26t04:51:57z",
            "2026-11-26T04:51:57.123456789+05:30",
            "2026-11-26T04:51:57-00:00",
            "2026-11-26T04:51:57+23:59",
            "2026-11-26T04:51:57-23:59",
        ] {
            assert!(normalize_time(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-11-26 04:51:57Z",
            "20261126T045157Z",
            "2026-11-26T04:51:57",
            "2026-11-26T04:51:57.Z",
            "2026-11-26T04:51:57Z[Europe/Paris]",
            "2026-11-26T04:51:57+0530",
            "2026-13-26T04:51:57Z",
            "2026-02-30T04:51:57Z",
            "2026-11-26T04:51:57.1234567891Z",
            "0000-01-01T00:00:00+01:00",
            "2026-11-26T04:51:57+24:00",
            "2026-11-26T04:51:57-25:59",
            "2026-11-26T04:51:57+05:60",
            "",
            "é",
        ] {
            assert!(normalize_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_is_normalized_to_utc() {
        assert_eq!(
            normalize_time("2026-11-26T06:51:57.1230+02:00").unwrap(),
            "2026-11-26T04:51:57.123Z"
        );
        assert_eq!(
            normalize_time("2026-11-26t04:51:57z").unwrap(),
            "2026-11-26T04:51:57Z"
        );
    }

    #[test]
    fn stream_names() {
        for ok in ["a", "0", "app.prod-1_x", &"a".repeat(64)] {
            check_client_stream_name(ok).unwrap();
        }
        for bad in ["", "A", "-a", ".a", "a b", "a/b", "é", &"a".repeat(65)] {
            let err = check_client_stream_name(bad).unwrap_err();
            assert!(
                matches!(err, EventError::InvalidStream { .. }),
                "{bad}: {err}"
            );
        }
        let err = check_client_stream_name("_system").unwrap_err();
        assert_eq!(
            err,
            EventError::ReservedStream {
                field: "stream".into()
            }
        );
        assert!(err.to_string().contains("reserved for the system"));
        check_stream_name("_system").unwrap();
        assert!(check_stream_name("_").is_err());
        assert!(check_stream_name("__x").is_err());
        assert!(check_stream_name(&format!("_{}", "a".repeat(64))).is_err());
    }
}
