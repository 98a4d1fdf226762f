//! Retention maths: single-policy boundaries to the second, and the history
//! rule (lengthening applies to old data, shortening only to new), with a
//! property test against the "never shorter" invariant.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;
use stele_event::time::Day;
use stele_policy::{
    AppliedPolicy, Policy, PolicySource, Retention, RetentionChange, purge_after, retention_changes,
};

const DAY: i64 = 86_400;

fn policy(streams: &[(&str, &str)]) -> Policy {
    let mut toml = format!("version = 1\ndefault_stream = \"{}\"\n", streams[0].0);
    for (name, rule) in streams {
        toml.push_str(&format!("[streams.{name}]\n{rule}\n"));
    }
    Policy::from_source(&PolicySource::from_toml("p.toml", toml)).unwrap_or_else(|e| panic!("{e}"))
}

fn day(number: u32) -> Day {
    Day::from_number(number).unwrap()
}

fn date(y: i16, m: i8, d: i8) -> jiff::civil::Date {
    jiff::civil::date(y, m, d)
}

#[test]
fn days_boundaries() {
    // Epoch 0 is 1970-01-01; its last second is 86399; 90 days later.
    assert_eq!(Retention::Days(90).purge_after(day(0)), Some(91 * DAY));
    assert_eq!(Retention::Days(1).purge_after(day(0)), Some(2 * DAY));
    // 2024-02-29 (leap day) is epoch 19782.
    assert_eq!(
        Retention::Days(1).purge_after(day(19_782)),
        Some(19_784 * DAY)
    );
    assert_eq!(
        Retention::Days(1).purge_after(day(19_782)),
        Some(1_709_337_600)
    ); // 2024-03-02T00:00:00Z
    // Largest epoch and retention do not overflow.
    assert_eq!(
        Retention::Days(36_500).purge_after(Day::LAST),
        Some((i64::from(Day::LAST.number()) + 1 + 36_500) * DAY)
    );
}

#[test]
fn until_boundaries() {
    // Kept through the whole of 2031-12-31: purge from 2032-01-01T00:00:00Z.
    assert_eq!(
        Retention::Until(date(2031, 12, 31)).purge_after(day(0)),
        Some(1_956_528_000)
    );
    // Leap years: through 2024-02-29 means purge from 2024-03-01.
    assert_eq!(
        Retention::Until(date(2024, 2, 29)).purge_after(day(0)),
        Some(1_709_251_200)
    );
    // Through 2100-02-28 (2100 is not a leap year): purge from 2100-03-01.
    assert_eq!(
        Retention::Until(date(2100, 2, 28)).purge_after(day(0)),
        Some(4_107_542_400)
    );
    // Through 2000-02-29 (2000 is): purge from 2000-03-01.
    assert_eq!(
        Retention::Until(date(2000, 2, 29)).purge_after(day(0)),
        Some(951_868_800)
    );
    // Through 1970-01-01 for epoch 0: purge when the epoch ends.
    assert_eq!(
        Retention::Until(date(1970, 1, 1)).purge_after(day(0)),
        Some(DAY)
    );
    // An epoch after the date is still kept until it has ended.
    assert_eq!(
        Retention::Until(date(2020, 1, 1)).purge_after(day(20_000)),
        Some(20_001 * DAY)
    );
    // Epoch that is the date itself.
    let epoch_2031_12_31 = (1_956_528_000 / DAY - 1) as u32;
    assert_eq!(
        Retention::Until(date(2031, 12, 31)).purge_after(day(epoch_2031_12_31)),
        Some(1_956_528_000)
    );
    // Dates before 1970.
    assert_eq!(
        Retention::Until(date(1969, 12, 31)).purge_after(day(0)),
        Some(DAY)
    );
}

#[test]
fn forever_is_never() {
    assert_eq!(Retention::Forever.purge_after(day(0)), None);
    assert_eq!(Retention::Forever.purge_after(Day::LAST), None);
}

#[test]
fn history_lengthening_applies_to_old_epochs() {
    let short = policy(&[("ops", "retain = \"30d\"")]);
    let long = policy(&[("ops", "retain = \"90d\"")]);
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &short,
        },
        AppliedPolicy {
            activated_at: 100 * DAY,
            policy: &long,
        },
    ];
    // Epoch 10 began under the 30-day rule; the later 90-day rule lengthens it.
    assert_eq!(
        purge_after(&history, "ops", day(10)),
        Some((10 + 1 + 90) * DAY)
    );
    let forever = policy(&[("ops", "retain = \"forever\"")]);
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &short,
        },
        AppliedPolicy {
            activated_at: 100 * DAY,
            policy: &forever,
        },
    ];
    assert_eq!(purge_after(&history, "ops", day(10)), None);
}

