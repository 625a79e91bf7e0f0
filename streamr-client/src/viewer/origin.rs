//! The origin's segment hashes as the coordinator publishes them: a viewer looks up every segment
//! it received by its BLAKE3 hash, which gives the origin's sequence number and running digest.
//! Friend nodes number their segments from when they joined, but cut them at the same
//! timestamps, so the hash (not the node's sequence number) identifies a segment.

use std::collections::{BTreeMap, HashMap};

use streamr_core::ContentDigest;

use crate::client::{ClientError, CoordinatorClient};

/// Segments fetched per refresh; a viewer only ever looks up recent ones.
const REFRESH_LIMIT: u16 = 100;

/// One origin segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginSegment {
    /// The origin's sequence number.
    pub sequence: u64,
    /// The running digest up to and including it.
    pub digest: ContentDigest,
}

/// One part of an origin LL-HLS segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OriginPart {
    /// The origin's sequence number of the segment it belongs to.
    pub(crate) sequence: u64,
    /// Its index in the segment.
    pub(crate) index: usize,
    /// How many parts the segment has.
    pub(crate) count: usize,
    /// The fMP4 hash of the whole segment (its parts concatenated).
    pub(crate) segment_hash: ContentDigest,
}

/// The origin's recent segments of one stream, by hash and by sequence.
#[derive(Debug, Default)]
pub struct OriginIndex {
    /// Usually one segment per hash; more when the origin sent the same bytes again (a
    /// restarted synthetic source), oldest first.
    by_hash: HashMap<ContentDigest, Vec<OriginSegment>>,
    by_sequence: BTreeMap<u64, ContentDigest>,
    /// LL-HLS: the origin's parts by their hash.
    by_part: HashMap<ContentDigest, OriginPart>,
    /// The origin's first segment, known once a refresh returned the whole list.
    first_sequence: Option<u64>,
    /// When the newest reported segment was cut (unix ms, the origin's clock).
    newest_published_ms: Option<i64>,
    /// Index the LL-HLS (fMP4) rendition's hashes and chain instead of the MPEG-TS one.
    low_latency: bool,
}

impl OriginIndex {
    /// An empty index of the MPEG-TS rendition, or with `low_latency` of the LL-HLS (fMP4)
    /// one: its segment hashes and the running digest the coordinator chains over them.
    pub fn for_rendition(low_latency: bool) -> Self {
        OriginIndex {
            low_latency,
            ..OriginIndex::default()
        }
    }

    /// Adds the coordinator's newest segment records of `stream_id`. Records that do not parse
    /// are skipped (and logged): they cannot be matched anyway.
    pub async fn refresh(
        &mut self,
        coordinator: &CoordinatorClient,
        stream_id: &str,
    ) -> Result<(), ClientError> {
        let records = coordinator.segments(stream_id, REFRESH_LIMIT).await?;
        if records.len() < usize::from(REFRESH_LIMIT) {
            self.first_sequence = records
                .iter()
                .filter_map(|r| u64::try_from(r.sequence).ok())
                .min();
        }
        let newest = records.iter().map(|r| r.published_ms).max();
        self.newest_published_ms = self.newest_published_ms.max(newest);
        for record in records {
            let (hash, digest) = match (&record.ll, self.low_latency) {
                (_, false) => (&record.hash, &record.digest),
                (Some(ll), true) => (&ll.hash, &ll.digest),
                // Reported without its fMP4 rendition: nothing an LL-HLS viewer can match.
                (None, true) => continue,
            };
            let parsed = (
                u64::try_from(record.sequence),
                hash.parse::<ContentDigest>(),
                digest.parse::<ContentDigest>(),
            );
            match parsed {
                (Ok(sequence), Ok(hash), Ok(digest)) => {
                    self.add(sequence, hash, digest);
                    if let (Some(ll), true) = (&record.ll, self.low_latency) {
                        let parts: Result<Vec<ContentDigest>, _> =
                            ll.part_hashes.iter().map(|h| h.parse()).collect();
                        match parts {
                            Ok(parts) => self.add_parts(sequence, hash, &parts),
                            Err(_) => tracing::warn!(
                                stream = stream_id,
                                sequence = record.sequence,
                                "unreadable origin part hash"
                            ),
                        }
                    }
                }
                _ => tracing::warn!(
                    stream = stream_id,
                    sequence = record.sequence,
                    "unreadable origin segment record"
                ),
            }
        }
        Ok(())
    }

    /// Records origin segment `sequence` as reported, e.g. from hashes learned another way
    /// (tests build an index without a coordinator this way).
    pub fn insert(&mut self, sequence: u64, hash: ContentDigest, digest: ContentDigest) {
        self.add(sequence, hash, digest);
        self.first_sequence = self.by_sequence.keys().next().copied();
    }

    /// Records the parts of origin LL-HLS segment `sequence` (whose fMP4 hash is
    /// `segment_hash`), in order.
    pub(crate) fn add_parts(
        &mut self,
        sequence: u64,
        segment_hash: ContentDigest,
        parts: &[ContentDigest],
    ) {
        for (index, part) in parts.iter().enumerate() {
            self.by_part.entry(*part).or_insert(OriginPart {
                sequence,
                index,
                count: parts.len(),
                segment_hash,
            });
        }
    }

    /// The origin part whose bytes hash to `hash`.
    pub(crate) fn find_part(&self, hash: &ContentDigest) -> Option<OriginPart> {
        self.by_part.get(hash).copied()
    }

    fn add(&mut self, sequence: u64, hash: ContentDigest, digest: ContentDigest) {
        let segments = self.by_hash.entry(hash).or_default();
        if !segments.iter().any(|s| s.sequence == sequence) {
            segments.push(OriginSegment { sequence, digest });
            segments.sort_by_key(|s| s.sequence);
        }
        self.by_sequence.insert(sequence, digest);
    }

    /// Whether the origin has reported a segment cut at or after `unix_ms`: reports arrive in
    /// order, so a segment received before then that is still unknown is not the origin's.
    pub fn reported_since(&self, unix_ms: u64) -> bool {
        let since = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        self.newest_published_ms
            .is_some_and(|newest| newest >= since)
    }

    /// The origin segment whose bytes hash to `hash`: the one at `expected` when the origin sent
    /// those bytes there, else the newest with that hash.
    pub fn find(&self, hash: &ContentDigest, expected: Option<u64>) -> Option<OriginSegment> {
        let segments = self.by_hash.get(hash)?;
        segments
            .iter()
            .find(|s| Some(s.sequence) == expected)
            .or_else(|| segments.last())
            .copied()
    }

    /// The running digest a chain starting at origin segment `sequence` is anchored on: the
    /// digest of the segment before it, or the all-zero digest when the origin's chain starts
    /// there (nothing was reported before it).
    pub fn anchor_for(&self, sequence: u64) -> Option<ContentDigest> {
        match sequence.checked_sub(1) {
            None => Some(ContentDigest::default()),
            Some(previous) => match self.by_sequence.get(&previous) {
                Some(digest) => Some(*digest),
                // The origin's chain starts at its first reported segment.
                None if self.first_sequence == Some(sequence) => Some(ContentDigest::default()),
                None => None,
            },
        }
    }
}
