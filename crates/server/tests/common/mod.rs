#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code, missing_debug_implementations)]
//! Shared harness of the end-to-end tests: a throw-away PKI (rcgen), a
//! server started on an ephemeral port over real TLS, HTTP clients
//! (reqwest, optionally with a client certificate) and offline
//! verification of what the server returns (stele-tlog).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde_json::{Value, json};
use stele_server::Config;
use stele_server::config::{ClientCert, TlsConfig};
use stele_server::tokens::Role;
use tempfile::TempDir;

/// A certificate with its key, as PEM, plus its DER fingerprint.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub fingerprint: String,
}

impl Identity {
    pub fn reqwest(&self) -> reqwest::Identity {
        let mut pem = self.cert_pem.clone();
        pem.push_str(&self.key_pem);
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
    }
}

/// A certificate authority able to issue more certificates.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    fn issue(&self, sans: &[&str], cn: &str, serial: u64, server: bool) -> Identity {
        self.issue_adjusted(sans, cn, serial, server, |_| {})
    }

    /// [`Ca::issue`], with `adjust` changing the parameters last.
    fn issue_adjusted(
        &self,
        sans: &[&str],
        cn: &str,
        serial: u64,
        server: bool,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Identity {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            fingerprint: stele_server::tls::fingerprint(cert.der()),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, cn: &str, serial: u64) -> Identity {
        self.issue(&["localhost", "127.0.0.1"], cn, serial, true)
    }

    /// A client certificate.
    pub fn client(&self, cn: &str, serial: u64) -> Identity {
        self.issue(&[], cn, serial, false)
    }

    /// A client certificate whose parameters `adjust` changes before it is
    /// signed (its validity, its extended key usages): for the
    /// certificates a server must refuse.
    pub fn client_adjusted(
        &self,
        cn: &str,
        serial: u64,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Identity {
        self.issue_adjusted(&[], cn, serial, false, adjust)
    }
}

/// The PKI of one test: the CA (also the client CA), the server's
/// certificate, written to files, and client certificates.
pub struct Pki {
    pub ca: Ca,
    pub other_ca: Ca,
    pub server: Identity,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
    /// Mapped to principal `svc-writer` with the writer role.
    pub writer_client: Identity,
    /// Mapped to principal `svc-reader` with the reader role.
    pub reader_client: Identity,
    /// Signed by the CA but not listed in `client_certs`.
    pub unmapped_client: Identity,
    /// Signed by another CA ("unknown").
    pub foreign_client: Identity,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new("stele test CA");
        let other_ca = Ca::new("some other CA");
        let server = ca.server("stele server A", 1000);
        let cert_path = dir.join("server.pem");
        let key_path = dir.join("server.key");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&cert_path, &server.cert_pem).unwrap();
        std::fs::write(&key_path, &server.key_pem).unwrap();
        std::fs::write(&ca_path, &ca.pem).unwrap();
        Pki {
            writer_client: ca.client("svc-writer", 2001),
            reader_client: ca.client("svc-reader", 2002),
            unmapped_client: ca.client("unmapped", 2003),
            foreign_client: other_ca.client("unknown", 2004),
            ca,
            other_ca,
            server,
            cert_path,
            key_path,
            ca_path,
        }
    }
}

/// A running server and everything needed to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub verifier_key: String,
    pub admin_token: String,
    pub pki: Pki,
    pub config: Config,
    /// The served log, for granting tokens the way the server does.
    /// The served log, not kept open by the test: once the server stops,
    /// the data directory can be opened again.
    log: std::sync::Weak<std::sync::Mutex<stele_log::Log>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    pub tmp: TempDir,
}

