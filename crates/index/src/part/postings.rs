//! The ordinals holding one value of a dictionary.

use crate::bitset::Bitset;

/// A list of postings turns into a bitset once it holds this many
/// ordinals and at least one in 32 of the part's (where a bit per ordinal
/// takes no more memory than four bytes per posting); a bitset turns back
/// into a list once it holds fewer than one in 64 (so that a value busy
/// early and rare later never costs more than twice its list).
const DENSE_MIN: usize = 1024;

/// The ascending ordinals holding one value: most values of a field with
/// unique values (request ids) are held once, without a vector; a value
/// held by many of the part's entries (a busy actor) as a bitset, which
/// a search adds a word at a time instead of an ordinal at a time.
#[derive(Debug, Clone)]
pub(super) enum Postings {
    One(u32),
    Many(Vec<u32>),
    /// Bits `0..=last`, `count` of them set.
    Dense {
        words: Vec<u64>,
        count: u32,
        last: u32,
    },
}

impl Postings {
    /// Postings of ascending, distinct `ordinals` (at least one).
    pub(super) fn of(ordinals: Vec<u32>) -> Postings {
        let mut postings = match ordinals.as_slice() {
            [only] => return Postings::One(*only),
            _ => Postings::Many(ordinals),
        };
        postings.densify();
        postings
    }

    /// Adds `ordinal`, at or past the last one.
    pub(super) fn push(&mut self, ordinal: u32) {
        match self {
            Postings::One(only) if *only == ordinal => {}
            Postings::One(only) => *self = Postings::Many(vec![*only, ordinal]),
            Postings::Many(list) => {
                if list.last() != Some(&ordinal) {
                    list.push(ordinal);
                    self.densify();
                }
            }
            Postings::Dense { words, count, last } => {
                if *last != ordinal {
                    let at = ordinal as usize;
                    if words.len() <= at / 64 {
                        words.resize(at / 64 + 1, 0);
                    }
                    words[at / 64] |= 1 << (at % 64);
                    *count += 1;
                    *last = ordinal;
                    if (*count as usize) * 64 < at + 1 {
                        let list = Bitset::ones_of(words).map(|o| o as u32).collect();
                        *self = Postings::Many(list);
                    }
                }
            }
        }
    }

    /// Turns a list dense enough into a bitset.
    fn densify(&mut self) {
        let Postings::Many(list) = self else { return };
        let Some(&last) = list.last() else { return };
        if list.len() < DENSE_MIN || list.len() * 32 < last as usize + 1 {
            return;
        }
        let mut words = vec![0u64; last as usize / 64 + 1];
        for &ordinal in list.iter() {
            words[ordinal as usize / 64] |= 1 << (ordinal % 64);
        }
        *self = Postings::Dense {
            words,
            count: list.len() as u32,
            last,
        };
    }

    /// How many ordinals.
    pub(super) fn len(&self) -> usize {
        match self {
            Postings::One(_) => 1,
            Postings::Many(list) => list.len(),
            Postings::Dense { count, .. } => *count as usize,
        }
    }

    /// The ordinals, ascending.
    pub(super) fn ordinals(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            Postings::One(only) => Box::new(std::iter::once(*only)),
            Postings::Many(list) => Box::new(list.iter().copied()),
            Postings::Dense { words, .. } => Box::new(Bitset::ones_of(words).map(|o| o as u32)),
        }
    }

    /// Adds the ordinals to `set`.
    pub(super) fn add_to(&self, set: &mut Bitset) {
        match self {
            Postings::One(only) => set.insert(*only as usize),
            Postings::Many(list) => list.iter().for_each(|&o| set.insert(o as usize)),
            Postings::Dense { words, .. } => set.or_words(words),
        }
    }

    /// How many of the ordinals `set` holds.
    pub(super) fn count_in(&self, set: &Bitset) -> u64 {
        match self {
            Postings::One(only) => u64::from(set.contains(*only as usize)),
            Postings::Many(list) => {
                list.iter().filter(|&&o| set.contains(o as usize)).count() as u64
            }
            Postings::Dense { words, .. } => set.count_and(words),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Postings::One(_) => 0,
            Postings::Many(list) => list.capacity() * std::mem::size_of::<u32>(),
            Postings::Dense { words, .. } => words.capacity() * std::mem::size_of::<u64>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever form they take, postings hold what was pushed, and
        /// add and count it as a set would.
        #[test]
        fn postings_hold_what_was_pushed(
            gaps in proptest::collection::vec(0u32..40, 1..3000),
            other in proptest::collection::vec(0usize..70_000, 0..200),
        ) {
            let mut ordinals = Vec::new();
            let mut at = 0u32;
            for gap in gaps {
                at += gap;
                ordinals.push(at);
            }
            let mut pushed = Postings::One(ordinals[0]);
            for &o in &ordinals {
                pushed.push(o);
            }
            ordinals.dedup();
            let built = Postings::of(ordinals.clone());
            let len = at as usize + 100;
            let mut mask = Bitset::empty(len);
            other.iter().for_each(|&o| mask.insert(o));
            for postings in [&pushed, &built] {
                prop_assert_eq!(postings.len(), ordinals.len());
                prop_assert_eq!(postings.ordinals().collect::<Vec<_>>(), ordinals.clone());
                let mut set = Bitset::empty(len);
                postings.add_to(&mut set);
                prop_assert_eq!(set.ones().map(|o| o as u32).collect::<Vec<_>>(), ordinals.clone());
                let expected = ordinals.iter().filter(|&&o| mask.contains(o as usize)).count();
                prop_assert_eq!(postings.count_in(&mask), expected as u64);
            }
        }
    }

    #[test]
    fn a_busy_value_is_a_bitset_and_a_rare_one_a_list() {
        let busy: Vec<u32> = (0..4096).map(|o| o * 4).collect();
        assert!(matches!(
            Postings::of(busy),
            Postings::Dense { count: 4096, .. }
        ));
        let rare: Vec<u32> = (0..4096).map(|o| o * 64).collect();
        assert!(matches!(Postings::of(rare), Postings::Many(_)));
        let mut growing = Postings::One(0);
        for o in 1..2048 {
            growing.push(o * 2);
        }
        assert!(matches!(
            growing,
            Postings::Dense {
                count: 2048,
                last: 4094,
                ..
            }
        ));
        // Rare from then on: a list again once under one in 64.
        growing.push(2049 * 64);
        assert!(matches!(growing, Postings::Many(ref list) if list.len() == 2049));
    }
}
