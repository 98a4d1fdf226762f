use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn parse(raw: &[u8], received: &str) -> Result<SyslogEvent, SyslogError> {
    parse_message(raw, at(received), &Limits::default())
}

fn syslog_attributes(event: &SyslogEvent) -> &Value {
    &event.event.attributes.as_ref().unwrap()["syslog"]
}

/// Where and why `raw` is refused as malformed.
fn malformed(raw: &[u8]) -> (usize, &'static str) {
    match parse(raw, "2026-12-08T00:00:00Z") {
        Err(SyslogError::Malformed { at, part, .. }) => (at, part),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn the_examples_of_rfc_5424_are_read_and_mapped() {
    let su = parse(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
        "2003-10-11T22:14:16Z",
    )
    .unwrap();
    assert_eq!(su.event.actor, "su@mymachine.example.com");
    assert_eq!(su.event.action, "auth.crit");
    assert_eq!(su.event.source.as_deref(), Some("mymachine.example.com"));
    assert_eq!(su.event.time.as_deref(), Some("2003-10-11T22:14:15.003Z"));
    assert_eq!(
        syslog_attributes(&su),
        &json!({"format": "rfc5424", "facility": "auth", "severity": "crit", "priority": 34,
                "hostname": "mymachine.example.com", "app_name": "su", "msg_id": "ID47",
                "message": "'su root' failed for lonvick on /dev/pts/8"})
    );
    // The payload is the message as received, byte order mark and all.
    assert!(su.raw.starts_with("<34>1 2003") && su.raw.contains('\u{feff}'));

    let donuts = parse(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        "2003-08-24T12:14:16Z",
    )
    .unwrap();
    assert_eq!(donuts.event.action, "local4.notice");
    assert_eq!(
        donuts.event.time.as_deref(),
        Some("2003-08-24T12:14:15.000003Z")
    );
    assert_eq!(syslog_attributes(&donuts)["proc_id"], "8710");
    assert_eq!(
        syslog_attributes(&donuts)["message"],
        "%% It's time to make the do-nuts."
    );

    let sd = parse(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
        "2003-10-11T22:14:16Z",
    )
    .unwrap();
    let attributes = syslog_attributes(&sd);
    assert_eq!(
        attributes["structured_data"],
        json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
               "examplePriority@32473": {"class": "high"}})
    );
    assert_eq!(attributes["message"], "");

    let nil = parse(b"<0>1 - - - - - -", "2026-12-08T00:00:00Z").unwrap();
    assert_eq!(
        (nil.event.actor.as_str(), nil.event.action.as_str()),
        ("syslog", "kern.emerg")
    );
    assert_eq!(
        (nil.event.time.as_deref(), nil.event.source.as_deref()),
        (None, None)
    );
}

#[test]
fn parameter_values_unescape_and_repeated_names_become_lists() {
    let event = parse(
        br#"<13>1 - h a - - [x@1 p="q\"u\\o\]te" p="2" back="c:\dir"] text"#,
        "2026-12-08T00:00:00Z",
    )
    .unwrap();
    assert_eq!(
        syslog_attributes(&event)["structured_data"],
        json!({"x@1": {"p": ["q\"u\\o]te", "2"], "back": "c:\\dir"}})
    );
    assert_eq!(syslog_attributes(&event)["message"], "text");
}

