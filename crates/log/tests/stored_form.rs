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
fn canonical_form(event: PreparedEvent) -> PreparedEvent {
    let mut scratch = Vec::new();
    let rebuilt = canonical_from_stored(event.stored(), &mut scratch)
        .unwrap()
        .to_vec();
    assert_eq!(rebuilt, event.canonical());
    let event = event.stored_canonical();
    assert_eq!(event.stored(), rebuilt.as_slice());
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
            assert_eq!(e.stored()[0], PACKED_FORM, "event {n} is packed");
            if n % 3 == 0 { canonical_form(e) } else { e }
        })
        .collect();
    let expected: Vec<[u8; 32]> = log
        .writer()
        .append_batch(&events)
        .unwrap()
        .iter()
        .map(|r| r.commitment)
        .collect();
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

/// A bit flipped inside a compressed block: with the checksum left as it
/// is, the checksum catches it; with the checksum fixed too (a deliberate
/// edit), the seal does. Either way every entry of the block is refused by
/// `get` and named by `verify`, and the entries of other blocks read.
#[test]
fn a_bit_flipped_inside_a_compressed_block_is_caught() {
    for fix_crc in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut log = open_new(&data);
        let preparer = Preparer::new("tester", "test", "default");
        let first: Vec<PreparedEvent> = (0..30).map(|n| event(&preparer, n)).collect();
        let second: Vec<PreparedEvent> = (30..40).map(|n| event(&preparer, n)).collect();
        log.writer().append_batch(&first).unwrap();
        log.writer().append_batch(&second).unwrap();
        log.writer().publish().unwrap();
        drop(log);
        let seg = segment_file(&data);
        let mut bytes = std::fs::read(&seg).unwrap();
        assert_eq!(bytes[8], 3, "new segments hold blocks");
        let stream_len = u16::from_be_bytes([bytes[20], bytes[21]]) as usize;
        let block = 22 + stream_len + 4;
        let len = 4 + u32::from_be_bytes(bytes[block..block + 4].try_into().unwrap()) as usize;
        assert!(len < 30 * 200, "30 events compress: a block of {len} bytes");
        let flip = block + len / 2;
        bytes[flip] ^= 0x08;
        if fix_crc {
            let end = block + len - 4;
            let crc = stele_store::fsutil::crc32(&bytes[block + 4..end]);
            bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        }
        std::fs::write(&seg, &bytes).unwrap();

        let log = Log::open(&data, OpenOptions::default()).unwrap();
        for n in 0..30 {
            let err = log.reader().get(EntryIndex(n)).unwrap_err().to_string();
            let why = if fix_crc { "authenticat" } else { "checksum" };
            assert!(err.contains(why), "entry {n}: {err}");
        }
        for n in 30..40 {
            assert!(log.reader().get(EntryIndex(n)).is_ok(), "entry {n}");
        }
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(!report.ok());
        let problems = format!("{:?}", report.problems);
        assert!(problems.contains("entry 0"), "{problems}");
        assert!(!problems.contains("entry 30"), "{problems}");
    }
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
    canonical_from_stored(event.stored(), &mut scratch)
        .unwrap()
        .len()
}

/// A segment begun by a build before the packed form (version 1) keeps
/// taking records with canonical bodies for the rest of its day, so that
/// build can still read all of it. (The previous format's fixture, its
/// segment marked version 1 as that build would have begun it.)
#[test]
fn a_version_1_segment_keeps_canonical_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2/data");
    let copied = std::process::Command::new("cp")
        .args(["-r", fixture])
        .arg(&data)
        .status()
        .unwrap();
    assert!(copied.success());
    let seg = data.join("segments/default/2026-12-07.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert_eq!(bytes[8], 2);
    bytes[8] = 1;
    let stream_len = u16::from_be_bytes([bytes[20], bytes[21]]) as usize;
    let crc_at = 22 + stream_len;
    let crc = stele_store::fsutil::crc32(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let before = bytes.len() as u64;

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let preparer = Preparer::new("tester", "test", "default");
    let day: jiff::Timestamp = "2026-12-07T18:00:00Z".parse().unwrap();
    let second: Vec<PreparedEvent> = (5..10)
        .map(|n| {
            let raw = format!(
                r#"{{"actor":"user-{n}@example.com","action":"document.read","attributes":{{"note":"a \"quoted\" word"}}}}"#
            );
            preparer.prepare(raw.as_bytes(), day).unwrap()
        })
        .collect();
    assert!(second.iter().all(|e| e.stored()[0] == PACKED_FORM));
    let receipts = log.writer().append_batch(&second).unwrap();
    log.writer().publish().unwrap();
    for (n, receipt) in (5..10).zip(&receipts) {
        let stored = log.reader().get(receipt.index).unwrap();
        assert_eq!(stored.envelope.event.actor, format!("user-{n}@example.com"));
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    // Closed, the file ends at its last record (the zeros written ahead of
    // the next one are cut).
    drop(log);
    let grown = std::fs::metadata(&seg).unwrap().len() - before;
    assert_eq!(grown, record_bytes(&second, canonical_len));
    assert!(grown > record_bytes(&second, |e| e.stored().len()));
}
