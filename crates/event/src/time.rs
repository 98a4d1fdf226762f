//! Days and timestamps: the one [`Day`] type (a UTC day, as segments,
//! purge records, retention rules and legal holds count them), and the one
//! text form of a Unix time ([`timestamp_text`], [`parse_timestamp`]).
//!
//! Why here: every crate that reasons about days depends on `stele-event`
//! already — `stele-policy` (retention maths), `stele-log` (segments,
//! purges, holds, announcements), the server and the CLI — and this crate
//! is pure and already owns time as events carry it (`received_at`, RFC
//! 3339 client times). `stele-store` does not depend on it and need not:
//! it keeps the day of a segment header as the `u32` its byte format
//! stores, and `stele-log` turns that number into a [`Day`] where it
//! gives it a meaning. Putting `Day` in `stele-store` would have made the
//! pure policy crate depend on the storage crate (and its crypto).
//!
//! What this is not: a calendar library. It knows the proleptic Gregorian
//! calendar in UTC, and no time zones; it reads no clock.
//!
//! Formats: a day is stored either as its date text `YYYY-MM-DD` (file
//! names, purge records, holds, events) or as its number of days since
//! 1970-01-01 (segment headers, `epoch_day` in purge records); [`Day`]
//! serializes as the text, and [`day_number`] serializes a field as the
//! number. Both are exactly the bytes written before this type existed.

use std::fmt;
use std::str::FromStr;

/// Seconds in a UTC day (Unix time has no leap seconds).
pub const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar
/// (the shift of Howard Hinnant's civil-date algorithms).
const DAYS_FROM_0000_03_01: i64 = 719_468;
/// Days in one 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;

/// One UTC day, counted in days since 1970-01-01.
///
/// Every `Day` lies in `Day::FIRST..=Day::LAST` (1970-01-01 to
/// 9999-12-31): each has a four-digit-year date text and a start that is a
/// valid timestamp. Every way of making a `Day` (a number read from a
/// file, a timestamp, a date, arithmetic) refuses a value outside that
/// range with a [`DayError`] rather than wrapping or clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(u32);

impl Day {
    /// 1970-01-01.
    pub const FIRST: Day = Day(0);
    /// 9999-12-31, the last day whose date has a four-digit year.
    pub const LAST: Day = Day(2_932_896);

    /// The day numbered `number` (days since 1970-01-01), as segment headers
    /// and purge records store it.
    pub fn from_number(number: u32) -> Result<Day, DayError> {
        if number > Day::LAST.0 {
            return Err(DayError::AfterLast {
                what: format!("day number {number}"),
            });
        }
        Ok(Day(number))
    }

    /// Days since 1970-01-01.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The UTC day that contains the Unix time `seconds`.
    pub fn of_second(seconds: i64) -> Result<Day, DayError> {
        Day::from_days(seconds.div_euclid(SECONDS_PER_DAY), || {
            format!("Unix time {seconds}")
        })
    }

    /// The UTC day that contains `timestamp`.
    pub fn of(timestamp: jiff::Timestamp) -> Result<Day, DayError> {
        Day::from_days(timestamp.as_second().div_euclid(SECONDS_PER_DAY), || {
            timestamp.to_string()
        })
    }

    /// The day of a calendar date.
    pub fn from_date(date: jiff::civil::Date) -> Result<Day, DayError> {
        let days = days_from_civil(
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        Day::from_days(days, || date.to_string())
    }

    fn from_days(days: i64, what: impl FnOnce() -> String) -> Result<Day, DayError> {
        if days < 0 {
            return Err(DayError::BeforeFirst { what: what() });
        }
        match u32::try_from(days) {
            Ok(number) if number <= Day::LAST.0 => Ok(Day(number)),
            _ => Err(DayError::AfterLast { what: what() }),
        }
    }

    /// The Unix time (seconds) at which this day begins, 00:00:00 UTC.
    pub fn start(self) -> i64 {
        i64::from(self.0) * SECONDS_PER_DAY
    }

    /// The Unix time (seconds) at which this day has ended: 00:00:00 UTC of
    /// the next day (exclusive end; defined for [`Day::LAST`] too).
    pub fn end(self) -> i64 {
        (i64::from(self.0) + 1) * SECONDS_PER_DAY
    }

    /// The day `days` later, or an error past [`Day::LAST`].
    pub fn checked_add(self, days: u32) -> Result<Day, DayError> {
        Day::from_days(i64::from(self.0) + i64::from(days), || {
            format!("{self} + {days} days")
        })
    }

    /// The day `days` earlier, or an error before [`Day::FIRST`].
    pub fn checked_sub(self, days: u32) -> Result<Day, DayError> {
        Day::from_days(i64::from(self.0) - i64::from(days), || {
            format!("{self} - {days} days")
        })
    }

    /// The year, month (1–12) and day of the month (1–31).
    pub fn year_month_day(self) -> (i64, i64, i64) {
        civil_from_days(i64::from(self.0))
    }
}

impl fmt::Display for Day {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.year_month_day();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl FromStr for Day {
    type Err = DayError;

