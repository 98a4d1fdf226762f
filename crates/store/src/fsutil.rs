//! File-system helpers with one durability rule each.
//!
//! Every function here states what survives a crash (process kill or power
//! loss) at each of its steps. Nothing here retries a failed `fsync`: on Linux
//! a failed `fsync` may already have dropped the dirty pages it was meant to
//! write, so retrying would report success for data that is gone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{StoreError, StoreResult};

/// Permission bits for files holding secrets (keys, passphrase material).
pub const SECRET_MODE: u32 = 0o600;

/// Fsyncs a directory so that entries created, renamed or removed in it are
/// durable.
pub fn fsync_dir(dir: &Path) -> StoreResult<()> {
    let handle = File::open(dir).map_err(|e| StoreError::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry
/// list changed. Crash story: a directory that exists after return survives a
/// crash; one created just before a crash may vanish, which callers handle by
/// creating it again.
pub fn create_dir_durable(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
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
pub fn atomic_replace(path: &Path, bytes: &[u8], mode: u32) -> StoreResult<()> {
    let tmp = tmp_sibling(path);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        // The mode given to open() only applies to new files; a leftover
        // temporary file keeps its old mode unless set explicitly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| StoreError::io("chmod", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, e))?;
    fsync_dir(parent_of(path))
}

/// Creates a new file that must not exist yet, writes `bytes`, fsyncs it and
/// its directory. Used for key files at `init`.
pub fn create_new_durable(path: &Path, bytes: &[u8], mode: u32) -> StoreResult<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))?;
    fsync_dir(parent_of(path))
}

/// Writes `bytes` to `path` (creating or truncating it) without fsync. The
/// caller makes it durable later with [`sync_filesystem`]. Used for tiles,
/// which are derived data that recovery can rewrite.
pub fn write_file_unsynced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    if let Some(parent) = path.parent()
        && !parent.is_dir()
    {
        fs::create_dir_all(parent).map_err(|e| StoreError::io("create directory", parent, e))?;
    }
    fs::write(path, bytes).map_err(|e| StoreError::io("write", path, e))
}

/// Replaces `path` with `bytes` by writing a temporary sibling and renaming
/// it over `path`, without fsync (the caller syncs the file system later).
/// A reader or a crash sees the old or the new content, never a torn file;
/// used for partial tiles, which may already exist with content a signed
/// checkpoint needs.
pub fn replace_file_unsynced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    if let Some(parent) = path.parent()
        && !parent.is_dir()
    {
        fs::create_dir_all(parent).map_err(|e| StoreError::io("create directory", parent, e))?;
    }
    let tmp = tmp_sibling(path);
    fs::write(&tmp, bytes).map_err(|e| StoreError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, e))
}

/// Flushes every dirty page and metadata change of the file system holding
/// `dir` (`syncfs(2)`), one call instead of one `fsync` per tile file.
pub fn sync_filesystem(dir: &Path) -> StoreResult<()> {
    let handle = File::open(dir).map_err(|e| StoreError::io("open directory", dir, e))?;
    rustix::fs::syncfs(&handle).map_err(|e| StoreError::io("syncfs", dir, e.into()))
}

/// Reads a whole file, mapping errors to [`StoreError`].
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
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

#[cfg(test)]
mod tests {
    use super::*;

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
