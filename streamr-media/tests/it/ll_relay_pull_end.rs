//! A relay whose pull ends leaves its open LL-HLS part uncut and its open MPEG-TS segment
//! unlisted: cut short there they would not be the part and segment the origin cuts (a viewer
//! would be served bytes no origin report vouches for). An origin whose publisher leaves cuts
//! and lists them, as before.

use std::time::Duration;

use streamr_media::flv::{FlvTag, FlvTagType};
use streamr_media::http::{LiveHls, LiveHlsConfig, PartNotice, SegmentNotice};
use streamr_media::relay::{FrameKind, Publisher, RelayHub, Timeline};
use streamr_media::StreamKey;
use tokio_util::sync::CancellationToken;

/// Publishes the tags up to `to_ms` (sequence headers included).
fn publish_until(publisher: &Publisher, tags: &[FlvTag], to_ms: u32) {
    for tag in tags.iter().filter(|tag| tag.timestamp < to_ms) {
        let kind = match tag.tag_type {
            FlvTagType::Audio => FrameKind::Audio,
            FlvTagType::Video => FrameKind::Video,
            _ => FrameKind::Metadata,
        };
        publisher.send(kind, tag.timestamp, tag.data.clone());
    }
}

/// What a node's live HLS announced before and after its publisher (or pull) ended.
struct AroundTheEnd {
    parts_before: Vec<PartNotice>,
    parts_after: Vec<PartNotice>,
    segments_before: Vec<SegmentNotice>,
    segments_after: Vec<SegmentNotice>,
}

/// Every segment notice `notices` holds now.
fn segments_now(
    notices: &mut tokio::sync::broadcast::Receiver<SegmentNotice>,
) -> Vec<SegmentNotice> {
    std::iter::from_fn(|| notices.try_recv().ok()).collect()
}

/// Publishes 5.1 s of the sample on `timeline`, then ends the publisher; returns the part and
/// segment notices sent before and after the end.
async fn around_the_end(timeline: Timeline) -> AroundTheEnd {
    let tags = crate::common::sample_tags();
    let hub = RelayHub::default();
    let shutdown = CancellationToken::new();
    let config = LiveHlsConfig::default()
        .with_segments(Duration::from_secs(1), 4)
        .with_end_timing(Duration::from_millis(300), Duration::from_secs(1));
    let live = LiveHls::start(hub.clone(), config, shutdown.clone());
    let mut notices = live.part_notices();
    let mut segments = live.segment_notices();
    let key = StreamKey::parse("live", "cam").expect("key");
    let publisher = hub.publish_with(key.clone(), timeline).expect("publish");
    let _ = live.playlist(&key, Duration::ZERO).await;
    publish_until(&publisher, &tags, 5_100);
    let mut parts_before = Vec::new();
    // Parts come as frames are packaged: wait until none came for a while.
    while let Ok(Ok(part)) = tokio::time::timeout(Duration::from_secs(2), notices.recv()).await {
        parts_before.push(part);
    }
    let segments_before = segments_now(&mut segments);
    drop(publisher);
    let mut parts_after = Vec::new();
    while let Ok(Ok(part)) = tokio::time::timeout(Duration::from_secs(3), notices.recv()).await {
        parts_after.push(part);
    }
    let segments_after = segments_now(&mut segments);
    shutdown.cancel();
    AroundTheEnd {
        parts_before,
        parts_after,
        segments_before,
        segments_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_pull_ends_cuts_no_part_short() {
    let around = around_the_end(Timeline::Upstream).await;
    assert!(around.parts_before.len() >= 4, "{:?}", around.parts_before);
    assert_eq!(
        around.parts_after,
        Vec::new(),
        "parts cut after the pull ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_pull_ends_lists_no_unfinished_last_segment() {
    let around = around_the_end(Timeline::Upstream).await;
    assert!(!around.segments_before.is_empty());
    assert_eq!(
        around.segments_after,
        Vec::new(),
        "segments listed after the pull ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_whose_publisher_leaves_cuts_its_open_part_and_lists_its_last_segment() {
    let around = around_the_end(Timeline::Own).await;
    assert!(around.parts_before.len() >= 4, "{:?}", around.parts_before);
    assert_eq!(around.parts_after.len(), 1, "{:?}", around.parts_after);
    let [last] = around.segments_after.as_slice() else {
        panic!("one last segment: {:?}", around.segments_after);
    };
    let before = around
        .segments_before
        .last()
        .expect("segments before the end");
    assert_eq!(last.sequence, before.sequence + 1);
    assert_eq!(
        last.start_timestamp_ms,
        before.start_timestamp_ms + before.duration_ms
    );
}

/// An origin's live HLS started after the publish's first frames (its watcher polls, a
/// playlist request starts it) still starts at the publish's first keyframe, with the GOP
/// cache on (whose GOP is by then a later one) or off.
///
/// Its first segment can close from frames published before it started: the notices are
/// subscribed to before the hub is watched ([`LiveHls::new`], then
/// [`LiveHls::start_watching`]), else the watcher's first look may cut and announce it
/// before anyone listens (which once made this test see the second segment first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origins_live_hls_started_late_starts_at_the_publishs_first_keyframe() {
    use streamr_media::relay::RelayConfig;

    let tags = crate::common::sample_tags();
    for gop_cache in [true, false] {
        let hub = RelayHub::new(RelayConfig::default().with_gop_cache(gop_cache));
        let key = StreamKey::parse("live", "late").expect("key");
        let publisher = hub.publish(key.clone()).expect("publish");
        // 3 s in: the newest keyframe is the one at 2023 ms.
        publish_until(&publisher, &tags, 3_000);
        let shutdown = CancellationToken::new();
        let config = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 4);
        let live = LiveHls::new(hub.clone(), config, shutdown.clone());
        // Time for a watcher to cut the first segment from the frames held, had it started.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut notices = live.segment_notices();
        live.start_watching();
        let _ = live.playlist(&key, Duration::ZERO).await;
        for tag in tags.iter().filter(|tag| tag.timestamp >= 3_000) {
            let kind = match tag.tag_type {
                FlvTagType::Audio => FrameKind::Audio,
                FlvTagType::Video => FrameKind::Video,
                _ => FrameKind::Metadata,
            };
            publisher.send(kind, tag.timestamp, tag.data.clone());
        }
        let first = tokio::time::timeout(Duration::from_secs(10), notices.recv())
            .await
            .expect("a segment in time")
            .expect("a segment");
        assert_eq!(first.start_timestamp_ms, 23, "GOP cache {gop_cache}");
        assert_eq!(first.sequence, 0);
        shutdown.cancel();
    }
}
