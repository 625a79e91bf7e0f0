//! The dashboard and player pages: served with the right types and headers, every asset they
//! reference exists, and the JSON snapshot the dashboard polls reflects the network.

use crate::common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::json;
use streamr_coord::Coordinator;
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, ProbeResult, SessionId, Signed, ViewerReceipt,
};
use tower::ServiceExt;

/// Status, content type and body of a GET.
async fn fetch(router: &axum::Router, path: &str) -> (StatusCode, String, String, Vec<u8>) {
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router never fails");
    let status = response.status();
    let header_of = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header_of(header::CONTENT_TYPE);
    let location = header_of(header::LOCATION);
    let body = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .expect("body")
        .to_vec();
    (status, content_type, location, body)
}

/// Every `/dashboard/assets/...` path a page's `src`/`href` attributes name.
fn asset_paths(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|part| part.starts_with("/dashboard/assets/"))
        .map(str::to_owned)
        .collect()
}

async fn coordinator(db: &TestDb) -> Coordinator {
    Coordinator::new(test_config(), db.storage().await)
}

#[tokio::test]
async fn root_redirects_to_the_dashboard() {
    let db = TestDb::sqlite().await;
    let router = coordinator(&db).await.router();
    let (status, _, location, _) = fetch(&router, "/").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location, "/dashboard");
}

