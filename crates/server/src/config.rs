//! `stele serve` configuration: one TOML file, every field documented here
//! where it is declared, with defaults that give the embedded local setup.
//!
//! Dangerous settings are refused at start-up by [`Config::validate`] with a
//! message saying how to fix them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::tokens::Role;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory. Created, with fresh keys, on first start.
    pub data: PathBuf,
    /// Origin of a log created on first start (checkpoint first line).
    pub origin: String,
    /// Addresses to listen on. All listeners use TLS when `tls` is set.
    pub listen: Vec<SocketAddr>,
    /// TLS certificate and key; without it listeners speak plain HTTP,
    /// which is allowed only on loopback addresses unless forced.
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP on a non-loopback address anyway (credentials and
    /// audit events then cross the network in clear). Off by default.
    pub allow_plain_http: bool,
    /// Request and queue limits.
    pub limits: Limits,
    /// How long a connection may take to send a request, a body, or
    /// nothing at all.
    pub timeouts: Timeouts,
    /// How often a checkpoint is published while events arrive, in
    /// milliseconds.
    pub publish_interval_ms: u64,
    /// Client certificates accepted as principals (with `tls.client_ca`).
    pub client_certs: Vec<ClientCert>,
    /// The policy file (TOML; see docs/policy.md). Applied at start when it
    /// differs from the log's active policy, and re-read on SIGHUP; a start
    /// is refused rather than revert a version applied over the API or
    /// with `stele policy apply` (docs/server.md). Without
    /// it the log's last applied policy is enforced (the shipped default
    /// until one is applied).
    pub policy: Option<PathBuf>,
    /// Seconds between announcing that an epoch is due (a `retention.due`
    /// event) and purging it, measured on this process's monotonic clock
    /// with the wall clock agreeing: a clock jump alone never purges.
    /// At most 30 days.
    pub retention_grace_seconds: u64,
    /// A file outside the data directory (another disk or host) where the
    /// server keeps a copy of each checkpoint it publishes. At start the
    /// log refuses to open if it no longer reaches that checkpoint: a data
    /// directory restored from a backup, or rolled back, is noticed before
    /// it can sign a second tree of a size it already signed.
    pub anchor: Option<PathBuf>,
    /// The share of one core, in percent (1 to 100), that the scheduled
    /// full verification may take while events are being appended; it
    /// rests between small windows to keep to it, and runs at full speed
    /// while nothing is appended. 100: never rests.
    pub verify_cpu_percent: u8,
    /// Keep a search index of the log in memory (docs/search.md): built
    /// from the log at start, fed as batches become durable. Off, every
    /// search reads the entries it covers from the log (and a search over
    /// more than 250,000 of them is refused with 503 `index_building`).
    pub search_index: bool,
}

/// TLS settings. Files are re-read when they change, without a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are verified (mTLS).
    /// Clients without a certificate may still use bearer tokens.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Seconds between checks of the files for changes.
    #[serde(default = "default_reload_seconds")]
    pub reload_seconds: u64,
}

fn default_reload_seconds() -> u64 {
    5
}

/// A client certificate mapped to a principal, by the SHA-256 fingerprint
/// of its DER encoding (pinning: a certificate is accepted only if it is
/// both signed by `client_ca` and listed here).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCert {
    /// Lowercase hex SHA-256 of the certificate's DER bytes.
    pub sha256: String,
    /// Principal name recorded as the writer of events it appends.
    pub principal: String,
    pub roles: Vec<Role>,
}

/// Limits on requests; each violation is a 4xx (or 503) naming the limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one request; at most [`stele_log::MAX_BATCH`]
    /// (65,536), the most one append can hold.
    pub max_events_per_request: usize,
    /// Requests that may wait for the writer; beyond it, 503 + Retry-After.
    pub queue_depth: usize,
    /// Most concurrent connections, all listeners together; further
    /// connections are closed at once.
    pub max_connections: usize,
    /// Request bodies held in memory at once, in bytes (each request counts
    /// its Content-Length, or `max_body_bytes` when it sends none); beyond
    /// it, 503 + Retry-After. Bounds memory under any load.
    pub max_inflight_body_bytes: usize,
    /// Failed authentications (401s) are recorded as at most one
    /// `auth.failed` event per window of this many seconds, carrying the
    /// window's count and a few samples (1..=86400).
    pub auth_failure_window_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_events_per_request: 10_000,
            queue_depth: 1024,
            max_connections: 4096,
            max_inflight_body_bytes: 256 * 1024 * 1024,
            auth_failure_window_seconds: 60,
        }
    }
}

/// Time limits on connections, in seconds; each bounds how long a client
/// that stops sending can hold one of the `max_connections` slots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// A new connection must begin its first request within this time (on
    /// HTTP/1, each request's headers must also arrive within it, which
    /// bounds how long a kept-alive connection waits for its next
    /// request); otherwise it is closed.
    pub header_read_seconds: u64,
    /// A request body must arrive whole within this time of the handler
    /// starting to read it; otherwise 408 `body_timeout`.
    pub body_read_seconds: u64,
    /// A connection with no request in flight that sends and receives
    /// nothing for this long is closed (gracefully: HTTP/2 gets a GOAWAY).
    pub idle_seconds: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read_seconds: 10,
            body_read_seconds: 30,
            idle_seconds: 60,
        }
    }
}

