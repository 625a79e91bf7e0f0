//! Epoch rewards: weight = eligible verified bytes × on-time share × availability × probation
//! factor (+ discounted, capacity-capped unattested bytes); reward = pool × weight / Σ weights in
//! exact integer micro-units, with per-operator and per-/24 caps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::apportion::apportion;
use crate::identity::NodeId;
use crate::ids::{NetPrefix, OperatorId};

/// Parts per million: `1_000_000` is 100 %.
pub const PPM: u64 = 1_000_000;

/// One node's accounted contribution in an epoch: the published input of the reward formula.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEpochInput {
    /// The node.
    pub node_id: NodeId,
    /// Its operator.
    pub operator: OperatorId,
    /// Its network (IPv4 /24 or IPv6 /48).
    pub subnet: NetPrefix,
    /// Bytes credited by valid receipts.
    pub verified_bytes: u64,
    /// Of which acknowledged on time. The fraud engine publishes the verified bytes times the
    /// on-time share of the bytes its rules left credited, so that the formula counts exactly
    /// the credited on-time bytes.
    pub on_time_bytes: u64,
    /// Bytes the fraud rules dropped (self-dealing, bots, collusion, over-bitrate...).
    pub flagged_bytes: u64,
    /// Share of probes passed, ppm. A node never probed has 0.
    pub availability_ppm: u64,
    /// Bytes served to viewers that cannot sign receipts (claimed, unattested).
    pub unattested_bytes: u64,
    /// What probes measured the node can serve in the epoch, bytes: the cap on unattested bytes.
    pub probe_capacity_bytes: u64,
    /// Weight multiplier, ppm: below 1 000 000 during probation.
    pub probation_ppm: u64,
}

/// Reward parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// Unattested bytes count at this fraction, ppm.
    pub unattested_discount_ppm: u64,
    /// Most of the pool one operator's nodes may receive together, ppm.
    pub operator_cap_ppm: u64,
    /// Most of the pool the nodes of one /24 may receive together, ppm.
    pub subnet_cap_ppm: u64,
    /// Water-fills a capped group around members another cap froze lower (see
    /// `refill_group`). `false` in the inputs of epochs settled before it existed (absent from
    /// their JSON), which replay as they were settled; `true` by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refill_capped_groups: bool,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            unattested_discount_ppm: 500_000,
            operator_cap_ppm: 200_000,
            subnet_cap_ppm: 200_000,
            refill_capped_groups: true,
        }
    }
}

/// The reward weight of a node, in byte·ppm (fits easily in `u128`).
pub fn node_weight(input: &NodeEpochInput, config: &RewardConfig) -> u128 {
    let clamp = |ppm: u64| u128::from(ppm.min(PPM));
    let verified = u128::from(input.verified_bytes);
    let eligible = verified.saturating_sub(u128::from(input.flagged_bytes));
    let on_time_ppm = (u128::from(input.on_time_bytes.min(input.verified_bytes)) * u128::from(PPM))
        .checked_div(verified)
        .unwrap_or(0);
    let attested = eligible * on_time_ppm;
    let unattested = u128::from(input.unattested_bytes.min(input.probe_capacity_bytes))
        * clamp(config.unattested_discount_ppm);
    // byte·ppm × availability / PPM × probation / PPM stays in byte·ppm.
    (attested + unattested) * clamp(input.availability_ppm) / u128::from(PPM)
        * clamp(input.probation_ppm)
        / u128::from(PPM)
}

/// A node's share of an epoch pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReward {
    /// The node.
    pub node_id: NodeId,
    /// Its weight, byte·ppm.
    pub weight: u128,
    /// Its reward, micro-units.
    pub amount: u64,
}

/// The split of one epoch's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardSplit {
    /// One entry per input node, sorted by node id.
    pub rewards: Vec<NodeReward>,
    /// What caps or zero weights left undistributed; Σ rewards + unallocated = pool.
    pub unallocated: u64,
    /// Groups whose cap bound (for the Sybil evidence), as `"operator:<id>"` or `"subnet:<net>"`.
    pub capped_groups: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Operator(OperatorId),
    Subnet(NetPrefix),
}