#[test]
fn bsd_messages_are_read_as_relays_read_them() {
    let su = parse(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "2026-10-12T01:00:00Z",
    )
    .unwrap();
    assert_eq!(su.event.actor, "su@mymachine");
    assert_eq!(su.event.time.as_deref(), Some("2026-10-11T22:14:15Z"));
    assert_eq!(syslog_attributes(&su)["format"], "rfc3164");
    assert_eq!(
        syslog_attributes(&su)["message"],
        "'su root' failed for lonvick on /dev/pts/8"
    );
    // The year that puts the time nearest its receipt.
    let new_year = parse(b"<13>Dec 31 23:59:59 host app: x", "2027-01-01T00:00:05Z").unwrap();
    assert_eq!(new_year.event.time.as_deref(), Some("2026-12-31T23:59:59Z"));
    // rsyslog's forwarding template: an RFC 3339 time, a PID.
    let forwarded = parse(
        b"<86>2026-12-08T03:00:00.123456+01:00 web1 sshd[4242]: Accepted publickey for alice",
        "2026-12-08T02:00:01Z",
    )
    .unwrap();
    assert_eq!(
        forwarded.event.time.as_deref(),
        Some("2026-12-08T02:00:00.123456Z")
    );
    assert_eq!(forwarded.event.action, "authpriv.info");
    let attributes = syslog_attributes(&forwarded);
    assert_eq!(
        (
            attributes["app_name"].as_str(),
            attributes["proc_id"].as_str()
        ),
        (Some("sshd"), Some("4242"))
    );
    // Written to a local socket: no hostname, the day padded by a space.
    let local = parse(
        b"<38>Dec  8 03:00:00 sshd[7]: hello",
        "2026-12-08T03:00:01Z",
    )
    .unwrap();
    assert_eq!(local.event.actor, "sshd");
    assert_eq!(local.event.source, None);
    assert_eq!(local.event.time.as_deref(), Some("2026-12-08T03:00:00Z"));
    // A first word longer than a hostname is the message's.
    let long = format!("<13>Oct 11 22:14:15 {} msg", "a".repeat(300));
    let long = parse(long.as_bytes(), "2026-10-12T00:00:00Z").unwrap();
    assert_eq!(long.event.source, None);
    assert!(
        syslog_attributes(&long)["message"]
            .as_str()
            .unwrap()
            .ends_with(" msg")
    );
    // No timestamp: everything after the priority is the message.
    let bare = parse(b"<13>just some text", "2026-12-08T00:00:00Z").unwrap();
    assert_eq!(bare.event.time, None);
    assert_eq!(syslog_attributes(&bare)["message"], "just some text");
    assert_eq!(bare.event.actor, "syslog");
}

