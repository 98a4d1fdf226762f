//! Engine-level recovery regressions: each test drops a `Log` at a point a
//! crash could stop it (no publish, many segments, batches in flight) and
//! reopens it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stele_log::EntryIndex;
use stele_log::verify::{CpuPercent, Granularity, NoProgress, VerifyReport, verify};
use stele_log::{BlockConfig, CreateOptions, Log, LogError, OpenOptions, PreparedEvent, Preparer};
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

fn event(preparer: &Preparer, n: usize, stream: Option<&str>) -> PreparedEvent {
    let raw = match stream {
        Some(s) => format!(r#"{{"actor":"a{n}","action":"act","stream":"{s}"}}"#),
        None => format!(r#"{{"actor":"a{n}","action":"act"}}"#),
    };
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

/// Options that gather an append's entries into blocks of about 1 KiB of
/// plaintext (a few of these tests' events each; one `large_event` each).
fn small_blocks() -> OpenOptions {
    OpenOptions {
        blocks: BlockConfig::new(stele_store::block::LEVEL, 1024).unwrap(),
        ..OpenOptions::default()
    }
}

/// The frames of a segment of blocks: (offset, length, entries held), up to
/// the zeros written ahead of the next.
fn frames(segment: &Path) -> Vec<(usize, usize, Vec<u64>)> {
    let bytes = std::fs::read(segment).unwrap();
    let (header, mut at) = stele_store::segment::SegmentHeader::decode(segment, &bytes).unwrap();
    assert_eq!(
        header.version,
        stele_store::segment::VERSION,
        "a segment of blocks"
    );
    let mut frames = Vec::new();
    while at < bytes.len() && bytes[at..].iter().any(|b| *b != 0) {
        let len = stele_store::segment::record_len(&bytes[at..]).unwrap();
        let held = stele_store::block::peek_indices(&bytes[at..at + len]).unwrap();
        frames.push((at, len, held));
        at += len;
    }
    frames
}

/// The frame holding `entry`.
fn frame_of(frames: &[(usize, usize, Vec<u64>)], entry: u64) -> &(usize, usize, Vec<u64>) {
    frames.iter().find(|f| f.2.contains(&entry)).unwrap()
}

/// A log of 300 entries in its one segment: entries 0 to 99 appended one
/// per batch (one-entry blocks, much as records of the old format), 100 to
/// 299 in one batch gathered into blocks of about 1 KiB (a few entries
/// each, so that windows of the index and chunks of the file cut them).
fn mixed_log(data: &Path) -> Log {
    create(data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(data, small_blocks()).unwrap();
    for i in 0..100 {
        log.writer()
            .append_batch(&[event(&preparer, i, None)])
            .unwrap();
    }
    let batch: Vec<PreparedEvent> = (100..300).map(|i| event(&preparer, i, None)).collect();
    log.writer().append_batch(&batch).unwrap();
    log.writer().publish().unwrap();
    let frames = frames(&segment_of(data, "default"));
    assert!(frames[..100].iter().all(|f| f.2.len() == 1), "{frames:?}");
    assert!(frames[100..].iter().all(|f| f.2.len() > 1), "{frames:?}");
    log
}

fn assert_verifies(log: &Log) {
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// Receipts are given before publish. A crash then, followed by two opens
/// (the first recovers and publishes, the second trusts what the first
/// published), must keep every record.
#[test]
fn unpublished_entries_survive_two_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.writer()
            .append_batch(&[event(&preparer, 0, None), event(&preparer, 1, None)])
            .unwrap();
        // Dropped without publish: the process "died" after the receipts.
    }
    for _ in 0..3 {
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().published_size(), 2);
        assert_eq!(
            log.reader()
                .get(EntryIndex(1))
                .unwrap()
                .envelope
                .event
                .actor,
            "a1"
        );
        assert_verifies(&log);
    }
    // And appending after recovery continues at the right offsets.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    log.writer()
        .append_batch(&[event(&preparer, 2, None)])
        .unwrap();
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    for i in 0..3 {
        assert_eq!(
            log.reader()
                .get(EntryIndex(i))
                .unwrap()
                .envelope
                .event
                .actor,
            format!("a{i}")
        );
    }
    assert_verifies(&log);
}

/// One batch touching more segments than the writer keeps open.
#[test]
fn batch_over_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let streams: Vec<String> = (0..80).map(|i| format!("s{i}")).collect();
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    for round in 0..3 {
        let batch: Vec<PreparedEvent> = streams
            .iter()
            .enumerate()
            .map(|(i, s)| event(&preparer, round * 100 + i, Some(s)))
            .collect();
        log.writer().append_batch(&batch).unwrap();
    }
    log.writer().publish().unwrap();
    for i in 0..240u64 {
        let expected = format!("a{}", (i / 80) * 100 + i % 80);
        assert_eq!(
            log.reader()
                .get(EntryIndex(i))
                .unwrap()
                .envelope
                .event
                .actor,
            expected
        );
    }
    assert_verifies(&log);
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(
        log.reader().get(EntryIndex(239)).unwrap().envelope.stream,
        "s79"
    );
    assert_verifies(&log);
}

/// Through the group-commit sequencer, with concurrent producers.
#[test]
fn sequencer_appends_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        Log::open(&data, OpenOptions::default()).unwrap(),
    ));
    let sequencer = stele_log::sequencer::Sequencer::start(log.clone(), Default::default());
    let mut all = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let handle = sequencer.handle();
                let preparer = &preparer;
                scope.spawn(move || {
                    let mut receipts = Vec::new();
                    for r in 0..25 {
                        let batch = (0..10)
                            .map(|k| event(preparer, t * 1000 + r * 10 + k, None))
                            .collect();
                        receipts.extend(handle.append_blocking(batch).unwrap());
                    }
                    receipts
                })
            })
            .collect();
        for h in handles {
            all.extend(h.join().unwrap());
        }
    });
    let stats = sequencer.stop().unwrap();
    let log = log.lock().unwrap();
    assert_eq!(stats.events, 1000);
    let mut indices: Vec<u64> = all.iter().map(|r| r.index.0).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..1000).collect::<Vec<_>>());
    assert_eq!(log.reader().published_size(), 1000);
    for receipt in all.iter().step_by(37) {
        let stored = log.reader().get(receipt.index).unwrap();
        assert_eq!(stored.commitment, receipt.commitment);
        assert_eq!(stored.salt, receipt.salt);
        assert_eq!(stored.envelope.id, receipt.id);
    }
    assert_verifies(&log);
}

/// A request larger than one append can hold is refused before it is
/// queued (never reported as a failure of the log), and the log keeps
/// taking appends.
#[test]
fn sequencer_refuses_a_request_larger_than_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        Log::open(&data, OpenOptions::default()).unwrap(),
    ));
    let sequencer = stele_log::sequencer::Sequencer::start(log.clone(), Default::default());
    let handle = sequencer.handle();
    let one = event(&preparer, 0, None);
    let too_many = vec![one.clone(); stele_log::MAX_BATCH + 1];
    match handle.append(too_many.clone()) {
        Err(stele_log::sequencer::SubmitError::TooLarge { events, max }) => {
            assert_eq!(
                (events, max),
                (stele_log::MAX_BATCH + 1, stele_log::MAX_BATCH)
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        handle.append_blocking(too_many),
        Err(stele_log::sequencer::SubmitError::TooLarge { .. })
    ));
    assert!(log.lock().unwrap().health().is_ok());
    let receipts = handle.append(vec![event(&preparer, 1, None)]).unwrap();
    assert_eq!(receipts[0].index, EntryIndex(0));
    drop(handle);
    let stats = sequencer.stop().unwrap();
    assert_eq!(stats.events, 1);
}

