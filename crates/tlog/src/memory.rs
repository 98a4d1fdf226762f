//! An in-memory Merkle tree that keeps every complete-subtree hash.
//!
//! [`MemoryTree`] is a simple [`HashReader`] for tests, tools and small logs:
//! it stores each level of complete subtrees in a vector (about two hashes per
//! leaf in total), so every proof can be generated without recomputation. It
//! is not a persistent store and does not bound its memory use.

use crate::hash::{CompactRange, Hash, HashError};
use crate::proof::HashReader;

/// A subtree was requested that the in-memory tree does not (yet) contain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no complete subtree at level {level}, index {index} in an in-memory tree of size {size}")]
pub struct MissingSubtree {
    /// The requested level.
    pub level: u8,
    /// The requested index within that level.
    pub index: u64,
    /// The tree size at the time of the request.
    pub size: u64,
}

/// All complete-subtree hashes of a tree, level by level.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    range: CompactRange,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Builds a tree from leaf hashes in order.
    pub fn from_leaves(leaves: &[Hash]) -> Result<MemoryTree, HashError> {
        let mut t = MemoryTree::new();
        for leaf in leaves {
            t.append(*leaf)?;
        }
        Ok(t)
    }

    /// Appends a leaf hash, recording every subtree it completes.
    pub fn append(&mut self, leaf: Hash) -> Result<(), HashError> {
        let levels = &mut self.levels;
        self.range.append_with(leaf, |level, _index, hash| {
            let l = usize::from(level);
            if levels.len() <= l {
                levels.resize_with(l + 1, Vec::new);
            }
            // Subtrees complete in index order, so pushing keeps `index` equal
            // to the position in the level's vector.
            if let Some(v) = levels.get_mut(l) {
                v.push(*hash);
            }
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The leaf hashes (level 0).
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map(Vec::as_slice).unwrap_or(&[])
    }
}

impl HashReader for MemoryTree {
    type Error = MissingSubtree;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
        let missing = || MissingSubtree {
            level,
            index,
            size: self.size(),
        };
        let i = usize::try_from(index).map_err(|_| missing())?;
        self.levels
            .get(usize::from(level))
            .and_then(|v| v.get(i))
            .copied()
            .ok_or_else(missing)
    }
}
