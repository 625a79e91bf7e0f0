//! Chunk stream decoding: bytes in, complete [`RawMessage`]s out.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::{
    ChunkError, RawMessage, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_CHUNK_STREAMS,
    DEFAULT_MAX_MESSAGE_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_SIZE, TYPE_ABORT,
    TYPE_SET_CHUNK_SIZE,
};

/// Smallest step the input buffer grows by while a chunk is incomplete.
const MIN_RESERVE: usize = 4096;

/// Limits that protect a connection from a hostile peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Longest message accepted, in bytes.
    pub max_message_size: u32,
    /// Most distinct chunk stream ids accepted on one connection.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
        }
    }
}

/// What one chunk stream remembers from its previous chunk (for header compression) and the
/// message it is assembling.
#[derive(Debug, Default)]
struct StreamState {
    csid: u32,
    timestamp: u32,
    /// The last timestamp field value (absolute after type 0, delta after type 1/2), including
    /// the extended timestamp when one was used.
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    message_stream_id: u32,
    /// Payload bytes still missing from the message in progress (0 = none in progress).
    remaining: u32,
    partial: BytesMut,
}

/// Decodes the chunk stream of one connection direction into complete messages.
///
/// Set Chunk Size and Abort messages take effect inside the decoder as soon as they are decoded
/// (later bytes depend on them); they are still returned so the session can see them.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    limits: ChunkLimits,
    streams: Vec<StreamState>,
    /// Index of the chunk stream used by the previous chunk; most chunks repeat it.
    last_slot: usize,
    consumed: u64,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(ChunkLimits::default())
    }
}

/// The parsed header of the chunk at the front of the buffer.
struct ChunkHeader {
    csid: u32,
    header_len: usize,
    new_message: bool,
    timestamp: u32,
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    message_stream_id: u32,
    payload_len: u32,
}

enum Parse {
    /// This many bytes must be buffered before the chunk can be decoded.
    Need(usize),
    Chunk(Option<usize>, ChunkHeader),
}

