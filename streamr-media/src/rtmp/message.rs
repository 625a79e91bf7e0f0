//! Typed RTMP messages decoded from and encoded to [`RawMessage`]s.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::chunk::RawMessage;
use crate::amf0::{self, Amf0Error, Amf0Value};

/// Message type ids.
pub mod type_id {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User control event.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 flavour.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object, AMF3 flavour.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 flavour (a 0x00 format byte, then AMF0).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object, AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0 (`connect`, `publish`, `play`...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate: several audio/video/data sub-messages in one.
    pub const AGGREGATE: u8 = 22;
}

/// How a Set Peer Bandwidth limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerBandwidthLimit {
    /// Limit output to the window size.
    Hard,
    /// Limit to the window size or the limit already in effect, whichever is smaller.
    Soft,
    /// Hard if the previous limit was hard, else ignore.
    Dynamic,
}

/// A user control event (message type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserControlEvent {
    /// The stream became functional (sent before media on a play or publish).
    StreamBegin(u32),
    /// Playback of the stream is over.
    StreamEof(u32),
    /// No more data on the stream for now.
    StreamDry(u32),
    /// The client's buffer length in milliseconds for a stream.
    SetBufferLength {
        /// The message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// The stream is a recorded stream.
    StreamIsRecorded(u32),
    /// Server asks the client to echo a timestamp.
    PingRequest(u32),
    /// Client's answer to a ping request.
    PingResponse(u32),
    /// An event type this library does not interpret.
    Other {
        /// The event type.
        event_type: u16,
        /// The event data.
        data: Bytes,
    },
}

/// An AMF command (`connect`, `createStream`, `publish`, `_result`, `onStatus`...).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command name.
    pub name: String,
    /// The transaction id (0 when no reply is expected).
    pub transaction_id: f64,
    /// The command object (often `Null`).
    pub command_object: Amf0Value,
    /// Further arguments.
    pub arguments: Vec<Amf0Value>,
}

impl Command {
    /// The `index`-th string argument, if present.
    pub fn string_argument(&self, index: usize) -> Option<&str> {
        self.arguments.get(index).and_then(Amf0Value::as_str)
    }

    /// The `index`-th number argument, if present.
    pub fn number_argument(&self, index: usize) -> Option<f64> {
        self.arguments.get(index).and_then(Amf0Value::as_number)
    }
}

/// A typed RTMP message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RtmpMessage {
    /// Set Chunk Size: the sender's new chunk size.
    SetChunkSize(u32),
    /// Abort: drop the partial message on a chunk stream.
    Abort {
        /// The chunk stream to abort.
        chunk_stream_id: u32,
    },
    /// Acknowledgement: total bytes received so far.
    Acknowledgement {
        /// Bytes received (wrapping).
        sequence_number: u32,
    },
    /// A user control event.
    UserControl(UserControlEvent),
    /// Window Acknowledgement Size: acknowledge after this many bytes.
    WindowAckSize(u32),
    /// Set Peer Bandwidth.
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// How the limit applies.
        limit: PeerBandwidthLimit,
    },
    /// Audio data (an FLV audio tag body).
    Audio(Bytes),
    /// Video data (an FLV video tag body).
    Video(Bytes),
    /// A command (type 20, or type 17 when `amf3` is set).
    Command {
        /// The command.
        command: Command,
        /// Whether it arrived as an AMF3 command message (type 17).
        amf3: bool,
    },
    /// A data message (type 18, or type 15 when `amf3` is set), e.g. `@setDataFrame`.
    Data {
        /// The AMF values.
        values: Vec<Amf0Value>,
        /// Whether it arrived as an AMF3 data message (type 15).
        amf3: bool,
    },
    /// An aggregate message body; see [`split_aggregate`].
    Aggregate(Bytes),
    /// A message type this library does not interpret (shared objects, unknown ids).
    Other {
        /// The message type id.
        type_id: u8,
        /// The message body.
        payload: Bytes,
    },
}

