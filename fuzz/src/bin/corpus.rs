//! Writes the seed corpora (`fuzz/corpus/<target>/`) and the key fixtures
//! (`fuzz/fixtures/`) from a real log: `stele-fuzz-corpus FUZZ_DIR`.
//!
//! It creates a small data directory with the product's own code (a
//! policy applied, events in three streams over three days, holds, a
//! retention run that purges, a key rotation, tokens, published
//! checkpoints), then copies each kind of file it made, cut to a few
//! records where the file is long, into the corpus of the target that
//! reads it. Formats that no log file holds (configuration, query strings,
//! request bodies) get the examples the documentation gives. Running it
//! again makes new keys, so the fixtures and every seed change together.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use stele_log::governance::HoldSpec;
use stele_log::tokens::{Role, TokenSpec, token_path};
use stele_log::{CreateOptions, EntryIndex, Log, OpenOptions, Preparer};
use stele_policy::{Policy, PolicySource};
use stele_store::index::{IndexRecord, RECORD_LEN};
use stele_store::keys::{Argon2Params, Kek, NewKek};
use stele_store::segment::{SegmentHeader, record_len};

const ORIGIN: &str = "fuzz.stele.example/log";
const DAY: i64 = 86_400;
/// 2026-01-01 as a UTC day number.
const JAN1: i64 = 20_454;

const POLICY: &str = r#"version = 1
default_stream = "ops"

[streams.ops]
retain = "2d"

[streams.audit]
retain = "forever"

[streams.legal]
retain_until = "2031-12-31"

[[routes]]
source = "kube-*"
stream = "audit"
"#;

const EVENTS: &[&str] = &[
    r#"{"actor":"alice","action":"login","stream":"audit"}"#,
    r#"{"actor":"bob","action":"delete","resource":"db/users","outcome":"success","time":"2026-01-01T12:00:00+02:00","id":"req-1","source":"app"}"#,
    r#"{"actor":"svc","action":"rotate","attributes":{"n":1,"list":[true,null,1.5e3,"x"],"nested":{"k":"\u00e9\ud83d\ude00"}}}"#,
    r#"{"actor":"carol","action":"export","stream":"legal","attributes":{"reason":"case 42"}}"#,
    r#"{"actor":"k","action":"get","source":"kube-apiserver","outcome":"failure"}"#,
];

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz".into()));
    let work = tempfile::tempdir().expect("temporary directory");
    let data = work.path().join("data");
    build_log(&data);
    let c = Corpus {
        root: out.join("corpus"),
    };
    std::fs::create_dir_all(out.join("fixtures")).expect("fixtures directory");
    let fixture = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join("fixtures").join(name), bytes).expect("write fixture")
    };
    let read = |rel: &str| std::fs::read(data.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));

    fixture("kek.key", &read("keys/kek.key"));
    fixture("signing.key", &read("keys/signing.key"));
    fixture("segment.dek", &read("keys/deks/1.dek"));
    fixture("sessions", &read("keys/sessions"));
    fixture("origin.txt", ORIGIN.as_bytes());

    key_files(&c, &data, work.path());
    log_files(&c, &data);
    index_and_segments(&c, &data);
    public_files(&c, &data);
    governance_files(&c, &data);
    outside_inputs(&c);
    println!("corpora written under {}", c.root.display());
}

/// Seeds grouped by target directory.
struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn add(&self, target: &str, name: &str, bytes: &[u8]) {
        assert!(stele_fuzz::find(target).is_some(), "no target {target}");
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }

    fn prefixed(&self, target: &str, name: &str, first: u8, bytes: &[u8]) {
        let mut seed = vec![first];
        seed.extend_from_slice(bytes);
        self.add(target, name, &seed);
    }
}

fn noon(day: i64) -> Timestamp {
    Timestamp::from_second((JAN1 + day) * DAY + DAY / 2).expect("a time")
}

