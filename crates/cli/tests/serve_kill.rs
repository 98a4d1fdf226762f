//! `stele serve` SIGKILLed under HTTP load, again and again on one data
//! directory: concurrent clients POST batches of events to `/v1/events`
//! and keep every receipt the server answered with 200; at a random moment
//! while requests are in flight the server is killed, restarted (the time
//! from the spawn to its "listening on" line is the recovery time), and the
//! clients carry on against the new process.
//!
//! What the product promises, and so what is asserted at the end:
//!
//! - **No acknowledged event is lost**: every event a 200 answered is in the
//!   log at the index its receipt named, with the receipt's server id,
//!   commitment and salt, holding the exact bytes the client sent.
//! - **A retry is not a second event, when the event carries a client
//!   `id`** (docs/server.md, "Idempotency"): the same writer sending the
//!   same `id` with the same content gets the original receipt
//!   (`duplicate: true`) and nothing is appended, across restarts and
//!   crashes (the key is in the durable index record). The "keyed" clients
//!   send every event with a unique `id` and retry a request that got no
//!   answer (the kill cut it) until it is acknowledged, so each of their
//!   events must be in the log exactly once, and all of them must be there.
//! - Events **without** an `id` have no such promise: a retried request
//!   could be appended twice. The "plain" clients therefore never retry;
//!   a request the kill cut off may or may not have become durable, and
//!   each of its events must be in the log at most once.
//! - `stele verify` passes over the whole log.
//!
//! A SIGKILL keeps the page cache: this catches an acknowledgement sent
//! before the data was handed to the kernel (receipts sent without waiting
//! for the commit thread lose thousands of events in every run; receipts
//! sent as the commit thread takes the batch, microseconds before it writes
//! the index records, lose some in every run of 100 kills, in about five
//! runs of six with 50), not a missing fsync (a build that skips the
//! segment fdatasync passes; the power-loss simulation of the storage
//! crates is for that).
//!
//! `STELE_KILL_ITERATIONS` sets the number of kills (default 100),
//! `STELE_KILL_SEED` the seed of the kill schedule and batch sizes (default:
//! from the clock; printed either way). `scripts/serve-kill.sh` runs a long
//! one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// Kills in a default run (about 25 s here); see the module docs for why
/// not fewer.
const DEFAULT_ITERATIONS: u64 = 100;
/// Clients whose events carry a client `id` and which retry until
/// acknowledged.
const KEYED_CLIENTS: u64 = 3;
/// Clients whose events carry no `id` and which never retry.
const PLAIN_CLIENTS: u64 = 2;
/// Only a guard against a hang: nothing here is expected to take this long.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
    )
}

// ------------------------------------------------------------------ clients

/// Where the clients send their requests: the address of the running
/// server (`None` while it is down), and whether to stop.
struct Endpoint {
    addr: Option<SocketAddr>,
    /// After the last restart: no new requests; keyed clients finish the
    /// one they retry.
    finishing: bool,
}

struct Shared {
    endpoint: Mutex<Endpoint>,
    changed: Condvar,
    /// Requests answered with 200, over the whole run.
    acks: AtomicU64,
    /// Requests sent whose answer has not been read yet.
    in_flight: AtomicUsize,
}

impl Shared {
    fn set(&self, addr: Option<SocketAddr>, finishing: bool) {
        let mut endpoint = self.endpoint.lock().unwrap();
        endpoint.addr = addr;
        endpoint.finishing = finishing;
        self.changed.notify_all();
    }

    fn finishing(&self) -> bool {
        self.endpoint.lock().unwrap().finishing
    }

    /// The running server's address, waiting while there is none.
    fn addr(&self) -> SocketAddr {
        let endpoint = self.endpoint.lock().unwrap();
        let (endpoint, timeout) = self
            .changed
            .wait_timeout_while(endpoint, HANG_GUARD, |e| e.addr.is_none())
            .unwrap();
        assert!(!timeout.timed_out(), "no server came back");
        endpoint.addr.unwrap()
    }
}

