//! A three-tier relay chain built by the coordinator (fan-out 1): origin → A → B → C, each
//! relay asking the coordinator for its upstream when a viewer asks it for the stream. ffmpeg
//! publishes at the origin; the HLS segments C serves (after the first, cut from where it
//! joined) hash exactly as the origin reported them. Then B shuts down: C falls back up its chain at once, is re-parented under A by the
//! coordinator, and keeps serving segments that still match the origin's hashes. Every relay
//! signs receipts for what its parent delivered, which the coordinator verifies and credits.

mod common;

use common::{eventually, ffmpeg_publish};

use std::sync::Arc;
use std::time::Duration;

use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::{connect, CoordConfig, Coordinator, ServeHandle, Storage};
use streamr_core::{segment_hash, KeyPair, SessionGrant, SessionId, Signed, StreamId};
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};

const ADMIN: &str = "relay-tree-admin";

struct Network {
    url: String,
    config: CoordConfig,
    storage: Arc<dyn Storage>,
    coordinator_key: KeyPair,
    dir: tempfile::TempDir,
    server: Option<ServeHandle>,
}

impl Network {
    async fn start() -> Network {
        let dir = tempfile::tempdir().unwrap();
        let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let config = CoordConfig {
            admin_token: Some(ADMIN.into()),
            relay_fanout: 1,
            rate_limit: None,
            ..CoordConfig::default()
        };
        let coordinator_key = config.coordinator_key.clone();
        let coordinator = Coordinator::new(config.clone(), storage.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = coordinator.spawn_serve(listener).unwrap();
        Network {
            url: server.url(),
            config,
            storage,
            coordinator_key,
            dir,
            server: Some(server),
        }
    }

    fn node_config(&self, name: &str) -> NodeConfig {
        NodeConfig {
            rtmp_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            identity: self.dir.path().join(format!("{name}.key")),
            heartbeat_interval: Duration::from_millis(500),
            operator: name.into(),
            payout_address: format!("0x{name}"),
            coordinator: Some(CoordinatorConfig {
                url: self.url.clone(),
                key: Some(self.coordinator_key.coordinator_key()),
            }),
            ..NodeConfig::default()
        }
    }

    async fn relay(&self, name: &str, origin: &RunningNode) -> RunningNode {
        Node::start(NodeConfig {
            // The static list names only the origin: the tree puts relays below each other.
            upstreams: vec![format!("rtmp://{}", origin.rtmp_addr())],
            ..self.node_config(name)
        })
        .await
        .unwrap()
    }

    /// A grant for a test viewer on `node`, signed as the coordinator would.
    fn grant(&self, node: &RunningNode) -> String {
        let grant = SessionGrant {
            session_id: SessionId::from_bytes(rand::random()),
            viewer: KeyPair::generate(&mut rand::rngs::OsRng).viewer_key(),
            node_id: node.node_id(),
            stream_id: StreamId::new("show").unwrap(),
            max_bytes: 1 << 40,
            expiry_ms: unix_ms() + 600_000,
        };
        streamr_coord::grant_token::encode(&Signed::sign(grant, &self.coordinator_key))
    }

    /// Bytes the coordinator verified for `parent` from receipts `child` signed on its edge
    /// grant (this epoch and the one before), once there are some.
    async fn edge_bytes(&self, parent: &RunningNode, child: &RunningNode) -> Option<i64> {
        let now = i64::try_from(unix_ms()).ok()?;
        let epoch = self.config.epoch_of(now);
        let parent_id = parent.node_id().to_string();
        let child_id = child.node_id().to_string();
        let mut bytes = 0;
        for epoch in [epoch - 1, epoch] {
            for receipt in self.storage.receipts_for_epoch(epoch).await.ok()? {
                if receipt.node_id != parent_id {
                    continue;
                }
                let session = self.storage.get_session(&receipt.session_id).await.ok()??;
                if session.viewer == child_id {
                    bytes += receipt.bytes_delta;
                }
            }
        }
        (bytes > 0).then_some(bytes)
    }

    /// The stored parent of `node` in the stream's tree.
    async fn parent(&self, node: &RunningNode) -> Option<String> {
        let id = node.node_id().to_string();
        let tree = self
            .storage
            .assign_relay_parent("show", &id, 0, &|_| None)
            .await
            .ok()?;
        tree.into_iter()
            .find(|a| a.node_id == id)
            .map(|a| a.parent_id)
    }
}

/// The newest segment `node` lists in its HLS playlist (sequence and bytes), once it lists
/// one newer than `after`.
async fn newest_segment(
    network: &Network,
    node: &RunningNode,
    after: Option<u64>,
) -> Option<(u64, Vec<u8>)> {
    let grant = network.grant(node);
    let playlist = reqwest::get(format!(
        "http://{}/live/show.m3u8?grant={grant}",
        node.http_addr()
    ))
    .await
    .ok()?;
    if !playlist.status().is_success() {
        return None;
    }
    let text = playlist.text().await.ok()?;
    let sequence: u64 = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split('?').next()?.rsplit('/').next()?.strip_suffix(".ts"))
        .filter_map(|s| s.parse().ok())
        .max()?;
    if after.is_some_and(|a| sequence <= a) {
        return None;
    }
    let bytes = reqwest::get(format!(
        "http://{}/live/show/{sequence}.ts?grant={grant}",
        node.http_addr()
    ))
    .await
    .ok()?
    .bytes()
    .await
    .ok()?;
    Some((sequence, bytes.to_vec()))
}

