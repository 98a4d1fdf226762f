//! The search query language (`stele-query`).

use stele_query::Query;

/// Input: a query text. It parses or is refused with an offset inside the
/// text; a query that parses writes a normalized text that parses back to
/// the same query, which writes the same text again; matching an event
/// never panics.
pub fn search_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("fixed time");
    let query = match Query::parse(text, now) {
        Ok(query) => query,
        Err(e) => {
            assert!(e.at <= text.len().max(stele_query::MAX_QUERY_BYTES), "{e}");
            return;
        }
    };
    let normal = query.to_string();
    let again = Query::parse(&normal, now)
        .unwrap_or_else(|e| panic!("{normal:?}, written from {text:?}, is refused: {e}"));
    assert_eq!(again, query, "{normal:?} from {text:?}");
    assert_eq!(again.to_string(), normal);
    let _ = query.matches(envelope());
}

/// One event with every kind of value a term can meet.
fn envelope() -> &'static stele_event::Envelope {
    static ENVELOPE: std::sync::OnceLock<stele_event::Envelope> = std::sync::OnceLock::new();
    ENVELOPE.get_or_init(|| {
        let raw = br#"{"actor":"alice.smith@acme.example","action":"policy.update","resource":"db/prod/x","outcome":"denied","time":"2026-12-06T10:00:00Z","attributes":{"tags":["pci",1,true,null],"kubernetes":{"objectRef":{"namespace":"kube-system"}},"reason":"Permission denied"}}"#;
        let event = stele_event::parse_client_event(raw, &stele_event::Limits::default())
            .expect("fixed event");
        stele_event::new_envelope(
            event,
            raw,
            "01a2513e-234f-7da0-82bf-bfe759779cfe".into(),
            "2026-12-07T12:00:00Z".parse().expect("fixed time"),
            "svc-billing",
            "payments",
            "http",
        )
        .expect("fixed envelope")
    })
}

/// Input: a first byte choosing what the rest is. 0: the bytes of one
/// search part (`Part::encode`, what a search part file seals); they are
/// read back or refused, and a part that reads back writes the same bytes
/// again and answers a query over its ordinals only. 1: a whole search
/// part file of the fixtures' segment (`DATA/search/<id>.part`); one that
/// opens under the fixtures' data key gives the header read without the
/// key, and sealed again opens to the same header and bytes.
pub fn search_part(data: &[u8]) {
    match data.split_first() {
        Some((0, rest)) => part_bytes(rest),
        Some((1, rest)) => part_file(rest),
        _ => {}
    }
}

fn part_file(data: &[u8]) {
    use stele_store::search_part::{open, read_header, seal};
    let keys = super::fixtures::keys();
    let segment = super::fixtures::DEK_SEGMENT;
    let Ok((header, plain)) = open(&keys.data_key, segment, data) else {
        return;
    };
    assert_eq!(read_header(data), Some(header));
    let again = seal(&keys.data_key, &header, &plain).expect("seals");
    assert_eq!(open(&keys.data_key, segment, &again), Ok((header, plain)));
}

fn part_bytes(data: &[u8]) {
    let Ok(part) = stele_index::Part::decode(data) else {
        return;
    };
    assert_eq!(part.encode(), data, "a decoded part writes other bytes");
    // The same part with its frequent words kept answers the same.
    let mut sealed = stele_index::Part::decode(data).expect("decoded once");
    let words = sealed.frequent_words();
    assert!(sealed.keep_frequent_words(words), "the part did not grow");
    let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("fixed time");
    for text in [
        "actor:alice* -outcome:success",
        "\"permission denied\" OR attributes.tags:pci",
        "received>=2026-01-01 time<2026-12-01 id:0190*",
    ] {
        let query = Query::parse(text, now).expect("a fixed query");
        if let Some(expr) = query.expr() {
            let set = part.eval(expr, "ops");
            assert_eq!(set.len(), part.len());
            assert_eq!(
                sealed.eval(expr, "ops"),
                set,
                "frequent words change {text}"
            );
            let _ = part.top(&stele_query::Field::Actor, &set, 5);
        }
    }
}
