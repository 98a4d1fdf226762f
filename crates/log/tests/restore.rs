//! A data directory restored from a backup, or copied, then appended to:
//! no (key, nonce) pair is ever used for two different records, and a
//! rolled-back or forked log is refused by the anchor kept outside it.
//!
//! The nonce test reads the directories the way an outside auditor would,
//! from the bytes on disk and the formats in `docs/formats/` (KEK, wrapped
//! data keys, session salts, index, segment records), with its own
//! AES-256-GCM and HKDF: it derives each record's key and nonce, proves
//! they are the ones used by opening the record with them, and only then
//! compares them across directories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use sha2::{Digest, Sha256};
use stele_log::EntryIndex;
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

/// Events all in one UTC day, so that every timeline appends to the same
/// segment under the same data key.
fn events(preparer: &Preparer, from: usize, count: usize) -> Vec<PreparedEvent> {
    let at = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    (from..from + count)
        .map(|n| {
            let raw = format!(r#"{{"actor":"a{n}","action":"act"}}"#);
            preparer.prepare(raw.as_bytes(), at).unwrap()
        })
        .collect()
}

/// Appends `count` events in batches of 250, one open per call (so one
/// writer session), and publishes.
fn append(dir: &Path, options: OpenOptions, preparer: &Preparer, from: usize, count: usize) {
    let mut log = Log::open(dir, options).unwrap();
    for chunk in events(preparer, from, count).chunks(250) {
        log.writer().append_batch(chunk).unwrap();
    }
    log.writer().publish().unwrap();
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

fn aes(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap())
}

struct Len32;
impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// docs/formats/keys.md, "Record AEAD": HKDF-SHA256, salt = the session
/// salt, IKM = the data key, info = "stele/record-key/v1" ‖ segment id ‖
/// generation, 32 bytes.
fn hkdf_record_key(data_key: &[u8; 32], salt: &[u8], segment: u32, generation: u32) -> [u8; 32] {
    let prk = Salt::new(HKDF_SHA256, salt).extract(data_key);
    let (s, g) = (segment.to_be_bytes(), generation.to_be_bytes());
    let info: [&[u8]; 3] = [b"stele/record-key/v1", &s, &g];
    let okm = prk.expand(&info, Len32).unwrap();
    let mut out = [0u8; 32];
    okm.fill(&mut out).unwrap();
    out
}

/// One sealed record as found on disk, with the key and nonce that open it:
/// a record of a segment of version 1 or 2 (one entry), or a block of a
/// segment of version 3 (the entries one append wrote to the segment,
/// sealed at once under one key and nonce).
struct SealedRecord {
    /// The entry the record holds; a block's first entry.
    index: u64,
    /// Entries it holds (1 for a record).
    entries: u64,
    generation: u32,
    /// SHA-256 of the key that opens it, and of the segment's data key.
    key: [u8; 32],
    data_key: [u8; 32],
    nonce: [u8; 12],
    /// SHA-256 of ciphertext and tag: the same record copied has the same.
    sealed: [u8; 32],
}

/// An unsigned LEB128 varint of `bytes` at `*at` (docs/formats/segment.md).
fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// The head of the block whose frame is `frame` (docs/formats/segment.md,
/// "Block, version 3"): the entries it lists, and the head's bytes.
fn block_head(frame: &[u8]) -> (Vec<u64>, &[u8]) {
    let first = be64(&frame[4..12]);
    let mut at = 16;
    let codec = frame[at];
    at += 1;
    assert!((1..=3).contains(&codec), "codec {codec}");
    let count = varint(frame, &mut at);
    let _plain_len = varint(frame, &mut at);
    if codec == 3 {
        // Compressed against a reference: its distance back and offset.
        let (back, offset) = (varint(frame, &mut at), varint(frame, &mut at));
        assert!(back >= 1 && offset >= 1);
    }
    let mut entries = vec![first];
    for _ in 1..count {
        let gap = varint(frame, &mut at);
        assert!(gap >= 1);
        entries.push(entries.last().unwrap() + gap);
    }
    (entries, &frame[16..at])
}

/// Every record (and block) of a data directory, read from its files
/// alone, in the order of their entries; each entry of the index is
/// checked to be in the record or block it points at.
fn records_on_disk(dir: &Path) -> Vec<SealedRecord> {
    // KEK kind 1: the raw key at bytes 10..42.
    let kek_file = std::fs::read(dir.join("keys/kek.key")).unwrap();
    assert_eq!(kek_file[9], 1, "a raw key file");
    let kek = aes(&kek_file[10..42]);
    // Session salts: header of 17 bytes, then (generation, salt, crc).
    let sessions = std::fs::read(dir.join("keys/sessions")).unwrap();
    assert_eq!(&sessions[..8], b"STELESES");
    let first_salted = be32(&sessions[9..13]);
    let salts: HashMap<u32, Vec<u8>> = sessions[17..]
        .chunks_exact(40)
        .map(|e| (be32(&e[..4]), e[4..36].to_vec()))
        .collect();
    // Segments by id (header: id at 12..16).
    let mut segments: HashMap<u32, Vec<u8>> = HashMap::new();
    for stream in std::fs::read_dir(dir.join("segments")).unwrap() {
        for file in std::fs::read_dir(stream.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "seg") {
                let bytes = std::fs::read(&path).unwrap();
                segments.insert(be32(&bytes[12..16]), bytes);
            }
        }
    }
    // Data keys: 77-byte files, wrap blob (nonce, ciphertext, tag) at 13.
    let data_key = |id: u32| -> [u8; 32] {
        let file = std::fs::read(dir.join(format!("keys/deks/{id}.dek"))).unwrap();
        let mut aad = b"stele/dek/v1".to_vec();
        aad.extend_from_slice(&id.to_be_bytes());
        let nonce = Nonce::try_assume_unique_for_key(&file[13..25]).unwrap();
        let mut sealed = file[25..73].to_vec();
        let raw = kek
            .open_in_place(nonce, Aad::from(&aad[..]), &mut sealed)
            .unwrap();
        raw.try_into().unwrap()
    };
    let index = std::fs::read(dir.join("index")).unwrap();
    let mut out: Vec<SealedRecord> = Vec::new();
    // The entries of each block already opened, by segment and offset.
    let mut blocks: HashMap<(u32, usize), Vec<u64>> = HashMap::new();
    for (i, entry) in index[64..].chunks_exact(64).enumerate() {
        if entry.iter().all(|b| *b == 0) {
            break; // zeros written ahead of the records
        }
        let i = i as u64;
        let commitment = &entry[..32];
        let segment = be32(&entry[32..36]);
        let len = be32(&entry[36..40]) as usize;
        let offset = be64(&entry[40..48]) as usize;
        let bytes = &segments[&segment];
        let record = &bytes[offset..offset + len];
        let generation = be32(&record[12..16]);
        let dk = data_key(segment);
        let key = if generation >= first_salted {
            hkdf_record_key(&dk, &salts[&generation], segment, generation)
        } else {
            dk
        };
        let version = bytes[8];
        let (first, listed, sealed, aad) = if version == 3 || version == 4 {
            // A block: every entry it holds points at it; it is opened
            // once, under the nonce of its first entry, its head in the
            // AAD.
            if let Some(listed) = blocks.get(&(segment, offset)) {
                assert!(listed.contains(&i), "entry {i} is not in its block");
                continue;
            }
            let (listed, head) = block_head(record);
            assert!(listed.contains(&i), "entry {i} is not in its block");
            let first = listed[0];
            let mut aad = b"stele/block/v1".to_vec();
            aad.extend_from_slice(&first.to_be_bytes());
            aad.extend_from_slice(head);
            blocks.insert((segment, offset), listed.clone());
            (first, listed, &record[16 + head.len()..len - 4], aad)
        } else {
            assert!(version == 1 || version == 2, "segment version {version}");
            assert_eq!(be64(&record[4..12]), i, "the record is the entry's");
            let mut aad = b"stele/record/v1".to_vec();
            aad.extend_from_slice(&i.to_be_bytes());
            aad.extend_from_slice(commitment);
            (i, vec![i], &record[16..len - 4], aad)
        };
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&generation.to_be_bytes());
        nonce[4..].copy_from_slice(&first.to_be_bytes());
        let mut buffer = sealed.to_vec();
        aes(&key)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buffer,
            )
            .unwrap_or_else(|_| {
                panic!(
                    "{}: entry {i} does not open with the key and nonce derived from the files",
                    dir.display()
                )
            });
        out.push(SealedRecord {
            index: first,
            entries: listed.len() as u64,
            generation,
            key: Sha256::digest(key).into(),
            data_key: Sha256::digest(dk).into(),
            nonce,
            sealed: Sha256::digest(sealed).into(),
        });
    }
    out
}

