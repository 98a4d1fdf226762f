//! The Stele policy: one TOML file (plus Cedar access policies, inline or in
//! a side file) that decides which streams exist, where events go, how long
//! each stream is kept, what encryption and transport are required, how old
//! keys may get, when the log audits itself, and who may do what.
//!
//! This crate parses and validates a policy ([`Policy::from_source`], which
//! reports every problem with its file, line and column) and answers
//! questions about it: routing ([`Policy::route`]), retention
//! ([`Retention::purge_after`], [`purge_after`] over the history of applied
//! policies, [`retention_changes`]) and access ([`Policy::authorize`],
//! [`Policy::explain`]). `docs/policy.md` documents every field of the file.
//!
//! What it is not: it is pure apart from [`PolicySource::load`] (which reads
//! the TOML file and its Cedar side file). It reads no clock — callers pass
//! times as Unix seconds — and it enforces nothing itself: the server and
//! the retention job ask it and act.
//!
//! # The file
//!
//! ```toml
//! version = 1                      # the only accepted value
//! default_stream = "operational"   # must name a declared stream
//!
//! [streams.operational]
//! retain = "90d"                   # "<N>d" (1..=36500) or "forever"
//! encryption = "required"          # optional; the only accepted value
//!
//! [streams.compliance]
//! retain_until = "2031-12-31"      # instead of retain (exactly one)
//!
//! [[routes]]                       # in order; first match wins
//! stream = "compliance"            # must name a declared stream
//! channel = "http"                 # optional keys, all given must match;
//! source = "10.0.*"                # `*`-globs, case-sensitive
//! writer = "svc-*"
//! action = "delete*"
//! kubernetes = { namespace = "prod-*", resource = "secrets", verb = "get" }
//! attributes = { "pci" = "true", "app.tier" = "payments" }
//!
//! [transport]
//! tls = "required"                 # or "optional" (default)
//!
//! [keys]
//! max_kek_age = "365d"             # optional
//!
//! [audit]                          # defaults shown
//! verify_new_every = "60s"
//! verify_full_every = "24h"
//! attest_every = "1h"
//! max_since_full_verify = "48h"    # at least verify_full_every
//! readyz_fails_on_finding = false
//!
//! [operators]
//! local_roles = ["admin"]          # roles of `local:<os user>` using the CLI
//!
//! [access]
//! cedar_file = "access.cedar"      # relative to this file; or `cedar = '''…'''`;
//!                                  # neither: the shipped DEFAULT_CEDAR
//! ```
//!
//! Durations are `<N>s`, `<N>m`, `<N>h` or `<N>d`, N a positive whole
//! number, at most 100 years ([`MAX_DURATION_DAYS`] days). Stream names
//! follow [`stele_event::check_client_stream_name`]; reserved (`_`) streams
//! cannot be declared: Stele writes them and keeps them forever. Unknown
//! keys anywhere are refused.

mod access;
mod error;
mod parse;
mod retention;
mod route;
mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use access::{
    AccessContext, AccessRequest, Action, DEFAULT_CEDAR, Decision, Resource, SCHEMA, denial_reason,
    denial_text, local_request,
};
pub use error::{PolicyError, PolicyErrors, Problem, RouteError};
pub use parse::{MAX_DURATION_DAYS, ROLE_NAME_MAX};
pub use retention::{AppliedPolicy, Retention, RetentionChange, purge_after, retention_changes};
pub use route::{Glob, KubernetesMatch, Route, RouteInput, glob_matches};
pub use source::PolicySource;

use access::{AccessPolicies, CedarOrigin};
use error::TextMap;
use parse::CedarSpec;

/// The domain separator of [`Policy::hash`].
pub const POLICY_HASH_DOMAIN: &[u8] = b"stele/policy/v1\n";

/// The TOML of [`Policy::shipped_default`].
pub const DEFAULT_TOML: &str = "\
# The policy Stele uses when the operator has none: everything kept
# forever, in the stream each event names (or `default`).
version = 1
default_stream = \"default\"
undeclared_streams = \"inherit\"

[streams.default]
retain = \"forever\"
";

/// What happens to an event that names a stream the policy does not
/// declare (`undeclared_streams` in the policy file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UndeclaredStreams {
    /// Refused with an error naming the stream (the default).
    Refuse,
    /// Accepted into the named stream, which is governed by the default
    /// stream's rules (retention, encryption) under every policy version.
    Inherit,
}

