//! [`verify`]: checks a bundle in one pass with the log's verifier key
//! alone.
//!
//! Memory: the checkpoint, one record at a time (an entry's body, at most
//! [`crate::MAX_EVENT_BYTES`] of canonical envelope), the multi-proof's
//! fold (one hash per tree level), and the purge records read (at most
//! [`MAX_PURGE_RECORDS`], each at most 512 ranges). Entries are checked as
//! they are read and then dropped.
//!
//! What is checked, in file order: the magic; the checkpoint's signature by
//! the pinned key, and that its origin is the key's name; the consistency
//! proof against the tree the caller already holds, when given; for every
//! entry, that it comes after the last, lies in the tree, carries exactly
//! the gap hashes the multi-proof needs, and (events and purge records)
//! that its bytes are a valid canonical envelope; each purge record's
//! inclusion proof and shape; that each purged entry's purge record came
//! before it and covers it; that the multi-proof rebuilds the checkpoint's
//! root from the recomputed leaves; the manifest's signature, checkpoint,
//! contents hash and counts; and that nothing follows the manifest.

use std::collections::BTreeMap;
use std::io::Read;

use stele_event::Envelope;
use stele_tlog::{Checkpoint, Hash, Verifier, leaf_hash, open_note, verify_consistency};

use crate::error::BundleError;
use crate::format::{
    Body, MAX_CONSISTENCY_HASHES, MAX_ENTRIES, MAX_GAP_HASHES, MAX_INCLUSION_HASHES,
    MAX_PURGE_RECORDS, Record, RecordReader, RecordType,
};
use crate::manifest::Manifest;
use crate::multiproof::{Fold, gap_nodes};
use crate::purge::PurgeRecord;

/// What the consistency check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsistencyCheck {
    /// The caller holds no earlier tree, and the bundle carries no proof.
    NotAsked,
    /// The bundle proves consistency from `old_size`, but the caller gave
    /// no root to check it against.
    Unchecked { old_size: u64 },
    /// The checkpoint extends (or equals) the tree the caller holds.
    Checked { old_size: u64 },
}

/// One purge record of the bundle and how many of its entries the bundle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedEpoch {
    pub record: PurgeRecord,
    pub purged_in_bundle: u64,
}

/// What a verified bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The checkpoint every entry is proven against.
    pub checkpoint: Checkpoint,
    pub consistency: ConsistencyCheck,
    /// Number of events and of purged entries.
    pub events: u64,
    pub purged: u64,
    /// Lowest and highest entry index (events and purged entries).
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// The purge records, by their log index.
    pub purged_epochs: Vec<PurgedEpoch>,
    /// The signed manifest.
    pub manifest: Manifest,
    /// Length of the bundle in bytes.
    pub bytes: u64,
}

/// The state carried from one entry record to the next.
struct Entries {
    checkpoint: Checkpoint,
    fold: Fold,
    first: Option<u64>,
    previous: Option<u64>,
    events: u64,
    purged: u64,
    purge_records: BTreeMap<u64, PurgedEpoch>,
}

/// Verifies the bundle read from `input` with the log's verifier key.
/// `known` is a tree (size, root) the caller already trusts: the bundle's
/// checkpoint must then be consistent with it.
pub fn verify(
    input: impl Read,
    verifier: &Verifier,
    known: Option<(u64, Hash)>,
) -> Result<Report, BundleError> {
    let mut records = RecordReader::new(input)?;
    let first = expect_record(&mut records, "the checkpoint record")?;
    if first.kind != RecordType::Checkpoint {
        return Err(out_of_place(
            &first,
            "the first record must be the checkpoint",
        ));
    }
    let checkpoint = check_checkpoint(&first.body, verifier)?;
    let mut record = expect_record(&mut records, "the end record")?;
    let mut proof = None;
    if record.kind == RecordType::Consistency {
        proof = Some(read_consistency(&record)?);
        record = expect_record(&mut records, "the end record")?;
    }
    let consistency = check_consistency(&checkpoint, proof, known)?;
    let mut entries = Entries {
        checkpoint,
        fold: Fold::new(),
        first: None,
        previous: None,
        events: 0,
        purged: 0,
        purge_records: BTreeMap::new(),
    };
    while record.kind != RecordType::End {
        match record.kind {
            RecordType::Event => entries.event(&record)?,
            RecordType::Purged => entries.purged(&record)?,
            RecordType::PurgeRecord => entries.purge_record(&record)?,
            _ => return Err(out_of_place(&record, "expected an entry or the end record")),
        }
        record = expect_record(&mut records, "the end record")?;
    }
    entries.end(&record)?;
    let contents = records.contents_hash();
    let last = expect_record(&mut records, "the manifest record")?;
    if last.kind != RecordType::Manifest {
        return Err(out_of_place(
            &last,
            "expected the manifest after the end record",
        ));
    }
    let manifest = entries.check_manifest(&last.body, verifier, &contents)?;
    if let Some(extra) = records.next().map_err(|e| match e {
        BundleError::Truncated { offset, .. } => BundleError::Framing {
            offset,
            reason: "bytes after the manifest".into(),
        },
        other => other,
    })? {
        return Err(out_of_place(&extra, "nothing may follow the manifest"));
    }
    Ok(Report {
        checkpoint: entries.checkpoint,
        consistency,
        events: entries.events,
        purged: entries.purged,
        first_index: entries.first,
        last_index: entries.previous,
        purged_epochs: entries.purge_records.into_values().collect(),
        manifest,
        bytes: records.offset(),
    })
}

