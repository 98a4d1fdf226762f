//! Policy file parsing: every documented field, every refusal with its
//! message and line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use stele_policy::{
    Encryption, Policy, PolicyErrors, PolicySource, Problem, Retention, TlsRequirement,
};

fn parse(toml: &str) -> Result<Policy, PolicyErrors> {
    Policy::from_source(&PolicySource::from_toml("policy.toml", toml))
}

fn refuse(toml: &str) -> Vec<Problem> {
    match parse(toml) {
        Ok(_) => panic!("policy was accepted:\n{toml}"),
        Err(errors) => errors.problems,
    }
}

/// Asserts that exactly one problem is reported, at `line`, containing
/// `needle`.
#[track_caller]
fn refuse_one(toml: &str, line: usize, needle: &str) -> Problem {
    let problems = refuse(toml);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = problems.into_iter().next().unwrap();
    assert_eq!(problem.line, Some(line), "{problem}");
    assert!(problem.message.contains(needle), "{problem}");
    problem
}

const MINIMAL: &str = "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\n";

#[test]
fn example_files_parse_and_validate() {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("examples/policy.toml");
    let source = PolicySource::load(&path).unwrap();
    assert!(
        source
            .cedar_name
            .as_deref()
            .unwrap()
            .ends_with("access.cedar")
    );
    let policy = Policy::from_source(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.default_stream(), "operational");
    assert_eq!(
        policy.stream("operational").unwrap().retention,
        Retention::Days(90)
    );
    assert_eq!(
        policy.stream("compliance").unwrap().retention,
        Retention::Until(jiff::civil::date(2031, 12, 31))
    );
    assert_eq!(
        policy.stream("security").unwrap().retention,
        Retention::Forever
    );
    assert_eq!(
        policy.stream("kubernetes").unwrap().retention,
        Retention::Days(365)
    );
    assert_eq!(policy.routes().len(), 4);
    assert_eq!(policy.transport().tls, TlsRequirement::Required);
    assert_eq!(policy.local_roles(), ["admin"]);
    let ids: Vec<&str> = policy.access_policy_ids().collect();
    assert!(ids.contains(&"admin-no-payloads"), "{ids:?}");
}

#[test]
fn shipped_default() {
    let policy = Policy::shipped_default();
    assert_eq!(policy.default_stream(), "default");
    let streams: Vec<_> = policy.streams().map(|(n, s)| (n.to_owned(), *s)).collect();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].0, "default");
    assert_eq!(streams[0].1.retention, Retention::Forever);
    assert!(policy.routes().is_empty());
    assert_eq!(policy.transport().tls, TlsRequirement::Optional);
    // The shipped Cedar policies are really in effect (not the deny-all
    // fallback).
    let ids: Vec<&str> = policy.access_policy_ids().collect();
    assert_eq!(
        ids,
        [
            "admin-all",
            "reader-read",
            "reserved-streams-system-only",
            "system-append",
            "writer-append"
        ]
    );
    // And the source reparses to the same hash.
    let again = Policy::from_source(policy.source()).unwrap();
    assert_eq!(again.hash(), policy.hash());
}

