//! Every refusal: the exit code (1 input refused or verification failed,
//! 2 usage or I/O), one `stele: error:` line naming the problem, and for
//! `append` the promise that events before the refused line are appended
//! (with receipts) while nothing from that line on is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use common::*;

fn new_log() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    (tmp, dir)
}

/// Appends two good events, then `bad` (line 3), then one more good event.
/// Checks: exit code 1, one error line naming line 3 and every needle,
/// receipts for exactly the two first events, a checkpoint of size
/// `before + 2`, and the entries hold the two first events.
#[track_caller]
fn refused_on_line_3(bad: &str, needles: &[&str]) {
    let (_tmp, dir) = new_log();
    // Something already in the log, so indices do not start at 0.
    append_ok(&dir, &ndjson(["earlier".to_string()]));
    let input = format!(
        "{}\n{}\n{bad}\n{}\n",
        event_line("good-1"),
        event_line("good-2"),
        event_line("after-bad")
    );
    let out = append(&dir, &input);
    assert_eq!(out.code, 1, "refusal must exit 1:\n{out}");
    expect_one_error_line(&out);
    let mut all = vec!["line 3"];
    all.extend_from_slice(needles);
    for needle in all {
        assert!(
            out.stderr.contains(needle),
            "the error does not mention {needle:?}:\n{out}"
        );
    }
    let rs = receipts(&out.stdout);
    assert_eq!(
        rs.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![1, 2],
        "receipts:\n{out}"
    );
    // The checkpoint printed after the receipts, and the stored one, cover
    // exactly the events before the bad line.
    assert_eq!(
        note_size(&note_after_receipts(&out.stdout)),
        3,
        "note after the receipts:\n{out}"
    );
    assert_eq!(checkpoint_size(&dir), 3);
    assert_eq!(actor_of(&get(&dir, 1)), "good-1");
    assert_eq!(actor_of(&get(&dir, 2)), "good-2");
    let beyond = run(&["get", "--data", p(&dir), "--index", "3"]);
    assert_eq!(
        beyond.code, 2,
        "nothing from the bad line on may be stored:\n{beyond}"
    );
    verify_ok(&dir);
}

#[test]
fn bad_json_names_the_line() {
    refused_on_line_3(r#"{"actor":"x","action":"y""#, &["JSON"]);
}

#[test]
fn not_an_object() {
    refused_on_line_3(r#"["actor","action"]"#, &["object"]);
}

#[test]
fn wrong_type_names_the_field() {
    refused_on_line_3(r#"{"actor":42,"action":"y"}"#, &["actor"]);
}

#[test]
fn wrong_type_of_attributes() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","attributes":["a"]}"#,
        &["attributes"],
    );
}

#[test]
fn unknown_field_is_named() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","colour":"red"}"#,
        &["colour", "unknown"],
    );
}

#[test]
fn missing_action_is_named() {
    refused_on_line_3(r#"{"actor":"x"}"#, &["action"]);
}

#[test]
fn empty_actor() {
    refused_on_line_3(r#"{"actor":"","action":"y"}"#, &["actor", "empty"]);
}

#[test]
fn invalid_time() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","time":"2026-13-01T00:00:00Z"}"#,
        &["time"],
    );
}

#[test]
fn time_without_offset() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","time":"2026-01-01T00:00:00"}"#,
        &["time"],
    );
}

#[test]
fn reserved_stream() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","stream":"_system"}"#,
        &["stream", "reserved"],
    );
}

#[test]
fn invalid_stream_name() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","stream":"Has Space"}"#,
        &["stream"],
    );
}

#[test]
fn duplicate_key() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","actor":"z"}"#,
        &["actor", "duplicate"],
    );
}

#[test]
fn integer_beyond_2_pow_53() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y","attributes":{"n":9007199254740993}}"#,
        &["attributes.n"],
    );
}