/// Splits `pool` micro-units among `inputs` by weight under the operator and /24 caps.
///
/// Caps are applied by water-filling: the pool is split among uncapped nodes; a group over its
/// cap is frozen at the cap (split among its nodes by weight) and the rest is split again among
/// the others, until no cap is exceeded. What no one may receive stays unallocated.
pub fn split_pool(pool: u64, inputs: &[NodeEpochInput], config: &RewardConfig) -> RewardSplit {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| inputs[a].node_id.cmp(&inputs[b].node_id));
    let nodes: Vec<&NodeEpochInput> = order.iter().filter_map(|&i| inputs.get(i)).collect();
    let weights: Vec<u128> = nodes.iter().map(|n| node_weight(n, config)).collect();
    let groups: Vec<[Group; 2]> = nodes
        .iter()
        .map(|n| [Group::Operator(n.operator.clone()), Group::Subnet(n.subnet)])
        .collect();
    let cap_of = |g: &Group| -> u64 {
        let ppm = match g {
            Group::Operator(_) => config.operator_cap_ppm,
            Group::Subnet(_) => config.subnet_cap_ppm,
        };
        let cap = u128::from(pool) * u128::from(ppm.min(PPM)) / u128::from(PPM);
        u64::try_from(cap).unwrap_or(pool)
    };
    let mut amounts = vec![0u64; nodes.len()];
    let mut frozen = vec![false; nodes.len()];
    let mut capped: Vec<Group> = Vec::new();
    // Each round freezes at least one group; the bound is a guard, never reached in practice.
    for _round in 0..=2 * nodes.len() + 1 {
        let frozen_total: u64 = amounts
            .iter()
            .zip(&frozen)
            .filter(|(_, f)| **f)
            .fold(0u64, |acc, (a, _)| acc.saturating_add(*a));
        let remaining = pool.saturating_sub(frozen_total);
        let active: Vec<usize> = (0..nodes.len())
            .filter(|&i| !frozen[i] && weights[i] > 0)
            .collect();
        if active.is_empty() {
            break;
        }
        let active_weights: Vec<u128> = active.iter().map(|&i| weights[i]).collect();
        for (&i, part) in active.iter().zip(apportion(remaining, &active_weights)) {
            amounts[i] = part;
        }
        let mut totals: BTreeMap<&Group, u64> = BTreeMap::new();
        for (i, gs) in groups.iter().enumerate() {
            for g in gs {
                let t = totals.entry(g).or_insert(0);
                *t = t.saturating_add(amounts[i]);
            }
        }
        let violating: Vec<Group> = totals
            .iter()
            .filter(|(g, total)| **total > cap_of(g))
            .map(|(g, _)| (*g).clone())
            .collect();
        if violating.is_empty() {
            break;
        }
        for group in violating {
            let members: Vec<usize> = (0..nodes.len())
                .filter(|&i| groups[i].contains(&group))
                .collect();
            if config.refill_capped_groups {
                // An earlier group of this round may have lowered some members already: a
                // group back within its cap is left to the next round, its open members
                // unfrozen.
                let total = members
                    .iter()
                    .fold(0u64, |t, &i| t.saturating_add(amounts[i]));
                if total <= cap_of(&group) {
                    continue;
                }
                refill_group(
                    cap_of(&group),
                    &members,
                    &weights,
                    &mut amounts,
                    &mut frozen,
                );
            } else {
                // As settled before: the cap split over all members by weight, a member frozen
                // before keeping the smaller amount.
                let member_weights: Vec<u128> = members.iter().map(|&i| weights[i]).collect();
                for (&i, part) in members
                    .iter()
                    .zip(apportion(cap_of(&group), &member_weights))
                {
                    amounts[i] = if frozen[i] {
                        amounts[i].min(part)
                    } else {
                        part
                    };
                    frozen[i] = true;
                }
            }
            if !capped.contains(&group) {
                capped.push(group);
            }
        }
    }
    let distributed = amounts.iter().fold(0u64, |a, b| a.saturating_add(*b));
    RewardSplit {
        rewards: nodes
            .iter()
            .zip(weights.iter().zip(&amounts))
            .map(|(n, (w, a))| NodeReward {
                node_id: n.node_id,
                weight: *w,
                amount: *a,
            })
            .collect(),
        unallocated: pool.saturating_sub(distributed),
        capped_groups: capped
            .iter()
            .map(|g| match g {
                Group::Operator(o) => format!("operator:{o}"),
                Group::Subnet(s) => format!("subnet:{s}"),
            })
            .collect(),
    }
}

