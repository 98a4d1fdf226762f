//! A small, strict, iterative JSON scanner that finds where values begin and
//! end in a byte slice without building them. The body and Kubernetes
//! adapters use it to cut a request into the exact byte ranges of its events,
//! so that each event's original bytes can be kept verbatim as its payload.
//!
//! It checks RFC 8259 syntax (literals, numbers, string escapes, control
//! characters), UTF-8 inside and outside strings, and nesting depth, using an
//! explicit stack instead of recursion so that hostile nesting can never
//! exhaust the call stack. It is not a parser: it produces no values, does not
//! look for duplicate keys and does not check what `\u` escapes denote; the
//! event parser that reads each range afterwards does that.

use std::ops::Range;

/// What went wrong while scanning, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanError {
    /// Byte offset in the scanned slice where the problem was found.
    pub offset: usize,
    /// The kind of problem.
    pub kind: ScanErrorKind,
}

/// The kinds of problem the scanner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanErrorKind {
    /// The bytes are not JSON text; the reason says what was expected.
    Syntax(&'static str),
    /// The bytes at the offset are not a valid UTF-8 sequence.
    InvalidUtf8,
    /// A container opens deeper than the depth limit allows.
    TooDeep {
        /// The limit in force, the scanned value itself being depth 1.
        limit: usize,
    },
}

fn syntax(offset: usize, reason: &'static str) -> ScanError {
    ScanError {
        offset,
        kind: ScanErrorKind::Syntax(reason),
    }
}

/// Whether `byte` is JSON insignificant whitespace.
pub(crate) fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The offset of the first non-whitespace byte at or after `pos`.
pub(crate) fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).copied().is_some_and(is_ws) {
        pos += 1;
    }
    pos
}

/// The length of the valid UTF-8 sequence starting at `pos`, if there is
/// one; the standard library decides validity so that overlong forms and
/// surrogates are refused exactly as `str::from_utf8` refuses them.
fn utf8_sequence_len(bytes: &[u8], pos: usize) -> Option<usize> {
    let width = match bytes.get(pos)? {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let sequence = bytes.get(pos..pos + width)?;
    std::str::from_utf8(sequence).ok().map(|_| width)
}

/// The error for an unexpected byte: bytes that do not form valid UTF-8 are
/// reported as an encoding problem, since that is what the sender must fix.
pub(crate) fn unexpected(bytes: &[u8], pos: usize, reason: &'static str) -> ScanError {
    match bytes.get(pos) {
        Some(&byte) if byte >= 0x80 && utf8_sequence_len(bytes, pos).is_none() => ScanError {
            offset: pos,
            kind: ScanErrorKind::InvalidUtf8,
        },
        None => syntax(pos, "unexpected end of input"),
        Some(_) => syntax(pos, reason),
    }
}

/// Which container an open bracket started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    Key,
    AfterValue,
}

