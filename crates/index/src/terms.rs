//! The terms of one event, taken from its envelope once.

use jiff::Timestamp;
use stele_event::Envelope;
use stele_query::Field;
use stele_query::extract::{TermKey, for_each_term};

/// The fields an [`EventTerms`] names by a code, in code order.
pub(crate) const NAMED: [Field; 7] = stele_query::extract::INDEXED;
/// The code of the event's id.
pub(crate) const ID: u8 = 6;
/// The code of an attribute term; its path is in the item.
pub(crate) const ATTRIBUTE: u8 = NAMED.len() as u8;
/// The code of a term free text alone searches.
pub(crate) const TEXT_ONLY: u8 = ATTRIBUTE + 1;

/// The code of a named field, if it has one.
pub(crate) fn named_code(field: &Field) -> Option<u8> {
    NAMED.iter().position(|f| f == field).map(|i| i as u8)
}

/// The dictionary key of the attribute at `path`: each key written as its
/// length in bytes, `:`, and the key, so that no two paths share a key
/// (`["a.b"]` is `3:a.b`, `["a", "b"]` is `1:a1:b`).
pub fn attribute_key<'k>(path: impl IntoIterator<Item = &'k str>) -> String {
    let mut key = String::new();
    write_attribute_key(&mut key, path);
    key
}

fn write_attribute_key<'k>(out: &mut String, path: impl IntoIterator<Item = &'k str>) {
    for part in path {
        out.push_str(&part.len().to_string());
        out.push(':');
        out.push_str(part);
    }
}

/// One term: a code, the attribute key (empty unless the code is
/// [`ATTRIBUTE`]) and the value, both as ranges of the packed text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    pub code: u8,
    pub key: (u32, u32),
    pub value: (u32, u32),
}

/// Every term of one event, and its two times: what its epoch's index
/// needs of it, taken from the envelope when the event is prepared (so
/// that the envelope need not be parsed again once it is durable).
/// The strings are packed in one buffer.
#[derive(Debug, Clone, Default)]
pub struct EventTerms {
    /// `received_at` as an instant (`None` if it did not parse, which the
    /// matcher treats as on neither side of any bound).
    pub(crate) received: Option<Timestamp>,
    /// The client's `time`, when it has one that parses.
    pub(crate) time: Option<Timestamp>,
    pub(crate) text: String,
    pub(crate) items: Vec<Item>,
}

impl EventTerms {
    /// The terms of `envelope`, by `stele_query::extract::for_each_term`.
    pub fn of(envelope: &Envelope) -> EventTerms {
        let mut terms = EventTerms {
            received: envelope.received_at.parse().ok(),
            time: envelope
                .event
                .time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok()),
            text: String::with_capacity(envelope.payload.len() / 2),
            items: Vec::with_capacity(16),
        };
        for_each_term(envelope, &mut |key, value| terms.push(key, value));
        terms
    }

    fn push(&mut self, key: TermKey<'_>, value: &str) {
        let (code, key) = match key {
            TermKey::Named(field) => match named_code(field) {
                Some(code) => (code, (0, 0)),
                None => return,
            },
            TermKey::Attribute(path) => {
                let start = self.text.len();
                write_attribute_key(&mut self.text, path.iter().copied());
                (ATTRIBUTE, (start as u32, self.text.len() as u32))
            }
            TermKey::TextOnly => (TEXT_ONLY, (0, 0)),
        };
        let start = self.text.len();
        self.text.push_str(value);
        self.items.push(Item {
            code,
            key,
            value: (start as u32, self.text.len() as u32),
        });
    }

    /// When the server received the event (`None` if `received_at` did
    /// not parse).
    pub fn received(&self) -> Option<Timestamp> {
        self.received
    }

    /// The text of a range of the packed buffer.
    pub(crate) fn slice(&self, (start, end): (u32, u32)) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or("")
    }
}
