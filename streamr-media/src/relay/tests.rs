//! Behaviour of the hub as viewers see it: start on a keyframe after sequence headers, bounded lag
//! with counted drops of whole GOP tails only, republish, and every frame for fast viewers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn key() -> StreamKey {
    StreamKey::parse("live", "test").unwrap()
}

/// A media payload carrying `index` after its FLV header so tests can follow it.
fn video(index: u32, keyframe: bool, size: usize) -> Bytes {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend_from_slice(&index.to_be_bytes());
    body.resize(body.len().max(size), 0);
    Bytes::from(body)
}

fn audio(index: u32) -> Bytes {
    let mut body = vec![0xAF, 1];
    body.extend_from_slice(&index.to_be_bytes());
    Bytes::from(body)
}

fn video_header(version: u8) -> Bytes {
    Bytes::from(vec![0x17, 0, 0, 0, 0, 1, 0x64, version])
}

fn audio_header() -> Bytes {
    Bytes::from_static(&[0xAF, 0, 0x12, 0x10])
}

/// What a viewer saw, simplified for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Metadata,
    /// An `onStreamrHlsTiming` message.
    Timing,
    VideoHeader(u8),
    AudioHeader,
    Media {
        index: u32,
        keyframe: bool,
    },
    /// A timed data message: its name and timestamp.
    Data {
        name: String,
        at: u32,
    },
    Started,
    Ended,
}

fn seen(event: &RelayEvent) -> Seen {
    match event {
        RelayEvent::PublisherStarted => Seen::Started,
        RelayEvent::PublisherEnded => Seen::Ended,
        RelayEvent::Frame(frame) => {
            let payload = frame.payload();
            match frame.kind() {
                FrameKind::Metadata if crate::hls::is_timing_message(payload) => Seen::Timing,
                FrameKind::Metadata => Seen::Metadata,
                FrameKind::Data => Seen::Data {
                    name: frame::data_message_name(payload)
                        .map(|name| String::from_utf8_lossy(name).into_owned())
                        .unwrap_or_default(),
                    at: frame.timestamp(),
                },
                FrameKind::Video if frame.is_sequence_header() => {
                    Seen::VideoHeader(payload.last().copied().unwrap_or_default())
                }
                FrameKind::Audio if frame.is_sequence_header() => Seen::AudioHeader,
                kind => {
                    let offset = if kind == FrameKind::Video { 5 } else { 2 };
                    let index = payload
                        .get(offset..offset + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes)
                        .unwrap_or(u32::MAX);
                    Seen::Media {
                        index,
                        keyframe: frame.is_video_keyframe(),
                    }
                }
            }
        }
    }
}

fn drain(viewer: &mut Subscription) -> Vec<Seen> {
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    events.iter().map(seen).collect()
}

fn start_publish(hub: &RelayHub, version: u8) -> Publisher {
    let publisher = hub.publish(key()).expect("key is free");
    publisher.send(
        FrameKind::Metadata,
        0,
        Bytes::from_static(b"\x02\x00\x0aonMetaData"),
    );
    publisher.send(FrameKind::Video, 0, video_header(version));
    publisher.send(FrameKind::Audio, 0, audio_header());
    publisher
}

#[test]
fn late_viewer_gets_headers_then_the_cached_gop_from_its_keyframe() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    publisher.send(FrameKind::Video, 80, video(2, true, 0));
    publisher.send(FrameKind::Audio, 90, audio(3));
    publisher.send(FrameKind::Video, 120, video(4, false, 0));

    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut viewer),
        vec![
            Seen::Metadata,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            Seen::Media {
                index: 2,
                keyframe: true
            },
            Seen::Media {
                index: 3,
                keyframe: false
            },
            Seen::Media {
                index: 4,
                keyframe: false
            },
        ]
    );
}

#[test]
fn an_announced_timing_reaches_relays_now_and_later_beside_the_metadata() {
    let hub = RelayHub::default();
    let timing = crate::hls::HlsTiming {
        part_target_ms: Some(1_400),
        target_duration_secs: 4,
    };
    assert!(!hub.announce(&key(), timing.encode()), "nobody publishes");
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    // A relay pulling the stream, which asked for node notices.
    let mut early = hub.subscribe(key()).unwrap();
    early.set_node_notices(true);
    drain(&mut early);
    assert!(hub.announce(&key(), timing.encode()));
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    // A viewer watching gets it where it was announced, at the newest timestamp relayed.
    assert_eq!(
        drain(&mut early),
        vec![
            Seen::Timing,
            Seen::Media {
                index: 1,
                keyframe: false
            }
        ]
    );
    // One joining later gets it before its first frame, and keeps the onMetaData.
    publisher.send(FrameKind::Video, 80, video(2, true, 0));
    let mut late = hub.subscribe(key()).unwrap();
    late.set_node_notices(true);
    let mut events = Vec::new();
    while late.try_recv_batch(&mut events, 64) > 0 {}
    let timing_frame = events.iter().find_map(|event| match event {
        RelayEvent::Frame(frame) if crate::hls::is_timing_message(frame.payload()) => {
            Some(frame.clone())
        }
        _ => None,
    });
    assert_eq!(
        events.iter().map(seen).collect::<Vec<_>>(),
        vec![
            Seen::Metadata,
            Seen::Timing,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            Seen::Media {
                index: 2,
                keyframe: true
            },
        ]
    );
    let timing_frame = timing_frame.expect("the timing");
    assert_eq!(timing_frame.timestamp(), 0);
    assert_eq!(
        crate::hls::HlsTiming::decode(timing_frame.payload()),
        Some(timing)
    );
    // A new publish starts without it.
    drop(publisher);
    let publisher = start_publish(&hub, 2);
    publisher.send(FrameKind::Video, 0, video(3, true, 0));
    let mut next = hub.subscribe(key()).unwrap();
    next.set_node_notices(true);
    assert!(!drain(&mut next).contains(&Seen::Timing));
}

#[test]
fn players_never_get_an_announced_timing_and_the_nodes_own_consumers_do() {
    let hub = RelayHub::default();
    let timing = crate::hls::HlsTiming {
        part_target_ms: Some(1_400),
        target_duration_secs: 4,
    };
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut watching = hub.subscribe(key()).unwrap();
    assert!(!watching.gets_node_notices());
    let mut own = hub.subscribe_internal(key()).unwrap();
    assert!(own.gets_node_notices());
    drain(&mut watching);
    drain(&mut own);
    assert!(hub.announce(&key(), timing.encode()));
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    let next = Seen::Media {
        index: 1,
        keyframe: false,
    };
    // Announced while they watch.
    assert_eq!(drain(&mut watching), vec![next.clone()]);
    assert_eq!(drain(&mut own), vec![Seen::Timing, next]);
    // Kept for later subscribers: a player gets the metadata and headers without it.
    publisher.send(FrameKind::Video, 80, video(2, true, 0));
    let first = Seen::Media {
        index: 2,
        keyframe: true,
    };
    let mut joining = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut joining),
        vec![
            Seen::Metadata,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            first.clone()
        ]
    );
    let mut own_later = hub.subscribe_internal(key()).unwrap();
    assert_eq!(
        drain(&mut own_later),
        vec![
            Seen::Metadata,
            Seen::Timing,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            first
        ]
    );
    // The player's counts leave the notice out: neither delivered nor dropped.
    let delivered = watching.stats();
    assert_eq!((delivered.frames_out, delivered.frames_dropped), (5, 0));
}

