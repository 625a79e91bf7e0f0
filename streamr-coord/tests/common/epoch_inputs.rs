//! What an epoch's settlement reads, made as the tests need it: the origin's segments, a
//! node's claimed bytes and the prober's sessions.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use streamr_coord::storage::SessionRecord;
use streamr_coord::CoordConfig;
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, NodeHeartbeat, SessionGrant, SessionId, Signed,
    SignedGrant, StreamId,
};

use super::{digest, now_ms, Client, TestDb};

/// Creates stream `id` through the admin API; its stream key.
pub async fn create_stream(api: &Client, id: &str) -> String {
    let (status, body) = api
        .post_admin("/streams", &json!({ "id": id, "title": "test" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["stream_key"].as_str().expect("stream key").to_owned()
}

/// Reports the origin's segments `0..count` of `stream` (bytes `segment {sequence}`, all cut
/// now) through the admin API; their digests, in order.
pub async fn report_segments(api: &Client, stream: &str, count: u64) -> Vec<ContentDigest> {
    let published = now_ms();
    let mut digests = Vec::new();
    for sequence in 0..count {
        let (status, body) = api
            .post_admin(
                &format!("/streams/{stream}/segments"),
                &json!({
                    "sequence": sequence,
                    "hash": segment_hash(format!("segment {sequence}").as_bytes()),
                    "published_ms": published,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        digests.push(digest(&body["segment"]["digest"]));
    }
    digests
}

/// A heartbeat from `node` serving stream `show` to one viewer, claiming `attested` bytes
/// served to signing viewers and `unattested` bytes served to viewers that sent no receipt.
pub fn claims_heartbeat(
    node: &KeyPair,
    nonce: u64,
    attested: u64,
    unattested: u64,
) -> Signed<NodeHeartbeat> {
    Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce,
            streams: vec![StreamId::new("show").expect("stream id")],
            viewers: 1,
            bytes_served: attested,
            unattested_bytes: unattested,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    )
}

/// The probe session of stream `show` the coordinator's prober records for `node`: its own
/// grant for `lasting` at 2 MB/s, a fresh viewer key, marked as a probe. The viewer key and
/// the session.
pub async fn probe_session(
    db: &TestDb,
    config: &CoordConfig,
    node: &KeyPair,
    lasting: Duration,
) -> (KeyPair, SessionId) {
    let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let session = SessionId::from_bytes(rand::random());
    let seconds = lasting.as_secs();
    let grant: SignedGrant = Signed::sign(
        SessionGrant {
            session_id: session,
            viewer: viewer.viewer_key(),
            node_id: node.node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            max_bytes: 2_000_000 * seconds,
            expiry_ms: now_ms() + seconds * 1_000,
        },
        &config.coordinator_key,
    );
    db.storage()
        .await
        .create_session(&SessionRecord {
            session_id: session.to_string(),
            stream_id: "show".into(),
            node_id: node.node_id().to_string(),
            viewer: viewer.viewer_key().to_string(),
            max_bytes: grant.body.max_bytes as i64,
            expiry_ms: grant.body.expiry_ms as i64,
            issued_at_ms: now_ms() as i64,
            grant_json: serde_json::to_string(&grant).expect("json"),
            viewer_subnet: String::new(),
            viewer_prefix64: String::new(),
            probe: true,
        })
        .await
        .expect("probe session stored");
    (viewer, session)
}