/// A client `id` makes appends idempotent per writer: a retry (same id,
/// same payload) returns the original receipt (never a second entry),
/// within a batch, across batches and across reopening; the same id from
/// another writer, or with other content, is another event (a reused id
/// must never hide an event).
#[test]
fn client_ids_make_retries_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let alice = Preparer::new("alice", "test", "default");
    let bob = Preparer::new("bob", "test", "default");
    let with_id = |p: &Preparer, id: &str, actor: &str| {
        let raw = format!(r#"{{"actor":"{actor}","action":"act","id":"{id}"}}"#);
        p.prepare(raw.as_bytes(), jiff::Timestamp::now()).unwrap()
    };
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let first = log
        .writer()
        .append_batch(&[
            with_id(&alice, "req-1", "x"),
            with_id(&alice, "req-1", "x"),
            with_id(&alice, "req-2", "y"),
            event(&alice, 0, None),
        ])
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.index.0).collect::<Vec<_>>(),
        [0, 0, 1, 2]
    );
    assert_eq!(
        first.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [false, true, false, false]
    );
    assert_eq!(first[0].salt, first[1].salt);
    assert_eq!(log.reader().size(), 3);

    let retry = log
        .writer()
        .append_batch(&[
            with_id(&alice, "req-1", "x"),
            with_id(&bob, "req-1", "x"),
            with_id(&alice, "req-1", "other content"),
        ])
        .unwrap();
    assert!(retry[0].duplicate);
    assert_eq!(
        (retry[0].index.0, &retry[0].id, retry[0].salt),
        (0, &first[0].id, first[0].salt)
    );
    assert!(!retry[1].duplicate, "another writer's id is another event");
    assert_eq!(retry[1].index, EntryIndex(3));
    assert!(
        !retry[2].duplicate,
        "the same id with other content is another event"
    );
    assert_eq!(retry[2].index, EntryIndex(4));
    log.writer().publish().unwrap();
    drop(log);

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let after = log
        .writer()
        .append_batch(&[
            with_id(&alice, "req-2", "y"),
            with_id(&alice, "req-1", "other content"),
        ])
        .unwrap();
    assert!(after[0].duplicate && after[1].duplicate);
    assert_eq!((after[0].index.0, after[1].index.0), (1, 4));
    assert_eq!(after[0].commitment, first[2].commitment);
    assert_eq!(log.reader().size(), 5);
    assert_eq!(
        log.reader()
            .get(EntryIndex(0))
            .unwrap()
            .envelope
            .event
            .actor,
        "x"
    );
    assert_verifies(&log);
}

/// Verification reads segments in chunks; records (and their length
/// fields) cut by a chunk boundary must be read whole from the next chunk.
/// Chunk sizes are chosen to put the first boundary inside every field of
/// a one-entry block and of a block of several entries: on each of the
/// first 40 bytes (length, first entry, generation, head) and of the last
/// 24 (tag, checksum), and every 7th byte of the ciphertext between.
#[test]
fn verify_reads_records_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = mixed_log(&data);
    let frames = frames(&segment_of(&data, "default"));
    // The first chunk starts after the header, at the first frame.
    let start = frames[0].0;
    let boundaries_in = |frame: &(usize, usize, Vec<u64>)| {
        let (at, len) = (frame.0 - start, frame.1);
        (0..len)
            .filter(move |d| *d < 40 || *d + 24 >= len || d % 7 == 0)
            .map(move |d| at + d)
    };
    let sizes = [64, 97, 500, 4096, 1 << 20]
        .into_iter()
        .chain(boundaries_in(&frames[1]))
        .chain(boundaries_in(&frames[101]));
    for chunk in sizes {
        let report = verify_with(&log, chunk, 1 << 20);
        assert!(report.ok(), "chunk {chunk}: {:?}", report.problems);
        assert_eq!(report.entries, 300);
        assert!(report.bytes_decrypted > 0);
    }
    // The index read in windows: each carries the walk over to the next,
    // blocks cut by a window's end included (each decrypted once).
    let whole = verify_with(&log, 1 << 20, 1 << 20);
    for chunk in [64, 900, 4096, 1 << 20] {
        for window in [1, 2, 7, 64, 101, 256, 299, 300] {
            let report = verify_with(&log, chunk, window);
            assert!(
                report.ok(),
                "chunk {chunk} window {window}: {:?}",
                report.problems
            );
            assert_eq!(report.entries, 300);
            assert_eq!(report.bytes_decrypted, whole.bytes_decrypted);
            assert_eq!(report.tiles, whole.tiles);
        }
    }
}

/// Verifies with every core and on one thread (the passes taking turns,
/// as the server's scheduled verification runs): both must find the same.
fn verify_with(log: &Log, chunk_bytes: usize, window_entries: u64) -> VerifyReport {
    let granularity = Granularity {
        chunk_bytes,
        window_entries,
        threads: 4,
        pace: None,
    };
    let report = stele_log::verify::verify_with(log.reader(), &NoProgress, granularity).unwrap();
    let one = Granularity {
        threads: 1,
        ..granularity
    };
    let alone = stele_log::verify::verify_with(log.reader(), &NoProgress, one).unwrap();
    let described = |r: &VerifyReport| {
        let mut problems: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        (r.entries, r.bytes_decrypted, r.problem_count, problems)
    };
    assert_eq!(described(&alone), described(&report), "one thread");
    report
}

/// The scheduler's paced verification rests between windows only while a
/// writer beside it appends, and finds what an unpaced one finds.
#[test]
fn a_paced_verification_rests_only_while_the_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let batch: Vec<PreparedEvent> = (0..20_000).map(|i| event(&preparer, i, None)).collect();
    log.writer().append_batch(&batch).unwrap();
    log.writer().publish().unwrap();
    let paced = Granularity {
        chunk_bytes: 4096,
        window_entries: 64,
        threads: 1,
        pace: CpuPercent::new(50),
    };
    let unpaced = stele_log::verify::verify_with(
        log.reader(),
        &NoProgress,
        Granularity {
            pace: None,
            ..paced
        },
    )
    .unwrap();
    assert!(unpaced.ok(), "{:?}", unpaced.problems);

    // Nobody appends: it never rests.
    let quiet = stele_log::verify::verify_with(log.reader(), &NoProgress, paced).unwrap();
    assert!(quiet.ok(), "{:?}", quiet.problems);
    assert_eq!(quiet.rested, std::time::Duration::ZERO);
    assert_eq!(
        (quiet.entries, quiet.bytes_decrypted, quiet.tiles),
        (unpaced.entries, unpaced.bytes_decrypted, unpaced.tiles)
    );

    // The writer appends one event after the other while it runs: it rests,
    // and checks every entry of the moment it started.
    let reader = log.reader().clone();
    let busy = std::thread::scope(|scope| {
        let verifying =
            scope.spawn(move || stele_log::verify::verify_with(&reader, &NoProgress, paced));
        let mut n = 20_000;
        while !verifying.is_finished() {
            log.writer()
                .append_batch(&[event(&preparer, n, None)])
                .unwrap();
            n += 1;
        }
        verifying.join().unwrap().unwrap()
    });
    assert!(busy.ok(), "{:?}", busy.problems);
    assert!(busy.entries >= unpaced.entries);
    assert!(busy.rested > std::time::Duration::ZERO);
    drop(log);
    assert_verifies(&Log::open(&data, OpenOptions::default()).unwrap());
}

