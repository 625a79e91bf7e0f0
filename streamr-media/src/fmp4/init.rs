//! The CMAF header (init segment): `ftyp` and `moov` describing each track's codec.

use bytes::Bytes;

use super::sps::{avc_picture_size, hevc_picture_size};
use super::writer::BoxWriter;
use super::Fmp4Error;
use crate::codec::{
    AudioSpecificConfig, Av1Config, AvcDecoderConfig, HevcDecoderConfig, HEVC_NAL_SPS,
};

/// Track id of the video track in init segments and fragments.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track in init segments and fragments.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of video tracks (ticks per second): the MPEG 90 kHz clock.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// A track's codec and its configuration record, as carried by an FLV/Enhanced RTMP sequence
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackConfig {
    /// H.264: the AVCDecoderConfigurationRecord (`avcC`), copied verbatim.
    Avc {
        /// The record bytes.
        record: Bytes,
        /// Picture width in pixels (from the SPS).
        width: u16,
        /// Picture height in pixels (from the SPS).
        height: u16,
    },
    /// HEVC: the HEVCDecoderConfigurationRecord (`hvcC`), copied verbatim.
    Hevc {
        /// The record bytes.
        record: Bytes,
        /// Picture width in pixels (from the SPS).
        width: u16,
        /// Picture height in pixels (from the SPS).
        height: u16,
    },
    /// AV1: the AV1CodecConfigurationRecord (`av1C`), copied verbatim.
    Av1 {
        /// The record bytes.
        record: Bytes,
        /// Largest picture width in pixels (from the sequence header OBU).
        width: u16,
        /// Largest picture height in pixels (from the sequence header OBU).
        height: u16,
    },
    /// AAC: the AudioSpecificConfig, carried in an `esds` descriptor.
    Aac {
        /// The AudioSpecificConfig bytes.
        config: Bytes,
        /// Sampling rate in Hz (the track's timescale).
        sample_rate: u32,
        /// Channel count.
        channels: u16,
    },
    /// Opus: the `dOps` box body, converted from an `OpusHead` header.
    Opus {
        /// The `dOps` body.
        dops: Bytes,
        /// Channel count.
        channels: u16,
    },
}

fn clamp16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

impl TrackConfig {
    /// An H.264 track from an AVCDecoderConfigurationRecord.
    pub fn avc(record: &[u8]) -> Result<Self, Fmp4Error> {
        let parsed = AvcDecoderConfig::parse(record).map_err(|e| Fmp4Error::InvalidConfig {
            codec: "H.264",
            reason: e.to_string(),
        })?;
        let (width, height) = parsed
            .sps
            .first()
            .and_then(|sps| avc_picture_size(sps))
            .unwrap_or((0, 0));
        Ok(TrackConfig::Avc {
            record: Bytes::copy_from_slice(record),
            width: clamp16(width),
            height: clamp16(height),
        })
    }

    /// An HEVC track from an HEVCDecoderConfigurationRecord.
    pub fn hevc(record: &[u8]) -> Result<Self, Fmp4Error> {
        let parsed = HevcDecoderConfig::parse(record).map_err(|e| Fmp4Error::InvalidConfig {
            codec: "HEVC",
            reason: e.to_string(),
        })?;
        let (width, height) = parsed
            .arrays
            .iter()
            .filter(|array| array.nal_type == HEVC_NAL_SPS)
            .flat_map(|array| array.units.iter())
            .find_map(|sps| hevc_picture_size(sps))
            .unwrap_or((0, 0));
        Ok(TrackConfig::Hevc {
            record: Bytes::copy_from_slice(record),
            width: clamp16(width),
            height: clamp16(height),
        })
    }

    /// An AV1 track from an AV1CodecConfigurationRecord.
    pub fn av1(record: &[u8]) -> Result<Self, Fmp4Error> {
        let parsed = Av1Config::parse(record).map_err(|e| Fmp4Error::InvalidConfig {
            codec: "AV1",
            reason: e.to_string(),
        })?;
        let (width, height) = parsed.max_frame_size().unwrap_or((0, 0));
        Ok(TrackConfig::Av1 {
            record: Bytes::copy_from_slice(record),
            width: clamp16(width),
            height: clamp16(height),
        })
    }

