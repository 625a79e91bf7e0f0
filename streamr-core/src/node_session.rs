//! Node sessions: a node proves its identity key once, in a signed handshake, and then
//! authenticates its heartbeats with a MAC under the session key instead of an ed25519
//! signature each (a keyed BLAKE3 hash costs a few hundred nanoseconds; a signature check
//! costs tens of microseconds even batched). Signatures stay on everything that carries money
//! (receipts, origin reports, grants).
//!
//! The handshake (sans-IO; the caller sends the messages and supplies randomness and time):
//!
//! 1. The node draws an ephemeral X25519 secret and sends [`NodeSessionOpen`] (its node id, a
//!    timestamp and the X25519 public share), signed with its node key.
//! 2. The coordinator checks the signature and the timestamp window, draws its own ephemeral
//!    share and a random session id, and answers [`NodeSessionAccept`] (session id, node id,
//!    both shares, expiry), signed with the coordinator key. Both sides derive the session key
//!    with HKDF-SHA256 from the X25519 shared secret, with the accept's canonical bytes (the
//!    whole transcript) as HKDF info.
//! 3. The node checks the coordinator's signature and that the accept answers its own open
//!    (same node id and share) and derives the same key.
//!
//! An eavesdropper sees only public shares: without TLS the session key still never crosses
//! the wire. Both shares are ephemeral, so a later leak of the node or coordinator key does
//! not reveal past session keys. The coordinator's signature over the transcript lets a node
//! that knows (or pins) the coordinator key refuse a man in the middle's share.
//!
//! A [`MacHeartbeat`] carries the session id, the heartbeat and
//! `BLAKE3-keyed(session key, HEARTBEAT_MAC_TAG ‖ session id ‖ heartbeat canonical bytes)`.
//! Replay protection is the heartbeat's own: its nonce must exceed the node's last accepted
//! one (kept in the database, so it holds across sessions and replicas) and its timestamp must
//! lie within the skew window. The coordinator keeps each session (id, node, key, expiry) in
//! its database, so a replica behind a load balancer accepts a session another replica opened;
//! it stores the key only sealed under a key derived from the coordinator key (see
//! `streamr-coord`), so a copy of the database alone cannot forge heartbeats.

use std::fmt;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::canonical::CanonicalWriter;
use crate::error::SignatureError;
use crate::heartbeat::NodeHeartbeat;
use crate::identity::{CoordinatorKey, KeyPair, NodeId};
use crate::ids::hex_bytes_type;
use crate::signed::{CanonicalMessage, Signed};

/// Domain tag of a [`NodeSessionOpen`].
pub const NODE_SESSION_OPEN_TAG: &[u8] = b"streamr/node-session-open/v1\0";
/// Domain tag of a [`NodeSessionAccept`].
pub const NODE_SESSION_ACCEPT_TAG: &[u8] = b"streamr/node-session-accept/v1\0";
/// Domain tag of the bytes a [`MacHeartbeat`]'s MAC covers.
pub const HEARTBEAT_MAC_TAG: &[u8] = b"streamr/heartbeat-mac/v1\0";
/// HKDF salt of the session key derivation.
const SESSION_KEY_SALT: &[u8] = b"streamr/node-session-key/v1";

hex_bytes_type!(
    /// A node session's id: 16 random bytes the coordinator draws, hex in JSON.
    NodeSessionId,
    16,
    "session id"
);
hex_bytes_type!(
    /// An ephemeral X25519 public share of the session handshake, hex in JSON.
    KeyShare,
    32,
    "key share"
);
hex_bytes_type!(
    /// A heartbeat's MAC under its session key (keyed BLAKE3, 32 bytes), hex in JSON.
    HeartbeatMac,
    32,
    "heartbeat mac"
);

