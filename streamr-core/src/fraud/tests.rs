//! The rules against hand-built epochs.

use super::sessions::collusion_chance_below;
use super::*;

fn claims(claimed_bytes: u64, unattested_bytes: u64) -> NodeClaims {
    NodeClaims {
        node_id: NodeId::from_bytes([1; 32]),
        claimed_bytes,
        unattested_bytes,
        sessions: 1,
        receipts: ReceiptTally::default(),
        viewer_posted: ReceiptTally::default(),
        heartbeats: Some(1),
    }
}

#[test]
fn receipts_posted_past_the_node_do_not_earn_twice() {
    // Every receipt reached the node: its attested claim covers them, unattested stays.
    assert_eq!(net_unattested(&claims(5_000, 3_000), 5_000), 3_000);
    // 2 000 verified bytes came from receipts the viewer posted to the coordinator; the
    // node had counted that session as unattested.
    assert_eq!(net_unattested(&claims(3_000, 3_000), 5_000), 1_000);
    // Nothing left to net below zero.
    assert_eq!(net_unattested(&claims(0, 1_000), 5_000), 0);
    // Claims above the receipts do not add unattested credit.
    assert_eq!(net_unattested(&claims(9_000, 3_000), 5_000), 3_000);
}

const BITRATE: u64 = 500_000;
const HOUR_MS: u64 = 3_600_000;

fn node(i: u8, operator: &str, subnet: u8) -> NodeProfile {
    NodeProfile {
        node_id: NodeId::from_bytes([i; 32]),
        operator: OperatorId::new(operator).unwrap(),
        subnet: crate::Subnet24([10, 0, subnet]).into(),
        first_epoch: 0,
        average_reward: 1_000,
    }
}

/// Viewer `i`'s key: never a node's (`[i; 32]`), which would make its sessions relay edges.
fn viewer_key(i: u8) -> ViewerKey {
    let mut key = [i; 32];
    key[0] = 0xee;
    ViewerKey::from_bytes(key)
}

fn viewer(i: u8, subnet: u8) -> ViewerProfile {
    ViewerProfile {
        viewer: viewer_key(i),
        subnet: crate::Subnet24([192, 168, subnet]).into(),
        operator: None,
    }
}

fn session(n: u8, v: u8, s: u8, minutes: u64) -> SessionUsage {
    let bytes = BITRATE * minutes * 60;
    SessionUsage {
        session_id: SessionId::from_bytes([s; 16]),
        node_id: NodeId::from_bytes([n; 32]),
        viewer: viewer_key(v),
        stream_id: StreamId::new("live").unwrap(),
        bytes,
        on_time_bytes: bytes,
        bytes_total: bytes,
        started_ms: 0,
        last_receipt_ms: minutes * 60_000,
        covers_from_ms: None,
    }
}

/// Nodes 1..=4 of four operators; viewers 1..=8 each watching 20 minutes from node 1 + v%4.
fn honest() -> EpochObservations {
    let nodes: Vec<_> = (1..=4).map(|i| node(i, &format!("op{i}"), i)).collect();
    let viewers: Vec<_> = (1..=8).map(|v| viewer(v, v)).collect();
    let sessions: Vec<_> = (1..=8).map(|v| session(1 + v % 4, v, v, 20)).collect();
    let claims = nodes
        .iter()
        .map(|n| NodeClaims {
            node_id: n.node_id,
            claimed_bytes: sessions
                .iter()
                .filter(|s| s.node_id == n.node_id)
                .map(|s| s.bytes)
                .sum(),
            unattested_bytes: 0,
            sessions: 2,
            receipts: ReceiptTally {
                submitted: 10,
                accepted: 10,
                ..ReceiptTally::default()
            },
            viewer_posted: ReceiptTally::default(),
            heartbeats: Some(1),
        })
        .collect();
    let good = ProbeSummary {
        total: 60,
        passed: 60,
        capacity_bytes_per_s: 2_000_000,
        ..ProbeSummary::default()
    };
    EpochObservations {
        epoch: 100,
        epoch_ms: HOUR_MS,
        probes: nodes.iter().map(|n| (n.node_id, good)).collect(),
        nodes,
        viewers,
        sessions,
        claims,
        bitrates: vec![(StreamId::new("live").unwrap(), BITRATE)],
        operator_route_share_ppm: (1..=4)
            .map(|i| (OperatorId::new(format!("op{i}")).unwrap(), 250_000))
            .collect(),
        recently_penalized: vec![],
        grants: None,
        probe_traffic: Vec::new(),
    }
}

fn rules_for(report: &FraudReport, n: u8) -> Vec<RuleId> {
    let id = NodeId::from_bytes([n; 32]);
    report
        .evidence
        .iter()
        .filter(|e| e.node_id == id)
        .map(|e| e.rule)
        .collect()
}

#[test]
fn honest_epoch_fires_nothing() {
    let report = FraudEngine::new(FraudConfig::default()).assess(&honest());
    assert!(report.evidence.is_empty(), "{:?}", report.evidence);
    assert!(report.penalties.is_empty());
    assert!(report.node_inputs.iter().all(|n| n.flagged_bytes == 0));
}

#[test]
fn inflated_claims_and_forged_receipts_are_penalized() {
    let mut obs = honest();
    obs.claims[0].claimed_bytes *= 3;
    obs.claims[1].receipts.forged = 2;
    obs.claims[2].receipts.beyond_grant = 1;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 1), [RuleId::ClaimsExceedReceipts]);
    assert_eq!(rules_for(&report, 2), [RuleId::ForgedReceipts]);
    assert_eq!(rules_for(&report, 3), [RuleId::ReceiptsBeyondGrant]);
    assert_eq!(report.penalties.len(), 3);
    let (low, high) = FraudConfig::default().penalty.range(1_000);
    assert_eq!(report.penalties[0].amount, low);
    assert!(low <= high);
}

/// An engine that assessed an honest epoch 100 with its grant log: node 1's two sessions were
/// verified there.
fn engine_after_an_honest_epoch(config: &FraudConfig) -> FraudEngine {
    let mut engine = FraudEngine::new(config.clone());
    let mut obs = honest();
    obs.grants = Some(honest_grants());
    assert!(engine.assess(&obs).penalties.is_empty());
    engine
}

/// Epoch 101: node 1's two viewers, still granted, signed nothing in it (their receipts come
/// late, or never); node 1 still claims what it served them, and no session of its own has a
/// receipt in the epoch.
fn unreceipted_node_1() -> EpochObservations {
    let mut obs = honest();
    obs.epoch = 101;
    obs.grants = Some(honest_grants());
    let node_1 = NodeId::from_bytes([1; 32]);
    obs.sessions.retain(|s| s.node_id != node_1);
    // As the coordinator counts them: sessions with verified usage in the epoch.
    obs.claims[0].sessions = 0;
    obs
}

#[test]
fn sessions_verified_before_keep_their_node_unpenalized_through_a_silent_epoch() {
    let config = FraudConfig::default();
    let mut engine = engine_after_an_honest_epoch(&config);
    // The grants show both sessions live for 20 minutes of the epoch: the claim (what 40
    // minutes of the stream carry) is what they could carry.
    let report = engine.assess(&unreceipted_node_1());
    assert!(rules_for(&report, 1).is_empty(), "{:?}", report.evidence);
    assert!(report.penalties.is_empty());
    // Nothing is paid for it.
    assert_eq!(input_of(&report, 1).verified_bytes, 0);
    assert_eq!(input_of(&report, 1).unattested_bytes, 0);
}

