//! The HTTP API: one router built by [`app`], handlers, and the mapping of
//! every failure to a status code and a JSON error naming the problem.
//!
//! Writes are acknowledged only after the sequencer reports them durable;
//! a full queue answers 503 with Retry-After. Reads of event content are
//! themselves appended to the `_system` stream before the content is sent.
//! Public tlog-tiles data (checkpoint, tiles, proofs) needs no credentials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use stele_ingest::{BodyLimits, IngestError};
use stele_log::sequencer::{SequencerHandle, SequencerMetrics, SubmitError, lock_log};
use stele_log::system_event::EventRead;
use stele_log::{Log, LogError, LogReader, PreparedEvent, Preparer, Receipt, SystemEvent};

use crate::access::authorize;
use crate::config::Config;
use crate::governance::Governance;
use crate::metrics::{self, HttpMetrics};
use crate::tokens::{Principal, TokenStore};
use stele_log::EntryIndex;
use stele_policy::{Action, Resource};

/// What a connection tells the handlers about its peer.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// SHA-256 fingerprint of the verified client certificate, if any.
    pub client_cert: Option<String>,
}

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// The writer: appends go through the sequencer; governance and
    /// token changes lock it.
    pub log: Arc<Mutex<Log>>,
    /// Every read (events, proofs, checkpoints, scans, verification),
    /// without the writer's lock.
    pub reader: LogReader,
    pub sequencer: SequencerHandle,
    pub seq_metrics: Arc<SequencerMetrics>,
    /// Flush latencies of the log's commit threads.
    pub fsync_metrics: Arc<stele_log::FsyncMetrics>,
    pub tokens: TokenStore,
    /// Failed authentications, counted and sampled into the log.
    pub auth_failures: crate::authlog::AuthFailures,
    pub config: Config,
    pub metrics: HttpMetrics,
    /// The public tlog-tiles tree (`DATA/log`).
    pub public: PathBuf,
    /// Client certificate fingerprint → principal.
    pub cert_principals: HashMap<String, Principal>,
    /// False while starting and once shutting down.
    pub ready: AtomicBool,
    /// Bytes of request bodies that may be in memory at once.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// The policy in force and audit results.
    pub governance: Arc<Governance>,
}

/// An error response: status, stable code, message, and where in the
/// request the problem is.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    item: Option<usize>,
    line: Option<usize>,
    field: Option<String>,
    retry_after: Option<u32>,
    /// The purge record, for an event purged by retention.
    purge: Option<Box<Value>>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            item: None,
            line: None,
            field: None,
            retry_after: None,
            purge: None,
        }
    }

    /// The same error, naming the request field or parameter at fault.
    pub(crate) fn with_field(self, name: &str) -> ApiError {
        ApiError {
            field: Some(name.to_owned()),
            ..self
        }
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let status = match e.code() {
            "body_too_large" | "too_many_events" | "event_too_large" => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            "unsupported_content_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            item: e.item(),
            line: e.line(),
            field: e.field().map(str::to_string),
            retry_after: None,
            purge: None,
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the append queue is full; retry later",
                )
            },
            SubmitError::Stopped => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the log writer is stopping",
                )
            },
            SubmitError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!("{e}; split the request"),
            ),
            // A batch the log refused without failing (it stays writable):
            // the request itself is at fault, not the server.
            SubmitError::Log(LogError::Usage(message)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            SubmitError::Log(e) => log_error(e),
        }
    }
}

