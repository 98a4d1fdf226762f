//! Splitting an HTTP request body of client events into one raw byte slice
//! per event, and parsing each with [`stele_event::parse_client_event`]. A
//! body is accepted whole or refused whole: the first problem anywhere
//! refuses the request, naming the offending event, so that a client never
//! has to find out which half of a batch was stored.
//!
//! Two formats are read, chosen by Content-Type ([`body_kind`]): a JSON body
//! holding one event object or an array of event objects, and NDJSON (one
//! event per line). Each event's bytes are sliced from the body exactly as
//! sent (surrounding whitespace aside), because they become the stored
//! payload. This module does not read sockets, decompress, authenticate or
//! pick streams; the server does that around it.

use stele_event::{ClientEvent, EventError, Limits, parse_client_event};

use crate::error::IngestError;
use crate::scan::{self, ArrayElements, ScanError, ScanErrorKind};

/// The body formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`: one event object, or an array of event objects.
    Json,
    /// `application/x-ndjson` or `application/jsonl`: one event per line.
    Ndjson,
}

/// Picks the body format from a Content-Type header value.
///
/// Media types are compared case-insensitively, as RFC 9110 requires.
/// Parameters are allowed, but a `charset` other than UTF-8 is refused: the
/// body is always read as UTF-8, so a sender declaring anything else would
/// have its text misread. A missing header is refused rather than guessed,
/// so that a misconfigured client learns of it on its first request.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, IngestError> {
    let raw = content_type.unwrap_or("");
    let unsupported = || IngestError::UnsupportedContentType(raw.to_owned());
    let (essence, parameters) = raw.split_once(';').unwrap_or((raw, ""));
    let essence = essence.trim();
    let kind = if essence.eq_ignore_ascii_case("application/json") {
        BodyKind::Json
    } else if essence.eq_ignore_ascii_case("application/x-ndjson")
        || essence.eq_ignore_ascii_case("application/jsonl")
    {
        BodyKind::Ndjson
    } else {
        return Err(unsupported());
    };
    for parameter in parameters.split(';').map(str::trim) {
        if parameter.is_empty() {
            continue;
        }
        let (name, value) = parameter.split_once('=').ok_or_else(unsupported)?;
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(unsupported());
            }
        }
    }
    Ok(kind)
}

/// Bounds on one request body.
///
/// | limit            | default        | what it bounds                              |
/// |------------------|----------------|---------------------------------------------|
/// | `max_body_bytes` | 16 MiB         | the whole body                              |
/// | `max_events`     | 10 000         | events in one body                          |
/// | `event`          | `Limits::default()` | each event, as `parse_client_event` applies them |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Most events accepted in one body.
    pub max_events: usize,
    /// Bounds on each event.
    pub event: Limits,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_events: 10_000,
            event: Limits::default(),
        }
    }
}

/// One event's bytes, cut from a request body, with its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// 0-based position of the event in the request.
    pub item: usize,
    /// 1-based line of the event, for NDJSON bodies.
    pub line: Option<usize>,
    /// The event's JSON text exactly as sent, without surrounding whitespace.
    pub bytes: &'a [u8],
}

/// Cuts a body into its events without parsing them.
///
/// The whole body is checked first against `max_body_bytes`, then scanned
/// once: JSON syntax, UTF-8 and nesting depth are checked everywhere, each
/// event against `limits.event.max_event_bytes`, and the count against
/// `max_events` (the scan stops at the first event over it, so a hostile
/// body never makes this function hold more than `max_events` slices).
/// Elements of a JSON array that are not objects are left for the event
/// parser to refuse, so the refusal reads as it would for a single event.
pub fn split_body<'a>(
    kind: BodyKind,
    body: &'a [u8],
    limits: &BodyLimits,
) -> Result<Vec<RawEvent<'a>>, IngestError> {
    if body.len() > limits.max_body_bytes {
        return Err(IngestError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let mut events = Vec::new();
    match kind {
        BodyKind::Json => split_json(body, limits, &mut events)?,
        BodyKind::Ndjson => split_ndjson(body, limits, &mut events)?,
    }
    if events.is_empty() {
        return Err(IngestError::NoEvents);
    }
    Ok(events)
}

/// Cuts a body into its events and parses every one of them, refusing the
/// whole body on the first event that does not parse.
pub fn parse_body<'a>(
    kind: BodyKind,
    body: &'a [u8],
    limits: &BodyLimits,
) -> Result<Vec<(RawEvent<'a>, ClientEvent)>, IngestError> {
    split_body(kind, body, limits)?
        .into_iter()
        .map(|raw| {
            parse_client_event(raw.bytes, &limits.event)
                .map(|event| (raw, event))
                .map_err(|source| IngestError::Event {
                    item: raw.item,
                    line: raw.line,
                    source,
                })
        })
        .collect()
}

