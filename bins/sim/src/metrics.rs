//! The report: per-attack recall and precision, honest false positives, reward error, Gini,
//! attackers' share of the pool.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use streamr_core::{PenaltyPolicy, RuleId};

use crate::run::{NodeRecord, RunOutcome, ThreatCost};
use crate::scenario::{Attack, SimConfig, Threat};

/// One attack's results.
#[derive(Debug, Serialize)]
pub struct AttackReport {
    /// The attack.
    pub attack: Attack,
    /// Identities that mounted it (A10 includes re-registrations; A8 counts griefing sessions).
    pub identities: usize,
    /// Epochs allowed for detection.
    pub window_epochs: u64,
    /// Share of identities flagged within the window; `None` where it does not apply.
    pub recall: Option<f64>,
    /// Of node-epochs flagged by the rules that caught this attack, the share that were
    /// attackers'.
    pub precision: Option<f64>,
    /// The rules that flagged it.
    pub rules: Vec<RuleId>,
    /// Its identities' share of all pools paid.
    pub pool_share: f64,
    /// The share an oracle would have paid them for what they truly delivered.
    pub truth_share: f64,
}

/// Honest nodes' results.
#[derive(Debug, Serialize)]
pub struct HonestReport {
    /// Honest node-epochs.
    pub node_epochs: u64,
    /// Of which penalized.
    pub penalized_node_epochs: u64,
    /// Per rule, the honest node-epochs it penalized (an epoch two rules penalized counts
    /// under both): which rule the false positives come from.
    pub penalized_by_rule: BTreeMap<RuleId, u64>,
    /// Per node-epoch.
    pub false_positive_rate_per_epoch: f64,
    /// Chance an honest node is penalized at least once in 30 days.
    pub false_positive_rate_per_month: f64,
    /// Relative error of each honest node's share of the honest nodes' rewards vs its share of
    /// their true contribution, cumulative over the run, median.
    pub reward_error_p50: f64,
    /// ... 95th percentile.
    pub reward_error_p95: f64,
    /// Gini of honest nodes' rewards.
    pub gini_rewards: f64,
    /// Gini of their true contribution.
    pub gini_truth: f64,
    /// |difference|.
    pub gini_difference: f64,
}

/// The targets and whether the run met them.
#[derive(Debug, Serialize)]
pub struct Targets {
    /// Recall ≥ 0.99 within one epoch for A1, A4, A5, A7.
    pub recall_one_epoch: bool,
    /// Recall ≥ 0.95 within three epochs for A2, A3.
    pub recall_three_epochs: bool,
    /// Honest false positives ≤ 0.5 % per month.
    pub false_positives: bool,
    /// Honest reward error p95 ≤ 2 %.
    pub reward_error: bool,
    /// Gini difference ≤ 0.02.
    pub gini: bool,
    /// A6 attackers paid at most their fair share (their true share, scaled as honest nodes'
    /// is) plus 1 % of the pool.
    pub collusion_share: bool,
}

/// An honest node framers targeted.
#[derive(Debug, Serialize)]
pub struct VictimReport {
    /// Its share of all pools paid.
    pub pool_share: f64,
    /// Its true share (from genuine viewers).
    pub truth_share: f64,
    /// `pool_share / truth_share`.
    pub paid_to_fair: f64,
    /// The same ratio for the median honest node (what "fair" comes to on this run).
    pub honest_median_paid_to_fair: f64,
    /// Epochs in which it was penalized.
    pub penalized_epochs: usize,
}

