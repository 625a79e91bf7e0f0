//! A node that hands in a receipt beyond its viewer's grant, over the real coordinator's HTTP
//! API: the receipt for exactly the granted bytes is accepted, the one a byte beyond is refused
//! with its reason, and the epoch's settlement publishes the penalty with its evidence.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::NodeRegistration;
use streamr_core::{
    segment_hash, ContentDigest, Evidence, KeyPair, NodeHeartbeat, ProbeResult, RuleId, SessionId,
    Signed, StreamId, Verdict, ViewerReceipt,
};

const EPOCH_MS: u64 = 300;

async fn heartbeat(
    client: &mut streamr_coordinator::HttpClient,
    node: &KeyPair,
    nonce: u64,
    receipts: Vec<Value>,
) -> Value {
    let probe = ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 50,
        throughput_bytes_per_s: 10_000_000,
    };
    let (status, body) = client.post("/probes", &probe).await.expect("probe");
    assert_eq!(status, 201, "{body}");
    let beat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce,
            streams: vec![StreamId::new("grant").expect("id")],
            viewers: receipts.len() as u64,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    );
    let (status, answer) = client
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": beat, "receipts": receipts }),
        )
        .await
        .expect("heartbeat");
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_beyond_the_grant_is_refused_and_penalised_with_evidence() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}", dir.path().join("coordinator.db").display());
    let epoch_ms = EPOCH_MS.to_string();
    let process = Process::start(
        &database,
        free_port(),
        &[
            "--epoch-ms",
            &epoch_ms,
            // Longer than any request takes under load: a heartbeat whose receipts are booked
            // to an epoch just before it ends is written before that epoch is settled.
            "--settlement-grace-ms",
            "2000",
            "--worker-interval-ms",
            "20",
        ],
    )
    .await;
    let mut client = process.client().await;
    let (status, body) = client
        .post("/streams", &json!({ "id": "grant", "title": "grant" }))
        .await
        .expect("create stream");
    assert_eq!(status, 201, "{body}");
    let (status, body) = client
        .post(
            "/streams/grant/segments",
            &json!({ "sequence": 0, "hash": segment_hash(b"segment"), "published_ms": now_ms() }),
        )
        .await
        .expect("segment");
    assert_eq!(status, 201, "{body}");
    let digest: ContentDigest = body["segment"]["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("hex");
    let node = KeyPair::from_seed([42; 32]);
    let registration = Signed::sign(
        NodeRegistration {
            operator_membership: None,
            node_id: node.node_id(),
            payout_address: "addr".into(),
            operator: "operator".into(),
            rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
            http_url: "http://127.0.0.1:8080".into(),
            capacity_kbps: 10_000,
            timestamp_ms: now_ms(),
        },
        &node,
    );
    let (status, body) = client
        .post("/nodes", &registration)
        .await
        .expect("register");
    assert_eq!(status, 201, "{body}");
    heartbeat(&mut client, &node, 1, Vec::new()).await;

    let viewer = KeyPair::from_seed([43; 32]);
    let (status, play) = client
        .get(&format!(
            "/streams/grant/play?viewer={}",
            viewer.viewer_key()
        ))
        .await
        .expect("play");
    assert_eq!(status, 200, "{play}");
    let grant = &play["grant"]["body"];
    let max_bytes = grant["max_bytes"].as_u64().expect("max_bytes");
    let session: SessionId = grant["session_id"]
        .as_str()
        .expect("session")
        .parse()
        .expect("hex");
    let receipt = |seq: u64, bytes_total: u64| {
        json!(Signed::sign(
            ViewerReceipt {
                session_id: session,
                seq,
                bytes_total,
                last_segment_seq: 0,
                segments_digest: digest,
                t_ms: now_ms(),
            },
            &viewer,
        ))
    };

    // The receipts are booked to an epoch from when they were signed to when the heartbeat
    // was answered: every epoch in between is looked at.
    let first_epoch = (now_ms() / EPOCH_MS) as i64;
    let answer = heartbeat(
        &mut client,
        &node,
        2,
        vec![receipt(1, max_bytes), receipt(2, max_bytes + 1)],
    )
    .await;
    let epoch = (now_ms() / EPOCH_MS) as i64;
    let rejected: Vec<&str> = answer["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        rejected,
        [format!(
            "session {session}: {} bytes beyond the grant's {max_bytes}",
            max_bytes + 1
        )],
        "only the receipt beyond the grant is refused: {answer}"
    );

    // The settlement of the epoch that booked the receipts publishes the evidence.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let evidence = loop {
        let (_, epochs) = client.get("/epochs?limit=1").await.expect("epochs");
        let newest = epochs[0]["epoch"].as_i64().unwrap_or(-1);
        // Epochs settle in order: once a later one is, so are these.
        if newest > epoch + 1 {
            // Receipts may be booked to the epoch after the heartbeat's: look at it too.
            let mut all: Vec<Value> = Vec::new();
            for e in first_epoch..=epoch + 1 {
                let (_, s) = client
                    .get(&format!("/epochs/{e}"))
                    .await
                    .expect("statement");
                all.extend(s["evidence"].as_array().into_iter().flatten().cloned());
            }
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "epoch {epoch} not settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let beyond: Vec<Evidence> = evidence
        .iter()
        .filter(|e| e["rule"] == "receipts_beyond_grant")
        .map(|e| serde_json::from_str(e["detail"].as_str().expect("detail")).expect("evidence"))
        .collect();
    assert_eq!(beyond.len(), 1, "{evidence:#?}");
    let detail = &beyond[0];
    assert_eq!(detail.rule, RuleId::ReceiptsBeyondGrant);
    assert_eq!(detail.node_id, node.node_id());
    assert!(
        matches!(detail.verdict, Verdict::Penalize { .. }),
        "the node is penalised: {detail:?}"
    );
    assert_eq!(
        detail.inputs.get("beyond_grant"),
        Some(&1),
        "the evidence counts the receipt: {detail:?}"
    );
}
