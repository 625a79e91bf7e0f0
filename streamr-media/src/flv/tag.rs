//! Classification of FLV audio and video tag bodies.
//!
//! An FLV tag body is byte-for-byte the payload of an RTMP audio (type 8) or video (type 9)
//! message, so the same classification serves the relay, the FLV reader and the HLS muxer. It
//! reads only the few header bytes in front of the codec payload: legacy FLV headers (AVC with its
//! packet type and composition time, AAC with its packet type) and Enhanced RTMP headers (a FourCC
//! such as `hvc1`, `av01`, `vp09`, `avc1`, `Opus` or `mp4a` with a packet type).
//!
//! ```
//! use streamr_media::flv::tag::{classify_video, Codec, PacketKind};
//!
//! // A legacy AVC keyframe NALU with a composition time offset of 40 ms.
//! let body = [0x17, 0x01, 0x00, 0x00, 0x28, 0xAA, 0xBB];
//! let info = classify_video(&body).unwrap();
//! assert!(info.is_keyframe);
//! assert_eq!(info.codec, Codec::H264);
//! assert_eq!(info.packet, PacketKind::CodedFrame);
//! assert_eq!(info.composition_time, 40);
//! assert_eq!(&body[info.payload_offset..], &[0xAA, 0xBB]);
//! ```

use thiserror::Error;

/// Whether a tag body carries audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An audio tag (FLV tag type 8, RTMP message type 8).
    Audio,
    /// A video tag (FLV tag type 9, RTMP message type 9).
    Video,
}

/// The codec a tag body is encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC (legacy codec id 7 or Enhanced RTMP FourCC `avc1`).
    H264,
    /// H.265 / HEVC (Enhanced RTMP FourCC `hvc1`, or the widespread legacy codec id 12).
    Hevc,
    /// AV1 (Enhanced RTMP FourCC `av01`).
    Av1,
    /// VP9 (Enhanced RTMP FourCC `vp09`).
    Vp9,
    /// Sorenson H.263 (legacy codec id 2).
    SorensonH263,
    /// Screen video (legacy codec id 3).
    ScreenVideo,
    /// On2 VP6 (legacy codec id 4).
    Vp6,
    /// On2 VP6 with alpha channel (legacy codec id 5).
    Vp6Alpha,
    /// Screen video version 2 (legacy codec id 6).
    ScreenVideo2,
    /// AAC (legacy sound format 10 or Enhanced RTMP FourCC `mp4a`).
    Aac,
    /// MP3 (legacy sound format 2 or 14, or Enhanced RTMP FourCC `.mp3`).
    Mp3,
    /// Opus (Enhanced RTMP FourCC `Opus`).
    Opus,
    /// AC-3 (Enhanced RTMP FourCC `ac-3`).
    Ac3,
    /// E-AC-3 (Enhanced RTMP FourCC `ec-3`).
    Eac3,
    /// FLAC (Enhanced RTMP FourCC `fLaC`).
    Flac,
    /// Speex (legacy sound format 11).
    Speex,
    /// Linear PCM, ADPCM, G.711, Nellymoser or another legacy sound format, by its number.
    LegacyAudio(u8),
    /// A legacy video codec id this module does not name.
    LegacyVideo(u8),
    /// An Enhanced RTMP FourCC this module does not name.
    FourCc([u8; 4]),
}

/// What a tag body carries, independent of the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketKind {
    /// Decoder configuration (AVC/HEVC/AV1 configuration record, AudioSpecificConfig...). A decoder
    /// needs it before any coded frame.
    SequenceHeader,
    /// One coded audio or video frame.
    CodedFrame,
    /// End of sequence marker.
    EndOfSequence,
    /// Enhanced RTMP video metadata (for example HDR colour information), AMF encoded.
    Metadata,
    /// A video info/command frame (frame type 5): not a picture.
    Command,
    /// Enhanced RTMP audio multichannel configuration.
    MultichannelConfig,
}

