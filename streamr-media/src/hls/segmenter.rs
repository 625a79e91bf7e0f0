//! The sans-IO live HLS segmenter: FLV tags in, finished MPEG-TS segments out.

use bytes::Bytes;

use super::timing_notice::HlsTiming;
use crate::flv::tag::{Codec, MediaKind, PacketKind};
use crate::flv::{FlvTag, FlvTagType};
use crate::ts::{pad_continuity_to_16, FlvTsMuxer, MuxOutcome, TsError, TS_PACKET_LEN};

/// Bytes reserved at the start of each segment for its PAT and PMT, written when it closes.
const TABLES_LEN: usize = 2 * TS_PACKET_LEN;
/// A timestamp this far behind the previous one of its track means the publisher restarted its
/// clock. Tracks are compared with themselves only: an encoder may send one track seconds ahead
/// of the other (an audio sync offset), and that is no jump.
const BACKWARD_JUMP_MS: u64 = 1_000;
/// Timestamp jitter ignored when rounding the longest expected segment up to whole seconds, so a
/// 4.033 s segment of a 4 s stream does not make the target duration 5.
const TARGET_JITTER_MS: u64 = 100;

/// Timestamp rounding allowed for when deciding whether a keyframe reached a grid line.
const GRID_JITTER_MS: u64 = 2;

/// How segments are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// The segment length aimed for, in milliseconds. Cuts happen only at keyframes: at the
    /// first keyframe at or after each multiple of this length (or up to 2 ms before it, the
    /// rounding of millisecond timestamps) on the stream's own clock, so
    /// every node cutting the same stream cuts at the same places, and a GOP longer than this
    /// makes one segment per GOP.
    pub segment_duration_ms: u32,
    /// The longest segment allowed, in seconds: the most a GOP may last. The MPEG-TS playlist's
    /// EXT-X-TARGETDURATION is derived from the stream's first GOPs
    /// ([`Segmenter::target_duration_secs`]) and never exceeds this, nor does the LL-HLS one
    /// ([`Segmenter::ll_target_duration_secs`]). Until that is known, a frame without a
    /// keyframe whose media would end past this (a longer GOP or a stalled video track) closes
    /// the segment before it, so that no rendition's segment rounds above it, and the stream
    /// resumes at the next keyframe after a discontinuity; from then on the target duration
    /// holds segments alike ([`Segmenter::segment_limit_ms`]). A segment never starts with a
    /// non-keyframe. It also bounds a frame's duration: a frame further than this from the
    /// one before is a forward jump in the timeline, not a frame interval (see
    /// [`Segmenter::push`]).
    pub target_duration_secs: u32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            segment_duration_ms: 4_000,
            target_duration_secs: 12,
        }
    }
}

impl SegmenterConfig {
    /// The segment length aimed for (at least 1 ms), as configured (see
    /// [`Segmenter::grid_ms`] for the one cuts follow).
    fn grid_ms(&self) -> u64 {
        u64::from(self.segment_duration_ms.max(1))
    }

    /// The longest a segment may grow, in milliseconds.
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
    /// The segment follows a discontinuity (republish, codec change, timestamp jump), or media
    /// left out of the MPEG-TS rendition before it (a GOP longer than the target duration,
    /// see [`Segmenter::target_duration_secs`]).
    pub discontinuity: bool,
    /// The segment starts with a keyframe (with its parameter sets); false only for audio-only
    /// streams.
    pub starts_with_keyframe: bool,
    /// BLAKE3 hash of `bytes`.
    pub hash: blake3::Hash,
    /// The MPEG-TS bytes (PAT, PMT, then the frames).
    pub bytes: Bytes,
}

/// The segment being filled, as [`Segmenter::current_segment`] reports it: other renditions (the
/// LL-HLS fMP4 packager) cut at the same frames and number their segments the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSegmentInfo {
    /// The media sequence number the segment gets when it closes.
    pub sequence: u64,
    /// Stream timestamp (ms) of its first frame.
    pub start_timestamp_ms: u64,
    /// The segment follows a discontinuity.
    pub discontinuity: bool,
    /// Every node that received the frames before it cuts it the same (see
    /// [`Segmenter::current_segment`]): it is reported when it closes. Otherwise (a node's first
    /// segment, opened at the frame it joined at) it is cut but never reported, and gets no
    /// sequence number of its own.
    pub listed: bool,
    /// The longest it may last ([`Segmenter::segment_limit_ms`]), in milliseconds: where it
    /// ends at the latest when the stream ends or jumps before its newest frame's successor
    /// tells that frame's duration.
    pub max_duration_ms: u64,
    /// The longest a frame may last ([`SegmenterConfig::target_duration_secs`]), in
    /// milliseconds: a successor further away is a forward jump in the timeline.
    pub jump_ms: u64,
}

/// What the segmenter reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmenterEvent {
    /// A segment was closed.
    SegmentReady(Segment),
    /// The publisher ended; no more segments follow.
    Ended,
    /// The stream has a track whose codec MPEG-TS cannot carry but the fMP4 (LL-HLS) rendition
    /// does (AV1 video, Opus audio): its frames still decide where segments are cut (video at
    /// its keyframes), so the LL-HLS segments cut at the same frames are whole GOPs, but the
    /// MPEG-TS segments leave the track out. Reported once per track kind.
    CodecLeftOut {
        /// Audio or video.
        kind: MediaKind,
        /// The codec.
        codec: Codec,
    },
}

/// True for the codecs the fMP4 rendition carries and MPEG-TS cannot.
fn is_fmp4_only(codec: Codec) -> bool {
    matches!(codec, Codec::Av1 | Codec::Opus)
}

#[derive(Debug)]
struct OpenSegment {
    start_ms: u64,
    last_ms: u64,
    bytes: Vec<u8>,
    discontinuity: bool,
    starts_with_keyframe: bool,
    listed: bool,
    /// Media before it was left out of the MPEG-TS rendition (the segment before was cut
    /// short at the fixed target duration): its TS segment carries EXT-X-DISCONTINUITY.
    ts_gap: bool,
    /// Coded frames of each track (audio, video) were written into it.
    carries: [bool; 2],
}

/// Cuts a live FLV tag stream into MPEG-TS segments.
///
/// Boundaries come from the stream's timestamps only, never from when this node joined: a node
/// that starts mid-stream cuts but does not list the segment it opens at its first keyframe,
/// and lists byte-identical segments from the next one on (see [`Segmenter::current_segment`]).
/// Segments in a stream with video start at a keyframe, whatever the GOP; audio-only streams are
/// cut by time. Every segment starts with its own PAT/PMT and continuity counters from zero, and
/// its last PES of each track is spread over enough packets that the counters end at 15: the
/// next segment continues them without a continuity error, and the bytes still depend on the
/// segment's own media only.
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
    /// The newest coded frame's timestamp of each track (audio, video), for telling a restarted
    /// clock.
    last_timestamp_ms: [Option<u64>; 2],
    /// The interval between the two newest frames that time segments: how long the newest is
    /// expected to last. A forward jump in the timeline is no interval: the one before it
    /// stays.
    last_frame_gap_ms: u64,
    /// The newest frame that times segments (video when there is video), whether or not a
    /// segment took it: a segment's first frame continues the interval from it.
    last_driving_ms: Option<u64>,
    last_segment_len: usize,
    /// The video keyframe before, for measuring GOPs.
    last_keyframe_ms: Option<u64>,
    /// The frame before that could start a segment (a video keyframe, or an audio frame of an
    /// audio-only stream), on the current timeline: whether a frame starts a segment depends on
    /// it, so a node that did not see it cannot know.
    last_cut_point_ms: Option<u64>,
    /// This segmenter sees each timeline from its start (a file, an origin's own publisher), so
    /// the first cut point of a timeline starts a segment on every node that sees it.
    sees_timeline_start: bool,
    /// GOPs measured and their total length, for the stream's mean GOP.
    gops_measured: u64,
    gops_total_ms: u64,
    /// The longest GOP seen, in milliseconds.
    longest_gop_ms: u64,
    /// The shortest GOP seen, in milliseconds (`u64::MAX` before the first).
    shortest_gop_ms: u64,
    /// EXT-X-TARGETDURATION, fixed when the first listed segment closes.
    target_duration_secs: Option<u32>,
    /// The MPEG-TS segment closed last was cut short: the next one follows a gap.
    ts_gap_pending: bool,
    /// A listed segment closed: EXT-X-TARGETDURATION can no longer change.
    listed_closed: bool,
    /// An upstream's announced target duration ([`HlsTiming`]) was taken or refused.
    announcement_seen: bool,
    ended: bool,
    /// The configuration of a video track only fMP4 carries (AV1): its frames time the cuts.
    fmp4_only_video: Option<Bytes>,
    /// An audio track only fMP4 carries (Opus) was configured.
    fmp4_only_audio: bool,
    /// Track kinds reported with [`SegmenterEvent::CodecLeftOut`] (audio, video).
    left_out_reported: [bool; 2],
}

