//! RTMP players under the server's write timeout, over real sockets: the deadline is on
//! progress, as for HTTP responses. A player that reads slowly but steadily through a batch
//! that takes it several deadlines (its first, the GOP cache) is not cut; one that stops
//! reading is closed about a deadline later, while the stream's other player goes on
//! receiving. Both the vectored writes and the `sendfile` path are run.
//!
//! The server's sockets have small send buffers (set on the listener, which accepted sockets
//! inherit) and the slow players small receive buffers, so a batch of a megabyte waits in the
//! writer, not in kernel buffers.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{closed_by_server, TestClient};
use streamr_media::relay::{FrameKind, RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientEvent, ClientRole, MediaKind};
use streamr_media::server::{
    AllowAll, CloseReason, RelayServer, RelayServerConfig, SENDFILE_MIN_BYTES,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

/// The write timeout the servers here run with.
const DEADLINE: Duration = Duration::from_millis(400);

/// An RTMP server on `hub` with [`DEADLINE`] as its write timeout, players' batches going out
/// by `sendfile` or by vectored writes only; every accepted socket has an 8 KiB send buffer.
async fn serve(hub: &RelayHub, sendfile: bool) -> RelayServer {
    let mut config = RelayServerConfig::default()
        .with_bind("127.0.0.1:0".parse().expect("address"))
        .with_sendfile_min_bytes(sendfile.then_some(SENDFILE_MIN_BYTES));
    config.write_timeout = DEADLINE;
    config.send_buffer_size = Some(8 * 1024);
    RelayServer::start_on_hub(config, Arc::new(AllowAll), hub.clone())
        .await
        .expect("the server starts")
}

/// A player of `live/{name}`, with a 4 KiB receive buffer when `slow`, once it plays.
async fn play(addr: SocketAddr, name: &str, slow: bool) -> TestClient {
    let socket = TcpSocket::new_v4().expect("socket");
    if slow {
        socket.set_recv_buffer_size(4096).expect("receive buffer");
    }
    let stream = socket.connect(addr).await.expect("connect");
    TestClient::start_on(stream, addr, "live", name, ClientRole::Play)
        .await
        .expect("plays")
}

/// Connections the server closed for their write timeout.
fn write_timeouts(server: &RelayServer) -> u64 {
    server
        .metrics()
        .closed
        .iter()
        .find(|(reason, _)| *reason == CloseReason::WriteTimeout)
        .map_or(0, |(_, closed)| *closed)
}

/// Reads `client` (`chunk` bytes at a time, `pause` before each read) until a video message
/// of `size` bytes has arrived; fails when the server closes the connection or sends nothing
/// for 10 s.
async fn read_video(client: &mut TestClient, size: usize, chunk: usize, pause: Duration) {
    let mut buf = vec![0u8; chunk];
    let mut received = 0usize;
    loop {
        client.flush().await;
        while let Some(event) = client.session.poll_event() {
            if let ClientEvent::Media {
                kind: MediaKind::Video,
                payload,
                ..
            } = event
            {
                if payload.len() == size {
                    return;
                }
            }
        }
        tokio::time::sleep(pause).await;
        let n = tokio::time::timeout(Duration::from_secs(10), client.socket.read(&mut buf))
            .await
            .expect("bytes keep coming")
            .expect("read");
        assert!(n > 0, "cut after {received} bytes");
        received += n;
        client.session.feed(&buf[..n]).expect("valid server bytes");
    }
}

/// A player reading 4 KiB every 10 ms (some 300 KB/s) takes its first batch, a cached keyframe
/// of a megabyte, over several deadlines: it is not cut, gets all of it, and plays on.
async fn a_slow_steady_reader_is_not_cut(sendfile: bool) {
    let hub = RelayHub::default();
    let key = StreamKey::parse("live", "steady").expect("key");
    let publisher = hub.publish(key.clone()).expect("publish");
    const KEYFRAME: usize = 1 << 20;
    publisher.send(FrameKind::Video, 0, common::video_payload(true, KEYFRAME));
    let server = serve(&hub, sendfile).await;
    let mut player = play(server.local_addr(), "steady", true).await;

    let started = Instant::now();
    read_video(&mut player, KEYFRAME, 4096, Duration::from_millis(10)).await;
    let took = started.elapsed();
    // The one batch took the player several deadlines: a limit per batch would have cut it.
    assert!(took > 2 * DEADLINE, "the batch took only {took:?}");
    // Still connected: the next frame arrives too.
    publisher.send(FrameKind::Video, 40, common::video_payload(false, 3_000));
    read_video(&mut player, 3_000, 4096, Duration::ZERO).await;
    assert_eq!(write_timeouts(&server), 0);
    assert_eq!(common::viewer_count(&hub, &key), 1);
    assert_eq!(
        server.metrics().bytes_shared > KEYFRAME as u64,
        sendfile,
        "the keyframe went out by sendfile only on the sendfile server"
    );
    drop(publisher);
    server.shutdown().await;
}

/// One player stops reading while another reads everything: the stopped one is closed about
/// a deadline after it stopped, and the other keeps receiving meanwhile and after.
async fn a_stopped_reader_is_closed_and_others_play_on(sendfile: bool) {
    let hub = RelayHub::default();
    let key = StreamKey::parse("live", "stall").expect("key");
    let publisher = hub.publish(key.clone()).expect("publish");
    publisher.send(FrameKind::Video, 0, common::video_payload(true, 20_000));
    let server = serve(&hub, sendfile).await;
    let addr = server.local_addr();

    let publishing = tokio_util::sync::CancellationToken::new();
    let publish = common::spawn_megabyte_publisher(publisher, publishing.clone());

    let received = Arc::new(AtomicU64::new(0));
    let fast = play(addr, "stall", false).await;
    let fast_reader = common::spawn_counting_reader(fast.socket, received.clone());
    let mut stalled = play(addr, "stall", true).await;
    read_video(&mut stalled, 20_000, 4096, Duration::ZERO).await;
    // The player stops reading: closed about a deadline later (after the last bytes the
    // server could still put in the buffers).
    let stopped_at = Instant::now();
    let received_then = received.load(Ordering::Relaxed);
    common::assert_one_viewer_closed_a_deadline_after(&hub, &key, stopped_at, DEADLINE).await;
    assert_eq!(write_timeouts(&server), 1, "closed for its write timeout");
    assert_eq!(
        server.metrics().bytes_shared > 0,
        sendfile,
        "batches went out by sendfile only on the sendfile server"
    );
    // The other player received meanwhile (some 400 KB were published), and goes on.
    common::assert_other_player_plays_on(&received, received_then).await;
    assert!(
        closed_by_server(&mut stalled.socket, Duration::from_secs(10)).await,
        "the stalled player's connection was closed"
    );
    assert_eq!(
        write_timeouts(&server),
        1,
        "only the stalled player was cut"
    );
    publishing.cancel();
    publish.await.expect("publisher");
    server.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), fast_reader)
        .await
        .expect("the fast player's connection ends with the server")
        .expect("fast player");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_rtmp_reader_is_not_cut_vectored() {
    a_slow_steady_reader_is_not_cut(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_rtmp_reader_is_not_cut_sendfile() {
    a_slow_steady_reader_is_not_cut(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_rtmp_reader_is_closed_and_others_play_on_vectored() {
    a_stopped_reader_is_closed_and_others_play_on(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_rtmp_reader_is_closed_and_others_play_on_sendfile() {
    a_stopped_reader_is_closed_and_others_play_on(true).await;
}
