//! Syslog messages read and mapped to Stele client events: RFC 5424, and
//! the older BSD form of RFC 3164 (with its timestamp, or with the RFC 3339
//! timestamp rsyslog's forwarding template writes in its place). One
//! message at a time, as a listener's framing cuts them (`docs/syslog.md`);
//! the message's bytes are kept whole.
//!
//! # Mapping
//!
//! | Stele field  | from the message                                                                  |
//! |--------------|-----------------------------------------------------------------------------------|
//! | `actor`      | `APP-NAME@HOSTNAME` (RFC 3164: the tag), either alone when the other is absent, `syslog` when both are |
//! | `action`     | `<facility>.<severity>` by their keywords, e.g. `auth.notice`, `local3.err`         |
//! | `source`     | `HOSTNAME`, when present                                                          |
//! | `time`       | `TIMESTAMP`, normalized to UTC; an RFC 3164 timestamp (no year, no zone) is read in UTC in the year that puts it nearest the time of receipt |
//! | `attributes` | `{"syslog": {format, facility, severity, priority, hostname, app_name, proc_id, msg_id, structured_data: {SD-ID: {PARAM: value, or [values] when repeated}}, message}}`, absent values left out; `message_base64` holds a message that is not UTF-8 exactly |
//!
//! The event's payload is the message as received (its invalid UTF-8
//! sequences replaced by U+FFFD when it has any: its exact bytes are then in
//! `message_base64`). A message is refused, with a [`SyslogError`] saying
//! where and why, when its priority is missing or out of range, an RFC 5424
//! header field breaks its grammar (a field over its length, a character
//! outside printable ASCII, a malformed or repeated SD-ID, a bad escape), or
//! the mapped event breaks the event rules (over `max_event_bytes`, too many
//! attribute keys). An RFC 3164 message is read leniently, as its RFC
//! describes: without a readable timestamp, everything after the priority is
//! the message.

use serde_json::{Map, Value};
use stele_event::{ClientEvent, EventError, Limits, parse_client_event};

/// Facility keywords by number (RFC 5424 table 1, as syslog.conf names
/// them).
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Severity keywords by number (RFC 5424 table 2).
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Longest header fields of RFC 5424 (section 6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROC_ID: usize = 128;
const MAX_MSG_ID: usize = 32;
const MAX_SD_NAME: usize = 32;
/// Longest RFC 3164 TAG (section 4.1.3).
const MAX_TAG: usize = 32;

/// Which grammar a message was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }
}

/// One structured-data element: its SD-ID and parameters, in order (a
/// name may repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// A message read, before it is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    pub format: Format,
    /// 0 to 23.
    pub facility: u8,
    /// 0 (emergency) to 7 (debug).
    pub severity: u8,
    /// RFC 3339, as the message gave it (RFC 5424, or RFC 3164 as rsyslog
    /// forwards it) or as read from an RFC 3164 timestamp (UTC).
    pub timestamp: Option<String>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub proc_id: Option<&'a str>,
    pub msg_id: Option<&'a str>,
    pub structured_data: Vec<SdElement>,
    /// The free-form message (an RFC 5424 byte order mark removed).
    pub message: &'a [u8],
}

/// A message mapped: its bytes and the client event they give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogEvent {
    /// The payload: the message as received, as UTF-8 (see the module
    /// documentation).
    pub raw: String,
    pub event: ClientEvent,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    /// The message is longer than the event limit's `max_event_bytes`.
    #[error("the message is over the max_event_bytes limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The message breaks the syslog grammar at byte `at`.
    #[error("{part} at byte {at}: {reason}")]
    Malformed {
        at: usize,
        part: &'static str,
        reason: &'static str,
    },
    /// The mapped event breaks the event rules.
    #[error("the mapped event is refused: {0}")]
    Event(EventError),
}

impl SyslogError {
    /// A stable word for counting refusals by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SyslogError::TooLarge { .. } => "too_large",
            SyslogError::Malformed { .. } => "malformed",
            SyslogError::Event(_) => "event",
        }
    }
}

