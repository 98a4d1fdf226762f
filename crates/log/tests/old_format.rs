//! Data directories written by earlier builds open, read, verify and keep
//! appending: to their own segments for the rest of their day, as those
//! builds wrote them, and to new segments in the current version.
//!
//! - `fixtures/format-v2`: a build before blocks (segments of version 2:
//!   one record per entry, its salt stored);
//! - `fixtures/format-v3`: a build before reference blocks (segments of
//!   version 3: blocks, each compressed alone).
//!
//! Each was written by `stele init` and `stele append` of that build
//! (`events.ndjson`, its receipts in `receipts.ndjson`); it is never
//! changed, only copied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::Engine;
use stele_log::verify::{NoProgress, verify};
use stele_log::{EntryIndex, Log, OpenOptions, PreparedEvent, Preparer};

/// A directory an earlier build wrote.
struct Fixture {
    dir: &'static str,
    /// The UTC day its events were received.
    day: &'static str,
    /// The version of its segments.
    version: u8,
}

const V2: Fixture = Fixture {
    dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2"),
    day: "2026-12-07",
    version: 2,
};

const V3: Fixture = Fixture {
    dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v3"),
    day: "2026-12-08",
    version: 3,
};

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
fn fixture_copy(fixture: &Fixture, dir: &Path) -> PathBuf {
    let data = dir.join("data");
    copy_dir(&Path::new(fixture.dir).join("data"), &data);
    use std::os::unix::fs::PermissionsExt;
    let mut secrets = vec![data.join("keys/kek.key"), data.join("keys/signing.key")];
    for dek in std::fs::read_dir(data.join("keys/deks")).unwrap() {
        secrets.push(dek.unwrap().path());
    }
    for secret in secrets {
        std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    data
}

fn lines(fixture: &Fixture, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(Path::new(fixture.dir).join(name))
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

/// The codec of each block of a segment.
fn block_codecs(data: &Path, stream: &str, day: &str) -> Vec<u8> {
    let path = data.join(format!("segments/{stream}/{day}.seg"));
    let bytes = std::fs::read(&path).unwrap();
    let (_, mut at) = stele_store::segment::SegmentHeader::decode(&path, &bytes).unwrap();
    let mut codecs = Vec::new();
    while at < bytes.len() && bytes[at..].iter().any(|b| *b != 0) {
        let (record, len) =
            stele_store::segment::parse_record_ref(&path, at as u64, &bytes[at..]).unwrap();
        codecs.push(
            stele_store::block::parse(&path, at as u64, record)
                .unwrap()
                .codec,
        );
        at += len;
    }
    codecs
}

fn segment_version(data: &Path, stream: &str, day: &str) -> u8 {
    std::fs::read(data.join(format!("segments/{stream}/{day}.seg"))).unwrap()[8]
}

/// Every entry of the fixture reads back as it was received, with the
/// commitment and salt of its receipt.
fn check_fixture_entries(fixture: &Fixture, log: &Log) {
    let events = lines(fixture, "events.ndjson");
    let receipts = lines(fixture, "receipts.ndjson");
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
fn a_directory_of_version_2_reads_verifies_and_appends() {
    reads_verifies_and_appends(&V2, "2026-12-08");
}

#[test]
fn a_directory_of_version_3_reads_verifies_and_appends() {
    reads_verifies_and_appends(&V3, "2026-12-09");
}

fn reads_verifies_and_appends(fixture: &Fixture, next_day: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_copy(fixture, dir.path());
    let fixture_day = fixture.day;
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        check_fixture_entries(fixture, &log);
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.entries, 60);

        // A retry of an event of the fixture is recognized.
        let first = log.reader().get(EntryIndex(0)).unwrap().envelope;
        let retry = Preparer::new(&first.writer, "cli", "default");
        let again = retry
            .prepare(first.payload.as_bytes(), at(fixture_day))
            .unwrap();
        let receipts = log.writer().append_batch(&[again]).unwrap();
        assert!(receipts[0].duplicate);
        assert_eq!(receipts[0].index, EntryIndex(0));

        // The fixture's day goes on in its own segments, in their
        // version (large appends too: a segment of version 3 never holds
        // a block compressed against a reference); the next day begins
        // segments of the current version. Each batch holds both days.
        let preparer = Preparer::new("tester", "test", "default");
        let mut n = 0;
        for size in [40, 3000, 3000] {
            let batch: Vec<PreparedEvent> = (n..n + size)
                .map(|n| {
                    let stream = if n % 2 == 0 { "default" } else { "payments" };
                    let day = if n % 4 < 2 { fixture_day } else { next_day };
                    event(&preparer, n, stream, day)
                })
                .collect();
            let receipts = log.writer().append_batch(&batch).unwrap();
            assert_eq!(receipts[0].index, EntryIndex(60 + n as u64));
            for (k, receipt) in receipts.iter().enumerate() {
                let stored = log.reader().get(receipt.index).unwrap();
                assert_eq!(stored.commitment, receipt.commitment);
                assert_eq!(stored.salt, receipt.salt);
                let actor = format!("user-{}@example.com", n + k);
                assert_eq!(stored.envelope.event.actor, actor);
            }
            n += size;
        }
        log.writer().publish().unwrap();
    }
    let referenced = stele_store::block::CODEC_ZSTD_REFERENCED;
    for stream in ["default", "payments"] {
        assert_eq!(segment_version(&data, stream, fixture_day), fixture.version);
        assert_eq!(
            segment_version(&data, stream, next_day),
            stele_store::segment::VERSION
        );
        if fixture.version == 3 {
            assert!(!block_codecs(&data, stream, fixture_day).contains(&referenced));
        }
        assert!(block_codecs(&data, stream, next_day).contains(&referenced));
    }
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    check_fixture_entries(fixture, &log);
    for n in (60..6100).step_by(7) {
        assert!(log.reader().get(EntryIndex(n)).is_ok(), "entry {n}");
    }
    // `verify` opens every block: one compressed against a reference in
    // a segment of version 3 would be refused.
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.entries, report.segments), (6100, 4));
}

/// The fixtures themselves are never written by the tests: each still
/// verifies read-only, with the bytes it was committed with.
#[test]
fn the_fixtures_are_intact() {
    for fixture in [&V2, &V3] {
        let log = stele_log::LogReader::open(
            &Path::new(fixture.dir).join("data"),
            OpenOptions::default(),
        )
        .unwrap();
        let report = verify(&log, &NoProgress).unwrap();
        assert!(report.ok(), "{}: {:?}", fixture.dir, report.problems);
        assert_eq!(report.entries, 60);
    }
}
