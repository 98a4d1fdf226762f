//! `stele verify` is read-only: no lock, no recovery, no file written. It
//! runs on a copy without write permission (and, as root, which ignores
//! permissions, provably writes nothing: every file's bytes, mode and
//! modification time are the same afterwards), and beside a running
//! `stele serve` that appends to the same directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

/// Every entry under `dir` (itself included): bytes (files), mode and
/// modification time in nanoseconds.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let stamp = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            out.insert(path, (Vec::new(), meta.mode(), stamp));
        } else {
            out.insert(
                path.clone(),
                (std::fs::read(&path).unwrap(), meta.mode(), stamp),
            );
        }
    }
    out
}

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

/// One HTTP/1.1 request over a new connection; returns (status, body).
fn http(port: u16, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

#[test]
fn verify_beside_a_running_server_that_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut child = stele()
        .args([
            "serve",
            "--data",
            p(&data),
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

    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    let verified = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = ndjson((n..n + 25).map(|i| format!("w{i}")));
                let (status, text) = http(port, "/v1/events", &token, &body);
                assert_eq!(status, 200, "{text}");
                n += 25;
                appended.store(n as u64, Ordering::Relaxed);
            }
        });
        while appended.load(Ordering::Relaxed) < 500 {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Three verifications at a time, three times over, all while the
        // server appends.
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let runs: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| (appended.load(Ordering::Relaxed), verify(&data))))
                .collect();
            for run in runs {
                outcomes.push(run.join().unwrap());
            }
        }
        stop.store(true, Ordering::Relaxed);
        outcomes
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
    drop(server);
}
