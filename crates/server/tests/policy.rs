//! The policy engine over real TLS: the example policy of
//! `crates/policy/examples` loaded at start, routing by policy, Cedar
//! decisions (deny wins, denials recorded), policy changes over the API
//! (shortening applies to new data only, dropping a stream with data
//! refused), legal holds, refused early purges, signed attestations,
//! exports; and automatic purging of an epoch past its retention, read
//! back as "purged by policy".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use stele_server::tokens::Role;

const EXAMPLE_TOML: &str = include_str!("../../policy/examples/policy.toml");
const EXAMPLE_CEDAR: &str = include_str!("../../policy/examples/access.cedar");

fn role(name: &str) -> Role {
    Role::parse(name).unwrap()
}

/// The stored stream of entry `index`, read by `token`.
async fn stream_of(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    index: u64,
) -> String {
    let event = server.get_event(client, token, index).await;
    event["event"]["stream"].as_str().unwrap().to_string()
}

/// The latest system event with `action` among the few entries before
/// `probe`. System events queued by the server (denials, reads) are appended
/// in no fixed order relative to an administrative request answered
/// meanwhile, so the test looks for the record rather than at one index.
async fn recent_system_event(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    probe: u64,
    action: &str,
) -> serde_json::Value {
    for index in (probe.saturating_sub(8)..probe).rev() {
        let event = server.get_event(client, token, index).await;
        if event["event"]["stream"] == "_system" && event["event"]["event"]["action"] == action {
            return event;
        }
    }
    panic!("no {action} event among the 8 entries before {probe}");
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Resp {
    send(client.get(url).bearer_auth(token)).await
}

async fn put_policy(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    toml: &str,
    cedar: &str,
) -> Resp {
    send(
        client
            .put(server.url("/v1/policy"))
            .bearer_auth(token)
            .json(&json!({"toml": toml, "cedar": cedar})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_policy_end_to_end() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy_path = policy_dir.path().join("policy.toml");
    std::fs::write(&policy_path, EXAMPLE_TOML).unwrap();
    std::fs::write(policy_dir.path().join("access.cedar"), EXAMPLE_CEDAR).unwrap();
    let server = start(|config| config.policy = Some(policy_path.clone())).await;
    let client = server.client();
    let writer = server.token("svc-payments-api", &[role("writer")]);
    let auditor = server.token("alice-auditor", &[role("auditor")]);
    let admin = server.token("bob-admin", &[role("admin")]);
    let legal = server.token("carol-legal", &[role("legal")]);
    let url = server.url("/v1/events");

    // The policy applied at start was recorded with its hash.
    let r = get(&client, server.url("/v1/policy"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hash = r.json["hash"].as_str().unwrap().to_string();
    assert_eq!(r.json["versions"].as_array().unwrap().len(), 1);
    let applied_at = r.json["versions"][0]["event_index"].as_u64().unwrap();
    let applied = server.get_event(&client, &auditor, applied_at).await;
    assert_eq!(applied["event"]["event"]["action"], "policy.applied");
    assert_eq!(
        applied["event"]["event"]["attributes"]["hash"],
        hash.as_str()
    );
    assert!(
        applied["event"]["event"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("config:"),
        "{applied}"
    );

    // Routing: by action glob, by attribute, by writer + attribute, default.
    let batch = json!([
        {"actor": "u1", "action": "auth.login"},
        {"actor": "u2", "action": "charge", "attributes": {"pci": "true"}},
        {"actor": "u3", "action": "refund", "attributes": {"app": {"tier": "payments"}}},
        {"actor": "u4", "action": "page.view"},
        {"actor": "u5", "action": "page.view", "stream": "security"},
    ]);
    let r = post_json(&client, &url, Some(&writer), &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let receipts = r.json["receipts"].as_array().unwrap().clone();
    let expected = [
        "security",
        "compliance",
        "compliance",
        "operational",
        "security",
    ];
    for (receipt, stream) in receipts.iter().zip(expected) {
        let index = receipt["index"].as_u64().unwrap();
        assert_eq!(stream_of(&server, &client, &auditor, index).await, stream);
    }
    let first = receipts[0]["index"].as_u64().unwrap();

    // Undeclared and reserved streams are refused, naming the stream, and
    // nothing of the request is appended.
    let before = server.probe(&client, &writer).await;
    let r = post_json(
        &client,
        &url,
        Some(&writer),
        &json!([{"actor": "a", "action": "b"}, {"actor": "a", "action": "b", "stream": "nosuch"}]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("nosuch"), "{}", r.text);
    assert_eq!(r.json["error"]["item"], 1);
    let r = post_json(
        &client,
        &url,
        Some(&writer),
        &json!({"actor": "a", "action": "b", "stream": "_system"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(server.probe(&client, &writer).await, before + 1);

    // Deny wins: administrators may not read payloads; the 403 names the
    // deciding policy and the denial is itself recorded.
    let r = get(&client, server.url(&format!("/v1/events/{first}")), &admin).await;
    assert_error(&r, 403, "forbidden");
    assert!(r.text.contains("admin-no-payloads"), "{}", r.text);
    let probe = server.probe(&client, &writer).await;
    let denial = recent_system_event(&server, &client, &auditor, probe, "access.denied").await;
    assert_eq!(denial["event"]["stream"], "_system");
    assert_eq!(denial["event"]["event"]["action"], "access.denied");
    assert_eq!(denial["event"]["event"]["actor"], "bob-admin");
    assert_eq!(denial["event"]["event"]["attributes"]["requested"], "read");
    assert_eq!(denial["event"]["event"]["attributes"]["stream"], "security");
    assert_eq!(
        denial["event"]["event"]["resource"],
        format!("events/{first}"),
        "the documented resource form; the stream is an attribute"
    );
    let policies = denial["event"]["event"]["attributes"]["policies"]
        .as_array()
        .unwrap();
    assert!(
        policies.iter().any(|p| p == "admin-no-payloads"),
        "{policies:?}"
    );

    // Writers may not read; auditors may not administer.
    let r = get(&client, server.url(&format!("/v1/events/{first}")), &writer).await;
    assert_error(&r, 403, "forbidden");
    let r = put_policy(&server, &client, &auditor, EXAMPLE_TOML, EXAMPLE_CEDAR).await;
    assert_error(&r, 403, "forbidden");
    let r = send(
        client
            .post(server.url("/v1/holds"))
            .bearer_auth(&auditor)
            .json(&json!({"streams": ["operational"], "reason": "x"})),
    )
    .await;
    assert_error(&r, 403, "forbidden");

    // Exports leave only from 10.0.0.0/8 in the example; loopback is not.
    let export_url = server.url(&format!("/v1/export?stream=security&from={first}"));
    let r = get(&client, export_url.clone(), &auditor).await;
    assert_error(&r, 403, "forbidden");
    let probe = server.probe(&client, &writer).await;
    let denial = recent_system_event(&server, &client, &auditor, probe, "access.denied").await;
    assert_eq!(denial["event"]["event"]["resource"], "streams/security");
    assert_eq!(
        denial["event"]["event"]["attributes"]["requested"],
        "export"
    );
    // No credentials: 401 before anything else, even a bad query.
    let r = send(client.get(server.url("/v1/export?stream=security"))).await;
    assert_error(&r, 401, "unauthenticated");

    // A new policy over the API: exports from loopback allowed, the
    // operational tier shortened (new data only).
    let toml = EXAMPLE_TOML.replace("retain = \"90d\"", "retain = \"30d\"");
    let cedar = EXAMPLE_CEDAR.replace("10.0.0.0/8", "127.0.0.0/8");
    let r = put_policy(&server, &client, &admin, &toml, &cedar).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["applied"], true);
    assert_eq!(r.json["seq"], 2);
    let changes = r.json["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.as_str().unwrap().contains("operational")
                && c.as_str().unwrap().contains("shortened")),
        "{changes:?}"
    );
    let applied = server
        .get_event(&client, &auditor, r.json["event_index"].as_u64().unwrap())
        .await;
    assert_eq!(applied["event"]["event"]["action"], "policy.applied");
    assert_eq!(applied["event"]["event"]["actor"], "bob-admin");
    let r = get(&client, server.url("/v1/policy"), &auditor).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.json["hash"], hash.as_str());
    assert_eq!(r.json["versions"].as_array().unwrap().len(), 2);

    let r = get(&client, export_url, &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lines: Vec<Value> = r
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.text);
    assert!(
        lines.iter().all(|l| l["event"]["stream"] == "security"),
        "{}",
        r.text
    );

    // Queries: the auditor filters a stream by the events' fields; each
    // query is recorded, by whom and with which filters, before its answer.
    let query_url = |q: &str| server.url(&format!("/v1/query?stream=security&from={first}&{q}"));
    let r = get(&client, query_url("actor=u5&action=page.view"), &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = r.json["events"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{}", r.text);
    assert_eq!(found[0]["index"], first + 4);
    assert_eq!(found[0]["event"]["event"]["actor"], "u5");
    assert_eq!(found[0]["event"]["stream"], "security");
    assert_eq!(r.json["next"], Value::Null);
    let probe = server.probe(&client, &writer).await;
    let record = recent_system_event(&server, &client, &auditor, probe, "events.queried").await;
    assert_eq!(record["event"]["event"]["actor"], "alice-auditor");
    let attributes = &record["event"]["event"]["attributes"];
    assert_eq!(
        attributes["filters"],
        json!({"actor": "u5", "action": "page.view"})
    );
    assert_eq!(attributes["matched"], 1);
    assert_eq!(attributes["stream"], "security");
    // A limit stops the scan and says where to go on.
    let r = get(&client, query_url("limit=1"), &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["events"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.json["events"][0]["index"], first);
    assert_eq!(r.json["next"], first + 1);
    let r = get(&client, query_url("outcome=success"), &auditor).await;
    assert_eq!(r.json["events"].as_array().unwrap().len(), 0, "{}", r.text);
    // Received at or after `since`, before `until` (the server's clock):
    // these events arrived in one request, so at one instant.
    let received = found[0]["event"]["received_at"]
        .as_str()
        .unwrap()
        .to_string();
    let all = get(&client, query_url(""), &auditor).await.json["events"]
        .as_array()
        .unwrap()
        .len();
    let r = get(&client, query_url(&format!("since={received}")), &auditor).await;
    assert_eq!(
        r.json["events"].as_array().unwrap().len(),
        all,
        "{}",
        r.text
    );
    let r = get(&client, query_url(&format!("until={received}")), &auditor).await;
    assert_eq!(r.json["events"].as_array().unwrap().len(), 0, "{}", r.text);
    let probe = server.probe(&client, &writer).await;
    let record = recent_system_event(&server, &client, &auditor, probe, "events.queried").await;
    assert_eq!(
        record["event"]["event"]["attributes"]["filters"]["until"],
        received.parse::<jiff::Timestamp>().unwrap().to_string()
    );
    let r = get(&client, query_url("since=yesterday"), &auditor).await;
    assert_error(&r, 400, "invalid_query");
    assert!(
        r.text.contains("since must be an RFC 3339 time"),
        "{}",
        r.text
    );
    // RFC 3339 offsets end at ±23:59 (jiff alone takes up to ±25:59).
    for offset in ["%2B24:00", "-25:59", "%2B05:60"] {
        let r = get(
            &client,
            query_url(&format!("since=2026-01-01T00:00:00{offset}")),
            &auditor,
        )
        .await;
        assert_error(&r, 400, "invalid_query");
    }
    let r = get(
        &client,
        query_url("since=2026-01-01T00:00:00%2B23:59"),
        &auditor,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A stream that is no stream name is a bad query, named, before
    // anything is decided or recorded.
    for bad in ["..%2Fx", "a%2Fb", "", "X"] {
        for endpoint in ["export", "query"] {
            let url = server.url(&format!("/v1/{endpoint}?stream={bad}&from=0"));
            let r = get(&client, url, &auditor).await;
            assert_error(&r, 400, "invalid_query");
            assert_eq!(r.json["error"]["field"], "stream", "{}", r.text);
        }
    }
    // Administrators may not query (a forbid), nor writers; no credentials
    // is 401 whatever the query; bad queries are 400.
    assert_error(&get(&client, query_url(""), &admin).await, 403, "forbidden");
    assert_error(
        &get(&client, query_url(""), &writer).await,
        403,
        "forbidden",
    );
    let r = send(client.get(server.url("/v1/query?stream=security"))).await;
    assert_error(&r, 401, "unauthenticated");
    for bad in ["limit=0", "limit=1001", "colour=red"] {
        let r = get(&client, query_url(bad), &auditor).await;
        assert_error(&r, 400, "invalid_query");
    }
    let r = get(
        &client,
        server.url("/v1/query?stream=security&from=1000000"),
        &auditor,
    )
    .await;
    assert_error(&r, 400, "invalid_query");

    // Dropping a stream that holds data is refused, and the old policy
    // stays in force.
    let without_security = toml
        .replace("[streams.security]\nretain = \"forever\"\n", "")
        .replace(
            "[[routes]]\nstream = \"security\"\naction = \"auth.*\"\n",
            "",
        );
    assert!(!without_security.contains("streams.security"));
    let r = put_policy(&server, &client, &admin, &without_security, &cedar).await;
    assert_error(&r, 409, "refused");
    assert!(r.text.contains("security"), "{}", r.text);
    let r = get(&client, server.url("/v1/policy"), &admin).await;
    assert_eq!(r.json["versions"].as_array().unwrap().len(), 2);

    // Legal holds: placed by legal, listed by admin, released once.
    let r = send(
        client
            .post(server.url("/v1/holds"))
            .bearer_auth(&legal)
            .json(&json!({"streams": ["operational"], "reason": "matter 7"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.json["hold"]["id"].as_str().unwrap().to_string();
    let r = get(&client, server.url("/v1/holds"), &admin).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json["holds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == hold_id.as_str())
    );
    let release = server.url(&format!("/v1/holds/{hold_id}/release"));
    let r = send(client.post(release.clone()).bearer_auth(&writer)).await;
    assert_error(&r, 403, "forbidden");
    let r = send(client.post(release.clone()).bearer_auth(&legal)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["hold"]["released_by"], "carol-legal");
    let r = send(client.post(release).bearer_auth(&legal)).await;
    assert_error(&r, 409, "refused");
    let r = send(
        client
            .post(server.url("/v1/holds/no-such-hold/release"))
            .bearer_auth(&legal),
    )
    .await;
    assert_error(&r, 404, "not_found");
    assert!(r.text.contains("no-such-hold"), "{}", r.text);

    // An epoch the stream never stored: nothing to purge (404).
    let r = send(
        client
            .post(server.url("/v1/retention/purge"))
            .bearer_auth(&admin)
            .json(&json!({"stream": "operational", "epoch": "2001-01-01"})),
    )
    .await;
    assert_error(&r, 404, "not_found");
    assert!(r.text.contains("no stored epoch"), "{}", r.text);

    // Purging today's epoch is early: refused (409), recorded, nothing gone.
    let today = stele_event::time::Day::of(jiff::Timestamp::now())
        .unwrap()
        .to_string();
    let r = send(
        client
            .post(server.url("/v1/retention/purge"))
            .bearer_auth(&admin)
            .json(&json!({"stream": "operational", "epoch": today})),
    )
    .await;
    assert_error(&r, 409, "refused");
    assert!(r.text.contains("retention ends"), "{}", r.text);
    let r = get(&client, server.url("/v1/retention"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["purged"].as_array().unwrap().is_empty());
    let r = send(
        client
            .post(server.url("/v1/retention/run"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["purged"].as_array().unwrap().is_empty());
    assert_eq!(
        stream_of(&server, &client, &auditor, first + 3).await,
        "operational"
    );

    // An attestation on demand, signed by the log key, with the active
    // policy's hash; the auditor reads the same one back.
    let r = send(client.post(server.url("/v1/audit/run")).bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let attestation: stele_log::audit::Attestation =
        serde_json::from_value(r.json.clone()).unwrap();
    attestation.verify_signature(&server.verifier()).unwrap();
    // Recorded on behalf of the administrator who asked for it.
    let index = attestation.event_index.unwrap();
    let recorded = server.get_event(&client, &auditor, index).await;
    assert_eq!(recorded["event"]["event"]["action"], "audit.attestation");
    assert_eq!(recorded["event"]["event"]["actor"], "bob-admin");
    let policy_now = get(&client, server.url("/v1/policy"), &admin).await;
    assert_eq!(
        attestation.policy_hash,
        policy_now.json["hash"].as_str().unwrap()
    );
    let transport = attestation
        .findings
        .iter()
        .find(|f| f.check == "transport.tls")
        .unwrap();
    assert!(transport.ok, "{transport:?}");
    let r = get(&client, server.url("/v1/audit/latest"), &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, serde_json::to_value(&attestation).unwrap());
    let r = send(
        client
            .post(server.url("/v1/audit/run"))
            .bearer_auth(&writer),
    )
    .await;
    assert_error(&r, 403, "forbidden");

    // Key rotation: a new key-encryption key, recorded; old events still
    // decrypt.
    let r = get(&client, server.url("/v1/keys"), &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["kek"]["number"], 0);
    assert_eq!(r.json["kek"]["max_age_days"], 365);
    assert_eq!(r.json["kek"]["within_policy"], true);
    let r = send(
        client
            .post(server.url("/v1/keys/rotate"))
            .bearer_auth(&auditor),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    let r = send(
        client
            .post(server.url("/v1/keys/rotate"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["kek"]["number"], 1);
    let probe = server.probe(&client, &writer).await;
    let rotated = recent_system_event(&server, &client, &auditor, probe, "key.rotated").await;
    assert_eq!(rotated["event"]["event"]["action"], "key.rotated");
    assert_eq!(rotated["event"]["event"]["actor"], "bob-admin");
    assert_eq!(rotated["event"]["event"]["attributes"]["number"], 1);
    assert_eq!(
        stream_of(&server, &client, &auditor, first).await,
        "security"
    );

    // The denials are counted.
    let r = send(client.get(server.url("/metrics"))).await;
    let denied = r
        .text
        .lines()
        .find_map(|l| l.strip_prefix("stele_access_denied_total "))
        .unwrap();
    assert!(denied.parse::<u64>().unwrap() >= 6, "{denied}");

    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_the_listeners_cannot_meet_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let policy_path = tmp.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n[transport]\ntls = \"required\"\n",
    )
    .unwrap();
    let pki = Pki::new(tmp.path());
    let mut config = base_config(tmp.path(), &pki);
    config.tls = None;
    config.client_certs.clear();
    config.allow_plain_http = true;
    config.listen = vec!["0.0.0.0:0".parse().unwrap()];
    config.policy = Some(policy_path);
    let Err(err) = stele_server::bind(config, None).await else {
        panic!("a plain listener on 0.0.0.0 was accepted under tls = \"required\"");
    };
    assert!(err.contains("TLS") && err.contains("0.0.0.0"), "{err}");
}

/// An epoch written long ago under a 90-day policy is announced due by
/// the server's scheduler on start (`retention.due`) and purged once the
/// grace period has passed on the server's own clock; reading it answers
/// 410 with the purge record, and the rest still proves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_epoch_is_purged_and_reads_say_so() {
    let long_ago: jiff::Timestamp = "2020-01-01T12:00:00Z".parse().unwrap();
    let (tmp, vkey) = populated_log(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n[streams.keep]\nretain = \"forever\"\n",
        &["ops", "ops", "keep"],
        long_ago,
    );
    let grace = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let server = start_in(tmp, vkey, |c| c.retention_grace_seconds = grace.as_secs()).await;
    let client = server.client();
    let admin = server.token("admin", &[Role::admin()]);
    let reader = server.token("reader", &[Role::reader()]);

    // The scheduler announces the due epoch as soon as it starts, and
    // purges nothing before the grace period has passed.
    let mut purged = Vec::new();
    for _ in 0..100 {
        let r = get(&client, server.url("/v1/retention"), &admin).await;
        assert_eq!(r.status, 200, "{}", r.text);
        purged = r.json["purged"].as_array().unwrap().clone();
        if started.elapsed() < grace {
            assert!(purged.is_empty(), "purged within the grace period");
        }
        if !purged.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(purged.len(), 1, "{purged:?}");
    assert!(started.elapsed() >= grace, "purged within the grace period");
    assert_eq!(purged[0]["stream"], "ops");
    assert_eq!(purged[0]["entries"], 2);
    // The purge names its announcement, made on start.
    let announced = purged[0]["announced"].as_u64().expect("no announcement");
    let due = server.get_event(&client, &reader, announced).await;
    assert_eq!(due["event"]["event"]["action"], "retention.due");
    assert_eq!(due["event"]["event"]["attributes"]["stream"], "ops");
    assert_eq!(due["event"]["event"]["attributes"]["grace_seconds"], 2);

    // Index 1 is an `ops` event (0 is the policy.applied event).
    let r = get(&client, server.url("/v1/events/1"), &reader).await;
    assert_error(&r, 410, "purged");
    assert!(r.text.contains("purged by policy"), "{}", r.text);
    assert_eq!(r.json["error"]["purge"]["stream"], "ops");
    // The `keep` event is still readable, with a valid proof.
    let kept = server.get_event(&client, &reader, 3).await;
    assert_eq!(kept["event"]["stream"], "keep");
    // The purge itself is a signed system event.
    let event_index = purged[0]["event_index"].as_u64().unwrap();
    let purge = server.get_event(&client, &reader, event_index).await;
    assert_eq!(purge["event"]["event"]["action"], "retention.purge");

    drop(client);
    server.stop().await;
}

/// Records altered on disk: the audit run on demand finds it, the
/// attestation says so (signed), `/readyz` fails as the policy asks, the
/// metric counts the failed checks, and a restart does not forget it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_is_loud() {
    let now = jiff::Timestamp::now();
    let (tmp, vkey) = populated_log(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"forever\"\n[audit]\nreadyz_fails_on_finding = true\n",
        &["ops", "ops", "ops"],
        now,
    );
    let data = tmp.path().join("data");
    // Flip the last byte of the `ops` segment: the tag of its last record.
    let day = stele_event::time::Day::of(now).unwrap().to_string();
    let segment = data.join(format!("segments/ops/{day}.seg"));
    let mut bytes = std::fs::read(&segment).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let server = start_in(tmp, vkey, |_| {}).await;
    let client = server.client();
    let admin = server.token("admin", &[Role::admin()]);
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = send(client.post(server.url("/v1/audit/run")).bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let attestation: stele_log::audit::Attestation =
        serde_json::from_value(r.json.clone()).unwrap();
    attestation.verify_signature(&server.verifier()).unwrap();
    assert!(!attestation.ok);
    let incremental = attestation
        .findings
        .iter()
        .find(|f| f.check == "verify.incremental")
        .unwrap();
    assert!(!incremental.ok, "{incremental:?}");
    assert!(incremental.detail.contains("entry 3"), "{incremental:?}");

    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("audit check"), "{}", r.text);
    let r = send(client.get(server.url("/metrics"))).await;
    let failed: u64 = r
        .text
        .lines()
        .find_map(|l| l.strip_prefix("stele_audit_failed_checks "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 1, "{failed}");

    // After a restart, readiness still reflects the latest attestation.
    let verifier_key = server.verifier_key.clone();
    drop(client);
    let tmp = server.stop().await;
    let server = start_in(tmp, verifier_key, |_| {}).await;
    let client = server.client();
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 503, "{}", r.text);
    drop(client);
    server.stop().await;
}

/// `PUT /v1/policy` makes the check `stele policy apply` makes: a policy
/// under which the local operator could no longer apply one is refused
/// (409 `lockout`, nothing applied) unless the body says `allow_lockout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_policy_refuses_to_lock_the_cli_operator_out() {
    let server = start(|_| {}).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let no_operators = "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n";
    let put = |body: Value| {
        send(
            client
                .put(server.url("/v1/policy"))
                .bearer_auth(&admin)
                .json(&body),
        )
    };
    let r = put(json!({"toml": no_operators})).await;
    assert_error(&r, 409, "lockout");
    assert!(
        r.text.contains("local_roles") && r.text.contains("allow_lockout"),
        "{}",
        r.text
    );
    let r = get(&client, server.url("/v1/policy"), &admin).await;
    assert_eq!(
        r.json["versions"].as_array().unwrap().len(),
        0,
        "{}",
        r.text
    );
    // Local roles that may apply a policy: applied.
    let with_operators = format!("{no_operators}[operators]\nlocal_roles = [\"admin\"]\n");
    let r = put(json!({"toml": with_operators})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["seq"], 1);
    // Told: applied even though it locks the operator out.
    let r = put(json!({"toml": no_operators, "allow_lockout": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["seq"], 2);
    drop(client);
    server.stop().await;
}

/// A restart with `policy = FILE` does not silently revert a version
/// applied over the API: the start is refused, naming that version, and
/// nothing changes; once the file is the active policy it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_revert_a_policy_applied_over_the_api() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy_path = policy_dir.path().join("policy.toml");
    let original = "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n[operators]\nlocal_roles = [\"admin\"]\n";
    std::fs::write(&policy_path, original).unwrap();
    let server = start(|config| config.policy = Some(policy_path.clone())).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let changed = original.replace("\"90d\"", "\"120d\"");
    let r = send(
        client
            .put(server.url("/v1/policy"))
            .bearer_auth(&admin)
            .json(&json!({"toml": changed})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["seq"], 2);
    drop(client);
    let tmp = server.stop().await;

    let pki = Pki::new(tmp.path());
    let mut config = base_config(tmp.path(), &pki);
    config.policy = Some(policy_path.clone());
    let Err(err) = stele_server::bind(config.clone(), None).await else {
        panic!("the configured file was applied over version 2 at start");
    };
    assert!(
        err.contains("version 2") && err.contains("admin") && err.contains("revert"),
        "{err}"
    );
    let versions = open_log(&config.data).reader().policy_versions().len();
    assert_eq!(versions, 2, "a refused start applies nothing");

    // The file now holds the active version: the start applies nothing.
    std::fs::write(&policy_path, &changed).unwrap();
    let bound = stele_server::bind(config.clone(), None).await.unwrap();
    drop(bound);
    assert_eq!(open_log(&config.data).reader().policy_versions().len(), 2);
    // A file edited after the configuration applied the active version
    // is applied at start, as a new version by `config:<path>`.
    let server = start(|config| config.policy = Some(policy_path.clone())).await;
    let tmp = server.stop().await;
    let edited = original.replace("\"90d\"", "\"150d\"");
    std::fs::write(&policy_path, &edited).unwrap();
    let pki = Pki::new(tmp.path());
    let mut config = base_config(tmp.path(), &pki);
    config.policy = Some(policy_path.clone());
    drop(stele_server::bind(config.clone(), None).await.unwrap());
    let log = open_log(&config.data);
    let versions = log.reader().policy_versions();
    assert_eq!(versions.len(), 2);
    assert!(
        versions[1].applied_by.starts_with("config:"),
        "{}",
        versions[1].applied_by
    );
}