/// Scans the one JSON value that starts exactly at `start` and returns the
/// offset just past it. Containers may nest at most `max_depth` deep, the
/// value itself counting as depth 1 if it is a container.
pub(crate) fn value_end(bytes: &[u8], start: usize, max_depth: usize) -> Result<usize, ScanError> {
    let mut stack: Vec<Container> = Vec::new();
    let mut pos = start;
    let mut expect = Expect::Value;
    loop {
        match expect {
            Expect::Value => {
                let Some(&byte) = bytes.get(pos) else {
                    return Err(syntax(pos, "expected a value, found the end of input"));
                };
                match byte {
                    b'{' | b'[' => {
                        if stack.len() >= max_depth {
                            return Err(ScanError {
                                offset: pos,
                                kind: ScanErrorKind::TooDeep { limit: max_depth },
                            });
                        }
                        let (container, close) = if byte == b'{' {
                            (Container::Object, b'}')
                        } else {
                            (Container::Array, b']')
                        };
                        stack.push(container);
                        pos = skip_ws(bytes, pos + 1);
                        if bytes.get(pos) == Some(&close) {
                            stack.pop();
                            pos += 1;
                            expect = Expect::AfterValue;
                        } else if container == Container::Object {
                            expect = Expect::Key;
                        }
                    }
                    b'"' => {
                        pos = string_end(bytes, pos)?;
                        expect = Expect::AfterValue;
                    }
                    b't' => {
                        pos = literal_end(bytes, pos, b"true")?;
                        expect = Expect::AfterValue;
                    }
                    b'f' => {
                        pos = literal_end(bytes, pos, b"false")?;
                        expect = Expect::AfterValue;
                    }
                    b'n' => {
                        pos = literal_end(bytes, pos, b"null")?;
                        expect = Expect::AfterValue;
                    }
                    b'-' | b'0'..=b'9' => {
                        pos = number_end(bytes, pos)?;
                        expect = Expect::AfterValue;
                    }
                    _ => return Err(unexpected(bytes, pos, "expected a value")),
                }
            }
            Expect::Key => {
                if bytes.get(pos) != Some(&b'"') {
                    return Err(unexpected(bytes, pos, "expected a string key"));
                }
                pos = skip_ws(bytes, string_end(bytes, pos)?);
                if bytes.get(pos) != Some(&b':') {
                    return Err(unexpected(bytes, pos, "expected ':' after a key"));
                }
                pos = skip_ws(bytes, pos + 1);
                expect = Expect::Value;
            }
            Expect::AfterValue => {
                let Some(&container) = stack.last() else {
                    return Ok(pos);
                };
                pos = skip_ws(bytes, pos);
                match (bytes.get(pos), container) {
                    (Some(b','), Container::Object) => {
                        pos = skip_ws(bytes, pos + 1);
                        expect = Expect::Key;
                    }
                    (Some(b','), Container::Array) => {
                        pos = skip_ws(bytes, pos + 1);
                        expect = Expect::Value;
                    }
                    (Some(b'}'), Container::Object) | (Some(b']'), Container::Array) => {
                        stack.pop();
                        pos += 1;
                    }
                    (_, Container::Object) => {
                        return Err(unexpected(bytes, pos, "expected ',' or '}'"));
                    }
                    (_, Container::Array) => {
                        return Err(unexpected(bytes, pos, "expected ',' or ']'"));
                    }
                }
            }
        }
    }
}

/// Scans a string starting at the opening quote at `pos` and returns the
/// offset just past the closing quote.
fn string_end(bytes: &[u8], pos: usize) -> Result<usize, ScanError> {
    let mut pos = pos + 1;
    loop {
        let Some(&byte) = bytes.get(pos) else {
            return Err(syntax(pos, "unterminated string"));
        };
        match byte {
            b'"' => return Ok(pos + 1),
            b'\\' => match bytes.get(pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
                Some(b'u') => {
                    let hex = bytes.get(pos + 2..pos + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return Err(syntax(pos, "expected four hex digits after \\u"));
                    }
                    pos += 6;
                }
                _ => return Err(syntax(pos, "invalid escape sequence")),
            },
            0x00..=0x1F => {
                return Err(syntax(pos, "control character in string (must be escaped)"));
            }
            0x20..=0x7F => pos += 1,
            _ => match utf8_sequence_len(bytes, pos) {
                Some(width) => pos += width,
                None => {
                    return Err(ScanError {
                        offset: pos,
                        kind: ScanErrorKind::InvalidUtf8,
                    });
                }
            },
        }
    }
}

fn literal_end(bytes: &[u8], pos: usize, literal: &[u8]) -> Result<usize, ScanError> {
    if bytes.get(pos..pos + literal.len()) == Some(literal) {
        Ok(pos + literal.len())
    } else {
        Err(syntax(pos, "invalid literal"))
    }
}

/// Scans `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number_end(bytes: &[u8], start: usize) -> Result<usize, ScanError> {
    let digits_from = |pos: usize| {
        bytes.get(pos..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let mut pos = start;
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match bytes.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos += digits_from(pos),
        _ => return Err(syntax(pos, "expected a digit")),
    }
    if bytes.get(pos) == Some(&b'.') {
        let count = digits_from(pos + 1);
        if count == 0 {
            return Err(syntax(pos + 1, "expected a digit after '.'"));
        }
        pos += 1 + count;
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(bytes.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let count = digits_from(pos);
        if count == 0 {
            return Err(syntax(pos, "expected a digit in the exponent"));
        }
        pos += count;
    }
    Ok(pos)
}

/// An error from [`ArrayElements`], with the index of
/// the element being scanned when it happened (`None` when it was found in
/// the punctuation between elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElementError {
    pub error: ScanError,
    pub element: Option<usize>,
}

/// Iterates over the byte ranges of the elements of the array whose `[` is
/// at the offset given to [`ArrayElements::new`]. Each element may nest
/// `max_depth` deep on its own. Elements are produced one at a time, so a
/// caller can stop after a limit without ever holding more ranges than that.
#[derive(Debug)]
pub(crate) struct ArrayElements<'a> {
    bytes: &'a [u8],
    pos: usize,
    index: usize,
    max_depth: usize,
    done: bool,
}

