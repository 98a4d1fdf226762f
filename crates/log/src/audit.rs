//! Longevity audits: re-verification on a schedule, checks that every
//! policy is still in effect, and signed attestations.
//!
//! The scheduler (in the server, or a test with its own clock) calls
//! [`Governance::verify_new_entries`] often, [`Governance::verify_full`] rarely and
//! [`Governance::attest`] on its interval. An attestation lists one [`Finding`] per
//! check, is signed with the log's key as a C2SP note over the SHA-256 of
//! its canonical JSON, and is appended as an `audit.attestation` system
//! event; `audit/latest.json` keeps the latest one for `stele audit report`.
//!
//! Files (atomic replace; a crash leaves the previous version, and the next
//! run simply repeats the work):
//! - `audit/state.json` — how far verification got (size and root), when
//!   the last full verification ran and what it found;
//! - `audit/latest.json` — the latest attestation, with its event index.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use stele_store::fsutil;

use crate::engine::open_checkpoint;
use crate::error::{LogError, LogResult};
use crate::governance::Governance;
use crate::ids::EntryIndex;
use crate::reader::LogReader;
use crate::tiles::{TileBuilder, TileSink};
use crate::verify::{self, NoProgress};
use stele_event::time::timestamp_text;
use stele_tlog::hash::hex;

/// Format version of the audit files and of the attestation body.
pub const AUDIT_VERSION: u32 = 1;

/// How far scheduled verification got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditState {
    pub v: u32,
    /// Entries `[0, verified_size)` were verified; `verified_root` (hex)
    /// is the root of that tree, checked against a signed checkpoint.
    pub verified_size: u64,
    pub verified_root: String,
    pub last_incremental_at: Option<i64>,
    /// Problems found by the last incremental run (empty when it passed).
    pub last_incremental_problems: Vec<String>,
    pub last_full_at: Option<i64>,
    pub last_full_ok: Option<bool>,
    pub last_full_problems: Vec<String>,
    pub last_attestation_at: Option<i64>,
}

/// One check of an attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable name, e.g. `retention.backlog`.
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// Longest `detail` of a finding, in bytes; longer ones are cut (at a
/// character boundary) and say how much was left out, so an attestation
/// always fits in one system event whatever went wrong.
pub const MAX_FINDING_DETAIL: usize = 2048;

/// Most problems one incremental verification collects before stopping.
pub const MAX_INCREMENTAL_PROBLEMS: usize = 100;

/// Entries per window of the scheduler's full verification: a few
/// milliseconds of work between two of its pacer's rests.
const PACED_WINDOW_ENTRIES: u64 = 4096;

/// Segment bytes per read of the scheduler's full verification (a short
/// read holds the kernel's attention for a short time).
const PACED_CHUNK_BYTES: usize = 1 << 20;

impl Finding {
    fn new(check: &str, ok: bool, detail: impl Into<String>) -> Finding {
        let mut detail: String = detail.into();
        if detail.len() > MAX_FINDING_DETAIL {
            let total = detail.len();
            let mut cut = MAX_FINDING_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push_str(&format!(" … ({} more bytes)", total - cut));
        }
        Finding {
            check: check.to_string(),
            ok,
            detail,
        }
    }
}

/// What the caller knows that the log does not: how it is served.
#[derive(Debug, Clone, Default)]
pub struct AuditFacts {
    /// Every listener (address, whether it speaks TLS); `None` when the
    /// log is not being served (an offline audit).
    pub listeners: Option<Vec<(std::net::SocketAddr, bool)>>,
    /// Hash (hex) of the policy the server enforces in memory.
    pub enforced_policy: Option<String>,
}

/// A signed statement of the audit findings at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub v: u32,
    pub at: String,
    pub origin: String,
    /// Hash (hex) and sequence number of the active policy (0: the shipped
    /// default, never applied).
    pub policy_hash: String,
    pub policy_seq: u64,
    /// The latest signed checkpoint when the attestation was made.
    pub checkpoint_size: u64,
    pub checkpoint_root: String,
    pub verified_size: u64,
    pub last_full_verify: Option<String>,
    pub findings: Vec<Finding>,
    pub ok: bool,
    /// C2SP signed note (by the log key) whose text is
    /// `stele attestation v1\n<origin>\n<hex SHA-256 of [`Self::body_digest`]>\n`.
    pub signature: String,
    /// Index of the `audit.attestation` event holding it.
    pub event_index: Option<u64>,
}