/// Damage is found wherever chunks fall: a block whose sealed bytes were
/// altered is named (by its first entry) while the blocks around it
/// verify, and a block whose framing cannot be parsed stops the walk there,
/// still checking what came before it (blocks already read while the next
/// chunk is walked) and naming the entries it leaves unreached. Blocks of
/// one entry and of several are damaged alike.
#[test]
fn verify_in_chunks_names_damage_wherever_chunks_fall() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(mixed_log(&data));
    let segment = segment_of(&data, "default");
    // What verification names, at chunk sizes putting boundaries anywhere.
    // (The index is read in windows of various sizes too, cutting blocks.)
    let problems_by_chunk = |log: &Log| {
        [
            (64, 1 << 20),
            (900, 7),
            (1800, 1),
            (4096, 64),
            (100_000, 150),
            (100_000, 299),
            (1 << 20, 1 << 20),
            (1 << 20, 5),
        ]
        .map(|(chunk, window)| {
            let mut named: Vec<String> = verify_with(log, chunk, window)
                .problems
                .into_iter()
                .map(|p| p.what)
                .collect();
            named.sort();
            (format!("{chunk}/{window}"), named)
        })
    };
    let original = std::fs::read(&segment).unwrap();
    let frames = frames(&segment);
    let entry_named = |w: &str| w.starts_with("entry ");

    // Entry 50's one-entry block and the block holding entry 150 (which
    // begins at entry `f150`) altered in their ciphertext (the checksum is
    // checked with the decryption and fails first or the tag does; either
    // names the block's first entry).
    let (at50, _, _) = frame_of(&frames, 50);
    let (at150, _, held150) = frame_of(&frames, 150);
    let f150 = held150[0];
    let mut altered = original.clone();
    altered[at50 + 40] ^= 0x01;
    altered[at150 + 40] ^= 0x01;
    std::fs::write(&segment, &altered).unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    for (chunk, named) in problems_by_chunk(&log) {
        assert_eq!(named.len(), 2, "chunk {chunk}: {named:?}");
        for first in [50, f150] {
            assert!(
                named
                    .iter()
                    .any(|w| w.starts_with(&format!("entry {first}:"))),
                "chunk {chunk}: {named:?}"
            );
        }
    }
    drop(log);

    // Entry 10 altered as above and the length field of the block holding
    // entry 200 (from entry `f200`) made unparseable: entry 10 is still
    // named, the walk stops there, and the entries from `f200` on are
    // reported missing.
    let (at200, _, held200) = frame_of(&frames, 200);
    let f200 = held200[0];
    let (at10, _, _) = frame_of(&frames, 10);
    let mut altered = original.clone();
    altered[at10 + 40] ^= 0x01;
    altered[*at200..at200 + 4].copy_from_slice(&[0xff; 4]);
    std::fs::write(&segment, &altered).unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    let missing = format!(
        "{} indexed entries (from entry {f200}) are missing",
        300 - f200
    );
    for (chunk, named) in problems_by_chunk(&log) {
        assert!(
            named.iter().any(|w| w.starts_with("entry 10:")),
            "chunk {chunk}: {named:?}"
        );
        assert!(
            named.iter().any(|w| w.contains("cannot be walked")),
            "chunk {chunk}: {named:?}"
        );
        assert!(
            named.iter().any(|w| w.contains(&missing)),
            "chunk {chunk}: {named:?}"
        );
        assert_eq!(
            named.iter().filter(|w| entry_named(w)).count(),
            1,
            "chunk {chunk}: {named:?}"
        );
        assert_eq!(named.len(), 3, "chunk {chunk}: {named:?}");
    }
}

/// Entries of three streams interleaved in the index (three segments):
/// verification reads the index in windows, walking each segment only up
/// to the last block a window expects in it (a block whose entries reach
/// into the next window is finished there), and names damage exactly once
/// whatever the windows: an altered block by its first entry, and a block
/// the index does not point at (a copy of one, written after the last
/// committed block, where only zeros may be) as such.
#[test]
fn verify_walks_interleaved_segments_window_by_window() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let streams = ["a", "b", "c"];
    for batch in 0..8 {
        let events: Vec<PreparedEvent> = (batch * 50..batch * 50 + 50)
            .map(|i| event(&p, i, Some(streams[(i * 7 / 3) % 3])))
            .collect();
        log.writer().append_batch(&events).unwrap();
        log.writer().publish().unwrap();
    }
    let grid = [
        (64, 1),
        (64, 3),
        (4096, 10),
        (1 << 20, 7),
        (1 << 20, 100),
        (1 << 20, 399),
        (1 << 20, 400),
        (1 << 20, 1 << 20),
    ];
    let whole = verify_with(&log, 1 << 20, 1 << 20);
    assert!(whole.ok(), "{:?}", whole.problems);
    assert_eq!((whole.entries, whole.segments), (400, 3));
    for (chunk, window) in grid {
        let report = verify_with(&log, chunk, window);
        assert!(report.ok(), "{chunk}/{window}: {:?}", report.problems);
        assert_eq!(report.bytes_decrypted, whole.bytes_decrypted);
    }

    // Blocks of stream b: one per batch, each holding a third of its
    // entries, interleaved with the other streams' (so that windows of
    // 1, 3, 7 and 10 entries cut every block, and some more than once).
    let segment = segment_of(&data, "b");
    let original = std::fs::read(&segment).unwrap();
    let blocks = frames(&segment);
    assert_eq!(blocks.len(), 8, "{blocks:?}");
    assert!(blocks.iter().all(|b| b.2.len() > 10), "{blocks:?}");
    let blocks_end = blocks[7].0 + blocks[7].1;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();

    // One block's sealed bytes altered.
    let (offset, _, ref held) = blocks[4];
    let entry = held[0];
    file.write_all_at(&[original[offset + 40] ^ 1], (offset + 40) as u64)
        .unwrap();
    for (chunk, window) in grid {
        let named: Vec<String> = verify_with(&log, chunk, window)
            .problems
            .into_iter()
            .map(|p| p.what)
            .collect();
        assert_eq!(named.len(), 1, "{chunk}/{window}: {named:?}");
        assert!(
            named[0].starts_with(&format!("entry {entry}:")),
            "{chunk}/{window}: {named:?}"
        );
    }
    file.write_all_at(&original[offset + 40..offset + 41], (offset + 40) as u64)
        .unwrap();

    // A copy of the first block after the last one.
    let (offset, len, ref held) = blocks[0];
    file.write_all_at(&original[offset..offset + len], blocks_end as u64)
        .unwrap();
    for (chunk, window) in grid {
        let named: Vec<String> = verify_with(&log, chunk, window)
            .problems
            .into_iter()
            .map(|p| p.what)
            .collect();
        let unreferenced = format!(
            "block at byte {blocks_end} (entries {} to {}) is not referenced by the index",
            held[0],
            held[held.len() - 1]
        );
        assert_eq!(
            named.iter().filter(|w| **w == unreferenced).count(),
            1,
            "{chunk}/{window}: {named:?}"
        );
        // Besides: the bytes after the committed length are not zeros, and
        // the walk stops at the zeros after the copy.
        assert!(
            named.iter().all(|w| *w == unreferenced
                || w.contains("are not zeros")
                || w.contains("the rest of the file cannot be walked")),
            "{chunk}/{window}: {named:?}"
        );
        assert_eq!(named.len(), 3, "{chunk}/{window}: {named:?}");
    }
}

/// `publish` returns once `log/checkpoint` holds the newest checkpoint,
/// also when a checkpoint of that size was already asked for without
/// waiting (`publish_soon`, as system events do) and is still being
/// written by the publisher thread.
#[test]
fn publish_returns_with_the_public_checkpoint_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let checkpoint = data.join("log/checkpoint");
    for i in 0..150 {
        log.writer()
            .append_batch(&[event(&preparer, i, None)])
            .unwrap();
        log.writer().publish_soon().unwrap();
        // Give the publisher thread a head start of varying length, so
        // that some rounds call `publish` while it is between steps.
        std::thread::sleep(std::time::Duration::from_micros((i as u64 * 397) % 4000));
        let note = log.writer().publish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&checkpoint).unwrap(),
            note,
            "round {i}"
        );
        let history = log.reader().checkpoint_history();
        let last = history.page(history.count() - 1, 10).unwrap();
        assert_eq!(last.len(), 1, "round {i}");
        assert_eq!(last[0].note, note.as_bytes(), "round {i}");
    }
}