#[test]
fn a_message_that_is_not_utf8_is_kept_exactly() {
    let raw = b"<13>1 - h app - - - caf\xe9 \xff";
    let event = parse(raw, "2026-12-08T00:00:00Z").unwrap();
    use base64::Engine as _;
    let exact = base64::engine::general_purpose::STANDARD
        .decode(
            syslog_attributes(&event)["message_base64"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(exact, raw);
    assert_eq!(event.raw, String::from_utf8_lossy(raw));
    // A UTF-8 message has no copy.
    let utf8 = parse(
        "<13>1 - h app - - - café".as_bytes(),
        "2026-12-08T00:00:00Z",
    )
    .unwrap();
    assert!(syslog_attributes(&utf8).get("message_base64").is_none());
    assert_eq!(utf8.raw, "<13>1 - h app - - - café");
}

#[test]
fn malformed_messages_are_refused_saying_where() {
    assert_eq!(malformed(b"hello"), (0, "PRI"));
    assert_eq!(malformed(b"<192>1 - - - - - -"), (4, "PRI"));
    assert_eq!(malformed(b"<013>1 - - - - - -"), (1, "PRI"));
    assert_eq!(malformed(b"<>x"), (1, "PRI"));
    assert_eq!(malformed(b"<13 x"), (3, "PRI"));
    assert_eq!(malformed(b"<13>2 - - - - - -"), (4, "VERSION"));
    assert_eq!(
        malformed(b"<13>1 2003-10-11t22:14:15Z - - - - -"),
        (6, "TIMESTAMP")
    );
    assert_eq!(
        malformed(b"<13>1 2003-10-11T22:14:15.1234567Z - - - - -"),
        (6, "TIMESTAMP")
    );
    let long_host = format!("<13>1 - {} - - - -", "h".repeat(256));
    assert_eq!(malformed(long_host.as_bytes()), (8, "HOSTNAME"));
    assert_eq!(malformed(b"<13>1 - host ap\x01p - - -"), (15, "APP-NAME"));
    assert_eq!(malformed(b"<13>1 - host  app - - -"), (13, "APP-NAME"));
    assert_eq!(malformed(b"<13>1 - h a - - x"), (16, "STRUCTURED-DATA"));
    assert_eq!(malformed(b"<13>1 - h a - -"), (15, "STRUCTURED-DATA"));
    assert_eq!(
        malformed(b"<13>1 - h a - - [x@1 a=\"1\"][x@1 b=\"2\"]"),
        (31, "SD-ID")
    );
    assert_eq!(
        malformed(b"<13>1 - h a - - [x@1 a=\"1"),
        (25, "PARAM-VALUE")
    );
    assert_eq!(
        malformed(b"<13>1 - h a - - [x@1 a=\"1]\"]"),
        (25, "PARAM-VALUE")
    );
    assert_eq!(malformed(b"<13>1 - h a - - [x@1 a=1]"), (22, "SD-PARAM"));
    assert_eq!(
        malformed(b"<13>1 - h a - - [x@1 a=\"1\"]text"),
        (27, "STRUCTURED-DATA")
    );
    assert_eq!(
        malformed(b"<13>1 - h a - - [x@1 a=\"\xff\"]"),
        (26, "PARAM-VALUE")
    );
}

#[test]
fn limits_refuse_a_message_and_its_mapped_event() {
    let limits = Limits {
        max_event_bytes: 40,
        max_attribute_keys: 12,
        ..Limits::default()
    };
    let long = b"<13>1 - h a - - - 0123456789012345678901234567890";
    assert_eq!(
        parse_message(long, at("2026-12-08T00:00:00Z"), &limits),
        Err(SyslogError::TooLarge { limit: 40 })
    );
    let many = b"<13>1 - h a - - [x@1 a=\"1\" b=\"2\" c=\"3\" d=\"4\"] m";
    let refused = parse_message(
        many,
        at("2026-12-08T00:00:00Z"),
        &Limits {
            max_event_bytes: 4096,
            ..limits
        },
    );
    assert!(matches!(refused, Err(SyslogError::Event(_))), "{refused:?}");
    assert_eq!(refused.unwrap_err().kind(), "event");
    // An actor over max_string_bytes is refused the same way.
    let host = "h".repeat(255);
    let app = "a".repeat(48);
    let long_actor = format!("<13>1 - {host} {app} - - - m");
    let refused = parse_message(
        long_actor.as_bytes(),
        at("2026-12-08T00:00:00Z"),
        &Limits {
            max_string_bytes: 256,
            ..Limits::default()
        },
    );
    assert!(matches!(refused, Err(SyslogError::Event(_))), "{refused:?}");
}

/// An RFC 5424 message from its parts.
fn render(
    priority: u8,
    fields: &[Option<String>; 4],
    sd: &[(String, Vec<(String, String)>)],
    message: &str,
) -> String {
    let nil = |f: &Option<String>| f.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "<{priority}>1 2026-12-08T01:02:03.5Z {} {} {} {} ",
        nil(&fields[0]),
        nil(&fields[1]),
        nil(&fields[2]),
        nil(&fields[3])
    );
    if sd.is_empty() {
        out.push('-');
    }
    for (id, params) in sd {
        out.push('[');
        out.push_str(id);
        for (name, value) in params {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(']', "\\]");
            out.push_str(&format!(" {name}=\"{escaped}\""));
        }
        out.push(']');
    }
    if !message.is_empty() {
        out.push(' ');
        out.push_str(message);
    }
    out
}

proptest! {
    /// Whatever the bytes, a message is mapped or refused, never a panic;
    /// a mapped UTF-8 message is its own payload.
    #[test]
    fn any_bytes_are_mapped_or_refused(raw in prop::collection::vec(any::<u8>(), 0..300), pri in 0u8..200) {
        let mut message = format!("<{pri}>").into_bytes();
        message.extend_from_slice(&raw);
        for bytes in [&raw, &message] {
            if let Ok(event) = parse(bytes, "2026-12-08T00:00:00Z")
                && let Ok(text) = std::str::from_utf8(bytes)
            {
                prop_assert_eq!(event.raw, text);
            }
        }
    }

    /// A well-formed RFC 5424 message gives back its parts.
    #[test]
    fn well_formed_messages_give_back_their_parts(
        priority in 0u8..192,
        fields in prop::array::uniform4(prop::option::of("[!-~&&[^-]][!-~]{0,20}")),
        sd in prop::collection::vec(("[a-z]{1,8}@[0-9]{1,5}", prop::collection::vec(("[a-z]{1,6}", "[ -~é]{0,12}"), 0..3)), 0..3),
        message in "[ -~é]{0,40}",
    ) {
        let mut sd = sd;
        sd.sort_by(|a, b| a.0.cmp(&b.0));
        sd.dedup_by(|a, b| a.0 == b.0);
        let raw = render(priority, &fields, &sd, &message);
        let read = read(raw.as_bytes(), at("2026-12-08T00:00:00Z")).unwrap();
        prop_assert_eq!(read.facility * 8 + read.severity, priority);
        let got = [read.hostname, read.app_name, read.proc_id, read.msg_id].map(|f| f.map(str::to_owned));
        prop_assert_eq!(&got, &fields);
        let expected: Vec<SdElement> = sd.iter().map(|(id, params)| SdElement { id: id.clone(), params: params.clone() }).collect();
        prop_assert_eq!(&read.structured_data, &expected);
        prop_assert_eq!(read.message, message.as_bytes());
        prop_assert_eq!(read.timestamp.as_deref(), Some("2026-12-08T01:02:03.5Z"));
    }
}