/// The log every file seed comes from.
fn build_log(data: &Path) {
    Log::create(
        data,
        CreateOptions {
            origin: ORIGIN.into(),
            kek: NewKek::Random,
        },
    )
    .expect("create");
    let mut log = Log::open(data, OpenOptions::default()).expect("open");
    let source = PolicySource::from_toml("policy.toml", POLICY);
    let policy = Policy::from_source(&source).expect("the seed policy is valid");
    log.governance()
        .apply_policy(policy, "admin", noon(0))
        .expect("apply");
    for day in 0..3 {
        let preparer =
            Preparer::new("app", "http", "ops").with_policy(log.reader().active_policy());
        let events: Vec<_> = EVENTS
            .iter()
            .map(|raw| {
                preparer
                    .prepare(raw.as_bytes(), noon(day))
                    .expect("prepare")
            })
            .collect();
        log.writer().append_batch(&events).expect("append");
        log.writer().publish().expect("publish");
    }
    let spec = HoldSpec {
        streams: vec!["legal".into()],
        from: Some("2026-01-01".into()),
        to: None,
        reason: "case 42".into(),
    };
    log.governance()
        .add_hold(spec, "admin", noon(3))
        .expect("hold");
    let spec = HoldSpec {
        streams: vec![],
        from: None,
        to: Some("2026-01-02".into()),
        reason: "audit".into(),
    };
    let released = log
        .governance()
        .add_hold(spec, "admin", noon(3))
        .expect("hold");
    log.governance()
        .release_hold(&released.id, "admin", noon(4))
        .expect("release");
    // No grace between announcing a purge and carrying it out: the seed
    // log needs a purge record, and this process does not wait.
    log.governance()
        .set_retention_grace(std::time::Duration::ZERO);
    let purged = log
        .governance()
        .enforce_retention("retention", noon(10))
        .expect("retention");
    assert!(!purged.is_empty(), "the seed log purges an epoch");
    log.governance()
        .rotate_kek_as(NewKek::Random, "admin", noon(11))
        .expect("rotate");
    log.writer().publish().expect("publish");
    assert!(
        data.join("keys/deks/1.dek").exists(),
        "segment 1 (stream audit) is kept"
    );
}

fn key_files(c: &Corpus, data: &Path, work: &Path) {
    c.add(
        "kek_file",
        "raw.key",
        &std::fs::read(data.join("keys/kek.key")).expect("kek"),
    );
    let passphrase = work.join("passphrase.key");
    let cheap = Argon2Params {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    Kek::create(
        &passphrase,
        NewKek::Passphrase {
            passphrase: "correct horse".to_string().into(),
            params: cheap,
        },
    )
    .expect("passphrase KEK");
    c.add(
        "kek_file",
        "passphrase.key",
        &std::fs::read(&passphrase).expect("kek"),
    );
    c.add(
        "signing_key_file",
        "signing.key",
        &std::fs::read(data.join("keys/signing.key")).expect("signing"),
    );
    for entry in std::fs::read_dir(data.join("keys/deks")).expect("deks") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        c.add("dek_file", &name, &std::fs::read(&path).expect("dek"));
    }
    let sessions = std::fs::read(data.join("keys/sessions")).expect("sessions");
    c.add("sessions", "sessions", &sessions);
    let mut torn = sessions.clone();
    torn.extend_from_slice(&[0xa5; 21]);
    c.add("sessions", "torn", &torn);
    let mut zeros = sessions[..stele_store::sessions::HEADER_LEN].to_vec();
    zeros.extend_from_slice(&[0; stele_store::sessions::ENTRY_LEN]);
    c.add("sessions", "zero-entry", &zeros);
    c.add(
        "kek_info",
        "kek.info",
        &std::fs::read(data.join("keys/kek.info")).expect("kek.info"),
    );
    c.add(
        "kek_info",
        "minimal.info",
        br#"{"created_at":1767225600,"number":1,"kind":"file"}"#,
    );
}

fn log_files(c: &Corpus, data: &Path) {
    c.add(
        "meta_json",
        "meta.json",
        &std::fs::read(data.join("meta.json")).expect("meta"),
    );
    let history = std::fs::read(data.join("checkpoints")).expect("history");
    c.add("checkpoint_history", "all", &history);
    let first = 20 + u32::from_be_bytes(history[12..16].try_into().expect("length")) as usize;
    c.add("checkpoint_history", "torn", &history[..first + 7]);
    c.prefixed(
        "writer_state",
        "writer-generation",
        0,
        &std::fs::read(data.join("writer-generation")).expect("generation"),
    );
    c.prefixed(
        "writer_state",
        "segments.state",
        1,
        &std::fs::read(data.join("segments.state")).expect("state"),
    );
}

