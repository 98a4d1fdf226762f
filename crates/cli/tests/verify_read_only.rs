//! `stele verify`, `stele get` and `stele proof` read through a reader of
//! their own: no lock, no recovery, no file written. They run on a copy
//! without write permission (and, as root, which ignores permissions,
//! provably write nothing: every file's bytes, mode and modification time
//! are the same afterwards), and beside a running `stele serve` that
//! appends to the same directory. A read the log must record first (an
//! export; a `get` once a policy is applied) needs the writer: beside a
//! server it is refused, naming the HTTP API, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

/// Sets or clears the write bits of everything under `dir`.
fn writable(dir: &Path, yes: bool) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        let mode = if yes {
            meta.mode() | 0o200
        } else {
            meta.mode() & !0o222
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777)).unwrap();
    }
}

/// A log of 450 entries in two appends; `lock` removed (a copy need not
/// carry it, and verify must not create it).
fn log_copy(root: &Path) -> PathBuf {
    let data = root.join("data");
    init_log(&data);
    append_ok(&data, &ndjson((0..300).map(|i| format!("u{i}"))));
    append_ok(&data, &ndjson((300..450).map(|i| format!("u{i}"))));
    let copy = root.join("copy");
    copy_dir(&data, &copy);
    let _ = std::fs::remove_file(copy.join("lock"));
    copy
}

#[test]
fn verify_on_a_read_only_copy_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = log_copy(tmp.path());
    writable(&copy, false);
    let before = tree(&copy);
    let out = verify(&copy);
    let after = tree(&copy);
    writable(&copy, true);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("OK: 450 entries"), "{out}");
    assert_eq!(before, after, "verify changed the directory");
}

/// `stele get` and `stele proof inclusion` on a copy without write
/// permission show every entry asked for and write nothing.
#[test]
fn get_and_proof_on_a_read_only_copy_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = log_copy(tmp.path());
    writable(&copy, false);
    let before = tree(&copy);
    let reads: Vec<(u64, Out)> = [0u64, 299, 300, 449]
        .iter()
        .map(|i| {
            (
                *i,
                run(&["get", "--data", p(&copy), "--index", &i.to_string()]),
            )
        })
        .collect();
    let proof = run(&["proof", "inclusion", "--data", p(&copy), "--index", "449"]);
    let after = tree(&copy);
    writable(&copy, true);
    for (index, out) in &reads {
        assert_eq!(out.code, 0, "get {index}: {out}");
        let entry: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(entry["index"], *index, "{out}");
        assert_eq!(actor_of(&entry), format!("u{index}"), "{out}");
    }
    assert_eq!(proof.code, 0, "{proof}");
    assert!(
        proof.stdout.starts_with("c2sp.org/tlog-proof@v1\n"),
        "{proof}"
    );
    assert_eq!(before, after, "a read changed the directory");
}

/// A copy that needs recovery (bytes after a segment's committed records,
/// a torn checkpoint history tail, the index's last record torn): verify
/// says what the next open would do, verifies everything committed, and
/// changes nothing; the next writing open then does it.
#[test]
fn verify_reports_what_recovery_would_do_without_doing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = log_copy(tmp.path());
    let seg = segment_file(&copy, "default");
    let seg_len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xA5; 1000]);
    std::fs::write(&seg, &bytes).unwrap();
    let mut history = std::fs::read(copy.join("checkpoints")).unwrap();
    history.extend_from_slice(b"STC");
    std::fs::write(copy.join("checkpoints"), &history).unwrap();
    let mut index = std::fs::read(copy.join("index")).unwrap();
    index.extend_from_slice(&[7u8; 30]);
    std::fs::write(copy.join("index"), &index).unwrap();

    writable(&copy, false);
    let before = tree(&copy);
    let out = verify(&copy);
    let after = tree(&copy);
    writable(&copy, true);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("OK: 450 entries"), "{out}");
    assert_eq!(before, after, "verify changed the directory");
    for needle in [
        "1000 bytes after the committed length",
        "keeps them in recovered/ and cuts them",
        "checkpoints: the bytes from byte",
        "index: 30 bytes after entry 450",
    ] {
        assert!(out.stderr.contains(needle), "no note {needle:?}:\n{out}");
    }

    // The next writing open does what verify announced.
    let receipts = append_ok(&copy, &ndjson(["after".to_string()]));
    assert_eq!(
        receipts[0].index, 451,
        "the open appended log.recovered as 450"
    );
    let kept = copy.join("recovered").join(format!("1-{seg_len}.bin"));
    assert_eq!(std::fs::read(&kept).unwrap(), vec![0xA5; 1000]);
    let out = verify_ok(&copy);
    assert!(out.stdout.starts_with("OK: 452 entries"), "{out}");
}

/// Kills the server if the test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 POST of NDJSON over a new connection; returns (status, body).
fn http(port: u16, path: &str, token: &str, body: &str) -> (u16, String) {
    request(port, "POST", path, token, "application/x-ndjson", body)
}

