//! Bundles written and verified over an in-memory log: round trips, every
//! single-byte change refused, truncation and appended bytes, the wrong
//! key, consistency with a tree the recipient holds, and the precise error
//! each kind of damage gives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use stele_bundle::{BundleError, BundleWriter, ConsistencyCheck, WriteError, verify};
use stele_tlog::{Signer, Verifier};

fn verifier() -> Verifier {
    signer().verifier()
}

#[test]
fn round_trip_names_events_purged_entries_and_the_manifest() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    let report = verify(bundle.as_slice(), &verifier(), None).unwrap();
    assert_eq!((report.events, report.purged), (2, 2));
    assert_eq!((report.first_index, report.last_index), (Some(1), Some(4)));
    assert_eq!(report.checkpoint.size, 9);
    assert_eq!(report.checkpoint.root, log.tree.root());
    assert_eq!(
        report.consistency,
        ConsistencyCheck::Unchecked { old_size: 5 }
    );
    assert_eq!(report.purged_epochs.len(), 1);
    let epoch = &report.purged_epochs[0];
    assert_eq!(
        (
            epoch.record.index,
            epoch.record.stream.as_str(),
            epoch.record.epoch.as_str()
        ),
        (6, "ops", "2026-01-01")
    );
    assert_eq!(epoch.purged_in_bundle, 2);
    assert_eq!(report.manifest.fields, fields());
    assert_eq!(report.manifest.events, 2);
    assert_eq!(report.bytes, bundle.len() as u64);
}

#[test]
fn every_single_byte_change_is_detected() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    let known = Some((5, log.root_at(5)));
    verify(bundle.as_slice(), &verifier(), known).unwrap();
    for position in 0..bundle.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut changed = bundle.clone();
            changed[position] ^= flip;
            // Without the known tree the consistency proof is covered by
            // the contents hash alone; with it, by the proof too.
            for known in [None, known] {
                assert!(
                    verify(changed.as_slice(), &verifier(), known).is_err(),
                    "byte {position} ^ {flip:#04x} was not detected"
                );
            }
        }
    }
}

#[test]
fn truncation_and_appended_bytes_are_detected() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    for len in 0..bundle.len() {
        let error = verify(&bundle[..len], &verifier(), None).unwrap_err();
        assert!(
            matches!(
                error,
                BundleError::Truncated { .. } | BundleError::Magic | BundleError::Framing { .. }
            ),
            "cut at {len}: {error}"
        );
    }
    for extra in [&[0u8][..], &[7, 0, 0, 0, 0], b"more"] {
        let mut longer = bundle.clone();
        longer.extend_from_slice(extra);
        let error = verify(longer.as_slice(), &verifier(), None).unwrap_err();
        assert_eq!(error.code(), "framing", "{error}");
    }
}

#[test]
fn another_key_is_refused_at_the_checkpoint() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    let other = Signer::new(ORIGIN, [7; 32]).unwrap().verifier();
    let error = verify(bundle.as_slice(), &other, None).unwrap_err();
    assert_eq!(error.code(), "checkpoint");
    assert!(
        error
            .to_string()
            .starts_with("checkpoint: not signed by the verifier key")
    );
}

#[test]
fn consistency_with_the_tree_the_recipient_holds() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    let report = verify(bundle.as_slice(), &verifier(), Some((5, log.root_at(5)))).unwrap();
    assert_eq!(
        report.consistency,
        ConsistencyCheck::Checked { old_size: 5 }
    );
    // The same size as the checkpoint needs no proof, only the same root.
    let same = verify(bundle.as_slice(), &verifier(), Some((9, log.tree.root()))).unwrap();
    assert_eq!(same.consistency, ConsistencyCheck::Checked { old_size: 9 });
    // A fork: another root at size 5.
    let error = verify(bundle.as_slice(), &verifier(), Some((5, log.root_at(4)))).unwrap_err();
    assert_eq!(error.code(), "consistency", "{error}");
    // A size the bundle holds no proof from.
    let error = verify(bundle.as_slice(), &verifier(), Some((6, log.root_at(6)))).unwrap_err();
    assert!(error.to_string().contains("not from the size 6"), "{error}");
    // A newer tree than the checkpoint.
    let error = verify(bundle.as_slice(), &verifier(), Some((10, log.tree.root()))).unwrap_err();
    assert!(
        error.to_string().contains("older than the tree you hold"),
        "{error}"
    );
    // No proof at all.
    let plain = write(
        &log,
        &Selection {
            consistency_from: None,
            ..small_selection()
        },
    );
    let error = verify(plain.as_slice(), &verifier(), Some((5, log.root_at(5)))).unwrap_err();
    assert!(
        error.to_string().contains("holds no consistency proof"),
        "{error}"
    );
}

