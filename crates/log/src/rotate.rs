//! Key-encryption key (KEK) rotation and key ages.
//!
//! [`Governance::rotate_kek`] replaces the KEK of an open log: every data key file
//! and the signing key file are re-wrapped under a new KEK (the data keys
//! themselves do not change, so no segment is re-encrypted), the new KEK
//! becomes `keys/kek.key`, and the old one is gone from disk. `keys/kek.info`
//! records when the current KEK was made and how many came before it, so a
//! policy audit can check key ages ([`Governance::kek_info`],
//! [`Governance::data_key_ages`]).
//!
//! The protocol (byte formats and the full crash table are in
//! `docs/formats/keys.md`) never modifies a live key file before its commit
//! point: re-wrapped copies are written beside the originals as `*.next`,
//! and one rename of `keys/kek.next` over `keys/kek.key` commits. So the
//! recovery that [`Log::open`] runs ([`finish_interrupted_rotation`]) needs
//! no key at all: before the commit it deletes the `*.next` files (the
//! rotation did not happen), after it renames them into place (the rotation
//! happened). In particular `open` never needs the *new* passphrase of an
//! unfinished rotation, only the passphrase of whichever KEK `kek.key` holds.
//!
//! This module does not decide when to rotate or how old a key may be; it
//! records and reports ages, and a policy elsewhere judges them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use stele_store::StoreError;
use stele_store::fileio::{self, Open};
use stele_store::fsutil::{self, SECRET_MODE};
use stele_store::keys::{self, DataKey, Kek, KekKind, NewKek};

use crate::error::{LogError, LogResult};
use crate::governance::Governance;
use crate::ids::SegmentId;
use crate::layout::Layout;
use crate::meta::Meta;
use crate::reader::LogReader;

/// What is known about the current KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KekInfo {
    /// When the KEK was made, Unix seconds.
    pub created_at: i64,
    /// How many rotations came before it: 0 for the KEK made by `init`.
    pub number: u64,
    /// How it is held (`file` or `passphrase`).
    pub kind: KekKind,
    /// Where `created_at` comes from.
    pub source: KekAgeSource,
}

/// Where a KEK's creation time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekAgeSource {
    /// Recorded in `keys/kek.info` when the KEK was made by a rotation.
    Recorded,
    /// `keys/kek.info` is absent (the KEK was made by `init`, which does not
    /// write it): the modification time of `keys/kek.key`, which is written
    /// once and never modified. Copying the directory without preserving
    /// times makes the key look younger than it is; `number` is then 0.
    KeyFileModified,
}

/// The `keys/kek.info` file: one JSON object, written whole.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KekInfoFile {
    created_at: i64,
    number: u64,
    kind: String,
    /// Who asked for the rotation, when it is to be recorded as a
    /// `key.rotated` system event ([`Governance::rotate_kek_as`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_by: Option<String>,
    /// Data keys re-wrapped by the rotation (part of the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_keys_rewrapped: Option<u64>,
    /// Log index of the `key.rotated` event, once it is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_index: Option<u64>,
}

/// The `key.rotated` event a rotation owes the log: who asked for it and
/// what it re-wrapped, and the event's index once appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationEvent {
    pub(crate) by: String,
    pub(crate) data_keys_rewrapped: u64,
    pub(crate) index: Option<u64>,
}

/// The steps of a rotation, in order. Only for crash tests: see
/// [`Governance::rotate_kek_until`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RotateStep {
    /// `keys/kek.next` is durable.
    NextKekCreated,
    /// `keys/kek.info.next` is durable.
    NextInfoWritten,
    /// About half of the `*.next` re-wrapped key files are written.
    HalfRewrapped,
    /// Every `*.next` re-wrapped key file is durable.
    AllRewrapped,
    /// `kek.next` was renamed over `kek.key` (the commit point).
    Committed,
    /// About half of the `*.next` key files are renamed into place.
    HalfInstalled,
    /// Every `*.next` key file is renamed into place.
    AllInstalled,
    /// `meta.json` names the new KEK kind.
    MetaUpdated,
    /// `kek.info.next` was renamed over `kek.info`: nothing is left to do.
    Done,
}

/// A file wrapped by the KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WrappedFile {
    DataKey(u32),
    SigningKey,
}

