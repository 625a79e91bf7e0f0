//! Checking the coordinator-signed session grant a viewer presents (`?grant=<token>`).

use std::sync::{Arc, OnceLock};

use streamr_client::grant_token::{self, GrantTokenError};
use streamr_core::{CoordinatorKey, NodeId, SessionGrant};

/// Why a viewer's grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantRefusal {
    /// No `grant=` parameter.
    #[error("a session grant is required: ask the coordinator for a play URL")]
    Missing,
    /// The token could not be decoded.
    #[error("malformed grant: {0}")]
    Malformed(GrantTokenError),
    /// The coordinator's signature does not verify.
    #[error("grant signature is not the coordinator's")]
    BadSignature,
    /// The grant names another node.
    #[error("grant is for node {granted}, not this node")]
    WrongNode {
        /// The node in the grant.
        granted: NodeId,
    },
    /// The grant names another stream.
    #[error("grant is for stream {granted:?}, not {requested:?}")]
    WrongStream {
        /// The stream in the grant.
        granted: String,
        /// The stream asked for.
        requested: String,
    },
    /// The node has not learnt the coordinator's public key yet (it has not reached the
    /// coordinator since it started, and no key was pinned), so it cannot check any grant.
    #[error("this node has not reached its coordinator yet and cannot check grants")]
    KeyUnknown,
    /// The grant has expired.
    #[error("grant expired at {expiry_ms} (now {now_ms})")]
    Expired {
        /// The grant's expiry, Unix ms.
        expiry_ms: u64,
        /// The node's clock, Unix ms.
        now_ms: u64,
    },
}

/// Verifies grants for one node against the coordinator's public key. Clones share the key,
/// so a checker made before the key is known starts accepting grants once it is set.
#[derive(Debug, Clone)]
pub struct GrantChecker {
    coordinator: Arc<OnceLock<CoordinatorKey>>,
    node_id: NodeId,
}

impl GrantChecker {
    /// A checker accepting grants `coordinator` signed for `node_id`.
    pub fn new(coordinator: CoordinatorKey, node_id: NodeId) -> Self {
        let checker = GrantChecker::awaiting_key(node_id);
        checker.set_key(coordinator);
        checker
    }

    /// A checker for `node_id` that refuses every grant ([`GrantRefusal::KeyUnknown`]) until
    /// [`GrantChecker::set_key`] gives it the coordinator's key.
    pub fn awaiting_key(node_id: NodeId) -> Self {
        GrantChecker {
            coordinator: Arc::new(OnceLock::new()),
            node_id,
        }
    }

    /// Sets the coordinator's key; false (and unchanged) when a key was set already.
    pub fn set_key(&self, coordinator: CoordinatorKey) -> bool {
        self.coordinator.set(coordinator).is_ok()
    }

    /// Checks the grant in `query` (a URL query string) for playing `stream` at `now_ms`.
    pub fn check(
        &self,
        query: &str,
        stream: &str,
        now_ms: u64,
    ) -> Result<SessionGrant, GrantRefusal> {
        let token = grant_token::from_query(query).ok_or(GrantRefusal::Missing)?;
        let signed = grant_token::decode(token).map_err(GrantRefusal::Malformed)?;
        let coordinator = self.coordinator.get().ok_or(GrantRefusal::KeyUnknown)?;
        let grant = signed
            .verify(coordinator)
            .map_err(|_| GrantRefusal::BadSignature)?;
        if grant.node_id != self.node_id {
            return Err(GrantRefusal::WrongNode {
                granted: grant.node_id,
            });
        }
        if grant.stream_id.as_str() != stream {
            return Err(GrantRefusal::WrongStream {
                granted: grant.stream_id.to_string(),
                requested: stream.to_owned(),
            });
        }
        if grant.expiry_ms <= now_ms {
            return Err(GrantRefusal::Expired {
                expiry_ms: grant.expiry_ms,
                now_ms,
            });
        }
        Ok(grant.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::{KeyPair, SessionId, Signed, StreamId};

    fn token(signer: &KeyPair, node: NodeId, stream: &str, expiry_ms: u64) -> String {
        let grant = Signed::sign(
            SessionGrant {
                session_id: SessionId::from_bytes([1; 16]),
                viewer: KeyPair::from_seed([2; 32]).viewer_key(),
                node_id: node,
                stream_id: StreamId::new(stream).unwrap(),
                max_bytes: 1 << 30,
                expiry_ms,
            },
            signer,
        );
        format!("grant={}", grant_token::encode(&grant))
    }

    #[test]
    fn a_checker_without_the_key_refuses_until_it_is_set() {
        let coordinator = KeyPair::from_seed([7; 32]);
        let node = KeyPair::from_seed([3; 32]).node_id();
        let checker = GrantChecker::awaiting_key(node);
        let shared = checker.clone();
        let good = token(&coordinator, node, "show", 2_000);
        assert_eq!(
            checker.check(&good, "show", 1_000),
            Err(GrantRefusal::KeyUnknown)
        );
        assert!(shared.set_key(coordinator.coordinator_key()));
        assert!(checker.check(&good, "show", 1_000).is_ok());
        assert!(!shared.set_key(KeyPair::from_seed([8; 32]).coordinator_key()));
    }

    #[test]
    fn only_a_fresh_grant_for_this_node_and_stream_passes() {
        let coordinator = KeyPair::from_seed([7; 32]);
        let node = KeyPair::from_seed([3; 32]).node_id();
        let checker = GrantChecker::new(coordinator.coordinator_key(), node);
        let good = token(&coordinator, node, "show", 2_000);
        assert!(checker.check(&good, "show", 1_000).is_ok());
        assert_eq!(checker.check("", "show", 1_000), Err(GrantRefusal::Missing));
        assert!(matches!(
            checker.check("grant=xyz", "show", 1_000),
            Err(GrantRefusal::Malformed(_))
        ));
        let forged = token(&KeyPair::from_seed([8; 32]), node, "show", 2_000);
        assert_eq!(
            checker.check(&forged, "show", 1_000),
            Err(GrantRefusal::BadSignature)
        );
        let other = KeyPair::from_seed([4; 32]).node_id();
        assert!(matches!(
            checker.check(&token(&coordinator, other, "show", 2_000), "show", 1_000),
            Err(GrantRefusal::WrongNode { .. })
        ));
        assert!(matches!(
            checker.check(&good, "other", 1_000),
            Err(GrantRefusal::WrongStream { .. })
        ));
        assert!(matches!(
            checker.check(&good, "show", 2_000),
            Err(GrantRefusal::Expired { .. })
        ));
    }
}
