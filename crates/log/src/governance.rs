//! Policy versions, legal holds and retention purges of one data directory.
//!
//! This is the only code that deletes event data, and it decides alone
//! whether a deletion is allowed: whoever asks (the scheduler, an operator,
//! an API call), an epoch is purged only when every policy version that
//! applied to it since it began has let its retention end (the longest
//! rule wins; see [`stele_policy::purge_after`]), the epoch itself is over,
//! and no active legal hold covers it. A refused request is recorded as a
//! `retention.refused` system event.
//!
//! Files (each written by atomic replace, so a crash leaves the old or the
//! new content):
//! - `policies/<seq>.json` — every applied policy version, with its source,
//!   hash, activation time and who applied it;
//! - `holds.json` — every legal hold ever placed, released ones included;
//! - `segments/<stream>/<YYYY-MM-DD>.purged` — the tombstone of a purged
//!   epoch (see [`crate::purge`]).
//!
//! Every change is also a system event in the `_system` stream, appended
//! durably before the call returns: `policy.applied`, `hold.placed`,
//! `hold.released`, `retention.purge`, `retention.refused`. Their client ids
//! (`policy:<seq>`, `hold:<id>:placed`, …) make the append idempotent, so
//! [`Log::open`] can finish a change interrupted between its file and its
//! event without logging it twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stele_event::time::{Day, parse_timestamp, timestamp_text};
use stele_policy::{AppliedPolicy, Policy, PolicySource};
use stele_store::StoreError;
use stele_store::fsutil;

use crate::engine::LogWriter;
use crate::error::{LogError, LogResult};
use crate::ids::{EntryIndex, SegmentId};
use crate::ledger::Ledger;
use crate::purge::{self, MAX_LISTED_RANGES, TOMBSTONE_VERSION, Tombstone};
use crate::reader::LogReader;
use crate::system_event::{self, SystemEvent};
use stele_tlog::Signer;
use stele_tlog::hash::hex;

/// The writer recorded on system events.
pub const SYSTEM_WRITER: &str = "stele";
/// The reserved stream of system events.
pub const SYSTEM_STREAM: &str = "_system";

/// The longest hold reason (a case or matter reference), in bytes.
pub const MAX_HOLD_REASON_BYTES: usize = 4096;
/// The most streams one hold may name.
pub const MAX_HOLD_STREAMS: usize = 256;
/// The longest principal name recorded by a governance change, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 1024;

/// The steps of a retention purge a test build can stop after
/// (`stele_store::fileio::stop_after`), as a crash there would, in order:
/// step 1 is `PURGE_STOP_POINTS[0]`.
pub const PURGE_STOP_POINTS: [&str; 5] = [
    "purge 1: tombstone written",
    "purge 2: retention.purge event appended",
    "purge 3: tombstone names the event",
    "purge 4: data key deleted",
    "purge 5: segment deleted",
];

/// What governance keeps between calls: the files' contents once checked
/// against the log, and this process's own state (the newest time the log
/// records, announced purges, the attestation key). Owned by [`crate::Log`]
/// beside the writer; [`Governance`] works on it.
#[derive(Debug)]
pub(crate) struct GovernanceState {
    /// Applied policy versions, oldest first.
    pub(crate) policies: Vec<PolicyVersion>,
    /// Legal holds, released ones included.
    pub(crate) holds: Vec<Hold>,
    /// Tombstones of purged segments, by segment id (see `purge.rs`).
    pub(crate) purged: BTreeMap<u32, Tombstone>,
    /// The newest time the log records (Unix seconds): no governance
    /// decision is taken at an earlier time.
    pub(crate) time_floor: Option<i64>,
    /// Epochs announced due by this process (see `announce.rs`).
    pub(crate) announcements: crate::announce::Announcements,
    /// Signs audit attestations (the log's checkpoint key).
    pub(crate) attestor: Signer,
}

impl GovernanceState {
    pub(crate) fn new(attestor: Signer, purged: BTreeMap<u32, Tombstone>) -> GovernanceState {
        GovernanceState {
            policies: Vec::new(),
            holds: Vec::new(),
            purged,
            time_floor: None,
            announcements: crate::announce::Announcements::default(),
            attestor,
        }
    }
}

/// Governance of an open log (policy versions, holds, retention purges,
/// attestations, key rotation, tokens), as a client of its writer: every
/// decision is recorded through [`LogWriter::append_system`] before it
/// acts, and a purge retires its segment through
/// [`LogWriter::retire_segment`]. Borrowed from [`crate::Log::governance`].
#[derive(Debug)]
pub struct Governance<'a> {
    pub(crate) writer: &'a mut LogWriter,
    pub(crate) state: &'a mut GovernanceState,
}

/// Checks what a hold request gives, before anything is built.
fn check_hold_spec(spec: &HoldSpec) -> LogResult<()> {
    if spec.streams.len() > MAX_HOLD_STREAMS {
        return Err(LogError::Usage(format!(
            "hold: {} streams named; a hold names at most {MAX_HOLD_STREAMS} (or none, for every stream)",
            spec.streams.len()
        )));
    }
    for stream in &spec.streams {
        stele_event::check_stream_name(stream)?;
    }
    if spec.reason.trim().is_empty() {
        return Err(LogError::Usage(
            "hold: a reason is required (case or matter reference)".into(),
        ));
    }
    if spec.reason.len() > MAX_HOLD_REASON_BYTES {
        return Err(LogError::Usage(format!(
            "hold: the reason is {} bytes; at most {MAX_HOLD_REASON_BYTES} (a case or matter reference)",
            spec.reason.len()
        )));
    }
    Ok(())
}