impl UndeclaredStreams {
    /// The value as the policy file writes it: `refuse` or `inherit`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UndeclaredStreams::Refuse => "refuse",
            UndeclaredStreams::Inherit => "inherit",
        }
    }
}

/// Encryption requirement of a stream. Stele always encrypts at rest, so
/// there is one value; it exists so callers can check the requirement
/// explicitly and so a policy can state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encryption {
    /// Every record is sealed (AES-256-GCM) before it is written.
    Required,
}

/// What the policy says about one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPolicy {
    /// How long its data is kept.
    pub retention: Retention,
    /// Its encryption requirement.
    pub encryption: Encryption,
}

/// Whether listeners must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsRequirement {
    /// Plain HTTP is allowed anywhere (the default).
    Optional,
    /// Every listener on a non-loopback address must use TLS.
    Required,
}

/// Transport requirements (`[transport]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportPolicy {
    /// `tls`.
    pub tls: TlsRequirement,
}

/// A listener the transport policy forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "listener {address} has no TLS, but the policy requires TLS on every non-loopback \
     listener ([transport] tls = \"required\"): configure a certificate for it, or listen \
     on a loopback address (127.0.0.1 or ::1)"
)]
pub struct TransportViolation {
    /// The listener's address.
    pub address: SocketAddr,
}

impl TransportPolicy {
    /// Checks one listener: with `tls = "required"`, a listener on a
    /// non-loopback address must use TLS. The server should refuse to start
    /// on an error.
    pub fn check_listener(
        &self,
        address: SocketAddr,
        uses_tls: bool,
    ) -> Result<(), TransportViolation> {
        if self.tls == TlsRequirement::Required && !uses_tls && !address.ip().is_loopback() {
            Err(TransportViolation { address })
        } else {
            Ok(())
        }
    }
}

/// Key requirements (`[keys]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// `max_kek_age`: a key-encryption key older than this is an audit
    /// finding. `None`: no limit.
    pub max_kek_age: Option<Duration>,
}

impl KeyPolicy {
    /// Whether a KEK created at `created_at` is too old at `now` (Unix
    /// seconds).
    pub fn kek_too_old(&self, created_at: i64, now: i64) -> bool {
        self.max_kek_age.is_some_and(|max| {
            let age = now.saturating_sub(created_at);
            u64::try_from(age).is_ok_and(|age| age > max.as_secs())
        })
    }
}

/// The longevity audit schedule (`[audit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSchedule {
    /// `verify_new_every` (default 60 s): incremental verification of new
    /// entries.
    pub verify_new_every: Duration,
    /// `verify_full_every` (default 24 h): whole-log verification.
    pub verify_full_every: Duration,
    /// `attest_every` (default 1 h): signed attestation event.
    pub attest_every: Duration,
    /// `max_since_full_verify` (default 48 h): a finding if the last full
    /// verification is older. At least `verify_full_every`.
    pub max_since_full_verify: Duration,
    /// `readyz_fails_on_finding` (default false): whether `/readyz` fails
    /// while there are findings.
    pub readyz_fails_on_finding: bool,
}

impl Default for AuditSchedule {
    fn default() -> AuditSchedule {
        AuditSchedule {
            verify_new_every: Duration::from_secs(60),
            verify_full_every: Duration::from_secs(24 * 3600),
            attest_every: Duration::from_secs(3600),
            max_since_full_verify: Duration::from_secs(48 * 3600),
            readyz_fails_on_finding: false,
        }
    }
}