/// The default test configuration: TLS with client CA, two mapped client
/// certificates, a 50 ms publish interval.
pub fn base_config(tmp: &Path, pki: &Pki) -> Config {
    Config {
        data: tmp.join("data"),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(TlsConfig {
            cert: pki.cert_path.clone(),
            key: pki.key_path.clone(),
            client_ca: Some(pki.ca_path.clone()),
            reload_seconds: 1,
        }),
        client_certs: vec![
            ClientCert {
                sha256: pki.writer_client.fingerprint.clone(),
                principal: "svc-writer".into(),
                roles: vec![Role::writer()],
            },
            ClientCert {
                sha256: pki.reader_client.fingerprint.clone(),
                principal: "svc-reader".into(),
                roles: vec![Role::reader()],
            },
        ],
        publish_interval_ms: 50,
        // Purges follow their announcement at once unless a test says.
        retention_grace_seconds: 0,
        ..Default::default()
    }
}

/// Starts a server with the base configuration, changed by `configure`.
pub async fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), String::new(), configure).await
}

/// Starts a server on `tmp`, whose `data` may already hold a log with
/// `verifier_key` (then the admin token is empty: create tokens with
/// [`TestServer::token`]).
pub async fn start_in(
    tmp: TempDir,
    verifier_key: String,
    configure: impl FnOnce(&mut Config),
) -> TestServer {
    let pki = Pki::new(tmp.path());
    let mut config = base_config(tmp.path(), &pki);
    configure(&mut config);
    let bound = stele_server::bind(config.clone(), None).await.unwrap();
    let addr = bound.addresses()[0];
    let log = Arc::downgrade(&bound.log());
    let first = match bound.first_start.clone() {
        Some(first) => first,
        None => stele_server::FirstStart {
            verifier_key,
            admin_token: String::new(),
        },
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(stele_server::serve(bound, async move {
        rx.await.ok();
    }));
    TestServer {
        addr,
        data: config.data.clone(),
        verifier_key: first.verifier_key,
        admin_token: first.admin_token,
        pki,
        config,
        log,
        shutdown: Some(tx),
        task: Some(task),
        tmp,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pki.ca.pem.as_bytes()).unwrap()])
            .resolve("localhost", self.addr)
            .timeout(Duration::from_secs(30))
    }

    /// A client trusting the test CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        self.builder().build().unwrap()
    }

    /// A client that opens a new connection for every request.
    pub fn client_without_reuse(&self) -> reqwest::Client {
        self.builder().pool_max_idle_per_host(0).build().unwrap()
    }

    /// A client presenting `identity` as its certificate.
    pub fn client_with(&self, identity: &Identity) -> reqwest::Client {
        self.builder().identity(identity.reqwest()).build().unwrap()
    }

    /// The served log (while the server runs).
    pub fn served_log(&self) -> Arc<std::sync::Mutex<stele_log::Log>> {
        self.log.upgrade().expect("the server is running")
    }

    /// A token for a new principal.
    pub fn token(&self, principal: &str, roles: &[Role]) -> String {
        self.token_with(principal, roles, None, None).text
    }

    /// A token granted through the served log (its `token.created` event
    /// first, then `tokens.json`), as `POST /v1/tokens` does.
    pub fn token_with(
        &self,
        principal: &str,
        roles: &[Role],
        expires_at: Option<jiff::Timestamp>,
        streams: Option<Vec<String>>,
    ) -> stele_log::tokens::CreatedToken {
        let spec = stele_log::tokens::TokenSpec {
            principal: principal.into(),
            roles: roles.to_vec(),
            expires_at,
            streams,
        };
        stele_log::sequencer::lock_log(&self.served_log())
            .governance()
            .create_token(&spec, "test-harness", jiff::Timestamp::now())
            .unwrap()
    }

    /// Asks the server to stop and waits (bounded) for `serve` to return
    /// `Ok`. Clients should be dropped first (see the shutdown tests).
    /// Returns the temporary directory, which holds the data directory.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.take().unwrap().send(()).ok();
        let task = self.task.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("serve() did not return within 20 s of the shutdown signal")
            .expect("serve() panicked");
        assert_eq!(result, Ok(()), "serve() must return Ok");
        self.tmp
    }

    /// Sends the shutdown signal and returns the serve task.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<Result<(), String>> {
        self.shutdown.take().unwrap().send(()).ok();
        self.task.take().unwrap()
    }

    pub fn verifier(&self) -> stele_tlog::Verifier {
        stele_tlog::Verifier::from_vkey(&self.verifier_key).unwrap()
    }

    /// Appends one fresh event as `token` and returns its index: the
    /// probe used to check that nothing else was appended in between.
    pub async fn probe(&self, client: &reqwest::Client, token: &str) -> u64 {
        let r = post_json(
            client,
            &self.url("/v1/events"),
            Some(token),
            &json!({"actor": "probe", "action": "probe.append"}),
        )
        .await;
        assert_eq!(r.status, 200, "probe append failed: {:?}", r.json);
        r.json["receipts"][0]["index"].as_u64().unwrap()
    }

    /// GET /v1/events/{index}, which must succeed.
    pub async fn get_event(&self, client: &reqwest::Client, token: &str, index: u64) -> Value {
        let r = send(
            client
                .get(self.url(&format!("/v1/events/{index}")))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(
            r.status, 200,
            "GET /v1/events/{index}: {:?} {}",
            r.json, r.text
        );
        r.json
    }

    /// GET /checkpoint, opened with the verifier key and parsed.
    pub async fn checkpoint(&self, client: &reqwest::Client) -> stele_tlog::Checkpoint {
        let r = send(client.get(self.url("/checkpoint"))).await;
        assert_eq!(r.status, 200);
        let verifier = self.verifier();
        let note = stele_tlog::open_note(r.text.as_bytes(), &[&verifier]).unwrap();
        stele_tlog::Checkpoint::parse(&note.text).unwrap()
    }

    /// Waits until /checkpoint covers at least `size` entries.
    pub async fn wait_checkpoint(
        &self,
        client: &reqwest::Client,
        size: u64,
    ) -> stele_tlog::Checkpoint {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let checkpoint = self.checkpoint(client).await;
            if checkpoint.size >= size {
                return checkpoint;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint of size >= {size} published within 10 s (latest {})",
                checkpoint.size
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub text: String,
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub json: Value,
}

pub async fn send(request: reqwest::RequestBuilder) -> Resp {
    let response = request.send().await.unwrap();
    read(response).await
}

pub async fn read(response: reqwest::Response) -> Resp {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        bytes,
        text,
        json,
    }
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Resp {
    post_raw(
        client,
        url,
        token,
        Some("application/json"),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut request = client.post(url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    send(request).await
}

/// Asserts a JSON error response: the status, the code, and that the
/// body has the documented shape.
pub fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got {} {}",
        r.status, r.text
    );
    let error = &r.json["error"];
    assert!(error.is_object(), "error body is not JSON: {:?}", r.text);
    assert_eq!(error["code"], code, "error: {error}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {error}"
    );
}

/// Standard base64, as the API writes hashes and commitments.
pub fn base64_of(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn b64(text: &Value) -> Vec<u8> {
    B64.decode(text.as_str().unwrap()).unwrap()
}

/// Verifies a receipt against GET /v1/events/{index} and the returned
/// tlog-proof, offline. Returns the read response.
pub async fn verify_receipt(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    receipt: &Value,
) -> Value {
    let index = receipt["index"].as_u64().unwrap();
    let read = server.get_event(client, token, index).await;
    assert_eq!(read["index"], index);
    assert_eq!(
        read["commitment"], receipt["commitment"],
        "receipt {receipt}"
    );
    assert_eq!(read["salt"], receipt["salt"], "receipt {receipt}");
    assert_eq!(read["event"]["id"], receipt["id"]);
    assert_eq!(read["event"]["stream"], receipt["stream"]);
    verify_proof(server, &read, index);
    read
}

/// Checks the `proof` of a read response offline.
pub fn verify_proof(server: &TestServer, read: &Value, index: u64) -> stele_tlog::Checkpoint {
    let proof = stele_tlog::TlogProof::parse(read["proof"].as_str().unwrap()).unwrap();
    assert_eq!(proof.index, index);
    let commitment = b64(&read["commitment"]);
    assert_eq!(commitment.len(), 32);
    let leaf = stele_tlog::leaf_hash(&commitment);
    let verifier = server.verifier();
    let checkpoint = proof
        .verify(&leaf, &[&verifier], Some(&server.config.origin))
        .unwrap();
    assert!(checkpoint.size > index);
    // A different leaf must not verify: the check above is not vacuous.
    let mut other = commitment.clone();
    other[0] ^= 1;
    assert!(
        proof
            .verify(&stele_tlog::leaf_hash(&other), &[&verifier], None)
            .is_err()
    );
    checkpoint
}

/// The metric `stele_log_size`.
pub async fn log_size(server: &TestServer, client: &reqwest::Client) -> u64 {
    let r = send(client.get(server.url("/metrics"))).await;
    assert_eq!(r.status, 200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("stele_log_size "))
        .expect("stele_log_size in /metrics")
        .trim()
        .parse()
        .unwrap()
}

/// Reads every entry of a stopped server's log directly.
pub fn open_log(data: &Path) -> stele_log::Log {
    stele_log::Log::open(data, stele_log::OpenOptions::default()).unwrap()
}

/// A rustls client configuration trusting `ca_der`, optionally with a client
/// certificate, for tests that need the raw TLS session.
pub fn rustls_client(ca_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A raw TLS connection to the server (no ALPN: HTTP/1.1 by default), for
/// tests that must control every byte sent.
pub async fn raw_tls(
    server: &TestServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&server.pki.ca.der));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("TLS handshake within 5 s")
        .unwrap()
}

/// Reads until the peer closes the connection (end of stream or an
/// error) or `within` passes. Returns what was read and whether it closed.
pub async fn read_until_closed<S>(stream: &mut S, within: Duration) -> (Vec<u8>, bool)
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let deadline = tokio::time::Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (received, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body: its status
/// and its body. Panics if none arrives within `within`.
pub async fn read_http1_response<S>(stream: &mut S, within: Duration) -> (u16, String, Vec<u8>)
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let deadline = tokio::time::Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or_else(|| panic!("no Content-Length: {head}"));
            if received.len() >= end + 4 + length {
                let body = received[end + 4..end + 4 + length].to_vec();
                return (status, head, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("a readable connection");
        assert!(
            n > 0,
            "connection closed before a whole response: {received:?}"
        );
        received.extend_from_slice(&buf[..n]);
    }
}

/// A log in `<tmp>/data` (not yet served) under `policy_toml` applied at
/// `at`, holding one event per stream named, received at `at` (entry 0 is
/// the `policy.applied` event, entry `n + 1` the event of `streams[n]`),
/// closed. Returns the directory and the verifier key.
pub fn populated_log(
    policy_toml: &str,
    streams: &[&str],
    at: jiff::Timestamp,
) -> (TempDir, String) {
    use stele_log::{CreateOptions, Log, OpenOptions, Preparer};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let vkey = Log::create(
        &data,
        CreateOptions {
            origin: "localhost/stele".into(),
            kek: stele_store::keys::NewKek::Random,
        },
    )
    .unwrap();
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let source = stele_policy::PolicySource::from_toml("policy.toml", policy_toml);
    log.governance()
        .apply_policy(
            stele_policy::Policy::from_source(&source).unwrap(),
            "setup",
            at,
        )
        .unwrap();
    let preparer = Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
    let events: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(n, stream)| {
            let raw = format!(
                r#"{{"actor":"a","action":"n{n}","stream":"{stream}","attributes":{{"note":"content-{n}"}}}}"#
            );
            preparer.prepare(raw.as_bytes(), at).unwrap()
        })
        .collect();
    log.writer().append_batch(&events).unwrap();
    log.writer().publish().unwrap();
    (tmp, vkey)
}

/// POSTs a Kubernetes audit EventList body to the webhook.
pub async fn post_list(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    body: Vec<u8>,
) -> Resp {
    post_raw(
        client,
        &server.url("/v1/ingest/kubernetes"),
        Some(token),
        Some("application/json"),
        body,
    )
    .await
}
