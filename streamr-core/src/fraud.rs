//! Fraud rules. Each rule is deterministic and emits an [`Evidence`] record (rule, node, the
//! inputs it looked at, verdict). [`FraudEngine::assess`] turns one epoch's observations into
//! the reward inputs (flagged bytes dropped, probation applied) and penalty orders.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::ReceiptRejection;
use crate::identity::{NodeId, ViewerKey};
use crate::ids::{OperatorId, StreamId, Subnet24};
use crate::probes::ProbeSummary;
use crate::rewards::{NodeEpochInput, PPM};
use crate::settlement::PenaltyOrder;
use crate::verifier::{Credit, SessionUsage};

/// The rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleId {
    /// The node claims far more bytes than its receipts show.
    ClaimsExceedReceipts,
    /// The node submitted receipts beyond their grant.
    ReceiptsBeyondGrant,
    /// The node submitted forged or replayed receipts.
    ForgedReceipts,
    /// A session acknowledged more than bitrate × duration × 1.1.
    OverBitrate,
    /// Probes got wrong content, or most timed out, while the node claimed traffic.
    ProbeFailuresWhileServing,
    /// Viewers' receipts show wrong or stale content.
    WrongContent,
    /// Probes pass but the node's viewers get late content.
    QualityGap,
    /// Viewer and node share a /24 or an operator.
    SelfDealing,
    /// A viewer identity with sessions or bytes far above the norm.
    BotViewer,
    /// Too many nodes in one /24: the group's rewards are capped.
    SybilCluster,
    /// A viewer's credited bytes above the per-viewer cap.
    ViewerCap,
    /// A viewer that keeps using one operator's nodes although routing would spread it.
    Collusion,
    /// Too much of the node's traffic came from self-dealing, bot or colluding viewers.
    TaintedTraffic,
    /// A new node: reduced weight for the first epochs.
    Probation,
    /// A new node where a recently penalized node was (same /24 or operator).
    Whitewashing,
}

/// What a rule decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// These bytes earn nothing; no penalty.
    DropBytes {
        /// Bytes dropped.
        bytes: u64,
    },
    /// The node is penalized (and `bytes` dropped).
    Penalize {
        /// Bytes dropped.
        bytes: u64,
    },
    /// The node's group is capped.
    CapGroup,
    /// The node's weight is multiplied by `weight_ppm`.
    Probation {
        /// The multiplier.
        weight_ppm: u64,
    },
}

/// One rule firing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The epoch.
    pub epoch: u64,
    /// Which rule.
    pub rule: RuleId,
    /// The node concerned.
    pub node_id: NodeId,
    /// The named numbers the rule compared.
    pub inputs: BTreeMap<String, u64>,
    /// The decision.
    pub verdict: Verdict,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProfile {
    /// The node.
    pub node_id: NodeId,
    /// Its operator.
    pub operator: OperatorId,
    /// Its current /24.
    pub subnet: Subnet24,
    /// The epoch it registered in.
    pub first_epoch: u64,
    /// Its average reward per epoch so far (R̄ for penalty sizing), micro-units.
    pub average_reward: u64,
}

/// A viewer as the coordinator saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerProfile {
    /// The viewer's key.
    pub viewer: ViewerKey,
    /// Its /24.
    pub subnet: Subnet24,
    /// The operator account it is linked to, if any.
    pub operator: Option<OperatorId>,
}

/// Counts of a node's submitted receipts by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptTally {
    /// Receipts submitted.
    pub submitted: u64,
    /// Accepted.
    pub accepted: u64,
    /// Bad signature, unknown session or another node's session.
    pub forged: u64,
    /// Older than the last accepted receipt.
    pub replayed: u64,
    /// Beyond the grant's byte limit.
    pub beyond_grant: u64,
    /// Wrong, stale or unknown content.
    pub wrong_content: u64,
}

impl ReceiptTally {
    /// Counts one verification outcome.
    pub fn record(&mut self, outcome: &Result<Credit, ReceiptRejection>) {
        self.submitted += 1;
        match outcome {
            Ok(_) => self.accepted += 1,
            Err(
                ReceiptRejection::BadSignature { .. }
                | ReceiptRejection::UnknownSession { .. }
                | ReceiptRejection::WrongNode { .. },
            ) => self.forged += 1,
            Err(ReceiptRejection::Replayed { .. } | ReceiptRejection::NotMonotonic { .. }) => {
                self.replayed += 1
            }
            Err(ReceiptRejection::BeyondGrant { .. }) => self.beyond_grant += 1,
            Err(
                ReceiptRejection::ContentMismatch { .. }
                | ReceiptRejection::StaleContent { .. }
                | ReceiptRejection::UnknownSegment { .. },
            ) => self.wrong_content += 1,
            Err(_) => {}
        }
    }
}

