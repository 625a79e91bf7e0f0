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
//! A name is bound, compared and grouped by in one form, [`canonical_operator_name`], so that
//! `acme`, `Acme`, `acme ` and `ａｃｍｅ` (full width) are one operator: no one can take a
//! look-alike of a bound name, and an operator's nodes do not split by a typo in one
//! configuration.
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
use unicode_normalization::UnicodeNormalization;

use crate::identity::{verify_one, KeyPair, NodeId, OperatorKey, SignatureBytes};
use crate::ids::UNNAMED_OPERATOR;

/// Domain tag of an [`OperatorMembership`] signature.
pub const OPERATOR_MEMBERSHIP_TAG: &[u8] = b"streamr/operator-membership/v1\0";

/// The form of an operator name that the coordinator binds, compares and groups nodes by:
/// Unicode NFKC (compatibility forms such as full-width letters, ligatures and superscripts
/// become their plain letters), lower case, NFKC again (lowering can leave a string that is not
/// normalised), without invisible format characters (zero-width spaces and joiners, direction
/// marks, the soft hyphen, the byte order mark), every run of white space made one space and
/// none at either end. Names that differ only in those ways are one name.
///
/// Letters of different scripts that look alike (Latin `a`, Cyrillic `а`) stay different: no
/// normalisation maps them together, and a name of the other script is someone else's
/// operator, which the key binding already keeps from sharing a cap.
///
/// ```
/// use streamr_core::canonical_operator_name;
///
/// assert_eq!(canonical_operator_name(" Acme  Corp "), "acme corp");
/// assert_eq!(canonical_operator_name("ＡＣＭＥ"), "acme");
/// assert_eq!(canonical_operator_name("ac\u{200b}me"), "acme");
/// ```
pub fn canonical_operator_name(name: &str) -> String {
    let lowered: String = name
        .nfkc()
        .filter(|c| !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let normalised: String = lowered.nfkc().filter(|c| !is_invisible(*c)).collect();
    normalised.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Format characters that show nothing (so two names differing only by them look the same).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

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
    ///
    /// Names are judged in their [`canonical_operator_name`] form: `bound` is the key bound to
    /// that form, and a proof signed over either the name as registered or its canonical form
    /// is good (both say the key vouches for the node under that one operator).
    pub fn judge(
        operator: &str,
        node: &NodeId,
        proof: Option<&Self>,
        bound: Option<&OperatorKey>,
    ) -> Result<Option<OperatorKey>, OperatorRefusal> {
        let canonical = canonical_operator_name(operator);
        if canonical.is_empty() || canonical == UNNAMED_OPERATOR {
            return Ok(None);
        }
        if let Some(proof) = proof {
            if proof.verify(operator, node).is_err() {
                proof.verify(&canonical, node)?;
            }
        }
        match (proof, bound) {
            (Some(proof), Some(bound)) if proof.operator_key == *bound => {
                Ok(Some(proof.operator_key))
            }
            (Some(proof), None) => Ok(Some(proof.operator_key)),
            (None, None) => Ok(None),
            (_, Some(bound)) => Err(OperatorRefusal::NameBound {
                name: canonical,
                bound: *bound,
            }),
        }
    }
}

/// Domain tag of an [`OperatorRotation`] signature.
pub const OPERATOR_ROTATION_TAG: &[u8] = b"streamr/operator-rotation/v1\0";

/// An operator's statement, signed by the key its name is bound to, that the name is bound to
/// another key from now on (`streamr operator-rotation`): the way to replace a leaked or
/// retiring key. Once the coordinator accepts it, memberships signed by the old key are
/// refused, and the operator's nodes register again with the new key's.
///
/// `sequence` numbers the name's rotations: the coordinator accepts a statement only when it is
/// above every sequence it accepted for the name, so an old statement cannot be played again
/// (say, to bind the name back to a key that was retired because it leaked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRotation {
    /// The operator name (the coordinator judges it in its [`canonical_operator_name`] form).
    pub operator: String,
    /// The key the name is bound to now, which signs the statement.
    pub old_key: OperatorKey,
    /// The key the name is to be bound to.
    pub new_key: OperatorKey,
    /// Above every sequence of the name's earlier rotations (the first is 1).
    pub sequence: u64,
    /// The old key's signature over [`OperatorRotation::canonical_bytes`].
    pub signature: SignatureBytes,
}

