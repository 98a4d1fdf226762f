//! `stele check` against a real `stele serve` over TLS: a server that kept
//! growing passes; a restored backup (rolled back), a restored backup that
//! took other events (forked at the same size, then beyond it) and another
//! log's server fail; and `--anchor` makes the server itself refuse to
//! start on the restored backup.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and a server certificate for 127.0.0.1, as PEM files.
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls(dir: &Path) -> Tls {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "check test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let out = Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&out.ca, ca_cert.pem()).unwrap();
    std::fs::write(&out.cert, server_cert.pem()).unwrap();
    std::fs::write(&out.key, server_key.serialize_pem()).unwrap();
    out
}

/// Kills the server it holds when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `stele serve` over TLS on a free loopback port: the server and
/// its base URL, or, when it exits before listening, its exit code and
/// standard error.
fn serve(data: &Path, tls: &Tls, anchor: Option<&Path>) -> Result<(Server, String), (i32, String)> {
    let mut args = vec![
        "serve".to_string(),
        "--data".into(),
        p(data).into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        p(&tls.cert).into(),
        "--tls-key".into(),
        p(&tls.key).into(),
    ];
    if let Some(anchor) = anchor {
        args.extend(["--anchor".to_string(), p(anchor).to_string()]);
    }
    let mut child = stele()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        match lines.next() {
            Some(line) => {
                let line = line.unwrap();
                if let Some(at) = line.find("listening on ") {
                    break line[at + "listening on ".len()..].trim().to_string();
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            None => {
                let status = child.wait().unwrap();
                return Err((status.code().unwrap_or(-1), seen));
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((Server(child), url))
}

fn check(vkey: &str, kept: &Path, url: &str, tls: &Tls, save: bool) -> Out {
    let mut args = vec![
        "check",
        "--vkey",
        vkey,
        "--checkpoint",
        p(kept),
        "--url",
        url,
        "--ca",
        p(&tls.ca),
    ];
    if save {
        args.push("--save");
    }
    run(&args)
}

fn append_n(data: &Path, from: usize, count: usize) {
    let out = append(data, &ndjson((from..from + count).map(|i| format!("a{i}"))));
    expect(&out, 0, &[]);
}

fn keep_checkpoint(data: &Path, to: &Path) {
    std::fs::copy(data.join("log/checkpoint"), to).unwrap();
}

#[test]
fn check_passes_a_growing_log_and_fails_rollbacks_forks_and_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tls(tmp.path());
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let vkey = init_log(&data);
    append_n(&data, 0, 30);
    copy_dir(&data, &backup);
    let at_30 = tmp.path().join("at-30.checkpoint");
    keep_checkpoint(&data, &at_30);
    append_n(&data, 30, 20);
    let at_50 = tmp.path().join("at-50.checkpoint");
    keep_checkpoint(&data, &at_50);
    append_n(&data, 50, 5);

    // The log kept growing: consistent with both kept checkpoints.
    {
        let (_server, url) = serve(&data, &tls, None).unwrap();
        let out = check(&vkey, &at_30, &url, &tls, false);
        expect(&out, 0, &["OK", "kept size 30", "server size 55"]);
        let saved = tmp.path().join("saved.checkpoint");
        std::fs::copy(&at_30, &saved).unwrap();
        let out = check(&vkey, &saved, &url, &tls, true);
        expect(&out, 0, &["OK", "server size 55", "saved to"]);
        assert_eq!(note_size(&std::fs::read_to_string(&saved).unwrap()), 55);
        let out = check(&vkey, &saved, &url, &tls, false);
        expect(&out, 0, &["OK", "kept size 55", "server size 55"]);

        // Signed by another log's key: refused, the file untouched.
        let stranger = tmp.path().join("stranger");
        let other_vkey = init_log(&stranger);
        let out = check(&other_vkey, &at_30, &url, &tls, true);
        expect(&out, 1, &["FAIL", "does not verify with --vkey"]);
        assert_eq!(note_size(&std::fs::read_to_string(&at_30).unwrap()), 30);
        // A kept checkpoint of another log of the same key name cannot
        // pass for this one either.
        append_n(&stranger, 0, 3);
        let foreign = tmp.path().join("foreign.checkpoint");
        keep_checkpoint(&stranger, &foreign);
        let out = check(&vkey, &foreign, &url, &tls, false);
        expect(&out, 1, &["FAIL", "kept checkpoint"]);
        let out = check(&other_vkey, &foreign, &url, &tls, false);
        expect(&out, 1, &["FAIL", "bad signature"]);
    }

    // The backup restored (30 entries), served to a client that kept 50.
    let restored = tmp.path().join("restored");
    copy_dir(&backup, &restored);
    {
        let (_server, url) = serve(&restored, &tls, None).unwrap();
        let out = check(&vkey, &at_50, &url, &tls, true);
        expect(
            &out,
            1,
            &["FAIL: rollback", "kept size 50", "server size 30"],
        );
        assert_eq!(note_size(&std::fs::read_to_string(&at_50).unwrap()), 50);
        // Consistent with what it held at the backup.
        let out = check(&vkey, &at_30, &url, &tls, false);
        expect(&out, 0, &["OK", "kept size 30", "server size 30"]);
    }
    // The restored copy appended 20 other events: a fork at size 50, then
    // one beyond it that no consistency proof can join to the kept tree.
    append_n(&restored, 1000, 20);
    {
        let (_server, url) = serve(&restored, &tls, None).unwrap();
        let out = check(&vkey, &at_50, &url, &tls, false);
        expect(
            &out,
            1,
            &[
                "FAIL: fork",
                "two different trees of size 50",
                "server size 50",
            ],
        );
        let out = check(&vkey, &at_30, &url, &tls, false);
        expect(&out, 0, &["OK", "kept size 30", "server size 50"]);
    }
    append_n(&restored, 2000, 7);
    {
        let (_server, url) = serve(&restored, &tls, None).unwrap();
        let out = check(&vkey, &at_50, &url, &tls, false);
        expect(
            &out,
            1,
            &[
                "FAIL: fork",
                "consistency proof does not verify",
                "server size 57",
            ],
        );
    }
    // Not a server at all, or no CA for https: usage errors (exit 2).
    let out = check(&vkey, &at_30, "https://127.0.0.1:1", &tls, false);
    expect(&out, 2, &["cannot connect"]);
    let out = run(&[
        "check",
        "--vkey",
        &vkey,
        "--checkpoint",
        p(&at_30),
        "--url",
        "https://127.0.0.1:1",
    ]);
    expect(&out, 2, &["--ca"]);
}

/// With `--anchor`, the server refuses to start on a restored backup
/// (exit 1, naming the anchor and both sizes, changing nothing), and keeps
/// starting on its own log.
#[test]
fn serve_with_an_anchor_refuses_a_restored_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tls(tmp.path());
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let anchor = tmp.path().join("anchor.checkpoint");
    init_log(&data);
    append_n(&data, 0, 10);
    {
        let (_server, _url) = serve(&data, &tls, Some(&anchor)).unwrap();
    }
    assert_eq!(note_size(&std::fs::read_to_string(&anchor).unwrap()), 10);
    copy_dir(&data, &backup);
    let input = ndjson((10..25).map(|i| format!("a{i}")));
    let out = run_full(
        &["append", "--data", p(&data), "--anchor", p(&anchor)],
        input.as_bytes(),
        &[],
    );
    expect(&out, 0, &[]);
    assert_eq!(note_size(&std::fs::read_to_string(&anchor).unwrap()), 25);

    let before = std::fs::read(backup.join("index")).unwrap();
    let (code, stderr) = match serve(&backup, &tls, Some(&anchor)) {
        Err(refused) => refused,
        Ok(_) => panic!("the restored backup was served"),
    };
    assert_eq!(code, 1, "{stderr}");
    for needle in ["rollback", "anchor.checkpoint", "size 25", "size 10"] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert_eq!(std::fs::read(backup.join("index")).unwrap(), before);
    assert_eq!(note_size(&std::fs::read_to_string(&anchor).unwrap()), 25);
    // The CLI refuses it the same way.
    let out = run(&["verify", "--data", p(&backup), "--anchor", p(&anchor)]);
    expect(&out, 1, &["rollback", "anchor.checkpoint"]);
    // And the real log still starts.
    let (_server, _url) = serve(&data, &tls, Some(&anchor)).unwrap();
}
