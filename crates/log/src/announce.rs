//! Retention announcements: a clock jump alone never makes anything due.
//!
//! An epoch that is due is not purged at once. It is first announced by a
//! `retention.due` event, and this process remembers when — by the wall
//! clock and by its monotonic clock. It is purged only by a later
//! enforcement of the same process once the grace period has passed on
//! the monotonic clock, the wall clock moved by as much (within
//! [`MAX_DRIFT`]), and the epoch is still due. The purge record names its
//! announcement, so `verify` can check from the log alone that every purge
//! was announced at least the recorded grace period before it was decided.
//!
//! What this defends against: a clock that jumps ahead while Stele runs
//! (the two clocks disagree: the announcement is renewed, nothing is
//! purged), and a clock set far ahead before a one-shot command (it only
//! announces; nothing is deleted until a process has *run* through the
//! grace period, and the announcements are in the log, on `/metrics`
//! and in the server's log lines for an operator to see and answer with a
//! hold). A clock set back is refused outright (`governance::check_clock`).
//! What it does not defend against: a clock that was wrong before Stele
//! started and stays wrong, with nobody watching, for the whole grace
//! period — only an outside time source could tell; and anyone who can
//! run Stele's binary with a grace of zero and keys to the data directory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use stele_event::time::timestamp_text;

use crate::error::{LogError, LogResult};
use crate::governance::EpochStatus;
use crate::governance::Governance;
use crate::purge::Tombstone;
use crate::system_event::{self, SystemEvent};

/// The grace period between announcing a purge and carrying it out,
/// unless the caller sets another ([`Governance::set_retention_grace`]).
pub const DEFAULT_RETENTION_GRACE: Duration = Duration::from_secs(3600);

/// How far the wall clock may move apart from the monotonic clock during a
/// grace period (plus 1 % of the period) before the announcement is
/// renewed instead of acted on.
pub const MAX_DRIFT: Duration = Duration::from_secs(60);

/// One epoch announced due by this process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Announcement {
    /// Wall-clock time of the announcement (Unix seconds).
    wall: i64,
    /// Monotonic time of the announcement.
    monotonic: Instant,
    /// The `retention.due` event.
    event_index: u64,
}

/// The announcements of one open log, by segment id.
#[derive(Debug)]
pub(crate) struct Announcements {
    grace: Duration,
    by_segment: HashMap<u32, Announcement>,
}

impl Default for Announcements {
    fn default() -> Self {
        Announcements {
            grace: DEFAULT_RETENTION_GRACE,
            by_segment: HashMap::new(),
        }
    }
}

/// Whether an announcement may be acted on at `now`.
enum Readiness {
    Ready(u64),
    Waiting(Duration),
    /// The wall clock moved by `wall` seconds while the monotonic clock
    /// moved by `monotonic`.
    ClockDisagrees {
        wall: i64,
        monotonic: Duration,
    },
}

impl Announcements {
    fn readiness(&self, announcement: &Announcement, now: Timestamp) -> Readiness {
        let monotonic = announcement.monotonic.elapsed();
        let wall = now.as_second() - announcement.wall;
        let allowed = MAX_DRIFT + monotonic / 100;
        let drift = (i128::from(wall) - monotonic.as_secs() as i128).unsigned_abs();
        if drift > allowed.as_secs() as u128 {
            return Readiness::ClockDisagrees { wall, monotonic };
        }
        match self.grace.checked_sub(monotonic) {
            Some(left) if !left.is_zero() => Readiness::Waiting(left),
            _ => Readiness::Ready(announcement.event_index),
        }
    }
}

/// What one retention run did.
#[derive(Debug, Clone, Default)]
pub struct RetentionRun {
    /// Epochs purged.
    pub purged: Vec<Tombstone>,
    /// Epochs announced due (now or earlier) and not yet purged, with the
    /// grace still to run on this process's clock.
    pub waiting: Vec<(EpochStatus, Duration)>,
}