impl AuditSchedule {
    /// Whether the last full verification (`None`: never) is overdue at
    /// `now` (Unix seconds).
    pub fn full_verify_overdue(&self, last_full_verify: Option<i64>, now: i64) -> bool {
        match last_full_verify {
            None => true,
            Some(last) => {
                let age = now.saturating_sub(last);
                u64::try_from(age).is_ok_and(|age| age > self.max_since_full_verify.as_secs())
            }
        }
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    source: PolicySource,
    default_stream: String,
    undeclared_streams: UndeclaredStreams,
    streams: BTreeMap<String, StreamPolicy>,
    routes: Vec<Route>,
    transport: TransportPolicy,
    keys: KeyPolicy,
    audit: AuditSchedule,
    local_roles: Vec<String>,
    access: AccessPolicies,
    hash: [u8; 32],
}

impl Policy {
    /// Parses and validates a policy. On failure returns ALL problems found
    /// (TOML problems first; the Cedar policies are checked only when the
    /// TOML is sound), each with its file, line and column when known.
    pub fn from_source(source: &PolicySource) -> Result<Policy, PolicyErrors> {
        let toml_map = TextMap {
            file: &source.toml_name,
            text: &source.toml,
        };
        let parsed = parse::read(toml_map.clone()).map_err(|problems| PolicyErrors { problems })?;
        let (cedar_text, origin) = match &parsed.cedar {
            CedarSpec::Default => {
                if source.cedar.is_some() {
                    return Err(PolicyErrors {
                        problems: vec![toml_map.problem(
                            "the source carries a Cedar side file but [access] names no `cedar_file`"
                                .to_owned(),
                        )],
                    });
                }
                (
                    DEFAULT_CEDAR,
                    CedarOrigin {
                        map: TextMap {
                            file: "<shipped default.cedar>",
                            text: DEFAULT_CEDAR,
                        },
                        base: 0,
                    },
                )
            }
            CedarSpec::File { span_start } => match (&source.cedar, &source.cedar_name) {
                (Some(text), name) => (
                    text.as_str(),
                    CedarOrigin {
                        map: TextMap {
                            file: name.as_deref().unwrap_or("<cedar_file>"),
                            text,
                        },
                        base: 0,
                    },
                ),
                (None, _) => {
                    return Err(PolicyErrors {
                        problems: vec![toml_map.problem_at(
                            *span_start,
                            "`access.cedar_file` is set but the side file was not read; load the \
                             policy with PolicySource::load"
                                .to_owned(),
                        )],
                    });
                }
            },
            CedarSpec::Inline { text, base } => (
                text.as_str(),
                CedarOrigin {
                    map: toml_map.clone(),
                    base: *base,
                },
            ),
        };
        let access = AccessPolicies::compile(cedar_text, &origin)
            .map_err(|problems| PolicyErrors { problems })?;
        let hash = policy_hash(&source.toml, cedar_text);
        Ok(Policy {
            source: source.clone(),
            default_stream: parsed.default_stream,
            undeclared_streams: parsed.undeclared_streams,
            streams: parsed.streams,
            routes: parsed.routes,
            transport: parsed.transport,
            keys: parsed.keys,
            audit: parsed.audit,
            local_roles: parsed.local_roles,
            access,
            hash,
        })
    }

    /// The policy used when the operator has none ([`DEFAULT_TOML`]): one
    /// stream `default` kept forever and the default stream, every other
    /// stream an event names governed like it, no routes, TLS
    /// optional, no key age limit, the default audit schedule, no local
    /// roles, and the shipped Cedar policies ([`DEFAULT_CEDAR`]).
    pub fn shipped_default() -> Policy {
        let source = PolicySource::from_toml("<shipped default policy>", DEFAULT_TOML);
        match Policy::from_source(&source) {
            Ok(policy) => policy,
            // Unreachable (a test parses the shipped default); should it
            // ever happen, fail closed: same streams, every access denied.
            Err(_) => Policy {
                hash: policy_hash(DEFAULT_TOML, DEFAULT_CEDAR),
                source,
                default_stream: "default".to_owned(),
                undeclared_streams: UndeclaredStreams::Inherit,
                streams: BTreeMap::from([(
                    "default".to_owned(),
                    StreamPolicy {
                        retention: Retention::Forever,
                        encryption: Encryption::Required,
                    },
                )]),
                routes: Vec::new(),
                transport: TransportPolicy {
                    tls: TlsRequirement::Optional,
                },
                keys: KeyPolicy { max_kek_age: None },
                audit: AuditSchedule::default(),
                local_roles: Vec::new(),
                access: AccessPolicies::deny_all(),
            },
        }
    }

