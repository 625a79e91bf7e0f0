//! Replays the `node_http` fuzz corpus (fuzz/corpus/node_http/) through the node's HTTP app
//! ([`streamr_node::fuzzing`], shared with fuzz/fuzz_targets/node_http.rs): no request target
//! or query makes the node fail or answer a refusal without a JSON error. The committed seeds
//! (`seed_*`) also get the answers their names promise; `STREAMR_REGENERATE_SEEDS=1` rewrites
//! them.

use axum::http::{Method, StatusCode};
use streamr_coord::grant_token;
use streamr_core::{SessionGrant, SessionId, Signed, StreamId};
use streamr_node::fuzzing::{coordinator_key, node_key, HttpHarness};
use streamr_test_support::fuzz_corpus::{assert_seed_is_current, corpus_entries};

const TARGET: &str = "node_http";

/// A grant for stream `show` at the harness node, valid until 2100.
fn grant_token() -> String {
    let grant = Signed::sign(
        SessionGrant {
            session_id: SessionId::from_bytes([5; 16]),
            viewer: streamr_core::KeyPair::from_seed([1; 32]).viewer_key(),
            node_id: node_key().node_id(),
            stream_id: StreamId::new("show").unwrap(),
            max_bytes: 1 << 30,
            expiry_ms: 4_102_444_800_000,
        },
        &coordinator_key(),
    );
    grant_token::encode(&grant)
}

/// The committed seeds and the status each must get.
fn seeds() -> Vec<(&'static str, Vec<u8>, StatusCode)> {
    let token = grant_token();
    vec![
        (
            "seed_playlist_without_grant",
            b"/live/show.m3u8".to_vec(),
            StatusCode::FORBIDDEN,
        ),
        (
            "seed_playlist_granted_unknown_stream",
            format!("/live/show.m3u8?grant={token}").into_bytes(),
            StatusCode::NOT_FOUND,
        ),
        (
            "seed_index_alias_granted",
            format!("/live/show/index.m3u8?x=1&grant={token}").into_bytes(),
            StatusCode::NOT_FOUND,
        ),
        (
            "seed_segment_granted",
            format!("/live/show/12.ts?grant={token}").into_bytes(),
            StatusCode::NOT_FOUND,
        ),
        (
            "seed_flv_granted",
            format!("/live/show.flv?grant={token}").into_bytes(),
            StatusCode::NOT_FOUND,
        ),
        (
            "seed_grant_for_another_stream",
            format!("/live/other.flv?grant={token}").into_bytes(),
            StatusCode::FORBIDDEN,
        ),
        (
            "seed_grant_not_hex",
            b"/live/show.flv?grant=zz".to_vec(),
            StatusCode::FORBIDDEN,
        ),
        (
            "seed_unknown_route",
            b"/a/b/c/d?e=f".to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            "seed_receipts_empty",
            b"/receipts\n{\"receipts\":[]}".to_vec(),
            StatusCode::OK,
        ),
        (
            "seed_receipts_not_json",
            b"/receipts\n{\"receipts\":".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

#[test]
fn seeds_match_the_current_grant_format() {
    for (name, data, _) in seeds() {
        assert_seed_is_current(TARGET, name, &data);
    }
}

#[test]
fn committed_seeds_get_their_answers() {
    let harness = HttpHarness::new().unwrap();
    for (name, data, status) in seeds() {
        let answer = harness.run_input(&data).expect(name);
        assert_eq!(
            answer.status,
            status,
            "{name}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn the_whole_corpus_replays_without_a_server_error_or_a_bare_refusal() {
    let harness = HttpHarness::new().unwrap();
    let mut replayed = 0;
    for (_, data) in corpus_entries(TARGET) {
        // `run_input` panics (naming the answer) when a check fails.
        harness.run_input(&data);
        replayed += 1;
    }
    assert!(
        replayed >= seeds().len(),
        "corpus incomplete: {replayed} entries"
    );
}

#[test]
fn a_request_the_harness_cannot_express_is_skipped_not_sent() {
    let harness = HttpHarness::new().unwrap();
    assert!(harness
        .request(Method::GET, b"not a target", Vec::new())
        .is_none());
}

#[test]
fn a_target_that_is_not_utf8_after_decoding_gets_a_json_error() {
    // axum refused these with a plain-text 400 (seen while writing the node_http harness).
    let harness = HttpHarness::new().unwrap();
    for target in [
        &b"/%ff/show.m3u8"[..],
        b"/live/%C0%AF.flv",
        b"/live/show/%ff.ts",
    ] {
        let answer = harness
            .request_open(Method::GET, target, Vec::new())
            .unwrap();
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        streamr_node::fuzzing::check_answer(&answer);
    }
}
