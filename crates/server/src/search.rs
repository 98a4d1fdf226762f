//! `GET /v1/search`: one page of a search across every stream the caller
//! may read (`stele_log::search`), in the query language of
//! `docs/search.md`.
//!
//! ```text
//! GET /v1/search?q=actor:alice resource:db/prod/*&streams=payments,ops
//!     &order=newest&limit=50&aggregate=day,actor&cursor=…
//! ```
//!
//! Streams the caller may not `query` (Cedar) are neither shown nor
//! counted; naming one in `streams` is refused (403, recorded). Each page
//! is recorded as an `events.searched` event, durably, before any of it
//! leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use stele_log::SystemEvent;
use stele_log::search::{
    self, Aggregates, Cursor, DEFAULT_LIMIT, MAX_LIMIT, Order, SERVER_MAX_UNINDEXED, Search,
    export, page_json, parse_streams,
};
use stele_log::sequencer::lock_log;
use stele_log::system_event::EventsSearched;
use stele_policy::{Action, Resource};
use stele_query::Query;

use crate::access::{authorize, decide};
use crate::admin::Conn;
use crate::api::{ApiError, ApiResult, AppState, authenticate, blocking, log_error};
use crate::tokens::Principal;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/search", get(search_events))
        .route("/v1/exports", axum::routing::post(post_export))
}

const USAGE: &str =
    "use ?q=QUERY[&streams=A,B][&order=newest|oldest][&limit=N][&aggregate=day,actor][&cursor=C]";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    streams: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    aggregate: Option<String>,
    cursor: Option<String>,
}

/// A search request, checked.
#[derive(Debug)]
struct Asked {
    text: String,
    query: Query,
    streams: Vec<String>,
    order: Order,
    limit: usize,
    aggregates: Aggregates,
    cursor: Option<Cursor>,
    /// The clock reading relative times were fixed against: the
    /// cursor's, for a next page.
    now: jiff::Timestamp,
}

fn invalid(message: impl Into<String>, field: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

impl SearchQuery {
    /// Checks every parameter; the query is parsed against `now`, or the
    /// cursor's clock reading for a next page.
    fn check(self, now: jiff::Timestamp) -> ApiResult<Asked> {
        let streams = parse_streams(self.streams.as_deref().unwrap_or(""))
            .map_err(|e| invalid(e, "streams"))?;
        let order = Order::parse(self.order.as_deref().unwrap_or("newest"))
            .map_err(|e| invalid(e, "order"))?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(invalid(format!("limit must be 1 to {MAX_LIMIT}"), "limit"));
        }
        let aggregates = Aggregates::parse(self.aggregate.as_deref().unwrap_or(""))
            .map_err(|e| invalid(e, "aggregate"))?;
        let cursor = self
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(c, &self.q, &streams, order))
            .transpose()
            .map_err(|e| invalid(e, "cursor"))?;
        let now = cursor.as_ref().map_or(now, |c| c.now);
        let query = Query::parse(&self.q, now).map_err(|e| invalid(format!("q: {e}"), "q"))?;
        Ok(Asked {
            text: self.q,
            query,
            streams,
            order,
            limit,
            aggregates,
            cursor,
            now,
        })
    }
}

/// Reads the query string of `GET /v1/search` as its handler does before
/// it needs the log. Public only for the fuzz targets.
#[doc(hidden)]
pub fn check_search_query(uri: &axum::http::Uri) -> ApiResult<()> {
    let UrlQuery(query) = UrlQuery::<SearchQuery>::try_from_uri(uri)
        .map_err(|e| invalid(format!("{e}; {USAGE}"), "q"))?;
    query.check(jiff::Timestamp::now()).map(|_| ())
}

async fn search_events(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    query: Result<UrlQuery<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let UrlQuery(query) = query.map_err(|e| invalid(format!("{e}; {USAGE}"), "q"))?;
    let asked = query.check(jiff::Timestamp::now())?;
    // Streams named are each authorized (a denial is recorded); the rest
    // of the search keeps to streams the caller may read.
    for stream in &asked.streams {
        authorize(
            &state,
            &principal,
            conn.as_deref(),
            Action::Query,
            Resource::Stream(stream),
        )?;
    }
    let published = state.reader.published_size();
    if let Some(cursor) = &asked.cursor
        && cursor.size > published
    {
        return Err(invalid("cursor is not one this log gave", "cursor"));
    }
    let client = conn
        .as_ref()
        .map(|c| c.remote.to_string())
        .unwrap_or_default();
    let body = blocking(move || run(&state, &principal, &conn, &asked, published, client)).await?;
    Ok(axum::Json(body).into_response())
}

