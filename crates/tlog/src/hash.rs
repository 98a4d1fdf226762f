//! The RFC 6962 Merkle tree hashing primitives and a streaming root builder.
//!
//! This module defines the 32-byte [`Hash`](struct@Hash) type, the domain-separated leaf and
//! interior-node hash functions of RFC 6962 / RFC 9162 §2.1.1, the root of the
//! empty tree, and [`CompactRange`], which folds an append-only sequence of leaf
//! hashes into the tree root using O(log n) memory. It is not a store: it never
//! keeps more than the hashes of the complete subtrees along the right edge of
//! the tree, and it knows nothing about proofs, tiles or signatures.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Length in bytes of a SHA-256 hash, the only hash function the log uses.
pub const HASH_SIZE: usize = 32;

/// Errors from decoding hashes and from building compact ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The text was not canonical standard base64 (RFC 4648 §4, padded).
    #[error("hash is not valid standard base64: {0}")]
    InvalidBase64(String),
    /// The decoded bytes were not exactly 32 bytes long.
    #[error("hash decodes to {got} bytes, expected 32")]
    WrongLength {
        /// Number of bytes actually decoded.
        got: usize,
    },
    /// [`CompactRange::from_parts`] was given the wrong number of hashes for the size.
    #[error("compact range of size {size} needs {expected} subtree hashes, got {got}")]
    WrongHashCount {
        /// The declared tree size.
        size: u64,
        /// The number of complete subtrees a tree of that size has (its popcount).
        expected: usize,
        /// The number of hashes supplied.
        got: usize,
    },
    /// The range already holds `u64::MAX` leaves, so its size cannot grow.
    #[error("compact range is full: it already holds u64::MAX leaves")]
    RangeFull,
}

/// A SHA-256 Merkle tree hash (a leaf hash, an interior node hash or a root).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// Encodes the hash as padded standard base64, the form used in checkpoints and proofs.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Decodes a hash from padded standard base64, requiring exactly 32 bytes.
    ///
    /// The base64 engine rejects non-canonical encodings (bad padding or
    /// non-zero trailing bits), so each hash has exactly one accepted text form.
    pub fn from_base64(text: &str) -> Result<Hash, HashError> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| HashError::InvalidBase64(e.to_string()))?;
        Hash::from_slice(&bytes)
    }

    /// Builds a hash from a byte slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Hash, HashError> {
        let arr: [u8; HASH_SIZE] = bytes
            .try_into()
            .map_err(|_| HashError::WrongLength { got: bytes.len() })?;
        Ok(Hash(arr))
    }

    /// Lower-case hexadecimal form, for logs and diagnostics.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<[u8; HASH_SIZE]> for Hash {
    fn from(bytes: [u8; HASH_SIZE]) -> Hash {
        Hash(bytes)
    }
}

/// SHA-256 over the concatenation of `parts`, as a [`Hash`].
fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize().into())
}

/// The RFC 6962 leaf hash: SHA-256(0x00 || data).
///
/// The 0x00 prefix separates leaves from interior nodes so that no leaf can be
/// passed off as a node (second-preimage protection).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// The RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty tree: SHA-256 of the empty string, as RFC 6962 defines MTH({}).
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// Streaming builder of the RFC 6962 root over appended leaf hashes.
///
/// The state is the list of roots of the maximal complete subtrees that make up
/// the tree so far, left to right, one per set bit of the size (the largest
/// first). Appending a leaf merges equal-sized subtrees like a binary counter's
/// carry, so memory is O(log n) and each append costs amortised O(1) hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// An empty range (tree size 0).
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Rebuilds a range from its size and its complete-subtree hashes, left to right.
    ///
    /// The number of hashes must equal the number of set bits in `size`;
    /// anything else cannot describe a tree of that size.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<CompactRange, HashError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(HashError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(CompactRange { size, hashes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete-subtree hashes, left (largest) to right (smallest).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash.
    ///
    /// This fails only when the range already holds `u64::MAX` leaves, which
    /// cannot be reached by appending but can be constructed with
    /// [`CompactRange::from_parts`].
    pub fn append(&mut self, leaf: Hash) -> Result<(), HashError> {
        self.append_with(leaf, |_, _, _| {})
    }

    /// Appends one leaf hash and reports every complete subtree it completes.
    ///
    /// `on_node(level, index, hash)` is called first for the leaf itself
    /// (level 0, index = the leaf's index) and then once for each subtree of
    /// 2^level leaves starting at leaf `index << level` that this leaf
    /// completes, from the bottom up. A store can persist exactly the levels it
    /// needs (for example every eighth level for tiles) from these callbacks.
    pub fn append_with(
        &mut self,
        leaf: Hash,
        mut on_node: impl FnMut(u8, u64, &Hash),
    ) -> Result<(), HashError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(HashError::RangeFull)?;
        on_node(0, index, &leaf);
        let mut current = leaf;
        // Each trailing one bit of the old size is a complete subtree of the
        // same height as `current` waiting on the stack to be merged with it.
        let merges = index.trailing_ones();
        let mut level: u8 = 0;
        for _ in 0..merges {
            // The stack holds one hash per set bit, so a trailing one bit
            // guarantees an entry to pop; treat absence as a broken invariant
            // without panicking by simply stopping the merge.
            let Some(left) = self.hashes.pop() else {
                break;
            };
            current = node_hash(&left, &current);
            level += 1;
            on_node(level, index >> level, &current);
        }
        self.hashes.push(current);
        self.size = new_size;
        Ok(())
    }

    /// The RFC 6962 root of the leaves appended so far ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        // The rightmost (smallest) subtree is folded into its left neighbours,
        // which is exactly how MTH splits at the largest power of two.
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Lower-case hexadecimal form of any bytes (two digits per byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn base64_round_trip_and_rejections() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
        assert!(matches!(
            Hash::from_base64("ZG9uJ3QgY2FyZSAx"),
            Err(HashError::WrongLength { got: 12 })
        ));
        assert!(Hash::from_base64("not base64!").is_err());
        // Unpadded form of a valid hash is not canonical.
        let unpadded = h.to_base64().trim_end_matches('=').to_string();
        assert!(Hash::from_base64(&unpadded).is_err());
    }

    #[test]
    fn from_parts_checks_count() {
        assert!(CompactRange::from_parts(3, vec![Hash::default()]).is_err());
        assert!(CompactRange::from_parts(3, vec![Hash::default(); 2]).is_ok());
        let mut full = CompactRange::from_parts(u64::MAX, vec![Hash::default(); 64]).unwrap();
        assert_eq!(full.append(Hash::default()), Err(HashError::RangeFull));
    }

    #[test]
    fn append_with_reports_nodes() {
        let mut r = CompactRange::new();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            r.append_with(leaf_hash(&[i]), |l, i, _| seen.push((l, i)))
                .unwrap();
        }
        assert_eq!(
            seen,
            vec![(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
        );
    }
}
