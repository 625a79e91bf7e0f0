//! A friend node's relay role against real peers: ffmpeg publishes to an origin relay, an edge
//! relay pulls from it on demand, and ffmpeg plus our client play from the edge; and an edge
//! failing over between two relays mid-stream keeps the origin's timeline and segments.

use crate::common::{loopback, PullOnPlay};

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use streamr_media::client::RtmpClient;
use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::hls::{Segment, Segmenter, SegmenterConfig, SegmenterEvent};
use streamr_media::relay::{FrameKind, RelayEvent, RelayHub, StreamKey, Subscription};
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::{RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller, UpstreamSource};
use streamr_test_support::ffmpeg::ffmpeg_publish;
use streamr_test_support::Running;
use tokio_util::sync::CancellationToken;

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
#[ignore = "interop: needs ffmpeg"]
async fn edge_pulls_once_for_many_viewers_fails_over_and_stops_when_idle() {
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");

    // The first upstream is dead (connection refused) and the second mute (the kernel accepts
    // the connection, nobody answers the handshake): the pull must fail over to the origin.
    let dead = std::net::TcpListener::bind(loopback()).expect("a port");
    let dead_addr = dead.local_addr().expect("its address");
    drop(dead);
    let mute = std::net::TcpListener::bind(loopback()).expect("a port");
    let mute_addr = mute.local_addr().expect("its address");
    let hub = RelayHub::default();
    let puller = UpstreamPuller::new(
        hub.clone(),
        UpstreamConfig {
            upstreams: vec![
                format!("rtmp://{dead_addr}"),
                format!("rtmp://{mute_addr}"),
                format!("rtmp://{}", origin.local_addr()),
            ],
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(200),
            idle_check_interval: Duration::from_millis(200),
            ..UpstreamConfig::default()
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
    let key = StreamKey::parse("live", "pulled").unwrap();
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
        status.connects, 3,
        "a refused and a timed-out attempt, then the origin: {status:?}"
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

    drop(mute);
    edge.shutdown().await;
    origin.shutdown().await;
}

/// Everything a subscription received, in order, shared with the test.
type Recording = Arc<Mutex<Vec<RelayEvent>>>;

/// Records every event of `subscription` until the test ends.
fn record(mut subscription: Subscription) -> Recording {
    let recording = Recording::default();
    let out = recording.clone();
    tokio::spawn(async move {
        let mut events = Vec::new();
        while subscription.recv_batch(&mut events, 64).await > 0 {
            out.lock().expect("recording").append(&mut events);
        }
    });
    recording
}

/// The latest coded video timestamp in a recording.
fn last_video(recording: &Recording) -> Option<u32> {
    let events = recording.lock().expect("recording");
    events.iter().rev().find_map(|event| match event {
        RelayEvent::Frame(frame) if frame.kind() == FrameKind::Video && frame.is_coded_media() => {
            Some(frame.timestamp())
        }
        _ => None,
    })
}

/// Waits (polling, bounded so a broken relay fails the test instead of hanging it) until
/// `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting until {what}");
}

/// Cuts HLS segments from a recording the way a node's live HLS does.
fn segments(recording: &Recording) -> Vec<Segment> {
    let mut segmenter = Segmenter::new(SegmenterConfig {
        segment_duration_ms: 2_000,
        target_duration_secs: 4,
    });
    let mut out = Vec::new();
    for event in recording.lock().expect("recording").iter() {
        let events = match event {
            RelayEvent::Frame(frame) => {
                let tag_type = match frame.kind() {
                    FrameKind::Audio => FlvTagType::Audio,
                    FrameKind::Video => FlvTagType::Video,
                    _ => FlvTagType::ScriptData,
                };
                let tag = FlvTag {
                    tag_type,
                    timestamp: frame.timestamp(),
                    stream_id: 0,
                    data: frame.payload().clone(),
                };
                segmenter.push(&tag).expect("relayed media segments")
            }
            RelayEvent::PublisherEnded => segmenter.discontinuity(),
            _ => Vec::new(),
        };
        out.extend(events);
    }
    out.extend(segmenter.finish());
    out.into_iter()
        .filter_map(|event| match event {
            SegmenterEvent::SegmentReady(segment) => Some(segment),
            _ => None,
        })
        .collect()
}

/// The coded audio and video frames of a recording as (kind, timestamp, payload).
fn media(recording: &Recording) -> Vec<(FrameKind, u32, bytes::Bytes)> {
    let events = recording.lock().expect("recording");
    events
        .iter()
        .filter_map(|event| match event {
            RelayEvent::Frame(frame) if frame.is_coded_media() => {
                Some((frame.kind(), frame.timestamp(), frame.payload().clone()))
            }
            _ => None,
        })
        .collect()
}

/// A relay that pulls `key` from `upstream` for its RTMP players.
async fn relay_of(upstream: SocketAddr) -> (RelayServer, UpstreamPuller) {
    let hub = RelayHub::default();
    let puller = UpstreamPuller::new(
        hub.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{upstream}")],
            idle_timeout: Duration::from_secs(120),
            ..UpstreamConfig::default()
        },
    );
    let server = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(PullOnPlay(puller.clone())),
        hub,
    )
    .await
    .expect("relay starts");
    (server, puller)
}