fn split_json<'a>(
    body: &'a [u8],
    limits: &BodyLimits,
    events: &mut Vec<RawEvent<'a>>,
) -> Result<(), IngestError> {
    let depth = limits.event.effective_max_depth();
    let start = scan::skip_ws(body, 0);
    let end = match body.get(start) {
        // An empty body holds no events; the caller reports that.
        None => return Ok(()),
        Some(b'[') => {
            let mut elements = ArrayElements::new(body, start, depth);
            for element in elements.by_ref() {
                let range = element.map_err(|e| scan_error(e.error, e.element, None))?;
                push_event(events, limits, None, &body[range])?;
            }
            elements.end()
        }
        Some(b'{') => {
            let end = scan::value_end(body, start, depth)
                .map_err(|error| scan_error(error, Some(0), None))?;
            push_event(events, limits, None, &body[start..end])?;
            end
        }
        Some(_) => {
            return Err(scan_error(
                scan::unexpected(body, start, "expected an event object or an array of them"),
                None,
                None,
            ));
        }
    };
    let trailing = scan::skip_ws(body, end);
    if trailing < body.len() {
        return Err(scan_error(
            scan::unexpected(body, trailing, "trailing data after the top-level value"),
            None,
            None,
        ));
    }
    Ok(())
}

fn split_ndjson<'a>(
    body: &'a [u8],
    limits: &BodyLimits,
    events: &mut Vec<RawEvent<'a>>,
) -> Result<(), IngestError> {
    let depth = limits.event.effective_max_depth();
    let mut line_offset = 0;
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let this_offset = line_offset;
        line_offset += line.len() + 1;
        // CRLF line endings leave a '\r' that is JSON whitespace anyway, so
        // it is simply skipped with the rest; a line of only whitespace is
        // blank and skipped, so that a trailing newline is harmless.
        let start = scan::skip_ws(line, 0);
        if start == line.len() {
            continue;
        }
        let item = events.len();
        let located = |error: ScanError| {
            let error = ScanError {
                offset: this_offset + error.offset,
                ..error
            };
            scan_error(error, Some(item), Some(line_number))
        };
        let end = scan::value_end(line, start, depth).map_err(located)?;
        let trailing = scan::skip_ws(line, end);
        if trailing < line.len() {
            return Err(located(scan::unexpected(
                line,
                trailing,
                "trailing data after the event on this line",
            )));
        }
        push_event(events, limits, Some(line_number), &line[start..end])?;
    }
    Ok(())
}

/// Appends one event after checking the count and size limits.
fn push_event<'a>(
    events: &mut Vec<RawEvent<'a>>,
    limits: &BodyLimits,
    line: Option<usize>,
    bytes: &'a [u8],
) -> Result<(), IngestError> {
    let item = events.len();
    if item >= limits.max_events {
        return Err(IngestError::TooManyEvents {
            limit: limits.max_events,
        });
    }
    if bytes.len() > limits.event.max_event_bytes {
        return Err(IngestError::EventTooLarge {
            item,
            line,
            limit: limits.event.max_event_bytes,
        });
    }
    events.push(RawEvent { item, line, bytes });
    Ok(())
}

/// Turns a scanner error into the refusal the caller sees. Excess nesting is
/// reported as the event parser would report it, since it is a property of
/// the event and not of the body.
pub(crate) fn scan_error(
    error: ScanError,
    item: Option<usize>,
    line: Option<usize>,
) -> IngestError {
    match (error.kind, item) {
        (ScanErrorKind::TooDeep { limit }, Some(item)) => IngestError::Event {
            item,
            line,
            source: EventError::TooDeep {
                field: String::new(),
                limit,
            },
        },
        (ScanErrorKind::TooDeep { .. }, None) => IngestError::InvalidJson {
            offset: error.offset,
            item,
            line,
            reason: "nesting too deep",
        },
        (ScanErrorKind::InvalidUtf8, _) => IngestError::InvalidUtf8 {
            offset: error.offset,
            item,
            line,
        },
        (ScanErrorKind::Syntax(reason), _) => IngestError::InvalidJson {
            offset: error.offset,
            item,
            line,
            reason,
        },
    }
}
