//! Tamper evidence: one byte changed (or a file removed or cut) anywhere in
//! a data directory must make `stele verify` fail with exit code 1 and name
//! the file, while the untouched template keeps verifying.
//!
//! The template holds 653 entries appended in three runs (sizes 300, 600,
//! 653), so full tiles and bundles (`log/tile/0/000`, `log/tile/entries/000`),
//! partial tiles of older and of the latest checkpoint, a level-1 partial
//! tile and several checkpoint records all exist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    template: PathBuf,
    case: PathBuf,
}

/// Builds the template and a fresh copy of it to tamper with.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let template = tmp.path().join("template");
    init_log(&template);
    let mut n = 0;
    for size in [300, 600, 653] {
        let actors: Vec<String> = (n..size).map(|i| format!("user-{i}")).collect();
        let rs = append_ok(&template, &ndjson(actors));
        assert_eq!(rs.last().expect("receipts").index, size - 1);
        n = size;
    }
    for f in [
        "log/tile/0/000",
        "log/tile/0/001",
        "log/tile/entries/000",
        "log/tile/entries/001",
        "log/tile/0/002.p/88",
        "log/tile/entries/002.p/88",
        "log/tile/0/002.p/141",
        "log/tile/entries/002.p/141",
        "log/tile/1/000.p/2",
        "keys/deks/1.dek",
    ] {
        assert!(template.join(f).is_file(), "the template lacks {f}");
    }
    // Partial tiles of tiles that became full were pruned (readers use the
    // full tile's prefix).
    assert!(!template.join("log/tile/0/001.p").exists());
    let case = tmp.path().join("case");
    copy_dir(&template, &case);
    Fixture {
        _tmp: tmp,
        template,
        case,
    }
}

impl Fixture {
    fn path(&self, rel: &str) -> PathBuf {
        self.case.join(rel)
    }

    /// Verifies the tampered copy: exit code 1, a `FAIL <file>` line or an
    /// error line naming `names` (path fragments); then checks that the
    /// template still verifies.
    #[track_caller]
    fn expect_detected(&self, names: &[&str]) -> Out {
        let out = verify(&self.case);
        assert_eq!(
            out.code, 1,
            "tampering was not reported with exit code 1:\n{out}"
        );
        assert!(
            !out.stdout.starts_with("OK"),
            "verify says OK after tampering:\n{out}"
        );
        let all = out.all();
        for name in names {
            assert!(all.contains(name), "verify does not name {name:?}:\n{out}");
        }
        // Either verify ran and reported (FAIL lines + FAILED summary) or
        // the log was refused at open with one error line.
        if out.stdout.starts_with("FAILED:") {
            assert!(
                out.stderr.lines().any(|l| l.starts_with("FAIL ")),
                "FAILED without FAIL lines:\n{out}"
            );
        } else {
            expect_one_error_line(&out);
        }
        verify_ok(&self.template);
        out
    }
}

fn seg_name(dir: &Path) -> String {
    let seg = segment_file(dir, "default");
    seg.file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string()
}

#[test]
fn untampered_copy_verifies() {
    let f = fixture();
    let out = verify_ok(&f.case);
    assert!(
        out.stdout.starts_with("OK: 653 entries, 4 checkpoints"),
        "summary:\n{out}"
    );
    verify_ok(&f.template);
    // The copy is a faithful, independent log: same checkpoint.
    assert_eq!(checkpoint_note(&f.case), checkpoint_note(&f.template));
}

#[test]
fn segment_record_byte() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    let len = std::fs::metadata(&seg).expect("stat").len() as i64;
    flip_byte(&seg, len / 2);
    let out = f.expect_detected(&["segments/default/", &seg_name(&f.case)]);
    assert!(
        out.stderr.starts_with("FAIL "),
        "a record byte is reported by verify itself:\n{out}"
    );
}

#[test]
fn segment_last_record_byte() {
    // The very last byte (the CRC of the last record): no trailing record
    // may be taken for a torn, unacknowledged tail and cut silently.
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    flip_byte(&seg, -1);
    f.expect_detected(&[&seg_name(&f.case)]);
}