#[test]
fn nesting_beyond_the_depth_limit() {
    let deep = format!(
        r#"{{"actor":"x","action":"y","attributes":{{"a":{}1{}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    refused_on_line_3(&deep, &["max_depth", "32"]);
}

#[test]
fn invalid_utf8_names_the_line_and_stores_nothing_from_it() {
    let (_tmp, dir) = new_log();
    let mut input = format!("{}\n", event_line("good-1")).into_bytes();
    input.extend_from_slice(b"{\"actor\":\"caf\xe9\",\"action\":\"y\"}\n");
    input.extend_from_slice(format!("{}\n", event_line("after-bad")).as_bytes());
    let out = run_full(&["append", "--data", p(&dir)], &input, &[]);
    assert_eq!(out.code, 1, "refusal must exit 1:\n{out}");
    expect_one_error_line(&out);
    assert!(
        out.stderr.contains("line 2") && out.stderr.to_lowercase().contains("utf-8"),
        "{out}"
    );
    assert_eq!(receipts(&out.stdout).len(), 1, "{out}");
    assert_eq!(checkpoint_size(&dir), 1);
    verify_ok(&dir);
}

#[test]
fn trailing_data_after_object() {
    refused_on_line_3(
        r#"{"actor":"x","action":"y"} {"actor":"x","action":"y"}"#,
        &["trailing"],
    );
}

/// An event of `len` bytes exactly (padding inside an attribute).
fn event_of_len(len: usize) -> String {
    let head = r#"{"actor":"big","action":"upload","attributes":{"pad":""#;
    let tail = r#""}}"#;
    let pad = len - head.len() - tail.len();
    let s = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(s.len(), len);
    s
}

#[test]
fn oversize_event_is_refused() {
    refused_on_line_3(&event_of_len(64 * 1024 + 1), &["limit"]);
}

#[test]
fn much_larger_line_is_refused_without_reading_it_all() {
    // 4 MiB on one line: refused on the line, not by running out of memory.
    refused_on_line_3(&event_of_len(4 * 1024 * 1024), &["limit"]);
}

#[test]
fn event_of_exactly_the_limit_is_accepted() {
    let (_tmp, dir) = new_log();
    let big = event_of_len(64 * 1024);
    // With LF, with CRLF, and as the last line without a newline.
    let input = format!("{big}\n{big}\r\n{big}");
    let rs = append_ok(&dir, &input);
    assert_eq!(rs.len(), 3);
    let entry = get(&dir, 2);
    let sent: serde_json::Value = serde_json::from_str(&big).expect("json");
    assert_eq!(
        entry["event"]["event"]["attributes"]["pad"],
        sent["attributes"]["pad"]
    );
    verify_ok(&dir);
}

#[test]
fn oversize_last_line_without_newline() {
    let (_tmp, dir) = new_log();
    let input = format!("{}\n{}", event_line("ok"), event_of_len(64 * 1024 + 1));
    let out = append(&dir, &input);
    expect(&out, 1, &["line 2", "limit"]);
    assert_eq!(receipts(&out.stdout).len(), 1);
    assert_eq!(checkpoint_size(&dir), 1);
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    let (_tmp, dir) = new_log();
    let input = format!("\n{}\n   \n\n{{bad\n", event_line("a"));
    let out = append(&dir, &input);
    expect(&out, 1, &["line 5"]);
    assert_eq!(receipts(&out.stdout).len(), 1);
}

#[test]
fn empty_input_appends_nothing() {
    let (_tmp, dir) = new_log();
    let out = append(&dir, "");
    expect(&out, 0, &[]);
    assert!(receipts(&out.stdout).is_empty());
    assert_eq!(note_size(&out.stdout), 0);
}

#[test]
fn reserved_stream_flag_is_a_usage_error() {
    let (_tmp, dir) = new_log();
    let out = run_full(
        &["append", "--data", p(&dir), "--stream", "_audit"],
        event_line("a").as_bytes(),
        &[],
    );
    expect(&out, 2, &["--stream", "reserved"]);
    expect_one_error_line(&out);
    assert_eq!(checkpoint_size(&dir), 0);
}

#[test]
fn get_beyond_the_end() {
    let (_tmp, dir) = new_log();
    append_ok(&dir, &ndjson((0..3).map(|i| format!("a{i}"))));
    let out = run(&["get", "--data", p(&dir), "--index", "3"]);
    expect(&out, 2, &["entry 3", "does not exist", "3 entries"]);
    expect_one_error_line(&out);
    let out = run(&["get", "--data", p(&dir), "--index", "18446744073709551615"]);
    expect(&out, 2, &["does not exist"]);
}

#[test]
fn proofs_for_unpublished_sizes_and_absent_entries() {
    let (_tmp, dir) = new_log();
    append_ok(&dir, &ndjson((0..3).map(|i| format!("a{i}"))));
    append_ok(&dir, &ndjson((3..5).map(|i| format!("a{i}"))));
    // Published sizes: 0, 3, 5.
    let out = run(&[
        "proof",
        "inclusion",
        "--data",
        p(&dir),
        "--index",
        "0",
        "--size",
        "4",
    ]);
    expect(&out, 2, &["no checkpoint of size 4"]);
    expect_one_error_line(&out);
    let out = run(&[
        "proof",
        "inclusion",
        "--data",
        p(&dir),
        "--index",
        "3",
        "--size",
        "3",
    ]);
    expect(&out, 2, &["entry 3", "size 3"]);
    let out = run(&["proof", "inclusion", "--data", p(&dir), "--index", "5"]);
    expect(&out, 2, &["entry 5"]);
    let out = run(&[
        "proof",
        "consistency",
        "--data",
        p(&dir),
        "--old",
        "2",
        "--size",
        "4",
    ]);
    expect(&out, 2, &["no checkpoint of size 4"]);
    let out = run(&["proof", "consistency", "--data", p(&dir), "--old", "6"]);
    expect(&out, 2, &["6"]);
    // Nothing is proven consistent with the empty tree: a usage error.
    let out = run(&["proof", "consistency", "--data", p(&dir), "--old", "0"]);
    expect(&out, 2, &["old size must be at least 1"]);
    expect_one_error_line(&out);
    // The published ones work.
    expect(
        &run(&[
            "proof",
            "inclusion",
            "--data",
            p(&dir),
            "--index",
            "2",
            "--size",
            "3",
        ]),
        0,
        &["index 2"],
    );
    expect(
        &run(&[
            "proof",
            "consistency",
            "--data",
            p(&dir),
            "--old",
            "3",
            "--size",
            "5",
        ]),
        0,
        &[],
    );
}

const PASS: &str = "correct horse battery staple";

#[test]
fn passphrase_protected_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    // Too short, and missing, are refused before anything is created.
    let out = run_env(
        &[
            "init",
            "--data",
            p(&dir),
            "--origin",
            ORIGIN,
            "--passphrase",
        ],
        &[("STELE_PASSPHRASE", "short")],
    );
    expect(&out, 2, &["12 characters"]);
    assert!(!dir.join("meta.json").exists());
    let out = run(&[
        "init",
        "--data",
        p(&dir),
        "--origin",
        ORIGIN,
        "--passphrase",
    ]);
    expect(&out, 2, &["STELE_PASSPHRASE"]);
    assert!(!dir.join("meta.json").exists());

    // From a file, with a trailing newline that is not part of it.
    let pass_file = tmp.path().join("pass");
    std::fs::write(&pass_file, format!("{PASS}\n")).expect("write");
    let out = run(&[
        "init",
        "--data",
        p(&dir),
        "--origin",
        ORIGIN,
        "--passphrase",
        "--passphrase-file",
        p(&pass_file),
    ]);
    expect(&out, 0, &[ORIGIN]);
    let kek = std::fs::read(dir.join("keys/kek.key")).expect("kek");
    assert!(
        !kek.windows(PASS.len()).any(|w| w == PASS.as_bytes()),
        "the passphrase is stored in the key file"
    );

    // Right passphrase (environment): works.
    let out = run_full(
        &["append", "--data", p(&dir)],
        event_line("secret").as_bytes(),
        &[("STELE_PASSPHRASE", PASS)],
    );
    expect(&out, 0, &[]);
    assert_eq!(receipts(&out.stdout).len(), 1);

    // Wrong passphrase: refused, names the passphrase.
    for args in [
        vec!["checkpoint"],
        vec!["get", "--index", "0"],
        vec!["verify"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let out = run_env(&full, &[("STELE_PASSPHRASE", "wrong passphrase!!")]);
        assert!(out.code == 1 || out.code == 2, "wrong passphrase:\n{out}");
        expect_one_error_line(&out);
        assert!(out.stderr.to_lowercase().contains("passphrase"), "{out}");
        assert!(
            !out.stdout.contains("secret"),
            "data printed with a wrong passphrase:\n{out}"
        );
    }
    // None at all: the message says how to give it.
    let out = run(&["checkpoint", "--data", p(&dir)]);
    assert_eq!(out.code, 2, "{out}");
    expect_one_error_line(&out);
    assert!(
        out.stderr.contains("STELE_PASSPHRASE") && out.stderr.contains("--passphrase-file"),
        "{out}"
    );
    // Missing passphrase file.
    let out = run(&[
        "checkpoint",
        "--data",
        p(&dir),
        "--passphrase-file",
        p(&tmp.path().join("nope")),
    ]);
    expect(&out, 2, &["nope"]);
    // An endless passphrase file is refused, not read into memory.
    let out = run(&[
        "checkpoint",
        "--data",
        p(&dir),
        "--passphrase-file",
        "/dev/zero",
    ]);
    expect(&out, 2, &["passphrase file", "larger than"]);
    expect_one_error_line(&out);
    // Right one from the file.
    let out = run(&[
        "get",
        "--data",
        p(&dir),
        "--index",
        "0",
        "--passphrase-file",
        p(&pass_file),
    ]);
    expect(&out, 0, &["secret"]);
    let out = run_env(
        &["verify", "--data", p(&dir)],
        &[("STELE_PASSPHRASE", PASS)],
    );
    expect(&out, 0, &["OK: 1 entries"]);
}

#[test]
fn kek_from_another_log_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    init_log(&a);
    init_log(&b);
    append_ok(&a, &ndjson(["a0".to_string()]));
    std::fs::copy(b.join("keys/kek.key"), a.join("keys/kek.key")).expect("copy kek");
    // (`verify` reads without the lock and is not refused: see
    // `verify_read_only.rs`.)
    for args in [
        vec!["checkpoint"],
        vec!["get", "--index", "0"],
        vec!["append"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&a)]);
        let out = run_full(&full, event_line("x").as_bytes(), &[]);
        assert_eq!(
            out.code, 1,
            "a foreign KEK must be refused as an integrity failure:\n{out}"
        );
        expect_one_error_line(&out);
        assert!(
            out.stderr.contains("signing.key") || out.stderr.contains("kek.key"),
            "{out}"
        );
        assert!(!out.stdout.contains("a0"), "{out}");
    }
}

