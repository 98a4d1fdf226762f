//! The policy in force, and the scheduler that enforces retention and runs
//! longevity audits.
//!
//! The policy lives in the log (every applied version is a file and a
//! system event, see `stele_log::governance`); the server keeps the active
//! one in memory for routing and access decisions and swaps it when a new
//! version is applied (admin API, SIGHUP re-reading the configured file, or
//! the file changing between restarts).
//!
//! The scheduler runs on its own thread and takes the log's lock for each
//! task (appends wait meanwhile): retention enforcement every
//! [`RETENTION_EVERY`], incremental verification, full verification and
//! attestations at the intervals the policy's `[audit]` section sets.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use stele_log::audit::{Attestation, AuditFacts};
use stele_log::governance::ApplyOutcome;
use stele_log::sequencer::lock_log;
use stele_log::verify::CpuPercent;
use stele_log::{Log, LogReader};
use stele_policy::{Policy, PolicySource};
use stele_tlog::hash::hex;

use crate::config::Config;

/// How often due epochs are looked for.
pub const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Reads and validates a policy file (TOML and its Cedar side file).
pub fn load_policy(path: &Path) -> Result<Policy, String> {
    let source = PolicySource::load(path).map_err(|e| e.to_string())?;
    Policy::from_source(&source).map_err(|e| e.to_string())
}

