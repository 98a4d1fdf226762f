//! RFC 8785 JSON Canonicalization Scheme (JCS) serialization of a
//! `serde_json::Value`: object members sorted by the UTF-16 code units of
//! their names, no whitespace, strings escaped minimally, numbers written as
//! ECMAScript's `Number.prototype.toString` writes doubles. It is not a
//! parser and does not validate: values that came through this crate's
//! parser are already I-JSON (no duplicates, exact numbers), and that is what
//! canonical output needs.
//!
//! The pieces ([`write_string`], [`write_object`]) are shared with the
//! envelope fast path, which writes its fixed members directly and only calls
//! into the general canonicalizer for `attributes`.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::json::MAX_EXACT_INTEGER;

/// Appends the RFC 8785 canonical form of `value` to `out`.
///
/// Numbers: integers of magnitude up to 2^53 are written in plain decimal;
/// every other number is converted to the nearest IEEE 754 double and
/// written the way ECMAScript does (so an integer beyond 2^53 built by hand
/// is rounded, exactly as a JavaScript canonicalizer would round it).
/// `serde_json::Number` cannot hold NaN or infinities with its default
/// features; should one appear (with `arbitrary_precision`), it is written as
/// `null`, as `JSON.stringify` does. This crate's parsers refuse both cases
/// before they get here.
///
/// Recursion depth equals the nesting depth of `value`; values produced by
/// this crate's parsers nest at most [`crate::MAX_DEPTH_CEILING`] + 1 deep.
pub fn canonicalize(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonicalize(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

/// Convenience wrapper returning the canonical bytes of `value`.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    canonicalize(value, &mut out);
    out
}

/// Writes an object with its members in UTF-16 code unit order of names.
///
/// `serde_json::Map` is usually a `BTreeMap`, whose byte order already
/// matches UTF-16 order for almost all keys, so the common case is checked
/// first and written without sorting or allocating.
pub(crate) fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    let in_order = map
        .keys()
        .is_sorted_by(|a, b| compare_utf16(a, b) != Ordering::Greater);
    if in_order {
        for (i, (key, value)) in map.iter().enumerate() {
            write_member(i, key, value, out);
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_unstable_by(|a, b| compare_utf16(a.0, b.0));
        for (i, (key, value)) in members.into_iter().enumerate() {
            write_member(i, key, value, out);
        }
    }
    out.push(b'}');
}

fn write_member(index: usize, key: &str, value: &Value, out: &mut Vec<u8>) {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    canonicalize(value, out);
}

/// Compares two strings by their UTF-16 code units, as RFC 8785 §3.2.3
/// requires, without transcoding in the common case.
///
/// UTF-8 byte order equals code point order, and code point order equals
/// UTF-16 order except between a character in U+E000..=U+FFFF and a
/// supplementary character (which UTF-16 writes as surrogates 0xD800..,
/// sorting them first). At the first differing byte, those two cases show up
/// as lead bytes 0xEE/0xEF against 0xF0..=0xF4, which are never continuation
/// bytes; in every other case byte order is the answer.
pub fn compare_utf16(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(common), b.get(common)) {
        (Some(&x), Some(&y)) => {
            let high_bmp = |c: u8| c == 0xEE || c == 0xEF;
            if high_bmp(x) && y >= 0xF0 {
                Ordering::Greater
            } else if x >= 0xF0 && high_bmp(y) {
                Ordering::Less
            } else {
                x.cmp(&y)
            }
        }
        _ => a.len().cmp(&b.len()),
    }
}

/// Writes a number as RFC 8785 §3.2.2.3 prescribes.
pub(crate) fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64()
        && u <= MAX_EXACT_INTEGER
    {
        write_u64(u, out);
        return;
    }
    if let Some(i) = n.as_i64()
        && i < 0
        && i.unsigned_abs() <= MAX_EXACT_INTEGER
    {
        out.push(b'-');
        write_u64(i.unsigned_abs(), out);
        return;
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => write_f64(f, out),
        _ => out.extend_from_slice(b"null"),
    }
}

/// Writes a finite double in ECMAScript `Number::toString` form, which
/// `ryu-js` implements (shortest round-trip digits, `-0` as `0`, exponent
/// form outside 1e-7 < |x| < 1e21).
pub(crate) fn write_f64(f: f64, out: &mut Vec<u8>) {
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(f).as_bytes());
}