/// The segment snapshot only speeds up recovery. A snapshot that claims a
/// shorter committed length than the entries the index holds (altered with
/// a valid checksum) must never make recovery cut committed records; an
/// unreadable snapshot is ignored.
#[test]
fn a_lying_or_broken_snapshot_never_cuts_committed_records() {
    use stele_store::state::{SegmentSnapshot, write_snapshot};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let batch: Vec<PreparedEvent> = (0..20).map(|i| event(&preparer, i, None)).collect();
    log.writer().append_batch(&batch).unwrap();
    log.writer().publish().unwrap();
    drop(log);
    let snapshot_path = data.join("segments.state");
    let segment = std::fs::read_dir(data.join("segments/default"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let full = std::fs::metadata(&segment).unwrap().len();

    // A snapshot that says the segment holds only its first bytes, then
    // one that lies at a record boundary, then one that says the segment
    // is longer than it is: the segment disagrees with each, so recovery
    // reads the whole index instead, cuts nothing and keeps nothing aside.
    let first_end = {
        let bytes = std::fs::read(&segment).unwrap();
        let (_, header) = stele_store::segment::SegmentHeader::decode(&segment, &bytes).unwrap();
        header as u64 + stele_store::segment::record_len(&bytes[header..]).unwrap() as u64
    };
    for lie in [100, first_end, full + 1000] {
        write_snapshot(
            &snapshot_path,
            &SegmentSnapshot {
                index_size: 20,
                lengths: vec![(1, lie)],
            },
        )
        .unwrap();
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), 20, "lie {lie}");
        assert_eq!(
            log.reader()
                .get(EntryIndex(19))
                .unwrap()
                .envelope
                .event
                .actor,
            "a19"
        );
        assert_verifies(&log);
        drop(log);
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            full,
            "nothing was cut (lie {lie})"
        );
        assert!(!data.join("recovered").exists(), "lie {lie}");
    }

    // A snapshot with a broken checksum is ignored: the index is read.
    std::fs::write(&snapshot_path, b"STELESTA garbage").unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(
        log.reader()
            .get(EntryIndex(19))
            .unwrap()
            .envelope
            .event
            .actor,
        "a19"
    );
    assert_verifies(&log);
}

/// Partial tiles are pruned once their full tile is durable; proofs against
/// the older checkpoints that used them, verification and reopening read
/// the full tile's prefix instead.
#[test]
fn partial_tiles_are_pruned_once_full_and_old_proofs_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let mut receipts = Vec::new();
    for round in 0..3 {
        let batch: Vec<PreparedEvent> = (0..100)
            .map(|i| event(&preparer, round * 100 + i, None))
            .collect();
        receipts.extend(log.writer().append_batch(&batch).unwrap());
        log.writer().publish().unwrap();
        if round == 0 {
            assert!(data.join("log/tile/0/000.p/100").exists());
            assert!(data.join("log/tile/entries/000.p/100").exists());
        }
    }
    // Size 300: the first level-0 tile and bundle are full, their partial
    // versions are gone, the partial tiles of size 300 are there.
    assert!(data.join("log/tile/0/000").exists());
    assert!(
        !data.join("log/tile/0/000.p").exists(),
        "superseded partial tiles pruned"
    );
    assert!(!data.join("log/tile/entries/000.p").exists());
    assert!(data.join("log/tile/0/001.p/44").exists());
    let verifier = log.reader().verifier().clone();
    for size in [100u64, 200, 300] {
        for index in [0u64, 57, 99] {
            let proof = log
                .reader()
                .inclusion_proof(EntryIndex(index), Some(size))
                .unwrap();
            let leaf = stele_tlog::leaf_hash(&receipts[index as usize].commitment);
            let checkpoint = proof.verify(&leaf, &[&verifier], None).unwrap();
            assert_eq!(checkpoint.size, size);
        }
    }
    let root_of = |size: u64| {
        let stored = log
            .reader()
            .checkpoint_history()
            .find_size(size)
            .unwrap()
            .unwrap();
        let note = stele_tlog::open_note(&stored.note, &[&verifier]).unwrap();
        stele_tlog::Checkpoint::parse(&note.text).unwrap().root
    };
    let proof = log.reader().consistency_proof(100, Some(300)).unwrap();
    stele_tlog::verify_consistency(100, 300, &proof, &root_of(100), &root_of(300)).unwrap();
    assert_verifies(&log);
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_verifies(&log);
}

/// An event with client id `id`.
fn keyed(preparer: &Preparer, id: &str) -> PreparedEvent {
    let raw = format!(r#"{{"actor":"k","action":"act","id":"{id}"}}"#);
    preparer
        .prepare(raw.as_bytes(), jiff::Timestamp::now())
        .unwrap()
}

// Batches in flight: a batch is sealed and written while the one before it
// is made durable on the commit thread. Receipts come back in order, only
// for durable entries; retries wait for every batch in flight; and records
// written but never indexed (a crash before the commit thread got to them)
// are cut at the next open.

#[test]
fn batches_in_flight_finish_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();

    let a = [event(&p, 0, Some("x")), event(&p, 1, Some("y"))];
    let b = [
        event(&p, 2, Some("y")),
        event(&p, 3, Some("x")),
        event(&p, 4, Some("z")),
    ];
    let c = [event(&p, 5, Some("x"))];
    log.writer().begin_append(&a).unwrap();
    log.writer().begin_append(&b).unwrap();
    assert_eq!(log.writer().in_flight(), 2);
    // A third batch must wait: refused without harm to the log.
    assert!(!log.writer().can_begin(&c));
    assert!(matches!(
        log.writer().begin_append(&c),
        Err(LogError::Usage(_))
    ));
    assert!(matches!(
        log.writer().append_batch(&c),
        Err(LogError::Usage(_))
    ));
    log.health().unwrap();
    // Nothing in flight is visible before it is finished.
    assert_eq!(log.reader().size(), 0);

    let ra = log.writer().finish_append().unwrap();
    assert_eq!(ra.iter().map(|r| r.index.0).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(log.reader().size(), 2);
    log.writer().begin_append(&c).unwrap();
    let rb = log.writer().finish_append().unwrap();
    assert_eq!(rb.iter().map(|r| r.index.0).collect::<Vec<_>>(), [2, 3, 4]);
    let rc = log.writer().finish_append().unwrap();
    assert_eq!(rc[0].index, EntryIndex(5));
    assert!(matches!(
        log.writer().finish_append(),
        Err(LogError::Usage(_))
    ));
    assert_eq!(log.reader().size(), 6);
    for (receipt, n) in ra.iter().chain(&rb).chain(&rc).zip(0..) {
        let stored = log.reader().get(receipt.index).unwrap();
        assert_eq!(stored.envelope.event.actor, format!("a{n}"));
        assert_eq!(stored.commitment, receipt.commitment);
    }
    drop(log);

    // Dropped without publish: every finished entry is durable, and the
    // open publishes them.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 6);
    assert_eq!(log.reader().published_size(), 6);
    assert_verifies(&log);
    let more = log
        .writer()
        .append_batch(&[event(&p, 6, Some("x"))])
        .unwrap();
    assert_eq!(more[0].index, EntryIndex(6));
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

    log.writer().begin_append(&[keyed(&p, "req-1")]).unwrap();
    let retry = [keyed(&p, "req-1")];
    assert!(!log.writer().can_begin(&retry));
    assert!(matches!(
        log.writer().begin_append(&retry),
        Err(LogError::Usage(_))
    ));
    // Batches without ids may still follow.
    assert!(log.writer().can_begin(&[event(&p, 1, Some("x"))]));
    let first = log.writer().finish_append().unwrap();
    assert!(log.writer().can_begin(&retry));
    log.writer().begin_append(&retry).unwrap();
    let second = log.writer().finish_append().unwrap();
    assert!(second[0].duplicate);
    assert_eq!(
        (second[0].index, second[0].salt),
        (first[0].index, first[0].salt)
    );
    assert_eq!(log.reader().size(), 1);
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
        log.writer()
            .append_batch(&[event(&p, 0, Some("x")), event(&p, 1, Some("y"))])
            .unwrap();
        log.writer().publish().unwrap();
    }
    assert!(index_path.exists(), "the index lives at {index_path:?}");
    let index_before = std::fs::read(&index_path).unwrap();
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.writer()
            .begin_append(&[event(&p, 2, Some("x")), event(&p, 3, Some("y"))])
            .unwrap();
        log.writer()
            .begin_append(&[event(&p, 4, Some("x"))])
            .unwrap();
        log.writer().finish_append().unwrap();
        log.writer().finish_append().unwrap();
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
    assert_eq!(log.reader().size(), 2);
    assert_verifies(&log);
    let receipts = log
        .writer()
        .append_batch(&[event(&p, 5, Some("x"))])
        .unwrap();
    assert_eq!(receipts[0].index, EntryIndex(2));
    assert_eq!(
        log.reader()
            .get(EntryIndex(2))
            .unwrap()
            .envelope
            .event
            .actor,
        "a5"
    );
    log.writer().publish().unwrap();
    assert_verifies(&log);
}

