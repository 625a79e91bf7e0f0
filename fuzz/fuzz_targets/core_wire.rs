//! Fuzzes the JSON wire forms of the signed messages nodes and viewers send the coordinator
//! (viewer receipts, session grants, node heartbeats, origin part reports): parsing never panics, whatever parses
//! serialises back to the same message, and signature checks on it never panic.
#![no_main]

use streamr_core::{
    CanonicalMessage, KeyPair, SignedGrant, SignedHeartbeat, SignedPartReport, SignedReceipt,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let verifier = KeyPair::from_seed([7; 32]);
    if let Ok(receipt) = serde_json::from_slice::<SignedReceipt>(data) {
        round_trips(&receipt);
        if let Ok(key) = verifier.viewer_key().verifying_key() {
            let _ = receipt.verify_with(&key);
        }
    }
    if let Ok(grant) = serde_json::from_slice::<SignedGrant>(data) {
        round_trips(&grant);
        let _ = grant.verify(&verifier.coordinator_key());
    }
    if let Ok(heartbeat) = serde_json::from_slice::<SignedHeartbeat>(data) {
        round_trips(&heartbeat);
        let _ = heartbeat.verify(heartbeat.body.timestamp_ms, 0);
    }
    if let Ok(report) = serde_json::from_slice::<SignedPartReport>(data) {
        round_trips(&report);
        let _ = report.verify(report.body.timestamp_ms, 0);
    }
});

fn round_trips<T>(message: &streamr_core::Signed<T>)
where
    T: CanonicalMessage
        + serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    let json = serde_json::to_vec(message).expect("a parsed message serialises");
    let back: streamr_core::Signed<T> =
        serde_json::from_slice(&json).expect("a serialised message parses");
    assert_eq!(&back, message);
    assert_eq!(back.body.canonical_bytes(), message.body.canonical_bytes());
}
