//! Identifiers that are not keys: sessions, streams, operators, content digests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SignatureError;

/// A fixed-size byte string written as lowercase hex in text and JSON (`Display`, `FromStr`,
/// serde), shared by the id, digest and handshake types.
macro_rules! hex_bytes_type {
    ($(#[$meta:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&::hex::encode(self.0))
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), ::hex::encode(self.0))
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::error::SignatureError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                ::hex::decode_to_slice(text, &mut out).map_err(|_| {
                    $crate::error::SignatureError::MalformedHex {
                        what: $what,
                        expected_bytes: $len,
                    }
                })?;
                Ok(Self(out))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&::hex::encode(self.0))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use hex_bytes_type;

hex_bytes_type!(
    #[derive(Default)]
    /// A viewing session's id, chosen by the coordinator when it grants the session.
    SessionId,
    16,
    "session id"
);
hex_bytes_type!(
    #[derive(Default)]
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

/// The operator name a node registers with when its operator set none (`streamr-node
/// --operator`'s default): unrelated nodes share it.
pub const UNNAMED_OPERATOR: &str = "anonymous";

impl OperatorId {
    /// The operator the rules group a node under (the operator cap, the collusion test's route
    /// shares): the operator name the node proved membership of (`member`: its registration
    /// carried the signature of the key the coordinator bound that name to; see
    /// [`crate::OperatorMembership`]), or, where it proved none, set no name (the default
    /// [`UNNAMED_OPERATOR`], an empty name) or one too long to be a name, the node alone, as
    /// `node` (its id). Names are free text: a node naming an operator without its key's
    /// signature must not share that operator's cap, nor unrelated nodes that set no name one
    /// operator's cap.
    ///
    /// The name is taken in its [`crate::canonical_operator_name`] form, so nodes that wrote
    /// one name differently (case, width, spaces) are one operator.
    pub fn of_node(member: Option<&str>, node: &str) -> Result<Self, SignatureError> {
        let registered = member
            .map(crate::operator::canonical_operator_name)
            .unwrap_or_default();
        let named = !registered.is_empty() && registered != UNNAMED_OPERATOR;
        match Self::new(registered) {
            Ok(operator) if named => Ok(operator),
            _ => Self::new(node),
        }
    }
}

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
    fn a_node_without_an_operator_name_is_its_own_operator() {
        let of = |name: &str| OperatorId::of_node(Some(name), "node-1").unwrap();
        assert_eq!(of("acme").as_str(), "acme");
        // One operator however the name was written.
        assert_eq!(of(" ACME ").as_str(), "acme");
        assert_eq!(of("Anonymous").as_str(), "node-1");
        // A name the node proved no membership of groups it with nobody.
        assert_eq!(
            OperatorId::of_node(None, "node-1").unwrap().as_str(),
            "node-1"
        );
        assert_eq!(of(UNNAMED_OPERATOR).as_str(), "node-1");
        assert_eq!(of("").as_str(), "node-1");
        assert_eq!(of(&"x".repeat(MAX_NAME_LEN + 1)).as_str(), "node-1");
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

/// An IPv6 /48 network (the first three hextets): what one site or customer usually holds.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Subnet48(pub [u8; 6]);

impl Subnet48 {
    /// The /48 that contains `addr`.
    pub fn of(addr: std::net::Ipv6Addr) -> Self {
        let [a, b, c, d, e, f, ..] = addr.octets();
        Self([a, b, c, d, e, f])
    }
}

impl fmt::Display for Subnet48 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut octets = [0u8; 16];
        for (slot, byte) in octets.iter_mut().zip(self.0) {
            *slot = byte;
        }
        write!(f, "{}/48", std::net::Ipv6Addr::from(octets))
    }
}