/// One threat's results.
#[derive(Debug, Serialize)]
pub struct ThreatReport {
    /// The threat.
    pub threat: Threat,
    /// The attacker's nodes' share of all pools paid.
    pub attacker_pool_share: f64,
    /// Their true share.
    pub attacker_truth_share: f64,
    /// `attacker_pool_share − attacker_truth_share`: the attacker's profit, share of the pool.
    pub attacker_excess: f64,
    /// Honest nodes' true share minus their paid share (what they lost), share of the pool.
    pub honest_loss: f64,
    /// Share of attacker node identities caught within the window (`None`: no attacker nodes).
    pub recall: Option<f64>,
    /// The rules that flagged the attacker's nodes, and the epochs in which each penalized
    /// one of them (summed over the nodes).
    pub rules: BTreeMap<RuleId, u64>,
    /// Node-epochs in which rules dropped at least half of an attacker node's bytes.
    pub dropped_node_epochs: u64,
    /// The framed node, for framing.
    pub victim: Option<VictimReport>,
    /// What it cost the attacker.
    pub cost: ThreatCost,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct SimReport {
    /// The parameters.
    pub config: SimConfig,
    /// Receipts verified.
    pub receipts_verified: u64,
    /// Epoch statements produced.
    pub epochs_settled: usize,
    /// Replaying the published inputs gave the same statements and roots.
    pub replay_matches: bool,
    /// Payouts made (rewards vest first).
    pub payouts: usize,
    /// Per epoch, the share of its pool credited to nodes (the rest was left unallocated:
    /// caps, zero weights).
    pub distributed_share_per_epoch: Vec<f64>,
    /// Merkle root of the last statement.
    pub last_merkle_root: String,
    /// Per attack.
    pub attacks: Vec<AttackReport>,
    /// Honest nodes.
    pub honest: HonestReport,
    /// All attackers' share of the pools.
    pub attackers_pool_share: f64,
    /// Measured detection rate α (attacker identities flagged within their window).
    pub alpha: f64,
    /// Measured false-positive rate β (per honest node-epoch).
    pub beta: f64,
    /// The penalty range [R̄/α, (1−τ)R̄/β] for the median honest epoch reward, micro-units.
    pub penalty_range_for_median_reward: (u64, u64),
    /// Targets met.
    pub targets: Targets,
    /// The threat mounted, if any.
    pub threat: Option<ThreatReport>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// The Gini coefficient of non-negative values.
pub fn gini(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let sum: f64 = v.iter().sum();
    if v.is_empty() || sum <= 0.0 {
        return 0.0;
    }
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum();
    weighted / (n * sum)
}

/// Caught within the window: penalized, group-capped or whitewash-weighted, or (for attacks
/// that only viewers can carry out, which cost viewers' credit and not the node) rules dropped
/// at least half of its verified bytes in an epoch.
fn detected_within(r: &NodeRecord, window: u64) -> bool {
    r.flagged_epochs
        .iter()
        .chain(&r.dropped_epochs)
        .any(|e| *e < r.start_epoch + window)
}

/// Computes the report from a run.
pub fn report(config: &SimConfig, outcome: &RunOutcome, epoch_s: u64) -> SimReport {
    let records = &outcome.records;
    let pool = outcome.pool_total.max(1) as f64;
    let truth_total: f64 = records.iter().map(|r| r.truth_all).sum::<f64>().max(1.0);
    let mut attacks = Vec::new();
    let mut detected = 0usize;
    let mut attackers = 0usize;
    for attack in Attack::ALL {
        let ids: Vec<&NodeRecord> = records.iter().filter(|r| r.role == Some(attack)).collect();
        let pool_share = ids.iter().map(|r| r.earned as f64).sum::<f64>() / pool;
        let truth_share = ids.iter().map(|r| r.truth_all).sum::<f64>() / truth_total;
        if attack == Attack::A8 {
            attacks.push(AttackReport {
                attack,
                identities: outcome.griefer_sessions as usize,
                window_epochs: attack.window_epochs(),
                recall: None,
                precision: None,
                rules: vec![],
                pool_share: 0.0,
                truth_share: 0.0,
            });
            continue;
        }
        // A10 is about the re-registered identities.
        let judged: Vec<&&NodeRecord> = ids
            .iter()
            .filter(|r| attack != Attack::A10 || r.reregistered)
            .collect();
        let hits = judged
            .iter()
            .filter(|r| detected_within(r, attack.window_epochs()))
            .count();
        detected += hits;
        attackers += judged.len();
        let rules: BTreeSet<RuleId> = ids.iter().flat_map(|r| r.rules.iter().copied()).collect();
        let flagged_by = |r: &NodeRecord| {
            if r.rules.iter().any(|rule| rules.contains(rule)) {
                r.flagged_epochs.len()
            } else {
                0
            }
        };
        let attacker_flags: usize = records
            .iter()
            .filter(|r| r.role.is_some())
            .map(flagged_by)
            .sum();
        let honest_flags: usize = records
            .iter()
            .filter(|r| r.role.is_none())
            .map(flagged_by)
            .sum();
        attacks.push(AttackReport {
            attack,
            identities: judged.len(),
            window_epochs: attack.window_epochs(),
            recall: (!judged.is_empty()).then(|| hits as f64 / judged.len() as f64),
            precision: (attacker_flags + honest_flags > 0)
                .then(|| attacker_flags as f64 / (attacker_flags + honest_flags) as f64),
            rules: rules.into_iter().collect(),
            pool_share,
            truth_share,
        });
    }

    let honest: Vec<&NodeRecord> = records.iter().filter(|r| r.role.is_none()).collect();
    let node_epochs: u64 = honest.iter().map(|r| r.active_epochs).sum();
    let penalized: u64 = honest.iter().map(|r| r.penalized_epochs.len() as u64).sum();
    let mut penalized_by_rule: BTreeMap<RuleId, u64> = BTreeMap::new();
    for (rule, epochs) in honest.iter().flat_map(|r| &r.penalties_by_rule) {
        *penalized_by_rule.entry(*rule).or_default() += epochs.len() as u64;
    }
    let beta = penalized as f64 / node_epochs.max(1) as f64;
    let epochs_per_month = 30.0 * 86_400.0 / epoch_s.max(1) as f64;
    let per_month = 1.0 - (1.0 - beta).powf(epochs_per_month);
    // Shares among honest nodes: what attackers took (or lost) is reported separately as their
    // pool share, so this measures how accurately honest contribution is measured and split.
    let honest_paid: f64 = honest.iter().map(|r| r.earned as f64).sum::<f64>().max(1.0);
    let honest_truth: f64 = honest.iter().map(|r| r.truth_all).sum::<f64>().max(1.0);
    let mut errors: Vec<f64> = honest
        .iter()
        .filter(|r| r.truth_all > 0.0)
        .map(|r| {
            let truth = r.truth_all / honest_truth;
            (r.earned as f64 / honest_paid - truth).abs() / truth
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let rewards: Vec<f64> = honest.iter().map(|r| r.earned as f64).collect();
    let truths: Vec<f64> = honest.iter().map(|r| r.truth_all).collect();
    let (gini_rewards, gini_truth) = (gini(&rewards), gini(&truths));
    let honest_report = HonestReport {
        node_epochs,
        penalized_node_epochs: penalized,
        penalized_by_rule,
        false_positive_rate_per_epoch: beta,
        false_positive_rate_per_month: per_month,
        reward_error_p50: percentile(&errors, 0.5),
        reward_error_p95: percentile(&errors, 0.95),
        gini_rewards,
        gini_truth,
        gini_difference: (gini_rewards - gini_truth).abs(),
    };
    let alpha = detected as f64 / attackers.max(1) as f64;
    let mut per_epoch: Vec<f64> = honest
        .iter()
        .map(|r| r.earned as f64 / r.active_epochs.max(1) as f64)
        .collect();
    per_epoch.sort_by(f64::total_cmp);
    let policy = PenaltyPolicy {
        alpha_ppm: ((alpha * 1e6) as u64).max(1),
        beta_ppm: ((beta * 1e6).ceil() as u64).max(1),
        ..PenaltyPolicy::default()
    };
    let median_reward = percentile(&per_epoch, 0.5) as u64;
    let recall_of = |a: Attack| {
        attacks
            .iter()
            .find(|r| r.attack == a)
            .and_then(|r| r.recall)
            .unwrap_or(0.0)
    };
    // Penalized attackers forfeit their share, so everyone else is paid above their true share
    // by the same factor; an attacker's fair share is its true share scaled alike.
    let honest_factor = {
        let paid: f64 = honest.iter().map(|r| r.earned as f64).sum::<f64>() / pool;
        let truth: f64 = honest.iter().map(|r| r.truth_all).sum::<f64>() / truth_total;
        if truth > 0.0 {
            paid / truth
        } else {
            1.0
        }
    };
    let gain_of = |a: Attack| {
        attacks
            .iter()
            .find(|r| r.attack == a)
            .map_or(0.0, |r| r.pool_share - r.truth_share * honest_factor)
    };
    let targets = Targets {
        recall_one_epoch: [Attack::A1, Attack::A4, Attack::A5, Attack::A7]
            .iter()
            .all(|a| recall_of(*a) >= 0.99),
        recall_three_epochs: [Attack::A2, Attack::A3]
            .iter()
            .all(|a| recall_of(*a) >= 0.95),
        false_positives: per_month <= 0.005,
        reward_error: honest_report.reward_error_p95 <= 0.02,
        gini: honest_report.gini_difference <= 0.02,
        collusion_share: gain_of(Attack::A6) <= 0.01,
    };
    SimReport {
        config: config.clone(),
        receipts_verified: outcome.receipts,
        epochs_settled: outcome.statements.len(),
        replay_matches: outcome.replay_matches,
        payouts: outcome.payouts,
        distributed_share_per_epoch: outcome
            .statements
            .iter()
            .map(|s| s.distributed as f64 / s.pool.max(1) as f64)
            .collect(),
        last_merkle_root: outcome
            .statements
            .last()
            .map(|s| s.merkle_root.to_string())
            .unwrap_or_default(),
        attackers_pool_share: records
            .iter()
            .filter(|r| r.role.is_some())
            .map(|r| r.earned as f64)
            .sum::<f64>()
            / pool,
        attacks,
        honest: honest_report,
        alpha,
        beta,
        penalty_range_for_median_reward: policy.range(median_reward),
        targets,
        threat: threat_report(config, outcome, pool, truth_total),
    }
}

fn threat_report(
    config: &SimConfig,
    outcome: &RunOutcome,
    pool: f64,
    truth_total: f64,
) -> Option<ThreatReport> {
    let threat = config.threat.kind?;
    let records = &outcome.records;
    let is_attacker = |r: &NodeRecord| {
        matches!(
            r.role,
            Some(Attack::FreshKeys | Attack::IdleClaims | Attack::PartTime | Attack::Hoarding)
        )
    };
    let attackers: Vec<&NodeRecord> = records.iter().filter(|r| is_attacker(r)).collect();
    let honest: Vec<&NodeRecord> = records.iter().filter(|r| r.role.is_none()).collect();
    let share = |rs: &[&NodeRecord]| rs.iter().map(|r| r.earned as f64).sum::<f64>() / pool;
    let truth = |rs: &[&NodeRecord]| rs.iter().map(|r| r.truth_all).sum::<f64>() / truth_total;
    let (attacker_pool_share, attacker_truth_share) = (share(&attackers), truth(&attackers));
    let ratio = |r: &NodeRecord| {
        let truth_share = r.truth_all / truth_total;
        if truth_share > 0.0 {
            (r.earned as f64 / pool) / truth_share
        } else {
            0.0
        }
    };
    let mut ratios: Vec<f64> = honest
        .iter()
        .filter(|r| r.truth_all > 0.0)
        .map(|r| ratio(r))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let victim = outcome
        .victim
        .and_then(|i| records.get(i))
        .map(|r| VictimReport {
            pool_share: r.earned as f64 / pool,
            truth_share: r.truth_all / truth_total,
            paid_to_fair: ratio(r),
            honest_median_paid_to_fair: percentile(&ratios, 0.5),
            penalized_epochs: r.penalized_epochs.len(),
        });
    let window = match threat {
        Threat::IdleClaims => 1,
        _ => 3,
    };
    let caught = attackers
        .iter()
        .filter(|r| detected_within(r, window))
        .count();
    Some(ThreatReport {
        threat,
        attacker_pool_share,
        attacker_truth_share,
        attacker_excess: attacker_pool_share - attacker_truth_share,
        honest_loss: truth(&honest) - share(&honest),
        recall: (!attackers.is_empty()).then(|| caught as f64 / attackers.len() as f64),
        rules: attackers
            .iter()
            .flat_map(|r| {
                r.rules.iter().map(|rule| {
                    let penalized = r.penalties_by_rule.get(rule).map_or(0, Vec::len);
                    (*rule, penalized as u64)
                })
            })
            .fold(BTreeMap::new(), |mut m, (rule, n)| {
                *m.entry(rule).or_default() += n;
                m
            }),
        dropped_node_epochs: attackers
            .iter()
            .map(|r| r.dropped_epochs.len() as u64)
            .sum(),
        victim,
        cost: outcome.threat_cost.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_of_equal_values_is_zero_and_of_one_holder_near_one() {
        assert_eq!(gini(&[5.0, 5.0, 5.0]), 0.0);
        assert!((gini(&[0.0, 0.0, 0.0, 10.0]) - 0.75).abs() < 1e-12);
        assert!((percentile(&[1.0, 2.0, 3.0], 0.5) - 2.0).abs() < 1e-12);
    }
}