/// Why a handshake message or a MAC-authenticated heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The open (node key) or accept (coordinator key) signature does not verify, or a key is
    /// malformed.
    #[error("handshake signature: {0}")]
    Signature(#[from] SignatureError),
    /// The open's timestamp is outside the accepted window.
    #[error(
        "session open timestamp {timestamp_ms} ms is {skew_ms} ms from now (limit {limit_ms} ms)"
    )]
    StaleOpen {
        /// The signed timestamp.
        timestamp_ms: u64,
        /// Its distance to the verifier's clock.
        skew_ms: u64,
        /// The allowed distance.
        limit_ms: u64,
    },
    /// The accept does not answer this open (another node id or share).
    #[error("the session accept answers another handshake")]
    NotOurHandshake,
    /// The peer's share is a low-order point: the shared secret would be known to anyone.
    #[error("the peer's key share is not contributory")]
    WeakShare,
    /// The session expired.
    #[error("session {session_id} expired at {expires_at_ms} (now {now_ms})")]
    Expired {
        /// The session.
        session_id: NodeSessionId,
        /// When it expired, Unix milliseconds.
        expires_at_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// The session belongs to another node than the heartbeat names.
    #[error("session {session_id} belongs to node {owner}, not {claimed}")]
    WrongNode {
        /// The session.
        session_id: NodeSessionId,
        /// The node that opened it.
        owner: NodeId,
        /// The node the heartbeat names.
        claimed: NodeId,
    },
    /// The MAC does not match the heartbeat under the session's key.
    #[error("heartbeat mac does not verify under session {session_id}")]
    BadMac {
        /// The session.
        session_id: NodeSessionId,
    },
}

/// Node → coordinator: opens a session. Signed with the node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSessionOpen {
    /// The node opening the session (its key verifies the signature).
    pub node_id: NodeId,
    /// Node clock, Unix milliseconds; must lie within the coordinator's skew window.
    pub timestamp_ms: u64,
    /// The node's ephemeral X25519 public share.
    pub share: KeyShare,
}

impl CanonicalMessage for NodeSessionOpen {
    /// `NODE_SESSION_OPEN_TAG ‖ node_id(32) ‖ timestamp_ms(8) ‖ share(32)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(NODE_SESSION_OPEN_TAG)
            .fixed(self.node_id.as_bytes())
            .u64(self.timestamp_ms)
            .fixed(self.share.as_bytes())
            .finish()
    }
}

/// Coordinator → node: the session is open. Signed with the coordinator key; its canonical
/// bytes are the transcript the session key is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSessionAccept {
    /// The new session's id.
    pub session_id: NodeSessionId,
    /// The node that opened it.
    pub node_id: NodeId,
    /// The node's share, as the open carried it.
    pub node_share: KeyShare,
    /// The coordinator's ephemeral X25519 public share.
    pub coordinator_share: KeyShare,
    /// When the coordinator forgets the session, Unix milliseconds (coordinator clock).
    pub expires_at_ms: u64,
}

impl CanonicalMessage for NodeSessionAccept {
    /// `NODE_SESSION_ACCEPT_TAG ‖ session_id(16) ‖ node_id(32) ‖ node_share(32) ‖
    /// coordinator_share(32) ‖ expires_at_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(NODE_SESSION_ACCEPT_TAG)
            .fixed(self.session_id.as_bytes())
            .fixed(self.node_id.as_bytes())
            .fixed(self.node_share.as_bytes())
            .fixed(self.coordinator_share.as_bytes())
            .u64(self.expires_at_ms)
            .finish()
    }
}

/// A session's 32-byte key. Its `Debug` output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Wraps stored key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key (to store it).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The MAC of `heartbeat` in session `session_id`.
    pub fn mac(&self, session_id: &NodeSessionId, heartbeat: &NodeHeartbeat) -> HeartbeatMac {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(HEARTBEAT_MAC_TAG);
        hasher.update(session_id.as_bytes());
        hasher.update(&heartbeat.canonical_bytes());
        HeartbeatMac(*hasher.finalize().as_bytes())
    }

    /// Derives the key of the session `accept` describes from the X25519 shared secret.
    fn derive(shared: &x25519_dalek::SharedSecret, accept: &NodeSessionAccept) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(SESSION_KEY_SALT), shared.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        let _ = hkdf.expand(&accept.canonical_bytes(), &mut key);
        SessionKey(key)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