/// A data message `name` as a publisher sends it (with `@setDataFrame` when `set_data_frame`).
fn data_message(set_data_frame: bool, name: &str) -> Bytes {
    super::frame::test_data_message(set_data_frame, name, "hello")
}

fn data(name: &str, at: u32) -> Seen {
    Seen::Data {
        name: name.into(),
        at,
    }
}

fn media(index: u32, keyframe: bool) -> Seen {
    Seen::Media { index, keyframe }
}

#[test]
fn timed_data_reaches_viewers_live_in_order_and_never_becomes_the_metadata() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut watching = hub.subscribe(key()).unwrap();
    drain(&mut watching);
    publisher.send(FrameKind::Data, 20, data_message(false, "onCuePoint"));
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    publisher.send(FrameKind::Data, 60, data_message(false, "onTextData"));
    publisher.send(FrameKind::Audio, 70, audio(2));
    assert_eq!(
        drain(&mut watching),
        vec![
            data("onCuePoint", 20),
            media(1, false),
            data("onTextData", 60),
            media(2, false),
        ]
    );

    // A viewer joining later gets the stream's onMetaData, not the cue point, and the data
    // messages relayed since its keyframe, in order: none from before it.
    publisher.send(FrameKind::Video, 80, video(3, true, 0));
    publisher.send(FrameKind::Data, 90, data_message(false, "onCaption"));
    publisher.send(FrameKind::Video, 120, video(4, false, 0));
    let mut joining = hub.subscribe(key()).unwrap();
    let mut events = Vec::new();
    while joining.try_recv_batch(&mut events, 64) > 0 {}
    assert_eq!(
        events.iter().map(seen).collect::<Vec<_>>(),
        vec![
            Seen::Metadata,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            media(3, true),
            data("onCaption", 90),
            media(4, false),
        ]
    );
    let RelayEvent::Frame(metadata) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(&metadata.payload()[..], b"\x02\x00\x0aonMetaData");
    assert_eq!(
        drain(&mut watching),
        vec![media(3, true), data("onCaption", 90), media(4, false)]
    );

    // The same after a republish: a data message first in a publish is no metadata either,
    // and its timestamp is rebased like the media's.
    drop(publisher);
    let publisher = hub.publish(key()).unwrap();
    publisher.send(FrameKind::Data, 0, data_message(false, "onCuePoint"));
    publisher.send(FrameKind::Video, 0, video_header(2));
    publisher.send(FrameKind::Video, 0, video(5, true, 0));
    let seen_after = drain(&mut watching);
    assert_eq!(
        seen_after,
        vec![
            Seen::Ended,
            Seen::Started,
            Seen::VideoHeader(2),
            media(5, true),
        ],
        "the data message before the first keyframe is not a start"
    );
    let mut joining = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut joining),
        vec![Seen::VideoHeader(2), media(5, true)],
        "no metadata: the new publisher sent none"
    );
    publisher.send(FrameKind::Data, 40, data_message(false, "onCuePoint"));
    assert_eq!(
        drain(&mut joining),
        vec![data("onCuePoint", 120 + 100 + 40)]
    );
}

#[test]
fn a_lagging_viewer_skips_the_timed_data_among_the_frames_it_skips() {
    let config = RelayConfig::default().with_viewer_max_lag(1_000, Duration::from_secs(10));
    let hub = RelayHub::new(config);
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut lagging = hub.subscribe(key()).unwrap();
    drain(&mut lagging);
    // More than the byte budget behind: the viewer skips to the next keyframe and the data
    // message between goes with the frames it skips, counted as dropped.
    publisher.send(FrameKind::Video, 40, video(1, false, 800));
    publisher.send(FrameKind::Data, 50, data_message(false, "onCuePoint"));
    publisher.send(FrameKind::Video, 80, video(2, true, 400));
    publisher.send(FrameKind::Data, 90, data_message(false, "onTextData"));
    publisher.send(FrameKind::Video, 120, video(3, false, 100));
    let seen = drain(&mut lagging);
    assert_eq!(
        seen,
        vec![
            Seen::Metadata,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            media(2, true),
            data("onTextData", 90),
            media(3, false),
        ]
    );
    assert_eq!(lagging.stats().frames_dropped, 2);
}

/// Sends 25 fps video frames `from..to` (40 ms apart, index = frame number) with a keyframe
/// every `gop` frames.
fn send_frames(publisher: &Publisher, from: u32, to: u32, gop: u32) {
    for index in from..to {
        publisher.send(
            FrameKind::Video,
            index * 40,
            video(index, index % gop == 0, 100),
        );
    }
}

