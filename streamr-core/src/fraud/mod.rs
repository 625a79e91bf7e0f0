//! Fraud rules. Each rule is a deterministic function that emits an [`Evidence`] record (rule,
//! node, the inputs it looked at, verdict); [`FraudEngine::assess`] runs them over one epoch's
//! observations and turns the result into reward inputs (dropped bytes, probation, bounded
//! unattested bytes) and penalty orders.
//!
//! A node is penalized only on evidence it could have caused: its own claims, the receipts it
//! handed in itself, probes of its content, viewers in its own prefix or operator. What viewers
//! do (concentrating on a node, bot-like volumes, over-bitrate receipts, fresh keys) costs the
//! viewers' own credit, never the node's: the bytes are dropped, nothing more.
//!
//! The rules live in one module per subject: [`claims`] (what the node reported and handed in),
//! [`sessions`] (each viewer session), [`sybil`] (viewer keys and source prefixes),
//! [`unattested`] (bytes without receipts), [`nodes`] (quality, clusters, probation) and
//! [`relay`] (relay edges: what a relay's children acknowledged for it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::ReceiptRejection;
use crate::identity::{NodeId, ViewerKey};
use crate::ids::{NetPrefix, OperatorId, SessionId, StreamId};
use crate::probes::ProbeSummary;
use crate::rewards::{NodeEpochInput, PPM};
use crate::settlement::PenaltyOrder;
use crate::verifier::{Credit, SessionUsage};

mod claims;
mod context;
mod nodes;
mod relay;
mod rule_id;
mod sessions;
mod sybil;
#[cfg(test)]
mod tests;
mod unattested;

pub use rule_id::{RuleId, UnknownRule};
pub use sessions::operator_route_shares;
pub use unattested::net_unattested;

use context::{Book, EpochContext};

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
    /// Its current network (IPv4 /24 or IPv6 /48).
    pub subnet: NetPrefix,
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
    /// Its network (IPv4 /24 or IPv6 /48).
    pub subnet: NetPrefix,
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
    /// Outcomes of the receipts the node handed in itself. Only these can penalize it: a
    /// receipt a viewer posted to the coordinator directly is the viewer's doing.
    pub receipts: ReceiptTally,
    /// Outcomes of receipts viewers posted to the coordinator for the node's sessions. Shown as
    /// evidence, never held against the node.
    #[serde(default)]
    pub viewer_posted: ReceiptTally,
    /// Heartbeats the node sent in the epoch (`None` where not recorded). In an epoch without
    /// any (the coordinator was down; receipts it kept came in after), the node could claim
    /// nothing, so what such an epoch's receipts allow carries on to its next claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeats: Option<u64>,
}

/// A session grant the coordinator issued, as its grant log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedGrant {
    /// The session.
    pub session_id: SessionId,
    /// The node it was granted on.
    pub node_id: NodeId,
    /// The viewer key it was granted to.
    pub viewer: ViewerKey,
    /// The stream.
    pub stream_id: StreamId,
    /// How long the grant was live within the epoch, ms (from issue to expiry or the end of the
    /// session, clipped to the epoch).
    pub live_ms: u64,
    /// A coordinator probe, not a viewer: its traffic is never paid.
    pub probe: bool,
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
    /// Stream bitrates, bytes per second: the ceiling the coordinator knows. The rules use the
    /// bitrate measured from the epoch's receipts where it is lower (see [`FraudEngine`]).
    pub bitrates: Vec<(StreamId, u64)>,
    /// Each operator's expected share of routed sessions, ppm.
    pub operator_route_share_ppm: Vec<(OperatorId, u64)>,
    /// Subnets and operators of nodes penalized in recent epochs, kept as published evidence.
    /// The rules judge whitewashing by the penalties they issued themselves (the engine's
    /// history, rebuilt on replay), which know when each penalty came: only a node that
    /// started serving in the prefix after the penalty is its possible replacement; the
    /// operator name is free text, so it neither catches a whitewasher nor may it put another
    /// operator's nodes under suspicion.
    pub recently_penalized: Vec<(NetPrefix, OperatorId)>,
    /// Every grant issued in the epoch (viewers' and probes'). `None` where the coordinator
    /// kept no grant log (observations stored before it did): unattested bytes are then capped
    /// by probe capacity only, and probe sessions cannot be told apart.
    #[serde(default)]
    pub grants: Option<Vec<IssuedGrant>>,
    /// Per node: the bytes the coordinator's probes took from it in the epoch that no receipt
    /// acknowledged (HTTP-FLV reads, playlists, segments not judged yet). The node cannot tell
    /// a probe from a viewer and reports them as unattested; settlement nets them out, so probe
    /// traffic is never paid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_traffic: Vec<(NodeId, u64)>,
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