/// Waits for a segment newer than `after` at `node` and checks that its hash is one the
/// origin reported (matched by hash, as the prober does: a relay numbers its segments from
/// where it joined); returns the node's sequence of it.
async fn matching_segment(network: &Network, node: &RunningNode, after: Option<u64>) -> u64 {
    let api = CoordinatorClient::new(&network.url).unwrap();
    let (sequence, bytes) =
        eventually("a new segment", || newest_segment(network, node, after)).await;
    let hash = segment_hash(&bytes).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let segments = api.segments("show", 50).await.unwrap_or_default();
        if segments.iter().any(|s| s.hash == hash) {
            return sequence;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "segment {sequence} ({hash}) is none of the origin's: {:?}",
            segments
                .iter()
                .map(|s| (s.sequence, &s.hash))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn a_three_tier_chain_keeps_the_origins_segments_and_heals_when_the_middle_goes() {
    let network = Network::start().await;
    let admin = CoordinatorClient::new(&network.url)
        .unwrap()
        .with_admin_token(ADMIN);
    let stream_key = admin
        .create_stream("show", "Show")
        .await
        .unwrap()
        .stream_key;
    let origin = Node::start(network.node_config("origin")).await.unwrap();
    let _publisher = ffmpeg_publish(
        &format!("rtmp://{}/live/show?key={stream_key}", origin.rtmp_addr()),
        60,
    );
    let a = network.relay("a", &origin).await;
    let b = network.relay("b", &origin).await;
    let c = network.relay("c", &origin).await;
    let api = CoordinatorClient::new(&network.url).unwrap();
    for relay in [&a, &b, &c] {
        let id = relay.node_id().to_string();
        eventually("the relay's heartbeat", || async {
            let node = api.node(&id).await.ok()?;
            (node.active && node.last_heartbeat_ms.is_some()).then_some(())
        })
        .await;
    }
    eventually("the origin bound", || async {
        api.stream("show").await.ok()?.origin_node
    })
    .await;

    // Viewers ask A, then B, then C: each relay asks the coordinator for its place.
    let mut first = 0;
    for relay in [&a, &b, &c] {
        (first, _) = eventually("the relay serves the stream", || {
            newest_segment(&network, relay, None)
        })
        .await;
    }
    let origin_id = origin.node_id().to_string();
    assert_eq!(network.parent(&a).await, Some(origin_id));
    assert_eq!(network.parent(&b).await, Some(a.node_id().to_string()));
    assert_eq!(network.parent(&c).await, Some(b.node_id().to_string()));

    // Two tiers below A, C serves the origin's segments byte for byte (from its second
    // segment on: the first starts where C joined).
    let seen = matching_segment(&network, &c, Some(first)).await;
    // Each relay checks what it cuts against the origin's hashes and signs receipts for its
    // parent on the grant of their edge: the coordinator verified bytes on both relay edges.
    // (The origin here registers no address, so A pulls from it by the static list, with no
    // grant to sign for.)
    for (parent, child) in [(&a, &b), (&b, &c)] {
        eventually("verified receipts on a relay edge", || {
            network.edge_bytes(parent, child)
        })
        .await;
    }

    // The middle relay goes: C is re-parented under A and keeps serving matching segments.
    b.shutdown().await;
    let a_id = a.node_id().to_string();
    eventually("C re-parented under A", || async {
        (network.parent(&c).await.as_deref() == Some(a_id.as_str())).then_some(())
    })
    .await;
    let later = matching_segment(&network, &c, Some(seen)).await;
    matching_segment(&network, &c, Some(later)).await;

    c.shutdown().await;
    a.shutdown().await;
    origin.shutdown().await;
    if let Some(server) = network.server {
        let _ = server.shutdown().await;
    }
}