/// Freezes a group over its cap at the cap, split among its members by weight. A member frozen
/// before by another group never gets more than it has: where its part of the cap is at least
/// that, it keeps what it has and the rest of the cap is split again among the others, so the
/// other members are not held to shares sized for an amount it can never take (a small node in
/// the /24 of a capped operator's big node was frozen at a fraction of what it earned, the
/// /24 left far below its cap).
fn refill_group(
    cap: u64,
    members: &[usize],
    weights: &[u128],
    amounts: &mut [u64],
    frozen: &mut [bool],
) {
    let mut room = cap;
    let mut open: Vec<usize> = members.to_vec();
    loop {
        let open_weights: Vec<u128> = open.iter().map(|&i| weights[i]).collect();
        let parts = apportion(room, &open_weights);
        let keeping: Vec<usize> = open
            .iter()
            .zip(&parts)
            .filter(|(&i, &part)| frozen[i] && amounts[i] <= part)
            .map(|(&i, _)| i)
            .collect();
        if keeping.is_empty() {
            for (&i, part) in open.iter().zip(parts) {
                amounts[i] = if frozen[i] {
                    amounts[i].min(part)
                } else {
                    part
                };
                frozen[i] = true;
            }
            return;
        }
        for i in keeping {
            room = room.saturating_sub(amounts[i]);
            open.retain(|&j| j != i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(id: u8, operator: &str, subnet: u8, bytes: u64) -> NodeEpochInput {
        NodeEpochInput {
            node_id: NodeId::from_bytes([id; 32]),
            operator: OperatorId::new(operator).unwrap(),
            subnet: crate::Subnet24([10, 0, subnet]).into(),
            verified_bytes: bytes,
            on_time_bytes: bytes,
            flagged_bytes: 0,
            availability_ppm: PPM,
            unattested_bytes: 0,
            probe_capacity_bytes: 0,
            probation_ppm: PPM,
        }
    }

    fn uncapped() -> RewardConfig {
        RewardConfig {
            operator_cap_ppm: PPM,
            subnet_cap_ppm: PPM,
            ..RewardConfig::default()
        }
    }

    #[test]
    fn weight_multiplies_eligible_bytes_by_on_time_availability_and_probation() {
        let mut n = input(1, "a", 1, 1_000);
        n.on_time_bytes = 500;
        n.flagged_bytes = 200;
        n.availability_ppm = 900_000;
        n.probation_ppm = 500_000;
        n.unattested_bytes = 10_000;
        n.probe_capacity_bytes = 400;
        // (800 × 0.5 + min(10 000, 400) × 0.5) × 0.9 × 0.5 = 270 bytes = 270 000 000 byte·ppm
        assert_eq!(node_weight(&n, &RewardConfig::default()), 270_000_000);
    }

    #[test]
    fn operator_cap_moves_the_excess_to_others() {
        let nodes = [
            input(1, "big", 1, 9_000),
            input(2, "small", 2, 500),
            input(3, "other", 3, 500),
        ];
        let config = RewardConfig {
            operator_cap_ppm: 500_000,
            subnet_cap_ppm: PPM,
            ..RewardConfig::default()
        };
        let split = split_pool(1_000, &nodes, &config);
        let amounts: Vec<u64> = split.rewards.iter().map(|r| r.amount).collect();
        assert_eq!(amounts, [500, 250, 250]);
        assert_eq!(split.unallocated, 0);
        assert_eq!(split.capped_groups, ["operator:big"]);
    }

    #[test]
    fn a_small_node_beside_a_capped_operators_big_node_keeps_its_share() {
        // Operator "big" earns 21 of 42 parts: node 1 (9 parts) shares /24 number 1 with the
        // small node 2 (1 part); the others of "big" and ten unrelated nodes are elsewhere.
        let mut nodes = vec![input(1, "big", 1, 9_000), input(2, "small", 1, 1_000)];
        for i in 0..4 {
            nodes.push(input(3 + i, "big", 10 + i, 3_000));
        }
        for i in 0..10 {
            nodes.push(input(20 + i, &format!("o{i}"), 30 + i, 2_000));
        }
        let split = split_pool(1_000_000, &nodes, &RewardConfig::default());
        let amount = |id: u8| {
            split
                .rewards
                .iter()
                .find(|r| r.node_id == NodeId::from_bytes([id; 32]))
                .map(|r| r.amount)
                .unwrap()
        };
        // "big" is held at 20 %; the rest goes by weight to the small node and the ten others
        // (21 parts): the /24 of nodes 1 and 2 is far below its cap.
        let big: u64 = [1, 3, 4, 5, 6].iter().map(|&i| amount(i)).sum();
        assert_eq!(big, 200_000);
        assert!(amount(2).abs_diff(800_000 / 21) <= 1, "{}", amount(2));
        assert!(amount(20).abs_diff(800_000 * 2 / 21) <= 1, "{}", amount(20));
        assert_eq!(split.unallocated, 0);
        // Epochs settled before the refill replay as they were (the small node at 20 000).
        let legacy = RewardConfig {
            refill_capped_groups: false,
            ..RewardConfig::default()
        };
        let replayed = split_pool(1_000_000, &nodes, &legacy);
        let small = NodeId::from_bytes([2; 32]);
        let small = replayed
            .rewards
            .iter()
            .find(|r| r.node_id == small)
            .unwrap();
        assert_eq!(small.amount, 20_000);
        let json = serde_json::to_string(&legacy).unwrap();
        assert!(!json.contains("refill"), "{json}");
        assert_eq!(serde_json::from_str::<RewardConfig>(&json).unwrap(), legacy);
    }

    fn nodes_strategy() -> impl Strategy<Value = Vec<NodeEpochInput>> {
        proptest::collection::vec((0u8..6, 0u8..4, 0u64..1_000_000_000_000), 1..40).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (op, net, bytes))| input(i as u8, &format!("op{op}"), net, bytes))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn rewards_sum_to_the_pool_exactly(pool in any::<u64>(), nodes in nodes_strategy()) {
            let split = split_pool(pool, &nodes, &uncapped());
            let sum: u128 = split.rewards.iter().map(|r| u128::from(r.amount)).sum();
            if split.rewards.iter().any(|r| r.weight > 0) {
                prop_assert_eq!(sum, u128::from(pool));
                prop_assert_eq!(split.unallocated, 0);
            } else {
                prop_assert_eq!(split.unallocated, pool);
            }
        }

        #[test]
        fn caps_hold_and_nothing_is_lost(
            pool in 0u64..u64::MAX / 2,
            nodes in nodes_strategy(),
            op_cap in 50_000u64..=PPM,
            net_cap in 50_000u64..=PPM,
            refill in any::<bool>(),
        ) {
            let config = RewardConfig { operator_cap_ppm: op_cap, subnet_cap_ppm: net_cap, refill_capped_groups: refill, ..RewardConfig::default() };
            let split = split_pool(pool, &nodes, &config);
            let sum: u128 = split.rewards.iter().map(|r| u128::from(r.amount)).sum();
            prop_assert_eq!(sum + u128::from(split.unallocated), u128::from(pool));
            let mut by_op: BTreeMap<String, u128> = BTreeMap::new();
            let mut by_net: BTreeMap<NetPrefix, u128> = BTreeMap::new();
            for r in &split.rewards {
                let n = nodes.iter().find(|n| n.node_id == r.node_id).unwrap();
                *by_op.entry(n.operator.to_string()).or_default() += u128::from(r.amount);
                *by_net.entry(n.subnet).or_default() += u128::from(r.amount);
            }
            for total in by_op.values() {
                prop_assert!(*total <= u128::from(pool) * u128::from(op_cap) / u128::from(PPM));
            }
            for total in by_net.values() {
                prop_assert!(*total <= u128::from(pool) * u128::from(net_cap) / u128::from(PPM));
            }
        }
    }
}
