//! Prometheus metrics in the text exposition format, kept in atomics.
//!
//! Request counters live here; the writer's batch, commit-latency and queue
//! figures come from the sequencer's own counters at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use stele_log::FsyncMetrics;
use stele_log::sequencer::{Histogram, SequencerMetrics};

use crate::governance::Governance;

/// One counter per HTTP status code 100..=599.
#[derive(Debug)]
pub struct Responses(Vec<AtomicU64>);

impl Default for Responses {
    fn default() -> Self {
        Responses((100..600).map(|_| AtomicU64::new(0)).collect())
    }
}

/// Counters kept by the HTTP layer.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub events_ingested: AtomicU64,
    pub bytes_ingested: AtomicU64,
    pub duplicates: AtomicU64,
    pub reads: AtomicU64,
    /// Responses by status code (100..=599), without a lock.
    pub responses: Responses,
    /// Errors by category.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Outcomes of TLS file changes, kept by the reloader task.
    pub tls_reloads: Arc<crate::tls::ReloadCounters>,
}

impl HttpMetrics {
    pub fn response(&self, status: u16) {
        if let Some(slot) = self.responses.0.get(usize::from(status).wrapping_sub(100)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    pub fn error(&self, category: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(category)
            .or_insert(0) += 1;
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    histogram_series(out, name, "", h);
}

/// The sample lines of one histogram series; `labels` is empty or ends
/// with a comma (`file="index",`).
fn histogram_series(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (cumulative, sum, count) = h.snapshot();
    for (bound, c) in h.bounds.iter().zip(cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {c}");
    }
    let plain = match labels.trim_end_matches(',') {
        "" => String::new(),
        some => format!("{{{some}}}"),
    };
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}le=\"+Inf\"}} {count}\n{name}_sum{plain} {sum}\n{name}_count{plain} {count}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Renders every metric.
pub fn render(
    http: &HttpMetrics,
    seq: &SequencerMetrics,
    fsync: &FsyncMetrics,
    governance: &Governance,
    checkpoint_age: Option<f64>,
    log_size: u64,
) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP stele_audit_failed_checks Failed checks of the latest attestation (0: all policies in effect).\n# TYPE stele_audit_failed_checks gauge\nstele_audit_failed_checks {}",
        governance.failed_checks.load(Relaxed)
    );
    counter(
        &mut out,
        "stele_attestations_total",
        "Signed attestations appended by this process.",
        governance.attestations.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_purged_epochs_total",
        "Epochs purged by the retention scheduler in this process.",
        governance.purged_epochs.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_access_denied_total",
        "Requests the access policy denied.",
        governance.access_denied.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_events_ingested_total",
        "Events appended durably.",
        http.events_ingested.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_bytes_ingested_total",
        "Raw event bytes appended durably.",
        http.bytes_ingested.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_duplicates_total",
        "Events not appended because their idempotency key was known.",
        http.duplicates.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_event_reads_total",
        "Event contents read (each one audited).",
        http.reads.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_batches_total",
        "Durable batches (one fsync each).",
        seq.batches.load(Relaxed),
    );
    counter(
        &mut out,
        "stele_batch_errors_total",
        "Batches that failed to become durable.",
        seq.errors.load(Relaxed),
    );
    histogram(
        &mut out,
        "stele_batch_events",
        "Events per durable batch.",
        &seq.batch_size,
    );
    histogram(
        &mut out,
        "stele_commit_seconds",
        "Time from writing a batch to its being durable (segment and index fdatasync, after those of the batch before it).",
        &seq.commit_seconds,
    );
    let name = "stele_fsync_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Latency of each flush by the commit threads: file=\"segment\" an fdatasync of a segment, file=\"index\" the index records' write and fdatasync.\n# TYPE {name} histogram"
    );
    histogram_series(&mut out, name, "file=\"segment\",", &fsync.segment);
    histogram_series(&mut out, name, "file=\"index\",", &fsync.index);
    let _ = writeln!(
        out,
        "# HELP stele_queue_depth Requests waiting for the writer.\n# TYPE stele_queue_depth gauge\nstele_queue_depth {}",
        seq.queue_depth.load(Relaxed).max(0)
    );
    let _ = writeln!(
        out,
        "# HELP stele_log_size Entries in the log.\n# TYPE stele_log_size gauge\nstele_log_size {log_size}"
    );
    if let Some(age) = checkpoint_age {
        let _ = writeln!(
            out,
            "# HELP stele_checkpoint_age_seconds Seconds since the last checkpoint was published.\n# TYPE stele_checkpoint_age_seconds gauge\nstele_checkpoint_age_seconds {age}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP stele_tls_reloads_total Changes of the TLS files seen: result=\"loaded\" replaced the configuration for new connections, result=\"failed\" did not load and left the previous one in force.\n# TYPE stele_tls_reloads_total counter\nstele_tls_reloads_total{{result=\"loaded\"}} {}\nstele_tls_reloads_total{{result=\"failed\"}} {}",
        http.tls_reloads.loaded.load(Relaxed),
        http.tls_reloads.failed.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP stele_http_responses_total Responses by status.\n# TYPE stele_http_responses_total counter"
    );
    for (offset, counter) in http.responses.0.iter().enumerate() {
        let n = counter.load(Relaxed);
        if n > 0 {
            let status = offset + 100;
            let _ = writeln!(out, "stele_http_responses_total{{status=\"{status}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP stele_errors_total Errors by category.\n# TYPE stele_errors_total counter"
    );
    for (category, n) in http.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "stele_errors_total{{category=\"{category}\"}} {n}");
    }
    out
}

/// The search index's gauges: entries of the log it does not cover yet
/// (a search reads those from the log), whether indexing stopped on an
/// error (then it stays behind until a restart), about how much memory
/// it holds, and what became of its part files.
pub fn render_search_index(out: &mut String, index: &stele_log::search::SearchIndex, size: u64) {
    let _ = writeln!(
        out,
        "# HELP stele_search_index_behind_entries Entries of the log the search index does not cover yet.\n# TYPE stele_search_index_behind_entries gauge\nstele_search_index_behind_entries {}",
        index.behind(size)
    );
    let _ = writeln!(
        out,
        "# HELP stele_search_index_failed 1 when indexing stopped on an error (searches then read what it lacks from the log, up to their limit).\n# TYPE stele_search_index_failed gauge\nstele_search_index_failed {}",
        u8::from(index.failure().is_some())
    );
    let _ = writeln!(
        out,
        "# HELP stele_search_index_bytes About how many bytes of memory the search index holds.\n# TYPE stele_search_index_bytes gauge\nstele_search_index_bytes {}",
        index.heap_bytes()
    );
    let parts = index.parts_report();
    let _ = writeln!(
        out,
        "# HELP stele_search_parts_loaded_entries Entries the open read from search part files instead of the log.\n# TYPE stele_search_parts_loaded_entries gauge\nstele_search_parts_loaded_entries {}",
        parts.loaded_entries
    );
    let _ = writeln!(
        out,
        "# HELP stele_search_parts_refused Search part files the open refused (changed, foreign or at odds with the log), each deleted and its segment indexed from the log.\n# TYPE stele_search_parts_refused gauge\nstele_search_parts_refused {}",
        parts.refused.len()
    );
    let _ = writeln!(
        out,
        "# HELP stele_search_parts_written_total Search part files written since the start.\n# TYPE stele_search_parts_written_total counter\nstele_search_parts_written_total {}",
        parts.written
    );
    let _ = writeln!(
        out,
        "# HELP stele_search_parts_write_failed 1 when the last write of a search part file failed (the index goes on in memory).\n# TYPE stele_search_parts_write_failed gauge\nstele_search_parts_write_failed {}",
        u8::from(parts.write_error.is_some())
    );
}