/// The unattested bytes a node is credited with: what it reported, less the verified bytes its
/// attested claim does not account for. Viewers may hand receipts to the coordinator instead
/// of the node; the node, which never saw those receipts, reports their sessions as unattested,
/// while the receipts credit the same bytes as verified. Netting them out keeps those bytes
/// from earning twice and costs an honest node nothing (they are paid in full as verified).
pub fn net_unattested(claims: &NodeClaims, verified_bytes: u64) -> u64 {
    let verified_beyond_claim = verified_bytes.saturating_sub(claims.claimed_bytes);
    claims
        .unattested_bytes
        .saturating_sub(verified_beyond_claim)
}

/// What a node reported and submitted in the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeClaims {
    /// The node.
    pub node_id: NodeId,
    /// Bytes it claims to have served to granted (signing) viewers.
    pub claimed_bytes: u64,
    /// Bytes it claims to have served to viewers that cannot sign.
    pub unattested_bytes: u64,
    /// Sessions it served.
    pub sessions: u64,
    /// Its receipts' outcomes.
    pub receipts: ReceiptTally,
}

/// Everything the rules look at for one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochObservations {
    /// The epoch.
    pub epoch: u64,
    /// Its length, ms.
    pub epoch_ms: u64,
    /// Registered nodes.
    pub nodes: Vec<NodeProfile>,
    /// Viewers seen.
    pub viewers: Vec<ViewerProfile>,
    /// Verified session usage (from [`crate::ReceiptVerifier::take_usage`]).
    pub sessions: Vec<SessionUsage>,
    /// Nodes' claims and receipt tallies.
    pub claims: Vec<NodeClaims>,
    /// Nodes' probe summaries.
    pub probes: Vec<(NodeId, ProbeSummary)>,
    /// Stream bitrates, bytes per second.
    pub bitrates: Vec<(StreamId, u64)>,
    /// Each operator's expected share of routed sessions, ppm.
    pub operator_route_share_ppm: Vec<(OperatorId, u64)>,
    /// Subnets and operators of nodes penalized in recent epochs.
    pub recently_penalized: Vec<(Subnet24, OperatorId)>,
}

/// Penalty sizing: a penalty P deters when α·P ≥ R̄ (α: detection rate) and keeps honest
/// nodes whole enough when β·P ≤ (1−τ)·R̄ (β: false-positive rate, τ: tolerated loss share).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyPolicy {
    /// Detection rate α, ppm (measured by the simulator).
    pub alpha_ppm: u64,
    /// False-positive rate β per node-epoch, ppm (measured by the simulator).
    pub beta_ppm: u64,
    /// τ, ppm.
    pub tau_ppm: u64,
}

impl Default for PenaltyPolicy {
    fn default() -> Self {
        Self {
            alpha_ppm: 950_000,
            beta_ppm: 1_000,
            tau_ppm: 500_000,
        }
    }
}

impl PenaltyPolicy {
    /// The admissible range [R̄/α, (1−τ)R̄/β] for a node whose average epoch reward is R̄.
    pub fn range(&self, average_reward: u64) -> (u64, u64) {
        let r = u128::from(average_reward) * u128::from(PPM);
        let low = r.div_ceil(u128::from(self.alpha_ppm.max(1)));
        let high = r * u128::from(PPM.saturating_sub(self.tau_ppm.min(PPM)))
            / u128::from(PPM)
            / u128::from(self.beta_ppm.max(1));
        let cap = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        (cap(low), cap(high))
    }

    /// The penalty: the lower bound R̄/α (the least that deters), or the upper bound when the
    /// range is empty.
    pub fn penalty(&self, average_reward: u64) -> u64 {
        let (low, high) = self.range(average_reward);
        low.min(high)
    }
}

