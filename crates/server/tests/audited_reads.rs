//! Reads while the disk fails: every read that returns content
//! (`GET /v1/events/{i}`, `GET /v1/export`, `GET /v1/query`) first makes its
//! own record (`event.read`, `events.exported`, `events.queried`) durable.
//! When the fdatasync of that record fails, the read answers 503
//! `log_unavailable` and not one byte of the content leaves; the writer
//! stays stopped, so later reads are refused the same way, even once the
//! disk works again; a restart reads the content back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use stele_server::tokens::Role;
use stele_store::fileio::{fdatasync_attempts, set_fdatasync_failing};

/// The three ways content leaves the server.
#[derive(Clone, Copy, Debug)]
enum Read {
    Event,
    Export,
    Query,
}

impl Read {
    fn path(self, index: u64) -> String {
        match self {
            Read::Event => format!("/v1/events/{index}"),
            Read::Export => format!("/v1/export?stream=default&from={index}"),
            Read::Query => format!("/v1/query?stream=default&from={index}&actor=alice"),
        }
    }
}

async fn read(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    kind: Read,
    index: u64,
) -> Resp {
    send(client.get(server.url(&kind.path(index))).bearer_auth(token)).await
}

/// One event holding `marker`, read once while the disk works (the marker
/// is in the answer), then read while every fdatasync fails: 503, and the
/// marker nowhere in the answer.
async fn a_read_that_cannot_be_recorded_returns_nothing(first: Read) {
    let mut server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("app", &[Role::writer()]);
    let reader = server.token("auditor", &[Role::reader()]);
    let marker = format!("content-that-must-not-leave-{first:?}");
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        &json!({"actor": "alice", "action": "deploy", "attributes": {"note": marker}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let index = r.json["receipts"][0]["index"].as_u64().unwrap();

    // While the disk works, each kind of read returns the content (so its
    // absence below means something), and a checkpoint covers the entry
    // (so the event read below needs no new one).
    for kind in [Read::Event, Read::Export, Read::Query] {
        let r = read(&server, &client, &reader, kind, index).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.text);
        assert!(r.text.contains(&marker), "{kind:?}: {}", r.text);
    }
    server.wait_checkpoint(&client, index + 1).await;

    // The disk fails: the read's own record cannot be made durable, so the
    // read is refused and the content stays in.
    set_fdatasync_failing(&server.data, true);
    let r = read(&server, &client, &reader, first, index).await;
    assert_error(&r, 503, "log_unavailable");
    assert!(
        !r.text.contains(&marker),
        "{first:?} returned content whose read was not recorded: {}",
        r.text
    );
    assert!(
        fdatasync_attempts(&server.data) >= 1,
        "{first:?} was refused without trying to record the read"
    );

    // The writer has stopped: every kind of read is refused, also once the
    // disk works again, and nothing is retried.
    let attempts = fdatasync_attempts(&server.data);
    set_fdatasync_failing(&server.data, false);
    for kind in [Read::Event, Read::Export, Read::Query] {
        let r = read(&server, &client, &reader, kind, index).await;
        assert_error(&r, 503, "log_unavailable");
        assert!(!r.text.contains(&marker), "{kind:?}: {}", r.text);
    }
    assert_eq!(
        fdatasync_attempts(&server.data),
        attempts,
        "a failed fdatasync was retried"
    );
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 503, "{}", r.text);

    // A restart recovers: the event and its content were never lost.
    drop(client);
    let task = server.begin_stop();
    tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .expect("serve() returned within 20 s")
        .expect("serve() did not panic")
        .ok();
    let tmp = std::mem::replace(&mut server.tmp, tempfile::tempdir().unwrap());
    let vkey = server.verifier_key.clone();
    drop(server);
    let server = start_in(tmp, vkey, |_| {}).await;
    let client = server.client();
    let reader = server.token("auditor-2", &[Role::reader()]);
    let r = read(&server, &client, &reader, first, index).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(&marker), "{}", r.text);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_read_that_cannot_be_recorded_returns_nothing() {
    a_read_that_cannot_be_recorded_returns_nothing(Read::Event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_cannot_be_recorded_returns_nothing() {
    a_read_that_cannot_be_recorded_returns_nothing(Read::Export).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_cannot_be_recorded_returns_nothing() {
    a_read_that_cannot_be_recorded_returns_nothing(Read::Query).await;
}
