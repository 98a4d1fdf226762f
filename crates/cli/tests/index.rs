//! `stele index rebuild` and `stele index verify` on the real binary: the
//! part files of closed days written from the log, checked against it, a
//! changed one failed by name (and by `stele verify`), and written again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// Ten events on 2026-01-01 and ten on 2026-01-02 (day 1 is closed by
/// the events of day 2).
fn log_over_two_days(dir: &std::path::Path) {
    init_log(dir);
    for (day, actor) in [("2026-01-01T10:00:00Z", "u"), ("2026-01-02T10:00:00Z", "v")] {
        let out = run_full(
            &["append", "--data", p(dir)],
            ndjson((0..10).map(|n| format!("{actor}{n}"))).as_bytes(),
            &[("STELE_NOW", day)],
        );
        expect(&out, 0, &[]);
    }
}

fn part_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("search"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn rebuild_writes_the_closed_days_and_verify_fails_a_changed_file_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    log_over_two_days(&dir);
    let now = [("STELE_NOW", "2026-01-02T11:00:00Z")];
    let out = run_env(&["index", "rebuild", "--data", p(&dir)], &now);
    expect(
        &out,
        0,
        &[
            "rebuilt the search index",
            "20 entries",
            "1 part files written",
        ],
    );
    let files = part_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let out = run_env(&["index", "verify", "--data", p(&dir)], &now);
    expect(
        &out,
        0,
        &["OK: 1 search part files agree with the log (10 entries)"],
    );
    verify_ok(&dir);
    // One byte changed: both checks fail, naming the file.
    flip_byte(&files[0], -40);
    let out = run_env(&["index", "verify", "--data", p(&dir)], &now);
    let name = files[0].display().to_string();
    expect(
        &out,
        1,
        &["FAIL", name.as_str(), "FAILED: 1 search part files"],
    );
    let out = verify(&dir);
    expect(&out, 1, &[name.as_str(), "changed bytes"]);
    // Written again from the log.
    let out = run_env(&["index", "rebuild", "--data", p(&dir)], &now);
    expect(&out, 0, &["1 part files written", "1 files removed first"]);
    let out = run_env(&["index", "verify", "--data", p(&dir)], &now);
    expect(&out, 0, &["OK: 1 search part files"]);
    verify_ok(&dir);
}

#[test]
fn index_commands_refuse_a_typo_and_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["index", "rebiuld", "--data", p(tmp.path())]);
    expect(&out, 2, &["rebiuld"]);
    assert_no_panic(&out);
    let out = run(&["index"]);
    expect(&out, 2, &["rebuild", "verify"]);
    let missing = tmp.path().join("none");
    let out = run(&["index", "verify", "--data", p(&missing)]);
    expect(&out, 2, &[]);
    assert_no_panic(&out);
    assert!(!missing.exists());
}

/// A part file changed on disk: `stele serve` refuses it at start, says so
/// in its log, indexes the segment from the log and writes the file again.
#[test]
fn serve_logs_a_refused_part_file_and_writes_it_again() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    log_over_two_days(&dir);
    let now = [("STELE_NOW", "2026-01-02T11:00:00Z")];
    expect(
        &run_env(&["index", "rebuild", "--data", p(&dir)], &now),
        0,
        &[],
    );
    let files = part_files(&dir);
    assert_eq!(files.len(), 1);
    flip_byte(&files[0], -40);
    let changed = std::fs::read(&files[0]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = stele()
        .args([
            "serve",
            "--data",
            p(&dir),
            "--listen",
            &listen,
            "--allow-plain-http",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let done = line.contains("search index covers the log");
        seen.push(line);
        if done {
            break;
        }
    }
    // The file is written again once the build is done: wait for it
    // (a rename: the new file is whole when it is there).
    for _ in 0..1000 {
        if std::fs::read(&files[0]).is_ok_and(|bytes| bytes != changed) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A rebuild beside the server is refused, naming it, and changes
    // nothing.
    let written = std::fs::read(&files[0]).unwrap();
    let out = run_env(&["index", "rebuild", "--data", p(&dir)], &now);
    expect(&out, 2, &["running `stele serve`", "stop the server first"]);
    assert_eq!(std::fs::read(&files[0]).unwrap(), written);
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    let name = files[0].display().to_string();
    assert!(
        log.contains("search part file refused") && log.contains(name.as_str()),
        "{log}"
    );
    assert!(log.contains("refused=1"), "{log}");
    // Written again by the server (its day is closed), and it agrees.
    let out = run_env(&["index", "verify", "--data", p(&dir)], &now);
    expect(&out, 0, &["OK: 1 search part files agree with the log"]);
}
