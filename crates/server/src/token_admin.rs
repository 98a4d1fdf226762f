//! Token administration over HTTP, for a running server (which holds the
//! log, so `stele token create|revoke` cannot append while it runs):
//!
//! - `POST   /v1/tokens` (`token.create`) — `{"principal", "roles",
//!   "expires"?, "streams"?}`; 201 with the token text, shown once
//! - `GET    /v1/tokens` (`token.list`) — every record and its state
//! - `DELETE /v1/tokens/{id}` (`token.revoke`) — revokes it
//!
//! Each is authorized by the access policy on the log as a whole, and each
//! change goes through [`stele_log::Log::create_token`] /
//! [`stele_log::Log::revoke_token`]: the event is durable before the file
//! changes, and a refused request changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};
use stele_log::sequencer::lock_log;
use stele_log::tokens::{Role, TokenEntry, TokenSpec, parse_expiry, read_token_file};
use stele_policy::{Action, Resource};

use crate::admin::{Conn, who};
use crate::api::{ApiError, ApiResult, AppState, blocking, log_error, path_param, read_body};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_token_request", message)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    principal: String,
    roles: Vec<String>,
    /// A duration from now (`30d`, `12h`) or an RFC 3339 time.
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    streams: Option<Vec<String>>,
}

/// A record as the API shows it (never the secret's hash).
fn record_json(entry: &TokenEntry, now: jiff::Timestamp) -> Value {
    let state = if entry.revoked_event.is_some() || entry.revoked_at.is_some() {
        "revoked"
    } else if entry.expired(now) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": entry.id,
        "principal": entry.principal,
        "roles": entry.roles,
        "expires_at": entry.expires_at,
        "streams": entry.streams,
        "created_at": entry.created_at,
        "created_by": entry.created_by,
        "created_event": entry.created_event,
        "revoked_at": entry.revoked_at,
        "revoked_by": entry.revoked_by,
        "revoked_event": entry.revoked_event,
        "state": state,
    })
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::TokenCreate, Resource::Log).await?;
    let (bytes, _permit) = read_body(&state, &headers, body).await?;
    let body: CreateBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let now = jiff::Timestamp::now();
    let roles = body
        .roles
        .iter()
        .map(|r| Role::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let expires_at = body
        .expires
        .as_deref()
        .map(|text| parse_expiry(text, now))
        .transpose()
        .map_err(invalid)?;
    let spec = TokenSpec {
        principal: body.principal,
        roles,
        expires_at,
        streams: body.streams,
    };
    let work = state.clone();
    let created = blocking(move || {
        lock_log(&work.log)
            .governance()
            .create_token(&spec, &principal.name, now)
            .map_err(|e| match e {
                stele_log::LogError::Usage(message) => invalid(message),
                stele_log::LogError::Event(e) => invalid(e.to_string()),
                other => log_error(other),
            })
    })
    .await?;
    state.tokens.forget(&created.entry.id);
    let mut out = record_json(&created.entry, now);
    out["token"] = Value::from(created.text);
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::TokenList, Resource::Log).await?;
    let data = state.config.data.clone();
    let file = blocking(move || read_token_file(&data).map_err(log_error)).await?;
    let now = jiff::Timestamp::now();
    let tokens: Vec<Value> = file.tokens.iter().map(|t| record_json(t, now)).collect();
    Ok(axum::Json(json!({ "tokens": tokens })).into_response())
}

async fn revoke_token(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::TokenRevoke, Resource::Log).await?;
    let id = path_param("id", id)?;
    let work = state.clone();
    let target = id.clone();
    let entry = blocking(move || {
        lock_log(&work.log)
            .governance()
            .revoke_token(&target, &principal.name, jiff::Timestamp::now())
            .map_err(log_error)
    })
    .await?;
    state.tokens.forget(&id);
    Ok(axum::Json(record_json(&entry, jiff::Timestamp::now())).into_response())
}