/// Writes an unsigned integer in plain decimal.
pub(crate) fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Lowercase hex digits for `\u00xx` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Per-byte escape table: 0 means "copy as is", `u` means `\u00xx`, any
/// other value is the letter of a two-character escape. Only `"`, `\` and
/// the C0 controls are escaped (RFC 8785 §3.2.2.2); DEL, `/` and non-ASCII
/// characters are written as they are.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes `s` as a canonical JSON string.
///
/// This is the hot loop of envelope serialization, and the payload it
/// mostly runs on is JSON text, with an escaped quote every few bytes. So a
/// first pass measures the escaped length eight bytes at a time, and if
/// anything needs escaping a second pass writes into a buffer of that size
/// (plus eight bytes of slack, so that it can always store whole words).
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let extra = escaped_extra_len(bytes);
    out.reserve(bytes.len() + extra + WORD + 2);
    out.push(b'"');
    if extra == 0 {
        out.extend_from_slice(bytes);
    } else {
        let start = out.len();
        let end = start + bytes.len() + extra;
        out.resize(end + WORD, 0);
        if let Some(dst) = out.get_mut(start..) {
            write_escaped(bytes, dst);
        }
        out.truncate(end);
    }
    out.push(b'"');
}

const WORD: usize = 8;

/// How many bytes escaping adds to `bytes`: one per special byte, except
/// control characters written `\u00xx` (five).
fn escaped_extra_len(bytes: &[u8]) -> usize {
    let mut extra = 0;
    let mut words = bytes.chunks_exact(WORD);
    for word in words.by_ref() {
        let Ok(word) = <[u8; WORD]>::try_from(word) else {
            continue;
        };
        let word = u64::from_le_bytes(word);
        if control_mask(word) == 0 {
            // Only `"` and `\`, one extra byte each: the marked bytes, as
            // ones, summed into the top byte by the multiplication.
            extra += ((special_mask(word) >> 7).wrapping_mul(LOW_BITS) >> 56) as usize;
        } else {
            extra += word
                .to_le_bytes()
                .iter()
                .map(|&b| usize::from(EXTRA_LEN[usize::from(b)]))
                .sum::<usize>();
        }
    }
    extra
        + words
            .remainder()
            .iter()
            .map(|&b| usize::from(EXTRA_LEN[usize::from(b)]))
            .sum::<usize>()
}

/// Writes the escaped form of `bytes` into `dst`, which must be eight bytes
/// longer than the escaped text ([`escaped_extra_len`] more than `bytes`).
///
/// Eight bytes at a time: the whole word is stored, then for each byte in
/// it that needs an escape (in order), the output is advanced over the
/// bytes before it, the escape is written, and the rest of the word is
/// stored again after the escape. Every store is a fixed eight bytes (or
/// two, or six for the rare `\u00xx`), which the slack makes room for.
/// Stores that would not fit are dropped rather than panicking, which
/// cannot happen when the length is right.
fn write_escaped(bytes: &[u8], dst: &mut [u8]) {
    let mut j = 0;
    let mut words = bytes.chunks_exact(WORD);
    for word in words.by_ref() {
        let Ok(word) = <[u8; WORD]>::try_from(word) else {
            continue;
        };
        let w = u64::from_le_bytes(word);
        store_word(w, dst, j);
        let mut special = special_mask(w);
        // Bytes of this word already in place, up to and including the
        // last escaped one.
        let mut placed = 0;
        while special != 0 {
            let at = special.trailing_zeros() as usize / 8;
            j += at - placed;
            if let Some(&b) = word.get(at) {
                j += write_escaped_byte(b, dst.get_mut(j..).unwrap_or_default());
            }
            placed = at + 1;
            store_word(w.checked_shr(8 * placed as u32).unwrap_or(0), dst, j);
            special &= special - 1;
        }
        j += WORD - placed;
    }
    // Fewer than eight bytes left: one by one.
    for &b in words.remainder() {
        j += write_escaped_byte(b, dst.get_mut(j..).unwrap_or_default());
    }
}

/// Stores the eight bytes of `word` (little-endian) at `dst[at..]`.
#[inline(always)]
fn store_word(word: u64, dst: &mut [u8], at: usize) {
    if let Some(to) = dst.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<WORD>) {
        *to = word.to_le_bytes();
    }
}

