//! The Kubernetes audit webhook adapter: reads the `audit.k8s.io/v1`
//! `EventList` that kube-apiserver's webhook backend POSTs, and maps each
//! audit event to a Stele [`ClientEvent`], keeping the item's exact bytes as
//! its raw payload. It is not a Kubernetes client library: it knows only the
//! fields it maps, ignores the ones it does not know (new Kubernetes
//! releases add fields), and is strict only about the list itself (`kind`
//! must be `EventList`, `apiVersion` must be `audit.k8s.io/v1`) and about the
//! fields Stele cannot do without (each item must be strict JSON: no key
//! twice, no number a double cannot hold; struct members must be objects).
//! Setting kube-apiserver up is described in `docs/kubernetes.md`.
//!
//! # Mapping
//!
//! | Stele field  | from the audit event                                                                     |
//! |--------------|------------------------------------------------------------------------------------------|
//! | `actor`      | `user.username` (required; an impersonated user is recorded in attributes)               |
//! | `action`     | `verb` (required), e.g. `create`; the resource is kept apart in `resource`                |
//! | `resource`   | `<apiGroup or core>/<namespace or _cluster>/<resource>[/<name>][/<subresource>]` from `objectRef`; `requestURI` when there is no `objectRef` (non-resource URLs such as `/healthz`), shortened to fit `max_string_bytes` when longer (its start, then `…sha256:<hex of the whole URI>`) |
//! | `outcome`    | `success` when `responseStatus.code` < 400, `failure` from 400 up, `unknown` without a code (the `RequestReceived` stage has none) |
//! | `source`     | the first of `sourceIPs`, if any                                                         |
//! | `time`       | `stageTimestamp`, normalized to UTC by the event crate's RFC 3339 rules                  |
//! | `id`         | [`dedupe_key`]`(auditID, stage)`: `k8s:<auditID>/<stage>`, or `k8s:sha256:<hex of the auditID>/<stage>` when longer than `max_id_bytes` |
//! | `stream`     | none: routing by policy happens later                                                    |
//! | `attributes` | `{"kubernetes": {auditID, stage, level, requestURI, userAgent, sourceIPs, user, impersonatedUser, objectRef, responseStatus: {code, reason}, annotations}}`, absent and empty values left out |
//!
//! `_cluster` stands for "no namespace": cluster-scoped resources, and
//! requests across all namespaces. `requestObject` and `responseObject` are
//! never copied into attributes: they can be large and sensitive, and they
//! stay in the raw payload, which is stored (encrypted) with the event.
//!
//! The two values any API client chooses, anonymous ones included — the
//! `auditID` (its `Audit-ID` header) and a non-resource request URI — never
//! refuse an item: a long one is hashed into the id, or shortened with its
//! hash in `resource`, and kept whole in the attributes and the raw
//! payload; otherwise one hostile request would lose the batch of other
//! users' events it travels with. Nothing else is shortened: any other
//! mapped value over the event limits (an actor over its length limit, too
//! many attribute keys) refuses the item, and with it the whole list, with
//! an error naming the item and the Stele field. Each item's raw bytes must
//! fit `max_event_bytes`; the mapped event is derived from them and is not
//! counted against that limit again. Items may nest up to [`stele_event::MAX_DEPTH_CEILING`] deep
//! whatever the client depth limit says, since request and response objects
//! (custom resource schemas in particular) legitimately nest deeply and are
//! stored, not parsed as client events.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use stele_event::{ClientEvent, Limits, MAX_DEPTH_CEILING, parse_client_event};

use crate::body::{BodyLimits, scan_error};
use crate::error::IngestError;
use crate::scan::{self, ArrayElements, ObjectMembers};

/// The only `kind` accepted for the list.
const LIST_KIND: &str = "EventList";

/// The only `apiVersion` accepted for the list.
const API_VERSION: &str = "audit.k8s.io/v1";

