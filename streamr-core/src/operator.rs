//! Operator names bound to operator keys.
//!
//! One operator's nodes are capped together (20 % of the pool) and the collusion rule weighs
//! viewers by each operator's share of the routes, so an operator name must not be free for
//! anyone to take: a node registering under a big operator's name would share that operator's
//! cap (taking pay from it) and move its route share. An operator therefore holds an ed25519
//! key ([`OperatorKey`]) and signs the id of every node it runs ([`OperatorMembership`]). The
//! coordinator binds a name to the first key that proves a node under it and refuses a
//! registration that names a bound operator without that key's signature
//! ([`OperatorMembership::judge`]). A node that proves no membership is its own operator, as a
//! node that sets no name always was ([`crate::OperatorId::of_node`]).
//!
//! ```
//! use streamr_core::{KeyPair, OperatorMembership, OperatorRefusal};
//!
//! let acme = KeyPair::from_seed([1; 32]);
//! let node = KeyPair::from_seed([2; 32]).node_id();
//! let proof = OperatorMembership::sign(&acme, "acme", &node);
//! // The first proof binds the name; the same key's proofs keep matching it.
//! assert_eq!(OperatorMembership::judge("acme", &node, Some(&proof), None), Ok(Some(acme.operator_key())));
//! let bound = acme.operator_key();
//! // Without the key's signature a registration naming "acme" is refused.
//! assert!(matches!(
//!     OperatorMembership::judge("acme", &node, None, Some(&bound)),
//!     Err(OperatorRefusal::NameBound { .. })
//! ));
//! ```

use serde::{Deserialize, Serialize};

use crate::identity::{verify_one, KeyPair, NodeId, OperatorKey, SignatureBytes};
use crate::ids::UNNAMED_OPERATOR;

/// Domain tag of an [`OperatorMembership`] signature.
pub const OPERATOR_MEMBERSHIP_TAG: &[u8] = b"streamr/operator-membership/v1\0";

/// An operator's signature saying that a node is one of its own, under one operator name.
///
/// It has no time in it: membership lasts as long as the node, and the signature is good only
/// for that node id and that name, so copying it elsewhere proves nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMembership {
    /// The operator's public key.
    pub operator_key: OperatorKey,
    /// The operator key's signature over [`OperatorMembership::canonical_bytes`].
    pub signature: SignatureBytes,
}

/// Why a registration's operator name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorRefusal {
    /// The membership signature does not verify for this node and name.
    #[error("the operator membership proof is not the operator key's signature over this node id and operator name")]
    BadProof,
    /// The name is bound to an operator key the registration has no signature of.
    #[error("operator name {name:?} is bound to operator key {bound}; sign the node with that key (streamr-node --operator-key), or register under another name")]
    NameBound {
        /// The name asked for.
        name: String,
        /// The key it is bound to.
        bound: OperatorKey,
    },
}

