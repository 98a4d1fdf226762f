//! Retention, legal holds and purges, on a simulated clock: a year of
//! appends and enforcement runs in seconds, and every expectation below is
//! computed from the calendar, not from the engine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use stele_event::time::Day;
use stele_log::governance::HoldSpec;
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, EntryIndex, Log, LogError, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_store::keys::NewKek;

const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z as a UTC day number.
const JAN1: i64 = 20_454;

/// Noon (UTC) of simulated day `d` (day 0 is 2026-01-01).
fn noon(d: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + d) * DAY + DAY / 2).unwrap()
}

/// The UTC day numbered `number`.
fn day(number: i64) -> Day {
    Day::from_number(u32::try_from(number).unwrap()).unwrap()
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
[streams.legal]
retain_until = "2026-06-30"
"#;

/// Opens the log with no grace between announcing and purging: the
/// simulated clock jumps a day at a time (`announce.rs` is tested in
/// `governance_ledger.rs`).
fn opened(dir: &Path) -> Log {
    let mut log = Log::open(dir, OpenOptions::default()).unwrap();
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    log
}

fn open_new(dir: &Path) -> Log {
    Log::create(
        dir,
        CreateOptions {
            origin: "retention.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    opened(dir)
}

/// Appends one event per stream named, received at `at`; returns indices.
fn append(log: &mut Log, streams: &[&str], at: Timestamp) -> Vec<u64> {
    let preparer = Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
    let events: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let raw = format!(r#"{{"actor":"u{n}","action":"login","stream":"{s}"}}"#);
            preparer.prepare(raw.as_bytes(), at).unwrap()
        })
        .collect();
    log.writer()
        .append_batch(&events)
        .unwrap()
        .into_iter()
        .map(|r| r.index.0)
        .collect()
}

fn purged_epochs(log: &Log, stream: &str) -> BTreeSet<i64> {
    log.reader()
        .purged()
        .values()
        .filter(|t| t.stream == stream)
        .map(|t| i64::from(t.epoch_day.number()) - JAN1)
        .collect()
}

/// Publishes what is pending (system events ask for a checkpoint without
/// waiting), then verifies everything.
fn assert_verifies(log: &mut Log) {
    log.writer().publish().unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// Every `_system` event with this action, as (index, attributes).
fn system_events(log: &Log, action: &str) -> Vec<(u64, serde_json::Value)> {
    (0..log.reader().size())
        .filter_map(|i| log.reader().get(EntryIndex(i)).ok())
        .filter(|e| e.envelope.stream == "_system" && e.envelope.event.action == action)
        .map(|e| {
            (
                e.index.0,
                serde_json::Value::Object(e.envelope.event.attributes.clone().unwrap_or_default()),
            )
        })
        .collect()
}

#[test]
fn a_year_of_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(
            policy(TIERS),
            "admin",
            noon(0) - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    let mut by_day: Vec<(i64, Vec<u64>)> = Vec::new();
    // 2026-07-01 is day 181: legal data is kept through 2026-06-30.
    let legal_purge_day = 181;
    for d in 0..365 {
        let indices = append(&mut log, &["ops", "ops", "compliance", "legal"], noon(d));
        by_day.push((d, indices));
        log.governance()
            .enforce_retention("retention", noon(d))
            .unwrap();
        // ops epoch e may go from the start of day e + 1 + 90.
        let expected_ops: BTreeSet<i64> = (0..=d).filter(|e| e + 91 <= d).collect();
        assert_eq!(purged_epochs(&log, "ops"), expected_ops, "day {d}");
        // Legal data is kept through 2026-06-30; an epoch written later is
        // kept until it ends.
        let expected_legal: BTreeSet<i64> = (0..=d)
            .filter(|e| (*e + 1).max(legal_purge_day) <= d)
            .collect();
        assert_eq!(purged_epochs(&log, "legal"), expected_legal, "day {d}");
        assert!(purged_epochs(&log, "compliance").is_empty());
        assert!(purged_epochs(&log, "_system").is_empty());
    }
    // Nothing purged early: each decision came at or after its retention.
    for t in log.reader().purged().values() {
        assert!(t.decided_at >= t.purge_after, "{t:?}");
        assert!(t.decided_at >= (i64::from(t.epoch_day.number()) + 1) * DAY);
        assert_eq!(t.entries, if t.stream == "ops" { 2 } else { 1 });
    }
    log.writer().publish().unwrap();
    // Purged events say so; the others read back and prove inclusion.
    let leaf = |log: &Log, i: u64| {
        let record = log.reader().get(EntryIndex(i)).unwrap();
        stele_tlog::leaf_hash(&record.commitment)
    };
    for (d, indices) in &by_day {
        let ops_gone = d + 91 <= 364;
        for (k, index) in indices.iter().enumerate() {
            let gone = match k {
                0 | 1 => ops_gone,
                2 => false,
                _ => (d + 1).max(legal_purge_day) <= 364,
            };
            match log.reader().get(EntryIndex(*index)) {
                Err(LogError::Purged { tombstone, .. }) => {
                    assert!(gone, "entry {index} of day {d} purged early");
                    assert!(tombstone.covers(*index));
                    let message = log
                        .reader()
                        .get(EntryIndex(*index))
                        .unwrap_err()
                        .to_string();
                    assert!(message.contains("purged by policy"), "{message}");
                }
                Ok(_) => {
                    assert!(!gone, "entry {index} of day {d} should be purged");
                    let proof = log
                        .reader()
                        .inclusion_proof(EntryIndex(*index), None)
                        .unwrap();
                    proof
                        .verify(&leaf(&log, *index), &[log.reader().verifier()], None)
                        .unwrap();
                }
                Err(e) => panic!("entry {index}: {e}"),
            }
        }
    }
    // One signed purge event per purged epoch.
    let purges = system_events(&log, "retention.purge");
    assert_eq!(purges.len(), log.reader().purged().len());
    for t in log.reader().purged().values() {
        let (index, attributes) = purges
            .iter()
            .find(|(i, _)| Some(*i) == t.event_index)
            .unwrap();
        assert_eq!(attributes, &t.event_attributes(), "event {index}");
    }
    let count = log.reader().purged().len();
    drop(log);
    let log = opened(&data);
    assert_eq!(log.reader().purged().len(), count);
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.purged_segments, count);
}

#[test]
fn holds_block_purges_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_new(&dir.path().join("data"));
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    for d in 0..30 {
        append(&mut log, &["ops", "compliance"], noon(d));
    }
    let hold = log
        .governance()
        .add_hold(
            HoldSpec {
                streams: vec!["ops".into()],
                from: Some("2026-01-11".into()),
                to: Some("2026-01-21".into()),
                reason: "matter 42".into(),
            },
            "counsel",
            noon(30),
        )
        .unwrap();
    log.governance()
        .enforce_retention("retention", noon(150))
        .unwrap();
    let held: BTreeSet<i64> = (10..=20).collect();
    let expected: BTreeSet<i64> = (0..30).filter(|e| !held.contains(e)).collect();
    assert_eq!(purged_epochs(&log, "ops"), expected);
    let status = log.reader().retention_status(noon(150));
    for s in status.iter().filter(|s| s.stream == "ops") {
        assert_eq!(s.held_by, vec![hold.id.clone()]);
        assert!(!s.due);
    }
    // An explicit purge of a held epoch is refused and logged.
    let err = log
        .governance()
        .purge_epoch("ops", day(JAN1 + 15), "admin", noon(150))
        .unwrap_err();
    assert!(matches!(err, LogError::Refused(_)), "{err}");
    assert!(err.to_string().contains(&hold.id), "{err}");
    let refused = system_events(&log, "retention.refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1["stream"], "ops");
    // A hold on everything, unbounded, also stops the scheduler.
    let all = log
        .governance()
        .add_hold(
            HoldSpec {
                reason: "regulator inquiry".into(),
                ..HoldSpec::default()
            },
            "counsel",
            noon(151),
        )
        .unwrap();
    log.governance()
        .release_hold(&hold.id, "counsel", noon(152))
        .unwrap();
    log.governance()
        .enforce_retention("retention", noon(152))
        .unwrap();
    assert_eq!(purged_epochs(&log, "ops"), expected);
    log.governance()
        .release_hold(&all.id, "counsel", noon(153))
        .unwrap();
    log.governance()
        .enforce_retention("retention", noon(153))
        .unwrap();
    assert_eq!(purged_epochs(&log, "ops"), (0..30).collect());
    // Placing and releasing were recorded.
    assert_eq!(system_events(&log, "hold.placed").len(), 2);
    assert_eq!(system_events(&log, "hold.released").len(), 2);
    let again = log
        .governance()
        .release_hold(&all.id, "counsel", noon(154))
        .unwrap_err();
    assert!(matches!(again, LogError::Refused(_)), "{again}");
    assert_verifies(&mut log);
}

#[test]
fn no_path_deletes_early_and_shortening_applies_to_new_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    // Without any policy (the shipped default) nothing is ever purged.
    append(&mut log, &["default"], noon(0));
    assert!(
        log.governance()
            .enforce_retention("retention", noon(3000))
            .unwrap()
            .is_empty()
    );
    let err = log
        .governance()
        .purge_epoch("default", day(JAN1), "admin", noon(3000))
        .unwrap_err();
    assert!(err.to_string().contains("forever"), "{err}");

    // A policy that drops a stream holding data is refused.
    let err = log
        .governance()
        .apply_policy(policy(TIERS), "admin", noon(1))
        .unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");
    let tiers = format!("{TIERS}\n[streams.default]\nretain = \"forever\"\n");
    log.governance()
        .apply_policy(policy(&tiers), "admin", noon(1))
        .unwrap();
    for d in 1..30 {
        append(&mut log, &["ops"], noon(d));
    }
    // Explicit purge before the end of retention: refused, logged.
    let err = log
        .governance()
        .purge_epoch("ops", day(JAN1 + 5), "admin", noon(40))
        .unwrap_err();
    assert!(matches!(err, LogError::Refused(_)));
    assert!(err.to_string().contains("2026-04-07"), "{err}"); // 5 + 1 + 90 = day 96
    // Shorten ops to 10 days at day 30: epochs begun before keep 90 days.
    let short = tiers.replace("retain = \"90d\"", "retain = \"10d\"");
    let outcome = log
        .governance()
        .apply_policy(policy(&short), "admin", noon(30))
        .unwrap();
    assert!(
        outcome.changes.iter().any(|c| c.contains("ops")),
        "{:?}",
        outcome.changes
    );
    for d in 30..45 {
        append(&mut log, &["ops"], noon(d));
        log.governance()
            .enforce_retention("retention", noon(d))
            .unwrap();
    }
    // Epoch 31 (begun after the change) went at day 42; epoch 29 did not.
    let purged = purged_epochs(&log, "ops");
    assert_eq!(purged, (31..=33).collect(), "{purged:?}");
    // Lengthen to 200 days at day 45: applies to everything still stored.
    let long = tiers.replace("retain = \"90d\"", "retain = \"200d\"");
    log.governance()
        .apply_policy(policy(&long), "admin", noon(45))
        .unwrap();
    log.governance()
        .enforce_retention("retention", noon(120))
        .unwrap();
    assert_eq!(purged_epochs(&log, "ops"), (31..=33).collect());
    // Epoch 2 may go from day 2 + 1 + 200 = 203. Epoch 1 began before
    // the first policy, when the log already held data under the shipped
    // default (forever): it is never due.
    log.governance()
        .enforce_retention("retention", noon(202))
        .unwrap();
    assert!(!purged_epochs(&log, "ops").contains(&2));
    log.governance()
        .enforce_retention("retention", noon(203))
        .unwrap();
    assert!(purged_epochs(&log, "ops").contains(&2));
    log.governance()
        .enforce_retention("retention", noon(5000))
        .unwrap();
    assert!(!purged_epochs(&log, "ops").contains(&1));
    // Every version was logged; re-applying the active one is a no-op.
    assert_eq!(system_events(&log, "policy.applied").len(), 3);
    let again = log
        .governance()
        .apply_policy(policy(&long), "admin", noon(300))
        .unwrap();
    assert_eq!(again.seq, None);
    drop(log);
    let mut log = opened(&data);
    assert_eq!(log.reader().policy_versions().len(), 3);
    assert_verifies(&mut log);
}

#[test]
fn a_purge_interrupted_at_any_step_completes_on_open() {
    for step in 1..=5u8 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut log = open_new(&data);
        log.governance()
            .apply_policy(policy(TIERS), "admin", noon(0))
            .unwrap();
        let indices = append(&mut log, &["ops", "ops", "compliance"], noon(0));
        append(&mut log, &["ops"], noon(1));
        stele_store::fileio::stop_after(
            &data,
            stele_log::governance::PURGE_STOP_POINTS[usize::from(step) - 1],
        );
        assert!(
            log.governance()
                .enforce_retention("retention", noon(92))
                .is_err()
        );
        assert!(log.health().is_err(), "a stopped purge poisons the handle");
        drop(log);
        let mut log = opened(&data);
        assert_eq!(
            purged_epochs(&log, "ops"),
            [0].into_iter().collect(),
            "step {step}"
        );
        let tombstone = log.reader().purged().values().next().unwrap().clone();
        assert!(tombstone.event_index.is_some(), "step {step}");
        assert!(!log.reader().layout().dek(tombstone.segment.0).exists());
        assert!(
            !log.reader()
                .layout()
                .segment("ops", tombstone.epoch_day)
                .exists()
        );
        assert_eq!(
            system_events(&log, "retention.purge").len(),
            1,
            "step {step}"
        );
        assert!(matches!(
            log.reader().get(EntryIndex(indices[0])),
            Err(LogError::Purged { .. })
        ));
        assert!(log.reader().get(EntryIndex(indices[2])).is_ok());
        assert_verifies(&mut log);
    }
}

