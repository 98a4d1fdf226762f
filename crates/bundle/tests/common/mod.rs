//! A small in-memory log for the bundle tests: events with real canonical
//! envelopes, a `retention.purge` event, a Merkle tree and a signed
//! checkpoint, all deterministic.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stele_bundle::{BundleWriter, Consistency, ManifestFields};
use stele_event::{Limits, new_envelope, parse_client_event};
use stele_tlog::{Checkpoint, Hash, MemoryTree, Signer, leaf_hash, sign_note};

pub const ORIGIN: &str = "bundle.test/log";

/// One entry of the test log.
#[derive(Clone, Debug)]
pub struct Entry {
    pub salt: [u8; 32],
    pub canonical: Vec<u8>,
}

impl Entry {
    pub fn commitment(&self) -> [u8; 32] {
        stele_event::commitment(&self.salt, &self.canonical)
    }
}

/// The canonical envelope of a client event in `stream`, by `writer`.
pub fn envelope(raw: &str, n: u64, stream: &str, writer: &str) -> Vec<u8> {
    let parsed = parse_client_event(raw.as_bytes(), &Limits::default()).unwrap();
    let id = format!("01890000-0000-7000-8000-{n:012x}");
    let at = jiff::Timestamp::from_second(1_767_225_600 + n as i64).unwrap();
    new_envelope(parsed, raw.as_bytes(), id, at, writer, stream, "test")
        .unwrap()
        .canonical_bytes()
}

/// An ordinary event.
pub fn event(n: u64) -> Entry {
    let raw = format!(r#"{{"actor":"u{n}","action":"login","outcome":"success"}}"#);
    Entry {
        salt: [n as u8; 32],
        canonical: envelope(&raw, n, "ops", "app"),
    }
}

/// The `retention.purge` event of segment 7 covering `ranges`.
pub fn purge_event(n: u64, ranges: &[[u64; 2]]) -> Entry {
    let first = ranges.first().map(|r| r[0]).unwrap_or(0);
    let last = ranges.last().map(|r| r[1]).unwrap_or(0);
    let entries: u64 = ranges.iter().map(|r| r[1] - r[0] + 1).sum();
    let attributes = serde_json::json!({
        "segment": 7, "stream": "ops", "epoch": "2026-01-01",
        "decided_at": "2026-04-02T00:01:00Z", "purge_after": "2026-04-02T00:00:00Z",
        "policy": "00", "requested_by": "retention", "entries": entries,
        "first": first, "last": last, "ranges": ranges, "indices_sha256": "00",
    });
    let raw = serde_json::json!({
        "actor": "retention", "action": "retention.purge", "id": "purge:7",
        "resource": "streams/ops", "attributes": attributes,
    })
    .to_string();
    Entry {
        salt: [0xee; 32],
        canonical: envelope(&raw, n, "_system", "stele"),
    }
}

pub fn signer() -> Signer {
    Signer::new(ORIGIN, [42; 32]).unwrap()
}

/// A log of entries, its tree and checkpoint.
pub struct TestLog {
    pub entries: Vec<Entry>,
    pub tree: MemoryTree,
}

impl TestLog {
    pub fn new(entries: Vec<Entry>) -> TestLog {
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.commitment())).collect();
        TestLog {
            entries,
            tree: MemoryTree::from_leaves(&leaves).unwrap(),
        }
    }

    pub fn root_at(&self, size: u64) -> Hash {
        stele_tlog::tree_root(&self.tree, size).unwrap()
    }

    pub fn checkpoint_note(&self) -> String {
        let checkpoint = Checkpoint::new(ORIGIN, self.tree.size(), self.tree.root());
        sign_note(&checkpoint.to_body(), &[&signer()]).unwrap()
    }
}

/// What to put in a bundle.
#[derive(Default, Clone)]
pub struct Selection {
    pub events: Vec<u64>,
    /// Purged entries, all covered by the purge record at `purge_record`.
    pub purged: Vec<u64>,
    pub purge_record: Option<u64>,
    pub consistency_from: Option<u64>,
}

pub fn fields() -> ManifestFields {
    ManifestFields {
        query: "stream = ops".into(),
        by: "local:alice".into(),
        at: "2026-05-01T12:00:00Z".into(),
    }
}

/// Writes the bundle of `selection` over `log`.
pub fn write(log: &TestLog, selection: &Selection) -> Vec<u8> {
    let consistency = selection.consistency_from.map(|old| Consistency {
        old_size: old,
        proof: stele_tlog::consistency_proof(&log.tree, old, log.tree.size()).unwrap(),
    });
    let note = log.checkpoint_note();
    let mut writer = BundleWriter::new(Vec::new(), &log.tree, &note, consistency.as_ref()).unwrap();
    if let Some(record) = selection.purge_record {
        let e = &log.entries[record as usize];
        writer
            .add_purge_record(record, &e.salt, &e.canonical)
            .unwrap();
    }
    let mut all: Vec<(u64, bool)> = selection.events.iter().map(|i| (*i, false)).collect();
    all.extend(selection.purged.iter().map(|i| (*i, true)));
    all.sort();
    for (index, purged) in all {
        let e = &log.entries[index as usize];
        if purged {
            let record = selection.purge_record.unwrap();
            writer.add_purged(index, &e.commitment(), record).unwrap();
        } else {
            writer.add_event(index, &e.salt, &e.canonical).unwrap();
        }
    }
    writer.finish(&fields(), &signer()).unwrap().0
}

/// A log of 9 entries: events, with entries 2 and 3 purged by the purge
/// event at 6.
pub fn small_log() -> TestLog {
    let entries = (0..9)
        .map(|n| {
            if n == 6 {
                purge_event(n, &[[2, 3]])
            } else {
                event(n)
            }
        })
        .collect();
    TestLog::new(entries)
}

pub fn small_selection() -> Selection {
    Selection {
        events: vec![1, 4],
        purged: vec![2, 3],
        purge_record: Some(6),
        consistency_from: Some(5),
    }
}

/// The `retention.purge` event of segment 7 with its ranges unlisted
/// (`null`): it covers every index from `first` to `last`.
pub fn purge_event_unlisted(n: u64, first: u64, last: u64) -> Entry {
    let attributes = serde_json::json!({
        "segment": 7, "stream": "ops", "epoch": "2026-01-01",
        "decided_at": "2026-04-02T00:01:00Z", "purge_after": "2026-04-02T00:00:00Z",
        "policy": "00", "requested_by": "retention", "entries": last - first + 1,
        "first": first, "last": last, "ranges": null, "indices_sha256": "00",
    });
    let raw = serde_json::json!({
        "actor": "retention", "action": "retention.purge", "id": "purge:7",
        "resource": "streams/ops", "attributes": attributes,
    })
    .to_string();
    Entry {
        salt: [0xee; 32],
        canonical: envelope(&raw, n, "_system", "stele"),
    }
}