fn share_of(secret: &StaticSecret) -> KeyShare {
    KeyShare(PublicKey::from(secret).to_bytes())
}

/// The node's side of a handshake in progress: holds the ephemeral secret until the accept
/// arrives.
pub struct NodeHandshake {
    secret: StaticSecret,
    open: NodeSessionOpen,
}

impl fmt::Debug for NodeHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandshake")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl NodeHandshake {
    /// Starts a handshake for `key` with 32 fresh random bytes (`secret`, the ephemeral
    /// X25519 secret) at `now_ms`: returns the state to keep and the signed open to send.
    pub fn start(key: &KeyPair, secret: [u8; 32], now_ms: u64) -> (Self, Signed<NodeSessionOpen>) {
        let secret = StaticSecret::from(secret);
        let open = NodeSessionOpen {
            node_id: key.node_id(),
            timestamp_ms: now_ms,
            share: share_of(&secret),
        };
        let signed = Signed::sign(open.clone(), key);
        (NodeHandshake { secret, open }, signed)
    }

    /// [`Self::start`] with the ephemeral secret drawn from `rng`.
    pub fn generate<R: rand::CryptoRng + rand::RngCore>(
        key: &KeyPair,
        rng: &mut R,
        now_ms: u64,
    ) -> (Self, Signed<NodeSessionOpen>) {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::start(key, secret, now_ms)
    }

    /// Checks the coordinator's answer (its signature by `coordinator`, that it answers this
    /// open) and derives the session.
    pub fn finish(
        self,
        accept: &Signed<NodeSessionAccept>,
        coordinator: &CoordinatorKey,
    ) -> Result<NodeSession, SessionError> {
        let body = accept.verify_with(&coordinator.verifying_key()?)?;
        if body.node_id != self.open.node_id || body.node_share != self.open.share {
            return Err(SessionError::NotOurHandshake);
        }
        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from(body.coordinator_share.0));
        if !shared.was_contributory() {
            return Err(SessionError::WeakShare);
        }
        Ok(NodeSession {
            id: body.session_id,
            node_id: body.node_id,
            key: SessionKey::derive(&shared, body),
            expires_at_ms: body.expires_at_ms,
        })
    }
}

/// An open session, as the node keeps it: seals heartbeats.
#[derive(Clone, Debug)]
pub struct NodeSession {
    id: NodeSessionId,
    node_id: NodeId,
    key: SessionKey,
    expires_at_ms: u64,
}

impl NodeSession {
    /// The session id.
    pub fn id(&self) -> NodeSessionId {
        self.id
    }

    /// When the coordinator forgets it (coordinator clock, Unix milliseconds).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// The node that opened it.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Authenticates `heartbeat` with the session key. The coordinator accepts it only when
    /// it names this session's node ([`Self::node_id`]).
    pub fn seal(&self, heartbeat: NodeHeartbeat) -> MacHeartbeat {
        let mac = self.key.mac(&self.id, &heartbeat);
        MacHeartbeat {
            session_id: self.id,
            heartbeat,
            mac,
        }
    }
}

/// The coordinator's side: checks a signed open and answers it. The caller draws
/// `session_id` and `secret` (32 random bytes, the coordinator's ephemeral X25519 secret),
/// stores the returned key (sealed: never readable at rest) under the session id with the node
/// and expiry, and sends the signed accept.
pub fn accept_open(
    open: &Signed<NodeSessionOpen>,
    now_ms: u64,
    max_skew_ms: u64,
    session_id: NodeSessionId,
    secret: [u8; 32],
    expires_at_ms: u64,
    coordinator: &KeyPair,
) -> Result<(Signed<NodeSessionAccept>, SessionKey), SessionError> {
    let key = open.body.node_id.verifying_key()?;
    if key.is_weak() {
        return Err(SessionError::Signature(SignatureError::BadSignature));
    }
    let body = open.verify_with(&key)?;
    let skew_ms = now_ms.abs_diff(body.timestamp_ms);
    if skew_ms > max_skew_ms {
        return Err(SessionError::StaleOpen {
            timestamp_ms: body.timestamp_ms,
            skew_ms,
            limit_ms: max_skew_ms,
        });
    }
    let secret = StaticSecret::from(secret);
    let shared = secret.diffie_hellman(&PublicKey::from(body.share.0));
    if !shared.was_contributory() {
        return Err(SessionError::WeakShare);
    }
    let accept = NodeSessionAccept {
        session_id,
        node_id: body.node_id,
        node_share: body.share,
        coordinator_share: share_of(&secret),
        expires_at_ms,
    };
    let key = SessionKey::derive(&shared, &accept);
    Ok((Signed::sign(accept, coordinator), key))
}

