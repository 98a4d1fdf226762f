//! `stele token` on a data directory no server holds: each grant and
//! revocation is a `_system` event written before `tokens.json`; `stele
//! verify` fails, naming `tokens.json`, the token and the event, when the
//! file says something its events do not (a hand-written record, an
//! edited role, an undone revocation); the next token command writes an
//! undone revocation back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn tokens_file(data: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data.join("tokens.json")).unwrap()).unwrap()
}

fn write_tokens(data: &Path, file: &Value) {
    std::fs::write(
        data.join("tokens.json"),
        serde_json::to_vec_pretty(file).unwrap(),
    )
    .unwrap();
}

/// The event index a `token` command reported ("... event N ...").
fn event_of(out: &Out) -> u64 {
    let at = out.stderr.find("event ").expect("event index reported");
    out.stderr[at + 6..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn token_commands_are_events_and_verify_checks_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init_log(&data);

    let created = run(&[
        "token",
        "create",
        "--data",
        p(&data),
        "--principal",
        "ci",
        "--role",
        "writer",
        "--expires",
        "30d",
        "--streams",
        "app,web",
    ]);
    expect(
        &created,
        0,
        &["recorded as event", "expires", "streams app,web"],
    );
    let token = created.stdout.trim().to_string();
    let index = event_of(&created);
    let entry = get(&data, index);
    assert_eq!(entry["event"]["stream"], "_system");
    assert_eq!(entry["event"]["event"]["action"], "token.created");
    let attributes = &entry["event"]["event"]["attributes"];
    assert_eq!(attributes["principal"], "ci");
    assert_eq!(attributes["streams"], serde_json::json!(["app", "web"]));
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(!entry.to_string().contains(secret));
    verify_ok(&data);

    // Bad requests change nothing.
    let before = std::fs::read(data.join("tokens.json")).unwrap();
    let size = checkpoint_size(&data);
    for bad in [
        vec!["--role", "writer", "--expires", "yesterday"],
        vec!["--role", "writer", "--expires", "2001-01-01T00:00:00Z"],
        vec!["--role", "writer", "--streams", "_system"],
        vec!["--role", "Writer"],
    ] {
        let mut args = vec!["token", "create", "--data", p(&data), "--principal", "x"];
        args.extend(bad.iter());
        let out = run(&args);
        assert_eq!(out.code, 2, "{out}");
    }
    assert_eq!(std::fs::read(data.join("tokens.json")).unwrap(), before);
    assert_eq!(checkpoint_size(&data), size);

    // A hand-written admin record: verify fails, naming the file and token.
    let original = tokens_file(&data);
    let mut forged = original.clone();
    let mut record = forged["tokens"][0].clone();
    record["id"] = "0123456789ab".into();
    record["roles"] = serde_json::json!(["admin"]);
    forged["tokens"].as_array_mut().unwrap().push(record);
    write_tokens(&data, &forged);
    let out = verify(&data);
    expect(
        &out,
        1,
        &["tokens.json", "0123456789ab", "no token.created event"],
    );
    // The real record with its role edited: named with its event.
    let mut edited = original.clone();
    edited["tokens"][0]["roles"] = serde_json::json!(["admin", "writer"]);
    write_tokens(&data, &edited);
    let out = verify(&data);
    expect(
        &out,
        1,
        &["tokens.json", &format!("token.created event {index}")],
    );
    write_tokens(&data, &original);
    verify_ok(&data);

    // Revoke, then undo it in the file: verify names the revocation event,
    // and the next token command writes it back.
    let id = original["tokens"][0]["id"].as_str().unwrap().to_string();
    let revoked = run(&["token", "revoke", "--data", p(&data), "--id", &id]);
    expect(&revoked, 0, &["revoked (event"]);
    let revoked_event = event_of(&revoked);
    assert_eq!(
        get(&data, revoked_event)["event"]["event"]["action"],
        "token.revoked"
    );
    write_tokens(&data, &original);
    let out = verify(&data);
    expect(
        &out,
        1,
        &[
            "tokens.json",
            &id,
            &format!("token.revoked event {revoked_event}"),
        ],
    );
    let again = run(&[
        "token",
        "create",
        "--data",
        p(&data),
        "--principal",
        "ops",
        "--role",
        "reader",
    ]);
    expect(&again, 0, &[&format!("token {id} was revoked in the log")]);
    verify_ok(&data);
    let list = run(&["token", "list", "--data", p(&data)]);
    expect(&list, 0, &[]);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{list}"
    );
}
