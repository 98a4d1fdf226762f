//! The policy file reader: walks the spanned TOML tree by hand (rather than
//! through serde) so that every problem is reported, not just the first,
//! each with its line and column. Produces [`Parsed`]; Cedar is compiled by
//! [`crate::access`].

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Problem, TextMap};
use crate::retention::Retention;
use crate::route::{Glob, KubernetesMatch, Route};
use crate::{
    AuditSchedule, Encryption, KeyPolicy, StreamPolicy, TlsRequirement, TransportPolicy,
    UndeclaredStreams,
};

/// Longest accepted duration or `retain` length: 100 years of 365 days.
pub const MAX_DURATION_DAYS: u64 = 36_500;

/// Longest accepted role name, in bytes.
pub const ROLE_NAME_MAX: usize = 128;

/// Where the access policies come from, as the TOML says.
#[derive(Debug, Clone)]
pub(crate) enum CedarSpec {
    /// No `[access]` section, or neither key: the shipped default.
    Default,
    /// `cedar_file = "…"`.
    File { span_start: usize },
    /// `cedar = '''…'''`: the text and its byte offset in the TOML file.
    Inline { text: String, base: usize },
}

/// Everything the TOML says, checked.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) default_stream: String,
    pub(crate) undeclared_streams: UndeclaredStreams,
    pub(crate) streams: BTreeMap<String, StreamPolicy>,
    pub(crate) routes: Vec<Route>,
    pub(crate) transport: TransportPolicy,
    pub(crate) keys: KeyPolicy,
    pub(crate) audit: AuditSchedule,
    pub(crate) local_roles: Vec<String>,
    pub(crate) cedar: CedarSpec,
}

type Item<'i> = Spanned<DeValue<'i>>;

struct Reader<'a> {
    map: TextMap<'a>,
    problems: Vec<Problem>,
}

fn type_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Parses `<N>s|m|h|d` into seconds, `1 <= N`, at most
/// [`MAX_DURATION_DAYS`] days.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let usage =
        "write <N>s, <N>m, <N>h or <N>d with N a positive whole number, e.g. \"60s\" or \"24h\"";
    let Some(unit) = text.chars().last() else {
        return Err(format!("empty duration; {usage}"));
    };
    let digits = &text[..text.len() - unit.len_utf8()];
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(format!("{text:?} is not a duration; {usage}")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a duration; {usage}"));
    }
    let max = MAX_DURATION_DAYS * 86_400;
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is longer than 100 years"))?;
    if count == 0 {
        return Err(format!("{text:?} must be positive"));
    }
    match count.checked_mul(seconds_per_unit) {
        Some(seconds) if seconds <= max => Ok(seconds),
        _ => Err(format!(
            "{text:?} is longer than 100 years ({MAX_DURATION_DAYS} days)"
        )),
    }
}

/// Parses a `retain` value: `"forever"` or `"<N>d"`.
pub(crate) fn parse_retain(text: &str) -> Result<Retention, String> {
    if text == "forever" {
        return Ok(Retention::Forever);
    }
    let usage = "write \"<N>d\" (days) or \"forever\", e.g. \"90d\"";
    let Some(digits) = text.strip_suffix('d') else {
        return Err(format!("{text:?} is not a retention; {usage}"));
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a retention; {usage}"));
    }
    match digits.parse::<u32>() {
        Ok(0) => Err(format!("{text:?} must be positive")),
        Ok(days) if u64::from(days) <= MAX_DURATION_DAYS => Ok(Retention::Days(days)),
        _ => Err(format!(
            "{text:?} is longer than {MAX_DURATION_DAYS} days (100 years); use \"forever\""
        )),
    }
}

/// Parses a `YYYY-MM-DD` date (years 0000 to 9999).
pub(crate) fn parse_date(text: &str) -> Result<jiff::civil::Date, String> {
    stele_event::time::parse_date(text).map_err(|e| e.to_string())
}

