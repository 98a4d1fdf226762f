//! Tests of the body module through the public API: format selection, exact
//! slicing, every refusal with its code and position, and no panic on any
//! input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stele_event::{EventError, Limits};
use stele_ingest::{BodyKind, BodyLimits, IngestError, body_kind, parse_body, split_body};

const A: &str = r#"{"actor":"alice","action":"login"}"#;
const B: &str = r#"{"actor":"bob","action":"logout","time":"2026-01-02T03:04:05+01:00"}"#;

fn limits() -> BodyLimits {
    BodyLimits::default()
}

fn split(kind: BodyKind, body: &str) -> Result<Vec<(usize, Option<usize>, String)>, IngestError> {
    split_body(kind, body.as_bytes(), &limits()).map(|events| {
        events
            .into_iter()
            .map(|e| (e.item, e.line, String::from_utf8(e.bytes.to_vec()).unwrap()))
            .collect()
    })
}

#[test]
fn content_types() {
    for (header, kind) in [
        ("application/json", BodyKind::Json),
        ("Application/JSON; charset=utf-8", BodyKind::Json),
        ("application/json;charset=\"UTF-8\"", BodyKind::Json),
        ("application/x-ndjson", BodyKind::Ndjson),
        ("application/jsonl; charset=utf-8", BodyKind::Ndjson),
    ] {
        assert_eq!(body_kind(Some(header)), Ok(kind), "{header}");
    }
    for header in [
        None,
        Some(""),
        Some("text/plain"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
        Some("application/json; nonsense"),
    ] {
        let error = body_kind(header).unwrap_err();
        assert_eq!(error.code(), "unsupported_content_type", "{header:?}");
        assert_eq!(error.item(), None);
    }
    assert!(
        body_kind(None)
            .unwrap_err()
            .to_string()
            .contains("missing Content-Type")
    );
}

#[test]
fn json_single_object_and_array_slices_are_exact() {
    assert_eq!(
        split(BodyKind::Json, &format!("  {A}\n")).unwrap(),
        vec![(0, None, A.to_owned())]
    );
    let body = format!("[\n {A} ,\n\t{B}\n]\n");
    assert_eq!(
        split(BodyKind::Json, &body).unwrap(),
        vec![(0, None, A.to_owned()), (1, None, B.to_owned())]
    );
    // The slices point into the body itself, not into copies.
    let events = split_body(BodyKind::Json, body.as_bytes(), &limits()).unwrap();
    let range = body.as_bytes().as_ptr_range();
    assert!(events.iter().all(|e| range.contains(&e.bytes.as_ptr())));
}

#[test]
fn ndjson_lines_crlf_and_blank_lines() {
    let body = format!("{A}\r\n\n   \r\n{B}\n\n{A}");
    assert_eq!(
        split(BodyKind::Ndjson, &body).unwrap(),
        vec![
            (0, Some(1), A.to_owned()),
            (1, Some(4), B.to_owned()),
            (2, Some(6), A.to_owned()),
        ]
    );
}

#[test]
fn parse_body_normalizes_every_event() {
    let body = format!("{A}\n{B}\n");
    let parsed = parse_body(BodyKind::Ndjson, body.as_bytes(), &limits()).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].1.actor, "alice");
    assert_eq!(parsed[1].1.time.as_deref(), Some("2026-01-02T02:04:05Z"));
    assert_eq!(parsed[1].0.line, Some(2));
}

#[test]
fn no_events() {
    for (kind, body) in [
        (BodyKind::Json, ""),
        (BodyKind::Json, " \n"),
        (BodyKind::Json, "[]"),
        (BodyKind::Json, " [ ] "),
        (BodyKind::Ndjson, ""),
        (BodyKind::Ndjson, "\n\r\n  \n"),
    ] {
        let error = split(kind, body).unwrap_err();
        assert_eq!(error, IngestError::NoEvents, "{body:?}");
        assert_eq!(error.code(), "no_events");
    }
}

