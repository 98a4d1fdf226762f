//! The log is the source of truth for governance: policy versions and
//! holds are events first, the files beside the log are caches that open
//! and `verify` check against those events, a refused request changes no
//! file, and no governance decision is taken at a time earlier than the
//! log's newest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use jiff::Timestamp;
use stele_log::EntryIndex;
use stele_log::governance::HoldSpec;
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, LogError, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_store::keys::NewKek;

const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z as a UTC day number.
const JAN1: i64 = 20_454;

fn noon(d: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + d) * DAY + DAY / 2).unwrap()
}

fn policy(toml: &str) -> Policy {
    let source = PolicySource {
        toml_name: "policy.toml".into(),
        toml: toml.into(),
        cedar_name: None,
        cedar: None,
    };
    Policy::from_source(&source).unwrap_or_else(|e| panic!("{e}"))
}

const TIERS: &str = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "90d"
[streams.compliance]
retain = "forever"
"#;

fn open_new(dir: &Path) -> Log {
    Log::create(
        dir,
        CreateOptions {
            origin: "ledger.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    reopen(dir).unwrap()
}

fn reopen(dir: &Path) -> Result<Log, LogError> {
    let mut log = Log::open(dir, OpenOptions::default())?;
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    Ok(log)
}

fn append(log: &mut Log, streams: &[&str], at: Timestamp) {
    let preparer = Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
    let events: Vec<_> = streams
        .iter()
        .map(|s| {
            let raw = format!(r#"{{"actor":"u","action":"login","stream":"{s}"}}"#);
            preparer.prepare(raw.as_bytes(), at).unwrap()
        })
        .collect();
    log.writer().append_batch(&events).unwrap();
}

/// Every file of the data directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "lock" {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn spec(reason: &str) -> HoldSpec {
    HoldSpec {
        streams: vec!["ops".into()],
        from: None,
        to: None,
        reason: reason.into(),
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// A log with the tiers policy, 100 days of ops and compliance data, and
/// one hold on ops; the clock is day 100.
fn governed(dir: &Path) -> (Log, String) {
    let mut log = open_new(dir);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    for d in 0..100 {
        append(&mut log, &["ops", "compliance"], noon(d));
    }
    let hold = log
        .governance()
        .add_hold(spec("matter 17"), "counsel", noon(100))
        .unwrap();
    log.writer().publish().unwrap();
    (log, hold.id)
}

#[test]
fn an_oversized_hold_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut log, _) = governed(&data);
    let before = snapshot(&data);
    let size = log.reader().size();
    for bad in [
        spec(&"r".repeat(100_000)),
        HoldSpec {
            streams: (0..5000).map(|n| format!("s{n}")).collect(),
            ..spec("matter")
        },
        spec("   "),
    ] {
        let error = log
            .governance()
            .add_hold(bad, "counsel", noon(101))
            .unwrap_err();
        assert!(matches!(error, LogError::Usage(_)), "{error}");
    }
    let error = log
        .governance()
        .add_hold(spec("matter"), &"p".repeat(5000), noon(101))
        .unwrap_err();
    assert!(matches!(error, LogError::Usage(_)), "{error}");
    assert_eq!(
        log.reader().size(),
        size,
        "a refused hold appended an event"
    );
    assert_eq!(log.reader().holds().len(), 1);
    assert!(snapshot(&data) == before, "a refused hold changed a file");
    drop(log);
    let log = reopen(&data).unwrap();
    assert_eq!(log.reader().holds().len(), 1);
}

#[test]
fn a_policy_too_large_for_its_event_is_refused_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut log, _) = governed(&data);
    let before = snapshot(&data);
    let mut toml = TIERS.to_string();
    toml.push_str(&format!("# {}\n", "x".repeat(70_000)));
    let error = log
        .governance()
        .apply_policy(policy(&toml), "admin", noon(101))
        .unwrap_err();
    assert!(matches!(error, LogError::Usage(_)), "{error}");
    assert!(error.to_string().contains("too large"), "{error}");
    assert_eq!(log.reader().policy_versions().len(), 1);
    assert!(snapshot(&data) == before, "a refused policy changed a file");
    drop(log);
    reopen(&data).unwrap();
}