/// Refuses a policy whose transport requirement this configuration cannot
/// meet, naming the listeners and the fix.
pub fn check_transport(policy: &Policy, config: &Config) -> Result<(), String> {
    for address in &config.listen {
        policy
            .transport()
            .check_listener(*address, config.tls.is_some())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The policy the server enforces, and audit results.
#[derive(Debug)]
pub struct Governance {
    policy: RwLock<Arc<Policy>>,
    /// The configured policy file (re-read on SIGHUP).
    pub policy_path: Option<PathBuf>,
    /// Failed checks of the latest attestation.
    pub failed_checks: AtomicU64,
    pub attestations: AtomicU64,
    pub purged_epochs: AtomicU64,
    pub access_denied: AtomicU64,
    pub latest: Mutex<Option<Attestation>>,
}

impl Governance {
    pub fn new(policy: Arc<Policy>, policy_path: Option<PathBuf>) -> Governance {
        Governance {
            policy: RwLock::new(policy),
            policy_path,
            failed_checks: AtomicU64::new(0),
            attestations: AtomicU64::new(0),
            purged_epochs: AtomicU64::new(0),
            access_denied: AtomicU64::new(0),
            latest: Mutex::new(None),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `attestation` the latest: its failed checks drive `/readyz`
    /// and the `stele_audit_failed_checks` metric. Returns that count.
    pub fn record_attestation(&self, attestation: &Attestation) -> u64 {
        let failed = attestation.findings.iter().filter(|f| !f.ok).count() as u64;
        self.failed_checks.store(failed, Relaxed);
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(attestation.clone());
        failed
    }

    /// Hex hash of the policy in force.
    pub fn policy_hash(&self) -> String {
        hex(&self.policy().hash())
    }

    /// Applies `policy` to the log (recording who) and enforces it from
    /// now on. The transport requirement is checked first: a policy this
    /// server cannot meet is refused, and the old one stays.
    pub fn apply(
        &self,
        log: &Mutex<Log>,
        config: &Config,
        policy: Policy,
        by: &str,
    ) -> Result<ApplyOutcome, stele_log::LogError> {
        check_transport(&policy, config).map_err(stele_log::LogError::Refused)?;
        let mut log = lock_log(log);
        let outcome = log
            .governance()
            .apply_policy(policy, by, Timestamp::now())?;
        let active = log.reader().active_policy();
        drop(log);
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(outcome)
    }
}

/// Whether a policy version was applied from the configuration: at a start
/// (`config:<path>`) or by SIGHUP re-reading the configured file.
fn from_configuration(applied_by: &str) -> bool {
    applied_by.starts_with("config:") || applied_by == "signal:SIGHUP"
}

/// Applies the configured policy file at start when it differs from the
/// log's active version, and returns the policy to enforce.
///
/// A start never reverts a version applied another way: when the active
/// version came from `PUT /v1/policy` or `stele policy apply` (not from the
/// configured file) and the file differs from it, the start is refused,
/// naming the version and how to settle it, instead of silently applying
/// the file over it.
pub fn startup_policy(log: &mut Log, config: &Config) -> Result<Arc<Policy>, String> {
    if let Some(path) = &config.policy {
        let policy = load_policy(path)?;
        check_transport(&policy, config)?;
        let hash = hex(&policy.hash());
        if let Some(active) = log.reader().policy_versions().last()
            && active.hash != hash
            && !from_configuration(&active.applied_by)
        {
            let data = config.data.display();
            return Err(format!(
                "the configured policy file {} (hash {hash}) differs from the log's active \
                 policy version {} (hash {}), which {} applied at {}; starting would revert it. \
                 Either write the active version into the file (`stele policy show --data {data} \
                 --json` prints its TOML and Cedar), remove `policy` from the configuration to \
                 keep enforcing the active version, or apply the file deliberately with \
                 `stele policy apply --data {data} {}` and start again",
                path.display(),
                active.seq,
                active.hash,
                active.applied_by,
                stele_event::time::timestamp_text(active.activated_at),
                path.display()
            ));
        }
        let outcome = log
            .governance()
            .apply_policy(
                policy,
                &format!("config:{}", path.display()),
                Timestamp::now(),
            )
            .map_err(|e| e.to_string())?;
        if let Some(seq) = outcome.seq {
            tracing::info!(seq, hash = %outcome.hash, "applied policy from {}", path.display());
            for change in &outcome.changes {
                tracing::warn!("policy change: {change}");
            }
        }
    }
    let active = log.reader().active_policy();
    check_transport(&active, config)?;
    Ok(active)
}

/// What the scheduler needs.
#[derive(Debug, Clone)]
pub struct SchedulerContext {
    pub log: Arc<Mutex<Log>>,
    /// Verifications read through it: appends go on while they run.
    pub reader: LogReader,
    pub governance: Arc<Governance>,
    pub listeners: Vec<(std::net::SocketAddr, bool)>,
    /// What the full verification may take of one core while appends run.
    pub verify_pace: CpuPercent,
}

impl SchedulerContext {
    pub fn new(
        log: Arc<Mutex<Log>>,
        reader: LogReader,
        governance: Arc<Governance>,
        config: &crate::config::Config,
    ) -> SchedulerContext {
        SchedulerContext {
            log,
            reader,
            governance,
            listeners: config
                .listen
                .iter()
                .map(|a| (*a, config.tls.is_some()))
                .collect(),
            // `Config::validate` refused a share outside 1..=100.
            verify_pace: CpuPercent::new(config.verify_cpu_percent)
                .unwrap_or(CpuPercent::BACKGROUND),
        }
    }
}

/// Starts the scheduler thread; it stops when `stop` is set.
pub fn spawn_scheduler(
    context: SchedulerContext,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stele-scheduler".into())
        .spawn(move || run_scheduler(context, stop))
}

fn run_scheduler(context: SchedulerContext, stop: Arc<AtomicBool>) {
    let state =
        stele_log::audit::read_audit_state(&context.reader.layout().root).unwrap_or_default();
    // Resume the schedule where the last run left it.
    let mut last_retention = i64::MIN;
    let mut retention_wakeup: Option<std::time::Instant> = None;
    let mut last_incremental = state.last_incremental_at.unwrap_or(i64::MIN);
    let mut last_full = state.last_full_at.unwrap_or(i64::MIN);
    // A log never attested gets its first attestation one interval after
    // this start (its first full verification runs at once).
    let mut last_attest = state
        .last_attestation_at
        .unwrap_or_else(|| Timestamp::now().as_second());
    let due = |last: i64, every: Duration, now: i64| {
        last == i64::MIN || now.saturating_sub(last) >= every.as_secs() as i64
    };
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Timestamp::now();
        let seconds = now.as_second();
        let policy = context.governance.policy();
        let schedule = *policy.audit();
        if due(last_retention, RETENTION_EVERY, seconds)
            || retention_wakeup.is_some_and(|at| std::time::Instant::now() >= at)
        {
            last_retention = seconds;
            match lock_log(&context.log)
                .governance()
                .run_retention("retention", now)
            {
                Ok(run) => {
                    // Announced epochs are purged as soon as their grace
                    // period has passed, not a whole interval later.
                    retention_wakeup = run
                        .waiting
                        .iter()
                        .map(|(_, left)| *left)
                        .min()
                        .map(|left| std::time::Instant::now() + left);
                    for (status, left) in &run.waiting {
                        tracing::warn!(stream = %status.stream, epoch_day = status.epoch_day.number(), purge_in_seconds = left.as_secs(), "retention: epoch due and announced; purged after the grace period");
                    }
                    let purged = run.purged;
                    for t in &purged {
                        tracing::info!(stream = %t.stream, epoch = %t.epoch, entries = t.entries, event = t.event_index, "retention purge");
                    }
                    context
                        .governance
                        .purged_epochs
                        .fetch_add(purged.len() as u64, Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "retention enforcement failed"),
            }
        }
        if due(last_full, schedule.verify_full_every, seconds) {
            last_full = seconds;
            // The whole log is read without the writer's lock; only the
            // outcome is recorded under it.
            let pace = context.verify_pace;
            let started = std::time::Instant::now();
            let verified = in_background(&context.reader, move |reader| reader.verify_full(pace))
                .and_then(|report| {
                    lock_log(&context.log)
                        .governance()
                        .record_full_verify(&report, now)?;
                    Ok(report)
                });
            match verified {
                Ok(report) if report.ok() => tracing::info!(
                    entries = report.entries,
                    took_ms = started.elapsed().as_millis() as u64,
                    rested_ms = report.rested.as_millis() as u64,
                    "scheduled full verification passed"
                ),
                Ok(report) => tracing::error!(
                    problems = report.problem_count,
                    first = %report.problems.first().map(|p| p.to_string()).unwrap_or_default(),
                    "scheduled full verification FAILED"
                ),
                Err(e) => tracing::error!(error = %e, "scheduled full verification could not run"),
            }
        } else if due(last_incremental, schedule.verify_new_every, seconds) {
            last_incremental = seconds;
            let checked = in_background(&context.reader, |reader| {
                let state = stele_log::audit::read_audit_state(&reader.layout().root)?;
                reader.check_new_entries(&state)
            })
            .and_then(|check| {
                lock_log(&context.log)
                    .governance()
                    .record_new_entries(&check, now)?;
                Ok(check.problems)
            });
            match checked {
                Ok(problems) if problems.is_empty() => {}
                Ok(problems) => {
                    tracing::error!(problems = %problems.join("; "), "incremental verification FAILED")
                }
                Err(e) => tracing::error!(error = %e, "incremental verification could not run"),
            }
        }
        if due(last_attest, schedule.attest_every, seconds) {
            last_attest = seconds;
            let facts = AuditFacts {
                listeners: Some(context.listeners.clone()),
                enforced_policy: Some(context.governance.policy_hash()),
            };
            attest(&context, &facts, stele_log::governance::SYSTEM_WRITER, now);
        }
    }
}

/// Runs a verification (`check`, over a clone of `reader`) on a thread of
/// its own at the lowest CPU priority (nice 19, which the threads it
/// starts inherit): appends and reads go first, and the verification takes
/// the CPU they leave. It holds no lock; the caller records the outcome.
fn in_background<T: Send + 'static>(
    reader: &LogReader,
    check: impl FnOnce(LogReader) -> stele_log::LogResult<T> + Send + 'static,
) -> stele_log::LogResult<T> {
    let reader = reader.clone();
    let thread = std::thread::Builder::new()
        .name("stele-verify".into())
        .spawn(move || {
            // On Linux, PRIO_PROCESS with no pid is the calling thread. A
            // refusal (a seccomp profile, say) only leaves the priority.
            let _ = rustix::process::setpriority_process(None, 19);
            check(reader)
        })
        .map_err(|e| stele_log::LogError::Internal(format!("verification thread: {e}")))?;
    thread.join().unwrap_or_else(|_| {
        Err(stele_log::LogError::Internal(
            "the verification thread panicked".into(),
        ))
    })
}

/// Runs one attestation and records its outcome (log, metrics, readiness).
pub fn attest(
    context: &SchedulerContext,
    facts: &AuditFacts,
    by: &str,
    now: Timestamp,
) -> Option<Attestation> {
    let result = lock_log(&context.log)
        .governance()
        .attest_as(facts, by, now);
    match result {
        Ok(attestation) => {
            let failed = context.governance.record_attestation(&attestation);
            context.governance.attestations.fetch_add(1, Relaxed);
            if failed == 0 {
                tracing::info!(
                    event = attestation.event_index,
                    "attestation: all checks passed"
                );
            } else {
                for f in attestation.findings.iter().filter(|f| !f.ok) {
                    tracing::error!(check = %f.check, detail = %f.detail, "AUDIT CHECK FAILED");
                }
            }
            Some(attestation)
        }
        Err(e) => {
            tracing::error!(error = %e, "attestation could not be made");
            context.governance.failed_checks.store(1, Relaxed);
            None
        }
    }
}
