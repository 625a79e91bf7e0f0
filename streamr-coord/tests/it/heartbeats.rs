//! Heartbeats that arrive together: signatures checked as a batch, nonces claimed per node,
//! and replicas sharing one database. Every scenario runs against SQLite and PostgreSQL.

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use streamr_coord::Coordinator;
use streamr_core::{ClaimTotals, KeyPair, Signed};

on_both_backends!(
    multi_thread;
    a_forged_heartbeat_among_many_is_the_only_one_refused,
    replays_are_refused_on_every_replica,
    a_node_registering_again_is_registered_until_its_next_heartbeat_and_keeps_its_nonce,
    a_signed_heartbeat_delivered_twice_counts_its_claim_once,
    a_claim_sent_again_under_a_new_nonce_counts_once_by_its_run_totals,
    a_restated_claim_racing_on_two_replicas_counts_once,
    claim_totals_beyond_what_a_heartbeat_may_claim_are_refused,
);

async fn register(api: &Client, nodes: &[KeyPair]) {
    for (i, node) in nodes.iter().enumerate() {
        let (status, body) = api
            .post(
                "/nodes",
                &registration(node, &format!("http://10.9.{i}.1:8080")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

async fn last_nonce(api: &Client, node: &KeyPair) -> serde_json::Value {
    let (status, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    stored["last_nonce"].clone()
}

async fn a_forged_heartbeat_among_many_is_the_only_one_refused(db: &TestDb) {
    let api = Arc::new(Client::new(Coordinator::new(
        test_config(),
        db.storage().await,
    )));
    let nodes: Vec<KeyPair> = (0..24u8)
        .map(|i| KeyPair::from_seed([100 + i; 32]))
        .collect();
    register(&api, &nodes).await;
    const FORGED: usize = 5;
    let mut sent = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut beat = heartbeat(node, 3, &["show"]);
        if i == FORGED {
            // Signed by the node, then altered: the signature no longer covers the body.
            beat.body.viewers = 999;
        }
        let api = api.clone();
        sent.spawn(async move {
            let answer = api
                .post("/nodes/heartbeat", &json!({ "heartbeat": beat }))
                .await;
            (i, answer)
        });
    }
    while let Some(done) = sent.join_next().await {
        let (i, (status, body)) = done.expect("request task");
        if i == FORGED {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(body["error"], "bad_signature");
        } else {
            assert_eq!(status, StatusCode::OK, "node {i}: {body}");
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let expected = if i == FORGED { json!(-1) } else { json!(3) };
        assert_eq!(last_nonce(&api, node).await, expected, "node {i}");
    }
    let (_, forged) = api
        .get(&format!("/nodes/{}", nodes[FORGED].node_id()))
        .await;
    assert_eq!(forged["status"], "registered", "nothing of it was stored");

    // The node's genuine heartbeat with the same nonce is still accepted afterwards.
    let (status, body) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&nodes[FORGED], 3, &["show"]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_nonce(&api, &nodes[FORGED]).await, json!(3));
}

async fn replays_are_refused_on_every_replica(db: &TestDb) {
    let first = Client::new(Coordinator::new(test_config(), db.storage().await));
    let second = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([77; 32]);
    register(&first, std::slice::from_ref(&node)).await;

    let beat = |nonce| json!({ "heartbeat": heartbeat(&node, nonce, &[]) });
    assert_eq!(
        first.post("/nodes/heartbeat", &beat(1)).await.0,
        StatusCode::OK
    );
    // The same nonce on the same replica, and on the replica that has not seen it.
    for api in [&first, &second] {
        let (status, body) = api.post("/nodes/heartbeat", &beat(1)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "replayed_nonce");
    }
    // A newer nonce through the second replica, then an older one through the first: the
    // database, not what the first replica saw, decides.
    assert_eq!(
        second.post("/nodes/heartbeat", &beat(5)).await.0,
        StatusCode::OK
    );
    let (status, body) = first.post("/nodes/heartbeat", &beat(3)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        first.post("/nodes/heartbeat", &beat(6)).await.0,
        StatusCode::OK
    );
    assert_eq!(last_nonce(&second, &node).await, json!(6));

    // Many heartbeats of one node at once: each nonce is stored at most once, and the newest
    // accepted one is the one kept.
    let first = Arc::new(first);
    let mut sent = tokio::task::JoinSet::new();
    for nonce in 7..=16u64 {
        let api = first.clone();
        let body = beat(nonce);
        sent.spawn(async move { (nonce, api.post("/nodes/heartbeat", &body).await.0) });
    }
    let mut accepted = Vec::new();
    while let Some(done) = sent.join_next().await {
        let (nonce, status) = done.expect("request task");
        match status {
            StatusCode::OK => accepted.push(nonce),
            StatusCode::CONFLICT => {}
            other => panic!("nonce {nonce}: unexpected {other}"),
        }
    }
    let newest = accepted
        .iter()
        .copied()
        .max()
        .expect("at least one accepted");
    assert_eq!(last_nonce(&first, &node).await, json!(newest));
}

async fn a_node_registering_again_is_registered_until_its_next_heartbeat_and_keeps_its_nonce(
    db: &TestDb,
) {
    let api = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([91; 32]);
    register(&api, std::slice::from_ref(&node)).await;
    let beat = |nonce| json!({ "heartbeat": heartbeat(&node, nonce, &["show"]) });
    assert_eq!(
        api.post("/nodes/heartbeat", &beat(4)).await.0,
        StatusCode::OK
    );
    let (_, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(stored["status"], "online", "{stored}");
    assert_eq!(stored["viewers"], 1, "{stored}");
    assert_eq!(stored["streams_json"], r#"["show"]"#, "{stored}");

    let (status, again) = api
        .post("/nodes", &registration(&node, "http://10.9.0.1:8080"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "registered", "{again}");
    assert_eq!(again["last_nonce"], 4, "{again}");

    // A coordinator started afresh on the same database (a restart, or another replica)
    // still refuses the nonces before the re-registration.
    let restarted = Client::new(Coordinator::new(test_config(), db.storage().await));
    let (status, body) = restarted.post("/nodes/heartbeat", &beat(4)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        restarted.post("/nodes/heartbeat", &beat(5)).await.0,
        StatusCode::OK
    );
    let (_, stored) = restarted.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(stored["status"], "online", "{stored}");
    assert_eq!(stored["last_nonce"], 5, "{stored}");
}

/// What the node's signed heartbeats claimed, summed over the stored epochs' activity.
async fn claimed(db: &TestDb, node: &KeyPair) -> (i64, i64) {
    let storage = db.storage().await;
    let epoch = test_config().epoch_of(i64::try_from(now_ms()).expect("time"));
    let mut claimed = (0, 0);
    for epoch in epoch - 2..=epoch + 1 {
        for row in storage.activity_for_epoch(epoch).await.expect("activity") {
            if row.node_id == node.node_id().to_string() {
                claimed.0 += row.claimed_bytes;
                claimed.1 += row.unattested_bytes;
            }
        }
    }
    claimed
}

/// A signed heartbeat whose answer a node never got may reach the coordinator again,
/// unchanged (the node sends it again before anything else): the replay is refused and its
/// claim stays counted once, while the node's next heartbeat still counts.
async fn a_signed_heartbeat_delivered_twice_counts_its_claim_once(db: &TestDb) {
    let api = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([78; 32]);
    register(&api, std::slice::from_ref(&node)).await;
    let nonce = now_ms();
    let first = json!({ "heartbeat": claims_heartbeat(&node, nonce, 1_000, 300) });
    let (status, body) = api.post("/nodes/heartbeat", &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post("/nodes/heartbeat", &first).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "replayed_nonce");
    assert_eq!(claimed(db, &node).await, (1_000, 300));
    let next = json!({ "heartbeat": claims_heartbeat(&node, nonce + 1, 500, 0) });
    let (status, body) = api.post("/nodes/heartbeat", &next).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claimed(db, &node).await, (1_500, 300));
}

/// Sends a heartbeat the coordinator must accept.
async fn sent(api: &Client, beat: serde_json::Value) {
    let (status, body) = api.post("/nodes/heartbeat", &beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A signed heartbeat claiming `attested` and `unattested` bytes since the previous one, with
/// the run totals `totals` (`run`, attested, unattested).
fn run_heartbeat(
    node: &KeyPair,
    nonce: u64,
    (attested, unattested): (u64, u64),
    (run, bytes_served, unattested_bytes): (u64, u64, u64),
) -> serde_json::Value {
    let mut body = claims_heartbeat(node, nonce, attested, unattested).body;
    body.claim_totals = Some(ClaimTotals {
        run,
        bytes_served,
        unattested_bytes,
    });
    json!({ "heartbeat": Signed::sign(body, node) })
}

/// A node whose answer was lost puts its claim back and claims it again under a new nonce
/// (as nodes did before they re-sent the heartbeat unchanged): the run totals it carries
/// restate what was counted, so the claim counts once, on whichever replica it lands, while
/// the bytes beyond it, and a later run's, still count.
async fn a_claim_sent_again_under_a_new_nonce_counts_once_by_its_run_totals(db: &TestDb) {
    let first = Client::new(Coordinator::new(test_config(), db.storage().await));
    let second = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([79; 32]);
    register(&first, std::slice::from_ref(&node)).await;
    let run = now_ms();
    sent(
        &first,
        run_heartbeat(&node, run, (1_000, 300), (run, 1_000, 300)),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_000, 300));
    // The answer was lost: the claim comes again with the next interval's 500 bytes.
    sent(
        &second,
        run_heartbeat(&node, run + 1, (1_500, 300), (run, 1_500, 300)),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_500, 300));
    // Lost again, with nothing new served: the restated claim adds nothing.
    sent(
        &first,
        run_heartbeat(&node, run + 2, (500, 0), (run, 1_500, 300)),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_500, 300));
    // The node restarts: its new run counts from zero.
    let restart = run + 10;
    sent(
        &second,
        run_heartbeat(&node, restart, (200, 7), (restart, 200, 7)),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_700, 307));
    // Totals of the replaced run, however large, count nothing.
    sent(
        &first,
        run_heartbeat(&node, run + 11, (9_000, 0), (run, 9_000, 300)),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_700, 307));
    // A node without run totals has its claim counted as sent.
    sent(
        &second,
        json!({ "heartbeat": claims_heartbeat(&node, run + 12, 50, 0) }),
    )
    .await;
    assert_eq!(claimed(db, &node).await, (1_750, 307));
}

/// The same restated claim reaching two replicas at once under two new nonces (a node
/// retrying through a load balancer): whichever commits first counts the growth, the other
/// adds nothing or is refused as a replay, so the claim counts once either way.
async fn a_restated_claim_racing_on_two_replicas_counts_once(db: &TestDb) {
    let first = Client::new(Coordinator::new(test_config(), db.storage().await));
    let second = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([80; 32]);
    register(&first, std::slice::from_ref(&node)).await;
    let run = now_ms();
    sent(
        &first,
        run_heartbeat(&node, run, (1_000, 0), (run, 1_000, 0)),
    )
    .await;
    for round in 0..4u64 {
        let nonce = run + 1 + 2 * round;
        let totals = (run, 1_500 + 100 * round, 0);
        let one = run_heartbeat(&node, nonce, (600, 0), totals);
        let other = run_heartbeat(&node, nonce + 1, (600, 0), totals);
        let ((a, a_body), (b, b_body)) = tokio::join!(
            first.post("/nodes/heartbeat", &one),
            second.post("/nodes/heartbeat", &other),
        );
        for (status, body) in [(a, &a_body), (b, &b_body)] {
            assert!(
                status == StatusCode::OK
                    || (status == StatusCode::CONFLICT && body["error"] == "replayed_nonce"),
                "{status}: {body}"
            );
        }
        assert!(
            a == StatusCode::OK || b == StatusCode::OK,
            "{a_body} {b_body}"
        );
        assert_eq!(
            claimed(db, &node).await,
            (i64::try_from(totals.1).expect("bytes"), 0)
        );
    }
}

/// Run totals are bounded as a heartbeat's claims are (1 PiB), and a run is named by a nonce
/// not above the heartbeat's: beyond, the heartbeat is refused with the field named, and
/// nothing of it is counted.
async fn claim_totals_beyond_what_a_heartbeat_may_claim_are_refused(db: &TestDb) {
    let api = Client::new(Coordinator::new(test_config(), db.storage().await));
    let node = KeyPair::from_seed([81; 32]);
    register(&api, std::slice::from_ref(&node)).await;
    let run = now_ms();
    let beat = run_heartbeat(&node, run, (10, 0), (run, (1 << 50) + 1, 0));
    let (status, body) = api.post("/nodes/heartbeat", &beat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_field", "{body}");
    assert!(
        body.to_string().contains("claim_totals.bytes_served"),
        "{body}"
    );
    // A run named above the heartbeat's own nonce is no run of the node's.
    let beat = run_heartbeat(&node, run, (10, 0), (run + 1, 10, 0));
    let (status, body) = api.post("/nodes/heartbeat", &beat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("claim_totals.run"), "{body}");
    assert_eq!(claimed(db, &node).await, (0, 0));
    assert_eq!(last_nonce(&api, &node).await, json!(-1));
}
