//! `stele export --bundle` and `stele verify-bundle` on the real binary:
//! a stream's bundle verifies offline with the verifier key alone, the
//! export is recorded, a consistency proof from a kept checkpoint is
//! checked, and a changed byte, the wrong key or a fork fails with exit
//! code 1 and a message naming what failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// A log with 20 events in streams "a" and "b" (one in three).
fn log_with_streams(dir: &std::path::Path) -> String {
    let vkey = init_log(dir);
    let mut input = String::new();
    for n in 0..20 {
        let stream = if n % 3 == 0 { "b" } else { "a" };
        input.push_str(&format!(
            r#"{{"actor":"u{n}","action":"write","stream":"{stream}"}}"#
        ));
        input.push('\n');
    }
    append_ok(dir, &input);
    vkey
}

/// The root (base64) on the third line of a checkpoint note.
fn note_root(note: &str) -> String {
    note.lines().nth(2).unwrap().to_string()
}

#[test]
fn export_bundle_then_verify_it_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let vkey = log_with_streams(&dir);
    let kept = checkpoint_note(&dir);
    append_ok(&dir, &ndjson(["late".to_string()]));
    let file = tmp.path().join("a.bundle");
    let kept_size = note_size(&kept).to_string();
    let out = run(&[
        "export",
        "--data",
        p(&dir),
        "--stream",
        "a",
        "--from",
        "0",
        "--bundle",
        p(&file),
        "--known-size",
        &kept_size,
    ]);
    expect(&out, 0, &["13 events and 0 purged entries"]);
    // The export is recorded.
    let last = get(&dir, checkpoint_size(&dir) - 1);
    assert_eq!(
        last["event"]["event"]["action"], "events.exported",
        "{last}"
    );
    assert_eq!(last["event"]["event"]["attributes"]["exported"], 13);

    let out = run(&["verify-bundle", "--vkey", &vkey, p(&file)]);
    expect(
        &out,
        0,
        &["OK: ", "13 entries", "13 events, 0 purged", "not checked"],
    );
    let root = note_root(&kept);
    let out = run(&[
        "verify-bundle",
        "--vkey",
        &vkey,
        p(&file),
        "--known-size",
        &kept_size,
        "--known-root",
        &root,
    ]);
    expect(
        &out,
        0,
        &[&format!("extends the tree of size {kept_size} you hold")],
    );

    // A fork: another root at the kept size.
    let other_root = b64_encode(&[7u8; 32]);
    let out = run(&[
        "verify-bundle",
        "--vkey",
        &vkey,
        p(&file),
        "--known-size",
        &kept_size,
        "--known-root",
        &other_root,
    ]);
    expect(&out, 1, &["consistency: "]);

    // One byte changed in the middle.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    let changed = tmp.path().join("changed.bundle");
    std::fs::write(&changed, &bytes).unwrap();
    let out = run(&["verify-bundle", "--vkey", &vkey, p(&changed)]);
    expect(&out, 1, &["does not verify"]);
    expect_one_error_line(&out);

    // Another log's key.
    let other = tmp.path().join("other");
    let other_key = init_log(&other);
    let out = run(&["verify-bundle", "--vkey", &other_key, p(&file)]);
    expect(&out, 1, &["checkpoint: not signed by the verifier key"]);

    // A missing file is a usage error, not a failed verification.
    let out = run(&[
        "verify-bundle",
        "--vkey",
        &vkey,
        p(&tmp.path().join("none")),
    ]);
    expect(&out, 2, &[]);
}
