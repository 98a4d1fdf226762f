//! A strict RFC 8259 JSON parser that produces a `serde_json::Value` while
//! enforcing what `serde_json` alone does not: duplicate keys are refused at
//! every depth, nesting is bounded, integer literals beyond ±2^53 are refused
//! (or, when reading canonical text, read as doubles), and numbers that
//! overflow a double are refused. It is not a general-purpose JSON library:
//! it parses one complete document from a byte slice, has no streaming mode,
//! and does not serialize (see [`crate::jcs`] for that).
//!
//! It exists instead of a `serde_json` visitor because a visitor only sees a
//! number after `serde_json` has converted it, and cannot tell the integer
//! literal `100000000000000000000` from `1e20`; the number rules here depend
//! on the literal's spelling.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::error::EventError;
use crate::jcs;

/// 2^53, the largest integer magnitude every IEEE 754 double can hold
/// exactly together with its neighbours; integer literals up to it are kept
/// as integers.
pub(crate) const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// How to treat an integer literal whose magnitude exceeds 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BigIntegers {
    /// Refuse it: client input, where silently rounding a big id would be a
    /// data loss the client does not see.
    Refuse,
    /// Read it as the nearest double: canonical (RFC 8785) text, where large
    /// doubles below 1e21 are written as plain integers.
    AsDouble,
}

/// What the parser enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseOptions {
    /// Deepest nesting accepted; the top-level container is depth 1.
    pub(crate) max_depth: usize,
    /// Treatment of integer literals beyond ±2^53.
    pub(crate) big_integers: BigIntegers,
}

/// The JSON type name of a value, as used in error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses one JSON document strictly (no duplicate keys at any depth, no
/// number that overflows a double, nesting at most `max_depth`), reading
/// integer literals beyond ±2^53 as the nearest double. For documents
/// other than client events that must still be unambiguous JSON (a
/// Kubernetes audit event, whose objects may carry such integers).
pub fn parse_strict(raw: &[u8], max_depth: usize) -> Result<Value, EventError> {
    parse(
        raw,
        ParseOptions {
            max_depth: max_depth.min(crate::MAX_DEPTH_CEILING),
            big_integers: BigIntegers::AsDouble,
        },
    )
}

/// Parses one JSON document from `raw`.
pub(crate) fn parse(raw: &[u8], options: ParseOptions) -> Result<Value, EventError> {
    let mut parser = Parser::new(raw, options)?;
    let value = parser.parse_value(0)?;
    parser.finish()?;
    Ok(value)
}

/// The members of a top-level object picked out by name: the value of each
/// name in `names` that is present, and the first other member name in
/// document order. Other members are parsed (and checked) but not kept.
#[derive(Debug)]
pub(crate) struct Members<const N: usize> {
    pub(crate) known: [Option<Value>; N],
    pub(crate) unknown: Option<String>,
}

impl<const N: usize> Members<N> {
    /// Picks the members out of an already parsed object.
    pub(crate) fn from_map(map: Map<String, Value>, names: &[&str; N]) -> Self {
        let mut sink = MemberSlots::new(names);
        for (key, value) in map {
            sink.insert(Cow::Owned(key), value);
        }
        sink.members
    }

    /// Takes the value of `names[i]`.
    pub(crate) fn take(&mut self, i: usize) -> Option<Value> {
        self.known.get_mut(i).and_then(Option::take)
    }
}

/// Where [`Parser::parse_object_into`] puts the members of an object.
trait ObjectSink {
    /// Whether a member of this name was already put here.
    fn holds(&self, key: &str) -> bool;
    fn insert(&mut self, key: Cow<'_, str>, value: Value);
}

impl ObjectSink for Map<String, Value> {
    fn holds(&self, key: &str) -> bool {
        self.contains_key(key)
    }

    fn insert(&mut self, key: Cow<'_, str>, value: Value) {
        Map::insert(self, key.into_owned(), value);
    }
}

/// Sorts members into [`Members`] by name.
struct MemberSlots<'n, const N: usize> {
    names: &'n [&'n str; N],
    members: Members<N>,
    /// Names of the other members, for the duplicate check; usually none.
    others: Vec<String>,
}