/// A heartbeat authenticated by its session's MAC instead of a signature.
///
/// In JSON: `{"session_id": "<32 hex>", "heartbeat": {...}, "mac": "<64 hex>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacHeartbeat {
    /// The session whose key made the MAC.
    pub session_id: NodeSessionId,
    /// The heartbeat (the same fields a signed one carries; its byte counts are the
    /// session's running totals).
    pub heartbeat: NodeHeartbeat,
    /// The MAC over the heartbeat's canonical bytes.
    pub mac: HeartbeatMac,
}

/// A session as the coordinator stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownSession {
    /// The node that opened it.
    pub node_id: NodeId,
    /// Its key.
    pub key: SessionKey,
    /// When it expires, Unix milliseconds.
    pub expires_at_ms: u64,
}

impl MacHeartbeat {
    /// Checks the MAC under `session` (the one stored for [`Self::session_id`]): the session
    /// is not expired at `now_ms`, belongs to the node the heartbeat names, and the MAC holds.
    /// Freshness and nonce are the caller's, as for signed heartbeats.
    pub fn verify(
        &self,
        session: &KnownSession,
        now_ms: u64,
    ) -> Result<&NodeHeartbeat, SessionError> {
        if now_ms >= session.expires_at_ms {
            return Err(SessionError::Expired {
                session_id: self.session_id,
                expires_at_ms: session.expires_at_ms,
                now_ms,
            });
        }
        if session.node_id != self.heartbeat.node_id {
            return Err(SessionError::WrongNode {
                session_id: self.session_id,
                owner: session.node_id,
                claimed: self.heartbeat.node_id,
            });
        }
        let expected = session.key.mac(&self.session_id, &self.heartbeat);
        // Constant-time comparison: blake3's `Hash` equality is.
        if blake3::Hash::from_bytes(expected.0) != blake3::Hash::from_bytes(self.mac.0) {
            return Err(SessionError::BadMac {
                session_id: self.session_id,
            });
        }
        Ok(&self.heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StreamId;
    use proptest::prelude::*;

    fn heartbeat(node: &KeyPair, nonce: u64) -> NodeHeartbeat {
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: 1_000,
            nonce,
            streams: vec![StreamId::new("live").unwrap()],
            viewers: 3,
            bytes_served: 4_000,
            unattested_bytes: 5,
            upstreams: Vec::new(),
            claim_totals: None,
        }
    }

    fn open_session(
        node: &KeyPair,
        coordinator: &KeyPair,
        seed: u8,
    ) -> (NodeSession, KnownSession) {
        let (handshake, open) = NodeHandshake::start(node, [seed; 32], 1_000);
        let (accept, key) = accept_open(
            &open,
            1_500,
            30_000,
            NodeSessionId([seed; 16]),
            [seed.wrapping_add(1); 32],
            100_000,
            coordinator,
        )
        .unwrap();
        let session = handshake
            .finish(&accept, &coordinator.coordinator_key())
            .unwrap();
        let known = KnownSession {
            node_id: node.node_id(),
            key,
            expires_at_ms: accept.body.expires_at_ms,
        };
        (session, known)
    }

    #[test]
    fn both_sides_derive_one_key_and_a_sealed_heartbeat_verifies() {
        let (node, coordinator) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let (session, known) = open_session(&node, &coordinator, 9);
        assert_eq!(session.key, known.key);
        let sealed = session.seal(heartbeat(&node, 1));
        assert_eq!(sealed.verify(&known, 2_000).unwrap(), &heartbeat(&node, 1));
        // Any change of the heartbeat breaks the MAC.
        let mut tampered = sealed.clone();
        tampered.heartbeat.bytes_served += 1;
        assert!(matches!(
            tampered.verify(&known, 2_000),
            Err(SessionError::BadMac { .. })
        ));
        // So does moving it to another session id under the same key.
        let mut moved = sealed;
        moved.session_id = NodeSessionId([0; 16]);
        assert!(matches!(
            moved.verify(&known, 2_000),
            Err(SessionError::BadMac { .. })
        ));
    }

    #[test]
    fn another_sessions_mac_another_nodes_session_and_an_expired_one_are_refused() {
        let coordinator = KeyPair::from_seed([2; 32]);
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([3; 32]));
        let (session_a, known_a) = open_session(&a, &coordinator, 4);
        let (session_a2, known_a2) = open_session(&a, &coordinator, 5);
        let (_, known_b) = open_session(&b, &coordinator, 6);
        assert_ne!(known_a.key, known_a2.key);
        // A MAC by session 2 presented under session 1's id.
        let mut crossed = session_a2.seal(heartbeat(&a, 1));
        crossed.session_id = session_a.id();
        assert!(matches!(
            crossed.verify(&known_a, 2_000),
            Err(SessionError::BadMac { .. })
        ));
        assert!(session_a2
            .seal(heartbeat(&a, 1))
            .verify(&known_a2, 2_000)
            .is_ok());
        // Node A's session used for a heartbeat naming node B.
        let mut for_b = session_a.seal(heartbeat(&a, 1));
        for_b.heartbeat.node_id = b.node_id();
        assert!(matches!(
            for_b.verify(&known_a, 2_000),
            Err(SessionError::WrongNode { .. })
        ));
        assert!(matches!(
            session_a.seal(heartbeat(&a, 1)).verify(&known_b, 2_000),
            Err(SessionError::WrongNode { .. })
        ));
        // Expired.
        assert!(matches!(
            session_a.seal(heartbeat(&a, 1)).verify(&known_a, 100_000),
            Err(SessionError::Expired { .. })
        ));
    }

