//! The multi-proof against a naive model: for random tree sizes and random
//! sets of leaves (and the edges: one leaf, powers of two, the first and
//! last leaf, every leaf, none), the gap nodes are exactly the maximal
//! subtrees holding no selected leaf, each hash is the RFC 6962 hash of its
//! leaves, and folding leaves and gaps gives the tree's root. Whole
//! bundles over random selections verify.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use proptest::prelude::*;
use stele_bundle::multiproof::{Fold, gap_nodes, node_hash_from};
use stele_tlog::proof::reference::reference_root;
use stele_tlog::{Hash, MemoryTree, leaf_hash};

/// The maximal nodes of `[lo, hi)`'s subtree that hold no selected leaf,
/// left to right, straight from the RFC 6962 recursion.
fn naive_free_nodes(lo: u64, hi: u64, selected: &[bool], out: &mut Vec<(u64, u64)>) {
    if !(lo..hi).any(|i| selected[i as usize]) {
        out.push((lo, hi));
        return;
    }
    if hi - lo == 1 {
        return;
    }
    let k = (hi - lo - 1).next_power_of_two().max(1);
    let k = if k >= hi - lo { k / 2 } else { k };
    naive_free_nodes(lo, lo + k, selected, out);
    naive_free_nodes(lo + k, hi, selected, out);
}

/// Checks the multi-proof of `selected` in a tree of `selected.len()` leaves.
fn check(selected: &[bool]) {
    let size = selected.len() as u64;
    let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree = MemoryTree::from_leaves(&leaves).unwrap();
    let mut fold = Fold::new();
    let mut nodes = Vec::new();
    let push_gap = |fold: &mut Fold, to: u64, nodes: &mut Vec<(u64, u64)>| {
        for (lo, hi) in gap_nodes(size, fold.next(), to) {
            let hash = node_hash_from(&tree, lo, hi).unwrap();
            assert_eq!(hash, reference_root(&leaves[lo as usize..hi as usize]));
            assert!(fold.push(lo, hi, hash));
            nodes.push((lo, hi));
        }
    };
    for (i, _) in selected.iter().enumerate().filter(|(_, s)| **s) {
        let i = i as u64;
        push_gap(&mut fold, i, &mut nodes);
        assert!(fold.push(i, i + 1, leaves[i as usize]));
    }
    push_gap(&mut fold, size, &mut nodes);
    assert_eq!(fold.root(), tree.root(), "size {size}");
    let mut expected = Vec::new();
    if size > 0 {
        naive_free_nodes(0, size, selected, &mut expected);
    }
    assert_eq!(
        nodes, expected,
        "size {size}: not the maximal free subtrees"
    );
}

#[test]
fn edges() {
    for size in [1usize, 2, 3, 4, 7, 8, 9, 16, 255, 256, 257, 1024] {
        for leaves in [
            vec![0],
            vec![size - 1],
            vec![0, size - 1],
            (0..size).collect(),
            vec![],
        ] {
            let mut selected = vec![false; size];
            for leaf in leaves {
                selected[leaf] = true;
            }
            check(&selected);
        }
    }
}

#[test]
fn a_gap_has_at_most_two_nodes_per_level() {
    let size = u64::MAX;
    for (from, to) in [(1, size - 1), (0, size - 1), (1, size), (12345, 1 << 40)] {
        let nodes = gap_nodes(size, from, to);
        assert!(
            nodes.len() <= stele_bundle::MAX_GAP_HASHES,
            "{}",
            nodes.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_trees_and_subsets(size in 1usize..1500, density in 0u32..100, seed in any::<u64>()) {
        // A cheap deterministic generator: each leaf selected with the
        // density's chance.
        let mut state = seed | 1;
        let selected: Vec<bool> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 100) < u64::from(density)
            })
            .collect();
        check(&selected);
    }

    #[test]
    fn random_bundles_verify(size in 1u64..40, mask in any::<u64>(), purged in any::<u64>()) {
        use common::*;
        // Entries selected by `mask`; of those before the purge record
        // (the last entry), the ones in `purged` are purged entries.
        let record = size - 1;
        let selected: Vec<u64> = (0..record).filter(|i| mask >> i & 1 == 1).collect();
        let (purged_entries, events): (Vec<u64>, Vec<u64>) =
            selected.iter().partition(|i| purged >> *i & 1 == 1);
        let ranges: Vec<[u64; 2]> = purged_entries.iter().map(|i| [*i, *i]).collect();
        let entries = (0..size)
            .map(|n| if n == record { purge_event(n, &ranges) } else { event(n) })
            .collect();
        let log = TestLog::new(entries);
        let selection = Selection {
            events: events.clone(),
            purged: purged_entries.clone(),
            purge_record: (!purged_entries.is_empty()).then_some(record),
            consistency_from: None,
        };
        let bundle = write(&log, &selection);
        let report = stele_bundle::verify(bundle.as_slice(), &signer().verifier(), None).unwrap();
        prop_assert_eq!(report.events, events.len() as u64);
        prop_assert_eq!(report.purged, purged_entries.len() as u64);
    }
}