/// The next record; the end of the file here means it was cut before `what`.
fn expect_record<R: Read>(
    records: &mut RecordReader<R>,
    what: &str,
) -> Result<Record, BundleError> {
    records.next()?.ok_or_else(|| BundleError::Truncated {
        offset: records.offset(),
        what: format!("the bundle: it ends before {what}"),
    })
}

fn out_of_place(record: &Record, why: &str) -> BundleError {
    BundleError::Framing {
        offset: record.offset,
        reason: format!("{} record out of place: {why}", record.kind.name()),
    }
}

/// Opens the checkpoint note with the pinned key; its origin must be the
/// key's name.
fn check_checkpoint(body: &[u8], verifier: &Verifier) -> Result<Checkpoint, BundleError> {
    let bad = |reason: String| BundleError::Checkpoint { reason };
    let note = open_note(body, &[verifier]).map_err(|e| {
        bad(format!(
            "not signed by the verifier key {}: {e}",
            verifier.name()
        ))
    })?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| bad(e.to_string()))?;
    if checkpoint.origin != verifier.name() {
        return Err(bad(format!(
            "origin {:?} is not the verifier key's name {:?}",
            checkpoint.origin,
            verifier.name()
        )));
    }
    Ok(checkpoint)
}

/// The consistency record's old size and proof.
fn read_consistency(record: &Record) -> Result<(u64, Vec<Hash>), BundleError> {
    let framing = |reason: String| BundleError::Framing {
        offset: record.offset,
        reason: format!("consistency record: {reason}"),
    };
    let mut body = Body::new(&record.body);
    let old_size = body.u64("old size").map_err(framing)?;
    let hashes = body
        .hashes(MAX_CONSISTENCY_HASHES, "proof")
        .map_err(framing)?;
    body.end().map_err(framing)?;
    Ok((old_size, hashes.into_iter().map(Hash).collect()))
}

/// Checks the checkpoint against the tree the caller holds, if any.
fn check_consistency(
    checkpoint: &Checkpoint,
    proof: Option<(u64, Vec<Hash>)>,
    known: Option<(u64, Hash)>,
) -> Result<ConsistencyCheck, BundleError> {
    let bad = |reason: String| BundleError::Consistency { reason };
    let size = checkpoint.size;
    let Some((known_size, known_root)) = known else {
        return Ok(match proof {
            Some((old_size, _)) => ConsistencyCheck::Unchecked { old_size },
            None => ConsistencyCheck::NotAsked,
        });
    };
    if known_size > size {
        return Err(bad(format!(
            "the bundle's checkpoint (size {size}) is older than the tree you hold (size {known_size})"
        )));
    }
    let hashes = match proof {
        Some((old_size, hashes)) if old_size == known_size => hashes,
        Some((old_size, _)) if known_size != size => {
            return Err(bad(format!(
                "the bundle proves consistency from size {old_size}, not from the size {known_size} you hold"
            )));
        }
        None if known_size != size => {
            return Err(bad(format!(
                "the bundle holds no consistency proof from the size {known_size} you hold"
            )));
        }
        _ => Vec::new(),
    };
    verify_consistency(known_size, size, &hashes, &known_root, &checkpoint.root).map_err(|e| {
        bad(format!(
            "the checkpoint of size {size} is not consistent with the tree of size {known_size} you hold: {e}"
        ))
    })?;
    Ok(ConsistencyCheck::Checked {
        old_size: known_size,
    })
}