/// Checks a principal name a governance change records.
fn check_principal(name: &str) -> LogResult<()> {
    if name.len() > MAX_PRINCIPAL_BYTES {
        return Err(LogError::Usage(format!(
            "the principal name is {} bytes; at most {MAX_PRINCIPAL_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

/// One applied policy version.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    pub seq: u64,
    /// Unix seconds from which it applied.
    pub activated_at: i64,
    pub applied_by: String,
    /// Hex SHA-256 ([`Policy::hash`]).
    pub hash: String,
    pub policy: Arc<Policy>,
    /// The `policy.applied` system event.
    pub event_index: Option<u64>,
    /// Version 1 only: the log already held client data when it was
    /// applied. That data was written under the shipped default (kept
    /// forever), which therefore counts as a version in effect since the
    /// beginning of time for every epoch that began before version 1.
    pub prior_data: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    v: u32,
    seq: u64,
    activated_at: i64,
    applied_by: String,
    hash: String,
    /// Base64 of [`PolicySource::to_bytes`].
    source: String,
    event_index: Option<u64>,
    /// See [`PolicyVersion::prior_data`]; absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    prior_data: bool,
}

/// A legal hold: while active, no epoch it covers is purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub id: String,
    /// Streams held; empty means every stream.
    pub streams: Vec<String>,
    /// First and last UTC day held (`YYYY-MM-DD`, inclusive); `None` is
    /// unbounded.
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
    /// The `hold.placed` and `hold.released` system events.
    pub placed_event: Option<u64>,
    pub released_event: Option<u64>,
}

/// What a new hold covers.
#[derive(Debug, Clone, Default)]
pub struct HoldSpec {
    pub streams: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldFile {
    v: u32,
    holds: Vec<Hold>,
}

/// Reads the bytes of `holds.json` (at `path`, named in errors). Public
/// only for the fuzz targets.
#[doc(hidden)]
pub fn parse_holds(path: &Path, bytes: &[u8]) -> LogResult<Vec<Hold>> {
    let file: HoldFile = serde_json::from_slice(bytes)
        .map_err(|e| LogError::Integrity(format!("{}: {e}", path.display())))?;
    if file.v != 1 {
        return Err(LogError::Integrity(format!(
            "{}: format version {}; this Stele reads version 1",
            path.display(),
            file.v
        )));
    }
    for hold in &file.holds {
        if hold.released_at.is_some() != hold.released_by.is_some() {
            return Err(LogError::Integrity(format!(
                "{}: hold {} has only one of released_at and released_by",
                path.display(),
                hold.id
            )));
        }
    }
    Ok(file.holds)
}

/// The bytes of `holds.json` holding `holds`. Public only for the fuzz
/// targets.
#[doc(hidden)]
pub fn encode_holds(holds: &[Hold]) -> LogResult<Vec<u8>> {
    let file = HoldFile {
        v: 1,
        holds: holds.to_vec(),
    };
    let mut bytes =
        serde_json::to_vec_pretty(&file).map_err(|e| LogError::Internal(format!("holds: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

impl Hold {
    pub fn active(&self) -> bool {
        self.released_at.is_none()
    }

    /// Whether this hold, if active, covers `stream`'s epoch `day`.
    pub fn covers(&self, stream: &str, day: Day) -> bool {
        if !self.active() {
            return false;
        }
        if !self.streams.is_empty() && !self.streams.iter().any(|s| s == stream) {
            return false;
        }
        self.from.is_none_or(|from| from <= day) && self.to.is_none_or(|to| day <= to)
    }
}

/// The retention state of one stored epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochStatus {
    pub segment: SegmentId,
    pub stream: String,
    pub epoch_day: Day,
    /// Earliest purge time (Unix seconds); `None` means kept forever.
    pub purge_after: Option<i64>,
    /// Ids of active holds covering it.
    pub held_by: Vec<String>,
    /// True when it may be purged now.
    pub due: bool,
}

/// What applying a policy did.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// `None` when the policy was already the active one (nothing applied).
    pub seq: Option<u64>,
    pub hash: String,
    pub event_index: Option<u64>,
    /// One line per retention change, saying to what data it applies.
    pub changes: Vec<String>,
}

static SHIPPED_DEFAULT: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();

/// The policy that applies when none was ever applied.
/// The policy in effect after `policies` (the shipped default when none).
pub(crate) fn active_policy(policies: &[PolicyVersion]) -> Arc<Policy> {
    policies
        .last()
        .map(|v| v.policy.clone())
        .unwrap_or_else(shipped_default)
}

fn shipped_default() -> Arc<Policy> {
    shipped_default_ref_arc().clone()
}

fn shipped_default_ref_arc() -> &'static Arc<Policy> {
    SHIPPED_DEFAULT.get_or_init(|| Arc::new(Policy::shipped_default()))
}

fn shipped_default_ref() -> &'static Policy {
    shipped_default_ref_arc()
}

impl<'a> Governance<'a> {
    pub(crate) fn new(writer: &'a mut LogWriter, state: &'a mut GovernanceState) -> Self {
        Governance { writer, state }
    }

    /// Makes the policy versions, holds and tombstones the reader's view.
    /// Called after every change to them, before anything that depends on
    /// the change (the deletion of a purged segment's key) can be seen.
    fn share(&self) {
        let mut view = self.writer.reader().view_mut();
        view.purged.clone_from(&self.state.purged);
        view.policies.clone_from(&self.state.policies);
        view.holds.clone_from(&self.state.holds);
    }

    fn policies_dir(&self) -> PathBuf {
        self.writer.layout().root.join("policies")
    }

    fn holds_path(&self) -> PathBuf {
        self.writer.layout().holds()
    }

    pub(crate) fn tombstone_path(&self, stream: &str, day: Day) -> PathBuf {
        self.writer.layout().tombstone(stream, day)
    }

    /// Reads `policies/` and `holds.json` (at open).
    pub(crate) fn load(&mut self) -> LogResult<()> {
        let versions = read_policy_versions(&self.writer.layout().root)?;
        self.state.policies = versions;
        self.state.holds = read_holds(&self.holds_path())?;
        self.share();
        Ok(())
    }

    /// Completes changes a crash interrupted: tombstones whose event or
    /// file deletions are missing, a key rotation or kept bytes whose event
    /// is missing. Every step is idempotent. Policy versions and holds need
    /// nothing here: their event comes first, and `reconcile_governance`
    /// has already rebuilt any file a crash left behind.
    pub(crate) fn finish_interrupted(&mut self) -> LogResult<()> {
        let now = Timestamp::now();
        let pending: Vec<u32> = self.state.purged.keys().copied().collect();
        for id in pending {
            self.complete_purge(id, now, None)?;
        }
        // A KEK rotation whose `key.rotated` event a crash cut off.
        self.record_rotation_event(now)?;
        // Bytes recovery kept aside whose `log.recovered` event is owed.
        self.record_salvage_events(now)?;
        // Open returns with everything it appended under a checkpoint.
        self.writer.publish()?;
        Ok(())
    }

    /// Checks the governance files against the log's own record of every
    /// policy version, hold and purge (see [`crate::ledger`]). A file a
    /// crash left behind its event is rebuilt from the event; a file that
    /// records something the log does not (a version or hold with no event,
    /// a hold released without a `hold.released` event, an altered field)
    /// fails the open, naming the file and the event, and nothing acts on
    /// it.
    pub(crate) fn reconcile(&mut self) -> LogResult<()> {
        let ledger = Ledger::replay(self.writer.reader())?;
        self.reconcile_policies(&ledger)?;
        self.reconcile_holds(&ledger)?;
        self.reconcile_purges(&ledger)?;
        self.reconcile_attestation(ledger.latest_attestation)?;
        let last_entry = self
            .writer
            .size()
            .checked_sub(1)
            .and_then(|last| self.writer.reader().get(EntryIndex(last)).ok())
            .and_then(|e| parse_timestamp(&e.envelope.received_at).ok());
        self.state.time_floor = ledger.newest.max(last_entry);
        Ok(())
    }

    fn reconcile_policies(&mut self, ledger: &Ledger) -> LogResult<()> {
        let dir = self.policies_dir();
        let file_of = |seq: u64| dir.join(format!("{seq:06}.json"));
        if let Some(extra) = self.state.policies.get(ledger.policies.len()) {
            return Err(LogError::Integrity(format!(
                "{}: no policy.applied event in the log records policy version {} (the log records {} version(s)); nothing acts on it — remove the file (a version is applied only once the log records it) and apply the policy again",
                file_of(extra.seq).display(),
                extra.seq,
                ledger.policies.len()
            )));
        }
        for (position, logged) in ledger.policies.iter().enumerate() {
            let path = file_of(logged.seq);
            match self.state.policies.get(position) {
                Some(cached) => {
                    let differs = crate::ledger::policy_differences(cached, logged);
                    if !differs.is_empty() {
                        return Err(crate::ledger::disagreement(
                            &path,
                            logged.event_index,
                            &format!(
                                "policy version {} differs from its policy.applied event in {}",
                                logged.seq,
                                differs.join(", ")
                            ),
                        ));
                    }
                    if cached.event_index.is_none() {
                        self.state.policies[position].event_index = Some(logged.event_index);
                        self.share();
                        write_policy_file(&self.policies_dir(), &self.policy_file(position))?;
                    }
                }
                None => {
                    let source = logged.source.as_ref().ok_or_else(|| {
                        LogError::Integrity(format!(
                            "{}: missing, and the policy.applied event of version {} (entry {}) does not hold the policy itself; restore the file from a backup",
                            path.display(),
                            logged.seq,
                            logged.event_index
                        ))
                    })?;
                    let policy = Policy::from_source(source).map_err(|e| {
                        LogError::Integrity(format!(
                            "entry {}: the policy of version {} does not load: {e}",
                            logged.event_index, logged.seq
                        ))
                    })?;
                    if hex(&policy.hash()) != logged.hash {
                        return Err(LogError::Integrity(format!(
                            "entry {}: the policy of version {} hashes to {}, not the recorded {}",
                            logged.event_index,
                            logged.seq,
                            hex(&policy.hash()),
                            logged.hash
                        )));
                    }
                    self.state.policies.push(PolicyVersion {
                        seq: logged.seq,
                        activated_at: logged.activated_at,
                        applied_by: logged.applied_by.clone(),
                        hash: logged.hash.clone(),
                        policy: Arc::new(policy),
                        event_index: Some(logged.event_index),
                        prior_data: logged.prior_data.unwrap_or(false),
                    });
                    self.share();
                    // Crash: the file is rebuilt again by the next open.
                    fsutil::create_dir_durable(&self.policies_dir())?;
                    write_policy_file(&self.policies_dir(), &self.policy_file(position))?;
                }
            }
        }
        Ok(())
    }

    fn reconcile_holds(&mut self, ledger: &Ledger) -> LogResult<()> {
        let path = self.holds_path();
        let logged = crate::ledger::holds_by_id(&ledger.holds);
        let mut behind = self.state.holds.len() != ledger.holds.len();
        for cached in &self.state.holds {
            let Some(record) = logged.get(cached.id.as_str()) else {
                return Err(LogError::Integrity(format!(
                    "{}: no hold.placed event in the log records hold {}; nothing acts on it",
                    path.display(),
                    cached.id
                )));
            };
            let differs = crate::ledger::hold_differences(cached, record);
            // A crash may leave the file behind its events: the hold's
            // placement or release recorded, the file not yet rewritten.
            let lagging = differs.iter().all(|field| match *field {
                "placed_event" => cached.placed_event.is_none(),
                "released_by" | "released_at" | "released_event" => {
                    cached.released_at.is_none() && cached.released_event.is_none()
                }
                _ => false,
            });
            if !lagging {
                let event = match differs.first() {
                    Some(f) if f.starts_with("released") => record.released_event,
                    _ => record.placed_event,
                };
                let what = if cached.released_at.is_some() && record.released_at.is_none() {
                    format!(
                        "hold {} is marked released, but the log has no hold.released event for it (it is still in force)",
                        cached.id
                    )
                } else {
                    format!(
                        "hold {} differs from the log's record in {}",
                        cached.id,
                        differs.join(", ")
                    )
                };
                return Err(crate::ledger::disagreement(
                    &path,
                    event.or(record.placed_event).unwrap_or_default(),
                    &what,
                ));
            }
            behind |= !differs.is_empty();
        }
        self.state.holds = ledger.holds.clone();
        self.share();
        if behind {
            // Crash: the next open rebuilds it again.
            self.write_holds()?;
        }
        Ok(())
    }

    fn reconcile_purges(&mut self, ledger: &Ledger) -> LogResult<()> {
        self.adopt_purge_events(ledger)?;
        for (id, tombstone) in &self.state.purged {
            let path = self.tombstone_path(&tombstone.stream, tombstone.epoch_day);
            let logged = ledger.purges.get(id);
            match (tombstone.event_index, logged) {
                (Some(index), Some(record))
                    if record.event_index == index
                        && record.attributes == tombstone.event_attributes() => {}
                (Some(index), Some(record)) => {
                    return Err(crate::ledger::disagreement(
                        &path,
                        record.event_index,
                        &format!(
                            "the purge record (naming entry {index}) differs from the retention.purge event of segment {id}"
                        ),
                    ));
                }
                (Some(index), None) => {
                    return Err(LogError::Integrity(format!(
                        "{}: names retention.purge event {index}, but the log records no purge of segment {id}; nothing acts on it",
                        path.display()
                    )));
                }
                // Decided, its event not yet appended (`complete_purge`
                // appends it, or finds it, once it is proved due).
                (None, _) => {}
            }
        }
        for (id, record) in &ledger.purges {
            if !self.state.purged.contains_key(id) {
                return Err(LogError::Integrity(format!(
                    "segment {id}: the log records its purge (entry {}), but its purge record (segments/<stream>/<day>.purged) is missing",
                    record.event_index
                )));
            }
        }
        Ok(())
    }

    /// A tombstone that names no event while the log holds its
    /// `retention.purge` event, with the very attributes it would append
    /// (a crash between the event and the tombstone's update), takes that
    /// event's index. The retry in `complete_purge` would find the event by
    /// its client id too, but only if its bytes are the same; an event an
    /// earlier version wrote under another resource name is found here.
    /// Crash: the tombstone is replaced atomically; the next open does the
    /// same again.
    fn adopt_purge_events(&mut self, ledger: &Ledger) -> LogResult<()> {
        for (id, record) in &ledger.purges {
            let Some(mut tombstone) = self.state.purged.get(id).cloned() else {
                continue;
            };
            if tombstone.event_index.is_none() && record.attributes == tombstone.event_attributes()
            {
                tombstone.event_index = Some(record.event_index);
                tombstone.write(&self.tombstone_path(&tombstone.stream, tombstone.epoch_day))?;
                self.state.purged.insert(*id, tombstone);
                self.share();
            }
        }
        Ok(())
    }

    /// Refuses a governance decision at a time earlier than the newest the
    /// log records: a clock set back must not backdate a policy version or
    /// make a purge look older than it is.
    pub(crate) fn check_clock(&self, now: Timestamp, what: &str) -> LogResult<()> {
        match self.state.time_floor {
            Some(floor) if now.as_second() < floor => Err(LogError::Refused(format!(
                "refused to {what}: the clock reads {now}, earlier than the newest time the log records ({}); Stele takes no governance decision at a time earlier than the log's — correct the clock",
                timestamp_text(floor)
            ))),
            _ => Ok(()),
        }
    }

    /// Raises the newest time the log records.
    fn note_time(&mut self, now: Timestamp) {
        let now = now.as_second();
        self.state.time_floor = Some(self.state.time_floor.map_or(now, |f| f.max(now)));
    }

    // ----- policy versions -----

    fn policy_file(&self, position: usize) -> PolicyFile {
        let version = &self.state.policies[position];
        PolicyFile {
            v: 1,
            seq: version.seq,
            activated_at: version.activated_at,
            applied_by: version.applied_by.clone(),
            hash: version.hash.clone(),
            source: B64.encode(version.policy.source().to_bytes()),
            event_index: version.event_index,
            prior_data: version.prior_data,
        }
    }

    /// Applies `policy` from `now` on. Refused when it stops governing a
    /// stream that still holds data (its retention would become
    /// undefined), when its `policy.applied` event (which holds the policy
    /// itself) would be over the event size limit, or when the clock reads
    /// earlier than the log's newest time. A shorter retention applies to
    /// epochs that begin after now only; data already written keeps the
    /// longer one. Crash story: the `policy.applied` event is the commit
    /// point; `policies/<seq>.json` is written next, or rebuilt from the
    /// event by the next open.
    pub fn apply_policy(
        &mut self,
        policy: Policy,
        applied_by: &str,
        now: Timestamp,
    ) -> LogResult<ApplyOutcome> {
        self.writer.check_writable()?;
        let hash = hex(&policy.hash());
        let current = active_policy(&self.state.policies);
        if !self.state.policies.is_empty() && hex(&current.hash()) == hash {
            return Ok(ApplyOutcome {
                seq: None,
                hash,
                event_index: None,
                changes: Vec::new(),
            });
        }
        check_principal(applied_by)?;
        self.check_clock(now, "apply a policy")?;
        let mut orphaned: Vec<String> = self
            .writer
            .stored_segments()
            .values()
            .filter(|info| !info.header.stream.starts_with('_'))
            .filter(|info| policy.stream(&info.header.stream).is_none())
            .map(|info| info.header.stream.clone())
            .collect();
        orphaned.sort();
        orphaned.dedup();
        if !orphaned.is_empty() {
            return Err(LogError::Refused(format!(
                "the new policy does not govern stream(s) {} that still hold data (their retention would be undefined); keep declaring them, or keep `undeclared_streams = \"inherit\"`, until their data is purged",
                orphaned.join(", ")
            )));
        }
        let seq = self.state.policies.len() as u64 + 1;
        // Data written before the first version was kept forever by the
        // shipped default; it stays so (see `applied`).
        let prior_data = seq == 1
            && self
                .writer
                .stored_segments()
                .values()
                .any(|info| !info.header.stream.starts_with('_'));
        let version = PolicyVersion {
            seq,
            activated_at: now.as_second(),
            applied_by: applied_by.to_string(),
            hash: hash.clone(),
            policy: Arc::new(policy),
            event_index: None,
            prior_data,
        };
        let previous = active_policy(&self.state.policies);
        let changes: Vec<String> = stele_policy::retention_changes(&previous, &version.policy)
            .iter()
            .filter_map(describe_change)
            .collect();
        let source: Value = serde_json::from_slice(&version.policy.source().to_bytes())
            .map_err(|e| LogError::Internal(format!("policy source: {e}")))?;
        let event = SystemEvent::PolicyApplied {
            attributes: system_event::PolicyApplied {
                seq: version.seq,
                hash: version.hash.clone(),
                activated_at: timestamp_text(version.activated_at),
                applied_by: version.applied_by.clone(),
                retention_changes: changes.clone(),
                prior_data: Some(prior_data),
                source: Some(source),
            },
        };
        // Built (and its size checked) before anything is written.
        let appended = self.writer.append_system(&event, now).map_err(|e| match e {
                LogError::Event(e) => LogError::Usage(format!(
                    "the policy is too large to record in the log ({e}); the TOML and Cedar text together must fit in one event"
                )),
                other => other,
            });
        // 1. The commit point: the `policy.applied` event, holding the
        //    policy itself, is durable (built, and its size checked, before
        //    anything is written). Crash: the next open finds it and writes
        //    `policies/<seq>.json` from it.
        let receipt = appended?;
        self.note_time(now);
        self.state.policies.push(PolicyVersion {
            event_index: Some(receipt.index.0),
            ..version
        });
        self.share();
        // 2. The cache file. Crash: rebuilt by the next open.
        let position = self.state.policies.len() - 1;
        fsutil::create_dir_durable(&self.policies_dir())?;
        write_policy_file(&self.policies_dir(), &self.policy_file(position))?;
        Ok(ApplyOutcome {
            seq: Some(seq),
            hash,
            event_index: Some(receipt.index.0),
            changes,
        })
    }

    // ----- holds -----

    fn write_holds(&self) -> LogResult<()> {
        let bytes = encode_holds(&self.state.holds)?;
        fsutil::atomic_replace(&self.holds_path(), &bytes, 0o644)?;
        Ok(())
    }

    /// Places a legal hold. Everything is checked and its `hold.placed`
    /// event built before anything is written. Crash story: the event is
    /// the commit point (the hold protects data from then on);
    /// `holds.json` is rewritten next, or rebuilt by the next open.
    pub fn add_hold(&mut self, spec: HoldSpec, by: &str, now: Timestamp) -> LogResult<Hold> {
        self.writer.check_writable()?;
        check_hold_spec(&spec)?;
        check_principal(by)?;
        let from = spec.from.as_deref().map(str::parse::<Day>).transpose();
        let to = spec.to.as_deref().map(str::parse::<Day>).transpose();
        let (from, to) = match (from, to) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return Err(LogError::Usage(format!("hold: {e}"))),
        };
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(LogError::Usage(format!("hold: from {f} is after to {t}")));
        }
        self.check_clock(now, "place a hold")?;
        let mut hold = Hold {
            id: format!("hold-{}", uuid::Uuid::now_v7().simple()),
            streams: spec.streams,
            from,
            to,
            reason: spec.reason,
            placed_by: by.to_string(),
            placed_at: now.to_string(),
            released_by: None,
            released_at: None,
            placed_event: None,
            released_event: None,
        };
        // 1. The commit point: `hold.placed` is durable.
        let receipt = self
            .writer
            .append_system(&SystemEvent::hold_placed(&hold), now)?;
        self.note_time(now);
        hold.placed_event = Some(receipt.index.0);
        self.state.holds.push(hold.clone());
        self.share();
        // 2. The cache. Crash: rebuilt by the next open.
        self.write_holds()?;
        Ok(hold)
    }

    /// Releases an active hold (kept in the file, marked released). Crash
    /// story as for [`Governance::add_hold`]: `hold.released` first, then the file.
    pub fn release_hold(&mut self, id: &str, by: &str, now: Timestamp) -> LogResult<Hold> {
        self.writer.check_writable()?;
        check_principal(by)?;
        let position = self
            .state
            .holds
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(|| LogError::NotFound(format!("no hold with id {id:?}")))?;
        if !self.state.holds[position].active() {
            return Err(LogError::Refused(format!("hold {id} is already released")));
        }
        self.check_clock(now, "release a hold")?;
        let mut hold = self.state.holds[position].clone();
        hold.released_by = Some(by.to_string());
        hold.released_at = Some(now.to_string());
        // 1. The commit point: `hold.released` is durable.
        let receipt = self
            .writer
            .append_system(&SystemEvent::hold_released(&hold), now)?;
        self.note_time(now);
        hold.released_event = Some(receipt.index.0);
        self.state.holds[position] = hold.clone();
        self.share();
        // 2. The cache. Crash: rebuilt by the next open.
        self.write_holds()?;
        Ok(hold)
    }

    // ----- retention -----

    /// Purges every epoch that is due at `now` and was announced by this
    /// process at least the grace period before (see `announce.rs`);
    /// announces the others.
    pub fn enforce_retention(&mut self, by: &str, now: Timestamp) -> LogResult<Vec<Tombstone>> {
        Ok(self.run_retention(by, now)?.purged)
    }

    /// An explicit request to purge one epoch now. Refused, with the reason
    /// recorded as a `retention.refused` system event, unless the epoch is
    /// due (retention over, epoch ended, no hold).
    pub fn purge_epoch(
        &mut self,
        stream: &str,
        day: Day,
        by: &str,
        now: Timestamp,
    ) -> LogResult<Tombstone> {
        self.writer.check_writable()?;
        self.check_clock(now, "purge an epoch")?;
        if let Some(t) = self
            .state
            .purged
            .values()
            .find(|t| t.stream == stream && t.epoch_day == day)
        {
            return Ok(t.clone());
        }
        let Some(status) = self
            .writer
            .reader()
            .retention_status(now)
            .into_iter()
            .find(|s| s.stream == stream && s.epoch_day == day)
        else {
            return Err(LogError::NotFound(format!(
                "stream {stream:?} has no stored epoch {}",
                day
            )));
        };
        if status.due {
            let announced = self.matured_announcement(&status, by, now)?;
            return self.purge_segment(&status, by, now, Some(announced));
        }
        let why = if !status.held_by.is_empty() {
            format!("it is under legal hold {}", status.held_by.join(", "))
        } else {
            match status.purge_after {
                None => "its retention is forever".to_string(),
                Some(t) if now.as_second() < t => format!(
                    "its retention ends at {} (the longest rule of every policy version since the epoch began applies)",
                    timestamp_text(t)
                ),
                Some(_) => "the epoch has not ended yet".to_string(),
            }
        };
        let message = format!("refused to purge stream {stream:?} epoch {day}: {why}");
        let event = SystemEvent::RetentionRefused {
            actor: by.to_string(),
            attributes: system_event::RetentionRefused {
                stream: stream.to_string(),
                epoch: day.to_string(),
                purge_after: status.purge_after.map(timestamp_text),
                held_by: status.held_by,
                reason: why,
            },
        };
        self.writer.append_system(&event, now)?;
        Err(LogError::Refused(message))
    }

    /// The purge protocol for one due epoch. Each step says what a crash
    /// right after it leaves; [`Log::open`] finishes from any of them.
    pub(crate) fn purge_segment(
        &mut self,
        status: &EpochStatus,
        by: &str,
        now: Timestamp,
        announced: Option<u64>,
    ) -> LogResult<Tombstone> {
        // Defence in depth: re-check what made it due.
        let purge_after = status.purge_after.ok_or_else(|| {
            LogError::Refused(format!(
                "stream {:?} epoch {} is kept forever",
                status.stream, status.epoch_day
            ))
        })?;
        if now.as_second() < purge_after
            || now.as_second() < status.epoch_day.end()
            || self
                .state
                .holds
                .iter()
                .any(|h| h.covers(&status.stream, status.epoch_day))
        {
            return Err(LogError::Refused(format!(
                "stream {:?} epoch {} is not due for purging",
                status.stream, status.epoch_day
            )));
        }
        let id = status.segment.0;
        self.writer.close_segment(id);
        // The segment's entries, read from the index once: the tombstone
        // records them, and the check before shredding compares with them.
        let entries = self.writer.segment_entries(id)?;
        let known = entries.clone();
        let tombstone = Tombstone {
            v: TOMBSTONE_VERSION,
            segment: status.segment,
            stream: status.stream.clone(),
            epoch: status.epoch_day,
            epoch_day: status.epoch_day,
            decided_at: now.as_second(),
            purge_after,
            policy: hex(&active_policy(&self.state.policies).hash()),
            requested_by: by.to_string(),
            entries: entries.entries,
            first: entries.first,
            last: entries.last,
            ranges: (entries.ranges.len() <= MAX_LISTED_RANGES).then(|| entries.ranges.clone()),
            indices_sha256: entries.indices_sha256,
            event_index: None,
            announced,
        };
        // 1. The decision: the tombstone is durable. Crash: the next open
        //    appends the event and deletes the files.
        tombstone.write(&self.tombstone_path(&tombstone.stream, tombstone.epoch_day))?;
        self.state.purged.insert(id, tombstone);
        self.share();
        self.purge_step_done(1)?;
        self.complete_purge(id, now, Some(&known))?;
        self.state
            .purged
            .get(&id)
            .cloned()
            .ok_or_else(|| LogError::Internal("purge record vanished".into()))
    }

    /// Test builds (`stele-store` feature `fault-injection`) can stop a
    /// purge right after `step`, leaving the files as a crash there would
    /// (see [`PURGE_STOP_POINTS`]); the handle is then poisoned and must be
    /// reopened. In other builds this is never true.
    fn purge_step_done(&mut self, step: u8) -> LogResult<()> {
        let point = usize::from(step)
            .checked_sub(1)
            .and_then(|i| PURGE_STOP_POINTS.get(i));
        if let Some(point) = point
            && stele_store::fileio::stop_point(&self.writer.layout().root, point)
        {
            let e = LogError::Internal(format!("purge stopped after step {step} (test hook)"));
            return Err(self.writer.poison(e));
        }
        Ok(())
    }

    /// Steps 2–4 of a purge, each idempotent. `known`: the segment's
    /// entries when this process just read them from the index (else the
    /// check before shredding reads them).
    fn complete_purge(
        &mut self,
        id: u32,
        now: Timestamp,
        known: Option<&purge::SegmentEntries>,
    ) -> LogResult<()> {
        let Some(mut tombstone) = self.state.purged.get(&id).cloned() else {
            return Ok(());
        };
        let path = self.tombstone_path(&tombstone.stream, tombstone.epoch_day);
        // 2. The signed record: a `retention.purge` event, then its index in
        //    the tombstone. Crash: the retry matches the same event.
        if tombstone.event_index.is_none() {
            let receipt = self
                .writer
                .append_system(&SystemEvent::retention_purge(&tombstone), now)?;
            self.note_time(now);
            self.purge_step_done(2)?;
            tombstone.event_index = Some(receipt.index.0);
            tombstone.write(&path)?;
            self.state.purged.insert(id, tombstone.clone());
            self.share();
            self.purge_step_done(3)?;
        }
        // Before anything is destroyed: the tombstone must describe this
        // very segment and a purge the policy allowed. A stray or altered
        // tombstone stops here (the log refuses to open) and deletes
        // nothing.
        self.check_before_shredding(&tombstone, known)?;
        // 3. Crypto-shred: the data key goes first, so the records are
        //    unreadable from here even if the segment file lingered.
        self.writer.reader().forget_segment(id);
        remove_durably(&self.writer.layout().dek(id))?;
        self.purge_step_done(4)?;
        // 4. The segment file itself, any bytes recovery cut from it and
        //    kept aside (`salvage`), and its search part (sealed under the
        //    key just deleted; an open removes one a crash left).
        crate::salvage::remove_segment(self.writer.layout(), id)?;
        remove_durably(&self.writer.layout().search_part(id))?;
        self.writer.reader().forget_segment(id);
        let segment_path = self
            .writer
            .layout()
            .segment(&tombstone.stream, tombstone.epoch_day);
        remove_durably(&segment_path)?;
        self.purge_step_done(5)?;
        self.writer.retire_segment(id);
        Ok(())
    }
}

impl Governance<'_> {
    /// Checks every purge record whose data key or segment file is still
    /// on disk (a purge a crash interrupted, or a forgery) before open
    /// relies on it.
    pub(crate) fn check_pending_purges(&self) -> LogResult<()> {
        for tombstone in self.state.purged.values() {
            self.check_before_shredding(tombstone, None)?;
        }
        Ok(())
    }

    /// Refuses to destroy anything for `tombstone` unless its data key or
    /// segment file belongs to the segment it names, its entries are the
    /// index's entries of that segment, and the purge was allowed.
    fn check_before_shredding(
        &self,
        tombstone: &Tombstone,
        known: Option<&purge::SegmentEntries>,
    ) -> LogResult<()> {
        let id = tombstone.segment.0;
        let segment_path = self
            .writer
            .layout()
            .segment(&tombstone.stream, tombstone.epoch_day);
        let dek_exists = self.writer.layout().dek(id).exists();
        let segment_exists = segment_path.exists();
        if !dek_exists && !segment_exists {
            return Ok(());
        }
        let refuse = |why: String| {
            LogError::Integrity(format!(
                "purge record {}: {why}; nothing was deleted",
                self.tombstone_path(&tombstone.stream, tombstone.epoch_day)
                    .display()
            ))
        };
        if segment_exists {
            let (header, _) = stele_store::segment::read_header(&segment_path)?;
            if header.id != id
                || header.stream != tombstone.stream
                || header.epoch != tombstone.epoch_day.number()
            {
                return Err(refuse(format!(
                    "names segment {id} of {:?} {}, but {} is segment {} of {:?} day {}",
                    tombstone.stream,
                    tombstone.epoch,
                    segment_path.display(),
                    header.id,
                    header.stream,
                    header.epoch
                )));
            }
        }
        let entries = match known {
            Some(entries) => entries.clone(),
            None => self.writer.segment_entries(id)?,
        };
        tombstone.matches(&entries).map_err(&refuse)?;
        purge_was_allowed(&self.state.policies, &self.state.holds, tombstone).map_err(&refuse)?;
        Ok(())
    }
}

/// Retention as the reader's view stands (governance keeps it current).
impl LogReader {
    /// [`LogReader::retention_status`] and every purge record, as the JSON that
    /// `GET /v1/retention` and `stele retention status --json` print:
    /// `{"epochs": [{stream, epoch, purge_after, held_by, due}], "purged": [tombstone]}`.
    pub fn retention_report(&self, now: Timestamp) -> Value {
        let epochs: Vec<Value> = self
            .retention_status(now)
            .iter()
            .map(|s| {
                json!({
                    "stream": s.stream,
                    "epoch": s.epoch_day,
                    "purge_after": s.purge_after.map(timestamp_text),
                    "held_by": s.held_by,
                    "due": s.due,
                })
            })
            .collect();
        let purged: Vec<Value> = self
            .view()
            .purged
            .values()
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        json!({ "epochs": epochs, "purged": purged })
    }

    /// The retention state of every stored (not purged) epoch at `now`.
    pub fn retention_status(&self, now: Timestamp) -> Vec<EpochStatus> {
        let view = self.view();
        let applied = applied(&view.policies);
        let now = now.as_second();
        view.segments
            .iter()
            .filter(|(id, _)| !view.purged.contains_key(id))
            .map(|(id, info)| {
                let stream = &info.header.stream;
                let day = info.day;
                let purge_after = if stream.starts_with('_') {
                    None // system events are kept forever
                } else {
                    stele_policy::purge_after(&applied, stream, day)
                };
                let held_by: Vec<String> = view
                    .holds
                    .iter()
                    .filter(|h| h.covers(stream, day))
                    .map(|h| h.id.clone())
                    .collect();
                let due =
                    purge_after.is_some_and(|t| now >= t) && now >= day.end() && held_by.is_empty();
                EpochStatus {
                    segment: SegmentId(*id),
                    stream: stream.clone(),
                    epoch_day: day,
                    purge_after,
                    held_by,
                    due,
                }
            })
            .collect()
    }
}

/// The retention history: every applied version from its activation,
/// preceded by the shipped default from the beginning of time when
/// version 1 found data already written (that data was promised
/// "forever", and a later policy only ever lengthens what was written).
/// Empty when no version was applied (then everything is kept).
fn applied(policies: &[PolicyVersion]) -> Vec<AppliedPolicy<'_>> {
    let mut history = Vec::with_capacity(policies.len() + 1);
    if policies.first().is_some_and(|v| v.prior_data) {
        history.push(AppliedPolicy {
            activated_at: i64::MIN,
            policy: shipped_default_ref(),
        });
    }
    history.extend(policies.iter().map(|v| AppliedPolicy {
        activated_at: v.activated_at,
        policy: &v.policy,
    }));
    history
}