pub(crate) fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::NotFound(message) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
        LogError::Usage(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        LogError::Internal(message) => {
            tracing::error!(error = %message, "internal fault");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
        LogError::Refused(message) => ApiError::new(StatusCode::CONFLICT, "refused", message),
        behind @ LogError::IndexBehind { .. } => ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "index_building",
                behind.to_string(),
            )
        },
        purged @ LogError::Purged { .. } => {
            ApiError::new(StatusCode::GONE, "purged", purged.to_string())
        }
        LogError::Event(e) => ApiError {
            field: e.field().map(str::to_string),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
        },
        other => {
            // The log itself failed (I/O, integrity): this is the server's
            // fault, and the writer has stopped; say so plainly.
            tracing::error!(error = %other, "log failure");
            ApiError {
                retry_after: Some(30),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log_unavailable",
                    other.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(item) = self.item {
            error["item"] = json!(item);
        }
        if let Some(line) = self.line {
            error["line"] = json!(line);
        }
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        if let Some(purge) = self.purge {
            error["purge"] = *purge;
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Builds the router over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/proof/consistency", get(consistency))
        .route("/v1/events", post(post_events))
        .route("/v1/events/{index}", get(get_event))
        .route("/v1/ingest/kubernetes", post(post_kubernetes))
        .merge(crate::admin::routes())
        .merge(crate::token_admin::routes())
        .merge(crate::search::routes())
        // Set after every route: the 405 fallback applies to the routes
        // registered before it.
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// A path no route serves: a JSON 404 like every other error.
async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint at {}; see /openapi.json", uri.path()),
    )
}

/// A served path asked with a method it does not take: a JSON 405 (the
/// router adds the `Allow` header listing the methods it takes).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A path parameter as text, or a JSON 400 naming it when the path
/// segment does not decode (invalid percent-encoding or UTF-8).
pub(crate) fn path_param(
    name: &'static str,
    extracted: Result<Path<String>, PathRejection>,
) -> ApiResult<String> {
    extracted.map(|Path(value)| value).map_err(|e| ApiError {
        field: Some(name.into()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("path parameter {name}: {}", e.body_text()),
        )
    })
}

/// Counts every response and logs it: refusals and failures at info or
/// warn level (structured fields), successes at debug level.
async fn count_responses(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.response(status);
    let micros = started.elapsed().as_micros() as u64;
    match status {
        500.. => tracing::warn!(%method, %path, status, micros, "request failed"),
        400.. => tracing::info!(%method, %path, status, micros, "request refused"),
        _ => tracing::debug!(%method, %path, status, micros, "request"),
    }
    response
}

/// Finds the caller: a bearer token if one is sent (a bad one is refused
/// even when a client certificate is present), else a mapped client
/// certificate. Every refusal (401) is counted and sampled into the log
/// (`authlog`).
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> ApiResult<Principal> {
    let client = conn.map(|c| c.remote.ip());
    let refuse = |reason: &'static str, token_id: Option<&str>, message: String| {
        state.metrics.error("auth");
        state.auth_failures.record(client, token_id, reason);
        ApiError::unauthorized(message)
    };
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(refuse(
            "bad_header",
            None,
            "more than one Authorization header: send exactly one".into(),
        ));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| {
            refuse(
                "bad_header",
                None,
                "the Authorization header is not text".into(),
            )
        })?;
        let token = text.strip_prefix("Bearer ").ok_or_else(|| {
            refuse(
                "bad_header",
                None,
                "use `Authorization: Bearer <token>`".into(),
            )
        })?;
        return match state.tokens.authenticate(&state.log, token.trim()).await {
            Ok(Ok(principal)) => Ok(principal),
            Ok(Err(refused)) => Err(refuse(
                refused.reason.as_str(),
                refused.token_id.as_deref(),
                refused.reason.message().into(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "token store unreadable");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token_store",
                    "the token store cannot be read",
                ))
            }
        };
    }
    if let Some(fingerprint) = conn.and_then(|c| c.client_cert.as_ref()) {
        return match state.cert_principals.get(fingerprint) {
            Some(principal) => Ok(principal.clone()),
            None => Err(refuse(
                "unmapped_certificate",
                None,
                format!("client certificate {fingerprint} is not mapped to a principal"),
            )),
        };
    }
    Err(refuse(
        "no_credentials",
        None,
        "no credentials: send a bearer token or a client certificate".into(),
    ))
}