    /// Exactly `YYYY-MM-DD`, a calendar date from 1970-01-01 on.
    fn from_str(text: &str) -> Result<Day, DayError> {
        Day::from_date(parse_date(text)?)
    }
}

impl TryFrom<u32> for Day {
    type Error = DayError;

    fn try_from(number: u32) -> Result<Day, DayError> {
        Day::from_number(number)
    }
}

impl From<Day> for u32 {
    fn from(day: Day) -> u32 {
        day.0
    }
}

/// Why a day or a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DayError {
    /// The text is not of the shape `YYYY-MM-DD`.
    #[error("{text:?} is not a date; write YYYY-MM-DD, e.g. \"2031-12-31\"")]
    Syntax {
        /// The text given.
        text: String,
    },
    /// The text has the shape of a date, but no such day exists.
    #[error("{text:?} is not a calendar date")]
    Calendar {
        /// The text given.
        text: String,
    },
    /// Before 1970-01-01, the first day Stele stores.
    #[error("{what} is before 1970-01-01")]
    BeforeFirst {
        /// What was refused.
        what: String,
    },
    /// After 9999-12-31, the last day Stele stores.
    #[error("{what} is after 9999-12-31")]
    AfterLast {
        /// What was refused.
        what: String,
    },
}

/// Parses exactly `YYYY-MM-DD` (years 0000 to 9999) into a calendar date;
/// no other ISO 8601 form. [`Day`]'s `FromStr`, and dates a policy file
/// gives, which may lie before 1970.
pub fn parse_date(text: &str) -> Result<jiff::civil::Date, DayError> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape {
        return Err(DayError::Syntax { text: text.into() });
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0i16, |n, digit| n * 10 + i16::from(digit - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    // Month and day are at most 99, so they fit in an i8.
    let (Ok(month), Ok(day)) = (i8::try_from(month), i8::try_from(day)) else {
        return Err(DayError::Calendar { text: text.into() });
    };
    jiff::civil::Date::new(year, month, day).map_err(|_| DayError::Calendar { text: text.into() })
}

/// Days from 1970-01-01 to `year`-`month`-`day` (proleptic Gregorian;
/// Howard Hinnant's `days_from_civil`), negative before 1970.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - DAYS_FROM_0000_03_01
}

/// The inverse of [`days_from_civil`] (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + DAYS_FROM_0000_03_01;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z - era * DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl serde::Serialize for Day {
    /// As the date text, `"YYYY-MM-DD"`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Day {
    /// From the date text, `"YYYY-MM-DD"`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Day, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "stele_event::time::day_number")]`: a [`Day`] field
/// stored as its number of days since 1970-01-01.
pub mod day_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Day;

    /// Writes the day's number.
    pub fn serialize<S: Serializer>(day: &Day, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(day.number())
    }

    /// Reads a day's number, refusing one after [`Day::LAST`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Day, D::Error> {
        Day::from_number(u32::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// RFC 3339 text (UTC, `YYYY-MM-DDTHH:MM:SSZ`) of the Unix time `seconds`,
/// as every record and event that shows a time in seconds writes it. A
/// time outside what `jiff::Timestamp` holds (years -9999 to 9999, less a
/// day at each end; never a clock's) is written as its plain number of
/// seconds instead.
pub fn timestamp_text(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// The Unix time (whole seconds; a fraction is dropped) of an RFC 3339
/// timestamp such as [`timestamp_text`] or a stored `received_at` writes.
pub fn parse_timestamp(text: &str) -> Result<i64, TimestampError> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| TimestampError {
            text: text.into(),
            reason: e.to_string(),
        })
}

/// A text that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 timestamp: {reason}")]
pub struct TimestampError {
    text: String,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_day_round_trips_through_its_date_text() {
        let mut previous: Option<jiff::civil::Date> = None;
        for number in 0..=Day::LAST.number() {
            let day = Day::from_number(number).unwrap();
            let text = day.to_string();
            assert_eq!(text.len(), 10, "{text}");
            assert_eq!(text.parse::<Day>(), Ok(day), "{text}");
            // The text is the calendar's next date after the previous day's
            // (jiff as the independent reference).
            let date: jiff::civil::Date = text.parse().unwrap();
            if let Some(previous) = previous {
                assert_eq!(previous.tomorrow().unwrap(), date, "{text}");
            }
            previous = Some(date);
        }
        assert_eq!(previous, Some(jiff::civil::date(9999, 12, 31)));
    }

    #[test]
    fn known_dates_and_leap_years() {
        let day = |text: &str| text.parse::<Day>().unwrap().number();
        assert_eq!(day("1970-01-01"), 0);
        assert_eq!(day("2000-02-29"), 11_016); // divisible by 400: leap
        assert_eq!(day("2024-02-29"), 19_782);
        assert_eq!(day("2026-01-01"), 20_454);
        assert_eq!(
            Day::of_second(1_795_000_000).unwrap().to_string(),
            "2026-11-18"
        );
        assert_eq!(
            Day::of_second(951_782_400).unwrap().to_string(),
            "2000-02-29"
        );
        for no_such_day in [
            "2100-02-29",
            "2023-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
        ] {
            assert_eq!(
                no_such_day.parse::<Day>(),
                Err(DayError::Calendar {
                    text: no_such_day.into()
                })
            );
        }
        assert_eq!(
            "2100-03-01"
                .parse::<Day>()
                .unwrap()
                .checked_sub(1)
                .unwrap()
                .to_string(),
            "2100-02-28"
        );
    }