/// Entries the records hold.
fn entries(records: &[SealedRecord]) -> u64 {
    records.iter().map(|r| r.entries).sum()
}

/// Pairs (key, nonce) that seal two different records across `dirs`.
fn reused(records: &[(&str, &SealedRecord)], key: impl Fn(&SealedRecord) -> [u8; 32]) -> usize {
    let mut seen: HashMap<([u8; 32], [u8; 12]), [u8; 32]> = HashMap::new();
    let mut reused = 0;
    for (_, r) in records {
        match seen.insert((key(r), r.nonce), r.sealed) {
            Some(other) if other != r.sealed => reused += 1,
            _ => {}
        }
    }
    reused
}

fn assert_verifies(dir: &Path) {
    let log = Log::open(dir, OpenOptions::default()).unwrap();
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{}: {:?}", dir.display(), report.problems);
}

/// Restore a copy taken at 3,000 entries of a log that went on to 5,000,
/// append 1,000 to the copy and another 500 to a second copy of the same
/// backup: the generations repeat (the old scheme sealed 1,000 pairs
/// twice), but no (key, nonce) pair of the files seals two records.
///
/// Entries are sealed in blocks (segment version 3): one key and nonce per
/// block (the nonce of its first entry), so pairs are counted per block;
/// each timeline appends the same batches of equal-sized events, so its
/// blocks begin at the same entries as the original's.
#[test]
fn restored_and_copied_directories_never_reuse_a_key_and_nonce() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let backup = tmp.path().join("backup");
    let restored = tmp.path().join("restored");
    let copy = tmp.path().join("copy");
    create(&original);
    let preparer = Preparer::new("tester", "test", "default");
    append(&original, OpenOptions::default(), &preparer, 0, 1500);
    append(&original, OpenOptions::default(), &preparer, 1500, 1500);
    copy_dir(&original, &backup);
    append(&original, OpenOptions::default(), &preparer, 3000, 2000);
    copy_dir(&backup, &restored);
    copy_dir(&backup, &copy);
    append(&restored, OpenOptions::default(), &preparer, 7000, 1000);
    append(&copy, OpenOptions::default(), &preparer, 9000, 500);

    let a = records_on_disk(&original);
    let b = records_on_disk(&restored);
    let c = records_on_disk(&copy);
    assert_eq!((entries(&a), entries(&b), entries(&c)), (5000, 4000, 3500));
    // The timelines share the records of the first 3,000 entries (the
    // same bytes), and their next writer sessions have the same
    // generation.
    let shared = a.iter().take_while(|r| r.index < 3000).count();
    assert_eq!(entries(&a[..shared]), 3000, "a block across the backup");
    for (x, y) in a.iter().zip(&b).take(shared) {
        assert_eq!((x.sealed, x.key, x.nonce), (y.sealed, y.key, y.nonce));
    }
    for z in [&b, &c] {
        assert_eq!(a[shared].index, 3000);
        assert_eq!(z[shared].index, 3000);
        assert_eq!(a[shared].generation, z[shared].generation);
        assert_eq!(a[shared].nonce, z[shared].nonce, "the nonces repeat");
    }

    let all: Vec<(&str, &SealedRecord)> = a
        .iter()
        .map(|r| ("original", r))
        .chain(b.iter().map(|r| ("restored", r)))
        .chain(c.iter().map(|r| ("copy", r)))
        .collect();
    // The data key with the nonce, as records were sealed before session
    // salts: every block the restored copy sealed (its 1,000 entries)
    // repeats a pair of the original, and every block of the other copy
    // (500 entries) a pair of both.
    let appended_blocks = b.len() - shared + c.len() - shared;
    assert!(appended_blocks >= 6, "{appended_blocks}");
    assert_eq!(reused(&all, |r| r.data_key), appended_blocks);
    // The keys actually used: no pair seals two different records.
    assert_eq!(reused(&all, |r| r.key), 0);
    let distinct_keys: std::collections::HashSet<[u8; 32]> =
        all.iter().map(|(_, r)| r.key).collect();
    assert_eq!(distinct_keys.len(), 5, "one key per writer session");
    assert!(all.iter().all(|(_, r)| r.index < 5000));

    for dir in [&original, &restored, &copy] {
        assert_verifies(dir);
    }
}

