//! Chunk stream encoding: [`RawMessage`]s in, chunk bytes out.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::{
    ChunkError, RawMessage, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_SIZE,
    MAX_CHUNK_STREAM_ID, MIN_CHUNK_STREAM_ID, TYPE_SET_CHUNK_SIZE,
};

/// The header last sent on one chunk stream, for header compression.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    csid: u32,
    timestamp: u32,
    /// Timestamp field of the last header: a delta when `delta_based`, else absolute.
    ts_field: u32,
    delta_based: bool,
    length: u32,
    type_id: u8,
    message_stream_id: u32,
}

/// Encodes messages into chunks for one connection direction, compressing headers (types 1-3)
/// against what was last sent on the same chunk stream.
///
/// Encoding a Set Chunk Size message (on message stream 0, the only one where [`ChunkDecoder`]
/// applies it) switches the encoder to the new size for every later message, so the
/// announcement and the change can never get out of step.
///
/// [`ChunkDecoder`]: super::ChunkDecoder
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    sent: Vec<SentHeader>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

fn write_basic_header(dst: &mut BytesMut, fmt: u8, csid: u32) {
    let fmt = fmt << 6;
    match csid {
        // Callers validate csid to 2..=65599, so each arm's value fits its field.
        0..=63 => dst.put_u8(fmt | csid as u8),
        64..=319 => {
            dst.put_u8(fmt);
            dst.put_u8((csid - 64) as u8);
        }
        _ => {
            dst.put_u8(fmt | 1);
            dst.put_u16_le((csid - 64) as u16);
        }
    }
}

fn put_u24(dst: &mut BytesMut, value: u32) {
    dst.put_slice(&value.to_be_bytes()[1..]);
}

fn validate(message: &RawMessage) -> Result<u32, ChunkError> {
    let csid = message.chunk_stream_id;
    if !(MIN_CHUNK_STREAM_ID..=MAX_CHUNK_STREAM_ID).contains(&csid) {
        return Err(ChunkError::InvalidChunkStreamId { csid });
    }
    let length = message.payload.len();
    match u32::try_from(length) {
        Ok(len) if len <= 0x00FF_FFFF => Ok(len),
        _ => Err(ChunkError::PayloadTooLong { csid, length }),
    }
}

/// Writes `payload` as chunks of `chunk_size`: the first after the header the caller already
/// wrote, the rest behind type 3 headers (repeating the extended timestamp when `extended`).
fn write_chunks(
    dst: &mut BytesMut,
    csid: u32,
    chunk_size: u32,
    extended: Option<u32>,
    payload: &[u8],
) {
    let mut chunks = payload.chunks(chunk_size as usize);
    if let Some(first) = chunks.next() {
        dst.put_slice(first);
    }
    for chunk in chunks {
        write_basic_header(dst, 3, csid);
        if let Some(ext) = extended {
            dst.put_u32(ext);
        }
        dst.put_slice(chunk);
    }
}

fn header_room(payload_len: usize, chunk_size: u32) -> usize {
    let chunks = payload_len / (chunk_size as usize).max(1) + 1;
    // Worst case per chunk: 3-byte basic header + 4-byte extended timestamp; plus one full header.
    payload_len + chunks * 7 + 11
}

/// Chunks one message into a self-contained byte run that any connection can write unchanged.
///
/// This is the fan-out hot path: the relay calls it once per media message and per outgoing
/// chunk size, then writes the same `Bytes` to every viewer using that chunk size.
///
/// # Contract
/// - The first chunk carries a type 0 header (absolute timestamp, length, type, message stream
///   id); continuations are type 3 and repeat the extended timestamp when the timestamp is
///   `0xFFFFFF` or more. The bytes therefore do not depend on what a connection sent before.
/// - `chunk_size` must equal the outgoing chunk size the connection announced.
/// - The message is only valid on connections whose playing message stream id equals
///   `message.message_stream_id` (the server session gives the first created stream id 1).
/// - The chunk stream id must be one reserved for shared media (see
///   [`crate::rtmp::session::AUDIO_CHUNK_STREAM_ID`] and its siblings), never used by the
///   connection's own [`ChunkEncoder`], so its header-compression state is never disturbed.
/// - Shared bytes must be written between whole messages of the session's own output: write
///   everything the session queued (it only ever queues complete messages) before or after a
///   shared message, never in the middle of one.
pub fn encode_shared_media(message: &RawMessage, chunk_size: u32) -> Result<Bytes, ChunkError> {
    let length = validate(message)?;
    let csid = message.chunk_stream_id;
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(ChunkError::InvalidChunkSize {
            size: chunk_size,
            csid,
        });
    }
    let mut dst = BytesMut::with_capacity(header_room(message.payload.len(), chunk_size));
    let extended = (message.timestamp >= EXTENDED_TIMESTAMP_MARKER).then_some(message.timestamp);
    write_basic_header(&mut dst, 0, csid);
    put_u24(&mut dst, message.timestamp.min(EXTENDED_TIMESTAMP_MARKER));
    put_u24(&mut dst, length);
    dst.put_u8(message.type_id);
    dst.put_u32_le(message.message_stream_id);
    if let Some(ext) = extended {
        dst.put_u32(ext);
    }
    write_chunks(&mut dst, csid, chunk_size, extended, &message.payload);
    Ok(dst.freeze())
}