    #[test]
    fn a_forged_open_or_accept_is_refused() {
        let (node, coordinator) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let impostor = KeyPair::from_seed([7; 32]);
        // An open naming the node but signed by another key.
        let (_, mut open) = NodeHandshake::start(&impostor, [3; 32], 1_000);
        open.body.node_id = node.node_id();
        let id = NodeSessionId([1; 16]);
        assert!(matches!(
            accept_open(&open, 1_000, 30_000, id, [4; 32], 9_000, &coordinator),
            Err(SessionError::Signature(_))
        ));
        // A stale open.
        let (handshake, open) = NodeHandshake::start(&node, [3; 32], 1_000);
        assert!(matches!(
            accept_open(&open, 100_000, 30_000, id, [4; 32], 9_000, &coordinator),
            Err(SessionError::StaleOpen { .. })
        ));
        // An accept signed by someone other than the coordinator (a man in the middle).
        let (accept, _) = accept_open(&open, 1_000, 30_000, id, [4; 32], 9_000, &impostor).unwrap();
        let (handshake2, _) = NodeHandshake::start(&node, [3; 32], 1_000);
        assert!(matches!(
            handshake2.finish(&accept, &coordinator.coordinator_key()),
            Err(SessionError::Signature(_))
        ));
        // An accept answering another open.
        let (_, other_open) = NodeHandshake::start(&node, [8; 32], 1_000);
        let (other, _) =
            accept_open(&other_open, 1_000, 30_000, id, [4; 32], 9_000, &coordinator).unwrap();
        assert_eq!(
            handshake
                .finish(&other, &coordinator.coordinator_key())
                .unwrap_err(),
            SessionError::NotOurHandshake
        );
    }

