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

/// How far apart in arrival time a backlog's receipts are stamped, ms: bytes are booked at most
/// this far from the moment they arrived (so at most this much of them in the epoch beside
/// theirs), and a backlog of an hour is signed as 60 receipts.
pub const BACKLOG_STAMP_STEP_MS: u64 = 60_000;

/// Verified bytes older than this when signed are a backlog (verified late, the coordinator
/// having been away): they are signed stamped with when they arrived, not when signed. Within
/// it, a receipt is stamped when signed, as always.
pub const BACKLOG_AFTER_MS: u64 = 10_000;

/// What the session had verified when the segment that ends it arrived.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    /// When the first segment of its step arrived.
    opened_ms: u64,
    /// When the newest segment it acknowledges arrived: its receipt's stamp.
    received_ms: u64,
    bytes_total: u64,
    last_segment_seq: u64,
    segments_digest: ContentDigest,
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
    /// The newest receipt's `t_ms`: stamps never go back before it.
    last_signed_ms: u64,
    /// Since the last receipt, what was verified by arrival time, one checkpoint per
    /// [`BACKLOG_STAMP_STEP_MS`] (segments checked with [`Self::check_hash_received`]).
    checkpoints: Vec<Checkpoint>,
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
            last_signed_ms: 0,
            checkpoints: Vec::new(),
        }
    }

    /// [`Self::check_hash`] for a segment that arrived at `received_ms` (Unix ms): a verified
    /// segment is remembered by its arrival, so that [`Self::next_receipts`] can acknowledge a
    /// backlog in the epochs its bytes were delivered in.
    pub fn check_hash_received(
        &mut self,
        index: &OriginIndex,
        hash: &ContentDigest,
        len: usize,
        received_ms: u64,
    ) -> SegmentCheck {
        let check = self.check_hash(index, hash, len);
        if let (SegmentCheck::Verified { .. }, Some(chain)) = (check, self.chain) {
            let checkpoint = Checkpoint {
                opened_ms: received_ms,
                received_ms,
                bytes_total: self.bytes_total,
                last_segment_seq: self.last_segment_seq,
                segments_digest: chain.head(),
            };
            match self.checkpoints.last_mut() {
                // Within the step the last one opened: it moves on to this segment.
                Some(last)
                    if last.received_ms <= received_ms
                        && received_ms.saturating_sub(last.opened_ms) < BACKLOG_STAMP_STEP_MS =>
                {
                    *last = Checkpoint {
                        opened_ms: last.opened_ms,
                        ..checkpoint
                    };
                }
                _ => self.checkpoints.push(checkpoint),
            }
        }
        check
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
        self.last_signed_ms = self.last_signed_ms.max(receipt.t_ms);
        self.checkpoints.clear();
        Some(Signed::sign(receipt, viewer))
    }

    /// Signed receipts for everything verified since the last one, at `now_ms`: one stamped
    /// `now_ms` when the newest verified segment arrived within [`BACKLOG_AFTER_MS`] (as
    /// [`Self::next_receipt`]); else a backlog (the coordinator was away, so nothing could be
    /// verified): one receipt per [`BACKLOG_STAMP_STEP_MS`] of arrival time, each stamped
    /// with the arrival of the newest segment it acknowledges. The coordinator books each
    /// receipt to the epoch of its stamp while that epoch still takes receipts (an outage
    /// holds the epochs it covered open), so delivered bytes are paid from the pools of the
    /// epochs they were delivered in; receipts stay cumulative, so none is credited twice.
    /// Stamps never go back before the previous receipt's.
    pub fn next_receipts(&mut self, viewer: &KeyPair, now_ms: u64) -> Vec<SignedReceipt> {
        let Some(chain) = self.chain else {
            return Vec::new();
        };
        if self.bytes_total == self.acknowledged_bytes {
            self.checkpoints.clear();
            return Vec::new();
        }
        let mut checkpoints = std::mem::take(&mut self.checkpoints);
        let fresh = checkpoints
            .last()
            .is_none_or(|last| now_ms.saturating_sub(last.received_ms) <= BACKLOG_AFTER_MS);
        let current = Checkpoint {
            opened_ms: now_ms,
            received_ms: now_ms,
            bytes_total: self.bytes_total,
            last_segment_seq: self.last_segment_seq,
            segments_digest: chain.head(),
        };
        if fresh {
            checkpoints = vec![current];
        } else if checkpoints
            .last()
            .is_some_and(|last| last.bytes_total != self.bytes_total)
        {
            // Segments verified without their arrival time: acknowledged now.
            checkpoints.push(current);
        }
        let mut out = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            if checkpoint.bytes_total <= self.acknowledged_bytes {
                continue;
            }
            let t_ms = checkpoint.received_ms.max(self.last_signed_ms);
            let receipt = ViewerReceipt {
                session_id: self.session_id,
                seq: self.next_seq,
                bytes_total: checkpoint.bytes_total,
                last_segment_seq: checkpoint.last_segment_seq,
                segments_digest: checkpoint.segments_digest,
                t_ms,
            };
            self.next_seq += 1;
            self.acknowledged_bytes = checkpoint.bytes_total;
            self.last_signed_ms = t_ms;
            out.push(Signed::sign(receipt, viewer));
        }
        out
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

    /// A stream of `count` 2-second segments published from `t0` (the coordinator's list).
    fn published_from(t0: u64, count: u64) -> (Vec<Vec<u8>>, OriginIndex, OriginDigests) {
        let stream = StreamId::new("show").expect("valid id");
        let segments: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; 1_000]).collect();
        let mut chain = SegmentChain::genesis(0);
        let mut index = OriginIndex::default();
        let mut digests = OriginDigests::new();
        for (seq, bytes) in (0u64..).zip(&segments) {
            let hash = segment_hash(bytes);
            let digest = chain.push(&hash);
            index.insert(seq, hash, digest);
            digests.insert(
                stream.clone(),
                seq,
                SegmentRecord {
                    digest,
                    published_ms: t0 + seq * 2_000,
                },
            );
        }
        (segments, index, digests)
    }

    #[test]
    fn a_backlog_verified_late_is_signed_stamped_with_when_its_bytes_arrived() {
        // 150 segments arrive 2 s apart (300 s, one every 2 s from t0 + 500 ms) while the
        // coordinator is away; they are verified when it is back, 10 minutes later.
        let t0 = 1_800_000_000_000;
        let (segments, index, digests) = published_from(t0, 150);
        let viewer = KeyPair::from_seed([3; 32]);
        let node = KeyPair::from_seed([4; 32]).node_id();
        let session_id = SessionId::from_bytes([9; 16]);
        let mut receipts = SessionReceipts::new(session_id);
        for (seq, bytes) in (0u64..).zip(&segments) {
            let arrived = t0 + seq * 2_000 + 500;
            let check =
                receipts.check_hash_received(&index, &segment_hash(bytes), bytes.len(), arrived);
            assert_eq!(check, SegmentCheck::Verified { sequence: seq });
        }
        let now = t0 + 900_000;
        let signed = receipts.next_receipts(&viewer, now);
        // One receipt per minute of arrivals, each stamped with its newest segment's arrival.
        assert_eq!(signed.len(), 5);
        let stamps: Vec<u64> = signed.iter().map(|r| r.body.t_ms).collect();
        assert_eq!(
            stamps,
            [58_500, 118_500, 178_500, 238_500, 298_500].map(|ms| t0 + ms)
        );
        assert_eq!(signed.last().map(|r| r.body.bytes_total), Some(150_000));
        assert!(
            receipts.next_receipts(&viewer, now).is_empty(),
            "all acknowledged"
        );
        // The core verifier takes each one, crediting every byte once, on time.
        let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
        verifier
            .admit_grant(
                SessionGrant {
                    session_id,
                    viewer: viewer.viewer_key(),
                    node_id: node,
                    stream_id: StreamId::new("show").expect("valid id"),
                    max_bytes: 1 << 30,
                    expiry_ms: t0 + 3_600_000,
                },
                t0,
            )
            .expect("grant admitted");
        let outcomes = verifier.verify_batch(&node, &signed, &digests, now);
        let credited: u64 = outcomes
            .iter()
            .map(|o| o.as_ref().map(|c| (c.bytes, c.on_time)))
            .map(|o| match o {
                Ok((bytes, true)) => bytes,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(credited, 150_000);
    }

    #[test]
    fn bytes_verified_as_they_arrive_are_signed_when_the_receipt_is_due() {
        let t0 = 1_800_000_000_000;
        let (segments, index, _) = published_from(t0, 4);
        let viewer = KeyPair::from_seed([3; 32]);
        let mut receipts = SessionReceipts::new(SessionId::from_bytes([9; 16]));
        for (seq, bytes) in (0u64..).zip(&segments) {
            receipts.check_hash_received(&index, &segment_hash(bytes), bytes.len(), t0 + seq);
        }
        let signed = receipts.next_receipts(&viewer, t0 + 2_000);
        assert_eq!(signed.len(), 1);
        assert_eq!(signed.first().map(|r| r.body.t_ms), Some(t0 + 2_000));
        // A receipt never goes back before the previous one: a segment that arrived earlier
        // but was verified after it is stamped with that receipt's time at the earliest.
        let (more, index, _) = published_from(t0, 6);
        for bytes in more.iter().skip(4) {
            receipts.check_hash_received(&index, &segment_hash(bytes), bytes.len(), t0 + 10);
        }
        let signed = receipts.next_receipts(&viewer, t0 + 60_000);
        assert_eq!(signed.first().map(|r| r.body.t_ms), Some(t0 + 2_000));
        assert_eq!(signed.first().map(|r| r.body.seq), Some(2));
    }
}
