//! `stele-store`: the binary files of the data directory. Each is read
//! back from a scratch file through the product's own reader, so the
//! targets exercise the same code an open, a read or a `verify` runs.

use std::path::Path;

use stele_store::block::{self, Unpacker};
use stele_store::history::{self, HistoryReader};
use stele_store::index::{IndexFile, IndexRecord, RECORD_LEN};
use stele_store::keys::{DataKey, Kek, rewrap_signing_seed, unwrap_signing_seed};
use stele_store::segment::{
    RecordRef, SealedRecord, SegmentHeader, parse_record, parse_record_ref, peek_record, record_len,
};
use stele_store::sessions::{self, SessionSalt};
use stele_store::{StoreError, fsutil, state};

use super::fixtures;

/// An accepted header encodes back to the bytes it was read from, except
/// its three reserved bytes: the format has them written as zeros and not
/// checked on read (the checksum covers them), so a header with other
/// reserved bytes encodes with zeros there and a new checksum. Either way
/// the encoding decodes to the same header.
pub fn segment_header(data: &[u8]) {
    let path = Path::new("fuzz.seg");
    let Ok((header, len)) = SegmentHeader::decode(path, data) else {
        return;
    };
    assert!(len <= data.len());
    let encoded = header.encode().expect("a decoded header encodes");
    assert_eq!(encoded.len(), len);
    if data[9..12] == [0, 0, 0] {
        assert_eq!(encoded, &data[..len]);
    } else {
        assert_eq!(encoded[..9], data[..9]);
        assert_eq!(encoded[12..len - 4], data[12..len - 4]);
    }
    assert_eq!(
        SegmentHeader::decode(path, &encoded).ok(),
        Some((header, len))
    );
}

/// Where [`segment_block`] places its input in a made-up segment file
/// (after a header).
pub const BLOCK_AT: u64 = 64;

/// Input: a block as it sits in a segment, at byte [`BLOCK_AT`],
/// optionally followed by a second block. Each block's framing and head
/// agree with the cheap peek the walks of recovery and `verify` use
/// (entry numbers rising from the frame's); a block that opens with the
/// corpus log's record key of its generation lists the same entries, and
/// each entry's stored envelope is rebuilt or refused, never a panic. A
/// block compressed against a reference is refused without it; the second
/// block, when its head names the first as its reference, is opened
/// against it.
pub fn segment_block(data: &[u8]) {
    let path = Path::new("fuzz.seg");
    let Some((first, total)) = open_block(path, BLOCK_AT, data, None) else {
        return;
    };
    let Some(first) = first else {
        return;
    };
    let second_at = BLOCK_AT + total as u64;
    let Ok(reference) = block::ReferenceDictionary::new(BLOCK_AT, &first) else {
        return;
    };
    open_block(path, second_at, &data[total..], Some(&reference));
}

/// Parses the block at the start of `data` (at byte `at` of the segment),
/// checks its head against the peek, and opens it (with `reference` when
/// its head names that one): the block opened, if it did and has no
/// reference of its own, and its length.
fn open_block(
    path: &Path,
    at: u64,
    data: &[u8],
    reference: Option<&block::ReferenceDictionary>,
) -> Option<(Option<block::OpenBlock>, usize)> {
    let (record, total) = parse_record_ref(path, at, data).ok()?;
    let peeked = block::peek_indices(&data[..total]);
    let parsed = block::parse(path, at, record).ok()?;
    assert_eq!(peeked.as_deref(), Some(parsed.indices.as_slice()));
    assert_eq!(parsed.indices.first(), Some(&record.index));
    assert!(parsed.indices.windows(2).all(|w| w[0] < w[1]));
    if let Some((first, offset)) = parsed.reference {
        assert!(first < record.index && offset < at);
    }
    let key = fixtures::keys()
        .segment_keys
        .record_key(parsed.generation)
        .ok()?;
    let mut unpacker = Unpacker::new().expect("zstd context");
    let named = reference.filter(|r| parsed.reference == Some((r.first, r.offset)));
    let opened = parsed.open(&key, path, at, &mut unpacker, named);
    if parsed.reference.is_some() && named.is_none() {
        assert!(opened.is_err(), "a block opened without its reference");
    }
    let Ok(open) = opened else {
        return Some((None, total));
    };
    let listed: Vec<u64> = open.entries().map(|(index, _)| index).collect();
    assert_eq!(listed, parsed.indices);
    let mut scratch = Vec::new();
    for (_, body) in open.entries() {
        let _ = stele_event::canonical_from_stored(body, &mut scratch);
    }
    Some((parsed.reference.is_none().then_some(open), total))
}

