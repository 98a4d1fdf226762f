//! `stele bench` and `stele bench http`: small runs that check what they
//! report and that what they measured is a real log (it verifies, and it
//! holds the events they counted). No figure is asserted beyond "some".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The line of `stdout` that starts with `prefix` (a `stele bench` line
/// label), or a failure naming it.
fn line<'a>(out: &'a Out, prefix: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{out}"))
}

/// The first number after `label` on `text`'s line.
fn number_after(text: &str, label: &str) -> f64 {
    let rest = &text[text
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {text}"))
        + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("number after {label} in {text}"))
}

/// The per-event work the log must do, measured on its own, and the
/// measured rates against the ceiling it sets (how close is not a test's
/// business: it depends on the machine's load).
fn expect_work_lines(out: &Out) {
    let work = line(out, "baseline  work per event on one core");
    for piece in [
        "compress and seal",
        "salt",
        "canonical envelope rebuilt",
        "commitment",
        "Merkle",
        "authenticate and decompress",
        "the search index",
    ] {
        assert!(number_after(work, piece) > 0.0, "{piece}: {work}");
    }
    let ceiling = line(out, "baseline  so at most");
    assert!(number_after(ceiling, "at most") > 0.0, "{ceiling}");
    for ratio in [
        "ratio     append / (per-event work",
        "ratio     verify / (per-event work",
    ] {
        let ratio = line(out, ratio);
        let value = number_after(ratio, "cores) =");
        assert!(value > 0.0, "{ratio}");
    }
}

/// The search lines of `stele bench --search` (and `stele bench search`):
/// each shape finds events.
fn expect_search_lines(out: &Out) {
    for shape in ["actor,", "resource prefix,", "actor + time,", "free text,"] {
        let search = line(out, &format!("search    {shape}"));
        assert!(number_after(search, "p50") > 0.0, "{search}");
        assert!(number_after(search, "ms (") >= 1.0, "{search}");
    }
}

#[test]
fn bench_reports_appends_with_same_run_baselines_and_its_log_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    let out = run(&[
        "bench",
        "--dir",
        p(&dir),
        "--events",
        "3000",
        "--producers",
        "3",
        "--request",
        "50",
        "--verify",
        "--search",
        "--days",
        "2",
        "--keep",
    ]);
    expect(&out, 0, &[]);
    for prefix in [
        "baseline  fdatasync after a ",
        "baseline  SHA-256 on one core",
        "baseline  creating an 8 KiB file",
        "prepare",
        "latency   per request of 50 events",
        "get       3000 entries spread over the log, first read: p50",
        "get       3000 entries spread over the log, warm: p50",
        "disk",
    ] {
        line(&out, prefix);
    }
    let append = line(&out, "append");
    assert!(number_after(append, "append") > 0.0, "{append}");
    assert!(append.contains("durable before ack"), "{append}");
    let cpu = line(&out, "cpu");
    assert!(number_after(cpu, "cpu") > 0.0, "{cpu}");
    assert!(
        line(&out, "publish").contains("at size 3000"),
        "every event is in the final checkpoint:\n{out}"
    );
    assert!(line(&out, "verify").ends_with("OK"), "{out}");
    expect_work_lines(&out);
    // Searches, answered by the index built from the log at its open,
    // each finding events (its values are taken from the log's own).
    line(&out, "index     fed as batches became durable");
    let built = line(&out, "index     built from the log at open");
    assert!(built.contains("for 3000 entries"), "{built}");
    // The first of the two days is closed: its part files are written,
    // and the next open reads them instead of its events.
    let parts = line(&out, "index     part files of");
    assert!(number_after(parts, "part files of") >= 1.0, "{parts}");
    assert!(number_after(parts, "bytes:") > 0.0, "{parts}");
    let reopened = line(&out, "index     at the next open");
    assert!(number_after(reopened, "s (") >= 1.0, "{reopened}");
    assert!(reopened.contains(" 0 files refused"), "{reopened}");
    let gathered = line(&out, "index     frequent words of");
    assert!(
        number_after(gathered, "frequent words of") >= 1.0,
        "{gathered}"
    );
    expect_search_lines(&out);
    let export = line(&out, "export    ");
    assert!(number_after(export, "export") >= 1.0, "{export}");
    assert!(export.contains("verified offline"), "{export}");
    let counted = line(&out, "search    count + daily histogram");
    assert!(number_after(counted, "ms (") >= 1.0, "{counted}");
    // Bytes on disk against the raw JSON of the realistic events.
    let size = line(&out, "size");
    let raw = number_after(size, "raw JSON");
    assert!((250.0..=450.0).contains(&raw), "{size}");
    let directory = number_after(size, "per event; the data directory");
    assert!(directory > 0.0 && directory < 2.0 * raw, "{size}");
    // The events themselves are kept compressed in blocks: below their
    // raw JSON even in this run's small batches (a block holds one
    // batch's entries: about 100 here, where a busy log gathers
    // thousands), where the format before blocks took twice the raw JSON.
    let disk = line(&out, "disk");
    let segments = number_after(disk, "segments");
    assert!(segments > 0.0 && segments < raw, "{disk}");

    // What it measured is an ordinary log, in a directory of its own
    // under --dir: it opens and verifies.
    let kept = std::path::PathBuf::from(line(&out, "kept").trim_start_matches("kept").trim());
    assert_eq!(kept.parent(), Some(dir.as_path()), "{out}");
    let data = kept.join("data");
    let verified = run(&["verify", "--data", p(&data)]);
    expect(&verified, 0, &[]);
    // Its searches timed again on the kept directory, as another build
    // would be compared on the same events.
    let again = run(&["bench", "search", "--data", p(&data)]);
    expect(&again, 0, &[]);
    line(&again, "index     covered in");
    expect_search_lines(&again);
    // Not a log of its own: refused, and nothing in it changes.
    let other = tmp.path().join("other");
    expect(
        &run(&["init", "--data", p(&other), "--origin", "example.com/log"]),
        0,
        &[],
    );
    let before = tree(&other);
    let refused = run(&["bench", "search", "--data", p(&other)]);
    expect(&refused, 2, &["not one stele bench made"]);
    assert_eq!(tree(&other), before);
    let checkpoint = run(&["checkpoint", "--data", p(&data)]);
    expect(&checkpoint, 0, &[]);
    assert_eq!(
        checkpoint.stdout.lines().nth(1),
        Some("3000"),
        "{checkpoint}"
    );
}

