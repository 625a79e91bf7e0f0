//! The sans-IO live HLS segmenter: FLV tags in, finished MPEG-TS segments out.

use bytes::Bytes;

use crate::flv::tag::{MediaKind, PacketKind};
use crate::flv::FlvTag;
use crate::ts::{FlvTsMuxer, MuxOutcome, TsError, TS_PACKET_LEN};

/// Bytes reserved at the start of each segment for its PAT and PMT, written when it closes.
const TABLES_LEN: usize = 2 * TS_PACKET_LEN;
/// A timestamp this far behind the previous one means the publisher restarted its clock.
const BACKWARD_JUMP_MS: u64 = 1_000;

/// How segments are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// The segment length aimed for, in milliseconds. Cuts happen at the first keyframe at or
    /// after each multiple of this length on the stream's own clock, so every node cutting the
    /// same stream cuts at the same places.
    pub segment_duration_ms: u32,
    /// The EXT-X-TARGETDURATION declared for the whole stream, in seconds. A segment that reaches
    /// it without a keyframe is cut anyway, so every EXTINF rounds to at most this value.
    pub target_duration_secs: u32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            segment_duration_ms: 4_000,
            target_duration_secs: 8,
        }
    }
}

impl SegmenterConfig {
    /// The segment length aimed for (at least 1 ms).
    fn grid_ms(&self) -> u64 {
        u64::from(self.segment_duration_ms.max(1))
    }

    /// The longest a segment may grow before a cut is forced, in milliseconds.
    fn max_ms(&self) -> u64 {
        u64::from(self.target_duration_secs.max(1)) * 1_000
    }
}

/// A finished MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The media sequence number (consecutive, never decreasing).
    pub sequence: u64,
    /// Stream timestamp (ms) of the first frame: the same on every node that cut this segment.
    pub start_timestamp_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The segment follows a discontinuity (republish, codec change, timestamp jump).
    pub discontinuity: bool,
    /// The segment starts with a keyframe (false only when a cut had to be forced).
    pub starts_with_keyframe: bool,
    /// BLAKE3 hash of `bytes`.
    pub hash: blake3::Hash,
    /// The MPEG-TS bytes (PAT, PMT, then the frames).
    pub bytes: Bytes,
}

/// What the segmenter reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmenterEvent {
    /// A segment was closed.
    SegmentReady(Segment),
    /// The publisher ended; no more segments follow.
    Ended,
}

#[derive(Debug)]
struct OpenSegment {
    start_ms: u64,
    last_ms: u64,
    bytes: Vec<u8>,
    discontinuity: bool,
    starts_with_keyframe: bool,
}

/// Cuts a live FLV tag stream into MPEG-TS segments.
///
/// Boundaries come from the stream's timestamps only, never from when this node joined, so a
/// node that starts mid-stream produces byte-identical segments from its second segment on.
/// Segments in a stream with video start at a keyframe; audio-only streams are cut by time.
/// Every segment starts with its own PAT/PMT and continuity counters from zero.
///
/// ```
/// use streamr_media::hls::{Segmenter, SegmenterConfig, SegmenterEvent};
///
/// let mut segmenter = Segmenter::new(SegmenterConfig::default());
/// // Feed FLV tags with `segmenter.push(&tag)`; at the end:
/// let events = segmenter.finish();
/// assert_eq!(events, vec![SegmenterEvent::Ended]);
/// ```
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    muxer: FlvTsMuxer,
    open: Option<OpenSegment>,
    next_sequence: u64,
    pending_discontinuity: bool,
    last_timestamp_ms: Option<u64>,
    last_frame_gap_ms: u64,
    last_segment_len: usize,
    ended: bool,
}

impl Segmenter {
    /// A segmenter whose first segment gets media sequence 0.
    pub fn new(config: SegmenterConfig) -> Self {
        Self::with_first_sequence(config, 0)
    }

