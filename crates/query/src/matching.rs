//! Whether an envelope matches a query: the definition an index must agree
//! with.

use stele_event::Envelope;

use crate::expr::{Expr, Query, TimeField};
use crate::extract::{text_values, values_of};
use crate::text::contains_phrase;

impl Query {
    /// Whether `envelope` matches. The empty query matches every envelope.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.expr.as_ref().is_none_or(|expr| expr.matches(envelope))
    }
}

impl Expr {
    /// Whether `envelope` matches this expression.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        match self {
            Expr::And(items) => items.iter().all(|item| item.matches(envelope)),
            Expr::Or(items) => items.iter().any(|item| item.matches(envelope)),
            Expr::Not(inner) => !inner.matches(envelope),
            Expr::Field(field, patterns) => {
                let mut found = false;
                values_of(envelope, field, &mut |value| {
                    found = found || patterns.iter().any(|p| p.matches(value));
                });
                found
            }
            Expr::Time(field, bound) => {
                let text = match field {
                    TimeField::Time => envelope.event.time.as_deref(),
                    TimeField::Received => Some(envelope.received_at.as_str()),
                };
                text.and_then(|text| text.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|at| bound.holds(at))
            }
            Expr::Text(words) => {
                let mut found = false;
                text_values(envelope, &mut |value| {
                    found = found || contains_phrase(value, words);
                });
                found
            }
        }
    }
}
