//! Bytes served to viewers that sent no receipt. They are bounded by what the grants the
//! coordinator issued to the node could carry (each grant's stream bitrate × its live time,
//! less what its receipts already verified; a grant of a viewer that signs, only its silence's
//! allowance beyond that), and the network's total by a ratio to its attested bytes. Probe
//! grants bound nothing: probe traffic is never paid. A node with no viewer grants can claim
//! none.

use std::collections::{BTreeMap, BTreeSet};

use super::context::{bytes_at, inputs, scale, EpochContext};
use super::{IssuedGrant, NodeClaims};
use crate::identity::NodeId;
use crate::ids::{SessionId, StreamId};
use crate::rewards::PPM;

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

/// What settlement nets out of a node's unattested claim in one epoch, and what is left of it
/// for the next (see [`net_unattested_carried`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Netted {
    /// The unattested bytes left to credit.
    pub unattested: u64,
    /// What was left of the netting pool: the next epoch's claims may use it.
    pub left: u64,
}

/// [`net_unattested`] over the epoch boundary, with the probe traffic no receipt acknowledged.
///
/// The node claims bytes in the heartbeat after it classified them: the receipts probes hand
/// it are claimed attested after the coordinator booked them by their signing time, and bytes
/// no receipt acknowledged are claimed unattested only after the receipt grace (so a probe's
/// unreceipted bytes often in the next epoch). The pool the claim is netted against is
/// therefore this epoch's credited bytes plus what the previous epoch's pool left (`carried`),
/// less the attested claim, plus `probe_traffic`: the bytes the coordinator's probes took from
/// the node that no receipt acknowledged (HTTP-FLV reads, playlists), which the node, unable
/// to tell a probe from a viewer, reports as unattested. What the unattested claim does not
/// use of the pool is left for the next epoch only. The pool is never smaller than
/// [`net_unattested`]'s, so nothing is ever credited beyond it, and probe traffic is never
/// paid.
pub(super) fn net_unattested_carried(
    claims: &NodeClaims,
    credited: u64,
    probe_traffic: u64,
    carried: u64,
) -> Netted {
    let pool = credited
        .saturating_add(carried)
        .saturating_sub(claims.claimed_bytes)
        .saturating_add(probe_traffic);
    let netted = claims.unattested_bytes.min(pool);
    Netted {
        unattested: claims.unattested_bytes - netted,
        left: pool - netted,
    }
}

/// What one node's viewer grants carried in the epoch.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GrantCarry {
    /// Their stream's bitrate × their live time, whatever receipts verified.
    pub carried: u64,
    /// The same less what each grant's receipts verified: the unattested bytes they allow.
    pub beyond_verified: u64,
}

