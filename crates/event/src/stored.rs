//! The stored form of an envelope: the bytes sealed after the salt in a
//! segment record (`docs/formats/event.md`, "Stored form").
//!
//! A canonical envelope holds its payload twice: parsed and re-serialized as
//! `event`, and escaped as the `payload` string. The *packed* form keeps the
//! escaped payload text once, followed by instructions that rebuild the
//! canonical bytes exactly: literal bytes, and copies out of a dictionary
//! made of a fixed text followed by that payload text. The `payload` member
//! is one copy, and most of `event` a handful more. Rebuilding is nothing
//! but copying, so reading stays as fast as reading the canonical bytes.
//! The commitment is always over the canonical bytes; packing only changes
//! what is kept on disk, and a reader checks the rebuilt bytes against the
//! commitment like any other.
//!
//! Body forms, told apart by their first byte:
//! - `{` (0x7B): the canonical envelope itself (written when packing would
//!   not make it smaller, and by logs written before the packed form);
//! - [`PACKED_FORM`] (0x01): packed.

use std::ops::Range;

use crate::error::EventError;

/// First byte of a packed body.
pub const PACKED_FORM: u8 = 0x01;

const OP_LITERAL: u8 = 0x00;
const OP_COPY: u8 = 0x01;

/// The fixed start of the copy dictionary: an envelope with every member
/// present and empty, so member names and punctuation can be copies. Part of
/// the format: changing one byte changes what every packed body means.
pub const DICTIONARY: &[u8] = br#"{"event":{"action":"","actor":"","attributes":{},"id":"","outcome":"","resource":"","source":"","stream":"","time":""},"id":"","payload":"","received_at":"","source":"","stream":"","v":1,"writer":""}"#;

/// Shortest copy the packer emits: a copy costs up to 1 + 5 + 5 bytes, and
/// splitting a literal run costs its header again.
const MIN_MATCH: usize = 8;

/// Largest canonical envelope a packed body may rebuild, the same as the
/// largest segment record body: a corrupt body can never make a reader
/// allocate more.
pub const MAX_CANONICAL_BYTES: usize = 16 << 20;

/// Packs `canonical`, whose bytes at `payload_at` are the JSON string of the
/// payload, quotes included. Returns `None` when the packed body would not
/// be smaller than `canonical`, which is then stored as it is.
pub(crate) fn pack(canonical: &[u8], payload_at: Range<usize>) -> Option<Vec<u8>> {
    if canonical.len() > MAX_CANONICAL_BYTES {
        // Never written as a body no reader would rebuild.
        return None;
    }
    // The payload text between the quotes is the stored part of the
    // dictionary.
    let text_at = payload_at.start + 1..payload_at.end.checked_sub(1)?;
    let text = canonical.get(text_at.clone())?;
    let before = canonical.get(..text_at.start)?;
    let after = canonical.get(text_at.end..)?;
    PACKER.with(|packer| {
        let (dictionary, slots) = &mut *packer.borrow_mut();
        dictionary.clear();
        dictionary.extend_from_slice(DICTIONARY);
        dictionary.extend_from_slice(text);
        let packed = {
            let table = MatchTable::new(text, slots);
            pack_with(canonical, text, before, after, &table, dictionary)
        };
        // Only the allocations of ordinary events are kept: a thread that
        // once packed a 64 KiB event does not hold its tables for good.
        if slots.capacity() > KEEP_SLOTS {
            *slots = Vec::new();
        }
        if dictionary.capacity() > KEEP_DICTIONARY_BYTES {
            *dictionary = Vec::new();
        }
        packed
    })
}

const KEEP_SLOTS: usize = 4096;
const KEEP_DICTIONARY_BYTES: usize = 16 * 1024;

