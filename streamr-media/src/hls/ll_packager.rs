//! The sans-IO LL-HLS packager: FLV tags in, CMAF partial segments and segments out, cut where
//! the MPEG-TS segmenter cuts.

use bytes::{Bytes, BytesMut};

use super::part_timing::{fit_to_frames, FrameTiming};
use super::segmenter::OpenSegmentInfo;
use super::timing_notice::HlsTiming;
use crate::codec::without_temporal_delimiters;
use crate::flv::tag::{classify, Codec, MediaKind, PacketKind};
use crate::flv::{FlvTag, FlvTagType};
use crate::fmp4::{
    fragment, init_segment, Fmp4Error, Sample, TrackConfig, TrackRun, AUDIO_TRACK_ID,
    VIDEO_TRACK_ID,
};

/// The part target used when none is configured, in milliseconds.
pub const DEFAULT_PART_TARGET_MS: u32 = 350;

/// How partial segments are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlPackagerConfig {
    /// The part target aimed for, in milliseconds. The stream's EXT-X-PART-INF PART-TARGET is
    /// derived from it and the stream's frame timing ([`LlPackager::part_target_ms`]): this
    /// value when whole frames fill at least 85 % of it, otherwise a target that whole frames
    /// do fill (never less than one frame), and a multiple of it when the frames are timed
    /// irregularly (a variable frame rate). Only the configuration and the stream itself go
    /// into it, never when a node received what, so that nodes cut the same parts and declare
    /// the same target; a relay takes the origin's ([`HlsTiming`]) rather than measuring
    /// another stretch of the stream.
    pub part_target_ms: u32,
}

impl Default for LlPackagerConfig {
    fn default() -> Self {
        LlPackagerConfig {
            part_target_ms: DEFAULT_PART_TARGET_MS,
        }
    }
}

/// A CMAF header (EXT-X-MAP), named after its content so every node names it the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// The file name, `init-{first 16 hex digits of the BLAKE3 hash}.mp4`.
    pub name: String,
    /// The RFC 6381 codecs of its tracks, comma-separated.
    pub codecs: String,
    /// BLAKE3 hash of `bytes`.
    pub hash: blake3::Hash,
    /// The `ftyp`+`moov` bytes.
    pub bytes: Bytes,
}

impl InitSegment {
    fn new(tracks: &[TrackConfig]) -> Result<Self, Fmp4Error> {
        let bytes = Bytes::from(init_segment(tracks)?);
        let hash = blake3::hash(&bytes);
        let codecs: Vec<String> = tracks.iter().map(TrackConfig::codec_string).collect();
        Ok(InitSegment {
            name: format!("init-{}.mp4", &hash.to_hex()[..16]),
            codecs: codecs.join(","),
            hash,
            bytes,
        })
    }
}

/// A finished partial segment: one `moof`+`mdat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Media sequence number of the segment it belongs to.
    pub sequence: u64,
    /// Its index in the segment, from 0.
    pub index: u32,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// It starts with a video keyframe (or the stream has no video): EXT-X-PART INDEPENDENT=YES.
    pub independent: bool,
    /// BLAKE3 hash of `bytes`.
    pub hash: blake3::Hash,
    /// The fragment bytes.
    pub bytes: Bytes,
}

/// A finished segment: the concatenation of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlSegment {
    /// The media sequence number (the MPEG-TS segment cut at the same frames has the same).
    pub sequence: u64,
    /// Stream timestamp (ms) of its first frame.
    pub start_timestamp_ms: u64,
    /// Duration in milliseconds (the sum of its parts').
    pub duration_ms: u64,
    /// It follows a discontinuity (or a new init segment).
    pub discontinuity: bool,
    /// The init segment its fragments need.
    pub init: InitSegment,
    /// Its parts, in order; `bytes` is their concatenation.
    pub part_hashes: Vec<blake3::Hash>,
    /// BLAKE3 hash of `bytes`.
    pub hash: blake3::Hash,
    /// The fragments, one per part.
    pub bytes: Bytes,
}

/// What the packager reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlEvent {
    /// A segment opened: its parts follow, then [`LlEvent::SegmentReady`]. Reported with its
    /// first part (or, for a segment without one, before it is withdrawn or complete), when its
    /// init segment is final: until a part of it is cut, a new audio configuration that the
    /// segment carries no audio of yet still goes into its init segment (an encoder restarted
    /// with new settings sends the audio sequence header a few video frames after the keyframe
    /// that opened the segment), so no playlist names an init segment its media is not read
    /// with.
    SegmentStarted {
        /// Its media sequence number.
        sequence: u64,
        /// It follows a discontinuity.
        discontinuity: bool,
        /// Its init segment.
        init: InitSegment,
        /// Stream timestamp (ms) of its first frame.
        start_ms: u64,
    },
    /// A part of the open segment is complete.
    PartReady(Part),
    /// The open segment is complete.
    SegmentReady(LlSegment),
    /// The open segment's parts are not to be listed, those listed already included: the
    /// segment is listed whole once complete, as an older segment is. Either a part breaks
    /// RFC 8216bis 4.4.4.9 for the declared PART-TARGET (it lasts longer, or it is short and
    /// neither independent nor the segment's last: the stream's frames are not timed as its
    /// metadata declared; every node cuts the same parts, so every node withdraws the same), or
    /// a relay's frames stopped following its upstream's ([`LlPackager::withdraw_open_parts`]).
    /// The parts are still reported ([`LlEvent::PartReady`] follows for each) so that their
    /// hashes stay known.
    PartsWithdrawn {
        /// Media sequence number of the segment.
        sequence: u64,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    dts_ms: u64,
    cts_ms: i64,
    sync: bool,
    data: Bytes,
}

