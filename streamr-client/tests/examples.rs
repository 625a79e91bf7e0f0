//! Every program in `examples/` runs here against an in-process network (a coordinator on
//! SQLite, an origin node, the shipped sample published in a loop), so none rots.
#![allow(dead_code)] // the examples' `main`s

#[path = "../examples/verifying_viewer.rs"]
mod verifying_viewer;

use std::path::Path;
use std::time::Duration;

use streamr_client::CoordinatorClient;
use streamr_coord::{connect, CoordConfig, Coordinator, RateLimit};
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::RtmpUrl;
use streamr_node::{CoordinatorConfig, Node, NodeConfig};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "examples-admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_viewer_verifies_segments_and_gets_its_receipts_accepted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .expect("storage");
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        // The node, the publisher and the viewer share the loopback address.
        rate_limit: Some(RateLimit {
            per_second: 10_000,
            burst: 20_000,
        }),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, storage);
    let coordinator_key = coordinator.coordinator_key();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = coordinator
        .spawn_serve(listener)
        .expect("coordinator serves");
    let admin = CoordinatorClient::new(&server.url())
        .expect("client")
        .with_admin_token(ADMIN);
    let stream_key = admin
        .create_stream("show", "Show")
        .await
        .expect("stream created")
        .stream_key;

    let origin = Node::start(NodeConfig {
        rtmp_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        identity: dir.path().join("origin.key"),
        coordinator: Some(CoordinatorConfig {
            url: server.url(),
            key: Some(coordinator_key),
        }),
        heartbeat_interval: Duration::from_millis(500),
        ..NodeConfig::default()
    })
    .await
    .expect("the origin starts");
    // A friend node relaying the origin: the coordinator routes viewers to friend nodes.
    let friend = Node::start(NodeConfig {
        rtmp_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        identity: dir.path().join("friend.key"),
        upstreams: vec![format!("rtmp://{}", origin.rtmp_addr())],
        coordinator: Some(CoordinatorConfig {
            url: server.url(),
            key: Some(coordinator_key),
        }),
        heartbeat_interval: Duration::from_millis(500),
        ..NodeConfig::default()
    })
    .await
    .expect("the friend node starts");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv");
    let source = FlvSource::read(&sample).expect("the sample");
    let url = RtmpUrl::parse(&format!(
        "rtmp://{}/live/show?key={stream_key}",
        origin.rtmp_addr()
    ))
    .expect("publish URL");
    let stop = CancellationToken::new();
    let options = PublishOptions::looped(stop.clone());
    let publisher = tokio::spawn(async move { publish_flv(&source, &url, &options).await });

    // The viewer is for a live stream on a running network: wait until the origin reported a
    // segment and the friend node sent a heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let friend_id = friend.node_id().to_string();
    loop {
        let segments = admin.segments("show", 1).await.map_or(0, |s| s.len());
        let nodes = admin.nodes().await.unwrap_or_default();
        let friend_up = nodes
            .iter()
            .any(|n| n.id == friend_id && n.last_heartbeat_ms.is_some());
        if segments > 0 && friend_up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no segment from the origin ({segments}) or no heartbeat from the friend"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = verifying_viewer::watch(&server.url(), "show", 1, Duration::from_secs(30))
        .await
        .expect("the viewer ran");
    assert!(stats.verified_segments >= 1, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert!(stats.receipts_accepted >= 1, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");

    stop.cancel();
    let _ = publisher.await;
    friend.shutdown().await;
    origin.shutdown().await;
    server.shutdown().await.expect("the coordinator stops");
}
