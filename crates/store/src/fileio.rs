//! The one seam every durability-relevant file operation goes through.
//!
//! Creating, writing, truncating, syncing, renaming and removing files and
//! directories below a data directory all happen here, so that one place
//! decides what reaches the disk and in what order. Without the
//! `fault-injection` feature (release builds never enable it) each
//! function is the plain system call. With it, test builds can
//!
//! - **trace** every operation below a directory, in the order the calls
//!   happened (calls below a traced directory are serialized, so the order
//!   is the order the kernel saw), each sync naming its call site; the
//!   crash simulator (`sim`) replays a trace to compute what a power loss
//!   at any point may leave on disk;
//! - **skip** one sync call site (a mutant build of the write path: the
//!   call returns success without syncing), to prove the tests notice;
//! - **inject faults**: fail a kind of operation on some files with an
//!   errno (`EIO`, `ENOSPC`), once or persistently, and count attempts;
//! - **stop a protocol after a named step** ([`stop_point`]): a caller
//!   with a multi-step durable protocol (a retention purge) asks at each
//!   step whether a test wants it to stop there, as a crash would.
//!
//! A sync call site is where the sync is asked for: the functions here and
//! the `fsutil` helpers that sync are `#[track_caller]`, so the site of the
//! fsync in `fsutil::atomic_replace` is the line that called
//! `atomic_replace` (the file it names is the one made durable there).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::panic::Location;
use std::path::Path;

/// How [`open_write`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Creates the file; fails if it exists.
    CreateNew,
    /// Creates the file or empties an existing one.
    CreateTruncate,
    /// Creates the file or opens an existing one as it is.
    Create,
    /// Opens an existing file as it is.
    Existing,
}

/// What a sync makes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncKind {
    /// `fdatasync` of a file: its data (and the size needed to read it).
    Data,
    /// `fsync` of a file: its data and metadata.
    File,
    /// `fsync` of a directory: the entries created, renamed or removed in it.
    Dir,
    /// `syncfs`: everything on the file system.
    FileSystem,
}

/// Where a sync is asked for: a source line and what it syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub file: &'static str,
    pub line: u32,
    pub kind: SyncKind,
}

impl Site {
    fn new(location: &'static Location<'static>, kind: SyncKind) -> Site {
        Site {
            file: location.file(),
            line: location.line(),
            kind,
        }
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            SyncKind::Data => "fdatasync",
            SyncKind::File => "fsync",
            SyncKind::Dir => "fsync(dir)",
            SyncKind::FileSystem => "syncfs",
        };
        write!(f, "{}:{} {kind}", self.file, self.line)
    }
}

/// Opens `path` for reading and writing as `how` says, with `mode` for a
/// file it creates.
pub fn open_write(path: &Path, how: Open, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(mode);
    match how {
        Open::CreateNew => options.create_new(true),
        Open::CreateTruncate => options.create(true).truncate(true),
        Open::Create => options.create(true).truncate(false),
        Open::Existing => &mut options,
    };
    hooks::run(path, hooks::Call::Open(how), || options.open(path))
}

/// Writes all of `data` at byte `at` of `file` (at `path`).
pub fn write_at(file: &File, path: &Path, data: &[u8], at: u64) -> io::Result<()> {
    hooks::run(path, hooks::Call::Write { at, data }, || {
        file.write_all_at(data, at)
    })
}

/// Sets the length of `file` (at `path`), cutting or extending by zeros.
pub fn set_len(file: &File, path: &Path, len: u64) -> io::Result<()> {
    hooks::run(path, hooks::Call::SetLen(len), || file.set_len(len))
}

/// `fdatasync` of `file` (at `path`).
#[track_caller]
pub fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    let site = Site::new(Location::caller(), SyncKind::Data);
    hooks::run_sync(path, site, || file.sync_data())
}

/// `fsync` of `file` (at `path`).
#[track_caller]
pub fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    let site = Site::new(Location::caller(), SyncKind::File);
    hooks::run_sync(path, site, || file.sync_all())
}

/// `fsync` of the directory `dir`: entries created, renamed or removed in
/// it become durable.
#[track_caller]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let site = Site::new(Location::caller(), SyncKind::Dir);
    hooks::run_sync(dir, site, || File::open(dir)?.sync_all())
}

/// `syncfs` of the file system holding `dir`.
#[track_caller]
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let site = Site::new(Location::caller(), SyncKind::FileSystem);
    hooks::run_sync(dir, site, || {
        let handle = File::open(dir)?;
        rustix::fs::syncfs(&handle).map_err(io::Error::from)
    })
}

