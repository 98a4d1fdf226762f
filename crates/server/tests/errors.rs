#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every error the API answers is JSON in the documented shape: unknown
//! paths (404), methods a path does not take (405, with `Allow`), path
//! parameters that are not numbers or do not decode (400 naming the
//! parameter), tile paths that name no tile (404), compressed bodies
//! (415); and settings the log
//! engine cannot honour are refused at start.

mod common;

use common::*;
use serde_json::json;
use stele_server::tokens::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json() {
    let server = start(|_| {}).await;
    let client = server.client();
    let admin = server.admin_token.clone();
    let reader = server.token("reader", &[Role::reader()]);

    // Unknown paths, with or without credentials.
    for path in ["/no/such/route", "/v1", "/v1/events/1/extra", "/v2/events"] {
        let r = send(client.get(server.url(path))).await;
        assert_error(&r, 404, "not_found");
        assert!(r.json["error"]["message"].as_str().unwrap().contains(path));
    }
    let r = send(client.get(server.url("/no/such/route")).bearer_auth(&admin)).await;
    assert_error(&r, 404, "not_found");

    // A path served with another method: 405, JSON, and `Allow`.
    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/v1/events", "POST"),
        (reqwest::Method::GET, "/v1/events", "POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::PUT, "/v1/events/0", "GET"),
        (reqwest::Method::DELETE, "/v1/policy", "PUT"),
        (reqwest::Method::POST, "/checkpoint", "GET"),
    ] {
        let r = send(client.request(method.clone(), server.url(path))).await;
        assert_error(&r, 405, "method_not_allowed");
        let allow = r.headers.get("allow").expect("Allow").to_str().unwrap();
        assert!(allow.contains(allowed), "{method} {path}: Allow: {allow}");
    }

    // Path parameters: not a number, out of range, not decodable.
    for (path, code) in [
        ("/v1/events/abc", "invalid_index"),
        ("/v1/events/99999999999999999999999", "invalid_index"),
        ("/v1/events/-1", "invalid_index"),
        ("/v1/events/%FF", "invalid_path"),
    ] {
        let r = send(client.get(server.url(path)).bearer_auth(&reader)).await;
        assert_error(&r, 400, code);
        assert_eq!(r.json["error"]["field"], "index", "{path}: {}", r.text);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains("index"), "{path}: {message}");
    }
    let r = send(
        client
            .post(server.url("/v1/holds/%FF%FE/release"))
            .bearer_auth(&admin),
    )
    .await;
    assert_error(&r, 400, "invalid_path");
    assert_eq!(r.json["error"]["field"], "id");

    // Tile paths that name no tile, even undecodable ones: JSON 404s.
    for path in ["/tile/0/002", "/tile/x/y", "/tile/%FF", "/tile/0/%C3%28"] {
        let r = send(client.get(server.url(path))).await;
        assert_error(&r, 404, "not_found");
    }

    // A body in another Content-Encoding than identity: 415, JSON, on
    // every endpoint that takes a body, before it is read.
    let event = serde_json::to_vec(&json!({"actor": "a", "action": "b"})).unwrap();
    for (method, path, encoding) in [
        (reqwest::Method::POST, "/v1/events", "gzip"),
        (reqwest::Method::POST, "/v1/events", "identity, br"),
        (reqwest::Method::POST, "/v1/ingest/kubernetes", "deflate"),
        (reqwest::Method::PUT, "/v1/policy", "gzip"),
        (reqwest::Method::POST, "/v1/holds", "zstd"),
        (reqwest::Method::POST, "/v1/retention/purge", "x-gzip"),
    ] {
        let r = send(
            client
                .request(method.clone(), server.url(path))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .header("content-encoding", encoding)
                .body(event.clone()),
        )
        .await;
        assert_error(&r, 415, "unsupported_content_encoding");
        assert!(r.text.contains(encoding), "{method} {path}: {}", r.text);
    }
    let r = send(
        client
            .post(server.url("/v1/events"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .header("content-encoding", "identity")
            .body(event),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // What is served is unchanged.
    let r = send(client.get(server.url("/checkpoint"))).await;
    assert_eq!(r.status, 200);
    let r = post_json(
        &client,
        &server.url("/v1/events"),
        Some(&admin),
        &json!({"actor": "a", "action": "b"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_events_per_request_than_one_append_holds_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let mut config = base_config(tmp.path(), &pki);
    config.limits.max_events_per_request = stele_log::MAX_BATCH + 1;
    let error = stele_server::bind(config.clone(), None).await.unwrap_err();
    assert!(error.contains("max_events_per_request"), "{error}");
    assert!(error.contains(&stele_log::MAX_BATCH.to_string()), "{error}");
    assert!(
        !config.data.exists(),
        "a refused configuration creates nothing"
    );

    // At the bound itself it starts.
    config.limits.max_events_per_request = stele_log::MAX_BATCH;
    let bound = stele_server::bind(config, None).await.unwrap();
    drop(bound);
}
