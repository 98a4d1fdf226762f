//! `stele-event` and `stele-ingest`: what clients send over HTTP (one
//! event, JSON arrays and NDJSON bodies, the Kubernetes webhook's
//! `EventList`) and the CLI reads from files.

use stele_event::{
    EventError, Limits, MAX_DEPTH_CEILING, canonicalize, parse_client_event, parse_strict,
};
use stele_ingest::{BodyKind, BodyLimits, dedupe_key, parse_body, parse_event_list};

/// Limits small enough that the fuzzer reaches every one of them.
fn small_limits() -> BodyLimits {
    BodyLimits {
        max_body_bytes: 64 * 1024,
        max_events: 64,
        event: Limits {
            max_event_bytes: 4096,
            max_string_bytes: 64,
            max_id_bytes: 128,
            max_depth: 8,
            max_attribute_keys: 16,
        },
    }
}

/// The canonical form of an accepted event is RFC 8785 of its JSON value
/// and reads back as the same event.
pub fn client_event(data: &[u8]) {
    let limits = Limits::default();
    let Ok(event) = parse_client_event(data, &limits) else {
        return;
    };
    let canonical = event.canonical_bytes();
    let mut general = Vec::new();
    canonicalize(&event.to_json(), &mut general);
    assert_eq!(canonical, general, "the fast canonical form is RFC 8785's");
    assert_reads_back(&canonical, &limits);
}

/// The canonical form of an accepted event reads back as the same event.
/// As client input it is accepted, unless it holds a double in [2^53,
/// 1e21): RFC 8785 writes those as plain integers, which client input
/// refuses (an integer literal beyond ±2^53 would be rounded without the
/// client knowing). Read as canonical text (big integers as doubles, as
/// the log reads its own envelopes) it is the same document either way.
fn assert_reads_back(canonical: &[u8], limits: &Limits) {
    let unbounded = Limits {
        max_event_bytes: usize::MAX,
        ..*limits
    };
    match parse_client_event(canonical, &unbounded) {
        // Equal as RFC 8785 defines it (1.5e3 and 1500 are one number), so
        // the canonical bytes are compared, not the parsed values.
        Ok(again) => assert_eq!(again.canonical_bytes(), canonical),
        Err(EventError::IntegerOutOfRange { .. }) => {
            let value = parse_strict(canonical, MAX_DEPTH_CEILING)
                .expect("canonical text reads with big integers as doubles");
            let mut again = Vec::new();
            canonicalize(&value, &mut again);
            assert_eq!(again, canonical);
        }
        Err(other) => panic!("the canonical form of an accepted event is refused: {other}"),
    }
}

/// `(item, bytes)` offsets of every event cut from `body`.
fn offset_in(body: &[u8], part: &[u8]) -> usize {
    let start = part.as_ptr() as usize - body.as_ptr() as usize;
    assert!(
        start + part.len() <= body.len(),
        "an event's bytes lie inside the body"
    );
    start
}

/// First byte even: a JSON body; odd: NDJSON. Accepted events are numbered
/// in order, their bytes are disjoint pieces of the body in body order
/// (NDJSON: on the line they name), and each parses as a client event.
pub fn ingest_body(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = if which % 2 == 0 {
        BodyKind::Json
    } else {
        BodyKind::Ndjson
    };
    let limits = small_limits();
    let Ok(events) = parse_body(kind, body, &limits) else {
        return;
    };
    assert!(!events.is_empty() && events.len() <= limits.max_events);
    let mut previous_end = 0;
    for (position, (raw, event)) in events.iter().enumerate() {
        assert_eq!(raw.item, position);
        let start = offset_in(body, raw.bytes);
        assert!(start >= previous_end, "events are disjoint and in order");
        previous_end = start + raw.bytes.len();
        assert!(raw.bytes.len() <= limits.event.max_event_bytes);
        match kind {
            BodyKind::Ndjson => {
                let line = body[..start].iter().filter(|b| **b == b'\n').count() + 1;
                assert_eq!(raw.line, Some(line));
                assert!(!raw.bytes.contains(&b'\n'));
            }
            BodyKind::Json => assert_eq!(raw.line, None),
        }
        assert_eq!(
            parse_client_event(raw.bytes, &limits.event).as_ref(),
            Ok(event)
        );
    }
}

/// An accepted list maps every item: the id is the item's dedupe key, the
/// raw bytes are the item as sent (strict JSON), and the mapped event is a
/// client event that round-trips through its canonical form.
pub fn k8s_event_list(data: &[u8]) {
    let limits = small_limits();
    let Ok(events) = parse_event_list(data, &limits) else {
        return;
    };
    assert!(!events.is_empty() && events.len() <= limits.max_events);
    let mut previous_end = 0;
    for item in &events {
        let start = offset_in(data, item.raw);
        assert!(start >= previous_end, "items are disjoint and in order");
        previous_end = start + item.raw.len();
        assert!(item.raw.len() <= limits.event.max_event_bytes);
        assert!(
            parse_strict(item.raw, MAX_DEPTH_CEILING).is_ok(),
            "the raw item is strict JSON"
        );
        let expected = dedupe_key(&item.audit_id, &item.stage, limits.event.max_id_bytes);
        assert_eq!(item.event.id.as_deref(), Some(expected.as_str()));
        assert!(expected.len() <= limits.event.max_id_bytes);
        assert_reads_back(&item.event.canonical_bytes(), &limits.event);
    }
}

/// A syslog message is mapped or refused; a mapped one is an event the
/// event rules accept, within the limits, whose payload is the message
/// (exactly, when it is UTF-8) and whose attributes say how it was read.
pub fn syslog_message(data: &[u8]) {
    let received: jiff::Timestamp = "2026-12-08T03:00:00Z".parse().expect("a fixed time");
    let limits = small_limits().event;
    let Ok(mapped) = stele_ingest::syslog::parse_message(data, received, &limits) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(mapped.raw, text, "the payload is the message");
    }
    let syslog = &mapped.event.attributes.as_ref().expect("attributes")["syslog"];
    assert!(syslog["format"].is_string() && syslog["message"].is_string());
    assert_eq!(
        syslog.get("message_base64").is_some(),
        std::str::from_utf8(data).is_err()
    );
    let unbounded = Limits {
        max_event_bytes: usize::MAX,
        ..limits
    };
    let again = parse_client_event(&mapped.event.canonical_bytes(), &unbounded)
        .expect("a mapped event reads back as a client event");
    assert_eq!(again, mapped.event);
}

/// The messages cut out of a stream are within the limit, never empty,
/// and the same however the stream arrives (in pieces of a size the first
/// byte gives, or whole); the framer holds no more than it is bounded to.
pub fn syslog_framing(data: &[u8]) {
    use stele_ingest::syslog::framing::{Frame, Framer};
    const MAX: usize = 64;
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let messages = |pieces: &mut dyn Iterator<Item = &[u8]>| -> Vec<Vec<u8>> {
        let mut framer = Framer::new(MAX);
        let mut frames = Vec::new();
        for piece in pieces {
            frames.extend(framer.push(piece));
        }
        frames.extend(framer.end());
        frames
            .into_iter()
            .filter_map(|frame| match frame {
                Frame::Message(message) => Some(message),
                Frame::Refused(_) => None,
            })
            .collect()
    };
    let pieces = messages(&mut stream.chunks(usize::from(cut % 64) + 1));
    for message in &pieces {
        assert!(!message.is_empty() && message.len() <= MAX, "{message:?}");
    }
    let whole = messages(&mut std::iter::once(stream));
    assert_eq!(pieces, whole, "the messages depend on the pieces");
}
