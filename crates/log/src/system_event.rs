//! The events Stele writes about itself in the `_system` stream, as one
//! type: [`SystemEvent`].
//!
//! Every `_system` event — the log's governance records (policy versions,
//! holds, purges, key rotations, attestations, tokens, recovered bytes) and
//! the server's and the CLI's audit records (reads, exports, queries,
//! denials, failed authentications) — is built as a `SystemEvent` and
//! turned into its client-event JSON by one function,
//! [`SystemEvent::client_event`]. The readers of these events (the
//! governance ledger, token checks, attestation rebuild) parse them back
//! with [`SystemEvent::parse`] or read their attributes through the same
//! attribute types, so what is written and what is read cannot drift.
//!
//! Resources are named by one rule (see `docs/formats/meta.md`): one thing
//! of a collection is `<collection>/<id>` (`streams/<name>`,
//! `events/<index>`, `policies/<seq>`, `holds/<id>`, `tokens/<id>`,
//! `keys/kek`, a segment file's path); the log as a whole is `log`; the
//! authentication front is `auth`.
//!
//! The client ids some events carry are their idempotency keys: an
//! interrupted step is retried under the same id with the same bytes, and
//! the log returns the first event instead of appending a second. Their
//! text, the order of the members and the attributes must therefore never
//! change (the unit tests pin them).
//!
//! This module decides nothing and writes nothing; appending is the
//! caller's (`LogWriter::append_system`, the server's sequencer, the CLI).

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use stele_event::ClientEvent;

use crate::audit::Attestation;
use crate::error::LogError;
use crate::governance::{Hold, SYSTEM_STREAM, SYSTEM_WRITER};
use crate::prepare::{PreparedEvent, Preparer};
use crate::purge::Tombstone;
use crate::salvage::Salvaged;
use crate::tokens::{Role, TokenEntry, secret_commitment};
use stele_event::time::{Day, timestamp_text};

/// The `action` of each system event.
pub mod action {
    pub const ACCESS_DENIED: &str = "access.denied";
    pub const EVENT_READ: &str = "event.read";
    pub const EVENTS_EXPORTED: &str = "events.exported";
    pub const EVENTS_QUERIED: &str = "events.queried";
    pub const EVENTS_SEARCHED: &str = "events.searched";
    pub const RETENTION_DUE: &str = "retention.due";
    pub const RETENTION_PURGE: &str = "retention.purge";
    pub const RETENTION_REFUSED: &str = "retention.refused";
    pub const POLICY_APPLIED: &str = "policy.applied";
    pub const HOLD_PLACED: &str = "hold.placed";
    pub const HOLD_RELEASED: &str = "hold.released";
    pub const KEY_ROTATED: &str = "key.rotated";
    pub const AUDIT_ATTESTATION: &str = "audit.attestation";
    pub const TOKEN_CREATED: &str = "token.created";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const AUTH_FAILED: &str = "auth.failed";
    pub const LOG_RECOVERED: &str = "log.recovered";
}

/// The client ids (idempotency keys) of the events that carry one.
/// Byte-identical to what every earlier version wrote: a retry finds the
/// first event by them.
pub mod client_id {
    pub fn policy(seq: u64) -> String {
        format!("policy:{seq}")
    }
    pub fn hold_placed(hold: &str) -> String {
        format!("hold:{hold}:placed")
    }
    pub fn hold_released(hold: &str) -> String {
        format!("hold:{hold}:released")
    }
    pub fn purge(segment: u32) -> String {
        format!("purge:{segment}")
    }
    pub fn kek(number: u64) -> String {
        format!("kek:{number}")
    }
    pub fn token_created(token: &str) -> String {
        format!("token:{token}:created")
    }
    pub fn token_revoked(token: &str) -> String {
        format!("token:{token}:revoked")
    }
    /// `name` is the kept tail's name, `<segment>-<offset>`.
    pub fn recovered(name: &str) -> String {
        format!("recovered:{name}")
    }
}

/// What a system event is about, named by the one rule of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemResource {
    /// `streams/<name>`.
    Stream(String),
    /// `events/<index>`.
    Event(u64),
    /// `log`: the log as a whole.
    Log,
    /// `policies/<seq>`.
    Policy(u64),
    /// `holds/<id>`.
    Hold(String),
    /// `tokens/<id>`.
    Token(String),
    /// `keys/kek`.
    Kek,
    /// `auth`: authentication, before any principal is known.
    Auth,
    /// A file of the data directory, by its relative path
    /// (`segments/<stream>/<day>.seg`).
    File(String),
}

