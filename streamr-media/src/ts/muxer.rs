//! The FLV→MPEG-TS muxer: FLV audio/video tags in, 188-byte transport packets out.

use crate::codec::{AdtsConfig, AvcDecoderConfig, HevcDecoderConfig};
use crate::flv::tag::{classify, Codec, MediaKind, PacketKind, TagInfo};
use crate::flv::{FlvTag, FlvTagType};

use super::packet::{write_pes_packets, FirstPacketFlags, PesHeader, TIMESTAMP_MASK};
use super::psi::{write_pat, write_pmt, PmtStream};
use super::TsError;

/// PID of the video elementary stream.
pub const VIDEO_PID: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const AUDIO_PID: u16 = 0x0101;
/// PMT stream type of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// PMT stream type of HEVC video.
pub const STREAM_TYPE_HEVC: u8 = 0x24;
/// PMT stream type of ADTS AAC audio.
pub const STREAM_TYPE_AAC: u8 = 0x0F;
/// PMT stream type of MPEG-1 audio (MP3 at 32, 44.1 or 48 kHz).
pub const STREAM_TYPE_MPEG1_AUDIO: u8 = 0x03;
/// PMT stream type of MPEG-2 audio (MP3 at the lower sample rates, including MPEG-2.5).
pub const STREAM_TYPE_MPEG2_AUDIO: u8 = 0x04;
/// Added to every FLV timestamp (in 90 kHz ticks, 1.4 s) so that PTS with a negative composition
/// offset and the PCR, which runs ahead of decoding, stay positive. Fixed, so output is
/// deterministic.
pub const TIMESTAMP_OFFSET_90KHZ: u64 = 126_000;
/// How far the PCR runs ahead of the DTS of the video frame that carries it (700 ms).
pub const PCR_LEAD_90KHZ: u64 = 63_000;

const VIDEO_STREAM_ID: u8 = 0xE0;
const AUDIO_STREAM_ID: u8 = 0xC0;

#[derive(Debug, Clone, PartialEq, Eq)]
enum VideoConfig {
    Avc(AvcDecoderConfig),
    Hevc(HevcDecoderConfig),
}

