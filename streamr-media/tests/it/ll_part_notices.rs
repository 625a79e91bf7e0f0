//! The LL-HLS part notices an origin reports to its coordinator as parts are cut: each comes
//! before the notice of its segment, and a segment's part notices are its parts in order, with
//! the hashes its segment notice lists (the shipped sample published in a loop).

use crate::common;

use std::path::Path;
use std::time::Duration;

use streamr_media::http::{LiveHlsConfig, PartNotice, SegmentNotice};
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::RtmpUrl;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_notices_precede_their_segment_and_carry_its_part_hashes() {
    let (_hub, rtmp, http) = common::start_relay_and_http(LiveHlsConfig::default()).await;
    let mut parts = http.hls().part_notices();
    let mut segments = http.hls().segment_notices();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv");
    let source = FlvSource::read(&sample).expect("the sample");
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/show", rtmp.local_addr())).expect("URL");
    let stop = CancellationToken::new();
    let options = PublishOptions::looped(stop.clone());
    let publisher = tokio::spawn(async move { publish_flv(&source, &url, &options).await });

    let mut seen: Vec<PartNotice> = Vec::new();
    let mut checked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while checked < 3 {
        let segment: SegmentNotice = tokio::select! {
            part = parts.recv() => {
                seen.push(part.expect("part notices keep up"));
                continue;
            }
            segment = segments.recv() => segment.expect("segment notices keep up"),
            _ = tokio::time::sleep_until(deadline) => panic!("only {checked} segments checked"),
        };
        // Notices sent before the segment's are in the channel already.
        while let Ok(part) = parts.try_recv() {
            seen.push(part);
        }
        let Some(ll) = &segment.ll else { continue };
        let of_segment: Vec<&PartNotice> = seen
            .iter()
            .filter(|part| part.sequence == segment.sequence)
            .collect();
        if of_segment.first().map(|part| part.index) != Some(0) {
            // The first segment may have started before this test subscribed.
            continue;
        }
        let indexes: Vec<u32> = of_segment.iter().map(|part| part.index).collect();
        let expected: Vec<u32> = (0..u32::try_from(ll.part_hashes.len()).unwrap()).collect();
        assert_eq!(indexes, expected, "segment {}", segment.sequence);
        let hashes: Vec<blake3::Hash> = of_segment.iter().map(|part| part.hash).collect();
        assert_eq!(hashes, ll.part_hashes, "segment {}", segment.sequence);
        let len: usize = of_segment.iter().map(|part| part.len).sum();
        assert_eq!(len, ll.len, "segment {}", segment.sequence);
        assert!(of_segment
            .iter()
            .all(|part| part.cut_ms > 0 && part.key.name.as_str() == "show"));
        checked += 1;
    }
    stop.cancel();
    let _ = publisher.await;
    http.shutdown().await;
    rtmp.shutdown().await;
}
