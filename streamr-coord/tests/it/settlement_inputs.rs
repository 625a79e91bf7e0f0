//! What settlement feeds the fraud rules, end to end through the API: receipts viewers post
//! themselves are never held against the node, probe traffic is never paid, and unattested
//! claims are bounded by the grants the coordinator really issued to the node. Every scenario
//! runs against SQLite and against a real PostgreSQL server.

use crate::common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{
    ContentDigest, EpochInputs, EpochObservations, KeyPair, NodeEpochInput, SessionId, Signed,
    SignedGrant, SignedReceipt, ViewerReceipt, PPM,
};

on_both_backends!(
    a_framers_bad_receipts_cost_the_honest_node_nothing,
    a_receipt_held_through_an_outage_costs_its_node_nothing_after_a_newer_one,
    a_receipt_after_a_silent_epoch_carries_where_its_span_began,
    a_node_that_only_served_probes_earns_nothing,
    an_epoch_the_prober_missed_pays_by_the_last_probes,
    unattested_claims_beyond_issued_grants_are_not_paid,
);

/// A coordinator with one live stream, its first segment reported, at the start of an epoch
/// long enough for a scenario to fit in.
struct Scene {
    api: Client,
    config: CoordConfig,
    epoch: u64,
    digest: ContentDigest,
}

impl Scene {
    async fn start(db: &TestDb, mut config: CoordConfig) -> Scene {
        config.epoch_length = Duration::from_secs(6);
        config.settlement.rewards.operator_cap_ppm = PPM;
        config.settlement.rewards.subnet_cap_ppm = PPM;
        let epoch_ms = config.epoch_length.as_millis() as u64;
        let api = Client::new(Coordinator::new(config.clone(), db.storage().await));
        create_stream(&api, "show").await;
        let start = (now_ms() / epoch_ms + 1) * epoch_ms;
        tokio::time::sleep(Duration::from_millis(start - now_ms() + 20)).await;
        let digest = report_segments(&api, "show", 1).await[0];
        Scene {
            api,
            epoch: now_ms() / epoch_ms,
            config,
            digest,
        }
    }

