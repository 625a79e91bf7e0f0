//! An in-process network for the client's tests: a coordinator on SQLite, an origin node,
//! friend nodes relaying it and the shipped sample published to the origin in a loop.

use std::path::Path;
use std::time::Duration;

use streamr_client::wire::SegmentInfo;
use streamr_client::CoordinatorClient;
use streamr_coord::{connect, CoordConfig, Coordinator, RateLimit, ServeHandle};
use streamr_media::publish::{publish_flv, FlvSource, PublishError, PublishOptions, PublishReport};
use streamr_media::RtmpUrl;
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The coordinator's admin token.
const ADMIN: &str = "client-tests-admin";

/// A running network publishing the stream `show`.
pub struct Network {
    _dir: tempfile::TempDir,
    /// The coordinator.
    pub server: ServeHandle,
    /// The node the sample is published to.
    pub origin: RunningNode,
    /// The friend nodes relaying the origin.
    pub friends: Vec<RunningNode>,
    stop: CancellationToken,
    publisher: tokio::task::JoinHandle<Result<PublishReport, PublishError>>,
}

impl Network {
    /// A coordinator, an origin publishing the sample in a loop and `friends` friend nodes,
    /// once the origin reported segments for which `ready` holds and every friend sent a
    /// heartbeat (at most 30 s).
    pub async fn start(friends: usize, ready: impl Fn(&[SegmentInfo]) -> bool) -> Network {
        let dir = tempfile::tempdir().expect("temporary directory");
        let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .expect("storage");
        let config = CoordConfig {
            admin_token: Some(ADMIN.into()),
            // The nodes, the publisher and the viewer share the loopback address.
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
            if ready(&segments) && friends_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no segment ready from the origin ({} reported) or no heartbeat from the friends",
                segments.len()
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

    /// Stops the publisher, the nodes and the coordinator.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.publisher.await;
        for friend in self.friends {
            friend.shutdown().await;
        }
        self.origin.shutdown().await;
        self.server.shutdown().await.expect("the coordinator stops");
    }
}
