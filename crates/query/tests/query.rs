//! The query language: what parses to what, what is refused and where,
//! what matches, and that the normalized text parses back to the same
//! query.

#![allow(clippy::unwrap_used, clippy::panic)]

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::json;
use stele_event::{ClientEvent, Envelope};
use stele_query::{
    Expr, Field, MAX_DEPTH, MAX_QUERY_BYTES, MAX_TERMS, Pattern, Query, TimeBound, TimeField,
};

fn now() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

fn parse(text: &str) -> Query {
    Query::parse(text, now()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(text: &str) -> stele_query::QueryError {
    match Query::parse(text, now()) {
        Ok(query) => panic!("{text} parsed as {query:?}"),
        Err(e) => e,
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn envelope(attributes: serde_json::Value) -> Envelope {
    Envelope {
        id: "01a2513e-234f-7da0-82bf-bfe759779cfe".into(),
        stream: "payments".into(),
        received_at: "2026-12-06T10:15:00.123456789Z".into(),
        writer: "svc-billing".into(),
        source: Some("admin-console".into()),
        event: ClientEvent {
            actor: "alice.smith@acme.example".into(),
            action: "policy.update".into(),
            resource: Some("db/prod/payments".into()),
            outcome: Some("denied".into()),
            time: Some("2026-12-06T10:14:59Z".into()),
            id: None,
            stream: None,
            source: Some("admin-console".into()),
            attributes: attributes.as_object().cloned(),
        },
        payload: "{}".into(),
    }
}

fn sample() -> Envelope {
    envelope(json!({
        "ip": "203.0.113.7",
        "latency_ms": 41,
        "mfa": true,
        "tags": ["pci", "eu-west"],
        "app.tier": "payments",
        "kubernetes": {"objectRef": {"namespace": "kube-system", "name": "coredns"}},
        "reason": "Permission denied by rule 7"
    }))
}

fn matches(text: &str, envelope: &Envelope) -> bool {
    parse(text).matches(envelope)
}

#[test]
fn terms_parse_to_their_expressions() {
    assert_eq!(parse("").expr(), None);
    assert_eq!(parse("  \t ").expr(), None);
    assert_eq!(
        parse("actor:alice").expr(),
        Some(&Expr::Field(
            Field::Actor,
            vec![Pattern::Exact("alice".into())]
        ))
    );
    assert_eq!(
        parse("resource:db/prod/*").expr(),
        Some(&Expr::Field(
            Field::Resource,
            vec![Pattern::Prefix("db/prod/".into())]
        ))
    );
    assert_eq!(
        parse("resource:db/*/payments").expr(),
        Some(&Expr::Field(
            Field::Resource,
            vec![Pattern::Glob(vec!["db/".into(), "/payments".into()])]
        ))
    );
    // A quoted or escaped star is literal; alternatives with commas.
    assert_eq!(
        parse(r#"action:"a*b",c\*d,"x y"*"#).expr(),
        Some(&Expr::Field(
            Field::Action,
            vec![
                Pattern::Exact("a*b".into()),
                Pattern::Exact("c*d".into()),
                Pattern::Prefix("x y".into()),
            ]
        ))
    );
    assert_eq!(
        parse(r#"attributes.kubernetes."object.ref".namespace:kube-*"#).expr(),
        Some(&Expr::Field(
            Field::Attribute(vec![
                "kubernetes".into(),
                "object.ref".into(),
                "namespace".into()
            ]),
            vec![Pattern::Prefix("kube-".into())]
        ))
    );
    assert_eq!(
        parse("received>=2026-12-01 time<now-24h").expr(),
        Some(&Expr::And(vec![
            Expr::Time(
                TimeField::Received,
                TimeBound::AtOrAfter(at("2026-12-01T00:00:00Z"))
            ),
            Expr::Time(
                TimeField::Time,
                TimeBound::Before(at("2026-12-06T12:00:00Z"))
            ),
        ]))
    );
    assert_eq!(
        parse("received:2026-12-06").expr(),
        Some(&Expr::And(vec![
            Expr::Time(
                TimeField::Received,
                TimeBound::AtOrAfter(at("2026-12-06T00:00:00Z"))
            ),
            Expr::Time(
                TimeField::Received,
                TimeBound::Before(at("2026-12-07T00:00:00Z"))
            ),
        ]))
    );
    assert_eq!(
        parse("time>2026-12-06T11:00:00+01:00").expr(),
        Some(&Expr::Time(
            TimeField::Time,
            TimeBound::After(at("2026-12-06T10:00:00Z"))
        ))
    );
    assert_eq!(
        parse(r#""Permission Denied" alice.smith"#).expr(),
        Some(&Expr::And(vec![
            Expr::Text(vec!["permission".into(), "denied".into()]),
            Expr::Text(vec!["alice".into(), "smith".into()]),
        ]))
    );
}

#[test]
fn or_binds_looser_than_and_and_negation_binds_tightest() {
    let a = || Expr::Field(Field::Actor, vec![Pattern::Exact("a".into())]);
    let b = || Expr::Field(Field::Action, vec![Pattern::Exact("b".into())]);
    let c = || Expr::Field(Field::Outcome, vec![Pattern::Exact("c".into())]);
    assert_eq!(
        parse("actor:a action:b OR outcome:c").expr(),
        Some(&Expr::Or(vec![Expr::And(vec![a(), b()]), c()]))
    );
    assert_eq!(
        parse("actor:a AND (action:b OR outcome:c)").expr(),
        Some(&Expr::And(vec![a(), Expr::Or(vec![b(), c()])]))
    );
    assert_eq!(
        parse("-actor:a NOT action:b").expr(),
        Some(&Expr::And(vec![
            Expr::Not(Box::new(a())),
            Expr::Not(Box::new(b()))
        ]))
    );
    assert_eq!(
        parse("-(actor:a OR action:b)").expr(),
        Some(&Expr::Not(Box::new(Expr::Or(vec![a(), b()]))))
    );
    // Lower-case words are free text, not operators.
    assert_eq!(
        parse("or not").expr(),
        Some(&Expr::And(vec![
            Expr::Text(vec!["or".into()]),
            Expr::Text(vec!["not".into()])
        ]))
    );
}

#[test]
fn bad_queries_are_refused_with_where_and_why() {
    let cases: &[(&str, usize, &str)] = &[
        ("acter:alice", 0, "unknown field `acter`"),
        ("actor:alice Actor:bob", 12, "unknown field `Actor`"),
        ("https://example.com", 0, "put it in double quotes"),
        ("actor:", 6, "expected a value"),
        ("actor:a,", 8, "expected a value"),
        (r#"actor:"alice"#, 6, "never closed"),
        ("(actor:a", 0, "never closed"),
        ("actor:a)", 7, "without its `(`"),
        ("()", 1, "empty parentheses"),
        ("ali*", 3, "a `*` needs a field"),
        ("- actor:a", 0, "must be followed"),
        ("OR actor:a", 0, "needs a term on each side"),
        ("actor:a OR", 10, "expected a term"),
        ("actor:a AND", 11, "expected a term"),
        ("...", 0, "needs a letter or a digit"),
        ("received>=yesterday", 10, "not a time"),
        ("received>=now-5w", 10, "not a time"),
        ("received>=now-40000d", 10, "more than 36500 days"),
        ("received>", 9, "expected a time"),
        ("time:2026-12-06T10:00:00Z", 5, "not a date"),
        ("time:1969-12-31", 5, "outside the times"),
        ("attributes.:x", 11, "needs a key"),
        ("attributes.a", 11, "expected `:`"),
        ("actor:a\\", 7, "escapes nothing"),
        ("actor=alice", 5, "takes its value after `:`"),
        ("outcome!=success", 7, "negate with `-`"),
        ("time=2026-12-01", 4, "give a day with `:`"),
        ("received=>now", 8, "compare a time"),
    ];
    for (text, offset, reason) in cases {
        let e = refused(text);
        assert_eq!(e.at, *offset, "{text}: {e}");
        assert!(e.reason.contains(reason), "{text}: {e}");
    }
    let long = "a ".repeat(MAX_QUERY_BYTES);
    assert!(refused(&long).reason.contains("at most 4096"));
    let many = vec!["actor:a"; MAX_TERMS + 1].join(" ");
    assert!(refused(&many).reason.contains("more than 64 terms"));
    let alternatives = format!("actor:{}", vec!["a"; MAX_TERMS + 1].join(","));
    assert!(refused(&alternatives).reason.contains("more than 64 terms"));
    let deep = format!("{}actor:a", "-".repeat(MAX_DEPTH + 1));
    assert!(refused(&deep).reason.contains("nested more than 16"));
    let parens = format!("{}actor:a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Query::parse(&parens, now()).is_ok());
    let deeper = format!("-{parens}");
    assert!(refused(&deeper).reason.contains("nested more than 16"));
}

#[test]
fn fields_match_exactly_by_prefix_and_by_glob() {
    let e = sample();
    for (query, expected) in [
        ("actor:alice.smith@acme.example", true),
        ("actor:alice", false),
        ("actor:Alice.smith@acme.example", false),
        ("actor:alice*", true),
        ("actor:*@acme.example", true),
        ("actor:*@acme.test", false),
        ("resource:db/*/payments", true),
        ("resource:db/*/ledger", false),
        ("action:policy.update,policy.delete", true),
        ("action:policy.delete,policy.create", false),
        ("outcome:denied", true),
        ("source:admin-console", true),
        ("writer:svc-*", true),
        ("stream:payments", true),
        ("id:01a2513e-*", true),
        ("resource:*", true),
    ] {
        assert_eq!(matches(query, &e), expected, "{query}");
    }
    // A field the event lacks matches nothing, so its negation matches.
    let mut bare = sample();
    bare.event.resource = None;
    assert!(!matches("resource:*", &bare));
    assert!(matches("-resource:*", &bare));
}

#[test]
fn attributes_match_by_path_as_text() {
    let e = sample();
    for (query, expected) in [
        ("attributes.ip:203.0.113.*", true),
        ("attributes.latency_ms:41", true),
        ("attributes.latency_ms:4*", true),
        ("attributes.latency_ms:\"41\"", true),
        ("attributes.mfa:true", true),
        ("attributes.mfa:false", false),
        ("attributes.tags:pci", true),
        ("attributes.tags:eu-*", true),
        ("attributes.tags:us-*", false),
        (r#"attributes."app.tier":payments"#, true),
        ("attributes.app.tier:payments", false),
        (
            "attributes.kubernetes.objectRef.namespace:kube-system",
            true,
        ),
        ("attributes.kubernetes.objectRef:*", false),
        ("attributes.missing:*", false),
    ] {
        assert_eq!(matches(query, &e), expected, "{query}");
    }
}

#[test]
fn free_text_matches_whole_words_in_one_value() {
    let e = sample();
    for (query, expected) in [
        ("denied", true),
        ("DENIED", true),
        ("deni", false),
        (r#""permission denied""#, true),
        (r#""denied permission""#, false),
        ("alice.smith", true),
        ("smith@acme", true),
        ("coredns", true),
        ("kube-system", true),
        ("41", true),
        // Words of two different values are not a phrase.
        (r#""payments alice""#, false),
        // Keys are not text.
        ("latency_ms", false),
    ] {
        assert_eq!(matches(query, &e), expected, "{query}");
    }
}

#[test]
fn time_ranges_compare_instants_and_an_event_without_time_is_outside_them() {
    let e = sample();
    for (query, expected) in [
        ("received>=2026-12-06", true),
        ("received<2026-12-06", false),
        ("received:2026-12-06", true),
        ("received:2026-12-07", false),
        ("received>2026-12-06T10:15:00.123456789Z", false),
        ("received>=2026-12-06T10:15:00.123456789Z", true),
        ("received<=2026-12-06T11:15:00.123456789+01:00", true),
        ("received>=now-2d", true),
        ("received>=now-1h", false),
        ("time<2026-12-06T10:15:00Z", true),
        ("time:2026-12-06", true),
    ] {
        assert_eq!(matches(query, &e), expected, "{query}");
    }
    let mut untimed = sample();
    untimed.event.time = None;
    assert!(!matches("time<now", &untimed));
    assert!(!matches("time>=now", &untimed));
    assert!(matches("-time<now", &untimed));
}

#[test]
fn boolean_operators_combine_as_written() {
    let e = sample();
    for (query, expected) in [
        ("actor:alice* action:policy.*", true),
        ("actor:alice* action:user.*", false),
        ("actor:bob* OR action:policy.*", true),
        ("actor:bob* OR action:user.*", false),
        ("-outcome:success", true),
        ("NOT outcome:denied", false),
        ("actor:alice* (outcome:success OR denied)", true),
        ("actor:alice* -(outcome:success OR denied)", false),
        ("", true),
    ] {
        assert_eq!(matches(query, &e), expected, "{query}");
    }
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./@_-]{1,12}",
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(10).collect()),
    ]
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        literal().prop_map(Pattern::Exact),
        literal().prop_map(Pattern::Prefix),
        prop::collection::vec(literal(), 2..5)
            .prop_filter("a glob is not a prefix", |parts| {
                !(parts.len() == 2 && parts[1].is_empty())
            })
            .prop_map(Pattern::Glob),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        (0..Field::NAMED.len()).prop_map(|i| Field::NAMED[i].1.clone()),
        prop::collection::vec(literal().prop_filter("a key", |k| !k.is_empty()), 1..4)
            .prop_map(Field::Attribute),
    ]
}

fn term() -> impl Strategy<Value = Expr> {
    let time = (
        0i64..4_000_000_000,
        0i32..1_000_000_000,
        0..4u8,
        any::<bool>(),
    )
        .prop_map(|(seconds, nanos, op, received)| {
            let t = Timestamp::new(seconds, nanos).unwrap();
            let field = if received {
                TimeField::Received
            } else {
                TimeField::Time
            };
            Expr::Time(
                field,
                match op {
                    0 => TimeBound::Before(t),
                    1 => TimeBound::AtOrBefore(t),
                    2 => TimeBound::After(t),
                    _ => TimeBound::AtOrAfter(t),
                },
            )
        });
    prop_oneof![
        (field(), prop::collection::vec(pattern(), 1..4)).prop_map(|(f, p)| Expr::Field(f, p)),
        time,
        prop::collection::vec("[a-z0-9]{1,8}", 1..4).prop_map(Expr::Text),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    term().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    /// What a query writes is what it parses back to: the text recorded
    /// for a search means the same search.
    #[test]
    fn normalized_text_parses_back_to_the_same_query(expr in expr()) {
        let text = expr.to_string();
        match Query::parse(&text, now()) {
            Ok(query) => prop_assert_eq!(query.expr(), Some(&expr), "{}", text),
            // A generated tree may pass the limits; then it is refused,
            // never misread.
            Err(e) => prop_assert!(
                e.reason.contains("terms") || e.reason.contains("nested") || e.reason.contains("bytes"),
                "{}: {}", text, e
            ),
        }
    }

    /// Any text is parsed or refused; never a panic.
    #[test]
    fn any_text_is_parsed_or_refused(text in any::<String>()) {
        let _ = Query::parse(&text, now());
    }
}
