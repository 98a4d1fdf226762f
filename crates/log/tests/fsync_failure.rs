//! After a failed fdatasync the writer stops: the batch fails, every later
//! append is refused without touching a file (a failed fdatasync is never
//! retried: the kernel may have dropped the dirty pages it could not
//! write, so a retry that succeeds would prove nothing), and reopening the
//! log recovers it with every acknowledged entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, LogError, OpenOptions, PreparedEvent, Preparer};
use stele_store::fault::{fdatasync_attempts, set_fdatasync_failing};
use stele_store::keys::NewKek;

fn events(preparer: &Preparer, from: usize, count: usize) -> Vec<PreparedEvent> {
    (from..from + count)
        .map(|n| {
            let raw = format!(r#"{{"actor":"a{n}","action":"act","id":"e{n}"}}"#);
            preparer
                .prepare(raw.as_bytes(), jiff::Timestamp::now())
                .unwrap()
        })
        .collect()
}

/// Bytes of every file below `dir`, by path.
fn sizes(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path().display().to_string(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_failed_fdatasync_stops_the_writer_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Log::create(
        &data,
        CreateOptions {
            origin: "test.example/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let acknowledged = log.append_batch(&events(&preparer, 0, 5)).unwrap();
    assert_eq!(acknowledged.len(), 5);

    // The disk starts failing fdatasyncs: the batch fails and the handle
    // stops.
    set_fdatasync_failing(&data, true);
    let failed = log.append_batch(&events(&preparer, 5, 3));
    match failed {
        Err(LogError::Store(e)) => assert!(e.to_string().contains("fdatasync"), "{e}"),
        other => panic!("expected the fdatasync failure, got {other:?}"),
    }
    assert!(
        matches!(log.health(), Err(LogError::Poisoned(_))),
        "{:?}",
        log.health()
    );
    let attempts = fdatasync_attempts(&data);
    assert!(attempts >= 1, "the failing fdatasync was attempted");

    // Even once the disk works again, this handle never retries or writes:
    // later appends fail at once, no fdatasync is attempted and no file
    // below the data directory changes.
    set_fdatasync_failing(&data, false);
    let before = sizes(&data);
    for round in 0..3 {
        let refused = log.append_batch(&events(&preparer, 8 + round, 1));
        assert!(
            matches!(refused, Err(LogError::Poisoned(_))),
            "round {round}: {refused:?}"
        );
        assert!(matches!(
            log.begin_append(&events(&preparer, 20 + round, 1)),
            Err(LogError::Poisoned(_))
        ));
    }
    assert_eq!(
        fdatasync_attempts(&data),
        attempts,
        "an fdatasync was retried"
    );
    assert_eq!(sizes(&data), before, "a stopped writer touched a file");
    drop(log);

    // Reopening recovers: every acknowledged entry is there and verifies;
    // the failed batch was never acknowledged, so it may or may not be.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert!(log.size() == 5 || log.size() == 8, "size {}", log.size());
    for receipt in &acknowledged {
        let stored = log.get(receipt.index).unwrap();
        assert_eq!(stored.envelope.id, receipt.id);
    }
    let report = verify(&log, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    // And it takes appends again; a retry of the failed batch never makes
    // a duplicate, whether or not the batch survived.
    let size = log.size();
    let retried = log.append_batch(&events(&preparer, 5, 3)).unwrap();
    assert_eq!(log.size(), size.max(8));
    for (n, receipt) in retried.iter().enumerate() {
        assert_eq!(receipt.index, 5 + n as u64);
    }
    let next = log.append_batch(&events(&preparer, 100, 1)).unwrap();
    assert_eq!(next[0].index, 8);
    assert!(fdatasync_attempts(&data) > attempts);
    log.publish().unwrap();
    let report = verify(&log, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
