//! The hash-chained statement that closes each epoch.

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, STATEMENT_TAG};
use crate::ids::ContentDigest;

/// What an epoch's settlement published. Each statement names its predecessor's hash, so the
/// sequence cannot be rewritten without changing every later hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStatement {
    /// The epoch number.
    pub epoch: u64,
    /// [`EpochStatement::hash`] of the previous epoch's statement (all zero for the first).
    pub previous_hash: ContentDigest,
    /// blake3 of the epoch's published inputs as JSON.
    pub inputs_hash: ContentDigest,
    /// The pool issued for the epoch, micro-units.
    pub pool: u64,
    /// Rewards credited to nodes.
    pub distributed: u64,
    /// Penalties taken from unvested rewards.
    pub penalties: u64,
    /// Rewards that vested at this epoch's close.
    pub vested: u64,
    /// The Merkle root over every node's [`crate::BalanceLeaf`].
    pub merkle_root: ContentDigest,
    /// Number of leaves.
    pub leaf_count: u64,
}

impl EpochStatement {
    /// `blake3(STATEMENT_TAG ‖ epoch ‖ previous_hash ‖ inputs_hash ‖ pool ‖ distributed ‖
    /// penalties ‖ vested ‖ merkle_root ‖ leaf_count)`, integers as u64 big-endian.
    pub fn hash(&self) -> ContentDigest {
        let bytes = CanonicalWriter::new(STATEMENT_TAG)
            .u64(self.epoch)
            .fixed(self.previous_hash.as_bytes())
            .fixed(self.inputs_hash.as_bytes())
            .u64(self.pool)
            .u64(self.distributed)
            .u64(self.penalties)
            .u64(self.vested)
            .fixed(self.merkle_root.as_bytes())
            .u64(self.leaf_count)
            .finish();
        ContentDigest::from_bytes(*blake3::hash(&bytes).as_bytes())
    }
}
