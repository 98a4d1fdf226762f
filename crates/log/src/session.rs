//! The writer session: the generation and random salt a `Log` handle
//! seals under, chosen before its first append.
//!
//! Record nonces are `generation ‖ index`; record keys are derived from
//! the segment's data key and the session's salt (`stele_store::sessions`).
//! The salt is what keeps (key, nonce) pairs unique when the generation
//! cannot: a backup brings back `writer-generation` and every index after
//! it, but not the salt a new session draws. This module decides the
//! session's generation, makes the salt durable before anything is sealed
//! under it, and moves a directory made before salts to format 2. It does
//! not seal or open records.

use std::sync::Arc;

use stele_store::sessions::{self, SessionSalt, SessionTable, Sessions};
use stele_store::state;

use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::meta::{FORMAT_BEFORE_SESSIONS, FORMAT_VERSION, Meta};

/// Reads the session table at open (nothing is written). A format-2
/// directory must have `keys/sessions`; a format-1 one may (an upgrade a
/// crash interrupted) or may not.
pub(crate) fn load(layout: &Layout, meta: &Meta) -> LogResult<Arc<Sessions>> {
    let path = layout.sessions();
    let table = match sessions::read(&path)? {
        Some(scan) => scan.table,
        None if meta.format == FORMAT_BEFORE_SESSIONS => SessionTable::without_file(),
        None => {
            return Err(LogError::Integrity(format!(
                "{} is missing: the salts of the writer sessions are lost, so records sealed under them cannot be opened",
                path.display()
            )));
        }
    };
    Ok(Arc::new(Sessions::new(&path, table)))
}

/// Begins this handle's writer session and returns its generation. Runs
/// once, before the first record is sealed; each step's crash story:
/// 1. a directory without `keys/sessions` gets one (atomic replace) whose
///    first salted generation is the next one. Crash after: a format-1
///    directory with an empty sessions file; the next writer goes on here.
/// 2. `meta.json` says format 2 (atomic replace), so builds that know only
///    format 1 refuse the directory from now on. Crash after: nothing was
///    sealed under a salt yet; the next writer goes on at step 3.
/// 3. `writer-generation` is bumped above every generation on record.
///    Crash after: the generation is spent unused; the next writer takes
///    the one after it.
/// 4. a fresh random salt is appended with the generation and fsynced.
///    Crash during: a torn entry, cut by the next append; nothing was
///    sealed under it. Only after this returns is anything sealed with the
///    derived keys.
pub(crate) fn begin(layout: &Layout, meta: &mut Meta, shared: &Sessions) -> LogResult<u32> {
    let path = layout.sessions();
    let generation_path = layout.generation();
    let mut scan = match sessions::read(&path)? {
        Some(scan) => scan,
        None if meta.format == FORMAT_BEFORE_SESSIONS => {
            let first = state::read_generation(&generation_path)?
                .checked_add(1)
                .ok_or_else(|| {
                    LogError::Internal("writer generation exhausted (2^32 opens)".into())
                })?;
            sessions::create(&path, first)?
        }
        None => {
            return Err(LogError::Integrity(format!(
                "{} is missing: the salts of the writer sessions are lost",
                path.display()
            )));
        }
    };
    if meta.format != FORMAT_VERSION {
        let mut upgraded = meta.clone();
        upgraded.format = FORMAT_VERSION;
        upgraded.write(&layout.meta())?;
        *meta = upgraded;
    }
    let recorded = scan
        .table
        .last_generation()
        .into_iter()
        .chain(scan.table.first_salted().map(|g| g.saturating_sub(1)))
        .max()
        .unwrap_or(0);
    let generation = state::bump_generation_past(&generation_path, recorded)?;
    sessions::append(&path, &mut scan, generation, SessionSalt::random()?)?;
    shared.set(scan.table);
    Ok(generation)
}