    /// The texts this policy was built from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// The policy hash, recorded in attestations and policy-change events:
    ///
    /// ```text
    /// SHA-256( "stele/policy/v1\n"
    ///          ‖ u64be(len(toml)) ‖ toml
    ///          ‖ u64be(len(cedar)) ‖ cedar )
    /// ```
    ///
    /// where `toml` is the TOML text and `cedar` the Cedar text in effect:
    /// the side file, the inline `cedar` string, or [`DEFAULT_CEDAR`] —
    /// so an upgrade that changes the shipped policies changes the hash.
    /// Lengths are in bytes; file names are not hashed.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The stream unmatched events go to.
    pub fn default_stream(&self) -> &str {
        &self.default_stream
    }

    /// One declared stream.
    ///
    /// Under `undeclared_streams = "inherit"` every other non-reserved name
    /// is governed by the default stream's rules.
    pub fn stream(&self, name: &str) -> Option<&StreamPolicy> {
        match self.streams.get(name) {
            Some(policy) => Some(policy),
            None if self.undeclared_streams == UndeclaredStreams::Inherit
                && !stele_event::is_reserved_stream_name(name) =>
            {
                self.streams.get(&self.default_stream)
            }
            None => None,
        }
    }

    /// What happens to events naming an undeclared stream.
    pub fn undeclared_streams(&self) -> UndeclaredStreams {
        self.undeclared_streams
    }

    /// Every declared stream, in name order.
    pub fn streams(&self) -> impl Iterator<Item = (&str, &StreamPolicy)> {
        self.streams
            .iter()
            .map(|(name, policy)| (name.as_str(), policy))
    }

    /// The routes, in evaluation order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The stream an event goes to: the stream the client requested if
    /// the policy declares it ([`RouteError::UnknownStream`] otherwise;
    /// [`RouteError::ReservedStream`] for `_` streams, never routable);
    /// else the first matching route's; else the default stream.
    pub fn route(&self, input: &RouteInput<'_>) -> Result<String, RouteError> {
        if let Some(requested) = input.requested_stream {
            if stele_event::is_reserved_stream_name(requested) {
                return Err(RouteError::ReservedStream {
                    stream: requested.to_owned(),
                });
            }
            if self.stream(requested).is_some() {
                return Ok(requested.to_owned());
            }
            return Err(RouteError::UnknownStream {
                stream: requested.to_owned(),
            });
        }
        let stream = self
            .routes
            .iter()
            .find(|route| route.matches(input))
            .map_or(&self.default_stream, |route| &route.stream);
        Ok(stream.clone())
    }

    /// Transport requirements.
    pub fn transport(&self) -> &TransportPolicy {
        &self.transport
    }

    /// Key requirements.
    pub fn keys(&self) -> &KeyPolicy {
        &self.keys
    }

    /// The audit schedule.
    pub fn audit(&self) -> &AuditSchedule {
        &self.audit
    }

    /// Roles of an operator using the `stele` CLI directly on the data
    /// directory (principal `local:<os user>`, kind `local`).
    pub fn local_roles(&self) -> &[String] {
        &self.local_roles
    }

    /// The ids of the Cedar policies in effect, sorted.
    pub fn access_policy_ids(&self) -> impl Iterator<Item = &str> {
        self.access.ids()
    }

    /// Decides an access request (Cedar semantics: deny wins, default deny).
    pub fn authorize(&self, request: &AccessRequest<'_>) -> Decision {
        self.access.authorize(request)
    }

    /// The check made before any input of an append is read (an HTTP
    /// body, the CLI's standard input): whether `may_append` allows some
    /// declared stream, or one of `also` (the streams a token is scoped
    /// to), in that order. A principal allowed nowhere is refused at once,
    /// whatever the input holds: `Err` names the stream whose denial the
    /// caller reports and records, the default stream.
    pub fn check_some_append<'a>(
        &self,
        also: impl IntoIterator<Item = &'a str>,
        mut may_append: impl FnMut(&str) -> bool,
    ) -> Result<(), &str> {
        let somewhere = self.streams.keys().any(|stream| may_append(stream))
            || also.into_iter().any(&mut may_append);
        if somewhere {
            return Ok(());
        }
        Err(self.default_stream())
    }

    /// Decides an access request and explains it: ALLOW/DENY, the
    /// determining policies with their ids and source text, evaluation
    /// errors, or "no policy permits this (default deny)".
    pub fn explain(&self, request: &AccessRequest<'_>) -> String {
        self.access.explain(request)
    }
}

fn policy_hash(toml: &str, cedar: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(POLICY_HASH_DOMAIN);
    for part in [toml, cedar] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}
