//! Keys the targets share with their seed corpora: the key-encryption key,
//! one segment's data key, the session salts and the checkpoint signing key
//! of the small log that `stele-fuzz-corpus` builds, committed under
//! `fuzz/fixtures/`.
//! With them a target can open the records, key files and notes of that
//! log, so the corpus reaches the code behind the authentication checks.
//! Mutated inputs fail those checks, as they must.

use std::sync::{Arc, OnceLock};

use stele_store::keys::{DataKey, Kek};
use stele_store::sessions::{SegmentKeys, Sessions};
use stele_tlog::{Signer, Verifier};

/// `keys/kek.key` of the corpus log (a raw key, kind `file`).
pub const KEK_FILE: &[u8] = include_bytes!("../../fixtures/kek.key");
/// `keys/signing.key` of the corpus log.
pub const SIGNING_KEY_FILE: &[u8] = include_bytes!("../../fixtures/signing.key");
/// `keys/deks/<id>.dek` of the corpus log's segment [`DEK_SEGMENT`].
pub const DEK_FILE: &[u8] = include_bytes!("../../fixtures/segment.dek");
/// `keys/sessions` of the corpus log: the salt of every writer session,
/// from which the record keys of [`DEK_SEGMENT`] are derived.
pub const SESSIONS_FILE: &[u8] = include_bytes!("../../fixtures/sessions");
/// The segment id the data key belongs to (bound into its wrapping).
pub const DEK_SEGMENT: u32 = 1;
/// The log's origin, which is also its signing key's name.
pub const ORIGIN: &str = include_str!("../../fixtures/origin.txt");

/// The opened keys.
pub struct Keys {
    pub kek: Kek,
    pub data_key: DataKey,
    /// The record keys of segment [`DEK_SEGMENT`], derived as the log
    /// derives them (its data key and the session salts).
    pub segment_keys: SegmentKeys,
    pub signer: Signer,
    pub verifier: Verifier,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

static KEYS: OnceLock<Keys> = OnceLock::new();

/// The corpus log's keys, opened once per process.
pub fn keys() -> &'static Keys {
    KEYS.get_or_init(|| {
        let kek_path = crate::scratch::file("fixture-kek.key", KEK_FILE);
        let kek = Kek::open(&kek_path, None).expect("fixture KEK opens");
        let dek_path = crate::scratch::dir().join("fixture.dek");
        let data_key = DataKey::unwrap_file(&kek, DEK_SEGMENT, &dek_path, DEK_FILE)
            .expect("fixture data key opens");
        let record_data_key = DataKey::unwrap_file(&kek, DEK_SEGMENT, &dek_path, DEK_FILE)
            .expect("fixture data key opens");
        let sessions_path = crate::scratch::file("fixture-sessions", SESSIONS_FILE);
        let scan = stele_store::sessions::read(&sessions_path)
            .expect("fixture sessions file reads")
            .expect("fixture sessions file exists");
        let sessions = Arc::new(Sessions::new(&sessions_path, scan.table));
        let segment_keys = SegmentKeys::new(DEK_SEGMENT, record_data_key, sessions);
        let sig_path = crate::scratch::dir().join("fixture-signing.key");
        let seed = stele_store::keys::unwrap_signing_seed(&kek, &sig_path, SIGNING_KEY_FILE)
            .expect("fixture signing key opens");
        let signer = Signer::new(ORIGIN.trim_end(), *seed).expect("fixture signer");
        let verifier = signer.verifier();
        Keys {
            kek,
            data_key,
            segment_keys,
            signer,
            verifier,
        }
    })
}
