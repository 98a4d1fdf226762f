//! Whether an envelope matches a query: the definition an index must agree
//! with.

use serde_json::Value;
use stele_event::Envelope;

use crate::expr::{Expr, Field, Query, TimeField};
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

/// Calls `visit` with each value of `field` in `envelope` as text: none
/// when the field is absent, one for a scalar, one per scalar element of an
/// array attribute. An attribute that is an object has no value.
fn values_of(envelope: &Envelope, field: &Field, visit: &mut dyn FnMut(&str)) {
    let event = &envelope.event;
    let one = match field {
        Field::Actor => Some(event.actor.as_str()),
        Field::Action => Some(event.action.as_str()),
        Field::Resource => event.resource.as_deref(),
        Field::Outcome => event.outcome.as_deref(),
        Field::Source => envelope.source.as_deref(),
        Field::Writer => Some(envelope.writer.as_str()),
        Field::Stream => Some(envelope.stream.as_str()),
        Field::Id => Some(envelope.id.as_str()),
        Field::Attribute(path) => {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            let mut value = event.attributes.as_ref().and_then(|map| map.get(first));
            for key in rest {
                value = value.and_then(|v| v.get(key.as_str()));
            }
            match value {
                Some(Value::Array(items)) => items.iter().for_each(|item| scalar(item, visit)),
                Some(item) => scalar(item, visit),
                None => {}
            }
            return;
        }
    };
    if let Some(text) = one {
        visit(text);
    }
}

/// A scalar as a query compares it: a string as it is, a number, boolean
/// or null as its JSON text.
fn scalar(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Number(number) => visit(&number.to_string()),
        Value::Bool(flag) => visit(if *flag { "true" } else { "false" }),
        Value::Null => visit("null"),
        Value::Array(_) | Value::Object(_) => {}
    }
}

/// Every value free text is matched against: the event's actor, action,
/// resource, outcome and source, and every scalar in its attributes
/// (however deep), each on its own.
fn text_values(envelope: &Envelope, visit: &mut dyn FnMut(&str)) {
    let event = &envelope.event;
    visit(&event.actor);
    visit(&event.action);
    for text in [&event.resource, &event.outcome, &envelope.source]
        .into_iter()
        .flatten()
    {
        visit(text);
    }
    if let Some(attributes) = &event.attributes {
        for value in attributes.values() {
            walk(value, visit);
        }
    }
}

fn walk(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| walk(item, visit)),
        Value::Object(members) => members.values().for_each(|item| walk(item, visit)),
        scalar_value => scalar(scalar_value, visit),
    }
}