/// The classification of one audio or video tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagInfo {
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec.
    pub codec: Codec,
    /// What the body carries.
    pub packet: PacketKind,
    /// True for a video keyframe (frame type 1, or 4 "generated keyframe") carrying a coded frame
    /// or a sequence header; a decoder can start here. Always false for audio.
    pub is_keyframe: bool,
    /// Composition time offset in milliseconds (presentation minus decode time); zero when the
    /// format has none.
    pub composition_time: i32,
    /// Offset of the codec payload (NAL units, AAC raw frame, configuration record...) in the body.
    pub payload_offset: usize,
}

impl TagInfo {
    /// True when the body is decoder configuration that must precede coded frames.
    pub fn is_sequence_header(&self) -> bool {
        self.packet == PacketKind::SequenceHeader
    }

    /// True when the body is a coded audio or video frame.
    pub fn is_coded_frame(&self) -> bool {
        self.packet == PacketKind::CodedFrame
    }
}

/// Why a tag body could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TagError {
    /// The body is shorter than the header its first bytes announce.
    #[error("{kind:?} tag body truncated reading {field} at offset {offset}: needs {needed} bytes, has {available}")]
    Truncated {
        /// Audio or video.
        kind: MediaKind,
        /// The header field being read.
        field: &'static str,
        /// Byte offset of that field in the body.
        offset: usize,
        /// Total bytes needed to read the field.
        needed: usize,
        /// Bytes available in the body.
        available: usize,
    },
    /// An Enhanced RTMP packet type this module does not interpret (multitrack, ModEx, reserved).
    #[error(
        "{kind:?} tag body has unsupported Enhanced RTMP packet type {packet_type} at offset 0"
    )]
    UnsupportedPacketType {
        /// Audio or video.
        kind: MediaKind,
        /// The 4-bit packet type.
        packet_type: u8,
    },
    /// An Enhanced RTMP multitrack packet whose AvMultitrackType is not one of the three defined.
    #[error(
        "{kind:?} multitrack packet has unknown multitrack type {multitrack_type} at offset 1"
    )]
    UnknownMultitrackType {
        /// Audio or video.
        kind: MediaKind,
        /// The 4-bit AvMultitrackType.
        multitrack_type: u8,
    },
    /// A legacy AVC/AAC packet type outside the defined range.
    #[error("{kind:?} tag body has unknown {codec:?} packet type {packet_type} at offset 1")]
    UnknownPacketType {
        /// Audio or video.
        kind: MediaKind,
        /// The codec whose packet type was read.
        codec: Codec,
        /// The packet type byte.
        packet_type: u8,
    },
}

/// Classifies an audio or video tag body.
pub fn classify(kind: MediaKind, body: &[u8]) -> Result<TagInfo, TagError> {
    match kind {
        MediaKind::Audio => classify_audio(body),
        MediaKind::Video => classify_video(body),
    }
}

/// Classifies the same bytes both as an audio and as a video tag body, in that order.
///
/// Useful when the tag type is unknown or untrusted (fuzzing, diagnostics); the relay knows the
/// message type and calls [`classify`].
pub fn classify_as_audio_and_video(body: &[u8]) -> [Result<TagInfo, TagError>; 2] {
    [classify_audio(body), classify_video(body)]
}

/// Bounds-checked reads over a tag body, reporting truncation with field and offset.
struct Reader<'a> {
    kind: MediaKind,
    body: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(
        &self,
        offset: usize,
        field: &'static str,
    ) -> Result<[u8; N], TagError> {
        let end = offset.checked_add(N);
        end.and_then(|end| self.body.get(offset..end))
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(TagError::Truncated {
                kind: self.kind,
                field,
                offset,
                needed: offset.saturating_add(N),
                available: self.body.len(),
            })
    }

    fn u8(&self, offset: usize, field: &'static str) -> Result<u8, TagError> {
        self.bytes::<1>(offset, field).map(|[b]| b)
    }

    /// A signed 24-bit big-endian integer (FLV `SI24`).
    fn si24(&self, offset: usize, field: &'static str) -> Result<i32, TagError> {
        let [a, b, c] = self.bytes::<3>(offset, field)?;
        // Place the 24 bits at the top of an i32 and shift back to sign-extend.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }
}

