//! `stele bench http`: a load generator for a running `stele serve`.
//!
//! Each of `--concurrency` clients keeps one persistent connection (HTTP/1.1
//! with keep-alive, or HTTP/2 with `--http2`) to the given URL only, and
//! POSTs `--batch` events per request to `/v1/events`, waiting for the 200
//! and its receipts (which the server sends only once the events are
//! durable) before sending the next request. Every event carries unique
//! actor and resource values. Latency is recorded per request; non-200
//! answers are counted by status and transport failures by kind.
//!
//! A separate probe appends one event about every 100 ms, notes the index
//! from its receipt and the time of the acknowledgement, then polls
//! `GET /checkpoint` every 10 ms until the published tree covers that
//! index: the ack→checkpoint latency. It probes at least once, however
//! short the run.
//!
//! The run is bounded: `--duration` seconds (after `--warmup`), or
//! `--requests` requests within at most `--max-seconds`; every request has
//! a timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::json;

use crate::workload::{Generator, Workload};
use crate::{CliResult, Failure};

#[derive(Debug, clap::Args)]
pub struct BenchHttpArgs {
    /// Base URL of the server, e.g. https://127.0.0.1:7800 (plain http is
    /// for loopback servers without TLS).
    #[arg(long)]
    url: String,
    /// Bearer token with the writer role (or set STELE_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// PEM CA certificate(s) to trust for the server's certificate
    /// (required for https).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Concurrent clients, each with one persistent connection.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events per request (1 sends a single JSON object, more a JSON array).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds to measure for (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests (counted after the warm-up) instead of
    /// after --duration; still bounded by --max-seconds.
    #[arg(long)]
    requests: Option<u64>,
    /// Upper bound on the measured phase with --requests, in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
    /// Seconds of load before measuring starts (connections are set up,
    /// caches warm); not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Which events: `app` (application events of about 360 bytes, to
    /// `POST /v1/events`) or `k8s` (Kubernetes audit events in
    /// `EventList`s, to `POST /v1/ingest/kubernetes`).
    #[arg(long, value_enum, default_value_t = Workload::App)]
    workload: Workload,
    /// Use HTTP/2 (ALPN h2, or prior knowledge over plain http).
    #[arg(long)]
    http2: bool,
    /// Milliseconds a request may take before it counts as a timeout.
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Worker threads of the load generator (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the checkpoint latency probe.
    #[arg(long)]
    no_checkpoint_probe: bool,
    /// Print one machine-readable JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

/// Where to connect and how.
pub(crate) struct Target {
    host: String,
    port: u16,
    authority: String,
    scheme: &'static str,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    http2: bool,
    auth: String,
    timeout: Duration,
}

fn target(args: &BenchHttpArgs) -> CliResult<Target> {
    let url = base_url(&args.url)?;
    let token = match &args.token {
        Some(t) => t.clone(),
        None => std::env::var("STELE_TOKEN")
            .map_err(|_| Failure::usage("give a writer token with --token or STELE_TOKEN"))?,
    };
    let mut target = endpoint(
        url,
        args.ca.as_deref(),
        args.http2,
        Duration::from_millis(args.request_timeout_ms.max(1)),
    )?;
    target.auth = format!("Bearer {}", token.trim());
    Ok(target)
}

/// A base URL taken apart: scheme, host (without IPv6 brackets), port and
/// authority as written.
pub(crate) struct BaseUrl {
    scheme: &'static str,
    host: String,
    port: u16,
    authority: String,
}

/// Parses `--url`: `https://` or `http://`, a host, an optional port and no
/// path.
pub(crate) fn base_url(url: &str) -> CliResult<BaseUrl> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Failure::usage(format!("--url {url:?}: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => {
            return Err(Failure::usage("--url must start with https:// or http://"));
        }
    };
    if !matches!(uri.path(), "" | "/") {
        return Err(Failure::usage("--url must be a base URL without a path"));
    }
    let host = uri
        .host()
        .ok_or_else(|| Failure::usage("--url has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // `Uri::port` is None for a port that does not parse as well as for
    // none at all: look at the text after the host (and after `]` for an
    // IPv6 address) so that ":78000" is refused, not taken as the default.
    let authority_text = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let after_host = authority_text
        .rsplit_once(']')
        .map_or(authority_text, |(_, rest)| rest);
    let port = match after_host.rsplit_once(':') {
        None if scheme == "https" => 443,
        None => 80,
        Some((_, text)) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Failure::usage(format!("--url has an invalid port {text:?}")))?,
    };
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    Ok(BaseUrl {
        scheme,
        host,
        port,
        authority,
    })
}

/// Where and how to connect to `url`: TLS trusting only the PEM CA
/// certificates of `ca` for https. Requests carry no credentials until
/// `auth` is set.
pub(crate) fn endpoint(
    url: BaseUrl,
    ca: Option<&std::path::Path>,
    http2: bool,
    timeout: Duration,
) -> CliResult<Target> {
    let BaseUrl {
        scheme,
        host,
        port,
        authority,
    } = url;
    let tls = if scheme == "https" {
        let ca = ca.ok_or_else(|| {
            Failure::usage("https needs --ca FILE: the PEM CA that signed the server certificate")
        })?;
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| Failure::usage(format!("--ca {}: {e}", ca.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::usage(format!("--ca {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(Failure::usage(format!(
                "--ca {}: no PEM certificate found",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Failure::usage(format!("--ca {}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::usage(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| Failure::usage(format!("--url host {host:?}: {e}")))?;
        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    Ok(Target {
        host,
        port,
        authority,
        scheme,
        tls,
        http2,
        auth: String::new(),
        timeout,
    })
}

/// One client connection.
pub(crate) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Why a request produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failed {
    Connect,
    Transport,
    Timeout,
}

impl Failed {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Failed::Connect => "connect",
            Failed::Transport => "transport",
            Failed::Timeout => "timeout",
        }
    }
}

async fn handshake<I>(io: I, http2: bool) -> Result<Sender, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if http2 {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Sender::H1(sender))
    }
}

pub(crate) async fn connect(target: &Target) -> Result<Sender, Failed> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| Failed::Connect)?;
        let _ = stream.set_nodelay(true);
        match &target.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|_| Failed::Connect)?;
                handshake(tls, target.http2)
                    .await
                    .map_err(|_| Failed::Connect)
            }
            None => handshake(stream, target.http2)
                .await
                .map_err(|_| Failed::Connect),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| Failed::Connect)?
}