/// The only segment file of stream `stream` under `data`.
fn segment_of(data: &Path, stream: &str) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(data.join("segments").join(stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// An event of stream "x" whose stored form is over half of 1 KiB: in a
/// log opened with `small_blocks`, each makes a block of its own.
fn large_event(p: &Preparer, n: usize) -> PreparedEvent {
    large_event_in(p, n, "x")
}

fn large_event_in(p: &Preparer, n: usize, stream: &str) -> PreparedEvent {
    let pad = "-".repeat(600);
    let raw = format!(
        r#"{{"actor":"a{n}","action":"act","stream":"{stream}","attributes":{{"pad":"{pad}"}}}}"#
    );
    let event = p.prepare(raw.as_bytes(), jiff::Timestamp::now()).unwrap();
    assert!(event.stored().len() > 512, "{}", event.stored().len());
    event
}

/// Appends a published batch of two events, then an unpublished batch of
/// three, all to stream "x", each event in a block of its own (as a batch
/// larger than a block is written); returns the segment and where its
/// blocks end after the first batch and after each of the three blocks of
/// the second.
fn two_batches(data: &Path, p: &Preparer, publish_second: bool) -> (std::path::PathBuf, Vec<u64>) {
    let (segment, ends) = two_batches_in(data, p, publish_second, true);
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    (segment, ends)
}

/// As `two_batches`, or (`block_per_entry` false) with each batch in one
/// block: then the three ends after the first are the same.
fn two_batches_in(
    data: &Path,
    p: &Preparer,
    publish_second: bool,
    block_per_entry: bool,
) -> (std::path::PathBuf, Vec<u64>) {
    create(data);
    let options = if block_per_entry {
        small_blocks()
    } else {
        OpenOptions::default()
    };
    let make = |p: &Preparer, n: usize| {
        if block_per_entry {
            large_event(p, n)
        } else {
            event_of(p, n)
        }
    };
    let mut log = Log::open(data, options).unwrap();
    log.writer()
        .append_batch(&[make(p, 0), make(p, 1)])
        .unwrap();
    log.writer().publish().unwrap();
    let segment = segment_of(data, "x");
    log.writer()
        .append_batch(&[make(p, 2), make(p, 3), make(p, 4)])
        .unwrap();
    if publish_second {
        log.writer().publish().unwrap();
    }
    drop(log);
    let ends: Vec<u64> = (1..5).map(|entry| record_end(data, entry)).collect();
    if !block_per_entry {
        assert!(
            ends[0] < ends[1] && ends[1..].iter().all(|e| *e == ends[1]),
            "{ends:?}"
        );
    }
    (segment, ends)
}

/// The end of the segment record or block holding entry `index` (where the
/// next one of its segment begins), from the index of a log that is not
/// open.
fn record_end(data: &Path, index: u64) -> u64 {
    let (file, _) = stele_store::index::IndexFile::open(&data.join("index"), 0).unwrap();
    let record = file.read(index).unwrap();
    record.location.offset + u64::from(record.location.len)
}

fn cut_file(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

/// The segment and index records of a batch are fdatasynced at the same
/// time, so a crash can leave index records whose segment records never
/// reached the disk (gone, or torn). The next open keeps the entries whose
/// blocks are whole and cuts the index at the first entry of the first
/// block that is not; appends continue from there. A batch larger than a
/// block keeps its whole blocks; a torn block takes out every entry it
/// holds (the batch was not acknowledged). (A block that is all there but
/// does not authenticate is not a tear: `torn_or_tampered.rs`.)
#[test]
fn indexed_entries_whose_segment_records_are_not_durable_are_cut() {
    let p = Preparer::new("tester", "test", "default");
    // (what the crash left of the second batch's blocks, one per entry or
    // one for the batch; entries kept)
    let cases: [(&str, bool, usize); 5] = [
        ("none", true, 2),
        ("two and a torn third", true, 4),
        ("two and a torn third, then zeros written ahead", true, 4),
        ("none", false, 2),
        // All three entries are in the torn block: the batch is cut whole.
        ("the one block torn", false, 2),
    ];
    for (what, block_per_entry, kept) in cases {
        let case = format!("{what} (a block per entry: {block_per_entry})");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (segment, ends) = two_batches_in(&data, &p, false, block_per_entry);
        match what {
            "none" => cut_file(&segment, ends[0]),
            "two and a torn third" | "the one block torn" => cut_file(&segment, ends[3] - 9),
            "two and a torn third, then zeros written ahead" => {
                // The write stopped inside the third record; what follows
                // is the zeros the file was grown by before.
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&segment)
                    .unwrap();
                let torn_at = ends[3] - 9;
                file.write_all_at(&vec![0u8; 9 + 65_536], torn_at).unwrap();
            }
            _ => unreachable!(),
        }
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), kept as u64, "{case}");
        assert_eq!(log.reader().published_size(), kept as u64, "{case}");
        assert_verifies(&log);
        let receipts = log
            .writer()
            .append_batch(&[event(&p, 9, Some("x"))])
            .unwrap();
        assert_eq!(receipts[0].index, EntryIndex(kept as u64), "{case}");
        log.writer().publish().unwrap();
        assert_verifies(&log);
        drop(log);
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), kept as u64 + 1, "{case}");
        assert_eq!(
            log.reader()
                .get(EntryIndex(kept as u64))
                .unwrap()
                .envelope
                .event
                .actor,
            "a9",
            "{case}"
        );
    }
}

/// Below the latest signed checkpoint nothing is a crash's doing: a missing
/// segment block there (the last of a batch written a block per entry, or
/// the one block of a batch) stops the open, and the index is left as it
/// was.
#[test]
fn signed_entries_with_missing_segment_records_are_never_cut() {
    let p = Preparer::new("tester", "test", "default");
    for block_per_entry in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (segment, ends) = two_batches_in(&data, &p, true, block_per_entry);
        let index_before = std::fs::read(data.join("index")).unwrap();
        cut_file(&segment, if block_per_entry { ends[2] } else { ends[0] });
        let err = Log::open(&data, OpenOptions::default()).unwrap_err();
        assert!(err.is_integrity(), "{block_per_entry}: {err}");
        assert!(
            err.to_string().contains("committed entries reach"),
            "{block_per_entry}: {err}"
        );
        assert_eq!(std::fs::read(data.join("index")).unwrap(), index_before);
    }
}