/// Input: the commitment the index holds for the record (32 bytes), then
/// the record as it sits in the segment. The framing agrees with the
/// cheap peeks recovery uses; a record that opens with the corpus log's
/// record key of its generation (derived from the segment's data key and
/// the session salt, as the log does) decodes to an envelope whose
/// commitment is the one given.
pub fn segment_record(data: &[u8]) {
    let Some((commitment, bytes)) = data.split_first_chunk::<32>() else {
        return;
    };
    let path = Path::new("fuzz.seg");
    let parsed = parse_record_ref(path, 0, bytes);
    let Ok((record, total)) = parsed else {
        return;
    };
    let RecordRef {
        index,
        generation,
        sealed,
    } = record;
    assert_eq!(peek_record(bytes), Some((index, generation, total)));
    assert_eq!(record_len(bytes), Some(total));
    let (owned, owned_total) = parse_record(path, 0, bytes).expect("parses twice");
    assert_eq!(owned_total, total);
    assert_eq!(
        owned,
        SealedRecord {
            index,
            generation,
            sealed: sealed.to_vec()
        }
    );
    let Ok(key) = fixtures::keys().segment_keys.record_key(generation) else {
        return;
    };
    let Ok(plain) = owned.open(&key, commitment, path) else {
        return;
    };
    let Ok(stored) = stele_log::decode_plaintext(index, commitment, plain, path) else {
        return;
    };
    assert_eq!(
        &stele_event::commitment(&stored.salt, &stored.canonical),
        commitment
    );
    assert_eq!(stored.envelope.canonical_bytes(), stored.canonical);
}

/// Input: how many entries a signed checkpoint covers (first byte, mod 8),
/// then the index file. Open checks the records from that size on and
/// keeps exactly the valid ones, which read back as they were; records
/// below it are not re-read at open (a signed checkpoint covers them), so
/// a damaged one is reported as corrupt when it is read, never returned.
/// Every record round-trips through its encoding.
pub fn index(data: &[u8]) {
    let Some((&trusted, file)) = data.split_first() else {
        return;
    };
    let trusted = u64::from(trusted % 8);
    for chunk in file
        .get(RECORD_LEN as usize..)
        .unwrap_or_default()
        .chunks_exact(RECORD_LEN as usize)
    {
        if let Some(record) = IndexRecord::decode(chunk) {
            assert_eq!(&record.encode()[..], chunk);
        }
    }
    let path = crate::scratch::file("index", file);
    let header_ok = stele_store::index::read_log_id(&path);
    let Ok((index, recovery)) = IndexFile::open(&path, trusted) else {
        return;
    };
    assert_eq!(
        header_ok.ok(),
        Some(index.log_id()),
        "open and read_log_id agree on the header"
    );
    assert_eq!(index.len(), recovery.entries);
    assert!(recovery.entries >= trusted);
    for entry in 0..index.len() {
        let at = RECORD_LEN as usize * (entry as usize + 1);
        let on_disk = &file[at..at + RECORD_LEN as usize];
        match index.read(entry) {
            Ok(record) => assert_eq!(&record.encode()[..], on_disk),
            Err(StoreError::Corrupt { .. }) if entry < trusted => {
                assert!(IndexRecord::decode(on_disk).is_none());
            }
            Err(other) => panic!("kept record {entry} does not read back: {other}"),
        }
    }
    if index.len() > trusted {
        let checked = index
            .read_range(trusted, index.len() - trusted)
            .expect("records checked at open read back");
        assert_eq!(checked.len() as u64, index.len() - trusted);
    }
    let on_disk = std::fs::metadata(&path).expect("index still there").len();
    assert_eq!(on_disk + recovery.cut_bytes, file.len() as u64);
}

