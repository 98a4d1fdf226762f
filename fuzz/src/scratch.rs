//! Scratch files for targets whose parser reads a path (the data
//! directory's files are read by path, and so are configuration files).
//!
//! One directory per process, made on first use and reused for every
//! input: AFL++ runs thousands of inputs per process, and a new directory
//! each time would cost more than the parse. It lives under
//! `STELE_FUZZ_SCRATCH` when set (`scripts/fuzz.sh` points it at a
//! directory it removes afterwards, on tmpfs where there is one), else
//! under the system's temporary directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// This process's scratch directory.
pub fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        let base = std::env::var_os("STELE_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("scratch base directory");
        tempfile::Builder::new()
            .prefix("stele-fuzz-")
            .tempdir_in(base)
            .expect("scratch directory")
    })
    .path()
}

/// A fresh, empty directory `name` inside the scratch directory (emptied
/// if an earlier input left files in it).
pub fn fresh_dir(name: &str) -> PathBuf {
    let path = dir().join(name);
    if path.exists() {
        std::fs::remove_dir_all(&path).expect("empty scratch directory");
    }
    std::fs::create_dir_all(&path).expect("scratch directory");
    path
}

/// Writes `bytes` to `name` in the scratch directory (replacing it) and
/// returns its path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}
