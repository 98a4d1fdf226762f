//! The publisher thread: writes full tiles as they complete and publishes
//! checkpoints, so neither file creation nor `syncfs` ever blocks an append.
//!
//! Messages are handled strictly in order. A publish of size N is sent only
//! after every tile of the first N entries was sent and after those entries
//! are durable in the index, so by the time the thread signs N, everything
//! N covers is on disk. Publishing, in this thread (each step's crash story):
//! 1. write the partial tiles of N by rename (never torn in place);
//! 2. `syncfs`: every tile written so far is durable. Crash before: nothing
//!    was signed; recovery rewrites tiles from the index;
//! 3. sign, append to the checkpoint history, fdatasync. This is the
//!    publication point; a crash before it loses nothing (the next open
//!    signs again);
//! 4. replace `log/checkpoint` (recovery redoes it from the history), then
//!    the anchor outside the data directory, if there is one (`anchor.rs`;
//!    a crash before leaves it one checkpoint behind, which the log still
//!    extends, and the next open or publish brings it up to date);
//! 5. replace the segment snapshot (an older one stays correct);
//! 6. prune the partial tiles of every tile that became full before this
//!    publish: that full tile is now durable, and a partial tile is exactly
//!    its prefix, which readers fall back to (`tiles::read_public_tile`).
//!    A crash while pruning leaves some partial tiles behind, harmlessly.
//!
//! After any error the thread records it and does nothing more; the `Log`
//! reports it as poisoned.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use stele_store::fsutil;
use stele_store::history::{HistoryIndex, HistoryWriter};
use stele_store::state::{self, SegmentSnapshot};
use stele_tlog::{Checkpoint, Hash, Signer};

use crate::anchor::Anchor;
use crate::error::{LogError, LogResult};
use crate::layout::Layout;
use crate::tiles::TileSink;

/// What has been published, shared between the `Log` and the thread.
#[derive(Debug, Clone)]
pub(crate) struct PublishState {
    /// Size and note of the latest published checkpoint.
    pub size: u64,
    pub note: String,
    /// Where every published checkpoint is in the history file (the
    /// records themselves stay on disk).
    pub history: HistoryIndex,
    /// Largest size a publish was requested for.
    pub requested: u64,
    /// When this process last published (none before its first publish).
    pub published_at: Option<std::time::Instant>,
    /// The first failure of the thread; nothing is written after it.
    pub error: Option<String>,
}

/// One publish request: the tree head and what the thread writes for it.
pub(crate) struct PublishJob {
    pub size: u64,
    pub root: Hash,
    pub partial_tiles: Vec<(String, Vec<u8>)>,
    pub snapshot: SegmentSnapshot,
}

enum Message {
    Tile(PathBuf, Vec<u8>),
    Publish(PublishJob, Option<SyncSender<LogResult<String>>>),
}

/// Tiles and publishes that may wait for the thread (tiles are 8 KiB).
const QUEUE: usize = 1024;

/// Handle to the publisher thread.
pub(crate) struct Publisher {
    public: PathBuf,
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    state: Arc<Mutex<PublishState>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("public", &self.public)
            .finish()
    }
}

struct Worker {
    layout: Layout,
    origin: String,
    signer: Signer,
    history: HistoryWriter,
    /// Where a copy of each published checkpoint goes, if anywhere.
    anchor: Option<Anchor>,
    state: Arc<Mutex<PublishState>>,
    /// `<tile>.p` directories of tiles written full since the last publish.
    superseded: Vec<PathBuf>,
}

