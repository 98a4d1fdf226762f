#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! POST /v1/events: JSON object, JSON array and NDJSON bodies append and
//! return receipts that verify offline; retries with a client `id` are
//! idempotent for identical content only; every kind of bad input is a 4xx
//! JSON error naming the problem and appends nothing.

mod common;

use common::*;
use serde_json::{Value, json};
use stele_server::tokens::Role;

fn receipts(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["receipts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_array_and_ndjson_append_and_verify() {
    let server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("ingest-bot", &[Role::writer()]);
    let admin = server.admin_token.clone();
    let url = server.url("/v1/events");

    // One object, with whitespace around it that is not part of the payload.
    let single =
        b"  {\"actor\": \"alice\", \"action\": \"login\", \"outcome\": \"success\"}\n".to_vec();
    let r = post_raw(
        &client,
        &url,
        Some(&writer),
        Some("application/json"),
        single,
    )
    .await;
    let one = receipts(&r);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["stream"], "default");
    assert!(one[0].get("duplicate").is_none());

    // An array of three, with a charset parameter.
    let array = br#"[ {"actor":"a","action":"x","stream":"payments"} ,
        {"actor":"b","action":"y","time":"2026-01-02T03:04:05+01:00"},{"actor":"c","action":"z","attributes":{"k":[1,2.5,"s",null,true]}} ]"#
        .to_vec();
    let r = post_raw(
        &client,
        &url,
        Some(&writer),
        Some("Application/JSON; charset=\"UTF-8\""),
        array,
    )
    .await;
    let three = receipts(&r);
    assert_eq!(three.len(), 3);
    assert_eq!(three[0]["stream"], "payments");
    // NDJSON, with CRLF, a blank line and a trailing newline.
    let ndjson = b"{\"actor\":\"n1\",\"action\":\"a\"}\r\n\n{\"actor\":\"n2\",\"action\":\"b\"}\n{\"actor\":\"n3\",\"action\":\"c\"}\n".to_vec();
    let r = post_raw(
        &client,
        &url,
        Some(&writer),
        Some("application/x-ndjson"),
        ndjson,
    )
    .await;
    let ndjson_receipts = receipts(&r);
    assert_eq!(ndjson_receipts.len(), 3);
    let r = post_raw(
        &client,
        &url,
        Some(&writer),
        Some("application/jsonl"),
        b"{\"actor\":\"j1\",\"action\":\"a\"}".to_vec(),
    )
    .await;
    let jsonl = receipts(&r);

    // Indexes are consecutive across requests: nothing else was appended
    // after the token grants (the first admin token's and the writer's).
    let all: Vec<&Value> = one
        .iter()
        .chain(&three)
        .chain(&ndjson_receipts)
        .chain(&jsonl)
        .collect();
    for (n, receipt) in all.iter().enumerate() {
        assert_eq!(receipt["index"].as_u64().unwrap(), 2 + n as u64);
    }
    let mut ids = std::collections::HashSet::new();
    for receipt in &all {
        assert!(ids.insert(receipt["id"].as_str().unwrap().to_string()));
    }

    // Every receipt matches the stored entry and its proof verifies.
    let mut reads = Vec::new();
    for receipt in &all {
        reads.push(verify_receipt(&server, &client, &admin, receipt).await);
    }
    // The payload is each event's exact text; the envelope records the
    // writer, the channel and the normalized time.
    assert_eq!(
        reads[0]["event"]["payload"],
        "{\"actor\": \"alice\", \"action\": \"login\", \"outcome\": \"success\"}"
    );
    assert_eq!(reads[0]["event"]["writer"], "ingest-bot");
    assert_eq!(reads[0]["event"]["source"], "http");
    assert_eq!(reads[0]["event"]["event"]["outcome"], "success");
    assert_eq!(
        reads[1]["event"]["payload"],
        r#"{"actor":"a","action":"x","stream":"payments"}"#
    );
    assert_eq!(reads[2]["event"]["event"]["time"], "2026-01-02T02:04:05Z");
    assert_eq!(
        reads[3]["event"]["event"]["attributes"],
        json!({"k": [1, 2.5, "s", null, true]})
    );
    assert_eq!(
        reads[4]["event"]["payload"],
        r#"{"actor":"n1","action":"a"}"#
    );
    assert_eq!(reads[6]["event"]["event"]["actor"], "n3");

    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_a_client_id_are_idempotent() {
    let server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("retrier", &[Role::writer()]);
    let other_writer = server.token("someone-else", &[Role::writer()]);
    let url = server.url("/v1/events");
    let body = json!([
        {"actor": "alice", "action": "pay", "id": "order-1", "attributes": {"amount": 10}},
        {"actor": "alice", "action": "pay", "id": "order-2"},
        {"actor": "alice", "action": "no-id"},
    ]);
    let first = receipts(&post_json(&client, &url, Some(&writer), &body).await);
    assert_eq!(first.len(), 3);

    // The same request again: the identified events come back as the
    // originals; the event without an id is a new event.
    // After the three token grants (admin, retrier, someone-else) and the
    // three events.
    let p0 = server.probe(&client, &writer).await;
    assert_eq!(p0, 3 + 3);
    let again = receipts(&post_json(&client, &url, Some(&writer), &body).await);
    for n in 0..2 {
        assert_eq!(again[n]["duplicate"], true, "{}", again[n]);
        for key in ["index", "id", "stream", "commitment", "salt"] {
            assert_eq!(again[n][key], first[n][key], "{key} of receipt {n}");
        }
    }
    assert!(again[2].get("duplicate").is_none());
    assert_eq!(again[2]["index"], p0 + 1);
    // Only the id-less event was appended.
    let p1 = server.probe(&client, &writer).await;
    assert_eq!(p1, p0 + 2);

    // A single-object retry, and a retry inside one request, too.
    let single = json!({"actor": "alice", "action": "pay", "id": "order-2"});
    let r = receipts(&post_json(&client, &url, Some(&writer), &single).await);
    assert_eq!(r[0]["duplicate"], true);
    assert_eq!(r[0]["index"], first[1]["index"]);
    let twice = json!([
        {"actor": "bob", "action": "x", "id": "twice"},
        {"actor": "bob", "action": "x", "id": "twice"},
    ]);
    let r = receipts(&post_json(&client, &url, Some(&writer), &twice).await);
    assert_eq!(r[0]["index"], p1 + 1);
    assert!(r[0].get("duplicate").is_none());
    assert_eq!(r[1]["duplicate"], true);
    assert_eq!(r[1]["index"], r[0]["index"]);
    assert_eq!(r[1]["salt"], r[0]["salt"]);
    let p2 = server.probe(&client, &writer).await;
    assert_eq!(p2, p1 + 2);

    // The same id with different content is a new event, not hidden.
    let changed =
        json!({"actor": "alice", "action": "pay", "id": "order-1", "attributes": {"amount": 11}});
    let r = receipts(&post_json(&client, &url, Some(&writer), &changed).await);
    assert!(r[0].get("duplicate").is_none(), "{}", r[0]);
    assert_eq!(r[0]["index"], p2 + 1);
    assert_ne!(r[0]["commitment"], first[0]["commitment"]);
    // A retry is the same JSON value: spacing and member order do not
    // matter (a client may serialize again before retrying)...
    let spaced = br#"{ "id" : "order-1", "attributes": {"amount": 10.0},
        "action": "pay", "actor": "alice" }"#
        .to_vec();
    let r = receipts(
        &post_raw(
            &client,
            &url,
            Some(&writer),
            Some("application/json"),
            spaced,
        )
        .await,
    );
    assert_eq!(r[0]["duplicate"], true, "{}", r[0]);
    assert_eq!(r[0]["index"], first[0]["index"]);
    // ... but any difference in a value does.
    let other =
        br#"{"actor": "alice", "action": "pay", "id": "order-2", "outcome": "success"}"#.to_vec();
    let r = receipts(
        &post_raw(
            &client,
            &url,
            Some(&writer),
            Some("application/json"),
            other,
        )
        .await,
    );
    assert!(r[0].get("duplicate").is_none(), "{}", r[0]);
    assert_eq!(r[0]["index"], p2 + 2);

    // Idempotency keys belong to a writer: another principal's event with
    // the same id and content is its own event.
    let r = receipts(&post_json(&client, &url, Some(&other_writer), &single).await);
    assert!(r[0].get("duplicate").is_none());
    assert_eq!(r[0]["index"], p2 + 3);

    // The retried originals still verify.
    let admin = server.admin_token.clone();
    verify_receipt(&server, &client, &admin, &again[0]).await;
    verify_receipt(&server, &client, &admin, &again[1]).await;

    drop(client);
    server.stop().await;
}

