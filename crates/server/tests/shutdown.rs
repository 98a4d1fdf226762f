#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Graceful shutdown: appends racing the shutdown signal are either
//! refused or durable (in the reopened log and under the final checkpoint),
//! every client that keeps sending is refused once the server stops, and
//! `serve` returns promptly even while clients keep connections open.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;

/// How a worker's appends ended once the server stopped.
#[derive(Debug)]
enum Refusal {
    /// Answered 503 `shutting_down` (the writer had stopped).
    ShuttingDown,
    /// The request could not be sent or was not answered: the server no
    /// longer accepts connections, or closed this one (HTTP/2 GOAWAY)
    /// before taking the request.
    Connection(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_appends_are_durable_after_shutdown() {
    const WORKERS: usize = 16;
    let mut server = start(|_| {}).await;
    let token = server.admin_token.clone();
    let url = server.url("/v1/events");
    let stopping = Arc::new(AtomicBool::new(false));
    let acknowledged_requests = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        // One client per worker, dropped when the worker ends, so that
        // connections close once the appends stop.
        let client = server.client();
        let url = url.clone();
        let token = token.clone();
        let stopping = stopping.clone();
        let acknowledged_requests = acknowledged_requests.clone();
        // Each worker appends until it is refused: the server must refuse
        // every one of them once it stops.
        tasks.push(tokio::spawn(async move {
            let mut ok: Vec<Value> = Vec::new();
            let mut after_stop = 0u32;
            for n in 0u32.. {
                if stopping.load(Ordering::SeqCst) {
                    after_stop += 1;
                }
                let body = json!([
                    {"actor": format!("w{worker}"), "action": "a", "id": format!("{worker}-{n}-a")},
                    {"actor": format!("w{worker}"), "action": "b"},
                ]);
                let response = match client.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(response) => response,
                    Err(e) => {
                        assert!(!e.is_timeout(), "worker {worker}: a request timed out: {e}");
                        return (ok, Refusal::Connection(format!("{e:?}")), after_stop);
                    }
                };
                let r = read_or_error(response)
                    .await
                    .unwrap_or_else(|| panic!("worker {worker}: a response was cut mid-body; in-flight requests must finish"));
                if r.status == 200 {
                    let receipts = r.json["receipts"].as_array().unwrap().clone();
                    assert_eq!(receipts.len(), 2);
                    ok.extend(receipts);
                    acknowledged_requests.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                // Refused while stopping: a 503 saying so, never another status.
                assert_error(&r, 503, "shutting_down");
                assert_eq!(
                    r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
                    Some("5")
                );
                return (ok, Refusal::ShuttingDown, after_stop);
            }
            unreachable!()
        }));
    }
    // Stop while appends are arriving: once the workers together have had
    // a few dozen requests acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged_requests.load(Ordering::SeqCst) < 3 * WORKERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "appends were not acknowledged before the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stopping.store(true, Ordering::SeqCst);
    let serve = server.begin_stop();
    let mut acknowledged = Vec::new();
    let mut refusals = Vec::new();
    for (worker, task) in tasks.into_iter().enumerate() {
        let (ok, refusal, after_stop) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap_or_else(|_| {
                panic!("worker {worker} was still being served 60 s after the shutdown signal")
            })
            .unwrap();
        acknowledged.extend(ok);
        refusals.push((worker, refusal, after_stop));
    }
    let result = tokio::time::timeout(Duration::from_secs(20), serve)
        .await
        .expect("serve() returns after shutdown")
        .unwrap();
    assert_eq!(result, Ok(()));
    // Every worker was refused (none was still being served: the wait
    // above would have failed).
    assert_eq!(refusals.len(), WORKERS);
    let answered_503 = refusals
        .iter()
        .filter(|(_, refusal, _)| matches!(refusal, Refusal::ShuttingDown))
        .count();
    let most_after_stop = refusals.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
    eprintln!(
        "{WORKERS} workers refused: {answered_503} by 503 shutting_down, {} by the connection \
         (first: {:?}); at most {most_after_stop} attempts after the signal",
        WORKERS - answered_503,
        refusals.iter().find_map(|(_, refusal, _)| match refusal {
            Refusal::Connection(e) => Some(e),
            Refusal::ShuttingDown => None,
        })
    );
    assert!(
        acknowledged.len() >= 2 * 3 * WORKERS,
        "{} receipts",
        acknowledged.len()
    );

    // Everything acknowledged is in the reopened log, exactly as receipted,
    // and the final checkpoint covers all of it.
    let log = open_log(&server.data);
    let max = acknowledged
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(log.reader().size() > max);
    assert_eq!(
        log.reader().published_size(),
        log.reader().size(),
        "the final checkpoint must cover every durable entry"
    );
    let mut seen = std::collections::HashSet::new();
    for receipt in &acknowledged {
        let index = receipt["index"].as_u64().unwrap();
        assert!(seen.insert(index), "index {index} receipted twice");
        let stored = log.reader().get(EntryIndex(index)).unwrap();
        assert_eq!(stored.commitment.to_vec(), b64(&receipt["commitment"]));
        assert_eq!(stored.salt.to_vec(), b64(&receipt["salt"]));
        assert_eq!(stored.envelope.id, receipt["id"].as_str().unwrap());
        let proof = log
            .reader()
            .inclusion_proof(EntryIndex(index), None)
            .unwrap();
        let verifier = server.verifier();
        let checkpoint = proof
            .verify(
                &stele_tlog::leaf_hash(&stored.commitment),
                &[&verifier],
                None,
            )
            .unwrap();
        assert_eq!(checkpoint.size, log.reader().size());
    }
    // The published checkpoint file on disk agrees.
    let note = std::fs::read(server.data.join("log").join("checkpoint")).unwrap();
    let verifier = server.verifier();
    let note = stele_tlog::open_note(&note, &[&verifier]).unwrap();
    let checkpoint = stele_tlog::Checkpoint::parse(&note.text).unwrap();
    assert_eq!(checkpoint.size, log.reader().size());
}

/// Reads a response, or `None` if the connection broke mid-body.
async fn read_or_error(response: reqwest::Response) -> Option<Resp> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.ok()?.to_vec();
    Some(Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        bytes,
    })
}

