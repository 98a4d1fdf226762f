//! Cedar decisions: hand-written matrices (principal × action × resource)
//! for the shipped default and the example policy, context conditions, and
//! explanations. Expectations are literal, written from the policies'
//! intent, not computed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::IpAddr;

use stele_policy::{AccessContext, AccessRequest, Action, Policy, PolicySource, Resource};

fn example() -> Policy {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("examples/policy.toml");
    Policy::from_source(&PolicySource::load(&path).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

struct Who {
    name: &'static str,
    kind: &'static str,
    roles: Vec<String>,
}

fn who(name: &'static str, kind: &'static str, roles: &[&str]) -> Who {
    Who {
        name,
        kind,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn context(ip: &str) -> AccessContext {
    AccessContext {
        time: 1_800_000_000,
        client_ip: ip.parse::<IpAddr>().unwrap(),
        tls: true,
        tls_identity: None,
        auth_method: "token".to_owned(),
    }
}

fn request<'a>(
    who: &'a Who,
    action: Action,
    resource: Resource<'a>,
    ip: &str,
) -> AccessRequest<'a> {
    AccessRequest {
        principal: who.name,
        principal_kind: who.kind,
        roles: &who.roles,
        action,
        resource,
        context: context(ip),
    }
}

const OPS: Resource<'static> = Resource::Stream("ops");
const SYSTEM: Resource<'static> = Resource::Stream("_system");
const EVENT: Resource<'static> = Resource::Event {
    stream: "ops",
    index: 42,
};
const SYSTEM_EVENT: Resource<'static> = Resource::Event {
    stream: "_system",
    index: 7,
};
const LOG: Resource<'static> = Resource::Log;

