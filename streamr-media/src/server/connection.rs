//! One RTMP connection: the socket, its sans-IO session, and its publisher or player role.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use streamr_net::WriteClock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::hooks::{Protocol, StreamEvent, StreamRequest};
use super::metrics::ServerCounters;
use super::writer::{release_burst_room, WriteQueue, KEEP_BETWEEN_BATCHES};
use super::Shared;
use crate::name::{AppName, NameError};
use crate::relay::run::FrameRun;
use crate::relay::subscription::Received;
use crate::relay::{
    is_upstream_unpublished, timed_data, ChunkingKey, Frame, FrameKind, Publisher, RelayError,
    RelayEvent, StreamKey, Subscription, Timeline,
};
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::session::{
    shared_media_chunks, MediaKind, PublishRejection, ServerConfig, ServerEvent, ServerSession,
    SessionError,
};
use crate::shared_bytes::{send_spans, SharedStore, Span};

/// Bytes read from a publisher's socket per system call.
const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Bytes read per system call before the connection publishes: players only send a few commands
/// and acknowledgements, so they keep a small buffer.
const SMALL_READ_BUFFER_SIZE: usize = 4 * 1024;
/// Read buffer of a connection once it plays.
const PLAYER_READ_BUFFER_SIZE: usize = 512;
/// Most relay events taken from a subscription per batch.
const RELAY_BATCH_EVENTS: usize = 256;
/// Queued bytes past which a player's batch is written before taking more available frames.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the RTMP protocol (handshake, chunk stream, message or command).
    #[error("RTMP protocol error: {0}")]
    Session(#[from] SessionError),
    /// Reading or writing the socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer did not complete the handshake and `connect` in time.
    #[error("no handshake and connect within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer closed the connection part way through the RTMP handshake.
    #[error("peer closed the connection during the handshake after sending {0} bytes")]
    ClosedDuringHandshake(u64),
    /// The peer connected but neither published nor played in time.
    #[error("connected but neither published nor played within {0:?}")]
    SetupTimeout(Duration),
    /// The peer played a stream that had no publisher for too long.
    #[error("played a stream without a publisher for {0:?}")]
    PlayWaitTimeout(Duration),
    /// The peer asked to `connect` to an app whose name is not allowed.
    #[error("refused connect: {0}")]
    InvalidName(#[from] NameError),
    /// A publisher sent nothing for too long.
    #[error("publisher sent nothing for {0:?}")]
    PublisherIdle(Duration),
    /// The peer took no byte for too long (it stopped reading).
    #[error("peer accepted no data for {0:?}; {1} bytes were waiting")]
    WriteTimeout(Duration, usize),
    /// The TLS handshake of an RTMPS connection failed.
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] io::Error),
    /// The peer did not complete the TLS handshake of an RTMPS connection in time.
    #[error("no TLS handshake within {0:?}")]
    TlsHandshakeTimeout(Duration),
}

/// Serves one accepted connection until the peer leaves, errs or the server shuts down.
pub(super) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let (mut reader, mut writer) = socket.into_split();
    serve_halves(&mut reader, &mut writer, peer, shared, shutdown).await
}

/// Serves one accepted RTMPS connection: the TLS handshake (within the handshake timeout),
/// then RTMP inside it as [`serve`] does.
pub(super) async fn serve_tls(
    socket: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    acceptor: &tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let limit = shared.config.handshake_timeout;
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        handshake = timeout(limit, acceptor.accept(socket)) => handshake,
    };
    let stream = handshake
        .map_err(|_| ConnectionError::TlsHandshakeTimeout(limit))?
        .map_err(ConnectionError::TlsHandshake)?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    serve_halves(&mut reader, &mut writer, peer, shared, shutdown).await
}

async fn serve_halves<R, W>(
    reader: &mut R,
    writer: &mut W,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    // A token of its own: waiting for (and checking) the server's shutdown then touches only
    // this connection's lock, not one shared by every connection on every wake-up.
    let shutdown = shutdown.child_token();
    let mut connection = Connection::new(peer, shared);
    let result = connection.run(reader, writer, &shutdown).await;
    connection.stop_publishing().await;
    connection.stop_playing().await;
    result
}

/// The stream a connection publishes.
struct Publishing {
    stream_id: u32,
    publisher: Publisher,
}

