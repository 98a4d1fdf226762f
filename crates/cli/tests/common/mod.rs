//! Helpers shared by the `stele` integration tests: running the binary,
//! parsing receipts and notes, copying data directories.
//!
//! Every run of the binary goes through [`run_full`], which asserts that
//! standard error never shows a panic or a backtrace hint, whatever the exit
//! code.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const ORIGIN: &str = "test.example/log";

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stele")
}

/// A `stele` command with a predictable environment.
pub fn stele() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("STELE_PASSPHRASE");
    cmd.env("USER", "tester");
    // Purges follow their announcement at once unless a test says.
    cmd.env("STELE_RETENTION_GRACE", "0");
    cmd
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Out {
    /// stdout and stderr together, for "the message names X" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`stele {}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            truncate(&self.stdout, 4000),
            truncate(&self.stderr, 4000)
        )
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Asserts that a run's stderr shows no panic (the product promises one
/// `stele: error:` line, never a backtrace).
pub fn assert_no_panic(out: &Out) {
    assert!(
        !out.stderr.contains("panicked")
            && !out.stderr.contains("RUST_BACKTRACE")
            && !out.stderr.contains("internal error"),
        "the binary panicked:\n{out}"
    );
    assert!(out.code >= 0, "the binary was killed by a signal:\n{out}");
}

/// Runs `stele ARGS` with `stdin` and extra environment variables.
pub fn run_full(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    let mut cmd = stele();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn stele");
    let mut child_stdin = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    // A separate thread, so a large input cannot deadlock against output.
    let feeder = std::thread::spawn(move || {
        let _ = child_stdin.write_all(&input);
        // Dropping closes standard input.
    });
    let output = child.wait_with_output().expect("wait for stele");
    let _ = feeder.join();
    let out = Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
    };
    assert_no_panic(&out);
    out
}

pub fn run(args: &[&str]) -> Out {
    run_full(args, b"", &[])
}

pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    run_full(args, b"", env)
}

/// Asserts the exit code and that stdout+stderr contain every needle
/// (case-insensitive).
#[track_caller]
pub fn expect(out: &Out, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "unexpected exit code:\n{out}");
    let all = out.all().to_lowercase();
    for needle in needles {
        assert!(
            all.contains(&needle.to_lowercase()),
            "output does not mention {needle:?}:\n{out}"
        );
    }
}

/// Asserts that a failing run printed exactly one `stele: error:` line on
/// stderr (the documented error shape).
#[track_caller]
pub fn expect_one_error_line(out: &Out) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{out}");
    assert!(
        lines[0].starts_with("stele: error: "),
        "error line has the wrong shape:\n{out}"
    );
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `stele init` into `dir`; returns the verifier key.
pub fn init_log(dir: &Path) -> String {
    init_log_origin(dir, ORIGIN)
}

pub fn init_log_origin(dir: &Path, origin: &str) -> String {
    let out = run(&["init", "--data", p(dir), "--origin", origin]);
    expect(&out, 0, &[]);
    let vkey = out.stdout.trim().to_string();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "init prints the verifier key alone:\n{out}"
    );
    assert!(
        vkey.starts_with(&format!("{origin}+")),
        "verifier key {vkey:?} does not name the origin"
    );
    vkey
}

/// One client event line (no newline) whose actor is `actor`.
pub fn event_line(actor: &str) -> String {
    format!(
        r#"{{"actor":"{actor}","action":"write","resource":"bucket/object","outcome":"success"}}"#
    )
}

/// NDJSON of events with the given actors.
pub fn ndjson(actors: impl IntoIterator<Item = String>) -> String {
    let mut s = String::new();
    for a in actors {
        s.push_str(&event_line(&a));
        s.push('\n');
    }
    s
}

pub fn append(dir: &Path, input: &str) -> Out {
    run_full(&["append", "--data", p(dir)], input.as_bytes(), &[])
}

/// Appends and expects success; returns the receipts.
pub fn append_ok(dir: &Path, input: &str) -> Vec<Receipt> {
    let out = append(dir, input);
    expect(&out, 0, &[]);
    receipts(&out.stdout)
}

/// A receipt line as printed by `stele append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub id: String,
    pub stream: String,
    pub commitment: String,
    pub salt: String,
}

/// Parses one receipt line; `None` for anything that is not a complete
/// receipt object.
pub fn parse_receipt(line: &str) -> Option<Receipt> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    if obj.len() != 5 {
        return None;
    }
    Some(Receipt {
        index: obj.get("index")?.as_u64()?,
        id: obj.get("id")?.as_str()?.to_string(),
        stream: obj.get("stream")?.as_str()?.to_string(),
        commitment: obj.get("commitment")?.as_str()?.to_string(),
        salt: obj.get("salt")?.as_str()?.to_string(),
    })
}

/// Every receipt in an `append` stdout (lines starting with `{`), checking
/// that each such line is a well-formed receipt.
pub fn receipts(stdout: &str) -> Vec<Receipt> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| parse_receipt(l).unwrap_or_else(|| panic!("malformed receipt line {l:?}")))
        .collect()
}

/// The signed note that follows the receipts in `append` output.
pub fn note_after_receipts(stdout: &str) -> String {
    let mut note = String::new();
    for line in stdout.split_inclusive('\n') {
        if !line.starts_with('{') {
            note.push_str(line);
        }
    }
    note
}

