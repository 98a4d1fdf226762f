//! Step 1 of an append: each entry's salt and commitment, and its sealed
//! bytes staged in its segment.
//!
//! The salt of an entry is derived from its segment's record key and its
//! entry number (`SaltKey::salt`), so it is known only once the entry is
//! numbered and placed: the commitment, SHA-256 over the salt and the
//! canonical envelope (kept from preparation), is computed here. In a
//! segment of version 3 or 4 the entries of one append are gathered into
//! blocks of about [`BlockConfig::target_plain`] bytes (256 KiB unless the
//! log was opened with another), each compressed and sealed at once;
//! blocks are sealed on every core when there are several, then staged in
//! order. In a segment of version 4 the first block of at least 64 KiB
//! becomes the segment's *reference* once staged: the blocks of later
//! appends hold about [`BlockConfig::referenced_plain`] bytes (32 KiB) and
//! are compressed against it. A reference is kept in memory only: the
//! writer opened again begins another (the blocks say which they use). Segments of earlier versions (begun by an earlier build, and
//! still appended to for the rest of their day) get one record per entry,
//! salt stored, as those builds wrote them.
//!
//! Nothing here touches a file: staged bytes are written by step 2a.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use stele_store::block::{BlockConfig, Packer, Reference};
use stele_store::segment::{self, RecordLocation};

use super::ActiveSegment;
use crate::error::{LogError, LogResult};
use crate::prepare::PreparedEvent;

/// An entry numbered and placed: its number, its event, and the active
/// segment (position in the writer's list) it goes into.
pub(crate) struct Placed<'a> {
    pub index: u64,
    pub event: &'a PreparedEvent,
    pub slot: usize,
}

/// What sealing gave an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealed {
    pub salt: [u8; 32],
    /// SHA-256("stele/event/v1\n" ‖ salt ‖ canonical envelope).
    pub commitment: [u8; 32],
    /// The record, or block, holding it.
    pub location: RecordLocation,
}

/// Below this many plaintext bytes in an append, its blocks are sealed on
/// the calling thread alone (starting threads would cost more).
const PARALLEL_MIN_PLAIN: usize = 32 * 1024;

/// The entries of one block: their positions in the append.
struct BlockJob {
    slot: usize,
    positions: Vec<usize>,
    plain: usize,
    /// The segment's reference, when the block is compressed against it.
    reference: Option<Arc<Reference>>,
}

/// A block sealed: its frame, and each entry's salt and commitment.
struct SealedBlock {
    frame: Vec<u8>,
    entries: Vec<([u8; 32], [u8; 32])>,
}

/// Seals blocks, one zstd context per core.
#[derive(Debug)]
pub(crate) struct Sealer {
    packers: Vec<Packer>,
    config: BlockConfig,
}

