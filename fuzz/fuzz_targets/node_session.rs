//! Fuzzes the node session wire forms (the signed open and accept of the handshake, and the
//! MAC-authenticated heartbeat): parsing never panics, whatever parses serialises back to the
//! same message, and the coordinator's and node's checks on it never panic.
#![no_main]

use streamr_core::{
    accept_open, KeyPair, KnownSession, MacHeartbeat, NodeHandshake, NodeSessionAccept,
    NodeSessionId, NodeSessionOpen, SessionKey, Signed,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let coordinator = KeyPair::from_seed([7; 32]);
    if let Ok(open) = serde_json::from_slice::<Signed<NodeSessionOpen>>(data) {
        round_trips(&open);
        let _ = accept_open(
            &open,
            open.body.timestamp_ms,
            0,
            NodeSessionId::from_bytes([1; 16]),
            [2; 32],
            u64::MAX,
            &coordinator,
        );
    }
    if let Ok(accept) = serde_json::from_slice::<Signed<NodeSessionAccept>>(data) {
        round_trips(&accept);
        let node = KeyPair::from_seed([3; 32]);
        let (handshake, _) = NodeHandshake::start(&node, [4; 32], 0);
        let _ = handshake.finish(&accept, &coordinator.coordinator_key());
    }
    if let Ok(sealed) = serde_json::from_slice::<MacHeartbeat>(data) {
        let json = serde_json::to_vec(&sealed).expect("a parsed heartbeat serialises");
        let back: MacHeartbeat = serde_json::from_slice(&json).expect("it parses back");
        assert_eq!(back, sealed);
        let session = KnownSession {
            node_id: sealed.heartbeat.node_id,
            key: SessionKey::from_bytes([5; 32]),
            expires_at_ms: u64::MAX,
        };
        let _ = sealed.verify(&session, 0);
    }
});

fn round_trips<T>(message: &Signed<T>)
where
    T: streamr_core::CanonicalMessage
        + serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    let json = serde_json::to_vec(message).expect("a parsed message serialises");
    let back: Signed<T> = serde_json::from_slice(&json).expect("a serialised message parses");
    assert_eq!(&back, message);
    assert_eq!(back.body.canonical_bytes(), message.body.canonical_bytes());
}
