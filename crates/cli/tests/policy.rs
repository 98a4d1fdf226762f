//! The policy engine from the command line: `stele policy`, `hold`,
//! `retention`, `keys`, `audit`, and the Cedar authorization of CLI
//! operations (`access.denied`, `event.read`), run on the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::*;
use serde_json::Value;

/// The shipped example policy and its Cedar side file.
fn example_policy() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../policy/examples/policy.toml")
}

fn example_cedar() -> String {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../policy/examples/access.cedar");
    std::fs::read_to_string(path).expect("read the example Cedar policies")
}

/// Two streams kept 30 and 1 days; the local operator is `admin`, which the
/// shipped Cedar policies let do everything.
const OPS_30D: &str = r#"version = 1
default_stream = "ops"

[streams.ops]
retain = "30d"

[streams.tmp]
retain = "1d"

[operators]
local_roles = ["admin"]
"#;

/// Writes `text` as `name` in `dir`; returns its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A new log with `policy` applied; returns (tempdir, data dir).
fn governed_log(policy: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let file = write(tmp.path(), "policy.toml", policy);
    let out = run(&["policy", "apply", "--data", p(&dir), p(&file)]);
    expect(&out, 0, &["applied policy version 1"]);
    (tmp, dir)
}

/// `stele get` as JSON (exit 0 expected).
fn get_json(dir: &Path, index: u64) -> Value {
    get(dir, index)
}

