//! The operator at the keyboard: who runs the CLI (`local:<user>`), the
//! clock the CLI hands to the engine, and the Cedar authorization of CLI
//! operations on a data directory.
//!
//! Every command that opens a data directory on someone's behalf asks the
//! active policy the same question the server asks for the same operation
//! (same [`Action`], same [`Resource`]), as principal `local:<user>` of kind
//! `local`, authentication method `local`, from 127.0.0.1 without TLS, with
//! the policy's `[operators] local_roles` (the request is built by
//! `stele_log::operator`, which the server shares). A denial is recorded as an
//! `access.denied` system event shaped like the server's
//! (the server's shape), with `"method": "local"` and source `cli`.
//!
//! While no policy has ever been applied to a data directory (the shipped
//! default is in effect) the CLI keeps its behaviour from before policies
//! existed: the operator gets the role `admin` — the shipped default
//! declares no local roles, and honouring that literally would lock the
//! owner of every existing log out of `stele append`, `get` and `verify` —
//! and `stele get` records no `event.read`. The first applied policy ends
//! this: from then on its `local_roles` decide and every read is recorded.
//! See `docs/cli.md`.

use jiff::Timestamp;
pub use stele_log::operator::{denial_text, local_principal, local_request};
use stele_log::system_event::{AccessDenied, Caller, EventRead};
use stele_log::{Log, LogError, LogReader, SystemEvent, SystemResource};
use stele_policy::{AccessRequest, Action, Decision, Policy, Resource};

use crate::{CliResult, Failure};

/// The role of the operator while no policy has been applied.
pub const UNGOVERNED_ROLE: &str = "admin";

/// Whether this build honours the testing aids `STELE_NOW` and
/// `STELE_RETENTION_GRACE`. Debug builds (the tests') do; release builds
/// refuse to run with either set, rather than let a variable move
/// retention decisions.
pub const TESTING_AIDS_HONOURED: bool = cfg!(debug_assertions);

/// The environment variable `name` as the build treats a testing aid:
/// `None` when it is not set, its text when `honoured`, and otherwise a
/// usage failure (exit 2) saying to unset it. Set to anything at all,
/// even bytes that are not UTF-8, it counts as set.
fn testing_aid(name: &str, honoured: bool) -> CliResult<Option<String>> {
    testing_aid_value(
        name,
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
        honoured,
    )
}

fn testing_aid_value(
    name: &str,
    value: Option<String>,
    honoured: bool,
) -> CliResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(text) if honoured => Ok(Some(text)),
        Some(_) => Err(Failure::usage(format!(
            "{name} is a testing aid that only debug builds honour; unset it"
        ))),
    }
}

/// The clock for a `STELE_NOW` value (`None`: unset).
fn clock(value: Option<String>, honoured: bool) -> CliResult<Timestamp> {
    match testing_aid_value("STELE_NOW", value, honoured)? {
        None => Ok(Timestamp::now()),
        Some(text) => text
            .trim()
            .parse::<Timestamp>()
            .map_err(|e| Failure::usage(format!("STELE_NOW {text:?}: not an RFC 3339 time: {e}"))),
    }
}

/// The grace period for a `STELE_RETENTION_GRACE` value (`None`: unset).
fn grace(value: Option<String>, honoured: bool) -> CliResult<std::time::Duration> {
    match testing_aid_value("STELE_RETENTION_GRACE", value, honoured)? {
        None => Ok(stele_log::DEFAULT_RETENTION_GRACE),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|e| {
                Failure::usage(format!(
                    "STELE_RETENTION_GRACE {text:?}: not a number of seconds: {e}"
                ))
            }),
    }
}

/// The CLI's clock. `STELE_NOW` (RFC 3339) replaces it in debug builds, so
/// tests can step past a retention period; release builds refuse it
/// ([`TESTING_AIDS_HONOURED`]).
pub fn now() -> CliResult<Timestamp> {
    clock(
        testing_aid("STELE_NOW", TESTING_AIDS_HONOURED)?,
        TESTING_AIDS_HONOURED,
    )
}

