//! A friend node's relay role against real peers: ffmpeg publishes to an origin relay, an edge
//! relay pulls from it on demand, and ffmpeg plus our client play from the edge.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streamr_media::client::RtmpClient;
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::{Refusal, RelayHooks, RelayServer, RelayServerConfig, StreamRequest};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};

/// Edge hooks: a player asking for a stream starts (or joins) its pull.
struct PullOnPlay(UpstreamPuller);

#[async_trait]
impl RelayHooks for PullOnPlay {
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        self.0.ensure(&request.key);
        Ok(())
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn ffmpeg_publish(url: &str, seconds: u32) -> Running {
    let child = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
        ])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    Running(child)
}

/// Counts keyframes and frames our client receives from `url` for `duration`.
async fn watch(url: RtmpUrl, duration: Duration) -> (usize, usize) {
    let mut client = RtmpClient::play(&url).await.expect("playing from the edge");
    let (mut keyframes, mut frames) = (0, 0);
    let _ = tokio::time::timeout(duration, async {
        while let Ok(Some(event)) = client.next_event().await {
            if let ClientEvent::Media {
                kind: MediaKind::Video,
                payload,
                ..
            } = event
            {
                frames += 1;
                if payload.first().is_some_and(|b| b >> 4 == 1) {
                    keyframes += 1;
                }
            }
        }
    })
    .await;
    (keyframes, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_pulls_once_for_many_viewers_fails_over_and_stops_when_idle() {
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");

    // The first upstream is dead: the pull must fail over to the origin.
    let dead = std::net::TcpListener::bind(loopback()).expect("a port");
    let dead_addr = dead.local_addr().expect("its address");
    drop(dead);
    let hub = RelayHub::default();
    let puller = UpstreamPuller::new(
        hub.clone(),
        UpstreamConfig {
            upstreams: vec![
                format!("rtmp://{dead_addr}"),
                format!("rtmp://{}", origin.local_addr()),
            ],
            idle_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(200),
            idle_check_interval: Duration::from_millis(200),
        },
    );
    let edge = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(PullOnPlay(puller.clone())),
        hub,
    )
    .await
    .expect("edge starts");

    let _publisher = ffmpeg_publish(&format!("rtmp://{}/live/pulled", origin.local_addr()), 14);
    let key = StreamKey::new("live", "pulled");
    for _ in 0..100 {
        if origin.hub().is_publishing(&key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        origin.hub().is_publishing(&key),
        "ffmpeg publishes to the origin"
    );

    let edge_url = format!("rtmp://{}/live/pulled", edge.local_addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("edge.flv");
    let ffmpeg_player = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", &edge_url, "-t", "4", "-c", "copy", "-y",
        ])
        .arg(&recording)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg plays");
    let ffmpeg_player = Running(ffmpeg_player);
    let ours = tokio::spawn(watch(
        RtmpUrl::parse(&edge_url).expect("url"),
        Duration::from_secs(4),
    ));
    let (keyframes, frames) = ours.await.expect("our player ran");
    assert!(
        keyframes >= 2 && frames >= 40,
        "{keyframes} keyframes, {frames} frames"
    );

    // Both viewers share one upstream connection; the origin sees a single player: the edge.
    let status = puller.status(&key).expect("the pull runs");
    assert_eq!(
        status.connects, 2,
        "one failed attempt, then the origin: {status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    let origin_viewers = origin.hub().stream_stats(&key).map(|s| s.viewers.len());
    assert_eq!(origin_viewers, Some(1));

    let mut ffmpeg_player = ffmpeg_player;
    let exit = tokio::task::spawn_blocking(move || ffmpeg_player.0.wait())
        .await
        .expect("join")
        .expect("ffmpeg exit status");
    assert!(exit.success(), "ffmpeg played from the edge without errors");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(&recording)
        .output()
        .expect("ffprobe runs");
    let probe = String::from_utf8_lossy(&probe.stdout);
    let mut fields = probe.trim().split(',');
    assert_eq!(fields.next(), Some("h264"), "{probe}");
    let packets: u32 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(
        packets >= 60,
        "ffmpeg recorded {packets} video packets from the edge"
    );

    // With no viewers left the pull stops after the idle timeout.
    for _ in 0..100 {
        if !puller.is_pulling(&key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!puller.is_pulling(&key), "the idle pull stopped");

    edge.shutdown().await;
    origin.shutdown().await;
}
