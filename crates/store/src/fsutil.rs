//! File-system helpers with one durability rule each.
//!
//! Every function here states what survives a crash (process kill or power
//! loss) at each of its steps. Nothing here retries a failed `fsync`: on Linux
//! a failed `fsync` may already have dropped the dirty pages it was meant to
//! write, so retrying would report success for data that is gone.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{StoreError, StoreResult};
use crate::fileio::{self, Open};

/// Permission bits for files holding secrets (keys, passphrase material).
pub const SECRET_MODE: u32 = 0o600;

/// Fsyncs a directory so that entries created, renamed or removed in it are
/// durable.
#[track_caller]
pub fn fsync_dir(dir: &Path) -> StoreResult<()> {
    fileio::sync_dir(dir).map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry
/// list changed. Crash story: a directory that exists after return survives a
/// crash; one created just before a crash may vanish, which callers handle by
/// creating it again.
#[track_caller]
pub fn create_dir_durable(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_durable(parent)?;
    }
    match fileio::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io("create directory", dir, e)),
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: write a temporary sibling, fsync
/// it, rename over `path`, fsync the directory. Crash story: at every point
/// `path` holds either the complete old content or the complete new content;
/// a leftover `*.tmp` sibling is harmless and overwritten next time.
#[track_caller]
pub fn atomic_replace(path: &Path, bytes: &[u8], mode: u32) -> StoreResult<()> {
    let tmp = tmp_sibling(path);
    {
        let file = fileio::open_write(&tmp, Open::CreateTruncate, mode)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        // The mode given to open() only applies to new files; a leftover
        // temporary file keeps its old mode unless set explicitly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| StoreError::io("chmod", &tmp, e))?;
        fileio::write_at(&file, &tmp, bytes, 0).map_err(|e| StoreError::io("write", &tmp, e))?;
        fileio::sync_all(&file, &tmp).map_err(|e| StoreError::io("fsync", &tmp, e))?;
    }
    fileio::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, e))?;
    fsync_dir(parent_of(path))
}

/// Creates a new file that must not exist yet, writes `bytes`, fsyncs it and
/// its directory. Used for key files at `init`.
#[track_caller]
pub fn create_new_durable(path: &Path, bytes: &[u8], mode: u32) -> StoreResult<()> {
    let file = fileio::open_write(path, Open::CreateNew, mode)
        .map_err(|e| StoreError::io("create", path, e))?;
    fileio::write_at(&file, path, bytes, 0).map_err(|e| StoreError::io("write", path, e))?;
    fileio::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
    fsync_dir(parent_of(path))
}

/// Writes `bytes` to `path` (creating or truncating it) without fsync. The
/// caller makes it durable later with [`sync_filesystem`]. Used for tiles,
/// which are derived data that recovery can rewrite.
///
/// A file that already holds exactly `bytes` is left alone: truncating and
/// writing it again would put its durable copy at the mercy of a crash
/// until the next sync (a tile the last durable checkpoint needs, left
/// empty).
pub fn write_file_unsynced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    if holds(path, bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs_unsynced(parent)?;
    }
    write_whole_unsynced(path, bytes)
}

/// Whether `path` is a file holding exactly `bytes` (false when it cannot
/// be read).
fn holds(path: &Path, bytes: &[u8]) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == bytes.len() as u64 => {
            std::fs::read(path).is_ok_and(|held| held == bytes)
        }
        _ => false,
    }
}

/// Creates `dir` and its missing parents, without fsync.
fn create_dirs_unsynced(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dirs_unsynced(parent)?;
    }
    match fileio::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io("create directory", dir, e)),
    }
}

/// Creates or empties `path` and writes `bytes`, without fsync.
fn write_whole_unsynced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let file = fileio::open_write(path, Open::CreateTruncate, 0o644)
        .map_err(|e| StoreError::io("create", path, e))?;
    fileio::write_at(&file, path, bytes, 0).map_err(|e| StoreError::io("write", path, e))
}

/// Replaces `path` with `bytes` by writing a temporary sibling and renaming
/// it over `path`, without fsync (the caller syncs the file system later):
/// a reader sees the old or the new content, never a torn file. Used for
/// partial tiles, which may already exist with content a signed checkpoint
/// needs. Crash story: until the caller's sync, the rename may survive a
/// crash without the new file's bytes (an empty file in place of the old
/// one), so a file that already holds exactly `bytes` is left alone: a
/// partial tile a later publish asks for again (the same width at the
/// same place, e.g. a level-1 tile while the tree grows within one
/// level-0 tile) keeps its durable copy.
pub fn replace_file_unsynced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    if holds(path, bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs_unsynced(parent)?;
    }
    let tmp = tmp_sibling(path);
    write_whole_unsynced(&tmp, bytes)?;
    fileio::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, e))
}

/// Flushes every dirty page and metadata change of the file system holding
/// `dir` (`syncfs(2)`), one call instead of one `fsync` per tile file.
#[track_caller]
pub fn sync_filesystem(dir: &Path) -> StoreResult<()> {
    fileio::sync_filesystem(dir).map_err(|e| StoreError::io("syncfs", dir, e))
}