    /// A segmenter whose first segment gets `first_sequence`.
    pub fn with_first_sequence(config: SegmenterConfig, first_sequence: u64) -> Self {
        Segmenter {
            config,
            muxer: FlvTsMuxer::new(),
            open: None,
            next_sequence: first_sequence,
            pending_discontinuity: false,
            last_timestamp_ms: None,
            last_frame_gap_ms: 0,
            last_segment_len: 0,
            ended: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> SegmenterConfig {
        self.config
    }

    /// Feeds one FLV tag. Returns the segments it closed. A malformed or unsupported tag is
    /// reported as an error and skipped; the segmenter stays usable.
    pub fn push(&mut self, tag: &FlvTag) -> Result<Vec<SegmenterEvent>, TsError> {
        let mut events = Vec::new();
        if self.ended {
            return Ok(events);
        }
        let Some(info) = FlvTsMuxer::classify(tag)? else {
            return Ok(events);
        };
        let timestamp = u64::from(tag.timestamp);
        if info.packet == PacketKind::SequenceHeader {
            let had_config = match info.kind {
                MediaKind::Video => self.muxer.has_video(),
                MediaKind::Audio => self.muxer.has_audio(),
            };
            let mut scratch = Vec::new();
            let outcome = self.muxer.write_classified(tag, &info, &mut scratch)?;
            if had_config && matches!(outcome, MuxOutcome::ConfigChanged { .. }) {
                // A new codec configuration: close the segment, the next one is discontinuous.
                self.close(timestamp, &mut events);
                self.pending_discontinuity = true;
            }
            return Ok(events);
        }
        if !info.is_coded_frame() {
            return Ok(events);
        }
        // Reject a bad frame before it can close or open a segment.
        self.muxer.check_frame(tag, &info)?;
        if let Some(last) = self.last_timestamp_ms {
            if timestamp.saturating_add(BACKWARD_JUMP_MS) < last {
                let end = self
                    .open
                    .as_ref()
                    .map_or(last, |open| self.natural_end(open));
                self.close(end, &mut events);
                self.pending_discontinuity = true;
            }
        }
        let is_video = info.kind == MediaKind::Video;
        let has_video = self.muxer.has_video();
        let cut_point = if has_video {
            is_video && info.is_keyframe
        } else {
            !is_video
        };
        // Only frames that may start a segment (video in a stream with video) drive cuts.
        let drives_cuts = is_video || !has_video;
        if let (Some(open), true) = (&self.open, drives_cuts) {
            let elapsed = timestamp.saturating_sub(open.start_ms);
            if elapsed > self.config.max_ms() {
                // A gap in the timeline would stretch the segment past the target duration: end
                // it where its media ends and mark the gap as a discontinuity.
                let end = self.natural_end(open);
                self.close(end, &mut events);
                self.pending_discontinuity = true;
            }
        }
        match &self.open {
            Some(open) => {
                let grid = self.config.grid_ms();
                let crossed_grid = timestamp / grid > open.start_ms / grid;
                // Cut early enough that the next frame cannot push this segment past the target.
                let elapsed = timestamp.saturating_sub(open.start_ms);
                let forced = drives_cuts
                    && elapsed.saturating_add(self.last_frame_gap_ms) > self.config.max_ms();
                if (cut_point && crossed_grid) || forced {
                    self.close(timestamp, &mut events);
                    self.open_segment(timestamp, cut_point);
                }
            }
            None if cut_point => self.open_segment(timestamp, true),
            None => return Ok(events),
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(events);
        };
        let before = open.bytes.len();
        if let Err(error) = self.muxer.write_classified(tag, &info, &mut open.bytes) {
            open.bytes.truncate(before);
            return Err(error);
        }
        // Segment timing follows the track that drives cuts (video when there is video).
        if drives_cuts && timestamp > open.last_ms {
            self.last_frame_gap_ms = timestamp - open.last_ms;
            open.last_ms = timestamp;
        }
        self.last_timestamp_ms = Some(timestamp);
        Ok(events)
    }

    /// Marks a discontinuity (the publisher reconnected): the open segment is closed and the next
    /// one carries EXT-X-DISCONTINUITY.
    pub fn discontinuity(&mut self) -> Vec<SegmenterEvent> {
        let mut events = Vec::new();
        if let Some(open) = &self.open {
            let end = self.natural_end(open);
            self.close(end, &mut events);
        }
        self.pending_discontinuity = true;
        self.last_timestamp_ms = None;
        events
    }

    /// The publisher ended: closes the last segment and reports [`SegmenterEvent::Ended`].
    pub fn finish(&mut self) -> Vec<SegmenterEvent> {
        if self.ended {
            return Vec::new();
        }
        let mut events = Vec::new();
        if let Some(open) = &self.open {
            let end = self.natural_end(open);
            self.close(end, &mut events);
        }
        self.ended = true;
        events.push(SegmenterEvent::Ended);
        events
    }

    /// Where an open segment's media ends when no next frame says so: one frame interval after
    /// its last frame, but never past the target duration.
    fn natural_end(&self, open: &OpenSegment) -> u64 {
        let limit = open.start_ms.saturating_add(self.config.max_ms());
        open.last_ms
            .saturating_add(self.last_frame_gap_ms)
            .min(limit)
            .max(open.last_ms)
    }

    fn open_segment(&mut self, timestamp: u64, starts_with_keyframe: bool) {
        self.muxer.reset_continuity();
        // Size the buffer like the previous segment so it rarely grows (and copies) while filling.
        let capacity = (self.last_segment_len + self.last_segment_len / 8).max(64 * 1024);
        let mut bytes = Vec::with_capacity(capacity);
        bytes.resize(TABLES_LEN, 0);
        self.open = Some(OpenSegment {
            start_ms: timestamp,
            last_ms: timestamp,
            bytes,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            starts_with_keyframe,
        });
    }

    fn close(&mut self, end_ms: u64, events: &mut Vec<SegmenterEvent>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        // Tables go in the reserved space with counters from zero, listing every stream whose
        // configuration is known by now (audio may be configured after the first video frame).
        let mut tables = Vec::with_capacity(TABLES_LEN);
        self.muxer.reset_continuity();
        self.muxer.write_tables(&mut tables);
        if let Some(slot) = open.bytes.get_mut(..TABLES_LEN) {
            slot.copy_from_slice(&tables);
        }
        self.last_segment_len = open.bytes.len();
        let bytes = Bytes::from(open.bytes);
        let segment = Segment {
            sequence: self.next_sequence,
            start_timestamp_ms: open.start_ms,
            duration_ms: end_ms.saturating_sub(open.start_ms),
            discontinuity: open.discontinuity,
            starts_with_keyframe: open.starts_with_keyframe,
            hash: blake3::hash(&bytes),
            bytes,
        };
        self.next_sequence += 1;
        events.push(SegmenterEvent::SegmentReady(segment));
    }
}
