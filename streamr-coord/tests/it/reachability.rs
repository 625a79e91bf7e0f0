//! Connect-back reachability checks with real sockets: a node advertising closed ports is
//! marked unreachable (its report names the ports to forward) and never gets a viewer; once
//! something answers on those ports (an RTMP handshake, `GET /healthz`), the next check marks
//! it reachable and viewers are routed to it. Runs against SQLite and PostgreSQL.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::NodeRegistration;
use streamr_coord::Coordinator;
use streamr_core::{KeyPair, Signed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

on_both_backends!(a_node_behind_closed_ports_gets_no_viewers_until_they_open);

/// A port nothing listens on (bound once by the OS, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Answers RTMP handshakes on `listener`: reads C0+C1, sends S0+S1+S2, closes.
fn serve_rtmp_handshakes(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut c0c1 = vec![0u8; 1537];
                if socket.read_exact(&mut c0c1).await.is_ok() {
                    let mut answer = vec![0u8; 1 + 1536 * 2];
                    answer[0] = 3;
                    let _ = socket.write_all(&answer).await;
                }
            });
        }
    })
}

/// Serves `GET /healthz` on `listener`.
fn serve_healthz(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

async fn reachability_of(api: &Client, id: &str) -> Value {
    let (status, body) = api.get(&format!("/nodes/{id}/reachability")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls the node's reachability until its status is `want` (checks run every 200 ms).
async fn wait_for_status(api: &Client, id: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = reachability_of(api, id).await;
        if body["status"] == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_node_behind_closed_ports_gets_no_viewers_until_they_open(db: &TestDb) {
    let mut config = test_config();
    config.reachability_interval = Some(Duration::from_millis(200));
    config.reachability_timeout = Duration::from_secs(1);
    config.worker_interval = Duration::from_millis(50);
    let api = Client::new(Coordinator::new(config, db.storage().await));
    let workers = api.coordinator.spawn_workers();
    let (status, body) = api
        .post_admin("/streams", &json!({ "id": "show", "title": "test" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (rtmp_port, http_port) = (closed_port().await, closed_port().await);
    let node = KeyPair::from_seed([7; 32]);
    let id = node.node_id().to_string();
    let registration = Signed::sign(
        NodeRegistration {
            operator_membership: None,
            node_id: node.node_id(),
            payout_address: "payout".into(),
            operator: "friend".into(),
            rtmp_url: format!("rtmp://127.0.0.1:{rtmp_port}/live"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            capacity_kbps: 50_000,
            timestamp_ms: now_ms(),
        },
        &node,
    );
    let (status, body) = api.post("/nodes", &registration).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&node, 1, &["show"]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let closed = wait_for_status(&api, &id, "unreachable").await;
    assert_eq!(closed["rtmp_reachable"], false, "{closed}");
    assert_eq!(closed["http_reachable"], false, "{closed}");
    let hint = closed["hint"].as_str().expect("a hint");
    assert!(
        hint.contains(&format!("TCP {rtmp_port} (RTMP)"))
            && hint.contains(&format!("TCP {http_port} (HTTP)")),
        "the hint names both ports: {hint}"
    );
    let viewer = "ab".repeat(32);
    let play = format!("/streams/show/play?viewer={viewer}");
    let (status, body) = api.get(&play).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an unreachable node gets no viewer: {body}"
    );
    let (status, report) = api.get(&format!("/nodes/{id}/report")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["reachability"]["status"], "unreachable", "{report}");
    let (status, dashboard) = api.get("/dashboard/data.json").await;
    assert_eq!(status, StatusCode::OK, "{dashboard}");
    let row = &dashboard["nodes"][0];
    assert!(
        row["unreachable"]
            .as_str()
            .is_some_and(|h| h.contains(&format!("TCP {rtmp_port}"))),
        "the dashboard says which port to forward: {row}"
    );

    // The operator forwards the ports: both answer from now on.
    let rtmp = serve_rtmp_handshakes(
        TcpListener::bind(("127.0.0.1", rtmp_port))
            .await
            .expect("rebind the RTMP port"),
    );
    let http = serve_healthz(
        TcpListener::bind(("127.0.0.1", http_port))
            .await
            .expect("rebind the HTTP port"),
    );
    let open = wait_for_status(&api, &id, "reachable").await;
    assert_eq!(open["hint"], Value::Null, "{open}");
    let (status, body) = api.get(&play).await;
    assert_eq!(status, StatusCode::OK, "a reachable node is routed: {body}");
    assert_eq!(body["node_id"], id.as_str(), "{body}");
    let (_, dashboard) = api.get("/dashboard/data.json").await;
    assert_eq!(dashboard["nodes"][0]["unreachable"], Value::Null);

    workers.shutdown().await;
    rtmp.abort();
    http.abort();
}
