//! One session's receipt state: the viewer's own digest chain over the segments it verified, the
//! verified byte count, and the signed cumulative receipts that acknowledge them.

use streamr_core::{
    ContentDigest, KeyPair, SegmentChain, SessionId, Signed, SignedReceipt, ViewerReceipt,
};

use super::origin::OriginIndex;
use crate::client::unix_ms;

/// What checking one segment against the origin found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentCheck {
    /// The bytes are the origin's segment `sequence`; the chain now ends there.
    Verified {
        /// The origin's sequence number.
        sequence: u64,
    },
    /// The origin has not reported these bytes (yet): stale, altered or invented content, or a
    /// node's first partial segment.
    Unknown,
}

/// Receipt state of one granted session.
#[derive(Debug)]
pub struct SessionReceipts {
    session_id: SessionId,
    chain: Option<SegmentChain>,
    bytes_total: u64,
    last_segment_seq: u64,
    next_seq: u64,
    acknowledged_bytes: u64,
}

impl SessionReceipts {
    /// Fresh state for the granted session `session_id`.
    pub fn new(session_id: SessionId) -> Self {
        SessionReceipts {
            session_id,
            chain: None,
            bytes_total: 0,
            last_segment_seq: 0,
            next_seq: 1,
            acknowledged_bytes: 0,
        }
    }

    /// Checks a received segment (by its hash and length) against the origin's hashes and,
    /// when it matches, extends the chain and counts it. A segment that does not follow the
    /// previous verified one starts a new chain anchored on the origin's digest before it.
    pub fn check_hash(
        &mut self,
        index: &OriginIndex,
        hash: &ContentDigest,
        len: usize,
    ) -> SegmentCheck {
        let expected = self.next_expected();
        let Some(origin) = index.find(hash, expected) else {
            return SegmentCheck::Unknown;
        };
        if expected.is_some_and(|expected| origin.sequence < expected) {
            // Bytes of a segment before the ones already verified: stale content.
            return SegmentCheck::Unknown;
        }
        let continues = self
            .chain
            .is_some_and(|chain| chain.next_seq() == origin.sequence);
        if !continues {
            match index.anchor_for(origin.sequence) {
                Some(anchor) => self.chain = Some(SegmentChain::anchored(anchor, origin.sequence)),
                None => return SegmentCheck::Unknown,
            }
        }
        let Some(chain) = self.chain.as_mut() else {
            return SegmentCheck::Unknown;
        };
        let digest = chain.push(hash);
        if digest != origin.digest {
            // Cannot happen for bytes the origin reported, unless the coordinator's records are
            // inconsistent; start over at the next segment.
            self.chain = None;
            return SegmentCheck::Unknown;
        }
        self.bytes_total = self.bytes_total.saturating_add(len as u64);
        self.last_segment_seq = origin.sequence;
        SegmentCheck::Verified {
            sequence: origin.sequence,
        }
    }

    /// The origin sequence number the next segment continues the chain at, once one verified.
    pub fn next_expected(&self) -> Option<u64> {
        self.chain.map(|chain| chain.next_seq())
    }

    /// Verified bytes received in the session so far.
    #[cfg(test)]
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total
    }

    /// A signed receipt for everything verified so far, or `None` when nothing new was verified
    /// since the last one.
    pub fn next_receipt(&mut self, viewer: &KeyPair) -> Option<SignedReceipt> {
        let chain = self.chain?;
        if self.bytes_total == self.acknowledged_bytes {
            return None;
        }
        let receipt = ViewerReceipt {
            session_id: self.session_id,
            seq: self.next_seq,
            bytes_total: self.bytes_total,
            last_segment_seq: self.last_segment_seq,
            segments_digest: chain.head(),
            t_ms: unix_ms(),
        };
        self.next_seq += 1;
        self.acknowledged_bytes = self.bytes_total;
        Some(Signed::sign(receipt, viewer))
    }
}

#[cfg(test)]
mod tests {
    use streamr_core::{
        segment_hash, NodeId, OriginDigests, ReceiptVerifier, SegmentRecord, SessionGrant,
        StreamId, VerifierConfig,
    };

    use super::*;

    /// An origin that published `count` segments, as the coordinator would list them.
    fn origin(count: u64) -> (Vec<Vec<u8>>, OriginIndex, OriginDigests) {
        let stream = StreamId::new("show").expect("valid id");
        let segments: Vec<Vec<u8>> = (0..count)
            .map(|i| vec![i as u8; 1000 + i as usize])
            .collect();
        let mut chain = SegmentChain::genesis(0);
        let mut index = OriginIndex::default();
        let mut digests = OriginDigests::new();
        for (seq, bytes) in segments.iter().enumerate() {
            let hash = segment_hash(bytes);
            let digest = chain.push(&hash);
            index.insert(seq as u64, hash, digest);
            digests.insert(
                stream.clone(),
                seq as u64,
                SegmentRecord {
                    digest,
                    published_ms: unix_ms(),
                },
            );
        }
        (segments, index, digests)
    }

