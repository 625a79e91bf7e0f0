//! Session grants: the coordinator's signed permission for one viewer to be served by one node.

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, GRANT_TAG};
use crate::error::SignatureError;
use crate::identity::{CoordinatorKey, NodeId, ViewerKey};
use crate::ids::{SessionId, StreamId};
use crate::signed::{CanonicalMessage, Signed};

/// The coordinator's routing decision: `viewer` may watch `stream` from `node` for up to
/// `max_bytes` until `expiry_ms` (Unix milliseconds). Only receipts under a grant earn rewards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// Unique session id.
    pub session_id: SessionId,
    /// The viewer's public key; its receipts must verify with it.
    pub viewer: ViewerKey,
    /// The node that serves the session.
    pub node_id: NodeId,
    /// The stream watched.
    pub stream_id: StreamId,
    /// The most bytes receipts may acknowledge (stream bitrate × grant duration plus headroom).
    pub max_bytes: u64,
    /// The end of the grant in Unix milliseconds; later receipts are rejected.
    pub expiry_ms: u64,
}

impl CanonicalMessage for SessionGrant {
    /// `GRANT_TAG ‖ session_id(16) ‖ viewer(32) ‖ node_id(32) ‖ len(stream_id) ‖ stream_id ‖
    /// max_bytes(8) ‖ expiry_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(GRANT_TAG)
            .fixed(self.session_id.as_bytes())
            .fixed(self.viewer.as_bytes())
            .fixed(self.node_id.as_bytes())
            .str(self.stream_id.as_str())
            .u64(self.max_bytes)
            .u64(self.expiry_ms)
            .finish()
    }
}

/// A grant signed by the coordinator.
pub type SignedGrant = Signed<SessionGrant>;

impl Signed<SessionGrant> {
    /// Checks the coordinator's signature.
    pub fn verify(&self, coordinator: &CoordinatorKey) -> Result<&SessionGrant, SignatureError> {
        self.verify_with(&coordinator.verifying_key()?)
    }
}
