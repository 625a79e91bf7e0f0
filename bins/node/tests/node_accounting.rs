//! What relay nodes claim in their heartbeats, on loopback: an in-process coordinator (SQLite),
//! an origin and two relay nodes (the `streamr_node` library), ffmpeg publishing, ffmpeg
//! players on grant URLs that never sign a receipt (RTMP on one relay, HTTP-FLV on the other),
//! and a viewer of the viewer library that hands its receipts to its node. The players' bytes
//! must reach the coordinator as unattested bytes, the signing viewer's as attested ones.

mod common;

use common::{eventually, ffmpeg_plays, ffmpeg_publish};

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_coord::grant_token;
use streamr_coord::{CoordConfig, Coordinator, Storage};
use streamr_core::{KeyPair, NodeId, SessionGrant, SessionId, Signed, StreamId};
use streamr_node::viewer::{ReceiptDelivery, Viewer, ViewerConfig};
use streamr_node::{CoordinatorConfig, Node, NodeConfig, RunningNode};

const ADMIN: &str = "node-accounting-admin";

/// A node's claims over every epoch so far: (attested bytes, unattested bytes).
async fn claims(storage: &Arc<dyn Storage>, config: &CoordConfig, node: NodeId) -> (i64, i64) {
    let node = node.to_string();
    let mut sum = (0, 0);
    let current = config.epoch_of(unix_ms() as i64);
    for epoch in (current - 16).max(0)..=current {
        for row in storage.activity_for_epoch(epoch).await.expect("activity") {
            if row.node_id == node {
                sum.0 += row.claimed_bytes;
                sum.1 += row.unattested_bytes;
            }
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "interop: needs ffmpeg"]
async fn players_without_receipts_are_unattested_and_signing_viewers_attested() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let coordinator_key = config.coordinator_key.clone();
    let coordinator = Coordinator::new(config.clone(), storage.clone());
    let workers = coordinator.spawn_workers();
    let server = common::serve_on_loopback(&coordinator).await;
    let url = server.url();
    let admin = CoordinatorClient::new(&url)
        .expect("client")
        .with_admin_token(ADMIN);
    let stream_key = admin
        .create_stream("show", "Show")
        .await
        .expect("stream created")
        .stream_key;

    let node_config = |name: &str| NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().expect("address"),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        identity: dir.path().join(format!("{name}.key")),
        heartbeat_interval: Duration::from_millis(500),
        receipt_grace: Duration::from_secs(6),
        operator: name.into(),
        payout_address: format!("0x{name}"),
        ..NodeConfig::default()
    };
    let origin = Node::start(NodeConfig {
        coordinator: Some(CoordinatorConfig {
            url: url.clone(),
            key: None,
        }),
        ..node_config("origin")
    })
    .await
    .expect("origin starts");
    let relay = |name: &str| {
        Node::start(NodeConfig {
            upstreams: vec![format!("rtmp://{}", origin.rtmp_addr())],
            coordinator: Some(CoordinatorConfig {
                url: url.clone(),
                key: Some(coordinator_key.coordinator_key()),
            }),
            ..node_config(name)
        })
    };
    let rtmp_relay: RunningNode = relay("rtmp-relay").await.expect("relay starts");
    let http_relay: RunningNode = relay("http-relay").await.expect("relay starts");
    let _publisher = ffmpeg_publish(
        &format!("rtmp://{}/live/show?key={stream_key}", origin.rtmp_addr()),
        90,
    );
    eventually("origin segment reports", || async {
        let segments = admin.segments("show", 5).await.ok()?;
        (!segments.is_empty()).then_some(())
    })
    .await;

    // Plain players on grant URLs, each relay serving one of them and nobody else yet.
    let grant_for = |node: NodeId| {
        let mut session = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut session);
        Signed::sign(
            SessionGrant {
                session_id: SessionId::from_bytes(session),
                viewer: KeyPair::generate(&mut rand::rngs::OsRng).viewer_key(),
                node_id: node,
                stream_id: StreamId::new("show").expect("stream id"),
                max_bytes: 1 << 30,
                expiry_ms: unix_ms() + 600_000,
            },
            &coordinator_key,
        )
    };
    let rtmp_url = grant_token::with_grant(
        &format!("rtmp://{}/live/show", rtmp_relay.rtmp_addr()),
        &grant_for(rtmp_relay.node_id()),
    );
    let flv_url = grant_token::with_grant(
        &format!("http://{}/live/show.flv", http_relay.http_addr()),
        &grant_for(http_relay.node_id()),
    );
    let (rtmp_played, flv_played) = tokio::join!(
        tokio::task::spawn_blocking(move || ffmpeg_plays(&rtmp_url, 50)),
        tokio::task::spawn_blocking(move || ffmpeg_plays(&flv_url, 50)),
    );
    assert!(rtmp_played.expect("player task"), "RTMP via a relay");
    assert!(flv_played.expect("player task"), "HTTP-FLV via a relay");

    // Once the grace period passed without a receipt, their bytes are claimed as unattested.
    for (what, node) in [
        ("RTMP", rtmp_relay.node_id()),
        ("HTTP-FLV", http_relay.node_id()),
    ] {
        let (attested, unattested) = eventually(what, || async {
            let claims = claims(&storage, &config, node).await;
            (claims.1 > 10_000).then_some(claims)
        })
        .await;
        assert_eq!(attested, 0, "{what}: no receipt, nothing attested");
        eprintln!("{what} player: {unattested} unattested bytes");
    }

    // A viewer that signs receipts and hands them to its node.
    let mut viewer_config = ViewerConfig::new(&url, "show").with_receipts(ReceiptDelivery::Node);
    viewer_config.stall_timeout = Duration::from_secs(10);
    let viewer = Viewer::start(viewer_config, None).expect("viewer starts");
    eventually("the viewer to verify segments and have receipts accepted", || {
        let stats = viewer.stats();
        async move { (stats.verified_segments >= 3 && stats.receipts_accepted > 0).then_some(()) }
    })
    .await;
    let stats = viewer.stop().await.expect("viewer stops");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    for (node, verified) in &stats.verified_bytes_by_node {
        assert!(
            [rtmp_relay.node_id(), http_relay.node_id()].contains(node),
            "routed to a relay: {stats:?}"
        );
        // Everything the node served the viewer (segments and playlists) is claimed as
        // attested: at least the bytes the viewer verified.
        let (attested, _) = eventually("the viewer's bytes to be claimed as attested", || {
            let storage = &storage;
            let config = &config;
            async move {
                let claims = claims(storage, config, *node).await;
                (claims.0 >= *verified as i64).then_some(claims)
            }
        })
        .await;
        eprintln!("signing viewer: {verified} verified bytes, {attested} attested bytes claimed");
    }
    assert!(!stats.verified_bytes_by_node.is_empty(), "{stats:?}");

    rtmp_relay.shutdown().await;
    http_relay.shutdown().await;
    origin.shutdown().await;
    let _ = server.shutdown().await;
    workers.shutdown().await;
}
