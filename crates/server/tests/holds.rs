//! A purge attempted under a legal hold, through the server: an epoch past
//! its retention, held by a hold placed with `POST /v1/holds`, is not
//! purged by an explicit request (409 `refused`, naming the hold, recorded
//! as `retention.refused`), by `POST /v1/retention/run`, nor by the
//! scheduler of a server started with no grace period; its events still
//! read. Released, the same epoch is purged at once: the hold alone kept
//! it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_server::tokens::Role;

const POLICY: &str = "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n[streams.keep]\nretain = \"forever\"\n";
const EPOCH: &str = "2020-01-01";

async fn get(server: &TestServer, client: &reqwest::Client, path: &str, token: &str) -> Resp {
    send(client.get(server.url(path)).bearer_auth(token)).await
}

async fn post(
    server: &TestServer,
    client: &reqwest::Client,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Resp {
    let request = client.post(server.url(path)).bearer_auth(token);
    send(match body {
        Some(body) => request.json(&body),
        None => request,
    })
    .await
}

/// The `ops` epoch in `GET /v1/retention`.
async fn ops_epoch(server: &TestServer, client: &reqwest::Client, token: &str) -> Value {
    let r = get(server, client, "/v1/retention", token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["stream"] == "ops" && e["epoch"] == EPOCH)
        .cloned()
        .unwrap_or(Value::Null)
}

/// An explicit purge of the held epoch: refused, naming the hold.
async fn purge_is_refused(server: &TestServer, client: &reqwest::Client, admin: &str, hold: &str) {
    let r = post(
        server,
        client,
        "/v1/retention/purge",
        admin,
        Some(json!({"stream": "ops", "epoch": EPOCH})),
    )
    .await;
    assert_error(&r, 409, "refused");
    assert!(
        r.text.contains(&format!("under legal hold {hold}")),
        "the refusal must name the hold: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_epoch_is_not_purged_by_any_path_until_released() {
    let long_ago: jiff::Timestamp = "2020-01-01T12:00:00Z".parse().unwrap();
    // Entry 0 is `policy.applied`; 1 and 2 are `ops` (due for years), 3 `keep`.
    let (tmp, vkey) = populated_log(POLICY, &["ops", "ops", "keep"], long_ago);

    // A first server with a long grace period only announces the due
    // epoch, which leaves time to place the hold over HTTP.
    let server = start_in(tmp, vkey.clone(), |c| c.retention_grace_seconds = 3600).await;
    let client = server.client();
    let admin = server.token("admin", &[Role::admin()]);
    let r = post(
        &server,
        &client,
        "/v1/holds",
        &admin,
        Some(json!({"streams": ["ops"], "reason": "litigation 42"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold = r.json["hold"]["id"].as_str().unwrap().to_string();
    purge_is_refused(&server, &client, &admin, &hold).await;
    drop(client);
    let tmp = server.stop().await;

    // A server with no grace period purges a due epoch in the very run
    // that announces it, and its scheduler runs retention as it starts.
    let server = start_in(tmp, vkey, |c| c.retention_grace_seconds = 0).await;
    let client = server.client();
    let admin = server.token("admin-2", &[Role::admin()]);
    let reader = server.token("auditor", &[Role::reader()]);
    let epoch = ops_epoch(&server, &client, &admin).await;
    assert_eq!(epoch["held_by"], json!([hold]), "{epoch}");
    assert_eq!(epoch["due"], false, "{epoch}");
    purge_is_refused(&server, &client, &admin, &hold).await;
    let r = post(&server, &client, "/v1/retention/run", &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["purged"], json!([]), "{}", r.text);
    let r = get(&server, &client, "/v1/retention", &admin).await;
    assert_eq!(r.json["purged"], json!([]), "{}", r.text);
    // The held events still read, with their content and proofs.
    for index in [1, 2] {
        let read = server.get_event(&client, &reader, index).await;
        assert_eq!(read["event"]["stream"], "ops");
        assert_eq!(
            read["event"]["event"]["attributes"]["note"],
            format!("content-{}", index - 1)
        );
        verify_proof(&server, &read, index);
    }

    // Released, the epoch is due, and the next run purges it (or the
    // scheduler did first): the hold alone kept it.
    let r = post(
        &server,
        &client,
        &format!("/v1/holds/{hold}/release"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let released_at = r.json["hold"]["released_event"].as_u64().unwrap();
    let r = post(&server, &client, "/v1/retention/run", &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(&server, &client, "/v1/retention", &admin).await;
    let purged = r.json["purged"].as_array().unwrap().clone();
    assert_eq!(purged.len(), 1, "{}", r.text);
    assert_eq!(purged[0]["stream"], "ops");
    assert_eq!(purged[0]["entries"], 2);
    let r = get(&server, &client, "/v1/events/1", &reader).await;
    assert_error(&r, 410, "purged");
    let kept = server.get_event(&client, &reader, 3).await;
    assert_eq!(kept["event"]["stream"], "keep");

    // Each refusal is in the log, naming the hold; the purge came after the
    // release.
    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    let log = open_log(&data);
    let mut refused = Vec::new();
    let mut purge_events = Vec::new();
    let mut release_events = Vec::new();
    for index in 0..log.reader().size() {
        let Ok(stored) = log.reader().get(EntryIndex(index)) else {
            continue;
        };
        let event = &stored.envelope.event;
        if stored.envelope.stream != "_system" {
            continue;
        }
        let attributes = Value::Object(event.attributes.clone().unwrap_or_default());
        match event.action.as_str() {
            "retention.refused" => refused.push(attributes),
            "retention.purge" => purge_events.push(index),
            "hold.released" => release_events.push(index),
            _ => {}
        }
    }
    assert_eq!(refused.len(), 2, "{refused:?}");
    for attributes in &refused {
        assert_eq!(attributes["stream"], "ops");
        assert_eq!(attributes["epoch"], EPOCH);
        assert_eq!(attributes["held_by"], json!([hold]));
    }
    assert_eq!(release_events.len(), 1);
    assert_eq!(release_events[0], released_at);
    assert_eq!(purge_events.len(), 1);
    assert!(
        purge_events[0] > release_events[0],
        "purged before the release"
    );
    drop(tmp);
}