/// Errors from decoding typed messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A message too short for its fixed fields.
    #[error("message type {type_id} has {len} bytes, needs at least {needed}")]
    TooShort {
        /// The message type id.
        type_id: u8,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The AMF body of a command or data message did not decode.
    #[error("AMF0 body of message type {type_id} is invalid: {source}")]
    Amf {
        /// The message type id.
        type_id: u8,
        /// What was wrong.
        source: Amf0Error,
    },
    /// A command message without a leading name string and transaction id.
    #[error("command message type {type_id} lacks {missing}")]
    MalformedCommand {
        /// The message type id.
        type_id: u8,
        /// The missing element.
        missing: &'static str,
    },
    /// A sub-message of an aggregate overruns the aggregate.
    #[error("aggregate sub-message at offset {offset} overruns the {len}-byte aggregate")]
    AggregateOverrun {
        /// Offset of the sub-message header.
        offset: usize,
        /// Total aggregate length.
        len: usize,
    },
}

fn fixed<const N: usize>(type_id: u8, payload: &[u8]) -> Result<[u8; N], MessageError> {
    let bytes = payload.get(..N).ok_or(MessageError::TooShort {
        type_id,
        len: payload.len(),
        needed: N,
    })?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn u32_field(type_id: u8, payload: &[u8]) -> Result<u32, MessageError> {
    Ok(u32::from_be_bytes(fixed(type_id, payload)?))
}

fn amf_values(type_id: u8, body: &[u8]) -> Result<Vec<Amf0Value>, MessageError> {
    amf0::decode_all(body).map_err(|source| MessageError::Amf { type_id, source })
}

/// Strips the format byte AMF3 command/data messages put in front of their AMF0 body.
fn amf3_body(payload: &[u8]) -> &[u8] {
    match payload.first() {
        Some(0) => payload.get(1..).unwrap_or_default(),
        _ => payload,
    }
}

fn decode_user_control(payload: &Bytes) -> Result<UserControlEvent, MessageError> {
    let t = type_id::USER_CONTROL;
    let event_type = u16::from_be_bytes(fixed(t, payload)?);
    let data = payload.slice(2..);
    let id = || u32_field(t, &data).map_err(|_| too_short(t, payload.len(), 6));
    Ok(match event_type {
        0 => UserControlEvent::StreamBegin(id()?),
        1 => UserControlEvent::StreamEof(id()?),
        2 => UserControlEvent::StreamDry(id()?),
        3 => {
            let both: [u8; 8] = fixed(t, &data).map_err(|_| too_short(t, payload.len(), 10))?;
            UserControlEvent::SetBufferLength {
                stream_id: u32::from_be_bytes([both[0], both[1], both[2], both[3]]),
                buffer_ms: u32::from_be_bytes([both[4], both[5], both[6], both[7]]),
            }
        }
        4 => UserControlEvent::StreamIsRecorded(id()?),
        6 => UserControlEvent::PingRequest(id()?),
        7 => UserControlEvent::PingResponse(id()?),
        event_type => UserControlEvent::Other { event_type, data },
    })
}

fn too_short(type_id: u8, len: usize, needed: usize) -> MessageError {
    MessageError::TooShort {
        type_id,
        len,
        needed,
    }
}

fn decode_command(type_id: u8, body: &[u8]) -> Result<Command, MessageError> {
    let mut values = amf_values(type_id, body)?.into_iter();
    let name = match values.next() {
        Some(Amf0Value::String(s) | Amf0Value::LongString(s)) => s,
        _ => {
            return Err(MessageError::MalformedCommand {
                type_id,
                missing: "a command name string",
            })
        }
    };
    // Some clients omit the transaction id and object on notifications; default them.
    let transaction_id = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
    let command_object = values.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        command_object,
        arguments: values.collect(),
    })
}