impl Attestation {
    /// SHA-256 of the compact JSON (`serde_json::to_vec`, members in
    /// declaration order) of this attestation with `signature` set to ""
    /// and `event_index` to null, the two members filled in after signing.
    pub fn body_digest(&self) -> [u8; 32] {
        let mut body = self.clone();
        body.signature = String::new();
        body.event_index = None;
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Sha256::digest(&bytes).into()
    }

    /// The text the signature note signs.
    pub fn signed_text(&self) -> String {
        format!(
            "stele attestation v1\n{}\n{}\n",
            self.origin,
            hex(&self.body_digest())
        )
    }

    /// Checks the signature with the log's verifier key.
    pub fn verify_signature(&self, verifier: &stele_tlog::Verifier) -> Result<(), String> {
        let opened = stele_tlog::open_note(self.signature.as_bytes(), &[verifier])
            .map_err(|e| format!("attestation signature: {e}"))?;
        if opened.text != self.signed_text() {
            return Err("the attestation does not match its signature (altered?)".into());
        }
        Ok(())
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut out = format!(
            "attestation of {} at {}: {}\n",
            self.origin,
            self.at,
            if self.ok {
                "ALL CHECKS PASSED"
            } else {
                "CHECKS FAILED"
            }
        );
        out.push_str(&format!(
            "policy {} (version {})\ncheckpoint size {} root {}\nverified entries: {}\nlast full verification: {}\n",
            self.policy_hash,
            self.policy_seq,
            self.checkpoint_size,
            self.checkpoint_root,
            self.verified_size,
            self.last_full_verify.as_deref().unwrap_or("never"),
        ));
        for f in &self.findings {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if f.ok { " ok " } else { "FAIL" },
                f.check,
                f.detail
            ));
        }
        if let Some(index) = self.event_index {
            out.push_str(&format!("recorded as event {index}\n"));
        }
        out
    }
}

pub(crate) fn audit_dir(root: &Path) -> PathBuf {
    root.join("audit")
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> LogResult<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| LogError::Internal(format!("audit: {e}")))?;
    bytes.push(b'\n');
    if let Some(parent) = path.parent() {
        fsutil::create_dir_durable(parent)?;
    }
    fsutil::atomic_replace(path, &bytes, 0o644)?;
    Ok(())
}

fn audit_state_path(root: &Path) -> PathBuf {
    audit_dir(root).join("state.json")
}

/// The saved audit state of the data directory `root` (default when none).
pub fn read_audit_state(root: &Path) -> LogResult<AuditState> {
    let path = audit_state_path(root);
    match fsutil::read_optional(&path)? {
        None => Ok(AuditState {
            v: AUDIT_VERSION,
            ..AuditState::default()
        }),
        Some(bytes) => {
            let state: AuditState = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Integrity(format!("{}: {e}", path.display())))?;
            check_version(&path, state.v)?;
            Ok(state)
        }
    }
}

/// The latest attestation of the data directory `root`, read without
/// opening (or locking) the log.
pub fn latest_attestation(root: &Path) -> LogResult<Option<Attestation>> {
    let path = audit_dir(root).join("latest.json");
    match fsutil::read_optional(&path)? {
        None => Ok(None),
        Some(bytes) => {
            let attestation: Attestation = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Integrity(format!("{}: {e}", path.display())))?;
            check_version(&path, attestation.v)?;
            Ok(Some(attestation))
        }
    }
}

/// Refuses a file of a format version this Stele does not read.
fn check_version(path: &Path, v: u32) -> LogResult<()> {
    if v == AUDIT_VERSION {
        return Ok(());
    }
    Err(LogError::Integrity(format!(
        "{}: format version {v}; this Stele reads version {AUDIT_VERSION}",
        path.display()
    )))
}

struct Discard;

impl TileSink for Discard {
    fn full(&mut self, _path: String, _bytes: Vec<u8>) -> LogResult<()> {
        Ok(())
    }
}

