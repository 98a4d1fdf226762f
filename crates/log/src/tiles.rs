//! Building the C2SP tlog-tiles tree incrementally, and reading it back.
//!
//! [`TileBuilder`] keeps only the right edge of the tree: for each tile level
//! the hashes of its rightmost incomplete tile, the commitments of the
//! rightmost incomplete entry bundle, and the compact range for the root.
//! Each full tile and bundle is handed to a [`TileSink`] the moment it
//! completes (the engine writes it, the verifier compares it); partial tiles
//! are produced on demand at publish time, and so is the root. Memory is
//! O(levels × 256).

use std::path::{Path, PathBuf};

use stele_store::StoreError;
use stele_tlog::tile::{
    TileId, TileReader, decode_bundle, decode_tile, encode_bundle, encode_tile,
};
use stele_tlog::{Hash, leaf_hash, node_hash};

use crate::error::{LogError, LogResult};

const WIDTH: usize = 256;

/// Receives each tile and bundle as soon as it is complete.
pub trait TileSink {
    /// `path` is relative to the public tree root (`tile/0/x001/234`).
    fn full(&mut self, path: String, bytes: Vec<u8>) -> LogResult<()>;
}

/// The root of a perfect tree over `hashes` (a power-of-two count).
fn perfect_root(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => stele_tlog::empty_root(),
        1 => hashes[0],
        n => {
            let (left, right) = hashes.split_at(n / 2);
            node_hash(&perfect_root(left), &perfect_root(right))
        }
    }
}

/// The right edge of the tree; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct TileBuilder {
    size: u64,
    /// `edge[l]`: hashes of the rightmost incomplete tile at level `l`.
    edge: Vec<Vec<Hash>>,
    /// Commitments of the rightmost incomplete entry bundle.
    bundle: Vec<[u8; 32]>,
}

impl TileBuilder {
    pub fn new() -> TileBuilder {
        TileBuilder::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root: the complete subtrees of the tree are, for each
    /// level from the top, the power-of-two runs of that level's edge tile
    /// (one per set bit of its width); fold them right to left.
    pub fn root(&self) -> Hash {
        let mut subtrees = Vec::new();
        for level_hashes in self.edge.iter().rev() {
            let width = level_hashes.len();
            let mut pos = 0usize;
            for bit in (0..8).rev() {
                let span = 1usize << bit;
                if width & span != 0 {
                    subtrees.push(perfect_root(&level_hashes[pos..pos + span]));
                    pos += span;
                }
            }
        }
        let mut iter = subtrees.into_iter().rev();
        match iter.next() {
            None => stele_tlog::empty_root(),
            Some(last) => iter.fold(last, |acc, left| node_hash(&left, &acc)),
        }
    }

    /// Appends one entry (its commitment) and emits completed tiles.
    pub fn push(&mut self, commitment: &[u8; 32], sink: &mut impl TileSink) -> LogResult<()> {
        let leaf = leaf_hash(commitment);
        self.size = self
            .size
            .checked_add(1)
            .ok_or_else(|| LogError::Internal("the tree is full".into()))?;
        self.bundle.push(*commitment);
        if self.bundle.len() == WIDTH {
            let entries: Vec<&[u8]> = self.bundle.iter().map(|c| c.as_slice()).collect();
            let bytes = encode_bundle(&entries).map_err(|e| LogError::Internal(e.to_string()))?;
            let id = TileId::new(0, self.size / WIDTH as u64 - 1, WIDTH as u16)
                .map_err(|e| LogError::Internal(e.to_string()))?;
            sink.full(id.entries_path(), bytes)?;
            self.bundle.clear();
        }
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.edge.len() <= level {
                self.edge.push(Vec::with_capacity(WIDTH));
            }
            self.edge[level].push(hash);
            if self.edge[level].len() < WIDTH {
                return Ok(());
            }
            // The tile at `level` just completed: the size is a multiple of
            // 256^(level+1), and this is tile number size / 256^(level+1) - 1.
            let shift = 8 * (level as u32 + 1);
            let index = (self.size >> shift) - 1;
            let id = TileId::new(level as u8, index, WIDTH as u16)
                .map_err(|e| LogError::Internal(e.to_string()))?;
            sink.full(id.path(), encode_tile(&self.edge[level]))?;
            hash = perfect_root(&self.edge[level]);
            self.edge[level].clear();
            level += 1;
        }
    }

