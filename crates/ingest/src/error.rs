//! The one error type of this crate, [`IngestError`]: why a whole request
//! body was refused, with a stable [`IngestError::code`] and the position of
//! the offending event ([`IngestError::item`], [`IngestError::line`]) so that
//! a server can answer with a precise, machine-readable refusal. It is not a
//! transport error: it carries no HTTP status and no I/O cause, because this
//! crate does no I/O.
//!
//! Every refusal is permanent for the bytes as sent: retrying the same
//! request fails the same way, so the sender must fix the request (or the
//! operator the limits), not retry it.

use stele_event::EventError;

/// Everything that makes this crate refuse a request body. Ingestion is all
/// or nothing: one of these means no event of the request is accepted.
///
/// Item numbers are 0-based positions of events in the request (the element
/// index of a JSON array, the count of non-blank NDJSON lines before the
/// event, or the index in a Kubernetes `EventList`'s `items`); line numbers
/// are 1-based and given only for NDJSON. Byte offsets count from the start
/// of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The Content-Type names no format this crate reads (the string is the
    /// header as received; empty when there was none).
    #[error("{}", describe_content_type(.0))]
    UnsupportedContentType(String),

    /// The body is larger than [`crate::BodyLimits::max_body_bytes`].
    #[error("request body is over the max_body_bytes limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in force.
        limit: usize,
    },

    /// The body holds more events than [`crate::BodyLimits::max_events`].
    #[error("request holds more than the max_events limit of {limit} events")]
    TooManyEvents {
        /// The limit in force.
        limit: usize,
    },

    /// The body holds no event at all (empty body, empty array, only blank
    /// lines, empty `items`).
    #[error("request holds no events")]
    NoEvents,

    /// One event's bytes are over the event limits' `max_event_bytes`.
    #[error("{}is over the max_event_bytes limit of {limit} bytes", Position::item(*.item, *.line))]
    EventTooLarge {
        /// Position of the event in the request.
        item: usize,
        /// Its 1-based line, for NDJSON.
        line: Option<usize>,
        /// The limit in force.
        limit: usize,
    },

    /// The body is not valid UTF-8.
    #[error("{}not valid UTF-8 (first invalid byte at offset {offset})", Position::new(*.item, *.line))]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence in the body.
        offset: usize,
        /// The event it was found in, if inside one.
        item: Option<usize>,
        /// The 1-based line it was found on, for NDJSON.
        line: Option<usize>,
    },

    /// The body (or one event in it) is not JSON text, or not the shape the
    /// format requires (for example a number where an object or an array of
    /// objects was expected).
    #[error("{}invalid JSON at byte {offset}: {reason}", Position::new(*.item, *.line))]
    InvalidJson {
        /// Byte offset in the body where the problem was found.
        offset: usize,
        /// The event it was found in, if inside one.
        item: Option<usize>,
        /// The 1-based line it was found on, for NDJSON.
        line: Option<usize>,
        /// What was wrong there.
        reason: &'static str,
    },

    /// One event is well-formed JSON but not an acceptable client event;
    /// `source` says which field and why.
    #[error("{}{source}", Position::item(*.item, *.line))]
    Event {
        /// Position of the event in the request.
        item: usize,
        /// Its 1-based line, for NDJSON.
        line: Option<usize>,
        /// Why the event parser refused it.
        source: EventError,
    },

    /// A Kubernetes webhook body is not an `audit.k8s.io/v1` `EventList`.
    #[error("not an audit.k8s.io/v1 EventList: {reason}")]
    InvalidEventList {
        /// What was wrong with the list itself.
        reason: String,
    },

    /// One item of a Kubernetes `EventList` is not a usable audit event.
    #[error("{}{}{reason}", Position::item(*.item, None), describe_field(.field.as_deref()))]
    InvalidKubernetesEvent {
        /// Index of the item in `items`.
        item: usize,
        /// The audit event field at fault (`auditID`, `user.username`), if
        /// the problem is about one.
        field: Option<String>,
        /// Why the item was refused.
        reason: String,
    },
}

impl IngestError {
    /// A stable identifier for the kind of refusal, for API responses and
    /// metrics: `unsupported_content_type`, `body_too_large`,
    /// `too_many_events`, `no_events`, `event_too_large`, `invalid_utf8`,
    /// `invalid_json`, `invalid_event` (for both client events and
    /// Kubernetes items) or `invalid_event_list`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedContentType(_) => "unsupported_content_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::NoEvents => "no_events",
            Self::EventTooLarge { .. } => "event_too_large",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::InvalidJson { .. } => "invalid_json",
            Self::Event { .. } | Self::InvalidKubernetesEvent { .. } => "invalid_event",
            Self::InvalidEventList { .. } => "invalid_event_list",
        }
    }

    /// The 0-based position of the offending event in the request, when the
    /// refusal is about one event.
    pub fn item(&self) -> Option<usize> {
        match self {
            Self::EventTooLarge { item, .. }
            | Self::Event { item, .. }
            | Self::InvalidKubernetesEvent { item, .. } => Some(*item),
            Self::InvalidUtf8 { item, .. } | Self::InvalidJson { item, .. } => *item,
            Self::UnsupportedContentType(_)
            | Self::BodyTooLarge { .. }
            | Self::TooManyEvents { .. }
            | Self::NoEvents
            | Self::InvalidEventList { .. } => None,
        }
    }

    /// The 1-based NDJSON line of the offending event, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::EventTooLarge { line, .. }
            | Self::Event { line, .. }
            | Self::InvalidUtf8 { line, .. }
            | Self::InvalidJson { line, .. } => *line,
            _ => None,
        }
    }

    /// The path of the field at fault inside the event, when the refusal is
    /// about one: the client event field path of [`EventError::field`]
    /// (`actor`, `attributes.kubernetes.user`), or the Kubernetes audit
    /// event field (`auditID`, `user.username`).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Event { source, .. } => source.field(),
            Self::InvalidKubernetesEvent { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// Where in the request an error is, as a message prefix: `event 3 (line
/// 4): `, `event 3: `, or nothing for errors about the body as a whole.
struct Position {
    item: Option<usize>,
    line: Option<usize>,
}

impl Position {
    fn new(item: Option<usize>, line: Option<usize>) -> Self {
        Self { item, line }
    }

    fn item(item: usize, line: Option<usize>) -> Self {
        Self {
            item: Some(item),
            line,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.item, self.line) {
            (Some(item), Some(line)) => write!(f, "event {item} (line {line}): "),
            (Some(item), None) => write!(f, "event {item}: "),
            (None, Some(line)) => write!(f, "line {line}: "),
            (None, None) => Ok(()),
        }
    }
}

fn describe_content_type(content_type: &str) -> String {
    let expected = "expected application/json, application/x-ndjson or application/jsonl";
    if content_type.is_empty() {
        format!("missing Content-Type; {expected}")
    } else {
        format!("unsupported Content-Type {content_type:?}; {expected}")
    }
}

fn describe_field(field: Option<&str>) -> String {
    field.map_or_else(String::new, |field| format!("field \"{field}\": "))
}
