//! [`BundleWriter`]: writes a bundle in one pass over entries given in
//! ascending log index.
//!
//! Memory: the writer holds the checkpoint, the index of the last entry,
//! counts, the indices of the purge records written (at most
//! [`MAX_PURGE_RECORDS`]) and, while writing one entry, that entry's gap
//! hashes (at most [`MAX_GAP_HASHES`]). Hashes of the tree come from the
//! caller's [`HashReader`] over the checkpoint's tree as each entry needs
//! them; entries are written out as they come and never kept.
//!
//! Each entry is checked against the tree before it is written: its leaf
//! hash (recomputed from the salt and canonical bytes, or the commitment)
//! must be the tree's leaf at its index, so a writer never produces a
//! bundle that fails to verify because of a wrong entry.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::io::Write;

use sha2::{Digest as _, Sha256};
use stele_tlog::{Checkpoint, Hash, HashReader, Signer, leaf_hash, sign_note};

use crate::error::WriteError;
use crate::format::{
    MAGIC, MAX_CONSISTENCY_HASHES, MAX_ENTRIES, MAX_EVENT_BYTES, MAX_NOTE_BYTES, MAX_PURGE_RECORDS,
    RecordType,
};
use crate::manifest::{MANIFEST_TAG, Manifest, ManifestFields};
use crate::multiproof::{gap_nodes, node_hash_from};

/// A consistency proof from an older tree size the recipient holds to the
/// bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    pub old_size: u64,
    pub proof: Vec<Hash>,
}

/// What a finished bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub checkpoint: Checkpoint,
    pub events: u64,
    pub purged: u64,
    pub purge_records: u64,
    /// SHA-256 of the bytes before the manifest, as the manifest states it.
    pub contents: [u8; 32],
    /// Length of the whole bundle in bytes.
    pub bytes: u64,
}

/// The output, hashing what is written until the manifest.
struct Output<W: Write> {
    out: W,
    contents: Sha256,
    bytes: u64,
}

impl<W: Write> Output<W> {
    fn write(&mut self, bytes: &[u8], hashed: bool) -> Result<(), WriteError> {
        self.out.write_all(bytes)?;
        if hashed {
            self.contents.update(bytes);
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// One record: type, u32 big-endian body length, then the body's parts.
    fn record(&mut self, kind: RecordType, parts: &[&[u8]]) -> Result<(), WriteError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > kind.max_body() {
            return Err(WriteError::Limit(format!(
                "{} record of {len} bytes, more than {}",
                kind.name(),
                kind.max_body()
            )));
        }
        let len = u32::try_from(len)
            .map_err(|_| WriteError::Limit(format!("{} record too long", kind.name())))?;
        let hashed = kind != RecordType::Manifest;
        let mut header = [kind as u8, 0, 0, 0, 0];
        header[1..].copy_from_slice(&len.to_be_bytes());
        self.write(&header, hashed)?;
        for part in parts {
            self.write(part, hashed)?;
        }
        Ok(())
    }
}

/// Writes one bundle; see the module docs. Any output failure leaves it
/// incomplete: every later call then fails with [`WriteError::Failed`].
pub struct BundleWriter<W: Write, H: HashReader> {
    out: Output<W>,
    tree: H,
    checkpoint: Checkpoint,
    /// The first leaf the multi-proof has not covered yet.
    next_leaf: u64,
    previous: Option<u64>,
    events: u64,
    purged: u64,
    purge_records: BTreeSet<u64>,
    failed: bool,
}

impl<W: Write, H: HashReader> std::fmt::Debug for BundleWriter<W, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("checkpoint", &self.checkpoint)
            .field("next_leaf", &self.next_leaf)
            .field("events", &self.events)
            .field("purged", &self.purged)
            .finish_non_exhaustive()
    }
}

/// The checkpoint in a signed note's text (the signatures are not checked
/// here: the verifier checks them with the pinned key).
fn checkpoint_of(note: &str) -> Result<Checkpoint, WriteError> {
    let bad = |reason: String| WriteError::Checkpoint(reason);
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad(format!(
            "note of {} bytes, more than {MAX_NOTE_BYTES}",
            note.len()
        )));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("not a signed note (no blank line before signatures)".into()))?;
    let checkpoint = Checkpoint::parse(&note[..split + 1]).map_err(|e| bad(e.to_string()))?;
    if checkpoint.origin == MANIFEST_TAG {
        return Err(bad(format!("the origin may not be {MANIFEST_TAG:?}")));
    }
    Ok(checkpoint)
}