/// One batch over two segments, of which only one reached the disk. With a
/// block per entry, the index is cut at the first entry whose block is
/// missing, and the other segment's blocks of the entries after it are cut
/// as orphans. With the batch's entries of a segment in one block, that
/// block also holds entries before the missing one: the index is cut at
/// the block's first entry, the first of the batch (its index records
/// were cut short, so the batch was never acknowledged), and the block
/// with them.
#[test]
fn a_batch_over_two_segments_is_cut_where_the_first_record_is_missing() {
    let p = Preparer::new("tester", "test", "default");
    for (block_per_entry, kept) in [(true, 3), (false, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        create(&data);
        let options = if block_per_entry {
            small_blocks()
        } else {
            OpenOptions::default()
        };
        let make = |p: &Preparer, n: usize, stream: &str| {
            if block_per_entry {
                large_event_in(p, n, stream)
            } else {
                event(p, n, Some(stream))
            }
        };
        let mut log = Log::open(&data, options).unwrap();
        log.writer()
            .append_batch(&[make(&p, 0, "x"), make(&p, 1, "y")])
            .unwrap();
        log.writer().publish().unwrap();
        let y_segment = segment_of(&data, "y");
        log.writer()
            .append_batch(&[make(&p, 2, "x"), make(&p, 3, "y"), make(&p, 4, "x")])
            .unwrap();
        drop(log);
        let x_blocks = frames(&segment_of(&data, "x"));
        if block_per_entry {
            assert_eq!(x_blocks.len(), 3, "{x_blocks:?}");
        } else {
            assert_eq!(x_blocks[1].2, [2, 4], "{x_blocks:?}");
        }
        // The crash: stream y's segment lost the second batch's block (it
        // began where entry 1's ended).
        cut_file(&y_segment, record_end(&data, 1));

        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), kept, "{block_per_entry}");
        for i in 0..kept {
            assert_eq!(
                log.reader()
                    .get(EntryIndex(i))
                    .unwrap()
                    .envelope
                    .event
                    .actor,
                format!("a{i}")
            );
        }
        assert_verifies(&log);
        let receipts = log
            .writer()
            .append_batch(&[event(&p, 5, Some("y")), event(&p, 6, Some("x"))])
            .unwrap();
        assert_eq!(receipts[0].index, EntryIndex(kept));
        log.writer().publish().unwrap();
        assert_verifies(&log);
        drop(log);
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), kept + 2);
        assert_eq!(
            log.reader()
                .get(EntryIndex(kept + 1))
                .unwrap()
                .envelope
                .event
                .actor,
            "a6"
        );
        assert_verifies(&log);
    }
}

/// The writer keeps at most 64 segments open. A segment closed right after
/// a batch wrote to it, and opened again by the next batch while the first
/// is still in flight, must continue after the first batch's records, never
/// cut them (they are about to be acknowledged).
#[test]
fn a_segment_closed_and_reopened_while_its_batch_is_in_flight_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let streams: Vec<String> = (0..70).map(|i| format!("s{i}")).collect();
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let first: Vec<PreparedEvent> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| event(&p, i, Some(s)))
        .collect();
    // s0..s5 are the oldest open segments once the first batch is written.
    let second: Vec<PreparedEvent> = (0..6)
        .map(|i| event(&p, 100 + i, Some(&streams[i])))
        .collect();
    log.writer().begin_append(&first).unwrap();
    log.writer().begin_append(&second).unwrap();
    let a = log.writer().finish_append().unwrap();
    let b = log.writer().finish_append().unwrap();
    assert_eq!((a.len(), b.len()), (70, 6));
    for i in 0..70u64 {
        assert_eq!(
            log.reader()
                .get(EntryIndex(i))
                .unwrap()
                .envelope
                .event
                .actor,
            format!("a{i}")
        );
    }
    for i in 0..6u64 {
        let stored = log.reader().get(EntryIndex(70 + i)).unwrap();
        assert_eq!(stored.envelope.event.actor, format!("a{}", 100 + i));
    }
    log.writer().publish().unwrap();
    assert_verifies(&log);
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 76);
    assert_eq!(
        log.reader()
            .get(EntryIndex(0))
            .unwrap()
            .envelope
            .event
            .actor,
        "a0"
    );
    assert_verifies(&log);
}

/// Segment files grow ahead of their records by zeros. Verification of an
/// open log reads records up to the committed length and requires zeros
/// after it; anything else there is named.
#[test]
fn verify_requires_zeros_after_the_committed_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    log.writer()
        .append_batch(&[event(&p, 0, Some("x")), event(&p, 1, Some("x"))])
        .unwrap();
    log.writer().publish().unwrap();
    let segment = segment_of(&data, "x");
    let bytes = std::fs::read(&segment).unwrap();
    let records_end = bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count();
    assert!(
        bytes.len() - records_end >= 60_000,
        "no space written ahead"
    );
    assert_verifies(&log);

    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(b"junk", records_end as u64 + 100)
        .unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("are not zeros")),
        "{:?}",
        report.problems
    );
    // With the junk gone, appends go on right after the records.
    file.write_all_at(&[0; 4], records_end as u64 + 100)
        .unwrap();
    log.writer()
        .append_batch(&[event(&p, 2, Some("x"))])
        .unwrap();
    log.writer().publish().unwrap();
    assert_verifies(&log);
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(
        log.reader()
            .get(EntryIndex(2))
            .unwrap()
            .envelope
            .event
            .actor,
        "a2"
    );
    assert_verifies(&log);
}

/// After a power loss, the unsynced pages of the last batch reach the disk
/// in any order: a block missing (zeros) or torn (its first sector
/// written, zeros after), and a later block of the same batch whole (a
/// batch larger than a block: here a block per entry). The open cuts the
/// index at the first entry whose block is not whole, keeps the bytes
/// after the committed length aside in `recovered/`, cuts them from the
/// segment, and appends a `log.recovered` event naming them, once;
/// `verify` notes them.
#[test]
fn bytes_a_power_loss_leaves_out_of_order_are_kept_aside_and_cut() {
    use std::os::unix::fs::FileExt;
    let p = Preparer::new("tester", "test", "default");
    for torn in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (segment, ends) = two_batches(&data, &p, false);
        // Entry 3's block (between ends[1] and ends[2]) never reached the
        // disk, or only its first bytes did; entry 4's after it did.
        let mut hole = vec![0u8; (ends[2] - ends[1]) as usize];
        if torn {
            let bytes = std::fs::read(&segment).unwrap();
            hole[..40].copy_from_slice(&bytes[ends[1] as usize..ends[1] as usize + 40]);
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.write_all_at(&hole, ends[1]).unwrap();
        let tail = std::fs::read(&segment).unwrap()[ends[1] as usize..ends[3] as usize].to_vec();

        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        // Entries 0..3 stay; the open appended its event as entry 3.
        assert_eq!(log.reader().size(), 4, "torn {torn}");
        assert_eq!(log.kept_at_open().len(), 1, "{:?}", log.kept_at_open());
        let event = log.reader().get(EntryIndex(3)).unwrap().envelope;
        assert_eq!(event.stream, "_system");
        assert_eq!(event.event.action, "log.recovered");
        assert_eq!(
            log.reader()
                .get(EntryIndex(2))
                .unwrap()
                .envelope
                .event
                .actor,
            "a2"
        );
        let name = format!("1-{}", ends[1]);
        let kept = std::fs::read(data.join("recovered").join(format!("{name}.bin"))).unwrap();
        assert_eq!(kept, tail, "the bytes after the committed length are kept");
        let attributes = event.event.attributes.unwrap();
        assert_eq!(attributes["offset"], ends[1]);
        assert_eq!(attributes["length"], ends[3] - ends[1]);
        assert_eq!(attributes["kept"], format!("recovered/{name}.bin"));
        let records_end = {
            let bytes = std::fs::read(&segment).unwrap();
            (bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count()) as u64
        };
        assert_eq!(
            records_end, ends[1],
            "the segment was cut where its committed records end"
        );
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(
            report.notes[0].contains(&format!("recovered/{name}.bin")),
            "{:?}",
            report.notes
        );
        assert!(report.notes[0].contains("event 3"), "{:?}", report.notes);

        // Appends go on after the committed records; the event is not
        // appended again by later opens.
        let receipts = log.writer().append_batch(&[event_of(&p, 9)]).unwrap();
        assert_eq!(receipts[0].index, EntryIndex(4));
        log.writer().publish().unwrap();
        drop(log);
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        assert!(log.kept_at_open().is_empty());
        assert_eq!(log.reader().size(), 5);
        assert_eq!(
            log.reader()
                .get(EntryIndex(4))
                .unwrap()
                .envelope
                .event
                .actor,
            "a9"
        );
        assert_verifies(&log);
        drop(log);

        // A kept file altered afterwards no longer matches its manifest.
        let bin = data.join("recovered").join(format!("{name}.bin"));
        std::fs::write(&bin, b"something else").unwrap();
        let log = Log::open(&data, OpenOptions::default()).unwrap();
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.location.ends_with(".bin") && p.what.contains("SHA-256")),
            "{:?}",
            report.problems
        );
    }
}

