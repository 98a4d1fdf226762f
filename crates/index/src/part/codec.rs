//! A part as bytes, and back: what `stele_log::search` seals into a
//! search part file (docs/formats/search.md, "The part's bytes").
//!
//! The encoding holds what a part was given (entries, times, ids, every
//! dictionary's values in the order they came, with their postings) and
//! nothing derived from it: the word map, the time spans and the lookup
//! maps are rebuilt by [`Part::decode`], so a decoded part answers
//! exactly as the part that was encoded. The encoding is deterministic:
//! the same entries with the same terms give the same bytes
//! (attributes are written in key order), which is how `stele index
//! verify` compares a part on disk with one built from the log.
//!
//! Integers are unsigned LEB128 varints; signed ones are zigzagged first.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::{DictRef, Part, Postings, TimeColumn, add_words};
use crate::terms::{ATTRIBUTE, TEXT_ONLY};
use crate::uuid;

/// The encoding's version, its first varint.
const VERSION: u64 = 1;

/// Bytes that are not a part's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a search part: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

fn put(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i128) -> u128 {
    ((value << 1) ^ (value >> 127)) as u128
}

fn unzigzag(value: u128) -> i128 {
    ((value >> 1) as i128) ^ -((value & 1) as i128)
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put(out, text.len() as u128);
    out.extend_from_slice(text.as_bytes());
}

/// A time column: per entry 0 for none, else 1 + the zigzagged distance
/// in nanoseconds from the column's previous time.
fn put_times(out: &mut Vec<u8>, column: &[Option<Timestamp>]) {
    let mut previous: i128 = 0;
    for at in column {
        match at {
            None => put(out, 0),
            Some(at) => {
                let ns = at.as_nanosecond();
                put(out, 1 + zigzag(ns - previous));
                previous = ns;
            }
        }
    }
}

/// An ascending list: its length, its first value, then each distance to
/// the one before.
fn put_ascending(out: &mut Vec<u8>, len: usize, list: impl Iterator<Item = u64>) {
    put(out, len as u128);
    let mut previous = None;
    for value in list {
        put(out, u128::from(value - previous.unwrap_or(0)));
        previous = Some(value);
    }
}

/// The id column: a flag per entry (0: no id as a number, 1: one), then
/// the ids' 16 big-endian bytes by position: every id's first byte, then
/// every id's second byte, and so on. The leading bytes of UUIDv7 ids are
/// their millisecond, nearly the same from one entry to the next, and
/// written together they compress to almost nothing.
fn put_ids(out: &mut Vec<u8>, ids: &[u128]) {
    let present: Vec<[u8; 16]> = ids
        .iter()
        .filter(|&&id| id != uuid::NONE)
        .map(|id| id.to_be_bytes())
        .collect();
    out.extend(ids.iter().map(|&id| u8::from(id != uuid::NONE)));
    for position in 0..16 {
        out.extend(present.iter().map(|bytes| bytes[position]));
    }
}

fn put_dict(out: &mut Vec<u8>, dict: &super::Dict) {
    put(out, dict.values.len() as u128);
    for (value, postings) in dict.values.iter().zip(&dict.postings) {
        put_str(out, value);
        put_ascending(out, postings.len(), postings.ordinals().map(u64::from));
    }
}

impl Part {
    /// The part's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * 48 + 64);
        put(&mut out, u128::from(VERSION));
        put_ascending(&mut out, self.entries.len(), self.entries.iter().copied());
        put_times(&mut out, self.received.times());
        put_times(&mut out, self.time.times());
        put_ids(&mut out, &self.ids);
        for dict in &self.named {
            put_dict(&mut out, dict);
        }
        let mut keys: Vec<&Box<str>> = self.attributes.keys().collect();
        keys.sort_unstable();
        put(&mut out, keys.len() as u128);
        for key in keys {
            put_str(&mut out, key);
            put_dict(&mut out, &self.attributes[key]);
        }
        out
    }

    /// A part from its bytes; every list is checked (ascending, ordinals
    /// within the part, no value twice in a dictionary) so that a decoded
    /// part is one [`Part::insert`] could have built.
    pub fn decode(bytes: &[u8]) -> Result<Part, DecodeError> {
        let mut input = Input { bytes, at: 0 };
        let version = input.varint()?;
        if version != u128::from(VERSION) {
            return Err(bad(format!(
                "encoding version {version} (this build reads {VERSION})"
            )));
        }
        let mut part = Part::new();
        part.entries = input.ascending(u64::MAX, "entries")?;
        let len = part.entries.len();
        if len >= u32::MAX as usize {
            return Err(bad("more entries than a part holds"));
        }
        part.received = TimeColumn::of(input.times(len)?);
        part.time = TimeColumn::of(input.times(len)?);
        part.ids = input.ids(len)?;
        let mut words = HashMap::new();
        for code in (0..=TEXT_ONLY).filter(|&c| c != ATTRIBUTE) {
            let dict = &mut part.named[Part::named_index(code)];
            input.dict(dict, len)?;
            if dict.text {
                for (id, value) in dict.values.iter().enumerate() {
                    add_words(&mut words, value, DictRef::Named(code), id as u32);
                }
            }
        }
        let attributes = input.count("attributes")?;
        let mut previous: Option<Box<str>> = None;
        for _ in 0..attributes {
            let key: Box<str> = input.string()?.into();
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(bad("attribute keys out of order"));
            }
            let mut dict = super::Dict {
                text: true,
                key: Arc::from(&*key),
                ..super::Dict::default()
            };
            input.dict(&mut dict, len)?;
            for (id, value) in dict.values.iter().enumerate() {
                add_words(
                    &mut words,
                    value,
                    DictRef::Attribute(dict.key.clone()),
                    id as u32,
                );
            }
            part.attributes.insert(key.clone(), dict);
            previous = Some(key);
        }
        if input.at != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the part",
                bytes.len() - input.at
            )));
        }
        part.words = words;
        Ok(part)
    }
}