    #[test]
    fn only_the_exact_date_shape_parses() {
        for text in [
            "",
            "20260101",
            "2026-1-01",
            "2026-01-1",
            "+2026-01-01",
            "2026-01-01T00:00:00Z",
            "2026/01/01",
            " 2026-01-01",
            "2026-01-01 ",
            "2026-01-0a",
            "１９７０-01-01",
        ] {
            assert_eq!(
                text.parse::<Day>(),
                Err(DayError::Syntax { text: text.into() }),
                "{text:?}"
            );
        }
        assert_eq!(
            "1969-12-31".parse::<Day>(),
            Err(DayError::BeforeFirst {
                what: "1969-12-31".into()
            })
        );
        assert!(
            parse_date("1969-12-31").is_ok(),
            "a date before 1970 is a date"
        );
    }

    #[test]
    fn the_limits_are_refused_with_an_error() {
        assert_eq!(Day::LAST.to_string(), "9999-12-31");
        assert!(Day::from_number(Day::LAST.number() + 1).is_err());
        assert!(Day::from_number(u32::MAX).is_err());
        assert!(Day::LAST.checked_add(1).is_err());
        assert!(Day::FIRST.checked_sub(1).is_err());
        assert_eq!(Day::FIRST.checked_add(0), Ok(Day::FIRST));
        assert_eq!(Day::LAST.checked_sub(Day::LAST.number()), Ok(Day::FIRST));
        assert!(Day::FIRST.checked_add(u32::MAX).is_err());
        assert!(Day::of_second(-1).is_err());
        assert!(Day::of_second(i64::MIN).is_err());
        assert!(Day::of_second(i64::MAX).is_err());
        assert!(Day::of_second(Day::LAST.end()).is_err());
        assert_eq!(Day::of_second(Day::LAST.end() - 1), Ok(Day::LAST));
        // jiff's last timestamp is 9999-12-30T22:00:00Z (so that any offset
        // stays within year 9999).
        assert_eq!(Day::of(jiff::Timestamp::MAX), Day::LAST.checked_sub(1));
        assert!(Day::of(jiff::Timestamp::MIN).is_err());
        assert!(Day::from_date(jiff::civil::date(1969, 12, 31)).is_err());
    }

    #[test]
    fn start_and_end_bound_the_day() {
        for day in [Day::FIRST, "2024-02-29".parse().unwrap(), Day::LAST] {
            assert_eq!(day.end() - day.start(), SECONDS_PER_DAY);
            assert_eq!(Day::of_second(day.start()), Ok(day));
            assert_eq!(Day::of_second(day.end() - 1), Ok(day));
            assert_ne!(Day::of_second(day.start() - 1), Ok(day));
            assert_ne!(Day::of_second(day.end()), Ok(day));
            if day != Day::LAST {
                assert_eq!(timestamp_text(day.start()), format!("{day}T00:00:00Z"));
            }
        }
        assert_eq!(Day::LAST.end(), 253_402_300_800); // 10000-01-01T00:00:00Z
    }

    #[test]
    fn serde_forms() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Record {
            epoch: Day,
            #[serde(with = "day_number")]
            epoch_day: Day,
            to: Option<Day>,
        }
        let day: Day = "2026-01-01".parse().unwrap();
        let record = Record {
            epoch: day,
            epoch_day: day,
            to: None,
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            text,
            r#"{"epoch":"2026-01-01","epoch_day":20454,"to":null}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        let too_late = r#"{"epoch":"2026-01-01","epoch_day":4294967295,"to":null}"#;
        assert!(serde_json::from_str::<Record>(too_late).is_err());
        let not_a_date = r#"{"epoch":"2026-02-30","epoch_day":20454,"to":null}"#;
        assert!(serde_json::from_str::<Record>(not_a_date).is_err());
    }

    #[test]
    fn timestamp_text_and_its_parser() {
        assert_eq!(timestamp_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp_text(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(timestamp_text(-1), "1969-12-31T23:59:59Z");
        // Outside jiff's range: the number itself, as before.
        assert_eq!(timestamp_text(i64::MAX), i64::MAX.to_string());
        assert_eq!(timestamp_text(253_402_207_201), "253402207201");
        for seconds in [0, 1, -1, 951_782_400, 1_795_000_000, 253_402_207_200] {
            assert_eq!(parse_timestamp(&timestamp_text(seconds)), Ok(seconds));
        }
        assert_eq!(
            parse_timestamp("2026-11-18T11:06:40.999Z"),
            Ok(1_795_000_000)
        );
        assert_eq!(
            parse_timestamp("2026-11-18T12:06:40+01:00"),
            Ok(1_795_000_000)
        );
        assert!(parse_timestamp("2026-11-18").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }
}