impl OperatorMembership {
    /// `OPERATOR_MEMBERSHIP_TAG ‖ operator_key(32) ‖ (len(u32) ‖ operator name) ‖ node_id(32)`.
    pub fn canonical_bytes(operator_key: &OperatorKey, operator: &str, node: &NodeId) -> Vec<u8> {
        let mut bytes = OPERATOR_MEMBERSHIP_TAG.to_vec();
        bytes.extend_from_slice(operator_key.as_bytes());
        let len = u32::try_from(operator.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(operator.as_bytes());
        bytes.extend_from_slice(node.as_bytes());
        bytes
    }

    /// The operator `key` vouches for `node` as one of its nodes under `operator`.
    pub fn sign(key: &KeyPair, operator: &str, node: &NodeId) -> Self {
        let operator_key = key.operator_key();
        let signature = key.sign(&Self::canonical_bytes(&operator_key, operator, node));
        Self {
            operator_key,
            signature,
        }
    }

    /// Whether this is the operator key's signature over `node` under `operator`.
    pub fn verify(&self, operator: &str, node: &NodeId) -> Result<(), OperatorRefusal> {
        let key = self
            .operator_key
            .verifying_key()
            .map_err(|_| OperatorRefusal::BadProof)?;
        verify_one(
            &key,
            &Self::canonical_bytes(&self.operator_key, operator, node),
            &self.signature,
        )
        .map_err(|_| OperatorRefusal::BadProof)
    }

    /// The coordinator's decision on a registration of `node` under the name `operator`, with
    /// the membership `proof` it carries and the key the name is `bound` to (if any):
    ///
    /// - `Ok(Some(key))`: the node proved membership under `key`; when the name is not bound
    ///   yet, the coordinator binds it to `key` (first claim wins; it judges again with the
    ///   winner should another registration bind it first) and groups the node under the name;
    /// - `Ok(None)`: the node proved nothing (or set no name: [`UNNAMED_OPERATOR`], empty) and
    ///   the name is free: it is registered as its own operator, the name kept for display;
    /// - `Err`: the proof is bad, or the name is bound and the node has no signature of the
    ///   bound key.
    pub fn judge(
        operator: &str,
        node: &NodeId,
        proof: Option<&Self>,
        bound: Option<&OperatorKey>,
    ) -> Result<Option<OperatorKey>, OperatorRefusal> {
        if operator.is_empty() || operator == UNNAMED_OPERATOR {
            return Ok(None);
        }
        if let Some(proof) = proof {
            proof.verify(operator, node)?;
        }
        match (proof, bound) {
            (Some(proof), Some(bound)) if proof.operator_key == *bound => {
                Ok(Some(proof.operator_key))
            }
            (Some(proof), None) => Ok(Some(proof.operator_key)),
            (None, None) => Ok(None),
            (_, Some(bound)) => Err(OperatorRefusal::NameBound {
                name: operator.to_owned(),
                bound: *bound,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> KeyPair {
        KeyPair::from_seed([seed; 32])
    }

    #[test]
    fn a_proof_binds_its_node_and_name_only() {
        let acme = key(1);
        let node = key(2).node_id();
        let other = key(3).node_id();
        let proof = OperatorMembership::sign(&acme, "acme", &node);
        assert_eq!(proof.verify("acme", &node), Ok(()));
        assert_eq!(proof.verify("acme", &other), Err(OperatorRefusal::BadProof));
        assert_eq!(proof.verify("acme2", &node), Err(OperatorRefusal::BadProof));
        // A key claiming to have signed with another's public key.
        let forged = OperatorMembership {
            operator_key: key(4).operator_key(),
            ..proof
        };
        assert_eq!(forged.verify("acme", &node), Err(OperatorRefusal::BadProof));
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(
            serde_json::from_str::<OperatorMembership>(&json).unwrap(),
            proof
        );
    }

    #[test]
    fn a_bound_name_needs_its_keys_signature() {
        let acme = key(1);
        let squatter = key(5);
        let node = key(2).node_id();
        let bound = acme.operator_key();
        let own = OperatorMembership::sign(&acme, "acme", &node);
        let other = OperatorMembership::sign(&squatter, "acme", &node);
        let judge = |proof: Option<&OperatorMembership>, bound: Option<&OperatorKey>| {
            OperatorMembership::judge("acme", &node, proof, bound)
        };
        assert_eq!(judge(Some(&own), Some(&bound)), Ok(Some(bound)));
        assert!(matches!(
            judge(None, Some(&bound)),
            Err(OperatorRefusal::NameBound { bound: b, .. }) if b == bound
        ));
        assert!(matches!(
            judge(Some(&other), Some(&bound)),
            Err(OperatorRefusal::NameBound { .. })
        ));
        // A free name: the first proof binds it, no proof leaves the node its own operator.
        assert_eq!(judge(Some(&other), None), Ok(Some(squatter.operator_key())));
        assert_eq!(judge(None, None), Ok(None));
        // A bad proof is refused even for a free name.
        let bad = OperatorMembership {
            signature: other.signature,
            ..own
        };
        assert_eq!(judge(Some(&bad), None), Err(OperatorRefusal::BadProof));
        // The default name is nobody's: never bound, never grouped.
        for name in [UNNAMED_OPERATOR, ""] {
            assert_eq!(
                OperatorMembership::judge(name, &node, Some(&own), Some(&bound)),
                Ok(None)
            );
        }
    }
}
