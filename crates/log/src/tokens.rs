//! API tokens bound to the log: every grant is a `token.created` system
//! event and every revocation a `token.revoked` one, appended durably
//! before `tokens.json` changes. The file is a cache of those events: each
//! record names its `token.created` event, and [`check_entry`] — used by
//! the server at authentication and by `verify` — accepts a record only
//! when the event in the log says the same (principal, roles, expiry,
//! streams, secret commitment) and no `token.revoked` event exists for it.
//!
//! This module owns the file format (`docs/formats/tokens.md`) and the
//! event shapes; it knows nothing of HTTP. The server's token store caches
//! the outcome of these checks per token; the secret itself is never
//! stored anywhere, only its SHA-256 (in the file) and a hash of that hash
//! (in the event).
//!
//! Events are found by their client ids (`token:<id>:created`,
//! `token:<id>:revoked`) through the log's idempotency index, so a check
//! costs one or two entry reads, not a scan of `_system`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use stele_store::fsutil;

use crate::engine::StoredEvent;
use crate::error::{LogError, LogResult};
use crate::governance::Governance;
use crate::governance::{MAX_PRINCIPAL_BYTES, SYSTEM_STREAM, SYSTEM_WRITER};
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::system_event::{self, SystemEvent, client_id};

/// Name of the token file in a data directory.
pub const TOKEN_FILE: &str = "tokens.json";
/// Name of the lock file every change of `tokens.json` takes.
pub const TOKEN_LOCK: &str = "tokens.lock";
/// The format version of `tokens.json` this code reads and writes.
pub const TOKEN_FILE_VERSION: u32 = 2;
/// Most roles one token may carry.
pub const MAX_ROLES: usize = 16;
/// Most streams one token may be scoped to.
pub const MAX_SCOPE_STREAMS: usize = 64;
/// Domain separation of the secret commitment recorded in events.
const COMMITMENT_DOMAIN: &[u8] = b"stele/token/v1\n";