impl Segmenter {
    /// A segmenter whose first listed segment gets media sequence 0.
    pub fn new(config: SegmenterConfig) -> Self {
        Self::with_first_sequence(config, 0)
    }

    /// A segmenter whose first listed segment gets `first_sequence`.
    pub fn with_first_sequence(config: SegmenterConfig, first_sequence: u64) -> Self {
        Segmenter {
            config,
            muxer: FlvTsMuxer::new(),
            open: None,
            next_sequence: first_sequence,
            pending_discontinuity: false,
            last_timestamp_ms: [None; 2],
            last_frame_gap_ms: 0,
            last_driving_ms: None,
            last_segment_len: 0,
            last_keyframe_ms: None,
            last_cut_point_ms: None,
            sees_timeline_start: true,
            gops_measured: 0,
            gops_total_ms: 0,
            longest_gop_ms: 0,
            shortest_gop_ms: u64::MAX,
            target_duration_secs: None,
            ts_gap_pending: false,
            listed_closed: false,
            announcement_seen: false,
            ended: false,
            fmp4_only_video: None,
            fmp4_only_audio: false,
            left_out_reported: [false; 2],
        }
    }

    /// This segmenter joins the stream mid-stream (a relay pulling it from an upstream, which
    /// replays its cached GOP from a keyframe): the segment opened at the first keyframe of a
    /// timeline is cut but not listed, as the upstream may have cut before it (see
    /// [`Segmenter::current_segment`]). Without this, the stream is taken to start where the
    /// segmenter starts (a file, or the origin, whose segments are the reference).
    pub fn joining_mid_stream(mut self) -> Self {
        self.sees_timeline_start = false;
        self
    }

    /// Fixes the MPEG-TS playlist's EXT-X-TARGETDURATION at `secs` (at least 1) instead of
    /// deriving it from the stream's first GOPs, so that no MPEG-TS segment breaks it whatever
    /// the GOPs that follow (RFC 8216bis 4.4.3.1: each EXTINF rounded to the nearest second at
    /// most the target duration; the target duration never changes). A segment whose GOP runs
    /// past the limit ([`Segmenter::segment_limit_ms`]) ends at the last frame whose media
    /// ends within it, in both renditions; the frames up to the next keyframe are left out and
    /// the next segment carries EXT-X-DISCONTINUITY. With `secs` below the aimed segment length
    /// segments are aimed at `secs` instead ([`Segmenter::grid_ms`]), and the LL-HLS rendition
    /// declares and holds the same target ([`Segmenter::ll_target_duration_secs`]): GOPs within
    /// it are cut whole in both renditions. Every node with the same configuration (or taking
    /// the target from its upstream's announcement) cuts the same bytes. Each segment still
    /// starts with a keyframe and its parameter sets.
    pub fn with_fixed_target_duration(mut self, secs: u32) -> Self {
        let secs = secs.max(1);
        self.target_duration_secs = Some(secs);
        self
    }

    /// The longest an MPEG-TS segment lasts once its target duration is known (fixed, or
    /// derived when the first listed segment closed), in milliseconds: its EXTINF still rounds
    /// to the target duration.
    fn ts_limit_ms(&self) -> Option<u64> {
        self.target_duration_secs
            .map(|secs| u64::from(secs) * 1_000 + 499)
    }

    /// The segment length cuts aim for, in milliseconds: the configured one
    /// ([`SegmenterConfig::segment_duration_ms`]), or the target duration once that is known
    /// and more than the timestamp jitter (100 ms) below it (a fixed target such as 2 s with
    /// the default 4 s segments, or one an upstream announced). A derived target never is: it
    /// is the aimed length rounded up to whole GOPs and seconds. A function of the
    /// configuration and the announcement every node receives before the stream's frames, so
    /// every node cuts at the same keyframes.
    pub fn grid_ms(&self) -> u64 {
        let configured = self.config.grid_ms();
        match self
            .target_duration_secs
            .map(|secs| u64::from(secs) * 1_000)
        {
            Some(target) if target.saturating_add(TARGET_JITTER_MS) < configured => target,
            _ => configured,
        }
    }

    /// The LL-HLS playlist's EXT-X-TARGETDURATION in seconds, known when the MPEG-TS one is
    /// ([`Segmenter::target_duration_secs`]): the same value, but never below the segment
    /// length aimed for ([`Segmenter::grid_ms`], which follows a fixed target below the
    /// configured length) rounded up to whole seconds, nor above
    /// [`SegmenterConfig::target_duration_secs`]. Segments of both renditions are held to it
    /// ([`Segmenter::segment_limit_ms`]), so players that take their live edge and reload
    /// cadence from the target duration play as close to live on the LL-HLS playlist as on
    /// the MPEG-TS one, and both renditions' segments hold the same frames.
    pub fn ll_target_duration_secs(&self) -> Option<u32> {
        let aimed = u32::try_from(self.grid_ms().div_ceil(1_000)).unwrap_or(u32::MAX);
        self.target_duration_secs
            .map(|secs| secs.max(aimed).min(self.config.target_duration_secs.max(1)))
    }

    /// The longest a segment may last, in milliseconds: until the target duration is known,
    /// the longest allowed ([`SegmenterConfig::target_duration_secs`]); from then on the LL-HLS
    /// target duration ([`Segmenter::ll_target_duration_secs`]) plus 499 ms, so that every
    /// segment's EXTINF rounds to it at most (RFC 8216bis 4.4.3.1). A frame that would end
    /// past it ends the segment before it; the frames up to the next keyframe are left out of
    /// both renditions and the next segment follows a discontinuity. The limit always exceeds
    /// the aimed segment length by at least 0.4 s, so a node that joined mid-stream cuts at
    /// the same keyframes after such a gap as one that saw the segment's start.
    pub fn segment_limit_ms(&self) -> u64 {
        self.ll_target_duration_secs()
            .map_or(self.config.max_ms(), |secs| {
                u64::from(secs).saturating_mul(1_000).saturating_add(499)
            })
            .min(self.config.max_ms())
    }

    /// The configuration.
    pub fn config(&self) -> SegmenterConfig {
        self.config
    }

    /// The stream's EXT-X-TARGETDURATION in seconds, fixed when the first listed segment closes
    /// and constant from then on: the longest segment the first GOPs imply (for regular GOPs the
    /// aimed length rounded up to whole GOPs of the mean GOP; for irregular ones up to a GOP
    /// more), rounded up
    /// to whole seconds ignoring up to 100 ms of timestamp jitter, and at most
    /// [`SegmenterConfig::target_duration_secs`]. `None` before the first segment. With
    /// [`Segmenter::with_fixed_target_duration`], that value from the start.
    ///
    /// A later GOP longer than the derived target (an encoder's keyframe interval grown from
    /// 2 s to 10 s) is held to it as a fixed target is: its segment ends with the last frame
    /// whose media ends within the target + 0.499 s in both renditions, the frames up to the
    /// next keyframe are left out, and the next segment carries EXT-X-DISCONTINUITY, so that no
    /// EXTINF rounds above the target.
    pub fn target_duration_secs(&self) -> Option<u32> {
        self.target_duration_secs
    }