impl RtmpMessage {
    /// Decodes the body of `raw` according to its type id.
    pub fn decode(raw: &RawMessage) -> Result<RtmpMessage, MessageError> {
        let t = raw.type_id;
        let p = &raw.payload;
        Ok(match t {
            type_id::SET_CHUNK_SIZE => RtmpMessage::SetChunkSize(u32_field(t, p)? & 0x7FFF_FFFF),
            type_id::ABORT => RtmpMessage::Abort {
                chunk_stream_id: u32_field(t, p)?,
            },
            type_id::ACKNOWLEDGEMENT => RtmpMessage::Acknowledgement {
                sequence_number: u32_field(t, p)?,
            },
            type_id::USER_CONTROL => RtmpMessage::UserControl(decode_user_control(p)?),
            type_id::WINDOW_ACK_SIZE => RtmpMessage::WindowAckSize(u32_field(t, p)?),
            type_id::SET_PEER_BANDWIDTH => {
                let b: [u8; 5] = fixed(t, p)?;
                RtmpMessage::SetPeerBandwidth {
                    size: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    limit: match b[4] {
                        0 => PeerBandwidthLimit::Hard,
                        1 => PeerBandwidthLimit::Soft,
                        _ => PeerBandwidthLimit::Dynamic,
                    },
                }
            }
            type_id::AUDIO => RtmpMessage::Audio(p.clone()),
            type_id::VIDEO => RtmpMessage::Video(p.clone()),
            type_id::COMMAND_AMF0 => RtmpMessage::Command {
                command: decode_command(t, p)?,
                amf3: false,
            },
            type_id::COMMAND_AMF3 => RtmpMessage::Command {
                command: decode_command(t, amf3_body(p))?,
                amf3: true,
            },
            type_id::DATA_AMF0 => RtmpMessage::Data {
                values: amf_values(t, p)?,
                amf3: false,
            },
            type_id::DATA_AMF3 => RtmpMessage::Data {
                values: amf_values(t, amf3_body(p))?,
                amf3: true,
            },
            type_id::AGGREGATE => RtmpMessage::Aggregate(p.clone()),
            type_id => RtmpMessage::Other {
                type_id,
                payload: p.clone(),
            },
        })
    }

    /// The message type id this message is sent with.
    pub fn type_id(&self) -> u8 {
        match self {
            RtmpMessage::SetChunkSize(_) => type_id::SET_CHUNK_SIZE,
            RtmpMessage::Abort { .. } => type_id::ABORT,
            RtmpMessage::Acknowledgement { .. } => type_id::ACKNOWLEDGEMENT,
            RtmpMessage::UserControl(_) => type_id::USER_CONTROL,
            RtmpMessage::WindowAckSize(_) => type_id::WINDOW_ACK_SIZE,
            RtmpMessage::SetPeerBandwidth { .. } => type_id::SET_PEER_BANDWIDTH,
            RtmpMessage::Audio(_) => type_id::AUDIO,
            RtmpMessage::Video(_) => type_id::VIDEO,
            RtmpMessage::Command { amf3: false, .. } => type_id::COMMAND_AMF0,
            RtmpMessage::Command { amf3: true, .. } => type_id::COMMAND_AMF3,
            RtmpMessage::Data { amf3: false, .. } => type_id::DATA_AMF0,
            RtmpMessage::Data { amf3: true, .. } => type_id::DATA_AMF3,
            RtmpMessage::Aggregate(_) => type_id::AGGREGATE,
            RtmpMessage::Other { type_id, .. } => *type_id,
        }
    }

    /// Encodes the message body.
    pub fn encode_payload(&self) -> Result<Bytes, Amf0Error> {
        let mut out = BytesMut::new();
        match self {
            RtmpMessage::SetChunkSize(v)
            | RtmpMessage::WindowAckSize(v)
            | RtmpMessage::Abort { chunk_stream_id: v }
            | RtmpMessage::Acknowledgement { sequence_number: v } => out.put_u32(*v),
            RtmpMessage::UserControl(event) => encode_user_control(event, &mut out),
            RtmpMessage::SetPeerBandwidth { size, limit } => {
                out.put_u32(*size);
                out.put_u8(match limit {
                    PeerBandwidthLimit::Hard => 0,
                    PeerBandwidthLimit::Soft => 1,
                    PeerBandwidthLimit::Dynamic => 2,
                });
            }
            RtmpMessage::Audio(p)
            | RtmpMessage::Video(p)
            | RtmpMessage::Aggregate(p)
            | RtmpMessage::Other { payload: p, .. } => return Ok(p.clone()),
            RtmpMessage::Command { command, amf3 } => {
                if *amf3 {
                    out.put_u8(0);
                }
                Amf0Value::String(command.name.clone()).encode(&mut out)?;
                Amf0Value::Number(command.transaction_id).encode(&mut out)?;
                command.command_object.encode(&mut out)?;
                for arg in &command.arguments {
                    arg.encode(&mut out)?;
                }
            }
            RtmpMessage::Data { values, amf3 } => {
                if *amf3 {
                    out.put_u8(0);
                }
                for value in values {
                    value.encode(&mut out)?;
                }
            }
        }
        Ok(out.freeze())
    }