/// How many leading bytes of `bytes` are plain string text: neither a
/// control character, `"` nor `\`. These are the bytes a JSON string holds
/// as they are, so the parser scans string runs with it too.
pub(crate) fn plain_prefix_len(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(word) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let mask = special_mask(u64::from_le_bytes(*word));
        if mask != 0 {
            return i + mask.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .take_while(|&&b| ESCAPES[usize::from(b)] == 0)
        .count()
}

/// Writes one byte escaped at the start of `dst`; returns how many bytes
/// it takes (the two-byte write may leave a zero the next byte overwrites).
#[inline(always)]
fn write_escaped_byte(b: u8, dst: &mut [u8]) -> usize {
    let escape = ESCAPES[usize::from(b)];
    if escape == b'u' {
        if let Some(slot) = dst.get_mut(..6) {
            slot.copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]);
        }
        return 6;
    }
    let escaped = escape != 0;
    if let Some([first, second, ..]) = dst.get_mut(..2) {
        *first = if escaped { b'\\' } else { b };
        *second = escape;
    }
    1 + usize::from(escaped)
}

/// Extra bytes each byte needs once escaped: 5 for `\u00xx`, 1 for the
/// two-character escapes, 0 otherwise. Derived from [`ESCAPES`].
const EXTRA_LEN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match ESCAPES[i] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        };
        i += 1;
    }
    table
};

/// `0x01` in every byte of a word.
const LOW_BITS: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// `0x7f` in every byte of a word.
const LOW_SEVEN_BITS: u64 = u64::from_ne_bytes([0x7f; 8]);

/// The high bit of each byte of `word` that is zero. Exact for every byte:
/// `(b & 0x7f) + 0x7f` stays below 0x100, so nothing carries into the next
/// byte, and reaches 0x80 exactly when `b & 0x7f` is not zero.
const fn zero_mask(word: u64) -> u64 {
    !(((word & LOW_SEVEN_BITS) + LOW_SEVEN_BITS) | word) & HIGH_BITS
}

/// The high bit of each byte of `word` below 0x20 (a control character),
/// exactly: `(b & 0x7f) + 0x60` reaches 0x80 exactly when `b & 0x7f` is
/// 0x20 or more, and bytes from 0x80 up have their own high bit.
const fn control_mask(word: u64) -> u64 {
    !(((word & LOW_SEVEN_BITS) + LOW_BITS.wrapping_mul(0x60)) | word) & HIGH_BITS
}

