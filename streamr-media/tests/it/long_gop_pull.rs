//! A relay pulling a stream whose GOPs are longer than the viewer lag budget: the origin hands
//! its pull the cached GOP, older than the budget, and that age is not lag the pull built up,
//! so the origin does not skip it to the next keyframe (which left the relay with nothing for
//! up to a GOP, to stall and pull again).

use std::time::Duration;

use bytes::Bytes;

use streamr_media::relay::{FrameKind, Publisher, RelayHub, StreamKey};
use streamr_media::server::{RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};

use crate::common::loopback;

/// 25 fps video frames `from..to`, 40 ms apart, a keyframe every 20 s.
fn send_frames(publisher: &Publisher, from: u32, to: u32) {
    for index in from..to {
        let mut body = vec![if index % 500 == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend_from_slice(&index.to_be_bytes());
        publisher.send(FrameKind::Video, index * 40, Bytes::from(body));
    }
}

/// Waits up to 10 s for `hub` to have taken in `frames` frames of `key`; returns how many it
/// took in.
async fn frames_in(hub: &RelayHub, key: &StreamKey, frames: u64) -> u64 {
    let count = || hub.stream_stats(key).map_or(0, |stats| stats.frames_in);
    for _ in 0..100 {
        if count() >= frames {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pulling_a_gop_older_than_the_lag_budget_gets_it_whole() {
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");
    let key = StreamKey::parse("live", "longgop").expect("key");
    let publisher = origin.hub().publish(key.clone()).expect("publish");
    publisher.send(
        FrameKind::Metadata,
        0,
        Bytes::from_static(b"\x02\x00\x0aonMetaData"),
    );
    publisher.send(
        FrameKind::Video,
        0,
        Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 1]),
    );
    // 12 s into a 20 s GOP: the cached GOP is older than the default 10 s budget.
    send_frames(&publisher, 0, 300);

    let relay = RelayHub::default();
    let puller = UpstreamPuller::new(
        relay.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{}", origin.local_addr())],
            idle_timeout: Duration::from_secs(120),
            ..UpstreamConfig::default()
        },
    );
    puller.ensure(&key);
    // Metadata, the sequence header and the whole cached GOP.
    assert_eq!(frames_in(&relay, &key, 302).await, 302);
    // And the stream goes on.
    send_frames(&publisher, 300, 350);
    assert_eq!(frames_in(&relay, &key, 352).await, 352);
    let stats = origin.hub().stream_stats(&key).expect("the stream");
    assert_eq!(
        stats
            .viewers
            .iter()
            .map(|viewer| viewer.frames_dropped)
            .collect::<Vec<u64>>(),
        vec![0],
        "the relay's pull is the origin's one viewer, and lost nothing"
    );
    drop(puller);
}
