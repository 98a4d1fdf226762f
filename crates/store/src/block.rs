//! Blocks: the records of segments of versions 3 and 4.
//!
//! A block seals several entries of one segment at once: the entries one
//! append wrote to the segment, up to about [`TARGET_PLAIN`] bytes of them,
//! compressed with zstd and sealed with one AES-256-GCM tag and one
//! checksum. In a segment of version 4, once the segment holds a block of
//! at least [`REFERENCE_MIN_PLAIN`] bytes, later blocks are smaller
//! ([`REFERENCED_PLAIN`]) and compressed with that earlier block's
//! plaintext as a zstd dictionary (codec 3): they compress about as well
//! as large blocks, and reading one entry decompresses only a small block. Entry salts are not stored: each is derived from the record
//! key and the entry number ([`crate::keys::SaltKey`]). The frame is that
//! of the records of earlier versions (length, number, generation, sealed
//! bytes, CRC), so recovery and verification walk a segment of any version
//! the same way, without keys.
//!
//! Layout (integers big-endian, varints unsigned LEB128; see
//! `docs/formats/segment.md`):
//! ```text
//! frame:  length u32 | first entry u64 | generation u32 | head
//!         | ciphertext | tag[16] | crc32 u32 (of first entry..tag)
//! head:   codec u8 (1 stored, 2 zstd, 3 zstd against a reference)
//!         | entries varint | plaintext length varint
//!         | codec 3 only: varint first entry minus the reference's (≥ 1)
//!         | codec 3 only: varint file offset of the reference's frame (≥ 1)
//!         | for each entry after the first: varint gap to the previous entry (≥ 1)
//! plaintext (before compression): for each entry: varint length | stored envelope
//! ```
//! The head holds no zero byte (every value in it is at least 1), so a run
//! of zeros after a frame's first 16 bytes marks a tear (see [`crate::torn`]).

use std::ops::Range;
use std::path::Path;

use crate::error::{StoreError, StoreResult};
use crate::fsutil::crc32;
use crate::keys::{DataKey, TAG_LEN};
use crate::segment::{MAX_RECORD_BODY, RecordRef};

/// The plaintext a block is sealed as when compressing would not shrink it.
pub const CODEC_STORED: u8 = 1;
/// zstd (RFC 8878) frames.
pub const CODEC_ZSTD: u8 = 2;
/// zstd frames compressed with the plaintext of an earlier block of the
/// same segment (its *reference*) as a raw-content dictionary.
pub const CODEC_ZSTD_REFERENCED: u8 = 3;
/// Plaintext bytes an append gathers into one block before it begins the
/// next (a single larger entry makes a block of its own), while the
/// segment has no reference block.
pub const TARGET_PLAIN: usize = 256 * 1024;
/// The same, once it has one: blocks compressed against the reference.
pub const REFERENCED_PLAIN: usize = 32 * 1024;
/// The least plaintext a block holds to become its segment's reference.
pub const REFERENCE_MIN_PLAIN: usize = 64 * 1024;
/// The most plaintext a reference block may hold (readers refuse larger
/// ones: a reference is kept in memory as a dictionary).
pub const REFERENCE_MAX_PLAIN: usize = 1024 * 1024;
/// The most entries one block holds (the largest append).
pub const MAX_ENTRIES: usize = 65_536;
/// The zstd level blocks are compressed at.
pub const LEVEL: i32 = 1;
/// Bytes of a frame before its head: length, first entry, generation.
pub const FRAME_HEAD: usize = 16;

/// How blocks are made: the zstd level, and the plaintext an append
/// gathers into one block. Readers need neither (a block says its codec;
/// any level decodes alike), so a log may be written with other settings
/// at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    level: i32,
    target_plain: usize,
    /// 0: no block is compressed against a reference.
    referenced_plain: usize,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            level: LEVEL,
            target_plain: TARGET_PLAIN,
            referenced_plain: REFERENCED_PLAIN,
        }
    }
}