impl Sender {
    /// Sends one request and reads the whole answer.
    pub(crate) async fn send(
        &mut self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), Failed> {
        let exchange = async {
            let response = match self {
                Sender::H1(s) => {
                    s.ready().await.map_err(|_| Failed::Transport)?;
                    s.send_request(request).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|_| Failed::Transport)?;
                    s.send_request(request).await
                }
            }
            .map_err(|_| Failed::Transport)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| Failed::Transport)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(target.timeout, exchange)
            .await
            .map_err(|_| Failed::Timeout)?
    }
}

pub(crate) fn request(
    target: &Target,
    method: hyper::Method,
    path: &str,
    body: Option<Bytes>,
) -> Request<Full<Bytes>> {
    let builder = Request::builder().method(method);
    let builder = if target.http2 {
        builder.uri(format!("{}://{}{path}", target.scheme, target.authority))
    } else {
        builder
            .uri(path)
            .header(header::HOST, target.authority.as_str())
    };
    let builder = match &body {
        Some(_) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, target.auth.as_str()),
        None => builder,
    };
    builder
        .body(Full::new(body.unwrap_or_default()))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// Where a workload's requests go.
fn path(workload: Workload) -> &'static str {
    match workload {
        Workload::App => "/v1/events",
        Workload::K8s => "/v1/ingest/kubernetes",
    }
}

/// A request body of `batch` events, the `n`th of client `client` first:
/// one event or an array of them, or for Kubernetes an `EventList`.
fn body(generator: &Generator, client: usize, first: u64, batch: usize) -> Bytes {
    // Each client draws its own numbers: 2^40 events apart.
    let base = (client as u64).wrapping_shl(40).wrapping_add(first);
    let mut out = Vec::with_capacity(batch * 1_200 + 80);
    if generator.workload() == Workload::App && batch == 1 {
        generator.push(base, &mut out);
    } else {
        generator.push_list(base..base.wrapping_add(batch as u64), &mut out);
    }
    Bytes::from(out)
}

#[derive(Deserialize)]
struct Receipts {
    receipts: Vec<Receipt>,
}

#[derive(Deserialize)]
struct Receipt {
    index: u64,
}

/// What one client saw during the measured window.
#[derive(Default)]
struct ClientStats {
    /// Request latencies in microseconds.
    latencies: Vec<u32>,
    ok_requests: u64,
    ok_events: u64,
    statuses: BTreeMap<u16, u64>,
    failures: BTreeMap<Failed, u64>,
    receipt_mismatch: u64,
}

