//! Node notices over RTMP: the origin's `onStreamrHlsTiming` announcement reaches a relay
//! pulling the stream (which asks for notices in its `connect`), never a player, both in the
//! configuration a joining subscriber gets first and when announced while it watches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::flv::FlvTagType;
use streamr_media::hls::HlsTiming;
use streamr_media::relay::{FrameKind, RelayHub, StreamKey};
use streamr_media::server::AllowAll;
use streamr_media::{ClientEvent, MediaKind, RelayServer, RelayServerConfig, RtmpClient, RtmpUrl};

/// What a client received before its `media`th audio or video message (or the deadline):
/// how many `onMetaData`, every other data message, how many audio and video messages.
#[derive(Debug, Default)]
struct Received {
    metadata: usize,
    other_data: Vec<bytes::Bytes>,
    media: usize,
}

async fn receive(client: &mut RtmpClient, media: usize) -> Received {
    let mut received = Received::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while received.media < media {
        let Ok(event) = tokio::time::timeout_at(deadline, client.next_event()).await else {
            break;
        };
        match event.expect("a readable stream") {
            Some(ClientEvent::Metadata { .. }) => received.metadata += 1,
            Some(ClientEvent::Media {
                kind: MediaKind::Data,
                payload,
                ..
            }) => received.other_data.push(payload),
            Some(ClientEvent::Media { .. }) => received.media += 1,
            Some(_) => {}
            None => break,
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pull_gets_the_origins_timing_and_a_player_only_the_metadata() {
    let (tags, keyframes) = crate::ll_hls::vfr_then_regular();
    let key = StreamKey::parse("live", "notices").unwrap();
    let hub = RelayHub::default();
    let origin = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(SocketAddr::from(([127, 0, 0, 1], 0))),
        Arc::new(AllowAll),
        hub.clone(),
    )
    .await
    .unwrap();
    let publisher = hub.publish(key.clone()).unwrap();
    let send = |from: usize, to: usize| {
        for tag in &tags[from..to] {
            let kind = match tag.tag_type {
                FlvTagType::Audio => FrameKind::Audio,
                FlvTagType::Video => FrameKind::Video,
                _ => FrameKind::Metadata,
            };
            publisher.send(kind, tag.timestamp, tag.data.clone());
        }
    };
    // The announcement is kept for subscribers joining later ...
    send(0, keyframes[1] + 1);
    let joined_with = HlsTiming {
        part_target_ms: Some(1_400),
        target_duration_secs: 4,
    };
    assert!(hub.announce(&key, joined_with.encode()));
    send(keyframes[1] + 1, keyframes[2]);

    let url = RtmpUrl::parse(&format!("rtmp://{}/live/notices", origin.local_addr())).unwrap();
    let mut player = RtmpClient::play(&url).await.unwrap();
    let mut relay = RtmpClient::pull(&url).await.unwrap();
    // ... and a new one reaches those watching where it is announced.
    let announced_live = HlsTiming {
        part_target_ms: None,
        target_duration_secs: 6,
    };
    assert!(hub.announce(&key, announced_live.encode()));
    send(keyframes[2], keyframes[3]);
    let media = keyframes[3] - keyframes[1] - 8;
    let (player, relay) = tokio::join!(receive(&mut player, media), receive(&mut relay, media));

    assert!(
        player.media >= media,
        "the player got {} frames",
        player.media
    );
    assert!(
        player.other_data.is_empty(),
        "the player got data messages besides onMetaData: {:?}",
        player.other_data
    );
    assert!(relay.media >= media, "the relay got {} frames", relay.media);
    let timings: Vec<Option<HlsTiming>> = relay
        .other_data
        .iter()
        .map(|payload| HlsTiming::decode(payload))
        .collect();
    assert_eq!(timings, vec![Some(joined_with), Some(announced_live)]);
    // Both got the stream's own metadata alike.
    assert!(player.metadata >= 1);
    assert_eq!(player.metadata, relay.metadata);
    drop(publisher);
    origin.shutdown().await;
}