thread_local! {
    /// The dictionary and match table of the last event packed on this
    /// thread, kept for their allocations.
    static PACKER: std::cell::RefCell<(Vec<u8>, Vec<u32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn pack_with(
    canonical: &[u8],
    text: &[u8],
    before: &[u8],
    after: &[u8],
    table: &MatchTable<'_>,
    dictionary: &[u8],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(canonical.len() / 2 + text.len() + 16);
    out.push(PACKED_FORM);
    write_varint(canonical.len(), &mut out);
    write_varint(text.len(), &mut out);
    out.extend_from_slice(text);
    table.encode(before, dictionary, &mut out);
    if !text.is_empty() {
        write_copy(DICTIONARY.len(), text.len(), &mut out);
    }
    table.encode(after, dictionary, &mut out);
    (out.len() < canonical.len()).then_some(out)
}

/// The canonical envelope bytes of a stored body: the body itself when it is
/// canonical, else the bytes rebuilt into `scratch` from a packed body.
/// Refuses an unknown form, and any packed body that is malformed or would
/// rebuild more than [`MAX_CANONICAL_BYTES`]. It does not check that the
/// result is a canonical envelope: the commitment (and
/// [`crate::Envelope::from_canonical`]) does.
pub fn canonical_from_stored<'a>(
    body: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], EventError> {
    match body.split_first() {
        Some((b'{', _)) => Ok(body),
        Some((&PACKED_FORM, packed)) => {
            unpack(packed, scratch)?;
            Ok(scratch.as_slice())
        }
        Some(_) => Err(bad("unknown form byte")),
        None => Err(bad("empty")),
    }
}

fn bad(reason: &'static str) -> EventError {
    EventError::BadStoredForm { reason }
}

fn unpack(packed: &[u8], out: &mut Vec<u8>) -> Result<(), EventError> {
    out.clear();
    let mut rest = packed;
    let total = read_varint(&mut rest)?;
    if total > MAX_CANONICAL_BYTES {
        return Err(bad("it rebuilds more than 16 MiB"));
    }
    let text_len = read_varint(&mut rest)?;
    let Some((text, mut ops)) = rest.split_at_checked(text_len) else {
        return Err(bad("dictionary runs past the end"));
    };
    out.reserve(total);
    while let Some((&op, tail)) = ops.split_first() {
        ops = tail;
        match op {
            OP_LITERAL => {
                let len = read_varint(&mut ops)?;
                let Some((literal, tail)) = ops.split_at_checked(len) else {
                    return Err(bad("literal runs past the end"));
                };
                if len == 0 || out.len() + len > total {
                    return Err(bad("literal out of range"));
                }
                out.extend_from_slice(literal);
                ops = tail;
            }
            OP_COPY => {
                let offset = read_varint(&mut ops)?;
                let len = read_varint(&mut ops)?;
                let end = offset.saturating_add(len);
                if len == 0 || end > DICTIONARY.len() + text.len() || out.len() + len > total {
                    return Err(bad("copy out of range"));
                }
                // The dictionary is DICTIONARY followed by the stored text;
                // a copy may span both.
                let fixed = DICTIONARY.len();
                out.extend_from_slice(
                    DICTIONARY
                        .get(offset.min(fixed)..end.min(fixed))
                        .unwrap_or_default(),
                );
                out.extend_from_slice(
                    text.get(offset.saturating_sub(fixed)..end.saturating_sub(fixed))
                        .unwrap_or_default(),
                );
            }
            _ => return Err(bad("unknown instruction")),
        }
    }
    if out.len() != total {
        return Err(bad("it rebuilds fewer bytes than it says"));
    }
    Ok(())
}

/// LEB128, at most 5 bytes (values below 2^32 fit in 5 bytes of 7 bits).
fn write_varint(mut value: usize, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(input: &mut &[u8]) -> Result<usize, EventError> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(bad("number runs past the end"));
        };
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return match u32::try_from(value) {
                Ok(value) => Ok(value as usize),
                Err(_) => Err(bad("number too large")),
            };
        }
    }
    Err(bad("number longer than 5 bytes"))
}

/// Candidate dictionary positions for 8-byte windows: every position of
/// the fixed text (built once), and every fourth position of the stored
/// text (built per event; a common run of 11 bytes or more always covers
/// one of them, and the match is then grown both ways).
struct MatchTable<'a> {
    text_slots: &'a [u32],
    text_bits: u32,
    fixed_slots: &'a [u32],
}

const EMPTY: u32 = u32::MAX;
const TEXT_STRIDE: usize = 4;
const FIXED_BITS: u32 = 10;

