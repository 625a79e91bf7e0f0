//! Epoch settlement: fund the pool, split it, apply penalties, vest, and close the epoch with a
//! hash-chained statement and a Merkle root. A pure function of the sequence of published
//! [`EpochInputs`], so anyone can replay it ([`replay_epochs`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::SettlementError;
use crate::identity::NodeId;
use crate::ids::ContentDigest;
use crate::ledger::{Account, EntryKind, Ledger};
use crate::merkle::{BalanceLeaf, MerkleTree};
use crate::rewards::{split_pool, NodeEpochInput, RewardConfig, RewardSplit};
use crate::statement::EpochStatement;

/// Settlement parameters (published with every epoch's inputs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementConfig {
    /// The reward formula's parameters.
    pub rewards: RewardConfig,
    /// Epochs a reward waits before it vests (default 168: seven days of one-hour epochs).
    pub vesting_epochs: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            rewards: RewardConfig::default(),
            vesting_epochs: 168,
        }
    }
}

/// A penalty decided by the fraud rules, taken from the node's unvested rewards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyOrder {
    /// The node.
    pub node_id: NodeId,
    /// Micro-units asked for (the ledger takes at most the unvested balance).
    pub amount: u64,
    /// The fraud rule that decided it.
    pub rule: String,
}

/// Everything one epoch's settlement depends on; published so anyone can replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInputs {
    /// The epoch number (settled in order, without gaps).
    pub epoch: u64,
    /// The pool to distribute, micro-units.
    pub pool: u64,
    /// The parameters.
    pub config: SettlementConfig,
    /// Per-node contributions (any order; settlement sorts by node id).
    pub nodes: Vec<NodeEpochInput>,
    /// Penalties to apply.
    pub penalties: Vec<PenaltyOrder>,
}

impl EpochInputs {
    /// blake3 over the inputs' JSON encoding (struct fields in declaration order, lists in the
    /// order given).
    pub fn hash(&self) -> ContentDigest {
        let json = serde_json::to_vec(self).unwrap_or_default();
        ContentDigest::from_bytes(*blake3::hash(&json).as_bytes())
    }
}

/// A node's running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBalance {
    /// Rewards minus penalties, all epochs.
    pub cumulative_earned: u64,
    /// Rewards vested, all epochs.
    pub cumulative_vested: u64,
    /// Vested rewards paid out, gross of fees.
    pub cumulative_paid_gross: u64,
    /// Vested rewards paid out, net of fees (what the payout sink sent).
    pub cumulative_paid_net: u64,
    /// Unvested tranches: (epoch at which it vests, amount), oldest first.
    tranches: VecDeque<(u64, u64)>,
}

impl NodeBalance {
    /// Rewards still vesting.
    pub fn unvested(&self) -> u64 {
        self.tranches
            .iter()
            .fold(0u64, |acc, (_, a)| acc.saturating_add(*a))
    }
}

/// One epoch's settlement result.
#[derive(Clone, Debug)]
pub struct EpochOutcome {
    /// The closing statement.
    pub statement: EpochStatement,
    /// How the pool was split.
    pub split: RewardSplit,
    /// Every node's leaf, sorted by node id.
    pub leaves: Vec<BalanceLeaf>,
    /// The Merkle tree over `leaves` (for proofs).
    pub tree: MerkleTree,
    /// Index of the first ledger entry this epoch made.
    pub first_entry: usize,
}

/// The settlement engine: ledger, per-node balances and the statement chain.
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    pub(crate) ledger: Ledger,
    pub(crate) balances: BTreeMap<NodeId, NodeBalance>,
    last: Option<EpochStatement>,
}

impl Settlement {
    /// A settlement with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// A node's totals.
    pub fn balance(&self, node: &NodeId) -> Option<&NodeBalance> {
        self.balances.get(node)
    }

    /// The last closing statement.
    pub fn last_statement(&self) -> Option<&EpochStatement> {
        self.last.as_ref()
    }