/// Rule thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudConfig {
    /// Claims may exceed verified bytes by this share, ppm ...
    pub claim_tolerance_ppm: u64,
    /// ... plus this many seconds of the highest stream bitrate per session (the unreceipted
    /// tail of a session: lost or not yet sent receipts). Claims are never paid, so generous
    /// slack costs nothing; it only keeps honest nodes from being flagged.
    pub claim_slack_seconds_per_session: u64,
    /// Session bytes above bitrate × duration × this factor (ppm) are over-bitrate.
    pub bitrate_headroom_ppm: u64,
    /// Share of probes failing (hash or timeout) that counts as failing while serving, ppm.
    pub probe_failure_ppm: u64,
    /// Share of receipts with wrong or stale content that flags a node, ppm.
    pub wrong_content_ppm: u64,
    /// On-time share below which a node with good probes has a quality gap, ppm.
    pub quality_gap_on_time_ppm: u64,
    /// Availability above which the quality gap rule applies, ppm.
    pub quality_gap_availability_ppm: u64,
    /// Sessions (over the history window) a node needs before the quality gap rule judges it.
    pub quality_gap_min_sessions: u64,
    /// Share of a node's bytes from self-dealing, bot or colluding viewers above which the node
    /// is penalized (below, the bytes are only dropped), ppm.
    pub tainted_share_ppm: u64,
    /// A viewer's credited bytes per epoch are capped at this many streams watched for the whole
    /// epoch at the highest bitrate.
    pub viewer_cap_streams: u64,
    /// A viewer with more than this many times the median sessions or bytes is a bot.
    pub bot_factor: u64,
    /// ... and at least this many sessions.
    pub bot_min_sessions: u64,
    /// Nodes in one /24 beyond this count form a Sybil cluster.
    pub max_nodes_per_subnet: u64,
    /// A viewer whose sessions all went to one operator with chance below this (ppm, after
    /// correcting for the number of operators) is colluding.
    pub collusion_p_value_ppm: u64,
    /// Epochs of viewer history the collusion rule remembers.
    pub collusion_window_epochs: u64,
    /// Epochs of probation for new nodes.
    pub probation_epochs: u64,
    /// Weight during probation, ppm.
    pub probation_weight_ppm: u64,
    /// Weight during probation of a node that looks like a re-registered penalized one, ppm.
    pub whitewash_weight_ppm: u64,
    /// Penalty sizing.
    pub penalty: PenaltyPolicy,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            claim_tolerance_ppm: 150_000,
            claim_slack_seconds_per_session: 900,
            bitrate_headroom_ppm: 1_100_000,
            probe_failure_ppm: 500_000,
            wrong_content_ppm: 100_000,
            quality_gap_on_time_ppm: 500_000,
            quality_gap_availability_ppm: 800_000,
            quality_gap_min_sessions: 8,
            tainted_share_ppm: 300_000,
            bot_factor: 5,
            bot_min_sessions: 20,
            viewer_cap_streams: 2,
            max_nodes_per_subnet: 4,
            collusion_p_value_ppm: 100,
            collusion_window_epochs: 6,
            probation_epochs: 24,
            probation_weight_ppm: 500_000,
            whitewash_weight_ppm: 100_000,
            penalty: PenaltyPolicy::default(),
        }
    }
}

/// The rules' result for one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudReport {
    /// Every rule firing.
    pub evidence: Vec<Evidence>,
    /// Reward inputs per node, sorted by node id.
    pub node_inputs: Vec<NodeEpochInput>,
    /// Penalty orders.
    pub penalties: Vec<PenaltyOrder>,
}

impl FraudReport {
    /// Nodes with a penalty verdict.
    pub fn penalized(&self) -> BTreeSet<NodeId> {
        self.penalties.iter().map(|p| p.node_id).collect()
    }
}

/// Applies the rules epoch after epoch, keeping the viewer history the collusion rule needs.
#[derive(Clone, Debug, Default)]
pub struct FraudEngine {
    config: FraudConfig,
    /// Per viewer: (epoch, operator) of each session in the window.
    viewer_history: BTreeMap<ViewerKey, Vec<(u64, OperatorId)>>,
    /// Per node: (epoch, verified bytes, on-time bytes, sessions) in the window.
    node_history: BTreeMap<NodeId, Vec<(u64, u64, u64, u64)>>,
}

#[derive(Default)]
struct NodeAcc {
    verified: u64,
    on_time: u64,
    flagged: u64,
    tainted: u64,
}