#[test]
fn history_shortening_applies_only_to_later_epochs() {
    let long = policy(&[("ops", "retain = \"90d\"")]);
    let short = policy(&[("ops", "retain = \"30d\"")]);
    let activation = 100 * DAY + 3600; // during epoch 100
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &long,
        },
        AppliedPolicy {
            activated_at: activation,
            policy: &short,
        },
    ];
    assert_eq!(
        purge_after(&history, "ops", day(10)),
        Some((10 + 1 + 90) * DAY)
    );
    // Epoch 100 began before the activation: keeps the 90 days.
    assert_eq!(
        purge_after(&history, "ops", day(100)),
        Some((100 + 1 + 90) * DAY)
    );
    // Epoch 101 begins after: 30 days.
    assert_eq!(
        purge_after(&history, "ops", day(101)),
        Some((101 + 1 + 30) * DAY)
    );
    // Activation exactly at an epoch's start counts as active for it.
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &long,
        },
        AppliedPolicy {
            activated_at: 100 * DAY,
            policy: &short,
        },
    ];
    assert_eq!(
        purge_after(&history, "ops", day(100)),
        Some((100 + 1 + 30) * DAY)
    );
    assert_eq!(
        purge_after(&history, "ops", day(99)),
        Some((99 + 1 + 90) * DAY)
    );
    // Forever then shorter: old data stays forever.
    let forever = policy(&[("ops", "retain = \"forever\"")]);
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &forever,
        },
        AppliedPolicy {
            activated_at: 100 * DAY,
            policy: &short,
        },
    ];
    assert_eq!(purge_after(&history, "ops", day(99)), None);
    assert_eq!(
        purge_after(&history, "ops", day(100)),
        Some((100 + 1 + 30) * DAY)
    );
}

#[test]
fn history_removed_then_readded_streams() {
    let with = policy(&[("ops", "retain = \"90d\""), ("audit", "retain = \"10d\"")]);
    let without = policy(&[("ops", "retain = \"90d\"")]);
    let readded = policy(&[("ops", "retain = \"90d\""), ("audit", "retain = \"5d\"")]);
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &with,
        },
        AppliedPolicy {
            activated_at: 50 * DAY,
            policy: &without,
        },
        AppliedPolicy {
            activated_at: 200 * DAY,
            policy: &readded,
        },
    ];
    // Written under `with`: the 10-day rule (later 5-day rule is shorter).
    assert_eq!(
        purge_after(&history, "audit", day(10)),
        Some((10 + 1 + 10) * DAY)
    );
    // Began while the stream was undeclared: only the re-added rule counts.
    assert_eq!(
        purge_after(&history, "audit", day(100)),
        Some((100 + 1 + 5) * DAY)
    );
    assert_eq!(
        purge_after(&history, "audit", day(300)),
        Some((300 + 1 + 5) * DAY)
    );
    // A stream no version declares is never purged.
    assert_eq!(purge_after(&history, "other", day(10)), None);
    // Removed and never re-added: the old rule still applies to old data.
    let history = [
        AppliedPolicy {
            activated_at: 0,
            policy: &with,
        },
        AppliedPolicy {
            activated_at: 50 * DAY,
            policy: &without,
        },
    ];
    assert_eq!(
        purge_after(&history, "audit", day(10)),
        Some((10 + 1 + 10) * DAY)
    );
    assert_eq!(purge_after(&history, "audit", day(60)), None);
}

#[test]
fn history_epoch_before_first_version_counts_every_version() {
    let short = policy(&[("ops", "retain = \"30d\"")]);
    let long = policy(&[("ops", "retain = \"90d\"")]);
    let history = [
        AppliedPolicy {
            activated_at: 100 * DAY,
            policy: &long,
        },
        AppliedPolicy {
            activated_at: 200 * DAY,
            policy: &short,
        },
    ];
    assert_eq!(
        purge_after(&history, "ops", day(5)),
        Some((5 + 1 + 90) * DAY)
    );
}

#[test]
fn history_empty_or_unsorted_never_purges() {
    let short = policy(&[("ops", "retain = \"30d\"")]);
    assert_eq!(purge_after(&[], "ops", day(10)), None);
    let unsorted = [
        AppliedPolicy {
            activated_at: 100,
            policy: &short,
        },
        AppliedPolicy {
            activated_at: 50,
            policy: &short,
        },
    ];
    assert_eq!(purge_after(&unsorted, "ops", day(10)), None);
    // Equal activation times are sorted.
    let equal = [
        AppliedPolicy {
            activated_at: 0,
            policy: &short,
        },
        AppliedPolicy {
            activated_at: 0,
            policy: &short,
        },
    ];
    assert_eq!(purge_after(&equal, "ops", day(10)), Some(41 * DAY));
}

