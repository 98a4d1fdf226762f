//! Crash tests: `stele append` is SIGKILLed while appending at full speed,
//! again and again in one data directory, so every iteration recovers a
//! longer log left by a kill at a random point. The durable-write contract
//! under test (crates/log/src/engine.rs module docs): a receipt is printed
//! only once its entry is durable, so every receipt ever printed must be in
//! the log afterwards, with the commitment and salt it promised, holding the
//! event that was sent; entries without a receipt may exist (durable but not
//! yet acknowledged) but must be the events that were sent, in order.
//!
//! Also deterministic reproductions of crash states (kill after receipts,
//! torn rewrite of a tile).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ITERATIONS: u64 = 50;
const CHECK_EVERY: u64 = 10;

/// The stream event `n` goes to when the run spreads events over streams.
fn stream_of(n: u64, streams: bool) -> String {
    if streams {
        format!("s{}", n % 3)
    } else {
        "default".to_string()
    }
}

/// Event `n` of iteration `iter`: about 300 bytes, actor unique.
fn crash_event(iter: u64, n: u64, streams: bool) -> String {
    let stream = if streams {
        format!(r#""stream":"{}","#, stream_of(n, true))
    } else {
        String::new()
    };
    format!(
        concat!(
            r#"{{"actor":"crash-{}-{}","action":"object.write",{}"resource":"bucket/crash/object-{}","#,
            r#""outcome":"success","source":"10.20.30.40","time":"2026-01-02T03:04:05.678Z","#,
            r#""attributes":{{"n":{},"pad":"{}","tags":["a","b"]}}}}"#
        ),
        iter,
        n,
        stream,
        n,
        n,
        "p".repeat(120)
    )
}

/// Parses `crash-<iter>-<n>`.
fn parse_actor(actor: &str) -> (u64, u64) {
    let rest = actor
        .strip_prefix("crash-")
        .unwrap_or_else(|| panic!("unexpected actor {actor:?}"));
    let (i, n) = rest
        .split_once('-')
        .unwrap_or_else(|| panic!("unexpected actor {actor:?}"));
    (
        i.parse().expect("iteration"),
        n.parse().expect("event number"),
    )
}

/// When an iteration's process is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the spawn: lands in start-up, recovery or the
    /// first batches, depending on the machine's speed.
    AfterSpawn(Duration),
    /// Once `receipts` receipts have been printed, and `then` later: lands
    /// mid-stream, with at least that many entries acknowledged, however
    /// slow or loaded the machine.
    AfterReceipts { receipts: usize, then: Duration },
}

/// Kill time of an iteration, pseudo-random from its number: every 7th
/// 0..8 ms after the spawn, every 7th 8..60 ms after the spawn, the others
/// 0..120 ms after the 1..=80th receipt.
fn kill_delay(iter: u64) -> Kill {
    let mut rng = Rng(0x5EED_0000 + iter);
    match iter % 7 {
        3 => Kill::AfterSpawn(Duration::from_millis(rng.range(0, 8))),
        5 => Kill::AfterSpawn(Duration::from_millis(rng.range(8, 60))),
        _ => Kill::AfterReceipts {
            receipts: rng.range(1, 81) as usize,
            then: Duration::from_millis(rng.range(0, 120)),
        },
    }
}

/// What a schedule of kills guarantees, whatever the machine's speed: how
/// many iterations are killed mid-stream, and how many receipts they get
/// at least.
fn guaranteed(kills: impl Iterator<Item = Kill>) -> (usize, usize) {
    kills.fold((0, 0), |(iterations, receipts), kill| match kill {
        Kill::AfterSpawn(_) => (iterations, receipts),
        Kill::AfterReceipts { receipts: n, .. } => (iterations + 1, receipts + n),
    })
}

/// What one killed `append` printed.
#[derive(Debug)]
struct Iteration {
    iter: u64,
    receipts: Vec<Receipt>,
}

