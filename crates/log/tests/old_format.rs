//! A data directory written by a build before blocks (segments of version
//! 2: one record per entry, its salt stored) opens, reads, verifies and
//! keeps appending: to its own segments for the rest of their day, in
//! records as that build wrote them, and to new segments in blocks. The
//! directory in `fixtures/format-v2` was written by `stele init` and
//! `stele append` of that build (`events.ndjson`, its receipts in
//! `receipts.ndjson`); it is never changed, only copied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::Engine;
use stele_log::verify::{NoProgress, verify};
use stele_log::{EntryIndex, Log, OpenOptions, PreparedEvent, Preparer};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2");
/// The UTC day the fixture's events were received.
const FIXTURE_DAY: &str = "2026-12-07";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the fixture's data directory.
fn fixture_copy(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    copy_dir(&Path::new(FIXTURE).join("data"), &data);
    use std::os::unix::fs::PermissionsExt;
    for secret in [
        "keys/kek.key",
        "keys/signing.key",
        "keys/deks/1.dek",
        "keys/deks/2.dek",
    ] {
        std::fs::set_permissions(data.join(secret), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    data
}

fn lines(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(Path::new(FIXTURE).join(name))
        .unwrap()
        .lines()
        // `stele append` ends with the new checkpoint's note.
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn at(day: &str) -> jiff::Timestamp {
    format!("{day}T12:00:00Z").parse().unwrap()
}

fn event(preparer: &Preparer, n: usize, stream: &str, day: &str) -> PreparedEvent {
    let raw = format!(
        r#"{{"actor":"user-{n}@example.com","action":"document.read","resource":"documents/{n}","stream":"{stream}"}}"#
    );
    preparer.prepare(raw.as_bytes(), at(day)).unwrap()
}

fn segment_version(data: &Path, stream: &str, day: &str) -> u8 {
    std::fs::read(data.join(format!("segments/{stream}/{day}.seg"))).unwrap()[8]
}

/// Every entry of the fixture reads back as it was received, with the
/// commitment and salt of its receipt.
fn check_fixture_entries(log: &Log) {
    let events = lines("events.ndjson");
    let receipts = lines("receipts.ndjson");
    assert_eq!(receipts.len(), 60);
    for (receipt, sent) in receipts.iter().zip(&events) {
        let index = receipt["index"].as_u64().unwrap();
        let stored = log.reader().get(EntryIndex(index)).unwrap();
        assert_eq!(receipt["id"], stored.envelope.id.as_str());
        assert_eq!(receipt["commitment"], b64(&stored.commitment).as_str());
        assert_eq!(receipt["salt"], b64(&stored.salt).as_str());
        assert_eq!(sent["actor"], stored.envelope.event.actor.as_str());
    }
}

#[test]
fn a_directory_of_the_previous_format_reads_verifies_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_copy(dir.path());
    let next_day = "2026-12-08";
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        check_fixture_entries(&log);
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 60);

        // A retry of an event of the fixture is recognized.
        let first = log.reader().get(EntryIndex(0)).unwrap().envelope;
        let retry = Preparer::new(&first.writer, "cli", "default");
        let again = retry
            .prepare(first.payload.as_bytes(), at(FIXTURE_DAY))
            .unwrap();
        let receipts = log.writer().append_batch(&[again]).unwrap();
        assert!(receipts[0].duplicate);
        assert_eq!(receipts[0].index, EntryIndex(0));

        // The fixture's day goes on in its version-2 segments; the next
        // day begins version-3 segments. One batch holds both.
        let preparer = Preparer::new("tester", "test", "default");
        let batch: Vec<PreparedEvent> = (0..40)
            .map(|n| {
                let stream = if n % 2 == 0 { "default" } else { "payments" };
                let day = if n < 20 { FIXTURE_DAY } else { next_day };
                event(&preparer, n, stream, day)
            })
            .collect();
        let receipts = log.writer().append_batch(&batch).unwrap();
        assert_eq!(receipts[0].index, EntryIndex(60));
        log.writer().publish().unwrap();
        for (n, receipt) in receipts.iter().enumerate() {
            let stored = log.reader().get(receipt.index).unwrap();
            assert_eq!(stored.commitment, receipt.commitment);
            assert_eq!(stored.salt, receipt.salt);
            assert_eq!(stored.envelope.event.actor, format!("user-{n}@example.com"));
        }
    }
    for stream in ["default", "payments"] {
        assert_eq!(segment_version(&data, stream, FIXTURE_DAY), 2);
        assert_eq!(segment_version(&data, stream, next_day), 3);
    }
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    check_fixture_entries(&log);
    for n in 60..100 {
        assert!(log.reader().get(EntryIndex(n)).is_ok(), "entry {n}");
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.entries, report.segments), (100, 4));
}

/// The fixture itself is never written by the tests: it still verifies
/// read-only, with the bytes it was committed with.
#[test]
fn the_fixture_is_intact() {
    let log = stele_log::LogReader::open(&Path::new(FIXTURE).join("data"), OpenOptions::default())
        .unwrap();
    let report = verify(&log, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 60);
}
