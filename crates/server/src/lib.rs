//! `stele serve`: the HTTP(S) service in front of one log.
//!
//! [`serve`] opens (or, on first start, creates) the data directory, starts
//! the group-commit sequencer, binds the listeners and serves [`api::app`]
//! on each connection, with TLS (and optional client certificates) from
//! [`tls`]. Shutdown stops accepting, lets in-flight requests finish, then
//! stops the sequencer, which completes queued batches and publishes a
//! final checkpoint. This crate owns no storage format: it calls the log
//! engine and the ingestion adapters.

pub mod access;
pub mod admin;
pub mod api;
pub mod authlog;
pub mod config;
mod connection;
pub mod governance;
pub mod metrics;
pub mod search;
pub mod tls;
pub mod token_admin;
pub mod tokens;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use stele_log::NewKek;
use stele_log::governance::SYSTEM_WRITER;
use stele_log::sequencer::{Sequencer, SequencerConfig};
use stele_log::{CreateOptions, Log, OpenOptions};
use tokio::net::TcpListener;

pub use api::{AppState, ConnInfo, app};
pub use config::Config;

/// What the first start of an empty data directory created; printed once.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub verifier_key: String,
    pub admin_token: String,
}

/// A bound, not yet serving, server: lets callers learn the addresses
/// (port 0 in tests) before serving.
pub struct Bound {
    config: Config,
    listeners: Vec<TcpListener>,
    pub first_start: Option<FirstStart>,
    log: Arc<Mutex<Log>>,
    policy: Arc<stele_policy::Policy>,
    /// SIGHUP is caught from bind on, so a hangup once the addresses are
    /// announced re-reads the policy instead of killing the process.
    hangup: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("addresses", &self.addresses())
            .finish()
    }
}

impl Bound {
    /// The log this server will serve (shared with the sequencer).
    pub fn log(&self) -> Arc<Mutex<Log>> {
        self.log.clone()
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Validates the configuration, prepares the data directory and binds.
pub async fn bind(
    config: Config,
    passphrase: Option<zeroize::Zeroizing<String>>,
) -> Result<Bound, String> {
    let mut warnings = config.validate()?;
    warnings.extend(open_files_warning(config.limits.max_connections));
    for warning in warnings {
        tracing::warn!("{warning}");
        eprintln!("stele: WARNING: {warning}");
    }
    let mut first_start = None;
    let empty = match std::fs::read_dir(&config.data) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(format!("{}: {e}", config.data.display())),
    };
    if empty {
        let verifier_key = Log::create(
            &config.data,
            CreateOptions {
                origin: config.origin.clone(),
                kek: NewKek::Random,
            },
        )
        .map_err(|e| e.to_string())?;
        first_start = Some(FirstStart {
            verifier_key,
            admin_token: String::new(),
        });
    }
    let options = OpenOptions {
        passphrase,
        anchor: config.anchor.clone(),
        no_search_index: !config.search_index,
        search_parts: config.search_index,
        ..OpenOptions::default()
    };
    let mut log = Log::open(&config.data, options).map_err(|e| e.to_string())?;
    log.governance()
        .set_retention_grace(Duration::from_secs(config.retention_grace_seconds));
    for kept in log.kept_at_open() {
        tracing::warn!("{kept}");
    }
    if let Some(index) = log.reader().search_index() {
        let size = log.reader().size();
        std::thread::Builder::new()
            .name("stele-index-report".into())
            .spawn(move || report_search_index(&index, size))
            .map_err(|e| format!("starting the index report: {e}"))?;
    }
    if let Some(first) = first_start.as_mut() {
        // The first admin token is granted like any other: its
        // `token.created` event is durable before its record is written.
        let spec = stele_log::tokens::TokenSpec {
            principal: "admin".into(),
            roles: vec![tokens::Role::admin()],
            ..Default::default()
        };
        first.admin_token = log
            .governance()
            .create_token(&spec, SYSTEM_WRITER, jiff::Timestamp::now())
            .map_err(|e| format!("creating the first admin token: {e}"))?
            .text;
    }
    // Revocations in the log that `tokens.json` does not show (a crash
    // between the event and the file, or an edit) are written back.
    for id in log
        .governance()
        .finish_token_file()
        .map_err(|e| e.to_string())?
    {
        tracing::warn!(
            token = %id,
            "tokens.json did not show the token.revoked event of this token; marked revoked"
        );
    }
    // The policy decides before anything is served: a requirement this
    // configuration cannot meet refuses the start.
    let policy = governance::startup_policy(&mut log, &config)?;
    let mut listeners = Vec::new();
    for addr in &config.listen {
        listeners.push(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("listen on {addr}: {e}"))?,
        );
    }
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "SIGHUP cannot be caught; policy reload by signal is off"))
        .ok();
    Ok(Bound {
        config,
        listeners,
        first_start,
        log: Arc::new(Mutex::new(log)),
        policy,
        hangup,
    })
}

