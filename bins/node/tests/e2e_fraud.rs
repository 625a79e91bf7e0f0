//! End to end through the coordinator's real HTTP API: of three nodes that pass their probes,
//! the honest one is paid for its viewer's verified bytes, the one whose viewer acknowledges
//! content the origin never published (stale or altered segments) and the one whose heartbeats
//! claim bytes no viewer acknowledged are flagged with evidence and paid nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use streamr_coord::client::{unix_ms, CoordinatorClient, NodeAdvert};
use streamr_coord::wire::SegmentReport;
use streamr_coord::{CoordConfig, Coordinator, RateLimit, ServeHandle, Storage};
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, NodeHeartbeat, NodeId, ProbeResult, SegmentChain,
    SettlementConfig, Signed, SignedReceipt, StreamId, ViewerReceipt,
};

const EPOCH: Duration = Duration::from_secs(8);
const SEGMENTS: u64 = 5;
const SEGMENT_LEN: usize = 200_000;

struct Network {
    coordinator: Coordinator,
    storage: Arc<dyn Storage>,
    client: CoordinatorClient,
    server: ServeHandle,
    _dir: tempfile::TempDir,
}

async fn start_coordinator() -> Network {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let mut settlement = SettlementConfig::default();
    settlement.rewards.operator_cap_ppm = 1_000_000;
    settlement.rewards.subnet_cap_ppm = 1_000_000;
    let config = CoordConfig {
        admin_token: Some("fraud-test-token".into()),
        epoch_length: EPOCH,
        settlement_grace: Duration::from_millis(500),
        settlement,
        rate_limit: Some(RateLimit {
            per_second: 10_000,
            burst: 10_000,
        }),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, storage.clone());
    let server = common::serve_on_loopback(&coordinator).await;
    let url = server.url();
    let client = CoordinatorClient::new(&url)
        .expect("client")
        .with_admin_token("fraud-test-token");
    Network {
        coordinator,
        storage,
        client,
        server,
        _dir: dir,
    }
}

async fn register(client: &CoordinatorClient, key: &KeyPair, name: &str, subnet: u8) {
    client
        .register_node(
            key,
            &NodeAdvert {
                operator_membership: None,
                operator: name.into(),
                payout_address: format!("{name}-wallet"),
                rtmp_url: format!("rtmp://127.0.{subnet}.1:1935/live"),
                http_url: format!("http://127.0.{subnet}.1:8080"),
                capacity_kbps: 10_000,
            },
        )
        .await
        .expect("registration accepted");
}

async fn heartbeat(
    client: &CoordinatorClient,
    key: &KeyPair,
    nonce: u64,
    bytes_served: u64,
    receipts: Vec<SignedReceipt>,
) -> streamr_coord::wire::ReceiptsOutcome {
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: key.node_id(),
            timestamp_ms: unix_ms(),
            nonce,
            streams: vec![StreamId::new("show").expect("valid id")],
            viewers: 1,
            bytes_served,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        key,
    );
    client
        .heartbeat(heartbeat, receipts)
        .await
        .expect("heartbeat accepted")
}

/// Routes a fresh viewer to `node` by excluding the `others` (re-asking until routed there is
/// what the coordinator's grant budget prevents).
async fn grant_on(
    client: &CoordinatorClient,
    viewer: &KeyPair,
    node: NodeId,
    others: &[NodeId],
) -> streamr_core::SignedGrant {
    let others: Vec<NodeId> = others.iter().copied().filter(|o| *o != node).collect();
    let play = client
        .play_excluding("show", &viewer.viewer_key(), &others)
        .await
        .expect("routing answers");
    assert_eq!(play.node_id, node, "the only node left");
    play.grant
}

/// Cumulative receipts for segments `0..SEGMENTS` whose hashes are `hashes`.
fn receipts(
    viewer: &KeyPair,
    grant: &streamr_core::SignedGrant,
    hashes: &[ContentDigest],
) -> Vec<SignedReceipt> {
    let mut chain = SegmentChain::genesis(0);
    hashes
        .iter()
        .enumerate()
        .map(|(i, hash)| {
            let digest = chain.push(hash);
            Signed::sign(
                ViewerReceipt {
                    session_id: grant.body.session_id,
                    seq: i as u64 + 1,
                    bytes_total: (i as u64 + 1) * SEGMENT_LEN as u64,
                    last_segment_seq: i as u64,
                    segments_digest: digest,
                    t_ms: unix_ms(),
                },
                viewer,
            )
        })
        .collect()
}

