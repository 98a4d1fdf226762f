#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Out of file descriptors, the accept loop backs off instead of spinning,
//! and accepts the waiting connections once descriptors are free again.
//!
//! The test lowers this process's RLIMIT_NOFILE, so it is alone in its
//! test binary: no other test may need a descriptor meanwhile.

mod common;

use std::os::fd::AsRawFd as _;
use std::time::Duration;

use common::*;
use rustix::process::{Resource, getrlimit, setrlimit};
use rustix::time::{ClockId, clock_gettime};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

fn cpu_seconds() -> f64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_back_off_and_recover() {
    let server = start(|_| {}).await;
    // The scheduler's first full verification opens files: let it finish.
    let state = server.data.join("audit/state.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let verified = || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|state| state["last_full_at"].is_i64())
    };
    while !verified() {
        assert!(std::time::Instant::now() < deadline, "no full verification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Client sockets made while descriptors are plentiful, connected once
    // they are not: the server's accept then fails with EMFILE.
    let sockets: Vec<tokio::net::TcpSocket> = (0..3)
        .map(|_| tokio::net::TcpSocket::new_v4().unwrap())
        .collect();
    let lowest_free = std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64;
    let before = getrlimit(Resource::Nofile);
    let mut lowered = before;
    lowered.current = Some(lowest_free);
    let cpu_before = cpu_seconds();
    setrlimit(Resource::Nofile, lowered).unwrap();
    let mut streams = Vec::new();
    for socket in sockets {
        streams.push(socket.connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    setrlimit(Resource::Nofile, before).unwrap();
    let cpu = cpu_seconds() - cpu_before;
    assert!(
        cpu < 0.3,
        "{cpu:.2} s of CPU in 1 s while accept failed: the accept loop spins"
    );

    // Descriptors are back: the waiting connections are served.
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&server.pki.ca.der));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(name, streams.remove(0)),
    )
    .await
    .expect("the waiting connection is accepted")
    .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_http1_response(&mut tls, Duration::from_secs(5)).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
    drop(tls);
    drop(streams);
    server.stop().await;
}