#[test]
fn missing_data_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nowhere");
    for args in [
        vec!["checkpoint"],
        vec!["verify"],
        vec!["append"],
        vec!["get", "--index", "0"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let out = run(&full);
        expect(&out, 2, &["does not exist"]);
        expect_one_error_line(&out);
        assert!(
            !dir.exists(),
            "a command created the missing data directory"
        );
    }
}

#[test]
fn directory_that_is_not_a_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(&["checkpoint", "--data", p(tmp.path())]);
    expect(&out, 2, &["stele init"]);
    expect_one_error_line(&out);
    let out = run_full(
        &["append", "--data", p(tmp.path())],
        event_line("x").as_bytes(),
        &[],
    );
    expect(&out, 2, &["stele init"]);
    // Nothing was created in it.
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("read_dir").count(),
        0,
        "files were created in a non-log directory"
    );
}

#[test]
fn index_from_another_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    init_log(&a);
    init_log(&b);
    append_ok(&a, &ndjson((0..2).map(|i| format!("a{i}"))));
    append_ok(&b, &ndjson((0..4).map(|i| format!("b{i}"))));
    let foreign = std::fs::read(b.join("index")).expect("read");
    std::fs::write(a.join("index"), &foreign).expect("write");
    for args in [
        vec!["checkpoint"],
        vec!["verify"],
        vec!["get", "--index", "0"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&a)]);
        let out = run(&full);
        assert!(out.code == 1 || out.code == 2, "{out}");
        expect_one_error_line(&out);
        assert!(out.stderr.contains("another log"), "{out}");
    }
    // Refused, not adopted: the foreign index is left as it was.
    assert_eq!(std::fs::read(a.join("index")).expect("read"), foreign);
}