/// The scan and the reader agree: every record the scan counts reads back,
/// re-encodes to the file's bytes, and only a tail past them is torn.
pub fn checkpoint_history(data: &[u8]) {
    let path = crate::scratch::file("checkpoints", data);
    let Ok(scan) = history::scan(&path) else {
        return;
    };
    let count = scan.index.count();
    let end = scan.index.end();
    match scan.torn_at {
        Some(torn) => assert_eq!(torn, end),
        None => assert_eq!(end, data.len() as u64),
    }
    let mut reader = HistoryReader::open(&path, scan.index.cursor(0)).expect("reader opens");
    let records = reader.take(usize::MAX).expect("scanned records read back");
    assert_eq!(records.len() as u64, count);
    let mut encoded = Vec::new();
    for record in &records {
        let start = encoded.len();
        encoded.extend_from_slice(b"CKPT");
        encoded.extend_from_slice(&record.size.to_be_bytes());
        encoded.extend_from_slice(&(record.note.len() as u32).to_be_bytes());
        encoded.extend_from_slice(&record.note);
        let crc = fsutil::crc32(&encoded[start + 4..]);
        encoded.extend_from_slice(&crc.to_be_bytes());
    }
    assert_eq!(&encoded[..], &data[..end as usize]);
    assert_eq!(scan.last.as_ref(), records.last());
    if count > 0 {
        let last = count - 1;
        let mut from_last = HistoryReader::open(&path, scan.index.cursor(last)).expect("reopens");
        assert_eq!(
            from_last.next_record().expect("last record").as_ref(),
            records.last()
        );
    }
    if let (Some(last), true) = (records.last(), records.is_sorted_by_key(|r| r.size)) {
        let cursor = scan
            .index
            .cursor_for_size(last.size)
            .expect("a mark at or below the last size");
        let mut by_size = HistoryReader::open(&path, cursor).expect("reopens");
        let found = by_size.find_size(last.size).expect("reads");
        assert_eq!(found.map(|r| r.size), Some(last.size));
    }
}

/// First byte even: `writer-generation`; odd: `segments.state`. Accepted
/// files read back the same after being written by the product's writer.
pub fn writer_state(data: &[u8]) {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    let dir = crate::scratch::fresh_dir("state");
    let path = dir.join("file");
    std::fs::write(&path, file).expect("write scratch file");
    if which % 2 == 0 {
        let Ok(generation) = state::read_generation(&path) else {
            return;
        };
        match state::bump_generation(&path) {
            Ok(next) => assert_eq!(Some(next), generation.checked_add(1)),
            Err(StoreError::Invalid(_)) => assert_eq!(generation, u32::MAX),
            Err(other) => panic!("bumping a readable generation failed: {other}"),
        }
        assert_eq!(
            state::read_generation(&path).ok(),
            generation.checked_add(1).or(Some(u32::MAX))
        );
    } else {
        let Ok(snapshot) = state::read_snapshot(&path) else {
            return;
        };
        let snapshot = snapshot.expect("the file exists");
        let copy = dir.join("copy");
        state::write_snapshot(&copy, &snapshot).expect("a read snapshot writes");
        assert_eq!(
            state::read_snapshot(&copy).expect("reads back"),
            Some(snapshot)
        );
        assert_eq!(
            std::fs::read(&copy).expect("copy"),
            file,
            "the snapshot encoding is unique"
        );
    }
}

/// `kek.key` opened without a passphrase: a raw key opens (and then opens
/// the corpus log's key files exactly when it is that log's key); a
/// passphrase file is refused before any Argon2id work (its cost
/// parameters come from the file).
pub fn kek_file(data: &[u8]) {
    let path = crate::scratch::file("kek.key", data);
    let needs = Kek::needs_passphrase(&path);
    match Kek::open(&path, None) {
        Ok(kek) => {
            assert_eq!(needs.ok(), Some(false));
            let dek = DataKey::unwrap_file(&kek, fixtures::DEK_SEGMENT, &path, fixtures::DEK_FILE);
            assert_eq!(
                dek.is_ok(),
                data == fixtures::KEK_FILE,
                "only the corpus KEK opens its data key"
            );
        }
        Err(StoreError::WrongKey { .. }) => assert_eq!(needs.ok(), Some(true)),
        Err(_) => {}
    }
}

