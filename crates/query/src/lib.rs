//! The query language of Stele's search: one syntax for `GET /v1/search`,
//! `stele search` and the console, documented with examples in
//! `docs/search.md`.
//!
//! ```text
//! actor:alice resource:db/prod/* received>=2026-12-01 received<2026-12-02
//! (action:delete OR action:drop) -outcome:success "permission denied"
//! attributes.kubernetes.objectRef.namespace:kube-* time>=now-24h
//! ```
//!
//! [`Query::parse`] turns the text into a typed expression, refusing
//! anything else with the byte offset and the reason ([`QueryError`]);
//! relative times (`now-24h`) are fixed against the clock reading the
//! caller gives, so a query (and a cursor over its results) means the same
//! thing for as long as it is used. [`Query::matches`] decides whether one
//! envelope matches: it is the definition every index must agree with.
//! [`Query`]'s `Display` writes a normalized text that parses back to the
//! same query, for recording what was asked.
//!
//! Limits ([`MAX_QUERY_BYTES`], [`MAX_TERMS`], [`MAX_DEPTH`]) are
//! explicit: a query over them is refused, never truncated.

mod expr;
pub mod extract;
mod matching;
mod parse;
mod text;

pub use expr::{Expr, Field, Pattern, Query, TimeBound, TimeField};
pub use parse::{MAX_DEPTH, MAX_QUERY_BYTES, MAX_TERMS, QueryError};
pub use text::{contains_phrase, tokens};