#[test]
fn segment_header_byte() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    // Byte 14: inside the segment id.
    flip_byte(&seg, 14);
    f.expect_detected(&[&seg_name(&f.case)]);
}

#[test]
fn full_tile() {
    let f = fixture();
    flip_byte(&f.path("log/tile/0/000"), 100);
    f.expect_detected(&["log/tile/0/000"]);
}

#[test]
fn partial_tile_of_older_checkpoint() {
    let f = fixture();
    flip_byte(&f.path("log/tile/0/002.p/88"), 33);
    f.expect_detected(&["log/tile/0/002.p/88"]);
}

#[test]
fn partial_tile_of_latest_checkpoint() {
    let f = fixture();
    flip_byte(&f.path("log/tile/0/002.p/141"), 100);
    f.expect_detected(&["log/tile/0/002.p/141"]);
}

#[test]
fn partial_level1_tile_of_latest_checkpoint() {
    let f = fixture();
    flip_byte(&f.path("log/tile/1/000.p/2"), 10);
    f.expect_detected(&["log/tile/1/000.p/2"]);
}

#[test]
fn full_entry_bundle() {
    let f = fixture();
    flip_byte(&f.path("log/tile/entries/000"), 100);
    f.expect_detected(&["log/tile/entries/000"]);
}

#[test]
fn partial_entry_bundle_of_latest_checkpoint() {
    let f = fixture();
    flip_byte(&f.path("log/tile/entries/002.p/141"), 100);
    f.expect_detected(&["log/tile/entries/002.p/141"]);
}

#[test]
fn checkpoint_history_older_record() {
    let f = fixture();
    // Record 0 is the empty tree's; byte 40 is inside its note text.
    flip_byte(&f.path("checkpoints"), 40);
    f.expect_detected(&["checkpoints"]);
}

#[test]
fn checkpoint_history_last_record() {
    let f = fixture();
    // 10 bytes before the end: inside the last note's signature.
    flip_byte(&f.path("checkpoints"), -10);
    f.expect_detected(&["checkpoints"]);
}

#[test]
fn public_checkpoint() {
    let f = fixture();
    // Inside the root hash line.
    flip_byte(&f.path("log/checkpoint"), 25);
    f.expect_detected(&["log/checkpoint"]);
}

#[test]
fn index_record_of_early_entry() {
    let f = fixture();
    // Entry 3's record: header 64 bytes, then 64 per entry; byte 5 of its
    // commitment.
    flip_byte(&f.path("index"), 64 + 3 * 64 + 5);
    let out = f.expect_detected(&[&format!("{}", f.path("index").display())]);
    assert!(
        out.all().contains("entry 3"),
        "the report names the entry:\n{out}"
    );
}

#[test]
fn kek_file() {
    let f = fixture();
    flip_byte(&f.path("keys/kek.key"), 20);
    f.expect_detected(&["keys/kek.key"]);
}

#[test]
fn signing_key_file() {
    let f = fixture();
    flip_byte(&f.path("keys/signing.key"), 30);
    f.expect_detected(&["keys/signing.key"]);
}

#[test]
fn data_key_file() {
    let f = fixture();
    flip_byte(&f.path("keys/deks/1.dek"), 30);
    f.expect_detected(&["keys/deks/1.dek"]);
}

#[test]
fn meta_json_verifier_key() {
    let f = fixture();
    let path = f.path("meta.json");
    let text = std::fs::read_to_string(&path).expect("read");
    let at = text.find("\"verifier_key\"").expect("verifier_key field") + 40;
    flip_byte(&path, at as i64);
    f.expect_detected(&["meta.json"]);
}

