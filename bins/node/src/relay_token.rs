//! How a relay proves itself to an origin that serves only relays and granted viewers
//! (`--origin-play relays-and-granted`): each pull presents `?relay=<token>`, a short-lived
//! statement signed with the relay's node key that names the relay and the stream. The origin
//! checks the signature and that the relay is a node registered with its coordinator.
//!
//! Token: `<relay node id, 64 hex>.<expiry, Unix ms>.<signature, 128 hex>`; the signature
//! covers `RELAY_PLAY_TAG ‖ node_id(32) ‖ len(8) ‖ stream ‖ expiry_ms(8)`.

use std::time::Duration;

use streamr_core::{CanonicalMessage, KeyPair, NodeId, SignatureBytes, Signed};

/// The query parameter a relay's play carries its token in.
pub const RELAY_PARAM: &str = "relay";
/// Domain tag of the signed bytes (no other signed message starts with it).
const RELAY_PLAY_TAG: &[u8] = b"streamr/relay-play/v1\0";
/// How long a token a relay makes stays valid: it is made afresh for every connection.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens expiring further ahead than this are refused (a clock far off, or a token made to be
/// replayed for long).
const MAX_AHEAD_MS: u64 = 5 * 60_000;

/// What a relay signs to pull one stream from an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPlay {
    /// The relay (its key verifies the signature).
    pub node_id: NodeId,
    /// The stream name pulled.
    pub stream: String,
    /// Unix ms after which the token is refused.
    pub expiry_ms: u64,
}

impl CanonicalMessage for RelayPlay {
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = RELAY_PLAY_TAG.to_vec();
        bytes.extend_from_slice(self.node_id.as_bytes());
        bytes.extend_from_slice(&(self.stream.len() as u64).to_be_bytes());
        bytes.extend_from_slice(self.stream.as_bytes());
        bytes.extend_from_slice(&self.expiry_ms.to_be_bytes());
        bytes
    }
}

/// Why a relay token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayTokenError {
    /// Not `<node id>.<expiry>.<signature>`.
    #[error("malformed relay token")]
    Malformed,
    /// The signature is not the named node's.
    #[error("relay token is not signed by node {0}")]
    BadSignature(NodeId),
    /// Expired, or expiring implausibly far ahead.
    #[error("relay token expired or not yet plausible (expiry {expiry_ms}, now {now_ms})")]
    Expired {
        /// The token's expiry, Unix ms.
        expiry_ms: u64,
        /// The origin's clock, Unix ms.
        now_ms: u64,
    },
}

/// A token for `key`'s node to pull `stream`, valid [`TOKEN_LIFETIME`] from `now_ms`.
pub fn make(key: &KeyPair, stream: &str, now_ms: u64) -> String {
    let body = RelayPlay {
        node_id: key.node_id(),
        stream: stream.to_owned(),
        expiry_ms: now_ms.saturating_add(TOKEN_LIFETIME.as_millis() as u64),
    };
    let signed = Signed::sign(body, key);
    format!(
        "{}.{}.{}",
        signed.body.node_id,
        signed.body.expiry_ms,
        hex::encode(signed.signature.as_bytes())
    )
}

/// The token in a URL query string, if any.
pub fn from_query(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(RELAY_PARAM)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The relay a well-signed, current token for `stream` names (whether that node is one of the
/// coordinator's is for the caller to check).
pub fn verify(token: &str, stream: &str, now_ms: u64) -> Result<NodeId, RelayTokenError> {
    let mut parts = token.split('.');
    let (Some(node), Some(expiry), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RelayTokenError::Malformed);
    };
    let node_id: NodeId = node.parse().map_err(|_| RelayTokenError::Malformed)?;
    let expiry_ms: u64 = expiry.parse().map_err(|_| RelayTokenError::Malformed)?;
    let signature: SignatureBytes = signature.parse().map_err(|_| RelayTokenError::Malformed)?;
    if expiry_ms <= now_ms || expiry_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(RelayTokenError::Expired { expiry_ms, now_ms });
    }
    let verifying = node_id
        .verifying_key()
        .map_err(|_| RelayTokenError::BadSignature(node_id))?;
    let signed = Signed {
        body: RelayPlay {
            node_id,
            stream: stream.to_owned(),
            expiry_ms,
        },
        signature,
    };
    signed
        .verify_with(&verifying)
        .map_err(|_| RelayTokenError::BadSignature(node_id))?;
    Ok(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_names_its_relay_for_its_stream_only() {
        let relay = KeyPair::from_seed([5; 32]);
        let token = make(&relay, "show", 1_000);
        assert_eq!(verify(&token, "show", 2_000), Ok(relay.node_id()));
        assert_eq!(
            from_query(&format!("a=1&relay={token}&b=2")),
            Some(token.as_str())
        );
        assert!(matches!(
            verify(&token, "other", 2_000),
            Err(RelayTokenError::BadSignature(_))
        ));
        assert!(matches!(
            verify(&token, "show", 1_000 + 60_000),
            Err(RelayTokenError::Expired { .. })
        ));
    }

    #[test]
    fn forged_far_future_and_garbled_tokens_are_refused() {
        let relay = KeyPair::from_seed([5; 32]);
        let other = KeyPair::from_seed([6; 32]);
        let token = make(&other, "show", 1_000);
        let forged = token.replacen(
            &other.node_id().to_string(),
            &relay.node_id().to_string(),
            1,
        );
        assert!(matches!(
            verify(&forged, "show", 2_000),
            Err(RelayTokenError::BadSignature(_))
        ));
        let far = make(&relay, "show", 10 * 60_000);
        assert!(matches!(
            verify(&far, "show", 1_000),
            Err(RelayTokenError::Expired { .. })
        ));
        for garbled in ["", "x", "a.b.c", &format!("{token}.x")] {
            assert_eq!(
                verify(garbled, "show", 2_000),
                Err(RelayTokenError::Malformed)
            );
        }
        assert_eq!(from_query("relayx=1&grant=2"), None);
    }
}