pub(crate) fn lock(state: &Mutex<PublishState>) -> MutexGuard<'_, PublishState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    pub fn start(
        layout: &Layout,
        origin: &str,
        signer: Signer,
        history: HistoryWriter,
        anchor: Option<Anchor>,
        mut initial: PublishState,
    ) -> Publisher {
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
        // The anchor catches up with the latest checkpoint (or is written
        // the first time), which the open has just checked it against,
        // before the open returns: once a log is open, its anchor exists.
        // A failure poisons the publisher, as a failed publish does.
        if let Some(anchor) = &anchor
            && let Err(e) = anchor.keep(initial.note.as_bytes())
        {
            initial.error = Some(format!("writing the anchor failed: {e}"));
        }
        let state = Arc::new(Mutex::new(initial));
        let worker = Worker {
            layout: layout.clone(),
            origin: origin.to_string(),
            signer,
            history,
            anchor,
            state: state.clone(),
            superseded: Vec::new(),
        };
        let thread = std::thread::spawn(move || worker.run(rx));
        Publisher {
            public: layout.public(),
            tx: Some(tx),
            thread: Some(thread),
            state,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, PublishState> {
        lock(&self.state)
    }

    /// The state itself, for readers that outlive a borrow of the log.
    pub fn shared_state(&self) -> Arc<Mutex<PublishState>> {
        self.state.clone()
    }

    /// The thread's failure, if any.
    pub fn check(&self) -> LogResult<()> {
        match &self.state().error {
            Some(e) => Err(LogError::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    fn send(&self, message: Message) -> LogResult<()> {
        let stopped = || LogError::Poisoned("the publisher thread has stopped".into());
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(message)
            .map_err(|_| stopped())
    }

    /// Queues a publish and returns at once.
    pub fn publish_later(&self, job: PublishJob) -> LogResult<()> {
        self.check()?;
        self.state().requested = job.size;
        self.send(Message::Publish(job, None))
    }

    /// Queues a publish and waits for its note.
    pub fn publish_now(&self, job: PublishJob) -> LogResult<String> {
        self.check()?;
        self.state().requested = job.size;
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Message::Publish(job, Some(done)))?;
        wait.recv()
            .map_err(|_| LogError::Poisoned("the publisher thread has stopped".into()))?
    }
}

impl TileSink for &Publisher {
    fn full(&mut self, path: String, bytes: Vec<u8>) -> LogResult<()> {
        self.check()?;
        self.send(Message::Tile(self.public.join(path), bytes))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has drained the queue.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Message>) {
        for message in rx {
            let failed = lock(&self.state).error.clone();
            match message {
                Message::Tile(path, bytes) => {
                    if failed.is_none() {
                        match fsutil::write_file_unsynced(&path, &bytes) {
                            Ok(()) => {
                                let mut partials = path.into_os_string();
                                partials.push(".p");
                                self.superseded.push(PathBuf::from(partials));
                            }
                            Err(e) => self.fail(format!("writing a tile failed: {e}")),
                        }
                    }
                }
                Message::Publish(job, done) => {
                    let result = match failed {
                        Some(e) => Err(LogError::Poisoned(e)),
                        None => self.publish(job).inspect_err(|e| {
                            let message = e.to_string();
                            self.fail(message);
                        }),
                    };
                    if let Some(done) = done {
                        let _ = done.send(result);
                    }
                }
            }
        }
    }

    fn fail(&self, message: String) {
        lock(&self.state).error.get_or_insert(message);
    }

    fn publish(&mut self, job: PublishJob) -> LogResult<String> {
        let public = self.layout.public();
        {
            let state = lock(&self.state);
            if job.size <= state.size {
                return Ok(state.note.clone());
            }
        }
        for (path, bytes) in &job.partial_tiles {
            fsutil::replace_file_unsynced(&public.join(path), bytes)?;
        }
        fsutil::sync_filesystem(&public)?;
        let checkpoint = Checkpoint::new(self.origin.clone(), job.size, job.root);
        let note = stele_tlog::sign_note(&checkpoint.to_body(), &[&self.signer])
            .map_err(|e| LogError::Internal(e.to_string()))?;
        let appended = self.history.append(job.size, note.as_bytes())?;
        // The history append is the publication point: readers of the
        // history see the checkpoint from here, before `log/checkpoint`
        // (which a client may read first, then look for in the history).
        lock(&self.state)
            .history
            .push(appended.offset, job.size, appended.len);
        fsutil::atomic_replace(&self.layout.checkpoint(), note.as_bytes(), 0o644)?;
        if let Some(anchor) = &self.anchor {
            anchor.keep(note.as_bytes())?;
        }
        // Only now is the checkpoint published as far as this process tells
        // anyone: a `Log::publish` that finds this size already published
        // returns at once, and `log/checkpoint` must then already hold it.
        {
            let mut state = lock(&self.state);
            state.size = job.size;
            state.note = note.clone();
            state.published_at = Some(std::time::Instant::now());
        }
        state::write_snapshot(&self.layout.snapshot(), &job.snapshot)?;
        // Pruning is housekeeping: a failure only leaves files behind, so
        // it never poisons the log.
        for directory in self.superseded.drain(..) {
            let _ = stele_store::fileio::remove_dir_all(&directory);
        }
        Ok(note)
    }
}