/// Rule thresholds. Fields missing from a stored or configured value take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FraudConfig {
    /// Claims may exceed verified bytes by this share, ppm ...
    pub claim_tolerance_ppm: u64,
    /// ... plus this many seconds of each session's measured stream bitrate (the unreceipted
    /// tail of a session: lost or not yet sent receipts). Claims are never paid, so generous
    /// slack costs nothing; it only keeps honest nodes from being flagged.
    pub claim_slack_seconds_per_session: u64,
    /// Session bytes above bitrate × duration × this factor (ppm) ...
    pub bitrate_headroom_ppm: u64,
    /// ... plus this many seconds of bitrate (a player's initial buffer) are over-bitrate.
    pub bitrate_burst_seconds: u64,
    /// Sessions shorter than this do not enter a stream's measured bitrate, ms.
    pub bitrate_min_session_ms: u64,
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
    /// Share of a node's bytes from viewers in its own prefix or operator above which the node
    /// is penalized (below, the bytes are only dropped), ppm.
    pub tainted_share_ppm: u64,
    /// A viewer's credited bytes per epoch are capped at this many streams watched for the whole
    /// epoch at the measured bitrate of the streams it watched.
    pub viewer_cap_streams: u64,
    /// The viewer keys of one source prefix together are credited at most this many streams
    /// watched for the whole epoch.
    pub prefix_cap_streams: u64,
    /// Credit from a viewer key with no history is weighted by this, ppm ...
    pub new_key_weight_ppm: u64,
    /// ... rising linearly to full weight once the key was credited, in earlier epochs, on
    /// nodes in this many distinct node prefixes.
    pub seasoned_key_prefixes: u64,
    /// Epochs a viewer key's history is kept after it was last seen.
    pub key_history_epochs: u64,
    /// The network's credited unattested bytes are at most this share of its credited attested
    /// bytes, ppm.
    pub unattested_ratio_ppm: u64,
    /// A grant whose viewer signs receipts lets its node claim at most this many seconds of
    /// its stream as unattested beyond what the receipts verified (the bytes after its last
    /// receipt); a player that never signs, its grant's whole live time. Keep it above the
    /// viewers' receipt interval.
    pub signed_silence_seconds: u64,
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
    /// In an epoch with no probe result for any node (the coordinator's prober did not run:
    /// an outage, or no stream it could judge), each node's availability and probe capacity are
    /// those of the last epoch, at most this many back, in which it was probed.
    pub availability_memory_epochs: u64,
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
            bitrate_burst_seconds: 10,
            bitrate_min_session_ms: 60_000,
            probe_failure_ppm: 500_000,
            wrong_content_ppm: 100_000,
            quality_gap_on_time_ppm: 500_000,
            quality_gap_availability_ppm: 800_000,
            quality_gap_min_sessions: 8,
            tainted_share_ppm: 300_000,
            bot_factor: 5,
            bot_min_sessions: 20,
            viewer_cap_streams: 2,
            prefix_cap_streams: 8,
            new_key_weight_ppm: 0,
            seasoned_key_prefixes: 3,
            key_history_epochs: 720,
            unattested_ratio_ppm: 250_000,
            signed_silence_seconds: 60,
            max_nodes_per_subnet: 4,
            collusion_p_value_ppm: 100,
            collusion_window_epochs: 6,
            probation_epochs: 24,
            availability_memory_epochs: 24,
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

