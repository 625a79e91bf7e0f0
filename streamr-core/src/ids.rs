//! Identifiers that are not keys: sessions, streams, operators, content digests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::SignatureError;

macro_rules! hex_bytes_type {
    ($(#[$meta:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
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
                let mut out = [0u8; $len];
                hex::decode_to_slice(text, &mut out).map_err(|_| SignatureError::MalformedHex {
                    what: $what,
                    expected_bytes: $len,
                })?;
                Ok(Self(out))
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

hex_bytes_type!(
    /// A viewing session's id, chosen by the coordinator when it grants the session.
    SessionId,
    16,
    "session id"
);
hex_bytes_type!(
    /// A blake3 digest: a segment hash, the running digest over segment hashes, a Merkle node.
    ContentDigest,
    32,
    "digest"
);

/// Longest accepted stream or operator name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the length limit ([`MAX_NAME_LEN`] bytes).
            pub fn new(name: impl Into<String>) -> Result<Self, SignatureError> {
                let name = name.into();
                if name.len() > MAX_NAME_LEN {
                    return Err(SignatureError::TooLong {
                        what: $what,
                        len: name.len(),
                        limit: MAX_NAME_LEN,
                    });
                }
                Ok(Self(name))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = SignatureError;
            fn try_from(name: String) -> Result<Self, Self::Error> {
                Self::new(name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A stream's name as the origin publishes it.
    StreamId,
    "stream id"
);
name_type!(
    /// The person or organisation that runs one or more nodes (for per-operator caps).
    OperatorId,
    "operator id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn session_id_round_trips(bytes in any::<[u8; 16]>()) {
            let id = SessionId::from_bytes(bytes);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        }

        #[test]
        fn stream_id_round_trips(name in ".{0,40}") {
            let id = StreamId::new(name).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<StreamId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn overlong_names_are_rejected_on_decode() {
        let json = serde_json::to_string(&"x".repeat(MAX_NAME_LEN + 1)).unwrap();
        assert!(serde_json::from_str::<StreamId>(&json).is_err());
    }
}

/// An IPv4 /24 network (the first three octets), used for self-dealing and Sybil caps.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Subnet24(pub [u8; 3]);

impl Subnet24 {
    /// The /24 that contains `addr`.
    pub fn of(addr: std::net::Ipv4Addr) -> Self {
        let [a, b, c, _] = addr.octets();
        Self([a, b, c])
    }
}

impl fmt::Display for Subnet24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}.{b}.{c}.0/24")
    }
}