#[test]
fn verify_reports_altered_purge_records_and_resurrected_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    append(&mut log, &["ops", "ops"], noon(0));
    append(&mut log, &["ops"], noon(1));
    log.governance()
        .enforce_retention("retention", noon(91))
        .unwrap();
    let tombstone = log.reader().purged().values().next().unwrap().clone();
    let path = data.join("segments/ops/2026-01-01.purged");
    let original = std::fs::read(&path).unwrap();
    drop(log);

    // Claims fewer entries than the index gives the segment; says the
    // retention ended earlier than the policy allows. Either way the
    // record disagrees with the log's `retention.purge` event: the open
    // refuses it, naming the file and the event.
    let early = (JAN1 + 10) * DAY;
    let text = String::from_utf8(original.clone()).unwrap();
    for altered in [
        text.replace("\"entries\": 2", "\"entries\": 1"),
        text.replace(
            &format!("\"purge_after\": {}", tombstone.purge_after),
            &format!("\"purge_after\": {early}"),
        ),
    ] {
        assert_ne!(altered, text);
        std::fs::write(&path, altered).unwrap();
        let error = Log::open(&data, OpenOptions::default())
            .map(|_| ())
            .expect_err("an altered purge record was accepted");
        let message = error.to_string();
        assert!(
            message.contains(".purged") && message.contains("retention.purge event"),
            "{message}"
        );
    }
    std::fs::write(&path, &original).unwrap();
    drop(opened(&data));

    // The tombstone removed: the entries point at a segment that is gone,
    // with no record of why (a deletion outside policy).
    std::fs::remove_file(&path).unwrap();
    match Log::open(&data, OpenOptions::default()) {
        Err(e) => assert!(
            e.to_string().contains("not on disk") || e.to_string().contains("purge record"),
            "{e}"
        ),
        Ok(log) => {
            let report = verify(log.reader(), &NoProgress).unwrap();
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.what.contains("is missing")),
                "{:?}",
                report.problems
            );
        }
    }
    std::fs::write(&path, &original).unwrap();

    // A data key file put back after the purge.
    std::fs::write(
        data.join(format!("keys/deks/{}.dek", tombstone.segment)),
        b"x",
    )
    .unwrap();
    let mut log = opened(&data);
    // (Open finishes the purge again: the key file is deleted.)
    assert_verifies(&mut log);
    assert!(
        !data
            .join(format!("keys/deks/{}.dek", tombstone.segment))
            .exists()
    );
}

