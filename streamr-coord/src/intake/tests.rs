//! Receipt intake without HTTP: a stored session and segment, receipts in, what is accepted,
//! refused and counted out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use streamr_core::{
    ContentDigest, KeyPair, ManualClock, SessionGrant, SessionId, Signed, SignedReceipt, StreamId,
    ViewerReceipt,
};

use super::receipts::{verify, Verified};
use super::{IntakeError, ReceiptIntake};
use crate::config::CoordConfig;
use crate::metrics::Metrics;
use crate::storage::{SegmentRecord, SessionRecord, Storage, StreamRecord};
use crate::wire::ReceiptRejectionCode;

const STREAM: &str = "show";
/// Epoch 1 of 10 s epochs: the receipts below are signed at its start.
const SIGNED_AT: i64 = 10_000;

struct Scene {
    config: CoordConfig,
    storage: Arc<dyn Storage>,
    metrics: Metrics,
    liveness: crate::outages::Liveness,
    /// What times liveness notes: set to each post's time.
    clock: ManualClock,
    node: KeyPair,
    viewer: KeyPair,
    session: SessionId,
    digest: ContentDigest,
}

impl Scene {
    /// A stream with one segment and one session granted to `viewer` on `node`.
    async fn new() -> Scene {
        let config = CoordConfig {
            epoch_length: Duration::from_secs(10),
            settlement_grace: Duration::from_secs(2),
            max_clock_skew: Duration::from_secs(1),
            ..CoordConfig::default()
        };
        let storage = crate::connect("sqlite::memory:").await.expect("storage");
        let scene = Scene {
            config,
            storage,
            metrics: Metrics::default(),
            liveness: crate::outages::Liveness::default(),
            clock: ManualClock::default(),
            node: KeyPair::from_seed([1; 32]),
            viewer: KeyPair::from_seed([2; 32]),
            session: SessionId::from_bytes([3; 16]),
            digest: ContentDigest::from_bytes([4; 32]),
        };
        scene
            .storage
            .create_stream(&StreamRecord {
                id: STREAM.into(),
                title: "a show".into(),
                stream_key_hash: String::new(),
                status: "live".into(),
                created_at_ms: 0,
                ended_at_ms: None,
                origin_node: None,
            })
            .await
            .expect("stream stored");
        scene
            .storage
            .insert_segment(&SegmentRecord {
                stream_id: STREAM.into(),
                sequence: 0,
                hash: scene.digest.to_string(),
                digest: scene.digest.to_string(),
                published_ms: SIGNED_AT - 2_000,
                reported_at_ms: SIGNED_AT - 2_000,
                run: None,
                ll: None,
            })
            .await
            .expect("segment stored");
        let grant = Signed::sign(
            SessionGrant {
                session_id: scene.session,
                viewer: scene.viewer.viewer_key(),
                node_id: scene.node.node_id(),
                stream_id: StreamId::new(STREAM).expect("stream id"),
                max_bytes: 10_000,
                expiry_ms: 60_000,
            },
            &scene.config.coordinator_key,
        );
        scene
            .store_session(
                scene.session,
                serde_json::to_string(&grant).expect("grant json"),
            )
            .await;
        scene
    }

    /// Stores `session` on the node for the viewer, with `grant_json` as its grant.
    async fn store_session(&self, session: SessionId, grant_json: String) {
        self.storage
            .create_session(&SessionRecord {
                session_id: session.to_string(),
                stream_id: STREAM.into(),
                node_id: self.node.node_id().to_string(),
                viewer: self.viewer.viewer_key().to_string(),
                max_bytes: 10_000,
                expiry_ms: 60_000,
                issued_at_ms: SIGNED_AT - 5_000,
                grant_json,
                viewer_subnet: String::new(),
                viewer_prefix64: String::new(),
                probe: false,
            })
            .await
            .expect("session stored");
    }

    fn receipt(&self, signer: &KeyPair, seq: u64, bytes_total: u64) -> SignedReceipt {
        Signed::sign(
            ViewerReceipt {
                session_id: self.session,
                seq,
                bytes_total,
                last_segment_seq: 0,
                segments_digest: self.digest,
                t_ms: u64::try_from(SIGNED_AT).expect("positive"),
            },
            signer,
        )
    }

    /// Intake of `receipts` posted by the node at `now_ms`.
    async fn post(&self, receipts: &[SignedReceipt], now_ms: i64) -> Result<Verified, IntakeError> {
        let intake = ReceiptIntake {
            config: &self.config,
            storage: self.storage.as_ref(),
            metrics: &self.metrics,
            liveness: &self.liveness,
            clock: &self.clock,
        };
        self.clock.set(u64::try_from(now_ms).unwrap_or(0));
        verify(&intake, Some(self.node.node_id()), receipts, now_ms).await
    }

