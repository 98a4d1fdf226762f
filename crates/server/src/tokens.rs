//! Bearer API tokens: random, shown once, stored only as SHA-256 hashes,
//! compared in constant time, each bound to a principal with roles.
//!
//! Token text: `stele_<id>_<secret>`, where `id` (12 hex digits) finds the
//! record and `secret` (32 random bytes, base64url) is checked against its
//! stored hash. The store is `DATA/tokens.json`, replaced atomically; the
//! server re-reads it when it changes, so a revocation takes effect at the
//! next request without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use stele_store::fsutil;

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

/// One stored token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub principal: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The token file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub version: u32,
    pub tokens: Vec<TokenRecord>,
}

/// Lowercase hex SHA-256 (token hashes, certificate fingerprints).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    stele_tlog::hash::hex(digest.as_ref())
}

/// Path of the token file in a data directory.
pub fn token_path(data: &Path) -> PathBuf {
    data.join("tokens.json")
}

fn read_file(path: &Path) -> Result<TokenFile, String> {
    match fsutil::read_optional(path).map_err(|e| e.to_string())? {
        None => Ok(TokenFile {
            version: 1,
            tokens: Vec::new(),
        }),
        Some(bytes) => {
            let file: TokenFile =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            if file.version != 1 {
                return Err(format!(
                    "{}: unsupported token file version {}",
                    path.display(),
                    file.version
                ));
            }
            Ok(file)
        }
    }
}

/// Changes the token file under its own lock (the server may be running).
fn update<T>(
    data: &Path,
    change: impl FnOnce(&mut TokenFile) -> Result<T, String>,
) -> Result<T, String> {
    let _lock =
        fsutil::DirLockBlocking::acquire(&data.join("tokens.lock")).map_err(|e| e.to_string())?;
    let path = token_path(data);
    let mut file = read_file(&path)?;
    let out = change(&mut file)?;
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    fsutil::atomic_replace(&path, &bytes, 0o600).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Creates a token and returns (its record, the token text shown once).
pub fn create(
    data: &Path,
    principal: &str,
    roles: &[Role],
) -> Result<(TokenRecord, String), String> {
    if principal.is_empty() || principal.len() > 256 || principal.chars().any(|c| c.is_control()) {
        return Err("principal must be 1..=256 printable characters".into());
    }
    if roles.is_empty() {
        return Err(
            "give at least one role (the shipped policy knows writer, reader, admin)".into(),
        );
    }
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    stele_store::keys::random_bytes(&mut id).map_err(|e| e.to_string())?;
    stele_store::keys::random_bytes(&mut secret).map_err(|e| e.to_string())?;
    let id = stele_tlog::hash::hex(&id);
    let secret_text = URL_SAFE_NO_PAD.encode(secret);
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let record = TokenRecord {
        id: id.clone(),
        principal: principal.to_string(),
        roles,
        secret_sha256: sha256_hex(secret_text.as_bytes()),
        created_at: jiff::Timestamp::now().to_string(),
        revoked_at: None,
    };
    let stored = record.clone();
    update(data, move |file| {
        file.version = 1;
        file.tokens.push(stored);
        Ok(())
    })?;
    Ok((record, format!("stele_{id}_{secret_text}")))
}

/// Lists tokens (never their secrets: only hashes are stored).
pub fn list(data: &Path) -> Result<Vec<TokenRecord>, String> {
    Ok(read_file(&token_path(data))?.tokens)
}

/// Revokes a token by id.
pub fn revoke(data: &Path, id: &str) -> Result<TokenRecord, String> {
    update(data, |file| {
        let record = file
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| format!("no token with id {id:?}"))?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(jiff::Timestamp::now().to_string());
        }
        Ok(record.clone())
    })
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
    /// "token" or "mtls".
    pub method: &'static str,
}

impl Principal {
    /// The role names, as the access policy sees them.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_string()).collect()
    }
}

/// The server's view of the token file, re-read when it changes.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, u64, Vec<TokenRecord>)>,
}

impl TokenStore {
    pub fn new(data: &Path) -> TokenStore {
        TokenStore {
            path: token_path(data),
            cache: Mutex::new((None, 0, Vec::new())),
        }
    }

    /// The record with this id, from the file as it is now (re-read when
    /// its modification time or length changed).
    fn record(&self, id: &str) -> Result<Option<TokenRecord>, String> {
        let meta = std::fs::metadata(&self.path).ok();
        let stamp = meta.as_ref().and_then(|m| m.modified().ok());
        let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != stamp || cache.1 != len || stamp.is_none() {
            let file = read_file(&self.path)?;
            *cache = (stamp, len, file.tokens);
        }
        Ok(cache.2.iter().find(|r| r.id == id).cloned())
    }

    /// Checks a bearer token. `None` for unknown, malformed or revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, String> {
        let Some(rest) = token.strip_prefix("stele_") else {
            return Ok(None);
        };
        let Some((id, secret)) = rest.split_once('_') else {
            return Ok(None);
        };
        let hash = sha256_hex(secret.as_bytes());
        if let Some(record) = self.record(id)? {
            let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
                record.secret_sha256.as_bytes(),
                hash.as_bytes(),
            )
            .is_ok();
            if equal && record.revoked_at.is_none() {
                return Ok(Some(Principal {
                    name: record.principal,
                    roles: record.roles,
                    method: "token",
                }));
            }
            return Ok(None);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let (record, token) = create(dir.path(), "ci-bot", &[Role::writer()]).unwrap();
        let store = TokenStore::new(dir.path());
        let principal = store.authenticate(&token).unwrap().unwrap();
        assert_eq!(principal.name, "ci-bot");
        assert_eq!(principal.role_names(), vec!["writer".to_string()]);
        assert!(Role::parse("Admin").is_err() && Role::parse("").is_err());
        // The file holds no secret.
        let text = std::fs::read_to_string(token_path(dir.path())).unwrap();
        // The secret is everything after `stele_<id>_`; being URL-safe
        // base64, it may itself hold `_`.
        let secret = token.splitn(3, '_').nth(2).unwrap();
        assert_eq!(secret.len(), 43);
        assert!(!text.contains(secret));
        // A wrong secret with the right id, and garbage, are refused.
        let wrong = format!("stele_{}_{}", record.id, "A".repeat(43));
        assert_eq!(store.authenticate(&wrong).unwrap(), None);
        assert_eq!(store.authenticate("Bearer nonsense").unwrap(), None);
        revoke(dir.path(), &record.id).unwrap();
        assert_eq!(store.authenticate(&token).unwrap(), None);
        assert!(list(dir.path()).unwrap()[0].revoked_at.is_some());
    }
}
