//! Published test vectors: the transparency-dev/merkle RFC 6962 proof
//! vectors and the Go sumdb signed-note example, vendored with their
//! licences in `tests/testvectors/` (its README says where each comes from).

// Test helpers outside #[test] functions may unwrap and panic: a failure
// there is a test failure, which is exactly what a panic reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use stele_tlog::note::{NoteError, Signer, Verifier, open_note, sign_note};
use stele_tlog::proof::reference::reference_root;
use stele_tlog::{Hash, empty_root, leaf_hash, verify_consistency, verify_inclusion};

fn vectors_dir() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("tests/testvectors")
}

/// Every `*.json` file under `dir`, recursively, in sorted order.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Decodes a base64 hash; `None` when it is not exactly 32 bytes, which
/// several negative vectors use to plant garbage.
fn hash(v: &Value) -> Option<Hash> {
    let bytes = STANDARD.decode(v.as_str()?).ok()?;
    Hash::from_slice(&bytes).ok()
}

/// Decodes a root. A few vectors use short placeholder roots ("don't care")
/// that only need to compare equal or unequal to each other, as the
/// reference implementation compares roots as opaque bytes. Those are mapped
/// to a 32-byte stand-in (the leaf hash of their bytes), which preserves
/// equality and cannot collide with a real root.
fn root(v: &Value) -> Option<Hash> {
    let bytes = STANDARD.decode(v.as_str()?).ok()?;
    Some(Hash::from_slice(&bytes).unwrap_or_else(|_| leaf_hash(&bytes)))
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => None,
    }
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&vectors_dir().join("merkle/testdata/inclusion"));
    let (mut pos, mut neg) = (0, 0);
    for f in &files {
        let v = load(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let index = v["leafIdx"].as_u64().unwrap();
        let size = v["treeSize"].as_u64().unwrap();
        let result = match (hash(&v["leafHash"]), root(&v["root"]), proof(&v["proof"])) {
            (Some(leaf), Some(root), Some(p)) => {
                verify_inclusion(&leaf, index, size, &p, &root).map_err(|e| e.to_string())
            }
            _ => Err("malformed hash".to_string()),
        };
        if want_err {
            assert!(
                result.is_err(),
                "{} verified but must be rejected",
                f.display()
            );
            neg += 1;
        } else {
            assert!(result.is_ok(), "{} rejected: {:?}", f.display(), result);
            pos += 1;
        }
    }
    assert!(
        pos >= 5 && neg >= 50,
        "ran only {pos} positive / {neg} negative inclusion vectors"
    );
}

