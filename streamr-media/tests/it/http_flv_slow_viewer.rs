//! HTTP-FLV players on taken-over connections under the HTTP server's write deadline, over real
//! sockets: the deadline is on progress, as for every other HTTP response. A player that reads
//! slowly but steadily through a batch that takes it many deadlines is not cut; one that stops
//! reading is closed about a deadline later, while the stream's other players go on receiving.
//! Both the vectored writes and the `sendfile` path are run.
//!
//! The server's sockets have small send buffers (set on the listener, which accepted sockets
//! inherit) and the slow players small receive buffers, so a batch of a megabyte waits in the
//! writer, not in kernel buffers.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamr_media::http::{router, HttpState, LiveHls, LiveHlsConfig, ZERO_COPY_MIN_BYTES};
use streamr_media::relay::{FrameKind, RelayHub, StreamKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// The write deadline the servers here run with.
const DEADLINE: Duration = Duration::from_millis(400);

/// Serves `hub`'s streams over HTTP with [`DEADLINE`] as the write deadline, HTTP-FLV batches
/// going out by `sendfile` or by vectored writes only; every accepted socket has an 8 KiB send
/// buffer.
async fn serve(hub: &RelayHub, sendfile: bool, stop: &CancellationToken) -> SocketAddr {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(8 * 1024).expect("send buffer");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(64).expect("listen");
    let addr = listener.local_addr().expect("address");
    let hls = LiveHls::start(hub.clone(), LiveHlsConfig::default(), stop.clone());
    let state = HttpState::new(hub.clone(), hls)
        .with_shutdown(stop.clone())
        .with_write_timeout(DEADLINE)
        .with_flv_sendfile_min(sendfile.then_some(ZERO_COPY_MIN_BYTES));
    let mut limits = streamr_net::HttpLimits::default();
    limits.write_timeout = DEADLINE;
    let stopped = {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    };
    tokio::spawn(streamr_net::http::serve(
        listener,
        router(state),
        limits.budget(),
        limits,
        stopped,
    ));
    addr
}

/// A player of `live/{name}.flv` (HTTP/1.1, so chunked), with a small receive buffer when
/// `slow`; returns the connection after the response head.
async fn play(addr: SocketAddr, name: &str, slow: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if slow {
        socket.set_recv_buffer_size(4096).expect("receive buffer");
    }
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET /live/{name}.flv HTTP/1.1\r\nHost: node\r\n\r\n").as_bytes())
        .await
        .expect("request");
    // The head, a byte at a time so no body byte is taken with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(Duration::from_secs(10), stream.read_u8())
            .await
            .expect("a response head within 10 s")
            .expect("read the head");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    stream
}

/// The payloads of a chunked body and whether its last chunk ended it.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(line) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line])
            .ok()
            .and_then(|size| usize::from_str_radix(size, 16).ok())
            .expect("a hexadecimal chunk size");
        if size == 0 {
            return (out, true);
        }
        let start = line + 2;
        assert!(body.len() >= start + size + 2, "a whole chunk");
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    (out, false)
}

/// Reads `stream` to its end, failing after `limit`.
async fn read_to_end(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut body))
        .await
        .expect("the response ends in time")
        .expect("read the body");
    body
}

