//! The URL form of a signed session grant: a compact hex token a player carries as
//! `?grant=<token>` on RTMP stream names and HTTP URLs, so plain players (ffplay, VLC) can
//! present it without knowing anything about grants.
//!
//! Layout (then hex-encoded): `version(1) = 1 ‖ session_id(16) ‖ viewer(32) ‖ node_id(32) ‖
//! max_bytes(8) ‖ expiry_ms(8) ‖ signature(64) ‖ stream_id(rest, UTF-8)`, integers big-endian.

use streamr_core::{
    NodeId, SessionGrant, SessionId, SignatureBytes, Signed, SignedGrant, StreamId, ViewerKey,
};

/// The query parameter that carries the token.
pub const GRANT_PARAM: &str = "grant";

const VERSION: u8 = 1;
const FIXED_LEN: usize = 1 + 16 + 32 + 32 + 8 + 8 + 64;

/// Why a grant token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantTokenError {
    /// The token is not hex.
    #[error("grant token is not hex (at character {position})")]
    NotHex {
        /// Index of the first bad character.
        position: usize,
    },
    /// The token is shorter than its fixed part.
    #[error("grant token is {len} bytes, shorter than the {FIXED_LEN}-byte fixed part")]
    TooShort {
        /// Decoded length.
        len: usize,
    },
    /// The token names a layout this code does not know.
    #[error("grant token version {0} is not supported (expected {VERSION})")]
    Version(u8),
    /// The stream name in the token is not valid UTF-8 or too long.
    #[error("grant token stream name is invalid: {0}")]
    StreamName(String),
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(slice) = bytes.get(at..at + N) {
        out.copy_from_slice(slice);
    }
    out
}

/// Encodes a signed grant as a URL-safe token.
pub fn encode(grant: &SignedGrant) -> String {
    let body = &grant.body;
    let mut bytes = Vec::with_capacity(FIXED_LEN + body.stream_id.as_str().len());
    bytes.push(VERSION);
    bytes.extend_from_slice(body.session_id.as_bytes());
    bytes.extend_from_slice(body.viewer.as_bytes());
    bytes.extend_from_slice(body.node_id.as_bytes());
    bytes.extend_from_slice(&body.max_bytes.to_be_bytes());
    bytes.extend_from_slice(&body.expiry_ms.to_be_bytes());
    bytes.extend_from_slice(grant.signature.as_bytes());
    bytes.extend_from_slice(body.stream_id.as_str().as_bytes());
    hex::encode(bytes)
}

/// Decodes a token made by [`encode`]. The signature is not checked here.
pub fn decode(token: &str) -> Result<SignedGrant, GrantTokenError> {
    let bytes = hex::decode(token).map_err(|error| match error {
        hex::FromHexError::InvalidHexCharacter { index, .. } => {
            GrantTokenError::NotHex { position: index }
        }
        _ => GrantTokenError::NotHex {
            position: token.len(),
        },
    })?;
    if bytes.len() < FIXED_LEN {
        return Err(GrantTokenError::TooShort { len: bytes.len() });
    }
    if bytes.first() != Some(&VERSION) {
        return Err(GrantTokenError::Version(
            bytes.first().copied().unwrap_or(0),
        ));
    }
    let stream = std::str::from_utf8(bytes.get(FIXED_LEN..).unwrap_or_default())
        .map_err(|e| GrantTokenError::StreamName(e.to_string()))?;
    let stream_id =
        StreamId::new(stream).map_err(|e| GrantTokenError::StreamName(e.to_string()))?;
    Ok(Signed {
        body: SessionGrant {
            session_id: SessionId::from_bytes(take::<16>(&bytes, 1)),
            viewer: ViewerKey::from_bytes(take::<32>(&bytes, 17)),
            node_id: NodeId::from_bytes(take::<32>(&bytes, 49)),
            max_bytes: u64::from_be_bytes(take::<8>(&bytes, 81)),
            expiry_ms: u64::from_be_bytes(take::<8>(&bytes, 89)),
            stream_id,
        },
        signature: SignatureBytes::from_bytes(take::<64>(&bytes, 97)),
    })
}

/// `url` with `grant=<token>` added to its query string (unless it carries one already).
pub fn with_grant(url: &str, grant: &SignedGrant) -> String {
    with_grant_token(url, &encode(grant))
}

/// `url` with an encoded `token` added as `grant=` (unless the URL carries a grant already).
pub fn with_grant_token(url: &str, token: &str) -> String {
    let has_grant = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("grant=")));
    if has_grant {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{GRANT_PARAM}={token}")
}

/// The token in a query string (`a=1&grant=...`), if any.
pub fn from_query(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("grant="))
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::KeyPair;

    fn grant() -> SignedGrant {
        let coordinator = KeyPair::from_seed([7; 32]);
        Signed::sign(
            SessionGrant {
                session_id: SessionId::from_bytes([1; 16]),
                viewer: KeyPair::from_seed([2; 32]).viewer_key(),
                node_id: KeyPair::from_seed([3; 32]).node_id(),
                stream_id: StreamId::new("show.main").unwrap(),
                max_bytes: 123_456_789,
                expiry_ms: 1_800_000_000_000,
            },
            &coordinator,
        )
    }

    #[test]
    fn a_token_round_trips_and_still_verifies() {
        let grant = grant();
        let decoded = decode(&encode(&grant)).unwrap();
        assert_eq!(decoded, grant);
        let key = KeyPair::from_seed([7; 32]).coordinator_key();
        assert!(decoded.verify(&key).is_ok());
    }

    #[test]
    fn broken_tokens_say_what_is_wrong() {
        assert_eq!(decode("zz"), Err(GrantTokenError::NotHex { position: 0 }));
        assert_eq!(decode("0102"), Err(GrantTokenError::TooShort { len: 2 }));
        let mut token = encode(&grant());
        token.replace_range(0..2, "09");
        assert_eq!(decode(&token), Err(GrantTokenError::Version(9)));
    }

    #[test]
    fn urls_gain_one_grant_parameter() {
        let grant = grant();
        let url = with_grant("rtmp://h:1935/live/show", &grant);
        let (_, query) = url.split_once('?').unwrap();
        assert_eq!(decode(from_query(query).unwrap()).unwrap(), grant);
        assert_eq!(with_grant(&url, &grant), url);
        assert!(with_grant("http://h/x.flv?a=1", &grant).starts_with("http://h/x.flv?a=1&grant="));
        assert_eq!(from_query("a=1&grant="), None);
    }
}