/// One line for the operator about a retention change; `None` when
/// nothing changed.
fn describe_change(change: &stele_policy::RetentionChange) -> Option<String> {
    use stele_policy::RetentionChange as C;
    Some(match change {
        C::Added { stream, retention } => format!("stream {stream}: new, {retention}"),
        C::Removed { stream, retention } => {
            format!("stream {stream}: no longer declared (had {retention})")
        }
        C::Lengthened { stream, old, new } => format!(
            "stream {stream}: retention lengthened from {old} to {new}; applies to data already written"
        ),
        C::Shortened { stream, old, new } => format!(
            "stream {stream}: retention shortened from {old} to {new}; applies only to epochs that begin after this version — data already written keeps {old}"
        ),
        C::Unchanged { .. } => return None,
        _ => format!("{change:?}"),
    })
}

/// Removes a file if present and makes the removal durable.
fn remove_durably(path: &std::path::Path) -> LogResult<()> {
    match stele_store::fileio::remove_file(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                fsutil::fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", path, e).into()),
    }
}

fn write_policy_file(dir: &std::path::Path, file: &PolicyFile) -> LogResult<()> {
    let mut bytes =
        serde_json::to_vec_pretty(file).map_err(|e| LogError::Internal(format!("policy: {e}")))?;
    bytes.push(b'\n');
    fsutil::atomic_replace(&dir.join(format!("{:06}.json", file.seq)), &bytes, 0o644)?;
    Ok(())
}

