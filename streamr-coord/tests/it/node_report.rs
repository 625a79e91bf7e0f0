//! A node's report (`/nodes/{id}/report`) and the dashboard show the numbers settlement uses:
//! bytes verified by receipts wherever they were posted, attested and unattested claims,
//! receipt outcomes and the coordinator's probe traffic, which settlement never pays. Every
//! scenario runs against SQLite and against a real PostgreSQL server.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{
    ContentDigest, KeyPair, SessionId, Signed, SignedGrant, SignedReceipt, ViewerReceipt,
};

on_both_backends!(
    reports_split_verified_claimed_and_probe_traffic,
    a_viewer_silent_for_an_epoch_costs_its_node_no_penalty
);

fn heartbeat_with(node: &KeyPair, nonce: u64, bytes_served: u64, unattested: u64) -> Value {
    json!({ "heartbeat": claims_heartbeat(node, nonce, bytes_served, unattested) })
}

fn receipt(
    viewer: &KeyPair,
    session: SessionId,
    bytes_total: u64,
    digest: ContentDigest,
) -> SignedReceipt {
    Signed::sign(
        ViewerReceipt {
            session_id: session,
            seq: 1,
            bytes_total,
            last_segment_seq: 0,
            segments_digest: digest,
            t_ms: now_ms(),
        },
        viewer,
    )
}

