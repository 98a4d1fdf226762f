//! Tiles and entry bundles of a C2SP tlog-tiles log (tile height 8).
//!
//! A hash tile at level `l`, index `n` holds up to 256 consecutive hashes of
//! complete subtrees of 256^l leaves, i.e. the Merkle subtrees at tree level
//! `8 * l`; an entry bundle holds the matching level-0 entries. This module
//! names tiles ([`TileId`] and its paths), enumerates which tiles a tree size
//! has, builds and decodes tile and bundle bytes, and adapts a
//! [`TileReader`] into a [`HashReader`] so proofs can be generated from
//! tiles. It performs no I/O itself: reading and writing tile bytes is the
//! caller's job, through the traits here.

use crate::hash::{HASH_SIZE, Hash, node_hash};
use crate::proof::HashReader;

/// Number of tree levels spanned by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Number of hashes in a full tile (2^TILE_HEIGHT).
pub const TILE_WIDTH: u64 = 256;
/// The highest tile level a path may name (the spec allows 0 to 63).
pub const MAX_PATH_LEVEL: u8 = 63;
/// The highest tile level a tree with a `u64` size can have: level 7 tiles
/// cover 2^64 leaves each, so higher levels are always empty.
pub const MAX_TREE_TILE_LEVEL: u8 = 7;

/// Errors about tile paths, tile contents and entry bundles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The path does not start with `tile/`.
    #[error("tile path {path:?} does not start with \"tile/\"")]
    NotATilePath {
        /// The offending path.
        path: String,
    },
    /// The level element is not a decimal 0..=63 without leading zeros.
    #[error(
        "tile path {path:?}: level {element:?} is not a decimal from 0 to 63 without leading zeros"
    )]
    BadLevel {
        /// The offending path.
        path: String,
        /// The level element.
        element: String,
    },
    /// The path has no index elements.
    #[error("tile path {path:?} has no index")]
    MissingIndex {
        /// The offending path.
        path: String,
    },
    /// An index element is not of the form `xDDD` (all but the last) or `DDD` (the last).
    #[error("tile path {path:?}: index element {element:?} must be {expected}")]
    BadIndexElement {
        /// The offending path.
        path: String,
        /// The index element.
        element: String,
        /// What the element should look like.
        expected: &'static str,
    },
    /// The index has a redundant leading `x000` element.
    #[error("tile path {path:?}: index has a leading x000 element")]
    IndexLeadingZeros {
        /// The offending path.
        path: String,
    },
    /// The index does not fit in 64 bits.
    #[error("tile path {path:?}: index does not fit in 64 bits")]
    IndexOverflow {
        /// The offending path.
        path: String,
    },
    /// The partial-tile width is not a decimal 1..=255 without leading zeros.
    #[error(
        "tile path {path:?}: partial width {element:?} is not a decimal from 1 to 255 without leading zeros"
    )]
    BadWidth {
        /// The offending path.
        path: String,
        /// The width element.
        element: String,
    },
    /// A tile id has a width outside 1..=256.
    #[error("tile width {width} is outside 1..=256")]
    WidthOutOfRange {
        /// The offending width.
        width: u16,
    },
    /// Tile bytes are not exactly 32 bytes per hash for the tile's width.
    #[error("tile data is {got} bytes, expected {expected} (32 per hash)")]
    BadTileLength {
        /// Expected length in bytes.
        expected: usize,
        /// Actual length in bytes.
        got: usize,
    },
    /// An entry is too long for the 16-bit length prefix of entry bundles.
    #[error("entry {index} is {len} bytes, more than the 65535 an entry bundle can hold")]
    EntryTooLarge {
        /// Position of the entry in the bundle.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// An entry bundle ends inside a length prefix or an entry.
    #[error("entry bundle is truncated at byte offset {offset}")]
    TruncatedBundle {
        /// Byte offset where the truncated entry or prefix starts.
        offset: usize,
    },
}

/// Whether a path names a hash tile (with its level) or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// A Merkle hash tile at the given tile level.
    Hash(u8),
    /// An entry bundle (always level 0).
    Entries,
}

/// Identifies a tile: tile level, index within the level, and width.
///
/// `width` is 1..=256; 256 means a full tile, smaller values a partial tile
/// holding the first `width` hashes (or entries) of the full one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level: hashes in the tile are roots of subtrees of 256^level leaves.
    pub level: u8,
    /// Index of the tile within its level.
    pub index: u64,
    /// Number of hashes in the tile, 1..=256.
    pub width: u16,
}