impl SystemResource {
    /// The resource's text in the event.
    pub fn text(&self) -> String {
        match self {
            SystemResource::Stream(name) => format!("streams/{name}"),
            SystemResource::Event(index) => format!("events/{index}"),
            SystemResource::Log => "log".to_string(),
            SystemResource::Policy(seq) => format!("policies/{seq}"),
            SystemResource::Hold(id) => format!("holds/{id}"),
            SystemResource::Token(id) => format!("tokens/{id}"),
            SystemResource::Kek => "keys/kek".to_string(),
            SystemResource::Auth => "auth".to_string(),
            SystemResource::File(path) => path.clone(),
        }
    }

    /// The resource of an access request (what a denial names).
    pub fn of_access(resource: &stele_policy::Resource<'_>) -> SystemResource {
        match resource {
            stele_policy::Resource::Stream(name) => SystemResource::Stream(name.to_string()),
            stele_policy::Resource::Event { index, .. } => SystemResource::Event(*index),
            stele_policy::Resource::Log => SystemResource::Log,
        }
    }

    /// The stream an access request's resource lies in, if any.
    pub fn access_stream(resource: &stele_policy::Resource<'_>) -> Option<String> {
        match resource {
            stele_policy::Resource::Stream(stream)
            | stele_policy::Resource::Event { stream, .. } => Some(stream.to_string()),
            stele_policy::Resource::Log => None,
        }
    }

    /// Reads a resource text back; `None` when it follows no form.
    pub fn parse(text: &str) -> Option<SystemResource> {
        let (collection, rest) = match text.split_once('/') {
            Some(split) => split,
            None => {
                return match text {
                    "log" => Some(SystemResource::Log),
                    "auth" => Some(SystemResource::Auth),
                    _ => None,
                };
            }
        };
        Some(match collection {
            "streams" => SystemResource::Stream(rest.to_string()),
            "events" => SystemResource::Event(rest.parse().ok()?),
            "policies" => SystemResource::Policy(rest.parse().ok()?),
            "holds" => SystemResource::Hold(rest.to_string()),
            "tokens" => SystemResource::Token(rest.to_string()),
            "keys" if rest == "kek" => SystemResource::Kek,
            _ => SystemResource::File(text.to_string()),
        })
    }
}

/// How a principal reached the log, as the audit events record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `token`, `mtls`, or `local` (the CLI).
    pub method: String,
    /// The peer's `ip:port`, or `cli`.
    pub client: String,
}

impl Caller {
    /// The operator at the keyboard (`stele` commands).
    pub fn local() -> Caller {
        Caller {
            method: "local".into(),
            client: "cli".into(),
        }
    }
}

/// `access.denied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDenied {
    /// The stream of a stream or event resource, else `null`.
    pub stream: Option<String>,
    /// The Cedar action id asked for.
    pub requested: String,
    pub method: String,
    pub client: String,
    /// Ids of the deciding policies.
    pub policies: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
}

/// `event.read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRead {
    pub method: String,
    pub client: String,
    pub stream: String,
}

/// `events.exported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsExported {
    pub stream: String,
    pub from: u64,
    /// The end of the range, after clamping to the log size.
    pub to: u64,
    pub exported: u64,
    pub purged: u64,
    pub method: String,
    pub client: String,
}

/// `events.queried`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsQueried {
    pub stream: String,
    pub from: u64,
    /// Where the scan stopped.
    pub to: u64,
    /// The filters given, as `stele_server::scan::Filters::to_json`.
    pub filters: Value,
    pub matched: u64,
    pub purged: u64,
    pub method: String,
    pub client: String,
}

/// `events.searched`: one page of a search across streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsSearched {
    /// The query as normalized (`stele_query::Query`'s text).
    pub query: String,
    /// The streams named (empty: every stream the caller may read).
    pub streams: Vec<String>,
    /// `newest` or `oldest`.
    pub order: String,
    /// The tree size the search is pinned to.
    pub size: u64,
    /// Whether this page continues an earlier one (a cursor was given).
    pub continued: bool,
    /// Every match the caller may read, on every page.
    pub matched: u64,
    /// Events on this page (for an export: in the file).
    pub returned: u64,
    /// For an export of every match: its format (`bundle`, `ndjson`,
    /// `csv`); `null` for a page of results.
    pub export: Option<String>,
    pub method: String,
    pub client: String,
}