/// Checks a role name: non-empty, at most [`ROLE_NAME_MAX`] bytes, no
/// control characters (any such string is a Cedar entity id).
pub(crate) fn check_role_name(role: &str) -> Result<(), String> {
    if role.is_empty() {
        Err("a role name is empty".to_owned())
    } else if role.len() > ROLE_NAME_MAX {
        Err(format!(
            "role name {role:?} is longer than {ROLE_NAME_MAX} bytes"
        ))
    } else if role.chars().any(char::is_control) {
        Err(format!("role name {role:?} contains a control character"))
    } else {
        Ok(())
    }
}

impl<'a> Reader<'a> {
    fn at(&mut self, offset: usize, message: String) {
        let problem = self.map.problem_at(offset, message);
        self.problems.push(problem);
    }

    /// Reports every key of `table` not in `allowed`.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], section: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let where_ = if section.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in {section}")
                };
                self.at(
                    key.span().start,
                    format!(
                        "unknown key `{name}` {where_}; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string<'t>(&mut self, item: &'t Item<'_>, field: &str) -> Option<&'t str> {
        match item.get_ref() {
            DeValue::String(text) => Some(text.as_ref()),
            other => {
                self.at(
                    item.span().start,
                    format!("`{field}` must be a string, found {}", type_of(other)),
                );
                None
            }
        }
    }

    fn table<'t, 'i>(&mut self, item: &'t Item<'i>, field: &str) -> Option<&'t DeTable<'i>> {
        match item.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                self.at(
                    item.span().start,
                    format!("`{field}` must be a table, found {}", type_of(other)),
                );
                None
            }
        }
    }

    fn duration(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        section: &str,
        default: u64,
    ) -> Duration {
        let field = format!("{section}.{key}");
        let Some(item) = table.get(key) else {
            return Duration::from_secs(default);
        };
        let Some(text) = self.string(item, &field) else {
            return Duration::from_secs(default);
        };
        match parse_duration(text) {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(message) => {
                self.at(item.span().start, format!("`{field}`: {message}"));
                Duration::from_secs(default)
            }
        }
    }

    fn glob(&mut self, table: &DeTable<'_>, key: &str, field: &str) -> Option<Glob> {
        let item = table.get(key)?;
        let text = self.string(item, &format!("{field}.{key}"))?;
        Some(Glob::new(text))
    }

    fn stream(
        &mut self,
        name: &Spanned<std::borrow::Cow<'_, str>>,
        item: &Item<'_>,
    ) -> Option<StreamPolicy> {
        let stream_name: &str = name.get_ref();
        let section = format!("[streams.{stream_name}]");
        if stele_event::is_reserved_stream_name(stream_name) {
            self.at(
                name.span().start,
                format!(
                    "stream `{stream_name}` is reserved (names starting with `_` belong to Stele, \
                     which writes its own events there and always keeps them forever); \
                     remove [streams.{stream_name}]"
                ),
            );
            return None;
        }
        let mut valid = true;
        if let Err(error) = stele_event::check_client_stream_name(stream_name) {
            self.at(
                name.span().start,
                format!("stream name `{stream_name}`: {error}"),
            );
            valid = false;
        }
        let table = self.table(item, &format!("streams.{stream_name}"))?;
        self.check_keys(table, &["retain", "retain_until", "encryption"], &section);
        let field = |key: &str| format!("streams.{stream_name}.{key}");
        let retain = table.get("retain");
        let retain_until = table.get("retain_until");
        let retention = match (retain, retain_until) {
            (Some(_), Some(until)) => {
                self.at(
                    until.span().start,
                    format!("{section} has both `retain` and `retain_until`; keep exactly one"),
                );
                None
            }
            (None, None) => {
                self.at(
                    name.span().start,
                    format!(
                        "{section} needs `retain` (\"<N>d\" or \"forever\") or `retain_until` (\"YYYY-MM-DD\")"
                    ),
                );
                None
            }
            (Some(item), None) => {
                let text = self.string(item, &field("retain"))?;
                match parse_retain(text) {
                    Ok(retention) => Some(retention),
                    Err(message) => {
                        self.at(
                            item.span().start,
                            format!("`{}`: {message}", field("retain")),
                        );
                        None
                    }
                }
            }
            (None, Some(item)) => {
                let parsed = match item.get_ref() {
                    DeValue::String(text) => parse_date(text),
                    DeValue::Datetime(datetime)
                        if datetime.time.is_none() && datetime.offset.is_none() =>
                    {
                        match datetime.date {
                            Some(date) => parse_date(&date.to_string()),
                            None => Err("not a date".to_owned()),
                        }
                    }
                    other => Err(format!(
                        "must be a date \"YYYY-MM-DD\", found {}",
                        type_of(other)
                    )),
                };
                match parsed {
                    Ok(date) => Some(Retention::Until(date)),
                    Err(message) => {
                        self.at(
                            item.span().start,
                            format!("`{}`: {message}", field("retain_until")),
                        );
                        None
                    }
                }
            }
        };
        if let Some(item) = table.get("encryption")
            && let Some(text) = self.string(item, &field("encryption"))
            && text != "required"
        {
            self.at(
                item.span().start,
                format!(
                    "`{}` = {text:?} is refused: Stele encrypts every stream at rest \
                             and cannot store plaintext; the only value is \"required\"",
                    field("encryption")
                ),
            );
            valid = false;
        }
        let retention = retention?;
        valid.then_some(StreamPolicy {
            retention,
            encryption: Encryption::Required,
        })
    }

    fn route(&mut self, index: usize, item: &Item<'_>) -> Option<(Route, usize)> {
        let field = format!("routes[{index}]");
        let table = self.table(item, &field)?;
        let section = format!("[[routes]] #{}", index + 1);
        self.check_keys(
            table,
            &[
                "stream",
                "channel",
                "source",
                "writer",
                "action",
                "kubernetes",
                "attributes",
            ],
            &section,
        );
        let kubernetes = match table.get("kubernetes") {
            None => None,
            Some(item) => {
                let sub = self.table(item, &format!("{field}.kubernetes"))?;
                self.check_keys(
                    sub,
                    &["namespace", "resource", "verb"],
                    &format!("{section} kubernetes"),
                );
                let kfield = format!("{field}.kubernetes");
                Some(KubernetesMatch {
                    namespace: self.glob(sub, "namespace", &kfield),
                    resource: self.glob(sub, "resource", &kfield),
                    verb: self.glob(sub, "verb", &kfield),
                })
            }
        };
        let mut attributes = Vec::new();
        if let Some(item) = table.get("attributes")
            && let Some(sub) = self.table(item, &format!("{field}.attributes"))
        {
            for (key, value) in sub.iter() {
                let path: &str = key.get_ref();
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    self.at(
                        key.span().start,
                        format!(
                            "attribute path {path:?} has an empty segment; write e.g. \"app.tier\""
                        ),
                    );
                    continue;
                }
                let pattern = match value.get_ref() {
                    DeValue::String(text) => text.to_string(),
                    DeValue::Boolean(flag) => flag.to_string(),
                    DeValue::Integer(integer) if integer.radix() == 10 => {
                        integer.as_str().to_owned()
                    }
                    other => {
                        self.at(
                            value.span().start,
                            format!(
                                "attribute {path:?} must be matched by a string, found {}",
                                type_of(other)
                            ),
                        );
                        continue;
                    }
                };
                attributes.push((segments, Glob::new(pattern)));
            }
        }
        let channel = self.glob(table, "channel", &field);
        let source = self.glob(table, "source", &field);
        let writer = self.glob(table, "writer", &field);
        let action = self.glob(table, "action", &field);
        let Some(stream_item) = table.get("stream") else {
            self.at(item.span().start, format!("{section} needs `stream`"));
            return None;
        };
        let stream = self
            .string(stream_item, &format!("{field}.stream"))?
            .to_owned();
        Some((
            Route {
                stream,
                channel,
                source,
                writer,
                action,
                kubernetes,
                attributes,
            },
            stream_item.span().start,
        ))
    }
}