#[test]
fn init_into_a_non_empty_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("busy");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), b"keep me").expect("write");
    let out = run(&["init", "--data", p(&dir), "--origin", ORIGIN]);
    expect(&out, 2, &["not empty"]);
    expect_one_error_line(&out);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    assert_eq!(
        std::fs::read(dir.join("notes.txt")).expect("read"),
        b"keep me"
    );
}

#[test]
fn init_over_an_existing_log() {
    let (tmp, dir) = new_log();
    append_ok(&dir, &ndjson(["kept".to_string()]));
    let backup = tmp.path().join("backup");
    copy_dir(&dir, &backup);
    let out = run(&["init", "--data", p(&dir), "--origin", "other.example/log"]);
    expect(&out, 2, &["not empty"]);
    for f in [
        "meta.json",
        "keys/kek.key",
        "keys/signing.key",
        "index",
        "checkpoints",
        "log/checkpoint",
    ] {
        assert_eq!(
            std::fs::read(dir.join(f)).expect("read"),
            std::fs::read(backup.join(f)).expect("read"),
            "{f} changed"
        );
    }
    verify_ok(&dir);
}

#[test]
fn init_with_invalid_origin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    for origin in ["has space", "a+b", "", "new\nline"] {
        let out = run(&["init", "--data", p(&dir), "--origin", origin]);
        assert_eq!(out.code, 2, "origin {origin:?} accepted:\n{out}");
        expect_one_error_line(&out);
        assert!(out.stderr.contains("origin"), "{out}");
        assert!(
            !dir.join("meta.json").exists(),
            "origin {origin:?} left a log behind"
        );
        // Nothing half-made that would block a correct init.
        if dir.exists() {
            assert_eq!(
                std::fs::read_dir(&dir).expect("read_dir").count(),
                0,
                "origin {origin:?} left files behind"
            );
        }
    }
    init_log(&dir);
}

