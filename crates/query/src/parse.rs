//! The query text to [`Query`]: a recursive-descent parser that refuses
//! anything outside the grammar of `docs/search.md` with the byte offset
//! where it went wrong.
//!
//! ```text
//! query   = [ or ]
//! or      = and { "OR" and }
//! and     = unary { [ "AND" ] unary }           (terms side by side: all hold)
//! unary   = "-" unary | "NOT" unary | "(" or ")" | term
//! term    = time-field ( ">=" | ">" | "<=" | "<" ) instant
//!         | time-field ":" date                  (that whole UTC day)
//!         | field ":" value { "," value }        (any of the values)
//!         | text                                 (words, in this order)
//! ```

use jiff::{SignedDuration, Timestamp};

use crate::expr::{Expr, Field, Pattern, Query, TimeBound, TimeField};
use crate::extract::MAX_PATH_KEYS;
use crate::text::tokens;

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most terms in one query, each value of a field term counted.
pub const MAX_TERMS: usize = 64;
/// Deepest nesting of parentheses and negations.
pub const MAX_DEPTH: usize = 16;
/// Furthest back `now-…` may reach: 100 years.
const MAX_AGO_SECONDS: i64 = 36_500 * 86_400;

/// A query text that is not a query: where (a byte offset into the text)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {reason}")]
pub struct QueryError {
    pub at: usize,
    pub reason: String,
}

const FIELD_LIST: &str = "actor, action, resource, outcome, source, writer, stream, id, attributes.<path>, time, received";

impl Query {
    /// Parses `text`; relative times (`now`, `now-24h`) are taken from
    /// `now`.
    pub fn parse(text: &str, now: Timestamp) -> Result<Query, QueryError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(QueryError {
                at: MAX_QUERY_BYTES,
                reason: format!(
                    "the query is {} bytes; at most {MAX_QUERY_BYTES}",
                    text.len()
                ),
            });
        }
        let mut parser = Parser {
            src: text,
            pos: 0,
            now,
            terms: 0,
            depth: 0,
        };
        parser.skip_ws();
        if parser.at_end() {
            return Ok(Query { expr: None });
        }
        let expr = parser.or()?;
        parser.skip_ws();
        match parser.peek() {
            None => Ok(Query { expr: Some(expr) }),
            Some(')') => Err(parser.error("a `)` without its `(`")),
            Some(c) => Err(parser.error(format!("unexpected `{c}`"))),
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    now: Timestamp,
    terms: usize,
    depth: usize,
}