#[test]
fn grants_nothing_was_ever_verified_on_vouch_for_no_claim() {
    // A node that serves nothing (fake uptime) is granted sessions its viewers never sign
    // for: its claim stands alone, in the first epoch as in the ones after.
    let config = FraudConfig::default();
    let mut engine = FraudEngine::new(config.clone());
    for epoch in 101..104 {
        let mut obs = unreceipted_node_1();
        obs.epoch = epoch;
        let report = engine.assess(&obs);
        assert_eq!(rules_for(&report, 1), [RuleId::ClaimsExceedReceipts]);
    }
    // Nor do sessions verified on another node: the grant must be on the node that served.
    let mut engine = engine_after_an_honest_epoch(&config);
    let mut obs = unreceipted_node_1();
    for g in obs.grants.iter_mut().flatten() {
        if g.node_id == NodeId::from_bytes([1; 32]) {
            g.node_id = NodeId::from_bytes([2; 32]);
        }
    }
    let report = engine.assess(&obs);
    assert_eq!(rules_for(&report, 1), [RuleId::ClaimsExceedReceipts]);
    // Without a grant log nothing vouches either.
    let mut engine = engine_after_an_honest_epoch(&config);
    let mut obs = unreceipted_node_1();
    obs.grants = None;
    let report = engine.assess(&obs);
    assert_eq!(rules_for(&report, 1), [RuleId::ClaimsExceedReceipts]);
}

#[test]
fn claims_past_what_silent_sessions_carry_are_penalized() {
    let config = FraudConfig::default();
    // Each grant allows 20 minutes of the stream plus the slack, and the honest epoch before
    // left the tolerance and slack of its two sessions unclaimed; claim just past all of it.
    let per_grant = BITRATE * (20 * 60 + config.claim_slack_seconds_per_session);
    let verified_before = 2 * BITRATE * 20 * 60;
    let room = verified_before * config.claim_tolerance_ppm / PPM
        + 2 * BITRATE * config.claim_slack_seconds_per_session;
    let mut obs = unreceipted_node_1();
    obs.claims[0].claimed_bytes = 2 * per_grant + room + 1;
    let report = engine_after_an_honest_epoch(&config).assess(&obs);
    assert_eq!(rules_for(&report, 1), [RuleId::ClaimsExceedReceipts]);
    obs.claims[0].claimed_bytes = 2 * per_grant + room;
    let report = engine_after_an_honest_epoch(&config).assess(&obs);
    assert!(rules_for(&report, 1).is_empty(), "{:?}", report.evidence);

    // Sessions verified in the epoch allow nothing beyond their slack: node 2's sessions are
    // verified again, so three times their bytes is still inflation.
    let mut obs = honest();
    obs.epoch = 101;
    obs.grants = Some(honest_grants());
    obs.claims[1].claimed_bytes *= 3;
    let report = engine_after_an_honest_epoch(&config).assess(&obs);
    assert_eq!(rules_for(&report, 2), [RuleId::ClaimsExceedReceipts]);
}

#[test]
fn over_bitrate_and_self_dealing_sessions_are_dropped() {
    let mut obs = honest();
    obs.sessions[0].bytes_total = BITRATE * 20 * 60 * 2;
    obs.viewers[1].subnet = obs.nodes[2].subnet; // viewer 2 watches node 3 from its /24
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    // Over-bitrate receipts are the viewer's doing: its bytes are dropped, the node is not
    // tainted by them.
    assert_eq!(rules_for(&report, 2), [RuleId::OverBitrate]);
    assert_eq!(
        rules_for(&report, 3),
        [RuleId::SelfDealing, RuleId::TaintedTraffic]
    );
    let node3 = &report.node_inputs[2];
    assert_eq!(node3.flagged_bytes, node3.verified_bytes);
}

#[test]
fn collusion_needs_improbable_concentration_and_never_penalizes_the_node() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    // Viewer 9 always watches node 4 (operator share 25%): 0.25^k × 4 < 1e-4 needs k ≥ 8,
    // reached in the fourth epoch. Honest viewers (one session per epoch) never get there
    // within the six-epoch window.
    for epoch in 0..6u64 {
        let mut obs = honest();
        obs.epoch = epoch + 100;
        obs.viewers.push(viewer(9, 99));
        for s in 0..2 {
            obs.sessions.push(session(4, 9, 100 + s, 10));
        }
        let report = engine.assess(&obs);
        let collusion = rules_for(&report, 4).contains(&RuleId::Collusion);
        assert_eq!(collusion, epoch >= 3, "epoch {epoch}");
        // A colluder and a framer look alike: the viewer's bytes are dropped, nothing more.
        assert!(report.penalties.is_empty(), "epoch {epoch}");
        let node4 = &report.node_inputs[3];
        let dropped = if epoch >= 3 { 2 * BITRATE * 600 } else { 0 };
        assert_eq!(node4.flagged_bytes, dropped, "epoch {epoch}");
    }
}

/// Epoch 99 of [`honest`] with node 5, in node 2's /24, handing in a forged receipt; node 2
/// passes probes there only when `node2_serving`.
fn forger_beside_node2(node2_serving: bool) -> EpochObservations {
    let mut obs = honest();
    obs.epoch = 99;
    let forger = node(5, "op5", 2);
    obs.claims.push(NodeClaims {
        node_id: forger.node_id,
        claimed_bytes: 0,
        unattested_bytes: 0,
        sessions: 0,
        receipts: ReceiptTally {
            submitted: 1,
            forged: 1,
            ..ReceiptTally::default()
        },
        viewer_posted: ReceiptTally::default(),
        heartbeats: Some(1),
    });
    obs.nodes.push(forger);
    if !node2_serving {
        obs.probes
            .retain(|(id, _)| *id != NodeId::from_bytes([2; 32]));
    }
    obs
}

/// Epoch 100 of [`honest`], nodes 1 and 2 registered in epoch 99, node 5's /24 listed as
/// recently penalized (as the coordinator lists it).
fn after_the_forger() -> EpochObservations {
    let mut obs = honest();
    obs.nodes[0].first_epoch = 99;
    obs.nodes[1].first_epoch = 99;
    obs.recently_penalized = vec![(obs.nodes[1].subnet, OperatorId::new("op5").unwrap())];
    obs
}

#[test]
fn new_nodes_get_probation_and_returning_offenders_less() {
    // Node 2 starts serving (passes a probe) only after node 5 was penalized in its /24.
    let mut engine = FraudEngine::new(FraudConfig::default());
    let first = engine.assess(&forger_beside_node2(false));
    assert_eq!(first.penalized(), [NodeId::from_bytes([5; 32])].into());
    let report = engine.assess(&after_the_forger());
    assert_eq!(rules_for(&report, 1), [RuleId::Probation]);
    assert_eq!(rules_for(&report, 2), [RuleId::Whitewashing]);
    assert_eq!(report.node_inputs[0].probation_ppm, 500_000);
    assert_eq!(report.node_inputs[1].probation_ppm, 100_000);
}

#[test]
fn a_throwaway_penalized_in_a_shared_prefix_does_not_whitewash_nodes_serving_there_before() {
    // Node 2 was serving in its /24 (a hosting provider's) when an attacker's throwaway node
    // there got itself penalized: it stays on plain probation.
    let mut engine = FraudEngine::new(FraudConfig::default());
    engine.assess(&forger_beside_node2(true));
    let report = engine.assess(&after_the_forger());
    assert_eq!(rules_for(&report, 2), [RuleId::Probation]);
    assert_eq!(report.node_inputs[1].probation_ppm, 500_000);
}

#[test]
fn an_identity_registered_long_ago_but_never_serving_is_on_probation_when_it_starts() {
    // The engine's history begins in epoch 70. Node 2 registered in epoch 71 but passed no
    // probe until epoch 100: it is as new as a node registered then.
    let mut engine = FraudEngine::new(FraudConfig::default());
    let mut idle = honest();
    idle.epoch = 70;
    idle.probes
        .retain(|(id, _)| *id != NodeId::from_bytes([2; 32]));
    idle.nodes
        .retain(|n| n.node_id != NodeId::from_bytes([2; 32]));
    engine.assess(&idle);
    let mut obs = honest();
    obs.nodes[1].first_epoch = 71;
    let report = engine.assess(&obs);
    assert_eq!(rules_for(&report, 2), [RuleId::Probation]);
    assert_eq!(report.node_inputs[1].probation_ppm, 500_000);
    // Nodes registered before the engine's history began keep their registration's age.
    assert_eq!(rules_for(&report, 1), []);
}

