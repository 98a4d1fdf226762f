//! The body of a C2SP tlog-checkpoint: origin, tree size, root hash and
//! optional extension lines.
//!
//! This module prints and strictly parses the note *text* of a checkpoint.
//! It does not sign or verify anything: wrapping the text in a signed note
//! and checking its signatures is the job of [`crate::note`].

use crate::hash::Hash;

/// Errors from parsing or validating a checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not end with a newline, so its last line is unterminated.
    #[error("checkpoint line {line}: not terminated by a newline")]
    UnterminatedLine {
        /// The 1-based line number.
        line: usize,
    },
    /// The body has fewer than the three mandatory lines.
    #[error("checkpoint has {lines} lines, at least 3 (origin, tree size, root hash) are required")]
    TooFewLines {
        /// The number of lines found.
        lines: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint line 1: origin is empty")]
    EmptyOrigin,
    /// The origin contains a newline (only possible when printing a built value).
    #[error("checkpoint origin contains a newline")]
    OriginHasNewline,
    /// The tree size line is empty.
    #[error("checkpoint line 2: tree size is empty")]
    EmptySize,
    /// The tree size has a character other than an ASCII digit.
    #[error("checkpoint line 2: tree size {text:?} is not an ASCII decimal number")]
    SizeNotDecimal {
        /// The line's text.
        text: String,
    },
    /// The tree size has a leading zero.
    #[error("checkpoint line 2: tree size has a leading zero")]
    SizeLeadingZero,
    /// The tree size does not fit in 64 bits.
    #[error("checkpoint line 2: tree size {text} does not fit in 64 bits")]
    SizeOverflow {
        /// The line's text.
        text: String,
    },
    /// The root hash line is not base64 of exactly 32 bytes.
    #[error("checkpoint line 3: root hash is not canonical base64 of 32 bytes: {reason}")]
    BadRoot {
        /// What was wrong.
        reason: String,
    },
    /// An extension line is empty.
    #[error("checkpoint line {line}: extension line is empty")]
    EmptyExtension {
        /// The 1-based line number.
        line: usize,
    },
    /// An extension contains a newline (only possible when printing a built value).
    #[error("checkpoint extension {index} contains a newline")]
    ExtensionHasNewline {
        /// The 0-based position of the extension.
        index: usize,
    },
}

/// A log's signed tree head, without its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique identity, conventionally a schema-less URL.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree at that size.
    pub root: Hash,
    /// Opaque extension lines, without their newlines (NOT RECOMMENDED by the spec).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Checks that [`Checkpoint::to_body`] would print text that parses back to this value.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        if self.origin.contains('\n') {
            return Err(CheckpointError::OriginHasNewline);
        }
        for (index, ext) in self.extensions.iter().enumerate() {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: index + 4 });
            }
            if ext.contains('\n') {
                return Err(CheckpointError::ExtensionHasNewline { index });
            }
        }
        Ok(())
    }

    /// The note text `origin\nsize\nbase64(root)\n[extension\n]*`.
    ///
    /// This does not validate; call [`Checkpoint::validate`] (or use
    /// [`Checkpoint::try_to_body`]) for values not produced by
    /// [`Checkpoint::parse`], since an origin holding a newline would print
    /// text that means something else.
    pub fn to_body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// [`Checkpoint::to_body`] after [`Checkpoint::validate`].
    pub fn try_to_body(&self) -> Result<String, CheckpointError> {
        self.validate()?;
        Ok(self.to_body())
    }

    /// Strictly parses a checkpoint body (the text of a signed note).
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let Some(content) = body.strip_suffix('\n') else {
            // Counting the lines tells which one lacks its newline.
            let line = body.split('\n').count();
            return Err(CheckpointError::UnterminatedLine { line });
        };
        let lines: Vec<&str> = content.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines[1])?;
        let root = Hash::from_base64(lines[2]).map_err(|e| CheckpointError::BadRoot {
            reason: e.to_string(),
        })?;
        let mut extensions = Vec::with_capacity(lines.len() - 3);
        for (i, ext) in lines.iter().enumerate().skip(3) {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: i + 1 });
            }
            extensions.push((*ext).to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// Parses the tree size line: ASCII digits, no leading zero unless exactly "0".
fn parse_size(text: &str) -> Result<u64, CheckpointError> {
    if text.is_empty() {
        return Err(CheckpointError::EmptySize);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckpointError::SizeNotDecimal { text: text.into() });
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(CheckpointError::SizeLeadingZero);
    }
    text.parse()
        .map_err(|_| CheckpointError::SizeOverflow { text: text.into() })
}