impl VideoConfig {
    fn stream_type(&self) -> u8 {
        match self {
            VideoConfig::Avc(_) => STREAM_TYPE_H264,
            VideoConfig::Hevc(_) => STREAM_TYPE_HEVC,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AudioConfig {
    /// AAC, framed with ADTS (and the program_config_element of a channelConfiguration 0).
    Aac(AdtsConfig),
    /// MPEG audio (MP3): self-describing frames, carried as they are.
    Mpeg { stream_type: u8 },
}

impl AudioConfig {
    fn stream_type(&self) -> u8 {
        match self {
            AudioConfig::Aac(_) => STREAM_TYPE_AAC,
            AudioConfig::Mpeg { stream_type } => *stream_type,
        }
    }
}

/// The PMT stream type of an MPEG audio frame, from the version bits of its header; `None` when
/// the bytes do not start with an MPEG audio frame header.
fn mpeg_audio_stream_type(frame: &[u8]) -> Option<u8> {
    let [sync, flags, ..] = frame else {
        return None;
    };
    if *sync != 0xFF || flags & 0xE0 != 0xE0 {
        return None;
    }
    match (flags >> 3) & 0x3 {
        0b11 => Some(STREAM_TYPE_MPEG1_AUDIO),
        0b10 | 0b00 => Some(STREAM_TYPE_MPEG2_AUDIO),
        _ => None,
    }
}

/// What the muxer did with one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MuxOutcome {
    /// A coded frame was written as one PES.
    Frame {
        /// Audio or video.
        kind: MediaKind,
        /// True for a video keyframe.
        keyframe: bool,
    },
    /// A sequence header set a new decoder configuration (the first one, or a different one).
    ConfigChanged {
        /// Audio or video.
        kind: MediaKind,
    },
    /// A sequence header repeated the configuration already in use.
    ConfigRepeated {
        /// Audio or video.
        kind: MediaKind,
    },
    /// The tag carries nothing for MPEG-TS (script data, end of sequence, metadata).
    Skipped,
}

/// Converts a 32-bit FLV millisecond timestamp into the 33-bit 90 kHz clock, with the fixed
/// [`TIMESTAMP_OFFSET_90KHZ`].
pub fn flv_to_90khz(timestamp_ms: u32) -> u64 {
    (u64::from(timestamp_ms) * 90 + TIMESTAMP_OFFSET_90KHZ) & TIMESTAMP_MASK
}

fn with_offset(ts: u64, offset_ms: i32) -> u64 {
    let shifted = (ts as i64).wrapping_add(i64::from(offset_ms) * 90);
    (shifted.rem_euclid(1 << 33)) as u64
}

/// A deterministic FLV→MPEG-TS muxer for H.264/HEVC video and AAC or MP3 audio: the same tags
/// always produce the same bytes. Sequence headers configure the streams (MP3 frames describe
/// themselves); each coded frame becomes one PES (video: Annex-B with an access unit delimiter
/// and parameter sets before keyframes; audio: one ADTS or MPEG audio frame) split into 188-byte
/// packets. The PCR rides on the video PID (on the audio PID
/// for audio-only streams).
///
/// ```
/// use streamr_media::flv::{FlvTag, FlvTagType};
/// use streamr_media::ts::{FlvTsMuxer, MuxOutcome};
///
/// let mut muxer = FlvTsMuxer::new();
/// let mut out = Vec::new();
/// let header = FlvTag { tag_type: FlvTagType::Audio, timestamp: 0, stream_id: 0, data: vec![0xAF, 0, 0x12, 0x10].into() };
/// muxer.write_tag(&header, &mut out).unwrap();
/// muxer.write_tables(&mut out);
/// let frame = FlvTag { timestamp: 23, data: vec![0xAF, 1, 0x21, 0x00].into(), ..header };
/// assert!(matches!(muxer.write_tag(&frame, &mut out).unwrap(), MuxOutcome::Frame { .. }));
/// assert_eq!(out.len() % 188, 0);
/// ```
#[derive(Debug, Default)]
pub struct FlvTsMuxer {
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl FlvTsMuxer {
    /// A muxer with no stream configured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a video sequence header (H.264 or HEVC) was accepted.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// True once an AAC sequence header or an MP3 frame was accepted.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The PID that carries the PCR.
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() || self.audio.is_none() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Restarts every continuity counter at 0, so a segment that starts here is identical whoever
    /// muxed the stream before it.
    pub fn reset_continuity(&mut self) {
        self.cc_pat = 0;
        self.cc_pmt = 0;
        self.cc_video = 0;
        self.cc_audio = 0;
    }

    /// Appends a PAT and a PMT listing the configured streams (two packets).
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let mut streams = [PmtStream {
            stream_type: 0,
            pid: 0,
        }; 2];
        let mut count = 0;
        if let Some(video) = &self.video {
            streams[count] = PmtStream {
                stream_type: video.stream_type(),
                pid: VIDEO_PID,
            };
            count += 1;
        }
        if let Some(audio) = &self.audio {
            streams[count] = PmtStream {
                stream_type: audio.stream_type(),
                pid: AUDIO_PID,
            };
            count += 1;
        }
        write_pat(out, self.cc_pat);
        self.cc_pat = (self.cc_pat + 1) & 0x0F;
        write_pmt(out, self.cc_pmt, self.pcr_pid(), &streams[..count]);
        self.cc_pmt = (self.cc_pmt + 1) & 0x0F;
    }

    /// Classifies an audio/video tag body; `Ok(None)` for script data.
    pub fn classify(tag: &FlvTag) -> Result<Option<TagInfo>, TsError> {
        let kind = match tag.tag_type {
            FlvTagType::Audio => MediaKind::Audio,
            FlvTagType::Video => MediaKind::Video,
            _ => return Ok(None),
        };
        classify(kind, &tag.data)
            .map(Some)
            .map_err(|source| TsError::Tag {
                timestamp: tag.timestamp,
                source,
            })
    }

    /// Muxes one FLV tag, appending any packets to `out`. On error nothing is appended and the
    /// muxer is unchanged.
    pub fn write_tag(&mut self, tag: &FlvTag, out: &mut Vec<u8>) -> Result<MuxOutcome, TsError> {
        match Self::classify(tag)? {
            Some(info) => self.write_classified(tag, &info, out),
            None => Ok(MuxOutcome::Skipped),
        }
    }

    /// Like [`write_tag`](Self::write_tag) for a tag already classified by the caller.
    pub fn write_classified(
        &mut self,
        tag: &FlvTag,
        info: &TagInfo,
        out: &mut Vec<u8>,
    ) -> Result<MuxOutcome, TsError> {
        let payload = tag.data.get(info.payload_offset..).unwrap_or_default();
        let timestamp = tag.timestamp;
        let codec_error = |source| TsError::Codec {
            kind: info.kind,
            timestamp,
            source,
        };
        match (info.kind, info.packet) {
            (MediaKind::Video, PacketKind::SequenceHeader) => {
                let config = match info.codec {
                    Codec::H264 => {
                        VideoConfig::Avc(AvcDecoderConfig::parse(payload).map_err(codec_error)?)
                    }
                    Codec::Hevc => {
                        VideoConfig::Hevc(HevcDecoderConfig::parse(payload).map_err(codec_error)?)
                    }
                    codec => return Err(unsupported(info.kind, codec, timestamp)),
                };
                Ok(replace_config(&mut self.video, config, MediaKind::Video))
            }
            (MediaKind::Audio, PacketKind::SequenceHeader) => {
                if info.codec != Codec::Aac {
                    return Err(unsupported(info.kind, info.codec, timestamp));
                }
                let config = AdtsConfig::parse(payload).map_err(codec_error)?;
                Ok(replace_config(
                    &mut self.audio,
                    AudioConfig::Aac(config),
                    MediaKind::Audio,
                ))
            }
            (MediaKind::Video, PacketKind::CodedFrame) => self.write_video(tag, info, payload, out),
            (MediaKind::Audio, PacketKind::CodedFrame) => self.write_audio(tag, info, payload, out),
            _ => Ok(MuxOutcome::Skipped),
        }
    }

    /// Checks, without writing anything, that a classified tag would mux: the errors
    /// [`write_classified`](Self::write_classified) would return for a coded frame. Lets a caller
    /// settle side effects (such as starting a segment) before writing.
    pub fn check_frame(&self, tag: &FlvTag, info: &TagInfo) -> Result<(), TsError> {
        let payload = tag.data.get(info.payload_offset..).unwrap_or_default();
        let timestamp = tag.timestamp;
        let codec_error = |source| TsError::Codec {
            kind: info.kind,
            timestamp,
            source,
        };
        match (info.kind, info.packet) {
            (MediaKind::Video, PacketKind::CodedFrame) => {
                let mut parts = Vec::with_capacity(16);
                let checked = match video_config_for(&self.video, info, timestamp)? {
                    VideoConfig::Avc(avc) => avc.annexb_parts(payload, &mut parts),
                    VideoConfig::Hevc(hevc) => hevc.annexb_parts(payload, &mut parts),
                };
                checked.map(|_| ()).map_err(codec_error)
            }
            (MediaKind::Audio, PacketKind::CodedFrame) => {
                match audio_config_for(self.audio.as_ref(), info, payload, timestamp)? {
                    // ADTS caps a frame at 8191 bytes, so its PES length always fits.
                    AudioConfig::Aac(config) => config
                        .adts_header(payload.len())
                        .map(|_| ())
                        .map_err(codec_error),
                    AudioConfig::Mpeg { .. } => mpeg_pes_fits(payload.len(), timestamp),
                }
            }
            _ => Ok(()),
        }
    }

    fn write_video(
        &mut self,
        tag: &FlvTag,
        info: &TagInfo,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<MuxOutcome, TsError> {
        let timestamp = tag.timestamp;
        let config = video_config_for(&self.video, info, timestamp)?;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(16);
        let dts = flv_to_90khz(timestamp);
        let pts = with_offset(dts, info.composition_time);
        let Some(header) = PesHeader::new(VIDEO_STREAM_ID, pts, Some(dts), None) else {
            return Err(TsError::PesTooLarge {
                len: payload.len(),
                timestamp,
            });
        };
        parts.push(header.as_slice());
        let converted = match config {
            VideoConfig::Avc(avc) => avc.annexb_parts(payload, &mut parts),
            VideoConfig::Hevc(hevc) => hevc.annexb_parts(payload, &mut parts),
        };
        converted.map_err(|source| TsError::Codec {
            kind: MediaKind::Video,
            timestamp,
            source,
        })?;
        let flags = FirstPacketFlags {
            pcr: Some(dts.wrapping_sub(PCR_LEAD_90KHZ) & TIMESTAMP_MASK),
            random_access: info.is_keyframe,
        };
        write_pes_packets(out, VIDEO_PID, &mut self.cc_video, flags, &parts);
        Ok(MuxOutcome::Frame {
            kind: MediaKind::Video,
            keyframe: info.is_keyframe,
        })
    }

    fn write_audio(
        &mut self,
        tag: &FlvTag,
        info: &TagInfo,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<MuxOutcome, TsError> {
        let timestamp = tag.timestamp;
        let config = audio_config_for(self.audio.as_ref(), info, payload, timestamp)?;
        let adts = match &config {
            AudioConfig::Aac(aac) => {
                let header = aac
                    .adts_header(payload.len())
                    .map_err(|source| TsError::Codec {
                        kind: MediaKind::Audio,
                        timestamp,
                        source,
                    })?;
                Some(header)
            }
            AudioConfig::Mpeg { .. } => {
                mpeg_pes_fits(payload.len(), timestamp)?;
                None
            }
        };
        let adts: &[u8] = adts.as_ref().map_or(&[], |header| header.as_slice());
        let program_config: &[u8] = match &config {
            AudioConfig::Aac(aac) => aac.program_config(),
            AudioConfig::Mpeg { .. } => &[],
        };
        let pts = flv_to_90khz(timestamp);
        let header = PesHeader::new(
            AUDIO_STREAM_ID,
            pts,
            None,
            Some(adts.len() + program_config.len() + payload.len()),
        )
        .ok_or(TsError::PesTooLarge {
            len: payload.len(),
            timestamp,
        })?;
        // MP3 needs no sequence header: its first frame configures the stream.
        self.audio = Some(config.clone());
        let audio_carries_pcr = self.video.is_none();
        let flags = FirstPacketFlags {
            pcr: audio_carries_pcr.then(|| pts.wrapping_sub(PCR_LEAD_90KHZ) & TIMESTAMP_MASK),
            random_access: audio_carries_pcr,
        };
        write_pes_packets(
            out,
            AUDIO_PID,
            &mut self.cc_audio,
            flags,
            &[header.as_slice(), adts, program_config, payload],
        );
        Ok(MuxOutcome::Frame {
            kind: MediaKind::Audio,
            keyframe: false,
        })
    }
}

/// Largest MPEG audio frame carried in one bounded PES (PES_packet_length is 16 bits).
const MAX_MPEG_AUDIO_FRAME: usize = u16::MAX as usize - 8;

fn mpeg_pes_fits(len: usize, timestamp: u32) -> Result<(), TsError> {
    if len > MAX_MPEG_AUDIO_FRAME {
        return Err(TsError::PesTooLarge { len, timestamp });
    }
    Ok(())
}

fn video_config_for<'a>(
    video: &'a Option<VideoConfig>,
    info: &TagInfo,
    timestamp: u32,
) -> Result<&'a VideoConfig, TsError> {
    let missing = TsError::MissingSequenceHeader {
        kind: MediaKind::Video,
        timestamp,
    };
    match (video, info.codec) {
        (Some(config @ VideoConfig::Avc(_)), Codec::H264)
        | (Some(config @ VideoConfig::Hevc(_)), Codec::Hevc) => Ok(config),
        (_, Codec::H264 | Codec::Hevc) => Err(missing),
        (_, codec) => Err(unsupported(MediaKind::Video, codec, timestamp)),
    }
}

fn audio_config_for(
    audio: Option<&AudioConfig>,
    info: &TagInfo,
    payload: &[u8],
    timestamp: u32,
) -> Result<AudioConfig, TsError> {
    match info.codec {
        Codec::Aac => match audio {
            Some(config @ AudioConfig::Aac(_)) => Ok(config.clone()),
            _ => Err(TsError::MissingSequenceHeader {
                kind: MediaKind::Audio,
                timestamp,
            }),
        },
        Codec::Mp3 => mpeg_audio_stream_type(payload)
            .map(|stream_type| AudioConfig::Mpeg { stream_type })
            .ok_or(TsError::MalformedMpegAudio { timestamp }),
        codec => Err(unsupported(MediaKind::Audio, codec, timestamp)),
    }
}

fn unsupported(kind: MediaKind, codec: Codec, timestamp: u32) -> TsError {
    TsError::UnsupportedCodec {
        kind,
        codec,
        timestamp,
    }
}

fn replace_config<T: PartialEq>(slot: &mut Option<T>, config: T, kind: MediaKind) -> MuxOutcome {
    if slot.as_ref() == Some(&config) {
        MuxOutcome::ConfigRepeated { kind }
    } else {
        *slot = Some(config);
        MuxOutcome::ConfigChanged { kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::FlvTagType;

    fn audio_tag(timestamp: u32, data: Vec<u8>) -> FlvTag {
        FlvTag {
            tag_type: FlvTagType::Audio,
            timestamp,
            stream_id: 0,
            data: data.into(),
        }
    }

    /// The elementary stream bytes of the audio PES in `packets` (one PES, one packet).
    fn audio_es(packets: &[u8]) -> &[u8] {
        let packet = packets
            .chunks(188)
            .find(|p| ((u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])) == AUDIO_PID)
            .unwrap();
        let start = if packet[3] & 0x20 != 0 {
            5 + usize::from(packet[4])
        } else {
            4
        };
        let pes = &packet[start..];
        &pes[9 + usize::from(pes[8])..]
    }

    #[test]
    fn aac_with_a_program_config_element_is_muxed_with_it_in_every_frame() {
        // ffmpeg's AAC encoder for a 6.1 layout: channelConfiguration 0 and a
        // program_config_element (commented "Lavc59.37.100") in the AudioSpecificConfig.
        let asc = [
            0x11, 0x80, 0x04, 0xc8, 0x48, 0x00, 0x20, 0x00, 0xc4, 0x40, 0x0d, b'L', b'a', b'v',
            b'c', b'5', b'9', b'.', b'3', b'7', b'.', b'1', b'0', b'0', 0x56, 0xe5, 0x00,
        ];
        let mut muxer = FlvTsMuxer::new();
        let mut out = Vec::new();
        let mut header = vec![0xAF, 0x00];
        header.extend_from_slice(&asc);
        muxer.write_tag(&audio_tag(0, header), &mut out).unwrap();
        assert!(muxer.has_audio());
        let frame = [0xde, 0x02, 0x00, 0x4c, 0x61, 0x76];
        for timestamp in [21, 42] {
            let mut tag = vec![0xAF, 0x01];
            tag.extend_from_slice(&frame);
            let mut packets = Vec::new();
            let outcome = muxer.write_tag(&audio_tag(timestamp, tag), &mut packets);
            assert!(
                matches!(outcome, Ok(MuxOutcome::Frame { .. })),
                "{outcome:?}"
            );
            let es = audio_es(&packets);
            let pce_len = 9 + 13;
            let frame_len = 7 + pce_len + frame.len();
            // ADTS with channelConfiguration 0 and the element counted in the frame length.
            assert_eq!(
                es[..7],
                [
                    0xff,
                    0xf1,
                    0x4c,
                    (frame_len >> 11) as u8,
                    (frame_len >> 3) as u8,
                    ((frame_len & 7) << 5) as u8 | 0x1f,
                    0xfc
                ]
            );
            assert_eq!(
                es[7..16],
                [0xa0, 0x99, 0x09, 0x00, 0x04, 0x00, 0x18, 0x88, 0x0d]
            );
            assert_eq!(&es[16..29], b"Lavc59.37.100");
            assert_eq!(&es[29..], &frame);
        }
        let mut tables = Vec::new();
        muxer.write_tables(&mut tables);
        assert_eq!(tables.len(), 2 * 188);
    }
}
