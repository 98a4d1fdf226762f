//! `stele serve` and `stele token`: command-line settings turned into a
//! validated server configuration, and token administration.

use std::net::SocketAddr;
use std::path::PathBuf;

use stele_server::config::{Config, TlsConfig};
use stele_server::tokens::{self, Role};

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
    /// Create a token; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        data: PathBuf,
        /// Principal recorded as the writer of what this token appends.
        #[arg(long)]
        principal: String,
        /// writer, reader or admin; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// List tokens (ids, principals, roles, revocation).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a token by id; takes effect at the server's next request.
    Revoke {
        #[arg(long)]
        data: PathBuf,
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
        for addr in bound.addresses() {
            eprintln!("stele: listening on {scheme}://{addr}");
        }
        stele_server::serve(bound, stele_server::shutdown_signal())
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
        Ok(mut log) => Err(operator.denied(&mut log, action, "log", &decision, now)),
        Err(e) => Err(Failure::refused(format!(
            "{}; {}; the denial could not be recorded ({})",
            denial_text(&operator.principal, action, "log", &decision),
            operator.roles_text(),
            e.message
        ))),
    }
}

pub fn token(action: TokenAction) -> CliResult<u8> {
    match action {
        TokenAction::Create {
            data,
            principal,
            roles,
        } => {
            authorize_token(&data, stele_policy::Action::TokenCreate)?;
            let roles = roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::usage)?;
            let (record, token) =
                tokens::create(&data, &principal, &roles).map_err(Failure::usage)?;
            eprintln!(
                "stele: token {} for {:?} (roles {}); shown once:",
                record.id,
                record.principal,
                record
                    .roles
                    .iter()
                    .map(Role::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            print_out(&format!("{token}\n"))?;
            Ok(0)
        }
        TokenAction::List { data } => {
            authorize_token(&data, stele_policy::Action::TokenList)?;
            let mut out = String::new();
            for record in tokens::list(&data).map_err(Failure::usage)? {
                let roles: Vec<String> = record.roles.iter().map(Role::to_string).collect();
                out.push_str(&format!(
                    "{}\t{}\t{}\tcreated {}\t{}\n",
                    record.id,
                    record.principal,
                    roles.join(","),
                    record.created_at,
                    record
                        .revoked_at
                        .map(|at| format!("revoked {at}"))
                        .unwrap_or_else(|| "active".into())
                ));
            }
            print_out(&out)?;
            Ok(0)
        }
        TokenAction::Revoke { data, id } => {
            authorize_token(&data, stele_policy::Action::TokenRevoke)?;
            let record = tokens::revoke(&data, &id).map_err(Failure::usage)?;
            eprintln!(
                "stele: token {} of {:?} revoked",
                record.id, record.principal
            );
            Ok(0)
        }
    }
}
