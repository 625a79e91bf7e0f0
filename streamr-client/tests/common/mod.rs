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
    coordinator_key: streamr_core::CoordinatorKey,
    /// Signs grants the tests give themselves ([`Network::grant_url`]).
    coordinator_pair: streamr_core::KeyPair,
}

/// A node of the test network: on loopback, joined to the coordinator at `url`, its key in
/// `dir`, advertising `advertise_http` to viewers when given (else its own address).
fn node_config(
    dir: &Path,
    url: &str,
    coordinator_key: streamr_core::CoordinatorKey,
    name: &str,
    upstreams: Vec<String>,
    advertise_http: Option<String>,
) -> NodeConfig {
    NodeConfig {
        rtmp_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        identity: dir.join(format!("{name}.key")),
        upstreams,
        coordinator: Some(CoordinatorConfig {
            url: url.to_owned(),
            key: Some(coordinator_key),
        }),
        heartbeat_interval: Duration::from_millis(500),
        advertise_http,
        ..NodeConfig::default()
    }
}

impl Network {
    /// A coordinator, an origin publishing the sample in a loop and `friends` friend nodes,
    /// once the origin reported segments for which `ready` holds and every friend sent a
    /// heartbeat (at most 30 s).
    pub async fn start(friends: usize, ready: impl Fn(&[SegmentInfo]) -> bool) -> Network {
        Network::start_with(&vec![None; friends], ready).await
    }

    /// Like [`Network::start`], with one friend per entry of `friends`, each advertising the
    /// HTTP address given there to viewers (e.g. a proxy in front of it) or its own.
    pub async fn start_with(
        friends: &[Option<String>],
        ready: impl Fn(&[SegmentInfo]) -> bool,
    ) -> Network {
        let dir = tempfile::tempdir().expect("temporary directory");
        let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .expect("storage");
        let coordinator_pair = streamr_core::KeyPair::generate(&mut rand::rngs::OsRng);
        let config = CoordConfig {
            coordinator_key: coordinator_pair.clone(),
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
        let url = server.url();
        let config = |name: &str, upstreams, advertise| {
            node_config(
                dir.path(),
                &url,
                coordinator_key,
                name,
                upstreams,
                advertise,
            )
        };
        let origin = Node::start(config("origin", Vec::new(), None))
            .await
            .expect("the origin starts");
        let mut started = Vec::new();
        for (i, advertise) in friends.iter().enumerate() {
            let upstream = vec![format!("rtmp://{}", origin.rtmp_addr())];
            started.push(
                Node::start(config(&format!("friend{i}"), upstream, advertise.clone()))
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
            coordinator_key,
            coordinator_pair,
        }
    }

    /// `path` under `node`'s `/live/show/` with a grant for that node signed by the coordinator
    /// (a viewer's URL, without asking the coordinator to route).
    pub fn grant_url(&self, node: &RunningNode, path: &str) -> String {
        let grant = streamr_core::Signed::sign(
            streamr_core::SessionGrant {
                session_id: streamr_core::SessionId::from_bytes(rand::random()),
                viewer: streamr_core::KeyPair::generate(&mut rand::rngs::OsRng).viewer_key(),
                node_id: node.node_id(),
                stream_id: streamr_core::StreamId::new("show").expect("a valid stream id"),
                max_bytes: 1 << 30,
                expiry_ms: streamr_client::client::unix_ms() + 300_000,
            },
            &self.coordinator_pair,
        );
        streamr_core::grant_token::with_grant(
            &format!("http://{}/live/show/{path}", node.http_addr()),
            &grant,
        )
    }

    /// Starts one more friend node (advertising `advertise_http` when given) and waits (at
    /// most 30 s) for its first heartbeat.
    pub async fn add_friend(&mut self, advertise_http: Option<String>) -> &RunningNode {
        let name = format!("friend{}", self.friends.len());
        let upstream = vec![format!("rtmp://{}", self.origin.rtmp_addr())];
        let config = node_config(
            self._dir.path(),
            &self.server.url(),
            self.coordinator_key,
            &name,
            upstream,
            advertise_http,
        );
        let friend = Node::start(config).await.expect("a friend node starts");
        let id = friend.node_id().to_string();
        let admin = CoordinatorClient::new(&self.server.url())
            .expect("client")
            .with_admin_token(ADMIN);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = admin.nodes().await.unwrap_or_default();
            if nodes
                .iter()
                .any(|n| n.id == id && n.last_heartbeat_ms.is_some())
            {
                break;
            }
            assert!(Instant::now() < deadline, "no heartbeat from {name}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.friends.push(friend);
        &self.friends[self.friends.len() - 1]
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