/// Reads `raw` (one message, without its framing) received at `received`,
/// and maps it (see the module documentation).
pub fn parse_message(
    raw: &[u8],
    received: jiff::Timestamp,
    limits: &Limits,
) -> Result<SyslogEvent, SyslogError> {
    if raw.len() > limits.max_event_bytes {
        return Err(SyslogError::TooLarge {
            limit: limits.max_event_bytes,
        });
    }
    let message = read(raw, received)?;
    map(&message, raw, limits)
}

/// Reads a message's header; [`parse_message`] without the mapping.
pub fn read(raw: &[u8], received: jiff::Timestamp) -> Result<SyslogMessage<'_>, SyslogError> {
    let mut input = Input { raw, at: 0 };
    let priority = input.priority()?;
    let (facility, severity) = (priority / 8, priority % 8);
    // A version (digits, then a space) says RFC 5424.
    let digits = raw[input.at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > 0 && raw.get(input.at + digits) == Some(&b' ') {
        if &raw[input.at..input.at + digits] != b"1" {
            return Err(input.malformed("VERSION", "only version 1 (RFC 5424) is read"));
        }
        input.at += digits + 1;
        return rfc5424(input, facility, severity);
    }
    Ok(rfc3164(input, facility, severity, received))
}

/// A cursor over a message's bytes.
struct Input<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn malformed(&self, part: &'static str, reason: &'static str) -> SyslogError {
        SyslogError::Malformed {
            at: self.at,
            part,
            reason,
        }
    }

    fn rest(&self) -> &'a [u8] {
        &self.raw[self.at..]
    }

    /// `<PRI>`: one to three digits, no leading zero, at most 191.
    fn priority(&mut self) -> Result<u8, SyslogError> {
        if self.raw.first() != Some(&b'<') {
            return Err(self.malformed("PRI", "a message begins with <PRI>"));
        }
        self.at = 1;
        let digits = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.rest()[..digits];
        if digits == 0 || digits > 3 || (digits > 1 && text[0] == b'0') {
            return Err(self.malformed("PRI", "one to three digits, no leading zero"));
        }
        let value = text.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        self.at += digits;
        if value > 191 {
            return Err(self.malformed("PRI", "over 191 (facility 23, severity 7)"));
        }
        if self.rest().first() != Some(&b'>') {
            return Err(self.malformed("PRI", "<PRI> ends with >"));
        }
        self.at += 1;
        Ok(value as u8)
    }

    /// A header field of printable ASCII up to the next space (or the
    /// end), at most `max` bytes; `-` is none.
    fn field(&mut self, part: &'static str, max: usize) -> Result<Option<&'a str>, SyslogError> {
        let len = self.rest().iter().take_while(|&&b| b != b' ').count();
        let bytes = &self.rest()[..len];
        if len == 0 {
            return Err(self.malformed(part, "empty (a missing value is -)"));
        }
        if len > max {
            return Err(self.malformed(part, "longer than RFC 5424 allows"));
        }
        if let Some(bad) = bytes.iter().position(|b| !(33..=126).contains(b)) {
            self.at += bad;
            return Err(self.malformed(part, "not printable ASCII"));
        }
        self.at += len;
        self.space(part)?;
        // Printable ASCII is UTF-8.
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        Ok((text != "-").then_some(text))
    }

    /// The space after a header field (or the end of the message).
    fn space(&mut self, part: &'static str) -> Result<(), SyslogError> {
        match self.rest().first() {
            Some(b' ') => {
                self.at += 1;
                Ok(())
            }
            None => Ok(()),
            Some(_) => Err(self.malformed(part, "a header field ends with a space")),
        }
    }
}