/// The top-level keys a policy may have.
const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "default_stream",
    "undeclared_streams",
    "streams",
    "routes",
    "transport",
    "keys",
    "audit",
    "operators",
    "access",
];

/// Reads and checks the TOML text of a policy. On any problem returns every
/// problem found.
pub(crate) fn read(map: TextMap<'_>) -> Result<Parsed, Vec<Problem>> {
    let mut reader = Reader {
        map: map.clone(),
        problems: Vec::new(),
    };
    let document = match DeTable::parse(map.text) {
        Ok(document) => document,
        Err(error) => {
            let message = format!("TOML syntax: {}", error.message());
            let problem = match error.span() {
                Some(span) => map.problem_at(span.start, message),
                None => map.problem(message),
            };
            return Err(vec![problem]);
        }
    };
    let root = document.get_ref();
    // Each section is read in this order, so problems are reported in it.
    reader.check_keys(root, TOP_LEVEL_KEYS, "");
    reader.version(root);
    let (streams, declared) = reader.streams(root);
    let default_stream = reader.default_stream(root, &declared);
    let undeclared_streams = reader.undeclared_streams(root);
    let routes = reader.routes(root, &declared);
    let transport = reader.transport(root);
    let keys = reader.keys(root);
    let audit = reader.audit(root);
    let local_roles = reader.local_roles(root);
    let cedar = reader.cedar(root, map.text);
    if reader.problems.is_empty() {
        Ok(Parsed {
            default_stream,
            undeclared_streams,
            streams,
            routes,
            transport,
            keys,
            audit,
            local_roles,
            cedar,
        })
    } else {
        Err(reader.problems)
    }
}