#[test]
fn a_forged_purge_record_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    append(&mut log, &["ops"], noon(0));
    let live = append(&mut log, &["ops", "ops"], noon(1));
    append(&mut log, &["ops"], noon(2));
    log.governance()
        .enforce_retention("retention", noon(91))
        .unwrap();
    let genuine = log.reader().purged().values().next().unwrap().clone();
    // Day 1 of `ops` is not due before day 92: a purge record for it is a
    // forgery, however well formed.
    let status = log.reader().retention_status(noon(91));
    let target = status
        .iter()
        .find(|s| s.stream == "ops" && s.epoch_day == genuine.epoch_day.checked_add(1).unwrap())
        .unwrap()
        .clone();
    assert!(!target.due);
    drop(log);

    let mut forged: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("segments/ops/2026-01-01.purged")).unwrap(),
    )
    .unwrap();
    forged["segment"] = target.segment.0.into();
    forged["epoch"] = "2026-01-02".into();
    forged["epoch_day"] = target.epoch_day.number().into();
    forged["event_index"] = serde_json::Value::Null;
    let forged_path = data.join("segments/ops/2026-01-02.purged");
    std::fs::write(&forged_path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();

    let err = Log::open(&data, OpenOptions::default()).expect_err("refused");
    assert!(err.to_string().contains("nothing was deleted"), "{err}");
    assert!(data.join("segments/ops/2026-01-02.seg").exists());
    assert!(
        data.join(format!("keys/deks/{}.dek", target.segment))
            .exists()
    );

    // Without the forgery everything is still there and verifies.
    std::fs::remove_file(&forged_path).unwrap();
    let mut log = opened(&data);
    for index in live {
        assert!(log.reader().get(EntryIndex(index)).is_ok(), "entry {index}");
    }
    assert_verifies(&mut log);
}

