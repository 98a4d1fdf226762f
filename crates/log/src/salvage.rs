//! Bytes that recovery cut from the end of a segment and that are not what
//! an interrupted append leaves, kept aside instead of destroyed.
//!
//! After a process crash, the bytes after a segment's committed length are
//! whole records of unacknowledged batches and at most one torn record
//! followed by zeros; recovery cuts those without a word. After a power
//! loss, the page cache reaches the disk in any order, so the same region
//! can hold record pages, zero pages and stale blocks mixed; and bytes
//! written there by anyone else look the same. Neither is part of the log
//! (the durable index says where every entry's record is), so the open
//! goes on, but such bytes are evidence: before the cut they are written to
//! `DATA/recovered/<segment id>-<offset>.bin` with a manifest
//! `<segment id>-<offset>.json` (`-2`, `-3`, … added when other bytes
//! were already kept from the same place), and the open appends a `log.recovered`
//! event to `_system` naming them. `stele verify` lists the kept files.
//!
//! Crash story, in order: (1) the bytes, then the manifest, each by atomic
//! replace — a crash before (2) finds the same tail and writes the same
//! files again; (2) the segment is cut; (3) after recovery, the event is
//! appended under the client id `recovered:<name>` and the manifest is
//! rewritten with its index — a crash between finds the event by its
//! client id instead of appending it twice.
//!
//! The kept bytes are ciphertext under the segment's data key where they
//! are records; purging the segment deletes them with it. Format:
//! `docs/formats/recovered.md`.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stele_store::StoreError;
use stele_store::fsutil;

use crate::error::{LogError, LogResult};
use crate::governance::Governance;
use crate::layout::Layout;
use stele_tlog::hash::hex;

/// Most bytes one cut may keep aside. A larger tail is not a crash's
/// leftovers (a batch is at most 4,096 events); the open refuses it and
/// leaves the file for a person to look at.
pub const MAX_KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// Version of the manifest format.
const FORMAT: u32 = 1;

/// The manifest of one kept tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Salvaged {
    pub format: u32,
    /// Id of the segment the bytes were cut from.
    pub segment: u32,
    /// That segment's path, relative to the data directory.
    pub file: String,
    /// Byte offset in the segment of the first kept byte (its committed
    /// length); the bytes ran to `offset + length`, zeros after them were
    /// not kept.
    pub offset: u64,
    pub length: u64,
    /// SHA-256 of the kept bytes, hex.
    pub sha256: String,
    /// When recovery found them (RFC 3339).
    pub found_at: String,
    /// Index of the `log.recovered` event, once appended.
    pub event_index: Option<u64>,
}

impl Layout {
    /// `DATA/recovered/`: tails cut by recovery and kept aside.
    pub fn recovered(&self) -> PathBuf {
        self.root.join("recovered")
    }
}

fn name(segment: u32, offset: u64) -> String {
    format!("{segment}-{offset}")
}

fn write_manifest(path: &Path, manifest: &Salvaged) -> LogResult<()> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| LogError::Internal(format!("recovered manifest: {e}")))?;
    bytes.push(b'\n');
    Ok(fsutil::atomic_replace(path, &bytes, 0o600)?)
}

/// Copies bytes `offset..end` of segment `segment` (at `path`) into
/// `recovered/`, durably, before the caller cuts them (step 1); returns the
/// name they are kept under and their manifest.
pub(crate) fn keep_aside(
    layout: &Layout,
    segment: u32,
    path: &Path,
    offset: u64,
    end: u64,
    now: Timestamp,
) -> LogResult<(String, Salvaged)> {
    use std::os::unix::fs::FileExt;
    let length = end - offset;
    if length > MAX_KEPT_BYTES {
        return Err(LogError::Integrity(format!(
            "{}: {length} bytes after the committed length {offset} are not what an interrupted append leaves, more than the {MAX_KEPT_BYTES} recovery keeps aside; nothing was cut (move them out of the file, then `truncate -s {offset}` it)",
            path.display()
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    std::fs::File::open(path)
        .and_then(|file| file.read_exact_at(&mut bytes, offset))
        .map_err(|e| StoreError::io("read", path, e))?;
    let dir = layout.recovered();
    fsutil::create_dir_durable(&dir)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    // The same bytes kept before (an open that stopped before its cut) keep
    // their files; other bytes cut at the same place later (another crash
    // before anything was committed to this segment) get a new name, so no
    // kept file is ever replaced.
    let mut name = name(segment, offset);
    for n in 2.. {
        match fsutil::read_optional(&dir.join(format!("{name}.json")))? {
            None => break,
            Some(existing) => {
                if let Ok(kept) = serde_json::from_slice::<Salvaged>(&existing)
                    && kept.sha256 == sha256
                    && kept.length == length
                {
                    fsutil::atomic_replace(&dir.join(format!("{name}.bin")), &bytes, 0o600)?;
                    return Ok((name, kept));
                }
            }
        }
        name = format!("{segment}-{offset}-{n}");
    }
    fsutil::atomic_replace(&dir.join(format!("{name}.bin")), &bytes, 0o600)?;
    let file = path
        .strip_prefix(&layout.root)
        .unwrap_or(path)
        .display()
        .to_string();
    let manifest = Salvaged {
        format: FORMAT,
        segment,
        file,
        offset,
        length,
        sha256,
        found_at: now.to_string(),
        event_index: None,
    };
    write_manifest(&dir.join(format!("{name}.json")), &manifest)?;
    Ok((name, manifest))
}

/// Every kept tail, by name (`<segment id>-<offset>`), in name order.
pub fn list(layout: &Layout) -> LogResult<Vec<(String, Salvaged)>> {
    let dir = layout.recovered();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read directory", &dir, e).into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let manifest: Salvaged = serde_json::from_slice(&fsutil::read(&path)?)
            .map_err(|e| LogError::Integrity(format!("{}: {e}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(LogError::Integrity(format!(
                "{}: format {} is not supported (this build reads {FORMAT})",
                path.display(),
                manifest.format
            )));
        }
        out.push((name.to_string(), manifest));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Deletes the kept tails of segment `segment` (its purge).
pub(crate) fn remove_segment(layout: &Layout, segment: u32) -> LogResult<()> {
    let dir = layout.recovered();
    let mut removed = false;
    for (name, manifest) in list(layout)? {
        if manifest.segment != segment {
            continue;
        }
        for ext in ["bin", "json"] {
            let path = dir.join(format!("{name}.{ext}"));
            match stele_store::fileio::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e).into()),
            }
        }
    }
    if removed {
        fsutil::fsync_dir(&dir)?;
    }
    Ok(())
}

impl Governance<'_> {
    /// Appends the `log.recovered` event every kept tail owes (step 3).
    pub(crate) fn record_salvage_events(&mut self, now: Timestamp) -> LogResult<()> {
        for (name, manifest) in list(self.writer.layout())? {
            if manifest.event_index.is_some() {
                continue;
            }
            let event = crate::SystemEvent::log_recovered(&name, &manifest);
            let receipt = self.writer.append_system(&event, now)?;
            let recorded = Salvaged {
                event_index: Some(receipt.index.0),
                ..manifest
            };
            write_manifest(
                &self
                    .writer
                    .layout()
                    .recovered()
                    .join(format!("{name}.json")),
                &recorded,
            )?;
        }
        Ok(())
    }
}
