//! Replays the `coord_json` fuzz corpus (fuzz/corpus/coord_json/) through the coordinator's
//! API ([`streamr_coord::fuzzing`], shared with fuzz/fuzz_targets/coord_json.rs): no JSON
//! body makes the coordinator fail or refuse without a JSON error. The committed seeds
//! (`seed_*`) also get the answers their names promise; `STREAMR_REGENERATE_SEEDS=1` rewrites
//! them.

use axum::http::StatusCode;
use streamr_coord::fuzzing::{JsonHarness, JSON_ENDPOINTS};
use streamr_test_support::fuzz_corpus::{assert_seed_is_current, corpus_entries};

const TARGET: &str = "coord_json";

/// `selector ‖ body` for the endpoint `path`.
fn input(path: &str, body: &str) -> Vec<u8> {
    let selector = JSON_ENDPOINTS.iter().position(|p| *p == path).unwrap();
    let mut data = vec![u8::try_from(selector).unwrap()];
    data.extend_from_slice(body.as_bytes());
    data
}

/// The committed seeds and the status each must get.
fn seeds() -> Vec<(&'static str, Vec<u8>, StatusCode)> {
    vec![
        (
            "seed_create_stream",
            input("/streams", r#"{"id":"talk","title":"Talk"}"#),
            StatusCode::CREATED,
        ),
        (
            "seed_create_stream_bad_id",
            input("/streams", r#"{"id":"../x","title":""}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_register_unsigned",
            input(
                "/nodes",
                r#"{"body":{"node_id":"00","payout_address":"w","operator":"o","rtmp_url":"rtmp://h/live","http_url":"http://h","capacity_kbps":1,"timestamp_ms":1},"signature":"00"}"#,
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_heartbeat_empty",
            input("/nodes/heartbeat", "{}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_receipts_empty",
            input("/receipts", r#"{"receipts":[]}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_simulate",
            input("/simulate", r#"{"pool":1000000,"nodes":[]}"#),
            StatusCode::OK,
        ),
        (
            "seed_probe_not_json",
            input("/probes", "{"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_end_stream",
            input("/streams/show/end", ""),
            StatusCode::OK,
        ),
        (
            "seed_segment_empty",
            input("/streams/show/segments", "{}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "seed_parts_empty",
            input("/streams/show/parts", "{}"),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

#[test]
fn seeds_are_committed() {
    for (name, data, _) in seeds() {
        assert_seed_is_current(TARGET, name, &data);
    }
}

#[test]
fn committed_seeds_get_their_answers() {
    for (name, data, status) in seeds() {
        // A fresh coordinator per seed: seeds do not depend on each other.
        let harness = JsonHarness::new().unwrap();
        let answer = harness.run_input(&data).expect(name);
        assert_eq!(
            answer.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn the_whole_corpus_replays_without_a_server_error_or_a_bare_refusal() {
    let harness = JsonHarness::new().unwrap();
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
