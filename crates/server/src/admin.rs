//! Policy, legal holds, retention, audits and export over HTTP. Every
//! endpoint authenticates, asks the access policy, and goes through the
//! log's governance calls, which record each change as a system event.
//!
//! - `GET  /v1/policy` (`policy.read`) — the active policy and every version
//! - `PUT  /v1/policy` (`policy.apply`) — `{"toml": "...", "cedar": "...",
//!   "allow_lockout": false}`; 409 `lockout` for a policy under which the
//!   local operator could no longer apply one (as `stele policy apply`)
//! - `GET  /v1/holds` (`hold.list`), `POST /v1/holds` (`hold.add`),
//!   `POST /v1/holds/{id}/release` (`hold.release`)
//! - `GET  /v1/retention` (`policy.read`) — every stored epoch, its purge
//!   time and holds
//! - `POST /v1/retention/purge` (`retention.run`) — `{"stream", "epoch"}`:
//!   purges that epoch if (and only if) it is due; otherwise 409, recorded
//! - `POST /v1/retention/run` (`retention.run`) — purges everything due now
//! - `GET  /v1/audit/latest` (`audit.report`), `POST /v1/audit/run`
//!   (`audit.run`) — the latest attestation, or a new one now
//! - `GET  /v1/keys` (`audit.report`) — the key-encryption key's number,
//!   kind, age and the policy's maximum; `POST /v1/keys/rotate`
//!   (`key.rotate`) — a new random KEK, every data key re-wrapped, recorded
//!   as `key.rotated` (a passphrase-protected log is rotated offline with
//!   `stele keys rotate`)
//! - `GET  /v1/export?stream=S&from=I&to=J` (`export`) — NDJSON of the
//!   stream's events in `[from, to)`, recorded as an `events.exported`
//!   system event before any content is sent
//! - `GET  /v1/query?stream=S&from=I[&to=J][&actor=…][&action=…]
//!   [&resource=…][&outcome=…][&limit=N]` (`query`) — the stream's events
//!   in `[from, to)` whose fields equal every filter given, at most `limit`,
//!   recorded as an `events.queried` system event before any is sent

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use stele_log::audit::AuditFacts;
use stele_log::governance::HoldSpec;
use stele_log::sequencer::lock_log;
use stele_log::system_event::{EventsExported, EventsQueried};
use stele_log::{LogError, SystemEvent};
use stele_policy::{Action, Policy, PolicySource, Resource};

use crate::access::authorize;
use crate::api::{
    ApiError, ApiResult, AppState, ConnInfo, authenticate, blocking, log_error, path_param,
    read_body,
};
use crate::governance::{SchedulerContext, attest};
use crate::tokens::Principal;

use stele_log::scan::{self, DEFAULT_QUERY_RESULTS, Filters};
pub use stele_log::scan::{MAX_EXPORT_RANGE, MAX_QUERY_RESULTS};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/policy", get(get_policy).put(put_policy))
        .route("/v1/holds", get(list_holds).post(add_hold))
        .route("/v1/holds/{id}/release", post(release_hold))
        .route("/v1/retention", get(retention_status))
        .route("/v1/retention/purge", post(purge_epoch))
        .route("/v1/retention/run", post(run_retention))
        .route("/v1/audit/latest", get(latest_attestation))
        .route("/v1/audit/run", post(run_audit))
        .route("/v1/keys", get(key_info))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/export", get(export))
        .route("/v1/query", get(search))
}

pub(crate) type Conn = Option<axum::Extension<ConnInfo>>;

/// Authenticates the caller and authorizes `action` on `resource`.
pub(crate) async fn who(
    state: &AppState,
    headers: &HeaderMap,
    conn: &Conn,
    action: Action,
    resource: Resource<'_>,
) -> ApiResult<Principal> {
    let principal = authenticate(state, headers, conn.as_deref()).await?;
    authorize(state, &principal, conn.as_deref(), action, resource)?;
    Ok(principal)
}

fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<T> {
    let (bytes, _permit) = read_body(state, headers, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| bad_request("invalid_json", e.to_string()))
}

