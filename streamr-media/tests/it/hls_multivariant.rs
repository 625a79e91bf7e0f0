//! The multivariant playlist of a live stream: `/{app}/{stream}/master.m3u8` lists the LL-HLS
//! and MPEG-TS renditions with the codecs their init segment and tracks carry, the picture size,
//! the frame rate and the bandwidth the listed segments took; an accepted query is carried onto
//! the variant URIs, which resolve to the renditions' playlists; ffprobe opens it.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use streamr_media::flv::{FlvReader, FlvTag};
use streamr_media::hls::{
    check_multivariant, LlEvent, LlPackager, LlPackagerConfig, Segmenter, SegmenterConfig,
};
use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::RelayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// H.264 (160x120, 25 fps, B-frames, a keyframe a second) + AAC, 10 s.
fn fixture_tags() -> Vec<FlvTag> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/media/av_bframes.flv"
    );
    FlvReader::read_all(&std::fs::read(path).unwrap())
        .unwrap()
        .1
}

/// The RFC 6381 codecs of the first init segment the LL-HLS packager makes of `tags`.
fn init_segment_codecs(tags: &[FlvTag]) -> String {
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut packager = LlPackager::new(LlPackagerConfig::default());
    for tag in tags {
        let _ = segmenter.push(tag);
        for event in packager.push(tag, segmenter.current_segment()).unwrap() {
            if let LlEvent::SegmentStarted { init, .. } = event {
                return init.codecs;
            }
        }
    }
    panic!("no init segment")
}

/// A plain HTTP/1.0 GET (no chunked body): status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, body.to_owned())
}

async fn start() -> (RelayHub, RelayServer, HttpServer) {
    let config = LiveHlsConfig::default()
        .with_segments(Duration::from_secs(1), 2)
        .with_end_timing(Duration::from_secs(30), Duration::from_secs(60));
    common::start_relay_and_http(config).await
}

/// Publishes `tags` as `live/cam`, four times faster than real time.
async fn publish(rtmp: SocketAddr, tags: Vec<FlvTag>) -> streamr_media::client::RtmpClient {
    let url = RtmpUrl::parse(&format!("rtmp://{rtmp}/live/cam")).unwrap();
    let mut client = streamr_media::client::RtmpClient::publish(&url)
        .await
        .unwrap();
    let started = Instant::now();
    for tag in tags {
        let due = Duration::from_millis(u64::from(tag.timestamp) / 4);
        tokio::time::sleep_until((started + due).into()).await;
        common::send_tag(&mut client, &tag).await;
    }
    client
}

/// Ends the publish and the HTTP server.
async fn stop(
    publisher: tokio::task::JoinHandle<streamr_media::client::RtmpClient>,
    hub: &RelayHub,
    http: HttpServer,
) {
    publisher.await.unwrap().close().await.unwrap();
    let key = StreamKey::parse("live", "cam").unwrap();
    common::wait_for_publish_end(hub, &key, Duration::from_secs(5)).await;
    http.shutdown().await;
}

/// The multivariant playlist once it lists `variants` variants.
async fn multivariant(addr: SocketAddr, path: &str, variants: usize) -> String {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = get(addr, path).await;
        if last.0 == 200 && check_multivariant(&last.1).is_ok_and(|parsed| parsed.len() == variants)
        {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no multivariant playlist with {variants} variants: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_renditions_are_listed_with_their_codecs_size_rate_and_bandwidth() {
    let tags = fixture_tags();
    let expected_codecs = init_segment_codecs(&tags);
    let (hub, rtmp, http) = start().await;
    let addr = http.local_addr();
    assert_eq!(get(addr, "/live/cam/master.m3u8").await.0, 404);
    let publisher = tokio::spawn(publish(rtmp.local_addr(), tags));

    let text = multivariant(addr, "/live/cam/master.m3u8", 2).await;
    assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"), "{text}");
    let variants = check_multivariant(&text).unwrap();
    assert_eq!(variants[0].uri, "ll.m3u8", "{text}");
    assert_eq!(variants[1].uri, "../cam.m3u8", "{text}");
    for variant in &variants {
        // CODECS is exactly what the fMP4 init segment declares (H.264 first, then AAC).
        assert_eq!(variant.codecs.join(","), expected_codecs, "{text}");
        assert!(variant.codecs[0].starts_with("avc1."), "{text}");
        assert_eq!(variant.codecs[1], "mp4a.40.2", "{text}");
        assert_eq!(variant.resolution, Some((160, 120)), "{text}");
        let rate = variant.frame_rate.expect("a frame rate");
        assert!((rate - 25.0).abs() < 0.5, "{text}");
        // 120 kbit/s video + 48 kbit/s audio, in containers.
        let average = variant.average_bandwidth.expect("an average");
        assert!(average > 50_000 && average < 1_000_000, "{text}");
        assert!(variant.bandwidth >= average, "{text}");
    }

    // The accepted query rides on the variant URIs, which name the renditions' playlists.
    let (status, with_query) = get(addr, "/live/cam/master.m3u8?token=abc").await;
    assert_eq!(status, 200);
    let uris: Vec<&str> = with_query.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["ll.m3u8?token=abc", "../cam.m3u8?token=abc"]);
    let (status, ll) = get(addr, "/live/cam/ll.m3u8?token=abc").await;
    assert_eq!(status, 200);
    assert!(ll.contains("#EXT-X-PART-INF"), "{ll}");
    let (status, ts) = get(addr, "/live/cam.m3u8?token=abc").await;
    assert_eq!(status, 200);
    assert!(ts.contains(".ts?token=abc"), "{ts}");

    stop(publisher, &hub, http).await;
}

/// What ffprobe finds in `url`: one `codec_name=…|width=…|height=…` line per stream.
async fn ffprobe(url: String) -> String {
    let probe = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args(["stream=codec_name,width,height", "-of", "compact", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let streams = String::from_utf8_lossy(&probe.stdout).into_owned();
    assert!(probe.status.success(), "{streams}");
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffprobe"]
async fn ffprobe_opens_the_multivariant_playlist() {
    common::require_tool("ffprobe");
    let (hub, rtmp, http) = start().await;
    let addr = http.local_addr();
    let publisher = tokio::spawn(publish(rtmp.local_addr(), fixture_tags()));
    multivariant(addr, "/live/cam/master.m3u8", 2).await;
    let streams = ffprobe(format!("http://{addr}/live/cam/master.m3u8")).await;
    assert!(
        streams.contains("codec_name=h264|width=160|height=120"),
        "{streams}"
    );
    assert!(streams.contains("codec_name=aac"), "{streams}");
    stop(publisher, &hub, http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg (libx265) and ffprobe"]
async fn ffprobe_opens_a_hevc_streams_multivariant_playlist() {
    common::require_tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let tags = common::enhanced::hevc_tags(dir.path());
    let (hub, rtmp, http) = start().await;
    let addr = http.local_addr();
    let publisher = tokio::spawn(publish(rtmp.local_addr(), tags));
    let text = multivariant(addr, "/live/cam/master.m3u8", 2).await;
    for variant in check_multivariant(&text).unwrap() {
        assert_eq!(variant.codecs.len(), 1, "{text}");
        assert!(variant.codecs[0].starts_with("hvc1."), "{text}");
        assert_eq!(variant.resolution, Some((320, 240)), "{text}");
    }
    let streams = ffprobe(format!("http://{addr}/live/cam/master.m3u8")).await;
    assert!(
        streams.contains("codec_name=hevc|width=320|height=240"),
        "{streams}"
    );
    stop(publisher, &hub, http).await;
}
