//! What every rule looks at (the epoch's observations, indexed) and where rules write (the
//! evidence book and per-node totals).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    EpochObservations, Evidence, FraudConfig, NodeProfile, RuleId, Verdict, ViewerProfile,
};
use crate::identity::{NodeId, ViewerKey};
use crate::ids::{NetPrefix, OperatorId, SessionId, StreamId};
use crate::rewards::PPM;
use crate::verifier::SessionUsage;

/// Named inputs of an evidence record.
pub(super) fn inputs<const N: usize>(pairs: [(&str, u64); N]) -> BTreeMap<String, u64> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `part / whole` in ppm; 0 when `whole` is 0.
pub(super) fn ppm_of(part: u64, whole: u64) -> u64 {
    (u128::from(part) * u128::from(PPM))
        .checked_div(u128::from(whole))
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// `value × ppm / PPM`, saturating.
pub(super) fn scale_ppm(value: u64, ppm: u64) -> u64 {
    u64::try_from(u128::from(value) * u128::from(ppm) / u128::from(PPM)).unwrap_or(u64::MAX)
}

/// `value × numerator / denominator` (0 when the denominator is 0), saturating.
pub(super) fn scale(value: u64, numerator: u64, denominator: u64) -> u64 {
    (u128::from(value) * u128::from(numerator))
        .checked_div(u128::from(denominator))
        .map_or(0, |v| u64::try_from(v).unwrap_or(u64::MAX))
}

/// Bytes a stream of `bitrate` bytes/s carries in `ms` milliseconds.
pub(super) fn bytes_at(bitrate: u64, ms: u64) -> u64 {
    scale(bitrate, ms, 1_000)
}

/// What one group of sessions (a viewer's, a source prefix's) was credited in the epoch, and
/// the room a per-epoch cap of so many streams gives it.
///
/// A session's first receipt after a coordinator outage covers every byte since its previous
/// receipt, and is booked to the epoch it arrives in: its bytes cover its uncredited span
/// before the epoch too. The cap therefore grows by what the group's sessions carried in
/// those spans — each session's at most its own stream (with the bitrate headroom) over its
/// own span, and the group's at most the cap's streams over the longest span — and never by
/// more than those sessions' credit. A span ends at a receipt booked in an earlier epoch, so
/// no span is counted twice; a session holding its receipts back gains nothing it could not
/// have been credited on time, and its total stays bounded by `OverBitrate`.
#[derive(Clone, Copy, Default)]
pub(super) struct CapGroup {
    /// Bytes credited so far.
    pub bytes: u64,
    /// The highest bitrate among the group's streams.
    pub bitrate: u64,
    /// Of `bytes`, what covers the sessions' uncredited spans before the epoch.
    pub backlog: u64,
    /// The longest such span, ms.
    pub longest_span_ms: u64,
}

impl CapGroup {
    /// Adds one credit.
    pub fn add(&mut self, ctx: &EpochContext<'_>, cr: &Credit<'_>) {
        let bitrate = ctx.bitrate(&cr.session.stream_id);
        let span_ms = uncredited_span_ms(ctx, cr.session);
        let carried = scale_ppm(bytes_at(bitrate, span_ms), ctx.config.bitrate_headroom_ppm);
        self.bytes = self.bytes.saturating_add(cr.bytes);
        self.bitrate = self.bitrate.max(bitrate);
        self.backlog = self.backlog.saturating_add(cr.bytes.min(carried));
        self.longest_span_ms = self.longest_span_ms.max(span_ms);
    }

    /// The bytes `streams` streams allow: for the epoch, plus the backlog of the spans before.
    pub fn cap(&self, ctx: &EpochContext<'_>, streams: u64) -> u64 {
        let backlog_room = self
            .backlog
            .min(bytes_at(self.bitrate, self.longest_span_ms).saturating_mul(streams));
        bytes_at(self.bitrate, ctx.obs.epoch_ms)
            .saturating_mul(streams)
            .saturating_add(backlog_room)
    }
}

/// How long before the epoch the session's credited bytes reach back, ms: the span from its
/// previous receipt (or grant start) to its newest receipt, less one epoch. 0 for sessions
/// whose span was not recorded (observations published before it was).
pub(super) fn uncredited_span_ms(ctx: &EpochContext<'_>, s: &SessionUsage) -> u64 {
    s.covers_from_ms.map_or(0, |from| {
        s.last_receipt_ms
            .saturating_sub(from)
            .saturating_sub(ctx.obs.epoch_ms)
    })
}

/// One epoch's observations, indexed for the rules.
pub(super) struct EpochContext<'a> {
    pub config: &'a FraudConfig,
    pub obs: &'a EpochObservations,
    pub profiles: BTreeMap<NodeId, &'a NodeProfile>,
    pub viewers: BTreeMap<ViewerKey, &'a ViewerProfile>,
    /// Per stream, the bitrate the rules use: measured from receipts, at most the declared one.
    pub bitrates: BTreeMap<StreamId, u64>,
    /// The highest of `bitrates` (for sessions of unknown streams).
    pub max_bitrate: u64,
    pub route_share: BTreeMap<OperatorId, u64>,
    /// Sessions of coordinator probes: verified, never paid.
    pub probe_sessions: BTreeSet<SessionId>,
}