/// The grace period between announcing that an epoch is due and purging
/// it ([`stele_log::DEFAULT_RETENTION_GRACE`]). `STELE_RETENTION_GRACE`
/// (seconds) replaces it in debug builds, so tests can purge in one run;
/// release builds refuse it, as they refuse `STELE_NOW`.
pub fn retention_grace() -> CliResult<std::time::Duration> {
    grace(
        testing_aid("STELE_RETENTION_GRACE", TESTING_AIDS_HONOURED)?,
        TESTING_AIDS_HONOURED,
    )
}

/// The operator as the access policy sees them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub principal: String,
    pub roles: Vec<String>,
    /// True when the roles come from the ungoverned rule (no policy
    /// applied yet), not from a policy's `[operators] local_roles`.
    pub ungoverned: bool,
}

impl Operator {
    /// The operator of `log`: roles from its active policy.
    pub fn of(log: &Log) -> Operator {
        Operator::under(
            &log.reader().active_policy(),
            !log.reader().policy_versions().is_empty(),
        )
    }

    /// The operator of the log `reader` reads: roles from its active policy.
    pub fn of_reader(reader: &LogReader) -> Operator {
        Operator::under(
            &reader.active_policy(),
            !reader.policy_versions().is_empty(),
        )
    }

    /// The operator under `policy`; `applied` says whether it is an
    /// applied version (false: the shipped default of an ungoverned log).
    pub fn under(policy: &Policy, applied: bool) -> Operator {
        let (roles, ungoverned) = if applied {
            (policy.local_roles().to_vec(), false)
        } else {
            (vec![UNGOVERNED_ROLE.to_owned()], true)
        };
        Operator {
            principal: local_principal(),
            roles,
            ungoverned,
        }
    }

