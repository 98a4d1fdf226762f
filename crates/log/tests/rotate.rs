//! Key-encryption key rotation (`Log::rotate_kek`) and key ages: every event
//! still reads back and verifies, the old KEK opens nothing any more, the
//! kind may change, and a crash after any step of the protocol leaves a log
//! that opens (with the passphrase of the KEK in force), reads and verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use stele_log::layout::Layout;
use stele_log::verify::{NoProgress, verify};
use stele_log::{
    CreateOptions, KekAgeSource, Log, LogError, OpenOptions, PreparedEvent, Preparer, RotateStep,
};
use stele_log::{EntryIndex, SegmentId};
use stele_store::StoreError;
use stele_store::keys::{self, Argon2Params, DataKey, Kek, KekKind, NewKek};
use zeroize::Zeroizing;

const NOW: i64 = 1_790_000_000;

/// Argon2id parameters small enough for tests.
fn cheap() -> Argon2Params {
    Argon2Params {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

fn passphrase(p: &str) -> NewKek {
    NewKek::Passphrase {
        passphrase: Zeroizing::new(p.into()),
        params: cheap(),
    }
}

fn with(p: Option<&str>) -> OpenOptions {
    OpenOptions {
        passphrase: p.map(|p| Zeroizing::new(p.to_string())),
        ..OpenOptions::default()
    }
}

fn create(dir: &Path, kek: NewKek) {
    Log::create(
        dir,
        CreateOptions {
            origin: "test.example/log".into(),
            kek,
        },
    )
    .unwrap();
}

fn event(preparer: &Preparer, n: usize, stream: &str) -> PreparedEvent {
    let raw = format!(r#"{{"actor":"a{n}","action":"act","stream":"{stream}"}}"#);
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

/// Appends `count` events numbered from `first`, spread over three streams
/// (so over at least three segments and data keys), and publishes.
fn append(log: &mut Log, first: usize, count: usize) {
    let preparer = Preparer::new("tester", "test", "default");
    let batch: Vec<PreparedEvent> = (first..first + count)
        .map(|n| event(&preparer, n, &format!("s{}", n % 3)))
        .collect();
    log.writer().append_batch(&batch).unwrap();
    log.writer().publish().unwrap();
}

/// Every event reads back with its actor, and the whole log verifies.
fn assert_all_read_and_verify(log: &Log, count: u64) {
    assert_eq!(log.reader().size(), count);
    for i in 0..count {
        assert_eq!(
            log.reader()
                .get(EntryIndex(i))
                .unwrap()
                .envelope
                .event
                .actor,
            format!("a{i}")
        );
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// No file of a rotation in progress is left in the keys directories.
fn assert_no_leftovers(data: &Path) {
    for dir in [data.join("keys"), data.join("keys/deks")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                !name.ends_with(".next") && !name.ends_with(".tmp"),
                "leftover {}",
                dir.join(name).display()
            );
        }
    }
}

fn dek_paths(data: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(data.join("keys/deks"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let id = path
                .file_name()?
                .to_str()?
                .strip_suffix(".dek")?
                .parse()
                .ok()?;
            Some((id, path))
        })
        .collect();
    out.sort();
    out
}

/// Every data key file and the signing key open under the KEK file at
/// `kek_path` (with `pass`), or none of them do.
fn keys_open_under(data: &Path, kek_path: &Path, pass: Option<&str>) -> bool {
    let kek = Kek::open(kek_path, pass).unwrap();
    let mut results = Vec::new();
    for (id, path) in dek_paths(data) {
        let bytes = std::fs::read(&path).unwrap();
        results.push(match DataKey::unwrap_file(&kek, id, &path, &bytes) {
            Ok(_) => true,
            Err(StoreError::WrongKey { .. }) => false,
            Err(e) => panic!("{e}"),
        });
    }
    let signing = Layout::new(data).signing_key();
    let bytes = std::fs::read(&signing).unwrap();
    results.push(keys::unwrap_signing_seed(&kek, &signing, &bytes).is_ok());
    assert!(results.len() >= 4, "expected three data keys at least");
    assert!(
        results.iter().all(|r| *r) || results.iter().all(|r| !*r),
        "some key files open and some do not: {results:?}"
    );
    results[0]
}

#[test]
fn rotation_keeps_every_event_and_retires_the_old_kek() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data, NewKek::Random);
    let old_copy = dir.path().join("old-kek.key");
    std::fs::copy(data.join("keys/kek.key"), &old_copy).unwrap();

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 0, 30);
    let segments_before = dek_paths(&data).len();
    let info = log.governance().rotate_kek(NewKek::Random, NOW).unwrap();
    assert_eq!((info.created_at, info.number), (NOW, 1));
    assert_eq!(info.kind, KekKind::File);
    assert_eq!(log.reader().kek_info().unwrap(), info);
    assert_no_leftovers(&data);

    // Same handle: every event (cached and uncached keys alike) reads back.
    assert_all_read_and_verify(&log, 30);
    // The old KEK opens no key file any more; the new one opens all.
    assert!(!keys_open_under(&data, &old_copy, None));
    assert!(keys_open_under(&data, &data.join("keys/kek.key"), None));
    assert_eq!(dek_paths(&data).len(), segments_before);

    // New segments after the rotation are wrapped under the new KEK.
    let preparer = Preparer::new("tester", "test", "default");
    log.writer()
        .append_batch(&[event(&preparer, 30, "fresh")])
        .unwrap();
    log.writer().publish().unwrap();
    assert_eq!(dek_paths(&data).len(), segments_before + 1);
    assert!(keys_open_under(&data, &data.join("keys/kek.key"), None));
    drop(log);

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_all_read_and_verify(&log, 31);
    assert_eq!(log.writer().meta().kek, "file");
    // A second rotation counts on.
    assert_eq!(
        log.governance()
            .rotate_kek(NewKek::Random, NOW + 10)
            .unwrap()
            .number,
        2
    );
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().kek_info().unwrap().number, 2);
    assert_all_read_and_verify(&log, 31);
}