const VIDEO_FRAME_KEY: u8 = 1;
const VIDEO_FRAME_GENERATED_KEY: u8 = 4;
const VIDEO_FRAME_COMMAND: u8 = 5;
const LEGACY_CODEC_AVC: u8 = 7;
const LEGACY_CODEC_HEVC: u8 = 12;
const EX_HEADER_BIT: u8 = 0x80;

/// Classifies a video tag body (legacy FLV or Enhanced RTMP).
pub fn classify_video(body: &[u8]) -> Result<TagInfo, TagError> {
    let reader = Reader {
        kind: MediaKind::Video,
        body,
    };
    let first = reader.u8(0, "frame type / codec id")?;
    if first & EX_HEADER_BIT != 0 {
        classify_enhanced_video(&reader, first)
    } else {
        classify_legacy_video(&reader, first)
    }
}

fn is_key_frame_type(frame_type: u8) -> bool {
    frame_type == VIDEO_FRAME_KEY || frame_type == VIDEO_FRAME_GENERATED_KEY
}

fn classify_legacy_video(reader: &Reader<'_>, first: u8) -> Result<TagInfo, TagError> {
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    let codec = match codec_id {
        2 => Codec::SorensonH263,
        3 => Codec::ScreenVideo,
        4 => Codec::Vp6,
        5 => Codec::Vp6Alpha,
        6 => Codec::ScreenVideo2,
        LEGACY_CODEC_AVC => Codec::H264,
        LEGACY_CODEC_HEVC => Codec::Hevc,
        other => Codec::LegacyVideo(other),
    };
    let mut info = TagInfo {
        kind: MediaKind::Video,
        codec,
        packet: PacketKind::CodedFrame,
        is_keyframe: is_key_frame_type(frame_type),
        composition_time: 0,
        payload_offset: 1,
    };
    if frame_type == VIDEO_FRAME_COMMAND {
        info.packet = PacketKind::Command;
        return Ok(info);
    }
    if matches!(codec, Codec::H264 | Codec::Hevc) {
        let packet_type = reader.u8(1, "AVC packet type")?;
        info.packet = match packet_type {
            0 => PacketKind::SequenceHeader,
            1 => PacketKind::CodedFrame,
            2 => PacketKind::EndOfSequence,
            other => {
                return Err(TagError::UnknownPacketType {
                    kind: MediaKind::Video,
                    codec,
                    packet_type: other,
                })
            }
        };
        info.composition_time = reader.si24(2, "composition time offset")?;
        info.payload_offset = 5;
    }
    Ok(info)
}

fn video_fourcc(fourcc: [u8; 4]) -> Codec {
    match &fourcc {
        b"avc1" => Codec::H264,
        b"hvc1" => Codec::Hevc,
        b"av01" => Codec::Av1,
        b"vp09" => Codec::Vp9,
        _ => Codec::FourCc(fourcc),
    }
}

fn classify_enhanced_video(reader: &Reader<'_>, first: u8) -> Result<TagInfo, TagError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    let packet = match packet_type {
        0 => PacketKind::SequenceHeader,
        1 | 3 => PacketKind::CodedFrame,
        2 => PacketKind::EndOfSequence,
        4 => PacketKind::Metadata,
        other => {
            return Err(TagError::UnsupportedPacketType {
                kind: MediaKind::Video,
                packet_type: other,
            })
        }
    };
    let codec = video_fourcc(reader.bytes::<4>(1, "video FourCC")?);
    let packet = if frame_type == VIDEO_FRAME_COMMAND && packet != PacketKind::Metadata {
        PacketKind::Command
    } else {
        packet
    };
    let mut info = TagInfo {
        kind: MediaKind::Video,
        codec,
        packet,
        is_keyframe: is_key_frame_type(frame_type) && packet != PacketKind::Metadata,
        composition_time: 0,
        payload_offset: 5,
    };
    // Only CodedFrames (type 1) of the codecs with B-frames carry a composition time;
    // CodedFramesX (type 3) is the same with an implied offset of zero.
    if packet_type == 1 && matches!(codec, Codec::H264 | Codec::Hevc) {
        info.composition_time = reader.si24(5, "composition time offset")?;
        info.payload_offset = 8;
    }
    Ok(info)
}