impl TileId {
    /// A tile id, checking that the width is 1..=256.
    pub fn new(level: u8, index: u64, width: u16) -> Result<TileId, TileError> {
        if width == 0 || u64::from(width) > TILE_WIDTH {
            return Err(TileError::WidthOutOfRange { width });
        }
        Ok(TileId {
            level,
            index,
            width,
        })
    }

    /// Whether this is a full (256-wide) tile.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The hash tile path `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}{}",
            self.level,
            encode_index(self.index),
            self.width_suffix()
        )
    }

    /// The entry bundle path `tile/entries/<N>[.p/<W>]`.
    ///
    /// Entry bundles exist only at level 0, so the level field is ignored.
    pub fn entries_path(&self) -> String {
        format!(
            "tile/entries/{}{}",
            encode_index(self.index),
            self.width_suffix()
        )
    }

    fn width_suffix(&self) -> String {
        if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        }
    }

    /// Parses a hash tile or entry bundle path, strictly: exactly the
    /// canonical form that [`TileId::path`] or [`TileId::entries_path`] prints.
    pub fn parse_path(path: &str) -> Result<(TileKind, TileId), TileError> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| TileError::NotATilePath { path: path.into() })?;
        let (first, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let (kind, level) = if first == "entries" {
            (TileKind::Entries, 0)
        } else {
            let level = parse_decimal(first)
                .and_then(|l| u8::try_from(l).ok())
                .filter(|l| *l <= MAX_PATH_LEVEL)
                .ok_or_else(|| TileError::BadLevel {
                    path: path.into(),
                    element: first.into(),
                })?;
            (TileKind::Hash(level), level)
        };
        if rest.is_empty() {
            return Err(TileError::MissingIndex { path: path.into() });
        }
        let mut elements: Vec<&str> = rest.split('/').collect();
        let mut width: u16 = 256;
        // A partial tile ends in "<last index element>.p/<W>".
        if elements.len() >= 2 {
            let n = elements.len();
            if let Some(stripped) = elements[n - 2].strip_suffix(".p") {
                let w_text = elements[n - 1];
                width = parse_decimal(w_text)
                    .and_then(|w| u16::try_from(w).ok())
                    .filter(|w| (1..=255).contains(w))
                    .ok_or_else(|| TileError::BadWidth {
                        path: path.into(),
                        element: w_text.into(),
                    })?;
                elements.truncate(n - 1);
                elements[n - 2] = stripped;
            }
        }
        let index = parse_index(path, &elements)?;
        Ok((
            kind,
            TileId {
                level,
                index,
                width,
            },
        ))
    }

    /// The Merkle tree level of the hashes in this tile (8 × tile level).
    pub fn subtree_level(&self) -> u16 {
        u16::from(self.level) * u16::from(TILE_HEIGHT)
    }

    /// The index, at [`TileId::subtree_level`], of the tile's first hash
    /// (`index * 256`), or `None` if that overflows.
    pub fn first_subtree_index(&self) -> Option<u64> {
        self.index.checked_mul(TILE_WIDTH)
    }
}

/// Parses an ASCII decimal with no sign and no leading zeros (except "0").
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Encodes a tile index as 3-digit groups, all but the last prefixed with `x`.
fn encode_index(mut n: u64) -> String {
    let mut groups = Vec::new();
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn parse_index(path: &str, elements: &[&str]) -> Result<u64, TileError> {
    let three_digits = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    let mut index: u64 = 0;
    let last = elements.len().saturating_sub(1);
    for (i, el) in elements.iter().enumerate() {
        let digits = if i == last {
            Some(*el)
                .filter(|s| three_digits(s))
                .ok_or("three digits, like 067")
        } else {
            el.strip_prefix('x')
                .filter(|s| three_digits(s))
                .ok_or("x and three digits, like x001")
        }
        .map_err(|expected| TileError::BadIndexElement {
            path: path.into(),
            element: (*el).into(),
            expected,
        })?;
        if i == 0 && i != last && digits == "000" {
            return Err(TileError::IndexLeadingZeros { path: path.into() });
        }
        let group: u64 = digits
            .parse()
            .map_err(|_| TileError::IndexOverflow { path: path.into() })?;
        index = index
            .checked_mul(1000)
            .and_then(|v| v.checked_add(group))
            .ok_or_else(|| TileError::IndexOverflow { path: path.into() })?;
    }
    Ok(index)
}

/// `size >> (8 * level)`, the number of complete level-`level` tile hashes in a tree.
fn hashes_at_tile_level(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0)
}