/// Reads a request body within the size limit and the server-wide memory
/// budget; the returned permit holds its share of the budget until dropped.
pub(crate) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(Bytes, tokio::sync::OwnedSemaphorePermit)> {
    check_content_encoding(state, headers)?;
    let limit = state.config.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds the {limit}-byte limit (or was cut off)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let share = declared.unwrap_or(limit).clamp(1, limit) as u32;
    let permit = state
        .body_budget
        .clone()
        .try_acquire_many_owned(share)
        .map_err(|_| {
            state.metrics.error("overload");
            ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many request bodies in memory; retry later",
                )
            }
        })?;
    // A body longer than it declared is cut at the declared share. A
    // client that stops sending it is answered 408 once the deadline
    // passes, which frees its share of the budget and its connection.
    let seconds = state.config.timeouts.body_read_seconds;
    let read = axum::body::to_bytes(body, share as usize);
    let bytes = match tokio::time::timeout(Duration::from_secs(seconds), read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
        Ok(Err(e)) => {
            state.metrics.error("input");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!(
                    "the request body could not be read ({e}): broken chunked framing, or the connection ended before the declared Content-Length"
                ),
            ));
        }
        Err(_) => {
            state.metrics.error("body_timeout");
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {seconds} s"),
            ));
        }
    };
    Ok((bytes, permit))
}

/// Refuses a body sent with a `Content-Encoding` other than `identity`
/// (415, RFC 9110 §15.5.16): bodies are parsed as sent, and a compressed
/// one would otherwise be refused as malformed JSON, misleadingly.
fn check_content_encoding(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let identity = value.to_str().is_ok_and(|text| {
            text.split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        });
        if !identity {
            state.metrics.error("input");
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                format!(
                    "Content-Encoding {:?} is not supported: send the body uncompressed \
                     (identity)",
                    String::from_utf8_lossy(value.as_bytes())
                ),
            ));
        }
    }
    Ok(())
}

/// Whether reading a body failed on its size limit (rather than on its
/// framing or the connection).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The request's Content-Type: `None` when absent; a value that is not
/// visible ASCII is refused as such (not reported as missing).
fn content_type<'h>(state: &AppState, headers: &'h HeaderMap) -> ApiResult<Option<&'h str>> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(text) => Ok(Some(text)),
            Err(_) => {
                state.metrics.error("input");
                Err(stele_ingest::IngestError::UnsupportedContentType(
                    "(a value that is not visible ASCII)".to_owned(),
                )
                .into())
            }
        },
    }
}

fn body_limits(state: &AppState) -> BodyLimits {
    BodyLimits {
        max_body_bytes: state.config.limits.max_body_bytes,
        max_events: state.config.limits.max_events_per_request,
        event: stele_event::Limits::default(),
    }
}

/// The `{"receipts": [...]}` response, written straight into its bytes
/// (each receipt by [`stele_log::receipt_json`], as `stele append` prints
/// it).
fn receipts_response(receipts: &[Receipt]) -> Response {
    let mut body = Vec::with_capacity(16 + receipts.len() * 200);
    body.extend_from_slice(b"{\"receipts\":[");
    for (n, receipt) in receipts.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        stele_log::receipt_json::write_receipt(receipt, &mut body);
    }
    body.extend_from_slice(b"]}");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Runs blocking work (parsing, fsync waits) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a worker failed",
        )
    })?
}

/// Bodies up to this size are parsed on the async worker itself; larger
/// ones on the blocking pool, so a big batch never stalls other requests.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// Parses and prepares the events of a `/v1/events` body, all or nothing.
fn prepare_events(
    state: &AppState,
    principal: &Principal,
    kind: stele_ingest::BodyKind,
    bytes: &[u8],
) -> ApiResult<(Vec<PreparedEvent>, u64)> {
    let parsed = stele_ingest::parse_body(kind, bytes, &body_limits(state))
        .inspect_err(|_| state.metrics.error("input"))?;
    let preparer =
        Preparer::new(&principal.name, "http", "default").with_policy(state.governance.policy());
    let now = jiff::Timestamp::now();
    let mut events = Vec::with_capacity(parsed.len());
    let mut raw_bytes = 0u64;
    for (raw, event) in parsed {
        raw_bytes += raw.bytes.len() as u64;
        let prepared = preparer
            .prepare_parsed(event, raw.bytes, now)
            .map_err(|e| ApiError {
                item: Some(raw.item),
                line: raw.line,
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    if matches!(e, stele_log::prepare::PrepareError::Route(_)) {
                        "unknown_stream"
                    } else {
                        "invalid_event"
                    },
                    format!("event {}: {e}", raw.item),
                )
            })?;
        events.push(prepared);
    }
    Ok((events, raw_bytes))
}