/// The high bit of each byte of `word` (little-endian) that a JSON string
/// cannot hold as it is: a control character, `"` or `\`. Exact for every
/// byte.
const fn special_mask(word: u64) -> u64 {
    control_mask(word)
        | zero_mask(word ^ LOW_BITS.wrapping_mul(b'"' as u64))
        | zero_mask(word ^ LOW_BITS.wrapping_mul(b'\\' as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{BigIntegers, ParseOptions, parse};
    use proptest::prelude::*;

    fn canon_str(v: &Value) -> String {
        String::from_utf8(to_canonical_vec(v)).unwrap()
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
    const APPENDIX_B: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];

    #[test]
    fn rfc8785_appendix_b_numbers() {
        for &(bits, expected) in APPENDIX_B {
            let f = f64::from_bits(bits);
            let v = Value::Number(Number::from_f64(f).unwrap());
            assert_eq!(canon_str(&v), expected, "bits {bits:016x}");
        }
        // NaN and Infinity (the table's error rows) cannot be a Number.
        assert!(Number::from_f64(f64::from_bits(0x7fffffffffffffff)).is_none());
        assert!(Number::from_f64(f64::from_bits(0x7ff0000000000000)).is_none());
    }

    #[test]
    fn integers_are_plain_decimal_up_to_2_pow_53() {
        for (v, s) in [
            (serde_json::json!(0), "0"),
            (serde_json::json!(-1), "-1"),
            (serde_json::json!(9007199254740992u64), "9007199254740992"),
            (serde_json::json!(-9007199254740992i64), "-9007199254740992"),
            // Beyond 2^53 the value is the nearest double, as in JavaScript.
            (serde_json::json!(9007199254740993u64), "9007199254740992"),
            (serde_json::json!(u64::MAX), "18446744073709552000"),
            (serde_json::json!(i64::MIN), "-9223372036854776000"),
        ] {
            assert_eq!(canon_str(&v), s);
        }
    }

    /// RFC 8785 §3.2.2 example: parsed input and its canonical form.
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = br#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let v = parse(
            input,
            ParseOptions {
                max_depth: 8,
                big_integers: BigIntegers::Refuse,
            },
        )
        .unwrap();
        assert_eq!(
            canon_str(&v),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3 sorting example.
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = br#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v = parse(
            input,
            ParseOptions {
                max_depth: 8,
                big_integers: BigIntegers::Refuse,
            },
        )
        .unwrap();
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
            \"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon_str(&v), expected);
    }

    #[test]
    fn string_escaping_is_minimal() {
        let s: String = (0u8..0x20).map(char::from).collect::<String>() + "\"\\/\u{7f}é";
        let v = Value::String(s);
        assert_eq!(
            canon_str(&v),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
             \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\
             \\\"\\\\/\u{7f}é\""
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(Value::Number),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Straightforward char-by-char reference for [`write_string`].
    fn reference_escape(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// The word masks mark exactly the bytes they name, whatever the
    /// neighbouring bytes are (no borrow or carry leaks between bytes).
    #[test]
    fn word_masks_are_exact() {
        let expected = |word: [u8; 8], is: fn(u8) -> bool| {
            word.iter()
                .enumerate()
                .filter(|(_, b)| is(**b))
                .map(|(k, _)| 0x80u64 << (8 * k))
                .sum::<u64>()
        };
        let fillers = [
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', b'\\', 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        for b in 0..=255u8 {
            for k in 0..8 {
                for filler in fillers {
                    let mut word = [filler; 8];
                    word[k] = b;
                    let w = u64::from_le_bytes(word);
                    assert_eq!(zero_mask(w), expected(word, |b| b == 0), "{word:?}");
                    assert_eq!(control_mask(w), expected(word, |b| b < 0x20), "{word:?}");
                    assert_eq!(
                        special_mask(w),
                        expected(word, |b| b < 0x20 || b == b'"' || b == b'\\'),
                        "{word:?}"
                    );
                }
            }
        }
    }

    /// The plain prefix ends exactly at the first byte a JSON string cannot
    /// hold as it is, wherever it falls in the eight-byte words.
    #[test]
    fn plain_prefix_stops_at_the_first_special_byte() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
                .count()
        };
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for len in 0..40 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend_from_slice("é€".as_bytes());
                    if at < len {
                        bytes[at] = special;
                    }
                    assert_eq!(plain_prefix_len(&bytes), naive(&bytes), "{bytes:?}");
                }
            }
        }
        assert_eq!(plain_prefix_len(b""), 0);
        assert_eq!(plain_prefix_len(&[0x7f, 0x80, 0xff, 0x20]), 4);
    }

    proptest! {
        /// Random bytes: the plain prefix is what a byte-by-byte scan finds.
        #[test]
        fn plain_prefix_matches_a_byte_scan(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let naive = bytes.iter().take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\').count();
            prop_assert_eq!(plain_prefix_len(&bytes), naive);
        }

        #[test]
        fn write_string_matches_reference(
            s in "(\\PC|[\u{0}-\u{1f}\"\\\\\u{7f}])*",
            prefix in "[a-z]{0,9}",
        ) {
            // After other output, as inside an envelope: only the string is
            // appended, and nothing of the slack stays behind.
            let mut out = prefix.clone().into_bytes();
            write_string(&s, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), prefix + &reference_escape(&s));
        }

        #[test]
        fn compare_utf16_matches_transcoding(a in any::<String>(), b in any::<String>()) {
            prop_assert_eq!(compare_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }

        #[test]
        fn compare_utf16_high_planes(a in "[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a]{0,3}",
                                      b in "[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a]{0,3}") {
            prop_assert_eq!(compare_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }

        /// Canonical output is valid JSON that means the same thing, and
        /// canonicalizing it again changes nothing.
        #[test]
        fn canonical_is_stable(v in arb_json()) {
            let once = to_canonical_vec(&v);
            let reparsed = parse(&once, ParseOptions { max_depth: 16, big_integers: BigIntegers::AsDouble }).unwrap();
            // serde_json's own float parser is only exact with its
            // `float_roundtrip` feature, so this crate's parser is the oracle.
            prop_assert_eq!(to_canonical_vec(&reparsed), once);
        }
    }
}