#[derive(Debug, Default)]
struct Run {
    base_ms: Option<u64>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct OpenPart {
    start_ms: u64,
    independent: bool,
    video: Run,
    audio: Run,
}

#[derive(Debug)]
struct OpenLl {
    sequence: u64,
    start_ms: u64,
    discontinuity: bool,
    init: InitSegment,
    has_video: bool,
    has_audio: bool,
    /// The track configurations its init segment describes: frames of a configuration that
    /// changed since (a new audio configuration the MPEG-TS segmenter let this segment go on
    /// with, as it had no audio yet, arriving after a part of it was cut) wait for the next
    /// segment and its new init segment. Before its first part, the init segment takes a new
    /// audio configuration instead (see `take_audio_config`).
    video_config: Option<TrackConfig>,
    audio_config: Option<TrackConfig>,
    parts: Vec<Part>,
    part: Option<OpenPart>,
    /// The MPEG-TS segmenter lists the segment cut at the same frames
    /// ([`OpenSegmentInfo::listed`]): its events are reported. Otherwise it is cut, so that
    /// what follows is cut the same, but reported to no one.
    listed: bool,
    /// A part broke the part rules: [`LlEvent::PartsWithdrawn`] was reported (or is, right
    /// after [`LlEvent::SegmentStarted`]).
    withdrawn: bool,
    /// [`LlEvent::SegmentStarted`] was reported (listed segments only): its init segment can no
    /// longer change.
    announced: bool,
    /// The init segment of the segment before, for telling whether this one's differs.
    previous_init: Option<blake3::Hash>,
    /// The MPEG-TS segmenter marked the segment discontinuous.
    ts_discontinuity: bool,
    /// The longest a sample of it may last ([`OpenSegmentInfo::jump_ms`]), a successor
    /// further away being a jump in the timeline.
    jump_ms: u64,
    /// Where it ends at the latest ([`OpenSegmentInfo::max_duration_ms`] from its start, as the
    /// MPEG-TS segmenter holds it now: a relay may learn the target duration after the
    /// segment opened).
    max_end_ms: u64,
}

/// Cuts a live FLV tag stream into CMAF segments and partial segments for LL-HLS.
///
/// Segment boundaries and numbers come from the MPEG-TS [`Segmenter`](super::Segmenter) of the
/// same stream: feed each tag to it first, then here with its
/// [`current_segment`](super::Segmenter::current_segment). Parts are cut on the stream's own
/// timestamps relative to the segment start and on the PART-TARGET
/// ([`LlPackager::part_target_ms`]), never on what this node saw first: each part takes the
/// frames that fit the target, and a keyframe starts an independent part when the part before
/// it reached 85 % of the target (RFC 8216bis: every part other than a segment's last and the
/// independent ones lasts at least that). Every node reports the same bytes for every
/// segment it reports, and leaves out (cuts without reporting) the segment the segmenter does
/// not list, a node's first when it joined mid-stream. Each sample's duration is the gap to
/// the next sample of its track, so the newest sample of each track waits for its successor: a
/// part is complete when the first frame of the next part arrives.
#[derive(Debug)]
pub struct LlPackager {
    config: LlPackagerConfig,
    video_config: Option<TrackConfig>,
    audio_config: Option<TrackConfig>,
    open: Option<OpenLl>,
    last_init: Option<InitSegment>,
    pending_video: Option<Pending>,
    pending_audio: Option<Pending>,
    video_gap_ms: u64,
    audio_gap_ms: u64,
    /// The newest frame of each track (audio, video) that no segment took: before the first
    /// keyframe, or left out after a segment that reached the longest duration allowed. Its
    /// successor still tells its duration, as it does on a node whose segment took it.
    left_out_ms: [Option<u64>; 2],
    /// The video frame interval the stream declares (`onMetaData` `framerate`), in milliseconds.
    declared_frame_ms: Option<f64>,
    /// PART-TARGET from the declared frame rate, fixed when the first segment opens and used
    /// while it is open (see [`LlPackager::part_target_ms`]).
    provisional_target_ms: Option<u32>,
    /// PART-TARGET, fixed when the first segment closes (see [`LlPackager::part_target_ms`]).
    locked_target_ms: Option<u32>,
    /// The intervals of the frames that time parts, measured until the target is fixed.
    timing: FrameTiming,
    /// An upstream's announced target ([`HlsTiming`]) was taken (or came too late to be).
    announcement_seen: bool,
    /// A listed segment closed with its parts: PART-TARGET can no longer change.
    parts_listed: bool,
}

/// Every part other than the last of its segment and those starting with a keyframe
/// (INDEPENDENT=YES) lasts at least this share of PART-TARGET, in percent (RFC 8216bis 4.4.4.9).
pub const PART_MIN_PERCENT: u64 = 85;

/// Timestamp jitter allowed for when deciding whether one more frame still fits a part, so that
/// parts stay within the part target, and added to a part target measured from the stream.
pub const PART_JITTER_MS: u64 = 5;
/// Gap used for a sample whose successor never comes (the stream ended or jumped).
const FALLBACK_GAP_MS: u64 = 33;
/// A successor further away than this is a jump in the timeline, not a sample duration.
const MAX_GAP_MS: u64 = 10_000;

impl LlPackager {
    /// A packager with no track configured yet.
    pub fn new(config: LlPackagerConfig) -> Self {
        LlPackager {
            config,
            video_config: None,
            audio_config: None,
            open: None,
            last_init: None,
            pending_video: None,
            pending_audio: None,
            video_gap_ms: FALLBACK_GAP_MS,
            audio_gap_ms: FALLBACK_GAP_MS,
            left_out_ms: [None; 2],
            declared_frame_ms: None,
            provisional_target_ms: None,
            locked_target_ms: None,
            timing: FrameTiming::default(),
            announcement_seen: false,
            parts_listed: false,
        }
    }

