//! Crate-level tests through the public API: every refusal of
//! `parse_client_event` (asserting the field named in the message), envelope
//! building and strict reading, the fast canonical path against the general
//! canonicalizer, and never-panic properties over random input. Unit tests
//! of the parser and canonicalizer internals live next to them.

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use crate::*;

const UUID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

fn parse(raw: &str) -> Result<ClientEvent, EventError> {
    parse_client_event(raw.as_bytes(), &Limits::default())
}

fn refuse(raw: &str) -> EventError {
    match parse(raw) {
        Ok(event) => panic!("accepted {raw:?} as {event:?}"),
        Err(e) => e,
    }
}

/// Wraps attribute JSON text in an otherwise valid event.
fn with_attributes(attributes: &str) -> String {
    format!(r#"{{"actor":"alice","action":"read","attributes":{attributes}}}"#)
}

/// The event parser as it reads a general JSON document first and then
/// takes the members out of the map; the member-picking parser must give
/// exactly the same result and the same first error.
///
/// One difference is deliberate: with several unknown members, the map
/// path names the first in the map's order (sorted, or document order when
/// `serde_json` preserves order), the member parser always the first in
/// the document. [`unknown_unnamed`] compares the two up to that name.
fn parse_through_map(raw: &[u8], limits: &Limits) -> Result<ClientEvent, EventError> {
    if raw.len() > limits.max_event_bytes {
        return Err(EventError::EventTooLarge {
            size: raw.len(),
            limit: limits.max_event_bytes,
        });
    }
    let options = crate::json::ParseOptions {
        max_depth: limits.effective_max_depth(),
        big_integers: crate::json::BigIntegers::Refuse,
    };
    match crate::json::parse(raw, options)? {
        Value::Object(map) => {
            crate::client::read_event_map(map, crate::client::Mode::Client(limits), "")
        }
        other => Err(EventError::NotAnObject {
            found: crate::json::type_name(&other),
        }),
    }
}

/// `result` with the name of an unknown member left out.
fn unknown_unnamed(result: Result<ClientEvent, EventError>) -> Result<ClientEvent, EventError> {
    result.map_err(|e| match e {
        EventError::UnknownField { .. } => EventError::UnknownField {
            field: String::new(),
        },
        other => other,
    })
}

fn sample_envelope(raw: &str) -> Envelope {
    let parsed = parse(raw).unwrap();
    new_envelope(
        parsed,
        raw.as_bytes(),
        UUID.to_owned(),
        jiff::Timestamp::new(1_795_000_000, 123_000_000).unwrap(),
        "svc:ingest",
        "default",
        "http",
    )
    .unwrap()
}

// ---------------------------------------------------------------- accepting

#[test]
fn full_event_is_parsed_and_normalized() {
    let raw = r#"{
        "actor": "alice", "action": "document.read", "resource": "doc/42",
        "outcome": "success", "time": "2026-11-26T06:51:57.1230+02:00",
        "id": "req-1", "stream": "app.prod", "source": "web",
        "attributes": {"ip": "10.0.0.1", "n": [1, 2.5, -3], "nested": {"ok": true}}
    }"#;
    let event = parse(raw).unwrap();
    assert_eq!(event.actor, "alice");
    assert_eq!(event.action, "document.read");
    assert_eq!(event.resource.as_deref(), Some("doc/42"));
    assert_eq!(event.outcome.as_deref(), Some("success"));
    assert_eq!(event.time.as_deref(), Some("2026-11-26T04:51:57.123Z"));
    assert_eq!(event.id.as_deref(), Some("req-1"));
    assert_eq!(event.stream.as_deref(), Some("app.prod"));
    assert_eq!(event.source.as_deref(), Some("web"));
    assert_eq!(
        Value::Object(event.attributes.unwrap()),
        json!({"ip": "10.0.0.1", "n": [1, 2.5, -3], "nested": {"ok": true}})
    );
}

#[test]
fn null_optional_fields_are_absent() {
    let event = parse(
        r#"{"actor":"a","action":"b","resource":null,"outcome":null,"time":null,
            "id":null,"stream":null,"source":null,"attributes":null}"#,
    )
    .unwrap();
    assert_eq!(
        event,
        ClientEvent {
            actor: "a".into(),
            action: "b".into(),
            resource: None,
            outcome: None,
            time: None,
            id: None,
            stream: None,
            source: None,
            attributes: None,
        }
    );
}

