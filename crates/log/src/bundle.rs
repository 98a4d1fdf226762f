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
use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use stele_bundle::{BundleWriter, Consistency, ManifestFields, Summary};
use stele_store::StoreError;
use stele_tlog::tile::{TileHashError, TileHashReader, TileId, TileReader};
use stele_tlog::{Hash, HashReader, Signer};

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
/// bundle holds. See [`LogBundle`] for what each entry becomes.
pub fn write_bundle<W: Write>(
    reader: &LogReader,
    indices: impl IntoIterator<Item = EntryIndex>,
    request: &BundleRequest,
    out: W,
) -> LogResult<(W, Summary)> {
    let mut bundle = LogBundle::begin(reader, request.known_size, out)?;
    for index in indices {
        bundle.add(index)?;
    }
    bundle.finish(&request.fields)
}

/// Writes the bundle of every entry of `stream` in `[from, to)` (an
/// export): the entries are picked by their index records' segments, so
/// only the selected ones are read and decrypted.
pub fn write_stream_bundle<W: Write>(
    reader: &LogReader,
    stream: &str,
    (from, to): (u64, u64),
    request: &BundleRequest,
    out: W,
) -> LogResult<(W, Summary)> {
    let mut bundle = LogBundle::begin(reader, request.known_size, out)?;
    let mut in_stream: HashMap<u32, bool> = HashMap::new();
    let mut start = from;
    while start < to {
        let count = (to - start).min(4096);
        for (offset, record) in reader.index().read_range(start, count)?.iter().enumerate() {
            let wanted = *in_stream.entry(record.segment_id).or_insert_with(|| {
                reader.segment_stream(record.segment_id).as_deref() == Some(stream)
            });
            if wanted {
                bundle.add(EntryIndex(start + offset as u64))?;
            }
        }
        start += count;
    }
    bundle.finish(&request.fields)
}

/// A bundle being written from a log, one entry at a time in ascending
/// index order: an event readable through [`LogReader::get`] is added with
/// its salt and canonical bytes; a purged one by its commitment (from the
/// index), after the `retention.purge` event that records its purge the
/// first time the bundle needs it. Every entry must be in the latest
/// published checkpoint when [`LogBundle::begin`] ran (`NotFound`
/// otherwise: publish first); a purge whose event is not yet recorded
/// (`event_index` pending) is an integrity error.
pub struct LogBundle<'r, W: Write> {
    reader: &'r LogReader,
    writer: BundleWriter<W, LogTree>,
    signer: Signer,
    size: u64,
    recorded: BTreeSet<u64>,
}

impl<W: Write> std::fmt::Debug for LogBundle<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBundle")
            .field("size", &self.size)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl<'r, W: Write> LogBundle<'r, W> {
    /// Starts a bundle against the latest published checkpoint, with a
    /// consistency proof from `known_size` when given; loads the signing
    /// key first, so nothing is written when it cannot be.
    pub fn begin(
        reader: &'r LogReader,
        known_size: Option<u64>,
        out: W,
    ) -> LogResult<LogBundle<'r, W>> {
        let signer = reader.signer()?;
        let (size, note) = reader.latest_published();
        let consistency = match known_size {
            Some(old) => Some(Consistency {
                old_size: old,
                proof: reader.consistency_proof(old, Some(size))?,
            }),
            None => None,
        };
        let tree = LogTree {
            size,
            tiles: LastTiles::new(DiskTiles::new(&reader.layout().public())),
        };
        let writer = BundleWriter::new(out, tree, &note, consistency.as_ref())?;
        Ok(LogBundle {
            reader,
            writer,
            signer,
            size,
            recorded: BTreeSet::new(),
        })
    }

    /// The tree size every entry is proven at.
    pub fn checkpoint_size(&self) -> u64 {
        self.size
    }

    /// Adds entry `index` (after every entry added before).
    pub fn add(&mut self, index: EntryIndex) -> LogResult<()> {
        let EntryIndex(index) = index;
        let size = self.size;
        if index >= size {
            return Err(LogError::NotFound(format!(
                "entry {index} is not in the latest published checkpoint (size {size}); publish first"
            )));
        }
        match self.reader.get(EntryIndex(index)) {
            Ok(stored) => Ok(self
                .writer
                .add_event(index, &stored.salt, &stored.canonical)?),
            Err(LogError::Purged { tombstone, .. }) => {
                let record = tombstone.event_index.ok_or_else(|| {
                    LogError::Integrity(format!(
                        "entry {index} was purged, but the retention.purge event of segment {} is not yet recorded",
                        tombstone.segment
                    ))
                })?;
                if self.recorded.insert(record) {
                    let event = self.reader.get(EntryIndex(record))?;
                    self.writer
                        .add_purge_record(record, &event.salt, &event.canonical)?;
                }
                let commitment = self.reader.index().read(index)?.commitment;
                Ok(self.writer.add_purged(index, &commitment, record)?)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds an event already read (and checked against its commitment) by
    /// [`LogReader::get`], after every entry added before: a search's
    /// page, not read twice.
    pub fn add_read(&mut self, event: &crate::StoredEvent) -> LogResult<()> {
        let index = event.index.0;
        if index >= self.size {
            return Err(LogError::NotFound(format!(
                "entry {index} is not in the latest published checkpoint (size {}); publish first",
                self.size
            )));
        }
        Ok(self
            .writer
            .add_event(index, &event.salt, &event.canonical)?)
    }

    /// Writes the end of the multi-proof and the manifest, signed with the
    /// log's key; returns the output and what the bundle holds.
    pub fn finish(self, fields: &ManifestFields) -> LogResult<(W, Summary)> {
        Ok(self.writer.finish(fields, &self.signer)?)
    }
}

/// The log's tree at the bundle's checkpoint size, read from its tiles.
struct LogTree {
    size: u64,
    tiles: LastTiles,
}

impl HashReader for LogTree {
    type Error = TileHashError<StoreError>;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        TileHashReader::new(self.size, &self.tiles).subtree_hash(level, index)
    }
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
