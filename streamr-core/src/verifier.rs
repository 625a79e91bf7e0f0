//! Receipt verification: checks each viewer receipt against its session grant, the session's
//! previous receipt and the origin's content digests, and credits the bytes it adds.
//!
//! Signatures are checked in batches with `ed25519_dalek::verify_batch`; a failing batch falls
//! back to one-by-one checks to name the bad receipts.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::content::SegmentDigestSource;
use crate::error::{ReceiptRejection, SignatureError};
use crate::grant::{SessionGrant, SignedGrant};
use crate::identity::{CoordinatorKey, NodeId, ViewerKey};
use crate::ids::{SessionId, StreamId};
use crate::receipt::SignedReceipt;
use crate::signed::CanonicalMessage;

/// How signatures are checked (batch is faster; one-by-one exists for comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignatureCheck {
    /// `verify_batch` over chunks of receipts.
    Batch,
    /// `verify_strict` per receipt.
    OneByOne,
}

/// Receipt verification limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierConfig {
    /// A segment acknowledged within this many ms of its publication counts as on time.
    pub on_time_lag_ms: u64,
    /// A segment acknowledged later than this after publication is stale: the receipt earns
    /// nothing.
    pub stale_after_ms: u64,
    /// Tolerated viewer clock lead over the verifier's clock.
    pub max_clock_lead_ms: u64,
    /// Receipts per `verify_batch` call.
    pub batch_size: usize,
    /// Batch or one-by-one signature checks.
    pub signature_check: SignatureCheck,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            on_time_lag_ms: 10_000,
            stale_after_ms: 60_000,
            max_clock_lead_ms: 5_000,
            batch_size: 256,
            signature_check: SignatureCheck::Batch,
        }
    }
}

/// Bytes a valid receipt added to its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    /// The session.
    pub session_id: SessionId,
    /// Bytes added since the previous accepted receipt.
    pub bytes: u64,
    /// Whether the acknowledged segment was fresh (within `on_time_lag_ms`).
    pub on_time: bool,
}

/// One session's verified usage within an epoch, drained by [`ReceiptVerifier::take_usage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    /// The session.
    pub session_id: SessionId,
    /// The serving node.
    pub node_id: NodeId,
    /// The viewer.
    pub viewer: ViewerKey,
    /// The stream.
    pub stream_id: StreamId,
    /// Bytes credited in the epoch.
    pub bytes: u64,
    /// Of which acknowledged on time.
    pub on_time_bytes: u64,
    /// Session bytes in total (the newest receipt's `bytes_total`).
    pub bytes_total: u64,
    /// When the session was granted, Unix ms.
    pub started_ms: u64,
    /// The newest accepted receipt's time, Unix ms.
    pub last_receipt_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct LastAccepted {
    seq: u64,
    bytes_total: u64,
    last_segment_seq: u64,
    t_ms: u64,
}

#[derive(Clone, Debug)]
struct SessionState {
    grant: SessionGrant,
    viewer_key: VerifyingKey,
    started_ms: u64,
    last: Option<LastAccepted>,
    epoch_bytes: u64,
    epoch_on_time_bytes: u64,
}

/// Verifies receipts for granted sessions and remembers each session's last accepted receipt.
#[derive(Clone, Debug, Default)]
pub struct ReceiptVerifier {
    config: VerifierConfig,
    sessions: HashMap<SessionId, SessionState>,
}

