//! HTTP-FLV written straight onto the connection, like an RTMP player's frames.
//!
//! Once the router has parsed and authorised a `GET …/{stream}.flv`, it takes the connection
//! over from the HTTP loop ([`streamr_net::TakeConnection`]) and this writer sends the response
//! head once, then for each wake-up of the player every frame available. Each frame's FLV tag is
//! built once ([`Frame::flv_tag`]) and shared by every player. The body is chunked for HTTP/1.1
//! clients, one chunk per frame ([`Frame::flv_chunk`], also built once and shared, so a player's
//! bytes after its FLV header are the same as every other player's), and close-delimited for
//! HTTP/1.0 ones.
//!
//! How a batch goes out:
//! - On a plain TCP connection on Linux, a chunked batch of at least [`ZERO_COPY_MIN_BYTES`] is
//!   sent with `sendfile(2)` from the stream's shared in-memory file
//!   ([`crate::shared_bytes`]): consecutive frames are consecutive bytes there, so a batch is
//!   usually one system call, and the kernel references the same pages for every player instead
//!   of copying the bytes in once per player.
//! - Otherwise (TLS, HTTP/1.0, other systems, small batches, no in-memory file) the frames'
//!   shared buffers go out in one vectored write. Both give the same bytes.
//!
//! A player that falls behind skips to a keyframe (the relay's policy, as for RTMP), and its
//! skips are counted in [`FlvCounters`].
//!
//! The write deadline is the HTTP layer's ([`streamr_net::WriteClock`], one per response): a
//! player is cut once it has taken no byte for the deadline, never for a batch that takes
//! longer in total while its bytes keep moving. A batch the socket takes at once arms no timer.

use std::any::Any;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use streamr_net::WriteClock;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::flv::{FlvHeader, FlvWriter};
use crate::relay::run::FrameRun;
use crate::relay::subscription::Received;
use crate::relay::{Frame, RelayEvent, Subscription};
use crate::server::{release_burst_room, WriteQueue, KEEP_BETWEEN_BATCHES};
use crate::shared_bytes::{send_spans, SharedStore, Span};

/// Most relay events taken from a subscription per batch.
const BATCH_EVENTS: usize = 256;
/// Queued bytes past which a batch is written before taking more available frames.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Smallest batch body sent with `sendfile` rather than a vectored write. Below it the copy
/// costs less than what sharing pages costs the kernel (page references, one skb fragment per
/// page run): at 232 kbit/s a 125 ms batch is 4 KB.
pub const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one chunk per frame (HTTP/1.1 clients); the end of the
    /// stream is a last chunk.
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients).
    CloseDelimited,
}

/// Counters of the HTTP-FLV players served on raw connections, shared by a node's routes.
#[derive(Debug, Default)]
pub struct FlvCounters {
    /// Players streaming now.
    pub players: AtomicU64,
    /// Bytes written to players (response heads and bodies).
    pub bytes_out: AtomicU64,
    /// Frames players skipped because they fell behind.
    pub frames_dropped: AtomicU64,
    /// Times a player fell behind and skipped ahead to a keyframe.
    pub slow_viewer_skips: AtomicU64,
    /// Body bytes sent from a stream's shared in-memory file (`sendfile`), part of `bytes_out`.
    pub bytes_shared: AtomicU64,
}

/// Counters a request's response bytes are added to, put in the request's extensions by
/// middleware (byte metrics, per-grant accounting): a handler that writes the response itself
/// adds what it writes to each.
#[derive(Debug, Clone, Default)]
pub struct ResponseByteCounters(Vec<Arc<AtomicU64>>);

impl ResponseByteCounters {
    /// Adds `counter` to the ones the response's bytes are counted in.
    pub fn push(&mut self, counter: Arc<AtomicU64>) {
        self.0.push(counter);
    }

