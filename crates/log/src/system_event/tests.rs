#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;
use crate::audit::Finding;
use crate::ids::SegmentId;

fn text(event: &SystemEvent) -> String {
    serde_json::to_string(&event.client_event()).unwrap()
}

fn hold(released: bool) -> Hold {
    Hold {
        id: "hold-1".into(),
        streams: vec!["ops".into()],
        from: Some("2026-01-01".parse().unwrap()),
        to: None,
        reason: "case 7".into(),
        placed_by: "ann".into(),
        placed_at: "2026-01-02T03:04:05Z".into(),
        released_by: released.then(|| "bob".into()),
        released_at: released.then(|| "2026-02-01T00:00:00Z".into()),
        placed_event: Some(3),
        released_event: None,
    }
}

fn tombstone(announced: Option<u64>) -> Tombstone {
    Tombstone {
        v: 1,
        segment: SegmentId(7),
        stream: "ops".into(),
        epoch: "2026-01-01".parse().unwrap(),
        epoch_day: "2026-01-01".parse().unwrap(),
        decided_at: 1_800_000_000,
        purge_after: 1_790_000_000,
        policy: "ab".into(),
        requested_by: "retention".into(),
        entries: 2,
        first: 4,
        last: 5,
        ranges: Some(vec![[4, 5]]),
        indices_sha256: "cd".into(),
        event_index: None,
        announced,
    }
}

fn token_entry() -> TokenEntry {
    TokenEntry {
        id: "0123456789ab".into(),
        principal: "ci".into(),
        roles: vec![Role::parse("writer").unwrap()],
        secret_sha256: "00".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        created_by: "ann".into(),
        created_event: 9,
        expires_at: None,
        streams: Some(vec!["ops".into()]),
        revoked_at: None,
        revoked_by: None,
        revoked_event: None,
    }
}

fn attestation() -> Attestation {
    Attestation {
        v: 1,
        at: "2026-01-01T00:00:00Z".into(),
        origin: "o".into(),
        policy_hash: "ab".into(),
        policy_seq: 1,
        checkpoint_size: 10,
        checkpoint_root: "cd".into(),
        verified_size: 10,
        last_full_verify: None,
        findings: vec![Finding {
            check: "verify.full".into(),
            ok: true,
            detail: "ok".into(),
        }],
        ok: true,
        signature: "sig".into(),
        event_index: None,
    }
}