/// The stages kube-apiserver emits. Unknown stages are refused: a new stage
/// would mean a new audit API version, and keeping stages to this set keeps
/// [`dedupe_key`] unambiguous (no stage contains a `/`).
const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// One audit event of a webhook request, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sEvent<'a> {
    /// The audit event's `auditID`.
    pub audit_id: String,
    /// The audit event's `stage`.
    pub stage: String,
    /// The exact bytes of this item in the request body.
    pub raw: &'a [u8],
    /// The Stele event it maps to; see the module documentation.
    pub event: ClientEvent,
}

/// The idempotency key of an audit event: `k8s:<auditID>/<stage>`, or
/// `k8s:sha256:<hex SHA-256 of the auditID>/<stage>` when that would be
/// longer than `max_id_bytes`.
///
/// kube-apiserver retries a failed webhook request with the same events, and
/// one request produces one event per stage under the same `auditID`, so
/// the pair identifies an event across retries. Any API client may choose
/// its request's `auditID` (the `Audit-ID` header), so a long one must not
/// refuse the item (and with it the batch of other users' events): it is
/// hashed instead; the full ID stays in the event's attributes.
pub fn dedupe_key(audit_id: &str, stage: &str, max_id_bytes: usize) -> String {
    let key = format!("k8s:{audit_id}/{stage}");
    if key.len() <= max_id_bytes {
        return key;
    }
    format!("k8s:sha256:{}/{stage}", sha256_hex(audit_id.as_bytes()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a webhook request body and maps every audit event in it, refusing
/// the whole list on the first problem.
///
/// `limits.max_body_bytes` bounds the body, `limits.max_events` the number
/// of items and `limits.event` each item (see the module documentation for
/// how). An empty `items` array is refused with [`IngestError::NoEvents`].
pub fn parse_event_list<'a>(
    body: &'a [u8],
    limits: &BodyLimits,
) -> Result<Vec<K8sEvent<'a>>, IngestError> {
    if body.len() > limits.max_body_bytes {
        return Err(IngestError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let start = scan::skip_ws(body, 0);
    if body.get(start) != Some(&b'{') {
        let error = scan::unexpected(body, start, "expected a JSON object");
        return Err(if error.kind == scan::ScanErrorKind::InvalidUtf8 {
            scan_error(error, None, None)
        } else {
            list_error("the body is not a JSON object")
        });
    }
    let envelope_error = |error| scan_error(error, None, None);
    let mut members = ObjectMembers::new(body, start);
    let mut kind = None;
    let mut api_version = None;
    let mut items: Option<Vec<&'a [u8]>> = None;
    while let Some((key, value_start)) = members.next_key().map_err(envelope_error)? {
        let key: String = serde_json::from_slice(&body[key])
            .map_err(|_| list_error("a member name is not a valid string"))?;
        let duplicate = || list_error(format!("duplicate member \"{key}\""));
        let value_end = match key.as_str() {
            "items" => {
                if items.is_some() {
                    return Err(duplicate());
                }
                if body.get(value_start) != Some(&b'[') {
                    return Err(list_error("\"items\" must be an array"));
                }
                // Items are only cut out here, with the count checked as
                // they come; they are mapped once the list is known to be an
                // audit EventList, so that a wrong body is reported as such
                // and not as a bad first item.
                let mut elements = ArrayElements::new(body, value_start, MAX_DEPTH_CEILING);
                let mut parsed = Vec::new();
                for element in elements.by_ref() {
                    let range = element.map_err(|e| scan_error(e.error, e.element, None))?;
                    if parsed.len() >= limits.max_events {
                        return Err(IngestError::TooManyEvents {
                            limit: limits.max_events,
                        });
                    }
                    parsed.push(&body[range]);
                }
                items = Some(parsed);
                elements.end()
            }
            _ => {
                let end = scan::value_end(body, value_start, MAX_DEPTH_CEILING)
                    .map_err(envelope_error)?;
                let slot = match key.as_str() {
                    "kind" => Some(&mut kind),
                    "apiVersion" => Some(&mut api_version),
                    // Other members (`metadata`, and whatever later versions
                    // add) carry nothing Stele uses.
                    _ => None,
                };
                if let Some(slot) = slot {
                    if slot.is_some() {
                        return Err(duplicate());
                    }
                    *slot = Some(&body[value_start..end]);
                }
                end
            }
        };
        members.value_scanned(value_end);
    }
    let trailing = scan::skip_ws(body, members.end());
    if trailing < body.len() {
        return Err(scan_error(
            scan::unexpected(body, trailing, "trailing data after the top-level value"),
            None,
            None,
        ));
    }
    check_member("kind", kind, LIST_KIND)?;
    check_member("apiVersion", api_version, API_VERSION)?;
    match items {
        None => Err(list_error("missing \"items\"")),
        Some(items) if items.is_empty() => Err(IngestError::NoEvents),
        Some(items) => items
            .into_iter()
            .enumerate()
            .map(|(item, raw)| map_item(item, raw, limits))
            .collect(),
    }
}

fn list_error(reason: impl Into<String>) -> IngestError {
    IngestError::InvalidEventList {
        reason: reason.into(),
    }
}

/// Checks that a list member is present and is the string `expected`.
fn check_member(name: &str, value: Option<&[u8]>, expected: &str) -> Result<(), IngestError> {
    let Some(value) = value else {
        return Err(list_error(format!("missing \"{name}\"")));
    };
    match serde_json::from_slice::<String>(value) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) if name == "apiVersion" && found.starts_with("audit.k8s.io/") => {
            Err(list_error(format!(
                "apiVersion \"{found}\" is not supported; run kube-apiserver with \
                 --audit-webhook-version={API_VERSION}"
            )))
        }
        Ok(found) => Err(list_error(format!(
            "{name} is \"{found}\", expected \"{expected}\""
        ))),
        Err(_) => Err(list_error(format!(
            "{name} must be the string \"{expected}\""
        ))),
    }
}

/// The fields of an `audit.k8s.io/v1` `Event` that Stele reads. Fields that
/// Go always writes are still optional here so that a missing one is
/// reported by name, not as a generic decoding error; unknown fields,
/// `requestObject` and `responseObject` included, are skipped.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    level: Option<String>,
    #[serde(rename = "auditID")]
    audit_id: Option<String>,
    stage: Option<String>,
    #[serde(rename = "requestURI")]
    request_uri: Option<String>,
    verb: Option<String>,
    user: Option<UserInfo>,
    impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs")]
    source_ips: Option<Vec<String>>,
    user_agent: Option<String>,
    object_ref: Option<ObjectReference>,
    response_status: Option<Status>,
    stage_timestamp: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Deserialize)]
