//! A bundle of a million entries is written and verified in bounded
//! memory: the writer streams into a pipe while the verifier reads the
//! other end, and the process's peak resident memory stays far below the
//! bundle's size (about 54 MB) and below what holding every leaf hash
//! would take (32 MB).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sha2::{Digest as _, Sha256};
use stele_bundle::{BundleWriter, verify};
use stele_tlog::{Checkpoint, CompactRange, Hash, HashReader, leaf_hash, node_hash, sign_note};

const ENTRIES: u64 = 1_000_000;

/// The commitment of purged entry `i`: any 32 bytes will do.
fn commitment(i: u64) -> [u8; 32] {
    Sha256::digest(i.to_be_bytes()).into()
}

/// A tree of `ENTRIES` purged entries and one purge record, computing
/// every hash it is asked for from scratch (nothing stored).
struct Computed {
    record: Hash,
}

impl Computed {
    fn leaf(&self, i: u64) -> Hash {
        if i == ENTRIES {
            self.record
        } else {
            leaf_hash(&commitment(i))
        }
    }
}

impl HashReader for Computed {
    type Error = std::convert::Infallible;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        if level == 0 {
            return Ok(self.leaf(index));
        }
        let left = self.subtree_hash(level - 1, index * 2)?;
        let right = self.subtree_hash(level - 1, index * 2 + 1)?;
        Ok(node_hash(&left, &right))
    }
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_million_entries_in_bounded_memory() {
    let record = purge_event_unlisted(ENTRIES, 0, ENTRIES - 1);
    let tree = Computed {
        record: leaf_hash(&record.commitment()),
    };
    let mut range = CompactRange::new();
    for i in 0..=ENTRIES {
        range.append(tree.leaf(i)).unwrap();
    }
    let checkpoint = Checkpoint::new(ORIGIN, ENTRIES + 1, range.root());
    let note = sign_note(&checkpoint.to_body(), &[&signer()]).unwrap();
    let (reader, pipe) = std::io::pipe().unwrap();
    let writing = std::thread::spawn(move || {
        let out = std::io::BufWriter::new(pipe);
        let mut writer = BundleWriter::new(out, &tree, &note, None).unwrap();
        writer
            .add_purge_record(ENTRIES, &record.salt, &record.canonical)
            .unwrap();
        for i in 0..ENTRIES {
            writer.add_purged(i, &commitment(i), ENTRIES).unwrap();
        }
        writer.finish(&fields(), &signer()).unwrap().1
    });
    let report = verify(std::io::BufReader::new(reader), &signer().verifier(), None).unwrap();
    let summary = writing.join().unwrap();
    assert_eq!(report.purged, ENTRIES);
    assert_eq!(summary.bytes, report.bytes);
    assert!(report.bytes > 50_000_000, "{}", report.bytes);
    let peak = peak_rss();
    eprintln!("peak resident memory: {} KiB", peak >> 10);
    assert!(peak < 24 << 20, "peak resident memory {peak} bytes");
}
