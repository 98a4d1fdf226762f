//! Access decisions: every authenticated request is a Cedar authorization
//! request (principal, action, resource, context) against the policy in
//! force. Deny wins; a denial answers 403 naming the deciding policies and
//! is recorded as an `access.denied` system event.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;

use axum::http::StatusCode;
use stele_log::system_event::AccessDenied;
use stele_log::{SystemEvent, SystemResource};
use stele_policy::{AccessContext, AccessRequest, Action, Decision, Resource};

use crate::api::{ApiError, ApiResult, AppState, ConnInfo};
use crate::tokens::Principal;

/// The scope check of a token limited to some streams, made before the
/// access policy is asked: such a token may act only on a stream of its
/// list or on an event of one; anything log-wide (administration,
/// verification, holds, tokens) is outside every scope. `Some` is the
/// denial, naming the scope as its reason.
fn scope_denial(principal: &Principal, resource: &Resource<'_>) -> Option<Decision> {
    let streams = principal.streams.as_ref()?;
    let inside = match resource {
        Resource::Stream(stream) | Resource::Event { stream, .. } => {
            streams.iter().any(|s| s == stream)
        }
        Resource::Log => false,
    };
    if inside {
        return None;
    }
    Some(Decision {
        allowed: false,
        reasons: vec![format!("token scope (streams {})", streams.join(", "))],
        errors: Vec::new(),
    })
}

/// Decides one request; only the decision, nothing recorded. A scoped
/// token outside its streams is denied before the policy is asked.
pub fn decide(
    state: &AppState,
    principal: &Principal,
    conn: Option<&ConnInfo>,
    action: Action,
    resource: Resource<'_>,
) -> Decision {
    if let Some(denial) = scope_denial(principal, &resource) {
        return denial;
    }
    let roles = principal.role_names();
    let request = AccessRequest {
        principal: &principal.name,
        principal_kind: if principal.method == "mtls" {
            "service"
        } else {
            "user"
        },
        roles: &roles,
        action,
        resource,
        context: AccessContext {
            time: jiff::Timestamp::now().as_second(),
            client_ip: conn
                .map(|c| c.remote.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            tls: state.config.tls.is_some(),
            tls_identity: conn.and_then(|c| c.client_cert.clone()),
            auth_method: principal.method.to_string(),
        },
    };
    state.governance.policy().authorize(&request)
}

/// Allows the request or answers 403; a denial is recorded as an
/// `access.denied` system event (queued; the 403 does not wait for it).
pub fn authorize(
    state: &AppState,
    principal: &Principal,
    conn: Option<&ConnInfo>,
    action: Action,
    resource: Resource<'_>,
) -> ApiResult<()> {
    let decision = decide(state, principal, conn, action, resource);
    if decision.allowed {
        return Ok(());
    }
    let what = resource.text();
    let why = stele_policy::denial_reason(&decision);
    let message = stele_policy::denial_text(&principal.name, action, &what, &decision);
    state.metrics.error("forbidden");
    state.governance.access_denied.fetch_add(1, Relaxed);
    tracing::info!(principal = %principal.name, action = action.as_str(), resource = %what, %why, "access denied");
    record_denial(state, principal, conn, action, &resource, &decision);
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
}

fn record_denial(
    state: &AppState,
    principal: &Principal,
    conn: Option<&ConnInfo>,
    action: Action,
    resource: &Resource<'_>,
    decision: &Decision,
) {
    let event = SystemEvent::AccessDenied {
        actor: principal.name.clone(),
        resource: SystemResource::of_access(resource),
        attributes: AccessDenied {
            stream: SystemResource::access_stream(resource),
            requested: action.as_str().to_string(),
            method: principal.method.to_string(),
            client: conn.map(|c| c.remote.to_string()).unwrap_or_default(),
            policies: decision.reasons.clone(),
            errors: decision.errors.clone(),
        },
    };
    let prepared = match event.prepare("server", jiff::Timestamp::now()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot record a denial");
            return;
        }
    };
    if let Err(e) = state.sequencer.submit(
        vec![prepared],
        Box::new(|result| {
            if let Err(e) = result {
                tracing::error!(error = %e, "recording a denial failed");
            }
        }),
    ) {
        // A full queue must not turn a 403 into a 503; the metric counts it.
        state.metrics.error("denial_not_recorded");
        tracing::warn!(error = %e, "denial not recorded (queue full)");
    }
}
