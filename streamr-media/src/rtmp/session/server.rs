//! The server side of an RTMP connection: accepts publishers and players.

use std::collections::VecDeque;

use bytes::Bytes;

use super::connection::{status_object, Connection, Control};
use super::{
    shared_media_chunks, MediaKind, PublishMode, SessionError, DEFAULT_OUTGOING_CHUNK_SIZE,
    DEFAULT_WINDOW_SIZE,
};
use crate::amf0::{self, Amf0Value};
use crate::rtmp::chunk::{ChunkLimits, RawMessage};
use crate::rtmp::handshake::{HandshakeProgress, ServerHandshake};
use crate::rtmp::message::{data_body, split_aggregate, Command, RtmpMessage, UserControlEvent};

/// Settings of a server session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Chunk size announced (and used) for everything this side sends.
    pub chunk_size: u32,
    /// Window Acknowledgement Size and Set Peer Bandwidth announced to the client.
    pub window_size: u32,
    /// Limits on what the client may send.
    pub limits: ChunkLimits,
    /// Most message streams (`createStream`) per connection.
    pub max_streams: usize,
    /// `fmsVer` reported in the connect result.
    pub fms_version: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_OUTGOING_CHUNK_SIZE,
            window_size: DEFAULT_WINDOW_SIZE,
            limits: ChunkLimits::default(),
            max_streams: 16,
            fms_version: "FMS/3,0,1,123".into(),
        }
    }
}

/// Something the embedding app must know about or decide.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The client sent `connect`; answer with [`ServerSession::accept_connect`] or
    /// [`ServerSession::reject_connect`].
    ConnectRequested {
        /// The application name (`app`), e.g. `live`.
        app: String,
        /// The URL the client connected to (`tcUrl`), when sent.
        tc_url: Option<String>,
        /// The whole connect command object.
        command_object: Amf0Value,
    },
    /// The client wants to publish; answer with [`ServerSession::accept_publish`] or
    /// [`ServerSession::reject_publish`].
    PublishRequested {
        /// Message stream id the media will arrive on.
        stream_id: u32,
        /// The stream name (stream key), query string included.
        stream_key: String,
        /// Live, record or append.
        mode: PublishMode,
    },
    /// The client wants to play; answer with [`ServerSession::accept_play`] or
    /// [`ServerSession::reject_play`].
    PlayRequested {
        /// Message stream id media must be sent on.
        stream_id: u32,
        /// The stream name (stream key).
        stream_key: String,
        /// Start: -2 live or recorded, -1 live only, >= 0 offset in seconds.
        start: f64,
        /// Duration in seconds, -1 for until the end.
        duration: f64,
        /// Whether to reset (flush) any earlier playlist.
        reset: bool,
    },
    /// An audio, video or data message from a publisher.
    Media {
        /// The publishing message stream id.
        stream_id: u32,
        /// Audio, video or data.
        kind: MediaKind,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The message body: an FLV tag body for audio and video, the AMF0 values for data
        /// (without the format byte of an AMF3 data message, `@setDataFrame` kept).
        payload: Bytes,
    },
    /// Stream metadata from `@setDataFrame` / `onMetaData`.
    Metadata {
        /// The publishing message stream id.
        stream_id: u32,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The metadata value (usually an ECMA array).
        metadata: Amf0Value,
        /// The body of an `onMetaData` data message carrying it, ready to forward to players.
        payload: Bytes,
    },
    /// A publisher stopped (FCUnpublish, closeStream or deleteStream).
    PublishFinished {
        /// The message stream id that was publishing.
        stream_id: u32,
        /// Its stream key.
        stream_key: String,
    },
    /// A player stopped (closeStream or deleteStream).
    PlayFinished {
        /// The message stream id that was playing.
        stream_id: u32,
        /// Its stream key.
        stream_key: String,
    },
    /// A player asked to (not) receive audio or video.
    ReceiveMediaChanged {
        /// The playing message stream id.
        stream_id: u32,
        /// Audio or video.
        kind: MediaKind,
        /// Whether it wants to receive it.
        enabled: bool,
    },
    /// The client reported its buffer length.
    BufferLength {
        /// The message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// A player paused or resumed; while paused it should get no media.
    PauseChanged {
        /// The playing message stream id.
        stream_id: u32,
        /// Whether it is now paused.
        paused: bool,
    },
    /// The client acknowledged receiving this many bytes (modulo 2^32).
    Acknowledged {
        /// The acknowledged byte count.
        sequence_number: u32,
    },
    /// The client answered [`ServerSession::send_ping`].
    PingResponse {
        /// The timestamp sent in the ping.
        timestamp: u32,
    },
}

