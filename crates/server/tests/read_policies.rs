//! Per-stream read policies end to end, over real TLS: a Cedar policy that
//! lets principal `alice` read, query and export stream `x` but not `y`.
//! Her reads of `x` return the content (and are recorded as reads); her
//! reads of `y` are 403 `forbidden`, return nothing of it and are recorded
//! as `access.denied` events. Then a narrowed policy applied over HTTP
//! (`PUT /v1/policy`) takes `x` away: the very next read is denied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_server::tokens::Role;

const POLICY_TOML: &str = r#"version = 1
default_stream = "x"
[streams.x]
retain = "forever"
[streams.y]
retain = "forever"
[operators]
local_roles = ["admin"]
[access]
cedar_file = "access.cedar"
"#;

/// Everything but reading: writers append, admins administer (and read,
/// to look at the records), the server appends its own events.
const BASE_CEDAR: &str = r#"
@id("writers-append")
permit (principal in Stele::Role::"writer", action == Stele::Action::"append", resource is Stele::Stream)
when { !resource.reserved };

@id("system-append")
permit (principal, action == Stele::Action::"append", resource is Stele::Stream)
when { principal.kind == "system" };

@id("admins")
permit (principal in Stele::Role::"admin", action, resource);
"#;

/// Alice reads stream `x`, nothing else.
const ALICE_READS_X: &str = r#"
@id("alice-reads-x")
permit (
  principal == Stele::Principal::"alice",
  action in [Stele::Action::"read", Stele::Action::"query", Stele::Action::"export"],
  resource in Stele::Stream::"x"
);
"#;

fn cedar_with_alice() -> String {
    format!("{BASE_CEDAR}{ALICE_READS_X}")
}

/// Starts a server enforcing [`POLICY_TOML`] with `cedar`.
async fn serve_policy(cedar: &str) -> (TestServer, tempfile::TempDir) {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy_path = policy_dir.path().join("policy.toml");
    std::fs::write(&policy_path, POLICY_TOML).unwrap();
    std::fs::write(policy_dir.path().join("access.cedar"), cedar).unwrap();
    let server = start(|config| config.policy = Some(policy_path.clone())).await;
    (server, policy_dir)
}