    /// The stream's PART-TARGET in milliseconds, fixed when the node's first segment closes and
    /// constant from then on, as RFC 8216bis requires; no playlist lists a part before (a
    /// playlist is served once it lists a complete segment).
    ///
    /// While the first segment is open it is provisional, from the configured target `c` and
    /// the interval `d` the stream declares for the frames that time parts (video frames at
    /// the `onMetaData` `framerate`; in an audio-only stream, AAC frames at the sample rate of
    /// its sequence header): with `k` the whole frames that fit `c` less twice
    /// [`PART_JITTER_MS`] (timestamps are rounded to whole milliseconds), `c` itself when `k`
    /// frames fill at least 85 % of it, otherwise `k` frames plus that jitter allowance, and
    /// one frame plus it when not even one fits (under ~3 fps at 350 ms); without a declared
    /// interval, `c`. When the first segment closes, the frame intervals measured in it fix
    /// the target: the provisional one when its 15 % window (between 85 % of the target and
    /// the target) holds the widest interval; for regular frames the fit above with the
    /// measured mean interval; for a variable frame rate the smallest multiple of `c` whose
    /// window holds the widest interval (at most [`MAX_PART_TARGET_MS`](super::MAX_PART_TARGET_MS)),
    /// so that every part keeps the rules. When that differs from the provisional target, the
    /// first segment's parts are withdrawn ([`LlEvent::PartsWithdrawn`]) and it is listed
    /// whole.
    ///
    /// A relay takes the origin's target instead, from the `onStreamrHlsTiming` data message
    /// ([`HlsTiming`]) the origin's hub sends before the first frame (or, for a relay that
    /// joined during the origin's first segment, right after the frame that closed it): it
    /// replaces a target fixed from the relay's own measurement as long as no listed segment
    /// closed with parts, and withdraws the parts of the open segment when any were cut for
    /// another target (that segment is listed whole). Without an announcement (an older
    /// origin) the relay measures its own first segment (cut where it joined, not listed).
    pub fn part_target_ms(&self) -> u32 {
        self.locked_target_ms
            .or(self.provisional_target_ms)
            .unwrap_or_else(|| self.derived_part_target_ms())
    }

    /// True once the part target is fixed for the stream's life.
    pub fn part_target_fixed(&self) -> bool {
        self.locked_target_ms.is_some()
    }

    /// Takes the PART-TARGET an upstream announced (see [`LlPackager::part_target_ms`]);
    /// later announcements, and one that comes after a listed segment closed with parts, are
    /// ignored. Returns whether the target is now `target_ms`.
    fn adopt_part_target(&mut self, target_ms: u32, events: &mut Vec<LlEvent>) -> bool {
        if std::mem::replace(&mut self.announcement_seen, true) || self.parts_listed {
            return self.part_target_ms() == target_ms;
        }
        let before = self.part_target_ms();
        self.locked_target_ms = Some(target_ms);
        if before == target_ms {
            return true;
        }
        if let Some(open) = self.open.as_mut() {
            // Parts decided under the other target (a closed one, or frames of the open one
            // past its first) are not the upstream's.
            let decided = !open.parts.is_empty()
                || open
                    .part
                    .as_ref()
                    .is_some_and(|p| !p.video.samples.is_empty() || !p.audio.samples.is_empty());
            if decided && open.listed && !open.withdrawn {
                open.withdrawn = true;
                // A segment not reported yet is reported withdrawn (`announce`).
                if open.announced {
                    events.push(LlEvent::PartsWithdrawn {
                        sequence: open.sequence,
                    });
                }
            }
        }
        true
    }

    fn derived_part_target_ms(&self) -> u32 {
        let frame_ms = if self.video_config.is_some() {
            self.declared_frame_ms
        } else {
            self.audio_config.as_ref().and_then(aac_frame_ms)
        };
        match frame_ms {
            Some(frame_ms) => fit_to_frames(self.config.part_target_ms, frame_ms),
            None => self.config.part_target_ms.max(1),
        }
    }

    /// The configuration.
    pub fn config(&self) -> LlPackagerConfig {
        self.config
    }

