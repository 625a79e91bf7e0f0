//! The receipt rejections the verifier's own tests leave out, each at its exact boundary: a
//! receipt just inside a limit is accepted and credited, one unit beyond it is rejected with
//! the reason and the figures that explain it.

use streamr_core::{
    segment_hash, ContentDigest, Credit, KeyPair, NodeId, OriginDigests, ReceiptRejection,
    ReceiptVerifier, SegmentChain, SegmentRecord, SessionGrant, SessionId, Signed, SignedReceipt,
    StreamId, VerifierConfig, ViewerReceipt,
};

const T0: u64 = 1_000_000;
const MAX_BYTES: u64 = 1_000_000;
const SEGMENTS: u64 = 10;

struct Session {
    verifier: ReceiptVerifier,
    origin: OriginDigests,
    digests: Vec<ContentDigest>,
    viewer: KeyPair,
    node: NodeId,
    id: SessionId,
    clock_lead_ms: u64,
}

/// One session granted `MAX_BYTES` until T0 + 300 s; `SEGMENTS` segments published 2 s apart.
fn session() -> Session {
    let stream = StreamId::new("live").expect("stream id");
    let mut chain = SegmentChain::genesis(0);
    let mut origin = OriginDigests::new();
    let mut digests = Vec::new();
    for seq in 0..SEGMENTS {
        let digest = chain.push(&segment_hash(&seq.to_be_bytes()));
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
    let id = SessionId::from_bytes([7; 16]);
    let grant = Signed::sign(
        SessionGrant {
            session_id: id,
            viewer: viewer.viewer_key(),
            node_id: node,
            stream_id: stream,
            max_bytes: MAX_BYTES,
            expiry_ms: T0 + 300_000,
        },
        &coordinator,
    );
    let config = VerifierConfig::default();
    let clock_lead_ms = config.max_clock_lead_ms;
    let mut verifier = ReceiptVerifier::new(config);
    verifier
        .admit_signed_grant(&grant, &coordinator.coordinator_key(), T0)
        .expect("grant admitted");
    Session {
        verifier,
        origin,
        digests,
        viewer,
        node,
        id,
        clock_lead_ms,
    }
}

impl Session {
    /// A receipt for `segment` (its true digest) signed at `t_ms`.
    fn receipt(&self, seq: u64, bytes_total: u64, segment: u64, t_ms: u64) -> SignedReceipt {
        let digest = self
            .digests
            .get(segment as usize)
            .copied()
            .unwrap_or_else(|| self.digests[self.digests.len() - 1]);
        Signed::sign(
            ViewerReceipt {
                session_id: self.id,
                seq,
                bytes_total,
                last_segment_seq: segment,
                segments_digest: digest,
                t_ms,
            },
            &self.viewer,
        )
    }

    fn submit(&mut self, receipt: SignedReceipt, now_ms: u64) -> Result<Credit, ReceiptRejection> {
        let node = self.node;
        let mut outcomes = self
            .verifier
            .verify_batch(&node, &[receipt], &self.origin, now_ms);
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0)
    }
}

#[test]
fn a_receipt_for_exactly_the_granted_bytes_is_accepted_one_byte_more_is_not() {
    let mut s = session();
    let at = T0 + 3_000;
    let now = T0 + 10_000;
    let credit = s.submit(s.receipt(1, MAX_BYTES - 10, 1, at), now);
    assert_eq!(credit.map(|c| c.bytes), Ok(MAX_BYTES - 10));
    let credit = s.submit(s.receipt(2, MAX_BYTES, 1, at), now);
    assert_eq!(
        credit.map(|c| c.bytes),
        Ok(10),
        "the exact grant is accepted"
    );
    assert_eq!(
        s.submit(s.receipt(3, MAX_BYTES + 1, 1, at), now),
        Err(ReceiptRejection::BeyondGrant {
            session: s.id,
            bytes_total: MAX_BYTES + 1,
            max_bytes: MAX_BYTES,
        })
    );
    let usage = s.verifier.take_usage();
    assert_eq!(usage.iter().map(|u| u.bytes).sum::<u64>(), MAX_BYTES);
}

#[test]
fn a_receipt_signed_ahead_of_the_clock_lead_is_rejected_at_the_lead_it_is_not() {
    let mut s = session();
    let now = T0 + 10_000;
    let lead = s.clock_lead_ms;
    assert!(lead > 0, "the default config allows some clock lead");
    assert_eq!(
        s.submit(s.receipt(1, 1_000, 4, now + lead + 1), now),
        Err(ReceiptRejection::FromTheFuture {
            session: s.id,
            t_ms: now + lead + 1,
            now_ms: now,
        })
    );
    let credit = s.submit(s.receipt(2, 1_000, 4, now + lead), now);
    assert_eq!(
        credit.map(|c| c.bytes),
        Ok(1_000),
        "exactly at the lead is accepted"
    );
}

#[test]
fn a_receipt_for_a_segment_the_origin_never_reported_is_rejected() {
    let mut s = session();
    let now = T0 + 60_000;
    let last = SEGMENTS - 1;
    let credit = s.submit(s.receipt(1, 1_000, last, T0 + last * 2_000 + 500), now);
    assert_eq!(
        credit.map(|c| c.bytes),
        Ok(1_000),
        "the last reported segment"
    );
    assert_eq!(
        s.submit(s.receipt(2, 2_000, SEGMENTS, T0 + SEGMENTS * 2_000), now),
        Err(ReceiptRejection::UnknownSegment {
            session: s.id,
            segment_seq: SEGMENTS,
        })
    );
    let usage = s.verifier.take_usage();
    assert_eq!(usage.iter().map(|u| u.bytes).sum::<u64>(), 1_000);
}
