//! Search part files: the search index of one segment's entries, sealed
//! under a key derived from that segment's data key
//! (docs/formats/search.md).
//!
//! ```text
//! offset  size  field
//!      0     8  magic "STELESP1"
//!      8     4  segment id, u32 BE
//!     12     8  entries the part holds, u64 BE
//!     20     8  its first entry, u64 BE
//!     28     8  its last entry, u64 BE
//!     36    32  SHA-256 over the 32-byte commitments of its entries,
//!               ascending (binds the part to those very entries)
//!     68    32  salt, random per file
//!    100     4  length of the part's bytes before compression, u32 BE
//!    104     …  the part's bytes, zstd-compressed, sealed with
//!               AES-256-GCM; the 16-byte tag last
//! ```
//!
//! The key is HKDF-SHA256 with the salt as HKDF salt, the segment's data
//! key as input keying material and `info` = `"stele/search-part/v1"` ‖
//! segment id (u32 BE). The salt is drawn afresh for every file, so no two
//! files share a key, and the nonce is 12 zero bytes. The associated data
//! is the 104 bytes before the sealed bytes, so a header changed or moved
//! to another file does not open. Nothing of the part's content is in the
//! clear: what the header shows (which segment, how many entries, the
//! first and last, a digest of their commitments) is what the sequence
//! index already shows. A purge
//! deletes the segment's data key, and with it the only way to open its
//! part file.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use zeroize::Zeroizing;

use crate::error::{StoreError, StoreResult};
use crate::keys::{DataKey, random_bytes};

const MAGIC: &[u8; 8] = b"STELESP1";
/// Bytes before the sealed part.
pub const HEADER_LEN: usize = 104;
const TAG_LEN: usize = 16;
const INFO: &[u8] = b"stele/search-part/v1";
/// Most bytes a part may hold before compression (a part of one segment
/// of about 2^32 entries stays far below it); also bounds the
/// decompression of a file's sealed bytes.
pub const MAX_PLAIN: usize = 1 << 31;
/// The zstd level parts are written at.
const LEVEL: i32 = 3;

/// What a part file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    pub segment_id: u32,
    pub entries: u64,
    pub first: u64,
    pub last: u64,
    /// SHA-256 over the commitments of its entries, ascending.
    pub commitments: [u8; 32],
}

struct KeyLen;

impl KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

fn part_key(data_key: &DataKey, segment_id: u32, salt: &[u8; 32]) -> StoreResult<LessSafeKey> {
    let segment = segment_id.to_be_bytes();
    let info = [INFO, &segment[..]];
    let prk = Salt::new(HKDF_SHA256, salt).extract(data_key.raw());
    let okm = prk
        .expand(&info, KeyLen)
        .map_err(|_| StoreError::Invalid("HKDF-SHA256 expansion failed".into()))?;
    let mut raw = Zeroizing::new([0u8; 32]);
    okm.fill(raw.as_mut())
        .map_err(|_| StoreError::Invalid("HKDF-SHA256 expansion failed".into()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, raw.as_ref())
        .map_err(|_| StoreError::Invalid("AES-256 key refused".into()))?;
    Ok(LessSafeKey::new(unbound))
}

fn header_bytes(header: &PartHeader, salt: &[u8; 32], plain_len: u32) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&header.segment_id.to_be_bytes());
    out[12..20].copy_from_slice(&header.entries.to_be_bytes());
    out[20..28].copy_from_slice(&header.first.to_be_bytes());
    out[28..36].copy_from_slice(&header.last.to_be_bytes());
    out[36..68].copy_from_slice(&header.commitments);
    out[68..100].copy_from_slice(salt);
    out[100..104].copy_from_slice(&plain_len.to_be_bytes());
    out
}

