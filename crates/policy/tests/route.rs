//! Routing: requested stream, first-match order, every match key, globs,
//! dotted attributes, Kubernetes fields, default fallback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use serde_json::{Map, Value, json};
use stele_policy::{Glob, Policy, PolicySource, RouteError, RouteInput};

fn policy() -> Policy {
    let toml = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "90d"
[streams.k8s]
retain = "365d"
[streams.secrets]
retain = "forever"
[streams.pci]
retain_until = "2031-12-31"
[streams.deletes]
retain = "30d"
[streams.lan]
retain = "30d"
[streams.svc]
retain = "30d"
[streams.first]
retain = "1d"
[streams.second]
retain = "1d"

[[routes]]
stream = "secrets"
kubernetes = { namespace = "prod-*", resource = "secrets", verb = "get" }
[[routes]]
stream = "k8s"
channel = "kubernetes"
[[routes]]
stream = "pci"
attributes = { "pci" = "true", "app.tier" = "pay*" }
[[routes]]
stream = "deletes"
action = "delete*"
[[routes]]
stream = "lan"
source = "10.0.*"
[[routes]]
stream = "svc"
writer = "svc-*"
[[routes]]
stream = "first"
action = "order"
[[routes]]
stream = "second"
action = "order"
"#;
    Policy::from_source(&PolicySource::from_toml("p.toml", toml)).unwrap_or_else(|e| panic!("{e}"))
}

fn input<'a>(attributes: Option<&'a Map<String, Value>>) -> RouteInput<'a> {
    RouteInput {
        channel: "http",
        source: None,
        writer: "alice",
        action: "login",
        requested_stream: None,
        attributes,
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

#[test]
fn globs() {
    let cases = [
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("*c", "abc", true),
        ("*c", "abd", false),
        ("a*c", "ac", true),
        ("a*c", "abbbc", true),
        ("a*b*b", "ab", false),
        ("a*b*b", "abb", true),
        ("*", "", true),
        ("", "", true),
        ("", "x", false),
        ("A*", "abc", false),
        ("**x", "x", true),
        ("prod-*", "prod-eu", true),
        ("prod-*", "staging", false),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            Glob::new(pattern).matches(text),
            expected,
            "{pattern:?} vs {text:?}"
        );
    }
}

#[test]
fn default_fallback() {
    assert_eq!(policy().route(&input(None)).unwrap(), "ops");
}

#[test]
fn requested_stream_wins_if_declared() {
    let policy = policy();
    let mut event = input(None);
    event.action = "delete-user"; // would match the `deletes` route
    event.requested_stream = Some("pci");
    assert_eq!(policy.route(&event).unwrap(), "pci");
    event.requested_stream = Some("nope");
    assert_eq!(
        policy.route(&event),
        Err(RouteError::UnknownStream {
            stream: "nope".into()
        })
    );
    event.requested_stream = Some("_system");
    assert_eq!(
        policy.route(&event),
        Err(RouteError::ReservedStream {
            stream: "_system".into()
        })
    );
}

#[test]
fn each_match_key() {
    let policy = policy();
    let mut event = input(None);
    event.channel = "kubernetes";
    assert_eq!(policy.route(&event).unwrap(), "k8s");

    let mut event = input(None);
    event.action = "delete-user";
    assert_eq!(policy.route(&event).unwrap(), "deletes");
    event.action = "Delete-user"; // case-sensitive
    assert_eq!(policy.route(&event).unwrap(), "ops");

    let mut event = input(None);
    event.source = Some("10.0.3.4");
    assert_eq!(policy.route(&event).unwrap(), "lan");
    event.source = Some("10.1.3.4");
    assert_eq!(policy.route(&event).unwrap(), "ops");
    event.source = None; // an absent source never matches a source key
    assert_eq!(policy.route(&event).unwrap(), "ops");

    let mut event = input(None);
    event.writer = "svc-billing";
    assert_eq!(policy.route(&event).unwrap(), "svc");
}

#[test]
fn first_match_wins() {
    let policy = policy();
    let mut event = input(None);
    event.action = "order";
    assert_eq!(policy.route(&event).unwrap(), "first");
    // An earlier route beats a later one even when both match.
    let mut event = input(None);
    event.action = "delete-x";
    event.writer = "svc-x";
    assert_eq!(policy.route(&event).unwrap(), "deletes");
}