/// The RFC 3339 time `days` from now.
fn days_from_now(days: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

/// The number in "... event N ..." / "... event N)".
fn event_number(text: &str, after: &str) -> u64 {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {text:?}"))
        + after.len();
    text[start..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {after:?} in {text:?}"))
}

fn json_of(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn policy_check_reports_ok_or_every_problem_with_its_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(&["policy", "check", p(&example_policy())]);
    expect(&out, 0, &["OK: policy ", "(4 streams, 4 routes)"]);
    let hash = out
        .stdout
        .split_whitespace()
        .nth(2)
        .expect("hash")
        .to_string();
    assert_eq!(hash.len(), 64, "{out}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{out}");

    // Two problems on lines 5 and 9: both reported, each with its line.
    let bad = write(
        tmp.path(),
        "bad.toml",
        "version = 1\ndefault_stream = \"ops\"\n\n[streams.ops]\nretain = \"90x\"\n\n\
         [streams.other]\nretain = \"10d\"\nretain_until = \"2030-01-01\"\n",
    );
    let out = run(&["policy", "check", p(&bad)]);
    assert_eq!(out.code, 1, "{out}");
    expect_one_error_line(&out);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem:\n{out}");
    assert!(
        lines[0].starts_with(&format!("{}:5:", bad.display())) && lines[0].contains("90x"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{}:9:", bad.display())) && lines[1].contains("retain_until"),
        "{out}"
    );

    // A problem in the Cedar side file is reported at its line there.
    let toml = write(
        tmp.path(),
        "side.toml",
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"9d\"\n[access]\ncedar_file = \"side.cedar\"\n",
    );
    write(
        tmp.path(),
        "side.cedar",
        "permit (principal, action, resource);\n\npermit (principal action, resource);\n",
    );
    let out = run(&["policy", "check", p(&toml)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .starts_with(&format!("{}:3:", tmp.path().join("side.cedar").display())),
        "{out}"
    );

    // A missing file is an I/O error.
    let out = run(&["policy", "check", p(&tmp.path().join("nope.toml"))]);
    expect(&out, 2, &["nope.toml"]);
    expect_one_error_line(&out);
}

/// (principal, roles, action, stream, extra flags, allowed, deciding policy)
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    &'a str,
    Option<&'a str>,
    &'a [&'a str],
    bool,
    &'a str,
);

#[test]
fn policy_explain_matrix_on_the_example_policy() {
    let policy = example_policy();
    let cases: &[Case] = &[
        (
            "svc",
            &["writer"],
            "append",
            Some("operational"),
            &[],
            true,
            "writer-append",
        ),
        (
            "svc",
            &["writer"],
            "append",
            Some("_system"),
            &[],
            false,
            "reserved-streams-system-only",
        ),
        (
            "svc",
            &["writer"],
            "read",
            Some("operational"),
            &[],
            false,
            "no policy permits",
        ),
        (
            "ann",
            &["auditor"],
            "read",
            Some("compliance"),
            &[],
            true,
            "auditor-read",
        ),
        (
            "ann",
            &["auditor"],
            "export",
            Some("compliance"),
            &["--ip", "10.1.2.3"],
            true,
            "auditor-export-internal",
        ),
        (
            "ann",
            &["auditor"],
            "export",
            Some("compliance"),
            &["--ip", "192.168.1.9"],
            false,
            "no policy permits",
        ),
        (
            "ann",
            &["auditor"],
            "policy.apply",
            None,
            &[],
            false,
            "no policy permits",
        ),
        (
            "root",
            &["admin"],
            "read",
            Some("security"),
            &[],
            false,
            "admin-no-payloads",
        ),
        (
            "root",
            &["admin", "auditor"],
            "read",
            Some("security"),
            &[],
            false,
            "admin-no-payloads",
        ),
        (
            "root",
            &["admin"],
            "policy.apply",
            None,
            &[],
            true,
            "admin-administer",
        ),
        (
            "lee",
            &["legal"],
            "hold.add",
            Some("compliance"),
            &[],
            true,
            "legal-holds",
        ),
        (
            "lee",
            &["legal"],
            "retention.run",
            None,
            &[],
            false,
            "no policy permits",
        ),
        (
            "nobody",
            &[],
            "verify",
            None,
            &[],
            false,
            "no policy permits",
        ),
        (
            "stele",
            &[],
            "append",
            Some("_system"),
            &["--kind", "system"],
            true,
            "system-append",
        ),
    ];
    for (principal, roles, action, stream, extra, allowed, deciding) in cases {
        let mut args = vec![
            "policy",
            "explain",
            "--policy",
            p(&policy),
            "--principal",
            principal,
            "--action",
            action,
        ];
        for role in *roles {
            args.extend(["--role", role]);
        }
        if let Some(stream) = stream {
            args.extend(["--stream", stream]);
        }
        args.extend(extra.iter().copied());
        let out = run(&args);
        let verdict = if *allowed { "ALLOW" } else { "DENY" };
        expect(&out, if *allowed { 0 } else { 1 }, &[deciding]);
        assert!(
            out.stdout.starts_with(&format!("{verdict}: {principal} ")),
            "expected {verdict}:\n{out}"
        );
    }
    // One event of a stream.
    let out = run(&[
        "policy",
        "explain",
        "--policy",
        p(&policy),
        "--principal",
        "ann",
        "--role",
        "auditor",
        "--action",
        "read",
        "--stream",
        "security",
        "--index",
        "7",
    ]);
    expect(&out, 0, &["event 7 in stream \"security\"", "auditor-read"]);
    // Without --policy or --data: the shipped default.
    let out = run(&[
        "policy",
        "explain",
        "--principal",
        "r",
        "--role",
        "reader",
        "--action",
        "read",
        "--stream",
        "x",
    ]);
    expect(&out, 0, &["ALLOW", "reader-read"]);
    // Unknown action: a usage error listing the actions.
    let out = run(&[
        "policy",
        "explain",
        "--policy",
        p(&policy),
        "--principal",
        "r",
        "--action",
        "delete",
    ]);
    expect(&out, 2, &["delete", "hold.add"]);
    expect_one_error_line(&out);

    // --data --local: the CLI's own operator under the log's policy.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let out = run(&[
        "policy",
        "explain",
        "--data",
        p(&dir),
        "--local",
        "--action",
        "policy.apply",
    ]);
    expect(
        &out,
        0,
        &["ALLOW: local:tester (local, roles [admin])", "admin-all"],
    );
    let file = write(
        tmp.path(),
        "p.toml",
        &OPS_30D.replace("local_roles = [\"admin\"]", "local_roles = [\"reader\"]"),
    );
    let out = run(&[
        "policy",
        "apply",
        "--data",
        p(&dir),
        p(&file),
        "--allow-lockout",
    ]);
    expect(&out, 0, &["applied policy version 1"]);
    let out = run(&[
        "policy",
        "explain",
        "--data",
        p(&dir),
        "--local",
        "--action",
        "policy.apply",
    ]);
    expect(
        &out,
        1,
        &[
            "DENY: local:tester (local, roles [reader])",
            "no policy permits",
        ],
    );
}

