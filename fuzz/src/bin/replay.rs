//! Runs fuzz inputs through their targets without AFL++: `stele-fuzz-replay
//! TARGET FILE...`, or `stele-fuzz-replay --all CORPUS_DIR` for every
//! target's corpus. Used to reproduce a crash under a debugger and to check
//! that the committed corpora still pass after a parser changes.

use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = match args.as_slice() {
        [flag, dir] if flag == "--all" => all(Path::new(dir)),
        [name, files @ ..] if !files.is_empty() => {
            let Some(target) = stele_fuzz::find(name) else {
                usage();
            };
            files.iter().map(|f| (target, PathBuf::from(f))).collect()
        }
        _ => usage(),
    };
    for (target, file) in &runs {
        let data = std::fs::read(file).unwrap_or_else(|e| {
            eprintln!("{}: {e}", file.display());
            std::process::exit(2);
        });
        (target.run)(&data);
    }
    println!("{} inputs replayed, no invariant failed", runs.len());
}

/// Every file under `dir/<target>/` for every target.
fn all(dir: &Path) -> Vec<(&'static stele_fuzz::Target, PathBuf)> {
    let mut runs = Vec::new();
    for target in stele_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target.name)) else {
            eprintln!("{}: no corpus for {}", dir.display(), target.name);
            std::process::exit(2);
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        runs.extend(files.into_iter().map(|f| (target, f)));
    }
    runs
}

fn usage() -> ! {
    let names: Vec<&str> = stele_fuzz::TARGETS.iter().map(|t| t.name).collect();
    eprintln!(
        "usage: stele-fuzz-replay TARGET FILE... | --all CORPUS_DIR\ntargets: {}",
        names.join(", ")
    );
    std::process::exit(2);
}