    /// Takes the target duration an upstream announced in its `onStreamrHlsTiming` data
    /// message ([`HlsTiming`], pushed like any tag): a relay then cuts and lists its MPEG-TS
    /// segments as the origin does, whatever stretch of the stream it measured and whatever
    /// target it was configured with. Only the first announcement counts, and only before a
    /// listed segment closed (the playlist's target cannot change); without one (an older
    /// origin) the target is derived or fixed here.
    ///
    /// A target above this segmenter's longest allowed segment (the origin allows longer
    /// segments, for long GOPs) raises that limit to it: the origin's segments are then cut
    /// whole here too, not short at the relay's own limit.
    fn adopt_target_duration(&mut self, secs: u32) {
        if std::mem::replace(&mut self.announcement_seen, true) || self.listed_closed {
            return;
        }
        let secs = secs.max(1);
        self.target_duration_secs = Some(secs);
        self.config.target_duration_secs = self.config.target_duration_secs.max(secs);
    }

    /// The segment being filled, if any: after [`Segmenter::push`] returns, the frame just
    /// pushed belongs to this segment (or to none when this is `None`).
    ///
    /// A frame starts a segment when it is the first that may (a video keyframe, or an audio
    /// frame of an audio-only stream) in a later grid slot than the one before it that may: a
    /// function of the two frames' timestamps alone, and the first cut point of a timeline
    /// starts one. A node that joined at this frame (as a relay's replay of the cached GOP makes
    /// it, see [`Segmenter::joining_mid_stream`]) did not see the frame before and cannot tell
    /// whether the origin cut here, so that segment is not listed
    /// ([`OpenSegmentInfo::listed`]); from the next one on, every node cuts the same frames
    /// into the same bytes.
    pub fn current_segment(&self) -> Option<OpenSegmentInfo> {
        self.open.as_ref().map(|open| OpenSegmentInfo {
            sequence: self.next_sequence,
            start_timestamp_ms: open.start_ms,
            discontinuity: open.discontinuity,
            listed: open.listed,
            max_duration_ms: self.segment_limit_ms(),
            jump_ms: self.config.max_ms(),
        })
    }

    /// Feeds one FLV tag. Returns the segments it closed. A malformed or unsupported tag is
    /// reported as an error and skipped; the segmenter stays usable.
    ///
    /// Timestamps that jump are discontinuities of the stream: one more than 1 s behind the
    /// frame before of its track (the publisher restarted its clock), and one more than the
    /// longest segment allowed ([`SegmenterConfig::target_duration_secs`]) ahead of the newest
    /// frame that times segments (an encoder restarted without a new publish, a paused screen
    /// share, an offset clock). Either ends the open segment where its media ends (its newest
    /// frame lasting the interval before it, not the gap) and the next segment, from the next
    /// keyframe on, carries EXT-X-DISCONTINUITY. After a forward jump, the frame interval from
    /// before it times the frames that follow, so the GOP after the jump is cut whole.
    pub fn push(&mut self, tag: &FlvTag) -> Result<Vec<SegmenterEvent>, TsError> {
        let mut events = Vec::new();
        if self.ended {
            return Ok(events);
        }
        if tag.tag_type == FlvTagType::ScriptData {
            if let Some(timing) = HlsTiming::decode(&tag.data) {
                self.adopt_target_duration(timing.target_duration_secs);
            }
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
            let outcome = match self.muxer.write_classified(tag, &info, &mut scratch) {
                Err(TsError::UnsupportedCodec { kind, codec, .. }) if is_fmp4_only(codec) => {
                    let payload = tag.data.slice(info.payload_offset.min(tag.data.len())..);
                    self.fmp4_only_config(kind, codec, payload, timestamp, &mut events);
                    return Ok(events);
                }
                outcome => outcome?,
            };
            if had_config && matches!(outcome, MuxOutcome::ConfigChanged { .. }) {
                let track = usize::from(info.kind == MediaKind::Video);
                match self.open.as_mut() {
                    // The open segment has no frame of the track yet (an encoder that restarted
                    // with new settings sends each track's header before that track's first
                    // frame, the audio one a few video frames after the video keyframe that
                    // opened this segment): nothing in it needs the old configuration, so it goes
                    // on with the new one rather than leaving everything up to the next keyframe
                    // out. The tables written when it closes list the new configuration.
                    Some(open) if !open.carries[track] => open.discontinuity = true,
                    // A new codec configuration: close the segment, the next one is
                    // discontinuous.
                    _ => {
                        self.close(timestamp, &mut events);
                        self.pending_discontinuity = true;
                    }
                }
            }
            return Ok(events);
        }
        if !info.is_coded_frame() {
            return Ok(events);
        }
        // Reject a bad frame before it can close or open a segment; a frame of a track only the
        // fMP4 rendition carries goes on to time the cuts without being written.
        let carried = match self.muxer.check_frame(tag, &info) {
            Ok(()) => true,
            Err(TsError::UnsupportedCodec { kind, codec, .. })
                if self.times_cuts_only(kind, codec) =>
            {
                self.report_left_out(kind, codec, &mut events);
                false
            }
            Err(error) => return Err(error),
        };
        let is_video = info.kind == MediaKind::Video;
        let track = usize::from(is_video);
        if let Some(last) = self.last_timestamp_ms[track] {
            if timestamp.saturating_add(BACKWARD_JUMP_MS) < last {
                let end = self
                    .open
                    .as_ref()
                    .map_or(last, |open| self.natural_end(open));
                self.close(end, &mut events);
                self.pending_discontinuity = true;
                // The other track restarts too: its first frame on the new clock is no jump.
                self.last_timestamp_ms = [None; 2];
            }
        }
        if self.jumps_forward(timestamp) {
            // The timeline jumped forward (an encoder restarted without a new publish, a paused
            // screen share, an offset clock): the gap is no frame's duration. The segment ends
            // where its media ends, its newest frame lasting the interval before it, and the
            // stream goes on at the next cut point after a discontinuity. The frame interval
            // before the jump still times the frames after it (`note_frame_timing`), so the GOP
            // after the jump is cut whole, as on a node that joined after the jump.
            if let Some(open) = &self.open {
                let end = self.natural_end(open);
                self.close(end, &mut events);
            }
            self.pending_discontinuity = true;
            self.last_keyframe_ms = None;
        }
        let has_video = self.muxer.has_video() || self.fmp4_only_video.is_some();
        let cut_point = if has_video {
            is_video && info.is_keyframe
        } else {
            !is_video
        };
        if let Some(open) = &self.open {
            let elapsed = timestamp.saturating_sub(open.start_ms);
            // A frame that times segments lasts until the next one (expected as far as the
            // interval before it): one that would end past the longest segment allowed is left
            // out, so that no rendition's segment (LL-HLS lists its frames' true durations)
            // rounds above it. A cut point ends the segment where it starts.
            let times_segments = is_video || !has_video;
            let ends_at = if times_segments && !cut_point {
                elapsed.saturating_add(self.last_frame_gap_ms)
            } else {
                elapsed
            };
            // The other track (audio beside video) may run seconds ahead of the video (an
            // audio sync offset): only a stalled video track holds it to the longest allowed.
            let limit = if times_segments {
                self.segment_limit_ms()
            } else {
                self.config.max_ms()
            };
            if ends_at > limit {
                // No keyframe for longer than any segment may last (a stalled video track or a
                // jump in the timeline): end the segment where its media ends; the stream goes on
                // at the next keyframe, after a discontinuity.
                let end = self.natural_end(open);
                self.close(end, &mut events);
                self.pending_discontinuity = true;
                self.last_keyframe_ms = None;
            }
        }
        if is_video && info.is_keyframe {
            if let Some(previous) = self.last_keyframe_ms {
                let gop = timestamp.saturating_sub(previous);
                if gop > 0 && gop <= self.config.max_ms() {
                    self.longest_gop_ms = self.longest_gop_ms.max(gop);
                    self.shortest_gop_ms = self.shortest_gop_ms.min(gop);
                    self.gops_measured += 1;
                    self.gops_total_ms = self.gops_total_ms.saturating_add(gop);
                }
            }
            self.last_keyframe_ms = Some(timestamp);
        }
        match &self.open {
            Some(open) => {
                let grid = self.grid_ms();
                // A keyframe a millisecond or two before a grid line (timestamps rounded to whole
                // milliseconds) counts as on it: otherwise the segment runs a whole GOP longer
                // than the target duration the regular GOPs implied.
                let slot = |ms: u64| ms.saturating_add(GRID_JITTER_MS) / grid;
                let crossed_grid = slot(timestamp) > slot(open.start_ms);
                if cut_point && crossed_grid {
                    self.close(timestamp, &mut events);
                    self.open_segment(timestamp, has_video);
                }
            }
            None if cut_point => self.open_segment(timestamp, has_video),
            None => {}
        }
        if cut_point {
            self.last_cut_point_ms = Some(timestamp);
        }
        // Only frames that may start a segment (video in a stream with video) time segments.
        let drives_cuts = is_video || !has_video;
        let ts_limit = self.ts_limit_ms();
        if let Some(open) = self.open.as_mut() {
            let before = open.bytes.len();
            // With a fixed target duration, frames past it are left out of the MPEG-TS segment:
            // those of the track that times segments from there on, the other track's once that
            // track got there (it may run seconds ahead, and its frames belong to no other
            // segment).
            let within = ts_limit.is_none_or(|limit| {
                let limit = open.start_ms.saturating_add(limit);
                if drives_cuts {
                    timestamp < limit
                } else {
                    open.last_ms < limit
                }
            });
            if carried && within {
                if let Err(error) = self.muxer.write_classified(tag, &info, &mut open.bytes) {
                    open.bytes.truncate(before);
                    return Err(error);
                }
                open.carries[track] = true;
            }
            if drives_cuts {
                open.last_ms = open.last_ms.max(timestamp);
            }
        }
        self.note_frame_timing(track, timestamp, drives_cuts);
        Ok(events)
    }