/// The bytes being decoded and how far.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| bad("ends early"))?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad("ends early"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u128, DecodeError> {
        let mut value: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = self.byte()?;
            let bits = u128::from(byte & 0x7f);
            if shift == 126 && bits > 3 {
                return Err(bad("a varint past 128 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // One encoding per number: no trailing zero groups.
                if byte == 0 && shift > 0 {
                    return Err(bad("a varint of more bytes than it needs"));
                }
                return Ok(value);
            }
        }
        Err(bad("a varint past 128 bits"))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        u64::try_from(self.varint()?).map_err(|_| bad("a number past 64 bits"))
    }

    /// A count of items that each take at least one byte: never more than
    /// the bytes left, so a count cannot make a large allocation.
    fn count(&mut self, what: &str) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) as u128;
        if n > left {
            return Err(bad(format!("{n} {what} in {left} bytes")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.count("bytes of text")?;
        std::str::from_utf8(self.take(n)?).map_err(|_| bad("text that is not UTF-8"))
    }

    /// A strictly ascending list of values below `bound`.
    fn ascending(&mut self, bound: u64, what: &str) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(what)?;
        let mut list = Vec::with_capacity(n);
        let mut previous: Option<u64> = None;
        for _ in 0..n {
            let step = self.u64()?;
            let value = match previous {
                None => step,
                Some(_) if step == 0 => return Err(bad(format!("{what} not ascending"))),
                Some(p) => p
                    .checked_add(step)
                    .ok_or_else(|| bad(format!("{what} overflow")))?,
            };
            if value >= bound {
                return Err(bad(format!("{what}: {value} is past {bound}")));
            }
            list.push(value);
            previous = Some(value);
        }
        Ok(list)
    }

    /// The id column of [`put_ids`].
    fn ids(&mut self, len: usize) -> Result<Vec<u128>, DecodeError> {
        let flags = self.take(len)?;
        if let Some(other) = flags.iter().find(|&&f| f > 1) {
            return Err(bad(format!("id flag {other}")));
        }
        let present = flags.iter().filter(|&&f| f == 1).count();
        let planes = self.take(present.checked_mul(16).ok_or_else(|| bad("too many ids"))?)?;
        let mut numbers = (0..present).map(|i| {
            let mut bytes = [0u8; 16];
            for (position, byte) in bytes.iter_mut().enumerate() {
                *byte = planes[position * present + i];
            }
            u128::from_be_bytes(bytes)
        });
        let mut ids = Vec::with_capacity(len);
        for &flag in flags {
            let id = if flag == 1 {
                let id = numbers.next().ok_or_else(|| bad("ends early"))?;
                if id == uuid::NONE {
                    return Err(bad("an id column holds the marker for no id"));
                }
                id
            } else {
                uuid::NONE
            };
            ids.push(id);
        }
        Ok(ids)
    }

    fn times(&mut self, len: usize) -> Result<Vec<Option<Timestamp>>, DecodeError> {
        let mut column = Vec::with_capacity(len);
        let mut previous: i128 = 0;
        for _ in 0..len {
            let code = self.varint()?;
            if code == 0 {
                column.push(None);
                continue;
            }
            let ns = previous
                .checked_add(unzigzag(code - 1))
                .ok_or_else(|| bad("a time out of range"))?;
            let at = Timestamp::from_nanosecond(ns).map_err(|_| bad("a time out of range"))?;
            column.push(Some(at));
            previous = ns;
        }
        Ok(column)
    }

    /// A dictionary's values and postings, into an empty `dict`.
    fn dict(&mut self, dict: &mut super::Dict, len: usize) -> Result<(), DecodeError> {
        let n = self.count("values")?;
        for id in 0..n {
            let value: Arc<str> = Arc::from(self.string()?);
            let list = self.ascending(len as u64, "postings")?;
            if list.is_empty() {
                return Err(bad("a value no entry holds"));
            }
            let postings = Postings::of(list.iter().map(|&o| o as u32).collect());
            if dict.ids.insert(value.clone(), id as u32).is_some() {
                return Err(bad("a value twice in one dictionary"));
            }
            dict.values.push(value);
            dict.postings.push(postings);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for value in [0u128, 1, 127, 128, 300, u64::MAX as u128, u128::MAX] {
            let mut out = Vec::new();
            put(&mut out, value);
            let mut input = Input { bytes: &out, at: 0 };
            assert_eq!(input.varint(), Ok(value));
            assert_eq!(input.at, out.len());
        }
        for value in [0i128, -1, 1, i64::MIN as i128, i128::MAX, i128::MIN] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        // Not the shortest form.
        assert!(
            Input {
                bytes: &[0x81, 0x00],
                at: 0
            }
            .varint()
            .is_err()
        );
        // 19 bytes of continuation: past 128 bits.
        let long = [0xffu8; 19];
        assert!(
            Input {
                bytes: &long,
                at: 0
            }
            .varint()
            .is_err()
        );
    }

    #[test]
    fn an_empty_part_round_trips_and_junk_is_refused() {
        let bytes = Part::new().encode();
        let part = Part::decode(&bytes).expect("decodes");
        assert!(part.is_empty());
        assert_eq!(part.encode(), bytes);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Part::decode(&longer).is_err());
        assert!(Part::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Part::decode(&[2]).is_err());
    }
}