/// The body (text before the blank line) of a signed note.
pub fn note_body(note: &str) -> &str {
    let end = note.find("\n\n").expect("a signed note has a blank line");
    &note[..end + 1]
}

/// Tree size in a signed checkpoint note.
pub fn note_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no size in note {note:?}"))
}

/// The note printed by `stele checkpoint`.
pub fn checkpoint_note(dir: &Path) -> String {
    let out = run(&["checkpoint", "--data", p(dir)]);
    expect(&out, 0, &[ORIGIN]);
    out.stdout
}

pub fn checkpoint_size(dir: &Path) -> u64 {
    note_size(&checkpoint_note(dir))
}

/// `stele get --index I` parsed.
pub fn get(dir: &Path, index: u64) -> serde_json::Value {
    let out = run(&["get", "--data", p(dir), "--index", &index.to_string()]);
    expect(&out, 0, &[]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("get output is not JSON ({e}):\n{out}"))
}

/// The actor of an entry as returned by `get`.
pub fn actor_of(entry: &serde_json::Value) -> &str {
    entry["event"]["event"]["actor"]
        .as_str()
        .unwrap_or_else(|| panic!("no event.event.actor in {entry}"))
}

pub fn verify(dir: &Path) -> Out {
    run(&["verify", "--data", p(dir)])
}

#[track_caller]
pub fn verify_ok(dir: &Path) -> Out {
    let out = verify(dir);
    assert_eq!(out.code, 0, "verify failed:\n{out}");
    assert!(
        out.stdout.starts_with("OK: "),
        "verify prints an OK summary:\n{out}"
    );
    assert!(
        !out.stderr.contains("FAIL"),
        "verify OK but reports problems:\n{out}"
    );
    out
}

/// Recursive copy of a directory tree (files, directories, modes).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create copy directory");
    std::fs::set_permissions(dst, std::fs::metadata(src).expect("stat").permissions())
        .expect("chmod");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ty = entry.file_type().expect("file type");
        if ty.is_dir() {
            copy_dir(&from, &to);
        } else if ty.is_file() {
            std::fs::copy(&from, &to).expect("copy file");
        }
    }
}

/// Flips the low bit of byte `at` (negative: from the end) of `path`.
pub fn flip_byte(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let i = if at < 0 { bytes.len() as i64 + at } else { at } as usize;
    assert!(
        i < bytes.len(),
        "{} has only {} bytes",
        path.display(),
        bytes.len()
    );
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).expect("write flipped file");
}

/// The only `.seg` file under `segments/<stream>/`.
pub fn segment_file(dir: &Path, stream: &str) -> PathBuf {
    let seg_dir = dir.join("segments").join(stream);
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&seg_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", seg_dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert_eq!(
        segs.len(),
        1,
        "expected one segment in {}: {segs:?}",
        seg_dir.display()
    );
    segs.remove(0)
}

/// A deterministic pseudo-random generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// Base64 (standard) decode helper.
pub fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 {text:?}: {e}"))
}

pub fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The commitment stored for entry `index` in the public entry bundles of a
/// tree of `size` (C2SP tlog-tiles: `log/tile/entries/<N>[.p/<W>]`).
pub struct Bundles {
    dir: PathBuf,
    size: u64,
    cache: std::collections::HashMap<u64, Vec<Vec<u8>>>,
}

impl Bundles {
    pub fn new(dir: &Path, size: u64) -> Bundles {
        Bundles {
            dir: dir.to_path_buf(),
            size,
            cache: Default::default(),
        }
    }

    pub fn commitment(&mut self, index: u64) -> Vec<u8> {
        assert!(
            index < self.size,
            "entry {index} is beyond the tree size {}",
            self.size
        );
        let n = index / 256;
        let size = self.size;
        let dir = self.dir.clone();
        let entries = self.cache.entry(n).or_insert_with(|| {
            let width = if (n + 1) * 256 <= size {
                256
            } else {
                (size % 256) as u16
            };
            let id = stele_tlog::TileId::new(0, n, width).expect("tile id");
            let path = dir.join("log").join(id.entries_path());
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let entries = stele_tlog::tile::decode_bundle(&bytes)
                .unwrap_or_else(|e| panic!("{}: not an entry bundle: {e}", path.display()));
            assert_eq!(
                entries.len(),
                width as usize,
                "{} holds the wrong number of entries",
                path.display()
            );
            entries.into_iter().map(|e| e.to_vec()).collect()
        });
        entries[(index % 256) as usize].clone()
    }
}

/// Waits (up to 10 s) until process `pid` holds the flock on `dir/lock`,
/// watching /proc/locks so that the wait itself never takes the lock.
pub fn wait_for_lock(dir: &Path, pid: u32) {
    use std::os::unix::fs::MetadataExt as _;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(meta) = std::fs::metadata(dir.join("lock")) {
            let inode = meta.ino();
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            let held = locks.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
                f.len() >= 6
                    && f[1] == "FLOCK"
                    && f[4] == pid.to_string()
                    && f[5].rsplit(':').next().and_then(|i| i.parse::<u64>().ok()) == Some(inode)
            });
            if held {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never took the lock of {}",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Every entry under `dir` (itself included): bytes (files), mode and
/// modification time in nanoseconds.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let stamp = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            out.insert(path, (Vec::new(), meta.mode(), stamp));
        } else {
            out.insert(
                path.clone(),
                (std::fs::read(&path).unwrap(), meta.mode(), stamp),
            );
        }
    }
    out
}