    /// Registers `node` from `peer`, sends its first heartbeat from there and a passing probe.
    async fn join(&self, node: &KeyPair, peer: IpAddr) {
        let (status, body) = self
            .api
            .raw_from(
                "POST",
                "/nodes",
                serde_json::to_vec(&registration(node, "http://10.0.1.1:8080")).expect("json"),
                false,
                Some(peer),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .api
            .raw_from(
                "POST",
                "/nodes/heartbeat",
                serde_json::to_vec(&json!({ "heartbeat": claims_heartbeat(node, 1, 0, 0) }))
                    .expect("json"),
                false,
                Some(peer),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let probe = streamr_core::ProbeResult {
            node_id: node.node_id(),
            hash_ok: true,
            timed_out: false,
            ttfb_ms: 20,
            throughput_bytes_per_s: 5_000_000,
        };
        let (status, body) = self.api.post_admin("/probes", &probe).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// `viewer` asks to watch from `peer`; the grant it gets.
    async fn play(&self, viewer: &KeyPair, peer: IpAddr) -> SignedGrant {
        let (status, body) = self
            .api
            .get_from(
                &format!("/streams/show/play?viewer={}", viewer.viewer_key()),
                peer,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body["grant"].clone()).expect("grant")
    }

    /// Sends `node`'s heartbeat claiming `attested` and `unattested` bytes, with `receipts`.
    async fn report(
        &self,
        node: &KeyPair,
        nonce: u64,
        attested: u64,
        unattested: u64,
        receipts: &[SignedReceipt],
    ) -> Value {
        let (status, outcome) = self
            .api
            .post(
                "/nodes/heartbeat",
                &json!({
                    "heartbeat": claims_heartbeat(node, nonce, attested, unattested),
                    "receipts": receipts,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        outcome
    }

    /// Settles the scenario's epoch and returns what settlement stored for it.
    async fn settle(&self, db: &TestDb) -> Settled {
        let epoch_ms = self.config.epoch_length.as_millis() as u64;
        assert_eq!(
            now_ms() / epoch_ms,
            self.epoch,
            "the scenario fits in one epoch"
        );
        wait_for_epoch_end(&self.config, now_ms()).await;
        assert!(self.api.coordinator.settle_due().await.expect("settle") >= 1);
        assert!(
            db.storage().await.closed_through().await.expect("fence") >= Some(self.epoch as i64),
            "an epoch is closed to bookings before it is settled"
        );
        Settled::load(db, self.epoch).await
    }
}

impl Settled {
    /// What settlement stored for `epoch`.
    async fn load(db: &TestDb, epoch: u64) -> Settled {
        let storage = db.storage().await;
        let epoch = epoch as i64;
        let settlement = storage
            .get_settlement(epoch)
            .await
            .expect("storage")
            .expect("the epoch is settled");
        let mut rewards = BTreeMap::new();
        for entry in storage.ledger_for_epoch(epoch).await.expect("ledger") {
            if let (Some(node), "reward") = (entry.node_id, entry.kind.as_str()) {
                *rewards.entry(node).or_default() += entry.amount;
            }
        }
        Settled {
            inputs: serde_json::from_str(&settlement.inputs_json).expect("inputs"),
            observations: serde_json::from_str(&settlement.observations_json)
                .expect("observations"),
            evidence: storage
                .evidence_for_epoch(epoch)
                .await
                .expect("evidence")
                .into_iter()
                .map(|e| {
                    let detail: Value = serde_json::from_str(&e.detail).expect("evidence json");
                    (e.node_id, e.rule, detail)
                })
                .collect(),
            rewards,
        }
    }
}

/// One settled epoch as storage holds it.
struct Settled {
    inputs: EpochInputs,
    observations: EpochObservations,
    /// (node, rule, evidence record).
    evidence: Vec<(String, String, Value)>,
    rewards: BTreeMap<String, i64>,
}

impl Settled {
    fn reward(&self, node: &KeyPair) -> i64 {
        self.rewards
            .get(&node.node_id().to_string())
            .copied()
            .unwrap_or(0)
    }

    /// The network the rules grouped `node` by.
    fn prefix(&self, node: &KeyPair) -> String {
        self.observations
            .nodes
            .iter()
            .find(|n| n.node_id == node.node_id())
            .map(|n| n.subnet.to_string())
            .expect("node profile")
    }

    fn input(&self, node: &KeyPair) -> &NodeEpochInput {
        self.inputs
            .nodes
            .iter()
            .find(|n| n.node_id == node.node_id())
            .expect("node input")
    }

    /// The rules that fired for `node` with the verdict `verdict`.
    fn rules(&self, node: &KeyPair, verdict: &str) -> Vec<&str> {
        let id = node.node_id().to_string();
        self.evidence
            .iter()
            .filter(|(n, _, detail)| *n == id && detail["verdict"]["verdict"] == verdict)
            .map(|(_, rule, _)| rule.as_str())
            .collect()
    }

    fn penalized(&self, node: &KeyPair) -> bool {
        !self.rules(node, "penalize").is_empty()
            || self
                .inputs
                .penalties
                .iter()
                .any(|p| p.node_id == node.node_id())
    }
}

fn receipt(
    signer: &KeyPair,
    session: SessionId,
    seq: u64,
    bytes_total: u64,
    digest: ContentDigest,
) -> SignedReceipt {
    Signed::sign(
        ViewerReceipt {
            session_id: session,
            seq,
            bytes_total,
            last_segment_seq: 0,
            segments_digest: digest,
            t_ms: now_ms(),
        },
        signer,
    )
}

fn peer(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    [a, b, c, d].into()
}

/// A viewer key and a viewer's receipt for `node`, sent by the honest node itself: the basis
/// every scenario pays from.
async fn honest_viewer(scene: &Scene, node: &KeyPair, seed: u8) -> (KeyPair, SessionId) {
    let viewer = KeyPair::from_seed([seed; 32]);
    let grant = scene.play(&viewer, peer(203, 0, 113, seed)).await;
    assert_eq!(grant.body.node_id, node.node_id());
    (viewer, grant.body.session_id)
}

/// A viewer turned framer gets its own grant on an honest node and posts bad receipts for it
/// (and a forged one for another viewer's session on the node) to the coordinator directly.
/// Those are the framer's doing: the node, whose own receipts are clean, is never penalised
/// and is paid for what its real viewer verified.
async fn a_framers_bad_receipts_cost_the_honest_node_nothing(db: &TestDb) {
    let scene = Scene::start(db, test_config()).await;
    let honest = KeyPair::from_seed([51; 32]);
    scene.join(&honest, peer(192, 0, 2, 51)).await;
    let (viewer, session) = honest_viewer(&scene, &honest, 61).await;
    let framer = KeyPair::from_seed([62; 32]);
    let framed = scene.play(&framer, peer(198, 18, 0, 62)).await;
    assert_eq!(framed.body.node_id, honest.node_id());

    let outcome = scene
        .report(
            &honest,
            2,
            4_000,
            0,
            &[
                receipt(&viewer, session, 1, 2_000, scene.digest),
                receipt(&viewer, session, 2, 4_000, scene.digest),
            ],
        )
        .await;
    assert_eq!(outcome["accepted"], 2, "{outcome}");
    let wrong = ContentDigest::from_bytes([0x5a; 32]);
    let bad = [
        // Beyond its own grant's byte limit.
        receipt(
            &framer,
            framed.body.session_id,
            1,
            framed.body.max_bytes + 1,
            scene.digest,
        ),
        // Content the stream never had.
        receipt(&framer, framed.body.session_id, 2, 1_000, wrong),
        // Another viewer's session, signed with the framer's key.
        receipt(&framer, session, 3, 5_000, scene.digest),
    ];
    let (status, outcome) = scene
        .api
        .post("/receipts", &json!({ "receipts": bad }))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 0, "{outcome}");

    let settled = scene.settle(db).await;
    assert!(
        !settled.penalized(&honest),
        "framed node penalised: {:?}",
        settled.evidence
    );
    assert!(settled.reward(&honest) > 0, "rewards {:?}", settled.rewards);
    assert_eq!(settled.input(&honest).verified_bytes, 4_000);
    // The framer's receipts are on record as the viewers', apart from the node's own.
    let node_claims = settled
        .observations
        .claims
        .iter()
        .find(|c| c.node_id == honest.node_id())
        .expect("the node's claims");
    assert_eq!(node_claims.receipts.accepted, 2);
    assert_eq!(
        node_claims.receipts.forged + node_claims.receipts.beyond_grant,
        0
    );
    assert_eq!(node_claims.viewer_posted.submitted, 3, "{node_claims:?}");
    assert_eq!(node_claims.viewer_posted.beyond_grant, 1, "{node_claims:?}");
    assert_eq!(node_claims.viewer_posted.forged, 1, "{node_claims:?}");
}

/// The coordinator was away: the viewer's receipt went to its node instead, which held it.
/// Once the coordinator is back the viewer posts its next receipt itself, and that one lands
/// before the node's heartbeat hands in the one it held (the viewer's receipt interval is
/// shorter than the node's heartbeat interval). The held receipt is the viewer's own, older than
/// the one on record: it earns nothing, and the node is not taken for a replayer of receipts.
async fn a_receipt_held_through_an_outage_costs_its_node_nothing_after_a_newer_one(db: &TestDb) {
    let scene = Scene::start(db, test_config()).await;
    let honest = KeyPair::from_seed([52; 32]);
    scene.join(&honest, peer(192, 0, 2, 52)).await;
    let (viewer, session) = honest_viewer(&scene, &honest, 63).await;
    let outcome = scene
        .report(
            &honest,
            2,
            2_000,
            0,
            &[receipt(&viewer, session, 1, 2_000, scene.digest)],
        )
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    // Receipt 2 went to the node during the outage; receipt 3 to the coordinator after it.
    let held = receipt(&viewer, session, 2, 3_000, scene.digest);
    let newer = receipt(&viewer, session, 3, 4_000, scene.digest);
    let (status, outcome) = scene
        .api
        .post("/receipts", &json!({ "receipts": [newer] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let outcome = scene.report(&honest, 3, 2_000, 0, &[held]).await;
    assert_eq!(outcome["accepted"], 0, "{outcome}");

    let settled = scene.settle(db).await;
    assert!(
        !settled.penalized(&honest),
        "a node penalised for a receipt it held through an outage: {:?}",
        settled.evidence
    );
    assert!(settled.reward(&honest) > 0, "rewards {:?}", settled.rewards);
    assert_eq!(settled.input(&honest).verified_bytes, 4_000);
}

/// The coordinator was away for a whole epoch, so the viewer signed nothing in it; its next
/// receipt covers every byte since the previous one. Settlement tells the rules where that
/// span began (the previous receipt's signing time, or the grant's for a session's first), so
/// the per-epoch caps can give the bytes of the silent epoch their room.
async fn a_receipt_after_a_silent_epoch_carries_where_its_span_began(db: &TestDb) {
    let scene = Scene::start(db, test_config()).await;
    let honest = KeyPair::from_seed([54; 32]);
    scene.join(&honest, peer(192, 0, 2, 54)).await;
    let granted_after = now_ms();
    let (viewer, session) = honest_viewer(&scene, &honest, 65).await;
    let first = receipt(&viewer, session, 1, 2_000, scene.digest);
    let outcome = scene
        .report(&honest, 2, 2_000, 0, std::slice::from_ref(&first))
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    // Nothing signed through the next epoch; the receipt after it is booked to the one after.
    let epoch_ms = scene.config.epoch_length.as_millis() as u64;
    let after = (scene.epoch + 2) * epoch_ms;
    tokio::time::sleep(Duration::from_millis(after - now_ms() + 20)).await;
    let backlog = receipt(&viewer, session, 2, 9_000, scene.digest);
    let outcome = scene.report(&honest, 3, 7_000, 0, &[backlog]).await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    wait_for_epoch_end(&scene.config, now_ms()).await;
    assert!(scene.api.coordinator.settle_due().await.expect("settle") >= 1);

    let span_start = |settled: &Settled| {
        settled
            .observations
            .sessions
            .iter()
            .find(|s| s.session_id == session)
            .expect("the session's usage")
            .covers_from_ms
    };
    let first_epoch = Settled::load(db, scene.epoch).await;
    let granted = span_start(&first_epoch).expect("a span start for the session's first receipt");
    assert!(
        (granted_after..=first.body.t_ms).contains(&granted),
        "{granted} not the grant's time"
    );
    let after_outage = Settled::load(db, scene.epoch + 2).await;
    assert_eq!(span_start(&after_outage), Some(first.body.t_ms));
    assert_eq!(after_outage.input(&honest).verified_bytes, 7_000);
}

/// A node whose only traffic was the coordinator's probes hands in their receipts, claims them
/// as attested and reports more probe downloads as unattested (as the shipped node does for
/// fetches without a grant). It is not penalised, and earns exactly nothing, while a node
/// serving a viewer in the same epoch is paid.
async fn a_node_that_only_served_probes_earns_nothing(db: &TestDb) {
    let scene = Scene::start(db, test_config()).await;
    let serving = KeyPair::from_seed([71; 32]);
    let idle = KeyPair::from_seed([72; 32]);
    scene.join(&serving, peer(192, 0, 2, 71)).await;
    let (viewer, session) = honest_viewer(&scene, &serving, 81).await;
    let idle_peer: IpAddr = "2001:db8:7:1::72".parse().expect("address");
    scene.join(&idle, idle_peer).await;
    let (probe_viewer, probe) =
        probe_session(db, &scene.config, &idle, Duration::from_secs(60)).await;

    let outcome = scene
        .report(
            &serving,
            2,
            4_000,
            0,
            &[receipt(&viewer, session, 1, 4_000, scene.digest)],
        )
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let outcome = scene
        .report(
            &idle,
            2,
            30_000,
            5_000,
            &[
                receipt(&probe_viewer, probe, 1, 10_000, scene.digest),
                receipt(&probe_viewer, probe, 2, 30_000, scene.digest),
            ],
        )
        .await;
    assert_eq!(outcome["accepted"], 2, "{outcome}");

    let settled = scene.settle(db).await;
    assert!(
        settled.reward(&serving) > 0,
        "rewards {:?}",
        settled.rewards
    );
    assert_eq!(settled.reward(&idle), 0, "rewards {:?}", settled.rewards);
    assert!(
        !settled.penalized(&idle),
        "probe traffic is no fraud: {:?}",
        settled.evidence
    );
    // Caps group nodes by the prefix their heartbeats come from: an IPv6 node by its /48.
    assert_eq!(settled.prefix(&idle), "2001:db8:7::/48");
    assert_eq!(settled.prefix(&serving), "192.0.2.0/24");
    let input = settled.input(&idle);
    assert_eq!(
        (input.verified_bytes, input.unattested_bytes),
        (0, 0),
        "{input:?}"
    );
}

/// Three nodes: one serves a receipting viewer; one holds a grant whose viewer sends no receipt
/// and claims far more unattested bytes than the grant could carry; one has no grant at all and
/// claims unattested bytes anyway. The first is credited what the grant could carry (its
/// stream's bitrate × the grant's live time), the second nothing.
async fn unattested_claims_beyond_issued_grants_are_not_paid(db: &TestDb) {
    let mut config = test_config();
    // Only the grant bound is under test: the network-wide ratio to attested bytes is lifted.
    config.fraud.unattested_ratio_ppm = 1_000_000 * PPM;
    let scene = Scene::start(db, config).await;
    let granted = KeyPair::from_seed([91; 32]);
    scene.join(&granted, peer(192, 0, 2, 91)).await;
    let silent = KeyPair::from_seed([101; 32]);
    let grant = scene.play(&silent, peer(203, 0, 113, 101)).await;
    assert_eq!(grant.body.node_id, granted.node_id());
    let serving = KeyPair::from_seed([92; 32]);
    let idle = KeyPair::from_seed([93; 32]);
    scene.join(&serving, peer(198, 51, 100, 92)).await;
    scene.join(&idle, peer(198, 18, 0, 93)).await;
    let viewer = KeyPair::from_seed([102; 32]);
    let (status, body) = scene
        .api
        .get_from(
            &format!(
                "/streams/show/play?viewer={}&exclude={},{}",
                viewer.viewer_key(),
                granted.node_id(),
                idle.node_id()
            ),
            peer(203, 0, 113, 102),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node_id"], serving.node_id().to_string());
    let session: SessionId = body["grant"]["body"]["session_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("session id");

    let outcome = scene
        .report(
            &serving,
            2,
            4_000,
            0,
            &[receipt(&viewer, session, 1, 4_000, scene.digest)],
        )
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let claimed = 1_000_000_000;
    scene.report(&granted, 2, 0, claimed, &[]).await;
    scene.report(&idle, 2, 0, 50_000, &[]).await;

    let settled = scene.settle(db).await;
    let epoch_ms = scene.config.epoch_length.as_millis() as u64;
    let carried = scene.config.grant_bytes_per_second * epoch_ms / 1_000;
    let credited = settled.input(&granted).unattested_bytes;
    assert!(
        credited > 0 && credited <= carried,
        "credited {credited} of {claimed}, grant carries at most {carried}"
    );
    assert!(settled
        .rules(&granted, "drop_bytes")
        .contains(&"unattested_beyond_grants"));
    assert_eq!(settled.input(&idle).unattested_bytes, 0);
    assert_eq!(settled.reward(&idle), 0, "rewards {:?}", settled.rewards);
    assert!(
        settled.reward(&granted) > 0,
        "rewards {:?}",
        settled.rewards
    );
    assert!(!settled.penalized(&granted) && !settled.penalized(&idle));
}

/// The coordinator's prober does not run for a whole epoch (an outage of the coordinator, or of
/// the origin's reports it judges probes by) while the node serves and its viewer signs: the
/// epoch's availability is the node's last probed one, and the node is paid for what receipts
/// verified, instead of the epoch's pool going unpaid for want of a measurement.
async fn an_epoch_the_prober_missed_pays_by_the_last_probes(db: &TestDb) {
    let scene = Scene::start(db, test_config()).await;
    let node = KeyPair::from_seed([71; 32]);
    scene.join(&node, peer(192, 0, 2, 71)).await;
    let (viewer, session) = honest_viewer(&scene, &node, 72).await;
    let outcome = scene
        .report(
            &node,
            2,
            4_000,
            0,
            &[receipt(&viewer, session, 1, 4_000, scene.digest)],
        )
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");

    // The next epoch: no probe of any node, the viewer signs on.
    let epoch_ms = scene.config.epoch_length.as_millis() as u64;
    let missed = scene.epoch + 1;
    tokio::time::sleep(Duration::from_millis(
        (missed * epoch_ms).saturating_sub(now_ms()) + 20,
    ))
    .await;
    let outcome = scene
        .report(
            &node,
            3,
            9_000,
            0,
            &[receipt(&viewer, session, 2, 9_000, scene.digest)],
        )
        .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    assert_eq!(now_ms() / epoch_ms, missed, "the second report lands in it");
    wait_for_epoch_end(&scene.config, now_ms()).await;
    assert!(scene.api.coordinator.settle_due().await.expect("settle") >= 2);

    let probed = Settled::load(db, scene.epoch).await;
    let unprobed = Settled::load(db, missed).await;
    assert!(unprobed.observations.probes.is_empty());
    for settled in [&probed, &unprobed] {
        let input = settled.input(&node);
        assert_eq!(input.availability_ppm, PPM, "{input:?}");
        assert!(input.verified_bytes > 0, "{input:?}");
        assert!(!settled.penalized(&node));
        assert!(settled.reward(&node) > 0, "{:?}", settled.rewards);
    }
    assert_eq!(unprobed.input(&node).verified_bytes, 5_000);
}
