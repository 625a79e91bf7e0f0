//! The origin's segment hashes as the coordinator publishes them: a viewer looks up every segment
//! it received by its BLAKE3 hash, which gives the origin's sequence number and running digest.
//! Friend nodes number their segments from when they joined, but cut them at the same
//! timestamps, so the hash (not the node's sequence number) identifies a segment.

use std::collections::{BTreeMap, HashMap};

use streamr_coord::client::{ClientError, CoordinatorClient};
use streamr_core::ContentDigest;

/// Segments fetched per refresh; a viewer only ever looks up recent ones.
const REFRESH_LIMIT: u16 = 100;

/// One origin segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OriginSegment {
    /// The origin's sequence number.
    pub(crate) sequence: u64,
    /// The running digest up to and including it.
    pub(crate) digest: ContentDigest,
}

/// The origin's recent segments of one stream, by hash and by sequence.
#[derive(Debug, Default)]
pub(crate) struct OriginIndex {
    by_hash: HashMap<ContentDigest, OriginSegment>,
    by_sequence: BTreeMap<u64, ContentDigest>,
    /// The origin's first segment, known once a refresh returned the whole list.
    first_sequence: Option<u64>,
}

impl OriginIndex {
    /// Adds the coordinator's newest segment records of `stream_id`. Records that do not parse
    /// are skipped (and logged): they cannot be matched anyway.
    pub(crate) async fn refresh(
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
        for record in records {
            let parsed = (
                u64::try_from(record.sequence),
                record.hash.parse::<ContentDigest>(),
                record.digest.parse::<ContentDigest>(),
            );
            match parsed {
                (Ok(sequence), Ok(hash), Ok(digest)) => {
                    self.by_hash
                        .insert(hash, OriginSegment { sequence, digest });
                    self.by_sequence.insert(sequence, digest);
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

    /// Records origin segment `sequence` (tests build an index without a coordinator).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, sequence: u64, hash: ContentDigest, digest: ContentDigest) {
        self.by_hash
            .insert(hash, OriginSegment { sequence, digest });
        self.by_sequence.insert(sequence, digest);
        self.first_sequence = self.by_sequence.keys().next().copied();
    }

    /// The origin segment whose bytes hash to `hash`.
    pub(crate) fn find(&self, hash: &ContentDigest) -> Option<OriginSegment> {
        self.by_hash.get(hash).copied()
    }

    /// The running digest a chain starting at origin segment `sequence` is anchored on: the
    /// digest of the segment before it, or the all-zero digest when the origin's chain starts
    /// there (nothing was reported before it).
    pub(crate) fn anchor_for(&self, sequence: u64) -> Option<ContentDigest> {
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