#[test]
fn a_penalized_node_under_another_operators_name_does_not_whitewash_its_new_nodes() {
    // A throwaway node in a /24 of its own registered as "op2" (free text) and was penalized:
    // op2's new node 2, in its own /24, stays on plain probation.
    let mut obs = honest();
    obs.nodes[1].first_epoch = 99;
    obs.recently_penalized = vec![(
        crate::Subnet24([10, 0, 77]).into(),
        OperatorId::new("op2").unwrap(),
    )];
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 2), [RuleId::Probation]);
    assert_eq!(report.node_inputs[1].probation_ppm, 500_000);
}

#[test]
fn viewer_bytes_beyond_the_cap_are_dropped_in_proportion() {
    let mut obs = honest();
    // Viewer 1 watches for three hours' worth in a one-hour epoch (cap: two streams).
    for s in 0..3 {
        obs.sessions.push(session(1 + s % 4, 1, 50 + s, 60));
    }
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let drops: u64 = report
        .evidence
        .iter()
        .filter(|e| e.rule == RuleId::ViewerCap)
        .map(|e| match e.verdict {
            Verdict::DropBytes { bytes } => bytes,
            _ => 0,
        })
        .sum();
    let total = BITRATE * 60 * (20 + 3 * 60);
    let cap = BITRATE * 3_600 * 2;
    assert!(
        drops.abs_diff(total - cap) <= 4,
        "{drops} vs {}",
        total - cap
    );
    assert!(report.penalties.is_empty());
}

fn dropped_under(report: &FraudReport, rule: RuleId) -> u64 {
    report
        .evidence
        .iter()
        .filter(|e| e.rule == rule)
        .map(|e| match e.verdict {
            Verdict::DropBytes { bytes } | Verdict::Penalize { bytes } => bytes,
            _ => 0,
        })
        .sum()
}

/// A session that signed nothing for `silent_minutes` (a coordinator outage) and then one
/// receipt covering them and the epoch's `minutes`: its first receipt booked in the epoch
/// follows its grant start.
fn backlog_session(n: u8, v: u8, s: u8, silent_minutes: u64, minutes: u64) -> SessionUsage {
    SessionUsage {
        covers_from_ms: Some(0),
        ..session(n, v, s, silent_minutes + minutes)
    }
}

#[test]
fn a_backlog_signed_after_an_outage_is_credited_not_capped() {
    // Viewer 9 watched through two epochs in which the coordinator was away, then signed one
    // receipt for all three hours, booked to this epoch: none of it was credited before.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 9));
    obs.sessions.push(backlog_session(2, 9, 90, 120, 60));
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(dropped_under(&report, RuleId::ViewerCap), 0);
    assert_eq!(dropped_under(&report, RuleId::ViewerPrefixCap), 0);
    assert!(report.penalties.is_empty());

    // Observations published before the span was recorded keep the old bound (replay).
    let mut old = obs.clone();
    old.sessions.last_mut().unwrap().covers_from_ms = None;
    let report = FraudEngine::new(FraudConfig::default()).assess(&old);
    let dropped = dropped_under(&report, RuleId::ViewerCap);
    assert!(dropped.abs_diff(BITRATE * 3_600) <= 4, "{dropped}");
}

#[test]
fn a_viewer_over_consuming_within_the_epoch_is_still_capped() {
    // Three parallel one-hour sessions, each signed on time from its start: no span before
    // the epoch, so the cap stays two streams for the epoch.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 9));
    for s in 0..3 {
        obs.sessions
            .push(backlog_session(1 + s % 4, 9, 90 + s, 0, 60));
    }
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let dropped = dropped_under(&report, RuleId::ViewerCap);
    assert!(dropped.abs_diff(BITRATE * 3_600) <= 4, "{dropped}");
}

#[test]
fn withholding_receipts_to_dump_them_in_one_epoch_gains_nothing() {
    // On time, a viewer with one long session and two parallel ones in the last epoch is
    // credited one hour in each of the two quiet epochs and two streams in the third (four
    // hours). Holding the long session's receipts back for two epochs and dumping them with
    // the parallel ones must not credit more than that (up to the bitrate headroom).
    let config = FraudConfig::default();
    let mut obs = honest();
    obs.viewers.push(viewer(9, 9));
    obs.sessions.push(backlog_session(2, 9, 90, 120, 60));
    obs.sessions.push(backlog_session(3, 9, 91, 0, 60));
    obs.sessions.push(backlog_session(4, 9, 92, 0, 60));
    let report = FraudEngine::new(config.clone()).assess(&obs);
    let offered = BITRATE * 60 * (180 + 60 + 60);
    let credited = offered - dropped_under(&report, RuleId::ViewerCap);
    let on_time = BITRATE * 3_600 * 4;
    let headroom = BITRATE * 7_200 * (config.bitrate_headroom_ppm - PPM) / PPM;
    assert!(
        credited <= on_time + headroom + 4,
        "{credited} > {on_time} + {headroom}"
    );

    // Many sessions held back at once add at most the cap's streams over the span.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 9));
    for s in 0..6 {
        obs.sessions
            .push(backlog_session(1 + s % 4, 9, 90 + s, 120, 60));
    }
    let report = FraudEngine::new(config).assess(&obs);
    let offered = BITRATE * 60 * 180 * 6;
    let credited = offered - dropped_under(&report, RuleId::ViewerCap);
    let bound = BITRATE * 3_600 * 2 * 3;
    assert!(credited.abs_diff(bound) <= 8, "{credited} vs {bound}");
}

#[test]
fn collusion_chance_is_a_union_bound() {
    // 4 operators, 8 of 8 sessions on one with share 25 %: 4 × 1 × 0.25^8 ≈ 6.1e-5 < 1e-4.
    assert!(collusion_chance_below(8, 8, 250_000, 4, 100));
    // 7 of 7: 4 × 0.25^7 ≈ 2.4e-4, not below.
    assert!(!collusion_chance_below(7, 7, 250_000, 4, 100));
    // Half of 18 sessions on an operator with 1 % share among 100: 100 × C(18,9) × 1e-18.
    assert!(collusion_chance_below(18, 9, 10_000, 100, 100));
    // An honest viewer: 2 of 6 sessions on a 2 % operator among 50: 50 × 15 × 4e-4 = 0.3.
    assert!(!collusion_chance_below(6, 2, 20_000, 50, 100));
}

#[test]
fn quality_gap_waits_for_enough_sessions() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    for round in 0..4u64 {
        let mut obs = honest();
        obs.epoch = 100 + round;
        // Node 2 serves viewers 1 and 5, who get 90 % of their content late.
        for s in obs
            .sessions
            .iter_mut()
            .filter(|s| s.node_id.as_bytes()[0] == 2)
        {
            s.on_time_bytes = s.bytes / 10;
        }
        let report = engine.assess(&obs);
        let gap = rules_for(&report, 2).contains(&RuleId::QualityGap);
        // Two sessions per epoch: the window reaches eight sessions in the fourth epoch.
        assert_eq!(gap, round == 3, "round {round}");
    }
}

fn timing_out(total: u64, timeouts: u64) -> ProbeSummary {
    ProbeSummary {
        total,
        passed: total - timeouts,
        timeouts,
        capacity_bytes_per_s: if timeouts < total { 2_000_000 } else { 0 },
        ..ProbeSummary::default()
    }
}

#[test]
fn probe_failures_while_claiming_traffic_are_penalized() {
    let mut obs = honest();
    // Node 1: nothing reached it, yet it claims unattested traffic.
    obs.probes[0].1 = timing_out(60, 60);
    obs.claims[0].unattested_bytes = 1_000_000_000;
    // Node 2: wrong content to a probe, whatever it claims.
    obs.probes[1].1.hash_failures = 1;
    // Node 3: nothing reached it, yet it claims more than its receipts show.
    obs.probes[2].1 = timing_out(60, 60);
    obs.claims[2].claimed_bytes *= 2;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 1), [RuleId::ProbeFailuresWhileServing]);
    assert_eq!(rules_for(&report, 2), [RuleId::ProbeFailuresWhileServing]);
    assert!(rules_for(&report, 3).contains(&RuleId::ProbeFailuresWhileServing));
}