/// One byte changed inside the value of each member of meta.json must be
/// noticed (exit code non-zero): nothing in the identity file may be
/// altered silently.
#[test]
fn meta_json_every_member_is_checked() {
    let f = fixture();
    let original = std::fs::read_to_string(f.path("meta.json")).expect("read");
    let meta: serde_json::Value = serde_json::from_str(&original).expect("meta.json is JSON");
    let members: Vec<String> = meta.as_object().expect("object").keys().cloned().collect();
    for key in ["format", "origin", "log_id", "verifier_key", "kek"] {
        assert!(members.iter().any(|m| m == key), "meta.json lacks {key}");
    }
    let mut silent = Vec::new();
    for key in &members {
        let value = meta[key].to_string();
        let start = original.find(&format!("\"{key}\": ")).expect("member") + key.len() + 4;
        // A byte in the middle of the value (for strings, inside the quotes),
        // changed to another character of the same class so the JSON stays
        // well-formed.
        let mid = start + value.len() / 2;
        let mut bytes = original.clone().into_bytes();
        bytes[mid] = match bytes[mid] {
            b'0'..=b'8' => bytes[mid] + 1,
            b'9' => b'0',
            b'a'..=b'y' => bytes[mid] + 1,
            b'z' => b'a',
            b'A'..=b'Y' => bytes[mid] + 1,
            _ => b'A',
        };
        std::fs::write(f.path("meta.json"), &bytes).expect("write");
        let out = verify(&f.case);
        if out.code == 0 {
            silent.push(format!(
                "{key} (changed to {})",
                String::from_utf8_lossy(&bytes[start..start + value.len()])
            ));
        }
    }
    std::fs::write(f.path("meta.json"), original).expect("restore");
    verify_ok(&f.case);
    assert!(
        silent.is_empty(),
        "meta.json members altered without verify noticing: {silent:?}"
    );
}

#[test]
fn deleted_full_tile_is_reported() {
    let f = fixture();
    std::fs::remove_file(f.path("log/tile/0/000")).expect("remove");
    let out = f.expect_detected(&["log/tile/0/000"]);
    assert!(out.all().contains("missing"), "{out}");
}

#[test]
fn deleted_full_entry_bundle_is_reported() {
    let f = fixture();
    std::fs::remove_file(f.path("log/tile/entries/001")).expect("remove");
    f.expect_detected(&["log/tile/entries/001", "missing"]);
}

#[test]
fn deleted_data_key_is_reported() {
    let f = fixture();
    std::fs::remove_file(f.path("keys/deks/1.dek")).expect("remove");
    f.expect_detected(&["keys/deks/1.dek"]);
}

#[test]
fn truncated_segment_is_reported() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    let len = std::fs::metadata(&seg).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open");
    file.set_len(len - 100).expect("truncate");
    drop(file);
    f.expect_detected(&[&seg_name(&f.case)]);
    // Refused, never "repaired": the file is not cut further or padded.
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), len - 100);
}

#[test]
fn truncated_index_is_reported() {
    let f = fixture();
    let index = f.path("index");
    let len = std::fs::metadata(&index).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .expect("open");
    file.set_len(len - 64).expect("truncate");
    drop(file);
    f.expect_detected(&[&format!("{}", index.display())]);
}

/// Designed behaviour: bytes after the last committed record that are not
/// what an interrupted append leaves (a power loss can leave them, and so
/// can someone writing to the file) are not part of the log. `verify`
/// (read-only) says what the next open will do with them; the open that
/// finds them keeps them in `recovered/`, cuts them, and appends a
/// `log.recovered` event naming them; `verify` then notes the kept file,
/// and reports it if it is altered afterwards.
#[test]
fn garbage_after_segment_end_is_kept_aside_cut_and_recorded() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    let mut bytes = std::fs::read(&seg).expect("read");
    let len = bytes.len();
    bytes.extend_from_slice(&[0xA5; 1000]);
    std::fs::write(&seg, &bytes).expect("write");
    let out = verify_ok(&f.case);
    assert!(out.stdout.starts_with("OK: 653 entries"), "{out}");
    assert!(
        out.stderr.contains("note: ")
            && out.stderr.contains("1000 bytes after the committed length")
            && out
                .stderr
                .contains("the next open keeps them in recovered/"),
        "{out}"
    );
    assert_eq!(
        std::fs::metadata(&seg).expect("stat").len() as usize,
        len + 1000,
        "verify cut nothing"
    );
    // The next writing open keeps them aside and cuts them.
    let rs = append_ok(&f.case, &ndjson(["after".to_string()]));
    assert_eq!(rs[0].index, 654);
    let event = get(&f.case, 653);
    assert_eq!(
        event["event"]["event"]["action"], "log.recovered",
        "{event}"
    );
    let kept = event["event"]["event"]["attributes"]["kept"]
        .as_str()
        .expect("kept")
        .to_string();
    assert_eq!(
        std::fs::read(f.case.join(&kept)).expect("kept file"),
        vec![0xA5; 1000]
    );
    let out = verify_ok(&f.case);
    assert!(out.stdout.starts_with("OK: 655 entries"), "{out}");
    assert!(out.stderr.contains(&kept), "{out}");
    // The kept bytes are evidence: changing them is reported.
    std::fs::write(f.case.join(&kept), [0xA5; 999]).expect("write");
    f.expect_detected(&[&kept, "SHA-256"]);
}

