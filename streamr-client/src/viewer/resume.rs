//! Resuming after a fail-over without repeating or skipping media. Nodes number segments from
//! their own start, so a new node's sequence numbers say nothing about what the viewer already
//! played; the segments' bytes are the origin's on every node, so their hashes do. The viewer
//! remembers the hashes of the last segments it delivered and, on a new node, looks back from
//! the newest listed segment for one of them: what follows it is exactly what comes next.

use std::collections::VecDeque;

use streamr_core::ContentDigest;

/// Most segments fetched backwards from a new node's newest one while looking for the last
/// delivered segment.
pub(crate) const RESUME_LOOKBACK: usize = 4;

/// Hashes of the segments delivered last remembered (more than the look-back, so that a match
/// on an older one still ends the search).
const REMEMBERED: usize = 8;

/// Most LL-HLS parts fetched backwards from a new node's newest one while looking for the
/// last delivered part (a fail-over takes a few seconds: several parts).
pub(crate) const PART_RESUME_LOOKBACK: usize = 24;

/// The hashes of the segments (or parts) delivered last, oldest first.
#[derive(Debug)]
pub(crate) struct DeliveredHistory {
    hashes: VecDeque<ContentDigest>,
    capacity: usize,
}

impl Default for DeliveredHistory {
    fn default() -> Self {
        DeliveredHistory::remembering(REMEMBERED)
    }
}

impl DeliveredHistory {
    /// A history of the last `capacity` deliveries.
    pub(crate) fn remembering(capacity: usize) -> Self {
        DeliveredHistory {
            hashes: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// A history of LL-HLS parts, longer than their look-back.
    pub(crate) fn of_parts() -> Self {
        DeliveredHistory::remembering(PART_RESUME_LOOKBACK * 2)
    }

    /// Remembers a delivered segment, forgetting the oldest beyond the bound.
    pub(crate) fn record(&mut self, hash: ContentDigest) {
        if self.hashes.len() == self.capacity {
            self.hashes.pop_front();
        }
        self.hashes.push_back(hash);
    }

    /// True before anything was delivered (a first session starts at the newest segment).
    pub(crate) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// True when a segment with these bytes was delivered recently.
    pub(crate) fn contains(&self, hash: &ContentDigest) -> bool {
        self.hashes.contains(hash)
    }
}

/// What to deliver from the segments fetched backwards from a new node's newest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumePlan {
    /// The segment fetched at this position (0 = the newest) was already delivered: deliver the
    /// ones newer than it, oldest first (none when it is the newest).
    After(usize),
    /// None of them was delivered: deliver only the newest (a gap the viewer cannot close).
    NewestOnly,
}

/// Plans the resume from the hashes of the segments fetched backwards (newest first).
pub(crate) fn plan(
    history: &DeliveredHistory,
    fetched_newest_first: &[ContentDigest],
) -> ResumePlan {
    fetched_newest_first
        .iter()
        .position(|hash| history.contains(hash))
        .map_or(ResumePlan::NewestOnly, ResumePlan::After)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::segment_hash;

    fn history(segments: &[&[u8]]) -> DeliveredHistory {
        let mut history = DeliveredHistory::default();
        for bytes in segments {
            history.record(segment_hash(bytes));
        }
        history
    }

    #[test]
    fn the_newest_already_delivered_means_nothing_to_deliver_yet() {
        let history = history(&[b"a", b"b"]);
        let fetched = [segment_hash(b"b")];
        assert_eq!(plan(&history, &fetched), ResumePlan::After(0));
    }

    #[test]
    fn delivers_what_follows_the_last_delivered_segment() {
        let history = history(&[b"a", b"b"]);
        let fetched = [segment_hash(b"d"), segment_hash(b"c"), segment_hash(b"b")];
        assert_eq!(plan(&history, &fetched), ResumePlan::After(2));
    }

    #[test]
    fn no_match_starts_at_the_newest() {
        let history = history(&[b"a"]);
        let fetched = [segment_hash(b"d"), segment_hash(b"c")];
        assert_eq!(plan(&history, &fetched), ResumePlan::NewestOnly);
    }

    #[test]
    fn remembers_only_the_last_few() {
        let mut history = DeliveredHistory::default();
        for i in 0..=REMEMBERED {
            history.record(segment_hash(&[i as u8]));
        }
        assert!(!history.contains(&segment_hash(&[0])));
        assert!(history.contains(&segment_hash(&[REMEMBERED as u8])));
    }
}