impl<'a> ArrayElements<'a> {
    /// `open` must be the offset of a `[`.
    pub(crate) fn new(bytes: &'a [u8], open: usize, max_depth: usize) -> Self {
        Self {
            bytes,
            pos: open + 1,
            index: 0,
            max_depth,
            done: false,
        }
    }

    /// The offset just past the closing `]`, once the iterator has returned
    /// `None`.
    pub(crate) fn end(&self) -> usize {
        self.pos
    }

    fn step(&mut self) -> Result<Option<Range<usize>>, ElementError> {
        let outside = |error| ElementError {
            error,
            element: None,
        };
        self.pos = skip_ws(self.bytes, self.pos);
        if self.index == 0 {
            if self.bytes.get(self.pos) == Some(&b']') {
                self.pos += 1;
                return Ok(None);
            }
        } else {
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos = skip_ws(self.bytes, self.pos + 1),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(None);
                }
                _ => {
                    return Err(outside(unexpected(
                        self.bytes,
                        self.pos,
                        "expected ',' or ']' after an array element",
                    )));
                }
            }
        }
        let start = self.pos;
        let end = value_end(self.bytes, start, self.max_depth).map_err(|error| ElementError {
            error,
            element: Some(self.index),
        })?;
        self.pos = end;
        self.index += 1;
        Ok(Some(start..end))
    }
}

impl Iterator for ArrayElements<'_> {
    type Item = Result<Range<usize>, ElementError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.step();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }
}

/// Walks the members of the object whose `{` is at the offset given to
/// [`ObjectMembers::new`], one key at a time. The caller scans each value
/// itself (with [`value_end`], or with [`ArrayElements`] when it wants the
/// elements) and reports where it ended with [`ObjectMembers::value_scanned`];
/// this lets a caller give precise positions for errors inside a value it
/// cares about without scanning that value twice.
#[derive(Debug)]
pub(crate) struct ObjectMembers<'a> {
    bytes: &'a [u8],
    pos: usize,
    first: bool,
}

impl<'a> ObjectMembers<'a> {
    /// `open` must be the offset of a `{`.
    pub(crate) fn new(bytes: &'a [u8], open: usize) -> Self {
        Self {
            bytes,
            pos: open + 1,
            first: true,
        }
    }