#[test]
fn second_process_is_refused_while_the_log_is_in_use() {
    let (_tmp, dir) = new_log();
    let mut child = stele()
        .args(["append", "--data", p(&dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(stdin, "{}", event_line("holder")).expect("write");
    stdin.flush().expect("flush");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("receipt");
    let first = parse_receipt(line.trim_end()).unwrap_or_else(|| panic!("no receipt: {line:?}"));
    assert_eq!(first.index, 0);
    // The first process holds the log (its stdin is still open).
    // (`verify` and, on a log without a policy, `get` read without the
    // lock and are not refused: see `verify_read_only.rs`; an export is
    // recorded, which needs the lock.)
    for args in [
        vec!["checkpoint"],
        vec!["export", "--stream", "default", "--from", "0"],
        vec!["append"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let out = run_full(&full, event_line("intruder").as_bytes(), &[]);
        expect(&out, 2, &["in use"]);
        expect_one_error_line(&out);
    }
    // The holder is unaffected: more input, then end of input.
    writeln!(stdin, "{}", event_line("holder-2")).expect("write");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "the holder failed: {status}");
    let rs = receipts(&rest);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].index, 1);
    assert_eq!(note_size(&note_after_receipts(&rest)), 2);
    assert_eq!(checkpoint_size(&dir), 2);
    assert_eq!(actor_of(&get(&dir, 1)), "holder-2");
    verify_ok(&dir);
}

/// A log with three entries, the files `verify-proof` needs for entry 1, and
/// the log's verifier key.
struct ProofFixture {
    _tmp: tempfile::TempDir,
    vkey: String,
    proof: std::path::PathBuf,
    event: std::path::PathBuf,
    commitment: String,
    other_vkey: String,
    dir: std::path::PathBuf,
}

fn proof_fixture() -> ProofFixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    let other_vkey = init_log(&tmp.path().join("other"));
    let rs = append_ok(&dir, &ndjson((0..3).map(|i| format!("p{i}"))));
    let out = run(&["proof", "inclusion", "--data", p(&dir), "--index", "1"]);
    expect(&out, 0, &[]);
    let proof = tmp.path().join("proof");
    std::fs::write(&proof, &out.stdout).expect("write");
    let out = run(&["get", "--data", p(&dir), "--index", "1"]);
    expect(&out, 0, &[]);
    let event = tmp.path().join("event.json");
    std::fs::write(&event, &out.stdout).expect("write");
    ProofFixture {
        vkey,
        proof,
        event,
        commitment: rs[1].commitment.clone(),
        other_vkey,
        dir,
        _tmp: tmp,
    }
}