impl Sealer {
    pub(crate) fn new(config: BlockConfig) -> LogResult<Sealer> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16);
        let packers = (0..cores)
            .map(|_| Packer::new(config.level()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sealer { packers, config })
    }

    /// Seals and stages every entry of `placed` (numbers rising) into its
    /// active segment, for writer `generation`; returns what each got, in
    /// the order of `placed`.
    pub(crate) fn seal(
        &mut self,
        active: &mut [ActiveSegment],
        generation: u32,
        placed: &[Placed<'_>],
    ) -> LogResult<Vec<Sealed>> {
        let mut out: Vec<Option<Sealed>> = vec![None; placed.len()];
        let mut jobs: Vec<BlockJob> = Vec::new();
        // Per segment, the block being filled.
        let mut filling: HashMap<usize, usize> = HashMap::new();
        for (position, entry) in placed.iter().enumerate() {
            let segment = &mut active[entry.slot];
            if !segment::holds_blocks(segment.writer.header().version) {
                out[position] = Some(seal_record(segment, generation, entry)?);
                continue;
            }
            let len = BlockConfig::entry_plain(entry.event.stored().len());
            let job = match filling.get(&entry.slot) {
                Some(&job)
                    if self.config.has_room(
                        jobs[job].reference.is_some(),
                        jobs[job].plain,
                        jobs[job].positions.len(),
                        len,
                    ) =>
                {
                    job
                }
                _ => {
                    let reference = segment
                        .reference
                        .clone()
                        .filter(|_| self.config.referenced_plain() != 0);
                    jobs.push(BlockJob {
                        slot: entry.slot,
                        positions: Vec::new(),
                        plain: 0,
                        reference,
                    });
                    filling.insert(entry.slot, jobs.len() - 1);
                    jobs.len() - 1
                }
            };
            jobs[job].positions.push(position);
            jobs[job].plain += len;
        }
        let sealed = self.seal_blocks(active, generation, placed, &jobs)?;
        // Blocks of one segment are staged in the order they were begun:
        // their entries' numbers rise through the file.
        for (job, block) in jobs.iter().zip(sealed) {
            let segment = &mut active[job.slot];
            let location = segment.writer.stage_frame(&block.frame)?;
            for (position, (salt, commitment)) in job.positions.iter().zip(block.entries) {
                out[*position] = Some(Sealed {
                    salt,
                    commitment,
                    location,
                });
            }
            // The first large block staged in a segment of version 4 is
            // its reference from the next append on. Crash story: blocks
            // against it have later entry numbers, so whatever keeps them
            // keeps it (recovery cuts the log at the first entry lost);
            // an append that fails poisons the writer, reference and all.
            if segment.reference.is_none()
                && segment.writer.header().version == segment::VERSION
                && self.config.makes_reference(job.plain)
            {
                segment.reference = Some(Arc::new(Reference::new(
                    location.offset,
                    &bodies(placed, &job.positions),
                    self.config.level(),
                )?));
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| LogError::Internal("an entry was not sealed".into())))
            .collect()
    }

    /// Seals every block and computes its entries' salts and commitments,
    /// on as many threads as there are cores when the append is large
    /// enough (the calling thread being one of them). Compressing a block
    /// needs no commitment, so even an append of one block keeps two
    /// cores busy: one compresses while the other hashes.
    fn seal_blocks(
        &mut self,
        active: &[ActiveSegment],
        generation: u32,
        placed: &[Placed<'_>],
        jobs: &[BlockJob],
    ) -> LogResult<Vec<SealedBlock>> {
        let mut tasks: Vec<Task> = (0..jobs.len()).map(Task::Seal).collect();
        for (j, job) in jobs.iter().enumerate() {
            for start in (0..job.positions.len()).step_by(HASH_PIECE) {
                tasks.push(Task::Hash(
                    j,
                    start..(start + HASH_PIECE).min(job.positions.len()),
                ));
            }
        }
        let results: Vec<Mutex<Option<LogResult<Done>>>> =
            tasks.iter().map(|_| Mutex::new(None)).collect();
        let run = |packer: &mut Packer, task: &Task| match task {
            Task::Seal(j) => {
                let job = &jobs[*j];
                seal_block(packer, &active[job.slot], generation, placed, job).map(Done::Frame)
            }
            Task::Hash(j, range) => {
                let job = &jobs[*j];
                Ok(Done::Entries(hash_entries(
                    &active[job.slot],
                    placed,
                    &job.positions[range.clone()],
                )))
            }
        };
        let plain: usize = jobs.iter().map(|j| j.plain).sum();
        let workers = self.packers.len().min(tasks.len());
        if workers <= 1 || plain < PARALLEL_MIN_PLAIN {
            let packer = self
                .packers
                .first_mut()
                .ok_or_else(|| LogError::Internal("no zstd context".into()))?;
            for (task, result) in tasks.iter().zip(&results) {
                *result.lock().unwrap_or_else(|p| p.into_inner()) = Some(run(packer, task));
            }
        } else {
            let next = AtomicUsize::new(0);
            let work = |packer: &mut Packer| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else { break };
                    let done = run(packer, task);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(done);
                }
            };
            std::thread::scope(|scope| {
                let (mine, others) = self.packers[..workers].split_at_mut(1);
                for packer in others {
                    scope.spawn(|| work(packer));
                }
                work(&mut mine[0]);
            });
        }
        // Each block's frame, then its entries piece by piece, in order.
        let mut blocks: Vec<SealedBlock> = Vec::with_capacity(jobs.len());
        for (task, result) in tasks.iter().zip(results) {
            let done = result
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(LogError::Internal("a block was not sealed".into())))?;
            match (task, done) {
                (Task::Seal(_), Done::Frame(frame)) => blocks.push(SealedBlock {
                    frame,
                    entries: Vec::new(),
                }),
                (Task::Hash(j, _), Done::Entries(entries)) => {
                    blocks[*j].entries.extend(entries);
                }
                _ => return Err(LogError::Internal("a sealing task went astray".into())),
            }
        }
        Ok(blocks)
    }
}