impl ReceiptVerifier {
    /// A verifier with no sessions.
    pub fn new(config: VerifierConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
        }
    }

    /// Checks the coordinator's signature on `grant` and admits its session, started at
    /// `started_ms`.
    pub fn admit_signed_grant(
        &mut self,
        grant: &SignedGrant,
        coordinator: &CoordinatorKey,
        started_ms: u64,
    ) -> Result<(), SignatureError> {
        let body = grant.verify(coordinator)?;
        self.admit_grant(body.clone(), started_ms)
    }

    /// Admits a grant the caller issued itself (no signature check). Fails only when the
    /// viewer key is not a valid public key.
    pub fn admit_grant(
        &mut self,
        grant: SessionGrant,
        started_ms: u64,
    ) -> Result<(), SignatureError> {
        let viewer_key = grant.viewer.verifying_key()?;
        self.sessions.insert(
            grant.session_id,
            SessionState {
                grant,
                viewer_key,
                started_ms,
                last: None,
                epoch_bytes: 0,
                epoch_on_time_bytes: 0,
            },
        );
        Ok(())
    }

    /// Changes how many receipts one `verify_batch` call checks at most.
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.config.batch_size = batch_size.max(1);
    }

    /// Number of sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Verifies `receipts` submitted by `node` at `now_ms`; returns one outcome per receipt, in
    /// order. Accepted receipts update their session (so a replay of any of them is rejected).
    pub fn verify_batch(
        &mut self,
        node: &NodeId,
        receipts: &[SignedReceipt],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let items: Vec<(NodeId, &SignedReceipt)> = receipts.iter().map(|r| (*node, r)).collect();
        self.verify_items(&items, content, now_ms)
    }

    /// Like [`Self::verify_batch`] for receipts from many nodes at once, each paired with the
    /// node that submitted it: larger signature batches verify faster.
    pub fn verify_submissions(
        &mut self,
        submissions: &[(NodeId, SignedReceipt)],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let items: Vec<(NodeId, &SignedReceipt)> =
            submissions.iter().map(|(node, r)| (*node, r)).collect();
        self.verify_items(&items, content, now_ms)
    }

    fn verify_items(
        &mut self,
        items: &[(NodeId, &SignedReceipt)],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let mut outcomes: Vec<Result<Credit, ReceiptRejection>> = items
            .iter()
            .map(|(node, r)| self.check_grant(node, r).map(|_| placeholder(r)))
            .collect();
        self.check_signatures(items, &mut outcomes);
        for ((_, receipt), outcome) in items.iter().zip(outcomes.iter_mut()) {
            if outcome.is_ok() {
                *outcome = self.apply(receipt, content, now_ms);
            }
        }
        outcomes
    }

    /// Drains every session's usage since the previous call (sessions without new bytes are
    /// skipped), sorted by session id.
    pub fn take_usage(&mut self) -> Vec<SessionUsage> {
        let mut usage: Vec<SessionUsage> = self
            .sessions
            .values_mut()
            .filter(|s| s.epoch_bytes > 0)
            .map(|s| {
                let last = s
                    .last
                    .map_or((0, s.started_ms), |l| (l.bytes_total, l.t_ms));
                let entry = SessionUsage {
                    session_id: s.grant.session_id,
                    node_id: s.grant.node_id,
                    viewer: s.grant.viewer,
                    stream_id: s.grant.stream_id.clone(),
                    bytes: s.epoch_bytes,
                    on_time_bytes: s.epoch_on_time_bytes,
                    bytes_total: last.0,
                    started_ms: s.started_ms,
                    last_receipt_ms: last.1,
                };
                s.epoch_bytes = 0;
                s.epoch_on_time_bytes = 0;
                entry
            })
            .collect();
        usage.sort_by_key(|u| u.session_id);
        usage
    }

    /// Forgets sessions whose grant expired before `before_ms` (call after [`Self::take_usage`]).
    pub fn prune_expired(&mut self, before_ms: u64) {
        self.sessions.retain(|_, s| s.grant.expiry_ms >= before_ms);
    }

    fn check_grant(&self, node: &NodeId, receipt: &SignedReceipt) -> Result<(), ReceiptRejection> {
        let session = receipt.body.session_id;
        let state = self
            .sessions
            .get(&session)
            .ok_or(ReceiptRejection::UnknownSession { session })?;
        if state.grant.node_id != *node {
            return Err(ReceiptRejection::WrongNode {
                session,
                granted: state.grant.node_id,
                claimed: *node,
            });
        }
        Ok(())
    }

    fn check_signatures(
        &self,
        items: &[(NodeId, &SignedReceipt)],
        outcomes: &mut [Result<Credit, ReceiptRejection>],
    ) {
        let candidates: Vec<usize> = (0..items.len())
            .filter(|&i| outcomes.get(i).is_some_and(|o| o.is_ok()))
            .collect();
        let chunk = self.config.batch_size.max(1);
        for indices in candidates.chunks(chunk) {
            let mut checked = Vec::with_capacity(indices.len());
            let mut messages = Vec::with_capacity(indices.len());
            let mut signatures = Vec::with_capacity(indices.len());
            let mut keys = Vec::with_capacity(indices.len());
            for &i in indices {
                let Some((receipt, state)) = items
                    .get(i)
                    .and_then(|(_, r)| Some((*r, self.sessions.get(&r.body.session_id)?)))
                else {
                    continue;
                };
                checked.push(i);
                messages.push(receipt.body.canonical_bytes());
                signatures.push(receipt.signature.to_signature());
                keys.push(state.viewer_key);
            }
            let batch_ok = self.config.signature_check == SignatureCheck::Batch && {
                let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
            };
            if batch_ok {
                continue;
            }
            for (k, &i) in checked.iter().enumerate() {
                let valid = match (messages.get(k), signatures.get(k), keys.get(k)) {
                    (Some(m), Some(s), Some(key)) => key.verify_strict(m, s).is_ok(),
                    _ => false,
                };
                if !valid {
                    if let (Some(outcome), Some((_, receipt))) = (outcomes.get_mut(i), items.get(i))
                    {
                        *outcome = Err(ReceiptRejection::BadSignature {
                            session: receipt.body.session_id,
                            seq: receipt.body.seq,
                        });
                    }
                }
            }
        }
    }

    fn apply(
        &mut self,
        receipt: &SignedReceipt,
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Result<Credit, ReceiptRejection> {
        let r = &receipt.body;
        let session = r.session_id;
        let config = &self.config;
        let state = self
            .sessions
            .get_mut(&session)
            .ok_or(ReceiptRejection::UnknownSession { session })?;
        let previous = state.last;
        if let Some(last) = previous {
            if r.seq == last.seq && r.bytes_total == last.bytes_total {
                return Err(ReceiptRejection::Duplicate {
                    session,
                    seq: r.seq,
                });
            }
            if r.seq <= last.seq {
                return Err(ReceiptRejection::Replayed {
                    session,
                    seq: r.seq,
                    last_seq: last.seq,
                });
            }
            for (field, before, now) in [
                ("bytes_total", last.bytes_total, r.bytes_total),
                (
                    "last_segment_seq",
                    last.last_segment_seq,
                    r.last_segment_seq,
                ),
                ("t_ms", last.t_ms, r.t_ms),
            ] {
                if now < before {
                    return Err(ReceiptRejection::NotMonotonic {
                        session,
                        seq: r.seq,
                        field,
                        previous: before,
                        received: now,
                    });
                }
            }
        }
        if r.t_ms > state.grant.expiry_ms {
            return Err(ReceiptRejection::Expired {
                session,
                t_ms: r.t_ms,
                expiry_ms: state.grant.expiry_ms,
            });
        }
        if r.t_ms > now_ms.saturating_add(config.max_clock_lead_ms) {
            return Err(ReceiptRejection::FromTheFuture {
                session,
                t_ms: r.t_ms,
                now_ms,
            });
        }
        if r.bytes_total > state.grant.max_bytes {
            return Err(ReceiptRejection::BeyondGrant {
                session,
                bytes_total: r.bytes_total,
                max_bytes: state.grant.max_bytes,
            });
        }
        let segment = content
            .segment(&state.grant.stream_id, r.last_segment_seq)
            .ok_or(ReceiptRejection::UnknownSegment {
                session,
                segment_seq: r.last_segment_seq,
            })?;
        if segment.digest != r.segments_digest {
            return Err(ReceiptRejection::ContentMismatch {
                session,
                segment_seq: r.last_segment_seq,
            });
        }
        let lag_ms = r.t_ms.saturating_sub(segment.published_ms);
        if lag_ms > config.stale_after_ms {
            return Err(ReceiptRejection::StaleContent {
                session,
                segment_seq: r.last_segment_seq,
                lag_ms,
                limit_ms: config.stale_after_ms,
            });
        }
        let bytes = r
            .bytes_total
            .saturating_sub(previous.map_or(0, |l| l.bytes_total));
        let on_time = lag_ms <= config.on_time_lag_ms;
        state.last = Some(LastAccepted {
            seq: r.seq,
            bytes_total: r.bytes_total,
            last_segment_seq: r.last_segment_seq,
            t_ms: r.t_ms,
        });
        state.epoch_bytes = state.epoch_bytes.saturating_add(bytes);
        if on_time {
            state.epoch_on_time_bytes = state.epoch_on_time_bytes.saturating_add(bytes);
        }
        Ok(Credit {
            session_id: session,
            bytes,
            on_time,
        })
    }
}