#[test]
fn passphrase_to_new_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data, passphrase("old secret"));
    let old_copy = dir.path().join("old-kek.key");
    std::fs::copy(data.join("keys/kek.key"), &old_copy).unwrap();

    let mut log = Log::open(&data, with(Some("old secret"))).unwrap();
    append(&mut log, 0, 12);
    let info = log
        .governance()
        .rotate_kek(passphrase("new secret"), NOW)
        .unwrap();
    assert_eq!(info.kind, KekKind::Passphrase);
    append(&mut log, 12, 3);
    drop(log);

    assert!(matches!(
        Log::open(&data, with(Some("old secret"))),
        Err(LogError::Store(StoreError::WrongKey { .. }))
    ));
    let log = Log::open(&data, with(Some("new secret"))).unwrap();
    assert_eq!(log.reader().meta().kek, "passphrase");
    assert_all_read_and_verify(&log, 15);
    assert!(!keys_open_under(&data, &old_copy, Some("old secret")));
    assert_no_leftovers(&data);
}

#[test]
fn file_to_passphrase_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data, NewKek::Random);
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 0, 9);
    log.governance()
        .rotate_kek(passphrase("now a passphrase"), NOW)
        .unwrap();
    assert_eq!(log.writer().meta().kek, "passphrase");
    drop(log);

    assert!(Log::needs_passphrase(&data).unwrap());
    assert_eq!(Log::read_meta(&data).unwrap().kek, "passphrase");
    assert!(Log::open(&data, OpenOptions::default()).is_err());
    let mut log = Log::open(&data, with(Some("now a passphrase"))).unwrap();
    assert_all_read_and_verify(&log, 9);

    log.governance()
        .rotate_kek(NewKek::Random, NOW + 1)
        .unwrap();
    drop(log);
    assert!(!Log::needs_passphrase(&data).unwrap());
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().meta().kek, "file");
    let info = log.reader().kek_info().unwrap();
    assert_eq!((info.number, info.kind), (2, KekKind::File));
    assert_all_read_and_verify(&log, 9);
}

