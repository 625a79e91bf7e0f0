//! The client side of an RTMP connection: pulls (play) or pushes (publish) one stream.

use std::collections::VecDeque;

use bytes::Bytes;

use super::connection::{status_info, Connection, Control};
use super::{
    shared_media_chunks, MediaKind, PublishMode, SessionError, StatusInfo,
    DEFAULT_OUTGOING_CHUNK_SIZE, DEFAULT_WINDOW_SIZE,
};
use crate::amf0::{self, Amf0Value};
use crate::rtmp::chunk::{ChunkLimits, RawMessage};
use crate::rtmp::handshake::{ClientHandshake, DigestScheme, HandshakeKind, HandshakeProgress};
use crate::rtmp::message::{data_body, split_aggregate, Command, RtmpMessage, UserControlEvent};

const CONNECT_TX: f64 = 1.0;
const RELEASE_STREAM_TX: f64 = 2.0;
const FC_PUBLISH_TX: f64 = 3.0;
const CREATE_STREAM_TX: f64 = 4.0;
const PUBLISH_TX: f64 = 5.0;
/// Buffer length a playing client announces, in milliseconds.
const PLAY_BUFFER_MS: u32 = 3000;

/// Whether the client plays (pulls) or publishes (pushes) its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRole {
    /// Pull the stream with `play`.
    Play,
    /// Push the stream with `publish` in the given mode.
    Publish(PublishMode),
}

/// Settings of a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Application name (`app` in `connect`), e.g. `live`.
    pub app: String,
    /// URL of the application (`tcUrl`), e.g. `rtmp://origin.example/live`.
    pub tc_url: String,
    /// Stream name (stream key) to play or publish.
    pub stream_key: String,
    /// Play or publish.
    pub role: ClientRole,
    /// Handshake form to use.
    pub handshake: HandshakeKind,
    /// Chunk size announced (and used) for everything this side sends.
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to the server.
    pub window_size: u32,
    /// Limits on what the server may send.
    pub limits: ChunkLimits,
    /// `flashVer` sent in `connect`.
    pub flash_version: String,
    /// Asks the server for node notices (a relay pulling a stream), with
    /// [`NODE_NOTICES_PROPERTY`](super::NODE_NOTICES_PROPERTY) in `connect`.
    pub node_notices: bool,
}

impl ClientConfig {
    /// A configuration for `role` on `rtmp://{host}/{app}` with stream `stream_key`.
    pub fn new(host: &str, app: &str, stream_key: &str, role: ClientRole) -> Self {
        Self {
            app: app.into(),
            tc_url: format!("rtmp://{host}/{app}"),
            stream_key: stream_key.into(),
            role,
            handshake: HandshakeKind::Complex(DigestScheme::Scheme0),
            chunk_size: DEFAULT_OUTGOING_CHUNK_SIZE,
            window_size: DEFAULT_WINDOW_SIZE,
            limits: ChunkLimits::default(),
            flash_version: "LNX 9,0,124,2".into(),
            node_notices: false,
        }
    }
}

/// Progress and data reported by a client session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted `connect`.
    Connected,
    /// The server created our message stream.
    StreamCreated {
        /// The message stream id.
        stream_id: u32,
    },
    /// `NetStream.Publish.Start`: media may be sent with [`ClientSession::send_media`].
    PublishStarted,
    /// `NetStream.Play.Start`: media events follow.
    PlayStarted,
    /// The server refused a command (`connect`, `createStream`, `publish` or `play`).
    Rejected {
        /// The refused command.
        command: &'static str,
        /// The server's status.
        status: StatusInfo,
    },
    /// Any other status the server sent.
    Status(StatusInfo),
    /// The played stream's publisher left (`NetStream.Play.UnpublishNotify` or Stream EOF).
    StreamEnded,
    /// The played stream's publisher is back (`NetStream.Play.PublishNotify`).
    StreamResumed,
    /// An audio, video or data message of the played stream.
    Media {
        /// Audio, video or data.
        kind: MediaKind,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The message body (for data, its AMF0 values, without the format byte of an AMF3
        /// data message).
        payload: Bytes,
    },
    /// The server acknowledged receiving this many bytes (modulo 2^32).
    Acknowledged {
        /// The acknowledged byte count.
        sequence_number: u32,
    },
    /// Metadata (`onMetaData`) of the played stream.
    Metadata {
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The metadata value.
        metadata: Amf0Value,
        /// The `onMetaData` data message body.
        payload: Bytes,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    CreatingStream,
    Starting,
    Active,
    Closed,
}

/// A sans-IO RTMP client connection that plays or publishes one stream.
///
/// C0+C1 are queued at construction: write [`take_output`](Self::take_output) to the socket
/// first, then alternate `feed` / `poll_event` / `take_output`.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    handshake: Option<ClientHandshake>,
    conn: Connection,
    events: VecDeque<ClientEvent>,
    phase: Phase,
    stream_id: Option<u32>,
    failed: bool,
}

