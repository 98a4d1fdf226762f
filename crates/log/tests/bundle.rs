//! Evidence bundles written from a real log and checked by the offline
//! verifier with nothing but the log's verifier key: a stream's entries
//! round trip, a range over a purged epoch names it and carries its
//! `retention.purge` event, a consistency proof from an older checkpoint
//! holds, and entries beyond the published checkpoint are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use jiff::Timestamp;
use stele_bundle::{ConsistencyCheck, ManifestFields, verify};
use stele_log::bundle::{BundleRequest, write_bundle, write_stream_bundle};
use stele_log::{CreateOptions, EntryIndex, Log, LogError, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_store::keys::NewKek;
use stele_tlog::{Checkpoint, Hash, open_note};

const DAY: i64 = 86_400;
/// 2026-01-01 as a UTC day number.
const JAN1: i64 = 20_454;

fn noon(d: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + d) * DAY + DAY / 2).unwrap()
}

fn new_log(dir: &Path) -> Log {
    Log::create(
        dir,
        CreateOptions {
            origin: "bundle.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let mut log = Log::open(dir, OpenOptions::default()).unwrap();
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    log
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

fn request() -> BundleRequest {
    BundleRequest {
        fields: ManifestFields {
            query: "stream=a".into(),
            by: "local:tester".into(),
            at: "2026-01-02T00:00:00Z".into(),
        },
        known_size: None,
    }
}

/// The size and root of the log's latest checkpoint.
fn tree_head(log: &Log) -> (u64, Hash) {
    let note = log.reader().checkpoint_note();
    let opened = open_note(note.as_bytes(), &[log.reader().verifier()]).unwrap();
    let checkpoint = Checkpoint::parse(&opened.text).unwrap();
    (checkpoint.size, checkpoint.root)
}

#[test]
fn a_streams_entries_round_trip_with_a_consistency_proof() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    for d in 0..3 {
        append(&mut log, &["a", "b", "a", "a", "b"], noon(d));
    }
    log.writer().publish().unwrap();
    let known = tree_head(&log);
    append(&mut log, &["a", "b"], noon(3));
    log.writer().publish().unwrap();
    let reader = log.reader().clone();
    let selected: Vec<u64> = (0..reader.size())
        .filter(|i| {
            reader
                .get(EntryIndex(*i))
                .is_ok_and(|e| e.envelope.stream == "a")
        })
        .collect();
    assert_eq!(selected.len(), 10);
    let request = BundleRequest {
        known_size: Some(known.0),
        ..request()
    };
    let (bundle, summary) = write_bundle(
        &reader,
        selected.iter().map(|i| EntryIndex(*i)),
        &request,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(summary.events, 10);
    let report = verify(bundle.as_slice(), reader.verifier(), Some(known)).unwrap();
    assert_eq!(report.events, 10);
    assert_eq!(report.purged, 0);
    assert_eq!(report.checkpoint.size, reader.published_size());
    assert_eq!(
        report.consistency,
        ConsistencyCheck::Checked { old_size: known.0 }
    );
    assert_eq!(report.manifest.fields, request.fields);
    // Another log's key refuses it.
    let other = tempfile::tempdir().unwrap();
    let other_log = new_log(other.path());
    assert_eq!(
        verify(bundle.as_slice(), other_log.reader().verifier(), None)
            .unwrap_err()
            .code(),
        "checkpoint"
    );
}

#[test]
fn entries_beyond_the_published_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, &["a", "a"], noon(0));
    log.writer().publish().unwrap();
    let size = log.reader().published_size();
    let error = write_bundle(log.reader(), [EntryIndex(size)], &request(), Vec::new()).unwrap_err();
    assert!(matches!(error, LogError::NotFound(_)), "{error}");
    let error = write_bundle(
        log.reader(),
        [EntryIndex(1), EntryIndex(0)],
        &request(),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(error.category(), "order", "{error}");
}

const POLICY: &str = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "2d"
[streams.keep]
retain = "forever"
"#;

#[test]
fn a_range_over_a_purged_epoch_names_it_and_carries_its_purge_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    let source = PolicySource {
        toml_name: "policy.toml".into(),
        toml: POLICY.into(),
        cedar_name: None,
        cedar: None,
    };
    let policy = Policy::from_source(&source).unwrap();
    log.governance()
        .apply_policy(
            policy,
            "admin",
            noon(0) - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    let day0 = append(&mut log, &["ops", "keep", "ops", "ops"], noon(0));
    let day1 = append(&mut log, &["ops", "keep"], noon(1));
    // Day 0 of ops is due on day 3; enforcing announces and purges it.
    let purged = log
        .governance()
        .enforce_retention("retention", noon(3))
        .unwrap();
    assert_eq!(purged.len(), 1);
    let purge_event = purged[0].event_index.unwrap();
    log.writer().publish().unwrap();
    let reader = log.reader().clone();
    let all = (day0[0]..=day1[1]).map(EntryIndex);
    let (bundle, summary) = write_bundle(&reader, all, &request(), Vec::new()).unwrap();
    assert_eq!(
        (summary.events, summary.purged, summary.purge_records),
        (3, 3, 1)
    );
    let report = verify(bundle.as_slice(), reader.verifier(), None).unwrap();
    assert_eq!((report.events, report.purged), (3, 3));
    assert_eq!(report.purged_epochs.len(), 1);
    let epoch = &report.purged_epochs[0];
    assert_eq!(epoch.record.index, purge_event);
    assert_eq!(epoch.record.stream, "ops");
    assert_eq!(epoch.record.epoch, "2026-01-01");
    assert_eq!(epoch.purged_in_bundle, 3);
    for index in [day0[0], day0[2], day0[3]] {
        assert!(epoch.record.covers(index));
    }
    // The stream's export: its three purged entries and its one event left.
    let (bundle, _) = write_stream_bundle(
        &reader,
        "ops",
        (0, reader.published_size()),
        &request(),
        Vec::new(),
    )
    .unwrap();
    let report = verify(bundle.as_slice(), reader.verifier(), None).unwrap();
    assert_eq!((report.events, report.purged), (1, 3));
    assert_eq!(report.first_index, Some(day0[0]));
    assert_eq!(report.last_index, Some(day1[0]));
}