#[test]
fn a_hold_marked_released_in_the_file_alone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, id) = governed(&data);
    drop(log);
    edit_json(&data.join("holds.json"), |v| {
        v["holds"][0]["released_by"] = "mallory".into();
        v["holds"][0]["released_at"] = "2026-04-12T00:00:00Z".into();
    });
    let error = reopen(&data)
        .map(|_| ())
        .expect_err("open acted on an edited holds.json");
    let message = error.to_string();
    assert!(matches!(error, LogError::Integrity(_)), "{message}");
    assert!(message.contains("holds.json"), "{message}");
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("no hold.released event"), "{message}");
}

#[test]
fn a_deleted_holds_file_is_rebuilt_from_the_log_and_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, id) = governed(&data);
    let held = log.reader().holds().to_vec();
    drop(log);
    std::fs::remove_file(data.join("holds.json")).unwrap();
    let mut log = reopen(&data).unwrap();
    assert_eq!(log.reader().holds(), held.as_slice());
    assert!(data.join("holds.json").exists());
    // Ops epochs of days 0..=8 are past 90 days at day 100, but held.
    let purged = log
        .governance()
        .enforce_retention("retention", noon(100))
        .unwrap();
    assert!(purged.iter().all(|t| t.stream != "ops"), "{purged:?}");
    let status = log.reader().retention_status(noon(100));
    assert!(
        status
            .iter()
            .any(|s| s.stream == "ops" && s.held_by == vec![id.clone()])
    );
}

#[test]
fn a_hand_written_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = governed(&data);
    drop(log);
    edit_json(&data.join("holds.json"), |v| {
        let mut forged = v["holds"][0].clone();
        forged["id"] = "hold-00000000000000000000000000000000".into();
        v["holds"].as_array_mut().unwrap().push(forged);
    });
    let message = reopen(&data).map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("no hold.placed event"), "{message}");
}

fn policy_file(data: &Path, seq: u64) -> PathBuf {
    data.join("policies").join(format!("{seq:06}.json"))
}

#[test]
fn an_edited_policy_file_is_refused_even_with_its_hash_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = governed(&data);
    drop(log);
    // `forever` → `1d`, the stored source and its hash rewritten as the
    // format documents: a self-consistent file the log never recorded.
    let shortened = policy(&TIERS.replace("forever", "1d"));
    edit_json(&policy_file(&data, 1), |v| {
        v["source"] = base64::engine::general_purpose::STANDARD
            .encode(shortened.source().to_bytes())
            .into();
        v["hash"] = stele_tlog::hash::hex(&shortened.hash()).into();
    });
    let error = reopen(&data)
        .map(|_| ())
        .expect_err("open acted on an edited policy");
    let message = error.to_string();
    assert!(message.contains("000001.json"), "{message}");
    assert!(message.contains("hash"), "{message}");
}

#[test]
fn a_deleted_policy_file_is_rebuilt_from_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = governed(&data);
    let hash = log.reader().policy_versions()[0].hash.clone();
    drop(log);
    std::fs::remove_dir_all(data.join("policies")).unwrap();
    let log = reopen(&data).unwrap();
    assert_eq!(log.reader().policy_versions().len(), 1);
    assert_eq!(log.reader().policy_versions()[0].hash, hash);
    assert_eq!(log.reader().policy_versions()[0].applied_by, "admin");
    assert!(policy_file(&data, 1).exists());
    // The rebuilt version governs: compliance is kept forever.
    let status = log.reader().retention_status(noon(400));
    assert!(
        status
            .iter()
            .filter(|s| s.stream == "compliance")
            .all(|s| s.purge_after.is_none())
    );
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_policy_version_with_no_event_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = governed(&data);
    drop(log);
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(policy_file(&data, 1)).unwrap()).unwrap();
    forged["seq"] = 2.into();
    forged["event_index"] = serde_json::Value::Null;
    std::fs::write(policy_file(&data, 2), serde_json::to_vec(&forged).unwrap()).unwrap();
    let message = reopen(&data).map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("000002.json"), "{message}");
    assert!(message.contains("no policy.applied event"), "{message}");
}

