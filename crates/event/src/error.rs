//! The one error type of this crate, [`EventError`], with a stable field
//! path ([`EventError::field`]) and a coarse category
//! ([`EventError::category`]) so callers can map refusals to responses
//! without matching on message text. It is not a transport error type: it
//! carries no HTTP status codes and no I/O causes, because this crate does no
//! I/O.

use std::fmt;

/// Everything that can make this crate refuse an event, a value or a stored
/// envelope.
///
/// Field paths use `.` between object keys and `[i]` for array indices, for
/// example `attributes.items[3].bytes`; an empty path means the document
/// itself. Display messages are meant for API clients and name the field,
/// the limit or the byte offset involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The raw event is larger than [`crate::Limits::max_event_bytes`].
    #[error("event is {size} bytes, over the max_event_bytes limit of {limit}")]
    EventTooLarge {
        /// Size of the raw event in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The input is not valid UTF-8.
    #[error("event is not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },

    /// The input is not JSON text as RFC 8259 defines it.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset where the problem was found.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },

    /// Something other than whitespace follows the top-level value.
    #[error("invalid JSON at byte {offset}: trailing data after the top-level value")]
    TrailingData {
        /// Byte offset of the first trailing byte.
        offset: usize,
    },

    /// The same key appears twice in one object, at any depth.
    #[error("field \"{field}\": duplicate key")]
    DuplicateKey {
        /// Path of the duplicated key, the key itself included.
        field: String,
    },

    /// Containers nest deeper than [`crate::Limits::max_depth`].
    #[error("{}: nesting deeper than the max_depth limit of {limit}", describe_path(.field))]
    TooDeep {
        /// Path of the first container past the limit.
        field: String,
        /// The limit in force.
        limit: usize,
    },

    /// An integer literal whose magnitude exceeds 2^53; such integers cannot
    /// be kept exactly as IEEE 754 doubles, which RFC 8785 requires.
    #[error(
        "field \"{field}\": integer {literal} is outside ±2^53 and cannot be kept exactly; send it as a string"
    )]
    IntegerOutOfRange {
        /// Path of the number.
        field: String,
        /// The literal as received, shortened if very long.
        literal: String,
    },

    /// A number that overflows an IEEE 754 double (for example `1e400`).
    #[error("field \"{field}\": number {literal} is not a finite double")]
    NonFiniteNumber {
        /// Path of the number.
        field: String,
        /// The literal as received, shortened if very long.
        literal: String,
    },

    /// The document is valid JSON but not an object.
    #[error("event must be a JSON object, got {found}")]
    NotAnObject {
        /// JSON type found instead.
        found: &'static str,
    },

    /// A member that this format does not define.
    #[error("unknown field \"{field}\"")]
    UnknownField {
        /// Path of the unknown member.
        field: String,
    },

    /// A required member is absent.
    #[error("missing required field \"{field}\"")]
    MissingField {
        /// Path of the missing member.
        field: String,
    },

    /// A member has the wrong JSON type.
    #[error("field \"{field}\": expected {expected}, got {found}")]
    WrongType {
        /// Path of the member.
        field: String,
        /// What the format requires, e.g. "a non-empty string".
        expected: &'static str,
        /// JSON type found, e.g. "number".
        found: &'static str,
    },

    /// A member that must be a non-empty string is `""`.
    #[error("field \"{field}\": expected a non-empty string, got an empty string")]
    EmptyString {
        /// Path of the member.
        field: String,
    },

    /// A string member is longer than [`crate::Limits::max_string_bytes`].
    #[error("field \"{field}\": {len} bytes, over the max_string_bytes limit of {limit}")]
    StringTooLong {
        /// Path of the member.
        field: String,
        /// Its length in bytes (UTF-8, after unescaping).
        len: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The client `id` is longer than [`crate::Limits::max_id_bytes`].
    #[error("field \"{field}\": {len} bytes, over the max_id_bytes limit of {limit}")]
    IdTooLong {
        /// Path of the member.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        limit: usize,
    },

    /// `attributes` holds more keys in total (all depths) than
    /// [`crate::Limits::max_attribute_keys`].
    #[error(
        "field \"attributes\": {count} keys in total, over the max_attribute_keys limit of {limit}"
    )]
    TooManyAttributeKeys {
        /// Number of keys found, counting nested objects.
        count: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A timestamp member is not an RFC 3339 timestamp (or, in a stored
    /// envelope, not in the normalized UTC form).
    #[error("field \"{field}\": invalid RFC 3339 timestamp: {reason}")]
    InvalidTime {
        /// Path of the member.
        field: String,
        /// Why it was refused.
        reason: String,
    },

    /// A stream name does not follow the stream name syntax.
    #[error("field \"{field}\": invalid stream name: {reason}")]
    InvalidStream {
        /// Path of the member.
        field: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A client asked for a stream whose name starts with `_`.
    #[error("field \"{field}\": stream names starting with \"_\" are reserved for the system")]
    ReservedStream {
        /// Path of the member.
        field: String,
    },

    /// A stored envelope carries a `v` member other than `1`.
    #[error("envelope version {found} is not supported (expected 1)")]
    UnsupportedVersion {
        /// The `v` member as found, in JSON text.
        found: String,
    },

    /// Stored envelope bytes parse, but are not byte-for-byte the canonical
    /// (RFC 8785) form of what they contain.
    #[error("envelope bytes are not in canonical (RFC 8785) form")]
    NotCanonical,

    /// The stored form of an envelope (what follows the salt in a segment
    /// record) cannot be unpacked; see `docs/formats/event.md`.
    #[error("stored envelope is malformed: {reason}")]
    BadStoredForm {
        /// What was wrong.
        reason: &'static str,
    },

    /// A value that goes into an envelope is unusable, e.g. an id that is not
    /// a UUID string.
    #[error("field \"{field}\": {reason}")]
    InvalidEnvelope {
        /// Path of the member.
        field: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl EventError {
    /// The path of the field the error is about, if it is about one.
    ///
    /// The path is stable API: `actor`, `attributes.items[3].bytes`,
    /// `event.time` (inside a stored envelope). Errors about the document as
    /// a whole return `None`.
    pub fn field(&self) -> Option<&str> {
        let path = match self {
            Self::DuplicateKey { field }
            | Self::TooDeep { field, .. }
            | Self::IntegerOutOfRange { field, .. }
            | Self::NonFiniteNumber { field, .. }
            | Self::UnknownField { field }
            | Self::MissingField { field }
            | Self::WrongType { field, .. }
            | Self::EmptyString { field }
            | Self::StringTooLong { field, .. }
            | Self::IdTooLong { field, .. }
            | Self::InvalidTime { field, .. }
            | Self::InvalidStream { field, .. }
            | Self::ReservedStream { field }
            | Self::InvalidEnvelope { field, .. } => field.as_str(),
            Self::TooManyAttributeKeys { .. } => "attributes",
            Self::UnsupportedVersion { .. } => "v",
            Self::EventTooLarge { .. }
            | Self::InvalidUtf8 { .. }
            | Self::Syntax { .. }
            | Self::TrailingData { .. }
            | Self::NotAnObject { .. }
            | Self::NotCanonical
            | Self::BadStoredForm { .. } => "",
        };
        if path.is_empty() { None } else { Some(path) }
    }

    /// A stable, coarse class of the error:
    ///
    /// - `"json"`: the bytes are not acceptable JSON (encoding, syntax,
    ///   duplicate keys, numbers that cannot be kept exactly, not an object);
    /// - `"field"`: valid JSON with the wrong shape (unknown, missing or
    ///   mistyped fields, bad timestamps or stream names);
    /// - `"limit"`: a [`crate::Limits`] bound was exceeded;
    /// - `"envelope"`: a stored envelope (or a value going into one) is
    ///   unusable.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidUtf8 { .. }
            | Self::Syntax { .. }
            | Self::TrailingData { .. }
            | Self::DuplicateKey { .. }
            | Self::IntegerOutOfRange { .. }
            | Self::NonFiniteNumber { .. }
            | Self::NotAnObject { .. } => "json",
            Self::UnknownField { .. }
            | Self::MissingField { .. }
            | Self::WrongType { .. }
            | Self::EmptyString { .. }
            | Self::InvalidTime { .. }
            | Self::InvalidStream { .. }
            | Self::ReservedStream { .. } => "field",
            Self::EventTooLarge { .. }
            | Self::StringTooLong { .. }
            | Self::IdTooLong { .. }
            | Self::TooDeep { .. }
            | Self::TooManyAttributeKeys { .. } => "limit",
            Self::UnsupportedVersion { .. }
            | Self::NotCanonical
            | Self::BadStoredForm { .. }
            | Self::InvalidEnvelope { .. } => "envelope",
        }
    }

    /// Prefixes the field path with an object key, as an error travels out
    /// of the value it was found in. Doing this on the way out keeps the
    /// success path free of path bookkeeping.
    pub(crate) fn within_key(mut self, key: &str) -> Self {
        if let Some(path) = self.path_mut() {
            let mut full = String::with_capacity(key.len() + 1 + path.len());
            full.push_str(key);
            if !path.is_empty() && !path.starts_with('[') {
                full.push('.');
            }
            full.push_str(path);
            *path = full;
        }
        self
    }

    /// Prefixes the field path with an array index; see [`Self::within_key`].
    pub(crate) fn within_index(mut self, index: usize) -> Self {
        if let Some(path) = self.path_mut() {
            let mut full = format!("[{index}]");
            if !path.is_empty() && !path.starts_with('[') {
                full.push('.');
            }
            full.push_str(path);
            *path = full;
        }
        self
    }

    /// The path of the variants whose path is built while unwinding out of
    /// the JSON parser; other variants are produced with a full path already.
    fn path_mut(&mut self) -> Option<&mut String> {
        match self {
            Self::DuplicateKey { field }
            | Self::TooDeep { field, .. }
            | Self::IntegerOutOfRange { field, .. }
            | Self::NonFiniteNumber { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Names a path in a message, or the document when the path is empty.
fn describe_path(path: &str) -> DescribePath<'_> {
    DescribePath(path)
}

/// Display helper for [`describe_path`]; a struct rather than a `String` so
/// that formatting an error does not allocate twice.
struct DescribePath<'a>(&'a str);

impl fmt::Display for DescribePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("document")
        } else {
            write!(f, "field \"{}\"", self.0)
        }
    }
}