/// Why a publish is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishRejection {
    /// The stream name is in use or unknown (`NetStream.Publish.BadName`).
    BadName,
    /// The client may not publish (`NetStream.Publish.Denied`).
    Denied,
}

#[derive(Debug, Clone, PartialEq)]
enum StreamState {
    Idle,
    PublishPending { key: String, mode: PublishMode },
    Publishing { key: String },
    PlayPending { key: String, reset: bool },
    Playing { key: String },
}

#[derive(Debug)]
struct MessageStream {
    id: u32,
    state: StreamState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ConnectState {
    Awaiting,
    Pending {
        transaction_id: f64,
        object_encoding: f64,
    },
    Accepted,
    Rejected,
}

/// A sans-IO RTMP server connection.
///
/// ```
/// use streamr_media::rtmp::session::{ServerConfig, ServerEvent, ServerSession};
///
/// let mut session = ServerSession::new(ServerConfig::default());
/// // Bytes read from the socket:
/// session.feed(&[3u8; 10]).unwrap();
/// while let Some(event) = session.poll_event() {
///     if let ServerEvent::ConnectRequested { .. } = event {
///         session.accept_connect().unwrap();
///     }
/// }
/// let _to_write = session.take_output();
/// ```
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<ServerHandshake>,
    conn: Connection,
    events: VecDeque<ServerEvent>,
    connect: ConnectState,
    streams: Vec<MessageStream>,
    next_stream_id: u32,
    failed: bool,
    /// Whether the client's `connect` asked for node notices.
    node_notices: bool,
}

impl ServerSession {
    /// Gives back the room the handshake and the connect exchange grew the session's byte
    /// buffers to, while they are empty (a player's session then holds a few hundred bytes
    /// between batches instead of a few KiB).
    #[cfg(feature = "server")]
    pub(crate) fn release_idle_buffers(&mut self) {
        self.conn.release_idle_buffers();
    }

    /// A session waiting for the client's handshake.
    pub fn new(config: ServerConfig) -> Self {
        let conn = Connection::new(config.limits);
        Self {
            config,
            handshake: Some(ServerHandshake::new()),
            conn,
            events: VecDeque::new(),
            connect: ConnectState::Awaiting,
            streams: Vec::new(),
            next_stream_id: 1,
            failed: false,
            node_notices: false,
        }
    }

    /// Replays a recorded client-to-server byte stream against a fresh session with the default
    /// configuration that accepts every connect, publish and play, returning the events it
    /// produced and how the replay ended. Used to inspect captures, by the session fuzz target
    /// and by its seed-corpus test.
    pub fn replay_accepting_all(input: &[u8]) -> (Vec<ServerEvent>, Result<(), SessionError>) {
        let mut session = ServerSession::new(ServerConfig::default());
        let mut events = Vec::new();
        // Feed in socket-sized pieces so requests are answered between reads, as a driver would.
        for piece in input.chunks(4096) {
            if let Err(e) = session.feed(piece) {
                return (events, Err(e));
            }
            while let Some(event) = session.poll_event() {
                let answer = match &event {
                    ServerEvent::ConnectRequested { .. } => session.accept_connect(),
                    ServerEvent::PublishRequested { stream_id, .. } => {
                        session.accept_publish(*stream_id)
                    }
                    ServerEvent::PlayRequested { stream_id, .. } => session.accept_play(*stream_id),
                    _ => Ok(()),
                };
                events.push(event);
                if let Err(e) = answer {
                    return (events, Err(e));
                }
            }
            session.take_output();
        }
        (events, Ok(()))
    }

