//! Access control with Cedar: the schema ([`SCHEMA`]), the shipped default
//! policies ([`DEFAULT_CEDAR`]), the request model ([`AccessRequest`]) and
//! decisions with their reasons ([`Decision`]).
//!
//! Policy sets are parsed and validated against the schema in strict mode
//! when a policy is loaded, so a policy that names an unknown action or
//! attribute never takes effect. Deciding is pure: the entities (principal
//! with its roles, stream, event) are built from the request alone; Stele
//! keeps no entity store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::error::{Problem, TextMap};

/// The Cedar schema (human syntax) every access policy set is validated
/// against. Namespace `Stele`; see `docs/policy.md`.
pub const SCHEMA: &str = include_str!("stele.cedarschema");

/// The access policies used when a policy file has no `[access]` section:
/// `writer` appends to non-reserved streams; `reader` reads, queries,
/// exports, verifies, reads audit reports, holds and the policy; `admin`
/// does everything; only `system` principals append to reserved streams.
pub const DEFAULT_CEDAR: &str = include_str!("default.cedar");

/// Something a principal may be allowed to do. The Cedar action id is
/// [`Action::as_str`], e.g. `Stele::Action::"hold.add"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// Append events to a stream (resource: stream).
    Append,
    /// Read one event or a stream's events (resource: stream or event).
    Read,
    /// Search a stream (resource: stream).
    Query,
    /// Export events with their proofs (resource: stream or event).
    Export,
    /// Verify the log (resource: log).
    Verify,
    /// Place a legal hold (resource: stream or log).
    HoldAdd,
    /// Release a legal hold (resource: stream or log).
    HoldRelease,
    /// List legal holds (resource: stream or log).
    HoldList,
    /// Apply a new policy (resource: log).
    PolicyApply,
    /// Read the policy in effect (resource: log).
    PolicyRead,
    /// Create an access token (resource: log).
    TokenCreate,
    /// List access tokens (resource: log).
    TokenList,
    /// Revoke an access token (resource: log).
    TokenRevoke,
    /// Rotate the key-encryption key (resource: log).
    KeyRotate,
    /// Read audit findings and attestations (resource: log).
    AuditReport,
    /// Run a longevity audit now (resource: log).
    AuditRun,
    /// Run retention (purge expired epochs) now (resource: log).
    RetentionRun,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 17] = [
        Action::Append,
        Action::Read,
        Action::Query,
        Action::Export,
        Action::Verify,
        Action::HoldAdd,
        Action::HoldRelease,
        Action::HoldList,
        Action::PolicyApply,
        Action::PolicyRead,
        Action::TokenCreate,
        Action::TokenList,
        Action::TokenRevoke,
        Action::KeyRotate,
        Action::AuditReport,
        Action::AuditRun,
        Action::RetentionRun,
    ];

    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Append => "append",
            Action::Read => "read",
            Action::Query => "query",
            Action::Export => "export",
            Action::Verify => "verify",
            Action::HoldAdd => "hold.add",
            Action::HoldRelease => "hold.release",
            Action::HoldList => "hold.list",
            Action::PolicyApply => "policy.apply",
            Action::PolicyRead => "policy.read",
            Action::TokenCreate => "token.create",
            Action::TokenList => "token.list",
            Action::TokenRevoke => "token.revoke",
            Action::KeyRotate => "key.rotate",
            Action::AuditReport => "audit.report",
            Action::AuditRun => "audit.run",
            Action::RetentionRun => "retention.run",
        }
    }

    /// The action with this Cedar id, if any.
    pub fn parse(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.as_str() == id)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A stream: `Stele::Stream::"<name>"`, `reserved` when `_`-prefixed.
    Stream(&'a str),
    /// One event: `Stele::Event::"<index>"`, a member of its stream.
    Event {
        /// The stream the event is stored in.
        stream: &'a str,
        /// The event's log index.
        index: u64,
    },
    /// The whole log: `Stele::Log::"log"`.
    Log,
}