impl WrappedFile {
    fn path(self, layout: &Layout) -> std::path::PathBuf {
        match self {
            WrappedFile::DataKey(id) => layout.dek(id),
            WrappedFile::SigningKey => layout.signing_key(),
        }
    }

    fn next_path(self, layout: &Layout) -> std::path::PathBuf {
        match self {
            WrappedFile::DataKey(id) => layout.dek_next(id),
            WrappedFile::SigningKey => layout.signing_key_next(),
        }
    }
}

impl Governance<'_> {
    /// Rotates the key-encryption key (`stele keys rotate`): makes a new KEK
    /// as `new` says, re-wraps every data key and the signing key under it,
    /// makes it the only KEK and returns what is now recorded about it. The
    /// data keys do not change, so no segment is re-encrypted; segments
    /// created afterwards are wrapped under the new KEK. The kind may change
    /// (file ↔ passphrase); `meta.json` follows. `now_unix` is recorded as
    /// the new KEK's creation time.
    ///
    /// Crash-safe at every step (see the comments in the body): a crash
    /// before the commit point leaves the old KEK in force and the next
    /// open discards the partial rotation; a crash after it leaves the new
    /// KEK in force and the next open finishes the rotation. Either way the
    /// next open needs the passphrase of the KEK in force (the old one
    /// before the commit point, the new one after).
    ///
    /// An error before the commit point leaves this handle usable under the
    /// old KEK; an error after it poisons the handle (reopen to finish).
    pub fn rotate_kek(&mut self, new: NewKek, now_unix: i64) -> LogResult<KekInfo> {
        self.rotate_kek_until(new, now_unix, RotateStep::Done)
    }

    /// [`Governance::rotate_kek`], stopping right after `stop_after` as if the
    /// process had died there (no cleanup). For crash tests only: after an
    /// early stop, drop the handle and reopen the log.
    #[doc(hidden)]
    pub fn rotate_kek_until(
        &mut self,
        new: NewKek,
        now_unix: i64,
        stop_after: RotateStep,
    ) -> LogResult<KekInfo> {
        self.rotate_inner(new, now_unix, stop_after, None)
    }

    /// The rotation; with `by`, `kek.info` also records that a `key.rotated`
    /// event on behalf of `by` is owed (see [`Governance::rotate_kek_as`]).
    fn rotate_inner(
        &mut self,
        new: NewKek,
        now_unix: i64,
        stop_after: RotateStep,
        by: Option<&str>,
    ) -> LogResult<KekInfo> {
        self.writer.health()?;
        let layout = self.writer.layout().clone();
        // Leftovers of an earlier attempt on this handle (an error before
        // its commit point) are discarded first, so `kek.next` is free.
        finish_interrupted_rotation_in(&layout, self.writer.meta_mut(), RotateStep::Done)?;
        let number = read_kek_info(&layout)?
            .number
            .checked_add(1)
            .ok_or_else(|| LogError::Internal("KEK rotation count exhausted".into()))?;
        let info = KekInfo {
            created_at: now_unix,
            number,
            kind: new.kind(),
            source: KekAgeSource::Recorded,
        };
        let event = match by {
            Some(by) => Some(RotationEvent {
                by: by.to_string(),
                data_keys_rewrapped: wrapped_files(&layout)?
                    .iter()
                    .filter(|f| matches!(f, WrappedFile::DataKey(_)))
                    .count() as u64,
                index: None,
            }),
            None => None,
        };
        let new_kek = match prepare(
            &layout,
            self.writer.kek(),
            new,
            &info,
            event.as_ref(),
            stop_after,
        ) {
            Ok(Some(kek)) => kek,
            Ok(None) => return Ok(info),
            Err(e) => {
                // Best effort: the next open or rotation removes the
                // leftovers anyway, and the old KEK stays in force.
                let _ = roll_back(&layout);
                return Err(e);
            }
        };

        // (c) Commit point: `kek.next` replaces `kek.key` in one rename.
        // Crash before the rename: `kek.next` is still there, so the next
        // open rolls back and the old KEK (still in `kek.key`) opens every
        // original. Crash after the directory fsync: `kek.key` is the new
        // KEK, every `*.next` file was durable before this rename, and the
        // next open rolls forward without any key. Crash between the two:
        // the rename is either lost (roll back) or durable (roll forward),
        // and both are consistent states.
        if let Err(e) = fileio::rename(&layout.kek_next(), &layout.kek()) {
            let _ = roll_back(&layout);
            return Err(StoreError::io("rename", layout.kek(), e).into());
        }
        // From here on the new KEK is the one on disk; new segments must be
        // wrapped under it even if a later step fails.
        self.writer.install_kek(new_kek);
        let result = fsutil::fsync_dir(&layout.keys())
            .map_err(LogError::from)
            .and_then(|()| {
                if stop_after <= RotateStep::Committed {
                    return Ok(());
                }
                // (d) Install the re-wrapped files, update meta, record the
                // age: all keyless and idempotent, see `roll_forward`.
                roll_forward(&layout, self.writer.meta_mut(), stop_after)
            });
        match result {
            Ok(()) => Ok(info),
            Err(e) => Err(self.writer.poison(e)),
        }
    }

    /// [`Governance::rotate_kek`] on behalf of `by`, recorded as a `key.rotated`
    /// system event (the new KEK's number, kind, creation time and how many
    /// data keys were re-wrapped). The rotation commits before the event,
    /// and `kek.info` says the event is owed until it holds the event's
    /// index: a crash in between leaves the new KEK in force, and the next
    /// open appends the event (or, if it was already durable, finds it by
    /// its client id `kek:<number>` and only records its index).
    pub fn rotate_kek_as(
        &mut self,
        new: NewKek,
        by: &str,
        now: jiff::Timestamp,
    ) -> LogResult<KekInfo> {
        let info = self.rotate_inner(new, now.as_second(), RotateStep::Done, Some(by))?;
        self.record_rotation_event(now)?;
        Ok(info)
    }

    /// Appends the `key.rotated` event the last rotation owes, if any, and
    /// records its index in `kek.info`. Idempotent: the event carries the
    /// client id `kek:<number>` and the same content every time, so a retry
    /// after a crash returns the durable original instead of a second
    /// event. Crash after the append and before `kek.info` is replaced: the
    /// next call finds the original.
    pub(crate) fn record_rotation_event(&mut self, now: jiff::Timestamp) -> LogResult<()> {
        let (info, Some(event)) = read_kek_file(self.writer.layout())? else {
            return Ok(());
        };
        if event.index.is_some() {
            return Ok(());
        }
        let rotated = crate::SystemEvent::KeyRotated {
            actor: event.by.clone(),
            attributes: crate::system_event::KeyRotated {
                number: info.number,
                kind: info.kind.as_str().to_string(),
                created_at: stele_event::time::timestamp_text(info.created_at),
                data_keys_rewrapped: event.data_keys_rewrapped,
            },
        };
        let receipt = self.writer.append_system(&rotated, now)?;
        let recorded = RotationEvent {
            index: Some(receipt.index.0),
            ..event
        };
        // Atomic replace; crash before it: the event is owed again and is
        // found by its client id.
        write_kek_info(&self.writer.layout().kek_info(), &info, Some(&recorded))
    }
}

