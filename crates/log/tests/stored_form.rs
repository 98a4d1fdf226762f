//! Segment records keep an envelope packed or as its canonical bytes
//! (`docs/formats/event.md`, "Stored form"): every entry of a log holding
//! both reads back and verifies, and a record whose packed body is damaged
//! under a valid seal is reported, never read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stele_event::{PACKED_FORM, canonical_from_stored};
use stele_log::EntryIndex;
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, OpenOptions, PreparedEvent, Preparer};
use stele_store::keys::NewKek;

fn open_new(dir: &std::path::Path) -> Log {
    Log::create(
        dir,
        CreateOptions {
            origin: "test.example/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    Log::open(dir, OpenOptions::default()).unwrap()
}

fn event(preparer: &Preparer, n: usize) -> PreparedEvent {
    let raw = format!(
        r#"{{"actor":"user-{n}@example.com","action":"document.read","resource":"documents/{n}","attributes":{{"note":"a \"quoted\" word, number {n}"}}}}"#
    );
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

/// The event as a log written before the packed form kept it.
fn canonical_form(mut event: PreparedEvent) -> PreparedEvent {
    let mut scratch = Vec::new();
    event.stored = canonical_from_stored(&event.stored, &mut scratch)
        .unwrap()
        .to_vec();
    event
}

#[test]
fn packed_and_canonical_records_read_and_verify_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let events: Vec<PreparedEvent> = (0..40)
        .map(|n| {
            let e = event(&preparer, n);
            assert_eq!(e.stored[0], PACKED_FORM, "event {n} is packed");
            if n % 3 == 0 { canonical_form(e) } else { e }
        })
        .collect();
    let expected: Vec<[u8; 32]> = events.iter().map(|e| e.commitment).collect();
    log.writer().append_batch(&events).unwrap();
    log.writer().publish().unwrap();
    drop(log);

    let log = Log::open(&data, OpenOptions::default()).unwrap();
    for (n, commitment) in expected.iter().enumerate() {
        let stored = log.reader().get(EntryIndex(n as u64)).unwrap();
        assert_eq!(&stored.commitment, commitment);
        assert_eq!(stored.envelope.event.actor, format!("user-{n}@example.com"));
        assert_eq!(stored.canonical, stored.envelope.canonical_bytes());
        assert_eq!(
            stele_event::commitment(&stored.salt, &stored.canonical),
            *commitment
        );
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 40);
}

/// A packed body that rebuilds other bytes is sealed correctly (so the seal
/// does not catch it) but fails its commitment: `get` refuses the entry and
/// `verify` names it.
#[test]
fn a_wrong_packed_body_fails_its_commitment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut log = open_new(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let good = event(&preparer, 1);
    let mut bad = event(&preparer, 2);
    // Same shape, one literal byte changed: it still unpacks.
    let mut scratch = Vec::new();
    let canonical = canonical_from_stored(&bad.stored, &mut scratch)
        .unwrap()
        .to_vec();
    let at = bad.stored.len() - 2;
    bad.stored[at] ^= 0x01;
    let rebuilt = canonical_from_stored(&bad.stored, &mut scratch)
        .unwrap()
        .to_vec();
    assert_ne!(rebuilt, canonical, "the damage changes what is rebuilt");
    log.writer().append_batch(&[good, bad]).unwrap();
    log.writer().publish().unwrap();

    assert!(log.reader().get(EntryIndex(0)).is_ok());
    let err = log.reader().get(EntryIndex(1)).unwrap_err().to_string();
    assert!(
        err.contains("entry 1") && err.contains("commitment"),
        "{err}"
    );
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(!report.ok());
    let problems = format!("{:?}", report.problems);
    assert!(
        problems.contains("entry 1") && problems.contains("commitment"),
        "{problems}"
    );
    assert!(!problems.contains("entry 0"), "{problems}");
}

fn segment_file(data: &std::path::Path) -> std::path::PathBuf {
    let dir = data.join("segments/default");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

/// Bytes a batch of `events` adds to a segment when each body is `body`.
fn record_bytes(events: &[PreparedEvent], body: impl Fn(&PreparedEvent) -> usize) -> u64 {
    // Length, index, generation, tag, CRC; then the salt.
    events.iter().map(|e| (36 + 32 + body(e)) as u64).sum()
}

fn canonical_len(event: &PreparedEvent) -> usize {
    let mut scratch = Vec::new();
    canonical_from_stored(&event.stored, &mut scratch)
        .unwrap()
        .len()
}

/// New segments are version 2 and take packed bodies; a segment begun by a
/// build before the packed form (version 1) keeps taking canonical bodies,
/// so that build can still read all of it.
#[test]
fn a_version_1_segment_keeps_canonical_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = open_new(&data);
    let first: Vec<PreparedEvent> = (0..5).map(|n| event(&preparer, n)).collect();
    log.writer().append_batch(&first).unwrap();
    log.writer().publish().unwrap();
    drop(log);
    let seg = segment_file(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    assert_eq!(bytes[8], 2, "new segments are version 2");
    let packed_len = std::fs::metadata(&seg).unwrap().len();
    let stream_len = u16::from_be_bytes([bytes[20], bytes[21]]) as usize;
    let crc_at = 22 + stream_len;
    let header_len = (crc_at + 4) as u64;
    assert_eq!(
        packed_len - header_len,
        record_bytes(&first, |e| e.stored.len())
    );

    // The same file as a version-1 build would have begun it.
    bytes[8] = 1;
    let crc = stele_store::fsutil::crc32(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let second: Vec<PreparedEvent> = (5..10).map(|n| event(&preparer, n)).collect();
    assert!(second.iter().all(|e| e.stored[0] == PACKED_FORM));
    log.writer().append_batch(&second).unwrap();
    log.writer().publish().unwrap();
    for n in 0..10u64 {
        assert_eq!(
            log.reader()
                .get(EntryIndex(n))
                .unwrap()
                .envelope
                .event
                .actor,
            format!("user-{n}@example.com")
        );
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    // Closed, the file ends at its last record (the zeros written ahead of
    // the next one are cut).
    drop(log);
    let grown = std::fs::metadata(&seg).unwrap().len() - packed_len;
    assert_eq!(grown, record_bytes(&second, canonical_len));
    assert!(grown > record_bytes(&second, |e| e.stored.len()));
}