#[test]
fn every_documented_field() {
    let toml = r#"
version = 1
default_stream = "ops"

[streams.ops]
retain = "90d"
encryption = "required"

[streams.compliance]
retain_until = "2031-12-31"

[streams.dated]
retain_until = 2030-01-15

[streams.archive]
retain = "forever"

[[routes]]
stream = "compliance"
channel = "http"
source = "10.0.*"
writer = "svc-*"
action = "delete*"
kubernetes = { namespace = "prod-*", resource = "secrets", verb = "get" }
attributes = { "pci" = "true", "app.tier" = "payments", "n" = 3, "b" = false }

[transport]
tls = "required"

[keys]
max_kek_age = "365d"

[audit]
verify_new_every = "30s"
verify_full_every = "12h"
attest_every = "2m"
max_since_full_verify = "2d"
readyz_fails_on_finding = true

[operators]
local_roles = ["admin", "auditor"]

[access]
cedar = '''
@id("only")
permit (principal in Stele::Role::"admin", action, resource);
'''
"#;
    let policy = parse(toml).unwrap_or_else(|e| panic!("{e}"));
    let ops = policy.stream("ops").unwrap();
    assert_eq!(ops.retention, Retention::Days(90));
    assert_eq!(ops.encryption, Encryption::Required);
    assert_eq!(
        policy.stream("dated").unwrap().retention,
        Retention::Until(jiff::civil::date(2030, 1, 15))
    );
    assert_eq!(
        policy.stream("archive").unwrap().retention,
        Retention::Forever
    );
    let route = &policy.routes()[0];
    assert_eq!(route.stream, "compliance");
    assert_eq!(route.channel.as_ref().unwrap().as_str(), "http");
    assert_eq!(route.source.as_ref().unwrap().as_str(), "10.0.*");
    assert_eq!(route.writer.as_ref().unwrap().as_str(), "svc-*");
    assert_eq!(route.action.as_ref().unwrap().as_str(), "delete*");
    let k8s = route.kubernetes.as_ref().unwrap();
    assert_eq!(k8s.namespace.as_ref().unwrap().as_str(), "prod-*");
    assert_eq!(k8s.resource.as_ref().unwrap().as_str(), "secrets");
    assert_eq!(k8s.verb.as_ref().unwrap().as_str(), "get");
    let attributes: Vec<(String, String)> = route
        .attributes
        .iter()
        .map(|(path, glob)| (path.join("/"), glob.as_str().to_owned()))
        .collect();
    for expected in [
        ("pci", "true"),
        ("app/tier", "payments"),
        ("n", "3"),
        ("b", "false"),
    ] {
        assert!(
            attributes.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{attributes:?}"
        );
    }
    assert_eq!(policy.transport().tls, TlsRequirement::Required);
    assert_eq!(
        policy.keys().max_kek_age,
        Some(Duration::from_secs(365 * 86400))
    );
    let audit = policy.audit();
    assert_eq!(audit.verify_new_every, Duration::from_secs(30));
    assert_eq!(audit.verify_full_every, Duration::from_secs(12 * 3600));
    assert_eq!(audit.attest_every, Duration::from_secs(120));
    assert_eq!(audit.max_since_full_verify, Duration::from_secs(2 * 86400));
    assert!(audit.readyz_fails_on_finding);
    assert_eq!(policy.local_roles(), ["admin", "auditor"]);
    assert_eq!(policy.access_policy_ids().collect::<Vec<_>>(), ["only"]);
}

