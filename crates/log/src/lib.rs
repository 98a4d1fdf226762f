//! The Stele log engine: sequence, integrate, publish, read and verify.
//!
//! A [`Log`] is one open data directory: its [`LogWriter`], and
//! [`Governance`] as the writer's client; every read goes through a
//! [`LogReader`] (see `log.rs`). Appending is three steps, in the shape
//! of tessera's design: *sequencing* durably assigns each event an index
//! (sealed record in its segment, then its index record, each fsynced);
//! *integration* extends the RFC 6962 tree and writes its C2SP tiles;
//! *publishing* makes the tiles durable and signs a checkpoint. Recovery
//! (run by every [`Log::open`]) cuts torn tails and integrates and publishes
//! every durable entry, so no signed checkpoint ever covers data that is not
//! durable and nothing acknowledged is lost.
//!
//! Governance lives here too because it changes what is stored: applied
//! policy versions, legal holds and retention purges (`governance`,
//! `purge`, `announce`), scheduled verification and signed attestations
//! (`audit`), key-encryption-key rotation (`rotate`) and tokens (`tokens`),
//! each recorded as a `_system` event through the writer. What a policy
//! *means* is decided by `stele-policy`.
//!
//! This crate does not parse command lines or speak HTTP; it takes prepared
//! events and returns receipts, proofs and verification reports.

mod anchor;
mod announce;
pub mod audit;
pub mod bundle;
mod checkpoints;
mod committer;
mod engine;
pub mod error;
pub mod governance;
mod ids;
pub mod layout;
mod ledger;
mod log;
mod meta;
pub mod operator;
pub mod prepare;
mod publisher;
pub mod purge;
mod read_only;
mod reader;
pub mod receipt_json;
mod rotate;
pub mod salvage;
pub mod scan;
pub mod search;
pub mod sequencer;
mod session;
pub mod shared;
pub mod system_event;
pub mod tiles;
pub mod tokens;
pub mod verify;
mod verify_files;

pub use announce::{DEFAULT_RETENTION_GRACE, MAX_DRIFT, RetentionRun};
pub use checkpoints::{CheckpointHistory, HistoryStream};
pub use committer::FsyncMetrics;
#[doc(hidden)]
pub use engine::decode_plaintext;
pub use engine::{CreateOptions, LogWriter, MAX_BATCH, OpenOptions, Receipt, StoredEvent};
pub use error::{LogError, LogResult};
pub use governance::Governance;
pub use ids::{EntryIndex, SegmentId};
pub use log::Log;
pub use meta::Meta;
pub use prepare::{PreparedEvent, Preparer};
pub use reader::LogReader;
#[doc(hidden)]
pub use rotate::kek_info_round_trip;
pub use rotate::{KekAgeSource, KekInfo, RotateStep};
pub use stele_store::block::BlockConfig;
/// The key kinds a caller chooses or reads, from the store.
pub use stele_store::keys::{KekKind, NewKek};
pub use system_event::{SystemEvent, SystemResource};
