//! `CoordinatorClient` against a real coordinator served on loopback (SQLite in a tempdir).

use reqwest::StatusCode;
use streamr_coord::client::{unix_ms, ClientError, CoordinatorClient, NodeAdvert};
use streamr_coord::grant_token;
use streamr_coord::wire::{PlayResponse, ReceiptRejectionCode, SegmentReport};
use streamr_coord::{connect, CoordConfig, Coordinator, ServeHandle};
use streamr_core::{
    segment_hash, KeyPair, NodeHeartbeat, OriginSegmentReport, ProbeResult, SessionId, Signed,
    StreamId, ViewerReceipt,
};

const ADMIN: &str = "client-test-admin";

struct Served {
    url: String,
    coordinator: Coordinator,
    _dir: tempfile::TempDir,
    _server: ServeHandle,
}

async fn serve() -> Served {
    serve_with(CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    })
    .await
}

async fn serve_with(config: CoordConfig) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let storage = connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let coordinator = Coordinator::new(config, storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = coordinator.spawn_serve(listener).unwrap();
    Served {
        url: server.url(),
        coordinator,
        _dir: dir,
        _server: server,
    }
}

fn advert(port: u16) -> NodeAdvert {
    NodeAdvert {
        operator_membership: None,
        operator: "alice".into(),
        payout_address: "0xa11ce".into(),
        rtmp_url: format!("rtmp://127.0.0.1:{port}/live"),
        http_url: format!("http://127.0.0.1:{}", port + 1),
        capacity_kbps: 20_000,
    }
}

fn heartbeat(key: &KeyPair, nonce: u64, streams: &[&str]) -> streamr_core::SignedHeartbeat {
    Signed::sign(
        NodeHeartbeat {
            node_id: key.node_id(),
            timestamp_ms: unix_ms(),
            nonce,
            streams: streams.iter().map(|s| StreamId::new(*s).unwrap()).collect(),
            viewers: 1,
            bytes_served: 1000,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        key,
    )
}

/// The viewer's first receipt for `play`'s session: `bytes` received, segment 0 verified.
fn first_receipt(
    play: &PlayResponse,
    viewer: &KeyPair,
    bytes: u64,
    digest: &str,
) -> streamr_core::SignedReceipt {
    Signed::sign(
        ViewerReceipt {
            session_id: play.grant.body.session_id,
            seq: 1,
            bytes_total: bytes,
            last_segment_seq: 0,
            segments_digest: digest.parse().unwrap(),
            t_ms: unix_ms(),
        },
        viewer,
    )
}

#[tokio::test]
async fn a_node_and_a_viewer_go_through_the_whole_api() {
    let served = serve().await;
    let admin = CoordinatorClient::new(&served.url)
        .unwrap()
        .with_admin_token(ADMIN);
    let public = CoordinatorClient::new(&served.url).unwrap();

    let info = public.coordinator_info().await.unwrap();
    assert_eq!(info.coordinator_key, served.coordinator.coordinator_key());

    let created = admin.create_stream("show", "The show").await.unwrap();
    assert!(public
        .publish_check("show", &created.stream_key)
        .await
        .unwrap());
    assert!(!public.publish_check("show", "wrong key").await.unwrap());
    assert!(!public.publish_check("nothing", "x").await.unwrap());
    assert_eq!(public.stream("show").await.unwrap().title, "The show");
    assert_eq!(public.streams().await.unwrap().len(), 1);

    let node = KeyPair::from_seed([4; 32]);
    let record = public.register_node(&node, &advert(19350)).await.unwrap();
    assert_eq!(record.id, node.node_id().to_string());
    public
        .heartbeat(heartbeat(&node, 1, &["show"]), Vec::new())
        .await
        .unwrap();
    let listed = public.nodes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_heartbeat_ms.is_some());
    assert!(listed[0].streams_json.contains("show"));

    // The origin binds itself with its signed publish check and signs its reports: no token.
    let origin = KeyPair::from_seed([6; 32]);
    assert!(public
        .publish_check_as_origin("show", &created.stream_key, &origin)
        .await
        .unwrap());
    assert!(
        !public
            .publish_check_as_origin("show", &created.stream_key, &node)
            .await
            .unwrap(),
        "another node cannot take over the bound origin"
    );
    assert_eq!(
        public.stream("show").await.unwrap().origin_node,
        Some(origin.node_id().to_string())
    );
    let hash = segment_hash(b"segment zero");
    let report = Signed::sign(
        OriginSegmentReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").unwrap(),
            sequence: 0,
            hash,
            published_ms: unix_ms(),
            timestamp_ms: unix_ms(),
            ll: None,
            run: None,
        },
        &origin,
    );
    let stored = public.report_segment_signed(&report).await.unwrap();
    assert!(stored.created);
    let segments = public.segments("show", 10).await.unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].hash, hash.to_string());

    let viewer = KeyPair::from_seed([5; 32]);
    let play = public.play("show", &viewer.viewer_key()).await.unwrap();
    assert_eq!(play.node_id, node.node_id());
    let refused = public
        .play_excluding("show", &viewer.viewer_key(), &[node.node_id()])
        .await
        .unwrap_err();
    assert_eq!(
        refused.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "the only node is excluded: {refused}"
    );
    for url in [&play.rtmp_url, &play.http_flv_url, &play.hls_url] {
        let (_, query) = url.split_once('?').expect("URL carries the grant");
        let grant = grant_token::decode(grant_token::from_query(query).unwrap()).unwrap();
        assert_eq!(grant, play.grant);
    }
    assert!(play
        .rtmp_url
        .starts_with("rtmp://127.0.0.1:19350/live/show?grant="));
    assert!(play
        .grant
        .verify(&served.coordinator.coordinator_key())
        .is_ok());

    let receipt = first_receipt(&play, &viewer, 5_000, &stored.segment.digest);
    let outcome = public
        .heartbeat(heartbeat(&node, 2, &["show"]), vec![receipt.clone()])
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 1, "{:?}", outcome.rejected);
    // The viewer posts its next receipt itself; the node then hands in the first one again
    // (as after a heartbeat it took for failed): outdated, coded so the node need not worry.
    let next = Signed::sign(
        ViewerReceipt {
            seq: 2,
            bytes_total: 6_000,
            ..receipt.body.clone()
        },
        &viewer,
    );
    let outcome = public.post_receipts(vec![next]).await.unwrap();
    assert_eq!(outcome.accepted, 1, "{:?}", outcome.rejections);
    let outcome = public
        .heartbeat(heartbeat(&node, 3, &["show"]), vec![receipt])
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 0);
    let codes: Vec<_> = outcome.rejections().iter().map(|r| r.code).collect();
    assert_eq!(codes, [ReceiptRejectionCode::Outdated], "{outcome:?}");
    assert_eq!(outcome.rejected, [outcome.rejections[0].reason.clone()]);

    let probe = ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 20,
        throughput_bytes_per_s: 1_000_000,
    };
    assert_eq!(
        admin.report_probe(&probe).await.unwrap().node_id,
        node.node_id().to_string()
    );

    public.deregister_node(&node).await.unwrap();
    assert!(!public.node(&record.id).await.unwrap().active);

    // Operators re-bind or clear a stream's origin; nobody else can.
    let refused = public
        .set_origin("show", Some(node.node_id()))
        .await
        .unwrap_err();
    assert_eq!(
        refused.status(),
        Some(StatusCode::UNAUTHORIZED),
        "{refused}"
    );
    let rebound = admin
        .set_origin("show", Some(node.node_id()))
        .await
        .unwrap();
    assert_eq!(rebound.origin_node, Some(node.node_id().to_string()));
    let cleared = admin.set_origin("show", None).await.unwrap();
    assert_eq!(cleared.origin_node, None);
}

