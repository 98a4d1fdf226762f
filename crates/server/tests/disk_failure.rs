//! A disk that fails an fdatasync: the request being committed gets 503
//! `log_unavailable` (never a receipt), the writer stops for good (later
//! requests get the same 503 without another fdatasync, even once the disk
//! works again), `/readyz` says so, and a restart recovers with every
//! acknowledged event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use stele_server::tokens::Role;
use stele_store::fileio::{fdatasync_attempts, set_fdatasync_failing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_stops_the_writer_until_restart() {
    let mut server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let url = server.url("/v1/events");
    let mut acknowledged = Vec::new();
    for n in 0..3 {
        let body = json!({"actor": format!("u{n}"), "action": "act", "id": format!("e{n}")});
        let r = post_json(&client, &url, Some(&writer), &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        acknowledged.push(r.json["receipts"][0].clone());
    }

    set_fdatasync_failing(&server.data, true);
    let body = json!({"actor": "lost", "action": "act", "id": "never-acknowledged"});
    let r = post_json(&client, &url, Some(&writer), &body).await;
    assert_error(&r, 503, "log_unavailable");
    assert_eq!(r.headers.get("retry-after").unwrap(), "30");
    assert!(r.text.contains("fdatasync"), "{}", r.text);
    let attempts = fdatasync_attempts(&server.data);

    // The disk works again; the writer still does not.
    set_fdatasync_failing(&server.data, false);
    for n in 0..3 {
        let body = json!({"actor": format!("later{n}"), "action": "act"});
        let r = post_json(&client, &url, Some(&writer), &body).await;
        assert_error(&r, 503, "log_unavailable");
    }
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("not ready"), "{}", r.text);
    let r = send(client.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        fdatasync_attempts(&server.data),
        attempts,
        "a failed fdatasync was retried"
    );

    // Shutdown still completes (it does not wait on the stopped writer).
    let task = server.begin_stop();
    let stopped = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("serve() returned within 20 s")
        .expect("serve() did not panic");
    drop(stopped);
    let tmp = std::mem::replace(&mut server.tmp, tempfile::tempdir().unwrap());
    let vkey = server.verifier_key.clone();
    drop(server);

    // A restart recovers the log: every acknowledged event reads back, and
    // appends work again.
    let server = start_in(tmp, vkey, |_| {}).await;
    let client = server.client();
    let reader = server.token("auditor", &[Role::reader()]);
    let writer = server.token("app", &[Role::writer()]);
    for receipt in &acknowledged {
        let index = receipt["index"].as_u64().unwrap();
        let r = send(
            client
                .get(server.url(&format!("/v1/events/{index}")))
                .bearer_auth(&reader),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(receipt["id"].is_string(), "{receipt}");
        assert_eq!(r.json["event"]["id"], receipt["id"], "{}", r.text);
    }
    let index = server.probe(&client, &writer).await;
    assert!(index >= 3, "{index}");
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    server.stop().await;
}