/// The media indices among `seen`.
fn media_indices(seen: &[Seen]) -> Vec<u32> {
    seen.iter()
        .filter_map(|seen| match seen {
            Seen::Media { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

#[test]
fn a_viewer_joining_a_gop_older_than_the_lag_budget_that_keeps_up_is_never_skipped() {
    // 20 s GOPs and the default 10 s budget: the cached GOP is 12 s old at subscribe time.
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    send_frames(&publisher, 0, 300, 500);
    let mut viewer = hub.subscribe(key()).unwrap();
    let mut indices = media_indices(&drain(&mut viewer));
    // It keeps up from there on, reading every second, across two more keyframes.
    for second in 12..45 {
        send_frames(&publisher, second * 25, (second + 1) * 25, 500);
        indices.extend(media_indices(&drain(&mut viewer)));
    }
    assert_eq!(indices, (0..45 * 25).collect::<Vec<u32>>());
    assert_eq!(viewer.stats().frames_dropped, 0);
}

#[test]
fn a_viewer_waiting_when_a_pull_delivers_a_gop_older_than_the_budget_starts_on_it() {
    // A relay's player subscribes before the pull delivers anything; the pull then hands over
    // the origin's cached GOP, 12 s old, in one go.
    let hub = RelayHub::default();
    let publisher = hub
        .publish_with(key(), Timeline::Upstream)
        .expect("key is free");
    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(drain(&mut viewer), Vec::new());
    publisher.send(
        FrameKind::Metadata,
        0,
        Bytes::from_static(b"\x02\x00\x0aonMetaData"),
    );
    publisher.send(FrameKind::Video, 0, video_header(1));
    send_frames(&publisher, 0, 300, 500);
    let mut indices = media_indices(&drain(&mut viewer));
    for second in 12..45 {
        send_frames(&publisher, second * 25, (second + 1) * 25, 500);
        indices.extend(media_indices(&drain(&mut viewer)));
    }
    assert_eq!(indices, (0..45 * 25).collect::<Vec<u32>>());
    assert_eq!(viewer.stats().frames_dropped, 0);
}

#[test]
fn a_viewer_joining_an_old_gop_that_then_falls_behind_the_budget_still_skips() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    send_frames(&publisher, 0, 300, 500);
    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(
        media_indices(&drain(&mut viewer)),
        (0..300).collect::<Vec<u32>>()
    );
    // Caught up at 12 s, then it reads nothing for 11 s: that lag is its own, over the budget,
    // so it skips what is left of the old GOP to the keyframe at 20 s.
    send_frames(&publisher, 300, 575, 500);
    assert_eq!(
        media_indices(&drain(&mut viewer)),
        (500..575).collect::<Vec<u32>>()
    );
    assert_eq!(viewer.stats().frames_dropped, 200);
    // Then it keeps up again.
    send_frames(&publisher, 575, 625, 500);
    assert_eq!(
        media_indices(&drain(&mut viewer)),
        (575..625).collect::<Vec<u32>>()
    );
}

#[test]
fn a_publishers_node_notices_never_reach_players_relays_or_the_nodes_own_consumers() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut player = hub.subscribe(key()).unwrap();
    let mut relay = hub.subscribe(key()).unwrap();
    relay.set_node_notices(true);
    let mut own = hub.subscribe_internal(key()).unwrap();
    for viewer in [&mut player, &mut relay, &mut own] {
        drain(viewer);
    }
    let timing = crate::hls::HlsTiming {
        part_target_ms: None,
        target_duration_secs: 9,
    };
    publisher.send(FrameKind::Data, 10, timing.encode());
    publisher.send(FrameKind::Data, 20, data_message(true, "onStreamrAnything"));
    publisher.send(
        FrameKind::Data,
        30,
        data_message(false, "onStreamrHlsTiming"),
    );
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    for viewer in [&mut player, &mut relay, &mut own] {
        assert_eq!(drain(viewer), vec![media(1, false)]);
    }
    // Nor are they kept for later subscribers.
    let mut later = hub.subscribe_internal(key()).unwrap();
    assert!(!drain(&mut later).contains(&Seen::Timing));
    assert_eq!(hub.stream_stats(&key()).unwrap().frames_in, 5);
}

#[test]
fn a_late_viewers_headers_carry_the_timestamp_of_its_first_keyframe() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    publisher.send(FrameKind::Video, 2_000, video(1, true, 0));
    publisher.send(FrameKind::Video, 2_040, video(2, false, 0));
    let mut viewer = hub.subscribe(key()).unwrap();
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    let timestamps: Vec<(Seen, u32)> = events
        .iter()
        .filter_map(|event| match event {
            RelayEvent::Frame(frame) => Some((seen(event), frame.timestamp())),
            _ => None,
        })
        .collect();
    assert_eq!(
        timestamps,
        vec![
            (Seen::Metadata, 0),
            (Seen::VideoHeader(1), 2_000),
            (Seen::AudioHeader, 2_000),
            (
                Seen::Media {
                    index: 1,
                    keyframe: true
                },
                2_000
            ),
            (
                Seen::Media {
                    index: 2,
                    keyframe: false
                },
                2_040
            ),
        ]
    );
}

#[test]
fn a_publishers_backlog_after_a_stall_reaches_internal_consumers_whole() {
    let hub =
        RelayHub::new(RelayConfig::default().with_viewer_max_lag(1 << 20, Duration::from_secs(2)));
    let publisher = start_publish(&hub, 1);
    let mut hls = hub.subscribe_internal(key()).unwrap();
    let mut viewer = hub.subscribe(key()).unwrap();
    let mut index = 0u32;
    let mut send_seconds = |from: u32, seconds: u32| {
        for frame in 0..seconds * 25 {
            let timestamp = (from * 25 + frame) * 40;
            publisher.send(
                FrameKind::Video,
                timestamp,
                video(index, frame % 25 == 0, 100),
            );
            index += 1;
        }
    };
    // Live for 2 s, read as it comes.
    send_seconds(0, 2);
    assert_eq!(drain(&mut hls).len(), 3 + 50);
    drain(&mut viewer);
    // The encoder stalls, then delivers 10 s of backlog at once.
    send_seconds(2, 10);
    let backlog: Vec<u32> = drain(&mut hls)
        .into_iter()
        .filter_map(|seen| match seen {
            Seen::Media { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(
        backlog,
        (50..300).collect::<Vec<_>>(),
        "HLS gets the whole backlog"
    );
    let seen_by_viewer = drain(&mut viewer)
        .into_iter()
        .filter(|seen| matches!(seen, Seen::Media { .. }))
        .count();
    assert!(seen_by_viewer < 250, "the live viewer skipped ahead");
    let stats = hub.stream_stats(&key()).unwrap();
    assert!(stats.viewers[0].frames_dropped > 0);
}

#[test]
fn without_gop_cache_a_late_viewer_waits_for_the_next_keyframe() {
    let hub = RelayHub::new(RelayConfig::default().with_gop_cache(false));
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut viewer = hub.subscribe(key()).unwrap();
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    assert_eq!(drain(&mut viewer), vec![]);
    publisher.send(FrameKind::Video, 80, video(2, true, 0));
    let events = drain(&mut viewer);
    assert_eq!(
        events.last(),
        Some(&Seen::Media {
            index: 2,
            keyframe: true
        })
    );
    assert_eq!(events.first(), Some(&Seen::Metadata));
    let stats = hub.stream_stats(&key()).unwrap();
    assert_eq!(stats.viewers[0].frames_dropped, 0, "joining is not a drop");
}

#[test]
fn second_publisher_on_a_busy_key_is_rejected_and_the_key_frees_on_drop() {
    let hub = RelayHub::default();
    let first = hub.publish(key()).unwrap();
    assert_eq!(
        hub.publish(key()).unwrap_err(),
        RelayError::StreamBusy { key: key() }
    );
    drop(first);
    assert!(hub.publish(key()).is_ok());
}

#[test]
fn republish_resumes_viewers_with_the_new_sequence_headers_and_later_timestamps() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 5000, video(0, true, 0));
    let first = drain(&mut viewer);
    assert_eq!(first.first(), Some(&Seen::Started));
    drop(publisher);
    assert_eq!(drain(&mut viewer), vec![Seen::Ended]);
    assert!(!viewer.is_live());

    let publisher = start_publish(&hub, 2);
    publisher.send(FrameKind::Video, 0, video(1, true, 0));
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    let summary: Vec<_> = events.iter().map(seen).collect();
    assert_eq!(
        summary,
        vec![
            Seen::Started,
            Seen::Metadata,
            Seen::VideoHeader(2),
            Seen::AudioHeader,
            Seen::Media {
                index: 1,
                keyframe: true
            }
        ]
    );
    let Some(RelayEvent::Frame(keyframe)) = events.last() else {
        panic!("last event is the keyframe");
    };
    assert!(
        keyframe.timestamp() > 5000,
        "timeline continues after a republish"
    );
}

#[test]
fn a_data_message_stamped_far_ahead_does_not_carry_a_republish_with_it() {
    // A cue point an hour ahead of the media (an encoder's bug) is relayed as stamped, but the
    // next publisher's timeline continues just after the media, not after the cue point.
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 5000, video(0, true, 0));
    let mut viewer = hub.subscribe(key()).unwrap();
    drain(&mut viewer);
    publisher.send(
        FrameKind::Data,
        3_605_000,
        data_message(false, "onCuePoint"),
    );
    assert_eq!(drain(&mut viewer), vec![data("onCuePoint", 3_605_000)]);
    drop(publisher);
    assert_eq!(drain(&mut viewer), vec![Seen::Ended]);

    let publisher = start_publish(&hub, 2);
    publisher.send(FrameKind::Video, 0, video(1, true, 0));
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    let Some(RelayEvent::Frame(keyframe)) = events.last() else {
        panic!("last event is the keyframe: {events:?}");
    };
    assert!(
        (5000..=5000 + 10_000 + 1000).contains(&keyframe.timestamp()),
        "the republish continues after the media and at most the lead: {}",
        keyframe.timestamp()
    );
}

#[test]
fn stalled_viewer_skips_to_a_keyframe_and_counts_the_drop_while_a_fast_one_gets_everything() {
    let config = RelayConfig::default().with_viewer_max_lag(10_000, Duration::from_secs(60));
    let hub = RelayHub::new(config);
    let publisher = start_publish(&hub, 1);
    let mut stalled = hub.subscribe(key()).unwrap();
    let mut fast = hub.subscribe(key()).unwrap();
    let mut fast_seen = Vec::new();
    // 6 GOPs of 10 frames of 500 bytes: 30 kB, three times the stalled viewer's budget.
    for index in 0..60u32 {
        let payload = video(index, index % 10 == 0, 500);
        publisher.send(FrameKind::Video, index * 40, payload);
        fast_seen.extend(drain(&mut fast));
    }
    let media: Vec<u32> = fast_seen
        .iter()
        .filter_map(|s| match s {
            Seen::Media { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(media, (0..60).collect::<Vec<_>>());

    let stalled_seen = drain(&mut stalled);
    assert_eq!(
        &stalled_seen[..4],
        &[
            Seen::Metadata,
            Seen::VideoHeader(1),
            Seen::AudioHeader,
            Seen::Media {
                index: 50,
                keyframe: true
            }
        ]
    );
    assert_eq!(stalled_seen.len(), 13);
    let stats = hub.stream_stats(&key()).unwrap();
    let stalled_stats = stats.viewers.iter().find(|v| v.id == stalled.id()).unwrap();
    assert_eq!(stalled_stats.frames_dropped, 50, "five whole GOPs");
    let fast_stats = stats.viewers.iter().find(|v| v.id == fast.id()).unwrap();
    assert_eq!(fast_stats.frames_dropped, 0);
    assert_eq!(fast_stats.frames_out, 63);
    assert_eq!(stats.frames_in, 63);
    drop(stalled);
    let after = hub.stream_stats(&key()).unwrap();
    assert_eq!(after.viewers.len(), 1);
    assert_eq!(
        after.delivered.frames_out,
        63 + 13,
        "departed viewers still count"
    );
    assert_eq!(after.delivered.frames_dropped, 50);
}

#[test]
fn audio_only_streams_start_viewers_on_any_audio_frame() {
    let hub = RelayHub::default();
    let publisher = hub.publish(key()).unwrap();
    publisher.send(FrameKind::Audio, 0, audio_header());
    publisher.send(FrameKind::Audio, 0, audio(0));
    publisher.send(FrameKind::Audio, 23, audio(1));
    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut viewer),
        vec![
            Seen::AudioHeader,
            Seen::Media {
                index: 1,
                keyframe: false
            }
        ]
    );
}

#[test]
fn frames_are_shared_not_copied_per_viewer() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    let mut a = hub.subscribe(key()).unwrap();
    let mut b = hub.subscribe(key()).unwrap();
    publisher.send(FrameKind::Video, 0, video(0, true, 1000));
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    a.try_recv_batch(&mut ea, 64);
    b.try_recv_batch(&mut eb, 64);
    match (ea.last(), eb.last()) {
        (Some(RelayEvent::Frame(fa)), Some(RelayEvent::Frame(fb))) => {
            assert!(Arc::ptr_eq(fa, fb));
        }
        other => panic!("both viewers get the keyframe, got {other:?}"),
    }
}

#[test]
fn idle_streams_are_forgotten() {
    let hub = RelayHub::default();
    let viewer = hub.subscribe(key()).unwrap();
    assert!(hub.stream_stats(&key()).is_some());
    drop(viewer);
    assert!(hub.stream_stats(&key()).is_none());
}

#[tokio::test]
async fn recv_wakes_when_the_publisher_sends() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    let mut viewer = hub.subscribe(key()).unwrap();
    let task = tokio::spawn(async move {
        let mut events = Vec::new();
        while events.len() < 4 {
            viewer.recv_batch(&mut events, 64).await;
        }
        events.len()
    });
    tokio::task::yield_now().await;
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    assert_eq!(task.await.unwrap(), 4);
}