    /// The partial tiles and the partial entry bundle of the current size,
    /// as (path relative to the public root, bytes).
    pub fn partial_tiles(&self) -> LogResult<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for (level, hashes) in self.edge.iter().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            let index = self.size >> (8 * (level as u32 + 1));
            let id = TileId::new(level as u8, index, hashes.len() as u16)
                .map_err(|e| LogError::Internal(e.to_string()))?;
            out.push((id.path(), encode_tile(hashes)));
        }
        if !self.bundle.is_empty() {
            let entries: Vec<&[u8]> = self.bundle.iter().map(|c| c.as_slice()).collect();
            let bytes = encode_bundle(&entries).map_err(|e| LogError::Internal(e.to_string()))?;
            let id = TileId::new(0, self.size / WIDTH as u64, self.bundle.len() as u16)
                .map_err(|e| LogError::Internal(e.to_string()))?;
            out.push((id.entries_path(), bytes));
        }
        Ok(out)
    }

    /// Paths (relative to the public root) of the partial tiles of this size.
    pub fn edge_paths(&self) -> Vec<String> {
        self.partial_tiles()
            .map(|tiles| tiles.into_iter().map(|(path, _)| path).collect())
            .unwrap_or_default()
    }

    /// Rebuilds the right edge of the tree of `size` from its published
    /// tiles and bundle below `public`.
    pub fn load(public: &Path, size: u64) -> LogResult<TileBuilder> {
        let reader = DiskTiles::new(public);
        let mut edge = Vec::new();
        let mut level = 0u32;
        while level < 8 && (size >> (8 * level)) > 0 {
            let width = ((size >> (8 * level)) % WIDTH as u64) as u16;
            let mut hashes = Vec::with_capacity(WIDTH);
            if width > 0 {
                let index = size >> (8 * (level + 1));
                let id = TileId::new(level as u8, index, width)
                    .map_err(|e| LogError::Internal(e.to_string()))?;
                let bytes = reader.read_tile(&id).map_err(|e| {
                    LogError::Integrity(format!("tile of the latest checkpoint: {e}"))
                })?;
                hashes = decode_tile(&bytes, width).map_err(|e| {
                    LogError::Integrity(format!("{}: {e}", reader.path_of(&id).display()))
                })?;
            }
            edge.push(hashes);
            level += 1;
        }
        let bundle_width = (size % WIDTH as u64) as u16;
        let mut bundle = Vec::new();
        if bundle_width > 0 {
            let id = TileId::new(0, size / WIDTH as u64, bundle_width)
                .map_err(|e| LogError::Internal(e.to_string()))?;
            let path = public.join(id.entries_path());
            let bytes = read_public_tile(public, &id.entries_path())
                .map_err(|e| {
                    LogError::Integrity(format!("entry bundle of the latest checkpoint: {e}"))
                })?
                .ok_or_else(|| {
                    LogError::Integrity(format!(
                        "entry bundle of the latest checkpoint: {} is missing",
                        path.display()
                    ))
                })?;
            let entries = decode_bundle(&bytes)
                .map_err(|e| LogError::Integrity(format!("{}: {e}", path.display())))?;
            if entries.len() != bundle_width as usize {
                return Err(LogError::Integrity(format!(
                    "{}: holds {} entries, expected {bundle_width}",
                    path.display(),
                    entries.len()
                )));
            }
            for entry in entries {
                let commitment: [u8; 32] = entry.try_into().map_err(|_| {
                    LogError::Integrity(format!(
                        "{}: an entry is not a 32-byte commitment",
                        path.display()
                    ))
                })?;
                bundle.push(commitment);
            }
            // The bundle and the level-0 tile describe the same entries.
            let leaves: Vec<Hash> = bundle.iter().map(|c| leaf_hash(c)).collect();
            if edge.first().map(|e| e.as_slice()) != Some(leaves.as_slice()) {
                let tile = TileId::new(0, size / WIDTH as u64, bundle_width)
                    .map_err(|e| LogError::Internal(e.to_string()))?;
                return Err(LogError::Integrity(format!(
                    "{} and {} disagree: one of them was altered",
                    path.display(),
                    reader.path_of(&tile).display()
                )));
            }
        }
        Ok(TileBuilder { size, edge, bundle })
    }
}

/// Reads tiles from the public tree on disk.
#[derive(Debug, Clone)]
pub struct DiskTiles {
    public: PathBuf,
}

impl DiskTiles {
    pub fn new(public: &Path) -> DiskTiles {
        DiskTiles {
            public: public.to_path_buf(),
        }
    }

    pub fn path_of(&self, id: &TileId) -> PathBuf {
        self.public.join(id.path())
    }
}

