//! Sans-IO RTMP sessions: the server side (origin/relay ingest and playback) and the client side
//! (friend nodes pulling from an origin, or pushing to one).
//!
//! A session owns the handshake, the chunk codec and the command exchange. The driver (a tokio
//! task, a test, anything) feeds it the bytes read from the socket with `feed`, takes the events
//! it produced with `poll_event`, and writes whatever `take_output` returns to the socket, in the
//! style of rustls' `read_tls` / `process_new_packets` / `write_tls`.
//!
//! # Chunk streams
//! Session output uses [`CONTROL_CHUNK_STREAM_ID`] (protocol and user control) and
//! [`COMMAND_CHUNK_STREAM_ID`] (commands and statuses). Media goes on [`AUDIO_CHUNK_STREAM_ID`],
//! [`VIDEO_CHUNK_STREAM_ID`] and [`DATA_CHUNK_STREAM_ID`], always as self-contained chunks from
//! [`crate::rtmp::chunk::encode_shared_media`] (see [`shared_media_chunks`]),
//! so media never shares a chunk stream with control traffic and one chunked frame can be written
//! to many connections.
//!
//! # Writing shared media
//! The session's output buffer only ever holds whole messages, so a driver may write
//! `take_output()` and shared media bytes in any order, as long as each is written whole. Write
//! the output queued by `accept_play` (Stream Begin, `NetStream.Play.Start`) before the first
//! media: ffmpeg and librtmp expect the status before media.

mod client;
mod connection;
mod server;

pub use client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
pub use server::{PublishRejection, ServerConfig, ServerEvent, ServerSession};

use bytes::Bytes;

use super::chunk::{encode_shared_media, ChunkError, RawMessage};
use super::handshake::HandshakeError;
use super::message::{type_id, MessageError};
use crate::amf0::Amf0Error;

/// Chunk stream for protocol control and user control messages.
pub const CONTROL_CHUNK_STREAM_ID: u32 = 2;
/// Chunk stream for commands and `onStatus` replies.
pub const COMMAND_CHUNK_STREAM_ID: u32 = 3;
/// Chunk stream reserved for shared data messages (`onMetaData`).
pub const DATA_CHUNK_STREAM_ID: u32 = 5;
/// Chunk stream reserved for shared audio.
pub const AUDIO_CHUNK_STREAM_ID: u32 = 6;
/// Chunk stream reserved for shared video.
pub const VIDEO_CHUNK_STREAM_ID: u32 = 7;

/// The `connect` command object's property with which a relay asks for node notices
/// ([`crate::relay::Frame::is_node_notice`], such as the origin's HLS timing): data messages
/// between nodes that players never get. Other servers ignore the unknown property.
pub const NODE_NOTICES_PROPERTY: &str = "streamrNotices";

/// Outgoing chunk size the sessions announce right after connecting.
pub const DEFAULT_OUTGOING_CHUNK_SIZE: u32 = 4096;
/// Acknowledgement window and peer bandwidth the sessions announce.
pub const DEFAULT_WINDOW_SIZE: u32 = 2_500_000;

/// What a media message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaKind {
    /// An FLV audio tag body (message type 8).
    Audio,
    /// An FLV video tag body (message type 9).
    Video,
    /// An AMF0 data message (type 18) other than metadata.
    Data,
}

impl MediaKind {
    /// The RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            MediaKind::Audio => type_id::AUDIO,
            MediaKind::Video => type_id::VIDEO,
            MediaKind::Data => type_id::DATA_AMF0,
        }
    }

    /// The chunk stream the sessions reserve for this kind.
    pub fn chunk_stream_id(self) -> u32 {
        match self {
            MediaKind::Audio => AUDIO_CHUNK_STREAM_ID,
            MediaKind::Video => VIDEO_CHUNK_STREAM_ID,
            MediaKind::Data => DATA_CHUNK_STREAM_ID,
        }
    }

    /// The kind for a media message type id (8, 9, 18 or 15).
    pub fn from_type_id(type_id: u8) -> Option<MediaKind> {
        match type_id {
            type_id::AUDIO => Some(MediaKind::Audio),
            type_id::VIDEO => Some(MediaKind::Video),
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => Some(MediaKind::Data),
            _ => None,
        }
    }
}

/// Chunks one media message once for every connection that plays `message_stream_id` with
/// outgoing chunk size `chunk_size`, on the chunk stream reserved for `kind`.
///
/// Metadata goes through here too, as [`MediaKind::Data`] with the `payload` of
/// [`ServerEvent::Metadata`].
pub fn shared_media_chunks(
    kind: MediaKind,
    message_stream_id: u32,
    timestamp: u32,
    payload: Bytes,
    chunk_size: u32,
) -> Result<Bytes, ChunkError> {
    encode_shared_media(
        &RawMessage {
            chunk_stream_id: kind.chunk_stream_id(),
            timestamp,
            type_id: kind.type_id(),
            message_stream_id,
            payload,
        },
        chunk_size,
    )
}

/// How a publisher wants its stream handled (the `publish` command's type argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishMode {
    /// Live only, nothing recorded.
    Live,
    /// Record, replacing any earlier recording.
    Record,
    /// Record, appending to an earlier recording.
    Append,
}

impl PublishMode {
    /// Parses the `publish` type argument; anything unknown (or missing) is `Live`.
    pub fn from_argument(argument: Option<&str>) -> PublishMode {
        match argument {
            Some("record") => PublishMode::Record,
            Some("append") => PublishMode::Append,
            _ => PublishMode::Live,
        }
    }

    /// The `publish` type argument for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Live => "live",
            PublishMode::Record => "record",
            PublishMode::Append => "append",
        }
    }
}

/// The fields of an `onStatus` info object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    /// `status`, `warning` or `error`.
    pub level: String,
    /// The status code, e.g. `NetStream.Play.Start`.
    pub code: String,
    /// Human-readable description.
    pub description: String,
}

/// Errors from a session. After an error the connection should be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream was invalid.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A message body was invalid.
    #[error("message on chunk stream {csid}, message stream {stream_id}: {source}")]
    Message {
        /// Chunk stream the message arrived on.
        csid: u32,
        /// Its message stream id.
        stream_id: u32,
        /// What was wrong.
        source: MessageError,
    },
    /// An outgoing AMF value could not be encoded.
    #[error("encoding AMF0: {0}")]
    Amf(#[from] Amf0Error),
    /// The peer created more message streams than allowed.
    #[error("createStream would exceed the limit of {max} message streams")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
    /// The embedding app answered a request that is not pending.
    #[error("no pending {request} request on message stream {stream_id}")]
    NoPendingRequest {
        /// `connect`, `publish` or `play`.
        request: &'static str,
        /// The message stream id given.
        stream_id: u32,
    },
    /// The client sent more than allowed while a request waited for the app's answer.
    #[error("{bytes} bytes arrived while a request awaited its answer (limit {max})")]
    BacklogWhileAwaitingDecision {
        /// Bytes held back.
        bytes: usize,
        /// The limit (the maximum message size).
        max: usize,
    },
    /// The session was used after it failed.
    #[error("session already failed")]
    Failed,
    /// The peer refused or failed a request (client side).
    #[error("{command} refused by the server: {code} ({description})")]
    Refused {
        /// The command that was refused.
        command: &'static str,
        /// The status or error code.
        code: String,
        /// The server's description.
        description: String,
    },
}

#[cfg(test)]
mod tests;
