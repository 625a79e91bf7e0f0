//! Identities: ed25519 public keys for nodes, viewers and the coordinator, signatures, and the
//! private signing key wrapper. Keys and signatures travel as lowercase hex in JSON.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::SignatureError;

/// Decodes exactly `N` bytes from a hex string, naming `what` in the error.
fn decode_hex_array<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], SignatureError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| SignatureError::MalformedHex {
        what,
        expected_bytes: N,
    })?;
    Ok(out)
}

macro_rules! public_key_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw public key bytes (checked for being a valid curve point on
            /// [`Self::verifying_key`]).
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 public key bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Decompresses the key for signature checks.
            pub fn verifying_key(&self) -> Result<VerifyingKey, SignatureError> {
                VerifyingKey::from_bytes(&self.0)
                    .map_err(|_| SignatureError::InvalidPublicKey { what: $what })
            }
        }

        impl From<VerifyingKey> for $name {
            fn from(key: VerifyingKey) -> Self {
                Self(key.to_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = SignatureError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                decode_hex_array::<32>($what, text).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

public_key_type!(
    /// A friend node's identity: its ed25519 public key.
    NodeId,
    "node id"
);
public_key_type!(
    /// A viewer's ed25519 public key; the viewer signs its receipts with the matching secret.
    ViewerKey,
    "viewer key"
);
public_key_type!(
    /// The coordinator's ed25519 public key; it signs session grants.
    CoordinatorKey,
    "coordinator key"
);
public_key_type!(
    /// An operator's ed25519 public key: it signs the ids of the nodes its operator runs, and
    /// the coordinator binds an operator name to the first key that proves a node under it
    /// (see [`crate::OperatorMembership`]).
    OperatorKey,
    "operator key"
);

/// An ed25519 signature, hex encoded (128 characters) in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureBytes([u8; 64]);

impl SignatureBytes {
    /// Wraps raw signature bytes.
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The raw 64 signature bytes.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The signature in the form ed25519-dalek verifies.
    pub fn to_signature(&self) -> ed25519_dalek::Signature {
        ed25519_dalek::Signature::from_bytes(&self.0)
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", hex::encode(self.0))
    }
}

impl FromStr for SignatureBytes {
    type Err = SignatureError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_hex_array::<64>("signature", text).map(Self)
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret ed25519 key that signs grants (coordinator), receipts (viewer) or heartbeats (node).
///
/// Deliberately neither `Debug` nor `Serialize`: the secret never leaks into logs or JSON.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl KeyPair {
    /// A fresh key from a cryptographically secure random source.
    pub fn generate<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// Rebuilds a key from its 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Reads a key from its 64-character hex secret seed.
    pub fn from_seed_hex(text: &str) -> Result<Self, SignatureError> {
        decode_hex_array::<32>("secret seed", text.trim()).map(Self::from_seed)
    }

    /// The 32-byte secret seed (store it like a password).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half as raw bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The public half as a node identity.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(self.public_bytes())
    }

    /// The public half as a viewer key.
    pub fn viewer_key(&self) -> ViewerKey {
        ViewerKey::from_bytes(self.public_bytes())
    }

    /// The public half as the coordinator key.
    pub fn coordinator_key(&self) -> CoordinatorKey {
        CoordinatorKey::from_bytes(self.public_bytes())
    }

    /// The public half as an operator key.
    pub fn operator_key(&self) -> OperatorKey {
        OperatorKey::from_bytes(self.public_bytes())
    }

    /// Signs `message` (always a canonical encoding from [`crate::canonical`]).
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.0.sign(message).to_bytes())
    }
}

/// Checks one signature with ed25519's strict rules (no malleable or small-order keys).
pub(crate) fn verify_one(
    key: &VerifyingKey,
    message: &[u8],
    signature: &SignatureBytes,
) -> Result<(), SignatureError> {
    key.verify_strict(message, &signature.to_signature())
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn node_id_round_trips_through_hex_and_json(bytes in any::<[u8; 32]>()) {
            let id = NodeId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        }

        #[test]
        fn signature_round_trips_through_json(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let mut raw = [0u8; 64];
            raw[..32].copy_from_slice(&a);
            raw[32..].copy_from_slice(&b);
            let sig = SignatureBytes::from_bytes(raw);
            let json = serde_json::to_string(&sig).unwrap();
            prop_assert_eq!(serde_json::from_str::<SignatureBytes>(&json).unwrap(), sig);
        }
    }

    #[test]
    fn malformed_hex_names_the_field() {
        let err = "abcd".parse::<ViewerKey>().unwrap_err();
        assert_eq!(
            err,
            SignatureError::MalformedHex {
                what: "viewer key",
                expected_bytes: 32
            }
        );
    }

    #[test]
    fn key_pair_signs_and_verifies() {
        let key = KeyPair::from_seed([7; 32]);
        let sig = key.sign(b"hello");
        let vk = key.node_id().verifying_key().unwrap();
        assert!(verify_one(&vk, b"hello", &sig).is_ok());
        assert_eq!(
            verify_one(&vk, b"hellO", &sig),
            Err(SignatureError::BadSignature)
        );
        let restored = KeyPair::from_seed_hex(&hex::encode(key.seed())).unwrap();
        assert_eq!(restored.node_id(), key.node_id());
    }
}
