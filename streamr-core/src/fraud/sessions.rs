//! Rules on viewer sessions: over-bitrate receipts, self-dealing, bots, collusion and the
//! per-viewer cap. Apart from self-dealing (a viewer in the node's own prefix or operator),
//! these judge what a viewer did: they drop that viewer's bytes and never count against the
//! node, so hostile viewers cannot frame an honest node with them.

use std::collections::{BTreeMap, BTreeSet};

use super::context::{bytes_at, inputs, scale, scale_ppm, Book, CapGroup, Credit, EpochContext};
use super::RuleId;
use crate::identity::ViewerKey;
use crate::ids::OperatorId;
use crate::probes::ProbeSummary;
use crate::rewards::PPM;
use crate::verifier::SessionUsage;

/// Sessions of a viewer the collusion test looks at, newest first (bounds `C(k, x)` in `u128`).
pub(super) const MAX_COLLUSION_SESSIONS: usize = 60;
/// Fewest sessions on one operator before the collusion test judges a viewer.
const COLLUSION_MIN_SESSIONS: u64 = 3;

/// The rule that drops a whole session, with its inputs.
pub(super) type SessionVerdict = (RuleId, BTreeMap<String, u64>);

/// OverBitrate: the session acknowledged more than its stream's measured bitrate allows for
/// its duration (with headroom and a player's initial burst).
pub(super) fn over_bitrate(ctx: &EpochContext<'_>, s: &SessionUsage) -> Option<SessionVerdict> {
    let c = ctx.config;
    let bitrate = ctx.bitrate(&s.stream_id);
    let duration_ms = s.last_receipt_ms.saturating_sub(s.started_ms);
    let allowed = scale_ppm(bytes_at(bitrate, duration_ms), c.bitrate_headroom_ppm)
        .saturating_add(bitrate.saturating_mul(c.bitrate_burst_seconds));
    (s.bytes_total > allowed).then(|| {
        (
            RuleId::OverBitrate,
            inputs([
                ("bytes_total", s.bytes_total),
                ("bitrate", bitrate),
                ("duration_ms", duration_ms),
                ("allowed", allowed),
            ]),
        )
    })
}

/// SelfDealing: the viewer is in the node's /24 or linked to its operator. The node's own
/// doing (it is the node's prefix or operator), so these bytes count as tainted.
pub(super) fn self_dealing(ctx: &EpochContext<'_>, s: &SessionUsage) -> Option<SessionVerdict> {
    let node = ctx.profiles.get(&s.node_id)?;
    let viewer = ctx.viewers.get(&s.viewer)?;
    let same_subnet = viewer.subnet == node.subnet;
    let same_operator = viewer.operator.as_ref() == Some(&node.operator);
    (same_subnet || same_operator).then(|| {
        (
            RuleId::SelfDealing,
            inputs([
                ("same_subnet", u64::from(same_subnet)),
                ("same_operator", u64::from(same_operator)),
            ]),
        )
    })
}

/// Viewers with many times the median sessions or bytes (and at least `bot_min_sessions`).
pub(super) fn bots(
    ctx: &EpochContext<'_>,
    per_viewer: &BTreeMap<ViewerKey, (u64, u64)>,
) -> (BTreeSet<ViewerKey>, u64, u64) {
    let c = ctx.config;
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let median_sessions = median(per_viewer.values().map(|v| v.0).collect());
    let median_bytes = median(per_viewer.values().map(|v| v.1).collect());
    let bots = per_viewer
        .iter()
        .filter(|(_, (sessions, bytes))| {
            *sessions >= c.bot_min_sessions
                && (*sessions > median_sessions.saturating_mul(c.bot_factor)
                    || *bytes > median_bytes.saturating_mul(c.bot_factor))
        })
        .map(|(v, _)| *v)
        .collect();
    (bots, median_sessions, median_bytes)
}

/// BotViewer: the session's viewer is one of `bots`.
pub(super) fn bot_viewer(
    s: &SessionUsage,
    bots: &(BTreeSet<ViewerKey>, u64, u64),
    per_viewer: &BTreeMap<ViewerKey, (u64, u64)>,
) -> Option<SessionVerdict> {
    let (set, median_sessions, median_bytes) = bots;
    set.contains(&s.viewer).then(|| {
        let (sessions, bytes) = per_viewer.get(&s.viewer).copied().unwrap_or((0, 0));
        (
            RuleId::BotViewer,
            inputs([
                ("viewer_sessions", sessions),
                ("median_sessions", *median_sessions),
                ("viewer_bytes", bytes),
                ("median_bytes", *median_bytes),
            ]),
        )
    })
}

