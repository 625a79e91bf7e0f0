//! Content binding: the origin hashes every media segment with blake3 and chains the hashes into
//! a running digest, `d(n) = blake3(d(n−1) ‖ n as u64 BE ‖ hash(segment n))`. A viewer computes
//! the same chain over what it received; a receipt earns only if its digest equals the origin's
//! for its `last_segment_seq`, so stale, altered or invented content earns nothing.
//!
//! A viewer joining mid-stream (or re-joining after a gap) anchors the chain on the previous
//! digest `d(k−1)` handed over by its node. A wrong anchor simply makes every later digest miss.

use std::collections::{BTreeMap, HashMap};

use crate::ids::{ContentDigest, StreamId};

/// Hashes one segment's bytes.
pub fn segment_hash(segment: &[u8]) -> ContentDigest {
    ContentDigest::from_bytes(*blake3::hash(segment).as_bytes())
}

/// The running digest over segment hashes, as kept by the origin and by each viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentChain {
    head: ContentDigest,
    next_seq: u64,
}

impl SegmentChain {
    /// A chain for a stream whose first segment is `first_seq`, starting from the all-zero digest.
    pub fn genesis(first_seq: u64) -> Self {
        Self::anchored(ContentDigest::default(), first_seq)
    }

    /// A chain continuing from digest `previous`, whose next segment is `next_seq`.
    pub fn anchored(previous: ContentDigest, next_seq: u64) -> Self {
        Self {
            head: previous,
            next_seq,
        }
    }

    /// Appends segment `next_seq` given its hash; returns that segment's digest.
    pub fn push(&mut self, hash: &ContentDigest) -> ContentDigest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.head.as_bytes());
        hasher.update(&self.next_seq.to_be_bytes());
        hasher.update(hash.as_bytes());
        self.head = ContentDigest::from_bytes(*hasher.finalize().as_bytes());
        self.next_seq = self.next_seq.wrapping_add(1);
        self.head
    }

    /// The digest after the last pushed segment.
    pub fn head(&self) -> ContentDigest {
        self.head
    }

    /// The sequence number the next pushed segment gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// What the origin published for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRecord {
    /// The running digest up to and including this segment.
    pub digest: ContentDigest,
    /// When the origin produced it, Unix milliseconds.
    pub published_ms: u64,
}

/// Where the receipt verifier looks up the origin's digests.
pub trait SegmentDigestSource {
    /// The origin's record for `seq` of `stream`, if known.
    fn segment(&self, stream: &StreamId, seq: u64) -> Option<SegmentRecord>;
}

/// In-memory origin digests per stream.
#[derive(Clone, Debug, Default)]
pub struct OriginDigests {
    streams: HashMap<StreamId, BTreeMap<u64, SegmentRecord>>,
}

impl OriginDigests {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the origin's digest for `seq` of `stream`.
    pub fn insert(&mut self, stream: StreamId, seq: u64, record: SegmentRecord) {
        self.streams.entry(stream).or_default().insert(seq, record);
    }
}

impl SegmentDigestSource for OriginDigests {
    fn segment(&self, stream: &StreamId, seq: u64) -> Option<SegmentRecord> {
        self.streams.get(stream)?.get(&seq).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_viewer_chain_matches_origin_and_wrong_content_does_not() {
        let segments: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100]).collect();
        let mut origin = SegmentChain::genesis(0);
        let digests: Vec<_> = segments
            .iter()
            .map(|s| origin.push(&segment_hash(s)))
            .collect();
        // The viewer joins at segment 3, anchored on digest 2.
        let mut viewer = SegmentChain::anchored(digests[2], 3);
        for s in &segments[3..] {
            viewer.push(&segment_hash(s));
        }
        assert_eq!(viewer.head(), digests[5]);
        let mut cheated = SegmentChain::anchored(digests[2], 3);
        cheated.push(&segment_hash(&segments[3]));
        cheated.push(&segment_hash(b"stale or altered"));
        cheated.push(&segment_hash(&segments[5]));
        assert_ne!(cheated.head(), digests[5]);
    }
}