/// Forwards TCP connections to `target` until frozen; frozen, it forwards nothing more but keeps
/// every connection open, like a host that vanished from the network.
async fn freezable_proxy(target: SocketAddr, frozen: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("proxy binds");
    let address = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let frozen = frozen.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = frozen.cancelled() => {
                        // Hold both connections open, silent.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    address
}

/// Sends `timeline` a GOP at a time, waiting after each until `recording` holds its last video
/// frame, then calls `after_gop`.
async fn send_gop_by_gop(
    publisher: &mut RtmpClient,
    timeline: &[(MediaKind, u32, bytes::Bytes)],
    recording: &Recording,
    mut after_gop: impl FnMut(),
) {
    for gop in timeline.chunk_by(|_, (kind, _, payload)| {
        !(*kind == MediaKind::Video && payload.first() == Some(&0x17))
    }) {
        for (kind, timestamp, payload) in gop {
            publisher
                .send_media(*kind, *timestamp, payload.clone())
                .await
                .expect("sends");
        }
        let last = gop
            .iter()
            .filter(|(kind, _, payload)| *kind == MediaKind::Video && payload.get(1) == Some(&1))
            .map(|(_, timestamp, _)| *timestamp)
            .max();
        wait_until("the edge relayed the GOP", || {
            last.is_none() || last_video(recording) == last
        })
        .await;
        after_gop();
    }
}

/// The sample `rounds` times over (10 s each of H.264 and AAC with a keyframe every 2 s), as
/// (kind, timestamp, payload), timestamps going on across rounds.
fn sample_timeline(rounds: u32) -> Vec<(MediaKind, u32, bytes::Bytes)> {
    let sample = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/sample.flv"
    ))
    .expect("samples/sample.flv");
    let (_, tags) = FlvReader::read_all(&sample).expect("sample parses");
    let tags: Vec<FlvTag> = tags
        .into_iter()
        .filter(|tag| tag.tag_type != FlvTagType::ScriptData)
        .collect();
    let pass = tags.iter().map(|tag| tag.timestamp).max().unwrap_or(0) + 40;
    let mut timeline: Vec<(MediaKind, u32, bytes::Bytes)> = Vec::new();
    for round in 0..rounds {
        for tag in &tags {
            let is_header = tag.data.get(1) == Some(&0);
            if round > 0 && is_header {
                continue;
            }
            let kind = match tag.tag_type {
                FlvTagType::Audio => MediaKind::Audio,
                _ => MediaKind::Video,
            };
            timeline.push((kind, tag.timestamp + round * pass, tag.data.clone()));
        }
    }
    timeline
}

