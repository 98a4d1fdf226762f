//! Acknowledged means kept: recovery cuts the last append's records only
//! where a crash can have torn them (missing, cut short, sectors of zeros
//! where their bytes belong), and refuses to cut a record that is all there
//! yet fails its checksum or tag (altered after it was written: it may be
//! an acknowledged entry). Both for segment records and for index records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use stele_log::EntryIndex;
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, OpenOptions, PreparedEvent, Preparer};
use stele_store::keys::NewKek;

const SECTOR: u64 = 512;

fn event(p: &Preparer, n: usize) -> PreparedEvent {
    // About 1.5 KiB each: every record spans several sectors.
    let pad: String = (0..1500)
        .map(|i| (b'a' + ((i * 7 + n) % 26) as u8) as char)
        .collect();
    let raw =
        format!(r#"{{"actor":"a{n}","action":"act","stream":"x","attributes":{{"pad":"{pad}"}}}}"#);
    p.prepare(raw.as_bytes(), jiff::Timestamp::now()).unwrap()
}

/// A log with a signed batch of 5 events, then an acknowledged batch of 10
/// that was never published (the process stopped after the receipts).
/// Returns the segment file and each entry's (offset, length) in it.
fn acknowledged_unpublished(data: &Path, p: &Preparer) -> (PathBuf, Vec<(u64, u64)>) {
    Log::create(
        data,
        CreateOptions {
            origin: "torn.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let mut log = Log::open(data, OpenOptions::default()).unwrap();
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
    (
        segment,
        records
            .iter()
            .map(|r| (r.location.offset, u64::from(r.location.len)))
            .collect(),
    )
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

/// The issue's case: one flipped bit in a whole record of the acknowledged,
/// unpublished batch. The open refuses, naming the segment, the byte and
/// the entry; no file changes; a read-only verification fails on it.
/// Also for a record re-sealed with a valid checksum (only the tag tells),
/// a flipped checksum byte and a flipped length field.
#[test]
fn a_whole_record_that_fails_its_checks_is_corruption_never_a_tear() {
    let p = Preparer::new("tester", "test", "default");
    let cases = [
        "ciphertext bit",
        "checksum fixed, tag fails",
        "checksum byte",
        "length field",
    ];
    for case in cases {
        for entry in [5usize, 9, 14] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let (segment, records) = acknowledged_unpublished(&data, &p);
            let (offset, len) = records[entry];
            patch(&segment, offset, |r| match case {
                "ciphertext bit" => r[100] ^= 0x04,
                "checksum fixed, tag fails" => {
                    r[40] ^= 0x80;
                    let end = len as usize;
                    let crc = stele_store::fsutil::crc32(&r[4..end - 4]);
                    r[end - 4..end].copy_from_slice(&crc.to_be_bytes());
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
                text.contains(&format!("entry {entry} at byte {offset}")),
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
                    .any(|pr| pr.to_string().contains(&format!("entry {entry}"))
                        || pr.to_string().contains(&format!("byte {offset}"))),
                "{case} {entry}: {:?}",
                report.problems
            );
            drop(log);
            assert_eq!(tree(&data), before, "{case} {entry}: verify changed a file");
        }
    }
}

/// What a power loss can leave of the last append's records is still cut:
/// records missing, a record cut short by the end of the file, a sector of
/// a record that still holds the zeros written ahead, a sector written
/// from a page still being copied into (the record's first bytes, then
/// zeros). The index is cut at the torn entry, the rest verifies, and
/// appends go on from there.
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
        let entry = 9usize;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (segment, records) = acknowledged_unpublished(&data, &p);
        let (offset, len) = records[entry];
        let end = records[14].0 + records[14].1;
        match case {
            "records missing" => {
                // Nothing of entries 9.. reached the disk; the file's size did.
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
                let at = whole_sector_inside(offset, len);
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
            .unwrap_or_else(|e| panic!("{case}: the open refused a tear: {e}"));
        // Entries 0..9 kept; after them only the open's own
        // `log.recovered` event, when the whole records of entries 10..14
        // that followed the torn one were kept aside.
        for i in 0..log.reader().size() {
            let envelope = log.reader().get(EntryIndex(i)).unwrap().envelope;
            if i < entry as u64 {
                assert_eq!(envelope.event.actor, format!("a{i}"), "{case}");
            } else {
                assert_eq!(envelope.event.action, "log.recovered", "{case}");
            }
        }
        assert!(
            log.reader().size() <= entry as u64 + 1,
            "{case}: {}",
            log.reader().size()
        );
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{case}: {:?}", report.problems);
        let size = log.reader().size();
        let receipts = log.writer().append_batch(&[event(&p, 99)]).unwrap();
        assert_eq!(receipts[0].index, EntryIndex(size), "{case}");
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
        assert!(verify(log.reader(), &NoProgress).unwrap().ok(), "{case}");
    }
}

/// The same rule for the index: a whole index record of the acknowledged
/// batch with a flipped bit is corruption (open refuses, nothing cut); one
/// that ends in zeros (its sector not written, or written from a page still
/// being copied into) is a tear and is cut.
#[test]
fn index_records_torn_or_tampered() {
    let p = Preparer::new("tester", "test", "default");
    for (case, torn) in [
        ("flipped bit", false),
        ("all zeros", true),
        ("first bytes then zeros", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        acknowledged_unpublished(&data, &p);
        let index = data.join("index");
        let entry = 12u64;
        patch(&index, 64 + 64 * entry, |r| match case {
            "flipped bit" => r[10] ^= 0x20,
            "all zeros" => r[..64 * 3].fill(0),
            _ => r[40..64 * 3].fill(0),
        });
        let before = tree(&data);
        match Log::open(&data, OpenOptions::default()) {
            Ok(log) => {
                assert!(torn, "{case}: opened");
                assert_eq!(log.reader().size(), entry, "{case}");
                assert!(verify(log.reader(), &NoProgress).unwrap().ok(), "{case}");
            }
            Err(e) => {
                assert!(!torn, "{case}: {e}");
                assert!(e.is_integrity(), "{case}: {e}");
                let text = e.to_string();
                assert!(text.contains(&format!("entry {entry}")), "{text}");
                assert!(text.contains("nothing was cut"), "{text}");
                assert_eq!(tree(&data), before, "{case}: a file changed");
            }
        }
    }
}