fn u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl ChunkDecoder {
    /// A decoder with the initial chunk size of 128 and the given limits.
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: Vec::new(),
            last_slot: 0,
            consumed: 0,
        }
    }

    /// The chunk size currently expected from the peer.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the incoming chunk size (normally done by a decoded Set Chunk Size message).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize { size, csid: 0 });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Total bytes of complete chunks consumed so far.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    fn slot_of(&mut self, csid: u32) -> Option<usize> {
        if self
            .streams
            .get(self.last_slot)
            .is_some_and(|s| s.csid == csid)
        {
            return Some(self.last_slot);
        }
        let slot = self.streams.iter().position(|s| s.csid == csid)?;
        self.last_slot = slot;
        Some(slot)
    }

    /// Parses the chunk header at the front of `src` without consuming anything.
    fn parse(&mut self, src: &[u8]) -> Result<Parse, ChunkError> {
        let Some(&b0) = src.first() else {
            return Ok(Parse::Need(1));
        };
        let fmt = b0 >> 6;
        let (csid, basic_len) = match b0 & 0x3F {
            0 => match src.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Parse::Need(2)),
            },
            1 => match (src.get(1), src.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(Parse::Need(3)),
            },
            n => (u32::from(n), 1),
        };
        let message_header_len = [11usize, 7, 3, 0][usize::from(fmt)];
        let mut header_len = basic_len + message_header_len;
        let Some(h) = src.get(basic_len..header_len) else {
            return Ok(Parse::Need(header_len));
        };
        let slot = self.slot_of(csid);
        let prev = match slot {
            Some(i) => self.streams.get(i),
            None if fmt != 0 => {
                return Err(ChunkError::UnknownChunkStream {
                    csid,
                    fmt,
                    offset: self.consumed,
                })
            }
            None if self.streams.len() >= self.limits.max_chunk_streams => {
                return Err(ChunkError::TooManyChunkStreams {
                    csid,
                    max: self.limits.max_chunk_streams,
                    offset: self.consumed,
                })
            }
            None => None,
        };
        let prev_in_progress = prev.is_some_and(|p| p.remaining > 0);
        let new_message = fmt != 3 || !prev_in_progress;
        let mut header = ChunkHeader {
            csid,
            header_len,
            new_message,
            timestamp: 0,
            ts_field: 0,
            extended: false,
            length: 0,
            type_id: 0,
            message_stream_id: 0,
            payload_len: 0,
        };
        if let Some(p) = prev {
            header.timestamp = p.timestamp;
            header.ts_field = p.ts_field;
            header.extended = p.extended;
            header.length = p.length;
            header.type_id = p.type_id;
            header.message_stream_id = p.message_stream_id;
        }
        if fmt <= 2 {
            let field = u24(h);
            header.extended = field == EXTENDED_TIMESTAMP_MARKER;
            header.ts_field = field;
            if fmt <= 1 {
                header.length = u24(&h[3..]);
                header.type_id = h[6];
            }
            if fmt == 0 {
                header.message_stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
        }
        if header.extended {
            let ext_end = header_len + 4;
            let Some(ext) = src.get(header_len..ext_end) else {
                return Ok(Parse::Need(ext_end));
            };
            let ext = u32_be(ext);
            if fmt <= 2 || new_message {
                header.ts_field = ext;
                header_len = ext_end;
            } else if ext == header.ts_field {
                // A continuation chunk repeating the extended timestamp (librtmp, ffmpeg and
                // Flash do this; some encoders do not, then these bytes are payload).
                header_len = ext_end;
            }
        }
        header.header_len = header_len;
        header.timestamp = match (fmt, new_message) {
            (0, _) => header.ts_field,
            (_, true) => header.timestamp.wrapping_add(header.ts_field),
            (_, false) => header.timestamp,
        };
        let remaining = match (new_message, prev) {
            (false, Some(p)) => p.remaining,
            _ => {
                if header.length > self.limits.max_message_size {
                    return Err(ChunkError::MessageTooLarge {
                        csid,
                        length: header.length,
                        max: self.limits.max_message_size,
                        offset: self.consumed,
                    });
                }
                header.length
            }
        };
        header.payload_len = remaining.min(self.chunk_size);
        let total = header_len + header.payload_len as usize;
        if src.len() < total {
            return Ok(Parse::Need(total));
        }
        Ok(Parse::Chunk(slot, header))
    }

    /// Applies Set Chunk Size and Abort, which change how the following bytes decode.
    fn apply_control(&mut self, message: &RawMessage) -> Result<(), ChunkError> {
        if message.message_stream_id != 0 {
            return Ok(());
        }
        let needed = 4;
        let field = match message.type_id {
            TYPE_SET_CHUNK_SIZE | TYPE_ABORT => match message.payload.get(..needed) {
                Some(b) => u32_be(b),
                None => {
                    return Err(ChunkError::ShortControlMessage {
                        type_id: message.type_id,
                        csid: message.chunk_stream_id,
                        len: message.payload.len(),
                        needed,
                    })
                }
            },
            _ => return Ok(()),
        };
        if message.type_id == TYPE_SET_CHUNK_SIZE {
            if field == 0 || field > MAX_CHUNK_SIZE {
                return Err(ChunkError::InvalidChunkSize {
                    size: field,
                    csid: message.chunk_stream_id,
                });
            }
            self.chunk_size = field;
        } else if let Some(slot) = self.slot_of(field) {
            if let Some(stream) = self.streams.get_mut(slot) {
                stream.remaining = 0;
                stream.partial = BytesMut::new();
            }
        }
        Ok(())
    }
}

/// The type 3 basic header of continuation chunks on `csid`.
fn continuation_header(csid: u32) -> ([u8; 3], usize) {
    // csid was decoded from a basic header, so it is within 2..=65599 and each form fits.
    match csid {
        0..=63 => ([0xC0 | csid as u8, 0, 0], 1),
        64..=319 => ([0xC0, (csid - 64) as u8, 0], 2),
        _ => {
            let [lo, hi] = ((csid - 64) as u16).to_le_bytes();
            ([0xC1, lo, hi], 3)
        }
    }
}

/// Walks the continuation chunks of the multi-chunk message whose first chunk starts at
/// `src[0]`. Returns where its last chunk ends when every continuation is a type 3 chunk on the
/// same chunk stream and fully buffered; `None` when chunks interleave or bytes are missing.
fn contiguous_message_end(src: &[u8], header: &ChunkHeader, chunk_size: u32) -> Option<usize> {
    let (basic, basic_len) = continuation_header(header.csid);
    let mut pos = header.header_len + header.payload_len as usize;
    let mut remaining = header.length - header.payload_len;
    while remaining > 0 {
        if src.get(pos..pos + basic_len)? != &basic[..basic_len] {
            return None;
        }
        pos += basic_len;
        if header.extended && u32_be(src.get(pos..pos + 4)?) == header.ts_field {
            pos += 4;
        }
        let take = remaining.min(chunk_size);
        pos += take as usize;
        if pos > src.len() {
            return None;
        }
        remaining -= take;
    }
    Some(pos)
}

