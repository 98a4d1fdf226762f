//! The parsed query: a boolean expression over terms, and the normalized
//! text it writes back.

use std::fmt;

use jiff::Timestamp;

/// A parsed query. The empty query matches every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub(crate) expr: Option<Expr>,
}

impl Query {
    /// The expression, if the query is not empty.
    pub fn expr(&self) -> Option<&Expr> {
        self.expr.as_ref()
    }
}

/// A boolean expression over terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every one holds (two or more).
    And(Vec<Expr>),
    /// At least one holds (two or more).
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// The field's value matches one of the patterns (one or more).
    Field(Field, Vec<Pattern>),
    /// The time field is on the bound's side of its instant; an event
    /// without the field does not match.
    Time(TimeField, TimeBound),
    /// The words, lowercased, appear one after the other in one value of
    /// the event ([`crate::tokens`]).
    Text(Vec<String>),
}

/// A field a term names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Actor,
    Action,
    Resource,
    Outcome,
    /// The envelope's source: the client's, else the ingestion channel.
    Source,
    /// The authenticated principal that appended the event.
    Writer,
    Stream,
    /// The server-assigned event id.
    Id,
    /// A member of `attributes`, by its path of keys.
    Attribute(Vec<String>),
}

impl Field {
    /// The fields named by a plain word, as written in a query.
    pub const NAMED: [(&'static str, Field); 8] = [
        ("actor", Field::Actor),
        ("action", Field::Action),
        ("resource", Field::Resource),
        ("outcome", Field::Outcome),
        ("source", Field::Source),
        ("writer", Field::Writer),
        ("stream", Field::Stream),
        ("id", Field::Id),
    ];
}

/// What a value is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The whole value, exactly (case-sensitive).
    Exact(String),
    /// The value begins with this.
    Prefix(String),
    /// The literal parts between `*` wildcards (at least two parts; a part
    /// may itself hold a `*`, written escaped).
    Glob(Vec<String>),
}

impl Pattern {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(text) => value == text,
            Pattern::Prefix(text) => value.starts_with(text.as_str()),
            Pattern::Glob(parts) => stele_policy::glob_matches(parts, value),
        }
    }

    /// The pattern of literal parts separated by wildcards.
    pub(crate) fn from_parts(mut parts: Vec<String>) -> Pattern {
        match parts.len() {
            0 => Pattern::Exact(String::new()),
            1 => Pattern::Exact(parts.remove(0)),
            2 if parts[1].is_empty() => Pattern::Prefix(parts.remove(0)),
            _ => Pattern::Glob(parts),
        }
    }
}

/// A field holding a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// When it happened, as the client says (`time`).
    Time,
    /// When the server received it (`received_at`).
    Received,
}

/// One side of a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Before(Timestamp),
    AtOrBefore(Timestamp),
    After(Timestamp),
    AtOrAfter(Timestamp),
}

impl TimeBound {
    /// Whether `at` is on this side.
    pub fn holds(&self, at: Timestamp) -> bool {
        match *self {
            TimeBound::Before(t) => at < t,
            TimeBound::AtOrBefore(t) => at <= t,
            TimeBound::After(t) => at > t,
            TimeBound::AtOrAfter(t) => at >= t,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Some(expr) => write_expr(f, expr, false),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, false)
    }
}

/// Writes `expr`; `nested` when it is an operand (an `Or` inside an `And`
/// or a `Not` is parenthesized; an `And` inside a `Not` too).
fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr, nested: bool) -> fmt::Result {
    match expr {
        Expr::And(items) | Expr::Or(items) => {
            let or = matches!(expr, Expr::Or(_));
            if nested {
                f.write_str("(")?;
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(if or { " OR " } else { " " })?;
                }
                // Operands of an AND that are ORs need parentheses; an AND
                // inside an OR does not, but one is written anyway when it
                // came that way, so the text parses back to the same tree.
                write_expr(f, item, true)?;
            }
            if nested {
                f.write_str(")")?;
            }
            Ok(())
        }
        Expr::Not(inner) => {
            f.write_str("-")?;
            write_expr(f, inner, true)
        }
        Expr::Field(field, patterns) => {
            write_field(f, field)?;
            f.write_str(":")?;
            for (i, pattern) in patterns.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write_pattern(f, pattern)?;
            }
            Ok(())
        }
        Expr::Time(field, bound) => {
            f.write_str(match field {
                TimeField::Time => "time",
                TimeField::Received => "received",
            })?;
            let (op, at) = match bound {
                TimeBound::Before(t) => ("<", t),
                TimeBound::AtOrBefore(t) => ("<=", t),
                TimeBound::After(t) => (">", t),
                TimeBound::AtOrAfter(t) => (">=", t),
            };
            write!(f, "{op}{at}")
        }
        Expr::Text(words) => write_literal(f, &words.join(" "), true),
    }
}

fn write_field(f: &mut fmt::Formatter<'_>, field: &Field) -> fmt::Result {
    if let Field::Attribute(path) = field {
        f.write_str("attributes")?;
        for key in path {
            f.write_str(".")?;
            if key
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                && !key.is_empty()
            {
                f.write_str(key)?;
            } else {
                write_quoted(f, key)?;
            }
        }
        return Ok(());
    }
    let name = Field::NAMED
        .iter()
        .find(|(_, named)| named == field)
        .map(|(name, _)| *name)
        .unwrap_or("?");
    f.write_str(name)
}

fn write_pattern(f: &mut fmt::Formatter<'_>, pattern: &Pattern) -> fmt::Result {
    match pattern {
        Pattern::Exact(text) => write_literal(f, text, false),
        Pattern::Prefix(text) => {
            write_literal(f, text, false)?;
            f.write_str("*")
        }
        Pattern::Glob(parts) => {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str("*")?;
                }
                if !part.is_empty() {
                    write_literal(f, part, false)?;
                }
            }
            Ok(())
        }
    }
}

/// A literal: bare when every character is plain, else quoted. A text term
/// is always quoted when it holds more than one word, or could be read as
/// a keyword or a field term.
fn write_literal(f: &mut fmt::Formatter<'_>, text: &str, text_term: bool) -> fmt::Result {
    let plain = !text.is_empty()
        && text.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '.' | '/' | '@' | '_' | '-' | '+' | '=' | '#' | '~')
        })
        && !text.starts_with('-');
    let keyword = text_term && matches!(text, "AND" | "OR" | "NOT");
    if plain && !keyword {
        f.write_str(text)
    } else {
        write_quoted(f, text)
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}