async fn register_from(api: &Client, node: &KeyPair, peer: IpAddr) {
    let (status, body) = api
        .raw_from(
            "POST",
            "/nodes",
            serde_json::to_vec(&registration(node, "http://10.0.1.1:8080")).expect("json"),
            false,
            Some(peer),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn epoch_of(report: &Value, epoch: u64) -> &Value {
    report["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .find(|e| e["epoch"] == epoch)
        .unwrap_or_else(|| panic!("epoch {epoch} in {report}"))
}

async fn reports_split_verified_claimed_and_probe_traffic(db: &TestDb) {
    let mut config = CoordConfig {
        epoch_length: Duration::from_secs(4),
        ..test_config()
    };
    config.settlement.rewards.operator_cap_ppm = 1_000_000;
    config.settlement.rewards.subnet_cap_ppm = 1_000_000;
    let epoch_ms = config.epoch_length.as_millis() as u64;
    let api = Client::new(Coordinator::new(config.clone(), db.storage().await));
    create_stream(&api, "show").await;
    // What no epoch books is set up first: the segment, the nodes and the probe sessions.
    let digest = report_segments(&api, "show", 1).await[0];

    // A node with a viewer, and a node that only ever served the coordinator's probes.
    let serving = KeyPair::from_seed([31; 32]);
    let probed_only = KeyPair::from_seed([32; 32]);
    register_from(&api, &serving, [192, 0, 2, 31].into()).await;
    register_from(&api, &probed_only, [198, 51, 100, 32].into()).await;
    let (probe_viewer, probe) =
        probe_session(db, &config, &serving, Duration::from_secs(3_600)).await;
    let (other_probe_viewer, other_probe) =
        probe_session(db, &config, &probed_only, Duration::from_secs(3_600)).await;

    // Start at an epoch boundary, so everything below lands in one epoch.
    let start = (now_ms() / epoch_ms + 1) * epoch_ms;
    tokio::time::sleep(Duration::from_millis(start - now_ms() + 20)).await;
    let epoch = now_ms() / epoch_ms;
    let (status, body) = api
        .raw_from(
            "POST",
            "/nodes/heartbeat",
            serde_json::to_vec(&heartbeat_with(&probed_only, 1, 0, 0)).expect("json"),
            false,
            Some([198, 51, 100, 32].into()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .raw_from(
            "POST",
            "/nodes/heartbeat",
            serde_json::to_vec(&heartbeat_with(&serving, 1, 0, 0)).expect("json"),
            false,
            Some([192, 0, 2, 31].into()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let viewer = KeyPair::from_seed([41; 32]);
    let (status, body) = api
        .get_from(
            &format!(
                "/streams/show/play?viewer={}&exclude={}",
                viewer.viewer_key(),
                probed_only.node_id()
            ),
            [203, 0, 113, 41].into(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node_id"], serving.node_id().to_string());
    let grant: SignedGrant = serde_json::from_value(body["grant"].clone()).expect("grant");
    let session = grant.body.session_id;
    // Both pass the coordinator's probes (availability counts in rewards).
    for node in [&serving, &probed_only] {
        let probe = streamr_core::ProbeResult {
            node_id: node.node_id(),
            hash_ok: true,
            timed_out: false,
            ttfb_ms: 20,
            throughput_bytes_per_s: 5_000_000,
        };
        let (status, body) = api.post_admin("/probes", &probe).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The serving node forwards its viewer's and the probe's receipts and claims both as
    // attested, plus 500 unattested bytes; the viewer also posts its receipt itself.
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({
                "heartbeat": heartbeat_with(&serving, 2, 7_000, 500)["heartbeat"],
                "receipts": [
                    receipt(&viewer, session, 4_000, digest),
                    receipt(&probe_viewer, probe, 3_000, digest),
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 2, "{outcome}");
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({
                "heartbeat": heartbeat_with(&probed_only, 2, 3_000, 0)["heartbeat"],
                "receipts": [receipt(&other_probe_viewer, other_probe, 3_000, digest)],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    // A hostile viewer posts a forged receipt for the serving node's session itself: the
    // viewer's doing, tallied apart from what the node handed in.
    let mut forged = receipt(&viewer, session, 5_000, digest);
    forged.body.seq = 2;
    let (status, outcome) = api
        .post("/receipts", &json!({ "receipts": [forged] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 0, "{outcome}");
    assert_eq!(now_ms() / epoch_ms, epoch, "the scenario fits in one epoch");

    let (status, report) = api
        .get(&format!("/nodes/{}/report", serving.node_id()))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let now = epoch_of(&report, epoch);
    assert_eq!(now["settled"], false);
    assert_eq!(now["verified_bytes"], 4_000, "{now}");
    assert_eq!(now["verified_sessions"], 1, "{now}");
    assert_eq!(now["verified_viewers"], 1, "{now}");
    assert_eq!(now["probe_bytes"], 3_000, "{now}");
    assert_eq!(now["probe_sessions"], 1, "{now}");
    assert_eq!(now["claimed_attested_bytes"], 7_000, "{now}");
    assert_eq!(now["claimed_unattested_bytes"], 500, "{now}");
    assert_eq!(now["receipts"]["accepted"], 2, "{now}");
    assert_eq!(now["receipts"]["forged"], 0, "{now}");
    assert_eq!(now["viewer_posted"]["submitted"], 1, "{now}");
    assert_eq!(now["viewer_posted"]["forged"], 1, "{now}");
    assert_eq!(report["observed_prefixes"][0]["prefix"], "192.0.2.0/24");
    let (_, snapshot) = api.get("/dashboard/data.json").await;
    let row = snapshot["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == serving.node_id().to_string())
        .expect("node row");
    assert_eq!(row["epoch_verified_bytes"], 4_000, "{row}");
    assert_eq!(row["epoch_verified_viewers"], 1, "{row}");
    assert_eq!(row["epoch_probe_bytes"], 3_000, "{row}");
    let (status, _) = api
        .get(&format!(
            "/nodes/{}/report",
            KeyPair::from_seed([99; 32]).node_id()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    eprintln!(
        "one epoch's scenario took {} ms of the epoch's {epoch_ms}",
        now_ms() - epoch * epoch_ms
    );

    // Settled: the viewer's bytes earn, the probes' never do.
    wait_for_epoch_end(&config, epoch * epoch_ms).await;
    assert!(api.coordinator.settle_due().await.expect("settle") >= 1);
    let (_, report) = api
        .get(&format!("/nodes/{}/report", serving.node_id()))
        .await;
    let settled = epoch_of(&report, epoch);
    assert_eq!(settled["settled"], true);
    assert!(
        settled["rewarded"].as_i64().is_some_and(|r| r > 0),
        "{settled}"
    );
    let (_, report) = api
        .get(&format!("/nodes/{}/report", probed_only.node_id()))
        .await;
    let settled = epoch_of(&report, epoch);
    assert_eq!(settled["settled"], true, "{settled}");
    assert_eq!(settled["probe_bytes"], 3_000, "{settled}");
    assert_eq!(
        settled["rewarded"], 0,
        "probe traffic is never paid: {settled}"
    );
    assert_eq!(settled["penalised"], 0, "{settled}");
}

/// The rules' evidence against `node` in the settled `epoch`, but probation (a new node's
/// reduced weight, no penalty).
async fn rules_against(api: &Client, epoch: u64, node: &KeyPair) -> Vec<String> {
    let (status, statement) = api.get(&format!("/epochs/{epoch}")).await;
    assert_eq!(status, StatusCode::OK, "{statement}");
    statement["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter(|e| e["node_id"] == node.node_id().to_string())
        .filter_map(|e| e["rule"].as_str().map(str::to_owned))
        .filter(|rule| rule != "probation")
        .collect()
}

/// A viewer whose receipts verified its node's bytes in one epoch signs nothing in the next (an
/// origin restart holds its verification back, or it went silent): the node's claim for that
/// epoch rests on the session's grant and earlier receipts, so it is not penalised. A node
/// whose granted viewer never verified anything claims on its own word, and is.
async fn a_viewer_silent_for_an_epoch_costs_its_node_no_penalty(db: &TestDb) {
    let config = CoordConfig {
        epoch_length: Duration::from_secs(3),
        ..test_config()
    };
    let epoch_ms = config.epoch_length.as_millis() as u64;
    let api = Client::new(Coordinator::new(config.clone(), db.storage().await));
    create_stream(&api, "show").await;
    let digest = report_segments(&api, "show", 1).await[0];

    let serving = KeyPair::from_seed([51; 32]);
    let idle = KeyPair::from_seed([52; 32]);
    register_from(&api, &serving, [192, 0, 2, 51].into()).await;
    register_from(&api, &idle, [198, 51, 100, 52].into()).await;
    for (node, peer) in [(&serving, [192, 0, 2, 51]), (&idle, [198, 51, 100, 52])] {
        let (status, body) = api
            .raw_from(
                "POST",
                "/nodes/heartbeat",
                serde_json::to_vec(&heartbeat_with(node, 1, 0, 0)).expect("json"),
                false,
                Some(peer.into()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let play = |viewer: &KeyPair, exclude: &KeyPair, from: [u8; 4]| {
        let path = format!(
            "/streams/show/play?viewer={}&exclude={}",
            viewer.viewer_key(),
            exclude.node_id()
        );
        let api = &api;
        async move {
            let (status, body) = api.get_from(&path, from.into()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let grant: SignedGrant = serde_json::from_value(body["grant"].clone()).expect("grant");
            grant.body.session_id
        }
    };
    let viewer = KeyPair::from_seed([61; 32]);
    let session = play(&viewer, &idle, [203, 0, 113, 61]).await;
    let stranger = KeyPair::from_seed([62; 32]);
    play(&stranger, &serving, [203, 0, 113, 62]).await;

    // Epoch A: the viewer's receipt verifies what the serving node claims; the idle node
    // claims bytes its viewer never acknowledges.
    let start = (now_ms() / epoch_ms + 1) * epoch_ms;
    tokio::time::sleep(Duration::from_millis(start - now_ms() + 20)).await;
    let first = now_ms() / epoch_ms;
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({
                "heartbeat": heartbeat_with(&serving, 2, 4_000, 0)["heartbeat"],
                "receipts": [receipt(&viewer, session, 4_000, digest)],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let (status, body) = api
        .post("/nodes/heartbeat", &heartbeat_with(&idle, 2, 5_000, 0))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(now_ms() / epoch_ms, first, "epoch A's scenario fits in it");

    // Epoch B: the serving node keeps serving and claims it; its viewer signs nothing.
    tokio::time::sleep(Duration::from_millis(
        (first + 1) * epoch_ms - now_ms() + 20,
    ))
    .await;
    let second = now_ms() / epoch_ms;
    let (status, body) = api
        .post("/nodes/heartbeat", &heartbeat_with(&serving, 3, 5_000, 0))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        now_ms() / epoch_ms,
        second,
        "epoch B's heartbeat lands in it"
    );

    wait_for_epoch_end(&config, second * epoch_ms).await;
    assert!(api.coordinator.settle_due().await.expect("settle") >= 2);
    assert_eq!(
        rules_against(&api, first, &serving).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rules_against(&api, second, &serving).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rules_against(&api, first, &idle).await,
        ["claims_exceed_receipts"]
    );
}