#[test]
fn verify_reports_a_governance_file_changed_beside_an_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, id) = governed(&data);
    edit_json(&data.join("holds.json"), |v| {
        v["holds"][0]["reason"] = "nothing to see".into();
    });
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(!report.ok());
    let text = format!("{:?}", report.problems);
    assert!(
        text.contains("holds.json") && text.contains(&id) && text.contains("reason"),
        "{text}"
    );
}

#[test]
fn no_governance_decision_at_a_time_earlier_than_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut log, id) = governed(&data);
    // The clock set 31 days back: a shorter policy would be backdated.
    let back = noon(69);
    let shorter = policy(&TIERS.replace("forever", "30d"));
    for error in [
        log.governance()
            .apply_policy(shorter, "admin", back)
            .unwrap_err(),
        log.governance()
            .add_hold(spec("matter"), "counsel", back)
            .unwrap_err(),
        log.governance()
            .release_hold(&id, "counsel", back)
            .unwrap_err(),
        log.governance()
            .enforce_retention("retention", back)
            .unwrap_err(),
        log.governance()
            .purge_epoch(
                "ops",
                stele_event::time::Day::from_number(JAN1 as u32).unwrap(),
                "retention",
                back,
            )
            .unwrap_err(),
    ] {
        assert!(matches!(error, LogError::Refused(_)), "{error}");
        assert!(
            error.to_string().contains("earlier than the newest time"),
            "{error}"
        );
    }
    assert_eq!(log.reader().policy_versions().len(), 1);
    assert!(log.reader().purged().is_empty());
    // The floor survives a reopen (it is read from the log).
    drop(log);
    let mut log = reopen(&data).unwrap();
    let error = log
        .governance()
        .enforce_retention("retention", back)
        .unwrap_err();
    assert!(
        error.to_string().contains("earlier than the newest time"),
        "{error}"
    );
    // At the log's own time, work goes on.
    log.governance()
        .release_hold(&id, "counsel", noon(100))
        .unwrap();
}

#[test]
fn a_crash_between_an_event_and_its_file_is_finished_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, id) = governed(&data);
    drop(log);
    // What a crash right after the `hold.placed` event leaves: the file
    // without the hold (here: as it was before it).
    edit_json(&data.join("holds.json"), |v| {
        v["holds"] = serde_json::json!([]);
    });
    let mut log = reopen(&data).unwrap();
    assert_eq!(log.reader().holds().len(), 1);
    assert_eq!(log.reader().holds()[0].id, id);
    // And right after a `hold.released` event: the file still active.
    let released = log
        .governance()
        .release_hold(&id, "counsel", noon(101))
        .unwrap();
    drop(log);
    edit_json(&data.join("holds.json"), |v| {
        v["holds"][0]["released_by"] = serde_json::Value::Null;
        v["holds"][0]["released_at"] = serde_json::Value::Null;
        v["holds"][0]["released_event"] = serde_json::Value::Null;
    });
    let log = reopen(&data).unwrap();
    assert_eq!(log.reader().holds()[0], released);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("holds.json")).unwrap()).unwrap();
    assert_eq!(on_disk["holds"][0]["released_by"], "counsel");
}