/// The rest of an RFC 5424 message, after `VERSION SP`.
fn rfc5424(
    mut input: Input<'_>,
    facility: u8,
    severity: u8,
) -> Result<SyslogMessage<'_>, SyslogError> {
    let start = input.at;
    let timestamp = input.field("TIMESTAMP", 32)?;
    if let Some(text) = timestamp
        && !rfc5424_timestamp(text)
    {
        return Err(SyslogError::Malformed {
            at: start,
            part: "TIMESTAMP",
            reason: "not YYYY-MM-DDThh:mm:ss[.1-6 digits](Z|+hh:mm|-hh:mm)",
        });
    }
    let hostname = input.field("HOSTNAME", MAX_HOSTNAME)?;
    let app_name = input.field("APP-NAME", MAX_APP_NAME)?;
    let proc_id = input.field("PROCID", MAX_PROC_ID)?;
    let msg_id = input.field("MSGID", MAX_MSG_ID)?;
    let structured_data = structured_data(&mut input)?;
    let mut message = input.rest();
    if let Some(rest) = message.strip_prefix(b"\xEF\xBB\xBF") {
        message = rest;
    }
    Ok(SyslogMessage {
        format: Format::Rfc5424,
        facility,
        severity,
        timestamp: timestamp.map(str::to_owned),
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message,
    })
}

/// Whether `text` is an RFC 5424 TIMESTAMP (RFC 3339 with an uppercase
/// `T` and `Z`, at most six digits of fraction).
fn rfc5424_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut at = 19;
    if b[at] == b'.' {
        let fraction = b[at + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if !(1..=6).contains(&fraction) {
            return false;
        }
        at += 1 + fraction;
    }
    match &b[at..] {
        b"Z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
        }
        _ => false,
    }
}

/// STRUCTURED-DATA: `-`, or one or more `[SD-ID *(SP PARAM="VALUE")]`,
/// then a space before the message or the end.
fn structured_data(input: &mut Input<'_>) -> Result<Vec<SdElement>, SyslogError> {
    const PART: &str = "STRUCTURED-DATA";
    match input.rest().first() {
        None => return Err(input.malformed(PART, "missing (none is -)")),
        Some(b'-') => {
            input.at += 1;
            input.space(PART)?;
            return Ok(Vec::new());
        }
        Some(b'[') => {}
        Some(_) => return Err(input.malformed(PART, "begins with [ or is -")),
    }
    let mut elements: Vec<SdElement> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    while input.rest().first() == Some(&b'[') {
        input.at += 1;
        let id = sd_name(input, "SD-ID")?;
        if !ids.insert(id.clone()) {
            return Err(input.malformed("SD-ID", "the same SD-ID twice in one message"));
        }
        let mut params = Vec::new();
        loop {
            match input.rest().first() {
                Some(b']') => {
                    input.at += 1;
                    break;
                }
                Some(b' ') => {
                    input.at += 1;
                    let name = sd_name(input, "PARAM-NAME")?;
                    if input.rest().first() != Some(&b'=') || input.rest().get(1) != Some(&b'"') {
                        return Err(input.malformed("SD-PARAM", "PARAM-NAME is followed by =\""));
                    }
                    input.at += 2;
                    params.push((name, param_value(input)?));
                }
                _ => return Err(input.malformed("SD-ELEMENT", "ends with ]")),
            }
        }
        elements.push(SdElement { id, params });
    }
    input.space(PART)?;
    Ok(elements)
}

/// An SD-NAME: 1 to 32 printable ASCII characters but `=`, space, `]`
/// and `"`.
fn sd_name(input: &mut Input<'_>, part: &'static str) -> Result<String, SyslogError> {
    let len = input
        .rest()
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
        .count();
    if len == 0 {
        return Err(input.malformed(part, "empty or a character SD-NAME does not allow"));
    }
    if len > MAX_SD_NAME {
        return Err(input.malformed(part, "longer than 32 characters"));
    }
    let name = String::from_utf8_lossy(&input.rest()[..len]).into_owned();
    input.at += len;
    Ok(name)
}

/// A PARAM-VALUE after its opening quote, through its closing one: UTF-8
/// in which `"`, `\` and `]` are escaped by `\` (any other `\` stands for
/// itself, RFC 5424 section 6.3.3).
fn param_value(input: &mut Input<'_>) -> Result<String, SyslogError> {
    let mut value = Vec::new();
    loop {
        match input.rest() {
            [] => return Err(input.malformed("PARAM-VALUE", "no closing quote")),
            [b'"', ..] => {
                input.at += 1;
                break;
            }
            [b'\\', escaped @ (b'"' | b'\\' | b']'), ..] => {
                value.push(*escaped);
                input.at += 2;
            }
            [b']', ..] => {
                return Err(input.malformed("PARAM-VALUE", "] inside a value is escaped as \\]"));
            }
            [byte, ..] => {
                value.push(*byte);
                input.at += 1;
            }
        }
    }
    String::from_utf8(value).map_err(|_| input.malformed("PARAM-VALUE", "not UTF-8"))
}

