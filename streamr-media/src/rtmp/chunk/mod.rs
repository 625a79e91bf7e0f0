//! The RTMP chunk stream: messages split into chunks on interleaved chunk streams.
//!
//! [`ChunkDecoder`] and [`ChunkEncoder`] are `tokio_util` codecs, usable with `FramedRead` /
//! `FramedWrite` or driven by hand from a sans-IO session. [`encode_shared_media`] chunks one media
//! message once into bytes that every connection can write unchanged.

mod decoder;
mod encoder;

pub use decoder::{ChunkDecoder, ChunkLimits};
pub use encoder::{encode_shared_media, ChunkEncoder};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Chunk size every RTMP connection starts with in both directions.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size Set Chunk Size may announce (the top bit must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Default limit on the length of one message (16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 16 * 1024 * 1024;
/// Default limit on distinct chunk stream ids per connection.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;
/// Lowest chunk stream id a chunk may use (0 and 1 only select the longer basic header forms).
pub const MIN_CHUNK_STREAM_ID: u32 = 2;
/// Highest chunk stream id the three-byte basic header can carry.
pub const MAX_CHUNK_STREAM_ID: u32 = 65599;

/// Message type id of Set Chunk Size.
pub(crate) const TYPE_SET_CHUNK_SIZE: u8 = 1;
/// Message type id of Abort.
pub(crate) const TYPE_ABORT: u8 = 2;
/// A timestamp field of this value means the real value is in the extended timestamp.
pub(crate) const EXTENDED_TIMESTAMP_MARKER: u32 = 0x00FF_FFFF;

/// One complete RTMP message as carried by the chunk stream, before type-specific decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream the message arrived on, or is to be sent on (2..=65599).
    pub chunk_stream_id: u32,
    /// Absolute timestamp in milliseconds (wraps at 2^32).
    pub timestamp: u32,
    /// Message type id (1 Set Chunk Size, 8 audio, 9 video, 20 AMF0 command...).
    pub type_id: u8,
    /// Message stream id (0 for connection-level messages).
    pub message_stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// Errors from the chunk stream layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A type 1, 2 or 3 chunk referred to a chunk stream that never had a type 0 chunk.
    #[error(
        "chunk of header type {fmt} on unknown chunk stream {csid} at byte {offset}: \
         the first chunk on a chunk stream must have a type 0 header"
    )]
    UnknownChunkStream {
        /// The chunk stream id.
        csid: u32,
        /// The chunk header type (1, 2 or 3).
        fmt: u8,
        /// Byte offset of the chunk in the decoded stream.
        offset: u64,
    },
    /// A message announced a length above the configured limit.
    #[error(
        "message of {length} bytes on chunk stream {csid} at byte {offset} exceeds the \
         {max}-byte limit"
    )]
    MessageTooLarge {
        /// The chunk stream id.
        csid: u32,
        /// The announced message length.
        length: u32,
        /// The configured limit.
        max: u32,
        /// Byte offset of the chunk in the decoded stream.
        offset: u64,
    },
    /// The peer opened more chunk streams than allowed.
    #[error("chunk stream {csid} at byte {offset} would exceed the limit of {max} chunk streams")]
    TooManyChunkStreams {
        /// The chunk stream id that would be one too many.
        csid: u32,
        /// The configured limit.
        max: usize,
        /// Byte offset of the chunk in the decoded stream.
        offset: u64,
    },
    /// Set Chunk Size announced 0 or a value with the top bit set.
    #[error("Set Chunk Size to {size} on chunk stream {csid} is invalid (allowed 1..=2147483647)")]
    InvalidChunkSize {
        /// The announced size.
        size: u32,
        /// Chunk stream the message arrived on (or was to be sent on).
        csid: u32,
    },
    /// A protocol control message was too short for its fields.
    #[error("protocol control message type {type_id} on chunk stream {csid} has {len} bytes, needs {needed}")]
    ShortControlMessage {
        /// The message type id.
        type_id: u8,
        /// The chunk stream id.
        csid: u32,
        /// The payload length received.
        len: usize,
        /// The length required.
        needed: usize,
    },
    /// A message to encode names a chunk stream id outside 2..=65599.
    #[error("chunk stream id {csid} is outside 2..=65599")]
    InvalidChunkStreamId {
        /// The chunk stream id.
        csid: u32,
    },
    /// A message to encode is longer than the 24-bit length field allows.
    #[error(
        "message of {length} bytes on chunk stream {csid} does not fit the 24-bit length field"
    )]
    PayloadTooLong {
        /// The chunk stream id.
        csid: u32,
        /// The payload length.
        length: usize,
    },
    /// Reading from or writing to the transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes a whole recorded chunk stream (no handshake) into its messages.
///
/// Trailing bytes of an incomplete chunk are ignored. Used to inspect captures, by the chunk
/// decoder fuzz target and by its seed-corpus test.
pub fn decode_chunk_stream(
    bytes: &[u8],
    limits: ChunkLimits,
) -> Result<Vec<RawMessage>, ChunkError> {
    let mut decoder = ChunkDecoder::new(limits);
    let mut buf = BytesMut::from(bytes);
    let mut messages = Vec::new();
    while let Some(message) = decoder.decode(&mut buf)? {
        messages.push(message);
    }
    Ok(messages)
}

#[cfg(test)]
mod tests;
