//! Search across the log: every answer compared with a scan of the log
//! that matches each event with `Query::matches`, whether the index was
//! fed as batches became durable, built at open, or absent; pages pinned
//! to a tree size while appends go on; streams the caller may not read
//! neither shown nor counted; a purged epoch gone from the index.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use jiff::Timestamp;
use stele_event::time::Day;
use stele_log::search::{Aggregates, Bucket, Order, Search, search};
use stele_log::{CreateOptions, EntryIndex, Log, LogError, LogReader, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_query::{Field, Query};
use stele_store::keys::NewKek;

const DAY: i64 = 86_400;
/// 2026-01-01 as a UTC day number.
const JAN1: i64 = 20_454;

fn at(day: i64, second: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + day) * DAY + second).unwrap()
}

fn create(dir: &Path) {
    Log::create(
        dir,
        CreateOptions {
            origin: "search.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
}

const ACTORS: [&str; 5] = [
    "alice@acme.example",
    "bob@acme.example",
    "carol",
    "svc-backup",
    "Dave Smith",
];
const ACTIONS: [&str; 4] = ["db.read", "db.delete", "login", "policy.update"];
const STREAMS: [&str; 3] = ["payments", "ops", "hr"];

/// Event `n` of a deterministic mix: every field and several attribute
/// shapes vary with `n`.
fn raw_event(n: u64) -> String {
    let actor = ACTORS[(n * 7 % 5) as usize];
    let action = ACTIONS[(n * 3 % 4) as usize];
    let stream = STREAMS[(n % 3) as usize];
    let outcome = if n.is_multiple_of(4) {
        "denied"
    } else {
        "success"
    };
    let tags = if n.is_multiple_of(2) {
        r#"["pci","eu-west"]"#
    } else {
        r#"["us-east"]"#
    };
    format!(
        r#"{{"actor":"{actor}","action":"{action}","resource":"db/prod/t{}","outcome":"{outcome}","stream":"{stream}","time":"2026-01-0{}T10:00:{:02}Z","attributes":{{"ip":"10.0.0.{}","latency_ms":{},"tags":{tags},"k8s":{{"namespace":"ns-{}"}},"reason":"Permission denied by rule {}"}}}}"#,
        n % 6,
        1 + n % 3,
        n % 60,
        n % 9,
        n * 13 % 100,
        n % 4,
        n % 5,
    )
}

/// Appends events `range`, received at `when`, in batches of 37.
fn append(log: &mut Log, range: std::ops::Range<u64>, when: Timestamp) {
    let preparer = Preparer::new("app", "test", "ops");
    let events: Vec<_> = range
        .map(|n| preparer.prepare(raw_event(n).as_bytes(), when).unwrap())
        .collect();
    for batch in events.chunks(37) {
        log.writer().append_batch(batch).unwrap();
    }
    log.writer().publish().unwrap();
}

/// Waits until the index covers the whole log.
fn wait_indexed(reader: &LogReader) {
    let index = reader.search_index().expect("an index");
    for _ in 0..2000 {
        if index.behind(reader.size()) == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("the index did not catch up: {:?}", index.failure());
}

/// The entries of `[0, size)` a scan finds: readable, of a stream the
/// caller may read, matching.
fn scan(reader: &LogReader, query: &Query, size: u64, may_read: &dyn Fn(&str) -> bool) -> Vec<u64> {
    (0..size)
        .filter(|&i| match reader.get(EntryIndex(i)) {
            Ok(e) => may_read(&e.envelope.stream) && query.matches(&e.envelope),
            Err(LogError::Purged { .. }) => false,
            Err(e) => panic!("{e}"),
        })
        .collect()
}

/// Every page of a search, `limit` at a time: the entries in order.
fn all_pages(
    reader: &LogReader,
    query: &Query,
    order: Order,
    limit: usize,
    size: u64,
    may_read: &dyn Fn(&str) -> bool,
) -> (Vec<u64>, u64) {
    let aggregates = Aggregates::default();
    let mut found = Vec::new();
    let mut after = None;
    let mut count = None;
    loop {
        let page = search(
            reader,
            &Search {
                query,
                order,
                limit,
                size,
                after,
                aggregates: &aggregates,
                // With an index that has caught up, nothing is read
                // from the log but the page's events.
                max_unindexed: reader.search_index().map(|_| 0),
            },
            may_read,
        )
        .unwrap();
        assert!(page.events.len() <= limit);
        assert_eq!(
            *count.get_or_insert(page.count),
            page.count,
            "the count stays"
        );
        found.extend(page.events.iter().map(|e| e.index.0));
        if !page.more {
            break;
        }
        after = page.events.last().map(|e| e.index.0);
    }
    (found, count.unwrap())
}

const QUERIES: [&str; 16] = [
    "",
    "actor:alice@acme.example",
    "actor:*@acme.example -action:login",
    "resource:db/prod/* outcome:denied",
    "(action:db.delete OR action:policy.update) stream:payments,hr",
    "attributes.tags:pci attributes.k8s.namespace:ns-1",
    "attributes.latency_ms:39",
    "\"denied by rule 3\"",
    "smith",
    "rule",
    "acme -prod",
    "dave smith -stream:ops",
    "received>=2026-01-02 received<2026-01-03",
    "time:2026-01-02 actor:carol",
    "writer:app source:test",
    "NOT attributes.ip:10.0.0.* OR id:nothing",
];

fn check_all(reader: &LogReader, may_read: &dyn Fn(&str) -> bool) {
    check_pages(reader, may_read, 7, 50);
}

/// [`check_all`] with pages of `newest` and `oldest` events.
fn check_pages(reader: &LogReader, may_read: &dyn Fn(&str) -> bool, newest: usize, oldest: usize) {
    let size = reader.published_size();
    let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
    for text in QUERIES {
        let query = Query::parse(text, now).unwrap();
        let expected = scan(reader, &query, size, may_read);
        let (found, count) = all_pages(reader, &query, Order::Newest, newest, size, may_read);
        let mut descending = expected.clone();
        descending.reverse();
        assert_eq!(found, descending, "{text}");
        assert_eq!(count, expected.len() as u64, "{text}");
        let (found, _) = all_pages(reader, &query, Order::Oldest, oldest, size, may_read);
        assert_eq!(found, expected, "{text}");
    }
}

#[test]
fn search_agrees_with_a_scan_fed_built_or_without_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let everything = |_: &str| true;
    let not_hr = |s: &str| s != "hr";
    {
        let mut log = Log::open(&data, OpenOptions::default()).unwrap();
        append(&mut log, 0..300, at(0, 3600));
        append(&mut log, 300..500, at(1, 7200));
        wait_indexed(log.reader());
        check_all(log.reader(), &everything);
    }
    // Opened again: the index is built from the log, then fed.
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 500..700, at(2, 60));
    wait_indexed(log.reader());
    let index = log.reader().search_index().unwrap();
    assert!(index.failure().is_none());
    check_all(log.reader(), &everything);
    check_all(log.reader(), &not_hr);
    drop(log);
    // Without the index every entry is read from the log: the same answers.
    let log = Log::open(
        &data,
        OpenOptions {
            no_search_index: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(log.reader().search_index().is_none());
    check_all(log.reader(), &not_hr);
}

#[test]
fn counts_histograms_and_top_values_are_those_of_the_matches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 0..200, at(0, 3600));
    append(&mut log, 200..350, at(0, 5 * 3600));
    append(&mut log, 350..400, at(3, 60));
    wait_indexed(log.reader());
    let reader = log.reader().clone();
    let size = reader.published_size();
    let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
    let query = Query::parse("outcome:denied -stream:hr", now).unwrap();
    let not_ops = |s: &str| s != "ops";
    let matches = scan(&reader, &query, size, &not_ops);
    for bucket in [Bucket::Hour, Bucket::Day] {
        let aggregates = Aggregates {
            histogram: Some(bucket),
            top: vec![
                Field::Actor,
                Field::Action,
                Field::Attribute(vec!["tags".into()]),
            ],
        };
        let page = search(
            &reader,
            &Search {
                query: &query,
                order: Order::Newest,
                limit: 5,
                size,
                after: None,
                aggregates: &aggregates,
                max_unindexed: Some(0),
            },
            &not_ops,
        )
        .unwrap();
        assert_eq!(page.count, matches.len() as u64);
        assert_eq!(page.unindexed, 0);
        let seconds = match bucket {
            Bucket::Hour => 3600,
            Bucket::Day => DAY,
        };
        let mut histogram: BTreeMap<i64, u64> = BTreeMap::new();
        let mut tops: Vec<HashMap<String, u64>> = vec![HashMap::new(); 3];
        for &i in &matches {
            let e = reader.get(EntryIndex(i)).unwrap().envelope;
            let received: Timestamp = e.received_at.parse().unwrap();
            *histogram
                .entry(received.as_second().div_euclid(seconds) * seconds)
                .or_default() += 1;
            *tops[0].entry(e.event.actor.clone()).or_default() += 1;
            *tops[1].entry(e.event.action.clone()).or_default() += 1;
            let tags = e.event.attributes.as_ref().unwrap()["tags"]
                .as_array()
                .unwrap()
                .clone();
            for tag in tags {
                *tops[2]
                    .entry(tag.as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        let got: BTreeMap<i64, u64> = page
            .histogram
            .iter()
            .map(|(t, n)| (t.as_second(), *n))
            .collect();
        assert_eq!(got, histogram);
        for ((_, values), expected) in page.top.iter().zip(&tops) {
            let got: HashMap<String, u64> = values
                .iter()
                .map(|v| (v.value.to_string(), v.count))
                .collect();
            assert_eq!(&got, expected);
        }
    }
}

#[test]
fn pages_stay_pinned_to_their_tree_size_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    append(&mut log, 0..200, at(0, 60));
    let reader = log.reader().clone();
    let size = reader.published_size();
    let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
    let query = Query::parse("actor:carol", now).unwrap();
    let expected = scan(&reader, &query, size, &|_| true);
    let aggregates = Aggregates::default();
    let page = |after: Option<u64>| {
        search(
            &reader,
            &Search {
                query: &query,
                order: Order::Newest,
                limit: 10,
                size,
                after,
                aggregates: &aggregates,
                max_unindexed: None,
            },
            &|_| true,
        )
        .unwrap()
    };
    let first = page(None);
    let mut found: Vec<u64> = first.events.iter().map(|e| e.index.0).collect();
    let mut after = found.last().copied();
    // Appends (with the same actor) between pages change nothing of the
    // search: it is pinned to `size`.
    let mut round = 0;
    loop {
        append(&mut log, 200 + round * 50..250 + round * 50, at(0, 120));
        round += 1;
        let next = page(after);
        assert_eq!(next.count, expected.len() as u64);
        found.extend(next.events.iter().map(|e| e.index.0));
        after = found.last().copied();
        if !next.more {
            break;
        }
    }
    assert!(round > 1);
    found.reverse();
    assert_eq!(found, expected);
}

/// Opens the log with every stream kept 30 days (purged at once when
/// due: no grace).
fn open_with_30_days(data: &Path) -> Log {
    let mut log = open_persisting(data);
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    let mut toml = "version = 1\ndefault_stream = \"ops\"\n".to_string();
    for stream in STREAMS {
        toml.push_str(&format!("[streams.{stream}]\nretain = \"30d\"\n"));
    }
    let source = PolicySource {
        toml_name: "policy.toml".into(),
        toml,
        cedar_name: None,
        cedar: None,
    };
    log.governance()
        .apply_policy(Policy::from_source(&source).unwrap(), "admin", at(0, 0))
        .unwrap();
    log
}

#[test]
fn a_purged_epoch_leaves_the_index_and_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let mut log = open_with_30_days(&data);
    append(&mut log, 0..120, at(0, 60));
    append(&mut log, 120..240, at(1, 60));
    wait_indexed(log.reader());
    let query = Query::parse("stream:ops", at(0, 0)).unwrap();
    let before = scan(log.reader(), &query, log.reader().published_size(), &|_| {
        true
    });
    let segments_before = log.reader().search_index().unwrap().segments();
    log.governance()
        .purge_epoch(
            "ops",
            Day::from_number(JAN1 as u32).unwrap(),
            "admin",
            at(60, 0),
        )
        .unwrap();
    let reader = log.reader().clone();
    // The purge's own events are indexed as they come.
    wait_indexed(&reader);
    let purged: Vec<u32> = reader.purged().keys().map(|id| id.0).collect();
    assert_eq!(purged.len(), 1);
    let segments_after = reader.search_index().unwrap().segments();
    // The purge's own `_system` events may open a segment; the purged
    // one is gone.
    assert!(segments_before.iter().any(|id| id.0 == purged[0]));
    assert!(!segments_after.iter().any(|id| id.0 == purged[0]));
    let size = reader.published_size();
    let after = scan(&reader, &query, size, &|_| true);
    assert!(after.len() < before.len() && !after.is_empty());
    let (found, count) = all_pages(&reader, &query, Order::Oldest, 100, size, &|_| true);
    assert_eq!(found, after);
    assert_eq!(count, after.len() as u64);
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

/// The index leaves nothing in clear on disk: a value that only the
/// events and the searches for it hold is found by a search, yet no file
/// of the data directory holds it in clear (the segments and the search
/// part files are sealed, the decoded blocks live in memory, the searches
/// are recorded in the encrypted `_system` stream), before and after its
/// epoch is purged, which removes the epoch's part file too.
#[test]
fn searched_values_are_nowhere_on_disk_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    let mut log = open_with_30_days(&data);
    let marker = "zq7-secret-marker-e91";
    let preparer = Preparer::new("app", "test", "ops");
    let events: Vec<_> = (0..50)
        .map(|n| {
            let raw = format!(
                r#"{{"actor":"u{n}","action":"read","attributes":{{"note":"{marker} {n}"}}}}"#
            );
            preparer.prepare(raw.as_bytes(), at(0, 60)).unwrap()
        })
        .collect();
    log.writer().append_batch(&events).unwrap();
    // An event of the next day closes day 0: its part files (ops, and
    // `_system` with the policy) are written.
    append(&mut log, 0..1, at(1, 3600));
    wait_indexed(log.reader());
    wait_written(log.reader(), 2);
    let files_before = part_files(&data);
    assert_eq!(files_before.len(), 2);
    let query = Query::parse(&format!("\"{marker}\""), at(1, 0)).unwrap();
    let (found, _) = all_pages(
        log.reader(),
        &query,
        Order::Newest,
        20,
        log.reader().published_size(),
        &|_| true,
    );
    assert_eq!(found.len(), 50);
    assert_eq!(
        on_disk(&data, marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    log.governance()
        .purge_epoch(
            "ops",
            Day::from_number(JAN1 as u32).unwrap(),
            "admin",
            at(60, 0),
        )
        .unwrap();
    wait_indexed(log.reader());
    let (found, count) = all_pages(
        log.reader(),
        &query,
        Order::Newest,
        20,
        log.reader().published_size(),
        &|_| true,
    );
    assert_eq!((found.len(), count), (0, 0));
    // The purge took the epoch's part file with it.
    let purged = log.reader().purged().keys().next().unwrap().0;
    let purged_file = data.join("search").join(format!("{purged}.part"));
    assert!(files_before.contains(&purged_file));
    assert!(!part_files(&data).contains(&purged_file));
    drop(log);
    assert_eq!(
        on_disk(&data, marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    // The needle would be seen: the scan reads what a file holds.
    std::fs::write(data.join("probe"), format!("x{marker}y")).unwrap();
    assert_eq!(on_disk(&data, marker.as_bytes()).len(), 1);
}

/// Opens the log with its search index writing part files.
fn open_persisting(data: &Path) -> Log {
    Log::open(
        data,
        OpenOptions {
            search_parts: true,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// Waits until the index has written `n` part files since the open.
fn wait_written(reader: &LogReader, n: u64) {
    let index = reader.search_index().expect("an index");
    for _ in 0..2000 {
        if index.parts_report().written >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("part files not written: {:?}", index.parts_report());
}

/// The part files of the search directory, by name.
fn part_files(data: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("search"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Days 0 and 1 (three streams each) closed by an event of day 2: six
/// part files, 500 entries.
fn log_with_two_closed_days(data: &Path) {
    create(data);
    let mut log = open_persisting(data);
    append(&mut log, 0..300, at(0, 3600));
    append(&mut log, 300..500, at(1, 7200));
    // Day 1 closes ten minutes into day 2.
    append(&mut log, 500..530, at(2, 300));
    wait_indexed(log.reader());
    assert_eq!(
        log.reader().search_index().unwrap().parts_report().written,
        3
    );
    append(&mut log, 530..600, at(2, 3600));
    wait_written(log.reader(), 6);
    assert_eq!(part_files(data).len(), 6);
}

/// Waits until no closed segment waits for its part file or its
/// frequent words.
fn wait_maintained(reader: &LogReader) {
    let index = reader.search_index().expect("an index");
    for _ in 0..4000 {
        if index.parts_due() == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("closed segments not maintained: {:?}", index.parts_report());
}

#[test]
fn frequent_words_of_closed_days_are_gathered_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create(&data);
    // Day 0's three segments hold 1,400 entries each: "rule", "prod" and
    // "denied" are in every one, "acme" in two of five.
    let mut log = open_persisting(&data);
    append(&mut log, 0..4200, at(0, 3600));
    append(&mut log, 4200..4230, at(1, 3600));
    wait_indexed(log.reader());
    wait_maintained(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!(report.gathered, 3, "{report:?}");
    assert!(report.frequent_words >= 9, "{report:?}");
    check_pages(log.reader(), &|_| true, 500, 1000);
    check_pages(log.reader(), &|s| s != "hr", 500, 1000);
    // A closed day that gets more events (a clock set back): its words
    // are gathered again, and answers hold meanwhile and after.
    append(&mut log, 4230..4260, at(0, 80_000));
    check_pages(log.reader(), &|_| true, 500, 1000);
    wait_indexed(log.reader());
    wait_maintained(log.reader());
    assert_eq!(
        log.reader().search_index().unwrap().parts_report().gathered,
        6
    );
    check_pages(log.reader(), &|_| true, 500, 1000);
    drop(log);
    // Read back from the part files, gathered again.
    let log = open_persisting(&data);
    wait_indexed(log.reader());
    wait_maintained(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!(
        (report.loaded_segments, report.gathered),
        (3, 3),
        "{report:?}"
    );
    check_pages(log.reader(), &|_| true, 500, 1000);
}

#[test]
fn part_files_of_closed_days_are_read_back_at_open_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    log_with_two_closed_days(&data);
    let mut log = open_persisting(&data);
    wait_indexed(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!(
        (
            report.loaded_segments,
            report.loaded_entries,
            report.refused.len()
        ),
        (6, 500, 0),
        "{report:?}"
    );
    check_all(log.reader(), &|_| true);
    check_all(log.reader(), &|s| s != "hr");
    // A closed day that gets more events (a clock set back): its file is
    // written again, and the next open reads the new one.
    append(&mut log, 600..630, at(0, 80_000));
    wait_written(log.reader(), 3);
    drop(log);
    let log = open_persisting(&data);
    wait_indexed(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!((report.loaded_entries, report.refused.len()), (530, 0));
    check_all(log.reader(), &|_| true);
    let checks =
        stele_log::search::verify_parts(log.reader(), log.reader().size(), true, &mut |_, _| {})
            .unwrap();
    assert_eq!(checks.len(), 6);
    assert!(
        checks
            .iter()
            .all(|c| c.outcome == stele_log::search::PartOutcome::Agrees),
        "{checks:?}"
    );
}

#[test]
fn a_changed_or_misplaced_part_file_is_refused_rebuilt_and_reported_by_verify() {
    use stele_log::search::PartOutcome;
    use stele_log::verify::{NoProgress, verify};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    log_with_two_closed_days(&data);
    let files = part_files(&data);
    // One byte of one file changed; another file copied over a third's name.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&files[0], bytes).unwrap();
    std::fs::copy(&files[1], &files[2]).unwrap();
    let reader = LogReader::open(&data, OpenOptions::default()).unwrap();
    let checks =
        stele_log::search::verify_parts(&reader, reader.size(), false, &mut |_, _| {}).unwrap();
    let problems: Vec<_> = checks
        .iter()
        .filter(|c| matches!(c.outcome, PartOutcome::Problem(_)))
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(problems, vec![files[0].clone(), files[2].clone()]);
    let report = verify(&reader, &NoProgress).unwrap();
    assert!(report.problem_count >= 2, "{:?}", report.problems);
    drop(reader);
    // The open refuses both, indexes their segments from the log, and
    // writes them again.
    let log = open_persisting(&data);
    wait_indexed(log.reader());
    let index = log.reader().search_index().unwrap();
    let report = index.parts_report();
    assert_eq!(
        (report.loaded_segments, report.refused.len()),
        (4, 2),
        "{report:?}"
    );
    check_all(log.reader(), &|_| true);
    wait_written(log.reader(), 2);
    let checks =
        stele_log::search::verify_parts(log.reader(), log.reader().size(), true, &mut |_, _| {})
            .unwrap();
    assert!(checks.iter().all(|c| c.outcome == PartOutcome::Agrees));
    assert_eq!(verify(log.reader(), &NoProgress).unwrap().problem_count, 0);
}

/// A part file of the same segment, opened by the same key, but of a
/// timeline whose events differ (a copy of the directory that went on
/// separately): the entry numbers agree, their commitments do not.
#[test]
fn a_part_file_of_another_timeline_is_refused_by_its_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    create(&first);
    {
        let mut log = open_persisting(&first);
        append(&mut log, 0..90, at(0, 3600));
    }
    copy_dir(&first, &second);
    for (data, events) in [(&first, 100..190), (&second, 1000..1090)] {
        let mut log = open_persisting(data);
        append(&mut log, events, at(0, 7200));
        append(&mut log, 2000..2010, at(1, 3600));
        wait_written(log.reader(), 3);
    }
    for file in part_files(&first) {
        std::fs::copy(&file, second.join("search").join(file.file_name().unwrap())).unwrap();
    }
    let log = open_persisting(&second);
    wait_indexed(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!(report.loaded_segments, 0, "{report:?}");
    assert_eq!(report.refused.len(), 3);
    assert!(
        report.refused.iter().all(|r| r.contains("commitments")),
        "{report:?}"
    );
    check_all(log.reader(), &|_| true);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn rebuild_writes_every_closed_segment_again_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    log_with_two_closed_days(&data);
    let before: Vec<Vec<u8>> = part_files(&data)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    std::fs::write(data.join("search").join("7.part.tmp"), b"left over").unwrap();
    let log = Log::open(
        &data,
        OpenOptions {
            no_search_index: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut seen = Vec::new();
    let report =
        stele_log::search::rebuild(log.reader(), &mut |done, all| seen.push((done, all))).unwrap();
    assert_eq!((report.entries, report.files, report.removed), (600, 6, 7));
    assert_eq!(seen.first(), Some(&(0, 600)));
    assert_eq!(seen.last(), Some(&(600, 600)));
    let after = part_files(&data);
    assert_eq!(after.len(), 6);
    // New salts: new bytes, the same index.
    for (old, path) in before.iter().zip(&after) {
        assert_ne!(old, &std::fs::read(path).unwrap());
    }
    let checks = stele_log::search::verify_parts(log.reader(), 600, true, &mut |_, _| {}).unwrap();
    assert!(
        checks
            .iter()
            .all(|c| c.outcome == stele_log::search::PartOutcome::Agrees),
        "{checks:?}"
    );
    // The next open reads the rebuilt files: the same answers.
    drop(log);
    let log = open_persisting(&data);
    wait_indexed(log.reader());
    let report = log.reader().search_index().unwrap().parts_report();
    assert_eq!((report.loaded_entries, report.refused.len()), (500, 0));
    check_all(log.reader(), &|_| true);
}
