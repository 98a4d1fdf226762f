//! Writer sessions: the random salt each writer draws for its generation,
//! and the record keys derived from it.
//!
//! A record nonce is `writer generation ‖ log index`, and the generation
//! lives in a file that a backup brings back: restore a copy, append, and
//! the same (generation, index) pairs are sealed a second time. So the key
//! is not the segment's data key alone. Each writer, before its first
//! append, draws 32 random bytes for its new generation and records them
//! durably in `keys/sessions`; records sealed under that generation use
//! `HKDF-SHA256(data key, salt, "stele/record-key/v1" ‖ segment id ‖
//! generation)`. A restored or copied directory draws a fresh salt at its
//! next append, so its keys differ from those of every other timeline with
//! probability 1 − 2^-128 per pair, whatever the generation file says:
//! nonce uniqueness no longer rests on state a backup restores.
//!
//! Generations sealed before this file existed (a directory made by an
//! older build) have no salt and keep sealing with the data key itself:
//! the file's header names the first generation that must have a salt.
//!
//! This module neither chooses the generation nor decides when a session
//! begins (the engine does, see `crates/log/src/session.rs`); it reads and
//! appends the file and derives keys. Format: `docs/formats/keys.md`.
//!
//! ```text
//! header (17): "STELESES" | version u8 = 1 | first salted generation u32 | crc32 u32
//! entry  (40): generation u32 | salt[32] | crc32 u32 (of the 36 bytes before)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use zeroize::Zeroizing;

use crate::error::{StoreError, StoreResult};
use crate::fileio::{self, Open};
use crate::fsutil::{self, SECRET_MODE, crc32};
use crate::keys::{DataKey, KEY_LEN, random_bytes};

const MAGIC: &[u8; 8] = b"STELESES";
const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 17;
/// Length of one entry.
pub const ENTRY_LEN: usize = 40;
/// Length of a session salt.
pub const SALT_LEN: usize = 32;
/// The HKDF `info` prefix of a record key; the segment id and the
/// generation (u32 big-endian each) follow it.
pub const RECORD_KEY_INFO: &[u8] = b"stele/record-key/v1";

/// The random salt of one writer session. Not secret (it is stored in
/// clear); what matters is that no two sessions share one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionSalt(pub [u8; SALT_LEN]);

