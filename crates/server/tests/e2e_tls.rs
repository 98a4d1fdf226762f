#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! TLS end to end: HTTP/2 and HTTP/1.1 over TLS, no plain HTTP on the TLS
//! port, certificate reload without restart (a broken file never replaces
//! a working certificate), and the refusal of plain HTTP on non-loopback
//! addresses.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;
use stele_server::config::ClientCert;
use stele_server::tokens::Role;

/// The certificate the server presents to a fresh connection, or `None`
/// if the handshake fails.
async fn presented_cert(server: &TestServer) -> Option<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&server.pki.ca.der));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.as_ref().to_vec())
}

/// Replaces a file atomically (write aside, rename), as deployment tools do.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Polls new connections until the server presents `want`.
async fn wait_for_cert(server: &TestServer, want: &[u8], what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if presented_cert(server).await.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not switch to {what} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the TLS reloader has done so far, from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reloads {
    /// Changes of the files that loaded and replaced the configuration.
    loaded: u64,
    /// Changes of the files that did not load (the previous one stayed).
    failed: u64,
}

async fn reloads(server: &TestServer) -> Reloads {
    let r = send(server.client().get(server.url("/metrics"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let value = |result: &str| -> u64 {
        let name = format!("stele_tls_reloads_total{{result=\"{result}\"}} ");
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", r.text))
            .parse()
            .unwrap()
    };
    Reloads {
        loaded: value("loaded"),
        failed: value("failed"),
    }
}

/// Waits until the reloader has seen one more change of the files than
/// `before` and has refused it: the change was looked at, and did not
/// load. Returns the new counts.
async fn wait_for_failed_reload(server: &TestServer, before: Reloads, what: &str) -> Reloads {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = reloads(server).await;
        if now != before {
            assert_eq!(
                now,
                Reloads {
                    failed: before.failed + 1,
                    ..before
                },
                "{what}: the reloader must refuse it, once"
            );
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reloader did not look at {what} within 30 s ({now:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_without_restart() {
    let server = start(|_| {}).await;
    let a = server.pki.server.der.clone();
    assert_eq!(presented_cert(&server).await.as_deref(), Some(&a[..]));
    assert_eq!(
        reloads(&server).await,
        Reloads {
            loaded: 0,
            failed: 0
        }
    );

    // Certificate B: same CA, different serial and subject. The key and
    // the certificate are two files, replaced one after the other, so the
    // reloader may see the new key with the old certificate first (and
    // refuse that pair); it loads B exactly once.
    let b = server.pki.ca.server("stele server B", 1001);
    assert_ne!(a, b.der);
    replace(&server.pki.key_path, &b.key_pem);
    replace(&server.pki.cert_path, &b.cert_pem);
    wait_for_cert(&server, &b.der, "certificate B").await;
    let after_b = reloads(&server).await;
    assert_eq!(after_b.loaded, 1, "{after_b:?}");
    assert!(after_b.failed <= 1, "{after_b:?}");
    // Ordinary clients connect to the reloaded server.
    let client = server.client();
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&server.admin_token),
        &json!({"actor": "a", "action": "after-reload"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(client);

    // A broken certificate file never replaces the working one: once the
    // reloader has looked at it (and counted its refusal), B is still
    // served.
    replace(
        &server.pki.cert_path,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    let after_broken = wait_for_failed_reload(&server, after_b, "a broken certificate file").await;
    assert_eq!(
        presented_cert(&server).await.as_deref(),
        Some(&b.der[..]),
        "a broken certificate file must not replace the working configuration"
    );
    // Neither does a certificate that does not match the key.
    let c = server.pki.ca.server("stele server C", 1002);
    replace(&server.pki.cert_path, &c.cert_pem);
    let after_mismatch =
        wait_for_failed_reload(&server, after_broken, "a certificate without its key").await;
    assert_eq!(
        presented_cert(&server).await.as_deref(),
        Some(&b.der[..]),
        "a certificate without its key must not replace the working configuration"
    );
    // Once the key arrives too, C is served.
    replace(&server.pki.key_path, &c.key_pem);
    wait_for_cert(&server, &c.der, "certificate C").await;
    assert_eq!(
        reloads(&server).await,
        Reloads {
            loaded: 2,
            ..after_mismatch
        }
    );

    server.stop().await;
}

/// Whether a client holding `identity` completes a request (the TLS
/// handshake, client certificate included) on a new connection.
async fn accepted(server: &TestServer, identity: &Identity) -> bool {
    let client = server.client_with(identity);
    client.get(server.url("/healthz")).send().await.is_ok()
}

/// Polls new connections until `identity` is accepted (or refused).
async fn wait_for_client(server: &TestServer, identity: &Identity, want: bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while accepted(server, identity).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not switch to {what} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_bundle_reload_without_restart() {
    let server = start(|_| {}).await;
    let foreign = &server.pki.foreign_client;
    assert!(accepted(&server, &server.pki.writer_client).await);
    assert!(
        !accepted(&server, foreign).await,
        "an unknown CA is refused"
    );

    // The bundle gains the other CA: its client certificates complete the
    // handshake (and, mapped to no principal, authenticate as nobody).
    let bundle = format!("{}{}", server.pki.ca.pem, server.pki.other_ca.pem);
    replace(&server.pki.ca_path, &bundle);
    wait_for_client(&server, foreign, true, "the two-CA bundle").await;
    let two_cas = reloads(&server).await;
    assert_eq!(
        two_cas,
        Reloads {
            loaded: 1,
            failed: 0
        }
    );
    let r = send(
        server
            .client_with(foreign)
            .post(server.url("/v1/events"))
            .json(&json!({"actor": "a", "action": "b"})),
    )
    .await;
    assert_error(&r, 401, "unauthenticated");
    assert!(accepted(&server, &server.pki.writer_client).await);

    // A broken bundle keeps the working one (once the reloader has looked
    // at it); removing the CA again refuses its certificates again.
    replace(
        &server.pki.ca_path,
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    );
    let broken = wait_for_failed_reload(&server, two_cas, "a broken CA bundle").await;
    assert!(
        accepted(&server, foreign).await,
        "a broken bundle replaced the working one"
    );
    replace(&server.pki.ca_path, &server.pki.ca.pem);
    wait_for_client(&server, foreign, false, "the one-CA bundle").await;
    assert_eq!(
        reloads(&server).await,
        Reloads {
            loaded: 2,
            ..broken
        }
    );
    assert!(accepted(&server, &server.pki.writer_client).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_http1_and_no_plain_http_on_the_tls_port() {
    let server = start(|_| {}).await;
    let client = server.client();
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "ok\n");
    drop(client);

    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.pki.ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", server.addr)
        .http1_only()
        .build()
        .unwrap();
    let writer = server.token("w", &[Role::writer()]);
    let response = http1
        .post(server.url("/v1/events"))
        .bearer_auth(&writer)
        .json(&json!({"actor": "a", "action": "h1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    drop(response);
    drop(http1);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let result = plain
        .get(format!("http://127.0.0.1:{}/healthz", server.addr.port()))
        .send()
        .await;
    assert!(
        result.as_ref().map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP must not be served on a TLS listener"
    );
    drop(plain);

    // A client that does not trust the CA refuses the server.
    let stranger = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(server.pki.other_ca.pem.as_bytes()).unwrap(),
        ])
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    assert!(stranger.get(server.url("/healthz")).send().await.is_err());
    drop(stranger);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_non_loopback_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let refused = stele_server::Config {
        data: data.clone(),
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        ..Default::default()
    };
    let error = stele_server::bind(refused.clone(), None).await.unwrap_err();
    let lower = error.to_lowercase();
    assert!(
        lower.contains("tls"),
        "the refusal must mention TLS: {error}"
    );
    assert!(
        lower.contains("allow_plain_http"),
        "and how to force it: {error}"
    );
    assert!(
        !data.exists(),
        "a refused configuration must create nothing"
    );
    // One non-loopback address among loopback ones is enough to refuse.
    let mixed = stele_server::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap(), "0.0.0.0:0".parse().unwrap()],
        ..refused.clone()
    };
    assert!(stele_server::bind(mixed, None).await.is_err());

    // Forced: it binds and serves.
    let forced = stele_server::Config {
        allow_plain_http: true,
        publish_interval_ms: 50,
        ..refused
    };
    let bound = stele_server::bind(forced, None).await.unwrap();
    let port = bound.addresses()[0].port();
    assert!(bound.addresses()[0].ip().is_unspecified());
    let token = bound.first_start.clone().unwrap().admin_token;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(stele_server::serve(bound, async move {
        rx.await.ok();
    }));
    let client = reqwest::Client::new();
    let r = send(
        client
            .post(format!("http://127.0.0.1:{port}/v1/events"))
            .bearer_auth(&token)
            .json(&json!({"actor": "a", "action": "b"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(client);
    tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), serve)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_tls_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let base = base_config(tmp.path(), &pki);

    // Client certificates without a CA to verify them.
    let mut config = base.clone();
    config.tls.as_mut().unwrap().client_ca = None;
    let error = stele_server::bind(config, None).await.unwrap_err();
    assert!(error.contains("client_ca"), "{error}");

    // A fingerprint that is not lowercase hex SHA-256.
    let mut config = base.clone();
    config.client_certs.push(ClientCert {
        sha256: pki.unmapped_client.fingerprint.to_uppercase(),
        principal: "x".into(),
        roles: vec![Role::writer()],
    });
    assert!(stele_server::bind(config, None).await.is_err());

    // A certificate file that does not load fails at start, not later.
    let mut config = base.clone();
    config.data = tmp.path().join("data-2");
    let broken = tmp.path().join("broken.pem");
    std::fs::write(&broken, "not a certificate").unwrap();
    config.tls.as_mut().unwrap().cert = broken;
    let bound = stele_server::bind(config, None).await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        stele_server::serve(bound, std::future::pending::<()>()),
    )
    .await
    .expect("serve() with a broken certificate returns at once");
    assert!(result.is_err(), "serve() must refuse a broken certificate");
}
