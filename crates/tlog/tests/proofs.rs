//! Merkle roots and proofs checked against the naive RFC 6962 / RFC 9162
//! reference definitions: exhaustively for small trees, by sampling and by
//! property tests for larger ones, plus rejection of tampered proofs.

// Test helpers outside #[test] functions may unwrap and panic: a failure
// there is a test failure, which is exactly what a panic reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use proptest::prelude::*;
use stele_tlog::proof::reference::{reference_consistency, reference_inclusion, reference_root};
use stele_tlog::{
    CompactRange, Hash, MemoryTree, VerifyError, consistency_proof, inclusion_proof, leaf_hash,
    tree_root, verify_consistency, verify_inclusion,
};

const BIG: usize = 100_000;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Shared leaves and in-memory tree for the property tests, built once.
fn big() -> &'static (Vec<Hash>, MemoryTree) {
    static BIG_TREE: OnceLock<(Vec<Hash>, MemoryTree)> = OnceLock::new();
    BIG_TREE.get_or_init(|| {
        let l = leaves(BIG);
        let t = MemoryTree::from_leaves(&l).unwrap();
        (l, t)
    })
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash(b)
}

/// Length of PATH(index, D[size]) by the RFC 9162 recursion, without hashing.
fn path_len(index: u64, size: u64) -> usize {
    if size <= 1 {
        return 0;
    }
    // The largest power of two strictly below `size`.
    let k = 1u64 << (63 - (size - 1).leading_zeros());
    if index < k {
        1 + path_len(index, k)
    } else {
        1 + path_len(index - k, size - k)
    }
}

/// Every way we tamper with an inclusion proof must be rejected.
fn assert_inclusion_tamper_rejected(
    l: &[Hash],
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) {
    let leaf = &l[index as usize];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i] = flip(&p[i], i * 37 + 5);
        assert!(verify_inclusion(leaf, index, size, &p, root).is_err());
    }
    if !proof.is_empty() {
        assert!(verify_inclusion(leaf, index, size, &proof[1..], root).is_err());
        assert!(verify_inclusion(leaf, index, size, &proof[..proof.len() - 1], root).is_err());
    }
    let mut longer = proof.to_vec();
    longer.push(*root);
    assert!(verify_inclusion(leaf, index, size, &longer, root).is_err());
    let mut prefixed = vec![Hash::default()];
    prefixed.extend_from_slice(proof);
    assert!(verify_inclusion(leaf, index, size, &prefixed, root).is_err());
    assert!(verify_inclusion(&flip(leaf, 3), index, size, proof, root).is_err());
    assert!(verify_inclusion(leaf, index, size, proof, &flip(root, 9)).is_err());
    for wrong in [index ^ 1, index + 1, index.wrapping_sub(1), size] {
        if wrong != index && wrong <= size {
            assert!(verify_inclusion(leaf, wrong, size, proof, root).is_err());
        }
    }
    // A different size can share the proof's shape (e.g. leaf 0 of 3 and of
    // 4 fold identically); the root is what binds the size. Sizes whose
    // proofs have another length must be rejected.
    for wrong in [size + 1, size - 1, size * 2, size / 2] {
        if wrong > index && wrong != size && path_len(index, wrong) != proof.len() {
            assert!(verify_inclusion(leaf, index, wrong, proof, root).is_err());
        }
    }
}

fn assert_consistency_tamper_rejected(old: u64, new: u64, proof: &[Hash], r1: &Hash, r2: &Hash) {
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i] = flip(&p[i], i * 11 + 1);
        assert!(
            verify_consistency(old, new, &p, r1, r2).is_err(),
            "flip {i} {old}->{new}"
        );
    }
    if !proof.is_empty() {
        assert!(verify_consistency(old, new, &proof[1..], r1, r2).is_err());
        assert!(verify_consistency(old, new, &proof[..proof.len() - 1], r1, r2).is_err());
    }
    let mut longer = proof.to_vec();
    longer.push(*r2);
    assert!(verify_consistency(old, new, &longer, r1, r2).is_err());
    assert!(verify_consistency(old, new, proof, &flip(r1, 1), r2).is_err());
    assert!(verify_consistency(old, new, proof, r1, &flip(r2, 2)).is_err());
    if old != new {
        assert!(verify_consistency(old, new, proof, r2, r1).is_err());
    }
    assert!(verify_consistency(new, old.saturating_sub(1), proof, r1, r2).is_err());
    assert!(verify_consistency(0, new, proof, r1, r2).is_err());
}