#[test]
fn defaults_when_sections_are_absent() {
    let policy = parse(MINIMAL).unwrap();
    assert_eq!(policy.transport().tls, TlsRequirement::Optional);
    assert_eq!(policy.keys().max_kek_age, None);
    let audit = policy.audit();
    assert_eq!(audit.verify_new_every, Duration::from_secs(60));
    assert_eq!(audit.verify_full_every, Duration::from_secs(86400));
    assert_eq!(audit.attest_every, Duration::from_secs(3600));
    assert_eq!(audit.max_since_full_verify, Duration::from_secs(48 * 3600));
    assert!(!audit.readyz_fails_on_finding);
    assert!(policy.local_roles().is_empty());
    // No [access]: the shipped default Cedar policies.
    assert!(policy.access_policy_ids().any(|id| id == "admin-all"));
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    refuse_one(
        &format!("colour = 1\n{MINIMAL}"),
        1,
        "unknown key `colour` at the top level",
    );
    // After a table header, a key belongs to that table (TOML semantics).
    refuse_one(
        &format!("{MINIMAL}colour = 1\n"),
        5,
        "unknown key `colour` in [streams.ops]",
    );
    refuse_one(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\nkeep = 1\n",
        5,
        "unknown key `keep` in [streams.ops]",
    );
    refuse_one(
        &format!("{MINIMAL}[[routes]]\nstream = \"ops\"\nmatch = \"x\"\n"),
        7,
        "unknown key `match` in [[routes]] #1",
    );
    refuse_one(
        &format!("{MINIMAL}[[routes]]\nstream = \"ops\"\nkubernetes = {{ ns = \"x\" }}\n"),
        7,
        "unknown key `ns` in [[routes]] #1 kubernetes",
    );
    refuse_one(
        &format!("{MINIMAL}[transport]\nssl = true\n"),
        6,
        "unknown key `ssl` in [transport]",
    );
    refuse_one(
        &format!("{MINIMAL}[keys]\nmax_dek_age = \"1d\"\n"),
        6,
        "unknown key `max_dek_age`",
    );
    refuse_one(
        &format!("{MINIMAL}[audit]\nverify = \"1d\"\n"),
        6,
        "unknown key `verify` in [audit]",
    );
    refuse_one(
        &format!("{MINIMAL}[operators]\nroles = []\n"),
        6,
        "unknown key `roles` in [operators]",
    );
    refuse_one(
        &format!("{MINIMAL}[access]\npolicies = \"\"\n"),
        6,
        "unknown key `policies` in [access]",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let toml =
        "version = 2\ndefault_stream = \"nope\"\n[streams.ops]\nretain = \"9x\"\nextra = 1\n";
    let problems = refuse(toml);
    let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(lines.contains(&Some(1)) && lines.contains(&Some(2)));
    assert!(lines.contains(&Some(4)) && lines.contains(&Some(5)));
    let display = PolicyErrors { problems }.to_string();
    assert!(
        display.starts_with("policy refused (4 problems):"),
        "{display}"
    );
    assert!(
        display.contains("policy.toml:1:11: unsupported policy `version` 2"),
        "{display}"
    );
}

#[test]
fn version_must_be_one() {
    refuse_one(
        "version = 2\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"1d\"\n",
        1,
        "this Stele reads version 1",
    );
    refuse_one(
        "version = \"1\"\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"1d\"\n",
        1,
        "unsupported policy `version` a string",
    );
    refuse_one(
        "default_stream = \"ops\"\n[streams.ops]\nretain = \"1d\"\n",
        1,
        "`version` is missing",
    );
}

#[test]
fn bad_durations_name_the_field() {
    for (value, needle) in [
        ("\"60\"", "is not a duration"),
        ("\"0s\"", "must be positive"),
        ("\"-5m\"", "is not a duration"),
        ("\"1w\"", "is not a duration"),
        ("\"36501d\"", "longer than 100 years"),
        ("\"99999999999999999999999h\"", "longer than 100 years"),
        ("60", "must be a string, found an integer"),
    ] {
        let problem = refuse_one(
            &format!("{MINIMAL}[audit]\nattest_every = {value}\n"),
            6,
            needle,
        );
        assert!(problem.message.contains("audit.attest_every"), "{problem}");
    }
    // The largest accepted values.
    let policy = parse(&format!("{MINIMAL}[keys]\nmax_kek_age = \"36500d\"\n")).unwrap();
    assert_eq!(
        policy.keys().max_kek_age,
        Some(Duration::from_secs(36500 * 86400))
    );
    parse(&format!("{MINIMAL}[keys]\nmax_kek_age = \"876000h\"\n")).unwrap();
    refuse_one(
        &format!("{MINIMAL}[keys]\nmax_kek_age = \"876001h\"\n"),
        6,
        "keys.max_kek_age",
    );
}

#[test]
fn audit_full_verify_limit_must_cover_the_schedule() {
    refuse_one(
        &format!(
            "{MINIMAL}[audit]\nverify_full_every = \"24h\"\nmax_since_full_verify = \"12h\"\n"
        ),
        7,
        "shorter than `audit.verify_full_every`",
    );
}

#[test]
fn retention_refusals() {
    refuse_one(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"90d\"\nretain_until = \"2031-12-31\"\n",
        5,
        "has both `retain` and `retain_until`",
    );
    refuse_one(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\n",
        3,
        "needs `retain`",
    );
    for (value, needle) in [
        ("\"90\"", "is not a retention"),
        ("\"0d\"", "must be positive"),
        ("\"36501d\"", "longer than 36500 days"),
        ("\"12h\"", "is not a retention"),
        ("\"Forever\"", "is not a retention"),
    ] {
        refuse_one(
            &format!("version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = {value}\n"),
            4,
            needle,
        );
    }
    for (value, needle) in [
        ("\"2031-02-30\"", "is not a calendar date"),
        ("\"31-12-2031\"", "is not a date"),
        ("\"2031-12-31T00:00:00Z\"", "is not a date"),
        ("2031-12-31T00:00:00Z", "must be a date"),
    ] {
        refuse_one(
            &format!(
                "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain_until = {value}\n"
            ),
            4,
            needle,
        );
    }
}

#[test]
fn encryption_other_than_required_is_refused() {
    let problem = refuse_one(
        "version = 1\ndefault_stream = \"ops\"\n[streams.ops]\nretain = \"1d\"\nencryption = \"none\"\n",
        5,
        "Stele encrypts every stream at rest and cannot store plaintext",
    );
    assert_eq!(problem.column, Some(14));
}

#[test]
fn stream_references_must_be_declared() {
    refuse_one(
        "version = 1\ndefault_stream = \"missing\"\n[streams.ops]\nretain = \"1d\"\n",
        2,
        "`default_stream` = \"missing\" is not a declared stream",
    );
    refuse_one(
        "version = 1\n[streams.ops]\nretain = \"1d\"\n",
        1,
        "`default_stream` is missing",
    );
    refuse_one(
        &format!("{MINIMAL}[[routes]]\nstream = \"ops\"\n[[routes]]\nstream = \"nowhere\"\n"),
        8,
        "[[routes]] #2 sends events to \"nowhere\", which is not a declared stream",
    );
    refuse_one(
        &format!("{MINIMAL}[[routes]]\nchannel = \"http\"\n"),
        5,
        "[[routes]] #1 needs `stream`",
    );
    let problems = refuse("version = 1\ndefault_stream = \"ops\"\n");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].line, Some(1));
    assert!(problems[0].message.contains("no [streams.<name>] declared"));
    assert_eq!(problems[1].line, Some(2));
    assert!(problems[1].message.contains("is not a declared stream"));
}