/// Per node: what its viewer grants could carry, in all and beyond their verified bytes, or
/// `None` without a grant log.
///
/// A grant is live from its issue to its expiry (clipped to the epoch) however long its viewer
/// watched, so its carry is what it *could* have carried. For a player that cannot sign that is
/// all there is to go by. A viewer that signs says itself how long it watched: its node may
/// claim, beyond the grant's verified bytes, at most `signed_silence_seconds` of the stream (the
/// bytes served after its last receipt, or to a viewer that stopped signing and watched on,
/// which nothing verifies). A grant counts as signed when its session has verified bytes in
/// this epoch, was verified on the same node in an earlier one (`served`), or its viewer key
/// has verified bytes on any session of the epoch (a node handing in none of a signing
/// viewer's receipts does not make its grant a non-signing player's).
///
/// A signing viewer that went on to watch the same stream on another node while its grant here
/// was still live also says when its silence here ended: when it was granted that session. The
/// allowance is the silence up to then (at most `signed_silence_seconds`), so a node that goes
/// dark between the prober's rounds, its viewers moving on, cannot bill their silence as if
/// they had stayed.
pub(super) fn grant_bounds(
    ctx: &EpochContext<'_>,
    verified_by_session: &BTreeMap<SessionId, u64>,
    served: &BTreeMap<SessionId, (NodeId, u64)>,
) -> Option<BTreeMap<NodeId, GrantCarry>> {
    let grants: &Vec<IssuedGrant> = ctx.obs.grants.as_ref()?;
    let signing_keys: BTreeSet<_> = ctx
        .obs
        .sessions
        .iter()
        .filter(|s| s.bytes > 0 && !ctx.is_probe(s))
        .map(|s| s.viewer)
        .collect();
    let silence_seconds = ctx
        .config
        .signed_silence_seconds
        .min(ctx.obs.epoch_ms / 1_000);
    // Per session its newest receipt; per viewer when it was granted each session, where and
    // of which stream.
    let mut last_receipt: BTreeMap<SessionId, (u64, u64)> = BTreeMap::new();
    let mut granted: BTreeMap<_, Vec<(u64, NodeId, &StreamId)>> = BTreeMap::new();
    for s in ctx
        .obs
        .sessions
        .iter()
        .filter(|s| s.bytes > 0 && !ctx.is_probe(s))
    {
        let (started, last) = last_receipt
            .entry(s.session_id)
            .or_insert((s.started_ms, 0));
        *started = (*started).min(s.started_ms);
        *last = (*last).max(s.last_receipt_ms);
        granted
            .entry(s.viewer)
            .or_default()
            .push((s.started_ms, s.node_id, &s.stream_id));
    }
    // How long the viewer of `g` was silent before it was granted a session of the same stream
    // on another node while `g` was live, if it was.
    let silent_until_moved = |g: &IssuedGrant| -> Option<u64> {
        let (started, last) = *last_receipt.get(&g.session_id)?;
        let expiry = started.saturating_add(g.live_ms);
        granted
            .get(&g.viewer)?
            .iter()
            .filter(|(moved, node, stream)| {
                *node != g.node_id && **stream == g.stream_id && (last..expiry).contains(moved)
            })
            .map(|(moved, _, _)| moved - last)
            .min()
    };
    let mut out: BTreeMap<NodeId, GrantCarry> = BTreeMap::new();
    // Relay edges are paid on their children's receipts only: a grant harvested for a stream
    // the child never pulls must not carry unattested credit.
    let edge = |g: &&IssuedGrant| super::relay::relay_child(ctx, &g.viewer).is_some();
    for g in grants.iter().filter(|g| !g.probe).filter(|g| !edge(g)) {
        let bitrate = ctx.bitrate(&g.stream_id);
        let carried = bytes_at(bitrate, g.live_ms);
        let verified = verified_by_session.get(&g.session_id).copied().unwrap_or(0);
        let signed = verified > 0
            || served
                .get(&g.session_id)
                .is_some_and(|(node, _)| *node == g.node_id)
            || signing_keys.contains(&g.viewer);
        let mut beyond = carried.saturating_sub(verified);
        if signed {
            let silence_ms = silence_seconds.saturating_mul(1_000);
            let silence_ms = silent_until_moved(g).map_or(silence_ms, |ms| ms.min(silence_ms));
            beyond = beyond.min(bytes_at(bitrate, silence_ms));
        }
        let node = out.entry(g.node_id).or_default();
        node.carried = node.carried.saturating_add(carried);
        node.beyond_verified = node.beyond_verified.saturating_add(beyond);
    }
    Some(out)
}

/// UnattestedBeyondGrants: the node's unattested bytes above its grant bound, if any.
pub(super) fn beyond_grants(claimed: u64, bound: u64) -> Option<(u64, BTreeMap<String, u64>)> {
    (claimed > bound).then(|| {
        (
            claimed - bound,
            inputs([("unattested_bytes", claimed), ("grant_bound", bound)]),
        )
    })
}

/// UnattestedRatio: the factor (numerator, denominator) every node's unattested bytes are
/// scaled by so that their total is at most `unattested_ratio_ppm` of the credited attested
/// bytes; `None` when the total is within the ratio.
pub(super) fn ratio_scale(ctx: &EpochContext<'_>, total: u64, attested: u64) -> Option<(u64, u64)> {
    let allowed = scale(attested, ctx.config.unattested_ratio_ppm, PPM);
    (total > allowed).then_some((allowed, total))
}
