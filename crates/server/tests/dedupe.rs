//! Retries are stored once, whatever happens between them: the same
//! Kubernetes audit events (auditID and stage) sent before and after a
//! server restart, and the same request sent at the same moment by several
//! clients, both on `POST /v1/events` (events with a client `id`) and on
//! `POST /v1/ingest/kubernetes`. Every copy gets the original's receipt
//! (one of them without `duplicate`, the others with it), and the log holds
//! each event exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_server::tokens::Role;

fn eventlist() -> Vec<u8> {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../ingest/tests/data/eventlist.json");
    std::fs::read(path).unwrap()
}

fn receipts(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["receipts"].as_array().unwrap().clone()
}

/// How many times each client id of `writer`'s events is stored in a
/// stopped server's log.
fn stored_ids(data: &std::path::Path, writer: &str) -> BTreeMap<String, usize> {
    let log = open_log(data);
    let mut ids = BTreeMap::new();
    for index in 0..log.reader().size() {
        let envelope = log.reader().get(EntryIndex(index)).unwrap().envelope;
        if envelope.writer == writer {
            let id = envelope
                .event
                .id
                .clone()
                .expect("every test event has an id");
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// Checks that every request of `answers` got the same receipts, position
/// by position, with exactly one copy of each not marked `duplicate`.
fn one_original_each(answers: &[Vec<Value>]) {
    let count = answers[0].len();
    for position in 0..count {
        let copies: Vec<&Value> = answers.iter().map(|a| &a[position]).collect();
        for copy in &copies {
            for key in ["index", "id", "stream", "commitment", "salt"] {
                assert_eq!(
                    copy[key], copies[0][key],
                    "{key} of event {position}: {copies:?}"
                );
            }
        }
        let originals = copies
            .iter()
            .filter(|c| c.get("duplicate").is_none())
            .count();
        assert_eq!(originals, 1, "event {position}: {copies:?}");
        assert!(
            copies
                .iter()
                .all(|c| c.get("duplicate").is_none() || c["duplicate"] == true),
            "{copies:?}"
        );
    }
}

/// Sends `body` from `clients` separate clients (each its own
/// connection) at the same moment; their receipts, in the order sent.
async fn concurrently(
    server: &TestServer,
    clients: usize,
    send_one: impl Fn(reqwest::Client) -> futures_like::BoxFuture + Send + Sync + 'static,
) -> Vec<Vec<Value>> {
    let send_one = Arc::new(send_one);
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = server.client_without_reuse();
        let start = start.clone();
        let send_one = send_one.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            send_one(client).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(receipts(&task.await.unwrap()));
    }
    answers
}

/// A boxed future of a response, without a dependency for it.
mod futures_like {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = super::Resp> + Send>>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_audit_events_are_stored_once_across_a_restart() {
    let server = start(|_| {}).await;
    let client = server.client();
    let webhook = server.token("kube-apiserver", &[Role::writer()]);
    let body = eventlist();
    let first = receipts(&post_list(&server, &client, &webhook, body.clone()).await);
    assert!(first.len() >= 5);
    assert!(first.iter().all(|r| r.get("duplicate").is_none()));
    drop(client);
    let vkey = server.verifier_key.clone();
    let tmp = server.stop().await;

    // After the restart the apiserver sends the same list again (it never
    // saw an answer, say), with the same token.
    let server = start_in(tmp, vkey, |_| {}).await;
    let client = server.client();
    let again = receipts(&post_list(&server, &client, &webhook, body.clone()).await);
    assert_eq!(again.len(), first.len());
    for (original, retry) in first.iter().zip(&again) {
        assert_eq!(retry["duplicate"], true, "{retry}");
        for key in ["index", "id", "stream", "commitment", "salt"] {
            assert_eq!(retry[key], original[key], "{key}: {retry} vs {original}");
        }
    }
    let admin = server.token("admin", &[Role::admin()]);
    verify_receipt(&server, &client, &admin, &again[0]).await;
    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;

    let stored = stored_ids(&data, "kube-apiserver");
    assert_eq!(stored.len(), first.len(), "{stored:?}");
    assert!(
        stored.values().all(|&n| n == 1),
        "stored more than once: {stored:?}"
    );
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_sent_concurrently_are_stored_once() {
    let server = start(|_| {}).await;
    let writer = server.token("retrier", &[Role::writer()]);
    let url = server.url("/v1/events");
    // Requests large enough for the writer to begin one batch while the
    // one before it is still being made durable, if it ever would with
    // client ids in it.
    const ROUNDS: usize = 10;
    const CLIENTS: usize = 8;
    const EVENTS: usize = 100;
    for round in 0..ROUNDS {
        let body: Vec<Value> = (0..EVENTS)
            .map(|n| json!({"actor": "alice", "action": "pay", "id": format!("r{round}-order-{n}"), "attributes": {"n": n}}))
            .collect();
        let body = Arc::new(Value::Array(body));
        let (url, writer) = (url.clone(), writer.clone());
        let answers = concurrently(&server, CLIENTS, move |client| {
            let (url, writer, body) = (url.clone(), writer.clone(), body.clone());
            Box::pin(async move { post_json(&client, &url, Some(&writer), &body).await })
        })
        .await;
        assert_eq!(answers.len(), CLIENTS);
        assert!(answers.iter().all(|a| a.len() == EVENTS));
        one_original_each(&answers);
    }
    let data = server.data.clone();
    let tmp = server.stop().await;
    let stored = stored_ids(&data, "retrier");
    assert_eq!(stored.len(), ROUNDS * EVENTS);
    assert!(
        stored.values().all(|&n| n == 1),
        "stored more than once: {stored:?}"
    );
    drop(tmp);
}

/// The shipped EventList with every auditID made unique to `round`.
fn eventlist_of_round(round: usize) -> Vec<u8> {
    let mut list: Value = serde_json::from_slice(&eventlist()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        let audit_id = item["auditID"].as_str().unwrap().to_string();
        item["auditID"] = Value::from(format!("round-{round}-{audit_id}"));
    }
    serde_json::to_vec(&list).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_retries_sent_concurrently_are_stored_once() {
    let server = start(|_| {}).await;
    let webhook = server.token("kube-apiserver", &[Role::writer()]);
    const ROUNDS: usize = 10;
    const CLIENTS: usize = 8;
    let mut items = 0;
    for round in 0..ROUNDS {
        let body = Arc::new(eventlist_of_round(round));
        let (url, token) = (server.url("/v1/ingest/kubernetes"), webhook.clone());
        let answers = concurrently(&server, CLIENTS, move |client| {
            let (url, token, body) = (url.clone(), token.clone(), body.clone());
            Box::pin(async move {
                post_raw(
                    &client,
                    &url,
                    Some(&token),
                    Some("application/json"),
                    body.to_vec(),
                )
                .await
            })
        })
        .await;
        assert_eq!(answers.len(), CLIENTS);
        one_original_each(&answers);
        items += answers[0].len();
    }
    let data = server.data.clone();
    let tmp = server.stop().await;
    let stored = stored_ids(&data, "kube-apiserver");
    assert_eq!(stored.len(), items, "{stored:?}");
    assert!(
        stored.values().all(|&n| n == 1),
        "stored more than once: {stored:?}"
    );
    drop(tmp);
}
