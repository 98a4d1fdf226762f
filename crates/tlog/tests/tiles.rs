//! C2SP tlog-tiles: path encoding, tile enumeration against a naive model,
//! and proofs served from tiles matching proofs from an in-memory tree.

// Test helpers outside #[test] functions may unwrap and panic: a failure
// there is a test failure, which is exactly what a panic reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use stele_tlog::tile::{
    TileError, TileHashError, decode_bundle, decode_tile, encode_bundle, encode_tile,
    entry_bundles_for_size, new_entry_bundles, new_tiles, tile_bytes, tiles_for_size,
};
use stele_tlog::{
    CompactRange, Hash, HashReader, MemoryTree, TileHashReader, TileId, TileKind, TileReader,
    consistency_proof, inclusion_proof, leaf_hash, tree_root,
};

fn t(level: u8, index: u64, width: u16) -> TileId {
    TileId {
        level,
        index,
        width,
    }
}

#[test]
fn paths_match_spec_examples() {
    assert_eq!(t(0, 1_234_067, 256).path(), "tile/0/x001/x234/067");
    assert_eq!(t(1, 0, 256).path(), "tile/1/000");
    assert_eq!(t(2, 5, 17).path(), "tile/2/005.p/17");
    assert_eq!(t(0, 1000, 1).path(), "tile/0/x001/000.p/1");
    assert_eq!(
        t(0, 1_234_067, 255).entries_path(),
        "tile/entries/x001/x234/067.p/255"
    );
    assert_eq!(t(0, 7, 256).entries_path(), "tile/entries/007");
    assert!(t(0, 0, 256).is_full() && !t(0, 0, 255).is_full());

    for tile in [
        t(0, 0, 256),
        t(0, 1_234_067, 3),
        t(3, 999, 256),
        t(3, 1000, 200),
        t(63, u64::MAX, 1),
    ] {
        assert_eq!(
            TileId::parse_path(&tile.path()),
            Ok((TileKind::Hash(tile.level), tile))
        );
        let level0 = TileId { level: 0, ..tile };
        assert_eq!(
            TileId::parse_path(&tile.entries_path()),
            Ok((TileKind::Entries, level0))
        );
    }
}

#[test]
fn path_parsing_is_strict() {
    let bad = [
        "",
        "tile",
        "tile/",
        "tiles/0/000",
        "tile/0",
        "tile/0/",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/a/000",
        "tile/0/00",
        "tile/0/0000",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/x001",
        "tile/0/xx01/002",
        "tile/0/x001/x002",
        "tile/0/000.p",
        "tile/0/000.p/",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/012",
        "tile/0/000.p/1/2",
        "tile/0/000/",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
        "tile/entries",
        "tile/entries/",
        "tile/entries/0",
        "tile/entries/000.p/300",
        "/tile/0/000",
        "tile/0/000 ",
        "tile/0/0a0",
    ];
    for p in bad {
        assert!(TileId::parse_path(p).is_err(), "{p:?} parsed");
    }
    assert!(matches!(
        TileId::parse_path("tile/0/x000/001"),
        Err(TileError::IndexLeadingZeros { .. })
    ));
    assert_eq!(
        TileId::parse_path("tile/0/x018/x446/x744/x073/x709/x551/615")
            .unwrap()
            .1
            .index,
        u64::MAX
    );
    assert!(TileId::new(0, 0, 0).is_err() && TileId::new(0, 0, 257).is_err());
    assert!(TileId::new(0, 0, 256).is_ok());
}

/// The tiles of a tree by the spec's definition: level `l` holds
/// floor(size / 256^l) hashes, cut into runs of 256.
fn naive_tiles(size: u64) -> BTreeSet<TileId> {
    let mut out = BTreeSet::new();
    for level in 0u8..8 {
        let count = size / 256u64.pow(u32::from(level));
        let mut index = 0;
        while index * 256 < count {
            let width = (count - index * 256).min(256) as u16;
            out.insert(t(level, index, width));
            index += 1;
        }
    }
    out
}