/// Every file of a directory tree with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn with_anchor(anchor: &Path) -> OpenOptions {
    OpenOptions {
        anchor: Some(anchor.to_path_buf()),
        ..OpenOptions::default()
    }
}

fn refusal(dir: &Path, options: OpenOptions) -> String {
    match Log::open(dir, options) {
        Err(e @ LogError::Integrity(_)) => e.to_string(),
        Err(e) => panic!("not an integrity refusal: {e}"),
        Ok(_) => panic!("{} opened", dir.display()),
    }
}

fn note_size(note: &[u8]) -> u64 {
    let text = std::str::from_utf8(note).unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

/// A backup restored under the anchor is refused (rolled back), and so is
/// a restored backup that was appended to without it (forked, at the same
/// size or beyond); the refusal names the anchor and both sizes, and
/// changes no file.
#[test]
fn the_anchor_refuses_a_restored_backup_and_a_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let backup = tmp.path().join("backup");
    let anchors = tmp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let anchor = anchors.join("original.checkpoint");
    create(&original);
    let preparer = Preparer::new("tester", "test", "default");
    append(&original, with_anchor(&anchor), &preparer, 0, 300);
    assert_eq!(note_size(&std::fs::read(&anchor).unwrap()), 300);
    copy_dir(&original, &backup);
    append(&original, with_anchor(&anchor), &preparer, 300, 200);
    let kept = std::fs::read(&anchor).unwrap();
    assert_eq!(
        kept,
        std::fs::read(original.join("log/checkpoint")).unwrap()
    );
    assert_eq!(note_size(&kept), 500);

    // Restored: 300 entries where the anchor says 500.
    let rolled_back = tmp.path().join("rolled-back");
    copy_dir(&backup, &rolled_back);
    let before = (snapshot(&rolled_back), std::fs::read(&anchor).unwrap());
    let message = refusal(&rolled_back, with_anchor(&anchor));
    for needle in ["rollback", "original.checkpoint", "size 500", "size 300"] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    assert_eq!(
        (snapshot(&rolled_back), std::fs::read(&anchor).unwrap()),
        before,
        "a refusal changes no file"
    );

    // Forked: the restored copy took 200 other events (without the anchor),
    // then 100 more: the same size with another root, then a larger tree
    // that does not extend the anchor's.
    let forked = tmp.path().join("forked");
    copy_dir(&backup, &forked);
    append(&forked, OpenOptions::default(), &preparer, 1000, 200);
    let message = refusal(&forked, with_anchor(&anchor));
    assert!(
        message.contains("fork") && message.contains("size 500"),
        "{message}"
    );
    append(&forked, OpenOptions::default(), &preparer, 2000, 100);
    let before = snapshot(&forked);
    let message = refusal(&forked, with_anchor(&anchor));
    assert!(
        message.contains("fork") && message.contains("does not extend"),
        "{message}"
    );
    assert_eq!(snapshot(&forked), before);

    // The original still opens under its anchor and keeps it current.
    append(&original, with_anchor(&anchor), &preparer, 500, 10);
    assert_eq!(note_size(&std::fs::read(&anchor).unwrap()), 510);
    assert_verifies(&original);
}

