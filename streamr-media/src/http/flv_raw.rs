//! HTTP-FLV written straight onto the connection, like an RTMP player's frames.
//!
//! Once the router has parsed and authorised a `GET …/{stream}.flv`, it takes the connection
//! over from the HTTP loop ([`streamr_net::TakeConnection`]) and this writer sends the response
//! head once, then for each wake-up of the player every frame available in one vectored write:
//! the frames' FLV tags are built once per frame ([`Frame::flv_tag`](crate::relay::Frame::flv_tag))
//! and shared by every player, so nothing is copied per player. The body is chunked (one chunk
//! per batch) for HTTP/1.1 clients and close-delimited for HTTP/1.0 ones. A player that falls
//! behind skips to a keyframe (the relay's policy, as for RTMP), and its skips are counted in
//! [`FlvCounters`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::flv::{FlvHeader, FlvWriter};
use crate::relay::{RelayEvent, Subscription};
use crate::server::{release_burst_room, WriteQueue, KEEP_BETWEEN_BATCHES};

/// Most relay events taken from a subscription per batch.
const BATCH_EVENTS: usize = 256;
/// Queued bytes past which a batch is written before taking more available frames.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one chunk per batch (HTTP/1.1 clients); the end of the
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

/// Longest chunk-size line: 16 hex digits of a `usize` and CRLF.
const CHUNK_LINE_MAX: usize = 18;
/// Bytes reserved at a time for chunk-size lines (a few dozen lines per allocation).
const CHUNK_LINES_BLOCK: usize = 1024;

/// One player's writer: the queue of shared buffers for its next vectored write.
struct FlvStreamer {
    subscription: Subscription,
    framing: Framing,
    events: Vec<RelayEvent>,
    queue: WriteQueue,
    /// Body bytes queued since the last chunk header (chunked framing).
    chunk: Vec<Bytes>,
    chunk_len: usize,
    /// Where chunk-size lines are written: each is split off as its own shared buffer, so a
    /// block of them costs one allocation instead of one per chunk.
    chunk_lines: BytesMut,
    header_sent: bool,
    ended: bool,
    frames_dropped: u64,
}