/// Why a rotation statement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationRefusal {
    /// The signature is not the old key's over this statement.
    #[error("the operator rotation is not the old key's signature over this operator name, new key and sequence")]
    BadSignature,
    /// The statement names no operator, or the default name (nobody's).
    #[error("operator name {name:?} is nobody's: it cannot be bound, nor rotated")]
    Unbindable {
        /// The name (canonical).
        name: String,
    },
    /// The old and new key are one key.
    #[error("the new operator key is the old one")]
    SameKey,
    /// The name is not bound to the statement's old key (now).
    #[error("operator name {name:?} is bound to operator key {bound}, not to the rotation's old key {old}")]
    NotBound {
        /// The name (canonical).
        name: String,
        /// The key it is bound to.
        bound: OperatorKey,
        /// The statement's old key.
        old: OperatorKey,
    },
    /// The sequence is not above the name's last accepted rotation: a replay, or out of order.
    #[error("rotation sequence {sequence} of operator name {name:?} is not above its last accepted rotation {last}")]
    Stale {
        /// The name (canonical).
        name: String,
        /// The statement's sequence.
        sequence: u64,
        /// The last accepted sequence of the name.
        last: u64,
    },
}

impl OperatorRotation {
    /// `OPERATOR_ROTATION_TAG ‖ old_key(32) ‖ new_key(32) ‖ sequence(u64) ‖ (len(u32) ‖
    /// canonical operator name)`.
    pub fn canonical_bytes(
        operator: &str,
        old_key: &OperatorKey,
        new_key: &OperatorKey,
        sequence: u64,
    ) -> Vec<u8> {
        let name = canonical_operator_name(operator);
        let mut bytes = OPERATOR_ROTATION_TAG.to_vec();
        bytes.extend_from_slice(old_key.as_bytes());
        bytes.extend_from_slice(new_key.as_bytes());
        bytes.extend_from_slice(&sequence.to_be_bytes());
        let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes
    }

    /// The statement, signed by `old` (the key `operator` is bound to), that `operator` is
    /// bound to `new_key` from rotation `sequence` on.
    pub fn sign(old: &KeyPair, operator: &str, new_key: OperatorKey, sequence: u64) -> Self {
        let old_key = old.operator_key();
        let signature = old.sign(&Self::canonical_bytes(
            operator, &old_key, &new_key, sequence,
        ));
        Self {
            operator: canonical_operator_name(operator),
            old_key,
            new_key,
            sequence,
            signature,
        }
    }