/// `log/checkpoint` is evidence too: a backup whose history was restored
/// but whose public checkpoint is newer is refused.
#[test]
fn a_newer_public_checkpoint_than_the_history_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let backup = tmp.path().join("backup");
    create(&original);
    let preparer = Preparer::new("tester", "test", "default");
    append(&original, OpenOptions::default(), &preparer, 0, 20);
    copy_dir(&original, &backup);
    append(&original, OpenOptions::default(), &preparer, 20, 20);
    std::fs::copy(
        original.join("log/checkpoint"),
        backup.join("log/checkpoint"),
    )
    .unwrap();
    let message = refusal(&backup, OpenOptions::default());
    assert!(
        message.contains("rollback") && message.contains("log/checkpoint"),
        "{message}"
    );
}

/// An anchor inside the data directory would come back with a backup; an
/// anchor another log signed is not evidence about this one.
#[test]
fn anchors_inside_the_directory_or_of_another_log_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let other = tmp.path().join("other");
    create(&data);
    create(&other);
    let preparer = Preparer::new("tester", "test", "default");
    let inside = data.join("anchor");
    match Log::open(&data, with_anchor(&inside)) {
        Err(LogError::Usage(m)) => assert!(m.contains("inside the data directory"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!inside.exists());
    let foreign = tmp.path().join("other.checkpoint");
    append(&other, with_anchor(&foreign), &preparer, 0, 3);
    let message = refusal(&data, with_anchor(&foreign));
    assert!(
        message.contains("not a checkpoint of this log"),
        "{message}"
    );
}

fn meta_format(dir: &Path) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    meta["format"].as_u64().unwrap()
}

