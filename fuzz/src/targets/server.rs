//! `stele-server`: the token file, the configuration file and the query
//! strings of the read endpoints.

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use sha2::Digest;
use stele_server::admin::check_scan_query;
use stele_server::api::check_tree_query;
use stele_server::config::Config;
use stele_server::tokens::{self, TokenStore};

/// The secret part of the bearer token tried against every record.
const SECRET: &str = "fuzz";

/// `tokens.json` as `stele token list` and the server read it: a bearer
/// token authenticates exactly when its id names a live record whose hash
/// is the hash of its secret, and then as that record's principal.
pub fn tokens_json(data: &[u8]) {
    let dir = crate::scratch::fresh_dir("tokens");
    std::fs::write(tokens::token_path(&dir), data).expect("write scratch file");
    let listed = tokens::list(&dir);
    let store = TokenStore::new(&dir);
    let authenticated = store.authenticate(&format!("stele_0_{SECRET}"));
    let Ok(records) = listed else {
        assert!(
            authenticated.is_err(),
            "an unreadable token file authenticates no one"
        );
        return;
    };
    let secret_hash: String = sha2::Sha256::digest(SECRET.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for record in &records {
        if record.id.contains('_') {
            continue;
        }
        let first = records.iter().find(|r| r.id == record.id).expect("listed");
        let expected = (first.secret_sha256 == secret_hash && first.revoked_at.is_none())
            .then(|| first.principal.clone());
        let got = store
            .authenticate(&format!("stele_{}_{SECRET}", record.id))
            .expect("a readable token file stays readable");
        assert_eq!(got.map(|p| p.name), expected);
    }
}

/// The server configuration: reading never panics, and neither does
/// validating what was read.
pub fn server_config(data: &[u8]) {
    let path = crate::scratch::file("stele.toml", data);
    let Ok(config) = Config::from_file(&path) else {
        return;
    };
    let _ = config.validate();
}

/// Input: one byte choosing the endpoint, then the query string. Every
/// refusal is a 400 `invalid_query`, never a panic or another status.
pub fn query_string(data: &[u8]) {
    let Some((&which, query)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let path = match which % 4 {
        0 => "/v1/export",
        1 => "/v1/query",
        2 => "/v1/proof/consistency",
        _ => "/v1/checkpoints",
    };
    // Only what a client can put on the wire reaches the handlers.
    let Ok(uri) = format!("{path}?{query}").parse::<Uri>() else {
        return;
    };
    let checked = match which % 4 {
        0 => check_scan_query(false, &uri),
        1 => check_scan_query(true, &uri),
        2 => check_tree_query(false, &uri),
        _ => check_tree_query(true, &uri),
    };
    if let Err(error) = checked {
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
    }
}
