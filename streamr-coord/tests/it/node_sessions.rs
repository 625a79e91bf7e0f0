//! Node sessions: a signed handshake, then heartbeats authenticated by the session's MAC.
//! Every scenario runs against SQLite and PostgreSQL; each attack gets its own 4xx error.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::{SessionHeartbeatRequest, SignedNodeSessionAccept};
use streamr_coord::Coordinator;
use streamr_core::{
    CoordinatorKey, KeyPair, NodeHandshake, NodeHeartbeat, NodeSession, NodeSessionId, Signed,
};

on_both_backends!(
    a_session_opened_on_one_replica_authenticates_heartbeats_on_another_and_every_attack_is_refused,
    an_expired_session_is_refused_and_a_new_one_is_accepted,
);

async fn register(api: &Client, node: &KeyPair, i: usize) {
    let (status, body) = api
        .post(
            "/nodes",
            &registration(node, &format!("http://10.8.{i}.1:8080")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Opens a session for `node`; returns the answer's status and body, and the session when
/// the answer checks out against `coordinator`.
async fn open(
    api: &Client,
    node: &KeyPair,
    coordinator: &CoordinatorKey,
) -> (StatusCode, Value, Option<NodeSession>) {
    let (handshake, open) = NodeHandshake::generate(node, &mut rand::rngs::OsRng, now_ms());
    let (status, body) = api.post("/nodes/sessions", &open).await;
    let session = (status == StatusCode::CREATED).then(|| {
        let accept: SignedNodeSessionAccept =
            serde_json::from_value(body.clone()).expect("accept JSON");
        handshake
            .finish(&accept, coordinator)
            .expect("accept checks out")
    });
    (status, body, session)
}

fn beat(node: &KeyPair, nonce: u64) -> NodeHeartbeat {
    heartbeat(node, nonce, &["show"]).body
}

fn sealed(session: &NodeSession, heartbeat: NodeHeartbeat) -> Value {
    serde_json::to_value(SessionHeartbeatRequest::new(
        session.seal(heartbeat),
        Vec::new(),
    ))
    .expect("JSON")
}

async fn refused(api: &Client, body: &Value, status: StatusCode, code: &str) {
    let (got, answer) = api.post("/nodes/session-heartbeat", body).await;
    assert_eq!(got, status, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

async fn last_nonce(api: &Client, node: &KeyPair) -> Value {
    let (_, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    stored["last_nonce"].clone()
}

async fn a_session_opened_on_one_replica_authenticates_heartbeats_on_another_and_every_attack_is_refused(
    db: &TestDb,
) {
    // Replicas share the coordinator key (and the database).
    let config = test_config();
    let coordinator = Coordinator::new(config.clone(), db.storage().await);
    let key = coordinator.coordinator_key();
    let first = Client::new(coordinator);
    let second = Client::new(Coordinator::new(config, db.storage().await));
    let (a, b) = (KeyPair::from_seed([31; 32]), KeyPair::from_seed([32; 32]));
    register(&first, &a, 1).await;
    register(&first, &b, 2).await;

    let (status, body, session) = open(&first, &a, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = session.expect("session");
    // Accepted by the replica that did not open it (the session is in the database).
    let first_beat = sealed(&session, beat(&a, 1));
    let (status, body) = second.post("/nodes/session-heartbeat", &first_beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_nonce(&first, &a).await, json!(1));
    let (_, stored) = first.get(&format!("/nodes/{}", a.node_id())).await;
    assert_eq!(stored["status"], "online");

    // Replayed, on either replica.
    for api in [&first, &second] {
        refused(api, &first_beat, StatusCode::CONFLICT, "replayed_nonce").await;
    }
    // Altered after sealing.
    let mut altered = sealed(&session, beat(&a, 2));
    altered["heartbeat"]["bytes_served"] = json!(1_000_000);
    refused(&first, &altered, StatusCode::UNAUTHORIZED, "bad_mac").await;
    // A MAC made by another session of the same node, under this session's id.
    let (_, _, other) = open(&second, &a, &key).await;
    let other = other.expect("second session");
    let mut crossed = sealed(&other, beat(&a, 2));
    crossed["session_id"] = json!(session.id().to_string());
    refused(&first, &crossed, StatusCode::UNAUTHORIZED, "bad_mac").await;
    // Node A's session used for node B.
    let for_b = sealed(&session, beat(&b, 2));
    refused(&second, &for_b, StatusCode::FORBIDDEN, "wrong_session_node").await;
    assert_eq!(last_nonce(&first, &b).await, json!(-1));
    // A session id the coordinator never opened.
    let mut unknown = sealed(&session, beat(&a, 2));
    unknown["session_id"] = json!(NodeSessionId::from_bytes([9; 16]).to_string());
    refused(
        &second,
        &unknown,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;
    // A stale heartbeat under a good session.
    let mut stale = beat(&a, 2);
    stale.timestamp_ms -= 120_000;
    refused(
        &first,
        &sealed(&session, stale),
        StatusCode::UNAUTHORIZED,
        "clock_skew",
    )
    .await;

    // Forged opens: signed by another key in A's name, and one for a node never registered.
    let impostor = KeyPair::from_seed([33; 32]);
    let (_, mut forged) = NodeHandshake::generate(&impostor, &mut rand::rngs::OsRng, now_ms());
    forged.body.node_id = a.node_id();
    let (status, body) = first.post("/nodes/sessions", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature");
    let (status, body, _) = open(&first, &impostor, &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_node");
    // A stale open.
    let (_, stale_open) = NodeHandshake::generate(&a, &mut rand::rngs::OsRng, now_ms() - 120_000);
    let (status, body) = first.post("/nodes/sessions", &stale_open).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "clock_skew");

    // Both sessions keep working, in nonce order, and signed heartbeats stay accepted.
    let (status, body) = first
        .post("/nodes/session-heartbeat", &sealed(&other, beat(&a, 2)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = first
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&a, 3, &[]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = second
        .post("/nodes/session-heartbeat", &sealed(&session, beat(&a, 4)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_nonce(&second, &a).await, json!(4));
    let signed_replay = json!({ "heartbeat": Signed::sign(beat(&a, 4), &a) });
    let (status, body) = first.post("/nodes/heartbeat", &signed_replay).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn an_expired_session_is_refused_and_a_new_one_is_accepted(db: &TestDb) {
    let mut config = test_config();
    config.node_session_lifetime = Duration::ZERO;
    let short = Coordinator::new(config, db.storage().await);
    let short_key = short.coordinator_key();
    let short = Client::new(short);
    let node = KeyPair::from_seed([34; 32]);
    register(&short, &node, 4).await;
    let (status, body, session) = open(&short, &node, &short_key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expired = sealed(&session.expect("session"), beat(&node, 1));
    refused(
        &short,
        &expired,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    )
    .await;
    // Another replica reads the same expiry from the database.
    let normal = Coordinator::new(test_config(), db.storage().await);
    let key = normal.coordinator_key();
    let normal = Client::new(normal);
    refused(
        &normal,
        &expired,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    )
    .await;
    assert_eq!(last_nonce(&normal, &node).await, json!(-1));
    // The node opens a new session and the same heartbeat goes through: nothing lost.
    let (status, body, session) = open(&normal, &node, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = normal
        .post(
            "/nodes/session-heartbeat",
            &sealed(&session.expect("session"), beat(&node, 1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_nonce(&normal, &node).await, json!(1));
}