#[tokio::test]
async fn refusals_carry_status_and_json_error() {
    let served = serve().await;
    let public = CoordinatorClient::new(&served.url).unwrap();

    let error = public.create_stream("show", "").await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(error.code(), Some("unauthorized"));
    assert!(error.to_string().contains("/streams"), "{error}");

    let error = public.node("00").await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));

    let stale = Signed::sign(
        NodeHeartbeat {
            node_id: KeyPair::from_seed([6; 32]).node_id(),
            timestamp_ms: 1,
            nonce: 1,
            streams: Vec::new(),
            viewers: 0,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        &KeyPair::from_seed([6; 32]),
    );
    let error = public.heartbeat(stale, Vec::new()).await.unwrap_err();
    assert!(
        error.status().is_some_and(|s| s.is_client_error()),
        "a heartbeat from 1970 is refused: {error}"
    );
    assert!(error.code().is_some(), "{error}");

    let fake_session = SessionId::from_bytes([9; 16]);
    let receipt = Signed::sign(
        ViewerReceipt {
            session_id: fake_session,
            seq: 1,
            bytes_total: 1,
            last_segment_seq: 0,
            segments_digest: segment_hash(b"x"),
            t_ms: unix_ms(),
        },
        &KeyPair::from_seed([8; 32]),
    );
    let outcome = public.post_receipts(vec![receipt]).await.unwrap();
    assert_eq!(
        outcome.accepted, 0,
        "a receipt for an unknown session earns nothing"
    );
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(
        outcome.rejections()[0].code,
        ReceiptRejectionCode::UnknownSession
    );
}

#[tokio::test]
async fn an_unreachable_coordinator_is_a_transport_error() {
    assert!(matches!(
        CoordinatorClient::new("ftp://x"),
        Err(ClientError::InvalidUrl { .. })
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = CoordinatorClient::new(&url)
        .unwrap()
        .streams()
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Transport { .. }), "{error}");
    assert_eq!(error.status(), None);
}