/// One event as sent: event `event` of request `request` of client
/// `client`, unique over the run. Its text is rebuilt from these when
/// needed, so a long run does not hold every payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Sent {
    client: u64,
    request: u64,
    event: u64,
    keyed: bool,
}

impl Sent {
    /// `c<client>/r<request>/e<event>`: the event's `resource`.
    fn tag(&self) -> String {
        format!("c{}/r{}/e{}", self.client, self.request, self.event)
    }

    /// The event's JSON text exactly as sent (the stored `payload`).
    fn payload(&self) -> String {
        let tag = self.tag();
        let id = if self.keyed {
            format!(r#""id":"kill-{tag}","#)
        } else {
            String::new()
        };
        format!(
            concat!(
                r#"{{{}"actor":"loader-{}","action":"object.write","resource":"{}","#,
                r#""outcome":"success","time":"2026-01-02T03:04:05Z","#,
                r#""attributes":{{"client":{},"request":{},"event":{},"pad":"{}"}}}}"#
            ),
            id,
            self.client,
            tag,
            self.client,
            self.request,
            self.event,
            "x".repeat(96)
        )
    }

    /// The event a stored `resource` names (`keyed` as its payload says).
    fn from_stored(resource: &str, payload: &str) -> Option<Sent> {
        let mut parts = resource.split('/');
        let mut number = |prefix: char| parts.next()?.strip_prefix(prefix)?.parse().ok();
        let sent = Sent {
            client: number('c')?,
            request: number('r')?,
            event: number('e')?,
            keyed: payload.starts_with(r#"{"id":"#),
        };
        parts.next().is_none().then_some(sent)
    }
}

/// A receipt from a 200 answer.
#[derive(Debug, Clone)]
struct HttpReceipt {
    index: u64,
    id: String,
    stream: String,
    commitment: String,
    salt: String,
    duplicate: bool,
}

/// An acknowledged event.
#[derive(Debug)]
struct Acked {
    sent: Sent,
    receipt: HttpReceipt,
}

/// What one client did.
#[derive(Debug, Default)]
struct ClientLog {
    acked: Vec<Acked>,
    /// Events of plain requests left without an answer (not retried).
    unanswered: Vec<Sent>,
    requests: u64,
    /// Keyed requests sent again after getting no answer.
    retries: u64,
    /// 503 `overloaded` answers: nothing appended.
    busy: u64,
    /// Anything the product does not promise (an unexpected status, a
    /// malformed answer): fails the test.
    errors: Vec<String>,
}

/// The answer to one request.
enum Answer {
    Receipts(Vec<HttpReceipt>),
    /// 503 `overloaded`: the request was refused whole; retry later.
    Busy,
    /// No complete answer: the connection was refused, reset or cut (the
    /// server died), so whether the events became durable is unknown.
    Cut,
    /// Any other answer.
    Unexpected(u16, String),
}

/// Parses a complete HTTP/1.1 response; `None` when it is cut short.
fn parse_response(bytes: &[u8], eof: bool) -> Option<(u16, String)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let body = &bytes[head_end + 4..];
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(n) if body.len() >= n => &body[..n],
        Some(_) => return None,
        None if eof => body,
        None => return None,
    };
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

fn parse_receipts(body: &str) -> Option<Vec<HttpReceipt>> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["receipts"]
        .as_array()?
        .iter()
        .map(|r| {
            Some(HttpReceipt {
                index: r["index"].as_u64()?,
                id: r["id"].as_str()?.to_string(),
                stream: r["stream"].as_str()?.to_string(),
                commitment: r["commitment"].as_str()?.to_string(),
                salt: r["salt"].as_str()?.to_string(),
                duplicate: match &r["duplicate"] {
                    serde_json::Value::Null => false,
                    serde_json::Value::Bool(true) => true,
                    _ => return None,
                },
            })
        })
        .collect()
}