impl ClientSession {
    /// A session that starts with the handshake; its output already holds C0+C1.
    pub fn new(config: ClientConfig) -> Self {
        let mut handshake = ClientHandshake::new(config.handshake);
        let mut conn = Connection::new(config.limits);
        conn.push_output(&handshake.take_output());
        Self {
            config,
            handshake: Some(handshake),
            conn,
            events: VecDeque::new(),
            phase: Phase::Handshake,
            stream_id: None,
            failed: false,
        }
    }

    /// Processes bytes read from the server.
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
            let c2 = handshake.take_output();
            self.conn.push_output(&c2);
            if progress != HandshakeProgress::Done {
                return Ok(());
            }
            self.handshake = None;
            self.send_connect()?;
        }
        while let Some(raw) = self.conn.next_message()? {
            self.handle(raw)?;
        }
        self.conn.acknowledge_if_due()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the server (always whole messages).
    pub fn take_output(&mut self) -> Bytes {
        self.conn.take_output()
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        self.conn.has_output()
    }

    /// The message stream id the server created for us, once known.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    /// Whether publishing or playing has started.
    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// Queues a media message of a started publish.
    pub fn send_media(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        let stream_id = self.active_publish_stream()?;
        let bytes = shared_media_chunks(
            kind,
            stream_id,
            timestamp,
            payload,
            self.conn.outgoing_chunk_size(),
        )?;
        self.conn.push_output(&bytes);
        Ok(())
    }

    /// Queues `@setDataFrame("onMetaData", metadata)` for a started publish.
    pub fn send_metadata(&mut self, metadata: Amf0Value) -> Result<(), SessionError> {
        let stream_id = self.active_publish_stream()?;
        let payload = amf0::encode_all(&[
            Amf0Value::String("@setDataFrame".into()),
            Amf0Value::String("onMetaData".into()),
            metadata,
        ])?
        .freeze();
        let bytes = shared_media_chunks(
            MediaKind::Data,
            stream_id,
            0,
            payload,
            self.conn.outgoing_chunk_size(),
        )?;
        self.conn.push_output(&bytes);
        Ok(())
    }

    /// Queues the commands that end the stream (`FCUnpublish` when publishing, then
    /// `deleteStream`); close the connection after writing the output.
    pub fn close(&mut self) -> Result<(), SessionError> {
        if let Some(stream_id) = self.stream_id.take() {
            if let ClientRole::Publish(_) = self.config.role {
                let key = Amf0Value::String(self.config.stream_key.clone());
                self.conn
                    .send_command(0, "FCUnpublish", 0.0, Amf0Value::Null, vec![key])?;
            }
            self.conn.send_command(
                0,
                "deleteStream",
                0.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(f64::from(stream_id))],
            )?;
        }
        self.phase = Phase::Closed;
        Ok(())
    }

    fn active_publish_stream(&self) -> Result<u32, SessionError> {
        match (self.config.role, self.phase, self.stream_id) {
            (ClientRole::Publish(_), Phase::Active, Some(id)) => Ok(id),
            (_, _, id) => Err(SessionError::NoPendingRequest {
                request: "publish",
                stream_id: id.unwrap_or(0),
            }),
        }
    }

    fn send_connect(&mut self) -> Result<(), SessionError> {
        let c = &self.config;
        let text = |s: &str| Amf0Value::String(s.to_owned());
        let mut object = vec![
            ("app".to_owned(), text(&c.app)),
            ("type".to_owned(), text("nonprivate")),
            ("flashVer".to_owned(), text(&c.flash_version)),
            ("tcUrl".to_owned(), text(&c.tc_url)),
        ];
        if c.role == ClientRole::Play {
            object.extend([
                ("fpad".to_owned(), Amf0Value::Boolean(false)),
                ("capabilities".to_owned(), Amf0Value::Number(15.0)),
                ("audioCodecs".to_owned(), Amf0Value::Number(4071.0)),
                ("videoCodecs".to_owned(), Amf0Value::Number(252.0)),
                ("videoFunction".to_owned(), Amf0Value::Number(1.0)),
            ]);
        }
        if c.node_notices {
            object.push((
                super::NODE_NOTICES_PROPERTY.to_owned(),
                Amf0Value::Boolean(true),
            ));
        }
        let chunk_size = c.chunk_size;
        self.conn.send(
            &RtmpMessage::SetChunkSize(chunk_size),
            super::CONTROL_CHUNK_STREAM_ID,
            0,
        )?;
        self.conn
            .send_command(0, "connect", CONNECT_TX, Amf0Value::Object(object), vec![])?;
        self.phase = Phase::Connecting;
        Ok(())
    }

    fn handle(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let message = RtmpMessage::decode(&raw).map_err(|source| SessionError::Message {
            csid: raw.chunk_stream_id,
            stream_id: raw.message_stream_id,
            source,
        })?;
        match self.conn.handle_control(&message)? {
            Control::Other => {}
            Control::Acknowledged(sequence_number) => {
                self.events
                    .push_back(ClientEvent::Acknowledged { sequence_number });
                return Ok(());
            }
            _ => {
                if let RtmpMessage::UserControl(UserControlEvent::StreamEof(id)) = message {
                    if Some(id) == self.stream_id && self.config.role == ClientRole::Play {
                        self.events.push_back(ClientEvent::StreamEnded);
                    }
                }
                return Ok(());
            }
        }
        // ffmpeg serving with -listen sends its media on message stream 0, not on the stream it
        // created for us; a client plays one stream, so accept both.
        let playing = self.config.role == ClientRole::Play
            && (raw.message_stream_id == 0 || Some(raw.message_stream_id) == self.stream_id);
        match message {
            RtmpMessage::Audio(payload) if playing => {
                self.media(MediaKind::Audio, raw.timestamp, payload)
            }
            RtmpMessage::Video(payload) if playing => {
                self.media(MediaKind::Video, raw.timestamp, payload)
            }
            RtmpMessage::Aggregate(payload) if playing => {
                let parts = split_aggregate(&payload, raw.timestamp).map_err(|source| {
                    SessionError::Message {
                        csid: raw.chunk_stream_id,
                        stream_id: raw.message_stream_id,
                        source,
                    }
                })?;
                for part in parts {
                    if let Some((values, payload)) = part.data() {
                        self.data(part.timestamp, values, payload)?;
                    } else if let Some(kind) = MediaKind::from_type_id(part.type_id) {
                        if kind != MediaKind::Data {
                            self.media(kind, part.timestamp, part.payload);
                        }
                    }
                }
            }
            RtmpMessage::Data { values, amf3 } if playing => {
                self.data(raw.timestamp, values, data_body(&raw.payload, amf3))?
            }
            RtmpMessage::Command { command, .. } => self.command(command)?,
            _ => {}
        }
        Ok(())
    }

    fn media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        if self.phase == Phase::Active {
            self.events.push_back(ClientEvent::Media {
                kind,
                timestamp,
                payload,
            });
        }
    }

    fn data(
        &mut self,
        timestamp: u32,
        values: Vec<Amf0Value>,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        let mut values = values.into_iter().peekable();
        // Servers that relay a publisher verbatim (ffmpeg -listen) keep the @setDataFrame prefix.
        let relayed = values.peek().and_then(Amf0Value::as_str) == Some("@setDataFrame");
        if relayed {
            values.next();
        }
        match values.next().as_ref().and_then(Amf0Value::as_str) {
            Some("onMetaData") => {
                let metadata = values.next().unwrap_or(Amf0Value::Null);
                let payload = if relayed {
                    amf0::encode_all(&[Amf0Value::String("onMetaData".into()), metadata.clone()])?
                        .freeze()
                } else {
                    payload
                };
                self.events.push_back(ClientEvent::Metadata {
                    timestamp,
                    metadata,
                    payload,
                });
            }
            // Stream housekeeping the server sends around Play.Start.
            Some("|RtmpSampleAccess") | Some("onStatus") => {}
            _ => self.media(MediaKind::Data, timestamp, payload),
        }
        Ok(())
    }

    fn command(&mut self, command: Command) -> Result<(), SessionError> {
        tracing::debug!(
            command = %command.name,
            transaction_id = command.transaction_id,
            "RTMP command from server"
        );
        let info = || status_info(command.arguments.first());
        match (command.name.as_str(), command.transaction_id) {
            ("_result", tx) if tx == CONNECT_TX && self.phase == Phase::Connecting => {
                self.events.push_back(ClientEvent::Connected);
                self.conn.send(
                    &RtmpMessage::WindowAckSize(self.config.window_size),
                    super::CONTROL_CHUNK_STREAM_ID,
                    0,
                )?;
                if let ClientRole::Publish(_) = self.config.role {
                    let key = Amf0Value::String(self.config.stream_key.clone());
                    self.conn.send_command(
                        0,
                        "releaseStream",
                        RELEASE_STREAM_TX,
                        Amf0Value::Null,
                        vec![key.clone()],
                    )?;
                    self.conn.send_command(
                        0,
                        "FCPublish",
                        FC_PUBLISH_TX,
                        Amf0Value::Null,
                        vec![key],
                    )?;
                }
                self.conn.send_command(
                    0,
                    "createStream",
                    CREATE_STREAM_TX,
                    Amf0Value::Null,
                    vec![],
                )?;
                self.phase = Phase::CreatingStream;
            }
            ("_result", tx) if tx == CREATE_STREAM_TX && self.phase == Phase::CreatingStream => {
                let Some(id) = command.number_argument(0) else {
                    self.reject("createStream", info());
                    return Ok(());
                };
                let stream_id = id as u32;
                self.stream_id = Some(stream_id);
                self.events
                    .push_back(ClientEvent::StreamCreated { stream_id });
                let key = Amf0Value::String(self.config.stream_key.clone());
                match self.config.role {
                    ClientRole::Publish(mode) => {
                        self.conn.send_command(
                            stream_id,
                            "publish",
                            PUBLISH_TX,
                            Amf0Value::Null,
                            vec![key, Amf0Value::String(mode.as_str().into())],
                        )?;
                    }
                    ClientRole::Play => {
                        self.conn.send_command(
                            stream_id,
                            "play",
                            0.0,
                            Amf0Value::Null,
                            vec![key, Amf0Value::Number(-2.0)],
                        )?;
                        self.conn
                            .send_user_control(UserControlEvent::SetBufferLength {
                                stream_id,
                                buffer_ms: PLAY_BUFFER_MS,
                            })?;
                    }
                }
                self.phase = Phase::Starting;
            }
            ("_error", tx) => {
                let command = match tx {
                    t if t == CONNECT_TX => "connect",
                    t if t == CREATE_STREAM_TX => "createStream",
                    _ => return Ok(()),
                };
                self.reject(command, info());
            }
            ("onStatus", _) => self.status(info()),
            _ => {}
        }
        Ok(())
    }

    fn reject(&mut self, command: &'static str, status: StatusInfo) {
        self.phase = Phase::Closed;
        self.events
            .push_back(ClientEvent::Rejected { command, status });
    }

    fn status(&mut self, status: StatusInfo) {
        let starting = self.phase == Phase::Starting;
        match status.code.as_str() {
            "NetStream.Publish.Start" if starting => {
                self.phase = Phase::Active;
                self.events.push_back(ClientEvent::PublishStarted);
            }
            "NetStream.Play.Start" if starting => {
                self.phase = Phase::Active;
                self.events.push_back(ClientEvent::PlayStarted);
            }
            "NetStream.Play.UnpublishNotify" => self.events.push_back(ClientEvent::StreamEnded),
            "NetStream.Play.PublishNotify" => self.events.push_back(ClientEvent::StreamResumed),
            _ if status.level == "error" && starting => {
                let command = match self.config.role {
                    ClientRole::Play => "play",
                    ClientRole::Publish(_) => "publish",
                };
                self.reject(command, status);
            }
            _ => self.events.push_back(ClientEvent::Status(status)),
        }
    }
}