#[test]
fn body_too_large() {
    let small = BodyLimits {
        max_body_bytes: 10,
        ..limits()
    };
    let error = split_body(BodyKind::Json, A.as_bytes(), &small).unwrap_err();
    assert_eq!(error, IngestError::BodyTooLarge { limit: 10 });
    assert_eq!(error.code(), "body_too_large");
}

#[test]
fn too_many_events() {
    let two = BodyLimits {
        max_events: 2,
        ..limits()
    };
    let body = format!("[{A},{A},{A}]");
    let error = split_body(BodyKind::Json, body.as_bytes(), &two).unwrap_err();
    assert_eq!(error, IngestError::TooManyEvents { limit: 2 });
    assert_eq!(error.code(), "too_many_events");
    let body = format!("{A}\n{A}\n{A}\n");
    assert_eq!(
        split_body(BodyKind::Ndjson, body.as_bytes(), &two).unwrap_err(),
        IngestError::TooManyEvents { limit: 2 }
    );
    assert!(split_body(BodyKind::Ndjson, format!("{A}\n{A}\n").as_bytes(), &two).is_ok());
}

#[test]
fn event_too_large_names_the_item() {
    let tight = BodyLimits {
        event: Limits {
            max_event_bytes: A.len(),
            ..Limits::default()
        },
        ..limits()
    };
    let body = format!("{A}\n\n{B}\n");
    let error = split_body(BodyKind::Ndjson, body.as_bytes(), &tight).unwrap_err();
    assert_eq!(
        error,
        IngestError::EventTooLarge {
            item: 1,
            line: Some(3),
            limit: A.len()
        }
    );
    assert_eq!(error.code(), "event_too_large");
    assert_eq!(
        error.to_string(),
        format!(
            "event 1 (line 3): is over the max_event_bytes limit of {} bytes",
            A.len()
        )
    );
    let body = format!("[{A},{B}]");
    let error = split_body(BodyKind::Json, body.as_bytes(), &tight).unwrap_err();
    assert_eq!((error.item(), error.line()), (Some(1), None));
}

#[test]
fn invalid_utf8_names_offset_item_and_line() {
    let mut body = format!("{A}\n").into_bytes();
    let second_start = body.len();
    body.extend_from_slice(b"{\"actor\":\"b\xffb\",\"action\":\"x\"}\n");
    let error = split_body(BodyKind::Ndjson, &body, &limits()).unwrap_err();
    assert_eq!(
        error,
        IngestError::InvalidUtf8 {
            offset: second_start + 11,
            item: Some(1),
            line: Some(2)
        }
    );
    assert_eq!(error.code(), "invalid_utf8");
    assert!(
        error
            .to_string()
            .starts_with("event 1 (line 2): not valid UTF-8")
    );

    let mut body = b"[".to_vec();
    body.extend_from_slice(A.as_bytes());
    body.extend_from_slice(b",{\"actor\":\"\xc3\"}]");
    let error = split_body(BodyKind::Json, &body, &limits()).unwrap_err();
    assert_eq!(error.code(), "invalid_utf8");
    assert_eq!(error.item(), Some(1));
    // Outside any event: between elements.
    let error = split_body(BodyKind::Json, b"[{} \xff]", &limits()).unwrap_err();
    assert_eq!(
        error,
        IngestError::InvalidUtf8 {
            offset: 4,
            item: None,
            line: None
        }
    );
}