fn verify_proof(vkey: &str, proof: &Path, leaf: (&str, &str)) -> Out {
    run(&[
        "verify-proof",
        "--vkey",
        vkey,
        "--proof",
        p(proof),
        leaf.0,
        leaf.1,
    ])
}

#[test]
fn verify_proof_accepts_the_genuine_proof() {
    let f = proof_fixture();
    expect(
        &verify_proof(&f.vkey, &f.proof, ("--event", p(&f.event))),
        0,
        &["OK", "entry 1", "tree size 3"],
    );
    expect(
        &verify_proof(&f.vkey, &f.proof, ("--commitment", &f.commitment)),
        0,
        &["OK", "entry 1"],
    );
}

/// A proof saved with one more trailing newline (as `jq -r .proof` writes
/// the proof of a `GET /v1/events/{index}` answer) or without its own
/// still verifies.
#[test]
fn verify_proof_accepts_trailing_newlines() {
    let f = proof_fixture();
    let text = std::fs::read_to_string(&f.proof).expect("read");
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text}");
    for (name, variant) in [
        ("jq", format!("{text}\n")),
        ("bare", text.trim_end_matches('\n').to_owned()),
    ] {
        let path = f.proof.with_extension(name);
        std::fs::write(&path, variant).expect("write");
        let out = verify_proof(&f.vkey, &path, ("--commitment", &f.commitment));
        expect(&out, 0, &["OK", "entry 1"]);
    }
}

#[test]
fn verify_proof_refuses_a_tampered_proof() {
    let f = proof_fixture();
    let text = std::fs::read_to_string(&f.proof).expect("read");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(lines[0].starts_with("c2sp.org/tlog-proof@v1"), "{text}");
    assert_eq!(lines[1], "index 1");
    // A proof hash changed (first character of the first hash).
    let mut hash: Vec<u8> = lines[2].as_bytes().to_vec();
    hash[0] = if hash[0] == b'A' { b'B' } else { b'A' };
    let tampered = text.replacen(lines[2], std::str::from_utf8(&hash).expect("utf8"), 1);
    let path = f.proof.with_extension("hash");
    std::fs::write(&path, tampered).expect("write");
    let out = verify_proof(&f.vkey, &path, ("--commitment", &f.commitment));
    expect(&out, 1, &["does not verify"]);
    expect_one_error_line(&out);
    // The index changed: the same hashes prove nothing about entry 2.
    let path = f.proof.with_extension("index");
    std::fs::write(&path, text.replacen("index 1\n", "index 2\n", 1)).expect("write");
    expect(
        &verify_proof(&f.vkey, &path, ("--commitment", &f.commitment)),
        1,
        &[],
    );
    // The checkpoint's tree size changed (its signature no longer holds).
    let path = f.proof.with_extension("size");
    std::fs::write(
        &path,
        text.replacen(&format!("\n{ORIGIN}\n3\n"), &format!("\n{ORIGIN}\n4\n"), 1),
    )
    .expect("write");
    let out = verify_proof(&f.vkey, &path, ("--commitment", &f.commitment));
    assert_eq!(out.code, 1, "{out}");
    // Truncated proof.
    let path = f.proof.with_extension("cut");
    std::fs::write(&path, &text[..text.len() / 2]).expect("write");
    let out = verify_proof(&f.vkey, &path, ("--commitment", &f.commitment));
    assert_eq!(out.code, 1, "{out}");
    expect_one_error_line(&out);
}

#[test]
fn verify_proof_refuses_another_logs_key() {
    let f = proof_fixture();
    let out = verify_proof(&f.other_vkey, &f.proof, ("--commitment", &f.commitment));
    expect(&out, 1, &["does not verify"]);
    expect_one_error_line(&out);
    // A malformed key is a usage error.
    let out = verify_proof("not-a-key", &f.proof, ("--commitment", &f.commitment));
    expect(&out, 2, &["--vkey"]);
}

