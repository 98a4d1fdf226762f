//! The server's scheduler finding damage: a record altered on disk while
//! the server runs, after the incremental verification has already passed
//! over it, is found by the next scheduled full verification. The next
//! scheduled attestation says so (signed, recorded as the log's own
//! `audit.attestation` event), `/readyz` fails as the policy asks, and
//! `stele_audit_failed_checks` counts it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use stele_log::audit::Attestation;
use stele_server::tokens::Role;

/// Full verification every 2 s, an attestation every 2 s, readiness tied
/// to the findings; the incremental verification runs at its own pace.
const POLICY: &str = r#"version = 1
default_stream = "ops"
[streams.ops]
retain = "forever"
[audit]
verify_new_every = "1s"
verify_full_every = "2s"
attest_every = "2s"
max_since_full_verify = "1h"
readyz_fails_on_finding = true
"#;

/// A log in `<tmp>/data` under [`POLICY`] (entry 0 is `policy.applied`)
/// holding three `ops` events, closed. Returns the directory, the verifier
/// key, the `ops` segment and its length (its last record ends there).
fn populated_ops_log() -> (tempfile::TempDir, String, std::path::PathBuf, u64) {
    let now = jiff::Timestamp::now();
    let (tmp, vkey) = populated_log(POLICY, &["ops", "ops", "ops"], now);
    let day = stele_event::time::Day::of(now).unwrap().to_string();
    let segment = tmp.path().join(format!("data/segments/ops/{day}.seg"));
    let length = std::fs::metadata(&segment).unwrap().len();
    (tmp, vkey, segment, length)
}

/// Polls `GET /v1/audit/latest` until an attestation satisfies `wanted`.
async fn wait_for_attestation(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    what: &str,
    wanted: impl Fn(&Attestation) -> bool,
) -> Attestation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = send(
            client
                .get(server.url("/v1/audit/latest"))
                .bearer_auth(token),
        )
        .await;
        if r.status == 200 {
            let attestation: Attestation = serde_json::from_value(r.json.clone()).unwrap();
            if wanted(&attestation) {
                return attestation;
            }
        }
        let last = r.text;
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attestation {what} within 60 s; the latest: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finding<'a>(attestation: &'a Attestation, check: &str) -> &'a stele_log::audit::Finding {
    attestation
        .findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} finding: {attestation:?}"))
}

async fn failed_checks(server: &TestServer, client: &reqwest::Client) -> u64 {
    let r = send(client.get(server.url("/metrics"))).await;
    assert_eq!(r.status, 200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("stele_audit_failed_checks "))
        .expect("stele_audit_failed_checks in /metrics")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scheduled_full_verification_is_attested_and_fails_readiness() {
    let (tmp, vkey, segment, length) = populated_ops_log();
    let server = start_in(tmp, vkey, |_| {}).await;
    let client = server.client();
    let admin = server.token("admin", &[Role::admin()]);
    let reader = server.token("auditor", &[Role::reader()]);

    // A scheduled attestation with every check passing, whose incremental
    // verification covers the three `ops` events (entries 1 to 3).
    let healthy =
        wait_for_attestation(&server, &client, &admin, "passing over entries 0..4", |a| {
            a.ok && a.verified_size >= 4
        })
        .await;
    assert!(finding(&healthy, "verify.full").ok, "{healthy:?}");
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(failed_checks(&server, &client).await, 0);

    // Someone alters the last byte of the last `ops` record (its tag) on
    // disk. The incremental verification has passed over it already and
    // does not look again; only a full verification reads it.
    {
        use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment)
            .unwrap();
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(length - 1)).unwrap();
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(length - 1)).unwrap();
        file.write_all(&[byte[0] ^ 0x01]).unwrap();
        file.sync_all().unwrap();
    }

    // The next scheduled full verification fails, and the next scheduled
    // attestation reports it.
    let failed = wait_for_attestation(
        &server,
        &client,
        &admin,
        "reporting a failed full verification",
        |a| finding(a, "verify.full").detail.contains("failed"),
    )
    .await;
    assert!(!failed.ok, "{failed:?}");
    let full = finding(&failed, "verify.full");
    assert!(!full.ok, "{full:?}");
    assert!(
        full.detail.contains("ops"),
        "the finding names the damaged stream: {full:?}"
    );
    // Not found by the incremental verification: the full one found it.
    assert!(finding(&failed, "verify.incremental").ok, "{failed:?}");
    failed.verify_signature(&server.verifier()).unwrap();
    // The log's own scheduled attestation, recorded as an event.
    let index = failed.event_index.unwrap();
    let recorded = server.get_event(&client, &reader, index).await;
    assert_eq!(recorded["event"]["event"]["action"], "audit.attestation");
    assert_eq!(recorded["event"]["event"]["actor"], "stele");
    assert_eq!(
        recorded["event"]["event"]["attributes"]["findings"],
        serde_json::to_value(&failed.findings).unwrap()
    );

    // Readiness and the metric follow the latest attestation.
    let r = send(client.get(server.url("/readyz"))).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("audit check(s) failed"), "{}", r.text);
    assert!(failed_checks(&server, &client).await >= 1);

    drop(client);
    server.stop().await;
}