#[test]
fn tile_enumeration_matches_naive() {
    // The spec's worked example.
    let tiles = tiles_for_size(70_000);
    assert_eq!(
        tiles.iter().filter(|t| t.level == 0 && t.is_full()).count(),
        273
    );
    assert!(tiles.contains(&t(0, 273, 112)));
    assert!(tiles.contains(&t(1, 0, 256)));
    assert!(tiles.contains(&t(1, 1, 17)));
    assert!(tiles.contains(&t(2, 0, 1)));
    assert_eq!(tiles.len(), 273 + 4);
    assert_eq!(tiles_for_size(256), vec![t(0, 0, 256), t(1, 0, 1)]);
    assert!(tiles_for_size(0).is_empty());

    let mut sizes: Vec<u64> = (0..=600).collect();
    sizes.extend([
        65_535,
        65_536,
        65_537,
        70_000,
        131_372,
        16_777_216,
        16_777_215 + 300,
    ]);
    for &size in &sizes {
        let got = tiles_for_size(size);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "order at {size}");
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            naive_tiles(size),
            "size {size}"
        );
        let bundles: BTreeSet<_> = entry_bundles_for_size(size).into_iter().collect();
        let level0: BTreeSet<_> = naive_tiles(size)
            .into_iter()
            .filter(|t| t.level == 0)
            .collect();
        assert_eq!(bundles, level0);
    }
    // Huge sizes: only differences are enumerated, and the top level is 7.
    assert_eq!(
        new_tiles(u64::MAX - 1, u64::MAX),
        vec![t(0, u64::MAX >> 8, 255)]
    );
    let mut carry: Vec<TileId> = (0u8..7)
        .map(|l| t(l, (1u64 << (48 - 8 * u32::from(l))) - 1, 256))
        .collect();
    carry.push(t(7, 0, 1));
    assert_eq!(new_tiles((1 << 56) - 1, 1 << 56), carry);
    assert_eq!(new_tiles(u64::MAX, u64::MAX), vec![]);

    let pair_sizes: Vec<u64> = (0..=520)
        .step_by(7)
        .chain([65_535, 65_536, 65_537, 65_792, 70_000])
        .collect();
    for &old in &pair_sizes {
        for &new in &pair_sizes {
            let want: Vec<TileId> = naive_tiles(new)
                .difference(&naive_tiles(old))
                .copied()
                .collect();
            assert_eq!(new_tiles(old, new), want, "new_tiles({old}, {new})");
            let want0: Vec<TileId> = want.iter().filter(|t| t.level == 0).copied().collect();
            assert_eq!(new_entry_bundles(old, new), want0);
        }
    }
    // Appending one entry inside a level-1 partial tile keeps that partial tile.
    assert_eq!(new_tiles(300, 301), vec![t(0, 1, 45)]);
    assert_eq!(new_tiles(511, 512), vec![t(0, 1, 256), t(1, 0, 2)]);
}

#[test]
fn bundles_and_tile_bytes() {
    let entries: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), vec![7; 65_535], b"hello".to_vec()];
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let bytes = encode_bundle(&refs).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 1, b'a']);
    assert_eq!(decode_bundle(&bytes).unwrap(), refs);
    assert!(decode_bundle(&[]).unwrap().is_empty());
    let too_big = vec![0u8; 65_536];
    assert_eq!(
        encode_bundle(&[b"x", &too_big]),
        Err(TileError::EntryTooLarge {
            index: 1,
            len: 65_536
        })
    );
    for cut in [1, 3, 4, bytes.len() - 1] {
        assert!(decode_bundle(&bytes[..cut]).is_err(), "cut {cut}");
    }
    assert_eq!(
        decode_bundle(&[0, 5, 1]),
        Err(TileError::TruncatedBundle { offset: 0 })
    );

    let hashes: Vec<Hash> = (0u8..3).map(|i| leaf_hash(&[i])).collect();
    let tile = encode_tile(&hashes);
    assert_eq!(decode_tile(&tile, 3).unwrap(), hashes);
    assert!(decode_tile(&tile, 2).is_err());
    assert!(decode_tile(&tile[1..], 3).is_err());
}

