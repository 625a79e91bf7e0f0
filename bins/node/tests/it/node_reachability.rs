//! A node learns from the coordinator whether viewers can reach it: with real listeners on
//! loopback the coordinator's connect-back check passes and `/healthz` says `reachable`; a node
//! advertising an RTMP port nothing listens on (as behind a home router without a forwarded
//! port) is `unreachable`, and `/healthz` names the port to forward.

use crate::common;

use common::eventually;

use std::time::Duration;

use streamr_coord::{CoordConfig, Coordinator};
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};

async fn healthz(node: &RunningNode) -> serde_json::Value {
    let url = format!("http://{}/healthz", node.http_addr());
    let response = reqwest::get(&url).await.expect("GET /healthz");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_whether_the_coordinator_reached_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let storage = common::sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        reachability_interval: Some(Duration::from_millis(500)),
        reachability_timeout: Duration::from_secs(1),
        worker_interval: Duration::from_millis(100),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, storage);
    let server = common::serve_on_loopback(&coordinator).await;
    let workers = coordinator.spawn_workers();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let node_config = |name: &str, advertise_rtmp: Option<String>| NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        identity: dir.path().join(format!("{name}.key")),
        heartbeat_interval: Duration::from_millis(500),
        coordinator: Some(CoordinatorConfig {
            url: server.url(),
            key: None,
        }),
        advertise_rtmp,
        // Relays join the network (an origin does not register); this upstream is never pulled.
        upstreams: vec!["rtmp://127.0.0.1:9".into()],
        ..NodeConfig::default()
    };
    let open = Node::start(node_config("open", None)).await.unwrap();
    let hidden = Node::start(node_config(
        "hidden",
        Some(format!("rtmp://127.0.0.1:{closed_port}/live")),
    ))
    .await
    .unwrap();

    let reachable = eventually("the open node to be reachable", || async {
        let health = healthz(&open).await;
        (health["reachability"] == "reachable").then_some(health)
    })
    .await;
    assert_eq!(reachable["hint"], serde_json::Value::Null, "{reachable}");
    let unreachable = eventually("the hidden node to be unreachable", || async {
        let health = healthz(&hidden).await;
        (health["reachability"] == "unreachable").then_some(health)
    })
    .await;
    let hint = unreachable["hint"].as_str().expect("a hint");
    assert!(
        hint.contains(&format!("TCP {closed_port} (RTMP)")) && !hint.contains("(HTTP)"),
        "names only the closed RTMP port: {hint}"
    );

    open.shutdown().await;
    hidden.shutdown().await;
    workers.shutdown().await;
    let _ = server.shutdown().await;
}