/// A role name. Roles mean nothing by themselves: the access policy (Cedar)
/// says what members of each role may do; a principal is `in` each of its
/// roles (`Stele::Role::"<name>"`). The shipped default policy knows
/// `writer`, `reader` and `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// A role name: 1 to 64 characters from `a-z 0-9 _ - .`.
    pub fn parse(text: &str) -> Result<Role, String> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if ok {
            Ok(Role(text.to_string()))
        } else {
            Err(format!(
                "bad role {text:?}: use 1 to 64 characters from a-z, 0-9, '_', '-', '.'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// May append (shipped default policy).
    pub fn writer() -> Role {
        Role("writer".into())
    }

    /// May read, query, export and verify (shipped default policy).
    pub fn reader() -> Role {
        Role("reader".into())
    }

    /// May do everything (shipped default policy).
    pub fn admin() -> Role {
        Role("admin".into())
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(text: String) -> Result<Role, String> {
        Role::parse(&text)
    }
}

impl From<Role> for String {
    fn from(role: Role) -> String {
        role.0
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One record of `tokens.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// 12 lowercase hex digits, the `<id>` of the token text.
    pub id: String,
    pub principal: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the secret part of the token text.
    pub secret_sha256: String,
    pub created_at: String,
    pub created_by: String,
    /// Index of the `token.created` event.
    pub created_event: u64,
    /// RFC 3339; the token is refused from then on.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The streams the token is limited to; `None` for every stream.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Index of the `token.revoked` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_event: Option<u64>,
}

impl TokenEntry {
    /// Whether the token is past its expiry at `now` (an unparsable expiry
    /// counts as expired: it fails closed).
    pub fn expired(&self, now: Timestamp) -> bool {
        match &self.expires_at {
            None => false,
            Some(text) => match text.parse::<Timestamp>() {
                Ok(at) => at <= now,
                Err(_) => true,
            },
        }
    }
}

/// The token file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub version: u32,
    pub tokens: Vec<TokenEntry>,
}

/// What a new token is for; validated by [`Governance::create_token`] before
/// anything is written.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    pub principal: String,
    pub roles: Vec<Role>,
    /// `None` for a token that never expires.
    pub expires_at: Option<Timestamp>,
    /// `None` for every stream.
    pub streams: Option<Vec<String>>,
}

/// Path of the token file in a data directory.
pub fn token_path(data: &Path) -> PathBuf {
    data.join(TOKEN_FILE)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    stele_tlog::hash::hex(&sha2::Sha256::digest(bytes))
}

/// The commitment to a token's secret that its `token.created` event
/// records: hex SHA-256 of `"stele/token/v1\n"` followed by the hex
/// `secret_sha256` of the file. It binds the file's hash to the event, and
/// it leaks nothing usable: the secret is 256 random bits, and the server
/// hashes what a client presents, so neither hash authenticates anyone.
pub fn secret_commitment(secret_sha256: &str) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(COMMITMENT_DOMAIN);
    hasher.update(secret_sha256.as_bytes());
    stele_tlog::hash::hex(&hasher.finalize())
}

/// Reads `tokens.json` (a missing file is an empty one). Every problem names
/// the file.
pub fn read_token_file(data: &Path) -> LogResult<TokenFile> {
    let path = token_path(data);
    let Some(bytes) = fsutil::read_optional(&path)? else {
        return Ok(TokenFile {
            version: TOKEN_FILE_VERSION,
            tokens: Vec::new(),
        });
    };
    let bad = |what: String| LogError::Integrity(format!("{}: {what}", path.display()));
    let version: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    match version.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(TOKEN_FILE_VERSION) => {}
        Some(1) => {
            return Err(bad(
                "format version 1 holds tokens that were never recorded in the log; create new tokens (this Stele reads version 2)".into(),
            ));
        }
        other => {
            return Err(bad(format!(
                "format version {other:?}; this Stele reads version {TOKEN_FILE_VERSION}"
            )));
        }
    }
    serde_json::from_value(version).map_err(|e| bad(e.to_string()))
}

/// Replaces `tokens.json` atomically (the old or the new content survives a
/// crash, never a mix). The caller holds [`TOKEN_LOCK`].
fn write_token_file(data: &Path, file: &TokenFile) -> LogResult<()> {
    let mut bytes =
        serde_json::to_vec_pretty(file).map_err(|e| LogError::Internal(format!("tokens: {e}")))?;
    bytes.push(b'\n');
    fsutil::atomic_replace(&token_path(data), &bytes, 0o600)?;
    Ok(())
}

fn lock_token_file(data: &Path) -> LogResult<fsutil::DirLockBlocking> {
    Ok(fsutil::DirLockBlocking::acquire(&data.join(TOKEN_LOCK))?)
}

/// Parses an expiry: a duration from `now` (`30d`, `12h`, `90m`, `45s`) or
/// an RFC 3339 time. It must lie in the future.
pub fn parse_expiry(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    let at = if let Ok(at) = text.parse::<Timestamp>() {
        at
    } else {
        let unit = text.chars().last().unwrap_or(' ');
        let number = text.strip_suffix(unit).unwrap_or("");
        let seconds_per: i64 = match unit {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => 0,
        };
        let count: i64 = match number.parse::<u32>() {
            Ok(n) if seconds_per > 0 && n > 0 && !number.starts_with('+') => i64::from(n),
            _ => {
                return Err(format!(
                    "bad expiry {text:?}: give a duration such as 30d, 12h, 90m or 45s, or an RFC 3339 time"
                ));
            }
        };
        now.checked_add(jiff::SignedDuration::from_secs(count * seconds_per))
            .map_err(|_| format!("expiry {text:?} is too far in the future"))?
    };
    if at <= now {
        return Err(format!("expiry {at} is not in the future"));
    }
    Ok(at)
}

fn check_name(what: &str, text: &str) -> LogResult<()> {
    if text.is_empty() || text.len() > MAX_PRINCIPAL_BYTES || text.chars().any(char::is_control) {
        return Err(LogError::Usage(format!(
            "{what} must be 1 to {MAX_PRINCIPAL_BYTES} bytes of printable characters"
        )));
    }
    Ok(())
}

/// Checks a spec; returns its roles sorted without repeats and its streams
/// sorted without repeats.
fn validate_spec(spec: &TokenSpec, by: &str, now: Timestamp) -> LogResult<TokenSpec> {
    check_name("the principal", &spec.principal)?;
    check_name("the creator's name", by)?;
    if spec.principal == SYSTEM_WRITER {
        return Err(LogError::Usage(format!(
            "the principal {SYSTEM_WRITER:?} is reserved for the log's own events"
        )));
    }
    let mut roles = spec.roles.clone();
    roles.sort();
    roles.dedup();
    if roles.is_empty() || roles.len() > MAX_ROLES {
        return Err(LogError::Usage(format!(
            "give 1 to {MAX_ROLES} roles (the shipped policy knows writer, reader, admin)"
        )));
    }
    let streams = match &spec.streams {
        None => None,
        Some(list) => {
            let mut list = list.clone();
            list.sort();
            list.dedup();
            if list.is_empty() || list.len() > MAX_SCOPE_STREAMS {
                return Err(LogError::Usage(format!(
                    "a token's stream scope lists 1 to {MAX_SCOPE_STREAMS} streams"
                )));
            }
            for stream in &list {
                stele_event::check_stream_name(stream).map_err(|e| {
                    LogError::Usage(format!(
                        "stream scope: {stream:?} is not a stream name: {e}"
                    ))
                })?;
                if stream.starts_with('_') {
                    return Err(LogError::Usage(format!(
                        "stream {stream:?} is reserved for the log's own events"
                    )));
                }
            }
            Some(list)
        }
    };
    if let Some(at) = spec.expires_at
        && at <= now
    {
        return Err(LogError::Usage(format!("expiry {at} is not in the future")));
    }
    Ok(TokenSpec {
        principal: spec.principal.clone(),
        roles,
        expires_at: spec.expires_at,
        streams,
    })
}

/// The attributes of the `token.created` event of `entry`.
pub fn created_attributes(entry: &TokenEntry) -> Value {
    SystemEvent::TokenCreated {
        actor: entry.created_by.clone(),
        attributes: entry.into(),
    }
    .attributes()
}

fn created_client_id(id: &str) -> String {
    client_id::token_created(id)
}

fn revoked_client_id(id: &str) -> String {
    client_id::token_revoked(id)
}

/// A token event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub index: u64,
    pub actor: String,
    pub attributes: Value,
}

/// What the log says about one token id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenEvents {
    /// The `token.created` event; `Err` when it was purged by retention
    /// (its content can no longer be compared).
    pub created: Option<Result<TokenEvent, u64>>,
    /// The `token.revoked` event's index, if the token was revoked.
    pub revoked: Option<u64>,
}

/// Compares a file record with what the log says. `Ok` when the record is
/// the one its `token.created` event granted; the error names the file,
/// the token and the event. Revocation is not a mismatch here (see
/// [`revocation_problem`]).
pub fn check_entry(entry: &TokenEntry, events: &TokenEvents) -> Result<(), String> {
    let id = &entry.id;
    match &events.created {
        None => Err(format!(
            "{TOKEN_FILE}: token {id} has no token.created event in the log (the record was not written by Stele)"
        )),
        Some(Err(index)) => Err(format!(
            "{TOKEN_FILE}: token {id}: its token.created event {index} was purged by retention, so the record cannot be checked"
        )),
        Some(Ok(event)) if event.index != entry.created_event => Err(format!(
            "{TOKEN_FILE}: token {id} names created_event {} but its token.created event is entry {}",
            entry.created_event, event.index
        )),
        Some(Ok(event)) => {
            if event.actor != entry.created_by || event.attributes != created_attributes(entry) {
                Err(format!(
                    "{TOKEN_FILE}: token {id} does not match its token.created event {} (principal, roles, expiry, streams, secret or creator differ)",
                    event.index
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The disagreement between a record's revocation and the log's, if any:
/// revoked in the log but not in the file, or the reverse.
pub fn revocation_problem(entry: &TokenEntry, events: &TokenEvents) -> Option<String> {
    let id = &entry.id;
    match (events.revoked, entry.revoked_event) {
        (Some(index), Some(named)) if index == named => None,
        (Some(index), _) => Some(format!(
            "{TOKEN_FILE}: token {id} is revoked by the token.revoked event {index}, but the record does not say so (it stays refused)"
        )),
        (None, Some(named)) => Some(format!(
            "{TOKEN_FILE}: token {id} names revoked_event {named}, but the log has no token.revoked event for it"
        )),
        (None, None) if entry.revoked_at.is_some() => Some(format!(
            "{TOKEN_FILE}: token {id} is marked revoked, but the log has no token.revoked event for it"
        )),
        (None, None) => None,
    }
}

/// Checks every record of `tokens.json` against the log; each problem is
/// (file, what). Used by `verify`.
pub fn check_token_file(log: &LogReader) -> LogResult<Vec<(String, String)>> {
    let data = log.layout().root.clone();
    let path = token_path(&data).display().to_string();
    let file = match read_token_file(&data) {
        Ok(file) => file,
        Err(e) => return Ok(vec![(path, e.to_string())]),
    };
    let mut problems = Vec::new();
    if file.tokens.is_empty() {
        return Ok(problems);
    }
    let known = &log.idempotency_keys()?;
    (|| -> LogResult<Vec<(String, String)>> {
        let mut seen = std::collections::HashSet::new();
        for entry in &file.tokens {
            if !seen.insert(entry.id.clone()) {
                problems.push((path.clone(), format!("token {} is listed twice", entry.id)));
                continue;
            }
            let events = token_events_in(log, known, &entry.id)?;
            // The messages name the file themselves; the location does too.
            let unprefixed = |e: String| match e.strip_prefix(&format!("{TOKEN_FILE}: ")) {
                Some(rest) => rest.to_string(),
                None => e,
            };
            if let Err(e) = check_entry(entry, &events) {
                problems.push((path.clone(), unprefixed(e)));
            }
            if let Some(e) = revocation_problem(entry, &events) {
                problems.push((path.clone(), unprefixed(e)));
            }
        }
        Ok(problems)
    })()
}

/// The system event appended under `client_id`, if any (hash matches of
/// the idempotency index are confirmed against the stored event).
fn system_event(
    log: &LogReader,
    known: &HashMap<u64, Vec<u64>>,
    client_id: &str,
) -> LogResult<Option<Result<StoredEvent, u64>>> {
    let hash = crate::prepare::idempotency_hash(SYSTEM_WRITER, client_id);
    for index in known.get(&hash).into_iter().flatten() {
        match log.get(EntryIndex(*index)) {
            Ok(stored) => {
                let envelope = &stored.envelope;
                if envelope.stream == SYSTEM_STREAM
                    && envelope.writer == SYSTEM_WRITER
                    && envelope.event.id.as_deref() == Some(client_id)
                {
                    return Ok(Some(Ok(stored)));
                }
            }
            Err(LogError::Purged { tombstone, .. }) if tombstone.stream == SYSTEM_STREAM => {
                return Ok(Some(Err(*index)));
            }
            Err(LogError::Purged { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn token_events_in(
    log: &LogReader,
    known: &HashMap<u64, Vec<u64>>,
    id: &str,
) -> LogResult<TokenEvents> {
    let created = system_event(log, known, &created_client_id(id))?.map(|found| {
        found.map(|stored| TokenEvent {
            index: stored.index.0,
            actor: stored.envelope.event.actor.clone(),
            attributes: Value::Object(stored.envelope.event.attributes.clone().unwrap_or_default()),
        })
    });
    let revoked = system_event(log, known, &revoked_client_id(id))?.map(|found| match found {
        Ok(stored) => stored.index.0,
        Err(index) => index,
    });
    Ok(TokenEvents { created, revoked })
}

/// A token just created: its record and its text, shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub entry: TokenEntry,
    pub text: String,
}

impl Governance<'_> {
    /// What the log says about token `id` (its `token.created` and
    /// `token.revoked` events).
    pub fn token_events(&mut self, id: &str) -> LogResult<TokenEvents> {
        self.writer.load_idempotency()?;
        let reader = self.writer.reader().clone();
        self.writer
            .with_idempotency(|known| token_events_in(&reader, known, id))?
    }

    /// Creates a token. Log first: the spec is validated and the file read
    /// before anything is written; then the `token.created` event is made
    /// durable, then the record is added to `tokens.json`, and only then is
    /// the token text returned.
    ///
    /// Crash story: a crash after the event and before the file leaves a
    /// grant whose text was never shown to anyone (it existed only in this
    /// process); no record names it, so it can never authenticate. The
    /// event stays as a trace of the attempt; nothing needs finishing.
    pub fn create_token(
        &mut self,
        spec: &TokenSpec,
        by: &str,
        now: Timestamp,
    ) -> LogResult<CreatedToken> {
        self.writer.check_writable()?;
        self.check_clock(now, "create a token")?;
        let spec = validate_spec(spec, by, now)?;
        let data = self.writer.layout().root.clone();
        let _lock = lock_token_file(&data)?;
        let mut file = read_token_file(&data)?;
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        stele_store::keys::random_bytes(&mut id)?;
        stele_store::keys::random_bytes(&mut secret)?;
        let id = stele_tlog::hash::hex(&id);
        if file.tokens.iter().any(|t| t.id == id) {
            return Err(LogError::Internal(format!("token id {id} drawn twice")));
        }
        let secret_text = URL_SAFE_NO_PAD.encode(secret);
        let mut entry = TokenEntry {
            id: id.clone(),
            principal: spec.principal,
            roles: spec.roles,
            secret_sha256: sha256_hex(secret_text.as_bytes()),
            created_at: now.to_string(),
            created_by: by.to_string(),
            created_event: 0,
            expires_at: spec.expires_at.map(|t| t.to_string()),
            streams: spec.streams,
            revoked_at: None,
            revoked_by: None,
            revoked_event: None,
        };
        // Durable step 1: the grant is in the log.
        let event = SystemEvent::TokenCreated {
            actor: entry.created_by.clone(),
            attributes: (&entry).into(),
        };
        entry.created_event = (self.writer.append_system(&event, now)?.index).0;
        // Durable step 2: the record is in the file (atomic replace).
        file.tokens.push(entry.clone());
        write_token_file(&data, &file)?;
        Ok(CreatedToken {
            entry,
            text: format!("stele_{id}_{secret_text}"),
        })
    }

    /// Revokes a token. Log first: the `token.revoked` event is made
    /// durable, then the record is marked revoked. Revoking a token the
    /// log already has revoked appends nothing and completes the record.
    ///
    /// Crash story: a crash after the event and before the file leaves a
    /// record that still looks active; the event wins (the server refuses
    /// the token), and the next [`Governance::finish_token_file`] (at `stele
    /// serve` start and every `stele token` change) marks the record.
    pub fn revoke_token(&mut self, id: &str, by: &str, now: Timestamp) -> LogResult<TokenEntry> {
        self.writer.check_writable()?;
        check_name("the revoker's name", by)?;
        let data = self.writer.layout().root.clone();
        let _lock = lock_token_file(&data)?;
        let mut file = read_token_file(&data)?;
        let position = file
            .tokens
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| LogError::NotFound(format!("no token with id {id:?}")))?;
        let events = self.token_events(id)?;
        let entry = &mut file.tokens[position];
        match events.revoked {
            Some(index) => {
                if entry.revoked_event == Some(index) {
                    return Ok(entry.clone());
                }
                entry.revoked_event = Some(index);
                entry.revoked_at.get_or_insert_with(|| now.to_string());
            }
            None => {
                let at = now.to_string();
                // Durable step 1: the revocation is in the log.
                let event = SystemEvent::TokenRevoked {
                    actor: by.to_string(),
                    attributes: system_event::TokenRevoked {
                        token: entry.id.clone(),
                        principal: entry.principal.clone(),
                        created_event: entry.created_event,
                        revoked_at: at.clone(),
                    },
                };
                let index = self.writer.append_system(&event, now)?.index;
                entry.revoked_at = Some(at);
                entry.revoked_by = Some(by.to_string());
                entry.revoked_event = Some(index.0);
            }
        }
        let out = entry.clone();
        // Durable step 2: the record says so (atomic replace).
        write_token_file(&data, &file)?;
        Ok(out)
    }

    /// Marks revoked every record whose `token.revoked` event is in the log
    /// but not in the file (a revocation a crash interrupted, or an edit
    /// that tried to undo one). Returns the ids it marked. Never grants:
    /// records without a matching `token.created` event are left for the
    /// server to refuse and for `verify` to report.
    pub fn finish_token_file(&mut self) -> LogResult<Vec<String>> {
        let data = self.writer.layout().root.clone();
        let _lock = lock_token_file(&data)?;
        let mut file = read_token_file(&data)?;
        let mut marked = Vec::new();
        for entry in &mut file.tokens {
            let events = self.token_events(&entry.id)?;
            if let Some(index) = events.revoked
                && entry.revoked_event != Some(index)
            {
                entry.revoked_event = Some(index);
                entry
                    .revoked_at
                    .get_or_insert_with(|| Timestamp::now().to_string());
                marked.push(entry.id.clone());
            }
        }
        if !marked.is_empty() {
            // Atomic replace: the old or the new file survives a crash, and
            // either way the events keep the tokens refused.
            write_token_file(&data, &file)?;
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_expiry("30d", now).unwrap().to_string(),
            "2026-01-31T00:00:00Z"
        );
        assert_eq!(
            parse_expiry("2h", now).unwrap().to_string(),
            "2026-01-01T02:00:00Z"
        );
        assert!(parse_expiry("2027-01-01T00:00:00Z", now).is_ok());
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "+1d",
            "1w",
            "2025-01-01T00:00:00Z",
            "30 d",
        ] {
            assert!(parse_expiry(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commitment_is_domain_separated() {
        let hash = sha256_hex(b"secret");
        assert_ne!(secret_commitment(&hash), sha256_hex(hash.as_bytes()));
        assert_eq!(secret_commitment(&hash).len(), 64);
    }
}
