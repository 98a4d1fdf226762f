//! Turning client events into prepared entries, off the sequencer's path.
//!
//! Preparation does everything that does not need a log index: parse and
//! validate, build the envelope (server id, clock, writer, stream), encode it
//! canonically and pack it. It can run on many threads. The salt and the
//! commitment need the entry's number and segment: the writer derives them
//! when it seals the entry (`engine/seal.rs`).

use jiff::Timestamp;
use std::sync::Arc;

use stele_event::time::{Day, DayError};
use stele_event::{Envelope, EventError, Limits, new_envelope, parse_client_event};
use stele_index::EventTerms;
use stele_store::keys::random_bytes;

use crate::error::LogResult;

/// An event ready to be sequenced.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// Server-assigned event id (UUIDv7).
    pub id: String,
    pub stream: String,
    /// UTC day of `received_at`; selects the segment.
    pub epoch: Day,
    /// The envelope as a segment keeps it: packed, or
    /// its canonical (RFC 8785) bytes (`stele_event::canonical_from_stored`
    /// gives the canonical bytes back). Private, as `canonical` is: the
    /// writer commits to `canonical` and stores `stored`, so the two are
    /// only ever set together, by [`prepare_envelope`], which checks that
    /// one gives back the other.
    stored: Vec<u8>,
    /// The canonical envelope, which the commitment hashes: kept from
    /// preparation so that the writer need not rebuild it.
    canonical: Vec<u8>,
    /// Hash of the idempotency key (0 when the event has no client `id`):
    /// an event with the key of an event already in the log is not appended
    /// again; its original receipt is returned instead.
    pub idempotency: u64,
    /// The key itself (writer, NUL, client id; empty when none), to confirm
    /// a hash match against the stored event.
    pub idempotency_key: String,
    /// Digest of the original payload's canonical form ([`payload_digest`]):
    /// a retry is the same key with the same payload. The same key with
    /// other content is a different event and is appended (an id reused by
    /// mistake, or a Kubernetes audit ID chosen by a client, must never hide
    /// an event).
    pub payload_digest: [u8; 32],
    /// Every value the search index needs of the event, taken from the
    /// envelope here (on the preparing thread) so that indexing the event
    /// once it is durable parses nothing. Shared, not copied, with the
    /// writer's batch in flight.
    pub(crate) terms: Arc<EventTerms>,
}

/// The digest of a payload compared between an event and its retries.
/// A retry is the same JSON value, however it is spaced or its members
/// ordered, so the digest is taken over the payload's canonical (RFC 8785)
/// form. Bytes that are not JSON (payloads are validated before they get
/// here) are digested as they are, under another domain.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => {
            let mut input = b"stele/payload/v1\n".to_vec();
            stele_event::canonicalize(&value, &mut input);
            stele_event::commitment(&[0u8; 32], &input)
        }
        Err(_) => stele_event::commitment(&[0u8; 32], payload),
    }
}

/// The idempotency key string of a writer and client id.
pub fn idempotency_key(writer: &str, client_id: &str) -> String {
    format!("{writer}\u{0}{client_id}")
}

/// The idempotency key of an event: its writer and its client `id`. Keys
/// are scoped by writer so that two sources cannot collide by choosing the
/// same ids.
pub fn idempotency_hash(writer: &str, client_id: &str) -> u64 {
    let mut input = Vec::with_capacity(writer.len() + client_id.len() + 24);
    input.extend_from_slice(b"stele/idempotency/v1\n");
    input.extend_from_slice(writer.as_bytes());
    input.push(0);
    input.extend_from_slice(client_id.as_bytes());
    let digest = stele_event::commitment(&[0u8; 32], &input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Zero means "no key" in the index, so it is never a key's hash.
    u64::from_be_bytes(first).max(1)
}

/// Prepares events for one writer on one ingestion channel.
#[derive(Debug, Clone)]
pub struct Preparer {
    pub writer: String,
    pub channel: String,
    pub default_stream: String,
    pub limits: Limits,
    /// Routes each event to a stream; without one, events go to the stream
    /// they ask for or `default_stream`.
    pub policy: Option<std::sync::Arc<stele_policy::Policy>>,
}

impl Preparer {
    pub fn new(writer: &str, channel: &str, default_stream: &str) -> Preparer {
        Preparer {
            writer: writer.to_string(),
            channel: channel.to_string(),
            default_stream: default_stream.to_string(),
            limits: Limits::default(),
            policy: None,
        }
    }

    /// The same preparer, routing by `policy`.
    pub fn with_policy(mut self, policy: std::sync::Arc<stele_policy::Policy>) -> Preparer {
        self.policy = Some(policy);
        self
    }

    /// The stream `event` goes to: the policy's routing decision (which
    /// honours a requested stream only when the policy declares it), or
    /// without a policy the requested stream or the default.
    pub fn stream_for(&self, event: &stele_event::ClientEvent) -> Result<String, PrepareError> {
        let Some(policy) = &self.policy else {
            return Ok(event
                .stream
                .clone()
                .unwrap_or_else(|| self.default_stream.clone()));
        };
        if self.default_stream.starts_with('_') {
            // System events: their stream is fixed by the caller.
            return Ok(self.default_stream.clone());
        }
        let input = stele_policy::RouteInput {
            channel: &self.channel,
            source: event.source.as_deref(),
            writer: &self.writer,
            action: &event.action,
            requested_stream: event.stream.as_deref(),
            attributes: event.attributes.as_ref(),
        };
        policy
            .route(&input)
            .map_err(|e| PrepareError::Route(e.to_string()))
    }

    /// Parses and prepares one raw client event received at `now`.
    pub fn prepare(&self, raw: &[u8], now: Timestamp) -> Result<PreparedEvent, PrepareError> {
        let parsed = parse_client_event(raw, &self.limits)?;
        self.prepare_parsed(parsed, raw, now)
    }

    /// Prepares an event already parsed (or mapped by an ingestion adapter)
    /// from `raw`, which is kept verbatim as its payload.
    pub fn prepare_parsed(
        &self,
        parsed: stele_event::ClientEvent,
        raw: &[u8],
        now: Timestamp,
    ) -> Result<PreparedEvent, PrepareError> {
        let mut uuid_random = [0u8; 10];
        take_random(&mut uuid_random)?;
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &uuid_random)
            .into_uuid()
            .hyphenated()
            .to_string();
        let stream = self.stream_for(&parsed)?;
        let envelope = new_envelope(parsed, raw, id, now, &self.writer, &stream, &self.channel)?;
        prepare_envelope(envelope, now)
    }
}

