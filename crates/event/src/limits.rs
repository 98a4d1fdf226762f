//! The size and shape bounds applied to client events, gathered in one
//! [`Limits`] value the caller passes to [`crate::parse_client_event`]. It is
//! not a rate limiter or a quota: it only bounds one event at a time, and it
//! does not apply to stored envelopes, which were bounded when they were
//! ingested and must stay readable if the limits later change.

/// Hard ceiling on nesting depth, whatever [`Limits::max_depth`] says.
///
/// The parser recurses once per nesting level, so an unbounded depth would
/// let a configuration mistake turn into a stack overflow; 128 matches
/// `serde_json`'s own default recursion limit.
pub const MAX_DEPTH_CEILING: usize = 128;

/// Bounds applied to one client event. All sizes are in bytes.
///
/// | limit                | default | what it bounds                                              |
/// |----------------------|---------|-------------------------------------------------------------|
/// | `max_event_bytes`    | 65536   | the raw event, before parsing                               |
/// | `max_string_bytes`   | 1024    | `actor`, `action`, `resource`, `outcome`, `source` (UTF-8)  |
/// | `max_id_bytes`       | 256     | the client idempotency key `id`                             |
/// | `max_depth`          | 32      | container nesting of the whole document (top object = 1)    |
/// | `max_attribute_keys` | 1024    | object keys inside `attributes`, all depths counted         |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted raw event, in bytes.
    pub max_event_bytes: usize,
    /// Longest accepted `actor`, `action`, `resource`, `outcome` or `source`,
    /// in UTF-8 bytes after unescaping.
    pub max_string_bytes: usize,
    /// Longest accepted client `id`, in UTF-8 bytes after unescaping.
    pub max_id_bytes: usize,
    /// Deepest accepted nesting of objects and arrays; the top-level object
    /// is depth 1, so `attributes` is depth 2. Values above
    /// [`MAX_DEPTH_CEILING`] act as the ceiling.
    pub max_depth: usize,
    /// Most object keys accepted inside `attributes`, counting the keys of
    /// nested objects too.
    pub max_attribute_keys: usize,
}

impl Limits {
    /// The depth bound actually enforced: the configured one, capped by
    /// [`MAX_DEPTH_CEILING`].
    pub fn effective_max_depth(&self) -> usize {
        self.max_depth.min(MAX_DEPTH_CEILING)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            max_string_bytes: 1024,
            max_id_bytes: 256,
            max_depth: 32,
            max_attribute_keys: 1024,
        }
    }
}