/// The network a node or viewer is grouped by for caps and rules: the IPv4 /24 or IPv6 /48 it
/// connects from, or, where no address says anything (a local trial gives every participant a
/// network of its own), a network known only by its name.
///
/// Serialised as the bytes of the prefix (3 for a /24, 6 for a /48, 8 for a named network's
/// hash), so a /24 reads and hashes as a [`Subnet24`] always did.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetPrefix {
    /// An IPv4 /24.
    V4(Subnet24),
    /// An IPv6 /48.
    V6(Subnet48),
    /// A network known only by a name: the first 8 bytes of its name's BLAKE3 hash.
    Named([u8; 8]),
}

impl Default for NetPrefix {
    fn default() -> Self {
        Self::V4(Subnet24::default())
    }
}

impl From<Subnet24> for NetPrefix {
    fn from(subnet: Subnet24) -> Self {
        Self::V4(subnet)
    }
}

impl From<Subnet48> for NetPrefix {
    fn from(subnet: Subnet48) -> Self {
        Self::V6(subnet)
    }
}

impl NetPrefix {
    /// The /24 or /48 that contains `addr` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(addr: std::net::IpAddr) -> Self {
        match addr.to_canonical() {
            std::net::IpAddr::V4(v4) => Subnet24::of(v4).into(),
            std::net::IpAddr::V6(v6) => Subnet48::of(v6).into(),
        }
    }

    /// The network called `name`; never equal to an address prefix.
    pub fn named(name: &str) -> Self {
        let hash = blake3::hash(name.as_bytes());
        let mut bytes = [0u8; 8];
        for (slot, byte) in bytes.iter_mut().zip(hash.as_bytes()) {
            *slot = *byte;
        }
        Self::Named(bytes)
    }

    /// Parses a prefix as written by [`fmt::Display`] and by the coordinator's prefix
    /// strings: `a.b.c.0/24` or `2001:db8:1::/48` (host bits ignored). `None` for anything
    /// else.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, length) = text.split_once('/')?;
        match (address.parse::<std::net::IpAddr>().ok()?, length) {
            (std::net::IpAddr::V4(v4), "24") => Some(Subnet24::of(v4).into()),
            (std::net::IpAddr::V6(v6), "48") => Some(Self::of(std::net::IpAddr::V6(v6))),
            _ => None,
        }
    }
}

impl fmt::Display for NetPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(subnet) => subnet.fmt(f),
            Self::V6(subnet) => subnet.fmt(f),
            Self::Named(hash) => {
                f.write_str("named:")?;
                hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn prefixes_parse_from_and_print_as_the_coordinators_strings() {
        for text in ["10.1.2.0/24", "2001:db8:5::/48"] {
            let prefix = NetPrefix::parse(text).unwrap();
            assert_eq!(prefix.to_string(), text);
        }
        assert_eq!(
            NetPrefix::parse("2001:db8:5:7::/48"),
            NetPrefix::parse("2001:db8:5::/48")
        );
        assert_ne!(
            NetPrefix::parse("2001:db8:5::/48"),
            NetPrefix::parse("2001:db8:6::/48")
        );
        assert_eq!(
            NetPrefix::parse("::ffff:10.1.2.0/48"),
            NetPrefix::parse("10.1.2.0/24")
        );
        assert_eq!(NetPrefix::parse("local-trial/node/ab"), None);
        assert_eq!(NetPrefix::parse("10.1.2.0/16"), None);
    }

    #[test]
    fn a_v4_prefix_serialises_as_a_subnet24_did() {
        let v4 = NetPrefix::from(Subnet24([10, 1, 2]));
        let json = serde_json::to_string(&v4).unwrap();
        assert_eq!(json, serde_json::to_string(&Subnet24([10, 1, 2])).unwrap());
        for prefix in [
            v4,
            NetPrefix::parse("2001:db8::/48").unwrap(),
            NetPrefix::named("x"),
        ] {
            let json = serde_json::to_string(&prefix).unwrap();
            assert_eq!(serde_json::from_str::<NetPrefix>(&json).unwrap(), prefix);
        }
    }
}