impl Resource<'_> {
    /// How the resource is named in messages (the server's 403s, the
    /// CLI's refusals); system events name it by the log crate's
    /// `SystemResource` rule.
    pub fn text(&self) -> String {
        match self {
            Resource::Stream(name) => format!("stream:{name}"),
            Resource::Event { stream, index } => format!("events/{index} (stream:{stream})"),
            Resource::Log => "log".to_string(),
        }
    }
}

/// The circumstances of a request (the Cedar `context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    /// When the request is decided, Unix seconds (`context.time`).
    pub time: i64,
    /// The client's address (`context.client_ip`).
    pub client_ip: IpAddr,
    /// Whether the request came over TLS (`context.tls`).
    pub tls: bool,
    /// The client certificate identity (`context.tls_identity`, `""` when
    /// `None`).
    pub tls_identity: Option<String>,
    /// `"token"`, `"mtls"`, `"local"` or `"system"` (`context.auth_method`).
    pub auth_method: String,
}

/// One access question: may `principal` do `action` to `resource`?
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// The principal's name: `Stele::Principal::"<principal>"`.
    pub principal: &'a str,
    /// `"user"`, `"service"`, `"local"` or `"system"` (`principal.kind`).
    pub principal_kind: &'a str,
    /// The principal's roles: it is `in` each `Stele::Role::"<role>"`.
    pub roles: &'a [String],
    /// What it wants to do.
    pub action: Action,
    /// What to.
    pub resource: Resource<'a>,
    /// The circumstances.
    pub context: AccessContext,
}

/// The answer to an [`AccessRequest`]. Deny wins: one satisfied `forbid`
/// denies whatever permits say; with no satisfied `permit` the answer is
/// deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Ids of the determining policies (the satisfied `permit`s when
    /// allowed, the satisfied `forbid`s when denied by one), sorted. The id
    /// is the policy's `@id("...")` annotation, or Cedar's `policyN` id.
    pub reasons: Vec<String>,
    /// Evaluation errors (a policy that errors is ignored, as in Cedar),
    /// and request-construction errors (which deny).
    pub errors: Vec<String>,
}

/// An access request made from this machine (127.0.0.1, no TLS), with
/// authentication method `local`: how the `stele` CLI asks for its
/// operator, and how the server checks that a new policy would not lock
/// that operator out.
pub fn local_request<'a>(
    principal: &'a str,
    kind: &'a str,
    roles: &'a [String],
    action: Action,
    resource: Resource<'a>,
    now: jiff::Timestamp,
) -> AccessRequest<'a> {
    AccessRequest {
        principal,
        principal_kind: kind,
        roles,
        action,
        resource,
        context: AccessContext {
            time: now.as_second(),
            client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            tls: false,
            tls_identity: None,
            auth_method: "local".to_owned(),
        },
    }
}

/// Why a request was denied: `forbidden by <policy ids>`, or `no policy
/// permits it`.
pub fn denial_reason(decision: &Decision) -> String {
    if decision.reasons.is_empty() {
        "no policy permits it".to_string()
    } else {
        format!("forbidden by {}", decision.reasons.join(", "))
    }
}

/// The wording of a denial, the same in a 403 and in the CLI:
/// `principal "P" may not ACTION WHAT: WHY`.
pub fn denial_text(principal: &str, action: Action, what: &str, decision: &Decision) -> String {
    let why = denial_reason(decision);
    format!(
        "principal {principal:?} may not {} {what}: {why}",
        action.as_str()
    )
}

/// A compiled, validated Cedar policy set and the source text of each
/// policy, keyed by id.
#[derive(Debug, Clone)]
pub(crate) struct AccessPolicies {
    set: PolicySet,
    texts: BTreeMap<String, String>,
    schema: Option<Schema>,
    cache: DecisionCache,
}

/// Most decisions kept by a [`DecisionCache`]; when full it starts over.
const DECISION_CACHE_MAX: usize = 4096;