/// Applies the rules epoch after epoch, keeping the history some of them need: viewers'
/// sessions per operator (collusion), nodes' on-time shares (quality gap) and viewer keys'
/// credited prefixes (new-key discount).
#[derive(Clone, Debug, Default)]
pub struct FraudEngine {
    config: FraudConfig,
    /// Per viewer: (epoch, node) of each session in the window. The collusion rule reads it by
    /// each node's operator as the node is registered now (`node_operators`), so a node that
    /// registers under another operator name cannot split its viewers' history.
    viewer_history: BTreeMap<ViewerKey, Vec<(u64, NodeId)>>,
    /// Per node, the operator it was last registered under.
    node_operators: BTreeMap<NodeId, OperatorId>,
    node_history: nodes::NodeHistory,
    keys: BTreeMap<ViewerKey, sybil::KeyHistory>,
    /// Sessions receipts verified (probes aside), with the node that served them and the last
    /// epoch they were verified or granted in: such a session that signs nothing in a later
    /// epoch still vouches for what its node claims to have served it (see
    /// `claims::unreceipted_grant_allowance`).
    served: BTreeMap<SessionId, (NodeId, u64)>,
    /// Per node, the last epoch its probes had results in and their summary: what an epoch no
    /// node was probed in measures it by.
    last_probed: BTreeMap<NodeId, (u64, ProbeSummary)>,
    /// Per node, the epoch it last had claims in, what it left unclaimed of the allowance up to
    /// then, and whether it sent no heartbeat in that epoch: the next epoch's claim may use the
    /// room, or, after an epoch without heartbeats, the next claim however much later (see
    /// `claims::claims_exceed_receipts`).
    claim_room: BTreeMap<NodeId, ClaimRoom>,
    /// Per node, what it could have served in the epochs no node was probed in (a coordinator
    /// outage) and it sent no heartbeat in, since its last heartbeat, as its last probes
    /// measured it: its first heartbeat after claims what it served there, which that epoch's
    /// probes cannot judge (see `claims::probe_failures_while_serving`).
    silent_reach: BTreeMap<NodeId, u64>,
    /// Per node, the unattested bound of its epochs without heartbeats since it last claimed:
    /// what its grants carried there is claimed by its first heartbeat after, and bounded by it
    /// then.
    unattested_room: BTreeMap<NodeId, u64>,
    /// Per node, the epoch it last had claims in and what its unattested netting pool left
    /// there, for the next epoch's claims (see `unattested::net_unattested_carried`).
    netting_left: BTreeMap<NodeId, (u64, u64)>,
    /// The first epoch this engine assessed: a node registered before it is as old as its
    /// registration says (its history is not here to say otherwise).
    first_assessed: Option<u64>,
    /// Per node, the first epoch it passed a probe in: probation counts from it.
    active_since: BTreeMap<NodeId, u64>,
    /// Per prefix, the latest epoch a node observed there was penalized in (kept for the
    /// window): a node starting to serve there after it is taken for that node come back.
    penalized_prefixes: BTreeMap<NetPrefix, u64>,
}

/// What a node left unclaimed of the allowance of its last epoch with claims (see
/// `FraudEngine::claim_room`).
#[derive(Clone, Copy, Debug, Default)]
struct ClaimRoom {
    /// The epoch.
    epoch: u64,
    /// Allowance left unclaimed, bytes.
    room: u64,
    /// The node sent no heartbeat in it.
    silent: bool,
}