    fn add(&self, bytes: u64) {
        for counter in &self.0 {
            counter.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// The response head of a streaming FLV response.
fn response_head(framing: Framing) -> &'static [u8] {
    match framing {
        Framing::Chunked => {
            b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\ncache-control: no-cache\r\n\
access-control-allow-origin: *\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        }
        Framing::CloseDelimited => {
            b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\ncache-control: no-cache\r\n\
access-control-allow-origin: *\r\nconnection: close\r\n\r\n"
        }
    }
}

/// The plain TCP socket under `io`, when it is one (`sendfile` needs the socket itself).
fn tcp_socket<W: Any>(io: &W) -> Option<&TcpStream> {
    (io as &dyn Any).downcast_ref::<TcpStream>()
}

/// One player's writer: the frames of its next batch and how they go out.
struct FlvStreamer {
    subscription: Subscription,
    framing: Framing,
    events: Vec<RelayEvent>,
    /// Bytes written first in a batch: the response head and FLV header, and the frames when
    /// the batch goes out by a vectored write.
    queue: WriteQueue,
    /// The batch's frames, in order.
    frames: Vec<Arc<Frame>>,
    /// Their body bytes.
    body_len: usize,
    /// The batch's frames in the stream's shared file, consecutive ones merged, when the batch
    /// goes out by `sendfile`.
    spans: Vec<Span>,
    /// A run of frames shared with the stream's other live players, whose spans of the
    /// stream's shared file go out by `sendfile` after `queue` (see [`crate::relay::run`]).
    shared_run: Option<Arc<FrameRun>>,
    /// Smallest batch sent by `sendfile`; `None` when this connection cannot be.
    zero_copy_min: Option<usize>,
    header_sent: bool,
    ended: bool,
    frames_dropped: u64,
    /// The response's write deadline: its timer exists only once a write has had to wait.
    clock: WriteClock,
}

impl FlvStreamer {
    /// The frame's body bytes for this player's framing (`None`: too long for an FLV tag).
    fn frame_bytes(&self, frame: &Frame) -> Option<Bytes> {
        match self.framing {
            Framing::Chunked => frame.flv_chunk(),
            Framing::CloseDelimited => frame.flv_tag(),
        }
    }

    /// Moves the events taken so far into the batch being built.
    fn take_events(&mut self) {
        if !self.header_sent && !self.events.is_empty() {
            let (audio, video) = super::http_flv::header_tracks(&self.events);
            self.push_header(audio, video);
        }
        for event in self.events.drain(..) {
            match event {
                RelayEvent::Frame(frame) => {
                    // A payload too long for an FLV tag is left out.
                    let len = match self.framing {
                        Framing::Chunked => frame.flv_chunk().map(|chunk| chunk.len()),
                        Framing::CloseDelimited => frame.flv_tag().map(|tag| tag.len()),
                    };
                    if let Some(len) = len {
                        self.body_len = self.body_len.saturating_add(len);
                        self.frames.push(frame);
                    }
                }
                RelayEvent::PublisherEnded => {
                    self.ended = true;
                    break;
                }
                RelayEvent::PublisherStarted => {}
            }
        }
    }

    /// Queues the FLV header (this player's own bytes: its tracks), as a chunk of its own when
    /// chunked.
    fn push_header(&mut self, has_audio: bool, has_video: bool) {
        self.header_sent = true;
        let header = FlvWriter::new().header(FlvHeader {
            has_audio,
            has_video,
        });
        let bytes = match self.framing {
            Framing::Chunked => {
                let mut chunk = BytesMut::with_capacity(header.len() + 6);
                use std::fmt::Write as _;
                // Writing hex digits into a BytesMut cannot fail.
                let _ = write!(chunk, "{:x}\r\n", header.len());
                chunk.put_slice(&header);
                chunk.put_slice(b"\r\n");
                chunk.freeze()
            }
            Framing::CloseDelimited => header.freeze(),
        };
        self.queue.push(bytes);
    }

    /// Decides how the batch's frames go out: as spans of the stream's shared file when the
    /// batch is large enough and every frame is there, otherwise queued for a vectored write.
    fn close_batch(&mut self) {
        if self.frames.is_empty() {
            return;
        }
        if self
            .zero_copy_min
            .is_some_and(|min| self.framing == Framing::Chunked && self.body_len >= min)
        {
            let store: &SharedStore = self.subscription.shared_flv();
            let spans = self.frames.iter().map(|frame| frame.flv_chunk_span(store));
            if crate::shared_bytes::collect_spans(spans, &mut self.spans) {
                self.frames.clear();
                self.body_len = 0;
                return;
            }
        }
        for index in 0..self.frames.len() {
            if let Some(bytes) = self.frame_bytes(&self.frames[index]) {
                self.queue.push(bytes);
            }
        }
        self.frames.clear();
        self.body_len = 0;
    }

    /// Takes a run of frames shared with the stream's other live players: sent from the
    /// stream's shared file as the run's spans, built by its first player, when the batch is
    /// large enough for `sendfile`; otherwise queued frame by frame for the vectored write.
    fn take_run(&mut self, run: Arc<FrameRun>) {
        if !self.header_sent || !self.frames.is_empty() {
            // Not after a start (a run never comes first) nor beside frames taken already,
            // but handled like their events in case.
            self.events
                .extend(run.frames().iter().cloned().map(RelayEvent::Frame));
            self.take_events();
            return;
        }
        if let (Some(min), Framing::Chunked) = (self.zero_copy_min, self.framing) {
            let spans = run.flv_chunk_spans(self.subscription.shared_flv());
            if spans.is_some_and(|spans| spans.len >= min as u64) {
                self.shared_run = Some(run);
                return;
            }
        }
        for frame in run.frames() {
            // A payload too long for an FLV tag is left out.
            if let Some(bytes) = self.frame_bytes(frame) {
                self.queue.push(bytes);
            }
        }
    }

    /// Takes every event already available, up to a write batch, without waiting.
    fn take_available(&mut self) {
        while !self.ended && self.body_len < WRITE_BATCH_BYTES && self.shared_run.is_none() {
            match self
                .subscription
                .try_recv_shared(&mut self.events, BATCH_EVENTS)
            {
                Received::Events(0) => break,
                Received::Events(_) => self.take_events(),
                Received::Run(run) => self.take_run(run),
            }
        }
    }

    /// Adds the frames skipped since the last count to `counters`.
    fn count_skips(&mut self, counters: &FlvCounters) {
        let dropped = self.subscription.stats().frames_dropped;
        if dropped > self.frames_dropped {
            counters
                .frames_dropped
                .fetch_add(dropped - self.frames_dropped, Ordering::Relaxed);
            counters.slow_viewer_skips.fetch_add(1, Ordering::Relaxed);
            self.frames_dropped = dropped;
        }
    }
}

/// Streams `subscription` as an FLV response on `io` until the publisher leaves, `shutdown` is
/// cancelled (both end the body: the last chunk when chunked, then the connection's write side
/// closes), the client goes away, or the client takes no byte for `write_timeout` (the
/// deadline is on progress, as [`streamr_net::WriteClock`]'s: a slow client that keeps reading
/// is not cut, however long a batch takes it). Bytes written are added to `counters`, and the
/// body's bytes to each of `byte_counters`.
///
/// When `io` is a plain [`TcpStream`] on Linux, large chunked batches go out with `sendfile`
/// from the stream's shared file (see the module docs); any other writer gets vectored writes.
pub async fn stream_flv<W: AsyncWrite + Unpin + 'static>(
    io: &mut W,
    subscription: Subscription,
    framing: Framing,
    counters: &FlvCounters,
    byte_counters: &ResponseByteCounters,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let zero_copy_min = Some(ZERO_COPY_MIN_BYTES);
    stream_flv_with(
        io,
        subscription,
        framing,
        counters,
        byte_counters,
        write_timeout,
        shutdown,
        zero_copy_min,
    )
    .await
}

/// [`stream_flv`] with the smallest batch sent by `sendfile` (`None`: never).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_flv_with<W: AsyncWrite + Unpin + 'static>(
    io: &mut W,
    subscription: Subscription,
    framing: Framing,
    counters: &FlvCounters,
    byte_counters: &ResponseByteCounters,
    write_timeout: Duration,
    shutdown: &CancellationToken,
    zero_copy_min: Option<usize>,
) -> io::Result<()> {
    counters.players.fetch_add(1, Ordering::Relaxed);
    let zero_copy = SharedStore::is_supported() && tcp_socket(&*io).is_some();
    let mut streamer = FlvStreamer {
        subscription,
        framing,
        events: Vec::with_capacity(KEEP_BETWEEN_BATCHES),
        queue: WriteQueue::default(),
        frames: Vec::new(),
        body_len: 0,
        spans: Vec::new(),
        shared_run: None,
        zero_copy_min: zero_copy_min.filter(|_| zero_copy),
        header_sent: false,
        ended: false,
        frames_dropped: 0,
        clock: WriteClock::new(write_timeout),
    };
    streamer
        .queue
        .push(Bytes::from_static(response_head(framing)));
    let result = run(io, &mut streamer, counters, byte_counters, shutdown).await;
    counters.players.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn run<W: AsyncWrite + Unpin + 'static>(
    io: &mut W,
    streamer: &mut FlvStreamer,
    counters: &FlvCounters,
    byte_counters: &ResponseByteCounters,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    // The head is not part of the body that per-request counters measure.
    let mut head = response_head(streamer.framing).len() as u64;
    // A token of its own, waited on by one future for the whole response: a wake-up then
    // neither locks the token every player shares nor registers a waiter anew.
    let shutdown = shutdown.child_token();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let received = tokio::select! {
            // The node is stopping: end the body after what was already queued.
            () = &mut cancelled => None,
            received = streamer.subscription.recv_shared(&mut streamer.events, BATCH_EVENTS) => {
                Some(received)
            }
        };
        match received {
            Some(Received::Events(0)) | None => {
                streamer.ended = true;
                streamer.take_events();
            }
            Some(Received::Events(received)) => {
                streamer.take_events();
                // A batch short of the limit took everything there was.
                if received >= BATCH_EVENTS {
                    streamer.take_available();
                }
            }
            // A run reaches the head.
            Some(Received::Run(run)) => streamer.take_run(run),
        }
        if streamer.ended && !streamer.header_sent {
            streamer.push_header(true, true);
        }
        streamer.close_batch();
        streamer.count_skips(counters);
        let mut written = write_queue(&mut streamer.queue, io, &mut streamer.clock).await?;
        let run = streamer.shared_run.take();
        let run_spans = run
            .as_ref()
            .and_then(|run| run.flv_chunk_spans(streamer.subscription.shared_flv()));
        for spans in [
            &streamer.spans[..],
            run_spans.map_or(&[][..], |run| &run.spans[..]),
        ] {
            if spans.is_empty() {
                continue;
            }
            let socket = tcp_socket(&*io).ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "sendfile needs a TCP socket")
            })?;
            let shared = send_spans(socket, spans, &mut streamer.clock).await?;
            counters.bytes_shared.fetch_add(shared, Ordering::Relaxed);
            written = written.saturating_add(shared);
        }
        streamer.spans.clear();
        drop(run);
        if streamer.ended && streamer.framing == Framing::Chunked {
            streamer.queue.push(Bytes::from_static(b"0\r\n\r\n"));
            let last = write_queue(&mut streamer.queue, io, &mut streamer.clock).await?;
            written = written.saturating_add(last);
        }
        counters.bytes_out.fetch_add(written, Ordering::Relaxed);
        byte_counters.add(written.saturating_sub(head));
        head = 0;
        // The first batch (the GOP cache) grew these far past what later batches need.
        streamer.queue.release_burst_room();
        release_burst_room(&mut streamer.frames);
        release_burst_room(&mut streamer.events);
        release_burst_room(&mut streamer.spans);
        if streamer.ended {
            return io.shutdown().await;
        }
    }
}

