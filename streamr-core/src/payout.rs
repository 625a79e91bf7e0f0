//! Payouts of vested rewards: node-chosen thresholds, itemised fees, and a [`PayoutSink`] that
//! is told cumulative totals, so running a payout twice can never pay twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::SettlementError;
use crate::identity::NodeId;
use crate::ledger::{Account, EntryKind};
use crate::rewards::PPM;
use crate::settlement::Settlement;

/// Payout fees: a fixed part (e.g. the chain's transfer cost) and a proportional part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    /// Per payout, micro-units.
    pub fixed: u64,
    /// Of the gross amount, ppm.
    pub proportional_ppm: u64,
}

/// One planned payout, itemised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutItem {
    /// The node paid.
    pub node_id: NodeId,
    /// Vested micro-units released (gross).
    pub gross: u64,
    /// Fixed fee.
    pub fixed_fee: u64,
    /// Proportional fee.
    pub proportional_fee: u64,
    /// What the node receives: gross − fees.
    pub net: u64,
    /// The node's total net payouts after this one: the sink's idempotency key.
    pub cumulative_net: u64,
}

/// What a sink reports after a payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutConfirmation {
    /// The node.
    pub node_id: NodeId,
    /// The cumulative net total the sink has now paid the node.
    pub cumulative_net: u64,
    /// What this call actually transferred (0 when it had already been paid).
    pub transferred: u64,
}

/// Where payouts go: the payment rail an operator plugs in (a chain, a payment provider, a bank
/// export). The coordinator ships [`SimulatedPayoutSink`], which pays nothing.
///
/// # Contract
///
/// Each [`PayoutItem`] names a node and `cumulative_net`, the node's total net payouts
/// *including* this one. A sink must bring what it has paid the node up to exactly that total,
/// transferring only the difference, and confirm the total it has now paid. That makes a
/// payout idempotent: the coordinator may hand the same item over again (after a crash between
/// the transfer and its record, or from two replicas), and the node is still paid once.
/// Return `Err(reason)` when the rail refuses or cannot be reached; the payout stays pending
/// and is offered again on the next round. The sink is called from a worker task, one item at
/// a time, so it may block briefly (keep it short or hand off to a queue).
///
/// # Example
///
/// A sink that records transfers in a map standing in for a payment provider's API:
///
/// ```
/// use std::collections::BTreeMap;
/// use streamr_core::{NodeId, PayoutConfirmation, PayoutItem, PayoutSink};
///
/// #[derive(Default)]
/// struct BankExport {
///     /// What the rail has paid each node so far (ask the rail for it in a real sink).
///     paid: BTreeMap<NodeId, u64>,
/// }
///
/// impl PayoutSink for BankExport {
///     fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String> {
///         let already = self.paid.get(&item.node_id).copied().unwrap_or(0);
///         // Only the difference is transferred: repeating an item pays nothing more.
///         let transferred = item.cumulative_net.saturating_sub(already);
///         if transferred > 0 {
///             // e.g. provider.transfer(payout_address_of(item.node_id), transferred)?
///             self.paid.insert(item.node_id, item.cumulative_net);
///         }
///         Ok(PayoutConfirmation {
///             node_id: item.node_id,
///             cumulative_net: already.max(item.cumulative_net),
///             transferred,
///         })
///     }
/// }
///
/// let mut sink = BankExport::default();
/// let item = PayoutItem {
///     node_id: NodeId::from_bytes([1; 32]),
///     gross: 1_000,
///     fixed_fee: 10,
///     proportional_fee: 0,
///     net: 990,
///     cumulative_net: 990,
/// };
/// assert_eq!(sink.pay(&item).unwrap().transferred, 990);
/// assert_eq!(sink.pay(&item).unwrap().transferred, 0); // handed over again: paid once
/// ```
///
/// The coordinator takes a sink with `streamr_coord::Coordinator::with_payout_sink`.
pub trait PayoutSink {
    /// Brings the node's paid total up to `item.cumulative_net`.
    fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String>;
}

/// A **simulated** payout sink: an in-memory record of each node's cumulative paid total and of
/// the transfers it "made". Nothing leaves the process and the record is lost when it stops;
/// for trials, tests and the simulator. Operators plug a real rail in as a [`PayoutSink`].
#[derive(Clone, Debug, Default)]
pub struct SimulatedPayoutSink {
    paid: BTreeMap<NodeId, u64>,
    transfers: Vec<(NodeId, u64)>,
}

/// The former name of [`SimulatedPayoutSink`].
pub type SimulatedChain = SimulatedPayoutSink;

impl SimulatedPayoutSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total the sink has paid `node`.
    pub fn paid(&self, node: &NodeId) -> u64 {
        self.paid.get(node).copied().unwrap_or(0)
    }

    /// Every transfer made, in order.
    pub fn transfers(&self) -> &[(NodeId, u64)] {
        &self.transfers
    }
}

impl PayoutSink for SimulatedPayoutSink {
    fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String> {
        let already = self.paid(&item.node_id);
        let transferred = item.cumulative_net.saturating_sub(already);
        if transferred > 0 {
            self.paid.insert(item.node_id, item.cumulative_net);
            self.transfers.push((item.node_id, transferred));
        }
        Ok(PayoutConfirmation {
            node_id: item.node_id,
            cumulative_net: already.max(item.cumulative_net),
            transferred,
        })
    }
}

