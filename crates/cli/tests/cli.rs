//! End-to-end use of the `stele` binary: init, append, get, proofs checked
//! offline, consistency between published checkpoints, key file modes, and
//! the public `log/` directory as a standalone C2SP tlog-tiles tree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;
use stele_tlog::tile::{TileId, TileReader, decode_bundle, entry_bundles_for_size, tiles_for_size};
use stele_tlog::{Checkpoint, Hash, TileHashReader, Verifier};

/// Opens a signed note with the log's verifier key and parses its body.
fn open_checkpoint(vkey: &str, note: &str) -> Checkpoint {
    let verifier = Verifier::from_vkey(vkey).expect("verifier key parses");
    let opened = stele_tlog::open_note(note.as_bytes(), &[&verifier])
        .unwrap_or_else(|e| panic!("note does not verify: {e}\n{note}"));
    assert_eq!(opened.text, note_body(note));
    Checkpoint::parse(&opened.text).expect("checkpoint body parses")
}

#[test]
fn round_trip_append_get_prove_verify_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    let events = [
        r#"{"actor":"alice","action":"login"}"#.to_string(),
        r#"{"actor":"bob","action":"read","resource":"doc/1","outcome":"success","source":"10.0.0.2","time":"2026-03-04T05:06:07+02:00","id":"client-key-1","attributes":{"n":1.5,"nested":{"ok":true,"list":[1,"two",null]}}}"#.to_string(),
        r#"{"actor":"carol","action":"write","stream":"billing","resource":null}"#.to_string(),
        r#"{"actor":"d\u00e9sir\u00e9e \ud83d\ude00","action":"delete"}"#.to_string(),
    ];
    let input = format!("{}\n", events.join("\n"));
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", "svc:ingest"],
        input.as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    let rs = receipts(&out.stdout);
    assert_eq!(rs.len(), 4);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.index, i as u64);
        assert_eq!(b64(&r.commitment).len(), 32);
        assert_eq!(b64(&r.salt).len(), 32);
    }
    assert_eq!(rs[0].stream, "default");
    assert_eq!(rs[2].stream, "billing");
    let mut salts: Vec<&str> = rs.iter().map(|r| r.salt.as_str()).collect();
    salts.dedup();
    assert_eq!(salts.len(), 4, "salts repeat");
    // The note after the receipts is signed by the log and covers them.
    let note = note_after_receipts(&out.stdout);
    let cp = open_checkpoint(&vkey, &note);
    assert_eq!((cp.origin.as_str(), cp.size), (ORIGIN, 4));
    assert_eq!(
        checkpoint_note(&dir),
        note,
        "`stele checkpoint` prints the same note"
    );

    for (i, r) in rs.iter().enumerate() {
        let out = run(&["get", "--data", p(&dir), "--index", &i.to_string()]);
        expect(&out, 0, &[]);
        let entry: serde_json::Value = serde_json::from_str(&out.stdout).expect("get prints JSON");
        assert_eq!(entry["index"].as_u64(), Some(i as u64));
        assert_eq!(entry["commitment"].as_str(), Some(r.commitment.as_str()));
        assert_eq!(entry["salt"].as_str(), Some(r.salt.as_str()));
        let env = &entry["event"];
        assert_eq!(env["id"].as_str(), Some(r.id.as_str()));
        assert_eq!(env["stream"].as_str(), Some(r.stream.as_str()));
        // The writer is the operator; `--writer` is only a claim.
        assert_eq!(env["writer"].as_str(), Some("local:tester"));
        assert_eq!(
            env["event"]["attributes"]["claimed_writer"].as_str(),
            Some("svc:ingest")
        );
        let sent: serde_json::Value = serde_json::from_str(&events[i]).expect("json");
        assert_eq!(env["event"]["actor"], sent["actor"]);
        assert_eq!(env["event"]["action"], sent["action"]);

        // Inclusion proof, checked offline from the `get` output and from
        // the receipt's commitment.
        let proof = run(&[
            "proof",
            "inclusion",
            "--data",
            p(&dir),
            "--index",
            &i.to_string(),
        ]);
        expect(
            &proof,
            0,
            &["c2sp.org/tlog-proof@v1", &format!("index {i}")],
        );
        assert!(
            proof.stdout.ends_with(&note),
            "the proof carries the latest checkpoint"
        );
        let proof_path = tmp.path().join(format!("proof-{i}"));
        std::fs::write(&proof_path, &proof.stdout).expect("write");
        let event_path = tmp.path().join(format!("event-{i}.json"));
        std::fs::write(&event_path, &out.stdout).expect("write");
        let ok = run(&[
            "verify-proof",
            "--vkey",
            &vkey,
            "--proof",
            p(&proof_path),
            "--event",
            p(&event_path),
        ]);
        expect(&ok, 0, &["OK", &format!("entry {i} "), "tree size 4"]);
        let ok = run(&[
            "verify-proof",
            "--vkey",
            &vkey,
            "--proof",
            p(&proof_path),
            "--commitment",
            &r.commitment,
        ]);
        expect(&ok, 0, &["OK", &format!("entry {i} ")]);
    }
    // Normalized and preserved fields.
    let bob = get(&dir, 1);
    let e = &bob["event"]["event"];
    assert_eq!(
        e["time"].as_str(),
        Some("2026-03-04T03:06:07Z"),
        "time is normalized to UTC"
    );
    assert_eq!(e["resource"].as_str(), Some("doc/1"));
    assert_eq!(e["outcome"].as_str(), Some("success"));
    assert_eq!(e["source"].as_str(), Some("10.0.0.2"));
    assert_eq!(e["id"].as_str(), Some("client-key-1"));
    assert_eq!(
        e["attributes"]["nested"]["list"],
        serde_json::json!([1, "two", null])
    );
    assert_eq!(e["attributes"]["n"].as_f64(), Some(1.5));
    let carol = get(&dir, 2);
    assert!(
        carol["event"]["event"].get("resource").is_none(),
        "null means absent: {carol}"
    );
    assert_eq!(carol["event"]["stream"].as_str(), Some("billing"));
    assert_eq!(actor_of(&get(&dir, 3)), "d\u{e9}sir\u{e9}e \u{1F600}");
    assert!(segment_file(&dir, "billing").is_file());
    verify_ok(&dir);
}

