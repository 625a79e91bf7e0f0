//! The chunk-level machinery both session sides share: input and output buffers, the codec pair,
//! acknowledgements and protocol control handling.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{SessionError, StatusInfo, COMMAND_CHUNK_STREAM_ID, CONTROL_CHUNK_STREAM_ID};
use crate::amf0::Amf0Value;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, RawMessage};
use crate::rtmp::message::{Command, PeerBandwidthLimit, RtmpMessage, UserControlEvent};

/// Room an empty input or output buffer keeps (see [`Connection::release_idle_buffers`]).
#[cfg(feature = "server")]
const IDLE_BUFFER_KEEP: usize = 512;

/// Acknowledgement window assumed until the peer announces one.
const ASSUMED_PEER_WINDOW: u32 = 2_500_000;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) input: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    output: BytesMut,
    received: u64,
    acknowledged: u64,
    peer_window: u32,
}

/// What a protocol-level message meant to the session above, if anything.
pub(crate) enum Control {
    /// Fully handled here.
    Handled,
    /// The peer acknowledged this many bytes.
    Acknowledged(u32),
    /// The peer answered our ping.
    PingResponse(u32),
    /// The peer set its buffer length for a stream.
    BufferLength { stream_id: u32, buffer_ms: u32 },
    /// Not a protocol control message.
    Other,
}

impl Connection {
    pub(crate) fn new(limits: ChunkLimits) -> Self {
        Self {
            input: BytesMut::new(),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            output: BytesMut::new(),
            received: 0,
            acknowledged: 0,
            peer_window: ASSUMED_PEER_WINDOW,
        }
    }

    /// Buffers bytes read from the peer.
    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.received = self.received.wrapping_add(bytes.len() as u64);
    }

    pub(crate) fn next_message(&mut self) -> Result<Option<RawMessage>, SessionError> {
        Ok(self.decoder.decode(&mut self.input)?)
    }

    /// Queues an Acknowledgement when a window's worth of bytes arrived since the last one.
    pub(crate) fn acknowledge_if_due(&mut self) -> Result<(), SessionError> {
        if self.received.saturating_sub(self.acknowledged) >= u64::from(self.peer_window) {
            self.acknowledged = self.received;
            // The sequence number is the byte count modulo 2^32 by definition.
            let sequence_number = self.received as u32;
            self.send(
                &RtmpMessage::Acknowledgement { sequence_number },
                CONTROL_CHUNK_STREAM_ID,
                0,
            )?;
        }
        Ok(())
    }

    pub(crate) fn push_output(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    pub(crate) fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// Gives back the input and output buffers' room while they are empty and hold more than
    /// [`IDLE_BUFFER_KEEP`] (the handshake and the connect exchange grow both to a few KiB,
    /// which a player, who sends and is sent few messages through them, would keep for good).
    #[cfg(feature = "server")]
    pub(crate) fn release_idle_buffers(&mut self) {
        for buffer in [&mut self.input, &mut self.output] {
            if buffer.is_empty() && buffer.capacity() > IDLE_BUFFER_KEEP {
                *buffer = BytesMut::new();
            }
        }
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    pub(crate) fn outgoing_chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    pub(crate) fn send(
        &mut self,
        message: &RtmpMessage,
        csid: u32,
        stream_id: u32,
    ) -> Result<(), SessionError> {
        self.send_at(message, csid, stream_id, 0)
    }

    pub(crate) fn send_at(
        &mut self,
        message: &RtmpMessage,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
    ) -> Result<(), SessionError> {
        let raw = message.to_raw(csid, timestamp, stream_id)?;
        self.encoder.encode(raw, &mut self.output)?;
        Ok(())
    }

    pub(crate) fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        let command = Command {
            name: name.to_owned(),
            transaction_id,
            command_object,
            arguments,
        };
        self.send(
            &RtmpMessage::Command {
                command,
                amf3: false,
            },
            COMMAND_CHUNK_STREAM_ID,
            stream_id,
        )
    }

    pub(crate) fn send_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        self.send_command(
            stream_id,
            "onStatus",
            0.0,
            Amf0Value::Null,
            vec![status_object(level, code, description)],
        )
    }

    pub(crate) fn send_user_control(
        &mut self,
        event: UserControlEvent,
    ) -> Result<(), SessionError> {
        self.send(&RtmpMessage::UserControl(event), CONTROL_CHUNK_STREAM_ID, 0)
    }

    /// Sends Window Acknowledgement Size, Set Peer Bandwidth and Set Chunk Size.
    pub(crate) fn send_connection_setup(
        &mut self,
        window: u32,
        chunk_size: u32,
    ) -> Result<(), SessionError> {
        self.send(
            &RtmpMessage::WindowAckSize(window),
            CONTROL_CHUNK_STREAM_ID,
            0,
        )?;
        self.send(
            &RtmpMessage::SetPeerBandwidth {
                size: window,
                limit: PeerBandwidthLimit::Dynamic,
            },
            CONTROL_CHUNK_STREAM_ID,
            0,
        )?;
        self.send(
            &RtmpMessage::SetChunkSize(chunk_size),
            CONTROL_CHUNK_STREAM_ID,
            0,
        )
    }

    /// Handles protocol control and user control messages common to both sides.
    pub(crate) fn handle_control(
        &mut self,
        message: &RtmpMessage,
    ) -> Result<Control, SessionError> {
        Ok(match message {
            // The decoder already applied Set Chunk Size and Abort.
            RtmpMessage::SetChunkSize(_) | RtmpMessage::Abort { .. } => Control::Handled,
            RtmpMessage::WindowAckSize(size) => {
                self.peer_window = (*size).max(1);
                Control::Handled
            }
            RtmpMessage::SetPeerBandwidth { .. } => Control::Handled,
            RtmpMessage::Acknowledgement { sequence_number } => {
                Control::Acknowledged(*sequence_number)
            }
            RtmpMessage::UserControl(UserControlEvent::PingRequest(ts)) => {
                self.send_user_control(UserControlEvent::PingResponse(*ts))?;
                Control::Handled
            }
            RtmpMessage::UserControl(UserControlEvent::PingResponse(ts)) => {
                Control::PingResponse(*ts)
            }
            RtmpMessage::UserControl(UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms,
            }) => Control::BufferLength {
                stream_id: *stream_id,
                buffer_ms: *buffer_ms,
            },
            RtmpMessage::UserControl(_) => Control::Handled,
            _ => Control::Other,
        })
    }
}

pub(crate) fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
}

/// Reads the status fields from an `onStatus` / `_error` info object.
pub(crate) fn status_info(value: Option<&Amf0Value>) -> StatusInfo {
    let field = |name: &str| {
        value
            .and_then(|v| v.property(name))
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    StatusInfo {
        level: field("level"),
        code: field("code"),
        description: field("description"),
    }
}
