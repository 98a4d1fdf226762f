//! Running one search: the index's parts and the unindexed entries,
//! merged into one page and one set of counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use stele_index::{Bitset, Part, TopValue};
use stele_query::{Field, Query};

use crate::engine::StoredEvent;
use crate::error::{LogError, LogResult};
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::search::index::Coverage;

/// Which matches come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Highest log index first.
    Newest,
    /// Lowest log index first.
    Oldest,
}

/// A histogram's bucket, over when the server received each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }

    /// The start of the bucket holding `at`.
    fn start(self, at: Timestamp) -> i64 {
        at.as_second().div_euclid(self.seconds()) * self.seconds()
    }
}

/// Counts over all matches (not only the page's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    pub histogram: Option<Bucket>,
    /// Fields whose most frequent values are counted (actor, action,
    /// resource, …).
    pub top: Vec<Field>,
}

/// Most values a top list holds.
pub const TOP_VALUES: usize = 10;

/// One search: see [`search`].
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub query: &'a Query,
    pub order: Order,
    /// Most events on the page.
    pub limit: usize,
    /// The tree size the search is pinned to: entries `[0, size)`.
    pub size: u64,
    /// For a next page: only entries after this one in `order`.
    pub after: Option<u64>,
    pub aggregates: &'a Aggregates,
    /// Most unindexed entries the search reads from the log (`None`: no
    /// limit).
    pub max_unindexed: Option<u64>,
}

/// What a search found.
#[derive(Debug)]
pub struct Page {
    /// At most `limit` events, in the order asked.
    pub events: Vec<StoredEvent>,
    /// Every match in `[0, size)`, on every page.
    pub count: u64,
    /// Whether more matches follow this page.
    pub more: bool,
    /// (bucket start, matches), ascending, empty buckets left out.
    pub histogram: Vec<(Timestamp, u64)>,
    /// Per field asked, its most frequent values among the matches.
    pub top: Vec<(Field, Vec<TopValue>)>,
    /// Entries read from the log because the index did not cover them.
    pub unindexed: u64,
}

/// Counts gathered over every match.
#[derive(Debug, Default)]
struct Tally {
    count: u64,
    histogram: BTreeMap<i64, u64>,
    top: Vec<HashMap<Arc<str>, u64>>,
    /// Matching entries beyond the cursor, at most `limit + 1` per source.
    candidates: Vec<u64>,
}

/// Searches `reader`'s log; `may_read` says which streams the caller may
/// read (a stream it may not is neither shown nor counted).
pub fn search(
    reader: &LogReader,
    search: &Search<'_>,
    may_read: &dyn Fn(&str) -> bool,
) -> LogResult<Page> {
    let purged: std::collections::HashSet<u32> = reader.purged().keys().map(|id| id.0).collect();
    let mut tally = Tally {
        top: vec![HashMap::new(); search.aggregates.top.len()],
        ..Tally::default()
    };
    let gaps = match reader.search_index() {
        Some(index) => {
            let state = index.read();
            for (id, epoch) in &state.epochs {
                if purged.contains(id) || !may_read(&epoch.stream) {
                    continue;
                }
                for part in &epoch.parts {
                    from_part(part, &epoch.stream, &state.coverage, search, &mut tally);
                }
            }
            state.coverage.gaps(search.size)
        }
        None => vec![(0, search.size)],
    };
    let unindexed: u64 = gaps.iter().map(|(a, b)| b - a).sum();
    if let Some(limit) = search.max_unindexed
        && unindexed > limit
    {
        return Err(LogError::IndexBehind { unindexed, limit });
    }
    for (from, to) in gaps {
        from_log(reader, from, to, search, may_read, &mut tally)?;
    }
    finish(reader, search, tally, unindexed)
}

/// Whether `entry` comes after the cursor.
fn after_cursor(search: &Search<'_>, entry: u64) -> bool {
    match (search.after, search.order) {
        (None, _) => true,
        (Some(after), Order::Newest) => entry < after,
        (Some(after), Order::Oldest) => entry > after,
    }
}

/// The ordinals of `part` whose entries are below `size` and covered
/// (`None`: all of them): a part read from its file at open holds entries
/// the build has not reached yet, which a search reads from the log
/// instead.
fn searchable(part: &Part, coverage: &Coverage, size: u64) -> Option<Bitset> {
    let entries = part.entries();
    if let (Some(&first), Some(&last)) = (entries.first(), entries.last())
        && last < size
        && coverage
            .ranges()
            .iter()
            .any(|&(from, to)| from <= first && last < to)
    {
        return None;
    }
    let ordinal = |entry: u64| entries.partition_point(|&e| e < entry);
    let mut set = Bitset::empty(part.len());
    for &(from, to) in coverage.ranges() {
        let (from, to) = (ordinal(from), ordinal(to.min(size)));
        if from < to {
            let mut range = Bitset::full(part.len());
            range.keep_range(from, to);
            set.or(&range);
        }
    }
    Some(set)
}