/// `--writer` cannot make another principal the writer of record: the
/// envelope's writer is the operator, the claimed name is the attribute
/// `claimed_writer`, and client ids de-duplicate under the operator. An
/// event naming another claimed writer itself is refused.
#[test]
fn writer_flag_is_recorded_as_a_claim() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let line = r#"{"actor":"a","action":"b","id":"k1"}"#;
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", "admin"],
        format!("{line}\n").as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    let entry = get(&dir, 0);
    assert_eq!(entry["event"]["writer"].as_str(), Some("local:tester"));
    assert_eq!(
        entry["event"]["event"]["attributes"]["claimed_writer"].as_str(),
        Some("admin")
    );
    // The payload is the line as read.
    assert_eq!(entry["event"]["payload"].as_str(), Some(line));
    // The same line again is a retry of the operator's event (same
    // writer, client id and payload).
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", "admin"],
        format!("{line}\n").as_bytes(),
        &[],
    );
    expect(&out, 0, &["\"duplicate\":true"]);
    // Naming oneself adds nothing.
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", "local:tester"],
        event_line("self").as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    assert!(get(&dir, 1)["event"]["event"].get("attributes").is_none());
    // An event claiming someone else itself conflicts with --writer.
    let out = run_full(
        &["append", "--data", p(&dir), "--writer", "admin"],
        br#"{"actor":"a","action":"b","attributes":{"claimed_writer":"root"}}
"#,
        &[],
    );
    expect(&out, 1, &["line 1", "claimed_writer"]);
    expect_one_error_line(&out);
    assert_eq!(checkpoint_size(&dir), 2);
    verify_ok(&dir);
}