/// The bytes of a part file holding `plain` (a part's encoding).
pub fn seal(data_key: &DataKey, header: &PartHeader, plain: &[u8]) -> StoreResult<Vec<u8>> {
    if plain.len() > MAX_PLAIN {
        return Err(StoreError::Invalid(format!(
            "a search part of {} bytes is over the limit of {MAX_PLAIN}",
            plain.len()
        )));
    }
    let mut salt = [0u8; 32];
    random_bytes(&mut salt)?;
    let head = header_bytes(header, &salt, plain.len() as u32);
    let mut body = zstd::bulk::compress(plain, LEVEL)
        .map_err(|e| StoreError::Invalid(format!("compressing a search part: {e}")))?;
    let key = part_key(data_key, header.segment_id, &salt)?;
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(&head[..]),
            &mut body,
        )
        .map_err(|_| StoreError::Invalid("AES-GCM seal failed".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(&head);
    out.extend_from_slice(&body);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The header of a part file, read without a key (`None`: not a part file).
pub fn read_header(bytes: &[u8]) -> Option<PartHeader> {
    if bytes.len() < HEADER_LEN + TAG_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(raw)
    };
    let mut segment = [0u8; 4];
    segment.copy_from_slice(&bytes[8..12]);
    let mut commitments = [0u8; 32];
    commitments.copy_from_slice(&bytes[36..68]);
    Some(PartHeader {
        segment_id: u32::from_be_bytes(segment),
        entries: u64_at(12),
        first: u64_at(20),
        last: u64_at(28),
        commitments,
    })
}

/// Why a part file did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not a part file (too short, or another magic).
    NotAPart,
    /// The header names another segment than the one asked for.
    OtherSegment(u32),
    /// The sealed bytes do not authenticate under the segment's key (a
    /// changed byte, or a file of another log).
    Unauthentic,
    /// Authentic, but its contents do not decompress to the length given.
    Malformed(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotAPart => f.write_str("not a search part file"),
            OpenError::OtherSegment(id) => write!(f, "the part of segment {id}"),
            OpenError::Unauthentic => {
                f.write_str("does not authenticate under its segment's key (changed bytes)")
            }
            OpenError::Malformed(why) => write!(f, "authentic but malformed: {why}"),
        }
    }
}

/// Opens a part file of segment `segment_id`: its header and the part's
/// bytes.
pub fn open(
    data_key: &DataKey,
    segment_id: u32,
    bytes: &[u8],
) -> Result<(PartHeader, Vec<u8>), OpenError> {
    let header = read_header(bytes).ok_or(OpenError::NotAPart)?;
    if header.segment_id != segment_id {
        return Err(OpenError::OtherSegment(header.segment_id));
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&bytes[68..100]);
    let mut plain_len = [0u8; 4];
    plain_len.copy_from_slice(&bytes[100..104]);
    let plain_len = u32::from_be_bytes(plain_len) as usize;
    let key = part_key(data_key, segment_id, &salt).map_err(|_| OpenError::Unauthentic)?;
    let mut sealed = bytes[HEADER_LEN..].to_vec();
    let body = key
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(&bytes[..HEADER_LEN]),
            &mut sealed,
        )
        .map_err(|_| OpenError::Unauthentic)?;
    if plain_len > MAX_PLAIN {
        return Err(OpenError::Malformed(format!("{plain_len} bytes")));
    }
    let plain = zstd::bulk::decompress(body, plain_len)
        .map_err(|e| OpenError::Malformed(format!("zstd: {e}")))?;
    if plain.len() != plain_len {
        return Err(OpenError::Malformed(format!(
            "{} bytes where the header says {plain_len}",
            plain.len()
        )));
    }
    Ok((header, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_raw(Zeroizing::new([7u8; 32])).expect("key")
    }

    #[test]
    fn a_part_round_trips_and_every_changed_byte_is_refused() {
        let header = PartHeader {
            segment_id: 3,
            entries: 2,
            first: 10,
            last: 12,
            commitments: [9; 32],
        };
        let plain = b"the part's own bytes, repeated, repeated, repeated".to_vec();
        let file = seal(&key(), &header, &plain).expect("seals");
        assert_eq!(read_header(&file), Some(header));
        assert_eq!(open(&key(), 3, &file), Ok((header, plain.clone())));
        // A second file of the same part has another salt: another key.
        let again = seal(&key(), &header, &plain).expect("seals");
        assert_ne!(file[68..100], again[68..100]);
        for at in 0..file.len() {
            let mut changed = file.clone();
            changed[at] ^= 0x01;
            let refused = open(&key(), 3, &changed);
            assert!(refused.is_err(), "byte {at} changed and opened");
        }
        assert_eq!(open(&key(), 4, &file), Err(OpenError::OtherSegment(3)));
        let other = DataKey::from_raw(Zeroizing::new([8u8; 32])).expect("key");
        assert_eq!(open(&other, 3, &file), Err(OpenError::Unauthentic));
        assert_eq!(open(&key(), 3, &file[..40]), Err(OpenError::NotAPart));
    }
}
