//! `stele serve --config FILE` through the real binary, with nothing on the
//! command line but the file: the data directory, origin, listener,
//! publish interval and TLS files all come from it. With `[tls]` the server
//! speaks only TLS (plain HTTP and clients that do not trust its CA get
//! nothing) and takes bearer tokens; with `tls.client_ca` and
//! `[[client_certs]]` (mTLS) a pinned client certificate is its principal,
//! an unpinned one of the same CA is refused with 401, one of another CA
//! fails the handshake, and tokens still work. SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const CONFIG_ORIGIN: &str = "config.example/log";

/// A certificate authority.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: Vec<u8>,
}

/// A certificate and its key.
struct Identity {
    der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    fn issue(&self, sans: &[&str], cn: &str, purpose: ExtendedKeyUsagePurpose) -> Identity {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        Identity {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The files of one test: the server's CA and certificate, and client
/// certificates (two pinned, one unpinned, one of a foreign CA).
struct Pki {
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    ca_file: PathBuf,
    writer: Identity,
    reader: Identity,
    unpinned: Identity,
    foreign: Identity,
}

fn pki(dir: &Path) -> Pki {
    let ca = Ca::new("serve-config test CA");
    let server = ca.issue(
        &["localhost", "127.0.0.1"],
        "stele",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let foreign_ca = Ca::new("someone else's CA");
    let out = Pki {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca_file: dir.join("clients-ca.pem"),
        writer: ca.issue(&[], "svc-writer", ExtendedKeyUsagePurpose::ClientAuth),
        reader: ca.issue(&[], "svc-reader", ExtendedKeyUsagePurpose::ClientAuth),
        unpinned: ca.issue(&[], "unpinned", ExtendedKeyUsagePurpose::ClientAuth),
        foreign: foreign_ca.issue(&[], "svc-writer", ExtendedKeyUsagePurpose::ClientAuth),
        ca,
    };
    std::fs::write(&out.cert, &server.cert_pem).unwrap();
    std::fs::write(&out.key, &server.key_pem).unwrap();
    std::fs::write(&out.ca_file, &out.ca.pem).unwrap();
    out
}

fn fingerprint(identity: &Identity) -> String {
    stele_server::tls::fingerprint(&identity.der)
}

/// The configuration file: everything `stele serve` needs, TLS included,
/// and with `mtls` the client CA and two pinned client certificates.
fn write_config(dir: &Path, pki: &Pki, mtls: bool) -> PathBuf {
    let mut text = format!(
        "data = {data:?}\norigin = {CONFIG_ORIGIN:?}\nlisten = [\"127.0.0.1:0\"]\n\
         publish_interval_ms = 50\n\n[tls]\ncert = {cert:?}\nkey = {key:?}\n",
        data = p(&dir.join("data")),
        cert = p(&pki.cert),
        key = p(&pki.key),
    );
    if mtls {
        text.push_str(&format!(
            "client_ca = {ca:?}\n\n[[client_certs]]\nsha256 = {w:?}\nprincipal = \"svc-writer\"\n\
             roles = [\"writer\"]\n\n[[client_certs]]\nsha256 = {r:?}\nprincipal = \"svc-reader\"\n\
             roles = [\"reader\"]\n",
            ca = p(&pki.ca_file),
            w = fingerprint(&pki.writer),
            r = fingerprint(&pki.reader),
        ));
    }
    let path = dir.join("stele.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `stele serve`, killed if a test fails before stopping it.
struct Server {
    child: Child,
    addr: SocketAddr,
    admin_token: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `stele serve --config FILE` (from an empty working directory, so
/// nothing but the file can say where the data goes) and waits until it
/// listens; reads the verifier key and admin token it prints on first start.
fn serve(config: &Path, cwd: &Path) -> Server {
    let mut child = stele()
        .args(["serve", "--config", p(config)])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let (tx, stderr) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        match stderr.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(at) = line.find("listening on ") {
                    let url = line[at + "listening on ".len()..].trim().to_string();
                    let addr = url
                        .strip_prefix("https://")
                        .unwrap_or_else(|| panic!("not listening on TLS: {line}"));
                    break addr.parse().unwrap();
                }
                seen.push(line);
            }
            Err(e) => panic!("stele serve did not listen ({e}):\n{}", seen.join("\n")),
        }
    };
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let verifier_key = stdout.next().unwrap().unwrap();
    assert!(
        verifier_key.starts_with(&format!("{CONFIG_ORIGIN}+")),
        "the origin comes from the file: {verifier_key}"
    );
    let admin_token = stdout.next().unwrap().unwrap();
    assert!(admin_token.starts_with("stele_"), "{admin_token}");
    Server {
        child,
        addr,
        admin_token,
        stderr,
    }
}

/// SIGTERM; the exit code and every later line of standard error (read
/// until the pipe closes).
fn terminate(mut server: Server) -> (i32, Vec<String>) {
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    let rest: Vec<String> = server.stderr.iter().collect();
    (status.code().unwrap_or(-1), rest)
}

/// A TLS client trusting `ca_der`, presenting `identity` if given.
fn tls_client(ca_der: &[u8], identity: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(identity) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(identity.der.clone())],
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// One HTTP/1.1 request over a new TLS connection: (status, body), or the
/// error that ended the connection before any answer.
fn https(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), std::io::Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let connection =
        rustls::ClientConnection::new(tls, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut received = Vec::new();
    if let Err(e) = stream.read_to_end(&mut received)
        && received.is_empty()
    {
        return Err(e);
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

/// The alert the server ended a connection with, if `e` carries one.
fn alert_of(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

const EVENT: &str = r#"{"actor":"bob","action":"deploy"}"#;

fn receipt_index(body: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["receipts"][0]["index"].as_u64().unwrap()
}

#[test]
fn serve_config_with_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let config = write_config(tmp.path(), &pki, false);
    let server = serve(&config, cwd.path());
    let trusting = tls_client(&pki.ca.der, None);

    let (status, body) = https(server.addr, trusting.clone(), "GET", "/healthz", None, "").unwrap();
    assert_eq!(status, 200, "{body}");
    // Tokens work over TLS; the event is durable and readable.
    let token = server.admin_token.clone();
    let (status, body) = https(
        server.addr,
        trusting.clone(),
        "POST",
        "/v1/events",
        Some(&token),
        EVENT,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let index = receipt_index(&body);
    let (status, body) = https(
        server.addr,
        trusting.clone(),
        "GET",
        &format!("/v1/events/{index}"),
        Some(&token),
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"actor\":\"bob\""), "{body}");
    // The checkpoint names the origin from the file.
    let (status, note) = https(
        server.addr,
        trusting.clone(),
        "GET",
        "/checkpoint",
        None,
        "",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(note.lines().next(), Some(CONFIG_ORIGIN), "{note}");

    // No plain HTTP on the TLS port: no HTTP answer comes back.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A client that does not trust the server's CA gets nothing either.
    let stranger = tls_client(&Ca::new("not the server's CA").der, None);
    let e = https(server.addr, stranger, "GET", "/healthz", None, "").unwrap_err();
    assert!(
        e.to_string().contains("UnknownIssuer")
            || e.to_string().contains("invalid peer certificate"),
        "{e}"
    );

    let (code, rest) = terminate(server);
    assert_eq!(code, 0, "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped; every acknowledged event is durable")),
        "{rest:?}"
    );
    // The data went where the file said.
    assert!(tmp.path().join("data/meta.json").exists());
    assert!(
        std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "something was written to the working directory"
    );
    let entry = get(&tmp.path().join("data"), index);
    assert_eq!(entry["event"]["event"]["actor"], "bob");
}

#[test]
fn serve_config_with_mtls() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let config = write_config(tmp.path(), &pki, true);
    let server = serve(&config, cwd.path());
    let as_writer = tls_client(&pki.ca.der, Some(&pki.writer));
    let as_reader = tls_client(&pki.ca.der, Some(&pki.reader));

    // The pinned writer certificate appends with no token, as its principal.
    let (status, body) = https(
        server.addr,
        as_writer.clone(),
        "POST",
        "/v1/events",
        None,
        EVENT,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let index = receipt_index(&body);
    // It may not read (writer role); the pinned reader certificate may.
    let path = format!("/v1/events/{index}");
    let (status, body) = https(server.addr, as_writer, "GET", &path, None, "").unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, body) = https(server.addr, as_reader.clone(), "GET", &path, None, "").unwrap();
    assert_eq!(status, 200, "{body}");
    let read: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(read["event"]["writer"], "svc-writer");
    let (status, body) = https(server.addr, as_reader, "POST", "/v1/events", None, EVENT).unwrap();
    assert_eq!(status, 403, "{body}");

    // Signed by the CA but not pinned: 401, naming its fingerprint.
    let unpinned = tls_client(&pki.ca.der, Some(&pki.unpinned));
    let (status, body) = https(server.addr, unpinned, "POST", "/v1/events", None, EVENT).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(&fingerprint(&pki.unpinned)), "{body}");
    // Another CA's certificate fails the handshake, token or not.
    for token in [None, Some(server.admin_token.as_str())] {
        let foreign = tls_client(&pki.ca.der, Some(&pki.foreign));
        let e = https(server.addr, foreign, "POST", "/v1/events", token, EVENT).unwrap_err();
        assert_eq!(
            alert_of(&e),
            Some(rustls::AlertDescription::UnknownCA),
            "{e}"
        );
    }
    // Without a certificate, a bearer token still works.
    let no_cert = tls_client(&pki.ca.der, None);
    let token = server.admin_token.clone();
    let (status, body) = https(
        server.addr,
        no_cert.clone(),
        "POST",
        "/v1/events",
        Some(&token),
        EVENT,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(server.addr, no_cert, "POST", "/v1/events", None, EVENT).unwrap();
    assert_eq!(status, 401);

    let (code, rest) = terminate(server);
    assert_eq!(code, 0, "{rest:?}");
    let entry = get(&tmp.path().join("data"), index);
    assert_eq!(entry["event"]["writer"], "svc-writer");
}