/// Serves until `shutdown` completes, then drains and stops.
pub async fn serve(bound: Bound, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let Bound {
        config,
        listeners,
        log,
        policy,
        hangup,
        ..
    } = bound;
    let governance = Arc::new(governance::Governance::new(policy, config.policy.clone()));
    restore_attestation(&governance, &config.data);
    let http_metrics = metrics::HttpMetrics::default();
    let mut reloader = None;
    let tls = match &config.tls {
        Some(tls_config) => {
            let shared = Arc::new(RwLock::new(tls::load(tls_config)?));
            reloader = Some(tls::spawn_reloader(
                tls_config.clone(),
                shared.clone(),
                http_metrics.tls_reloads.clone(),
            ));
            Some(shared)
        }
        None => None,
    };
    let sequencer = Sequencer::start(
        log.clone(),
        SequencerConfig {
            max_batch: 4096,
            queue_depth: config.limits.queue_depth,
            publish_every: Duration::from_millis(config.publish_interval_ms),
            ..SequencerConfig::default()
        },
    );
    let reader = stele_log::sequencer::lock_log(&log).reader().clone();
    let state = Arc::new(AppState {
        log: log.clone(),
        reader: reader.clone(),
        sequencer: sequencer.handle(),
        seq_metrics: sequencer.metrics(),
        fsync_metrics: stele_log::sequencer::lock_log(&log).fsync_metrics(),
        tokens: tokens::TokenStore::new(&config.data),
        auth_failures: Default::default(),
        public: config.data.join("log"),
        metrics: http_metrics,
        cert_principals: cert_principals(&config),
        ready: Default::default(),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_inflight_body_bytes,
        )),
        config: config.clone(),
        governance: governance.clone(),
    });
    let router = app(state.clone());
    let scheduler_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scheduler = governance::spawn_scheduler(
        governance::SchedulerContext::new(log.clone(), reader.clone(), governance.clone(), &config),
        scheduler_stop.clone(),
    )
    .map_err(|e| format!("cannot start the scheduler: {e}"))?;
    let reload_task = tokio::spawn(reload_policy_on_sighup(state.clone(), hangup));
    let (auth_stop, auth_stop_rx) = tokio::sync::watch::channel(false);
    let auth_task = tokio::spawn(authlog::run(state.clone(), auth_stop_rx));
    // Every accept loop and every connection holds a receiver of `stop`;
    // shutting down sends `true`, and each connection then finishes its
    // requests in flight and closes. Once every receiver is gone, every
    // connection has closed.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connections = Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections));
    let timeouts = connection::ConnectionTimeouts::from_config(&config.timeouts);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let router = router.clone();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        let connections = connections.clone();
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            router,
            tls,
            timeouts,
            connections,
            stop,
        )));
    }
    drop(stop_rx);
    state.ready.store(true, Relaxed);
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    state.ready.store(false, Relaxed);
    let _ = stop_tx.send(true);
    for task in accept_tasks {
        let _ = task.await;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing");
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    reload_task.abort();
    // The last window of failed authentications, before the sequencer stops.
    let _ = auth_stop.send(true);
    let _ = auth_task.await;
    scheduler_stop.store(true, Relaxed);
    let _ = tokio::task::spawn_blocking(move || scheduler.join()).await;
    drop(router);
    drop(state);
    tokio::task::spawn_blocking(move || sequencer.stop())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Readiness and metrics start from the latest attestation on disk, so a
/// restart does not hide a failed check until the next one.
fn restore_attestation(governance: &governance::Governance, data: &std::path::Path) {
    match stele_log::audit::latest_attestation(data) {
        Ok(Some(latest)) => {
            governance.record_attestation(&latest);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "the latest attestation cannot be read");
            governance
                .failed_checks
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The principals of the configured client certificates, by fingerprint.
fn cert_principals(config: &Config) -> HashMap<String, tokens::Principal> {
    config
        .client_certs
        .iter()
        .map(|c| {
            (
                c.sha256.clone(),
                tokens::Principal {
                    name: c.principal.clone(),
                    roles: c.roles.clone(),
                    method: "mtls",
                    streams: None,
                },
            )
        })
        .collect()
}

/// Longest shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` before the next: out of file descriptors
/// (EMFILE, ENFILE) or memory, retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on one listener until `stop`, each served on a
/// task of its own while it holds one of the `connections` permits.
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tls::SharedTls>,
    timeouts: connection::ConnectionTimeouts,
    connections: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Whether the last accept failed: a run of failures is logged once.
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                if failing {
                    tracing::info!("accepting connections again");
                    failing = false;
                }
                accepted
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "accept failed; retrying every 100 ms until it succeeds");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the connection limit: close at once.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection::serve_connection(stream, remote, router, tls, timeouts, stop).await;
        });
    }
}

