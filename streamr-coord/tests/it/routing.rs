//! Viewer routing through the API: picks spread over nodes by spare capacity, a viewer can
//! exclude the nodes it failed on, and a node several viewers report failing (whose heartbeat is
//! not fresh) is not routed to until it sends a heartbeat again. Every scenario runs against
//! SQLite and against a real PostgreSQL server (STREAMR_TEST_POSTGRES_URL).

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::Coordinator;
use streamr_core::{KeyPair, NodeHeartbeat, Signed, StreamId};

on_both_backends!(
    concurrent_viewers_spread_over_nodes,
    viewers_spill_over_from_full_relaying_nodes,
    excluded_nodes_are_left_out_of_the_pick,
    a_node_reported_dead_returns_with_its_next_heartbeat,
    malformed_exclusions_are_rejected_with_json,
);

/// A coordinator with stream `show` and nodes relaying it, each with one viewer reported; the
/// nodes' heartbeats are `age_ms` old. Nodes announce 50 Mbit/s (20 viewers), but without
/// receipts routing trusts each with 8.
async fn setup(db: &TestDb, seeds: &[(u8, u64)]) -> (Client, Vec<KeyPair>) {
    setup_relaying(db, seeds, &["show"]).await
}

/// Like `setup`, with the nodes relaying `streams`.
async fn setup_relaying(
    db: &TestDb,
    seeds: &[(u8, u64)],
    streams: &[&str],
) -> (Client, Vec<KeyPair>) {
    let api = Client::new(Coordinator::new(test_config(), db.storage().await));
    let (status, body) = api
        .post_admin("/streams", &json!({ "id": "show", "title": "test" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut nodes = Vec::new();
    for &(seed, age_ms) in seeds {
        let node = KeyPair::from_seed([seed; 32]);
        let url = format!("http://10.0.{seed}.1:8080");
        let (status, body) = api.post("/nodes", &registration(&node, &url)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        send_heartbeat_relaying(&api, &node, 1, age_ms, streams).await;
        nodes.push(node);
    }
    (api, nodes)
}

/// A heartbeat of `node` signed `age_ms` ago, relaying `show` to one viewer.
async fn send_heartbeat(api: &Client, node: &KeyPair, nonce: u64, age_ms: u64) {
    send_heartbeat_relaying(api, node, nonce, age_ms, &["show"]).await;
}

/// A heartbeat of `node` signed `age_ms` ago, relaying `streams` to one viewer.
async fn send_heartbeat_relaying(
    api: &Client,
    node: &KeyPair,
    nonce: u64,
    age_ms: u64,
    streams: &[&str],
) {
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms() - age_ms,
            nonce,
            streams: streams
                .iter()
                .map(|s| StreamId::new(*s).expect("stream id"))
                .collect(),
            viewers: 1,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    );
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": heartbeat }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Asks for a node as a new viewer (`viewer` picks its key) excluding `exclude`.
async fn play(api: &Client, viewer: u32, exclude: &str) -> (StatusCode, Value) {
    let mut seed = [200u8; 32];
    seed[..4].copy_from_slice(&viewer.to_be_bytes());
    let key = KeyPair::from_seed(seed).viewer_key();
    // Each viewer asks from a network of its own.
    let [_, _, high, low] = viewer.to_be_bytes();
    let peer = std::net::IpAddr::from([10, high, low, 7]);
    api.get_from(&format!("/streams/show/play?viewer={key}{exclude}"), peer)
        .await
}

async fn play_node(api: &Client, viewer: u32, exclude: &str) -> String {
    let (status, body) = play(api, viewer, exclude).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["node_id"].as_str().expect("node id").to_owned()
}

async fn concurrent_viewers_spread_over_nodes(db: &TestDb) {
    let (api, nodes) = setup(db, &[(31, 0), (32, 0)]).await;
    let mut counts = [0u32; 2];
    for viewer in 0..30 {
        let node = play_node(&api, viewer, "").await;
        let index = nodes
            .iter()
            .position(|n| n.node_id().to_string() == node)
            .expect("one of the nodes");
        counts[index] += 1;
    }
    // Each node is trusted with 8 viewers until receipts prove more: neither can have taken
    // them all, and every grant counts as load at once, so neither is left idle.
    assert!(counts.iter().all(|c| (11..=19).contains(c)), "{counts:?}");
}

async fn viewers_spill_over_from_full_relaying_nodes(db: &TestDb) {
    let (api, relaying) = setup(db, &[(35, 0)]).await;
    let idle = KeyPair::from_seed([36; 32]);
    let (status, body) = api
        .post("/nodes", &registration(&idle, "http://10.0.36.1:8080"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    send_heartbeat_relaying(&api, &idle, 1, 0, &[]).await;
    let relaying = relaying[0].node_id().to_string();
    // The relaying node is preferred while it has room (the 8 viewers a node is trusted with
    // before receipts prove more)...
    for viewer in 0..8 {
        assert_eq!(play_node(&api, viewer, "").await, relaying);
    }
    // ...then new viewers go to the node that does not relay the stream yet.
    let idle = idle.node_id().to_string();
    for viewer in 8..16 {
        assert_eq!(play_node(&api, viewer, "").await, idle);
    }
}

async fn excluded_nodes_are_left_out_of_the_pick(db: &TestDb) {
    let (api, nodes) = setup(db, &[(41, 0), (42, 0), (43, 0)]).await;
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    for viewer in 0..10 {
        let exclude = format!("&exclude={}&exclude={}", ids[0], ids[1]);
        assert_eq!(play_node(&api, viewer, &exclude).await, ids[2]);
        let exclude = format!("&exclude={},{}", ids[2], ids[1]);
        assert_eq!(play_node(&api, 100 + viewer, &exclude).await, ids[0]);
    }
    let exclude = format!("&exclude={}&exclude={},{}", ids[0], ids[1], ids[2]);
    let (status, body) = play(&api, 1_000, &exclude).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "no_node_available");
}

async fn a_node_reported_dead_returns_with_its_next_heartbeat(db: &TestDb) {
    // The first node's last heartbeat is 10 s old (still within the liveness window).
    let (api, nodes) = setup(db, &[(51, 10_000), (52, 0), (53, 0)]).await;
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    let only_first = format!("&exclude={},{}", ids[1], ids[2]);
    let report_first = format!("&exclude={}", ids[0]);

    // Viewers never sent to the node cannot report it, however many.
    for viewer in 0..5 {
        assert_ne!(play_node(&api, viewer, &report_first).await, ids[0]);
    }
    // Two viewers it served reporting, one of them twice, are not enough either.
    for viewer in [10, 11] {
        assert_eq!(play_node(&api, viewer, &only_first).await, ids[0]);
    }
    for viewer in [10, 11, 10] {
        assert_ne!(play_node(&api, viewer, &report_first).await, ids[0]);
    }
    assert_eq!(
        play_node(&api, 20, &only_first).await,
        ids[0],
        "still routed to"
    );

    // A third viewer it served reports it: it is down for everyone.
    assert_eq!(play_node(&api, 12, &only_first).await, ids[0]);
    assert_ne!(play_node(&api, 12, &report_first).await, ids[0]);
    let (status, body) = play(&api, 21, &only_first).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "no_node_available");
    for viewer in 50..70 {
        assert_ne!(play_node(&api, viewer, "").await, ids[0], "viewer {viewer}");
    }

    // Its next heartbeat brings it back.
    send_heartbeat(&api, &nodes[0], 2, 0).await;
    assert_eq!(play_node(&api, 22, &only_first).await, ids[0]);
}

async fn malformed_exclusions_are_rejected_with_json(db: &TestDb) {
    let (api, nodes) = setup(db, &[(61, 0)]).await;
    for exclude in ["&exclude=not-a-node", "&exclude=abcd", "&exclude=,zz"] {
        let (status, body) = play(&api, 1, exclude).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{exclude}: {body}");
        assert_eq!(body["error"], "invalid_query", "{body}");
        assert!(body["message"]
            .as_str()
            .is_some_and(|m| m.contains("exclude")));
    }
    let many: String = (0..17)
        .map(|i| format!("&exclude={}", KeyPair::from_seed([i; 32]).node_id()))
        .collect();
    let (status, body) = play(&api, 1, &many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_query");
    // A well-formed id of a node the coordinator does not know is simply not routed to.
    let unknown = format!("&exclude={}", KeyPair::from_seed([99; 32]).node_id());
    assert_eq!(
        play_node(&api, 2, &unknown).await,
        nodes[0].node_id().to_string()
    );
}
