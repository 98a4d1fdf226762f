//! The index answers exactly what the matcher accepts: random events and
//! random expressions over one vocabulary (so that terms do match), the
//! part's answer compared with `Expr::matches` on every event.

#![allow(clippy::unwrap_used, clippy::panic)]

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};
use stele_event::{ClientEvent, Envelope};
use stele_index::{EventTerms, Part};
use stele_query::{Expr, Field, Pattern, TimeBound, TimeField};

const WORDS: [&str; 10] = [
    "alice",
    "bob",
    "Carol",
    "db",
    "prod",
    "payments",
    "denied",
    "ok",
    "7",
    "kube-system",
];

fn word() -> impl Strategy<Value = String> {
    (0..WORDS.len()).prop_map(|i| WORDS[i].to_string())
}

/// A value from the vocabulary: one word, or two or three joined by one
/// of a few separators.
fn value() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(word(), 1..4),
        prop_oneof![Just("/"), Just("."), Just(" "), Just("@")],
    )
        .prop_map(|(words, sep)| words.join(sep))
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        value().prop_map(Value::from),
        (0i64..10).prop_map(Value::from),
        Just(json!(0.5)),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

const KEYS: [&str; 4] = ["ip", "tags", "k8s", "a.b"];

fn attribute() -> impl Strategy<Value = Value> {
    let leaf = scalar();
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec(((0..KEYS.len()).prop_map(|i| KEYS[i]), inner), 0..3).prop_map(
                |members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..6, 0i32..2)
        .prop_map(|(s, n)| Timestamp::new(1_800_000_000 + s, n * 500_000_000).unwrap())
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (
            value(),
            value(),
            prop::option::of(value()),
            prop::option::of(value()),
        ),
        (
            prop::option::of(value()),
            value(),
            instant(),
            prop::option::of(instant()),
        ),
        prop::collection::vec(((0..KEYS.len()).prop_map(|i| KEYS[i]), attribute()), 0..4),
        0u32..5,
    )
        .prop_map(
            |((actor, action, resource, outcome), (source, writer, received, time), attrs, n)| {
                let attributes: serde_json::Map<String, Value> =
                    attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                Envelope {
                    id: id_of(n),
                    stream: "s".into(),
                    received_at: received.to_string(),
                    writer,
                    source: source.clone(),
                    event: ClientEvent {
                        actor,
                        action,
                        resource,
                        outcome,
                        time: time.map(|t| t.to_string()),
                        id: None,
                        stream: None,
                        source,
                        attributes: (!attributes.is_empty()).then_some(attributes),
                    },
                    payload: "{}".into(),
                }
            },
        )
}

/// Ids as the server gives them (canonical UUIDs), and some that are not.
fn id_of(n: u32) -> String {
    if n.is_multiple_of(4) {
        format!("0190-{n}")
    } else {
        format!("01900000-0000-7000-8000-{n:012x}")
    }
}

fn id_term() -> impl Strategy<Value = Expr> {
    let pattern = prop_oneof![
        (0u32..5).prop_map(|n| Pattern::Exact(id_of(n))),
        Just(Pattern::Prefix(
            "01900000-0000-7000-8000-00000000000".into()
        )),
        Just(Pattern::Prefix("0190".into())),
        (0u32..5).prop_map(|n| Pattern::Glob(vec![String::new(), format!("{n}")])),
    ];
    prop::collection::vec(pattern, 1..3).prop_map(|p| Expr::Field(Field::Id, p))
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        3 => value().prop_map(Pattern::Exact),
        1 => word().prop_map(Pattern::Prefix),
        1 => (word(), word()).prop_map(|(a, b)| Pattern::Glob(vec![String::new(), a, b])),
        1 => Just(Pattern::Prefix(String::new())),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        (0..Field::NAMED.len()).prop_map(|i| Field::NAMED[i].1.clone()),
        prop::collection::vec((0..KEYS.len()).prop_map(|i| KEYS[i].to_string()), 1..3)
            .prop_map(Field::Attribute),
    ]
}

