//! Errors of this crate: [`PolicyError`] for reading and decoding policy
//! sources, [`PolicyErrors`] (a list of [`Problem`]s) for everything wrong
//! with a policy's content, and [`RouteError`] for events no stream accepts.

use std::fmt;

/// Reading or decoding a [`crate::PolicySource`] failed.
///
/// These are I/O and encoding failures, never content problems: content is
/// checked by [`crate::Policy::from_source`], which reports [`PolicyErrors`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file could not be read. Fatal for the caller: fix the path
    /// or permissions.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The path that was read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A policy file is not UTF-8.
    #[error("policy file {path} is not valid UTF-8")]
    NotUtf8 {
        /// The path that was read.
        path: String,
    },
    /// Stored policy source bytes do not decode.
    #[error("stored policy source does not decode: {reason}")]
    BadStoredSource {
        /// Why decoding failed.
        reason: String,
    },
}

/// One problem found in a policy: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (the TOML file, or the Cedar side file).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in a policy, in the order found (TOML first, then
/// Cedar). Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    /// The problems.
    pub problems: Vec<Problem>,
}

impl PolicyErrors {
    /// Whether any problem's message contains `needle` (a test helper that
    /// callers may also use to classify errors).
    pub fn mentions(&self, needle: &str) -> bool {
        self.problems.iter().any(|p| p.message.contains(needle))
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "policy refused ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// No stream accepts an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The client asked for a stream the policy does not declare. The
    /// client must fix its request (HTTP 400), or the operator the policy.
    #[error("stream {stream:?} is not declared in the policy")]
    UnknownStream {
        /// The requested stream.
        stream: String,
    },
    /// The client asked for a reserved (`_`-prefixed) stream; only Stele
    /// itself writes there.
    #[error("stream {stream:?} is reserved for Stele itself")]
    ReservedStream {
        /// The requested stream.
        stream: String,
    },
}

/// Where a piece of text sits in a file: used to turn byte offsets into
/// line and column numbers.
#[derive(Debug, Clone)]
pub(crate) struct TextMap<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl TextMap<'_> {
    /// A problem at byte `offset` of the text (clamped into the text).
    pub(crate) fn problem_at(&self, offset: usize, message: String) -> Problem {
        let (line, column) = line_column(self.text, offset);
        Problem {
            file: self.file.to_owned(),
            line: Some(line),
            column: Some(column),
            message,
        }
    }

    /// A problem with no position.
    pub(crate) fn problem(&self, message: String) -> Problem {
        Problem {
            file: self.file.to_owned(),
            line: None,
            column: None,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