fn audio_fourcc(fourcc: [u8; 4]) -> Codec {
    match &fourcc {
        b"Opus" => Codec::Opus,
        b"mp4a" => Codec::Aac,
        b".mp3" => Codec::Mp3,
        b"ac-3" => Codec::Ac3,
        b"ec-3" => Codec::Eac3,
        b"fLaC" => Codec::Flac,
        _ => Codec::FourCc(fourcc),
    }
}

const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// Classifies an audio tag body (legacy FLV or Enhanced RTMP).
pub fn classify_audio(body: &[u8]) -> Result<TagInfo, TagError> {
    let reader = Reader {
        kind: MediaKind::Audio,
        body,
    };
    let first = reader.u8(0, "sound format")?;
    let sound_format = first >> 4;
    let mut info = TagInfo {
        kind: MediaKind::Audio,
        codec: Codec::LegacyAudio(sound_format),
        packet: PacketKind::CodedFrame,
        is_keyframe: false,
        composition_time: 0,
        payload_offset: 1,
    };
    match sound_format {
        SOUND_FORMAT_AAC => {
            info.codec = Codec::Aac;
            info.packet = match reader.u8(1, "AAC packet type")? {
                0 => PacketKind::SequenceHeader,
                1 => PacketKind::CodedFrame,
                other => {
                    return Err(TagError::UnknownPacketType {
                        kind: MediaKind::Audio,
                        codec: Codec::Aac,
                        packet_type: other,
                    })
                }
            };
            info.payload_offset = 2;
        }
        SOUND_FORMAT_EX_HEADER => {
            let packet_type = first & 0x0f;
            info.packet = match packet_type {
                0 => PacketKind::SequenceHeader,
                1 => PacketKind::CodedFrame,
                2 => PacketKind::EndOfSequence,
                4 => PacketKind::MultichannelConfig,
                other => {
                    return Err(TagError::UnsupportedPacketType {
                        kind: MediaKind::Audio,
                        packet_type: other,
                    })
                }
            };
            info.codec = audio_fourcc(reader.bytes::<4>(1, "audio FourCC")?);
            info.payload_offset = 5;
        }
        2 | 14 => info.codec = Codec::Mp3,
        11 => info.codec = Codec::Speex,
        _ => {}
    }
    Ok(info)
}

/// Enhanced RTMP video packet type of a multitrack packet.
const VIDEO_PACKET_MULTITRACK: u8 = 6;
/// Enhanced RTMP audio packet type of a multitrack packet.
const AUDIO_PACKET_MULTITRACK: u8 = 5;

/// How the tracks of an Enhanced RTMP multitrack packet are laid out (AvMultitrackType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MultitrackType {
    /// One track, whose payload runs to the end of the body.
    OneTrack,
    /// Several tracks of one codec, each with its size.
    ManyTracks,
    /// Several tracks, each with its own FourCC and size.
    ManyTracksManyCodecs,
}

/// The header of an Enhanced RTMP multitrack packet (video packet type 6, audio packet type 5):
/// what it carries and for which tracks. Publishers such as FFmpeg 8+ send their first track
/// of each kind as ordinary packets and every further track (an FLV file with two audio
/// streams, say) in these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultitrackInfo {
    /// Audio or video.
    pub kind: MediaKind,
    /// The layout of the tracks.
    pub multitrack_type: MultitrackType,
    /// What every track of the packet carries (sequence start, coded frames...).
    pub packet: PacketKind,
    /// The tracks in the order they appear: their track id and codec.
    pub tracks: Vec<(u8, Codec)>,
}

