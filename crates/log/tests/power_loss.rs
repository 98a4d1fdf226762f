//! Power loss at any point of the real write path, computed from a trace.
//!
//! A workload runs the real engine on real files (create, appends across
//! streams and days, publishes, a policy, a hold, a reopen, a retention
//! purge) while `stele_store::fileio` records every write, sync, rename and
//! removal below its directory, with marks for what the caller was told
//! ("entries up to n acknowledged", "published size s", "policy applied").
//! The workload also creates a token and rotates the key-encryption key.
//! For each seed, `stele_store::sim` replays the trace up to a random point
//! and draws one outcome of a power loss there (unsynced bytes dropped, torn
//! by sector or reordered; unsynced directory changes lost after some
//! point). The outcome is written to a fresh directory, and the oracle from
//! the marks before that point decides:
//!
//! - the log opens;
//! - every acknowledged entry is there with its content, and the user
//!   entries present are exactly the first m appended, in order, with m
//!   between the acknowledged and the begun counts;
//! - every published size, applied policy, placed hold and purge is kept
//!   (a purged entry never comes back readable);
//! - `verify` passes, and appends go on.
//!
//! Besides the random seeds, every mark is checked with the worst outcome
//! (nothing unsynced survives): a receipt issued before the syncs it
//! depends on completed fails there. `sync_sites_are_each_needed` proves
//! the simulator bites: it skips each sync call site in turn and requires
//! a failure. `STELE_SIM_SEEDS` sets the number of seeds (1,000 by
//! default; `scripts/power-loss.sh` runs 100,000).
//!
//! Segments hold blocks (the entries one append writes to a segment,
//! compressed and sealed at once); the events carry incompressible filler
//! so that blocks span several sectors. Beside the random outcomes,
//! `a_torn_block_a_partial_block_and_a_flipped_bit_are_told_apart` builds
//! from a traced append the outcomes that matter for blocks — a torn
//! block, an append whose index records never became durable or were cut
//! short while its blocks are whole — and a bit flipped in a compressed
//! block once acknowledged: each cut or refused as it must be.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use stele_log::EntryIndex;
use stele_log::governance::HoldSpec;
use stele_log::tokens::{Role, TokenSpec};
use stele_log::verify::{NoProgress, verify};
use stele_log::{CreateOptions, Log, LogError, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_store::fileio::{Op, Site, SyncKind, Trace};
use stele_store::keys::NewKek;
use stele_store::sim::{Disk, Image, Loss, Rng};

const DAY: i64 = 86_400;
/// 2026-01-01 in days since the epoch.
const JAN1: i64 = 20_454;

fn noon(day: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + day) * DAY + DAY / 2).unwrap()
}

const TIERS: &str = r#"
version = 1
default_stream = "ops"
[streams.ops]
retain = "90d"
[streams.compliance]
retain = "forever"
"#;

fn policy() -> Policy {
    Policy::from_source(&PolicySource {
        toml_name: "policy.toml".into(),
        toml: TIERS.into(),
        cedar_name: None,
        cedar: None,
    })
    .unwrap()
}

/// One user event the workload appended, in append order.
#[derive(Debug, Clone)]
struct Appended {
    actor: String,
    stream: &'static str,
}

/// What the caller was told, as the marks record it.
#[derive(Debug, Clone, Default)]
struct Told {
    created: bool,
    /// User entries whose receipts were returned.
    acked: usize,
    /// User entries handed to an append call.
    begun: usize,
    published: u64,
    policy: bool,
    hold: bool,
    /// A purge was asked for: `ops` entries may read as purged.
    purging: bool,
    /// The purge returned: `ops` entries must read as purged.
    purged: bool,
    /// A token was created: it must still be granted.
    token: bool,
}

impl Told {
    fn note(&mut self, mark: &str) {
        let (what, n) = mark.split_once(' ').unwrap_or((mark, "0"));
        let n: u64 = n.parse().unwrap();
        match what {
            "created" => self.created = true,
            "begun" => self.begun = n as usize,
            "acked" => self.acked = n as usize,
            "published" => self.published = n,
            "policy" => self.policy = true,
            "hold" => self.hold = true,
            "purging" => self.purging = true,
            "purged" => self.purged = true,
            "token" => self.token = true,
            "rotated" => {}
            other => panic!("unknown mark {other}"),
        }
    }
}

/// A traced run of the workload.
struct Run {
    ops: Vec<Op>,
    appended: Vec<Appended>,
}