fn term() -> impl Strategy<Value = Expr> {
    let time = (instant(), 0..4u8, any::<bool>()).prop_map(|(t, op, received)| {
        let field = if received {
            TimeField::Received
        } else {
            TimeField::Time
        };
        let bound = match op {
            0 => TimeBound::Before(t),
            1 => TimeBound::AtOrBefore(t),
            2 => TimeBound::After(t),
            _ => TimeBound::AtOrAfter(t),
        };
        Expr::Time(field, bound)
    });
    prop_oneof![
        3 => (field(), prop::collection::vec(pattern(), 1..3)).prop_map(|(f, p)| Expr::Field(f, p)),
        1 => time,
        1 => id_term(),
        2 => prop::collection::vec(word(), 1..3)
            .prop_map(|w| Expr::Text(w.iter().flat_map(|w| stele_query::tokens(w)).collect())),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    term().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_index_answers_what_the_matcher_accepts(
        events in prop::collection::vec(envelope(), 1..40),
        exprs in prop::collection::vec(expr(), 1..8),
    ) {
        // Searched once half full, so that the values kept in order for
        // prefixes and globs are brought up to date as the part grows.
        let mut part = Part::new();
        let half = events.len() / 2;
        for (i, event) in events.iter().enumerate() {
            if i == half {
                for expr in &exprs {
                    part.eval(expr, "s");
                }
            }
            part.insert(10 + 3 * i as u64, &EventTerms::of(event)).unwrap();
        }
        // A part read back from its bytes answers as the part itself, and
        // writes the same bytes again.
        let bytes = part.encode();
        let decoded = Part::decode(&bytes).unwrap();
        prop_assert_eq!(decoded.encode(), bytes);
        for expr in &exprs {
            let set = part.eval(expr, "s");
            prop_assert_eq!(&decoded.eval(expr, "s"), &set, "{} decoded", expr);
            for (ordinal, event) in events.iter().enumerate() {
                prop_assert_eq!(
                    set.contains(ordinal),
                    expr.matches(event),
                    "{} on event {}: {:?}", expr, ordinal, event
                );
            }
        }
    }

    #[test]
    fn a_changed_encoding_is_refused_or_read_never_panics(
        events in prop::collection::vec(envelope(), 1..10),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<bool>(),
    ) {
        let mut part = Part::new();
        for (i, event) in events.iter().enumerate() {
            part.insert(i as u64, &EventTerms::of(event)).unwrap();
        }
        let mut bytes = part.encode();
        let at = at.index(bytes.len());
        if cut {
            bytes.truncate(at);
            prop_assert!(Part::decode(&bytes).is_err());
        } else {
            bytes[at] ^= xor;
            // Some changes still decode (a changed letter of a value); a
            // part that decodes is one that writes itself again.
            if let Ok(changed) = Part::decode(&bytes) {
                prop_assert_eq!(changed.encode(), bytes);
            }
        }
    }
}

/// Checks `part`'s answer to each of `exprs` against the matcher on
/// every event, and top counts against a count over the events.
fn answers_as_the_matcher(
    part: &Part,
    events: &[Envelope],
    exprs: &[Expr],
) -> Result<(), TestCaseError> {
    for expr in exprs {
        let set = part.eval(expr, "s");
        for (ordinal, event) in events.iter().enumerate() {
            prop_assert_eq!(
                set.contains(ordinal),
                expr.matches(event),
                "{} on event {}: {:?}",
                expr,
                ordinal,
                event
            );
        }
        for top in part.top(&Field::Outcome, &set, 3) {
            let count = events
                .iter()
                .enumerate()
                .filter(|(o, e)| {
                    set.contains(*o) && e.event.outcome.as_deref() == Some(&*top.value)
                })
                .count();
            prop_assert_eq!(top.count, count as u64, "{} outcome {}", expr, top.value);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// A part large enough for the forms small ones never take: postings
    /// held as bitsets (a value most entries hold), time columns answered
    /// a zone of 64 entries at a time (received times rising through the
    /// part, as a log receives them, some entries without a client time),
    /// and frequent words' sets, kept and then dropped by an insert.
    #[test]
    fn a_large_part_answers_what_the_matcher_accepts(
        mut events in prop::collection::vec(envelope(), 2100..2300),
        mut exprs in prop::collection::vec(expr(), 4..10),
        cuts in prop::collection::vec((0i64..80, 0..4u8, any::<bool>()), 1..4),
    ) {
        let base = 1_800_000_000;
        for (i, event) in events.iter_mut().enumerate() {
            let i = i as i64;
            // Rising, a few seconds out of order here and there.
            let received = Timestamp::from_second(base + i / 30 + (i % 7 == 0) as i64 * 3).unwrap();
            event.received_at = received.to_string();
            event.event.time = (i % 5 != 0).then(|| (received - jiff::SignedDuration::from_secs(i % 11)).to_string());
            if i % 4 != 0 {
                event.event.outcome = Some("denied".into());
            }
            event.writer = if i % 2 == 0 { "alice" } else { "bob@db" }.into();
        }
        for (at, op, received) in cuts {
            let t = Timestamp::from_second(base + at).unwrap();
            let bound = match op {
                0 => TimeBound::Before(t),
                1 => TimeBound::AtOrBefore(t),
                2 => TimeBound::After(t),
                _ => TimeBound::AtOrAfter(t),
            };
            let field = if received { TimeField::Received } else { TimeField::Time };
            let time = Expr::Time(field, bound);
            exprs.push(Expr::And(vec![time.clone(), exprs[0].clone()]));
            exprs.push(time);
        }
        exprs.push(Expr::Field(Field::Writer, vec![Pattern::Exact("alice".into())]));
        exprs.push(Expr::Text(vec!["denied".into()]));
        exprs.push(Expr::Text(vec!["db".into()]));
        let mut part = Part::new();
        let (last, growing) = events.split_last().unwrap();
        for (i, event) in growing.iter().enumerate() {
            part.insert(i as u64, &EventTerms::of(event)).unwrap();
        }
        let growing = &events[..growing.len()];
        answers_as_the_matcher(&part, growing, &exprs)?;
        // The frequent words kept, then a part read back from its bytes.
        let words = part.frequent_words();
        prop_assert!(part.keep_frequent_words(words));
        prop_assert!(part.has_frequent_words());
        answers_as_the_matcher(&part, growing, &exprs)?;
        let mut decoded = Part::decode(&part.encode()).unwrap();
        answers_as_the_matcher(&decoded, growing, &exprs)?;
        let words = decoded.frequent_words();
        prop_assert!(decoded.keep_frequent_words(words));
        answers_as_the_matcher(&decoded, growing, &exprs)?;
        // Words gathered before an insert are not kept after it; the
        // insert drops the ones kept.
        let stale = part.frequent_words();
        part.insert(events.len() as u64, &EventTerms::of(last)).unwrap();
        prop_assert!(!part.has_frequent_words());
        prop_assert!(!part.keep_frequent_words(stale));
        answers_as_the_matcher(&part, &events, &exprs)?;
    }
}

#[test]
fn entries_go_in_ascending_order_only() {
    let mut part = Part::new();
    let terms = EventTerms::default();
    part.insert(5, &terms).unwrap();
    assert!(part.insert(5, &terms).is_err());
    assert!(part.insert(4, &terms).is_err());
    part.insert(9, &terms).unwrap();
    assert_eq!(part.entries(), &[5, 9]);
}

#[test]
fn top_values_count_matching_entries_only() {
    let mut part = Part::new();
    for (i, actor) in ["a", "b", "a", "c", "a", "b"].iter().enumerate() {
        let mut event = Envelope {
            id: format!("id{i}"),
            stream: "s".into(),
            received_at: "2026-12-07T00:00:00Z".into(),
            writer: "w".into(),
            source: None,
            event: ClientEvent {
                actor: (*actor).into(),
                action: if i % 2 == 0 { "read" } else { "write" }.into(),
                resource: None,
                outcome: None,
                time: None,
                id: None,
                stream: None,
                source: None,
                attributes: None,
            },
            payload: "{}".into(),
        };
        event.event.resource = None;
        part.insert(i as u64, &EventTerms::of(&event)).unwrap();
    }
    let reads = part.eval(
        &Expr::Field(Field::Action, vec![Pattern::Exact("read".into())]),
        "s",
    );
    let top = part.top(&Field::Actor, &reads, 5);
    let top: Vec<(&str, u64)> = top.iter().map(|t| (&*t.value, t.count)).collect();
    assert_eq!(top, vec![("a", 3)]);
    let all = stele_index::Bitset::full(part.len());
    let top = part.top(&Field::Actor, &all, 2);
    let top: Vec<(&str, u64)> = top.iter().map(|t| (&*t.value, t.count)).collect();
    assert_eq!(top, vec![("a", 3), ("b", 2)]);
}