#[test]
fn a_node_down_most_of_an_epoch_is_judged_on_what_it_could_have_served() {
    let mut obs = honest();
    // Node 1: unreachable the whole epoch to the prober, every byte it claims backed by its
    // viewers' receipts: low availability, no fraud.
    obs.probes[0].1 = timing_out(60, 60);
    // Node 2: up a third of the epoch (no grant log: 2 MB/s measured over the hour, 7.2 GB,
    // of which a third plus the 20 points allowed for the sample's error, 3.84 GB, is
    // reachable), 3.5 GB unattested.
    obs.probes[1].1 = timing_out(60, 40);
    obs.claims[1].unattested_bytes = 3_500_000_000;
    // Node 3: the same uptime, claiming more than that.
    obs.probes[2].1 = timing_out(60, 40);
    obs.claims[2].unattested_bytes = 4_000_000_000;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 1), []);
    assert_eq!(rules_for(&report, 2), []);
    assert_eq!(rules_for(&report, 3), [RuleId::ProbeFailuresWhileServing]);
    let availability = |n: u8| input_of(&report, n).availability_ppm;
    assert_eq!((availability(1), availability(2)), (0, 333_333));

    // With a grant log, what the node could serve is what its viewers' grants carry where that
    // is more than its probes measured: node 4's two 20-minute grants (its probes measured
    // 100 B/s), of which it was reachable for a third plus the 20 points.
    let mut obs = honest();
    obs.grants = Some(honest_grants());
    obs.probes[3].1 = timing_out(60, 40);
    obs.probes[3].1.capacity_bytes_per_s = 100;
    let carried = 2 * 20 * 60 * BITRATE;
    obs.claims[3].unattested_bytes = carried / 2;
    // (Its grants' receipts verified all they carry: the unattested bytes earn nothing.)
    let penalizing = |report: &FraudReport| -> Vec<RuleId> {
        report
            .evidence
            .iter()
            .filter(|e| e.node_id == NodeId::from_bytes([4; 32]))
            .filter(|e| matches!(e.verdict, Verdict::Penalize { .. }))
            .map(|e| e.rule)
            .collect()
    };
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(penalizing(&report), []);
    obs.claims[3].unattested_bytes = carried * 6 / 10;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(penalizing(&report), [RuleId::ProbeFailuresWhileServing]);
}

/// Whether node 2, probed as `before` in epoch 100, then silent through two epochs no node was
/// probed in (a coordinator outage: no heartbeat, no receipt), is penalized for probe failures
/// when its first heartbeat after claims `unattested` bytes (the tails of sessions that ended
/// through the outage, whose viewers signed nothing) while it is up a third of that epoch.
fn penalized_after_an_outage(before: ProbeSummary, unattested: u64) -> bool {
    let mut engine = FraudEngine::new(FraudConfig::default());
    let mut obs = honest();
    obs.probes[1].1 = before;
    engine.assess(&obs);
    for epoch in [101, 102] {
        let mut down = honest();
        down.epoch = epoch;
        down.probes.clear();
        down.sessions.clear();
        down.claims.clear();
        engine.assess(&down);
    }
    let mut after = honest();
    after.epoch = 103;
    after.probes[1].1 = timing_out(60, 40);
    after.claims[1].unattested_bytes = unattested;
    rules_for(&engine.assess(&after), 2).contains(&RuleId::ProbeFailuresWhileServing)
}

#[test]
fn a_claim_after_an_outage_is_judged_on_what_the_outage_epochs_could_carry_too() {
    // This epoch alone reaches a third plus 20 points of 7.2 GB (3.84 GB); each outage epoch
    // what the node's last probes measured (all passed, 2 MB/s: 7.2 GB), 18.24 GB in all.
    let up = timing_out(60, 0);
    assert!(!penalized_after_an_outage(up, 10_000_000_000));
    assert!(!penalized_after_an_outage(up, 18_000_000_000));
    // Beyond what the outage epochs could carry as well: still fraud.
    assert!(penalized_after_an_outage(up, 18_500_000_000));
    // A node nothing reached before the outage could carry nothing through it.
    assert!(penalized_after_an_outage(
        timing_out(60, 60),
        10_000_000_000
    ));
    // Without the outage (the node heartbeating through both epochs) the epoch alone counts.
    let mut engine = FraudEngine::new(FraudConfig::default());
    for epoch in [100, 101, 102] {
        let mut obs = honest();
        obs.epoch = epoch;
        engine.assess(&obs);
    }
    let mut obs = honest();
    obs.epoch = 103;
    obs.probes[1].1 = timing_out(60, 40);
    obs.claims[1].unattested_bytes = 10_000_000_000;
    let report = engine.assess(&obs);
    assert!(rules_for(&report, 2).contains(&RuleId::ProbeFailuresWhileServing));
}

#[test]
fn an_epoch_no_node_was_probed_in_measures_nodes_by_their_last_probes() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    let mut obs = honest();
    obs.probes[1].1 = timing_out(60, 30);
    let first = engine.assess(&obs);
    let measured = |report: &FraudReport, n: u8| {
        let input = input_of(report, n);
        (input.availability_ppm, input.probe_capacity_bytes)
    };
    let capacity = 2_000_000 * HOUR_MS / 1_000;
    assert_eq!(measured(&first, 1), (PPM, capacity));
    assert_eq!(measured(&first, 2), (500_000, capacity));

    // The prober did not run (a coordinator outage): the nodes' last probes stand in.
    obs.epoch = 101;
    obs.probes.clear();
    let outage = engine.assess(&obs);
    assert!(outage.evidence.is_empty(), "{:?}", outage.evidence);
    assert_eq!(measured(&outage, 1), (PPM, capacity));
    assert_eq!(measured(&outage, 2), (500_000, capacity));
    assert!(outage.node_inputs.iter().all(|n| n.verified_bytes > 0));

    // Probes of one node are no outage: the node they missed has no availability there.
    obs.epoch = 102;
    obs.probes = honest().probes.into_iter().take(1).collect();
    let partial = engine.assess(&obs);
    assert_eq!(measured(&partial, 1), (PPM, capacity));
    assert_eq!(measured(&partial, 2), (0, 0));

    // Memory ends: an outage long after a node's last probe leaves it unmeasured.
    obs.epoch = 102 + FraudConfig::default().availability_memory_epochs + 1;
    obs.probes.clear();
    let later = engine.assess(&obs);
    assert_eq!(measured(&later, 1), (0, 0));
}

#[test]
fn no_session_is_allowed_more_slack_than_its_epoch_lasts() {
    // Node 1's two sessions are verified; it claims 400 s of the stream per session on
    // top: within the 900 s slack of a one-hour epoch, beyond anything a two-minute epoch can
    // hold unreceipted.
    let mut obs = honest();
    obs.claims[0].claimed_bytes += 2 * 400 * BITRATE;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 1), []);
    obs.epoch_ms = 120_000;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(rules_for(&report, 1).contains(&RuleId::ClaimsExceedReceipts));
}

#[test]
fn a_claim_trailing_its_receipts_into_the_next_epoch_is_not_penalized() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    let first = honest();
    assert!(engine.assess(&first).evidence.is_empty());
    let node = |n: u8| NodeId::from_bytes([n; 32]);
    // The next epoch: node 2's sessions ended (their last receipts were signed, and booked,
    // before the epoch's end), and it claims what those receipts acknowledged, having got them
    // after its last heartbeat of the epoch before. Node 3 inflates its claim every epoch.
    let trailing = |epoch: u64, obs: &EpochObservations| {
        let mut next = obs.clone();
        next.epoch = epoch;
        next.sessions.retain(|s| s.node_id != node(2));
        for claim in &mut next.claims {
            if claim.node_id == node(2) {
                claim.claimed_bytes = 30 * BITRATE;
                claim.sessions = 0;
            }
            if claim.node_id == node(3) {
                claim.claimed_bytes *= 4;
            }
        }
        next
    };
    let next = trailing(101, &first);
    let report = engine.assess(&next);
    assert_eq!(rules_for(&report, 2), []);
    assert_eq!(rules_for(&report, 3), [RuleId::ClaimsExceedReceipts]);

    // Room carries one epoch only: the same claim after an epoch the node claimed nothing in
    // is a claim no receipt ever backed.
    let mut quiet = trailing(102, &first);
    quiet.claims.retain(|c| c.node_id != node(2));
    engine.assess(&quiet);
    let report = engine.assess(&trailing(103, &first));
    assert_eq!(rules_for(&report, 2), [RuleId::ClaimsExceedReceipts]);
}

