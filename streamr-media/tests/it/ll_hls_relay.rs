//! LL-HLS through one friend hop: ffmpeg publishes to an origin, a friend node pulls the stream
//! mid-stream over RTMP, and both cut LL-HLS from their own hubs. Every MPEG-TS segment, fMP4
//! segment and part the friend reports has the origin's hash (so receipts bound to the origin's
//! hashes cover what the friend serves): the segment it opens at the keyframe it joined at is
//! left out, and only that one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{HttpServer, LiveHlsConfig, SegmentNotice};
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::server::{AllowAll, RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_test_support::ffmpeg::ffmpeg_publish_with_b_frames;
use tokio::sync::broadcast;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config() -> LiveHlsConfig {
    LiveHlsConfig::default().with_segments(Duration::from_secs(1), 2)
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
    let origin_hub = RelayHub::default();
    let origin = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(AllowAll),
        origin_hub.clone(),
    )
    .await
    .unwrap();
    let origin_http = HttpServer::start(loopback(), origin_hub.clone(), config())
        .await
        .unwrap();
    let mut origin_notices = origin_http.hls().segment_notices();

    let friend_hub = RelayHub::default();
    let puller = UpstreamPuller::new(
        friend_hub.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{}", origin.local_addr())],
            idle_timeout: Duration::from_secs(120),
            ..UpstreamConfig::default()
        },
    );
    let friend_http = HttpServer::start(loopback(), friend_hub.clone(), config())
        .await
        .unwrap();
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
