//! Session heartbeats carry running totals, kept in memory and written in periodic batches:
//! a coordinator killed before its batch loses nothing a node reported (the next heartbeat
//! restates it), nothing is counted twice (not across a restart, not by two replicas), a
//! replayed or decreasing heartbeat is refused, and the epoch's activity equals what signed
//! heartbeats (deltas, written one by one) give.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::Value;
use streamr_coord::wire::{SessionHeartbeatRequest, SignedNodeSessionAccept};
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{CoordinatorKey, KeyPair, NodeHandshake, NodeHeartbeat, NodeSession, Signed};

on_both_backends!(
    a_killed_coordinator_loses_nothing_and_counts_nothing_twice,
    a_heartbeat_replayed_to_another_replica_is_refused_once_written,
    running_totals_count_what_signed_deltas_count,
    a_claim_beyond_what_a_heartbeat_may_carry_is_refused_and_spoils_no_other_nodes_batch,
);

/// One-hour epochs (a test never straddles two) and no periodic write: the tests write.
fn manual_config() -> CoordConfig {
    let mut config = test_config();
    config.epoch_length = Duration::from_secs(3600);
    config.heartbeat_totals_interval = Duration::from_secs(3600);
    config
}

async fn register(api: &Client, node: &KeyPair, i: usize) {
    let (status, body) = api
        .post(
            "/nodes",
            &registration(node, &format!("http://10.9.{i}.1:8080")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn open(api: &Client, node: &KeyPair, coordinator: &CoordinatorKey) -> NodeSession {
    let (handshake, open) = NodeHandshake::generate(node, &mut rand::rngs::OsRng, now_ms());
    let (status, body) = api.post("/nodes/sessions", &open).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let accept: SignedNodeSessionAccept = serde_json::from_value(body).expect("accept JSON");
    handshake
        .finish(&accept, coordinator)
        .expect("accept checks out")
}

fn beat(node: &KeyPair, nonce: u64, bytes: u64, unattested: u64) -> NodeHeartbeat {
    NodeHeartbeat {
        bytes_served: bytes,
        unattested_bytes: unattested,
        ..heartbeat(node, nonce, &["show"]).body
    }
}

fn sealed(session: &NodeSession, heartbeat: NodeHeartbeat) -> Value {
    serde_json::to_value(SessionHeartbeatRequest::new(
        session.seal(heartbeat),
        Vec::new(),
    ))
    .expect("JSON")
}

async fn send(api: &Client, body: &Value) -> (StatusCode, Value) {
    api.post("/nodes/session-heartbeat", body).await
}

async fn accepted(api: &Client, body: &Value) {
    let (status, answer) = send(api, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn refused(api: &Client, body: &Value, status: StatusCode, code: &str) {
    let (got, answer) = send(api, body).await;
    assert_eq!(got, status, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
}

async fn write(api: &Client) {
    api.coordinator
        .write_heartbeat_totals()
        .await
        .expect("totals written");
}

/// The node's (heartbeats, claimed bytes, unattested bytes) in the current epoch.
async fn activity(db: &TestDb, config: &CoordConfig, node: &KeyPair) -> (i64, i64, i64) {
    let epoch = config.epoch_of(i64::try_from(now_ms()).expect("time"));
    let id = node.node_id().to_string();
    db.storage()
        .await
        .activity_for_epoch(epoch)
        .await
        .expect("activity")
        .into_iter()
        .find(|row| row.node_id == id)
        .map_or((0, 0, 0), |row| {
            (row.heartbeats, row.claimed_bytes, row.unattested_bytes)
        })
}

async fn node_state(api: &Client, node: &KeyPair) -> Value {
    let (status, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    stored
}

async fn a_killed_coordinator_loses_nothing_and_counts_nothing_twice(db: &TestDb) {
    let config = manual_config();
    let first = Coordinator::new(config.clone(), db.storage().await);
    let key = first.coordinator_key();
    let first = Client::new(first);
    let node = KeyPair::from_seed([61; 32]);
    register(&first, &node, 1).await;
    let session = open(&first, &node, &key).await;

    accepted(&first, &sealed(&session, beat(&node, 1, 100, 10))).await;
    accepted(&first, &sealed(&session, beat(&node, 2, 250, 20))).await;
    // Nothing is stored before the batch; the batch stores the newest totals once.
    assert_eq!(activity(db, &config, &node).await, (0, 0, 0));
    write(&first).await;
    assert_eq!(activity(db, &config, &node).await, (2, 250, 20));
    write(&first).await;
    assert_eq!(activity(db, &config, &node).await, (2, 250, 20));
    let stored = node_state(&first, &node).await;
    assert_eq!(
        (&stored["status"], &stored["last_nonce"]),
        (&"online".into(), &2.into())
    );

    // Two more heartbeats, then the process dies before its next batch.
    accepted(&first, &sealed(&session, beat(&node, 3, 400, 30))).await;
    accepted(&first, &sealed(&session, beat(&node, 4, 480, 35))).await;
    drop(first);
    assert_eq!(activity(db, &config, &node).await, (2, 250, 20));

    // A new coordinator on the same database: the stored totals are the session's floor.
    let second = Client::new(Coordinator::new(config.clone(), db.storage().await));
    refused(
        &second,
        &sealed(&session, beat(&node, 2, 250, 20)),
        StatusCode::CONFLICT,
        "replayed_nonce",
    )
    .await;
    refused(
        &second,
        &sealed(&session, beat(&node, 5, 240, 40)),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    // The node's next heartbeat restates everything the lost batch held, and more.
    accepted(&second, &sealed(&session, beat(&node, 5, 500, 40))).await;
    write(&second).await;
    assert_eq!(activity(db, &config, &node).await, (3, 500, 40));
    // A decrease after the restart is refused too, and changes nothing.
    refused(
        &second,
        &sealed(&session, beat(&node, 6, 499, 40)),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    write(&second).await;
    assert_eq!(activity(db, &config, &node).await, (3, 500, 40));
    assert_eq!(node_state(&second, &node).await["last_nonce"], 5);

    // A new session starts from zero: its totals are counted on top, not instead.
    let renewed = open(&second, &node, &key).await;
    accepted(&second, &sealed(&renewed, beat(&node, 7, 60, 0))).await;
    write(&second).await;
    assert_eq!(activity(db, &config, &node).await, (4, 560, 40));
    // And the old session cannot replay its way back in.
    refused(
        &second,
        &sealed(&session, beat(&node, 5, 500, 40)),
        StatusCode::CONFLICT,
        "replayed_nonce",
    )
    .await;
}

async fn a_heartbeat_replayed_to_another_replica_is_refused_once_written(db: &TestDb) {
    // Replicas writing every 100 ms: a replica trusts its state of a session for as long.
    let mut config = manual_config();
    config.heartbeat_totals_interval = Duration::from_millis(100);
    let a = Coordinator::new(config.clone(), db.storage().await);
    let key = a.coordinator_key();
    let a = Client::new(a);
    let b = Client::new(Coordinator::new(config.clone(), db.storage().await));
    let node = KeyPair::from_seed([62; 32]);
    register(&a, &node, 2).await;
    let session = open(&a, &node, &key).await;

    // The node's heartbeats alternate between the replicas (a round-robin balancer).
    let mut bodies = Vec::new();
    for nonce in 1..=12u64 {
        let body = sealed(&session, beat(&node, nonce, nonce * 1_000, nonce * 10));
        accepted(if nonce % 2 == 1 { &a } else { &b }, &body).await;
        bodies.push(body);
    }
    // Both replicas' batches are in (each writes every 100 ms; state older than that is
    // read again).
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Each heartbeat, replayed to the replica that took it and to the other: refused.
    for body in &bodies {
        for replica in [&a, &b] {
            refused(replica, body, StatusCode::CONFLICT, "replayed_nonce").await;
        }
    }
    // Both replicas wrote rows of the same session; the bytes were counted once.
    assert_eq!(activity(db, &config, &node).await.1, 12_000);
    assert_eq!(activity(db, &config, &node).await.2, 120);
    // The newest heartbeat's liveness is the node's, whichever replica wrote it.
    let stored = node_state(&b, &node).await;
    assert_eq!(stored["last_nonce"], 12);
    assert_eq!(stored["status"], "online");
}

async fn running_totals_count_what_signed_deltas_count(db: &TestDb) {
    let config = manual_config();
    let coordinator = Coordinator::new(config.clone(), db.storage().await);
    let key = coordinator.coordinator_key();
    let api = Client::new(coordinator);
    let (signed, totals) = (KeyPair::from_seed([63; 32]), KeyPair::from_seed([64; 32]));
    register(&api, &signed, 3).await;
    register(&api, &totals, 4).await;
    let session = open(&api, &totals, &key).await;
    let deltas: [(u64, u64); 6] = [(500, 0), (0, 0), (1_200, 300), (7, 1), (0, 90), (64, 64)];
    let (mut bytes, mut unattested) = (0, 0);
    for (nonce, (delta, delta_unattested)) in (1u64..).zip(deltas) {
        let body = serde_json::json!({
            "heartbeat": Signed::sign(beat(&signed, nonce, delta, delta_unattested), &signed)
        });
        let (status, answer) = api.post("/nodes/heartbeat", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        bytes += delta;
        unattested += delta_unattested;
        accepted(
            &api,
            &sealed(&session, beat(&totals, nonce, bytes, unattested)),
        )
        .await;
        // Batches at any point between heartbeats change nothing.
        if nonce % 2 == 0 {
            write(&api).await;
        }
    }
    write(&api).await;
    let by_deltas = activity(db, &config, &signed).await;
    assert_eq!(by_deltas, (6, 1_771, 455));
    assert_eq!(activity(db, &config, &totals).await, by_deltas);
}

/// A node claiming byte counts near `i64::MAX` (two sessions' totals would overflow the epoch's
/// sum and fail the whole batch) is refused with a JSON 400 on both heartbeat paths, and the
/// batch carrying its largest allowed claims and another node's heartbeat is written whole.
async fn a_claim_beyond_what_a_heartbeat_may_carry_is_refused_and_spoils_no_other_nodes_batch(
    db: &TestDb,
) {
    const CEILING: u64 = 1 << 50;
    let config = manual_config();
    let coordinator = Coordinator::new(config.clone(), db.storage().await);
    let key = coordinator.coordinator_key();
    let api = Client::new(coordinator);
    let greedy = KeyPair::from_seed([71; 32]);
    let honest = KeyPair::from_seed([72; 32]);
    register(&api, &greedy, 1).await;
    register(&api, &honest, 2).await;
    let first = open(&api, &greedy, &key).await;
    let second = open(&api, &greedy, &key).await;
    let other = open(&api, &honest, &key).await;

    for (bytes, unattested) in [(i64::MAX as u64, 0), (u64::MAX, 0), (0, CEILING + 1)] {
        refused(
            &api,
            &sealed(&first, beat(&greedy, 1, bytes, unattested)),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        )
        .await;
    }
    let (status, answer) = api
        .post(
            "/nodes/heartbeat",
            &serde_json::json!({ "heartbeat": Signed::sign(beat(&greedy, 1, i64::MAX as u64, 0), &greedy) }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_field", "{answer}");

    // The ceiling itself, from two sessions of one node, beside an honest node's heartbeat.
    accepted(&api, &sealed(&first, beat(&greedy, 2, CEILING, CEILING))).await;
    accepted(&api, &sealed(&second, beat(&greedy, 3, CEILING, CEILING))).await;
    accepted(&api, &sealed(&other, beat(&honest, 1, 500, 5))).await;
    write(&api).await;
    let both = i64::try_from(2 * CEILING).expect("fits");
    assert_eq!(activity(db, &config, &greedy).await, (2, both, both));
    assert_eq!(activity(db, &config, &honest).await, (1, 500, 5));
}