#[test]
fn claims_held_back_by_a_coordinator_outage_use_the_room_of_every_epoch_it_lasted() {
    let node = |n: u8| NodeId::from_bytes([n; 32]);
    // Each node serves two 20-minute sessions an epoch; the coordinator is down through epochs
    // 101 and 102: receipts the nodes kept are booked there once it is back, with no
    // heartbeat (`silent`), or, for comparison, the nodes heartbeat and claim nothing. In 103
    // nodes 2 and 3 serve no one and claim what they served in the outage: node 2 the 80
    // minutes its receipts acknowledged, node 3 five times that.
    let run = |silent: bool| {
        let mut engine = FraudEngine::new(FraudConfig::default());
        assert!(engine.assess(&honest()).evidence.is_empty());
        for epoch in [101, 102] {
            let mut obs = honest();
            obs.epoch = epoch;
            for claim in &mut obs.claims {
                if claim.node_id == node(2) || claim.node_id == node(3) {
                    claim.claimed_bytes = 0;
                    claim.heartbeats = Some(u64::from(!silent));
                }
            }
            assert!(engine.assess(&obs).evidence.is_empty());
        }
        let mut back = honest();
        back.epoch = 103;
        back.sessions
            .retain(|s| s.node_id != node(2) && s.node_id != node(3));
        for claim in &mut back.claims {
            let outage_bytes = 2 * 2 * 20 * 60 * BITRATE;
            if claim.node_id == node(2) {
                claim.claimed_bytes = outage_bytes;
                claim.sessions = 0;
            }
            if claim.node_id == node(3) {
                claim.claimed_bytes = 5 * outage_bytes;
                claim.sessions = 0;
            }
        }
        let report = engine.assess(&back);
        (rules_for(&report, 2), rules_for(&report, 3))
    };
    assert_eq!(run(true), (vec![], vec![RuleId::ClaimsExceedReceipts]));
    // A node that heartbeats claims as it serves: only the last epoch's room carries.
    assert_eq!(
        run(false),
        (
            vec![RuleId::ClaimsExceedReceipts],
            vec![RuleId::ClaimsExceedReceipts]
        )
    );
}

fn input_of(report: &FraudReport, n: u8) -> &NodeEpochInput {
    let id = NodeId::from_bytes([n; 32]);
    report
        .node_inputs
        .iter()
        .find(|i| i.node_id == id)
        .expect("node input")
}

fn grant(n: u8, v: u8, s: u8, live_minutes: u64, probe: bool) -> IssuedGrant {
    IssuedGrant {
        session_id: SessionId::from_bytes([s; 16]),
        node_id: NodeId::from_bytes([n; 32]),
        viewer: viewer_key(v),
        stream_id: StreamId::new("live").unwrap(),
        live_ms: live_minutes * 60_000,
        probe,
    }
}

/// The honest epoch's grants: one per session, live as long as it played.
fn honest_grants() -> Vec<IssuedGrant> {
    (1..=8).map(|v| grant(1 + v % 4, v, v, 20, false)).collect()
}

#[test]
fn framers_cost_only_their_own_credit() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    for epoch in 0..6u64 {
        let mut obs = honest();
        obs.epoch = 100 + epoch;
        // Ten hostile keys put three sessions each on node 1 and post receipts past it: forged,
        // replayed, beyond their grant, with wrong content and over-bitrate.
        for k in 0..10u8 {
            obs.viewers.push(viewer(50 + k, 50 + k));
            for s in 0..3u8 {
                let mut framing = session(1, 50 + k, 100 + k * 3 + s, 10);
                if s == 0 {
                    framing.bytes_total *= 3;
                }
                obs.sessions.push(framing);
            }
        }
        obs.claims[0].viewer_posted = ReceiptTally {
            submitted: 60,
            accepted: 30,
            forged: 10,
            replayed: 5,
            beyond_grant: 10,
            wrong_content: 5,
        };
        let report = engine.assess(&obs);
        assert!(
            report.penalties.is_empty(),
            "epoch {epoch}: {:?}",
            report.penalties
        );
        assert!(
            report
                .evidence
                .iter()
                .all(|e| !matches!(e.verdict, Verdict::Penalize { .. })),
            "epoch {epoch}"
        );
        // The honest viewers' bytes on node 1 are all credited (the framers' may be, until
        // their concentration shows).
        let node1 = input_of(&report, 1);
        let honest_bytes = 2 * BITRATE * 20 * 60;
        assert!(
            node1.verified_bytes - node1.flagged_bytes >= honest_bytes,
            "epoch {epoch}: {node1:?}"
        );
    }
}

#[test]
fn unattested_bytes_are_bounded_by_the_grants_issued_to_the_node() {
    let mut obs = honest();
    // Node 1 served a legacy player for 30 minutes on a grant; node 2 had no viewer grant but
    // probes, and claims a full epoch of unattested bytes.
    obs.grants = Some({
        let mut grants = honest_grants();
        grants.push(grant(1, 30, 30, 30, false));
        grants.push(grant(2, 31, 31, 60, true));
        grants
    });
    obs.claims[0].unattested_bytes = BITRATE * 30 * 60;
    obs.claims[1].unattested_bytes = BITRATE * 3_600;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(input_of(&report, 1).unattested_bytes, BITRATE * 30 * 60);
    assert_eq!(
        input_of(&report, 2).unattested_bytes,
        0,
        "probe grants bound nothing"
    );
    assert_eq!(rules_for(&report, 2), [RuleId::UnattestedBeyondGrants]);
    // Without a grant log the old cap (probe capacity) alone applies.
    obs.grants = None;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(input_of(&report, 2).unattested_bytes, BITRATE * 3_600);
}

#[test]
fn grants_of_signing_viewers_allow_only_their_silence_as_unattested() {
    let mut obs = honest();
    // The coordinator logs each grant live until its expiry (here the epoch's end), while its
    // viewer watched 20 minutes and signed for them. Viewer 5, which signs on node 2, also
    // holds a grant on node 1 whose receipts node 1 never handed in.
    let mut grants: Vec<IssuedGrant> = (1..=8).map(|v| grant(1 + v % 4, v, v, 60, false)).collect();
    grants.push(grant(1, 5, 90, 60, false));
    obs.grants = Some(grants);
    // Node 1 (viewers 4 and 8) claims everything its grants could have carried beyond the
    // receipts: two 40-minute tails and the hour of viewer 5's grant.
    obs.claims[0].unattested_bytes = 2 * BITRATE * 40 * 60 + BITRATE * 3_600;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let silence = BITRATE * FraudConfig::default().signed_silence_seconds;
    assert_eq!(input_of(&report, 1).unattested_bytes, 3 * silence);
    assert_eq!(rules_for(&report, 1), [RuleId::UnattestedBeyondGrants]);
    assert!(report.penalties.is_empty());
}