impl ClaimRoom {
    /// The room after `epoch`'s claim: what it left of its allowance, plus, when the node
    /// sent no heartbeat in it (so claimed nothing), the room it had carried in.
    fn after(epoch: u64, claim: &NodeClaims, allowance: u64, carried: u64) -> Self {
        let silent = claim.heartbeats == Some(0);
        let left = allowance.saturating_sub(claim.claimed_bytes);
        ClaimRoom {
            epoch,
            room: if silent {
                left.saturating_add(carried)
            } else {
                left
            },
            silent,
        }
    }

    /// What `epoch`'s claim may use of it: all of it in the next epoch, or in any later one
    /// after an epoch without heartbeats (nothing was claimed since); nothing otherwise.
    fn carried_into(&self, epoch: u64) -> u64 {
        let next = self.epoch.saturating_add(1);
        if epoch == next || (self.silent && epoch > next) {
            self.room
        } else {
            0
        }
    }

    /// Whether a later epoch than `epoch` may still use it.
    fn open_in(&self, epoch: u64) -> bool {
        self.silent || self.epoch >= epoch
    }
}

impl FraudEngine {
    /// An engine with no history.
    pub fn new(config: FraudConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &FraudConfig {
        &self.config
    }

    /// Applies every rule to one epoch.
    pub fn assess(&mut self, obs: &EpochObservations) -> FraudReport {
        let config = self.config.clone();
        let ctx = EpochContext::new(&config, obs);
        let mut book = Book::new(obs.epoch);
        let (served_sessions, probe_sessions): (Vec<&SessionUsage>, Vec<&SessionUsage>) =
            obs.sessions.iter().partition(|s| !ctx.is_probe(s));
        let (relay_sessions, viewer_sessions): (Vec<&SessionUsage>, Vec<&SessionUsage>) =
            served_sessions
                .into_iter()
                .partition(|s| relay::relay_child(&ctx, &s.viewer).is_some());
        for s in &probe_sessions {
            let a = book.acc(s.node_id);
            a.probe_bytes = a.probe_bytes.saturating_add(s.bytes);
        }
        let credits = self.assess_sessions(&ctx, &viewer_sessions, &mut book);
        let relay_credits =
            relay::credit_edges(&ctx, &relay_sessions, &credits, &probe_sessions, &mut book);
        for cr in credits.iter().chain(&relay_credits) {
            let on_time = context::scale(cr.session.on_time_bytes, cr.bytes, cr.session.bytes);
            let a = book.acc(cr.session.node_id);
            a.credited_on_time = a.credited_on_time.saturating_add(on_time);
        }
        let verified_by_session: BTreeMap<SessionId, u64> = viewer_sessions
            .iter()
            .chain(&relay_sessions)
            .map(|s| (s.session_id, s.bytes))
            .collect();
        let mut report = self.assess_nodes(&ctx, &verified_by_session, &mut book);
        self.remember_served(&ctx, viewer_sessions.iter().chain(&relay_sessions));
        sybil::remember(&ctx, &mut self.keys, &credits);
        book.flush_partial();
        report.evidence = book.evidence;
        report
    }

    /// Session rules: a session the first matching rule drops earns nothing; the rest is
    /// discounted by key history and capped per viewer and per source prefix. Returns the
    /// credit left per session.
    fn assess_sessions<'a>(
        &mut self,
        ctx: &EpochContext<'_>,
        viewer_sessions: &[&'a SessionUsage],
        book: &mut Book,
    ) -> Vec<context::Credit<'a>> {
        let epoch = ctx.obs.epoch;
        let per_viewer = context::per_viewer(viewer_sessions);
        let bots = sessions::bots(ctx, &per_viewer);
        for (id, p) in &ctx.profiles {
            self.node_operators.insert(*id, p.operator.clone());
        }
        for s in viewer_sessions {
            if ctx.profiles.contains_key(&s.node_id) {
                self.viewer_history
                    .entry(s.viewer)
                    .or_default()
                    .push((epoch, s.node_id));
            }
        }
        let oldest = self.window_start(epoch);
        self.viewer_history.retain(|_, h| {
            h.retain(|(e, _)| *e >= oldest);
            !h.is_empty()
        });
        let in_history: BTreeSet<NodeId> = self
            .viewer_history
            .values()
            .flatten()
            .map(|(_, node)| *node)
            .collect();
        self.node_operators
            .retain(|id, _| in_history.contains(id) || ctx.profiles.contains_key(id));
        // Each session by its node's operator as the node is registered now.
        let history: BTreeMap<ViewerKey, Vec<(u64, &OperatorId)>> = self
            .viewer_history
            .iter()
            .map(|(viewer, sessions)| {
                let sessions = sessions
                    .iter()
                    .filter_map(|(e, node)| Some((*e, self.node_operators.get(node)?)))
                    .collect();
                (*viewer, sessions)
            })
            .collect();
        let colluders = sessions::colluders(ctx, &history);

        let mut credits = Vec::with_capacity(viewer_sessions.len());
        for s in viewer_sessions {
            book.book(ctx, s);
            if !ctx.profiles.contains_key(&s.node_id) {
                continue;
            }
            let verdict = sessions::over_bitrate(ctx, s)
                .or_else(|| sessions::self_dealing(ctx, s))
                .or_else(|| sessions::bot_viewer(s, &bots, &per_viewer))
                .or_else(|| sessions::collusion(ctx, s, &colluders, &history));
            let Some((rule, inputs)) = verdict else {
                credits.push(context::Credit {
                    session: s,
                    bytes: s.bytes,
                });
                continue;
            };
            let a = book.acc(s.node_id);
            a.flagged = a.flagged.saturating_add(s.bytes);
            if rule == RuleId::SelfDealing {
                a.tainted = a.tainted.saturating_add(s.bytes);
            }
            book.fire(
                rule,
                s.node_id,
                inputs,
                Verdict::DropBytes { bytes: s.bytes },
            );
        }
        sybil::new_viewer_key(ctx, &self.keys, &mut credits, book);
        sessions::viewer_cap(ctx, &mut credits, book);
        sybil::viewer_prefix_cap(ctx, &mut credits, book);
        credits
    }