/// Connection time limits far beyond the wait of
/// [`assert_returns_despite_client`]: only the shutdown can close an idle
/// connection in time.
fn long_timeouts(timeouts: &mut stele_server::config::Timeouts) {
    timeouts.header_read_seconds = 120;
    timeouts.idle_seconds = 120;
}

/// A client that keeps an idle keep-alive connection (as every HTTP client
/// pool does) must not keep the server from stopping: shutdown closes idle
/// connections and lets only in-flight requests finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_keepalive_connections() {
    let mut server = start(|config| long_timeouts(&mut config.timeouts)).await;
    let client = server.client();
    let token = server.admin_token.clone();
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&token),
        &json!({"actor": "a", "action": "b"}),
    )
    .await;
    assert_eq!(r.status, 200);
    // The pooled connection stays open while `client` lives.
    let serve = server.begin_stop();
    assert_returns_despite_client(serve, client, "an idle HTTP/2 connection").await;
}

/// The same with plain HTTP/1.1 keep-alive (no TLS, loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_http1_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = stele_server::Config {
        data: tmp.path().join("data"),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        publish_interval_ms: 50,
        ..Default::default()
    };
    long_timeouts(&mut config.timeouts);
    let bound = stele_server::bind(config, None).await.unwrap();
    let addr = bound.addresses()[0];
    let token = bound.first_start.clone().unwrap().admin_token;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(stele_server::serve(bound, async move {
        rx.await.ok();
    }));
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let r = send(
        client
            .post(format!("http://{addr}/v1/events"))
            .bearer_auth(&token)
            .json(&json!({"actor": "a", "action": "b"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    tx.send(()).unwrap();
    assert_returns_despite_client(serve, client, "an idle HTTP/1.1 connection").await;
}

/// Waits for `serve` to return while `client` keeps its pooled connection
/// open. A server that waited for the client would hold on until the
/// shutdown grace period (30 s) ends, so returning within 20 s (a hang
/// guard, however busy the machine) shows it did not wait. On failure,
/// closes the client and says whether `serve` then returned (which shows
/// it was waiting for the client to hang up).
async fn assert_returns_despite_client(
    mut serve: tokio::task::JoinHandle<Result<(), String>>,
    client: reqwest::Client,
    what: &str,
) {
    match tokio::time::timeout(Duration::from_secs(20), &mut serve).await {
        Ok(result) => {
            drop(client);
            assert_eq!(result.unwrap(), Ok(()));
        }
        Err(_) => {
            drop(client);
            let after = tokio::time::timeout(Duration::from_secs(10), serve).await;
            panic!(
                "serve() did not return within 20 s of the shutdown signal while a client held {what}; \
                 after the client closed its connection, serve() {}",
                match after {
                    Ok(Ok(Ok(()))) => "returned Ok at once".to_string(),
                    Ok(other) => format!("returned {other:?}"),
                    Err(_) => "still had not returned 10 s later".to_string(),
                }
            );
        }
    }
}