impl BlockConfig {
    /// zstd levels accepted: -7 (fastest) to 19.
    pub const LEVELS: std::ops::RangeInclusive<i32> = -7..=19;
    /// Block sizes accepted: 1 KiB to 1 MiB of plaintext.
    pub const TARGETS: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;

    pub fn new(level: i32, target_plain: usize) -> StoreResult<BlockConfig> {
        if !Self::LEVELS.contains(&level) {
            return Err(StoreError::Invalid(format!(
                "zstd level {level} is outside {}..={}",
                Self::LEVELS.start(),
                Self::LEVELS.end()
            )));
        }
        if !Self::TARGETS.contains(&target_plain) {
            return Err(StoreError::Invalid(format!(
                "block size {target_plain} bytes is outside 1 KiB..=1 MiB"
            )));
        }
        Ok(BlockConfig {
            level,
            target_plain,
            referenced_plain: REFERENCED_PLAIN.min(target_plain),
        })
    }

    /// The same, with blocks of `referenced_plain` bytes once a segment has
    /// a reference block (`0`: never compress against one).
    pub fn with_referenced(self, referenced_plain: usize) -> StoreResult<BlockConfig> {
        if referenced_plain != 0 && !Self::TARGETS.contains(&referenced_plain) {
            return Err(StoreError::Invalid(format!(
                "referenced block size {referenced_plain} bytes is outside 1 KiB..=1 MiB"
            )));
        }
        Ok(BlockConfig {
            referenced_plain,
            ..self
        })
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    pub fn target_plain(&self) -> usize {
        self.target_plain
    }

    /// Plaintext per block once a segment has a reference (0: none used).
    pub fn referenced_plain(&self) -> usize {
        self.referenced_plain
    }

    /// Whether a block of `plain` bytes, sealed without a reference, may
    /// become its segment's reference.
    pub fn makes_reference(&self, plain: usize) -> bool {
        self.referenced_plain != 0 && (REFERENCE_MIN_PLAIN..=REFERENCE_MAX_PLAIN).contains(&plain)
    }

    /// The plaintext an entry whose stored envelope is `body_len` bytes
    /// takes in a block, at most: the body and its length (a varint of at
    /// most 5 bytes).
    pub fn entry_plain(body_len: usize) -> usize {
        body_len + 5
    }

    /// Whether a block being filled, holding `entries` entries in `plain`
    /// bytes (sums of [`Self::entry_plain`]), takes one more of
    /// `entry_plain` bytes; when it does not, the entry begins a new block.
    /// `referenced`: the block is compressed against a reference.
    pub fn has_room(
        &self,
        referenced: bool,
        plain: usize,
        entries: usize,
        entry_plain: usize,
    ) -> bool {
        let target = if referenced {
            self.referenced_plain
        } else {
            self.target_plain
        };
        plain + entry_plain <= target && entries < MAX_ENTRIES
    }
}

/// A segment's reference block as the writer holds it: where it is, and
/// its plaintext prepared as a zstd dictionary for compressing.
pub struct Reference {
    /// The reference block's first entry.
    pub first: u64,
    /// Where its frame begins in the segment file.
    pub offset: u64,
    dictionary: zstd::dict::EncoderDictionary<'static>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reference(first {}, offset {})", self.first, self.offset)
    }
}

impl Reference {
    /// The block holding `entries` (as given to [`Packer::seal`]), whose
    /// frame begins at `offset`, for compressing at `level`.
    pub fn new(offset: u64, entries: &[(u64, &[u8])], level: i32) -> StoreResult<Reference> {
        let Some(&(first, _)) = entries.first() else {
            return Err(StoreError::Invalid(
                "a block holds at least one entry".into(),
            ));
        };
        let plain = plaintext_of(entries, Vec::new());
        let dictionary = zstd::dict::EncoderDictionary::try_copy(&plain, level)
            .map_err(|e| StoreError::Invalid(format!("zstd dictionary: {e}")))?;
        Ok(Reference {
            first,
            offset,
            dictionary,
        })
    }
}