/// Adds the matches of one part.
fn from_part(
    part: &Part,
    stream: &str,
    coverage: &Coverage,
    search: &Search<'_>,
    tally: &mut Tally,
) {
    let searchable = searchable(part, coverage, search.size);
    if part.is_empty() || searchable.as_ref().is_some_and(|s| s.count() == 0) {
        return;
    }
    let mut set = match search.query.expr() {
        Some(expr) => part.eval(expr, stream),
        None => Bitset::full(part.len()),
    };
    if let Some(searchable) = &searchable {
        set.and(searchable);
    }
    let count = set.count();
    if count == 0 {
        return;
    }
    tally.count += count;
    if let Some(bucket) = search.aggregates.histogram {
        add_histogram(part, &set, count, bucket, &mut tally.histogram);
    }
    for (field, counts) in search.aggregates.top.iter().zip(&mut tally.top) {
        for value in part.counts(field, &set) {
            *counts.entry(value.value).or_default() += value.count;
        }
    }
    // The part's first `limit + 1` matches past the cursor: no more can
    // reach the page, and one more says whether another page follows.
    let want = search.limit + 1;
    let past_cursor = |&entry: &u64| after_cursor(search, entry);
    match search.order {
        Order::Newest => tally.candidates.extend(
            set.ones_rev()
                .map(|o| part.entry(o))
                .filter(past_cursor)
                .take(want),
        ),
        Order::Oldest => tally.candidates.extend(
            set.ones()
                .map(|o| part.entry(o))
                .filter(past_cursor)
                .take(want),
        ),
    }
}

/// Adds the `count` matches `set` of `part` to `histogram`. A part whose
/// entries were all received within one bucket (a day's part, by day)
/// adds its count at once; otherwise each run of matches in one bucket is
/// added at once (entries are received in order, so runs are long).
fn add_histogram(
    part: &Part,
    set: &Bitset,
    count: u64,
    bucket: Bucket,
    histogram: &mut BTreeMap<i64, u64>,
) {
    if let Some((least, greatest)) = part.received_bounds()
        && bucket.start(least) == bucket.start(greatest)
    {
        *histogram.entry(bucket.start(least)).or_default() += count;
        return;
    }
    let mut run: Option<(i64, u64)> = None;
    for ordinal in set.ones() {
        let Some(at) = part.received(ordinal) else {
            continue;
        };
        let start = bucket.start(at);
        match &mut run {
            Some((current, n)) if *current == start => *n += 1,
            _ => {
                if let Some((done, n)) = run.replace((start, 1)) {
                    *histogram.entry(done).or_default() += n;
                }
            }
        }
    }
    if let Some((done, n)) = run {
        *histogram.entry(done).or_default() += n;
    }
}

/// Adds the matches among the entries `[from, to)`, read from the log.
fn from_log(
    reader: &LogReader,
    from: u64,
    to: u64,
    search: &Search<'_>,
    may_read: &dyn Fn(&str) -> bool,
    tally: &mut Tally,
) -> LogResult<()> {
    for entry in from..to {
        let stored = match reader.get(EntryIndex(entry)) {
            Ok(stored) => stored,
            Err(LogError::Purged { .. }) => continue,
            Err(e) => return Err(e),
        };
        let envelope = &stored.envelope;
        if !may_read(&envelope.stream) || !search.query.matches(envelope) {
            continue;
        }
        tally.count += 1;
        if let Some(bucket) = search.aggregates.histogram
            && let Ok(at) = envelope.received_at.parse::<Timestamp>()
        {
            *tally.histogram.entry(bucket.start(at)).or_default() += 1;
        }
        for (field, counts) in search.aggregates.top.iter().zip(&mut tally.top) {
            let mut seen: Vec<String> = Vec::new();
            stele_query::extract::values_of(envelope, field, &mut |value| {
                if !seen.iter().any(|s| s == value) {
                    seen.push(value.to_string());
                }
            });
            for value in seen {
                *counts.entry(Arc::from(value)).or_default() += 1;
            }
        }
        if after_cursor(search, entry) {
            tally.candidates.push(entry);
        }
    }
    Ok(())
}

/// Orders the candidates, reads the page's events and checks each against
/// the query again.
fn finish(
    reader: &LogReader,
    search: &Search<'_>,
    tally: Tally,
    unindexed: u64,
) -> LogResult<Page> {
    let mut candidates = tally.candidates;
    match search.order {
        Order::Newest => candidates.sort_unstable_by(|a, b| b.cmp(a)),
        Order::Oldest => candidates.sort_unstable(),
    }
    let more = candidates.len() > search.limit;
    candidates.truncate(search.limit);
    let mut events = Vec::with_capacity(candidates.len());
    for entry in candidates {
        let stored = match reader.get(EntryIndex(entry)) {
            Ok(stored) => stored,
            // Purged since the index answered: it is gone from the page.
            Err(LogError::Purged { .. }) => continue,
            Err(e) => return Err(e),
        };
        if !search.query.matches(&stored.envelope) {
            return Err(LogError::Internal(format!(
                "the search index holds entry {entry} for a query it does not match"
            )));
        }
        events.push(stored);
    }
    let histogram = tally
        .histogram
        .into_iter()
        .filter_map(|(start, n)| Timestamp::from_second(start).ok().map(|t| (t, n)))
        .collect();
    let top = search
        .aggregates
        .top
        .iter()
        .cloned()
        .zip(tally.top)
        .map(|(field, counts)| {
            let mut values: Vec<TopValue> = counts
                .into_iter()
                .map(|(value, count)| TopValue { value, count })
                .collect();
            values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            values.truncate(TOP_VALUES);
            (field, values)
        })
        .collect();
    Ok(Page {
        events,
        count: tally.count,
        more,
        histogram,
        top,
        unindexed,
    })
}
