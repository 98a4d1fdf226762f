//! Realistic events for the benchmarks: what `stele bench` appends and
//! what size figures are measured on. Random filler compresses nothing
//! like real audit events do (and like nothing real), so none is used.
//!
//! Two workloads, each deterministic in (seed, event number), so that any
//! thread can make any event and two runs append the same bytes:
//! - [`Workload::App`]: application events of about 300 bytes, in Stele's
//!   own event shape: ~500 actors and ~5,000 resources with a few much
//!   busier than the rest (Zipf), ~50 actions, each actor mostly on its own
//!   IP address and browser, outcomes mostly `success`, a request id and a
//!   few attributes.
//! - [`Workload::K8s`]: Kubernetes audit events (`audit.k8s.io/v1`
//!   `Event`), as kube-apiserver's webhook sends them: controllers, nodes
//!   and people; leases, pods, configmaps, secrets, deployments…; about
//!   one in five at the `RequestResponse` level with its request and
//!   response objects, the rest at `Metadata`.

use std::fmt::Write as _;

/// Which events to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Application events (~300 bytes) in Stele's own event shape.
    App,
    /// Kubernetes audit events (`audit.k8s.io/v1`), Metadata and
    /// RequestResponse levels.
    K8s,
}

impl Workload {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::App => "app",
            Workload::K8s => "k8s",
        }
    }
}

/// SplitMix64: small, fast, and enough for picking from tables.
struct Rng(u64);

impl Rng {
    /// Event `n`'s generator: its state is a hash of (seed, n), so the
    /// sequences of neighbouring events share nothing (a plain `seed + n`
    /// would make event n+1's draws those of event n shifted by one, and
    /// the events far more compressible than real ones).
    fn new(seed: u64, n: u64) -> Rng {
        Rng(mix(mix(seed) ^ n))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `digits` random hex digits (at most 16).
    fn hex(&mut self, out: &mut String, digits: usize) {
        let text = format!("{:016x}", self.next());
        out.push_str(&text[..digits.min(16)]);
    }

    fn uuid(&mut self, out: &mut String) {
        for (i, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
            if i > 0 {
                out.push('-');
            }
            self.hex(out, len);
        }
    }
}

/// SplitMix64's finalizer: a bijective hash of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ranks `0..n` drawn with Zipf-like popularity (rank k has weight
/// 1/(k+1)): the first few are much busier than the long tail.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                total += 1.0 / (k as f64 + 1.0);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

const FIRST: [&str; 25] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "nina", "oscar", "peggy", "quentin", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
    "xavier", "yolanda", "zoe", "li",
];
const LAST: [&str; 20] = [
    "smith", "jones", "garcia", "chen", "kumar", "müller", "rossi", "tanaka", "silva", "novak",
    "okafor", "haddad", "larsen", "dubois", "kowalski", "ivanova", "nguyen", "cohen", "murphy",
    "santos",
];
const DOMAINS: [&str; 10] = [
    "document",
    "user",
    "session",
    "project",
    "invoice",
    "payment",
    "repository",
    "secret",
    "report",
    "role",
];
const VERBS: [&str; 5] = ["read", "create", "update", "delete", "share"];
const KINDS: [&str; 8] = [
    "documents",
    "projects",
    "invoices",
    "users",
    "repositories",
    "secrets",
    "reports",
    "buckets",
];
const SERVICES: [&str; 8] = [
    "web",
    "api-gateway",
    "billing",
    "docs",
    "identity",
    "admin-console",
    "ci",
    "storage",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "python-requests/2.32.3",
    "acme-cli/4.2.0 (linux; amd64)",
];

/// Events numbered from 0, made on demand.
pub struct Generator {
    workload: Workload,
    seed: u64,
    actors: Zipf,
    resources: Zipf,
    /// Milliseconds since the epoch of event 0.
    start_ms: i64,
}

/// Actors (every first name with every last name) and resources of the
/// application workload.
const APP_ACTORS: usize = FIRST.len() * LAST.len();
const APP_RESOURCES: usize = 5_000;

impl Generator {
    pub fn new(workload: Workload, seed: u64) -> Generator {
        Generator {
            workload,
            seed,
            actors: Zipf::new(APP_ACTORS),
            resources: Zipf::new(APP_RESOURCES),
            // 2026-12-01T00:00:00Z: events go forward from there.
            start_ms: 1_796_083_200_000,
        }
    }

    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// Appends event `n`'s raw JSON to `out`: for `App` a Stele event, for
    /// `K8s` one audit event (an item of an `EventList`).
    pub fn push(&self, n: u64, out: &mut Vec<u8>) {
        let mut rng = Rng::new(self.seed, n);
        // About a thousand events a second, in order.
        let at_ms = self.start_ms + n as i64 + rng.below(3) as i64;
        let text = match self.workload {
            Workload::App => self.app(&mut rng, at_ms),
            Workload::K8s => k8s(&mut rng, at_ms),
        };
        out.extend_from_slice(text.as_bytes());
    }

