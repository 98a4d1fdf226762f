//! [`Log`]: one open data directory, as the server and the CLI hold it —
//! its writer, and governance as the writer's client.
//!
//! The roles are separate types:
//! - [`LogWriter`] (`engine.rs`) appends, publishes and recovers; it is the
//!   only thing that changes segments, the index and tiles;
//! - [`Governance`] (`governance.rs` and its neighbours) decides policy
//!   versions, holds, purges, attestations, key rotation and tokens, and
//!   records each decision through the writer's narrow calls
//!   ([`LogWriter::append_system`], closing and retiring a segment);
//! - [`LogReader`] (`reader.rs`) serves every read without either of them.
//!
//! `Log` only pairs the writer with the governance state and runs the open
//! in order.

use std::path::Path;
use std::sync::Arc;

use stele_store::keys::Kek;

use crate::committer::FsyncMetrics;
use crate::engine::{CreateOptions, LogWriter, OpenOptions, check_dir};
use crate::error::LogResult;
use crate::governance::{Governance, GovernanceState};
use crate::layout::Layout;
use crate::meta::Meta;
use crate::reader::LogReader;

/// An open log: its writer and its governance (see the module docs).
#[derive(Debug)]
pub struct Log {
    writer: LogWriter,
    governance: GovernanceState,
}

impl Log {
    /// Creates a new log in `dir` (see [`LogWriter::create`]) and returns
    /// its verifier key.
    pub fn create(dir: &Path, options: CreateOptions) -> LogResult<String> {
        LogWriter::create(dir, options)
    }

    /// Reads the identity of a data directory without opening it.
    pub fn read_meta(dir: &Path) -> LogResult<Meta> {
        check_dir(dir)?;
        Meta::read(&Layout::new(dir).meta())
    }

    /// True when the log's key-encryption key needs a passphrase.
    pub fn needs_passphrase(dir: &Path) -> LogResult<bool> {
        check_dir(dir)?;
        Ok(Kek::needs_passphrase(&Layout::new(dir).kek())?)
    }

    /// Opens the log and recovers: cuts torn tails, integrates every durable
    /// entry, checks the governance files against the log's own record, and
    /// publishes a checkpoint covering all of it.
    pub fn open(dir: &Path, options: OpenOptions) -> LogResult<Log> {
        let (writer, at_open) = LogWriter::open(dir, &options)?;
        let mut log = Log {
            writer,
            governance: GovernanceState::new(at_open.attestor, at_open.purged),
        };
        // `policies/` and `holds.json` as the files say; checked below.
        log.governance().load()?;
        // A purge record must be genuine before recovery treats its
        // segment as gone.
        log.governance().check_pending_purges()?;
        log.writer.recover()?;
        // The files beside the log are checked against (and, where a crash
        // left them behind, rebuilt from) the log's own record; changes a
        // crash interrupted are finished.
        log.governance().reconcile()?;
        log.governance().finish_interrupted()?;
        if !options.no_search_index {
            log.writer.start_search(options.search_parts)?;
        }
        Ok(log)
    }

    /// The writer: appends and checkpoints.
    pub fn writer(&mut self) -> &mut LogWriter {
        &mut self.writer
    }

    /// Governance: policy versions, holds, retention, attestations, key
    /// rotation and tokens, each recorded in the log by the writer.
    pub fn governance(&mut self) -> Governance<'_> {
        Governance::new(&mut self.writer, &mut self.governance)
    }

    /// The read side (clone it to read from other threads while this handle
    /// appends; see `reader.rs`).
    pub fn reader(&self) -> &LogReader {
        self.writer.reader()
    }

    /// Whether the log still accepts writes (no earlier write, fsync or
    /// publish failure).
    pub fn health(&self) -> LogResult<()> {
        self.writer.health()
    }

    /// How long each segment and index flush took (shared: readable while
    /// the log is busy).
    pub fn fsync_metrics(&self) -> Arc<FsyncMetrics> {
        self.writer.fsync_metrics()
    }

    /// What this open's recovery kept aside in `recovered/`, one line each.
    pub fn kept_at_open(&self) -> &[String] {
        self.writer.kept_at_open()
    }
}