/// The README lists every command `stele --help` lists, and the
/// repository ignores the data directory `stele serve` creates by default.
#[test]
fn readme_lists_every_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let help = run(&["--help"]);
    expect(&help, 0, &["Commands:"]);
    let commands: Vec<&str> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    for command in commands {
        assert!(
            readme.contains(&format!("`stele {command} "))
                || readme.contains(&format!("`stele {command}`")),
            "README.md does not list `stele {command}`"
        );
    }
    let ignored = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    assert!(
        ignored
            .lines()
            .any(|l| matches!(l.trim(), "stele-data/" | "/stele-data/" | "stele-data")),
        ".gitignore does not ignore stele-data/"
    );
}

#[test]
fn default_writer_and_stream_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    let out = run_full(
        &["append", "--data", p(&dir), "--stream", "ops"],
        event_line("w").as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    assert_eq!(receipts(&out.stdout)[0].stream, "ops");
    let entry = get(&dir, 0);
    assert_eq!(entry["event"]["writer"].as_str(), Some("local:tester"));
    assert_eq!(entry["event"]["stream"].as_str(), Some("ops"));
}

#[test]
fn consistency_between_published_checkpoints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    let mut notes = vec![checkpoint_note(&dir)];
    for batch in [5u64, 300, 2, 400] {
        let start = note_size(notes.last().expect("note"));
        let out = append(
            &dir,
            &ndjson((start..start + batch).map(|i| format!("c{i}"))),
        );
        expect(&out, 0, &[]);
        let note = note_after_receipts(&out.stdout);
        assert_eq!(note_size(&note), start + batch);
        notes.push(note);
    }
    let cps: Vec<Checkpoint> = notes.iter().map(|n| open_checkpoint(&vkey, n)).collect();
    let sizes: Vec<u64> = cps.iter().map(|c| c.size).collect();
    assert_eq!(sizes, vec![0, 5, 305, 307, 707]);
    for (a, old) in cps.iter().enumerate().skip(1) {
        for new in &cps[a..] {
            let out = run(&[
                "proof",
                "consistency",
                "--data",
                p(&dir),
                "--old",
                &old.size.to_string(),
                "--size",
                &new.size.to_string(),
            ]);
            expect(&out, 0, &[]);
            let proof: Vec<Hash> = out
                .stdout
                .lines()
                .map(|l| Hash::from_base64(l).expect("base64 hash"))
                .collect();
            stele_tlog::verify_consistency(old.size, new.size, &proof, &old.root, &new.root)
                .unwrap_or_else(|e| {
                    panic!(
                        "consistency {} -> {} does not verify: {e}",
                        old.size, new.size
                    )
                });
            if old.size < new.size {
                assert!(!proof.is_empty());
                // The proof is specific: it does not link another old root.
                let other = &cps[1 + (a % (cps.len() - 1))];
                if other.root != old.root {
                    assert!(
                        stele_tlog::verify_consistency(
                            old.size,
                            new.size,
                            &proof,
                            &other.root,
                            &new.root
                        )
                        .is_err()
                    );
                }
            }
        }
    }
    // Default --size is the latest checkpoint.
    let out = run(&["proof", "consistency", "--data", p(&dir), "--old", "5"]);
    expect(&out, 0, &[]);
    let proof: Vec<Hash> = out
        .stdout
        .lines()
        .map(|l| Hash::from_base64(l).expect("hash"))
        .collect();
    stele_tlog::verify_consistency(5, 707, &proof, &cps[1].root, &cps[4].root)
        .expect("consistency to latest");

    // An inclusion proof against an older published checkpoint.
    let out = run(&[
        "proof",
        "inclusion",
        "--data",
        p(&dir),
        "--index",
        "4",
        "--size",
        "305",
    ]);
    expect(&out, 0, &[]);
    assert!(
        out.stdout.ends_with(&notes[2]),
        "the proof carries the checkpoint of size 305"
    );
    let proof_path = tmp.path().join("proof");
    std::fs::write(&proof_path, &out.stdout).expect("write");
    let commitment = get(&dir, 4)["commitment"]
        .as_str()
        .expect("commitment")
        .to_string();
    let ok = run(&[
        "verify-proof",
        "--vkey",
        &vkey,
        "--proof",
        p(&proof_path),
        "--commitment",
        &commitment,
    ]);
    expect(&ok, 0, &["OK", "entry 4 ", "tree size 305"]);
    verify_ok(&dir);
}

