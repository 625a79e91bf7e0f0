//! The viewer in LL-HLS mode against an in-process network (a coordinator on SQLite, an origin
//! node, friend nodes relaying it, the shipped sample published in a loop): it plays part by
//! part at the live edge, every part checked against the origin's part hashes.

use std::path::Path;
use std::time::Duration;

use streamr_client::viewer::{Viewer, ViewerConfig, ViewerStats};
use streamr_client::CoordinatorClient;
use streamr_coord::{connect, CoordConfig, Coordinator, RateLimit, ServeHandle};
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::RtmpUrl;
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "ll-watch-admin";

struct Network {
    _dir: tempfile::TempDir,
    server: ServeHandle,
    origin: RunningNode,
    friends: Vec<RunningNode>,
    stop: CancellationToken,
    publisher: tokio::task::JoinHandle<
        Result<streamr_media::publish::PublishReport, streamr_media::publish::PublishError>,
    >,
}

impl Network {
    /// A coordinator, an origin publishing the sample in a loop and `friends` friend nodes,
    /// once the origin reported a segment and every friend sent a heartbeat.
    async fn start(friends: usize) -> Network {
        let dir = tempfile::tempdir().expect("temporary directory");
        let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .expect("storage");
        let config = CoordConfig {
            admin_token: Some(ADMIN.into()),
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
        let node_config = |name: &str, upstreams: Vec<String>| NodeConfig {
            rtmp_listen: ([127, 0, 0, 1], 0).into(),
            http_listen: ([127, 0, 0, 1], 0).into(),
            identity: dir.path().join(format!("{name}.key")),
            upstreams,
            coordinator: Some(CoordinatorConfig {
                url: server.url(),
                key: Some(coordinator_key),
            }),
            heartbeat_interval: Duration::from_millis(500),
            ..NodeConfig::default()
        };
        let origin = Node::start(node_config("origin", Vec::new()))
            .await
            .expect("the origin starts");
        let mut started = Vec::new();
        for i in 0..friends {
            let upstream = vec![format!("rtmp://{}", origin.rtmp_addr())];
            started.push(
                Node::start(node_config(&format!("friend{i}"), upstream))
                    .await
                    .expect("a friend node starts"),
            );
        }
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
        let deadline = Instant::now() + Duration::from_secs(30);
        let ids: Vec<String> = started.iter().map(|n| n.node_id().to_string()).collect();
        loop {
            let segments = admin.segments("show", 1).await.unwrap_or_default();
            let nodes = admin.nodes().await.unwrap_or_default();
            let friends_up = ids.iter().all(|id| {
                nodes
                    .iter()
                    .any(|n| &n.id == id && n.last_heartbeat_ms.is_some())
            });
            if segments.iter().any(|s| s.ll.is_some()) && friends_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no LL-HLS segment from the origin or no heartbeat from the friends"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Network {
            _dir: dir,
            server,
            origin,
            friends: started,
            stop,
            publisher,
        }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.publisher.await;
        for friend in self.friends {
            friend.shutdown().await;
        }
        self.origin.shutdown().await;
        self.server.shutdown().await.expect("the coordinator stops");
    }
}

/// Waits (at most 30 s) until `done` holds for the viewer's counters.
async fn wait_for(viewer: &Viewer, what: &str, done: impl Fn(&ViewerStats) -> bool) {
    let mut stats = viewer.watch_stats();
    let outcome = tokio::time::timeout(Duration::from_secs(30), stats.wait_for(|s| done(s))).await;
    assert!(matches!(outcome, Ok(Ok(_))), "{what}: {:?}", viewer.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_outputs_verified_parts_at_the_live_edge() {
    let network = Network::start(1).await;
    let out = tempfile::NamedTempFile::new().expect("output file");
    let file = tokio::fs::File::create(out.path()).await.expect("output");
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, Some(Box::new(file))).expect("the viewer starts");
    // Two segments' worth of parts verified, and a whole segment chained into receipts.
    wait_for(&viewer, "parts and a segment verified", |s| {
        s.verified_parts >= 8 && s.verified_segments >= 1 && s.receipts_accepted >= 1
    })
    .await;
    // At the live edge: the part output last was the newest the node listed (or the one it
    // was producing), not one of a backlog; parts are 350 ms, segments several parts long.
    let mut behind = Vec::new();
    for _ in 0..5 {
        let parts = viewer.stats().parts;
        wait_for(&viewer, "another part", |s| s.parts > parts).await;
        behind.push(viewer.stats().last_part_behind);
    }
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(
        behind.iter().all(|b| b.is_some_and(|b| b <= 1)),
        "parts listed after the one output: {behind:?}"
    );
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_parts, 0, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    // What a player reads: the init segment, then fMP4 fragments.
    let written = std::fs::read(out.path()).expect("the output");
    assert_eq!(
        written.get(4..8),
        Some(&b"ftyp"[..]),
        "starts with the init segment"
    );
    let fragments = written.windows(4).filter(|w| *w == b"moof").count();
    assert!(
        fragments as u64 >= stats.parts,
        "{fragments} fragments for {} parts",
        stats.parts
    );
    network.shutdown().await;
}