    /// Records a coded frame's timestamp, whether or not a segment took it (none is open before
    /// the first keyframe, nor from a frame that would end past the longest segment allowed to
    /// the next keyframe). Frame intervals and clock jumps are then measured from the frames
    /// alone: a node that started its segment at a later keyframe, and so kept frames another
    /// node left out, expects the same frame durations and ends its segments alike.
    fn note_frame_timing(&mut self, track: usize, timestamp: u64, drives_cuts: bool) {
        // Segment timing follows the track that drives cuts (video when there is video).
        if drives_cuts {
            if let Some(gap) = self
                .last_driving_ms
                .and_then(|last| timestamp.checked_sub(last))
                .filter(|gap| *gap > 0 && *gap <= self.config.max_ms())
            {
                self.last_frame_gap_ms = gap;
            }
            self.last_driving_ms = Some(timestamp);
        }
        self.last_timestamp_ms[track] = Some(timestamp);
    }

    /// True when a coded frame at `timestamp` jumps forward in the stream's timeline: it comes
    /// more than the longest segment allowed ([`SegmenterConfig::target_duration_secs`]) after
    /// the newest frame that times segments. No frame can last that long in any segment (its
    /// segment would end past the longest allowed), so such a gap is a jump, not a frame's
    /// duration. A frame of the other track (audio in a stream with video) that far ahead of
    /// the newest video frame is the same jump reaching that track first; one only further
    /// from its own track's frame before (audio that paused while video went on) is none. A
    /// function of the frames alone, so every node that saw the frame before tells the same.
    fn jumps_forward(&self, timestamp: u64) -> bool {
        self.last_driving_ms
            .is_some_and(|last| timestamp > last.saturating_add(self.config.max_ms()))
    }

    /// True when a frame of `codec` is of a configured track only the fMP4 rendition carries.
    fn times_cuts_only(&self, kind: MediaKind, codec: Codec) -> bool {
        is_fmp4_only(codec)
            && match kind {
                MediaKind::Video => self.fmp4_only_video.is_some(),
                MediaKind::Audio => self.fmp4_only_audio,
            }
    }

    /// A sequence header of a codec only fMP4 carries: a changed video configuration closes the
    /// segment like a changed H.264/HEVC one.
    fn fmp4_only_config(
        &mut self,
        kind: MediaKind,
        codec: Codec,
        payload: Bytes,
        timestamp: u64,
        events: &mut Vec<SegmenterEvent>,
    ) {
        match kind {
            MediaKind::Video => {
                let changed = self
                    .fmp4_only_video
                    .as_ref()
                    .is_some_and(|previous| *previous != payload);
                if changed {
                    self.close(timestamp, events);
                    self.pending_discontinuity = true;
                }
                self.fmp4_only_video = Some(payload);
            }
            MediaKind::Audio => self.fmp4_only_audio = true,
        }
        self.report_left_out(kind, codec, events);
    }