/// Finds `needle` in `haystack` (the first time).
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn errors_name_the_entry_and_what_failed() {
    let log = small_log();
    let bundle = write(&log, &small_selection());
    // An event's envelope made invalid JSON: named by entry and byte.
    let mut broken = bundle.clone();
    let at = find(&broken, br#""actor":"u4""#);
    let envelope_start = broken[..at]
        .windows(8)
        .rposition(|w| w == b"{\"event\"")
        .unwrap();
    broken[envelope_start] = b'[';
    let error = verify(broken.as_slice(), &verifier(), None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("entry 4: envelope is not valid"),
        "{error}"
    );
    // A changed actor still parses: the multi-proof no longer gives the root.
    let mut changed = bundle.clone();
    changed[at + 10] = b'5';
    let error = verify(changed.as_slice(), &verifier(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "multi-proof: root does not match checkpoint 9"
    );
    // The manifest's signature is checked before its contents hash, so a
    // changed byte before it that the proofs do not cover shows as a
    // contents hash mismatch: the consistency proof's first hash.
    let mut consistency = bundle.clone();
    let consistency_record = 16 + 5 + log.checkpoint_note().len();
    assert_eq!(consistency[consistency_record], 2);
    let proof_at = consistency_record + 5 + 8 + 1;
    consistency[proof_at] ^= 1;
    let error = verify(consistency.as_slice(), &verifier(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "manifest: contents hash differs (bundle was changed after signing)"
    );
}

#[test]
fn the_writer_refuses_what_would_not_verify() {
    let log = small_log();
    let note = log.checkpoint_note();
    let mut writer = BundleWriter::new(Vec::new(), &log.tree, &note, None).unwrap();
    let e = &log.entries[4];
    writer.add_event(4, &e.salt, &e.canonical).unwrap();
    let error = writer.add_event(4, &e.salt, &e.canonical).unwrap_err();
    assert!(
        matches!(
            error,
            WriteError::Order {
                index: 4,
                previous: 4
            }
        ),
        "{error}"
    );
    let other = &log.entries[5];
    let error = writer
        .add_event(6, &other.salt, &other.canonical)
        .unwrap_err();
    assert!(
        matches!(error, WriteError::LeafMismatch { index: 6 }),
        "{error}"
    );
    let error = writer
        .add_purged(7, &log.entries[7].commitment(), 6)
        .unwrap_err();
    assert!(matches!(
        error,
        WriteError::MissingPurgeRecord {
            index: 7,
            record: 6
        }
    ));
    let error = writer.add_event(9, &e.salt, &e.canonical).unwrap_err();
    assert!(matches!(
        error,
        WriteError::OutsideTree { index: 9, size: 9 }
    ));
    // Refusals leave the bundle whole.
    let (bundle, summary) = writer.finish(&fields(), &signer()).unwrap();
    assert_eq!(summary.events, 1);
    verify(bundle.as_slice(), &verifier(), None).unwrap();
}

#[test]
fn a_purged_entry_its_record_does_not_cover_is_refused() {
    // The purge record covers 2..=3; the writer is asked to name 5.
    let log = small_log();
    let note = log.checkpoint_note();
    let mut writer = BundleWriter::new(Vec::new(), &log.tree, &note, None).unwrap();
    let record = &log.entries[6];
    writer
        .add_purge_record(6, &record.salt, &record.canonical)
        .unwrap();
    writer
        .add_purged(5, &log.entries[5].commitment(), 6)
        .unwrap();
    let (bundle, _) = writer.finish(&fields(), &signer()).unwrap();
    let error = verify(bundle.as_slice(), &verifier(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "entry 5: purged: purge record 6 (stream \"ops\" epoch 2026-01-01) does not cover it"
    );
}

#[test]
fn an_empty_selection_proves_the_checkpoint_only() {
    let log = small_log();
    let bundle = write(&log, &Selection::default());
    let report = verify(bundle.as_slice(), &verifier(), None).unwrap();
    assert_eq!(
        (report.events, report.purged, report.first_index),
        (0, 0, None)
    );
}
