//! Tests of the Kubernetes audit webhook adapter against an `EventList`
//! modeled on real kube-apiserver output (`tests/data/eventlist.json`, kept
//! there so the server's tests can reuse it): every mapped field, the raw
//! slices, dedupe keys, every refusal, and acceptance by `new_envelope`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use stele_event::{EventError, Limits, new_envelope};
use stele_ingest::{BodyLimits, IngestError, K8sEvent, dedupe_key, parse_event_list};

const EVENT_LIST: &str = include_str!("data/eventlist.json");

fn limits() -> BodyLimits {
    BodyLimits::default()
}

fn parse() -> Vec<K8sEvent<'static>> {
    parse_event_list(EVENT_LIST.as_bytes(), &limits()).unwrap()
}

fn kubernetes(event: &K8sEvent<'_>) -> Value {
    event.event.attributes.as_ref().unwrap()["kubernetes"].clone()
}

/// A list of the given items, built as kube-apiserver writes it.
fn list(items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items,
    }))
    .unwrap()
}

fn item(index: usize) -> Value {
    let all: Value = serde_json::from_str(EVENT_LIST).unwrap();
    all["items"][index].clone()
}

#[test]
fn raw_slices_are_the_items_bytes() {
    let events = parse();
    let all: Value = serde_json::from_str(EVENT_LIST).unwrap();
    let items = all["items"].as_array().unwrap();
    assert_eq!(events.len(), items.len());
    let body = EVENT_LIST.as_bytes().as_ptr_range();
    for (event, item) in events.iter().zip(items) {
        assert!(body.contains(&event.raw.as_ptr()));
        assert_eq!(&serde_json::from_slice::<Value>(event.raw).unwrap(), item);
        assert_eq!(event.raw.first(), Some(&b'{'));
        assert_eq!(event.raw.last(), Some(&b'}'));
    }
}

#[test]
fn request_received_and_response_complete_of_a_list() {
    let events = parse();
    let (received, complete) = (&events[0], &events[1]);
    assert_eq!(received.audit_id, complete.audit_id);
    assert_eq!(received.stage, "RequestReceived");
    assert_eq!(complete.stage, "ResponseComplete");
    for event in [received, complete] {
        assert_eq!(event.event.actor, "alice@example.com");
        assert_eq!(event.event.action, "list");
        assert_eq!(event.event.resource.as_deref(), Some("core/default/pods"));
        assert_eq!(event.event.source.as_deref(), Some("10.0.12.7"));
        assert_eq!(event.event.stream, None);
    }
    assert_eq!(received.event.outcome.as_deref(), Some("unknown"));
    assert_eq!(complete.event.outcome.as_deref(), Some("success"));
    assert_eq!(
        received.event.id.as_deref(),
        Some("k8s:5d4b1f0e-3c0a-4a8e-9f3b-2a1c6e7d8f90/RequestReceived")
    );
    assert_eq!(
        complete.event.id.as_deref(),
        Some("k8s:5d4b1f0e-3c0a-4a8e-9f3b-2a1c6e7d8f90/ResponseComplete")
    );
    // Microseconds are kept; the trailing zero-free form is jiff's.
    assert_eq!(
        received.event.time.as_deref(),
        Some("2024-05-14T09:21:07.712873Z")
    );
    assert_eq!(
        complete.event.time.as_deref(),
        Some("2024-05-14T09:21:07.718532Z")
    );
    assert_eq!(
        kubernetes(received),
        json!({
            "auditID": "5d4b1f0e-3c0a-4a8e-9f3b-2a1c6e7d8f90",
            "stage": "RequestReceived",
            "level": "Metadata",
            "requestURI": "/api/v1/namespaces/default/pods?limit=500",
            "userAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
            "sourceIPs": ["10.0.12.7", "192.168.1.20"],
            "user": {
                "username": "alice@example.com",
                "groups": ["developers", "system:authenticated"]
            },
            "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"}
        })
    );
    let attributes = kubernetes(complete);
    assert_eq!(attributes["responseStatus"], json!({"code": 200}));
    assert_eq!(
        attributes["annotations"]["authorization.k8s.io/decision"],
        json!("allow")
    );
}