    /// An AAC track from an AudioSpecificConfig.
    pub fn aac(config: &[u8]) -> Result<Self, Fmp4Error> {
        let invalid = |reason: String| Fmp4Error::InvalidConfig {
            codec: "AAC",
            reason,
        };
        let asc = AudioSpecificConfig::parse(config).map_err(|e| invalid(e.to_string()))?;
        let sample_rate = asc
            .sampling_frequency()
            .ok_or_else(|| invalid("explicit or reserved sampling frequency".into()))?;
        Ok(TrackConfig::Aac {
            config: Bytes::copy_from_slice(config),
            sample_rate,
            channels: aac_channel_count(asc.channel_configuration),
        })
    }

    /// An Opus track from an `OpusHead` identification header (RFC 7845), as Enhanced RTMP
    /// carries it; converted to the `dOps` box of the Opus-in-ISOBMFF mapping.
    pub fn opus(head: &[u8]) -> Result<Self, Fmp4Error> {
        let invalid = |reason: &str| Fmp4Error::InvalidConfig {
            codec: "Opus",
            reason: reason.to_string(),
        };
        let fields = head
            .strip_prefix(b"OpusHead")
            .ok_or_else(|| invalid("no OpusHead magic"))?;
        let [_version, channels, skip0, skip1, r0, r1, r2, r3, g0, g1, family, ref mapping @ ..] =
            *fields
        else {
            return Err(invalid("OpusHead truncated"));
        };
        let mut dops = vec![0, channels];
        dops.extend_from_slice(&u16::from_le_bytes([skip0, skip1]).to_be_bytes());
        dops.extend_from_slice(&u32::from_le_bytes([r0, r1, r2, r3]).to_be_bytes());
        dops.extend_from_slice(&i16::from_le_bytes([g0, g1]).to_be_bytes());
        dops.push(family);
        if family != 0 {
            let table = 2 + usize::from(channels);
            let mapping = mapping
                .get(..table)
                .ok_or_else(|| invalid("channel mapping table truncated"))?;
            dops.extend_from_slice(mapping);
        }
        Ok(TrackConfig::Opus {
            dops: Bytes::from(dops),
            channels: u16::from(channels.max(1)),
        })
    }

    /// True for video tracks.
    pub fn is_video(&self) -> bool {
        matches!(
            self,
            TrackConfig::Avc { .. } | TrackConfig::Hevc { .. } | TrackConfig::Av1 { .. }
        )
    }

    /// The track's timescale: 90 kHz for video, the sampling rate for audio (48 kHz for Opus).
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Avc { .. } | TrackConfig::Hevc { .. } | TrackConfig::Av1 { .. } => {
                VIDEO_TIMESCALE
            }
            TrackConfig::Aac { sample_rate, .. } => (*sample_rate).max(1),
            TrackConfig::Opus { .. } => 48_000,
        }
    }

    /// The RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`,
    /// `mp4a.40.2`, `opus`), for
    /// CODECS attributes and `MediaSource.isTypeSupported`.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::Avc { record, .. } => match record.get(1..4) {
                Some([p, c, l]) => format!("avc1.{p:02x}{c:02x}{l:02x}"),
                _ => "avc1".into(),
            },
            TrackConfig::Hevc { record, .. } => hevc_codec_string(record),
            TrackConfig::Av1 { record, .. } => {
                Av1Config::parse(record).map_or_else(|_| "av01".into(), |c| c.codec_string())
            }
            TrackConfig::Aac { config, .. } => {
                let object_type = config.first().map_or(2, |b| b >> 3);
                format!("mp4a.40.{object_type}")
            }
            TrackConfig::Opus { .. } => "opus".into(),
        }
    }

    fn track_id(&self) -> u32 {
        if self.is_video() {
            VIDEO_TRACK_ID
        } else {
            AUDIO_TRACK_ID
        }
    }
}