struct Shared {
    target: Target,
    batch: usize,
    /// Makes the events, seeded with the run's id.
    generator: Generator,
    measure_from: Instant,
    deadline: Instant,
    stop: AtomicBool,
    /// Requests left to start in the measured window (with --requests).
    budget: Option<AtomicU64>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Relaxed) || Instant::now() >= self.deadline
    }

    /// Whether another request may start; takes from the budget once the
    /// measured window has begun.
    fn may_start(&self, now: Instant) -> bool {
        if self.stopped() {
            return false;
        }
        match &self.budget {
            Some(budget) if now >= self.measure_from => {
                let ok = budget
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                if !ok {
                    self.stop.store(true, Relaxed);
                }
                ok
            }
            _ => true,
        }
    }
}

async fn client(shared: Arc<Shared>, id: usize) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut sender: Option<Sender> = None;
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if !shared.may_start(now) {
            break;
        }
        let measured = now >= shared.measure_from;
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(&shared.target).await {
                Ok(s) => sender.insert(s),
                Err(f) => {
                    if measured {
                        *stats.failures.entry(f).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let payload = body(&shared.generator, id, n, shared.batch);
        n += shared.batch as u64;
        let req = request(
            &shared.target,
            hyper::Method::POST,
            path(shared.generator.workload()),
            Some(payload),
        );
        let started = Instant::now();
        let result = s.send(&shared.target, req).await;
        let elapsed = started.elapsed();
        // Only requests that started and finished inside the window count.
        let counted = measured && Instant::now() <= shared.deadline;
        match result {
            Ok((200, bytes)) => {
                let receipts = serde_json::from_slice::<Receipts>(&bytes)
                    .map(|r| r.receipts.len())
                    .unwrap_or(0);
                if counted {
                    if receipts == shared.batch {
                        stats.ok_requests += 1;
                        stats.ok_events += receipts as u64;
                        stats
                            .latencies
                            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        stats.receipt_mismatch += 1;
                    }
                }
            }
            Ok((status, _)) => {
                if counted {
                    *stats.statuses.entry(status).or_default() += 1;
                }
                if status == 503 || status == 429 {
                    // Back off a little, as a real client would.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(f) => {
                if counted {
                    *stats.failures.entry(f).or_default() += 1;
                }
                sender = None;
            }
        }
    }
    stats
}

/// What the checkpoint probe saw.
#[derive(Default)]
struct ProbeStats {
    /// ack → first checkpoint covering the event, microseconds.
    latencies: Vec<u32>,
    /// Probes whose event was never covered within the poll limit.
    not_covered: u64,
    /// Probes whose append or polls failed.
    errors: u64,
}

fn checkpoint_size(note: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(note).ok()?;
    text.lines().nth(1)?.trim().parse().ok()
}

async fn probe(shared: Arc<Shared>) -> ProbeStats {
    let mut stats = ProbeStats::default();
    let mut sender: Option<Sender> = None;
    let mut n = 0u64;
    let period = Duration::from_millis(100);
    let poll = Duration::from_millis(10);
    let poll_limit = Duration::from_secs(10);
    let mut next = Instant::now().max(shared.measure_from);
    tokio::time::sleep_until(next.into()).await;
    // At least one probe, however short the run.
    let mut first = true;
    while first || !shared.stopped() {
        first = false;
        next += period;
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(&shared.target).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    stats.errors += 1;
                    tokio::time::sleep_until(next.into()).await;
                    continue;
                }
            },
        };
        // Client id usize::MAX - 1 keeps probe events apart from the load.
        let payload = body(&shared.generator, usize::MAX - 1, n, 1);
        n += 1;
        let req = request(
            &shared.target,
            hyper::Method::POST,
            path(shared.generator.workload()),
            Some(payload),
        );
        let index = match s.send(&shared.target, req).await {
            Ok((200, bytes)) => serde_json::from_slice::<Receipts>(&bytes)
                .ok()
                .and_then(|r| r.receipts.first().map(|r| r.index)),
            Ok(_) => None,
            Err(_) => {
                sender = None;
                None
            }
        };
        let acked = Instant::now();
        let Some(index) = index else {
            stats.errors += 1;
            tokio::time::sleep_until(next.into()).await;
            continue;
        };
        let mut covered = None;
        while acked.elapsed() < poll_limit {
            let Some(s) = sender.as_mut() else { break };
            let req = request(&shared.target, hyper::Method::GET, "/checkpoint", None);
            match s.send(&shared.target, req).await {
                Ok((200, bytes)) => {
                    if checkpoint_size(&bytes).is_some_and(|size| size > index) {
                        covered = Some(acked.elapsed());
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    sender = None;
                    break;
                }
            }
            tokio::time::sleep(poll).await;
        }
        match covered {
            Some(d) => stats
                .latencies
                .push(d.as_micros().min(u32::MAX as u128) as u32),
            None if sender.is_none() => stats.errors += 1,
            None => stats.not_covered += 1,
        }
        // The load may have stopped while polling; the result still counts.
        tokio::time::sleep_until(next.max(Instant::now()).into()).await;
    }
    stats
}