#[test]
fn reserved_and_invalid_stream_names_are_refused() {
    let problem = refuse_one(
        &format!("{MINIMAL}[streams._system]\nretain = \"forever\"\n"),
        5,
        "stream `_system` is reserved",
    );
    assert!(
        problem.message.contains("always keeps them forever"),
        "{problem}"
    );
    refuse_one(
        &format!("{MINIMAL}[streams.Upper]\nretain = \"1d\"\n"),
        5,
        "stream name `Upper`",
    );
}

#[test]
fn local_roles_must_be_entity_ids() {
    refuse_one(
        &format!("{MINIMAL}[operators]\nlocal_roles = [\"\"]\n"),
        6,
        "a role name is empty",
    );
    refuse_one(
        &format!("{MINIMAL}[operators]\nlocal_roles = [\"a\\nb\"]\n"),
        6,
        "control character",
    );
    refuse_one(
        &format!("{MINIMAL}[operators]\nlocal_roles = \"admin\"\n"),
        6,
        "must be an array",
    );
    refuse_one(
        &format!(
            "{MINIMAL}[operators]\nlocal_roles = [\"{}\"]\n",
            "r".repeat(129)
        ),
        6,
        "longer than 128 bytes",
    );
}

#[test]
fn transport_values() {
    refuse_one(
        &format!("{MINIMAL}[transport]\ntls = \"yes\"\n"),
        6,
        "expected \"required\" or \"optional\"",
    );
    let policy = parse(&format!("{MINIMAL}[transport]\ntls = \"optional\"\n")).unwrap();
    assert_eq!(policy.transport().tls, TlsRequirement::Optional);
}

#[test]
fn toml_syntax_errors_have_a_line() {
    refuse_one(&format!("{MINIMAL}[audit\n"), 5, "TOML syntax");
    refuse_one("version = 1\nversion = 1\n", 2, "TOML syntax");
}

#[test]
fn cedar_syntax_error_inline_has_its_toml_line() {
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource);\n\npermit (principal action, resource);\n'''\n"
    );
    // Line 1 of the Cedar text is line 7 of the file; the error is on
    // Cedar line 4, so file line 10.
    let problems = refuse(&toml);
    assert!(!problems.is_empty());
    for problem in &problems {
        assert_eq!(problem.file, "policy.toml");
        assert_eq!(problem.line, Some(10), "{problem}");
        assert!(problem.message.starts_with("Cedar syntax"), "{problem}");
    }
}

#[test]
fn cedar_side_file_errors_are_reported_in_the_side_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!("{MINIMAL}[access]\ncedar_file = \"a.cedar\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"bad\")\npermit (principal, action == Stele::Action::\"delete\", resource);\n",
    )
    .unwrap();
    let source = PolicySource::load(&dir.path().join("p.toml")).unwrap();
    let problems = Policy::from_source(&source).unwrap_err().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = &problems[0];
    assert!(problem.file.ends_with("a.cedar"), "{problem}");
    assert_eq!(problem.line, Some(5), "{problem}");
    assert!(problem.message.contains("schema validation"), "{problem}");
    assert!(problem.message.contains("delete"), "{problem}");
}

#[test]
fn cedar_schema_validation_errors() {
    // Unknown attribute of the principal.
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource)\nwhen {{ principal.department == \"x\" }};\n'''\n"
    );
    let problems = refuse(&toml);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].message.contains("department"),
        "{}",
        problems[0]
    );
    assert_eq!(problems[0].line, Some(9), "{}", problems[0]);
    // Unknown context attribute.
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource)\nwhen {{ context.weekday == 1 }};\n'''\n"
    );
    assert!(refuse(&toml)[0].message.contains("weekday"));
    // Unknown entity type.
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource is Stele::Bucket);\n'''\n"
    );
    refuse_one(&toml, 8, "Bucket");
    // Attribute of the wrong type.
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource)\nwhen {{ context.time == \"noon\" }};\n'''\n"
    );
    refuse_one(&toml, 9, "schema validation");
}