/// Renames `from` to `to`, replacing `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    hooks::run(to, hooks::Call::Rename { from }, || {
        std::fs::rename(from, to)
    })
}

/// Removes the file `path`.
pub fn remove_file(path: &Path) -> io::Result<()> {
    hooks::run(path, hooks::Call::Remove, || std::fs::remove_file(path))
}

/// Removes the directory `path` and everything below it.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    hooks::run(path, hooks::Call::RemoveTree, || {
        std::fs::remove_dir_all(path)
    })
}

/// Creates the directory `path` (its parent must exist).
pub fn create_dir(path: &Path) -> io::Result<()> {
    hooks::run(path, hooks::Call::Mkdir, || std::fs::create_dir(path))
}

/// Reads exactly `buf.len()` bytes at `at` of `file` (at `path`). Not
/// traced (reads change nothing), but a fault can fail it.
pub fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> io::Result<()> {
    hooks::run(path, hooks::Call::Read, || file.read_exact_at(buf, at))
}

/// Whether a test has asked (with `stop_after`, test builds only) that
/// the protocol running on the data directory `dir` stop right after the
/// step named `point`; asking disarms it. The caller then stops as a crash
/// there would. Without the `fault-injection` feature there are no stop
/// points: this is always false.
#[inline(always)]
pub fn stop_point(dir: &Path, point: &str) -> bool {
    hooks::stop_point(dir, point)
}

#[cfg(not(feature = "fault-injection"))]
mod hooks {
    use std::path::Path;

    /// What the call is; only the traced build reads it.
    #[allow(dead_code)]
    pub(super) enum Call<'a> {
        Open(super::Open),
        Write { at: u64, data: &'a [u8] },
        SetLen(u64),
        Rename { from: &'a Path },
        Remove,
        RemoveTree,
        Mkdir,
        Read,
    }

    #[inline(always)]
    pub(super) fn run<T>(
        _path: &Path,
        _call: Call<'_>,
        op: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        op()
    }

    #[inline(always)]
    pub(super) fn run_sync(
        _path: &Path,
        _site: super::Site,
        op: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        op()
    }

    #[inline(always)]
    pub(super) fn stop_point(_dir: &Path, _point: &str) -> bool {
        false
    }
}

#[cfg(feature = "fault-injection")]
pub use rustix::io::Errno;

#[cfg(feature = "fault-injection")]
pub use hooks::{
    Fault, FaultOp, Op, Trace, fdatasync_attempts, inject, remove_faults, set_fdatasync_failing,
    stop_after,
};

#[cfg(feature = "fault-injection")]
mod hooks {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard};

    use super::{Open, Site, SyncKind};

    pub(super) enum Call<'a> {
        Open(Open),
        Write { at: u64, data: &'a [u8] },
        SetLen(u64),
        Sync(Site),
        Rename { from: &'a Path },
        Remove,
        RemoveTree,
        Mkdir,
        Read,
    }

    /// One traced operation, with paths relative to the traced directory.
    /// Only operations that returned success are recorded.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Op {
        /// A file was opened for writing; `created` when it did not exist,
        /// `truncated` when an existing one was emptied.
        Open {
            path: PathBuf,
            created: bool,
            truncated: bool,
        },
        Write {
            path: PathBuf,
            at: u64,
            data: Vec<u8>,
        },
        SetLen {
            path: PathBuf,
            len: u64,
        },
        /// A sync that ran (a skipped one is not recorded).
        Sync {
            path: PathBuf,
            site: Site,
        },
        Rename {
            from: PathBuf,
            to: PathBuf,
        },
        Remove {
            path: PathBuf,
        },
        /// A directory and everything below it was removed.
        RemoveTree {
            path: PathBuf,
        },
        Mkdir {
            path: PathBuf,
        },
        /// A sync the trace's skip switch did not run.
        Skipped {
            path: PathBuf,
            site: Site,
        },
        /// A point the test marked (e.g. "receipts for entries up to n
        /// were returned"), recorded in order with the operations.
        Mark(String),
    }

