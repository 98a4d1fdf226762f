//! A part: the index of a run of one segment's entries, in ascending log
//! order, and how an expression is answered over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use stele_query::{Expr, Field, Pattern, TimeField, contains_phrase, tokens};

use crate::bitset::Bitset;
use crate::terms::{ATTRIBUTE, EventTerms, ID, NAMED, TEXT_ONLY, attribute_key, named_code};
use crate::uuid;

mod codec;
mod postings;
mod time;

pub use codec::DecodeError;
use postings::Postings;
use time::TimeColumn;

/// A part refused an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// Entries go into a part in ascending log order.
    OutOfOrder { entry: u64, last: u64 },
    /// A part holds at most `u32::MAX` entries.
    Full,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::OutOfOrder { entry, last } => {
                write!(f, "entry {entry} comes after entry {last} in log order")
            }
            IndexError::Full => f.write_str("the part holds 2^32 - 1 entries"),
        }
    }
}

impl std::error::Error for IndexError {}

/// The distinct values of one field in a part, and which ordinals hold
/// each.
#[derive(Debug, Default)]
struct Dict {
    /// Whether free text searches these values.
    text: bool,
    /// An attribute's dictionary key (empty for a named field).
    key: Arc<str>,
    ids: HashMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
    /// Ordinals per value id.
    postings: Vec<Postings>,
    /// The value ids in the order of their values, for prefixes and
    /// globs: made by the first search that needs it, and brought up to
    /// date by the next once the dictionary has grown.
    sorted: Mutex<Arc<Vec<u32>>>,
}

impl Dict {
    /// Adds `value` at `ordinal`; returns the value's id if it is new.
    fn add(&mut self, value: &str, ordinal: u32) -> Option<u32> {
        if let Some(&id) = self.ids.get(value) {
            self.postings[id as usize].push(ordinal);
            return None;
        }
        let id = self.values.len() as u32;
        let value: Arc<str> = Arc::from(value);
        self.ids.insert(value.clone(), id);
        self.values.push(value);
        self.postings.push(Postings::One(ordinal));
        Some(id)
    }

    /// Adds the ordinals holding value `id` to `set`.
    fn add_postings(&self, id: u32, set: &mut Bitset) {
        self.postings[id as usize].add_to(set);
    }

    /// The value ids in value order (see `sorted`): the ids added since
    /// the last call are sorted and merged in.
    fn sorted_ids(&self) -> Arc<Vec<u32>> {
        let mut sorted = self.sorted.lock().unwrap_or_else(|p| p.into_inner());
        if sorted.len() == self.values.len() {
            return sorted.clone();
        }
        let value = |id: &u32| &*self.values[*id as usize];
        let mut new: Vec<u32> = (sorted.len() as u32..self.values.len() as u32).collect();
        new.sort_unstable_by(|a, b| value(a).cmp(value(b)));
        let mut merged = Vec::with_capacity(self.values.len());
        let (mut old, mut new) = (sorted.iter().peekable(), new.into_iter().peekable());
        while let (Some(a), Some(b)) = (old.peek(), new.peek()) {
            if value(a) <= value(b) {
                merged.push(**a);
                old.next();
            } else {
                merged.push(*b);
                new.next();
            }
        }
        merged.extend(old.copied());
        merged.extend(new);
        *sorted = Arc::new(merged);
        sorted.clone()
    }

    /// The ordinals holding a value that one of `patterns` matches: an
    /// exact value by its id, a prefix (and a glob's literal start) as a
    /// range of the values in order, each value of it checked.
    fn matching(&self, patterns: &[Pattern], len: usize) -> Bitset {
        let mut set = Bitset::empty(len);
        let mut sorted = None;
        for pattern in patterns {
            let start = match pattern {
                Pattern::Exact(value) => {
                    if let Some(&id) = self.ids.get(value.as_str()) {
                        self.add_postings(id, &mut set);
                    }
                    continue;
                }
                Pattern::Prefix(start) => start.as_str(),
                Pattern::Glob(parts) => parts.first().map_or("", String::as_str),
            };
            let ids = sorted.get_or_insert_with(|| self.sorted_ids());
            let value = |id: &u32| &*self.values[*id as usize];
            let from = ids.partition_point(|id| value(id) < start);
            let to = from + ids[from..].partition_point(|id| value(id).starts_with(start));
            for id in &ids[from..to] {
                if pattern.matches(value(id)) {
                    self.add_postings(*id, &mut set);
                }
            }
        }
        set
    }
}