/// Spawns `stele append`, feeds events until it dies, kills it at
/// `delay`; returns the complete receipts it printed.
fn run_and_kill(dir: &Path, iter: u64, delay: Kill, streams: bool) -> Vec<Receipt> {
    let mut child: Child = stele()
        .args(["append", "--data", p(dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele append");
    let started = Instant::now();
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");

    let writer = std::thread::spawn(move || {
        let mut out = BufWriter::with_capacity(16 * 1024, stdin);
        let mut n = 0u64;
        loop {
            let mut line = crash_event(iter, n, streams);
            line.push('\n');
            if out.write_all(line.as_bytes()).is_err() {
                break;
            }
            n += 1;
        }
        // The pipe broke: the child is gone.
        n
    });
    let wanted = match delay {
        Kill::AfterReceipts { receipts, .. } => receipts,
        Kill::AfterSpawn(_) => usize::MAX,
    };
    // Told once `wanted` receipts have been read; dropped when the output
    // ends.
    let (reached_tx, reached_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut input = BufReader::new(stdout);
        let mut receipts = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Only complete lines that are complete receipts count: a kill
            // may cut the last line short.
            if !line.ends_with('\n') {
                break;
            }
            if let Some(r) = parse_receipt(line.trim_end()) {
                receipts.push(r);
                if receipts.len() == wanted {
                    // The receiver is gone only if the test already failed.
                    let _ = reached_tx.send(());
                }
            } else {
                // The checkpoint note after the receipts never comes (stdin
                // is never closed), so anything else is a broken line.
                panic!("iteration {iter}: unexpected stdout line {line:?}");
            }
        }
        receipts
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // Whether the output ended before the kill: the process died by itself.
    let mut output_ended = false;
    match delay {
        Kill::AfterSpawn(d) => std::thread::sleep(d.saturating_sub(started.elapsed())),
        Kill::AfterReceipts { receipts, then } => {
            // A hang guard, kept short: the process appends at full speed
            // meanwhile, and a build that never prints receipts would fill
            // the disk.
            match reached_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(()) => std::thread::sleep(then),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => output_ended = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    child.kill().expect("SIGKILL");
                    panic!(
                        "iteration {iter}: stele append printed fewer than {receipts} receipts in 30 s \
                         (receipts must be printed as each batch is durable)"
                    );
                }
            }
        }
    }
    let early_exit = if output_ended {
        Some(child.wait().expect("wait"))
    } else {
        child.try_wait().expect("try_wait")
    };
    if early_exit.is_none() {
        child.kill().expect("SIGKILL");
    }
    let status = child.wait().expect("wait");
    let sent = writer.join().expect("writer thread");
    let receipts = reader.join().expect("reader thread");
    let stderr = err_reader.join().expect("stderr thread");
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("RUST_BACKTRACE")
            && !stderr.contains("internal error"),
        "iteration {iter}: stele append panicked:\n{stderr}"
    );
    // Standard input is never closed, so the process can only end by the
    // kill; an exit of its own is a failure (e.g. recovery refused the log).
    assert!(
        early_exit.is_none(),
        "iteration {iter}: stele append exited by itself ({status}) after {delay:?}:\n{stderr}"
    );
    assert!(
        receipts.len() as u64 <= sent,
        "iteration {iter}: {} receipts for {sent} events sent",
        receipts.len()
    );
    if let Kill::AfterReceipts {
        receipts: wanted, ..
    } = delay
    {
        assert!(
            receipts.len() >= wanted,
            "iteration {iter}: killed after {wanted} receipts but only {} were read",
            receipts.len()
        );
    }
    receipts
}