/// Writes everything queued, failing once the player has taken nothing for `clock`'s timeout.
/// A player keeping up takes it at once, without touching the clock.
async fn write_queue<W: AsyncWrite + Unpin>(
    queue: &mut WriteQueue,
    io: &mut W,
    clock: &mut WriteClock,
) -> io::Result<u64> {
    let (now, done) = queue.write_now(io)?;
    if done {
        return Ok(now as u64);
    }
    let written = queue.write_all(io, clock).await.map_err(|error| {
        if error.kind() == io::ErrorKind::TimedOut {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "player accepted no data for {:?}; {} bytes were waiting",
                    clock.timeout(),
                    queue.queued_bytes()
                ),
            )
        } else {
            error
        }
    })?;
    Ok(now.saturating_add(written) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{FrameKind, RelayConfig, RelayHub, StreamKey};
    use tokio::io::{AsyncRead, AsyncReadExt};

    fn video(keyframe: bool, size: usize) -> Bytes {
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.resize(size, 0);
        Bytes::from(body)
    }

    /// Decoder configuration as a publisher sends it ahead of its first keyframe: an AVC
    /// sequence header and an AAC one.
    fn sequence_headers() -> [(FrameKind, Bytes); 2] {
        [
            (
                FrameKind::Video,
                Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe0]),
            ),
            (FrameKind::Audio, Bytes::from_static(&[0xAF, 0, 0x12, 0x10])),
        ]
    }

    /// The FLV header's track flags in a chunked response: 1 video, 4 audio.
    fn header_flags(response: &[u8]) -> u8 {
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let (flv, _) = dechunk(&response[split + 4..]);
        assert!(flv.starts_with(b"FLV\x01"), "an FLV header");
        flv[4]
    }

    /// Splits a chunked body into its chunks' payloads; the last chunk ends it.
    fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(line) = body.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap(), 16).unwrap();
            if size == 0 {
                return (out, true);
            }
            out.extend_from_slice(&body[line + 2..line + 2 + size]);
            body = &body[line + 2 + size + 2..];
        }
        (out, false)
    }

    /// Reads the response from `client` until its FLV header (sent with the first batch) has
    /// arrived; returns what was read.
    async fn read_through_flv_header(client: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !received.windows(3).any(|w| w == b"FLV") {
            let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
                .await
                .expect("the first batch arrives")
                .unwrap();
            assert!(n > 0, "the response ended before its first batch");
            received.extend_from_slice(&buf[..n]);
        }
        received
    }

    /// One player of the byte-compare test: how it joins, reads and leaves.
    #[derive(Clone, Copy, Debug)]
    struct Player {
        /// Frames published before it joins.
        joins_after: u32,
        /// Reads at most 2 KiB at a time with a pause, through a 4 KiB receive buffer.
        slow: bool,
        /// Closes the connection after this many bytes.
        leaves_after: Option<usize>,
    }

    /// A frame of the test stream, after its [`sequence_headers`]: a keyframe every 30, big
    /// and small frames, audio between, and now and then a cue point (a timed data message).
    fn test_frame(i: u32) -> (FrameKind, Bytes) {
        if i % 3 == 1 {
            return (FrameKind::Audio, Bytes::from(vec![0xAF, 1, i as u8, 7]));
        }
        if is_cue_point(i) {
            let cue = crate::amf0::encode_all(&[
                crate::amf0::Amf0Value::String("onCuePoint".into()),
                crate::amf0::Amf0Value::Number(f64::from(i)),
            ])
            .unwrap();
            return (FrameKind::Data, cue.freeze());
        }
        let keyframe = i % 30 == 0;
        let size = if keyframe {
            40_000 + (i as usize * 7) % 5_000
        } else {
            500 + (i as usize * 131) % 9_000
        };
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend((0..size).map(|n| (n as u32 ^ i) as u8));
        (FrameKind::Video, Bytes::from(body))
    }

    fn is_cue_point(i: u32) -> bool {
        i % 10 == 5 && i % 3 != 1
    }

    /// Serves one subscription on a fresh loopback TCP connection (`sendfile` allowed from
    /// `zero_copy_min`, or vectored writes only) and returns the client's bytes and the writer's
    /// result.
    async fn tcp_player(
        subscription: Subscription,
        player: Player,
        zero_copy_min: Option<usize>,
        counters: Arc<FlvCounters>,
    ) -> (Vec<u8>, io::Result<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if player.slow {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        let writer = tokio::spawn(async move {
            stream_flv_with(
                &mut server,
                subscription,
                Framing::Chunked,
                &counters,
                &ResponseByteCounters::default(),
                Duration::from_secs(30),
                &CancellationToken::new(),
                zero_copy_min,
            )
            .await
        });
        let received = read_player(&mut client, player).await;
        drop(client);
        (received, writer.await.unwrap())
    }

    async fn read_player<R: tokio::io::AsyncRead + Unpin>(
        client: &mut R,
        player: Player,
    ) -> Vec<u8> {
        let mut received = Vec::new();
        let mut buf = vec![0u8; if player.slow { 2048 } else { 64 * 1024 }];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                return received;
            }
            received.extend_from_slice(&buf[..n]);
            if player
                .leaves_after
                .is_some_and(|after| received.len() >= after)
            {
                return received;
            }
            if player.slow {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Where two byte strings first differ, and their lengths (for a failure message).
    fn first_difference(a: &[u8], b: &[u8]) -> String {
        let at = a.iter().zip(b).position(|(x, y)| x != y);
        let around = |bytes: &[u8], at: usize| {
            let start = at.saturating_sub(16);
            format!("{:02x?}", &bytes[start..bytes.len().min(at + 16)])
        };
        match at {
            Some(at) => format!(
                "lengths {} and {}, first difference at byte {at}: {} vs {}",
                a.len(),
                b.len(),
                around(a, at),
                around(b, at)
            ),
            None => format!(
                "lengths {} and {}, one a prefix of the other",
                a.len(),
                b.len()
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_player_gets_the_vectored_writes_bytes_from_the_shared_file() {
        // No player lags far enough to skip: what each gets depends only on when it joined.
        let hub = RelayHub::new(
            RelayConfig::default().with_viewer_max_lag(1 << 30, Duration::from_secs(3600)),
        );
        let key = StreamKey::parse("live", "shared").unwrap();
        let publisher = hub.publish(key.clone()).unwrap();
        let players = [
            Player {
                joins_after: 0,
                slow: false,
                leaves_after: None,
            },
            Player {
                joins_after: 0,
                slow: true,
                leaves_after: None,
            },
            Player {
                joins_after: 10,
                slow: false,
                leaves_after: Some(150_000),
            },
            Player {
                joins_after: 47,
                slow: false,
                leaves_after: None,
            },
            Player {
                joins_after: 47,
                slow: true,
                leaves_after: None,
            },
            Player {
                joins_after: 95,
                slow: false,
                leaves_after: Some(5_000),
            },
            Player {
                joins_after: 130,
                slow: false,
                leaves_after: None,
            },
        ];
        let shared = Arc::new(FlvCounters::default());
        let plain = Arc::new(FlvCounters::default());
        let mut runs = Vec::new();
        let frames = 180u32;
        for i in 0..frames {
            for player in players.iter().filter(|p| p.joins_after == i) {
                // Three twins from the same point of the stream: sendfile for every batch,
                // vectored writes on TCP, and the fallback writer on a pipe.
                let (a, b, c) = (
                    hub.subscribe(key.clone()).unwrap(),
                    hub.subscribe(key.clone()).unwrap(),
                    hub.subscribe(key.clone()).unwrap(),
                );
                let (player, shared, plain) = (*player, shared.clone(), plain.clone());
                runs.push(tokio::spawn(async move {
                    let zero_copy = tcp_player(a, player, Some(0), shared);
                    let vectored = tcp_player(b, player, None, plain.clone());
                    let piped = async move {
                        // Room for the whole stream, as loopback TCP's buffers have: a slow
                        // reader on a small pipe would fall behind its TCP twins under load
                        // and skip to a keyframe where they do not.
                        let (mut client, mut server) = tokio::io::duplex(4 << 20);
                        let writer = async move {
                            stream_flv_with(
                                &mut server,
                                c,
                                Framing::Chunked,
                                &plain,
                                &ResponseByteCounters::default(),
                                Duration::from_secs(30),
                                &CancellationToken::new(),
                                Some(0),
                            )
                            .await
                        };
                        let (written, received) = tokio::join!(writer, async move {
                            let received = read_player(&mut client, player).await;
                            drop(client);
                            received
                        });
                        (received, written)
                    };
                    let (zero_copy, vectored, piped) = tokio::join!(zero_copy, vectored, piped);
                    (player, zero_copy, vectored, piped)
                }));
            }
            if i == 0 {
                // The stream starts as a publisher's does, with both tracks' configuration
                // ahead of the first keyframe. A player's FLV header announces the tracks of
                // the first frames it takes, and a player that joined before the stream
                // started takes the first keyframe in its start bundle, alone or with what
                // followed by the time its writer ran: without an audio configuration there,
                // one twin woken for the keyframe alone would announce video only and another
                // woken later audio too.
                for (kind, payload) in sequence_headers() {
                    publisher.send(kind, 0, payload);
                }
            }
            let (kind, payload) = test_frame(i);
            publisher.send(kind, i * 33, payload);
            if i % 4 == 0 {
                // Let players take batches of different sizes.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        drop(publisher);
        for run in runs {
            let (
                player,
                (zero_copy, zero_copy_result),
                (vectored, vectored_result),
                (piped, piped_result),
            ) = tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .expect("every player finishes")
                .unwrap();
            match player.leaves_after {
                None => {
                    zero_copy_result.unwrap();
                    vectored_result.unwrap();
                    piped_result.unwrap();
                    assert_eq!(zero_copy.len(), vectored.len(), "{player:?}");
                    assert!(
                        zero_copy == vectored,
                        "{player:?}: sendfile and writev differ: {}",
                        first_difference(&zero_copy, &vectored)
                    );
                    assert!(
                        piped == vectored,
                        "{player:?}: the fallback writer differs: {}",
                        first_difference(&piped, &vectored)
                    );
                    let split = zero_copy.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    let (flv, ended) = dechunk(&zero_copy[split + 4..]);
                    assert!(ended, "{player:?}: the last chunk ends the response");
                    assert!(flv.starts_with(b"FLV\x01\x05"), "{player:?}: both tracks");
                    // The cue points are script tags at their own timestamps, in order with
                    // the media: every one since the player's keyframe.
                    let (_, tags) = crate::flv::FlvReader::read_all(&flv).unwrap();
                    let cues: Vec<u32> = tags
                        .iter()
                        .filter(|tag| tag.tag_type == crate::flv::FlvTagType::ScriptData)
                        .map(|tag| tag.timestamp)
                        .collect();
                    // It starts at the cached GOP: the newest keyframe published before it.
                    let start = player.joins_after.saturating_sub(1) / 30 * 30;
                    let published: Vec<u32> = (start..frames)
                        .filter(|i| is_cue_point(*i))
                        .map(|i| i * 33)
                        .collect();
                    assert_eq!(cues, published, "{player:?}");
                }
                Some(after) => {
                    // It left mid-stream: what it got is the start of what its twins got.
                    assert!(zero_copy.len() >= after.min(vectored.len()));
                    let common = zero_copy.len().min(vectored.len()).min(piped.len());
                    assert!(zero_copy[..common] == vectored[..common], "{player:?}");
                    assert!(piped[..common] == vectored[..common], "{player:?}");
                }
            }
        }
        assert!(
            shared.bytes_shared.load(Ordering::Relaxed) > 1_000_000,
            "batches went out by sendfile"
        );
        assert_eq!(plain.bytes_shared.load(Ordering::Relaxed), 0);
        assert_eq!(shared.frames_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(plain.frames_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(shared.players.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_header_announces_the_tracks_of_the_first_frames_a_player_takes() {
        // A player that joined before the stream started takes the first keyframe in its start
        // bundle. Woken for that keyframe alone, it announces the audio track when the bundle
        // holds an audio configuration or metadata declaring audio (an H.264 and MP3 stream has
        // no audio configuration): audio coming after the keyframe is not waited for.
        for (audio_configured, audio_declared, flags) in [
            (false, false, 0x01),
            (true, false, 0x05),
            (false, true, 0x05),
        ] {
            let hub = RelayHub::default();
            let key = StreamKey::parse("live", "start").unwrap();
            let publisher = hub.publish(key.clone()).unwrap();
            let subscription = hub.subscribe(key).unwrap();
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            let writer = tokio::spawn(async move {
                stream_flv(
                    &mut server,
                    subscription,
                    Framing::Chunked,
                    &FlvCounters::default(),
                    &ResponseByteCounters::default(),
                    Duration::from_secs(60),
                    &CancellationToken::new(),
                )
                .await
            });
            let [video_config, audio_config] = sequence_headers();
            if audio_declared {
                let metadata = crate::amf0::encode_all(&[
                    crate::amf0::Amf0Value::String("onMetaData".into()),
                    crate::amf0::Amf0Value::EcmaArray(vec![
                        ("videocodecid".into(), crate::amf0::Amf0Value::Number(7.0)),
                        ("audiocodecid".into(), crate::amf0::Amf0Value::Number(2.0)),
                    ]),
                ])
                .unwrap();
                publisher.send(FrameKind::Metadata, 0, metadata.freeze());
            }
            publisher.send(video_config.0, 0, video_config.1);
            if audio_configured {
                publisher.send(audio_config.0, 0, audio_config.1);
            }
            publisher.send(FrameKind::Video, 0, video(true, 500));
            // The writer took its first batch, the keyframe, before the audio is published.
            let mut received = read_through_flv_header(&mut client).await;
            publisher.send(
                FrameKind::Audio,
                20,
                Bytes::from_static(&[0xAF, 1, 0x21, 0]),
            );
            drop(publisher);
            client.read_to_end(&mut received).await.unwrap();
            writer.await.unwrap().unwrap();
            assert_eq!(
                header_flags(&received),
                flags,
                "audio configured ahead of the keyframe: {audio_configured}, declared: \
                 {audio_declared}"
            );
        }
    }

    #[tokio::test]
    async fn a_slow_player_skips_to_a_keyframe_and_its_drops_are_counted() {
        let hub = RelayHub::new(
            RelayConfig::default().with_viewer_max_lag(20_000, Duration::from_secs(3600)),
        );
        let key = StreamKey::parse("live", "slow").unwrap();
        let publisher = hub.publish(key.clone()).unwrap();
        let subscription = hub.subscribe(key).unwrap();
        // A pipe far smaller than the response head: the writer blocks on its first write.
        let (mut client, mut server) = tokio::io::duplex(16);
        let counters = Arc::new(FlvCounters::default());
        let grant = Arc::new(AtomicU64::new(0));
        let mut byte_counters = ResponseByteCounters::default();
        byte_counters.push(grant.clone());
        let writer = {
            let counters = counters.clone();
            tokio::spawn(async move {
                stream_flv(
                    &mut server,
                    subscription,
                    Framing::Chunked,
                    &counters,
                    &byte_counters,
                    Duration::from_secs(60),
                    &CancellationToken::new(),
                )
                .await
            })
        };
        publisher.send(FrameKind::Video, 0, video(true, 1_000));
        tokio::task::yield_now().await;
        // While the player reads nothing, the stream runs 40 KB ahead and starts a new GOP.
        for i in 1..40u32 {
            publisher.send(FrameKind::Video, i * 40, video(i % 20 == 0, 1_000));
        }
        drop(publisher);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap().unwrap();

        let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let (flv, ended) = dechunk(&received[split + 4..]);
        assert!(ended, "the last chunk ends the response");
        assert!(flv.starts_with(b"FLV\x01\x01"), "video only");
        let dropped = counters.frames_dropped.load(Ordering::Relaxed);
        assert!(dropped > 0, "the skipped frames are counted");
        assert_eq!(counters.slow_viewer_skips.load(Ordering::Relaxed), 1);
        assert_eq!(counters.players.load(Ordering::Relaxed), 0);
        // Body bytes reach the per-request counters; the head does not.
        assert_eq!(
            grant.load(Ordering::Relaxed),
            (received.len() - split - 4) as u64
        );
        assert_eq!(
            counters.bytes_out.load(Ordering::Relaxed),
            received.len() as u64
        );
    }

    #[tokio::test]
    async fn a_shutdown_ends_the_response_with_its_last_chunk() {
        let hub = RelayHub::default();
        let key = StreamKey::parse("live", "stop").unwrap();
        let publisher = hub.publish(key.clone()).unwrap();
        publisher.send(FrameKind::Video, 0, video(true, 500));
        let subscription = hub.subscribe(key).unwrap();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(FlvCounters::default());
        let shutdown = CancellationToken::new();
        let writer = {
            let (counters, shutdown) = (counters.clone(), shutdown.clone());
            tokio::spawn(async move {
                stream_flv(
                    &mut server,
                    subscription,
                    Framing::Chunked,
                    &counters,
                    &ResponseByteCounters::default(),
                    Duration::from_secs(60),
                    &shutdown,
                )
                .await
            })
        };
        // The player has the cached keyframe before the node stops.
        let mut received = read_through_flv_header(&mut client).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut received))
            .await
            .expect("the response ends after the shutdown")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer returns")
            .unwrap()
            .unwrap();
        // The publisher is still live: only the shutdown ended the body, cleanly.
        assert!(hub.is_publishing(&StreamKey::parse("live", "stop").unwrap()));
        let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let (flv, ended) = dechunk(&received[split + 4..]);
        assert!(ended, "the last chunk ends the response");
        assert!(
            flv.starts_with(b"FLV\x01"),
            "the FLV header and the keyframe were sent"
        );
        assert!(
            flv.len() > 500,
            "the keyframe was sent: {} bytes",
            flv.len()
        );
        assert_eq!(counters.players.load(Ordering::Relaxed), 0);
        drop(publisher);
    }
}
