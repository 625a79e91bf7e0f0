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

/// An RTMP server on `hub` and a free loopback port, admitting everyone.
async fn origin_on(hub: &RelayHub) -> RelayServer {
    RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(SocketAddr::from(([127, 0, 0, 1], 0))),
        Arc::new(AllowAll),
        hub.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pull_gets_the_origins_timing_and_a_player_only_the_metadata() {
    let (tags, keyframes) = crate::ll_hls::vfr_then_regular();
    let key = StreamKey::parse("live", "notices").unwrap();
    let hub = RelayHub::default();
    let origin = origin_on(&hub).await;
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

/// What a player received, in order: data messages by name, the rest by kind and timestamp.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Metadata,
    Video(u32),
    Audio(u32),
    Data { name: String, at: u32 },
}

/// Everything `client` receives until its `media`th video frame (or the deadline).
async fn record(client: &mut RtmpClient, media: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.iter().filter(|g| matches!(g, Got::Video(_))).count() < media {
        let Ok(event) = tokio::time::timeout_at(deadline, client.next_event()).await else {
            break;
        };
        match event.expect("a readable stream") {
            Some(ClientEvent::Metadata { .. }) => got.push(Got::Metadata),
            Some(ClientEvent::Media {
                kind,
                timestamp,
                payload,
            }) => got.push(match kind {
                MediaKind::Video => Got::Video(timestamp),
                MediaKind::Audio => Got::Audio(timestamp),
                _ => {
                    let values = streamr_media::amf0::decode_all(&payload).expect("AMF0");
                    let name = values.first().and_then(|v| v.as_str()).unwrap_or_default();
                    Got::Data {
                        name: name.to_owned(),
                        at: timestamp,
                    }
                }
            }),
            Some(_) => {}
            None => break,
        }
    }
    got
}

/// A publisher's data messages over RTMP: captions and cue points reach players and relays
/// alike, in order with the media and without `@setDataFrame`; a message named like a node
/// notice (`onStreamr…`) or a request to the server (`@clearDataFrame`) reaches nobody, and
/// the stream's metadata stays its `onMetaData`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_timed_data_reaches_players_and_its_node_notices_nobody() {
    use streamr_media::amf0::{encode_all, Amf0Value};
    let message = |names: &[&str]| {
        let mut values: Vec<Amf0Value> = names
            .iter()
            .map(|name| Amf0Value::String((*name).to_owned()))
            .collect();
        values.push(Amf0Value::Object(vec![(
            "text".into(),
            Amf0Value::String("caption".into()),
        )]));
        encode_all(&values).unwrap().freeze()
    };
    let hub = RelayHub::default();
    let origin = origin_on(&hub).await;
    let key = StreamKey::parse("live", "captions").unwrap();
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/captions", origin.local_addr())).unwrap();
    let mut player = RtmpClient::play(&url).await.unwrap();
    let mut relay = RtmpClient::pull(&url).await.unwrap();
    let mut own = hub.subscribe_internal(key.clone()).unwrap();

    let mut publisher = RtmpClient::publish(&url).await.unwrap();
    publisher
        .send_metadata(Amf0Value::EcmaArray(vec![(
            "width".into(),
            Amf0Value::Number(320.0),
        )]))
        .await
        .unwrap();
    let header = bytes::Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
    publisher
        .send_media(MediaKind::Video, 0, header)
        .await
        .unwrap();
    let frames = 10u32;
    for index in 0..frames {
        let at = index * 40;
        let first = if index % 5 == 0 { 0x17 } else { 0x27 };
        let frame = bytes::Bytes::from(vec![first, 1, 0, 0, 0, index as u8]);
        publisher
            .send_media(MediaKind::Video, at, frame)
            .await
            .unwrap();
        let data = match index {
            1 => Some(message(&["onTextData"])),
            3 => Some(message(&["@setDataFrame", "onCuePoint"])),
            4 => Some(message(&["onStreamrHlsTiming"])),
            5 => Some(
                HlsTiming {
                    part_target_ms: None,
                    target_duration_secs: 9,
                }
                .encode(),
            ),
            6 => Some(message(&["@setDataFrame", "onStreamrAnything"])),
            7 => Some(message(&["@clearDataFrame", "onMetaData"])),
            8 => Some(message(&["onFI"])),
            _ => None,
        };
        if let Some(data) = data {
            publisher
                .send_media(MediaKind::Data, at + 10, data)
                .await
                .unwrap();
        }
    }
    let expected = {
        // The metadata, then the video sequence header at the keyframe's timestamp.
        let mut expected = vec![Got::Metadata, Got::Video(0)];
        for index in 0..frames {
            expected.push(Got::Video(index * 40));
            let name = match index {
                1 => "onTextData",
                3 => "onCuePoint",
                8 => "onFI",
                _ => continue,
            };
            expected.push(Got::Data {
                name: name.into(),
                at: index * 40 + 10,
            });
        }
        expected
    };
    let media = frames as usize + 1;
    let (player, relay) = tokio::join!(record(&mut player, media), record(&mut relay, media));
    assert_eq!(player, expected, "the player");
    assert_eq!(relay, expected, "the relay");

    // The node's own consumers (live HLS) saw no notice either, and a subscriber joining now
    // gets the stream's onMetaData first, not a data message.
    let mut events = Vec::new();
    while own.try_recv_batch(&mut events, 64) > 0 {}
    let mut late = hub.subscribe_internal(key.clone()).unwrap();
    while late.try_recv_batch(&mut events, 64) > 0 {}
    for event in &events {
        if let streamr_media::relay::RelayEvent::Frame(frame) = event {
            assert!(!frame.is_node_notice(), "{frame:?}");
            if frame.kind() == FrameKind::Metadata {
                let values = streamr_media::amf0::decode_all(frame.payload()).unwrap();
                assert_eq!(values[0].as_str(), Some("onMetaData"));
            }
        }
    }
    drop(publisher);
    origin.shutdown().await;
}