async fn get_policy(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::PolicyRead, Resource::Log).await?;
    let policy = state.governance.policy();
    let work_state = state.clone();
    let versions: Vec<Value> = blocking(move || {
        Ok(work_state
            .reader
            .policy_versions()
            .iter()
            .map(|v| {
                json!({
                    "seq": v.seq,
                    "hash": v.hash,
                    "activated_at": stele_event::time::timestamp_text(v.activated_at),
                    "applied_by": v.applied_by,
                    "event_index": v.event_index,
                })
            })
            .collect())
    })
    .await?;
    let source = policy.source();
    Ok(axum::Json(json!({
        "hash": state.governance.policy_hash(),
        "toml": source.toml,
        "cedar": source.cedar,
        "versions": versions,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    toml: String,
    #[serde(default)]
    cedar: Option<String>,
    /// Apply even if, under the new policy, the local operator (the CLI on
    /// this machine) may no longer apply a policy.
    #[serde(default)]
    allow_lockout: bool,
}

async fn put_policy(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::PolicyApply, Resource::Log).await?;
    let body: PolicyBody = json_body(&state, &headers, body).await?;
    let source = PolicySource {
        toml_name: "policy.toml".into(),
        toml: body.toml,
        cedar_name: body.cedar.as_ref().map(|_| "access.cedar".to_string()),
        cedar: body.cedar,
    };
    let policy = Policy::from_source(&source)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", e.to_string()))?;
    // The check `stele policy apply` makes: the operator of this machine
    // (the user the server runs as) must still be able to change it.
    let operator = stele_log::operator::local_principal();
    if let Err(why) = stele_log::operator::check_lockout(&policy, &operator, jiff::Timestamp::now())
        && !body.allow_lockout
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lockout",
            format!(
                "policy not applied: {why}. Add `[operators] local_roles` that may \
                 policy.apply, or send \"allow_lockout\": true"
            ),
        ));
    }
    let outcome = blocking(move || {
        state
            .governance
            .apply(&state.log, &state.config, policy, &principal.name)
            .map_err(log_error)
    })
    .await?;
    Ok(axum::Json(json!({
        "applied": outcome.seq.is_some(),
        "seq": outcome.seq,
        "hash": outcome.hash,
        "event_index": outcome.event_index,
        "changes": outcome.changes,
    }))
    .into_response())
}

async fn list_holds(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::HoldList, Resource::Log).await?;
    let holds = state.reader.holds();
    Ok(axum::Json(json!({ "holds": holds })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    #[serde(default)]
    streams: Vec<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    reason: String,
}

async fn add_hold(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let body: HoldBody = json_body(&state, &headers, body).await?;
    // A hold on named streams needs the permission on each; a hold on
    // every stream needs it on the log.
    if body.streams.is_empty() {
        authorize(
            &state,
            &principal,
            conn.as_deref(),
            Action::HoldAdd,
            Resource::Log,
        )?;
    }
    for stream in &body.streams {
        authorize(
            &state,
            &principal,
            conn.as_deref(),
            Action::HoldAdd,
            Resource::Stream(stream),
        )?;
    }
    let hold = blocking(move || {
        lock_log(&state.log)
            .governance()
            .add_hold(
                HoldSpec {
                    streams: body.streams,
                    from: body.from,
                    to: body.to,
                    reason: body.reason,
                },
                &principal.name,
                jiff::Timestamp::now(),
            )
            .map_err(|e| match e {
                LogError::Usage(m) | LogError::Refused(m) => bad_request("invalid_hold", m),
                LogError::Event(e) => bad_request("invalid_hold", e.to_string()),
                other => log_error(other),
            })
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "hold": hold }))).into_response())
}

async fn release_hold(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::HoldRelease, Resource::Log).await?;
    let id = path_param("id", id)?;
    let hold = blocking(move || {
        lock_log(&state.log)
            .governance()
            .release_hold(&id, &principal.name, jiff::Timestamp::now())
            .map_err(log_error)
    })
    .await?;
    Ok(axum::Json(json!({ "hold": hold })).into_response())
}

async fn retention_status(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::PolicyRead, Resource::Log).await?;
    let now = jiff::Timestamp::now();
    let report = blocking(move || Ok(state.reader.retention_report(now))).await?;
    Ok(axum::Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    stream: String,
    /// `YYYY-MM-DD`.
    epoch: String,
}

async fn purge_epoch(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::RetentionRun, Resource::Log).await?;
    let body: PurgeBody = json_body(&state, &headers, body).await?;
    let day = body
        .epoch
        .parse::<stele_event::time::Day>()
        .map_err(|e| bad_request("invalid_epoch", e.to_string()))?;
    let tombstone = blocking(move || {
        lock_log(&state.log)
            .governance()
            .purge_epoch(&body.stream, day, &principal.name, jiff::Timestamp::now())
            .map_err(log_error)
    })
    .await?;
    Ok(axum::Json(json!({ "purged": tombstone })).into_response())
}