fn percentile_us(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1e3
}

/// Bounds on the flags, so a typo is refused rather than exhausting memory
/// or threads.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_BATCH: usize = 100_000;
const MAX_THREADS: usize = 256;

pub fn run(args: BenchHttpArgs) -> CliResult<u8> {
    if args.concurrency == 0 || args.batch == 0 {
        return Err(Failure::usage("--concurrency and --batch must be positive"));
    }
    if args.concurrency > MAX_CONCURRENCY
        || args.batch > MAX_BATCH
        || args.threads.is_some_and(|t| t > MAX_THREADS)
    {
        return Err(Failure::usage(format!(
            "--concurrency is at most {MAX_CONCURRENCY}, --batch at most {MAX_BATCH}, --threads at most {MAX_THREADS}"
        )));
    }
    let seconds_ok = |s: f64| s > 0.0 && s <= 3600.0;
    if !seconds_ok(args.duration)
        || !seconds_ok(args.max_seconds)
        || !(0.0..=600.0).contains(&args.warmup)
    {
        return Err(Failure::usage(
            "--duration and --max-seconds must be in (0, 3600], --warmup in [0, 600]",
        ));
    }
    let target = target(&args)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_async(args, target))
}

/// Fails fast on a wrong URL, CA or token, before the load starts: the
/// target must answer `GET /checkpoint` with a checkpoint.
async fn check_target(args: &BenchHttpArgs, target: &Target) -> CliResult<()> {
    let mut s = connect(target).await.map_err(|_| {
        Failure::usage(format!(
            "cannot connect to {} (TLS handshake or TCP failed; check --url and --ca)",
            args.url
        ))
    })?;
    let req = request(target, hyper::Method::GET, "/checkpoint", None);
    match s.send(target, req).await {
        Ok((200, bytes)) if checkpoint_size(&bytes).is_some() => {}
        Ok((status, _)) => {
            return Err(Failure::usage(format!(
                "GET {}/checkpoint answered {status}: is this a stele server?",
                args.url
            )));
        }
        Err(f) => {
            return Err(Failure::usage(format!(
                "GET {}/checkpoint failed: {}",
                args.url,
                f.name()
            )));
        }
    }
    Ok(())
}

/// The summary as one JSON object (`--json`).
fn print_json(
    args: &BenchHttpArgs,
    total: &ClientStats,
    elapsed: f64,
    probe: Option<&ProbeStats>,
    probe_lat: &[u32],
    errors: u64,
) -> CliResult<()> {
    let lat = &total.latencies;
    let events_per_s = total.ok_events as f64 / elapsed;
    let requests_per_s = total.ok_requests as f64 / elapsed;
    let statuses: serde_json::Map<String, serde_json::Value> = total
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let failures: serde_json::Map<String, serde_json::Value> = total
        .failures
        .iter()
        .map(|(k, v)| (k.name().to_string(), json!(v)))
        .collect();
    let summary = json!({
        "url": args.url,
        "http2": args.http2,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "workload": args.workload.name(),
        "seconds": elapsed,
        "requests": total.ok_requests,
        "events": total.ok_events,
        "events_per_s": events_per_s,
        "requests_per_s": requests_per_s,
        "latency_ms": {
            "p50": percentile_us(lat, 0.50),
            "p90": percentile_us(lat, 0.90),
            "p99": percentile_us(lat, 0.99),
            "max": lat.last().map(|&u| u as f64 / 1e3).unwrap_or(0.0),
        },
        "errors": {
            "total": errors,
            "status": statuses,
            "failures": failures,
            "receipt_mismatch": total.receipt_mismatch,
        },
        "checkpoint": probe.map(|p| json!({
            "probes": p.latencies.len(),
            "p50_ms": percentile_us(probe_lat, 0.50),
            "p99_ms": percentile_us(probe_lat, 0.99),
            "max_ms": probe_lat.last().map(|&u| u as f64 / 1e3).unwrap_or(0.0),
            "not_covered": p.not_covered,
            "errors": p.errors,
        })),
    });
    outln!("{summary}")?;
    Ok(())
}

