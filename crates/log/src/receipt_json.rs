//! A receipt as JSON, the one writer of it: `stele append` prints one per
//! line, and the server's `{"receipts": [...]}` response holds them.
//!
//! Written straight into bytes: a batch of thousands of events would
//! otherwise build and free a JSON tree per receipt. Members, in this
//! order: `index`, `id`, `stream`, `commitment`, `salt` (base64), and
//! `duplicate: true` when the event was a retry (the receipt is the
//! original event's). This module does not frame receipts (no newline, no
//! array).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::engine::Receipt;

/// Appends `receipt` as one JSON object to `out`.
pub fn write_receipt(receipt: &Receipt, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"index\":");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}", receipt.index);
    out.extend_from_slice(b",\"id\":");
    write_json_string(&receipt.id, out);
    out.extend_from_slice(b",\"stream\":");
    write_json_string(&receipt.stream, out);
    out.extend_from_slice(b",\"commitment\":\"");
    write_base64(&receipt.commitment, out);
    out.extend_from_slice(b"\",\"salt\":\"");
    write_base64(&receipt.salt, out);
    out.push(b'"');
    if receipt.duplicate {
        out.extend_from_slice(b",\"duplicate\":true");
    }
    out.push(b'}');
}

fn write_json_string(text: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_base64(bytes: &[u8; 32], out: &mut Vec<u8>) {
    let mut encoded = [0u8; 44];
    if let Ok(len) = B64.encode_slice(bytes, &mut encoded) {
        out.extend_from_slice(encoded.get(..len).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::ids::EntryIndex;

    fn receipt(index: u64, id: &str, duplicate: bool) -> Receipt {
        Receipt {
            index: EntryIndex(index),
            id: id.to_owned(),
            stream: "default".to_owned(),
            commitment: [7u8; 32],
            salt: [0xfe; 32],
            duplicate,
        }
    }

    /// The exact bytes, member order included (clients that print the
    /// line, and the docs' examples, see them), and valid JSON even for
    /// an id that needs escaping.
    #[test]
    fn receipts_are_written_as_documented() {
        let mut out = Vec::new();
        write_receipt(
            &receipt(0, "01890a5d-ac96-774b-bcce-b302099a8057", false),
            &mut out,
        );
        let commitment = B64.encode([7u8; 32]);
        let salt = B64.encode([0xfe; 32]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                r#"{{"index":0,"id":"01890a5d-ac96-774b-bcce-b302099a8057","stream":"default","commitment":"{commitment}","salt":"{salt}"}}"#
            )
        );
        let mut out = Vec::new();
        write_receipt(&receipt(u64::MAX, "odd \"id\"\\\n", true), &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"index": u64::MAX, "id": "odd \"id\"\\\n", "stream": "default",
                "commitment": commitment, "salt": salt, "duplicate": true})
        );
    }
}