    /// Appends events `numbers` as one request body: for `App` a JSON
    /// array, for `K8s` an `audit.k8s.io/v1` `EventList`.
    pub fn push_list(&self, numbers: std::ops::Range<u64>, out: &mut Vec<u8>) {
        let (open, close): (&[u8], &[u8]) = match self.workload {
            Workload::App => (b"[", b"]"),
            Workload::K8s => (
                br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#,
                b"]}",
            ),
        };
        out.extend_from_slice(open);
        for n in numbers.clone() {
            if n > numbers.start {
                out.push(b',');
            }
            self.push(n, out);
        }
        out.extend_from_slice(close);
    }

    /// Event `n` on its own.
    pub fn event(&self, n: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.push(n, &mut out);
        out
    }

    fn app(&self, rng: &mut Rng, at_ms: i64) -> String {
        let actor = self.actors.draw(rng);
        let (first, last) = (
            FIRST[actor % FIRST.len()],
            LAST[actor / FIRST.len() % LAST.len()],
        );
        let domain = rng.below(DOMAINS.len());
        // Reads dominate; each domain has its five verbs.
        let verb = if rng.chance(60) {
            0
        } else {
            rng.below(VERBS.len())
        };
        let resource = self.resources.draw(rng);
        let outcome = match rng.below(100) {
            0..=93 => "success",
            94..=97 => "failure",
            _ => "denied",
        };
        // An actor works from its own address and browser, mostly.
        let home = actor as u64;
        let (ip, agent) = if rng.chance(90) {
            (
                format!("198.51.{}.{}", home / 200 % 256, home % 200 + 20),
                AGENTS[actor % AGENTS.len()],
            )
        } else {
            (
                format!("203.0.113.{}", rng.below(254) + 1),
                *rng.pick(&AGENTS),
            )
        };
        let mut request = String::new();
        rng.hex(&mut request, 16);
        let mut text = format!(
            r#"{{"actor":"{first}.{last}@acme.example","action":"{}.{}","resource":"{}/{}","outcome":"{outcome}","time":"{}","source":"{}","attributes":{{"ip":"{ip}","user_agent":"{agent}","request_id":"{request}","tenant":"acme-{}""#,
            DOMAINS[domain],
            VERBS[verb],
            KINDS[resource % KINDS.len()],
            resource * 7919 % 100_000,
            timestamp(at_ms),
            SERVICES[domain % SERVICES.len()],
            actor % 7,
        );
        if outcome != "success" {
            text.push_str(r#","reason":"permission denied by role policy""#);
        }
        let _ = write!(text, r#","latency_ms":{}}}}}"#, 3 + rng.below(250));
        text
    }
}

/// RFC 3339 with milliseconds, UTC.
fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

/// (verb, percent of requests).
const K8S_VERBS: [(&str, u64); 8] = [
    ("get", 34),
    ("list", 16),
    ("watch", 12),
    ("update", 18),
    ("patch", 8),
    ("create", 7),
    ("delete", 4),
    ("deletecollection", 1),
];

/// (resource, API group, API version, namespaced).
const K8S_RESOURCES: [(&str, &str, &str, bool); 12] = [
    ("leases", "coordination.k8s.io", "v1", true),
    ("pods", "", "v1", true),
    ("configmaps", "", "v1", true),
    ("secrets", "", "v1", true),
    ("endpointslices", "discovery.k8s.io", "v1", true),
    ("deployments", "apps", "v1", true),
    ("replicasets", "apps", "v1", true),
    ("services", "", "v1", true),
    ("events", "events.k8s.io", "v1", true),
    ("nodes", "", "v1", false),
    ("serviceaccounts", "", "v1", true),
    ("clusterroles", "rbac.authorization.k8s.io", "v1", false),
];

const NAMESPACES: [&str; 12] = [
    "kube-system",
    "default",
    "payments",
    "checkout",
    "identity",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "argocd",
    "data",
    "search",
    "staging",
];

const CONTROLLERS: [&str; 8] = [
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "node-controller",
    "namespace-controller",
    "job-controller",
    "statefulset-controller",
    "generic-garbage-collector",
];

const PEOPLE: [&str; 6] = [
    "alice@acme.example",
    "bob@acme.example",
    "carol@acme.example",
    "ci-deployer@acme.example",
    "dave@acme.example",
    "oncall@acme.example",
];

/// One audit event, as kube-apiserver writes it.
fn k8s(rng: &mut Rng, at_ms: i64) -> String {
    let verb = {
        let mut x = rng.below(100) as u64;
        let mut chosen = K8S_VERBS[0].0;
        for (verb, percent) in K8S_VERBS {
            if x < percent {
                chosen = verb;
                break;
            }
            x -= percent;
        }
        chosen
    };
    let (resource, group, version, namespaced) = *rng.pick(&K8S_RESOURCES);
    let namespace = NAMESPACES[rng.below(NAMESPACES.len()).min(rng.below(NAMESPACES.len()))];
    let name = match resource {
        "nodes" => format!(
            "ip-10-0-{}-{}.ec2.internal",
            rng.below(4),
            rng.below(40) + 10
        ),
        "leases" => (*rng.pick(&CONTROLLERS)).to_string(),
        _ => {
            let mut name = format!(
                "{}-",
                rng.pick(&["api", "web", "worker", "db", "cache", "auth"])
            );
            rng.hex(&mut name, 5);
            name
        }
    };
    // Who: nodes renewing leases and reporting pods, controllers, people.
    let (user, groups, agent, ip) = match rng.below(10) {
        0..=3 => {
            let node = format!(
                "ip-10-0-{}-{}.ec2.internal",
                rng.below(4),
                rng.below(40) + 10
            );
            (
                format!("system:node:{node}"),
                r#"["system:nodes","system:authenticated"]"#.to_string(),
                "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46".to_string(),
                format!("10.0.{}.{}", rng.below(4), rng.below(200) + 10),
            )
        }
        4..=7 => {
            let controller = rng.pick(&CONTROLLERS);
            (
                format!("system:serviceaccount:kube-system:{controller}"),
                r#"["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]"#.to_string(),
                format!("kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:{controller}"),
                "10.0.0.12".to_string(),
            )
        }
        _ => (
            (*rng.pick(&PEOPLE)).to_string(),
            r#"["oidc:platform-team","system:authenticated"]"#.to_string(),
            "kubectl/v1.31.1 (darwin/arm64) kubernetes/948afe5".to_string(),
            format!("172.16.{}.{}", rng.below(8), rng.below(250) + 2),
        ),
    };
    let code = match rng.below(100) {
        0..=94 => 200,
        95..=97 => 404,
        98 => 409,
        _ => 403,
    };
    let code = if verb == "create" && code == 200 {
        201
    } else {
        code
    };
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let uri = if namespaced {
        format!("{prefix}/namespaces/{namespace}/{resource}/{name}")
    } else {
        format!("{prefix}/{resource}/{name}")
    };
    let mutating = matches!(verb, "create" | "update" | "patch");
    // Secrets are only ever logged at Metadata, as audit policies do.
    let level = if mutating && resource != "secrets" && rng.chance(60) {
        "RequestResponse"
    } else {
        "Metadata"
    };
    let mut audit_id = String::new();
    rng.uuid(&mut audit_id);
    // A user's uid is the same in all its events.
    let mut uid = String::new();
    Rng::new(0, user.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)))).uuid(&mut uid);
    let mut out = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{level}","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"{uri}","verb":"{verb}","user":{{"username":"{user}","uid":"{uid}","groups":{groups}}},"sourceIPs":["{ip}"],"userAgent":"{agent}","objectRef":{{"resource":"{resource}","#
    );
    if namespaced {
        let _ = write!(out, r#""namespace":"{namespace}","#);
    }
    let _ = write!(out, r#""name":"{name}","#);
    if !group.is_empty() {
        let _ = write!(out, r#""apiGroup":"{group}","#);
    }
    let _ = write!(
        out,
        r#""apiVersion":"{version}"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"#
    );
    if level == "RequestResponse" {
        let object = k8s_object(rng, resource, &name, namespaced.then_some(namespace), at_ms);
        let _ = write!(
            out,
            r#""requestObject":{object},"responseObject":{object},"#
        );
    }
    let received = timestamp(at_ms - 1 - rng.below(4) as i64);
    let _ = write!(
        out,
        r#""requestReceivedTimestamp":"{received}","stageTimestamp":"{}","annotations":{{"authorization.k8s.io/decision":"{}","authorization.k8s.io/reason":"{}"}}}}"#,
        timestamp(at_ms),
        if code == 403 { "forbid" } else { "allow" },
        if code == 403 {
            String::new()
        } else {
            format!(
                r#"RBAC: allowed by ClusterRoleBinding \"system:{resource}-access\" of ClusterRole \"{resource}-editor\" to User \"{}\""#,
                user.rsplit(':').next().unwrap_or(&user)
            )
        }
    );
    out
}

/// A request or response object of a mutating call: metadata, and a small
/// body of the resource's kind.
fn k8s_object(
    rng: &mut Rng,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
    at_ms: i64,
) -> String {
    let mut uid = String::new();
    rng.uuid(&mut uid);
    let version = 1_000_000 + rng.below(9_000_000);
    let app = name.split('-').next().unwrap_or(name);
    let body = match resource {
        "configmaps" => format!(
            r#""data":{{"LOG_LEVEL":"info","FEATURE_FLAGS":"checkout-v2,fast-search","MAX_CONNECTIONS":"{}"}}"#,
            50 + rng.below(200)
        ),
        "deployments" | "replicasets" => format!(
            r#""spec":{{"replicas":{},"selector":{{"matchLabels":{{"app":"{app}"}}}},"template":{{"metadata":{{"labels":{{"app":"{app}"}}}},"spec":{{"containers":[{{"name":"{app}","image":"registry.acme.example/{app}:1.{}.{}","resources":{{"requests":{{"cpu":"250m","memory":"256Mi"}}}}}}]}}}}}}"#,
            1 + rng.below(6),
            rng.below(40),
            rng.below(10)
        ),
        "leases" => format!(
            r#""spec":{{"holderIdentity":"{name}_{}","leaseDurationSeconds":15,"renewTime":"{}"}}"#,
            uid,
            timestamp(at_ms)
        ),
        _ => format!(
            r#""spec":{{"ports":[{{"port":{},"protocol":"TCP"}}]}}"#,
            8000 + rng.below(100)
        ),
    };
    let namespace = namespace
        .map(|n| format!(r#""namespace":"{n}","#))
        .unwrap_or_default();
    format!(
        r#"{{"metadata":{{"name":"{name}",{namespace}"uid":"{uid}","resourceVersion":"{version}","labels":{{"app":"{app}","team":"platform"}},"annotations":{{"deployment.kubernetes.io/revision":"{}"}}}},{body}}}"#,
        1 + rng.below(30)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::*;

    /// Every application event is a valid Stele event of about 300 bytes,
    /// the same for the same number, and the tables are as wide as the
    /// documentation says.
    #[test]
    fn app_events_are_valid_varied_and_repeatable() {
        let generator = Generator::new(Workload::App, 7);
        let limits = stele_event::Limits::default();
        let (mut actors, mut actions, mut resources, mut bytes) =
            (HashSet::new(), HashSet::new(), HashSet::new(), 0usize);
        let count = 50_000;
        for n in 0..count {
            let raw = generator.event(n);
            assert_eq!(raw, generator.event(n));
            let event = stele_event::parse_client_event(&raw, &limits)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
            actors.insert(event.actor);
            actions.insert(event.action);
            resources.insert(event.resource.unwrap());
            bytes += raw.len();
        }
        let average = bytes / count as usize;
        assert!((250..=380).contains(&average), "{average} bytes on average");
        assert!(
            (400..=APP_ACTORS).contains(&actors.len()),
            "{} actors",
            actors.len()
        );
        assert_eq!(actions.len(), DOMAINS.len() * VERBS.len());
        assert!(
            (3_000..=APP_RESOURCES).contains(&resources.len()),
            "{} resources",
            resources.len()
        );
        assert_ne!(
            generator.event(1),
            Generator::new(Workload::App, 8).event(1)
        );
    }

    /// Every Kubernetes event is an audit event the webhook adapter maps,
    /// both levels occur, and the bigger ones carry their objects.
    #[test]
    fn k8s_events_map_through_the_webhook_adapter() {
        let generator = Generator::new(Workload::K8s, 7);
        let count = 2_000;
        let mut body = Vec::new();
        generator.push_list(0..count, &mut body);
        let limits = stele_ingest::BodyLimits {
            max_body_bytes: body.len(),
            max_events: count as usize,
            ..stele_ingest::BodyLimits::default()
        };
        let events = stele_ingest::kubernetes::parse_event_list(&body, &limits).unwrap();
        assert_eq!(events.len(), count as usize);
        let levels: HashSet<&str> = events
            .iter()
            .map(|e| {
                let raw = std::str::from_utf8(e.raw).unwrap();
                if raw.contains(r#""level":"RequestResponse""#) {
                    assert!(raw.contains(r#""responseObject":{"metadata""#));
                    "RequestResponse"
                } else {
                    "Metadata"
                }
            })
            .collect();
        assert_eq!(levels.len(), 2);
        let verbs: HashSet<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
        assert_eq!(verbs.len(), K8S_VERBS.len());
    }
}