    /// The coordinator's decision on the statement, with the key the name is `bound` to now
    /// and the `last` rotation sequence it accepted for the name (0 for none): `Ok(())` when it
    /// is the bound key's signature, to another key, with a sequence above `last`.
    pub fn judge(&self, bound: &OperatorKey, last: u64) -> Result<(), RotationRefusal> {
        let name = canonical_operator_name(&self.operator);
        if name.is_empty() || name == UNNAMED_OPERATOR {
            return Err(RotationRefusal::Unbindable { name });
        }
        let key = self
            .old_key
            .verifying_key()
            .map_err(|_| RotationRefusal::BadSignature)?;
        verify_one(
            &key,
            &Self::canonical_bytes(&name, &self.old_key, &self.new_key, self.sequence),
            &self.signature,
        )
        .map_err(|_| RotationRefusal::BadSignature)?;
        if self.new_key == self.old_key {
            return Err(RotationRefusal::SameKey);
        }
        if self.old_key != *bound {
            return Err(RotationRefusal::NotBound {
                name,
                bound: *bound,
                old: self.old_key,
            });
        }
        if self.sequence <= last {
            return Err(RotationRefusal::Stale {
                name,
                sequence: self.sequence,
                last,
            });
        }
        Ok(())
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

    #[test]
    fn names_differing_in_case_width_space_or_invisibles_are_one_name() {
        for variant in [
            "acme",
            "Acme",
            "ACME",
            "acme ",
            " acme",
            "\tacme\n",
            "ａｃｍｅ",
            "ac\u{200b}me",
            "\u{feff}acme",
            "a\u{00ad}cme",
        ] {
            assert_eq!(canonical_operator_name(variant), "acme", "{variant:?}");
        }
        assert_eq!(canonical_operator_name("Acme   Video  Co"), "acme video co");
        assert_eq!(canonical_operator_name("ﬁlms"), "films");
        assert_eq!(canonical_operator_name("Straße"), "straße");
        assert_eq!(canonical_operator_name("ÅNGSTRÖM"), "ångström");
        // Composed and decomposed accents are one name.
        assert_eq!(
            canonical_operator_name("Cafe\u{301}"),
            canonical_operator_name("Café")
        );
        // Another script's look-alike letter is another name.
        assert_ne!(canonical_operator_name("аcme"), "acme");
        // Canonical names are fixed points.
        for name in ["acme", "acme video co", "ångström", "straße"] {
            assert_eq!(canonical_operator_name(name), name);
        }
        assert_eq!(canonical_operator_name(" \u{200b} "), "");
    }

    #[test]
    fn a_bound_name_is_judged_in_its_canonical_form() {
        let acme = key(1);
        let squatter = key(5);
        let node = key(2).node_id();
        let bound = acme.operator_key();
        // A look-alike of the bound name is the bound name: refused without the key.
        for variant in ["Acme", "acme ", "ＡＣＭＥ"] {
            let other = OperatorMembership::sign(&squatter, variant, &node);
            assert!(
                matches!(
                    OperatorMembership::judge(variant, &node, Some(&other), Some(&bound)),
                    Err(OperatorRefusal::NameBound { ref name, .. }) if name == "acme"
                ),
                "{variant:?}"
            );
            // The key's proof over the name as written, or over its canonical form, is good.
            for signed in [variant, "acme"] {
                let own = OperatorMembership::sign(&acme, signed, &node);
                assert_eq!(
                    OperatorMembership::judge(variant, &node, Some(&own), Some(&bound)),
                    Ok(Some(bound)),
                    "{variant:?} signed as {signed:?}"
                );
            }
        }
        // A proof over another name is still bad.
        let elsewhere = OperatorMembership::sign(&acme, "acme2", &node);
        assert_eq!(
            OperatorMembership::judge("Acme", &node, Some(&elsewhere), Some(&bound)),
            Err(OperatorRefusal::BadProof)
        );
        // Variants of the default name are nobody's either.
        let own = OperatorMembership::sign(&acme, "Anonymous ", &node);
        assert_eq!(
            OperatorMembership::judge("Anonymous ", &node, Some(&own), None),
            Ok(None)
        );
    }

    #[test]
    fn a_rotation_is_the_bound_keys_and_cannot_be_replayed() {
        let (old, new, other) = (key(1), key(6), key(7));
        let rotation = OperatorRotation::sign(&old, "Acme ", new.operator_key(), 1);
        assert_eq!(rotation.operator, "acme");
        assert_eq!(rotation.judge(&old.operator_key(), 0), Ok(()));
        // Replayed once accepted (the sequence is no longer above the last), or played after
        // the name moved on (the old key is not bound any more).
        assert!(matches!(
            rotation.judge(&old.operator_key(), 1),
            Err(RotationRefusal::Stale {
                sequence: 1,
                last: 1,
                ..
            })
        ));
        assert!(matches!(
            rotation.judge(&new.operator_key(), 1),
            Err(RotationRefusal::NotBound { .. })
        ));
        // Rotating back to the first key later, then replaying the first statement: stale.
        let back = OperatorRotation::sign(&new, "acme", old.operator_key(), 2);
        assert_eq!(back.judge(&new.operator_key(), 1), Ok(()));
        assert!(matches!(
            rotation.judge(&old.operator_key(), 2),
            Err(RotationRefusal::Stale { .. })
        ));
        // Any change to the statement breaks the signature.
        for tampered in [
            OperatorRotation {
                new_key: other.operator_key(),
                ..rotation.clone()
            },
            OperatorRotation {
                sequence: 9,
                ..rotation.clone()
            },
            OperatorRotation {
                operator: "acme2".into(),
                ..rotation.clone()
            },
        ] {
            assert_eq!(
                tampered.judge(&old.operator_key(), 0),
                Err(RotationRefusal::BadSignature)
            );
        }
        // Signed by a key other than the bound one.
        let squatter = OperatorRotation::sign(&other, "acme", other.operator_key(), 5);
        assert_eq!(
            squatter.judge(&old.operator_key(), 0),
            Err(RotationRefusal::SameKey)
        );
        let squatter = OperatorRotation::sign(&other, "acme", new.operator_key(), 5);
        assert!(matches!(
            squatter.judge(&old.operator_key(), 0),
            Err(RotationRefusal::NotBound { .. })
        ));
        let nobody = OperatorRotation::sign(&old, "Anonymous", new.operator_key(), 1);
        assert!(matches!(
            nobody.judge(&old.operator_key(), 0),
            Err(RotationRefusal::Unbindable { .. })
        ));
        let json = serde_json::to_string(&rotation).unwrap();
        assert_eq!(
            serde_json::from_str::<OperatorRotation>(&json).unwrap(),
            rotation
        );
    }
}