thread_local! {
    /// Random bytes drawn from the system generator in bulk: one call per
    /// 64 KiB instead of one per event. Each byte is handed out once.
    static RANDOM_POOL: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

const RANDOM_POOL_BYTES: usize = 64 * 1024;

fn take_random(out: &mut [u8]) -> Result<(), PrepareError> {
    RANDOM_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (buffer, used) = &mut *pool;
        if buffer.len() < RANDOM_POOL_BYTES || *used + out.len() > buffer.len() {
            buffer.resize(RANDOM_POOL_BYTES, 0);
            random_bytes(buffer).map_err(|e| PrepareError::Random(e.to_string()))?;
            *used = 0;
        }
        out.copy_from_slice(&buffer[*used..*used + out.len()]);
        // Wipe what was handed out: each byte is used once.
        buffer[*used..*used + out.len()].fill(0);
        *used += out.len();
        Ok(())
    })
}

/// Encodes an already built envelope. The idempotency key is taken from
/// the envelope's writer and client `id`.
pub fn prepare_envelope(envelope: Envelope, now: Timestamp) -> Result<PreparedEvent, PrepareError> {
    let epoch = Day::of(now).map_err(PrepareError::Clock)?;
    let (canonical, mut stored) = envelope.canonical_and_stored();
    // The writer commits to what the stored form gives back: it must be
    // exactly the canonical envelope, or the canonical bytes are stored.
    let mut scratch = Vec::new();
    if stele_event::canonical_from_stored(&stored, &mut scratch).ok() != Some(canonical.as_slice())
    {
        stored = canonical.clone();
    }
    let idempotency = envelope
        .event
        .id
        .as_deref()
        .map(|client_id| idempotency_hash(&envelope.writer, client_id))
        .unwrap_or(0);
    let idempotency_key = envelope
        .event
        .id
        .as_deref()
        .map(|client_id| idempotency_key(&envelope.writer, client_id))
        .unwrap_or_default();
    let payload_digest = if idempotency == 0 {
        [0u8; 32]
    } else {
        payload_digest(envelope.payload.as_bytes())
    };
    let terms = Arc::new(EventTerms::of(&envelope));
    Ok(PreparedEvent {
        terms,
        idempotency,
        idempotency_key,
        payload_digest,
        id: envelope.id,
        stream: envelope.stream,
        epoch,
        stored,
        canonical,
    })
}

impl PreparedEvent {
    /// What the search index takes of the event.
    pub fn terms(&self) -> &EventTerms {
        &self.terms
    }

    /// The envelope as a segment keeps it.
    pub fn stored(&self) -> &[u8] {
        &self.stored
    }

    /// The canonical envelope: what `stored` gives back, and what the
    /// commitment hashes.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The same event, stored in its canonical form instead of packed (as
    /// segments of version 1 keep every event, and as any reader accepts).
    pub fn stored_canonical(mut self) -> PreparedEvent {
        self.stored = self.canonical.clone();
        self
    }
}

/// Why an event could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("random generator failed: {0}")]
    Random(String),
    /// The policy routes the event nowhere (e.g. it asks for a stream the
    /// policy does not declare).
    #[error("stream: {0}")]
    Route(String),
    /// The clock reads a day no segment can hold (before 1970).
    #[error("clock: {0}")]
    Clock(DayError),
}

impl From<PrepareError> for crate::error::LogError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Event(e) => crate::error::LogError::Event(e),
            PrepareError::Random(s) => crate::error::LogError::Internal(s),
            PrepareError::Route(s) => crate::error::LogError::Refused(s),
            PrepareError::Clock(e) => crate::error::LogError::Refused(format!("clock: {e}")),
        }
    }
}

/// Convenience for tests and tools: prepare or fail as a [`crate::LogError`].
pub fn prepare_one(preparer: &Preparer, raw: &[u8], now: Timestamp) -> LogResult<PreparedEvent> {
    Ok(preparer.prepare(raw, now)?)
}
