//! Rules on a node as a whole: its viewers' lateness while probes pass, traffic from its own
//! prefix or operator, crowded prefixes, and probation for new (or returning) identities.

use std::collections::BTreeMap;

use super::claims::Finding;
use super::context::{inputs, ppm_of, NodeAcc};
use super::{FraudConfig, NodeProfile, RuleId};
use crate::identity::NodeId;
use crate::ids::NetPrefix;
use crate::probes::ProbeSummary;
use crate::rewards::PPM;

/// Per node: (epoch, verified bytes, on-time bytes, sessions) in the window.
pub(super) type NodeHistory = BTreeMap<NodeId, Vec<(u64, u64, u64, u64)>>;

/// QualityGap: probes pass but, over the history window (once enough sessions were seen; one
/// epoch of two lossy viewers says little), most of the node's bytes reached viewers late.
pub(super) fn quality_gap(
    c: &FraudConfig,
    history: &[(u64, u64, u64, u64)],
    a: &NodeAcc,
    probe: &ProbeSummary,
) -> Option<Finding> {
    let (verified, on_time, sessions) = history.iter().fold((0u64, 0u64, 0u64), |acc, h| {
        (
            acc.0.saturating_add(h.1),
            acc.1.saturating_add(h.2),
            acc.2.saturating_add(h.3),
        )
    });
    let on_time_ppm = ppm_of(on_time, verified);
    (a.verified > 0
        && sessions >= c.quality_gap_min_sessions
        && probe.availability_ppm() >= c.quality_gap_availability_ppm
        && on_time_ppm < c.quality_gap_on_time_ppm)
        .then(|| {
            (
                RuleId::QualityGap,
                inputs([
                    ("availability_ppm", probe.availability_ppm()),
                    ("window_on_time_ppm", on_time_ppm),
                    ("window_sessions", sessions),
                ]),
            )
        })
}

/// TaintedTraffic: too much of the node's verified traffic came from viewers in its own prefix
/// or operator. Bytes of bots, colluders or framers elsewhere never count here.
pub(super) fn tainted_traffic(c: &FraudConfig, a: &NodeAcc) -> Option<Finding> {
    (a.verified > 0 && ppm_of(a.tainted, a.verified) > c.tainted_share_ppm).then(|| {
        (
            RuleId::TaintedTraffic,
            inputs([("tainted_bytes", a.tainted), ("verified_bytes", a.verified)]),
        )
    })
}

/// SybilCluster: more than `max_nodes_per_subnet` nodes in the node's observed /24 (the reward
/// split caps the group).
pub(super) fn sybil_cluster(
    c: &FraudConfig,
    node: &NodeProfile,
    subnet_counts: &BTreeMap<NetPrefix, u64>,
) -> Option<BTreeMap<String, u64>> {
    let in_subnet = subnet_counts.get(&node.subnet).copied().unwrap_or(0);
    (in_subnet > c.max_nodes_per_subnet).then(|| {
        inputs([
            ("nodes_in_subnet", in_subnet),
            ("limit", c.max_nodes_per_subnet),
        ])
    })
}

/// When a node's probation runs from, and whether it looks like a penalized node come back.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Standing {
    /// The epoch its age counts from: its registration, or, where it registered after the
    /// engine's history began, the first epoch after that in which it passed a probe (an
    /// identity registered and left idle does not age).
    pub started: u64,
    /// A node in its observed prefix was penalized in a recent epoch before `started`.
    pub follows_penalty: bool,
}

/// Probation (or Whitewashing, where a node in the same observed prefix was penalized in a
/// recent epoch before this node started serving): the node's weight multiplier, ppm, and the
/// rule that set it.
///
/// The operator name is not compared. It is free text any node may register with (and change),
/// so a whitewasher escapes it by picking a new one, while a throwaway node registered under
/// another operator's name (or the default every unnamed node shares) and penalized on purpose
/// would put that operator's new nodes at the whitewash weight. The prefix is observed on the
/// node's connections: a node cannot pick someone else's. A node already serving there before
/// the penalty is not its replacement: a throwaway penalized on purpose in a shared /24 (a
/// hosting provider's) once put every new node of that /24 at the whitewash weight.
pub(super) fn probation(c: &FraudConfig, epoch: u64, standing: Standing) -> (u64, Option<Finding>) {
    let age = epoch.saturating_sub(standing.started);
    if age >= c.probation_epochs {
        return (PPM, None);
    }
    let (rule, weight) = if standing.follows_penalty {
        (RuleId::Whitewashing, c.whitewash_weight_ppm)
    } else {
        (RuleId::Probation, c.probation_weight_ppm)
    };
    (
        weight,
        Some((
            rule,
            inputs([
                ("age_epochs", age),
                ("probation_epochs", c.probation_epochs),
                ("started_epoch", standing.started),
            ]),
        )),
    )
}