impl std::fmt::Debug for SessionSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionSalt({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl SessionSalt {
    /// 32 bytes from the kernel's CSPRNG.
    pub fn random() -> StoreResult<SessionSalt> {
        let mut salt = [0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        Ok(SessionSalt(salt))
    }
}

/// How the records of one generation are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationKey {
    /// Sealed before session salts existed: the data key itself.
    DataKey,
    /// Sealed under the key derived from this salt.
    Salted(SessionSalt),
}

/// The contents of `keys/sessions` (or its absence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTable {
    /// The first generation that must have a salt; `None` when the file
    /// does not exist (every generation so far used the data key).
    first_salted: Option<u32>,
    salts: BTreeMap<u32, SessionSalt>,
}

impl SessionTable {
    /// The table of a directory without `keys/sessions`.
    pub fn without_file() -> SessionTable {
        SessionTable::default()
    }

    /// The first generation that must have a salt, if the file exists.
    pub fn first_salted(&self) -> Option<u32> {
        self.first_salted
    }

    /// The newest generation with a salt.
    pub fn last_generation(&self) -> Option<u32> {
        self.salts.keys().next_back().copied()
    }

    /// Number of salted generations.
    pub fn len(&self) -> usize {
        self.salts.len()
    }

    /// True when no generation has a salt yet.
    pub fn is_empty(&self) -> bool {
        self.salts.is_empty()
    }

    /// How records sealed under `generation` are keyed; `None` when the
    /// generation should have a salt and has none (the file lost an entry,
    /// or the record's generation was altered).
    pub fn key_of(&self, generation: u32) -> Option<GenerationKey> {
        match self.first_salted {
            Some(first) if generation >= first => self
                .salts
                .get(&generation)
                .copied()
                .map(GenerationKey::Salted),
            _ => Some(GenerationKey::DataKey),
        }
    }
}

/// What [`read`] found.
#[derive(Debug, Clone)]
pub struct SessionScan {
    pub table: SessionTable,
    /// Length of the valid prefix (header and whole entries); bytes after
    /// it are a torn append, cut by the next [`append`].
    pub valid_len: u64,
}

/// Reads `keys/sessions`; `None` when it does not exist. A last entry that
/// is cut short, or whose bytes are all zero, is the trace of an append a
/// crash interrupted (its salt was never used: a salt is used only after
/// its entry is durable) and is left out; any other damage is `Corrupt`.
pub fn read(path: &Path) -> StoreResult<Option<SessionScan>> {
    let Some(bytes) = fsutil::read_optional(path)? else {
        return Ok(None);
    };
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(StoreError::corrupt(path, 0, "not a Stele sessions file"));
    }
    fsutil::check_trailing_crc(path, &bytes[..HEADER_LEN], "sessions header")?;
    if bytes[8] != VERSION {
        return Err(StoreError::corrupt(
            path,
            8,
            format!("unsupported sessions file version {}", bytes[8]),
        ));
    }
    let first = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    let mut table = SessionTable {
        first_salted: Some(first),
        salts: BTreeMap::new(),
    };
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let last = rest.len() <= ENTRY_LEN;
        if rest.len() < ENTRY_LEN || (last && rest.iter().all(|b| *b == 0)) {
            break;
        }
        let entry = &rest[..ENTRY_LEN];
        fsutil::check_trailing_crc(path, entry, "sessions entry").map_err(|_| {
            StoreError::corrupt(path, at as u64, "sessions entry checksum mismatch")
        })?;
        let generation = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&entry[4..36]);
        if generation < first || table.last_generation().is_some_and(|g| generation <= g) {
            return Err(StoreError::corrupt(
                path,
                at as u64,
                format!("generation {generation} is out of order (generations rise from {first})"),
            ));
        }
        table.salts.insert(generation, SessionSalt(salt));
        at += ENTRY_LEN;
    }
    Ok(Some(SessionScan {
        table,
        valid_len: at as u64,
    }))
}

/// Creates `keys/sessions` with no entry: generations from `first_salted`
/// on must have a salt. Callers create it only when [`read`] found none.
/// Crash story: written by atomic replace, so after a crash there is no
/// file or the whole header, never a torn one; once this returns it is
/// durable with its directory entry.
pub fn create(path: &Path, first_salted: u32) -> StoreResult<SessionScan> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.extend_from_slice(&first_salted.to_be_bytes());
    let crc = crc32(&header);
    header.extend_from_slice(&crc.to_be_bytes());
    fsutil::atomic_replace(path, &header, SECRET_MODE)?;
    Ok(SessionScan {
        table: SessionTable {
            first_salted: Some(first_salted),
            salts: BTreeMap::new(),
        },
        valid_len: HEADER_LEN as u64,
    })
}

