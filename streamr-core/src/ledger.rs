//! The append-only double-entry ledger: every movement of micro-units is one entry from one
//! account to another, and balances are derived from entries. Only `Issuance` may go below zero
//! (it is where pools come from), so Σ balances = issued, always.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::identity::NodeId;

/// A ledger account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "account", content = "node", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Account {
    /// Where epoch pools are issued from (the only account allowed to go negative).
    Issuance,
    /// Pool money not yet given to nodes (caps and empty epochs leave it here).
    RewardPool,
    /// A node's rewards still vesting; penalties take from here.
    Unvested(NodeId),
    /// A node's vested, payable rewards.
    Vested(NodeId),
    /// What was paid out to a node (net of fees).
    PaidOut(NodeId),
    /// Payout fees collected.
    Fees,
    /// Penalties taken from unvested rewards.
    Penalties,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Issuance => f.write_str("issuance"),
            Self::RewardPool => f.write_str("reward pool"),
            Self::Unvested(n) => write!(f, "unvested:{n}"),
            Self::Vested(n) => write!(f, "vested:{n}"),
            Self::PaidOut(n) => write!(f, "paid:{n}"),
            Self::Fees => f.write_str("fees"),
            Self::Penalties => f.write_str("penalties"),
        }
    }
}

/// Why an entry was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// An epoch's pool issued.
    Funding,
    /// A node's epoch reward.
    Reward,
    /// A reward tranche vested.
    Vesting,
    /// A fraud penalty.
    Penalty,
    /// A payout fee.
    Fee,
    /// A payout.
    Payout,
}

/// One ledger line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the ledger, from 0.
    pub index: u64,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Account debited.
    pub from: Account,
    /// Account credited.
    pub to: Account,
    /// Micro-units moved.
    pub amount: u64,
    /// Why.
    pub kind: EntryKind,
}

/// The ledger: entries plus the balances they imply.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
    balances: BTreeMap<Account, u64>,
    issued: u64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves `amount` from `from` to `to`, refusing to overdraw any account but `Issuance`.
    pub fn transfer(
        &mut self,
        epoch: u64,
        from: Account,
        to: Account,
        amount: u64,
        kind: EntryKind,
    ) -> Result<(), LedgerError> {
        if amount == 0 {
            return Ok(());
        }
        let to_balance = self
            .balance(&to)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow { account: to })?;
        if from == Account::Issuance {
            self.issued = self
                .issued
                .checked_add(amount)
                .ok_or(LedgerError::Overflow { account: from })?;
        } else {
            let balance = self.balance(&from);
            let left = balance
                .checked_sub(amount)
                .ok_or(LedgerError::InsufficientBalance {
                    account: from,
                    balance,
                    amount,
                })?;
            self.balances.insert(from, left);
        }
        self.balances.insert(to, to_balance);
        self.entries.push(LedgerEntry {
            index: self.entries.len() as u64,
            epoch,
            from,
            to,
            amount,
            kind,
        });
        Ok(())
    }

    /// Removes the entries from `len` on and reverses their effect (used when an epoch fails
    /// half-way; committed epochs are never rolled back).
    pub(crate) fn rollback_to(&mut self, len: usize) {
        while self.entries.len() > len {
            let Some(entry) = self.entries.pop() else {
                break;
            };
            let to = self.balance(&entry.to).saturating_sub(entry.amount);
            self.balances.insert(entry.to, to);
            if entry.from == Account::Issuance {
                self.issued = self.issued.saturating_sub(entry.amount);
            } else {
                let from = self.balance(&entry.from).saturating_add(entry.amount);
                self.balances.insert(entry.from, from);
            }
        }
    }

    /// An account's balance (0 for `Issuance`: see [`Self::issued`]).
    pub fn balance(&self, account: &Account) -> u64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Total issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// Whether Σ balances equals the total issued (double-entry invariant).
    pub fn is_balanced(&self) -> bool {
        let sum: u128 = self.balances.values().map(|b| u128::from(*b)).sum();
        sum == u128::from(self.issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdraft_is_refused_and_leaves_no_entry() {
        let mut ledger = Ledger::new();
        let node = NodeId::from_bytes([1; 32]);
        ledger
            .transfer(
                0,
                Account::Issuance,
                Account::RewardPool,
                100,
                EntryKind::Funding,
            )
            .unwrap();
        ledger
            .transfer(
                0,
                Account::RewardPool,
                Account::Unvested(node),
                60,
                EntryKind::Reward,
            )
            .unwrap();
        let err = ledger
            .transfer(
                0,
                Account::Unvested(node),
                Account::Penalties,
                61,
                EntryKind::Penalty,
            )
            .unwrap_err();
        assert_eq!(
            err,
            LedgerError::InsufficientBalance {
                account: Account::Unvested(node),
                balance: 60,
                amount: 61
            }
        );
        assert_eq!(ledger.entries().len(), 2);
        assert!(ledger.is_balanced());
        let json = serde_json::to_string(&ledger.entries()[1]).unwrap();
        assert_eq!(
            serde_json::from_str::<LedgerEntry>(&json).unwrap(),
            ledger.entries()[1]
        );
    }
}