/// Counts the wake-ups of the task it stands for.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn appended_frames_wake_waiting_viewers_only_on_notify() {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut viewer).len(),
        4,
        "headers and the cached keyframe"
    );

    let wakes = Arc::new(CountingWaker(Default::default()));
    let waker = Waker::from(wakes.clone());
    let mut context = Context::from_waker(&waker);
    let mut events = Vec::new();
    {
        let mut recv = std::pin::pin!(viewer.recv_batch(&mut events, 64));
        assert!(recv.as_mut().poll(&mut context).is_pending());
        publisher.append(FrameKind::Audio, 10, audio(1));
        publisher.append(FrameKind::Video, 33, video(2, false, 0));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "append does not wake");
        publisher.notify();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "one wake for the batch");
        assert_eq!(recv.as_mut().poll(&mut context), Poll::Ready(2));
    }
    let seen: Vec<Seen> = events.iter().map(seen).collect();
    assert_eq!(
        seen,
        [
            Seen::Media {
                index: 1,
                keyframe: false
            },
            Seen::Media {
                index: 2,
                keyframe: false
            }
        ]
    );
}

#[test]
fn batched_sends_wake_viewers_once_per_batch_at_a_video_frame_or_the_cap() {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};
    use std::time::Instant;

    let delay = Duration::from_millis(100);
    let max_delay = Duration::from_millis(150);
    let hub = RelayHub::new(RelayConfig::default().with_batch(BatchPolicy::new(delay, max_delay)));
    let mut publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let mut viewer = hub.subscribe(key()).unwrap();
    assert_eq!(
        drain(&mut viewer).len(),
        4,
        "headers and the cached keyframe"
    );

    let wakes = Arc::new(CountingWaker(Default::default()));
    let waker = Waker::from(wakes.clone());
    let mut context = Context::from_waker(&waker);
    let woken = || wakes.0.load(Ordering::SeqCst);
    let mut events = Vec::new();
    let t0 = Instant::now();
    let at = |millis: u64| t0 + Duration::from_millis(millis);
    {
        let mut recv = std::pin::pin!(viewer.recv_batch(&mut events, 64));
        assert!(recv.as_mut().poll(&mut context).is_pending());

        // Audio alone waits for video, up to the cap.
        publisher.send_batched(FrameKind::Audio, 10, audio(1), at(0));
        assert_eq!(publisher.flush_deadline(), Some(at(150)));
        publisher.flush_if_due(at(60));
        // A video frame closes the batch once its oldest frame waited `delay`.
        publisher.send_batched(FrameKind::Video, 33, video(2, false, 0), at(33));
        assert_eq!(publisher.flush_deadline(), Some(at(100)));
        publisher.flush_if_due(at(99));
        assert_eq!(woken(), 0, "nothing is due before the delay");
        publisher.send_batched(FrameKind::Video, 66, video(3, false, 0), at(66));
        publisher.flush_if_due(at(100));
        assert_eq!(woken(), 1, "one wake-up for the three frames");
        assert_eq!(publisher.flush_deadline(), None);
        assert_eq!(recv.as_mut().poll(&mut context), Poll::Ready(3));
    }
    assert_eq!(events.len(), 3);
    events.clear();
    {
        let mut recv = std::pin::pin!(viewer.recv_batch(&mut events, 64));
        assert!(recv.as_mut().poll(&mut context).is_pending());
        publisher.send_batched(FrameKind::Audio, 110, audio(4), at(200));
        publisher.flush_if_due(at(349));
        assert_eq!(woken(), 1);
        publisher.flush_if_due(at(350));
        assert_eq!(woken(), 2, "held audio goes out at the cap");
        assert_eq!(recv.as_mut().poll(&mut context), Poll::Ready(1));
    }
}