/// Queues events for the writer and waits, without holding a thread, until
/// they are durable.
async fn append_durably(
    state: &AppState,
    events: Vec<PreparedEvent>,
    raw_bytes: u64,
) -> ApiResult<Vec<Receipt>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .sequencer
        .submit(
            events,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )
        .map_err(|e| {
            state.metrics.error("append");
            ApiError::from(e)
        })?;
    let receipts = rx
        .await
        .map_err(|_| ApiError::from(SubmitError::Stopped))?
        .map_err(|e| {
            state.metrics.error("append");
            ApiError::from(SubmitError::Log(e))
        })?;
    let fresh = receipts.iter().filter(|r| !r.duplicate).count() as u64;
    state.metrics.events_ingested.fetch_add(fresh, Relaxed);
    state
        .metrics
        .duplicates
        .fetch_add(receipts.len() as u64 - fresh, Relaxed);
    state.metrics.bytes_ingested.fetch_add(raw_bytes, Relaxed);
    Ok(receipts)
}

async fn post_events(
    State(state): State<Arc<AppState>>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    authorize_some_append(&state, &principal, conn.as_deref())?;
    let content_type = content_type(&state, &headers)?;
    let kind =
        stele_ingest::body_kind(content_type).inspect_err(|_| state.metrics.error("input"))?;
    let (bytes, _permit) = read_body(&state, &headers, body).await?;
    let (events, raw_bytes) = if bytes.len() <= INLINE_PARSE_BYTES {
        prepare_events(&state, &principal, kind, &bytes)?
    } else {
        let work_state = state.clone();
        let work_bytes = bytes.clone();
        let work_principal = principal.clone();
        blocking(move || prepare_events(&work_state, &work_principal, kind, &work_bytes)).await?
    };
    drop(bytes);
    authorize_appends(&state, &principal, conn.as_deref(), &events)?;
    let receipts = append_durably(&state, events, raw_bytes).await?;
    Ok(receipts_response(&receipts))
}

async fn post_kubernetes(
    State(state): State<Arc<AppState>>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    authorize_some_append(&state, &principal, conn.as_deref())?;
    // kube-apiserver sends `application/json`; anything else is not an
    // EventList from it.
    let content_type = content_type(&state, &headers)?;
    match stele_ingest::body_kind(content_type) {
        Ok(stele_ingest::BodyKind::Json) => {}
        _ => {
            state.metrics.error("input");
            return Err(stele_ingest::IngestError::UnsupportedContentType(
                content_type.unwrap_or_default().to_owned(),
            )
            .into());
        }
    }
    let (bytes, _permit) = read_body(&state, &headers, body).await?;
    let work_state = state.clone();
    let work_principal = principal.clone();
    let (events, raw_bytes) = blocking(move || {
        let state = work_state;
        let principal = work_principal;
        let items = stele_ingest::kubernetes::parse_event_list(&bytes, &body_limits(&state))
            .inspect_err(|_| state.metrics.error("input"))?;
        let preparer = Preparer::new(&principal.name, "kubernetes", "default")
            .with_policy(state.governance.policy());
        let now = jiff::Timestamp::now();
        let mut events = Vec::with_capacity(items.len());
        let mut raw_bytes = 0u64;
        for (item, k8s) in items.into_iter().enumerate() {
            raw_bytes += k8s.raw.len() as u64;
            let prepared = preparer
                .prepare_parsed(k8s.event, k8s.raw, now)
                .map_err(|e| ApiError {
                    item: Some(item),
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        if matches!(e, stele_log::prepare::PrepareError::Route(_)) {
                            "unknown_stream"
                        } else {
                            "invalid_event"
                        },
                        format!("item {item}: {e}"),
                    )
                })?;
            events.push(prepared);
        }
        Ok((events, raw_bytes))
    })
    .await?;
    authorize_appends(&state, &principal, conn.as_deref(), &events)?;
    let receipts = append_durably(&state, events, raw_bytes).await?;
    Ok(receipts_response(&receipts))
}

