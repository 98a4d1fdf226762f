//! `verify` checks the files that mirror events against those events:
//! `keys/kek.info` against the `key.rotated` events (an edited `created_at`
//! that would hide an over-age key is found), `audit/latest.json` against
//! its `audit.attestation` event and signature, `audit/state.json` against
//! the signed checkpoints. Each edit is a problem naming the file; the
//! untouched log verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stele_log::audit::AuditFacts;
use stele_log::verify::{CpuPercent, NoProgress, VerifyReport, verify};
use stele_log::{CreateOptions, Log, OpenOptions, Preparer};
use stele_store::keys::NewKek;

fn report(data: &Path) -> VerifyReport {
    let log = stele_log::LogReader::open(data, OpenOptions::default()).unwrap();
    verify(&log, &NoProgress).unwrap()
}

#[track_caller]
fn assert_problem(data: &Path, file: &str, what: &str) {
    let report = report(data);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.location.ends_with(file) && p.what.contains(what)),
        "no problem {what:?} on {file}: {:?}",
        report.problems
    );
}

/// A new log in `data` holding `count` events received at `now`; returns
/// it open, and the events.
fn log_with_events(
    data: &Path,
    count: usize,
    now: jiff::Timestamp,
) -> (Log, Vec<stele_log::PreparedEvent>) {
    Log::create(
        data,
        CreateOptions {
            origin: "files.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(data, OpenOptions::default()).unwrap();
    let events: Vec<_> = (0..count)
        .map(|i| {
            p.prepare(
                format!(r#"{{"actor":"a{i}","action":"x"}}"#).as_bytes(),
                now,
            )
            .unwrap()
        })
        .collect();
    log.writer().append_batch(&events).unwrap();
    (log, events)
}

/// A log with events, two KEK rotations recorded as events, and an
/// attestation; returns `kek.info` after the first and after the second
/// rotation.
fn log_with_rotations_and_attestation(data: &Path) -> (Vec<u8>, Vec<u8>) {
    let now = jiff::Timestamp::now();
    let (mut log, _) = log_with_events(data, 20, now);
    log.governance()
        .rotate_kek_as(NewKek::Random, "local:alice", now)
        .unwrap();
    let first = std::fs::read(data.join("keys/kek.info")).unwrap();
    log.governance()
        .rotate_kek_as(NewKek::Random, "local:bob", now)
        .unwrap();
    let second = std::fs::read(data.join("keys/kek.info")).unwrap();
    log.governance()
        .attest(&AuditFacts::default(), now)
        .unwrap();
    log.writer().publish().unwrap();
    drop(log);
    let clean = report(data);
    assert!(clean.ok(), "{:?}", clean.problems);
    (first, second)
}

#[test]
fn kek_info_must_say_what_the_key_rotated_events_say() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, second) = log_with_rotations_and_attestation(&data);
    let info_path = data.join("keys/kek.info");

    // created_at moved a year later: the key looks younger than it is.
    let mut info: serde_json::Value = serde_json::from_slice(&second).unwrap();
    let created = info["created_at"].as_i64().unwrap();
    info["created_at"] = (created + 365 * 86_400).into();
    std::fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    assert_problem(&data, "keys/kek.info", "created_at");

    // The same edit with the event's record removed from the file.
    let mut stripped = info.clone();
    let object = stripped.as_object_mut().unwrap();
    for member in ["rotated_by", "data_keys_rewrapped", "event_index"] {
        object.remove(member);
    }
    std::fs::write(&info_path, serde_json::to_vec(&stripped).unwrap()).unwrap();
    assert_problem(&data, "keys/kek.info", "created_at");

    // The first rotation's file put back: older than the key.
    std::fs::write(&info_path, &first).unwrap();
    assert_problem(&data, "keys/kek.info", "older than the key");

    // Removed: the age would come from the key file's time.
    std::fs::remove_file(&info_path).unwrap();
    assert_problem(&data, "keys/kek.info", "is missing");

    std::fs::write(&info_path, &second).unwrap();
    assert!(report(&data).ok());
}

#[test]
fn audit_files_must_say_what_the_log_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    log_with_rotations_and_attestation(&data);
    let latest_path = data.join("audit/latest.json");
    let state_path = data.join("audit/state.json");
    let latest = std::fs::read(&latest_path).unwrap();
    let state = std::fs::read(&state_path).unwrap();

    // A finding changed: the signature no longer matches.
    let mut edited: serde_json::Value = serde_json::from_slice(&latest).unwrap();
    edited["findings"][0]["detail"] = "all good".into();
    std::fs::write(&latest_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_problem(&data, "audit/latest.json", "signature");

    // A genuine attestation pointed at another event.
    let mut moved: serde_json::Value = serde_json::from_slice(&latest).unwrap();
    moved["event_index"] = 3.into();
    std::fs::write(&latest_path, serde_json::to_vec(&moved).unwrap()).unwrap();
    assert_problem(
        &data,
        "audit/latest.json",
        "entry 3 is not the audit.attestation",
    );
    std::fs::write(&latest_path, &latest).unwrap();

    // A verified size no checkpoint was signed for.
    let mut progressed: serde_json::Value = serde_json::from_slice(&state).unwrap();
    progressed["verified_size"] = 7.into();
    std::fs::write(&state_path, serde_json::to_vec(&progressed).unwrap()).unwrap();
    assert_problem(&data, "audit/state.json", "not a signed checkpoint");

    std::fs::write(&state_path, &state).unwrap();
    assert!(report(&data).ok());
}

/// A full verification that passed has checked every entry up to the
/// latest signed checkpoint: it moves the verified size there, so the next
/// incremental verification does not check those entries again. The state
/// it writes is one `verify` accepts.
#[test]
fn a_passing_full_verification_moves_the_verified_size_forward() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = jiff::Timestamp::now();
    let (mut log, events) = log_with_events(&data, 30, now);
    log.writer().publish().unwrap();
    assert_eq!(log.reader().audit_state().unwrap().verified_size, 0);

    let full = log.governance().verify_full(now).unwrap();
    assert!(full.ok(), "{:?}", full.problems);
    let signed = log.reader().published_size();
    let (size, root) = full.signed.unwrap();
    assert_eq!(size, signed);
    let state = log.reader().audit_state().unwrap();
    assert_eq!(state.verified_size, signed);
    assert_eq!(state.verified_root, root.to_hex());
    assert_eq!(state.last_full_ok, Some(true));
    // Nothing new to check: the incremental run starts at the signed size.
    let check = log.reader().check_new_entries(&state).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.size, signed);

    // A failed verification leaves the verified size where it was.
    log.writer().append_batch(&events[..5]).unwrap();
    log.writer().publish().unwrap();
    let mut failed = log.reader().verify_full(CpuPercent::BACKGROUND).unwrap();
    failed.problem_count = 1;
    log.governance().record_full_verify(&failed, now).unwrap();
    assert_eq!(log.reader().audit_state().unwrap().verified_size, signed);
    drop(log);
    let after = report(&data);
    assert!(after.ok(), "{:?}", after.problems);
}