    /// Feeds one tag, already fed to the stream's MPEG-TS segmenter, with the segment that
    /// segmenter has open now. Tags of codecs fMP4 carries here (H.264, HEVC, AV1, AAC, Opus) are
    /// packaged; others are ignored.
    pub fn push(
        &mut self,
        tag: &FlvTag,
        segment: Option<OpenSegmentInfo>,
    ) -> Result<Vec<LlEvent>, Fmp4Error> {
        let mut events = Vec::new();
        let kind = match tag.tag_type {
            FlvTagType::Audio => Some(MediaKind::Audio),
            FlvTagType::Video => Some(MediaKind::Video),
            FlvTagType::ScriptData => None,
        };
        let kind = match kind {
            Some(kind) => kind,
            None => {
                if let Some(frame_ms) = declared_frame_ms(tag) {
                    self.declared_frame_ms = Some(frame_ms);
                }
                if let Some(target) = HlsTiming::decode(&tag.data).and_then(|t| t.part_target_ms) {
                    self.adopt_part_target(target, &mut events);
                }
                return Ok(events);
            }
        };
        let Ok(info) = classify(kind, &tag.data) else {
            return Ok(events);
        };
        let payload = tag.data.slice(info.payload_offset.min(tag.data.len())..);
        if info.packet == PacketKind::SequenceHeader {
            let config = match info.codec {
                Codec::H264 => TrackConfig::avc(&payload)?,
                Codec::Hevc => TrackConfig::hevc(&payload)?,
                Codec::Av1 => TrackConfig::av1(&payload)?,
                Codec::Aac => TrackConfig::aac(&payload)?,
                Codec::Opus => TrackConfig::opus(&payload)?,
                _ => return Ok(events),
            };
            match kind {
                MediaKind::Video => self.video_config = Some(config),
                MediaKind::Audio => {
                    self.audio_config = Some(config);
                    self.take_audio_config(segment)?;
                }
            }
            return Ok(events);
        }
        if info.packet != PacketKind::CodedFrame {
            return Ok(events);
        }
        let timestamp = u64::from(tag.timestamp);
        let Some(segment) = segment else {
            self.close(None, &mut events)?;
            self.time_left_out(kind, timestamp, true);
            return Ok(events);
        };
        self.time_left_out(kind, timestamp, false);
        let segment_changed = self.open.as_ref().is_some_and(|open| {
            open.sequence != segment.sequence || open.start_ms != segment.start_timestamp_ms
        });
        if let Some(open) = self.open.as_mut().filter(|_| !segment_changed) {
            open.max_end_ms = open.start_ms.saturating_add(segment.max_duration_ms.max(1));
        }
        let past_limit = self
            .open
            .as_ref()
            .is_some_and(|open| timestamp > open.max_end_ms);
        let jumps = self.jumps_forward(timestamp);
        if segment_changed && (jumps || past_limit) {
            // The timeline jumped forward to this frame, or it comes after the longest the
            // segment may last (a stalled video track): the MPEG-TS segmenter cut at it after
            // ending the segment before where its media ends, and so does this one, its newest
            // samples lasting their track's last interval (never past the limit), not the gap.
            // Both renditions' segments then last the same, which the target duration derived
            // from the first one holds.
            let driving_video = self.open.as_ref().is_some_and(|o| o.has_video);
            let driving_dts = if driving_video {
                self.pending_video.as_ref()
            } else {
                self.pending_audio.as_ref()
            }
            .map(|p| p.dts_ms)
            .filter(|_| !jumps);
            self.close(None, &mut events)?;
            // A stalled frame still came at the interval to its successor (a jump is no
            // interval): the next sample's expected duration follows the frames alone, as on
            // a node whose segment started later and took the whole interval.
            if let Some(dts) = driving_dts {
                let gap_ms = if driving_video {
                    &mut self.video_gap_ms
                } else {
                    &mut self.audio_gap_ms
                };
                *gap_ms = gap(dts, timestamp, *gap_ms);
            }
        } else if segment_changed {
            // The MPEG-TS segmenter cut at this frame: the driving track's newest sample ends here,
            // but never past the longest the segment may last. A frame that far on (a GOP or a
            // timeline gap longer than the target duration) comes after a discontinuity, and
            // the segment before it ends at its limit, so its EXTINF rounds to the target at most.
            let end = self
                .open
                .as_ref()
                .map_or(timestamp, |open| timestamp.min(open.max_end_ms));
            if kind == MediaKind::Video || self.open.as_ref().is_some_and(|o| !o.has_video) {
                self.split_before_pending(end, &mut events)?;
            }
            let driving_video = self.open.as_ref().is_some_and(|o| o.has_video);
            let driving_dts = if driving_video {
                self.pending_video.as_ref()
            } else {
                self.pending_audio.as_ref()
            }
            .map(|p| p.dts_ms);
            self.flush_driving(end)?;
            // A sample cut short at the segment's limit (which depends on where this node
            // started the segment) still came at the interval to its successor: the next
            // sample's expected duration follows the frames alone.
            if let Some(dts) = driving_dts.filter(|_| end < timestamp) {
                let gap_ms = if driving_video {
                    &mut self.video_gap_ms
                } else {
                    &mut self.audio_gap_ms
                };
                *gap_ms = gap(dts, timestamp, *gap_ms);
            }
            self.close(Some(end), &mut events)?;
        }
        if self.open.is_none() {
            self.start(segment, timestamp)?;
        }
        let Some(open) = self.open.as_ref() else {
            return Ok(events);
        };
        let is_video = kind == MediaKind::Video;
        let carried = if is_video {
            open.has_video
                && open.video_config == self.video_config
                && matches!(
                    (&self.video_config, info.codec),
                    (Some(TrackConfig::Avc { .. }), Codec::H264)
                        | (Some(TrackConfig::Hevc { .. }), Codec::Hevc)
                        | (Some(TrackConfig::Av1 { .. }), Codec::Av1)
                )
        } else {
            open.has_audio
                && open.audio_config == self.audio_config
                && matches!(
                    (&self.audio_config, info.codec),
                    (Some(TrackConfig::Aac { .. }), Codec::Aac)
                        | (Some(TrackConfig::Opus { .. }), Codec::Opus)
                )
        };
        if !carried {
            return Ok(events);
        }
        let driving = is_video || !open.has_video;
        let data = match info.codec {
            // ISOBMFF AV1 samples carry no temporal delimiter.
            Codec::Av1 => without_temporal_delimiters(payload),
            _ => payload,
        };
        let sample = Pending {
            dts_ms: timestamp,
            cts_ms: i64::from(info.composition_time),
            sync: !is_video || info.is_keyframe,
            data,
        };
        if driving {
            self.split_before_pending(timestamp, &mut events)?;
            let part_start = self
                .open
                .as_ref()
                .and_then(|open| open.part.as_ref())
                .map(|p| p.start_ms);
            // This frame's duration is not known before its successor: expect the interval that
            // just ended (known from the second frame on) or, failing that, the last one.
            let (pending, last_gap) = if is_video {
                (&self.pending_video, self.video_gap_ms)
            } else {
                (&self.pending_audio, self.audio_gap_ms)
            };
            let interval = pending
                .as_ref()
                .and_then(|p| timestamp.checked_sub(p.dts_ms))
                .filter(|gap| *gap > 0 && *gap <= MAX_GAP_MS);
            if let Some(interval) = interval.filter(|_| self.locked_target_ms.is_none()) {
                self.timing.record(interval);
            }
            let gap = interval.unwrap_or(last_gap);
            let target = u64::from(self.part_target_ms());
            let part_independent = self
                .open
                .as_ref()
                .and_then(|open| open.part.as_ref())
                .is_some_and(|p| p.independent);
            // Full when this frame would take the part past the target, if it lasts as long as
            // the interval before it. A part that would be left under 85 % of the target (and is
            // not independent) goes on instead: when the frame does take it past the target,
            // the next frame tells, and the part is split before it (`split_before_pending`).
            let full = part_start.is_some_and(|start| {
                let elapsed = timestamp.saturating_sub(start);
                elapsed.saturating_add(gap).saturating_add(PART_JITTER_MS) > target
                    && (part_independent
                        || elapsed.saturating_mul(100) >= target.saturating_mul(PART_MIN_PERCENT))
            });
            // A keyframe inside a segment starts a new (independent) part when the part before it
            // is long enough to end there: a part that is neither its segment's last nor
            // independent lasts at least 85 % of PART-TARGET. Otherwise the part goes on past it.
            let keyframe_cut = is_video
                && info.is_keyframe
                && part_start.is_some_and(|start| {
                    timestamp.saturating_sub(start).saturating_mul(100)
                        >= target.saturating_mul(PART_MIN_PERCENT)
                });
            if part_start.is_none() || full || keyframe_cut {
                self.flush_driving(timestamp)?;
                self.close_part(timestamp, false, &mut events)?;
                if let Some(open) = self.open.as_mut() {
                    open.part = Some(OpenPart {
                        start_ms: timestamp,
                        independent: sample.sync,
                        video: Run::default(),
                        audio: Run::default(),
                    });
                }
            } else {
                self.flush_driving(timestamp)?;
            }
            if is_video {
                self.pending_video = Some(sample);
            } else {
                self.pending_audio = Some(sample);
            }
        } else {
            self.flush_audio(timestamp)?;
            self.pending_audio = Some(sample);
        }
        Ok(events)
    }