#[test]
fn invalid_json_is_refused_whole() {
    for (kind, body, item, line) in [
        (BodyKind::Json, format!("[{A},]"), Some(1), None),
        (BodyKind::Json, format!("[{A} {B}]"), None, None),
        (BodyKind::Json, format!("{A} {B}"), None, None),
        (BodyKind::Json, format!("[{A}"), None, None),
        (BodyKind::Json, "42".to_owned(), None, None),
        (BodyKind::Json, "\"event\"".to_owned(), None, None),
        (BodyKind::Json, "{\"actor\":}".to_owned(), Some(0), None),
        (
            BodyKind::Ndjson,
            format!("{A}\n{{\"actor\" \"x\"}}\n"),
            Some(1),
            Some(2),
        ),
        (BodyKind::Ndjson, format!("{A} {A}\n"), Some(0), Some(1)),
        (BodyKind::Ndjson, format!("[{A}]\n["), Some(1), Some(2)),
    ] {
        let error = split(kind, &body).unwrap_err();
        assert_eq!(error.code(), "invalid_json", "{body}: {error}");
        assert_eq!(
            (error.item(), error.line()),
            (item, line),
            "{body}: {error}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let depth = Limits::default().max_depth;
    // The array adds one level above each event.
    let ok = format!(
        "[{{\"actor\":\"a\",\"action\":\"b\",\"attributes\":{}1{}}}]",
        "[".repeat(depth - 2).replacen('[', "{\"k\":", 1),
        "]".repeat(depth - 3) + "}"
    );
    parse_body(BodyKind::Json, ok.as_bytes(), &limits()).unwrap();
    let hostile = format!("[{}", "[".repeat(5_000_000));
    let error = split_body(BodyKind::Json, hostile.as_bytes(), &limits()).unwrap_err();
    let IngestError::Event {
        item: 0,
        line: None,
        source: EventError::TooDeep { limit, .. },
    } = error
    else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(limit, depth);
    let hostile = "{\"a\":".repeat(1_000_000);
    let error = split_body(BodyKind::Ndjson, hostile.as_bytes(), &limits()).unwrap_err();
    assert_eq!(
        (error.code(), error.item(), error.line()),
        ("invalid_event", Some(0), Some(1))
    );
}

#[test]
fn first_bad_event_refuses_the_body() {
    let body = format!("{A}\n{B}\n\n{{\"actor\":7,\"action\":\"x\"}}\n{{\"nope\":1}}\n");
    let error = parse_body(BodyKind::Ndjson, body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(error.code(), "invalid_event");
    assert_eq!((error.item(), error.line()), (Some(2), Some(4)));
    assert_eq!(error.field(), Some("actor"));
    assert_eq!(
        error.to_string(),
        "event 2 (line 4): field \"actor\": expected a non-empty string, got number"
    );
    let body = format!("[{A}, 1]");
    let error = parse_body(BodyKind::Json, body.as_bytes(), &limits()).unwrap_err();
    assert!(matches!(
        error,
        IngestError::Event {
            item: 1,
            line: None,
            source: EventError::NotAnObject { .. }
        }
    ));
    // A string over its limit is refused, never truncated.
    let long = "x".repeat(Limits::default().max_string_bytes + 1);
    let body = format!("[{A},{{\"actor\":\"{long}\",\"action\":\"a\"}}]");
    let error = parse_body(BodyKind::Json, body.as_bytes(), &limits()).unwrap_err();
    assert!(matches!(
        error,
        IngestError::Event {
            item: 1,
            source: EventError::StringTooLong { .. },
            ..
        }
    ));
}

/// What `parse_body` must answer given what `split_body` answered for the
/// same body: the split's error unchanged, or one parsed event per slice
/// (the same slices, in order), or a refusal of one of those events.
fn parse_agrees_with_split(kind: BodyKind, body: &[u8]) -> Result<(), TestCaseError> {
    let split = split_body(kind, body, &limits());
    let parsed = parse_body(kind, body, &limits());
    match (split, parsed) {
        (Err(split), parsed) => prop_assert_eq!(parsed.unwrap_err(), split),
        (Ok(raw), Ok(parsed)) => {
            prop_assert_eq!(parsed.len(), raw.len());
            for (p, r) in parsed.iter().zip(&raw) {
                prop_assert_eq!((p.0.item, p.0.line, p.0.bytes), (r.item, r.line, r.bytes));
            }
        }
        (Ok(raw), Err(e)) => {
            prop_assert_eq!(e.code(), "invalid_event", "{}", e);
            let item = e.item().unwrap();
            prop_assert!(
                item < raw.len(),
                "{} names item {} of {}",
                e,
                item,
                raw.len()
            );
            prop_assert_eq!(e.line(), raw[item].line);
        }
    }
    Ok(())
}

proptest! {
    /// Never a panic, and `parse_body` answers what `split_body` implies.
    #[test]
    fn random_bytes_parse_as_they_split(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for kind in [BodyKind::Json, BodyKind::Ndjson] {
            parse_agrees_with_split(kind, &body)?;
        }
        // Only the absence of a panic is checked here: random bytes are
        // almost never an EventList (tests/kubernetes.rs checks the mapping).
        let _ = stele_ingest::parse_event_list(&body, &limits());
    }

    #[test]
    fn json_like_bytes_parse_as_they_split(
        body in proptest::collection::vec(
            prop::sample::select(b"{}[]\":,\\ \n\r0123456789-+.eEtrufalsn\xc3\xa9\xffaxu".to_vec()),
            0..256,
        )
    ) {
        for kind in [BodyKind::Json, BodyKind::Ndjson] {
            parse_agrees_with_split(kind, &body)?;
        }
        let _ = stele_ingest::parse_event_list(&body, &limits());
    }

    /// The same events sent as a JSON array and as NDJSON (with blank lines,
    /// either line ending, with or without one at the end) come back as the same slices, numbered alike,
    /// every one of them, with the NDJSON line each started on.
    #[test]
    fn array_and_ndjson_agree(
        actors in proptest::collection::vec("[a-z]{1,8}", 1..20),
        blank_lines in proptest::collection::vec(0..3usize, 20),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let events: Vec<String> = actors
            .iter()
            .map(|a| format!("{{\"actor\":\"{a}\",\"action\":\"x\"}}"))
            .collect();
        let json = format!("[{}]", events.join(" ,\n"));
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut ndjson = String::new();
        let mut lines = Vec::new();
        let mut line = 1;
        for (event, blanks) in events.iter().zip(&blank_lines) {
            for _ in 0..*blanks {
                ndjson.push_str(" \t");
                ndjson.push_str(newline);
                line += 1;
            }
            ndjson.push_str(event);
            if final_newline || lines.len() + 1 < events.len() {
                ndjson.push_str(newline);
            }
            lines.push(line);
            line += 1;
        }
        let from_json = split_body(BodyKind::Json, json.as_bytes(), &limits()).unwrap();
        let from_ndjson = split_body(BodyKind::Ndjson, ndjson.as_bytes(), &limits()).unwrap();
        prop_assert_eq!(from_json.len(), events.len());
        prop_assert_eq!(from_ndjson.len(), events.len());
        for (i, e) in events.iter().enumerate() {
            let (j, n) = (&from_json[i], &from_ndjson[i]);
            prop_assert_eq!((j.item, j.line, j.bytes), (i, None, e.as_bytes()));
            prop_assert_eq!((n.item, n.line, n.bytes), (i, Some(lines[i]), e.as_bytes()));
        }
        let parsed_json = parse_body(BodyKind::Json, json.as_bytes(), &limits()).unwrap();
        let parsed_ndjson = parse_body(BodyKind::Ndjson, ndjson.as_bytes(), &limits()).unwrap();
        prop_assert_eq!(parsed_json.len(), actors.len());
        prop_assert_eq!(parsed_ndjson.len(), actors.len());
        for ((j, n), actor) in parsed_json.iter().zip(&parsed_ndjson).zip(&actors) {
            prop_assert_eq!(&j.1, &n.1);
            prop_assert_eq!(&j.1.actor, actor);
        }
    }
}