/// Entries whose salts and commitments one task computes.
const HASH_PIECE: usize = 1024;

/// One piece of sealing an append's blocks.
enum Task {
    /// Compress and seal block `j`.
    Seal(usize),
    /// The salts and commitments of block `j`'s entries in this range.
    Hash(usize, std::ops::Range<usize>),
}

/// What a task gave.
enum Done {
    Frame(Vec<u8>),
    Entries(Vec<([u8; 32], [u8; 32])>),
}

/// The salt and commitment of `entry` in `segment`.
fn salt_and_commitment(segment: &ActiveSegment, entry: &Placed<'_>) -> ([u8; 32], [u8; 32]) {
    let salt = segment.salts.salt(entry.index);
    (
        salt,
        stele_event::commitment(&salt, entry.event.canonical()),
    )
}

/// Compresses and seals the block of `job`: its frame.
fn seal_block(
    packer: &mut Packer,
    segment: &ActiveSegment,
    generation: u32,
    placed: &[Placed<'_>],
    job: &BlockJob,
) -> LogResult<Vec<u8>> {
    let bodies = bodies(placed, &job.positions);
    let mut frame = Vec::with_capacity(job.plain / 4 + 64);
    packer.seal(
        &segment.key,
        generation,
        &bodies,
        job.reference.as_deref(),
        &mut frame,
    )?;
    Ok(frame)
}

/// The entry number and stored envelope of each entry at `positions`.
fn bodies<'a>(placed: &[Placed<'a>], positions: &[usize]) -> Vec<(u64, &'a [u8])> {
    positions
        .iter()
        .map(|position| {
            let entry = &placed[*position];
            (entry.index, entry.event.stored())
        })
        .collect()
}

/// The salt and commitment of each entry at `positions`, in order.
fn hash_entries(
    segment: &ActiveSegment,
    placed: &[Placed<'_>],
    positions: &[usize],
) -> Vec<([u8; 32], [u8; 32])> {
    positions
        .iter()
        .map(|position| salt_and_commitment(segment, &placed[*position]))
        .collect()
}

/// One record for one entry, as segments of versions 1 and 2 hold them:
/// the salt stored before the body, which is canonical in version 1.
fn seal_record(
    segment: &mut ActiveSegment,
    generation: u32,
    entry: &Placed<'_>,
) -> LogResult<Sealed> {
    let (salt, commitment) = salt_and_commitment(segment, entry);
    let body = if segment.writer.header().version == segment::VERSION_CANONICAL_ONLY {
        entry.event.canonical()
    } else {
        entry.event.stored()
    };
    let location = segment.writer.stage(
        &segment.key,
        generation,
        entry.index,
        &commitment,
        &[&salt, body],
    )?;
    Ok(Sealed {
        salt,
        commitment,
        location,
    })
}