/// Earnings, epochs, statements, Merkle proofs, pending payouts and the simulator, read through
/// the client after a real settlement of short epochs.
#[tokio::test]
async fn a_node_operator_checks_its_earnings_and_proof() {
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        epoch_length: std::time::Duration::from_secs(2),
        settlement_grace: std::time::Duration::ZERO,
        ..CoordConfig::default()
    };
    let pool = config.reward_pool_per_epoch;
    let served = serve_with(config).await;
    let admin = CoordinatorClient::new(&served.url)
        .unwrap()
        .with_admin_token(ADMIN);
    let public = CoordinatorClient::new(&served.url).unwrap();

    admin.create_stream("show", "The show").await.unwrap();
    let node = KeyPair::from_seed([6; 32]);
    // The node advertises an address outside the viewer's /24 (loopback here), or the
    // self-dealing rule would rightly flag every byte it serves.
    let remote = NodeAdvert {
        operator_membership: None,
        rtmp_url: "rtmp://10.0.6.1:1935/live".into(),
        http_url: "http://10.0.6.1:8080".into(),
        ..advert(19450)
    };
    public.register_node(&node, &remote).await.unwrap();
    public
        .heartbeat(heartbeat(&node, 1, &["show"]), Vec::new())
        .await
        .unwrap();
    let stored = admin
        .report_segment(
            "show",
            &SegmentReport {
                sequence: 0,
                hash: segment_hash(b"segment zero"),
                published_ms: unix_ms(),
            },
        )
        .await
        .unwrap();
    let viewer = KeyPair::from_seed([7; 32]);
    let play = public.play("show", &viewer.viewer_key()).await.unwrap();
    let probe = ProbeResult {
        node_id: node.node_id(),
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 20,
        throughput_bytes_per_s: 1_000_000,
    };
    // Serve, get probed and hand in receipts until a settled epoch credits the node: a receipt
    // and the probes around it then fell in one epoch, however the machine's load spread them.
    // Well inside the 60 s after which segment 0 is too old to be acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    let mut round = 0u64;
    loop {
        round += 1;
        for _ in 0..3 {
            admin.report_probe(&probe).await.unwrap();
        }
        // 4 000 bytes take a moment even at the grant's rate (2 MB/s): a receipt for them within
        // a millisecond of the previous one would rightly be dropped as over the bitrate.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let receipt = Signed::sign(
            ViewerReceipt {
                session_id: play.grant.body.session_id,
                seq: round,
                bytes_total: round * 4_000,
                last_segment_seq: 0,
                segments_digest: stored.segment.digest.parse().unwrap(),
                t_ms: unix_ms(),
            },
            &viewer,
        );
        let outcome = public
            .heartbeat(heartbeat(&node, round + 1, &["show"]), vec![receipt])
            .await
            .unwrap();
        assert_eq!(outcome.accepted, 1, "{:?}", outcome.rejected);
        for _ in 0..3 {
            admin.report_probe(&probe).await.unwrap();
        }
        served.coordinator.settle_due().await.unwrap();
        if public.earnings(&node.node_id()).await.unwrap().total > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no settled epoch credited the node"
        );
    }
    let epochs = public.epochs(10).await.unwrap();
    assert!(!epochs.is_empty());
    let mut earned = 0;
    for settled in &epochs {
        assert_eq!(settled.pool, pool as i64);
        let statement = public.statement(settled.epoch).await.unwrap();
        assert_eq!(statement.settlement.merkle_root, settled.merkle_root);
        let node_id = node.node_id().to_string();
        earned += statement
            .entries
            .iter()
            .filter(|e| e.kind == "reward" && e.credit.ends_with(&node_id))
            .map(|e| e.amount)
            .sum::<i64>();
        if settled.leaf_count > 0 {
            let proof = public.proof(settled.epoch, &node.node_id()).await.unwrap();
            assert!(
                proof.verify(&settled.merkle_root),
                "proof leads to the published root"
            );
            assert!(!proof.verify(&"00".repeat(32)), "and to no other root");
        }
    }
    assert!(earned > 0, "the node that served verified bytes earned");

    let earnings = public.earnings(&node.node_id()).await.unwrap();
    assert_eq!(earnings.node.id, node.node_id().to_string());
    assert_eq!(
        earnings.total, earned,
        "vesting balance equals the rewards credited"
    );

    assert!(admin.pending_payouts(10).await.is_ok());
    let refused = public.pending_payouts(10).await.unwrap_err();
    assert!(
        matches!(refused.status(), Some(s) if s.is_client_error()),
        "{refused}"
    );
    let unknown = public
        .earnings(&KeyPair::from_seed([8; 32]).node_id())
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(StatusCode::NOT_FOUND));

    let inputs: serde_json::Value =
        serde_json::from_str(&epochs[0].inputs_json).expect("inputs are JSON");
    let request = streamr_coord::SimulationRequest {
        pool: 1_000_000,
        nodes: serde_json::from_value(inputs["nodes"].clone()).expect("node inputs"),
        rewards: None,
    };
    let split = public.simulate(&request).await.unwrap();
    let total: u64 = split.rewards.iter().map(|r| r.amount).sum::<u64>() + split.unallocated;
    assert_eq!(
        total, 1_000_000,
        "the simulated split distributes exactly the pool"
    );
}
