#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Overload: with a one-request append queue and the writer kept from the
//! log, every request beyond what the queue holds is refused at once with
//! 503 `overloaded` and `Retry-After: 1`; an unforced burst gets only 200s
//! and such 503s; every 200's receipts are in the log, and a 503'd request
//! appended nothing.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_server::tokens::Role;

/// Twenty events from request `n`.
fn body(n: usize) -> Value {
    Value::Array(
        (0..20)
            .map(|k| json!({"actor": format!("r{n}"), "action": format!("e{k}")}))
            .collect(),
    )
}

/// Checks what a client sees when its request is refused for overload.
fn assert_overloaded(r: &Resp) {
    assert_error(r, 503, "overloaded");
    let retry = r
        .headers
        .get("retry-after")
        .expect("a 503 carries Retry-After")
        .to_str()
        .unwrap();
    assert_eq!(retry, "1", "Retry-After of an overload refusal");
}

/// A metric of the form `name value` in /metrics, 0 when absent.
async fn metric(server: &TestServer, client: &reqwest::Client, name: &str) -> u64 {
    let r = send(client.get(server.url("/metrics"))).await;
    assert_eq!(r.status, 200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after() {
    let server = start(|config| {
        config.limits.queue_depth = 1;
    })
    .await;
    let writer = server.token("burst", &[Role::writer()]);
    let url = server.url("/v1/events");
    let clients: Vec<reqwest::Client> = (0..4).map(|_| server.client()).collect();
    let mut accepted: Vec<Value> = Vec::new();
    let mut refused = 0u64;

    // One request first: the server looks the token up in the log once and
    // caches it, so that later requests never need the log before the
    // writer does.
    let r = post_json(&clients[0], &url, Some(&writer), &body(0)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    accepted.extend(r.json["receipts"].as_array().unwrap().iter().cloned());

    // Keep the writer from the log, as a long read or a slow disk would.
    // Meanwhile it can hold at most three requests: one it took, one it
    // took along from the queue, one waiting in the queue (of depth 1).
    // Every other request must be refused at once, not wait.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let log = server.served_log();
    let holder = std::thread::spawn(move || {
        let guard = stele_log::sequencer::lock_log(&log);
        held_tx.send(()).unwrap();
        released.recv().unwrap();
        drop(guard);
    });
    held.await.unwrap();
    const HELD_REQUESTS: usize = 8;
    const MOST_TAKEN: usize = 3;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for n in 1..=HELD_REQUESTS {
        let client = clients[n % clients.len()].clone();
        let (url, writer, done_tx) = (url.clone(), writer.clone(), done_tx.clone());
        tokio::spawn(async move {
            let r = post_json(&client, &url, Some(&writer), &body(n)).await;
            done_tx.send(r).unwrap();
        });
    }
    drop(done_tx);
    // Nothing can become durable while the writer cannot reach the log:
    // every answer that comes now is a refusal.
    for _ in 0..HELD_REQUESTS - MOST_TAKEN {
        let r = tokio::time::timeout(Duration::from_secs(30), done.recv())
            .await
            .expect("requests beyond the queue must be refused at once, not wait for the writer")
            .unwrap();
        assert_overloaded(&r);
        refused += 1;
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    while let Some(r) = done.recv().await {
        match r.status {
            200 => accepted.extend(r.json["receipts"].as_array().unwrap().iter().cloned()),
            _ => {
                assert_overloaded(&r);
                refused += 1;
            }
        }
    }
    assert!(refused >= (HELD_REQUESTS - MOST_TAKEN) as u64);

    // An unforced burst: only 200s and 503s.
    let mut tasks = Vec::new();
    for n in 100..196usize {
        let client = clients[n % clients.len()].clone();
        let (url, writer) = (url.clone(), writer.clone());
        tasks.push(tokio::spawn(async move {
            post_json(&client, &url, Some(&writer), &body(n)).await
        }));
    }
    let mut burst_refused = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => {
                let receipts = r.json["receipts"].as_array().unwrap();
                assert_eq!(receipts.len(), 20);
                accepted.extend(receipts.iter().cloned());
            }
            _ => {
                assert_overloaded(&r);
                burst_refused += 1;
            }
        }
    }
    refused += burst_refused;
    eprintln!(
        "{} requests accepted, {refused} refused with 503 ({burst_refused} in the unforced burst)",
        accepted.len() / 20
    );

    // Once the queue drains the server accepts again, and it counted every
    // refusal it sent.
    let client = server.client();
    let r = post_json(
        &client,
        &url,
        Some(&writer),
        &json!({"actor": "x", "action": "y"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    accepted.push(r.json["receipts"][0].clone());
    assert_eq!(
        metric(
            &server,
            &client,
            "stele_http_responses_total{status=\"503\"}"
        )
        .await,
        refused
    );
    assert_eq!(
        metric(&server, &client, "stele_errors_total{category=\"append\"}").await,
        refused
    );
    assert_eq!(metric(&server, &client, "stele_queue_depth").await, 0);
    drop(client);
    drop(clients);
    let data = server.data.clone();
    let _tmp = server.stop().await;

    // Every acknowledged receipt is in the log; nothing else is.
    let log = open_log(&data);
    let mut indexes = HashSet::new();
    for receipt in &accepted {
        let index = receipt["index"].as_u64().unwrap();
        assert!(indexes.insert(index), "index {index} given twice");
        let stored = log.reader().get(EntryIndex(index)).unwrap();
        assert_eq!(stored.commitment.to_vec(), b64(&receipt["commitment"]));
        assert_eq!(stored.salt.to_vec(), b64(&receipt["salt"]));
        assert_eq!(stored.envelope.id, receipt["id"].as_str().unwrap());
    }
    // Besides them, only the two token grants (admin, burst).
    assert_eq!(
        log.reader().size(),
        accepted.len() as u64 + 2,
        "refused (503) requests must append nothing"
    );
}