    fn node_tally(&self, verified: &Verified) -> streamr_core::ReceiptTally {
        verified
            .tallies
            .get(&self.node.node_id().to_string())
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn receipts_over_a_stored_grant_are_accepted_and_booked_where_signed() {
    let scene = Scene::new().await;
    let receipts = [
        scene.receipt(&scene.viewer, 1, 2_000),
        scene.receipt(&scene.viewer, 2, 5_000),
    ];
    // Posted in the next epoch, before epoch 1's deadline (20 s + 2 s grace).
    let verified = scene.post(&receipts, 21_000).await.expect("intake");
    assert!(verified.rejected.is_empty(), "{:?}", verified.rejected);
    let booked: Vec<(i64, i64, i64)> = verified
        .accepted
        .iter()
        .map(|r| (r.seq, r.bytes_delta, r.epoch))
        .collect();
    assert_eq!(booked, [(1, 2_000, 1), (2, 3_000, 1)]);
    assert_eq!(scene.node_tally(&verified).accepted, 2);
    // Nothing is written: the same receipts verify again.
    let again = scene.post(&receipts, 21_000).await.expect("intake");
    assert_eq!(again.accepted.len(), 2);
}

#[tokio::test]
async fn a_receipt_for_a_session_without_a_grant_is_refused() {
    let scene = Scene::new().await;
    let unknown = Signed::sign(
        ViewerReceipt {
            session_id: SessionId::from_bytes([9; 16]),
            ..scene.receipt(&scene.viewer, 1, 1_000).body
        },
        &scene.viewer,
    );
    let verified = scene.post(&[unknown], 11_000).await.expect("intake");
    assert!(verified.accepted.is_empty());
    assert_eq!(verified.rejected.len(), 1);
    assert_eq!(
        verified.rejected[0].code,
        ReceiptRejectionCode::UnknownSession
    );
    assert!(
        verified.rejected[0].reason.ends_with("no grant"),
        "{:?}",
        verified.rejected
    );
    assert_eq!(scene.node_tally(&verified).submitted, 1);
}

#[tokio::test]
async fn a_receipt_not_signed_by_the_granted_viewer_is_refused_as_forged() {
    let scene = Scene::new().await;
    let stranger = KeyPair::from_seed([7; 32]);
    let verified = scene
        .post(&[scene.receipt(&stranger, 1, 1_000)], 11_000)
        .await
        .expect("intake");
    assert!(verified.accepted.is_empty());
    assert_eq!(verified.rejected.len(), 1, "{:?}", verified.rejected);
    assert_eq!(
        verified.rejected[0].code,
        ReceiptRejectionCode::BadSignature
    );
    assert_eq!(scene.node_tally(&verified).forged, 1);
}

#[tokio::test]
async fn receipts_past_their_deadline_or_from_the_future_are_refused_and_counted() {
    let scene = Scene::new().await;
    let receipts = [scene.receipt(&scene.viewer, 1, 1_000)];
    let late = scene.post(&receipts, 22_001).await.expect("intake");
    assert!(late.accepted.is_empty());
    assert_eq!(late.late, 1);
    assert_eq!(late.rejected[0].code, ReceiptRejectionCode::Late);
    assert!(
        late.rejected[0].reason.contains("late"),
        "{:?}",
        late.rejected
    );
    let future = scene.post(&receipts, 8_999).await.expect("intake");
    assert!(future.accepted.is_empty());
    assert_eq!(future.future, 1);
    assert_eq!(future.rejected[0].code, ReceiptRejectionCode::FromTheFuture);
    assert_eq!(scene.metrics.receipts_late_total.load(Ordering::Relaxed), 1);
    assert_eq!(
        scene.metrics.receipts_future_total.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_corrupt_stored_grant_fails_the_batch_with_what_was_corrupt() {
    let scene = Scene::new().await;
    let broken = SessionId::from_bytes([5; 16]);
    scene.store_session(broken, "{not a grant".into()).await;
    let corrupt = Signed::sign(
        ViewerReceipt {
            session_id: broken,
            ..scene.receipt(&scene.viewer, 1, 1_000).body
        },
        &scene.viewer,
    );
    let error = scene
        .post(&[corrupt], 11_000)
        .await
        .expect_err("corrupt grant");
    match &error {
        IntakeError::Corrupt { what, detail } => {
            assert_eq!(*what, "session grant");
            assert!(detail.contains(&broken.to_string()), "{detail}");
        }
        other => panic!("unexpected {other}"),
    }
    // Over HTTP the same failure is the server's.
    let answer = axum::response::IntoResponse::into_response(crate::ApiError::from(error));
    assert_eq!(
        answer.status(),
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    );
}
