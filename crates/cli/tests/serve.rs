//! `stele serve` as the README runs it: with no arguments, in a fresh
//! directory, it creates `./stele-data` with generated keys, prints the
//! verifier key and a one-time admin token on standard output, listens on
//! plain HTTP at 127.0.0.1:7800, takes events, and stops on SIGTERM with
//! everything acknowledged durable; a second start reuses the log and
//! prints no new token. `--log-format json` logs one JSON object per line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const DEFAULT_ADDR: &str = "127.0.0.1:7800";

/// Kills the server if a test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `stele serve ARGS` in `cwd`; returns it, its standard output
/// lines, and its standard error lines (both read on threads).
fn start(cwd: &Path, args: &[&str]) -> (Server, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = stele()
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let (out_tx, out_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    (Server(child), out_rx, err_rx)
}

/// Standard error lines up to and including the first containing `needle`.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); saw:\n{}", seen.join("\n")),
        }
    }
}

/// One HTTP/1.1 request over a new connection; returns (status, body).
fn http(method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(DEFAULT_ADDR).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Every line still to come from one of [`start`]'s reader threads, to
/// the end of the output (the thread ends, and its sender with it, at end
/// of file: once the process has exited, nothing can be missed).
fn rest_of(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the output did not end within 60 s; so far: {rest:?}")
            }
        }
    }
}

/// SIGTERM, then the exit status and the rest of standard error.
fn terminate(mut server: Server, stderr: &mpsc::Receiver<String>) -> (i32, Vec<String>) {
    let pid = server.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.0.wait().unwrap();
    (status.code().unwrap_or(-1), rest_of(stderr))
}

#[test]
fn serve_with_no_arguments_is_the_embedded_default() {
    // The default address is what this test is about: if something else
    // holds it, the test cannot run, and says so rather than pass.
    if let Err(e) = std::net::TcpListener::bind(DEFAULT_ADDR) {
        panic!(
            "{DEFAULT_ADDR} is taken ({e}): this test runs `stele serve` with no arguments, \
             which listens there; stop whatever holds the port (another `stele serve`, or \
             this test running in another checkout) and run it again"
        );
    }
    let cwd = tempfile::tempdir().unwrap();
    let (server, stdout, stderr) = start(cwd.path(), &[]);
    let head = wait_for(&stderr, "listening on ");
    let listening = head.last().unwrap();
    assert!(
        listening.ends_with(&format!("listening on http://{DEFAULT_ADDR}")),
        "{listening}"
    );
    assert!(head.iter().any(|l| l.contains("verifier key")), "{head:?}");
    let vkey = stdout.recv_timeout(Duration::from_secs(60)).unwrap();
    let token = stdout.recv_timeout(Duration::from_secs(60)).unwrap();
    stele_tlog::Verifier::from_vkey(&vkey).unwrap_or_else(|e| panic!("{vkey:?}: {e}"));
    assert!(token.starts_with("stele_"), "{token}");
    let data = cwd.path().join("stele-data");
    assert!(data.join("meta.json").is_file());
    assert!(data.join("log/checkpoint").is_file());

    assert_eq!(http("GET", "/healthz", None, "").0, 200);
    let (status, body) = http(
        "POST",
        "/v1/events",
        Some(&token),
        r#"{"actor":"alice","action":"login"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let receipts: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Entry 0 is the first admin token's `token.created` event.
    assert_eq!(receipts["receipts"][0]["index"], 1, "{body}");
    assert_eq!(http("POST", "/v1/events", None, "{}").0, 401);

    let (code, rest) = terminate(server, &stderr);
    assert_eq!(code, 0, "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("every acknowledged event is durable")),
        "{rest:?}"
    );
    let verified = run(&["verify", "--data", p(&data)]);
    expect(&verified, 0, &["OK"]);

    // A second start reuses the log: no new keys, no new token; JSON logs.
    let (server, stdout, stderr) = start(cwd.path(), &["--log-format", "json"]);
    wait_for(&stderr, "listening on ");
    let (status, body) = http(
        "POST",
        "/v1/events",
        Some(&token),
        r#"{"actor":"bob","action":"logout"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // After the admin grant, alice's event and the `auth.failed` event
    // recording the 401 (written when the first run stopped).
    assert!(body.contains(r#""index":3"#), "{body}");
    let (code, rest) = terminate(server, &stderr);
    assert_eq!(code, 0, "{rest:?}");
    let printed = rest_of(&stdout);
    assert!(
        printed.is_empty(),
        "a second start printed on standard output: {printed:?}"
    );
    let logged: Vec<&String> = rest.iter().filter(|l| l.starts_with('{')).collect();
    assert!(!logged.is_empty(), "no JSON log lines: {rest:?}");
    for line in logged {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
    }
}

/// Log lines carry no ANSI colour codes when standard error is not a
/// terminal (a pipe here; a file or a journal in production).
#[test]
fn logs_are_plain_text_when_not_on_a_terminal() {
    let cwd = tempfile::tempdir().unwrap();
    let (server, _stdout, stderr) =
        start(cwd.path(), &["--data", "data", "--listen", "127.0.0.1:0"]);
    let mut lines = wait_for(&stderr, "listening on ");
    let (code, rest) = terminate(server, &stderr);
    assert_eq!(code, 0, "{rest:?}");
    lines.extend(rest);
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:?}");
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape in a log line: {line:?}"
        );
    }
}
