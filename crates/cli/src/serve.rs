//! `stele serve` and `stele token`: command-line settings turned into a
//! validated server configuration, and token administration.

use std::net::SocketAddr;
use std::path::PathBuf;

use stele_log::tokens::Role;
use stele_server::config::{Config, TlsConfig};

use crate::{CliResult, Failure, print_out};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (fields documented in crates/server/src/config.rs
    /// and docs/server.md); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (created with keys on first start).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Origin of a log created on first start.
    #[arg(long)]
    origin: Option<String>,
    /// Address to listen on; repeat for several.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// PEM certificate chain for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle for client certificates (mTLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (not recommended).
    #[arg(long)]
    allow_plain_http: bool,
    /// Largest request body in bytes.
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Requests that may wait for the writer before 503.
    #[arg(long)]
    queue_depth: Option<usize>,
    /// Milliseconds between checkpoints while events arrive.
    #[arg(long)]
    publish_interval_ms: Option<u64>,
    /// File outside the data directory that keeps a copy of each published
    /// checkpoint; the server refuses to start on a log rolled back behind it.
    #[arg(long, value_name = "FILE")]
    anchor: Option<PathBuf>,
    /// Log format on standard error: `text` or `json` (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once and only its hash is kept. The
    /// grant is recorded as a `token.created` event first, so the data
    /// directory must not be in use (while `stele serve` runs, use
    /// `POST /v1/tokens`).
    Create {
        #[command(flatten)]
        data: crate::DataArgs,
        /// Principal recorded as the writer of what this token appends.
        #[arg(long)]
        principal: String,
        /// writer, reader or admin; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// When the token stops working: a duration (30d, 12h, 90m) or an
        /// RFC 3339 time. Without it the token never expires.
        #[arg(long)]
        expires: Option<String>,
        /// Limit the token to these streams (comma-separated); it is then
        /// denied everything else, log-wide operations included.
        #[arg(long, value_delimiter = ',')]
        streams: Option<Vec<String>>,
    },
    /// List tokens (ids, principals, roles, expiry, scope, revocation).
    /// Reads tokens.json only, so it works while the server runs.
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a token by id, recorded as a `token.revoked` event first
    /// (while `stele serve` runs, use `DELETE /v1/tokens/{id}`).
    Revoke {
        #[command(flatten)]
        data: crate::DataArgs,
        #[arg(long)]
        id: String,
    },
}

fn settings(args: ServeArgs) -> CliResult<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(Failure::usage)?,
        None => Config::default(),
    };
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(origin) = args.origin {
        config.origin = origin;
    }
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig {
            cert,
            key,
            client_ca: args.client_ca,
            reload_seconds: config.tls.as_ref().map(|t| t.reload_seconds).unwrap_or(5),
        });
    }
    if args.allow_plain_http {
        config.allow_plain_http = true;
    }
    if let Some(n) = args.max_body_bytes {
        config.limits.max_body_bytes = n;
    }
    if let Some(n) = args.queue_depth {
        config.limits.queue_depth = n;
    }
    if let Some(n) = args.publish_interval_ms {
        config.publish_interval_ms = n;
    }
    if let Some(anchor) = args.anchor {
        config.anchor = Some(anchor);
    }
    Ok(config)
}

pub fn run(args: ServeArgs) -> CliResult<u8> {
    let json_logs = args.log_format == "json";
    let config = settings(args)?;
    config.validate().map_err(Failure::usage)?;
    // Colours only for a person at a terminal, not in files or journals.
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = if json_logs {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
    let passphrase = if config.data.join("keys/kek.key").exists()
        && stele_log::Log::needs_passphrase(&config.data)?
    {
        Some(
            std::env::var("STELE_PASSPHRASE")
                .map(zeroize::Zeroizing::new)
                .map_err(|_| {
                    Failure::usage(
                        "this log's key is protected by a passphrase: set STELE_PASSPHRASE",
                    )
                })?,
        )
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // A log that fails a check at open (`integrity: …`, the prefix of
        // `LogError::Integrity`: damage, a rollback or a fork the anchor
        // shows) is a refusal, exit 1; anything else a setup problem.
        let bound = stele_server::bind(config, passphrase).await.map_err(|e| {
            if e.starts_with("integrity: ") {
                Failure::refused(e)
            } else {
                Failure::usage(e)
            }
        })?;
        if let Some(first) = &bound.first_start {
            eprintln!("stele: created a new log; verifier key:");
            print_out(&format!("{}\n", first.verifier_key))?;
            eprintln!("stele: one-time admin token (shown once, only its hash is kept):");
            print_out(&format!("{}\n", first.admin_token))?;
        }
        // Signal handlers first: a SIGTERM sent as soon as "listening"
        // appears must stop the server gracefully.
        let shutdown = stele_server::shutdown_signal().map_err(Failure::usage)?;
        for addr in bound.addresses() {
            eprintln!("stele: listening on {scheme}://{addr}");
        }
        stele_server::serve(bound, shutdown)
            .await
            .map_err(Failure::usage)?;
        eprintln!("stele: stopped; every acknowledged event is durable and published");
        Ok(0)
    })
}

