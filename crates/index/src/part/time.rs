//! A part's time column, with a summary per 64 ordinals so that a time
//! bound is answered a word of the answer at a time.

use jiff::Timestamp;
use stele_query::TimeBound;

use crate::bitset::Bitset;

/// The least and greatest time present, and which ordinals have one, of
/// one word's 64 ordinals (`present == 0`: none has a time, and the two
/// ends mean nothing).
#[derive(Debug, Clone, Copy)]
struct Zone {
    least: Timestamp,
    greatest: Timestamp,
    present: u64,
}

/// One time (received, or the client's) per ordinal.
///
/// A bound holds for the instants of a half-line, so if it holds for
/// both ends of a zone it holds for every time in it, and if for neither,
/// for none: only a zone the bound cuts is checked time by time. Events
/// arrive in about the order of both times, so a range of days or hours
/// cuts few zones.
#[derive(Debug, Default)]
pub(super) struct TimeColumn {
    times: Vec<Option<Timestamp>>,
    zones: Vec<Zone>,
    /// The least and greatest time of the whole column.
    ends: Option<(Timestamp, Timestamp)>,
    /// How many ordinals have no time.
    missing: usize,
}

impl TimeColumn {
    /// A column of `times`, in ordinal order.
    pub(super) fn of(times: Vec<Option<Timestamp>>) -> TimeColumn {
        let mut column = TimeColumn {
            times: Vec::with_capacity(times.len()),
            ..TimeColumn::default()
        };
        for at in times {
            column.push(at);
        }
        column
    }

    /// Adds the next ordinal's time.
    pub(super) fn push(&mut self, at: Option<Timestamp>) {
        let ordinal = self.times.len();
        self.times.push(at);
        if ordinal.is_multiple_of(64) {
            self.zones.push(Zone {
                least: Timestamp::MAX,
                greatest: Timestamp::MIN,
                present: 0,
            });
        }
        let Some(at) = at else {
            self.missing += 1;
            return;
        };
        self.ends = Some(match self.ends {
            Some((least, greatest)) => (least.min(at), greatest.max(at)),
            None => (at, at),
        });
        if let Some(zone) = self.zones.last_mut() {
            zone.least = zone.least.min(at);
            zone.greatest = zone.greatest.max(at);
            zone.present |= 1 << (ordinal % 64);
        }
    }

    pub(super) fn get(&self, ordinal: usize) -> Option<Timestamp> {
        self.times[ordinal]
    }

    pub(super) fn times(&self) -> &[Option<Timestamp>] {
        &self.times
    }

    pub(super) fn capacity_bytes(&self) -> usize {
        self.times.capacity() * std::mem::size_of::<Option<Timestamp>>()
            + self.zones.capacity() * std::mem::size_of::<Zone>()
    }

    /// The least and greatest time, when every ordinal has one.
    pub(super) fn bounds(&self) -> Option<(Timestamp, Timestamp)> {
        self.ends.filter(|_| self.missing == 0)
    }

    /// The ordinals whose time `bound` holds for (one with no time: never).
    pub(super) fn matching(&self, bound: &TimeBound) -> Bitset {
        let len = self.times.len();
        // The whole column first, as a zone (most parts are a day's).
        match self.ends.map(|(l, g)| (bound.holds(l), bound.holds(g))) {
            None | Some((false, false)) => return Bitset::empty(len),
            Some((true, true)) if self.missing == 0 => return Bitset::full(len),
            _ => {}
        }
        let words = self
            .zones
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                if zone.present == 0 {
                    return 0;
                }
                match (bound.holds(zone.least), bound.holds(zone.greatest)) {
                    (true, true) => zone.present,
                    (false, false) => 0,
                    _ => {
                        let base = i * 64;
                        let end = (base + 64).min(self.times.len());
                        let mut word = 0u64;
                        for (bit, at) in self.times[base..end].iter().enumerate() {
                            if at.is_some_and(|at| bound.holds(at)) {
                                word |= 1 << bit;
                            }
                        }
                        word
                    }
                }
            })
            .collect();
        Bitset::from_words(words, len)
    }
}
