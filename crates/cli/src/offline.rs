//! `stele verify-proof`: checks a C2SP tlog-proof with nothing but the
//! log's verifier key, and optionally the event it proves; `stele
//! verify-bundle`: checks an evidence bundle (`docs/formats/bundle.md`)
//! the same way.
//!
//! Depends only on the public formats (stele-tlog, stele-event,
//! stele-bundle), never on a data directory.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use stele_bundle::{ConsistencyCheck, Report};
use stele_tlog::{Hash, TlogProof, Verifier, leaf_hash};

use crate::{CliResult, Failure, print_out, read_limited};

/// Longest proof file read: a tlog-proof is a checkpoint and at most 64
/// hashes, a few kilobytes.
const MAX_PROOF_FILE: u64 = 1 << 20;
/// Longest event file read (`stele get` output for the largest event).
const MAX_EVENT_FILE: u64 = 64 << 20;

fn decode_32(text: &str, what: &str) -> CliResult<[u8; 32]> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| Failure::usage(format!("{what}: not base64: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| Failure::usage(format!("{what}: not 32 bytes")))
}

/// The commitment of an event file as printed by `stele get`.
fn event_commitment(path: &Path) -> CliResult<[u8; 32]> {
    let text = read_limited(path, MAX_EVENT_FILE, "event file")?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Failure::usage(format!("{}: not JSON: {e}", path.display())))?;
    let salt = value
        .get("salt")
        .and_then(|s| s.as_str())
        .ok_or_else(|| Failure::usage(format!("{}: no \"salt\" string", path.display())))?;
    let salt = decode_32(salt, "salt")?;
    let envelope = value
        .get("event")
        .ok_or_else(|| Failure::usage(format!("{}: no \"event\" object", path.display())))?;
    let canonical = stele_event::envelope_canonical_from_json(envelope).map_err(|e| {
        Failure::refused(format!(
            "{}: event is not a valid envelope: {e}",
            path.display()
        ))
    })?;
    let commitment = stele_event::commitment(&salt, &canonical);
    if let Some(stated) = value.get("commitment").and_then(|c| c.as_str())
        && decode_32(stated, "commitment")? != commitment
    {
        return Err(Failure::refused(format!(
            "{}: the event and salt do not give the commitment stated in the file",
            path.display()
        )));
    }
    Ok(commitment)
}

pub fn verify_proof(
    vkey: &str,
    proof: &Path,
    event: Option<&Path>,
    commitment: Option<&str>,
) -> CliResult<u8> {
    let verifier = Verifier::from_vkey(vkey).map_err(|e| Failure::usage(format!("--vkey: {e}")))?;
    let bytes = read_limited(proof, MAX_PROOF_FILE, "proof file")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::refused(format!("{}: not a tlog-proof (not UTF-8)", proof.display()))
    })?;
    // A tlog-proof ends with exactly one newline (its last signature
    // line's); tools that print it as a JSON string's value (`jq -r
    // .proof`) add one more, and an editor may drop it.
    let text = format!("{}\n", text.trim_end_matches('\n'));
    let parsed = TlogProof::parse(&text)
        .map_err(|e| Failure::refused(format!("{}: {e}", proof.display())))?;
    let commitment = match (event, commitment) {
        (Some(path), _) => event_commitment(path)?,
        (None, Some(c)) => decode_32(c, "--commitment")?,
        (None, None) => {
            return Err(Failure::usage(
                "give the entry to check: --event FILE (from `stele get`) or --commitment B64 (from its receipt)",
            ));
        }
    };
    let checkpoint = parsed
        .verify(&leaf_hash(&commitment), &[&verifier], None)
        .map_err(|e| Failure::refused(format!("proof does not verify: {e}")))?;
    print_out(&format!(
        "OK: entry {} is in the log {:?} at tree size {} (root {})\n",
        parsed.index,
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root.to_base64()
    ))?;
    Ok(0)
}

/// `stele verify-bundle`: verifies the bundle `file` with the log's
/// verifier key, and against the tree `known` (size, base64 root) the
/// caller already holds; prints what it holds, or exits 1 naming what
/// failed (2 when the file cannot be read).
pub fn verify_bundle(vkey: &str, file: &Path, known: Option<(u64, &str)>) -> CliResult<u8> {
    let verifier = Verifier::from_vkey(vkey).map_err(|e| Failure::usage(format!("--vkey: {e}")))?;
    let known = match known {
        Some((size, root)) => Some((size, Hash(decode_32(root, "--known-root")?))),
        None => None,
    };
    let input = std::fs::File::open(file)
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let report =
        stele_bundle::verify(std::io::BufReader::new(input), &verifier, known).map_err(|e| {
            let message = format!("{}: does not verify: {e} [{}]", file.display(), e.code());
            if e.is_io() {
                Failure::usage(message)
            } else {
                Failure::refused(message)
            }
        })?;
    print_out(&bundle_report(file, &report))?;
    Ok(0)
}

/// The readable report of a verified bundle.
fn bundle_report(file: &Path, report: &Report) -> String {
    let checkpoint = &report.checkpoint;
    let mut out = format!(
        "OK: {} verifies: {} entries of the log {:?} at tree size {} (root {})\n",
        file.display(),
        report.events + report.purged,
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root.to_base64()
    );
    out.push_str(&match report.consistency {
        ConsistencyCheck::Checked { old_size } => {
            format!("consistency: extends the tree of size {old_size} you hold\n")
        }
        ConsistencyCheck::Unchecked { old_size } => format!(
            "consistency: proof from size {old_size} included, not checked (give --known-size and --known-root)\n"
        ),
        ConsistencyCheck::NotAsked => "consistency: not asked (no --known-size)\n".to_string(),
    });
    let range = match (report.first_index, report.last_index) {
        (Some(first), Some(last)) => format!(", indices {first} to {last}"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "entries: {} events, {} purged{range}\n",
        report.events, report.purged
    ));
    for epoch in &report.purged_epochs {
        let r = &epoch.record;
        out.push_str(&format!(
            "purged: stream {:?} epoch {} (segment {}): {} entries here, purge decided {} and recorded at entry {}\n",
            r.stream, r.epoch, r.segment, epoch.purged_in_bundle, r.decided_at, r.index
        ));
    }
    let manifest = &report.manifest.fields;
    out.push_str(&format!(
        "manifest: query {:?}, by {:?}, at {:?}\n",
        manifest.query, manifest.by, manifest.at
    ));
    out
}