#[test]
fn a_due_epoch_is_announced_and_purged_only_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    for d in 0..3 {
        append(&mut log, &["ops"], noon(d));
    }
    let grace = std::time::Duration::from_secs(1);
    log.governance().set_retention_grace(grace);
    // Day 100: ops epochs 0..=2 are due, but only announced.
    let at = noon(100);
    let run = log.governance().run_retention("retention", at).unwrap();
    assert!(run.purged.is_empty());
    assert_eq!(run.waiting.len(), 3);
    assert!(log.reader().purged().is_empty());
    std::thread::sleep(grace + std::time::Duration::from_millis(100));
    // A day's jump on the wall clock while a second passed: the clocks
    // disagree, so the epochs are announced again, not purged.
    let jumped = log
        .governance()
        .run_retention("retention", at + jiff::SignedDuration::from_hours(24))
        .unwrap();
    assert!(jumped.purged.is_empty(), "a clock jump purged");
    assert_eq!(jumped.waiting.len(), 3);
    // An explicit request is refused while the grace runs.
    let error = log
        .governance()
        .purge_epoch(
            "ops",
            stele_event::time::Day::from_number(JAN1 as u32).unwrap(),
            "retention",
            at + jiff::SignedDuration::from_hours(24),
        )
        .unwrap_err();
    assert!(error.to_string().contains("announced"), "{error}");
    std::thread::sleep(grace + std::time::Duration::from_millis(100));
    // Both clocks moved by about the grace period: purged, each naming its
    // announcement.
    let later = at + jiff::SignedDuration::from_hours(24) + jiff::SignedDuration::from_secs(1);
    let run = log.governance().run_retention("retention", later).unwrap();
    assert_eq!(run.purged.len(), 3, "{run:?}");
    for tombstone in &run.purged {
        let announced = tombstone.announced.expect("names its announcement");
        let event = log.reader().get(EntryIndex(announced)).unwrap();
        assert_eq!(event.envelope.event.action, "retention.due");
        let attributes = event.envelope.event.attributes.unwrap();
        assert_eq!(attributes["segment"], tombstone.segment.0);
        assert!(
            attributes["clock"]
                .as_str()
                .unwrap()
                .contains("announced again")
        );
    }
    log.writer().publish().unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_removed_or_older_attestation_file_is_reported_and_rebuilt_from_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut log, _) = governed(&data);
    let facts = stele_log::audit::AuditFacts {
        listeners: None,
        enforced_policy: None,
    };
    let first = log.governance().attest(&facts, noon(100)).unwrap();
    let latest_path = data.join("audit/latest.json");
    let older = std::fs::read(&latest_path).unwrap();
    let second = log.governance().attest(&facts, noon(100)).unwrap();
    assert!(second.event_index > first.event_index);
    let current = std::fs::read(&latest_path).unwrap();

    // Put back the earlier attestation, then remove the file: verify names
    // the file and the log's latest event each time.
    for damage in [Some(older), None] {
        match &damage {
            Some(bytes) => std::fs::write(&latest_path, bytes).unwrap(),
            None => std::fs::remove_file(&latest_path).unwrap(),
        }
        let report = verify(log.reader(), &NoProgress).unwrap();
        let text = format!("{:?}", report.problems);
        assert!(!report.ok(), "{damage:?}");
        assert!(
            text.contains("latest.json")
                && text.contains(&format!(
                    "audit.attestation event is entry {}",
                    second.event_index.unwrap()
                ))
                || text.contains(&format!(
                    "audit.attestation event (entry {})",
                    second.event_index.unwrap()
                )),
            "{text}"
        );
    }
    // A writing open rebuilds the file from the event, byte for byte.
    drop(log);
    let log = reopen(&data).unwrap();
    assert_eq!(std::fs::read(&latest_path).unwrap(), current);
    assert!(verify(log.reader(), &NoProgress).unwrap().ok());
}