    /// The driving track's newest sample, held back for its successor, turns out to end at
    /// `next_ms`: when that takes the open part past PART-TARGET (its interval was longer than
    /// the one before it, as in a variable frame rate), the part ends before the sample and the
    /// sample starts the next part, as long as the part left keeps the 85 % rule (or is
    /// independent). A function of the frames' timestamps alone, so every node splits alike.
    fn split_before_pending(
        &mut self,
        next_ms: u64,
        events: &mut Vec<LlEvent>,
    ) -> Result<(), Fmp4Error> {
        let target = u64::from(self.part_target_ms());
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        let Some(part) = open.part.as_ref() else {
            return Ok(());
        };
        let pending = if open.has_video {
            &self.pending_video
        } else {
            &self.pending_audio
        };
        let Some((dts, sync)) = pending.as_ref().map(|p| (p.dts_ms, p.sync)) else {
            return Ok(());
        };
        let start = part.start_ms;
        if next_ms.saturating_sub(start) <= target || dts <= start {
            return Ok(());
        }
        let keeps_85 = part.independent
            || dts.saturating_sub(start).saturating_mul(100)
                >= target.saturating_mul(PART_MIN_PERCENT);
        if !keeps_85 {
            return Ok(());
        }
        self.close_part(dts, false, events)?;
        if let Some(open) = self.open.as_mut() {
            open.part = Some(OpenPart {
                start_ms: dts,
                independent: sync,
                video: Run::default(),
                audio: Run::default(),
            });
        }
        Ok(())
    }

    /// Withdraws the parts of the open segment (see [`LlEvent::PartsWithdrawn`]): a relay's
    /// frames that follow no longer continue the upstream's without a gap, so its parts from
    /// here on are not the upstream's. Nothing when no listed segment is open or its parts
    /// are withdrawn already. A segment not reported yet is reported first
    /// ([`LlEvent::SegmentStarted`]), so that it can be marked; its init segment is final
    /// from then on.
    pub fn withdraw_open_parts(&mut self) -> Vec<LlEvent> {
        let mut events = Vec::new();
        let Some(open) = self.open.as_mut() else {
            return events;
        };
        if !open.listed || std::mem::replace(&mut open.withdrawn, true) {
            return events;
        }
        if open.announced {
            events.push(LlEvent::PartsWithdrawn {
                sequence: open.sequence,
            });
        } else {
            self.announce(&mut events);
        }
        events
    }

    /// The open segment's parts are withdrawn but the segment is not reported yet: its
    /// [`LlEvent::PartsWithdrawn`] follows its [`LlEvent::SegmentStarted`], with its first part.
    pub(crate) fn withdrawal_unreported(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|open| open.listed && open.withdrawn && !open.announced)
    }

