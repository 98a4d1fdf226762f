//! Torn or tampered: what a crash can leave of a record that was being
//! written, told apart from damage done to a record after it was written.
//!
//! The model (documented in `docs/formats/segment.md`, "Torn vs tampered"):
//! a disk writes each 512-byte sector ([`SECTOR`]) whole or not at all, and
//! the bytes a record is written over are zeros (segments and the index grow
//! ahead of their records by zeros, and recovery cuts files with `ftruncate`
//! before anything is written there again; file systems read blocks that
//! were never written as zeros). So a record a power loss interrupted is
//! missing, cut short by the end of the file, or has sectors that still hold
//! zeros where its bytes belong, in whole or at their end (a sector written
//! from a page the writer was still copying into holds the record's first
//! bytes and zeros after them). A record that is all there, with no such
//! zeros, yet fails its checksum or tag, was changed after it was written:
//! corruption, never cut as a tear.
//!
//! These functions only look at bytes; they decide nothing and write
//! nothing.

/// The unit a disk writes atomically (a logical sector): after a power loss
/// each one holds either what was last written to it or what it held before.
pub const SECTOR: u64 = 512;

/// Zero bytes that mark a sector's end as never written. Ciphertext, tags
/// and checksums hold a run this long by chance once in 2^64 places.
const ZERO_RUN: usize = 8;

/// Bytes at the start of a segment record in clear: length (4), entry
/// number (8), writer generation (4). Small numbers, so they hold zeros of
/// their own and never count as a run of unwritten bytes.
const CLEAR_HEAD: u64 = 16;

/// Where a segment record shows the marks of an interrupted write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TearMark {
    /// The file ends `missing` bytes before the record does.
    CutShort { missing: u64 },
    /// The sector at this file offset holds zeros where the record's bytes
    /// belong (the whole sector's share of the record, or its last bytes).
    ZeroSector { at: u64 },
}

impl std::fmt::Display for TearMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TearMark::CutShort { missing } => {
                write!(f, "the file ends {missing} bytes before the record does")
            }
            TearMark::ZeroSector { at } => {
                write!(
                    f,
                    "the sector at byte {at} holds zeros where the record's bytes belong"
                )
            }
        }
    }
}

/// The first mark of an interrupted write in the segment record that the
/// index places at file offset `offset` with total length `len`, given the
/// bytes `on_disk` read there (shorter than `len` when the file ends
/// first). `None`: every sector of the record holds written bytes, so if it
/// fails its checks it was altered, not torn.
///
/// Each sector's share of the record is looked at separately. A share
/// counts as unwritten when it ends in at least 8 zero bytes past the
/// record's clear head (bytes 16 on: ciphertext, tag, checksum), or, for a
/// share with fewer than 8 such bytes, when all of it is zeros and it holds
/// at least 4 bytes (its part of the length field, which is never zero, or
/// the end of the record's checksum). Zeros in a share of 1 to 3 bytes are
/// evidence only with the rest of the record proved whole by its CRC
/// ([`small_edge_tear`]).
pub fn segment_record_tear(on_disk: &[u8], offset: u64, len: u64) -> Option<TearMark> {
    if (on_disk.len() as u64) < len {
        return Some(TearMark::CutShort {
            missing: len - on_disk.len() as u64,
        });
    }
    let mut start = 0u64; // in record coordinates
    while start < len {
        let sector_end = ((offset + start) / SECTOR + 1) * SECTOR - offset;
        let end = sector_end.min(len);
        let share = &on_disk[start as usize..end as usize];
        let past_head = end.saturating_sub(start.max(CLEAR_HEAD)) as usize;
        let trailing_zeros = share.iter().rev().take_while(|b| **b == 0).count();
        let unwritten = if past_head >= ZERO_RUN {
            trailing_zeros >= ZERO_RUN
        } else {
            share.len() >= 4 && trailing_zeros == share.len()
        };
        if unwritten {
            return Some(TearMark::ZeroSector { at: offset + start });
        }
        start = end;
    }
    small_edge_tear(on_disk, offset, len)
}