fn placeholder(receipt: &SignedReceipt) -> Credit {
    Credit {
        session_id: receipt.body.session_id,
        bytes: 0,
        on_time: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{OriginDigests, SegmentChain, SegmentRecord};
    use crate::identity::KeyPair;
    use crate::ids::ContentDigest;
    use crate::receipt::ViewerReceipt;
    use crate::signed::Signed;
    use proptest::prelude::*;

    const T0: u64 = 1_000_000;

    struct Fixture {
        verifier: ReceiptVerifier,
        origin: OriginDigests,
        digests: Vec<ContentDigest>,
        viewer: KeyPair,
        node: NodeId,
        session: SessionId,
    }

    /// 100 segments published 2 s apart from T0; one session granted for 1 MB until T0 + 300 s.
    fn fixture(check: SignatureCheck) -> Fixture {
        let stream = StreamId::new("live").unwrap();
        let mut chain = SegmentChain::genesis(0);
        let mut origin = OriginDigests::new();
        let mut digests = Vec::new();
        for seq in 0..100u64 {
            let digest = chain.push(&crate::segment_hash(&seq.to_be_bytes()));
            digests.push(digest);
            origin.insert(
                stream.clone(),
                seq,
                SegmentRecord {
                    digest,
                    published_ms: T0 + seq * 2_000,
                },
            );
        }
        let coordinator = KeyPair::from_seed([1; 32]);
        let viewer = KeyPair::from_seed([2; 32]);
        let node = KeyPair::from_seed([3; 32]).node_id();
        let session = SessionId::from_bytes([7; 16]);
        let grant = Signed::sign(
            SessionGrant {
                session_id: session,
                viewer: viewer.viewer_key(),
                node_id: node,
                stream_id: stream,
                max_bytes: 1_000_000,
                expiry_ms: T0 + 300_000,
            },
            &coordinator,
        );
        let mut verifier = ReceiptVerifier::new(VerifierConfig {
            signature_check: check,
            batch_size: 4,
            ..VerifierConfig::default()
        });
        verifier
            .admit_signed_grant(&grant, &coordinator.coordinator_key(), T0)
            .unwrap();
        Fixture {
            verifier,
            origin,
            digests,
            viewer,
            node,
            session,
        }
    }

    impl Fixture {
        /// A receipt acknowledging segment `segment` one second after its publication.
        fn receipt(&self, seq: u64, bytes_total: u64, segment: u64) -> SignedReceipt {
            Signed::sign(
                ViewerReceipt {
                    session_id: self.session,
                    seq,
                    bytes_total,
                    last_segment_seq: segment,
                    segments_digest: self.digests[segment as usize],
                    t_ms: T0 + segment * 2_000 + 1_000,
                },
                &self.viewer,
            )
        }

        fn submit(&mut self, receipts: &[SignedReceipt]) -> Vec<Result<Credit, ReceiptRejection>> {
            let node = self.node;
            self.verifier
                .verify_batch(&node, receipts, &self.origin, T0 + 1_000_000)
        }
    }

    #[test]
    fn cumulative_receipts_credit_their_increments() {
        let mut f = fixture(SignatureCheck::Batch);
        let receipts = [
            f.receipt(1, 1000, 1),
            f.receipt(2, 5000, 3),
            f.receipt(3, 5000, 4),
        ];
        let credits: Vec<u64> = f
            .submit(&receipts)
            .into_iter()
            .map(|o| o.unwrap().bytes)
            .collect();
        assert_eq!(credits, [1000, 4000, 0]);
        let usage = f.verifier.take_usage();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].bytes, usage[0].on_time_bytes), (5000, 5000));
        assert!(f.verifier.take_usage().is_empty());
    }

    #[test]
    fn each_violation_is_rejected_with_its_reason() {
        let mut f = fixture(SignatureCheck::Batch);
        assert!(f.submit(&[f.receipt(5, 1000, 5)])[0].is_ok());
        let session = f.session;

        assert_eq!(
            f.submit(&[f.receipt(5, 1000, 5)])[0],
            Err(ReceiptRejection::Duplicate { session, seq: 5 })
        );
        let replay = f.submit(&[f.receipt(5, 2000, 6)]);
        assert_eq!(
            replay[0],
            Err(ReceiptRejection::Replayed {
                session,
                seq: 5,
                last_seq: 5
            })
        );
        let backwards = f.submit(&[f.receipt(6, 500, 6)]);
        assert!(matches!(
            backwards[0],
            Err(ReceiptRejection::NotMonotonic {
                field: "bytes_total",
                ..
            })
        ));
        let beyond = f.submit(&[f.receipt(7, 1_000_001, 7)]);
        assert!(matches!(
            beyond[0],
            Err(ReceiptRejection::BeyondGrant { .. })
        ));

        let mut wrong = f.receipt(8, 2000, 8);
        wrong.body.segments_digest = f.digests[7];
        let wrong = Signed::sign(wrong.body, &f.viewer);
        assert!(matches!(
            f.submit(&[wrong])[0],
            Err(ReceiptRejection::ContentMismatch { segment_seq: 8, .. })
        ));

        let mut stale = f.receipt(9, 2000, 9).body;
        stale.t_ms += 61_000;
        assert!(matches!(
            f.submit(&[Signed::sign(stale, &f.viewer)])[0],
            Err(ReceiptRejection::StaleContent { lag_ms: 62_000, .. })
        ));

        let mut late = f.receipt(10, 2000, 99).body;
        late.t_ms = T0 + 300_001;
        assert!(matches!(
            f.submit(&[Signed::sign(late, &f.viewer)])[0],
            Err(ReceiptRejection::Expired { .. })
        ));

        let mut forged = f.receipt(11, 2000, 11);
        forged.body.bytes_total = 900_000;
        assert_eq!(
            f.submit(&[forged])[0],
            Err(ReceiptRejection::BadSignature { session, seq: 11 })
        );

        let other = KeyPair::from_seed([9; 32]).node_id();
        let r = f.receipt(12, 3000, 12);
        let origin = f.origin.clone();
        assert!(matches!(
            f.verifier.verify_batch(&other, &[r], &origin, T0)[0],
            Err(ReceiptRejection::WrongNode { .. })
        ));
        let mut unknown = f.receipt(13, 3000, 13).body;
        unknown.session_id = SessionId::from_bytes([0; 16]);
        assert!(matches!(
            f.submit(&[Signed::sign(unknown, &f.viewer)])[0],
            Err(ReceiptRejection::UnknownSession { .. })
        ));
        // After all that, only the first receipt's bytes were credited.
        assert_eq!(f.verifier.take_usage()[0].bytes, 1000);
    }

    #[test]
    fn a_bad_signature_inside_a_batch_is_singled_out() {
        let mut batch = fixture(SignatureCheck::Batch);
        let mut single = fixture(SignatureCheck::OneByOne);
        let mut receipts: Vec<_> = (1..=10).map(|i| batch.receipt(i, i * 100, i)).collect();
        receipts[6].body.bytes_total += 1;
        let a = batch.submit(&receipts);
        let b = single.submit(&receipts);
        assert_eq!(a, b);
        let rejected: Vec<usize> = a
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(rejected, [6]);

        // The same receipts submitted through the many-node entry point, one by another node.
        let mut many = fixture(SignatureCheck::Batch);
        let stranger = KeyPair::from_seed([9; 32]).node_id();
        let submissions: Vec<(NodeId, SignedReceipt)> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| (if i == 2 { stranger } else { many.node }, r.clone()))
            .collect();
        let origin = many.origin.clone();
        let c = many
            .verifier
            .verify_submissions(&submissions, &origin, T0 + 1_000_000);
        assert!(matches!(c[2], Err(ReceiptRejection::WrongNode { .. })));
        assert!(matches!(c[6], Err(ReceiptRejection::BadSignature { .. })));
        assert_eq!(c.iter().filter(|o| o.is_ok()).count(), 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// However accepted receipts are resubmitted (reordered, duplicated), the session is never
        /// credited more than the newest receipt's `bytes_total`.
        #[test]
        fn receipts_cannot_be_replayed(
            increments in proptest::collection::vec(1u64..5_000, 1..12),
            replays in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        ) {
            let mut f = fixture(SignatureCheck::Batch);
            let mut total = 0;
            let receipts: Vec<_> = increments
                .iter()
                .enumerate()
                .map(|(i, inc)| {
                    total += inc;
                    f.receipt(i as u64 + 1, total, i as u64 + 1)
                })
                .collect();
            prop_assert!(f.submit(&receipts).iter().all(Result::is_ok));
            let again: Vec<_> = replays.iter().map(|ix| ix.get(&receipts).clone()).collect();
            for outcome in f.submit(&again) {
                let is_replay = matches!(
                    outcome,
                    Err(ReceiptRejection::Replayed { .. } | ReceiptRejection::Duplicate { .. })
                );
                prop_assert!(is_replay);
            }
            prop_assert_eq!(f.verifier.take_usage()[0].bytes, total);
        }
    }
}
