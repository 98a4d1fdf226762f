//! Reading the checkpoint history without holding the log.
//!
//! The history file only grows, and the publisher records a checkpoint in
//! the shared [`HistoryIndex`] only after its record is durable; so a
//! reader takes a [`Cursor`] (where to start, where the published records
//! end) under the publish state's lock, releases it, and reads the file on
//! its own.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use stele_store::history::{Cursor, HistoryReader, StoredCheckpoint};

use crate::error::LogResult;
use crate::publisher::{PublishState, lock};

/// A handle on the published checkpoints, oldest first. Cheap to clone and
/// independent of the `Log` borrow; each call sees every checkpoint
/// published before it.
#[derive(Clone)]
pub struct CheckpointHistory {
    pub(crate) path: PathBuf,
    pub(crate) state: Arc<Mutex<PublishState>>,
}

impl std::fmt::Debug for CheckpointHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointHistory")
            .field("path", &self.path)
            .finish()
    }
}

impl CheckpointHistory {
    fn reader(
        &self,
        cursor: impl FnOnce(&PublishState) -> Option<Cursor>,
    ) -> LogResult<Option<HistoryReader>> {
        let Some(cursor) = cursor(&lock(&self.state)) else {
            return Ok(None);
        };
        Ok(Some(HistoryReader::open(&self.path, cursor)?))
    }

    /// Number of published checkpoints (the empty tree's included).
    pub fn count(&self) -> u64 {
        lock(&self.state).history.count()
    }

    /// Checkpoints number `from .. from + limit`, oldest first (fewer at
    /// the end, none past it).
    pub fn page(&self, from: u64, limit: usize) -> LogResult<Vec<StoredCheckpoint>> {
        match self.reader(|state| Some(state.history.cursor(from)))? {
            Some(mut reader) => Ok(reader.take(limit)?),
            None => Ok(Vec::new()),
        }
    }

    /// The published checkpoint of tree `size`, if there is one.
    pub fn find_size(&self, size: u64) -> LogResult<Option<StoredCheckpoint>> {
        match self.reader(|state| state.history.cursor_for_size(size))? {
            Some(mut reader) => Ok(reader.find_size(size)?),
            None => Ok(None),
        }
    }

    /// Every published checkpoint, oldest first, streamed: memory stays
    /// that of one record however long the history.
    pub fn stream(&self) -> LogResult<HistoryStream> {
        let cursor = lock(&self.state).history.cursor(0);
        Ok(HistoryStream {
            reader: HistoryReader::open(&self.path, cursor)?,
        })
    }
}

/// Iterator over every checkpoint published before [`CheckpointHistory::stream`].
#[derive(Debug)]
pub struct HistoryStream {
    reader: HistoryReader,
}

impl Iterator for HistoryStream {
    type Item = LogResult<StoredCheckpoint>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next_record().map_err(Into::into).transpose()
    }
}