/// A scratch directory in memory where there is one: the simulator
/// models the disk, so real fsyncs only cost time here.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn open(data: &Path) -> Result<Log, LogError> {
    let mut log = Log::open(data, OpenOptions::default())?;
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    Ok(log)
}

/// Runs the workload below `root` (empty), traced, skipping the sync at
/// `skip` if given. The shape (batch sizes, streams, days) comes from
/// `shape`.
fn workload(root: &Path, shape: u64, skip: Option<Site>) -> Run {
    let mut rng = Rng::new(shape);
    let trace = Trace::start(root, skip);
    let data = root.join("data");
    Log::create(
        &data,
        CreateOptions {
            origin: "power.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    trace.mark("created");
    let mut log = open(&data).unwrap();
    log.governance()
        .apply_policy(policy(), "admin", noon(0))
        .unwrap();
    trace.mark("policy");
    let mut appended = Vec::new();
    let batch = |log: &mut Log, appended: &mut Vec<Appended>, b: i64, rng: &mut Rng| {
        let preparer =
            Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
        // The first batch is large: its block of `ops` (over 64 KiB) is
        // the reference the blocks of that day's later batches are
        // compressed against.
        let size = if b == 0 {
            400
        } else {
            1 + rng.below(30) as usize
        };
        let day = b % 3;
        let mut events = Vec::new();
        for _ in 0..size {
            let stream = if rng.below(3) == 0 {
                "compliance"
            } else {
                "ops"
            };
            let n = appended.len() + events.len();
            let actor = format!("a{n}");
            // Incompressible, so that a batch's block in a segment spans
            // several sectors (a power loss tears blocks, not just their
            // ends).
            let pad = filler(n as u64, rng.below(600) as usize);
            let raw = format!(
                r#"{{"actor":"{actor}","action":"act","stream":"{stream}","attributes":{{"pad":"{pad}"}}}}"#
            );
            events.push((
                Appended { actor, stream },
                preparer.prepare(raw.as_bytes(), noon(day)).unwrap(),
            ));
        }
        trace.mark(format!("begun {}", appended.len() + size));
        let prepared: Vec<_> = events.iter().map(|(_, p)| p.clone()).collect();
        log.writer().append_batch(&prepared).unwrap();
        appended.extend(events.into_iter().map(|(a, _)| a));
        trace.mark(format!("acked {}", appended.len()));
    };
    let batches = 4 + rng.below(3) as i64;
    for b in 0..batches {
        batch(&mut log, &mut appended, b, &mut rng);
        if b % 2 == 1 {
            log.writer().publish().unwrap();
            trace.mark(format!("published {}", log.reader().published_size()));
        }
    }
    log.governance()
        .add_hold(
            HoldSpec {
                streams: vec!["compliance".into()],
                from: None,
                to: None,
                reason: "audit".into(),
            },
            "admin",
            noon(3),
        )
        .unwrap();
    trace.mark("hold");
    log.governance()
        .create_token(
            &TokenSpec {
                principal: "alice".into(),
                roles: vec![Role::parse("reader").unwrap()],
                expires_at: None,
                streams: None,
            },
            "admin",
            noon(3),
        )
        .unwrap();
    trace.mark("token");
    log.governance()
        .rotate_kek(NewKek::Random, noon(3).as_second())
        .unwrap();
    trace.mark("rotated");
    drop(log);
    let mut log = open(&data).unwrap();
    batch(&mut log, &mut appended, 3, &mut rng);
    log.writer().publish().unwrap();
    trace.mark(format!("published {}", log.reader().published_size()));
    trace.mark("purging");
    // The first run announces the due epochs (and, with no grace period,
    // may purge them at once); the second purges what is left.
    let mut purged = log
        .governance()
        .enforce_retention("admin", noon(200))
        .unwrap();
    purged.extend(
        log.governance()
            .enforce_retention("admin", noon(200))
            .unwrap(),
    );
    assert!(!purged.is_empty(), "the workload purges the ops epochs");
    trace.mark("purged");
    // After the purge, events of a later day (the clock does not go back).
    let preparer = Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
    let actor = format!("a{}", appended.len());
    let raw = format!(r#"{{"actor":"{actor}","action":"act","stream":"compliance"}}"#);
    let event = preparer.prepare(raw.as_bytes(), noon(201)).unwrap();
    trace.mark(format!("begun {}", appended.len() + 1));
    log.writer().append_batch(&[event]).unwrap();
    appended.push(Appended {
        actor,
        stream: "compliance",
    });
    trace.mark(format!("acked {}", appended.len()));
    log.writer().publish().unwrap();
    trace.mark(format!("published {}", log.reader().published_size()));
    drop(log);
    let ops = trace.finish();
    Run { ops, appended }
}

/// The oracle: what a log recovered from `image` must hold, given what
/// the caller had been told. `Err` says what is wrong.
fn check(image: &Image, told: &Told, appended: &[Appended]) -> Result<(), String> {
    let dir = scratch();
    image.write_to(dir.path()).unwrap();
    let data = dir.path().join("data");
    let result = check_dir(&data, told, appended);
    if result.is_err() && std::env::var_os("STELE_SIM_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("kept the crashed directory at {}", kept.display());
    }
    result
}

fn check_dir(data: &Path, told: &Told, appended: &[Appended]) -> Result<(), String> {
    if !told.created {
        // Nothing was promised yet: an open may fail, but must not panic.
        let _ = Log::open(data, OpenOptions::default());
        return Ok(());
    }
    let mut log = open(data).map_err(|e| format!("the open failed: {e}"))?;
    if log.reader().published_size() < told.published {
        return Err(format!(
            "published size {} < {} published before",
            log.reader().published_size(),
            told.published
        ));
    }
    if told.policy && log.reader().policy_versions().is_empty() {
        return Err("the applied policy is gone".into());
    }
    if told.hold && log.reader().holds().is_empty() {
        return Err("the placed hold is gone".into());
    }
    if told.token {
        let file =
            stele_log::tokens::read_token_file(data).map_err(|e| format!("the token file: {e}"))?;
        if !file.tokens.iter().any(|t| t.principal == "alice") {
            return Err("the created token is gone".into());
        }
    }
    let mut users = 0usize;
    for i in 0..log.reader().size() {
        let envelope = match log.reader().get(EntryIndex(i)) {
            Ok(stored) => stored.envelope,
            Err(LogError::Purged { .. }) => {
                let expected = appended.get(users).ok_or("an extra purged entry")?;
                if !told.purging || expected.stream != "ops" {
                    return Err(format!("entry {i} ({expected:?}) reads as purged"));
                }
                users += 1;
                continue;
            }
            Err(e) => return Err(format!("entry {i}: {e}")),
        };
        if envelope.stream == "_system" {
            continue;
        }
        let expected = appended
            .get(users)
            .ok_or_else(|| format!("entry {i} is a user entry never appended"))?;
        if envelope.event.actor != expected.actor || envelope.stream != expected.stream {
            return Err(format!(
                "entry {i} is {}/{}, expected {expected:?}",
                envelope.stream, envelope.event.actor
            ));
        }
        if told.purged && expected.stream == "ops" {
            return Err(format!("entry {i} was purged and is readable again"));
        }
        users += 1;
    }
    if users < told.acked || users > told.begun.max(told.acked) {
        return Err(format!(
            "{users} user entries; {} acknowledged, {} begun",
            told.acked, told.begun
        ));
    }
    let report = verify(log.reader(), &NoProgress).map_err(|e| format!("verify: {e}"))?;
    if !report.ok() {
        return Err(format!("verify: {:?}", report.problems));
    }
    let preparer = Preparer::new("app", "test", "ops").with_policy(log.reader().active_policy());
    let raw = r#"{"actor":"after","action":"act","stream":"compliance"}"#;
    let event = preparer.prepare(raw.as_bytes(), noon(300)).unwrap();
    log.writer()
        .append_batch(&[event])
        .map_err(|e| format!("no append after recovery: {e}"))?;
    Ok(())
}

/// Replays `run` and checks the outcomes: the worst one at every mark, and
/// `seeds` random ones at random points. Returns the first failure.
fn simulate(run: &Run, seeds: std::ops::Range<u64>, stop_at_first: bool) -> Vec<String> {
    let mut points: BTreeMap<usize, Vec<Option<u64>>> = BTreeMap::new();
    for (k, op) in run.ops.iter().enumerate() {
        if matches!(op, Op::Mark(_)) {
            // Just after the mark: what the caller was told must hold.
            points.entry(k + 1).or_default().push(None);
        }
    }
    for seed in seeds {
        let mut rng = Rng::new(seed);
        let k = rng.below(run.ops.len() as u64 + 1) as usize;
        points.entry(k).or_default().push(Some(seed));
    }
    let mut disk = Disk::new();
    let mut told = Told::default();
    let mut failures = Vec::new();
    let mut applied = 0;
    for (k, outcomes) in points {
        while applied < k {
            let op = &run.ops[applied];
            if let Op::Mark(mark) = op {
                told.note(mark);
            }
            if let Err(e) = disk.apply(op) {
                return vec![format!(
                    "the trace is not a file system at op {applied}: {e}"
                )];
            }
            applied += 1;
        }
        for seed in outcomes {
            let (image, what) = match seed {
                None => (disk.crash(Loss::Worst), "worst outcome".to_string()),
                Some(seed) => {
                    let mut rng = Rng::new(seed);
                    rng.below(1); // the draw that chose the point
                    (disk.crash(Loss::Random(&mut rng)), format!("seed {seed}"))
                }
            };
            if let Err(e) = check(&image, &told, &run.appended) {
                failures.push(format!("{what}, crash after op {k}: {e}"));
                if stop_at_first {
                    return failures;
                }
            }
        }
    }
    failures
}

fn seeds() -> u64 {
    std::env::var("STELE_SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("STELE_SIM_SEEDS is a number"))
        .unwrap_or(1000)
}

/// The trace is complete: replaying all of it gives exactly the files
/// the real directory holds. (An operation that bypassed the seam would
/// show here.)
#[test]
fn the_trace_describes_the_real_directory() {
    let root = scratch();
    let run = workload(root.path(), 1, None);
    let mut disk = Disk::new();
    for op in &run.ops {
        disk.apply(op).unwrap();
    }
    let real = Image::read_from(root.path()).unwrap();
    let differences = disk.live().differences(&real);
    assert!(differences.is_empty(), "{differences:#?}");
    assert!(run.ops.iter().any(|op| matches!(op, Op::Sync { .. })));
}

/// Every seed's power loss recovers what the caller was told, and every
/// mark holds with nothing unsynced surviving.
#[test]
fn power_loss_at_any_point_keeps_what_was_acknowledged() {
    let total = seeds();
    let shapes = 4u64;
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for shape in 0..shapes {
        let root = scratch();
        let run = workload(root.path(), shape, None);
        let per = total / shapes;
        let first = shape * per;
        failures.extend(
            simulate(&run, first..first + per, false)
                .into_iter()
                .map(|f| format!("shape {shape}: {f}")),
        );
    }
    eprintln!(
        "power loss: {total} seeds and every mark of {shapes} traces in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A sync site named by its file, the function the call is in and a piece
/// of the call's line (lines move when code around them changes; these
/// stay), its kind, and why its loss is tolerated.
type Tolerated = (
    &'static str,
    &'static str,
    &'static str,
    SyncKind,
    &'static str,
);

/// Whether `site` is the call `(file, function, fragment)` names.
fn is_site(site: &Site, file: &str, function: &str, fragment: &str) -> bool {
    site.file == file && enclosing_fn(site) == function && site_line(site).contains(fragment)
}

/// Sync sites whose loss the log tolerates by design: each protects a
/// file that the next open rebuilds from the log or the checkpoint
/// history when it holds the previous (complete) version, so losing the
/// directory entry of its latest replacement loses nothing. (The file's
/// own fsync before its rename stays needed: a torn cache is refused as
/// tampering.)
const TOLERATED: &[Tolerated] = &[
    (
        "crates/log/src/engine.rs",
        "create",
        "layout.checkpoint()",
        SyncKind::Dir,
        "log/checkpoint is restored from the checkpoint history at open",
    ),
    (
        "crates/log/src/governance.rs",
        "apply_policy",
        "create_dir_durable(&self.policies_dir())",
        SyncKind::Dir,
        "policies/ is created again and its files rebuilt from policy.applied events",
    ),
    (
        "crates/log/src/governance.rs",
        "write_holds",
        "atomic_replace(&self.holds_path()",
        SyncKind::Dir,
        "holds.json is rebuilt from hold events at open",
    ),
    (
        "crates/log/src/governance.rs",
        "remove_durably",
        "fsync_dir(parent)",
        SyncKind::Dir,
        "a removed cache file that comes back is checked against the log at open",
    ),
    (
        "crates/log/src/governance.rs",
        "write_policy_file",
        "atomic_replace(&dir.join(",
        SyncKind::Dir,
        "policies/NNNNNN.json is rebuilt from its policy.applied event at open",
    ),
    (
        "crates/log/src/publisher.rs",
        "publish",
        "atomic_replace(&self.layout.checkpoint()",
        SyncKind::Dir,
        "log/checkpoint is restored from the checkpoint history at open",
    ),
    (
        "crates/log/src/rotate.rs",
        "roll_forward",
        "fsync_dir(&layout.keys())",
        SyncKind::Dir,
        "a lost kek.info.next rename is repeated by the next open (the rotation's last step)",
    ),
    (
        "crates/store/src/state.rs",
        "write_snapshot",
        "atomic_replace(path, &frame(SNAP_MAGIC",
        SyncKind::File,
        "segments.state is a hint: an older or missing one only makes recovery scan more",
    ),
    (
        "crates/store/src/state.rs",
        "write_snapshot",
        "atomic_replace(path, &frame(SNAP_MAGIC",
        SyncKind::Dir,
        "segments.state is a hint: an older or missing one only makes recovery scan more",
    ),
];

/// The lines of the source file of `site`.
fn source_lines(site: &Site) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(site.file);
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    source.lines().map(str::to_owned).collect()
}

/// The source line of `site`.
fn site_line(site: &Site) -> String {
    source_lines(site)
        .get((site.line as usize).saturating_sub(1))
        .cloned()
        .unwrap_or_default()
}

/// The name of the function whose source holds `site`'s line: the
/// nearest `fn NAME` at or above it.
fn enclosing_fn(site: &Site) -> String {
    let lines = source_lines(site);
    let upto = (site.line as usize).min(lines.len());
    lines[..upto]
        .iter()
        .rev()
        .find_map(|line| {
            let rest = &line[line.find("fn ")? + 3..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_default()
}

/// Whether every skipped sync at `site` in `ops` is followed, before the next mark
/// (the next thing the caller is told), by another sync that makes the
/// same thing durable: skipping it cannot lose anything promised.
fn covered_later(ops: &[Op], site: &Site) -> bool {
    ops.iter().enumerate().all(|(p, op)| {
        let Op::Skipped { path, site: s } = op else {
            return true;
        };
        if s != site {
            return true;
        }
        ops[p + 1..]
            .iter()
            .take_while(|later| !matches!(later, Op::Mark(_)))
            .any(|later| match later {
                Op::Sync { path: q, site: t } => {
                    t.kind == SyncKind::FileSystem
                        || (q == path
                            && (t.kind == SyncKind::Dir) == (site.kind == SyncKind::Dir)
                            && !(site.kind == SyncKind::File && t.kind == SyncKind::Data))
                }
                _ => false,
            })
    })
}

/// Whether every skipped sync at `site` in `ops` would have found nothing to make durable:
/// since the previous sync of the same file or directory (or a `syncfs`),
/// nothing was written to that file, or created, renamed or removed in
/// that directory.
fn nothing_to_sync(ops: &[Op], site: &Site) -> bool {
    ops.iter().enumerate().all(|(p, op)| {
        let Op::Skipped { path, site: s } = op else {
            return true;
        };
        if s != site {
            return true;
        }
        let in_dir = |q: &Path| q.parent() == Some(path.as_path());
        for earlier in ops[..p].iter().rev() {
            let changed = match earlier {
                Op::Sync { site: t, .. } if t.kind == SyncKind::FileSystem => return true,
                Op::Sync { path: q, site: t } if q == path => {
                    if (t.kind == SyncKind::Dir) == (site.kind == SyncKind::Dir) {
                        return true;
                    }
                    false
                }
                Op::Write { path: q, .. } | Op::SetLen { path: q, .. } => {
                    site.kind != SyncKind::Dir && q == path
                }
                Op::Open {
                    path: q,
                    created,
                    truncated,
                } => {
                    if site.kind == SyncKind::Dir {
                        *created && in_dir(q)
                    } else {
                        q == path && *truncated
                    }
                }
                Op::Rename { from, to } => {
                    site.kind == SyncKind::Dir && (in_dir(from) || in_dir(to))
                }
                Op::Remove { path: q } | Op::RemoveTree { path: q } | Op::Mkdir { path: q } => {
                    site.kind == SyncKind::Dir && in_dir(q)
                }
                _ => false,
            };
            if changed {
                return false;
            }
        }
        true
    })
}

/// The simulator bites: with any one sync call site skipped (it returns
/// success without syncing), some outcome loses what was acknowledged —
/// unless a later sync of the same file or directory comes before the
/// caller is told anything, or the site is one the log tolerates by
/// design ([`TOLERATED`]). Prints the table (site → what caught it).
#[test]
fn sync_sites_are_each_needed() {
    let root = scratch();
    let baseline = workload(root.path(), 7, None);
    let mut sites: Vec<Site> = baseline
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Sync { site, .. } => Some(*site),
            _ => None,
        })
        .collect();
    sites.sort();
    sites.dedup();
    let mut table = Vec::new();
    let mut missed = Vec::new();
    for site in &sites {
        let root = scratch();
        let run = workload(root.path(), 7, Some(*site));
        let failures = simulate(&run, 0..200, true);
        let tolerated = TOLERATED
            .iter()
            .find(|(file, function, fragment, kind, _)| {
                *kind == site.kind && is_site(site, file, function, fragment)
            });
        let row = match (failures.first(), tolerated) {
            (Some(failure), None) => format!("caught: {failure}"),
            (Some(failure), Some(_)) => {
                missed.push(format!(
                    "{site} is listed as tolerated but loses data: {failure}"
                ));
                continue;
            }
            (None, _) if covered_later(&run.ops, site) => {
                "not needed: a later sync of the same file or directory comes first".to_string()
            }
            (None, _) if nothing_to_sync(&run.ops, site) => {
                "not needed: nothing changed since the previous sync of the same thing".to_string()
            }
            (None, Some((_, _, _, _, why))) => format!("tolerated: {why}"),
            (None, None) => {
                missed.push(format!("{site}: skipping it went unnoticed"));
                continue;
            }
        };
        table.push(format!("{site} ({}) | {row}", enclosing_fn(site)));
    }
    for (file, function, fragment, kind, _) in TOLERATED {
        assert!(
            sites
                .iter()
                .any(|s| s.kind == *kind && is_site(s, file, function, fragment)),
            "{file} {function} {fragment:?} is listed as tolerated but is no sync site of the workload"
        );
    }
    eprintln!("sync site | with it skipped");
    for row in &table {
        eprintln!("{row}");
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

/// `len` hex digits drawn from a generator seeded by `seed`: filler that
/// compression cannot shrink to nothing, so that a block spans several
/// sectors (hex compresses to about half).
fn filler(seed: u64, len: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        out.push_str(&format!("{:016x}", rng.next_u64()));
    }
    out.truncate(len);
    out
}

/// The files of a traced directory as a power loss may leave them between
/// two marks of one append: each file holds, sector by sector, its bytes
/// as of the first mark (`old`) or as of the second (`new`).
struct Between {
    old: Image,
    new: Image,
    /// Entries of the batch acknowledged before the append, and of the
    /// append.
    acked: u64,
    appended: u64,
}

impl Between {
    /// `new`, except that the sectors of `path` for which `keep_old` holds
    /// (numbered from the file's start) are as in `old` (zeros where it
    /// had not reached): what a power loss leaves when those sectors never
    /// reached the disk.
    fn mixed(&self, path: &Path, keep_old: impl Fn(usize) -> bool) -> Image {
        const SECTOR: usize = stele_store::sim::SECTOR;
        let mut image = self.new.clone();
        let old = self.old.files.get(path).cloned().unwrap_or_default();
        let bytes = image.files.get_mut(path).unwrap();
        for (s, sector) in bytes.chunks_mut(SECTOR).enumerate() {
            if keep_old(s) {
                for (k, byte) in sector.iter_mut().enumerate() {
                    *byte = old.get(s * SECTOR + k).copied().unwrap_or(0);
                }
            }
        }
        image
    }

    /// The index record of entry `i` in the image at the second mark:
    /// segment id, and the (offset, length) of its block.
    fn location(&self, i: u64) -> (u32, u64, u64) {
        let index = &self.new.files[Path::new("data/index")];
        let r = &index[64 + 64 * i as usize..128 + 64 * i as usize];
        let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        (
            be32(&r[32..36]),
            u64::from_be_bytes(r[40..48].try_into().unwrap()),
            u64::from(be32(&r[36..40])),
        )
    }

    /// The segment file of segment `id` (the id is at header bytes 12..16).
    fn segment(&self, id: u32) -> PathBuf {
        self.new
            .files
            .iter()
            .find(|(path, bytes)| {
                path.extension().is_some_and(|e| e == "seg")
                    && bytes.get(12..16) == Some(&id.to_be_bytes()[..])
            })
            .map(|(path, _)| path.clone())
            .unwrap()
    }
}

/// A traced log with an acknowledged batch of 20 events (not yet signed),
/// then an append of 40 over two streams, their entries interleaved (one
/// block per segment), of incompressible events of 0.5 to 1.5 KiB: each
/// block spans dozens of sectors, the append's index records five.
fn one_append_traced(root: &Path) -> Between {
    let trace = Trace::start(root, None);
    let data = root.join("data");
    Log::create(
        &data,
        CreateOptions {
            origin: "power.test/log".into(),
            kek: NewKek::Random,
        },
    )
    .unwrap();
    let mut log = Log::open(&data, OpenOptions::default()).unwrap();
    let preparer = Preparer::new("app", "test", "ops");
    let events = |range: std::ops::Range<u64>| -> Vec<_> {
        range
            .map(|n| {
                let stream = if n % 3 == 0 { "compliance" } else { "ops" };
                let pad = filler(n, 512 + (n as usize * 37) % 1024);
                let raw = format!(
                    r#"{{"actor":"a{n}","action":"act","stream":"{stream}","attributes":{{"pad":"{pad}"}}}}"#
                );
                preparer.prepare(raw.as_bytes(), noon(0)).unwrap()
            })
            .collect()
    };
    log.writer().append_batch(&events(0..20)).unwrap();
    trace.mark("acked 20");
    log.writer().append_batch(&events(20..60)).unwrap();
    trace.mark("acked 60");
    drop(log);
    let ops = trace.finish();
    let mut disk = Disk::new();
    let mut at_mark = Vec::new();
    for op in &ops {
        disk.apply(op).unwrap();
        if matches!(op, Op::Mark(_)) {
            at_mark.push(disk.crash(Loss::Worst));
        }
    }
    let new = at_mark.pop().unwrap();
    let old = at_mark.pop().unwrap();
    Between {
        old,
        new,
        acked: 20,
        appended: 40,
    }
}

/// `after` is `before`: no file changed, except that the index may have
/// lost zeros after its last record (zeros written ahead: the index's open
/// cuts them before recovery reads the segments, and a log closed with
/// nothing in flight cuts them itself; either length is the same index).
fn assert_unchanged(before: &Image, after: &Image) {
    let index = Path::new("data/index");
    let mut trimmed = before.clone();
    if let (Some(was), Some(is)) = (trimmed.files.get_mut(index), after.files.get(index))
        && was.len() > is.len()
        && was[is.len()..].iter().all(|b| *b == 0)
    {
        was.truncate(is.len());
    }
    let differences = after.differences(&trimmed);
    assert!(differences.is_empty(), "a file changed: {differences:?}");
}

/// Opens the crashed directory `image` and checks that it kept exactly the
/// acknowledged entries (the append was never acknowledged, and a block
/// holds none of them), with the open's own `log.recovered` event after
/// them when bytes were kept aside: `kept_aside` says whether they must be
/// (`None`: either); that it verifies and appends go on.
fn recovers_acknowledged(image: &Image, acked: u64, kept_aside: Option<bool>, case: &str) {
    let dir = scratch();
    image.write_to(dir.path()).unwrap();
    let data = dir.path().join("data");
    let mut log = open(&data).unwrap_or_else(|e| panic!("{case}: the open failed: {e}"));
    let size = log.reader().size();
    let kept = data.join("recovered").exists();
    if let Some(expected) = kept_aside {
        assert_eq!(kept, expected, "{case}");
    }
    assert_eq!(size, acked + u64::from(kept), "{case}");
    for i in 0..acked {
        let stored = log.reader().get(EntryIndex(i)).unwrap();
        assert_eq!(stored.envelope.event.actor, format!("a{i}"), "{case}");
    }
    if kept {
        let stored = log.reader().get(EntryIndex(acked)).unwrap();
        assert_eq!(stored.envelope.event.action, "log.recovered", "{case}");
    }
    let report = verify(log.reader(), &NoProgress).unwrap();
    assert!(report.ok(), "{case}: {:?}", report.problems);
    let preparer = Preparer::new("app", "test", "ops");
    let event = preparer
        .prepare(br#"{"actor":"after","action":"act"}"#, noon(0))
        .unwrap();
    let receipts = log.writer().append_batch(&[event]).unwrap();
    assert_eq!(receipts[0].index, EntryIndex(size), "{case}");
    drop(log);
    let log = open(&data).unwrap();
    assert_eq!(log.reader().size(), size + 1, "{case}");
    assert!(verify(log.reader(), &NoProgress).unwrap().ok(), "{case}");
}

/// The outcomes of a power loss during one append over two segments, and
/// a bit flipped in a compressed block once it was acknowledged, each told
/// apart: a torn block (a sector of it still zeros, its index records
/// durable), the append's index records never durable (its blocks whole
/// after the segments' committed lengths), its index records cut short
/// (its blocks whole but holding entries past the end of the index: the
/// partial block) are cut, and the acknowledged entries before them kept;
/// a whole block with a flipped bit is corruption: the open refuses,
/// naming it, and changes nothing. (The segment and index fdatasyncs of an
/// append run at the same time, so either may reach the disk first.)
#[test]
fn a_torn_block_a_partial_block_and_a_flipped_bit_are_told_apart() {
    let root = scratch();
    let between = one_append_traced(root.path());
    let (acked, appended) = (between.acked, between.appended);
    let index = PathBuf::from("data/index");
    let sector = stele_store::sim::SECTOR as u64;
    // The append's blocks, one per segment: the one holding its first
    // entry, and the other (from the next entry on), each holding every
    // entry of the append in its segment.
    let blocks = [between.location(acked), between.location(acked + 1)];
    assert_ne!(blocks[0].0, blocks[1].0);
    for i in acked..acked + appended {
        let (id, at, _) = between.location(i);
        assert!(blocks.iter().any(|b| (b.0, b.1) == (id, at)), "entry {i}");
    }
    for (n, (id, at, len)) in blocks.into_iter().enumerate() {
        let segment = between.segment(id);
        let first = acked + n as u64;
        assert!(len > 8 * sector, "the block spans {len} bytes");
        // A sector in the middle of the block, wholly inside it.
        let middle = ((at + len / 2) / sector) as usize;
        let case = |what: &str| format!("{what}, the block of entry {first}");

        // A torn block: the append's index records durable, a sector in
        // the middle of the block not written. The append is cut from its
        // first entry (the block of entry 21 torn, the index is cut there;
        // the other block then holds entries past the cut, and is cut
        // too). The torn block's bytes after the zero sector make it look
        // written out of order, not cut short: they are kept aside (unless
        // its last byte happens to be zero, once in 256 blocks: then it
        // reads as a write cut short, and is cut without being kept).
        let torn = between.mixed(&segment, |s| s == middle);
        recovers_acknowledged(&torn, acked, None, &case("a zero sector"));
        // Its end not written (the block cut short, zeros after): cut,
        // nothing to keep aside.
        let torn_end = between.mixed(&segment, |s| s > middle);
        recovers_acknowledged(&torn_end, acked, Some(false), &case("its end not written"));

        // A bit flipped in the compressed block once the append was
        // acknowledged: the block is whole, with no sector of zeros, so it
        // is corruption: the open refuses, naming the segment, the byte
        // and the block's first entry, and changes no file; a read-only
        // verification reports it. The same sector zeroed before the
        // acknowledgement was a tear (above).
        let mut flipped = between.new.clone();
        flipped.files.get_mut(&segment).unwrap()[middle * sector as usize + 100] ^= 0x08;
        let dir = scratch();
        flipped.write_to(dir.path()).unwrap();
        let data = dir.path().join("data");
        let before = Image::read_from(dir.path()).unwrap();
        let error = match open(&data) {
            Ok(_) => panic!("{}: cut as a tear", case("a flipped bit")),
            Err(e) => e,
        };
        let text = error.to_string();
        assert!(error.is_integrity(), "{text}");
        assert!(
            text.contains(&format!("entry {first} at byte {at}")),
            "{text}"
        );
        assert!(text.contains("nothing was cut"), "{text}");
        assert!(text.contains(&segment.display().to_string()), "{text}");
        assert_unchanged(&before, &Image::read_from(dir.path()).unwrap());
        let reader = stele_log::LogReader::open(&data, OpenOptions::default()).unwrap();
        assert_eq!(reader.size(), acked + appended);
        let report = verify(&reader, &NoProgress).unwrap();
        assert!(!report.ok(), "{}: verify passed", case("a flipped bit"));
        drop(reader);
        assert_unchanged(&before, &Image::read_from(dir.path()).unwrap());
    }

    // The append's index records never durable: the blocks lie whole
    // after the segments' committed lengths and are cut.
    let first_index_sector = ((64 + 64 * acked) / sector) as usize;
    let last_index_sector = ((64 + 64 * (acked + appended) - 1) / sector) as usize;
    assert!(last_index_sector - first_index_sector >= 3);
    let unindexed = between.mixed(&index, |s| s >= first_index_sector);
    recovers_acknowledged(&unindexed, acked, Some(false), "index records not durable");

    // The append's index records cut short (their first sectors durable,
    // the rest not), its blocks whole: each block holds entries past the
    // end of the index (a partial block); the index is cut back to the
    // append's first entry and the blocks are cut.
    for durable in first_index_sector..last_index_sector {
        let partial = between.mixed(&index, |s| s > durable);
        recovers_acknowledged(
            &partial,
            acked,
            Some(false),
            &format!("index records durable to sector {durable}"),
        );
    }
}
