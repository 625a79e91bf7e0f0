//! A relay pulling a stream whose GOPs are longer than the viewer lag budget: the origin hands
//! its pull the cached GOP, older than the budget, and that age is not lag the pull built up,
//! so the origin does not skip it to the next keyframe (which left the relay with nothing for
//! up to a GOP, to stall and pull again), and a player of the relay that asked for the stream
//! starts on it too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use streamr_media::client::RtmpClient;
use streamr_media::relay::{FrameKind, Publisher, RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::server::{RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};

use crate::common::{loopback, PullOnPlay};

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

/// An origin publishing `key` 12 s into a 20 s GOP: its cached GOP is older than the default
/// 10 s viewer lag budget.
async fn origin_in_a_long_gop(key: &StreamKey) -> (RelayServer, Publisher) {
    let origin = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("origin starts");
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
    send_frames(&publisher, 0, 300);
    (origin, publisher)
}

/// A relay hub pulling from `origin`, and its puller.
fn relay_of(origin: &RelayServer) -> (RelayHub, UpstreamPuller) {
    let relay = RelayHub::default();
    let puller = UpstreamPuller::new(
        relay.clone(),
        UpstreamConfig {
            upstreams: vec![format!("rtmp://{}", origin.local_addr())],
            idle_timeout: Duration::from_secs(120),
            ..UpstreamConfig::default()
        },
    );
    (relay, puller)
}

/// The index a video frame carries, or `None` for a sequence header.
fn frame_index(payload: &[u8]) -> Option<u32> {
    match payload {
        [_, 1, _, _, _, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pulling_a_gop_older_than_the_lag_budget_gets_it_whole() {
    let key = StreamKey::parse("live", "longgop").expect("key");
    let (origin, publisher) = origin_in_a_long_gop(&key).await;
    let (relay, puller) = relay_of(&origin);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relays_player_asking_for_a_stream_in_a_long_gop_starts_on_its_cached_gop() {
    let key = StreamKey::parse("live", "longgop").expect("key");
    let (origin, publisher) = origin_in_a_long_gop(&key).await;
    let (hub, puller) = relay_of(&origin);
    // The player subscribes at the relay before the pull it starts delivers anything.
    let relay = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(PullOnPlay(puller)),
        hub,
    )
    .await
    .expect("relay starts");
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/longgop", relay.local_addr())).expect("url");
    let mut player = RtmpClient::play(&url)
        .await
        .expect("playing from the relay");
    let mut indices = Vec::new();
    let mut more_sent = false;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(event)) = player.next_event().await {
            if let ClientEvent::Media {
                kind: MediaKind::Video,
                payload,
                ..
            } = event
            {
                indices.extend(frame_index(&payload));
            }
            // The cached GOP came through: the stream goes on, and keeps coming.
            if indices.len() == 300 && !more_sent {
                send_frames(&publisher, 300, 350);
                more_sent = true;
            }
            if indices.len() >= 350 {
                break;
            }
        }
    })
    .await;
    assert_eq!(indices, (0..350).collect::<Vec<u32>>());
    let stats = relay.hub().stream_stats(&key).expect("the stream");
    assert_eq!(
        stats
            .viewers
            .iter()
            .map(|viewer| viewer.frames_dropped)
            .collect::<Vec<u64>>(),
        vec![0]
    );
}
