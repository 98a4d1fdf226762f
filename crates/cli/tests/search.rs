//! `stele search` on the real binary: a readable table, JSON lines, pages
//! followed by their cursor, a refused query with where and why, every
//! search recorded; and `--export` of every match as an evidence bundle
//! that `stele verify-bundle` checks offline (a changed byte refused), or
//! as NDJSON and CSV labelled unverified views.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// A log with 30 events: actors u0..u4, streams "a" and "b" (one in
/// three), resources db/prod/t0..t2.
fn log_of_30(dir: &std::path::Path) -> String {
    let vkey = init_log(dir);
    let mut input = String::new();
    for n in 0..30 {
        let stream = if n % 3 == 0 { "b" } else { "a" };
        input.push_str(&format!(
            r#"{{"actor":"u{}","action":"db.read","resource":"db/prod/t{}","stream":"{stream}","attributes":{{"note":"=sum(A1), \"quoted\""}}}}"#,
            n % 5,
            n % 3
        ));
        input.push('\n');
    }
    append_ok(dir, &input);
    vkey
}

/// The events (index) of u1 in the log above, oldest first.
fn u1_entries() -> Vec<u64> {
    (0..30).filter(|n| n % 5 == 1).collect()
}

#[test]
fn pages_of_a_search_follow_their_cursor_and_each_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    log_of_30(&dir);
    // The table: a header, one row per event, the count and the cursor.
    let out = run(&["search", "--data", p(&dir), "actor:u1", "--limit", "4"]);
    expect(&out, 0, &["INDEX", "RECEIVED", "4 of 6 matching events"]);
    let rows: Vec<&str> = out.stdout.lines().skip(1).take(4).collect();
    let shown: Vec<u64> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(shown, vec![26, 21, 16, 11], "{out}");
    let cursor = out
        .stdout
        .split("--cursor ")
        .nth(1)
        .expect("a cursor for the next page")
        .trim()
        .to_string();
    // The next page, as JSON lines, with the same query.
    let out = run(&[
        "search",
        "--data",
        p(&dir),
        "actor:u1",
        "--limit",
        "4",
        "--json",
        "--cursor",
        &cursor,
    ]);
    expect(&out, 0, &[]);
    let indices: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(indices, vec![6, 1]);
    assert!(out.stderr.contains("2 of 6 matching events"), "{out}");
    // The cursor is refused with another query.
    let out = run(&["search", "--data", p(&dir), "actor:u2", "--cursor", &cursor]);
    expect(&out, 2, &["--cursor: cursor belongs to another search"]);
    // A query that does not parse: where and why, exit 2.
    let out = run(&["search", "--data", p(&dir), "acter:u1"]);
    expect(&out, 2, &["at byte 0: unknown field `acter`"]);
    // The two searches that ran are recorded, with the normalized query.
    let size = checkpoint_size(&dir);
    let recorded: Vec<serde_json::Value> = (size - 2..size).map(|i| get(&dir, i)).collect();
    for (record, continued) in recorded.iter().zip([false, true]) {
        let event = &record["event"]["event"];
        assert_eq!(event["action"], "events.searched", "{record}");
        assert_eq!(event["attributes"]["query"], "actor:u1");
        assert_eq!(event["attributes"]["matched"], 6);
        assert_eq!(event["attributes"]["continued"], continued);
    }
}

#[test]
fn every_match_exported_as_a_bundle_verifies_offline_and_views_say_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let vkey = log_of_30(&dir);
    let file = tmp.path().join("u1.bundle");
    let out = run(&[
        "search",
        "--data",
        p(&dir),
        "actor:u1 stream:a",
        "--export",
        "bundle",
        "--out",
        p(&file),
    ]);
    expect(&out, 0, &["wrote", "4 events matching actor:u1 stream:a"]);
    assert!(!tmp.path().join("u1.bundle.partial").exists());
    let out = run(&["verify-bundle", "--vkey", &vkey, p(&file)]);
    expect(&out, 0, &["4 events, 0 purged", "actor:u1 stream:a"]);
    // One byte changed anywhere in an entry: refused, naming what failed.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let out = run(&["verify-bundle", "--vkey", &vkey, p(&file)]);
    assert_eq!(out.code, 1, "{out}");

    // The same selection as unverified views: a label first, then every
    // match oldest first.
    let expected: Vec<u64> = u1_entries().into_iter().filter(|n| n % 3 != 0).collect();
    let out = run(&[
        "search",
        "--data",
        p(&dir),
        "actor:u1 stream:a",
        "--export",
        "ndjson",
    ]);
    expect(&out, 0, &[]);
    let mut lines = out.stdout.lines();
    let label: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(
        label["unverified_view"]
            .as_str()
            .unwrap()
            .starts_with("unverified view"),
        "{label}"
    );
    let indices: Vec<u64> = lines
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(indices, expected);
    let csv = tmp.path().join("u1.csv");
    let out = run(&[
        "search",
        "--data",
        p(&dir),
        "actor:u1 stream:a",
        "--export",
        "csv",
        "--out",
        p(&csv),
    ]);
    expect(&out, 0, &[]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().starts_with("# unverified view"),
        "{text}"
    );
    assert_eq!(
        lines.next().unwrap(),
        "index,received_at,stream,actor,action,resource,outcome,writer,source,id"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), expected.len(), "{text}");
    assert!(rows[0].starts_with(&format!("{},", expected[0])), "{text}");
    // Every export is recorded with its format and count.
    let size = checkpoint_size(&dir);
    let formats: Vec<(String, u64)> = (0..size)
        .map(|i| get(&dir, i))
        .filter(|e| e["event"]["event"]["action"] == "events.searched")
        .map(|e| {
            let a = &e["event"]["event"]["attributes"];
            (
                a["export"].as_str().unwrap().to_string(),
                a["returned"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        formats,
        vec![
            ("bundle".into(), 4),
            ("ndjson".into(), 4),
            ("csv".into(), 4)
        ]
    );
    // A bundle needs a file.
    let out = run(&["search", "--data", p(&dir), "x", "--export", "bundle"]);
    expect(&out, 2, &["--export bundle needs --out FILE"]);
}