#[test]
fn unattested_bytes_held_back_by_an_outage_are_bounded_by_the_grants_of_its_epochs() {
    let node = |n: u8| NodeId::from_bytes([n; 32]);
    let legacy = BITRATE * 8 * 60;
    // Epochs 101 and 102: nodes 2 and 3 also serve a legacy player each for 8 minutes (a
    // grant, no receipts) and send no heartbeat (an outage), or, for comparison, heartbeat and
    // claim nothing. In 103 they serve no one and claim those 16 minutes as unattested; node 3
    // also inflates its attested claim, and is penalized. In 104 node 3 claims them again.
    let run = |silent: bool| {
        let mut engine = FraudEngine::new(FraudConfig::default());
        let epoch_of = |epoch: u64, extra: Vec<IssuedGrant>| {
            let mut obs = honest();
            obs.epoch = epoch;
            obs.grants = Some(honest_grants().into_iter().chain(extra).collect());
            obs
        };
        assert!(engine.assess(&epoch_of(100, vec![])).evidence.is_empty());
        for epoch in [101u8, 102] {
            let legacy_grants = [2u8, 3]
                .iter()
                .map(|&n| {
                    let s = 40 + n * 4 + epoch % 100;
                    grant(n, s, s, 8, false)
                })
                .collect();
            let mut obs = epoch_of(u64::from(epoch), legacy_grants);
            for claim in &mut obs.claims {
                if claim.node_id == node(2) || claim.node_id == node(3) {
                    claim.claimed_bytes = 0;
                    claim.heartbeats = Some(u64::from(!silent));
                }
            }
            assert!(engine.assess(&obs).evidence.is_empty());
        }
        let mut back = epoch_of(103, vec![]);
        let serving = |id: &NodeId| *id != node(2) && *id != node(3);
        back.sessions.retain(|s| serving(&s.node_id));
        if let Some(grants) = &mut back.grants {
            grants.retain(|g| serving(&g.node_id));
        }
        for claim in &mut back.claims {
            if claim.node_id == node(2) || claim.node_id == node(3) {
                claim.unattested_bytes = 2 * legacy;
                claim.claimed_bytes = 0;
                claim.sessions = 0;
            }
            if claim.node_id == node(3) {
                claim.claimed_bytes = 100 * legacy;
            }
        }
        let report = engine.assess(&back);
        assert_eq!(rules_for(&report, 3)[0], RuleId::ClaimsExceedReceipts);
        let paid_back = input_of(&report, 2).unattested_bytes;
        let mut after = epoch_of(104, vec![]);
        after.claims[2].unattested_bytes = 2 * legacy;
        let report = engine.assess(&after);
        (paid_back, input_of(&report, 3).unattested_bytes)
    };
    // The silent epochs' grants bound the claim after them; a penalty forfeits that room.
    assert_eq!(run(true), (2 * legacy, 0));
    // A node that heartbeats claims as it serves: the claiming epoch's own grants bound it.
    assert_eq!(run(false), (0, 0));
}

#[test]
fn probe_sessions_are_verified_but_never_paid() {
    let mut obs = honest();
    obs.sessions.push(session(3, 40, 40, 1));
    obs.viewers.push(viewer(40, 40));
    obs.claims[2].claimed_bytes += BITRATE * 60;
    let mut grants = honest_grants();
    grants.push(grant(3, 40, 40, 1, true));
    obs.grants = Some(grants);
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(report.evidence.is_empty(), "{:?}", report.evidence);
    assert_eq!(input_of(&report, 3).verified_bytes, 2 * BITRATE * 20 * 60);
}

#[test]
fn the_network_pays_unattested_bytes_up_to_a_ratio_of_attested_ones() {
    let mut obs = honest();
    // Every node claims as many unattested bytes as it has attested ones, on real grants.
    let mut grants = honest_grants();
    for n in 1..=4u8 {
        grants.push(grant(n, 60 + n, 60 + n, 60, false));
        obs.claims[usize::from(n) - 1].unattested_bytes = 2 * BITRATE * 20 * 60;
    }
    obs.grants = Some(grants);
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let unattested: u64 = report.node_inputs.iter().map(|n| n.unattested_bytes).sum();
    let attested: u64 = report.node_inputs.iter().map(|n| n.verified_bytes).sum();
    assert!(unattested <= attested / 4, "{unattested} vs {attested}");
    assert!(unattested + 4 >= attested / 4, "{unattested} vs {attested}");
    assert!(report
        .evidence
        .iter()
        .all(|e| e.rule == RuleId::UnattestedRatio));
}

#[test]
fn fresh_keys_earn_nothing_in_an_established_network_and_everything_in_a_young_one() {
    let mut engine = FraudEngine::new(FraudConfig::default());
    // Three epochs of the honest viewers spreading over the four nodes' prefixes.
    for epoch in 0..3u64 {
        let mut obs = honest();
        obs.epoch = 100 + epoch;
        for s in obs.sessions.iter_mut() {
            let v = s.viewer.as_bytes()[1];
            s.node_id = NodeId::from_bytes([1 + (u64::from(v) + epoch) as u8 % 4; 32]);
        }
        let report = engine.assess(&obs);
        assert!(
            report.evidence.is_empty(),
            "young network: {:?}",
            report.evidence
        );
    }
    let mut obs = honest();
    obs.epoch = 103;
    obs.viewers.push(viewer(70, 70));
    obs.sessions.push(session(2, 70, 70, 20));
    let report = engine.assess(&obs);
    let node2 = input_of(&report, 2);
    assert_eq!(
        node2.flagged_bytes,
        BITRATE * 20 * 60,
        "the fresh key's bytes"
    );
    assert!(rules_for(&report, 2).contains(&RuleId::NewViewerKey));
    assert!(report.penalties.is_empty());
}

#[test]
fn keys_of_one_source_prefix_share_one_cap() {
    let mut obs = honest();
    // Twenty keys in one /24, each watching the whole epoch: the prefix is capped at eight
    // streams.
    for k in 0..20u8 {
        obs.viewers.push(viewer(100 + k, 200));
        obs.sessions.push(session(1 + k % 4, 100 + k, 100 + k, 60));
    }
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let dropped: u64 = report
        .evidence
        .iter()
        .filter(|e| e.rule == RuleId::ViewerPrefixCap)
        .map(|e| match e.verdict {
            Verdict::DropBytes { bytes } => bytes,
            _ => 0,
        })
        .sum();
    let cap = 8 * BITRATE * 3_600;
    assert!(
        dropped.abs_diff(20 * BITRATE * 3_600 - cap) <= 20,
        "{dropped}"
    );
    assert!(report.penalties.is_empty());
}

#[test]
fn over_bitrate_is_judged_at_the_measured_bitrate_not_the_grant_ceiling() {
    let mut obs = honest();
    // The coordinator only knows the grant ceiling, four times the real bitrate.
    obs.bitrates = vec![(StreamId::new("live").unwrap(), 4 * BITRATE)];
    obs.sessions[0].bytes_total *= 2;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let node = obs.sessions[0].node_id.as_bytes()[0];
    assert_eq!(rules_for(&report, node), [RuleId::OverBitrate]);
    let evidence = report
        .evidence
        .iter()
        .find(|e| e.rule == RuleId::OverBitrate)
        .expect("over-bitrate evidence");
    assert_eq!(evidence.inputs["bitrate"], BITRATE);
}

/// A relay edge: node `child` pulls `minutes` of the stream from node `parent`.
fn edge(parent: u8, child: u8, s: u8, minutes: u64) -> SessionUsage {
    SessionUsage {
        viewer: ViewerKey::from_bytes([child; 32]),
        ..session(parent, child, s, minutes)
    }
}

fn dropped_by(report: &FraudReport, n: u8, rule: RuleId) -> u64 {
    let id = NodeId::from_bytes([n; 32]);
    report
        .evidence
        .iter()
        .filter(|e| e.node_id == id && e.rule == rule)
        .map(|e| match e.verdict {
            Verdict::DropBytes { bytes } | Verdict::Penalize { bytes } => bytes,
            _ => 0,
        })
        .sum()
}

fn eligible(report: &FraudReport, n: u8) -> u64 {
    let input = input_of(report, n);
    input.verified_bytes - input.flagged_bytes
}