/// Runs the search, records it, and gives the page's JSON.
fn run(
    state: &AppState,
    principal: &Principal,
    conn: &Conn,
    asked: &Asked,
    published: u64,
    client: String,
) -> ApiResult<serde_json::Value> {
    let size = asked.cursor.as_ref().map_or(published, |c| c.size);
    let decisions: Mutex<HashMap<String, bool>> = Mutex::new(HashMap::new());
    let may_read = |stream: &str| {
        may_act(
            state,
            principal,
            conn,
            Action::Query,
            &asked.streams,
            &decisions,
            stream,
        )
    };
    let page = search::search(
        &state.reader,
        &Search {
            query: &asked.query,
            order: asked.order,
            limit: asked.limit,
            size,
            after: asked.cursor.as_ref().map(|c| c.after),
            aggregates: &asked.aggregates,
            max_unindexed: Some(SERVER_MAX_UNINDEXED),
        },
        &may_read,
    )
    .map_err(log_error)?;
    let next = match (page.more, page.events.last()) {
        (true, Some(last)) => Some(Cursor::new(
            &asked.text,
            &asked.streams,
            asked.order,
            size,
            last.index.0,
            asked.now,
        )),
        _ => None,
    };
    // The search is recorded durably before any of it leaves.
    let event = SystemEvent::EventsSearched {
        actor: principal.name.clone(),
        attributes: EventsSearched {
            query: asked.query.to_string(),
            streams: asked.streams.clone(),
            order: asked.order.as_str().to_string(),
            size,
            continued: asked.cursor.is_some(),
            matched: page.count,
            returned: page.events.len() as u64,
            export: None,
            method: principal.method.to_string(),
            client,
        },
    };
    lock_log(&state.log)
        .writer()
        .append_system(&event, jiff::Timestamp::now())
        .map_err(log_error)?;
    Ok(page_json(
        &page,
        &asked.query,
        asked.order,
        &asked.aggregates,
        size,
        next.as_ref(),
    ))
}

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    #[serde(default)]
    query: String,
    #[serde(default)]
    streams: Vec<String>,
    format: String,
    known_size: Option<u64>,
}

/// Bytes of an export gathered before they are sent as one frame.
const EXPORT_CHUNK: usize = 64 << 10;

/// `POST /v1/exports`: every match of a query, oldest first, in the streams
/// the caller may `export`, as an evidence bundle or an NDJSON or CSV view
/// (`stele_log::search::export`), streamed: the events are never all in
/// memory. Recorded as an `events.searched` event with its format and
/// count before the first byte is sent; `X-Stele-Export-Count` and
/// `X-Stele-Tree-Size` say what the body holds. A failure after the
/// headers ends the body with an error, never as a complete file (a
/// bundle without its signed manifest does not verify).
async fn post_export(
    State(state): State<Arc<AppState>>,
    conn: Conn,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let principal = authenticate(&state, &headers, conn.as_deref()).await?;
    let request: ExportRequest = crate::admin::json_body(&state, &headers, body).await?;
    let format = export::Format::parse(&request.format).map_err(|e| invalid(e, "format"))?;
    let streams = parse_streams(&request.streams.join(",")).map_err(|e| invalid(e, "streams"))?;
    let at = jiff::Timestamp::now();
    let query =
        Query::parse(&request.query, at).map_err(|e| invalid(format!("query: {e}"), "query"))?;
    for stream in &streams {
        authorize(
            &state,
            &principal,
            conn.as_deref(),
            Action::Export,
            Resource::Stream(stream),
        )?;
    }
    let size = state.reader.published_size();
    if request.known_size.is_some_and(|k| k == 0 || k > size) {
        return Err(invalid(
            format!("known_size must be 1 to the latest checkpoint's size ({size})"),
            "known_size",
        ));
    }
    let job = ExportJob {
        state: state.clone(),
        client: conn
            .as_ref()
            .map(|c| c.remote.to_string())
            .unwrap_or_default(),
        principal,
        conn,
        streams,
        query,
        size,
        at,
        format,
        known_size: request.known_size,
    };
    let (sender, channel) =
        http_body_util::channel::Channel::<axum::body::Bytes, std::io::Error>::new(4);
    let runtime = tokio::runtime::Handle::current();
    let count = blocking(move || {
        let count = job.with_selection(export::count).map_err(log_error)?;
        job.record(count)?;
        // The export is written on a thread of its own while the body is
        // sent, as fast as the client reads it.
        std::thread::Builder::new()
            .name("stele-export".into())
            .spawn(move || job.stream(sender, runtime))
            .map_err(|e| {
                log_error(stele_log::LogError::Internal(format!(
                    "starting an export: {e}"
                )))
            })?;
        Ok(count)
    })
    .await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.content_type().to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-stele-export-count"),
                count.to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-stele-tree-size"),
                size.to_string(),
            ),
        ],
        axum::body::Body::new(channel),
    )
        .into_response())
}