/// Token administration is authorized like every other operation, as the
/// local operator, under the log's active policy read without opening the
/// log (so it works while the server runs). A denial is recorded as an
/// `access.denied` event when the log can be opened (no server running);
/// otherwise the message says it could not be.
fn authorize_token(data: &std::path::Path, action: stele_policy::Action) -> CliResult<()> {
    use crate::local::{Operator, denial_text};
    stele_log::Log::read_meta(data)?;
    let versions = stele_log::governance::read_policy_versions(data)?;
    let (policy, applied) = match versions.last() {
        Some(version) => (version.policy.clone(), true),
        None => (
            std::sync::Arc::new(stele_policy::Policy::shipped_default()),
            false,
        ),
    };
    let operator = Operator::under(&policy, applied);
    let now = crate::local::now()?;
    let resource = stele_policy::Resource::Log;
    let decision = operator.decide(&policy, action, resource, now);
    if decision.allowed {
        return Ok(());
    }
    let args = crate::DataArgs {
        data: data.to_path_buf(),
        passphrase_file: None,
        anchor: None,
    };
    match crate::open(&args) {
        Ok(mut log) => Err(operator.denied(&mut log, action, resource, &decision, now)),
        Err(e) => Err(Failure::refused(format!(
            "{}; {}; the denial could not be recorded ({})",
            denial_text(&operator.principal, action, "log", &decision),
            operator.roles_text(),
            e.message
        ))),
    }
}

/// Opens the log for a token change; a running server holding it is
/// named by the error, with the HTTP API to use instead.
fn open_for_tokens(data: &crate::DataArgs) -> CliResult<stele_log::Log> {
    let mut log = crate::open(data)?;
    for id in log.governance().finish_token_file()? {
        eprintln!(
            "stele: token {id} was revoked in the log but not in tokens.json; marked revoked"
        );
    }
    Ok(log)
}

pub fn token(action: TokenAction) -> CliResult<u8> {
    match action {
        TokenAction::Create {
            data,
            principal,
            roles,
            expires,
            streams,
        } => {
            authorize_token(&data.data, stele_policy::Action::TokenCreate)?;
            let now = crate::local::now()?;
            let roles = roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::usage)?;
            let expires_at = expires
                .as_deref()
                .map(|text| stele_log::tokens::parse_expiry(text, now))
                .transpose()
                .map_err(Failure::usage)?;
            let spec = stele_log::tokens::TokenSpec {
                principal,
                roles,
                expires_at,
                streams,
            };
            let mut log = open_for_tokens(&data)?;
            let by = crate::local::local_principal();
            let created = log.governance().create_token(&spec, &by, now)?;
            let entry = &created.entry;
            eprintln!(
                "stele: token {} for {:?} (roles {}{}{}), recorded as event {}; shown once:",
                entry.id,
                entry.principal,
                join_roles(&entry.roles),
                entry
                    .expires_at
                    .as_ref()
                    .map(|at| format!(", expires {at}"))
                    .unwrap_or_default(),
                entry
                    .streams
                    .as_ref()
                    .map(|s| format!(", streams {}", s.join(",")))
                    .unwrap_or_default(),
                entry.created_event
            );
            print_out(&format!("{}\n", created.text))?;
            Ok(0)
        }
        TokenAction::List { data } => {
            authorize_token(&data, stele_policy::Action::TokenList)?;
            let now = crate::local::now()?;
            let mut out = String::new();
            for entry in stele_log::tokens::read_token_file(&data)?.tokens {
                let state = match (&entry.revoked_at, entry.expired(now)) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, true) => "expired".to_string(),
                    (None, false) => "active".to_string(),
                };
                out.push_str(&format!(
                    "{}\t{}\t{}\tcreated {} (event {})\texpires {}\tstreams {}\t{}\n",
                    entry.id,
                    entry.principal,
                    join_roles(&entry.roles),
                    entry.created_at,
                    entry.created_event,
                    entry.expires_at.as_deref().unwrap_or("never"),
                    entry
                        .streams
                        .as_ref()
                        .map(|s| s.join(","))
                        .unwrap_or_else(|| "all".into()),
                    state
                ));
            }
            print_out(&out)?;
            Ok(0)
        }
        TokenAction::Revoke { data, id } => {
            authorize_token(&data.data, stele_policy::Action::TokenRevoke)?;
            let now = crate::local::now()?;
            let mut log = open_for_tokens(&data)?;
            let by = crate::local::local_principal();
            let entry = log.governance().revoke_token(&id, &by, now)?;
            eprintln!(
                "stele: token {} of {:?} revoked (event {})",
                entry.id,
                entry.principal,
                entry
                    .revoked_event
                    .map(|i| i.to_string())
                    .unwrap_or_default()
            );
            Ok(0)
        }
    }
}

fn join_roles(roles: &[Role]) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
}