    /// Closes the open segment where its media ends (the publisher left or jumped; the stream
    /// ends): its newest samples get the last frame interval as their duration.
    pub fn flush(&mut self) -> Result<Vec<LlEvent>, Fmp4Error> {
        let mut events = Vec::new();
        self.close(None, &mut events)?;
        Ok(events)
    }

    /// A new audio configuration (or a first one) while a segment is open: its init segment
    /// takes it when nothing of the segment needs the one it describes, so that its audio is
    /// carried from the configuration's first frame rather than from the next segment on (an
    /// encoder restarted with new settings over one connection sends the new video sequence
    /// header and keyframe, which open a segment, then the audio one just before its first
    /// audio frame, a few video frames later). That is while no part of the segment is cut
    /// (none was published with the init segment it has), the segment carries no audio
    /// (an audio frame of the configuration before, held back for its successor, is left out:
    /// no init segment of the segment describes it), its frames are timed by video, and the
    /// MPEG-TS segmenter goes on with the segment. Otherwise the audio of the new
    /// configuration waits for the next segment and its init segment. A function of the
    /// stream's frames alone, so every node cuts the same.
    fn take_audio_config(&mut self, segment: Option<OpenSegmentInfo>) -> Result<(), Fmp4Error> {
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        let same_segment = segment.is_some_and(|segment| {
            segment.sequence == open.sequence && segment.start_timestamp_ms == open.start_ms
        });
        let carries_audio = open
            .part
            .as_ref()
            .is_some_and(|part| !part.audio.samples.is_empty());
        if open.audio_config == self.audio_config
            || !same_segment
            || !open.has_video
            || !open.parts.is_empty()
            || open.announced
            || carries_audio
        {
            return Ok(());
        }
        let tracks: Vec<TrackConfig> = open
            .video_config
            .iter()
            .chain(self.audio_config.iter())
            .cloned()
            .collect();
        let init = InitSegment::new(&tracks)?;
        let ts_discontinuity = segment.is_some_and(|segment| segment.discontinuity);
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.ts_discontinuity |= ts_discontinuity;
        open.discontinuity = open.ts_discontinuity
            || open
                .previous_init
                .is_some_and(|previous| previous != init.hash);
        open.has_audio = true;
        open.audio_config = self.audio_config.clone();
        open.init = init.clone();
        self.last_init = Some(init);
        self.pending_audio = None;
        Ok(())
    }

    /// Reports the open segment ([`LlEvent::SegmentStarted`], then [`LlEvent::PartsWithdrawn`]
    /// when its parts were withdrawn before) unless it was already or is not listed: from here
    /// on its init segment is final.
    fn announce(&mut self, events: &mut Vec<LlEvent>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if !open.listed || std::mem::replace(&mut open.announced, true) {
            return;
        }
        events.push(LlEvent::SegmentStarted {
            sequence: open.sequence,
            discontinuity: open.discontinuity,
            init: open.init.clone(),
            start_ms: open.start_ms,
        });
        if open.withdrawn {
            events.push(LlEvent::PartsWithdrawn {
                sequence: open.sequence,
            });
        }
    }

    fn start(&mut self, segment: OpenSegmentInfo, timestamp: u64) -> Result<(), Fmp4Error> {
        let tracks: Vec<TrackConfig> = self
            .video_config
            .iter()
            .chain(self.audio_config.iter())
            .cloned()
            .collect();
        if tracks.is_empty() {
            return Ok(());
        }
        let init = InitSegment::new(&tracks)?;
        if self.locked_target_ms.is_none() && self.provisional_target_ms.is_none() {
            self.provisional_target_ms = Some(self.derived_part_target_ms());
        }
        let previous_init = self.last_init.as_ref().map(|last| last.hash);
        let changed = previous_init.is_some_and(|last| last != init.hash);
        let discontinuity = segment.discontinuity || changed;
        self.last_init = Some(init.clone());
        // A video sample cannot outlive its segment (the cut flushed it); audio held back for its
        // successor goes into this segment's first part.
        self.pending_video = None;
        // Reported with its first part (`announce`), once its init segment is final.
        self.open = Some(OpenLl {
            sequence: segment.sequence,
            start_ms: timestamp,
            discontinuity,
            init,
            has_video: self.video_config.is_some(),
            has_audio: self.audio_config.is_some(),
            video_config: self.video_config.clone(),
            audio_config: self.audio_config.clone(),
            parts: Vec::new(),
            part: None,
            listed: segment.listed,
            withdrawn: false,
            announced: false,
            previous_init,
            ts_discontinuity: segment.discontinuity,
            jump_ms: segment.jump_ms.max(1),
            max_end_ms: timestamp.saturating_add(segment.max_duration_ms.max(1)),
        });
        Ok(())
    }

    /// A frame of `kind` at `timestamp` arrived, `left_out` of every segment or not: the
    /// track's newest frame no segment took ends here, and its duration becomes the track's
    /// last gap, as its sample's would on a node whose segment took it (one that started its
    /// segment at a later keyframe). The durations of the samples that follow then depend on
    /// the frames alone.
    fn time_left_out(&mut self, kind: MediaKind, timestamp: u64, left_out: bool) {
        let (slot, gap_ms) = match kind {
            MediaKind::Audio => (&mut self.left_out_ms[0], &mut self.audio_gap_ms),
            MediaKind::Video => (&mut self.left_out_ms[1], &mut self.video_gap_ms),
        };
        if let Some(last) = slot.take() {
            *gap_ms = gap(last, timestamp, *gap_ms);
        }
        if left_out {
            *slot = Some(timestamp);
        }
    }