#[test]
fn create_configmap_keeps_the_request_object_out_of_attributes() {
    let event = &parse()[2];
    assert_eq!(event.event.actor, "system:serviceaccount:ci:deployer");
    assert_eq!(event.event.action, "create");
    assert_eq!(
        event.event.resource.as_deref(),
        Some("core/payments/configmaps/app-config")
    );
    assert_eq!(event.event.outcome.as_deref(), Some("success"));
    assert_eq!(
        event.event.time.as_deref(),
        Some("2024-05-14T09:22:41.01567Z")
    );
    let attributes = kubernetes(event);
    assert_eq!(attributes["level"], json!("Request"));
    assert_eq!(
        attributes["user"]["uid"],
        json!("9a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9")
    );
    assert_eq!(
        attributes["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["runner-7c9d8"])
    );
    assert_eq!(attributes["objectRef"]["name"], json!("app-config"));
    let text = serde_json::to_string(&event.event.to_json()).unwrap();
    assert!(!text.contains("requestObject"));
    assert!(!text.contains("LOG_LEVEL"));
    // It is still in the raw payload.
    assert!(
        std::str::from_utf8(event.raw)
            .unwrap()
            .contains("LOG_LEVEL")
    );
}

#[test]
fn forbidden_request_is_a_failure_with_its_reason() {
    let event = &parse()[3];
    assert_eq!(event.event.actor, "bob@example.com");
    assert_eq!(event.event.action, "get");
    assert_eq!(
        event.event.resource.as_deref(),
        Some("core/payments/secrets/db-credentials")
    );
    assert_eq!(event.event.outcome.as_deref(), Some("failure"));
    assert_eq!(event.event.source.as_deref(), Some("203.0.113.45"));
    let attributes = kubernetes(event);
    assert_eq!(
        attributes["responseStatus"],
        json!({"code": 403, "reason": "Forbidden"})
    );
    assert_eq!(
        attributes["annotations"]["authorization.k8s.io/decision"],
        json!("forbid")
    );
}

#[test]
fn cluster_scoped_resource_with_impersonation() {
    let event = &parse()[4];
    assert_eq!(event.event.actor, "admin@example.com");
    assert_eq!(
        event.event.resource.as_deref(),
        Some("rbac.authorization.k8s.io/_cluster/clusterroles/cluster-admin")
    );
    assert_eq!(
        kubernetes(event)["impersonatedUser"],
        json!({
            "username": "system:serviceaccount:kube-system:auditor",
            "groups": ["system:serviceaccounts"]
        })
    );
}

#[test]
fn non_resource_url_uses_the_request_uri() {
    let event = &parse()[5];
    assert_eq!(event.event.actor, "system:anonymous");
    assert_eq!(event.event.action, "get");
    assert_eq!(event.event.resource.as_deref(), Some("/healthz"));
    assert_eq!(event.event.outcome.as_deref(), Some("success"));
    assert!(kubernetes(event).get("objectRef").is_none());
}

#[test]
fn subresource_and_response_started() {
    let event = &parse()[6];
    assert_eq!(event.stage, "ResponseStarted");
    assert_eq!(
        event.event.resource.as_deref(),
        Some("core/payments/pods/api-6d4cf56db6-x7k2p/exec")
    );
    assert_eq!(event.event.outcome.as_deref(), Some("success"));
}

#[test]
fn dedupe_keys_are_distinct_per_stage_and_request() {
    let events = parse();
    let mut keys: Vec<_> = events.iter().map(|e| e.event.id.clone().unwrap()).collect();
    for (event, key) in events.iter().zip(&keys) {
        assert_eq!(key, &dedupe_key(&event.audit_id, &event.stage, 256));
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), events.len());
    assert_eq!(dedupe_key("abc", "Panic", 256), "k8s:abc/Panic");
    // Up to the limit the ID is kept as it is; beyond, it is hashed (the
    // SHA-256 of "abc" is the FIPS 180-2 example).
    assert_eq!(dedupe_key("abc", "Panic", 13), "k8s:abc/Panic");
    assert_eq!(
        dedupe_key("abc", "Panic", 12),
        "k8s:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/Panic"
    );
}

