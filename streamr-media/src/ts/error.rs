//! Errors of the MPEG-TS muxer.

use thiserror::Error;

use crate::codec::CodecError;
use crate::flv::tag::{Codec, MediaKind, TagError};

/// Why a tag could not be muxed into MPEG-TS. Each variant names the tag's timestamp; the muxer
/// stays usable for the tags that follow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TsError {
    /// The tag body's audio/video header could not be classified.
    #[error("tag at {timestamp} ms: {source}")]
    Tag {
        /// The tag timestamp in milliseconds.
        timestamp: u32,
        /// What was wrong with the header.
        source: TagError,
    },
    /// A sequence header or coded sample was malformed.
    #[error("{kind:?} tag at {timestamp} ms: {source}")]
    Codec {
        /// Audio or video.
        kind: MediaKind,
        /// The tag timestamp in milliseconds.
        timestamp: u32,
        /// What was wrong with the payload.
        source: CodecError,
    },
    /// A coded frame arrived before the sequence header that configures its decoder.
    #[error("{kind:?} frame at {timestamp} ms arrived before its sequence header")]
    MissingSequenceHeader {
        /// Audio or video.
        kind: MediaKind,
        /// The tag timestamp in milliseconds.
        timestamp: u32,
    },
    /// The codec cannot be carried by this muxer (only H.264, HEVC, AAC and MP3 are).
    #[error("{kind:?} codec {codec:?} at {timestamp} ms is not supported in MPEG-TS output")]
    UnsupportedCodec {
        /// Audio or video.
        kind: MediaKind,
        /// The codec found.
        codec: Codec,
        /// The tag timestamp in milliseconds.
        timestamp: u32,
    },
    /// An MP3 tag does not start with an MPEG audio frame header.
    #[error("MP3 tag at {timestamp} ms does not start with an MPEG audio frame header")]
    MalformedMpegAudio {
        /// The tag timestamp in milliseconds.
        timestamp: u32,
    },
    /// An audio PES packet would exceed the 16-bit PES_packet_length.
    #[error("audio frame of {len} bytes at {timestamp} ms is too large for one PES packet")]
    PesTooLarge {
        /// The payload length.
        len: usize,
        /// The tag timestamp in milliseconds.
        timestamp: u32,
    },
}