#[test]
fn integer_boundary_2_pow_53() {
    for ok in [
        "9007199254740992",
        "-9007199254740992",
        "0",
        "-0",
        "1e300",
        "1e20",
    ] {
        parse(&with_attributes(&format!(r#"{{"bytes":{ok}}}"#))).unwrap();
    }
    for bad in [
        "9007199254740993",
        "-9007199254740993",
        "123456789012345678901234567890",
    ] {
        let err = refuse(&with_attributes(&format!(r#"{{"bytes":{bad}}}"#)));
        assert!(matches!(err, EventError::IntegerOutOfRange { .. }), "{err}");
        assert_eq!(err.field(), Some("attributes.bytes"));
        assert_eq!(err.category(), "json");
        assert!(
            err.to_string()
                .starts_with("field \"attributes.bytes\": integer"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- refusing

#[test]
fn refuses_oversized_events() {
    let limits = Limits {
        max_event_bytes: 10,
        ..Limits::default()
    };
    let err = parse_client_event(br#"{"actor":"a","action":"b"}"#, &limits).unwrap_err();
    assert_eq!(
        err,
        EventError::EventTooLarge {
            size: 26,
            limit: 10
        }
    );
    assert_eq!(err.category(), "limit");
    assert_eq!(err.field(), None);
    assert!(err.to_string().contains("max_event_bytes"));
    // The default limit is 64 KiB of raw bytes.
    let padding = " ".repeat(64 * 1024);
    let raw = format!(r#"{{"actor":"a","action":"b"}}{padding}"#);
    assert!(matches!(
        refuse(&raw),
        EventError::EventTooLarge { limit: 65536, .. }
    ));
}

#[test]
fn refuses_invalid_utf8() {
    let err = parse_client_event(b"{\"actor\":\"\xff\",\"action\":\"b\"}", &Limits::default())
        .unwrap_err();
    assert_eq!(err, EventError::InvalidUtf8 { offset: 10 });
    assert_eq!(err.category(), "json");
}

#[test]
fn refuses_non_objects() {
    for (raw, found) in [
        ("[]", "array"),
        ("\"x\"", "string"),
        ("1", "number"),
        ("null", "null"),
        ("true", "boolean"),
    ] {
        let err = refuse(raw);
        assert_eq!(err, EventError::NotAnObject { found });
        assert_eq!(
            err.to_string(),
            format!("event must be a JSON object, got {found}")
        );
    }
}

#[test]
fn refuses_trailing_garbage_and_bad_syntax() {
    let err = refuse(r#"{"actor":"a","action":"b"} x"#);
    assert_eq!(err, EventError::TrailingData { offset: 27 });
    assert_eq!(refuse(r#"{"actor":"a","action":"b"}{}"#).category(), "json");
    for bad in [
        "",
        "{",
        r#"{"actor":"a","action":"b",}"#,
        r#"{"actor":'a'}"#,
    ] {
        assert!(matches!(refuse(bad), EventError::Syntax { .. }), "{bad:?}");
    }
}

#[test]
fn refuses_duplicate_keys_at_every_depth() {
    let err = refuse(r#"{"actor":"a","action":"b","actor":"c"}"#);
    assert_eq!(
        err,
        EventError::DuplicateKey {
            field: "actor".into()
        }
    );
    assert_eq!(err.to_string(), "field \"actor\": duplicate key");

    let err = refuse(&with_attributes(r#"{"a":{"b":{"c":1,"c":1}}}"#));
    assert_eq!(err.field(), Some("attributes.a.b.c"));
    assert_eq!(err.to_string(), "field \"attributes.a.b.c\": duplicate key");

    let err = refuse(&with_attributes(r#"{"list":[{"k":1},{"k":1,"k":2}]}"#));
    assert_eq!(err.field(), Some("attributes.list[1].k"));

    // Escaped and literal spellings of one key are the same key.
    let err = refuse(&with_attributes(r#"{"é":1,"\u00e9":2}"#));
    assert_eq!(err.field(), Some("attributes.é"));
}

/// Builds an event whose deepest container is at `depth` (top object = 1,
/// `attributes` = 2, then nested arrays).
fn event_with_depth(depth: usize) -> String {
    let arrays = depth - 2;
    with_attributes(&format!(
        r#"{{"k":{}1{}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    ))
}

#[test]
fn depth_limit_counts_the_whole_document() {
    parse(&event_with_depth(32)).unwrap();
    let err = refuse(&event_with_depth(33));
    assert!(
        matches!(err, EventError::TooDeep { limit: 32, .. }),
        "{err}"
    );
    assert_eq!(err.category(), "limit");
    let field = err.field().unwrap();
    assert!(field.starts_with("attributes.k[0][0]"), "{field}");
    assert!(err.to_string().contains("max_depth"));

    let limits = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    let err = parse_client_event(with_attributes("{}").as_bytes(), &limits).unwrap_err();
    assert_eq!(
        err,
        EventError::TooDeep {
            field: "attributes".into(),
            limit: 1
        }
    );

    // A configured depth above the ceiling acts as the ceiling, so the parser's
    // recursion stays bounded.
    let limits = Limits {
        max_depth: 1_000_000,
        max_event_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = parse_client_event(event_with_depth(5000).as_bytes(), &limits).unwrap_err();
    assert!(matches!(
        err,
        EventError::TooDeep {
            limit: MAX_DEPTH_CEILING,
            ..
        }
    ));
    parse_client_event(event_with_depth(MAX_DEPTH_CEILING).as_bytes(), &limits).unwrap();
}

#[test]
fn refuses_non_finite_numbers() {
    let err = refuse(&with_attributes(r#"{"x":[1,-1e400]}"#));
    assert!(matches!(err, EventError::NonFiniteNumber { .. }));
    assert_eq!(err.field(), Some("attributes.x[1]"));
    for bad in ["NaN", "Infinity", "-Infinity"] {
        assert!(matches!(
            refuse(&with_attributes(bad)),
            EventError::Syntax { .. }
        ));
    }
}

#[test]
fn refuses_unknown_fields() {
    let err = refuse(r#"{"actor":"a","action":"b","foo":1}"#);
    assert_eq!(err.to_string(), "unknown field \"foo\"");
    assert_eq!(err.field(), Some("foo"));
    assert_eq!(err.category(), "field");
    // A misspelling is reported as unknown rather than as a missing field.
    assert_eq!(
        refuse(r#"{"actr":"a","action":"b"}"#).to_string(),
        "unknown field \"actr\""
    );
}

#[test]
fn refuses_missing_required_fields() {
    assert_eq!(
        refuse(r#"{"action":"b"}"#).to_string(),
        "missing required field \"actor\""
    );
    assert_eq!(refuse(r#"{"actor":"a"}"#).field(), Some("action"));
    assert_eq!(refuse("{}").field(), Some("actor"));
}

#[test]
fn refuses_wrong_types_naming_the_json_type() {
    let cases = [
        (
            r#"{"actor":1,"action":"b"}"#,
            "field \"actor\": expected a non-empty string, got number",
        ),
        (
            r#"{"actor":"a","action":null}"#,
            "field \"action\": expected a non-empty string, got null",
        ),
        (
            r#"{"actor":"a","action":"b","resource":true}"#,
            "field \"resource\": expected a string, got boolean",
        ),
        (
            r#"{"actor":"a","action":"b","outcome":[]}"#,
            "field \"outcome\": expected a string, got array",
        ),
        (
            r#"{"actor":"a","action":"b","source":{}}"#,
            "field \"source\": expected a string, got object",
        ),
        (
            r#"{"actor":"a","action":"b","time":1}"#,
            "field \"time\": expected a string, got number",
        ),
        (
            r#"{"actor":"a","action":"b","id":2}"#,
            "field \"id\": expected a non-empty string, got number",
        ),
        (
            r#"{"actor":"a","action":"b","stream":3}"#,
            "field \"stream\": expected a string, got number",
        ),
        (
            r#"{"actor":"a","action":"b","attributes":[]}"#,
            "field \"attributes\": expected an object, got array",
        ),
        (
            r#"{"actor":"a","action":"b","attributes":"x"}"#,
            "field \"attributes\": expected an object, got string",
        ),
    ];
    for (raw, message) in cases {
        let err = refuse(raw);
        assert_eq!(err.to_string(), message);
        assert_eq!(err.category(), "field");
    }
}

#[test]
fn refuses_empty_required_strings() {
    for (raw, field) in [
        (r#"{"actor":"","action":"b"}"#, "actor"),
        (r#"{"actor":"a","action":""}"#, "action"),
        (r#"{"actor":"a","action":"b","id":""}"#, "id"),
    ] {
        let err = refuse(raw);
        assert_eq!(
            err,
            EventError::EmptyString {
                field: field.into()
            }
        );
        assert!(err.to_string().contains(&format!("field \"{field}\"")));
    }
    // Optional free-text members may be empty strings.
    parse(r#"{"actor":"a","action":"b","resource":"","outcome":"","source":""}"#).unwrap();
}

#[test]
fn refuses_overlong_strings() {
    let limits = Limits::default();
    for field in ["actor", "action", "resource", "outcome", "source"] {
        for (len, ok) in [(1024, true), (1025, false)] {
            let mut event = json!({"actor": "a", "action": "b"});
            event[field] = Value::String("é".repeat(len / 2) + &"x".repeat(len % 2));
            let raw = serde_json::to_vec(&event).unwrap();
            let result = parse_client_event(&raw, &limits);
            if ok {
                result.unwrap();
            } else {
                let err = result.unwrap_err();
                assert_eq!(
                    err,
                    EventError::StringTooLong {
                        field: field.into(),
                        len,
                        limit: 1024
                    }
                );
                assert!(err.to_string().contains("max_string_bytes"), "{err}");
                assert_eq!(err.field(), Some(field));
            }
        }
    }
    parse(&format!(
        r#"{{"actor":"a","action":"b","id":"{}"}}"#,
        "i".repeat(256)
    ))
    .unwrap();
    let err = refuse(&format!(
        r#"{{"actor":"a","action":"b","id":"{}"}}"#,
        "i".repeat(257)
    ));
    assert_eq!(
        err,
        EventError::IdTooLong {
            field: "id".into(),
            len: 257,
            limit: 256
        }
    );
    assert!(err.to_string().contains("max_id_bytes"));
}

#[test]
fn refuses_bad_times() {
    for bad in [
        "yesterday",
        "2026-11-26",
        "2026-11-26T04:51:57",
        "2026-11-26 04:51:57Z",
        "2026-02-30T00:00:00Z",
    ] {
        let err = refuse(&format!(r#"{{"actor":"a","action":"b","time":"{bad}"}}"#));
        assert!(
            matches!(err, EventError::InvalidTime { .. }),
            "{bad}: {err}"
        );
        assert_eq!(err.field(), Some("time"));
        assert!(
            err.to_string()
                .starts_with("field \"time\": invalid RFC 3339 timestamp")
        );
    }
}

#[test]
fn refuses_bad_and_reserved_streams() {
    let err = refuse(r#"{"actor":"a","action":"b","stream":"_system"}"#);
    assert_eq!(
        err,
        EventError::ReservedStream {
            field: "stream".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "field \"stream\": stream names starting with \"_\" are reserved for the system"
    );
    for bad in ["", "Upper", "-x", "a b", "ü"] {
        let err = refuse(&format!(r#"{{"actor":"a","action":"b","stream":"{bad}"}}"#));
        assert!(
            matches!(err, EventError::InvalidStream { .. }),
            "{bad}: {err}"
        );
        assert_eq!(err.field(), Some("stream"));
    }
    let long = "s".repeat(65);
    let err = refuse(&format!(
        r#"{{"actor":"a","action":"b","stream":"{long}"}}"#
    ));
    assert!(err.to_string().contains("longer than 64 bytes"));
}

#[test]
fn refuses_too_many_attribute_keys() {
    let keys = |n: usize| -> String {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
        format!("{{{}}}", members.join(","))
    };
    parse(&with_attributes(&keys(1024))).unwrap();
    let err = refuse(&with_attributes(&keys(1025)));
    assert_eq!(
        err,
        EventError::TooManyAttributeKeys {
            count: 1025,
            limit: 1024
        }
    );
    assert_eq!(err.field(), Some("attributes"));
    assert!(err.to_string().contains("max_attribute_keys"));
    // Keys of nested objects count too: 1 + 1024.
    let err = refuse(&with_attributes(&format!("{{\"inner\":{}}}", keys(1024))));
    assert_eq!(
        err,
        EventError::TooManyAttributeKeys {
            count: 1025,
            limit: 1024
        }
    );
}

// ---------------------------------------------------------------- envelope

#[test]
fn envelope_fields_and_golden_bytes() {
    let raw = r#"{"action":"read","actor":"alice","stream":"app","attributes":{"b":1,"a":"x\n"}}"#;
    let envelope = sample_envelope(raw);
    assert_eq!(envelope.stream, "app");
    assert_eq!(envelope.source.as_deref(), Some("http"));
    assert_eq!(envelope.received_at, "2026-11-18T11:06:40.123Z");
    assert_eq!(envelope.payload, raw);
    let expected = concat!(
        r#"{"event":{"action":"read","actor":"alice","attributes":{"a":"x\n","b":1},"stream":"app"},"#,
        r#""id":"01890a5d-ac96-774b-bcce-b302099a8057","#,
        r#""payload":"{\"action\":\"read\",\"actor\":\"alice\",\"stream\":\"app\",\"attributes\":{\"b\":1,\"a\":\"x\\n\"}}","#,
        r#""received_at":"2026-11-18T11:06:40.123Z","source":"http","stream":"app","v":1,"writer":"svc:ingest"}"#
    );
    assert_eq!(
        String::from_utf8(envelope.canonical_bytes()).unwrap(),
        expected
    );
    assert_eq!(
        to_canonical_vec(&envelope.to_json()),
        envelope.canonical_bytes()
    );
}

#[test]
fn envelope_defaults_and_client_overrides() {
    let envelope = sample_envelope(r#"{"actor":"a","action":"b"}"#);
    assert_eq!(envelope.stream, "default");
    assert_eq!(envelope.source.as_deref(), Some("http"));
    let envelope = sample_envelope(r#"{"actor":"a","action":"b","source":"batch","stream":"x"}"#);
    assert_eq!(envelope.stream, "x");
    assert_eq!(envelope.source.as_deref(), Some("batch"));
    assert_eq!(envelope.event.stream.as_deref(), Some("x"));
}

#[test]
fn new_envelope_refusals() {
    let raw = br#"{"actor":"a","action":"b"}"#;
    let parsed = parse_client_event(raw, &Limits::default()).unwrap();
    let now = jiff::Timestamp::UNIX_EPOCH;
    let build = |id: &str, writer: &str, stream: &str, channel: &str| {
        new_envelope(
            parsed.clone(),
            raw,
            id.to_owned(),
            now,
            writer,
            stream,
            channel,
        )
    };
    assert!(build(UUID, "w", "_system", "http").is_ok());
    for bad_id in [
        "",
        "not-a-uuid",
        &UUID.to_uppercase(),
        &UUID.replace('-', ""),
    ] {
        let err = build(bad_id, "w", "s", "http").unwrap_err();
        assert_eq!(err.field(), Some("id"), "{bad_id}");
        assert_eq!(err.category(), "envelope");
    }
    assert_eq!(
        build(UUID, "", "s", "http").unwrap_err().field(),
        Some("writer")
    );
    assert_eq!(
        build(UUID, "w", "Bad", "http").unwrap_err().field(),
        Some("stream")
    );
    assert_eq!(
        build(UUID, "w", "s", "").unwrap_err().field(),
        Some("source")
    );
    let err = new_envelope(parsed.clone(), b"\xff", UUID.into(), now, "w", "s", "c").unwrap_err();
    assert!(matches!(err, EventError::InvalidUtf8 { .. }));
    let mut hand_made = parsed;
    hand_made.time = Some("2026-01-01T00:00:00+00:00".into());
    let err = new_envelope(hand_made, raw, UUID.into(), now, "w", "s", "c").unwrap_err();
    assert_eq!(err.field(), Some("event.time"));
}

#[test]
fn envelope_round_trips_through_canonical_and_json() {
    let raw = r#"{"actor":"a","action":"b","time":"2026-01-01T01:00:00+01:00","id":"k",
                  "resource":"r","outcome":"o","attributes":{"f":1.5,"big":1e20,"int":7,"s":"\u0001"}}"#;
    let envelope = sample_envelope(raw);
    let bytes = envelope.canonical_bytes();
    let back = Envelope::from_canonical(&bytes).unwrap();
    assert_eq!(back.canonical_bytes(), bytes);
    assert_eq!(back.event.time.as_deref(), Some("2026-01-01T00:00:00Z"));
    back.verify_payload(&Limits::default()).unwrap();

    let as_json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(envelope_canonical_from_json(&as_json).unwrap(), bytes);
    assert_eq!(Envelope::from_json(&envelope.to_json()).unwrap(), envelope);

    let salt = [42u8; 32];
    assert_eq!(back.commitment(&salt), commitment(&salt, &bytes));
}

#[test]
fn from_canonical_is_strict() {
    let envelope = sample_envelope(r#"{"actor":"a","action":"b"}"#);
    let bytes = envelope.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();

    // Valid JSON, same content, different bytes.
    let spaced = text.replacen(',', ", ", 1);
    assert_eq!(
        Envelope::from_canonical(spaced.as_bytes()),
        Err(EventError::NotCanonical)
    );
    let reordered = text.replacen(
        r#""action":"b","actor":"a""#,
        r#""actor":"a","action":"b""#,
        1,
    );
    assert_eq!(
        Envelope::from_canonical(reordered.as_bytes()),
        Err(EventError::NotCanonical)
    );
    let escaped = text.replacen("svc:ingest", "svc\\u003aingest", 1);
    assert_eq!(
        Envelope::from_canonical(escaped.as_bytes()),
        Err(EventError::NotCanonical)
    );

    let v2 = text.replacen(r#""v":1"#, r#""v":2"#, 1);
    let err = Envelope::from_canonical(v2.as_bytes()).unwrap_err();
    assert_eq!(err, EventError::UnsupportedVersion { found: "2".into() });
    assert_eq!(err.field(), Some("v"));
    let v_float = text.replacen(r#""v":1"#, r#""v":1.0"#, 1);
    assert!(matches!(
        Envelope::from_canonical(v_float.as_bytes()),
        Err(EventError::UnsupportedVersion { .. })
    ));
    let no_v = text.replacen(r#","v":1"#, "", 1);
    assert_eq!(
        Envelope::from_canonical(no_v.as_bytes())
            .unwrap_err()
            .field(),
        Some("v")
    );

    let extra = text.replacen(r#""v":1"#, r#""v":1,"w":0"#, 1);
    assert_eq!(
        Envelope::from_canonical(extra.as_bytes()).unwrap_err(),
        EventError::UnknownField { field: "w".into() }
    );
    let dup = text.replacen(r#""v":1"#, r#""v":1,"v":1"#, 1);
    assert_eq!(
        Envelope::from_canonical(dup.as_bytes()).unwrap_err(),
        EventError::DuplicateKey { field: "v".into() }
    );
    let event_extra = text.replacen(r#""actor":"a""#, r#""actor":"a","x":1"#, 1);
    assert_eq!(
        Envelope::from_canonical(event_extra.as_bytes())
            .unwrap_err()
            .field(),
        Some("event.x")
    );
    let event_null = text.replacen(r#""actor":"a""#, r#""actor":"a","id":null"#, 1);
    assert_eq!(
        Envelope::from_canonical(event_null.as_bytes())
            .unwrap_err()
            .to_string(),
        "field \"event.id\": expected a non-empty string, got null"
    );
    let bad_time = text.replacen("2026-11-18T11:06:40.123Z", "2026-11-18T11:06:40.1230Z", 1);
    assert_eq!(
        Envelope::from_canonical(bad_time.as_bytes())
            .unwrap_err()
            .field(),
        Some("received_at")
    );
    assert!(matches!(
        Envelope::from_canonical(b"[]"),
        Err(EventError::NotAnObject { found: "array" })
    ));
}

/// `received_at` is written as the timestamp displays, which is the
/// normalized form for every instant in years 0000 to 9999; an instant before
/// year 0000 has no RFC 3339 spelling and is refused, naming the field.
#[test]
fn received_at_is_normalized_or_refused() {
    let raw = r#"{"actor":"a","action":"b"}"#;
    let envelope = |at: jiff::Timestamp| {
        new_envelope(
            parse(raw).unwrap(),
            raw.as_bytes(),
            UUID.into(),
            at,
            "w",
            "s",
            "c",
        )
    };
    let at = jiff::Timestamp::new(1_795_000_000, 120_000_000).unwrap();
    assert_eq!(envelope(at).unwrap().received_at, "2026-11-18T11:06:40.12Z");
    let year_zero: jiff::Timestamp = "0000-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        envelope(year_zero).unwrap().received_at,
        "0000-01-01T00:00:00Z"
    );
    let before = year_zero - jiff::SignedDuration::from_nanos(1);
    let err = envelope(before).unwrap_err();
    assert_eq!(err.field(), Some("received_at"), "{err}");
    assert!(matches!(err, EventError::InvalidTime { .. }), "{err}");
}

#[test]
fn verify_payload_detects_a_swapped_event() {
    let mut envelope = sample_envelope(r#"{"actor":"a","action":"b"}"#);
    envelope.event.actor = "mallory".into();
    let err = envelope.verify_payload(&Limits::default()).unwrap_err();
    assert_eq!(err.field(), Some("event"));
}

#[test]
fn member_tables_are_in_canonical_order() {
    assert!(ENVELOPE_MEMBERS.is_sorted_by(|a, b| compare_utf16(a, b).is_lt()));
    let event = sample_envelope(
        r#"{"actor":"a","action":"b","resource":"r","outcome":"o","time":"2026-01-01T00:00:00Z",
            "id":"i","stream":"s","source":"src","attributes":{}}"#,
    )
    .event;
    let canonical = String::from_utf8(event.canonical_bytes()).unwrap();
    assert_eq!(
        canonical,
        r#"{"action":"b","actor":"a","attributes":{},"id":"i","outcome":"o","resource":"r","source":"src","stream":"s","time":"2026-01-01T00:00:00Z"}"#
    );
}

// ---------------------------------------------------------------- properties

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
        "[a-z\u{e000}\u{10000}]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn arb_attributes() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(
        (
            "[a-z\u{e000}-\u{e010}\u{1f600}-\u{1f610}]{0,4}|\\PC{0,6}",
            arb_json(),
        ),
        0..6,
    )
    .prop_map(|members| members.into_iter().collect())
}

fn arb_time() -> impl Strategy<Value = String> {
    (0i64..253_402_300_799, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| jiff::Timestamp::new(s, ns).unwrap().to_string())
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    let event = (
        (
            ".+",
            ".+",
            prop::option::of(any::<String>()),
            prop::option::of(any::<String>()),
        ),
        (
            prop::option::of(arb_time()),
            prop::option::of(".+"),
            prop::option::of("[a-z0-9][a-z0-9._-]{0,20}"),
            prop::option::of(any::<String>()),
        ),
        prop::option::of(arb_attributes()),
    )
        .prop_map(
            |((actor, action, resource, outcome), (time, id, stream, source), attributes)| {
                ClientEvent {
                    actor,
                    action,
                    resource,
                    outcome,
                    time,
                    id,
                    stream,
                    source,
                    attributes,
                }
            },
        );
    (
        event,
        any::<u128>(),
        "_?[a-z0-9][a-z0-9._-]{0,20}",
        arb_time(),
        ".+",
        prop::option::of(any::<String>()),
        ".+",
    )
        .prop_map(
            |(event, id, stream, received_at, writer, source, payload)| Envelope {
                id: uuid::Uuid::from_u128(id).hyphenated().to_string(),
                stream,
                received_at,
                writer,
                source,
                event,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The hot path writes exactly what the general canonicalizer writes
    /// for `to_json`, and what it writes reads back.
    #[test]
    fn fast_path_equals_canonicalize_of_to_json(envelope in arb_envelope()) {
        let fast = envelope.canonical_bytes();
        prop_assert_eq!(&fast, &to_canonical_vec(&envelope.to_json()));
        let back = Envelope::from_canonical(&fast).unwrap();
        prop_assert_eq!(&back.canonical_bytes(), &fast);
        prop_assert_eq!(&back.id, &envelope.id);
        prop_assert_eq!(&back.payload, &envelope.payload);
        prop_assert_eq!(&back.event.actor, &envelope.event.actor);
        prop_assert_eq!(&back.event.time, &envelope.event.time);
        // The stored form rebuilds exactly the canonical bytes.
        let (canonical, stored) = envelope.canonical_and_stored();
        prop_assert_eq!(&canonical, &fast);
        prop_assert!(stored.len() <= canonical.len());
        let mut scratch = Vec::new();
        prop_assert_eq!(canonical_from_stored(&stored, &mut scratch).unwrap(), &fast[..]);
    }

    /// Random bytes never panic the parser.
    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let limits = Limits::default();
        prop_assert_eq!(
            unknown_unnamed(parse_client_event(&raw, &limits)),
            unknown_unnamed(parse_through_map(&raw, &limits))
        );
        let _ = Envelope::from_canonical(&raw);
    }

    /// Random JSON never panics, and whatever is accepted makes an envelope
    /// that canonicalizes consistently and reads back.
    #[test]
    fn random_json_never_panics(value in arb_json(), attributes in arb_attributes()) {
        let raw = serde_json::to_vec(&value).unwrap();
        let limits = Limits::default();
        prop_assert_eq!(
            unknown_unnamed(parse_client_event(&raw, &limits)),
            unknown_unnamed(parse_through_map(&raw, &limits))
        );
        let event = json!({"actor": "a", "action": "b", "attributes": attributes});
        let raw = serde_json::to_vec(&event).unwrap();
        if let Ok(parsed) = parse_client_event(&raw, &Limits::default()) {
            let envelope = new_envelope(parsed, &raw, UUID.into(), jiff::Timestamp::UNIX_EPOCH, "w", "s", "c").unwrap();
            let bytes = envelope.canonical_bytes();
            prop_assert_eq!(&bytes, &to_canonical_vec(&envelope.to_json()));
            let back = Envelope::from_canonical(&bytes).unwrap();
            back.verify_payload(&Limits::default()).unwrap();
            let (_, stored) = envelope.canonical_and_stored();
            let mut scratch = Vec::new();
            prop_assert_eq!(canonical_from_stored(&stored, &mut scratch).unwrap(), &bytes[..]);
        }
    }

    /// Mutations of a valid event (byte flips, insertions, truncations) never
    /// panic the parser.
    #[test]
    fn mutated_events_never_panic(
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        op in 0u8..3,
    ) {
        let base = br#"{"actor":"al\u00e9","action":"b","time":"2026-11-26T04:51:57Z","attributes":{"x":[1,2.5e3,{"y":null}],"s":"\ud83d\ude00"},"stream":"app"}"#;
        let mut raw = base.to_vec();
        let i = pos.index(raw.len());
        match op {
            0 => raw[i] = byte,
            1 => raw.insert(i, byte),
            _ => raw.truncate(i),
        }
        let limits = Limits::default();
        prop_assert_eq!(
            unknown_unnamed(parse_client_event(&raw, &limits)),
            unknown_unnamed(parse_through_map(&raw, &limits))
        );
    }

    /// Objects with any mix of event members, unknown members, repeated
    /// names, escaped names and values of every type are read exactly as
    /// through a map, errors included (which member is named first).
    #[test]
    fn members_read_as_through_a_map(
        members in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "actor", "action", "resource", "outcome", "time", "id", "stream",
                    "source", "attributes", "extra", "Actor", "act\\u006fr", "",
                ]),
                prop_oneof![
                    Just("\"x\"".to_owned()),
                    Just("\"\"".to_owned()),
                    Just("\"2026-11-26T04:51:57+01:00\"".to_owned()),
                    Just("null".to_owned()),
                    Just("12".to_owned()),
                    Just("{\"k\":[1,{\"k\":2}]}".to_owned()),
                    Just("{\"k\":1,\"k\":2}".to_owned()),
                    Just("[1,".to_owned()),
                    arb_json().prop_map(|v| serde_json::to_string(&v).unwrap()),
                ],
            ),
            0..8,
        ),
        trailing in prop::sample::select(vec!["", " ", " x", "}"]),
    ) {
        let body: Vec<String> = members
            .iter()
            .map(|(name, value)| format!("\"{name}\" : {value}"))
            .collect();
        let raw = format!("{{ {} }}{trailing}", body.join(","));
        let limits = Limits::default();
        let read = parse_client_event(raw.as_bytes(), &limits);
        prop_assert_eq!(
            unknown_unnamed(read.clone()),
            unknown_unnamed(parse_through_map(raw.as_bytes(), &limits))
        );
        // The unknown member named is the first in the document.
        if let Err(EventError::UnknownField { field }) = read {
            let known = ["actor", "action", "resource", "outcome", "time", "id", "stream", "source", "attributes"];
            let first = members.iter().map(|(name, _)| name.replace("\\u006f", "o")).find(|name| !known.contains(&name.as_str()));
            prop_assert_eq!(Some(field), first);
        }
    }
}

/// Rough timing of the hot path; run with
/// `cargo test -p stele-event --release -- --ignored --nocapture bench`.
#[test]
#[ignore = "timing, not a correctness test"]
fn bench_canonical_bytes() {
    let raw = std::env::var("STELE_BENCH_EVENT").unwrap_or_else(|_| r#"{"actor":"user:alice@example.com","action":"document.read","resource":"doc/8c1f2a","outcome":"success","time":"2026-11-26T04:51:57.123Z","id":"req-7d3e","source":"web","attributes":{"ip":"203.0.113.7","ua":"Mozilla/5.0","bytes":1234}}"#.to_string());
    let raw = raw.as_str();
    let envelope = sample_envelope(raw);
    let iterations = 200_000u32;
    let mut total = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        total += std::hint::black_box(&envelope).canonical_bytes().len();
    }
    let fast = start.elapsed() / iterations;
    let payload = Value::String(envelope.payload.clone());
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        total += to_canonical_vec(std::hint::black_box(&payload)).len();
    }
    let payload_only = start.elapsed() / iterations;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        total += std::hint::black_box(&envelope.event)
            .canonical_bytes()
            .len();
    }
    let event_only = start.elapsed() / iterations;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        total += to_canonical_vec(&std::hint::black_box(&envelope).to_json()).len();
    }
    let slow = start.elapsed() / iterations;
    let start = std::time::Instant::now();
    for _ in 0..iterations / 4 {
        total += usize::from(parse_client_event(raw.as_bytes(), &Limits::default()).is_ok());
    }
    let parse = start.elapsed() / (iterations / 4);
    let start = std::time::Instant::now();
    for _ in 0..iterations / 4 {
        total += std::hint::black_box(&envelope)
            .canonical_and_stored()
            .1
            .len();
    }
    let stored = start.elapsed() / (iterations / 4);
    let (_, packed) = envelope.canonical_and_stored();
    let mut scratch = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        total += canonical_from_stored(std::hint::black_box(&packed), &mut scratch)
            .map_or(0, <[u8]>::len);
    }
    let unpack = start.elapsed() / iterations;
    println!(
        "payload {} bytes, canonical {} bytes: canonical_bytes {fast:?} (payload string {payload_only:?}, event {event_only:?}), via Value {slow:?}, parse {parse:?}, canonical and stored {stored:?} (packed {} bytes), rebuilt from packed {unpack:?} ({total})",
        raw.len(),
        envelope.canonical_bytes().len(),
        packed.len()
    );
}

/// The stored form keeps the payload once: its `payload` member is one
/// copy of the stored text, and the rest (the event, the server's fields)
/// packs to well under its canonical size.
#[test]
fn stored_form_keeps_the_payload_once() {
    let raw = r#"{"actor":"user-5@example.com","action":"document.read","resource":"documents/5","outcome":"success","attributes":{"ip":"10.0.0.5","tags":["a","b"],"note":"said \"hi\"\n","n":1.5}}"#;
    let envelope = sample_envelope(raw);
    let (canonical, stored) = envelope.canonical_and_stored();
    assert_eq!(stored.first(), Some(&PACKED_FORM));
    let mut escaped = Vec::new();
    crate::jcs::write_string(&envelope.payload, &mut escaped);
    let text = escaped.len() - 2;
    let rest = canonical.len() - text;
    assert!(
        stored.len() <= text + rest * 2 / 3,
        "stored {} bytes: a {text}-byte payload text and {rest} other bytes (canonical {})\n{}",
        stored.len(),
        canonical.len(),
        crate::stored::describe(&stored)
    );
    let mut scratch = Vec::new();
    let rebuilt = canonical_from_stored(&stored, &mut scratch).unwrap();
    assert_eq!(rebuilt, canonical);
    assert_eq!(Envelope::from_canonical(rebuilt).unwrap(), envelope);
}