/// A value of a field with how many matching entries hold it
/// ([`Part::top`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopValue {
    pub value: Arc<str>,
    pub count: u64,
}

/// The index of a run of one segment's entries (see the crate docs).
#[derive(Debug, Default)]
pub struct Part {
    /// Log index of each ordinal, ascending.
    entries: Vec<u64>,
    received: TimeColumn,
    time: TimeColumn,
    /// Each entry's id as a number ([`crate::uuid`]); an id that is not a
    /// canonical UUID is in the `id` dictionary instead, marked
    /// [`crate::uuid::NONE`] here.
    ids: Vec<u128>,
    /// One per named field, then the text-only dictionary.
    named: Vec<Dict>,
    attributes: HashMap<Box<str>, Dict>,
    /// For every word of a value free text searches: the dictionaries
    /// (`None` for a named one by code, else the attribute key) and value
    /// ids holding it.
    words: HashMap<Box<str>, Vec<(DictRef, u32)>>,
    /// Words held by many entries, each with every ordinal that free text
    /// finds it at, made once the part stops growing
    /// ([`Part::frequent_words`]); emptied by the next insert.
    frequent: HashMap<Box<str>, Postings>,
}

/// The ordinals free text finds each of a part's frequent words at
/// ([`Part::frequent_words`]), for the part as it was when they were
/// gathered.
#[derive(Debug, Default)]
pub struct FrequentWords {
    len: usize,
    sets: HashMap<Box<str>, Postings>,
}