    fn report_left_out(&mut self, kind: MediaKind, codec: Codec, events: &mut Vec<SegmenterEvent>) {
        let slot = &mut self.left_out_reported[usize::from(kind == MediaKind::Video)];
        if !std::mem::replace(slot, true) {
            events.push(SegmenterEvent::CodecLeftOut { kind, codec });
        }
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
        self.last_timestamp_ms = [None; 2];
        self.last_keyframe_ms = None;
        self.last_cut_point_ms = None;
        self.last_driving_ms = None;
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

    /// The stream ended at a node that follows an upstream's cuts (a relay whose pull ended for
    /// good): reports [`SegmenterEvent::Ended`] without listing the open segment. The upstream
    /// may have gone on past the last frame that arrived here and cut that segment longer, so
    /// listed here it would carry bytes no upstream segment vouches for. An origin, whose
    /// segments are the reference, ends with [`Segmenter::finish`] instead.
    pub fn finish_leaving_open_segment(&mut self) -> Vec<SegmenterEvent> {
        if self.ended {
            return Vec::new();
        }
        self.open = None;
        self.ended = true;
        vec![SegmenterEvent::Ended]
    }

    /// Where an open segment's media ends when no next frame says so: one frame interval after
    /// its last frame, but never past the target duration.
    fn natural_end(&self, open: &OpenSegment) -> u64 {
        let limit = open.start_ms.saturating_add(self.segment_limit_ms());
        open.last_ms
            .saturating_add(self.last_frame_gap_ms)
            .min(limit)
            .max(open.last_ms)
    }

    /// The target duration for a stream whose first segment lasted `first_ms`, in whole
    /// seconds: with regular GOPs the aimed length rounded up to whole GOPs (the segments are
    /// exactly that); with irregular ones (scene cuts) a segment may run up to a GOP past the
    /// aimed length; never less than the first segment.
    fn derive_target_duration(&self, first_ms: u64) -> u32 {
        let grid = self.config.grid_ms();
        let regular = self.longest_gop_ms.saturating_sub(self.shortest_gop_ms) <= TARGET_JITTER_MS;
        // With regular GOPs a segment is as many GOPs as the grid step takes at the stream's mean
        // GOP (not one GOP's millisecond-rounded measure): a GOP whose multiple falls just short
        // of a grid line makes segments one GOP longer once the timeline has drifted past it.
        let expected = match self.longest_gop_ms {
            0 => grid,
            gop if regular => {
                let gops = grid
                    .saturating_mul(self.gops_measured)
                    .div_ceil(self.gops_total_ms.max(1))
                    .max(1);
                gops.saturating_mul(gop)
            }
            gop => grid.saturating_add(gop),
        };
        let longest = expected
            .max(first_ms)
            .saturating_sub(TARGET_JITTER_MS)
            .min(self.config.max_ms());
        u32::try_from(longest.div_ceil(1_000))
            .unwrap_or(u32::MAX)
            .max(1)
    }

    fn open_segment(&mut self, timestamp: u64, starts_with_keyframe: bool) {
        // Whether this frame starts a segment depends on the one before that could have.
        let listed = self
            .last_cut_point_ms
            .map_or(self.sees_timeline_start, |before| {
                before < timestamp || self.pending_discontinuity
            });
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
            listed,
            ts_gap: std::mem::take(&mut self.ts_gap_pending),
            carries: [false; 2],
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
        pad_continuity_to_16(&mut open.bytes, TABLES_LEN);
        let mut duration_ms = end_ms.saturating_sub(open.start_ms);
        if let Some(limit) = self.ts_limit_ms().filter(|limit| duration_ms > *limit) {
            // Cut short at the fixed target duration: the media up to the next cut is not in
            // this rendition.
            duration_ms = limit;
            self.ts_gap_pending = true;
        }
        self.last_segment_len = open.bytes.len();
        if !open.listed {
            // The discontinuity goes to the first segment listed after it.
            self.pending_discontinuity |= open.discontinuity;
            self.ts_gap_pending |= open.ts_gap;
            return;
        }
        if self.target_duration_secs.is_none() {
            self.target_duration_secs = Some(self.derive_target_duration(duration_ms));
        }
        self.listed_closed = true;
        let bytes = Bytes::from(open.bytes);
        let segment = Segment {
            sequence: self.next_sequence,
            start_timestamp_ms: open.start_ms,
            duration_ms,
            discontinuity: open.discontinuity || open.ts_gap,
            starts_with_keyframe: open.starts_with_keyframe,
            hash: blake3::hash(&bytes),
            bytes,
        };
        self.next_sequence += 1;
        events.push(SegmenterEvent::SegmentReady(segment));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::FlvTagType;
    use crate::hls::{
        LivePlaylist, LlEvent, LlHlsStream, LlPackagerConfig, PlaylistConfig, PlaylistHistory,
    };
    use proptest::prelude::*;

    fn video(keyframe: bool, timestamp: u64, body: &[u8]) -> FlvTag {
        FlvTag {
            tag_type: FlvTagType::Video,
            timestamp: timestamp as u32,
            stream_id: 0,
            data: Bytes::from(
                [
                    &[if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0][..],
                    body,
                ]
                .concat(),
            ),
        }
    }

    /// H.264 at `interval` ms a frame, a keyframe opening each GOP of `gops` (ms).
    fn h264_stream(interval: u64, gops: &[u64]) -> Vec<FlvTag> {
        let sps = [0x67, 0x42, 0xC0, 0x1E, 0xD9, 0x00, 0xA0, 0x47, 0xFE, 0xC8];
        let pps = [0x68, 0xCE, 0x3C, 0x80];
        let mut record = vec![0x01, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0x00, sps.len() as u8];
        record.extend_from_slice(&sps);
        record.extend_from_slice(&[0x01, 0x00, pps.len() as u8]);
        record.extend_from_slice(&pps);
        let mut header = video(true, 0, &record);
        header.data = Bytes::from([&[0x17, 0x00, 0, 0, 0][..], &record].concat());
        let mut tags = vec![header];
        let mut timestamp = 0;
        for gop in gops {
            let end = timestamp + gop;
            let mut first = true;
            while first || timestamp < end {
                let nal: &[u8] = if first {
                    &[0x65, 0x88, 0x84]
                } else {
                    &[0x41, 0x9A, 0x02]
                };
                let body = [
                    &[0, 0, 0, nal.len() as u8][..],
                    nal,
                    &[(timestamp & 0xFF) as u8],
                ]
                .concat();
                let mut body = body;
                // The NAL unit's length covers the trailing byte too.
                body[3] += 1;
                tags.push(video(first, timestamp, &body));
                first = false;
                timestamp += interval;
            }
        }
        tags
    }

    /// The listed segments a segmenter cuts from `tags`, checking after each that the target
    /// duration is `fixed` and that the live playlist keeps RFC 8216's rules.
    fn cut(tags: &[FlvTag], fixed: u32, joining: bool) -> Result<Vec<Segment>, TestCaseError> {
        let config = SegmenterConfig {
            segment_duration_ms: 4_000,
            target_duration_secs: 12,
        };
        let segmenter = Segmenter::new(config).with_fixed_target_duration(fixed);
        let mut segmenter = if joining {
            segmenter.joining_mid_stream()
        } else {
            segmenter
        };
        let mut playlist = LivePlaylist::new(PlaylistConfig {
            target_duration_secs: fixed,
            ..PlaylistConfig::default()
        });
        let mut history = PlaylistHistory::new();
        let mut segments = Vec::new();
        let mut events = Vec::new();
        for tag in tags {
            events.extend(segmenter.push(tag).unwrap());
            prop_assert_eq!(segmenter.target_duration_secs(), Some(fixed));
        }
        events.extend(segmenter.finish());
        for event in events {
            if let SegmenterEvent::SegmentReady(segment) = event {
                prop_assert!(segment.starts_with_keyframe);
                prop_assert!(
                    (segment.duration_ms as f64 / 1_000.0).round() <= f64::from(fixed),
                    "{} ms, TARGETDURATION {fixed}",
                    segment.duration_ms
                );
                playlist.push(&segment, false);
                let text = playlist.render();
                let checked = history.observe(&text);
                prop_assert!(checked.is_ok(), "{checked:?}\n{text}");
                segments.push(segment);
            }
        }
        Ok(segments)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With a fixed target duration, no MPEG-TS segment's EXTINF rounds above it and it
        /// never changes, for any sequence of GOPs from 0.2 s to 15 s; every segment starts with
        /// a keyframe; and a node joining at any frame cuts byte-identical segments. With a
        /// forward jump in the timeline (12.001 s to 100 s, to any frame), the segment before
        /// it ends by its last frame's end, no segment runs into the next one, and the first
        /// segment after it is discontinuous.
        #[test]
        fn a_fixed_target_duration_holds_for_any_gops(
            fixed in 1u32..=12,
            interval in prop::sample::select(vec![17u64, 33, 40, 100, 500]),
            gops in proptest::collection::vec(200u64..15_000, 1..16),
            join in any::<prop::sample::Index>(),
            jump in proptest::option::of((any::<prop::sample::Index>(), 12_001u64..100_000, any::<bool>())),
        ) {
            let mut tags = h264_stream(interval, &gops);
            // The jump to a frame after the first, a keyframe half the time.
            let jump = jump.and_then(|(at, by, to_keyframe)| {
                let candidates: Vec<usize> = (2..tags.len())
                    .filter(|&i| !to_keyframe || tags[i].data[0] == 0x17)
                    .collect();
                (!candidates.is_empty())
                    .then(|| with_forward_jump(&mut tags, candidates[at.index(candidates.len())], by))
            });
            let origin = cut(&tags, fixed, false)?;
            prop_assert!(!origin.is_empty());
            if let Some(jump) = jump {
                check_cut_around_jump(&origin, jump, interval)?;
            }
            let start = 1 + join.index(tags.len() - 1);
            let joined: Vec<FlvTag> = tags[..1].iter().chain(&tags[start..]).cloned().collect();
            let friend = cut(&joined, fixed, true)?;
            for segment in &friend {
                prop_assert!(
                    origin.iter().any(|o| o.start_timestamp_ms == segment.start_timestamp_ms
                        && o.hash == segment.hash
                        && o.duration_ms == segment.duration_ms),
                    "segment at {} ms differs", segment.start_timestamp_ms
                );
            }
        }
    }

    /// A forward jump in a stream's timeline: the last frame before it and the first after it.
    #[derive(Debug, Clone, Copy)]
    struct ForwardJump {
        last_before_ms: u64,
        first_after_ms: u64,
    }

    /// Stamps every tag from `tags[at]` on `by_ms` later, as a publisher whose clock jumped
    /// forward sends them (`at` at least 1: a frame comes before the jump).
    fn with_forward_jump(tags: &mut [FlvTag], at: usize, by_ms: u64) -> ForwardJump {
        let last_before_ms = u64::from(tags[at - 1].timestamp);
        for tag in &mut tags[at..] {
            tag.timestamp += by_ms as u32;
        }
        ForwardJump {
            last_before_ms,
            first_after_ms: u64::from(tags[at].timestamp),
        }
    }

    /// `segments` (in order) are cut as a forward jump requires: those before it end at most
    /// one frame `interval` after its last frame, none runs past the start of the next, and
    /// the first after it carries a discontinuity when a segment comes before it (a playlist's
    /// first segment needs none).
    fn check_cut_around_jump(
        segments: &[Segment],
        jump: ForwardJump,
        interval: u64,
    ) -> Result<(), TestCaseError> {
        for segment in segments {
            let end = segment.start_timestamp_ms + segment.duration_ms;
            if segment.start_timestamp_ms <= jump.last_before_ms {
                prop_assert!(
                    end <= jump.last_before_ms + interval,
                    "the segment at {} ms ends at {end} ms, past the jump at {} ms",
                    segment.start_timestamp_ms,
                    jump.last_before_ms
                );
            }
        }
        for pair in segments.windows(2) {
            let end = pair[0].start_timestamp_ms + pair[0].duration_ms;
            prop_assert!(
                end <= pair[1].start_timestamp_ms,
                "the segment at {} ms ends at {end} ms, past the next one's start at {} ms",
                pair[0].start_timestamp_ms,
                pair[1].start_timestamp_ms
            );
        }
        let after = segments
            .iter()
            .position(|s| s.start_timestamp_ms >= jump.first_after_ms);
        if let Some(after) = after
            .filter(|&index| index > 0)
            .map(|index| &segments[index])
        {
            prop_assert!(
                after.discontinuity,
                "the segment at {} ms",
                after.start_timestamp_ms
            );
        }
        Ok(())
    }

    /// The segments a node cuts from `tags` with the default configuration, a fixed target
    /// duration of `fixed` seconds, joining mid-stream when `joining`.
    fn segments_of(tags: &[FlvTag], fixed: Option<u32>, joining: bool) -> Vec<Segment> {
        let mut segmenter = Segmenter::new(SegmenterConfig::default());
        if let Some(secs) = fixed {
            segmenter = segmenter.with_fixed_target_duration(secs);
        }
        if joining {
            segmenter = segmenter.joining_mid_stream();
        }
        ready_segments(&mut segmenter, tags)
    }

    /// The segments `segmenter` lists for `tags` and its finish.
    fn ready_segments(segmenter: &mut Segmenter, tags: &[FlvTag]) -> Vec<Segment> {
        let mut events = Vec::new();
        for tag in tags {
            events.extend(segmenter.push(tag).unwrap());
        }
        events.extend(segmenter.finish());
        events
            .into_iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(segment) => Some(segment),
                _ => None,
            })
            .collect()
    }

