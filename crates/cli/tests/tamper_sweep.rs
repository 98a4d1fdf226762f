//! The tamper sweep: every file of a data directory that has been through
//! everything Stele writes (policy versions, holds placed and released,
//! tokens created and revoked, a KEK rotation, an attestation, a retention
//! purge, appends on several streams and days, the search index's part
//! files), each damaged in five ways
//! — first, middle and last byte flipped, cut to half, removed — and
//! `stele verify` run on the result.
//!
//! Every outcome is one of: detected (verify exits non-zero without a
//! panic and names the file, or refuses the directory), or undetected and
//! listed in [`UNCHECKED`] with the reason the change cannot matter. A
//! crash (a panic, a signal) fails the test, as does any undetected change
//! not listed there, and any listed exception that no longer happens (so
//! the list cannot grow stale). The table of outcomes per file kind is
//! printed (`cargo test --test tamper_sweep -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

/// How a file is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Damage {
    FlipFirst,
    FlipMiddle,
    FlipLast,
    CutHalf,
    Remove,
}

const DAMAGES: [Damage; 5] = [
    Damage::FlipFirst,
    Damage::FlipMiddle,
    Damage::FlipLast,
    Damage::CutHalf,
    Damage::Remove,
];

impl Damage {
    fn name(self) -> &'static str {
        match self {
            Damage::FlipFirst => "flip first byte",
            Damage::FlipMiddle => "flip middle byte",
            Damage::FlipLast => "flip last byte",
            Damage::CutHalf => "cut to half",
            Damage::Remove => "remove",
        }
    }

    fn apply(self, path: &Path) {
        let len = std::fs::metadata(path).unwrap().len() as i64;
        match self {
            Damage::FlipFirst => flip_byte(path, 0),
            Damage::FlipMiddle => flip_byte(path, len / 2),
            Damage::FlipLast => flip_byte(path, len - 1),
            Damage::CutHalf => {
                let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                file.set_len(len as u64 / 2).unwrap();
            }
            Damage::Remove => std::fs::remove_file(path).unwrap(),
        }
    }
}

/// A change `verify` does not report: file kind, damages, whether the
/// damage always goes unreported (so the entry cannot outlive the reason),
/// and why it cannot hide a change to the log or to what governs it.
struct Unchecked {
    kind: &'static str,
    damages: &'static [Damage],
    always: bool,
    why: &'static str,
}

const UNCHECKED: &[Unchecked] = &[
    Unchecked {
        kind: "segments.state",
        damages: &DAMAGES,
        always: true,
        why: "a cache of segment lengths: ignored whenever a segment disagrees with it; verify recomputes every length from the index",
    },
    Unchecked {
        kind: "search/<n>.part",
        damages: &[Damage::Remove],
        always: true,
        why: "a cache of the search index: without it the next open indexes its segment from the log, and a search reads what no index covers from the log",
    },
    Unchecked {
        kind: "tokens.json",
        damages: &[Damage::Remove],
        always: true,
        why: "without the file no token authenticates: a removal grants nothing (the grants stay in the log)",
    },
    Unchecked {
        kind: "audit/state.json",
        damages: &[Damage::Remove, Damage::FlipMiddle],
        // A flipped byte goes unreported when it lands in a field the
        // scheduler keeps for itself, which depends on the file's layout.
        always: false,
        why: "the scheduler's record of when it last ran (its times, the last run's problems): removing or changing it only makes the next scheduled verification come sooner or later; the outcomes of runs are in the log, in signed attestations; verified_size and verified_root are checked",
    },
];

/// The kind of a file: its path with numbers and dates replaced, so that
/// e.g. every data key is one kind.
fn kind(relative: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in relative.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out.replace("N-N-N", "<day>").replace('N', "<n>")
}

/// Every regular file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A log that has been through every kind of write.
fn template(root: &Path) -> PathBuf {
    let dir = root.join("template");
    init_log(&dir);
    let policy = root.join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\ndefault_stream = \"ops\"\n\n[streams.ops]\nretain = \"30d\"\n\n[streams.tmp]\nretain = \"1d\"\n\n[operators]\nlocal_roles = [\"admin\"]\n",
    )
    .unwrap();
    expect(
        &run(&["policy", "apply", "--data", p(&dir), p(&policy)]),
        0,
        &[],
    );
    append_ok(&dir, &ndjson((0..150).map(|i| format!("user-{i}"))));
    append_ok(
        &dir,
        &(0..20)
            .map(|i| format!("{{\"actor\":\"t{i}\",\"action\":\"x\",\"stream\":\"tmp\"}}\n"))
            .collect::<String>(),
    );
    let placed = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--stream",
        "ops",
        "--reason",
        "case 1",
    ]);
    expect(&placed, 0, &[]);
    let released = run(&[
        "hold",
        "add",
        "--data",
        p(&dir),
        "--stream",
        "tmp",
        "--reason",
        "case 2",
    ]);
    expect(&released, 0, &[]);
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(72)).to_string();
    let at_later = [("STELE_NOW", later.as_str())];
    expect(
        &run_env(
            &["hold", "release", "--data", p(&dir), released.stdout.trim()],
            &at_later,
        ),
        0,
        &[],
    );
    for principal in ["ci", "gone"] {
        expect(
            &run_env(
                &[
                    "token",
                    "create",
                    "--data",
                    p(&dir),
                    "--principal",
                    principal,
                    "--role",
                    "writer",
                    "--expires",
                    "30d",
                ],
                &at_later,
            ),
            0,
            &[],
        );
    }
    let list = run_env(&["token", "list", "--data", p(&dir)], &at_later);
    expect(&list, 0, &["gone"]);
    let gone = list
        .stdout
        .lines()
        .find(|l| l.contains("\tgone\t"))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("token list does not name the token:\n{list}"))
        .to_string();
    expect(
        &run_env(
            &["token", "revoke", "--data", p(&dir), "--id", &gone],
            &at_later,
        ),
        0,
        &[],
    );
    expect(
        &run_env(&["keys", "rotate", "--data", p(&dir)], &at_later),
        0,
        &[],
    );
    expect(
        &run_env(&["retention", "run", "--data", p(&dir)], &at_later),
        0,
        &["purged stream tmp"],
    );
    append_ok(&dir, &ndjson((150..200).map(|i| format!("user-{i}"))));
    expect(
        &run_env(&["audit", "run", "--data", p(&dir)], &at_later),
        0,
        &[],
    );
    // The search index's part files of the days the later events closed.
    expect(
        &run_env(&["index", "rebuild", "--data", p(&dir)], &at_later),
        0,
        &["part files written"],
    );
    assert!(
        files(&dir).iter().any(|f| f.starts_with("search/")),
        "no search part file in the template"
    );
    verify_ok(&dir);
    dir
}