/// The holds of `holds.json` (none when it is absent), as the file says.
pub(crate) fn read_holds(holds_path: &Path) -> LogResult<Vec<Hold>> {
    match fsutil::read_optional(holds_path)? {
        None => Ok(Vec::new()),
        Some(bytes) => parse_holds(holds_path, &bytes),
    }
}

/// Every applied policy version of the data directory `root`, oldest
/// first, read without opening (or locking) the log: what a command that
/// runs beside the server (`stele token`) is governed by. Versions are
/// validated exactly as `Log::open` does.
pub fn read_policy_versions(root: &std::path::Path) -> LogResult<Vec<PolicyVersion>> {
    let dir = root.join("policies");
    let mut versions = Vec::new();
    if !dir.is_dir() {
        return Ok(versions);
    }
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))? {
        let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(seq) = name.strip_suffix(".json").and_then(|s| s.parse().ok()) {
            names.push((seq, path));
        }
    }
    names.sort();
    for (position, (seq, path)) in names.into_iter().enumerate() {
        if seq != position as u64 + 1 {
            return Err(LogError::Integrity(format!(
                "{}: policy versions must be numbered 1, 2, … without gaps (found {seq} at position {})",
                dir.display(),
                position + 1
            )));
        }
        versions.push(read_policy_file(&path, seq)?);
    }
    Ok(versions)
}

