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

/// Longest wait for something the server must do within its (one or two
/// second) limits: a guard against a hang on a busy machine, not a bound
/// under test.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Asserts that the server closes `stream`, and not before `at_least` has
/// passed since `since`. `since` must be taken before the server's own
/// clock for that limit starts (before the connection is opened, or
/// before the request whose end starts it is sent): the server cannot have
/// closed earlier than its limit after that instant, however late the
/// test is scheduled. How much later the close comes is not asserted: on a
/// busy machine that is not the server's doing.
async fn assert_closed_not_before<S>(stream: &mut S, since: Instant, at_least: Duration)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let (_, closed) = read_until_closed(stream, HANG_GUARD).await;
    let elapsed = since.elapsed();
    assert!(
        closed,
        "the connection was not closed within {HANG_GUARD:?}"
    );
    assert!(
        elapsed >= at_least,
        "closed after {elapsed:?}, before the {at_least:?} limit"
    );
}

/// The header timeout is 1 s and idleness 60 s: a connection closed
/// within [`HANG_GUARD`] was closed by the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_partial_clients_are_disconnected() {
    let server = start(|config| {
        short_timeouts(config);
        config.timeouts.idle_seconds = 60;
        config.limits.max_connections = 2;
    })
    .await;
    let limit = Duration::from_secs(1);

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

    assert_closed_not_before(&mut silent, since, limit).await;
    assert_closed_not_before(&mut partial, since, limit).await;

    // The slots are free again.
    let r = send(client.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200);
    drop(client);

    // TCP only, not even a TLS handshake: closed after the header timeout.
    let since = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_closed_not_before(&mut tcp, since, limit).await;

    // A handshake, one request, then silence: the kept-alive HTTP/1
    // connection is closed once its next head is overdue. The server's
    // clock for that head starts once it has answered, so after `since`.
    let mut kept = raw_tls(&server).await;
    let since = Instant::now();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_http1_response(&mut kept, HANG_GUARD).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
    assert_closed_not_before(&mut kept, since, limit).await;

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
    let since = Instant::now();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    // The server's body deadline starts once it has read the head, after
    // `since`: the 408 cannot come before it.
    let (status, head, body) = read_http1_response(&mut slow, HANG_GUARD).await;
    let elapsed = since.elapsed();
    assert_eq!(status, 408, "{head}");
    assert!(elapsed >= Duration::from_secs(1), "after {elapsed:?}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "body_timeout", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("1 s"));
    // The connection is not kept: the rest of the body will never be read.
    let (_, closed) = read_until_closed(&mut slow, HANG_GUARD).await;
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

/// An HTTP/2 connection of the test's own (hyper over TLS, ALPN h2), so
/// that it sees what the server does to it: a request fails if the server
/// closed the connection, and `closed` ends when the server ends it. (An
/// HTTP client's pool would silently open a new connection instead.)
async fn http2_connection(
    server: &TestServer,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let mut config = (*rustls_client(&server.pki.ca.der)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_returning_clients_are_unaffected() {
    use http_body_util::BodyExt as _;
    // Requests come 300 ms apart: far within the limits even when the
    // machine is busy, for longer than each of them.
    let server = start(|config| {
        config.timeouts.header_read_seconds = 2;
        config.timeouts.body_read_seconds = 1;
        config.timeouts.idle_seconds = 3;
    })
    .await;
    let writer = server.token("steady", &[Role::writer()]);
    let idle = Duration::from_secs(3);

    // HTTP/2: requests for longer than every timeout, all on one
    // connection, which the server must keep open.
    let (mut sender, closed) = http2_connection(&server).await;
    let returning = server.client();
    let mut last_sent = Instant::now();
    for n in 0..14 {
        if n == 13 {
            // A client of a pool, idle from now on like this connection.
            let r = send(returning.get(server.url("/healthz"))).await;
            assert_eq!(r.status, 200);
        }
        let request = hyper::Request::post("https://localhost/v1/events")
            .header("authorization", format!("Bearer {writer}"))
            .header("content-type", "application/json")
            .body(json!({"actor": "steady", "action": format!("a{n}")}).to_string())
            .unwrap();
        last_sent = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|e| panic!("request {n}: the busy connection was closed: {e}"));
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Idle for longer than the idle timeout: the server closes the
    // connection, gracefully (GOAWAY, then the end of the connection), and
    // not before the idle limit after its last request.
    let ended = tokio::time::timeout(HANG_GUARD, closed)
        .await
        .expect("the idle HTTP/2 connection was not closed")
        .unwrap();
    assert!(
        ended.is_ok(),
        "the idle connection was not closed gracefully: {ended:?}"
    );
    assert!(
        last_sent.elapsed() >= idle,
        "closed {:?} after the last request, before the idle limit",
        last_sent.elapsed()
    );
    // A pooled client whose connection was closed the same way comes back
    // and is served.
    let r = send(returning.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200);

    // HTTP/1.1 keep-alive: requests well within the header timeout of each
    // other share one connection for longer than every timeout.
    let mut kept = raw_tls(&server).await;
    for _ in 0..12 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let (status, _, body) = read_http1_response(&mut kept, HANG_GUARD).await;
        assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(kept);
    drop(returning);
    server.stop().await;
}