/// Appends the entry (`generation`, `salt`) after the valid prefix of the
/// file (cutting a torn entry first) and fsyncs it. Crash story: until this
/// returns the entry may be missing, cut short or zeros, and the caller has
/// sealed nothing under it; after it returns it is durable (the file
/// existed before, so its directory entry needs no fsync).
pub fn append(
    path: &Path,
    scan: &mut SessionScan,
    generation: u32,
    salt: SessionSalt,
) -> StoreResult<()> {
    let first = scan.table.first_salted.ok_or_else(|| {
        StoreError::Invalid("a session is appended only to an existing sessions file".into())
    })?;
    if generation < first
        || scan
            .table
            .last_generation()
            .is_some_and(|g| generation <= g)
    {
        return Err(StoreError::Invalid(format!(
            "session generation {generation} does not follow the recorded ones"
        )));
    }
    let mut entry = Vec::with_capacity(ENTRY_LEN);
    entry.extend_from_slice(&generation.to_be_bytes());
    entry.extend_from_slice(&salt.0);
    let crc = crc32(&entry);
    entry.extend_from_slice(&crc.to_be_bytes());
    let file = fileio::open_write(path, Open::Existing, SECRET_MODE)
        .map_err(|e| StoreError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    if len != scan.valid_len {
        fileio::set_len(&file, path, scan.valid_len)
            .map_err(|e| StoreError::io("truncate", path, e))?;
    }
    fileio::write_at(&file, path, &entry, scan.valid_len)
        .map_err(|e| StoreError::io("write", path, e))?;
    fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
    scan.valid_len += ENTRY_LEN as u64;
    scan.table.salts.insert(generation, salt);
    Ok(())
}

/// The session table of an open log, shared by every segment's keys; the
/// writer adds its own session to it once the entry is durable.
#[derive(Debug)]
pub struct Sessions {
    path: PathBuf,
    table: RwLock<SessionTable>,
}

impl Sessions {
    pub fn new(path: &Path, table: SessionTable) -> Sessions {
        Sessions {
            path: path.to_path_buf(),
            table: RwLock::new(table),
        }
    }

    /// A copy of the current table.
    pub fn table(&self) -> SessionTable {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the table (after an append made it durable).
    pub fn set(&self, table: SessionTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    /// How records sealed under `generation` are keyed, or why they cannot
    /// be opened.
    pub fn key_of(&self, generation: u32) -> StoreResult<GenerationKey> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .key_of(generation)
            // Not `Corrupt`: recovery cuts a tail of damaged records, and
            // a lost salt is missing key material, not a torn record.
            .ok_or_else(|| StoreError::WrongKey {
                path: self.path.clone(),
                what: format!(
                    "no session salt is recorded for writer generation {generation}: the records sealed under it cannot be opened"
                ),
            })
    }
}

/// Output length of the HKDF expansion: one AES-256 key.
struct RecordKeyLen;

impl KeyType for RecordKeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// The record key of segment `segment_id` for the session (`generation`,
/// `salt`): HKDF-SHA256 with the salt as HKDF salt, the raw data key as
/// input keying material, and `info` = [`RECORD_KEY_INFO`] ‖ segment id
/// u32 BE ‖ generation u32 BE, 32 bytes out.
pub fn derive_record_key(
    data_key: &DataKey,
    segment_id: u32,
    generation: u32,
    salt: &SessionSalt,
) -> StoreResult<DataKey> {
    let segment = segment_id.to_be_bytes();
    let generation = generation.to_be_bytes();
    let info = [RECORD_KEY_INFO, &segment[..], &generation[..]];
    let prk = Salt::new(HKDF_SHA256, &salt.0).extract(data_key.raw());
    let okm = prk
        .expand(&info, RecordKeyLen)
        .map_err(|_| StoreError::Invalid("HKDF-SHA256 expansion failed".into()))?;
    let mut raw = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(raw.as_mut())
        .map_err(|_| StoreError::Invalid("HKDF-SHA256 expansion failed".into()))?;
    DataKey::from_raw(raw)
}

/// The keys of one segment: its data key, and the record key of every
/// generation that sealed records in it (derived once, then cached).
pub struct SegmentKeys {
    segment_id: u32,
    data: Arc<DataKey>,
    sessions: Arc<Sessions>,
    derived: Mutex<Vec<(u32, Arc<DataKey>)>>,
}

impl std::fmt::Debug for SegmentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentKeys")
            .field("segment_id", &self.segment_id)
            .finish_non_exhaustive()
    }
}

impl SegmentKeys {
    pub fn new(segment_id: u32, data: DataKey, sessions: Arc<Sessions>) -> SegmentKeys {
        SegmentKeys {
            segment_id,
            data: Arc::new(data),
            sessions,
            derived: Mutex::new(Vec::new()),
        }
    }

    /// The segment's data key itself (what its search part's key is
    /// derived from).
    pub fn data_key(&self) -> &DataKey {
        &self.data
    }

    /// The key that seals and opens the records of `generation` in this
    /// segment.
    pub fn record_key(&self, generation: u32) -> StoreResult<Arc<DataKey>> {
        let salt = match self.sessions.key_of(generation)? {
            GenerationKey::DataKey => return Ok(self.data.clone()),
            GenerationKey::Salted(salt) => salt,
        };
        let mut derived = self.derived.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = derived.iter().find(|(g, _)| *g == generation) {
            return Ok(key.clone());
        }
        let key = Arc::new(derive_record_key(
            &self.data,
            self.segment_id,
            generation,
            &salt,
        )?);
        derived.push((generation, key.clone()));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Kek, NewKek};