    /// True when a frame at `timestamp` jumps forward in the timeline of the open segment, as
    /// the MPEG-TS segmenter tells one: it comes more than the longest a frame may last
    /// ([`OpenSegmentInfo::jump_ms`]) after the newest sample of the track that times the
    /// segment.
    fn jumps_forward(&self, timestamp: u64) -> bool {
        let Some(open) = self.open.as_ref() else {
            return false;
        };
        let newest = if open.has_video {
            &self.pending_video
        } else {
            &self.pending_audio
        };
        newest
            .as_ref()
            .is_some_and(|sample| timestamp > sample.dts_ms.saturating_add(open.jump_ms))
    }

    /// Moves the driving track's pending sample into the open part, ending at `next_ms`.
    fn flush_driving(&mut self, next_ms: u64) -> Result<(), Fmp4Error> {
        let has_video = self.open.as_ref().is_some_and(|o| o.has_video);
        if has_video {
            self.flush_video(next_ms)
        } else {
            self.flush_audio(next_ms)
        }
    }

    fn flush_video(&mut self, next_ms: u64) -> Result<(), Fmp4Error> {
        if let Some(sample) = self.pending_video.take() {
            let gap = gap(sample.dts_ms, next_ms, self.video_gap_ms);
            self.video_gap_ms = gap;
            self.append(true, sample, gap);
        }
        Ok(())
    }

    fn flush_audio(&mut self, next_ms: u64) -> Result<(), Fmp4Error> {
        if let Some(sample) = self.pending_audio.take() {
            let gap = gap(sample.dts_ms, next_ms, self.audio_gap_ms);
            self.audio_gap_ms = gap;
            self.append(false, sample, gap);
        }
        Ok(())
    }

    fn append(&mut self, video: bool, sample: Pending, gap_ms: u64) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        // The timescale of the init segment the fragment is read with.
        let timescale = match if video {
            &open.video_config
        } else {
            &open.audio_config
        } {
            Some(config) => u64::from(config.timescale()),
            None => return,
        };
        let Some(part) = open.part.as_mut() else {
            return;
        };
        let run = if video {
            &mut part.video
        } else {
            &mut part.audio
        };
        let to_ticks = |ms: u64| ms.saturating_mul(timescale) / 1_000;
        let end = sample.dts_ms.saturating_add(gap_ms);
        let duration = to_ticks(end).saturating_sub(to_ticks(sample.dts_ms));
        let composition = (sample.cts_ms.saturating_mul(timescale as i64)) / 1_000;
        run.base_ms.get_or_insert(sample.dts_ms);
        run.samples.push(Sample {
            duration: u32::try_from(duration).unwrap_or(u32::MAX),
            composition_offset: i32::try_from(composition).unwrap_or(0),
            is_sync: sample.sync,
            data: sample.data,
        });
    }

    /// Closes the open part (if it has samples), ending at `end_ms`; `last` when it ends its
    /// segment.
    fn close_part(
        &mut self,
        end_ms: u64,
        last: bool,
        events: &mut Vec<LlEvent>,
    ) -> Result<(), Fmp4Error> {
        // The audio frame that starts before the cut ends in this part (with the track's last
        // frame interval), so that a part's audio reaches as far as its video: a player's
        // buffered range is where both tracks are, and one ending a frame short of the part's
        // end leaves it inside the segment it has just loaded, loading its parts again.
        let audio_follows = self.open.as_ref().is_some_and(|o| o.has_video);
        if let Some(dts) = self
            .pending_audio
            .as_ref()
            .map(|p| p.dts_ms)
            .filter(|dts| audio_follows && *dts < end_ms)
        {
            self.flush_audio(dts.saturating_add(self.audio_gap_ms))?;
        }
        let target = u64::from(self.part_target_ms());
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let video_scale = open.video_config.as_ref().map_or(1, |c| c.timescale());
        let audio_scale = open.audio_config.as_ref().map_or(1, |c| c.timescale());
        let Some(part) = open.part.take() else {
            return Ok(());
        };
        let ticks = |ms: u64, scale: u32| ms.saturating_mul(u64::from(scale)) / 1_000;
        let runs = [
            TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: ticks(part.video.base_ms.unwrap_or(0), video_scale),
                samples: &part.video.samples,
            },
            TrackRun {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: ticks(part.audio.base_ms.unwrap_or(0), audio_scale),
                samples: &part.audio.samples,
            },
        ];
        if runs.iter().all(|r| r.samples.is_empty()) {
            return Ok(());
        }
        // Numbered by the part's start on the stream clock: increasing, and equal on every node.
        let number = (part.start_ms as u32).wrapping_add(1);
        let bytes = Bytes::from(fragment(number, &runs)?);
        let part = Part {
            sequence: open.sequence,
            index: u32::try_from(open.parts.len()).unwrap_or(u32::MAX),
            duration_ms: end_ms.saturating_sub(part.start_ms),
            independent: part.independent,
            hash: blake3::hash(&bytes),
            bytes,
        };
        // The segment's first part: its init segment is final.
        self.announce(events);
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if open.listed && !open.withdrawn && !keeps_part_rules(&part, target, last) {
            open.withdrawn = true;
            events.push(LlEvent::PartsWithdrawn {
                sequence: open.sequence,
            });
        }
        open.parts.push(part.clone());
        if open.listed {
            events.push(LlEvent::PartReady(part));
        }
        Ok(())
    }

    /// Closes the open segment. `cut_at` is the first frame of the next segment (whose arrival
    /// already completed the driving track's newest sample); without it the segment ends where
    /// its media ends, and every held-back sample is flushed with its track's last gap.
    fn close(&mut self, cut_at: Option<u64>, events: &mut Vec<LlEvent>) -> Result<(), Fmp4Error> {
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        let has_video = open.has_video;
        let mut end = open.part.as_ref().map_or(open.start_ms, |p| p.start_ms);
        if let Some(cut_at) = cut_at {
            end = cut_at;
        } else {
            // The newest samples last their track's last interval, but never past the longest
            // the segment may last (as the MPEG-TS segment cut at the same frames ends).
            let cap = open.max_end_ms;
            let ends = |p: &Pending, gap: u64| {
                p.dts_ms
                    .saturating_add(gap)
                    .min(cap)
                    .max(p.dts_ms.saturating_add(1))
            };
            let video_end = self
                .pending_video
                .as_ref()
                .map(|p| ends(p, self.video_gap_ms));
            let audio_end = self
                .pending_audio
                .as_ref()
                .map(|p| ends(p, self.audio_gap_ms));
            let driving = if has_video { video_end } else { audio_end };
            end = driving.unwrap_or(end);
            // Samples held to the segment's limit tell nothing of the interval frames come at:
            // the tracks' last gaps stay as they were.
            let gaps = (self.video_gap_ms, self.audio_gap_ms);
            if let Some(video_end) = video_end {
                self.flush_video(video_end)?;
            }
            if let Some(audio_end) = audio_end {
                self.flush_audio(audio_end)?;
            }
            (self.video_gap_ms, self.audio_gap_ms) = gaps;
        }
        self.close_part(end, true, events)?;
        // A segment without parts is reported as it completes.
        self.announce(events);
        let provisional = self.part_target_ms();
        let fixed = self.fix_part_target();
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        if fixed.is_some_and(|target| target != provisional) && open.listed && !open.withdrawn {
            // Its parts were cut for another target than the playlist declares.
            open.withdrawn = true;
            events.push(LlEvent::PartsWithdrawn {
                sequence: open.sequence,
            });
        }
        let mut bytes = BytesMut::with_capacity(open.parts.iter().map(|p| p.bytes.len()).sum());
        for part in &open.parts {
            bytes.extend_from_slice(&part.bytes);
        }
        let bytes = bytes.freeze();
        let duration_ms = open.parts.iter().map(|p| p.duration_ms).sum();
        if !open.listed {
            return Ok(());
        }
        self.parts_listed |= !open.withdrawn && !open.parts.is_empty();
        events.push(LlEvent::SegmentReady(LlSegment {
            sequence: open.sequence,
            start_timestamp_ms: open.start_ms,
            duration_ms,
            discontinuity: open.discontinuity,
            init: open.init,
            part_hashes: open.parts.iter().map(|p| p.hash).collect(),
            hash: blake3::hash(&bytes),
            bytes,
        }));
        Ok(())
    }
}

