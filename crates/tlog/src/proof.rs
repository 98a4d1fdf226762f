//! Merkle inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4).
//!
//! Proof generation works over any [`HashReader`], a source of the hashes of
//! complete, aligned subtrees; every other node the RFC algorithms need (the
//! ragged right edge of the tree) is recomputed from those. Verification is
//! pure arithmetic on the proof and needs no reader. This module does not
//! store hashes, fetch tiles or parse any text encoding of proofs.

use crate::hash::{Hash, empty_root, node_hash};

/// Source of complete-subtree hashes.
///
/// `subtree_hash(level, index)` returns the Merkle tree hash of the 2^level
/// leaves `[index << level, (index + 1) << level)`. Callers only ask for
/// subtrees that lie entirely within the tree they are working on.
pub trait HashReader {
    /// The reader's own failure type (I/O, missing data, corrupted data).
    type Error;

    /// Returns the root of the complete subtree of 2^level leaves at `index`.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).subtree_hash(level, index)
    }
}

/// Errors from generating proofs or roots from a [`HashReader`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The hash reader failed.
    #[error("hash reader failed: {0}")]
    Reader(E),
    /// An inclusion proof was requested for a leaf outside the tree.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was requested from a larger tree to a smaller one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesDecreasing {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// A consistency proof was requested from the empty tree, which proves nothing.
    #[error("no consistency proof exists from the empty tree (old size 0)")]
    OldSizeZero,
}

/// Reasons a proof fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not below the tree size (this includes every index for size 0).
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The proof has more hashes than the tree shape allows.
    #[error("proof has too many hashes ({len}) for this index and tree size")]
    ProofTooLong {
        /// The number of hashes supplied.
        len: usize,
    },
    /// The proof ran out of hashes before reaching the root.
    #[error("proof has too few hashes ({len}) for this index and tree size")]
    ProofTooShort {
        /// The number of hashes supplied.
        len: usize,
    },
    /// The hash recomputed from the proof does not equal the expected root.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// The new tree is smaller than the old one, so no proof can relate them.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesDecreasing {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
    /// A consistency proof between equal sizes must be empty.
    #[error("consistency proof between equal sizes {size} must be empty, got {len} hashes")]
    ProofNotEmpty {
        /// The common tree size.
        size: u64,
        /// The number of hashes supplied.
        len: usize,
    },
    /// Consistency with the empty tree proves nothing and is always rejected;
    /// a verifier with no previous checkpoint should just trust the new one.
    #[error("consistency from the empty tree (old size 0) cannot be verified")]
    OldSizeZero,
    /// A consistency proof between different non-zero sizes cannot be empty.
    #[error("consistency proof is empty")]
    EmptyProof,
    /// Two trees of equal size were given different roots.
    #[error("trees of equal size {size} have different roots")]
    EqualSizeRootsDiffer {
        /// The common tree size.
        size: u64,
    },
    /// The old root recomputed from a consistency proof does not match.
    #[error("consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// The new root recomputed from a consistency proof does not match.
    #[error("consistency proof does not reproduce the new root")]
    NewRootMismatch,
}

/// The largest power of two strictly less than `n` (the RFC 6962 split point); `n` must be ≥ 2.
fn split_point(n: u64) -> u64 {
    // For n >= 2, (n - 1) has its top bit at the position of the largest power
    // of two below n. Saturating keeps this total for n < 2, which callers
    // never pass.
    let m = n.saturating_sub(1);
    if m == 0 {
        return 0;
    }
    1u64 << (63 - m.leading_zeros())
}

/// The Merkle tree hash `MTH(D[lo:hi])` of a node of some RFC 6962 tree.
///
/// The range is either a complete aligned subtree or a right-edge node whose
/// start is aligned to a power of two at least as large as its length; both
/// decompose into aligned complete subtrees given by the binary digits of
/// `hi - lo`, which are then folded from the right.
fn range_hash<R: HashReader>(r: &R, lo: u64, hi: u64) -> Result<Hash, ProofError<R::Error>> {
    let mut parts: Vec<Hash> = Vec::new();
    let mut start = lo;
    let mut remaining = hi.saturating_sub(lo);
    while remaining > 0 {
        let level = 63 - remaining.leading_zeros();
        let h = r
            .subtree_hash(level as u8, start >> level)
            .map_err(ProofError::Reader)?;
        parts.push(h);
        let width = 1u64 << level;
        start += width;
        remaining -= width;
    }
    let mut iter = parts.into_iter().rev();
    let Some(last) = iter.next() else {
        return Ok(empty_root());
    };
    Ok(iter.fold(last, |acc, left| node_hash(&left, &acc)))
}

