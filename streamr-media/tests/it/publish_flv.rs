//! The real-time FLV publisher against the relay server: the shipped sample loops with a
//! continuous timeline, a player receives the same frames in every pass, and stopping ends the
//! stream politely.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use streamr_media::amf0::Amf0Value;
use streamr_media::client::RtmpClient;
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::{RelayServer, RelayServerConfig};
use tokio_util::sync::CancellationToken;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/sample.flv");

#[test]
fn the_shipped_sample_is_small_and_about_ten_seconds() {
    let source = FlvSource::read(SAMPLE.as_ref()).expect("the shipped sample parses");
    let bytes = std::fs::metadata(SAMPLE).expect("sample exists").len();
    assert!(bytes < 1_000_000, "sample is {bytes} bytes");
    let seconds = source.loop_duration().as_secs_f64();
    assert!((9.0..=11.0).contains(&seconds), "loop lasts {seconds} s");
    assert!(source.tag_count() > 250, "{} tags", source.tag_count());
    let kbps = source.bitrate_bps() / 1000;
    assert!((100..1_000).contains(&kbps), "{kbps} kbit/s");
}

#[test]
fn garbage_is_refused_with_the_reason() {
    let error = FlvSource::parse(b"not an flv file at all").expect_err("garbage is refused");
    assert!(error.to_string().contains("FLV bytes"), "{error}");
    let missing = FlvSource::read("/nonexistent/sample.flv".as_ref()).expect_err("no file");
    assert!(
        missing.to_string().contains("/nonexistent/sample.flv"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looped_sample_keeps_a_continuous_timeline_with_identical_passes() {
    let server = RelayServer::start(
        RelayServerConfig::default().with_bind("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("relay server starts");
    let url =
        RtmpUrl::parse(&format!("rtmp://{}/live/sample", server.local_addr())).expect("valid URL");
    let source = FlvSource::read(SAMPLE.as_ref()).expect("the shipped sample parses");
    let loop_ms = u32::try_from(source.loop_duration().as_millis()).expect("short loop");

    let stop = CancellationToken::new();
    let options = PublishOptions::looped(stop.clone()).with_start_time_field("startedAtMs");
    let publisher = {
        let source = source.clone();
        let url = url.clone();
        tokio::spawn(async move { publish_flv(&source, &url, &options).await })
    };

    // The player joins once the stream exists.
    let mut player = None;
    for _ in 0..50 {
        match RtmpClient::play(&url).await {
            Ok(client) => {
                player = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut player = player.expect("the published stream can be played");

    // Video frames by timestamp, until the second pass has gone on for two seconds.
    let mut video: HashMap<u32, Bytes> = HashMap::new();
    let mut last_video_ts = None;
    let mut saw_start_time = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, player.next_event())
            .await
            .expect("frames keep coming")
            .expect("the connection stays healthy")
            .expect("the stream does not end while publishing");
        match event {
            ClientEvent::Media {
                kind: MediaKind::Video,
                timestamp,
                payload,
            } => {
                if let Some(last) = last_video_ts {
                    assert!(
                        timestamp >= last,
                        "video went back from {last} to {timestamp}"
                    );
                }
                last_video_ts = Some(timestamp);
                video.insert(timestamp, payload);
                if timestamp > loop_ms + 2_000 {
                    break;
                }
            }
            ClientEvent::Metadata { metadata, .. } => {
                saw_start_time |= matches!(
                    metadata.property("startedAtMs"),
                    Some(Amf0Value::Number(ms)) if *ms > 1.0e12
                );
            }
            _ => {}
        }
    }
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(10), publisher)
        .await
        .expect("the publisher stops when asked")
        .expect("publisher task")
        .expect("publish succeeded");
    assert_eq!(report.loops_completed, 1, "{report:?}");
    assert!(report.tags_sent > source.tag_count() as u64, "{report:?}");
    assert!(saw_start_time, "the start time field reached the player");

    // Every second-pass frame repeats the first-pass frame one loop earlier.
    let repeated: Vec<u32> = video.keys().copied().filter(|ts| *ts >= loop_ms).collect();
    assert!(repeated.len() > 25, "{} second-pass frames", repeated.len());
    let mut compared = 0;
    for ts in repeated {
        if let Some(first) = video.get(&(ts - loop_ms)) {
            assert_eq!(
                &video[&ts], first,
                "frame at {ts} ms differs from one loop earlier"
            );
            compared += 1;
        }
    }
    assert!(
        compared > 25,
        "only {compared} frames compared across passes"
    );
    server.shutdown().await;
}