impl FrequentWords {
    /// How many words.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// The most memory a part's frequent words take, per entry of the part
/// (a bitset is an eighth of a byte per entry: 64 words held by every
/// entry, or more held by fewer).
const FREQUENT_BYTES_PER_ENTRY: usize = 8;

/// A word is frequent in a part when its values are held by at least this
/// many entries, and by one in 32 of them.
const FREQUENT_MIN: usize = 1024;

/// Which dictionary a word points into.
#[derive(Debug, Clone)]
enum DictRef {
    Named(u8),
    Attribute(Arc<str>),
}

impl Part {
    pub fn new() -> Part {
        let mut named: Vec<Dict> = Vec::with_capacity(NAMED.len() + 1);
        for code in 0..=TEXT_ONLY {
            if code == ATTRIBUTE {
                continue;
            }
            let text = code == TEXT_ONLY
                || matches!(
                    NAMED[code as usize],
                    Field::Actor | Field::Action | Field::Resource | Field::Outcome | Field::Source
                );
            named.push(Dict {
                text,
                ..Dict::default()
            });
        }
        Part {
            named,
            ..Part::default()
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The log index of `ordinal`.
    pub fn entry(&self, ordinal: usize) -> u64 {
        self.entries[ordinal]
    }

    /// The entries, ascending.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }

    /// When the entry at `ordinal` was received.
    pub fn received(&self, ordinal: usize) -> Option<Timestamp> {
        self.received.get(ordinal)
    }

    /// The least and greatest received time, when every entry has one.
    pub fn received_bounds(&self) -> Option<(Timestamp, Timestamp)> {
        self.received.bounds()
    }

    /// The client's time of the entry at `ordinal`.
    pub fn time(&self, ordinal: usize) -> Option<Timestamp> {
        self.time.get(ordinal)
    }

    /// The last entry, if any.
    pub fn last_entry(&self) -> Option<u64> {
        self.entries.last().copied()
    }

    fn named_index(code: u8) -> usize {
        if code == TEXT_ONLY {
            NAMED.len()
        } else {
            code as usize
        }
    }

    /// Adds the entry `entry` with its terms. Entries come in ascending
    /// log order.
    pub fn insert(&mut self, entry: u64, terms: &EventTerms) -> Result<(), IndexError> {
        if let Some(last) = self.last_entry()
            && entry <= last
        {
            return Err(IndexError::OutOfOrder { entry, last });
        }
        let ordinal = u32::try_from(self.entries.len())
            .ok()
            .filter(|&o| o < u32::MAX)
            .ok_or(IndexError::Full)?;
        self.entries.push(entry);
        self.received.push(terms.received);
        self.time.push(terms.time);
        // The frequent words' sets lack the new entry.
        self.frequent.clear();
        self.ids.push(uuid::NONE);
        for item in &terms.items {
            let value = terms.slice(item.value);
            if item.code == ATTRIBUTE {
                let key = terms.slice(item.key);
                let dict = match self.attributes.get_mut(key) {
                    Some(dict) => dict,
                    None => self.attributes.entry(key.into()).or_insert(Dict {
                        text: true,
                        key: Arc::from(key),
                        ..Dict::default()
                    }),
                };
                if let Some(id) = dict.add(value, ordinal) {
                    let key = DictRef::Attribute(dict.key.clone());
                    add_words(&mut self.words, value, key, id);
                }
            } else if item.code == ID
                && let Some(number) = uuid::parse(value)
                && let Some(slot) = self.ids.last_mut()
                && *slot == uuid::NONE
            {
                *slot = number;
            } else {
                let dict = &mut self.named[Self::named_index(item.code)];
                if let Some(id) = dict.add(value, ordinal)
                    && dict.text
                {
                    add_words(&mut self.words, value, DictRef::Named(item.code), id);
                }
            }
        }
        Ok(())
    }

    fn dict(&self, key: &DictRef) -> Option<&Dict> {
        match key {
            DictRef::Named(code) => self.named.get(Self::named_index(*code)),
            DictRef::Attribute(key) => self.attributes.get(&**key),
        }
    }

    /// The ordinals whose id (kept as a number) one of `patterns` matches.
    fn ids_matching(&self, patterns: &[Pattern]) -> Bitset {
        let mut set = Bitset::empty(self.len());
        let exact: Option<Vec<u128>> = patterns
            .iter()
            .map(|p| match p {
                Pattern::Exact(text) => Some(uuid::parse(text).unwrap_or(uuid::NONE)),
                _ => None,
            })
            .collect();
        let mut text = [0u8; 36];
        for (ordinal, &id) in self.ids.iter().enumerate() {
            let found = id != uuid::NONE
                && match &exact {
                    Some(numbers) => numbers.contains(&id),
                    None => {
                        let id = uuid::write(id, &mut text);
                        patterns.iter().any(|p| p.matches(id))
                    }
                };
            if found {
                set.insert(ordinal);
            }
        }
        set
    }

    fn field_dict(&self, field: &Field) -> Option<&Dict> {
        match field {
            Field::Attribute(path) => self
                .attributes
                .get(attribute_key(path.iter().map(String::as_str)).as_str()),
            other => named_code(other).and_then(|code| self.dict(&DictRef::Named(code))),
        }
    }

    /// The ordinals of the entries `expr` matches, for a part of `stream`.
    pub fn eval(&self, expr: &Expr, stream: &str) -> Bitset {
        let len = self.len();
        match expr {
            Expr::And(items) => {
                let mut sets = items.iter().map(|item| self.eval(item, stream));
                let Some(mut set) = sets.next() else {
                    return Bitset::full(len);
                };
                for other in sets {
                    set.and(&other);
                }
                set
            }
            Expr::Or(items) => {
                let mut set = Bitset::empty(len);
                for item in items {
                    set.or(&self.eval(item, stream));
                }
                set
            }
            Expr::Not(inner) => {
                let mut set = self.eval(inner, stream);
                set.not();
                set
            }
            Expr::Field(Field::Stream, patterns) => {
                if patterns.iter().any(|p| p.matches(stream)) {
                    Bitset::full(len)
                } else {
                    Bitset::empty(len)
                }
            }
            Expr::Field(field, patterns) => {
                let mut set = match self.field_dict(field) {
                    Some(dict) => dict.matching(patterns, len),
                    None => Bitset::empty(len),
                };
                if *field == Field::Id {
                    set.or(&self.ids_matching(patterns));
                }
                set
            }
            Expr::Time(TimeField::Time, bound) => self.time.matching(bound),
            Expr::Time(TimeField::Received, bound) => self.received.matching(bound),
            Expr::Text(words) => self.text(words),
        }
    }

    /// The ordinals holding a value in which `words` appear one after the
    /// other: candidates from the rarest word, each checked exactly.
    fn text(&self, words: &[String]) -> Bitset {
        let mut set = Bitset::empty(self.len());
        if let [word] = words
            && let Some(postings) = self.frequent.get(word.as_str())
        {
            postings.add_to(&mut set);
            return set;
        }
        self.text_by_values(words, set)
    }

    /// [`Part::text`] from the values holding the words, added to `set`.
    fn text_by_values(&self, words: &[String], mut set: Bitset) -> Bitset {
        // A value that is one word, already as the word map would write
        // it, is not in the word map: it is found by its own text.
        if let [word] = words {
            let dicts = self.named.iter().chain(self.attributes.values());
            for dict in dicts.filter(|d| d.text) {
                if let Some(&id) = dict.ids.get(word.as_str()) {
                    dict.add_postings(id, &mut set);
                }
            }
        }
        let mut lists = Vec::with_capacity(words.len());
        for word in words {
            match self.words.get(word.as_str()) {
                Some(list) => lists.push(list),
                None => return set,
            }
        }
        let Some(rarest) = lists.into_iter().min_by_key(|list| list.len()) else {
            return set;
        };
        for (key, id) in rarest {
            let Some(dict) = self.dict(key) else { continue };
            if contains_phrase(&dict.values[*id as usize], words) {
                dict.add_postings(*id, &mut set);
            }
        }
        set
    }

    /// The words held by many of the part's entries (at least
    /// [`FREQUENT_MIN`] and one in 32, counted over their values), each
    /// with the ordinals free text finds it at: a search for one of them
    /// then adds one set (most often a bitset, a word at a time) instead
    /// of the postings of every value holding it (hundreds of actors share
    /// a domain). Gathered apart from the part, so that searches go on
    /// meanwhile, and kept by [`Part::keep_frequent_words`].
    ///
    /// A word of one value only is left out (its set would be that value's
    /// postings), and the sets together take at most
    /// [`FREQUENT_BYTES_PER_ENTRY`] bytes per entry: the most held words
    /// first.
    pub fn frequent_words(&self) -> FrequentWords {
        let len = self.len();
        let least = FREQUENT_MIN.max(len / 32);
        let mut candidates: Vec<(usize, &Box<str>)> = self
            .words
            .iter()
            .filter(|(_, list)| list.len() > 1)
            .map(|(word, list)| {
                let held: usize = list
                    .iter()
                    .filter_map(|(key, id)| self.dict(key).map(|d| d.postings[*id as usize].len()))
                    .sum();
                (held, word)
            })
            .filter(|&(held, _)| held >= least)
            .collect();
        candidates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let budget = len.saturating_mul(FREQUENT_BYTES_PER_ENTRY);
        let mut spent = 0;
        let mut sets = HashMap::new();
        for (_, word) in candidates {
            let set =
                self.text_by_values(std::slice::from_ref(&word.to_string()), Bitset::empty(len));
            let ordinals: Vec<u32> = set.ones().map(|o| o as u32).collect();
            if ordinals.is_empty() {
                continue;
            }
            let postings = Postings::of(ordinals);
            spent += postings.heap_bytes();
            if spent > budget {
                break;
            }
            sets.insert(word.clone(), postings);
        }
        FrequentWords { len, sets }
    }

    /// Keeps `words` if the part has not grown since they were gathered;
    /// returns whether it did.
    pub fn keep_frequent_words(&mut self, words: FrequentWords) -> bool {
        if words.len != self.len() {
            return false;
        }
        self.frequent = words.sets;
        true
    }

    /// Whether the part's frequent words are kept (and it has not grown
    /// since).
    pub fn has_frequent_words(&self) -> bool {
        !self.frequent.is_empty()
    }

    /// About how many bytes of memory the part holds (its vectors' and
    /// maps' capacities and the values' text; allocator overhead aside).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let dict = |d: &Dict| {
            let values: usize = d
                .values
                .iter()
                .map(|v| v.len() + 2 * size_of::<usize>())
                .sum();
            let postings: usize = d
                .postings
                .iter()
                .map(|p| p.heap_bytes() + size_of::<Postings>())
                .sum();
            // A map entry: the key's pointer and length, the id, the hash
            // table's control byte, at the map's capacity.
            let ids = d.ids.capacity() * (size_of::<Arc<str>>() + size_of::<u32>() + 1);
            let sorted = d
                .sorted
                .lock()
                .map_or(0, |s| s.capacity() * size_of::<u32>());
            values + postings + ids + sorted + d.values.capacity() * size_of::<Arc<str>>()
        };
        let words: usize = self
            .words
            .iter()
            .map(|(w, list)| {
                w.len()
                    + size_of::<Box<str>>()
                    + size_of::<Vec<(DictRef, u32)>>()
                    + list.capacity() * size_of::<(DictRef, u32)>()
            })
            .sum::<usize>()
            + self.words.capacity();
        self.entries.capacity() * size_of::<u64>()
            + self.ids.capacity() * size_of::<u128>()
            + self.received.capacity_bytes()
            + self.time.capacity_bytes()
            + self.named.iter().map(dict).sum::<usize>()
            + self
                .attributes
                .iter()
                .map(|(k, d)| k.len() + dict(d))
                .sum::<usize>()
            + words
            + self
                .frequent
                .iter()
                .map(|(w, p)| w.len() + size_of::<(Box<str>, Postings)>() + p.heap_bytes())
                .sum::<usize>()
    }