#[test]
fn mapped_events_are_accepted_by_new_envelope_and_reparse_identically() {
    let received_at = "2024-05-14T09:30:00Z".parse::<jiff::Timestamp>().unwrap();
    for event in parse() {
        let envelope = new_envelope(
            event.event.clone(),
            event.raw,
            "01890a5d-ac96-774b-bcce-b302099a8057".to_owned(),
            received_at,
            "k8s-apiserver",
            "kubernetes",
            "kubernetes",
        )
        .unwrap();
        let bytes = envelope.canonical_bytes();
        assert_eq!(
            stele_event::Envelope::from_canonical(&bytes).unwrap(),
            envelope
        );
        // The mapped event is a valid client event in its own right.
        let text = serde_json::to_vec(&event.event.to_json()).unwrap();
        assert_eq!(
            stele_event::parse_client_event(&text, &Limits::default()).unwrap(),
            event.event
        );
    }
}

fn error_for(items: Vec<Value>) -> IngestError {
    parse_event_list(&list(items), &limits()).unwrap_err()
}

#[test]
fn missing_required_fields_name_the_item() {
    for (field, path) in [
        ("auditID", "auditID"),
        ("stage", "stage"),
        ("verb", "verb"),
        ("user", "user"),
    ] {
        let mut bad = item(1);
        bad.as_object_mut().unwrap().remove(field);
        let error = error_for(vec![item(0), item(2), bad]);
        assert_eq!(error.code(), "invalid_event", "{field}");
        assert_eq!(error.item(), Some(2), "{field}");
        assert_eq!(error.field(), Some(path), "{field}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("event 2: field \"{path}\"")),
            "{error}"
        );
    }
    let mut bad = item(0);
    bad["user"] = json!({"groups": ["x"]});
    assert_eq!(error_for(vec![bad]).field(), Some("user.username"));
    let mut bad = item(0);
    bad["auditID"] = json!("");
    assert_eq!(error_for(vec![bad]).field(), Some("auditID"));
    let mut bad = item(0);
    bad["stage"] = json!("Whenever");
    let error = error_for(vec![bad]);
    assert_eq!((error.item(), error.field()), (Some(0), Some("stage")));
    let mut bad = item(0);
    bad["verb"] = json!(7);
    let error = error_for(vec![item(0), bad]);
    assert_eq!((error.code(), error.item()), ("invalid_event", Some(1)));
    let error = error_for(vec![item(0), json!(42)]);
    assert_eq!((error.code(), error.item()), ("invalid_event", Some(1)));
}

#[test]
fn values_over_the_event_limits_refuse_the_item_untruncated() {
    let mut bad = item(0);
    bad["user"]["username"] = json!("u".repeat(1025));
    let error = error_for(vec![item(1), bad]);
    let IngestError::Event {
        item: 1,
        line: None,
        source: EventError::StringTooLong { field, .. },
    } = &error
    else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(field, "actor");
    let mut bad = item(0);
    bad["stageTimestamp"] = json!("yesterday");
    assert_eq!(error_for(vec![bad]).field(), Some("time"));
}

/// What any API client chooses — its audit ID and a non-resource URL —
/// never refuses the item (and the batch of other users' events with it):
/// a long audit ID is hashed into the id, a long URL shortened with its
/// hash in `resource`; both stay whole in the attributes and the raw bytes.
#[test]
fn client_chosen_values_over_the_limits_are_kept_not_refused() {
    let long_uri = format!("/healthz?{}", "a".repeat(2000));
    let long_id = "x".repeat(300);
    let mut uri_item = item(5);
    uri_item["requestURI"] = json!(long_uri);
    let mut id_item = item(0);
    id_item["auditID"] = json!(long_id);
    let body = list(vec![item(1), uri_item, id_item]);
    let events = parse_event_list(&body, &limits()).unwrap();
    assert_eq!(events.len(), 3);

    let resource = events[1].event.resource.as_deref().unwrap();
    assert!(resource.len() <= 1024, "{}", resource.len());
    assert!(long_uri.starts_with(resource.split('…').next().unwrap()));
    assert!(
        resource.len() > 900,
        "kept as much as fits: {}",
        resource.len()
    );
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(long_uri.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        resource.ends_with(&format!("…sha256:{digest}")),
        "{resource}"
    );
    assert_eq!(kubernetes(&events[1])["requestURI"], long_uri.as_str());
    assert!(
        std::str::from_utf8(events[1].raw)
            .unwrap()
            .contains(&long_uri)
    );

    let id = events[2].event.id.as_deref().unwrap();
    assert!(id.starts_with("k8s:sha256:") && id.len() <= 256, "{id}");
    assert_eq!(kubernetes(&events[2])["auditID"], long_id.as_str());
    assert_eq!(id, dedupe_key(&long_id, &events[2].stage, 256));
    // Another stage of the same request keeps a distinct key.
    let other = if events[2].stage == "RequestReceived" {
        "ResponseComplete"
    } else {
        "RequestReceived"
    };
    assert_ne!(id, dedupe_key(&long_id, other, 256));
}

