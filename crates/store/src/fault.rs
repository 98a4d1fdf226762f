//! The fdatasync that makes appended records durable, with failures tests
//! can inject.
//!
//! Segment and index appends fdatasync through [`fdatasync`]. Built with the
//! `fault-injection` feature (only test builds enable it; release builds
//! never do), a test can make every fdatasync of a file below a directory
//! fail with `EIO`, as a failing disk would, and count the attempts. That is
//! how the rule "after a failed fdatasync the writer stops and never
//! retries it" is tested. Without the feature this is `File::sync_data`.

use std::fs::File;
use std::path::Path;

/// fdatasyncs `file` (at `path`).
pub fn fdatasync(file: &File, path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    injected::attempt(path)?;
    #[cfg(not(feature = "fault-injection"))]
    let _ = path;
    file.sync_data()
}

#[cfg(feature = "fault-injection")]
pub use injected::{fdatasync_attempts, set_fdatasync_failing};

#[cfg(feature = "fault-injection")]
mod injected {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    struct Rule {
        dir: PathBuf,
        failing: bool,
        attempts: u64,
    }

    static RULES: Mutex<Vec<Rule>> = Mutex::new(Vec::new());

    fn rules() -> std::sync::MutexGuard<'static, Vec<Rule>> {
        RULES.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an fdatasync of `path`; fails it if a rule says so.
    pub(super) fn attempt(path: &Path) -> std::io::Result<()> {
        let mut fail = false;
        for rule in rules().iter_mut().filter(|r| path.starts_with(&r.dir)) {
            rule.attempts += 1;
            fail |= rule.failing;
        }
        if fail {
            Err(std::io::Error::from(rustix::io::Errno::IO))
        } else {
            Ok(())
        }
    }

    /// From now on every fdatasync of a file below `dir` is counted, and
    /// fails with `EIO` while `failing` is true.
    pub fn set_fdatasync_failing(dir: &Path, failing: bool) {
        let mut rules = rules();
        match rules.iter_mut().find(|r| r.dir == dir) {
            Some(rule) => rule.failing = failing,
            None => rules.push(Rule {
                dir: dir.to_path_buf(),
                failing,
                attempts: 0,
            }),
        }
    }

    /// fdatasyncs attempted on files below `dir` (failed ones included)
    /// since [`set_fdatasync_failing`] was first called for it.
    pub fn fdatasync_attempts(dir: &Path) -> u64 {
        rules()
            .iter()
            .find(|r| r.dir == dir)
            .map_or(0, |r| r.attempts)
    }
}