/// Checks everything promised so far. `sample` is how many random indices
/// to read back with `stele get`; with `full`, every receipt of the last
/// iteration is read back too, and an inclusion proof is checked offline.
fn check(
    dir: &Path,
    vkey: &str,
    iterations: &[Iteration],
    sample: u64,
    full: bool,
    seed: u64,
    streams: bool,
) {
    let all: Vec<(u64, u64, &Receipt)> = iterations
        .iter()
        .flat_map(|it| {
            it.receipts
                .iter()
                .enumerate()
                .map(move |(k, r)| (it.iter, k as u64, r))
        })
        .collect();

    // The first open after a kill recovers and publishes.
    let note = checkpoint_note(dir);
    let size = note_size(&note);
    let max_index = all.iter().map(|(_, _, r)| r.index).max();
    if let Some(max) = max_index {
        assert!(
            size > max,
            "checkpoint size {size} does not cover receipt index {max}"
        );
    }

    // Indices: unique and increasing across the whole run; within one
    // process consecutive (the k-th receipt is the k-th event sent, and
    // all of a process's entries are consecutive in the log).
    let mut last: Option<u64> = None;
    for it in iterations {
        for (k, r) in it.receipts.iter().enumerate() {
            assert_eq!(
                r.index,
                it.receipts[0].index + k as u64,
                "iteration {}: receipts are not consecutive",
                it.iter
            );
            assert_eq!(
                r.stream,
                stream_of(k as u64, streams),
                "iteration {}: receipt {k} names another stream",
                it.iter
            );
            if let Some(l) = last {
                assert!(
                    r.index > l,
                    "iteration {}: receipt index {} is not after {l}",
                    it.iter,
                    r.index
                );
            }
            last = Some(r.index);
        }
    }
    let mut ids: Vec<&str> = all.iter().map(|(_, _, r)| r.id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "receipt ids are not unique");

    // Whole-log verification: every segment record decrypts to its
    // commitment, every tile and checkpoint recomputes.
    let out = verify(dir);
    assert_eq!(
        out.code,
        0,
        "verify after {} iterations failed:\n{out}",
        iterations.len()
    );
    assert!(
        out.stdout.starts_with(&format!("OK: {size} entries")),
        "verify summary:\n{out}"
    );

    // Every receipt's commitment is the leaf stored at its index, read
    // from the public entry bundles (all receipts, cheaply).
    let mut bundles = Bundles::new(dir, size);
    for (iter, k, r) in &all {
        assert_eq!(
            b64_encode(&bundles.commitment(r.index)),
            r.commitment,
            "receipt {k} of iteration {iter} (index {}): the log holds another commitment",
            r.index
        );
    }

    // Read back a sample with `stele get`: receipts (commitment, salt,
    // actor) and unacknowledged entries (actor in sequence).
    let first_of: BTreeMap<u64, u64> = iterations
        .iter()
        .filter_map(|it| it.receipts.first().map(|r| (it.iter, r.index)))
        .collect();
    let by_index: BTreeMap<u64, (u64, u64, &Receipt)> = all
        .iter()
        .map(|(i, k, r)| (r.index, (*i, *k, *r)))
        .collect();
    let mut indices: Vec<u64> = Vec::new();
    let mut rng = Rng(seed);
    if size > 0 {
        for _ in 0..sample {
            indices.push(rng.range(0, size));
        }
        indices.push(0);
        indices.push(size - 1);
    }
    for it in iterations {
        if let (Some(f), Some(l)) = (it.receipts.first(), it.receipts.last()) {
            indices.push(f.index);
            indices.push(l.index);
            // The entry after the last receipt: durable but unacknowledged,
            // or the next process's first.
            if l.index + 1 < size {
                indices.push(l.index + 1);
            }
        }
    }
    if full && let Some(it) = iterations.iter().rev().find(|it| !it.receipts.is_empty()) {
        indices.extend(it.receipts.iter().map(|r| r.index));
    }
    indices.sort_unstable();
    indices.dedup();
    let mut previous: Option<(u64, (u64, u64))> = None;
    for &j in &indices {
        let entry = get(dir, j);
        assert_eq!(
            entry["index"].as_u64(),
            Some(j),
            "get --index {j} returned another index: {entry}"
        );
        let (i, n) = parse_actor(actor_of(&entry));
        assert!(
            i < iterations.len() as u64,
            "entry {j} holds an event of iteration {i}, which never ran"
        );
        if let Some(&f) = first_of.get(&i) {
            assert!(
                j >= f,
                "entry {j} holds event {n} of iteration {i}, whose event 0 is entry {f}"
            );
            assert_eq!(
                j - f,
                n,
                "entry {j} holds event {n} of iteration {i}, whose event 0 is entry {f}"
            );
        }
        if let Some((iter, k, r)) = by_index.get(&j) {
            assert_eq!(
                (i, n),
                (*iter, *k),
                "entry {j}: receipt {k} of iteration {iter} but the log holds event {n} of iteration {i}"
            );
            assert_eq!(
                entry["commitment"].as_str(),
                Some(r.commitment.as_str()),
                "entry {j}: commitment differs from the receipt"
            );
            assert_eq!(
                entry["salt"].as_str(),
                Some(r.salt.as_str()),
                "entry {j}: salt differs from the receipt"
            );
            assert_eq!(
                entry["event"]["id"].as_str(),
                Some(r.id.as_str()),
                "entry {j}: id differs from the receipt"
            );
            assert_eq!(
                entry["event"]["stream"].as_str(),
                Some(r.stream.as_str()),
                "entry {j}: stream differs from the receipt"
            );
        }
        if let Some((pj, pin)) = previous {
            assert!(
                (i, n) > pin,
                "entry {j} holds {:?} but the earlier entry {pj} holds {:?}",
                (i, n),
                pin
            );
        }
        previous = Some((j, (i, n)));
    }

    if full {
        let (_, _, r) = all.last().expect("at least one receipt in the whole run");
        let out = run(&[
            "proof",
            "inclusion",
            "--data",
            p(dir),
            "--index",
            &r.index.to_string(),
        ]);
        expect(&out, 0, &["c2sp.org/tlog-proof@v1"]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let proof = tmp.path().join("proof");
        std::fs::write(&proof, &out.stdout).expect("write proof");
        let ok = run(&[
            "verify-proof",
            "--vkey",
            vkey,
            "--proof",
            p(&proof),
            "--commitment",
            &r.commitment,
        ]);
        expect(&ok, 0, &["OK", &format!("entry {}", r.index)]);
        // A neighbour's commitment must not verify with this proof.
        let other = &all[0].2;
        if other.index != r.index {
            let bad = run(&[
                "verify-proof",
                "--vkey",
                vkey,
                "--proof",
                p(&proof),
                "--commitment",
                &other.commitment,
            ]);
            assert_eq!(
                bad.code, 1,
                "a proof verified for another entry's commitment:\n{bad}"
            );
        }
    }
}

#[test]
fn sigkill_during_append_loses_no_receipt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    let started = Instant::now();
    let mut iterations: Vec<Iteration> = Vec::new();
    for iter in 0..ITERATIONS {
        let receipts = run_and_kill(&dir, iter, kill_delay(iter), false);
        if std::env::var_os("STELE_CRASH_TRACE").is_some() {
            eprintln!(
                "iteration {iter}: killed after {:?}, {} receipts",
                kill_delay(iter),
                receipts.len()
            );
        }
        iterations.push(Iteration { iter, receipts });
        if (iter + 1) % CHECK_EVERY == 0 && iter + 1 < ITERATIONS {
            check(&dir, &vkey, &iterations, 25, false, iter, false);
        }
    }
    let total: usize = iterations.iter().map(|it| it.receipts.len()).sum();
    let with_receipts = iterations
        .iter()
        .filter(|it| !it.receipts.is_empty())
        .count();
    let without = iterations.len() - with_receipts;
    eprintln!(
        "{ITERATIONS} kills, {total} receipts, {with_receipts} iterations with receipts, {without} without, {:?}",
        started.elapsed()
    );
    // The run is only meaningful if kills landed both mid-stream and early,
    // with enough receipts to exercise recovery. The schedule guarantees it
    // on any machine: each mid-stream kill waits for its receipts.
    let (mid_stream, promised) = guaranteed((0..ITERATIONS).map(kill_delay));
    assert!(
        mid_stream as u64 >= ITERATIONS / 2 && mid_stream < ITERATIONS as usize,
        "{mid_stream} of {ITERATIONS} kills mid-stream"
    );
    assert!(
        promised >= 1000,
        "the schedule promises {promised} receipts"
    );
    assert!(
        with_receipts >= mid_stream,
        "{with_receipts} iterations got receipts, {mid_stream} were killed mid-stream"
    );
    assert!(total >= promised, "{total} receipts, {promised} promised");
    check(&dir, &vkey, &iterations, 200, true, 0xF1A1, false);
    // After everything, a normal append still works on the recovered log.
    let before = checkpoint_size(&dir);
    let rs = append_ok(&dir, &ndjson(["after-crashes".to_string()]));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].index, before);
    assert_eq!(actor_of(&get(&dir, before)), "after-crashes");
    verify_ok(&dir);
}

