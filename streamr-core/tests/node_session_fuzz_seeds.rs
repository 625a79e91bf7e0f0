//! Runs the checks of the `node_session` fuzz target (fuzz/fuzz_targets/node_session.rs) over
//! its committed seed corpus (fuzz/corpus/node_session/) and over mutated seeds: parsing a
//! session open, accept or MAC heartbeat never panics, and whatever parses serialises back to
//! the same message.

mod support;

use proptest::prelude::*;
use streamr_core::{
    accept_open, KeyPair, KnownSession, MacHeartbeat, NodeHandshake, NodeHeartbeat,
    NodeSessionAccept, NodeSessionId, NodeSessionOpen, SessionKey, Signed, StreamId,
};
use streamr_test_support::fuzz_corpus::{assert_seed_is_current, corpus_entries};
use support::round_trips;

const TARGET: &str = "node_session";

/// The fuzz target's entry point: which of the three message kinds `data` parses as.
fn run_entry_point(data: &[u8]) -> [bool; 3] {
    let coordinator = KeyPair::from_seed([7; 32]);
    let mut parsed = [false; 3];
    if let Ok(open) = serde_json::from_slice::<Signed<NodeSessionOpen>>(data) {
        round_trips(&open);
        let _ = accept_open(
            &open,
            open.body.timestamp_ms,
            0,
            NodeSessionId::from_bytes([1; 16]),
            [2; 32],
            u64::MAX,
            &coordinator,
        );
        parsed[0] = true;
    }
    if let Ok(accept) = serde_json::from_slice::<Signed<NodeSessionAccept>>(data) {
        round_trips(&accept);
        let (handshake, _) = NodeHandshake::start(&KeyPair::from_seed([3; 32]), [4; 32], 0);
        let _ = handshake.finish(&accept, &coordinator.coordinator_key());
        parsed[1] = true;
    }
    if let Ok(sealed) = serde_json::from_slice::<MacHeartbeat>(data) {
        let back: MacHeartbeat =
            serde_json::from_slice(&serde_json::to_vec(&sealed).unwrap()).unwrap();
        assert_eq!(back, sealed);
        let session = KnownSession {
            node_id: sealed.heartbeat.node_id,
            key: SessionKey::from_bytes([5; 32]),
            expires_at_ms: u64::MAX,
        };
        let _ = sealed.verify(&session, 0);
        parsed[2] = true;
    }
    parsed
}

/// The seeds: a real handshake and a heartbeat sealed under its session.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (node, coordinator) = (KeyPair::from_seed([3; 32]), KeyPair::from_seed([7; 32]));
    let now = 1_800_000_000_000;
    let (handshake, open) = NodeHandshake::start(&node, [8; 32], now);
    let (accept, _) = accept_open(
        &open,
        now,
        30_000,
        NodeSessionId::from_bytes([9; 16]),
        [10; 32],
        now + 3_600_000,
        &coordinator,
    )
    .unwrap();
    let session = handshake
        .finish(&accept, &coordinator.coordinator_key())
        .unwrap();
    let sealed = session.seal(NodeHeartbeat {
        node_id: node.node_id(),
        timestamp_ms: now,
        nonce: 17,
        streams: vec![StreamId::new("live").unwrap()],
        viewers: 12,
        bytes_served: 9_000_000,
        unattested_bytes: 2_500_000,
        upstreams: Vec::new(),
        claim_totals: None,
    });
    vec![
        ("seed_open", serde_json::to_vec(&open).unwrap()),
        ("seed_accept", serde_json::to_vec(&accept).unwrap()),
        ("seed_mac_heartbeat", serde_json::to_vec(&sealed).unwrap()),
    ]
}

/// The seeds are exactly what the current wire format produces, and each parses as its kind
/// only; `STREAMR_REGENERATE_SEEDS=1` rewrites them.
#[test]
fn seeds_match_the_current_wire_format_and_parse_as_their_kind() {
    for (i, (name, json)) in seeds().into_iter().enumerate() {
        assert_seed_is_current(TARGET, name, &json);
        let mut expected = [false; 3];
        expected[i] = true;
        assert_eq!(run_entry_point(&json), expected, "{name}");
    }
    // Entries a local fuzzing run added go through the entry point too.
    for (_, data) in corpus_entries(TARGET) {
        run_entry_point(&data);
    }
}

proptest! {
    #[test]
    fn mutated_seeds_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut data = seeds().swap_remove(which).1;
        for (at, byte) in edits {
            let len = data.len();
            data[at % len] = byte;
        }
        run_entry_point(&data);
    }
}
