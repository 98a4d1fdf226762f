//! Retention maths: when an epoch (one stream's data for one UTC day) may be
//! purged, under one policy ([`Retention::purge_after`]) and under the whole
//! history of applied policies ([`purge_after`]), and how a policy change
//! alters retention ([`retention_changes`]).
//!
//! The rule this module exists for (DESIGN.md §4): nothing is deleted
//! before its retention ends, and a policy change may lengthen the retention
//! of data already written but never shorten it. It only computes times; it
//! reads no clock and deletes nothing.

use stele_event::time::{Day, SECONDS_PER_DAY};

use crate::Policy;

/// How long a stream's data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retention {
    /// Kept this many whole days after the epoch (UTC day) ends.
    Days(u32),
    /// Kept through the whole of this UTC date, and never less than until
    /// the epoch itself has ended.
    Until(jiff::civil::Date),
    /// Never purged.
    Forever,
}

impl Retention {
    /// The first Unix second at which the epoch `epoch` (one UTC day) may
    /// be purged under this retention alone; `None` means never.
    ///
    /// - `Days(n)`: the epoch's last second is `epoch.end() - 1`, so
    ///   purging is allowed from `epoch.end() + n * 86400`.
    /// - `Until(d)`: from 00:00:00 UTC of the day after `d`, but never
    ///   before the epoch itself has ended (`epoch.end()`).
    /// - `Forever`: `None`.
    pub fn purge_after(&self, epoch: Day) -> Option<i64> {
        let epoch_end = epoch.end();
        match *self {
            Retention::Days(days) => Some(epoch_end + i64::from(days) * SECONDS_PER_DAY),
            // A date before 1970 ended before any epoch began (no date is
            // after the last day a `Day` holds, 9999-12-31).
            Retention::Until(date) => Some(
                Day::from_date(date).map_or(epoch_end, |last_kept| last_kept.end().max(epoch_end)),
            ),
            Retention::Forever => None,
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Days(days) => write!(f, "retain = \"{days}d\""),
            Retention::Until(date) => write!(f, "retain_until = \"{date}\""),
            Retention::Forever => f.write_str("retain = \"forever\""),
        }
    }
}

/// One policy version in the history of applied policies.
#[derive(Debug, Clone, Copy)]
pub struct AppliedPolicy<'a> {
    /// When this version took effect, Unix seconds.
    pub activated_at: i64,
    /// The policy.
    pub policy: &'a Policy,
}

/// When the epoch `epoch` of `stream` may be purged, given every policy
/// version ever applied; `None` means never.
///
/// Retention is never shortened for data already written: the answer is the
/// LATEST purge time (`None`, forever, wins) over the version active when
/// the epoch began (the last with `activated_at <= epoch.start()`) and
/// every later version. If the epoch began before the first version, every
/// version counts. Versions that do not declare `stream` are skipped; if no
/// counted version declares it, the answer is `None`.
///
/// `history` must be sorted by `activated_at` (equal times allowed, later
/// entries then count as later). Empty or unsorted history is answered
/// with `None` (never purge): when in doubt, keep.
pub fn purge_after(history: &[AppliedPolicy<'_>], stream: &str, epoch: Day) -> Option<i64> {
    let sorted = history
        .windows(2)
        .all(|pair| pair[0].activated_at <= pair[1].activated_at);
    if history.is_empty() || !sorted {
        return None;
    }
    let epoch_start = epoch.start();
    // Index of the version active at the epoch's start, or 0 if the epoch
    // began before any version.
    let active = history
        .iter()
        .rposition(|applied| applied.activated_at <= epoch_start)
        .unwrap_or(0);
    let mut latest: Option<i64> = None;
    let mut declared = false;
    for applied in &history[active..] {
        let Some(stream_policy) = applied.policy.stream(stream) else {
            continue;
        };
        declared = true;
        let purge = stream_policy.retention.purge_after(epoch)?;
        latest = Some(latest.map_or(purge, |current| current.max(purge)));
    }
    if declared { latest } else { None }
}

/// How one stream's retention differs between two policies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetentionChange {
    /// The stream is new.
    Added {
        /// The stream.
        stream: String,
        /// Its retention.
        retention: Retention,
    },
    /// The stream is no longer declared. Its data stays under the old rule
    /// (see [`purge_after`]); callers may refuse this if it holds data.
    Removed {
        /// The stream.
        stream: String,
        /// Its retention in the old policy.
        retention: Retention,
    },
    /// Every epoch is kept at least as long as before, and some longer.
    /// Applies to data already written.
    Lengthened {
        /// The stream.
        stream: String,
        /// The old retention.
        old: Retention,
        /// The new retention.
        new: Retention,
    },
    /// Some epoch would be kept less long than before (for a change between
    /// `retain` and `retain_until` this is true of some epochs even when
    /// others are kept longer). Applies only to epochs that begin after the
    /// new policy is activated: data already written keeps the old rule.
    Shortened {
        /// The stream.
        stream: String,
        /// The old retention.
        old: Retention,
        /// The new retention.
        new: Retention,
    },
    /// Same purge time for every epoch.
    Unchanged {
        /// The stream.
        stream: String,
        /// The retention.
        retention: Retention,
    },
}

/// Compares two policies stream by stream, in stream-name order: streams
/// present in both (lengthened, shortened or unchanged), then added and
/// removed streams merged in name order.
pub fn retention_changes(old: &Policy, new: &Policy) -> Vec<RetentionChange> {
    let mut names: Vec<&str> = old.streams().map(|(name, _)| name).collect();
    names.extend(new.streams().map(|(name, _)| name));
    names.sort_unstable();
    names.dedup();
    let mut changes = Vec::with_capacity(names.len());
    for name in names {
        let stream = name.to_owned();
        let change = match (old.stream(name), new.stream(name)) {
            (None, Some(added)) => RetentionChange::Added {
                stream,
                retention: added.retention,
            },
            (Some(removed), None) => RetentionChange::Removed {
                stream,
                retention: removed.retention,
            },
            (Some(before), Some(after)) => {
                let (old, new) = (before.retention, after.retention);
                if shorter_for_some_epoch(old, new) {
                    RetentionChange::Shortened { stream, old, new }
                } else if shorter_for_some_epoch(new, old) {
                    RetentionChange::Lengthened { stream, old, new }
                } else {
                    RetentionChange::Unchanged {
                        stream,
                        retention: old,
                    }
                }
            }
            (None, None) => continue,
        };
        changes.push(change);
    }
    changes
}

/// Whether `new` purges some epoch (`Day::FIRST..=Day::LAST`) earlier than `old`.
fn shorter_for_some_epoch(old: Retention, new: Retention) -> bool {
    use Retention::{Days, Forever, Until};
    match (old, new) {
        (_, Forever) => false,
        (Forever, _) => true,
        (Days(old_days), Days(new_days)) => new_days < old_days,
        (Until(old_date), Until(new_date)) => new_date < old_date,
        // Late epochs: `Until` keeps them only until they end, `Days` keeps
        // them `n` more days; so `Until` is shorter unless n == 0.
        (Days(old_days), Until(_)) => old_days > 0,
        // Epoch e is purged at max(date+1, e+1) under `Until` and at
        // e+1+n under `Days`; `Days` is shorter for e = 0 iff 1+n < date+1.
        // (A date before 1970 keeps no epoch past its end.)
        (Until(old_date), Days(new_days)) => {
            Day::from_date(old_date).is_ok_and(|date| new_days < date.number())
        }
    }
}
