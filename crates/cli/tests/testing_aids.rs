//! The testing aids `STELE_NOW` and `STELE_RETENTION_GRACE` through the
//! binary. A debug build (the one `cargo test` builds) honours them: an
//! event appended under `STELE_NOW` is received at that time, and a value
//! that does not parse is refused. A release build refuses to run any
//! command that reads them while they are set (exit 2, nothing changed):
//! this test checks whichever the binary under test is, so
//! `scripts/release-checks.sh` (`cargo test --release`) runs the release
//! side. The decision itself is unit-tested for both builds in
//! `crates/cli/src/local.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

const AT: &str = "2031-05-06T07:08:09Z";

#[test]
fn stele_now_is_honoured_only_by_debug_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_log(&dir);
    let input = ndjson(["alice".to_string()]);
    let out = run_full(
        &["append", "--data", p(&dir)],
        input.as_bytes(),
        &[("STELE_NOW", AT)],
    );
    if cfg!(debug_assertions) {
        expect(&out, 0, &[]);
        let index = receipts(&out.stdout)[0].index;
        let entry = get(&dir, index);
        assert_eq!(entry["event"]["received_at"], AT, "{entry}");
        let out = run_full(
            &["append", "--data", p(&dir)],
            input.as_bytes(),
            &[("STELE_NOW", "yesterday")],
        );
        expect(&out, 2, &["STELE_NOW \"yesterday\": not an RFC 3339 time"]);
        expect_one_error_line(&out);
    } else {
        expect(
            &out,
            2,
            &["STELE_NOW is a testing aid that only debug builds honour; unset it"],
        );
        expect_one_error_line(&out);
        // Refused before anything was appended.
        assert_eq!(checkpoint_size(&dir), 0);
        for args in [
            vec!["get", "--data", p(&dir), "--index", "0"],
            vec!["verify", "--data", p(&dir)],
        ] {
            let out = run_env(&args, &[("STELE_NOW", AT)]);
            expect(&out, 2, &["STELE_NOW is a testing aid"]);
        }
    }
}

#[test]
fn stele_retention_grace_is_honoured_only_by_debug_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_log(&dir);
    // `stele()` sets STELE_RETENTION_GRACE=0 for every run.
    let out = run(&["retention", "run", "--data", p(&dir)]);
    if cfg!(debug_assertions) {
        expect(&out, 0, &[]);
        let out = run_env(
            &["retention", "run", "--data", p(&dir)],
            &[("STELE_RETENTION_GRACE", "soon")],
        );
        expect(&out, 2, &["not a number of seconds"]);
    } else {
        expect(
            &out,
            2,
            &["STELE_RETENTION_GRACE is a testing aid that only debug builds honour; unset it"],
        );
    }
}