/// A tear that left unwritten only a share of 1 to 3 bytes at either edge
/// of the record: too few bytes for zeros alone to be evidence, so the
/// rest of the record must prove it whole. The frame's CRC-32 (its last 4
/// bytes) covers bytes `4 ..` up to it and not the length field.
///
/// - The last share (1 to 3 bytes of the CRC) holds zeros, the CRC of the
///   bytes before it matches the stored CRC's first bytes, and its last
///   bytes are not zeros: everything but those bytes was written.
/// - The first share (1 to 3 high bytes of the length field) holds zeros
///   where the length the index gives has a non-zero byte, and the CRC
///   matches: everything after those bytes was written.
///
/// A record altered after it was written passes either test by chance
/// once in 2^32.
fn small_edge_tear(on_disk: &[u8], offset: u64, len: u64) -> Option<TearMark> {
    if len < 8 || (on_disk.len() as u64) < len {
        return None;
    }
    let len = len as usize;
    let record = &on_disk[..len];
    let crc = crate::fsutil::crc32(&record[4..len - 4]).to_be_bytes();
    let stored = &record[len - 4..];
    let tail = ((offset + len as u64) % SECTOR) as usize;
    if (1..=3).contains(&tail)
        && stored[4 - tail..].iter().all(|b| *b == 0)
        && stored[..4 - tail] == crc[..4 - tail]
        && crc[4 - tail..].iter().any(|b| *b != 0)
    {
        return Some(TearMark::ZeroSector {
            at: offset + (len - tail) as u64,
        });
    }
    let head = ((SECTOR - offset % SECTOR) % SECTOR) as usize;
    let length_field = u32::try_from(len - 4).ok()?.to_be_bytes();
    if (1..=3).contains(&head)
        && record[..head].iter().all(|b| *b == 0)
        && length_field[..head].iter().any(|b| *b != 0)
        && record[head..4] == length_field[head..]
        && stored == crc
    {
        return Some(TearMark::ZeroSector { at: offset });
    }
    None
}