/// A tile store fed the way a log would: at each checkpoint, write the
/// tiles of `new_tiles(old, new)`; partial tiles of earlier checkpoints stay.
#[derive(Default)]
struct Store {
    tiles: HashMap<TileId, Vec<u8>>,
    reads: std::cell::Cell<usize>,
}

impl TileReader for Store {
    type Error = String;
    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, String> {
        self.reads.set(self.reads.get() + 1);
        self.tiles
            .get(tile)
            .cloned()
            .ok_or_else(|| format!("no tile {}", tile.path()))
    }
}

/// What an engine keeps: the subtree hashes at tile levels (0, 8, 16, ...),
/// recorded from `CompactRange::append_with`, from which tiles are cut.
#[derive(Default)]
struct Engine {
    range: CompactRange,
    tile_level_hashes: Vec<Vec<Hash>>,
}

impl Engine {
    fn append(&mut self, leaf: Hash) {
        let levels = &mut self.tile_level_hashes;
        self.range
            .append_with(leaf, |level, index, hash| {
                if level % 8 == 0 {
                    let l = usize::from(level / 8);
                    if levels.len() <= l {
                        levels.resize_with(l + 1, Vec::new);
                    }
                    assert_eq!(levels[l].len() as u64, index);
                    levels[l].push(*hash);
                }
            })
            .unwrap();
    }

