//! Rules on what a node itself reported and handed in: its attested claim against its verified
//! bytes, the receipts it submitted, and probes of its content while it claims traffic. These
//! are the node's own doing and penalize it.

use std::collections::BTreeMap;

use super::context::{bytes_at, inputs, ppm_of, scale_ppm, EpochContext, NodeAcc};
use super::{FraudConfig, IssuedGrant, NodeClaims, RuleId};
use crate::identity::NodeId;
use crate::ids::SessionId;
use crate::probes::ProbeSummary;

/// A penalizing rule's finding.
pub(super) type Finding = (RuleId, BTreeMap<String, u64>);

/// What a node may claim attested in an epoch on this epoch's evidence: the verified bytes
/// (probe sessions included: the node served them) plus the tolerance plus, per session, a
/// slack of its stream's measured bitrate for `claim_slack_seconds_per_session` (receipts lost
/// or not yet sent), never longer than the epoch: no session serves more within one, and what
/// trails into the next is the carried room's (see [`claims_exceed_receipts`]). Sessions the
/// node claims but no receipt verified get the slack of the highest measured bitrate. Where the
/// node's grants say more, they decide instead: each of its granted sessions verified in an
/// earlier epoch but by no receipt in this one allows what its stream carries while the grant
/// was live in the epoch, plus the slack (`unreceipted_grants`, from
/// [`unreceipted_grant_allowance`]).
pub(super) fn claim_allowance(
    c: &FraudConfig,
    claim: &NodeClaims,
    a: &NodeAcc,
    max_bitrate: u64,
    unreceipted_grants: u64,
    epoch_ms: u64,
) -> u64 {
    let verified = a.verified.saturating_add(a.probe_bytes);
    let slack_seconds = c.claim_slack_seconds_per_session.min(epoch_ms / 1_000);
    let unverified_sessions = claim.sessions.saturating_sub(a.sessions);
    let unverified = unverified_sessions
        .saturating_mul(max_bitrate)
        .saturating_mul(slack_seconds)
        .max(unreceipted_grants);
    let slack = a
        .session_bitrates
        .saturating_mul(slack_seconds)
        .saturating_add(unverified);
    verified
        .saturating_add(scale_ppm(verified, c.claim_tolerance_ppm))
        .saturating_add(slack)
}

/// ClaimsExceedReceipts: the attested claim exceeds the epoch's [`claim_allowance`] plus
/// `carried`, what the node left unclaimed of the previous epoch's allowance (of every epoch
/// since its last heartbeat, when a coordinator outage kept it from claiming). A receipt is
/// booked to the epoch its viewer signed it in, while the node claims its bytes in the
/// heartbeat after it got it: a session's last receipts before an epoch's end are claimed in
/// the next epoch, where the session (ended, or silent) may have no receipt and no grant at
/// all. A viewer that signs late, across the epoch's end, or stops signing (an origin restart
/// holding its verification back, a griefer) leaves what the node served it claimed without a
/// receipt, and that must not make an honest node a cheat.
pub(super) fn claims_exceed_receipts(
    claim: &NodeClaims,
    a: &NodeAcc,
    allowance: u64,
    carried: u64,
) -> Option<Finding> {
    let allowed = allowance.saturating_add(carried);
    (claim.claimed_bytes > allowed).then(|| {
        (
            RuleId::ClaimsExceedReceipts,
            inputs([
                ("claimed_bytes", claim.claimed_bytes),
                ("verified_bytes", a.verified.saturating_add(a.probe_bytes)),
                ("allowed", allowed),
                ("carried_from_previous_epoch", carried),
            ]),
        )
    })
}

/// Per node: what it may claim for its granted sessions that receipts verified in an earlier
/// epoch but not in this one (the viewer's receipts come late, or it went silent): each, its
/// stream's bitrate over the grant's live time in the epoch and over
/// `claim_slack_seconds_per_session` (at most the epoch's length). `served` holds the sessions
/// verified before, with their node; a grant on which nothing was ever verified (a node that
/// serves nothing) allows nothing. Empty without a grant log.
pub(super) fn unreceipted_grant_allowance(
    ctx: &EpochContext<'_>,
    verified_by_session: &BTreeMap<SessionId, u64>,
    served: &BTreeMap<SessionId, (NodeId, u64)>,
) -> BTreeMap<NodeId, u64> {
    // No session is silent for longer than the epoch within it (as in `claim_allowance`).
    let slack_seconds = ctx
        .config
        .claim_slack_seconds_per_session
        .min(ctx.obs.epoch_ms / 1_000);
    let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
    let unreceipted = |g: &&IssuedGrant| {
        !g.probe
            && verified_by_session.get(&g.session_id).copied().unwrap_or(0) == 0
            && served
                .get(&g.session_id)
                .is_some_and(|(node, _)| *node == g.node_id)
    };
    for g in ctx.obs.grants.iter().flatten().filter(unreceipted) {
        let bitrate = ctx.bitrate(&g.stream_id);
        let allowed =
            bytes_at(bitrate, g.live_ms).saturating_add(bitrate.saturating_mul(slack_seconds));
        let sum = out.entry(g.node_id).or_default();
        *sum = sum.saturating_add(allowed);
    }
    out
}