#[test]
fn verify_proof_refuses_the_wrong_event() {
    let f = proof_fixture();
    // Another entry's commitment.
    let other = get(&f.dir, 2)["commitment"]
        .as_str()
        .expect("commitment")
        .to_string();
    let out = verify_proof(&f.vkey, &f.proof, ("--commitment", &other));
    expect(&out, 1, &["does not verify"]);
    // The event file with the actor changed: its stated commitment no
    // longer matches.
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f.event).expect("read")).expect("json");
    event["event"]["event"]["actor"] = serde_json::Value::String("mallory".into());
    let path = f.event.with_extension("actor");
    std::fs::write(&path, serde_json::to_string_pretty(&event).expect("json")).expect("write");
    let out = verify_proof(&f.vkey, &f.proof, ("--event", p(&path)));
    assert_eq!(out.code, 1, "{out}");
    expect_one_error_line(&out);
    // ...and without the stated commitment: the recomputed one is not in
    // the proof.
    event.as_object_mut().expect("object").remove("commitment");
    let path = f.event.with_extension("nocommit");
    std::fs::write(&path, serde_json::to_string_pretty(&event).expect("json")).expect("write");
    let out = verify_proof(&f.vkey, &f.proof, ("--event", p(&path)));
    expect(&out, 1, &["does not verify"]);
    // The genuine event with another salt.
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f.event).expect("read")).expect("json");
    event.as_object_mut().expect("object").remove("commitment");
    event["salt"] = serde_json::Value::String(b64_encode(&[7u8; 32]));
    let path = f.event.with_extension("salt");
    std::fs::write(&path, serde_json::to_string_pretty(&event).expect("json")).expect("write");
    let out = verify_proof(&f.vkey, &f.proof, ("--event", p(&path)));
    expect(&out, 1, &["does not verify"]);
    // Neither --event nor --commitment.
    let out = run(&["verify-proof", "--vkey", &f.vkey, "--proof", p(&f.proof)]);
    expect(&out, 2, &["--event", "--commitment"]);
}

/// Files named on the command line are read only up to a limit: an endless
/// one (`/dev/zero`) is refused, not read into memory; a proof that is not
/// text is a proof that does not verify (1), not an I/O error.
#[test]
fn verify_proof_bounds_what_it_reads() {
    let f = proof_fixture();
    let zero = Path::new("/dev/zero");
    let out = verify_proof(&f.vkey, zero, ("--commitment", &f.commitment));
    expect(&out, 2, &["proof file", "larger than"]);
    expect_one_error_line(&out);
    let out = verify_proof(&f.vkey, &f.proof, ("--event", "/dev/zero"));
    expect(&out, 2, &["event file", "larger than"]);
    expect_one_error_line(&out);
    let binary = f.proof.with_extension("bin");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x80]).expect("write");
    let out = verify_proof(&f.vkey, &binary, ("--commitment", &f.commitment));
    expect(&out, 1, &["not a tlog-proof"]);
    expect_one_error_line(&out);
}

/// Command-line mistakes are one `stele: error:` line, exit 2; help and
/// version are not errors.
#[test]
fn command_line_errors_are_one_line() {
    for args in [
        &["append", "--data"][..],
        &["append", "--nonsense"],
        &["get", "--data", "/tmp", "--index", "minus-one"],
        &["no-such-command"],
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        expect_one_error_line(&out);
        assert!(out.stderr.contains(" --help)"), "{args:?}: {out}");
    }
    expect(&run(&["--version"]), 0, &["stele"]);
    expect(&run(&["append", "--help"]), 0, &["--data"]);
}