async fn run_retention(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::RetentionRun, Resource::Log).await?;
    let purged = blocking(move || {
        lock_log(&state.log)
            .governance()
            .enforce_retention(&principal.name, jiff::Timestamp::now())
            .map_err(log_error)
    })
    .await?;
    Ok(axum::Json(json!({ "purged": purged })).into_response())
}

async fn latest_attestation(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::AuditReport, Resource::Log).await?;
    let data = state.config.data.clone();
    let latest =
        blocking(move || stele_log::audit::latest_attestation(&data).map_err(log_error)).await?;
    match latest {
        Some(attestation) => Ok(axum::Json(attestation).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no attestation has been made yet",
        )),
    }
}

async fn run_audit(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::AuditRun, Resource::Log).await?;
    let attestation = blocking(move || {
        let context = SchedulerContext::new(
            state.log.clone(),
            state.reader.clone(),
            state.governance.clone(),
            &state.config,
        );
        let facts = AuditFacts {
            listeners: Some(context.listeners.clone()),
            enforced_policy: Some(state.governance.policy_hash()),
        };
        attest(&context, &facts, &principal.name, jiff::Timestamp::now()).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_failed",
                "the attestation could not be made; see the server log",
            )
        })
    })
    .await?;
    Ok(axum::Json(attestation).into_response())
}

fn kek_json(info: &stele_log::KekInfo, max_age: Option<std::time::Duration>, now: i64) -> Value {
    let age_days = (now - info.created_at).max(0) / 86_400;
    let max_days = max_age.map(|d| d.as_secs() as i64 / 86_400);
    json!({
        "number": info.number,
        "kind": info.kind.as_str(),
        "created_at": stele_event::time::timestamp_text(info.created_at),
        "age_days": age_days,
        "max_age_days": max_days,
        "within_policy": max_age.is_none_or(|max| now - info.created_at <= max.as_secs() as i64),
    })
}

async fn key_info(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who(&state, &headers, &conn, Action::AuditReport, Resource::Log).await?;
    let now = jiff::Timestamp::now().as_second();
    let max_age = state.governance.policy().keys().max_kek_age;
    let (info, data_keys) = blocking(move || {
        let info = state.reader.kek_info().map_err(log_error)?;
        let data_keys = state.reader.data_key_ages().map_err(log_error)?.len();
        Ok((info, data_keys))
    })
    .await?;
    Ok(axum::Json(json!({
        "kek": kek_json(&info, max_age, now),
        "data_keys": data_keys,
    }))
    .into_response())
}

async fn rotate_keys(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = who(&state, &headers, &conn, Action::KeyRotate, Resource::Log).await?;
    let max_age = state.governance.policy().keys().max_kek_age;
    let info = blocking(move || {
        let mut log = lock_log(&state.log);
        let current = log.reader().kek_info().map_err(log_error)?;
        if current.kind == stele_log::KekKind::Passphrase {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "refused",
                "this log's key-encryption key is derived from a passphrase; rotate it offline with `stele keys rotate --passphrase` (the server stopped)",
            ));
        }
        log.governance().rotate_kek_as(
            stele_log::NewKek::Random,
            &principal.name,
            jiff::Timestamp::now(),
        )
        .map_err(log_error)
    })
    .await?;
    let now = jiff::Timestamp::now().as_second();
    Ok(axum::Json(json!({ "kek": kek_json(&info, max_age, now) })).into_response())
}

/// Authorizes `action` on `stream` (export, query) and returns the peer's
/// address, which the system event records. A name that is not a stream
/// name (`../x`) is refused first, as a bad query.
fn authorize_stream(
    state: &AppState,
    principal: &Principal,
    conn: &Conn,
    action: Action,
    stream: &str,
) -> ApiResult<String> {
    scan::check_stream(stream).map_err(|e| {
        bad_request(
            "invalid_query",
            format!("query parameter stream {stream:?}: {e}"),
        )
        .with_field("stream")
    })?;
    authorize(
        state,
        principal,
        conn.as_deref(),
        action,
        Resource::Stream(stream),
    )?;
    Ok(conn
        .as_ref()
        .map(|c| c.remote.to_string())
        .unwrap_or_default())
}