/// Whether `operators × C(k, hits) × share^hits` — a union bound on the chance that routing sent
/// at least `hits` of `k` sessions to an operator with route share `share_ppm`, for any of the
/// operators — is below `p_value_ppm`. Integer arithmetic (scaled by PPM²), so every platform
/// decides alike.
pub(super) fn collusion_chance_below(
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

/// Each operator's expected share of routed sessions, ppm, for the collusion test: its share of
/// the routing weight of the nodes that served the epoch, as routing weighs them
/// ([`crate::Router`]: availability, at least `newcomer_floor_ppm`). A node that passed none of
/// the epoch's probes weighs as a fully available one if it served viewers verified bytes in
/// the epoch (routing sent them there; a probe it failed under load, or none in a short epoch,
/// does not say how often: no node weighs more by failing probes than by passing them), else
/// nothing. `nodes` lists every registered node's operator, its probe
/// summary for the epoch and whether it served viewers verified bytes; where no node weighs
/// anything (the prober did not run, nothing was served), every listed node weighs alike.
///
/// Registered nodes that serve nothing are offered no viewers, so they must not count: with
/// every registered node counted, an operator registering idle nodes by the hundred (keys and
/// registrations are free) raised its route share until no viewer concentrating on its
/// serving nodes looked unlikely, and the collusion rule never fired for it. And counting
/// serving nodes alike understated a well-available operator's share, so honest viewers who
/// routing sent there more often than to others looked like colluders (see the reward-split
/// scenarios and the outage runs of the simulator's targets).
pub fn operator_route_shares<'a>(
    nodes: impl IntoIterator<Item = (&'a OperatorId, Option<&'a ProbeSummary>, bool)>,
    newcomer_floor_ppm: u64,
) -> Vec<(OperatorId, u64)> {
    let weights: Vec<(&OperatorId, u64)> = nodes
        .into_iter()
        .map(|(operator, probes, served)| {
            let weight = match probes.filter(|p| p.passed > 0) {
                Some(p) => p.availability_ppm().max(newcomer_floor_ppm).max(1),
                None if served => PPM,
                None => 0,
            };
            (operator, weight)
        })
        .collect();
    let any_served = weights.iter().any(|(_, w)| *w > 0);
    let mut per_operator: BTreeMap<&OperatorId, u64> = BTreeMap::new();
    let mut total = 0u64;
    for (operator, weight) in weights {
        let weight = if any_served { weight } else { 1 };
        let sum = per_operator.entry(operator).or_default();
        *sum = sum.saturating_add(weight);
        total = total.saturating_add(weight);
    }
    per_operator
        .into_iter()
        .map(|(operator, weight)| {
            let share = (u128::from(weight) * u128::from(PPM))
                .checked_div(u128::from(total))
                .map_or(0, |v| u64::try_from(v).unwrap_or(PPM));
            (operator.clone(), share)
        })
        .collect()
}

/// Viewers whose sessions in the history window concentrate on one operator far beyond what
/// routing offers that operator (its route share), with the operator they favour.
pub(super) fn colluders(
    ctx: &EpochContext<'_>,
    history: &BTreeMap<ViewerKey, Vec<(u64, &OperatorId)>>,
) -> BTreeMap<ViewerKey, OperatorId> {
    let c = ctx.config;
    let operator_count = ctx.route_share.len().max(1) as u128;
    let mut out = BTreeMap::new();
    for (viewer, sessions) in history {
        let recent = sessions
            .get(sessions.len().saturating_sub(MAX_COLLUSION_SESSIONS)..)
            .unwrap_or_default();
        let mut counts: BTreeMap<&OperatorId, u64> = BTreeMap::new();
        for (_, operator) in recent {
            *counts.entry(*operator).or_default() += 1;
        }
        // The operator this viewer used most in the window (ties to the lower id).
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
        let share = ctx.route_share.get(operator).copied().unwrap_or(PPM);
        if collusion_chance_below(
            recent.len() as u64,
            hits,
            share,
            operator_count,
            c.collusion_p_value_ppm,
        ) {
            out.insert(*viewer, operator.clone());
        }
    }
    out
}

/// Collusion: the session's viewer concentrates on the session's operator (see [`colluders`]).
/// A framer looks exactly like a colluder, so this only drops the viewer's bytes.
pub(super) fn collusion(
    ctx: &EpochContext<'_>,
    s: &SessionUsage,
    colluders: &BTreeMap<ViewerKey, OperatorId>,
    history: &BTreeMap<ViewerKey, Vec<(u64, &OperatorId)>>,
) -> Option<SessionVerdict> {
    let node = ctx.profiles.get(&s.node_id)?;
    if colluders.get(&s.viewer) != Some(&node.operator) {
        return None;
    }
    let h = history.get(&s.viewer);
    let window = h.map_or(0, Vec::len) as u64;
    let on_operator = h.map_or(0, |h| {
        h.iter().filter(|(_, o)| **o == node.operator).count()
    }) as u64;
    let share = ctx.route_share.get(&node.operator).copied().unwrap_or(0);
    Some((
        RuleId::Collusion,
        inputs([
            ("window_sessions", window),
            ("sessions_on_operator", on_operator),
            ("route_share_ppm", share),
        ]),
    ))
}

/// ViewerCap: one viewer's credited bytes in an epoch count up to `viewer_cap_streams` streams
/// at the measured bitrate of the streams it watched, for the whole epoch and for the spans
/// before it that its sessions' first receipts in the epoch cover (see [`CapGroup`]); the
/// excess is dropped from each of its sessions in proportion.
pub(super) fn viewer_cap(ctx: &EpochContext<'_>, credits: &mut [Credit<'_>], book: &mut Book) {
    let mut groups: BTreeMap<ViewerKey, CapGroup> = BTreeMap::new();
    for cr in credits.iter() {
        groups.entry(cr.session.viewer).or_default().add(ctx, cr);
    }
    for cr in credits.iter_mut() {
        let group = groups.get(&cr.session.viewer).copied().unwrap_or_default();
        let (total, cap) = (group.bytes, group.cap(ctx, ctx.config.viewer_cap_streams));
        if total <= cap {
            continue;
        }
        let drop = scale(cr.bytes, total - cap, total).min(cr.bytes);
        cr.bytes -= drop;
        book.drop_part(
            RuleId::ViewerCap,
            cr.session.node_id,
            cr.session.viewer,
            drop,
        );
    }
}
