//! Failed authentications (401s): counted for `/metrics` and sampled into
//! the log as `auth.failed` system events, without letting a flood of them
//! fill the log.
//!
//! Failures are gathered in windows of `auth_failure_window_seconds`
//! (default 60 s). At the end of a window that saw any failure, one
//! `auth.failed` event records how many there were, by reason, and the
//! first [`MAX_SAMPLES`] distinct (client address, claimed token id,
//! reason) samples; the rest are counted, not listed. So whatever the
//! rate of failures, the log gains at most one event per window, of
//! bounded size (about 2 KiB). The event is queued on the sequencer like
//! an `access.denied` one; a full queue drops it and counts
//! `auth_failures_not_recorded` (the metric still counts every failure).
//! The window still open at shutdown is recorded before the sequencer
//! stops.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::sync::Arc;
use std::time::Duration;

use stele_log::SystemEvent;
use stele_log::system_event::{AuthFailed, AuthFailureSample};

use crate::api::AppState;

/// Distinct samples one `auth.failed` event lists.
pub const MAX_SAMPLES: usize = 8;

/// One sample: who failed, how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Sample {
    client: Option<IpAddr>,
    token_id: Option<String>,
    reason: &'static str,
}

#[derive(Debug)]
struct Window {
    started: jiff::Timestamp,
    count: u64,
    by_reason: BTreeMap<&'static str, u64>,
    samples: Vec<Sample>,
    distinct: HashSet<Sample>,
}

impl Window {
    fn new() -> Window {
        Window {
            started: jiff::Timestamp::now(),
            count: 0,
            by_reason: BTreeMap::new(),
            samples: Vec::new(),
            distinct: HashSet::new(),
        }
    }
}

/// Every failure since start (by reason) and the window being gathered.
#[derive(Debug)]
pub struct AuthFailures {
    window: Mutex<Window>,
    totals: Mutex<BTreeMap<&'static str, u64>>,
    /// `auth.failed` events appended (queued) so far.
    pub events: AtomicU64,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures {
            window: Mutex::new(Window::new()),
            totals: Mutex::new(BTreeMap::new()),
            events: AtomicU64::new(0),
        }
    }
}

impl AuthFailures {
    /// Counts one failure. `token_id` is the id the presented token claims
    /// (12 hex digits), never any of its secret.
    pub fn record(&self, client: Option<IpAddr>, token_id: Option<&str>, reason: &'static str) {
        *self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_insert(0) += 1;
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.count += 1;
        *window.by_reason.entry(reason).or_insert(0) += 1;
        if window.samples.len() < MAX_SAMPLES {
            let sample = Sample {
                client,
                token_id: token_id.map(str::to_string),
                reason,
            };
            if window.distinct.insert(sample.clone()) {
                window.samples.push(sample);
            }
        }
    }

    /// Failures since start, by reason (for `/metrics`).
    pub fn totals(&self) -> BTreeMap<&'static str, u64> {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends the Prometheus text of the failure counters to `out`:
    /// `stele_auth_failures_total{reason}` and
    /// `stele_auth_failure_events_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP stele_auth_failures_total Failed authentications (401) by reason.\n# TYPE stele_auth_failures_total counter"
        );
        for (reason, n) in self.totals() {
            let _ = writeln!(out, "stele_auth_failures_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP stele_auth_failure_events_total auth.failed events queued for the log (at most one per window).\n# TYPE stele_auth_failure_events_total counter\nstele_auth_failure_events_total {}",
            self.events.load(Relaxed)
        );
    }

    /// Closes the current window and returns the `auth.failed` event that
    /// records it, or `None` when it saw no failure.
    pub fn take_event(&self) -> Option<SystemEvent> {
        let window = std::mem::replace(
            &mut *self.window.lock().unwrap_or_else(|p| p.into_inner()),
            Window::new(),
        );
        if window.count == 0 {
            return None;
        }
        let samples = window
            .samples
            .iter()
            .map(|s| AuthFailureSample {
                client: s.client.map(|ip| ip.to_string()),
                token: s.token_id.clone(),
                reason: s.reason.to_string(),
            })
            .collect();
        Some(SystemEvent::AuthFailed {
            attributes: AuthFailed {
                window_start: window.started.to_string(),
                window_end: jiff::Timestamp::now().to_string(),
                failures: window.count,
                by_reason: window
                    .by_reason
                    .iter()
                    .map(|(reason, n)| (reason.to_string(), *n))
                    .collect(),
                samples,
                unsampled: window.count - window.samples.len() as u64,
            },
        })
    }
}

/// Closes the current window and queues its `auth.failed` event, if it
/// saw any failure. Returns whether an event was queued.
pub fn flush(state: &AppState) -> bool {
    let Some(event) = state.auth_failures.take_event() else {
        return false;
    };
    let prepared = event.prepare("server", jiff::Timestamp::now());
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot record failed authentications");
            return false;
        }
    };
    let queued = state.sequencer.submit(
        vec![prepared],
        Box::new(|result| {
            if let Err(e) = result {
                tracing::error!(error = %e, "recording failed authentications failed");
            }
        }),
    );
    match queued {
        Ok(()) => {
            state.auth_failures.events.fetch_add(1, Relaxed);
            true
        }
        Err(e) => {
            state.metrics.error("auth_failures_not_recorded");
            tracing::warn!(error = ?e, "failed authentications not recorded (queue full)");
            false
        }
    }
}

/// Records one window every `auth_failure_window_seconds` until `stop`
/// turns true, then the last, partial window.
pub async fn run(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.limits.auth_failure_window_seconds);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                flush(&state);
            }
            _ = stop.changed() => break,
        }
    }
    flush(&state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_everything_and_lists_few() {
        let failures = AuthFailures::default();
        assert!(failures.take_event().is_none());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for i in 0..1000u32 {
            let id = format!("{:012x}", i % 20);
            failures.record(Some(ip), Some(&id), "unknown_token");
        }
        failures.record(None, None, "no_credentials");
        let event = failures.take_event().unwrap().client_event();
        let attributes = &event["attributes"];
        assert_eq!(attributes["failures"], 1001);
        assert_eq!(attributes["by_reason"]["unknown_token"], 1000);
        assert_eq!(attributes["by_reason"]["no_credentials"], 1);
        assert_eq!(attributes["samples"].as_array().unwrap().len(), MAX_SAMPLES);
        assert_eq!(attributes["unsampled"], 1001 - MAX_SAMPLES as u64);
        // The next window starts empty; the totals keep everything.
        assert!(failures.take_event().is_none());
        assert_eq!(failures.totals()["unknown_token"], 1000);
    }
}