/// Checks every cell of `table`: each row is (action, resource, expected
/// decisions as `1`/`0`, one per principal in `principals` order).
#[track_caller]
fn check_matrix(
    policy: &Policy,
    principals: &[Who],
    table: &[(Action, Resource<'_>, &str)],
    ip: &str,
) {
    let mut failures = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for (action, resource, expected) in table {
        covered.insert(action.as_str());
        assert_eq!(
            expected.len(),
            principals.len(),
            "row {action} {resource:?}"
        );
        for (who, want) in principals.iter().zip(expected.chars()) {
            let decision = policy.authorize(&request(who, *action, *resource, ip));
            let want = want == '1';
            if decision.allowed != want {
                failures.push(format!(
                    "{} {action} {resource:?}: expected {}, got {:?}",
                    who.name,
                    if want { "allow" } else { "deny" },
                    decision
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(covered.len(), Action::ALL.len(), "every action has a row");
}

#[test]
fn shipped_default_matrix() {
    use Action::*;
    let policy = Policy::shipped_default();
    let principals = [
        who("w", "service", &["writer"]),
        who("r", "user", &["reader"]),
        who("a", "user", &["admin"]),
        who("stele", "system", &[]),
        who("n", "user", &[]),
    ];
    // Columns: writer, reader, admin, system, nobody.
    let table = [
        (Append, OPS, "10110"),
        (Append, SYSTEM, "00010"),
        (Read, OPS, "01100"),
        (Read, SYSTEM, "01100"),
        (Read, EVENT, "01100"),
        (Read, SYSTEM_EVENT, "01100"),
        (Query, OPS, "01100"),
        (Query, SYSTEM, "01100"),
        (Export, OPS, "01100"),
        (Export, EVENT, "01100"),
        (Verify, LOG, "01100"),
        (HoldAdd, OPS, "00100"),
        (HoldAdd, LOG, "00100"),
        (HoldRelease, OPS, "00100"),
        (HoldRelease, LOG, "00100"),
        (HoldList, OPS, "01100"),
        (HoldList, LOG, "01100"),
        (PolicyApply, LOG, "00100"),
        (PolicyRead, LOG, "01100"),
        (TokenCreate, LOG, "00100"),
        (TokenList, LOG, "00100"),
        (TokenRevoke, LOG, "00100"),
        (KeyRotate, LOG, "00100"),
        (AuditReport, LOG, "01100"),
        (AuditRun, LOG, "00100"),
        (RetentionRun, LOG, "00100"),
    ];
    check_matrix(&policy, &principals, &table, "192.168.1.9");
}

#[test]
fn example_policy_matrix() {
    use Action::*;
    let policy = example();
    let principals = [
        who("w", "service", &["writer"]),
        who("au", "user", &["auditor"]),
        who("a", "user", &["admin"]),
        who("l", "user", &["legal"]),
        who("stele", "system", &[]),
        who("n", "user", &[]),
    ];
    // Columns: writer, auditor, admin, legal, system, nobody. From inside
    // 10.0.0.0/8, so auditors may export.
    let table = [
        (Append, OPS, "100010"),
        (Append, SYSTEM, "000010"),
        (Read, OPS, "010000"),
        (Read, SYSTEM, "010000"),
        (Read, EVENT, "010000"),
        (Read, SYSTEM_EVENT, "010000"),
        (Query, OPS, "010000"),
        (Query, SYSTEM, "010000"),
        (Export, OPS, "010000"),
        (Export, EVENT, "010000"),
        (Verify, LOG, "011000"),
        (HoldAdd, OPS, "001100"),
        (HoldAdd, LOG, "001100"),
        (HoldRelease, OPS, "001100"),
        (HoldRelease, LOG, "001100"),
        (HoldList, OPS, "011100"),
        (HoldList, LOG, "011100"),
        (PolicyApply, LOG, "001000"),
        (PolicyRead, LOG, "011000"),
        (TokenCreate, LOG, "001000"),
        (TokenList, LOG, "001000"),
        (TokenRevoke, LOG, "001000"),
        (KeyRotate, LOG, "001000"),
        (AuditReport, LOG, "011000"),
        (AuditRun, LOG, "001000"),
        (RetentionRun, LOG, "001000"),
    ];
    check_matrix(&policy, &principals, &table, "10.1.2.3");
}

#[test]
fn example_export_depends_on_client_address() {
    let policy = example();
    let auditor = who("au", "user", &["auditor"]);
    for (ip, allowed) in [
        ("10.0.0.0", true),
        ("10.255.255.255", true),
        ("10.1.2.3", true),
        ("11.0.0.1", false),
        ("9.255.255.255", false),
        ("192.168.1.1", false),
        ("127.0.0.1", false),
        ("::1", false),
    ] {
        for resource in [OPS, EVENT] {
            let decision = policy.authorize(&request(&auditor, Action::Export, resource, ip));
            assert_eq!(decision.allowed, allowed, "{ip} {resource:?}: {decision:?}");
        }
        // Reading does not depend on the address.
        assert!(
            policy
                .authorize(&request(&auditor, Action::Read, OPS, ip))
                .allowed
        );
    }
}

#[test]
fn deny_wins_and_reasons_name_policies() {
    let policy = example();
    let both = who("boss", "user", &["admin", "auditor"]);
    let decision = policy.authorize(&request(&both, Action::Read, EVENT, "10.0.0.1"));
    assert!(!decision.allowed);
    assert_eq!(decision.reasons, ["admin-no-payloads"]);
    assert!(decision.errors.is_empty());

    let writer = who("w", "service", &["writer"]);
    let decision = policy.authorize(&request(&writer, Action::Append, OPS, "10.0.0.1"));
    assert!(decision.allowed);
    assert_eq!(decision.reasons, ["writer-append"]);

    let decision = policy.authorize(&request(&writer, Action::Append, SYSTEM, "10.0.0.1"));
    assert!(!decision.allowed);
    assert_eq!(decision.reasons, ["reserved-streams-system-only"]);

    let nobody = who("n", "user", &[]);
    let decision = policy.authorize(&request(&nobody, Action::Read, OPS, "10.0.0.1"));
    assert!(!decision.allowed);
    assert!(decision.reasons.is_empty());
}

#[test]
fn actions_on_the_wrong_resource_are_denied_with_an_error() {
    let policy = Policy::shipped_default();
    let admin = who("a", "user", &["admin"]);
    for (action, resource) in [
        (Action::Append, LOG),
        (Action::TokenCreate, OPS),
        (Action::Query, EVENT),
    ] {
        let decision = policy.authorize(&request(&admin, action, resource, "10.0.0.1"));
        assert!(!decision.allowed, "{action} {resource:?}");
        assert_eq!(decision.errors.len(), 1, "{decision:?}");
        assert!(decision.errors[0].contains("schema"), "{decision:?}");
    }
    // Event indices beyond Cedar's Long are refused, not wrapped.
    let decision = policy.authorize(&request(
        &admin,
        Action::Read,
        Resource::Event {
            stream: "ops",
            index: u64::MAX,
        },
        "10.0.0.1",
    ));
    assert!(!decision.allowed);
    assert!(decision.errors[0].contains("beyond"), "{decision:?}");
}

#[test]
fn time_and_identity_conditions() {
    let toml = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "1d"
[access]
cedar = '''
@id("office-hours")
permit (principal in Stele::Role::"reader", action == Stele::Action::"read", resource)
when { context.time >= 1800000000 && context.time < 1800003600 };

@id("mtls-only")
permit (principal in Stele::Role::"ops", action == Stele::Action::"verify", resource)
when { context.tls && context.auth_method == "mtls" && context.tls_identity == "ops-box" };
'''
"#;
    let policy = Policy::from_source(&PolicySource::from_toml("p.toml", toml)).unwrap();
    let reader = who("r", "user", &["reader"]);
    for (time, allowed) in [
        (1_799_999_999, false),
        (1_800_000_000, true),
        (1_800_003_599, true),
        (1_800_003_600, false),
    ] {
        let mut req = request(&reader, Action::Read, OPS, "10.0.0.1");
        req.context.time = time;
        assert_eq!(policy.authorize(&req).allowed, allowed, "{time}");
    }
    let ops = who("o", "service", &["ops"]);
    let mut req = request(&ops, Action::Verify, LOG, "10.0.0.1");
    assert!(!policy.authorize(&req).allowed);
    req.context.auth_method = "mtls".into();
    req.context.tls_identity = Some("ops-box".into());
    assert!(policy.authorize(&req).allowed);
    req.context.tls = false;
    assert!(!policy.authorize(&req).allowed);
}

#[test]
fn explain_shows_ids_text_and_default_deny() {
    let policy = example();
    let both = who("boss", "user", &["admin", "auditor"]);
    let text = policy.explain(&request(&both, Action::Export, EVENT, "10.0.0.1"));
    assert!(
        text.starts_with(
            "DENY: boss (user, roles [admin, auditor]) export event 42 in stream \"ops\""
        ),
        "{text}"
    );
    assert!(
        text.contains("forbidden by policy \"admin-no-payloads\""),
        "{text}"
    );
    assert!(text.contains("forbid ("), "{text}");

    let auditor = who("au", "user", &["auditor"]);
    let text = policy.explain(&request(&auditor, Action::Export, OPS, "10.0.0.1"));
    assert!(text.starts_with("ALLOW:"), "{text}");
    assert!(
        text.contains("permitted by policy \"auditor-export-internal\""),
        "{text}"
    );
    assert!(text.contains("isInRange(ip(\"10.0.0.0/8\"))"), "{text}");

    let text = policy.explain(&request(&auditor, Action::Export, OPS, "192.168.0.1"));
    assert!(text.starts_with("DENY:"), "{text}");
    assert!(
        text.contains("no policy permits this (default deny)"),
        "{text}"
    );
}

#[test]
fn action_names_round_trip() {
    for action in Action::ALL {
        assert_eq!(Action::parse(action.as_str()), Some(action));
    }
    assert_eq!(Action::parse("hold"), None);
    // Every action is declared in the schema.
    for action in Action::ALL {
        assert!(
            stele_policy::SCHEMA.contains(&format!("\"{}\"", action.as_str()))
                || stele_policy::SCHEMA.contains(&format!("action {}", action.as_str()))
                || stele_policy::SCHEMA.contains(&format!(", {}", action.as_str())),
            "{action}"
        );
    }
}

/// Decisions are remembered per policy set (see `DecisionCache`): asking
/// again, in another order, after requests that differ in any one field,
/// and after the cache has started over, gives the same answers as the
/// first time, and each field still counts.
#[test]
fn repeated_decisions_are_the_same_and_every_field_counts() {
    let toml = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "1d"
[streams.audit]
retain = "forever"
[access]
cedar = '''
@id("ops-append")
permit (principal in Stele::Role::"writer", action == Stele::Action::"append", resource == Stele::Stream::"ops")
when { context.time < 1800000100 && context.client_ip.isInRange(ip("10.0.0.0/8"))
       && context.tls && context.auth_method == "token" && principal.kind == "service" };
@id("mtls-verify")
permit (principal, action == Stele::Action::"verify", resource)
when { context.tls_identity == "ops-box" };
@id("no-mallory")
forbid (principal == Stele::Principal::"mallory", action, resource);
'''
"#;
    let policy = Policy::from_source(&PolicySource::from_toml("p.toml", toml)).unwrap();
    let writer = who("w", "service", &["writer"]);
    let user = who("w", "user", &["writer"]);
    let nobody = who("w", "service", &[]);
    let mallory = who("mallory", "service", &["writer"]);
    let base = || request(&writer, Action::Append, OPS, "10.0.0.1");
    let mut cases: Vec<(AccessRequest<'_>, bool)> = vec![(base(), true)];
    cases.push((request(&user, Action::Append, OPS, "10.0.0.1"), false));
    cases.push((request(&nobody, Action::Append, OPS, "10.0.0.1"), false));
    cases.push((request(&mallory, Action::Append, OPS, "10.0.0.1"), false));
    cases.push((request(&writer, Action::Read, OPS, "10.0.0.1"), false));
    cases.push((
        request(
            &writer,
            Action::Append,
            Resource::Stream("audit"),
            "10.0.0.1",
        ),
        false,
    ));
    cases.push((request(&writer, Action::Append, OPS, "11.0.0.1"), false));
    let mut late = base();
    late.context.time = 1_800_000_100;
    cases.push((late, false));
    let mut plain = base();
    plain.context.tls = false;
    cases.push((plain, false));
    let mut mtls = base();
    mtls.context.auth_method = "mtls".into();
    cases.push((mtls, false));
    let mut verify = request(&writer, Action::Verify, LOG, "10.0.0.1");
    cases.push((verify.clone(), false));
    verify.context.tls_identity = Some("ops-box".into());
    cases.push((verify, true));

    for round in 0..3 {
        let order: Vec<usize> = if round == 1 {
            (0..cases.len()).rev().collect()
        } else {
            (0..cases.len()).collect()
        };
        for i in order {
            let (req, allowed) = &cases[i];
            let decision = policy.authorize(req);
            assert_eq!(
                decision.allowed, *allowed,
                "round {round}, case {i}: {decision:?}"
            );
        }
        if round == 1 {
            // More distinct requests than the cache keeps.
            for second in 0..5000 {
                let mut req = base();
                req.context.time = 1_700_000_000 + second;
                assert!(policy.authorize(&req).allowed);
            }
        }
    }
}

/// The check before an append's input is read (the CLI's standard input,
/// an HTTP body): declared streams first, then the extra ones (a token's
/// scope), and when none is allowed the default stream is the one whose
/// denial is reported.
#[test]
fn check_some_append_asks_declared_then_extra_streams() {
    let policy = example();
    let mut asked = Vec::new();
    let none = policy.check_some_append(["scoped-a", "scoped-b"], |stream| {
        asked.push(stream.to_owned());
        false
    });
    assert_eq!(none, Err("operational"));
    assert_eq!(
        asked,
        [
            "compliance",
            "kubernetes",
            "operational",
            "security",
            "scoped-a",
            "scoped-b"
        ]
    );
    // Allowed on an extra stream only: no refusal.
    assert_eq!(
        policy.check_some_append(["scoped-b"], |stream| stream == "scoped-b"),
        Ok(())
    );
    // The first allowed stream ends the search.
    let mut asked = 0;
    let some = policy.check_some_append(["scoped-a"], |stream| {
        asked += 1;
        stream == "kubernetes"
    });
    assert_eq!(some, Ok(()));
    assert_eq!(asked, 2);
    // A local writer may append somewhere; the example's local operator
    // (role admin, who administers but does not append) nowhere: the
    // default stream is refused.
    assert_eq!(policy.local_roles(), ["admin"]);
    let roles = vec!["writer".to_owned()];
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let operator = policy.check_some_append([], |stream| {
        let request = stele_policy::local_request(
            "local:alice",
            "local",
            &roles,
            Action::Append,
            Resource::Stream(stream),
            now,
        );
        assert_eq!(request.context.auth_method, "local");
        assert!(!request.context.tls);
        policy.authorize(&request).allowed
    });
    assert_eq!(operator, Ok(()));
    let nobody = policy.check_some_append([], |stream| {
        let request = stele_policy::local_request(
            "local:bob",
            "local",
            policy.local_roles(),
            Action::Append,
            Resource::Stream(stream),
            now,
        );
        policy.authorize(&request).allowed
    });
    assert_eq!(nobody, Err("operational"));
}