    /// Builds the raw message to send on `chunk_stream_id` with the given timestamp and message
    /// stream id.
    pub fn to_raw(
        &self,
        chunk_stream_id: u32,
        timestamp: u32,
        message_stream_id: u32,
    ) -> Result<RawMessage, Amf0Error> {
        Ok(RawMessage {
            chunk_stream_id,
            timestamp,
            type_id: self.type_id(),
            message_stream_id,
            payload: self.encode_payload()?,
        })
    }
}

fn encode_user_control(event: &UserControlEvent, out: &mut BytesMut) {
    let (event_type, a, b) = match event {
        UserControlEvent::StreamBegin(id) => (0u16, *id, None),
        UserControlEvent::StreamEof(id) => (1, *id, None),
        UserControlEvent::StreamDry(id) => (2, *id, None),
        UserControlEvent::SetBufferLength {
            stream_id,
            buffer_ms,
        } => (3, *stream_id, Some(*buffer_ms)),
        UserControlEvent::StreamIsRecorded(id) => (4, *id, None),
        UserControlEvent::PingRequest(ts) => (6, *ts, None),
        UserControlEvent::PingResponse(ts) => (7, *ts, None),
        UserControlEvent::Other { event_type, data } => {
            out.put_u16(*event_type);
            out.put_slice(data);
            return;
        }
    };
    out.put_u16(event_type);
    out.put_u32(a);
    if let Some(b) = b {
        out.put_u32(b);
    }
}

/// One audio, video or data message carried inside an aggregate message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatePart {
    /// The sub-message type id (8 audio, 9 video, 18 data).
    pub type_id: u8,
    /// Its timestamp, rebased onto the aggregate message's timestamp.
    pub timestamp: u32,
    /// Its body.
    pub payload: Bytes,
}

impl AggregatePart {
    /// A data part's AMF0 values and body (without the format byte of an AMF3 data message);
    /// `None` for audio, video, and a data part that does not decode.
    pub fn data(&self) -> Option<(Vec<Amf0Value>, Bytes)> {
        let amf3 = match self.type_id {
            type_id::DATA_AMF0 => false,
            type_id::DATA_AMF3 => true,
            _ => return None,
        };
        let body = data_body(&self.payload, amf3);
        let values = amf0::decode_all(&body).ok()?;
        Some((values, body))
    }
}

/// The AMF0 body of a data message: `payload` itself, or for an AMF3 data message (type 15)
/// without its leading format byte, so it can be relayed as an AMF0 data message (type 18).
pub fn data_body(payload: &Bytes, amf3: bool) -> Bytes {
    match payload.first() {
        Some(0) if amf3 => payload.slice(1..),
        _ => payload.clone(),
    }
}

