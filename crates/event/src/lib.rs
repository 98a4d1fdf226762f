//! Stele's event model: strict parsing and validation of client events, the
//! RFC 8785 (JCS) canonical JSON form, the stored envelope, and the salted
//! commitment the Merkle log records. The crate is pure: it does no I/O and
//! reads no clock or randomness; event ids, salts and receive times are
//! passed in by the caller. It knows nothing of storage, encryption or the
//! tree itself.
//!
//! The flow on append is [`parse_client_event`] → [`new_envelope`] →
//! [`Envelope::canonical_bytes`] → [`commitment`]. A verifier holding the
//! canonical bytes (or the envelope JSON) and the salt recomputes the
//! commitment with [`Envelope::from_canonical`] (or
//! [`envelope_canonical_from_json`]) and [`commitment`]. The byte format is
//! described in `docs/formats/event.md`.

mod client;
mod commitment;
mod envelope;
mod error;
mod jcs;
mod json;
mod limits;
mod stored;
pub mod time;

pub use client::{
    ClientEvent, STREAM_NAME_MAX, check_client_stream_name, check_stream_name,
    is_reserved_stream_name, parse_client_event, parse_rfc3339,
};
pub use commitment::{COMMITMENT_DOMAIN, commitment};
pub use envelope::{
    ENVELOPE_MEMBERS, ENVELOPE_VERSION, Envelope, envelope_canonical_from_json, new_envelope,
};
pub use error::EventError;
pub use jcs::{canonicalize, compare_utf16, to_canonical_vec};
pub use json::parse_strict;
pub use limits::{Limits, MAX_DEPTH_CEILING};
pub use stored::{DICTIONARY, MAX_CANONICAL_BYTES, PACKED_FORM, canonical_from_stored};

#[cfg(test)]
mod tests;