#[test]
fn bench_removes_only_the_directory_it_created() {
    let tmp = tempfile::tempdir().unwrap();
    // --dir names a directory that already holds someone's files: they
    // stay, and so does the directory; only the run's own is removed.
    let dir = tmp.path().join("bench");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("precious.txt"), b"not the benchmark's").unwrap();
    let out = run(&["bench", "--dir", p(&dir), "--events", "500"]);
    expect(&out, 0, &["append"]);
    assert!(!out.stdout.contains("kept"), "{out}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["precious.txt"], "{out}");
    assert_eq!(
        std::fs::read(dir.join("precious.txt")).unwrap(),
        b"not the benchmark's"
    );

    // A run that fails (here: refused flags) removes nothing either.
    let out = run(&["bench", "--dir", p(&dir), "--producers", "100000"]);
    expect(&out, 2, &["--producers"]);
    assert!(dir.join("precious.txt").exists());
}

#[test]
fn bench_refuses_flags_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["--workload", "filler"][..],
        &["--seed", "x"],
        &["--producers", "100000"],
        &["--request", "1000000"],
    ] {
        let mut all = vec!["bench", "--dir", p(tmp.path())];
        all.extend_from_slice(args);
        let out = run(&all);
        expect(&out, 2, &[args[0]]);
    }
    for args in [
        &["--threads", "18446744073709551615"][..],
        &["--concurrency", "18446744073709551615"],
        &["--batch", "18446744073709551615"],
        &["--workload", "filler"],
    ] {
        let mut all = vec![
            "bench",
            "http",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ];
        all.extend_from_slice(args);
        let out = run(&all);
        expect(&out, 2, &[args[0]]);
    }
    for url in [
        "http://127.0.0.1:78000",
        "http://127.0.0.1:abc",
        "https://[::1]:0",
    ] {
        let out = run(&["bench", "http", "--url", url, "--token", "x"]);
        expect(&out, 2, &["invalid port"]);
    }
}