/// A reference block as a reader holds it: its plaintext prepared as a
/// zstd dictionary for decompressing the blocks that name it.
pub struct ReferenceDictionary {
    pub first: u64,
    pub offset: u64,
    dictionary: zstd::dict::DecoderDictionary<'static>,
}

impl std::fmt::Debug for ReferenceDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReferenceDictionary(first {}, offset {})",
            self.first, self.offset
        )
    }
}

impl ReferenceDictionary {
    /// The reference block `open` (opened from the frame at `offset`).
    pub fn new(offset: u64, open: &OpenBlock) -> StoreResult<ReferenceDictionary> {
        let dictionary = zstd::dict::DecoderDictionary::try_copy(&open.plain)
            .map_err(|e| StoreError::Invalid(format!("zstd dictionary: {e}")))?;
        Ok(ReferenceDictionary {
            first: open.indices.first().copied().unwrap_or(0),
            offset,
            dictionary,
        })
    }
}

/// The plaintext of a block holding `entries`: each stored envelope after
/// its length (a varint), into `out` (cleared first).
fn plaintext_of(entries: &[(u64, &[u8])], mut out: Vec<u8>) -> Vec<u8> {
    out.clear();
    for (_, body) in entries {
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
    }
    out
}

/// Compresses and seals blocks; keeps its zstd context from one block to
/// the next (one per thread).
pub struct Packer {
    compressor: zstd::bulk::Compressor<'static>,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Packer(..)")
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint of at most 10 bytes; `None` when it runs past `bytes`
/// or overflows.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let part = u64::from(byte & 0x7f);
        if shift == 63 && part > 1 {
            return None;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl Packer {
    pub fn new(level: i32) -> StoreResult<Packer> {
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| StoreError::Invalid(format!("zstd level {level}: {e}")))?;
        Ok(Packer {
            compressor,
            plain: Vec::new(),
            sealed: Vec::new(),
        })
    }

    /// Appends to `out` the frame of one block holding `entries` (entry
    /// number and stored envelope; at least one, numbers rising) sealed
    /// with `key` for writer `generation`, compressed against `reference`
    /// when one is given (an earlier block of the same segment, in a
    /// segment of version 4).
    pub fn seal(
        &mut self,
        key: &DataKey,
        generation: u32,
        entries: &[(u64, &[u8])],
        reference: Option<&Reference>,
        out: &mut Vec<u8>,
    ) -> StoreResult<()> {
        let Some(&(first, _)) = entries.first() else {
            return Err(StoreError::Invalid(
                "a block holds at least one entry".into(),
            ));
        };
        if entries.len() > MAX_ENTRIES {
            return Err(StoreError::Invalid(format!(
                "a block holds at most {MAX_ENTRIES} entries, got {}",
                entries.len()
            )));
        }
        if let Some(reference) = reference
            && (reference.first >= first || reference.offset == 0)
        {
            return Err(StoreError::Invalid(format!(
                "a block's reference comes before it: entry {} at byte {} for a block from entry {first}",
                reference.first, reference.offset
            )));
        }
        self.plain = plaintext_of(entries, std::mem::take(&mut self.plain));
        // Compressed into a buffer kept from one block to the next: a
        // fresh one would cost the kernel zeroing its pages every time.
        self.sealed.clear();
        self.sealed
            .reserve(zstd::zstd_safe::compress_bound(self.plain.len()));
        match reference {
            Some(reference) => self
                .compressor
                .context_mut()
                .compress_using_cdict(
                    &mut self.sealed,
                    &self.plain,
                    reference.dictionary.as_cdict(),
                )
                .map(|_| ())
                .map_err(|code| {
                    StoreError::Invalid(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
                })?,
            None => {
                self.compressor
                    .compress_to_buffer(&self.plain, &mut self.sealed)
                    .map_err(|e| StoreError::Invalid(format!("zstd: {e}")))?;
            }
        }
        let codec = if self.sealed.len() >= self.plain.len() {
            self.sealed.clear();
            self.sealed.extend_from_slice(&self.plain);
            CODEC_STORED
        } else if reference.is_some() {
            CODEC_ZSTD_REFERENCED
        } else {
            CODEC_ZSTD
        };
        let sealed = &mut self.sealed;
        let mut head = Vec::with_capacity(24 + 2 * entries.len());
        head.push(codec);
        put_varint(&mut head, entries.len() as u64);
        put_varint(&mut head, self.plain.len() as u64);
        if let (CODEC_ZSTD_REFERENCED, Some(reference)) = (codec, reference) {
            put_varint(&mut head, first - reference.first);
            put_varint(&mut head, reference.offset);
        }
        let mut previous = first;
        for (index, _) in &entries[1..] {
            if *index <= previous {
                return Err(StoreError::Invalid(format!(
                    "block entries must rise: {index} after {previous}"
                )));
            }
            put_varint(&mut head, index - previous);
            previous = *index;
        }
        let tag = key.seal_block(generation, first, &head, sealed)?;
        let body_len = 8 + 4 + head.len() + sealed.len() + TAG_LEN + 4;
        if body_len > MAX_RECORD_BODY as usize {
            return Err(StoreError::Invalid(format!(
                "a block of {} bytes exceeds the segment record limit",
                self.plain.len()
            )));
        }
        let start = out.len();
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&generation.to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(sealed);
        out.extend_from_slice(&tag);
        let crc = crc32(&out[start + 4..]);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

/// A block parsed in place from its frame, still sealed.
#[derive(Debug, Clone)]
pub struct BlockRef<'a> {
    pub first: u64,
    pub generation: u32,
    pub codec: u8,
    pub plain_len: usize,
    /// The numbers of the entries it holds, rising.
    pub indices: Vec<u64>,
    /// Codec 3: its reference block's first entry and frame offset.
    pub reference: Option<(u64, u64)>,
    head: &'a [u8],
    /// Ciphertext and tag.
    sealed: &'a [u8],
}

/// A block's head, parsed.
struct Head {
    codec: u8,
    indices: Vec<u64>,
    plain_len: usize,
    reference: Option<(u64, u64)>,
    /// Where the head ends in the frame's bytes after its first 16.
    len: usize,
}

/// The head of a block: codec, entry numbers, plaintext length, its
/// reference (codec 3), and where the head ends in `sealed` (the frame's
/// bytes after its first 16).
fn parse_head(first: u64, sealed: &[u8]) -> Result<Head, String> {
    let mut at = 0usize;
    let codec = *sealed.first().ok_or("block head is missing")?;
    at += 1;
    if !(CODEC_STORED..=CODEC_ZSTD_REFERENCED).contains(&codec) {
        return Err(format!("unknown block codec {codec}"));
    }
    let count = get_varint(sealed, &mut at).ok_or("block entry count is unreadable")?;
    if count == 0 || count > MAX_ENTRIES as u64 {
        return Err(format!(
            "block entry count {count} is outside 1..={MAX_ENTRIES}"
        ));
    }
    let plain_len = get_varint(sealed, &mut at).ok_or("block length is unreadable")?;
    if plain_len > u64::from(MAX_RECORD_BODY) {
        return Err(format!(
            "block plaintext length {plain_len} is out of range"
        ));
    }
    let reference = if codec == CODEC_ZSTD_REFERENCED {
        let back = get_varint(sealed, &mut at).ok_or("block reference is unreadable")?;
        let offset = get_varint(sealed, &mut at).ok_or("block reference is unreadable")?;
        let reference_first = first
            .checked_sub(back)
            .filter(|_| back > 0 && offset > 0)
            .ok_or("block reference is not an earlier block")?;
        Some((reference_first, offset))
    } else {
        None
    };
    let mut indices = Vec::with_capacity(count as usize);
    indices.push(first);
    let mut previous = first;
    for _ in 1..count {
        let gap = get_varint(sealed, &mut at).ok_or("block entry list is unreadable")?;
        let next = previous
            .checked_add(gap)
            .filter(|_| gap > 0)
            .ok_or("block entry numbers do not rise")?;
        indices.push(next);
        previous = next;
    }
    Ok(Head {
        codec,
        indices,
        plain_len: plain_len as usize,
        reference,
        len: at,
    })
}

/// Parses the block a frame holds (`record`: the frame parsed and its
/// checksum checked by [`crate::segment::parse_record_ref`]).
pub fn parse<'a>(path: &Path, offset: u64, record: RecordRef<'a>) -> StoreResult<BlockRef<'a>> {
    let Head {
        codec,
        indices,
        plain_len,
        reference,
        len: head_len,
    } = parse_head(record.index, record.sealed)
        .map_err(|what| StoreError::corrupt(path, offset, what))?;
    if reference.is_some_and(|(_, at)| at >= offset) {
        return Err(StoreError::corrupt(
            path,
            offset,
            "block reference is not an earlier block",
        ));
    }
    let (head, sealed) = record.sealed.split_at(head_len);
    if sealed.len() < TAG_LEN || (codec == CODEC_STORED && sealed.len() != plain_len + TAG_LEN) {
        return Err(StoreError::corrupt(
            path,
            offset,
            "block ciphertext length disagrees with its head",
        ));
    }
    Ok(BlockRef {
        first: record.index,
        generation: record.generation,
        codec,
        plain_len,
        indices,
        reference,
        head,
        sealed,
    })
}

/// The entry numbers of the block whose frame starts `frame`, read from its
/// head alone (the checksum is not checked). `None` when the head cannot be
/// read.
pub fn peek_indices(frame: &[u8]) -> Option<Vec<u64>> {
    let first = u64::from_be_bytes(frame.get(4..12)?.try_into().ok()?);
    let end = crate::segment::record_len(frame)?.min(frame.len());
    let sealed = frame.get(FRAME_HEAD..end.checked_sub(4)?)?;
    parse_head(first, sealed).ok().map(|head| head.indices)
}

/// Decompresses blocks; keeps its zstd context (one per thread).
pub struct Unpacker {
    context: zstd::zstd_safe::DCtx<'static>,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Unpacker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unpacker(..)")
    }
}