/// Longest accepted value of each timeout: one hour.
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("./stele-data"),
            origin: "localhost/stele".into(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7800))],
            tls: None,
            allow_plain_http: false,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            publish_interval_ms: 200,
            client_certs: Vec::new(),
            policy: None,
            retention_grace_seconds: stele_log::DEFAULT_RETENTION_GRACE.as_secs(),
            anchor: None,
            verify_cpu_percent: stele_log::verify::CpuPercent::BACKGROUND.get(),
            search_index: true,
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Refuses dangerous or impossible settings. Returns warnings to log
    /// loudly for settings that are allowed but risky.
    pub fn validate(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        if self.listen.is_empty() {
            return Err("no listen address: set `listen = [\"127.0.0.1:7800\"]`".into());
        }
        if self.tls.is_none() {
            for addr in &self.listen {
                if !addr.ip().is_loopback() {
                    if self.allow_plain_http {
                        warnings.push(format!(
                            "PLAIN HTTP ON {addr}: tokens and audit events cross the network unencrypted (allow_plain_http = true)"
                        ));
                    } else {
                        return Err(format!(
                            "refusing plain HTTP on non-loopback address {addr}: configure [tls] cert and key, or set allow_plain_http = true (--allow-plain-http) if you really mean it"
                        ));
                    }
                }
            }
        }
        if !(1..=86_400).contains(&self.limits.auth_failure_window_seconds) {
            return Err(format!(
                "limits.auth_failure_window_seconds = {}: use 1 to 86400",
                self.limits.auth_failure_window_seconds
            ));
        }
        if !self.client_certs.is_empty()
            && self
                .tls
                .as_ref()
                .and_then(|t| t.client_ca.as_ref())
                .is_none()
        {
            return Err("client_certs are listed but tls.client_ca is not set: client certificates cannot be verified".into());
        }
        for cert in &self.client_certs {
            if cert.sha256.len() != 64
                || !cert
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(format!(
                    "client_certs: {:?} is not a lowercase hex SHA-256",
                    cert.sha256
                ));
            }
        }
        if self.limits.max_body_bytes == 0
            || self.limits.max_events_per_request == 0
            || self.limits.queue_depth == 0
        {
            return Err("limits must be positive".into());
        }
        if self.limits.max_events_per_request > stele_log::MAX_BATCH {
            return Err(format!(
                "limits.max_events_per_request = {} is more than one append can hold ({}): lower it to at most {}",
                self.limits.max_events_per_request,
                stele_log::MAX_BATCH,
                stele_log::MAX_BATCH
            ));
        }
        if self.limits.max_connections == 0 {
            return Err("limits.max_connections must be positive".into());
        }
        for (name, seconds) in [
            ("header_read_seconds", self.timeouts.header_read_seconds),
            ("body_read_seconds", self.timeouts.body_read_seconds),
            ("idle_seconds", self.timeouts.idle_seconds),
        ] {
            if seconds == 0 || seconds > MAX_TIMEOUT_SECONDS {
                return Err(format!(
                    "timeouts.{name} = {seconds} is out of range: use 1..={MAX_TIMEOUT_SECONDS} seconds"
                ));
            }
        }
        if self.limits.max_inflight_body_bytes < self.limits.max_body_bytes
            || self.limits.max_inflight_body_bytes > u32::MAX as usize
        {
            return Err(
                "limits.max_inflight_body_bytes must be at least max_body_bytes and below 4 GiB"
                    .into(),
            );
        }
        if self.retention_grace_seconds > 30 * 86_400 {
            return Err("retention_grace_seconds must be at most 2592000 (30 days)".into());
        }
        if stele_log::verify::CpuPercent::new(self.verify_cpu_percent).is_none() {
            return Err("verify_cpu_percent must be 1..=100".into());
        }
        if self.publish_interval_ms == 0 || self.publish_interval_ms > 60_000 {
            return Err("publish_interval_ms must be 1..=60000".into());
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// More events per request than one append holds would make every
    /// such request fail on the writer: refused at start, naming the bound.
    #[test]
    fn events_per_request_above_the_batch_limit_are_refused() {
        let mut config = Config::default();
        config.limits.max_events_per_request = stele_log::MAX_BATCH;
        assert!(config.validate().is_ok());
        config.limits.max_events_per_request = stele_log::MAX_BATCH + 1;
        let error = config.validate().unwrap_err();
        assert!(error.contains("max_events_per_request"), "{error}");
        assert!(error.contains("65536"), "{error}");
    }

    /// The embedded default: `./stele-data`, plain HTTP on loopback port
    /// 7800, nothing to warn about. Plain HTTP elsewhere is refused unless
    /// forced, and forcing it is warned about loudly, naming the address.
    #[test]
    fn defaults_and_the_plain_http_warning() {
        let config = Config::default();
        assert_eq!(config.data, PathBuf::from("./stele-data"));
        assert_eq!(config.listen, vec!["127.0.0.1:7800".parse().unwrap()]);
        assert!(config.tls.is_none());
        assert_eq!(config.validate().unwrap(), Vec::<String>::new());
        let ipv6_loopback = Config {
            listen: vec!["[::1]:7800".parse().unwrap()],
            ..Config::default()
        };
        assert_eq!(ipv6_loopback.validate().unwrap(), Vec::<String>::new());

        let exposed = Config {
            listen: vec![
                "127.0.0.1:7800".parse().unwrap(),
                "10.1.2.3:7800".parse().unwrap(),
            ],
            ..Config::default()
        };
        let error = exposed.validate().unwrap_err();
        assert!(error.contains("10.1.2.3:7800"), "{error}");
        let forced = Config {
            allow_plain_http: true,
            ..exposed
        };
        let warnings = forced.validate().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("PLAIN HTTP ON 10.1.2.3:7800"),
            "{warnings:?}"
        );
    }

    /// Without a connection slot nothing could ever be served.
    #[test]
    fn zero_connections_are_refused() {
        let mut config = Config::default();
        config.limits.max_connections = 0;
        let error = config.validate().unwrap_err();
        assert!(error.contains("max_connections"), "{error}");
    }

    /// The verification's share of a core is a percentage: 0 would never
    /// finish, and above 100 means nothing.
    #[test]
    fn verify_cpu_percent_out_of_range_is_refused() {
        for (percent, ok) in [
            (0, false),
            (1, true),
            (100, true),
            (101, false),
            (255, false),
        ] {
            let config = Config {
                verify_cpu_percent: percent,
                ..Config::default()
            };
            match config.validate() {
                Ok(_) => assert!(ok, "{percent} accepted"),
                Err(error) => {
                    assert!(!ok, "{percent} refused: {error}");
                    assert!(error.contains("verify_cpu_percent"), "{error}");
                }
            }
        }
        let parsed: Config = toml::from_str("verify_cpu_percent = 25\n").unwrap();
        assert_eq!(parsed.verify_cpu_percent, 25);
    }

    /// Every timeout must be at least a second and at most an hour.
    #[test]
    fn timeouts_out_of_range_are_refused() {
        assert!(Config::default().validate().is_ok());
        let setters: [fn(&mut Timeouts, u64); 3] = [
            |t, v| t.header_read_seconds = v,
            |t, v| t.body_read_seconds = v,
            |t, v| t.idle_seconds = v,
        ];
        for set in setters {
            for bad in [0, MAX_TIMEOUT_SECONDS + 1] {
                let mut config = Config::default();
                set(&mut config.timeouts, bad);
                let error = config.validate().unwrap_err();
                assert!(error.contains("timeouts."), "{error}");
            }
        }
    }

    /// Every setting docs/kubernetes.md names exists: each ```toml block
    /// parses as a configuration, and each inline `[table] key`, `table.key`
    /// or `key` with an underscore is a field (unknown ones are refused).
    #[test]
    fn kubernetes_guide_names_settings_that_exist() {
        let guide = include_str!("../../../docs/kubernetes.md");
        let (mut prose, mut block, mut fence) = (String::new(), String::new(), None);
        for line in guide.lines() {
            match (&fence, line.trim_start().strip_prefix("```")) {
                (None, Some(lang)) => fence = Some(lang.trim().to_owned()),
                (Some(lang), Some(_)) => {
                    if lang == "toml" {
                        toml::from_str::<Config>(&block).unwrap_or_else(|e| panic!("{e}\n{block}"));
                    }
                    block.clear();
                    fence = None;
                }
                (Some(_), None) => block.push_str(&format!("{line}\n")),
                (None, None) => prose.push_str(&format!("{line}\n")),
            }
        }
        let mut named = 0;
        for span in prose.split('`').skip(1).step_by(2) {
            let (table, key) = match span.strip_prefix('[').and_then(|s| s.split_once("] ")) {
                Some((table, key)) => (Some(table), key),
                None => match span.split_once('.') {
                    Some((table, key)) => (Some(table), key),
                    None => (None, span),
                },
            };
            let setting = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !key.contains('_') || !setting(key) || !table.is_none_or(setting) {
                continue;
            }
            named += 1;
            let text = match table {
                Some(table) => format!("[{table}]\n{key} = 0\n"),
                None => format!("{key} = 0\n"),
            };
            if let Err(e) = toml::from_str::<Config>(&text) {
                assert!(!e.to_string().contains("unknown field"), "`{span}`: {e}");
            }
        }
        assert!(named >= 3, "the guide names {named} settings");
    }

    /// The timeouts are read from a `[timeouts]` table; unknown keys refused.
    #[test]
    fn timeouts_are_read_from_toml() {
        let config: Config =
            toml::from_str("[timeouts]\nheader_read_seconds = 3\nidle_seconds = 7\n").unwrap();
        assert_eq!(config.timeouts.header_read_seconds, 3);
        assert_eq!(config.timeouts.body_read_seconds, 30);
        assert_eq!(config.timeouts.idle_seconds, 7);
        assert!(toml::from_str::<Config>("[timeouts]\nheader = 3\n").is_err());
    }
}