/// The rest of an RFC 3164 message, after `<PRI>`: `TIMESTAMP HOSTNAME
/// TAG[PID]: MSG`, each part optional as that RFC's relays treat it.
fn rfc3164(
    mut input: Input<'_>,
    facility: u8,
    severity: u8,
    received: jiff::Timestamp,
) -> SyslogMessage<'_> {
    let mut message = SyslogMessage {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: Vec::new(),
        message: input.rest(),
    };
    let Some((timestamp, len)) = bsd_timestamp(input.rest(), received) else {
        return message;
    };
    message.timestamp = Some(timestamp);
    input.at += len;
    if input.rest().first() == Some(&b' ') {
        input.at += 1;
    }
    // HOSTNAME, unless the next word is already the tag (`sshd[7]:` or
    // `cron:`), as in messages written to a local socket.
    let word = input.rest().iter().take_while(|&&b| b != b' ').count();
    let first = &input.rest()[..word];
    let tag_like = first.ends_with(b":") || first.contains(&b'[');
    if word > 0 && word <= MAX_HOSTNAME && !tag_like && first.iter().all(|b| (33..=126).contains(b))
    {
        message.hostname = std::str::from_utf8(first).ok();
        input.at += word;
        if input.rest().first() == Some(&b' ') {
            input.at += 1;
        }
    }
    message.message = input.rest();
    // TAG: up to 32 alphanumerics (and the punctuation programs use) ended
    // by `[PID]:` or `:` and a space.
    let rest = input.rest();
    let tag_len = rest
        .iter()
        .take(MAX_TAG + 1)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        .count();
    if tag_len == 0 || tag_len > MAX_TAG {
        return message;
    }
    let tag = std::str::from_utf8(&rest[..tag_len]).ok();
    let mut at = tag_len;
    let mut proc_id = None;
    if rest.get(at) == Some(&b'[') {
        let pid_len = rest[at + 1..]
            .iter()
            .take(MAX_PROC_ID + 1)
            .take_while(|&&b| (33..=126).contains(&b) && b != b']')
            .count();
        if pid_len == 0 || pid_len > MAX_PROC_ID || rest.get(at + 1 + pid_len) != Some(&b']') {
            return message;
        }
        proc_id = std::str::from_utf8(&rest[at + 1..at + 1 + pid_len]).ok();
        at += pid_len + 2;
    }
    if rest.get(at) != Some(&b':') {
        return message;
    }
    at += 1;
    if rest.get(at) == Some(&b' ') {
        at += 1;
    }
    message.app_name = tag;
    message.proc_id = proc_id;
    message.message = &rest[at..];
    message
}

/// An RFC 3164 timestamp at the start of `bytes` (`Mmm dd hh:mm:ss`, the
/// day padded with a space), read in UTC in the year that puts it nearest
/// `received`; or an RFC 3339 one as rsyslog forwards. With its length.
fn bsd_timestamp(bytes: &[u8], received: jiff::Timestamp) -> Option<(String, usize)> {
    let word = bytes.iter().take_while(|&&b| b != b' ').count();
    if let Ok(text) = std::str::from_utf8(&bytes[..word])
        && rfc5424_timestamp(text)
    {
        return Some((text.to_owned(), word));
    }
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let head = bytes.get(..15)?;
    let month = MONTHS.iter().position(|m| head.starts_with(m))? as i8 + 1;
    let number = |range: std::ops::Range<usize>| -> Option<i8> {
        let text = std::str::from_utf8(&head[range]).ok()?;
        text.trim_start().parse().ok()
    };
    if head[3] != b' ' || head[6] != b' ' || head[9] != b':' || head[12] != b':' {
        return None;
    }
    let (day, hour, minute, second) = (
        number(4..6)?,
        number(7..9)?,
        number(10..12)?,
        number(13..15)?,
    );
    let utc = jiff::tz::Offset::UTC;
    let received_year = utc.to_datetime(received).year();
    let best = [received_year - 1, received_year, received_year + 1]
        .into_iter()
        .filter_map(|year| {
            let civil =
                jiff::civil::DateTime::new(year, month, day, hour, minute, second, 0).ok()?;
            let at = utc.to_timestamp(civil).ok()?;
            Some((at.duration_since(received).abs(), at))
        })
        .min_by_key(|(distance, _)| *distance)?;
    Some((best.1.to_string(), 15))
}