    /// The `n` values of `field` held by the most entries of `set`, most
    /// first (ties by value), with their counts.
    pub fn top(&self, field: &Field, set: &Bitset, n: usize) -> Vec<TopValue> {
        let mut counts = self.counts(field, set);
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        counts.truncate(n);
        counts
    }

    /// Every value of `field` held by an entry of `set`, with its count,
    /// in no order (for merging tops across parts).
    pub fn counts(&self, field: &Field, set: &Bitset) -> Vec<TopValue> {
        let Some(dict) = self.field_dict(field) else {
            return Vec::new();
        };
        dict.postings
            .iter()
            .enumerate()
            .filter_map(|(id, postings)| {
                let count = postings.count_in(set);
                (count > 0).then(|| TopValue {
                    value: dict.values[id].clone(),
                    count,
                })
            })
            .collect()
    }
}

/// Records that the value `id` of dictionary `key` holds each of its
/// words; a value that is one word as it stands is found by its text
/// instead ([`Part::text`]).
fn add_words(
    words: &mut HashMap<Box<str>, Vec<(DictRef, u32)>>,
    value: &str,
    key: DictRef,
    id: u32,
) {
    let mut seen = tokens(value);
    if let [only] = seen.as_slice()
        && only == value
    {
        return;
    }
    seen.sort_unstable();
    seen.dedup();
    for word in seen {
        let entry = match words.get_mut(word.as_str()) {
            Some(list) => list,
            None => words.entry(word.into_boxed_str()).or_default(),
        };
        entry.push((key.clone(), id));
    }
}