    /// Settles one epoch: issue the pool, credit rewards as unvested tranches, take penalties
    /// (newest tranches first, never more than is unvested), vest due tranches, and close with a
    /// statement chained to the previous one.
    pub fn settle_epoch(&mut self, inputs: &EpochInputs) -> Result<EpochOutcome, SettlementError> {
        let epoch = inputs.epoch;
        if let Some(last) = &self.last {
            if last.epoch.checked_add(1) != Some(epoch) {
                return Err(SettlementError::EpochOutOfOrder {
                    previous: last.epoch,
                    got: epoch,
                });
            }
        }
        let mut seen = BTreeSet::new();
        for node in &inputs.nodes {
            if !seen.insert(node.node_id) {
                return Err(SettlementError::DuplicateNode {
                    epoch,
                    node: node.node_id,
                });
            }
        }
        let first_entry = self.ledger.entries().len();
        // Balances are copied and ledger entries rolled back on failure, so a failed epoch
        // leaves the settlement untouched.
        let mut balances = self.balances.clone();
        let result = Self::apply_epoch(&mut self.ledger, &mut balances, inputs);
        let (split, distributed, penalties, vested) = match result {
            Ok(totals) => totals,
            Err(err) => {
                self.ledger.rollback_to(first_entry);
                return Err(err);
            }
        };

        let leaves: Vec<BalanceLeaf> = balances
            .iter()
            .map(|(node_id, b)| BalanceLeaf {
                node_id: *node_id,
                cumulative_earned: b.cumulative_earned,
                cumulative_vested: b.cumulative_vested,
            })
            .collect();
        let tree = MerkleTree::build(&leaves);
        let statement = EpochStatement {
            epoch,
            previous_hash: self
                .last
                .as_ref()
                .map(EpochStatement::hash)
                .unwrap_or_default(),
            inputs_hash: inputs.hash(),
            pool: inputs.pool,
            distributed,
            penalties,
            vested,
            merkle_root: tree.root(),
            leaf_count: leaves.len() as u64,
        };
        self.balances = balances;
        self.last = Some(statement.clone());
        Ok(EpochOutcome {
            statement,
            split,
            leaves,
            tree,
            first_entry,
        })
    }

    fn apply_epoch(
        ledger: &mut Ledger,
        balances: &mut BTreeMap<NodeId, NodeBalance>,
        inputs: &EpochInputs,
    ) -> Result<(RewardSplit, u64, u64, u64), SettlementError> {
        let epoch = inputs.epoch;
        let ledger_err = |source| SettlementError::Ledger { epoch, source };
        ledger
            .transfer(
                epoch,
                Account::Issuance,
                Account::RewardPool,
                inputs.pool,
                EntryKind::Funding,
            )
            .map_err(ledger_err)?;
        let split = split_pool(inputs.pool, &inputs.nodes, &inputs.config.rewards);
        let vest_at = epoch.saturating_add(inputs.config.vesting_epochs);
        let mut distributed = 0u64;
        for reward in &split.rewards {
            let balance = balances.entry(reward.node_id).or_default();
            if reward.amount == 0 {
                continue;
            }
            ledger
                .transfer(
                    epoch,
                    Account::RewardPool,
                    Account::Unvested(reward.node_id),
                    reward.amount,
                    EntryKind::Reward,
                )
                .map_err(ledger_err)?;
            balance.tranches.push_back((vest_at, reward.amount));
            balance.cumulative_earned = balance.cumulative_earned.saturating_add(reward.amount);
            distributed = distributed.saturating_add(reward.amount);
        }

        let mut penalties = 0u64;
        let mut orders: Vec<&PenaltyOrder> = inputs.penalties.iter().collect();
        orders.sort_by(|a, b| a.node_id.cmp(&b.node_id).then(a.amount.cmp(&b.amount)));
        for order in orders {
            let Some(balance) = balances.get_mut(&order.node_id) else {
                continue;
            };
            let mut wanted = order.amount.min(balance.unvested());
            let taken = wanted;
            while wanted > 0 {
                let Some(last) = balance.tranches.back_mut() else {
                    break;
                };
                let take = last.1.min(wanted);
                last.1 -= take;
                wanted -= take;
                if last.1 == 0 {
                    balance.tranches.pop_back();
                }
            }
            ledger
                .transfer(
                    epoch,
                    Account::Unvested(order.node_id),
                    Account::Penalties,
                    taken,
                    EntryKind::Penalty,
                )
                .map_err(ledger_err)?;
            balance.cumulative_earned = balance.cumulative_earned.saturating_sub(taken);
            penalties = penalties.saturating_add(taken);
        }

        let mut vested = 0u64;
        for (node, balance) in balances.iter_mut() {
            let mut due = 0u64;
            while let Some(&(at, amount)) = balance.tranches.front() {
                if at > epoch {
                    break;
                }
                due = due.saturating_add(amount);
                balance.tranches.pop_front();
            }
            ledger
                .transfer(
                    epoch,
                    Account::Unvested(*node),
                    Account::Vested(*node),
                    due,
                    EntryKind::Vesting,
                )
                .map_err(ledger_err)?;
            balance.cumulative_vested = balance.cumulative_vested.saturating_add(due);
            vested = vested.saturating_add(due);
        }

        Ok((split, distributed, penalties, vested))
    }
}

/// Recomputes every statement from the published inputs of all epochs, in order. Equal inputs
/// give bit-identical statements and roots.
pub fn replay_epochs(history: &[EpochInputs]) -> Result<Vec<EpochStatement>, SettlementError> {
    let mut settlement = Settlement::new();
    history
        .iter()
        .map(|inputs| settlement.settle_epoch(inputs).map(|o| o.statement))
        .collect()
}