/// True when a 64-byte index record that fails its checks shows the mark of
/// an interrupted write: it ends in at least 8 zero bytes. Index records lie
/// whole inside one sector (64 divides 512 and the header is 64 bytes), so
/// a torn one is all zeros, or its first bytes followed by zeros; a
/// written record ends in its reserved zeros and a checksum, which is zero
/// once in 2^32 records.
pub fn index_record_torn(record: &[u8]) -> bool {
    record.iter().rev().take_while(|b| **b == 0).count() >= ZERO_RUN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: usize) -> Vec<u8> {
        // A plausible record: length field, entry 5, generation 1, then
        // bytes that are never zero.
        let mut r = Vec::with_capacity(len);
        r.extend_from_slice(&((len - 4) as u32).to_be_bytes());
        r.extend_from_slice(&5u64.to_be_bytes());
        r.extend_from_slice(&1u32.to_be_bytes());
        r.extend((16..len).map(|i| (i % 251 + 1) as u8));
        r
    }

    #[test]
    fn a_whole_record_with_a_flipped_bit_is_not_torn() {
        for offset in [0u64, 100, 500, 508, 510, 511, 1000] {
            let mut r = record(1500);
            r[700] ^= 0x10;
            assert_eq!(
                segment_record_tear(&r, offset, 1500),
                None,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn a_missing_or_short_record_is_torn() {
        let r = record(1500);
        assert_eq!(
            segment_record_tear(&r[..1000], 40, 1500),
            Some(TearMark::CutShort { missing: 500 })
        );
        assert_eq!(
            segment_record_tear(&[], 40, 1500),
            Some(TearMark::CutShort { missing: 1500 })
        );
    }

    #[test]
    fn a_zero_sector_anywhere_in_the_record_is_a_tear() {
        // Record at file offset 300: sectors of the file start at 512, 1024.
        let offset = 300u64;
        let r = record(1500);
        for sector_start in [512u64, 1024, 1536] {
            let mut torn = r.clone();
            let a = (sector_start - offset) as usize;
            let b = ((sector_start + SECTOR - offset) as usize).min(r.len());
            torn[a..b].fill(0);
            assert_eq!(
                segment_record_tear(&torn, offset, 1500),
                Some(TearMark::ZeroSector { at: sector_start })
            );
        }
        // The first share (bytes 300..512 of the file) unwritten.
        let mut torn = r.clone();
        torn[..212].fill(0);
        assert_eq!(
            segment_record_tear(&torn, offset, 1500),
            Some(TearMark::ZeroSector { at: 300 })
        );
        // A sector written from a page still being copied: its first bytes,
        // then zeros.
        let mut torn = r.clone();
        torn[(1024 - 300 + 100)..(1536 - 300)].fill(0);
        assert_eq!(
            segment_record_tear(&torn, offset, 1500),
            Some(TearMark::ZeroSector { at: 1024 })
        );
    }

    #[test]
    fn small_shares_hold_zeros_of_their_own() {
        // The record starts 2 bytes before a sector ends: those 2 bytes are
        // the length field's high bytes, zero in every record.
        let r = record(1500);
        assert_eq!(segment_record_tear(&r, 510, 1500), None);
        // Starting 14 bytes before: length, entry and part of the
        // generation, with zeros of their own at the end.
        assert_eq!(segment_record_tear(&r, 498, 1500), None);
        // A last share of 2 bytes that happen to be zero.
        let mut r2 = record(1500);
        r2[1498] = 0;
        r2[1499] = 0;
        assert_eq!(segment_record_tear(&r2, 1536 - 1498, 1500), None);
        // A last share of 4 zero bytes (the whole checksum) is a tear.
        let mut r3 = record(1500);
        r3[1496..].fill(0);
        let offset = 2048 - 1496;
        assert_eq!(
            segment_record_tear(&r3, offset as u64, 1500),
            Some(TearMark::ZeroSector { at: 2048 })
        );
    }

    /// `record(len)` with the CRC-32 a writer puts at its end.
    fn framed(len: usize) -> Vec<u8> {
        let mut r = record(len);
        let crc = crate::fsutil::crc32(&r[4..len - 4]);
        r[len - 4..].copy_from_slice(&crc.to_be_bytes());
        r
    }

    #[test]
    fn a_lost_sector_holding_only_the_end_of_the_crc_is_a_tear() {
        for len in [504usize, 1500, 70_000] {
            let whole = framed(len);
            let crc = whole[len - 4..].to_vec();
            for tail in 1..=3usize {
                // The record ends `tail` bytes into a sector.
                let offset =
                    (4 * SECTOR as usize - len % SECTOR as usize + tail) as u64 % SECTOR + SECTOR;
                assert_eq!((offset as usize + len) % SECTOR as usize, tail);
                let mut torn = whole.clone();
                torn[len - tail..].fill(0);
                let expected = if crc[4 - tail..].iter().all(|b| *b == 0) {
                    None // not torn at all: the bytes are the same
                } else {
                    Some(TearMark::ZeroSector {
                        at: offset + (len - tail) as u64,
                    })
                };
                assert_eq!(
                    segment_record_tear(&torn, offset, len as u64),
                    expected,
                    "{len} {tail}"
                );
                // The same zeros, but a byte changed elsewhere: corruption.
                let mut altered = torn.clone();
                altered[len / 2] ^= 0x01;
                assert_eq!(
                    segment_record_tear(&altered, offset, len as u64),
                    None,
                    "{len} {tail}"
                );
                // The whole record there: nothing torn.
                assert_eq!(segment_record_tear(&whole, offset, len as u64), None);
            }
        }
    }

    #[test]
    fn a_lost_sector_holding_only_the_high_bytes_of_the_length_is_a_tear() {
        // 70,000 bytes: the length field is 00 01 11 6c, so its second and
        // third bytes are not zero.
        let len = 70_000usize;
        let whole = framed(len);
        for head in 1..=3usize {
            let offset = SECTOR * 3 - head as u64;
            let mut torn = whole.clone();
            torn[..head].fill(0);
            let expected = if whole[..head].iter().all(|b| *b == 0) {
                None // the length's high byte is zero in every record
            } else {
                Some(TearMark::ZeroSector { at: offset })
            };
            assert_eq!(
                segment_record_tear(&torn, offset, len as u64),
                expected,
                "{head}"
            );
            let mut altered = torn.clone();
            altered[len / 2] ^= 0x01;
            assert_eq!(segment_record_tear(&altered, offset, len as u64), None);
        }
    }

    /// A real block (segment version 3): its head, in clear after the
    /// frame's first 16 bytes, holds no zero byte, so wherever the block
    /// lies in the file, it is never taken for torn when whole (even with
    /// a flipped bit), and a sector of zeros anywhere in it is a tear.
    #[test]
    fn blocks_are_classified_like_records() {
        use crate::block::{LEVEL, Packer};
        use crate::keys::{DataKey, Kek, NewKek};
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 1).unwrap();
        // Bodies that do not compress, so the block spans many sectors;
        // entry 0 first (zeros in the clear head), gaps of one and of 300
        // (a varint of two bytes).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        let bodies: Vec<Vec<u8>> = (0..12)
            .map(|_| (0..600).map(|_| random()).collect())
            .collect();
        let numbers: Vec<u64> = (0..12u64)
            .map(|n| n + if n >= 6 { 299 } else { 0 })
            .collect();
        let entries: Vec<(u64, &[u8])> = numbers
            .iter()
            .zip(&bodies)
            .map(|(n, b)| (*n, b.as_slice()))
            .collect();
        let mut frame = Vec::new();
        Packer::new(LEVEL)
            .unwrap()
            .seal(&key, 1, &entries, None, &mut frame)
            .unwrap();
        let len = frame.len() as u64;
        assert!(len > 8 * SECTOR);
        for offset in (0..SECTOR + 16).step_by(7) {
            assert_eq!(segment_record_tear(&frame, offset, len), None, "{offset}");
            for at in [3usize, 17, 20, 100, frame.len() / 2, frame.len() - 2] {
                let mut flipped = frame.clone();
                flipped[at] ^= 0x10;
                assert_eq!(
                    segment_record_tear(&flipped, offset, len),
                    None,
                    "{offset} {at}"
                );
            }
            // Each whole sector inside the block, zeros.
            let mut sector_start = offset.div_ceil(SECTOR) * SECTOR;
            while sector_start + SECTOR <= offset + len {
                let mut torn = frame.clone();
                let a = (sector_start - offset) as usize;
                torn[a..a + SECTOR as usize].fill(0);
                assert_eq!(
                    segment_record_tear(&torn, offset, len),
                    Some(TearMark::ZeroSector { at: sector_start }),
                    "{offset}"
                );
                sector_start += SECTOR;
            }
            assert_eq!(
                segment_record_tear(&frame[..frame.len() - 1], offset, len),
                Some(TearMark::CutShort { missing: 1 })
            );
        }
    }

    #[test]
    fn index_records() {
        let mut written = [7u8; 64];
        written[56..60].fill(0); // reserved
        written[63] = 9; // checksum's last byte
        assert!(!index_record_torn(&written));
        let mut flipped = written;
        flipped[3] ^= 1;
        assert!(!index_record_torn(&flipped));
        assert!(index_record_torn(&[0u8; 64]));
        let mut prefix = written;
        prefix[40..].fill(0);
        assert!(index_record_torn(&prefix));
    }
}