impl MultitrackInfo {
    /// True when the packet is configuration a decoder of its tracks needs before their coded
    /// frames (a sequence start, an audio multichannel configuration or video metadata), which a
    /// viewer joining later must be given again.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self.packet,
            PacketKind::SequenceHeader | PacketKind::MultichannelConfig | PacketKind::Metadata
        )
    }
}

/// Reads the header of an Enhanced RTMP multitrack packet; `Ok(None)` when `body` is not one
/// (a legacy or single-track packet, which [`classify`] reads).
///
/// ```
/// use streamr_media::flv::tag::{classify_multitrack, Codec, MediaKind, PacketKind};
///
/// // One AAC track (id 1) of a multitrack audio packet, carrying its sequence start.
/// let body = [0x95, 0x00, b'm', b'p', b'4', b'a', 0x01, 0x11, 0x90];
/// let info = classify_multitrack(MediaKind::Audio, &body).unwrap().unwrap();
/// assert_eq!(info.packet, PacketKind::SequenceHeader);
/// assert_eq!(info.tracks, vec![(1, Codec::Aac)]);
/// ```
pub fn classify_multitrack(
    kind: MediaKind,
    body: &[u8],
) -> Result<Option<MultitrackInfo>, TagError> {
    let reader = Reader { kind, body };
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    let is_multitrack = match kind {
        MediaKind::Video => first & EX_HEADER_BIT != 0 && first & 0x0f == VIDEO_PACKET_MULTITRACK,
        MediaKind::Audio => {
            first >> 4 == SOUND_FORMAT_EX_HEADER && first & 0x0f == AUDIO_PACKET_MULTITRACK
        }
    };
    if !is_multitrack {
        return Ok(None);
    }
    let second = reader.u8(1, "multitrack type / packet type")?;
    let multitrack_type = match second >> 4 {
        0 => MultitrackType::OneTrack,
        1 => MultitrackType::ManyTracks,
        2 => MultitrackType::ManyTracksManyCodecs,
        other => {
            return Err(TagError::UnknownMultitrackType {
                kind,
                multitrack_type: other,
            })
        }
    };
    let packet_type = second & 0x0f;
    let packet = match (kind, packet_type) {
        (_, 0) => PacketKind::SequenceHeader,
        (MediaKind::Video, 1 | 3) | (MediaKind::Audio, 1) => PacketKind::CodedFrame,
        (_, 2) => PacketKind::EndOfSequence,
        (MediaKind::Video, 4) => PacketKind::Metadata,
        (MediaKind::Audio, 4) => PacketKind::MultichannelConfig,
        (_, other) => {
            return Err(TagError::UnsupportedPacketType {
                kind,
                packet_type: other,
            })
        }
    };
    let fourcc_codec = |fourcc| match kind {
        MediaKind::Video => video_fourcc(fourcc),
        MediaKind::Audio => audio_fourcc(fourcc),
    };
    let mut offset = 2;
    let shared_codec = if multitrack_type == MultitrackType::ManyTracksManyCodecs {
        None
    } else {
        let fourcc = reader.bytes::<4>(offset, "multitrack FourCC")?;
        offset += 4;
        Some(fourcc_codec(fourcc))
    };
    let mut tracks = Vec::new();
    loop {
        let codec = match shared_codec {
            Some(codec) => codec,
            None => {
                let fourcc = reader.bytes::<4>(offset, "track FourCC")?;
                offset += 4;
                fourcc_codec(fourcc)
            }
        };
        let track_id = reader.u8(offset, "track id")?;
        offset += 1;
        tracks.push((track_id, codec));
        if multitrack_type == MultitrackType::OneTrack {
            break;
        }
        let [a, b, c] = reader.bytes::<3>(offset, "size of track")?;
        let size = u32::from_be_bytes([0, a, b, c]) as usize;
        offset += 3;
        let end = offset.saturating_add(size);
        if end > body.len() {
            return Err(TagError::Truncated {
                kind,
                field: "track payload",
                offset,
                needed: end,
                available: body.len(),
            });
        }
        offset = end;
        if offset == body.len() {
            break;
        }
    }
    Ok(Some(MultitrackInfo {
        kind,
        multitrack_type,
        packet,
        tracks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn avc_sequence_header_is_keyframe_and_sequence_header() {
        let info = classify_video(&[0x17, 0x00, 0, 0, 0, 0x01, 0x64]).unwrap();
        assert!(info.is_keyframe);
        assert!(info.is_sequence_header());
        assert_eq!(info.payload_offset, 5);
    }

    #[test]
    fn avc_inter_frame_with_negative_composition_time() {
        let info = classify_video(&[0x27, 0x01, 0xFF, 0xFF, 0xD8, 0x00]).unwrap();
        assert!(!info.is_keyframe);
        assert_eq!(info.composition_time, -40);
        assert!(info.is_coded_frame());
    }

    #[test]
    fn truncated_avc_header_reports_field_and_offset() {
        let err = classify_video(&[0x17, 0x01, 0x00]).unwrap_err();
        assert_eq!(
            err,
            TagError::Truncated {
                kind: MediaKind::Video,
                field: "composition time offset",
                offset: 2,
                needed: 5,
                available: 3,
            }
        );
        assert!(matches!(
            classify_video(&[]),
            Err(TagError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn enhanced_hevc_coded_frames_carry_composition_time() {
        let body = [0x91, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x50, 0xAB];
        let info = classify_video(&body).unwrap();
        assert_eq!(info.codec, Codec::Hevc);
        assert!(info.is_keyframe);
        assert_eq!(info.composition_time, 80);
        assert_eq!(info.payload_offset, 8);
    }

    #[test]
    fn enhanced_av1_coded_frames_have_no_composition_time() {
        let body = [0xA1, b'a', b'v', b'0', b'1', 0x12, 0x00];
        let info = classify_video(&body).unwrap();
        assert_eq!(info.codec, Codec::Av1);
        assert!(!info.is_keyframe);
        assert_eq!(info.payload_offset, 5);
    }

    #[test]
    fn enhanced_coded_frames_x_has_implied_zero_composition_time() {
        let body = [0x93, b'h', b'v', b'c', b'1', 0x26];
        let info = classify_video(&body).unwrap();
        assert_eq!(info.composition_time, 0);
        assert_eq!(info.payload_offset, 5);
    }

    #[test]
    fn enhanced_vp9_sequence_start() {
        let info = classify_video(&[0x90, b'v', b'p', b'0', b'9', 1]).unwrap();
        assert_eq!(info.codec, Codec::Vp9);
        assert!(info.is_sequence_header());
    }

    #[test]
    fn enhanced_multitrack_is_reported_unsupported() {
        assert_eq!(
            classify_video(&[0x96, 0, 0, 0, 0]),
            Err(TagError::UnsupportedPacketType {
                kind: MediaKind::Video,
                packet_type: 6
            })
        );
    }

    #[test]
    fn ffmpeg_multitrack_second_tracks_name_their_track() {
        // The first bytes of FFmpeg 9's second video (AV1) and audio (AAC) tracks of one FLV.
        let video = [0x96, 0x01, b'a', b'v', b'0', b'1', 0x01, 0x12, 0x00, 0x0a];
        let info = classify_multitrack(MediaKind::Video, &video)
            .unwrap()
            .unwrap();
        assert_eq!(info.multitrack_type, MultitrackType::OneTrack);
        assert_eq!(info.packet, PacketKind::CodedFrame);
        assert_eq!(info.tracks, vec![(1, Codec::Av1)]);
        assert!(!info.is_configuration());
        let audio = [0x95, 0x04, b'm', b'p', b'4', b'a', 0x01, 0x00, 0x02];
        let info = classify_multitrack(MediaKind::Audio, &audio)
            .unwrap()
            .unwrap();
        assert_eq!(info.packet, PacketKind::MultichannelConfig);
        assert!(info.is_configuration());
        // classify() still refuses them: only the default track goes to HLS.
        assert!(classify_video(&video).is_err());
        assert!(classify_audio(&audio).is_err());
        // Ordinary packets are not multitrack.
        assert_eq!(
            classify_multitrack(MediaKind::Video, &[0x90, b'h', b'v', b'c', b'1']),
            Ok(None)
        );
        assert_eq!(
            classify_multitrack(MediaKind::Audio, &[0xAF, 0x00]),
            Ok(None)
        );
        assert_eq!(classify_multitrack(MediaKind::Audio, &[]), Ok(None));
    }

    #[test]
    fn multitrack_errors_name_the_field() {
        assert_eq!(
            classify_multitrack(MediaKind::Video, &[0x96, 0x30]),
            Err(TagError::UnknownMultitrackType {
                kind: MediaKind::Video,
                multitrack_type: 3
            })
        );
        assert!(matches!(
            classify_multitrack(MediaKind::Audio, &[0x95, 0x00, b'O', b'p']),
            Err(TagError::Truncated {
                field: "multitrack FourCC",
                ..
            })
        ));
        // A ManyTracks track announcing more bytes than the body holds.
        assert!(matches!(
            classify_multitrack(
                MediaKind::Video,
                &[0x96, 0x11, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x09, 0xAA]
            ),
            Err(TagError::Truncated {
                field: "track payload",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn multitrack_header_round_trips(
            is_video in any::<bool>(),
            layout in 0u8..=2,
            packet_type in prop::sample::select(vec![0u8, 1, 2, 4]),
            tracks in proptest::collection::vec(
                (any::<u8>(), prop::sample::select(vec![*b"hvc1", *b"av01", *b"Opus", *b"mp4a"]),
                 proptest::collection::vec(any::<u8>(), 0..24)),
                1..4,
            ),
        ) {
            let kind = if is_video { MediaKind::Video } else { MediaKind::Audio };
            let tracks = if layout == 0 { &tracks[..1] } else { &tracks[..] };
            let mut body = vec![if is_video { 0x80 | 1 << 4 | 6 } else { 0x95 }];
            body.push(layout << 4 | packet_type);
            if layout != 2 {
                body.extend_from_slice(&tracks[0].1);
            }
            for (id, fourcc, payload) in tracks {
                if layout == 2 {
                    body.extend_from_slice(fourcc);
                }
                body.push(*id);
                if layout != 0 {
                    body.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
                }
                body.extend_from_slice(payload);
            }
            let info = classify_multitrack(kind, &body).unwrap().unwrap();
            let codec_of = |fourcc: [u8; 4]| if is_video { video_fourcc(fourcc) } else { audio_fourcc(fourcc) };
            let expected: Vec<(u8, Codec)> = tracks
                .iter()
                .map(|(id, fourcc, _)| (*id, codec_of(if layout == 2 { *fourcc } else { tracks[0].1 })))
                .collect();
            prop_assert_eq!(&info.tracks, &expected);
            prop_assert_eq!(info.packet == PacketKind::SequenceHeader, packet_type == 0);
            prop_assert_eq!(info.is_configuration(), packet_type == 0 || packet_type == 4);
        }

        #[test]
        fn arbitrary_multitrack_bytes_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let _ = classify_multitrack(kind, &body);
            }
        }
    }

    #[test]
    fn aac_sequence_header_and_raw_frame() {
        let header = classify_audio(&[0xAF, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(header.codec, Codec::Aac);
        assert!(header.is_sequence_header());
        let raw = classify_audio(&[0xAF, 0x01, 0x21]).unwrap();
        assert!(raw.is_coded_frame());
        assert_eq!(raw.payload_offset, 2);
        assert!(classify_audio(&[0xAF]).is_err());
    }

    #[test]
    fn enhanced_opus_sequence_start() {
        let info = classify_audio(&[0x90, b'O', b'p', b'u', b's', 0x01]).unwrap();
        assert_eq!(info.codec, Codec::Opus);
        assert!(info.is_sequence_header());
        assert_eq!(info.payload_offset, 5);
    }

    #[test]
    fn legacy_mp3_has_one_byte_header() {
        let info = classify_audio(&[0x2F, 0xFF, 0xFB]).unwrap();
        assert_eq!(info.codec, Codec::Mp3);
        assert_eq!(info.payload_offset, 1);
    }

    /// The fields a legacy AVC video tag header encodes.
    fn legacy_avc() -> impl Strategy<Value = (u8, u8, i32, Vec<u8>)> {
        (
            1u8..=4,
            0u8..=2,
            -(1i32 << 23)..(1i32 << 23),
            proptest::collection::vec(any::<u8>(), 0..32),
        )
    }

    proptest! {
        #[test]
        fn legacy_avc_header_round_trips((frame_type, packet_type, cts, payload) in legacy_avc()) {
            let mut body = vec![frame_type << 4 | LEGACY_CODEC_AVC, packet_type];
            body.extend_from_slice(&cts.to_be_bytes()[1..]);
            body.extend_from_slice(&payload);
            let info = classify_video(&body).unwrap();
            prop_assert_eq!(info.codec, Codec::H264);
            prop_assert_eq!(info.is_keyframe, frame_type == 1 || frame_type == 4);
            prop_assert_eq!(info.is_sequence_header(), packet_type == 0);
            prop_assert_eq!(info.composition_time, cts);
            prop_assert_eq!(&body[info.payload_offset..], &payload[..]);
        }

        #[test]
        fn enhanced_video_header_round_trips(
            frame_type in 1u8..=4,
            packet_type in prop::sample::select(vec![0u8, 1, 2, 3]),
            fourcc in prop::sample::select(vec![*b"hvc1", *b"av01", *b"vp09", *b"avc1"]),
            cts in -(1i32 << 23)..(1i32 << 23),
            payload in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut body = vec![EX_HEADER_BIT | frame_type << 4 | packet_type];
            body.extend_from_slice(&fourcc);
            let has_cts = packet_type == 1 && (&fourcc == b"hvc1" || &fourcc == b"avc1");
            if has_cts {
                body.extend_from_slice(&cts.to_be_bytes()[1..]);
            }
            body.extend_from_slice(&payload);
            let info = classify_video(&body).unwrap();
            prop_assert_eq!(info.codec, video_fourcc(fourcc));
            prop_assert_eq!(info.is_sequence_header(), packet_type == 0);
            prop_assert_eq!(info.composition_time, if has_cts { cts } else { 0 });
            prop_assert_eq!(&body[info.payload_offset..], &payload[..]);
        }

        #[test]
        fn aac_header_round_trips(
            flags in 0u8..16,
            packet_type in 0u8..=1,
            payload in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut body = vec![SOUND_FORMAT_AAC << 4 | flags, packet_type];
            body.extend_from_slice(&payload);
            let info = classify_audio(&body).unwrap();
            prop_assert_eq!(info.codec, Codec::Aac);
            prop_assert_eq!(info.is_sequence_header(), packet_type == 0);
            prop_assert_eq!(&body[info.payload_offset..], &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_offsets_stay_in_bounds(
            body in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                if let Ok(info) = classify(kind, &body) {
                    prop_assert!(info.payload_offset <= body.len());
                    prop_assert_eq!(info.kind, kind);
                }
            }
        }

        #[test]
        fn every_prefix_shorter_than_the_header_is_truncated(
            (frame_type, packet_type, cts, payload) in legacy_avc(),
        ) {
            let mut body = vec![frame_type << 4 | LEGACY_CODEC_AVC, packet_type];
            body.extend_from_slice(&cts.to_be_bytes()[1..]);
            body.extend_from_slice(&payload);
            for len in 0..5 {
                let is_truncated = matches!(
                    classify_video(&body[..len]),
                    Err(TagError::Truncated { .. })
                );
                prop_assert!(is_truncated);
            }
        }
    }
}
