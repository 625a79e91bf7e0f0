//! A slow viewer over a real socket: ffmpeg publishes, one RTMP player reads everything and one
//! reads at a trickle for a while. The slow one is not cut off: the relay skips it to the next
//! keyframe (sequence headers resent), counts the frames it dropped, and the fast player loses
//! nothing.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use streamr_media::relay::{RelayConfig, RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientEvent, ClientRole, MediaKind};
use streamr_media::server::RelayServerConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

/// 25 fps.
const FRAME_MS: u32 = 40;

/// One video message as the player received it.
#[derive(Debug, Clone, Copy)]
struct VideoFrame {
    timestamp: u32,
    keyframe: bool,
    sequence_header: bool,
}

fn video_frame(timestamp: u32, payload: &[u8]) -> Option<VideoFrame> {
    let (&first, &packet_type) = (payload.first()?, payload.get(1)?);
    Some(VideoFrame {
        timestamp,
        keyframe: first >> 4 == 1,
        sequence_header: first & 0x0f == 7 && packet_type == 0,
    })
}

/// Plays `live/slow` until the publisher leaves, then returns what it received and the still
/// connected client. After `pause_after` coded video frames the player reads at a trickle until
/// `resume` says so; `caught_up` is set once it has read two more seconds of video after that.
async fn play(
    addr: SocketAddr,
    recv_buffer: Option<u32>,
    pause_after: Option<usize>,
    resume: impl Fn() -> bool,
    caught_up: Arc<AtomicBool>,
) -> (Vec<VideoFrame>, TestClient) {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("receive buffer");
    }
    let stream = socket.connect(addr).await.expect("connect");
    let mut client = TestClient::start_on(stream, addr, "live", "slow", ClientRole::Play)
        .await
        .expect("plays");
    let mut frames = Vec::new();
    let mut slow = false;
    let mut pause_after = pause_after;
    let mut resumed_at: Option<usize> = None;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        client.flush().await;
        while let Some(event) = client.session.poll_event() {
            match event {
                ClientEvent::Media {
                    kind: MediaKind::Video,
                    timestamp,
                    payload,
                } => frames.extend(video_frame(timestamp, &payload)),
                ClientEvent::StreamEnded => return (frames, client),
                _ => {}
            }
        }
        let coded = frames.iter().filter(|f| !f.sequence_header).count();
        if !slow && pause_after.is_some_and(|n| coded >= n) {
            slow = true;
        }
        if slow && resume() {
            slow = false;
            pause_after = None;
            resumed_at = Some(coded);
        }
        if resumed_at.is_some_and(|at| coded >= at + 50) {
            caught_up.store(true, Ordering::Relaxed);
        }
        // A slow link: 4 KiB per 100 ms (about 40 KB/s, a sixth of the stream's rate).
        let want = if slow {
            tokio::time::sleep(Duration::from_millis(100)).await;
            4096
        } else {
            buffer.len()
        };
        let read = tokio::time::timeout(
            Duration::from_secs(60),
            client.socket.read(&mut buffer[..want]),
        )
        .await
        .expect("the server sends something within 60 s")
        .expect("read from server");
        assert!(read > 0, "the server closed the connection");
        client
            .session
            .feed(&buffer[..read])
            .expect("valid server bytes");
    }
}

