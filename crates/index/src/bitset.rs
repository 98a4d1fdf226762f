//! A set of ordinals of one part.

/// A fixed-length set of ordinals `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    /// The empty set over `0..len`.
    pub fn empty(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Every ordinal of `0..len`.
    pub fn full(len: usize) -> Bitset {
        let mut set = Bitset {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        set.trim();
        set
    }

    /// The set whose words are `words` (ordinal `64 * i + b` is bit `b`
    /// of word `i`) over `0..len`: words past `len` are dropped, missing
    /// ones are empty.
    pub fn from_words(mut words: Vec<u64>, len: usize) -> Bitset {
        words.resize(len.div_ceil(64), 0);
        let mut set = Bitset { words, len };
        set.trim();
        set
    }

    /// Clears the bits past `len` in the last word.
    fn trim(&mut self) {
        let extra = self.words.len() * 64 - self.len;
        if extra > 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= u64::MAX >> extra;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `ordinal` (one at or past `len` is ignored).
    pub fn insert(&mut self, ordinal: usize) {
        if ordinal < self.len {
            self.words[ordinal / 64] |= 1 << (ordinal % 64);
        }
    }

    pub fn contains(&self, ordinal: usize) -> bool {
        ordinal < self.len && self.words[ordinal / 64] & (1 << (ordinal % 64)) != 0
    }

    /// Keeps what is also in `other` (of the same length).
    pub fn and(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// Adds what is in `other` (of the same length).
    pub fn or(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Adds the ordinals of `words` (as [`Bitset::from_words`] reads
    /// them) below `len`.
    pub fn or_words(&mut self, words: &[u64]) {
        for (a, b) in self.words.iter_mut().zip(words) {
            *a |= b;
        }
        self.trim();
    }

    /// How many ordinals of `words` (as [`Bitset::from_words`] reads
    /// them) are in the set.
    pub fn count_and(&self, words: &[u64]) -> u64 {
        self.words
            .iter()
            .zip(words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// Every ordinal not in the set.
    pub fn not(&mut self) {
        for word in &mut self.words {
            *word = !*word;
        }
        self.trim();
    }

    /// Keeps only the ordinals in `from..to`.
    pub fn keep_range(&mut self, from: usize, to: usize) {
        let to = to.min(self.len);
        let from = from.min(to);
        for (i, word) in self.words.iter_mut().enumerate() {
            let lo = i * 64;
            let hi = lo + 64;
            let mut mask = u64::MAX;
            if from > lo {
                mask &= if from >= hi {
                    0
                } else {
                    u64::MAX << (from - lo)
                };
            }
            if to < hi {
                mask &= if to <= lo { 0 } else { u64::MAX >> (hi - to) };
            }
            *word &= mask;
        }
    }

    /// How many ordinals are in the set.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The ordinals in the set, ascending.
    pub fn ones(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        Bitset::ones_of(&self.words)
    }

    /// The ordinals of `words` (as [`Bitset::from_words`] reads them),
    /// ascending.
    pub fn ones_of(words: &[u64]) -> impl DoubleEndedIterator<Item = usize> + '_ {
        words.iter().enumerate().flat_map(|(i, &word)| {
            let base = i * 64;
            Ones { word, base }
        })
    }

    /// The ordinals in the set, descending.
    pub fn ones_rev(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().rev().flat_map(|(i, &word)| {
            let base = i * 64;
            Ones { word, base }.rev()
        })
    }
}

/// The set bits of one word.
struct Ones {
    word: u64,
    base: usize,
}

impl Iterator for Ones {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(self.base + bit)
    }
}

impl DoubleEndedIterator for Ones {
    fn next_back(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = 63 - self.word.leading_zeros() as usize;
        self.word &= !(1u64 << bit);
        Some(self.base + bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn operations_agree_with_a_set(
            len in 0usize..300,
            a in proptest::collection::vec(0usize..300, 0..50),
            b in proptest::collection::vec(0usize..300, 0..50),
            from in 0usize..320,
            to in 0usize..320,
        ) {
            let set_of = |items: &[usize]| {
                let mut set = Bitset::empty(len);
                items.iter().for_each(|&i| set.insert(i));
                set
            };
            let a_model: std::collections::BTreeSet<usize> =
                a.iter().copied().filter(|&i| i < len).collect();
            let b_model: std::collections::BTreeSet<usize> =
                b.iter().copied().filter(|&i| i < len).collect();
            let mut and = set_of(&a);
            and.and(&set_of(&b));
            prop_assert_eq!(and.ones().collect::<Vec<_>>(),
                a_model.intersection(&b_model).copied().collect::<Vec<_>>());
            let mut or = set_of(&a);
            or.or(&set_of(&b));
            prop_assert_eq!(or.ones().collect::<Vec<_>>(),
                a_model.union(&b_model).copied().collect::<Vec<_>>());
            let mut not = set_of(&a);
            not.not();
            let not_model: Vec<usize> = (0..len).filter(|i| !a_model.contains(i)).collect();
            prop_assert_eq!(not.ones().collect::<Vec<_>>(), not_model.clone());
            prop_assert_eq!(not.count(), not_model.len() as u64);
            let reversed: Vec<usize> = not.ones_rev().collect();
            prop_assert_eq!(reversed, not_model.iter().rev().copied().collect::<Vec<_>>());
            let mut ranged = set_of(&a);
            ranged.keep_range(from, to);
            let range_model: Vec<usize> =
                a_model.iter().copied().filter(|&i| i >= from && i < to).collect();
            prop_assert_eq!(ranged.ones().collect::<Vec<_>>(), range_model);
            prop_assert_eq!(Bitset::full(len).count(), len as u64);
            // The same sets through their words, of any length.
            let mut words = vec![0u64; 6];
            b.iter().for_each(|&i| words[i / 64] |= 1 << (i % 64));
            let from_words = Bitset::from_words(words.clone(), len);
            prop_assert_eq!(&from_words, &set_of(&b));
            let mut or = set_of(&a);
            or.or_words(&words[..from.min(6)]);
            let short: Vec<usize> = a_model.iter().copied()
                .chain(b_model.iter().copied().filter(|&i| i < from.min(6) * 64))
                .collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(or.ones().collect::<Vec<_>>(), short);
            prop_assert_eq!(set_of(&a).count_and(&words),
                a_model.intersection(&b_model).count() as u64);
        }
    }
}
