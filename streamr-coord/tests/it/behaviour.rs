//! The coordinator's behaviour suite. Every scenario runs against SQLite and against a real
//! PostgreSQL server (STREAMR_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432).

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::NodeDeregistration;
use streamr_coord::{CoordConfig, Coordinator, RateLimit};
use streamr_core::{
    segment_hash, BalanceLeaf, CoordinatorKey, EpochInputs, KeyPair, MerkleProof, OriginClaim,
    OriginSegmentReport, ProbeResult, SessionId, Signed, SignedGrant, StreamId, ViewerReceipt,
};

on_both_backends!(
    streams_register_check_keys_and_end,
    nodes_register_heartbeat_and_reject_replays,
    bad_input_is_rejected_with_json_and_stores_nothing,
    viewers_are_routed_receipts_settle_and_pay_once,
    unattested_bytes_earn_at_a_discount_within_probe_capacity,
    rate_limit_refuses_bursts_per_ip,
    operations_endpoints_answer,
    only_the_origin_node_signs_segment_reports,
);

async fn client(db: &TestDb, config: CoordConfig) -> Client {
    Client::new(Coordinator::new(config, db.storage().await))
}

async fn streams_register_check_keys_and_end(db: &TestDb) {
    let api = client(db, test_config()).await;
    let (status, body) = api.post("/streams", &json!({ "id": "live1" })).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "creating needs the admin token"
    );
    assert_eq!(body["error"], "unauthorized");

    let key = create_stream(&api, "live1").await;
    let (status, _) = api.post_admin("/streams", &json!({ "id": "live1" })).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, list) = api.get("/streams").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        list[0].get("stream_key_hash").is_none(),
        "key hash is never served"
    );

    let (status, _) = api
        .post(
            "/streams/live1/publish-check",
            &json!({ "stream_key": key }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .post(
            "/streams/live1/publish-check",
            &json!({ "stream_key": "wrong" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "stream_key_rejected");

    let (status, ended) = api
        .raw("POST", "/streams/live1/end", Vec::new(), true)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ended["status"], "ended");
    let (status, _) = api
        .post(
            "/streams/live1/publish-check",
            &json!({ "stream_key": key }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an ended stream takes no publisher"
    );
    let (status, body) = api.get("/streams/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

fn origin_report(node: &KeyPair, stream: &str, sequence: u64) -> Signed<OriginSegmentReport> {
    Signed::sign(
        OriginSegmentReport {
            node_id: node.node_id(),
            stream_id: StreamId::new(stream).expect("stream id"),
            sequence,
            hash: segment_hash(format!("{stream} segment {sequence}").as_bytes()),
            published_ms: now_ms(),
            timestamp_ms: now_ms(),
            ll: None,
            run: None,
        },
        node,
    )
}

fn origin_claim(node: &KeyPair, stream: &str) -> Signed<OriginClaim> {
    Signed::sign(
        OriginClaim {
            node_id: node.node_id(),
            stream_id: StreamId::new(stream).expect("stream id"),
            timestamp_ms: now_ms(),
        },
        node,
    )
}

async fn stored_sequences(api: &Client, stream: &str) -> Vec<i64> {
    let (status, segments) = api.get(&format!("/streams/{stream}/segments")).await;
    assert_eq!(status, StatusCode::OK, "{segments}");
    let mut sequences: Vec<i64> = segments
        .as_array()
        .expect("segment list")
        .iter()
        .map(|segment| segment["sequence"].as_i64().expect("sequence"))
        .collect();
    sequences.sort_unstable();
    sequences
}

/// Segment reports are accepted from the stream's origin node (set at creation or bound by
/// its signed publish check) and from the admin token; other signers, forged signatures and
/// reports replayed to another stream are refused and store nothing.
async fn only_the_origin_node_signs_segment_reports(db: &TestDb) {
    let api = client(db, test_config()).await;
    let origin = KeyPair::from_seed([41; 32]);
    let other = KeyPair::from_seed([42; 32]);
    for (node, port) in [(&origin, 9401), (&other, 9402)] {
        let (status, body) = api
            .post(
                "/nodes",
                &registration(node, &format!("http://127.0.0.1:{port}")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // An origin named at creation.
    let (status, created) = api
        .post_admin(
            "/streams",
            &json!({ "id": "show", "origin_node": origin.node_id().to_string() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["stream"]["origin_node"],
        origin.node_id().to_string()
    );

    let report = origin_report(&origin, "show", 0);
    let (status, body) = api.post("/streams/show/segments", &report).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["segment"]["hash"], report.body.hash.to_string());
    let (status, body) = api.post("/streams/show/segments", &report).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same report again is idempotent"
    );
    assert_eq!(body["created"], false);

    // Another registered node, correctly signing its own report, is not the origin.
    let (status, body) = api
        .post("/streams/show/segments", &origin_report(&other, "show", 1))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_origin");
    assert_eq!(stored_sequences(&api, "show").await, vec![0]);

    // The origin's node id with another key's signature, and a tampered hash.
    let mut forged = origin_report(&other, "show", 1);
    forged.body.node_id = origin.node_id();
    let (status, body) = api.post("/streams/show/segments", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature");
    let mut tampered = origin_report(&origin, "show", 1);
    tampered.body.hash = segment_hash(b"substituted content");
    let (status, body) = api.post("/streams/show/segments", &tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(stored_sequences(&api, "show").await, vec![0]);

    // A second stream without an origin: a signed report is refused until a publish check
    // signed by a node binds it; the unsigned check still only answers about the key.
    let key = create_stream(&api, "encore").await;
    let (status, body) = api
        .post(
            "/streams/encore/segments",
            &origin_report(&origin, "encore", 0),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_origin");
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin_node"], Value::Null);
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": "wrong", "origin": origin_claim(&other, "encore") }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["error"], "stream_key_rejected",
        "a wrong key binds nothing"
    );
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key, "origin": origin_claim(&origin, "show") }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a claim for another stream: {body}"
    );
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key, "origin": origin_claim(&origin, "encore") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin_node"], origin.node_id().to_string());
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key, "origin": origin_claim(&other, "encore") }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the first origin stays bound: {body}"
    );
    assert_eq!(body["error"], "not_origin");
    let (_, stream) = api.get("/streams/encore").await;
    assert_eq!(stream["origin_node"], origin.node_id().to_string());
    let mut bad_claim = origin_claim(&other, "encore");
    bad_claim.body.node_id = origin.node_id();
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key, "origin": bad_claim }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The same origin serves both streams, yet a report captured on one cannot be replayed
    // to the other: the stream is part of the signed bytes.
    let captured = origin_report(&origin, "show", 1);
    let (status, body) = api.post("/streams/encore/segments", &captured).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_origin");
    let mut moved = captured.clone();
    moved.body.stream_id = StreamId::new("encore").expect("stream id");
    let (status, body) = api.post("/streams/encore/segments", &moved).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(stored_sequences(&api, "encore").await.is_empty());
    let (status, _) = api
        .post(
            "/streams/encore/segments",
            &origin_report(&origin, "encore", 0),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Operators keep the admin token; an unsigned report without it is refused.
    let bare = json!({
        "sequence": 2,
        "hash": segment_hash(b"operator segment").to_string(),
        "published_ms": now_ms(),
    });
    let (status, body) = api.post("/streams/show/segments", &bare).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(stored_sequences(&api, "show").await, vec![0]);
    let (status, body) = api.post_admin("/streams/show/segments", &bare).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stored_sequences(&api, "show").await, vec![0, 2]);

    // An operator re-binds the stream (say the origin's key changed): only the new origin's
    // reports count from then on.
    let rebind = json!({ "origin_node": other.node_id().to_string() });
    let (status, body) = api.post("/streams/show/origin", &rebind).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "admins only: {body}");
    let (status, body) = api.post_admin("/streams/show/origin", &rebind).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin_node"], other.node_id().to_string());
    let (status, body) = api
        .post("/streams/show/segments", &origin_report(&origin, "show", 3))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post("/streams/show/segments", &origin_report(&other, "show", 3))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stored_sequences(&api, "show").await, vec![0, 2, 3]);

    // Cleared, the next node that signs a successful publish check is bound again.
    let (status, body) = api
        .post_admin("/streams/encore/origin", &json!({ "origin_node": null }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin_node"], Value::Null);
    let (status, body) = api
        .post(
            "/streams/encore/publish-check",
            &json!({ "stream_key": key, "origin": origin_claim(&other, "encore") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin_node"], other.node_id().to_string());

    // Unknown streams and malformed node ids are client errors with a JSON body.
    let (status, body) = api.post_admin("/streams/nothing/origin", &rebind).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = api
        .post_admin("/streams/show/origin", &json!({ "origin_node": "zz" }))
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body["error"].is_string(), "{body}");
    let (_, stream) = api.get("/streams/show").await;
    assert_eq!(stream["origin_node"], other.node_id().to_string());
}

async fn nodes_register_heartbeat_and_reject_replays(db: &TestDb) {
    let api = client(db, test_config()).await;
    let node = KeyPair::from_seed([7; 32]);
    let (status, body) = api
        .post("/nodes", &registration(&node, "http://10.0.0.7:8080"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["subnet"], "10.0.0.0/24");

    // A registration signed by another key is refused.
    let mut forged = registration(&node, "http://10.0.0.8:8080");
    forged.signature = Signed::sign(forged.body.clone(), &KeyPair::from_seed([8; 32])).signature;
    let (status, body) = api.post("/nodes", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "bad_signature");

    let first = heartbeat(&node, 1, &["live1"]);
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": first }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": first }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "replay: {body}");
    assert_eq!(body["error"], "replayed_nonce");

    let mut tampered = heartbeat(&node, 5, &["live1"]);
    tampered.body.viewers = 999;
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": tampered }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "bad_signature");

    let mut stale = heartbeat(&node, 6, &[]).body;
    stale.timestamp_ms -= 10 * 60 * 1000;
    let stale = Signed::sign(stale, &node);
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": stale }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "clock_skew");

    let (_, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(
        stored["last_nonce"], 1,
        "rejected heartbeats change nothing"
    );
    assert_eq!(stored["viewers"], 1);
    assert_eq!(stored["status"], "online");

    let stranger = KeyPair::from_seed([9; 32]);
    let (status, _) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&stranger, 1, &[]) }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let leave = Signed::sign(
        NodeDeregistration {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
        },
        &node,
    );
    let (status, _) = api.post("/nodes/deregister", &leave).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&node, 7, &[]) }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deregistered node is not heard"
    );
}

async fn bad_input_is_rejected_with_json_and_stores_nothing(db: &TestDb) {
    let mut config = test_config();
    config.max_body_bytes = 4096;
    let api = client(db, config).await;
    let node = KeyPair::from_seed([3; 32]);
    let (status, _) = api
        .post("/nodes", &registration(&node, "http://10.0.3.1:8080"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, before) = api.get("/stats").await;

    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "POST",
            "/nodes/heartbeat",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/nodes/heartbeat",
            b"{\"heartbeat\": 5}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/nodes",
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/receipts",
            b"{\"receipts\": []}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            b"{\"id\": \"a b\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            b"{\"id\": \"..\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            b"{\"id\": \".hidden\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            b"{\"id\": \"a..b\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            b"{\"id\": \"\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "POST",
            "/streams",
            vec![b' '; 10_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "GET",
            "/epochs/not-a-number",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "GET",
            "/streams?limit=-4",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "GET",
            "/no/such/route",
            Vec::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, body, expected, code) in cases {
        let (status, answer) = api.raw(method, path, body, true).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert_eq!(answer["error"], code, "{method} {path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
        // An invalid field is named, so a client can tell which without reading the message.
        let field = match path {
            "/receipts" => Some("receipts"),
            "/streams" if code == "invalid_field" => Some("id"),
            _ => None,
        };
        assert_eq!(answer["field"].as_str(), field, "{method} {path}: {answer}");
    }

    // A heartbeat whose nonce overflows the stored range is refused before anything is written.
    let (status, answer) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&node, u64::MAX, &[]) }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let (_, after) = api.get("/stats").await;
    assert_eq!(before, after, "rejected requests stored nothing");
    let (_, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    assert_eq!(stored["last_nonce"], -1);
}

/// Origin publishes segments, a node relays, a viewer is routed, signs receipts; the epoch is
/// settled once, the node earns, its Merkle proof verifies and its payout is made once.
async fn viewers_are_routed_receipts_settle_and_pay_once(db: &TestDb) {
    let config = test_config();
    let coordinator_key = config.coordinator_key.coordinator_key();
    let api = client(db, config.clone()).await;
    create_stream(&api, "show").await;
    let digests = report_segments(&api, "show", 3).await;

    let node = KeyPair::from_seed([11; 32]);
    assert_eq!(
        api.post("/nodes", &registration(&node, "http://10.0.11.1:8080"))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&node, 1, &["show"]) })
        )
        .await
        .0,
        StatusCode::OK
    );
    let probe = ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 100,
        throughput_bytes_per_s: 5_000_000,
    };
    // Availability counts an epoch's own probes, and the epochs are short: probe before and
    // after each batch of receipts, so that whatever epoch a receipt is booked to (the one it was
    // signed in) holds a probe even when the machine is slow.
    let probe_now = || async {
        let (status, body) = api.post_admin("/probes", &probe).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    };
    probe_now().await;

    let viewer = KeyPair::from_seed([12; 32]);
    let (status, play) = api
        .get(&format!(
            "/streams/show/play?viewer={}",
            viewer.viewer_key()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{play}");
    assert_eq!(play["node_id"], node.node_id().to_string());
    assert!(play["hls_url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://10.0.11.1:8080/")));
    let grant: SignedGrant = serde_json::from_value(play["grant"].clone()).expect("grant");
    grant
        .verify(&coordinator_key)
        .expect("grant signed by the coordinator");
    let session: SessionId = grant.body.session_id;

    let receipt = |seq: u64, bytes_total: u64, segment: usize| {
        Signed::sign(
            ViewerReceipt {
                session_id: session,
                seq,
                bytes_total,
                last_segment_seq: segment as u64,
                segments_digest: digests[segment],
                t_ms: now_ms(),
            },
            &viewer,
        )
    };
    // The node forwards two receipts in a heartbeat; the viewer posts a third itself and
    // repeats the second (a duplicate, not a replay), plus one for a session nobody granted.
    // Byte counts stay within the stream's rate so the fraud rules find nothing to drop.
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({
                "heartbeat": heartbeat(&node, 2, &["show"]),
                "receipts": [receipt(1, 1_000, 0), receipt(2, 2_500, 1)],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 2, "{outcome}");
    probe_now().await;
    let mut stray = receipt(4, 9_000, 2);
    stray.body.session_id = SessionId::from_bytes([0xee; 16]);
    let stray = Signed::sign(stray.body, &viewer);
    let (status, outcome) = api
        .post(
            "/receipts",
            &json!({ "receipts": [receipt(3, 4_000, 2), stray, receipt(2, 2_500, 1)] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    assert_eq!(
        outcome["rejected"].as_array().map(Vec::len),
        Some(2),
        "{outcome}"
    );
    probe_now().await;

    // Another node forwards the viewer's receipt as if it had served the session: forgery.
    let cheater = KeyPair::from_seed([13; 32]);
    assert_eq!(
        api.post("/nodes", &registration(&cheater, "http://10.0.13.1:8080"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({
                "heartbeat": heartbeat(&cheater, 1, &["show"]),
                "receipts": [receipt(5, 5_000, 2)],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 0, "{outcome}");
    let activity = now_ms();

    // The stats worker's aggregation: per-minute bytes per stream and per node.
    db.storage()
        .await
        .aggregate_minute_stats(0, i64::MAX)
        .await
        .expect("aggregate stats");
    let (status, rows) = api.get("/streams/show/stats").await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    let bytes: i64 = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["bytes"].as_i64().expect("bytes"))
        .sum();
    assert_eq!(bytes, 4_000, "the session's newest cumulative receipt");
    let (_, rows) = api.get(&format!("/nodes/{}/stats", node.node_id())).await;
    assert_eq!(
        rows[0]["bytes"].as_i64().map(|b| b > 0),
        Some(true),
        "{rows}"
    );

    wait_for_epoch_end(&config, activity).await;
    let settled = api.coordinator.settle_due().await.expect("settle");
    assert!(settled >= 1, "the epoch with receipts is settled");
    assert_eq!(api.coordinator.settle_due().await.expect("settle again"), 0);

    // Activity may straddle an epoch boundary: look at every settled epoch.
    let (status, epochs) = api.get("/epochs").await;
    assert_eq!(status, StatusCode::OK);
    let epochs = epochs.as_array().expect("epochs").clone();
    let epoch = epochs[0]["epoch"].as_i64().expect("newest epoch");
    let pool = config.reward_pool_per_epoch as i64;
    let mut distributed = 0;
    // Epochs the node earned in: each plans a payout.
    let mut earning_epochs: u32 = 0;
    let mut probation_evidence = false;
    let mut forgery_evidence = false;
    for settled in &epochs {
        let number = settled["epoch"].as_i64().expect("epoch");
        let (status, statement) = api.get(&format!("/epochs/{number}")).await;
        assert_eq!(status, StatusCode::OK, "{statement}");
        assert_eq!(statement["settlement"]["pool"], pool);
        let share = statement["settlement"]["distributed"]
            .as_i64()
            .expect("distributed");
        assert!((0..=pool).contains(&share), "{statement}");
        distributed += share;
        earning_epochs += u32::from(share > 0);
        probation_evidence |= statement["evidence"]
            .as_array()
            .expect("evidence")
            .iter()
            .any(|e| e["rule"] == "probation" && e["node_id"] == node.node_id().to_string());
        forgery_evidence |= statement["evidence"]
            .as_array()
            .expect("evidence")
            .iter()
            .any(|e| {
                e["rule"] == "forged_receipts" && e["node_id"] == cheater.node_id().to_string()
            });
    }
    assert!(distributed > 0, "the node earned");
    assert!(
        probation_evidence,
        "the fraud rules ran and their evidence is stored"
    );
    assert!(forgery_evidence, "the forging node is caught");

    let (status, earnings) = api
        .get(&format!("/nodes/{}/earnings", node.node_id()))
        .await;
    assert_eq!(status, StatusCode::OK, "{earnings}");
    assert_eq!(earnings["total"].as_i64(), Some(distributed));

    let (status, proof) = api
        .get(&format!("/epochs/{epoch}/proofs/{}", node.node_id()))
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let leaf: BalanceLeaf = serde_json::from_value(proof["leaf"].clone()).expect("leaf");
    let path: MerkleProof = serde_json::from_value(proof["proof"].clone()).expect("proof");
    let root = digest(&proof["merkle_root"]);
    assert!(
        path.verify(&root, &leaf),
        "the proof leads to the published root"
    );
    assert_eq!(leaf.cumulative_earned as i64, distributed);

    let (status, pending) = api.get_admin("/payouts/pending").await;
    assert_eq!(status, StatusCode::OK);
    // Only the node earns (the forger is penalized).
    assert_eq!(
        pending.as_array().map(Vec::len),
        usize::try_from(earning_epochs).ok(),
        "{pending}"
    );
    // The payout lifecycle: planned at settlement (vested at once here), pending until the
    // sink confirms it, then paid; every stage adds up to what the node earned.
    let payouts_path = format!("/nodes/{}/payouts", node.node_id());
    let stages = |p: &Value| {
        ["earned", "unvested", "vested", "pending", "paid", "fees"].map(|k| p[k].as_i64())
    };
    let (status, lifecycle) = api.get(&payouts_path).await;
    assert_eq!(status, StatusCode::OK, "{lifecycle}");
    let d = Some(distributed);
    let zero = Some(0);
    assert_eq!(
        stages(&lifecycle),
        [d, zero, zero, d, zero, zero],
        "{lifecycle}"
    );
    assert_eq!(lifecycle["payouts"][0]["status"], "pending", "{lifecycle}");
    assert_eq!(
        api.coordinator.pay_pending().await.expect("pay"),
        earning_epochs
    );
    assert_eq!(api.coordinator.pay_pending().await.expect("pay again"), 0);
    let (_, lifecycle) = api.get(&payouts_path).await;
    assert_eq!(
        stages(&lifecycle),
        [d, zero, zero, zero, d, zero],
        "{lifecycle}"
    );
    assert_eq!(
        lifecycle["payouts"][0]["status"], "sent",
        "paid payouts are listed"
    );
    let (status, _) = api
        .get(&format!(
            "/nodes/{}/payouts",
            KeyPair::from_seed([99; 32]).node_id()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, earnings) = api
        .get(&format!("/nodes/{}/earnings", node.node_id()))
        .await;
    let payouts = earnings["payouts"].as_array().expect("payouts");
    assert!(payouts.iter().all(|p| p["status"] == "sent"), "{earnings}");
    let net: i64 = payouts.iter().filter_map(|p| p["net"].as_i64()).sum();
    assert_eq!(net, distributed, "{earnings}");

    // A second coordinator on the same database replays the history and settles nothing twice.
    let replica = Coordinator::new(test_config_with_key(&config), db.storage().await);
    assert_eq!(replica.settle_due().await.expect("replica settles"), 0);
    let (_, stats) = api.get("/stats").await;
    assert_eq!(stats["paid_out"].as_i64(), Some(distributed));
}

/// Four nodes in one epoch, all passing their probes: A serves a signing viewer (4 000 bytes
/// receipted), B reports 4 000 unattested bytes (within its probe capacity), C reports 1 MB
/// unattested with a probe capacity of 8 000 bytes, and D reports its 1 MB of receipt-less
/// traffic as attested bytes. B and C were each granted a viewer that sends no receipts, so
/// their unattested bytes are within what their grants carry. B and C earn for unattested
/// bytes at half rate, C only up to its capacity, and neither is flagged; D's claim exceeds
/// its receipts and is penalized.
async fn unattested_bytes_earn_at_a_discount_within_probe_capacity(db: &TestDb) {
    let mut config = test_config();
    config.epoch_length = std::time::Duration::from_secs(8);
    config.probe_policy.min_throughput_bytes_per_s = 1_000;
    config.settlement.rewards.operator_cap_ppm = 1_000_000;
    config.settlement.rewards.subnet_cap_ppm = 1_000_000;
    // The discount and the probe-capacity cap are under test, not the network-wide ratio of
    // unattested to attested bytes (one small receipted session here).
    config.fraud.unattested_ratio_ppm = 100 * streamr_core::PPM;
    let discount = config.settlement.rewards.unattested_discount_ppm;
    assert_eq!(discount, 500_000, "the default discount is half");
    let epoch_ms = config.epoch_length.as_millis() as u64;
    let api = client(db, config.clone()).await;
    create_stream(&api, "show").await;
    // Start at an epoch boundary so everything below lands in one epoch.
    wait_for_epoch_end(&config, now_ms()).await;
    let epoch = now_ms() / epoch_ms;

    let digests = report_segments(&api, "show", 3).await;
    let probe = |node: &KeyPair, throughput_bytes_per_s: u64| ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 100,
        throughput_bytes_per_s,
    };
    let join = |node: KeyPair, subnet: u8, throughput: u64| {
        let api = &api;
        async move {
            let url = format!("http://10.0.{subnet}.1:8080");
            let (status, body) = api.post("/nodes", &registration(&node, &url)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let (status, body) = api.post_admin("/probes", &probe(&node, throughput)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let online = json!({ "heartbeat": claims_heartbeat(&node, 1, 0, 0) });
            let (status, body) = api.post("/nodes/heartbeat", &online).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            node
        }
    };

    // A is the only node when the viewer is routed, so the session is A's.
    let a = join(KeyPair::from_seed([21; 32]), 21, 5_000_000).await;
    let viewer = KeyPair::from_seed([25; 32]);
    let (status, play) = api
        .get(&format!(
            "/streams/show/play?viewer={}",
            viewer.viewer_key()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{play}");
    let grant: SignedGrant = serde_json::from_value(play["grant"].clone()).expect("grant");
    assert_eq!(grant.body.node_id, a.node_id());
    let receipt = |seq: u64, bytes_total: u64, segment: usize| {
        Signed::sign(
            ViewerReceipt {
                session_id: grant.body.session_id,
                seq,
                bytes_total,
                last_segment_seq: segment as u64,
                segments_digest: digests[segment],
                t_ms: now_ms(),
            },
            &viewer,
        )
    };
    // B and C each get a viewer that never sends a receipt: the grants their unattested
    // bytes are bounded by.
    let silent_viewer = |seed: u8, exclude: Vec<String>| {
        let api = &api;
        async move {
            let viewer = KeyPair::from_seed([seed; 32]);
            let (status, play) = api
                .get(&format!(
                    "/streams/show/play?viewer={}&exclude={}",
                    viewer.viewer_key(),
                    exclude.join(",")
                ))
                .await;
            assert_eq!(status, StatusCode::OK, "{play}");
            play["node_id"].clone()
        }
    };
    let b = join(KeyPair::from_seed([22; 32]), 22, 5_000_000).await;
    let routed = silent_viewer(26, vec![a.node_id().to_string()]).await;
    assert_eq!(routed, json!(b.node_id().to_string()));
    let c = join(KeyPair::from_seed([23; 32]), 23, 1_000).await;
    let routed = silent_viewer(27, vec![a.node_id().to_string(), b.node_id().to_string()]).await;
    assert_eq!(routed, json!(c.node_id().to_string()));
    let d = join(KeyPair::from_seed([24; 32]), 24, 5_000_000).await;

    let heartbeats = [
        json!({
            "heartbeat": claims_heartbeat(&a, 2, 4_000, 0),
            "receipts": [receipt(1, 1_000, 0), receipt(2, 2_500, 1), receipt(3, 4_000, 2)],
        }),
        // B's unattested bytes arrive in two heartbeats and are summed.
        json!({ "heartbeat": claims_heartbeat(&b, 2, 0, 1_500) }),
        json!({ "heartbeat": claims_heartbeat(&b, 3, 0, 2_500) }),
        json!({ "heartbeat": claims_heartbeat(&c, 2, 0, 1_000_000) }),
        json!({ "heartbeat": claims_heartbeat(&d, 2, 1_000_000, 0) }),
    ];
    for heartbeat in &heartbeats {
        let (status, outcome) = api.post("/nodes/heartbeat", heartbeat).await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
    }

    // Storage keeps both claims per node and epoch; the dashboard shows them.
    let storage = db.storage().await;
    let activity = storage
        .activity_for_epoch(epoch as i64)
        .await
        .expect("activity");
    let claims = |node: &KeyPair| {
        activity
            .iter()
            .find(|row| row.node_id == node.node_id().to_string())
            .map(|row| (row.claimed_bytes, row.unattested_bytes))
    };
    assert_eq!(claims(&a), Some((4_000, 0)));
    assert_eq!(claims(&b), Some((0, 4_000)));
    assert_eq!(claims(&c), Some((0, 1_000_000)));
    assert_eq!(claims(&d), Some((1_000_000, 0)));
    let (status, dashboard) = api.get("/dashboard/data.json").await;
    assert_eq!(status, StatusCode::OK, "{dashboard}");
    assert_eq!(
        now_ms() / epoch_ms,
        epoch,
        "the scenario ran within one epoch"
    );
    let shown = dashboard["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == b.node_id().to_string())
        .map(|n| n["epoch_unattested_bytes"].clone());
    assert_eq!(shown, Some(json!(4_000)), "{dashboard}");

    wait_for_epoch_end(&config, now_ms()).await;
    assert!(api.coordinator.settle_due().await.expect("settle") >= 1);
    let settlement = storage
        .get_settlement(epoch as i64)
        .await
        .expect("storage")
        .expect("the epoch is settled");
    let inputs: EpochInputs = serde_json::from_str(&settlement.inputs_json).expect("inputs");
    let input = |node: &KeyPair| {
        inputs
            .nodes
            .iter()
            .find(|n| n.node_id == node.node_id())
            .cloned()
            .expect("node input")
    };
    let (ia, ib, ic) = (input(&a), input(&b), input(&c));
    assert_eq!((ia.verified_bytes, ia.on_time_bytes), (4_000, 4_000));
    assert_eq!(
        (ib.unattested_bytes, ib.probe_capacity_bytes),
        (4_000, 40_000_000)
    );
    assert_eq!(
        (ic.unattested_bytes, ic.probe_capacity_bytes),
        (1_000_000, 8_000)
    );
    assert_eq!(ia.probation_ppm, ib.probation_ppm);
    assert_eq!(ib.probation_ppm, ic.probation_ppm);

    let evidence = storage
        .evidence_for_epoch(epoch as i64)
        .await
        .expect("evidence");
    let flagged = |node: &KeyPair| {
        evidence
            .iter()
            .any(|e| e.node_id == node.node_id().to_string() && e.rule == "claims_exceed_receipts")
    };
    assert!(!flagged(&a) && !flagged(&b) && !flagged(&c), "{evidence:?}");
    assert!(
        flagged(&d),
        "attested claims without receipts: {evidence:?}"
    );

    let mut rewards = std::collections::BTreeMap::<String, i64>::new();
    for entry in storage
        .ledger_for_epoch(epoch as i64)
        .await
        .expect("ledger")
    {
        if let (Some(node), "reward") = (entry.node_id, entry.kind.as_str()) {
            *rewards.entry(node).or_default() += entry.amount;
        }
    }
    let reward = |node: &KeyPair| {
        rewards
            .get(&node.node_id().to_string())
            .copied()
            .unwrap_or(0)
    };
    // Weights: A 4 000 receipted bytes; B 4 000 × ½; C min(1 MB, 8 000) × ½; D nothing.
    let (ra, rb, rc) = (reward(&a), reward(&b), reward(&c));
    assert!(rb > 0, "rewards {rewards:?}");
    assert!((ra - 2 * rb).abs() <= 2, "A {ra} is twice B {rb}");
    assert!(
        (rc - 2 * rb).abs() <= 2,
        "C {rc} is capped at its capacity: twice B {rb}"
    );
    assert_eq!(reward(&d), 0, "rewards {rewards:?}");
}

fn test_config_with_key(config: &CoordConfig) -> CoordConfig {
    CoordConfig {
        coordinator_key: config.coordinator_key.clone(),
        ..test_config()
    }
}

async fn rate_limit_refuses_bursts_per_ip(db: &TestDb) {
    let config = CoordConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..test_config()
    };
    let api = client(db, config).await;
    for _ in 0..3 {
        assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    }
    let (status, body) = api.get("/healthz").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "rate_limited");
}

async fn operations_endpoints_answer(db: &TestDb) {
    let api = client(db, test_config()).await;
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    let (status, ready) = api.get("/readyz").await;
    assert_eq!(
        (status, ready["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
    let (status, openapi) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(openapi["openapi"], "3.1.0");
    let paths = openapi["paths"].as_object().expect("paths");
    for path in [
        "/nodes/heartbeat",
        "/streams/{id}/play",
        "/epochs/{epoch}/proofs/{node_id}",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    api.get("/no-such-thing").await;
    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().expect("text exposition");
    assert!(text.contains("# TYPE streamr_http_requests_total counter"));
    assert!(
        text.contains("streamr_http_client_errors_total 1"),
        "{text}"
    );
    assert!(text.contains("streamr_active_nodes 0"));
}

#[test]
fn coordinator_key_type_is_public() {
    // The key a client needs to verify grants is exported from the core crate.
    let key: CoordinatorKey = KeyPair::from_seed([1; 32]).coordinator_key();
    assert_eq!(key.to_string().len(), 64);
    let _: Value = json!(key);
}
