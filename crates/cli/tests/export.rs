//! `stele export` and `stele query` on the real binary: what they print,
//! that each is recorded before it prints, their limits, and their
//! authorization by the active policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A log with events in streams "a" (actors a0, a1, …) and "b".
fn two_streams(dir: &Path) {
    init_log(dir);
    let mut input = String::new();
    for n in 0..30 {
        let (stream, actor) = if n % 3 == 0 {
            ("b", format!("b{n}"))
        } else {
            ("a", format!("a{n}"))
        };
        let outcome = if n % 2 == 0 { "success" } else { "failure" };
        input.push_str(&format!(
            r#"{{"actor":"{actor}","action":"write","outcome":"{outcome}","stream":"{stream}"}}"#
        ));
        input.push('\n');
    }
    append_ok(dir, &input);
}

/// The newest entry of the log, as `get` shows it.
fn last_entry(dir: &Path) -> Value {
    get(dir, checkpoint_size(dir) - 1)
}

#[test]
fn export_prints_every_entry_of_its_stream_and_is_recorded_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    two_streams(&dir);
    let out = run(&[
        "export",
        "--data",
        p(&dir),
        "--stream",
        "a",
        "--from",
        "5",
        "--to",
        "20",
    ]);
    expect(&out, 0, &[]);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<u64> = (5..20).filter(|n| n % 3 != 0).collect();
    let indices: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, expected);
    for line in &lines {
        let index = line["index"].as_u64().unwrap();
        assert_eq!(line["event"]["event"]["actor"], format!("a{index}"));
        // The same entry `get` shows: salt and commitment included.
        let single = get(&dir, index);
        assert_eq!(line["salt"], single["salt"]);
        assert_eq!(line["commitment"], single["commitment"]);
        assert_eq!(line["event"], single["event"]);
    }
    // The export is in the log: who, which stream and range, how many.
    let record = &last_entry(&dir)["event"];
    // (`get` itself is not recorded on a log without a policy.)
    assert_eq!(record["event"]["action"], "events.exported", "{record}");
    assert_eq!(record["stream"], "_system");
    assert_eq!(record["event"]["resource"], "streams/a");
    let attributes = &record["event"]["attributes"];
    assert_eq!(attributes["from"], 5);
    assert_eq!(attributes["to"], 20);
    assert_eq!(attributes["exported"], expected.len());
    assert_eq!(attributes["method"], "local");
    assert!(
        record["event"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("local:")
    );
    verify_ok(&dir);
}

#[test]
fn query_filters_limits_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    two_streams(&dir);
    let query = |extra: &[&str]| {
        let mut args = vec!["query", "--data", p(&dir), "--stream", "a", "--from", "0"];
        args.extend_from_slice(extra);
        let out = run(&args);
        expect(&out, 0, &[]);
        serde_json::from_str::<Value>(&out.stdout).unwrap()
    };
    // Stream "a", outcome failure: odd indices not divisible by 3, in 0..30.
    let all: Vec<u64> = (0..30).filter(|n| n % 3 != 0 && n % 2 == 1).collect();
    let answer = query(&["--to", "30", "--outcome", "failure"]);
    let found: Vec<u64> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(found, all);
    assert_eq!(answer["next"], Value::Null);
    // Recorded with its filters and what matched.
    let record = &last_entry(&dir)["event"]["event"];
    assert_eq!(record["action"], "events.queried");
    assert_eq!(record["attributes"]["filters"]["outcome"], "failure");
    assert_eq!(record["attributes"]["matched"], all.len());

    // A limit stops the scan after the last event returned; `next` resumes.
    let first = query(&["--to", "30", "--outcome", "failure", "--limit", "2"]);
    let two: Vec<u64> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(two, all[..2]);
    assert_eq!(first["next"], all[1] + 1);
    let next = first["next"].as_u64().unwrap().to_string();
    let rest = run(&[
        "query",
        "--data",
        p(&dir),
        "--stream",
        "a",
        "--from",
        &next,
        "--to",
        "30",
        "--outcome",
        "failure",
    ]);
    expect(&rest, 0, &[]);
    let rest: Value = serde_json::from_str(&rest.stdout).unwrap();
    assert_eq!(rest["events"][0]["index"], all[2]);

    // Exact matches only: an actor of the other stream finds nothing here.
    let none = query(&["--actor", "b3"]);
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_ranges_and_limits_are_refused_and_nothing_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    two_streams(&dir);
    let size = checkpoint_size(&dir);
    for args in [
        vec!["export", "--stream", "a", "--from", "20", "--to", "10"],
        vec!["export", "--stream", "a", "--from", "40"],
        vec!["query", "--stream", "a", "--from", "0", "--limit", "0"],
        vec!["query", "--stream", "a", "--from", "0", "--limit", "1001"],
    ] {
        let mut full = args.clone();
        full.extend_from_slice(&["--data", p(&dir)]);
        let out = run(&full);
        expect(&out, 2, &[]);
        expect_one_error_line(&out);
    }
    // `--to` beyond the log is clamped, not refused (as over HTTP).
    let out = run(&[
        "export",
        "--data",
        p(&dir),
        "--stream",
        "b",
        "--from",
        "25",
        "--to",
        "5000",
    ]);
    expect(&out, 0, &[]);
    // Stream "b" holds the multiples of 3: only 27 is in [25, 30).
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert_eq!(
        checkpoint_size(&dir),
        size + 1,
        "only the export was recorded"
    );
}

#[test]
fn an_operator_the_policy_does_not_let_export_is_refused_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    two_streams(&dir);
    let policy = tmp.path().join("p.toml");
    std::fs::write(
        &policy,
        "version = 1\ndefault_stream = \"a\"\n[streams.a]\nretain = \"30d\"\n[streams.b]\nretain = \"30d\"\n[operators]\nlocal_roles = [\"writer\"]\n",
    )
    .unwrap();
    let out = run(&[
        "policy",
        "apply",
        "--data",
        p(&dir),
        p(&policy),
        "--allow-lockout",
    ]);
    expect(&out, 0, &["applied policy version 1"]);
    for command in ["export", "query"] {
        let out = run(&[command, "--data", p(&dir), "--stream", "a", "--from", "0"]);
        expect(&out, 1, &[&format!("may not {command}"), "access.denied"]);
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// `--since` and `--until` bound the server clock's `received_at`: two
/// appends made at two instants are told apart.
#[test]
fn query_by_when_events_were_received() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    init_log(&dir);
    append_ok(&dir, &ndjson(["early".to_string()]));
    std::thread::sleep(std::time::Duration::from_millis(20));
    append_ok(&dir, &ndjson(["late".to_string()]));
    let late_at = get(&dir, 1)["event"]["received_at"]
        .as_str()
        .unwrap()
        .to_string();
    let actors = |bound: &str| {
        let out = run(&[
            "query",
            "--data",
            p(&dir),
            "--stream",
            "default",
            "--from",
            "0",
            bound,
            &late_at,
        ]);
        expect(&out, 0, &[]);
        let answer: Value = serde_json::from_str(&out.stdout).unwrap();
        answer["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["event"]["actor"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(actors("--since"), ["late"]);
    assert_eq!(actors("--until"), ["early"]);
    let out = run(&[
        "query",
        "--data",
        p(&dir),
        "--stream",
        "default",
        "--from",
        "0",
        "--since",
        "monday",
    ]);
    expect(&out, 2, &["--since must be an RFC 3339 time"]);
    expect_one_error_line(&out);
}