/// The root of the tree of the first `size` leaves (the empty root for 0).
pub fn tree_root<R: HashReader>(r: &R, size: u64) -> Result<Hash, ProofError<R::Error>> {
    range_hash(r, 0, size)
}

/// Generates the inclusion proof (RFC 9162 §2.1.3.1 PATH) for leaf `index` in a tree of `size`.
///
/// The hashes are ordered from the leaf's sibling up to the child of the root.
pub fn inclusion_proof<R: HashReader>(
    r: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk from the root down to the leaf, recording the sibling at each step;
    // PATH lists them bottom-up, so the list is reversed at the end.
    let mut proof = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(r, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(r, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Generates the consistency proof (RFC 9162 §2.1.4.1 PROOF) from tree size `old` to `new`.
///
/// For `old == new` the proof is empty. `old == 0` is an error, because
/// [`verify_consistency`] rejects every proof from the empty tree.
pub fn consistency_proof<R: HashReader>(
    r: &R,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if old > new {
        return Err(ProofError::SizesDecreasing { old, new });
    }
    if old == 0 {
        return Err(ProofError::OldSizeZero);
    }
    if old == new {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b) descends one side per step and appends the
    // sibling subtree after the recursive part, so siblings are gathered
    // top-down and emitted reversed after the base-case hash.
    let mut siblings = Vec::new();
    let (mut lo, mut hi) = (0u64, new);
    let mut complete = true;
    let mut proof = Vec::new();
    loop {
        let n = hi - lo;
        let m = old - lo;
        if m == n {
            if !complete {
                proof.push(range_hash(r, lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            siblings.push(range_hash(r, lo + k, hi)?);
            hi = lo + k;
        } else {
            siblings.push(range_hash(r, lo, lo + k)?);
            lo += k;
            complete = false;
        }
    }
    siblings.reverse();
    proof.extend(siblings);
    Ok(proof)
}

/// Verifies an inclusion proof per RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(VerifyError::ProofTooLong { len: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            // On the right edge of a ragged tree the node has no right
            // sibling at the lower levels, so skip up to where it is a right child.
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(VerifyError::ProofTooShort { len: proof.len() });
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof per RFC 9162 §2.1.4.2.
///
/// Beyond the RFC's `0 < old < new` case: equal non-zero sizes require an
/// empty proof and equal roots, and `old == 0` is always rejected, as the
/// transparency-dev vectors expect (a consistency check from the empty tree
/// is meaningless, so accepting one could only hide a caller's mistake).
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    if old > new {
        return Err(VerifyError::SizesDecreasing { old, new });
    }
    if old == 0 {
        return Err(VerifyError::OldSizeZero);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(VerifyError::ProofNotEmpty {
                size: old,
                len: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(VerifyError::EqualSizeRootsDiffer { size: old });
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(VerifyError::EmptyProof);
    };
    // When the old size is a power of two its root is a node of the new tree
    // and the proof omits it, so it is the implicit first element.
    let (seed, path) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let mut f_n = old - 1;
    let mut s_n = new - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in path {
        if s_n == 0 {
            return Err(VerifyError::ProofTooLong { len: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(VerifyError::ProofTooShort { len: proof.len() });
    }
    if fr != *old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(VerifyError::NewRootMismatch);
    }
    Ok(())
}

/// Naive reference implementations of RFC 6962 / RFC 9162, written straight
/// from the recursive definitions for use as test oracles.
///
/// They take the full list of leaf hashes and recompute everything, so they
/// are quadratic-ish and must not be used on large trees outside tests.
pub mod reference {
    use super::split_point;
    use crate::hash::{Hash, empty_root, node_hash};

    /// `MTH(D[n])` by the RFC 6962 §2.1 recursion.
    pub fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    /// `PATH(m, D[n])` by the RFC 9162 §2.1.3.1 recursion; `m` must be < n.
    pub fn reference_inclusion(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut p = reference_inclusion(m, &leaves[..k]);
            p.push(reference_root(&leaves[k..]));
            p
        } else {
            let mut p = reference_inclusion(m - k, &leaves[k..]);
            p.push(reference_root(&leaves[..k]));
            p
        }
    }

    /// `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)` by RFC 9162 §2.1.4.1; needs 0 < m < n.
    pub fn reference_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        subproof(m, leaves, true)
    }

    fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![reference_root(leaves)]
            };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], b);
            p.push(reference_root(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(reference_root(&leaves[..k]));
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }
}