/// A data key file that opens re-wraps to a file that opens to the same
/// key (checked by sealing with one and opening with the other).
pub fn dek_file(data: &[u8]) {
    let keys = fixtures::keys();
    let path = Path::new("fuzz.dek");
    let segment = fixtures::DEK_SEGMENT;
    let Ok(key) = DataKey::unwrap_file(&keys.kek, segment, path, data) else {
        return;
    };
    assert!(
        DataKey::unwrap_file(&keys.kek, segment + 1, path, data).is_err(),
        "bound to its segment"
    );
    let rewrapped =
        DataKey::rewrap_file(&keys.kek, &keys.kek, segment, path, data).expect("rewraps");
    let again = DataKey::unwrap_file(&keys.kek, segment, path, &rewrapped).expect("opens");
    let commitment = [7u8; 32];
    let mut sealed = b"fuzz".to_vec();
    let tag = key
        .seal_record(1, 2, &commitment, &mut sealed)
        .expect("seals");
    sealed.extend_from_slice(tag.as_ref());
    let opened = again
        .open_record(1, 2, &commitment, &mut sealed)
        .expect("same key");
    assert_eq!(opened, b"fuzz");
}

/// A signing key file that opens re-wraps to one that opens to the same seed.
pub fn signing_key_file(data: &[u8]) {
    let keys = fixtures::keys();
    let path = Path::new("signing.key");
    let Ok(seed) = unwrap_signing_seed(&keys.kek, path, data) else {
        return;
    };
    let rewrapped = rewrap_signing_seed(&keys.kek, &keys.kek, path, data).expect("rewraps");
    let again = unwrap_signing_seed(&keys.kek, path, &rewrapped).expect("opens");
    assert_eq!(*seed, *again);
}

/// `keys/sessions`: an accepted file is its valid prefix (header and whole
/// entries, rewritten byte for byte by `create` and `append`) plus at most
/// one torn entry (cut short, or all zeros); appending the next session
/// cuts that tail and reads back as the same table plus the new salt.
pub fn sessions(data: &[u8]) {
    let dir = crate::scratch::fresh_dir("sessions");
    let path = dir.join("sessions");
    std::fs::write(&path, data).expect("write scratch file");
    let Ok(Some(mut scan)) = sessions::read(&path) else {
        return;
    };
    let valid = scan.valid_len as usize;
    assert!(valid >= sessions::HEADER_LEN && valid <= data.len());
    assert_eq!((valid - sessions::HEADER_LEN) % sessions::ENTRY_LEN, 0);
    assert_eq!(
        (valid - sessions::HEADER_LEN) / sessions::ENTRY_LEN,
        scan.table.len()
    );
    let tail = &data[valid..];
    assert!(
        tail.len() < sessions::ENTRY_LEN
            || (tail.len() == sessions::ENTRY_LEN && tail.iter().all(|b| *b == 0)),
        "only a torn last entry is left out"
    );
    let first = scan.table.first_salted().expect("a file has a header");
    // Rebuilt by the writer's own functions, the valid prefix is the same.
    let copy = dir.join("copy");
    let mut rebuilt = sessions::create(&copy, first).expect("creates");
    for entry in data[sessions::HEADER_LEN..valid].chunks_exact(sessions::ENTRY_LEN) {
        let generation = u32::from_be_bytes(entry[..4].try_into().expect("4 bytes"));
        let salt = SessionSalt(entry[4..36].try_into().expect("a salt"));
        assert_eq!(
            scan.table.key_of(generation),
            Some(sessions::GenerationKey::Salted(salt))
        );
        sessions::append(&copy, &mut rebuilt, generation, salt).expect("appends");
    }
    assert_eq!(rebuilt.table, scan.table);
    assert_eq!(std::fs::read(&copy).expect("copy"), &data[..valid]);
    // The next session cuts the torn tail.
    let Some(next) = scan
        .table
        .last_generation()
        .map_or(Some(first), |g| g.checked_add(1))
    else {
        return;
    };
    let salt = SessionSalt([0x5a; sessions::SALT_LEN]);
    sessions::append(&path, &mut scan, next, salt).expect("appends after a valid prefix");
    let again = sessions::read(&path)
        .expect("reads after append")
        .expect("still there");
    assert_eq!(again.table, scan.table);
    assert_eq!(
        again.table.key_of(next),
        Some(sessions::GenerationKey::Salted(salt))
    );
    assert_eq!(again.valid_len, (valid + sessions::ENTRY_LEN) as u64);
}