#[test]
fn cedar_duplicate_ids_and_both_sources_are_refused() {
    let toml = format!(
        "{MINIMAL}[access]\ncedar = '''\n@id(\"a\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n'''\n"
    );
    refuse_one(&toml, 9, "two Cedar policies have the id \"a\"");
    refuse_one(
        &format!("{MINIMAL}[access]\ncedar_file = \"x\"\ncedar = \"\"\n"),
        7,
        "both `cedar_file` and `cedar`",
    );
}

#[test]
fn source_round_trips_and_hash_is_specified() {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("examples/policy.toml");
    let source = PolicySource::load(&path).unwrap();
    let bytes = source.to_bytes();
    assert!(bytes.starts_with(b"{\"format\":\"stele/policy-source/v1\",\"toml_name\":"));
    let back = PolicySource::from_bytes(&bytes).unwrap();
    assert_eq!(back, source);
    assert!(PolicySource::from_bytes(b"{\"format\":\"other\"}").is_err());
    assert!(PolicySource::from_bytes(b"not json").is_err());

    // The hash, recomputed from its documented definition.
    use sha2::{Digest, Sha256};
    let policy = Policy::from_source(&source).unwrap();
    let cedar = source.cedar.as_deref().unwrap();
    let mut hasher = Sha256::new();
    hasher.update(b"stele/policy/v1\n");
    hasher.update((source.toml.len() as u64).to_be_bytes());
    hasher.update(source.toml.as_bytes());
    hasher.update((cedar.len() as u64).to_be_bytes());
    hasher.update(cedar.as_bytes());
    let expected: [u8; 32] = hasher.finalize().into();
    assert_eq!(policy.hash(), expected);

    // Any change to either text changes the hash.
    let mut changed = source.clone();
    changed.cedar = Some(format!("{cedar}\n"));
    assert_ne!(Policy::from_source(&changed).unwrap().hash(), policy.hash());
    // A file name does not.
    let mut renamed = source.clone();
    renamed.toml_name = "elsewhere.toml".into();
    assert_eq!(Policy::from_source(&renamed).unwrap().hash(), policy.hash());
}

#[test]
fn side_file_missing_from_source_is_refused() {
    refuse_one(
        &format!("{MINIMAL}[access]\ncedar_file = \"a.cedar\"\n"),
        6,
        "side file was not read",
    );
}

#[test]
fn transport_keys_and_audit_helpers() {
    use std::net::SocketAddr;
    let required = parse(&format!(
        "{MINIMAL}[transport]\ntls = \"required\"\n[keys]\nmax_kek_age = \"10d\"\n"
    ))
    .unwrap();
    let public: SocketAddr = "0.0.0.0:8443".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let loopback6: SocketAddr = "[::1]:8080".parse().unwrap();
    assert!(required.transport().check_listener(public, true).is_ok());
    let refused = required
        .transport()
        .check_listener(public, false)
        .unwrap_err();
    assert!(
        refused.to_string().contains("tls = \"required\""),
        "{refused}"
    );
    assert!(required.transport().check_listener(loopback, false).is_ok());
    assert!(
        required
            .transport()
            .check_listener(loopback6, false)
            .is_ok()
    );
    let optional = parse(MINIMAL).unwrap();
    assert!(optional.transport().check_listener(public, false).is_ok());

    let keys = required.keys();
    assert!(!keys.kek_too_old(0, 10 * 86400));
    assert!(keys.kek_too_old(0, 10 * 86400 + 1));
    assert!(!optional.keys().kek_too_old(0, i64::MAX));

    let audit = optional.audit();
    assert!(audit.full_verify_overdue(None, 0));
    assert!(!audit.full_verify_overdue(Some(1000), 1000 + 48 * 3600));
    assert!(audit.full_verify_overdue(Some(1000), 1000 + 48 * 3600 + 1));
}
