//! `stele-server` and the token file it reads: `tokens.json`, the
//! configuration file and the query strings of the read endpoints (search included).

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use stele_log::tokens::{
    TokenEvent, TokenEvents, TokenFile, check_entry, created_attributes, read_token_file,
    revocation_problem, token_path,
};
use stele_server::admin::check_scan_query;
use stele_server::api::check_tree_query;
use stele_server::config::Config;
use stele_server::search::check_search_query;

/// `tokens.json` as the server, `stele token list` and `verify` read it: an
/// accepted file writes back to one that reads the same; every record
/// matches the `token.created` event it would have been made from, and no
/// record matches a log without one; a revocation the log and the record
/// agree on is no problem, one only the record claims is.
pub fn tokens_json(data: &[u8]) {
    let dir = crate::scratch::fresh_dir("tokens");
    std::fs::write(token_path(&dir), data).expect("write scratch file");
    let Ok(file) = read_token_file(&dir) else {
        return;
    };
    let mut written = serde_json::to_vec_pretty(&file).expect("an accepted file encodes");
    written.push(b'\n');
    std::fs::write(token_path(&dir), &written).expect("write scratch file");
    let again: TokenFile = read_token_file(&dir).expect("reads back");
    assert_eq!(again.tokens, file.tokens);
    let now = jiff::Timestamp::now();
    for entry in &file.tokens {
        let _ = entry.expired(now);
        let granted = TokenEvents {
            created: Some(Ok(TokenEvent {
                index: entry.created_event,
                actor: entry.created_by.clone(),
                attributes: created_attributes(entry),
            })),
            revoked: entry.revoked_event,
        };
        assert_eq!(check_entry(entry, &granted), Ok(()));
        assert!(check_entry(entry, &TokenEvents::default()).is_err());
        match (entry.revoked_event, entry.revoked_at.is_some()) {
            (Some(_), _) | (None, false) => assert_eq!(revocation_problem(entry, &granted), None),
            (None, true) => assert!(revocation_problem(entry, &granted).is_some()),
        }
        if entry.revoked_event.is_some() {
            let unrevoked = TokenEvents {
                revoked: None,
                ..granted
            };
            assert!(revocation_problem(entry, &unrevoked).is_some());
        }
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
    let path = match which % 5 {
        0 => "/v1/export",
        1 => "/v1/query",
        2 => "/v1/proof/consistency",
        3 => "/v1/checkpoints",
        _ => "/v1/search",
    };
    // Only what a client can put on the wire reaches the handlers.
    let Ok(uri) = format!("{path}?{query}").parse::<Uri>() else {
        return;
    };
    let checked = match which % 5 {
        0 => check_scan_query(false, &uri),
        1 => check_scan_query(true, &uri),
        2 => check_tree_query(false, &uri),
        3 => check_tree_query(true, &uri),
        _ => check_search_query(&uri),
    };
    if let Err(error) = checked {
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
    }
}
