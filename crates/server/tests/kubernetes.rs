#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! POST /v1/ingest/kubernetes: an apiserver audit webhook EventList is
//! appended item by item with the documented mapping, is durable when
//! answered, and the apiserver's retries (whole list or a subset) are
//! duplicates, while a repeated auditID/stage with different content is
//! appended.

mod common;

use common::*;
use serde_json::Value;
use stele_server::tokens::Role;

fn eventlist() -> Vec<u8> {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../ingest/tests/data/eventlist.json");
    std::fs::read(path).unwrap()
}

/// An EventList made of `items`, each taken byte for byte.
fn list_of(items: &[&[u8]]) -> Vec<u8> {
    let mut body =
        br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#.to_vec();
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventlist_replay_and_retries() {
    let server = start(|_| {}).await;
    let client = server.client();
    let webhook = server.token("kube-apiserver", &[Role::writer()]);
    let admin = server.admin_token.clone();
    let body = eventlist();
    let items: Vec<Value> = serde_json::from_slice::<Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    // The exact bytes of each item, as the server slices them.
    let raw_items: Vec<Vec<u8>> =
        stele_ingest::parse_event_list(&body, &stele_ingest::BodyLimits::default())
            .unwrap()
            .iter()
            .map(|k| k.raw.to_vec())
            .collect();
    assert_eq!(raw_items.len(), items.len());
    assert!(items.len() >= 5);

    let r = post_list(&server, &client, &webhook, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let receipts = r.json["receipts"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), items.len());
    // After the two token grants (admin, kube-apiserver).
    for (n, receipt) in receipts.iter().enumerate() {
        assert_eq!(
            receipt["index"],
            2 + n as u64,
            "every item is appended, in order"
        );
        assert!(receipt.get("duplicate").is_none());
    }

    // Durable and readable as soon as answered, with the mapping applied.
    for (n, receipt) in receipts.iter().enumerate() {
        let read = verify_receipt(&server, &client, &admin, receipt).await;
        let envelope = &read["event"];
        let event = &envelope["event"];
        let item = &items[n];
        assert_eq!(envelope["writer"], "kube-apiserver");
        assert_eq!(event["actor"], item["user"]["username"], "item {n}");
        assert_eq!(event["action"], item["verb"], "item {n}");
        let audit_id = item["auditID"].as_str().unwrap();
        let stage = item["stage"].as_str().unwrap();
        assert_eq!(event["id"], format!("k8s:{audit_id}/{stage}"));
        assert_eq!(event["source"], item["sourceIPs"][0], "item {n}");
        assert_eq!(envelope["source"], item["sourceIPs"][0], "item {n}");
        let expected_outcome = match item["responseStatus"]["code"].as_i64() {
            None | Some(0) => "unknown",
            Some(code) if code >= 400 => "failure",
            Some(_) => "success",
        };
        assert_eq!(event["outcome"], expected_outcome, "item {n}");
        assert_eq!(event["attributes"]["kubernetes"]["auditID"], audit_id);
        assert_eq!(event["attributes"]["kubernetes"]["stage"], stage);
        // requestObject/responseObject are kept only in the raw payload.
        assert!(
            event["attributes"]["kubernetes"]
                .get("requestObject")
                .is_none()
        );
        assert_eq!(
            envelope["payload"].as_str().unwrap().as_bytes(),
            raw_items[n].as_slice(),
            "the payload is the item's exact bytes"
        );
        let payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
        assert_eq!(&payload, item);
    }
    // Spot checks against the data file's known items.
    let first = server
        .get_event(&client, &admin, receipts[0]["index"].as_u64().unwrap())
        .await;
    assert_eq!(first["event"]["event"]["actor"], "alice@example.com");
    assert_eq!(first["event"]["event"]["action"], "list");
    assert_eq!(first["event"]["event"]["outcome"], "unknown");
    assert_eq!(first["event"]["event"]["source"], "10.0.12.7");
    assert_eq!(first["event"]["event"]["resource"], "core/default/pods");
    let forbidden = items
        .iter()
        .position(|i| i["responseStatus"]["code"] == 403)
        .unwrap();
    let forbidden = receipts[forbidden]["index"].as_u64().unwrap();
    let read = server.get_event(&client, &admin, forbidden).await;
    assert_eq!(read["event"]["event"]["outcome"], "failure");

    // The apiserver retries the same list: all duplicates, same receipts.
    let before = server.probe(&client, &webhook).await;
    let r = post_list(&server, &client, &webhook, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let again = r.json["receipts"].as_array().unwrap();
    assert_eq!(again.len(), receipts.len());
    for (original, retry) in receipts.iter().zip(again) {
        assert_eq!(retry["duplicate"], true, "{retry}");
        for key in ["index", "id", "commitment", "salt"] {
            assert_eq!(retry[key], original[key]);
        }
    }
    // And a later batch holding a subset of the same items.
    let subset = [
        &raw_items[1][..],
        &raw_items[3][..],
        &raw_items[items.len() - 1][..],
    ];
    let r = post_list(&server, &client, &webhook, list_of(&subset)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sub = r.json["receipts"].as_array().unwrap();
    assert_eq!(sub.len(), 3);
    for (receipt, original) in sub.iter().zip([1, 3, items.len() - 1]) {
        assert_eq!(receipt["duplicate"], true);
        assert_eq!(receipt["index"], receipts[original]["index"]);
        assert_eq!(receipt["salt"], receipts[original]["salt"]);
    }
    let after = server.probe(&client, &webhook).await;
    assert_eq!(after, before + 1, "retries must not append");

    // The same auditID and stage with different content is appended, not
    // hidden behind the earlier event.
    let mut altered: Value = items[2].clone();
    altered["verb"] = Value::from("delete");
    altered["responseStatus"]["code"] = Value::from(500);
    let altered_bytes = serde_json::to_vec(&altered).unwrap();
    let r = post_list(
        &server,
        &client,
        &webhook,
        list_of(&[&raw_items[0][..], &altered_bytes[..]]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mixed = r.json["receipts"].as_array().unwrap();
    assert_eq!(mixed[0]["duplicate"], true);
    assert_eq!(mixed[0]["index"], receipts[0]["index"]);
    assert!(mixed[1].get("duplicate").is_none(), "{}", mixed[1]);
    assert_eq!(mixed[1]["index"], after + 1);
    let read = verify_receipt(&server, &client, &admin, &mixed[1]).await;
    assert_eq!(read["event"]["event"]["action"], "delete");
    assert_eq!(read["event"]["event"]["outcome"], "failure");
    assert_eq!(read["event"]["event"]["id"], receipts_event_id(&items[2]));

    // Another writer replaying the list appends its own copies: keys are
    // per writer.
    let other = server.token("second-apiserver", &[Role::writer()]);
    let r = post_list(&server, &client, &other, list_of(&[&raw_items[0][..]])).await;
    assert_eq!(r.status, 200);
    assert!(r.json["receipts"][0].get("duplicate").is_none());

    drop(client);
    server.stop().await;
}

fn receipts_event_id(item: &Value) -> String {
    format!(
        "k8s:{}/{}",
        item["auditID"].as_str().unwrap(),
        item["stage"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_eventlists_are_refused_whole() {
    let server = start(|config| {
        config.limits.max_events_per_request = 3;
        config.limits.max_body_bytes = 256 * 1024;
    })
    .await;
    let client = server.client();
    let webhook = server.token("kube-apiserver", &[Role::writer()]);
    let body = eventlist();
    let raw_items: Vec<Vec<u8>> =
        stele_ingest::parse_event_list(&body, &stele_ingest::BodyLimits::default())
            .unwrap()
            .iter()
            .map(|k| k.raw.to_vec())
            .collect();
    let good = &raw_items[0][..];
    let no_user = br#"{"level":"Metadata","auditID":"x-1","stage":"ResponseComplete","verb":"get","user":{"groups":["g"]}}"#;
    let bad_stage = br#"{"level":"Metadata","auditID":"x-2","stage":"Later","verb":"get","user":{"username":"u"}}"#;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<u8>, u16, &str, Option<u64>, Option<&str>)> = vec![
        (
            "wrong kind",
            br#"{"kind":"PodList","apiVersion":"audit.k8s.io/v1","items":[]}"#.to_vec(),
            400,
            "invalid_event_list",
            None,
            None,
        ),
        (
            "old apiVersion",
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{}]}"#.to_vec(),
            400,
            "invalid_event_list",
            None,
            None,
        ),
        (
            "not an object",
            b"[1,2]".to_vec(),
            400,
            "invalid_event_list",
            None,
            None,
        ),
        ("empty items", list_of(&[]), 400, "no_events", None, None),
        (
            "item 1 without user.username",
            list_of(&[good, no_user]),
            400,
            "invalid_event",
            Some(1),
            Some("user.username"),
        ),
        (
            "unknown stage in item 2",
            list_of(&[good, good, bad_stage]),
            400,
            "invalid_event",
            Some(2),
            Some("stage"),
        ),
        (
            "too many items",
            list_of(&[good, good, good, good]),
            413,
            "too_many_events",
            None,
            None,
        ),
        (
            "truncated",
            body[..body.len() / 2].to_vec(),
            400,
            "invalid_json",
            None,
            None,
        ),
    ];
    let mut previous = server.probe(&client, &webhook).await;
    for (name, body, status, code, item, field) in cases {
        let r = post_list(&server, &client, &webhook, body).await;
        assert_eq!(r.status, status, "{name}: {}", r.text);
        assert_eq!(r.json["error"]["code"], code, "{name}: {}", r.text);
        if let Some(item) = item {
            assert_eq!(r.json["error"]["item"], item, "{name}: {}", r.text);
        }
        if let Some(field) = field {
            assert_eq!(r.json["error"]["field"], field, "{name}: {}", r.text);
        }
        let next = server.probe(&client, &webhook).await;
        assert_eq!(
            next,
            previous + 1,
            "{name}: a refused list appended entries"
        );
        previous = next;
    }

    // Bodies that are not an EventList from kube-apiserver at all, and
    // items over a limit (items may nest 128 deep: custom resources nest
    // deeply): 4xx naming the problem, nothing appended.
    let nested = format!(
        r#"{{"level":"Metadata","auditID":"x-3","stage":"ResponseComplete","verb":"get","user":{{"username":"u"}},"requestObject":{{"a":{}{}}}}}"#,
        "[".repeat(130),
        "]".repeat(130)
    );
    let huge_number = br#"{"level":"Metadata","auditID":"x-4","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"responseStatus":{"code":1e400}}"#;
    let user_array = br#"{"level":"Metadata","auditID":"x-7","stage":"ResponseComplete","verb":"get","user":["root","uid-1",["system:masters"],{}]}"#;
    let twice = br#"{"level":"Metadata","auditID":"x-8","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/decision":"allow"}}"#.to_vec();
    let mut not_utf8 = good.to_vec();
    let at = not_utf8.iter().position(|b| *b == b'"').unwrap() + 1;
    not_utf8.insert(at, 0xff);
    let mut oversize = br#"{"level":"Metadata","auditID":"x-5","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"annotations":{"pad":""#.to_vec();
    oversize.extend(std::iter::repeat_n(b'a', 70 * 1024));
    oversize.extend_from_slice(br#""}}"#);
    let mut over_body = list_of(&[good]);
    over_body.extend(std::iter::repeat_n(b' ', 300 * 1024));
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16, &str, Option<u64>)> = vec![
        (
            "text/plain",
            Some("text/plain"),
            list_of(&[good]),
            415,
            "unsupported_content_type",
            None,
        ),
        (
            "NDJSON",
            Some("application/x-ndjson"),
            list_of(&[good]),
            415,
            "unsupported_content_type",
            None,
        ),
        (
            "no content type",
            None,
            list_of(&[good]),
            415,
            "unsupported_content_type",
            None,
        ),
        (
            "Latin-1 charset",
            Some("application/json; charset=iso-8859-1"),
            list_of(&[good]),
            415,
            "unsupported_content_type",
            None,
        ),
        (
            "invalid UTF-8 in item 1",
            Some("application/json"),
            list_of(&[good, &not_utf8]),
            400,
            "invalid_utf8",
            None,
        ),
        (
            "nesting too deep in item 1",
            Some("application/json"),
            list_of(&[good, nested.as_bytes()]),
            400,
            "invalid_event",
            Some(1),
        ),
        (
            "number out of range in item 0",
            Some("application/json"),
            list_of(&[huge_number]),
            400,
            "invalid_event",
            Some(0),
        ),
        (
            "user given as an array in item 1",
            Some("application/json"),
            list_of(&[good, user_array]),
            400,
            "invalid_event",
            Some(1),
        ),
        (
            "a key twice in item 1's annotations",
            Some("application/json"),
            list_of(&[good, &twice]),
            400,
            "invalid_event",
            Some(1),
        ),
        (
            "item 1 over the event limit",
            Some("application/json"),
            list_of(&[good, &oversize]),
            413,
            "event_too_large",
            Some(1),
        ),
        (
            "body over the limit",
            Some("application/json"),
            over_body,
            413,
            "body_too_large",
            None,
        ),
    ];
    for (name, content_type, body, status, code, item) in cases {
        let r = post_raw(
            &client,
            &server.url("/v1/ingest/kubernetes"),
            Some(&webhook),
            content_type,
            body,
        )
        .await;
        assert_error(&r, status, code);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {}",
            r.text
        );
        if let Some(item) = item {
            assert_eq!(r.json["error"]["item"], item, "{name}: {}", r.text);
        }
        let next = server.probe(&client, &webhook).await;
        assert_eq!(
            next,
            previous + 1,
            "{name}: a refused list appended entries"
        );
        previous = next;
    }

    // What any API client chooses (a long Audit-ID, a long non-resource
    // URL) never costs the batch: both items are stored, and a retry of the
    // list is recognized.
    let mut long_id: Value = serde_json::from_slice(good).unwrap();
    long_id["auditID"] = Value::String("h".repeat(400));
    let mut long_uri: Value = serde_json::from_slice(good).unwrap();
    long_uri["auditID"] = Value::String("long-uri".into());
    long_uri.as_object_mut().unwrap().remove("objectRef");
    long_uri["requestURI"] = Value::String(format!("/healthz?{}", "q".repeat(5000)));
    let items = [
        serde_json::to_vec(&long_id).unwrap(),
        serde_json::to_vec(&long_uri).unwrap(),
    ];
    let body = list_of(&[&items[0], &items[1]]);
    let r = post_list(&server, &client, &webhook, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let first = r.json["receipts"].as_array().unwrap().clone();
    assert_eq!(first.len(), 2);
    let r = post_list(&server, &client, &webhook, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (n, receipt) in r.json["receipts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(receipt["duplicate"], true, "{receipt}");
        assert_eq!(receipt["index"], first[n]["index"]);
    }
    assert_eq!(server.probe(&client, &webhook).await, previous + 3);
    drop(client);
    server.stop().await;
}