/// Every `_system` event the log writes (policy, holds, retention, key
/// rotation, tokens, attestation) reads back through `SystemEvent` as the
/// event written: parsed and written again, it is the payload stored, and
/// its resource follows the naming rule. The ledger then replays from
/// those events at the next open.
#[test]
fn every_system_event_the_log_writes_reads_back_as_written() {
    use stele_log::tokens::{Role, TokenSpec};
    use stele_log::{SystemEvent, SystemResource};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    for d in 0..3 {
        append(&mut log, &["ops", "compliance"], noon(d));
    }
    let hold = log
        .governance()
        .add_hold(spec("matter 17"), "counsel", noon(3))
        .unwrap();
    log.governance()
        .release_hold(&hold.id, "counsel", noon(4))
        .unwrap();
    let refused = log.governance().purge_epoch(
        "compliance",
        stele_event::time::Day::from_number(JAN1 as u32).unwrap(),
        "admin",
        noon(200),
    );
    assert!(matches!(refused, Err(LogError::Refused(_))), "{refused:?}");
    assert!(
        !log.governance()
            .enforce_retention("retention", noon(200))
            .unwrap()
            .is_empty()
    );
    log.governance()
        .rotate_kek_as(NewKek::Random, "admin", noon(200))
        .unwrap();
    let spec = TokenSpec {
        principal: "ci".into(),
        roles: vec![Role::parse("writer").unwrap()],
        expires_at: None,
        streams: Some(vec!["ops".into()]),
    };
    let token = log
        .governance()
        .create_token(&spec, "admin", noon(200))
        .unwrap();
    log.governance()
        .revoke_token(&token.entry.id, "admin", noon(200))
        .unwrap();
    log.governance()
        .attest(&Default::default(), noon(200))
        .unwrap();

    let mut actions = std::collections::BTreeSet::new();
    for index in 0..log.reader().size() {
        let Ok(stored) = log.reader().get(EntryIndex(index)) else {
            continue; // purged
        };
        if stored.envelope.stream != "_system" {
            continue;
        }
        let event = SystemEvent::parse(&stored.envelope.event)
            .unwrap_or_else(|e| panic!("entry {index}: {e}"))
            .unwrap_or_else(|| panic!("entry {index}: {}", stored.envelope.event.action));
        // Equal as JSON values: a free-form attribute (the policy source)
        // reads back in canonical member order.
        let payload: serde_json::Value = serde_json::from_str(&stored.envelope.payload).unwrap();
        assert_eq!(event.client_event(), payload, "entry {index}");
        let resource = stored.envelope.event.resource.clone().unwrap();
        assert_eq!(SystemResource::parse(&resource), Some(event.resource()));
        actions.insert(event.action());
    }
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        [
            "audit.attestation",
            "hold.placed",
            "hold.released",
            "key.rotated",
            "policy.applied",
            "retention.due",
            "retention.purge",
            "retention.refused",
            "token.created",
            "token.revoked",
        ]
    );
    drop(log);
    let log = reopen(&data).unwrap();
    assert_eq!(log.reader().holds().len(), 1);
    assert_eq!(log.reader().policy_versions().len(), 1);
}

/// A whole-log verification of a view taken before a policy was applied
/// (as the server's scheduled verification runs beside its writer) does
/// not report the policy file the writer wrote since: the log as it is
/// now records it. A file the log does not record stays a problem.
#[test]
fn a_policy_applied_during_a_verification_is_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    let view = log.reader().frozen();
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    let report = verify(&view, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    // A version no event records, written by hand: reported.
    let forged = data.join("policies").join("000002.json");
    let first = std::fs::read(data.join("policies").join("000001.json")).unwrap();
    let text = String::from_utf8(first)
        .unwrap()
        .replacen("\"seq\": 1", "\"seq\": 2", 1);
    std::fs::write(&forged, text).unwrap();
    let report = verify(&log.reader().frozen(), &NoProgress).unwrap();
    assert!(!report.ok(), "a forged policy version passed");
}