/// Slots over every window of [`DICTIONARY`], first occurrence kept.
fn fixed_slots() -> &'static [u32] {
    static FIXED: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let mut slots = vec![EMPTY; 1 << FIXED_BITS];
        for (position, window) in DICTIONARY.windows(MIN_MATCH).enumerate() {
            let slot = &mut slots[hash(window, FIXED_BITS)];
            if *slot == EMPTY {
                *slot = position as u32;
            }
        }
        slots
    })
}

impl<'a> MatchTable<'a> {
    /// Indexes `text` in `slots` (reused between events, so packing does
    /// not allocate a table each time).
    fn new(text: &[u8], slots: &'a mut Vec<u32>) -> MatchTable<'a> {
        let windows = text.len() / TEXT_STRIDE + 1;
        let size = (windows * 2).next_power_of_two().clamp(64, 1 << 16);
        let bits = size.trailing_zeros();
        slots.clear();
        slots.resize(size, EMPTY);
        let mut position = 0;
        while let Some(window) = text.get(position..position + MIN_MATCH) {
            let slot = &mut slots[hash(window, bits)];
            if *slot == EMPTY {
                *slot = (DICTIONARY.len() + position) as u32;
            }
            position += TEXT_STRIDE;
        }
        MatchTable {
            text_slots: slots,
            text_bits: bits,
            fixed_slots: fixed_slots(),
        }
    }

    /// The dictionary position where `window` (8 bytes) starts, if known.
    fn find(&self, window: &[u8], dictionary: &[u8]) -> Option<usize> {
        let product = mix(window);
        let text = self.text_slots[(product >> (64 - self.text_bits)) as usize];
        let fixed = self.fixed_slots[(product >> (64 - FIXED_BITS)) as usize];
        [text, fixed]
            .into_iter()
            .filter(|candidate| *candidate != EMPTY)
            .map(|candidate| candidate as usize)
            .find(|&start| dictionary.get(start..start + MIN_MATCH) == Some(window))
    }

    /// Appends instructions that rebuild `src` (greedy: the first match
    /// found, grown both ways).
    fn encode(&self, src: &[u8], dictionary: &[u8], out: &mut Vec<u8>) {
        let mut literal_start = 0;
        let mut i = 0;
        let mut misses = 0usize;
        while let Some(window) = src.get(i..i + MIN_MATCH) {
            let Some(start) = self.find(window, dictionary) else {
                // Long literal runs (ids, times) are skipped over faster.
                misses += 1;
                i += 1 + (misses >> 5);
                continue;
            };
            misses = 0;
            let len = MIN_MATCH
                + common_prefix(
                    src.get(i + MIN_MATCH..).unwrap_or_default(),
                    dictionary.get(start + MIN_MATCH..).unwrap_or_default(),
                );
            // Grow the match backwards over the literal run before it.
            let mut back = 0;
            while i - back > literal_start
                && start > back
                && src[i - back - 1] == dictionary[start - back - 1]
            {
                back += 1;
            }
            write_literal(&src[literal_start..i - back], out);
            write_copy(start - back, len + back, out);
            i += len;
            literal_start = i;
        }
        write_literal(&src[literal_start..], out);
    }
}

/// How many leading bytes `a` and `b` share, eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) else {
            break;
        };
        let diff = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if diff != 0 {
            return n + diff.trailing_zeros() as usize / 8;
        }
        n += 8;
    }
    n + a
        .iter()
        .skip(n)
        .zip(b.iter().skip(n))
        .take_while(|(x, y)| x == y)
        .count()
}

fn write_copy(offset: usize, len: usize, out: &mut Vec<u8>) {
    out.push(OP_COPY);
    write_varint(offset, out);
    write_varint(len, out);
}

fn write_literal(bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        out.push(OP_LITERAL);
        write_varint(bytes.len(), out);
        out.extend_from_slice(bytes);
    }
}

fn hash(window: &[u8], bits: u32) -> usize {
    (mix(window) >> (64 - bits)) as usize
}

/// The 8-byte window multiplied by a large odd constant; its top bits are
/// the hash at any table size.
fn mix(window: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&window[..8]);
    u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The instructions of a packed body, one per line, for test messages.