impl<'a> EpochContext<'a> {
    pub fn new(config: &'a FraudConfig, obs: &'a EpochObservations) -> Self {
        let probe_sessions: BTreeSet<SessionId> = obs
            .grants
            .iter()
            .flatten()
            .filter(|g| g.probe)
            .map(|g| g.session_id)
            .collect();
        let bitrates = measured_bitrates(config, obs, &probe_sessions);
        let max_bitrate = bitrates.values().copied().max().unwrap_or(0);
        Self {
            config,
            obs,
            profiles: obs.nodes.iter().map(|n| (n.node_id, n)).collect(),
            viewers: obs.viewers.iter().map(|v| (v.viewer, v)).collect(),
            bitrates,
            max_bitrate,
            route_share: obs.operator_route_share_ppm.iter().cloned().collect(),
            probe_sessions,
        }
    }

    /// The bitrate the rules use for `stream`.
    pub fn bitrate(&self, stream: &StreamId) -> u64 {
        self.bitrates
            .get(stream)
            .copied()
            .unwrap_or(self.max_bitrate)
    }

    /// Whether `session` was a coordinator probe.
    pub fn is_probe(&self, session: &SessionUsage) -> bool {
        self.probe_sessions.contains(&session.session_id)
    }
}

/// Per stream: the median rate (`bytes_total / duration`) of the epoch's viewer sessions that
/// lasted at least `bitrate_min_session_ms`, never above the declared bitrate; the declared
/// bitrate where no session qualifies. A grant's byte ceiling is far above what a stream
/// carries; receipts say what it really carries, and a minority of inflated receipts cannot
/// move a median.
///
/// Each viewer source prefix has one vote: the median of its own sessions' rates. Keys and
/// sessions are free, prefixes are not: counted per session, one /24 of bots signing for a
/// third of the bitrate in more one-minute sessions than the stream had honest ones pulled the
/// median down until every honest session was over-bitrate (see the reward-split scenarios).
fn measured_bitrates(
    config: &FraudConfig,
    obs: &EpochObservations,
    probes: &BTreeSet<SessionId>,
) -> BTreeMap<StreamId, u64> {
    let mut rates: BTreeMap<&StreamId, BTreeMap<Option<NetPrefix>, Vec<u64>>> = BTreeMap::new();
    let node_keys: BTreeSet<&[u8; 32]> = obs.nodes.iter().map(|n| n.node_id.as_bytes()).collect();
    let prefixes: BTreeMap<&ViewerKey, NetPrefix> =
        obs.viewers.iter().map(|v| (&v.viewer, v.subnet)).collect();
    for s in &obs.sessions {
        let duration_ms = s.last_receipt_ms.saturating_sub(s.started_ms);
        // Relay edges (a node's key as the viewer) are left out: colluding relays must not
        // move the bitrate every bound uses.
        let relay_edge = node_keys.contains(s.viewer.as_bytes());
        if duration_ms < config.bitrate_min_session_ms.max(1)
            || probes.contains(&s.session_id)
            || relay_edge
        {
            continue;
        }
        rates
            .entry(&s.stream_id)
            .or_default()
            .entry(prefixes.get(&s.viewer).copied())
            .or_default()
            .push(scale(s.bytes_total, 1_000, duration_ms));
    }
    let median = |mut samples: Vec<u64>| {
        samples.sort_unstable();
        samples.get(samples.len() / 2).copied()
    };
    let mut out: BTreeMap<StreamId, u64> = obs.bitrates.iter().cloned().collect();
    for (stream, per_prefix) in rates {
        let Some(median) = median(per_prefix.into_values().filter_map(median).collect()) else {
            continue;
        };
        let declared = out.get(stream).copied().unwrap_or(u64::MAX);
        out.insert(stream.clone(), median.min(declared));
    }
    out
}

