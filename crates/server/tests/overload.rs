#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Overload: with a one-request append queue, a burst of concurrent
//! requests gets only 200s and 503s with Retry-After, every 200's receipts
//! are in the log, and a 503'd request appended nothing.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{Value, json};
use stele_server::tokens::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after() {
    let server = start(|config| {
        config.limits.queue_depth = 1;
    })
    .await;
    let writer = server.token("burst", &[Role::writer()]);
    let url = server.url("/v1/events");
    let clients: Vec<reqwest::Client> = (0..4).map(|_| server.client()).collect();
    let mut tasks = Vec::new();
    for n in 0..96usize {
        let client = clients[n % clients.len()].clone();
        let url = url.clone();
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let body: Vec<Value> = (0..20)
                .map(|k| json!({"actor": format!("r{n}"), "action": format!("e{k}")}))
                .collect();
            post_json(&client, &url, Some(&writer), &Value::Array(body)).await
        }));
    }
    let mut accepted = Vec::new();
    let mut overloaded = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => {
                let receipts = r.json["receipts"].as_array().unwrap().clone();
                assert_eq!(receipts.len(), 20);
                accepted.extend(receipts);
            }
            503 => {
                overloaded += 1;
                let retry = r
                    .headers
                    .get("retry-after")
                    .expect("a 503 carries Retry-After")
                    .to_str()
                    .unwrap();
                assert!(retry.parse::<u32>().unwrap() >= 1, "Retry-After: {retry}");
                assert_eq!(r.json["error"]["code"], "overloaded", "{}", r.text);
            }
            other => panic!("unexpected status {other}: {}", r.text),
        }
    }
    eprintln!(
        "{} accepted, {overloaded} refused with 503",
        accepted.len() / 20
    );
    assert!(!accepted.is_empty());

    // Once the burst is over the server accepts again.
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
        let stored = log.get(index).unwrap();
        assert_eq!(stored.commitment.to_vec(), b64(&receipt["commitment"]));
        assert_eq!(stored.envelope.id, receipt["id"].as_str().unwrap());
    }
    // Besides them, only the two token grants (admin, burst).
    assert_eq!(
        log.size(),
        accepted.len() as u64 + 2,
        "refused (503) requests must append nothing"
    );
}