/// Splits an aggregate message body (FLV-tag-like sub-messages, each followed by a 4-byte back
/// pointer) into its parts, rebasing timestamps so the first part has `aggregate_timestamp`.
pub fn split_aggregate(
    payload: &Bytes,
    aggregate_timestamp: u32,
) -> Result<Vec<AggregatePart>, MessageError> {
    let mut parts = Vec::new();
    let mut rest = payload.clone();
    let mut first_ts: Option<u32> = None;
    while !rest.is_empty() {
        let offset = payload.len() - rest.len();
        let overrun = MessageError::AggregateOverrun {
            offset,
            len: payload.len(),
        };
        let header: [u8; 11] = fixed(type_id::AGGREGATE, &rest).map_err(|_| overrun.clone())?;
        let size =
            usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
        let ts = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let total = 11 + size + 4;
        if rest.len() < 11 + size {
            return Err(overrun);
        }
        rest.advance(11);
        let body = rest.split_to(size);
        // The back pointer is optional on the last part in some encoders.
        rest.advance(rest.len().min(total - 11 - size));
        let base = *first_ts.get_or_insert(ts);
        parts.push(AggregatePart {
            type_id: header[0],
            timestamp: aggregate_timestamp.wrapping_add(ts.wrapping_sub(base)),
            payload: body,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = RtmpMessage> {
        prop_oneof![
            (1u32..=0x7FFF_FFFF).prop_map(RtmpMessage::SetChunkSize),
            any::<u32>().prop_map(|v| RtmpMessage::Abort { chunk_stream_id: v }),
            any::<u32>().prop_map(|v| RtmpMessage::Acknowledgement { sequence_number: v }),
            any::<u32>().prop_map(RtmpMessage::WindowAckSize),
            (any::<u32>(), 0u8..3).prop_map(|(size, l)| RtmpMessage::SetPeerBandwidth {
                size,
                limit: [
                    PeerBandwidthLimit::Hard,
                    PeerBandwidthLimit::Soft,
                    PeerBandwidthLimit::Dynamic
                ][l as usize],
            }),
            prop_oneof![
                any::<u32>().prop_map(UserControlEvent::StreamBegin),
                any::<u32>().prop_map(UserControlEvent::StreamEof),
                any::<u32>().prop_map(UserControlEvent::StreamDry),
                (any::<u32>(), any::<u32>()).prop_map(|(stream_id, buffer_ms)| {
                    UserControlEvent::SetBufferLength {
                        stream_id,
                        buffer_ms,
                    }
                }),
                any::<u32>().prop_map(UserControlEvent::StreamIsRecorded),
                any::<u32>().prop_map(UserControlEvent::PingRequest),
                any::<u32>().prop_map(UserControlEvent::PingResponse),
            ]
            .prop_map(RtmpMessage::UserControl),
            prop::collection::vec(any::<u8>(), 0..50).prop_map(|v| RtmpMessage::Video(v.into())),
            prop::collection::vec(any::<u8>(), 0..50).prop_map(|v| RtmpMessage::Audio(v.into())),
            (
                "[a-zA-Z_@]{1,12}",
                0u32..100,
                any::<bool>(),
                prop::collection::vec(".{0,8}", 0..3)
            )
                .prop_map(|(name, tx, amf3, args)| RtmpMessage::Command {
                    command: Command {
                        name,
                        transaction_id: f64::from(tx),
                        command_object: Amf0Value::Null,
                        arguments: args.into_iter().map(Amf0Value::String).collect(),
                    },
                    amf3,
                }),
            (prop::collection::vec(".{0,8}", 0..3), any::<bool>()).prop_map(|(v, amf3)| {
                RtmpMessage::Data {
                    values: v.into_iter().map(Amf0Value::String).collect(),
                    amf3,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn typed_messages_round_trip(message in arb_message()) {
            let raw = message.to_raw(3, 0, 1).unwrap();
            prop_assert_eq!(RtmpMessage::decode(&raw).unwrap(), message);
        }

        #[test]
        fn arbitrary_bodies_never_panic(type_id in 0u8..30, body in prop::collection::vec(any::<u8>(), 0..64)) {
            let raw = RawMessage { chunk_stream_id: 3, timestamp: 0, type_id, message_stream_id: 0, payload: body.into() };
            let _ = RtmpMessage::decode(&raw);
            if type_id == type_id::AGGREGATE {
                let _ = split_aggregate(&raw.payload, 0);
            }
        }
    }

    #[test]
    fn short_control_message_names_type_and_sizes() {
        let raw = RawMessage {
            chunk_stream_id: 2,
            timestamp: 0,
            type_id: 5,
            message_stream_id: 0,
            payload: Bytes::from_static(&[0, 1]),
        };
        assert_eq!(
            RtmpMessage::decode(&raw),
            Err(MessageError::TooShort {
                type_id: 5,
                len: 2,
                needed: 4
            })
        );
    }

    #[test]
    fn aggregate_parts_are_rebased() {
        let mut body = BytesMut::new();
        for (t, ts, data) in [(9u8, 1000u32, &b"abc"[..]), (8, 1020, &b"de"[..])] {
            body.put_u8(t);
            body.put_slice(&(data.len() as u32).to_be_bytes()[1..]);
            body.put_slice(&ts.to_be_bytes()[1..]);
            body.put_u8((ts >> 24) as u8);
            body.put_slice(&[0, 0, 0]);
            body.put_slice(data);
            body.put_u32(11 + data.len() as u32);
        }
        let parts = split_aggregate(&body.freeze(), 5000).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].type_id, parts[0].timestamp), (9, 5000));
        assert_eq!((parts[1].type_id, parts[1].timestamp), (8, 5020));
        assert_eq!(&parts[1].payload[..], b"de");
    }
}