impl LogReader {
    /// What is known about the current KEK: from `keys/kek.info`, or for a
    /// log whose KEK was never rotated (no `kek.info`), from the key file's
    /// modification time (see [`KekAgeSource::KeyFileModified`]).
    pub fn kek_info(&self) -> LogResult<KekInfo> {
        read_kek_info(self.layout())
    }

    /// Every data key file as (segment id, creation time in Unix seconds),
    /// by segment id, including keys of segments never written (a crash
    /// between key and segment creation). The time is the key file's
    /// modification time: data key files are written once, and a KEK
    /// rotation keeps the time when it re-wraps them, so it stays the data
    /// key's creation time.
    pub fn data_key_ages(&self) -> LogResult<Vec<(SegmentId, i64)>> {
        let layout = self.layout();
        let mut out = Vec::new();
        for file in wrapped_files(layout)? {
            if let WrappedFile::DataKey(id) = file {
                let path = layout.dek(id);
                let metadata =
                    std::fs::metadata(&path).map_err(|e| StoreError::io("stat", &path, e))?;
                out.push((SegmentId(id), metadata.mtime()));
            }
        }
        Ok(out)
    }
}

/// Steps (a) and (b): writes `kek.next`, `kek.info.next` and every `*.next`
/// re-wrapped key file, each durable. Returns the new KEK, or `None` when
/// `stop_after` says to stop before the commit point. Nothing here touches
/// a file the old KEK needs, so a crash anywhere in it leaves the log as it
/// was plus `*.next` files, which the next open deletes.
fn prepare(
    layout: &Layout,
    old_kek: &Kek,
    new: NewKek,
    info: &KekInfo,
    event: Option<&RotationEvent>,
    stop_after: RotateStep,
) -> LogResult<Option<Kek>> {
    // (a) The new KEK. `create_new_durable` refuses an existing `kek.next`;
    // the caller has just removed any leftover. Crash: `kek.next` may be
    // absent, torn or complete; nothing is wrapped under it yet.
    let new_kek = Kek::create(&layout.kek_next(), new)?;
    if stop_after <= RotateStep::NextKekCreated {
        return Ok(None);
    }
    // Its age, written after `kek.next` so that `kek.info.next` without
    // `kek.next` can only mean "committed" (see `finish_interrupted_rotation`).
    // Crash: `kek.next` exists, so the next open rolls back.
    write_kek_info(&layout.kek_info_next(), info, event)?;
    if stop_after <= RotateStep::NextInfoWritten {
        return Ok(None);
    }
    // (b) Re-wrap every key file into its `*.next` sibling. Each is written
    // and fsynced (keeping the original's modification time, which is the
    // data key's age); the directories are fsynced once at the end. Crash:
    // any `*.next` may be absent or torn, but `kek.next` exists, so the
    // next open deletes them all; the originals are untouched.
    let files = wrapped_files(layout)?;
    let half = files.len().div_ceil(2);
    for (done, file) in files.iter().enumerate() {
        let path = file.path(layout);
        let bytes = fsutil::read(&path)?;
        let rewrapped = match *file {
            WrappedFile::DataKey(id) => DataKey::rewrap_file(old_kek, &new_kek, id, &path, &bytes)?,
            WrappedFile::SigningKey => keys::rewrap_signing_seed(old_kek, &new_kek, &path, &bytes)?,
        };
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| StoreError::io("stat", &path, e))?;
        write_synced(&file.next_path(layout), &rewrapped, modified)?;
        if stop_after <= RotateStep::HalfRewrapped && done + 1 == half {
            return Ok(None);
        }
    }
    fsutil::fsync_dir(&layout.deks())?;
    fsutil::fsync_dir(&layout.keys())?;
    if stop_after <= RotateStep::AllRewrapped {
        return Ok(None);
    }
    Ok(Some(new_kek))
}

