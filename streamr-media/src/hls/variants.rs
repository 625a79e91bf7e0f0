//! What a stream's renditions carry, for its multivariant playlist: the codec of each track (as
//! an RFC 6381 string), which rendition can carry it, the picture size and the frame rate.

use std::collections::VecDeque;

use crate::flv::tag::{classify, Codec, MediaKind, PacketKind};
use crate::flv::{FlvTag, FlvTagType};
use crate::fmp4::TrackConfig;

/// The RFC 6381 string of MP3 audio (MPEG-1/2 layer III, ISO/IEC 14496-3 object type 34).
pub const MP3_CODEC: &str = "mp4a.40.34";

/// One of the HLS renditions a node serves for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    /// The legacy MPEG-TS playlist: H.264, HEVC, AAC, MP3.
    MpegTs,
    /// The LL-HLS fMP4/CMAF playlist: H.264, HEVC, AV1, AAC, Opus.
    Fmp4,
}

/// One track: its codec string and which renditions carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Track {
    codec: String,
    in_ts: bool,
    in_fmp4: bool,
}

impl Track {
    fn carried_by(&self, rendition: Rendition) -> bool {
        match rendition {
            Rendition::MpegTs => self.in_ts,
            Rendition::Fmp4 => self.in_fmp4,
        }
    }

    /// Some rendition carries it: a track no HLS rendition can carry (VP9, Speex) is left out
    /// of every one and does not count against any.
    fn in_hls(&self) -> bool {
        self.in_ts || self.in_fmp4
    }
}

/// The tracks of one stream, from its FLV tags (sans-IO).
#[derive(Debug, Default)]
pub struct StreamTracks {
    video: Option<Track>,
    audio: Option<Track>,
    resolution: Option<(u16, u16)>,
    /// Video frames counted since `first_frame_ms`, and the newest one's timestamp.
    frames: u64,
    first_frame_ms: Option<u32>,
    last_frame_ms: u32,
    /// The timestamps of the video frames not yet counted into a listed segment's frame rate
    /// (at most [`RECENT_FRAMES`]).
    recent_frames: VecDeque<u32>,
    /// The frame rate of the newest listed segment ([`StreamTracks::segment_listed`]).
    segment_rate: Option<f64>,
}

/// Video frame timestamps kept for measuring the next listed segment's frame rate: a 12 s
/// segment at 240 fps, and then some.
const RECENT_FRAMES: usize = 4_096;

impl StreamTracks {
    /// No track seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes what `tag` says about the stream: a sequence header sets a track's codec, an MP3
    /// frame the audio track's, a video frame counts toward the frame rate.
    pub fn push(&mut self, tag: &FlvTag) {
        let kind = match tag.tag_type {
            FlvTagType::Audio => MediaKind::Audio,
            FlvTagType::Video => MediaKind::Video,
            _ => return,
        };
        let Ok(info) = classify(kind, &tag.data) else {
            return;
        };
        let payload = tag.data.get(info.payload_offset..).unwrap_or_default();
        match info.packet {
            PacketKind::SequenceHeader => self.configure(kind, info.codec, payload),
            PacketKind::CodedFrame if kind == MediaKind::Audio && info.codec == Codec::Mp3 => {
                self.audio = Some(Track {
                    codec: MP3_CODEC.into(),
                    in_ts: true,
                    in_fmp4: false,
                });
            }
            PacketKind::CodedFrame if kind == MediaKind::Video => self.count_frame(tag.timestamp),
            _ => {}
        }
    }

    fn configure(&mut self, kind: MediaKind, codec: Codec, payload: &[u8]) {
        let config = match codec {
            Codec::H264 => TrackConfig::avc(payload),
            Codec::Hevc => TrackConfig::hevc(payload),
            Codec::Av1 => TrackConfig::av1(payload),
            Codec::Aac => TrackConfig::aac(payload),
            Codec::Opus => TrackConfig::opus(payload),
            _ => {
                // Neither rendition carries it.
                let track = Track {
                    codec: String::new(),
                    in_ts: false,
                    in_fmp4: false,
                };
                match kind {
                    MediaKind::Video => self.video = Some(track),
                    MediaKind::Audio => self.audio = Some(track),
                }
                return;
            }
        };
        let Ok(config) = config else {
            return;
        };
        let track = Track {
            codec: config.codec_string(),
            in_ts: matches!(codec, Codec::H264 | Codec::Hevc | Codec::Aac),
            in_fmp4: true,
        };
        match config {
            TrackConfig::Avc { width, height, .. }
            | TrackConfig::Hevc { width, height, .. }
            | TrackConfig::Av1 { width, height, .. } => {
                self.resolution = (width > 0 && height > 0).then_some((width, height));
                self.video = Some(track);
            }
            _ => self.audio = Some(track),
        }
    }