fn dropped(hub: &RelayHub, key: &StreamKey) -> u64 {
    hub.stream_stats(key)
        .map(|s| s.viewers.iter().map(|v| v.frames_dropped).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn a_slow_player_skips_to_the_next_keyframe_and_its_drops_are_counted() {
    let mut relay = RelayConfig::default();
    // A viewer more than 1 s of media behind skips ahead.
    relay.viewer_max_lag = Duration::from_secs(1);
    let mut config = RelayServerConfig::default().with_relay(relay);
    // The pause must not look like a dead peer.
    config.write_timeout = Duration::from_secs(60);
    config.send_buffer_size = Some(32 * 1024);
    // Players learn the publisher left (Stream EOF, UnpublishNotify) and stop.
    config.notify_players_on_unpublish = true;
    let server = start_server(config).await;
    let key = StreamKey::parse("live", "slow").unwrap();
    let addr = server.local_addr();
    let hub = server.hub().clone();

    let never = Arc::new(AtomicBool::new(false));
    let fast = tokio::spawn(play(addr, None, None, || true, never));
    let slow_hub = hub.clone();
    let slow_key = key.clone();
    let caught_up = Arc::new(AtomicBool::new(false));
    // Slows down after a second of video, reads at full speed again once the relay reports a
    // drop.
    let slow = tokio::spawn(play(
        addr,
        Some(4096),
        Some(25),
        move || dropped(&slow_hub, &slow_key) > 0,
        caught_up.clone(),
    ));
    wait_for_viewers(&hub, &key, 2).await;

    // Publishes until the slow player has skipped and played two seconds after it.
    let mut publisher = ffmpeg_publish(&rtmp_url(&server, "live", "slow"), 120);
    assert!(
        wait_until(Duration::from_secs(100), || caught_up
            .load(Ordering::Relaxed))
        .await,
        "the slow player never skipped and caught up"
    );
    publisher.kill().await.expect("stop the publisher");
    wait_for_publish_end(&hub, &key, Duration::from_secs(30)).await;
    let (fast, fast_client) = fast.await.expect("fast player");
    let (slow, slow_client) = slow.await.expect("slow player");

    // Both players are still connected: the slow one was not cut off.
    let stats = hub.stream_stats(&key).expect("stream stats");
    assert_eq!(stats.viewers.len(), 2, "both players connected: {stats:?}");
    let slow_stats: Vec<_> = stats
        .viewers
        .iter()
        .filter(|v| v.frames_dropped > 0)
        .collect();
    assert_eq!(
        slow_stats.len(),
        1,
        "only the slow viewer dropped: {stats:?}"
    );
    drop((fast_client, slow_client));
    let coded = |frames: &[VideoFrame]| frames.iter().filter(|f| !f.sequence_header).count();
    let has_gap = |frames: &[VideoFrame]| {
        let coded: Vec<u32> = frames
            .iter()
            .filter(|f| !f.sequence_header)
            .map(|f| f.timestamp)
            .collect();
        coded.windows(2).any(|w| w[1] > w[0] + 2 * FRAME_MS)
    };
    assert!(
        !has_gap(&fast),
        "the fast player lost nothing: its timeline has no gap"
    );
    let skipped = coded(&fast) - coded(&slow);
    assert!(skipped > 0, "the slow player skipped frames");
    assert!(
        u64::try_from(skipped).expect("small") <= slow_stats[0].frames_dropped,
        "every video frame the slow player missed is counted ({skipped} <= {:?})",
        slow_stats[0]
    );

    // Where the slow player's timeline jumps, it resumes on a keyframe after the sequence
    // header was sent again, and it plays on to the end.
    let coded_frames: Vec<VideoFrame> = slow
        .iter()
        .copied()
        .filter(|f| !f.sequence_header)
        .collect();
    let gap = coded_frames
        .windows(2)
        .position(|w| w[1].timestamp > w[0].timestamp + 2 * FRAME_MS)
        .expect("the slow player's timeline has a gap");
    let resumed = coded_frames[gap + 1];
    assert!(resumed.keyframe, "resumes on a keyframe: {resumed:?}");
    let header_before = slow
        .iter()
        .rposition(|f| f.sequence_header && f.timestamp <= resumed.timestamp)
        .expect("a sequence header");
    assert!(
        header_before > 0,
        "the sequence header was resent before the skip"
    );
    assert_eq!(
        coded_frames.last().map(|f| f.timestamp),
        fast.iter()
            .rev()
            .find(|f| !f.sequence_header)
            .map(|f| f.timestamp),
        "the slow player plays on to the end"
    );
    server.shutdown().await;
}