/// The tiles of one level of a tree: `(full tile count, partial width or 0)`.
fn level_shape(size: u64, level: u8) -> (u64, u16) {
    let n = hashes_at_tile_level(size, level);
    // The mask keeps the value below 256, so the conversion cannot fail.
    let partial = u16::try_from(n % TILE_WIDTH).unwrap_or(0);
    (n / TILE_WIDTH, partial)
}

/// Every hash tile of a tree of `size` leaves, in (level, index) order: the
/// full tiles of each level followed by that level's partial tile, if any.
pub fn tiles_for_size(size: u64) -> Vec<TileId> {
    new_tiles(0, size)
}

/// The hash tiles of a tree of `new` leaves that a tree of `old` leaves does
/// not have, in (level, index) order.
///
/// For `old <= new` these are the full tiles completed since `old` plus the
/// partial tiles of `new` that differ from those of `old`. The result is the
/// exact set difference for any pair of sizes.
pub fn new_tiles(old: u64, new: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..=MAX_TREE_TILE_LEVEL {
        if hashes_at_tile_level(new, level) == 0 {
            break;
        }
        push_new_level(&mut out, old, new, level);
    }
    out
}

fn push_new_level(out: &mut Vec<TileId>, old: u64, new: u64, level: u8) {
    let (full_old, partial_old) = level_shape(old, level);
    let (full_new, partial_new) = level_shape(new, level);
    for index in full_old..full_new {
        out.push(TileId {
            level,
            index,
            width: 256,
        });
    }
    if partial_new != 0 {
        // Tiles are compared by identity (level, index, width), so `old`
        // has this partial tile only if its own partial tile at this level
        // is the very same one; a full tile at that index is a different tile.
        let same_partial = full_old == full_new && partial_old == partial_new;
        if !same_partial {
            out.push(TileId {
                level,
                index: full_new,
                width: partial_new,
            });
        }
    }
}

/// Every entry bundle of a tree of `size` leaves (the level-0 tiles), in index order.
pub fn entry_bundles_for_size(size: u64) -> Vec<TileId> {
    new_entry_bundles(0, size)
}

/// The entry bundles of a tree of `new` leaves that a tree of `old` leaves does not have.
pub fn new_entry_bundles(old: u64, new: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    push_new_level(&mut out, old, new, 0);
    out
}