impl ChunkEncoder {
    /// An encoder with the initial chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            sent: Vec::new(),
        }
    }

    /// The chunk size used for outgoing chunks.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the outgoing chunk size without sending Set Chunk Size (the caller announces it).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize { size, csid: 0 });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Forgets the compression state of `csid` so its next message gets a type 0 header (used
    /// after shared chunks were written on it).
    pub fn reset_chunk_stream(&mut self, csid: u32) {
        self.sent.retain(|s| s.csid != csid);
    }
}

impl Encoder<RawMessage> for ChunkEncoder {
    type Error = ChunkError;

    fn encode(&mut self, message: RawMessage, dst: &mut BytesMut) -> Result<(), ChunkError> {
        self.encode_ref(&message, dst)
    }
}

impl Encoder<&RawMessage> for ChunkEncoder {
    type Error = ChunkError;

    fn encode(&mut self, message: &RawMessage, dst: &mut BytesMut) -> Result<(), ChunkError> {
        self.encode_ref(message, dst)
    }
}

impl ChunkEncoder {
    fn encode_ref(&mut self, message: &RawMessage, dst: &mut BytesMut) -> Result<(), ChunkError> {
        let length = validate(message)?;
        let csid = message.chunk_stream_id;
        // Like the decoder, only a Set Chunk Size on message stream 0 is the protocol control
        // message: one on another message stream is ordinary data and changes nothing.
        let new_chunk_size =
            if message.type_id == TYPE_SET_CHUNK_SIZE && message.message_stream_id == 0 {
                match message.payload.get(..4) {
                    Some(b) => {
                        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        if size == 0 || size > MAX_CHUNK_SIZE {
                            return Err(ChunkError::InvalidChunkSize { size, csid });
                        }
                        Some(size)
                    }
                    None => {
                        return Err(ChunkError::ShortControlMessage {
                            type_id: TYPE_SET_CHUNK_SIZE,
                            csid,
                            len: message.payload.len(),
                            needed: 4,
                        })
                    }
                }
            } else {
                None
            };
        dst.reserve(header_room(message.payload.len(), self.chunk_size));
        let prev_slot = self.sent.iter().position(|s| s.csid == csid);
        let prev = prev_slot.and_then(|i| self.sent.get(i)).copied();
        let next = |ts_field: u32, delta_based: bool| SentHeader {
            csid,
            timestamp: message.timestamp,
            ts_field,
            delta_based,
            length,
            type_id: message.type_id,
            message_stream_id: message.message_stream_id,
        };
        let (fmt, sent) = match prev {
            Some(p)
                if p.message_stream_id == message.message_stream_id
                    && message.timestamp >= p.timestamp =>
            {
                let delta = message.timestamp - p.timestamp;
                let same_shape = p.length == length && p.type_id == message.type_id;
                if same_shape && p.delta_based && p.ts_field == delta {
                    (3, next(delta, true))
                } else if same_shape {
                    (2, next(delta, true))
                } else {
                    (1, next(delta, true))
                }
            }
            _ => (0, next(message.timestamp, false)),
        };
        let extended = (sent.ts_field >= EXTENDED_TIMESTAMP_MARKER).then_some(sent.ts_field);
        write_basic_header(dst, fmt, csid);
        if fmt <= 2 {
            put_u24(dst, sent.ts_field.min(EXTENDED_TIMESTAMP_MARKER));
        }
        if fmt <= 1 {
            put_u24(dst, length);
            dst.put_u8(message.type_id);
        }
        if fmt == 0 {
            dst.put_u32_le(message.message_stream_id);
        }
        if let Some(ext) = extended {
            dst.put_u32(ext);
        }
        write_chunks(dst, csid, self.chunk_size, extended, &message.payload);
        match prev_slot.and_then(|i| self.sent.get_mut(i)) {
            Some(slot) => *slot = sent,
            None => self.sent.push(sent),
        }
        if let Some(size) = new_chunk_size {
            self.chunk_size = size;
        }
        Ok(())
    }
}