impl Unpacker {
    pub fn new() -> StoreResult<Unpacker> {
        Ok(Unpacker {
            context: zstd::zstd_safe::DCtx::try_create()
                .ok_or_else(|| StoreError::Invalid("zstd: no decompression context".into()))?,
            buffer: Vec::new(),
        })
    }
}

/// A block opened: its entries' stored envelopes.
#[derive(Debug, Clone)]
pub struct OpenBlock {
    pub generation: u32,
    indices: Vec<u64>,
    plain: Vec<u8>,
    bodies: Vec<Range<usize>>,
}

impl BlockRef<'_> {
    /// Authenticates and decrypts the block with the record key of its
    /// generation, then decompresses it (codec 3: with `reference`, the
    /// block its head names) and splits it into its entries.
    /// A tag that does not verify is [`StoreError::Authentication`];
    /// anything wrong after it (which only a writer with the key could
    /// have made) is corrupt.
    pub fn open(
        &self,
        key: &DataKey,
        path: &Path,
        offset: u64,
        unpacker: &mut Unpacker,
        reference: Option<&ReferenceDictionary>,
    ) -> StoreResult<OpenBlock> {
        let buffer = &mut unpacker.buffer;
        buffer.clear();
        buffer.extend_from_slice(self.sealed);
        let opened = key
            .open_block(self.generation, self.first, self.head, buffer)
            .ok_or_else(|| StoreError::Authentication {
                path: path.to_path_buf(),
                index: self.first,
            })?;
        let plain = if self.codec == CODEC_STORED {
            opened.to_vec()
        } else {
            let mut plain = Vec::with_capacity(self.plain_len);
            let context = &mut unpacker.context;
            let done = if self.codec == CODEC_ZSTD_REFERENCED {
                let dictionary = match reference {
                    Some(r) if Some((r.first, r.offset)) == self.reference => &r.dictionary,
                    _ => {
                        return Err(StoreError::Invalid(
                            "a block compressed against a reference is opened without it".into(),
                        ));
                    }
                };
                context.decompress_using_ddict(&mut plain, opened, dictionary.as_ddict())
            } else {
                context.decompress(&mut plain, opened)
            };
            done.map_err(|code| {
                StoreError::corrupt(
                    path,
                    offset,
                    format!("block: zstd: {}", zstd::zstd_safe::get_error_name(code)),
                )
            })?;
            if plain.len() != self.plain_len {
                return Err(StoreError::corrupt(
                    path,
                    offset,
                    "block decompresses to another length than its head says",
                ));
            }
            plain
        };
        let mut bodies = Vec::with_capacity(self.indices.len());
        let mut at = 0usize;
        for _ in &self.indices {
            let len = get_varint(&plain, &mut at)
                .and_then(|len| usize::try_from(len).ok())
                .filter(|len| at + len <= plain.len())
                .ok_or_else(|| {
                    StoreError::corrupt(path, offset, "block entries run past its plaintext")
                })?;
            bodies.push(at..at + len);
            at += len;
        }
        if at != plain.len() {
            return Err(StoreError::corrupt(
                path,
                offset,
                "block plaintext goes on after its last entry",
            ));
        }
        Ok(OpenBlock {
            generation: self.generation,
            indices: self.indices.clone(),
            plain,
            bodies,
        })
    }
}

