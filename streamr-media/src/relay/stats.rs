//! Counters per stream and per viewer, for metrics and bandwidth accounting.

use std::sync::atomic::AtomicU64;

use super::stream::COUNTER;
use super::StreamKey;

/// A snapshot of one stream's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream.
    pub key: StreamKey,
    /// Whether a publisher is connected now.
    pub publishing: bool,
    /// How many times the stream was published (1 + republishes).
    pub publish_count: u64,
    /// Frames received from publishers (audio, video and metadata).
    pub frames_in: u64,
    /// Payload bytes received from publishers.
    pub bytes_in: u64,
    /// Totals over every viewer the stream ever had, current and departed (the `id` is 0).
    pub delivered: ViewerStats,
    /// One entry per current viewer.
    pub viewers: Vec<ViewerStats>,
}

/// A snapshot of one viewer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewerStats {
    /// The viewer's id, unique within its stream.
    pub id: u64,
    /// Frames handed to the viewer (including resent sequence headers and metadata).
    pub frames_out: u64,
    /// Payload bytes handed to the viewer.
    pub bytes_out: u64,
    /// Frames skipped because the viewer fell further behind than its budget.
    pub frames_dropped: u64,
    /// Payload bytes skipped because the viewer fell further behind than its budget.
    pub bytes_dropped: u64,
}

/// Live counters of one viewer, updated by its subscription and read by [`StreamStats`].
#[derive(Debug, Default)]
pub(crate) struct ViewerCounters {
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) bytes_dropped: AtomicU64,
}

impl ViewerStats {
    /// Adds `other`'s counters to these (saturating), keeping this `id`.
    pub fn accumulate(&mut self, other: &ViewerStats) {
        self.frames_out = self.frames_out.saturating_add(other.frames_out);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.frames_dropped = self.frames_dropped.saturating_add(other.frames_dropped);
        self.bytes_dropped = self.bytes_dropped.saturating_add(other.bytes_dropped);
    }
}

impl ViewerCounters {
    pub(crate) fn snapshot(&self, id: u64) -> ViewerStats {
        ViewerStats {
            id,
            frames_out: self.frames_out.load(COUNTER),
            bytes_out: self.bytes_out.load(COUNTER),
            frames_dropped: self.frames_dropped.load(COUNTER),
            bytes_dropped: self.bytes_dropped.load(COUNTER),
        }
    }
}