/// Finishes a rotation that a crash (or an error) interrupted, before the
/// KEK is loaded: [`Log::open`] calls it right after taking the directory
/// lock, and returns the (possibly updated) `meta`. It needs no key.
///
/// - `keys/kek.next` exists: the rotation did not reach its commit point.
///   The old KEK in `kek.key` still opens every original key file, so the
///   `*.next` files are deleted and the rotation simply did not happen (the
///   operator runs it again; no passphrase of the abandoned KEK is needed).
/// - no `kek.next` but `keys/kek.info.next`: the rotation committed; its
///   re-wrapped files are renamed into place, `meta.json` gets the new kind
///   and `kek.info.next` becomes `kek.info`.
/// - neither: nothing to do (the common case: two failed `stat`s).
pub(crate) fn finish_interrupted_rotation(layout: &Layout, meta: Meta) -> LogResult<Meta> {
    let mut meta = meta;
    finish_interrupted_rotation_in(layout, &mut meta, RotateStep::Done)?;
    Ok(meta)
}

fn finish_interrupted_rotation_in(
    layout: &Layout,
    meta: &mut Meta,
    stop_after: RotateStep,
) -> LogResult<()> {
    if exists(&layout.kek_next())? {
        roll_back(layout)
    } else if exists(&layout.kek_info_next())? {
        roll_forward(layout, meta, stop_after)
    } else {
        Ok(())
    }
}