/// The stream a connection plays.
struct Playing {
    stream_id: u32,
    subscription: Subscription,
    audio: bool,
    video: bool,
    /// Since when the stream has had no publisher, as far as this player has seen.
    unpublished_since: Option<Instant>,
    /// Frames this player had skipped when last counted.
    frames_dropped: u64,
    /// The stream's shared store for this player's chunking key, when its batches may go out
    /// by `sendfile`.
    shared: Option<(ChunkingKey, Arc<SharedStore>)>,
    /// The current publish is this node's pull of an upstream ([`Timeline::Upstream`]).
    pulled: bool,
    /// That pull's upstream said its publisher left
    /// ([`UPSTREAM_UNPUBLISHED_NOTICE`](crate::relay::UPSTREAM_UNPUBLISHED_NOTICE)).
    upstream_unpublished: bool,
}

/// What woke the connection loop.
enum Wake {
    Shutdown,
    HandshakeTimeout,
    SetupTimeout,
    PlayWaitTimeout,
    PublisherIdle,
    FlushHeld,
    Read(io::Result<usize>),
    /// A batch of relay events, or a run of frames shared with the stream's other players,
    /// arrived.
    Relay(Received),
}

struct Connection<'a> {
    peer: SocketAddr,
    shared: &'a Shared,
    session: ServerSession,
    app: Option<AppName>,
    /// When the connection last became connected without publishing or playing.
    idle_since: Instant,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// Bytes written first in a batch: session output, status messages, and the frames when
    /// the batch goes out by a vectored write.
    queue: WriteQueue,
    relay_events: Vec<RelayEvent>,
    /// Frames queued behind `queue`, with their chunked bytes, while it is not yet decided how
    /// they go out (a player whose batches may go out by `sendfile`).
    frames: Vec<(Arc<Frame>, Bytes)>,
    /// Their bytes.
    frames_len: usize,
    /// The batch's frames in the stream's shared file, consecutive ones merged, when it goes
    /// out by `sendfile` (after `queue`).
    spans: Vec<Span>,
    /// Smallest batch sent by `sendfile`; `None` when this connection's never are (TLS, not
    /// Linux, turned off).
    sendfile_min: Option<usize>,
    /// The deadline of the writes that have to wait (vectored or `sendfile`), on progress: the
    /// peer is cut once it has taken no byte for the server's write timeout, never while bytes
    /// keep moving, however long a batch takes. Its timer is allocated the first time a write
    /// waits (a peer keeping up never does), then reused for the connection's life.
    clock: WriteClock,
}

impl<'a> Connection<'a> {
    fn new(peer: SocketAddr, shared: &'a Shared) -> Self {
        let session_config = ServerConfig {
            chunk_size: shared.config.chunk_size,
            limits: ChunkLimits {
                max_message_size: shared.config.max_message_size,
                ..ChunkLimits::default()
            },
            ..ServerConfig::default()
        };
        Connection {
            peer,
            shared,
            session: ServerSession::new(session_config),
            app: None,
            idle_since: Instant::now(),
            publishing: None,
            playing: None,
            queue: WriteQueue::default(),
            relay_events: Vec::with_capacity(KEEP_BETWEEN_BATCHES),
            frames: Vec::new(),
            frames_len: 0,
            spans: Vec::new(),
            sendfile_min: None,
            clock: WriteClock::new(shared.config.write_timeout),
        }
    }