impl LlPackager {
    /// Fixes the part target from the frame intervals measured so far, unless it is fixed
    /// already; returns it when fixed now.
    fn fix_part_target(&mut self) -> Option<u32> {
        if self.locked_target_ms.is_some() {
            return None;
        }
        let provisional = self.part_target_ms();
        // Without video every frame is a sync sample and starts an independent part.
        let all_sync = self
            .open
            .as_ref()
            .map_or(self.video_config.is_none(), |open| !open.has_video);
        let target = self
            .timing
            .part_target_ms(self.config.part_target_ms, provisional, all_sync);
        self.locked_target_ms = Some(target);
        Some(target)
    }
}

/// Whether `part` keeps RFC 8216bis 4.4.4.9 under a PART-TARGET of `target_ms`: at most the
/// target, and at least [`PART_MIN_PERCENT`] of it unless it is independent or its segment's
/// `last`.
fn keeps_part_rules(part: &Part, target_ms: u64, last: bool) -> bool {
    part.duration_ms <= target_ms
        && (last
            || part.independent
            || part.duration_ms.saturating_mul(100) >= target_ms.saturating_mul(PART_MIN_PERCENT))
}

/// The duration of a sample at `dts_ms` followed by one at `next_ms`, or `fallback` when the
/// next one is not after it or too far (a jump in the timeline).
fn gap(dts_ms: u64, next_ms: u64, fallback: u64) -> u64 {
    match next_ms.checked_sub(dts_ms) {
        Some(gap) if gap > 0 && gap <= MAX_GAP_MS => gap,
        _ => fallback.max(1),
    }
}

/// The interval of an AAC track's frames (1024 samples), in milliseconds.
fn aac_frame_ms(config: &TrackConfig) -> Option<f64> {
    match config {
        TrackConfig::Aac { .. } => Some(1_024_000.0 / f64::from(config.timescale())),
        _ => None,
    }
}

/// The video frame interval (ms) an `onMetaData` script tag declares with `framerate`, with or
/// without the `@setDataFrame` wrapper a publisher sends it in.
fn declared_frame_ms(tag: &FlvTag) -> Option<f64> {
    let values = tag.script_values()?.ok()?;
    let mut values = values
        .iter()
        .skip_while(|value| value.as_str() == Some("@setDataFrame"));
    if values.next()?.as_str()? != "onMetaData" {
        return None;
    }
    let rate = values.next()?.property("framerate")?.as_number()?;
    (rate.is_finite() && (0.01..=1_000.0).contains(&rate)).then(|| 1_000.0 / rate)
}
