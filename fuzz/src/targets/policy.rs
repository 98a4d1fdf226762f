//! `stele-policy`: the policy file (TOML with inline Cedar), as `policy
//! check`, `PUT /v1/policy` and `policy apply` read it.

use stele_policy::{Policy, PolicySource, RouteInput};

/// An accepted policy is deterministic (built again from its own source it
/// has the same hash), its source round-trips through the stored form, and
/// routing an event gives a stream name the event layer accepts.
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = PolicySource::from_toml("fuzz.toml", text);
    let Ok(policy) = Policy::from_source(&source) else {
        return;
    };
    let again = Policy::from_source(policy.source()).expect("a policy's own source builds");
    assert_eq!(again.hash(), policy.hash());
    assert_eq!(
        PolicySource::from_bytes(&source.to_bytes()).ok(),
        Some(source)
    );
    let attributes = serde_json::Map::new();
    for (channel, source, action) in [
        ("http", Some("app"), "login"),
        ("kubernetes", Some("kube-apiserver"), "delete"),
        ("cli", None, "append"),
    ] {
        let input = RouteInput {
            channel,
            source,
            writer: "alice",
            action,
            requested_stream: None,
            attributes: Some(&attributes),
        };
        let stream = policy
            .route(&input)
            .expect("routing without a requested stream succeeds");
        assert!(
            stele_event::check_stream_name(&stream).is_ok(),
            "the policy routes to a stream name events cannot carry: {stream:?}"
        );
    }
}