/// Reads a whole file, mapping errors to [`StoreError`].
/// Block alignment used for `O_DIRECT` reads (offsets, lengths and buffer
/// addresses): the page size, a multiple of every block size here.
pub const DIRECT_ALIGN: usize = 4096;

/// Opens `path` for reading with `O_DIRECT` (reads go from the disk into
/// the caller's buffer, bypassing the page cache), or `None` where the file
/// system does not support it (tmpfs). Reads must be aligned to
/// [`DIRECT_ALIGN`]; see [`read_direct_at`].
pub fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .ok()
}

/// Reads `len` bytes at `pos` of a file opened by [`open_direct`] into
/// `raw`, which it grows as needed, and returns where in `raw` they start.
/// The read covers the aligned blocks around the bytes.
pub fn read_direct_at(
    file: &File,
    raw: &mut Vec<u8>,
    pos: u64,
    len: usize,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let aligned = pos & !(DIRECT_ALIGN as u64 - 1);
    let lead = (pos - aligned) as usize;
    let span = (lead + len).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    if raw.len() < span + DIRECT_ALIGN {
        raw.resize(span + DIRECT_ALIGN, 0);
    }
    let base = (DIRECT_ALIGN - raw.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
    let mut filled = 0usize;
    while filled < lead + len {
        // A read returns whole blocks unless it reaches the end of the
        // file, so the next one starts aligned.
        let n = file.read_at(
            &mut raw[base + filled..base + span],
            aligned + filled as u64,
        )?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if !filled.is_multiple_of(DIRECT_ALIGN) && filled < lead + len {
            // Short of whole blocks: the end of the file came first.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(base + lead)
}

/// Drops from the page cache the whole pages inside `len` bytes at `pos`
/// of `file` (not the partial pages at either end, which a writer may be
/// filling). Only advice: the bytes stay in the file.
pub fn drop_cached_pages(file: &File, pos: u64, len: u64) {
    let page = DIRECT_ALIGN as u64;
    let start = pos.div_ceil(page) * page;
    let end = (pos.saturating_add(len) / page) * page;
    if let Some(span) = end.checked_sub(start).and_then(std::num::NonZeroU64::new) {
        let _ = rustix::fs::fadvise(file, start, Some(span), rustix::fs::Advice::DontNeed);
    }
}

/// Asks the kernel to start reading `path` into the page cache and returns
/// without waiting (`posix_fadvise(WILLNEED)`), so a later read finds it
/// there. Only a hint: a file that cannot be opened is skipped, and the
/// later read reports the problem.
pub fn prefetch(path: &Path) {
    if let Ok(file) = File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
    }
}

pub fn read(path: &Path) -> StoreResult<Vec<u8>> {
    fs::read(path).map_err(|e| StoreError::io("read", path, e))
}

/// Reads a whole file, or `None` if it does not exist.
pub fn read_optional(path: &Path) -> StoreResult<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

/// The sibling path used for an atomic replace.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An exclusive advisory lock on the data directory, held for the life of
/// the value. Two processes writing one log would break every invariant, so
/// every command that opens a data directory takes this lock first.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock at `path` without waiting.
    pub fn acquire(path: &Path) -> StoreResult<DirLock> {
        let file = fileio::open_write(path, Open::Create, 0o644)
            .map_err(|e| StoreError::io("open lock file", path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(StoreError::io("lock", path, e.into())),
        }
    }
}

/// An exclusive advisory lock that waits for its holder (short critical
/// sections such as rewriting the token file).
#[derive(Debug)]
pub struct DirLockBlocking {
    _file: File,
}

impl DirLockBlocking {
    pub fn acquire(path: &Path) -> StoreResult<DirLockBlocking> {
        let file = fileio::open_write(path, Open::Create, 0o600)
            .map_err(|e| StoreError::io("open lock file", path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io("lock", path, e.into()))?;
        Ok(DirLockBlocking { _file: file })
    }
}

/// Checks the big-endian CRC-32 in the last four bytes of `bytes` against
/// the rest; `what` names the file kind in the error. `bytes` must hold at
/// least four bytes.
pub fn check_trailing_crc(path: &Path, bytes: &[u8], what: &str) -> StoreResult<()> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(StoreError::corrupt(path, 0, format!("{what} is truncated")));
    };
    let stored = u32::from_be_bytes([
        bytes[split],
        bytes[split + 1],
        bytes[split + 2],
        bytes[split + 3],
    ]);
    if crc32(&bytes[..split]) != stored {
        return Err(StoreError::corrupt(
            path,
            split as u64,
            format!("{what} checksum mismatch (altered or torn)"),
        ));
    }
    Ok(())
}

/// CRC-32 (IEEE) of `bytes`, the checksum used by every framed record.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Least zero-filled space an append file (segment, index) is grown by.
pub const MIN_RESERVE: u64 = 64 * 1024;
/// Most zero-filled space an append file is grown by at once.
pub const MAX_RESERVE: u64 = 1024 * 1024;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes `data` at byte `at` of an append file whose zero-filled space
/// ends at `*reserved_end` (its length), growing the file when `data`
/// reaches past it: zeros are written after `data` up to a new end, as
/// much again as the file holds (at least [`MIN_RESERVE`], at most
/// [`MAX_RESERVE`]). An fdatasync of bytes written over zeros the disk
/// already holds flushes only those blocks; an fdatasync after the file
/// grew must also write its size and block map. So most appends' flushes
/// find their space already durable, and only one in many grows the file.
///
/// Nothing is synced here. Crash story: until the caller's next fdatasync
/// returns, any part of `data` and of the new zeros may be on disk or not,
/// and the file may have its old length or the new one; the readers of
/// these files take zeros after the last record for unused space.
pub fn write_reserving(
    file: &File,
    path: &Path,
    at: u64,
    data: &[u8],
    reserved_end: &mut u64,
) -> StoreResult<()> {
    fileio::write_at(file, path, data, at).map_err(|e| StoreError::io("write", path, e))?;
    let end = at + data.len() as u64;
    if end > *reserved_end {
        let grown = end + end.clamp(MIN_RESERVE, MAX_RESERVE);
        let mut pos = end;
        while pos < grown {
            let n = (grown - pos).min(ZEROS.len() as u64) as usize;
            fileio::write_at(file, path, &ZEROS[..n], pos)
                .map_err(|e| StoreError::io("write", path, e))?;
            pos += n as u64;
        }
        *reserved_end = grown;
    }
    Ok(())
}

/// The offset just after the last non-zero byte of `file` in `from..to`,
/// or `from` when those bytes are all zero; read from the end backwards in
/// chunks, so a long zero-filled tail costs its reading and nothing else.
pub fn end_of_nonzero(file: &File, from: u64, to: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = to;
    while end > from {
        let n = (end - from).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, end - n as u64)?;
        if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(end - n as u64 + last as u64 + 1);
        }
        end -= n as u64;
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct reads at any offset and length give the bytes a buffered
    /// read gives, up to the file's unaligned end; past it, an error.
    #[test]
    fn direct_reads_match_buffered_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3 * DIRECT_ALIGN as u64 + 1234)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        fs::write(&path, &bytes).unwrap();
        let Some(direct) = open_direct(&path) else {
            return; // this file system has no O_DIRECT: nothing to compare
        };
        let mut raw = Vec::new();
        let len = bytes.len() as u64;
        for (pos, n) in [
            (0u64, 1usize),
            (0, DIRECT_ALIGN),
            (1, DIRECT_ALIGN),
            (4095, 2),
            (4096, 8192),
            (5000, 7000),
            (len - 1, 1),
            (100, (len - 100) as usize),
            (0, len as usize),
        ] {
            let start = read_direct_at(&direct, &mut raw, pos, n).unwrap();
            assert_eq!(
                (raw.as_ptr() as usize + start - (pos as usize % DIRECT_ALIGN)) % DIRECT_ALIGN,
                0,
                "the read landed block-aligned"
            );
            assert_eq!(
                &raw[start..start + n],
                &bytes[pos as usize..pos as usize + n],
                "{pos} {n}"
            );
        }
        let err = read_direct_at(&direct, &mut raw, len - 10, 11).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn writes_reserve_zeroed_space_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut reserved = 0;
        write_reserving(&file, &path, 0, b"abc", &mut reserved).unwrap();
        assert_eq!(reserved, 3 + MIN_RESERVE);
        assert_eq!(file.metadata().unwrap().len(), reserved);
        // Within the reserve: the file does not grow.
        write_reserving(&file, &path, 3, b"def", &mut reserved).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 3 + MIN_RESERVE);
        assert_eq!(end_of_nonzero(&file, 0, reserved).unwrap(), 6);
        assert_eq!(end_of_nonzero(&file, 6, reserved).unwrap(), 6);
        // Past it: grown by as much as the file holds, at most MAX_RESERVE.
        let at = 3 * MAX_RESERVE;
        write_reserving(&file, &path, at, b"x", &mut reserved).unwrap();
        assert_eq!(reserved, at + 1 + MAX_RESERVE);
        assert_eq!(file.metadata().unwrap().len(), reserved);
        assert_eq!(end_of_nonzero(&file, 0, reserved).unwrap(), at + 1);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"abcdef");
        assert!(bytes[6..at as usize].iter().all(|b| *b == 0));
        assert!(bytes[at as usize + 1..].iter().all(|b| *b == 0));
    }

    #[test]
    fn atomic_replace_overwrites_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_replace(&path, b"one", SECRET_MODE).unwrap();
        atomic_replace(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!tmp_sibling(&path).exists());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = DirLock::acquire(&path).unwrap();
        assert!(matches!(
            DirLock::acquire(&path),
            Err(StoreError::Locked { .. })
        ));
        drop(first);
        DirLock::acquire(&path).unwrap();
    }

    #[test]
    fn create_new_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_new_durable(&path, b"x", SECRET_MODE).unwrap();
        assert!(create_new_durable(&path, b"y", SECRET_MODE).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }
}