#[tokio::test]
async fn pages_and_every_asset_they_reference_are_served_with_their_types() {
    let db = TestDb::sqlite().await;
    let router = coordinator(&db).await.router();
    for (page, must_contain) in [
        ("/dashboard", "<table id=\"nodes\""),
        ("/watch/show", "<video id=\"video\""),
    ] {
        let (status, content_type, _, body) = fetch(&router, page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(content_type, "text/html; charset=utf-8", "{page}");
        let html = String::from_utf8(body).expect("utf-8 page");
        assert!(html.contains(must_contain), "{page} lacks {must_contain}");
        let assets = asset_paths(&html);
        assert!(assets.len() >= 3, "{page} references {assets:?}");
        for asset in assets {
            let (status, content_type, _, body) = fetch(&router, &asset).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(!body.is_empty(), "{asset} is empty");
            let expected = match asset.rsplit('.').next() {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                _ => "text/plain; charset=utf-8",
            };
            assert_eq!(content_type, expected, "{asset}");
        }
    }
    let (status, content_type, _, _) = fetch(&router, "/dashboard/assets/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
}

#[tokio::test]
async fn the_player_script_uses_routes_the_api_serves() {
    let db = TestDb::sqlite().await;
    let router = coordinator(&db).await.router();
    let (_, _, _, script) = fetch(&router, "/dashboard/assets/watch.js").await;
    let script = String::from_utf8(script).expect("utf-8 script");
    for route in ["/play?viewer=", "/segments?limit=", "'/receipts'"] {
        assert!(script.contains(route), "watch.js no longer uses {route}");
    }
    // The receipt layout the page signs starts with streamr-core's tag.
    assert!(script.contains("streamr/receipt/v1\\0"));
}

#[tokio::test]
async fn the_snapshot_shows_streams_nodes_viewers_and_offload() {
    let db = TestDb::sqlite().await;
    let api = Client::new(coordinator(&db).await);
    let origin = KeyPair::from_seed([20; 32]);
    let (status, body) = api
        .post_admin(
            "/streams",
            &json!({ "id": "show", "title": "Launch", "origin_node": origin.node_id() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hash = segment_hash(b"segment 0");
    let (status, body) = api
        .post_admin(
            "/streams/show/segments",
            &json!({ "sequence": 0, "hash": hash, "published_ms": now_ms() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let digest: ContentDigest = digest(&body["segment"]["digest"]);

    let node = KeyPair::from_seed([21; 32]);
    let (status, body) = api
        .post("/nodes", &registration(&node, "http://10.0.21.1:8080"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&node, 1, &["show"]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, snapshot) = api.get("/dashboard/data.json").await;
    assert_eq!(status, StatusCode::OK, "{snapshot}");
    assert_eq!(snapshot["nodes"][0]["availability_ppm"], json!(null));
    assert_eq!(snapshot["streams"][0]["id"], "show");
    assert_eq!(snapshot["streams"][0]["title"], "Launch");
    assert_eq!(snapshot["streams"][0]["viewers"], 0);
    assert_eq!(snapshot["nodes"][0]["id"], node.node_id().to_string());
    assert_eq!(snapshot["nodes"][0]["status"], "online");
    assert_eq!(snapshot["nodes"][0]["streams"], json!(["show"]));
    for key in ["flags", "epochs", "payouts", "offload", "origins"] {
        assert!(snapshot[key].is_array(), "{key} missing: {snapshot}");
    }
    // The origin is shown with its stream and its newest report.
    assert_eq!(
        snapshot["origins"][0]["node_id"],
        origin.node_id().to_string()
    );
    assert_eq!(snapshot["origins"][0]["status"], "reporting", "{snapshot}");
    assert_eq!(snapshot["origins"][0]["streams"][0]["id"], "show");
    assert_eq!(snapshot["origins"][0]["streams"][0]["last_sequence"], 0);
    // Online but not probed: amber, with the reason.
    assert_eq!(snapshot["nodes"][0]["health"], "amber", "{snapshot}");
    assert!(snapshot["nodes"][0]["health_reason"]
        .as_str()
        .is_some_and(|r| r.contains("not probed")));
    assert_eq!(snapshot["nodes"][0]["earnings"]["paid"], 0, "{snapshot}");

    // One passed probe: the node is fully available this epoch.
    let probe = ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 80,
        throughput_bytes_per_s: 4_000_000,
    };
    let (status, body) = api.post_admin("/probes", &probe).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, snapshot) = api.get("/dashboard/data.json").await;
    assert_eq!(
        snapshot["nodes"][0]["availability_ppm"], 1_000_000,
        "{snapshot}"
    );
    assert_eq!(snapshot["nodes"][0]["probes"], 1, "{snapshot}");
    assert_eq!(snapshot["nodes"][0]["health"], "green", "{snapshot}");

    // A node that is online but refuses the probes' grants (every probe fails) is red.
    let refusing = KeyPair::from_seed([24; 32]);
    let (status, body) = api
        .post("/nodes", &registration(&refusing, "http://10.0.24.1:8080"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&refusing, 1, &["show"]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..2 {
        let failed = ProbeResult {
            node_id: refusing.node_id(),
            hash_ok: false,
            timed_out: true,
            ttfb_ms: 0,
            throughput_bytes_per_s: 0,
        };
        let (status, body) = api.post_admin("/probes", &failed).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, snapshot) = api.get("/dashboard/data.json").await;
    let row = snapshot["nodes"]
        .as_array()
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n["id"] == refusing.node_id().to_string())
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["status"], "online", "{row}");
    assert_eq!(row["health"], "red", "{row}");
    assert!(
        row["health_reason"]
            .as_str()
            .is_some_and(|r| r.contains("0 % of 2 probes passed") && r.contains("refuses grants")),
        "{row}"
    );

    // A viewer is granted a session at the healthy node and posts a receipt for 25 MB of
    // verified content. (The refusing node still has its newcomer's weight in routing, and the
    // pick is seeded per epoch: the viewer leaves it out so the pick is the same in every epoch.)
    let viewer = KeyPair::from_seed([22; 32]);
    let (status, play) = api
        .get(&format!(
            "/streams/show/play?viewer={}&exclude={}",
            viewer.viewer_key(),
            refusing.node_id()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{play}");
    assert_eq!(play["node_id"], node.node_id().to_string(), "{play}");
    let session: SessionId = play["grant"]["body"]["session_id"]
        .as_str()
        .expect("session id")
        .parse()
        .expect("hex session id");
    let receipt = Signed::sign(
        ViewerReceipt {
            session_id: session,
            seq: 1,
            bytes_total: 25_000_000,
            last_segment_seq: 0,
            segments_digest: digest,
            t_ms: now_ms(),
        },
        &viewer,
    );
    let (status, outcome) = api
        .post("/receipts", &json!({ "receipts": [receipt] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");

    // The viewer could not play at its node and asks for another: the node turns amber and
    // says why.
    api.get(&format!(
        "/streams/show/play?viewer={}&exclude={}",
        viewer.viewer_key(),
        node.node_id()
    ))
    .await;
    let (_, snapshot) = api.get("/dashboard/data.json").await;
    let row = snapshot["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == node.node_id().to_string()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["health"], "amber", "{row}");
    assert!(
        row["health_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("1 viewer could not play here")),
        "{row}"
    );

    let (_, snapshot) = api.get("/dashboard/data.json").await;
    assert_eq!(snapshot["streams"][0]["viewers"], 1, "{snapshot}");
    // 25 MB over the 30 s viewer window: 6.67 Mbit/s.
    assert_eq!(
        snapshot["streams"][0]["bitrate_bps"], 6_666_666,
        "{snapshot}"
    );
    assert_eq!(snapshot["totals"]["receipts"], 1, "{snapshot}");
    let (status, credited) = api
        .get(&format!("/dashboard/viewers/{}", viewer.viewer_key()))
        .await;
    assert_eq!(status, StatusCode::OK, "{credited}");
    assert_eq!(credited["sessions"][0]["session_id"], session.to_string());
    assert_eq!(credited["sessions"][0]["receipts"], 1, "{credited}");
    assert_eq!(
        credited["sessions"][0]["bytes_total"], 25_000_000,
        "{credited}"
    );
    let stranger = KeyPair::from_seed([23; 32]);
    let (_, none) = api
        .get(&format!("/dashboard/viewers/{}", stranger.viewer_key()))
        .await;
    assert_eq!(none["sessions"], json!([]), "{none}");
    let (status, _) = api.get("/dashboard/viewers/not-a-key").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let served: i64 = snapshot["offload"]
        .as_array()
        .expect("offload series")
        .iter()
        .filter_map(|p| p["viewer_bytes"].as_i64())
        .sum();
    assert_eq!(served, 25_000_000, "{snapshot}");

    // Once the epoch is settled, the snapshot shows what the ledger API says the node earned,
    // the node in the statement's leaves (so the page can fetch its proof) and the flags with
    // their evidence.
    let config = test_config();
    wait_for_epoch_end(&config, now_ms()).await;
    let settled = api.coordinator.settle_due().await.expect("settle");
    assert!(settled >= 1);
    let (_, snapshot) = api.get("/dashboard/data.json").await;
    let (_, earnings) = api
        .get(&format!("/nodes/{}/earnings", node.node_id()))
        .await;
    let node_id = node.node_id().to_string();
    let epochs = snapshot["epochs"].as_array().expect("epochs");
    let charted: i64 = epochs
        .iter()
        .filter_map(|e| e["earnings"][&node_id].as_i64())
        .sum();
    assert_eq!(Some(charted), earnings["total"].as_i64(), "{earnings}");
    assert!(
        epochs.iter().all(|e| e["leaves"]
            .as_array()
            .is_some_and(|l| l.contains(&json!(node_id)))),
        "{snapshot}"
    );
    let (_, listed) = api.get("/epochs").await;
    assert_eq!(epochs.len(), listed.as_array().map_or(0, Vec::len));
    // Penalties per node per epoch (for the chart's marks) agree with the epoch totals.
    for epoch in epochs {
        let marked: i64 = epoch["penalised"]
            .as_object()
            .expect("penalised")
            .values()
            .filter_map(serde_json::Value::as_i64)
            .sum();
        assert_eq!(Some(marked), epoch["penalties"].as_i64(), "{epoch}");
    }
    // The node's row and its payouts endpoint agree on the stages.
    let (status, payouts) = api.get(&format!("/nodes/{}/payouts", node.node_id())).await;
    assert_eq!(status, StatusCode::OK, "{payouts}");
    let row = snapshot["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == node_id))
        .cloned()
        .unwrap_or_default();
    for stage in ["unvested", "vested", "pending", "paid"] {
        assert_eq!(row["earnings"][stage], payouts[stage], "{stage}: {row}");
    }
    assert_eq!(payouts["earned"], earnings["total"], "{payouts}");
    // 25 MB acknowledged moments into the session is far over the stream's rate: the
    // fraud rules drop it, and the snapshot shows the rule with its evidence.
    let flags = snapshot["flags"].as_array().expect("flags");
    let over = flags
        .iter()
        .find(|f| f["node_id"] == node_id && f["rule"] == "over_bitrate")
        .unwrap_or_else(|| panic!("no over_bitrate flag: {snapshot}"));
    assert!(over["detail"]
        .as_str()
        .is_some_and(|d| d.contains("\"bytes_total\":25000000")));
}