#[cfg(test)]
pub(crate) fn describe(body: &[u8]) -> String {
    let mut rest = body.get(1..).unwrap_or_default();
    let (Ok(total), Ok(text_len)) = (read_varint(&mut rest), read_varint(&mut rest)) else {
        return "malformed".into();
    };
    let mut ops = rest.get(text_len..).unwrap_or_default();
    let mut text = format!("{total} bytes from a dictionary text of {text_len} bytes\n");
    while let Some((&op, tail)) = ops.split_first() {
        ops = tail;
        let line = match op {
            OP_LITERAL => {
                let len = read_varint(&mut ops).unwrap_or(0);
                let literal = ops.get(..len).unwrap_or_default();
                ops = ops.get(len..).unwrap_or_default();
                format!("literal {:?}", String::from_utf8_lossy(literal))
            }
            OP_COPY => {
                let offset = read_varint(&mut ops).unwrap_or(0);
                let len = read_varint(&mut ops).unwrap_or(0);
                format!("copy {len} bytes from {offset}")
            }
            _ => "unknown".into(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jcs;
    use proptest::prelude::*;

    fn roundtrip(canonical: &[u8], payload_at: Range<usize>) -> Option<Vec<u8>> {
        let packed = pack(canonical, payload_at)?;
        let mut scratch = Vec::new();
        let rebuilt = canonical_from_stored(&packed, &mut scratch).expect("unpacks");
        assert_eq!(rebuilt, canonical);
        Some(packed)
    }

    /// A canonical-looking text with `payload` escaped inside it.
    fn envelope_text(event: &str, payload: &str) -> (Vec<u8>, Range<usize>) {
        let mut out = format!(r#"{{"event":{event},"id":"x","payload":"#).into_bytes();
        let start = out.len();
        jcs::write_string(payload, &mut out);
        let end = out.len();
        out.extend_from_slice(br#","received_at":"t","stream":"s","v":1,"writer":"w"}"#);
        (out, start..end)
    }

    fn packed_body(total: usize, text: &[u8], ops: &[u8]) -> Vec<u8> {
        let mut body = vec![PACKED_FORM];
        write_varint(total, &mut body);
        write_varint(text.len(), &mut body);
        body.extend_from_slice(text);
        body.extend_from_slice(ops);
        body
    }

    #[test]
    fn packs_the_duplicated_payload_away() {
        let payload = r#"{"actor":"user-5@example.com","action":"document.read","resource":"documents/5","attributes":{"ip":"10.0.0.5","note":"a \"quoted\" word"}}"#;
        let event = r#"{"action":"document.read","actor":"user-5@example.com","attributes":{"ip":"10.0.0.5","note":"a \"quoted\" word"},"resource":"documents/5"}"#;
        let (canonical, at) = envelope_text(event, payload);
        let packed = roundtrip(&canonical, at).expect("smaller");
        // The escaped payload once, and most of the rest copies: a third
        // smaller than the canonical bytes.
        assert!(
            packed.len() * 4 < canonical.len() * 3,
            "{} bytes\n{}",
            packed.len(),
            describe(&packed)
        );
    }

    #[test]
    fn declines_when_nothing_is_saved() {
        // Nothing in it matches the dictionary: instruction headers would
        // only add bytes.
        let canonical = b"QQQQ\"\"ZZZZ";
        assert_eq!(pack(canonical, 4..6), None);
    }

    #[test]
    fn declines_what_no_reader_would_rebuild() {
        // Copies of the fixed text: it would pack to almost nothing, but
        // rebuilds more than readers accept, so it is stored as it is.
        let canonical = DICTIONARY.repeat(MAX_CANONICAL_BYTES / DICTIONARY.len() + 1);
        assert!(canonical.len() > MAX_CANONICAL_BYTES);
        assert_eq!(pack(&canonical, 0..2), None);
        let fits = DICTIONARY.repeat(1000);
        assert!(pack(&fits, 0..2).is_some_and(|packed| packed.len() < fits.len() / 10));
    }

    #[test]
    fn canonical_bodies_are_returned_as_they_are() {
        let body = br#"{"a":1}"#;
        let mut scratch = Vec::new();
        assert_eq!(canonical_from_stored(body, &mut scratch).unwrap(), body);
        assert!(scratch.is_empty());
    }

    #[test]
    fn refuses_malformed_bodies() {
        let mut scratch = Vec::new();
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\x07abc", "unknown form byte"),
            (b"\x01", "number runs past the end"),
            (b"\x01\x02", "number runs past the end"),
            (b"\x01\x02\x05ab", "dictionary runs past the end"),
            (b"\x01\x02\x00\x09", "unknown instruction"),
            (b"\x01\x02\x00\x00\x05ab", "literal runs past the end"),
            (b"\x01\x02\x00\x00\x00", "literal out of range"),
            (b"\x01\x02\x00\x00\x03abc", "literal out of range"),
            (
                b"\x01\x02\x00\x00\x01a",
                "it rebuilds fewer bytes than it says",
            ),
            (b"\x01\x02\x00\x01\x00\x00", "copy out of range"),
            (b"\x01\x02\x00\x01\x00\x03", "copy out of range"),
            (b"\x01\x02\x00\x01\x00", "number runs past the end"),
            (
                b"\x01\x02\x00\x01\xff\xff\xff\xff\xff\x01",
                "number longer than 5 bytes",
            ),
            (
                b"\x01\x02\x00\x01\xff\xff\xff\xff\x7f\x01",
                "number too large",
            ),
            (b"\x01\x81\x80\x80\x08\x00", "it rebuilds more than 16 MiB"),
        ];
        for (body, reason) in cases {
            match canonical_from_stored(body, &mut scratch) {
                Err(EventError::BadStoredForm { reason: got }) => {
                    assert_eq!(got, *reason, "body {body:?}")
                }
                other => panic!("body {body:?}: {other:?}"),
            }
        }
        // A copy ending one byte past the stored text is out of range; the
        // last byte of the fixed text plus the text's one byte is not.
        let mut ops = vec![OP_COPY];
        write_varint(DICTIONARY.len(), &mut ops);
        ops.push(2);
        assert_eq!(
            canonical_from_stored(&packed_body(2, b"x", &ops), &mut scratch),
            Err(EventError::BadStoredForm {
                reason: "copy out of range"
            })
        );
        let mut ops = vec![OP_LITERAL, 1, b'<', OP_COPY];
        write_varint(DICTIONARY.len() - 1, &mut ops);
        ops.push(2);
        let body = packed_body(3, b"x", &ops);
        let rebuilt = canonical_from_stored(&body, &mut scratch).unwrap();
        assert_eq!(rebuilt, b"<}x");
    }

    proptest! {
        #[test]
        fn packing_roundtrips(
            event in "[ -~]{0,300}",
            payload in "(\\PC|[\u{0}-\u{1f}\"\\\\])*",
            reuse in 0usize..64,
        ) {
            // Events often repeat pieces of their payload.
            let reused: String = payload.chars().take(reuse).collect();
            let event = format!("{event}{reused}{event}");
            let (canonical, at) = envelope_text(&event, &payload);
            if let Some(packed) = pack(&canonical, at) {
                let mut scratch = Vec::new();
                prop_assert_eq!(canonical_from_stored(&packed, &mut scratch).unwrap(), &canonical[..]);
                prop_assert!(packed.len() < canonical.len());
            }
        }

        /// Any damage to a packed body is refused or rebuilds other bytes;
        /// it never panics or rebuilds past the limit.
        #[test]
        fn damaged_bodies_never_panic(
            payload in "[ -~]{20,200}",
            position in any::<prop::sample::Index>(),
            value in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let event = format!("{{{payload}}}");
            let (canonical, at) = envelope_text(&event, &payload);
            let mut packed = pack(&canonical, at).unwrap();
            let i = position.index(packed.len());
            packed[i] = value;
            packed.truncate(cut.index(packed.len()) + 1);
            let mut scratch = Vec::new();
            if let Ok(rebuilt) = canonical_from_stored(&packed, &mut scratch) {
                prop_assert!(rebuilt.len() <= MAX_CANONICAL_BYTES);
            }
        }
    }
}