/// Reads a canonical envelope strictly.
fn envelope(canonical: &[u8]) -> Result<Envelope, String> {
    Envelope::from_canonical(canonical).map_err(|e| format!("envelope is not valid: {e}"))
}

impl Entries {
    /// Checks that entry `index` comes next and lies in the tree, takes the
    /// gap hashes before it into the fold, then its leaf.
    fn advance(&mut self, index: u64, gap: &[[u8; 32]], leaf: Hash) -> Result<(), BundleError> {
        let size = self.checkpoint.size;
        if let Some(previous) = self.previous
            && index <= previous
        {
            return Err(BundleError::Entry {
                index,
                reason: format!("not after entry {previous} (entries must ascend)"),
            });
        }
        if index >= size {
            return Err(BundleError::Entry {
                index,
                reason: format!("not in the checkpoint's tree of size {size}"),
            });
        }
        if self.events + self.purged >= MAX_ENTRIES {
            return Err(BundleError::Limit {
                what: "entries",
                limit: MAX_ENTRIES,
            });
        }
        self.push_gap(gap, self.fold.next(), index, &format!("entry {index}"))?;
        self.push(index, index + 1, leaf)?;
        self.first.get_or_insert(index);
        self.previous = Some(index);
        Ok(())
    }

    /// Pushes the nodes of the gap `[from, to)` with the hashes given.
    fn push_gap(
        &mut self,
        gap: &[[u8; 32]],
        from: u64,
        to: u64,
        before: &str,
    ) -> Result<(), BundleError> {
        let nodes = gap_nodes(self.checkpoint.size, from, to);
        if nodes.len() != gap.len() {
            return Err(BundleError::MultiProof {
                reason: format!(
                    "{before} carries {} gap hashes, {} expected for leaves {from}..{to}",
                    gap.len(),
                    nodes.len()
                ),
            });
        }
        for ((lo, hi), hash) in nodes.into_iter().zip(gap) {
            self.push(lo, hi, Hash(*hash))?;
        }
        Ok(())
    }

    fn push(&mut self, lo: u64, hi: u64, hash: Hash) -> Result<(), BundleError> {
        if self.fold.push(lo, hi, hash) {
            Ok(())
        } else {
            Err(BundleError::MultiProof {
                reason: format!("node {lo}..{hi} does not follow leaf {}", self.fold.next()),
            })
        }
    }

    /// An event record: index, gap hashes, salt, canonical envelope.
    fn event(&mut self, record: &Record) -> Result<(), BundleError> {
        let mut body = Body::new(&record.body);
        let index = body.u64("index").map_err(|r| framing(record, r))?;
        let entry = |reason: String| BundleError::Entry { index, reason };
        let gap = body.hashes(MAX_GAP_HASHES, "gap hashes").map_err(entry)?;
        let salt = body.hash("salt").map_err(entry)?;
        let canonical = body.rest();
        let commitment = stele_event::commitment(&salt, canonical);
        // Order and place first, so an entry out of order is named as such.
        self.advance(index, &gap, leaf_hash(&commitment))?;
        envelope(canonical).map_err(entry)?;
        self.events += 1;
        Ok(())
    }

    /// A purged record: index, gap hashes, commitment, purge record index.
    fn purged(&mut self, record: &Record) -> Result<(), BundleError> {
        let mut body = Body::new(&record.body);
        let index = body.u64("index").map_err(|r| framing(record, r))?;
        let entry = |reason: String| BundleError::Entry { index, reason };
        let gap = body.hashes(MAX_GAP_HASHES, "gap hashes").map_err(entry)?;
        let commitment = body.hash("commitment").map_err(entry)?;
        let by = body.u64("purge record index").map_err(entry)?;
        body.end().map_err(entry)?;
        self.advance(index, &gap, leaf_hash(&commitment))?;
        let purged = |reason: String| BundleError::Purged { index, reason };
        let Some(epoch) = self.purge_records.get_mut(&by) else {
            return Err(purged(format!(
                "names purge record {by}, which the bundle does not hold before it"
            )));
        };
        if !epoch.record.covers(index) {
            return Err(purged(format!(
                "purge record {by} (stream {:?} epoch {}) does not cover it",
                epoch.record.stream, epoch.record.epoch
            )));
        }
        epoch.purged_in_bundle += 1;
        self.purged += 1;
        Ok(())
    }