    #[test]
    fn a_low_order_share_is_refused_on_both_sides() {
        let (node, coordinator) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let weak = KeyShare([0; 32]);
        let open = Signed::sign(
            NodeSessionOpen {
                node_id: node.node_id(),
                timestamp_ms: 1_000,
                share: weak,
            },
            &node,
        );
        let id = NodeSessionId([1; 16]);
        assert_eq!(
            accept_open(&open, 1_000, 30_000, id, [4; 32], 9_000, &coordinator).unwrap_err(),
            SessionError::WeakShare
        );
        let (handshake, open) = NodeHandshake::start(&node, [3; 32], 1_000);
        let accept = Signed::sign(
            NodeSessionAccept {
                session_id: id,
                node_id: node.node_id(),
                node_share: open.body.share,
                coordinator_share: weak,
                expires_at_ms: 9_000,
            },
            &coordinator,
        );
        assert_eq!(
            handshake
                .finish(&accept, &coordinator.coordinator_key())
                .unwrap_err(),
            SessionError::WeakShare
        );
    }

    #[test]
    fn the_session_key_never_appears_on_the_wire_or_in_debug_output() {
        let (node, coordinator) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let (handshake, open) = NodeHandshake::start(&node, [3; 32], 1_000);
        let (accept, key) = accept_open(
            &open,
            1_000,
            30_000,
            NodeSessionId([1; 16]),
            [4; 32],
            9_000,
            &coordinator,
        )
        .unwrap();
        let session = handshake
            .finish(&accept, &coordinator.coordinator_key())
            .unwrap();
        let key_hex = hex::encode(key.as_bytes());
        let wire = format!(
            "{}{}{}{:?}",
            serde_json::to_string(&open).unwrap(),
            serde_json::to_string(&accept).unwrap(),
            serde_json::to_string(&session.seal(heartbeat(&node, 1))).unwrap(),
            session
        );
        assert!(!wire.contains(&key_hex));
    }

    fn any_heartbeat() -> impl Strategy<Value = NodeHeartbeat> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec("[a-z0-9_-]{1,16}", 0..4),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(seed, timestamp_ms, nonce, streams, viewers, bytes, unattested)| NodeHeartbeat {
                    node_id: KeyPair::from_seed(seed).node_id(),
                    timestamp_ms,
                    nonce,
                    streams: streams
                        .into_iter()
                        .filter_map(|s| StreamId::new(s).ok())
                        .collect(),
                    viewers,
                    bytes_served: bytes,
                    unattested_bytes: unattested,
                    upstreams: Vec::new(),
                    claim_totals: None,
                },
            )
    }

    proptest! {
        #[test]
        fn handshake_messages_and_mac_heartbeats_round_trip_through_json(
            node_seed in any::<[u8; 32]>(),
            secret in any::<[u8; 32]>(),
            coordinator_secret in any::<[u8; 32]>(),
            session in any::<[u8; 16]>(),
            now in 0u64..u64::MAX / 2,
            expires in any::<u64>(),
            body in any_heartbeat(),
        ) {
            let node = KeyPair::from_seed(node_seed);
            let coordinator = KeyPair::from_seed([2; 32]);
            let (handshake, open) = NodeHandshake::start(&node, secret, now);
            let parsed: Signed<NodeSessionOpen> =
                serde_json::from_str(&serde_json::to_string(&open).unwrap()).unwrap();
            prop_assert_eq!(&parsed, &open);
            let (accept, key) = accept_open(
                &parsed, now, 0, NodeSessionId(session), coordinator_secret, expires, &coordinator,
            ).unwrap();
            let parsed: Signed<NodeSessionAccept> =
                serde_json::from_str(&serde_json::to_string(&accept).unwrap()).unwrap();
            prop_assert_eq!(&parsed, &accept);
            let opened = handshake.finish(&parsed, &coordinator.coordinator_key()).unwrap();
            let body = NodeHeartbeat { node_id: node.node_id(), ..body };
            let sealed = opened.seal(body);
            let parsed: MacHeartbeat =
                serde_json::from_str(&serde_json::to_string(&sealed).unwrap()).unwrap();
            prop_assert_eq!(&parsed, &sealed);
            let known = KnownSession { node_id: node.node_id(), key, expires_at_ms: u64::MAX };
            prop_assert!(parsed.verify(&known, now).is_ok());
        }
    }
}
