//! The test vector of `docs/formats/bundle.md`: a bundle of entries 1 and 3
//! of a five-entry log, written from fixed events, salts and key. The
//! document holds its bytes; this test writes the bundle again and
//! requires the same bytes, so the document cannot drift from the code.
//! `STELE_BLESS=1` rewrites the document's copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/formats/bundle.md");
const BEGIN: &str = "<!-- test vector: begin -->\n```text\n";
const END: &str = "```\n<!-- test vector: end -->";

/// Offset, then 16 bytes in hexadecimal per line.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for b in chunk {
            out.push_str(&format!(" {b:02x}"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_documented_vector_is_what_the_writer_writes_and_it_verifies() {
    let log = TestLog::new((0..5).map(event).collect());
    let bundle = write(
        &log,
        &Selection {
            events: vec![1, 3],
            ..Selection::default()
        },
    );
    let report = stele_bundle::verify(bundle.as_slice(), &signer().verifier(), None).unwrap();
    assert_eq!(report.events, 2);
    let dump = hex_dump(&bundle);
    let doc = std::fs::read_to_string(DOC).unwrap();
    let start = doc.find(BEGIN).expect("the vector's begin marker") + BEGIN.len();
    let end = doc[start..].find(END).expect("the vector's end marker") + start;
    if std::env::var_os("STELE_BLESS").is_some() {
        let updated = format!("{}{dump}{}", &doc[..start], &doc[end..]);
        std::fs::write(DOC, updated).unwrap();
        eprintln!("verifier key: {}", signer().verifier_key());
        return;
    }
    assert_eq!(
        doc[start..end],
        dump,
        "docs/formats/bundle.md: the vector differs"
    );
    assert!(
        doc.contains(&signer().verifier_key()),
        "the document names the vector's verifier key"
    );
}
