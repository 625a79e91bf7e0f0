//! Runs of frames shared by the live viewers that read them from the same place.
//!
//! A stream's live viewers mostly stand at the same place: woken together, each reads every
//! frame from where it stopped up to the head. Read frame by frame, that is a clone and a drop
//! of each frame's `Arc` per viewer, on reference counts that every core's viewers share (their
//! cache lines move between the cores for each one), and each writer then derives the same
//! bytes from the same frames again. The first viewer to read from a place instead builds a
//! [`FrameRun`] of those frames and leaves it in the stream; the others at that place take the
//! whole run with one clone. What a writer derives from the frames (the HTTP-FLV body's spans
//! in the stream's shared file) is kept in the run, computed by its first writer.
//!
//! A run holds exactly what [`Subscription::try_recv_batch`](super::Subscription::try_recv_batch)
//! would have given: it is only built for a viewer that is live (past its start at a keyframe),
//! gets no node notices, and reads whole frames of one publisher, none of them over the lag
//! budget; anything else (a start, a skip, a publisher leaving) takes the frame-by-frame path.

use std::sync::Arc;
#[cfg(feature = "server")]
use std::sync::OnceLock;

use super::frame::Frame;
use super::stream::{Entry, Slot, StreamState};

/// Frames from one place of a stream up to its head at the time, shared by every live viewer
/// that read from that place.
#[derive(Debug)]
pub(crate) struct FrameRun {
    /// Sequence number of the first entry read.
    pub(crate) start: u64,
    /// Sequence number after the last entry read (the stream's head when built).
    pub(crate) end: u64,
    /// The publisher generation every entry belongs to.
    pub(crate) generation: u64,
    frames: Vec<Arc<Frame>>,
    /// Frames and payload bytes the stream had relayed before `end`: the reader's position after
    /// the run.
    pub(crate) frames_after: u64,
    pub(crate) bytes_after: u64,
    /// Payload bytes of `frames`.
    pub(crate) bytes_out: u64,
    /// The frames' HTTP-FLV chunks as spans of the stream's shared file, consecutive ones
    /// merged; `None` when one of them is not there.
    #[cfg(feature = "http")]
    flv_spans: OnceLock<Option<SpanRun>>,
    /// The frames' RTMP chunks for the first chunking key asked for, as spans of that key's
    /// shared file; `None` when one of them is not there.
    #[cfg(feature = "server")]
    rtmp_spans: OnceLock<(super::ChunkingKey, Option<SpanRun>)>,
}

/// Spans of a stream's shared file and how many bytes they hold.
#[cfg(feature = "server")]
#[derive(Debug)]
pub(crate) struct SpanRun {
    /// The spans, in order.
    pub(crate) spans: Vec<crate::shared_bytes::Span>,
    /// Their bytes in all.
    pub(crate) len: u64,
}

#[cfg(feature = "server")]
impl SpanRun {
    /// The spans of `frames` in order (consecutive ones merged), or `None` when one frame has
    /// none.
    fn collect(
        frames: impl IntoIterator<Item = Option<crate::shared_bytes::Span>>,
    ) -> Option<Self> {
        let mut spans = Vec::new();
        if !crate::shared_bytes::collect_spans(frames, &mut spans) {
            return None;
        }
        let len = spans.iter().map(|span| span.len()).sum();
        Some(SpanRun { spans, len })
    }
}

impl FrameRun {
    /// Reads the entries from `start` to the head of `state`: `None` unless every one is a
    /// frame of publisher `generation` that `is_over_budget` lets through, there are at most
    /// `max_frames` of them, and at least one is not a node notice (node notices are left
    /// out).
    pub(crate) fn read(
        state: &StreamState,
        start: u64,
        generation: u64,
        max_frames: usize,
        is_over_budget: impl Fn(&Entry) -> bool,
    ) -> Option<Self> {
        let end = state.next_seq();
        let count = usize::try_from(end.checked_sub(start)?).ok()?;
        if count == 0 || count > max_frames || start < state.front_seq {
            return None;
        }
        let mut frames = Vec::with_capacity(count);
        let (mut frames_after, mut bytes_after, mut bytes_out) = (0, 0, 0u64);
        for seq in start..end {
            let entry = state.get(seq)?;
            let Slot::Frame { frame, .. } = &entry.slot else {
                return None;
            };
            if entry.generation != generation || is_over_budget(entry) {
                return None;
            }
            let size = frame.payload().len() as u64;
            frames_after = entry.frames_before.saturating_add(1);
            bytes_after = entry.bytes_before.saturating_add(size);
            if !frame.is_node_notice() {
                bytes_out = bytes_out.saturating_add(size);
                frames.push(frame.clone());
            }
        }
        if frames.is_empty() {
            return None;
        }
        Some(FrameRun {
            start,
            end,
            generation,
            frames,
            frames_after,
            bytes_after,
            bytes_out,
            #[cfg(feature = "http")]
            flv_spans: OnceLock::new(),
            #[cfg(feature = "server")]
            rtmp_spans: OnceLock::new(),
        })
    }

    /// The frames, in order.
    pub(crate) fn frames(&self) -> &[Arc<Frame>] {
        &self.frames
    }

    /// Whether a viewer reading from `cursor` in publisher `generation`, taking at most
    /// `max_frames` entries, gets this run from `state` now: it starts there, still reaches the
    /// head, and is no longer than that.
    pub(crate) fn serves(
        &self,
        state: &StreamState,
        cursor: u64,
        generation: u64,
        max_frames: usize,
    ) -> bool {
        self.start == cursor
            && self.end == state.next_seq()
            && self.generation == generation
            && self.end.saturating_sub(self.start) <= max_frames as u64
    }

    /// The frames' HTTP-FLV chunks ([`Frame::flv_chunk`]) as spans of `store`, the stream's
    /// shared file, appended there as needed by the first caller; `None` when one of them
    /// cannot be.
    #[cfg(feature = "http")]
    pub(crate) fn flv_chunk_spans(
        &self,
        store: &crate::shared_bytes::SharedStore,
    ) -> Option<&SpanRun> {
        self.flv_spans
            .get_or_init(|| SpanRun::collect(self.frames.iter().map(|f| f.flv_chunk_span(store))))
            .as_ref()
    }

    /// The frames' RTMP chunks for `key` as spans of the key's shared file, each frame's found
    /// by `span_of` (which makes and appends it as needed), collected by the first caller; `None`
    /// when one of them has none, or when the run's spans were collected for another key (a
    /// player chunking unlike the first one sends the frames itself).
    #[cfg(feature = "server")]
    pub(crate) fn rtmp_chunk_spans(
        &self,
        key: super::ChunkingKey,
        span_of: impl Fn(&Frame) -> Option<crate::shared_bytes::Span>,
    ) -> Option<&SpanRun> {
        let (first_key, spans) = self.rtmp_spans.get_or_init(|| {
            (
                key,
                SpanRun::collect(self.frames.iter().map(|f| span_of(f))),
            )
        });
        spans.as_ref().filter(|_| *first_key == key)
    }
}