    async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin + 'static>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        if SharedStore::is_supported() && tcp_socket(&*writer).is_some() {
            self.sendfile_min = self.shared.config.sendfile_min_bytes;
        }
        let mut buffer = vec![0u8; SMALL_READ_BUFFER_SIZE];
        let handshake_deadline = Instant::now() + self.shared.config.handshake_timeout;
        let mut received = 0u64;
        let mut last_read = Instant::now();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            self.queue_session_output();
            self.write_queued(writer, shutdown).await?;
            let connected = self.app.is_some();
            let publishing = self.publishing.is_some();
            let setting_up = connected && !publishing && self.playing.is_none();
            let setup_deadline = self.idle_since + self.shared.config.setup_timeout;
            let play_wait_deadline = self
                .playing
                .as_ref()
                .and_then(|playing| playing.unpublished_since)
                .map(|since| since + self.shared.config.play_wait_timeout);
            if publishing && buffer.len() < READ_BUFFER_SIZE {
                buffer.resize(READ_BUFFER_SIZE, 0);
            } else if self.playing.is_some() && buffer.len() > PLAYER_READ_BUFFER_SIZE {
                // A player sends little once playing (acknowledgements, pings): a few hundred
                // bytes per read are enough, and every player keeps this buffer.
                buffer.truncate(PLAYER_READ_BUFFER_SIZE);
                buffer.shrink_to_fit();
            }
            let idle_deadline = last_read + self.shared.config.publisher_idle_timeout;
            // Players are woken once per batch of the publisher's frames (see
            // `Publisher::send_batched`).
            let flush_deadline = self
                .publishing
                .as_ref()
                .and_then(|publishing| publishing.publisher.flush_deadline())
                .map(Instant::from_std);
            let wake = {
                let playing = self.playing.as_mut();
                let relay_events = &mut self.relay_events;
                tokio::select! {
                    biased;
                    _ = &mut cancelled => Wake::Shutdown,
                    // `until` sets a timer up only for the branches enabled: a player keeping
                    // up has none, so its wake-ups touch no timer.
                    _ = until(handshake_deadline), if !connected => Wake::HandshakeTimeout,
                    _ = until(setup_deadline), if setting_up => Wake::SetupTimeout,
                    _ = until(play_wait_deadline.unwrap_or(setup_deadline)),
                        if play_wait_deadline.is_some() => Wake::PlayWaitTimeout,
                    _ = until(idle_deadline), if publishing => Wake::PublisherIdle,
                    _ = until(flush_deadline.unwrap_or(idle_deadline)),
                        if flush_deadline.is_some() => Wake::FlushHeld,
                    read = reader.read(&mut buffer) => Wake::Read(read),
                    received = next_relay_batch(playing, relay_events) => Wake::Relay(received),
                }
            };
            match wake {
                Wake::Shutdown => return Ok(()),
                Wake::HandshakeTimeout => {
                    return Err(ConnectionError::HandshakeTimeout(
                        self.shared.config.handshake_timeout,
                    ))
                }
                Wake::SetupTimeout => {
                    return Err(ConnectionError::SetupTimeout(
                        self.shared.config.setup_timeout,
                    ))
                }
                Wake::PlayWaitTimeout => {
                    return Err(ConnectionError::PlayWaitTimeout(
                        self.shared.config.play_wait_timeout,
                    ))
                }
                Wake::PublisherIdle => {
                    return Err(ConnectionError::PublisherIdle(
                        self.shared.config.publisher_idle_timeout,
                    ))
                }
                Wake::FlushHeld => {
                    // The groups due now: with staggered batches, the others are not yet.
                    if let Some(publishing) = self.publishing.as_mut() {
                        publishing.publisher.flush_if_due(std::time::Instant::now());
                    }
                }
                Wake::Read(read) => {
                    let read = read?;
                    last_read = Instant::now();
                    let Some(bytes) = buffer.get(..read).filter(|b| !b.is_empty()) else {
                        if received > 0 && !self.session.handshake_done() {
                            return Err(ConnectionError::ClosedDuringHandshake(received));
                        }
                        return Ok(());
                    };
                    received = received.saturating_add(read as u64);
                    ServerCounters::add(&self.shared.counters.bytes_in, read as u64);
                    self.session.feed(bytes)?;
                    if let Err(error) = self.handle_session_events().await {
                        // Tell the peer why (a refused connect, say) before closing.
                        self.queue_session_output();
                        let _ = self.write_queued(writer, shutdown).await;
                        return Err(error);
                    }
                    if let Some(publishing) = self.publishing.as_mut() {
                        publishing.publisher.flush_if_due(std::time::Instant::now());
                    }
                }
                Wake::Relay(Received::Run(run)) => {
                    // A run reaches the head: nothing more to look for.
                    self.queue_run(&run)?;
                    self.count_skips();
                }
                Wake::Relay(Received::Events(received)) => {
                    self.queue_relay_events()?;
                    // A batch short of the limit took everything there was: looking again
                    // would only lock the stream to find nothing.
                    if received >= RELAY_BATCH_EVENTS {
                        self.take_available_relay_events()?;
                    }
                    self.count_skips();
                }
            }
        }
    }

    /// Queues every relay event already available (up to a write batch), so frames that piled
    /// up while the socket was busy go out together in one vectored write. Never waits: a
    /// player's frames are written as soon as they are announced.
    fn take_available_relay_events(&mut self) -> Result<(), ConnectionError> {
        while self.queue.queued_bytes().saturating_add(self.frames_len) < WRITE_BATCH_BYTES {
            let Some(playing) = self.playing.as_mut() else {
                break;
            };
            match playing
                .subscription
                .try_recv_shared(&mut self.relay_events, RELAY_BATCH_EVENTS)
            {
                Received::Events(0) => break,
                Received::Events(_) => self.queue_relay_events()?,
                Received::Run(run) => {
                    self.queue_run(&run)?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Queues a run of frames shared with the stream's other players (see
    /// [`crate::relay::run`]): as the run's spans of the stream's shared file, collected once
    /// for every player chunking alike, when the player takes every track, nothing else is
    /// held, and the run is large enough for `sendfile`; otherwise like its frames' events.
    fn queue_run(&mut self, run: &FrameRun) -> Result<(), ConnectionError> {
        let chunk_size = self.session.outgoing_chunk_size();
        if let (Some(min), Some(playing)) = (self.sendfile_min, self.playing.as_mut()) {
            let key = ChunkingKey {
                chunk_size,
                message_stream_id: playing.stream_id,
            };
            let store = playing.shared.as_ref().filter(|(k, _)| *k == key);
            if let (Some((_, store)), true, true) = (
                store,
                playing.audio && playing.video,
                self.frames.is_empty(),
            ) {
                let spans = run.rtmp_chunk_spans(key, |frame| {
                    rtmp_chunks(frame, key).filter(|bytes| !bytes.is_empty())?;
                    frame.chunked_span(key, store)
                });
                if let Some(spans) = spans.filter(|spans| spans.len >= min as u64) {
                    playing.unpublished_since = None;
                    self.spans.extend(spans.spans.iter().cloned());
                    return Ok(());
                }
            }
        }
        self.relay_events
            .extend(run.frames().iter().cloned().map(RelayEvent::Frame));
        self.queue_relay_events()
    }

    /// Adds the frames this player skipped since the last count to the server's counters.
    fn count_skips(&mut self) {
        let Some(playing) = self.playing.as_mut() else {
            return;
        };
        let dropped = playing.subscription.stats().frames_dropped;
        if dropped > playing.frames_dropped {
            let counters = &self.shared.counters;
            ServerCounters::add(&counters.frames_dropped, dropped - playing.frames_dropped);
            ServerCounters::add(&counters.slow_viewer_skips, 1);
            playing.frames_dropped = dropped;
        }
    }

    fn queue_session_output(&mut self) {
        if self.session.has_output() {
            // Behind the frames already taken, as their vectored write would send it.
            self.queue_frames();
            self.queue.push(self.session.take_output());
        }
    }

    /// Moves the frames held for a possible `sendfile` into the vectored write's queue.
    fn queue_frames(&mut self) {
        for (_, bytes) in self.frames.drain(..) {
            self.queue.push(bytes);
        }
        self.frames_len = 0;
    }

    /// Decides how the held frames go out: as spans of the stream's shared file when the batch
    /// is large enough and every frame is there, otherwise queued for the vectored write.
    fn close_batch(&mut self) {
        if self.frames.is_empty() {
            return;
        }
        let store = self.playing.as_ref().and_then(|p| p.shared.as_ref());
        if let (Some(min), Some((key, store))) = (self.sendfile_min, store) {
            if self.frames_len >= min {
                let spans = self
                    .frames
                    .iter()
                    .map(|(frame, _)| frame.chunked_span(*key, store));
                if crate::shared_bytes::collect_spans(spans, &mut self.spans) {
                    self.frames.clear();
                    self.frames_len = 0;
                    return;
                }
            }
        }
        self.queue_frames();
    }

    /// Writes everything queued: the vectored write's queue, then the batch's spans of the
    /// stream's shared file. Returns early (leaving the rest queued) on shutdown, so a peer that
    /// stopped reading cannot hold the server up. A write that has to wait does so under the
    /// connection's [`WriteClock`]: the peer is cut once it has taken no byte for the write
    /// timeout.
    async fn write_queued<W: AsyncWrite + Unpin + 'static>(
        &mut self,
        writer: &mut W,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        self.close_batch();
        if self.queue.is_empty() && self.spans.is_empty() {
            return Ok(());
        }
        if !self.queue.is_empty() {
            // A player keeping up takes the batch at once: no deadline timer, no shutdown waiter.
            let (written, done) = self.queue.write_now(writer)?;
            ServerCounters::add(&self.shared.counters.bytes_out, written as u64);
            if !done {
                let written = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        self.spans.clear();
                        return Ok(());
                    }
                    written = self.queue.write_all(writer, &mut self.clock) => written,
                };
                match written {
                    Ok(written) => {
                        ServerCounters::add(&self.shared.counters.bytes_out, written as u64)
                    }
                    Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                        return Err(ConnectionError::WriteTimeout(
                            self.clock.timeout(),
                            self.queue.queued_bytes(),
                        ))
                    }
                    Err(error) => return Err(ConnectionError::Io(error)),
                }
            }
        }
        if !self.spans.is_empty() {
            let socket = tcp_socket(&*writer).ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "sendfile needs a TCP socket")
            })?;
            let waiting: u64 = self.spans.iter().map(Span::len).sum();
            // Polled first: a player keeping up takes the batch at once, and the shutdown
            // waiter is never set up (nor the clock's timer).
            let sent = tokio::select! {
                biased;
                sent = send_spans(socket, &self.spans, &mut self.clock) => Some(sent),
                _ = shutdown.cancelled() => None,
            };
            self.spans.clear();
            let Some(sent) = sent else {
                self.spans.clear();
                return Ok(());
            };
            match sent {
                Ok(sent) => {
                    let counters = &self.shared.counters;
                    ServerCounters::add(&counters.bytes_out, sent);
                    ServerCounters::add(&counters.bytes_shared, sent);
                }
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                    return Err(ConnectionError::WriteTimeout(
                        self.clock.timeout(),
                        usize::try_from(waiting).unwrap_or(usize::MAX),
                    ))
                }
                Err(error) => return Err(ConnectionError::Io(error)),
            }
        }
        // A player's first batch (the GOP cache) grew these far past what later ones need, and
        // its handshake the session's buffers.
        self.queue.release_burst_room();
        release_burst_room(&mut self.relay_events);
        release_burst_room(&mut self.frames);
        release_burst_room(&mut self.spans);
        if self.playing.is_some() {
            self.session.release_idle_buffers();
        }
        Ok(())
    }

    /// Turns relay events into queued wire bytes: frames as shared chunked buffers, publisher
    /// changes as status messages when configured.
    fn queue_relay_events(&mut self) -> Result<(), ConnectionError> {
        let sendfile = self.sendfile_min.is_some();
        let chunk_size = self.session.outgoing_chunk_size();
        let Some(playing) = self.playing.as_mut() else {
            self.relay_events.clear();
            return Ok(());
        };
        let stream_id = playing.stream_id;
        let key = ChunkingKey {
            chunk_size,
            message_stream_id: stream_id,
        };
        if sendfile && playing.shared.as_ref().is_none_or(|(k, _)| *k != key) {
            playing.shared = playing
                .subscription
                .shared_rtmp(key)
                .map(|store| (key, store));
        }
        let (audio, video) = (playing.audio, playing.video);
        let notify = self.shared.config.notify_players_on_unpublish;
        // A relay is told when the publisher left, so that it ends what it cuts where this node
        // does.
        let relay = self.session.wants_node_notices();
        let mut unpublished_since = playing.unpublished_since;
        let (mut pulled, mut upstream_unpublished) = (playing.pulled, playing.upstream_unpublished);
        // Only a relay's notices depend on it: a player's batch clones nothing.
        let stream_key = relay.then(|| playing.subscription.key().clone());
        // Taken out while the events are turned into bytes (which may queue session output),
        // and put back empty, keeping its room.
        let mut events = std::mem::take(&mut self.relay_events);
        for event in events.drain(..) {
            match &event {
                RelayEvent::PublisherEnded => unpublished_since = Some(Instant::now()),
                RelayEvent::PublisherStarted => {
                    unpublished_since = None;
                    pulled = stream_key
                        .as_ref()
                        .and_then(|key| self.shared.hub.publisher_timeline(key))
                        == Some(Timeline::Upstream);
                    upstream_unpublished = false;
                }
                RelayEvent::Frame(frame) => {
                    unpublished_since = None;
                    if frame.kind() == FrameKind::Metadata
                        && is_upstream_unpublished(frame.payload())
                    {
                        upstream_unpublished = true;
                    }
                }
            }
            // Told when the publisher left, here or upstream, but not when this node's pull of it
            // failed: the relay then notices the silence and fails over, as it would had this
            // node died.
            let tell_relay = relay && (!pulled || upstream_unpublished);
            match event {
                RelayEvent::Frame(frame) => {
                    let kind = match frame.kind() {
                        FrameKind::Audio if audio => MediaKind::Audio,
                        FrameKind::Video if video => MediaKind::Video,
                        // Data messages go to players that turned audio or video off too.
                        FrameKind::Metadata | FrameKind::Data => MediaKind::Data,
                        _ => continue,
                    };
                    let Some(bytes) = chunks_of(&frame, kind, key).filter(|b| !b.is_empty()) else {
                        continue;
                    };
                    if sendfile {
                        // Held until the batch is closed: it may go out by `sendfile`.
                        self.frames_len = self.frames_len.saturating_add(bytes.len());
                        self.frames.push((frame, bytes));
                    } else {
                        self.queue.push(bytes);
                    }
                }
                RelayEvent::PublisherEnded if notify || tell_relay => {
                    self.session.notify_unpublished(stream_id)?;
                    self.queue_session_output();
                }
                RelayEvent::PublisherStarted if notify || relay => {
                    self.session.notify_republished(stream_id)?;
                    self.queue_session_output();
                }
                _ => {}
            }
        }
        self.relay_events = events;
        if let Some(playing) = self.playing.as_mut() {
            playing.unpublished_since = unpublished_since;
            playing.pulled = pulled;
            playing.upstream_unpublished = upstream_unpublished;
        }
        Ok(())
    }

    async fn handle_session_events(&mut self) -> Result<(), ConnectionError> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ServerEvent::ConnectRequested { app, .. } => {
                    // Some encoders append credentials to the app (`live?token=...`).
                    let app = app.split('?').next().unwrap_or_default();
                    match AppName::parse(app) {
                        Ok(app) => {
                            self.app = Some(app);
                            self.idle_since = Instant::now();
                            self.session.accept_connect()?;
                        }
                        Err(error) => {
                            info!(peer = %self.peer, %error, "connect refused");
                            self.session.reject_connect(&error.to_string())?;
                            return Err(ConnectionError::InvalidName(error));
                        }
                    }
                }
                ServerEvent::PublishRequested {
                    stream_id,
                    stream_key,
                    ..
                } => self.start_publishing(stream_id, &stream_key).await?,
                ServerEvent::PlayRequested {
                    stream_id,
                    stream_key,
                    ..
                } => self.start_playing(stream_id, &stream_key).await?,
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => {
                    let (kind, payload) = match kind {
                        MediaKind::Audio => (FrameKind::Audio, payload),
                        MediaKind::Video => (FrameKind::Video, payload),
                        // Timed data (captions, cue points) is relayed without
                        // `@setDataFrame`; node notices and requests to the server are not.
                        MediaKind::Data => match timed_data(payload) {
                            Some(payload) => (FrameKind::Data, payload),
                            None => continue,
                        },
                    };
                    if let Some(publishing) = self.publishing.as_mut() {
                        let now = std::time::Instant::now();
                        publishing
                            .publisher
                            .send_batched(kind, timestamp, payload, now);
                    }
                }
                ServerEvent::Metadata {
                    timestamp, payload, ..
                } => {
                    if let Some(publishing) = self.publishing.as_mut() {
                        let now = std::time::Instant::now();
                        publishing.publisher.send_batched(
                            FrameKind::Metadata,
                            timestamp,
                            payload,
                            now,
                        );
                    }
                }
                ServerEvent::PublishFinished { stream_id, .. }
                    if self
                        .publishing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id) =>
                {
                    self.stop_publishing().await;
                }
                ServerEvent::PlayFinished { stream_id, .. }
                    if self
                        .playing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id) =>
                {
                    self.stop_playing().await;
                }
                ServerEvent::ReceiveMediaChanged {
                    stream_id,
                    kind,
                    enabled,
                } => {
                    if let Some(playing) =
                        self.playing.as_mut().filter(|p| p.stream_id == stream_id)
                    {
                        match kind {
                            MediaKind::Audio => playing.audio = enabled,
                            MediaKind::Video => playing.video = enabled,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            self.queue_session_output();
        }
        Ok(())
    }

    /// The stream request for `stream_key` on this connection's app, split from its query;
    /// refused when the name is not a valid stream name.
    fn request(&self, stream_key: &str) -> Result<StreamRequest, NameError> {
        let (name, query) = stream_key.split_once('?').unwrap_or((stream_key, ""));
        let name = crate::name::StreamName::parse(name)?;
        // The session reports publish and play only after a connect, which set the app.
        let app = match &self.app {
            Some(app) => app.clone(),
            None => AppName::parse("")?,
        };
        Ok(StreamRequest::new(
            StreamKey::new(app, name),
            query,
            self.peer,
            Protocol::Rtmp,
        ))
    }

    async fn start_publishing(
        &mut self,
        stream_id: u32,
        stream_key: &str,
    ) -> Result<(), ConnectionError> {
        let request = match self.request(stream_key) {
            Ok(request) => request,
            Err(error) => {
                info!(peer = %self.peer, %error, "publish refused");
                self.session.reject_publish(
                    stream_id,
                    PublishRejection::BadName,
                    &error.to_string(),
                )?;
                return Ok(());
            }
        };
        if self.publishing.is_some() || self.playing.is_some() {
            self.session.reject_publish(
                stream_id,
                PublishRejection::BadName,
                "this connection already publishes or plays a stream",
            )?;
            return Ok(());
        }
        if let Err(refusal) = self.shared.hooks.authorize_publish(&request).await {
            info!(peer = %self.peer, key = %request.key, reason = %refusal, "publish refused");
            self.session
                .reject_publish(stream_id, PublishRejection::Denied, &refusal.reason)?;
            return Ok(());
        }
        match self.shared.hub.publish(request.key.clone()) {
            Ok(publisher) => {
                self.session.accept_publish(stream_id)?;
                info!(peer = %self.peer, key = %request.key, "publish started");
                self.publishing = Some(Publishing {
                    stream_id,
                    publisher,
                });
                ServerCounters::add(&self.shared.counters.publishers, 1);
                self.shared
                    .hooks
                    .on_event(StreamEvent::PublishStarted {
                        key: request.key,
                        peer: self.peer,
                    })
                    .await;
            }
            Err(err) => {
                info!(peer = %self.peer, key = %request.key, error = %err, "publish refused");
                let reason = match err {
                    RelayError::StreamBusy { .. } => PublishRejection::BadName,
                    _ => PublishRejection::Denied,
                };
                self.session
                    .reject_publish(stream_id, reason, &err.to_string())?;
            }
        }
        Ok(())
    }

    async fn start_playing(
        &mut self,
        stream_id: u32,
        stream_key: &str,
    ) -> Result<(), ConnectionError> {
        let request = match self.request(stream_key) {
            Ok(request) => request,
            Err(error) => {
                info!(peer = %self.peer, %error, "play refused");
                self.session.reject_play(stream_id, &error.to_string())?;
                return Ok(());
            }
        };
        if self.publishing.is_some() || self.playing.is_some() {
            self.session.reject_play(
                stream_id,
                "this connection already publishes or plays a stream",
            )?;
            return Ok(());
        }
        if let Err(refusal) = self.shared.hooks.admit_play(&request).await {
            info!(peer = %self.peer, key = %request.key, reason = %refusal, "play refused");
            self.session.reject_play(stream_id, &refusal.reason)?;
            return Ok(());
        }
        // A relay failing over from another upstream resumes where it stopped.
        let subscribed = match crate::upstream::resume_from_query(&request.query) {
            Some(at) => self.shared.hub.subscribe_resuming(request.key.clone(), at),
            None => self.shared.hub.subscribe(request.key.clone()),
        };
        match subscribed {
            Ok(mut subscription) => {
                // Data messages between nodes go only to relays that asked for them.
                subscription.set_node_notices(self.session.wants_node_notices());
                // The Play.Start status must reach the player before the first frame.
                self.session.accept_play(stream_id)?;
                self.queue_session_output();
                info!(peer = %self.peer, key = %request.key, viewer = subscription.id(), "play started");
                let viewer_id = subscription.id();
                let unpublished_since =
                    (!self.shared.hub.is_publishing(&request.key)).then(Instant::now);
                self.playing = Some(Playing {
                    stream_id,
                    subscription,
                    audio: true,
                    video: true,
                    unpublished_since,
                    frames_dropped: 0,
                    shared: None,
                    pulled: self.shared.hub.publisher_timeline(&request.key)
                        == Some(Timeline::Upstream),
                    upstream_unpublished: false,
                });
                ServerCounters::add(&self.shared.counters.players, 1);
                self.shared
                    .hooks
                    .on_event(StreamEvent::PlayStarted {
                        key: request.key,
                        peer: self.peer,
                        viewer_id,
                    })
                    .await;
            }
            Err(err) => {
                info!(peer = %self.peer, key = %request.key, error = %err, "play refused");
                self.session.reject_play(stream_id, &err.to_string())?;
            }
        }
        Ok(())
    }

    async fn stop_publishing(&mut self) {
        if let Some(publishing) = self.publishing.take() {
            let key = publishing.publisher.key().clone();
            drop(publishing);
            ServerCounters::sub(&self.shared.counters.publishers);
            self.idle_since = Instant::now();
            info!(peer = %self.peer, %key, "publish ended");
            self.shared
                .hooks
                .on_event(StreamEvent::PublishEnded {
                    key,
                    peer: self.peer,
                })
                .await;
        }
    }

    async fn stop_playing(&mut self) {
        self.count_skips();
        if let Some(playing) = self.playing.take() {
            let key = playing.subscription.key().clone();
            let stats = playing.subscription.stats();
            drop(playing);
            ServerCounters::sub(&self.shared.counters.players);
            self.idle_since = Instant::now();
            info!(
                peer = %self.peer,
                %key,
                frames = stats.frames_out,
                bytes = stats.bytes_out,
                dropped_frames = stats.frames_dropped,
                "play ended"
            );
            self.shared
                .hooks
                .on_event(StreamEvent::PlayEnded {
                    key,
                    peer: self.peer,
                    stats,
                })
                .await;
        }
    }
}

