//! Rollback and fork detection: signed checkpoints the data no longer
//! reaches.
//!
//! The log signs a checkpoint at each publish and keeps every one in its
//! history. A data directory restored from a backup (or otherwise rolled
//! back) is internally consistent: its history, index and tiles all stop
//! at the backup's size, and nothing inside it can tell. Appending to it
//! would make the log sign a second, different tree head at a size it has
//! already signed: a fork. So every open compares the latest checkpoint of
//! the history with every other signed checkpoint it can find:
//! - `log/checkpoint` (normally the latest or the one before it);
//! - the **anchor**, an optional file *outside* the data directory where the
//!   publisher keeps a copy of each checkpoint it publishes (`--anchor`,
//!   the server's `anchor` setting). A backup does not bring it back, so a
//!   restore without it is noticed.
//!
//! A checkpoint signed by the log's key that is larger than the latest one,
//! of the same size with another root, or smaller but not consistent with
//! it (by a consistency proof from the tiles) refuses the open before any
//! file is changed, naming the file and both sizes and roots. This module
//! does not look at entries or segments; `verify` checks that every
//! checkpoint of the history is consistent with the others.

use std::path::{Path, PathBuf};

use stele_store::fsutil;
use stele_store::history::StoredCheckpoint;
use stele_tlog::tile::TileHashReader;
use stele_tlog::{Checkpoint, Verifier};

use crate::engine::open_checkpoint;
use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::meta::Meta;
use crate::tiles::DiskTiles;

/// Longest anchor file read (a checkpoint note is a few hundred bytes).
const MAX_ANCHOR_BYTES: u64 = 64 * 1024;

/// The anchor file: a copy of the latest signed checkpoint, kept outside
/// the data directory.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    path: PathBuf,
}

impl Anchor {
    /// The anchor at `path` for the data directory `data`. Refused (a
    /// usage error) inside the data directory, where a backup would bring
    /// it back with the rest, or in a directory that does not exist.
    pub(crate) fn new(path: &Path, data: &Path) -> LogResult<Anchor> {
        let name = path.file_name().ok_or_else(|| {
            LogError::Usage(format!("anchor {}: not a file name", path.display()))
        })?;
        let parent = fsutil::parent_of(path);
        let parent = parent.canonicalize().map_err(|e| {
            LogError::Usage(format!(
                "anchor {}: its directory {}: {e}",
                path.display(),
                parent.display()
            ))
        })?;
        let data = data
            .canonicalize()
            .map_err(|e| LogError::Usage(format!("data directory {}: {e}", data.display())))?;
        if parent.starts_with(&data) {
            return Err(LogError::Usage(format!(
                "anchor {} is inside the data directory {}: keep it where a backup of the data directory does not bring it back (another disk, another host)",
                path.display(),
                data.display()
            )));
        }
        Ok(Anchor {
            path: parent.join(name),
        })
    }

    /// The anchor's bytes; `None` before the first publish wrote it.
    fn read(&self) -> LogResult<Option<Vec<u8>>> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.len() > MAX_ANCHOR_BYTES => {
                return Err(LogError::Integrity(format!(
                    "anchor {}: {} bytes, not a checkpoint note",
                    self.path.display(),
                    m.len()
                )));
            }
            _ => {}
        }
        Ok(fsutil::read_optional(&self.path)?)
    }

    /// Makes the anchor hold `note` (a checkpoint just published, or the
    /// latest one at open). Crash story: atomic replace, so the anchor
    /// holds the old note or the new one; it is written only after the
    /// note is durable in the history, so it never holds a checkpoint the
    /// log could lose.
    pub(crate) fn keep(&self, note: &[u8]) -> LogResult<()> {
        if self.read()?.as_deref() == Some(note) {
            return Ok(());
        }
        fsutil::atomic_replace(&self.path, note, 0o644)?;
        Ok(())
    }
}

/// Refuses the open when a signed checkpoint outside the history's latest
/// shows that the log was rolled back or forked. Reads only: nothing is
/// written, whatever the outcome. `latest` is the history's last record
/// (`None`, or a latest note that does not verify, are reported by the
/// open itself).
pub(crate) fn check_rollback(
    layout: &Layout,
    meta: &Meta,
    latest: Option<&StoredCheckpoint>,
    anchor: Option<&Anchor>,
) -> LogResult<()> {
    let verifier = Verifier::from_vkey(&meta.verifier_key).map_err(|e| {
        LogError::Integrity(format!("{}: verifier key: {e}", layout.meta().display()))
    })?;
    let Some(latest) = latest else {
        return Ok(());
    };
    let Ok(current) = open_checkpoint(&verifier, &meta.origin, &latest.note) else {
        return Ok(());
    };
    // `log/checkpoint` is rewritten from the history at open; one that a
    // key other than the log's signed is reported there, not here.
    if let Some(note) = fsutil::read_optional(&layout.checkpoint())?
        && let Ok(seen) = open_checkpoint(&verifier, &meta.origin, &note)
    {
        compare(layout, &layout.checkpoint(), &seen, &current)?;
    }
    if let Some(anchor) = anchor
        && let Some(note) = anchor.read()?
    {
        let seen = open_checkpoint(&verifier, &meta.origin, &note).map_err(|e| {
            LogError::Integrity(format!(
                "anchor {}: not a checkpoint of this log ({e}); point --anchor at this log's own anchor file",
                anchor.path.display()
            ))
        })?;
        compare(layout, &anchor.path, &seen, &current)?;
    }
    Ok(())
}

/// Checks that the signed checkpoint `seen` (found in `file`) is reached by
/// `current`, the latest of the history.
fn compare(layout: &Layout, file: &Path, seen: &Checkpoint, current: &Checkpoint) -> LogResult<()> {
    let describe = |c: &Checkpoint| format!("size {} (root {})", c.size, c.root.to_base64());
    let history = layout.history();
    if seen.size > current.size {
        return Err(LogError::Integrity(format!(
            "rollback: {} holds a checkpoint this log signed at {}, but the log's latest checkpoint ({}) is {}: the data directory was rolled back (restored from a backup?); refusing to open it, so that the log never signs a second tree at a size it already signed",
            file.display(),
            describe(seen),
            history.display(),
            describe(current)
        )));
    }
    if seen.size == current.size {
        if seen.root != current.root {
            return Err(LogError::Integrity(format!(
                "fork: {} holds a checkpoint this log signed at {}, but the log's latest checkpoint ({}) is {}: two different trees of one size were signed",
                file.display(),
                describe(seen),
                history.display(),
                describe(current)
            )));
        }
        return Ok(());
    }
    if seen.size == 0 {
        return Ok(());
    }
    let tiles = DiskTiles::new(&layout.public());
    let reader = TileHashReader::new(current.size, &tiles);
    let proof = stele_tlog::consistency_proof(&reader, seen.size, current.size).map_err(|e| {
        LogError::Integrity(format!(
            "{}: cannot check the checkpoint of {} it holds against the log's latest ({}): the tiles do not give a consistency proof ({e})",
            file.display(),
            describe(seen),
            describe(current)
        ))
    })?;
    if let Err(why) =
        stele_tlog::verify_consistency(seen.size, current.size, &proof, &seen.root, &current.root)
    {
        return Err(LogError::Integrity(format!(
            "fork: {} holds a checkpoint this log signed at {}, which the log's latest checkpoint ({}, {}) does not extend ({why})",
            file.display(),
            describe(seen),
            history.display(),
            describe(current)
        )));
    }
    Ok(())
}
