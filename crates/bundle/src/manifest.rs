//! The manifest: what the bundle is (the query that selected it, who ran
//! it and when), what it holds (counts), which checkpoint it is proven
//! against, and the SHA-256 of every byte before it, as the text of a note
//! signed with the log's key.
//!
//! The text's first line is the fixed tag `stele/bundle/v1`, never a log
//! origin, so a signed manifest can never be taken for a checkpoint (whose
//! first line is the origin and second a tree size) nor a checkpoint for a
//! manifest. The text has one rendering per value: [`Manifest::parse`]
//! renders what it read and refuses any text that differs.

use stele_tlog::Hash;
use stele_tlog::hash::hex;

use crate::format::MAX_QUERY_BYTES;

/// The first line of every manifest text.
pub const MANIFEST_TAG: &str = "stele/bundle/v1";

/// What the caller says about the bundle: the selection and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestFields {
    /// The query or selection, as its author wrote it (at most 16 KiB).
    pub query: String,
    /// Who ran it (a principal name).
    pub by: String,
    /// When it was run (RFC 3339 text, from the caller's clock).
    pub at: String,
}

/// The whole manifest, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The log's origin, the checkpoint's first line.
    pub origin: String,
    /// The checkpoint the entries are proven against.
    pub checkpoint_size: u64,
    pub checkpoint_root: Hash,
    /// SHA-256 of every byte of the bundle before the manifest record.
    pub contents: [u8; 32],
    /// Number of event records.
    pub events: u64,
    /// Number of purged-entry records.
    pub purged: u64,
    /// Number of purge records.
    pub purge_records: u64,
    pub fields: ManifestFields,
}

/// A JSON string literal: control characters escaped, one form per value.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

impl Manifest {
    /// The note text, ten lines each ending in a newline.
    pub fn text(&self) -> String {
        format!(
            "{MANIFEST_TAG}\norigin {}\ncheckpoint {} {}\ncontents {}\nevents {}\npurged {}\npurge-records {}\nquery {}\nby {}\nat {}\n",
            self.origin,
            self.checkpoint_size,
            self.checkpoint_root.to_base64(),
            hex(&self.contents),
            self.events,
            self.purged,
            self.purge_records,
            json_string(&self.fields.query),
            json_string(&self.fields.by),
            json_string(&self.fields.at),
        )
    }

    /// Checks the caller's fields can be written: the query within its
    /// limit, and no field that would break the one-line layout.
    pub fn check_fields(fields: &ManifestFields) -> Result<(), String> {
        if fields.query.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "the query is {} bytes, more than {MAX_QUERY_BYTES}",
                fields.query.len()
            ));
        }
        Ok(())
    }

    /// Reads a manifest text strictly (see the module docs).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let body = text
            .strip_suffix('\n')
            .ok_or("the text does not end with a newline")?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [
            tag,
            origin,
            checkpoint,
            contents,
            events,
            purged,
            records,
            query,
            by,
            at,
        ] = lines.as_slice()
        else {
            return Err(format!("{} lines, 10 expected", lines.len()));
        };
        if *tag != MANIFEST_TAG {
            return Err(format!("first line is not {MANIFEST_TAG:?}"));
        }
        let (size, root) = field(checkpoint, "checkpoint")?
            .split_once(' ')
            .ok_or("checkpoint line is not \"checkpoint <size> <root>\"")?;
        let manifest = Manifest {
            origin: field(origin, "origin")?.to_string(),
            checkpoint_size: number(size, "checkpoint size")?,
            checkpoint_root: Hash::from_base64(root)
                .map_err(|e| format!("checkpoint root: {e}"))?,
            contents: parse_hex(field(contents, "contents")?)?,
            events: number(field(events, "events")?, "events")?,
            purged: number(field(purged, "purged")?, "purged")?,
            purge_records: number(field(records, "purge-records")?, "purge-records")?,
            fields: ManifestFields {
                query: string(field(query, "query")?, "query")?,
                by: string(field(by, "by")?, "by")?,
                at: string(field(at, "at")?, "at")?,
            },
        };
        if manifest.text() != text {
            return Err("the text is not in its canonical form".into());
        }
        Ok(manifest)
    }
}

/// The value of line `key value`.
fn field<'a>(line: &'a str, key: &str) -> Result<&'a str, String> {
    line.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("expected a line \"{key} …\", found {line:?}"))
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: {text:?} is not a decimal number"));
    }
    text.parse()
        .map_err(|_| format!("{what}: {text} does not fit in 64 bits"))
}

fn string(text: &str, what: &str) -> Result<String, String> {
    serde_json::from_str::<String>(text).map_err(|e| format!("{what}: not a JSON string: {e}"))
}

fn parse_hex(text: &str) -> Result<[u8; 32], String> {
    let bad = || format!("contents: {text:?} is not 64 lowercase hexadecimal digits");
    if text.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => out[i] = high << 4 | low,
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_forms() {
        let manifest = Manifest {
            origin: "example.test/log".into(),
            checkpoint_size: 12,
            checkpoint_root: stele_tlog::leaf_hash(b"r"),
            contents: [0xab; 32],
            events: 3,
            purged: 2,
            purge_records: 1,
            fields: ManifestFields {
                query: "stream=a\nactor=\"x\"".into(),
                by: "local:alice".into(),
                at: "2026-01-01T00:00:00Z".into(),
            },
        };
        let text = manifest.text();
        assert_eq!(Manifest::parse(&text), Ok(manifest));
        assert!(Manifest::parse(&text.replace("events 3", "events 03")).is_err());
        assert!(Manifest::parse(&text.replace(MANIFEST_TAG, "example.test/log")).is_err());
        assert!(Manifest::parse(&text[..text.len() - 1]).is_err());
    }
}
