//! The tokio RTMP client: drives a sans-IO [`ClientSession`] over a TCP socket to pull (play)
//! or push (publish) one stream. Friend nodes pull from an origin with it; the load tool's
//! players and publisher use it too.
//!
//! ```no_run
//! # async fn run() -> Result<(), streamr_media::client::ClientError> {
//! use streamr_media::client::RtmpClient;
//! use streamr_media::rtmp::session::ClientEvent;
//! use streamr_media::rtmp::url::RtmpUrl;
//!
//! let url = RtmpUrl::parse("rtmp://127.0.0.1:1935/live/cam").expect("a valid URL");
//! let mut client = RtmpClient::play(&url).await?;
//! while let Some(event) = client.next_event().await? {
//!     if let ClientEvent::Media { kind, timestamp, payload } = event {
//!         println!("{kind:?} at {timestamp} ms: {} bytes", payload.len());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::amf0::Amf0Value;
use crate::rtmp::session::{
    ClientConfig, ClientEvent, ClientRole, ClientSession, MediaKind, PublishMode, SessionError,
};
use crate::rtmp::url::RtmpUrl;

/// Read buffer reserved per connection; small, since one process may hold thousands.
const READ_BUFFER: usize = 16 * 1024;

/// Why a client connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL being played or published.
        url: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server sent bytes the session could not accept.
    #[error("{url}: {source}")]
    Session {
        /// The URL being played or published.
        url: String,
        /// The protocol error.
        #[source]
        source: SessionError,
    },
    /// The server refused `connect`, `createStream`, `publish` or `play`.
    #[error("{url}: {command} refused: {code} ({description})")]
    Refused {
        /// The URL being played or published.
        url: String,
        /// The refused command.
        command: &'static str,
        /// The status code, e.g. `NetStream.Play.StreamNotFound`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// The server closed the connection before the stream started.
    #[error("{url}: the server closed the connection before the stream started")]
    ClosedBeforeStart {
        /// The URL being played or published.
        url: String,
    },
}

/// An RTMP client connection whose stream has started (playing or publishing).
#[derive(Debug)]
pub struct RtmpClient {
    url: String,
    socket: TcpStream,
    session: ClientSession,
    buffer: BytesMut,
    /// Events that arrived together with the start, handed out first by `next_event`.
    pending: VecDeque<ClientEvent>,
    bytes_received: u64,
}

impl RtmpClient {
    /// Connects to `url` and plays its stream; returns once the server said `Play.Start`.
    pub async fn play(url: &RtmpUrl) -> Result<Self, ClientError> {
        Self::open(url, ClientRole::Play).await
    }

    /// Connects to `url` and plays its stream as a relay pulling it: asks for the node notices
    /// players never get (such as the origin's HLS timing, see
    /// [`NODE_NOTICES_PROPERTY`](crate::rtmp::session::NODE_NOTICES_PROPERTY)); returns once
    /// the server said `Play.Start`.
    pub async fn pull(url: &RtmpUrl) -> Result<Self, ClientError> {
        Self::start(url, ClientRole::Play, true).await
    }

    /// Connects to `url` and publishes live to it; returns once the server said
    /// `Publish.Start`.
    pub async fn publish(url: &RtmpUrl) -> Result<Self, ClientError> {
        Self::open(url, ClientRole::Publish(PublishMode::Live)).await
    }

    /// Connects to `url` and runs the handshake and commands of `role` until the stream starts.
    pub async fn open(url: &RtmpUrl, role: ClientRole) -> Result<Self, ClientError> {
        Self::start(url, role, false).await
    }

