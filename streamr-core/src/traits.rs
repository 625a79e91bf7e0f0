//! What the embedding service plugs in: a clock and settlement storage.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::ledger::LedgerEntry;
use crate::settlement::EpochInputs;
use crate::statement::EpochStatement;

/// Wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync {
    /// Now, Unix ms.
    fn now_ms(&self) -> u64;
}

/// A clock that moves only when told (tests and the simulator).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(now_ms))
    }

    /// Moves the clock to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Durable settlement state: what closing an epoch must persist atomically, and what replay
/// and restart need back.
#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Persists one closed epoch: its published inputs, its statement and the ledger entries it
    /// made, all or nothing. Committing an epoch that is already stored with the same statement
    /// hash succeeds without change (idempotent); a different statement is an error.
    async fn commit_epoch(
        &self,
        inputs: &EpochInputs,
        statement: &EpochStatement,
        entries: &[LedgerEntry],
    ) -> Result<(), Self::Error>;

    /// The newest committed statement.
    async fn last_statement(&self) -> Result<Option<EpochStatement>, Self::Error>;

    /// The published inputs of every committed epoch from `from_epoch` on, in order (for replay
    /// and for rebuilding a [`crate::Settlement`] after a restart).
    async fn epoch_inputs(&self, from_epoch: u64) -> Result<Vec<EpochInputs>, Self::Error>;
}