    /// What a relay joining at `tags[at]` receives: the origin's timing announcement of
    /// `target_secs`, the stream's first tag (its header), then the frames from `at` on.
    fn joined_with_timing(tags: &[FlvTag], at: usize, target_secs: u32) -> Vec<FlvTag> {
        let timing = FlvTag {
            tag_type: FlvTagType::ScriptData,
            timestamp: 0,
            stream_id: 0,
            data: HlsTiming {
                part_target_ms: None,
                target_duration_secs: target_secs,
            }
            .encode(),
        };
        std::iter::once(&timing)
            .chain(&tags[..1])
            .chain(&tags[at..])
            .cloned()
            .collect()
    }

    /// Whether `segment` is one of `origin`'s: the same start and the same bytes.
    fn is_one_of(segment: &Segment, origin: &[Segment]) -> bool {
        origin
            .iter()
            .any(|o| o.start_timestamp_ms == segment.start_timestamp_ms && o.hash == segment.hash)
    }

    /// A relay configured with the default 4 s segments takes the origin's fixed 2 s target
    /// from its announcement (before the frames, as a pull's start bundle hands it) and aims
    /// its segments at 2 s as the origin does: joined at any keyframe, every segment it lists
    /// is one of the origin's, byte for byte.
    #[test]
    fn a_relay_taking_an_announced_short_target_cuts_the_origins_segments() {
        let tags = h264_stream(
            40,
            &[1_000, 1_000, 2_000, 1_000, 3_000, 1_000, 1_000, 2_000],
        );
        let origin = segments_of(&tags, Some(2), false);
        assert!(
            origin.iter().all(|s| s.duration_ms <= 2_499),
            "{:?}",
            cuts(&origin)
        );
        let keyframes: Vec<usize> = (1..tags.len())
            .filter(|&i| tags[i].data[0] == 0x17)
            .collect();
        for &at in &keyframes[..keyframes.len() - 2] {
            let relay = segments_of(&joined_with_timing(&tags, at, 2), None, true);
            assert!(!relay.is_empty(), "joined at {}", tags[at].timestamp);
            for segment in &relay {
                assert!(
                    is_one_of(segment, &origin),
                    "joined at {}: the segment at {} ms is not the origin's {:?}",
                    tags[at].timestamp,
                    segment.start_timestamp_ms,
                    cuts(&origin)
                );
            }
        }
    }

    /// An origin allowing 30 s segments cuts 20 s GOPs whole and announces a 20 s target; a
    /// relay allowing the default 12 s takes it and cuts the same whole segments, not ones
    /// short at its own limit.
    #[test]
    fn a_relay_taking_an_announced_long_target_cuts_the_origins_whole_segments() {
        let tags = h264_stream(40, &[20_000; 5]);
        let config = SegmenterConfig {
            target_duration_secs: 30,
            ..SegmenterConfig::default()
        };
        let mut origin = Segmenter::new(config);
        let origin_segments = ready_segments(&mut origin, &tags);
        assert_eq!(origin.target_duration_secs(), Some(20));
        assert!(origin_segments
            .iter()
            .all(|s| s.duration_ms == 20_000 && !s.discontinuity));
        let at = (2..tags.len()).find(|&i| tags[i].data[0] == 0x17).unwrap();
        let relay = segments_of(&joined_with_timing(&tags, at, 20), None, true);
        assert!(relay.len() >= 2, "{:?}", cuts(&relay));
        assert!(
            relay.iter().all(|s| s.duration_ms == 20_000),
            "{:?}",
            cuts(&relay)
        );
        for segment in &relay {
            assert!(
                is_one_of(segment, &origin_segments),
                "the segment at {} ms is not the origin's: {:?}",
                segment.start_timestamp_ms,
                cuts(&relay)
            );
        }
    }