#[test]
fn data_written_before_the_first_policy_keeps_the_default_forever() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    // Written under the shipped default: kept forever.
    let before = append(&mut log, &["ops"], noon(0));
    let outcome = log
        .governance()
        .apply_policy(policy(TIERS), "admin", noon(1))
        .unwrap();
    assert!(log.reader().policy_versions()[0].prior_data);
    assert!(outcome.seq == Some(1));
    let after = append(&mut log, &["ops"], noon(2));
    log.governance()
        .enforce_retention("retention", noon(200))
        .unwrap();
    // Day 2 began after version 1: its 90 days are over. Day 0 began under
    // the shipped default and is never due.
    assert_eq!(purged_epochs(&log, "ops"), [2].into_iter().collect());
    assert!(log.reader().get(EntryIndex(before[0])).is_ok());
    assert!(matches!(
        log.reader().get(EntryIndex(after[0])),
        Err(LogError::Purged { .. })
    ));
    let err = log
        .governance()
        .purge_epoch("ops", day(JAN1), "admin", noon(5000))
        .unwrap_err();
    assert!(matches!(err, LogError::Refused(_)), "{err}");
    assert!(err.to_string().contains("forever"), "{err}");
    drop(log);
    // The flag survives reopening.
    let mut log = opened(&data);
    assert!(log.reader().policy_versions()[0].prior_data);
    log.governance()
        .enforce_retention("retention", noon(6000))
        .unwrap();
    assert!(log.reader().get(EntryIndex(before[0])).is_ok());
    assert_verifies(&mut log);
}