/// `retention.due`: a due epoch announced a grace period before its purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDue {
    pub segment: u32,
    pub stream: String,
    /// `YYYY-MM-DD`.
    pub epoch: String,
    pub purge_after: Option<String>,
    /// RFC 3339 (jiff).
    pub announced_at: String,
    pub grace_seconds: u64,
    /// Why an earlier announcement was renewed, or `null`.
    pub clock: Option<String>,
}

/// `retention.purge`: everything in the tombstone but its event index
/// (see `docs/formats/purge.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPurge {
    pub segment: u32,
    pub stream: String,
    pub epoch: String,
    pub decided_at: String,
    pub purge_after: String,
    pub policy: String,
    pub requested_by: String,
    pub entries: u64,
    pub first: u64,
    pub last: u64,
    pub ranges: Option<Vec<[u64; 2]>>,
    pub indices_sha256: String,
    /// Absent in purges written before announcements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<u64>,
}

impl From<&Tombstone> for RetentionPurge {
    fn from(t: &Tombstone) -> RetentionPurge {
        RetentionPurge {
            segment: t.segment.0,
            stream: t.stream.clone(),
            epoch: t.epoch.to_string(),
            decided_at: timestamp_text(t.decided_at),
            purge_after: timestamp_text(t.purge_after),
            policy: t.policy.clone(),
            requested_by: t.requested_by.clone(),
            entries: t.entries,
            first: t.first,
            last: t.last,
            ranges: t.ranges.clone(),
            indices_sha256: t.indices_sha256.clone(),
            announced: t.announced,
        }
    }
}

/// `retention.refused`: an explicit purge request that was not due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRefused {
    pub stream: String,
    pub epoch: String,
    pub purge_after: Option<String>,
    pub held_by: Vec<String>,
    pub reason: String,
}

/// `policy.applied`, holding the policy itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyApplied {
    pub seq: u64,
    /// SHA-256 (hex) of the policy.
    pub hash: String,
    pub activated_at: String,
    pub applied_by: String,
    #[serde(default)]
    pub retention_changes: Vec<String>,
    /// Absent in events written before the log recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_data: Option<bool>,
    /// The policy's source (`{"toml", "cedar"}`); absent in events written
    /// before the log recorded sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
}

/// `hold.placed` and `hold.released`: the hold as it stands after the act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// The hold's id.
    pub hold: String,
    pub streams: Vec<String>,
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
}

impl From<&Hold> for HoldRecord {
    fn from(hold: &Hold) -> HoldRecord {
        HoldRecord {
            hold: hold.id.clone(),
            streams: hold.streams.clone(),
            from: hold.from,
            to: hold.to,
            reason: hold.reason.clone(),
            placed_by: hold.placed_by.clone(),
            placed_at: hold.placed_at.clone(),
            released_by: hold.released_by.clone(),
            released_at: hold.released_at.clone(),
        }
    }
}

impl HoldRecord {
    /// The hold it records (without the indices of its events).
    pub fn hold(&self) -> Hold {
        Hold {
            id: self.hold.clone(),
            streams: self.streams.clone(),
            from: self.from,
            to: self.to,
            reason: self.reason.clone(),
            placed_by: self.placed_by.clone(),
            placed_at: self.placed_at.clone(),
            released_by: self.released_by.clone(),
            released_at: self.released_at.clone(),
            placed_event: None,
            released_event: None,
        }
    }
}

/// `key.rotated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    /// The new KEK's rotation number.
    pub number: u64,
    /// `file` or `passphrase`.
    pub kind: String,
    pub created_at: String,
    pub data_keys_rewrapped: u64,
}

/// `token.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    pub principal: String,
    pub roles: Vec<Role>,
    pub expires_at: Option<String>,
    pub streams: Option<Vec<String>>,
    pub secret_commitment: String,
    pub created_at: String,
}