impl OpenBlock {
    /// The stored envelope of entry `index`, if the block holds it.
    pub fn body(&self, index: u64) -> Option<&[u8]> {
        let slot = self.indices.binary_search(&index).ok()?;
        Some(&self.plain[self.bodies[slot].clone()])
    }

    /// Every entry: its number and stored envelope.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.indices
            .iter()
            .zip(&self.bodies)
            .map(|(index, range)| (*index, &self.plain[range.clone()]))
    }

    /// Bytes of plaintext (before compression).
    pub fn plain_len(&self) -> usize {
        self.plain.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Kek, NewKek};
    use crate::segment::parse_record_ref;

    fn key() -> (tempfile::TempDir, DataKey) {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::create(&dir.path().join("kek"), NewKek::Random).unwrap();
        let (key, _) = DataKey::generate(&kek, 1).unwrap();
        (dir, key)
    }

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for value in [1u64, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert!(out.iter().all(|b| *b != 0), "{value}: {out:?}");
            let mut at = 0;
            assert_eq!(get_varint(&out, &mut at), Some(value));
            assert_eq!(at, out.len());
        }
        let mut at = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut at), None);
        let mut at = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut at), None);
    }

    #[test]
    fn seal_parse_open_and_damage() {
        let (_dir, key) = key();
        let path = Path::new("a.seg");
        let bodies: Vec<Vec<u8>> = (0..50)
            .map(|n| format!("{{\"actor\":\"user-{}\",\"n\":{n}}}", n % 5).into_bytes())
            .collect();
        let entries: Vec<(u64, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (100 + 3 * i as u64, b.as_slice()))
            .collect();
        let mut packer = Packer::new(LEVEL).unwrap();
        let mut frame = Vec::new();
        packer.seal(&key, 7, &entries, None, &mut frame).unwrap();
        let plain: usize = bodies.iter().map(|b| b.len() + 1).sum();
        assert!(frame.len() < plain, "{} vs {plain}", frame.len());
        assert!(
            frame[FRAME_HEAD..FRAME_HEAD + 8].iter().all(|b| *b != 0),
            "the head holds no zero byte"
        );
        assert_eq!(
            peek_indices(&frame).unwrap(),
            entries.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        let (record, total) = parse_record_ref(path, 0, &frame).unwrap();
        assert_eq!(
            (record.index, record.generation, total),
            (100, 7, frame.len())
        );
        let block = parse(path, 0, record).unwrap();
        assert_eq!(block.codec, CODEC_ZSTD);
        let mut unpacker = Unpacker::new().unwrap();
        let open = block.open(&key, path, 0, &mut unpacker, None).unwrap();
        for (index, body) in &entries {
            assert_eq!(open.body(*index), Some(*body));
        }
        assert_eq!(open.body(101), None);
        assert_eq!(open.entries().count(), 50);

        // Another key, or a changed entry list (checksum fixed), fails the tag.
        let kek = Kek::create(&_dir.path().join("kek2"), NewKek::Random).unwrap();
        let (other, _) = DataKey::generate(&kek, 1).unwrap();
        assert!(matches!(
            block.open(&other, path, 0, &mut unpacker, None),
            Err(StoreError::Authentication { .. })
        ));
        let mut moved = frame.clone();
        let last_gap = FRAME_HEAD + 4 + 48; // codec, count, length (2), gaps
        assert_eq!(moved[last_gap], 3);
        moved[last_gap] = 4;
        let end = moved.len() - 4;
        let crc = crc32(&moved[4..end]);
        moved[end..].copy_from_slice(&crc.to_be_bytes());
        let (record, _) = parse_record_ref(path, 0, &moved).unwrap();
        let block = parse(path, 0, record).unwrap();
        assert_eq!(*block.indices.last().unwrap(), 100 + 3 * 49 + 1);
        assert!(matches!(
            block.open(&key, path, 0, &mut unpacker, None),
            Err(StoreError::Authentication { .. })
        ));
        // A flipped bit anywhere fails the checksum.
        for at in [5, FRAME_HEAD, FRAME_HEAD + 60, frame.len() - 10] {
            let mut flipped = frame.clone();
            flipped[at] ^= 1;
            assert!(parse_record_ref(path, 0, &flipped).is_err(), "byte {at}");
        }
    }

    #[test]
    fn incompressible_entries_are_stored_and_bad_input_refused() {
        let (_dir, key) = key();
        let path = Path::new("a.seg");
        let mut noise = vec![0u8; 300];
        crate::keys::random_bytes(&mut noise).unwrap();
        let mut packer = Packer::new(LEVEL).unwrap();
        let mut frame = Vec::new();
        packer
            .seal(&key, 1, &[(5, &noise)], None, &mut frame)
            .unwrap();
        let (record, _) = parse_record_ref(path, 0, &frame).unwrap();
        let block = parse(path, 0, record).unwrap();
        assert_eq!(block.codec, CODEC_STORED);
        let open = block
            .open(&key, path, 0, &mut Unpacker::new().unwrap(), None)
            .unwrap();
        assert_eq!(open.body(5), Some(noise.as_slice()));

        assert!(packer.seal(&key, 1, &[], None, &mut frame).is_err());
        assert!(
            packer
                .seal(&key, 1, &[(5, b"a"), (5, b"b")], None, &mut frame)
                .is_err()
        );
    }

    #[test]
    fn salts_depend_on_key_and_entry() {
        let (_dir, key) = key();
        let salts = key.salt_key();
        assert_eq!(salts.salt(1), key.salt_key().salt(1));
        assert_ne!(salts.salt(1), salts.salt(2));
        let kek = Kek::create(&_dir.path().join("kek2"), NewKek::Random).unwrap();
        let (other, _) = DataKey::generate(&kek, 1).unwrap();
        assert_ne!(other.salt_key().salt(1), salts.salt(1));
    }
}