/// Turns a data directory into what the build before session salts wrote
/// (format 1): every record re-sealed under its segment's data key (same
/// nonce and AAD, checksum recomputed), no `keys/sessions`, `meta.json`
/// format 1. Done from the documented formats, as `records_on_disk` reads.
fn rewrite_as_format1(dir: &Path) {
    let kek_file = std::fs::read(dir.join("keys/kek.key")).unwrap();
    let kek = aes(&kek_file[10..42]);
    let sessions = std::fs::read(dir.join("keys/sessions")).unwrap();
    let salts: HashMap<u32, Vec<u8>> = sessions[17..]
        .chunks_exact(40)
        .map(|e| (be32(&e[..4]), e[4..36].to_vec()))
        .collect();
    let index = std::fs::read(dir.join("index")).unwrap();
    let segment_path = |id: u32| -> PathBuf {
        for stream in std::fs::read_dir(dir.join("segments")).unwrap() {
            for file in std::fs::read_dir(stream.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if be32(&std::fs::read(&path).unwrap()[12..16]) == id {
                    return path;
                }
            }
        }
        panic!("no segment {id}");
    };
    for (i, entry) in index[64..].chunks_exact(64).enumerate() {
        if entry.iter().all(|b| *b == 0) {
            break;
        }
        let i = i as u64;
        let segment = be32(&entry[32..36]);
        let len = be32(&entry[36..40]) as usize;
        let offset = be64(&entry[40..48]) as usize;
        let path = segment_path(segment);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes[8] <= 2,
            "blocks were never sealed before session salts"
        );
        let record = &mut bytes[offset..offset + len];
        let generation = be32(&record[12..16]);
        let file = std::fs::read(dir.join(format!("keys/deks/{segment}.dek"))).unwrap();
        let mut aad = b"stele/dek/v1".to_vec();
        aad.extend_from_slice(&segment.to_be_bytes());
        let mut wrapped = file[25..73].to_vec();
        let nonce = Nonce::try_assume_unique_for_key(&file[13..25]).unwrap();
        let dk: [u8; 32] = kek
            .open_in_place(nonce, Aad::from(&aad[..]), &mut wrapped)
            .unwrap()
            .try_into()
            .unwrap();
        let session = hkdf_record_key(&dk, &salts[&generation], segment, generation);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&generation.to_be_bytes());
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let mut aad = b"stele/record/v1".to_vec();
        aad.extend_from_slice(&i.to_be_bytes());
        aad.extend_from_slice(&entry[..32]);
        let mut plain = record[16..len - 4].to_vec();
        let plain_len = aes(&session)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut plain,
            )
            .unwrap()
            .len();
        plain.truncate(plain_len);
        let tag = aes(&dk)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut plain,
            )
            .unwrap();
        record[16..16 + plain_len].copy_from_slice(&plain);
        record[16 + plain_len..len - 4].copy_from_slice(tag.as_ref());
        let crc = stele_store::fsutil::crc32(&record[4..len - 4]);
        record[len - 4..].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
    }
    std::fs::remove_file(dir.join("keys/sessions")).unwrap();
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("\"format\": 2"), "{meta}");
    std::fs::write(
        dir.join("meta.json"),
        meta.replace("\"format\": 2", "\"format\": 1"),
    )
    .unwrap();
}

