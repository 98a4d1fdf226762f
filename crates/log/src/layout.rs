//! Where each file lives in a data directory.
//!
//! ```text
//! DATA/meta.json                 origin, log id, verifier key, KEK kind, format version
//! DATA/lock                      advisory lock held by the process using the log
//! DATA/keys/kek.key              key-encryption key (0600), raw or passphrase-derived
//! DATA/keys/kek.info             age and rotation count of the KEK (JSON); only after a rotation
//! DATA/keys/signing.key          Ed25519 seed wrapped by the KEK (0600)
//! DATA/keys/deks/<id>.dek        data key of segment <id>, wrapped by the KEK (0600)
//! DATA/keys/sessions             random salt of every writer session (record keys)
//! DATA/keys/kek.next             } a KEK rotation in progress only:
//! DATA/keys/kek.info.next        } the new KEK, its kek.info, and the key
//! DATA/keys/signing.key.next     } files re-wrapped under it
//! DATA/keys/deks/<id>.dek.next   } (docs/formats/keys.md)
//! DATA/index                     one 64-byte record per entry (the durable sequence)
//! DATA/segments/<stream>/<YYYY-MM-DD>.seg     sealed events of one stream and UTC day
//! DATA/segments/<stream>/<YYYY-MM-DD>.purged  tombstone of a purged epoch (JSON)
//! DATA/checkpoints               every signed checkpoint, append-only
//! DATA/writer-generation         nonce generation counter
//! DATA/segments.state            segment lengths at the last publish
//! DATA/policies/<seq:06>.json    every applied policy version (JSON)
//! DATA/holds.json                every legal hold, released ones included (JSON)
//! DATA/recovered/<id>-<offset>.bin|json  bytes recovery cut from a segment, kept aside
//! DATA/audit/state.json          how far scheduled verification got (JSON)
//! DATA/audit/latest.json         the latest signed attestation (JSON)
//! DATA/search/<id>.part          search index of segment <id>, sealed (a cache)
//! DATA/log/checkpoint            latest signed checkpoint   } C2SP tlog-tiles,
//! DATA/log/tile/<L>/<N>[.p/<W>]  hash tiles                 } servable as
//! DATA/log/tile/entries/<N>[.p/<W>]  entry bundles          } static files
//! ```
//!
//! Tombstones, `policies/` and `holds.json` are named in `governance.rs`,
//! `audit/` in `audit.rs`, `recovered/` in `salvage.rs`; `DATA/tokens.json` in `tokens.rs`. Byte
//! formats: `docs/formats/`.

use std::path::{Path, PathBuf};

use stele_event::time::Day;

/// Paths of one data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join("meta.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn kek(&self) -> PathBuf {
        self.keys().join("kek.key")
    }
    /// The new KEK of a rotation that has not reached its commit point
    /// (renamed over `kek.key` to commit). See `docs/formats/keys.md`.
    pub fn kek_next(&self) -> PathBuf {
        self.keys().join("kek.next")
    }
    /// When the current KEK was made, and how many rotations came before it
    /// (JSON). Absent for a log whose KEK was never rotated.
    pub fn kek_info(&self) -> PathBuf {
        self.keys().join("kek.info")
    }
    /// `kek.info` of the KEK a rotation is installing; renamed over
    /// `kek.info` as the rotation's last step, so it marks a rotation that
    /// is still in progress.
    pub fn kek_info_next(&self) -> PathBuf {
        self.keys().join("kek.info.next")
    }
    /// The signing key re-wrapped under the KEK a rotation is installing.
    pub fn signing_key_next(&self) -> PathBuf {
        self.keys().join("signing.key.next")
    }
    /// The data key of segment `segment_id` re-wrapped under the KEK a
    /// rotation is installing.
    pub fn dek_next(&self, segment_id: u32) -> PathBuf {
        self.deks().join(format!("{segment_id}.dek.next"))
    }
    pub fn signing_key(&self) -> PathBuf {
        self.keys().join("signing.key")
    }
    pub fn deks(&self) -> PathBuf {
        self.keys().join("deks")
    }
    pub fn dek(&self, segment_id: u32) -> PathBuf {
        self.deks().join(format!("{segment_id}.dek"))
    }
    /// The salt of every writer session (`stele_store::sessions`).
    pub fn sessions(&self) -> PathBuf {
        self.keys().join("sessions")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    pub fn segments(&self) -> PathBuf {
        self.root.join("segments")
    }
    pub fn segment(&self, stream: &str, epoch: Day) -> PathBuf {
        self.segments().join(stream).join(format!("{epoch}.seg"))
    }
    pub fn history(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn generation(&self) -> PathBuf {
        self.root.join("writer-generation")
    }
    /// The purge record (tombstone) of a stream's epoch.
    pub fn tombstone(&self, stream: &str, day: Day) -> PathBuf {
        self.segments().join(stream).join(format!("{day}.purged"))
    }
    /// The legal holds (a cache of the `hold.*` events).
    pub fn holds(&self) -> PathBuf {
        self.root.join("holds.json")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.root.join("segments.state")
    }
    /// The search index's part files (a cache; `search/parts.rs`).
    pub fn search_parts(&self) -> PathBuf {
        self.root.join("search")
    }
    pub fn search_part(&self, segment_id: u32) -> PathBuf {
        self.search_parts().join(format!("{segment_id}.part"))
    }
    /// The root of the public tlog-tiles tree.
    pub fn public(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.public().join("checkpoint")
    }
}
