//! Bearer API tokens at the server: parsing the token text, finding its
//! record in `tokens.json`, and accepting it only when the record matches
//! the log's `token.created` event and no `token.revoked` event exists
//! ([`stele_log::tokens::check_entry`]). The file format, the events and
//! the create/revoke protocol live in [`stele_log::tokens`].
//!
//! Token text: `stele_<id>_<secret>`, where `id` (12 hex digits) finds the
//! record and `secret` (32 random bytes, base64url) is checked, in constant
//! time, against its stored SHA-256. The server re-reads the file when it
//! changes; what the log says about each token id is looked up once (on
//! the blocking pool, under the log lock) and kept, because while the
//! server runs it alone appends token events, and it forgets an id's
//! answer whenever it appends one for it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stele_log::Log;
use stele_log::sequencer::lock_log;
use stele_log::tokens::{TokenEntry, TokenEvents, read_token_file};

pub use stele_log::tokens::{Role, token_path};

/// Lowercase hex SHA-256 (token hashes, certificate fingerprints).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    stele_log::tokens::sha256_hex(bytes)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
    /// "token" or "mtls".
    pub method: &'static str,
    /// The streams a scoped token is limited to; `None` for every stream.
    pub streams: Option<Vec<String>>,
}

impl Principal {
    /// The role names, as the access policy sees them.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_string()).collect()
    }
}

/// Why a bearer token was refused (the `reason` of metrics and of
/// `auth.failed` samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Not of the form `stele_<id>_<secret>`.
    Malformed,
    /// No record with this id.
    UnknownToken,
    /// The record exists; the secret does not match it.
    WrongSecret,
    /// The record does not match its `token.created` event (or has none).
    NotInLog,
    Revoked,
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed_token",
            Refusal::UnknownToken => "unknown_token",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::NotInLog => "token_not_in_log",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
        }
    }

    /// The message of the 401 (the same for every refusal that could tell
    /// a prober which ids exist).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed token: expected stele_<id>_<secret>",
            Refusal::Expired => "token expired",
            _ => "unknown or revoked token",
        }
    }
}

/// A refused token: why, and the id it claimed when that is well formed
/// (12 hex digits; never any of the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Refusal,
    pub token_id: Option<String>,
}

#[derive(Debug, Default)]
struct FileCache {
    stamp: Option<(SystemTime, u64)>,
    entries: HashMap<String, TokenEntry>,
    /// Ids already reported as not matching the log in this version of the
    /// file (one loud error per record, not one per request).
    reported: HashSet<String>,
}

/// The server's view of the token file and of the token events.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    file: Mutex<FileCache>,
    /// What the log says about each token id looked up so far.
    ledger: Mutex<HashMap<String, Arc<TokenEvents>>>,
}

fn well_formed_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TokenStore {
    pub fn new(data: &Path) -> TokenStore {
        TokenStore {
            path: token_path(data),
            file: Mutex::new(FileCache::default()),
            ledger: Mutex::new(HashMap::new()),
        }
    }

    /// The record with this id, from the file as it is now (re-read when
    /// its modification time or length changed).
    fn entry(&self, id: &str) -> Result<Option<TokenEntry>, String> {
        let meta = std::fs::metadata(&self.path).ok();
        let stamp = meta
            .as_ref()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut cache = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if cache.stamp != stamp || stamp.is_none() {
            let data = self.path.parent().unwrap_or(Path::new("."));
            let file = read_token_file(data).map_err(|e| e.to_string())?;
            *cache = FileCache {
                stamp,
                entries: file.tokens.into_iter().map(|t| (t.id.clone(), t)).collect(),
                reported: HashSet::new(),
            };
        }
        Ok(cache.entries.get(id).cloned())
    }

    /// Forgets what the log said about `id` (after this server appended a
    /// token event for it).
    pub fn forget(&self, id: &str) {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// What the log says about `id`: from the ledger, or looked up under
    /// the log lock on the blocking pool.
    async fn events(&self, log: &Arc<Mutex<Log>>, id: &str) -> Result<Arc<TokenEvents>, String> {
        if let Some(known) = self
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(known.clone());
        }
        let shared = log.clone();
        let owned = id.to_string();
        let events = tokio::task::spawn_blocking(move || {
            lock_log(&shared).governance().token_events(&owned)
        })
        .await
        .map_err(|e| format!("token lookup: {e}"))?
        .map_err(|e| e.to_string())?;
        let events = Arc::new(events);
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), events.clone());
        Ok(events)
    }

    /// Checks a bearer token. `Ok(Err(_))` is a refusal (401); `Err` means
    /// the token file or the log cannot be read (503).
    pub async fn authenticate(
        &self,
        log: &Arc<Mutex<Log>>,
        token: &str,
    ) -> Result<Result<Principal, Refused>, String> {
        let refuse = |reason, token_id: Option<&str>| {
            Ok(Err(Refused {
                reason,
                token_id: token_id.map(str::to_string),
            }))
        };
        let Some((id, secret)) = token
            .strip_prefix("stele_")
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, _)| well_formed_id(id))
        else {
            return refuse(Refusal::Malformed, None);
        };
        let Some(entry) = self.entry(id)? else {
            return refuse(Refusal::UnknownToken, Some(id));
        };
        let hash = sha256_hex(secret.as_bytes());
        let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
            entry.secret_sha256.as_bytes(),
            hash.as_bytes(),
        )
        .is_ok();
        if !equal {
            return refuse(Refusal::WrongSecret, Some(id));
        }
        let events = self.events(log, id).await?;
        if let Err(problem) = stele_log::tokens::check_entry(&entry, &events) {
            self.report(id, &problem);
            return refuse(Refusal::NotInLog, Some(id));
        }
        if events.revoked.is_some() || entry.revoked_at.is_some() || entry.revoked_event.is_some() {
            if let Some(problem) = stele_log::tokens::revocation_problem(&entry, &events) {
                self.report(id, &problem);
            }
            return refuse(Refusal::Revoked, Some(id));
        }
        if entry.expired(jiff::Timestamp::now()) {
            return refuse(Refusal::Expired, Some(id));
        }
        Ok(Ok(Principal {
            name: entry.principal,
            roles: entry.roles,
            method: "token",
            streams: entry.streams,
        }))
    }

    /// Logs a record that disagrees with the log, once per file version.
    fn report(&self, id: &str, problem: &str) {
        let mut cache = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if cache.reported.insert(id.to_string()) {
            tracing::error!(
                file = %self.path.display(),
                token = id,
                "REFUSED TOKEN RECORD: {problem}; the token is refused until the record matches the log"
            );
        }
    }
}