    /// A relay whose pull ends partway through the origin's last 20 s segment lists only
    /// segments the origin lists, byte for byte; the origin lists its last one when its
    /// publisher leaves.
    #[test]
    fn a_relay_ending_mid_segment_lists_only_the_origins_segments() {
        let tags = h264_stream(40, &[20_000; 4]);
        // 30 s segments allowed, so 20 s GOPs are cut whole.
        let config = SegmenterConfig {
            target_duration_secs: 30,
            ..SegmenterConfig::default()
        };
        let mut origin = Segmenter::new(config);
        let origin = ready_segments(&mut origin, &tags);
        assert_eq!(
            cuts(&origin),
            vec![
                (0, 20_000, false),
                (20_000, 20_000, false),
                (40_000, 20_000, false),
                (60_000, 20_000, false)
            ]
        );
        // The relay joins at the second keyframe and its pull ends 8.68 s into the last GOP.
        let at = (2..tags.len()).find(|&i| tags[i].data[0] == 0x17).unwrap();
        let mut relay = Segmenter::new(config)
            .with_fixed_target_duration(20)
            .joining_mid_stream();
        let mut events = Vec::new();
        for tag in tags[..1]
            .iter()
            .chain(&tags[at..])
            .filter(|tag| tag.timestamp < 68_680)
        {
            events.extend(relay.push(tag).unwrap());
        }
        let open = relay.current_segment().expect("the last segment is open");
        assert_eq!(open.start_timestamp_ms, 60_000);
        events.extend(relay.finish_leaving_open_segment());
        assert!(matches!(events.last(), Some(SegmenterEvent::Ended)));
        assert!(relay.finish_leaving_open_segment().is_empty());
        let listed: Vec<&Segment> = events
            .iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(segment) => Some(segment),
                _ => None,
            })
            .collect();
        // The first segment after joining is cut but not listed (the relay joined mid-stream).
        assert_eq!(
            listed
                .iter()
                .map(|s| s.start_timestamp_ms)
                .collect::<Vec<_>>(),
            vec![40_000]
        );
        for segment in listed {
            assert!(is_one_of(segment, &origin));
        }
    }

    #[test]
    fn frames_left_out_after_the_longest_segment_still_time_the_next_one() {
        // Frames every 500 ms; keyframes at 0, 1 s and 12.5 s, the stream ends after the last.
        // The origin's segment from 0 holds both first GOPs (one grid slot) and would run past
        // 12 s with the frame at 12 s: it ends at 12 s and that frame goes into no segment. A
        // relay joining at the keyframe at 1 s keeps it in its own (unlisted) first segment.
        // Both then cut the last keyframe alone, and it lasts the stream's 500 ms frame
        // interval on both: not 1 s on the node that left the frame at 12 s out.
        let tags = h264_stream(500, &[1_000, 11_500, 500]);
        let keyframe = |ms: u32| {
            tags.iter()
                .position(|t| t.timestamp == ms && t.data[0] == 0x17 && t.data[1] == 1)
                .unwrap()
        };
        let joined: Vec<FlvTag> = tags[..1]
            .iter()
            .chain(&tags[keyframe(1_000)..])
            .cloned()
            .collect();
        for fixed in [None, Some(1), Some(12)] {
            let cut_all = |tags: &[FlvTag], joining: bool| segments_of(tags, fixed, joining);
            let origin = cut_all(&tags, false);
            let relay = cut_all(&joined, true);
            // A fixed 1 s target aims segments at 1 s: the first GOP is one, the second is
            // cut short by its last frame ending within 1.499 s.
            let first = match fixed {
                Some(1) => vec![(0, 1_000, false), (1_000, 1_000, false)],
                _ => vec![(0, 12_000, false)],
            };
            assert_eq!(
                cuts(&origin),
                [first, vec![(12_500, 500, true)]].concat(),
                "target {fixed:?}"
            );
            assert_eq!(relay.len(), 1, "target {fixed:?}");
            assert_eq!(relay[0].start_timestamp_ms, 12_500);
            assert_eq!(relay[0].duration_ms, 500, "target {fixed:?}");
            assert_eq!(Some(&relay[0].hash), origin.last().map(|s| &s.hash));
        }
    }

    #[test]
    fn the_gop_after_one_over_twice_the_longest_segment_is_kept_whole() {
        // A 25 s GOP (a static screen share with a long keyframe interval), then 4 s GOPs at
        // 25 fps. The segment from 0 ends at 12 s, the longest allowed, and the frames from there
        // to the next keyframe go into no segment. They still time the frames that follow: the
        // keyframe at 25 s is expected to last 40 ms, not the 13 s from the last frame a
        // segment took, which would end its segment at once and leave out the rest of its GOP.
        let tags = h264_stream(40, &[25_000, 4_000, 4_000]);
        let mut stream = LlHlsStream::new(
            SegmenterConfig::default(),
            LlPackagerConfig::default(),
            6,
            "",
        );
        let mut ts = Vec::new();
        let mut ll = Vec::new();
        for tag in &tags {
            let out = stream.push(tag).unwrap();
            ts.extend(out.ts);
            ll.extend(out.ll);
        }
        let out = stream.finish().unwrap();
        ts.extend(out.ts);
        ll.extend(out.ll);
        let ts: Vec<Segment> = ts
            .into_iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(segment) => Some(segment),
                _ => None,
            })
            .collect();
        assert_eq!(
            cuts(&ts),
            vec![
                (0, 12_000, false),
                (25_000, 4_000, true),
                (29_000, 4_000, false)
            ]
        );
        let ll: Vec<(u64, u64, bool)> = ll
            .into_iter()
            .filter_map(|event| match event {
                LlEvent::SegmentReady(s) => {
                    Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ll, cuts(&ts));
    }

    /// H.264 at 25 fps in 2 s GOPs and AAC every 23 ms, in timestamp order (video first at
    /// equal timestamps), for `seconds` of media; every frame from `jump_at_ms` on is stamped
    /// `jump_ms` later, as a publisher whose clock jumped forward sends it.
    fn av_stream_with_jump(seconds: u64, jump_at_ms: u64, jump_ms: u64) -> Vec<FlvTag> {
        let gops = vec![2_000; usize::try_from(seconds / 2).unwrap()];
        let video = h264_stream(40, &gops);
        let mut tags = vec![
            video[0].clone(),
            FlvTag {
                tag_type: FlvTagType::Audio,
                timestamp: 0,
                stream_id: 0,
                data: Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]),
            },
        ];
        let audio_frames = (0..seconds * 1_000 / 23).map(|n| audio(n * 23, &[0x21, n as u8]));
        let mut media: Vec<FlvTag> = video[1..].iter().cloned().chain(audio_frames).collect();
        media.sort_by_key(|tag| (tag.timestamp, tag.tag_type != FlvTagType::Video));
        for tag in &mut media {
            if u64::from(tag.timestamp) >= jump_at_ms {
                tag.timestamp += jump_ms as u32;
            }
        }
        tags.extend(media);
        tags
    }

    #[test]
    fn a_forward_timestamp_jump_is_a_discontinuity_and_the_gop_after_it_is_cut_whole() {
        // 2 s GOPs of audio and video; from 8 s on the publisher's clock is 30 s ahead (a
        // paused screen share, an encoder restarted without a new publish). The segment before
        // the jump ends with its last frame (not 30 s, nor the longest segment, later), the GOP
        // after it is cut whole after a discontinuity, in both renditions, then segments follow
        // the 4 s grid of the stream's clock again; both playlists stamp them as that clock
        // says.
        let tags = av_stream_with_jump(16, 8_000, 30_000);
        let mut stream = LlHlsStream::new(
            SegmenterConfig::default(),
            LlPackagerConfig::default(),
            6,
            "",
        );
        let anchor = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        stream.set_program_date_time_at(anchor, 0);
        let mut ts_playlist = LivePlaylist::new(PlaylistConfig::default());
        ts_playlist.set_program_date_time_at(anchor, 0);
        let mut history = PlaylistHistory::new();
        let mut ts = Vec::new();
        let mut ll = Vec::new();
        let mut outputs = Vec::new();
        for tag in &tags {
            outputs.push(stream.push(tag).unwrap());
        }
        outputs.push(stream.finish().unwrap());
        for out in outputs {
            ll.extend(out.ll);
            for event in out.ts {
                if let SegmenterEvent::SegmentReady(segment) = event {
                    if let Some(target) = stream.segmenter().target_duration_secs() {
                        ts_playlist.set_target_duration(target);
                    }
                    ts_playlist.push(&segment, false);
                    let text = ts_playlist.render();
                    history
                        .observe(&text)
                        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
                    ts.push(segment);
                }
            }
        }
        let expected = vec![
            (0, 4_000, false),
            (4_000, 4_000, false),
            (38_000, 2_000, true),
            (40_000, 4_000, false),
            (44_000, 2_000, false),
        ];
        assert_eq!(cuts(&ts), expected);
        let ll_cuts: Vec<(u64, u64, bool)> = ll
            .iter()
            .filter_map(|event| match event {
                LlEvent::SegmentReady(s) => {
                    Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ll_cuts, expected);
        // Every LL-HLS part of the segment before the jump ends by its last frame's end.
        let parts_before_jump: u64 = ll
            .iter()
            .filter_map(|event| match event {
                LlEvent::PartReady(part) if part.sequence == 1 => Some(part.duration_ms),
                _ => None,
            })
            .sum();
        assert_eq!(parts_before_jump, 4_000);

        let ts_text = ts_playlist.render();
        let ll_text = stream.playlist().render(false);
        let violations = crate::hls::check_ll_playlist(&ll_text);
        assert!(violations.is_empty(), "{violations:#?}\n{ll_text}");
        for text in [&ts_text, &ll_text] {
            let lines: Vec<&str> = text.lines().collect();
            let extinfs: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("#EXTINF:"))
                .collect();
            assert_eq!(
                extinfs,
                vec!["4.000,", "4.000,", "2.000,", "4.000,", "2.000,"],
                "{text}"
            );
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| **l == "#EXT-X-DISCONTINUITY")
                    .count(),
                1,
                "{text}"
            );
            // The discontinuity comes right before the third segment (and its parts).
            let discontinuity = lines
                .iter()
                .position(|l| *l == "#EXT-X-DISCONTINUITY")
                .unwrap();
            let listed_before = lines[..discontinuity]
                .iter()
                .filter(|l| l.starts_with("#EXTINF:"))
                .count();
            assert_eq!(listed_before, 2, "{text}");
            // EXT-X-PROGRAM-DATE-TIME follows the stream's clock: 0, 4, 38, 40 and 44 s past
            // the anchor.
            let stamps: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
                .collect();
            assert_eq!(
                stamps,
                vec![
                    "2023-11-14T22:13:20.000Z",
                    "2023-11-14T22:13:24.000Z",
                    "2023-11-14T22:13:58.000Z",
                    "2023-11-14T22:14:00.000Z",
                    "2023-11-14T22:14:04.000Z",
                ],
                "{text}"
            );
        }
    }

    fn audio(timestamp: u64, body: &[u8]) -> FlvTag {
        FlvTag {
            tag_type: FlvTagType::Audio,
            timestamp: timestamp as u32,
            stream_id: 0,
            data: Bytes::from([&[0xAF, 0x01][..], body].concat()),
        }
    }

    /// Each segment's start, duration and discontinuity flag.
    fn cuts(segments: &[Segment]) -> Vec<(u64, u64, bool)> {
        segments
            .iter()
            .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity))
            .collect()
    }

    /// PES packets starting on `pid` in MPEG-TS `bytes`.
    fn pes_starts(bytes: &[u8], pid: u16) -> usize {
        bytes
            .chunks(TS_PACKET_LEN)
            .filter(|p| p[1] & 0x40 != 0 && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == pid)
            .count()
    }

    #[test]
    fn audio_sent_seconds_ahead_of_video_is_neither_a_jump_nor_left_out() {
        // An encoder whose audio runs 3 s ahead of its video in sending order (an audio sync
        // offset): each video frame arrives after audio stamped 3 s later.
        let video = h264_stream(40, &[2_000; 8]);
        let mut tags = vec![FlvTag {
            tag_type: FlvTagType::Audio,
            timestamp: 0,
            stream_id: 0,
            data: Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]),
        }];
        tags.push(video[0].clone());
        let mut media: Vec<(u64, FlvTag)> = video[1..]
            .iter()
            .map(|tag| (u64::from(tag.timestamp) + 3_000, tag.clone()))
            .collect();
        let audio_frames: Vec<FlvTag> = (0..700)
            .map(|n| audio(n * 23, &[0x21, (n & 0xFF) as u8]))
            .collect();
        media.extend(
            audio_frames
                .iter()
                .map(|tag| (u64::from(tag.timestamp), tag.clone())),
        );
        media.sort_by_key(|(sent, _)| *sent);
        tags.extend(media.into_iter().map(|(_, tag)| tag));

        let mut segmenter = Segmenter::new(SegmenterConfig::default());
        let mut events = Vec::new();
        let mut audio_after_keyframe = 0;
        let mut seen_keyframe = false;
        for tag in &tags {
            events.extend(segmenter.push(tag).unwrap());
            if tag.tag_type == FlvTagType::Video && tag.data[0] == 0x17 && tag.data[1] == 1 {
                seen_keyframe = true;
            }
            if seen_keyframe && tag.tag_type == FlvTagType::Audio && tag.data[1] == 1 {
                audio_after_keyframe += 1;
            }
        }
        events.extend(segmenter.finish());
        let segments: Vec<Segment> = events
            .into_iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(segment) => Some(segment),
                _ => None,
            })
            .collect();
        let cuts = cuts(&segments);
        assert_eq!(
            cuts,
            vec![
                (0, 4_000, false),
                (4_000, 4_000, false),
                (8_000, 4_000, false),
                (12_000, 4_000, false)
            ]
        );
        let audio_carried: usize = segments
            .iter()
            .map(|s| pes_starts(&s.bytes, crate::ts::AUDIO_PID))
            .sum();
        assert_eq!(audio_carried, audio_after_keyframe);

        // A node joining at a later keyframe (a relay's replay of the GOP cache, in the order
        // the frames were sent) lists the origin's segments byte for byte.
        let cut_all = |tags: &[FlvTag], joining: bool| segments_of(tags, Some(4), joining);
        let origin = cut_all(&tags, false);
        let keyframe = tags
            .iter()
            .position(|t| {
                t.tag_type == FlvTagType::Video && t.data[0] == 0x17 && t.timestamp == 6_000
            })
            .unwrap();
        let joined: Vec<FlvTag> = tags[..2].iter().chain(&tags[keyframe..]).cloned().collect();
        let friend = cut_all(&joined, true);
        assert_eq!(friend.len(), 2);
        for segment in &friend {
            assert!(
                origin.iter().any(|o| o.hash == segment.hash),
                "segment at {} ms differs",
                segment.start_timestamp_ms
            );
        }
    }

    #[test]
    fn a_gop_growing_past_the_derived_target_keeps_every_segment_within_it() {
        // 2 s GOPs make the target 4 s; then the encoder's keyframe interval grows to 10 s.
        let mut gops = vec![2_000; 6];
        gops.extend([10_000; 3]);
        gops.extend([2_000; 4]);
        let tags = h264_stream(40, &gops);
        let mut segmenter = Segmenter::new(SegmenterConfig::default());
        let mut playlist = LivePlaylist::new(PlaylistConfig::default());
        let mut history = PlaylistHistory::new();
        let mut segments = Vec::new();
        let mut events = Vec::new();
        for tag in &tags {
            events.extend(segmenter.push(tag).unwrap());
        }
        events.extend(segmenter.finish());
        for event in events {
            let SegmenterEvent::SegmentReady(segment) = event else {
                continue;
            };
            if let Some(target) = segmenter.target_duration_secs() {
                playlist.set_target_duration(target);
            }
            playlist.push(&segment, false);
            let text = playlist.render();
            history
                .observe(&text)
                .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            segments.push(segment);
        }
        assert_eq!(segmenter.target_duration_secs(), Some(4));
        let cuts = cuts(&segments);
        assert_eq!(
            cuts,
            vec![
                (0, 4_000, false),
                (4_000, 4_000, false),
                (8_000, 4_000, false),
                // Each 10 s GOP: its frames whose media ends within 4.499 s (the last one
                // 40 ms from 4.440 s), the rest left out in both renditions.
                (12_000, 4_480, false),
                (22_000, 4_480, true),
                (32_000, 4_480, true),
                // 2 s GOPs again, on the 4 s grid.
                (42_000, 2_000, true),
                (44_000, 4_000, false),
                (48_000, 2_000, false),
            ]
        );
        for segment in &segments {
            assert!(segment.starts_with_keyframe);
            assert!((segment.duration_ms as f64 / 1_000.0).round() <= 4.0);
        }
    }

    #[test]
    fn a_gop_past_the_fixed_target_is_cut_short_and_the_next_segment_is_discontinuous() {
        // 2 s GOPs, one of 9 s, then 2 s again; TARGETDURATION fixed at 4.
        let tags = h264_stream(40, &[2_000, 2_000, 9_000, 2_000, 2_000, 2_000]);
        let config = SegmenterConfig::default();
        let mut segmenter = Segmenter::new(config).with_fixed_target_duration(4);
        let mut segments = Vec::new();
        for tag in &tags {
            segments.extend(segmenter.push(tag).unwrap());
        }
        segments.extend(segmenter.finish());
        let segments: Vec<(u64, u64, bool)> = segments
            .into_iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(s) => {
                    Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            segments,
            vec![
                (0, 4_000, false),
                (4_000, 4_480, false),
                (13_000, 4_000, true),
                (17_000, 2_000, false),
            ]
        );
    }
}
