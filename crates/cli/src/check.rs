//! `stele check`: proves that a server's current checkpoint extends one the
//! client kept, so anyone holding an old checkpoint notices a rollback or a
//! fork.
//!
//! Fetches `GET /checkpoint` (public, no credentials), verifies its
//! signature with the verifier key given, and compares it with the kept
//! checkpoint: a smaller tree is a rollback, the same size with another
//! root a fork; a larger one must come with a consistency proof
//! (`GET /v1/proof/consistency?old=M&new=N`) that verifies against both
//! roots (RFC 9162 §2.1.4.2). Trusts nothing the server says beyond what
//! the signature and the proof establish; needs no data directory.
//!
//! Exit codes: 0 consistent, 1 failed (bad signature, rollback, fork,
//! inconsistent proof), 2 usage or network errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stele_tlog::{Checkpoint, Hash, Verifier};

use crate::bench_http::{Target, base_url, connect, endpoint, request};
use crate::{CliResult, Failure, read_limited};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Verifier key of the log (name+hash+base64), as `stele init` printed.
    #[arg(long)]
    vkey: String,
    /// The signed checkpoint kept from earlier (a copy of `GET /checkpoint`
    /// or of a data directory's `log/checkpoint`).
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Base URL of the server, e.g. https://audit.example.com:7800.
    #[arg(long)]
    url: String,
    /// PEM CA certificate(s) to trust for the server's certificate
    /// (required for https).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// After a successful check, replace the kept checkpoint with the
    /// server's (atomically), for the next check.
    #[arg(long)]
    save: bool,
}

/// Longest checkpoint accepted, from the file or the server.
const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024;
/// Longest consistency-proof answer accepted (64 hashes are 3 KiB).
const MAX_PROOF_BYTES: usize = 64 * 1024;
/// How long each request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: CheckArgs) -> CliResult<u8> {
    let verifier = Verifier::from_vkey(args.vkey.trim())
        .map_err(|e| Failure::usage(format!("--vkey: {e}")))?;
    let kept_note = read_limited(&args.checkpoint, MAX_CHECKPOINT_BYTES, "checkpoint file")?;
    let kept = open_note(&verifier, &kept_note).map_err(|e| {
        Failure::refused(format!(
            "FAIL: the kept checkpoint {} does not verify with --vkey: {e}",
            args.checkpoint.display()
        ))
    })?;
    let target = endpoint(
        base_url(&args.url)?,
        args.ca.as_deref(),
        false,
        REQUEST_TIMEOUT,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the runtime: {e}")))?;
    let (served_note, served) =
        runtime.block_on(fetch_checkpoint(&target, &args.url, &verifier))?;
    if served.origin != kept.origin {
        return Err(Failure::refused(format!(
            "FAIL: the server's checkpoint is for origin {:?}, the kept one for {:?}",
            served.origin, kept.origin
        )));
    }
    let both = format!(
        "kept size {} (root {}), server size {} (root {})",
        kept.size,
        kept.root.to_base64(),
        served.size,
        served.root.to_base64()
    );
    if served.size < kept.size {
        return Err(Failure::refused(format!(
            "FAIL: rollback: the server's tree is smaller than the checkpoint it signed before ({both})"
        )));
    }
    if served.size == kept.size {
        if served.root != kept.root {
            return Err(Failure::refused(format!(
                "FAIL: fork: the server signed two different trees of size {} ({both})",
                kept.size
            )));
        }
    } else if kept.size > 0 {
        let proof = runtime.block_on(fetch_proof(&target, &args.url, kept.size, served.size))?;
        stele_tlog::verify_consistency(kept.size, served.size, &proof, &kept.root, &served.root)
            .map_err(|e| {
                Failure::refused(format!(
                    "FAIL: fork: the server's tree does not extend the kept checkpoint; its consistency proof does not verify: {e} ({both})"
                ))
            })?;
    } else if kept.root != stele_tlog::empty_root() {
        return Err(Failure::refused(format!(
            "FAIL: the kept checkpoint of size 0 does not have the empty tree's root ({both})"
        )));
    }
    if args.save && served_note != kept_note {
        save(&args.checkpoint, &served_note)?;
    }
    let saved = if args.save {
        format!("; saved to {}", args.checkpoint.display())
    } else {
        String::new()
    };
    outln!("OK: the server's checkpoint extends the kept one: {both}{saved}")?;
    Ok(0)
}

/// Verifies a signed checkpoint note and parses its body.
fn open_note(verifier: &Verifier, note: &[u8]) -> Result<Checkpoint, String> {
    let opened = stele_tlog::open_note(note, &[verifier]).map_err(|e| e.to_string())?;
    Checkpoint::parse(&opened.text).map_err(|e| e.to_string())
}

/// One GET, its status and body (bounded).
async fn get(target: &Target, url: &str, path: &str, limit: usize) -> CliResult<Vec<u8>> {
    let mut sender = connect(target).await.map_err(|_| {
        Failure::usage(format!(
            "cannot connect to {url} (TLS handshake or TCP failed; check --url and --ca)"
        ))
    })?;
    let req = request(target, hyper::Method::GET, path, None);
    let (status, body) = sender
        .send(target, req)
        .await
        .map_err(|f| Failure::usage(format!("GET {url}{path} failed: {}", f.name())))?;
    if status != 200 {
        return Err(Failure::usage(format!(
            "GET {url}{path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
        )));
    }
    if body.len() > limit {
        return Err(Failure::usage(format!(
            "GET {url}{path}: answer larger than {limit} bytes"
        )));
    }
    Ok(body.to_vec())
}

async fn fetch_checkpoint(
    target: &Target,
    url: &str,
    verifier: &Verifier,
) -> CliResult<(Vec<u8>, Checkpoint)> {
    let note = get(target, url, "/checkpoint", MAX_CHECKPOINT_BYTES as usize).await?;
    let checkpoint = open_note(verifier, &note).map_err(|e| {
        Failure::refused(format!(
            "FAIL: bad signature: the checkpoint {url}/checkpoint serves does not verify with --vkey: {e}"
        ))
    })?;
    Ok((note, checkpoint))
}

async fn fetch_proof(target: &Target, url: &str, old: u64, new: u64) -> CliResult<Vec<Hash>> {
    let path = format!("/v1/proof/consistency?old={old}&new={new}");
    let body = get(target, url, &path, MAX_PROOF_BYTES).await?;
    let bad = |why: String| {
        Failure::refused(format!(
            "FAIL: the consistency proof {url}{path} serves is malformed: {why}"
        ))
    };
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value.get("old").and_then(|v| v.as_u64()) != Some(old)
        || value.get("new").and_then(|v| v.as_u64()) != Some(new)
    {
        return Err(bad(format!("it is not for sizes {old} and {new}")));
    }
    let hashes = value
        .get("proof")
        .and_then(|p| p.as_array())
        .ok_or_else(|| bad("no \"proof\" list".into()))?;
    hashes
        .iter()
        .map(|h| {
            h.as_str()
                .ok_or_else(|| bad("a proof hash is not a string".into()))
                .and_then(|text| Hash::from_base64(text).map_err(|e| bad(e.to_string())))
        })
        .collect()
}

/// Replaces the kept checkpoint with `note`: written to a sibling, synced,
/// renamed over it, so the file holds the old note or the new one.
fn save(path: &Path, note: &[u8]) -> CliResult<()> {
    stele_store::fsutil::atomic_replace(path, note, 0o644)
        .map_err(|e| Failure::usage(format!("--save: {e}")))
}