impl<W: Write, H: HashReader> BundleWriter<W, H>
where
    H::Error: Display,
{
    /// Starts a bundle proven against `checkpoint_note` (the log's signed
    /// note, as published), whose tree `tree` reads, with an optional
    /// consistency proof from an older size: writes the magic, the
    /// checkpoint record and the consistency record.
    pub fn new(
        out: W,
        tree: H,
        checkpoint_note: &str,
        consistency: Option<&Consistency>,
    ) -> Result<BundleWriter<W, H>, WriteError> {
        let checkpoint = checkpoint_of(checkpoint_note)?;
        let mut out = Output {
            out,
            contents: Sha256::new(),
            bytes: 0,
        };
        out.write(MAGIC, true)?;
        out.record(RecordType::Checkpoint, &[checkpoint_note.as_bytes()])?;
        if let Some(c) = consistency {
            if c.old_size == 0 || c.old_size > checkpoint.size {
                return Err(WriteError::Checkpoint(format!(
                    "no consistency proof from size {} to {}",
                    c.old_size, checkpoint.size
                )));
            }
            let count = hash_count(&c.proof, MAX_CONSISTENCY_HASHES, "consistency proof")?;
            let hashes: Vec<u8> = c.proof.iter().flat_map(|h| h.0).collect();
            out.record(
                RecordType::Consistency,
                &[&c.old_size.to_be_bytes(), &[count], &hashes],
            )?;
        }
        Ok(BundleWriter {
            out,
            tree,
            checkpoint,
            next_leaf: 0,
            previous: None,
            events: 0,
            purged: 0,
            purge_records: BTreeSet::new(),
            failed: false,
        })
    }

    /// Runs one step, remembering an output failure.
    fn step<T>(
        &mut self,
        run: impl FnOnce(&mut Self) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        let result = run(self);
        if matches!(result, Err(WriteError::Io(_))) {
            self.failed = true;
        }
        result
    }

    /// Adds event `index` (its salt and canonical envelope bytes) with the
    /// multi-proof hashes of the gap before it.
    pub fn add_event(
        &mut self,
        index: u64,
        salt: &[u8; 32],
        canonical: &[u8],
    ) -> Result<(), WriteError> {
        self.step(|w| {
            if canonical.len() > MAX_EVENT_BYTES {
                return Err(WriteError::Limit(format!(
                    "entry {index}: {} bytes, more than {MAX_EVENT_BYTES}",
                    canonical.len()
                )));
            }
            let commitment = stele_event::commitment(salt, canonical);
            let gap = w.entry_gap(index, &commitment)?;
            w.out.record(
                RecordType::Event,
                &[&index.to_be_bytes(), &gap, salt, canonical],
            )?;
            w.events += 1;
            Ok(())
        })
    }

    /// Adds entry `index`, whose content a purge deleted, by its commitment
    /// and the index of the purge record (added before) that covers it.
    pub fn add_purged(
        &mut self,
        index: u64,
        commitment: &[u8; 32],
        purge_record: u64,
    ) -> Result<(), WriteError> {
        self.step(|w| {
            if !w.purge_records.contains(&purge_record) {
                return Err(WriteError::MissingPurgeRecord {
                    index,
                    record: purge_record,
                });
            }
            let gap = w.entry_gap(index, commitment)?;
            w.out.record(
                RecordType::Purged,
                &[
                    &index.to_be_bytes(),
                    &gap,
                    commitment,
                    &purge_record.to_be_bytes(),
                ],
            )?;
            w.purged += 1;
            Ok(())
        })
    }

    /// Adds the `retention.purge` event at `index` (salt and canonical
    /// bytes) with its own inclusion proof; it must come before the purged
    /// entries that name it, and each only once.
    pub fn add_purge_record(
        &mut self,
        index: u64,
        salt: &[u8; 32],
        canonical: &[u8],
    ) -> Result<(), WriteError> {
        self.step(|w| {
            if w.purge_records.contains(&index) {
                return Ok(());
            }
            if w.purge_records.len() >= MAX_PURGE_RECORDS || canonical.len() > MAX_EVENT_BYTES {
                return Err(WriteError::Limit(format!(
                    "purge record {index}: more than {MAX_PURGE_RECORDS} purge records or {MAX_EVENT_BYTES} bytes"
                )));
            }
            w.check_leaf(index, &stele_event::commitment(salt, canonical))?;
            let proof = stele_tlog::inclusion_proof(&w.tree, index, w.checkpoint.size).map_err(
                |e| WriteError::Tree {
                    index,
                    message: e.to_string(),
                },
            )?;
            let count = hash_count(&proof, crate::MAX_INCLUSION_HASHES, "inclusion proof")?;
            let hashes: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
            w.out.record(
                RecordType::PurgeRecord,
                &[&index.to_be_bytes(), &[count], &hashes, salt, canonical],
            )?;
            w.purge_records.insert(index);
            Ok(())
        })
    }

    /// Checks that entry `index` comes next, is in the tree and has the
    /// tree's leaf; returns its gap (count byte, then hashes) and moves on.
    fn entry_gap(&mut self, index: u64, commitment: &[u8; 32]) -> Result<Vec<u8>, WriteError> {
        if let Some(previous) = self.previous
            && index <= previous
        {
            return Err(WriteError::Order { index, previous });
        }
        if self.events + self.purged >= MAX_ENTRIES {
            return Err(WriteError::Limit(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        self.check_leaf(index, commitment)?;
        let gap = self.gap_bytes(index, self.next_leaf, index)?;
        self.previous = Some(index);
        self.next_leaf = index + 1;
        Ok(gap)
    }

    /// Refuses an entry outside the tree or whose leaf is not the tree's.
    fn check_leaf(&self, index: u64, commitment: &[u8; 32]) -> Result<(), WriteError> {
        let size = self.checkpoint.size;
        if index >= size {
            return Err(WriteError::OutsideTree { index, size });
        }
        let stored = self
            .tree
            .subtree_hash(0, index)
            .map_err(|e| WriteError::Tree {
                index,
                message: e.to_string(),
            })?;
        if stored != leaf_hash(commitment) {
            return Err(WriteError::LeafMismatch { index });
        }
        Ok(())
    }

    /// A count byte and the hashes of the gap `[from, to)`'s nodes.
    fn gap_bytes(&self, index: u64, from: u64, to: u64) -> Result<Vec<u8>, WriteError> {
        let nodes = gap_nodes(self.checkpoint.size, from, to);
        let mut bytes = Vec::with_capacity(1 + 32 * nodes.len());
        bytes.push(u8::try_from(nodes.len()).unwrap_or(u8::MAX));
        for (lo, hi) in nodes {
            let hash = node_hash_from(&self.tree, lo, hi).map_err(|e| WriteError::Tree {
                index,
                message: e.to_string(),
            })?;
            bytes.extend_from_slice(&hash.0);
        }
        Ok(bytes)
    }

    /// Writes the end record (the last gap) and the manifest, signed by
    /// `signer` (the log's key, named by the checkpoint's origin); returns
    /// the output and what the bundle holds.
    pub fn finish(
        mut self,
        fields: &ManifestFields,
        signer: &Signer,
    ) -> Result<(W, Summary), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        Manifest::check_fields(fields).map_err(WriteError::Manifest)?;
        if signer.name() != self.checkpoint.origin {
            return Err(WriteError::Manifest(format!(
                "the signer {:?} is not the log {:?}",
                signer.name(),
                self.checkpoint.origin
            )));
        }
        let size = self.checkpoint.size;
        let gap = self.gap_bytes(size, self.next_leaf, size)?;
        self.out.record(RecordType::End, &[&gap])?;
        let contents: [u8; 32] = self.out.contents.clone().finalize().into();
        let manifest = Manifest {
            origin: self.checkpoint.origin.clone(),
            checkpoint_size: size,
            checkpoint_root: self.checkpoint.root,
            contents,
            events: self.events,
            purged: self.purged,
            purge_records: self.purge_records.len() as u64,
            fields: fields.clone(),
        };
        let note = sign_note(&manifest.text(), &[signer])
            .map_err(|e| WriteError::Manifest(e.to_string()))?;
        self.out.record(RecordType::Manifest, &[note.as_bytes()])?;
        self.out.out.flush()?;
        let summary = Summary {
            checkpoint: self.checkpoint,
            events: self.events,
            purged: self.purged,
            purge_records: manifest.purge_records,
            contents,
            bytes: self.out.bytes,
        };
        Ok((self.out.out, summary))
    }
}

/// The count byte of a list of hashes, refused above `max`.
fn hash_count(hashes: &[Hash], max: usize, what: &str) -> Result<u8, WriteError> {
    match u8::try_from(hashes.len()) {
        Ok(count) if hashes.len() <= max => Ok(count),
        _ => Err(WriteError::Limit(format!(
            "{what} of {} hashes, more than {max}",
            hashes.len()
        ))),
    }
}