/// One HTTP/1.1 request over a new connection; returns (status, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Starts `stele serve` on a new log in `data`; returns it with its port
/// and the first admin token.
fn start_server(data: &Path) -> (Server, u16, String) {
    let port = free_port();
    let mut child = stele()
        .args([
            "serve",
            "--data",
            p(data),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--publish-interval-ms",
            "50",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let _vkey = stdout.next().unwrap().unwrap();
    let token = stdout.next().unwrap().unwrap();
    assert!(token.starts_with("stele_"), "{token}");
    let mut errors = BufReader::new(stderr).lines();
    loop {
        let line = errors.next().expect("server exited").unwrap();
        if line.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in errors {});
    (server, port, token)
}

/// The index of every event a `POST /v1/events` answer acknowledged, in
/// the order they were sent.
fn acknowledged(answer: &str) -> Vec<u64> {
    let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
    answer["receipts"]
        .as_array()
        .unwrap_or_else(|| panic!("no receipts: {answer}"))
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn verify_and_get_beside_a_running_server_that_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (server, port, token) = start_server(&data);

    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    // (index, actor) of every acknowledged event, in order.
    let acked = std::sync::Mutex::new(Vec::<(u64, String)>::new());
    let (verified, read) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = ndjson((n..n + 25).map(|i| format!("w{i}")));
                let (status, text) = http(port, "/v1/events", &token, &body);
                assert_eq!(status, 200, "{text}");
                let indices = acknowledged(&text);
                assert_eq!(indices.len(), 25, "{text}");
                acked.lock().unwrap().extend(
                    indices
                        .into_iter()
                        .zip((n..n + 25).map(|i| format!("w{i}"))),
                );
                n += 25;
                appended.store(n as u64, Ordering::Relaxed);
            }
        });
        while appended.load(Ordering::Relaxed) < 500 {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Three verifications and three reads of the newest acknowledged
        // event at a time, three times over, all while the server appends.
        let mut verified = Vec::new();
        let mut read = Vec::new();
        for _ in 0..3 {
            let runs: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| (appended.load(Ordering::Relaxed), verify(&data))))
                .collect();
            let gets: Vec<_> = (0..3)
                .map(|_| {
                    let (index, actor) = acked.lock().unwrap().last().cloned().unwrap();
                    let data = &data;
                    scope.spawn(move || {
                        let out = run(&["get", "--data", p(data), "--index", &index.to_string()]);
                        (index, actor, out)
                    })
                })
                .collect();
            for run in runs {
                verified.push(run.join().unwrap());
            }
            for get in gets {
                read.push(get.join().unwrap());
            }
        }
        stop.store(true, Ordering::Relaxed);
        (verified, read)
    });
    let total = appended.load(Ordering::Relaxed);
    let mut sizes = Vec::new();
    for (before, out) in &verified {
        assert_eq!(out.code, 0, "{out}");
        assert!(out.stdout.starts_with("OK: "), "{out}");
        let entries: u64 = out.stdout[4..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(entries >= *before, "{entries} < {before}: {out}");
        sizes.push(entries);
    }
    assert!(
        total > sizes[0],
        "the server appended nothing while verify ran ({sizes:?}, {total})"
    );
    // Each read showed the acknowledged event it asked for.
    for (index, actor, out) in &read {
        assert_eq!(out.code, 0, "get {index}: {out}");
        let entry: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(entry["index"], *index, "{out}");
        assert_eq!(actor_of(&entry), actor, "{out}");
    }
    drop(server);
}

/// A read the log records first needs the writer, which the server holds:
/// an export always, a `get` once a policy is applied. Each is refused
/// (exit 2), names the HTTP API and prints nothing; the server goes on
/// appending (the refused read took no lock).
#[test]
fn a_read_that_must_be_recorded_is_refused_beside_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (server, port, token) = start_server(&data);
    let (status, text) = http(port, "/v1/events", &token, &ndjson(["a".to_string()]));
    assert_eq!(status, 200, "{text}");
    let index = acknowledged(&text)[0].to_string();

    // No policy: `get` is not recorded and works; `export` is recorded.
    let out = run(&["get", "--data", p(&data), "--index", &index]);
    assert_eq!(out.code, 0, "{out}");
    let out = run(&[
        "export",
        "--data",
        p(&data),
        "--stream",
        "default",
        "--from",
        "0",
    ]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("recorded in the log"), "{out}");
    assert!(out.stderr.contains("running `stele serve`"), "{out}");
    assert!(out.stderr.contains("GET /v1/events/{index}"), "{out}");

    // A policy applied over HTTP: `get` is recorded from now on.
    let policy = "version = 1\ndefault_stream = \"default\"\n[streams.default]\nretain = \"30d\"\n[operators]\nlocal_roles = [\"admin\"]\n";
    let body = serde_json::json!({ "toml": policy }).to_string();
    let (status, text) = request(port, "PUT", "/v1/policy", &token, "application/json", &body);
    assert_eq!(status, 200, "{text}");
    let out = run(&["get", "--data", p(&data), "--index", &index]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr
            .contains("is recorded in the log (a policy is applied)"),
        "{out}"
    );
    let (status, text) = http(port, "/v1/events", &token, &ndjson(["b".to_string()]));
    assert_eq!(status, 200, "the server stopped appending: {text}");
    drop(server);
}