#[test]
fn staggered_batches_wake_each_group_of_viewers_once_per_delay_at_its_own_phase() {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Waker};
    use std::time::Instant;

    // A 200 ms delay: eight groups woken 25 ms apart, each every 200 ms.
    let delay = Duration::from_millis(200);
    let hub = RelayHub::new(
        RelayConfig::default().with_batch(BatchPolicy::new(delay, delay).with_stagger(true)),
    );
    let mut publisher = start_publish(&hub, 1);
    let t0 = Instant::now();
    let at = |millis: u64| t0 + Duration::from_millis(millis);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    // Sixteen viewers: two per group (ids 0..16, group = id mod 8).
    let mut viewers: Vec<_> = (0..16).map(|_| hub.subscribe(key()).unwrap()).collect();
    for viewer in &mut viewers {
        drain(viewer);
    }
    let wakes: Vec<_> = (0..16)
        .map(|_| Arc::new(CountingWaker(Default::default())))
        .collect();
    let mut events: Vec<Vec<RelayEvent>> = vec![Vec::new(); 16];
    let mut recvs: Vec<_> = viewers
        .iter_mut()
        .zip(events.iter_mut())
        .map(|(viewer, out)| Box::pin(viewer.recv_batch(out, 64)))
        .collect();
    for (recv, wake) in recvs.iter_mut().zip(&wakes) {
        let waker = Waker::from(wake.clone());
        assert!(recv
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    let woken = || -> Vec<usize> { wakes.iter().map(|w| w.0.load(Ordering::SeqCst)).collect() };
    // Frames from 5 ms on (the publisher's grid starts when it started, before t0).
    let mut now = 5;
    let mut first_wake = [None::<u64>; 16];
    while now < 230 {
        publisher.send_batched(
            FrameKind::Video,
            now as u32,
            video(now as u32, false, 0),
            at(now),
        );
        publisher.flush_if_due(at(now));
        while let Some(deadline) = publisher.flush_deadline().filter(|d| *d <= at(now + 5)) {
            publisher.flush_if_due(deadline);
        }
        for (viewer, count) in woken().iter().enumerate() {
            if *count > 0 && first_wake[viewer].is_none() {
                first_wake[viewer] = Some(now);
            }
        }
        now += 5;
    }
    // Every viewer was woken exactly once in the first 225 ms, and the two viewers of a group
    // together; the groups at eight different instants.
    assert_eq!(woken(), vec![1; 16]);
    for group in 0..8 {
        assert_eq!(first_wake[group], first_wake[group + 8], "group {group}");
    }
    let mut instants: Vec<_> = first_wake[..8].iter().map(|w| w.unwrap()).collect();
    instants.sort_unstable();
    instants.dedup();
    assert_eq!(instants.len(), 8, "{first_wake:?}");
    drop(recvs);
    drop(publisher);
}

#[test]
fn the_write_rate_term_delays_the_big_stream_and_not_the_small_one_beside_it() {
    // An adaptive hub: no delay of its own, a 200 ms cap.
    let hub = RelayHub::new(
        RelayConfig::default()
            .with_batch(BatchPolicy::new(Duration::ZERO, Duration::from_millis(200))),
    );
    let big = StreamKey::parse("live", "big").unwrap();
    let small = StreamKey::parse("live", "small").unwrap();
    let mut big_publisher = hub.publish(big.clone()).unwrap();
    let mut small_publisher = hub.publish(small.clone()).unwrap();
    let _big_viewers: Vec<_> = (0..100)
        .map(|_| hub.subscribe(big.clone()).unwrap())
        .collect();
    let _small_viewer = hub.subscribe(small.clone()).unwrap();
    // One core at 1000 writes a second: the small stream's 25 fit, the big one gets 975.
    let config = AdaptiveBatchConfig::default().with_write_budget(1000.0);
    let longest = hub.apply_write_rate(&config, 1.0);
    let big_delay = Duration::from_secs_f64(100.0 / 975.0);
    assert_eq!(longest, big_delay);

    let now = std::time::Instant::now();
    big_publisher.send_batched(FrameKind::Video, 0, video(0, true, 0), now);
    small_publisher.send_batched(FrameKind::Video, 0, video(0, true, 0), now);
    // Kept in whole microseconds.
    let kept = Duration::from_micros(big_delay.as_micros() as u64);
    assert_eq!(big_publisher.flush_deadline(), Some(now + kept));
    assert_eq!(small_publisher.flush_deadline(), Some(now));
    // The hub's delay (the CPU term) applies to both when longer.
    hub.set_batch_delay(Duration::from_millis(150));
    assert_eq!(
        big_publisher.flush_deadline(),
        Some(now + Duration::from_millis(150))
    );
    assert_eq!(
        small_publisher.flush_deadline(),
        Some(now + Duration::from_millis(150))
    );
    // With the term off, the streams' delays go back to zero.
    hub.set_batch_delay(Duration::ZERO);
    assert_eq!(
        hub.apply_write_rate(&AdaptiveBatchConfig::default(), 1.0),
        Duration::ZERO
    );
    assert_eq!(big_publisher.flush_deadline(), Some(now));
}

#[test]
fn the_write_rate_term_holds_a_high_bitrate_stream_no_longer_than_its_batch_bytes_take() {
    let hub = RelayHub::new(
        RelayConfig::default()
            .with_batch(BatchPolicy::new(Duration::ZERO, Duration::from_millis(300))),
    );
    let fast = StreamKey::parse("live", "fast").unwrap();
    let slow = StreamKey::parse("live", "slow").unwrap();
    let mut fast_publisher = hub.publish(fast.clone()).unwrap();
    let mut slow_publisher = hub.publish(slow.clone()).unwrap();
    let _viewers: Vec<_> = (0..1000)
        .flat_map(|_| [hub.subscribe(fast.clone()), hub.subscribe(slow.clone())])
        .map(Result::unwrap)
        .collect();
    // One core at 1000 writes a second: both streams' 1000 viewers ask for the 300 ms cap.
    let config = AdaptiveBatchConfig::with_max_delay(Duration::from_millis(300))
        .with_write_budget(1000.0)
        .with_max_batch_bytes(50_000);
    let start = std::time::Instant::now();
    // No byte rate yet (one sample): both are held the cap.
    assert_eq!(
        hub.apply_write_rate_at(&config, 1.0, start),
        Duration::from_millis(300)
    );
    // One second: the fast stream brings 500 kB (50 kB in 100 ms), the slow one 30 kB.
    for i in 0..10u32 {
        fast_publisher.send(FrameKind::Video, i * 100, video(i, i == 0, 50_000));
        slow_publisher.send(FrameKind::Video, i * 100, video(i, i == 0, 3_000));
    }
    let later = start + Duration::from_secs(1);
    let longest = hub.apply_write_rate_at(&config, 1.0, later);
    assert_eq!(longest, Duration::from_millis(300));
    let now = std::time::Instant::now();
    fast_publisher.send_batched(FrameKind::Video, 1000, video(10, false, 100), now);
    slow_publisher.send_batched(FrameKind::Video, 1000, video(10, false, 100), now);
    let fast_delay = fast_publisher.flush_deadline().unwrap() - now;
    assert!(
        fast_delay >= Duration::from_millis(99) && fast_delay <= Duration::from_millis(101),
        "{fast_delay:?}"
    );
    assert_eq!(
        slow_publisher.flush_deadline(),
        Some(now + Duration::from_millis(300))
    );
    // With the limit off, the fast stream is held the cap again.
    hub.apply_write_rate_at(&config.with_max_batch_bytes(0), 1.0, later);
    assert_eq!(
        fast_publisher.flush_deadline(),
        Some(now + Duration::from_millis(300))
    );
}

#[test]
fn the_byte_rate_is_smoothed_over_seconds_so_a_keyframe_does_not_swing_it() {
    let mut rate = super::stream::ByteRate::default();
    let start = std::time::Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    assert_eq!(rate.sample(at(0), 0), None);
    // The same instant again: still no rate.
    assert_eq!(rate.sample(at(0), 10), None);
    // 30 kB a second, sampled every 500 ms.
    assert_eq!(rate.sample(at(500), 15_000), Some(30_000.0));
    let steady = rate.sample(at(1000), 30_000).unwrap();
    assert!((steady - 30_000.0).abs() < 1e-6, "{steady}");
    // A 100 kB keyframe in one sample lifts the rate by well under its 200 kB/s burst.
    let spiked = rate.sample(at(1500), 130_000).unwrap();
    assert!(spiked > 30_000.0 && spiked < 100_000.0, "{spiked}");
    // Back to 30 kB a second: the rate comes back down over a few seconds.
    let mut total = 130_000;
    let mut last = spiked;
    for step in 4..16u64 {
        total += 15_000;
        last = rate.sample(at(step * 500), total).unwrap();
    }
    assert!((last - 30_000.0).abs() < 5_000.0, "{last}");
}

/// One step of a random publisher/viewer schedule.
#[derive(Debug, Clone)]
enum Op {
    Key(usize),
    Inter(usize),
    Audio,
    Read { viewer: usize, max: usize },
    Republish,
    Subscribe,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1usize..3000).prop_map(Op::Key),
        8 => (1usize..1500).prop_map(Op::Inter),
        3 => Just(Op::Audio),
        6 => (0usize..4, 1usize..40).prop_map(|(viewer, max)| Op::Read { viewer, max }),
        1 => Just(Op::Republish),
        1 => Just(Op::Subscribe),
    ]
}