/// `hvc1.{profile space}{profile}.{compat reversed}.{tier}{level}.{constraints}` (ISO/IEC
/// 14496-15 annex E).
fn hevc_codec_string(record: &[u8]) -> String {
    let Some(head) = record.get(1..13) else {
        return "hvc1".into();
    };
    let space = match head[0] >> 6 {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let profile = head[0] & 0x1f;
    let tier = if head[0] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes([head[1], head[2], head[3], head[4]]).reverse_bits();
    let constraints: Vec<&u8> = head[5..11].iter().collect();
    let keep = constraints
        .iter()
        .rposition(|b| **b != 0)
        .map_or(1, |last| last + 1);
    let constraints: Vec<String> = constraints
        .iter()
        .take(keep)
        .map(|b| format!("{b:X}"))
        .collect();
    format!(
        "hvc1.{space}{profile}.{compat:X}.{tier}{}.{}",
        head[11],
        constraints.join(".")
    )
}

/// Builds the init segment for `tracks` (at most one video and one audio track): `ftyp` with
/// the CMAF brands, then `moov` with a `trak` per track and `mvex`/`trex` announcing fragments.
/// The bytes depend only on the configurations, so every node builds the same init segment.
pub fn init_segment(tracks: &[TrackConfig]) -> Result<Vec<u8>, Fmp4Error> {
    let mut w = BoxWriter::with_capacity(1024);
    w.begin(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
        w.bytes(brand);
    }
    w.end()?;
    w.begin(b"moov");
    w.begin_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1_000); // timescale
    w.u32(0); // duration: unknown (fragmented)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24); // pre_defined
    w.u32(AUDIO_TRACK_ID + 1); // next_track_ID
    w.end()?;
    for track in tracks {
        write_trak(&mut w, track)?;
    }
    w.begin(b"mvex");
    for track in tracks {
        w.begin_full(b"trex", 0, 0);
        w.u32(track.track_id());
        w.u32(1); // default_sample_description_index
        w.u32(0); // default_sample_duration
        w.u32(0); // default_sample_size
        w.u32(0); // default_sample_flags
        w.end()?;
    }
    w.end()?; // mvex
    w.end()?; // moov
    w.finish()
}

fn write_trak(w: &mut BoxWriter, track: &TrackConfig) -> Result<(), Fmp4Error> {
    let video = track.is_video();
    let (width, height) = match track {
        TrackConfig::Avc { width, height, .. }
        | TrackConfig::Hevc { width, height, .. }
        | TrackConfig::Av1 { width, height, .. } => (*width, *height),
        _ => (0, 0),
    };
    w.begin(b"trak");
    w.begin_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.u32(0);
    w.u32(0);
    w.u32(track.track_id());
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if video { 0 } else { 0x0100 }); // volume
    w.u16(0);
    w.matrix();
    w.u32(u32::from(width) << 16);
    w.u32(u32::from(height) << 16);
    w.end()?;
    w.begin(b"mdia");
    w.begin_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(track.timescale());
    w.u32(0);
    w.u16(0x55C4); // language "und"
    w.u16(0);
    w.end()?;
    w.begin_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.end()?;
    w.begin(b"minf");
    if video {
        w.begin_full(b"vmhd", 0, 1);
        w.zeros(8);
    } else {
        w.begin_full(b"smhd", 0, 0);
        w.zeros(4);
    }
    w.end()?;
    w.begin(b"dinf");
    w.begin_full(b"dref", 0, 0);
    w.u32(1);
    w.begin_full(b"url ", 0, 1); // media in the same file
    w.end()?;
    w.end()?;
    w.end()?; // dinf
    w.begin(b"stbl");
    w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    write_sample_entry(w, track, width, height)?;
    w.end()?; // stsd
    for empty in [b"stts", b"stsc", b"stco"] {
        w.begin_full(empty, 0, 0);
        w.u32(0);
        w.end()?;
    }
    w.begin_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end()?;
    w.end()?; // stbl
    w.end()?; // minf
    w.end()?; // mdia
    w.end() // trak
}

