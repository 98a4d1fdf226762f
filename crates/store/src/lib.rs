//! Durable, encrypted storage for one Stele data directory.
//!
//! This crate owns every byte Stele writes below the data directory except the
//! public tlog-tiles tree (which the `stele-log` engine writes through the small
//! helpers in [`fsutil`]). It knows nothing about Merkle trees, events or
//! policy: it stores opaque sealed records, fixed-size index records and signed
//! checkpoint notes, and it makes each of them durable in a documented order.
//!
//! The pieces, and the file each one owns (formats in `docs/formats/`):
//! - [`keys`]: the key-encryption key (raw or from a passphrase via Argon2id),
//!   data keys wrapped by it (one per segment), and the wrapped signing key.
//! - [`sessions`]: the random salt of each writer session and the record
//!   keys derived from it, so that no (key, nonce) pair repeats even in a
//!   restored or copied directory.
//! - [`segment`]: append-only segment files of AES-256-GCM sealed records, one
//!   per (stream, epoch); [`block`]: the records of versions 3 and 4, each a
//!   zstd-compressed block of entries with derived salts.
//! - [`index`]: the sequence index, one fixed 64-byte record per log entry; it
//!   is the durable truth of which entries exist.
//! - [`history`]: every signed checkpoint, append-only.
//! - [`search_part`]: the search index of one segment, sealed under a key
//!   derived from its data key (a cache: `stele_log::search` rebuilds it
//!   from the log).
//! - [`state`]: small atomically replaced files (writer generation, segment
//!   lengths at the last publish).
//! - [`fsutil`]: fsync discipline, atomic replace, the directory lock.
//! - [`fileio`]: the one seam every write, sync, rename and removal goes
//!   through; test builds trace it, skip a sync site, or inject faults.
//! - [`sim`] (test builds only): the crash simulator, which computes from a
//!   trace what a power loss may leave on disk.
//! - [`torn`]: what a crash can leave of a record being written, told apart
//!   from a record altered after it was written.
//!
//! What this crate does not do: decide ordering, batch, retry, or interpret
//! what it stores. After any I/O error a caller must stop writing and reopen;
//! nothing here retries a failed fsync.

pub mod block;
pub mod error;
pub mod fileio;
pub mod fsutil;
pub mod history;
pub mod index;
pub mod keys;
pub mod search_part;
pub mod segment;
pub mod sessions;
#[cfg(feature = "fault-injection")]
pub mod sim;
pub mod state;
pub mod torn;

pub use error::{StoreError, StoreResult};