#[test]
fn dotted_attributes_all_must_match() {
    let policy = policy();
    let both = object(json!({"pci": "true", "app": {"tier": "payments"}}));
    assert_eq!(policy.route(&input(Some(&both))).unwrap(), "pci");
    // Booleans compare by their string form.
    let boolean = object(json!({"pci": true, "app": {"tier": "pay"}}));
    assert_eq!(policy.route(&input(Some(&boolean))).unwrap(), "pci");
    let one = object(json!({"pci": "true"}));
    assert_eq!(policy.route(&input(Some(&one))).unwrap(), "ops");
    let wrong = object(json!({"pci": "true", "app": {"tier": "web"}}));
    assert_eq!(policy.route(&input(Some(&wrong))).unwrap(), "ops");
    // A literal dotted key is not a path.
    let literal = object(json!({"pci": "true", "app.tier": "payments"}));
    assert_eq!(policy.route(&input(Some(&literal))).unwrap(), "ops");
    // Objects never match.
    let nested = object(json!({"pci": {"x": 1}, "app": {"tier": "payments"}}));
    assert_eq!(policy.route(&input(Some(&nested))).unwrap(), "ops");
}

#[test]
fn numbers_compare_by_their_json_form() {
    let toml = "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"1d\"\n[streams.hit]\nretain = \"1d\"\n[[routes]]\nstream = \"hit\"\nattributes = { \"code\" = 403 }\n";
    let policy = Policy::from_source(&PolicySource::from_toml("p.toml", toml)).unwrap();
    let hit = object(json!({"code": 403}));
    assert_eq!(policy.route(&input(Some(&hit))).unwrap(), "hit");
    let miss = object(json!({"code": 404}));
    assert_eq!(policy.route(&input(Some(&miss))).unwrap(), "ops");
}

#[test]
fn kubernetes_fields() {
    let policy = policy();
    let attributes = |namespace: &str, resource: &str| {
        object(json!({"kubernetes": {"objectRef": {"namespace": namespace, "resource": resource}}}))
    };
    let secret = attributes("prod-eu", "secrets");
    let mut event = input(Some(&secret));
    event.channel = "kubernetes";
    event.action = "get";
    assert_eq!(policy.route(&event).unwrap(), "secrets");
    event.action = "list"; // verb is the event action
    assert_eq!(policy.route(&event).unwrap(), "k8s");
    let staging = attributes("staging", "secrets");
    event.attributes = Some(&staging);
    event.action = "get";
    assert_eq!(policy.route(&event).unwrap(), "k8s");
    let pods = attributes("prod-eu", "pods");
    event.attributes = Some(&pods);
    assert_eq!(policy.route(&event).unwrap(), "k8s");
    // Without objectRef the Kubernetes route cannot match.
    event.attributes = None;
    assert_eq!(policy.route(&event).unwrap(), "k8s");
}

#[test]
fn undeclared_streams_are_refused_unless_inherited() {
    let strict = PolicySource::from_toml(
        "p.toml",
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n",
    );
    let strict = Policy::from_source(&strict).expect("valid");
    let input = |stream| RouteInput {
        channel: "events",
        source: None,
        writer: "w",
        action: "a",
        requested_stream: Some(stream),
        attributes: None,
    };
    assert!(strict.route(&input("payments")).is_err());
    assert!(strict.stream("payments").is_none());

    let inherit = PolicySource::from_toml(
        "p.toml",
        "version = 1\ndefault_stream = \"ops\"\nundeclared_streams = \"inherit\"\n[streams.ops]\nretain = \"90d\"\n",
    );
    let inherit = Policy::from_source(&inherit).expect("valid");
    assert_eq!(
        inherit.route(&input("payments")).expect("routed"),
        "payments"
    );
    assert_eq!(
        inherit.stream("payments").map(|s| s.retention),
        inherit.stream("ops").map(|s| s.retention)
    );
    // Reserved names are never inherited.
    assert!(inherit.route(&input("_system")).is_err());
    assert!(inherit.stream("_system").is_none());

    let bad = PolicySource::from_toml(
        "p.toml",
        "version = 1\ndefault_stream = \"ops\"\nundeclared_streams = \"maybe\"\n[streams.ops]\nretain = \"90d\"\n",
    );
    let err = Policy::from_source(&bad).expect_err("refused").to_string();
    assert!(
        err.contains("p.toml:3:") && err.contains("undeclared_streams"),
        "{err}"
    );
}