/// Whether verify's output names the damaged file: its path or its name;
/// for a removed segment, whose stream and day only its own header held,
/// the `segments` directory and the missing segment.
fn names_file(text: &str, name: &str, damage: Damage) -> bool {
    let file_name = Path::new(name).file_name().unwrap().to_str().unwrap();
    text.contains(name)
        || text.contains(file_name)
        || (damage == Damage::Remove
            && name.ends_with(".seg")
            && text.contains("segments: segment ")
            && text.contains(" is missing"))
}

#[derive(Debug, Default)]
struct Tally {
    detected: u32,
    undetected: u32,
    files: u32,
}

#[test]
fn every_file_every_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let template = template(tmp.path());
    let names = files(&template);
    for expected in [
        "meta.json",
        "index",
        "checkpoints",
        "log/checkpoint",
        "writer-generation",
        "keys/kek.key",
        "keys/kek.info",
        "keys/signing.key",
        "keys/sessions",
        "holds.json",
        "policies/000001.json",
        "tokens.json",
        "audit/latest.json",
        "audit/state.json",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected}: {names:#?}"
        );
    }
    assert!(names.iter().any(|n| n.ends_with(".purged")), "{names:#?}");
    assert!(names.iter().any(|n| n.ends_with(".dek")), "{names:#?}");
    assert!(names.iter().any(|n| n.ends_with(".seg")), "{names:#?}");

    let case = tmp.path().join("case");
    let mut table: BTreeMap<String, Tally> = BTreeMap::new();
    let mut seen_files: BTreeMap<String, u32> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut used_exceptions = std::collections::BTreeSet::new();
    for name in &names {
        // The lock files are advisory and empty: nothing to damage.
        if name == "lock" || name == "tokens.lock" {
            continue;
        }
        let kind = kind(name);
        *seen_files.entry(kind.clone()).or_default() += 1;
        for damage in DAMAGES {
            if std::fs::metadata(template.join(name)).unwrap().len() == 0 {
                continue;
            }
            if case.exists() {
                std::fs::remove_dir_all(&case).unwrap();
            }
            copy_dir(&template, &case);
            damage.apply(&case.join(name));
            let output = stele()
                .args(["verify", "--data", p(&case)])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let crashed = output.status.code().is_none()
                || output.status.code() == Some(101)
                || text.contains("panicked");
            assert!(
                !crashed,
                "verify crashed on {name} ({}):\n{text}",
                damage.name()
            );
            let tally = table.entry(kind.clone()).or_default();
            if output.status.success() {
                tally.undetected += 1;
                match UNCHECKED
                    .iter()
                    .position(|u| u.kind == kind && u.damages.contains(&damage))
                {
                    Some(i) => {
                        used_exceptions.insert((i, damage));
                    }
                    None => unexpected.push(format!("{name}: {}:\n{text}", damage.name())),
                }
            } else {
                tally.detected += 1;
                assert!(
                    names_file(&text, name, damage),
                    "verify failed on {name} ({}) without naming it:\n{text}",
                    damage.name()
                );
            }
        }
    }
    for (kind, tally) in table.iter_mut() {
        tally.files = seen_files[kind];
    }
    println!("| file kind | files | damaged copies | detected | undetected |");
    println!("|---|---|---|---|---|");
    let (mut detected, mut undetected) = (0, 0);
    for (kind, tally) in &table {
        println!(
            "| `{kind}` | {} | {} | {} | {} |",
            tally.files,
            tally.detected + tally.undetected,
            tally.detected,
            tally.undetected
        );
        detected += tally.detected;
        undetected += tally.undetected;
    }
    println!(
        "total: {detected} detected, {undetected} undetected (each listed with its reason), 0 crashed"
    );
    assert!(
        unexpected.is_empty(),
        "changes verify did not report:\n{}",
        unexpected.join("\n")
    );
    for (i, unchecked) in UNCHECKED.iter().enumerate() {
        for damage in unchecked.damages.iter().filter(|_| unchecked.always) {
            assert!(
                used_exceptions.contains(&(i, *damage)),
                "{} ({}) is listed as unchecked ({}) but verify now reports it: remove it from the list",
                unchecked.kind,
                damage.name(),
                unchecked.why
            );
        }
    }
}
