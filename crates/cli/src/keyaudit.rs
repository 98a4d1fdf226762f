//! `stele keys` and `stele audit`: key-encryption key rotation and ages,
//! longevity audits and their signed attestations. Authorized as the local
//! operator like every command on a data directory (see [`crate::local`]).

use std::path::PathBuf;

use serde_json::{Value, json};
use stele_event::time::timestamp_text;
use stele_log::audit::{Attestation, AuditFacts, latest_attestation};
use stele_log::governance::SYSTEM_STREAM;
use stele_log::system_event::action;
use stele_log::{EntryIndex, KekAgeSource, KekInfo, Log, SegmentId, SystemEvent};
use stele_policy::{Action, Resource};
use stele_store::keys::{Argon2Params, NewKek};
use zeroize::Zeroizing;

use crate::local::{Operator, now};
use crate::{CliResult, DataArgs, Failure, open, print_out};

#[derive(Debug, clap::Subcommand)]
pub enum KeysAction {
    /// Replace the key-encryption key: every data key and the signing key
    /// are re-wrapped under a new one (no segment is re-encrypted).
    Rotate {
        #[command(flatten)]
        data: DataArgs,
        /// Derive the new KEK from a new passphrase (Argon2id), read from
        /// STELE_NEW_PASSPHRASE or --new-passphrase-file; otherwise a new
        /// random KEK is stored in keys/kek.key.
        #[arg(long)]
        passphrase: bool,
        /// File holding the new passphrase (with --passphrase).
        #[arg(long, value_name = "FILE", requires = "passphrase")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// The key-encryption key's number, kind and age, and every data key's
    /// age, flagged against the policy's [keys] max_kek_age.
    Info {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Verify new entries, verify the whole log, then sign and record an
    /// attestation now; prints it. Exit code 1 when a check failed.
    Run {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the latest attestation after checking its signature and that
    /// the log holds it. Exit code 1 when there is none, it does not
    /// verify, or it reports a failed check.
    Report {
        #[command(flatten)]
        data: DataArgs,
        /// The attestation as JSON (as `GET /v1/audit/latest` answers).
        #[arg(long)]
        json: bool,
        /// Check the signature against this verifier key (name+hash+base64)
        /// instead of the one in the data directory's meta.json.
        #[arg(long)]
        vkey: Option<String>,
    },
}

const DAY: i64 = 86_400;

fn new_passphrase(file: Option<&std::path::Path>) -> CliResult<Zeroizing<String>> {
    let pass = match file {
        Some(path) => {
            let bytes = crate::read_limited(path, crate::MAX_PASSPHRASE_FILE, "new passphrase file")?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Failure::usage(format!("new passphrase file {}: not UTF-8", path.display()))
            })?;
            Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string())
        }
        None => std::env::var("STELE_NEW_PASSPHRASE")
            .map(Zeroizing::new)
            .map_err(|_| {
                Failure::usage(
                    "--passphrase needs the new passphrase in STELE_NEW_PASSPHRASE or --new-passphrase-file",
                )
            })?,
    };
    if pass.chars().count() < 12 {
        return Err(Failure::usage(
            "the new passphrase must be at least 12 characters",
        ));
    }
    Ok(pass)
}

pub fn keys(action: KeysAction) -> CliResult<u8> {
    let at = now()?;
    match action {
        KeysAction::Rotate {
            data,
            passphrase,
            new_passphrase_file,
        } => {
            // The new key is settled before the log is touched.
            let new = if passphrase {
                NewKek::Passphrase {
                    passphrase: new_passphrase(new_passphrase_file.as_deref())?,
                    params: Argon2Params::default(),
                }
            } else {
                NewKek::Random
            };
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::KeyRotate, Resource::Log, at)?;
            // Recorded by the engine as a `key.rotated` system event.
            let info = log
                .governance()
                .rotate_kek_as(new, &operator.principal, at)?;
            let data_keys = log.reader().data_key_ages()?.len();
            let event_index = log.reader().size() - 1;
            log.writer().publish()?;
            print_out(&format!(
                "rotated the key-encryption key: now #{} ({}), created {}; {data_keys} data keys and the signing key re-wrapped (event {})\n",
                info.number,
                info.kind.as_str(),
                timestamp_text(info.created_at),
                event_index
            ))?;
            if passphrase {
                eprintln!(
                    "stele: from now on this log opens only with the new passphrase (STELE_PASSPHRASE or --passphrase-file)"
                );
            }
            Ok(0)
        }
        KeysAction::Info { data, json } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            // Key ages are audit information.
            operator.authorize(&mut log, Action::AuditReport, Resource::Log, at)?;
            info(&log, json, at)
        }
    }
}

