//! Acknowledged means kept: recovery cuts the last append's records only
//! where a crash can have torn them (missing, cut short, sectors of zeros
//! where their bytes belong), and refuses to cut a record that is all there
//! yet fails its checksum or tag (altered after it was written: it may be
//! an acknowledged entry). Both for segment records and for index records.
//!
//! Segments are written in blocks (version 3): the entries one append
//! writes to a segment are sealed together, up to a set size of plaintext
//! per block (64 KiB here), and every entry of a block has the block's location in the
//! index. So a block, not an entry, is what is torn or altered: a torn
//! block takes out every entry of its batch from the block's first on, and
//! the entry an error names is the first of the block (the first entry
//! that points at it). The events here carry incompressible filler so that
//! the acknowledged batch makes two blocks, each spanning many sectors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stele_log::EntryIndex;
use stele_log::verify::{NoProgress, verify};
use stele_log::{BlockConfig, CreateOptions, Log, OpenOptions, PreparedEvent, Preparer};
use stele_store::keys::NewKek;

const SECTOR: u64 = 512;

/// `len` characters no compressor shrinks to nothing: the hex of a chain
/// of SHA-256 hashes seeded by `n` (zstd gets hex to about half).
fn filler(n: usize, len: usize) -> String {
    let mut out = String::with_capacity(len + 64);
    let mut hash = Sha256::digest(n.to_be_bytes());
    while out.len() < len {
        for byte in hash.iter() {
            out.push_str(&format!("{byte:02x}"));
        }
        hash = Sha256::digest(hash);
    }
    out.truncate(len);
    out
}

fn event(p: &Preparer, n: usize) -> PreparedEvent {
    event_in(p, n, "x")
}

fn event_in(p: &Preparer, n: usize, stream: &str) -> PreparedEvent {
    // About 8 KiB of incompressible filler each: the batch of 10 makes
    // two blocks (64 KiB of plaintext at most each), each spanning dozens
    // of sectors once compressed.
    let pad = filler(n, 8000);
    let raw = format!(
        r#"{{"actor":"a{n}","action":"act","stream":"{stream}","attributes":{{"pad":"{pad}"}}}}"#
    );
    p.prepare(raw.as_bytes(), jiff::Timestamp::now()).unwrap()
}

