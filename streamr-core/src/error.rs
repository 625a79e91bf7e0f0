//! Error types, one per layer.

use crate::identity::NodeId;

/// Why a key, a signature or a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A hex field did not decode to the expected number of bytes.
    #[error("{what}: expected {expected_bytes} bytes as hex")]
    MalformedHex {
        /// Which field (e.g. `"node id"`).
        what: &'static str,
        /// How many bytes it must hold.
        expected_bytes: usize,
    },
    /// Bytes that are not a valid ed25519 public key.
    #[error("{what} is not a valid ed25519 public key")]
    InvalidPublicKey {
        /// Which key.
        what: &'static str,
    },
    /// The signature does not match the message and key.
    #[error("signature does not verify")]
    BadSignature,
    /// A heartbeat's timestamp is too far from the verifier's clock.
    #[error(
        "heartbeat timestamp {timestamp_ms} ms is {skew_ms} ms from now (limit {limit_ms} ms)"
    )]
    StaleTimestamp {
        /// The signed timestamp.
        timestamp_ms: u64,
        /// Its distance to the verifier's clock.
        skew_ms: u64,
        /// The allowed distance.
        limit_ms: u64,
    },
    /// A heartbeat's nonce is not above the last one accepted from that node.
    #[error("heartbeat nonce {nonce} from {node} replayed (last accepted {last})")]
    ReplayedNonce {
        /// The node.
        node: NodeId,
        /// The nonce received.
        nonce: u64,
        /// The highest nonce accepted before.
        last: u64,
    },
    /// A string field exceeds its length limit.
    #[error("{what} is {len} bytes long (limit {limit})")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}