    /// Notes the sessions receipts verified this epoch, keeps the ones still granted, and
    /// forgets the ones neither verified nor granted within the window.
    fn remember_served<'a>(
        &mut self,
        ctx: &EpochContext<'_>,
        verified: impl Iterator<Item = &'a &'a SessionUsage>,
    ) {
        let epoch = ctx.obs.epoch;
        for s in verified.filter(|s| s.bytes > 0) {
            self.served.insert(s.session_id, (s.node_id, epoch));
        }
        for g in ctx.obs.grants.iter().flatten() {
            if let Some((node, last)) = self.served.get_mut(&g.session_id) {
                if *node == g.node_id {
                    *last = epoch;
                }
            }
        }
        let oldest = self.window_start(epoch);
        self.served.retain(|_, (_, last)| *last >= oldest);
    }

    /// Records this epoch's probe summaries and returns what each node's availability and
    /// capacity are measured by: this epoch's probes, or, when the epoch has none for any node
    /// (the prober did not run, which no node can bring about for the others), the node's last
    /// probed epoch within `availability_memory_epochs`. A node nothing probed either time has
    /// none, so availability 0, as a node never probed always has. The rules judge only this
    /// epoch's probes.
    fn remember_probes(
        &mut self,
        epoch: u64,
        probes: &BTreeMap<NodeId, ProbeSummary>,
    ) -> BTreeMap<NodeId, ProbeSummary> {
        let oldest = epoch.saturating_sub(self.config.availability_memory_epochs);
        let unprobed = probes.values().all(|p| p.total == 0);
        for (id, probe) in probes.iter().filter(|(_, p)| p.total > 0) {
            self.last_probed.insert(*id, (epoch, *probe));
        }
        self.last_probed.retain(|_, (e, _)| *e >= oldest);
        if unprobed {
            self.last_probed
                .iter()
                .map(|(id, (_, probe))| (*id, *probe))
                .collect()
        } else {
            probes.clone()
        }
    }

    fn window_start(&self, epoch: u64) -> u64 {
        epoch.saturating_sub(self.config.collusion_window_epochs.saturating_sub(1))
    }

    /// Node rules, the unattested bounds, and the reward inputs.
    fn assess_nodes(
        &mut self,
        ctx: &EpochContext<'_>,
        verified_by_session: &BTreeMap<SessionId, u64>,
        book: &mut Book,
    ) -> FraudReport {
        let c = ctx.config;
        let obs = ctx.obs;
        let epoch = obs.epoch;
        let claims: BTreeMap<NodeId, &NodeClaims> =
            obs.claims.iter().map(|c| (c.node_id, c)).collect();
        let probes: BTreeMap<NodeId, ProbeSummary> = obs.probes.iter().copied().collect();
        let mut probe_traffic: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (id, bytes) in &obs.probe_traffic {
            let sum = probe_traffic.entry(*id).or_default();
            *sum = sum.saturating_add(*bytes);
        }
        let unprobed = probes.values().all(|p| p.total == 0);
        let measured = self.remember_probes(epoch, &probes);
        let mut subnet_counts: BTreeMap<NetPrefix, u64> = BTreeMap::new();
        for n in &obs.nodes {
            *subnet_counts.entry(n.subnet).or_default() += 1;
        }
        let first_assessed = *self.first_assessed.get_or_insert(epoch);
        for (id, probe) in &probes {
            if probe.passed > 0 {
                self.active_since.entry(*id).or_insert(epoch);
            }
        }
        let window = c.collusion_window_epochs;
        self.penalized_prefixes
            .retain(|_, at| at.saturating_add(window) >= epoch);
        let bounds = unattested::grant_bounds(ctx, verified_by_session, &self.served);
        let unreceipted =
            claims::unreceipted_grant_allowance(ctx, verified_by_session, &self.served);
        let oldest = self.window_start(epoch);
        let mut sorted_nodes: Vec<&NodeProfile> = obs.nodes.iter().collect();
        sorted_nodes.sort_by_key(|n| n.node_id);
        let mut node_inputs = Vec::with_capacity(sorted_nodes.len());
        for node in sorted_nodes {
            let id = node.node_id;
            let probe = probes.get(&id).copied().unwrap_or_default();
            let availability_by = measured.get(&id).copied().unwrap_or_default();
            let grants = bounds
                .as_ref()
                .and_then(|b| b.get(&id).copied())
                .unwrap_or_default();
            let claim = claims.get(&id).copied();
            let a = book.acc(id).clone();
            let mut findings = Vec::new();
            let heard = claim.is_some_and(|cl| cl.heartbeats != Some(0));
            if unprobed && !heard {
                let servable = availability_by
                    .capacity_bytes(obs.epoch_ms)
                    .max(grants.carried);
                let reach = context::scale_ppm(servable, claims::up_share_ppm(&availability_by));
                let sum = self.silent_reach.entry(id).or_default();
                *sum = sum.saturating_add(reach);
            }
            if let Some(cl) = claim {
                let unreceipted = unreceipted.get(&id).copied().unwrap_or(0);
                let allowance =
                    claims::claim_allowance(c, cl, &a, ctx.max_bitrate, unreceipted, obs.epoch_ms);
                let carried = self
                    .claim_room
                    .get(&id)
                    .map_or(0, |room| room.carried_into(epoch));
                self.claim_room
                    .insert(id, ClaimRoom::after(epoch, cl, allowance, carried));
                findings.extend(claims::claims_exceed_receipts(cl, &a, allowance, carried));
                findings.extend(claims::receipts_beyond_grant(cl));
                findings.extend(claims::forged_receipts(cl));
                findings.extend(claims::wrong_content(c, cl));
                let servable = probe.capacity_bytes(obs.epoch_ms).max(grants.carried);
                let silent_reach = if heard {
                    self.silent_reach.remove(&id).unwrap_or(0)
                } else {
                    0
                };
                findings.extend(claims::probe_failures_while_serving(
                    c,
                    cl,
                    &a,
                    &probe,
                    servable,
                    carried,
                    silent_reach,
                ));
            }
            let sessions = claim.map_or(0, |cl| cl.sessions);
            let history = self.node_history.entry(id).or_default();
            history.push((epoch, a.verified, a.on_time, sessions));
            history.retain(|(e, ..)| *e >= oldest);
            findings.extend(nodes::quality_gap(c, history, &a, &probe));
            findings.extend(nodes::tainted_traffic(c, &a));
            for (rule, inputs) in findings {
                book.penalize(rule, id, inputs);
            }
            if let Some(inputs) = nodes::sybil_cluster(c, node, &subnet_counts) {
                book.fire(RuleId::SybilCluster, id, inputs, Verdict::CapGroup);
            }
            let started = if node.first_epoch < first_assessed {
                node.first_epoch
            } else {
                let active = self.active_since.get(&id).copied().unwrap_or(epoch);
                node.first_epoch.max(active)
            };
            let standing = nodes::Standing {
                started,
                follows_penalty: self
                    .penalized_prefixes
                    .get(&node.subnet)
                    .is_some_and(|&at| at < started),
            };
            let (probation_ppm, probation) = nodes::probation(c, epoch, standing);
            if let Some((rule, inputs)) = probation {
                book.fire(
                    rule,
                    id,
                    inputs,
                    Verdict::Probation {
                        weight_ppm: probation_ppm,
                    },
                );
            }
            let penalized = book.penalize.contains_key(&id);
            let mut unattested_bytes = 0;
            if let (Some(cl), false) = (claim, penalized) {
                // Net only bytes that are paid: receipts a framer posted past the node, and
                // dropped, must not eat into the node's unattested credit.
                let credited = a
                    .verified
                    .saturating_sub(a.flagged)
                    .saturating_add(a.probe_bytes);
                let carried = self
                    .netting_left
                    .get(&id)
                    .filter(|(e, _)| e.saturating_add(1) == epoch)
                    .map_or(0, |(_, left)| *left);
                let traffic = probe_traffic.get(&id).copied().unwrap_or(0);
                let netted = unattested::net_unattested_carried(cl, credited, traffic, carried);
                // An epoch the node sent no heartbeat in (a coordinator outage) left nothing
                // it claimed behind: what its receipts verified there is not netting material.
                let left = if cl.heartbeats == Some(0) {
                    0
                } else {
                    netted.left
                };
                self.netting_left.insert(id, (epoch, left));
                unattested_bytes = netted.unattested;
                if bounds.is_some() {
                    // What the grants carried while the node was down is no one's to claim:
                    // the bound leaves out the share of their carry its probes found it down
                    // for (less the margin for their sampling error). What they carried in epochs
                    // the node sent no heartbeat in (a coordinator outage) is claimed by its
                    // first heartbeat after, and adds to that epoch's bound.
                    let down = PPM.saturating_sub(claims::up_share_ppm(&availability_by));
                    let own = grants
                        .beyond_verified
                        .saturating_sub(context::scale_ppm(grants.carried, down));
                    let bound = if cl.heartbeats == Some(0) {
                        let room = self.unattested_room.entry(id).or_default();
                        *room = room.saturating_add(own);
                        own
                    } else {
                        own.saturating_add(self.unattested_room.remove(&id).unwrap_or(0))
                    };
                    if let Some((drop, inputs)) = unattested::beyond_grants(unattested_bytes, bound)
                    {
                        book.fire(
                            RuleId::UnattestedBeyondGrants,
                            id,
                            inputs,
                            Verdict::DropBytes { bytes: drop },
                        );
                        unattested_bytes = bound;
                    }
                }
            }
            if penalized {
                // A penalized node earns nothing this epoch, nor later on its silent epochs.
                self.unattested_room.remove(&id);
                self.silent_reach.remove(&id);
                self.netting_left.remove(&id);
            }
            node_inputs.push(NodeEpochInput {
                node_id: id,
                operator: node.operator.clone(),
                subnet: node.subnet,
                verified_bytes: a.verified,
                // Scaled so that the formula's eligible × on-time share counts exactly the
                // credited bytes acknowledged on time: dropped sessions' punctuality must not
                // lift the rest.
                on_time_bytes: context::scale(
                    a.credited_on_time,
                    a.verified,
                    a.verified.saturating_sub(a.flagged),
                )
                .min(a.verified),
                // A penalized node earns nothing this epoch.
                flagged_bytes: if penalized {
                    a.verified
                } else {
                    a.flagged.min(a.verified)
                },
                availability_ppm: availability_by.availability_ppm(),
                unattested_bytes,
                probe_capacity_bytes: availability_by.capacity_bytes(obs.epoch_ms),
                probation_ppm,
            });
        }
        self.node_history
            .retain(|_, h| h.iter().any(|(e, ..)| *e >= oldest));
        self.claim_room.retain(|_, room| room.open_in(epoch));
        self.netting_left.retain(|_, (e, _)| *e >= epoch);
        for id in book.penalize.keys() {
            if let Some(node) = ctx.profiles.get(id) {
                self.penalized_prefixes.insert(node.subnet, epoch);
            }
        }
        if bounds.is_some() {
            self.apply_unattested_ratio(ctx, &mut node_inputs, book);
        }
        let penalties = book
            .penalize
            .iter()
            .filter_map(|(id, rule)| {
                let node = ctx.profiles.get(id)?;
                Some(PenaltyOrder {
                    node_id: *id,
                    amount: c.penalty.penalty(node.average_reward),
                    rule: rule.penalty_label().to_owned(),
                })
            })
            .collect();
        FraudReport {
            evidence: Vec::new(),
            node_inputs,
            penalties,
        }
    }

    /// Scales every node's unattested bytes down so the network's total (counted within probe
    /// capacity, as the reward formula counts it) is at most `unattested_ratio_ppm` of its
    /// credited attested bytes.
    fn apply_unattested_ratio(
        &self,
        ctx: &EpochContext<'_>,
        node_inputs: &mut [NodeEpochInput],
        book: &mut Book,
    ) {
        let counted = |n: &NodeEpochInput| n.unattested_bytes.min(n.probe_capacity_bytes);
        let total = node_inputs
            .iter()
            .fold(0u64, |t, n| t.saturating_add(counted(n)));
        let attested = node_inputs.iter().fold(0u64, |t, n| {
            t.saturating_add(n.verified_bytes.saturating_sub(n.flagged_bytes))
        });
        let Some((numerator, denominator)) = unattested::ratio_scale(ctx, total, attested) else {
            return;
        };
        for n in node_inputs.iter_mut() {
            let before = counted(n);
            let after = context::scale(before, numerator, denominator);
            if after < before {
                n.unattested_bytes = after;
                book.fire(
                    RuleId::UnattestedRatio,
                    n.node_id,
                    context::inputs([
                        ("network_unattested_bytes", total),
                        ("network_attested_bytes", attested),
                        ("ratio_ppm", ctx.config.unattested_ratio_ppm),
                    ]),
                    Verdict::DropBytes {
                        bytes: before - after,
                    },
                );
            }
        }
    }
}