/// A node's running totals for the epoch.
#[derive(Clone, Default)]
pub(super) struct NodeAcc {
    /// Verified bytes of viewer sessions (probes excluded).
    pub verified: u64,
    /// Of which on time.
    pub on_time: u64,
    /// On-time bytes of what the session rules left credited.
    pub credited_on_time: u64,
    /// Verified bytes of probe sessions.
    pub probe_bytes: u64,
    /// Viewer sessions with verified bytes.
    pub sessions: u64,
    /// Σ over those sessions of their stream's bitrate (for the claim slack).
    pub session_bitrates: u64,
    /// Bytes the rules dropped.
    pub flagged: u64,
    /// Bytes from viewers in the node's own prefix or operator.
    pub tainted: u64,
}

/// Where the rules write: evidence, per-node totals, penalties.
#[derive(Default)]
pub(super) struct Book {
    pub epoch: u64,
    pub evidence: Vec<Evidence>,
    pub acc: BTreeMap<NodeId, NodeAcc>,
    pub penalize: BTreeMap<NodeId, RuleId>,
    /// Partial drops, summed per node and rule and written as one evidence record each.
    partial: BTreeMap<(NodeId, RuleId), PartialDrop>,
}

#[derive(Default)]
struct PartialDrop {
    bytes: u64,
    sessions: u64,
    viewers: BTreeSet<ViewerKey>,
}

impl Book {
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    pub fn acc(&mut self, node: NodeId) -> &mut NodeAcc {
        self.acc.entry(node).or_default()
    }

    /// Books a session into its node's totals: its verified and on-time bytes, one session,
    /// and its stream's bitrate (for the claim slack).
    pub fn book(&mut self, ctx: &EpochContext<'_>, session: &SessionUsage) {
        let bitrate = ctx.bitrate(&session.stream_id);
        let a = self.acc(session.node_id);
        a.verified = a.verified.saturating_add(session.bytes);
        a.on_time = a.on_time.saturating_add(session.on_time_bytes);
        a.sessions += 1;
        a.session_bitrates = a.session_bitrates.saturating_add(bitrate);
    }

    pub fn fire(
        &mut self,
        rule: RuleId,
        node_id: NodeId,
        inputs: BTreeMap<String, u64>,
        verdict: Verdict,
    ) {
        self.evidence.push(Evidence {
            epoch: self.epoch,
            rule,
            node_id,
            inputs,
            verdict,
        });
    }

    /// Fires a penalizing rule: the node's epoch is lost and a penalty ordered (the first rule
    /// that fired names it).
    pub fn penalize(&mut self, rule: RuleId, node_id: NodeId, inputs: BTreeMap<String, u64>) {
        let bytes = self.acc.get(&node_id).map_or(0, |a| a.verified);
        self.fire(rule, node_id, inputs, Verdict::Penalize { bytes });
        self.penalize.entry(node_id).or_insert(rule);
    }

    /// Drops `bytes` of one viewer session on `node` under `rule`; summed into one record per
    /// node and rule by [`Book::flush_partial`].
    pub fn drop_part(&mut self, rule: RuleId, node: NodeId, viewer: ViewerKey, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let a = self.acc(node);
        a.flagged = a.flagged.saturating_add(bytes);
        let p = self.partial.entry((node, rule)).or_default();
        p.bytes = p.bytes.saturating_add(bytes);
        p.sessions += 1;
        p.viewers.insert(viewer);
    }

    /// Writes the summed partial drops as evidence.
    pub fn flush_partial(&mut self) {
        for ((node, rule), p) in std::mem::take(&mut self.partial) {
            self.fire(
                rule,
                node,
                inputs([
                    ("dropped_bytes", p.bytes),
                    ("sessions", p.sessions),
                    ("viewers", p.viewers.len() as u64),
                ]),
                Verdict::DropBytes { bytes: p.bytes },
            );
        }
    }
}

/// A session the per-session rules let through, with the bytes it may still earn.
pub(super) struct Credit<'a> {
    pub session: &'a SessionUsage,
    pub bytes: u64,
}

/// Per viewer key: sessions and verified bytes this epoch (probes excluded).
pub(super) fn per_viewer(sessions: &[&SessionUsage]) -> BTreeMap<ViewerKey, (u64, u64)> {
    let mut out: BTreeMap<ViewerKey, (u64, u64)> = BTreeMap::new();
    for s in sessions {
        let e = out.entry(s.viewer).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(s.bytes);
    }
    out
}
