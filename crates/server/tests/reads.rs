#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reads: GET /v1/events/{index} is audited in `_system`; the public
//! tlog-tiles data (checkpoint, tiles, consistency proofs) verifies offline;
//! /metrics, /openapi.json, /healthz and /readyz.

mod common;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_server::tokens::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_audited_in_system_stream() {
    let server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let auditor = server.token("auditor", &[Role::reader()]);
    let admin = server.admin_token.clone();
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        &json!([
            {"actor": "a", "action": "x", "stream": "payments"},
            {"actor": "b", "action": "y"},
        ]),
    )
    .await;
    assert_eq!(r.status, 200);
    // After the token grants: the first of the two events.
    let a = r.json["receipts"][0]["index"].as_u64().unwrap();
    assert_eq!(a, 3, "after three token.created events");

    // Entry a read by the auditor: the audit record is the next entry.
    let read = server.get_event(&client, &auditor, a).await;
    assert_eq!(read["event"]["event"]["actor"], "a");
    let audit = server.get_event(&client, &admin, a + 2).await;
    let envelope = &audit["event"];
    assert_eq!(envelope["stream"], "_system");
    assert_eq!(envelope["writer"], "stele");
    assert_eq!(envelope["event"]["actor"], "auditor");
    assert_eq!(envelope["event"]["action"], "event.read");
    assert_eq!(envelope["event"]["resource"], format!("events/{a}"));
    assert_eq!(envelope["event"]["outcome"], "success");
    assert_eq!(envelope["event"]["attributes"]["method"], "token");
    assert_eq!(envelope["event"]["attributes"]["stream"], "payments");
    verify_proof(&server, &audit, a + 2);
    // The admin's read of entry a + 2 was itself audited as entry a + 3.
    let audit = server.get_event(&client, &admin, a + 3).await;
    assert_eq!(audit["event"]["stream"], "_system");
    assert_eq!(audit["event"]["event"]["actor"], "admin");
    assert_eq!(
        audit["event"]["event"]["resource"],
        format!("events/{}", a + 2)
    );
    assert_eq!(audit["event"]["event"]["attributes"]["stream"], "_system");

    // A read with a client certificate names the certificate's principal.
    let cert_reader = server.client_with(&server.pki.reader_client);
    let r = send(cert_reader.get(server.url(&format!("/v1/events/{}", a + 1)))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(cert_reader);
    let next = log_size(&server, &client).await - 1;
    let audit = server.get_event(&client, &admin, next).await;
    assert_eq!(audit["event"]["stream"], "_system");
    assert_eq!(audit["event"]["event"]["actor"], "svc-reader");
    assert_eq!(
        audit["event"]["event"]["resource"],
        format!("events/{}", a + 1)
    );
    assert_eq!(audit["event"]["event"]["attributes"]["method"], "mtls");

    // Refused or impossible reads are not audited as reads and are 4xx;
    // the one denied by the access policy is recorded as `access.denied`.
    let before = server.probe(&client, &writer).await;
    let r = send(
        client
            .get(server.url("/v1/events/100000"))
            .bearer_auth(&auditor),
    )
    .await;
    assert_error(&r, 404, "not_found");
    let r = send(
        client
            .get(server.url("/v1/events/abc"))
            .bearer_auth(&auditor),
    )
    .await;
    assert_error(&r, 400, "invalid_index");
    let r = send(
        client
            .get(server.url("/v1/events/-1"))
            .bearer_auth(&auditor),
    )
    .await;
    assert_error(&r, 400, "invalid_index");
    for odd in [
        "+0",
        "%2B1",
        "%200",
        "18446744073709551616",
        "01",
        "00",
        "0001",
    ] {
        let r = send(
            client
                .get(server.url(&format!("/v1/events/{odd}")))
                .bearer_auth(&auditor),
        )
        .await;
        assert_error(&r, 400, "invalid_index");
        assert_eq!(r.json["error"]["field"], "index", "{}", r.text);
    }
    let r = send(
        client
            .get(server.url(&format!("/v1/events/{a}")))
            .bearer_auth(&writer),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    let after = server.probe(&client, &writer).await;
    assert_eq!(after, before + 2, "the denial and the probe");
    let denial = server.get_event(&client, &admin, before + 1).await;
    assert_eq!(denial["event"]["stream"], "_system");
    assert_eq!(denial["event"]["event"]["action"], "access.denied");
    assert_eq!(denial["event"]["event"]["actor"], "writer");
    assert_eq!(denial["event"]["event"]["resource"], format!("events/{a}"));
    assert_eq!(denial["event"]["event"]["attributes"]["stream"], "payments");
    assert_eq!(denial["event"]["event"]["attributes"]["requested"], "read");

    // Reading the newest entry works before the periodic publish: the
    // server publishes on demand so the proof covers it.
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        &json!({"actor": "fresh", "action": "new"}),
    )
    .await;
    let receipt = &r.json["receipts"][0];
    verify_receipt(&server, &client, &auditor, receipt).await;

    drop(client);
    server.stop().await;
}