impl Governance<'_> {
    fn audit_state_path(&self) -> PathBuf {
        audit_state_path(&self.writer.layout().root)
    }

    /// Verifies the entries published since the last run
    /// ([`LogReader::check_new_entries`]) and records the outcome: on
    /// success the verified size moves forward; on failure it stays, and
    /// the problems are kept for the next attestation.
    pub fn verify_new_entries(&mut self, now: Timestamp) -> LogResult<Vec<String>> {
        let state = self.writer.reader().audit_state()?;
        let check = self.writer.reader().check_new_entries(&state)?;
        self.record_new_entries(&check, now)?;
        Ok(check.problems)
    }

    /// Records the outcome of [`LogReader::check_new_entries`] in
    /// `audit/state.json` (atomic replace: a crash leaves the old state or
    /// the new one).
    pub fn record_new_entries(&mut self, check: &NewEntriesCheck, now: Timestamp) -> LogResult<()> {
        let mut state = self.writer.reader().audit_state()?;
        if check.problems.is_empty() && check.size >= state.verified_size {
            state.verified_size = check.size;
            state.verified_root = check.root.clone();
        }
        state.v = AUDIT_VERSION;
        state.last_incremental_at = Some(now.as_second());
        state.last_incremental_problems = check.problems.clone();
        write_json(&self.audit_state_path(), &state)
    }

    /// Runs the whole-log verification (`stele verify`) and records its
    /// outcome for attestations.
    pub fn verify_full(&mut self, now: Timestamp) -> LogResult<verify::VerifyReport> {
        // A checkpoint requested but not yet signed would read as a
        // checkpoint that lags the index.
        self.writer.publish()?;
        let report = verify::verify(self.writer.reader(), &NoProgress)?;
        self.record_full_verify(&report, now)?;
        Ok(report)
    }

    /// Records a whole-log verification's outcome for attestations
    /// (atomic replace of `audit/state.json`). One that passed has checked
    /// every entry up to its latest signed checkpoint, so the verified size
    /// moves forward to it and the next incremental verification starts
    /// there.
    pub fn record_full_verify(
        &mut self,
        report: &verify::VerifyReport,
        now: Timestamp,
    ) -> LogResult<()> {
        let mut state = self.writer.reader().audit_state()?;
        state.v = AUDIT_VERSION;
        state.last_full_at = Some(now.as_second());
        state.last_full_ok = Some(report.ok());
        state.last_full_problems = report.problems.iter().map(|p| p.to_string()).collect();
        if let Some((size, root)) = report.signed
            && report.ok()
            && size > state.verified_size
        {
            state.verified_size = size;
            state.verified_root = root.to_hex();
        }
        write_json(&self.audit_state_path(), &state)
    }

    /// Checks that every policy is in effect, signs the findings and
    /// appends them as an `audit.attestation` system event, on the log's own
    /// behalf (the scheduled audits). Runs an incremental verification
    /// first.
    pub fn attest(&mut self, facts: &AuditFacts, now: Timestamp) -> LogResult<Attestation> {
        self.attest_as(facts, crate::governance::SYSTEM_WRITER, now)
    }

    /// [`Governance::attest`] on demand of `by` (an operator or an API principal),
    /// who is the `audit.attestation` event's actor.
    pub fn attest_as(
        &mut self,
        facts: &AuditFacts,
        by: &str,
        now: Timestamp,
    ) -> LogResult<Attestation> {
        self.writer.check_writable()?;
        let incremental = self.verify_new_entries(now)?;
        let state = self.writer.reader().audit_state()?;
        let policy = crate::governance::active_policy(&self.state.policies);
        let policy_hash = hex(&policy.hash());
        let mut findings = verification_findings(&incremental, &state, policy.audit(), now);
        findings.extend(self.retention_findings(now));
        findings.push(self.encryption_finding(&policy));
        findings.push(transport_finding(facts, &policy));
        findings.extend(policy_finding(facts, &policy_hash));
        findings.extend(self.key_findings(&policy, now));

        let note = self.writer.reader().checkpoint_note();
        let checkpoint = open_checkpoint(
            self.writer.reader().verifier(),
            &self.writer.meta().origin,
            note.as_bytes(),
        )
        .map_err(|e| LogError::Integrity(format!("latest checkpoint: {e}")))?;
        let ok = findings.iter().all(|f| f.ok);
        let attestation = Attestation {
            v: AUDIT_VERSION,
            at: now.to_string(),
            origin: self.writer.meta().origin.clone(),
            policy_hash,
            policy_seq: self.state.policies.last().map(|v| v.seq).unwrap_or(0),
            checkpoint_size: checkpoint.size,
            checkpoint_root: checkpoint.root.to_hex(),
            verified_size: state.verified_size,
            last_full_verify: state.last_full_at.map(timestamp_text),
            findings,
            ok,
            signature: String::new(),
            event_index: None,
        };
        self.sign_and_record(attestation, by, now)
    }

    /// Signs `attestation`, appends it as an `audit.attestation` event by
    /// `by` (the record: durable once this returns), then writes its copy
    /// `audit/latest.json` and the time of the last attestation. A crash
    /// between the event and the file is repaired at open, from the event
    /// (`reconcile_attestation`).
    fn sign_and_record(
        &mut self,
        mut attestation: Attestation,
        by: &str,
        now: Timestamp,
    ) -> LogResult<Attestation> {
        attestation.signature =
            stele_tlog::sign_note(&attestation.signed_text(), &[&self.state.attestor])
                .map_err(|e| LogError::Internal(format!("signing the attestation: {e}")))?;
        let event = crate::SystemEvent::AuditAttestation {
            actor: by.to_string(),
            attestation: Box::new(attestation.clone()),
        };
        let receipt = self.writer.append_system(&event, now)?;
        attestation.event_index = Some(receipt.index.0);
        write_json(
            &audit_dir(&self.writer.layout().root).join("latest.json"),
            &attestation,
        )?;
        let mut state = self.writer.reader().audit_state()?;
        state.last_attestation_at = Some(now.as_second());
        write_json(&self.audit_state_path(), &state)?;
        Ok(attestation)
    }

    /// `retention.backlog` (no epoch past its retention is still stored,
    /// unless held) and `retention.no_early_deletion` (every purge was
    /// allowed when it was made).
    fn retention_findings(&self, now: Timestamp) -> [Finding; 2] {
        let status = self.writer.reader().retention_status(now);
        let backlog: Vec<String> = status
            .iter()
            .filter(|s| s.due)
            .map(|s| format!("{} {}", s.stream, s.epoch_day))
            .collect();
        let backlog_finding = Finding::new(
            "retention.backlog",
            backlog.is_empty(),
            if backlog.is_empty() {
                format!(
                    "no epoch past its retention without a hold ({} stored, {} held)",
                    status.len(),
                    status.iter().filter(|s| !s.held_by.is_empty()).count()
                )
            } else {
                format!("past retention and not purged: {}", backlog.join(", "))
            },
        );

        let early: Vec<String> = self
            .state
            .purged
            .values()
            .filter_map(|t| {
                crate::governance::purge_was_allowed(&self.state.policies, &self.state.holds, t)
                    .err()
            })
            .collect();
        let early_finding = Finding::new(
            "retention.no_early_deletion",
            early.is_empty(),
            if early.is_empty() {
                format!(
                    "{} purged epochs, each after its retention and under no hold",
                    self.state.purged.len()
                )
            } else {
                early.join("; ")
            },
        );
        [backlog_finding, early_finding]
    }

    /// `encryption.at_rest`: every stored epoch is sealed under a wrapped
    /// data key, and its stream is governed by the policy.
    fn encryption_finding(&self, policy: &stele_policy::Policy) -> Finding {
        // Every stored epoch must be sealed under a wrapped data key, and
        // its stream declared with encryption required.
        let mut unencrypted = Vec::new();
        for (id, info) in self.writer.stored_segments() {
            let stream = &info.header.stream;
            if !self.writer.layout().dek(*id).exists() {
                unencrypted.push(format!("{stream} {}: data key file missing", info.day));
            }
            if !stream.starts_with('_') && policy.stream(stream).is_none() {
                unencrypted.push(format!("{stream}: not governed by the policy"));
            }
        }
        Finding::new(
            "encryption.at_rest",
            unencrypted.is_empty(),
            if unencrypted.is_empty() {
                format!(
                    "{} stored epochs, each sealed with AES-256-GCM under its own wrapped data key",
                    self.writer.stored_segments().len()
                )
            } else {
                unencrypted.join("; ")
            },
        )
    }

    /// Rebuilds `audit/latest.json` from the log's latest
    /// `audit.attestation` event (entry `latest`) when the file is missing
    /// or holds an earlier attestation: a crash between the event and the
    /// file, or a file removed or put back. A file that cannot be read is
    /// left for `verify` to report. The event is the record; the file is
    /// its copy for `stele audit report`.
    pub(crate) fn reconcile_attestation(&mut self, latest: Option<u64>) -> LogResult<()> {
        let Some(latest) = latest else {
            return Ok(());
        };
        let behind = match latest_attestation(&self.writer.layout().root) {
            Ok(None) => true,
            Ok(Some(kept)) => kept.event_index.is_some_and(|index| index < latest),
            Err(_) => false,
        };
        if !behind {
            return Ok(());
        }
        let event = self.writer.reader().get(EntryIndex(latest))?;
        let mut attributes = Value::Object(event.envelope.event.attributes.unwrap_or_default());
        if let Some(map) = attributes.as_object_mut() {
            map.insert("event_index".into(), Value::from(latest));
        }
        let attestation: Attestation = serde_json::from_value(attributes).map_err(|e| {
            LogError::Integrity(format!(
                "entry {latest} (audit.attestation in _system) is not an attestation: {e}"
            ))
        })?;
        // Atomic replace: the old file or the rebuilt one survives a crash.
        write_json(
            &audit_dir(&self.writer.layout().root).join("latest.json"),
            &attestation,
        )
    }

    /// Key ages against the policy's bounds.
    fn key_findings(&self, policy: &stele_policy::Policy, now: Timestamp) -> Vec<Finding> {
        let info = match self.writer.reader().kek_info() {
            Ok(info) => info,
            Err(e) => {
                return vec![Finding::new(
                    "keys.kek_age",
                    false,
                    format!("key-encryption key age unknown: {e}"),
                )];
            }
        };
        let age = now.as_second() - info.created_at;
        let detail_age = format!(
            "key-encryption key #{} ({}) created {}, {} days old",
            info.number,
            info.kind.as_str(),
            timestamp_text(info.created_at),
            age.max(0) / 86_400
        );
        match policy.keys().max_kek_age {
            None => vec![Finding::new(
                "keys.kek_age",
                true,
                format!("{detail_age}; no maximum age set"),
            )],
            Some(max) => {
                let max = max.as_secs() as i64;
                vec![Finding::new(
                    "keys.kek_age",
                    age <= max,
                    format!(
                        "{detail_age}; maximum {} days{}",
                        max / 86_400,
                        if age <= max {
                            ""
                        } else {
                            " — rotate it with `stele keys rotate`"
                        }
                    ),
                )]
            }
        }
    }
}

