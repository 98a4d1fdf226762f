//! `stele-log`: the JSON side files of the data directory and the stored
//! form of events, read through the functions `open`, `verify` and the
//! readers use.

use std::path::Path;

use stele_event::{Envelope, canonical_from_stored};
use stele_log::governance::{encode_holds, parse_holds, read_policy_versions};
use stele_log::purge::Tombstone;
use stele_log::{Meta, kek_info_round_trip};
use stele_policy::PolicySource;

/// What a rotation would write back from an accepted `kek.info` is itself
/// accepted and written back unchanged (a fixed point).
pub fn kek_info(data: &[u8]) {
    let Ok(written) = kek_info_round_trip(data) else {
        return;
    };
    assert_eq!(kek_info_round_trip(&written).ok(), Some(written));
}

/// An accepted `meta.json` writes back to a file that reads the same.
pub fn meta_json(data: &[u8]) {
    let dir = crate::scratch::fresh_dir("meta");
    let path = dir.join("meta.json");
    std::fs::write(&path, data).expect("write scratch file");
    let Ok(meta) = Meta::read(&path) else {
        return;
    };
    let copy = dir.join("copy.json");
    meta.write(&copy).expect("an accepted meta writes");
    assert_eq!(Meta::read(&copy).expect("reads back"), meta);
}

/// Accepted holds write back to a `holds.json` that reads the same.
pub fn holds_json(data: &[u8]) {
    let path = Path::new("holds.json");
    let Ok(holds) = parse_holds(path, data) else {
        return;
    };
    let written = encode_holds(&holds).expect("accepted holds encode");
    assert_eq!(parse_holds(path, &written).expect("reads back"), holds);
    for hold in &holds {
        // What retention asks of every hold must not panic on any stored value.
        for day in [stele_event::time::Day::FIRST, stele_event::time::Day::LAST] {
            let _ = hold.covers("app", day);
        }
    }
}

/// An accepted purge record writes back to a file that reads the same.
pub fn tombstone(data: &[u8]) {
    let dir = crate::scratch::fresh_dir("purged");
    let path = dir.join("2024-01-01.purged");
    std::fs::write(&path, data).expect("write scratch file");
    let Ok(tombstone) = Tombstone::read(&path) else {
        return;
    };
    let _ = tombstone.event_attributes();
    let copy = dir.join("copy.purged");
    tombstone
        .write(&copy)
        .expect("an accepted purge record writes");
    assert_eq!(Tombstone::read(&copy).expect("reads back"), tombstone);
}

/// `policies/000001.json` read as `open` reads it: an accepted version
/// carries the hash of the policy it holds, and its stored source
/// round-trips through its byte form.
pub fn policy_version(data: &[u8]) {
    if let Ok(source) = PolicySource::from_bytes(data) {
        assert_eq!(
            PolicySource::from_bytes(&source.to_bytes()).ok(),
            Some(source)
        );
    }
    let root = crate::scratch::fresh_dir("policy-root");
    std::fs::create_dir(root.join("policies")).expect("policies directory");
    std::fs::write(root.join("policies/000001.json"), data).expect("write scratch file");
    let Ok(versions) = read_policy_versions(&root) else {
        return;
    };
    assert_eq!(versions.len(), 1);
    let version = &versions[0];
    assert_eq!(version.seq, 1);
    assert_eq!(version.hash, stele_tlog::hash::hex(&version.policy.hash()));
}

/// A stored record body (canonical or packed) that rebuilds to a
/// canonical envelope: the envelope writes the same canonical bytes, and
/// its own stored form rebuilds them too.
pub fn stored_event(data: &[u8]) {
    let mut scratch = Vec::new();
    let Ok(canonical) = canonical_from_stored(data, &mut scratch) else {
        return;
    };
    let Ok(envelope) = Envelope::from_canonical(canonical) else {
        return;
    };
    let (again, stored) = envelope.canonical_and_stored();
    assert_eq!(again, canonical);
    let mut scratch2 = Vec::new();
    let rebuilt = canonical_from_stored(&stored, &mut scratch2).expect("own stored form reads");
    assert_eq!(rebuilt, canonical);
    assert!(stored.len() <= canonical.len());
}