/// The hub of the random-schedule tests: an 8 KB lag budget (so readers that wait skip), no
/// time budget, the GOP cache on or off.
fn schedule_hub(gop_cache: bool) -> RelayHub {
    let config = RelayConfig::default()
        .with_gop_cache(gop_cache)
        .with_viewer_max_lag(8_000, Duration::from_secs(3600));
    RelayHub::new(config)
}

/// The publisher's side of a random schedule: media with increasing indices (carried in each
/// payload, timestamps 10 ms apart) and republishes with a new video sequence header.
struct ScheduledPublisher<'a> {
    hub: &'a RelayHub,
    /// Always some between ops.
    publisher: Option<Publisher>,
    version: u8,
    index: u32,
}

impl<'a> ScheduledPublisher<'a> {
    fn new(hub: &'a RelayHub) -> Self {
        ScheduledPublisher {
            hub,
            publisher: Some(start_publish(hub, 0)),
            version: 0,
            index: 0,
        }
    }

    /// Does the publisher's part of `op`: returns the index of the media frame sent and
    /// whether it is a keyframe (nothing for a republish or a viewer's op).
    fn apply(&mut self, op: &Op) -> Option<(u32, bool)> {
        let index = self.index;
        let (kind, payload, keyframe) = match *op {
            Op::Key(size) | Op::Inter(size) => {
                let keyframe = matches!(op, Op::Key(_));
                (FrameKind::Video, video(index, keyframe, size), keyframe)
            }
            Op::Audio => (FrameKind::Audio, audio(index), false),
            Op::Republish => {
                // The old publisher leaves before the new one arrives.
                drop(self.publisher.take());
                self.version = self.version.wrapping_add(1);
                self.publisher = Some(start_publish(self.hub, self.version));
                return None;
            }
            Op::Read { .. } | Op::Subscribe => return None,
        };
        self.publisher.as_ref()?.send(kind, index * 10, payload);
        self.index += 1;
        Some((index, keyframe))
    }
}