/// POSTs `body` (a JSON array of events) over a new connection.
fn post(addr: SocketAddr, token: &str, body: &str) -> Answer {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(_) => return Answer::Cut,
    };
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream.set_write_timeout(Some(HANG_GUARD)).unwrap();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Answer::Cut;
    }
    let mut bytes = Vec::new();
    // A reset after a complete answer still leaves a complete answer.
    let eof = stream.read_to_end(&mut bytes).is_ok();
    match parse_response(&bytes, eof) {
        None => Answer::Cut,
        Some((200, body)) => match parse_receipts(&body) {
            Some(receipts) => Answer::Receipts(receipts),
            None => Answer::Unexpected(200, body),
        },
        Some((503, body)) if body.contains(r#""code":"overloaded""#) => Answer::Busy,
        Some((status, body)) => Answer::Unexpected(status, body),
    }
}

/// One client: batches of 1..=`max_batch` events, one request at a time,
/// until the run is finishing.
fn client(shared: Arc<Shared>, token: String, client: u64, keyed: bool, seed: u64) -> ClientLog {
    let mut rng = Rng(seed ^ (client + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut log = ClientLog::default();
    let max_batch = if keyed { 24 } else { 48 };
    let mut next_request = 0u64;
    let mut retry: Option<(Vec<Sent>, String)> = None;
    let mut finishing_since: Option<Instant> = None;
    loop {
        let (events, body) = match retry.take() {
            Some(request) => request,
            None => {
                if shared.finishing() {
                    break;
                }
                let n = rng.range(1, max_batch + 1);
                let events: Vec<Sent> = (0..n)
                    .map(|event| Sent {
                        client,
                        request: next_request,
                        event,
                        keyed,
                    })
                    .collect();
                next_request += 1;
                let body = format!(
                    "[{}]",
                    events
                        .iter()
                        .map(Sent::payload)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                (events, body)
            }
        };
        if shared.finishing() {
            let since = *finishing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > HANG_GUARD {
                log.errors.push(format!(
                    "client {client}: a request was never acknowledged by the last server"
                ));
                break;
            }
        }
        let addr = shared.addr();
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = post(addr, &token, &body);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        log.requests += 1;
        match answer {
            Answer::Receipts(receipts) => {
                shared.acks.fetch_add(1, Ordering::SeqCst);
                if receipts.len() != events.len() {
                    log.errors.push(format!(
                        "client {client}: {} receipts for {} events",
                        receipts.len(),
                        events.len()
                    ));
                }
                log.acked.extend(
                    events
                        .into_iter()
                        .zip(receipts)
                        .map(|(sent, receipt)| Acked { sent, receipt }),
                );
            }
            Answer::Busy => {
                log.busy += 1;
                std::thread::sleep(Duration::from_millis(5));
                retry = Some((events, body));
            }
            Answer::Cut if keyed => {
                log.retries += 1;
                // The server is going away: wait until it is (the address
                // is cleared before the kill) or a moment has passed.
                std::thread::sleep(Duration::from_millis(2));
                retry = Some((events, body));
            }
            Answer::Cut => log.unanswered.extend(events),
            Answer::Unexpected(status, body) => {
                log.errors.push(format!(
                    "client {client}: unexpected answer {status}: {body}"
                ));
                if !keyed {
                    log.unanswered.extend(events);
                } else {
                    break;
                }
            }
        }
    }
    log
}

// ------------------------------------------------------------------ server

/// A running `stele serve`; SIGKILLed if a test fails before it is
/// stopped.
struct Server {
    child: Option<Child>,
    stderr: Option<JoinHandle<Vec<String>>>,
    lines: mpsc::Receiver<String>,
    spawned: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_server(dir: &Path) -> Server {
    let spawned = Instant::now();
    let mut child = stele()
        .args(["serve", "--data", p(dir), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    // Reads standard error to its end (so the server never blocks on a
    // full pipe), passing each line on and keeping them all.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    Server {
        child: Some(child),
        stderr: Some(reader),
        lines,
        spawned,
    }
}

impl Server {
    /// Waits for "listening on"; returns the address and the time since the
    /// spawn.
    fn listening(&mut self) -> (SocketAddr, Duration) {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let elapsed = self.spawned.elapsed();
                        let addr = rest
                            .trim()
                            .parse()
                            .unwrap_or_else(|e| panic!("{line}: {e}"));
                        return (addr, elapsed);
                    }
                    seen.push(line);
                }
                Err(e) => {
                    let status = self.child.as_mut().unwrap().try_wait().unwrap();
                    panic!(
                        "stele serve never said \"listening on\" ({e}, status {status:?}); \
                         its standard error:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// SIGKILL; asserts that the process was still running (an exit of its
    /// own is a failure) and that it never panicked.
    fn kill(mut self, what: &str) {
        let mut child = self.child.take().unwrap();
        let early = child.try_wait().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        check_stderr(&stderr, what);
        assert!(
            early.is_none() && status.signal() == Some(9),
            "{what}: stele serve ended by itself ({status}) before the kill:\n{}",
            stderr.join("\n")
        );
    }

    /// SIGTERM; asserts a clean stop.
    fn terminate(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let sent = stele_kill("-TERM", &pid);
        assert!(sent, "kill -TERM {pid}");
        let status = child.wait().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        check_stderr(&stderr, "the final stop");
        assert_eq!(
            status.code(),
            Some(0),
            "stele serve did not stop cleanly on SIGTERM:\n{}",
            stderr.join("\n")
        );
        assert!(
            stderr
                .iter()
                .any(|l| l.contains("every acknowledged event is durable")),
            "{}",
            stderr.join("\n")
        );
    }
}

fn stele_kill(signal: &str, pid: &str) -> bool {
    std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap()
        .success()
}

fn check_stderr(lines: &[String], what: &str) {
    for line in lines {
        assert!(
            !line.contains("panicked") && !line.contains("RUST_BACKTRACE"),
            "{what}: stele serve panicked:\n{}",
            lines.join("\n")
        );
    }
}

/// Sleeps `d`, then until some request is in flight (so the kill lands
/// while one is).
fn sleep_then_wait_in_flight(shared: &Shared, d: Duration) -> usize {
    if !d.is_zero() {
        std::thread::sleep(d);
    }
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let n = shared.in_flight.load(Ordering::SeqCst);
        if n > 0 {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no request in flight for a minute"
        );
        std::thread::yield_now();
    }
}

// ------------------------------------------------------------------ the test

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn serve_killed_under_load_loses_and_duplicates_nothing() {
    let iterations = env_u64("STELE_KILL_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env_u64("STELE_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("serve-kill: seed {seed} (STELE_KILL_SEED={seed} repeats the schedule)");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    init_log(&dir);
    // A grant is a log event: made before the server holds the log.
    let out = run(&[
        "token",
        "create",
        "--data",
        p(&dir),
        "--principal",
        "loader",
        "--role",
        "writer",
    ]);
    expect(&out, 0, &[]);
    let token = out.stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("stele_"), "{out}");

    let shared = Arc::new(Shared {
        endpoint: Mutex::new(Endpoint {
            addr: None,
            finishing: false,
        }),
        changed: Condvar::new(),
        acks: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let clients: Vec<JoinHandle<ClientLog>> = (0..KEYED_CLIENTS + PLAIN_CLIENTS)
        .map(|c| {
            let (shared, token) = (shared.clone(), token.clone());
            std::thread::spawn(move || client(shared, token, c, c < KEYED_CLIENTS, seed))
        })
        .collect();

    let started = Instant::now();
    let mut recovery: Vec<Duration> = Vec::new();
    let mut startup_kills = 0u64;
    let mut in_flight_at_kill: Vec<usize> = Vec::new();
    for iter in 0..iterations {
        // Now and then the server is killed while it starts: during
        // recovery, or before it listens.
        if rng.range(0, 8) == 0 {
            let server = spawn_server(&dir);
            std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
            server.kill(&format!("iteration {iter} (kill during start-up)"));
            startup_kills += 1;
        }
        let mut server = spawn_server(&dir);
        let (addr, took) = server.listening();
        recovery.push(took);
        let acks_before = shared.acks.load(Ordering::SeqCst);
        shared.set(Some(addr), false);
        // The kill, always while a request is in flight: a few ms after
        // the server listens; the moment the k-th request of this run is
        // acknowledged (right behind a receipt, where an acknowledgement
        // sent ahead of its batch's writes would be caught); or a random
        // time after that.
        let n = match rng.range(0, 5) {
            0 => sleep_then_wait_in_flight(&shared, Duration::from_millis(rng.range(0, 20))),
            kind => {
                let wanted = acks_before + rng.range(1, 9);
                let deadline = Instant::now() + HANG_GUARD;
                while shared.acks.load(Ordering::SeqCst) < wanted {
                    assert!(
                        Instant::now() < deadline,
                        "iteration {iter}: no request acknowledged for a minute"
                    );
                    std::thread::yield_now();
                }
                let delay = if kind <= 2 { 0 } else { rng.range(0, 150) };
                sleep_then_wait_in_flight(&shared, Duration::from_millis(delay))
            }
        };
        in_flight_at_kill.push(n);
        shared.set(None, false);
        server.kill(&format!("iteration {iter}"));
    }

    // The last restart: keyed clients finish their retries against it, then
    // it stops cleanly.
    let mut server = spawn_server(&dir);
    let (addr, took) = server.listening();
    recovery.push(took);
    shared.set(Some(addr), true);
    let logs: Vec<ClientLog> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    server.terminate();
    let load_time = started.elapsed();

    // ---------------------------------------------------------------- check
    let errors: Vec<&String> = logs.iter().flat_map(|l| &l.errors).collect();
    assert!(errors.is_empty(), "unexpected answers: {errors:#?}");

    // Acknowledged events by the index their receipt named: two at one
    // index would be a loss already.
    let acked: Vec<&Acked> = logs.iter().flat_map(|l| &l.acked).collect();
    let mut lost: Vec<String> = Vec::new();
    let mut at_index: HashMap<u64, usize> = HashMap::new();
    for (k, a) in acked.iter().enumerate() {
        if a.receipt.duplicate {
            assert!(
                a.sent.keyed,
                "{}: a duplicate without a client id",
                a.sent.tag()
            );
        }
        if let Some(other) = at_index.insert(a.receipt.index, k) {
            lost.push(format!(
                "{} and {}: both acknowledged at index {}",
                acked[other].sent.tag(),
                a.sent.tag(),
                a.receipt.index
            ));
        }
    }
    // Per acknowledged event: seen as promised, or seen otherwise.
    let mut found = vec![false; acked.len()];
    let mut differs = vec![false; acked.len()];

    // Read back through `stele export`, at most 10,000 entries a run (each
    // run is itself recorded, in `_system`), every entry of the stream:
    // each acknowledged event at its receipt's index exactly as sent and
    // promised, and how many times each event is stored.
    let size = checkpoint_size(&dir);
    let mut stored_count: HashMap<Sent, u32> = HashMap::new();
    let mut entries = 0u64;
    let mut unknown: Vec<String> = Vec::new();
    for from in (0..size).step_by(10_000) {
        let (from, to) = (from.to_string(), (from + 10_000).min(size).to_string());
        let export = run(&[
            "export",
            "--data",
            p(&dir),
            "--stream",
            "default",
            "--from",
            &from,
            "--to",
            &to,
        ]);
        expect(&export, 0, &[]);
        for line in export.stdout.lines() {
            entries += 1;
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let index = v["index"].as_u64().unwrap();
            let payload = v["event"]["payload"].as_str().unwrap();
            let Some(sent) = v["event"]["event"]["resource"]
                .as_str()
                .and_then(|r| Sent::from_stored(r, payload))
            else {
                unknown.push(line.to_string());
                continue;
            };
            *stored_count.entry(sent).or_default() += 1;
            let Some(&k) = at_index.get(&index) else {
                continue;
            };
            let (a, r) = (&acked[k].sent, &acked[k].receipt);
            if payload == a.payload()
                && v["commitment"] == r.commitment.as_str()
                && v["salt"] == r.salt.as_str()
                && v["event"]["id"] == r.id.as_str()
                && v["event"]["stream"] == r.stream.as_str()
                && r.stream == "default"
            {
                found[k] = true;
            } else {
                differs[k] = true;
                lost.push(format!("{} (receipt {r:?}): the log holds {line}", a.tag()));
            }
        }
    }
    for (k, a) in acked.iter().enumerate() {
        if !found[k] && !differs[k] {
            lost.push(format!(
                "{} (receipt index {}): no entry there",
                a.sent.tag(),
                a.receipt.index
            ));
        }
    }
    let mut duplicated: Vec<String> = stored_count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(sent, n)| format!("{} ×{n}", sent.tag()))
        .collect();
    duplicated.sort();
    let sent_ever: HashSet<Sent> = logs
        .iter()
        .flat_map(|l| {
            l.acked
                .iter()
                .map(|a| a.sent)
                .chain(l.unanswered.iter().copied())
        })
        .collect();
    unknown.extend(
        stored_count
            .keys()
            .filter(|s| !sent_ever.contains(s))
            .map(|s| format!("{} (keyed: {})", s.tag(), s.keyed)),
    );
    let unanswered: Vec<&Sent> = logs.iter().flat_map(|l| &l.unanswered).collect();
    assert!(
        unanswered.iter().all(|s| !s.keyed),
        "keyed clients retry until acknowledged"
    );
    let unanswered_stored = unanswered
        .iter()
        .filter(|s| stored_count.contains_key(s))
        .count();
    let acked_keyed = acked.iter().filter(|a| a.sent.keyed).count();
    let answered_as_duplicate = acked.iter().filter(|a| a.receipt.duplicate).count();
    let requests: u64 = logs.iter().map(|l| l.requests).sum();
    let retries: u64 = logs.iter().map(|l| l.retries).sum();
    let busy: u64 = logs.iter().map(|l| l.busy).sum();

    let verified = verify(&dir);
    let mut sorted = recovery.clone();
    sorted.sort();
    in_flight_at_kill.sort();
    eprintln!(
        "serve-kill summary: seed {seed}, {iterations} iterations (+{startup_kills} kills during \
         start-up), requests in flight at a kill: median {}, max {}; {} events acknowledged \
         ({acked_keyed} with a client id, {} without) in {requests} requests; {retries} keyed \
         requests sent again after a kill, {answered_as_duplicate} of their events answered \
         from the log as already durable; {} events without an id unanswered ({unanswered_stored} \
         of them durable anyway); {busy} busy answers; lost {}, duplicated {}, unknown {}; \
         recovery (spawn to listening) min {:.0} ms, median {:.0} ms, max {:.0} ms; {entries} \
         entries in the stream; verify exit {}; load phase {:.1} s",
        in_flight_at_kill[in_flight_at_kill.len() / 2],
        in_flight_at_kill[in_flight_at_kill.len() - 1],
        acked.len(),
        acked.len() - acked_keyed,
        unanswered.len(),
        lost.len(),
        duplicated.len(),
        unknown.len(),
        millis(sorted[0]),
        millis(sorted[sorted.len() / 2]),
        millis(sorted[sorted.len() - 1]),
        verified.code,
        load_time.as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost or changed, e.g.:\n{}",
        lost.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        duplicated.is_empty(),
        "{} events stored more than once, e.g.: {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    assert!(unknown.is_empty(), "entries no client sent: {unknown:?}");
    // Every keyed event was acknowledged (its client retried until it
    // was), so with nothing lost or twice, each is in the log exactly once.
    assert!(
        acked_keyed > 0 && acked.len() > acked_keyed,
        "nothing was acknowledged"
    );
    assert_eq!(verified.code, 0, "verify failed:\n{verified}");
    assert!(verified.stdout.starts_with("OK: "), "{verified}");
}
