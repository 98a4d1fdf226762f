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
        assert_eq!(bytes[8], 4, "new segments hold blocks");
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

/// An event of ~300 bytes whose fields vary as an application's do.
fn varied_event(preparer: &Preparer, n: usize) -> PreparedEvent {
    let raw = format!(
        r#"{{"actor":"user-{}@example.com","action":"{}","resource":"documents/{}","outcome":"success","attributes":{{"ip":"10.{}.{}.{}","request_id":"{:016x}","user_agent":"acme-cli/4.{} (linux; amd64)"}}}}"#,
        n * 7919 % 500,
        [
            "document.read",
            "document.share",
            "invoice.delete",
            "user.login"
        ][n % 4],
        n * 104_729 % 5000,
        n % 7,
        n % 251,
        n * 13 % 256,
        (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        n % 9
    );
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

/// A block of a segment: its offset, length, codec, and the reference it
/// names (first entry, offset).
type BlockSeen = (u64, usize, u8, Option<(u64, u64)>);

/// Each block of the segment at `path`.
fn blocks_of(path: &std::path::Path) -> Vec<BlockSeen> {
    let bytes = std::fs::read(path).unwrap();
    let (_, mut at) = stele_store::segment::SegmentHeader::decode(path, &bytes).unwrap();
    let mut out = Vec::new();
    while at < bytes.len() && bytes[at..].iter().any(|b| *b != 0) {
        let (record, len) =
            stele_store::segment::parse_record_ref(path, at as u64, &bytes[at..]).unwrap();
        let block = stele_store::block::parse(path, at as u64, record).unwrap();
        out.push((at as u64, len, block.codec, block.reference));
        at += len;
    }
    out
}

/// The first large block of a segment becomes its reference; the blocks of
/// later appends are smaller and compressed against it, and read back and
/// verify like any other. A writer opened again begins a reference of its
/// own. A reference whose bytes change makes the blocks against it
/// unreadable (named by `get` and `verify`), never misread, and leaves the
/// blocks against the other reference readable.
#[test]
fn blocks_compressed_against_a_reference_read_and_verify() {
    use stele_store::block::{CODEC_ZSTD, CODEC_ZSTD_REFERENCED};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let preparer = Preparer::new("tester", "test", "default");
    let batch = |range: std::ops::Range<usize>| -> Vec<PreparedEvent> {
        range.map(|n| varied_event(&preparer, n)).collect()
    };
    {
        let mut log = open_new(&data);
        log.writer().append_batch(&batch(0..400)).unwrap();
        log.writer().append_batch(&batch(400..800)).unwrap();
        log.writer().publish().unwrap();
    }
    let seg = segment_file(&data);
    let blocks = blocks_of(&seg);
    let (reference_at, reference_len, codec, _) = blocks[0];
    assert_eq!(codec, CODEC_ZSTD, "the first block is compressed alone");
    assert!(blocks.len() >= 4, "{blocks:?}");
    let mut later_bytes = 0;
    for (_, len, codec, reference) in &blocks[1..] {
        assert_eq!(*codec, CODEC_ZSTD_REFERENCED, "{blocks:?}");
        assert_eq!(*reference, Some((0, reference_at)));
        later_bytes += len;
    }
    // The same events compress better against the reference.
    assert!(
        later_bytes < reference_len,
        "400 events: {reference_len} bytes alone, {later_bytes} against the reference"
    );

    // Opened again: appends of less than 64 KiB are compressed alone
    // until one is large enough to be the new reference.
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.writer().append_batch(&batch(800..850)).unwrap();
        log.writer().append_batch(&batch(850..1250)).unwrap();
        log.writer().append_batch(&batch(1250..1400)).unwrap();
        log.writer().publish().unwrap();
        for n in 0..1400 {
            assert!(log.reader().get(EntryIndex(n)).is_ok(), "entry {n}");
        }
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
    let blocks = blocks_of(&seg);
    let second = blocks
        .iter()
        .find(|(_, _, _, reference)| reference.is_some_and(|(first, _)| first != 0))
        .unwrap();
    assert_eq!(second.3.unwrap().0, 850, "{blocks:?}");
    assert!(
        blocks
            .iter()
            .any(|(at, _, codec, _)| *codec == CODEC_ZSTD && *at == second.3.unwrap().1)
    );

    // A bit of the first reference flipped, its checksum fixed.
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = (reference_at as usize) + reference_len / 2;
    bytes[at] ^= 0x08;
    let end = reference_at as usize + reference_len - 4;
    let crc = stele_store::fsutil::crc32(&bytes[reference_at as usize + 4..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    for n in [0, 399, 400, 799] {
        assert!(log.reader().get(EntryIndex(n)).is_err(), "entry {n}");
    }
    for n in [800, 849, 850, 1249, 1250, 1399] {
        assert!(log.reader().get(EntryIndex(n)).is_ok(), "entry {n}");
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    let problems = format!("{:?}", report.problems);
    assert!(problems.contains("entry 0:"), "{problems}");
    assert!(problems.contains("entry 400"), "{problems}");
    assert!(!problems.contains("entry 850"), "{problems}");
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