impl From<&TokenEntry> for TokenCreated {
    fn from(entry: &TokenEntry) -> TokenCreated {
        TokenCreated {
            token: entry.id.clone(),
            principal: entry.principal.clone(),
            roles: entry.roles.clone(),
            expires_at: entry.expires_at.clone(),
            streams: entry.streams.clone(),
            secret_commitment: secret_commitment(&entry.secret_sha256),
            created_at: entry.created_at.clone(),
        }
    }
}

/// `token.revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub token: String,
    pub principal: String,
    pub created_event: u64,
    pub revoked_at: String,
}

/// One sampled failure of an `auth.failed` window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailureSample {
    pub client: Option<String>,
    pub token: Option<String>,
    pub reason: String,
}

/// `auth.failed`: the failed authentications of one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailed {
    pub window_start: String,
    pub window_end: String,
    pub failures: u64,
    pub by_reason: std::collections::BTreeMap<String, u64>,
    pub samples: Vec<AuthFailureSample>,
    pub unsampled: u64,
}

/// `log.recovered`: bytes an open cut from a segment and kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecovered {
    pub segment: u32,
    pub offset: u64,
    pub length: u64,
    pub sha256: String,
    /// `recovered/<segment>-<offset>.bin`.
    pub kept: String,
}

/// One event of the `_system` stream. The actor is who acted (a principal,
/// or `stele` for the log itself).
#[derive(Debug, Clone, PartialEq)]
pub enum SystemEvent {
    AccessDenied {
        actor: String,
        resource: SystemResource,
        attributes: AccessDenied,
    },
    EventRead {
        actor: String,
        index: u64,
        attributes: EventRead,
    },
    EventsExported {
        actor: String,
        attributes: EventsExported,
    },
    EventsQueried {
        actor: String,
        attributes: EventsQueried,
    },
    EventsSearched {
        actor: String,
        attributes: EventsSearched,
    },
    RetentionDue {
        actor: String,
        attributes: RetentionDue,
    },
    RetentionPurge {
        actor: String,
        attributes: RetentionPurge,
    },
    RetentionRefused {
        actor: String,
        attributes: RetentionRefused,
    },
    /// The actor is `applied_by`.
    PolicyApplied { attributes: PolicyApplied },
    /// The actor is `placed_by`.
    HoldPlaced { attributes: HoldRecord },
    /// The actor is `released_by`.
    HoldReleased { attributes: HoldRecord },
    KeyRotated {
        actor: String,
        attributes: KeyRotated,
    },
    /// The attestation without its `event_index`.
    AuditAttestation {
        actor: String,
        attestation: Box<Attestation>,
    },
    TokenCreated {
        actor: String,
        attributes: TokenCreated,
    },
    TokenRevoked {
        actor: String,
        attributes: TokenRevoked,
    },
    /// The actor is `stele`.
    AuthFailed { attributes: AuthFailed },
    /// The actor is `stele`; `file` is the segment's relative path.
    LogRecovered {
        file: String,
        attributes: LogRecovered,
    },
}

fn to_value<T: Serialize>(attributes: &T) -> Value {
    // Plain structs of strings, numbers and lists: serializing cannot fail.
    serde_json::to_value(attributes).unwrap_or(Value::Null)
}

/// The kept tail's name from `recovered/<name>.bin`.
fn recovered_name(kept: &str) -> &str {
    kept.strip_prefix("recovered/")
        .and_then(|rest| rest.strip_suffix(".bin"))
        .unwrap_or(kept)
}

impl SystemEvent {
    /// The event that records a hold's placement.
    pub fn hold_placed(hold: &Hold) -> SystemEvent {
        SystemEvent::HoldPlaced {
            attributes: hold.into(),
        }
    }

    /// The event that records a hold's release (`hold` released).
    pub fn hold_released(hold: &Hold) -> SystemEvent {
        SystemEvent::HoldReleased {
            attributes: hold.into(),
        }
    }

    /// The `retention.purge` event of a tombstone.
    pub fn retention_purge(tombstone: &Tombstone) -> SystemEvent {
        SystemEvent::RetentionPurge {
            actor: tombstone.requested_by.clone(),
            attributes: tombstone.into(),
        }
    }

