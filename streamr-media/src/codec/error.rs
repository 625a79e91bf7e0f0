//! Errors of the codec configuration parsers and sample converters.

use thiserror::Error;

/// Why a codec configuration record or a coded sample could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A record ended before a field it announces.
    #[error("{record} truncated reading {field} at offset {offset}")]
    Truncated {
        /// The record being parsed (for example `AVCDecoderConfigurationRecord`).
        record: &'static str,
        /// The field being read.
        field: &'static str,
        /// Byte offset of that field in the record.
        offset: usize,
    },
    /// The record's configurationVersion is not 1.
    #[error("{record} has unsupported configuration version {version} at offset 0")]
    UnsupportedVersion {
        /// The record being parsed.
        record: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// The NAL unit length field size is not 1, 2 or 4 bytes.
    #[error("{record} declares an invalid NAL unit length size of {size} bytes")]
    InvalidNalLengthSize {
        /// The record being parsed.
        record: &'static str,
        /// The declared size.
        size: u8,
    },
    /// A NAL unit length inside a sample runs past the end of the sample.
    #[error("NAL unit at offset {offset} of a {sample_len}-byte sample declares {length} bytes")]
    NalLengthOverrun {
        /// Offset of the length field in the sample.
        offset: usize,
        /// The declared NAL unit length.
        length: usize,
        /// The sample length.
        sample_len: usize,
    },
    /// An AudioSpecificConfig value that ADTS cannot carry.
    #[error("AudioSpecificConfig {field} = {value} cannot be carried in ADTS")]
    UnsupportedAudioConfig {
        /// The field (audio object type, sampling frequency index, channel configuration).
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// An AAC frame too large for the 13-bit ADTS frame length.
    #[error("AAC frame of {len} bytes is too large for an ADTS header")]
    AdtsFrameTooLarge {
        /// The raw frame length.
        len: usize,
    },
}