/// Appends one event to `stream` holding `marker`; its index.
async fn append_to(
    server: &TestServer,
    client: &reqwest::Client,
    writer: &str,
    stream: &str,
    marker: &str,
) -> u64 {
    let r = post_json(
        client,
        &server.url("/v1/events"),
        Some(writer),
        &json!({"actor": "app", "action": "store", "stream": stream, "attributes": {"note": marker}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["receipts"][0]["stream"], stream);
    r.json["receipts"][0]["index"].as_u64().unwrap()
}

/// The three ways of reading a stream's content, as `alice` asks them.
fn reads_of(server: &TestServer, stream: &str, index: u64) -> [(&'static str, String); 3] {
    [
        ("read", server.url(&format!("/v1/events/{index}"))),
        (
            "query",
            server.url(&format!("/v1/query?stream={stream}&from={index}")),
        ),
        (
            "export",
            server.url(&format!("/v1/export?stream={stream}&from={index}")),
        ),
    ]
}

/// `_system` events of a stopped server's log with `action`, as (index,
/// actor, resource, attributes).
fn system_events(data: &std::path::Path, action: &str) -> Vec<(u64, String, String, Value)> {
    let log = open_log(data);
    (0..log.reader().size())
        .filter_map(|i| {
            let envelope = log.reader().get(EntryIndex(i)).ok()?.envelope;
            (envelope.stream == "_system" && envelope.event.action == action).then(|| {
                (
                    i,
                    envelope.event.actor.clone(),
                    envelope.event.resource.clone().unwrap_or_default(),
                    Value::Object(envelope.event.attributes.clone().unwrap_or_default()),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_reads_the_streams_the_policy_gives_it_and_no_other() {
    let (server, _policy_dir) = serve_policy(&cedar_with_alice()).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let alice = server.token("alice", &[Role::parse("analyst").unwrap()]);
    let ix = append_to(&server, &client, &writer, "x", "content-of-x").await;
    let iy = append_to(&server, &client, &writer, "y", "content-of-y").await;

    // Stream x: every kind of read returns the content.
    for (action, url) in reads_of(&server, "x", ix) {
        let r = send(client.get(url).bearer_auth(&alice)).await;
        assert_eq!(r.status, 200, "alice's {action} of x: {}", r.text);
        assert!(r.text.contains("content-of-x"), "{action}: {}", r.text);
    }
    let read = server.get_event(&client, &alice, ix).await;
    verify_proof(&server, &read, ix);

    // Stream y: every kind of read is denied, names the resource and that
    // no policy permits it, and returns nothing of the content.
    for (action, url) in reads_of(&server, "y", iy) {
        let r = send(client.get(url).bearer_auth(&alice)).await;
        assert_error(&r, 403, "forbidden");
        let resource = if action == "read" {
            format!("events/{iy} (stream:y)")
        } else {
            "stream:y".to_string()
        };
        assert_eq!(
            r.json["error"]["message"],
            format!("principal \"alice\" may not {action} {resource}: no policy permits it"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("content-of-y"), "{action}: {}", r.text);
    }
    // The event of y is there: another principal may read it.
    let admin = server.token("root", &[Role::admin()]);
    let r = server.get_event(&client, &admin, iy).await;
    assert_eq!(r["event"]["stream"], "y");

    // Every denial, and no read of x, is an `access.denied` event; every
    // read of x is recorded as the read it was.
    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    let denials: Vec<_> = system_events(&data, "access.denied")
        .into_iter()
        .filter(|(_, actor, _, _)| actor == "alice")
        .collect();
    let mut denied: Vec<(String, String)> = denials
        .iter()
        .map(|(_, _, resource, attributes)| {
            assert_eq!(attributes["stream"], "y", "{attributes}");
            assert_eq!(attributes["method"], "token", "{attributes}");
            (
                attributes["requested"].as_str().unwrap().to_string(),
                resource.clone(),
            )
        })
        .collect();
    denied.sort();
    assert_eq!(
        denied,
        vec![
            ("export".to_string(), "streams/y".to_string()),
            ("query".to_string(), "streams/y".to_string()),
            ("read".to_string(), format!("events/{iy}")),
        ]
    );
    let reads: Vec<_> = system_events(&data, "event.read")
        .into_iter()
        .filter(|(_, actor, _, _)| actor == "alice")
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    for (_, _, resource, attributes) in &reads {
        assert_eq!(resource, &format!("events/{ix}"));
        assert_eq!(attributes["stream"], "x");
    }
    assert_eq!(
        system_events(&data, "events.queried")
            .iter()
            .filter(|e| e.1 == "alice")
            .count(),
        1
    );
    assert_eq!(
        system_events(&data, "events.exported")
            .iter()
            .filter(|e| e.1 == "alice")
            .count(),
        1
    );
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_policy_applied_over_http_denies_the_next_read() {
    let (server, _policy_dir) = serve_policy(&cedar_with_alice()).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let alice = server.token("alice", &[Role::parse("analyst").unwrap()]);
    let admin = server.token("root", &[Role::admin()]);
    let ix = append_to(&server, &client, &writer, "x", "content-of-x").await;

    // Alice reads x, each way twice (a decision the server may keep).
    for _ in 0..2 {
        for (action, url) in reads_of(&server, "x", ix) {
            let r = send(client.get(url).bearer_auth(&alice)).await;
            assert_eq!(r.status, 200, "alice's {action} of x: {}", r.text);
        }
    }

    // The administrator applies a policy without alice's permission.
    let r = send(
        client
            .put(server.url("/v1/policy"))
            .bearer_auth(&admin)
            .json(&json!({"toml": POLICY_TOML, "cedar": BASE_CEDAR})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["applied"], true, "{}", r.text);
    let applied_at = r.json["event_index"].as_u64().unwrap();

    // The very next read is denied, and so is every other way in.
    for (action, url) in reads_of(&server, "x", ix) {
        let r = send(client.get(url).bearer_auth(&alice)).await;
        assert_error(&r, 403, "forbidden");
        assert!(
            r.text.contains("no policy permits it"),
            "alice's {action} of x after the narrowing: {}",
            r.text
        );
        assert!(!r.text.contains("content-of-x"), "{action}: {}", r.text);
    }

    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    // The narrowing is recorded, by whom, before the denials it caused.
    let applied = system_events(&data, "policy.applied");
    let (_, by, _, _) = applied
        .iter()
        .find(|(i, _, _, _)| *i == applied_at)
        .unwrap();
    assert_eq!(by, "root");
    let denials: Vec<_> = system_events(&data, "access.denied")
        .into_iter()
        .filter(|(_, actor, _, _)| actor == "alice")
        .collect();
    assert_eq!(denials.len(), 3, "{denials:?}");
    for (index, _, _, attributes) in &denials {
        assert!(*index > applied_at, "{denials:?}");
        assert_eq!(attributes["stream"], "x");
    }
    drop(tmp);
}

/// `GET /v1/search` as `alice` sees it: only stream `x`, in results and
/// in counts; naming `y` is denied; pages follow their cursor, pinned to
/// one tree size while appends go on; bad parameters are 400 naming the
/// parameter; every page is recorded as an `events.searched` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_shows_and_counts_only_the_streams_the_policy_gives() {
    let (server, _policy_dir) = serve_policy(&cedar_with_alice()).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let alice = server.token("alice", &[Role::parse("analyst").unwrap()]);
    let admin = server.token("root", &[Role::admin()]);
    let mut in_x = Vec::new();
    for n in 0..5 {
        in_x.push(append_to(&server, &client, &writer, "x", &format!("shared {n}")).await);
        append_to(&server, &client, &writer, "y", &format!("shared {n}")).await;
    }
    let search = |token: &str, query: &str| {
        let url = reqwest::Url::parse_with_params(
            &server.url("/v1/search"),
            &[("q", query), ("limit", "2"), ("aggregate", "day,actor")],
        )
        .unwrap();
        client.get(url).bearer_auth(token.to_string())
    };
    server.wait_checkpoint(&client, in_x[4] + 2).await;
    let r = send(search(&alice, "shared")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["count"], 5, "{}", r.text);
    assert_eq!(r.json["top"]["actor"][0]["count"], 5, "{}", r.text);
    assert_eq!(r.json["histogram"]["buckets"][0]["count"], 5, "{}", r.text);
    assert!(!r.text.contains("\"stream\":\"y\""), "{}", r.text);
    // The admin reads both streams (and `_system`, where alice's search
    // is recorded with its query).
    let r = send(search(&admin, "shared -stream:_system")).await;
    assert_eq!(r.json["count"], 10, "{}", r.text);

    // Every page, following the cursor; appends between pages change
    // neither the count nor what the pages hold.
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("q", "shared".to_string()), ("limit", "2".to_string())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let url = reqwest::Url::parse_with_params(&server.url("/v1/search"), &params).unwrap();
        let r = send(client.get(url).bearer_auth(&alice)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["count"], 5, "{}", r.text);
        for event in r.json["events"].as_array().unwrap() {
            assert_eq!(event["event"]["stream"], "x");
            found.push(event["index"].as_u64().unwrap());
        }
        append_to(&server, &client, &writer, "x", "shared later").await;
        match r.json["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut expected = in_x.clone();
    expected.reverse();
    assert_eq!(found, expected);

    // Naming a stream alice may not read is denied, and recorded.
    let url = server.url("/v1/search?q=shared&streams=x,y");
    assert_error(
        &send(client.get(url).bearer_auth(&alice)).await,
        403,
        "forbidden",
    );
    // Bad parameters: 400 naming the parameter.
    for (query, field) in [
        ("q=acter:alice", "q"),
        ("q=shared&limit=0", "limit"),
        ("q=shared&order=sideways", "order"),
        ("q=shared&aggregate=week", "aggregate"),
        ("q=shared&streams=../x", "streams"),
        ("q=shared&cursor=garbage", "cursor"),
        (
            &format!("q=other&cursor={}", cursor.clone().unwrap_or_default()),
            "cursor",
        ),
    ] {
        let r = send(
            client
                .get(server.url(&format!("/v1/search?{query}")))
                .bearer_auth(&alice),
        )
        .await;
        assert_error(&r, 400, "invalid_query");
        assert_eq!(r.json["error"]["field"], field, "{query}: {}", r.text);
    }
    let r = send(
        client
            .get(server.url("/v1/search?q=x&colour=red"))
            .bearer_auth(&alice),
    )
    .await;
    assert_error(&r, 400, "invalid_query");
    let r = send(client.get(server.url("/v1/search?q=x"))).await;
    assert_eq!(r.status, 401, "{}", r.text);

    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    let searches: Vec<_> = system_events(&data, "events.searched")
        .into_iter()
        .filter(|(_, actor, _, _)| actor == "alice")
        .collect();
    // The first page with aggregates, then the three pages of the walk.
    assert_eq!(searches.len(), 4, "{searches:?}");
    for (_, _, resource, attributes) in &searches {
        assert_eq!(resource, "log");
        assert_eq!(attributes["query"], "shared");
        assert_eq!(attributes["matched"], 5);
        assert_eq!(attributes["method"], "token");
    }
    assert_eq!(searches[0].3["continued"], false);
    assert_eq!(searches[3].3["continued"], true);
    let denied = system_events(&data, "access.denied")
        .into_iter()
        .filter(|(_, actor, resource, _)| actor == "alice" && resource == "streams/y")
        .count();
    assert_eq!(denied, 1);
    drop(tmp);
}

/// `POST /v1/exports` as `alice`: every match of stream `x` only, as an
/// evidence bundle that verifies with the server's key alone and as
/// views labelled unverified; a stream she may not export is refused;
/// each export is recorded with its format and count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_a_search_holds_only_what_the_policy_gives_and_verifies() {
    let (server, _policy_dir) = serve_policy(&cedar_with_alice()).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let alice = server.token("alice", &[Role::parse("analyst").unwrap()]);
    let mut in_x = Vec::new();
    for n in 0..4 {
        in_x.push(append_to(&server, &client, &writer, "x", &format!("shared {n}")).await);
        append_to(&server, &client, &writer, "y", &format!("shared {n}")).await;
    }
    server.wait_checkpoint(&client, in_x[3] + 2).await;
    let export = |body: Value| {
        client
            .post(server.url("/v1/exports"))
            .bearer_auth(&alice)
            .json(&body)
    };
    let r = send(export(json!({"query": "shared", "format": "bundle"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["x-stele-export-count"], "4");
    assert_eq!(r.headers["content-type"], "application/vnd.stele.bundle");
    let report = stele_bundle::verify(r.bytes.as_slice(), &server.verifier(), None).unwrap();
    assert_eq!(report.events, 4);
    assert_eq!(
        (report.first_index, report.last_index),
        (Some(in_x[0]), Some(in_x[3]))
    );
    // Views: labelled, then the same events, oldest first.
    let r = send(export(json!({"query": "shared", "format": "ndjson"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lines: Vec<Value> = r
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines[0]["unverified_view"]
            .as_str()
            .unwrap()
            .starts_with("unverified view")
    );
    let indices: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, in_x);
    let r = send(export(json!({"query": "shared", "format": "csv"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.starts_with("# unverified view"), "{}", r.text);
    assert_eq!(r.text.lines().count(), 2 + in_x.len(), "{}", r.text);
    // Refusals: a stream she may not export, a format that is not one.
    let r = send(export(
        json!({"query": "shared", "streams": ["y"], "format": "csv"}),
    ))
    .await;
    assert_error(&r, 403, "forbidden");
    let r = send(export(json!({"query": "shared", "format": "pdf"}))).await;
    assert_error(&r, 400, "invalid_query");
    let r = send(export(json!({"query": "acter:x", "format": "csv"}))).await;
    assert_error(&r, 400, "invalid_query");
    let r = send(export(json!({"query": "x", "format": "csv", "colour": 1}))).await;
    assert_eq!(r.status, 400, "{}", r.text);

    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    let exports: Vec<(String, u64)> = system_events(&data, "events.searched")
        .into_iter()
        .filter(|(_, actor, _, _)| actor == "alice")
        .map(|(_, _, _, a)| {
            (
                a["export"].as_str().unwrap().to_string(),
                a["returned"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        exports,
        vec![
            ("bundle".into(), 4),
            ("ndjson".into(), 4),
            ("csv".into(), 4)
        ]
    );
    drop(tmp);
}
