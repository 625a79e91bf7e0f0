//! The epoch loop: viewers watch, nodes serve (or cheat), receipts are signed and verified,
//! probes run, the fraud rules assess and the epoch settles — all with the real streamr-core
//! pipeline.

use std::collections::{BTreeMap, BTreeSet};

use indicatif::ProgressBar;
use rand::{Rng, RngCore};
use streamr_core::{
    operator_route_shares, segment_hash, ContentDigest, EpochInputs, EpochObservations,
    EpochStatement, FraudConfig, FraudEngine, HeartbeatNonces, IssuedGrant, KeyPair, NodeClaims,
    NodeHeartbeat, NodeId, NodeProfile, OperatorId, OriginDigests, PayoutPolicy, ProbePolicy,
    ProbeResult, ProbeSummary, ReceiptTally, ReceiptVerifier, RouteCandidate, Router, RuleId,
    SegmentChain, SegmentRecord, SessionAccounting, SessionGrant, SessionId, SessionUsage,
    Settlement, SettlementConfig, Signed, SignedReceipt, SimulatedPayoutSink, StreamId, Subnet24,
    Verdict, VerifierConfig, ViewerKey, ViewerProfile, ViewerReceipt,
};

use crate::scenario::{Attack, Network, Role, SimConfig, SimNode, ViewerKind};

/// Unix ms of the first simulated epoch's start.
pub const T0_MS: u64 = 1_800_000_000_000;
/// The first simulated epoch's number (nodes registered at epoch 0 are established).
pub const BASE_EPOCH: u64 = 1_000;
const SEGMENT_MS: u64 = 2_000;
/// A node's heartbeat interval (the node's default): with sessions spanning epochs, receipts
/// a node got after its last heartbeat of an epoch are claimed in the next epoch's first.
const HEARTBEAT_MS: u64 = 5_000;

/// What the run recorded about one node identity.
#[derive(Clone, Debug, Default)]
pub struct NodeRecord {
    /// Honest or which attack.
    pub role: Option<Attack>,
    /// The epoch its attack (or life) started, relative to the run.
    pub start_epoch: u64,
    /// Whether it re-registered after a penalty (A10).
    pub reregistered: bool,
    /// Run-relative epochs with a flag (penalty, group cap or whitewash verdict).
    pub flagged_epochs: Vec<u64>,
    /// Run-relative epochs with a penalty.
    pub penalized_epochs: Vec<u64>,
    /// Run-relative epochs in which rules dropped at least half of its verified bytes.
    pub dropped_epochs: Vec<u64>,
    /// Rules that flagged it.
    pub rules: BTreeSet<RuleId>,
    /// Per rule, the run-relative epochs in which it penalized this node.
    pub penalties_by_rule: BTreeMap<RuleId, Vec<u64>>,
    /// Epochs it took part in.
    pub active_epochs: u64,
    /// Σ over epochs of the oracle reward (pool × true weight / Σ true weights of all nodes).
    pub truth_all: f64,
    /// Σ over epochs of the oracle reward among honest nodes only.
    pub truth_honest: f64,
    /// Σ true weight (for the plot).
    pub truth_weight: f64,
    /// Rewards minus penalties, micro-units.
    pub earned: u64,
}

/// Everything the metrics need.
pub struct RunOutcome {
    /// One record per node identity.
    pub records: Vec<NodeRecord>,
    /// Total pool issued.
    pub pool_total: u64,
    /// Statements in order.
    pub statements: Vec<EpochStatement>,
    /// Whether replaying the published inputs gave identical statements.
    pub replay_matches: bool,
    /// Receipts verified.
    pub receipts: u64,
    /// Payouts made to the simulated chain.
    pub payouts: usize,
    /// Griefing viewers' sessions (A8).
    pub griefer_sessions: u64,
    /// The honest node framers targeted.
    pub victim: Option<usize>,
    /// What the threat cost its attacker.
    pub threat_cost: ThreatCost,
}

/// What a threat cost its attacker over the run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ThreatCost {
    /// Distinct viewer keys used.
    pub keys: u64,
    /// Grant requests made.
    pub grant_requests: u64,
    /// Sessions obtained on the nodes the attacker wanted.
    pub sessions_landed: u64,
    /// Bytes the attacker really downloaded or served to its own keys.
    pub bandwidth_bytes: u64,
}

#[derive(Default)]
struct EpochNodeWork {
    /// Receipts viewers handed to the node (it submits them).
    receipts: Vec<SignedReceipt>,
    /// Receipts viewers posted to the coordinator directly.
    viewer_receipts: Vec<SignedReceipt>,
    /// Attested bytes the node claims beyond its accounting (fake uptime, A5).
    fabricated: u64,
    sessions: u64,
    true_on_time: f64,
    true_legacy: f64,
}

/// The seed routing uses for a viewer's `request`-th grant request of an epoch: the viewer
/// cannot re-roll it except by spending another request of its budget.
fn route_seed(epoch_secret: &[u8; 32], viewer: &ViewerKey, request: u64) -> [u8; 32] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&viewer.as_bytes()[..8]);
    id[8..].copy_from_slice(&request.to_be_bytes());
    Router::session_seed(epoch_secret, &SessionId::from_bytes(id))
}

#[derive(Clone)]
struct SessionPlan {
    viewer: usize,
    node: usize,
    stream: usize,
    start_ms: u64,
    end_ms: u64,
    /// A colluder's session routed normally and really watched (stealthy A6).
    genuine: bool,
    /// Where earlier epochs left a session that runs on into this one.
    carried: Option<Carried>,
}

/// A session's state at the end of an epoch it outlasts.
#[derive(Clone, Copy)]
struct Carried {
    /// Receipts its viewer signed so far.
    seq: u64,
    /// The newest segment its viewer received.
    last_segment: u64,
    /// When its viewer last signed (or its start).
    last_receipt_ms: u64,
    /// Bytes the node served it up to the epoch's end.
    served_bytes: u64,
}