impl FlvStreamer {
    /// Moves the events taken so far into the chunk being built.
    fn take_events(&mut self) {
        if !self.header_sent && !self.events.is_empty() {
            let (audio, video) = super::http_flv::header_tracks(&self.events);
            self.push_header(audio, video);
        }
        for event in self.events.drain(..) {
            match event {
                RelayEvent::Frame(frame) => {
                    // A payload too long for an FLV tag is left out.
                    if let Some(tag) = frame.flv_tag() {
                        self.chunk_len = self.chunk_len.saturating_add(tag.len());
                        self.chunk.push(tag);
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

    fn push_header(&mut self, has_audio: bool, has_video: bool) {
        self.header_sent = true;
        let header = FlvWriter::new()
            .header(FlvHeader {
                has_audio,
                has_video,
            })
            .freeze();
        self.chunk_len = self.chunk_len.saturating_add(header.len());
        self.chunk.insert(0, header);
    }

    /// Queues the chunk built so far, framed.
    fn close_chunk(&mut self) {
        if self.chunk_len == 0 {
            return;
        }
        if self.framing == Framing::Chunked {
            if self.chunk_lines.capacity() < CHUNK_LINE_MAX {
                self.chunk_lines.reserve(CHUNK_LINES_BLOCK);
            }
            // Writing hex digits into a BytesMut cannot fail.
            let _ = write!(self.chunk_lines, "{:x}\r\n", self.chunk_len);
            self.queue.push(self.chunk_lines.split().freeze());
        }
        for buffer in self.chunk.drain(..) {
            self.queue.push(buffer);
        }
        if self.framing == Framing::Chunked {
            self.queue.push(Bytes::from_static(b"\r\n"));
        }
        self.chunk_len = 0;
    }

    /// Takes every event already available, up to a write batch, without waiting.
    fn take_available(&mut self) {
        while !self.ended && self.chunk_len < WRITE_BATCH_BYTES {
            if self
                .subscription
                .try_recv_batch(&mut self.events, BATCH_EVENTS)
                == 0
            {
                break;
            }
            self.take_events();
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
/// closes), the client goes away, or a write makes no progress for `write_timeout`. Bytes
/// written are added to `counters`, and the body's bytes to each of `byte_counters`.
pub async fn stream_flv<W: AsyncWrite + Unpin>(
    io: &mut W,
    subscription: Subscription,
    framing: Framing,
    counters: &FlvCounters,
    byte_counters: &ResponseByteCounters,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    counters.players.fetch_add(1, Ordering::Relaxed);
    let mut streamer = FlvStreamer {
        subscription,
        framing,
        events: Vec::with_capacity(KEEP_BETWEEN_BATCHES),
        queue: WriteQueue::default(),
        chunk: Vec::new(),
        chunk_len: 0,
        chunk_lines: BytesMut::new(),
        header_sent: false,
        ended: false,
        frames_dropped: 0,
    };
    streamer
        .queue
        .push(Bytes::from_static(response_head(framing)));
    let result = run(
        io,
        &mut streamer,
        counters,
        byte_counters,
        write_timeout,
        shutdown,
    )
    .await;
    counters.players.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn run<W: AsyncWrite + Unpin>(
    io: &mut W,
    streamer: &mut FlvStreamer,
    counters: &FlvCounters,
    byte_counters: &ResponseByteCounters,
    write_timeout: Duration,
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
            received = streamer.subscription.recv_batch(&mut streamer.events, BATCH_EVENTS) => {
                Some(received)
            }
        };
        match received {
            Some(0) | None => streamer.ended = true,
            Some(_) => {}
        }
        streamer.take_events();
        // A batch short of the limit took everything there was.
        if received.is_some_and(|received| received >= BATCH_EVENTS) {
            streamer.take_available();
        }
        if streamer.ended && !streamer.header_sent {
            streamer.push_header(true, true);
        }
        streamer.close_chunk();
        if streamer.ended && streamer.framing == Framing::Chunked {
            streamer.queue.push(Bytes::from_static(b"0\r\n\r\n"));
        }
        streamer.count_skips(counters);
        let written = write_queue(&mut streamer.queue, io, write_timeout).await?;
        counters.bytes_out.fetch_add(written, Ordering::Relaxed);
        byte_counters.add(written.saturating_sub(head));
        head = 0;
        // The first batch (the GOP cache) grew these far past what later batches need.
        streamer.queue.release_burst_room();
        release_burst_room(&mut streamer.chunk);
        release_burst_room(&mut streamer.events);
        if streamer.ended {
            return io.shutdown().await;
        }
    }
}

/// Writes everything queued, failing when no progress is made for `write_timeout`. A player
/// keeping up takes it at once, without a deadline timer.
async fn write_queue<W: AsyncWrite + Unpin>(
    queue: &mut WriteQueue,
    io: &mut W,
    write_timeout: Duration,
) -> io::Result<u64> {
    let (now, done) = queue.write_now(io)?;
    if done {
        return Ok(now as u64);
    }
    let waiting = queue.queued_bytes();
    let written = tokio::time::timeout(write_timeout, queue.write_all(io))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "player accepted no data for {write_timeout:?}; {waiting} bytes were waiting"
                ),
            )
        })??;
    Ok(now.saturating_add(written) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{FrameKind, RelayConfig, RelayHub, StreamKey};
    use tokio::io::AsyncReadExt;

    fn video(keyframe: bool, size: usize) -> Bytes {
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.resize(size, 0);
        Bytes::from(body)
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
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !received.windows(3).any(|w| w == b"FLV") {
            let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
                .await
                .expect("the keyframe arrives")
                .unwrap();
            assert!(n > 0, "the response ended before the shutdown");
            received.extend_from_slice(&buf[..n]);
        }
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