#[test]
fn consistency_vectors() {
    let files = json_files(&vectors_dir().join("merkle/testdata/consistency"));
    let (mut pos, mut neg) = (0, 0);
    for f in &files {
        let v = load(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let old = v["size1"].as_u64().unwrap();
        let new = v["size2"].as_u64().unwrap();
        let result = match (root(&v["root1"]), root(&v["root2"]), proof(&v["proof"])) {
            (Some(r1), Some(r2), Some(p)) => {
                verify_consistency(old, new, &p, &r1, &r2).map_err(|e| e.to_string())
            }
            _ => Err("malformed hash".to_string()),
        };
        if want_err {
            assert!(
                result.is_err(),
                "{} verified but must be rejected",
                f.display()
            );
            neg += 1;
        } else {
            assert!(result.is_ok(), "{} rejected: {:?}", f.display(), result);
            pos += 1;
        }
    }
    assert!(
        pos >= 5 && neg >= 50,
        "ran only {pos} positive / {neg} negative consistency vectors"
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The eight RFC 6962 reference leaves listed in the vectors' README.
fn rfc6962_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| leaf_hash(&unhex(h)))
    .collect()
}

#[test]
fn rfc6962_eight_leaf_root() {
    let leaves = rfc6962_leaves();
    let mut range = stele_tlog::CompactRange::new();
    for l in &leaves {
        range.append(*l).unwrap();
    }
    let root = range.root();
    assert_eq!(root, reference_root(&leaves));
    let hex = root.to_hex();
    assert!(
        hex.starts_with("5dc9da79") && hex.ends_with("4328"),
        "{hex}"
    );
    // The full value appears as the size-8 root in the inclusion vectors.
    let v = load(&vectors_dir().join("merkle/testdata/inclusion/1/happy-path.json"));
    assert_eq!(hash(&v["root"]), Some(root));
    assert_eq!(
        hex,
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    // And the empty tree's root is what the vectors call the empty root.
    assert_eq!(
        empty_root().to_base64(),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
}

struct NoteVector {
    skey: String,
    vkey: String,
    text: String,
    note: String,
}

fn note_vector() -> NoteVector {
    let v = load(&vectors_dir().join("signed-note.json"));
    NoteVector {
        skey: v["skey"].as_str().unwrap().into(),
        vkey: v["vkey"].as_str().unwrap().into(),
        text: v["text"].as_str().unwrap().into(),
        note: v["note"].as_str().unwrap().into(),
    }
}

#[test]
fn signed_note_vector_accepted() {
    let nv = note_vector();
    let verifier = Verifier::from_vkey(&nv.vkey).unwrap();
    assert_eq!(verifier.name(), "PeterNeumann");
    assert_eq!(verifier.key_id(), 0xc74f20a3);
    assert_eq!(verifier.verifier_key(), nv.vkey);
    let note = open_note(nv.note.as_bytes(), &[&verifier]).unwrap();
    assert_eq!(note.text, nv.text);
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "PeterNeumann");
    assert_eq!(note.signatures[0].key_id, 0xc74f20a3);
    assert!(note.unverified.is_empty());
}

/// A Go `PRIVATE+KEY+<name>+<hash hex>+<base64(0x01 || seed)>` string as
/// (name, key hash, Ed25519 seed).
fn parse_go_private_key(skey: &str) -> (String, u32, [u8; 32]) {
    let rest = skey.strip_prefix("PRIVATE+KEY+").unwrap();
    let mut parts = rest.splitn(3, '+');
    let (name, hash, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = STANDARD.decode(key).unwrap();
    assert_eq!(key.len(), 33, "algorithm byte and 32-byte seed");
    assert_eq!(key[0], 0x01, "Ed25519");
    (
        name.into(),
        u32::from_str_radix(hash, 16).unwrap(),
        key[1..].try_into().unwrap(),
    )
}

/// Known answer: Stele's signer, given the Go test's private key and text,
/// writes the Go reference implementation's signed note byte for byte
/// (Ed25519 is deterministic), with the same key ID and verifier key.
#[test]
fn signed_note_vector_signed_identically() {
    let nv = note_vector();
    let (name, key_id, seed) = parse_go_private_key(&nv.skey);
    let signer = Signer::new(&name, seed).unwrap();
    assert_eq!(
        signer.key_id(),
        key_id,
        "key ID derived from the public key"
    );
    assert_eq!(signer.verifier_key(), nv.vkey);
    let note = sign_note(&nv.text, &[&signer]).unwrap();
    assert_eq!(note, nv.note, "the Go note, byte for byte");
    // And it opens with the verifier built from the published key.
    let verifier = Verifier::from_vkey(&nv.vkey).unwrap();
    assert_eq!(
        open_note(note.as_bytes(), &[&verifier]).unwrap().text,
        nv.text
    );
}

/// Splits the vector note into (text, key name, raw signature bytes incl. key ID).
fn split_note(note: &str) -> (String, String, Vec<u8>) {
    let (text, sig_line) = note.rsplit_once("\n\n").unwrap();
    let rest = sig_line
        .strip_prefix("\u{2014} ")
        .unwrap()
        .trim_end_matches('\n');
    let (name, b64) = rest.split_once(' ').unwrap();
    (
        format!("{text}\n"),
        name.into(),
        STANDARD.decode(b64).unwrap(),
    )
}

fn join_note(text: &str, name: &str, sig: &[u8]) -> String {
    format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(sig))
}

#[test]
fn signed_note_vector_rejected_after_mutation() {
    let nv = note_vector();
    let verifier = Verifier::from_vkey(&nv.vkey).unwrap();
    let (text, name, sig) = split_note(&nv.note);
    // Sanity: reassembling without change still verifies.
    assert!(open_note(join_note(&text, &name, &sig).as_bytes(), &[&verifier]).is_ok());

    let mut mutants: Vec<(String, String)> = Vec::new();
    // Text changes: flip case, drop a character, add a character, add a line.
    mutants.push((
        "text: capital".into(),
        join_note(&text.replacen("If", "if", 1), &name, &sig),
    ));
    mutants.push(("text: drop char".into(), join_note(&text[1..], &name, &sig)));
    mutants.push((
        "text: add char".into(),
        join_note(&format!(" {text}"), &name, &sig),
    ));
    mutants.push((
        "text: add line".into(),
        join_note(&format!("{text}more\n"), &name, &sig),
    ));
    mutants.push((
        "text: period".into(),
        join_note(&text.replace("is.", "is!"), &name, &sig),
    ));
    // Key name changes: the signature then belongs to an unknown key.
    for other in ["PeterNeumanN", "peterNeumann", "PeterNeumann2", "Peter"] {
        mutants.push((format!("name: {other}"), join_note(&text, other, &sig)));
    }
    // Key hash (ID) changes: every bit of the first four bytes.
    for bit in 0..32 {
        let mut s = sig.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        mutants.push((format!("key id bit {bit}"), join_note(&text, &name, &s)));
    }
    // Signature changes: flip bits across the Ed25519 signature, truncate, extend.
    for i in (4..sig.len()).step_by(5) {
        let mut s = sig.clone();
        s[i] ^= 0x40;
        mutants.push((format!("sig byte {i}"), join_note(&text, &name, &s)));
    }
    mutants.push((
        "sig truncated".into(),
        join_note(&text, &name, &sig[..sig.len() - 1]),
    ));
    let mut longer = sig.clone();
    longer.push(0);
    mutants.push(("sig extended".into(), join_note(&text, &name, &longer)));
    for (what, m) in &mutants {
        let r = open_note(m.as_bytes(), &[&verifier]);
        assert!(r.is_err(), "mutation {what} was accepted");
    }
    // A flipped signature bit by the known key is a hard failure, not just "unknown".
    let mut s = sig.clone();
    s[10] ^= 1;
    assert!(matches!(
        open_note(join_note(&text, &name, &s).as_bytes(), &[&verifier]),
        Err(NoteError::InvalidSignature { .. })
    ));
    assert_eq!(mutants.len(), 9 + 32 + 13 + 2);

    // Mutating the verifier key's name or hash makes it unusable.
    let (vname, vrest) = nv.vkey.split_once('+').unwrap();
    assert!(Verifier::from_vkey(&format!("{vname}x+{vrest}")).is_err());
    let bad_hash = nv.vkey.replace("c74f20a3", "c74f20a4");
    assert!(matches!(
        Verifier::from_vkey(&bad_hash),
        Err(NoteError::KeyHashMismatch { .. })
    ));
}
