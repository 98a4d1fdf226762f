//! Writing an evidence bundle (`stele-bundle`, `docs/formats/bundle.md`)
//! of selected entries from a [`LogReader`]: the entries, read and checked
//! against their commitments by [`LogReader::get`]; for a purged entry,
//! its commitment from the index and the `retention.purge` event that
//! records its purge (the first time the bundle needs it); the multi-proof
//! from the log's tiles at the latest published checkpoint; and the
//! manifest signed with the log's key.
//!
//! It selects nothing itself: the caller (an export by stream and range, a
//! search) gives the indices in ascending order, authorizes the read and
//! records it. Memory is bounded whatever the number of entries: one
//! entry, the writer's state (`stele_bundle::BundleWriter`) and the last
//! tile read on each level.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;

use stele_bundle::{BundleWriter, Consistency, ManifestFields, Summary};
use stele_store::StoreError;
use stele_tlog::tile::{TileHashReader, TileId, TileReader};

use crate::error::{LogError, LogResult};
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::tiles::DiskTiles;

/// What the caller asks of a bundle beyond its entries.
#[derive(Debug, Clone, Default)]
pub struct BundleRequest {
    /// The selection, who made it and when, as the manifest states them.
    pub fields: ManifestFields,
    /// A tree size the recipient already holds: the bundle then carries a
    /// consistency proof from it to its checkpoint.
    pub known_size: Option<u64>,
}

/// Writes the bundle of the entries `indices` (strictly ascending, all in
/// the latest published checkpoint) to `out`; returns `out` and what the
/// bundle holds. An entry beyond the checkpoint is refused (`NotFound`:
/// publish first); an entry whose purge is not yet recorded
/// (`event_index` pending) is refused as an integrity error.
pub fn write_bundle<W: Write>(
    reader: &LogReader,
    indices: impl IntoIterator<Item = EntryIndex>,
    request: &BundleRequest,
    out: W,
) -> LogResult<(W, Summary)> {
    let (size, note) = reader.latest_published();
    let consistency = match request.known_size {
        Some(old) => Some(Consistency {
            old_size: old,
            proof: reader.consistency_proof(old, Some(size))?,
        }),
        None => None,
    };
    let signer = reader.signer()?;
    let tiles = LastTiles::new(DiskTiles::new(&reader.layout().public()));
    let tree = TileHashReader::new(size, &tiles);
    let mut writer = BundleWriter::new(out, &tree, &note, consistency.as_ref())?;
    let mut recorded: BTreeSet<u64> = BTreeSet::new();
    for EntryIndex(index) in indices {
        if index >= size {
            return Err(LogError::NotFound(format!(
                "entry {index} is not in the latest published checkpoint (size {size}); publish first"
            )));
        }
        match reader.get(EntryIndex(index)) {
            Ok(stored) => writer.add_event(index, &stored.salt, &stored.canonical)?,
            Err(LogError::Purged { tombstone, .. }) => {
                let record = tombstone.event_index.ok_or_else(|| {
                    LogError::Integrity(format!(
                        "entry {index} was purged, but the retention.purge event of segment {} is not yet recorded",
                        tombstone.segment
                    ))
                })?;
                if recorded.insert(record) {
                    let event = reader.get(EntryIndex(record))?;
                    writer.add_purge_record(record, &event.salt, &event.canonical)?;
                }
                let commitment = reader.index().read(index)?.commitment;
                writer.add_purged(index, &commitment, record)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(writer.finish(&request.fields, &signer)?)
}

/// A tile reader keeping the last tile read on each level: consecutive
/// entries read their gaps from the same tiles, so each tile file is read
/// about once per bundle instead of once per hash.
struct LastTiles {
    tiles: DiskTiles,
    /// By tile level: the last tile read and its bytes.
    last: RefCell<Vec<Option<LastTile>>>,
}

type LastTile = (TileId, Vec<u8>);

impl LastTiles {
    fn new(tiles: DiskTiles) -> LastTiles {
        LastTiles {
            tiles,
            last: RefCell::new(Vec::new()),
        }
    }
}

impl TileReader for LastTiles {
    type Error = StoreError;

    fn read_tile(&self, tile: &TileId) -> Result<Vec<u8>, StoreError> {
        let level = usize::from(tile.level);
        if let Some(Some((id, bytes))) = self.last.borrow().get(level)
            && id == tile
        {
            return Ok(bytes.clone());
        }
        let bytes = self.tiles.read_tile(tile)?;
        let mut last = self.last.borrow_mut();
        if last.len() <= level {
            last.resize(level + 1, None);
        }
        last[level] = Some((*tile, bytes.clone()));
        Ok(bytes)
    }
}