/// Before a body is read: a principal that may append to no declared
/// stream (nor to any stream its token is scoped to) is refused at once
/// (403, recorded), whatever the body holds.
fn authorize_some_append(
    state: &AppState,
    principal: &Principal,
    conn: Option<&ConnInfo>,
) -> ApiResult<()> {
    let policy = state.governance.policy();
    let scoped = principal.streams.iter().flatten().map(String::as_str);
    let checked = policy.check_some_append(scoped, |stream| {
        crate::access::decide(
            state,
            principal,
            conn,
            Action::Append,
            Resource::Stream(stream),
        )
        .allowed
    });
    match checked {
        Ok(()) => Ok(()),
        Err(default_stream) => authorize(
            state,
            principal,
            conn,
            Action::Append,
            Resource::Stream(default_stream),
        ),
    }
}

/// Every stream a request appends to must allow the principal to append.
fn authorize_appends(
    state: &AppState,
    principal: &Principal,
    conn: Option<&ConnInfo>,
    events: &[PreparedEvent],
) -> ApiResult<()> {
    let mut streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    for stream in streams {
        authorize(
            state,
            principal,
            conn,
            Action::Append,
            Resource::Stream(stream),
        )?;
    }
    Ok(())
}

/// Longest a read waits for a checkpoint covering its entry. One is asked
/// for at once; the publisher thread normally signs it within
/// milliseconds, so running out means the publisher is stuck or slow.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(15);

/// How often a waiting read looks for that checkpoint.
const CHECKPOINT_POLL: Duration = Duration::from_millis(10);

