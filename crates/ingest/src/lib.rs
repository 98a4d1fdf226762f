//! Ingestion adapters: turning request bodies from the outside world into
//! validated Stele client events, each with the exact bytes it came from.
//! [`body`] reads Stele's own JSON and NDJSON batches; [`kubernetes`] reads
//! the `audit.k8s.io/v1` `EventList` that kube-apiserver's audit webhook
//! posts; [`syslog`] reads one syslog message (RFC 5424, RFC 3164) as a
//! listener's framing cuts it, refused or accepted on its own. Every adapter is all or nothing: a body is accepted whole or
//! refused with an [`IngestError`] naming the offending event.
//!
//! The crate is pure: no I/O, no clock, no randomness. It does not
//! authenticate, route events to streams, de-duplicate or store anything;
//! the server does those with what this crate returns.

pub mod body;
mod error;
pub mod kubernetes;
mod scan;
pub mod syslog;

pub use body::{BodyKind, BodyLimits, RawEvent, body_kind, parse_body, split_body};
pub use error::IngestError;
pub use kubernetes::{K8sEvent, dedupe_key, parse_event_list};
