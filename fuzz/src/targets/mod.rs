//! The targets, grouped by the crate that owns the parser. Each function
//! takes one input and panics only when an invariant fails.

mod bundle;
pub mod fixtures;
mod ingest;
mod log;
mod policy;
mod query;
mod server;
mod store;

pub use store::BLOCK_AT as store_block_at;
mod tlog;

use crate::Target;

/// Every target; the names are the corpus directories.
pub const ALL: &[Target] = &[
    Target {
        name: "tlog_proof",
        about: "TlogProof::parse (offline proofs)",
        run: tlog::tlog_proof,
    },
    Target {
        name: "checkpoint",
        about: "Checkpoint::parse (checkpoint bodies)",
        run: tlog::checkpoint,
    },
    Target {
        name: "signed_note",
        about: "open_note (signed checkpoints)",
        run: tlog::signed_note,
    },
    Target {
        name: "verifier_key",
        about: "Verifier::from_vkey",
        run: tlog::verifier_key,
    },
    Target {
        name: "tile_path",
        about: "TileId::parse_path (GET /tile/...)",
        run: tlog::tile_path,
    },
    Target {
        name: "tile",
        about: "decode_tile (hash tiles)",
        run: tlog::tile,
    },
    Target {
        name: "entry_bundle",
        about: "decode_bundle (entry bundles)",
        run: tlog::entry_bundle,
    },
    Target {
        name: "segment_header",
        about: "SegmentHeader::decode",
        run: store::segment_header,
    },
    Target {
        name: "segment_record",
        about: "segment record framing, opening and plaintext",
        run: store::segment_record,
    },
    Target {
        name: "segment_block",
        about: "segment block framing, head, opening and entries, alone or against a reference (versions 3 and 4)",
        run: store::segment_block,
    },
    Target {
        name: "index",
        about: "index file open (recovery) and IndexRecord::decode",
        run: store::index,
    },
    Target {
        name: "checkpoint_history",
        about: "checkpoint history scan and reader",
        run: store::checkpoint_history,
    },
    Target {
        name: "writer_state",
        about: "writer-generation and segments.state",
        run: store::writer_state,
    },
    Target {
        name: "kek_file",
        about: "keys/kek.key",
        run: store::kek_file,
    },
    Target {
        name: "sessions",
        about: "keys/sessions (session salts)",
        run: store::sessions,
    },
    Target {
        name: "dek_file",
        about: "keys/deks/<id>.dek",
        run: store::dek_file,
    },
    Target {
        name: "signing_key_file",
        about: "keys/signing.key",
        run: store::signing_key_file,
    },
    Target {
        name: "kek_info",
        about: "keys/kek.info",
        run: log::kek_info,
    },
    Target {
        name: "meta_json",
        about: "meta.json",
        run: log::meta_json,
    },
    Target {
        name: "holds_json",
        about: "holds.json",
        run: log::holds_json,
    },
    Target {
        name: "tombstone",
        about: "segments/<s>/<day>.purged",
        run: log::tombstone,
    },
    Target {
        name: "policy_version",
        about: "policies/<seq>.json",
        run: log::policy_version,
    },
    Target {
        name: "stored_event",
        about: "stored envelope bodies (packed or canonical)",
        run: log::stored_event,
    },
    Target {
        name: "policy_toml",
        about: "policy TOML with inline Cedar",
        run: policy::policy_toml,
    },
    Target {
        name: "tokens_json",
        about: "tokens.json and bearer tokens",
        run: server::tokens_json,
    },
    Target {
        name: "server_config",
        about: "server configuration TOML",
        run: server::server_config,
    },
    Target {
        name: "query_string",
        about: "export, query, consistency and checkpoints query strings",
        run: server::query_string,
    },
    Target {
        name: "bundle_file",
        about: "stele_bundle::verify (evidence bundles, stele verify-bundle)",
        run: bundle::bundle_file,
    },
    Target {
        name: "search_query",
        about: "Query::parse (the search query language)",
        run: query::search_query,
    },
    Target {
        name: "search_part",
        about: "Part::decode (the search index of a segment, as its part file seals it)",
        run: query::search_part,
    },
    Target {
        name: "client_event",
        about: "parse_client_event (one event's JSON)",
        run: ingest::client_event,
    },
    Target {
        name: "ingest_body",
        about: "JSON and NDJSON request bodies",
        run: ingest::ingest_body,
    },
    Target {
        name: "k8s_event_list",
        about: "Kubernetes audit.k8s.io/v1 EventList",
        run: ingest::k8s_event_list,
    },
    Target {
        name: "syslog_framing",
        about: "syslog over a stream: octet counting and lines (RFC 6587)",
        run: ingest::syslog_framing,
    },
    Target {
        name: "syslog_message",
        about: "one syslog message (RFC 5424, RFC 3164) and its mapping",
        run: ingest::syslog_message,
    },
];