#[test]
fn exhaustive_small_trees() {
    let l = leaves(300);
    let tree = MemoryTree::from_leaves(&l).unwrap();
    let mut range = CompactRange::new();
    let mut refs = vec![reference_root(&[])];
    for size in 1..=300u64 {
        range.append(l[size as usize - 1]).unwrap();
        let want = reference_root(&l[..size as usize]);
        refs.push(want);
        assert_eq!(range.root(), want, "compact range root at size {size}");
        assert_eq!(
            tree_root(&tree, size).unwrap(),
            want,
            "tree_root at size {size}"
        );
        // A range rebuilt from its parts continues identically.
        let copy = CompactRange::from_parts(range.size(), range.hashes().to_vec()).unwrap();
        assert_eq!(copy, range);
        for index in 0..size {
            let proof = inclusion_proof(&tree, index, size).unwrap();
            verify_inclusion(&l[index as usize], index, size, &proof, &want)
                .unwrap_or_else(|e| panic!("inclusion {index}/{size}: {e}"));
            // Compare with the naive PATH for all indexes of small trees and
            // a spread of indexes (both ends, middle, strides) beyond.
            let sampled = size <= 64
                || index < 3
                || index + 3 >= size
                || index % 37 == 0
                || index == size / 2;
            if sampled {
                assert_eq!(
                    proof,
                    reference_inclusion(index as usize, &l[..size as usize])
                );
                if index % 5 == 0 || size <= 16 {
                    assert_inclusion_tamper_rejected(&l, index, size, &proof, &want);
                }
            }
        }
        assert!(inclusion_proof(&tree, size, size).is_err());
        assert!(matches!(
            verify_inclusion(&l[0], size, size, &[], &want),
            Err(VerifyError::IndexOutOfRange { .. })
        ));
    }
    assert_eq!(tree_root(&tree, 0).unwrap(), stele_tlog::empty_root());

    // Consistency: every pair up to 70, sampled pairs up to 300.
    let mut pairs = Vec::new();
    for new in 1..=70u64 {
        for old in 1..=new {
            pairs.push((old, new));
        }
    }
    for new in (71..=300u64).step_by(7) {
        for old in [1, 2, 3, new / 3, new / 2, new - 64, new - 2, new - 1, new] {
            pairs.push((old, new));
        }
        pairs.push((new - 1, 300));
    }
    for (old, new) in pairs {
        let proof = consistency_proof(&tree, old, new).unwrap();
        let (r1, r2) = (&refs[old as usize], &refs[new as usize]);
        verify_consistency(old, new, &proof, r1, r2)
            .unwrap_or_else(|e| panic!("consistency {old}->{new}: {e}"));
        if old < new {
            assert_eq!(
                proof,
                reference_consistency(old as usize, &l[..new as usize])
            );
        } else {
            assert!(proof.is_empty());
        }
        if new <= 40 || old % 3 == 0 {
            assert_consistency_tamper_rejected(old, new, &proof, r1, r2);
        }
    }
    assert!(consistency_proof(&tree, 5, 4).is_err());
    assert!(consistency_proof(&tree, 0, 4).is_err());
}

/// A reader that fails on purpose: errors must propagate, not panic.
struct Broken;
impl stele_tlog::HashReader for Broken {
    type Error = &'static str;
    fn subtree_hash(&self, _: u8, _: u64) -> Result<Hash, &'static str> {
        Err("broken")
    }
}

#[test]
fn reader_errors_propagate() {
    assert!(matches!(
        tree_root(&Broken, 5),
        Err(stele_tlog::ProofError::Reader("broken"))
    ));
    assert!(inclusion_proof(&Broken, 1, 5).is_err());
    assert!(consistency_proof(&Broken, 2, 5).is_err());
    // A tree too small for the request reports the missing subtree.
    let tree = MemoryTree::from_leaves(&leaves(3)).unwrap();
    assert!(tree_root(&tree, 4).is_err());
}

#[test]
fn extreme_sizes_do_not_panic() {
    let h = Hash::default();
    let proof = vec![h; 64];
    for (index, size) in [
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (u64::MAX, u64::MAX),
        (1 << 63, u64::MAX),
    ] {
        let _ = verify_inclusion(&h, index, size, &proof, &h);
        let _ = verify_inclusion(&h, index, size, &[], &h);
    }
    for (old, new) in [
        (1, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        let _ = verify_consistency(old, new, &proof, &h, &h);
        let _ = verify_consistency(old, new, &[h], &h, &h);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn large_trees_match_reference(size in 1..=BIG as u64, a in any::<u64>(), b in any::<u64>()) {
        let (l, tree) = big();
        let leaves = &l[..size as usize];
        let root = reference_root(leaves);
        prop_assert_eq!(tree_root(tree, size).unwrap(), root);

        let index = a % size;
        let proof = inclusion_proof(tree, index, size).unwrap();
        prop_assert_eq!(&proof, &reference_inclusion(index as usize, leaves));
        prop_assert!(verify_inclusion(&l[index as usize], index, size, &proof, &root).is_ok());
        assert_inclusion_tamper_rejected(l, index, size, &proof, &root);

        let old = 1 + b % size;
        let old_root = tree_root(tree, old).unwrap();
        let cproof = consistency_proof(tree, old, size).unwrap();
        if old < size {
            prop_assert_eq!(&cproof, &reference_consistency(old as usize, leaves));
        }
        prop_assert!(verify_consistency(old, size, &cproof, &old_root, &root).is_ok());
        assert_consistency_tamper_rejected(old, size, &cproof, &old_root, &root);
    }

    #[test]
    fn compact_range_matches_memory_tree(size in 1..=BIG as u64, split in any::<u64>()) {
        let (l, tree) = big();
        // Resume a range from parts taken mid-way, as a log restarting would.
        let cut = split % (size + 1);
        let mut first = CompactRange::new();
        for h in &l[..cut as usize] {
            first.append(*h).unwrap();
        }
        let mut range = CompactRange::from_parts(first.size(), first.hashes().to_vec()).unwrap();
        for h in &l[cut as usize..size as usize] {
            range.append(*h).unwrap();
        }
        prop_assert_eq!(range.root(), tree_root(tree, size).unwrap());
    }
}