    /// Which operations a [`Fault`] fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FaultOp {
        /// Every sync of a file (`fdatasync` or `fsync`), not directories.
        FileSync,
        /// `fdatasync` only.
        DataSync,
        /// The fdatasyncs that make appended records durable: those of
        /// segment files and of the index (what [`set_fdatasync_failing`]
        /// fails and counts).
        RecordSync,
        /// Directory fsyncs.
        DirSync,
        /// `syncfs`.
        FileSystemSync,
        /// Writes (data written, lengths set).
        Write,
        /// Reads through [`super::read_exact_at`].
        Read,
        /// Renames.
        Rename,
    }

    /// Makes operations on files below `under` fail with `errno`.
    #[derive(Debug, Clone)]
    pub struct Fault {
        pub under: PathBuf,
        pub op: FaultOp,
        /// Only files whose path relative to `under` starts with this
        /// (for example `"index"`, `"segments/"`), or all when `None`.
        pub file: Option<String>,
        pub errno: rustix::io::Errno,
        /// Fail the first matching operation only, or every one.
        pub once: bool,
    }

    struct Injected {
        fault: Fault,
        attempts: u64,
        spent: bool,
    }

    struct Traced {
        root: PathBuf,
        ops: Vec<Op>,
        skip: Option<Site>,
    }

    #[derive(Default)]
    struct State {
        traces: Vec<Traced>,
        faults: Vec<Injected>,
        /// Armed stop points: a data directory and the step to stop after.
        stops: Vec<(PathBuf, String)>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        traces: Vec::new(),
        faults: Vec::new(),
        stops: Vec::new(),
    });
    /// Set once anything is traced or injected; until then every call is
    /// the bare system call.
    static ACTIVE: AtomicBool = AtomicBool::new(false);

    fn state() -> MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn matches(op: FaultOp, call: &Call<'_>, rel: &Path) -> bool {
        match (op, call) {
            (FaultOp::RecordSync, Call::Sync(site)) => {
                site.kind == SyncKind::Data
                    && (rel.starts_with("segments") || rel == Path::new("index"))
            }
            (FaultOp::FileSync, Call::Sync(site)) => {
                matches!(site.kind, SyncKind::Data | SyncKind::File)
            }
            (FaultOp::DataSync, Call::Sync(site)) => site.kind == SyncKind::Data,
            (FaultOp::DirSync, Call::Sync(site)) => site.kind == SyncKind::Dir,
            (FaultOp::FileSystemSync, Call::Sync(site)) => site.kind == SyncKind::FileSystem,
            (FaultOp::Write, Call::Write { .. } | Call::SetLen(_)) => true,
            (FaultOp::Read, Call::Read) => true,
            (FaultOp::Rename, Call::Rename { .. }) => true,
            _ => false,
        }
    }

    pub(super) fn run<T>(
        path: &Path,
        call: Call<'_>,
        op: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        if !ACTIVE.load(Ordering::Acquire) {
            return op();
        }
        // Held across the system call: operations below a traced
        // directory reach the kernel in the order they are recorded.
        let mut state = state();
        for injected in state.faults.iter_mut() {
            let Ok(rel) = path.strip_prefix(&injected.fault.under) else {
                continue;
            };
            if !matches(injected.fault.op, &call, rel)
                || injected
                    .fault
                    .file
                    .as_deref()
                    .is_some_and(|f| !rel.to_string_lossy().starts_with(f))
            {
                continue;
            }
            injected.attempts += 1;
            if !injected.spent {
                injected.spent = injected.fault.once;
                return Err(std::io::Error::from(injected.fault.errno));
            }
        }
        let Some(traced) = state.traces.iter_mut().find(|t| path.starts_with(&t.root)) else {
            drop(state);
            return op();
        };
        let rel = |p: &Path| p.strip_prefix(&traced.root).unwrap_or(p).to_path_buf();
        let recorded = match &call {
            Call::Open(how) => {
                let existed = path.exists();
                let value = op()?;
                traced.ops.push(Op::Open {
                    path: rel(path),
                    created: !existed,
                    truncated: existed && *how == Open::CreateTruncate,
                });
                return Ok(value);
            }
            Call::Write { at, data } => Op::Write {
                path: rel(path),
                at: *at,
                data: data.to_vec(),
            },
            Call::SetLen(len) => Op::SetLen {
                path: rel(path),
                len: *len,
            },
            Call::Sync(site) => Op::Sync {
                path: rel(path),
                site: *site,
            },
            Call::Rename { from } => Op::Rename {
                from: rel(from),
                to: rel(path),
            },
            Call::Remove => Op::Remove { path: rel(path) },
            Call::RemoveTree => Op::RemoveTree { path: rel(path) },
            Call::Mkdir => Op::Mkdir { path: rel(path) },
            Call::Read => {
                drop(state);
                return op();
            }
        };
        let value = op()?;
        traced.ops.push(recorded);
        Ok(value)
    }

    /// A sync: like [`run`], except that a sync at the site a trace
    /// skips returns success without running (the mutant build).
    pub(super) fn run_sync(
        path: &Path,
        site: Site,
        op: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if ACTIVE.load(Ordering::Acquire) {
            let mut state = state();
            if let Some(traced) = state
                .traces
                .iter_mut()
                .find(|t| t.skip == Some(site) && path.starts_with(&t.root))
            {
                let rel = path
                    .strip_prefix(&traced.root)
                    .unwrap_or(path)
                    .to_path_buf();
                traced.ops.push(Op::Skipped { path: rel, site });
                return Ok(());
            }
        }
        run(path, Call::Sync(site), op)
    }

    /// A trace of every operation below `root`, recorded until
    /// [`Trace::finish`]. Traces of nested directories are not supported:
    /// the first trace whose root holds a path records it.
    #[derive(Debug)]
    pub struct Trace {
        root: PathBuf,
        finished: bool,
    }

    impl Trace {
        /// Starts tracing below `root`; with `skip`, the sync at that site
        /// is not run (it returns success) for files below `root`.
        pub fn start(root: &Path, skip: Option<Site>) -> Trace {
            let mut state = state();
            state.traces.retain(|t| t.root != root);
            state.traces.push(Traced {
                root: root.to_path_buf(),
                ops: Vec::new(),
                skip,
            });
            ACTIVE.store(true, Ordering::Release);
            Trace {
                root: root.to_path_buf(),
                finished: false,
            }
        }

        /// Records a mark in the trace.
        pub fn mark(&self, label: impl Into<String>) {
            let mut state = state();
            if let Some(t) = state.traces.iter_mut().find(|t| t.root == self.root) {
                t.ops.push(Op::Mark(label.into()));
            }
        }

        /// Stops tracing and returns the operations, in order.
        pub fn finish(mut self) -> Vec<Op> {
            self.finished = true;
            take(&self.root)
        }
    }

    impl Drop for Trace {
        fn drop(&mut self) {
            if !self.finished {
                take(&self.root);
            }
        }
    }

    fn take(root: &Path) -> Vec<Op> {
        let mut state = state();
        match state.traces.iter().position(|t| t.root == root) {
            Some(i) => state.traces.remove(i).ops,
            None => Vec::new(),
        }
    }

    /// Injects `fault`; it stays until [`remove_faults`] for its directory.
    pub fn inject(fault: Fault) {
        let mut state = state();
        state.faults.push(Injected {
            fault,
            attempts: 0,
            spent: false,
        });
        ACTIVE.store(true, Ordering::Release);
    }

    /// Removes every fault injected for `under`; returns how many matching
    /// operations each saw (in injection order).
    pub fn remove_faults(under: &Path) -> Vec<u64> {
        let mut state = state();
        let mut attempts = Vec::new();
        state.faults.retain(|f| {
            if f.fault.under == under {
                attempts.push(f.attempts);
                false
            } else {
                true
            }
        });
        attempts
    }

    /// From now on every fdatasync of appended records (segments, index)
    /// below `dir` is counted, and fails with `EIO` while `failing` is true
    /// (a failing disk, as the writer meets it).
    pub fn set_fdatasync_failing(dir: &Path, failing: bool) {
        let mut state = state();
        let existing = state.faults.iter_mut().find(|f| {
            f.fault.under == dir && f.fault.op == FaultOp::RecordSync && f.fault.file.is_none()
        });
        match existing {
            Some(f) => f.spent = !failing,
            None => {
                state.faults.push(Injected {
                    fault: Fault {
                        under: dir.to_path_buf(),
                        op: FaultOp::RecordSync,
                        file: None,
                        errno: rustix::io::Errno::IO,
                        once: false,
                    },
                    attempts: 0,
                    spent: !failing,
                });
                ACTIVE.store(true, Ordering::Release);
            }
        }
    }

    /// The next time the protocol running on the data directory `dir`
    /// passes the step named `point`, [`super::stop_point`] says to stop
    /// there (once).
    pub fn stop_after(dir: &Path, point: impl Into<String>) {
        let mut state = state();
        state.stops.push((dir.to_path_buf(), point.into()));
        ACTIVE.store(true, Ordering::Release);
    }

    pub(super) fn stop_point(dir: &Path, point: &str) -> bool {
        if !ACTIVE.load(Ordering::Acquire) {
            return false;
        }
        let mut state = state();
        match state
            .stops
            .iter()
            .position(|(armed, armed_point)| armed == dir && armed_point == point)
        {
            Some(i) => {
                state.stops.remove(i);
                true
            }
            None => false,
        }
    }

    /// Record fdatasyncs attempted below `dir` (failed ones included)
    /// since [`set_fdatasync_failing`] was first called for it.
    pub fn fdatasync_attempts(dir: &Path) -> u64 {
        state()
            .faults
            .iter()
            .find(|f| {
                f.fault.under == dir && f.fault.op == FaultOp::RecordSync && f.fault.file.is_none()
            })
            .map_or(0, |f| f.attempts)
    }
}
