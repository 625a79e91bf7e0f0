//! The blake3 Merkle tree over every node's cumulative balances, published with each epoch.
//!
//! Leaf: `blake3(0x00 ‖ node_id(32) ‖ cumulative_earned(8, BE) ‖ cumulative_vested(8, BE))`;
//! inner node: `blake3(0x01 ‖ left ‖ right)`. Leaves are sorted by node id; a level with an odd
//! count promotes its last hash unchanged (no duplication, so no second-preimage ambiguity).

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::ids::ContentDigest;

/// One node's cumulative totals, the content of a Merkle leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceLeaf {
    /// The node.
    pub node_id: NodeId,
    /// Rewards credited minus penalties, all epochs so far, micro-units.
    pub cumulative_earned: u64,
    /// Of which vested (payable), micro-units.
    pub cumulative_vested: u64,
}

impl BalanceLeaf {
    /// The leaf hash.
    pub fn hash(&self) -> ContentDigest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[0x00]);
        hasher.update(self.node_id.as_bytes());
        hasher.update(&self.cumulative_earned.to_be_bytes());
        hasher.update(&self.cumulative_vested.to_be_bytes());
        ContentDigest::from_bytes(*hasher.finalize().as_bytes())
    }
}

fn parent(left: &ContentDigest, right: &ContentDigest) -> ContentDigest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    ContentDigest::from_bytes(*hasher.finalize().as_bytes())
}

/// Which side a proof's sibling hash sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The sibling is the left child.
    Left,
    /// The sibling is the right child.
    Right,
}

/// The path from one leaf to the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Siblings from the leaf level up; levels where the node was promoted have none.
    pub siblings: Vec<(Side, ContentDigest)>,
}

impl MerkleProof {
    /// Whether `leaf` with this proof hashes to `root`.
    pub fn verify(&self, root: &ContentDigest, leaf: &BalanceLeaf) -> bool {
        let computed = self
            .siblings
            .iter()
            .fold(leaf.hash(), |acc, (side, sibling)| match side {
                Side::Left => parent(sibling, &acc),
                Side::Right => parent(&acc, sibling),
            });
        computed == *root
    }
}

/// A built tree: every level's hashes, leaves first.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<ContentDigest>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` in the order given (the caller sorts by node id).
    pub fn build(leaves: &[BalanceLeaf]) -> Self {
        let mut levels = vec![leaves.iter().map(BalanceLeaf::hash).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => parent(left, right),
                    [single] => *single,
                    _ => ContentDigest::default(),
                })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// The root; the all-zero digest for an empty tree.
    pub fn root(&self) -> ContentDigest {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The proof for the leaf at `index`, or `None` past the end.
    pub fn proof(&self, index: usize) -> Option<MerkleProof> {
        let leaf_count = self.levels.first().map_or(0, Vec::len);
        if index >= leaf_count {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index;
        for level in self.levels.iter().take(self.levels.len().saturating_sub(1)) {
            let sibling = i ^ 1;
            if let Some(hash) = level.get(sibling) {
                let side = if sibling < i { Side::Left } else { Side::Right };
                siblings.push((side, *hash));
            }
            i /= 2;
        }
        Some(MerkleProof { siblings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize, salt: u64) -> Vec<BalanceLeaf> {
        (0..n)
            .map(|i| BalanceLeaf {
                node_id: NodeId::from_bytes([i as u8; 32]),
                cumulative_earned: salt.wrapping_mul(i as u64 + 1),
                cumulative_vested: salt / (i as u64 + 1),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_proof_verifies_and_any_altered_leaf_fails(
            n in 1usize..70,
            salt in any::<u64>(),
            which in any::<prop::sample::Index>(),
            field in 0u8..3,
        ) {
            let leaves = leaves(n, salt);
            let tree = MerkleTree::build(&leaves);
            let root = tree.root();
            for (i, leaf) in leaves.iter().enumerate() {
                prop_assert!(tree.proof(i).unwrap().verify(&root, leaf));
            }
            let i = which.index(n);
            let mut altered = leaves[i];
            match field {
                0 => altered.cumulative_earned = altered.cumulative_earned.wrapping_add(1),
                1 => altered.cumulative_vested = altered.cumulative_vested.wrapping_add(1),
                _ => altered.node_id = NodeId::from_bytes([0xEE; 32]),
            }
            prop_assert!(!tree.proof(i).unwrap().verify(&root, &altered));
            prop_assert_eq!(MerkleTree::build(&leaves).root(), root);
        }
    }

    #[test]
    fn proof_past_the_end_is_none() {
        assert!(MerkleTree::build(&leaves(3, 1)).proof(3).is_none());
        assert_eq!(MerkleTree::build(&[]).root(), ContentDigest::default());
    }
}