/// A log with a signed batch of 5 events, then an acknowledged batch of 10
/// that was never published (the process stopped after the receipts).
/// Returns the segment file and each entry's (offset, length) in it: the
/// location of the block that holds it. The batch of 10 makes two blocks:
/// entries 5 to 9 (at least) in the first, 14 in the second.
fn acknowledged_unpublished(data: &Path, p: &Preparer) -> (PathBuf, Vec<(u64, u64)>) {
    Log::create(
        data,
        CreateOptions {
            origin: "torn.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    // Blocks of at most 64 KiB of plaintext, whatever the default: the
    // batch of 10 events of about 8 KiB makes two blocks.
    let options = OpenOptions {
        blocks: BlockConfig::new(stele_store::block::LEVEL, 64 * 1024).unwrap(),
        ..OpenOptions::default()
    };
    let mut log = Log::open(data, options).unwrap();
    log.writer()
        .append_batch(&(0..5).map(|i| event(p, i)).collect::<Vec<_>>())
        .unwrap();
    log.writer().publish().unwrap();
    let receipts = log
        .writer()
        .append_batch(&(5..15).map(|i| event(p, i)).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(receipts.len(), 10);
    drop(log);
    let (index, _) = stele_store::index::IndexFile::open_read_only(&data.join("index"), 0).unwrap();
    let records = index.read_range(0, index.len()).unwrap();
    let segment = std::fs::read_dir(data.join("segments").join("x"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (r.location.offset, u64::from(r.location.len)))
        .collect();
    assert_eq!(block_first(&records, 5), 5);
    assert_eq!(block_first(&records, 9), 5, "{records:?}");
    assert!(block_first(&records, 14) > 9, "one block: {records:?}");
    assert!(records[14].1 > 8 * SECTOR, "{records:?}");
    (segment, records)
}

/// The first entry of the block that holds `entry` (every entry of a block
/// has the same location).
fn block_first(records: &[(u64, u64)], entry: usize) -> usize {
    records.iter().position(|r| *r == records[entry]).unwrap()
}

/// Every file under `dir` with its bytes and modification time.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, (Vec::new(), meta.modified().unwrap()));
            } else {
                out.insert(
                    path.clone(),
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn patch(path: &Path, at: u64, change: impl FnOnce(&mut [u8])) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let mut bytes = vec![0u8; (len - at) as usize];
    file.read_exact_at(&mut bytes, at).unwrap();
    change(&mut bytes);
    file.write_all_at(&bytes, at).unwrap();
}

/// The first sector boundary inside the record at `offset` that leaves a
/// whole sector within it.
fn whole_sector_inside(offset: u64, len: u64) -> u64 {
    let first = offset.div_ceil(SECTOR) * SECTOR;
    assert!(first + SECTOR <= offset + len, "record too small");
    first
}

/// The issue's case: one flipped bit in a whole block of the acknowledged,
/// unpublished batch (its compressed ciphertext). The open refuses, naming
/// the segment, the byte and the entry; no file changes; a read-only
/// verification fails on it. Also for a block re-sealed with a valid
/// checksum (only the tag tells), a block whose head (its list of
/// entries) was changed and its checksum fixed, a flipped checksum byte and
/// a flipped length field. Entries 5 and 9 are in the batch's first block,
/// 14 in its second: the entry named is the block's first.
#[test]
fn a_whole_record_that_fails_its_checks_is_corruption_never_a_tear() {
    let p = Preparer::new("tester", "test", "default");
    let cases = [
        "ciphertext bit",
        "checksum fixed, tag fails",
        "head changed, checksum fixed",
        "checksum byte",
        "length field",
    ];
    let fix_checksum = |r: &mut [u8], len: u64| {
        let end = len as usize;
        let crc = stele_store::fsutil::crc32(&r[4..end - 4]);
        r[end - 4..end].copy_from_slice(&crc.to_be_bytes());
    };
    for case in cases {
        for entry in [5usize, 9, 14] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let (segment, records) = acknowledged_unpublished(&data, &p);
            let (offset, len) = records[entry];
            // The first entry that points at the block: recovery reads the
            // entries in order and names the first that fails.
            let first = block_first(&records, entry);
            patch(&segment, offset, |r| match case {
                "ciphertext bit" => r[100] ^= 0x04,
                "checksum fixed, tag fails" => {
                    r[40] ^= 0x80;
                    fix_checksum(r, len);
                }
                "head changed, checksum fixed" => {
                    // The entry count (after the codec byte): the block
                    // lists other entries; the tag binds its head.
                    r[17] ^= 0x01;
                    fix_checksum(r, len);
                }
                "checksum byte" => r[len as usize - 2] ^= 0x01,
                _ => r[3] ^= 0x01,
            });
            let before = tree(&data);
            let err = Log::open(&data, OpenOptions::default()).unwrap_err();
            let text = err.to_string();
            assert!(err.is_integrity(), "{case} {entry}: {text}");
            assert!(
                text.contains(&segment.display().to_string()),
                "{case}: {text}"
            );
            assert!(
                text.contains(&format!("entry {first} at byte {offset}")),
                "{case}: {text}"
            );
            assert!(text.contains("nothing was cut"), "{case}: {text}");
            assert_eq!(tree(&data), before, "{case} {entry}: a file changed");

            let log = stele_log::LogReader::open(&data, OpenOptions::default()).unwrap();
            assert_eq!(log.size(), 15, "{case} {entry}");
            let report = verify(&log, &NoProgress).unwrap();
            assert!(!report.ok(), "{case} {entry}: verify passed");
            assert!(
                report
                    .problems
                    .iter()
                    // Every entry of a block has its location: a report
                    // may name the block by its first entry.
                    .any(|pr| pr.to_string().contains(&format!("entry {entry}"))
                        || pr.to_string().contains(&format!("entry {first}"))
                        || pr.to_string().contains(&format!("byte {offset}"))),
                "{case} {entry}: {:?}",
                report.problems
            );
            drop(log);
            assert_eq!(tree(&data), before, "{case} {entry}: verify changed a file");
        }
    }
}

/// What a power loss can leave of the last append's blocks is still cut:
/// blocks missing, a block cut short by the end of the file, a sector of a
/// block that still holds the zeros written ahead, a sector written from a
/// page still being copied into (the block's first bytes, then zeros). The
/// index is cut at the torn block's first entry (a block is sealed whole:
/// every entry in it is lost with it), the rest verifies, and appends go
/// on from there. Entry 9 is in the batch's first block (entries from 5
/// are cut), 14 in its second (entries 5 to the block before it stay).
#[test]
fn what_a_crash_tears_is_still_cut() {
    let p = Preparer::new("tester", "test", "default");
    let cases = [
        "records missing",
        "cut short",
        "zero sector in the middle",
        "first share zero",
        "sector ends in zeros",
    ];
    for case in cases {
        for entry in [9usize, 14] {
            what_a_crash_tears(&p, case, entry);
        }
    }
}

fn what_a_crash_tears(p: &Preparer, case: &str, entry: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (segment, records) = acknowledged_unpublished(&data, p);
    let (offset, len) = records[entry];
    let cut = block_first(&records, entry);
    let end = records[14].0 + records[14].1;
    match case {
        "records missing" => {
            // Nothing of the block holding the entry and those after
            // it reached the disk; the file's size did.
            patch(&segment, offset, |r| r[..(end - offset) as usize].fill(0));
        }
        "cut short" => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .unwrap();
            f.set_len(offset + len - 100).unwrap();
        }
        "zero sector in the middle" => {
            let at = (offset + len / 2) / SECTOR * SECTOR;
            assert!(at > offset && at + SECTOR < offset + len);
            patch(&segment, at, |r| r[..SECTOR as usize].fill(0));
        }
        "first share zero" => {
            let share = (offset / SECTOR + 1) * SECTOR - offset;
            patch(&segment, offset, |r| r[..share as usize].fill(0));
        }
        _ => {
            let at = whole_sector_inside(offset, len);
            patch(&segment, at + 200, |r| r[..(SECTOR - 200) as usize].fill(0));
        }
    }
    let mut log = Log::open(&data, OpenOptions::default())
        .unwrap_or_else(|e| panic!("{case} {entry}: the open refused a tear: {e}"));
    // Entries before the torn block kept; after them only the open's
    // own `log.recovered` event, when a whole block that followed the
    // torn one was kept aside.
    let size = log.reader().size();
    assert!(
        (cut as u64..=cut as u64 + 1).contains(&size),
        "{case} {entry}: {size}, torn block from {cut}"
    );
    for i in 0..size {
        let envelope = log.reader().get(EntryIndex(i)).unwrap().envelope;
        if i < cut as u64 {
            assert_eq!(envelope.event.actor, format!("a{i}"), "{case} {entry}");
        } else {
            assert_eq!(envelope.event.action, "log.recovered", "{case} {entry}");
        }
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{case} {entry}: {:?}", report.problems);
    let receipts = log.writer().append_batch(&[event(p, 99)]).unwrap();
    assert_eq!(receipts[0].index, EntryIndex(size), "{case} {entry}");
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(
        log.reader()
            .get(EntryIndex(size))
            .unwrap()
            .envelope
            .event
            .actor,
        "a99"
    );
    assert!(
        verify(log.reader(), &NoProgress).unwrap().ok(),
        "{case} {entry}"
    );
}

/// The same rule for the index: a whole index record of the acknowledged
/// batch with a flipped bit is corruption (open refuses, nothing cut); one
/// that ends in zeros (its sector not written, or written from a page still
/// being copied into) is a tear and is cut. The index is cut where the tear
/// is when a block begins there (the second block of the batch); when the
/// tear falls inside a block, the block holds entries the index no longer
/// has: its batch's index records were cut short, so it was never
/// acknowledged, and the index is cut back to the block's first entry (the
/// whole block is cut from the segment).
#[test]
fn index_records_torn_or_tampered() {
    let p = Preparer::new("tester", "test", "default");
    for (case, torn) in [
        ("flipped bit", false),
        ("all zeros", true),
        ("first bytes then zeros", true),
    ] {
        for at in ["block boundary", "inside the first block", "last entry"] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let (segment, records) = acknowledged_unpublished(&data, &p);
            let index = data.join("index");
            let entry = match at {
                "block boundary" => block_first(&records, 14),
                "inside the first block" => 9,
                _ => 14,
            } as u64;
            let cut = block_first(&records, entry as usize) as u64;
            let records_after = 64 * (15 - entry as usize);
            patch(&index, 64 + 64 * entry, |r| match case {
                "flipped bit" => r[10] ^= 0x20,
                "all zeros" => r[..records_after].fill(0),
                _ => r[40..records_after].fill(0),
            });
            let before = tree(&data);
            match Log::open(&data, OpenOptions::default()) {
                Ok(mut log) => {
                    assert!(torn, "{case} {at}: opened");
                    assert_eq!(log.reader().size(), cut, "{case} {at}");
                    for i in 0..cut {
                        let envelope = log.reader().get(EntryIndex(i)).unwrap().envelope;
                        assert_eq!(envelope.event.actor, format!("a{i}"), "{case} {at}");
                    }
                    // The block (and any after it) was cut from the
                    // segment with the index: nothing kept aside.
                    assert_eq!(
                        std::fs::metadata(&segment).unwrap().len(),
                        records[cut as usize].0,
                        "{case} {at}"
                    );
                    assert!(!data.join("recovered").exists(), "{case} {at}");
                    assert!(
                        verify(log.reader(), &NoProgress).unwrap().ok(),
                        "{case} {at}"
                    );
                    let receipts = log.writer().append_batch(&[event(&p, 99)]).unwrap();
                    assert_eq!(receipts[0].index, EntryIndex(cut), "{case} {at}");
                    drop(log);
                    let log = Log::open(&data, OpenOptions::default()).unwrap();
                    assert_eq!(log.reader().size(), cut + 1, "{case} {at}");
                    assert!(
                        verify(log.reader(), &NoProgress).unwrap().ok(),
                        "{case} {at}"
                    );
                }
                Err(e) => {
                    assert!(!torn, "{case} {at}: {e}");
                    assert!(e.is_integrity(), "{case} {at}: {e}");
                    let text = e.to_string();
                    assert!(text.contains(&format!("entry {entry}")), "{text}");
                    assert!(text.contains("nothing was cut"), "{text}");
                    assert_eq!(tree(&data), before, "{case} {at}: a file changed");
                }
            }
        }
    }
}

/// An append over two segments interleaves its entries between their
/// blocks (here 5, 7, 9, 11, 13 in one, 6, 8, 10, 12, 14 in the other).
/// Its last index record torn leaves the second block partial; cutting the
/// index back to that block's first entry (6) leaves the first block
/// partial in turn (it holds 7 to 13), so the index is cut back to 5: no
/// block is left holding entries the index does not have, both blocks are
/// cut from their segments, and nothing is kept aside.
#[test]
fn index_records_cut_short_across_two_segments_cut_every_block_of_the_append() {
    let p = Preparer::new("tester", "test", "default");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Log::create(
        &data,
        CreateOptions {
            origin: "torn.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        log.writer()
            .append_batch(&(0..5).map(|i| event(&p, i)).collect::<Vec<_>>())
            .unwrap();
        log.writer().publish().unwrap();
        let batch: Vec<_> = (5..15)
            .map(|i| event_in(&p, i, if i % 2 == 1 { "x" } else { "y" }))
            .collect();
        log.writer().append_batch(&batch).unwrap();
    }
    let (index, _) = stele_store::index::IndexFile::open_read_only(&data.join("index"), 0).unwrap();
    let records = index.read_range(0, index.len()).unwrap();
    drop(index);
    let x_batch = records[5].location;
    let y_batch = records[6].location;
    assert_ne!(records[5].segment_id, records[6].segment_id);
    for (i, record) in records.iter().enumerate().skip(5) {
        let expected = if i % 2 == 1 { x_batch } else { y_batch };
        assert_eq!(
            record.location, expected,
            "entry {i}: one block per segment"
        );
    }
    let segment = |stream: &str| {
        std::fs::read_dir(data.join("segments").join(stream))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let (x, y) = (segment("x"), segment("y"));
    patch(&data.join("index"), 64 + 64 * 14, |r| r[..64].fill(0));

    // A reader opened on its own (no recovery, nothing written) shows what
    // the next open keeps, says what it would cut, and verifies.
    let before = tree(&data);
    {
        let log = stele_log::LogReader::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(log.size(), 5);
        let pending = log.pending_recovery().unwrap_or_default().join("\n");
        assert!(
            pending.contains("entries 5 to 13 would be cut"),
            "{pending}"
        );
        let report = verify(&log, &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
    assert_eq!(tree(&data), before, "the read-only open changed a file");

    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 5);
    assert_eq!(std::fs::metadata(&x).unwrap().len(), x_batch.offset);
    assert_eq!(std::fs::metadata(&y).unwrap().len(), y_batch.offset);
    assert!(!data.join("recovered").exists());
    assert!(verify(log.reader(), &NoProgress).unwrap().ok());
    let receipts = log
        .writer()
        .append_batch(&[event_in(&p, 99, "x"), event_in(&p, 98, "y")])
        .unwrap();
    assert_eq!(receipts[0].index, EntryIndex(5));
    drop(log);
    let log = Log::open(&data, OpenOptions::default()).unwrap();
    assert_eq!(log.reader().size(), 7);
    assert_eq!(
        log.reader()
            .get(EntryIndex(6))
            .unwrap()
            .envelope
            .event
            .actor,
        "a98"
    );
    assert!(verify(log.reader(), &NoProgress).unwrap().ok());
}