/// File descriptors kept for the server's own use (listeners, the log's
/// files, the token store, TLS files) beside one per connection.
const RESERVED_FILES: u64 = 128;

/// A warning when this process may not open enough files for
/// `max_connections` connections (RLIMIT_NOFILE): accepting beyond that
/// fails (and backs off) instead of serving.
fn open_files_warning(max_connections: usize) -> Option<String> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    let needed = (max_connections as u64).saturating_add(RESERVED_FILES);
    if limit >= needed {
        return None;
    }
    Some(format!(
        "limits.max_connections = {max_connections} but this process may open only {limit} files (RLIMIT_NOFILE): connections beyond about {} will not be accepted; raise the limit to at least {needed} (ulimit -n, systemd LimitNOFILE=) or lower limits.max_connections",
        limit.saturating_sub(RESERVED_FILES)
    ))
}

/// Re-reads the configured policy file on each SIGHUP and applies it (as
/// principal `signal:SIGHUP`); a file that does not validate, or that the
/// log refuses, leaves the policy in force unchanged and is logged.
async fn reload_policy_on_sighup(
    state: Arc<AppState>,
    hangup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangup) = hangup else {
        return;
    };
    while hangup.recv().await.is_some() {
        let Some(path) = state.governance.policy_path.clone() else {
            tracing::warn!("SIGHUP: no policy file is configured; nothing to reload");
            continue;
        };
        let work = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let policy = governance::load_policy(&path)?;
            work.governance
                .apply(&work.log, &work.config, policy, "signal:SIGHUP")
                .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok(Ok(outcome)) => match outcome.seq {
                Some(seq) => {
                    tracing::info!(seq, hash = %outcome.hash, "SIGHUP: policy applied");
                    for change in &outcome.changes {
                        tracing::warn!("policy change: {change}");
                    }
                }
                None => tracing::info!("SIGHUP: policy unchanged"),
            },
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: policy NOT applied; the previous one stays in force")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: call it before announcing
/// that the server listens, so a SIGTERM sent right after the announcement
/// is a graceful stop and never the default action (death by signal).
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

/// Logs what became of the search index once it covers the log as it was
/// at the start: each part file refused (changed, foreign or at odds with
/// the log; deleted, its segment indexed from the log), and how much came
/// from the files.
fn report_search_index(index: &stele_log::search::SearchIndex, size: u64) {
    let started = std::time::Instant::now();
    while index.behind(size) > 0 && index.failure().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = index.parts_report();
    for refused in &report.refused {
        tracing::warn!(
            "search part file refused, its segment indexed from the log instead: {refused}"
        );
    }
    match index.failure() {
        Some(why) => {
            tracing::warn!("search index stopped: {why}; searches read what it lacks from the log")
        }
        None => tracing::info!(
            entries = size,
            from_part_files = report.loaded_entries,
            part_files = report.loaded_segments,
            refused = report.refused.len(),
            seconds = started.elapsed().as_secs_f64(),
            "search index covers the log"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// More connections than open files allow is reported with the limit
    /// and the fix; fewer is not.
    #[test]
    fn open_files_warning_compares_with_the_limit() {
        let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current
        else {
            return;
        };
        let warning = open_files_warning(usize::try_from(limit).unwrap_or(usize::MAX)).unwrap();
        assert!(warning.contains("RLIMIT_NOFILE"), "{warning}");
        assert!(warning.contains("limits.max_connections"), "{warning}");
        if limit >= RESERVED_FILES {
            let fits = usize::try_from(limit - RESERVED_FILES).unwrap_or(usize::MAX);
            assert_eq!(open_files_warning(fits), None);
        }
    }
}