/// Checks one viewer's output: every (re)start and every gap lands on a keyframe right after
/// the video and audio sequence headers, and media indices only increase.
fn check_viewer_output(events: &[Seen]) -> Result<(), TestCaseError> {
    let mut previous: Option<u32> = None;
    for (position, event) in events.iter().enumerate() {
        match event {
            Seen::Started | Seen::Ended => previous = None,
            Seen::Media { index, keyframe } => {
                let continues = previous.is_some_and(|p| *index == p + 1);
                if !continues {
                    prop_assert!(
                        *keyframe,
                        "gap or start at {position} lands on a non-key frame"
                    );
                    let before = position
                        .checked_sub(2)
                        .and_then(|p| events.get(p..position));
                    prop_assert!(
                        matches!(before, Some([Seen::VideoHeader(_), Seen::AudioHeader])),
                        "keyframe at {position} not preceded by sequence headers: {events:?}"
                    );
                }
                if let Some(p) = previous {
                    prop_assert!(*index > p, "media went backwards at {position}");
                }
                previous = Some(*index);
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn viewers_start_on_keyframes_drop_only_gop_tails_and_fast_viewers_miss_nothing(
        ops in proptest::collection::vec(op(), 1..300),
        gop_cache in any::<bool>(),
    ) {
        let hub = schedule_hub(gop_cache);
        let mut publisher = ScheduledPublisher::new(&hub);
        let mut fast = hub.subscribe(key()).unwrap();
        let mut fast_seen = Vec::new();
        let mut fast_expected = Vec::new();
        let mut viewers: Vec<(Subscription, Vec<Seen>)> = Vec::new();
        let mut publisher_has_keyframe = false;
        for op in ops {
            match op {
                Op::Key(_) | Op::Inter(_) | Op::Audio => {
                    if let Some((index, keyframe)) = publisher.apply(&op) {
                        publisher_has_keyframe |= keyframe;
                        if publisher_has_keyframe {
                            fast_expected.push(index);
                        }
                    }
                }
                Op::Read { viewer, max } => {
                    if let Some((subscription, seen_so_far)) = viewers.get_mut(viewer) {
                        let mut events = Vec::new();
                        subscription.try_recv_batch(&mut events, max);
                        seen_so_far.extend(events.iter().map(seen));
                    }
                }
                Op::Republish => {
                    publisher.apply(&op);
                    publisher_has_keyframe = false;
                }
                Op::Subscribe => viewers.push((hub.subscribe(key()).unwrap(), Vec::new())),
            }
            fast_seen.extend(drain(&mut fast));
        }
        for (mut subscription, mut seen_so_far) in viewers {
            seen_so_far.extend(drain(&mut subscription));
            check_viewer_output(&seen_so_far)?;
        }
        check_viewer_output(&fast_seen)?;
        let fast_media: Vec<u32> = fast_seen
            .iter()
            .filter_map(|s| match s {
                Seen::Media { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        prop_assert_eq!(fast_media, fast_expected);
        let stats = hub.stream_stats(&key()).unwrap();
        let fast_stats = stats.viewers.iter().find(|v| v.id == fast.id()).unwrap();
        prop_assert_eq!(fast_stats.frames_dropped, 0);
    }
}

#[test]
fn the_hub_batch_delay_moves_every_publishers_deadline_within_the_cap() {
    let hub = RelayHub::new(RelayConfig::default().with_batch(BatchPolicy::new(
        Duration::from_millis(50),
        Duration::from_millis(200),
    )));
    let mut publisher = hub.publish(key()).unwrap();
    let t0 = std::time::Instant::now();
    publisher.send_batched(FrameKind::Video, 0, video(0, true, 10), t0);
    assert_eq!(hub.batch_delay(), Duration::from_millis(50));
    assert_eq!(
        publisher.flush_deadline(),
        Some(t0 + Duration::from_millis(50))
    );
    hub.set_batch_delay(Duration::ZERO);
    assert_eq!(publisher.flush_deadline(), Some(t0));
    hub.set_batch_delay(Duration::from_secs(5));
    assert_eq!(
        publisher.flush_deadline(),
        Some(t0 + Duration::from_millis(200))
    );
}

#[cfg(feature = "server")]
#[test]
fn a_stream_keeps_a_bounded_number_of_shared_rtmp_stores() {
    let hub = RelayHub::new(RelayConfig::default());
    let viewer = hub.subscribe(key()).unwrap();
    let chunking = |message_stream_id| ChunkingKey {
        chunk_size: 4096,
        message_stream_id,
    };
    let first = viewer
        .shared_rtmp(chunking(1))
        .expect("the first key gets a store");
    for id in 2..=subscription::MAX_RTMP_STORES_PER_STREAM as u32 {
        assert!(viewer.shared_rtmp(chunking(id)).is_some());
    }
    // A client asking for yet another key (a new createStream, an odd chunk size) gets none and
    // falls back to vectored writes; the keys already in use keep their stores.
    assert!(viewer.shared_rtmp(chunking(1000)).is_none());
    let again = viewer
        .shared_rtmp(chunking(1))
        .expect("an existing key keeps its store");
    assert!(Arc::ptr_eq(&first, &again));
}

/// Reads what `viewer` has as [`Subscription::try_recv_shared`] gives it, runs opened up into
/// their frames, and whether any came as a run.
fn read_shared(viewer: &mut Subscription, max: usize) -> (Vec<Seen>, bool) {
    let mut events = Vec::new();
    let ran = match viewer.try_recv_shared(&mut events, max) {
        subscription::Received::Events(_) => false,
        subscription::Received::Run(run) => {
            events.extend(run.frames().iter().cloned().map(RelayEvent::Frame));
            true
        }
    };
    (events.iter().map(seen).collect(), ran)
}

#[test]
fn live_viewers_at_one_place_share_one_run_and_are_counted_as_if_read_frame_by_frame() {
    let hub = RelayHub::new(RelayConfig::default());
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 100));
    let mut plain = hub.subscribe(key()).unwrap();
    let mut first = hub.subscribe(key()).unwrap();
    let mut second = hub.subscribe(key()).unwrap();
    // Their starts (headers and the cached GOP) are their own.
    for viewer in [&mut plain, &mut first, &mut second] {
        let (start, ran) = read_shared(viewer, 64);
        assert!(!ran);
        assert_eq!(start.len(), 4, "{start:?}");
    }
    for index in 1..4 {
        publisher.send(FrameKind::Video, index * 33, video(index, false, 500));
        publisher.send(FrameKind::Audio, index * 33, audio(index));
    }
    let take = |viewer: &mut Subscription| {
        let mut events = Vec::new();
        match viewer.try_recv_shared(&mut events, 64) {
            subscription::Received::Run(run) => run,
            other => panic!("no run: {other:?}"),
        }
    };
    let (run_a, run_b) = (take(&mut first), take(&mut second));
    assert!(
        Arc::ptr_eq(&run_a, &run_b),
        "the second viewer built a run of its own"
    );
    let expected = drain(&mut plain);
    let shared: Vec<Seen> = run_a
        .frames()
        .iter()
        .cloned()
        .map(RelayEvent::Frame)
        .map(|e| seen(&e))
        .collect();
    assert_eq!(shared, expected);
    // Nothing more for either, and the next frame starts a new run.
    assert_eq!(read_shared(&mut first, 64), (Vec::new(), false));
    publisher.send(FrameKind::Video, 200, video(4, false, 500));
    let next = take(&mut first);
    assert!(!Arc::ptr_eq(&run_a, &next));
    // The other viewer, at the same place, takes the same new run.
    let same = take(&mut second);
    assert_eq!(same.frames().len(), 1);
    assert!(Arc::ptr_eq(&same, &next));
    assert_eq!(drain(&mut plain).len(), 1);
    // A viewer behind the newest run (here: reading after two more frames) gets a run of its
    // own from where it stands, not the one that no longer reaches the head.
    publisher.send(FrameKind::Video, 233, video(5, false, 500));
    let ahead = take(&mut first);
    publisher.send(FrameKind::Video, 266, video(6, false, 500));
    let behind = take(&mut second);
    assert_eq!((ahead.frames().len(), behind.frames().len()), (1, 2));
    assert_eq!(drain(&mut plain).len(), 2);
    assert_eq!(drain(&mut first).len(), 1);
    let stats = hub.stream_stats(&key()).unwrap();
    let by_id = |id| *stats.viewers.iter().find(|v| v.id == id).unwrap();
    let (plain_stats, first_stats) = (by_id(plain.id()), by_id(first.id()));
    assert_eq!(first_stats.frames_out, plain_stats.frames_out);
    assert_eq!(first_stats.bytes_out, plain_stats.bytes_out);
    assert_eq!(by_id(second.id()).bytes_out, plain_stats.bytes_out);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the publisher does and whenever viewers read, a viewer taking shared runs
    /// sees the same events and is counted the same (frames and bytes out, skips) as its twin
    /// reading frame by frame; a second shared viewer reading right after the first takes its
    /// runs.
    #[test]
    fn shared_runs_give_every_viewer_what_reading_frame_by_frame_gives(
        ops in proptest::collection::vec(op(), 1..300),
        gop_cache in any::<bool>(),
    ) {
        let hub = schedule_hub(gop_cache);
        let mut publisher = ScheduledPublisher::new(&hub);
        // Each entry: a plain reader and two shared ones, subscribed together.
        let mut triplets: Vec<[(Subscription, Vec<Seen>); 3]> = Vec::new();
        for op in ops {
            match op {
                Op::Key(_) | Op::Inter(_) | Op::Audio | Op::Republish => {
                    publisher.apply(&op);
                }
                Op::Read { viewer, max } => {
                    if let Some([plain, first, second]) = triplets.get_mut(viewer) {
                        let mut events = Vec::new();
                        plain.0.try_recv_batch(&mut events, max);
                        plain.1.extend(events.iter().map(seen));
                        for shared in [first, second] {
                            shared.1.extend(read_shared(&mut shared.0, max).0);
                        }
                    }
                }
                Op::Subscribe => triplets.push(std::array::from_fn(|_| {
                    (hub.subscribe(key()).unwrap(), Vec::new())
                })),
            }
        }
        let stats = hub.stream_stats(&key()).unwrap();
        let by_id = |id| stats.viewers.iter().find(|v| v.id == id).copied();
        for [plain, first, second] in &triplets {
            prop_assert_eq!(&first.1, &plain.1);
            prop_assert_eq!(&second.1, &plain.1);
            let expected = by_id(plain.0.id()).map(|s| (s.frames_out, s.bytes_out, s.frames_dropped, s.bytes_dropped));
            for shared in [first, second] {
                let got = by_id(shared.0.id()).map(|s| (s.frames_out, s.bytes_out, s.frames_dropped, s.bytes_dropped));
                prop_assert_eq!(got, expected);
            }
        }
    }
}

/// The bytes `spans` hold in their shared files, in order.
#[cfg(target_os = "linux")]
fn span_bytes(spans: &[crate::shared_bytes::Span]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    for span in spans {
        let mut bytes = vec![0; usize::try_from(span.len()).unwrap()];
        span.file()
            .file()
            .read_exact_at(&mut bytes, span.offset())
            .unwrap();
        out.extend(bytes);
    }
    out
}

/// A run shared by two live viewers of a stream with a few frames past their start.
#[cfg(target_os = "linux")]
fn shared_test_run(hub: &RelayHub) -> (Subscription, Arc<run::FrameRun>) {
    let publisher = start_publish(hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 100));
    let mut viewers = [hub.subscribe(key()).unwrap(), hub.subscribe(key()).unwrap()];
    for viewer in &mut viewers {
        drain(viewer);
    }
    for index in 1..6 {
        publisher.send(FrameKind::Video, index * 33, video(index, false, 3000));
        publisher.send(FrameKind::Audio, index * 33, audio(index));
    }
    let [mut first, mut second] = viewers;
    let mut events = Vec::new();
    let subscription::Received::Run(run) = first.try_recv_shared(&mut events, 64) else {
        panic!("no run");
    };
    let subscription::Received::Run(again) = second.try_recv_shared(&mut events, 64) else {
        panic!("no run");
    };
    assert!(Arc::ptr_eq(&run, &again));
    (first, run)
}

#[cfg(all(feature = "http", target_os = "linux"))]
#[test]
fn a_runs_flv_spans_hold_its_frames_chunks_in_order_and_are_collected_once() {
    let hub = RelayHub::new(RelayConfig::default());
    let (viewer, run) = shared_test_run(&hub);
    let expected: Vec<u8> = run
        .frames()
        .iter()
        .flat_map(|frame| frame.flv_chunk().unwrap().to_vec())
        .collect();
    let spans = run
        .flv_chunk_spans(viewer.shared_flv())
        .expect("every frame has a span");
    assert_eq!(span_bytes(&spans.spans), expected);
    assert_eq!(spans.len, expected.len() as u64);
    // Appended in order to one file: one span, one sendfile.
    assert_eq!(spans.spans.len(), 1);
    let again = run.flv_chunk_spans(viewer.shared_flv()).unwrap();
    assert!(std::ptr::eq(spans, again));
}

#[cfg(target_os = "linux")]
#[test]
fn a_runs_rtmp_spans_are_for_the_first_chunking_key_only() {
    let hub = RelayHub::new(RelayConfig::default());
    let (viewer, run) = shared_test_run(&hub);
    let key_of = |chunk_size| ChunkingKey {
        chunk_size,
        message_stream_id: 1,
    };
    let (first, other) = (key_of(4096), key_of(128));
    let store = viewer.shared_rtmp(first).unwrap();
    let encode =
        |frame: &Frame| Bytes::from(format!("{}:{}", frame.timestamp(), frame.payload().len()));
    let span_of = |frame: &Frame| {
        frame.chunked(first, encode);
        frame.chunked_span(first, &store)
    };
    let spans = run
        .rtmp_chunk_spans(first, span_of)
        .expect("every frame has a span");
    let expected: Vec<u8> = run
        .frames()
        .iter()
        .flat_map(|frame| frame.chunked(first, encode).to_vec())
        .collect();
    assert_eq!(span_bytes(&spans.spans), expected);
    // A player chunking otherwise sends the frames itself.
    assert!(run.rtmp_chunk_spans(other, |_| unreachable!()).is_none());
}

/// A second AAC track (id 1) the way FFmpeg 8+ publishes it: Enhanced RTMP multitrack packets.
fn second_track(packet_type: u8, rest: &[u8]) -> Bytes {
    let mut body = vec![0x95, packet_type, b'm', b'p', b'4', b'a', 0x01];
    body.extend_from_slice(rest);
    Bytes::from(body)
}

#[test]
fn a_late_viewer_gets_the_configuration_of_every_multitrack_track() {
    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    let first_start = second_track(0x00, &[0x11, 0x90]);
    let layout = second_track(0x04, &[0x01, 0x02, 0, 0, 0, 3]);
    let newer_start = second_track(0x00, &[0x11, 0x88]);
    publisher.send(FrameKind::Audio, 0, first_start.clone());
    publisher.send(FrameKind::Audio, 0, layout.clone());
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    publisher.send(FrameKind::Audio, 20, second_track(0x01, &[0x21, 0x00]));
    publisher.send(FrameKind::Video, 40, video(1, false, 0));
    // The track's encoder restarted with other settings: the newer start replaces the first.
    publisher.send(FrameKind::Audio, 60, newer_start.clone());
    publisher.send(FrameKind::Video, 80, video(2, true, 0));
    let frame = second_track(0x01, &[0x21, 0x01]);
    publisher.send(FrameKind::Audio, 90, frame.clone());

    let mut viewer = hub.subscribe(key()).unwrap();
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    let payloads: Vec<Bytes> = events
        .iter()
        .filter_map(|event| match event {
            RelayEvent::Frame(frame) => Some(frame.payload().clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        payloads,
        vec![
            Bytes::from_static(b"\x02\x00\x0aonMetaData"),
            video_header(1),
            audio_header(),
            newer_start,
            layout,
            video(2, true, 0),
            frame,
        ]
    );
    // The track's configuration is not a frame a viewer could start at.
    let config = Frame::new(FrameKind::Audio, 0, second_track(0x00, &[0x11, 0x90]));
    assert!(!config.is_coded_media());
}

/// A publisher's multitrack configurations are network input: one naming a new track id on
/// every packet must not grow what the stream keeps for late viewers beyond
/// `MAX_TRACK_CONFIGS`, and the newest ones are those kept.
#[test]
fn a_publisher_naming_ever_new_tracks_keeps_only_the_newest_configurations() {
    use super::stream::MAX_TRACK_CONFIGS;

    let hub = RelayHub::default();
    let publisher = start_publish(&hub, 1);
    publisher.send(FrameKind::Video, 0, video(0, true, 0));
    let starts: Vec<Bytes> = (0..=u8::MAX)
        .map(|track| Bytes::from(vec![0x95, 0x00, b'm', b'p', b'4', b'a', track, 0x11, 0x90]))
        .collect();
    for start in &starts {
        publisher.send(FrameKind::Audio, 10, start.clone());
    }
    // A new GOP: a late viewer gets the configurations from the stream's start bundle only.
    publisher.send(FrameKind::Video, 40, video(1, true, 0));

    let mut viewer = hub.subscribe(key()).unwrap();
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 512) > 0 {}
    let kept: Vec<Bytes> = events
        .iter()
        .filter_map(|event| match event {
            RelayEvent::Frame(frame) if frame.config_key().is_some() => {
                Some(frame.payload().clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), MAX_TRACK_CONFIGS);
    assert_eq!(kept, starts[starts.len() - MAX_TRACK_CONFIGS..]);
}