#[test]
fn policy_apply_show_shortening_and_refusals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let v1 = write(tmp.path(), "v1.toml", OPS_30D);
    let checked = run(&["policy", "check", p(&v1)]);
    expect(&checked, 0, &["OK"]);
    let hash = checked
        .stdout
        .split_whitespace()
        .nth(2)
        .expect("hash")
        .to_string();

    let out = run(&["policy", "show", "--data", p(&dir)]);
    expect(&out, 0, &["the shipped default", "(none)"]);

    let out = run(&["policy", "apply", "--data", p(&dir), p(&v1)]);
    // Against the shipped default (every stream kept forever): the
    // retention changes are told.
    expect(
        &out,
        0,
        &[
            &format!("applied policy version 1: {hash}"),
            "stream ops: retention shortened",
        ],
    );
    let out = run(&["policy", "show", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &[
            &format!("active policy: {hash} (version 1"),
            "by local:tester",
            "ops: retain = \"30d\"",
        ],
    );
    let shown = json_of(&run(&["policy", "show", "--data", p(&dir), "--json"]));
    assert_eq!(shown["hash"], Value::from(hash.clone()));
    assert_eq!(
        shown["versions"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );
    assert_eq!(shown["versions"][0]["applied_by"], "local:tester");
    assert_eq!(shown["toml"], Value::from(OPS_30D));
    // The change is in the log: the policy.applied event, by the operator.
    let index = shown["versions"][0]["event_index"]
        .as_u64()
        .expect("event index");
    let event = get_json(&dir, index);
    assert_eq!(event["event"]["stream"], "_system");
    assert_eq!(event["event"]["event"]["actor"], "local:tester");
    assert!(
        ["policy.applied", "policy.retention_changes"]
            .contains(&event["event"]["event"]["action"].as_str().unwrap_or("")),
        "{event}"
    );

    // Data in ops, then a shorter retention: applied, but not to the data
    // already written, which keeps 30 days.
    append_ok(&dir, &ndjson(["a".to_string()]));
    let status = json_of(&run(&["retention", "status", "--data", p(&dir), "--json"]));
    let ops_purge_after = |status: &Value| {
        status["epochs"]
            .as_array()
            .expect("epochs")
            .iter()
            .find(|e| e["stream"] == "ops")
            .map(|e| e["purge_after"].clone())
            .expect("an ops epoch")
    };
    let before = ops_purge_after(&status);
    assert!(before.is_string(), "{status}");
    let v2 = write(tmp.path(), "v2.toml", &OPS_30D.replace("\"30d\"", "\"1d\""));
    let out = run(&["policy", "apply", "--data", p(&dir), p(&v2)]);
    expect(
        &out,
        0,
        &[
            "applied policy version 2",
            "retention shortened",
            "data already written keeps retain = \"30d\"",
        ],
    );
    let status = json_of(&run(&["retention", "status", "--data", p(&dir), "--json"]));
    assert_eq!(
        ops_purge_after(&status),
        before,
        "shortening changed written data:\n{status}"
    );

    // Dropping a stream that holds data is refused by the log.
    let v3 = write(
        tmp.path(),
        "v3.toml",
        "version = 1\ndefault_stream = \"tmp\"\n[streams.tmp]\nretain = \"1d\"\n[operators]\nlocal_roles = [\"admin\"]\n",
    );
    let out = run(&["policy", "apply", "--data", p(&dir), p(&v3)]);
    expect(&out, 1, &["policy not applied", "ops", "still hold data"]);
    expect_one_error_line(&out);
    // A policy that would lock the operator out of policy.apply: refused
    // unless asked for.
    let v4 = write(tmp.path(), "v4.toml", &OPS_30D.replace("[\"admin\"]", "[]"));
    let out = run(&["policy", "apply", "--data", p(&dir), p(&v4)]);
    expect(&out, 1, &["--allow-lockout", "policy.apply"]);
    // An invalid file: its problems, nothing applied.
    let bad = write(tmp.path(), "bad.toml", "version = 2\n");
    let out = run(&["policy", "apply", "--data", p(&dir), p(&bad)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("bad.toml:1:"), "{out}");
    // The same policy again: nothing to do.
    let out = run(&["policy", "apply", "--data", p(&dir), p(&v2)]);
    expect(&out, 0, &["already the active version"]);
    let shown = json_of(&run(&["policy", "show", "--data", p(&dir), "--json"]));
    assert_eq!(
        shown["versions"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
    verify_ok(&dir);
}

#[test]
fn holds_add_list_release() {
    let (_tmp, dir) = governed_log(OPS_30D);
    let out = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--stream",
        "ops",
        "--from",
        "2020-01-01",
        "--until",
        "2030-12-31",
        "--reason",
        "matter 17",
    ]);
    expect(&out, 0, &["recorded as event"]);
    let id = out.stdout.trim().to_string();
    assert!(id.starts_with("hold-"), "{out}");
    let placed = event_number(&out.stderr, "recorded as event");
    let event = get_json(&dir, placed);
    assert_eq!(event["event"]["event"]["action"], "hold.placed");
    assert_eq!(event["event"]["event"]["actor"], "local:tester");
    assert_eq!(
        event["event"]["event"]["attributes"]["hold"],
        Value::from(id.clone())
    );

    let out = run(&["hold", "list", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &[&id, "ops", "2020-01-01..2030-12-31", "active", "matter 17"],
    );
    let listed = json_of(&run(&["hold", "list", "--data", p(&dir), "--json"]));
    assert_eq!(listed["holds"][0]["id"], Value::from(id.clone()));
    assert_eq!(listed["holds"][0]["released_at"], Value::Null);

    let out = run(&["hold", "release", "--data", p(&dir), &id]);
    expect(&out, 0, &[&format!("released hold {id}")]);
    let released = event_number(&out.stdout, "(event");
    assert_eq!(
        get_json(&dir, released)["event"]["event"]["action"],
        "hold.released"
    );
    let out = run(&["hold", "list", "--data", p(&dir)]);
    expect(&out, 0, &[&id, "released", "by local:tester"]);
    assert!(!out.stdout.contains("\tactive\t"), "{out}");
    // Twice: refused. An unknown id or bad dates: usage errors.
    let out = run(&["hold", "release", "--data", p(&dir), &id]);
    assert!(out.code == 1 || out.code == 2, "{out}");
    expect_one_error_line(&out);
    assert!(out.stderr.contains("already released"), "{out}");
    let out = run(&["hold", "release", "--data", p(&dir), "hold-nope"]);
    expect(&out, 2, &["hold-nope"]);
    let out = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--from",
        "2030-01-02",
        "--until",
        "2030-01-01",
        "--reason",
        "x",
    ]);
    expect(&out, 2, &["after"]);
    let out = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--from",
        "yesterday",
        "--reason",
        "x",
    ]);
    expect(&out, 2, &["yesterday"]);
    expect_one_error_line(&out);
}

