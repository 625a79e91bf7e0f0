//! The origin's LL-HLS part hashes waiting to be reported, without I/O: parts are queued as
//! they are cut, each stream's numbering run is told apart (a new run whenever a stream's part
//! positions go back, as when its segmenter starts over), and reports are made of consecutive
//! parts of one stream and run, at most [`MAX_PARTS_PER_REPORT`] each. Bounded: beyond
//! [`MAX_UNSENT_PARTS`] the oldest part is dropped (a part matters only while it is live).

use std::collections::{HashMap, VecDeque};

use streamr_core::{PartHash, MAX_PARTS_PER_REPORT};

/// Most parts kept while the coordinator does not take them.
pub(crate) const MAX_UNSENT_PARTS: usize = 64;

/// One report to send: the stream, its run and the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartBatch {
    /// The stream.
    pub(crate) stream: String,
    /// The origin's numbering run.
    pub(crate) run: u64,
    /// The parts, oldest first.
    pub(crate) parts: Vec<PartHash>,
}

/// Parts cut and not reported yet.
#[derive(Debug, Default)]
pub(crate) struct PartQueue {
    /// Per stream: its current run and the newest part position queued in it.
    runs: HashMap<String, (u64, (u64, u32))>,
    unsent: VecDeque<(String, u64, PartHash)>,
}

impl PartQueue {
    /// Queues a part of `stream` just cut; `new_run` gives the run id when a new run starts.
    /// Returns how many old parts were dropped to make room (0 or 1).
    pub(crate) fn push(
        &mut self,
        stream: &str,
        part: PartHash,
        new_run: impl FnOnce() -> u64,
    ) -> usize {
        let position = (part.msn, part.index);
        let run = match self.runs.get(stream) {
            Some((run, newest)) if position > *newest => *run,
            _ => new_run(),
        };
        self.runs.insert(stream.to_owned(), (run, position));
        self.unsent.push_back((stream.to_owned(), run, part));
        let mut dropped = 0;
        while self.unsent.len() > MAX_UNSENT_PARTS {
            self.unsent.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The next report: the oldest unsent parts that share a stream and run.
    pub(crate) fn next_batch(&self) -> Option<PartBatch> {
        let (stream, run, _) = self.unsent.front()?;
        let parts = self
            .unsent
            .iter()
            .take_while(|(s, r, _)| s == stream && r == run)
            .take(MAX_PARTS_PER_REPORT)
            .map(|(_, _, part)| *part)
            .collect();
        Some(PartBatch {
            stream: stream.clone(),
            run: *run,
            parts,
        })
    }

    /// Forgets the `count` oldest parts (a batch was delivered or refused for good).
    pub(crate) fn done(&mut self, count: usize) {
        let count = count.min(self.unsent.len());
        self.unsent.drain(..count);
    }

    /// How many parts wait.
    pub(crate) fn len(&self) -> usize {
        self.unsent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::ContentDigest;

    fn part(msn: u64, index: u32) -> PartHash {
        PartHash {
            msn,
            index,
            hash: ContentDigest::from_bytes([u8::try_from(index).unwrap_or(0); 32]),
            len: 100,
            cut_ms: 1,
        }
    }

    #[test]
    fn parts_of_one_run_go_together_and_a_restart_starts_a_new_run() {
        let mut queue = PartQueue::default();
        let mut runs = 10..;
        let mut next_run = || runs.next().unwrap_or(0);
        queue.push("a", part(3, 0), &mut next_run);
        queue.push("a", part(3, 1), &mut next_run);
        queue.push("a", part(4, 0), &mut next_run);
        // The segmenter started over: same positions again, another run.
        queue.push("a", part(0, 0), &mut next_run);
        queue.push("b", part(7, 0), &mut next_run);
        let first = queue.next_batch().expect("a batch");
        assert_eq!((first.stream.as_str(), first.run), ("a", 10));
        assert_eq!(first.parts, vec![part(3, 0), part(3, 1), part(4, 0)]);
        queue.done(first.parts.len());
        let second = queue.next_batch().expect("a batch");
        assert_eq!((second.stream.as_str(), second.run), ("a", 11));
        assert_eq!(second.parts, vec![part(0, 0)]);
        queue.done(1);
        let third = queue.next_batch().expect("a batch");
        assert_eq!((third.stream.as_str(), third.run), ("b", 12));
        queue.done(1);
        assert_eq!(queue.next_batch(), None);
    }

    #[test]
    fn reports_are_bounded_and_so_is_the_queue() {
        let mut queue = PartQueue::default();
        let mut dropped = 0;
        for i in 0..100u32 {
            dropped += queue.push("a", part(u64::from(i / 4), i % 4), || 1);
        }
        assert_eq!(dropped, 100 - MAX_UNSENT_PARTS);
        assert_eq!(queue.len(), MAX_UNSENT_PARTS);
        let batch = queue.next_batch().expect("a batch");
        assert_eq!(batch.parts.len(), MAX_PARTS_PER_REPORT);
        // The oldest kept is the first not dropped.
        let first_kept = u32::try_from(100 - MAX_UNSENT_PARTS).unwrap_or(0);
        assert_eq!(
            batch.parts[0],
            part(u64::from(first_kept / 4), first_kept % 4)
        );
        queue.done(usize::MAX);
        assert_eq!(queue.len(), 0);
    }
}