    /// The access request for `action` on `resource` at `now`.
    pub fn request<'a>(
        &'a self,
        action: Action,
        resource: Resource<'a>,
        now: Timestamp,
    ) -> AccessRequest<'a> {
        local_request(&self.principal, "local", &self.roles, action, resource, now)
    }

    /// Only the decision.
    pub fn decide(
        &self,
        policy: &Policy,
        action: Action,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> Decision {
        policy.authorize(&self.request(action, resource, now))
    }

    /// Allows the operation or fails with exit code 1, naming the deciding
    /// policies; a denial is recorded as an `access.denied` system event.
    pub fn authorize(
        &self,
        log: &mut Log,
        action: Action,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> CliResult<()> {
        let decision = self.decide(&log.reader().active_policy(), action, resource, now);
        if decision.allowed {
            return Ok(());
        }
        Err(self.denied(log, action, resource, &decision, now))
    }

    /// [`Self::authorize`] for a command that only reads the log: a
    /// denial cannot be recorded, and the failure says so.
    pub fn authorize_reading(
        &self,
        reader: &LogReader,
        action: Action,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> CliResult<()> {
        let decision = self.decide(&reader.active_policy(), action, resource, now);
        if decision.allowed {
            return Ok(());
        }
        Err(Failure::refused(format!(
            "{}; {}; the denial is not recorded (this command only reads the log)",
            denial_text(&self.principal, action, &resource.text(), &decision),
            self.roles_text()
        )))
    }

    /// Records a denial and returns the failure to report.
    pub fn denied(
        &self,
        log: &mut Log,
        action: Action,
        resource: Resource<'_>,
        decision: &Decision,
        now: Timestamp,
    ) -> Failure {
        let what = resource.text();
        let recorded = match record_denial(log, self, action, &resource, decision, now) {
            Ok(index) => format!("recorded as access.denied event {index}"),
            Err(e) => format!("the denial could not be recorded: {e}"),
        };
        Failure::refused(format!(
            "{}; {}; {recorded}",
            denial_text(&self.principal, action, &what, decision),
            self.roles_text()
        ))
    }

    /// The operator's roles and where they come from.
    pub fn roles_text(&self) -> String {
        let source = if self.ungoverned {
            "no policy has been applied to this log"
        } else {
            "the active policy's [operators] local_roles"
        };
        format!("local roles [{}] ({source})", self.roles.join(", "))
    }
}

/// Appends one event to `_system` as the CLI (source `cli`), durably and
/// under a new checkpoint; returns its index.
pub fn append_system_event(
    log: &mut Log,
    event: &SystemEvent,
    now: Timestamp,
) -> Result<u64, LogError> {
    let prepared = event.prepare("cli", now)?;
    let receipts = log.writer().append_batch(std::slice::from_ref(&prepared))?;
    let index = receipts
        .first()
        .map(|r| r.index)
        .ok_or_else(|| LogError::Internal("the system event was not appended".into()))?;
    log.writer().publish()?;
    Ok(index.0)
}

/// The `access.denied` event (the server's shape, method `local`).
fn record_denial(
    log: &mut Log,
    operator: &Operator,
    action: Action,
    resource: &Resource<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<u64, LogError> {
    let caller = Caller::local();
    let event = SystemEvent::AccessDenied {
        actor: operator.principal.clone(),
        resource: SystemResource::of_access(resource),
        attributes: AccessDenied {
            stream: SystemResource::access_stream(resource),
            requested: action.as_str().to_string(),
            method: caller.method,
            client: caller.client,
            policies: decision.reasons.clone(),
            errors: decision.errors.clone(),
        },
    };
    append_system_event(log, &event, now)
}

/// The `event.read` audit of a read (the server's shape, method `local`),
/// durable before the content is shown.
pub fn record_read(
    log: &mut Log,
    operator: &Operator,
    index: u64,
    stream: &str,
    now: Timestamp,
) -> CliResult<u64> {
    let caller = Caller::local();
    let event = SystemEvent::EventRead {
        actor: operator.principal.clone(),
        index,
        attributes: EventRead {
            method: caller.method,
            client: caller.client,
            stream: stream.to_string(),
        },
    };
    Ok(append_system_event(log, &event, now)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// What a release build does with the testing aids, decided by the
    /// same code a debug build runs, with `honoured` false: set, each is
    /// refused (exit 2) with a message saying to unset it, whatever its
    /// value; unset, the real clock and the default grace apply.
    #[test]
    fn a_build_that_does_not_honour_the_testing_aids_refuses_them() {
        for value in ["2031-05-06T07:08:09Z", "", "not a time"] {
            let e = clock(Some(value.into()), false).unwrap_err();
            assert_eq!(e.code, 2);
            assert_eq!(
                e.message,
                "STELE_NOW is a testing aid that only debug builds honour; unset it"
            );
        }
        for value in ["0", "", "x"] {
            let e = grace(Some(value.into()), false).unwrap_err();
            assert_eq!(e.code, 2);
            assert_eq!(
                e.message,
                "STELE_RETENTION_GRACE is a testing aid that only debug builds honour; unset it"
            );
        }
        let before = Timestamp::now();
        let now = clock(None, false).unwrap();
        assert!(now >= before && now <= Timestamp::now());
        assert_eq!(
            grace(None, false).unwrap(),
            stele_log::DEFAULT_RETENTION_GRACE
        );
    }

    #[test]
    fn a_build_that_honours_the_testing_aids_uses_them() {
        let at: Timestamp = "2031-05-06T07:08:09Z".parse().unwrap();
        assert_eq!(
            clock(Some(" 2031-05-06T07:08:09Z\n".into()), true).unwrap(),
            at
        );
        let e = clock(Some("tomorrow".into()), true).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("not an RFC 3339 time"), "{}", e.message);
        assert_eq!(
            grace(Some("0".into()), true).unwrap(),
            std::time::Duration::ZERO
        );
        assert!(grace(Some("soon".into()), true).is_err());
    }
}
