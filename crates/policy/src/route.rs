//! Routing: which stream an event goes to. A stream the client asks for
//! wins if the policy declares it; otherwise the first matching
//! `[[routes]]` entry; otherwise `default_stream`. Pure string matching on
//! the event's fields — it never looks at payload bytes.

use serde_json::{Map, Value};

/// A `*`-only glob: `*` matches any run of characters (including none),
/// everything else matches itself, case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// A glob from its pattern.
    pub fn new(pattern: impl Into<String>) -> Glob {
        Glob {
            pattern: pattern.into(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let parts: Vec<&str> = self.pattern.split('*').collect();
        glob_matches(&parts, text)
    }
}

/// Whether `text` matches the glob whose literal parts, between its `*`s,
/// are `parts` (one part: no `*`, the text itself; `["a", ""]` is `a*`).
/// Case-sensitive. Shared by [`Glob`] and the search's patterns, whose
/// literal parts may themselves hold a `*`.
pub fn glob_matches<S: AsRef<str>>(parts: &[S], text: &str) -> bool {
    let Some((first, rest_parts)) = parts.split_first() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first.as_ref()) else {
        return false;
    };
    let Some((last, middle)) = rest_parts.split_last() else {
        // No `*`: the pattern is a literal.
        return rest.is_empty();
    };
    for part in middle {
        let part = part.as_ref();
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last.as_ref())
}

/// What the route keys of a `[[routes]]` entry compare against.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// How the event arrived: `"http"`, `"kubernetes"` or `"cli"`.
    pub channel: &'a str,
    /// The event's `source`, if any.
    pub source: Option<&'a str>,
    /// The authenticated writer.
    pub writer: &'a str,
    /// The event's `action` (the verb, for Kubernetes events).
    pub action: &'a str,
    /// The event's `stream`, if the client asked for one.
    pub requested_stream: Option<&'a str>,
    /// The event's `attributes`, if any. Kubernetes events carry
    /// `kubernetes.objectRef.{namespace,resource}` here.
    pub attributes: Option<&'a Map<String, Value>>,
}

/// Kubernetes match keys of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesMatch {
    /// Matches `attributes.kubernetes.objectRef.namespace`.
    pub namespace: Option<Glob>,
    /// Matches `attributes.kubernetes.objectRef.resource`.
    pub resource: Option<Glob>,
    /// Matches the event's `action` (the Kubernetes verb).
    pub verb: Option<Glob>,
}

/// One `[[routes]]` entry: a target stream and match keys, all of which
/// must match (a route with no keys matches every event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The stream matching events go to.
    pub stream: String,
    /// Matches [`RouteInput::channel`].
    pub channel: Option<Glob>,
    /// Matches [`RouteInput::source`]; an event without a source never matches.
    pub source: Option<Glob>,
    /// Matches [`RouteInput::writer`].
    pub writer: Option<Glob>,
    /// Matches [`RouteInput::action`].
    pub action: Option<Glob>,
    /// Kubernetes keys.
    pub kubernetes: Option<KubernetesMatch>,
    /// `(dotted path split into segments, pattern)` pairs matched against
    /// the string form of attribute values (strings as they are, numbers
    /// as JSON writes them, `true`/`false`); other values never match.
    pub attributes: Vec<(Vec<String>, Glob)>,
}

impl Route {
    /// Whether every key of this route matches `input`.
    pub fn matches(&self, input: &RouteInput<'_>) -> bool {
        let key = |glob: &Option<Glob>, value: Option<&str>| match glob {
            None => true,
            Some(glob) => value.is_some_and(|value| glob.matches(value)),
        };
        if !key(&self.channel, Some(input.channel))
            || !key(&self.source, input.source)
            || !key(&self.writer, Some(input.writer))
            || !key(&self.action, Some(input.action))
        {
            return false;
        }
        if let Some(kubernetes) = &self.kubernetes {
            let object_ref = |field: &str| {
                let path = ["kubernetes", "objectRef", field].map(str::to_owned);
                attribute_string(input.attributes, &path)
            };
            if !key(&kubernetes.namespace, object_ref("namespace").as_deref())
                || !key(&kubernetes.resource, object_ref("resource").as_deref())
                || !key(&kubernetes.verb, Some(input.action))
            {
                return false;
            }
        }
        self.attributes.iter().all(|(path, glob)| {
            attribute_string(input.attributes, path).is_some_and(|value| glob.matches(&value))
        })
    }
}

/// The string form of the attribute at `path`, if it is a string, number
/// or boolean.
fn attribute_string(attributes: Option<&Map<String, Value>>, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = attributes?.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}