/// Undoes a rotation that did not commit: deletes every `*.next` file, then
/// `kek.next` last (its presence is what says "not committed", so it must
/// outlive the others). Crash anywhere: `kek.next` still exists, so the
/// next open runs this again; deleting is idempotent.
fn roll_back(layout: &Layout) -> LogResult<()> {
    for file in next_files(layout)? {
        remove_if_present(&file.next_path(layout))?;
    }
    remove_if_present(&layout.kek_info_next())?;
    remove_if_present(&fsutil::tmp_sibling(&layout.kek_info_next()))?;
    fsutil::fsync_dir(&layout.deks())?;
    fsutil::fsync_dir(&layout.keys())?;
    remove_if_present(&layout.kek_next())?;
    fsutil::fsync_dir(&layout.keys())?;
    Ok(())
}

/// Completes a committed rotation: `kek.key` is the new KEK and every
/// `*.next` file was durable before the commit. Each step is idempotent, and
/// `kek.info.next` (the marker of an unfinished rotation) goes last, so a
/// crash anywhere here is finished by the next open.
fn roll_forward(layout: &Layout, meta: &mut Meta, stop_after: RotateStep) -> LogResult<()> {
    // Install the re-wrapped key files. Crash: some originals are replaced
    // and some not; the rest are still `*.next` and are renamed next time.
    // Until then an original not yet replaced does not open under the new
    // KEK, which is why `open` runs this before anything reads a key.
    let files = next_files(layout)?;
    let half = files.len().div_ceil(2);
    for (done, file) in files.iter().enumerate() {
        let from = file.next_path(layout);
        let to = file.path(layout);
        fileio::rename(&from, &to).map_err(|e| StoreError::io("rename", &to, e))?;
        if stop_after <= RotateStep::HalfInstalled && done + 1 == half {
            return Ok(());
        }
    }
    fsutil::fsync_dir(&layout.deks())?;
    fsutil::fsync_dir(&layout.keys())?;
    if stop_after <= RotateStep::AllInstalled {
        return Ok(());
    }
    // `meta.json` names the kind of the KEK now in force (atomic replace).
    // Crash: `meta.json` is old or new; the next open rewrites it if old.
    let kind = KekKind::of_file(&layout.kek())?;
    if meta.kek != kind.as_str() {
        meta.kek = kind.as_str().to_string();
        meta.write(&layout.meta())?;
    }
    if stop_after <= RotateStep::MetaUpdated {
        return Ok(());
    }
    // Last: the new KEK's age replaces the old one's, and with it the
    // marker goes. Crash before the directory fsync: the rename may be
    // undone, and the next open repeats this (harmless) step.
    fileio::rename(&layout.kek_info_next(), &layout.kek_info())
        .map_err(|e| StoreError::io("rename", layout.kek_info(), e))?;
    fsutil::fsync_dir(&layout.keys())?;
    Ok(())
}

/// The key files wrapped by the KEK: every `deks/<id>.dek`, by id, then
/// `signing.key`.
fn wrapped_files(layout: &Layout) -> LogResult<Vec<WrappedFile>> {
    let mut out: Vec<WrappedFile> = list_deks(layout, ".dek")?
        .into_iter()
        .map(WrappedFile::DataKey)
        .collect();
    out.sort();
    out.push(WrappedFile::SigningKey);
    Ok(out)
}

/// The key files that have a re-wrapped `*.next` sibling.
fn next_files(layout: &Layout) -> LogResult<Vec<WrappedFile>> {
    let mut out: Vec<WrappedFile> = list_deks(layout, ".dek.next")?
        .into_iter()
        .map(WrappedFile::DataKey)
        .collect();
    out.sort();
    if exists(&layout.signing_key_next())? {
        out.push(WrappedFile::SigningKey);
    }
    Ok(out)
}

/// Segment ids of the files `<id><suffix>` in `keys/deks`. Other names
/// (temporary files) are not key files and are skipped.
fn list_deks(layout: &Layout, suffix: &str) -> LogResult<Vec<u32>> {
    let dir = layout.deks();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read directory", &dir, e).into()),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse::<u32>().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn read_kek_info(layout: &Layout) -> LogResult<KekInfo> {
    Ok(read_kek_file(layout)?.0)
}