/// The same contract when every process writes to three streams at once,
/// so recovery has to cut and continue three segments.
#[test]
fn sigkill_during_append_to_several_streams() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let vkey = init_log(&dir);
    let mut iterations: Vec<Iteration> = Vec::new();
    for iter in 0..15 {
        let receipts = run_and_kill(&dir, iter, kill_delay(iter + 1000), true);
        iterations.push(Iteration { iter, receipts });
    }
    let total: usize = iterations.iter().map(|it| it.receipts.len()).sum();
    let (_, promised) = guaranteed((0..15).map(|iter| kill_delay(iter + 1000)));
    assert!(promised >= 300, "the schedule promises {promised} receipts");
    assert!(total >= promised, "{total} receipts, {promised} promised");
    check(&dir, &vkey, &iterations, 100, true, 0x57AE, true);
    for s in ["s0", "s1", "s2"] {
        assert!(segment_file(&dir, s).is_file());
    }
}

/// Starts `stele append`, sends `events` events, waits until all their
/// receipts are printed (they are durable), then SIGKILLs it before it can
/// publish a checkpoint. Returns the receipts.
fn append_then_kill(dir: &Path, actors: &[String]) -> Vec<Receipt> {
    let mut child = stele()
        .args(["append", "--data", p(dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(ndjson(actors.iter().cloned()).as_bytes())
        .expect("write events");
    stdin.flush().expect("flush");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut receipts = Vec::new();
    while receipts.len() < actors.len() {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read receipt");
        assert!(n > 0, "append ended before printing all receipts");
        receipts
            .push(parse_receipt(line.trim_end()).unwrap_or_else(|| panic!("bad receipt {line:?}")));
    }
    // stdin is still open: the process is waiting for more input and has
    // not published. Kill it now.
    child.kill().expect("kill");
    child.wait().expect("wait");
    drop(stdin);
    receipts
}

/// Deterministic form of the crash contract: receipts printed, process
/// killed before it published; the entries must survive any number of
/// later opens of the log (each `stele` command opens and recovers).
#[test]
fn receipts_survive_repeated_reopens_after_kill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    // A first, normally finished append: publishes a checkpoint (size 3).
    let first = append_ok(&dir, &ndjson((0..3).map(|i| format!("first-{i}"))));
    assert_eq!(first.len(), 3);
    let actors: Vec<String> = (0..5).map(|i| format!("killed-{i}")).collect();
    let receipts = append_then_kill(&dir, &actors);
    assert_eq!(
        receipts.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );

    // First open after the kill: recovery integrates and publishes.
    assert_eq!(checkpoint_size(&dir), 8);
    // Later opens must still find every acknowledged entry.
    for round in 0..3 {
        for (r, actor) in receipts.iter().zip(&actors) {
            let out = run(&["get", "--data", p(&dir), "--index", &r.index.to_string()]);
            assert_eq!(
                out.code, 0,
                "round {round}: acknowledged entry {} is gone after reopening:\n{out}",
                r.index
            );
            let entry: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            assert_eq!(actor_of(&entry), actor);
            assert_eq!(entry["salt"].as_str(), Some(r.salt.as_str()));
            assert_eq!(entry["commitment"].as_str(), Some(r.commitment.as_str()));
        }
        let v = verify(&dir);
        assert_eq!(
            v.code, 0,
            "round {round}: verify after kill and reopen:\n{v}"
        );
    }
    // A later append continues after the killed entries.
    let after = append_ok(&dir, &ndjson(["after".to_string()]));
    assert_eq!(after[0].index, 8);
    verify_ok(&dir);
}

/// Same as above, but the process killed after its receipts is followed by
/// a second process that is killed before it appends anything (a kill
/// during start-up), then by normal commands.
#[test]
fn kill_after_receipts_then_kill_during_startup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    append_ok(&dir, &ndjson((0..2).map(|i| format!("first-{i}"))));
    let actors: Vec<String> = (0..4).map(|i| format!("killed-{i}")).collect();
    let receipts = append_then_kill(&dir, &actors);
    // Second writer: opens (recovers, publishes) and is killed with no
    // input at all.
    let mut child = stele()
        .args(["append", "--data", p(&dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until its recovery has published a checkpoint covering the
    // killed entries (the file is replaced atomically, and read here
    // without opening the log); it then waits for input that never comes.
    wait_for_lock(&dir, child.id());
    let want = 2 + receipts.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let note = std::fs::read_to_string(dir.join("log/checkpoint")).expect("log/checkpoint");
        if note_size(&note) == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second writer did not publish size {want} within 60 s:\n{note}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    for r in &receipts {
        let out = run(&["get", "--data", p(&dir), "--index", &r.index.to_string()]);
        assert_eq!(out.code, 0, "acknowledged entry {} lost:\n{out}", r.index);
    }
    let v = verify(&dir);
    assert_eq!(v.code, 0, "verify:\n{v}");
}

/// A SIGKILL inside `publish` must never leave a torn partial tile that the
/// trusted checkpoint needs. A partial tile of a higher level often has the
/// same path and content at the new size as at the last published size
/// (here `tile/1/000.p/2`, the same for every size in 512..768); rewriting
/// it in place (truncate, then write) would open a window where a kill
/// empties it, and so would renaming a new copy over it before a sync (a
/// power loss may keep the rename and not the copy's bytes). Publishing
/// therefore leaves a partial tile that already holds its bytes alone:
/// the same inode, never truncated. A torn file there is corruption,
/// reported by name.
#[test]
fn publish_leaves_an_unchanged_partial_tile_alone() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init_log(&dir);
    append_ok(&dir, &ndjson((0..600).map(|i| format!("u-{i}"))));
    assert_eq!(checkpoint_size(&dir), 600);
    let level1 = dir.join("log/tile/1/000.p/2");
    let before = std::fs::read(&level1).expect("a tree of 600 has tile/1/000.p/2");
    let inode_before = std::fs::metadata(&level1).expect("stat").ino();
    // Keep the old file open: an in-place rewrite would change what it reads.
    let old_handle = std::fs::File::open(&level1).expect("open");
    append_ok(&dir, &ndjson((0..100).map(|i| format!("v-{i}"))));
    assert_eq!(checkpoint_size(&dir), 700);
    let inode_after = std::fs::metadata(&level1).expect("stat").ino();
    assert_eq!(
        inode_before, inode_after,
        "tile/1/000.p/2 was replaced although it held its bytes"
    );
    assert_eq!(
        std::fs::read(&level1).expect("read"),
        before,
        "same content at size 700"
    );
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut &old_handle, &mut old).expect("read old");
    assert_eq!(old, before, "the old file was never truncated");
    verify_ok(&dir);

    // A torn tile of the latest checkpoint (not something a crash can
    // produce any more) is refused with the file named, never repaired.
    std::fs::write(&level1, b"").expect("tear");
    let out = run(&["checkpoint", "--data", p(&dir)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("tile/1/000.p/2"), "{out}");
}
