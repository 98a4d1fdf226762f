//! The search index of one epoch's entries, in memory: what answers a
//! [`stele_query::Query`] without reading the events.
//!
//! An event's terms are taken once, when it is prepared ([`EventTerms`]:
//! every value the query language can compare, through
//! `stele_query::extract`, the functions the matcher itself uses). Once
//! the event is durable they go into a [`Part`]: the entries of one
//! segment (one stream, one UTC day), in ascending log order, each known
//! by its ordinal in the part. A part holds, per field, a dictionary of
//! the distinct values with the ordinals that hold each (postings), the
//! words of every value free text searches, and the two times as columns.
//! [`Part::eval`] answers an expression as a [`Bitset`] of ordinals;
//! the answer is exactly the set of entries [`stele_query::Query::matches`]
//! accepts (a property test holds the two together).
//!
//! Pure: no I/O, no clock. Where parts live, how they are fed and how
//! results are read back is `stele_log::search`.

mod bitset;
mod part;
mod terms;
mod uuid;

pub use bitset::Bitset;
pub use part::{DecodeError, FrequentWords, IndexError, Part, TopValue};
pub use terms::{EventTerms, attribute_key};
