//! Codec configuration records: H.264 (AVCDecoderConfigurationRecord), HEVC (hvcC), AV1 (av1C)
//! and AAC (AudioSpecificConfig).
//!
//! Each record parses from the payload of an FLV sequence header and converts the samples that
//! follow into the elementary-stream form MPEG-TS carries: Annex-B with access unit delimiters and
//! in-band parameter sets for video, ADTS-framed frames for AAC.
//!
//! ```
//! use streamr_media::codec::AudioSpecificConfig;
//!
//! // AAC LC, 44.1 kHz, stereo.
//! let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
//! assert_eq!(asc.sampling_frequency(), Some(44_100));
//! let header = asc.adts_header(100).unwrap();
//! assert_eq!(&header[..2], &[0xFF, 0xF1]);
//! ```

mod aac;
mod av1;
mod avc;
mod cursor;
mod error;
mod hevc;
mod nal;

pub use aac::{AdtsConfig, AudioSpecificConfig, ADTS_HEADER_LEN};
pub use av1::{
    obus, without_temporal_delimiters, Av1Config, Obu, AV1_OBU_SEQUENCE_HEADER,
    AV1_OBU_TEMPORAL_DELIMITER,
};
pub use avc::{AvcDecoderConfig, AVC_NAL_AUD, AVC_NAL_IDR, AVC_NAL_PPS, AVC_NAL_SPS};
pub use error::CodecError;
pub use hevc::{
    HevcDecoderConfig, HevcNalArray, HEVC_NAL_AUD, HEVC_NAL_PPS, HEVC_NAL_SPS, HEVC_NAL_VPS,
};
pub use nal::START_CODE;

/// Parses any codec configuration record from arbitrary bytes, for fuzzing: every parser must
/// return an error on bad input, never panic. Returns how many parsers accepted the bytes.
pub fn parse_any_config(data: &[u8]) -> usize {
    let mut accepted = 0;
    if let Ok(avc) = AvcDecoderConfig::parse(data) {
        accepted += 1;
        let mut out = Vec::new();
        let _ = avc.write_annexb(data, &mut out);
    }
    if let Ok(hevc) = HevcDecoderConfig::parse(data) {
        accepted += 1;
        let mut out = Vec::new();
        let _ = hevc.write_annexb(data, &mut out);
    }
    if let Ok(av1) = Av1Config::parse(data) {
        accepted += 1;
        let _ = av1.max_frame_size();
        let _ = without_temporal_delimiters(bytes::Bytes::copy_from_slice(data));
    }
    if let Ok(asc) = AudioSpecificConfig::parse(data) {
        accepted += 1;
        let _ = asc.adts_header(data.len());
    }
    if let Ok(adts) = AdtsConfig::parse(data) {
        let _ = adts.adts_header(data.len());
    }
    accepted
}
