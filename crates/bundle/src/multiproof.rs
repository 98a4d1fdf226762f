//! The compact multi-proof: the fewest subtree hashes that, with the leaf
//! hashes of a sorted set of leaves, rebuild the RFC 6962 root of a tree.
//!
//! The leaves split `[0, size)` into *gaps*: the runs of leaves between
//! consecutive selected ones, before the first and after the last. The
//! proof is, for each gap, the hashes of the nodes of the RFC 6962 tree that
//! lie wholly inside the gap and whose parent does not ([`gap_nodes`], left
//! to right). Every node holding no selected leaf is inside one of them, so
//! no hash is sent twice or can be left out. A gap is walked from the root
//! down, visiting at most two nodes per level, so both sides handle each
//! leaf with O(log size) work and memory, in index order.
//!
//! [`Fold`] rebuilds the root from leaves and gap nodes pushed left to
//! right, keeping one hash per level like a compact range. The ranges of
//! the gap nodes come from the leaf indices and the tree size alone, never
//! from the bundle, so a proof can only supply hashes, not shape.

use stele_tlog::{Hash, HashReader, node_hash};

/// The largest power of two strictly below `n` (RFC 6962's split); `n ≥ 2`.
fn split_point(n: u64) -> u64 {
    let m = n.saturating_sub(1).max(1);
    1u64 << (63 - m.leading_zeros())
}

/// The nodes `[lo, hi)` of the tree of `size` leaves that lie wholly in
/// `[from, to)` and whose parent does not, left to right (none when the
/// gap is empty). At most two per level: at most [`crate::MAX_GAP_HASHES`].
pub fn gap_nodes(size: u64, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut nodes = Vec::new();
    if from < to && to <= size {
        walk(0, size, from, to, &mut nodes);
    }
    nodes
}

/// Emits the maximal nodes of `[lo, hi)`'s subtree inside `[from, to)`.
/// Recursion depth is at most 64: each step halves the node at least.
fn walk(lo: u64, hi: u64, from: u64, to: u64, nodes: &mut Vec<(u64, u64)>) {
    if hi <= from || lo >= to {
        return;
    }
    if from <= lo && hi <= to {
        nodes.push((lo, hi));
        return;
    }
    // Partly inside: the node holds at least two leaves, so it splits.
    let k = split_point(hi - lo);
    walk(lo, lo + k, from, to, nodes);
    walk(lo + k, hi, from, to, nodes);
}

/// The hash of node `[lo, hi)` of the tree read by `reader`: one complete
/// subtree, or on the right edge the fold of the complete subtrees given by
/// the binary digits of its width (largest first, as RFC 6962 splits it).
pub fn node_hash_from<R: HashReader>(reader: &R, lo: u64, hi: u64) -> Result<Hash, R::Error> {
    let mut parts: Vec<Hash> = Vec::new();
    let mut start = lo;
    let mut remaining = hi.saturating_sub(lo);
    while remaining > 0 {
        let level = 63 - remaining.leading_zeros();
        parts.push(reader.subtree_hash(level as u8, start >> level)?);
        start += 1u64 << level;
        remaining -= 1u64 << level;
    }
    let mut folded = parts.into_iter().rev();
    let Some(last) = folded.next() else {
        return Ok(stele_tlog::empty_root());
    };
    Ok(folded.fold(last, |acc, left| node_hash(&left, &acc)))
}

/// Rebuilds a root from nodes pushed left to right; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// `(lo, hi, hash)` of nodes not yet merged; widths decrease to the right.
    stack: Vec<(u64, u64, Hash)>,
    /// Where the next node must begin.
    next: u64,
}

impl Fold {
    /// An empty fold, at leaf 0.
    pub fn new() -> Fold {
        Fold::default()
    }

    /// Where the next node must begin: everything before it was pushed.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Pushes node `[lo, hi)`, which must begin where the last one ended,
    /// and merges every pair of equal complete siblings it completes.
    /// Returns false (changing nothing) when `lo` is not [`Fold::next`].
    pub fn push(&mut self, lo: u64, hi: u64, hash: Hash) -> bool {
        if lo != self.next || hi <= lo {
            return false;
        }
        self.next = hi;
        let mut current = (lo, hi, hash);
        while let Some(&(left_lo, left_hi, left_hash)) = self.stack.last() {
            let width = left_hi - left_lo;
            let siblings = current.1 - current.0 == width
                && width.is_power_of_two()
                && left_lo % (width * 2) == 0;
            if !siblings {
                break;
            }
            self.stack.pop();
            current = (left_lo, current.1, node_hash(&left_hash, &current.2));
        }
        self.stack.push(current);
        true
    }

    /// The root of everything pushed: the remaining nodes folded from the
    /// right, as RFC 6962 joins the right edge ([`stele_tlog::empty_root`]
    /// when nothing was pushed).
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, _, last)) = nodes.next() else {
            return stele_tlog::empty_root();
        };
        nodes.fold(last, |acc, (_, _, left)| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_of_a_tree_of_seven() {
        // One leaf: its inclusion proof, left to right.
        assert_eq!(gap_nodes(7, 1, 7), vec![(1, 2), (2, 4), (4, 7)]);
        assert_eq!(gap_nodes(7, 0, 6), vec![(0, 4), (4, 6)]);
        assert_eq!(gap_nodes(7, 0, 7), vec![(0, 7)]);
        assert_eq!(gap_nodes(7, 3, 3), vec![]);
        assert_eq!(gap_nodes(8, 3, 5), vec![(3, 4), (4, 5)]);
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
    }
}
