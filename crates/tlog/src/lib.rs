//! Stele's transparency-log core: RFC 6962 Merkle hashing, proofs, C2SP
//! tiles, checkpoints, signed notes and tlog-proofs.
//!
//! This crate is pure: it performs no I/O, reads no clocks and uses no
//! randomness. Storage, networking and key management live elsewhere and
//! plug in through the [`HashReader`] and [`TileReader`] traits and through
//! plain byte and string values. Every function returns a typed error
//! instead of panicking on bad input.

pub mod checkpoint;
pub mod hash;
pub mod memory;
pub mod note;
pub mod proof;
pub mod tile;
pub mod tlogproof;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{CompactRange, HASH_SIZE, Hash, HashError, empty_root, leaf_hash, node_hash};
pub use memory::MemoryTree;
pub use note::{Note, NoteError, NoteSignature, Signer, Verifier, open_note, sign_note};
pub use proof::{
    HashReader, ProofError, VerifyError, consistency_proof, inclusion_proof, tree_root,
    verify_consistency, verify_inclusion,
};
pub use tile::{TILE_HEIGHT, TILE_WIDTH, TileError, TileHashReader, TileId, TileKind, TileReader};
pub use tlogproof::{ProofFormatError, TlogProof, VerifyProofError};
