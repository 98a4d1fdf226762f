//! Fuzz targets for every parser of bytes that come from outside Stele's
//! own memory: files of the data directory (which an operator, a disk or
//! an attacker with a shell can change), HTTP bodies and query strings,
//! configuration and policy files, and the public formats a verifier reads.
//!
//! Each target takes arbitrary bytes, hands them to the parser through the
//! same entry point the product uses, and checks the invariants that must
//! hold whatever the input: no panic, no hang, and for every input that is
//! accepted, that writing it back out and reading it again gives the same
//! value (byte for byte where the format is canonical). A failed invariant
//! panics, which the AFL++ driver (`src/bin/stele-fuzz.rs`) turns into a
//! crash. This crate only checks; it never changes a parser.

pub mod scratch;
mod targets;

pub use targets::fixtures;
/// Where the `segment_block` target places its input in a segment file.
pub use targets::store_block_at as SEGMENT_BLOCK_AT;

/// One fuzz target: its name (the corpus directory under `corpus/`), what
/// it feeds, and the function that runs one input.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = targets::ALL;

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