    /// Processes bytes read from the client. Events become available from
    /// [`poll_event`](Self::poll_event) and replies from [`take_output`](Self::take_output).
    /// Messages after a connect, publish or play request stay buffered until the request is
    /// answered with `accept_*` / `reject_*`, which then process them (and may queue events).
    /// After an error the session is dead and the connection should be closed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if self.failed {
            return Err(SessionError::Failed);
        }
        let result = self.process(bytes);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn process(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.conn.receive(bytes);
        if let Some(handshake) = self.handshake.as_mut() {
            let progress = handshake.process(&mut self.conn.input)?;
            let reply = handshake.take_output();
            self.conn.push_output(&reply);
            if progress != HandshakeProgress::Done {
                return Ok(());
            }
            self.handshake = None;
        }
        self.conn.acknowledge_if_due()?;
        self.process_buffered()
    }

    /// Whether the client asked in its `connect` for node notices
    /// ([`NODE_NOTICES_PROPERTY`](super::NODE_NOTICES_PROPERTY)): a relay, which gets the data
    /// messages between nodes that players never see.
    pub fn wants_node_notices(&self) -> bool {
        self.node_notices
    }

    /// Whether a connect, publish or play request waits for the embedding app's answer.
    fn awaiting_decision(&self) -> bool {
        matches!(self.connect, ConnectState::Pending { .. })
            || self.streams.iter().any(|s| {
                matches!(
                    s.state,
                    StreamState::PublishPending { .. } | StreamState::PlayPending { .. }
                )
            })
    }

    /// Handles buffered messages until input runs out or a request needs the app's decision;
    /// messages after a request wait until it is answered, so media never overtakes a decision.
    fn process_buffered(&mut self) -> Result<(), SessionError> {
        while !self.awaiting_decision() {
            match self.conn.next_message()? {
                Some(raw) => self.handle(raw)?,
                None => return Ok(()),
            }
        }
        // Well-behaved clients wait for the answer; a client that floods meanwhile is cut off.
        let held = self.conn.input.len();
        let max = self.config.limits.max_message_size as usize;
        if held > max {
            return Err(SessionError::BacklogWhileAwaitingDecision { bytes: held, max });
        }
        Ok(())
    }

    /// Resumes processing input held back while a decision was pending.
    fn resume(&mut self) -> Result<(), SessionError> {
        if self.failed {
            return Err(SessionError::Failed);
        }
        let result = self.process_buffered();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the client (always whole messages).
    pub fn take_output(&mut self) -> Bytes {
        self.conn.take_output()
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        self.conn.has_output()
    }

    /// Whether the handshake finished.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// The chunk size of everything this session sends; shared media for this connection must be
    /// chunked with it. It changes from 128 to [`ServerConfig::chunk_size`] on `accept_connect`.
    pub fn outgoing_chunk_size(&self) -> u32 {
        self.conn.outgoing_chunk_size()
    }

    /// The message stream id of the stream playing `stream_key`, if one is.
    pub fn playing_stream_id(&self, stream_key: &str) -> Option<u32> {
        self.streams.iter().find_map(|s| match &s.state {
            StreamState::Playing { key } if key == stream_key => Some(s.id),
            _ => None,
        })
    }

    /// Accepts the pending `connect`: queues Window Acknowledgement Size, Set Peer Bandwidth, Set
    /// Chunk Size and the `_result` with `NetConnection.Connect.Success`.
    pub fn accept_connect(&mut self) -> Result<(), SessionError> {
        let ConnectState::Pending {
            transaction_id,
            object_encoding,
        } = self.connect
        else {
            return Err(SessionError::NoPendingRequest {
                request: "connect",
                stream_id: 0,
            });
        };
        self.connect = ConnectState::Accepted;
        self.conn
            .send_connection_setup(self.config.window_size, self.config.chunk_size)?;
        let properties = Amf0Value::Object(vec![
            (
                "fmsVer".into(),
                Amf0Value::String(self.config.fms_version.clone()),
            ),
            ("capabilities".into(), Amf0Value::Number(31.0)),
        ]);
        let mut info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(fields) = &mut info {
            fields.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        }
        self.conn
            .send_command(0, "_result", transaction_id, properties, vec![info])?;
        self.resume()
    }

    /// Refuses the pending `connect` with `NetConnection.Connect.Rejected`; close the connection
    /// after writing the output.
    pub fn reject_connect(&mut self, description: &str) -> Result<(), SessionError> {
        let ConnectState::Pending { transaction_id, .. } = self.connect else {
            return Err(SessionError::NoPendingRequest {
                request: "connect",
                stream_id: 0,
            });
        };
        self.connect = ConnectState::Rejected;
        let info = status_object("error", "NetConnection.Connect.Rejected", description);
        self.conn
            .send_command(0, "_error", transaction_id, Amf0Value::Null, vec![info])?;
        self.resume()
    }

    fn stream_mut(&mut self, stream_id: u32) -> Option<&mut MessageStream> {
        self.streams.iter_mut().find(|s| s.id == stream_id)
    }

    /// Accepts a pending publish: queues Stream Begin and `NetStream.Publish.Start`. Media
    /// events for the stream follow.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let key = match self.stream_mut(stream_id) {
            Some(s) => match std::mem::replace(&mut s.state, StreamState::Idle) {
                StreamState::PublishPending { key, .. } => {
                    s.state = StreamState::Publishing { key: key.clone() };
                    key
                }
                other => {
                    s.state = other;
                    return Err(no_pending("publish", stream_id));
                }
            },
            None => return Err(no_pending("publish", stream_id)),
        };
        self.conn
            .send_user_control(UserControlEvent::StreamBegin(stream_id))?;
        self.conn.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{key} is now published."),
        )?;
        self.resume()
    }

    /// Refuses a pending publish with `NetStream.Publish.BadName` or `.Denied`.
    pub fn reject_publish(
        &mut self,
        stream_id: u32,
        reason: PublishRejection,
        description: &str,
    ) -> Result<(), SessionError> {
        match self.stream_mut(stream_id) {
            Some(s) if matches!(s.state, StreamState::PublishPending { .. }) => {
                s.state = StreamState::Idle;
            }
            _ => return Err(no_pending("publish", stream_id)),
        }
        let code = match reason {
            PublishRejection::BadName => "NetStream.Publish.BadName",
            PublishRejection::Denied => "NetStream.Publish.Denied",
        };
        self.conn
            .send_status(stream_id, "error", code, description)?;
        self.resume()
    }

    /// Accepts a pending play: queues Stream Begin, `NetStream.Play.Reset` (when asked),
    /// `NetStream.Play.Start` and `|RtmpSampleAccess`, as nginx-rtmp does. No `onStatus` data
    /// message (`NetStream.Data.Start`) goes on the media stream: ffmpeg's FLV demuxer turns an
    /// unknown data message into an extra data stream that never ends (it knows
    /// `|RtmpSampleAccess` and skips it). Write this output before the first media message.
    pub fn accept_play(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let (key, reset) = match self.stream_mut(stream_id) {
            Some(s) => match std::mem::replace(&mut s.state, StreamState::Idle) {
                StreamState::PlayPending { key, reset } => {
                    s.state = StreamState::Playing { key: key.clone() };
                    (key, reset)
                }
                other => {
                    s.state = other;
                    return Err(no_pending("play", stream_id));
                }
            },
            None => return Err(no_pending("play", stream_id)),
        };
        self.conn
            .send_user_control(UserControlEvent::StreamBegin(stream_id))?;
        if reset {
            self.conn.send_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {key}."),
            )?;
        }
        self.conn.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {key}."),
        )?;
        self.conn.send(
            &RtmpMessage::Data {
                values: vec![
                    Amf0Value::String("|RtmpSampleAccess".into()),
                    Amf0Value::Boolean(true),
                    Amf0Value::Boolean(true),
                ],
                amf3: false,
            },
            super::COMMAND_CHUNK_STREAM_ID,
            stream_id,
        )?;
        self.resume()
    }

    /// Refuses a pending play with `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, stream_id: u32, description: &str) -> Result<(), SessionError> {
        match self.stream_mut(stream_id) {
            Some(s) if matches!(s.state, StreamState::PlayPending { .. }) => {
                s.state = StreamState::Idle;
            }
            _ => return Err(no_pending("play", stream_id)),
        }
        self.conn.send_status(
            stream_id,
            "error",
            "NetStream.Play.StreamNotFound",
            description,
        )?;
        self.resume()
    }

    /// Tells a player its stream's publisher left: queues Stream EOF and
    /// `NetStream.Play.UnpublishNotify`. The stream stays in the playing state so a returning
    /// publisher can resume it (see [`notify_republished`](Self::notify_republished)).
    pub fn notify_unpublished(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let key = self.playing_key(stream_id)?;
        self.conn
            .send_user_control(UserControlEvent::StreamEof(stream_id))?;
        self.conn.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{key} is now unpublished."),
        )
    }

    /// Tells a player its stream is published again: queues Stream Begin and
    /// `NetStream.Play.PublishNotify`.
    pub fn notify_republished(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let key = self.playing_key(stream_id)?;
        self.conn
            .send_user_control(UserControlEvent::StreamBegin(stream_id))?;
        self.conn.send_status(
            stream_id,
            "status",
            "NetStream.Play.PublishNotify",
            &format!("{key} is now published."),
        )
    }

    fn playing_key(&self, stream_id: u32) -> Result<String, SessionError> {
        self.streams
            .iter()
            .find_map(|s| match &s.state {
                StreamState::Playing { key } if s.id == stream_id => Some(key.clone()),
                _ => None,
            })
            .ok_or(no_pending("play", stream_id))
    }

    /// Queues a media message for a playing stream, chunked with
    /// [`shared_media_chunks`] (the same bytes the relay shares between viewers).
    pub fn send_media(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        let bytes = shared_media_chunks(
            kind,
            stream_id,
            timestamp,
            payload,
            self.outgoing_chunk_size(),
        )?;
        self.conn.push_output(&bytes);
        Ok(())
    }

    /// Queues a ping request; the answer arrives as [`ServerEvent::PingResponse`].
    pub fn send_ping(&mut self, timestamp: u32) -> Result<(), SessionError> {
        self.conn
            .send_user_control(UserControlEvent::PingRequest(timestamp))
    }

    fn handle(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let message = RtmpMessage::decode(&raw).map_err(|source| SessionError::Message {
            csid: raw.chunk_stream_id,
            stream_id: raw.message_stream_id,
            source,
        })?;
        match self.conn.handle_control(&message)? {
            Control::Handled => return Ok(()),
            Control::Acknowledged(sequence_number) => {
                self.events
                    .push_back(ServerEvent::Acknowledged { sequence_number });
                return Ok(());
            }
            Control::PingResponse(timestamp) => {
                self.events
                    .push_back(ServerEvent::PingResponse { timestamp });
                return Ok(());
            }
            Control::BufferLength {
                stream_id,
                buffer_ms,
            } => {
                self.events.push_back(ServerEvent::BufferLength {
                    stream_id,
                    buffer_ms,
                });
                return Ok(());
            }
            Control::Other => {}
        }
        let stream_id = raw.message_stream_id;
        match message {
            RtmpMessage::Audio(payload) => {
                self.media(stream_id, MediaKind::Audio, raw.timestamp, payload)
            }
            RtmpMessage::Video(payload) => {
                self.media(stream_id, MediaKind::Video, raw.timestamp, payload)
            }
            RtmpMessage::Aggregate(payload) => {
                let parts = split_aggregate(&payload, raw.timestamp).map_err(|source| {
                    SessionError::Message {
                        csid: raw.chunk_stream_id,
                        stream_id,
                        source,
                    }
                })?;
                for part in parts {
                    if let Some((values, payload)) = part.data() {
                        self.data(stream_id, part.timestamp, values, payload)?;
                    } else if let Some(kind) = MediaKind::from_type_id(part.type_id) {
                        if kind != MediaKind::Data {
                            self.media(stream_id, kind, part.timestamp, part.payload);
                        }
                    }
                }
            }
            RtmpMessage::Data { values, amf3 } => {
                let payload = data_body(&raw.payload, amf3);
                self.data(stream_id, raw.timestamp, values, payload)?
            }
            RtmpMessage::Command { command, .. } => self.command(stream_id, command)?,
            _ => {}
        }
        Ok(())
    }

    fn is_publishing(&self, stream_id: u32) -> bool {
        self.streams
            .iter()
            .any(|s| s.id == stream_id && matches!(s.state, StreamState::Publishing { .. }))
    }

    fn media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, payload: Bytes) {
        // Media on a stream that is not publishing (yet) is dropped, as other servers do.
        if self.is_publishing(stream_id) {
            self.events.push_back(ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            });
        }
    }

    fn data(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        values: Vec<Amf0Value>,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        let mut values = values.into_iter().peekable();
        if values.peek().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            values.next();
        }
        let first = values.next();
        if first.as_ref().and_then(Amf0Value::as_str) == Some("onMetaData") {
            let metadata = values.next().unwrap_or(Amf0Value::Null);
            let payload =
                amf0::encode_all(&[Amf0Value::String("onMetaData".into()), metadata.clone()])?
                    .freeze();
            if self.is_publishing(stream_id) {
                self.events.push_back(ServerEvent::Metadata {
                    stream_id,
                    timestamp,
                    metadata,
                    payload,
                });
            }
            return Ok(());
        }
        self.media(stream_id, MediaKind::Data, timestamp, payload);
        Ok(())
    }

    fn command(&mut self, stream_id: u32, command: Command) -> Result<(), SessionError> {
        let tx = command.transaction_id;
        tracing::debug!(command = %command.name, stream_id, transaction_id = tx, "RTMP command from client");
        if command.name != "connect" && self.connect != ConnectState::Accepted {
            // Nothing but connect is served before the app accepted a connect.
            return Ok(());
        }
        match command.name.as_str() {
            "connect" => {
                let object = command.command_object;
                let text = |name: &str| {
                    object
                        .property(name)
                        .and_then(Amf0Value::as_str)
                        .map(str::to_owned)
                };
                let app = text("app").unwrap_or_default();
                let tc_url = text("tcUrl");
                self.node_notices = object
                    .property(super::NODE_NOTICES_PROPERTY)
                    .and_then(Amf0Value::as_bool)
                    == Some(true);
                let object_encoding = object
                    .property("objectEncoding")
                    .and_then(Amf0Value::as_number)
                    .unwrap_or(0.0);
                self.connect = ConnectState::Pending {
                    transaction_id: tx,
                    object_encoding,
                };
                self.events.push_back(ServerEvent::ConnectRequested {
                    app,
                    tc_url,
                    command_object: object,
                });
            }
            "createStream" => {
                if self.streams.len() >= self.config.max_streams {
                    return Err(SessionError::TooManyStreams {
                        max: self.config.max_streams,
                    });
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                self.streams.push(MessageStream {
                    id,
                    state: StreamState::Idle,
                });
                self.conn.send_command(
                    0,
                    "_result",
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(id))],
                )?;
            }
            "releaseStream" => {
                self.conn.send_command(
                    0,
                    "_result",
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Undefined],
                )?;
            }
            "FCPublish" => {
                let key = command.string_argument(0).unwrap_or_default().to_owned();
                self.conn.send_command(
                    0,
                    "onFCPublish",
                    0.0,
                    Amf0Value::Null,
                    vec![status_object("status", "NetStream.Publish.Start", &key)],
                )?;
            }
            "FCUnpublish" => {
                let key = command.string_argument(0).unwrap_or_default().to_owned();
                self.conn.send_command(
                    0,
                    "onFCUnpublish",
                    0.0,
                    Amf0Value::Null,
                    vec![status_object("status", "NetStream.Unpublish.Success", &key)],
                )?;
                let publishing = self.streams.iter().find_map(|s| match &s.state {
                    StreamState::Publishing { key: k } if *k == key => Some(s.id),
                    _ => None,
                });
                if let Some(id) = publishing {
                    self.finish_stream(id, true)?;
                }
            }
            "publish" => {
                let key = command.string_argument(0).unwrap_or_default().to_owned();
                let mode = PublishMode::from_argument(command.string_argument(1));
                match self.stream_mut(stream_id) {
                    Some(s) if s.state == StreamState::Idle => {
                        s.state = StreamState::PublishPending {
                            key: key.clone(),
                            mode,
                        };
                        self.events.push_back(ServerEvent::PublishRequested {
                            stream_id,
                            stream_key: key,
                            mode,
                        });
                    }
                    _ => {
                        self.conn.send_status(
                            stream_id,
                            "error",
                            "NetStream.Publish.BadName",
                            "publish needs an idle stream from createStream",
                        )?;
                    }
                }
            }
            "play" => {
                let key = command.string_argument(0).unwrap_or_default().to_owned();
                let start = command.number_argument(1).unwrap_or(-2.0);
                let duration = command.number_argument(2).unwrap_or(-1.0);
                let reset = command
                    .arguments
                    .get(3)
                    .map(|v| {
                        v.as_bool()
                            .unwrap_or(v.as_number().is_some_and(|n| n != 0.0))
                    })
                    .unwrap_or(true);
                match self.stream_mut(stream_id) {
                    Some(s) if s.state == StreamState::Idle => {
                        s.state = StreamState::PlayPending {
                            key: key.clone(),
                            reset,
                        };
                        self.events.push_back(ServerEvent::PlayRequested {
                            stream_id,
                            stream_key: key,
                            start,
                            duration,
                            reset,
                        });
                    }
                    _ => {
                        self.conn.send_status(
                            stream_id,
                            "error",
                            "NetStream.Play.Failed",
                            "play needs an idle stream from createStream",
                        )?;
                    }
                }
            }
            "deleteStream" => {
                let id = command
                    .number_argument(0)
                    .map(|n| n as u32)
                    .unwrap_or(stream_id);
                self.finish_stream(id, true)?;
                self.streams.retain(|s| s.id != id);
            }
            "closeStream" => {
                self.finish_stream(stream_id, true)?;
            }
            "getStreamLength" => {
                self.conn.send_command(
                    0,
                    "_result",
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(0.0)],
                )?;
            }
            "receiveAudio" | "receiveVideo" => {
                let kind = if command.name == "receiveAudio" {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let enabled = command.arguments.first().and_then(Amf0Value::as_bool);
                self.events.push_back(ServerEvent::ReceiveMediaChanged {
                    stream_id,
                    kind,
                    enabled: enabled.unwrap_or(true),
                });
            }
            "_checkbw" => {
                self.conn
                    .send_command(0, "_result", tx, Amf0Value::Null, vec![])?;
            }
            "FCSubscribe" => {
                // librtmp sends this before playing a live stream; answer like FCPublish.
                let key = command.string_argument(0).unwrap_or_default().to_owned();
                self.conn.send_command(
                    0,
                    "onFCSubscribe",
                    0.0,
                    Amf0Value::Null,
                    vec![status_object("status", "NetStream.Play.Start", &key)],
                )?;
            }
            "pause" if self.playing_key(stream_id).is_ok() => {
                let paused = command
                    .arguments
                    .first()
                    .and_then(Amf0Value::as_bool)
                    .unwrap_or(true);
                let (code, description) = if paused {
                    ("NetStream.Pause.Notify", "Paused live")
                } else {
                    ("NetStream.Unpause.Notify", "Unpaused live")
                };
                self.conn
                    .send_status(stream_id, "status", code, description)?;
                self.events
                    .push_back(ServerEvent::PauseChanged { stream_id, paused });
            }
            "_result" | "_error" | "onStatus" | "@setDataFrame" | "pause" | "seek"
            | "FCUnsubscribe" => {}
            _ => {
                if tx != 0.0 {
                    let info = status_object(
                        "error",
                        "NetConnection.Call.Failed",
                        &format!("Method not found ({}).", command.name),
                    );
                    self.conn
                        .send_command(0, "_error", tx, Amf0Value::Null, vec![info])?;
                }
            }
        }
        Ok(())
    }

    /// Ends publishing or playing on `stream_id`, emitting the matching event once.
    fn finish_stream(&mut self, stream_id: u32, announce: bool) -> Result<(), SessionError> {
        let Some(stream) = self.stream_mut(stream_id) else {
            return Ok(());
        };
        match std::mem::replace(&mut stream.state, StreamState::Idle) {
            StreamState::Publishing { key } => {
                if announce {
                    self.conn.send_status(
                        stream_id,
                        "status",
                        "NetStream.Unpublish.Success",
                        &format!("{key} is now unpublished."),
                    )?;
                }
                self.events.push_back(ServerEvent::PublishFinished {
                    stream_id,
                    stream_key: key,
                });
            }
            StreamState::Playing { key } => {
                self.events.push_back(ServerEvent::PlayFinished {
                    stream_id,
                    stream_key: key,
                });
            }
            StreamState::Idle
            | StreamState::PublishPending { .. }
            | StreamState::PlayPending { .. } => {}
        }
        Ok(())
    }
}

fn no_pending(request: &'static str, stream_id: u32) -> SessionError {
    SessionError::NoPendingRequest { request, stream_id }
}