fn checkpoint_of(server: &TestServer, note: &str) -> stele_tlog::Checkpoint {
    let verifier = server.verifier();
    let note = stele_tlog::open_note(note.as_bytes(), &[&verifier]).unwrap();
    stele_tlog::Checkpoint::parse(&note.text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_tiles_and_consistency_verify() {
    let server = start(|_| {}).await;
    let client = server.client();
    // The only token, so the only grant: `token.created` is entry 0.
    let writer = server.admin_token.clone();
    let url = server.url("/v1/events");
    let grant = stele_log::sequencer::lock_log(&server.served_log())
        .reader()
        .get(EntryIndex(0))
        .unwrap();
    assert_eq!(grant.envelope.event.action, "token.created");
    let grant = json!({"index": 0, "commitment": base64_of(grant.commitment.as_ref())});

    // A small log: 5 entries (the grant and 4 events).
    let batch: Vec<Value> = (0..4)
        .map(|n| json!({"actor": "a", "action": format!("n{n}")}))
        .collect();
    let r = post_json(&client, &url, Some(&writer), &Value::Array(batch)).await;
    assert_eq!(r.status, 200);
    let receipts: Vec<Value> = std::iter::once(grant)
        .chain(r.json["receipts"].as_array().unwrap().iter().cloned())
        .collect();
    let small = server.wait_checkpoint(&client, 5).await;
    assert_eq!(small.size, 5);
    assert_eq!(small.origin, server.config.origin);

    // /checkpoint is a signed note: another key does not open it.
    let r = send(client.get(server.url("/checkpoint"))).await;
    assert_eq!(r.headers["cache-control"], "no-cache");
    let stranger = stele_tlog::Signer::new(&server.config.origin, [7u8; 32]).unwrap();
    assert!(stele_tlog::open_note(r.text.as_bytes(), &[&stranger.verifier()]).is_err());

    // The partial level-0 tile holds exactly the entries' leaf hashes.
    let r = send(client.get(server.url("/tile/0/000.p/5"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes.len(), 5 * 32);
    let cache = r.headers["cache-control"].to_str().unwrap();
    assert!(
        !cache.contains("immutable"),
        "a partial tile is not immutable: {cache}"
    );
    for (n, receipt) in receipts.iter().enumerate() {
        let leaf = stele_tlog::leaf_hash(&b64(&receipt["commitment"]));
        assert_eq!(&r.bytes[n * 32..(n + 1) * 32], leaf.as_ref(), "leaf {n}");
    }
    // The partial entry bundle holds the commitments themselves, each
    // after its 16-bit big-endian length (C2SP tlog-tiles).
    let r = send(client.get(server.url("/tile/entries/000.p/5"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes, entry_bundle(&receipts));
    let tree = stele_tlog::MemoryTree::from_leaves(
        &receipts
            .iter()
            .map(|r| stele_tlog::leaf_hash(&b64(&r["commitment"])))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(tree.root(), small.root);

    // Grow past one full tile.
    let batch: Vec<Value> = (0..300)
        .map(|n| json!({"actor": "b", "action": format!("m{n}")}))
        .collect();
    let r = post_json(&client, &url, Some(&writer), &Value::Array(batch)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let all: Vec<Value> = receipts
        .iter()
        .chain(r.json["receipts"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(all.len(), 305);
    let big = server.wait_checkpoint(&client, 305).await;
    assert_eq!(big.size, 305);
    let r = send(client.get(server.url("/tile/0/000"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes.len(), 256 * 32);
    let cache = r.headers["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("immutable"),
        "a full tile is immutable: {cache}"
    );
    assert_eq!(&r.bytes[..5 * 32], &tree_leaves(&receipts)[..]);
    assert_eq!(r.bytes, tree_leaves(&all[..256]));
    let r = send(client.get(server.url("/tile/entries/000"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes, entry_bundle(&all[..256]));
    let cache = r.headers["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("immutable"),
        "a full bundle is immutable: {cache}"
    );
    let r = send(client.get(server.url("/tile/entries/001.p/49"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes, entry_bundle(&all[256..]));
    // The partial bundle of an earlier checkpoint is still served (from
    // the full one, once the tile is complete).
    let r = send(client.get(server.url("/tile/entries/000.p/5"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes, entry_bundle(&receipts));
    let r = send(client.get(server.url("/tile/0/001.p/49"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes.len(), 49 * 32);
    let r = send(client.get(server.url("/tile/1/000.p/1"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.bytes.len(), 32);

    // Tiles that do not exist, malformed paths, and paths that try to
    // leave the tile tree are 404s that leak nothing.
    for path in [
        "/tile/0/002",
        "/tile/0/000.p/999",
        "/tile/x/y",
        "/tile/0/..%2f..%2ftokens.json",
        "/tile/..%2ftokens.json",
        "/tile/0%2f..%2f..%2f..%2fmeta.json",
    ] {
        let r = send(client.get(server.url(path))).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert!(!r.text.contains("secret_sha256"), "{path}");
    }

    // /v1/checkpoints lists the published history, each a signed note.
    let r = send(client.get(server.url("/v1/checkpoints"))).await;
    assert_eq!(r.status, 200);
    let history = r.json["checkpoints"].as_array().unwrap();
    let by_size = |size: u64| {
        history
            .iter()
            .find(|c| c["size"] == size)
            .map(|c| checkpoint_of(&server, c["note"].as_str().unwrap()))
    };
    let old = by_size(5).expect("checkpoint of size 5 in the history");
    let new = by_size(305).expect("checkpoint of size 305 in the history");
    assert_eq!(old, small);
    assert_eq!(new, big);

    // The history pages: walking `next` one checkpoint at a time gives the
    // same list, in tree-size order, and ends with `next: null`.
    let count = r.json["count"].as_u64().unwrap();
    assert_eq!(count, history.len() as u64);
    assert!(r.json["next"].is_null());
    let mut walked = Vec::new();
    let mut from = Some(0u64);
    while let Some(at) = from {
        let r = send(client.get(server.url(&format!("/v1/checkpoints?from={at}&limit=1")))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["checkpoints"].as_array().unwrap().len(), 1);
        walked.push(r.json["checkpoints"][0].clone());
        from = r.json["next"].as_u64();
        assert!(walked.len() as u64 <= count, "next never ends");
    }
    assert_eq!(&walked, history);
    assert!(
        walked
            .windows(2)
            .all(|w| w[0]["size"].as_u64() < w[1]["size"].as_u64())
    );
    let r = send(client.get(server.url(&format!("/v1/checkpoints?from={count}")))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["checkpoints"], json!([]));
    assert!(r.json["next"].is_null());
    let r = send(client.get(server.url("/v1/checkpoints?from=1&limit=2"))).await;
    assert_eq!(r.json["checkpoints"].as_array().unwrap()[..], history[1..3]);
    let after = if count > 3 { json!(3) } else { Value::Null };
    assert_eq!(r.json["next"], after);
    for bad in ["limit=0", "limit=1001", "from=abc", "from=-1", "size=3"] {
        let r = send(client.get(server.url(&format!("/v1/checkpoints?{bad}")))).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.json["error"]["code"], "invalid_query", "{bad}");
    }

    // Consistency between the two verifies offline, and not against a
    // wrong root.
    let r = send(client.get(server.url("/v1/proof/consistency?old=5&new=305"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let proof: Vec<stele_tlog::Hash> = r.json["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| stele_tlog::Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect();
    stele_tlog::verify_consistency(5, 305, &proof, &old.root, &new.root).unwrap();
    assert!(stele_tlog::verify_consistency(5, 305, &proof, &new.root, &new.root).is_err());
    // `new` defaults to the latest checkpoint.
    let r = send(client.get(server.url("/v1/proof/consistency?old=5"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let latest = server.checkpoint(&client).await;
    assert_eq!(r.json["new"], latest.size);
    // Bad queries are 4xx.
    for (query, status) in [
        ("", 400),
        ("?old=0&new=5", 400),
        ("?old=6&new=5", 400),
        ("?old=abc", 400),
        ("?old=1&new=2&x=1", 400),
        ("?old=5&new=77", 404),
    ] {
        let r = send(client.get(server.url(&format!("/v1/proof/consistency{query}")))).await;
        assert_eq!(r.status, status, "{query}: {}", r.text);
        assert!(r.json["error"]["code"].is_string(), "{query}: {}", r.text);
    }

    drop(client);
    server.stop().await;
}

/// The C2SP entry bundle of these receipts' commitments.
fn entry_bundle(receipts: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for receipt in receipts {
        let commitment = b64(&receipt["commitment"]);
        out.extend_from_slice(&(commitment.len() as u16).to_be_bytes());
        out.extend_from_slice(&commitment);
    }
    out
}

fn tree_leaves(receipts: &[Value]) -> Vec<u8> {
    receipts
        .iter()
        .flat_map(|r| stele_tlog::leaf_hash(&b64(&r["commitment"])).0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_openapi_and_health() {
    let server = start(|_| {}).await;
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        &json!([{"actor": "a", "action": "b"}, {"actor": "a", "action": "c"}]),
    )
    .await;
    assert_eq!(r.status, 200);
    let _ = post_json(&client, &server.url("/v1/events"), None, &json!({})).await;
    let r = post_raw(
        &client,
        &server.url("/v1/events"),
        Some(&writer),
        Some("text/csv"),
        b"a,b".to_vec(),
    )
    .await;
    assert_error(&r, 415, "unsupported_content_type");
    // Two events after two token grants (admin, writer).
    server.wait_checkpoint(&client, 4).await;

    let r = send(client.get(server.url("/metrics"))).await;
    assert_eq!(r.status, 200);
    let metric = |name: &str| -> f64 {
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{}", r.text))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(metric("stele_events_ingested_total"), 2.0);
    assert_eq!(metric("stele_log_size"), 4.0);
    // The search index is on by default, has not failed, and holds the
    // events (it may still be catching up with the newest).
    assert_eq!(metric("stele_search_index_failed"), 0.0);
    assert!(metric("stele_search_index_behind_entries") <= 4.0);
    assert!(metric("stele_search_index_bytes") > 0.0);
    assert_eq!(metric("stele_search_parts_refused"), 0.0);
    assert_eq!(metric("stele_search_parts_write_failed"), 0.0);
    // The raw bytes of the two events as sent (`{"action":"b","actor":"a"}`).
    assert_eq!(metric("stele_bytes_ingested_total"), 52.0);
    // One batch of two events; nothing waiting.
    assert_eq!(metric("stele_batch_events_count"), 1.0);
    assert_eq!(metric("stele_batch_events_sum"), 2.0);
    assert_eq!(metric("stele_batches_total"), 1.0);
    assert_eq!(metric("stele_batch_errors_total"), 0.0);
    assert_eq!(metric("stele_queue_depth"), 0.0);
    let age = metric("stele_checkpoint_age_seconds");
    assert!((0.0..60.0).contains(&age), "{age}");
    // The unauthenticated request and the malformed one, by category.
    assert_eq!(metric("stele_errors_total{category=\"auth\"}"), 1.0);
    assert_eq!(metric("stele_errors_total{category=\"input\"}"), 1.0);
    assert!(r.text.contains("stele_commit_seconds_bucket"), "{}", r.text);
    // Every flush of the batch above is timed, per file.
    for file in ["segment", "index"] {
        let count = metric(&format!("stele_fsync_seconds_count{{file=\"{file}\"}}"));
        assert!(count >= 1.0, "{file}: {count}");
        let all = metric(&format!(
            "stele_fsync_seconds_bucket{{file=\"{file}\",le=\"+Inf\"}}"
        ));
        assert_eq!(all, count, "{file}");
        let slowest = metric(&format!(
            "stele_fsync_seconds_bucket{{file=\"{file}\",le=\"1\"}}"
        ));
        assert!(slowest <= count, "{file}");
    }
    assert!(
        r.text
            .contains("stele_http_responses_total{status=\"401\"}"),
        "{}",
        r.text
    );

    let r = send(client.get(server.url("/openapi.json"))).await;
    assert_eq!(r.status, 200);
    validate_openapi(&r.text);
    let paths = r.json["paths"].as_object().expect("openapi.json has paths");
    for path in [
        "/v1/events",
        "/v1/events/{index}",
        "/v1/ingest/kubernetes",
        "/v1/proof/consistency",
        "/v1/checkpoints",
        "/v1/export",
        "/v1/query",
        "/v1/search",
        "/v1/exports",
        "/checkpoint",
    ] {
        assert!(paths.contains_key(path), "{path} not documented");
    }

    let r = send(client.get(server.url("/healthz"))).await;
    assert_eq!(r.status, 200);
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 200);
    let r = send(client.get(server.url("/no/such/route"))).await;
    assert_eq!(r.status, 404);

    // The proof in a read is plain C2SP tlog-proof text.
    let admin = server.admin_token.clone();
    let read = server.get_event(&client, &admin, 0).await;
    let text = read["proof"].as_str().unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\n"), "{text}");

    drop(client);
    server.stop().await;
}

/// A read is decided before anything else happens: a caller who may not
/// read an entry that no checkpoint covers yet is refused without a
/// checkpoint being published for it; an authorized read of the same
/// entry then waits for one and returns a proof that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_publishes_nothing() {
    // No periodic checkpoint during the test; and the scheduler's first
    // full verification (which publishes) is over before it starts.
    let server = start(|config| config.publish_interval_ms = 60_000).await;
    let state = server.data.join("audit/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let verified = || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|state| state["last_full_at"].is_i64())
    };
    while !verified() {
        assert!(
            std::time::Instant::now() < deadline,
            "no full verification within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let client = server.client();
    let writer = server.token("writer", &[Role::writer()]);
    let auditor = server.token("auditor", &[Role::reader()]);
    // A token grant asks for a checkpoint soon: let those of the three
    // grants be published before the probe.
    server.wait_checkpoint(&client, 3).await;
    let index = server.probe(&client, &writer).await;
    let published = server.checkpoint(&client).await.size;
    assert!(published <= index, "entry {index} is already published");

    // The writer may not read: 403, and still no checkpoint covers it.
    let r = send(
        client
            .get(server.url(&format!("/v1/events/{index}")))
            .bearer_auth(&writer),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server.checkpoint(&client).await.size, published);

    // The auditor may: the read waits for a checkpoint over the entry.
    let read = server.get_event(&client, &auditor, index).await;
    assert_eq!(read["event"]["event"]["actor"], "probe");
    let checkpoint = verify_proof(&server, &read, index);
    assert!(checkpoint.size > index);
    drop(client);
    server.stop().await;
}

/// Validates an OpenAPI 3.0.3 document with a real validator, Python's
/// `openapi-spec-validator` (which `.ci/run` installs). Without Python or
/// the package the check is skipped with a message, except under CI.
fn validate_openapi(text: &str) {
    use std::io::Write as _;
    const SCRIPT: &str = r#"
import json, sys
spec = json.load(sys.stdin)
if spec.get("openapi") != "3.0.3":
    print("openapi is not 3.0.3:", spec.get("openapi"))
    sys.exit(1)
try:
    from openapi_spec_validator import OpenAPIV30SpecValidator
    errors = list(OpenAPIV30SpecValidator(spec).iter_errors())
except ImportError:
    from openapi_spec_validator import openapi_v30_spec_validator
    errors = list(openapi_v30_spec_validator.iter_errors(spec))
for e in errors:
    print("/".join(str(p) for p in e.absolute_path), e.message[:500])
sys.exit(1 if errors else 0)
"#;
    let present = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with openapi-spec-validator is missing (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: /openapi.json not validated: python3 -m pip install openapi-spec-validator"
        );
        return;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/openapi.json is not valid OpenAPI 3.0.3:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