    fn tile(&self, tile: &TileId) -> Vec<u8> {
        let start = tile.index as usize * 256;
        encode_tile(
            &self.tile_level_hashes[usize::from(tile.level)]
                [start..start + usize::from(tile.width)],
        )
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

fn check_reader_matches(
    tiles: &TileHashReader<'_, Store>,
    mem: &MemoryTree,
    size: u64,
    samples: &[u64],
) {
    assert_eq!(
        tree_root(tiles, size).unwrap(),
        tree_root(mem, size).unwrap(),
        "root {size}"
    );
    for &i in samples {
        let index = i % size;
        assert_eq!(
            inclusion_proof(tiles, index, size).unwrap(),
            inclusion_proof(mem, index, size).unwrap(),
            "inclusion {index}/{size}"
        );
        let old = 1 + i % size;
        assert_eq!(
            consistency_proof(tiles, old, size).unwrap(),
            consistency_proof(mem, old, size).unwrap(),
            "consistency {old}->{size}"
        );
    }
}

#[test]
fn tile_reader_serves_the_same_proofs() {
    let l = leaves(70_000);
    let mem = MemoryTree::from_leaves(&l).unwrap();
    let mut store = Store::default();
    let mut engine = Engine::default();
    // Irregular checkpoint sizes crossing level-0 and level-1 tile edges.
    let mut checkpoints = vec![
        1u64, 2, 3, 255, 256, 257, 300, 511, 512, 513, 1000, 4096, 65_535, 65_536, 65_537,
    ];
    checkpoints.extend((0..40).map(|i| 1000 + i * 1597));
    checkpoints.push(70_000);
    checkpoints.sort();
    checkpoints.dedup();
    let mut old = 0u64;
    for &size in &checkpoints {
        for leaf in &l[old as usize..size as usize] {
            engine.append(*leaf);
        }
        for tile in new_tiles(old, size) {
            // The engine's tiles agree with tiles computed from any HashReader.
            let bytes = engine.tile(&tile);
            assert_eq!(
                tile_bytes(&mem, &tile).unwrap(),
                bytes,
                "tile {}",
                tile.path()
            );
            store.tiles.insert(tile, bytes);
        }
        old = size;
    }
    // Every checkpoint size, including older ones whose partial tiles are
    // still stored, is served correctly.
    let samples = [0u64, 1, 255, 256, 4097, 65_535, 65_536, 69_999, 12_345];
    for &size in &checkpoints {
        let reader = TileHashReader::new(size, &store);
        check_reader_matches(&reader, &mem, size, &samples);
    }
    // Tiles for a size that never had a checkpoint are missing: an error, not a panic.
    let reader = TileHashReader::new(299, &store);
    assert!(matches!(
        tree_root(&reader, 299),
        Err(stele_tlog::ProofError::Reader(TileHashError::Reader(_)))
    ));
    // Subtrees beyond the tree are refused without reading.
    let reader = TileHashReader::new(300, &store);
    assert!(matches!(
        reader.subtree_hash(0, 300),
        Err(TileHashError::NotInTree { .. })
    ));
    assert!(matches!(
        reader.subtree_hash(9, 0),
        Err(TileHashError::NotInTree { .. })
    ));
    assert!(matches!(
        reader.subtree_hash(200, 0),
        Err(TileHashError::NotInTree { .. })
    ));
    assert!(matches!(
        reader.subtree_hash(1, u64::MAX),
        Err(TileHashError::NotInTree { .. })
    ));
}

#[test]
fn corrupt_tiles_are_reported() {
    let l = leaves(300);
    let mem = MemoryTree::from_leaves(&l).unwrap();
    let mut store = Store::default();
    for tile in tiles_for_size(300) {
        let mut bytes = tile_bytes(&mem, &tile).unwrap();
        if !tile.is_full() {
            bytes.pop();
        }
        store.tiles.insert(tile, bytes);
    }
    let reader = TileHashReader::new(300, &store);
    assert!(matches!(
        reader.subtree_hash(0, 299),
        Err(TileHashError::BadTile { .. })
    ));
    assert!(reader.subtree_hash(8, 0).is_err());
    assert!(reader.subtree_hash(0, 10).is_ok());
    assert!(matches!(
        tile_bytes(&mem, &t(8, 0, 1)),
        Err(TileHashError::TileOutOfRange { .. })
    ));
    assert!(tile_bytes(&mem, &t(0, 0, 0)).is_err());
    assert!(tile_bytes(&mem, &t(0, u64::MAX, 1)).is_err());
}

fn level2_leaves() -> &'static (Vec<Hash>, MemoryTree) {
    static L: OnceLock<(Vec<Hash>, MemoryTree)> = OnceLock::new();
    L.get_or_init(|| {
        let l = leaves(65_536 * 2 + 300);
        let m = MemoryTree::from_leaves(&l).unwrap();
        (l, m)
    })
}

#[test]
fn level_two_partial_tiles() {
    let (l, mem) = level2_leaves();
    let size = l.len() as u64;
    let mut store = Store::default();
    for tile in tiles_for_size(size) {
        store.tiles.insert(tile, tile_bytes(mem, &tile).unwrap());
    }
    assert!(store.tiles.contains_key(&t(2, 0, 2)));
    assert!(store.tiles.contains_key(&t(1, 2, 1)));
    let reader = TileHashReader::new(size, &store);
    check_reader_matches(
        &reader,
        mem,
        size,
        &[0, 1, 65_535, 65_536, 131_071, 131_072, size - 1, 99_999],
    );
    // A subtree at level 17 (two level-2 tile hashes) comes from the level-2 tile.
    assert_eq!(
        reader.subtree_hash(17, 0).unwrap(),
        mem.subtree_hash(17, 0).unwrap()
    );
    assert_eq!(
        reader.subtree_hash(16, 1).unwrap(),
        mem.subtree_hash(16, 1).unwrap()
    );
    // A level-8 subtree read is one tile read, not 256 leaf reads.
    store.reads.set(0);
    let _ = reader.subtree_hash(8, 300).unwrap();
    assert_eq!(store.reads.get(), 1);
}