/// One row per step of the protocol: rotate up to the step, "crash" (drop
/// the handle without cleanup), reopen with the passphrase of the KEK in
/// force at that step, and check everything; then append, rotate again and
/// check again. Run for a kind change (file → passphrase) and for a
/// passphrase → passphrase rotation.
#[test]
fn crash_after_each_step_reopens_reads_and_verifies() {
    let steps = [
        (RotateStep::NextKekCreated, false),
        (RotateStep::NextInfoWritten, false),
        (RotateStep::HalfRewrapped, false),
        (RotateStep::AllRewrapped, false),
        (RotateStep::Committed, true),
        (RotateStep::HalfInstalled, true),
        (RotateStep::AllInstalled, true),
        (RotateStep::MetaUpdated, true),
    ];
    for old in [None, Some("old secret")] {
        for (step, committed) in steps {
            let case = format!("from {old:?}, crash after {step:?}");
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            create(&data, old.map_or(NewKek::Random, passphrase));
            let old_copy = dir.path().join("old-kek.key");
            std::fs::copy(data.join("keys/kek.key"), &old_copy).unwrap();

            let mut log = Log::open(&data, with(old)).unwrap();
            append(&mut log, 0, 10);
            log.governance()
                .rotate_kek_until(passphrase("new secret"), NOW, step)
                .unwrap();
            drop(log); // the crash

            // The KEK in force is the old one before the commit point and
            // the new one from it on; the other passphrase does not open.
            let (in_force, other) = if committed {
                (Some("new secret"), old)
            } else {
                (old, Some("new secret"))
            };
            // The first open finishes (or undoes) the rotation.
            let mut log = Log::open(&data, with(in_force)).unwrap();
            assert_no_leftovers(&data);
            assert_all_read_and_verify(&log, 10);
            let expected_kind = if committed || old.is_some() {
                "passphrase"
            } else {
                "file"
            };
            assert_eq!(log.writer().meta().kek, expected_kind, "{case}");
            assert_eq!(Log::read_meta(&data).unwrap().kek, expected_kind, "{case}");
            let info = log.reader().kek_info().unwrap();
            if committed {
                assert_eq!((info.number, info.created_at), (1, NOW), "{case}");
                assert_eq!(info.source, KekAgeSource::Recorded, "{case}");
                assert!(!keys_open_under(&data, &old_copy, old), "{case}");
            } else {
                assert_eq!(info.number, 0, "{case}");
                assert_eq!(info.source, KekAgeSource::KeyFileModified, "{case}");
                assert!(keys_open_under(&data, &old_copy, old), "{case}");
            }

            // A passphrase KEK in force refuses the other passphrase.
            if in_force.is_some() {
                drop(log);
                assert!(Log::open(&data, with(other)).is_err(), "{case}");
                log = Log::open(&data, with(in_force)).unwrap();
            }

            // The log goes on: appends, a full rotation, a reopen.
            append(&mut log, 10, 4);
            let info = log
                .governance()
                .rotate_kek(NewKek::Random, NOW + 5)
                .unwrap();
            assert_eq!(info.number, if committed { 2 } else { 1 }, "{case}");
            drop(log);
            let log = Log::open(&data, OpenOptions::default()).unwrap();
            assert_no_leftovers(&data);
            assert_all_read_and_verify(&log, 14);
        }
    }
}

/// A rotation that failed before its commit point (here: a data key file
/// the current KEK does not open) changes nothing, and leaves nothing.
#[test]
fn failed_rotation_leaves_the_old_kek_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data, NewKek::Random);
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 0, 6);
    // An orphan data key wrapped under some other KEK.
    let stranger = Kek::create(&dir.path().join("stranger.key"), NewKek::Random).unwrap();
    let (_, bytes) = DataKey::generate(&stranger, 999).unwrap();
    std::fs::write(data.join("keys/deks/999.dek"), bytes).unwrap();

    let error = log
        .governance()
        .rotate_kek(NewKek::Random, NOW)
        .unwrap_err();
    assert!(error.to_string().contains("999.dek"), "{error}");
    assert_no_leftovers(&data);
    assert!(!data.join("keys/kek.next").exists());
    // The handle still works under the old KEK.
    append(&mut log, 6, 3);
    assert_all_read_and_verify(&log, 9);
    assert_eq!(log.reader().kek_info().unwrap().number, 0);
}

