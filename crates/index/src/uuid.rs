//! Event ids as numbers: the server gives every event a UUID in its
//! canonical text (lowercase hex, hyphenated), unique per event, which a
//! part keeps as a 128-bit column instead of a dictionary of distinct
//! values.

/// The number of a canonical UUID text, or `None` for any other text
/// (and for the all-ones UUID, which marks "not a number" in the column).
pub(crate) fn parse(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    (value != NONE).then_some(value)
}

/// The column's mark for an id kept in the dictionary instead.
pub(crate) const NONE: u128 = u128::MAX;

/// The canonical text of `value`, written into `out`.
pub(crate) fn write(value: u128, out: &mut [u8; 36]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut nibble = 32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        nibble -= 1;
        *slot = HEX[((value >> (nibble * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(out).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_texts_round_trip_and_others_are_refused() {
        let text = "01a2513e-234f-7da0-82bf-bfe759779cfe";
        let value = parse(text);
        assert!(value.is_some());
        let mut out = [0u8; 36];
        assert_eq!(write(value.unwrap_or_default(), &mut out), text);
        for other in [
            "01A2513E-234F-7DA0-82BF-BFE759779CFE",
            "01a2513e234f7da082bfbfe759779cfe",
            "01a2513e-234f-7da0-82bf-bfe759779cf",
            "01a2513e-234f-7da0-82bf-bfe759779cfg",
            "01a2513e_234f-7da0-82bf-bfe759779cfe",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
        assert_eq!(write(0, &mut out), "00000000-0000-0000-0000-000000000000");
    }
}
