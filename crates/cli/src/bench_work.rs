//! The per-event work every append and every `verify` must do, measured on
//! one thread over the benchmark's own events: the ceiling a log can reach
//! on this machine's cores, printed beside the measured rates.
//!
//! The pieces are the ones the log runs, called the same way: a block
//! compressed and sealed (`Packer::seal`), an entry's salt derived and its
//! commitment computed over the canonical envelope, its leaf and one
//! interior node of the Merkle tree, and on the `verify` side a block
//! authenticated and decompressed (`BlockRef::open`) and each canonical
//! envelope rebuilt from its stored form. File writes, fdatasyncs, index records, tiles and
//! the threads' hand-offs come on top of these.

use std::path::Path;
use std::time::{Duration, Instant};

use stele_log::{BlockConfig, PreparedEvent};
use stele_store::block::{self, Packer, Reference, ReferenceDictionary, Unpacker};
use stele_store::keys::{DataKey, Kek, NewKek};

use stele_log::LogError;
use stele_store::StoreResult;

use crate::{CliResult, Failure};

/// Events the measurement takes from the front of the benchmark's own.
const SAMPLE: usize = 20_000;

/// Microseconds per event of each piece, on one thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work {
    /// Compress and seal the event's share of a block.
    pub seal: f64,
    /// Derive the salt.
    pub salt: f64,
    /// Rebuild the canonical envelope from its stored form (`verify` does;
    /// the writer has it from preparation).
    pub rebuild: f64,
    /// Hash the commitment over the salt and the canonical envelope.
    pub commit: f64,
    /// Leaf hash and one interior node.
    pub merkle: f64,
    /// Authenticate and decompress the event's share of a block.
    pub open: f64,
    /// Add the event's terms to its epoch's search index (on the index's
    /// own thread, off the append path).
    pub index: f64,
}

impl Work {
    /// Per event, what an append must do.
    pub fn append(&self) -> f64 {
        self.seal + self.salt + self.commit + self.merkle
    }

    /// Per event, what `verify` must do.
    pub fn verify(&self) -> f64 {
        self.open + self.salt + self.rebuild + self.commit + self.merkle
    }
}

/// Measures [`Work`] over the first [`SAMPLE`] of `events`, with a key
/// made in `dir` (removed afterwards).
pub(crate) fn measure(
    dir: &Path,
    events: &[PreparedEvent],
    blocks: BlockConfig,
) -> CliResult<Work> {
    let sample = &events[..events.len().min(SAMPLE)];
    let n = sample.len().max(1) as f64;
    let kek_path = dir.join("baseline-kek.key");
    let kek = store(Kek::create(&kek_path, NewKek::Random))?;
    let (key, _) = store(DataKey::generate(&kek, 1))?;
    std::fs::remove_file(&kek_path)?;

    // Blocks as the writer cuts them in a segment of one stream and day:
    // up to the target of plaintext, and once the first is large enough
    // to be the segment's reference, smaller ones compressed against it.
    let mut groups: Vec<Vec<(u64, &[u8])>> = Vec::new();
    let mut plain = 0usize;
    let mut referenced = false;
    for (i, event) in sample.iter().enumerate() {
        let len = BlockConfig::entry_plain(event.stored().len());
        match groups.last_mut() {
            Some(group) if blocks.has_room(referenced, plain, group.len(), len) => {
                group.push((i as u64, event.stored()));
                plain += len;
            }
            _ => {
                if groups.len() == 1 && blocks.makes_reference(plain) {
                    referenced = true;
                }
                groups.push(vec![(i as u64, event.stored())]);
                plain = len;
            }
        }
    }
    // The first block's frame is at a made-up offset (1) of its segment;
    // the others follow it.
    let reference = match groups.first() {
        Some(group) if groups.len() > 1 && referenced => {
            Some(store(Reference::new(1, group, blocks.level()))?)
        }
        _ => None,
    };
    let mut packer = store(Packer::new(blocks.level()))?;
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(groups.len());
    let seal = timed(n, || {
        frames.clear();
        for (g, group) in groups.iter().enumerate() {
            let against = reference.as_ref().filter(|_| g > 0);
            let mut frame = Vec::new();
            store(packer.seal(&key, 1, group, against, &mut frame))?;
            frames.push(frame);
        }
        Ok(())
    })?;

    let mut unpacker = store(Unpacker::new())?;
    let path = Path::new("baseline");
    // The reference is opened once, as a reader keeps it.
    let dictionary = match (&reference, frames.first()) {
        (Some(_), Some(frame)) => {
            let (record, _) = store(stele_store::segment::parse_record_ref(path, 1, frame))?;
            let block = store(block::parse(path, 1, record))?;
            let open = store(block.open(&key, path, 1, &mut unpacker, None))?;
            Some(store(ReferenceDictionary::new(1, &open))?)
        }
        _ => None,
    };
    let open = timed(n, || {
        let mut at = 1u64;
        for frame in &frames {
            let (record, _) = store(stele_store::segment::parse_record_ref(path, at, frame))?;
            let block = store(block::parse(path, at, record))?;
            std::hint::black_box(store(block.open(
                &key,
                path,
                at,
                &mut unpacker,
                dictionary.as_ref(),
            ))?);
            at += frame.len() as u64;
        }
        Ok(())
    })?;

    let salts = key.salt_key();
    let mut salted: Vec<[u8; 32]> = Vec::with_capacity(sample.len());
    let salt = timed(n, || {
        salted.clear();
        salted.extend((0..sample.len() as u64).map(|i| salts.salt(i)));
        Ok(())
    })?;
    let mut scratch = Vec::new();
    let rebuild = timed(n, || {
        for event in sample {
            let bytes = stele_event::canonical_from_stored(event.stored(), &mut scratch)
                .map_err(|e| Failure::usage(e.to_string()))?;
            std::hint::black_box(bytes);
        }
        Ok(())
    })?;
    let mut commitments: Vec<[u8; 32]> = Vec::with_capacity(sample.len());
    let commit = timed(n, || {
        commitments.clear();
        for (salt, event) in salted.iter().zip(sample) {
            commitments.push(stele_event::commitment(salt, event.canonical()));
        }
        Ok(())
    })?;

    let merkle = timed(n, || {
        let mut previous = stele_tlog::hash::leaf_hash(&[]);
        for commitment in &commitments {
            let leaf = stele_tlog::hash::leaf_hash(commitment);
            previous = stele_tlog::hash::node_hash(&previous, &leaf);
        }
        std::hint::black_box(previous);
        Ok(())
    })?;
    // The parts are dropped after the timing: a live index keeps them.
    let mut built = Vec::new();
    let index = timed(n, || {
        let mut part = stele_index::Part::new();
        for (i, event) in sample.iter().enumerate() {
            part.insert(i as u64, event.terms())
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
        built.push(part);
        Ok(())
    })?;
    drop(built);
    Ok(Work {
        seal,
        salt,
        rebuild,
        commit,
        merkle,
        open,
        index,
    })
}

/// Runs `pass` until a quarter of a second has gone (at least twice);
/// returns the microseconds per event of the fastest pass.
fn timed(events: f64, mut pass: impl FnMut() -> CliResult<()>) -> CliResult<f64> {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut passes = 0;
    while passes < 2 || started.elapsed() < Duration::from_millis(250) {
        let t = Instant::now();
        pass()?;
        best = best.min(t.elapsed());
        passes += 1;
    }
    Ok(best.as_secs_f64() * 1e6 / events)
}

fn store<T>(result: StoreResult<T>) -> CliResult<T> {
    result.map_err(|e| Failure::from(LogError::from(e)))
}