/// The current KEK and, if its rotation was on someone's behalf
/// ([`Governance::rotate_kek_as`]), the `key.rotated` event it owes the log.
pub(crate) fn read_kek_file(layout: &Layout) -> LogResult<(KekInfo, Option<RotationEvent>)> {
    let kek_path = layout.kek();
    let kind = KekKind::of_file(&kek_path)?;
    let info_path = layout.kek_info();
    let Some(bytes) = fsutil::read_optional(&info_path)? else {
        let metadata =
            std::fs::metadata(&kek_path).map_err(|e| StoreError::io("stat", &kek_path, e))?;
        let info = KekInfo {
            created_at: metadata.mtime(),
            number: 0,
            kind,
            source: KekAgeSource::KeyFileModified,
        };
        return Ok((info, None));
    };
    let file = parse_kek_info(&info_path, &bytes)?;
    if KekKind::from_name(&file.kind) != Some(kind) {
        return Err(LogError::Integrity(format!(
            "{}: says the key-encryption key is held as {:?}, but {} is a {:?} key",
            info_path.display(),
            file.kind,
            kek_path.display(),
            kind.as_str()
        )));
    }
    let info = KekInfo {
        created_at: file.created_at,
        number: file.number,
        kind,
        source: KekAgeSource::Recorded,
    };
    let event = match (file.rotated_by, file.data_keys_rewrapped) {
        (Some(by), Some(data_keys_rewrapped)) => Some(RotationEvent {
            by,
            data_keys_rewrapped,
            index: file.event_index,
        }),
        _ => None,
    };
    Ok((info, event))
}

fn parse_kek_info(path: &Path, bytes: &[u8]) -> LogResult<KekInfoFile> {
    let file: KekInfoFile = serde_json::from_slice(bytes).map_err(|e| {
        LogError::Integrity(format!("{}: not a KEK info file: {e}", path.display()))
    })?;
    if file.rotated_by.is_some() != file.data_keys_rewrapped.is_some()
        || (file.event_index.is_some() && file.rotated_by.is_none())
    {
        return Err(LogError::Integrity(format!(
            "{}: rotated_by and data_keys_rewrapped come together, and event_index only with them",
            path.display()
        )));
    }
    Ok(file)
}

/// Writes a `kek.info` file by atomic replace (it holds nothing secret).
fn write_kek_info(path: &Path, info: &KekInfo, event: Option<&RotationEvent>) -> LogResult<()> {
    let file = KekInfoFile {
        created_at: info.created_at,
        number: info.number,
        kind: info.kind.as_str().to_string(),
        rotated_by: event.map(|e| e.by.clone()),
        data_keys_rewrapped: event.map(|e| e.data_keys_rewrapped),
        event_index: event.and_then(|e| e.index),
    };
    fsutil::atomic_replace(path, &encode_kek_info(&file)?, 0o644)?;
    Ok(())
}

fn encode_kek_info(file: &KekInfoFile) -> LogResult<Vec<u8>> {
    let mut bytes = serde_json::to_vec(file)
        .map_err(|e| LogError::Internal(format!("cannot encode KEK info: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads `kek.info` bytes as `open` does and writes them back as a
/// rotation would. Public only for the fuzz targets.
#[doc(hidden)]
pub fn kek_info_round_trip(bytes: &[u8]) -> LogResult<Vec<u8>> {
    encode_kek_info(&parse_kek_info(Path::new("kek.info"), bytes)?)
}

/// Creates or truncates `path` (0600), writes `bytes`, sets the modification
/// time to `modified` and fsyncs the file, but not its directory (the
/// caller fsyncs each directory once after writing many files).
fn write_synced(path: &Path, bytes: &[u8], modified: std::time::SystemTime) -> LogResult<()> {
    let file = fileio::open_write(path, Open::CreateTruncate, SECRET_MODE)
        .map_err(|e| StoreError::io("create", path, e))?;
    // A leftover file keeps its old mode unless set explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(SECRET_MODE))
        .map_err(|e| StoreError::io("chmod", path, e))?;
    fileio::write_at(&file, path, bytes, 0).map_err(|e| StoreError::io("write", path, e))?;
    file.set_modified(modified)
        .map_err(|e| StoreError::io("set modification time", path, e))?;
    fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
    Ok(())
}

fn exists(path: &Path) -> LogResult<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("stat", path, e).into()),
    }
}

fn remove_if_present(path: &Path) -> LogResult<()> {
    match fileio::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", path, e).into()),
    }
}
