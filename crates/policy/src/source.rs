//! [`PolicySource`]: the exact texts a policy was built from (the TOML file
//! and its Cedar side file), their loading from disk — the only I/O in this
//! crate — and a stable serialization to store applied versions.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// The texts a policy is built from, with the names used in error messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// Name of the TOML file (its path as given), for messages.
    pub toml_name: String,
    /// The TOML text.
    pub toml: String,
    /// Name of the Cedar side file (its path), when `[access] cedar_file`
    /// is used.
    pub cedar_name: Option<String>,
    /// The Cedar side file's text, when `[access] cedar_file` is used.
    pub cedar: Option<String>,
}

/// The tag of the stored form, so a future format can be told apart.
const STORED_FORMAT: &str = "stele/policy-source/v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    #[serde(flatten)]
    source: PolicySource,
}

impl PolicySource {
    /// Reads the TOML file at `path` and, if its `[access]` table names a
    /// `cedar_file`, that file (relative to the TOML file's directory).
    ///
    /// Content is not checked here (a TOML file that does not parse is
    /// returned as is, without a side file): [`crate::Policy::from_source`]
    /// reports every problem.
    pub fn load(path: &Path) -> Result<PolicySource, PolicyError> {
        let toml = read_text(path)?;
        let side_file = cedar_file_of(&toml);
        let (cedar_name, cedar) = match side_file {
            None => (None, None),
            Some(relative) => {
                let cedar_path = path.parent().map_or_else(
                    || Path::new(&relative).to_path_buf(),
                    |dir| dir.join(&relative),
                );
                let text = read_text(&cedar_path)?;
                (Some(cedar_path.display().to_string()), Some(text))
            }
        };
        Ok(PolicySource {
            toml_name: path.display().to_string(),
            toml,
            cedar_name,
            cedar,
        })
    }

    /// A source with only a TOML text (inline Cedar or the shipped default
    /// policies).
    pub fn from_toml(toml_name: impl Into<String>, toml: impl Into<String>) -> PolicySource {
        PolicySource {
            toml_name: toml_name.into(),
            toml: toml.into(),
            cedar_name: None,
            cedar: None,
        }
    }

    /// A stable, self-contained serialization: one JSON object
    /// `{"format":"stele/policy-source/v1","toml_name":…,"toml":…,"cedar_name":…,"cedar":…}`
    /// (members in that order, absent ones as `null`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            format: STORED_FORMAT.to_owned(),
            source: self.clone(),
        };
        // Serializing strings and options to a Vec cannot fail.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Decodes [`PolicySource::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PolicySource, PolicyError> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::BadStoredSource {
                reason: e.to_string(),
            })?;
        if stored.format != STORED_FORMAT {
            return Err(PolicyError::BadStoredSource {
                reason: format!("unknown format {:?}", stored.format),
            });
        }
        Ok(stored.source)
    }
}

fn read_text(path: &Path) -> Result<String, PolicyError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 {
        path: path.display().to_string(),
    })
}

/// `[access] cedar_file` of a TOML text, if it parses and has one.
pub(crate) fn cedar_file_of(toml: &str) -> Option<String> {
    let document = toml::de::DeTable::parse(toml).ok()?;
    let access = document.get_ref().get("access")?.get_ref().as_table()?;
    let file = access.get("cedar_file")?.get_ref().as_str()?;
    Some(file.to_owned())
}