fn write_sample_entry(
    w: &mut BoxWriter,
    track: &TrackConfig,
    width: u16,
    height: u16,
) -> Result<(), Fmp4Error> {
    match track {
        TrackConfig::Avc { record, .. }
        | TrackConfig::Hevc { record, .. }
        | TrackConfig::Av1 { record, .. } => {
            let (entry, config) = match track {
                TrackConfig::Avc { .. } => (b"avc1", b"avcC"),
                TrackConfig::Hevc { .. } => (b"hvc1", b"hvcC"),
                _ => (b"av01", b"av1C"),
            };
            w.begin(entry);
            w.zeros(6);
            w.u16(1); // data_reference_index
            w.zeros(16); // pre_defined, reserved
            w.u16(width);
            w.u16(height);
            w.u32(0x0048_0000); // 72 dpi
            w.u32(0x0048_0000);
            w.u32(0);
            w.u16(1); // frame_count
            w.zeros(32); // compressorname
            w.u16(0x0018); // depth
            w.u16(0xFFFF); // pre_defined = -1
            w.leaf(config, record)?;
            w.end()
        }
        TrackConfig::Aac {
            config,
            sample_rate,
            channels,
        } => {
            w.begin(b"mp4a");
            write_audio_entry_fields(w, *channels, *sample_rate);
            w.begin_full(b"esds", 0, 0);
            let specific = descriptor(0x05, config);
            let mut decoder = vec![0x40, 0x15, 0, 0, 0];
            decoder.extend_from_slice(&[0; 8]); // max and average bitrate unknown
            decoder.extend_from_slice(&specific);
            let decoder = descriptor(0x04, &decoder);
            let mut es = vec![0, 0, 0]; // ES_ID 0, no flags
            es.extend_from_slice(&decoder);
            es.extend_from_slice(&descriptor(0x06, &[0x02]));
            w.bytes(&descriptor(0x03, &es));
            w.end()?;
            w.end()
        }
        TrackConfig::Opus { dops, channels } => {
            w.begin(b"Opus");
            write_audio_entry_fields(w, *channels, 48_000);
            w.leaf(b"dOps", dops)?;
            w.end()
        }
    }
}

/// The AudioSampleEntry channelcount of an AAC channelConfiguration: its number of channels
/// (ISO/IEC 14496-3 table 1.19: configuration 7 is 7.1, eight channels; 11 to 14 name 6.1 and
/// 7.1 variants), or the entry's template value 2 for configuration 0, whose
/// program_config_element in the `esds` describes the channels, and for reserved numbers.
fn aac_channel_count(channel_configuration: u8) -> u16 {
    match channel_configuration {
        1..=6 => u16::from(channel_configuration),
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => 2,
    }
}

fn write_audio_entry_fields(w: &mut BoxWriter, channels: u16, sample_rate: u32) {
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(channels);
    w.u16(16); // samplesize
    w.zeros(4);
    // A 16.16 rate; rates above 65535 Hz do not fit and are written as 0.
    w.u32(u32::from(u16::try_from(sample_rate).unwrap_or(0)) << 16);
}

/// An MPEG-4 descriptor: tag, expandable size, body.
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    // Four 7-bit groups: descriptors here are far below 2^28 bytes.
    for shift in [21, 14, 7] {
        out.push(0x80 | ((len >> shift) & 0x7f) as u8);
    }
    out.push((len & 0x7f) as u8);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aac_channels(config: &[u8]) -> u16 {
        match TrackConfig::aac(config).unwrap() {
            TrackConfig::Aac { channels, .. } => channels,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_aac_sample_entry_counts_channels_not_the_configuration_number() {
        // AAC LC at 48 kHz: mono, 5.1, and 7.1 (channelConfiguration 7: eight channels).
        assert_eq!(aac_channels(&[0x11, 0x88]), 1);
        assert_eq!(aac_channels(&[0x11, 0xb0]), 6);
        assert_eq!(aac_channels(&[0x11, 0xb8, 0x56, 0xe5, 0x00]), 8);
        // channelConfiguration 0 (6.1 from ffmpeg's encoder): the program config element in the
        // esds tells the channels; the entry keeps its template value.
        assert_eq!(aac_channels(&[0x11, 0x80, 0x04, 0xc8, 0x48, 0x00, 0x20]), 2);
    }
}