impl<'n, const N: usize> MemberSlots<'n, N> {
    fn new(names: &'n [&'n str; N]) -> Self {
        MemberSlots {
            names,
            members: Members {
                known: std::array::from_fn(|_| None),
                unknown: None,
            },
            others: Vec::new(),
        }
    }

    fn slot(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|name| *name == key)
    }
}

impl<const N: usize> ObjectSink for MemberSlots<'_, N> {
    fn holds(&self, key: &str) -> bool {
        match self.slot(key) {
            Some(i) => self.members.known.get(i).is_some_and(Option::is_some),
            None => self.others.iter().any(|other| other == key),
        }
    }

    fn insert(&mut self, key: Cow<'_, str>, value: Value) {
        match self.slot(&key).and_then(|i| self.members.known.get_mut(i)) {
            Some(known) => *known = Some(value),
            None => {
                if self.members.unknown.is_none() {
                    self.members.unknown = Some(key.clone().into_owned());
                }
                self.others.push(key.into_owned());
            }
        }
    }
}

/// Parses one JSON document that must be an object, the way [`parse`] does
/// (same errors, in the same order), but keeps its members by name instead
/// of building a map: the top level of an event is a fixed set of members,
/// and hashing each name into a map only to take it out again is most of
/// the cost of reading a small event. A document that is valid JSON but not
/// an object is refused with [`EventError::NotAnObject`].
pub(crate) fn parse_members<const N: usize>(
    raw: &[u8],
    options: ParseOptions,
    names: &[&str; N],
) -> Result<Members<N>, EventError> {
    let mut parser = Parser::new(raw, options)?;
    parser.skip_whitespace();
    if parser.peek() != Some(b'{') {
        let value = parser.parse_value(0)?;
        parser.finish()?;
        return Err(EventError::NotAnObject {
            found: type_name(&value),
        });
    }
    let mut sink = MemberSlots::new(names);
    parser.parse_object_into(1, &mut sink)?;
    parser.finish()?;
    Ok(sink.members)
}

/// Longest literal quoted back in a number error; the rest is elided so that
/// an error message stays small whatever the input.
const MAX_QUOTED_LITERAL: usize = 40;

/// Shortens a number literal for an error message. Number literals are
/// ASCII, so cutting at any byte is a valid string boundary.
fn quote_literal(literal: &str) -> String {
    match literal.get(..MAX_QUOTED_LITERAL) {
        Some(head) if literal.len() > MAX_QUOTED_LITERAL => format!("{head}…"),
        _ => literal.to_owned(),
    }
}