/// `verify.incremental` (the entries since the last verified size, just
/// checked: `problems` is what that found) and `verify.full` (the last
/// whole-log verification passed, recently enough for `schedule`).
fn verification_findings(
    problems: &[String],
    state: &AuditState,
    schedule: &stele_policy::AuditSchedule,
    now: Timestamp,
) -> Vec<Finding> {
    let incremental = if problems.is_empty() {
        Finding::new(
            "verify.incremental",
            true,
            format!("entries 0..{} verified", state.verified_size),
        )
    } else {
        Finding::new("verify.incremental", false, problems.join("; "))
    };

    let max_age = schedule.max_since_full_verify.as_secs() as i64;
    let full = match (state.last_full_at, state.last_full_ok) {
        (Some(at), Some(true)) if now.as_second() - at <= max_age => Finding::new(
            "verify.full",
            true,
            format!("last full verification {} passed", timestamp_text(at)),
        ),
        (Some(at), Some(true)) => Finding::new(
            "verify.full",
            false,
            format!(
                "last full verification {} is older than the allowed {}s",
                timestamp_text(at),
                max_age
            ),
        ),
        (Some(at), _) => Finding::new(
            "verify.full",
            false,
            format!(
                "last full verification {} failed: {}",
                timestamp_text(at),
                state.last_full_problems.join("; ")
            ),
        ),
        (None, _) => Finding::new("verify.full", false, "no full verification has run yet"),
    };
    vec![incremental, full]
}