/// The plain TCP socket under a connection's write half, when it is one (`sendfile` needs the
/// socket itself; an RTMPS connection's is not).
fn tcp_socket<W: Any>(writer: &W) -> Option<&TcpStream> {
    (writer as &dyn Any)
        .downcast_ref::<OwnedWriteHalf>()
        .map(AsRef::as_ref)
}

/// Sleeps until `deadline`; the timer is set up on the first poll, so a disabled `select!`
/// branch costs none.
async fn until(deadline: Instant) {
    sleep_until(deadline).await;
}

/// The next batch of relay events (or a shared run) for a playing connection; never resolves
/// otherwise.
async fn next_relay_batch(playing: Option<&mut Playing>, events: &mut Vec<RelayEvent>) -> Received {
    match playing {
        Some(playing) => {
            let received = playing
                .subscription
                .recv_shared(events, RELAY_BATCH_EVENTS)
                .await;
            if matches!(received, Received::Events(0)) {
                std::future::pending::<()>().await;
            }
            received
        }
        None => std::future::pending().await,
    }
}

/// A frame's RTMP chunks for connections chunking with `key`, made once and shared (see
/// [`Frame::chunked`]); empty when the frame cannot be encoded. Relayed payloads came through
/// the same chunk decoder, so they fit the 24-bit length field; an encoding failure leaves the
/// frame out.
fn chunks_of(frame: &Frame, kind: MediaKind, key: ChunkingKey) -> Option<Bytes> {
    Some(frame.chunked(key, |f| {
        shared_media_chunks(
            kind,
            key.message_stream_id,
            f.timestamp(),
            f.payload().clone(),
            key.chunk_size,
        )
        .unwrap_or_default()
    }))
}

/// [`chunks_of`] for a player that takes every track.
fn rtmp_chunks(frame: &Frame, key: ChunkingKey) -> Option<Bytes> {
    let kind = match frame.kind() {
        FrameKind::Audio => MediaKind::Audio,
        FrameKind::Video => MediaKind::Video,
        FrameKind::Metadata | FrameKind::Data => MediaKind::Data,
    };
    chunks_of(frame, kind, key)
}