    fn count_frame(&mut self, timestamp: u32) {
        if self.recent_frames.len() >= RECENT_FRAMES {
            self.recent_frames.pop_front();
        }
        self.recent_frames.push_back(timestamp);
        match self.first_frame_ms {
            Some(_) if timestamp >= self.last_frame_ms => self.frames += 1,
            // The first frame, or a timeline that went back (a republish): count anew.
            _ => {
                self.first_frame_ms = Some(timestamp);
                self.frames = 1;
            }
        }
        self.last_frame_ms = timestamp;
    }

    /// The codec strings of `rendition` (video first), when it carries every track some HLS
    /// rendition can carry; `None` when it would leave one out or carries nothing.
    pub fn codecs(&self, rendition: Rendition) -> Option<Vec<String>> {
        let tracks: Vec<&Track> = [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .filter(|t| t.in_hls())
            .collect();
        if tracks.is_empty() || !tracks.iter().all(|t| t.carried_by(rendition)) {
            return None;
        }
        Some(tracks.iter().map(|t| t.codec.clone()).collect())
    }

    /// The stream has media but MPEG-TS carries none of it (AV1 with Opus): its MPEG-TS
    /// segments would hold only the stream tables.
    pub fn mpeg_ts_carries_nothing(&self) -> bool {
        let tracks = || [&self.video, &self.audio].into_iter().flatten();
        tracks().any(Track::in_hls) && !tracks().any(|t| t.in_ts)
    }

    /// The video track, when some HLS rendition carries it (not VP9).
    fn hls_video(&self) -> Option<&Track> {
        self.video.as_ref().filter(|t| t.in_hls())
    }

    /// The picture size of the video track; `None` when no HLS rendition carries it.
    pub fn resolution(&self) -> Option<(u16, u16)> {
        self.hls_video().and(self.resolution)
    }

    /// A segment was listed: it holds the video frames from `start_ms` (its first frame's
    /// timestamp) for `duration_ms`. Its frame count over its duration becomes the stream's
    /// frame rate ([`StreamTracks::frame_rate`]).
    pub fn segment_listed(&mut self, start_ms: u64, duration_ms: u64) {
        let end_ms = start_ms.saturating_add(duration_ms);
        let in_segment = |ts: &u32| (start_ms..end_ms).contains(&u64::from(*ts));
        let frames = self
            .recent_frames
            .iter()
            .filter(|ts| in_segment(ts))
            .count();
        // Frames of earlier segments are no longer needed; those of a timeline that started
        // over (below the segment) are dropped too.
        self.recent_frames.retain(|ts| u64::from(*ts) >= end_ms);
        if frames > 0 && duration_ms > 0 {
            self.segment_rate = Some(frames as f64 * 1_000.0 / duration_ms as f64);
        }
    }

    /// Video frames per second: the frames of the newest listed segment over its duration
    /// ([`StreamTracks::segment_listed`]), a function of the stream alone, so every node
    /// listing that segment declares the same rate (a 30 fps stream's 4 s segment holds 120
    /// frames: 30.000). Before the first listed segment, measured over the frames seen (at
    /// least two, a millisecond apart). `None` when no HLS rendition carries the video track
    /// (VP9: the renditions are then audio only, and FRAME-RATE would describe video they do
    /// not have).
    pub fn frame_rate(&self) -> Option<f64> {
        self.hls_video()?;
        if let Some(rate) = self.segment_rate {
            return Some(rate);
        }
        let first = self.first_frame_ms?;
        let span = self.last_frame_ms.checked_sub(first).filter(|s| *s > 0)?;
        if self.frames < 2 {
            return None;
        }
        Some((self.frames - 1) as f64 * 1_000.0 / f64::from(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn tag(tag_type: FlvTagType, timestamp: u32, data: Vec<u8>) -> FlvTag {
        FlvTag {
            tag_type,
            timestamp,
            stream_id: 0,
            data: Bytes::from(data),
        }
    }

    /// AAC LC, 44.1 kHz stereo.
    fn aac_header() -> FlvTag {
        tag(FlvTagType::Audio, 0, vec![0xAF, 0, 0x12, 0x10])
    }

    /// An Enhanced RTMP Opus sequence header (`OpusHead`, stereo, 48 kHz).
    fn opus_header() -> FlvTag {
        let mut data = vec![0x90];
        data.extend_from_slice(b"Opus");
        data.extend_from_slice(b"OpusHead");
        data.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        tag(FlvTagType::Audio, 0, data)
    }

    #[test]
    fn aac_goes_into_both_renditions_and_mp3_into_mpeg_ts_only() {
        let mut tracks = StreamTracks::new();
        tracks.push(&aac_header());
        let both = Some(vec!["mp4a.40.2".to_owned()]);
        assert_eq!(tracks.codecs(Rendition::MpegTs), both);
        assert_eq!(tracks.codecs(Rendition::Fmp4), both);
        let mut mp3 = StreamTracks::new();
        mp3.push(&tag(
            FlvTagType::Audio,
            0,
            vec![0x2F, 0xFF, 0xFB, 0x90, 0x00],
        ));
        assert_eq!(mp3.codecs(Rendition::MpegTs), Some(vec![MP3_CODEC.into()]));
        assert_eq!(mp3.codecs(Rendition::Fmp4), None);
        assert!(!mp3.mpeg_ts_carries_nothing());
    }

    #[test]
    fn opus_is_fmp4_only_and_leaves_mpeg_ts_empty() {
        let mut tracks = StreamTracks::new();
        tracks.push(&opus_header());
        assert_eq!(tracks.codecs(Rendition::MpegTs), None);
        assert_eq!(tracks.codecs(Rendition::Fmp4), Some(vec!["opus".into()]));
        assert!(tracks.mpeg_ts_carries_nothing());
        assert_eq!(StreamTracks::new().codecs(Rendition::Fmp4), None);
        assert!(!StreamTracks::new().mpeg_ts_carries_nothing());
    }

    #[test]
    fn frame_rate_is_measured_from_video_timestamps() {
        let mut tracks = StreamTracks::new();
        // H.264 sequence header (a configuration record too short to parse leaves no track).
        for i in 0..31u32 {
            tracks.push(&tag(
                FlvTagType::Video,
                i * 1_000 / 30,
                vec![0x27, 1, 0, 0, 0, 0],
            ));
        }
        assert_eq!(tracks.frame_rate(), None, "no video track configured");
        tracks.video = Some(Track {
            codec: "avc1.64001f".into(),
            in_ts: true,
            in_fmp4: true,
        });
        let rate = tracks.frame_rate().unwrap();
        assert!((rate - 30.0).abs() < 0.1, "{rate}");
    }

    /// FRAME-RATE must not depend on where a node joined the stream: a relay that saw 30 fps
    /// frames (millisecond timestamps 0, 33, 67, 100, …) from the second one on measured
    /// 30.001 where the origin measured 30.000. Both count the frames of the same listed
    /// segment over its duration instead.
    #[test]
    fn the_frame_rate_of_a_listed_segment_is_the_same_wherever_a_node_joined() {
        let avc = Track {
            codec: "avc1.64001f".into(),
            in_ts: true,
            in_fmp4: true,
        };
        let frame = |i: u32| {
            tag(
                FlvTagType::Video,
                (i * 1_000 + 15) / 30,
                vec![0x17, 1, 0, 0, 0, 0],
            )
        };
        let mut rates = Vec::new();
        for joined_at in [0u32, 1, 7, 29] {
            let mut tracks = StreamTracks::new();
            tracks.video = Some(avc.clone());
            for i in joined_at..=300 {
                tracks.push(&frame(i));
                // The frame at 8 s starts the next segment, which closes the one from 4 s.
                if i == 240 {
                    tracks.segment_listed(4_000, 4_000);
                }
            }
            rates.push(format!("{:.3}", tracks.frame_rate().unwrap()));
        }
        assert_eq!(rates, vec!["30.000"; 4]);
    }

    #[test]
    fn video_no_rendition_carries_gets_no_frame_rate() {
        // VP9 + AAC as FFmpeg 9 publishes it: the renditions carry the AAC track alone.
        let mut tracks = StreamTracks::new();
        let vp9_header = [
            0x90, b'v', b'p', b'0', b'9', 1, 0, 0, 0, 0x00, 0x0b, 0x82, 0x02,
        ];
        tracks.push(&tag(FlvTagType::Video, 0, vp9_header.to_vec()));
        tracks.push(&tag(FlvTagType::Audio, 0, vec![0xAF, 0x00, 0x11, 0x90]));
        for i in 0..25u32 {
            let body = vec![
                if i == 0 { 0x91 } else { 0xA1 },
                b'v',
                b'p',
                b'0',
                b'9',
                0x82,
            ];
            tracks.push(&tag(FlvTagType::Video, i * 40, body));
        }
        assert_eq!(
            tracks.codecs(Rendition::Fmp4),
            Some(vec!["mp4a.40.2".into()])
        );
        assert_eq!(tracks.frame_rate(), None);
        assert_eq!(tracks.resolution(), None);
    }
}