/// Concatenates hashes into tile bytes.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * HASH_SIZE);
    for h in hashes {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Splits tile bytes into hashes, requiring exactly `32 * width` bytes.
pub fn decode_tile(bytes: &[u8], width: u16) -> Result<Vec<Hash>, TileError> {
    let expected = usize::from(width) * HASH_SIZE;
    if bytes.len() != expected {
        return Err(TileError::BadTileLength {
            expected,
            got: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(HASH_SIZE)
        .map(|c| {
            let mut h = [0u8; HASH_SIZE];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect())
}

/// Encodes an entry bundle: each entry prefixed by its big-endian u16 length.
pub fn encode_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for (index, e) in entries.iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle into its entries, borrowing from `bytes`.
///
/// The caller should check the entry count against the bundle's width.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let (len_bytes, after) = rest
            .split_first_chunk::<2>()
            .ok_or(TileError::TruncatedBundle { offset })?;
        let len = usize::from(u16::from_be_bytes(*len_bytes));
        if after.len() < len {
            return Err(TileError::TruncatedBundle { offset });
        }
        let (entry, tail) = after.split_at(len);
        out.push(entry);
        rest = tail;
        offset += 2 + len;
    }
    Ok(out)
}

/// Errors from reading hashes out of tiles, or building tiles from hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileHashError<E> {
    /// The underlying tile reader or hash reader failed.
    #[error("reader failed: {0}")]
    Reader(E),
    /// The requested subtree is not complete within the tree size.
    #[error("subtree at level {level}, index {index} is not complete in a tree of size {size}")]
    NotInTree {
        /// The requested level.
        level: u8,
        /// The requested index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The tile id cannot be part of any tree with a 64-bit size.
    #[error("tile level {level}, index {index}, width {width} cannot exist in a 64-bit tree")]
    TileOutOfRange {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Tile width.
        width: u16,
    },
    /// The tile bytes returned by the reader were malformed.
    #[error("tile {path}: {source}")]
    BadTile {
        /// The path of the tile.
        path: String,
        /// What was wrong with it.
        source: TileError,
    },
}

/// Reads the bytes of a tile (32 × width bytes for hash tiles).
pub trait TileReader {
    /// The reader's own failure type.
    type Error;

    /// Returns the bytes of the given tile.
    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, Self::Error>;
}

impl<T: TileReader + ?Sized> TileReader for &T {
    type Error = T::Error;

    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, Self::Error> {
        (**self).read_tile(tile)
    }
}

/// A [`HashReader`] over the tiles of a tree of a given size.
///
/// A subtree hash at level `8t + h` is found in the level-`t` tile that
/// contains it, as the root of `2^h` consecutive tile hashes. The tile read
/// is the full one when the tree has completed it, otherwise the partial
/// tile of exactly this tree size, which is the one a log publishes with
/// the matching checkpoint.
#[derive(Debug)]
pub struct TileHashReader<'a, T: TileReader> {
    size: u64,
    reader: &'a T,
}

impl<'a, T: TileReader> TileHashReader<'a, T> {
    /// A reader for the tree of `size` leaves whose tiles `reader` provides.
    pub fn new(size: u64, reader: &'a T) -> TileHashReader<'a, T> {
        TileHashReader { size, reader }
    }

    /// The tree size this reader serves.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<T: TileReader> HashReader for TileHashReader<'_, T> {
    type Error = TileHashError<T::Error>;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let not_in_tree = TileHashError::NotInTree {
            level,
            index,
            size: self.size,
        };
        // The subtree covers leaves [index << level, (index + 1) << level),
        // which must end within the tree; checked shifts keep this total.
        let end = index
            .checked_add(1)
            .and_then(|n| n.checked_mul(1u64.checked_shl(u32::from(level))?));
        match end {
            Some(end) if end <= self.size => {}
            _ => return Err(not_in_tree),
        }
        let tile_level = level / TILE_HEIGHT;
        let height = level % TILE_HEIGHT;
        // Position of the subtree's first hash among the tile-level hashes;
        // this cannot overflow since the subtree ends within a u64 tree.
        let first = index << height;
        let tile_index = first / TILE_WIDTH;
        let start = usize::try_from(first % TILE_WIDTH).unwrap_or(0);
        let count = 1usize << height;
        let (full, partial) = level_shape(self.size, tile_level);
        let width = if tile_index < full { 256 } else { partial };
        let tile = TileId {
            level: tile_level,
            index: tile_index,
            width,
        };
        if start + count > usize::from(width) {
            return Err(not_in_tree);
        }
        let bytes = self
            .reader
            .read_tile(&tile)
            .map_err(TileHashError::Reader)?;
        let hashes = decode_tile(&bytes, width).map_err(|source| TileHashError::BadTile {
            path: tile.path(),
            source,
        })?;
        let Some(slice) = hashes.get(start..start + count) else {
            return Err(not_in_tree);
        };
        Ok(perfect_root(slice))
    }
}

/// The root of a perfect binary tree over `hashes` (length a power of two).
fn perfect_root(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node_hash(l, r),
                [only] => *only,
                _ => Hash::default(),
            })
            .collect();
    }
    level.first().copied().unwrap_or_default()
}

/// Builds the bytes of a hash tile from a [`HashReader`].
///
/// The tile's hashes are the subtrees at tree level `8 × tile.level` with
/// indexes `tile.index * 256 ..` for `tile.width` hashes. A log engine that
/// records the subtree hashes reported by
/// [`CompactRange::append_with`](crate::hash::CompactRange::append_with) at
/// every eighth level can answer exactly these reads, and so produce every
/// tile listed by [`new_tiles`].
pub fn tile_bytes<R: HashReader>(r: &R, tile: &TileId) -> Result<Vec<u8>, TileHashError<R::Error>> {
    let out_of_range = TileHashError::TileOutOfRange {
        level: tile.level,
        index: tile.index,
        width: tile.width,
    };
    if tile.level > MAX_TREE_TILE_LEVEL || tile.width == 0 || u64::from(tile.width) > TILE_WIDTH {
        return Err(out_of_range);
    }
    let subtree_level = tile.level * TILE_HEIGHT;
    let first = tile.first_subtree_index().ok_or(out_of_range)?;
    let mut out = Vec::with_capacity(usize::from(tile.width) * HASH_SIZE);
    for i in 0..u64::from(tile.width) {
        let h = r
            .subtree_hash(subtree_level, first + i)
            .map_err(TileHashError::Reader)?;
        out.extend_from_slice(&h.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    }
}