/// `transport.tls`: every listener the server reports obeys the policy's
/// `[transport]`; true offline, with no listener.
fn transport_finding(facts: &AuditFacts, policy: &stele_policy::Policy) -> Finding {
    let transport = policy.transport();
    match &facts.listeners {
        None => Finding::new("transport.tls", true, "not serving (offline audit)"),
        Some(listeners) => {
            let violations: Vec<String> = listeners
                .iter()
                .filter_map(|(address, tls)| transport.check_listener(*address, *tls).err())
                .map(|v| v.to_string())
                .collect();
            let with_tls = listeners.iter().filter(|(_, tls)| *tls).count();
            if violations.is_empty() {
                Finding::new(
                    "transport.tls",
                    true,
                    format!(
                        "{} listeners, {with_tls} with TLS (TLS {:?})",
                        listeners.len(),
                        transport.tls
                    ),
                )
            } else {
                Finding::new("transport.tls", false, violations.join("; "))
            }
        }
    }
}

/// `policy.in_effect`: the server enforces the active version (only when
/// the server says which one it enforces).
fn policy_finding(facts: &AuditFacts, policy_hash: &str) -> Option<Finding> {
    let enforced = facts.enforced_policy.as_ref()?;
    Some(Finding::new(
        "policy.in_effect",
        *enforced == policy_hash,
        if *enforced == policy_hash {
            format!("the server enforces the active policy {policy_hash}")
        } else {
            format!(
                "the server enforces policy {enforced}, but the active version is {policy_hash}"
            )
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_finding_details_are_cut_at_a_character_boundary() {
        let short = Finding::new("x", true, "fine");
        assert_eq!(short.detail, "fine");
        let long = Finding::new("x", false, "é".repeat(MAX_FINDING_DETAIL));
        assert!(
            long.detail.len() < MAX_FINDING_DETAIL + 40,
            "{}",
            long.detail.len()
        );
        assert!(
            long.detail
                .ends_with(&format!(" … ({} more bytes)", MAX_FINDING_DETAIL))
        );
    }
}

/// What [`LogReader::check_new_entries`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntriesCheck {
    /// The size and root (hex) of the checkpoint checked up to.
    pub size: u64,
    pub root: String,
    /// Empty when every entry checked.
    pub problems: Vec<String>,
}

impl LogReader {
    /// The saved audit state (default when none).
    pub fn audit_state(&self) -> LogResult<AuditState> {
        read_audit_state(&self.layout().root)
    }

    /// Checks the entries published after `state`'s verified size: each
    /// one's record decrypts and matches its commitment (purged ones
    /// excepted), and the tree extended from the verified root by their
    /// commitments gives the root of the latest signed checkpoint. Reads
    /// only: the writer records the outcome ([`Governance::record_new_entries`]).
    pub fn check_new_entries(&self, state: &AuditState) -> LogResult<NewEntriesCheck> {
        let note = self.checkpoint_note();
        let checkpoint = open_checkpoint(self.verifier(), &self.meta().origin, note.as_bytes())
            .map_err(|e| LogError::Integrity(format!("latest checkpoint: {e}")))?;
        let mut problems = Vec::new();
        if checkpoint.size < state.verified_size {
            problems.push(format!(
                "the latest checkpoint (size {}) is smaller than the verified size {}",
                checkpoint.size, state.verified_size
            ));
            return Ok(NewEntriesCheck {
                size: checkpoint.size,
                root: checkpoint.root.to_hex(),
                problems,
            });
        }
        let mut tree = TileBuilder::load(&self.layout().public(), state.verified_size)?;
        if state.verified_size > 0 && tree.root().to_hex() != state.verified_root {
            problems.push(format!(
                "the tiles at size {} no longer give the verified root {}",
                state.verified_size, state.verified_root
            ));
        }
        let mut next = state.verified_size;
        'chunks: while next < checkpoint.size {
            let count = (checkpoint.size - next).min(4096);
            let records = self.index().read_range(next, count)?;
            for (offset, record) in records.iter().enumerate() {
                let index = next + offset as u64;
                tree.push(&record.commitment, &mut Discard)?;
                match self.read_record(index, record) {
                    Ok(_) | Err(LogError::Purged { .. }) => {}
                    Err(e) => problems.push(format!("entry {index}: {e}")),
                }
                if problems.len() >= MAX_INCREMENTAL_PROBLEMS {
                    problems.push(format!(
                        "stopped after {MAX_INCREMENTAL_PROBLEMS} problems at entry {index}"
                    ));
                    break 'chunks;
                }
            }
            next += count;
        }
        if problems.is_empty() && tree.root() != checkpoint.root {
            problems.push(format!(
                "entries {}..{} do not give the root of the signed checkpoint of size {}",
                state.verified_size, checkpoint.size, checkpoint.size
            ));
        }
        Ok(NewEntriesCheck {
            size: checkpoint.size,
            root: checkpoint.root.to_hex(),
            problems,
        })
    }

    /// The whole-log verification (`stele verify`), without progress, as
    /// the server's scheduler runs it beside the writer: on one thread, so
    /// the appends keep the other cores, and while the writer appends, in
    /// small windows at most `pace` of one core (full speed on a log
    /// nobody appends to). The writer records its outcome
    /// ([`Governance::record_full_verify`]).
    pub fn verify_full(&self, pace: verify::CpuPercent) -> LogResult<verify::VerifyReport> {
        let background = verify::Granularity {
            threads: 1,
            pace: Some(pace),
            chunk_bytes: PACED_CHUNK_BYTES,
            window_entries: PACED_WINDOW_ENTRIES,
        };
        verify::verify_with(self, &NoProgress, background)
    }
}
