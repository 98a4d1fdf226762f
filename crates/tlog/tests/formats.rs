//! Text formats: checkpoint bodies, signed notes made with fresh keys, and
//! tlog-proofs verified end to end.

// Test helpers outside #[test] functions may unwrap and panic: a failure
// there is a test failure, which is exactly what a panic reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stele_tlog::checkpoint::CheckpointError;
use stele_tlog::note::{NoteError, Signer, Verifier, open_note, sign_note};
use stele_tlog::tlogproof::{ProofFormatError, TlogProof, VerifyProofError};
use stele_tlog::{Checkpoint, Hash, MemoryTree, VerifyError, inclusion_proof, leaf_hash};

const ROOT_B64: &str = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";

#[test]
fn checkpoint_round_trips() {
    let body = format!("example.com/behind-the-sofa\n20852163\n{ROOT_B64}\n");
    let cp = Checkpoint::parse(&body).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20_852_163);
    assert_eq!(cp.root.to_base64(), ROOT_B64);
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_body(), body);

    let with_ext = format!("o\n0\n{ROOT_B64}\next one\n— ext two\n");
    let cp = Checkpoint::parse(&with_ext).unwrap();
    assert_eq!(cp.size, 0);
    assert_eq!(cp.extensions, vec!["ext one", "— ext two"]);
    assert_eq!(cp.try_to_body().unwrap(), with_ext);

    let max = format!("o\n{}\n{ROOT_B64}\n", u64::MAX);
    assert_eq!(Checkpoint::parse(&max).unwrap().size, u64::MAX);
}

