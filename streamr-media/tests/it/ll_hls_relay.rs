//! LL-HLS through one friend hop: ffmpeg publishes to an origin, a friend node pulls the stream
//! mid-stream over RTMP, and both cut LL-HLS from their own hubs. Every MPEG-TS segment, fMP4
//! segment and part the friend reports has the origin's hash (so receipts bound to the origin's
//! hashes cover what the friend serves): the segment it opens at the keyframe it joined at is
//! left out, and only that one. A relay cuts with the PART-TARGET and target duration the
//! origin announced, not ones it measured where it joined.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::flv::{FlvTag, FlvTagType};
use streamr_media::http::{
    HttpServer, LiveHlsConfig, LlLookup, LlRequest, PlaylistLookup, SegmentNotice,
};
use streamr_media::relay::{FrameKind, RelayHub, StreamKey};
use streamr_media::server::{AllowAll, PlayGate, RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_test_support::ffmpeg::ffmpeg_publish_with_b_frames;
use tokio::sync::broadcast;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config() -> LiveHlsConfig {
    LiveHlsConfig::default().with_segments(Duration::from_secs(1), 2)
}

/// An origin (RTMP and HTTP on its hub) and a friend node (its own hub and HTTP) with a
/// puller that pulls from the origin when asked, both cutting HLS with the same `config`.
struct OriginAndFriend {
    origin_hub: RelayHub,
    origin: RelayServer,
    origin_http: HttpServer,
    friend_hub: RelayHub,
    puller: UpstreamPuller,
    friend_http: HttpServer,
}

impl OriginAndFriend {
    async fn start(config: LiveHlsConfig) -> OriginAndFriend {
        Self::start_with(config, None).await
    }

    /// [`OriginAndFriend::start`]; with `pull_wait`, the friend's HTTP is gated as a relay
    /// node's is: a request for a stream it does not have starts the pull and waits for it
    /// up to `pull_wait`.
    async fn start_with(config: LiveHlsConfig, pull_wait: Option<Duration>) -> OriginAndFriend {
        let origin_hub = RelayHub::default();
        let origin = RelayServer::start_on_hub(
            RelayServerConfig::default().with_bind(loopback()),
            Arc::new(AllowAll),
            origin_hub.clone(),
        )
        .await
        .unwrap();
        let origin_http = HttpServer::start(loopback(), origin_hub.clone(), config.clone())
            .await
            .unwrap();
        let friend_hub = RelayHub::default();
        let puller = UpstreamPuller::new(
            friend_hub.clone(),
            UpstreamConfig {
                upstreams: vec![format!("rtmp://{}", origin.local_addr())],
                idle_timeout: Duration::from_secs(120),
                ..UpstreamConfig::default()
            },
        );
        let friend_http = match pull_wait {
            Some(wait) => {
                let gate = PlayGate::new(Arc::new(AllowAll)).with_upstream(puller.clone(), wait);
                HttpServer::start_with_gate(loopback(), friend_hub.clone(), config, gate)
                    .await
                    .unwrap()
            }
            None => HttpServer::start(loopback(), friend_hub.clone(), config)
                .await
                .unwrap(),
        };
        OriginAndFriend {
            origin_hub,
            origin,
            origin_http,
            friend_hub,
            puller,
            friend_http,
        }
    }
}

/// Every notice received until `deadline`, by start timestamp.
async fn collect(
    notices: &mut broadcast::Receiver<SegmentNotice>,
    until: tokio::time::Instant,
) -> HashMap<u64, SegmentNotice> {
    let mut out = HashMap::new();
    while let Ok(Ok(notice)) = tokio::time::timeout_at(until, notices.recv()).await {
        out.insert(notice.start_timestamp_ms, notice);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn a_friend_reports_only_the_origins_segment_and_part_hashes() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("ffmpeg").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "ffmpeg is required by this interop test but is not on PATH"
    );
    let OriginAndFriend {
        origin_hub: _origin_hub,
        origin,
        origin_http,
        friend_hub: _friend_hub,
        puller,
        friend_http,
    } = OriginAndFriend::start(config()).await;
    let mut origin_notices = origin_http.hls().segment_notices();
    let mut friend_notices = friend_http.hls().segment_notices();

    let _publisher = ffmpeg_publish_with_b_frames(
        &format!("rtmp://{}/live/cam", origin.local_addr()),
        9,
        Stdio::null(),
    );
    // The friend joins mid-stream, in the middle of a GOP.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(puller.ensure(&StreamKey::parse("live", "cam").unwrap()));

    let until = tokio::time::Instant::now() + Duration::from_secs(9);
    let (origin_segments, friend_segments) = tokio::join!(
        collect(&mut origin_notices, until),
        collect(&mut friend_notices, until)
    );
    let mut friend: Vec<&SegmentNotice> = friend_segments.values().collect();
    friend.sort_by_key(|n| n.start_timestamp_ms);
    assert!(
        friend.len() >= 3,
        "the friend cut {} segments",
        friend.len()
    );
    let mut compared = 0;
    for notice in &friend {
        let Some(at_origin) = origin_segments.get(&notice.start_timestamp_ms) else {
            continue; // the origin's last segment may close after the window
        };
        assert_eq!(
            notice.hash, at_origin.hash,
            "MPEG-TS at {} ms",
            notice.start_timestamp_ms
        );
        let (ours, theirs) = (notice.ll.as_ref().unwrap(), at_origin.ll.as_ref().unwrap());
        assert_eq!(
            ours.hash, theirs.hash,
            "fMP4 segment at {} ms",
            notice.start_timestamp_ms
        );
        assert_eq!(ours.part_hashes, theirs.part_hashes);
        compared += 1;
    }
    assert!(
        compared + 1 >= friend.len(),
        "compared {compared} of {} segments",
        friend.len()
    );
    assert!(compared >= 2, "compared {compared} segments");
    drop(puller);
    friend_http.shutdown().await;
    origin_http.shutdown().await;
    origin.shutdown().await;
}

/// Sends `tags` to `publisher` as the hub's own publisher, `pace` apart.
async fn publish(publisher: &streamr_media::relay::Publisher, tags: &[FlvTag], pace: Duration) {
    for tag in tags {
        let kind = match tag.tag_type {
            FlvTagType::Audio => FrameKind::Audio,
            FlvTagType::Video => FrameKind::Video,
            _ => FrameKind::Metadata,
        };
        publisher.send(kind, tag.timestamp, tag.data.clone());
        if tag.tag_type == FlvTagType::Video {
            tokio::time::sleep(pace).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cuts_with_the_origins_announced_timing_after_the_stream_changed() {
    // A first GOP at a variable frame rate (the origin fixes PART-TARGET 1.4 s and a target
    // duration from its 2 s GOP), then 6 s GOPs of regular 200 ms frames: the GOP the relay
    // joins at would give it other targets, had it measured them.
    let (tags, keyframes) = crate::ll_hls::vfr_then_regular();
    // What the origin fixes from its first segment (see the sans-IO twin in `ll_hls`).
    let target: u32 = 4;
    let key = StreamKey::parse("live", "vfr").unwrap();
    // 2 s segments, up to 12 s: a 6 s GOP is one segment.
    let net =
        OriginAndFriend::start(LiveHlsConfig::default().with_segments(Duration::from_secs(2), 12))
            .await;
    let mut origin_notices = net.origin_http.hls().segment_notices();
    let mut friend_notices = net.friend_http.hls().segment_notices();

    // Faster than real time: every node cuts on the stream's timestamps.
    let pace = Duration::from_millis(15);
    let publisher = net.origin_hub.publish(key.clone()).unwrap();
    publish(&publisher, &tags[..keyframes[2] + 1], pace).await;
    // The relay joins at the origin's cached GOP, the first of 200 ms frames, long after the
    // origin fixed its targets.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(net.puller.ensure(&key));
    let joined = tokio::time::Instant::now() + Duration::from_secs(5);
    while !net.friend_hub.is_publishing(&key) && tokio::time::Instant::now() < joined {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let ((), origin_segments, friend_segments) = tokio::join!(
        publish(&publisher, &tags[keyframes[2] + 1..], pace),
        collect(&mut origin_notices, until),
        collect(&mut friend_notices, until)
    );
    let mut friend: Vec<&SegmentNotice> = friend_segments.values().collect();
    friend.sort_by_key(|n| n.start_timestamp_ms);
    assert!(!friend.is_empty(), "the relay listed no segment");
    let mut compared = 0;
    let limit = u64::from(target) * 1_000 + 499;
    for notice in &friend {
        let Some(at_origin) = origin_segments.get(&notice.start_timestamp_ms) else {
            continue;
        };
        // A 6 s GOP held to the origin's target: its last 200 ms frame ends within it.
        assert!(
            notice.duration_ms <= limit && notice.duration_ms + 200 > limit,
            "{} ms",
            notice.duration_ms
        );
        assert_eq!(
            notice.hash, at_origin.hash,
            "MPEG-TS at {} ms",
            notice.start_timestamp_ms
        );
        let (ours, theirs) = (notice.ll.as_ref().unwrap(), at_origin.ll.as_ref().unwrap());
        assert!(!theirs.part_hashes.is_empty());
        assert_eq!(ours.part_hashes, theirs.part_hashes);
        assert_eq!(ours.hash, theirs.hash);
        compared += 1;
    }
    assert!(compared >= 1, "compared {compared} of {}", friend.len());
    // Both declare the origin's PART-TARGET and MPEG-TS target duration.
    for hls in [net.origin_http.hls(), net.friend_http.hls()] {
        let LlLookup::Ready(playlist) = hls
            .ll_playlist(&key, LlRequest::default(), Duration::ZERO)
            .await
        else {
            panic!("an LL-HLS playlist");
        };
        let text = String::from_utf8_lossy(&playlist);
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=1.400"), "{text}");
        assert!(
            text.contains(&format!("#EXT-X-TARGETDURATION:{target}\n")),
            "{text}"
        );
        let PlaylistLookup::Ready(ts) = hls.playlist(&key, Duration::ZERO).await else {
            panic!("an MPEG-TS playlist");
        };
        let ts = String::from_utf8_lossy(&ts);
        assert!(
            ts.contains(&format!("#EXT-X-TARGETDURATION:{target}\n")),
            "{ts}"
        );
    }
    drop(publisher);
    drop(net.puller);
    net.friend_http.shutdown().await;
    net.origin_http.shutdown().await;
    net.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_ends_its_segment_where_the_origin_does_when_the_publisher_leaves_and_returns() {
    // The publisher leaves mid-GOP (5.1 s into the sample, with a keyframe every 2 s) and
    // comes back 0.5 s later from the start of the sample, which the origin continues 100 ms
    // after its last frame: no timestamp jump tells the relay. The origin ends its open
    // segment and part where the publisher left, and starts the next after a discontinuity;
    // the relay, told by its upstream, cuts the same bytes.
    let tags = crate::common::sample_tags();
    let key = StreamKey::parse("live", "again").unwrap();
    let net = OriginAndFriend::start(config()).await;
    let mut origin_notices = net.origin_http.hls().segment_notices();
    let mut friend_notices = net.friend_http.hls().segment_notices();
    let pace = Duration::from_millis(15);
    let until_ms = |ms: u32| tags.iter().position(|t| t.timestamp >= ms).unwrap();

    let publisher = net.origin_hub.publish(key.clone()).unwrap();
    publish(&publisher, &tags[..until_ms(1_000)], pace).await;
    assert!(net.puller.ensure(&key));
    let joined = tokio::time::Instant::now() + Duration::from_secs(5);
    while !net.friend_hub.is_publishing(&key) && tokio::time::Instant::now() < joined {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(net.friend_hub.is_publishing(&key), "the relay pulls");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let run = async {
        publish(&publisher, &tags[until_ms(1_000)..until_ms(5_100)], pace).await;
        drop(publisher);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = net.origin_hub.publish(key.clone()).unwrap();
        publish(&again, &tags, pace).await;
        again
    };
    let (again, origin_segments, friend_segments) = tokio::join!(
        run,
        collect(&mut origin_notices, until),
        collect(&mut friend_notices, until)
    );
    let mut friend: Vec<&SegmentNotice> = friend_segments.values().collect();
    friend.sort_by_key(|n| n.start_timestamp_ms);
    let mut compared = Vec::new();
    for notice in &friend {
        let at_origin = origin_segments
            .get(&notice.start_timestamp_ms)
            .unwrap_or_else(|| {
                panic!(
                    "the origin cut no segment at {} ms",
                    notice.start_timestamp_ms
                )
            });
        assert_eq!(
            (notice.hash, notice.duration_ms),
            (at_origin.hash, at_origin.duration_ms),
            "MPEG-TS at {} ms",
            notice.start_timestamp_ms
        );
        let (ours, theirs) = (notice.ll.as_ref().unwrap(), at_origin.ll.as_ref().unwrap());
        assert_eq!(
            ours.part_hashes, theirs.part_hashes,
            "parts at {} ms",
            notice.start_timestamp_ms
        );
        assert_eq!(
            ours.hash, theirs.hash,
            "fMP4 at {} ms",
            notice.start_timestamp_ms
        );
        compared.push(notice.start_timestamp_ms);
    }
    // The segment the publisher left in (from the keyframe at 4023 ms) and the first one of
    // its return were both compared.
    assert!(compared.contains(&4_023), "compared {compared:?}");
    assert!(
        compared.iter().any(|ms| *ms > 5_100),
        "compared {compared:?}"
    );
    drop(again);
    drop(net.puller);
    net.friend_http.shutdown().await;
    net.origin_http.shutdown().await;
    net.origin.shutdown().await;
}

/// The FRAME-RATE of each variant in the multivariant playlist `node` serves for `key`.
async fn frame_rates(node: &HttpServer, key: &StreamKey) -> Vec<String> {
    let PlaylistLookup::Ready(master) = node.hls().multivariant(key, Duration::ZERO).await else {
        panic!("a multivariant playlist");
    };
    let text = String::from_utf8_lossy(&master).into_owned();
    let rates: Vec<String> = text
        .lines()
        .flat_map(|line| line.split(','))
        .filter_map(|attribute| attribute.strip_prefix("FRAME-RATE="))
        .map(str::to_owned)
        .collect();
    assert!(!rates.is_empty(), "{text}");
    rates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn origin_and_relay_declare_the_same_frame_rate_for_a_keyframe_on_every_frame() {
    // 30 fps with a keyframe on every frame (`-g 1`): millisecond timestamps 0, 33, 67, 100, …
    // A relay joins at the origin's newest frame; measured from there, it declared 30.001
    // where the origin declared 30.000.
    let dir = tempfile::tempdir().unwrap();
    let flv = dir.path().join("g1.flv");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=30:duration=14")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "1"])
        .args(["-f", "flv"])
        .arg(&flv)
        .status()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    assert!(status.success());
    let tags = streamr_media::flv::FlvReader::read_all(&std::fs::read(&flv).unwrap())
        .unwrap()
        .1;
    let key = StreamKey::parse("live", "g1").unwrap();
    let net = OriginAndFriend::start(config()).await;
    let publisher = net.origin_hub.publish(key.clone()).unwrap();
    // Faster than real time: every node cuts on the stream's timestamps.
    let pace = Duration::from_millis(5);
    let join_at = tags
        .iter()
        .position(|t| t.tag_type == FlvTagType::Video && t.timestamp >= 3_300)
        .unwrap();
    publish(&publisher, &tags[..join_at], pace).await;
    assert!(net.puller.ensure(&key));
    let joined = tokio::time::Instant::now() + Duration::from_secs(5);
    while !net.friend_hub.is_publishing(&key) && tokio::time::Instant::now() < joined {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&publisher, &tags[join_at..], pace).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let origin = frame_rates(&net.origin_http, &key).await;
    let friend = frame_rates(&net.friend_http, &key).await;
    assert_eq!(origin, friend);
    assert!(origin.iter().all(|rate| rate == "30.000"), "{origin:?}");
    drop(publisher);
    drop(net.puller);
    net.friend_http.shutdown().await;
    net.origin_http.shutdown().await;
    net.origin.shutdown().await;
}

/// Every URI an LL-HLS playlist names (segments, parts, init segments, preload hints).
fn ll_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines() {
        if let Some((_, rest)) = line.split_once("URI=\"") {
            if let Some((uri, _)) = rest.split_once('"') {
                uris.push(uri.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            uris.push(line.to_owned());
        }
    }
    uris
}

/// A GET of `path` on `node`: its status and body, and how long the answer took.
async fn timed_get(node: &HttpServer, path: &str) -> (u16, String, Duration) {
    let started = tokio::time::Instant::now();
    let (status, _, body) = crate::http_ll_hls::get(node.local_addr(), path).await;
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_publisher_left_a_relays_ll_playlist_ends_and_answers_at_once() {
    // A relay node pulls the stream over RTMP on a viewer's request (its HTTP gated as a
    // node's is, with a 5 s pull wait); the publisher leaves mid-GOP. Once the republish grace
    // has run out, the relay's LL-HLS playlist ends with EXT-X-ENDLIST and no preload hint as
    // the origin's does, every URI it lists is served, and neither a file request nor a
    // blocking reload for media that will never come is held: before, every request waited
    // out the pull wait for the ended pull.
    let tags = crate::common::sample_tags();
    let key = StreamKey::parse("live", "gone").unwrap();
    let grace = Duration::from_millis(1_500);
    let pull_wait = Duration::from_secs(5);
    let net = OriginAndFriend::start_with(
        config().with_end_timing(grace, Duration::from_secs(60)),
        Some(pull_wait),
    )
    .await;
    let pace = Duration::from_millis(15);
    let until_ms = |ms: u32| tags.iter().position(|t| t.timestamp >= ms).unwrap();
    let playlist = "/live/gone/ll.m3u8";

    let publisher = net.origin_hub.publish(key.clone()).unwrap();
    publish(&publisher, &tags[..until_ms(1_000)], pace).await;
    // A viewer's request starts the relay's pull.
    let _ = timed_get(&net.friend_http, playlist).await;
    assert!(net.friend_hub.is_publishing(&key), "the relay pulls");
    publish(&publisher, &tags[until_ms(1_000)..until_ms(7_100)], pace).await;
    let (status, text, _) = timed_get(&net.friend_http, playlist).await;
    assert_eq!(status, 200, "{text}");
    drop(publisher);
    // The grace, then room for the relay to end its playlist.
    tokio::time::sleep(grace + Duration::from_secs(2)).await;
    assert!(!net.friend_hub.is_publishing(&key));
    let quick = Duration::from_secs(1);
    for (name, node) in [("origin", &net.origin_http), ("relay", &net.friend_http)] {
        let (status, text, took) = timed_get(node, playlist).await;
        assert_eq!(status, 200, "{name}: {text}");
        assert!(took < quick, "{name} held its playlist for {took:?}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{name}: {text}");
        assert!(!text.contains("PRELOAD-HINT"), "{name}: {text}");
        let uris = ll_uris(&text);
        assert!(
            uris.iter().any(|uri| uri.ends_with(".m4s")),
            "{name}: {text}"
        );
        for uri in &uris {
            let (status, _, took) = timed_get(node, &format!("/live/gone/{uri}")).await;
            assert_eq!(
                status, 200,
                "{name} lists {uri} but answers {status}:\n{text}"
            );
            assert!(took < quick, "{name} held {uri} for {took:?}");
        }
        let last = uris
            .iter()
            .filter_map(|uri| uri.strip_suffix(".m4s"))
            .filter(|stem| !stem.contains('.'))
            .filter_map(|stem| stem.parse::<u64>().ok())
            .max()
            .unwrap_or_else(|| panic!("{name} lists no segment: {text}"));
        // A blocking reload for the next segment's first part, which never comes: answered
        // at once with the ended playlist.
        let (status, body, took) = timed_get(
            node,
            &format!("{playlist}?_HLS_msn={}&_HLS_part=0", last + 1),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, text.as_str()), "{name}");
        assert!(took < quick, "{name} held a blocking reload for {took:?}");
        // So is a request for that part.
        let (status, _, took) = timed_get(node, &format!("/live/gone/{}.0.m4s", last + 1)).await;
        assert_eq!(status, 404, "{name} served a part never cut");
        assert!(took < quick, "{name} held a part request for {took:?}");
    }
    drop(net.puller);
    net.friend_http.shutdown().await;
    net.origin_http.shutdown().await;
    net.origin.shutdown().await;
}