/// A data directory written by a build before blocks (segments of
/// version 2, one record per entry): `fixtures/format-v2`, 60 entries
/// sealed by writer generation 1.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2/data");

/// A data directory as the build before session salts wrote it (format 1,
/// 72 events over two opens: generations 1 and 2) reads and verifies as it
/// is, and its first append moves it to format 2: `keys/sessions` begins
/// at the next generation, the old records keep their data keys, the new
/// ones (blocks) use session keys.
///
/// That build wrote one record per entry (blocks came later), so the
/// directory is made from one written by the build before blocks (the
/// fixture, generation 1), with 12 more events appended to its segments
/// for the rest of their day (records, as that build wrote them;
/// generation 2), then rewritten as format 1. A directory of this build
/// would hold blocks, which no build before session salts wrote.
#[test]
fn a_directory_from_before_session_salts_reads_and_upgrades() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in [
            "keys/kek.key",
            "keys/signing.key",
            "keys/deks/1.dek",
            "keys/deks/2.dek",
        ] {
            std::fs::set_permissions(dir.join(secret), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
    }
    // The fixture's day, and the next.
    let fixture_day: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let next_day: jiff::Timestamp = "2026-12-08T12:00:00Z".parse().unwrap();
    let old = Preparer::new("tester", "test", "default");
    {
        let mut log = Log::open(&dir, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), 60);
        let batch: Vec<PreparedEvent> = (0..12)
            .map(|n| {
                let raw = format!(r#"{{"actor":"old{n}","action":"act"}}"#);
                old.prepare(raw.as_bytes(), fixture_day).unwrap()
            })
            .collect();
        log.writer().append_batch(&batch).unwrap();
        log.writer().publish().unwrap();
    }
    let records = records_on_disk(&dir);
    assert_eq!(records.len(), 72, "records only, no block");
    let generations: std::collections::BTreeSet<u32> =
        records.iter().map(|r| r.generation).collect();
    assert_eq!(generations.into_iter().collect::<Vec<_>>(), [1, 2]);
    rewrite_as_format1(&dir);
    assert_eq!(meta_format(&dir), 1);
    assert!(!dir.join("keys/sessions").exists());
    {
        let log = Log::open(&dir, OpenOptions::default()).unwrap();
        assert_eq!(log.reader().size(), 72);
        // The fixture's entries, by its receipts (an index and a salt for
        // each event it received), then the 12 appended.
        let receipts =
            std::fs::read_to_string(Path::new(FIXTURE).join("../receipts.ndjson")).unwrap();
        let receipts: Vec<serde_json::Value> = receipts
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(receipts.len(), 60);
        for receipt in &receipts {
            let index = receipt["index"].as_u64().unwrap();
            let stored = log.reader().get(EntryIndex(index)).unwrap();
            assert_eq!(receipt["id"], stored.envelope.id.as_str());
        }
        for i in 60..72 {
            let actor = log
                .reader()
                .get(EntryIndex(i))
                .unwrap()
                .envelope
                .event
                .actor;
            assert_eq!(actor, format!("old{}", i - 60));
        }
        let report = verify(log.reader(), &NoProgress).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
    assert_eq!(meta_format(&dir), 1, "reading changes nothing");
    assert!(!dir.join("keys/sessions").exists());

    let preparer = Preparer::new("tester", "test", "default");
    let append_next_day = |from: usize| {
        let mut log = Log::open(&dir, OpenOptions::default()).unwrap();
        let batch: Vec<PreparedEvent> = (from..from + 5)
            .map(|n| {
                let raw = format!(r#"{{"actor":"a{n}","action":"act"}}"#);
                preparer.prepare(raw.as_bytes(), next_day).unwrap()
            })
            .collect();
        log.writer().append_batch(&batch).unwrap();
        log.writer().publish().unwrap();
    };
    append_next_day(0);
    assert_eq!(meta_format(&dir), 2);
    let sessions = std::fs::read(dir.join("keys/sessions")).unwrap();
    assert_eq!(be32(&sessions[9..13]), 3, "first salted generation");
    let records = records_on_disk(&dir);
    assert_eq!(entries(&records), 77);
    let old_records = records.iter().take_while(|r| r.index < 72).count();
    assert_eq!(old_records, 72);
    assert!(
        records[..old_records]
            .iter()
            .all(|r| r.generation < 3 && r.key == r.data_key)
    );
    assert!(
        records[old_records..]
            .iter()
            .all(|r| r.generation == 3 && r.key != r.data_key)
    );
    append_next_day(5);
    assert_eq!(entries(&records_on_disk(&dir)), 82);
    assert_verifies(&dir);
}

/// `keys/sessions` altered or removed: the open refuses, naming the file,
/// and cuts nothing (a lost salt is not a torn record).
#[test]
fn an_altered_or_missing_sessions_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    create(&template);
    let preparer = Preparer::new("tester", "test", "default");
    append(&template, OpenOptions::default(), &preparer, 0, 40);
    // The last 10 entries are not covered by a checkpoint: recovery reads
    // them back with their keys at the next open.
    {
        let mut log = Log::open(&template, OpenOptions::default()).unwrap();
        log.writer()
            .append_batch(&events(&preparer, 40, 10))
            .unwrap();
    }
    let sessions = template.join("keys/sessions");
    let salt_byte = 17 + 4 + 5;
    type Damage = Box<dyn Fn(&Path)>;
    let cases: [(&str, Damage); 3] = [
        (
            "salt",
            Box::new(move |dir: &Path| {
                let path = dir.join("keys/sessions");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[salt_byte] ^= 1;
                std::fs::write(&path, bytes).unwrap();
            }),
        ),
        (
            "entry",
            Box::new(|dir: &Path| {
                // The last entry dropped whole: its generation has no salt.
                let path = dir.join("keys/sessions");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
            }),
        ),
        (
            "file",
            Box::new(|dir: &Path| std::fs::remove_file(dir.join("keys/sessions")).unwrap()),
        ),
    ];
    assert!(sessions.is_file());
    for (name, tamper) in cases {
        let dir = tmp.path().join(name);
        copy_dir(&template, &dir);
        tamper(&dir);
        let index = std::fs::read(dir.join("index")).unwrap();
        let message = match Log::open(&dir, OpenOptions::default()) {
            Err(e) => {
                assert!(e.is_integrity(), "{name}: {e}");
                e.to_string()
            }
            Ok(_) => panic!("{name}: opened"),
        };
        assert!(message.contains("keys/sessions"), "{name}: {message}");
        assert_eq!(
            std::fs::read(dir.join("index")).unwrap(),
            index,
            "{name}: the index was cut"
        );
    }
}