    /// A purge record: index, inclusion proof, salt, canonical envelope of
    /// a `retention.purge` event.
    fn purge_record(&mut self, record: &Record) -> Result<(), BundleError> {
        let mut body = Body::new(&record.body);
        let index = body.u64("index").map_err(|r| framing(record, r))?;
        let bad = |reason: String| BundleError::PurgeRecord { index, reason };
        let proof = body
            .hashes(MAX_INCLUSION_HASHES, "inclusion proof")
            .map_err(bad)?;
        let salt = body.hash("salt").map_err(bad)?;
        let canonical = body.rest();
        if self.purge_records.contains_key(&index) {
            return Err(bad("appears twice".into()));
        }
        if self.purge_records.len() >= MAX_PURGE_RECORDS {
            return Err(BundleError::Limit {
                what: "purge records",
                limit: MAX_PURGE_RECORDS as u64,
            });
        }
        let leaf = leaf_hash(&stele_event::commitment(&salt, canonical));
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        let (size, root) = (self.checkpoint.size, self.checkpoint.root);
        stele_tlog::verify_inclusion(&leaf, index, size, &proof, &root).map_err(|e| {
            bad(format!(
                "inclusion proof does not verify against checkpoint {size}: {e}"
            ))
        })?;
        let parsed = PurgeRecord::from_envelope(index, &envelope(canonical).map_err(bad)?)
            .map_err(|e| bad(format!("not a retention.purge event: {e}")))?;
        self.purge_records.insert(
            index,
            PurgedEpoch {
                record: parsed,
                purged_in_bundle: 0,
            },
        );
        Ok(())
    }

    /// The end record: the last gap; the fold must give the checkpoint's root.
    fn end(&mut self, record: &Record) -> Result<(), BundleError> {
        let mut body = Body::new(&record.body);
        let gap = body
            .hashes(MAX_GAP_HASHES, "gap hashes")
            .and_then(|gap| body.end().map(|()| gap))
            .map_err(|r| framing(record, r))?;
        let size = self.checkpoint.size;
        self.push_gap(&gap, self.fold.next(), size, "the end record")?;
        if self.fold.root() != self.checkpoint.root {
            return Err(BundleError::MultiProof {
                reason: format!("root does not match checkpoint {size}"),
            });
        }
        Ok(())
    }

    /// Opens the manifest with the pinned key and checks it names this
    /// checkpoint, the bytes before it and what the bundle holds.
    fn check_manifest(
        &self,
        body: &[u8],
        verifier: &Verifier,
        contents: &[u8; 32],
    ) -> Result<Manifest, BundleError> {
        let bad = |reason: String| BundleError::Manifest { reason };
        let note = open_note(body, &[verifier]).map_err(|e| {
            bad(format!(
                "not signed by the verifier key {}: {e}",
                verifier.name()
            ))
        })?;
        let manifest = Manifest::parse(&note.text).map_err(bad)?;
        let cp = &self.checkpoint;
        if (
            &manifest.origin,
            manifest.checkpoint_size,
            manifest.checkpoint_root,
        ) != (&cp.origin, cp.size, cp.root)
        {
            return Err(bad(format!(
                "names checkpoint {} of {:?}, the bundle's is {} of {:?}",
                manifest.checkpoint_size, manifest.origin, cp.size, cp.origin
            )));
        }
        if &manifest.contents != contents {
            return Err(BundleError::ContentsHash);
        }
        for (what, stated, found) in [
            ("events", manifest.events, self.events),
            ("purged entries", manifest.purged, self.purged),
            (
                "purge records",
                manifest.purge_records,
                self.purge_records.len() as u64,
            ),
        ] {
            if stated != found {
                return Err(BundleError::Counts {
                    what,
                    manifest: stated,
                    found,
                });
            }
        }
        Ok(manifest)
    }
}

fn framing(record: &Record, reason: String) -> BundleError {
    BundleError::Framing {
        offset: record.offset,
        reason: format!("{} record: {reason}", record.kind.name()),
    }
}