    /// Reads the next key and the `:` after it. Returns the key's range
    /// (quotes included, escapes not decoded) and the offset where its value
    /// starts, or `None` after the closing `}` (then [`Self::end`] is just
    /// past it).
    pub(crate) fn next_key(&mut self) -> Result<Option<(Range<usize>, usize)>, ScanError> {
        self.pos = skip_ws(self.bytes, self.pos);
        if self.first {
            self.first = false;
            if self.bytes.get(self.pos) == Some(&b'}') {
                self.pos += 1;
                return Ok(None);
            }
        } else {
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos = skip_ws(self.bytes, self.pos + 1),
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(None);
                }
                _ => {
                    return Err(unexpected(
                        self.bytes,
                        self.pos,
                        "expected ',' or '}' after an object member",
                    ));
                }
            }
        }
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(unexpected(self.bytes, self.pos, "expected a string key"));
        }
        let key_start = self.pos;
        let key_end = string_end(self.bytes, key_start)?;
        self.pos = skip_ws(self.bytes, key_end);
        if self.bytes.get(self.pos) != Some(&b':') {
            return Err(unexpected(self.bytes, self.pos, "expected ':' after a key"));
        }
        self.pos = skip_ws(self.bytes, self.pos + 1);
        Ok(Some((key_start..key_end, self.pos)))
    }

    /// Records that the caller scanned the current value up to `end`.
    pub(crate) fn value_scanned(&mut self, end: usize) {
        self.pos = end;
    }

    /// The offset just past the closing `}`, once [`Self::next_key`] has
    /// returned `None`.
    pub(crate) fn end(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &[u8], depth: usize) -> Result<usize, ScanError> {
        value_end(text, 0, depth)
    }

    #[test]
    fn accepts_valid_values() {
        for ok in [
            &b"{}"[..],
            b"[]",
            b"0",
            b"-0.5e+10",
            b"1E5",
            b"true",
            b"false",
            b"null",
            b"\"a\\u00e9\\n\\\"\"",
            "\"é日本🎉\"".as_bytes(),
            b"{\"a\" : [1, {\"b\":null}] , \"c\":\"d\"}",
            b"[ [ ] , { } ]",
        ] {
            assert_eq!(
                whole(ok, 8),
                Ok(ok.len()),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[test]
    fn stops_at_the_end_of_the_value() {
        assert_eq!(whole(b"{} {}", 8), Ok(2));
        assert_eq!(whole(b"12,", 8), Ok(2));
    }

    #[test]
    fn refuses_invalid_syntax() {
        for bad in [
            &b""[..],
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"[01]",
            b"1.",
            b"1e",
            b"-",
            b"tru",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"a\nb\"",
            b"[1 2]",
            b"{\"a\":1]",
            b"'a'",
        ] {
            let error = whole(bad, 8).unwrap_err();
            assert!(
                matches!(error.kind, ScanErrorKind::Syntax(_)),
                "{}: {error:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reports_invalid_utf8_with_its_offset() {
        for (bad, offset) in [
            (&b"\"ab\xff\""[..], 3),
            (b"\"\xc3\"", 1),
            (b"\"\xed\xa0\x80\"", 1),
            (b"\"\xc0\xaf\"", 1),
            (b"[1,\xfe]", 3),
        ] {
            assert_eq!(
                whole(bad, 8),
                Err(ScanError {
                    offset,
                    kind: ScanErrorKind::InvalidUtf8
                })
            );
        }
        // Valid UTF-8 outside a string is a syntax error, not an encoding one.
        assert!(matches!(
            whole("[é]".as_bytes(), 8).unwrap_err().kind,
            ScanErrorKind::Syntax(_)
        ));
    }

    #[test]
    fn bounds_depth_without_recursion() {
        assert_eq!(whole(b"[[1]]", 2), Ok(5));
        assert_eq!(
            whole(b"[[[1]]]", 2),
            Err(ScanError {
                offset: 2,
                kind: ScanErrorKind::TooDeep { limit: 2 }
            })
        );
        let deep = "[".repeat(1_000_000);
        assert!(matches!(
            whole(deep.as_bytes(), 128).unwrap_err().kind,
            ScanErrorKind::TooDeep { limit: 128 }
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(whole(deep.as_bytes(), usize::MAX), Ok(deep.len()));
    }

    #[test]
    fn array_elements_are_exact_ranges() {
        let text = b"[ {\"a\":1} ,2,\"x\" ]  ";
        let mut elements = ArrayElements::new(text, 0, 8);
        let ranges: Vec<_> = elements.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(ranges, vec![2..9, 11..12, 13..16]);
        assert_eq!(elements.end(), 18);
        let mut empty = ArrayElements::new(b"[ ]", 0, 8);
        assert!(empty.next().is_none());
        assert_eq!(empty.end(), 3);
    }

    #[test]
    fn array_errors_name_the_element() {
        let error = ArrayElements::new(b"[1,{\"a\":}]", 0, 8)
            .find_map(Result::err)
            .unwrap();
        assert_eq!(error.element, Some(1));
        let error = ArrayElements::new(b"[1 2]", 0, 8)
            .find_map(Result::err)
            .unwrap();
        assert_eq!(error.element, None);
        let error = ArrayElements::new(b"[1,", 0, 8)
            .find_map(Result::err)
            .unwrap();
        assert_eq!(error.element, Some(1));
    }

    #[test]
    fn object_members() {
        let text = b"{ \"k\" : [1] , \"\\u006b2\":{} }";
        let mut members = ObjectMembers::new(text, 0);
        let mut found = Vec::new();
        while let Some((key, value_start)) = members.next_key().unwrap() {
            let end = value_end(text, value_start, 8).unwrap();
            members.value_scanned(end);
            found.push((text[key].to_vec(), text[value_start..end].to_vec()));
        }
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], (b"\"k\"".to_vec(), b"[1]".to_vec()));
        assert_eq!(found[1].1, b"{}".to_vec());
        assert_eq!(members.end(), text.len());
        let mut trailing = ObjectMembers::new(b"{\"a\":1,}", 0);
        let (_, start) = trailing.next_key().unwrap().unwrap();
        trailing.value_scanned(start + 1);
        assert!(trailing.next_key().is_err());
        assert_eq!(ObjectMembers::new(b"{ }", 0).next_key(), Ok(None));
    }
}