/// Characters that end a bare word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')'
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> QueryError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, at: usize, reason: impl Into<String>) -> QueryError {
        QueryError {
            at,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Skips white space; true if there was some.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos > start
    }

    /// Whether the keyword `word` (upper case, then a word's end) is next.
    fn at_keyword(&self, word: &str) -> bool {
        self.src[self.pos..].starts_with(word)
            && self.src[self.pos + word.len()..]
                .chars()
                .next()
                .is_none_or(ends_word)
    }

    fn count_term(&mut self, at: usize) -> Result<(), QueryError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(at, format!("more than {MAX_TERMS} terms")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.at_keyword("OR") {
                self.pos += 2;
                self.skip_ws();
                items.push(self.and()?);
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.unary()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.at_end() || self.peek() == Some(')') || self.at_keyword("OR") {
                self.pos = save;
                break;
            }
            if self.at_keyword("AND") {
                self.pos += 3;
                self.skip_ws();
            }
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        let start = self.pos;
        let negated = if self.peek() == Some('-') {
            self.bump();
            if self.peek().is_none_or(char::is_whitespace) {
                return Err(self.error_at(start, "`-` must be followed by the term it negates"));
            }
            true
        } else if self.at_keyword("NOT") {
            self.pos += 3;
            self.skip_ws();
            true
        } else {
            false
        };
        if !negated && self.peek() != Some('(') {
            return self.term();
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                start,
                format!("nested more than {MAX_DEPTH} deep (parentheses and negations)"),
            ));
        }
        let expr = if negated {
            Expr::Not(Box::new(self.unary()?))
        } else {
            self.bump();
            self.skip_ws();
            if self.peek() == Some(')') {
                return Err(self.error("empty parentheses"));
            }
            let inner = self.or()?;
            self.skip_ws();
            if self.bump() != Some(')') {
                return Err(self.error_at(start, "this `(` is never closed"));
            }
            inner
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn term(&mut self) -> Result<Expr, QueryError> {
        let start = self.pos;
        match self.peek() {
            None => return Err(self.error("expected a term")),
            Some(')') => return Err(self.error("a `)` without its `(`")),
            _ => {}
        }
        for keyword in ["AND", "OR"] {
            if self.at_keyword(keyword) {
                return Err(self.error(format!("`{keyword}` needs a term on each side")));
            }
        }
        let name_len = self.src[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.src.len() - start);
        let name = &self.src[start..start + name_len];
        let after = self.src[start + name_len..].chars().next();
        let time_field = match name {
            "time" => Some(TimeField::Time),
            "received" => Some(TimeField::Received),
            _ => None,
        };
        if let Some(field) = time_field
            && matches!(after, Some('<' | '>' | ':'))
        {
            self.pos = start + name_len;
            return self.time_term(field, start);
        }
        if name == "attributes" && after == Some('.') {
            self.pos = start + name_len + 1;
            let path = self.attribute_path()?;
            return self.field_term(Field::Attribute(path));
        }
        let known = time_field.is_some()
            || name == "attributes"
            || Field::NAMED.iter().any(|(named, _)| *named == name);
        if known && matches!(after, Some('=' | '<' | '>' | '!' | '~')) {
            let hint = if time_field.is_some() {
                "compare a time with >=, >, <= or <, or give a day with `:`"
            } else {
                "a field takes its value after `:` (negate with `-`)"
            };
            return Err(self.error_at(
                start + name_len,
                format!("`{name}` then `{}`: {hint}", after.unwrap_or(' ')),
            ));
        }
        if after == Some(':') && !name.is_empty() {
            let Some((_, field)) = Field::NAMED.iter().find(|(named, _)| *named == name) else {
                return Err(self.error_at(
                    start,
                    format!(
                        "unknown field `{name}` (fields: {FIELD_LIST}); to search for the text, put it in double quotes"
                    ),
                ));
            };
            self.pos = start + name_len + 1;
            return self.field_term(field.clone());
        }
        self.text_term()
    }

    fn field_term(&mut self, field: Field) -> Result<Expr, QueryError> {
        let mut patterns = Vec::new();
        loop {
            let at = self.pos;
            self.count_term(at)?;
            let Some(parts) = self.value(true)? else {
                return Err(self.error_at(at, "expected a value (an empty one is written \"\")"));
            };
            patterns.push(Pattern::from_parts(parts));
            if self.peek() == Some(',') {
                self.bump();
            } else {
                break;
            }
        }
        Ok(Expr::Field(field, patterns))
    }

    /// One value: quoted pieces, escaped and plain characters, and for a
    /// `field` term `*` wildcards, up to a word's end (or, in a field term,
    /// a `,` between alternatives). Returns its literal parts between
    /// wildcards, or None when nothing was written.
    fn value(&mut self, field: bool) -> Result<Option<Vec<String>>, QueryError> {
        let start = self.pos;
        let mut parts = vec![String::new()];
        while let Some(c) = self.peek() {
            if ends_word(c) || (field && c == ',') {
                break;
            }
            let at = self.pos;
            self.bump();
            let current = parts.len() - 1;
            match c {
                '"' => {
                    let quoted = self.quoted(at)?;
                    parts[current].push_str(&quoted);
                }
                '\\' => match self.bump() {
                    Some(escaped) => parts[current].push(escaped),
                    None => return Err(self.error_at(at, "a `\\` at the end escapes nothing")),
                },
                '*' if field => parts.push(String::new()),
                '*' => {
                    return Err(self.error_at(
                        at,
                        "a `*` needs a field: write e.g. actor:ali* (free text matches whole words)",
                    ));
                }
                _ => parts[current].push(c),
            }
        }
        Ok((self.pos > start).then_some(parts))
    }

    /// The rest of a quoted string whose `"` was at `open`.
    fn quoted(&mut self, open: usize) -> Result<String, QueryError> {
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error_at(open, "this `\"` is never closed")),
                Some('"') => return Ok(text),
                Some('\\') => match self.bump() {
                    Some(escaped) => text.push(escaped),
                    None => return Err(self.error_at(open, "this `\"` is never closed")),
                },
                Some(c) => text.push(c),
            }
        }
    }

    fn attribute_path(&mut self) -> Result<Vec<String>, QueryError> {
        let start = self.pos;
        let mut path = Vec::new();
        loop {
            let at = self.pos;
            let key = if self.peek() == Some('"') {
                self.bump();
                self.quoted(at)?
            } else {
                let len = self.src[at..]
                    .find(|c: char| ends_word(c) || matches!(c, '.' | ':' | '"' | '\\' | ',' | '*'))
                    .unwrap_or(self.src.len() - at);
                self.pos += len;
                self.src[at..at + len].to_string()
            };
            if key.is_empty() {
                return Err(self.error_at(at, "an attribute path needs a key here"));
            }
            path.push(key);
            if path.len() > MAX_PATH_KEYS {
                return Err(self.error_at(
                    start,
                    format!("an attribute path has at most {MAX_PATH_KEYS} keys"),
                ));
            }
            match self.bump() {
                Some('.') => continue,
                Some(':') => return Ok(path),
                _ => {
                    return Err(self.error_at(
                        start,
                        "expected `:` and a value after the attribute path (a key with other characters goes in double quotes)",
                    ));
                }
            }
        }
    }

    fn text_term(&mut self) -> Result<Expr, QueryError> {
        let at = self.pos;
        self.count_term(at)?;
        let parts = self.value(false)?.unwrap_or_default();
        let words = tokens(&parts.concat());
        if words.is_empty() {
            return Err(self.error_at(at, "free text needs a letter or a digit"));
        }
        Ok(Expr::Text(words))
    }

    fn time_term(&mut self, field: TimeField, start: usize) -> Result<Expr, QueryError> {
        self.count_term(start)?;
        let rest = &self.src[self.pos..];
        let (op, len) = [">=", "<=", ">", "<", ":"]
            .iter()
            .find(|op| rest.starts_with(**op))
            .map(|op| (*op, op.len()))
            .unwrap_or(("", 0));
        self.pos += len;
        let at = self.pos;
        let word_len = self.src[at..]
            .find(ends_word)
            .unwrap_or(self.src.len() - at);
        let word = &self.src[at..at + word_len];
        self.pos += word_len;
        if word.is_empty() {
            return Err(self.error_at(at, "expected a time after the comparison"));
        }
        if op == ":" {
            let Ok(date) = stele_event::time::parse_date(word) else {
                return Err(self.error_at(
                    at,
                    format!("`{word}` is not a date (YYYY-MM-DD); for an instant, compare with >=, >, <= or <"),
                ));
            };
            let (day_start, day_end) = day_bounds(date).ok_or_else(|| {
                self.error_at(at, format!("{word} is outside the times Stele keeps"))
            })?;
            return Ok(Expr::And(vec![
                Expr::Time(field, TimeBound::AtOrAfter(day_start)),
                Expr::Time(field, TimeBound::Before(day_end)),
            ]));
        }
        let instant = self.instant(word, at)?;
        Ok(Expr::Time(
            field,
            match op {
                ">=" => TimeBound::AtOrAfter(instant),
                ">" => TimeBound::After(instant),
                "<=" => TimeBound::AtOrBefore(instant),
                _ => TimeBound::Before(instant),
            },
        ))
    }

    /// `now`, `now-<N>s|m|h|d`, a date (its first instant, UTC) or an RFC
    /// 3339 timestamp.
    fn instant(&self, word: &str, at: usize) -> Result<Timestamp, QueryError> {
        let not_a_time = || {
            self.error_at(
                at,
                format!(
                    "`{word}` is not a time: write an RFC 3339 timestamp (2026-12-01T08:00:00Z), a date (2026-12-01) or now, now-15m, now-24h, now-7d"
                ),
            )
        };
        if word == "now" {
            return Ok(self.now);
        }
        if let Some(ago) = word.strip_prefix("now-") {
            let (digits, unit) = ago.split_at(ago.len().saturating_sub(1));
            let unit_seconds = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                _ => return Err(not_a_time()),
            };
            let count: i64 = digits.parse().map_err(|_| not_a_time())?;
            let seconds = count
                .checked_mul(unit_seconds)
                .filter(|s| *s <= MAX_AGO_SECONDS)
                .ok_or_else(|| {
                    self.error_at(at, format!("`{word}` reaches back more than 36500 days"))
                })?;
            return self
                .now
                .checked_sub(SignedDuration::from_secs(seconds))
                .map_err(|_| self.error_at(at, format!("`{word}` is before the earliest time")));
        }
        if let Ok(date) = stele_event::time::parse_date(word) {
            return day_bounds(date).map(|(start, _)| start).ok_or_else(|| {
                self.error_at(at, format!("{word} is outside the times Stele keeps"))
            });
        }
        word.parse::<Timestamp>().map_err(|_| not_a_time())
    }
}

/// The first instant of `date` (UTC) and of the day after; None for a
/// date before 1970, where no event is kept.
fn day_bounds(date: jiff::civil::Date) -> Option<(Timestamp, Timestamp)> {
    let day = stele_event::time::Day::from_date(date).ok()?;
    let start = Timestamp::from_second(day.start()).ok()?;
    let end = Timestamp::from_second(day.end()).ok()?;
    Some((start, end))
}