/// Where a node's rewards are in their lifecycle, micro-units: credited rewards (less
/// penalties) are first `unvested`, then `vested` (payable, waiting for the threshold), then
/// paid out, `paid` to the node and `fees` withheld. Nothing is lost on the way:
/// `earned == unvested + vested + paid + fees` ([`PayoutLifecycle::is_conserved`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutLifecycle {
    /// Rewards credited minus penalties taken.
    pub earned: u64,
    /// Still vesting (penalties take from here).
    pub unvested: u64,
    /// Vested and payable, not yet paid out (below the threshold or the fees).
    pub vested: u64,
    /// Paid out to the node, net of fees.
    pub paid: u64,
    /// Fees withheld from its payouts.
    pub fees: u64,
}

impl PayoutLifecycle {
    /// `node`'s lifecycle in `ledger`.
    pub fn of(ledger: &crate::ledger::Ledger, node: &NodeId) -> Self {
        let mut earned = 0u64;
        let mut fees = 0u64;
        for entry in ledger.entries() {
            match entry.kind {
                EntryKind::Reward if entry.to == Account::Unvested(*node) => {
                    earned = earned.saturating_add(entry.amount);
                }
                EntryKind::Penalty if entry.from == Account::Unvested(*node) => {
                    earned = earned.saturating_sub(entry.amount);
                }
                EntryKind::Fee if entry.from == Account::Vested(*node) => {
                    fees = fees.saturating_add(entry.amount);
                }
                _ => {}
            }
        }
        PayoutLifecycle {
            earned,
            unvested: ledger.balance(&Account::Unvested(*node)),
            vested: ledger.balance(&Account::Vested(*node)),
            paid: ledger.balance(&Account::PaidOut(*node)),
            fees,
        }
    }

    /// Whether every micro-unit earned is in exactly one stage.
    pub fn is_conserved(&self) -> bool {
        let stages = u128::from(self.unvested)
            + u128::from(self.vested)
            + u128::from(self.paid)
            + u128::from(self.fees);
        stages == u128::from(self.earned)
    }
}

/// Payout rules: each node's own minimum (or the default) and the fees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutPolicy {
    /// Minimum gross payout when a node chose none, micro-units.
    pub default_threshold: u64,
    /// Minimums chosen by nodes.
    pub thresholds: BTreeMap<NodeId, u64>,
    /// Fees.
    pub fees: FeeSchedule,
}

impl Settlement {
    /// The payouts due now: every node whose vested, unpaid balance reaches its threshold and
    /// exceeds the fees. Sorted by node id.
    pub fn plan_payouts(&self, policy: &PayoutPolicy) -> Vec<PayoutItem> {
        self.balances
            .iter()
            .filter_map(|(node_id, b)| {
                let gross = self.ledger.balance(&Account::Vested(*node_id));
                let threshold = policy
                    .thresholds
                    .get(node_id)
                    .copied()
                    .unwrap_or(policy.default_threshold);
                if gross == 0 || gross < threshold {
                    return None;
                }
                let proportional = u128::from(gross)
                    * u128::from(policy.fees.proportional_ppm.min(PPM))
                    / u128::from(PPM);
                let proportional_fee = u64::try_from(proportional).unwrap_or(gross);
                let net = gross
                    .checked_sub(policy.fees.fixed)?
                    .checked_sub(proportional_fee)
                    .filter(|n| *n > 0)?;
                Some(PayoutItem {
                    node_id: *node_id,
                    gross,
                    fixed_fee: policy.fees.fixed,
                    proportional_fee,
                    net,
                    cumulative_net: b.cumulative_paid_net.checked_add(net)?,
                })
            })
            .collect()
    }

    /// Plans payouts, sends each to `sink` and records it in the ledger (fees to `Fees`, net to
    /// `PaidOut`). Returns the items paid. Safe to run again at any time: a node is never paid
    /// twice for the same vested amount, because the sink pays only up to the cumulative total.
    pub fn pay_out(
        &mut self,
        epoch: u64,
        policy: &PayoutPolicy,
        sink: &mut impl PayoutSink,
    ) -> Result<Vec<PayoutItem>, SettlementError> {
        let items = self.plan_payouts(policy);
        for item in &items {
            let confirmation = sink
                .pay(item)
                .map_err(|reason| SettlementError::PayoutRefused {
                    node: item.node_id,
                    reason,
                })?;
            if confirmation.cumulative_net != item.cumulative_net {
                return Err(SettlementError::PayoutMismatch {
                    node: item.node_id,
                    confirmed: confirmation.cumulative_net,
                    expected: item.cumulative_net,
                });
            }
            let node = item.node_id;
            let ledger_err = |source| SettlementError::Ledger { epoch, source };
            let fee = item.fixed_fee.saturating_add(item.proportional_fee);
            self.ledger
                .transfer(
                    epoch,
                    Account::Vested(node),
                    Account::Fees,
                    fee,
                    EntryKind::Fee,
                )
                .map_err(ledger_err)?;
            self.ledger
                .transfer(
                    epoch,
                    Account::Vested(node),
                    Account::PaidOut(node),
                    item.net,
                    EntryKind::Payout,
                )
                .map_err(ledger_err)?;
            if let Some(balance) = self.balances.get_mut(&node) {
                balance.cumulative_paid_gross =
                    balance.cumulative_paid_gross.saturating_add(item.gross);
                balance.cumulative_paid_net = item.cumulative_net;
            }
        }
        Ok(items)
    }
}