#[test]
fn key_files_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    append_ok(&dir, &ndjson(["a".to_string()]));
    append_ok(
        &dir,
        &format!("{}\n", r#"{"actor":"b","action":"x","stream":"second"}"#),
    );
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    walk(&dir.join("keys"), &mut files);
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&dir).expect("inside").display().to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            "keys/deks/1.dek",
            "keys/deks/2.dek",
            "keys/kek.key",
            "keys/sessions",
            "keys/signing.key"
        ]
    );
    for f in &files {
        let mode = std::fs::metadata(f).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", f.display());
    }
    // A passphrase log's key file too.
    let pdir = tmp.path().join("plog");
    let out = run_env(
        &[
            "init",
            "--data",
            p(&pdir),
            "--origin",
            ORIGIN,
            "--passphrase",
        ],
        &[("STELE_PASSPHRASE", "a long enough passphrase")],
    );
    expect(&out, 0, &[]);
    for f in ["keys/kek.key", "keys/signing.key"] {
        let mode = std::fs::metadata(pdir.join(f))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
}

/// Reads tiles from `DATA/log` exactly as a static file server would serve them.
struct PublicTiles(PathBuf);

impl TileReader for PublicTiles {
    type Error = String;
    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, String> {
        let path = self.0.join(tile.path());
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[test]
fn public_directory_is_a_c2sp_tiles_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    // 70 + 600 = 670 entries: two full level-0 tiles and bundles, partial
    // tiles at levels 0 and 1; published sizes 70 and 670.
    append_ok(&dir, &ndjson((0..70).map(|i| format!("t{i}"))));
    let rs = append_ok(&dir, &ndjson((70..670).map(|i| format!("t{i}"))));
    let public = dir.join("log");
    let note = std::fs::read_to_string(public.join("checkpoint")).expect("log/checkpoint");
    let cp = open_checkpoint(&vkey, &note);
    assert_eq!(cp.size, 670);
    assert_eq!(cp.origin, ORIGIN);

    let tiles = tiles_for_size(cp.size);
    let paths: Vec<String> = tiles.iter().map(|t| t.path()).collect();
    assert_eq!(
        paths,
        vec![
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/158",
            "tile/1/000.p/2"
        ]
    );
    for t in &tiles {
        let path = public.join(t.path());
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert_eq!(
            len,
            32 * u64::from(t.width),
            "{} has the wrong length",
            path.display()
        );
    }
    // The root recomputed from the public tiles alone is the signed one.
    let reader = PublicTiles(public.clone());
    let root = stele_tlog::tree_root(&TileHashReader::new(cp.size, &reader), cp.size)
        .expect("root from tiles");
    assert_eq!(root, cp.root, "tiles do not give the checkpoint's root");
    // Entry bundles hold the commitments, in order; their leaf hashes are
    // the level-0 tile hashes.
    let bundles = entry_bundles_for_size(cp.size);
    let bundle_paths: Vec<String> = bundles.iter().map(|t| t.entries_path()).collect();
    assert_eq!(
        bundle_paths,
        vec![
            "tile/entries/000",
            "tile/entries/001",
            "tile/entries/002.p/158"
        ]
    );
    let mut index = 0usize;
    for (b, t) in bundles.iter().zip(tiles.iter()) {
        let bytes = std::fs::read(public.join(b.entries_path())).expect("bundle");
        let entries = decode_bundle(&bytes).expect("bundle decodes");
        assert_eq!(entries.len(), usize::from(b.width));
        let tile = std::fs::read(public.join(t.path())).expect("tile");
        for (k, entry) in entries.iter().enumerate() {
            let leaf = stele_tlog::leaf_hash(entry);
            assert_eq!(
                &tile[32 * k..32 * k + 32],
                &leaf.0[..],
                "leaf {index} of {} differs",
                t.path()
            );
            if index >= 70 {
                assert_eq!(
                    b64_encode(entry),
                    rs[index - 70].commitment,
                    "bundle entry {index}"
                );
            }
            index += 1;
        }
    }
    assert_eq!(index, 670);
    // The older checkpoint's partial tiles stay available for its proofs:
    // as files, or (pruned once their full tile is durable) as the prefix
    // of the full tile, which readers fall back to.
    for t in tiles_for_size(70) {
        let full = stele_tlog::TileId::new(t.level, t.index, 256).expect("tile id");
        assert!(
            public.join(t.path()).is_file() || public.join(full.path()).is_file(),
            "{} of size 70 is gone and has no full tile",
            t.path()
        );
    }
    // Nothing secret is under log/: no plaintext actor in any public file.
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&public, &mut all);
    for f in all {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !bytes.windows(4).any(|w| w == b"t669"),
            "{} holds plaintext",
            f.display()
        );
    }
    // Segments hold no plaintext either (events are encrypted at rest).
    let seg = std::fs::read(segment_file(&dir, "default")).expect("segment");
    assert!(
        !seg.windows(5).any(|w| w == b"t669\""),
        "the segment holds plaintext"
    );
}

