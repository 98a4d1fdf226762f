//! The commitment to one event, the value the Merkle log stores as a leaf
//! input: SHA-256 over a domain tag, a per-event salt and the canonical
//! envelope bytes. The salt (chosen by the caller, kept with the encrypted
//! event) makes the commitment reveal nothing about a low-entropy event on
//! its own; the domain tag keeps these hashes apart from any other SHA-256
//! use in the system. This module does not generate salts and does not hash
//! Merkle tree nodes.

use sha2::{Digest, Sha256};

/// Domain separation prefix of [`commitment`], newline included.
pub const COMMITMENT_DOMAIN: &[u8] = b"stele/event/v1\n";

/// `SHA-256(COMMITMENT_DOMAIN ‖ salt ‖ canonical)`, where `canonical` is the
/// canonical envelope ([`crate::Envelope::canonical_bytes`]). The salt has a
/// fixed length, so the concatenation is unambiguous.
pub fn commitment(salt: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(COMMITMENT_DOMAIN);
    hasher.update(salt);
    hasher.update(canonical);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_one_shot_hash_of_the_concatenation() {
        let salt = [7u8; 32];
        let mut all = COMMITMENT_DOMAIN.to_vec();
        all.extend_from_slice(&salt);
        all.extend_from_slice(b"{}");
        let expected: [u8; 32] = Sha256::digest(&all).into();
        assert_eq!(commitment(&salt, b"{}"), expected);
        assert_ne!(commitment(&[8u8; 32], b"{}"), expected);
    }
}