    fn seal(key: &DataKey, generation: u32, index: u64) -> Vec<u8> {
        let mut buf = b"event".to_vec();
        let tag = key
            .seal_record(generation, index, &[7; 32], &mut buf)
            .unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    #[test]
    fn file_round_trip_torn_tail_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions");
        assert!(read(&path).unwrap().is_none());
        let mut scan = create(&path, 4).unwrap();
        let a = SessionSalt::random().unwrap();
        let b = SessionSalt::random().unwrap();
        append(&path, &mut scan, 4, a).unwrap();
        assert!(append(&path, &mut scan, 4, b).is_err(), "generations rise");
        assert!(append(&path, &mut scan, 3, b).is_err());
        append(&path, &mut scan, 6, b).unwrap();
        let again = read(&path).unwrap().unwrap();
        assert_eq!(again.table, scan.table);
        assert_eq!(again.valid_len, (HEADER_LEN + 2 * ENTRY_LEN) as u64);
        assert_eq!(again.table.key_of(3), Some(GenerationKey::DataKey));
        assert_eq!(again.table.key_of(4), Some(GenerationKey::Salted(a)));
        assert_eq!(
            again.table.key_of(5),
            None,
            "a salted generation without salt"
        );
        assert_eq!(again.table.key_of(6), Some(GenerationKey::Salted(b)));

        // A torn append (cut short, or zeros) is left out and cut by the
        // next append.
        let mut bytes = std::fs::read(&path).unwrap();
        for torn in [vec![1u8; 17], vec![0u8; ENTRY_LEN]] {
            let mut with = bytes.clone();
            with.extend_from_slice(&torn);
            std::fs::write(&path, &with).unwrap();
            let mut scan = read(&path).unwrap().unwrap();
            assert_eq!(scan.table.len(), 2);
            append(&path, &mut scan, 9, a).unwrap();
            assert_eq!(read(&path).unwrap().unwrap().table, scan.table);
            std::fs::write(&path, &bytes).unwrap();
        }
        // An altered whole entry is corruption, not a tear.
        bytes[HEADER_LEN + 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }

    /// Salted generations seal under a key of their own per segment and
    /// salt; generations before the first salted one under the data key.
    #[test]
    fn record_keys_by_generation() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (data, file) = DataKey::generate(&kek, 3).unwrap();
        let path = dir.path().join("sessions");
        let mut scan = create(&path, 5).unwrap();
        append(&path, &mut scan, 5, SessionSalt::random().unwrap()).unwrap();
        append(&path, &mut scan, 6, SessionSalt::random().unwrap()).unwrap();
        let sessions = Arc::new(Sessions::new(&path, scan.table.clone()));
        let keys = SegmentKeys::new(3, data, sessions.clone());
        let direct = DataKey::unwrap_file(&kek, 3, &path, &file).unwrap();

        // Generation 4: the data key itself.
        let legacy = seal(&direct, 4, 10);
        assert!(
            keys.record_key(4)
                .unwrap()
                .open_record(4, 10, &[7; 32], &mut legacy.clone())
                .is_some()
        );
        // Generations 5 and 6 share the nonce of index 10 but not the key.
        let five = seal(&keys.record_key(5).unwrap(), 5, 10);
        assert!(
            direct
                .open_record(5, 10, &[7; 32], &mut five.clone())
                .is_none(),
            "not the data key"
        );
        let k5 = keys.record_key(5).unwrap();
        assert!(Arc::ptr_eq(&k5, &keys.record_key(5).unwrap()), "cached");
        assert!(k5.open_record(5, 10, &[7; 32], &mut five.clone()).is_some());
        let other = SegmentKeys::new(
            4,
            DataKey::unwrap_file(&kek, 3, &path, &file).unwrap(),
            sessions,
        );
        assert!(
            other
                .record_key(5)
                .unwrap()
                .open_record(5, 10, &[7; 32], &mut five.clone())
                .is_none(),
            "the segment id is part of the key"
        );
        let err = keys.record_key(7).unwrap_err().to_string();
        assert!(err.contains("no session salt"), "{err}");
    }
}