/// Kubernetes audit events go through the webhook's mapping: the log
/// verifies and holds every one, their raw JSON is about a kilobyte each.
#[test]
fn bench_appends_kubernetes_audit_events() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "bench",
        "--dir",
        p(tmp.path()),
        "--workload",
        "k8s",
        "--events",
        "2000",
        "--verify",
    ]);
    expect(&out, 0, &[]);
    assert!(line(&out, "publish").contains("at size 2000"), "{out}");
    assert!(line(&out, "verify").ends_with("OK"), "{out}");
    expect_work_lines(&out);
    let raw = number_after(line(&out, "size"), "raw JSON");
    assert!((800.0..=1_600.0).contains(&raw), "{out}");
}

/// `stele bench events` prints the benchmark's events, one per line: the
/// same for the same seed, others for another, and `stele append` takes
/// them as they are.
#[test]
fn bench_events_prints_what_append_takes() {
    let events = |seed: &str| {
        let out = run(&["bench", "events", "--count", "40", "--seed", seed]);
        expect(&out, 0, &[]);
        out.stdout
    };
    let (one, again, other) = (events("5"), events("5"), events("6"));
    assert_eq!(one.lines().count(), 40);
    assert_eq!(one, again);
    assert_ne!(one, other);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init_log(&data);
    assert_eq!(append_ok(&data, &one).len(), 40);
    let k8s = run(&["bench", "events", "--workload", "k8s", "--count", "3"]);
    expect(&k8s, 0, &[r#""apiVersion":"audit.k8s.io/v1""#]);
    for line in k8s.stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["kind"], "Event", "{line}");
    }
}

#[test]
fn bench_refuses_counts_of_zero() {
    for flag in ["--events", "--producers", "--request"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = run(&["bench", "--dir", p(tmp.path()), flag, "0"]);
        expect(&out, 2, &["must be positive"]);
        expect_one_error_line(&out);
    }
}