/// One event of every variant, with the exact client-event JSON it must
/// produce (members in this order: the stored payload is these bytes).
fn every_variant() -> Vec<(SystemEvent, &'static str)> {
    let denied = |resource: SystemResource, stream: Option<&str>| SystemEvent::AccessDenied {
        actor: "ann".into(),
        resource,
        attributes: AccessDenied {
            stream: stream.map(str::to_string),
            requested: "export".into(),
            method: "token".into(),
            client: "10.0.0.1:5000".into(),
            policies: vec!["p1".into()],
            errors: vec![],
        },
    };
    vec![
        (
            denied(SystemResource::Stream("ops".into()), Some("ops")),
            r#"{"actor":"ann","action":"access.denied","attributes":{"stream":"ops","requested":"export","method":"token","client":"10.0.0.1:5000","policies":["p1"],"errors":[]},"resource":"streams/ops","outcome":"denied"}"#,
        ),
        (
            denied(SystemResource::Event(12), Some("ops")),
            r#"{"actor":"ann","action":"access.denied","attributes":{"stream":"ops","requested":"export","method":"token","client":"10.0.0.1:5000","policies":["p1"],"errors":[]},"resource":"events/12","outcome":"denied"}"#,
        ),
        (
            denied(SystemResource::Log, None),
            r#"{"actor":"ann","action":"access.denied","attributes":{"stream":null,"requested":"export","method":"token","client":"10.0.0.1:5000","policies":["p1"],"errors":[]},"resource":"log","outcome":"denied"}"#,
        ),
        (
            SystemEvent::EventRead {
                actor: "ann".into(),
                index: 12,
                attributes: EventRead {
                    method: "local".into(),
                    client: "cli".into(),
                    stream: "ops".into(),
                },
            },
            r#"{"actor":"ann","action":"event.read","attributes":{"method":"local","client":"cli","stream":"ops"},"resource":"events/12","outcome":"success"}"#,
        ),
        (
            SystemEvent::EventsExported {
                actor: "ann".into(),
                attributes: EventsExported {
                    stream: "ops".into(),
                    from: 0,
                    to: 5,
                    exported: 4,
                    purged: 1,
                    method: "mtls".into(),
                    client: "10.0.0.1:5000".into(),
                },
            },
            r#"{"actor":"ann","action":"events.exported","attributes":{"stream":"ops","from":0,"to":5,"exported":4,"purged":1,"method":"mtls","client":"10.0.0.1:5000"},"resource":"streams/ops"}"#,
        ),
        (
            SystemEvent::EventsQueried {
                actor: "ann".into(),
                attributes: EventsQueried {
                    stream: "ops".into(),
                    from: 0,
                    to: 5,
                    filters: json!({"actor": "u"}),
                    matched: 2,
                    purged: 0,
                    method: "local".into(),
                    client: "cli".into(),
                },
            },
            r#"{"actor":"ann","action":"events.queried","attributes":{"stream":"ops","from":0,"to":5,"filters":{"actor":"u"},"matched":2,"purged":0,"method":"local","client":"cli"},"resource":"streams/ops"}"#,
        ),
        (
            SystemEvent::EventsSearched {
                actor: "ann".into(),
                attributes: EventsSearched {
                    query: "actor:bob -outcome:success".into(),
                    streams: vec![],
                    order: "newest".into(),
                    size: 90,
                    continued: true,
                    matched: 12,
                    returned: 10,
                    export: None,
                    method: "token".into(),
                    client: "10.0.0.1:5000".into(),
                },
            },
            r#"{"actor":"ann","action":"events.searched","attributes":{"query":"actor:bob -outcome:success","streams":[],"order":"newest","size":90,"continued":true,"matched":12,"returned":10,"export":null,"method":"token","client":"10.0.0.1:5000"},"resource":"log"}"#,
        ),
        (
            SystemEvent::RetentionDue {
                actor: "retention".into(),
                attributes: RetentionDue {
                    segment: 7,
                    stream: "ops".into(),
                    epoch: "2026-01-01".into(),
                    purge_after: Some("2026-04-01T00:00:00Z".into()),
                    announced_at: "2026-05-01T00:00:00Z".into(),
                    grace_seconds: 3600,
                    clock: None,
                },
            },
            r#"{"actor":"retention","action":"retention.due","attributes":{"segment":7,"stream":"ops","epoch":"2026-01-01","purge_after":"2026-04-01T00:00:00Z","announced_at":"2026-05-01T00:00:00Z","grace_seconds":3600,"clock":null},"resource":"streams/ops"}"#,
        ),
        (
            SystemEvent::retention_purge(&tombstone(Some(6))),
            r#"{"actor":"retention","action":"retention.purge","attributes":{"segment":7,"stream":"ops","epoch":"2026-01-01","decided_at":"2027-01-15T08:00:00Z","purge_after":"2026-09-21T14:13:20Z","policy":"ab","requested_by":"retention","entries":2,"first":4,"last":5,"ranges":[[4,5]],"indices_sha256":"cd","announced":6},"id":"purge:7","resource":"streams/ops"}"#,
        ),
        (
            SystemEvent::RetentionRefused {
                actor: "ann".into(),
                attributes: RetentionRefused {
                    stream: "ops".into(),
                    epoch: "2026-01-01".into(),
                    purge_after: None,
                    held_by: vec!["hold-1".into()],
                    reason: "it is under legal hold hold-1".into(),
                },
            },
            r#"{"actor":"ann","action":"retention.refused","attributes":{"stream":"ops","epoch":"2026-01-01","purge_after":null,"held_by":["hold-1"],"reason":"it is under legal hold hold-1"},"resource":"streams/ops"}"#,
        ),
        (
            SystemEvent::PolicyApplied {
                attributes: PolicyApplied {
                    seq: 2,
                    hash: "ab".into(),
                    activated_at: "2026-01-01T00:00:00Z".into(),
                    applied_by: "ann".into(),
                    retention_changes: vec![],
                    prior_data: Some(false),
                    source: Some(json!({"toml": "version = 1"})),
                },
            },
            r#"{"actor":"ann","action":"policy.applied","attributes":{"seq":2,"hash":"ab","activated_at":"2026-01-01T00:00:00Z","applied_by":"ann","retention_changes":[],"prior_data":false,"source":{"toml":"version = 1"}},"id":"policy:2","resource":"policies/2"}"#,
        ),
        (
            SystemEvent::hold_placed(&hold(false)),
            r#"{"actor":"ann","action":"hold.placed","attributes":{"hold":"hold-1","streams":["ops"],"from":"2026-01-01","to":null,"reason":"case 7","placed_by":"ann","placed_at":"2026-01-02T03:04:05Z","released_by":null,"released_at":null},"id":"hold:hold-1:placed","resource":"holds/hold-1"}"#,
        ),
        (
            SystemEvent::hold_released(&hold(true)),
            r#"{"actor":"bob","action":"hold.released","attributes":{"hold":"hold-1","streams":["ops"],"from":"2026-01-01","to":null,"reason":"case 7","placed_by":"ann","placed_at":"2026-01-02T03:04:05Z","released_by":"bob","released_at":"2026-02-01T00:00:00Z"},"id":"hold:hold-1:released","resource":"holds/hold-1"}"#,
        ),
        (
            SystemEvent::KeyRotated {
                actor: "ann".into(),
                attributes: KeyRotated {
                    number: 3,
                    kind: "file".into(),
                    created_at: "2026-01-01T00:00:00Z".into(),
                    data_keys_rewrapped: 12,
                },
            },
            r#"{"actor":"ann","action":"key.rotated","attributes":{"number":3,"kind":"file","created_at":"2026-01-01T00:00:00Z","data_keys_rewrapped":12},"id":"kek:3","resource":"keys/kek"}"#,
        ),
        (
            SystemEvent::AuditAttestation {
                actor: "stele".into(),
                attestation: Box::new(attestation()),
            },
            r#"{"actor":"stele","action":"audit.attestation","attributes":{"v":1,"at":"2026-01-01T00:00:00Z","origin":"o","policy_hash":"ab","policy_seq":1,"checkpoint_size":10,"checkpoint_root":"cd","verified_size":10,"last_full_verify":null,"findings":[{"check":"verify.full","ok":true,"detail":"ok"}],"ok":true,"signature":"sig"},"resource":"log"}"#,
        ),
        (
            SystemEvent::TokenCreated {
                actor: "ann".into(),
                attributes: (&token_entry()).into(),
            },
            r#"{"actor":"ann","action":"token.created","attributes":{"token":"0123456789ab","principal":"ci","roles":["writer"],"expires_at":null,"streams":["ops"],"secret_commitment":"SECRET","created_at":"2026-01-01T00:00:00Z"},"id":"token:0123456789ab:created","resource":"tokens/0123456789ab"}"#,
        ),
        (
            SystemEvent::TokenRevoked {
                actor: "bob".into(),
                attributes: TokenRevoked {
                    token: "0123456789ab".into(),
                    principal: "ci".into(),
                    created_event: 9,
                    revoked_at: "2026-02-01T00:00:00Z".into(),
                },
            },
            r#"{"actor":"bob","action":"token.revoked","attributes":{"token":"0123456789ab","principal":"ci","created_event":9,"revoked_at":"2026-02-01T00:00:00Z"},"id":"token:0123456789ab:revoked","resource":"tokens/0123456789ab"}"#,
        ),
        (
            SystemEvent::AuthFailed {
                attributes: AuthFailed {
                    window_start: "2026-01-01T00:00:00Z".into(),
                    window_end: "2026-01-01T00:01:00Z".into(),
                    failures: 3,
                    by_reason: [("unknown_token".to_string(), 3)].into(),
                    samples: vec![AuthFailureSample {
                        client: Some("10.0.0.1".into()),
                        token: None,
                        reason: "unknown_token".into(),
                    }],
                    unsampled: 2,
                },
            },
            r#"{"actor":"stele","action":"auth.failed","attributes":{"window_start":"2026-01-01T00:00:00Z","window_end":"2026-01-01T00:01:00Z","failures":3,"by_reason":{"unknown_token":3},"samples":[{"client":"10.0.0.1","token":null,"reason":"unknown_token"}],"unsampled":2},"resource":"auth","outcome":"denied"}"#,
        ),
        (
            SystemEvent::log_recovered(
                "7-4096",
                &Salvaged {
                    format: 1,
                    segment: 7,
                    file: "segments/ops/2026-01-01.seg".into(),
                    offset: 4096,
                    length: 100,
                    sha256: "ef".into(),
                    found_at: "2026-01-01T00:00:00Z".into(),
                    event_index: None,
                },
            ),
            r#"{"actor":"stele","action":"log.recovered","attributes":{"segment":7,"offset":4096,"length":100,"sha256":"ef","kept":"recovered/7-4096.bin"},"id":"recovered:7-4096","resource":"segments/ops/2026-01-01.seg"}"#,
        ),
    ]
}

