#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authentication and authorization over real TLS: bearer tokens (unknown,
//! wrong, revoked while serving), roles, and client certificates (foreign
//! CA, unmapped, mapped), and the principal recorded as `writer`.

mod common;

use common::*;
use serde_json::json;
use stele_server::tokens::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_and_roles() {
    let server = start(|_| {}).await;
    let client = server.client();
    let events = server.url("/v1/events");
    let event = json!({"actor": "alice", "action": "login"});
    let admin = server.admin_token.clone();

    // Something to read.
    let first = post_json(&client, &events, Some(&admin), &event).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let index = first.json["receipts"][0]["index"].as_u64().unwrap();
    let read_url = server.url(&format!("/v1/events/{index}"));

    // No credentials at all. Over HTTP/1.1 the body was not read, so the
    // connection is not reused; a request without a body keeps it.
    let r = post_json(&client, &events, None, &event).await;
    assert_error(&r, 401, "unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let http1 = server.client_http1();
    let r = post_json(&http1, &events, None, &event).await;
    assert_error(&r, 401, "unauthenticated");
    assert_eq!(r.headers["connection"], "close");
    let r = send(http1.get(&read_url)).await;
    assert_error(&r, 401, "unauthenticated");
    assert!(r.headers.get("connection").is_none(), "no body, kept alive");
    drop(http1);
    let r = send(client.get(&read_url)).await;
    assert_error(&r, 401, "unauthenticated");

    // A token that does not exist, a garbled one, and a right id with a
    // wrong secret.
    let created = server.token_with("ci-bot", &[Role::writer()], None, None);
    let (writer_record, writer) = (created.entry, created.text);
    let wrong_secret = format!("stele_{}_{}", writer_record.id, "A".repeat(43));
    for bad in [
        "stele_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        wrong_secret.as_str(),
    ] {
        let r = post_json(&client, &events, Some(bad), &event).await;
        assert_error(&r, 401, "unauthenticated");
        let r = send(client.get(&read_url).bearer_auth(bad)).await;
        assert_error(&r, 401, "unauthenticated");
    }
    // A non-Bearer scheme.
    let r = send(
        client
            .post(&events)
            .header("authorization", format!("Basic {writer}"))
            .json(&event),
    )
    .await;
    assert_error(&r, 401, "unauthenticated");

    // Roles: a writer cannot read, a reader cannot append, admin does both.
    let reader = server.token("auditor", &[Role::reader()]);
    let r = send(client.get(&read_url).bearer_auth(&writer)).await;
    assert_error(&r, 403, "forbidden");
    let r = post_json(&client, &events, Some(&reader), &event).await;
    assert_error(&r, 403, "forbidden");
    let r = post_raw(
        &client,
        &server.url("/v1/ingest/kubernetes"),
        Some(&reader),
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    let r = post_json(&client, &events, Some(&writer), &event).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let writer_index = r.json["receipts"][0]["index"].as_u64().unwrap();
    let r = send(client.get(&read_url).bearer_auth(&reader)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(client.get(&read_url).bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_json(&client, &events, Some(&admin), &event).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The token's principal is recorded as the writer.
    let stored = server.get_event(&client, &admin, writer_index).await;
    assert_eq!(stored["event"]["writer"], "ci-bot");
    assert_eq!(stored["event"]["event"]["actor"], "alice");
    let stored = server.get_event(&client, &admin, index).await;
    assert_eq!(stored["event"]["writer"], "admin");

    // Revocation while serving takes effect at the next request.
    let r = send(
        client
            .delete(server.url(&format!("/v1/tokens/{}", writer_record.id)))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_json(&client, &events, Some(&writer), &event).await;
    assert_error(&r, 401, "unauthenticated");
    // Other tokens are unaffected.
    let r = send(client.get(&read_url).bearer_auth(&reader)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Refused requests appended nothing of theirs: the only entries are the
    // three appends, the five audited reads, the three recorded denials and
    // the four token events (three grants, one revocation). The 401s are
    // only counted until their window closes.
    let size = log_size(&server, &client).await;
    assert_eq!(size, 3 + 5 + 3 + 4, "refused requests must append nothing");

    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let server = start(|_| {}).await;
    let admin = server.admin_token.clone();
    let event = json!({"actor": "bob", "action": "deploy"});
    let events = server.url("/v1/events");

    // A certificate from a CA the server does not trust: the handshake is
    // refused, so the request fails without any HTTP status.
    let foreign = server.client_with(&server.pki.foreign_client);
    let result = foreign.post(&events).json(&event).send().await;
    assert!(
        result.is_err(),
        "a certificate from an unknown CA must fail the handshake, got {:?}",
        result.map(|r| r.status())
    );
    // Even with a valid token: the connection never gets that far.
    let result = foreign
        .post(&events)
        .bearer_auth(&admin)
        .json(&event)
        .send()
        .await;
    assert!(result.is_err());
    drop(foreign);

    // Signed by the trusted CA but not mapped to a principal: 401, and the
    // message names the certificate.
    let unmapped = server.client_with(&server.pki.unmapped_client);
    let r = post_json(&unmapped, &events, None, &event).await;
    assert_error(&r, 401, "unauthenticated");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&server.pki.unmapped_client.fingerprint),
        "{}",
        r.text
    );
    // A bearer token still works over that connection.
    let r = post_json(&unmapped, &events, Some(&admin), &event).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A bad token is refused even though a certificate was presented.
    let r = post_json(&unmapped, &events, Some("stele_bad_bad"), &event).await;
    assert_error(&r, 401, "unauthenticated");
    drop(unmapped);

    // A mapped writer certificate appends; its principal is the writer.
    let writer = server.client_with(&server.pki.writer_client);
    let r = post_json(&writer, &events, None, &event).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let index = r.json["receipts"][0]["index"].as_u64().unwrap();
    // It may not read.
    let r = send(writer.get(server.url(&format!("/v1/events/{index}")))).await;
    assert_error(&r, 403, "forbidden");
    // A bad token on a mapped-certificate connection is refused, not
    // silently replaced by the certificate's principal.
    let r = post_json(&writer, &events, Some("stele_000000000000_x"), &event).await;
    assert_error(&r, 401, "unauthenticated");
    drop(writer);

    // A mapped reader certificate reads, and may not append.
    let reader = server.client_with(&server.pki.reader_client);
    let r = send(reader.get(server.url(&format!("/v1/events/{index}")))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["event"]["writer"], "svc-writer");
    let r = post_json(&reader, &events, None, &event).await;
    assert_error(&r, 403, "forbidden");
    drop(reader);

    let client = server.client();
    let stored = server.get_event(&client, &admin, index).await;
    assert_eq!(stored["event"]["writer"], "svc-writer");
    assert_eq!(stored["event"]["source"], "http");
    drop(client);
    server.stop().await;
}
