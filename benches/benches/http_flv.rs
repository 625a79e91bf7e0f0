//! HTTP-FLV fan-out over loopback: the raw-connection writer (what `streamr_net::http::serve`
//! enables: the handler takes the connection and writes one vectored write per batch) beside the
//! framework path (the same router under `axum::serve`, where the handler cannot take the
//! connection and every FLV tag is a body frame through hyper), in the same run.
//!
//! 200 players connect over TCP on loopback and read in tokio tasks of the same process. Each
//! iteration publishes one batch (a 12 KB video frame and two 300-byte audio frames, woken once)
//! and waits until every player has read all of it. Requests are HTTP/1.0 for the framework and
//! `raw_writer` rows, so both send a close-delimited body of exactly the FLV tags. The
//! `raw_chunked_*` rows ask with HTTP/1.1 (a chunk per frame) and send every batch with
//! `sendfile` from the stream's shared in-memory file or with vectored writes
//! (`HttpState::with_flv_sendfile_min`), in the same run.
//! The framework path is measured without the node's byte-counting body wrappers, which it also
//! paid in the node (they copy every body byte), so the ratio understates the node's saving.
//!
//! The `floor` row is the least any server can do for the same players: no relay, no HTTP, the
//! batch's bytes serialised once and written to each player's socket with one blocking `write`
//! from a single loop. Its gap to `raw_writer` is what the relay's own work costs per batch; the
//! floor itself is the kernel's price of a socket write on loopback (the receiver's TCP
//! processing included), which no batching policy can go below per write.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamr_media::http::{router, HttpState, LiveHls, LiveHlsConfig};
use streamr_media::relay::{FrameKind, Publisher, RelayConfig, RelayHub, StreamKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const PLAYERS: usize = 200;
const VIDEO_SIZE: usize = 12_000;
const AUDIO_SIZE: usize = 300;
/// FLV tag header + PreviousTagSize around each payload.
const TAG_OVERHEAD: u64 = 15;

struct Received {
    total: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

struct Setup {
    mode: Mode,
    /// The `floor` row's sockets (none for the server rows).
    floor: Option<FloorSockets>,
    runtime: tokio::runtime::Runtime,
    publisher: Publisher,
    received: Arc<Received>,
    timestamp: u32,
    _stop: CancellationToken,
}

fn video(keyframe: bool) -> Bytes {
    let mut body = vec![0u8; VIDEO_SIZE];
    body[0] = if keyframe { 0x17 } else { 0x27 };
    body[1] = 1;
    Bytes::from(body)
}

fn audio() -> Bytes {
    let mut body = vec![0u8; AUDIO_SIZE];
    body[0] = 0xAF;
    body[1] = 1;
    Bytes::from(body)
}

/// How the players ask and how the node answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `axum::serve`: every tag a body frame through hyper (HTTP/1.0).
    Framework,
    /// The raw writer, close-delimited (HTTP/1.0).
    Raw,
    /// The raw writer, chunked (HTTP/1.1), with `sendfile` for every batch or never.
    RawChunked { sendfile: bool },
    /// No server: the batch written to each socket from one loop (the kernel's floor).
    Floor,
}

/// An FLV tag (header, payload, PreviousTagSize) of `payload` bytes of `kind` (8 audio, 9 video).
fn flv_tag(kind: u8, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let size = payload.len() as u32;
    let mut tag = vec![kind];
    tag.extend_from_slice(&size.to_be_bytes()[1..]);
    tag.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    tag.push((timestamp >> 24) as u8);
    tag.extend_from_slice(&[0, 0, 0]);
    tag.extend_from_slice(payload);
    tag.extend_from_slice(&(size + 11).to_be_bytes());
    tag
}

/// The players' sockets of the `floor` row and the batch bytes written to each.
struct FloorSockets {
    sockets: Vec<std::net::TcpStream>,
}

impl FloorSockets {
    /// Accepts `PLAYERS` connections on `listener` and writes each the FLV header and a
    /// keyframe tag (what the players read before timing starts).
    fn accept(listener: std::net::TcpListener) -> FloorSockets {
        let mut start = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        start.extend(flv_tag(9, 0, &video(true)));
        let sockets = (0..PLAYERS)
            .map(|_| {
                let (mut socket, _) = listener.accept().expect("accept");
                socket.set_nodelay(true).expect("nodelay");
                std::io::Write::write_all(&mut socket, &start).expect("start");
                socket
            })
            .collect();
        FloorSockets { sockets }
    }

    /// Writes one batch (two audio tags and a video frame) to every player.
    fn write_batch(&mut self, timestamp: u32) {
        let mut batch = flv_tag(8, timestamp, &audio());
        batch.extend(flv_tag(8, timestamp, &audio()));
        batch.extend(flv_tag(9, timestamp, &video(false)));
        for socket in &mut self.sockets {
            std::io::Write::write_all(socket, &batch).expect("write");
        }
    }
}

/// Bytes on the wire for one tag of `payload` bytes: a chunk of its own when chunked.
fn tag_bytes(payload: usize, chunked: bool) -> u64 {
    let tag = payload as u64 + TAG_OVERHEAD;
    if chunked {
        // The size line in hex, CRLF, the tag, CRLF.
        tag + format!("{tag:x}").len() as u64 + 4
    } else {
        tag
    }
}

fn batch_bytes(mode: Mode) -> u64 {
    let chunked = matches!(mode, Mode::RawChunked { .. });
    tag_bytes(VIDEO_SIZE, chunked) + 2 * tag_bytes(AUDIO_SIZE, chunked)
}

impl Setup {
    fn new(mode: Mode) -> Setup {
        let raw = mode != Mode::Framework;
        let mut floor_listener = None;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let hub = RelayHub::new(RelayConfig::default());
        let key = StreamKey::parse("live", "bench").expect("key");
        let publisher = hub.publish(key).expect("publish");
        publisher.send(FrameKind::Video, 0, video(true));
        let received = Arc::new(Received {
            total: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        });
        let addr: SocketAddr = runtime.block_on(async {
            let hls = LiveHls::start(hub.clone(), LiveHlsConfig::default(), stop.clone());
            let sendfile = match mode {
                Mode::RawChunked { sendfile: true } => Some(0),
                _ => None,
            };
            let app = router(HttpState::new(hub.clone(), hls).with_flv_sendfile_min(sendfile));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let cancelled = stop.clone();
            if mode == Mode::Floor {
                // Accepted on the bench thread below; the async listener is only for the address.
                let std_listener = listener.into_std().expect("std listener");
                std_listener.set_nonblocking(false).expect("blocking");
                floor_listener = Some(std_listener);
            } else if raw {
                let mut limits = streamr_net::HttpLimits::default();
                limits.max_connections = 10_000;
                limits.max_connections_per_client = 10_000;
                tokio::spawn(streamr_net::http::serve(
                    listener,
                    app,
                    limits.budget(),
                    limits,
                    async move { cancelled.cancelled().await },
                ));
            } else {
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { cancelled.cancelled().await })
                        .await
                });
            }
            addr
        });
        // Players: connect, ask, read everything; the response head and the start (FLV header
        // and the keyframe) are read before timing starts.
        let head_and_start = Arc::new(AtomicU64::new(0));
        for _ in 0..PLAYERS {
            let received = received.clone();
            let started = head_and_start.clone();
            runtime.spawn(async move {
                let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let request: &[u8] = match mode {
                    Mode::RawChunked { .. } => b"GET /live/bench.flv HTTP/1.1\r\nHost: b\r\n\r\n",
                    _ => b"GET /live/bench.flv HTTP/1.0\r\n\r\n",
                };
                socket.write_all(request).await.expect("request");
                let mut buf = vec![0u8; 64 * 1024];
                let mut first = true;
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n as u64,
                    };
                    if first {
                        first = false;
                        started.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let total = received.total.fetch_add(n, Ordering::Relaxed) + n;
                    if total >= received.target.load(Ordering::Relaxed) {
                        received.reached.notify_one();
                    }
                }
            });
        }
        // The floor row accepts here, once the players are connecting.
        let floor = floor_listener.map(FloorSockets::accept);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (head_and_start.load(Ordering::Relaxed) as usize) < PLAYERS {
            assert!(Instant::now() < deadline, "players did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the start bytes that arrived in later reads drain, then count from zero.
        std::thread::sleep(Duration::from_millis(300));
        received.total.store(0, Ordering::Relaxed);
        Setup {
            mode,
            floor,
            runtime,
            publisher,
            received,
            timestamp: 0,
            _stop: stop,
        }
    }

    /// Appends one batch (two audio frames and a video frame) and wakes the viewers once.
    fn publish_batch(&mut self) {
        self.publisher
            .append(FrameKind::Audio, self.timestamp, audio());
        self.publisher
            .append(FrameKind::Audio, self.timestamp, audio());
        self.publisher
            .send(FrameKind::Video, self.timestamp, video(false));
    }

    /// Publishes `batches` batches, each woken once, waiting for every player to read each.
    fn run(&mut self, batches: u64) -> Duration {
        let started = Instant::now();
        for _ in 0..batches {
            let target = self.received.total.load(Ordering::Relaxed)
                + batch_bytes(self.mode) * PLAYERS as u64;
            self.received.target.store(target, Ordering::Relaxed);
            self.timestamp += 33;
            if let Some(floor) = &mut self.floor {
                floor.write_batch(self.timestamp);
            } else {
                self.publish_batch();
            }
            let received = self.received.clone();
            self.runtime.block_on(async move {
                while received.total.load(Ordering::Relaxed) < target {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(50),
                        received.reached.notified(),
                    )
                    .await;
                }
            });
        }
        started.elapsed()
    }
}

fn http_flv(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_flv_fanout");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(PLAYERS as u64));
    for (name, mode) in [
        ("framework", Mode::Framework),
        ("raw_writer", Mode::Raw),
        ("raw_chunked_writev", Mode::RawChunked { sendfile: false }),
        ("raw_chunked_sendfile", Mode::RawChunked { sendfile: true }),
        ("floor", Mode::Floor),
    ] {
        let mut setup = Setup::new(mode);
        group.bench_function(BenchmarkId::new(name, PLAYERS), |b| {
            b.iter_custom(|iters| setup.run(iters))
        });
    }
    group.finish();
}

criterion_group!(benches, http_flv);
criterion_main!(benches);