#[test]
fn a_relay_is_paid_for_what_its_subtree_verifiably_delivered() {
    // Node 2 serves viewers 1 and 5 (20 minutes each) and pulls 20 minutes from node 1.
    let mut obs = honest();
    obs.sessions.push(edge(1, 2, 101, 20));
    let plain = FraudEngine::new(FraudConfig::default()).assess(&honest());
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(report.evidence.is_empty(), "{:?}", report.evidence);
    assert!(report.penalties.is_empty());
    assert_eq!(
        eligible(&report, 1),
        eligible(&plain, 1) + BITRATE * 20 * 60,
        "the parent earns the whole edge"
    );
    // A longer edge than the child's viewers watched is paid up to what they watched.
    let mut obs = honest();
    obs.sessions.push(edge(1, 2, 101, 60));
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(
        eligible(&report, 1),
        eligible(&plain, 1) + BITRATE * 40 * 60
    );
    assert_eq!(
        dropped_by(&report, 1, RuleId::RelayBeyondSubtree),
        BITRATE * 20 * 60
    );
    assert!(report.penalties.is_empty());
}

#[test]
fn a_relay_edge_signed_after_an_outage_is_credited_for_its_backlog() {
    // Node 2 pulled from node 1 through two epochs the coordinator was away for, as its new
    // viewer 9 watched: neither could verify segments, and each signed one receipt for all
    // three hours after. The edge is bounded by one stream over the span it covers, and by
    // what the subtree delivered, not by one stream for this epoch alone.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 9));
    obs.sessions.push(backlog_session(2, 9, 90, 120, 60));
    obs.sessions.push(SessionUsage {
        covers_from_ms: Some(0),
        ..edge(1, 2, 101, 180)
    });
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(dropped_by(&report, 1, RuleId::RelayBeyondSubtree), 0);
    assert!(report.penalties.is_empty());
    // Without the span (observations published before it was recorded): one stream for the
    // epoch, with the headroom.
    obs.sessions.last_mut().unwrap().covers_from_ms = None;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(
        dropped_by(&report, 1, RuleId::RelayBeyondSubtree),
        BITRATE * 180 * 60 - BITRATE * 66 * 60
    );
}

#[test]
fn a_chain_of_relays_passes_its_viewers_up_and_a_receipt_mill_earns_nothing() {
    let mut obs = honest();
    // Node 3 feeds node 2 for the whole hour; node 2 serves 40 minutes itself and feeds node 4
    // (40 minutes of viewers) for the hour.
    obs.sessions.push(edge(3, 2, 101, 60));
    obs.sessions.push(edge(2, 4, 102, 60));
    // Node 5, of its own operator and /24, has no viewers: a receipt mill below node 1.
    obs.nodes.push(node(5, "op5", 5));
    obs.sessions.push(edge(1, 5, 103, 60));
    let plain = FraudEngine::new(FraudConfig::default()).assess(&honest());
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(report.penalties.is_empty(), "{:?}", report.penalties);
    // 2 → 4: bounded by node 4's 40 minutes; 3 → 2: node 2's 40 minutes plus those 40.
    assert_eq!(
        eligible(&report, 2),
        eligible(&plain, 2) + BITRATE * 40 * 60
    );
    assert_eq!(
        eligible(&report, 3),
        eligible(&plain, 3) + BITRATE * 60 * 60
    );
    assert_eq!(eligible(&report, 1), eligible(&plain, 1));
    assert_eq!(
        dropped_by(&report, 1, RuleId::RelayBeyondSubtree),
        BITRATE * 60 * 60
    );
}

#[test]
fn relay_edges_within_one_network_or_inflated_earn_nothing_and_penalize_no_one() {
    let mut obs = honest();
    // Node 6 is in node 1's /24 and serves a viewer of its own.
    obs.nodes.push(node(6, "op6", 1));
    obs.viewers.push(viewer(60, 60));
    obs.sessions.push(session(6, 60, 60, 30));
    obs.sessions.push(edge(1, 6, 101, 30));
    // Node 2 acknowledges to node 3 three times the bytes an hour of the stream carries.
    let mut inflated = edge(3, 2, 102, 60);
    inflated.bytes *= 3;
    inflated.bytes_total *= 3;
    obs.sessions.push(inflated);
    // Edges both ways between nodes 2 and 4 (a cycle no tree has) end.
    obs.sessions.push(edge(2, 4, 103, 10));
    obs.sessions.push(edge(4, 2, 104, 10));
    let plain = FraudEngine::new(FraudConfig::default()).assess(&honest());
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(report.penalties.is_empty(), "{:?}", report.penalties);
    assert_eq!(
        dropped_by(&report, 1, RuleId::SelfDealing),
        BITRATE * 30 * 60
    );
    assert_eq!(eligible(&report, 1), eligible(&plain, 1));
    assert!(rules_for(&report, 3).contains(&RuleId::OverBitrate));
    assert_eq!(eligible(&report, 3), eligible(&plain, 3));
    // The cycle's edges earn at most what nodes 2 and 4 served themselves.
    assert!(eligible(&report, 2) <= eligible(&plain, 2) + BITRATE * 10 * 60);
    assert!(eligible(&report, 4) <= eligible(&plain, 4) + BITRATE * 10 * 60);
}

#[test]
fn grants_of_relay_edges_carry_no_unattested_credit() {
    // Node 5 asked for an upstream on node 1 for a stream it never pulls; node 1 claims the
    // edge's hour as unattested.
    let mut obs = honest();
    obs.nodes.push(node(5, "op5", 5));
    let mut grants = honest_grants();
    grants.push(IssuedGrant {
        viewer: ViewerKey::from_bytes([5; 32]),
        ..grant(1, 5, 103, 60, false)
    });
    obs.grants = Some(grants);
    if let Some(claim) = obs
        .claims
        .iter_mut()
        .find(|c| c.node_id == NodeId::from_bytes([1; 32]))
    {
        claim.unattested_bytes = BITRATE * 60 * 60;
    }
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let viewer_grants_left = {
        let mut plain = honest();
        plain.grants = Some(honest_grants());
        if let Some(claim) = plain
            .claims
            .iter_mut()
            .find(|c| c.node_id == NodeId::from_bytes([1; 32]))
        {
            claim.unattested_bytes = BITRATE * 60 * 60;
        }
        input_of(&FraudEngine::new(FraudConfig::default()).assess(&plain), 1).unattested_bytes
    };
    assert_eq!(input_of(&report, 1).unattested_bytes, viewer_grants_left);
}

#[test]
fn probe_traffic_no_receipt_acknowledged_is_netted_out_neither_paid_nor_flagged() {
    // Node 2 also holds an idle viewer grant (a player handed a grant that never played) and
    // node 3 none beyond its verified ones. Each was probed over HTTP-FLV (no receipt): the
    // node cannot tell the probe from a player and reports its bytes as unattested; the
    // coordinator knows what its probe read.
    let node = |n: u8| NodeId::from_bytes([n; 32]);
    let flv = BITRATE * 5;
    let mut obs = honest();
    obs.grants = Some({
        let mut grants = honest_grants();
        grants.push(grant(2, 40, 40, 60, false));
        grants.push(grant(2, 41, 41, 60, true));
        grants.push(grant(3, 42, 42, 60, true));
        grants
    });
    obs.claims[1].unattested_bytes = flv;
    obs.claims[2].unattested_bytes = flv;
    obs.probe_traffic = vec![(node(2), flv), (node(3), flv)];
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    for n in [2, 3] {
        assert!(rules_for(&report, n).is_empty(), "{:?}", report.evidence);
        assert_eq!(input_of(&report, n).unattested_bytes, 0, "node {n}");
    }
    // A node's own unattested bytes beyond the probes' are bounded as before.
    obs.claims[2].unattested_bytes = 2 * flv;
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert_eq!(rules_for(&report, 3), [RuleId::UnattestedBeyondGrants]);
    assert_eq!(input_of(&report, 3).unattested_bytes, 0);
}