#[test]
fn envelope_must_be_an_audit_v1_event_list() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"kind": "PodList", "apiVersion": "audit.k8s.io/v1", "items": [item(0)]}),
            "kind is \"PodList\"",
        ),
        (
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1beta1", "items": [item(0)]}),
            "--audit-webhook-version=audit.k8s.io/v1",
        ),
        (
            json!({"kind": "EventList", "apiVersion": "v1", "items": [item(0)]}),
            "apiVersion is \"v1\"",
        ),
        (
            json!({"apiVersion": "audit.k8s.io/v1", "items": [item(0)]}),
            "missing \"kind\"",
        ),
        (
            json!({"kind": 1, "apiVersion": "audit.k8s.io/v1", "items": [item(0)]}),
            "kind must be the string",
        ),
        (
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {"0": item(0)}}),
            "\"items\" must be an array",
        ),
        (
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": null}),
            "\"items\" must be an array",
        ),
        (
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}),
            "missing \"items\"",
        ),
        (json!([item(0)]), "not a JSON object"),
    ];
    for (body, message) in cases {
        let error = parse_event_list(&serde_json::to_vec(&body).unwrap(), &limits()).unwrap_err();
        assert_eq!(error.code(), "invalid_event_list", "{body}");
        assert!(error.to_string().contains(message), "{error} / {message}");
    }
    // A wrong kind is reported as such even when the items are not audit events.
    let body = br#"{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{}}]}"#;
    assert_eq!(
        parse_event_list(body, &limits()).unwrap_err().code(),
        "invalid_event_list"
    );
    let duplicate =
        br#"{"kind":"EventList","kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;
    assert!(
        parse_event_list(duplicate, &limits())
            .unwrap_err()
            .to_string()
            .contains("duplicate member")
    );
    assert_eq!(error_for(vec![]), IngestError::NoEvents);
    // Unknown members of the list and of items are tolerated.
    let mut future = item(1);
    future["newField"] = json!({"nested": [1, 2, 3]});
    let mut body: Value = serde_json::from_slice(&list(vec![future])).unwrap();
    body["continue"] = json!("");
    assert!(parse_event_list(&serde_json::to_vec(&body).unwrap(), &limits()).is_ok());
}

#[test]
fn size_count_and_encoding_limits() {
    let small = BodyLimits {
        max_body_bytes: 100,
        ..limits()
    };
    assert_eq!(
        parse_event_list(EVENT_LIST.as_bytes(), &small).unwrap_err(),
        IngestError::BodyTooLarge { limit: 100 }
    );
    let few = BodyLimits {
        max_events: 3,
        ..limits()
    };
    assert_eq!(
        parse_event_list(EVENT_LIST.as_bytes(), &few).unwrap_err(),
        IngestError::TooManyEvents { limit: 3 }
    );
    let tight = BodyLimits {
        event: Limits {
            max_event_bytes: 1500,
            ..Limits::default()
        },
        ..limits()
    };
    // Item 2 carries the request object and is the first over 1500 bytes.
    assert_eq!(
        parse_event_list(EVENT_LIST.as_bytes(), &tight).unwrap_err(),
        IngestError::EventTooLarge {
            item: 2,
            line: None,
            limit: 1500
        }
    );
    let mut body = EVENT_LIST.as_bytes().to_vec();
    let at = EVENT_LIST.find("bob@example.com").unwrap() + 1;
    body[at] = 0xff;
    let error = parse_event_list(&body, &limits()).unwrap_err();
    assert_eq!(
        error,
        IngestError::InvalidUtf8 {
            offset: at,
            item: Some(3),
            line: None
        }
    );
    let mut body = EVENT_LIST.as_bytes().to_vec();
    body.truncate(body.len() - 10);
    assert_eq!(
        parse_event_list(&body, &limits()).unwrap_err().code(),
        "invalid_json"
    );
    let deep = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{}",
        "[".repeat(1_000_000)
    );
    let error = parse_event_list(deep.as_bytes(), &limits()).unwrap_err();
    assert_eq!((error.code(), error.item()), ("invalid_event", Some(0)));
}