/// A player reading 4 KiB every 10 ms (about 300 KB/s) takes a batch of a megabyte, the
/// cached keyframe, over several deadlines: it is not cut, and gets the whole response.
async fn a_slow_steady_reader_is_not_cut(sendfile: bool) {
    let hub = RelayHub::default();
    let key = StreamKey::parse("live", "steady").expect("key");
    let publisher = hub.publish(key.clone()).expect("publish");
    const KEYFRAME: usize = 1 << 20;
    publisher.send(FrameKind::Video, 0, common::video_payload(true, KEYFRAME));
    let stop = CancellationToken::new();
    let addr = serve(&hub, sendfile, &stop).await;
    let mut player = play(addr, "steady", true).await;

    let started = Instant::now();
    let mut body = Vec::new();
    let mut buf = vec![0u8; 4096];
    while body.len() < KEYFRAME {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let n = tokio::time::timeout(Duration::from_secs(10), player.read(&mut buf))
            .await
            .expect("bytes keep coming")
            .expect("read");
        assert!(
            n > 0,
            "cut after {} bytes, {:?}",
            body.len(),
            started.elapsed()
        );
        body.extend_from_slice(&buf[..n]);
    }
    let took = started.elapsed();
    // The one batch took the player several deadlines: the old per-batch limit would have cut
    // it.
    assert!(took > 2 * DEADLINE, "the batch took only {took:?}");
    // The publisher leaves: the response ends with its last chunk.
    drop(publisher);
    body.extend(read_to_end(&mut player, Duration::from_secs(10)).await);
    let (flv, ended) = dechunk(&body);
    assert!(ended, "the response ended with its last chunk, not cut");
    assert!(flv.starts_with(b"FLV\x01\x01"), "an FLV stream of video");
    assert!(
        flv.len() > KEYFRAME,
        "the whole keyframe: {} bytes",
        flv.len()
    );
    stop.cancel();
}

/// One player stops reading while another reads everything: the stopped one is closed about
/// a deadline after it stopped, and the other keeps receiving meanwhile and after.
async fn a_stopped_reader_is_closed_and_others_play_on(sendfile: bool) {
    let hub = RelayHub::default();
    let key = StreamKey::parse("live", "stall").expect("key");
    let publisher = hub.publish(key.clone()).expect("publish");
    publisher.send(FrameKind::Video, 0, common::video_payload(true, 20_000));
    let stop = CancellationToken::new();
    let addr = serve(&hub, sendfile, &stop).await;

    let publishing = CancellationToken::new();
    let publish = common::spawn_megabyte_publisher(publisher, publishing.clone());

    let received = Arc::new(AtomicU64::new(0));
    let fast = play(addr, "stall", false).await;
    let fast_reader = common::spawn_counting_reader(fast, received.clone());
    let mut stalled = play(addr, "stall", true).await;
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut first))
        .await
        .expect("the stalled player gets bytes first")
        .expect("read");
    assert!(n > 0);
    // The player stops reading: closed about a deadline later (after the last byte the
    // server could still put in the buffers).
    let stopped_at = Instant::now();
    let received_then = received.load(Ordering::Relaxed);
    common::assert_one_viewer_closed_a_deadline_after(&hub, &key, stopped_at, DEADLINE).await;
    // The other player received meanwhile (some 400 KB were published), and goes on.
    common::assert_other_player_plays_on(&received, received_then).await;
    // The stalled player's connection was closed without the last chunk.
    let rest = read_to_end(&mut stalled, Duration::from_secs(10)).await;
    let mut stalled_body = first[..n].to_vec();
    stalled_body.extend(rest);
    assert!(
        !stalled_body.ends_with(b"0\r\n\r\n"),
        "the stalled player's response was cut, not ended"
    );

    publishing.cancel();
    publish.await.expect("publisher");
    let fast_body = tokio::time::timeout(Duration::from_secs(10), fast_reader)
        .await
        .expect("the fast player's response ends")
        .expect("fast player");
    let (flv, ended) = dechunk(&fast_body);
    assert!(
        ended,
        "the fast player's response ended with its last chunk"
    );
    assert!(flv.starts_with(b"FLV\x01\x01"));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_reader_is_not_cut_vectored() {
    a_slow_steady_reader_is_not_cut(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_reader_is_not_cut_sendfile() {
    a_slow_steady_reader_is_not_cut(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_is_closed_and_others_play_on_vectored() {
    a_stopped_reader_is_closed_and_others_play_on(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_is_closed_and_others_play_on_sendfile() {
    a_stopped_reader_is_closed_and_others_play_on(true).await;
}