/// Bytes recovery kept aside from a segment are part of what its purge
/// destroys; those of other segments stay.
#[test]
fn a_purge_deletes_the_bytes_kept_aside_from_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    log.governance()
        .apply_policy(policy(TIERS), "admin", noon(0))
        .unwrap();
    append(&mut log, &["ops", "compliance"], noon(0));
    append(&mut log, &["ops"], noon(1));
    log.writer().publish().unwrap();
    drop(log);
    for stream in ["ops", "compliance"] {
        let first = std::fs::read_dir(data.join("segments").join(stream))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .min()
            .unwrap();
        let mut bytes = std::fs::read(&first).unwrap();
        let end = bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count();
        bytes.truncate(end);
        bytes.extend_from_slice(b"not a record");
        std::fs::write(&first, &bytes).unwrap();
    }
    let mut log = opened(&data);
    let kept = stele_log::salvage::list(log.reader().layout()).unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(system_events(&log, "log.recovered").len(), 2);
    log.governance()
        .enforce_retention("retention", noon(92))
        .unwrap();
    let tombstone = log.reader().purged().values().next().unwrap().clone();
    let left = stele_log::salvage::list(log.reader().layout()).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].1.segment, tombstone.segment.0);
    let files = std::fs::read_dir(log.reader().layout().recovered())
        .unwrap()
        .count();
    assert_eq!(files, 2, "the other segment's bytes and manifest stay");
    log.writer().publish().unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
}
