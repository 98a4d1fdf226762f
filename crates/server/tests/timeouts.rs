#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Connection time limits over real sockets: a client that connects and
//! then sends nothing, or only part of a request head, is disconnected
//! after the header timeout and its connection slot freed; a stalled body
//! is answered 408 with a JSON error; clients that keep their connections
//! busy, or come back after an idle one was closed, are unaffected.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use stele_server::tokens::Role;
use tokio::io::AsyncWriteExt as _;

/// Short limits: one second for the TLS handshake and request heads, one
/// for bodies, two of idleness.
fn short_timeouts(config: &mut stele_server::Config) {
    config.timeouts.header_read_seconds = 1;
    config.timeouts.body_read_seconds = 1;
    config.timeouts.idle_seconds = 2;
}

/// Asserts that the server closes `stream` between `at_least` and
/// `at_most` after `since`.
async fn assert_closed_in<S>(stream: &mut S, since: Instant, at_least: Duration, at_most: Duration)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let (_, closed) = read_until_closed(stream, at_most + Duration::from_secs(2)).await;
    let elapsed = since.elapsed();
    assert!(closed, "the connection was not closed");
    assert!(
        elapsed >= at_least && elapsed <= at_most,
        "closed after {elapsed:?}, expected {at_least:?}..{at_most:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_partial_clients_are_disconnected() {
    let server = start(|config| {
        short_timeouts(config);
        config.limits.max_connections = 2;
    })
    .await;

    // TLS done, then nothing: closed after the header timeout.
    let since = Instant::now();
    let mut silent = raw_tls(&server).await;
    // Part of a request head, then nothing: hyper's header timeout.
    let mut partial = raw_tls(&server).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    partial.flush().await.unwrap();

    // Both slots are held: a third connection is closed at once.
    let client = server.client();
    assert!(
        client.get(server.url("/healthz")).send().await.is_err(),
        "over max_connections, a connection must be refused"
    );

    let window = (Duration::from_millis(900), Duration::from_secs(4));
    assert_closed_in(&mut silent, since, window.0, window.1).await;
    assert_closed_in(&mut partial, since, window.0, window.1).await;

    // The slots are free again.
    let r = send(client.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200);
    drop(client);

    // TCP only, not even a TLS handshake: closed after the header timeout.
    let since = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_closed_in(&mut tcp, since, window.0, window.1).await;

    // A handshake, one request, then silence: the kept-alive HTTP/1
    // connection is closed once its next head is overdue.
    let mut kept = raw_tls(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_http1_response(&mut kept, Duration::from_secs(5)).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
    let since = Instant::now();
    assert_closed_in(&mut kept, since, window.0, window.1).await;

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_json() {
    let server = start(short_timeouts).await;
    let writer = server.token("slow", &[Role::writer()]);
    let client = server.client();
    let before = log_size(&server, &client).await;

    let mut slow = raw_tls(&server).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {writer}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"actor\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    let since = Instant::now();
    let (status, head, body) = read_http1_response(&mut slow, Duration::from_secs(5)).await;
    let elapsed = since.elapsed();
    assert_eq!(status, 408, "{head}");
    assert!(elapsed >= Duration::from_millis(900), "after {elapsed:?}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "body_timeout", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("1 s"));
    // The connection is not kept: the rest of the body will never be read.
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "the connection must close after a 408");

    // Nothing was appended, and the server serves as before.
    assert_eq!(log_size(&server, &client).await, before);
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        &json!({"actor": "a", "action": "b"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_returning_clients_are_unaffected() {
    let server = start(short_timeouts).await;
    let writer = server.token("steady", &[Role::writer()]);

    // HTTP/2 (reqwest over TLS with ALPN): requests every 300 ms for
    // longer than every timeout, on one connection.
    let client = server.client();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let r = post_json(
            &client,
            &server.url("/v1/events"),
            Some(&writer),
            &json!({"actor": "steady", "action": format!("a{n}")}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Idle for longer than the idle timeout: the server closed the
    // connection (gracefully), and the client's next request works.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = send(client.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200);

    // HTTP/1.1 keep-alive: requests well within the header timeout of each
    // other share one connection for longer than every timeout.
    let mut kept = raw_tls(&server).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let (status, _, body) = read_http1_response(&mut kept, Duration::from_secs(5)).await;
        assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(kept);
    drop(client);
    server.stop().await;
}
