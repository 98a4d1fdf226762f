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
    node_hash, tree_root, verify_consistency, verify_inclusion,
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

/// Distinct stand-ins for subtree hashes: at these sizes no tree can be
/// built, but a proof's hashes are opaque to the verifier, so a proof of
/// the right shape over arbitrary hashes must verify against the root that
/// the RFC 9162 tree shape gives them.
fn hashes(tag: &str, n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("{tag}-{i}").as_bytes()))
        .collect()
}

/// The root above `leaf` when every proof hash is a right sibling
/// (`leaf` is the leftmost leaf of the subtree they cover).
fn fold_left_edge(leaf: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(leaf, |r, p| node_hash(&r, p))
}

/// The root above `leaf` when every proof hash is a left sibling
/// (`leaf` is the rightmost node of a tree of size 2^k - 1).
fn fold_right_edge(leaf: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(leaf, |r, p| node_hash(p, &r))
}

/// Verification at sizes near 2^64, where an overflow or an off-by-one in
/// the index arithmetic would show: each call has exactly one right answer.
/// Valid proofs are built from the RFC 9162 tree shape (PATH and SUBPROOF
/// unrolled by hand for these sizes); every other call must fail with the
/// error naming what is wrong.
#[test]
fn extreme_sizes_give_exact_results() {
    use VerifyError::*;
    const MAX: u64 = u64::MAX;
    const HALF: u64 = 1 << 63;
    let leaf = leaf_hash(b"leaf");
    let zero = Hash::default();
    let zeros = vec![zero; 64];

    // Leaf 0 of 2^64 - 1: 64 right siblings (the top level splits at
    // 2^63, and the left part is a perfect tree of height 63).
    let path = hashes("first", 64);
    assert_eq!(path_len(0, MAX), 64);
    let root = fold_left_edge(leaf, &path);
    assert_eq!(verify_inclusion(&leaf, 0, MAX, &path, &root), Ok(()));
    assert_eq!(
        verify_inclusion(&leaf, 0, MAX, &path[..63], &root),
        Err(ProofTooShort { len: 63 })
    );
    let mut longer = path.clone();
    longer.push(leaf);
    assert_eq!(
        verify_inclusion(&leaf, 0, MAX, &longer, &root),
        Err(ProofTooLong { len: 65 })
    );
    assert_eq!(
        verify_inclusion(&flip(&leaf, 0), 0, MAX, &path, &root),
        Err(RootMismatch)
    );
    // The same hashes claimed for leaf 1: the lowest sibling would be on
    // the left, so another root.
    assert_eq!(
        verify_inclusion(&leaf, 1, MAX, &path, &root),
        Err(RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&zero, 0, MAX, &zeros, &zero),
        Err(RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&zero, 0, MAX, &[], &zero),
        Err(ProofTooShort { len: 0 })
    );

    // The last leaf of 2^64 - 1 (index 2^64 - 2) is alone on the right
    // edge: 63 left siblings, the smallest first.
    let path = hashes("last", 63);
    assert_eq!(path_len(MAX - 1, MAX), 63);
    let root = fold_right_edge(leaf, &path);
    assert_eq!(verify_inclusion(&leaf, MAX - 1, MAX, &path, &root), Ok(()));
    assert_eq!(
        verify_inclusion(&leaf, MAX - 1, MAX, &zeros, &root),
        Err(ProofTooLong { len: 64 })
    );
    assert_eq!(
        verify_inclusion(&leaf, MAX - 1, MAX, &path[..62], &root),
        Err(ProofTooShort { len: 62 })
    );
    assert_eq!(
        verify_inclusion(&zero, MAX - 1, MAX, &[], &zero),
        Err(ProofTooShort { len: 0 })
    );

    // Leaf 2^63: the first of the right part (2^63 - 1 leaves, so 63 right
    // siblings), then the left half's root as the last, left, sibling.
    let path = hashes("middle", 64);
    assert_eq!(path_len(HALF, MAX), 64);
    let root = node_hash(&path[63], &fold_left_edge(leaf, &path[..63]));
    assert_eq!(verify_inclusion(&leaf, HALF, MAX, &path, &root), Ok(()));
    assert_eq!(
        verify_inclusion(&leaf, HALF - 1, MAX, &path, &root),
        Err(RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&zero, HALF, MAX, &zeros, &zero),
        Err(RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&zero, HALF, MAX, &[], &zero),
        Err(ProofTooShort { len: 0 })
    );

    // No index is in range at its own size, even the largest.
    for proof in [&zeros[..], &[]] {
        assert_eq!(
            verify_inclusion(&zero, MAX, MAX, proof, &zero),
            Err(IndexOutOfRange {
                index: MAX,
                size: MAX
            })
        );
    }
    assert_eq!(
        verify_inclusion(&zero, 0, 0, &[], &zero),
        Err(IndexOutOfRange { index: 0, size: 0 })
    );
    // The largest possible tree has 2^64 - 1 leaves; 2^63 is a perfect
    // tree whose leaf 2^63 - 1 has 63 left siblings.
    let path = hashes("perfect", 63);
    let root = fold_right_edge(leaf, &path);
    assert_eq!(
        verify_inclusion(&leaf, HALF - 1, HALF, &path, &root),
        Ok(())
    );

    // Consistency 1 -> 2^64 - 1: the old root is leaf 0, and the proof its
    // 64 right siblings (SUBPROOF(1, D[n], true) never includes the old
    // root itself).
    let proof = hashes("c1", 64);
    let new_root = fold_left_edge(leaf, &proof);
    assert_eq!(verify_consistency(1, MAX, &proof, &leaf, &new_root), Ok(()));
    assert_eq!(
        verify_consistency(1, MAX, &proof[..63], &leaf, &new_root),
        Err(ProofTooShort { len: 63 })
    );
    assert_eq!(
        verify_consistency(1, MAX, &proof, &leaf, &leaf),
        Err(NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(1, MAX, &zeros, &zero, &zero),
        Err(NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(1, MAX, &[zero], &zero, &zero),
        Err(ProofTooShort { len: 1 })
    );

    // Consistency 2^64 - 2 -> 2^64 - 1: the old tree is perfect subtrees
    // of 2^63, 2^62, ..., 2 leaves; the new one adds one leaf beside the
    // last. SUBPROOF gives [the 2-leaf subtree X, the new leaf Y, then the
    // 62 larger subtrees L1 (4 leaves) .. L62 (2^63 leaves)].
    let x = leaf_hash(b"x");
    let y = leaf_hash(b"y");
    let left = hashes("l", 62);
    let mut proof = vec![x, y];
    proof.extend_from_slice(&left);
    let old_root = fold_right_edge(x, &left);
    let new_root = fold_right_edge(node_hash(&x, &y), &left);
    assert_eq!(
        verify_consistency(MAX - 1, MAX, &proof, &old_root, &new_root),
        Ok(())
    );
    assert_eq!(
        verify_consistency(MAX - 1, MAX, &proof, &new_root, &new_root),
        Err(OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(MAX - 1, MAX, &proof, &old_root, &old_root),
        Err(NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(MAX - 1, MAX, &zeros, &zero, &zero),
        Err(OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(MAX - 1, MAX, &[zero], &zero, &zero),
        Err(ProofTooShort { len: 1 })
    );

    // Consistency 2^63 -> 2^64 - 1: the old tree is the new one's left
    // half, so the proof is only the right half's root.
    let (old_root, right) = (leaf_hash(b"left half"), leaf_hash(b"right half"));
    let new_root = node_hash(&old_root, &right);
    assert_eq!(
        verify_consistency(HALF, MAX, &[right], &old_root, &new_root),
        Ok(())
    );
    assert_eq!(
        verify_consistency(HALF, MAX, &[right, right], &old_root, &new_root),
        Err(ProofTooLong { len: 2 })
    );
    assert_eq!(
        verify_consistency(HALF, MAX, &zeros, &zero, &zero),
        Err(ProofTooLong { len: 64 })
    );
    assert_eq!(
        verify_consistency(HALF, MAX, &[zero], &zero, &zero),
        Err(NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(HALF, MAX, &[], &zero, &zero),
        Err(EmptyProof)
    );

    // Equal sizes: only the empty proof between equal roots.
    assert_eq!(verify_consistency(MAX, MAX, &[], &leaf, &leaf), Ok(()));
    assert_eq!(
        verify_consistency(MAX, MAX, &[], &leaf, &zero),
        Err(EqualSizeRootsDiffer { size: MAX })
    );
    for proof in [&zeros[..], &[zero]] {
        assert_eq!(
            verify_consistency(MAX, MAX, proof, &zero, &zero),
            Err(ProofNotEmpty {
                size: MAX,
                len: proof.len()
            })
        );
    }
    // Impossible pairs of sizes.
    assert_eq!(
        verify_consistency(MAX, MAX - 1, &[], &zero, &zero),
        Err(SizesDecreasing {
            old: MAX,
            new: MAX - 1
        })
    );
    assert_eq!(
        verify_consistency(0, MAX, &zeros, &zero, &zero),
        Err(OldSizeZero)
    );
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