/// Reads a tile or entry bundle of the public tree by its path relative
/// to the public root (`tile/0/001.p/44`). A partial tile whose file was
/// pruned (after its full tile became durable) is the same-width prefix of
/// the full tile, and is served from it. `None` when neither exists.
pub fn read_public_tile(public: &Path, relative: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let path = public.join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => return Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("read", &path, e)),
    }
    let Ok((kind, id)) = TileId::parse_path(relative) else {
        return Ok(None);
    };
    if id.is_full() {
        return Ok(None);
    }
    let Ok(full) = TileId::new(id.level, id.index, WIDTH as u16) else {
        return Ok(None);
    };
    let (full_path, entries) = match kind {
        stele_tlog::TileKind::Entries => (public.join(full.entries_path()), true),
        stele_tlog::TileKind::Hash(_) => (public.join(full.path()), false),
    };
    let bytes = match std::fs::read(&full_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &full_path, e)),
    };
    let width = usize::from(id.width);
    if entries {
        let all =
            decode_bundle(&bytes).map_err(|e| StoreError::corrupt(&full_path, 0, e.to_string()))?;
        let prefix: Vec<&[u8]> = all.into_iter().take(width).collect();
        if prefix.len() != width {
            return Err(StoreError::corrupt(
                &full_path,
                0,
                "full bundle holds too few entries",
            ));
        }
        let encoded = encode_bundle(&prefix)
            .map_err(|e| StoreError::corrupt(&full_path, 0, e.to_string()))?;
        Ok(Some(encoded))
    } else {
        bytes
            .get(..32 * width)
            .map(|prefix| Some(prefix.to_vec()))
            .ok_or_else(|| StoreError::corrupt(&full_path, 0, "full tile is too short"))
    }
}

impl TileReader for DiskTiles {
    type Error = StoreError;

    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(tile);
        let bytes = read_public_tile(&self.public, &tile.path())?.ok_or_else(|| {
            StoreError::io(
                "read",
                &path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        if bytes.len() != 32 * tile.width as usize {
            return Err(StoreError::corrupt(
                &path,
                0,
                format!(
                    "tile holds {} bytes, expected {}",
                    bytes.len(),
                    32 * tile.width as usize
                ),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_store::fsutil;

    /// Writes tiles straight to disk (the engine hands them to its
    /// publisher thread instead).
    struct DiskSink<'a> {
        public: &'a Path,
    }

    impl TileSink for DiskSink<'_> {
        fn full(&mut self, path: String, bytes: Vec<u8>) -> LogResult<()> {
            fsutil::write_file_unsynced(&self.public.join(path), &bytes)?;
            Ok(())
        }
    }

    struct Collect(Vec<(String, Vec<u8>)>);
    impl TileSink for Collect {
        fn full(&mut self, path: String, bytes: Vec<u8>) -> LogResult<()> {
            self.0.push((path, bytes));
            Ok(())
        }
    }

    #[test]
    fn builder_root_matches_memory_tree_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = TileBuilder::new();
        let mut sink = DiskSink { public: dir.path() };
        let mut reference = stele_tlog::CompactRange::new();
        for i in 0..70_000u64 {
            let mut c = [0u8; 32];
            c[..8].copy_from_slice(&i.to_be_bytes());
            builder.push(&c, &mut sink).unwrap();
            reference.append(leaf_hash(&c)).unwrap();
            if [1, 255, 256, 257, 65_535, 65_536, 65_537, 69_999].contains(&(i + 1)) {
                assert_eq!(builder.root(), reference.root(), "size {}", i + 1);
                for (path, bytes) in builder.partial_tiles().unwrap() {
                    fsutil::write_file_unsynced(&dir.path().join(path), &bytes).unwrap();
                }
                let loaded = TileBuilder::load(dir.path(), i + 1).unwrap();
                assert_eq!(loaded.root(), reference.root(), "reloaded size {}", i + 1);
                assert_eq!(loaded.edge, builder.edge);
            }
        }
        // Level-1 full tile exists once 65536 leaves are in.
        assert!(dir.path().join("tile/1/000").exists());
        assert!(dir.path().join("tile/entries/000").exists());
    }

    #[test]
    fn full_tiles_are_emitted_once() {
        let mut builder = TileBuilder::new();
        let mut sink = Collect(Vec::new());
        for i in 0..600u64 {
            let mut c = [0u8; 32];
            c[..8].copy_from_slice(&i.to_be_bytes());
            builder.push(&c, &mut sink).unwrap();
        }
        let paths: Vec<&str> = sink.0.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tile/entries/000",
                "tile/0/000",
                "tile/entries/001",
                "tile/0/001"
            ]
        );
        let partial: Vec<String> = builder
            .partial_tiles()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            partial,
            ["tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/002.p/88"]
        );
    }
}