async fn run_async(args: BenchHttpArgs, target: Target) -> CliResult<u8> {
    check_target(&args, &target).await?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let window = match args.requests {
        Some(_) => args.max_seconds,
        None => args.duration,
    };
    let shared = Arc::new(Shared {
        target,
        batch: args.batch,
        generator: Generator::new(args.workload, run),
        measure_from,
        deadline: measure_from + Duration::from_secs_f64(window),
        stop: AtomicBool::new(false),
        budget: args.requests.map(AtomicU64::new),
    });
    let probe_task = (!args.no_checkpoint_probe).then(|| tokio::spawn(probe(shared.clone())));
    let clients: Vec<_> = (0..args.concurrency)
        .map(|id| tokio::spawn(client(shared.clone(), id)))
        .collect();
    let mut total = ClientStats::default();
    let mut ended = measure_from;
    for task in clients {
        let stats = task
            .await
            .map_err(|e| Failure::usage(format!("a client failed: {e}")))?;
        ended = ended.max(Instant::now());
        total.latencies.extend(stats.latencies);
        total.ok_requests += stats.ok_requests;
        total.ok_events += stats.ok_events;
        total.receipt_mismatch += stats.receipt_mismatch;
        for (k, v) in stats.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in stats.failures {
            *total.failures.entry(k).or_default() += v;
        }
    }
    let elapsed = ended
        .min(shared.deadline)
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    shared.stop.store(true, Relaxed);
    let probe = match probe_task {
        Some(task) => Some(
            task.await
                .map_err(|e| Failure::usage(format!("the probe failed: {e}")))?,
        ),
        None => None,
    };
    total.latencies.sort_unstable();
    let lat = &total.latencies;
    let errors: u64 = total.statuses.values().sum::<u64>()
        + total.failures.values().sum::<u64>()
        + total.receipt_mismatch;
    let events_per_s = total.ok_events as f64 / elapsed;
    let requests_per_s = total.ok_requests as f64 / elapsed;
    let mut probe_lat = probe
        .as_ref()
        .map(|p| p.latencies.clone())
        .unwrap_or_default();
    probe_lat.sort_unstable();

    if args.json {
        print_json(&args, &total, elapsed, probe.as_ref(), &probe_lat, errors)?;
    } else {
        outln!(
            "stele bench http: {} {}, {} clients x {} {} events/request, {:.1}s measured",
            args.url,
            if args.http2 { "HTTP/2" } else { "HTTP/1.1" },
            args.concurrency,
            args.batch,
            args.workload.name(),
            elapsed
        )?;
        outln!(
            "throughput {events_per_s:.0} events/s acknowledged (durable), {requests_per_s:.0} requests/s, {} events in {} requests",
            total.ok_events,
            total.ok_requests
        )?;
        outln!(
            "latency    per request: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            percentile_us(lat, 0.50),
            percentile_us(lat, 0.90),
            percentile_us(lat, 0.99),
            lat.last().map(|&u| u as f64 / 1e3).unwrap_or(0.0)
        )?;
        let mut parts: Vec<String> = total
            .statuses
            .iter()
            .map(|(k, v)| format!("HTTP {k}: {v}"))
            .collect();
        parts.extend(
            total
                .failures
                .iter()
                .map(|(k, v)| format!("{}: {v}", k.name())),
        );
        if total.receipt_mismatch > 0 {
            parts.push(format!("wrong receipt count: {}", total.receipt_mismatch));
        }
        outln!(
            "errors     {errors}{}",
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        )?;
        if let Some(p) = &probe {
            outln!(
                "checkpoint ack -> covering checkpoint: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} probes ({} not covered within 10 s, {} failed)",
                percentile_us(&probe_lat, 0.50),
                percentile_us(&probe_lat, 0.99),
                probe_lat.last().map(|&u| u as f64 / 1e3).unwrap_or(0.0),
                p.latencies.len(),
                p.not_covered,
                p.errors
            )?;
        }
    }
    Ok(if errors == 0 && total.ok_requests > 0 {
        0
    } else {
        1
    })
}