/// Decisions already made for this policy set, keyed by everything a
/// decision depends on. Deciding is pure (the entities are built from the
/// request alone), so a cached decision is exactly the one Cedar would make
/// again; `context.time` is whole seconds, so a busy principal decides once
/// per second and stream. Requests about single events are not cached (each
/// names another index). A new policy set starts with an empty cache.
#[derive(Default)]
struct DecisionCache(std::sync::Mutex<HashMap<DecisionKey, Decision>>);

impl DecisionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DecisionKey, Decision>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clone for DecisionCache {
    fn clone(&self) -> Self {
        DecisionCache::default()
    }
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionCache")
    }
}

/// Every field of an [`AccessRequest`] but single-event resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    principal: String,
    principal_kind: String,
    roles: Vec<String>,
    action: Action,
    /// The stream's name, `None` for the log.
    stream: Option<String>,
    time: i64,
    client_ip: IpAddr,
    tls: bool,
    tls_identity: Option<String>,
    auth_method: String,
}

impl DecisionKey {
    fn of(request: &AccessRequest<'_>) -> Option<DecisionKey> {
        let stream = match request.resource {
            Resource::Stream(name) => Some(name.to_owned()),
            Resource::Log => None,
            Resource::Event { .. } => return None,
        };
        Some(DecisionKey {
            principal: request.principal.to_owned(),
            principal_kind: request.principal_kind.to_owned(),
            roles: request.roles.to_vec(),
            action: request.action,
            stream,
            time: request.context.time,
            client_ip: request.context.client_ip,
            tls: request.context.tls,
            tls_identity: request.context.tls_identity.clone(),
            auth_method: request.context.auth_method.clone(),
        })
    }
}

/// Where a Cedar text sits, to report positions in the right file.
#[derive(Debug, Clone)]
pub(crate) struct CedarOrigin<'a> {
    /// The file (and its whole text) positions are reported in.
    pub(crate) map: TextMap<'a>,
    /// Byte offset of the Cedar text within that file.
    pub(crate) base: usize,
}

impl CedarOrigin<'_> {
    fn problem_at(&self, offset: Option<usize>, message: String) -> Problem {
        match offset {
            Some(offset) => self.map.problem_at(self.base + offset, message),
            None => self.map.problem(message),
        }
    }
}

/// The entity types requests are built from, parsed once.
const ENTITY_TYPES: [&str; 6] = [
    "Stele::Role",
    "Stele::Principal",
    "Stele::Stream",
    "Stele::Event",
    "Stele::Log",
    "Stele::Action",
];

fn type_name(name: &str) -> Result<EntityTypeName, String> {
    static PARSED: std::sync::OnceLock<HashMap<&'static str, EntityTypeName>> =
        std::sync::OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        ENTITY_TYPES
            .iter()
            .filter_map(|n| Some((*n, EntityTypeName::from_str(n).ok()?)))
            .collect()
    });
    match parsed.get(name) {
        Some(parsed) => Ok(parsed.clone()),
        None => EntityTypeName::from_str(name).map_err(|e| format!("bad entity type {name}: {e}")),
    }
}

fn uid(type_name_str: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(type_name_str)?,
        EntityId::new(id),
    ))
}

fn first_label_offset(diagnostic: &dyn Diagnostic) -> Option<usize> {
    let mut labels = diagnostic.labels()?;
    labels.next().map(|label| label.offset())
}

fn diagnostic_message(diagnostic: &dyn Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        let _ = write!(message, " (help: {help})");
    }
    message
}

impl AccessPolicies {
    /// A set with no policies: denies everything.
    pub(crate) fn deny_all() -> AccessPolicies {
        AccessPolicies {
            set: PolicySet::new(),
            texts: BTreeMap::new(),
            schema: None,
            cache: DecisionCache::default(),
        }
    }