/// Every variant gives exactly its documented JSON, member order included.
#[test]
fn every_variant_has_its_shape() {
    let commitment = secret_commitment("00");
    let mut actions = std::collections::BTreeSet::new();
    for (event, expected) in every_variant() {
        let expected = expected.replace("SECRET", &commitment);
        assert_eq!(text(&event), expected, "{}", event.action());
        actions.insert(event.action());
    }
    // One of each action.
    assert_eq!(actions.len(), 17);
}

/// What a reader gets back from the stored bytes is the event written,
/// and writing it again gives the same bytes.
#[test]
fn every_variant_parses_back() {
    for (event, _) in every_variant() {
        let raw = serde_json::to_vec(&event.client_event()).unwrap();
        let client = stele_event::parse_client_event(&raw, &stele_event::Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", event.action()));
        let parsed = SystemEvent::parse(&client)
            .unwrap_or_else(|e| panic!("{}: {e}", event.action()))
            .unwrap_or_else(|| panic!("{}: not recognised", event.action()));
        assert_eq!(parsed, event);
        assert_eq!(serde_json::to_vec(&parsed.client_event()).unwrap(), raw);
    }
}

/// The events a crash makes the log append again under their client id
/// are recognised only if their bytes are those an earlier version wrote:
/// these are those bytes, as that version built them.
#[test]
fn retried_events_keep_their_bytes() {
    let rotated = SystemEvent::KeyRotated {
        actor: "ann".into(),
        attributes: KeyRotated {
            number: 3,
            kind: "file".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            data_keys_rewrapped: 12,
        },
    };
    let mut before = json!({"actor": "ann", "action": "key.rotated", "attributes": {
        "number": 3, "kind": "file", "created_at": "2026-01-01T00:00:00Z", "data_keys_rewrapped": 12,
    }});
    before["id"] = "kek:3".into();
    before["resource"] = "keys/kek".into();
    assert_eq!(
        serde_json::to_vec(&rotated.client_event()).unwrap(),
        serde_json::to_vec(&before).unwrap()
    );

    let entry = token_entry();
    let created = SystemEvent::TokenCreated {
        actor: "ann".into(),
        attributes: (&entry).into(),
    };
    let mut before = json!({"actor": "ann", "action": "token.created", "attributes": {
        "token": entry.id, "principal": entry.principal, "roles": entry.roles,
        "expires_at": entry.expires_at, "streams": entry.streams,
        "secret_commitment": secret_commitment(&entry.secret_sha256), "created_at": entry.created_at,
    }});
    before["id"] = "token:0123456789ab:created".into();
    before["resource"] = "tokens/0123456789ab".into();
    assert_eq!(
        serde_json::to_vec(&created.client_event()).unwrap(),
        serde_json::to_vec(&before).unwrap()
    );

    // The purge's attributes (which the open compares with the tombstone)
    // are unchanged, with and without an announcement.
    for announced in [None, Some(6)] {
        let t = tombstone(announced);
        let mut before = json!({
            "segment": t.segment, "stream": t.stream, "epoch": t.epoch,
            "decided_at": timestamp_text(t.decided_at), "purge_after": timestamp_text(t.purge_after),
            "policy": t.policy, "requested_by": t.requested_by, "entries": t.entries,
            "first": t.first, "last": t.last, "ranges": t.ranges, "indices_sha256": t.indices_sha256,
        });
        if let Some(a) = announced {
            before["announced"] = a.into();
        }
        assert_eq!(
            serde_json::to_vec(&t.event_attributes()).unwrap(),
            serde_json::to_vec(&before).unwrap()
        );
    }
}

/// Every resource text reads back as the resource it names.
#[test]
fn resources_round_trip() {
    for resource in [
        SystemResource::Stream("app.audit".into()),
        SystemResource::Event(0),
        SystemResource::Log,
        SystemResource::Policy(4),
        SystemResource::Hold("hold-0a".into()),
        SystemResource::Token("0123456789ab".into()),
        SystemResource::Kek,
        SystemResource::Auth,
        SystemResource::File("segments/ops/2026-01-01.seg".into()),
    ] {
        assert_eq!(SystemResource::parse(&resource.text()), Some(resource));
    }
    assert_eq!(SystemResource::parse("stream:x"), None);
    let access = stele_policy::Resource::Event {
        stream: "ops",
        index: 3,
    };
    assert_eq!(SystemResource::of_access(&access).text(), "events/3");
    assert_eq!(
        SystemResource::access_stream(&access).as_deref(),
        Some("ops")
    );
}

/// A reader is told what does not fit, and passes over what it does not
/// know.
#[test]
fn parse_refuses_a_wrong_shape() {
    let raw =
        br#"{"actor":"ann","action":"hold.placed","resource":"holds/h","attributes":{"hold":"h"}}"#;
    let client = stele_event::parse_client_event(raw, &stele_event::Limits::default()).unwrap();
    let e = SystemEvent::parse(&client).unwrap_err();
    assert!(e.contains("missing field"), "{e}");
    let raw = br#"{"actor":"ann","action":"something.else"}"#;
    let client = stele_event::parse_client_event(raw, &stele_event::Limits::default()).unwrap();
    assert_eq!(SystemEvent::parse(&client), Ok(None));
}
