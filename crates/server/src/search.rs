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
    page_json, parse_streams,
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
    Router::new().route("/v1/search", get(search_events))
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
        if !asked.streams.is_empty() && !asked.streams.iter().any(|s| s == stream) {
            return false;
        }
        let mut decisions = decisions.lock().unwrap_or_else(|p| p.into_inner());
        *decisions.entry(stream.to_string()).or_insert_with(|| {
            decide(
                state,
                principal,
                conn.as_deref(),
                Action::Query,
                Resource::Stream(stream),
            )
            .allowed
        })
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
