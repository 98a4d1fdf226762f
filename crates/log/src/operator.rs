//! The local operator — whoever runs the `stele` CLI on this machine — as
//! an access policy sees them: principal `local:<user>` of kind `local`,
//! with the policy's `[operators] local_roles`, authentication method
//! `local`, from 127.0.0.1 without TLS.
//!
//! Shared by the CLI, which authorizes every command it runs as this
//! operator, and by the server (`stele_server`), which applies the same
//! lockout check as
//! `stele policy apply` before `PUT /v1/policy`: a new policy under which
//! the operator could no longer apply a policy is refused unless the
//! caller says it means it. This module only builds requests and words
//! decisions; it records nothing.

use jiff::Timestamp;
use stele_policy::{Action, Policy, Resource};

/// The name of the user running this process: `$USER`, else `$LOGNAME`,
/// else the name of the process's user id in /etc/passwd, else `uid<N>`.
pub fn os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.is_empty()
        {
            return name;
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        });
    let Some(uid) = uid else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// The local principal name, `local:<user>`.
pub fn local_principal() -> String {
    format!("local:{}", os_user())
}

// The request builder and the wording of a denial are shared with the
// CLI through `stele-policy`; re-exported here for the server's callers.
pub use stele_policy::{denial_text, local_request};

/// Checks that under `policy` (about to be applied) the local operator
/// `principal`, with the policy's `local_roles`, may still apply a policy
/// (`policy.apply` on the log) at `now`. Otherwise says why, for a refusal
/// or a warning: applying it would leave the CLI unable to change the
/// policy again (only the HTTP API could).
pub fn check_lockout(policy: &Policy, principal: &str, now: Timestamp) -> Result<(), String> {
    let roles = policy.local_roles();
    let request = local_request(
        principal,
        "local",
        roles,
        Action::PolicyApply,
        Resource::Log,
        now,
    );
    let decision = policy.authorize(&request);
    if decision.allowed {
        return Ok(());
    }
    Err(format!(
        "under it, {} (local roles [{}] from its [operators] local_roles); the CLI could not \
         change the policy again (only the HTTP API could)",
        denial_text(principal, Action::PolicyApply, "log", &decision),
        roles.join(", ")
    ))
}