    fn verifier(viewer: &KeyPair, node: NodeId, session_id: SessionId) -> ReceiptVerifier {
        let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
        verifier
            .admit_grant(
                SessionGrant {
                    session_id,
                    viewer: viewer.viewer_key(),
                    node_id: node,
                    stream_id: StreamId::new("show").expect("valid id"),
                    max_bytes: 1 << 30,
                    expiry_ms: unix_ms() + 60_000,
                },
                unix_ms(),
            )
            .expect("grant admitted");
        verifier
    }

    #[test]
    fn receipts_for_verified_segments_are_accepted_by_the_core_verifier() {
        let (segments, index, digests) = origin(8);
        let viewer = KeyPair::from_seed([3; 32]);
        let node = KeyPair::from_seed([4; 32]).node_id();
        let session_id = SessionId::from_bytes([9; 16]);
        let mut receipts = SessionReceipts::new(session_id);
        // Join mid-stream at 3, miss 5, continue at 6: the chain re-anchors on the origin.
        let mut sent = Vec::new();
        for seq in [3usize, 4, 6, 7] {
            let bytes = &segments[seq];
            let check = receipts.check_hash(&index, &segment_hash(bytes), bytes.len());
            assert_eq!(
                check,
                SegmentCheck::Verified {
                    sequence: seq as u64
                }
            );
            sent.push(
                receipts
                    .next_receipt(&viewer)
                    .expect("progress gives a receipt"),
            );
        }
        assert!(
            receipts.next_receipt(&viewer).is_none(),
            "no progress, no receipt"
        );
        let expected: u64 = [3usize, 4, 6, 7]
            .iter()
            .map(|&i| segments[i].len() as u64)
            .sum();
        assert_eq!(receipts.bytes_total(), expected);
        let mut verifier = verifier(&viewer, node, session_id);
        let outcomes = verifier.verify_batch(&node, &sent, &digests, unix_ms());
        let credited: u64 = outcomes
            .iter()
            .map(|o| o.as_ref().expect("receipt accepted").bytes)
            .sum();
        assert_eq!(credited, expected);
    }

    #[test]
    fn stale_or_altered_segments_are_not_acknowledged() {
        let (segments, index, _) = origin(4);
        let viewer = KeyPair::from_seed([3; 32]);
        let mut receipts = SessionReceipts::new(SessionId::from_bytes([1; 16]));
        let altered = b"a node's own bytes";
        assert_eq!(
            receipts.check_hash(&index, &segment_hash(altered), altered.len()),
            SegmentCheck::Unknown
        );
        assert!(receipts.next_receipt(&viewer).is_none());
        let bytes = &segments[2];
        receipts.check_hash(&index, &segment_hash(bytes), bytes.len());
        let receipt = receipts.next_receipt(&viewer).expect("a receipt");
        assert_eq!(receipt.body.bytes_total, bytes.len() as u64);
        assert_eq!(receipt.body.last_segment_seq, 2);
        assert_eq!(receipt.body.seq, 1);
    }

    #[test]
    fn bytes_the_origin_sent_twice_follow_on_from_the_chain() {
        // A restarted synthetic source sends segment 1's bytes again as segment 5.
        let stream: Vec<Vec<u8>> = [0u8, 1, 2, 3, 4, 1, 2]
            .iter()
            .map(|i| vec![*i; 500])
            .collect();
        let mut chain = SegmentChain::genesis(0);
        let mut index = OriginIndex::default();
        for (seq, bytes) in stream.iter().enumerate() {
            let hash = segment_hash(bytes);
            index.insert(seq as u64, hash, chain.push(&hash));
        }
        let viewer = KeyPair::from_seed([3; 32]);
        let mut receipts = SessionReceipts::new(SessionId::from_bytes([2; 16]));
        let mut seen = Vec::new();
        for (seq, bytes) in stream.iter().enumerate().skip(3) {
            match receipts.check_hash(&index, &segment_hash(bytes), bytes.len()) {
                SegmentCheck::Verified { sequence } => seen.push(sequence),
                SegmentCheck::Unknown => panic!("segment {seq} not verified"),
            }
        }
        assert_eq!(seen, vec![3, 4, 5, 6]);
        let receipt = receipts.next_receipt(&viewer).expect("a receipt");
        assert_eq!(receipt.body.last_segment_seq, 6);
    }
}