/// How the relay the edge pulls from dies.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// It shuts down, closing its connections.
    Closes,
    /// It vanishes: its connections stay open but carry nothing more.
    GoesSilent,
    /// It vanishes, and the stream goes on past the next keyframe before the edge notices: the
    /// second relay's cached GOP then starts after the edge's last frame, so the edge must ask it
    /// to resume from further back to lose nothing.
    GoesSilentPastAKeyframe,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_a_relay_closes_keeps_the_origin_timeline_and_its_segments() {
    failover_mid_stream(Death::Closes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_a_relay_goes_silent_keeps_the_origin_timeline_and_its_segments() {
    failover_mid_stream(Death::GoesSilent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_after_the_stream_went_past_a_keyframe_resumes_without_losing_a_frame() {
    failover_mid_stream(Death::GoesSilentPastAKeyframe).await;
}

async fn failover_mid_stream(death: Death) {
    let key = StreamKey::parse("live", "failover").unwrap();
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");
    let origin_recording = record(
        origin
            .hub()
            .subscribe_internal(key.clone())
            .expect("origin subscription"),
    );
    let (first, _first_puller) = relay_of(origin.local_addr()).await;
    let (second, second_puller) = relay_of(origin.local_addr()).await;
    // The second relay already carries the stream (another of its viewers watches it).
    second_puller.ensure(&key);
    let second_recording = record(second.hub().subscribe(key.clone()).expect("viewer"));

    let frozen = CancellationToken::new();
    let first_address = match death {
        Death::Closes => first.local_addr(),
        Death::GoesSilent | Death::GoesSilentPastAKeyframe => {
            freezable_proxy(first.local_addr(), frozen.clone()).await
        }
    };

    let edge_hub = RelayHub::default();
    let edge = UpstreamPuller::new(
        edge_hub.clone(),
        UpstreamConfig {
            upstreams: vec![
                format!("rtmp://{first_address}"),
                format!("rtmp://{}", second.local_addr()),
            ],
            idle_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            idle_check_interval: Duration::from_millis(100),
            stall_timeout: Duration::from_secs(1),
            ..UpstreamConfig::default()
        },
    );
    let edge_recording = record(edge_hub.subscribe(key.clone()).expect("edge viewer"));
    assert!(edge.ensure(&key), "the edge starts pulling");
    wait_until("both relays play from the origin", || {
        origin.hub().stream_stats(&key).map(|s| s.viewers.len()) == Some(2)
    })
    .await;

    let timeline = sample_timeline(2);
    // The first relay dies in the middle of a GOP (keyframes at 8 s and 10 s).
    let split = timeline
        .iter()
        .position(|(_, timestamp, _)| *timestamp >= 9_000)
        .expect("a long enough sample");
    let last_before = timeline[..split]
        .iter()
        .filter(|(kind, _, _)| *kind == MediaKind::Video)
        .map(|(_, timestamp, _)| *timestamp)
        .max()
        .expect("video before the failover");

    let publish_url = RtmpUrl::parse(&format!(
        "rtmp://{}/{}/{}",
        origin.local_addr(),
        key.app,
        key.name
    ))
    .expect("url");
    let mut publisher = RtmpClient::publish(&publish_url).await.expect("publishes");
    for (kind, timestamp, payload) in &timeline[..split] {
        publisher
            .send_media(*kind, *timestamp, payload.clone())
            .await
            .expect("sends");
    }
    wait_until(
        "the edge and the second relay relayed the first part",
        || {
            last_video(&edge_recording) == Some(last_before)
                && last_video(&second_recording) == Some(last_before)
        },
    )
    .await;

    let mut rest = split;
    match death {
        Death::Closes => first.shutdown().await,
        Death::GoesSilent => frozen.cancel(),
        Death::GoesSilentPastAKeyframe => {
            frozen.cancel();
            // Within the stall timeout (1 s), the origin goes on past the keyframe at 10 s.
            rest = timeline
                .iter()
                .position(|(_, timestamp, _)| *timestamp >= 10_300)
                .expect("a long enough sample");
            for (kind, timestamp, payload) in &timeline[split..rest] {
                publisher
                    .send_media(*kind, *timestamp, payload.clone())
                    .await
                    .expect("sends");
            }
            let last = timeline[..rest]
                .iter()
                .filter(|(kind, _, _)| *kind == MediaKind::Video)
                .map(|(_, timestamp, _)| *timestamp)
                .max();
            wait_until("the second relay relayed past the keyframe", || {
                last_video(&second_recording) == last
            })
            .await;
        }
    }
    wait_until("the edge pulls from the second relay", || {
        second.hub().stream_stats(&key).map(|s| s.viewers.len()) == Some(2)
    })
    .await;
    // Sent a GOP at a time, so no relay's viewer falls behind its lag budget and skips.
    send_gop_by_gop(&mut publisher, &timeline[rest..], &edge_recording, || {}).await;
    let status = edge.status(&key).expect("the edge pulls");
    assert_eq!(
        status.upstream.as_deref(),
        Some(format!("rtmp://{}", second.local_addr()).as_str()),
        "{status:?}"
    );

    // The edge relayed the origin's frames, each once, with the origin's timestamps, and its
    // viewers never saw the publisher leave.
    let relayed = media(&edge_recording);
    let original = media(&origin_recording);
    if let Some(at) =
        (0..relayed.len().max(original.len())).find(|i| relayed.get(*i) != original.get(*i))
    {
        let show = |frames: &[(FrameKind, u32, bytes::Bytes)]| {
            frames
                .iter()
                .skip(at.saturating_sub(2))
                .take(5)
                .map(|(kind, timestamp, payload)| (*kind, *timestamp, payload.len()))
                .collect::<Vec<_>>()
        };
        panic!(
            "the edge's frames differ from the origin's at {at}: {:?} instead of {:?}",
            show(&relayed),
            show(&original)
        );
    }
    for track in [FrameKind::Video, FrameKind::Audio] {
        let timestamps: Vec<u32> = relayed
            .iter()
            .filter(|(kind, _, _)| *kind == track)
            .map(|(_, timestamp, _)| *timestamp)
            .collect();
        assert!(
            timestamps.windows(2).all(|pair| pair[0] < pair[1]),
            "{track:?} timestamps only go forward"
        );
    }
    let restarts = edge_recording
        .lock()
        .expect("recording")
        .iter()
        .filter(|event| matches!(event, RelayEvent::PublisherEnded))
        .count();
    assert_eq!(
        restarts, 0,
        "the failover is seamless for the edge's viewers"
    );

    // Its HLS segments, including those cut after the failover, are the origin's, byte for byte.
    let origin_segments = segments(&origin_recording);
    let edge_segments = segments(&edge_recording);
    let after_failover = edge_segments
        .iter()
        .filter(|segment| segment.start_timestamp_ms > u64::from(last_before))
        .count();
    assert!(
        after_failover >= 5,
        "{after_failover} segments after the failover"
    );
    for segment in edge_segments.iter().skip(1) {
        let matching = origin_segments
            .iter()
            .find(|o| o.start_timestamp_ms == segment.start_timestamp_ms)
            .unwrap_or_else(|| panic!("origin cut at {}", segment.start_timestamp_ms));
        assert_eq!(
            matching.hash, segment.hash,
            "segment at {} ms",
            segment.start_timestamp_ms
        );
    }

    drop(publisher);
    second.shutdown().await;
    origin.shutdown().await;
}

/// A relay tree that names `upstream` at a pull's first ask and leaves every later ask (the
/// periodic reassignment check) unanswered until `release`, counting the asks hanging now.
#[derive(Debug)]
struct SlowTree {
    upstream: String,
    asks: AtomicUsize,
    hanging: Arc<AtomicUsize>,
    release: CancellationToken,
}

/// Counts one hanging ask for as long as it lives (a given-up ask is dropped).
struct Hanging(Arc<AtomicUsize>);

impl Drop for Hanging {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl UpstreamSource for SlowTree {
    async fn upstreams(&self, _key: &StreamKey, _failed: &[String]) -> Vec<String> {
        if self.asks.fetch_add(1, Ordering::SeqCst) > 0 {
            self.hanging.fetch_add(1, Ordering::SeqCst);
            let _hanging = Hanging(self.hanging.clone());
            self.release.cancelled().await;
        }
        vec![self.upstream.clone()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_keeps_relaying_while_its_reassignment_ask_goes_unanswered() {
    let key = StreamKey::parse("live", "slow-tree").unwrap();
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");
    let origin_recording = record(
        origin
            .hub()
            .subscribe_internal(key.clone())
            .expect("origin subscription"),
    );
    let tree = Arc::new(SlowTree {
        upstream: format!("rtmp://{}", origin.local_addr()),
        asks: AtomicUsize::new(0),
        hanging: Arc::default(),
        release: CancellationToken::new(),
    });
    let edge_hub = RelayHub::default();
    let edge = UpstreamPuller::new(
        edge_hub.clone(),
        UpstreamConfig {
            idle_timeout: Duration::from_secs(120),
            idle_check_interval: Duration::from_millis(50),
            reassign_interval: Duration::from_millis(100),
            // Far beyond the test: the ask stays unanswered until released.
            source_timeout: Duration::from_secs(600),
            ..UpstreamConfig::default()
        },
    )
    .with_source(tree.clone());
    let edge_recording = record(edge_hub.subscribe(key.clone()).expect("edge viewer"));
    assert!(edge.ensure(&key), "the edge starts pulling");
    wait_until("the edge plays from the origin", || {
        origin.hub().stream_stats(&key).map(|s| s.viewers.len()) == Some(1)
    })
    .await;
    wait_until("the edge's reassignment ask hangs", || {
        tree.hanging.load(Ordering::SeqCst) == 1
    })
    .await;

    let publish_url = RtmpUrl::parse(&format!(
        "rtmp://{}/{}/{}",
        origin.local_addr(),
        key.app,
        key.name
    ))
    .expect("url");
    let mut publisher = RtmpClient::publish(&publish_url).await.expect("publishes");
    // Every GOP reaches the edge's viewer while the ask still hangs.
    let timeline = sample_timeline(1);
    send_gop_by_gop(&mut publisher, &timeline, &edge_recording, || {
        assert_eq!(
            tree.hanging.load(Ordering::SeqCst),
            1,
            "the ask is still unanswered"
        );
    })
    .await;
    assert_eq!(media(&edge_recording), media(&origin_recording));

    // Answered at last with the same upstream: the pull stays where it is.
    tree.release.cancel();
    wait_until("the edge asked again", || {
        tree.asks.load(Ordering::SeqCst) >= 3
    })
    .await;
    let status = edge.status(&key).expect("the edge pulls");
    assert_eq!(status.connects, 1, "{status:?}");

    drop(publisher);
    origin.shutdown().await;
}

/// A relay (C) pulling from another relay (B) is told the publish ended when B's own upstream
/// said its publisher left, and ends its publish at once (its live HLS cuts where the origin
/// did); when B's pull failed instead, C is not told: it notices the silence and fails over,
/// as it would had B died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_hears_of_a_publisher_leaving_upstream_but_not_of_its_upstreams_pull_failing() {
    use streamr_media::relay::Timeline;
    use streamr_media::server::AllowAll;

    let b_hub = RelayHub::default();
    let b = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(AllowAll),
        b_hub.clone(),
    )
    .await
    .expect("B starts");
    let c_hub = RelayHub::default();
    let c = UpstreamPuller::new(
        c_hub.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{}", b.local_addr())],
            idle_timeout: Duration::from_secs(120),
            ..UpstreamConfig::default()
        },
    );
    let tags = crate::common::sample_tags();
    for publisher_left in [true, false] {
        let key =
            StreamKey::parse("live", if publisher_left { "left" } else { "failed" }).expect("key");
        // B's pull of the stream.
        let pull = b_hub
            .publish_with(key.clone(), Timeline::Upstream)
            .expect("B pulls");
        for tag in tags.iter().filter(|tag| tag.timestamp < 3_000) {
            let kind = match tag.tag_type {
                FlvTagType::Audio => FrameKind::Audio,
                FlvTagType::Video => FrameKind::Video,
                _ => FrameKind::Metadata,
            };
            pull.send(kind, tag.timestamp, tag.data.clone());
        }
        assert!(c.ensure(&key));
        wait_until("C pulls from B", || c_hub.is_publishing(&key)).await;
        if publisher_left {
            pull.end_upstream_publish();
            wait_until("C ends its publish", || !c_hub.is_publishing(&key)).await;
        } else {
            drop(pull);
            // Well within C's stall timeout (10 s): C still holds its publish open.
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(c_hub.is_publishing(&key), "C was told the publish ended");
        }
    }
    drop(c);
    b.shutdown().await;
}