/// One refused request: what to send and what the error must say.
struct Bad {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    item: Option<u64>,
    line: Option<u64>,
    field: Option<&'static str>,
    /// Words the message must contain (lowercase match).
    message: &'static [&'static str],
}

fn bad(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Bad {
    Bad {
        name,
        content_type: Some("application/json"),
        body: body.into(),
        status,
        code,
        item: None,
        line: None,
        field: None,
        message: &[],
    }
}

impl Bad {
    fn ct(mut self, content_type: Option<&'static str>) -> Bad {
        self.content_type = content_type;
        self
    }
    fn ndjson(self) -> Bad {
        self.ct(Some("application/x-ndjson"))
    }
    fn item(mut self, item: u64) -> Bad {
        self.item = Some(item);
        self
    }
    fn line(mut self, line: u64) -> Bad {
        self.line = Some(line);
        self
    }
    fn field(mut self, field: &'static str) -> Bad {
        self.field = Some(field);
        self
    }
    fn says(mut self, words: &'static [&'static str]) -> Bad {
        self.message = words;
        self
    }
}

const OK: &str = r#"{"actor":"a","action":"b"}"#;

fn nested_arrays(depth: usize) -> String {
    format!(
        r#"{{"actor":"a","action":"b","attributes":{{"deep":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn big_event(bytes: usize) -> String {
    format!(
        r#"{{"actor":"a","action":"b","attributes":{{"blob":"{}"}}}}"#,
        "x".repeat(bytes)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_whole_and_named() {
    let server = start(|config| {
        config.limits.max_body_bytes = 200_000;
        config.limits.max_events_per_request = 10;
    })
    .await;
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let url = server.url("/v1/events");

    let eleven_array = format!("[{}]", [OK; 11].join(","));
    let eleven_lines = [OK; 11].join("\n");
    let mut invalid_utf8 = br#"{"actor":"a"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#"","action":"b"}"#);
    let mut invalid_utf8_line = format!("{OK}\n").into_bytes();
    invalid_utf8_line.extend_from_slice(&invalid_utf8);
    let mut overlong = br#"{"actor":"a","action":""#.to_vec();
    overlong.extend_from_slice(&[0xc0, 0xaf]); // overlong encoding of '/'
    overlong.extend_from_slice(br#""}"#);

    let cases = vec![
        bad(
            "truncated JSON",
            r#"{"actor": "a", "action": "#,
            400,
            "invalid_json",
        ),
        bad("not JSON", "hello", 400, "invalid_json"),
        bad(
            "syntax error in array element 2",
            format!(r#"[{OK},{OK},{{"actor": ]"#),
            400,
            "invalid_json",
        )
        .item(2),
        bad("trailing data", format!("{OK} {OK}"), 400, "invalid_json").says(&["trailing"]),
        bad(
            "number for actor",
            r#"{"actor": 5, "action": "x"}"#,
            400,
            "invalid_event",
        )
        .item(0)
        .field("actor"),
        bad(
            "array for action in item 1",
            format!(r#"[{OK}, {{"actor":"a","action":["x"]}}]"#),
            400,
            "invalid_event",
        )
        .item(1)
        .field("action"),
        bad(
            "element that is not an object",
            format!("[{OK}, 42]"),
            400,
            "invalid_event",
        )
        .item(1),
        bad(
            "unknown field",
            r#"{"actor":"a","action":"b","colour":"red"}"#,
            400,
            "invalid_event",
        )
        .item(0)
        .field("colour"),
        bad("missing action", r#"{"actor":"a"}"#, 400, "invalid_event")
            .item(0)
            .field("action"),
        bad(
            "empty actor",
            r#"{"actor":"","action":"b"}"#,
            400,
            "invalid_event",
        )
        .field("actor"),
        bad(
            "duplicate key",
            r#"{"actor":"a","actor":"b","action":"c"}"#,
            400,
            "invalid_event",
        )
        .field("actor"),
        bad(
            "reserved stream",
            r#"{"actor":"a","action":"b","stream":"_system"}"#,
            400,
            "invalid_event",
        )
        .field("stream"),
        bad(
            "bad time",
            r#"{"actor":"a","action":"b","time":"yesterday"}"#,
            400,
            "invalid_event",
        )
        .field("time"),
        bad(
            "2^53+1",
            r#"{"actor":"a","action":"b","attributes":{"n":9007199254740993}}"#,
            400,
            "invalid_event",
        )
        .item(0)
        .field("attributes.n"),
        bad(
            "-(2^53+1) in array item 1",
            format!(
                r#"[{OK},{{"actor":"a","action":"b","attributes":{{"n":-9007199254740993}}}}]"#
            ),
            400,
            "invalid_event",
        )
        .item(1)
        .field("attributes.n"),
        bad(
            "1e400",
            r#"{"actor":"a","action":"b","attributes":{"n":1e400}}"#,
            400,
            "invalid_event",
        )
        .field("attributes.n"),
        bad(
            "100 nested arrays",
            nested_arrays(100),
            400,
            "invalid_event",
        )
        .item(0)
        .says(&["deep"]),
        bad(
            "100 nested arrays in item 1",
            format!("[{OK},{}]", nested_arrays(100)),
            400,
            "invalid_event",
        )
        .item(1)
        .says(&["deep"]),
        bad(
            "5000 nested arrays (stack)",
            nested_arrays(5000),
            400,
            "invalid_event",
        )
        .item(0),
        bad("invalid UTF-8", invalid_utf8.clone(), 400, "invalid_utf8").says(&["utf-8"]),
        bad("overlong UTF-8", overlong, 400, "invalid_utf8"),
        bad(
            "invalid UTF-8 on NDJSON line 2",
            invalid_utf8_line,
            400,
            "invalid_utf8",
        )
        .ndjson()
        .item(1)
        .line(2),
        bad("empty array", "[]", 400, "no_events"),
        bad("empty body", "", 400, "no_events"),
        bad("blank NDJSON", "\n\n  \n", 400, "no_events").ndjson(),
        bad(
            "bad NDJSON line 3",
            format!("{OK}\n\n{{\"actor\":\"a\"}}\n"),
            400,
            "invalid_event",
        )
        .ndjson()
        .item(1)
        .line(3)
        .field("action"),
        bad(
            "two events on one NDJSON line",
            format!("{OK}{OK}\n"),
            400,
            "invalid_json",
        )
        .ndjson()
        .line(1),
        bad("text/plain", OK, 415, "unsupported_content_type")
            .ct(Some("text/plain"))
            .says(&["text/plain"]),
        bad("no content type", OK, 415, "unsupported_content_type").ct(None),
        bad("latin-1 charset", OK, 415, "unsupported_content_type")
            .ct(Some("application/json; charset=iso-8859-1")),
        bad("form content type", OK, 415, "unsupported_content_type")
            .ct(Some("application/x-www-form-urlencoded")),
        bad(
            "too many events (array)",
            eleven_array,
            413,
            "too_many_events",
        )
        .says(&["10"]),
        bad(
            "too many events (NDJSON)",
            eleven_lines,
            413,
            "too_many_events",
        )
        .ndjson(),
        bad(
            "event over 64 KiB",
            big_event(70_000),
            413,
            "event_too_large",
        )
        .item(0)
        .says(&["65536"]),
        bad(
            "event over 64 KiB as item 1",
            format!("[{OK},{}]", big_event(70_000)),
            413,
            "event_too_large",
        )
        .item(1),
        bad(
            "body over max_body_bytes",
            format!("[{}]", vec![big_event(60_000); 4].join(",")),
            413,
            "body_too_large",
        )
        .says(&["200000"]),
    ];

    let mut previous = server.probe(&client, &writer).await;
    for case in cases {
        let r = post_raw(
            &client,
            &url,
            Some(&writer),
            case.content_type,
            case.body.clone(),
        )
        .await;
        let name = case.name;
        assert_eq!(
            r.status, case.status,
            "{name}: expected {} got {} {}",
            case.status, r.status, r.text
        );
        assert!(r.status < 500);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{name}"
        );
        let error = &r.json["error"];
        assert_eq!(error["code"], case.code, "{name}: {error}");
        let message = error["message"].as_str().unwrap_or("").to_lowercase();
        assert!(!message.is_empty(), "{name}: no message");
        for word in case.message {
            assert!(
                message.contains(word),
                "{name}: message {message:?} does not mention {word:?}"
            );
        }
        if let Some(item) = case.item {
            assert_eq!(error["item"], item, "{name}: {error}");
            assert!(
                message.contains(&format!("event {item}")),
                "{name}: message {message:?} does not name event {item}"
            );
        }
        if let Some(line) = case.line {
            assert_eq!(error["line"], line, "{name}: {error}");
        }
        if let Some(field) = case.field {
            assert_eq!(error["field"], field, "{name}: {error}");
        }
        // Nothing of the refused request was appended.
        let next = server.probe(&client, &writer).await;
        assert_eq!(
            next,
            previous + 1,
            "{name}: the refused request appended entries"
        );
        previous = next;
    }

    drop(client);
    server.stop().await;
}

/// A body sent without a length (chunked) is cut off as soon as it passes
/// `max_body_bytes`: 413 with a JSON error, the rest never read, nothing
/// appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_while_streaming() {
    use tokio::io::AsyncWriteExt as _;
    let server = start(|config| {
        config.limits.max_body_bytes = 100_000;
    })
    .await;
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let before = log_size(&server, &client).await;

    let mut stream = raw_tls(&server).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {writer}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Valid NDJSON lines, 8 KiB chunks, up to 1 MB: far over the limit.
    let line = format!("{}\n", json!({"actor": "a", "action": "x".repeat(200)}));
    let chunk: String = line.repeat(8192 / line.len());
    let mut sent = 0usize;
    while sent < 1_000_000 {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break; // the server stopped reading and closed: expected
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let _ = stream.flush().await;
    let (status, head, body) =
        read_http1_response(&mut stream, std::time::Duration::from_secs(10)).await;
    assert_eq!(status, 413, "{head}");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "body_too_large", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000"),
        "{error}"
    );
    assert_eq!(log_size(&server, &client).await, before);
    drop(client);
    server.stop().await;
}

/// Edges of HTTP/1.1 framing and headers, over raw TLS: a client that
/// half-closes after its request still gets its receipt; broken chunked
/// framing is a 400 that says so (not "too large"); a Content-Type that is
/// not ASCII is refused as such; two Authorization headers are refused.
/// Nothing refused is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_framing_and_header_edges() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let reader = server.token("reader", &[Role::reader()]);
    let before = log_size(&server, &client).await;

    // Half-close: the request, then EOF on the client's sending side.
    let event = r#"{"actor":"half","action":"close"}"#;
    let mut stream = raw_tls(&server).await;
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {writer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{event}",
        event.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 10 s")
        .ok();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""receipts""#), "{text}");
    assert_eq!(log_size(&server, &client).await, before + 1);

    // Broken chunked framing.
    for body in [
        "zz\r\n{}\r\n0\r\n\r\n".to_string(),
        format!("{:x}\r\n{event}0\r\n\r\n", event.len()),
    ] {
        let mut stream = raw_tls(&server).await;
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {writer}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (status, head, body) = read_http1_response(&mut stream, Duration::from_secs(10)).await;
        assert_eq!(status, 400, "{head}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "invalid_body", "{error}");
    }

    // A Content-Type with a byte that is not ASCII.
    let mut stream = raw_tls(&server).await;
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {writer}\r\n\
         Content-Length: {}\r\nContent-Type: application/json; x=",
        event.len()
    )
    .into_bytes();
    request.push(0xff);
    request.extend_from_slice(format!("\r\n\r\n{event}").as_bytes());
    stream.write_all(&request).await.unwrap();
    let (status, head, body) = read_http1_response(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(status, 415, "{head}");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        error["error"]["code"], "unsupported_content_type",
        "{error}"
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not visible ASCII") && !message.contains("missing"),
        "{message}"
    );

    // Two Authorization headers, valid or not, in either order.
    for (first, second) in [
        (writer.as_str(), "bad"),
        ("bad", writer.as_str()),
        (writer.as_str(), reader.as_str()),
    ] {
        let r = send(
            client
                .post(server.url("/v1/events"))
                .header("authorization", format!("Bearer {first}"))
                .header("authorization", format!("Bearer {second}"))
                .json(&serde_json::json!({"actor": "a", "action": "b"})),
        )
        .await;
        assert_error(&r, 401, "unauthenticated");
        assert!(r.text.contains("more than one"), "{}", r.text);
    }
    assert_eq!(log_size(&server, &client).await, before + 1);
    drop(client);
    server.stop().await;
}