fn info(log: &Log, as_json: bool, at: jiff::Timestamp) -> CliResult<u8> {
    let kek: KekInfo = log.reader().kek_info()?;
    let policy = log.reader().active_policy();
    let max = policy.keys().max_kek_age;
    let too_old = policy.keys().kek_too_old(kek.created_at, at.as_second());
    let age_days = (at.as_second() - kek.created_at).max(0) / DAY;
    // Segment id -> (stream, epoch) for the stored epochs.
    let segments: std::collections::HashMap<SegmentId, (String, String)> = log
        .reader()
        .retention_status(at)
        .into_iter()
        .map(|s| (s.segment, (s.stream, s.epoch_day.to_string())))
        .collect();
    let data_keys = log.reader().data_key_ages()?;
    let source = match kek.source {
        KekAgeSource::Recorded => "recorded",
        KekAgeSource::KeyFileModified => "key file time",
    };
    if as_json {
        let keys: Vec<Value> = data_keys
            .iter()
            .map(|(id, created)| {
                let (stream, epoch) = segments.get(id).cloned().unzip();
                json!({
                    "segment": id,
                    "stream": stream,
                    "epoch": epoch,
                    "created_at": timestamp_text(*created),
                    "age_days": (at.as_second() - created).max(0) / DAY,
                })
            })
            .collect();
        let body = json!({
            "kek": {
                "number": kek.number,
                "kind": kek.kind.as_str(),
                "created_at": timestamp_text(kek.created_at),
                "created_from": source,
                "age_days": age_days,
                "max_age_days": max.map(|m| m.as_secs() / DAY as u64),
                "too_old": too_old,
            },
            "data_keys": keys,
        });
        let text =
            serde_json::to_string_pretty(&body).map_err(|e| Failure::usage(e.to_string()))?;
        print_out(&format!("{text}\n"))?;
        return Ok(0);
    }
    let mut out = format!(
        "key-encryption key #{} ({}), created {} ({source}), {age_days} days old; ",
        kek.number,
        kek.kind.as_str(),
        timestamp_text(kek.created_at)
    );
    match max {
        None => out.push_str("the policy sets no maximum age\n"),
        Some(max) if too_old => out.push_str(&format!(
            "TOO OLD: the policy's maximum is {} days — rotate it with `stele keys rotate`\n",
            max.as_secs() / DAY as u64
        )),
        Some(max) => out.push_str(&format!(
            "within the policy's maximum of {} days\n",
            max.as_secs() / DAY as u64
        )),
    }
    out.push_str(&format!("data keys: {}\n", data_keys.len()));
    for (id, created) in &data_keys {
        let (stream, epoch) = segments
            .get(id)
            .cloned()
            .unwrap_or_else(|| ("-".into(), "-".into()));
        out.push_str(&format!(
            "  segment {id}\t{stream}\t{epoch}\tcreated {}\t{} days old\n",
            timestamp_text(*created),
            (at.as_second() - created).max(0) / DAY
        ));
    }
    print_out(&out)?;
    Ok(0)
}

pub fn audit(action: AuditAction) -> CliResult<u8> {
    let at = now()?;
    match action {
        AuditAction::Run { data } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::AuditRun, Resource::Log, at)?;
            for problem in log.governance().verify_new_entries(at)? {
                eprintln!("FAIL incremental: {problem}");
            }
            let report = log.governance().verify_full(at)?;
            for problem in &report.problems {
                eprintln!("FAIL {problem}");
            }
            // Offline: no listeners, no server policy to compare.
            let attestation =
                log.governance()
                    .attest_as(&AuditFacts::default(), &operator.principal, at)?;
            log.writer().publish()?;
            print_out(&attestation.render())?;
            if attestation.ok {
                Ok(0)
            } else {
                Err(failed_checks(&attestation))
            }
        }
        AuditAction::Report { data, json, vkey } => {
            let mut log = open(&data)?;
            let operator = Operator::of(&log);
            operator.authorize(&mut log, Action::AuditReport, Resource::Log, at)?;
            let attestation = latest_attestation(&data.data)?.ok_or_else(|| {
                Failure::refused("no attestation has been made yet; run `stele audit run`")
            })?;
            let verifier = match &vkey {
                Some(key) => stele_tlog::Verifier::from_vkey(key)
                    .map_err(|e| Failure::usage(format!("--vkey: {e}")))?,
                None => log.reader().verifier().clone(),
            };
            attestation
                .verify_signature(&verifier)
                .map_err(|e| Failure::refused(format!("the latest attestation: {e}")))?;
            let index = check_recorded(&log, &attestation)?;
            if json {
                let text = serde_json::to_string_pretty(&attestation)
                    .map_err(|e| Failure::usage(e.to_string()))?;
                print_out(&format!("{text}\n"))?;
            } else {
                print_out(&format!(
                    "{}signature: verified with key {}\nlog: event {index} holds this attestation\n",
                    attestation.render(),
                    verifier.name()
                ))?;
            }
            if attestation.ok {
                Ok(0)
            } else {
                Err(failed_checks(&attestation))
            }
        }
    }
}

fn failed_checks(attestation: &Attestation) -> Failure {
    let failed: Vec<&str> = attestation
        .findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.check.as_str())
        .collect();
    Failure::refused(format!(
        "the attestation of {} reports failed checks: {}",
        attestation.at,
        failed.join(", ")
    ))
}

/// `audit/latest.json` is a convenience copy: the attestation must be the
/// one its `audit.attestation` event in the log holds.
fn check_recorded(log: &Log, attestation: &Attestation) -> CliResult<u64> {
    let index = attestation.event_index.ok_or_else(|| {
        Failure::refused("the latest attestation names no audit.attestation event")
    })?;
    let stored = log.reader().get(EntryIndex(index))?;
    let event = &stored.envelope.event;
    let expected = SystemEvent::AuditAttestation {
        actor: event.actor.clone(),
        attestation: Box::new(attestation.clone()),
    }
    .attributes();
    let recorded = event.attributes.clone().map(Value::Object);
    if stored.envelope.stream != SYSTEM_STREAM
        || event.action != action::AUDIT_ATTESTATION
        || recorded.as_ref() != Some(&expected)
    {
        return Err(Failure::refused(format!(
            "the latest attestation (audit/latest.json) is not the one recorded by event {index}"
        )));
    }
    Ok(index)
}