#[test]
fn retention_purge_refused_until_due_then_purged_and_get_says_so() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: STELE_NOW is honoured only by debug builds");
        return;
    }
    let (_tmp, dir) = governed_log(&OPS_30D.replace("\"30d\"", "\"1d\""));
    let rs = append_ok(&dir, &ndjson(["a".to_string(), "b".to_string()]));
    let tmp_rs = append_ok(
        &dir,
        r#"{"actor":"t","action":"x","stream":"tmp"}
"#,
    );
    let entry = get_json(&dir, rs[0].index);
    let epoch = entry["event"]["received_at"].as_str().expect("received_at")[..10].to_string();
    let later = days_from_now(3);

    // Not due yet: refused, and the refusal is in the log.
    let size_before = checkpoint_size(&dir);
    let out = run(&[
        "retention",
        "purge",
        "--data",
        p(&dir),
        "--stream",
        "ops",
        "--epoch",
        &epoch,
    ]);
    expect(&out, 1, &["refused to purge", "ops", "retention ends"]);
    expect_one_error_line(&out);
    let size_after = checkpoint_size(&dir);
    assert_eq!(size_after, size_before + 1, "the refusal is one event");
    let refusal = get_json(&dir, size_before);
    assert_eq!(refusal["event"]["event"]["action"], "retention.refused");
    assert_eq!(refusal["event"]["event"]["actor"], "local:tester");
    assert_eq!(
        refusal["event"]["event"]["attributes"]["epoch"],
        Value::from(epoch.clone())
    );
    // The event is still readable.
    assert_eq!(actor_of(&get_json(&dir, rs[1].index)), "b");

    // Due by time, but held: refused.
    let out = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--stream",
        "ops",
        "--reason",
        "case 9",
    ]);
    expect(&out, 0, &[]);
    let hold = out.stdout.trim().to_string();
    let out = run_env(
        &[
            "retention",
            "purge",
            "--data",
            p(&dir),
            "--stream",
            "ops",
            "--epoch",
            &epoch,
        ],
        &[("STELE_NOW", &later)],
    );
    expect(&out, 1, &["legal hold", &hold]);
    let out = run_env(
        &["retention", "status", "--data", p(&dir)],
        &[("STELE_NOW", &later)],
    );
    expect(&out, 0, &[&format!("held by {hold}")]);

    // Released (at the log's time: the purge requests above recorded it,
    // and nothing is decided at an earlier time): purged.
    expect(
        &run_env(
            &["hold", "release", "--data", p(&dir), &hold],
            &[("STELE_NOW", &later)],
        ),
        0,
        &[],
    );
    let out = run_env(
        &[
            "retention",
            "purge",
            "--data",
            p(&dir),
            "--stream",
            "ops",
            "--epoch",
            &epoch,
        ],
        &[("STELE_NOW", &later)],
    );
    expect(
        &out,
        0,
        &[&format!("purged stream ops epoch {epoch}: 2 entries")],
    );
    let purge_event = event_number(&out.stdout, ", event");
    let record = get_json(&dir, purge_event);
    assert_eq!(record["event"]["event"]["action"], "retention.purge");

    // A purged event: "purged by policy" with the purge record, exit 1.
    let out = run(&[
        "get",
        "--data",
        p(&dir),
        "--index",
        &rs[0].index.to_string(),
    ]);
    expect(&out, 1, &["purged by policy"]);
    expect_one_error_line(&out);
    assert!(!out.all().to_lowercase().contains("corrupt"), "{out}");
    let shown = json_of(&out);
    assert_eq!(shown["purged"]["stream"], "ops");
    assert_eq!(shown["purged"]["epoch"], Value::from(epoch.clone()));
    assert_eq!(shown["purged"]["event_index"], Value::from(purge_event));
    assert_eq!(shown["purged"]["requested_by"], "local:tester");

    // `retention run` purges what else is due (tmp), nothing twice.
    let out = run_env(
        &["retention", "run", "--data", p(&dir)],
        &[("STELE_NOW", &later)],
    );
    expect(
        &out,
        0,
        &[&format!("purged stream tmp epoch {epoch}: 1 entries")],
    );
    assert!(!out.stdout.contains("stream ops"), "{out}");
    let out = run(&[
        "get",
        "--data",
        p(&dir),
        "--index",
        &tmp_rs[0].index.to_string(),
    ]);
    expect(&out, 1, &["purged by policy"]);
    let out = run_env(
        &["retention", "run", "--data", p(&dir)],
        &[("STELE_NOW", &later)],
    );
    expect(&out, 0, &["no epoch is due"]);
    let status = json_of(&run(&["retention", "status", "--data", p(&dir), "--json"]));
    assert_eq!(
        status["purged"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );

    // The log still verifies: the purged entries stay in the tree.
    verify_ok(&dir);
}

