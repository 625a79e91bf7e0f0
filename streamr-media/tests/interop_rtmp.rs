//! The relay server against real RTMP peers over loopback: ffmpeg and gstreamer publish; ffmpeg,
//! rtmpdump and gstreamer play; ffprobe checks what the players recorded.

mod common;

use std::time::Duration;

use common::*;
use streamr_media::relay::{RelayConfig, StreamKey};
use streamr_media::rtmp::session::{ClientRole, PublishMode};
use streamr_media::server::RelayServerConfig;
use tokio::net::TcpSocket;

/// 6 s at 25 fps.
const SIX_SECONDS_OF_FRAMES: u32 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_joining_mid_stream_starts_at_once_on_the_cached_keyframe() {
    let server = start_server(RelayServerConfig::default()).await;
    let key = StreamKey::parse("live", "late").unwrap();
    let url = rtmp_url(&server, "live", "late");
    let scratch = Scratch::new();
    let out = scratch.path("played.flv");
    let publisher = ffmpeg_publish(&url, 6);
    assert!(
        wait_until(Duration::from_secs(10), || server.hub().is_publishing(&key)).await,
        "publisher never started"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let player = ffmpeg_play(&url, &out);

    let (status, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg publish failed: {stderr}"
    );
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.shutdown().await;
    finish(player, Duration::from_secs(15)).await;
    // Joined about 2.5 s in with 1 s GOPs: the cached GOP from the 2 s keyframe, then the rest
    // (about 100 frames); without the cache it would start at the 3 s keyframe or later.
    assert_clean_recording(&out, 100, 30).await;
}
