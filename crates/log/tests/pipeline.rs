//! Batches in flight: a batch is sealed and written while the one before it
//! is made durable on the commit thread. Receipts come back in order, only
//! for durable entries; retries wait for every batch in flight; and records
//! written but never indexed (a crash before the commit thread got to them)
//! are cut at the next open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, LogError, OpenOptions, PreparedEvent, Preparer};
use stele_store::keys::NewKek;

fn create(dir: &Path) {
    Log::create(
        dir,
        CreateOptions {
            origin: "test.example/log".into(),
            kek: NewKek::Random,
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

fn keyed(preparer: &Preparer, id: &str) -> PreparedEvent {
    let raw = format!(r#"{{"actor":"k","action":"act","id":"{id}"}}"#);
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

fn assert_verifies(log: &Log) {
    let report = verify(log, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn batches_in_flight_finish_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();

    let a = [event(&p, 0, "x"), event(&p, 1, "y")];
    let b = [event(&p, 2, "y"), event(&p, 3, "x"), event(&p, 4, "z")];
    let c = [event(&p, 5, "x")];
    log.begin_append(&a).unwrap();
    log.begin_append(&b).unwrap();
    assert_eq!(log.in_flight(), 2);
    // A third batch must wait: refused without harm to the log.
    assert!(!log.can_begin(&c));
    assert!(matches!(log.begin_append(&c), Err(LogError::Usage(_))));
    assert!(matches!(log.append_batch(&c), Err(LogError::Usage(_))));
    log.health().unwrap();
    // Nothing in flight is visible before it is finished.
    assert_eq!(log.size(), 0);

    let ra = log.finish_append().unwrap();
    assert_eq!(ra.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(log.size(), 2);
    log.begin_append(&c).unwrap();
    let rb = log.finish_append().unwrap();
    assert_eq!(rb.iter().map(|r| r.index).collect::<Vec<_>>(), [2, 3, 4]);
    let rc = log.finish_append().unwrap();
    assert_eq!(rc[0].index, 5);
    assert!(matches!(log.finish_append(), Err(LogError::Usage(_))));
    assert_eq!(log.size(), 6);
    for (receipt, n) in ra.iter().chain(&rb).chain(&rc).zip(0..) {
        let stored = log.get(receipt.index).unwrap();
        assert_eq!(stored.envelope.event.actor, format!("a{n}"));
        assert_eq!(stored.commitment, receipt.commitment);
    }
    drop(log);

    // Dropped without publish: every finished entry is durable, and the
    // open publishes them.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.size(), 6);
    assert_eq!(log.published_size(), 6);
    assert_verifies(&log);
    let more = log.append_batch(&[event(&p, 6, "x")]).unwrap();
    assert_eq!(more[0].index, 6);
}

/// A batch carrying client ids begins only when nothing is in flight, so a
/// retry of an event still in flight is recognised, never appended twice.
#[test]
fn retries_wait_for_the_batches_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();

    log.begin_append(&[keyed(&p, "req-1")]).unwrap();
    let retry = [keyed(&p, "req-1")];
    assert!(!log.can_begin(&retry));
    assert!(matches!(log.begin_append(&retry), Err(LogError::Usage(_))));
    // Batches without ids may still follow.
    assert!(log.can_begin(&[event(&p, 1, "x")]));
    let first = log.finish_append().unwrap();
    assert!(log.can_begin(&retry));
    log.begin_append(&retry).unwrap();
    let second = log.finish_append().unwrap();
    assert!(second[0].duplicate);
    assert_eq!(
        (second[0].index, second[0].salt),
        (first[0].index, first[0].salt)
    );
    assert_eq!(log.size(), 1);
}

/// A crash after two batches were written to their segments but before
/// their index records reached the disk: the next open cuts both, keeps
/// every entry before them, and appends after them at the right offsets.
#[test]
fn written_but_unindexed_batches_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let index_path = data.join("index");
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.append_batch(&[event(&p, 0, "x"), event(&p, 1, "y")])
            .unwrap();
        log.publish().unwrap();
    }
    assert!(index_path.exists(), "the index lives at {index_path:?}");
    let index_before = std::fs::read(&index_path).unwrap();
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.begin_append(&[event(&p, 2, "x"), event(&p, 3, "y")])
            .unwrap();
        log.begin_append(&[event(&p, 4, "x")]).unwrap();
        log.finish_append().unwrap();
        log.finish_append().unwrap();
    }
    // The index as it was before both batches; their segment records stay,
    // and the last one is torn.
    std::fs::write(&index_path, &index_before).unwrap();
    let x_segment = std::fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .flat_map(|stream| std::fs::read_dir(stream).unwrap())
        .map(|e| e.unwrap().path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(&x_segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&x_segment)
        .unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.size(), 2);
    assert_verifies(&log);
    let receipts = log.append_batch(&[event(&p, 5, "x")]).unwrap();
    assert_eq!(receipts[0].index, 2);
    assert_eq!(log.get(2).unwrap().envelope.event.actor, "a5");
    log.publish().unwrap();
    assert_verifies(&log);
}