#[test]
fn claims_that_trail_their_receipts_into_the_next_epoch_are_netted_there() {
    // Node 1's two viewers post their receipts to the coordinator, so the node reports their
    // bytes as unattested. A probe's receipts reach the node, which claims them attested in its
    // first heartbeat of epoch 101, while the coordinator booked them to 100 when they were
    // signed; the probe's playlist bytes (no receipt) pass the grace period in 101 too.
    let node_1 = NodeId::from_bytes([1; 32]);
    let probed = BITRATE * 60;
    let playlists = 2_000;
    let viewers = 2 * BITRATE * 20 * 60;
    let epoch = |epoch: u64| {
        let mut obs = honest();
        obs.epoch = epoch;
        let mut grants = honest_grants();
        grants.push(grant(1, 43, 43, 60, true));
        obs.grants = Some(grants);
        obs.claims[0].claimed_bytes = 0;
        obs.claims[0].unattested_bytes = viewers;
        if epoch == 100 {
            obs.sessions.push(session(1, 43, 43, 1));
            obs.probe_traffic = vec![(node_1, playlists)];
        } else {
            obs.claims[0].claimed_bytes = probed;
            obs.claims[0].unattested_bytes += playlists;
        }
        obs
    };
    let mut engine = FraudEngine::new(FraudConfig::default());
    for e in [100, 101] {
        let report = engine.assess(&epoch(e));
        assert!(
            rules_for(&report, 1).is_empty(),
            "epoch {e}: {:?}",
            report.evidence
        );
        assert_eq!(input_of(&report, 1).unattested_bytes, 0, "epoch {e}");
        assert_eq!(input_of(&report, 1).verified_bytes, viewers, "epoch {e}");
    }
    // What the pool left is for the next epoch only.
    let report = engine.assess(&epoch(103));
    assert_eq!(rules_for(&report, 1), [RuleId::UnattestedBeyondGrants]);
}

#[test]
fn one_prefix_of_bots_cannot_pull_the_measured_bitrate_down() {
    // Twenty fresh keys in one /24 sign for a third of the bitrate over one minute each: more
    // sessions than the eight honest viewers have, but one source prefix, so one vote.
    let mut obs = honest();
    for b in 0..20u8 {
        let key = 100 + b;
        obs.viewers.push(viewer(key, 250));
        let mut s = session(1 + b % 4, key, 100 + b, 1);
        s.bytes /= 3;
        s.on_time_bytes /= 3;
        s.bytes_total /= 3;
        obs.sessions.push(s);
    }
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    let over: Vec<&Evidence> = report
        .evidence
        .iter()
        .filter(|e| e.rule == RuleId::OverBitrate)
        .collect();
    assert!(over.is_empty(), "{over:?}");
    for n in &report.node_inputs {
        assert_eq!(n.flagged_bytes, 0, "{n:?}");
    }
}

#[test]
fn route_shares_weigh_only_nodes_that_served_by_availability() {
    let (acme, other) = (
        OperatorId::new("acme").unwrap(),
        OperatorId::new("other").unwrap(),
    );
    let summary = |passed: u64| ProbeSummary {
        total: 10,
        passed,
        ..ProbeSummary::default()
    };
    let (full, half, none) = (summary(10), summary(5), summary(0));
    // acme serves with one node and registered 99 that serve nothing (never probed, or
    // failing every probe); "other" serves with two, one half available.
    let mut nodes = vec![(&acme, Some(&full), true)];
    nodes.extend(std::iter::repeat_n((&acme, None, false), 98));
    nodes.push((&acme, Some(&none), false));
    nodes.extend([(&other, Some(&full), true), (&other, Some(&half), true)]);
    let shares = operator_route_shares(nodes.iter().copied(), 100_000);
    assert_eq!(shares, [(acme.clone(), 400_000), (other.clone(), 600_000)]);
    // A node that served viewers but passed no probe of the epoch (one failed under load, or
    // none in a short epoch) weighs as a fully available one: routing sent them there.
    nodes.push((&acme, Some(&none), true));
    let shares = operator_route_shares(nodes.iter().copied(), 100_000);
    assert_eq!(shares, [(acme.clone(), 571_428), (other.clone(), 428_571)]);
    // Nothing probed or served (the prober did not run): every registered node weighs alike.
    let shares = operator_route_shares([(&acme, None, false), (&other, None, false)], 100_000);
    assert_eq!(shares, [(acme, 500_000), (other, 500_000)]);
}

#[test]
fn viewers_of_a_serving_node_no_probe_reached_in_the_epoch_are_not_colluders() {
    // Node 4 serves viewer 9 four sessions, as routing sent it there, but passed no probe of
    // the epoch (the one it got failed under load). Counted at nothing, op4's route share was
    // 0 and a viewer staying on it looked like a colluder; counted as available, four of four
    // sessions on one of four operators is not unlikely enough.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 99));
    for s in 0..4 {
        obs.sessions.push(session(4, 9, 100 + s, 5));
    }
    let failed = ProbeSummary {
        total: 1,
        passed: 0,
        ..ProbeSummary::default()
    };
    let probes: BTreeMap<NodeId, ProbeSummary> = obs.probes.iter().copied().collect();
    let node4 = obs.nodes[3].node_id;
    let listed: Vec<(&OperatorId, Option<&ProbeSummary>, bool)> = obs
        .nodes
        .iter()
        .map(|n| {
            let summary = if n.node_id == node4 {
                Some(&failed)
            } else {
                probes.get(&n.node_id)
            };
            (&n.operator, summary, true)
        })
        .collect();
    obs.operator_route_share_ppm = operator_route_shares(listed.iter().copied(), 100_000);
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(
        !rules_for(&report, 4).contains(&RuleId::Collusion),
        "{:?}",
        report.evidence
    );
    // Counted at nothing (a node that served no one), the same viewer is a colluder.
    let listed: Vec<(&OperatorId, Option<&ProbeSummary>, bool)> = listed
        .into_iter()
        .map(|(operator, summary, _)| (operator, summary, summary.is_some_and(|p| p.passed > 0)))
        .collect();
    obs.operator_route_share_ppm = operator_route_shares(listed.iter().copied(), 100_000);
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(
        rules_for(&report, 4).contains(&RuleId::Collusion),
        "{:?}",
        report.evidence
    );
}

#[test]
fn idle_registrations_do_not_hide_colluding_viewers() {
    // Viewer 9 watches ten sessions on node 4 (operator op4) and nowhere else. op4 also
    // registered 100 nodes that never serve: the route shares, from the nodes that served,
    // still give op4 a quarter, and the viewer is a colluder.
    let mut obs = honest();
    obs.viewers.push(viewer(9, 99));
    for s in 0..10 {
        obs.sessions.push(session(4, 9, 100 + s, 5));
    }
    let op4 = OperatorId::new("op4").unwrap();
    let probes: BTreeMap<NodeId, ProbeSummary> = obs.probes.iter().copied().collect();
    let mut registered: Vec<(&OperatorId, Option<&ProbeSummary>, bool)> = obs
        .nodes
        .iter()
        .map(|n| (&n.operator, probes.get(&n.node_id), true))
        .collect();
    registered.extend(std::iter::repeat_n((&op4, None, false), 100));
    obs.operator_route_share_ppm = operator_route_shares(registered.iter().copied(), 100_000);
    let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
    assert!(
        rules_for(&report, 4).contains(&RuleId::Collusion),
        "{:?}",
        report.evidence
    );
}

#[test]
fn a_node_renaming_its_operator_does_not_split_its_colluders_history() {
    // Viewer 9 watches five sessions an epoch on node 4 and nowhere else; node 4 registers
    // under a fresh operator name in the second epoch. Its sessions of the window count for
    // the operator node 4 is registered under now: ten of ten, a colluder.
    let mut engine = FraudEngine::new(FraudConfig::default());
    for (epoch, name) in [(100, "op4"), (101, "op4-renamed")] {
        let mut obs = honest();
        obs.epoch = epoch;
        obs.nodes[3].operator = OperatorId::new(name).unwrap();
        obs.operator_route_share_ppm = obs
            .nodes
            .iter()
            .map(|n| (n.operator.clone(), 250_000))
            .collect();
        obs.viewers.push(viewer(9, 99));
        for s in 0..5 {
            obs.sessions.push(session(4, 9, 100 + s, 5));
        }
        let report = engine.assess(&obs);
        let collusion = rules_for(&report, 4).contains(&RuleId::Collusion);
        assert_eq!(
            collusion,
            epoch == 101,
            "epoch {epoch}: {:?}",
            report.evidence
        );
    }
}