/// ReceiptsBeyondGrant: the node handed in receipts beyond their grant's byte limit.
pub(super) fn receipts_beyond_grant(claim: &NodeClaims) -> Option<Finding> {
    (claim.receipts.beyond_grant > 0).then(|| {
        (
            RuleId::ReceiptsBeyondGrant,
            inputs([("beyond_grant", claim.receipts.beyond_grant)]),
        )
    })
}

/// ForgedReceipts: the node handed in forged or replayed receipts.
pub(super) fn forged_receipts(claim: &NodeClaims) -> Option<Finding> {
    let r = &claim.receipts;
    (r.forged + r.replayed > 0).then(|| {
        (
            RuleId::ForgedReceipts,
            inputs([
                ("forged", r.forged),
                ("replayed", r.replayed),
                ("submitted", r.submitted),
            ]),
        )
    })
}

/// WrongContent: too many receipts the node handed in acknowledge wrong or stale content.
pub(super) fn wrong_content(c: &FraudConfig, claim: &NodeClaims) -> Option<Finding> {
    let r = &claim.receipts;
    (ppm_of(r.wrong_content, r.submitted) > c.wrong_content_ppm).then(|| {
        (
            RuleId::WrongContent,
            inputs([
                ("wrong_content", r.wrong_content),
                ("submitted", r.submitted),
            ]),
        )
    })
}

/// Points of availability (ppm) allowed for the sampling error of a node's probes where what it
/// could serve is judged by the share of the epoch they found it up.
pub(super) const AVAILABILITY_MARGIN_PPM: u64 = 200_000;

/// The share of an epoch a node counts as up for what it could serve, ppm: its availability
/// plus [`AVAILABILITY_MARGIN_PPM`], at most the whole epoch.
pub(super) fn up_share_ppm(probe: &ProbeSummary) -> u64 {
    probe
        .availability_ppm()
        .saturating_add(AVAILABILITY_MARGIN_PPM)
        .min(crate::rewards::PPM)
}

/// ProbeFailuresWhileServing: the coordinator's probes got wrong content from the node while it
/// claims traffic, or most of them timed out while it claims more than its receipts verified
/// (what it claims attested beyond them, and its unattested bytes) than it could have served in
/// the share of the epoch its probes passed (plus 20 points for the sample's error): of
/// `servable`, the most the node could serve in the whole epoch (what its viewer grants carry
/// over their live time, or its probes' measured capacity, whichever is more). Being
/// unreachable is no fraud in itself: availability already scales the node's weight. An honest
/// node down for most of an epoch (a restart, a move) still serves its viewers the rest of it;
/// a node that claims traffic while nothing reached it does not. Receipts of earlier epochs
/// back the claim too, as far as they left room (`carried`, as [`claims_exceed_receipts`]).
///
/// A node's first heartbeat after a coordinator outage claims what it served through it (the
/// tails of sessions that ended then, unattested when their viewers could sign nothing), which
/// this epoch's probes say nothing about: `silent_reach`, what it could have served in the
/// outage epochs it sent no heartbeat in, as its last probes measured it (the same up share of
/// what it could serve), is reachable too. A node that failed its probes before the outage
/// reaches little there, as here.
pub(super) fn probe_failures_while_serving(
    c: &FraudConfig,
    claim: &NodeClaims,
    a: &NodeAcc,
    probe: &ProbeSummary,
    servable: u64,
    carried: u64,
    silent_reach: u64,
) -> Option<Finding> {
    let claims_traffic = claim.claimed_bytes > 0 || claim.unattested_bytes > 0;
    let failures = probe.hash_failures + probe.timeouts;
    let verified = a.verified.saturating_add(a.probe_bytes);
    let backed = verified
        .saturating_add(scale_ppm(verified, c.claim_tolerance_ppm))
        .saturating_add(carried);
    let unbacked = claim
        .claimed_bytes
        .saturating_sub(backed)
        .saturating_add(claim.unattested_bytes);
    let reachable = scale_ppm(servable, up_share_ppm(probe)).saturating_add(silent_reach);
    let mostly_failing = ppm_of(failures, probe.total) > c.probe_failure_ppm;
    let wrong_content = claims_traffic && probe.hash_failures > 0;
    (wrong_content || (mostly_failing && unbacked > reachable)).then(|| {
        (
            RuleId::ProbeFailuresWhileServing,
            inputs([
                ("probes", probe.total),
                ("hash_failures", probe.hash_failures),
                ("timeouts", probe.timeouts),
                ("claimed_bytes", claim.claimed_bytes),
                ("unattested_bytes", claim.unattested_bytes),
                ("unbacked_bytes", unbacked),
                ("reachable_bytes", reachable),
                ("silent_reach_bytes", silent_reach),
            ]),
        )
    })
}