/// One top-level section each.
impl Reader<'_> {
    /// `version = 1`, the only version this Stele reads.
    fn version(&mut self, root: &DeTable<'_>) {
        match root.get("version") {
            None => self.at(
                0,
                "`version` is missing; write `version = 1` at the top".to_owned(),
            ),
            Some(item) => match item.get_ref() {
                DeValue::Integer(integer) if integer.as_str() == "1" && integer.radix() == 10 => {}
                other => {
                    let shown = match other {
                        DeValue::Integer(integer) => integer.to_string(),
                        other => type_of(other).to_owned(),
                    };
                    self.at(
                        item.span().start,
                        format!("unsupported policy `version` {shown}; this Stele reads version 1"),
                    );
                }
            },
        }
    }

    /// `[streams.<name>]`: the streams read without problems, and the names
    /// of every declared stream (problems or not, so that references to
    /// them are not reported twice).
    fn streams(&mut self, root: &DeTable<'_>) -> (BTreeMap<String, StreamPolicy>, Vec<String>) {
        let mut streams = BTreeMap::new();
        let mut declared: Vec<String> = Vec::new();
        match root.get("streams") {
            None => self.at(
                0,
                "no [streams.<name>] declared; declare at least one".to_owned(),
            ),
            Some(item) => {
                if let Some(table) = self.table(item, "streams") {
                    for (name, value) in table.iter() {
                        let stream_name: &str = name.get_ref();
                        declared.push(stream_name.to_owned());
                        if let Some(policy) = self.stream(name, value) {
                            streams.insert(stream_name.to_owned(), policy);
                        }
                    }
                }
            }
        }
        (streams, declared)
    }

    /// `default_stream`, which must be declared.
    fn default_stream(&mut self, root: &DeTable<'_>, declared: &[String]) -> String {
        let mut default_stream = String::new();
        match root.get("default_stream") {
            None => self.at(
                0,
                "`default_stream` is missing; name the stream unmatched events go to".to_owned(),
            ),
            Some(item) => {
                if let Some(name) = self.string(item, "default_stream") {
                    if !declared.iter().any(|d| d == name) {
                        self.at(
                            item.span().start,
                            format!("`default_stream` = {name:?} is not a declared stream; add [streams.{name}]"),
                        );
                    }
                    default_stream = name.to_owned();
                }
            }
        }
        default_stream
    }

    /// `undeclared_streams`: `"refuse"` (the default) or `"inherit"`.
    fn undeclared_streams(&mut self, root: &DeTable<'_>) -> UndeclaredStreams {
        let mut undeclared_streams = UndeclaredStreams::Refuse;
        if let Some(item) = root.get("undeclared_streams") {
            match self.string(item, "undeclared_streams") {
                Some("refuse") => {}
                Some("inherit") => undeclared_streams = UndeclaredStreams::Inherit,
                Some(other) => self.at(
                    item.span().start,
                    format!("`undeclared_streams` = {other:?}: write \"refuse\" or \"inherit\""),
                ),
                None => {}
            }
        }
        undeclared_streams
    }

    /// `[[routes]]`, each to a declared stream.
    fn routes(&mut self, root: &DeTable<'_>, declared: &[String]) -> Vec<Route> {
        let mut routes = Vec::new();
        if let Some(item) = root.get("routes") {
            match item.get_ref() {
                DeValue::Array(array) => {
                    for (index, route_item) in array.iter().enumerate() {
                        if let Some((route, stream_offset)) = self.route(index, route_item) {
                            if !declared.contains(&route.stream) {
                                self.at(
                                    stream_offset,
                                    format!(
                                        "[[routes]] #{} sends events to {:?}, which is not a declared stream",
                                        index + 1,
                                        route.stream
                                    ),
                                );
                            }
                            routes.push(route);
                        }
                    }
                }
                other => self.at(
                    item.span().start,
                    format!(
                        "`routes` must be an array of tables ([[routes]]), found {}",
                        type_of(other)
                    ),
                ),
            }
        }
        routes
    }

    /// `[transport]`: whether TLS is required.
    fn transport(&mut self, root: &DeTable<'_>) -> TransportPolicy {
        let mut transport = TransportPolicy {
            tls: TlsRequirement::Optional,
        };
        if let Some(item) = root.get("transport")
            && let Some(table) = self.table(item, "transport")
        {
            self.check_keys(table, &["tls"], "[transport]");
            if let Some(tls) = table.get("tls") {
                match self.string(tls, "transport.tls") {
                    Some("required") => transport.tls = TlsRequirement::Required,
                    Some("optional") => transport.tls = TlsRequirement::Optional,
                    Some(other) => self.at(
                        tls.span().start,
                        format!(
                            "`transport.tls` = {other:?}; expected \"required\" or \"optional\""
                        ),
                    ),
                    None => {}
                }
            }
        }
        transport
    }

    /// `[keys]`: the longest a key-encryption key may serve.
    fn keys(&mut self, root: &DeTable<'_>) -> KeyPolicy {
        let mut keys = KeyPolicy { max_kek_age: None };
        if let Some(item) = root.get("keys")
            && let Some(table) = self.table(item, "keys")
        {
            self.check_keys(table, &["max_kek_age"], "[keys]");
            if table.get("max_kek_age").is_some() {
                keys.max_kek_age = Some(self.duration(table, "max_kek_age", "keys", 0));
            }
        }
        keys
    }

    /// `[audit]`: the verification and attestation schedule.
    fn audit(&mut self, root: &DeTable<'_>) -> AuditSchedule {
        let mut audit = AuditSchedule::default();
        if let Some(item) = root.get("audit")
            && let Some(table) = self.table(item, "audit")
        {
            self.check_keys(
                table,
                &[
                    "verify_new_every",
                    "verify_full_every",
                    "attest_every",
                    "max_since_full_verify",
                    "readyz_fails_on_finding",
                ],
                "[audit]",
            );
            let defaults = AuditSchedule::default();
            audit.verify_new_every = self.duration(
                table,
                "verify_new_every",
                "audit",
                defaults.verify_new_every.as_secs(),
            );
            audit.verify_full_every = self.duration(
                table,
                "verify_full_every",
                "audit",
                defaults.verify_full_every.as_secs(),
            );
            audit.attest_every = self.duration(
                table,
                "attest_every",
                "audit",
                defaults.attest_every.as_secs(),
            );
            audit.max_since_full_verify = self.duration(
                table,
                "max_since_full_verify",
                "audit",
                defaults.max_since_full_verify.as_secs(),
            );
            if let Some(item) = table.get("readyz_fails_on_finding") {
                match item.get_ref() {
                    DeValue::Boolean(flag) => audit.readyz_fails_on_finding = *flag,
                    other => self.at(
                        item.span().start,
                        format!(
                            "`audit.readyz_fails_on_finding` must be true or false, found {}",
                            type_of(other)
                        ),
                    ),
                }
            }
            if audit.max_since_full_verify < audit.verify_full_every {
                let offset = table
                    .get("max_since_full_verify")
                    .or_else(|| table.get("verify_full_every"))
                    .map_or(item.span().start, |i| i.span().start);
                self.at(
                    offset,
                    "`audit.max_since_full_verify` is shorter than `audit.verify_full_every`: every \
                     audit would report a finding; make it at least as long"
                        .to_owned(),
                );
            }
        }
        audit
    }

    /// `[operators] local_roles`: the roles of the local operator.
    fn local_roles(&mut self, root: &DeTable<'_>) -> Vec<String> {
        let mut local_roles = Vec::new();
        if let Some(item) = root.get("operators")
            && let Some(table) = self.table(item, "operators")
        {
            self.check_keys(table, &["local_roles"], "[operators]");
            if let Some(roles) = table.get("local_roles") {
                match roles.get_ref() {
                    DeValue::Array(array) => {
                        for role in array.iter() {
                            let Some(name) = self.string(role, "operators.local_roles[]") else {
                                continue;
                            };
                            match check_role_name(name) {
                                Ok(()) => local_roles.push(name.to_owned()),
                                Err(message) => self.at(
                                    role.span().start,
                                    format!("`operators.local_roles`: {message}"),
                                ),
                            }
                        }
                    }
                    other => self.at(
                        roles.span().start,
                        format!(
                            "`operators.local_roles` must be an array of strings, found {}",
                            type_of(other)
                        ),
                    ),
                }
            }
        }
        local_roles
    }

    /// `[access]`: where the Cedar policies come from (`text` is the whole
    /// TOML, for the offset of an inline policy).
    fn cedar(&mut self, root: &DeTable<'_>, text: &str) -> CedarSpec {
        let mut cedar = CedarSpec::Default;
        if let Some(item) = root.get("access")
            && let Some(table) = self.table(item, "access")
        {
            self.check_keys(table, &["cedar_file", "cedar"], "[access]");
            match (table.get("cedar_file"), table.get("cedar")) {
                (Some(_), Some(inline)) => self.at(
                    inline.span().start,
                    "[access] has both `cedar_file` and `cedar`; keep exactly one".to_owned(),
                ),
                (Some(file), None) => {
                    if self.string(file, "access.cedar_file").is_some() {
                        cedar = CedarSpec::File {
                            span_start: file.span().start,
                        };
                    }
                }
                (None, Some(inline)) => {
                    if let Some(inline_text) = self.string(inline, "access.cedar") {
                        cedar = CedarSpec::Inline {
                            text: inline_text.to_owned(),
                            base: inline_string_start(text, inline.span().start),
                        };
                    }
                }
                (None, None) => {}
            }
        }
        cedar
    }
}

/// Byte offset in `toml` of the first character of the string value whose
/// span starts at `value_start`: after the opening delimiter, and after the
/// newline that TOML trims right after a multi-line delimiter. Exact for
/// literal strings (`'…'`, `'''…'''`); for basic strings (`"…"`,
/// `"""…"""`) positions after an escape or line continuation drift.
fn inline_string_start(toml: &str, value_start: usize) -> usize {
    let rest = toml.get(value_start..).unwrap_or("");
    let delimiter = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|d| rest.starts_with(d))
        .map_or(0, str::len);
    let mut start = value_start + delimiter;
    if delimiter == 3 {
        let after = toml.get(start..).unwrap_or("");
        if after.starts_with("\r\n") {
            start += 2;
        } else if after.starts_with('\n') {
            start += 1;
        }
    }
    start
}