fn inputs<const N: usize>(pairs: [(&str, u64); N]) -> BTreeMap<String, u64> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Sessions of a viewer the collusion test looks at, newest first (bounds `C(k, x)` in `u128`).
const MAX_COLLUSION_SESSIONS: usize = 60;
/// Fewest sessions on one operator before the collusion test judges a viewer.
const COLLUSION_MIN_SESSIONS: u64 = 3;

/// Whether `operators × C(k, hits) × share^hits` — a union bound on the chance that routing sent
/// at least `hits` of `k` sessions to an operator with route share `share_ppm`, for any of the
/// operators — is below `p_value_ppm`. Integer arithmetic (scaled by PPM²), so every platform
/// decides alike.
fn collusion_chance_below(
    k: u64,
    hits: u64,
    share_ppm: u64,
    operators: u128,
    p_value_ppm: u64,
) -> bool {
    let ppm = u128::from(PPM);
    let threshold = u128::from(p_value_ppm) * ppm;
    // C(k, hits), exact: each partial product is itself a binomial coefficient.
    let mut binomial: u128 = 1;
    for i in 0..hits.min(k) {
        binomial = binomial.saturating_mul(u128::from(k - i)) / u128::from(i + 1);
    }
    let mut chance = operators.saturating_mul(binomial).saturating_mul(ppm * ppm);
    let share = u128::from(share_ppm.min(PPM));
    for _ in 0..hits {
        chance = chance / ppm * share + chance % ppm * share / ppm;
        if chance < threshold {
            return true;
        }
    }
    chance < threshold
}

