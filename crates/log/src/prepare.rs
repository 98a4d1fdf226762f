//! Turning client events into prepared entries, off the sequencer's path.
//!
//! Preparation does everything that does not need a log index: parse and
//! validate, build the envelope (server id, clock, writer, stream), encode it
//! canonically, draw the salt and compute the commitment. It can run on many
//! threads; the sequencer then only seals and writes.

use jiff::Timestamp;
use stele_event::{Envelope, EventError, Limits, commitment, new_envelope, parse_client_event};
use stele_store::keys::random_bytes;

use crate::error::LogResult;
use crate::layout::epoch_of_seconds;

/// An event ready to be sequenced.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// Server-assigned event id (UUIDv7).
    pub id: String,
    pub stream: String,
    /// UTC day of `received_at`; selects the segment.
    pub epoch: u32,
    pub salt: [u8; 32],
    /// RFC 8785 bytes of the envelope.
    pub canonical: Vec<u8>,
    /// SHA-256("stele/event/v1\n" ‖ salt ‖ canonical): the Merkle leaf data.
    pub commitment: [u8; 32],
}

/// Prepares events for one writer on one ingestion channel.
#[derive(Debug, Clone)]
pub struct Preparer {
    pub writer: String,
    pub channel: String,
    pub default_stream: String,
    pub limits: Limits,
}

impl Preparer {
    pub fn new(writer: &str, channel: &str, default_stream: &str) -> Preparer {
        Preparer {
            writer: writer.to_string(),
            channel: channel.to_string(),
            default_stream: default_stream.to_string(),
            limits: Limits::default(),
        }
    }

    /// Parses and prepares one raw client event received at `now`.
    pub fn prepare(&self, raw: &[u8], now: Timestamp) -> Result<PreparedEvent, PrepareError> {
        let parsed = parse_client_event(raw, &self.limits)?;
        let mut random = [0u8; 42];
        take_random(&mut random)?;
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let mut uuid_random = [0u8; 10];
        uuid_random.copy_from_slice(&random[32..]);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &uuid_random)
            .into_uuid()
            .hyphenated()
            .to_string();
        let envelope = new_envelope(
            parsed,
            raw,
            id,
            now,
            &self.writer,
            &self.default_stream,
            &self.channel,
        )?;
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&random[..32]);
        Ok(prepare_envelope(envelope, salt, now))
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
        // Wipe what was handed out so the pool never holds a used salt.
        buffer[*used..*used + out.len()].fill(0);
        *used += out.len();
        Ok(())
    })
}

/// Encodes an already built envelope with a given salt.
pub fn prepare_envelope(envelope: Envelope, salt: [u8; 32], now: Timestamp) -> PreparedEvent {
    let canonical = envelope.canonical_bytes();
    let commitment = commitment(&salt, &canonical);
    PreparedEvent {
        id: envelope.id,
        stream: envelope.stream,
        epoch: epoch_of_seconds(now.as_second()),
        salt,
        canonical,
        commitment,
    }
}

/// Why an event could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("random generator failed: {0}")]
    Random(String),
}

impl From<PrepareError> for crate::error::LogError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Event(e) => crate::error::LogError::Event(e),
            PrepareError::Random(s) => crate::error::LogError::Usage(s),
        }
    }
}

/// Convenience for tests and tools: prepare or fail as a [`crate::LogError`].
pub fn prepare_one(preparer: &Preparer, raw: &[u8], now: Timestamp) -> LogResult<PreparedEvent> {
    Ok(preparer.prepare(raw, now)?)
}