fn event_of(p: &Preparer, n: usize) -> PreparedEvent {
    event(p, n, Some("x"))
}

/// The event a kept tail owes survives a crash between the cut and its
/// append: the next open appends it (once), from the manifest.
#[test]
fn a_kept_tail_whose_event_was_not_appended_gets_it_at_the_next_open() {
    let p = Preparer::new("tester", "test", "default");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (segment, ends) = two_batches(&data, &p, false);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(ends[3] + 100)
        .unwrap();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.write_all_at(&[0xA5; 100], ends[3]).unwrap();
    }
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 6);
    drop(log);
    // As if the open had stopped before its event: the manifest without
    // the event's index, and the index without the event.
    let name = format!("1-{}", ends[3]);
    let manifest_path = data.join("recovered").join(format!("{name}.json"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["event_index"], 5);
    assert_eq!(manifest["length"], 100);
    manifest["event_index"] = serde_json::Value::Null;
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    // The event is found by its client id, not appended twice.
    assert_eq!(log.reader().size(), 6);
    drop(log);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["event_index"], 5);
}

/// More than recovery keeps aside is not a crash's leftovers: the open is
/// refused and nothing is cut.
#[test]
fn a_foreign_tail_larger_than_what_recovery_keeps_is_refused() {
    let p = Preparer::new("tester", "test", "default");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (segment, ends) = two_batches(&data, &p, true);
    let big = stele_log::salvage::MAX_KEPT_BYTES + 1;
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.write_all_at(&vec![0x5A; big as usize], ends[3])
            .unwrap();
    }
    let len = std::fs::metadata(&segment).unwrap().len();
    let err = Log::open(&data, OpenOptions::default()).unwrap_err();
    assert!(err.is_integrity(), "{err}");
    assert!(err.to_string().contains("nothing was cut"), "{err}");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
    assert!(
        !data
            .join("recovered")
            .join(format!("1-{}.bin", ends[3]))
            .exists()
    );
}

/// Other bytes cut later from the same place get files of their own: a
/// kept file is never replaced. The same bytes again (what an open that
/// stopped before its cut finds) reuse their files.
#[test]
fn tails_cut_from_the_same_place_keep_their_own_files() {
    use std::os::unix::fs::FileExt;
    let p = Preparer::new("tester", "test", "default");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (segment, ends) = two_batches(&data, &p, true);
    let end = ends[3];
    let add = |bytes: &[u8]| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.write_all_at(bytes, end).unwrap();
        drop(Log::open(&data, OpenOptions::default()).unwrap());
    };
    add(b"first foreign bytes");
    add(b"second foreign bytes");
    add(b"first foreign bytes");
    let recovered = data.join("recovered");
    assert_eq!(
        std::fs::read(recovered.join(format!("1-{end}.bin"))).unwrap(),
        b"first foreign bytes"
    );
    assert_eq!(
        std::fs::read(recovered.join(format!("1-{end}-2.bin"))).unwrap(),
        b"second foreign bytes"
    );
    assert_eq!(std::fs::read_dir(&recovered).unwrap().count(), 4);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    let events: Vec<_> = (5..log.reader().size())
        .map(|i| log.reader().get(EntryIndex(i)).unwrap().envelope.event)
        .filter(|e| e.action == "log.recovered")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
}

/// A history longer than several index marks (one per 256 checkpoints)
/// survives a reopen: every checkpoint is found by number and by size, proofs
/// against old sizes verify, and `verify` streams it all.
#[test]
fn long_checkpoint_history_is_found_by_number_and_size_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut receipts = Vec::new();
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        for n in 0..600 {
            receipts.extend(
                log.writer()
                    .append_batch(&[event(&preparer, n, None)])
                    .unwrap(),
            );
            log.writer().publish().unwrap();
        }
        assert_eq!(log.reader().history_count(), 601);
    }
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    let history = log.reader().checkpoint_history();
    assert_eq!(history.count(), 601);
    let all: Vec<_> = history.stream().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 601);
    for (k, stored) in all.iter().enumerate() {
        assert_eq!(stored.size, k as u64, "checkpoint #{k} is of size {k}");
    }
    assert_eq!(history.page(255, 3).unwrap(), all[255..258]);
    assert_eq!(history.page(600, 3).unwrap(), all[600..]);
    assert!(history.page(601, 3).unwrap().is_empty());
    assert_eq!(
        all.last().unwrap().note,
        log.reader().checkpoint_note().into_bytes()
    );
    let verifier = log.reader().verifier().clone();
    for size in [1u64, 255, 256, 257, 511, 512, 599, 600] {
        assert_eq!(
            history.find_size(size).unwrap().as_ref(),
            Some(&all[size as usize])
        );
        let index = size / 2;
        let proof = log
            .reader()
            .inclusion_proof(EntryIndex(index), Some(size))
            .unwrap();
        let leaf = stele_tlog::leaf_hash(&receipts[index as usize].commitment);
        assert_eq!(proof.verify(&leaf, &[&verifier], None).unwrap().size, size);
    }
    assert!(history.find_size(601).unwrap().is_none());
    assert!(matches!(
        log.reader().inclusion_proof(EntryIndex(0), Some(601)),
        Err(LogError::NotFound(_))
    ));
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 601);
}

/// Rewrites entry `i`'s index record with `change` applied and a valid
/// CRC, as someone with write access to the data directory could.
fn rewrite_index_record(data: &Path, i: u64, change: impl FnOnce(&mut [u8; 64])) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(data.join("index"))
        .unwrap();
    let mut record = [0u8; 64];
    file.read_exact_at(&mut record, 64 + 64 * i).unwrap();
    change(&mut record);
    let crc = stele_store::fsutil::crc32(&record[..60]);
    record[60..].copy_from_slice(&crc.to_be_bytes());
    file.write_all_at(&record, 64 + 64 * i).unwrap();
}

/// Entry `i`'s index record as stored: (commitment, segment offset,
/// record length).
fn index_record(data: &Path, i: u64) -> ([u8; 32], u64, u32) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(data.join("index")).unwrap();
    let mut r = [0u8; 64];
    file.read_exact_at(&mut r, 64 + 64 * i).unwrap();
    (
        r[..32].try_into().unwrap(),
        u64::from_be_bytes(r[40..48].try_into().unwrap()),
        u32::from_be_bytes(r[36..40].try_into().unwrap()),
    )
}

/// One log of 300 entries in one segment, appended `per_batch` at a time
/// (1: one-entry blocks, much as records of the old format; 30: blocks of
/// 30 entries), published every 30 entries.
fn one_stream_log(data: &Path, per_batch: usize) -> Log {
    create(data);
    let p = Preparer::new("tester", "test", "default");
    let mut log = Log::open(data, OpenOptions::default()).unwrap();
    for batch in 0..300 / per_batch {
        let events: Vec<PreparedEvent> = (batch * per_batch..(batch + 1) * per_batch)
            .map(|i| event(&p, i, None))
            .collect();
        log.writer().append_batch(&events).unwrap();
        if ((batch + 1) * per_batch).is_multiple_of(30) {
            log.writer().publish().unwrap();
        }
    }
    let blocks = frames(&segment_of(data, "default"));
    assert!(blocks.iter().all(|b| b.2.len() == per_batch), "{blocks:?}");
    log
}