#[test]
fn key_ages_fall_back_to_file_times_and_survive_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data, NewKek::Random);
    let day = Duration::from_secs(86_400);
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let set_mtime = |path: &Path, time: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    };
    // A log made by `init` has no kek.info: the key file's time is its age.
    set_mtime(&data.join("keys/kek.key"), long_ago);
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert!(!data.join("keys/kek.info").exists());
    let info = log.reader().kek_info().unwrap();
    assert_eq!(info.created_at, 1_600_000_000);
    assert_eq!(info.number, 0);
    assert_eq!(info.kind, KekKind::File);
    assert_eq!(info.source, KekAgeSource::KeyFileModified);

    append(&mut log, 0, 6);
    let deks = dek_paths(&data);
    for (i, (_, path)) in deks.iter().enumerate() {
        set_mtime(path, long_ago + day * i as u32);
    }
    let expected: Vec<(SegmentId, i64)> = deks
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (SegmentId(*id), 1_600_000_000 + 86_400 * i as i64))
        .collect();
    assert_eq!(log.reader().data_key_ages().unwrap(), expected);

    // Re-wrapping does not make a data key younger.
    log.governance().rotate_kek(NewKek::Random, NOW).unwrap();
    assert_eq!(log.reader().data_key_ages().unwrap(), expected);
    let text = std::fs::read_to_string(data.join("keys/kek.info")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"created_at": NOW, "number": 1, "kind": "file"})
    );
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().kek_info().unwrap().created_at, NOW);
    assert_eq!(log.reader().data_key_ages().unwrap(), expected);
}

fn kek_info_json(data: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(Layout::new(data).kek_info()).unwrap()).unwrap()
}

fn write_kek_info_json(data: &Path, value: &serde_json::Value) {
    std::fs::write(
        Layout::new(data).kek_info(),
        serde_json::to_vec(value).unwrap(),
    )
    .unwrap();
}

/// Asserts that entry `index` is the `key.rotated` event of KEK `number`
/// on behalf of `by`.
fn assert_rotation_event(log: &Log, index: u64, by: &str, number: u64, data_keys: u64) {
    let stored = log.reader().get(EntryIndex(index)).unwrap();
    let event = &stored.envelope.event;
    assert_eq!(event.action, "key.rotated");
    assert_eq!(event.actor, by);
    let attributes = serde_json::to_value(&event.attributes).unwrap();
    assert_eq!(attributes["number"], number);
    assert_eq!(attributes["data_keys_rewrapped"], data_keys);
}

/// A new log at `data` with `events` events, whose KEK "alice" then
/// rotated with `rotate_kek_as`; returns the open log and how many data
/// keys the rotation re-wrapped.
fn rotated_by_alice(data: &Path, events: usize) -> (Log, u64) {
    create(data, NewKek::Random);
    let mut log = Log::open(data, OpenOptions::default()).unwrap();
    append(&mut log, 0, events);
    let rewrapped = dek_paths(data).len() as u64;
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    let info = log
        .governance()
        .rotate_kek_as(NewKek::Random, "alice", now)
        .unwrap();
    assert_eq!(log.reader().size(), events as u64 + 1);
    assert_rotation_event(&log, events as u64, "alice", info.number, rewrapped);
    assert_eq!(kek_info_json(data)["event_index"], events);
    (log, rewrapped)
}

/// `rotate_kek_as` records the rotation in the log; a crash after the
/// rotation committed and before its event was durable leaves `kek.info`
/// saying the event is owed, and the next open appends it, once.
#[test]
fn a_rotation_event_cut_off_by_a_crash_is_appended_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, rewrapped) = rotated_by_alice(&data, 6);
    // The event went to a new `_system` segment, with a data key of its own.
    let data_keys = dek_paths(&data).len() as u64;
    assert_eq!(data_keys, rewrapped + 1);
    drop(log);

    // The second rotation's event never reached the log: `kek.info` as the
    // rotation leaves it before the event is appended.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    log.governance()
        .rotate_kek(NewKek::Random, NOW + 60)
        .unwrap();
    drop(log);
    let mut owed = kek_info_json(&data);
    owed["rotated_by"] = "bob".into();
    owed["data_keys_rewrapped"] = data_keys.into();
    write_kek_info_json(&data, &owed);

    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 8);
    assert_rotation_event(&log, 7, "bob", 2, data_keys);
    assert_eq!(kek_info_json(&data)["event_index"], 7);
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    drop(log);
    // Owed no more: opening again appends nothing.
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 8);
}

/// A crash after the event was durable but before `kek.info` recorded its
/// index: the next open finds the event by its client id instead of
/// appending a second one.
#[test]
fn a_durable_rotation_event_is_never_appended_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, rewrapped) = rotated_by_alice(&data, 3);
    drop(log);
    let mut unrecorded = kek_info_json(&data);
    unrecorded.as_object_mut().unwrap().remove("event_index");
    write_kek_info_json(&data, &unrecorded);

    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 4);
    assert_eq!(kek_info_json(&data)["event_index"], 3);
    assert_rotation_event(&log, 3, "alice", 1, rewrapped);
}