/// Recursive-descent parser state. `text` and `bytes` are the same input;
/// bytes are used for scanning, and `text` for slicing out string runs
/// without re-validating UTF-8.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    options: ParseOptions,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `raw`, which must be UTF-8.
    fn new(raw: &'a [u8], options: ParseOptions) -> Result<Parser<'a>, EventError> {
        let text = std::str::from_utf8(raw).map_err(|e| EventError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        Ok(Parser {
            text,
            bytes: raw,
            pos: 0,
            options,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn syntax(&self, reason: &'static str) -> EventError {
        EventError::Syntax {
            offset: self.pos,
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Parses the value at the current position; `depth` is the number of
    /// containers already open around it.
    fn parse_value(&mut self, depth: usize) -> Result<Value, EventError> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.syntax("unexpected end of input")),
            Some(b'{') => self.parse_object(depth + 1),
            Some(b'[') => self.parse_array(depth + 1),
            Some(b'"') => self.parse_string().map(Value::String),
            Some(b't') => self.parse_literal(b"true", Value::Bool(true)),
            Some(b'f') => self.parse_literal(b"false", Value::Bool(false)),
            Some(b'n') => self.parse_literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            Some(_) => Err(self.syntax("expected a JSON value")),
        }
    }

    fn parse_literal(&mut self, word: &[u8], value: Value) -> Result<Value, EventError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.syntax("expected a JSON value"))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), EventError> {
        if depth > self.options.max_depth {
            return Err(EventError::TooDeep {
                field: String::new(),
                limit: self.options.max_depth,
            });
        }
        Ok(())
    }

    fn parse_object(&mut self, depth: usize) -> Result<Value, EventError> {
        let mut map = Map::new();
        self.parse_object_into(depth, &mut map)?;
        Ok(Value::Object(map))
    }

    /// Parses the object whose `{` is at the current position, handing its
    /// members to `sink` in document order. A name the sink already holds
    /// is refused before its value is parsed, so that the error points at
    /// the duplicate rather than at whatever follows it.
    fn parse_object_into(
        &mut self,
        depth: usize,
        sink: &mut impl ObjectSink,
    ) -> Result<(), EventError> {
        self.check_depth(depth)?;
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a string key"));
            }
            let key = self.parse_key()?;
            if sink.holds(&key) {
                return Err(EventError::DuplicateKey {
                    field: key.into_owned(),
                });
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.syntax("expected ':' after an object key"));
            }
            self.pos += 1;
            let value = match self.parse_value(depth) {
                Ok(value) => value,
                Err(e) => return Err(e.within_key(&key)),
            };
            sink.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax("expected ',' or '}' in an object")),
            }
        }
    }

    /// Refuses anything but whitespace after the document.
    fn finish(&mut self) -> Result<(), EventError> {
        self.skip_whitespace();
        if self.pos != self.bytes.len() {
            return Err(EventError::TrailingData { offset: self.pos });
        }
        Ok(())
    }

    fn parse_array(&mut self, depth: usize) -> Result<Value, EventError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            match self.parse_value(depth) {
                Ok(value) => items.push(value),
                Err(e) => return Err(e.within_index(items.len())),
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']' in an array")),
            }
        }
    }

    /// Parses a string starting at its opening quote. Unescaped runs are
    /// found eight bytes at a time and copied as slices; they always start
    /// and end next to an ASCII byte, so they are valid `str` boundaries of
    /// the already-validated input.
    fn parse_string(&mut self) -> Result<String, EventError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            self.skip_plain();
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.push_run(&mut out, run_start)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.push_run(&mut out, run_start)?;
                    self.pos += 1;
                    self.parse_escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self.syntax("control character in a string must be escaped"));
                }
            }
        }
    }

    /// Moves past the bytes a string holds as they are.
    fn skip_plain(&mut self) {
        self.pos += jcs::plain_prefix_len(self.bytes.get(self.pos..).unwrap_or_default());
    }

    /// Parses an object key starting at its opening quote, borrowing it from
    /// the input when it holds no escape (member names seldom do).
    fn parse_key(&mut self) -> Result<Cow<'a, str>, EventError> {
        let start = self.pos + 1;
        self.pos = start;
        self.skip_plain();
        if self.peek() == Some(b'"')
            && let Some(key) = self.text.get(start..self.pos)
        {
            self.pos += 1;
            return Ok(Cow::Borrowed(key));
        }
        self.pos = start - 1;
        self.parse_string().map(Cow::Owned)
    }

    fn push_run(&self, out: &mut String, start: usize) -> Result<(), EventError> {
        let run = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| self.syntax("string run is not on a character boundary"))?;
        out.push_str(run);
        Ok(())
    }

    /// Parses the escape after a backslash and appends what it stands for.
    fn parse_escape(&mut self, out: &mut String) -> Result<(), EventError> {
        let Some(kind) = self.peek() else {
            return Err(self.syntax("unterminated escape"));
        };
        self.pos += 1;
        let c = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.parse_unicode_escape()?,
            _ => {
                self.pos -= 1;
                return Err(self.syntax("invalid escape"));
            }
        };
        out.push(c);
        Ok(())
    }

    /// Parses `XXXX` after `\u`, and a low surrogate escape after a high one.
    /// Lone surrogates are refused: they are not Unicode scalar values, so
    /// they cannot be held in a `String` nor canonicalized (RFC 8785 §3.2.2.2
    /// requires strings to be valid Unicode).
    fn parse_unicode_escape(&mut self) -> Result<char, EventError> {
        let first = self.parse_hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.syntax("lone high surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.parse_hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.syntax("high surrogate not followed by a low surrogate"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.syntax("lone low surrogate in a \\u escape")),
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| self.syntax("invalid \\u escape"))
    }

    fn parse_hex4(&mut self) -> Result<u16, EventError> {
        let mut value: u16 = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.syntax("expected four hex digits in a \\u escape")),
            };
            value = (value << 4) | u16::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Parses a number following the RFC 8259 grammar exactly (no leading
    /// `+`, no leading zeros, no bare `.5` or `5.`), then classifies it by
    /// spelling: a literal without fraction or exponent is an integer.
    fn parse_number(&mut self) -> Result<Value, EventError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => return Err(self.syntax("invalid number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(self.syntax("expected a digit after the decimal point"));
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(self.syntax("expected a digit in the exponent"));
            }
            integer = false;
        }
        let literal = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| self.syntax("invalid number"))?;

        if integer {
            let digits = literal.strip_prefix('-').unwrap_or(literal);
            // 2^53 has 16 digits and leading zeros are not allowed, so a
            // longer literal is out of range without parsing it.
            let magnitude = if digits.len() <= 16 {
                digits.parse::<u64>().ok()
            } else {
                None
            };
            match magnitude {
                Some(m) if m <= MAX_EXACT_INTEGER => {
                    let value = if negative {
                        // m <= 2^53, so the conversion cannot fail.
                        Value::from(-(i64::try_from(m).unwrap_or(0)))
                    } else {
                        Value::from(m)
                    };
                    return Ok(value);
                }
                _ if self.options.big_integers == BigIntegers::Refuse => {
                    return Err(EventError::IntegerOutOfRange {
                        field: String::new(),
                        literal: quote_literal(literal),
                    });
                }
                _ => {}
            }
        }

        // Rust's float parser rounds correctly to nearest and accepts every
        // spelling the grammar above lets through.
        let parsed: Option<f64> = literal.parse().ok();
        match parsed.and_then(Number::from_f64) {
            Some(number) => Ok(Value::Number(number)),
            None => Err(EventError::NonFiniteNumber {
                field: String::new(),
                literal: quote_literal(literal),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(raw: &str) -> Result<Value, EventError> {
        parse(
            raw.as_bytes(),
            ParseOptions {
                max_depth: 32,
                big_integers: BigIntegers::Refuse,
            },
        )
    }

    #[test]
    fn parses_all_value_kinds() {
        let v =
            strict(r#" {"a":[1,-2,3.5,true,false,null,"x\u00e9\ud83d\ude00\n"],"b":{}} "#).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":[1,-2,3.5,true,false,null,"xé😀\n"],"b":{}})
        );
    }

    #[test]
    fn refuses_grammar_violations() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "+1",
            ".5",
            "5.",
            "1e",
            "1e+",
            "-",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\u{1}\"",
            "tru",
            "nul",
            "{1:2}",
            "{\"a\" 1}",
            "[1 2]",
            "NaN",
            "Infinity",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\u{feff}{}",
        ] {
            let err = strict(bad).unwrap_err();
            assert_eq!(err.category(), "json", "{bad:?} gave {err}");
        }
    }

    #[test]
    fn trailing_data_is_refused() {
        assert_eq!(
            strict("{} {}").unwrap_err(),
            EventError::TrailingData { offset: 3 }
        );
    }

    #[test]
    fn number_paths_are_reported() {
        let err = strict(r#"{"a":{"b":[0,{"c":1e400}]}}"#).unwrap_err();
        assert_eq!(err.field(), Some("a.b[1].c"));
        assert!(matches!(err, EventError::NonFiniteNumber { .. }));
        let err = strict(r#"[[9007199254740993]]"#).unwrap_err();
        assert_eq!(err.field(), Some("[0][0]"));
    }

    #[test]
    fn big_integers_as_doubles_in_canonical_mode() {
        let v = parse(
            b"100000000000000000000",
            ParseOptions {
                max_depth: 4,
                big_integers: BigIntegers::AsDouble,
            },
        )
        .unwrap();
        assert_eq!(v.as_f64(), Some(1e20));
    }

    #[test]
    fn long_literals_are_shortened_in_errors() {
        let long = "1".repeat(500);
        let err = strict(&long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
