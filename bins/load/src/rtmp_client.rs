//! A minimal tokio driver for the sans-IO RTMP client session, shared by players and the
//! publisher.

use anyhow::{bail, Context};
use bytes::BytesMut;
use streamr_media::rtmp::session::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use streamr_media::rtmp::url::RtmpUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer size per connection: small, since 10 000 players may share one process.
const READ_BUFFER: usize = 16 * 1024;

/// An established client connection: the socket and its session.
pub struct RtmpConnection {
    /// The socket.
    pub stream: TcpStream,
    /// The session state machine.
    pub session: ClientSession,
    buffer: BytesMut,
}

impl RtmpConnection {
    /// Connects to `url` and runs the handshake and commands until playing or publishing has
    /// started. Events that arrive with the start (metadata, first frames) are handed to
    /// `on_event`.
    pub async fn open(
        url: &RtmpUrl,
        role: ClientRole,
        mut on_event: impl FnMut(ClientEvent),
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(url.socket_address())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        stream.set_nodelay(true)?;
        let mut config = ClientConfig::new(&url.socket_address(), &url.app, &url.stream_key, role);
        config.tc_url = url.tc_url();
        let mut connection = Self {
            stream,
            session: ClientSession::new(config),
            buffer: BytesMut::with_capacity(READ_BUFFER),
        };
        loop {
            connection.flush().await?;
            if connection.session.is_active() {
                return Ok(connection);
            }
            if !connection.read().await? {
                bail!("{url}: server closed the connection before the stream started");
            }
            while let Some(event) = connection.session.poll_event() {
                if let ClientEvent::Rejected { command, status } = &event {
                    bail!(
                        "{url}: {command} rejected: {} {}",
                        status.code,
                        status.description
                    );
                }
                on_event(event);
            }
        }
    }

    /// Writes any queued session output.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        while self.session.has_output() {
            let output = self.session.take_output();
            self.stream.write_all(&output).await?;
        }
        Ok(())
    }

    /// Reads once from the socket into the session; returns the byte count read, 0 at EOF.
    pub async fn read_some(&mut self) -> anyhow::Result<usize> {
        self.buffer.clear();
        self.buffer.reserve(READ_BUFFER);
        let n = self.stream.read_buf(&mut self.buffer).await?;
        if n > 0 {
            self.session.feed(&self.buffer)?;
        }
        Ok(n)
    }

    async fn read(&mut self) -> anyhow::Result<bool> {
        Ok(self.read_some().await? > 0)
    }
}