/// The index (cut to its records, no grown-ahead zeros), segment headers,
/// and records paired with the commitment the index holds for them.
fn index_and_segments(c: &Corpus, data: &Path) {
    let index = std::fs::read(data.join("index")).expect("index");
    let records: Vec<IndexRecord> = index[RECORD_LEN as usize..]
        .chunks_exact(RECORD_LEN as usize)
        .map_while(IndexRecord::decode)
        .collect();
    let end = RECORD_LEN as usize * (records.len() + 1);
    c.prefixed("index", "whole", 0, &index[..end]);
    c.prefixed("index", "trusted-3", 3, &index[..RECORD_LEN as usize * 5]);
    let mut torn = index[..RECORD_LEN as usize * 4].to_vec();
    torn.extend_from_slice(&index[RECORD_LEN as usize * 4..RECORD_LEN as usize * 4 + 20]);
    c.prefixed("index", "torn", 0, &torn);

    let mut seen_header = std::collections::BTreeSet::new();
    let mut seen_block = std::collections::BTreeSet::new();
    for (i, record) in records.iter().enumerate() {
        let Some(path) = segment_path(data, record.segment_id) else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("segment");
        if seen_header.insert(record.segment_id) {
            let (_, len) = SegmentHeader::decode(&path, &bytes).expect("header");
            c.add(
                "segment_header",
                &format!("segment-{}", record.segment_id),
                &bytes[..len],
            );
        }
        let at = record.location.offset as usize;
        let len = record_len(&bytes[at..]).expect("record length");
        let mut seed = record.commitment.to_vec();
        seed.extend_from_slice(&bytes[at..at + len]);
        if record.segment_id == 1 || i % 5 == 0 {
            c.add("segment_record", &format!("entry-{i}"), &seed);
        }
        // Segments of versions 3 and 4 hold blocks: one seed per block.
        if stele_store::segment::holds_blocks(bytes[8])
            && seen_block.insert((record.segment_id, at))
        {
            c.add(
                "segment_block",
                &format!("block-{}-{at}", record.segment_id),
                &bytes[at..at + len],
            );
        }
    }
}

/// The segment file with id `id`, if it was not purged.
fn segment_path(data: &Path, id: u32) -> Option<PathBuf> {
    for stream in std::fs::read_dir(data.join("segments")).expect("segments") {
        for file in std::fs::read_dir(stream.expect("stream").path()).expect("stream dir") {
            let path = file.expect("file").path();
            if path.extension().is_some_and(|e| e == "seg")
                && stele_store::segment::read_header(&path).is_ok_and(|(h, _)| h.id == id)
            {
                return Some(path);
            }
        }
    }
    None
}

/// What a verifier downloads: the checkpoint, proofs, tiles and bundles,
/// and the events with their stored forms.
fn public_files(c: &Corpus, data: &Path) {
    let log = Log::open(data, OpenOptions::default()).expect("reopen");
    let note = log.reader().checkpoint_note();
    c.add("signed_note", "checkpoint", note.as_bytes());
    let text = &note[..note.find("\n\n").expect("note text") + 1];
    c.add("checkpoint", "checkpoint", text.as_bytes());
    c.add(
        "checkpoint",
        "extension",
        format!("{text}ext line\n").as_bytes(),
    );
    let meta = Log::read_meta(data).expect("meta");
    c.add("verifier_key", "meta", meta.verifier_key.as_bytes());
    for index in [0, 1, 7, log.reader().size() - 1].map(EntryIndex) {
        let proof = log.reader().inclusion_proof(index, None).expect("proof");
        c.add(
            "tlog_proof",
            &format!("entry-{index}"),
            proof.encode().as_bytes(),
        );
        // A purged entry keeps its proof but has no event any more.
        let Ok(stored) = log.reader().get(index) else {
            continue;
        };
        let (canonical, stored_form) = stored.envelope.canonical_and_stored();
        c.add("stored_event", &format!("canonical-{index}"), &canonical);
        c.add("stored_event", &format!("stored-{index}"), &stored_form);
    }
    let tiles = data.join("log");
    let mut paths = Vec::new();
    walk(&tiles.join("tile"), &mut paths);
    for path in paths {
        let rel = path
            .strip_prefix(&tiles)
            .expect("inside")
            .to_str()
            .expect("utf-8")
            .to_string();
        let name = rel.replace('/', "_");
        c.add("tile_path", &name, rel.as_bytes());
        let bytes = std::fs::read(&path).expect("tile");
        if rel.starts_with("tile/entries/") {
            c.add("entry_bundle", &name, &bytes);
        } else if let Ok((_, id)) = stele_tlog::TileId::parse_path(&rel) {
            c.prefixed("tile", &name, (id.width - 1) as u8, &bytes);
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn governance_files(c: &Corpus, data: &Path) {
    c.add(
        "holds_json",
        "holds.json",
        &std::fs::read(data.join("holds.json")).expect("holds"),
    );
    for entry in std::fs::read_dir(data.join("policies")).expect("policies") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        c.add(
            "policy_version",
            &name,
            &std::fs::read(&path).expect("policy version"),
        );
    }
    let mut tombstones = Vec::new();
    walk(&data.join("segments"), &mut tombstones);
    for path in tombstones
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "purged"))
    {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        c.add("tombstone", &name, &std::fs::read(path).expect("tombstone"));
    }
    let mut log = Log::open(data, OpenOptions::default()).expect("reopen");
    let writer = TokenSpec {
        principal: "ci-bot".into(),
        roles: vec![Role::writer()],
        expires_at: None,
        streams: None,
    };
    log.governance()
        .create_token(&writer, "admin", noon(12))
        .expect("token");
    let scoped = TokenSpec {
        principal: "auditor".into(),
        roles: vec![Role::reader()],
        expires_at: Some(noon(40)),
        streams: Some(vec!["audit".into(), "legal".into()]),
    };
    log.governance()
        .create_token(&scoped, "admin", noon(12))
        .expect("token");
    let admin = TokenSpec {
        principal: "old".into(),
        roles: vec![Role::admin()],
        expires_at: None,
        streams: None,
    };
    let revoked = log
        .governance()
        .create_token(&admin, "admin", noon(12))
        .expect("token");
    log.governance()
        .revoke_token(&revoked.entry.id, "admin", noon(13))
        .expect("revoke");
    c.add(
        "tokens_json",
        "tokens.json",
        &std::fs::read(token_path(data)).expect("tokens"),
    );
}

