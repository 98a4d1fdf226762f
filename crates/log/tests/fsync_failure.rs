//! After a failed fdatasync the writer stops: the batch fails, every later
//! append is refused without touching a file (a failed fdatasync is never
//! retried: the kernel may have dropped the dirty pages it could not
//! write, so a retry that succeeds would prove nothing), and reopening the
//! log recovers it with every acknowledged entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stele_log::EntryIndex;
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, LogError, OpenOptions, PreparedEvent, Preparer};
use stele_store::fileio::{fdatasync_attempts, set_fdatasync_failing};
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

/// Creates a log in `dir/data` and opens it.
fn create_and_open(dir: &Path) -> (PathBuf, Log) {
    let data = dir.join("data");
    Log::create(
        &data,
        CreateOptions {
            origin: "test.example/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    (data, log)
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
    let (data, mut log) = create_and_open(dir.path());
    let preparer = Preparer::new("tester", "test", "default");
    let acknowledged = log.writer().append_batch(&events(&preparer, 0, 5)).unwrap();
    assert_eq!(acknowledged.len(), 5);

    // The disk starts failing fdatasyncs: the batch fails and the handle
    // stops.
    set_fdatasync_failing(&data, true);
    let failed = log.writer().append_batch(&events(&preparer, 5, 3));
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
        let refused = log.writer().append_batch(&events(&preparer, 8 + round, 1));
        assert!(
            matches!(refused, Err(LogError::Poisoned(_))),
            "round {round}: {refused:?}"
        );
        assert!(matches!(
            log.writer().begin_append(&events(&preparer, 20 + round, 1)),
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
    assert!(
        log.reader().size() == 5 || log.reader().size() == 8,
        "size {}",
        log.reader().size()
    );
    for receipt in &acknowledged {
        let stored = log.reader().get(receipt.index).unwrap();
        assert_eq!(stored.envelope.id, receipt.id);
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    // And it takes appends again; a retry of the failed batch never makes
    // a duplicate, whether or not the batch survived.
    let size = log.reader().size();
    let retried = log.writer().append_batch(&events(&preparer, 5, 3)).unwrap();
    assert_eq!(log.reader().size(), size.max(8));
    for (n, receipt) in retried.iter().enumerate() {
        assert_eq!(receipt.index, EntryIndex(5 + n as u64));
    }
    let next = log
        .writer()
        .append_batch(&events(&preparer, 100, 1))
        .unwrap();
    assert_eq!(next[0].index, EntryIndex(8));
    assert!(fdatasync_attempts(&data) > attempts);
    log.writer().publish().unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// Events of `stream` (a new stream makes the batch create a segment, and
/// with it a data key file and directory entries).
fn stream_events(
    preparer: &Preparer,
    stream: &str,
    from: usize,
    count: usize,
) -> Vec<PreparedEvent> {
    (from..from + count)
        .map(|n| {
            let raw = format!(r#"{{"actor":"a{n}","action":"act","stream":"{stream}"}}"#);
            preparer
                .prepare(raw.as_bytes(), jiff::Timestamp::now())
                .unwrap()
        })
        .collect()
}

/// One fault at a time, at one kind of call and on one kind of file, once
/// or persistently: the segment fdatasync only, the index fdatasync only,
/// directory fsyncs only, a full disk on a segment or index write. Each
/// fails the batch that meets it, stops the writer (no later call reaches
/// the faulty operation again: never retried), changes no file after, and
/// a reopen once the fault is gone recovers every acknowledged entry.
#[test]
fn each_fault_alone_stops_the_writer_and_keeps_what_was_acknowledged() {
    use stele_store::fileio::{Errno, Fault, FaultOp, inject, remove_faults};
    let cases: &[(&str, FaultOp, Option<&str>, Errno, bool)] = &[
        (
            "segment fdatasync, persistent",
            FaultOp::DataSync,
            Some("segments/"),
            Errno::IO,
            false,
        ),
        (
            "segment fdatasync, once",
            FaultOp::DataSync,
            Some("segments/"),
            Errno::IO,
            true,
        ),
        (
            "index fdatasync, persistent",
            FaultOp::DataSync,
            Some("index"),
            Errno::IO,
            false,
        ),
        (
            "index fdatasync, once",
            FaultOp::DataSync,
            Some("index"),
            Errno::IO,
            true,
        ),
        (
            "directory fsync, once",
            FaultOp::DirSync,
            None,
            Errno::IO,
            true,
        ),
        (
            "segment write, disk full",
            FaultOp::Write,
            Some("segments/"),
            Errno::NOSPC,
            false,
        ),
        (
            "index write, disk full once",
            FaultOp::Write,
            Some("index"),
            Errno::NOSPC,
            true,
        ),
    ];
    for (name, op, file, errno, once) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (data, mut log) = create_and_open(dir.path());
        let preparer = Preparer::new("tester", "test", "default");
        let acknowledged = log
            .writer()
            .append_batch(&stream_events(&preparer, "a", 0, 5))
            .unwrap();
        inject(Fault {
            under: data.clone(),
            op: *op,
            file: file.map(str::to_string),
            errno: *errno,
            once: *once,
        });
        // A new stream: the batch creates a segment (directory entries and
        // a data key) and writes records and index records.
        let failed = log
            .writer()
            .append_batch(&stream_events(&preparer, "b", 5, 3));
        assert!(
            failed.is_err(),
            "{name}: the batch meeting the fault succeeded"
        );
        let before = sizes(&data);
        for round in 0..3 {
            let refused = log
                .writer()
                .append_batch(&stream_events(&preparer, "a", 8 + round, 1));
            assert!(
                matches!(refused, Err(LogError::Poisoned(_))),
                "{name}: round {round}: {refused:?}"
            );
        }
        assert_eq!(
            sizes(&data),
            before,
            "{name}: a stopped writer touched a file"
        );
        drop(log);
        let attempts = remove_faults(&data);
        assert_eq!(attempts, vec![1], "{name}: the faulty call ran again");

        let mut log = Log::open(&data, OpenOptions::default())
            .unwrap_or_else(|e| panic!("{name}: the reopen failed: {e}"));
        for receipt in &acknowledged {
            let stored = log.reader().get(receipt.index).unwrap();
            assert_eq!(stored.envelope.id, receipt.id, "{name}");
        }
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{name}: {:?}", report.problems);
        log.writer()
            .append_batch(&stream_events(&preparer, "b", 100, 2))
            .unwrap_or_else(|e| panic!("{name}: no append after the reopen: {e}"));
    }
}

/// A read the disk fails (EIO on a segment) is an error for that read,
/// not a stopped log: other reads and appends go on, and the same read
/// succeeds once the disk answers again.
#[test]
fn a_failed_read_fails_that_read_only() {
    use stele_store::fileio::{Fault, FaultOp, inject, remove_faults};
    let dir = tempfile::tempdir().unwrap();
    let (data, mut log) = create_and_open(dir.path());
    let preparer = Preparer::new("tester", "test", "default");
    let receipts = log.writer().append_batch(&events(&preparer, 0, 3)).unwrap();
    inject(Fault {
        under: data.clone(),
        op: FaultOp::Read,
        file: Some("segments/".into()),
        errno: stele_store::fileio::Errno::IO,
        once: true,
    });
    let failed = log.reader().get(receipts[1].index);
    match failed {
        Err(LogError::Store(e)) => assert!(e.to_string().contains("read"), "{e}"),
        other => panic!("expected the read failure, got {other:?}"),
    }
    assert!(log.health().is_ok(), "{:?}", log.health());
    assert_eq!(
        log.reader().get(receipts[1].index).unwrap().envelope.id,
        receipts[1].id
    );
    // Two reads of the segment met the fault: the one it failed and the
    // one after it.
    assert_eq!(remove_faults(&data), vec![2]);
    log.writer().append_batch(&events(&preparer, 3, 1)).unwrap();
}