    /// Parses `text`, gives each policy its `@id` as Cedar id, and
    /// validates the set against [`SCHEMA`] in strict mode. Reports every
    /// problem found, positioned through `origin`.
    pub(crate) fn compile(
        text: &str,
        origin: &CedarOrigin<'_>,
    ) -> Result<AccessPolicies, Vec<Problem>> {
        let schema = match Schema::from_cedarschema_str(SCHEMA) {
            Ok((schema, _warnings)) => schema,
            Err(error) => {
                return Err(vec![origin.problem_at(
                    None,
                    format!("internal error: the built-in Cedar schema does not parse: {error}"),
                )]);
            }
        };
        let parsed = match PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                return Err(errors
                    .iter()
                    .map(|error| {
                        origin.problem_at(
                            first_label_offset(error),
                            format!("Cedar syntax: {}", diagnostic_message(error)),
                        )
                    })
                    .collect());
            }
        };
        let mut problems = Vec::new();
        // Give each policy its @id as Cedar id, so that validation errors
        // and decisions name policies the way their authors do. Order by
        // position in the text so that problems come out in file order.
        let mut policies: Vec<(usize, cedar_policy::Policy)> = parsed
            .policies()
            .map(|policy| {
                let source = policy.to_cedar().unwrap_or_default();
                let start = text.find(&source).unwrap_or(0);
                (start, policy.clone())
            })
            .collect();
        policies.sort_by_key(|(start, _)| *start);
        let mut set = PolicySet::new();
        let mut texts = BTreeMap::new();
        let mut starts: HashMap<String, usize> = HashMap::new();
        for template in parsed.templates() {
            let start = template.to_cedar();
            let start = text.find(&start);
            problems.push(
                origin.problem_at(
                    start,
                    "Cedar templates (policies with ?principal or ?resource) are not supported"
                        .to_owned(),
                ),
            );
        }
        for (start, policy) in policies {
            let id = policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_owned);
            if starts.contains_key(&id) {
                problems.push(origin.problem_at(
                    Some(start),
                    format!("two Cedar policies have the id {id:?}; ids must be unique"),
                ));
                continue;
            }
            let renamed = policy.new_id(PolicyId::new(&id));
            texts.insert(id.clone(), policy.to_cedar().unwrap_or_default());
            starts.insert(id.clone(), start);
            if let Err(error) = set.add(renamed) {
                problems
                    .push(origin.problem_at(Some(start), format!("Cedar policy {id:?}: {error}")));
            }
        }
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let offset = first_label_offset(error)
                .or_else(|| starts.get(&error.policy_id().to_string()).copied());
            problems.push(origin.problem_at(
                offset,
                format!(
                    "Cedar policy fails schema validation: {}",
                    diagnostic_message(error)
                ),
            ));
        }
        if problems.is_empty() {
            Ok(AccessPolicies {
                set,
                texts,
                schema: Some(schema),
                cache: DecisionCache::default(),
            })
        } else {
            Err(problems)
        }
    }

    /// The ids of the policies, sorted.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }

    /// Decides `request`.
    pub(crate) fn authorize(&self, request: &AccessRequest<'_>) -> Decision {
        let Some(key) = DecisionKey::of(request) else {
            return self.decide(request);
        };
        if let Some(decision) = self.cache.lock().get(&key) {
            return decision.clone();
        }
        let decision = self.decide(request);
        let mut cache = self.cache.lock();
        if cache.len() >= DECISION_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, decision.clone());
        decision
    }

    /// Asks Cedar.
    fn decide(&self, request: &AccessRequest<'_>) -> Decision {
        let (cedar_request, entities) = match self.build(request) {
            Ok(built) => built,
            Err(error) => {
                return Decision {
                    allowed: false,
                    reasons: Vec::new(),
                    errors: vec![error],
                };
            }
        };
        let response = Authorizer::new().is_authorized(&cedar_request, &self.set, &entities);
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        let errors = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            reasons,
            errors,
        }
    }

    /// Decides `request` and explains the decision in words.
    pub(crate) fn explain(&self, request: &AccessRequest<'_>) -> String {
        let decision = self.authorize(request);
        let mut out = String::new();
        let resource = match request.resource {
            Resource::Stream(stream) => format!("stream {stream:?}"),
            Resource::Event { stream, index } => format!("event {index} in stream {stream:?}"),
            Resource::Log => "the log".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}: {} ({}, roles [{}]) {} {}",
            if decision.allowed { "ALLOW" } else { "DENY" },
            request.principal,
            request.principal_kind,
            request.roles.join(", "),
            request.action,
            resource,
        );
        if decision.reasons.is_empty() {
            if !decision.allowed {
                out.push_str("no policy permits this (default deny)\n");
            }
        } else {
            let verb = if decision.allowed {
                "permitted by"
            } else {
                "forbidden by"
            };
            for id in &decision.reasons {
                let _ = writeln!(out, "{verb} policy {id:?}:");
                for line in self.texts.get(id).map_or("", String::as_str).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        for error in &decision.errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }

    fn build(&self, request: &AccessRequest<'_>) -> Result<(Request, Entities), String> {
        let mut entities = Vec::new();
        let mut role_uids = HashSet::new();
        for role in request.roles {
            let role_uid = uid("Stele::Role", role)?;
            if role_uids.insert(role_uid.clone()) {
                entities.push(Entity::with_uid(role_uid));
            }
        }
        let principal_uid = uid("Stele::Principal", request.principal)?;
        let principal = Entity::new(
            principal_uid.clone(),
            HashMap::from([(
                "kind".to_owned(),
                RestrictedExpression::new_string(request.principal_kind.to_owned()),
            )]),
            role_uids,
        )
        .map_err(|e| e.to_string())?;
        entities.push(principal);
        let stream_entity = |name: &str| -> Result<(EntityUid, Entity), String> {
            let stream_uid = uid("Stele::Stream", name)?;
            let entity = Entity::new(
                stream_uid.clone(),
                HashMap::from([(
                    "reserved".to_owned(),
                    RestrictedExpression::new_bool(stele_event::is_reserved_stream_name(name)),
                )]),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?;
            Ok((stream_uid, entity))
        };
        let resource_uid = match request.resource {
            Resource::Stream(name) => {
                let (stream_uid, entity) = stream_entity(name)?;
                entities.push(entity);
                stream_uid
            }
            Resource::Event { stream, index } => {
                let (stream_uid, entity) = stream_entity(stream)?;
                entities.push(entity);
                let index_long = i64::try_from(index)
                    .map_err(|_| format!("event index {index} is beyond Cedar's Long"))?;
                let event_uid = uid("Stele::Event", &index.to_string())?;
                let event = Entity::new(
                    event_uid.clone(),
                    HashMap::from([(
                        "index".to_owned(),
                        RestrictedExpression::new_long(index_long),
                    )]),
                    HashSet::from([stream_uid]),
                )
                .map_err(|e| e.to_string())?;
                entities.push(event);
                event_uid
            }
            Resource::Log => {
                let log_uid = uid("Stele::Log", "log")?;
                entities.push(Entity::with_uid(log_uid.clone()));
                log_uid
            }
        };
        let context = &request.context;
        let context = Context::from_pairs([
            (
                "time".to_owned(),
                RestrictedExpression::new_long(context.time),
            ),
            (
                "client_ip".to_owned(),
                RestrictedExpression::new_ip(context.client_ip.to_string()),
            ),
            (
                "tls".to_owned(),
                RestrictedExpression::new_bool(context.tls),
            ),
            (
                "tls_identity".to_owned(),
                RestrictedExpression::new_string(context.tls_identity.clone().unwrap_or_default()),
            ),
            (
                "auth_method".to_owned(),
                RestrictedExpression::new_string(context.auth_method.clone()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let action_uid = uid("Stele::Action", request.action.as_str())?;
        let cedar_request = Request::new(
            principal_uid,
            action_uid,
            resource_uid,
            context,
            self.schema.as_ref(),
        )
        .map_err(|e| format!("request does not fit the schema: {e}"))?;
        let entities =
            Entities::from_entities(entities, self.schema.as_ref()).map_err(|e| e.to_string())?;
        Ok((cedar_request, entities))
    }
}