/// Maps a message read from `raw` to a client event (see the module
/// documentation), validated by the event crate's own rules.
fn map(
    message: &SyslogMessage<'_>,
    raw: &[u8],
    limits: &Limits,
) -> Result<SyslogEvent, SyslogError> {
    let mut syslog = Map::new();
    syslog.insert("format".into(), message.format.name().into());
    syslog.insert(
        "facility".into(),
        FACILITIES[usize::from(message.facility)].into(),
    );
    syslog.insert(
        "severity".into(),
        SEVERITIES[usize::from(message.severity)].into(),
    );
    syslog.insert(
        "priority".into(),
        (u16::from(message.facility) * 8 + u16::from(message.severity)).into(),
    );
    for (name, value) in [
        ("hostname", message.hostname),
        ("app_name", message.app_name),
        ("proc_id", message.proc_id),
        ("msg_id", message.msg_id),
    ] {
        if let Some(value) = value {
            syslog.insert(name.into(), value.into());
        }
    }
    if !message.structured_data.is_empty() {
        let mut elements = Map::new();
        for element in &message.structured_data {
            let mut params = Map::new();
            for (name, value) in &element.params {
                match params.get_mut(name) {
                    None => {
                        params.insert(name.clone(), value.as_str().into());
                    }
                    Some(Value::Array(values)) => values.push(value.as_str().into()),
                    Some(first) => {
                        let first = first.take();
                        params.insert(
                            name.clone(),
                            Value::Array(vec![first, value.as_str().into()]),
                        );
                    }
                }
            }
            elements.insert(element.id.clone(), Value::Object(params));
        }
        syslog.insert("structured_data".into(), Value::Object(elements));
    }
    syslog.insert(
        "message".into(),
        String::from_utf8_lossy(message.message).into_owned().into(),
    );
    let payload = match std::str::from_utf8(raw) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            use base64::Engine as _;
            let exact = base64::engine::general_purpose::STANDARD.encode(raw);
            syslog.insert("message_base64".into(), exact.into());
            String::from_utf8_lossy(raw).into_owned()
        }
    };
    let actor = match (message.app_name, message.hostname) {
        (Some(app), Some(host)) => format!("{app}@{host}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => "syslog".to_owned(),
    };
    let mut document = Map::new();
    document.insert("actor".into(), actor.into());
    document.insert(
        "action".into(),
        format!(
            "{}.{}",
            FACILITIES[usize::from(message.facility)],
            SEVERITIES[usize::from(message.severity)]
        )
        .into(),
    );
    if let Some(host) = message.hostname {
        document.insert("source".into(), host.into());
    }
    if let Some(time) = &message.timestamp {
        document.insert("time".into(), time.as_str().into());
    }
    let mut attributes = Map::new();
    attributes.insert("syslog".into(), Value::Object(syslog));
    document.insert("attributes".into(), Value::Object(attributes));
    let text = Value::Object(document).to_string();
    // The message was checked against max_event_bytes; the mapped event
    // repeats it (and its structured data) and may come out larger, which
    // must not refuse a message within the limit.
    let mapped_limits = Limits {
        max_event_bytes: usize::MAX,
        ..*limits
    };
    let event = parse_client_event(text.as_bytes(), &mapped_limits).map_err(SyslogError::Event)?;
    Ok(SyslogEvent {
        raw: payload,
        event,
    })
}

pub mod framing;
#[cfg(test)]
mod tests;