/// An export, checked and authorized, for the blocking pool and the thread
/// that writes it.
struct ExportJob {
    state: Arc<AppState>,
    principal: Principal,
    conn: Conn,
    client: String,
    streams: Vec<String>,
    query: Query,
    size: u64,
    at: jiff::Timestamp,
    format: export::Format,
    known_size: Option<u64>,
}

impl ExportJob {
    /// Runs `f` on the export's selection: the query's matches in the
    /// streams the caller may export.
    fn with_selection<R>(
        &self,
        f: impl FnOnce(&stele_log::LogReader, &export::Selection<'_>) -> R,
    ) -> R {
        let decisions: Mutex<HashMap<String, bool>> = Mutex::new(HashMap::new());
        let may_read = |stream: &str| {
            may_act(
                &self.state,
                &self.principal,
                &self.conn,
                Action::Export,
                &self.streams,
                &decisions,
                stream,
            )
        };
        let selection = export::Selection {
            query: &self.query,
            size: self.size,
            may_read: &may_read,
            by: &self.principal.name,
            at: self.at,
            max_unindexed: Some(SERVER_MAX_UNINDEXED),
        };
        f(&self.state.reader, &selection)
    }

    /// Records the export (durable when this returns).
    fn record(&self, count: u64) -> ApiResult<()> {
        let event = SystemEvent::EventsSearched {
            actor: self.principal.name.clone(),
            attributes: EventsSearched {
                query: self.query.to_string(),
                streams: self.streams.clone(),
                order: Order::Oldest.as_str().into(),
                size: self.size,
                continued: false,
                matched: count,
                returned: count,
                export: Some(self.format.name().to_string()),
                method: self.principal.method.to_string(),
                client: self.client.clone(),
            },
        };
        lock_log(&self.state.log)
            .writer()
            .append_system(&event, jiff::Timestamp::now())
            .map_err(log_error)?;
        Ok(())
    }

    /// Writes the export into the response body's channel; a failure ends
    /// the body with an error.
    fn stream(
        self,
        sender: http_body_util::channel::Sender<axum::body::Bytes, std::io::Error>,
        runtime: tokio::runtime::Handle,
    ) {
        let mut out = ChannelWriter {
            sender: Some(sender),
            runtime,
            buffer: Vec::with_capacity(EXPORT_CHUNK),
        };
        let written = self.with_selection(|reader, selection| {
            export::write(reader, selection, self.format, self.known_size, &mut out)
        });
        // `write` flushed every byte on success.
        if let Err(e) = written {
            out.abort(e.to_string());
        }
    }
}

/// Whether the caller may act on `stream` (one of those named, when some
/// are), remembering each decision.
fn may_act(
    state: &AppState,
    principal: &Principal,
    conn: &Conn,
    action: Action,
    named: &[String],
    decisions: &Mutex<HashMap<String, bool>>,
    stream: &str,
) -> bool {
    if !named.is_empty() && !named.iter().any(|s| s == stream) {
        return false;
    }
    let mut decisions = decisions.lock().unwrap_or_else(|p| p.into_inner());
    *decisions.entry(stream.to_string()).or_insert_with(|| {
        decide(
            state,
            principal,
            conn.as_deref(),
            action,
            Resource::Stream(stream),
        )
        .allowed
    })
}

/// Sends what is written to a response body, a chunk at a time, waiting
/// while the client is slow (the channel holds a few chunks).
struct ChannelWriter {
    sender: Option<http_body_util::channel::Sender<axum::body::Bytes, std::io::Error>>,
    runtime: tokio::runtime::Handle,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    /// Ends the body with an error: the client sees a failed transfer.
    fn abort(&mut self, reason: String) {
        if let Some(sender) = self.sender.take() {
            tracing::error!(%reason, "an export failed after its headers were sent");
            sender.abort(std::io::Error::other(reason));
        }
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= EXPORT_CHUNK {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(std::io::Error::other("the export was aborted"));
        };
        let chunk = axum::body::Bytes::from(std::mem::take(&mut self.buffer));
        self.runtime.block_on(sender.send_data(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}