    /// [`RtmpClient::open`], asking for node notices when `node_notices` is set.
    async fn start(
        url: &RtmpUrl,
        role: ClientRole,
        node_notices: bool,
    ) -> Result<Self, ClientError> {
        let url_text = url.to_string();
        let socket = TcpStream::connect(url.socket_address())
            .await
            .map_err(|source| ClientError::Io {
                url: url_text.clone(),
                source,
            })?;
        let _ = socket.set_nodelay(true);
        let mut config = ClientConfig::new(&url.socket_address(), &url.app, &url.stream_key, role);
        config.tc_url = url.tc_url();
        config.node_notices = node_notices;
        let mut client = Self {
            url: url_text,
            socket,
            session: ClientSession::new(config),
            buffer: BytesMut::with_capacity(READ_BUFFER),
            pending: VecDeque::new(),
            bytes_received: 0,
        };
        loop {
            client.flush().await?;
            if client.session.is_active() {
                return Ok(client);
            }
            if client.read_once().await? == 0 {
                return Err(ClientError::ClosedBeforeStart { url: client.url });
            }
            while let Some(event) = client.session.poll_event() {
                if let ClientEvent::Rejected { command, status } = event {
                    return Err(ClientError::Refused {
                        url: client.url,
                        command,
                        code: status.code,
                        description: status.description,
                    });
                }
                client.pending.push_back(event);
            }
        }
    }

    /// The next event from the server, reading as needed; `None` once the server closed the
    /// connection. Acknowledgements and pong replies are written as they become due.
    pub async fn next_event(&mut self) -> Result<Option<ClientEvent>, ClientError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if let Some(event) = self.session.poll_event() {
                return Ok(Some(event));
            }
            self.flush().await?;
            if self.read_once().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Sends one audio, video or data message of a started publish.
    pub async fn send_media(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        self.session
            .send_media(kind, timestamp, payload)
            .map_err(|source| self.session_error(source))?;
        self.flush().await?;
        self.drain_without_waiting()
    }

    /// Sends `@setDataFrame("onMetaData", metadata)` on a started publish.
    pub async fn send_metadata(&mut self, metadata: Amf0Value) -> Result<(), ClientError> {
        self.session
            .send_metadata(metadata)
            .map_err(|source| self.session_error(source))?;
        self.flush().await
    }

    /// Ends the stream politely (`FCUnpublish`/`deleteStream`) and shuts the socket down.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.session
            .close()
            .map_err(|source| self.session_error(source))?;
        self.flush().await?;
        let _ = self.socket.shutdown().await;
        Ok(())
    }

    /// Bytes read from the socket so far, protocol overhead included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// The URL this client plays or publishes.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        while self.session.has_output() {
            let output = self.session.take_output();
            self.socket
                .write_all(&output)
                .await
                .map_err(|source| self.io_error(source))?;
        }
        Ok(())
    }

    async fn read_once(&mut self) -> Result<usize, ClientError> {
        self.buffer.clear();
        self.buffer.reserve(READ_BUFFER);
        let n = self
            .socket
            .read_buf(&mut self.buffer)
            .await
            .map_err(|source| self.io_error(source))?;
        self.accept(n)
    }

    /// Consumes whatever the server sent (acknowledgements, pings) without waiting for more; a
    /// publisher calls this between frames so the server's control messages never pile up.
    fn drain_without_waiting(&mut self) -> Result<(), ClientError> {
        loop {
            self.buffer.clear();
            self.buffer.reserve(READ_BUFFER);
            match self.socket.try_read_buf(&mut self.buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.accept(n)?;
                    while let Some(event) = self.session.poll_event() {
                        // A publisher may never ask for events: keep what matters, not the
                        // server's running acknowledgements.
                        if !matches!(event, ClientEvent::Acknowledged { .. }) {
                            self.pending.push_back(event);
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(source) => return Err(self.io_error(source)),
            }
        }
    }

    fn accept(&mut self, n: usize) -> Result<usize, ClientError> {
        if n > 0 {
            self.bytes_received += n as u64;
            self.session
                .feed(&self.buffer)
                .map_err(|source| self.session_error(source))?;
        }
        Ok(n)
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            url: self.url.clone(),
            source,
        }
    }

    fn session_error(&self, source: SessionError) -> ClientError {
        ClientError::Session {
            url: self.url.clone(),
            source,
        }
    }
}