/// A command-line mistake names what is wrong — the missing flag, the
/// command or flag a typo resembles — and the help of the command at
/// fault, in one line.
#[test]
fn usage_errors_name_the_missing_flag() {
    let out = run(&["init", "--data", "/nonexistent/x"]);
    expect(&out, 2, &["--origin", "(see stele init --help)"]);
    expect_one_error_line(&out);
    let out = run(&[
        "token",
        "create",
        "--data",
        "/nonexistent",
        "--role",
        "writer",
    ]);
    expect(&out, 2, &["--principal", "(see stele token create --help)"]);
    expect_one_error_line(&out);
    let out = run(&["proof", "inclusion", "--data", "/nonexistent"]);
    expect(&out, 2, &["--index", "(see stele proof inclusion --help)"]);
    expect_one_error_line(&out);
    let out = run(&["inti", "--data", "x"]);
    expect(&out, 2, &["'inti'", "'init'"]);
    expect_one_error_line(&out);
    let out = run(&["verify", "--dta", "x"]);
    expect(&out, 2, &["'--dta'", "'--data'"]);
    expect_one_error_line(&out);
}

/// A command given without its subcommand (`stele proof`), and `stele`
/// alone, print the command's usage and subcommands on standard error,
/// exit 2.
#[test]
fn a_command_without_its_subcommand_prints_its_usage() {
    for (args, listed) in [
        (&["proof"][..], &["inclusion", "consistency"][..]),
        (&["policy"], &["check", "explain", "apply", "show"]),
        (&["hold"], &["add", "list", "release"]),
        (&["token"], &["create", "list", "revoke"]),
        (&[], &["init", "append", "verify-proof"]),
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert!(out.stderr.contains("Usage: stele"), "{out}");
        for name in listed {
            assert!(out.stderr.contains(&format!("  {name} ")), "{name}: {out}");
        }
    }
}

/// `stele … | head`: a reader that has closed the pipe ends the command
/// quietly, exit 0 and nothing on standard error, whatever it was printing.
#[test]
fn a_closed_standard_output_ends_quietly() {
    let (_tmp, dir) = new_log();
    append_ok(&dir, &ndjson((0..3).map(|i| format!("e{i}"))));
    for args in [
        &["checkpoint", "--data", p(&dir)][..],
        &["get", "--data", p(&dir), "--index", "1"],
        &[
            "export",
            "--data",
            p(&dir),
            "--stream",
            "default",
            "--from",
            "0",
        ],
        &["proof", "inclusion", "--data", p(&dir), "--index", "0"],
        &["--help"],
    ] {
        // The pipe's reader is closed before the command starts: every
        // write fails with EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = stele()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run stele");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// `--stream` of `export` and `query` must be a stream name: `../x` is a
/// usage error naming the flag, and nothing is recorded.
#[test]
fn export_and_query_refuse_a_stream_that_is_no_stream_name() {
    let (_tmp, dir) = new_log();
    append_ok(&dir, &ndjson((0..2).map(|i| format!("e{i}"))));
    for command in ["export", "query"] {
        for bad in ["../x", "a/b", "", "X"] {
            let out = run(&[command, "--data", p(&dir), "--stream", bad, "--from", "0"]);
            expect(&out, 2, &["--stream", "not a stream name"]);
            expect_one_error_line(&out);
        }
    }
    assert_eq!(checkpoint_size(&dir), 2, "nothing was recorded");
}

#[test]
fn empty_writer_is_a_usage_error_before_reading_input() {
    let (_tmp, dir) = new_log();
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", " "],
        b"{\"actor\":\"a\",\"action\":\"b\"}\n",
        &[],
    );
    expect(&out, 2, &["--writer", "non-empty"]);
    expect_one_error_line(&out);
    assert_eq!(
        run(&["checkpoint", "--data", p(&dir)])
            .stdout
            .lines()
            .nth(1),
        Some("0")
    );
}

/// A refused line ends `append` even when standard input stays open (a
/// terminal or a producer that keeps the pipe): the events before it are
/// durable with receipts, and the process exits 1 without waiting for EOF.
#[test]
fn refused_line_ends_append_while_stdin_stays_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["append", "--data", p(&dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"{\"actor\":\"a\",\"action\":\"ok\"}\n{\"actor\":5,\"action\":\"bad\"}\n")
        .expect("write");
    stdin.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "append did not exit after a refused line"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(1));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("read");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('{')).count(),
        1,
        "{stdout}"
    );
    assert_eq!(checkpoint_size(&dir), 1);
}