fn ppm_of(part: u64, whole: u64) -> u64 {
    (u128::from(part) * u128::from(PPM))
        .checked_div(u128::from(whole))
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

fn scale_ppm(value: u64, ppm: u64) -> u64 {
    u64::try_from(u128::from(value) * u128::from(ppm) / u128::from(PPM)).unwrap_or(u64::MAX)
}

impl FraudEngine {
    /// An engine with no history.
    pub fn new(config: FraudConfig) -> Self {
        Self {
            config,
            viewer_history: BTreeMap::new(),
            node_history: BTreeMap::new(),
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &FraudConfig {
        &self.config
    }

    /// Applies every rule to one epoch.
    pub fn assess(&mut self, obs: &EpochObservations) -> FraudReport {
        let c = self.config.clone();
        let epoch = obs.epoch;
        let mut evidence = Vec::new();
        let profiles: BTreeMap<NodeId, &NodeProfile> =
            obs.nodes.iter().map(|n| (n.node_id, n)).collect();
        let viewers: BTreeMap<ViewerKey, &ViewerProfile> =
            obs.viewers.iter().map(|v| (v.viewer, v)).collect();
        let bitrates: BTreeMap<&StreamId, u64> =
            obs.bitrates.iter().map(|(s, b)| (s, *b)).collect();
        let route_share: BTreeMap<&OperatorId, u64> = obs
            .operator_route_share_ppm
            .iter()
            .map(|(o, s)| (o, *s))
            .collect();
        let mut acc: BTreeMap<NodeId, NodeAcc> = BTreeMap::new();
        let mut penalize: BTreeMap<NodeId, RuleId> = BTreeMap::new();

        // Viewer-level statistics for the bot and collusion rules.
        let mut per_viewer: BTreeMap<ViewerKey, (u64, u64)> = BTreeMap::new();
        for s in &obs.sessions {
            let e = per_viewer.entry(s.viewer).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(s.bytes);
        }
        let median = |mut v: Vec<u64>| {
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        let median_sessions = median(per_viewer.values().map(|v| v.0).collect());
        let median_bytes = median(per_viewer.values().map(|v| v.1).collect());
        let bots: BTreeSet<ViewerKey> = per_viewer
            .iter()
            .filter(|(_, (sessions, bytes))| {
                *sessions >= c.bot_min_sessions
                    && (*sessions > median_sessions.saturating_mul(c.bot_factor)
                        || *bytes > median_bytes.saturating_mul(c.bot_factor))
            })
            .map(|(v, _)| *v)
            .collect();

        // Collusion: update the history window, then test each viewer's concentration.
        for s in &obs.sessions {
            if let Some(p) = profiles.get(&s.node_id) {
                self.viewer_history
                    .entry(s.viewer)
                    .or_default()
                    .push((epoch, p.operator.clone()));
            }
        }
        let oldest = epoch.saturating_sub(c.collusion_window_epochs.saturating_sub(1));
        self.viewer_history.retain(|_, h| {
            h.retain(|(e, _)| *e >= oldest);
            !h.is_empty()
        });
        let operator_count = route_share.len().max(1) as u128;
        let mut colluders: BTreeMap<ViewerKey, OperatorId> = BTreeMap::new();
        for (viewer, history) in &self.viewer_history {
            // The operator this viewer used most in the window (ties to the lower id).
            let recent = history
                .get(history.len().saturating_sub(MAX_COLLUSION_SESSIONS)..)
                .unwrap_or_default();
            let mut counts: BTreeMap<&OperatorId, u64> = BTreeMap::new();
            for (_, operator) in recent {
                *counts.entry(operator).or_default() += 1;
            }
            let Some((operator, hits)) = counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(o, n)| (*o, *n))
            else {
                continue;
            };
            if hits < COLLUSION_MIN_SESSIONS {
                continue;
            }
            let share = route_share.get(operator).copied().unwrap_or(PPM);
            if collusion_chance_below(
                recent.len() as u64,
                hits,
                share,
                operator_count,
                c.collusion_p_value_ppm,
            ) {
                colluders.insert(*viewer, operator.clone());
            }
        }

        // Session-level rules.
        let max_bitrate = obs.bitrates.iter().map(|(_, b)| *b).max().unwrap_or(0);
        let viewer_cap = u64::try_from(
            u128::from(max_bitrate) * u128::from(obs.epoch_ms) / 1_000
                * u128::from(c.viewer_cap_streams),
        )
        .unwrap_or(u64::MAX);
        for s in &obs.sessions {
            let a = acc.entry(s.node_id).or_default();
            a.verified = a.verified.saturating_add(s.bytes);
            a.on_time = a.on_time.saturating_add(s.on_time_bytes);
            let Some(node) = profiles.get(&s.node_id) else {
                continue;
            };
            let viewer = viewers.get(&s.viewer);
            let bitrate = bitrates.get(&s.stream_id).copied().unwrap_or(0);
            let duration_ms = s.last_receipt_ms.saturating_sub(s.started_ms);
            let allowed = scale_ppm(
                u64::try_from(u128::from(bitrate) * u128::from(duration_ms) / 1_000)
                    .unwrap_or(u64::MAX),
                c.bitrate_headroom_ppm,
            );
            let mut verdicts: Vec<(RuleId, BTreeMap<String, u64>)> = Vec::new();
            if s.bytes_total > allowed {
                verdicts.push((
                    RuleId::OverBitrate,
                    inputs([
                        ("bytes_total", s.bytes_total),
                        ("bitrate", bitrate),
                        ("duration_ms", duration_ms),
                        ("allowed", allowed),
                    ]),
                ));
            }
            if let Some(v) = viewer {
                let same_operator = v.operator.as_ref() == Some(&node.operator);
                if v.subnet == node.subnet || same_operator {
                    verdicts.push((
                        RuleId::SelfDealing,
                        inputs([
                            ("same_subnet", u64::from(v.subnet == node.subnet)),
                            ("same_operator", u64::from(same_operator)),
                        ]),
                    ));
                }
            }
            if bots.contains(&s.viewer) {
                let (sessions, bytes) = per_viewer.get(&s.viewer).copied().unwrap_or((0, 0));
                verdicts.push((
                    RuleId::BotViewer,
                    inputs([
                        ("viewer_sessions", sessions),
                        ("median_sessions", median_sessions),
                        ("viewer_bytes", bytes),
                        ("median_bytes", median_bytes),
                    ]),
                ));
            }
            if colluders.get(&s.viewer) == Some(&node.operator) {
                let history = self.viewer_history.get(&s.viewer);
                let window = history.map_or(0, Vec::len) as u64;
                let on_operator = history
                    .map_or(0, |h| h.iter().filter(|(_, o)| *o == node.operator).count())
                    as u64;
                let share = route_share.get(&node.operator).copied().unwrap_or(0);
                verdicts.push((
                    RuleId::Collusion,
                    inputs([
                        ("window_sessions", window),
                        ("sessions_on_operator", on_operator),
                        ("route_share_ppm", share),
                    ]),
                ));
            }
            if let Some((rule, inputs)) = verdicts.into_iter().next() {
                let a = acc.entry(s.node_id).or_default();
                a.flagged = a.flagged.saturating_add(s.bytes);
                if rule != RuleId::SelfDealing || viewer.is_some_and(|v| v.subnet == node.subnet) {
                    a.tainted = a.tainted.saturating_add(s.bytes);
                }
                evidence.push(Evidence {
                    epoch,
                    rule,
                    node_id: s.node_id,
                    inputs,
                    verdict: Verdict::DropBytes { bytes: s.bytes },
                });
                continue;
            }
            // Per-viewer cap: one viewer's credited bytes in an epoch count up to
            // `viewer_cap_streams` streams at the highest bitrate for the whole epoch; the excess
            // is dropped from each of its sessions in proportion.
            let (_, viewer_bytes) = per_viewer.get(&s.viewer).copied().unwrap_or((0, 0));
            if viewer_bytes > viewer_cap {
                let excess = u128::from(viewer_bytes - viewer_cap);
                let drop = u64::try_from(u128::from(s.bytes) * excess / u128::from(viewer_bytes))
                    .unwrap_or(s.bytes);
                let a = acc.entry(s.node_id).or_default();
                a.flagged = a.flagged.saturating_add(drop);
                evidence.push(Evidence {
                    epoch,
                    rule: RuleId::ViewerCap,
                    node_id: s.node_id,
                    inputs: inputs([("viewer_bytes", viewer_bytes), ("viewer_cap", viewer_cap)]),
                    verdict: Verdict::DropBytes { bytes: drop },
                });
            }
        }

        // Node-level rules.
        let claims: BTreeMap<NodeId, &NodeClaims> =
            obs.claims.iter().map(|c| (c.node_id, c)).collect();
        let probes: BTreeMap<NodeId, ProbeSummary> = obs.probes.iter().copied().collect();
        let mut subnet_counts: BTreeMap<Subnet24, u64> = BTreeMap::new();
        for n in &obs.nodes {
            *subnet_counts.entry(n.subnet).or_default() += 1;
        }
        let penalized_places: BTreeSet<&Subnet24> =
            obs.recently_penalized.iter().map(|(s, _)| s).collect();
        let penalized_operators: BTreeSet<&OperatorId> =
            obs.recently_penalized.iter().map(|(_, o)| o).collect();
        let slack_per_session = max_bitrate.saturating_mul(c.claim_slack_seconds_per_session);
        let mut node_inputs = Vec::with_capacity(obs.nodes.len());
        let mut sorted_nodes: Vec<&NodeProfile> = obs.nodes.iter().collect();
        sorted_nodes.sort_by_key(|n| n.node_id);
        for node in sorted_nodes {
            let id = node.node_id;
            let a = acc.remove(&id).unwrap_or_default();
            let claim = claims.get(&id);
            let probe = probes.get(&id).copied().unwrap_or_default();
            let mut fire = |rule: RuleId, inputs: BTreeMap<String, u64>, verdict: Verdict| {
                evidence.push(Evidence {
                    epoch,
                    rule,
                    node_id: id,
                    inputs,
                    verdict,
                });
            };
            let penalty_verdict = Verdict::Penalize { bytes: a.verified };
            if let Some(cl) = claim {
                let allowed = a
                    .verified
                    .saturating_add(scale_ppm(a.verified, c.claim_tolerance_ppm))
                    .saturating_add(cl.sessions.saturating_mul(slack_per_session));
                if cl.claimed_bytes > allowed {
                    fire(
                        RuleId::ClaimsExceedReceipts,
                        inputs([
                            ("claimed_bytes", cl.claimed_bytes),
                            ("verified_bytes", a.verified),
                            ("allowed", allowed),
                        ]),
                        penalty_verdict.clone(),
                    );
                    penalize.entry(id).or_insert(RuleId::ClaimsExceedReceipts);
                }
                if cl.receipts.beyond_grant > 0 {
                    fire(
                        RuleId::ReceiptsBeyondGrant,
                        inputs([("beyond_grant", cl.receipts.beyond_grant)]),
                        penalty_verdict.clone(),
                    );
                    penalize.entry(id).or_insert(RuleId::ReceiptsBeyondGrant);
                }
                if cl.receipts.forged + cl.receipts.replayed > 0 {
                    fire(
                        RuleId::ForgedReceipts,
                        inputs([
                            ("forged", cl.receipts.forged),
                            ("replayed", cl.receipts.replayed),
                            ("submitted", cl.receipts.submitted),
                        ]),
                        penalty_verdict.clone(),
                    );
                    penalize.entry(id).or_insert(RuleId::ForgedReceipts);
                }
                if ppm_of(cl.receipts.wrong_content, cl.receipts.submitted) > c.wrong_content_ppm {
                    fire(
                        RuleId::WrongContent,
                        inputs([
                            ("wrong_content", cl.receipts.wrong_content),
                            ("submitted", cl.receipts.submitted),
                        ]),
                        penalty_verdict.clone(),
                    );
                    penalize.entry(id).or_insert(RuleId::WrongContent);
                }
                let claims_traffic = cl.claimed_bytes > 0 || cl.unattested_bytes > 0;
                let failures = probe.hash_failures + probe.timeouts;
                if claims_traffic
                    && (probe.hash_failures > 0
                        || ppm_of(failures, probe.total) > c.probe_failure_ppm)
                {
                    fire(
                        RuleId::ProbeFailuresWhileServing,
                        inputs([
                            ("probes", probe.total),
                            ("hash_failures", probe.hash_failures),
                            ("timeouts", probe.timeouts),
                            ("claimed_bytes", cl.claimed_bytes),
                            ("unattested_bytes", cl.unattested_bytes),
                        ]),
                        penalty_verdict.clone(),
                    );
                    penalize
                        .entry(id)
                        .or_insert(RuleId::ProbeFailuresWhileServing);
                }
            }
            // The quality gap is judged over the history window, once enough sessions were seen:
            // one epoch of two lossy viewers says little.
            let sessions = claim.map_or(0, |cl| cl.sessions);
            let history = self.node_history.entry(id).or_default();
            history.push((epoch, a.verified, a.on_time, sessions));
            history.retain(|(e, ..)| *e >= oldest);
            let (w_verified, w_on_time, w_sessions) =
                history.iter().fold((0u64, 0u64, 0u64), |acc, h| {
                    (
                        acc.0.saturating_add(h.1),
                        acc.1.saturating_add(h.2),
                        acc.2.saturating_add(h.3),
                    )
                });
            let on_time_ppm = ppm_of(w_on_time, w_verified);
            if a.verified > 0
                && w_sessions >= c.quality_gap_min_sessions
                && probe.availability_ppm() >= c.quality_gap_availability_ppm
                && on_time_ppm < c.quality_gap_on_time_ppm
            {
                fire(
                    RuleId::QualityGap,
                    inputs([
                        ("availability_ppm", probe.availability_ppm()),
                        ("window_on_time_ppm", on_time_ppm),
                        ("window_sessions", w_sessions),
                    ]),
                    penalty_verdict.clone(),
                );
                penalize.entry(id).or_insert(RuleId::QualityGap);
            }
            if a.verified > 0 && ppm_of(a.tainted, a.verified) > c.tainted_share_ppm {
                fire(
                    RuleId::TaintedTraffic,
                    inputs([("tainted_bytes", a.tainted), ("verified_bytes", a.verified)]),
                    penalty_verdict.clone(),
                );
                penalize.entry(id).or_insert(RuleId::TaintedTraffic);
            }
            let in_subnet = subnet_counts.get(&node.subnet).copied().unwrap_or(0);
            if in_subnet > c.max_nodes_per_subnet {
                fire(
                    RuleId::SybilCluster,
                    inputs([
                        ("nodes_in_subnet", in_subnet),
                        ("limit", c.max_nodes_per_subnet),
                    ]),
                    Verdict::CapGroup,
                );
            }
            let mut probation_ppm = PPM;
            let age = epoch.saturating_sub(node.first_epoch);
            if age < c.probation_epochs {
                let whitewash = penalized_places.contains(&node.subnet)
                    || penalized_operators.contains(&node.operator);
                probation_ppm = if whitewash {
                    c.whitewash_weight_ppm
                } else {
                    c.probation_weight_ppm
                };
                fire(
                    if whitewash {
                        RuleId::Whitewashing
                    } else {
                        RuleId::Probation
                    },
                    inputs([
                        ("age_epochs", age),
                        ("probation_epochs", c.probation_epochs),
                    ]),
                    Verdict::Probation {
                        weight_ppm: probation_ppm,
                    },
                );
            }
            let penalized = penalize.contains_key(&id);
            let (unattested, capacity) = claim.map_or((0, 0), |cl| {
                (
                    net_unattested(cl, a.verified),
                    probe.capacity_bytes(obs.epoch_ms),
                )
            });
            node_inputs.push(NodeEpochInput {
                node_id: id,
                operator: node.operator.clone(),
                subnet: node.subnet,
                verified_bytes: a.verified,
                on_time_bytes: a.on_time,
                // A penalized node earns nothing this epoch.
                flagged_bytes: if penalized {
                    a.verified
                } else {
                    a.flagged.min(a.verified)
                },
                availability_ppm: probe.availability_ppm(),
                unattested_bytes: if penalized { 0 } else { unattested },
                probe_capacity_bytes: capacity,
                probation_ppm,
            });
        }
        self.node_history
            .retain(|_, h| h.iter().any(|(e, ..)| *e >= oldest));
        let penalties = penalize
            .iter()
            .filter_map(|(id, rule)| {
                let node = profiles.get(id)?;
                Some(PenaltyOrder {
                    node_id: *id,
                    amount: c.penalty.penalty(node.average_reward),
                    rule: format!("{rule:?}"),
                })
            })
            .collect();
        FraudReport {
            evidence,
            node_inputs,
            penalties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SessionId;

    fn claims(claimed_bytes: u64, unattested_bytes: u64) -> NodeClaims {
        NodeClaims {
            node_id: NodeId::from_bytes([1; 32]),
            claimed_bytes,
            unattested_bytes,
            sessions: 1,
            receipts: ReceiptTally::default(),
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
            subnet: Subnet24([10, 0, subnet]),
            first_epoch: 0,
            average_reward: 1_000,
        }
    }

    fn viewer(i: u8, subnet: u8) -> ViewerProfile {
        ViewerProfile {
            viewer: ViewerKey::from_bytes([i; 32]),
            subnet: Subnet24([192, 168, subnet]),
            operator: None,
        }
    }

    fn session(n: u8, v: u8, s: u8, minutes: u64) -> SessionUsage {
        let bytes = BITRATE * minutes * 60;
        SessionUsage {
            session_id: SessionId::from_bytes([s; 16]),
            node_id: NodeId::from_bytes([n; 32]),
            viewer: ViewerKey::from_bytes([v; 32]),
            stream_id: StreamId::new("live").unwrap(),
            bytes,
            on_time_bytes: bytes,
            bytes_total: bytes,
            started_ms: 0,
            last_receipt_ms: minutes * 60_000,
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

    #[test]
    fn over_bitrate_and_self_dealing_sessions_are_dropped() {
        let mut obs = honest();
        obs.sessions[0].bytes_total = BITRATE * 20 * 60 * 2;
        obs.viewers[1].subnet = obs.nodes[2].subnet; // viewer 2 watches node 3 from its /24
        let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
        assert_eq!(
            rules_for(&report, 2),
            [RuleId::OverBitrate, RuleId::TaintedTraffic]
        );
        assert_eq!(
            rules_for(&report, 3),
            [RuleId::SelfDealing, RuleId::TaintedTraffic]
        );
        let node3 = &report.node_inputs[2];
        assert_eq!(node3.flagged_bytes, node3.verified_bytes);
    }

    #[test]
    fn collusion_needs_improbable_concentration() {
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
            assert_eq!(report.penalties.is_empty(), epoch < 3);
        }
    }

    #[test]
    fn new_nodes_get_probation_and_returning_offenders_less() {
        let mut obs = honest();
        obs.nodes[0].first_epoch = 99;
        obs.nodes[1].first_epoch = 99;
        obs.recently_penalized = vec![(obs.nodes[1].subnet, OperatorId::new("x").unwrap())];
        let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
        assert_eq!(rules_for(&report, 1), [RuleId::Probation]);
        assert_eq!(rules_for(&report, 2), [RuleId::Whitewashing]);
        assert_eq!(report.node_inputs[0].probation_ppm, 500_000);
        assert_eq!(report.node_inputs[1].probation_ppm, 100_000);
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

    #[test]
    fn probe_failures_while_claiming_traffic_are_penalized() {
        let mut obs = honest();
        obs.probes[0].1 = ProbeSummary {
            total: 60,
            passed: 0,
            timeouts: 60,
            ..ProbeSummary::default()
        };
        obs.probes[1].1.hash_failures = 1;
        let report = FraudEngine::new(FraudConfig::default()).assess(&obs);
        assert_eq!(rules_for(&report, 1), [RuleId::ProbeFailuresWhileServing]);
        assert_eq!(rules_for(&report, 2), [RuleId::ProbeFailuresWhileServing]);
    }
}
