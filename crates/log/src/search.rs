//! Search across the whole log: which entries a [`stele_query::Query`]
//! matches, newest or oldest first, a page at a time, with counts and
//! aggregates, over the streams the caller may read.
//!
//! The search index (`search/index.rs`, per segment, in memory; a sealed
//! file per closed segment, `search/parts.rs`) answers for the entries it
//! covers; entries it does not cover yet (a build after
//! an open, a batch on its way) are read from the log and matched one by
//! one, so an answer never depends on how far the index has got. Every
//! event returned is read from the log and checked against the query
//! again. A search is pinned to a tree size (a published checkpoint's):
//! pages of the same search see the same entries however appends go on.

pub mod export;
pub(crate) mod index;
mod maintain;
mod parts;
mod request;
mod run;

pub use index::{PartsReport, SearchIndex};
pub use maintain::{PartCheck, PartOutcome, RebuildReport, rebuild, verify_parts};
pub use request::{
    Cursor, DEFAULT_LIMIT, MAX_LIMIT, MAX_STREAMS, SERVER_MAX_UNINDEXED, page_json, parse_streams,
};
pub use run::{Aggregates, Bucket, Order, Page, Search, TOP_VALUES, search};
pub use stele_index::TopValue;