#[test]
fn keys_rotate_then_reads_and_verify_still_work() {
    let (tmp, dir) = governed_log(&format!("{OPS_30D}\n[keys]\nmax_kek_age = \"2d\"\n"));
    let rs = append_ok(&dir, &ndjson(["before-rotation".to_string()]));
    let info = json_of(&run(&["keys", "info", "--data", p(&dir), "--json"]));
    assert_eq!(info["kek"]["number"], 0);
    assert_eq!(info["kek"]["kind"], "file");
    assert_eq!(info["kek"]["too_old"], false);
    assert_eq!(info["kek"]["max_age_days"], 2);
    let data_keys = info["data_keys"].as_array().expect("data keys").len();
    assert!(data_keys >= 2, "ops and _system have data keys: {info}");
    let kek_before = std::fs::read(dir.join("keys/kek.key")).expect("kek");

    let out = run(&["keys", "rotate", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &["now #1 (file)", &format!("{data_keys} data keys")],
    );
    assert_ne!(
        std::fs::read(dir.join("keys/kek.key")).expect("kek"),
        kek_before
    );
    let rotated = event_number(&out.stdout, "(event");
    let event = get_json(&dir, rotated);
    assert_eq!(event["event"]["event"]["action"], "key.rotated");
    assert_eq!(event["event"]["event"]["actor"], "local:tester");
    assert_eq!(actor_of(&get_json(&dir, rs[0].index)), "before-rotation");
    verify_ok(&dir);
    let out = run(&["keys", "info", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &[
            "key-encryption key #1 (file)",
            "within the policy's maximum of 2 days",
        ],
    );

    // Too old by the policy three days later.
    if cfg!(debug_assertions) {
        let out = run_env(
            &["keys", "info", "--data", p(&dir)],
            &[("STELE_NOW", &days_from_now(3))],
        );
        expect(&out, 0, &["TOO OLD", "stele keys rotate"]);
    }

    // To a passphrase: too short refused, then the log opens only with it.
    let out = run_env(
        &["keys", "rotate", "--data", p(&dir), "--passphrase"],
        &[("STELE_NEW_PASSPHRASE", "short")],
    );
    expect(&out, 2, &["at least 12"]);
    let pass_file = write(tmp.path(), "new-pass", "correct horse battery\n");
    let out = run(&[
        "keys",
        "rotate",
        "--data",
        p(&dir),
        "--passphrase",
        "--new-passphrase-file",
        p(&pass_file),
    ]);
    expect(&out, 0, &["now #2 (passphrase)"]);
    let out = run(&[
        "get",
        "--data",
        p(&dir),
        "--index",
        &rs[0].index.to_string(),
    ]);
    expect(&out, 2, &["passphrase"]);
    let out = run_env(
        &[
            "get",
            "--data",
            p(&dir),
            "--index",
            &rs[0].index.to_string(),
        ],
        &[("STELE_PASSPHRASE", "correct horse battery")],
    );
    expect(&out, 0, &["before-rotation"]);
    let out = run_env(
        &["verify", "--data", p(&dir)],
        &[("STELE_PASSPHRASE", "correct horse battery")],
    );
    expect(&out, 0, &["OK: "]);
}

#[test]
fn audit_run_and_report_with_signature_checks() {
    let (tmp, dir) = governed_log(OPS_30D);
    append_ok(&dir, &ndjson(["audited".to_string()]));
    let out = run(&["audit", "report", "--data", p(&dir)]);
    expect(&out, 1, &["no attestation"]);
    expect_one_error_line(&out);

    let out = run(&["audit", "run", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &[
            "ALL CHECKS PASSED",
            "verify.full",
            "keys.kek_age",
            "recorded as event",
        ],
    );
    let event = event_number(&out.stdout, "recorded as event");

    let out = run(&["audit", "report", "--data", p(&dir)]);
    expect(
        &out,
        0,
        &[
            "ALL CHECKS PASSED",
            &format!("signature: verified with key {ORIGIN}"),
            &format!("log: event {event} holds this attestation"),
        ],
    );
    let report = json_of(&run(&["audit", "report", "--data", p(&dir), "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["event_index"], Value::from(event));
    assert_eq!(report["origin"], ORIGIN);
    assert!(
        report["signature"]
            .as_str()
            .is_some_and(|s| s.contains(ORIGIN)),
        "{report}"
    );
    let recorded = get_json(&dir, event);
    assert_eq!(recorded["event"]["event"]["action"], "audit.attestation");
    // On behalf of the operator who ran it.
    assert_eq!(recorded["event"]["event"]["actor"], "local:tester");
    assert_eq!(
        recorded["event"]["event"]["attributes"]["signature"],
        report["signature"]
    );

    // Another log's key does not verify it.
    let other = tmp.path().join("other");
    let other_key = init_log_origin(&other, "other.example/log");
    let out = run(&["audit", "report", "--data", p(&dir), "--vkey", &other_key]);
    assert_eq!(out.code, 1, "{out}");
    expect_one_error_line(&out);

    // An altered copy is caught by its signature.
    let latest = dir.join("audit/latest.json");
    let original = std::fs::read_to_string(&latest).expect("latest.json");
    let altered = original.replacen("\"verified_size\": ", "\"verified_size\": 1", 1);
    assert_ne!(altered, original);
    std::fs::write(&latest, altered).expect("write");
    let out = run(&["audit", "report", "--data", p(&dir)]);
    expect(&out, 1, &["signature"]);
    std::fs::write(&latest, &original).expect("write");
    expect(&run(&["audit", "report", "--data", p(&dir)]), 0, &[]);

    // A failed check: a key older than the policy allows.
    if cfg!(debug_assertions) {
        let file = write(
            tmp.path(),
            "keys.toml",
            &format!("{OPS_30D}\n[keys]\nmax_kek_age = \"1d\"\n"),
        );
        expect(
            &run(&["policy", "apply", "--data", p(&dir), p(&file)]),
            0,
            &[],
        );
        let later = days_from_now(3);
        let out = run_env(
            &["audit", "run", "--data", p(&dir)],
            &[("STELE_NOW", &later)],
        );
        expect(
            &out,
            1,
            &[
                "CHECKS FAILED",
                "[FAIL] keys.kek_age",
                "failed checks: keys.kek_age",
            ],
        );
        let out = run(&["audit", "report", "--data", p(&dir)]);
        expect(&out, 1, &["CHECKS FAILED", "signature: verified"]);
        let report = json_of(&run(&["audit", "report", "--data", p(&dir), "--json"]));
        assert_eq!(report["ok"], false);
    }
}

#[test]
fn cli_denials_are_refused_and_recorded_as_access_denied() {
    // The example Cedar policies; the local operator is an auditor, who may
    // read and verify but not place holds, append or apply policies.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    write(tmp.path(), "access.cedar", &example_cedar());
    let auditor = OPS_30D.replace("[\"admin\"]", "[\"auditor\"]")
        + "\n[access]\ncedar_file = \"access.cedar\"\n";
    let file = write(tmp.path(), "auditor.toml", &auditor);
    let out = run(&["policy", "apply", "--data", p(&dir), p(&file)]);
    expect(&out, 1, &["--allow-lockout"]);
    let out = run(&[
        "policy",
        "apply",
        "--data",
        p(&dir),
        p(&file),
        "--allow-lockout",
    ]);
    expect(&out, 0, &["applied policy version 1"]);

    let out = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--stream",
        "ops",
        "--reason",
        "x",
    ]);
    expect(
        &out,
        1,
        &[
            "\"local:tester\" may not hold.add stream:ops",
            "no policy permits it",
            "local roles [auditor]",
            "recorded as access.denied event",
        ],
    );
    expect_one_error_line(&out);
    let denied = event_number(&out.stderr, "access.denied event");
    let event = get_json(&dir, denied);
    assert_eq!(event["event"]["stream"], "_system");
    assert_eq!(event["event"]["writer"], "stele");
    let e = &event["event"]["event"];
    assert_eq!(e["action"], "access.denied");
    assert_eq!(e["actor"], "local:tester");
    assert_eq!(e["resource"], "streams/ops");
    assert_eq!(e["attributes"]["stream"], "ops", "the server's shape");
    assert_eq!(e["outcome"], "denied");
    assert_eq!(e["attributes"]["requested"], "hold.add");
    assert_eq!(e["attributes"]["method"], "local");
    // The read of that event was itself recorded.
    let read = get_json(&dir, denied + 1);
    assert_eq!(read["event"]["event"]["action"], "event.read");
    assert_eq!(
        read["event"]["event"]["resource"],
        Value::from(format!("events/{denied}"))
    );
    assert_eq!(read["event"]["event"]["attributes"]["method"], "local");

    // Appending is refused before any input is taken; nothing is appended
    // but the denial.
    let size = checkpoint_size(&dir);
    let out = append(&dir, &ndjson(["x".to_string()]));
    expect(
        &out,
        1,
        &[
            "may not append stream:ops",
            "recorded as access.denied event",
        ],
    );
    assert_eq!(checkpoint_size(&dir), size + 1);
    // So are retention, key rotation and audit runs.
    for args in [
        vec!["retention", "run"],
        vec!["keys", "rotate"],
        vec!["audit", "run"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let size = checkpoint_size(&dir);
        let out = run(&full);
        expect(&out, 1, &["may not", "recorded as access.denied event"]);
        expect_one_error_line(&out);
        assert_eq!(
            checkpoint_size(&dir),
            size + 1,
            "one access.denied event:\n{out}"
        );
    }
    // Token administration too, though it reads the policy without
    // opening the log (so that it works beside a running server).
    for args in [
        vec!["token", "create", "--principal", "x", "--role", "admin"],
        vec!["token", "list"],
        vec!["token", "revoke", "--id", "nope"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let size = checkpoint_size(&dir);
        let out = run(&full);
        expect(
            &out,
            1,
            &["may not token.", "recorded as access.denied event"],
        );
        assert!(out.stdout.trim().is_empty(), "nothing printed:\n{out}");
        assert_eq!(
            checkpoint_size(&dir),
            size + 1,
            "one access.denied event:\n{out}"
        );
    }
    // What the example grants auditors is allowed.
    expect(&run(&["hold", "list", "--data", p(&dir)]), 0, &[]);
    verify_ok(&dir);

    // A forbid names the deciding policy: under the example, admins
    // administer but never read payloads.
    let other = tmp.path().join("admin-log");
    init_log(&other);
    let admin = OPS_30D.to_string() + "\n[access]\ncedar_file = \"access.cedar\"\n";
    let file = write(tmp.path(), "admin.toml", &admin);
    expect(
        &run(&["policy", "apply", "--data", p(&other), p(&file)]),
        0,
        &[],
    );
    let out = run(&["get", "--data", p(&other), "--index", "0"]);
    expect(
        &out,
        1,
        &[
            "may not read events/0 (stream:_system)",
            "forbidden by admin-no-payloads",
        ],
    );
    expect_one_error_line(&out);
    assert!(
        !out.stdout.contains("policy.applied"),
        "content shown despite the denial:\n{out}"
    );
}

/// Routes: `auth.*` actions go to `sec`; the CLI may not append to `sec`
/// (a forbid on local appends), everything else is the admin's.
const ROUTED: &str = r#"version = 1
default_stream = "ops"

[streams.ops]
retain = "30d"

[streams.sec]
retain = "forever"

[[routes]]
stream = "sec"
action = "auth.*"

[operators]
local_roles = ["admin"]
"#;

const NO_LOCAL_SEC: &str = r#"
[access]
cedar = '''
@id("admin-all")
permit (principal in Stele::Role::"admin", action, resource);

@id("no-sec-from-cli")
forbid (principal, action == Stele::Action::"append", resource == Stele::Stream::"sec")
when { context.auth_method == "local" };
'''
"#;

#[test]
fn append_routes_through_the_active_policy() {
    let (_tmp, dir) = governed_log(ROUTED);
    let input = concat!(
        r#"{"actor":"a","action":"write"}"#,
        "\n",
        r#"{"actor":"a","action":"auth.login"}"#,
        "\n",
        r#"{"actor":"a","action":"write","stream":"sec"}"#,
        "\n"
    );
    let rs = append_ok(&dir, input);
    let streams: Vec<&str> = rs.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(streams, ["ops", "sec", "sec"]);
    // A stream the policy does not declare is refused on its line.
    let input = concat!(
        r#"{"actor":"a","action":"write"}"#,
        "\n",
        r#"{"actor":"a","action":"write","stream":"nope"}"#,
        "\n",
        r#"{"actor":"a","action":"write"}"#,
        "\n"
    );
    let out = append(&dir, input);
    expect(&out, 1, &["line 2", "\"nope\" is not declared"]);
    expect_one_error_line(&out);
    assert_eq!(receipts(&out.stdout).len(), 1, "{out}");
    let out = run_full(
        &["append", "--data", p(&dir), "--stream", "nope"],
        event_line("x").as_bytes(),
        &[],
    );
    expect(&out, 1, &["--stream", "not declared"]);
    // --stream takes events that name none, over the routes.
    let input = concat!(
        r#"{"actor":"a","action":"auth.login"}"#,
        "\n",
        r#"{"actor":"a","action":"write","stream":"sec"}"#,
        "\n"
    );
    let out = run_full(
        &["append", "--data", p(&dir), "--stream", "ops"],
        input.as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    let streams: Vec<String> = receipts(&out.stdout)
        .into_iter()
        .map(|r| r.stream)
        .collect();
    assert_eq!(streams, ["ops", "sec"]);
    verify_ok(&dir);
}

#[test]
fn append_denied_for_one_stream_stops_at_that_line() {
    let (_tmp, dir) = governed_log(&format!("{ROUTED}{NO_LOCAL_SEC}"));
    let input = concat!(
        r#"{"actor":"a","action":"write"}"#,
        "\n",
        r#"{"actor":"a","action":"auth.login"}"#,
        "\n",
        r#"{"actor":"a","action":"write"}"#,
        "\n"
    );
    let out = append(&dir, input);
    expect(
        &out,
        1,
        &[
            "line 2",
            "may not append stream:sec",
            "forbidden by no-sec-from-cli",
            "nothing from this line on was appended",
        ],
    );
    expect_one_error_line(&out);
    let rs = receipts(&out.stdout);
    assert_eq!(rs.len(), 1, "{out}");
    let denied = event_number(&out.stderr, "access.denied event");
    assert_eq!(
        denied,
        rs[0].index + 1,
        "the denial follows the appended line"
    );
    let e = get_json(&dir, denied);
    assert_eq!(e["event"]["event"]["attributes"]["requested"], "append");
    assert_eq!(
        e["event"]["event"]["attributes"]["policies"][0],
        "no-sec-from-cli"
    );
    assert_eq!(e["event"]["event"]["resource"], "streams/sec");
}

/// Kills the server it holds when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_server_is_named_with_the_http_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let server = Server(
        stele()
            .args(["serve", "--data", p(&dir), "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stele serve"),
    );
    wait_for_lock(&dir, server.0.id());
    for args in [
        vec!["hold", "list"],
        vec!["retention", "run"],
        vec!["export", "--stream", "default", "--from", "0"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", p(&dir)]);
        let out = run(&full);
        expect(
            &out,
            2,
            &[
                &format!("running `stele serve` (pid {})", server.0.id()),
                "HTTP API",
                "PUT /v1/policy",
                "POST /v1/holds",
                "stop the server",
            ],
        );
        expect_one_error_line(&out);
    }
    drop(server);
    // Once it is gone the CLI works again.
    expect(&run(&["hold", "list", "--data", p(&dir)]), 0, &[]);
}

/// A running server re-reads its policy file on SIGHUP and applies it as a
/// new version recorded as applied by `signal:SIGHUP`; a file that does not
/// validate leaves the old version in force.
#[test]
fn sighup_applies_the_edited_policy_file() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let policy = write(tmp.path(), "policy.toml", OPS_30D);
    let config = write(
        tmp.path(),
        "stele.toml",
        &format!(
            "data = {:?}\npolicy = {:?}\nlisten = [\"127.0.0.1:0\"]\n",
            dir.display().to_string(),
            policy.display().to_string()
        ),
    );
    let mut server = Server(
        stele()
            .args(["serve", "--config", p(&config)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stele serve"),
    );
    let pid = server.0.id().to_string();
    // Wait for the announcement: from then on SIGHUP is caught.
    let stderr = server.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(line) if line.contains(what) => return,
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("server output ended before {what:?}: {e}"),
            }
        }
        panic!("no {what:?} from the server within 30 s");
    };
    wait_for("listening on");
    let hup = |pid: &str| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };

    // A broken file: refused, logged, the old version stays.
    std::fs::write(&policy, "version = 1\ndefault_stream = \"nope\"\n").expect("write");
    hup(&pid);
    wait_for("policy NOT applied");
    // A valid edit: lengthened retention, applied as version 2.
    std::fs::write(&policy, OPS_30D.replace("30d", "60d")).expect("write");
    hup(&pid);
    wait_for("SIGHUP: policy applied");
    drop(server);

    let out = run(&["policy", "show", "--data", p(&dir), "--json"]);
    expect(&out, 0, &[]);
    let shown = json_of(&out);
    let versions = shown["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{shown}");
    assert!(
        versions[0]["applied_by"]
            .as_str()
            .expect("by")
            .starts_with("config:"),
        "{shown}"
    );
    assert_eq!(versions[1]["applied_by"], "signal:SIGHUP");
}
