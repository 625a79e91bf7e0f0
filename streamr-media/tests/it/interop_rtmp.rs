//! The relay server against real RTMP peers over loopback: ffmpeg and gstreamer publish; ffmpeg,
//! rtmpdump and gstreamer play; ffprobe checks what the players recorded.

use crate::common;

use std::time::Duration;

use common::*;
use streamr_media::relay::{RelayConfig, StreamKey};
use streamr_media::rtmp::session::{ClientRole, PublishMode};
use streamr_media::server::RelayServerConfig;
use tokio::net::TcpSocket;

/// 6 s at 25 fps.
const SIX_SECONDS_OF_FRAMES: u32 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg, rtmpdump and gst-launch-1.0"]
async fn ffmpeg_publish_reaches_ffmpeg_rtmpdump_and_gstreamer_players_while_one_player_stalls() {
    let mut config = RelayServerConfig::default();
    // A viewer that takes nothing for 2 s is cut off rather than held for the default 20 s.
    config.write_timeout = Duration::from_secs(2);
    // Without a bound, loopback autotuning lets the kernel swallow the whole test stream.
    config.send_buffer_size = Some(32 * 1024);
    let server = start_server(config).await;
    let key = StreamKey::parse("live", "fanout").unwrap();
    let url = rtmp_url(&server, "live", "fanout");
    let scratch = Scratch::new();

    let players = [
        ("ffmpeg", ffmpeg_play(&url, &scratch.path("ffmpeg.flv"))),
        (
            "rtmpdump",
            rtmpdump_play(&url, &scratch.path("rtmpdump.flv")),
        ),
        (
            "gstreamer",
            gstreamer_play(&url, &scratch.path("gstreamer.flv")),
        ),
    ];
    // The stalled player: a tiny receive window, then it never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = TestClient::start_on(
        socket.connect(server.local_addr()).await.unwrap(),
        server.local_addr(),
        "live",
        "fanout",
        ClientRole::Play,
    )
    .await
    .expect("stalled player starts playing");
    wait_for_viewers(server.hub(), &key, 4).await;

    let publisher = ffmpeg_publish(&url, 6);
    let (status, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg publish failed: {stderr}"
    );
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;

    // The stalled player was cut off; the three real players are still there.
    let viewers = server.hub().stream_stats(&key).unwrap().viewers;
    assert_eq!(
        viewers.len(),
        3,
        "only the stalled viewer is gone: {viewers:?}"
    );
    drop(stalled);

    // Let the players drain, then close every connection so they finish their files.
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.shutdown().await;
    for (name, player) in players {
        let (_, stderr) = finish(player, Duration::from_secs(15)).await;
        let path = scratch.path(&format!("{name}.flv"));
        assert!(path.exists(), "{name} wrote nothing: {stderr}");
        assert_clean_recording(&path, SIX_SECONDS_OF_FRAMES, 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs gst-launch-1.0 and ffmpeg"]
async fn gstreamer_publish_is_played_by_ffmpeg() {
    let server = start_server(RelayServerConfig::default()).await;
    let key = StreamKey::parse("live", "gst").unwrap();
    let url = rtmp_url(&server, "live", "gst");
    let scratch = Scratch::new();
    let out = scratch.path("played.flv");
    let player = ffmpeg_play(&url, &out);
    wait_for_viewers(server.hub(), &key, 1).await;

    let source = scratch.path("source.flv");
    encode_test_file(&source, 6).await;
    let publisher = gstreamer_publish_file(&source, &url);
    let (status, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "gstreamer publish failed: {stderr}"
    );
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.shutdown().await;
    finish(player, Duration::from_secs(15)).await;
    assert_clean_recording(&out, SIX_SECONDS_OF_FRAMES, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn republish_resumes_players_and_a_second_publisher_is_refused_with_bad_name() {
    let relay = RelayConfig::default();
    let server = start_server(RelayServerConfig::default().with_relay(relay)).await;
    let key = StreamKey::parse("live", "again").unwrap();
    let url = rtmp_url(&server, "live", "again");
    let scratch = Scratch::new();
    let out = scratch.path("played.flv");
    let player = ffmpeg_play(&url, &out);
    wait_for_viewers(server.hub(), &key, 1).await;

    let first = ffmpeg_publish(&url, 3);
    assert!(
        wait_until(Duration::from_secs(10), || server.hub().is_publishing(&key)).await,
        "first publisher never started"
    );
    let refused = TestClient::start(
        server.local_addr(),
        "live",
        "again",
        ClientRole::Publish(PublishMode::Live),
    )
    .await;
    assert_eq!(refused.err().as_deref(), Some("NetStream.Publish.BadName"));
    let (status, stderr) = finish(first, Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "first publish failed: {stderr}"
    );
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;

    let second = ffmpeg_publish(&url, 3);
    let (status, stderr) = finish(second, Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "republish failed: {stderr}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            server
                .hub()
                .stream_stats(&key)
                .is_some_and(|s| s.publish_count == 2 && !s.publishing)
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.shutdown().await;
    finish(player, Duration::from_secs(15)).await;
    // Both 3 s publishes reach the one player, continuing on one timeline.
    assert_clean_recording(&out, SIX_SECONDS_OF_FRAMES, 4).await;
}

/// A player of our own that records every video frame's (timestamp, keyframe) until its
/// publisher leaves; `seen` counts the coded frames so far.
async fn witness(
    addr: std::net::SocketAddr,
    name: &str,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<(u32, bool)> {
    use streamr_media::rtmp::session::{ClientEvent, MediaKind};
    use tokio::io::AsyncReadExt;
    let mut client = TestClient::start(addr, "live", name, ClientRole::Play)
        .await
        .expect("witness plays");
    let mut frames = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        client.flush().await;
        while let Some(event) = client.session.poll_event() {
            if event == ClientEvent::StreamEnded {
                return frames;
            }
            if let ClientEvent::Media {
                kind: MediaKind::Video,
                timestamp,
                payload,
            } = event
            {
                // Coded frames only (AVC packet type 1), not sequence headers.
                if payload.get(1) == Some(&1) {
                    frames.push((timestamp, payload.first().is_some_and(|b| b >> 4 == 1)));
                    seen.store(frames.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        match tokio::time::timeout(Duration::from_secs(60), client.socket.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => client
                .session
                .feed(&buffer[..read])
                .expect("valid server bytes"),
            _ => return frames,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn a_player_joining_mid_stream_starts_at_once_on_the_cached_keyframe() {
    let mut config = RelayServerConfig::default();
    // Players learn the publisher left after its last frame: ffmpeg then ends its file and the
    // witness returns, with no waiting on the clock.
    config.notify_players_on_unpublish = true;
    let server = start_server(config).await;
    let key = StreamKey::parse("live", "late").unwrap();
    let url = rtmp_url(&server, "live", "late");
    let scratch = Scratch::new();
    let out = scratch.path("played.flv");
    // A witness watches from the start and sees every frame the publisher sends.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let witness = tokio::spawn(witness(server.local_addr(), "late", seen.clone()));
    wait_for_viewers(server.hub(), &key, 1).await;
    let publisher = ffmpeg_publish(&url, 6);
    // Join mid-stream: once more than two GOPs (1 s each) went out.
    assert!(
        wait_until(Duration::from_secs(60), || {
            seen.load(std::sync::atomic::Ordering::Relaxed) > 60
        })
        .await,
        "the publisher never got 60 frames out"
    );
    let player = ffmpeg_play(&url, &out);
    wait_for_viewers(server.hub(), &key, 2).await;

    let (status, stderr) = finish(publisher, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg publish failed: {stderr}"
    );
    let (status, stderr) = finish(player, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg play failed: {stderr}"
    );
    let timeline = witness.await.expect("witness");
    server.shutdown().await;
    let recorded = probe(&out).await.video_frames as usize;
    assert!(
        recorded > 0 && recorded < timeline.len(),
        "joined mid-stream: {recorded} of {} frames",
        timeline.len()
    );
    // The late player's frames are the stream's last ones, from a keyframe on, with none
    // missing: it started on a GOP start and kept up.
    let first = timeline[timeline.len() - recorded];
    assert!(
        first.1,
        "the late player's first frame (at {} ms) is a keyframe",
        first.0
    );
    assert_clean_recording(&out, recorded as u32, 0).await;
}