async fn wait_for_next_epoch() -> i64 {
    let epoch_ms = EPOCH.as_millis() as u64;
    let now = unix_ms();
    let next = (now / epoch_ms + 1) * epoch_ms;
    tokio::time::sleep(Duration::from_millis(next - now + 100)).await;
    (next / epoch_ms) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_content_and_inflated_claims_are_flagged_and_not_paid() {
    let net = start_coordinator().await;
    let client = &net.client;
    client
        .create_stream("show", "fraud test")
        .await
        .expect("stream created");
    let honest = KeyPair::from_seed([11; 32]);
    let stale = KeyPair::from_seed([12; 32]);
    let inflating = KeyPair::from_seed([13; 32]);
    register(client, &honest, "honest", 1).await;
    register(client, &stale, "stale", 2).await;
    register(client, &inflating, "inflating", 3).await;
    let all_nodes = [honest.node_id(), stale.node_id(), inflating.node_id()];

    // Everything below happens within one epoch.
    let epoch = wait_for_next_epoch().await;
    let mut nonce = unix_ms();
    for key in [&honest, &stale, &inflating] {
        nonce += 1;
        heartbeat(client, key, nonce, 0, Vec::new()).await;
    }

    // The origin publishes five segments.
    let origin_segments: Vec<Vec<u8>> = (0..SEGMENTS)
        .map(|i| {
            (0..SEGMENT_LEN)
                .map(|b| (b as u64 * 31 + i * 7) as u8)
                .collect()
        })
        .collect();
    let origin_hashes: Vec<ContentDigest> =
        origin_segments.iter().map(|s| segment_hash(s)).collect();
    for (sequence, hash) in origin_hashes.iter().enumerate() {
        client
            .report_segment(
                "show",
                &SegmentReport {
                    sequence: sequence as u64,
                    hash: *hash,
                    published_ms: unix_ms(),
                },
            )
            .await
            .expect("segment report accepted");
    }

    // The honest node's viewer acknowledges the origin's segments as they arrive, about
    // half a second apart (a real viewer's pace, well under the grant's bitrate).
    let honest_viewer = KeyPair::from_seed([21; 32]);
    let grant = grant_on(client, &honest_viewer, honest.node_id(), &all_nodes).await;
    let mut accepted = 0;
    for count in 1..=origin_hashes.len() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let newest = receipts(&honest_viewer, &grant, &origin_hashes[..count])
            .pop()
            .expect("one receipt per segment");
        let outcome = client
            .post_receipts(vec![newest])
            .await
            .expect("receipts answered");
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        accepted += outcome.accepted;
    }
    assert_eq!(accepted, SEGMENTS);

    // The stale node served old or altered segments: its viewer's chain is not the origin's.
    let stale_viewer = KeyPair::from_seed([22; 32]);
    let grant = grant_on(client, &stale_viewer, stale.node_id(), &all_nodes).await;
    let served: Vec<ContentDigest> = (0..SEGMENTS)
        .map(|i| segment_hash(format!("stale segment {i}").as_bytes()))
        .collect();
    // Its viewer hands the receipts to the node, which forwards them: the node's own
    // submission (receipts a viewer posts itself are the viewer's doing, never the node's).
    nonce += 1;
    let outcome = heartbeat(
        client,
        &stale,
        nonce,
        0,
        receipts(&stale_viewer, &grant, &served),
    )
    .await;
    assert_eq!(outcome.accepted, 0, "wrong content must not be credited");
    assert_eq!(
        outcome.rejected.len() as u64,
        SEGMENTS,
        "{:?}",
        outcome.rejected
    );

    // Heartbeats: the honest node claims what it served, the inflating one 50 MB nobody saw.
    let served_bytes = SEGMENTS * SEGMENT_LEN as u64;
    nonce += 1;
    heartbeat(client, &honest, nonce, served_bytes, Vec::new()).await;
    nonce += 1;
    heartbeat(client, &stale, nonce, served_bytes, Vec::new()).await;
    nonce += 1;
    heartbeat(client, &inflating, nonce, 50_000_000, Vec::new()).await;

    // All three pass their probes (reported through the admin API, as a prober does).
    for key in [&honest, &stale, &inflating] {
        for _ in 0..3 {
            client
                .report_probe(&ProbeResult {
                    node_id: key.node_id(),
                    hash_ok: true,
                    timed_out: false,
                    ttfb_ms: 20,
                    throughput_bytes_per_s: 5_000_000,
                })
                .await
                .expect("probe recorded");
        }
    }
    assert_eq!(
        unix_ms() as i64 / EPOCH.as_millis() as i64,
        epoch,
        "the scenario took longer than one epoch on this machine"
    );

    // Settle the epoch once it is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        net.coordinator.settle_due().await.expect("settlement runs");
        if net
            .storage
            .get_settlement(epoch)
            .await
            .expect("storage")
            .is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "epoch {epoch} never settled"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let evidence = net
        .storage
        .evidence_for_epoch(epoch)
        .await
        .expect("evidence");
    let rules_of = |key: &KeyPair| -> Vec<String> {
        let id = key.node_id().to_string();
        evidence
            .iter()
            .filter(|e| e.node_id == id)
            .map(|e| e.rule.clone())
            .collect()
    };
    let stale_rules = rules_of(&stale);
    assert!(
        stale_rules.iter().any(|r| r == "wrong_content"),
        "stale node flagged: {stale_rules:?}"
    );
    let inflating_rules = rules_of(&inflating);
    assert!(
        inflating_rules
            .iter()
            .any(|r| r == "claims_exceed_receipts"),
        "inflating node flagged: {inflating_rules:?}"
    );
    let honest_rules = rules_of(&honest);
    assert!(
        honest_rules.iter().all(|r| r == "probation"),
        "honest node flagged: {honest_rules:?}"
    );
    // The evidence names what was measured.
    let claim = evidence
        .iter()
        .find(|e| {
            e.rule == "claims_exceed_receipts" && e.node_id == inflating.node_id().to_string()
        })
        .expect("claim evidence");
    assert!(claim.detail.contains("50000000"), "{}", claim.detail);

    let rewards = net.storage.ledger_for_epoch(epoch).await.expect("ledger");
    let reward_of = |key: &KeyPair| -> i64 {
        let id = key.node_id().to_string();
        rewards
            .iter()
            .filter(|e| e.kind == "reward" && e.node_id.as_deref() == Some(id.as_str()))
            .map(|e| e.amount)
            .sum()
    };
    assert!(reward_of(&honest) > 0, "the honest node is paid");
    assert_eq!(reward_of(&stale), 0, "stale content is not paid");
    assert_eq!(reward_of(&inflating), 0, "inflated claims are not paid");
    let _ = net.server.shutdown().await;
}