fn lag_ms(rng: &mut impl Rng, late: bool) -> u64 {
    if late {
        rng.gen_range(15_000..40_000)
    } else {
        rng.gen_range(2_000..8_000)
    }
}

/// Runs the whole simulation.
pub fn run(config: &SimConfig, progress: &ProgressBar) -> anyhow::Result<RunOutcome> {
    let mut net = Network::generate(config)?;
    let epoch_ms = config.epoch_s.saturating_mul(1_000).max(60_000);
    let coordinator = KeyPair::from_seed(net.rng.gen());
    let streams: Vec<StreamId> = (0..config.streams.max(1))
        .map(|s| StreamId::new(format!("stream-{s}")))
        .collect::<Result<_, _>>()?;
    let mut chains: Vec<SegmentChain> = streams.iter().map(|_| SegmentChain::genesis(0)).collect();
    let mut origin = OriginDigests::new();
    let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
    // The coordinator's setting for viewers that sign every `--receipt-interval` (minutes here,
    // seconds in the client): four intervals of silence, so a lost last receipt or two and
    // most of a griefer's silent tail stay claimable, as the client's 2 s interval leaves 30
    // within the default.
    let mut fraud = FraudEngine::new(FraudConfig {
        signed_silence_seconds: FraudConfig::default()
            .signed_silence_seconds
            .max(config.receipt_interval_s.saturating_mul(4)),
        ..FraudConfig::default()
    });
    let mut settlement = Settlement::new();
    let mut chain = SimulatedPayoutSink::new();
    let mut nonces = HeartbeatNonces::default();
    let router = Router::default();
    let probe_policy = ProbePolicy {
        max_ttfb_ms: 2_000,
        min_throughput_bytes_per_s: config.bitrate,
    };
    let settlement_config = SettlementConfig::default();
    let mut records: Vec<NodeRecord> = net
        .nodes
        .iter()
        .map(|n| NodeRecord {
            role: attack_of(n.role),
            ..NodeRecord::default()
        })
        .collect();
    let mut penalized_history: Vec<(u64, Subnet24, OperatorId)> = Vec::new();
    let mut history = Vec::new();
    let mut statements = Vec::new();
    let mut receipts_total = 0u64;
    let mut payouts = 0usize;
    let mut griefer_sessions = 0u64;
    let mut rereg_counter = 0u64;
    let mut last_penalized: BTreeSet<usize> = BTreeSet::new();
    let mut threat_cost = ThreatCost::default();
    let grace_ms = config.receipt_interval_s.max(1) * 3_000;
    // Each node's accounting lives as long as the node: with sessions spanning epochs, what a
    // session served near an epoch's end is claimed in the next one, as a node's heartbeat
    // does.
    let mut accounts: BTreeMap<usize, SessionAccounting> = BTreeMap::new();
    let mut carried_plans: Vec<(SessionId, SessionPlan)> = Vec::new();
    // Receipts nodes got after their last heartbeat of the epoch: (node, session, bytes, at).
    let mut unclaimed_receipts: Vec<(usize, SessionId, u64, u64)> = Vec::new();
    // What a hoarding node's grants carried through its silent epochs (`Threat::Hoarding`).
    let mut hoarded_carry: BTreeMap<usize, u64> = BTreeMap::new();
    warm_up(config, &mut net, &mut fraud, &router, &streams, epoch_ms);

    for run_epoch in 0..config.epochs {
        let epoch = BASE_EPOCH + run_epoch;
        let t0 = T0_MS + run_epoch * epoch_ms;
        let t1 = t0 + epoch_ms;

        let every = |n: u64, lasting: u64| n > 0 && run_epoch % n >= n.saturating_sub(lasting);
        let coordinator_down = every(
            config.coordinator_outage_every,
            config
                .coordinator_outage_epochs
                .min(config.coordinator_outage_every.saturating_sub(1)),
        );

        // A10: a penalized whitewasher abandons its identity and registers a new one.
        for index in std::mem::take(&mut last_penalized) {
            let Some(node) = net.nodes.get_mut(index) else {
                continue;
            };
            if node.role != Role::Attacker(Attack::A10) || node.retired {
                continue;
            }
            node.retired = true;
            let subnet = node.subnet;
            rereg_counter += 1;
            let key = KeyPair::from_seed(net.rng.gen());
            net.nodes.push(SimNode {
                id: key.node_id(),
                key,
                operator: OperatorId::new(format!("fresh-{rereg_counter}"))?,
                subnet,
                first_epoch: epoch,
                role: Role::Attacker(Attack::A10),
                capacity: 5_000_000,
                restart_chance: 0.0,
                retired: false,
                quality_ppm: 0,
                nonce: 0,
            });
            records.push(NodeRecord {
                role: Some(Attack::A10),
                start_epoch: run_epoch,
                reregistered: true,
                ..NodeRecord::default()
            });
        }

        // The origin publishes this epoch's segments.
        for (s, chain) in chains.iter_mut().enumerate() {
            let first = (t0 - T0_MS) / SEGMENT_MS;
            let last = (t1 - T0_MS) / SEGMENT_MS;
            for seq in first..last {
                let mut content = [0u8; 16];
                content[..8].copy_from_slice(&(s as u64).to_be_bytes());
                content[8..].copy_from_slice(&seq.to_be_bytes());
                let digest = chain.push(&segment_hash(&content));
                origin.insert(
                    streams[s].clone(),
                    seq,
                    SegmentRecord {
                        digest,
                        published_ms: T0_MS + seq * SEGMENT_MS,
                    },
                );
            }
        }

        // Node conditions: restarts (downtime) and NAT churn.
        let mut downtime: Vec<Option<(u64, u64)>> = Vec::with_capacity(net.nodes.len());
        for node in net.nodes.iter_mut() {
            let restarting = node.restart_chance > 0.0 && net.rng.gen_bool(node.restart_chance);
            downtime.push(if attack_of(node.role) == Some(Attack::PartTime) {
                Some((t0 + epoch_ms / 3, t0 + epoch_ms))
            } else if restarting {
                // Five minutes down, or half an epoch shorter than ten minutes.
                let down = 300_000.min(epoch_ms / 2);
                let start = t0 + net.rng.gen_range(0..epoch_ms - down);
                Some((start, start + down))
            } else {
                None
            });
            if node.role == Role::Honest && net.rng.gen_bool(0.02) {
                node.subnet = Subnet24([100, net.rng.gen(), net.rng.gen()]);
            }
        }
        let active: Vec<usize> = (0..net.nodes.len())
            .filter(|&i| !net.nodes[i].retired)
            .collect();
        // The farm renews its viewer keys every epoch.
        for viewer in net.viewers.iter_mut() {
            if matches!(viewer.kind, ViewerKind::Farm(_)) {
                viewer.key = KeyPair::from_seed(net.rng.gen());
                threat_cost.keys += 1;
            } else if run_epoch == 0
                && matches!(
                    viewer.kind,
                    ViewerKind::Framer(_) | ViewerKind::Withholder(_)
                )
            {
                threat_cost.keys += 1;
            }
        }
        for &i in &active {
            if let Some(r) = records.get_mut(i) {
                r.active_epochs += 1;
            }
        }
        // Idle nodes announce no stream: routing never offers them.
        let candidates: Vec<RouteCandidate> = active
            .iter()
            .filter(|&&i| attack_of(net.nodes[i].role) != Some(Attack::IdleClaims))
            .map(|&i| RouteCandidate {
                node_id: net.nodes[i].id,
                quality_ppm: net.nodes[i].quality_ppm,
            })
            .collect();
        let index_of: BTreeMap<NodeId, usize> =
            active.iter().map(|&i| (net.nodes[i].id, i)).collect();
        // Viewers plan their sessions; the coordinator routes them.
        let mut epoch_secret = [0u8; 32];
        net.rng.fill_bytes(&mut epoch_secret);
        let mut plans = Vec::new();
        for (v, viewer) in net.viewers.iter().enumerate() {
            let viewer_key = viewer.key.viewer_key();
            let mut requests = 0u64;
            let hostile = matches!(
                viewer.kind,
                ViewerKind::Framer(_) | ViewerKind::Farm(_) | ViewerKind::Withholder(_)
            );
            // Every grant request spends the key's budget; a hostile key re-requests (or uses
            // `exclude=`) until routing offers a node it wants.
            let mut route = |want: &dyn Fn(usize) -> bool| -> Option<usize> {
                let budget = if hostile {
                    config.threat.requests
                } else {
                    config.grant_budget
                };
                while requests < budget {
                    let seed = route_seed(&epoch_secret, &viewer_key, requests);
                    requests += 1;
                    if hostile {
                        threat_cost.grant_requests += 1;
                    }
                    let pick = router
                        .pick(seed, &candidates)
                        .and_then(|id| index_of.get(&id).copied());
                    if let Some(node) = pick.filter(|n| want(*n)) {
                        return Some(node);
                    }
                }
                None
            };
            let count = match viewer.kind {
                ViewerKind::Bot(_) => 25,
                ViewerKind::Colluder(_) => 3,
                ViewerKind::Framer(_) | ViewerKind::Farm(_) | ViewerKind::Withholder(_) => {
                    config.threat.sessions
                }
                _ => match net.rng.gen_range(0..100) {
                    0..=14 => 0,
                    15..=49 => 1,
                    50..=84 => 2,
                    _ => 3,
                },
            };
            for _ in 0..count {
                let (start, duration) = if config.sessions_span_epochs {
                    let duration = net.rng.gen_range(600_000..2_400_000);
                    let start = t0 + net.rng.gen_range(0..epoch_ms);
                    // The farm's keys last an epoch: their sessions end with it.
                    let duration = if matches!(viewer.kind, ViewerKind::Farm(_)) {
                        duration.min(t1 - start)
                    } else {
                        duration
                    };
                    (start, duration)
                } else {
                    let duration = net.rng.gen_range(600_000..2_400_000).min(epoch_ms);
                    (t0 + net.rng.gen_range(0..=epoch_ms - duration), duration)
                };
                let mut sid = [0u8; 16];
                net.rng.fill_bytes(&mut sid);
                let genuine = matches!(viewer.kind, ViewerKind::Colluder(_))
                    && config.stealthy
                    && net.rng.gen_bool(0.5);
                // The classic bots and colluders (A3, A6) model a coordinator whose routing
                // they can steer: they get grants on their nodes directly.
                let node = match &viewer.kind {
                    ViewerKind::Bot(n) => Some(*n),
                    ViewerKind::Colluder(group) if !genuine => {
                        group.get(net.rng.gen_range(0..group.len().max(1))).copied()
                    }
                    ViewerKind::Framer(victim) | ViewerKind::Withholder(victim) => {
                        route(&|n| n == *victim)
                    }
                    ViewerKind::Farm(nodes) => route(&|n| nodes.contains(&n)),
                    _ => route(&|_| true),
                };
                let Some(node) = node.filter(|n| !net.nodes[*n].retired) else {
                    continue;
                };

                plans.push((
                    SessionId::from_bytes(sid),
                    SessionPlan {
                        viewer: v,
                        node,
                        stream: net.rng.gen_range(0..streams.len()),
                        start_ms: start,
                        end_ms: start + duration,
                        genuine,
                        carried: None,
                    },
                ));
            }
        }
        // What nodes learned after their last heartbeat of the previous epoch enters their
        // accounting first (the receipts themselves are booked to the epoch they were signed in).
        for (node, session, bytes_total, at) in std::mem::take(&mut unclaimed_receipts) {
            if let Some(account) = accounts.get_mut(&node) {
                account.receipted(session, bytes_total, at);
            }
        }
        // Sessions earlier epochs left running play on, on nodes still registered.
        plans.extend(
            std::mem::take(&mut carried_plans)
                .into_iter()
                .filter(|(_, plan)| !net.nodes[plan.node].retired),
        );

        // Sessions play out: bytes flow (or not), viewers sign receipts, and each node's
        // accounting (the code the node ships) splits what it served into its claims.
        let mut work: BTreeMap<usize, EpochNodeWork> = BTreeMap::new();
        let mut grants: Vec<IssuedGrant> = Vec::new();
        let mut viewer_profiles: BTreeMap<usize, ViewerProfile> = BTreeMap::new();
        for (session_id, plan) in &plans {
            let viewer = &net.viewers[plan.viewer];
            let node = &net.nodes[plan.node];
            let w = work.entry(plan.node).or_default();
            let account = accounts
                .entry(plan.node)
                .or_insert_with(|| SessionAccounting::new(grace_ms));
            w.sessions += 1;
            viewer_profiles.entry(plan.viewer).or_insert(ViewerProfile {
                viewer: viewer.key.viewer_key(),
                subnet: viewer.subnet.into(),
                operator: None,
            });
            let attack = attack_of(node.role);
            let fake_viewer = !plan.genuine
                && matches!(
                    viewer.kind,
                    ViewerKind::Bot(_) | ViewerKind::Colluder(_) | ViewerKind::Farm(_)
                );
            let hostile = matches!(
                viewer.kind,
                ViewerKind::Framer(_) | ViewerKind::Farm(_) | ViewerKind::Withholder(_)
            );
            if hostile && plan.carried.is_none() {
                threat_cost.sessions_landed += 1;
            }
            // Framers without bandwidth only post receipts; they download nothing.
            let receipts_only =
                matches!(viewer.kind, ViewerKind::Framer(_)) && config.threat.bandwidth == 0;
            let downloads = !fake_viewer && !receipts_only;
            let serves = attack != Some(Attack::A5);
            let down = downtime[plan.node];
            let up_ms = |from: u64, to: u64| -> u64 {
                let span = to.saturating_sub(from);
                match down {
                    Some((d0, d1)) => span.saturating_sub(to.min(d1).saturating_sub(from.max(d0))),
                    None => span,
                }
            };
            let bytes_between = |from: u64, to: u64| config.bitrate * up_ms(from, to) / 1_000;
            // This epoch's part of the session, and what the node served it before.
            let (from, to) = (plan.start_ms.max(t0), plan.end_ms.min(t1));
            let served_before = plan.carried.map_or(0, |c| c.served_bytes);
            let window_bytes = bytes_between(from, to);
            let total_bytes = served_before + window_bytes;
            let carry = |c: Carried| {
                (plan.end_ms > t1).then(|| {
                    let mut next = plan.clone();
                    next.carried = Some(c);
                    (*session_id, next)
                })
            };
            grants.push(IssuedGrant {
                session_id: *session_id,
                node_id: node.id,
                viewer: viewer.key.viewer_key(),
                stream_id: streams[plan.stream].clone(),
                live_ms: to - from,
                probe: false,
            });
            if plan.carried.is_none() {
                account.open(*session_id, plan.end_ms + 120_000, plan.start_ms);
            }
            if hostile && downloads {
                threat_cost.bandwidth_bytes += window_bytes;
            }
            let untouched = Carried {
                seq: 0,
                last_segment: 0,
                last_receipt_ms: plan.start_ms,
                served_bytes: total_bytes,
            };
            if viewer.kind == ViewerKind::Legacy {
                if serves {
                    account.served(*session_id, total_bytes);
                    w.true_legacy += window_bytes as f64;
                }
                carried_plans.extend(carry(untouched));
                continue;
            }
            if viewer.kind == ViewerKind::Griefer && plan.carried.is_none() {
                griefer_sessions += 1;
            }
            if !serves && !fake_viewer {
                // Fake uptime: the viewer gets nothing and leaves; the node still claims.
                w.fabricated += window_bytes;
                carried_plans.extend(carry(untouched));
                continue;
            }
            let duration_s = (plan.end_ms - plan.start_ms) / 1_000;
            let max_bytes = config.bitrate * duration_s * 12 / 10 + 1_000_000;
            if plan.carried.is_none() {
                let grant = Signed::sign(
                    SessionGrant {
                        session_id: *session_id,
                        viewer: viewer.key.viewer_key(),
                        node_id: node.id,
                        stream_id: streams[plan.stream].clone(),
                        max_bytes,
                        expiry_ms: plan.end_ms + 120_000,
                    },
                    &coordinator,
                );
                verifier.admit_signed_grant(
                    &grant,
                    &coordinator.coordinator_key(),
                    plan.start_ms,
                )?;
            }
            let interval = config.receipt_interval_s.max(1) * 1_000;
            let grief_until = plan.start_ms + (plan.end_ms - plan.start_ms) / 3;
            let resumed = plan.carried.unwrap_or(untouched);
            let mut seq = resumed.seq;
            let mut t_prev = resumed.last_receipt_ms;
            let mut t = resumed.last_receipt_ms;
            let mut last_segment = resumed.last_segment;
            while t < plan.end_ms {
                let next = (t + interval).min(plan.end_ms);
                if next > t1 {
                    break;
                }
                t = next;
                let interval_bytes = bytes_between(t_prev, t);
                t_prev = t;
                let late = match (attack, &viewer.kind) {
                    (Some(Attack::A9), _) => net.rng.gen_bool(0.8),
                    (_, ViewerKind::Lossy) => net.rng.gen_bool(0.25),
                    _ => net.rng.gen_bool(0.03),
                };
                let lag = if attack == Some(Attack::A4) {
                    120_000
                } else {
                    lag_ms(&mut net.rng, late)
                };
                // Hostile keys (framers, farms, withholders) are no genuine demand: what they
                // watch is not part of any node's fair share.
                if !fake_viewer && !hostile && attack != Some(Attack::A4) && lag <= 10_000 {
                    w.true_on_time += interval_bytes as f64;
                }
                let bytes_total = served_before + bytes_between(from, t);
                if downloads {
                    account.served(*session_id, bytes_total);
                }
                let node_is_down = down.is_some_and(|(d0, d1)| t >= d0 && t < d1);
                let lost = viewer.kind == ViewerKind::Lossy && net.rng.gen_bool(0.1);
                let grieving = viewer.kind == ViewerKind::Griefer && t > grief_until;
                let withholding = matches!(viewer.kind, ViewerKind::Withholder(_)) && seq >= 1;
                let unverifiable = coordinator_down && config.outage_viewers_blind;
                if node_is_down || lost || grieving || withholding || unverifiable {
                    continue;
                }
                // The newest segment received never goes backwards.
                let segment =
                    ((t.saturating_sub(lag).saturating_sub(T0_MS)) / SEGMENT_MS).max(last_segment);
                last_segment = segment;
                let digest = if attack == Some(Attack::A4) && net.rng.gen_bool(0.5) {
                    ContentDigest::from_bytes(*segment_hash(&t.to_be_bytes()).as_bytes())
                } else {
                    origin
                        .segment_digest(&streams[plan.stream], segment)
                        .unwrap_or_default()
                };
                seq += 1;
                let receipt = Signed::sign(
                    ViewerReceipt {
                        session_id: *session_id,
                        seq,
                        bytes_total,
                        last_segment_seq: segment,
                        segments_digest: digest,
                        t_ms: t,
                    },
                    &viewer.key,
                );
                if matches!(viewer.kind, ViewerKind::Framer(_)) {
                    // Framers post past the node, plus one receipt beyond the grant.
                    if seq == 1 {
                        let mut beyond = receipt.body.clone();
                        beyond.seq = u64::MAX / 2;
                        beyond.bytes_total = max_bytes * 4;
                        w.viewer_receipts.push(Signed::sign(beyond, &viewer.key));
                    }
                    w.viewer_receipts.push(receipt);
                } else {
                    if fake_viewer {
                        // The farm's (or a colluder's) node claims what the receipt says.
                        account.served(*session_id, bytes_total);
                    }
                    if config.sessions_span_epochs && t + HEARTBEAT_MS > t1 {
                        unclaimed_receipts.push((plan.node, *session_id, bytes_total, t));
                    } else {
                        account.receipted(*session_id, bytes_total, t);
                    }
                    w.receipts.push(receipt);
                }
            }
            if downloads {
                account.served(*session_id, total_bytes);
            }
            carried_plans.extend(carry(Carried {
                seq,
                last_segment,
                last_receipt_ms: t,
                served_bytes: total_bytes,
            }));
        }

        // Probes: most only measure; some play a session and sign like a viewer, and their
        // traffic is never paid.
        let mut probes = Vec::new();
        let prober_down = coordinator_down || every(config.prober_outage_every, 1);
        for &index in active.iter().filter(|_| !prober_down) {
            let node = &net.nodes[index];
            let attack = attack_of(node.role);
            let results: Vec<ProbeResult> = (0..config.probes)
                .map(|_| {
                    let at = t0 + net.rng.gen_range(0..epoch_ms);
                    let down = downtime[index].is_some_and(|(d0, d1)| at >= d0 && at < d1);
                    let timed_out = down || attack == Some(Attack::A5);
                    ProbeResult {
                        node_id: node.id,
                        hash_ok: !(attack == Some(Attack::A4) && net.rng.gen_bool(0.5)),
                        timed_out,
                        ttfb_ms: if timed_out {
                            0
                        } else {
                            net.rng.gen_range(50..400)
                        },
                        throughput_bytes_per_s: if timed_out {
                            0
                        } else {
                            node.capacity / 10 * net.rng.gen_range(8..=10)
                        },
                    }
                })
                .collect();
            probes.push((node.id, ProbeSummary::from_results(&probe_policy, &results)));
            for (k, result) in results
                .iter()
                .take(config.probe_sessions as usize)
                .enumerate()
            {
                if result.timed_out {
                    continue;
                }
                let probe_key = KeyPair::from_seed(net.rng.gen());
                let mut sid = [0u8; 16];
                net.rng.fill_bytes(&mut sid);
                let session_id = SessionId::from_bytes(sid);
                let start = t0 + (k as u64 * epoch_ms / config.probe_sessions.max(1));
                let live_ms = 3 * SEGMENT_MS;
                let bytes = config.bitrate * live_ms / 1_000;
                let stream = k % streams.len();
                grants.push(IssuedGrant {
                    session_id,
                    node_id: node.id,
                    viewer: probe_key.viewer_key(),
                    stream_id: streams[stream].clone(),
                    live_ms,
                    probe: true,
                });
                let grant = Signed::sign(
                    SessionGrant {
                        session_id,
                        viewer: probe_key.viewer_key(),
                        node_id: node.id,
                        stream_id: streams[stream].clone(),
                        max_bytes: bytes * 2,
                        expiry_ms: start + 120_000,
                    },
                    &coordinator,
                );
                verifier.admit_signed_grant(&grant, &coordinator.coordinator_key(), start)?;
                let segment = (start + live_ms - T0_MS) / SEGMENT_MS;
                let receipt = Signed::sign(
                    ViewerReceipt {
                        session_id,
                        seq: 1,
                        bytes_total: bytes,
                        last_segment_seq: segment,
                        segments_digest: origin
                            .segment_digest(&streams[stream], segment)
                            .unwrap_or_default(),
                        t_ms: start + live_ms,
                    },
                    &probe_key,
                );
                let account = accounts
                    .entry(index)
                    .or_insert_with(|| SessionAccounting::new(grace_ms));
                account.open(session_id, start + 120_000, start);
                account.served(session_id, bytes);
                account.receipted(session_id, bytes, start + live_ms);
                work.entry(index).or_default().receipts.push(receipt);
            }
        }

        // Nodes submit receipts and heartbeats; the coordinator verifies them, and the receipts
        // viewers posted to it directly.
        let mut claims = Vec::new();
        // A node whose sessions all ended still claims what they left pending.
        for (&index, account) in &accounts {
            if !account.is_empty() && !net.nodes[index].retired {
                work.entry(index).or_default();
            }
        }
        let running: BTreeSet<SessionId> = carried_plans.iter().map(|(id, _)| *id).collect();
        // What a node's viewer grants carried over their live time in the epoch.
        let grants_carry = |id: NodeId| -> u64 {
            grants
                .iter()
                .filter(|g| g.node_id == id && !g.probe)
                .map(|g| config.bitrate * g.live_ms / 1_000)
                .sum()
        };
        for (&index, w) in work.iter_mut() {
            let node = &mut net.nodes[index];
            let attack = attack_of(node.role);
            let mut tally = ReceiptTally::default();
            let mut viewer_posted = ReceiptTally::default();
            w.receipts.sort_by_key(|r| r.body.t_ms);
            w.viewer_receipts.sort_by_key(|r| r.body.t_ms);
            let now = t1 + 60_000;
            // A hoarding node sends no heartbeat two epochs in three: its viewers post their
            // receipts to the coordinator themselves.
            let hoarding_silently = attack == Some(Attack::Hoarding) && run_epoch % 3 != 2;
            for outcome in verifier.verify_batch(&node.id, &w.receipts, &origin, now) {
                if hoarding_silently {
                    viewer_posted.record(&outcome);
                } else {
                    tally.record(&outcome);
                }
            }
            for outcome in verifier.verify_batch(&node.id, &w.viewer_receipts, &origin, now) {
                viewer_posted.record(&outcome);
            }
            receipts_total += (w.receipts.len() + w.viewer_receipts.len()) as u64;
            if attack == Some(Attack::A7) {
                // Receipts for sessions never granted, then altered and replayed own receipts.
                let mut extra: Vec<SignedReceipt> = (0..3u64)
                    .map(|k| {
                        let mut sid = [0xA7; 16];
                        sid[..8].copy_from_slice(&(run_epoch * 8 + k).to_be_bytes());
                        Signed::sign(
                            ViewerReceipt {
                                session_id: SessionId::from_bytes(sid),
                                seq: 1,
                                bytes_total: 500_000_000,
                                last_segment_seq: 0,
                                segments_digest: ContentDigest::default(),
                                t_ms: t1,
                            },
                            &node.key,
                        )
                    })
                    .collect();
                for r in w.receipts.iter().take(3) {
                    let mut forged = r.clone();
                    forged.body.bytes_total += 10_000_000;
                    forged.body.seq += 1_000;
                    extra.push(forged);
                    extra.push(r.clone());
                }
                for outcome in verifier.verify_batch(&node.id, &extra, &origin, now) {
                    tally.record(&outcome);
                }
            }
            if hoarding_silently {
                *hoarded_carry.entry(index).or_default() += grants_carry(node.id);
            }
            if coordinator_down || hoarding_silently {
                // No heartbeat gets through (a hoarding node sends none): what it served stays
                // in its accounting for its first heartbeat after; the receipts it kept are
                // handed in then (a hoarder's viewers post theirs) and booked here, where they
                // were signed. As on the coordinator, a node has a row for the epoch only if
                // receipts were booked to it there.
                if tally.submitted > 0 || viewer_posted.submitted > 0 {
                    claims.push(NodeClaims {
                        node_id: node.id,
                        claimed_bytes: 0,
                        unattested_bytes: 0,
                        sessions: w.sessions,
                        receipts: tally,
                        viewer_posted,
                        heartbeats: Some(0),
                    });
                }
                continue;
            }
            // What the node's accounting claims: at the epoch's end where sessions run on
            // into the next (the rest is claimed there), else once every session went quiet.
            let served = accounts
                .get_mut(&index)
                .map(|a| {
                    if config.sessions_span_epochs {
                        a.take(t1, |id| running.contains(id))
                    } else {
                        a.take(t1 + grace_ms + 120_000, |_| false)
                    }
                })
                .unwrap_or_default();
            let claimed = served.attested + w.fabricated;
            let (claimed, unattested) = match attack {
                Some(Attack::A1 | Attack::A10) => (
                    claimed * 3 + 2_000_000_000,
                    served.unattested + 10_000_000_000,
                ),
                Some(Attack::A5) => (claimed, served.unattested + 5_000_000_000),
                // Claims up to what probes measured it can serve.
                Some(Attack::IdleClaims) => (
                    claimed,
                    served.unattested + node.capacity * epoch_ms / 1_000,
                ),
                // Unattested: everything its grants carried through its silent epochs and this
                // one, the most the room of silent epochs could let by.
                Some(Attack::Hoarding) => {
                    let hoarded = hoarded_carry.remove(&index).unwrap_or(0);
                    (claimed, served.unattested + hoarded + grants_carry(node.id))
                }
                // Up a third of the epoch, it claims as unattested half of what its viewers'
                // grants carry over the epoch: just within what ProbeFailuresWhileServing lets
                // by (the passing share of its probes, plus the 20 points it allows for their
                // sampling error), all of it beyond what it served.
                Some(Attack::PartTime) => (claimed, served.unattested + grants_carry(node.id) / 2),
                _ => (claimed, served.unattested),
            };
            node.nonce += 1;
            let beat = Signed::sign(
                NodeHeartbeat {
                    node_id: node.id,
                    timestamp_ms: t1,
                    nonce: node.nonce,
                    streams: streams.clone(),
                    viewers: w.sessions,
                    bytes_served: claimed,
                    unattested_bytes: unattested,
                    upstreams: Vec::new(),
                    claim_totals: None,
                },
                &node.key,
            );
            let accepted = nonces.accept(&beat, t1, 5_000)?;
            claims.push(NodeClaims {
                node_id: accepted.node_id,
                claimed_bytes: accepted.bytes_served,
                unattested_bytes: accepted.unattested_bytes,
                sessions: w.sessions,
                receipts: tally,
                viewer_posted,
                heartbeats: Some(1),
            });
        }
        // Idle nodes still heartbeat: an A5 node claims unattested traffic without viewers.
        for &index in active.iter().filter(|_| !coordinator_down) {
            if work.contains_key(&index) {
                continue;
            }
            if attack_of(net.nodes[index].role) == Some(Attack::A5) {
                claims.push(NodeClaims {
                    node_id: net.nodes[index].id,
                    claimed_bytes: 0,
                    unattested_bytes: 5_000_000_000,
                    sessions: 0,
                    receipts: ReceiptTally::default(),
                    viewer_posted: ReceiptTally::default(),
                    heartbeats: Some(1),
                });
            }
        }

        // Fraud rules, then settlement.
        let usage = verifier.take_usage();
        // Nodes that served viewers verified bytes (route shares count them).
        let serving: BTreeSet<NodeId> = usage
            .iter()
            .filter(|s| s.bytes > 0)
            .map(|s| s.node_id)
            .collect();
        let recent_from = run_epoch.saturating_sub(24);
        let observations = EpochObservations {
            epoch,
            epoch_ms,
            nodes: active
                .iter()
                .map(|&i| {
                    let n = &net.nodes[i];
                    let age = epoch.saturating_sub(n.first_epoch).max(1);
                    let earned = settlement.balance(&n.id).map_or(0, |b| b.cumulative_earned);
                    NodeProfile {
                        node_id: n.id,
                        operator: n.operator.clone(),
                        subnet: n.subnet.into(),
                        first_epoch: n.first_epoch,
                        average_reward: if earned == 0 {
                            config.pool / active.len().max(1) as u64
                        } else {
                            earned / age.min(run_epoch.max(1))
                        },
                    }
                })
                .collect(),
            viewers: viewer_profiles.into_values().collect(),
            sessions: usage,
            claims,
            probes: probes.clone(),
            bitrates: streams
                .iter()
                .map(|s| (s.clone(), config.bitrate))
                .collect(),
            // As the coordinator's settlement computes them: each operator's share of the
            // nodes its probes found serving.
            operator_route_share_ppm: operator_route_shares(
                active.iter().map(|&i| {
                    let node = &net.nodes[i];
                    let summary = probes
                        .iter()
                        .find(|(id, _)| *id == node.id)
                        .map(|(_, summary)| summary);
                    (&node.operator, summary, serving.contains(&node.id))
                }),
                router.newcomer_floor_ppm,
            ),
            recently_penalized: penalized_history
                .iter()
                .filter(|(e, _, _)| *e >= recent_from)
                .map(|(_, s, o)| ((*s).into(), o.clone()))
                .collect(),
            grants: Some(grants),
            probe_traffic: Vec::new(),
        };
        let report = fraud.assess(&observations);
        let claimed_unattested: BTreeMap<NodeId, u64> = observations
            .claims
            .iter()
            .map(|c| (c.node_id, c.unattested_bytes))
            .collect();
        let inputs = EpochInputs {
            epoch,
            pool: config.pool,
            config: settlement_config.clone(),
            nodes: report.node_inputs.clone(),
            penalties: report.penalties.clone(),
        };
        let outcome = settlement.settle_epoch(&inputs)?;
        statements.push(outcome.statement.clone());
        history.push(inputs);
        payouts += settlement
            .pay_out(epoch, &PayoutPolicy::default(), &mut chain)?
            .len();

        // Book-keeping for the metrics.
        let all_nodes: BTreeMap<NodeId, usize> = net
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id, i))
            .collect();
        let mut dropped: BTreeMap<usize, u64> = BTreeMap::new();
        for evidence in &report.evidence {
            let Some(&i) = all_nodes.get(&evidence.node_id) else {
                continue;
            };
            if let Verdict::DropBytes { bytes } = &evidence.verdict {
                *dropped.entry(i).or_default() += bytes;
            }
            let flag = matches!(
                evidence.verdict,
                Verdict::Penalize { .. } | Verdict::CapGroup
            ) || evidence.rule == RuleId::Whitewashing;
            if let Some(r) = records.get_mut(i) {
                if flag {
                    if r.flagged_epochs.last() != Some(&run_epoch) {
                        r.flagged_epochs.push(run_epoch);
                    }
                    r.rules.insert(evidence.rule);
                }
                if matches!(evidence.verdict, Verdict::Penalize { .. }) {
                    if r.penalized_epochs.last() != Some(&run_epoch) {
                        r.penalized_epochs.push(run_epoch);
                    }
                    let epochs = r.penalties_by_rule.entry(evidence.rule).or_default();
                    if epochs.last() != Some(&run_epoch) {
                        epochs.push(run_epoch);
                    }
                }
            }
        }
        for input in &report.node_inputs {
            let Some(&i) = all_nodes.get(&input.node_id) else {
                continue;
            };
            let d = dropped.get(&i).copied().unwrap_or(0);
            let claimed_unattested = claimed_unattested.get(&input.node_id).copied().unwrap_or(0);
            let judged = input.verified_bytes + claimed_unattested;
            if judged > 0 && d * 2 >= judged {
                if let Some(r) = records.get_mut(i) {
                    r.dropped_epochs.push(run_epoch);
                }
            }
        }
        for penalty in &report.penalties {
            if let Some(&i) = all_nodes.get(&penalty.node_id) {
                last_penalized.insert(i);
                penalized_history.push((
                    run_epoch,
                    net.nodes[i].subnet,
                    net.nodes[i].operator.clone(),
                ));
            }
        }
        let availability: BTreeMap<NodeId, u64> = probes
            .iter()
            .map(|(id, p)| (*id, p.availability_ppm()))
            .collect();
        let mut true_weights: BTreeMap<usize, f64> = BTreeMap::new();
        for &i in &active {
            let w = work.get(&i);
            let up = match downtime[i] {
                Some((d0, d1)) => 1.0 - (d1 - d0) as f64 / epoch_ms as f64,
                None => 1.0,
            };
            let up = if attack_of(net.nodes[i].role) == Some(Attack::A5) {
                0.0
            } else {
                up
            };
            let weight = w.map_or(0.0, |w| (w.true_on_time + w.true_legacy * 0.5) * up);
            true_weights.insert(i, weight);
        }
        let total_all: f64 = true_weights.values().sum();
        let total_honest: f64 = true_weights
            .iter()
            .filter(|(i, _)| net.nodes[**i].role == Role::Honest)
            .map(|(_, w)| w)
            .sum();
        for (&i, &w) in &true_weights {
            if let Some(r) = records.get_mut(i) {
                r.truth_weight += w;
                if total_all > 0.0 {
                    r.truth_all += config.pool as f64 * w / total_all;
                }
                if total_honest > 0.0 && net.nodes[i].role == Role::Honest {
                    r.truth_honest += config.pool as f64 * w / total_honest;
                }
            }
        }
        for input in &report.node_inputs {
            if let Some(&i) = all_nodes.get(&input.node_id) {
                let on_time = (input.on_time_bytes as u128 * 1_000_000)
                    .checked_div(input.verified_bytes as u128)
                    .unwrap_or(1_000_000) as u64;
                let avail = availability.get(&input.node_id).copied().unwrap_or(0);
                net.nodes[i].quality_ppm = avail * on_time / 1_000_000;
            }
        }
        verifier.prune_expired(t1);
        progress.inc(1);
    }

    for (i, node) in net.nodes.iter().enumerate() {
        if let (Some(r), Some(b)) = (records.get_mut(i), settlement.balance(&node.id)) {
            r.earned = b.cumulative_earned;
        }
    }
    let replay_matches = streamr_core::replay_epochs(&history)? == statements;
    Ok(RunOutcome {
        records,
        pool_total: config.pool * config.epochs,
        statements,
        replay_matches,
        receipts: receipts_total,
        payouts,
        griefer_sessions,
        victim: net.victim,
        threat_cost,
    })
}

