#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tokens bound to the log, over real TLS: grants and revocations are
//! `_system` events written before `tokens.json`; a record the log does not
//! back (hand-written, or edited) is refused and fails `verify`; a revoked
//! token stays revoked whatever the file says; expiry; stream scope; and
//! failed authentications counted and sampled into the log, boundedly.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stele_log::EntryIndex;
use stele_log::tokens::{TokenFile, read_token_file, sha256_hex};
use stele_server::tokens::Role;

/// Every `_system` event of a stopped server's log with this action.
fn system_events(data: &std::path::Path, action: &str) -> Vec<(u64, Value)> {
    let log = open_log(data);
    (0..log.reader().size())
        .filter_map(|i| {
            let stored = log.reader().get(EntryIndex(i)).ok()?;
            let envelope = stored.envelope;
            (envelope.stream == "_system" && envelope.event.action == action).then(|| {
                (
                    i,
                    Value::Object(envelope.event.attributes.clone().unwrap_or_default()),
                )
            })
        })
        .collect()
}

fn write_file(data: &std::path::Path, file: &TokenFile) {
    let mut bytes = serde_json::to_vec_pretty(file).unwrap();
    bytes.push(b'\n');
    std::fs::write(data.join("tokens.json"), bytes).unwrap();
}

fn verify_problems(data: &std::path::Path) -> Vec<String> {
    let log = open_log(data);
    let report = stele_log::verify::verify(log.reader(), &stele_log::verify::NoProgress).unwrap();
    report.problems.iter().map(|p| p.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_revocations_are_events_written_first() {
    let server = start(|_| {}).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let url = server.url("/v1/tokens");

    // The first admin token was granted through the log, by the log.
    let file = read_token_file(&server.data).unwrap();
    assert_eq!(file.tokens.len(), 1);
    let first = &file.tokens[0];
    assert_eq!(first.created_by, "stele");

    // Create over the API: 201, the token works, its event is in the log.
    let r = post_json(
        &client,
        &url,
        Some(&admin),
        &json!({"principal": "ci", "roles": ["writer"], "expires": "30d", "streams": ["app"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_string();
    let id = r.json["id"].as_str().unwrap().to_string();
    let created_event = r.json["created_event"].as_u64().unwrap();
    assert!(r.json["expires_at"].is_string());
    let appended = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&token),
        &json!({"actor": "ci", "action": "deploy", "stream": "app"}),
    )
    .await;
    assert_eq!(appended.status, 200, "{}", appended.text);

    // Refused requests change nothing: neither the log nor the file.
    let size = log_size(&server, &client).await;
    let before = std::fs::read(server.data.join("tokens.json")).unwrap();
    for bad in [
        json!({"principal": "x", "roles": ["Admin"]}),
        json!({"principal": "x", "roles": []}),
        json!({"principal": "", "roles": ["writer"]}),
        json!({"principal": "stele", "roles": ["writer"]}),
        json!({"principal": "x", "roles": ["writer"], "expires": "2001-01-01T00:00:00Z"}),
        json!({"principal": "x", "roles": ["writer"], "expires": "soon"}),
        json!({"principal": "x", "roles": ["writer"], "streams": ["../x"]}),
        json!({"principal": "x", "roles": ["writer"], "streams": []}),
        json!({"principal": "x", "roles": ["writer"], "secret": "chosen"}),
    ] {
        let r = post_json(&client, &url, Some(&admin), &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    assert_eq!(
        std::fs::read(server.data.join("tokens.json")).unwrap(),
        before
    );
    assert_eq!(log_size(&server, &client).await, size);
    // A writer may not create tokens: 403, recorded as a denial (one entry).
    let r = post_json(
        &client,
        &url,
        Some(&server.token("w", &[Role::writer()])),
        &json!({"principal": "x", "roles": ["admin"]}),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    // Only `server.token` above added a record.
    assert_eq!(read_token_file(&server.data).unwrap().tokens.len(), 3);
    let r = send(
        client
            .delete(server.url("/v1/tokens/000000000000"))
            .bearer_auth(&admin),
    )
    .await;
    assert_error(&r, 404, "not_found");
    // One token.created for `w`, one access.denied, and an audit trail of
    // nothing else.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log_size(&server, &client).await, size + 2);

    // Revoke over the API: the token is refused at once.
    let r = send(
        client
            .delete(server.url(&format!("/v1/tokens/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "revoked");
    let revoked_event = r.json["revoked_event"].as_u64().unwrap();
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&token),
        &json!({"actor": "ci", "action": "deploy", "stream": "app"}),
    )
    .await;
    assert_error(&r, 401, "unauthenticated");
    let listed = send(client.get(&url).bearer_auth(&admin)).await;
    assert_eq!(listed.status, 200);
    let states: Vec<(String, String)> = listed.json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t.get("secret_sha256").is_none(), "{t}");
            (
                t["id"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&(id.clone(), "revoked".to_string())),
        "{states:?}"
    );

    let data = server.data.clone();
    drop(client);
    let tmp = server.stop().await;
    let created = system_events(&data, "token.created");
    assert_eq!(created.len(), 3, "{created:?}");
    let (index, attributes) = created
        .iter()
        .find(|(_, a)| a["token"] == id.as_str())
        .unwrap();
    assert_eq!(*index, created_event);
    assert_eq!(attributes["principal"], "ci");
    assert_eq!(attributes["roles"], json!(["writer"]));
    assert_eq!(attributes["streams"], json!(["app"]));
    assert!(attributes["expires_at"].is_string());
    // The event holds neither the secret nor its stored hash.
    let secret = token.splitn(3, '_').nth(2).unwrap();
    let text = attributes.to_string();
    assert!(!text.contains(secret));
    assert!(!text.contains(&sha256_hex(secret.as_bytes())));
    let revoked = system_events(&data, "token.revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].0, revoked_event);
    assert_eq!(revoked[0].1["token"], id.as_str());
    // Every record matches its event: verify passes.
    assert_eq!(verify_problems(&data), Vec::<String>::new());
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_log_does_not_back_are_refused() {
    let server = start(|_| {}).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let rotate = server.url("/v1/keys/rotate");
    let writer = server.token_with("ci", &[Role::writer()], None, None);

    // A hand-written admin record: an id and secret of the attacker's
    // choosing, hashed the documented way, naming the real admin's event.
    let mut file = read_token_file(&server.data).unwrap();
    let secret = "A".repeat(43);
    let mut forged = file.tokens[0].clone();
    forged.id = "0123456789ab".into();
    forged.principal = "mallory".into();
    forged.secret_sha256 = sha256_hex(secret.as_bytes());
    file.tokens.push(forged);
    // And the writer's own record promoted to admin.
    let promoted = file
        .tokens
        .iter_mut()
        .find(|t| t.id == writer.entry.id)
        .unwrap();
    promoted.roles = vec![Role::admin()];
    write_file(&server.data, &file);
    let forged_token = format!("stele_0123456789ab_{secret}");
    for token in [forged_token.as_str(), writer.text.as_str()] {
        let r = send(client.post(&rotate).bearer_auth(token)).await;
        assert_error(&r, 401, "unauthenticated");
    }
    // The real admin still works.
    let r = send(client.get(server.url("/v1/tokens")).bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let data = server.data.clone();
    drop(client);
    let tmp = server.stop().await;
    let problems = verify_problems(&data);
    assert!(
        problems.iter().any(|p| p.contains("tokens.json")
            && p.contains("0123456789ab")
            && p.contains("token.created event")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("tokens.json")
            && p.contains(&writer.entry.id)
            && p.contains(&format!(
                "token.created event {}",
                writer.entry.created_event
            ))),
        "{problems:#?}"
    );
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stays_revoked_whatever_the_file_says() {
    let server = start(|_| {}).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let reader = server.token_with("auditor", &[Role::reader()], None, None);
    let events = server.url("/v1/events");
    let first = post_json(
        &client,
        &events,
        Some(&admin),
        &json!({"actor": "a", "action": "b"}),
    )
    .await;
    let index = first.json["receipts"][0]["index"].as_u64().unwrap();
    let read = server.url(&format!("/v1/events/{index}"));
    assert_eq!(
        send(client.get(&read).bearer_auth(&reader.text))
            .await
            .status,
        200
    );
    let r = send(
        client
            .delete(server.url(&format!("/v1/tokens/{}", reader.entry.id)))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Undo the revocation in the file: the event wins.
    let mut file = read_token_file(&server.data).unwrap();
    let record = file
        .tokens
        .iter_mut()
        .find(|t| t.id == reader.entry.id)
        .unwrap();
    record.revoked_at = None;
    record.revoked_by = None;
    record.revoked_event = None;
    write_file(&server.data, &file);
    let r = send(client.get(&read).bearer_auth(&reader.text)).await;
    assert_error(&r, 401, "unauthenticated");

    let data = server.data.clone();
    drop(client);
    let tmp = server.stop().await;
    let problems = verify_problems(&data);
    assert!(
        problems.iter().any(|p| p.contains("tokens.json")
            && p.contains(&reader.entry.id)
            && p.contains("token.revoked event")),
        "{problems:#?}"
    );
    // A restart writes the revocation back into the file, and still refuses.
    let server = start_in(tmp, String::new(), |_| {}).await;
    let record = read_token_file(&server.data)
        .unwrap()
        .tokens
        .into_iter()
        .find(|t| t.id == reader.entry.id)
        .unwrap();
    assert!(record.revoked_event.is_some() && record.revoked_at.is_some());
    let client = server.client();
    let read = server.url(&format!("/v1/events/{index}"));
    let r = send(client.get(&read).bearer_auth(&reader.text)).await;
    assert_error(&r, 401, "unauthenticated");
    drop(client);
    let data = server.data.clone();
    let tmp = server.stop().await;
    assert_eq!(verify_problems(&data), Vec::<String>::new());
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_stream_scope() {
    let server = start(|_| {}).await;
    let client = server.client();
    let events = server.url("/v1/events");
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let brief = server.token_with("brief", &[Role::writer()], Some(soon), None);
    let scoped = server.token_with(
        "app-bot",
        &[Role::writer(), Role::reader(), Role::admin()],
        None,
        Some(vec!["app".into()]),
    );
    let event = json!({"actor": "a", "action": "b"});
    let r = post_json(&client, &events, Some(&brief.text), &event).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Inside its scope: append to and read from `app`.
    let inside = json!({"actor": "a", "action": "b", "stream": "app"});
    let r = post_json(&client, &events, Some(&scoped.text), &inside).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let index = r.json["receipts"][0]["index"].as_u64().unwrap();
    let r = send(
        client
            .get(server.url(&format!("/v1/events/{index}")))
            .bearer_auth(&scoped.text),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Outside: another stream, and anything log-wide, despite the admin
    // role; each denial recorded.
    let size = log_size(&server, &client).await;
    let outside = json!({"actor": "a", "action": "b", "stream": "other"});
    let r = post_json(&client, &events, Some(&scoped.text), &outside).await;
    assert_error(&r, 403, "forbidden");
    assert!(r.text.contains("token scope"), "{}", r.text);
    let r = send(
        client
            .post(server.url("/v1/keys/rotate"))
            .bearer_auth(&scoped.text),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    let r = send(
        client
            .get(server.url("/v1/tokens"))
            .bearer_auth(&scoped.text),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log_size(&server, &client).await < size + 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log_size(&server, &client).await, size + 3);

    // Past its expiry the token is refused, and the metric says why.
    let wait = soon
        .duration_since(jiff::Timestamp::now())
        .as_millis()
        .max(0) as u64
        + 300;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let r = post_json(&client, &events, Some(&brief.text), &event).await;
    assert_error(&r, 401, "unauthenticated");
    assert!(r.text.contains("expired"), "{}", r.text);
    let metrics = send(client.get(server.url("/metrics"))).await.text;
    assert!(
        metrics.contains("stele_auth_failures_total{reason=\"expired\"} 1"),
        "{metrics}"
    );

    let data = server.data.clone();
    drop(client);
    let tmp = server.stop().await;
    let denials = system_events(&data, "access.denied");
    assert_eq!(denials.len(), 3, "{denials:?}");
    assert!(denials.iter().all(|(_, a)| {
        a["policies"][0]
            .as_str()
            .unwrap()
            .starts_with("token scope")
    }));
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_401s_is_counted_and_sampled_boundedly() {
    let server = start(|c| c.limits.auth_failure_window_seconds = 1).await;
    // A new connection per request: a 401 is answered before the body is
    // read, and the server then closes the connection.
    let client = server.client_without_reuse();
    let events = server.url("/v1/events");
    let event = json!({"actor": "a", "action": "b"});
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    // About three seconds of failures, many per window, of several kinds.
    while started.elapsed() < Duration::from_secs(3) {
        let mut batch = Vec::new();
        for i in 0..20u64 {
            let token = match i % 3 {
                0 => format!("stele_{:012x}_{}", i, "A".repeat(43)),
                1 => "garbage".to_string(),
                _ => String::new(),
            };
            let client = client.clone();
            let events = events.clone();
            let event = event.clone();
            batch.push(tokio::spawn(async move {
                let token = (!token.is_empty()).then_some(token);
                post_json(&client, &events, token.as_deref(), &event)
                    .await
                    .status
            }));
        }
        for task in batch {
            assert_eq!(task.await.unwrap(), 401);
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    let metrics = send(client.get(server.url("/metrics"))).await.text;
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("stele_auth_failures_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, sent, "{metrics}");

    let data = server.data.clone();
    drop(client);
    let tmp = server.stop().await;
    let recorded = system_events(&data, "auth.failed");
    // At most one event per window (plus the partial last one), however
    // many failures.
    let windows = elapsed.as_secs() + 2;
    assert!(
        !recorded.is_empty() && recorded.len() as u64 <= windows,
        "{} events for {sent} failures in {elapsed:?}",
        recorded.len()
    );
    let total: u64 = recorded
        .iter()
        .map(|(_, a)| a["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(total, sent, "the windows' counts add up to every failure");
    for (_, attributes) in &recorded {
        let samples = attributes["samples"].as_array().unwrap();
        assert!(samples.len() <= stele_server::authlog::MAX_SAMPLES);
        assert_eq!(
            attributes["unsampled"].as_u64().unwrap() + samples.len() as u64,
            attributes["failures"].as_u64().unwrap()
        );
        for sample in samples {
            assert_eq!(sample["client"], "127.0.0.1");
            // A claimed id is kept, never any secret.
            assert!(!sample.to_string().contains(&"A".repeat(43)));
        }
    }
    println!(
        "{sent} failed authentications in {elapsed:?} → {} auth.failed events",
        recorded.len()
    );
    drop(tmp);
}
