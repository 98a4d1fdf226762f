//! `stele-tlog`: the public formats a verifier reads from a server it does
//! not trust (proofs, checkpoints, notes, tiles, bundles, tile paths) and
//! the verifier keys an operator pastes.

use stele_tlog::tile::{decode_bundle, decode_tile, encode_bundle, encode_tile};
use stele_tlog::{
    Checkpoint, Hash, TileId, TileKind, TlogProof, Verifier, leaf_hash, open_note, sign_note,
};

use super::fixtures;

/// A tlog-proof is parsed strictly: one encoding per proof, so encoding a
/// parsed proof gives back the input, and verifying it never panics.
pub fn tlog_proof(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(proof) = TlogProof::parse(text) else {
        return;
    };
    assert_eq!(proof.encode(), text, "a parsed proof encodes to its input");
    let keys = fixtures::keys();
    // The commitment is unknown here: any leaf exercises note opening,
    // checkpoint parsing and the inclusion check without panicking.
    let _ = proof.verify(
        &leaf_hash(&[0u8; 32]),
        &[&keys.verifier],
        Some(fixtures::ORIGIN.trim_end()),
    );
}

/// A checkpoint body is parsed strictly and prints back identically.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(checkpoint) = Checkpoint::parse(text) else {
        return;
    };
    assert_eq!(
        checkpoint.try_to_body().as_deref(),
        Ok(text),
        "a parsed checkpoint prints back"
    );
    assert_eq!(Checkpoint::parse(&checkpoint.to_body()), Ok(checkpoint));
}

/// An opened note holds only verified signatures by the trusted key, its
/// text is newline-terminated, and signing that text again gives a note
/// that opens to the same text.
pub fn signed_note(data: &[u8]) {
    let keys = fixtures::keys();
    let Ok(note) = open_note(data, &[&keys.verifier]) else {
        return;
    };
    assert!(note.text.ends_with('\n'));
    assert!(
        !note.signatures.is_empty(),
        "an opened note has a verified signature"
    );
    for signature in &note.signatures {
        assert_eq!(signature.name, keys.verifier.name());
        assert_eq!(signature.key_id, keys.verifier.key_id());
    }
    let resigned = sign_note(&note.text, &[&keys.signer]).expect("an opened text signs");
    let reopened = open_note(resigned.as_bytes(), &[&keys.verifier]).expect("re-signed note opens");
    assert_eq!(reopened.text, note.text);
    // A checkpoint inside a note is what every reader parses next.
    let _ = Checkpoint::parse(&note.text);
}

/// A verifier key prints back as its input (its key hash in lowercase)
/// and parses again to the same verifier.
pub fn verifier_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(verifier) = Verifier::from_vkey(text) else {
        return;
    };
    let printed = verifier.verifier_key();
    let (name, rest) = text.split_once('+').expect("a parsed key has a name");
    let (hash, key) = rest.split_once('+').expect("a parsed key has a hash");
    assert_eq!(
        printed,
        format!("{name}+{}+{key}", hash.to_ascii_lowercase())
    );
    assert_eq!(Verifier::from_vkey(&printed), Ok(verifier));
}

/// A tile path is accepted only in the canonical form the log prints.
pub fn tile_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((kind, id)) = TileId::parse_path(text) else {
        return;
    };
    let printed = match kind {
        TileKind::Hash(level) => {
            assert_eq!(level, id.level);
            id.path()
        }
        TileKind::Entries => {
            assert_eq!(id.level, 0);
            id.entries_path()
        }
    };
    assert_eq!(printed, text, "a parsed tile path prints back");
    assert!((1..=256).contains(&id.width));
    assert_eq!(TileId::new(id.level, id.index, id.width), Ok(id));
}

/// Tile bytes: the first input byte chooses the width (1..=256), the rest
/// is the tile. Accepted tiles hold exactly `width` hashes and encode back.
pub fn tile(data: &[u8]) {
    let Some((&width, bytes)) = data.split_first() else {
        return;
    };
    let width = u16::from(width) + 1;
    let Ok(hashes) = decode_tile(bytes, width) else {
        assert_ne!(
            bytes.len(),
            usize::from(width) * 32,
            "a tile of the right length decodes"
        );
        return;
    };
    assert_eq!(hashes.len(), usize::from(width));
    assert_eq!(encode_tile(&hashes), bytes);
    let _: &[Hash] = &hashes;
}

/// An accepted entry bundle encodes back to the same bytes.
pub fn entry_bundle(data: &[u8]) {
    let Ok(entries) = decode_bundle(data) else {
        return;
    };
    assert_eq!(encode_bundle(&entries).expect("decoded entries fit"), data);
}