async fn get_event(
    State(state): State<Arc<AppState>>,
    index: Result<Path<String>, PathRejection>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let index = path_param("index", index)?;
    // Canonical decimal only: digits (`parse` would also take a leading
    // `+`), no leading zero, so that one entry has one URL.
    let canonical = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    let index: u64 = index
        .parse()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| ApiError {
            field: Some("index".into()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_index",
                format!(
                    "path parameter index: {index:?} is not an entry index (0 to 2^64-1 in \
                     decimal, without leading zeros)"
                ),
            )
        })?;
    let conn_info = conn.as_deref().cloned();
    let client = conn
        .as_deref()
        .map(|c| c.remote.to_string())
        .unwrap_or_default();
    // First the entry and the decision on the stream it is stored in: a
    // caller who may not read it gets nothing published, recorded as a
    // read or sent.
    let work_state = state.clone();
    let work_principal = principal.clone();
    let work_conn = conn_info.clone();
    let stored = blocking(move || {
        let state = work_state;
        let looked_up = {
            let log = &state.reader;
            if index >= log.size() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "entry {index} does not exist (the log has {} entries)",
                        log.size()
                    ),
                ));
            }
            log.get(EntryIndex(index))
        };
        match looked_up {
            Ok(stored) => {
                // Decided on the stream the event is stored in; the
                // content has not left the server.
                authorize(
                    &state,
                    &work_principal,
                    work_conn.as_ref(),
                    Action::Read,
                    Resource::Event {
                        stream: &stored.envelope.stream,
                        index,
                    },
                )?;
                Ok(stored)
            }
            Err(LogError::Purged { index, tombstone }) => {
                authorize(
                    &state,
                    &work_principal,
                    work_conn.as_ref(),
                    Action::Read,
                    Resource::Event {
                        stream: &tombstone.stream,
                        index,
                    },
                )?;
                Err(ApiError {
                    purge: Some(Box::new(
                        serde_json::to_value(&*tombstone).unwrap_or(Value::Null),
                    )),
                    ..log_error(LogError::Purged { index, tombstone })
                })
            }
            Err(e) => Err(log_error(e)),
        }
    })
    .await?;
    // The proof needs a checkpoint that covers the entry; waiting for it
    // holds neither the log nor a thread.
    wait_for_checkpoint(&state, index + 1).await?;
    let work_state = state.clone();
    let body = blocking(move || {
        let state = work_state;
        let proof = state
            .reader
            .inclusion_proof(EntryIndex(index), None)
            .map_err(log_error)?;
        // The read is audited durably before the content leaves.
        let audit = SystemEvent::EventRead {
            actor: principal.name.clone(),
            index,
            attributes: EventRead {
                method: principal.method.to_string(),
                client,
                stream: stored.envelope.stream.clone(),
            },
        };
        let prepared = audit
            .prepare("server", jiff::Timestamp::now())
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
        state.sequencer.append(vec![prepared])?;
        state.metrics.reads.fetch_add(1, Relaxed);
        Ok(json!({
            "index": index,
            "commitment": B64.encode(stored.commitment),
            "salt": B64.encode(stored.salt),
            "event": stored.envelope.to_json(),
            "proof": proof.encode(),
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// Waits until a published checkpoint covers `size` entries, asking the
/// publisher thread for one (without waiting under the log lock) while
/// none does. 503 + Retry-After when none comes within [`CHECKPOINT_WAIT`].
async fn wait_for_checkpoint(state: &Arc<AppState>, size: u64) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + CHECKPOINT_WAIT;
    loop {
        let work_state = state.clone();
        let published = blocking(move || {
            if work_state.reader.published_size() < size {
                // Only queues a checkpoint (a no-op when one covering the
                // log is already on its way); the publisher signs it.
                lock_log(&work_state.log)
                    .writer()
                    .publish_soon()
                    .map_err(log_error)?;
            }
            Ok(work_state.reader.published_size())
        })
        .await?;
        if published >= size {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "checkpoint_pending",
                    format!(
                        "no checkpoint covers entry {} yet (latest covers {published}); retry later",
                        size - 1
                    ),
                )
            });
        }
        tokio::time::sleep(CHECKPOINT_POLL).await;
    }
}

/// 400 `invalid_query` for a query string that does not parse, saying
/// what it should look like.
fn invalid_query(e: &axum::extract::rejection::QueryRejection, usage: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{e}; use {usage}"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

async fn consistency(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| invalid_query(&e, "?old=M&new=N"))?;
    let body = blocking(move || {
        let log = &state.reader;
        let new = query.new.unwrap_or_else(|| log.published_size());
        if query.old == 0 || query.old > new {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("need 0 < old <= new, got old={} new={new}", query.old),
            ));
        }
        let hashes = log
            .consistency_proof(query.old, Some(new))
            .map_err(log_error)?;
        Ok(json!({
            "old": query.old,
            "new": new,
            "proof": hashes.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// Checkpoints per `GET /v1/checkpoints` page unless `limit` says otherwise.
pub const DEFAULT_CHECKPOINTS_PAGE: usize = 100;
/// Most checkpoints one page may hold (a note is a few hundred bytes).
pub const MAX_CHECKPOINTS_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointsQuery {
    /// Number of the first checkpoint (0 is the empty tree's).
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

impl CheckpointsQuery {
    fn limit(&self) -> ApiResult<usize> {
        let limit = self.limit.unwrap_or(DEFAULT_CHECKPOINTS_PAGE);
        if limit == 0 || limit > MAX_CHECKPOINTS_PAGE {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("limit must be 1..={MAX_CHECKPOINTS_PAGE}, got {limit}"),
            ));
        }
        Ok(limit)
    }
}

/// Reads the query string of `GET /v1/proof/consistency` (`checkpoints`
/// false) or `GET /v1/checkpoints` (`checkpoints` true) as its handler
/// does before it needs the log. Public only for the fuzz targets.
#[doc(hidden)]
pub fn check_tree_query(checkpoints: bool, uri: &axum::http::Uri) -> ApiResult<()> {
    if checkpoints {
        let Query(query) = Query::<CheckpointsQuery>::try_from_uri(uri)
            .map_err(|e| invalid_query(&e, "?from=N&limit=L"))?;
        query.limit()?;
    } else {
        Query::<ConsistencyQuery>::try_from_uri(uri)
            .map_err(|e| invalid_query(&e, "?old=M&new=N"))?;
    }
    Ok(())
}

/// One page of the checkpoint history, oldest first, read from the
/// history file without holding the log; `next` is the `from` of the next
/// page, or null after the last checkpoint.
async fn checkpoints(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CheckpointsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| invalid_query(&e, "?from=N&limit=L"))?;
    let limit = query.limit()?;
    let body = blocking(move || {
        let history = state.reader.checkpoint_history();
        let count = history.count();
        let page = history.page(query.from, limit).map_err(log_error)?;
        let end = query.from.saturating_add(page.len() as u64);
        let list: Vec<Value> = page
            .iter()
            .map(|c| json!({"size": c.size, "note": String::from_utf8_lossy(&c.note)}))
            .collect();
        Ok(json!({
            "checkpoints": list,
            "count": count,
            "next": if end < count { Some(end) } else { None },
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn checkpoint(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let bytes = tokio::fs::read(state.public.join("checkpoint"))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log_unavailable",
                e.to_string(),
            )
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response())
}

async fn tile(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    // A path that does not even decode names no tile: 404 like any other.
    let path = path.map(|Path(path)| path).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("not a tile path: {}", e.body_text()),
        )
    })?;
    let full_path = format!("tile/{path}");
    let (_, id) = stele_tlog::TileId::parse_path(&full_path).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{full_path}: {e}"),
        )
    })?;
    // A pruned partial tile is served as the prefix of its full tile.
    let public = state.public.clone();
    let relative = full_path.clone();
    let read =
        tokio::task::spawn_blocking(move || stele_log::tiles::read_public_tile(&public, &relative))
            .await;
    let bytes = match read {
        Ok(Ok(Some(bytes))) => bytes,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{full_path} does not exist"),
            ));
        }
    };
    // A tile's content never changes once written: full tiles for ever,
    // partial tiles for their width. Full tiles are cached as immutable.
    let cache = if id.is_full() {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// Ready when serving and the log still accepts writes; after an fsync or
/// publish failure the writer has stopped and this says why.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n",
        )
            .into_response();
    }
    let failed = state.governance.failed_checks.load(Relaxed);
    if failed > 0 && state.governance.policy().audit().readyz_fails_on_finding {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {failed} audit check(s) failed (see `stele audit report`)\n"),
        )
            .into_response();
    }
    // The writer may hold the log through a batch's fsyncs: wait off the
    // async workers.
    let work_state = state.clone();
    let health = tokio::task::spawn_blocking(move || {
        lock_log(&work_state.log)
            .health()
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the health check failed: {e}")));
    match health {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let age = state.reader.checkpoint_age().map(|d| d.as_secs_f64());
    let size = state.reader.size();
    let mut text = metrics::render(
        &state.metrics,
        &state.seq_metrics,
        &state.fsync_metrics,
        &state.governance,
        age,
        size,
    );
    state.auth_failures.render(&mut text);
    if let Some(index) = state.reader.search_index() {
        metrics::render_search_index(&mut text, &index, size);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn receipt(index: u64, id: &str, duplicate: bool) -> Receipt {
        Receipt {
            index: EntryIndex(index),
            id: id.into(),
            stream: "app.audit".into(),
            commitment: [7u8; 32],
            salt: [0xfe; 32],
            duplicate,
        }
    }

    /// The bytes written by hand are the JSON the API documents: each
    /// member with its value, strings escaped, `duplicate` only when true.
    #[tokio::test]
    async fn receipts_are_written_as_documented() {
        let receipts = [
            receipt(0, "01890a5d-ac96-774b-bcce-b302099a8057", false),
            receipt(u64::MAX, "odd \"id\"\\\n", true),
        ];
        let response = receipts_response(&receipts);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        let expected = json!({"receipts": [
            {"index": 0, "id": "01890a5d-ac96-774b-bcce-b302099a8057", "stream": "app.audit",
             "commitment": B64.encode([7u8; 32]), "salt": B64.encode([0xfe; 32])},
            {"index": u64::MAX, "id": "odd \"id\"\\\n", "stream": "app.audit",
             "commitment": B64.encode([7u8; 32]), "salt": B64.encode([0xfe; 32]), "duplicate": true},
        ]});
        assert_eq!(value, expected);
        let empty = axum::body::to_bytes(receipts_response(&[]).into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&empty[..], br#"{"receipts":[]}"#);
    }
}