/// What a crash after the segment write but before the index write leaves
/// (zeros from a file system that extended the file, here) is cut, and
/// appending continues at the right place.
#[test]
fn zero_tail_after_segment_end_is_cut_by_recovery() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    let len = std::fs::metadata(&seg).expect("stat").len();
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&seg, &bytes).expect("write");
    let out = verify_ok(&f.case);
    assert!(out.stdout.starts_with("OK: 653 entries"), "{out}");
    assert_eq!(
        std::fs::metadata(&seg).expect("stat").len(),
        len + 4096,
        "verify changed the segment"
    );
    let rs = append_ok(&f.case, &ndjson(["after-crash".to_string()]));
    assert_eq!(rs[0].index, 653);
    verify_ok(&f.case);
    assert_eq!(actor_of(&get(&f.case, 653)), "after-crash");
}

/// A copy of a committed record appended after the end is not what a crash
/// leaves (its entry number is below the log's end): kept aside and cut
/// like any other foreign bytes, and the entry itself is untouched.
#[test]
fn duplicated_last_record_is_kept_aside_and_cut() {
    let f = fixture();
    let seg = segment_file(&f.case, "default");
    let len = std::fs::metadata(&seg).expect("stat").len() as usize;
    let bytes = std::fs::read(&seg).expect("read");
    let stream_len = u16::from_be_bytes([bytes[20], bytes[21]]) as usize;
    let mut pos = 22 + stream_len + 4;
    let mut last = pos;
    while pos < len {
        last = pos;
        let body = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        pos += 4 + body;
    }
    assert_eq!(pos, len, "records tile the segment exactly");
    let mut grown = bytes.clone();
    grown.extend_from_slice(&bytes[last..]);
    std::fs::write(&seg, &grown).expect("write");
    let out = verify_ok(&f.case);
    assert!(out.stdout.starts_with("OK: 653 entries"), "{out}");
    assert!(out.stderr.contains("recovered/"), "{out}");
    assert_eq!(
        std::fs::metadata(&seg).expect("stat").len() as usize,
        grown.len(),
        "verify changed the segment"
    );
    // The next writing open keeps it aside and cuts it.
    append_ok(&f.case, &ndjson(["after".to_string()]));
    let out = verify_ok(&f.case);
    assert!(out.stdout.starts_with("OK: 655 entries"), "{out}");
    assert!(out.stderr.contains("recovered/"), "{out}");
    assert_eq!(actor_of(&get(&f.case, 652)), "user-652");
}

#[test]
fn deleted_segment_is_reported() {
    let f = fixture();
    std::fs::remove_file(segment_file(&f.case, "default")).expect("remove");
    f.expect_detected(&["segment 1", "missing"]);
}

/// The writer generation is part of every record nonce: a lowered or
/// missing counter would let the next writer reuse nonces, so verify
/// compares it with the generations the records were sealed under.
#[test]
fn lowered_writer_generation_is_reported() {
    let f = fixture();
    std::fs::remove_file(f.path("writer-generation")).expect("remove");
    f.expect_detected(&["writer-generation", "nonce reuse"]);
}
