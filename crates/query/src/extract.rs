//! The values of an envelope as a query sees them: what a field term
//! compares ([`values_of`]), what free text searches ([`text_values`]),
//! and every (field, value) pair an index must hold to answer both
//! ([`for_each_term`]). The matcher and any index use these functions
//! and no others, so the two cannot disagree on what a value is.

use serde_json::Value;
use stele_event::Envelope;

use crate::expr::Field;

/// Most keys in an attribute path a query may name, and so the deepest
/// attribute a field term can reach.
pub const MAX_PATH_KEYS: usize = 16;

/// Calls `visit` with each value of `field` in `envelope` as text: none
/// when the field is absent, one for a scalar, one per scalar element of an
/// array attribute. An attribute that is an object has no value.
pub fn values_of(envelope: &Envelope, field: &Field, visit: &mut dyn FnMut(&str)) {
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
pub fn text_values(envelope: &Envelope, visit: &mut dyn FnMut(&str)) {
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

/// The named fields [`for_each_term`] gives values of, in this order:
/// every field but the stream and the attributes.
pub const INDEXED: [Field; 7] = [
    Field::Actor,
    Field::Action,
    Field::Resource,
    Field::Outcome,
    Field::Source,
    Field::Writer,
    Field::Id,
];

/// Where a term of [`for_each_term`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKey<'a> {
    /// A named field (never [`Field::Stream`] nor [`Field::Attribute`]).
    Named(&'a Field),
    /// The attribute at this path of keys (1 to [`MAX_PATH_KEYS`]).
    Attribute(&'a [&'a str]),
    /// A scalar of the attributes that no attribute path reaches (inside
    /// an array's object or array, or deeper than [`MAX_PATH_KEYS`]):
    /// searched by free text only.
    TextOnly,
}

impl TermKey<'_> {
    /// Whether free text searches this key's values ([`text_values`]).
    pub fn is_text(&self) -> bool {
        match self {
            TermKey::Named(field) => matches!(
                field,
                Field::Actor | Field::Action | Field::Resource | Field::Outcome | Field::Source
            ),
            TermKey::Attribute(_) | TermKey::TextOnly => true,
        }
    }
}

/// Calls `visit` with every (key, value) an index needs for `envelope`
/// (the stream aside, which a stream's index holds once): for every field
/// except the stream, exactly the values [`values_of`] gives, and, through
/// the keys that [`TermKey::is_text`], exactly the values [`text_values`]
/// gives (a value may come more than once).
pub fn for_each_term(envelope: &Envelope, visit: &mut dyn FnMut(TermKey<'_>, &str)) {
    for field in &INDEXED {
        values_of(envelope, field, &mut |value| {
            visit(TermKey::Named(field), value)
        });
    }
    if let Some(attributes) = &envelope.event.attributes {
        let mut path: Vec<&str> = Vec::new();
        for (key, value) in attributes {
            path.push(key);
            attribute_terms(value, &mut path, visit);
            path.pop();
        }
    }
}

/// The terms of the attribute `value` found at `path`.
fn attribute_terms<'v>(
    value: &'v Value,
    path: &mut Vec<&'v str>,
    visit: &mut dyn FnMut(TermKey<'_>, &str),
) {
    let reachable = path.len() <= MAX_PATH_KEYS;
    match value {
        Value::Object(members) => {
            for (key, item) in members {
                path.push(key);
                attribute_terms(item, path, visit);
                path.pop();
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    // Scalars of an array are values of its path.
                    Value::Array(_) | Value::Object(_) => {
                        walk(item, &mut |text| visit(TermKey::TextOnly, text));
                    }
                    _ if reachable => scalar(item, &mut |text| {
                        visit(TermKey::Attribute(path), text);
                    }),
                    _ => scalar(item, &mut |text| visit(TermKey::TextOnly, text)),
                }
            }
        }
        _ if reachable => scalar(value, &mut |text| visit(TermKey::Attribute(path), text)),
        _ => scalar(value, &mut |text| visit(TermKey::TextOnly, text)),
    }
}