/// Inputs that come from clients and operators rather than from files the
/// log writes: examples from the documentation and the test suites.
fn outside_inputs(c: &Corpus) {
    for (i, event) in EVENTS.iter().enumerate() {
        c.add("client_event", &format!("event-{i}"), event.as_bytes());
    }
    c.prefixed("ingest_body", "object", 0, EVENTS[0].as_bytes());
    c.prefixed(
        "ingest_body",
        "array",
        0,
        format!("[{}]", EVENTS.join(",")).as_bytes(),
    );
    c.prefixed(
        "ingest_body",
        "ndjson",
        1,
        format!("{}\n\n{}\r\n", EVENTS[1], EVENTS[2]).as_bytes(),
    );
    let k8s = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/ingest/tests/data/eventlist.json"
    );
    c.add(
        "k8s_event_list",
        "eventlist.json",
        &std::fs::read(k8s).expect("eventlist.json"),
    );
    let syslog: [(&str, &[u8]); 6] = [
        ("rfc5424-sd", b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \xEF\xBB\xBFAn application event"),
        ("rfc5424-nil", b"<0>1 - - - - - -"),
        ("rfc5424-escapes", br#"<13>1 - h a - - [x@1 p="q\"u\\o\]te" p="2"] text"#),
        ("rfc3164", b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"),
        ("rfc3164-forwarded", b"<86>2026-12-08T03:00:00.123456+01:00 web1 sshd[4242]: Accepted publickey"),
        ("rfc3164-local", b"<38>Dec  8 03:00:00 sshd[7]: hello \xff"),
    ];
    for (name, message) in syslog {
        c.add("syslog_message", name, message);
    }
    c.add(
        "syslog_framing",
        "mixed",
        b"\x07<13>1 - - - - - - a\n20 <13>1 - - - - - - b\n<13>c\r\n30 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx<13>last",
    );
    c.add("syslog_framing", "bad-length", b"\x01012 <13>x");
    let policy_example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/policy/examples/policy.toml"
    );
    c.add(
        "policy_toml",
        "example.toml",
        &std::fs::read(policy_example).expect("policy example"),
    );
    c.add("policy_toml", "tiers.toml", POLICY.as_bytes());
    let inline = format!(
        "{POLICY}\n[access]\ncedar = '''\n{}'''\n",
        stele_policy::DEFAULT_CEDAR
    );
    c.add("policy_toml", "inline-cedar.toml", inline.as_bytes());
    c.add("server_config", "documented.toml", SERVER_CONFIG.as_bytes());
    c.add(
        "server_config",
        "minimal.toml",
        b"listen = [\"127.0.0.1:7800\"]\n",
    );
    for (i, (which, query)) in [
        (0u8, "stream=audit&from=0&to=10"),
        (1, "stream=ops&from=0&actor=alice&since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00%2B01:00&limit=5"),
        (2, "old=3&new=12"),
        (3, "from=1&limit=100"),
    ]
    .iter()
    .enumerate()
    {
        c.prefixed("query_string", &format!("query-{i}"), *which, query.as_bytes());
    }
    // The examples of docs/search.md.
    for (i, query) in [
        "actor:alice.smith@acme.example resource:db/prod/* received:2026-12-01",
        r#"(action:delete OR action:drop) -outcome:success "permission denied""#,
        "attributes.kubernetes.objectRef.namespace:kube-* time>=now-24h",
        "writer:svc-* stream:payments,billing attributes.mfa:false",
        r#"attributes."app.tier":payments NOT (actor:a AND -action:"a*b",c\*d) received<2026-12-06T11:15:00.5+01:00"#,
        "acter:alice",
    ]
    .iter()
    .enumerate()
    {
        c.add("search_query", &format!("query-{i}"), query.as_bytes());
    }
    // Search parts: of no entry, and of a few events with every kind of
    // term (named fields, nested and array attributes, times, ids).
    c.prefixed(
        "search_part",
        "empty",
        0,
        &stele_index::Part::new().encode(),
    );
    let preparer = Preparer::new("app", "fuzz", "ops");
    let mut part = stele_index::Part::new();
    for (i, raw) in [
        r#"{"actor":"alice@acme.example","action":"db.read","resource":"db/prod/t1","outcome":"success","time":"2026-12-01T10:00:00Z","attributes":{"tags":["pci","eu"],"k8s":{"ns":"kube-system"},"reason":"Permission denied by rule 3"}}"#,
        r#"{"actor":"bob","action":"login","outcome":"denied","id":"client-7","attributes":{"ip":"10.0.0.9","latency_ms":12.5,"ok":false,"none":null}}"#,
        r#"{"actor":"alice@acme.example","action":"db.delete","resource":"db/prod/t2","time":"2026-12-01T11:00:00.5+01:00"}"#,
    ]
    .iter()
    .enumerate()
    {
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let prepared = preparer.prepare(raw.as_bytes(), at).expect("event");
        part.insert(10 + 7 * i as u64, prepared.terms())
            .expect("ascending");
    }
    c.prefixed("search_part", "three-events", 0, &part.encode());
    // A whole part file, sealed under the fixtures' data key.
    let header = stele_store::search_part::PartHeader {
        segment_id: stele_fuzz::fixtures::DEK_SEGMENT,
        entries: part.len() as u64,
        first: part.entries().first().copied().unwrap_or(0),
        last: part.last_entry().unwrap_or(0),
        commitments: [7; 32],
    };
    let file = stele_store::search_part::seal(
        &stele_fuzz::fixtures::keys().data_key,
        &header,
        &part.encode(),
    )
    .expect("seals");
    c.prefixed("search_part", "file", 1, &file);
    referenced_blocks(c);
}

/// A reference block and a block compressed against it, as a segment of
/// version 4 holds them, sealed under the fixtures' record key of
/// generation 1, the first at the byte `segment_block` places it.
fn referenced_blocks(c: &Corpus) {
    use stele_store::block::{LEVEL, Packer, Reference};
    let key = stele_fuzz::fixtures::keys()
        .segment_keys
        .record_key(1)
        .expect("generation 1");
    let bodies: Vec<Vec<u8>> = (0..40u64)
        .map(|n| {
            format!(
                r#"{{"actor":"user-{}@example.com","action":"document.read","resource":"documents/{}","outcome":"success"}}"#,
                n % 7,
                n * 31 % 100
            )
            .into_bytes()
        })
        .collect();
    let entries: Vec<(u64, &[u8])> = bodies
        .iter()
        .enumerate()
        .map(|(n, b)| (10 + n as u64, b.as_slice()))
        .collect();
    let mut packer = Packer::new(LEVEL).expect("zstd");
    let mut seed = Vec::new();
    packer
        .seal(&key, 1, &entries[..30], None, &mut seed)
        .expect("seals");
    let reference =
        Reference::new(stele_fuzz::SEGMENT_BLOCK_AT, &entries[..30], LEVEL).expect("reference");
    packer
        .seal(&key, 1, &entries[30..], Some(&reference), &mut seed)
        .expect("seals");
    c.add("segment_block", "referenced", &seed);
}

const SERVER_CONFIG: &str = r#"data = "./stele-data"
origin = "audit.example.com/log"
listen = ["0.0.0.0:7800"]
allow_plain_http = false
publish_interval_ms = 200
policy = "/etc/stele/policy.toml"

[tls]
cert = "/etc/stele/server.pem"
key = "/etc/stele/server.key"
client_ca = "/etc/stele/clients-ca.pem"
reload_seconds = 5

[limits]
max_body_bytes = 16777216
max_events_per_request = 10000
queue_depth = 1024
max_connections = 4096
max_inflight_body_bytes = 268435456

[timeouts]
header_read_seconds = 10
body_read_seconds = 30
idle_seconds = 60

[[client_certs]]
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
principal = "k8s-apiserver"
roles = ["writer"]
"#;