/// Feeds the fraud engine `warmup_epochs` of honest viewing before the run, as a running
/// network's history would: honest viewers, routed over honest nodes, every byte receipted.
fn warm_up(
    config: &SimConfig,
    net: &mut Network,
    fraud: &mut FraudEngine,
    router: &Router,
    streams: &[StreamId],
    epoch_ms: u64,
) {
    let honest: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| net.nodes[i].role == Role::Honest)
        .collect();
    let candidates: Vec<RouteCandidate> = honest
        .iter()
        .map(|&i| RouteCandidate {
            node_id: net.nodes[i].id,
            quality_ppm: net.nodes[i].quality_ppm,
        })
        .collect();
    let mut per_operator: BTreeMap<OperatorId, u64> = BTreeMap::new();
    for &i in &honest {
        *per_operator
            .entry(net.nodes[i].operator.clone())
            .or_default() += 1;
    }
    let route_share: Vec<(OperatorId, u64)> = per_operator
        .into_iter()
        .map(|(o, n)| (o, n * 1_000_000 / honest.len().max(1) as u64))
        .collect();
    for back in (1..=config.warmup_epochs).rev() {
        let epoch = BASE_EPOCH.saturating_sub(back);
        let t0 = T0_MS.saturating_sub(back * epoch_ms);
        let mut secret = [0u8; 32];
        net.rng.fill_bytes(&mut secret);
        let mut sessions = Vec::new();
        let mut viewers = Vec::new();
        for viewer in &net.viewers {
            if !matches!(viewer.kind, ViewerKind::Normal | ViewerKind::Lossy) {
                continue;
            }
            let key = viewer.key.viewer_key();
            let count = match net.rng.gen_range(0..100) {
                0..=14 => 0,
                15..=49 => 1,
                50..=84 => 2,
                _ => 3,
            };
            for request in 0..count {
                let Some(node_id) = router.pick(route_seed(&secret, &key, request), &candidates)
                else {
                    continue;
                };
                let duration = net.rng.gen_range(600_000..2_400_000).min(epoch_ms);
                let start = t0 + net.rng.gen_range(0..=epoch_ms - duration);
                let bytes = config.bitrate * duration / 1_000;
                let mut sid = [0u8; 16];
                net.rng.fill_bytes(&mut sid);
                sessions.push(SessionUsage {
                    session_id: SessionId::from_bytes(sid),
                    node_id,
                    viewer: key,
                    stream_id: streams[net.rng.gen_range(0..streams.len())].clone(),
                    bytes,
                    on_time_bytes: bytes,
                    bytes_total: bytes,
                    started_ms: start,
                    last_receipt_ms: start + duration,
                    covers_from_ms: Some(start),
                });
            }
            viewers.push(ViewerProfile {
                viewer: key,
                subnet: viewer.subnet.into(),
                operator: None,
            });
        }
        fraud.assess(&EpochObservations {
            epoch,
            epoch_ms,
            nodes: honest
                .iter()
                .map(|&i| NodeProfile {
                    node_id: net.nodes[i].id,
                    operator: net.nodes[i].operator.clone(),
                    subnet: net.nodes[i].subnet.into(),
                    first_epoch: 0,
                    average_reward: config.pool / honest.len().max(1) as u64,
                })
                .collect(),
            viewers,
            sessions,
            claims: Vec::new(),
            probes: Vec::new(),
            bitrates: streams
                .iter()
                .map(|s| (s.clone(), config.bitrate))
                .collect(),
            operator_route_share_ppm: route_share.clone(),
            recently_penalized: Vec::new(),
            grants: None,
            probe_traffic: Vec::new(),
        });
    }
}

fn attack_of(role: Role) -> Option<Attack> {
    match role {
        Role::Honest => None,
        Role::Attacker(a) => Some(a),
    }
}

/// Looks up the origin's digest for a segment (through the same trait the verifier uses).
trait DigestLookup {
    fn segment_digest(&self, stream: &StreamId, seq: u64) -> Option<ContentDigest>;
}

impl DigestLookup for OriginDigests {
    fn segment_digest(&self, stream: &StreamId, seq: u64) -> Option<ContentDigest> {
        use streamr_core::SegmentDigestSource;
        self.segment(stream, seq).map(|r| r.digest)
    }
}