/// Kills the server it holds when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `stele serve` on a free loopback port and returns it with its
/// base URL (read from its "listening on" line; the rest of its standard
/// error is drained on a thread).
fn serve(data: &Path) -> (Server, String) {
    let mut child = stele()
        .args(["serve", "--data", p(data), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let server = Server(child);
    let url = loop {
        let l = lines
            .next()
            .expect("stele serve ended before listening")
            .unwrap();
        if let Some(at) = l.find("listening on ") {
            break l[at + "listening on ".len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, url)
}

/// One plain HTTP/1.1 request to `url` (`http://host:port`) with a bearer
/// token; returns (status, body).
fn http(url: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn bench_http_loads_a_running_server_and_counts_only_durable_events() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = run(&["init", "--data", p(&data), "--origin", ORIGIN]);
    expect(&init, 0, &[]);
    // Tokens are granted through the log, so before the server holds it.
    let token = run(&[
        "token",
        "create",
        "--data",
        p(&data),
        "--principal",
        "bench",
        "--role",
        "writer",
    ]);
    expect(&token, 0, &["(roles writer)"]);
    assert!(!token.stderr.contains("Role("), "Debug text: {token}");
    let token = token.stdout.lines().last().unwrap().trim().to_string();
    let admin = run(&[
        "token",
        "create",
        "--data",
        p(&data),
        "--principal",
        "ops",
        "--role",
        "admin",
    ]);
    expect(&admin, 0, &[]);
    let admin = admin.stdout.lines().last().unwrap().trim().to_string();
    let (server, url) = serve(&data);

    let out = run(&[
        "bench",
        "http",
        "--url",
        &url,
        "--token",
        &token,
        "--concurrency",
        "4",
        "--batch",
        "10",
        "--warmup",
        "0",
        "--requests",
        "60",
        "--json",
    ]);
    expect(&out, 0, &[]);
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(summary["errors"]["total"], 0, "{summary}");
    // Counted by requests, not time: a slow machine takes longer, never
    // fewer.
    assert_eq!(summary["requests"], 60, "{summary}");
    let events = summary["events"].as_u64().unwrap();
    assert_eq!(events, 600, "{summary}");
    assert!(summary["events_per_s"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(
        summary["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    let probes = summary["checkpoint"]["probes"].as_u64().unwrap();
    assert!(probes > 0, "{summary}");
    assert_eq!(summary["checkpoint"]["not_covered"], 0, "{summary}");
    assert_eq!(summary["workload"], "app", "{summary}");

    // Kubernetes audit events go to the webhook, an EventList a request.
    let out = run(&[
        "bench",
        "http",
        "--url",
        &url,
        "--token",
        &token,
        "--workload",
        "k8s",
        "--concurrency",
        "2",
        "--batch",
        "5",
        "--warmup",
        "0",
        "--requests",
        "20",
        "--json",
    ]);
    expect(&out, 0, &[]);
    let k8s: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(k8s["errors"]["total"], 0, "{k8s}");
    assert_eq!(k8s["events"], 100, "{k8s}");
    assert_eq!(k8s["workload"], "k8s", "{k8s}");

    // A wrong token is counted as errors (401s), and the exit code says so.
    let refused = run(&[
        "bench",
        "http",
        "--url",
        &url,
        "--token",
        "stele_nope_nope",
        "--concurrency",
        "1",
        "--warmup",
        "0",
        "--requests",
        "5",
        "--no-checkpoint-probe",
        "--json",
    ]);
    assert_ne!(refused.code, 0, "{refused}");
    let summary: serde_json::Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(summary["errors"]["status"]["401"], 5, "{summary}");
    assert_eq!(summary["events"], 0, "{summary}");

    // `token list` shows the token without its secret (it reads only the
    // file, so it works beside the server); a revocation over the API
    // takes effect on the running server at once.
    let list = run(&["token", "list", "--data", p(&data)]);
    expect(&list, 0, &[]);
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains("\tbench\t"))
        .unwrap_or_else(|| panic!("bench token not listed:\n{list}"));
    assert!(
        line.split('\t').nth(2) == Some("writer") && line.ends_with("active"),
        "{line}"
    );
    // `stele_<12 hex digits>_<base64url secret>` (the secret may hold `_`).
    let (_, secret) = token["stele_".len()..].split_once('_').unwrap();
    assert!(secret.len() >= 40, "{token}");
    assert!(
        !list.stdout.contains(secret),
        "list shows a secret:\n{list}"
    );
    let tokens_file = std::fs::read_to_string(data.join("tokens.json")).unwrap();
    assert!(!tokens_file.contains(secret), "the secret is stored");
    let id = line.split('\t').next().unwrap();
    // The CLI cannot append to the log the server holds: it says so and
    // names the API to use.
    let busy = run(&["token", "revoke", "--data", p(&data), "--id", id]);
    expect(&busy, 2, &["stele serve", "DELETE /v1/tokens/{id}"]);
    let (status, body) = http(&url, "DELETE", &format!("/v1/tokens/{id}"), &admin);
    assert_eq!(status, 200, "{body}");
    let list = run(&["token", "list", "--data", p(&data)]);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(id) && l.contains("revoked")),
        "{list}"
    );
    let revoked = run(&[
        "bench",
        "http",
        "--url",
        &url,
        "--token",
        &token,
        "--concurrency",
        "1",
        "--warmup",
        "0",
        "--requests",
        "3",
        "--no-checkpoint-probe",
        "--json",
    ]);
    assert_ne!(revoked.code, 0, "{revoked}");
    let summary: serde_json::Value = serde_json::from_str(revoked.stdout.trim()).unwrap();
    assert_eq!(summary["errors"]["status"]["401"], 3, "{summary}");
    drop(server);
    // Revoking an unknown id is a usage error.
    let unknown = run(&["token", "revoke", "--data", p(&data), "--id", "no-such-id"]);
    expect(&unknown, 2, &["no-such-id"]);
    // Everything acknowledged (counted or not: warm-up, probes) is in the
    // log, which verifies.
    let verified = run(&["verify", "--data", p(&data)]);
    expect(&verified, 0, &[]);
    let checkpoint = run(&["checkpoint", "--data", p(&data)]);
    expect(&checkpoint, 0, &[]);
    let size: u64 = checkpoint.stdout.lines().nth(1).unwrap().parse().unwrap();
    assert!(
        size >= events + probes,
        "log size {size} < {events} + {probes}"
    );
}

#[test]
fn bench_output_into_a_closed_pipe_ends_quietly_not_in_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["bench", "--dir", p(tmp.path()), "--events", "500"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A reader that went away (`stele bench | head`) ends the command
    // quietly, as for every command but `append` (whose receipts matter).
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // Its directory is removed as after any other run.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