/// Moves the payload pieces of a message checked by [`contiguous_message_end`] to the front of
/// `buf`, which starts right after the first chunk's header and ends with the last chunk.
fn compact_in_place(buf: &mut [u8], header: &ChunkHeader, chunk_size: u32) {
    let (_, basic_len) = continuation_header(header.csid);
    let mut write = header.payload_len as usize;
    let mut read = write;
    let mut remaining = header.length - header.payload_len;
    while remaining > 0 {
        read += basic_len;
        if header.extended && buf.get(read..read + 4).map(u32_be) == Some(header.ts_field) {
            read += 4;
        }
        let take = remaining.min(chunk_size) as usize;
        buf.copy_within(read..read + take, write);
        read += take;
        write += take;
        remaining -= take as u32;
    }
}

impl ChunkDecoder {
    /// Bytes of capacity held by messages in progress (what a peer's partial messages cost).
    pub fn buffered_capacity(&self) -> usize {
        self.streams.iter().map(|s| s.partial.capacity()).sum()
    }
}

impl Decoder for ChunkDecoder {
    type Item = RawMessage;
    type Error = ChunkError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let (slot, header) = match self.parse(src)? {
                Parse::Need(total) => {
                    // Grow with what the peer sent, not with what it declared: a header may
                    // announce a 16 MiB chunk and never send it.
                    let missing = total.saturating_sub(src.len());
                    src.reserve(missing.min(src.len().max(MIN_RESERVE)));
                    return Ok(None);
                }
                Parse::Chunk(slot, header) => (slot, header),
            };
            let contiguous = if header.new_message && header.payload_len < header.length {
                contiguous_message_end(src, &header, self.chunk_size)
            } else {
                None
            };
            let slot = match slot {
                Some(slot) => slot,
                None => {
                    self.streams.push(StreamState {
                        csid: header.csid,
                        ..StreamState::default()
                    });
                    self.streams.len() - 1
                }
            };
            self.last_slot = slot;
            let payload_len = header.payload_len as usize;
            self.consumed += (header.header_len + payload_len) as u64;
            src.advance(header.header_len);
            let Some(stream) = self.streams.get_mut(slot) else {
                unreachable!("slot was just found or pushed");
            };
            stream.timestamp = header.timestamp;
            stream.ts_field = header.ts_field;
            stream.extended = header.extended;
            stream.length = header.length;
            stream.type_id = header.type_id;
            stream.message_stream_id = header.message_stream_id;
            let payload = if header.new_message && header.payload_len == header.length {
                // The whole message is in one chunk: hand the bytes over without copying.
                stream.remaining = 0;
                stream.partial = BytesMut::new();
                src.split_to(payload_len).freeze()
            } else if let Some(end) = contiguous.filter(|_| header.new_message) {
                // Every chunk of the message is buffered back to back: close the header gaps in
                // place and hand the payload over without allocating.
                stream.remaining = 0;
                stream.partial = BytesMut::new();
                let length = header.length as usize;
                let span = end - header.header_len;
                self.consumed += (span - payload_len) as u64;
                compact_in_place(&mut src[..span], &header, self.chunk_size);
                let payload = src.split_to(length).freeze();
                src.advance(span - length);
                payload
            } else {
                if header.new_message {
                    stream.remaining = header.length;
                    // Sized by the bytes at hand; later chunks grow it as they arrive.
                    stream.partial = BytesMut::with_capacity(payload_len);
                }
                stream.partial.extend_from_slice(&src[..payload_len]);
                src.advance(payload_len);
                stream.remaining -= header.payload_len;
                if stream.remaining > 0 {
                    continue;
                }
                std::mem::take(&mut stream.partial).freeze()
            };
            let message = RawMessage {
                chunk_stream_id: header.csid,
                timestamp: header.timestamp,
                type_id: header.type_id,
                message_stream_id: header.message_stream_id,
                payload,
            };
            self.apply_control(&message)?;
            return Ok(Some(message));
        }
    }
}