struct UserInfo {
    username: Option<String>,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<BTreeMap<String, Vec<String>>>,
}

/// `audit.k8s.io/v1` `ObjectReference`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReference {
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    api_group: Option<String>,
    api_version: Option<String>,
    resource_version: Option<String>,
    subresource: Option<String>,
}

/// The part of a `meta/v1` `Status` that Stele reads.
#[derive(Debug, Deserialize)]
struct Status {
    code: Option<i64>,
    reason: Option<String>,
}

/// A present, non-empty string; Go writes absent optional strings as `""`
/// or leaves them out, and both mean "none".
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

fn invalid_item(item: usize, field: &str, reason: impl Into<String>) -> IngestError {
    IngestError::InvalidKubernetesEvent {
        item,
        field: Some(field.to_owned()),
        reason: reason.into(),
    }
}

fn required<'v>(
    item: usize,
    field: &str,
    value: &'v Option<String>,
) -> Result<&'v str, IngestError> {
    non_empty(value).ok_or_else(|| invalid_item(item, field, "missing or empty"))
}

/// Decodes one item and maps it to a client event, which is then validated
/// by the event crate itself, so that it meets exactly the rules (and the
/// normalization) of an event a client sent.
fn map_item<'a>(
    item: usize,
    raw: &'a [u8],
    limits: &BodyLimits,
) -> Result<K8sEvent<'a>, IngestError> {
    if raw.len() > limits.event.max_event_bytes {
        return Err(IngestError::EventTooLarge {
            item,
            line: None,
            limit: limits.event.max_event_bytes,
        });
    }
    // Parsed strictly first: a key given twice (which would let the mapped
    // attributes say one thing and the stored original another) or a
    // number no double holds refuses the item.
    let value =
        stele_event::parse_strict(raw, MAX_DEPTH_CEILING).map_err(|source| IngestError::Event {
            item,
            line: None,
            source,
        })?;
    // The struct-typed members must be objects: serde would also read a
    // struct from an array, position by position.
    for (field, member) in [
        ("user", value.get("user")),
        ("impersonatedUser", value.get("impersonatedUser")),
        ("objectRef", value.get("objectRef")),
        ("responseStatus", value.get("responseStatus")),
        ("annotations", value.get("annotations")),
        ("user.extra", value.get("user").and_then(|u| u.get("extra"))),
        (
            "impersonatedUser.extra",
            value.get("impersonatedUser").and_then(|u| u.get("extra")),
        ),
    ] {
        if let Some(member) = member
            && !member.is_null()
            && !member.is_object()
        {
            return Err(invalid_item(item, field, "must be a JSON object"));
        }
    }
    let audit: AuditEvent =
        serde_json::from_value(value).map_err(|error| IngestError::InvalidKubernetesEvent {
            item,
            field: None,
            reason: format!("not an audit.k8s.io/v1 Event: {error}"),
        })?;
    let audit_id = required(item, "auditID", &audit.audit_id)?;
    let stage = required(item, "stage", &audit.stage)?;
    if !STAGES.contains(&stage) {
        return Err(invalid_item(
            item,
            "stage",
            format!(
                "unknown stage \"{stage}\" (expected one of {})",
                STAGES.join(", ")
            ),
        ));
    }
    let verb = required(item, "verb", &audit.verb)?;
    let Some(user) = &audit.user else {
        return Err(invalid_item(item, "user", "missing"));
    };
    let username = required(item, "user.username", &user.username)?;

    let mut document = Map::new();
    document.insert("actor".into(), username.into());
    document.insert("action".into(), verb.into());
    if let Some(resource) = resource(&audit, limits.event.max_string_bytes) {
        document.insert("resource".into(), resource.into());
    }
    document.insert("outcome".into(), outcome(&audit).into());
    if let Some(time) = non_empty(&audit.stage_timestamp) {
        document.insert("time".into(), time.into());
    }
    document.insert(
        "id".into(),
        dedupe_key(audit_id, stage, limits.event.max_id_bytes).into(),
    );
    let first_source = audit.source_ips.iter().flatten().find(|ip| !ip.is_empty());
    if let Some(source) = first_source {
        document.insert("source".into(), source.as_str().into());
    }
    let mut attributes = Map::new();
    attributes.insert(
        "kubernetes".into(),
        Value::Object(kubernetes_attributes(&audit, audit_id, stage, user)),
    );
    document.insert("attributes".into(), Value::Object(attributes));

    let text = serde_json::to_vec(&Value::Object(document)).map_err(|error| {
        IngestError::InvalidKubernetesEvent {
            item,
            field: None,
            reason: format!("could not encode the mapped event: {error}"),
        }
    })?;
    // The raw item was checked against max_event_bytes above; the mapped
    // event is derived from it and may come out a little larger (the
    // resource path and the attributes repeat some of it), which must not
    // refuse an item whose bytes were within the limit.
    let mapped_limits = Limits {
        max_event_bytes: usize::MAX,
        ..limits.event
    };
    let event = parse_client_event(&text, &mapped_limits).map_err(|source| IngestError::Event {
        item,
        line: None,
        source,
    })?;
    Ok(K8sEvent {
        audit_id: audit_id.to_owned(),
        stage: stage.to_owned(),
        raw,
        event,
    })
}