#[test]
fn help_version_and_usage_errors() {
    let out = run(&["--version"]);
    expect(&out, 0, &["stele"]);
    let out = run(&["--help"]);
    expect(&out, 0, &["append", "verify-proof"]);
    let out = run(&["frobnicate"]);
    assert_eq!(out.code, 2, "{out}");
    let out = run(&["get", "--data", "/nonexistent"]);
    assert_eq!(out.code, 2, "missing --index is a usage error:\n{out}");
    let out = run(&["get", "--data", "/nonexistent", "--index", "minus-one"]);
    assert_eq!(out.code, 2, "{out}");
    let out = run(&[
        "verify-proof",
        "--vkey",
        "x",
        "--proof",
        "/nonexistent",
        "--event",
        "a",
        "--commitment",
        "b",
    ]);
    assert_eq!(
        out.code, 2,
        "--event and --commitment are exclusive:\n{out}"
    );
}

#[test]
fn reopen_is_idempotent_and_appends_continue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    append_ok(&dir, &ndjson((0..10).map(|i| format!("r{i}"))));
    let note = checkpoint_note(&dir);
    let history = std::fs::read(dir.join("checkpoints")).expect("read");
    // Reading commands publish nothing new.
    for _ in 0..3 {
        assert_eq!(checkpoint_note(&dir), note);
        verify_ok(&dir);
        get(&dir, 9);
    }
    assert_eq!(
        std::fs::read(dir.join("checkpoints")).expect("read"),
        history,
        "reads changed the history"
    );
    let rs = append_ok(&dir, &ndjson((10..20).map(|i| format!("r{i}"))));
    assert_eq!(rs.first().map(|r| r.index), Some(10));
    assert_eq!(checkpoint_size(&dir), 20);
    for i in [0, 9, 10, 19] {
        assert_eq!(actor_of(&get(&dir, i)), format!("r{i}"));
    }
    let out = verify_ok(&dir);
    assert!(
        out.stdout.starts_with("OK: 20 entries, 3 checkpoints"),
        "{out}"
    );
}