fn read_policy_file(path: &std::path::Path, seq: u64) -> LogResult<PolicyVersion> {
    let bad = |what: String| LogError::Integrity(format!("{}: {what}", path.display()));
    let bytes = fsutil::read(path)?;
    let file: PolicyFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.v != 1 || file.seq != seq {
        return Err(bad(format!(
            "version {} / seq {} (expected 1 / {seq})",
            file.v, file.seq
        )));
    }
    let source_bytes = B64
        .decode(&file.source)
        .map_err(|e| bad(format!("source: {e}")))?;
    let source = PolicySource::from_bytes(&source_bytes).map_err(|e| bad(e.to_string()))?;
    let policy = Policy::from_source(&source).map_err(|e| bad(e.to_string()))?;
    if hex(&policy.hash()) != file.hash {
        return Err(bad(format!(
            "the policy hashes to {}, not the recorded {}",
            hex(&policy.hash()),
            file.hash
        )));
    }
    Ok(PolicyVersion {
        seq,
        activated_at: file.activated_at,
        applied_by: file.applied_by,
        hash: file.hash,
        policy: Arc::new(policy),
        event_index: file.event_index,
        prior_data: file.prior_data,
    })
}

/// Re-checks a past purge against the recorded policy versions and
/// holds: at its decision time the epoch had ended, every policy
/// version since the epoch began had let its retention end, and no hold
/// then active covered it.
pub(crate) fn purge_was_allowed(
    policies: &[PolicyVersion],
    holds: &[Hold],
    t: &Tombstone,
) -> Result<(), String> {
    let epoch = format!("stream {:?} epoch {}", t.stream, t.epoch);
    if t.decided_at < t.epoch_day.end() {
        return Err(format!("{epoch} was purged before the epoch ended"));
    }
    // Only versions applied before the decision count.
    // Only versions applied before the decision count: before its
    // event in the log when it has one, else by time.
    let recorded_before = |v: &PolicyVersion| match (t.event_index, v.event_index) {
        (Some(purge_event), Some(version_event)) => version_event < purge_event,
        _ => v.activated_at <= t.decided_at,
    };
    let mut applied: Vec<AppliedPolicy<'_>> = Vec::new();
    if policies.first().is_some_and(|v| v.prior_data) {
        applied.push(AppliedPolicy {
            activated_at: i64::MIN,
            policy: shipped_default_ref(),
        });
    }
    applied.extend(
        policies
            .iter()
            .filter(|v| recorded_before(v))
            .map(|v| AppliedPolicy {
                activated_at: v.activated_at,
                policy: &v.policy,
            }),
    );
    let allowed_from = if t.stream.starts_with('_') {
        None
    } else {
        stele_policy::purge_after(&applied, &t.stream, t.epoch_day)
    };
    match allowed_from {
        None => {
            return Err(format!(
                "{epoch} was purged, but the policy keeps it forever"
            ));
        }
        Some(at) if t.decided_at < at => {
            return Err(format!(
                "{epoch} was purged at {} before its retention ended at {}",
                timestamp_text(t.decided_at),
                timestamp_text(at)
            ));
        }
        Some(at) if at != t.purge_after => {
            return Err(format!(
                "{epoch}: the purge record says retention ended at {}, the policy history says {}",
                timestamp_text(t.purge_after),
                timestamp_text(at)
            ));
        }
        Some(_) => {}
    }
    let decided = t.decided_at;
    let seconds = |text: &Option<String>| text.as_deref().and_then(|s| parse_timestamp(s).ok());
    for hold in holds {
        let mut as_active = hold.clone();
        as_active.released_at = None;
        if !as_active.covers(&t.stream, t.epoch_day) {
            continue;
        }
        // Was the hold active when the purge was decided? The log's
        // order answers exactly when both events are known (one writer
        // appends them in the order things happened); otherwise the
        // clock does, to the second.
        let active = match (t.event_index, hold.placed_event) {
            (Some(purge_event), Some(placed_event)) => {
                placed_event < purge_event
                    && hold
                        .released_event
                        .is_none_or(|released| released > purge_event)
            }
            _ => {
                let placed = seconds(&Some(hold.placed_at.clone())).unwrap_or(i64::MIN);
                let released = seconds(&hold.released_at).unwrap_or(i64::MAX);
                placed <= decided && decided < released
            }
        };
        if active {
            return Err(format!(
                "{epoch} was purged while hold {} covered it",
                hold.id
            ));
        }
    }
    Ok(())
}
