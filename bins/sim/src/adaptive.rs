//! The adaptive attacker: searches over its own parameters, within its budget, for the
//! greatest profit (pool share above true share), by coordinate ascent over a grid, running
//! the whole simulation for each try.

use indicatif::ProgressBar;
use serde::Serialize;

use crate::metrics;
use crate::run;
use crate::scenario::{SimConfig, Threat, ThreatConfig};

/// One try.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    /// The parameters tried.
    pub threat: ThreatConfig,
    /// The attacker's profit, share of the pool.
    pub excess: f64,
    /// Its pool share.
    pub pool_share: f64,
    /// Its true share.
    pub truth_share: f64,
}

/// What the search found.
#[derive(Debug, Serialize)]
pub struct AdaptiveReport {
    /// Every try, in order.
    pub trials: Vec<Trial>,
    /// The most profitable.
    pub best: Option<Trial>,
    /// The budget searched within: at most this many keys and nodes.
    pub max_keys: u64,
    /// ...
    pub max_nodes: u64,
}

/// The values each parameter may take (those above the budget are left out).
fn grid(threat: Threat, max_keys: u64, max_nodes: u64) -> Vec<Vec<u64>> {
    let keys: Vec<u64> = [5, 10, 25, 50, 100]
        .into_iter()
        .filter(|k| *k <= max_keys)
        .collect();
    let nodes: Vec<u64> = [1, 3, 10, 20]
        .into_iter()
        .filter(|n| *n <= max_nodes)
        .collect();
    match threat {
        // keys, nodes, requests, prefixes, sessions
        Threat::FreshKeys => vec![
            keys,
            nodes,
            vec![8, 64, 512],
            vec![1, 5, 25, 50],
            vec![1, 2, 4],
        ],
        Threat::IdleClaims | Threat::PartTime | Threat::Hoarding => {
            vec![vec![0], nodes, vec![0], vec![1], vec![0]]
        }
        Threat::Framing | Threat::Withholding => {
            vec![keys, vec![0], vec![8, 512], vec![1], vec![2]]
        }
    }
}

fn apply(base: &ThreatConfig, threat: Threat, point: &[u64]) -> ThreatConfig {
    let get = |i: usize, default: u64| point.get(i).copied().unwrap_or(default);
    ThreatConfig {
        kind: Some(threat),
        keys: get(0, base.keys),
        nodes: get(1, base.nodes),
        requests: get(2, base.requests),
        prefixes: get(3, base.prefixes),
        sessions: get(4, base.sessions),
        bandwidth: base.bandwidth,
    }
}

fn try_point(config: &SimConfig, threat: ThreatConfig) -> anyhow::Result<Trial> {
    let mut config = config.clone();
    config.threat = threat.clone();
    let outcome = run::run(&config, &ProgressBar::hidden())?;
    let report = metrics::report(&config, &outcome, config.epoch_s);
    let t = report
        .threat
        .ok_or_else(|| anyhow::anyhow!("the run reported no threat"))?;
    Ok(Trial {
        threat,
        excess: t.attacker_excess,
        pool_share: t.attacker_pool_share,
        truth_share: t.attacker_truth_share,
    })
}

/// Searches the profit-making threats (fresh-key farms, idle, part-time and hoarded claims)
/// within `max_keys` keys and `max_nodes` nodes, trying at most `budget` parameter sets in all.
pub fn search(
    config: &SimConfig,
    max_keys: u64,
    max_nodes: u64,
    budget: usize,
) -> anyhow::Result<AdaptiveReport> {
    let mut trials: Vec<Trial> = Vec::new();
    let threats = [
        Threat::FreshKeys,
        Threat::IdleClaims,
        Threat::PartTime,
        Threat::Hoarding,
    ];
    let per_threat = budget / threats.len();
    for threat in threats {
        let grid = grid(threat, max_keys, max_nodes);
        // Start from the most of everything the budget allows.
        let mut point: Vec<u64> = grid
            .iter()
            .map(|values| values.last().copied().unwrap_or(0))
            .collect();
        let mut best = try_point(config, apply(&config.threat, threat, &point))?;
        trials.push(best.clone());
        let mut tries = 1;
        let mut improved = true;
        while improved && tries < per_threat {
            improved = false;
            for (axis, values) in grid.iter().enumerate() {
                for &value in values {
                    if tries >= per_threat || point.get(axis) == Some(&value) {
                        continue;
                    }
                    let mut candidate = point.clone();
                    if let Some(slot) = candidate.get_mut(axis) {
                        *slot = value;
                    }
                    let trial = try_point(config, apply(&config.threat, threat, &candidate))?;
                    tries += 1;
                    trials.push(trial.clone());
                    if trial.excess > best.excess {
                        best = trial;
                        point = candidate;
                        improved = true;
                    }
                }
            }
        }
    }
    let best = trials
        .iter()
        .max_by(|a, b| a.excess.total_cmp(&b.excess))
        .cloned();
    Ok(AdaptiveReport {
        trials,
        best,
        max_keys,
        max_nodes,
    })
}