/// The end of the range `[from, to)` an export or query covers.
fn scan_range(log: &stele_log::LogReader, from: u64, to: Option<u64>) -> ApiResult<u64> {
    scan::range_end(log.size(), from, to).map_err(|e| bad_request("invalid_query", e))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    stream: String,
    from: u64,
    to: Option<u64>,
}

async fn export(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    // Who asks comes first: without credentials the answer is 401 whatever
    // the query says.
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let Query(query) = query
        .map_err(|e| bad_request("invalid_query", format!("{e}; use ?stream=S&from=I&to=J")))?;
    let client = authorize_stream(&state, &principal, &conn, Action::Export, &query.stream)?;
    let body = blocking(move || {
        let to = scan_range(&state.reader, query.from, query.to)?;
        let export =
            scan::export(&state.reader, &query.stream, query.from, to).map_err(log_error)?;
        // The export is recorded durably before any content leaves.
        let event = SystemEvent::EventsExported {
            actor: principal.name.clone(),
            attributes: EventsExported {
                stream: query.stream.clone(),
                from: query.from,
                to,
                exported: export.exported,
                purged: export.purged,
                method: principal.method.to_string(),
                client,
            },
        };
        lock_log(&state.log)
            .writer()
            .append_system(&event, jiff::Timestamp::now())
            .map_err(log_error)?;
        Ok(export.ndjson)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    stream: String,
    from: u64,
    to: Option<u64>,
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

impl SearchQuery {
    fn limit(&self) -> ApiResult<usize> {
        let limit = self.limit.unwrap_or(DEFAULT_QUERY_RESULTS);
        if limit == 0 || limit > MAX_QUERY_RESULTS {
            return Err(bad_request(
                "invalid_query",
                format!("limit must be 1 to {MAX_QUERY_RESULTS}"),
            ));
        }
        Ok(limit)
    }

    fn filters(&self) -> ApiResult<Filters> {
        let time = |name: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| scan::parse_time(name, t))
                .transpose()
                .map_err(|e| bad_request("invalid_query", e))
        };
        Ok(Filters {
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            outcome: self.outcome.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }
}

/// Reads the query string of `GET /v1/export` (`search` false) or
/// `GET /v1/query` (`search` true) as its handler does before it needs
/// the log. Public only for the fuzz targets.
#[doc(hidden)]
pub fn check_scan_query(search: bool, uri: &axum::http::Uri) -> ApiResult<()> {
    let invalid =
        |e: axum::extract::rejection::QueryRejection| bad_request("invalid_query", e.to_string());
    if search {
        let Query(query) = Query::<SearchQuery>::try_from_uri(uri).map_err(invalid)?;
        query.limit()?;
        query.filters()?;
    } else {
        Query::<ExportQuery>::try_from_uri(uri).map_err(invalid)?;
    }
    Ok(())
}

/// `GET /v1/query`: the events of one stream in a range whose fields equal
/// the filters given. Scans at most [`MAX_EXPORT_RANGE`] entries and returns
/// at most `limit` events; `next` says where to resume when the limit cut
/// the scan short (else `null`). Purged entries are counted, not returned.
async fn search(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let Query(query) = query.map_err(|e| {
        bad_request(
            "invalid_query",
            format!(
                "{e}; use ?stream=S&from=I[&to=J][&actor=A][&action=X][&resource=R][&outcome=O][&since=T][&until=T][&limit=N]"
            ),
        )
    })?;
    let limit = query.limit()?;
    let filters = query.filters()?;
    let client = authorize_stream(&state, &principal, &conn, Action::Query, &query.stream)?;
    let body = blocking(move || {
        let to = scan_range(&state.reader, query.from, query.to)?;
        let found = scan::query(
            &state.reader,
            &query.stream,
            query.from,
            to,
            &filters,
            limit,
        )
        .map_err(log_error)?;
        // The query is recorded durably before any content leaves.
        let event = SystemEvent::EventsQueried {
            actor: principal.name.clone(),
            attributes: EventsQueried {
                stream: query.stream.clone(),
                from: query.from,
                to: found.scanned_to,
                filters: filters.to_json(),
                matched: found.events.len() as u64,
                purged: found.purged,
                method: principal.method.to_string(),
                client,
            },
        };
        lock_log(&state.log)
            .writer()
            .append_system(&event, jiff::Timestamp::now())
            .map_err(log_error)?;
        Ok(scan::found_json(query.from, to, found))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}