impl Governance<'_> {
    /// Sets the grace period between announcing a purge and carrying it
    /// out (see the module docs). Zero purges in the run that announces.
    pub fn set_retention_grace(&mut self, grace: Duration) {
        self.state.announcements.grace = grace;
    }

    /// The grace period in force.
    pub fn retention_grace(&self) -> Duration {
        self.state.announcements.grace
    }

    /// Announces every epoch due at `now` that this process has not
    /// announced, and purges those whose announcement has matured.
    pub fn run_retention(&mut self, by: &str, now: Timestamp) -> LogResult<RetentionRun> {
        self.writer.check_writable()?;
        self.check_clock(now, "enforce retention")?;
        let due: Vec<EpochStatus> = self
            .writer
            .reader()
            .retention_status(now)
            .into_iter()
            .filter(|s| s.due)
            .collect();
        let mut run = RetentionRun::default();
        for status in due {
            match self.announced_readiness(&status, by, now)? {
                Readiness::Ready(announced) => {
                    run.purged
                        .push(self.purge_segment(&status, by, now, Some(announced))?);
                }
                Readiness::Waiting(left) => run.waiting.push((status, left)),
                Readiness::ClockDisagrees { .. } => return Err(fresh_disagreement(&status)),
            }
        }
        Ok(run)
    }

    /// The readiness of `status`'s announcement, announcing it first when
    /// this process has none (or the clocks disagreed since the last one).
    fn announced_readiness(
        &mut self,
        status: &EpochStatus,
        by: &str,
        now: Timestamp,
    ) -> LogResult<Readiness> {
        let mut clock_note = None;
        if let Some(existing) = self.state.announcements.by_segment.get(&status.segment.0) {
            match self.state.announcements.readiness(existing, now) {
                Readiness::ClockDisagrees { wall, monotonic } => {
                    clock_note = Some(format!(
                        "the wall clock moved {wall} s while this process's monotonic clock moved {} s since the last announcement (entry {}); announced again",
                        monotonic.as_secs(),
                        existing.event_index
                    ));
                }
                ready => return Ok(ready),
            }
        }
        let grace = self.state.announcements.grace;
        let event = SystemEvent::RetentionDue {
            actor: by.to_string(),
            attributes: system_event::RetentionDue {
                segment: status.segment.0,
                stream: status.stream.clone(),
                epoch: status.epoch_day.to_string(),
                purge_after: status.purge_after.map(timestamp_text),
                announced_at: now.to_string(),
                grace_seconds: grace.as_secs(),
                clock: clock_note,
            },
        };
        let receipt = self.writer.append_system(&event, now)?;
        let announcement = Announcement {
            wall: now.as_second(),
            monotonic: Instant::now(),
            event_index: receipt.index.0,
        };
        self.state
            .announcements
            .by_segment
            .insert(status.segment.0, announcement);
        // Just announced: the clocks agree by construction.
        Ok(self.state.announcements.readiness(&announcement, now))
    }

    /// For an explicit purge request: the announcement of a due epoch, or
    /// a refusal saying how long it still has to wait.
    pub(crate) fn matured_announcement(
        &mut self,
        status: &EpochStatus,
        by: &str,
        now: Timestamp,
    ) -> LogResult<u64> {
        match self.announced_readiness(status, by, now)? {
            Readiness::Ready(announced) => Ok(announced),
            Readiness::Waiting(left) => Err(LogError::Refused(format!(
                "stream {:?} epoch {} is due and was announced; it is purged once {} s more have passed on this process's clock with the wall clock agreeing (a clock jump alone never makes anything due) — `stele serve` does this by itself, or run `stele retention run --wait`",
                status.stream,
                status.epoch_day,
                left.as_secs()
            ))),
            Readiness::ClockDisagrees { .. } => Err(fresh_disagreement(status)),
        }
    }
}

/// A fresh announcement cannot disagree with the clock it was made by.
fn fresh_disagreement(status: &EpochStatus) -> LogError {
    LogError::Internal(format!(
        "the announcement of segment {} disagrees with the clock that just made it",
        status.segment
    ))
}
