//! Client certificates the server must refuse under mTLS, each signed by
//! the configured client CA and even pinned in `client_certs`: one that
//! has expired, one not yet valid, and one whose extended key usage does
//! not include clientAuth. Each fails the TLS handshake with the alert
//! that names why (`certificate_expired` for both validity errors,
//! `unsupported_certificate` for the purpose), so no request on such a
//! connection is read, not even one with a valid bearer token. A valid
//! certificate of the same CA, and one with no extended key usage at all
//! (unrestricted, RFC 5280 §4.2.1.12), authenticate as their principals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{ExtendedKeyUsagePurpose, date_time_ymd};
use rustls::AlertDescription;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use stele_server::config::ClientCert;
use stele_server::tokens::Role;
use tokio::io::AsyncWriteExt as _;

/// A rustls client trusting the server's CA and presenting `identity`.
fn client_config(server_ca_der: &[u8], identity: &Identity) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(identity.der.clone())],
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    )
}

/// The alert the peer sent, if `e` carries one.
fn alert_of(e: &std::io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Appends one event over a new connection presenting `identity` (and
/// `token`, if any): the HTTP status and body, or the alert that ended
/// the connection (`None`: it ended without one).
async fn append_as(
    server: &TestServer,
    identity: &Identity,
    token: Option<&str>,
) -> Result<(u16, String), Option<AlertDescription>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(&server.pki.ca.der, identity));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    // TLS 1.3: the client finishes its side of the handshake before the
    // server has judged its certificate; the refusal arrives as an alert
    // on the first read.
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("a TLS handshake within 10 s")
        .map_err(|e| alert_of(&e))?;
    let body = r#"{"actor":"bob","action":"deploy"}"#;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\n{authorization}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = tls.write_all(request.as_bytes()).await {
        return Err(alert_of(&e));
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        use tokio::io::AsyncReadExt as _;
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("an answer within 10 s")
        {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if received.is_empty() => return Err(alert_of(&e)),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_not_yet_valid_and_wrong_purpose_certificates_fail_the_handshake() {
    // Clients get their certificates from a CA of their own; every one
    // below is signed by it and pinned, so only its validity or its
    // purpose can stop it.
    let clients_ca = Ca::new("stele clients CA");
    let good = clients_ca.client("svc-good", 3001);
    let expired = clients_ca.client_adjusted("svc-expired", 3002, |p| {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    });
    let not_yet_valid = clients_ca.client_adjusted("svc-future", 3003, |p| {
        p.not_before = date_time_ymd(2090, 1, 1);
        p.not_after = date_time_ymd(2091, 1, 1);
    });
    let server_purpose = clients_ca.client_adjusted("svc-server-purpose", 3004, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let no_purpose = clients_ca.client_adjusted("svc-no-eku", 3005, |p| {
        p.extended_key_usages = Vec::new();
    });
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients_ca.pem).unwrap();
    let pinned: Vec<ClientCert> = [
        &good,
        &expired,
        &not_yet_valid,
        &server_purpose,
        &no_purpose,
    ]
    .iter()
    .zip([
        "svc-good",
        "svc-expired",
        "svc-future",
        "svc-server-purpose",
        "svc-no-eku",
    ])
    .map(|(identity, principal)| ClientCert {
        sha256: identity.fingerprint.clone(),
        principal: principal.into(),
        roles: vec![Role::writer()],
    })
    .collect();
    let server = start(|config| {
        config.tls.as_mut().unwrap().client_ca = Some(ca_file.clone());
        config.client_certs = pinned;
    })
    .await;
    let client = server.client();
    let admin = server.admin_token.clone();

    // A valid certificate authenticates as its principal.
    let (status, body) = append_as(&server, &good, None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let receipt: serde_json::Value = serde_json::from_str(&body).unwrap();
    let index = receipt["receipts"][0]["index"].as_u64().unwrap();
    let stored = server.get_event(&client, &admin, index).await;
    assert_eq!(stored["event"]["writer"], "svc-good");

    let size = log_size(&server, &client).await;
    for (what, identity, alert) in [
        ("expired", &expired, AlertDescription::CertificateExpired),
        (
            "not yet valid",
            &not_yet_valid,
            AlertDescription::CertificateExpired,
        ),
        (
            "serverAuth only",
            &server_purpose,
            AlertDescription::UnsupportedCertificate,
        ),
    ] {
        for token in [None, Some(admin.as_str())] {
            let outcome = append_as(&server, identity, token).await;
            assert_eq!(
                outcome,
                Err(Some(alert)),
                "a pinned {what} certificate (token: {}) must fail the handshake with {alert:?}",
                token.is_some()
            );
        }
    }
    // Nothing reached the log.
    assert_eq!(log_size(&server, &client).await, size);

    // No extended key usage at all: not restricted to any purpose.
    let (status, body) = append_as(&server, &no_purpose, None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let receipt: serde_json::Value = serde_json::from_str(&body).unwrap();
    let index = receipt["receipts"][0]["index"].as_u64().unwrap();
    let stored = server.get_event(&client, &admin, index).await;
    assert_eq!(stored["event"]["writer"], "svc-no-eku");

    drop(client);
    server.stop().await;
}