/// The `resource` of the mapped event; see the module documentation.
fn resource(audit: &AuditEvent, max_bytes: usize) -> Option<String> {
    if let Some(object) = &audit.object_ref
        && let Some(kind) = non_empty(&object.resource)
    {
        let group = non_empty(&object.api_group).unwrap_or("core");
        let namespace = non_empty(&object.namespace).unwrap_or("_cluster");
        let mut path = format!("{group}/{namespace}/{kind}");
        for part in [non_empty(&object.name), non_empty(&object.subresource)]
            .into_iter()
            .flatten()
        {
            path.push('/');
            path.push_str(part);
        }
        return Some(path);
    }
    non_empty(&audit.request_uri).map(|uri| shorten(uri, max_bytes))
}

/// `value` if it fits in `max_bytes`, else its longest prefix that leaves
/// room for `…sha256:<hex SHA-256 of the whole value>` after it. For the
/// request URI of a non-resource request, which any client (anonymous
/// included) chooses: an over-long one must not refuse the item. The whole
/// value stays in the attributes and the raw payload.
fn shorten(value: &str, max_bytes: usize) -> String {
    if value.len() <= max_bytes {
        return value.to_owned();
    }
    let suffix = format!("…sha256:{}", sha256_hex(value.as_bytes()));
    let mut end = max_bytes.saturating_sub(suffix.len()).min(value.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &value[..end])
}