/// A corrupt index record costs the walk one comparison, not every later
/// one: its entry is named, and every other entry of the segment is still
/// matched and checked. Its one-entry block is named as unreferenced (and
/// not decrypted); a block of several entries is still referenced by the
/// others, and opened for them.
#[test]
fn a_corrupt_index_record_does_not_shift_later_comparisons() {
    use std::os::unix::fs::FileExt;
    for per_batch in [1, 30] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = one_stream_log(&data, per_batch);
        let whole = verify_with(&log, 1 << 20, 1 << 20);
        assert!(whole.ok(), "{:?}", whole.problems);
        let (commitment, offset, _) = index_record(&data, 100);
        let index = std::fs::OpenOptions::new()
            .write(true)
            .open(data.join("index"))
            .unwrap();
        // A byte of entry 100's commitment flipped, CRC left as it was.
        index
            .write_all_at(&[!commitment[0]], 64 + 64 * 100)
            .unwrap();
        for (chunk, window) in [(64, 7), (4096, 100), (4096, 101), (1 << 20, 1 << 20)] {
            let report = verify_with(&log, chunk, window);
            let segment: Vec<&String> = report
                .problems
                .iter()
                .filter(|p| p.location.ends_with(".seg"))
                .map(|p| &p.what)
                .collect();
            let expected = if per_batch == 1 {
                vec![format!(
                    "record at byte {offset} (entry 100) is not referenced by the index"
                )]
            } else {
                vec![]
            };
            assert_eq!(
                segment,
                expected.iter().collect::<Vec<_>>(),
                "{per_batch} {chunk}/{window}: {:?}",
                report.problems
            );
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.what.starts_with("index record of entry 100 is corrupt")),
                "{per_batch} {chunk}/{window}: {:?}",
                report.problems
            );
            if per_batch == 1 {
                // All but that one block were decrypted and checked.
                assert!(
                    report.bytes_decrypted < whole.bytes_decrypted
                        && report.bytes_decrypted > whole.bytes_decrypted * 298 / 300,
                    "{chunk}/{window}: {} of {}",
                    report.bytes_decrypted,
                    whole.bytes_decrypted
                );
            } else {
                // Every block was decrypted, once.
                assert_eq!(
                    report.bytes_decrypted, whole.bytes_decrypted,
                    "{chunk}/{window}"
                );
            }
        }
    }
}

/// The index places entry 9 as shorter than its block and entry 10 inside
/// it: the walk names both, and the block that holds entry 10, once each,
/// and goes on (with the window ending at entry 10, the read size computed
/// from the window's end must not underflow past it; with blocks of 30
/// entries, the block is cut by the windows and finished in a later one).
#[test]
fn index_locations_inside_a_record_are_named_once_each() {
    for per_batch in [1, 30] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = one_stream_log(&data, per_batch);
        let (_, nine_at, nine_len) = index_record(&data, 9);
        let (_, ten_at, _) = index_record(&data, 10);
        let half = nine_len / 2;
        rewrite_index_record(&data, 9, |r| r[36..40].copy_from_slice(&half.to_be_bytes()));
        let inside = nine_at + u64::from(half);
        rewrite_index_record(&data, 10, |r| {
            r[40..48].copy_from_slice(&inside.to_be_bytes())
        });
        let held_ten = if per_batch == 1 {
            // Entry 10's own block, which nothing points at now.
            format!("record at byte {ten_at} (entry 10) is not referenced by the index")
        } else {
            // The block of 9 and 10 holds 10 still.
            assert_eq!(ten_at, nine_at);
            format!("the block at byte {ten_at} holds entry 10, which the index places elsewhere")
        };
        let mut expected = vec![
            format!(
                "the index places entry 9 in the block at byte {nine_at} ({half} bytes), which does not hold it ({nine_len} bytes there)"
            ),
            format!("the index places entry 10 at byte {inside}, where no record starts"),
            held_ten,
        ];
        expected.sort();
        for (chunk, window) in [(64, 11), (64, 13), (4096, 11), (64, 31), (1 << 20, 1 << 20)] {
            let report = verify_with(&log, chunk, window);
            let mut named: Vec<String> = report.problems.into_iter().map(|p| p.what).collect();
            named.sort();
            assert_eq!(named, expected, "{per_batch} {chunk}/{window}");
        }
    }
}

/// The index places entry 10 in a later block of its segment (that of
/// entry 20, or of entries 30 to 59): the block that holds it and the one
/// the index names are each named once, and the entries after it are
/// matched as ever, whatever the windows (the walk meets the later block
/// in a later window than entry 10's).
#[test]
fn an_index_record_placing_its_entry_in_a_later_block_is_named_once() {
    for (per_batch, target) in [(1, 20), (30, 30)] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = one_stream_log(&data, per_batch);
        let (_, ten_at, _) = index_record(&data, 10);
        let (_, later_at, later_len) = index_record(&data, target);
        rewrite_index_record(&data, 10, |r| {
            r[36..40].copy_from_slice(&later_len.to_be_bytes());
            r[40..48].copy_from_slice(&later_at.to_be_bytes());
        });
        let held_ten = if per_batch == 1 {
            format!("record at byte {ten_at} (entry 10) is not referenced by the index")
        } else {
            format!("the block at byte {ten_at} holds entry 10, which the index places elsewhere")
        };
        let mut expected = vec![
            held_ten,
            format!(
                "the index places entry 10 in the block at byte {later_at} ({later_len} bytes), which does not hold it ({later_len} bytes there)"
            ),
        ];
        expected.sort();
        for (chunk, window) in [(1 << 20, 1 << 20), (64, 1), (64, 3), (4096, 11), (64, 31)] {
            let report = verify_with(&log, chunk, window);
            let mut named: Vec<String> = report.problems.into_iter().map(|p| p.what).collect();
            named.sort();
            assert_eq!(named, expected, "{per_batch} {chunk}/{window}");
        }
    }
}

/// Any segment id an index record can hold is checked, the largest too
/// (it once stood for "corrupt record" inside verification).
#[test]
fn an_index_record_naming_segment_u32_max_is_reported() {
    for per_batch in [1, 30] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = one_stream_log(&data, per_batch);
        let (_, offset, _) = index_record(&data, 5);
        rewrite_index_record(&data, 5, |r| {
            r[32..36].copy_from_slice(&u32::MAX.to_be_bytes())
        });
        let in_segment = if per_batch == 1 {
            format!("record at byte {offset} (entry 5) is not referenced by the index")
        } else {
            // The block of entries 0 to 29 holds it.
            format!("the block at byte {offset} holds entry 5, which the index places elsewhere")
        };
        // (Windows of 3 and 6 entries cut the block of 30.)
        for (chunk, window) in [(1 << 20, 1 << 20), (64, 3), (4096, 6)] {
            let report = verify_with(&log, chunk, window);
            let named: Vec<&String> = report.problems.iter().map(|p| &p.what).collect();
            assert_eq!(
                named,
                [
                    &"segment 4294967295 (entries from 5) is missing".to_string(),
                    &in_segment,
                ],
                "{per_batch} {chunk}/{window}: {:?}",
                report.problems
            );
        }
    }
}

/// A segment created just before a power loss may be left empty, with a
/// prefix of its header, or (its length kept, its bytes not) all zeros:
/// nothing refers to it, so the next open removes it. A short file with
/// other bytes was not left by a crash and is refused.
#[test]
fn segments_torn_at_creation_are_removed_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let preparer = Preparer::new("tester", "test", "default");
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    log.writer()
        .append_batch(&[event(&preparer, 0, None)])
        .unwrap();
    drop(log);
    let torn_dir = data.join("segments/torn");
    std::fs::create_dir_all(&torn_dir).unwrap();
    let torn = [
        ("2026-01-01.seg", Vec::new()),
        ("2026-01-02.seg", b"STELE".to_vec()),
        ("2026-01-03.seg", vec![0u8; 33]),
    ];
    for (name, bytes) in &torn {
        std::fs::write(torn_dir.join(name), bytes).unwrap();
    }
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    for (name, _) in &torn {
        assert!(!torn_dir.join(name).exists(), "{name} was kept");
    }
    assert_eq!(log.reader().size(), 1);
    assert_verifies(&log);
    drop(log);
    std::fs::write(torn_dir.join("2026-01-04.seg"), [7u8; 33]).unwrap();
    assert!(Log::open(&data, OpenOptions::default()).is_err());
}
