//! The dashboard and player pages: served with the right types and headers, every asset they
//! reference exists, and the JSON snapshot the dashboard polls reflects the network.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::json;
use streamr_coord::Coordinator;
use streamr_core::{segment_hash, ContentDigest, KeyPair, SessionId, Signed, ViewerReceipt};
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
    let (status, body) = api
        .post_admin("/streams", &json!({ "id": "show", "title": "Launch" }))
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
    assert_eq!(snapshot["streams"][0]["id"], "show");
    assert_eq!(snapshot["streams"][0]["title"], "Launch");
    assert_eq!(snapshot["streams"][0]["viewers"], 0);
    assert_eq!(snapshot["nodes"][0]["id"], node.node_id().to_string());
    assert_eq!(snapshot["nodes"][0]["status"], "online");
    assert_eq!(snapshot["nodes"][0]["availability_ppm"], json!(null));
    assert_eq!(snapshot["nodes"][0]["streams"], json!(["show"]));
    for key in ["flags", "epochs", "payouts", "offload"] {
        assert!(snapshot[key].is_array(), "{key} missing: {snapshot}");
    }

    // A viewer is granted a session and posts a receipt for 250 kB of verified content.
    let viewer = KeyPair::from_seed([22; 32]);
    let (status, play) = api
        .get(&format!(
            "/streams/show/play?viewer={}",
            viewer.viewer_key()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{play}");
    let session: SessionId = play["grant"]["body"]["session_id"]
        .as_str()
        .expect("session id")
        .parse()
        .expect("hex session id");
    let receipt = Signed::sign(
        ViewerReceipt {
            session_id: session,
            seq: 1,
            bytes_total: 250_000,
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

    let (_, snapshot) = api.get("/dashboard/data.json").await;
    assert_eq!(snapshot["streams"][0]["viewers"], 1, "{snapshot}");
    // 250 kB over the 30 s viewer window: 66 kbit/s.
    assert_eq!(snapshot["streams"][0]["bitrate_bps"], 66_666, "{snapshot}");
    assert_eq!(snapshot["totals"]["receipts"], 1, "{snapshot}");
    let (status, credited) = api
        .get(&format!("/dashboard/viewers/{}", viewer.viewer_key()))
        .await;
    assert_eq!(status, StatusCode::OK, "{credited}");
    assert_eq!(credited["sessions"][0]["session_id"], session.to_string());
    assert_eq!(credited["sessions"][0]["receipts"], 1, "{credited}");
    assert_eq!(
        credited["sessions"][0]["bytes_total"], 250_000,
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
    assert_eq!(served, 250_000, "{snapshot}");
}