/// The `outcome` of the mapped event. A code of 0 is Go's zero value, which
/// `omitempty` normally hides, so it counts as no code.
fn outcome(audit: &AuditEvent) -> &'static str {
    match audit
        .response_status
        .as_ref()
        .and_then(|status| status.code)
    {
        Some(code) if code >= 400 => "failure",
        Some(code) if code > 0 => "success",
        _ => "unknown",
    }
}

/// `attributes.kubernetes` of the mapped event; absent and empty values are
/// left out so that the stored event holds only what kube-apiserver said.
fn kubernetes_attributes(
    audit: &AuditEvent,
    audit_id: &str,
    stage: &str,
    user: &UserInfo,
) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("auditID".into(), audit_id.into());
    map.insert("stage".into(), stage.into());
    insert_str(&mut map, "level", &audit.level);
    insert_str(&mut map, "requestURI", &audit.request_uri);
    insert_str(&mut map, "userAgent", &audit.user_agent);
    if let Some(ips) = audit.source_ips.as_ref().filter(|ips| !ips.is_empty()) {
        map.insert("sourceIPs".into(), ips.clone().into());
    }
    map.insert("user".into(), Value::Object(user_attributes(user)));
    if let Some(impersonated) = &audit.impersonated_user {
        map.insert(
            "impersonatedUser".into(),
            Value::Object(user_attributes(impersonated)),
        );
    }
    if let Some(object) = &audit.object_ref {
        let mut reference = Map::new();
        insert_str(&mut reference, "resource", &object.resource);
        insert_str(&mut reference, "namespace", &object.namespace);
        insert_str(&mut reference, "name", &object.name);
        insert_str(&mut reference, "uid", &object.uid);
        insert_str(&mut reference, "apiGroup", &object.api_group);
        insert_str(&mut reference, "apiVersion", &object.api_version);
        insert_str(&mut reference, "resourceVersion", &object.resource_version);
        insert_str(&mut reference, "subresource", &object.subresource);
        map.insert("objectRef".into(), Value::Object(reference));
    }
    if let Some(status) = &audit.response_status {
        let mut response = Map::new();
        if let Some(code) = status.code {
            response.insert("code".into(), code.into());
        }
        insert_str(&mut response, "reason", &status.reason);
        map.insert("responseStatus".into(), Value::Object(response));
    }
    if let Some(annotations) = audit.annotations.as_ref().filter(|a| !a.is_empty()) {
        let annotations = annotations
            .iter()
            .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
            .collect();
        map.insert("annotations".into(), Value::Object(annotations));
    }
    map
}

fn user_attributes(user: &UserInfo) -> Map<String, Value> {
    let mut map = Map::new();
    insert_str(&mut map, "username", &user.username);
    insert_str(&mut map, "uid", &user.uid);
    if let Some(groups) = user.groups.as_ref().filter(|g| !g.is_empty()) {
        map.insert("groups".into(), groups.clone().into());
    }
    if let Some(extra) = user.extra.as_ref().filter(|e| !e.is_empty()) {
        let extra = extra
            .iter()
            .map(|(key, values)| (key.clone(), Value::from(values.clone())))
            .collect();
        map.insert("extra".into(), Value::Object(extra));
    }
    map
}

fn insert_str(map: &mut Map<String, Value>, name: &str, value: &Option<String>) {
    if let Some(value) = non_empty(value) {
        map.insert(name.into(), value.into());
    }
}
