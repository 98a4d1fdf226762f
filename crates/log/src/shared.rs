//! Small things the writer's threads and its callers share: a lock-free
//! histogram for metrics (the sequencer's batch sizes, the commit thread's
//! flush times) and the one way to lock a shared [`Log`].
//!
//! This module knows nothing of batches or threads; it exists so that the
//! commit thread and the server need not import the sequencer for them.

use std::sync::{Mutex, MutexGuard};

use crate::Log;

/// A histogram with fixed upper bounds, lock-free to record into.
#[derive(Debug)]
pub struct Histogram {
    /// Inclusive upper bounds, ascending.
    pub bounds: &'static [f64],
    counts: Vec<std::sync::atomic::AtomicU64>,
    /// Sum of observed values, in millionths.
    sum_micros: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..bounds.len())
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            sum_micros: std::sync::atomic::AtomicU64::new(0),
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Cumulative counts per bound, the sum and the total count.
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut running = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                running += c.load(Relaxed);
                running
            })
            .collect();
        (
            cumulative,
            self.sum_micros.load(Relaxed) as f64 / 1e6,
            self.count.load(Relaxed),
        )
    }
}

/// Locks a shared log, recovering the guard if a holder panicked (the log's
/// own poisoning then decides what may still be done).
pub fn lock_log(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}