    /// The `log.recovered` event of a kept tail's manifest.
    pub fn log_recovered(name: &str, manifest: &Salvaged) -> SystemEvent {
        SystemEvent::LogRecovered {
            file: manifest.file.clone(),
            attributes: LogRecovered {
                segment: manifest.segment,
                offset: manifest.offset,
                length: manifest.length,
                sha256: manifest.sha256.clone(),
                kept: format!("recovered/{name}.bin"),
            },
        }
    }

    /// The `action`.
    pub fn action(&self) -> &'static str {
        match self {
            SystemEvent::AccessDenied { .. } => action::ACCESS_DENIED,
            SystemEvent::EventRead { .. } => action::EVENT_READ,
            SystemEvent::EventsExported { .. } => action::EVENTS_EXPORTED,
            SystemEvent::EventsQueried { .. } => action::EVENTS_QUERIED,
            SystemEvent::EventsSearched { .. } => action::EVENTS_SEARCHED,
            SystemEvent::RetentionDue { .. } => action::RETENTION_DUE,
            SystemEvent::RetentionPurge { .. } => action::RETENTION_PURGE,
            SystemEvent::RetentionRefused { .. } => action::RETENTION_REFUSED,
            SystemEvent::PolicyApplied { .. } => action::POLICY_APPLIED,
            SystemEvent::HoldPlaced { .. } => action::HOLD_PLACED,
            SystemEvent::HoldReleased { .. } => action::HOLD_RELEASED,
            SystemEvent::KeyRotated { .. } => action::KEY_ROTATED,
            SystemEvent::AuditAttestation { .. } => action::AUDIT_ATTESTATION,
            SystemEvent::TokenCreated { .. } => action::TOKEN_CREATED,
            SystemEvent::TokenRevoked { .. } => action::TOKEN_REVOKED,
            SystemEvent::AuthFailed { .. } => action::AUTH_FAILED,
            SystemEvent::LogRecovered { .. } => action::LOG_RECOVERED,
        }
    }

    /// Who acted.
    pub fn actor(&self) -> &str {
        match self {
            SystemEvent::AccessDenied { actor, .. }
            | SystemEvent::EventRead { actor, .. }
            | SystemEvent::EventsExported { actor, .. }
            | SystemEvent::EventsQueried { actor, .. }
            | SystemEvent::EventsSearched { actor, .. }
            | SystemEvent::RetentionDue { actor, .. }
            | SystemEvent::RetentionPurge { actor, .. }
            | SystemEvent::RetentionRefused { actor, .. }
            | SystemEvent::KeyRotated { actor, .. }
            | SystemEvent::AuditAttestation { actor, .. }
            | SystemEvent::TokenCreated { actor, .. }
            | SystemEvent::TokenRevoked { actor, .. } => actor,
            SystemEvent::PolicyApplied { attributes } => &attributes.applied_by,
            SystemEvent::HoldPlaced { attributes } => &attributes.placed_by,
            SystemEvent::HoldReleased { attributes } => {
                attributes.released_by.as_deref().unwrap_or_default()
            }
            SystemEvent::AuthFailed { .. } | SystemEvent::LogRecovered { .. } => SYSTEM_WRITER,
        }
    }

    /// The resource.
    pub fn resource(&self) -> SystemResource {
        match self {
            SystemEvent::AccessDenied { resource, .. } => resource.clone(),
            SystemEvent::EventRead { index, .. } => SystemResource::Event(*index),
            SystemEvent::EventsExported { attributes, .. } => {
                SystemResource::Stream(attributes.stream.clone())
            }
            SystemEvent::EventsQueried { attributes, .. } => {
                SystemResource::Stream(attributes.stream.clone())
            }
            SystemEvent::EventsSearched { attributes, .. } => match attributes.streams.as_slice() {
                [one] => SystemResource::Stream(one.clone()),
                _ => SystemResource::Log,
            },
            SystemEvent::RetentionDue { attributes, .. } => {
                SystemResource::Stream(attributes.stream.clone())
            }
            SystemEvent::RetentionPurge { attributes, .. } => {
                SystemResource::Stream(attributes.stream.clone())
            }
            SystemEvent::RetentionRefused { attributes, .. } => {
                SystemResource::Stream(attributes.stream.clone())
            }
            SystemEvent::PolicyApplied { attributes } => SystemResource::Policy(attributes.seq),
            SystemEvent::HoldPlaced { attributes } | SystemEvent::HoldReleased { attributes } => {
                SystemResource::Hold(attributes.hold.clone())
            }
            SystemEvent::KeyRotated { .. } => SystemResource::Kek,
            SystemEvent::AuditAttestation { .. } => SystemResource::Log,
            SystemEvent::TokenCreated { attributes, .. } => {
                SystemResource::Token(attributes.token.clone())
            }
            SystemEvent::TokenRevoked { attributes, .. } => {
                SystemResource::Token(attributes.token.clone())
            }
            SystemEvent::AuthFailed { .. } => SystemResource::Auth,
            SystemEvent::LogRecovered { file, .. } => SystemResource::File(file.clone()),
        }
    }

    /// The `outcome`: `denied` for denials, `success` for reads, none for
    /// the rest (as every earlier version wrote them).
    pub fn outcome(&self) -> Option<&'static str> {
        match self {
            SystemEvent::AccessDenied { .. } | SystemEvent::AuthFailed { .. } => Some("denied"),
            SystemEvent::EventRead { .. } => Some("success"),
            _ => None,
        }
    }

    /// The client id (idempotency key), for the events a retry must find.
    pub fn client_id(&self) -> Option<String> {
        match self {
            SystemEvent::PolicyApplied { attributes } => Some(client_id::policy(attributes.seq)),
            SystemEvent::HoldPlaced { attributes } => {
                Some(client_id::hold_placed(&attributes.hold))
            }
            SystemEvent::HoldReleased { attributes } => {
                Some(client_id::hold_released(&attributes.hold))
            }
            SystemEvent::RetentionPurge { attributes, .. } => {
                Some(client_id::purge(attributes.segment))
            }
            SystemEvent::KeyRotated { attributes, .. } => Some(client_id::kek(attributes.number)),
            SystemEvent::TokenCreated { attributes, .. } => {
                Some(client_id::token_created(&attributes.token))
            }
            SystemEvent::TokenRevoked { attributes, .. } => {
                Some(client_id::token_revoked(&attributes.token))
            }
            SystemEvent::LogRecovered { attributes, .. } => {
                Some(client_id::recovered(recovered_name(&attributes.kept)))
            }
            _ => None,
        }
    }

    /// The `attributes` object.
    pub fn attributes(&self) -> Value {
        match self {
            SystemEvent::AccessDenied { attributes, .. } => to_value(attributes),
            SystemEvent::EventRead { attributes, .. } => to_value(attributes),
            SystemEvent::EventsExported { attributes, .. } => to_value(attributes),
            SystemEvent::EventsQueried { attributes, .. } => to_value(attributes),
            SystemEvent::EventsSearched { attributes, .. } => to_value(attributes),
            SystemEvent::RetentionDue { attributes, .. } => to_value(attributes),
            SystemEvent::RetentionPurge { attributes, .. } => to_value(attributes),
            SystemEvent::RetentionRefused { attributes, .. } => to_value(attributes),
            SystemEvent::PolicyApplied { attributes } => to_value(attributes),
            SystemEvent::HoldPlaced { attributes } | SystemEvent::HoldReleased { attributes } => {
                to_value(attributes)
            }
            SystemEvent::KeyRotated { attributes, .. } => to_value(attributes),
            SystemEvent::AuditAttestation { attestation, .. } => {
                let mut value = to_value(attestation);
                if let Some(map) = value.as_object_mut() {
                    map.remove("event_index");
                }
                value
            }
            SystemEvent::TokenCreated { attributes, .. } => to_value(attributes),
            SystemEvent::TokenRevoked { attributes, .. } => to_value(attributes),
            SystemEvent::AuthFailed { attributes } => to_value(attributes),
            SystemEvent::LogRecovered { attributes, .. } => to_value(attributes),
        }
    }

    /// The client event, the one place its JSON is made: `actor`,
    /// `action`, `attributes`, then `id`, `resource` and `outcome` (in that
    /// order: the bytes of the events that carry a client id must stay what
    /// earlier versions wrote, so that a retry is recognised).
    pub fn client_event(&self) -> Value {
        let mut event = json!({
            "actor": self.actor(),
            "action": self.action(),
            "attributes": self.attributes(),
        });
        if let Some(id) = self.client_id() {
            event["id"] = Value::from(id);
        }
        event["resource"] = Value::from(self.resource().text());
        if let Some(outcome) = self.outcome() {
            event["outcome"] = Value::from(outcome);
        }
        event
    }

    /// The event prepared for `_system` (writer `stele`) from the source
    /// `channel` (`system` for the log, `server`, `cli`). Refused, before
    /// anything is written, when the log could not take it (over the event
    /// size limit, say).
    pub fn prepare(&self, channel: &str, now: Timestamp) -> Result<PreparedEvent, LogError> {
        let raw = serde_json::to_vec(&self.client_event())
            .map_err(|e| LogError::Internal(format!("system event: {e}")))?;
        Ok(Preparer::new(SYSTEM_WRITER, channel, SYSTEM_STREAM).prepare(&raw, now)?)
    }

    /// Reads a stored `_system` event back. `Err` says what does not fit
    /// the action's shape; an action this type does not know is
    /// `Ok(None)`.
    pub fn parse(event: &ClientEvent) -> Result<Option<SystemEvent>, String> {
        let actor = event.actor.clone();
        let resource = event
            .resource
            .as_deref()
            .and_then(SystemResource::parse)
            .ok_or_else(|| format!("resource {:?} names nothing", event.resource));
        let parsed = match event.action.as_str() {
            action::ACCESS_DENIED => SystemEvent::AccessDenied {
                actor,
                resource: resource?,
                attributes: attributes_of(event)?,
            },
            action::EVENT_READ => SystemEvent::EventRead {
                actor,
                index: match resource? {
                    SystemResource::Event(index) => index,
                    other => return Err(format!("resource {} is not an event", other.text())),
                },
                attributes: attributes_of(event)?,
            },
            action::EVENTS_EXPORTED => SystemEvent::EventsExported {
                actor,
                attributes: attributes_of(event)?,
            },
            action::EVENTS_QUERIED => SystemEvent::EventsQueried {
                actor,
                attributes: attributes_of(event)?,
            },
            action::EVENTS_SEARCHED => SystemEvent::EventsSearched {
                actor,
                attributes: attributes_of(event)?,
            },
            action::RETENTION_DUE => SystemEvent::RetentionDue {
                actor,
                attributes: attributes_of(event)?,
            },
            action::RETENTION_PURGE => SystemEvent::RetentionPurge {
                actor,
                attributes: attributes_of(event)?,
            },
            action::RETENTION_REFUSED => SystemEvent::RetentionRefused {
                actor,
                attributes: attributes_of(event)?,
            },
            action::POLICY_APPLIED => SystemEvent::PolicyApplied {
                attributes: attributes_of(event)?,
            },
            action::HOLD_PLACED => SystemEvent::HoldPlaced {
                attributes: attributes_of(event)?,
            },
            action::HOLD_RELEASED => SystemEvent::HoldReleased {
                attributes: attributes_of(event)?,
            },
            action::KEY_ROTATED => SystemEvent::KeyRotated {
                actor,
                attributes: attributes_of(event)?,
            },
            action::AUDIT_ATTESTATION => SystemEvent::AuditAttestation {
                actor,
                attestation: Box::new(attributes_of(event)?),
            },
            action::TOKEN_CREATED => SystemEvent::TokenCreated {
                actor,
                attributes: attributes_of(event)?,
            },
            action::TOKEN_REVOKED => SystemEvent::TokenRevoked {
                actor,
                attributes: attributes_of(event)?,
            },
            action::AUTH_FAILED => SystemEvent::AuthFailed {
                attributes: attributes_of(event)?,
            },
            action::LOG_RECOVERED => SystemEvent::LogRecovered {
                file: event.resource.clone().unwrap_or_default(),
                attributes: attributes_of(event)?,
            },
            _ => return Ok(None),
        };
        Ok(Some(parsed))
    }
}

/// The attributes of `event` read as `T` (members `T` does not name are
/// ignored, so older and newer events both read).
pub fn attributes_of<T: DeserializeOwned>(event: &ClientEvent) -> Result<T, String> {
    attributes_from(event.attributes.clone().unwrap_or_default())
}

/// [`attributes_of`] for attributes already taken out of their event.
pub fn attributes_from<T: DeserializeOwned>(attributes: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(attributes)).map_err(|e| format!("attributes: {e}"))
}

#[cfg(test)]
mod tests;