#[test]
fn retention_changes_classify_each_stream() {
    let old = policy(&[
        ("a", "retain = \"30d\""),
        ("b", "retain = \"30d\""),
        ("c", "retain = \"30d\""),
        ("d", "retain = \"forever\""),
        ("gone", "retain = \"1d\""),
        ("u", "retain_until = \"2030-01-01\""),
        ("v", "retain = \"10d\""),
    ]);
    let new = policy(&[
        ("a", "retain = \"90d\""),
        ("b", "retain = \"7d\""),
        ("c", "retain = \"30d\""),
        ("d", "retain = \"3650d\""),
        ("new", "retain = \"forever\""),
        ("u", "retain_until = \"2031-01-01\""),
        ("v", "retain_until = \"2040-01-01\""),
    ]);
    let changes = retention_changes(&old, &new);
    use RetentionChange::*;
    assert_eq!(
        changes,
        vec![
            Lengthened {
                stream: "a".into(),
                old: Retention::Days(30),
                new: Retention::Days(90)
            },
            Shortened {
                stream: "b".into(),
                old: Retention::Days(30),
                new: Retention::Days(7)
            },
            Unchanged {
                stream: "c".into(),
                retention: Retention::Days(30)
            },
            Shortened {
                stream: "d".into(),
                old: Retention::Forever,
                new: Retention::Days(3650)
            },
            Removed {
                stream: "gone".into(),
                retention: Retention::Days(1)
            },
            Added {
                stream: "new".into(),
                retention: Retention::Forever
            },
            Lengthened {
                stream: "u".into(),
                old: Retention::Until(date(2030, 1, 1)),
                new: Retention::Until(date(2031, 1, 1)),
            },
            // Epochs after 2040 would be kept 0 days instead of 10.
            Shortened {
                stream: "v".into(),
                old: Retention::Days(10),
                new: Retention::Until(date(2040, 1, 1)),
            },
        ]
    );
}

/// Retention rules for the property test: a few days values, dates and
/// forever, or absent.
fn rule() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (1u32..400).prop_map(|d| Some(format!("retain = \"{d}d\""))),
        (1970i16..1975, 1i8..13, 1i8..29)
            .prop_map(|(y, m, d)| Some(format!("retain_until = \"{y:04}-{m:02}-{d:02}\""))),
        Just(Some("retain = \"forever\"".to_owned())),
    ]
}

proptest! {
    #[test]
    fn purge_is_never_earlier_than_under_the_version_active_at_epoch_start(
        versions in proptest::collection::vec((rule(), 0i64..2000 * DAY), 1..6),
        epoch_day in 0u32..2500,
    ) {
        let mut versions = versions;
        versions.sort_by_key(|(_, at)| *at);
        let policies: Vec<Policy> = versions
            .iter()
            .map(|(rule, _)| {
                let mut streams = vec![("other", "retain = \"1d\"".to_owned())];
                if let Some(rule) = rule {
                    streams.push(("ops", rule.clone()));
                }
                let refs: Vec<(&str, &str)> = streams.iter().map(|(n, r)| (*n, r.as_str())).collect();
                policy(&refs)
            })
            .collect();
        let history: Vec<AppliedPolicy<'_>> = versions
            .iter()
            .zip(&policies)
            .map(|((_, at), policy)| AppliedPolicy { activated_at: *at, policy })
            .collect();
        let purge = purge_after(&history, "ops", day(epoch_day));
        // The simple model: the version active at the epoch's start.
        let start = i64::from(epoch_day) * DAY;
        let active = history.iter().rev().find(|v| v.activated_at <= start);
        if let Some(active) = active
            && let Some(stream) = active.policy.stream("ops") {
                match (purge, stream.retention.purge_after(day(epoch_day))) {
                    (None, _) => {}
                    (Some(_), None) => prop_assert!(false, "forever was shortened"),
                    (Some(got), Some(model)) => prop_assert!(got >= model, "{got} < {model}"),
                }
            }
        // And never earlier than under any later version that declares it.
        for version in history.iter().filter(|v| v.activated_at > start) {
            if let Some(stream) = version.policy.stream("ops") {
                match (purge, stream.retention.purge_after(day(epoch_day))) {
                    (None, _) => {}
                    (Some(_), None) => prop_assert!(false, "a later forever was ignored"),
                    (Some(got), Some(model)) => prop_assert!(got >= model),
                }
            }
        }
        // Never before the epoch has ended.
        if let Some(got) = purge {
            prop_assert!(got >= (i64::from(epoch_day) + 1) * DAY);
        }
    }
}