#[test]
fn checkpoint_rejections() {
    let r = ROOT_B64;
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{r}"),
            CheckpointError::UnterminatedLine { line: 3 },
        ),
        (String::new(), CheckpointError::UnterminatedLine { line: 1 }),
        ("o\n1\n".into(), CheckpointError::TooFewLines { lines: 2 }),
        (format!("\n1\n{r}\n"), CheckpointError::EmptyOrigin),
        (format!("o\n\n{r}\n"), CheckpointError::EmptySize),
        (format!("o\n01\n{r}\n"), CheckpointError::SizeLeadingZero),
        (format!("o\n00\n{r}\n"), CheckpointError::SizeLeadingZero),
        (
            format!("o\n+1\n{r}\n"),
            CheckpointError::SizeNotDecimal { text: "+1".into() },
        ),
        (
            format!("o\n-1\n{r}\n"),
            CheckpointError::SizeNotDecimal { text: "-1".into() },
        ),
        (
            format!("o\n1 \n{r}\n"),
            CheckpointError::SizeNotDecimal { text: "1 ".into() },
        ),
        (
            format!("o\n１\n{r}\n"),
            CheckpointError::SizeNotDecimal { text: "１".into() },
        ),
        (
            format!("o\n18446744073709551616\n{r}\n"),
            CheckpointError::SizeOverflow {
                text: "18446744073709551616".into(),
            },
        ),
        (
            format!("o\n1\n{r}\n\n"),
            CheckpointError::EmptyExtension { line: 4 },
        ),
        (
            format!("o\n1\n{r}\nx\n\ny\n"),
            CheckpointError::EmptyExtension { line: 5 },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(Checkpoint::parse(&body), Err(want), "{body:?}");
    }
    // Root hashes that are not canonical base64 of exactly 32 bytes.
    for root in [
        "",
        "ZG9uJ3QgY2FyZSAx",
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I",
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=",
        "CsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=",
        " CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\r",
    ] {
        let body = format!("o\n1\n{root}\n");
        assert!(
            matches!(
                Checkpoint::parse(&body),
                Err(CheckpointError::BadRoot { .. })
            ),
            "{root:?}"
        );
    }
    let msg = Checkpoint::parse(&format!("o\n01\n{r}\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "checkpoint line 2: tree size has a leading zero");

    let mut cp = Checkpoint::new("a\nb", 1, Hash::default());
    assert_eq!(cp.try_to_body(), Err(CheckpointError::OriginHasNewline));
    cp.origin = String::new();
    assert_eq!(cp.validate(), Err(CheckpointError::EmptyOrigin));
    cp.origin = "o".into();
    cp.extensions = vec!["x\ny".into()];
    assert_eq!(
        cp.validate(),
        Err(CheckpointError::ExtensionHasNewline { index: 0 })
    );
    cp.extensions = vec![String::new()];
    assert!(cp.validate().is_err());
}

fn signer(name: &str, seed: u8) -> Signer {
    Signer::new(name, [seed; 32]).unwrap()
}

#[test]
fn signers_and_verifier_keys() {
    let s = signer("example.com/log", 7);
    let vkey = s.verifier_key();
    assert!(vkey.starts_with(&format!("example.com/log+{:08x}+A", s.key_id())));
    let v = Verifier::from_vkey(&vkey).unwrap();
    assert_eq!(v.name(), s.name());
    assert_eq!(v.key_id(), s.key_id());
    assert_eq!(v, s.verifier());
    // The secret never shows up in debug output.
    assert!(!format!("{s:?}").contains("07, 07"));

    for name in ["", "a+b", "a b", "a\tb", "a\u{a0}b", "a\u{2003}b"] {
        assert!(
            matches!(
                Signer::new(name, [1; 32]),
                Err(NoteError::InvalidKeyName { .. })
            ),
            "{name:?}"
        );
    }
    for bad in [
        "",
        "name",
        "name+abc",
        "+12345678+AQ==",
        "name+1234567+AQ==",
        "name+123456789+AQ==",
        "name+1234567g+AQ==",
        "name+12345678+!!",
        "name+12345678+",
    ] {
        assert!(Verifier::from_vkey(bad).is_err(), "{bad:?}");
    }
    // Unsupported algorithm byte, wrong key length.
    let (name_hash, key) = vkey.rsplit_once('+').unwrap();
    use base64::Engine as _;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    raw[0] = 0x04;
    let alg4 = format!(
        "{name_hash}+{}",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    assert!(matches!(
        Verifier::from_vkey(&alg4),
        Err(NoteError::UnsupportedAlgorithm { alg: 4 })
    ));
    raw[0] = 0x01;
    raw.push(0);
    let long = format!(
        "{name_hash}+{}",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    assert!(Verifier::from_vkey(&long).is_err());
}

#[test]
fn sign_and_open_notes() {
    let log = signer("example.com/log", 1);
    let witness = signer("witness.example", 2);
    let stranger = signer("stranger.example", 3);
    let text = "hello\n\nworld with a blank line\n";
    let msg = sign_note(text, &[&log, &witness, &stranger]).unwrap();
    assert_eq!(msg.matches('\u{2014}').count(), 3);

    let (lv, wv) = (log.verifier(), witness.verifier());
    let note = open_note(msg.as_bytes(), &[&lv, &wv]).unwrap();
    assert_eq!(note.text, text);
    assert_eq!(note.signatures.len(), 2);
    assert_eq!(note.unverified.len(), 1);
    assert_eq!(note.unverified[0].name, "stranger.example");
    assert_eq!(
        open_note(msg.as_bytes(), &[&lv]).unwrap().signatures.len(),
        1
    );

    // No trusted key: rejected even though the signatures are fine.
    let other = signer("other.example", 4).verifier();
    assert_eq!(
        open_note(msg.as_bytes(), &[&other]),
        Err(NoteError::NoTrustedSignature)
    );
    assert_eq!(
        open_note(msg.as_bytes(), &[]),
        Err(NoteError::NoTrustedSignature)
    );
    // Same name, different key: the key ID differs, so it is just unknown.
    let impostor = signer("example.com/log", 9).verifier();
    assert_eq!(
        open_note(msg.as_bytes(), &[&impostor]),
        Err(NoteError::NoTrustedSignature)
    );

    // Signing input rules.
    assert_eq!(
        sign_note("no newline", &[&log]),
        Err(NoteError::TextNotNewlineTerminated)
    );
    assert_eq!(
        sign_note("", &[&log]),
        Err(NoteError::TextNotNewlineTerminated)
    );
    assert_eq!(sign_note("ok\n", &[]), Err(NoteError::NoSigners));
    assert!(matches!(
        sign_note("bad\u{7}\n", &[&log]),
        Err(NoteError::ControlCharacter { byte: 7, .. })
    ));
    assert!(matches!(
        sign_note("ok\n", &[&log, &log]),
        Err(NoteError::DuplicateSigner { .. })
    ));

    // Malformed notes.
    let good = sign_note("a\n", &[&log]).unwrap();
    let sig_line = good.strip_prefix("a\n\n").unwrap();
    let cases: Vec<Vec<u8>> = vec![
        good.trim_end().as_bytes().to_vec(),
        b"a\n".to_vec(),
        b"a\n\n".to_vec(),
        format!("a\n{sig_line}").into_bytes(),
        format!("a\n\n{sig_line}\n").into_bytes(),
        format!("a\n\n{}", sig_line.replace('\u{2014}', "-")).into_bytes(),
        format!("a\n\n{}", sig_line.replacen(' ', "  ", 1)).into_bytes(),
        format!("a\r\n\n{sig_line}").into_bytes(),
        format!("a\n\n{sig_line}{sig_line}").into_bytes(),
        {
            let mut b = good.clone().into_bytes();
            b[0] = 0xff;
            b
        },
        "a\n\n\u{2014} example.com/log AAAA\n".as_bytes().to_vec(),
        "a\n\n\u{2014} example.com/log\n".as_bytes().to_vec(),
    ];
    for (i, m) in cases.iter().enumerate() {
        assert!(
            open_note(m, &[&lv]).is_err(),
            "case {i}: {:?}",
            String::from_utf8_lossy(m)
        );
    }
    // The signature covers the text only, and the text is split at the last blank line.
    let forged = format!("a\n\nb\n\n{sig_line}");
    assert!(open_note(forged.as_bytes(), &[&lv]).is_err());

    // Too many signature lines is refused before any verification.
    let mut many = String::from("a\n\n");
    for _ in 0..101 {
        many.push_str(sig_line);
    }
    assert!(matches!(
        open_note(many.as_bytes(), &[&lv]),
        Err(NoteError::TooManySignatures { .. })
    ));
}

/// Builds a signed checkpoint and a tlog-proof for one entry of a small tree.
fn make_proof(index: u64, size: u64, log: &Signer) -> (TlogProof, Hash) {
    let leaves: Vec<Hash> = (0..size)
        .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
        .collect();
    let tree = MemoryTree::from_leaves(&leaves).unwrap();
    let cp = Checkpoint::new(log.name(), size, tree.root());
    let note = sign_note(&cp.to_body(), &[log]).unwrap();
    let proof = TlogProof {
        extra: None,
        index,
        hashes: inclusion_proof(&tree, index, size).unwrap(),
        checkpoint_note: note,
    };
    (proof, leaves[index as usize])
}

#[test]
fn tlog_proof_end_to_end() {
    let log = signer("example.com/fancylog", 42);
    let witness = signer("witness1.example", 43);
    let lv = log.verifier();
    let (mut proof, leaf) = make_proof(5, 13, &log);
    let text = proof.encode();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 5\n"));
    assert!(text.contains("\n\nexample.com/fancylog\n13\n"));
    assert_eq!(TlogProof::parse(&text).unwrap(), proof);

    let cp = proof
        .verify(&leaf, &[&lv], Some("example.com/fancylog"))
        .unwrap();
    assert_eq!((cp.size, cp.origin.as_str()), (13, "example.com/fancylog"));
    assert!(proof.verify(&leaf, &[&lv], None).is_ok());

    // Extra data round-trips, including empty extra data.
    for extra in [b"age-v1.2.1-darwin-arm64.tar.gz".to_vec(), Vec::new()] {
        proof.extra = Some(extra);
        let text = proof.encode();
        assert!(text.lines().nth(1).unwrap().starts_with("extra "));
        assert_eq!(TlogProof::parse(&text).unwrap(), proof);
    }
    proof.extra = None;

    // Negative verification cases.
    assert!(matches!(
        proof.verify(&leaf, &[&lv], Some("example.com/otherlog")),
        Err(VerifyProofError::WrongOrigin { .. })
    ));
    assert!(matches!(
        proof.verify(&leaf_hash(b"not it"), &[&lv], None),
        Err(VerifyProofError::Inclusion(VerifyError::RootMismatch))
    ));
    assert!(matches!(
        proof.verify(&leaf, &[&witness.verifier()], None),
        Err(VerifyProofError::Note(NoteError::NoTrustedSignature))
    ));
    let mut wrong_index = proof.clone();
    wrong_index.index = 4;
    assert!(wrong_index.verify(&leaf, &[&lv], None).is_err());
    wrong_index.index = 13;
    assert!(matches!(
        wrong_index.verify(&leaf, &[&lv], None),
        Err(VerifyProofError::Inclusion(
            VerifyError::IndexOutOfRange { .. }
        ))
    ));
    let mut short = proof.clone();
    short.hashes.pop();
    assert!(short.verify(&leaf, &[&lv], None).is_err());
    let mut flipped = proof.clone();
    flipped.hashes[1].0[0] ^= 1;
    assert!(flipped.verify(&leaf, &[&lv], None).is_err());
    // Tampering with the checkpoint size inside the signed note breaks the signature.
    let mut tampered = proof.clone();
    tampered.checkpoint_note = tampered.checkpoint_note.replacen("\n13\n", "\n14\n", 1);
    assert!(matches!(
        tampered.verify(&leaf, &[&lv], None),
        Err(VerifyProofError::Note(NoteError::InvalidSignature { .. }))
    ));
    // A signed note whose text is not a checkpoint.
    let mut not_cp = proof.clone();
    not_cp.checkpoint_note = sign_note("just text\n", &[&log]).unwrap();
    assert!(matches!(
        not_cp.verify(&leaf, &[&lv], None),
        Err(VerifyProofError::Checkpoint(_))
    ));

    // Witness cosignatures are returned with the note.
    let cp_body = Checkpoint::new(
        log.name(),
        13,
        proof.verify(&leaf, &[&lv], None).unwrap().root,
    )
    .to_body();
    let mut cosigned = proof.clone();
    cosigned.checkpoint_note = sign_note(&cp_body, &[&log, &witness]).unwrap();
    let (_, note) = cosigned
        .verify_note(&leaf, &[&lv, &witness.verifier()], None)
        .unwrap();
    assert_eq!(note.signatures.len(), 2);

    // Single-entry tree: empty proof.
    let (p1, l1) = make_proof(0, 1, &log);
    assert!(p1.hashes.is_empty());
    let t1 = p1.encode();
    assert!(t1.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nexample.com/fancylog\n1\n"));
    assert_eq!(
        TlogProof::parse(&t1)
            .unwrap()
            .verify(&l1, &[&lv], None)
            .unwrap()
            .size,
        1
    );
}

#[test]
fn tlog_proof_parse_rejections() {
    let log = signer("example.com/fancylog", 42);
    let (proof, _) = make_proof(5, 13, &log);
    let text = proof.encode();
    let h = proof.hashes[0].to_base64();
    let note = &proof.checkpoint_note;
    let cases: Vec<(String, ProofFormatError)> = vec![
        (String::new(), ProofFormatError::Truncated { line: 1 }),
        (text.replacen("@v1", "@v2", 1), ProofFormatError::BadHeader),
        (
            text.replacen("c2sp", "C2SP", 1),
            ProofFormatError::BadHeader,
        ),
        (
            "c2sp.org/tlog-proof@v1\n".into(),
            ProofFormatError::Truncated { line: 2 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n{note}"),
            ProofFormatError::BadExtra,
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nextra YQ\nindex 0\n\n{note}"),
            ProofFormatError::BadExtra,
        ),
        (
            format!("c2sp.org/tlog-proof@v1\n\n{note}"),
            ProofFormatError::MissingIndex { line: 2 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex5\n\n{note}"),
            ProofFormatError::MissingIndex { line: 2 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nextra YQ==\nIndex 5\n\n{note}"),
            ProofFormatError::MissingIndex { line: 3 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 05\n\n{note}"),
            ProofFormatError::BadIndex {
                line: 2,
                text: "05".into(),
            },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex -5\n\n{note}"),
            ProofFormatError::BadIndex {
                line: 2,
                text: "-5".into(),
            },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n{note}"),
            ProofFormatError::BadIndex {
                line: 2,
                text: "18446744073709551616".into(),
            },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 5\n{}\n\n{note}", &h[1..]),
            ProofFormatError::BadHash { line: 3 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 5\n{h}\nZG9uJ3QgY2FyZSAx\n\n{note}"),
            ProofFormatError::BadHash { line: 4 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 5\n{h}\n"),
            ProofFormatError::Truncated { line: 4 },
        ),
        (
            format!("c2sp.org/tlog-proof@v1\nindex 5\n{h}\n\n"),
            ProofFormatError::MissingCheckpoint,
        ),
        (
            format!(
                "c2sp.org/tlog-proof@v1\nindex 5\n{}\n{note}",
                format!("{h}\n").repeat(65)
            ),
            ProofFormatError::TooManyHashes { max: 64 },
        ),
    ];
    for (t, want) in cases {
        assert_eq!(TlogProof::parse(&t), Err(want), "{t:?}");
    }
    assert_eq!(
        TlogProof::parse("nope\n").unwrap_err().to_string(),
        "tlog-proof line 1: expected header \"c2sp.org/tlog-proof@v1\""
    );
}
