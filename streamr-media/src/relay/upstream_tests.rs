//! A publisher continuing an upstream's timeline ([`Timeline::Upstream`]): after a failover the
//! new upstream's replay of what was already relayed is dropped, timestamps are kept, and the
//! stream resumes without a gap or at the next keyframe.

use bytes::Bytes;

use super::*;

fn key() -> StreamKey {
    StreamKey::parse("live", "pulled").unwrap()
}

fn video(index: u32, keyframe: bool) -> Bytes {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend_from_slice(&index.to_be_bytes());
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

/// What a viewer saw: the kind of event, the frame's timestamp and its index or header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Started,
    Ended,
    Metadata(u32),
    VideoHeader {
        at: u32,
        version: u8,
    },
    AudioHeader(u32),
    Video {
        at: u32,
        index: u32,
    },
    Audio {
        at: u32,
        index: u32,
    },
    /// A timed data message: its timestamp and the number it carries.
    Data {
        at: u32,
        index: u32,
    },
}

fn drain(viewer: &mut Subscription) -> Vec<Seen> {
    let mut events = Vec::new();
    while viewer.try_recv_batch(&mut events, 64) > 0 {}
    events
        .iter()
        .map(|event| match event {
            RelayEvent::PublisherStarted => Seen::Started,
            RelayEvent::PublisherEnded => Seen::Ended,
            RelayEvent::Frame(frame) => {
                let at = frame.timestamp();
                let payload = frame.payload();
                let index = |offset: usize| {
                    payload
                        .get(offset..offset + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(u32::MAX, u32::from_be_bytes)
                };
                match frame.kind() {
                    FrameKind::Metadata => Seen::Metadata(at),
                    FrameKind::Data => Seen::Data {
                        at,
                        index: data_index(payload),
                    },
                    FrameKind::Video if frame.is_sequence_header() => Seen::VideoHeader {
                        at,
                        version: payload.last().copied().unwrap_or_default(),
                    },
                    FrameKind::Audio if frame.is_sequence_header() => Seen::AudioHeader(at),
                    FrameKind::Video => Seen::Video {
                        at,
                        index: index(5),
                    },
                    _ => Seen::Audio {
                        at,
                        index: index(2),
                    },
                }
            }
        })
        .collect()
}

/// A cue point carrying `index`.
fn cue_point(index: u32) -> Bytes {
    use crate::amf0::Amf0Value;
    crate::amf0::encode_all(&[
        Amf0Value::String("onCuePoint".into()),
        Amf0Value::Object(vec![("index".into(), Amf0Value::Number(f64::from(index)))]),
    ])
    .unwrap()
    .freeze()
}

/// The number a [`cue_point`] carries.
fn data_index(payload: &[u8]) -> u32 {
    let values = crate::amf0::decode_all(payload).unwrap_or_default();
    values
        .get(1)
        .and_then(|value| value.property("index"))
        .and_then(crate::amf0::Amf0Value::as_number)
        .map_or(u32::MAX, |index| index as u32)
}

/// An upstream connection as a relay sees it: configuration first, then frames.
fn send_headers(publisher: &Publisher, at: u32, version: u8) {
    publisher.send(
        FrameKind::Metadata,
        at,
        Bytes::from_static(b"\x02\x00\x0aonMetaData"),
    );
    publisher.send(FrameKind::Video, at, video_header(version));
    publisher.send(FrameKind::Audio, at, audio_header());
}

/// Frame `index` of a stream with a keyframe every 5 video frames (40 ms apart) and an audio
/// frame after each video frame.
fn send_frame(publisher: &Publisher, index: u32) {
    let at = 1_000 + index * 40;
    publisher.send(FrameKind::Video, at, video(index, index % 5 == 0));
    publisher.send(FrameKind::Audio, at + 20, audio(index));
}

fn media_indices(seen: &[Seen]) -> (Vec<u32>, Vec<u32>) {
    let video = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Video { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    let audio = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Audio { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    (video, audio)
}

#[test]
fn a_failover_replaying_the_gop_continues_without_duplicates_or_a_new_publish() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..8 {
        send_frame(&publisher, index);
    }
    let before = drain(&mut viewer);

    // The second upstream replays its GOP cache (from keyframe 5) with the same configuration.
    publisher.rejoin_upstream();
    send_headers(&publisher, 1_200, 1);
    for index in 5..12 {
        send_frame(&publisher, index);
    }
    let after = drain(&mut viewer);

    assert!(
        !after.iter().any(|s| matches!(
            s,
            Seen::Started
                | Seen::Ended
                | Seen::Metadata(_)
                | Seen::VideoHeader { .. }
                | Seen::AudioHeader(_)
        )),
        "same publish, unchanged configuration not repeated: {after:?}"
    );
    let all: Vec<Seen> = before.into_iter().chain(after).collect();
    let (video, audio) = media_indices(&all);
    assert_eq!(video, (0..12).collect::<Vec<_>>(), "every frame once");
    assert_eq!(audio, (0..12).collect::<Vec<_>>(), "every frame once");
    assert_eq!(
        hub.last_upstream_gap(&key()),
        None,
        "the replay covered the switch"
    );
    for seen in &all {
        match *seen {
            Seen::Video { at, index } => assert_eq!(at, 1_000 + index * 40, "kept"),
            Seen::Audio { at, index } => assert_eq!(at, 1_020 + index * 40, "kept"),
            _ => {}
        }
    }
}

/// [`send_frame`] with a cue point after the frames of every frame index listed in `cues`,
/// numbered by that index and 10 ms after its audio frame.
fn send_frame_with_cues(publisher: &Publisher, index: u32, cues: &[u32]) {
    send_frame(publisher, index);
    if cues.contains(&index) {
        publisher.send(FrameKind::Data, 1_030 + index * 40, cue_point(index));
    }
}

fn data_seen(seen: &[Seen]) -> Vec<(u32, u32)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Data { at, index } => Some((*index, *at)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failover_drops_replayed_data_messages_and_passes_new_ones_in_order() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    // The upstream's stream: a cue point after frames 2, 6, 7, 9 and 11.
    let cues = [2, 6, 7, 9, 11];
    // The first upstream is lost after frame 7's video and audio, before its cue point.
    for index in 0..7 {
        send_frame_with_cues(&publisher, index, &cues);
    }
    send_frame(&publisher, 7);
    let before = drain(&mut viewer);
    assert_eq!(data_seen(&before), vec![(2, 1_110), (6, 1_270)]);

    // The next upstream replays from keyframe 5: cue point 6 again (dropped), then 7, which
    // was never relayed although it lies before frames that were, and what follows.
    publisher.rejoin_upstream();
    send_headers(&publisher, 1_200, 1);
    for index in 5..12 {
        send_frame_with_cues(&publisher, index, &cues);
    }
    let after = drain(&mut viewer);
    assert_eq!(
        data_seen(&after),
        vec![(7, 1_310), (9, 1_390), (11, 1_470)],
        "{after:?}"
    );
    let all: Vec<Seen> = before.into_iter().chain(after).collect();
    let (video, audio) = media_indices(&all);
    assert_eq!(video, (0..12).collect::<Vec<_>>(), "every frame once");
    assert_eq!(audio, (0..12).collect::<Vec<_>>(), "every frame once");
    // In the upstream's order: each cue point right after its frame's audio.
    let position = |wanted: Seen| all.iter().position(|s| *s == wanted);
    for index in cues {
        let cue = position(Seen::Data {
            at: 1_030 + index * 40,
            index,
        })
        .expect("relayed");
        let audio = position(Seen::Audio {
            at: 1_020 + index * 40,
            index,
        })
        .expect("relayed");
        assert_eq!(cue, audio + 1, "cue point {index}: {all:?}");
    }
    assert_eq!(hub.last_upstream_gap(&key()), None, "data tells no gap");

    // Once the media follow on, the replay is over: a second cue point at the last one's
    // timestamp is passed, as when no rejoin happened.
    publisher.send(FrameKind::Data, 1_470, cue_point(100));
    assert_eq!(data_seen(&drain(&mut viewer)), vec![(100, 1_470)]);
}

#[test]
fn a_restarted_upstream_timeline_drops_a_data_message_far_behind_and_starts_anew() {
    let hub = RelayHub::default();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 100_000, video(0, true));
    publisher.send(FrameKind::Data, 100_010, cue_point(0));
    let mut viewer = hub.subscribe(key()).unwrap();
    drain(&mut viewer);

    // The upstream started over at zero, a cue point first.
    publisher.rejoin_upstream();
    publisher.send(FrameKind::Data, 0, cue_point(1));
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 0, video(1, true));
    publisher.send(FrameKind::Data, 10, cue_point(2));
    let after = drain(&mut viewer);
    assert_eq!(
        after,
        vec![
            Seen::Ended,
            Seen::Started,
            Seen::VideoHeader { at: 0, version: 1 },
            Seen::Video { at: 0, index: 1 },
            Seen::Data { at: 10, index: 2 },
        ]
    );
}

#[test]
fn a_failover_with_a_gap_resumes_at_the_next_keyframe_with_changed_headers() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..7 {
        send_frame(&publisher, index);
    }
    drain(&mut viewer);

    // The second upstream starts after a gap, mid-GOP, and with a new video configuration.
    publisher.rejoin_upstream();
    send_headers(&publisher, 0, 2);
    for index in 8..12 {
        send_frame(&publisher, index);
    }
    let after = drain(&mut viewer);
    assert_eq!(
        after.first(),
        Some(&Seen::VideoHeader {
            at: 1_020 + 6 * 40,
            version: 2
        }),
        "the changed header is resent, not before what was relayed: {after:?}"
    );
    assert!(!after
        .iter()
        .any(|s| matches!(s, Seen::Metadata(_) | Seen::AudioHeader(_))));
    let (video, audio) = media_indices(&after);
    assert_eq!(video, vec![10, 11], "video resumes at the keyframe");
    assert_eq!(audio, vec![8, 9, 10, 11], "audio decodes alone");
    // Frames 7 (both tracks), 8 and 9 (video) were never relayed: the rejoin is a gap, found
    // on the first track that resumed past what was relayed (audio frame 8).
    let gap = hub.last_upstream_gap(&key()).expect("a gap");
    assert_eq!(
        (gap.after_ms, gap.resumed_ms),
        (1_020 + 6 * 40, 1_020 + 8 * 40)
    );
}

#[test]
fn a_repull_after_the_upstream_left_keeps_timestamps_and_drops_the_replay() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..7 {
        send_frame(&publisher, index);
    }
    drop(publisher);
    drain(&mut viewer);

    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 5..12 {
        send_frame(&publisher, index);
    }
    let after = drain(&mut viewer);
    assert_eq!(after.first(), Some(&Seen::Started));
    let (video, _) = media_indices(&after);
    // A new publish: viewers start again at a keyframe after the headers.
    assert_eq!(video, vec![10, 11]);
    assert!(after.contains(&Seen::Video {
        at: 1_000 + 10 * 40,
        index: 10
    }));
}

#[test]
fn an_upstream_timeline_restarted_far_behind_is_a_new_publish_with_its_own_timestamps() {
    let hub = RelayHub::default();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 100_000, video(0, true));
    let mut viewer = hub.subscribe(key()).unwrap();
    drain(&mut viewer);

    publisher.rejoin_upstream();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 0, video(1, true));
    publisher.send(FrameKind::Video, 40, video(2, false));
    let after = drain(&mut viewer);
    assert_eq!(after.first(), Some(&Seen::Ended));
    assert_eq!(after.get(1), Some(&Seen::Started));
    let timestamps: Vec<(u32, u32)> = after
        .iter()
        .filter_map(|s| match s {
            Seen::Video { at, index } => Some((*index, *at)),
            _ => None,
        })
        .collect();
    // Kept as the upstream set them, so segments cut here are the upstream's.
    assert_eq!(timestamps, vec![(1, 0), (2, 40)]);

    // A later failover replays the restarted timeline: recognised and dropped, no new publish.
    publisher.rejoin_upstream();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 0, video(1, true));
    publisher.send(FrameKind::Video, 40, video(2, false));
    publisher.send(FrameKind::Video, 80, video(3, false));
    assert_eq!(drain(&mut viewer), vec![Seen::Video { at: 80, index: 3 }]);
}

#[test]
fn an_own_publisher_going_backwards_is_still_rebased() {
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish(key()).unwrap();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 5_000, video(0, true));
    drop(publisher);
    let publisher = hub.publish_with(key(), Timeline::Own).unwrap();
    publisher.send(FrameKind::Video, 0, video_header(1));
    publisher.send(FrameKind::Video, 0, video(1, true));
    let seen = drain(&mut viewer);
    assert!(seen.contains(&Seen::Ended));
    assert_eq!(
        seen.last(),
        Some(&Seen::Video {
            at: 5_100,
            index: 1
        })
    );
}

#[test]
fn a_viewer_resuming_starts_at_the_keyframe_before_its_last_frame() {
    let hub = RelayHub::default();
    let publisher = hub.publish(key()).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..13 {
        send_frame(&publisher, index);
    }
    let video = |seen: &[Seen]| media_indices(seen).0;
    // A plain viewer starts at the newest keyframe (frame 10).
    let mut plain = hub.subscribe(key()).unwrap();
    assert_eq!(video(&drain(&mut plain)), vec![10, 11, 12]);
    // A relay that had up to frame 8 (at 1 320 ms) resumes at keyframe 5, with the headers.
    let mut resuming = hub.subscribe_resuming(key(), 1_000 + 8 * 40).unwrap();
    let seen = drain(&mut resuming);
    assert!(matches!(seen.first(), Some(Seen::Metadata(_))), "{seen:?}");
    assert_eq!(video(&seen), (5..13).collect::<Vec<_>>());
    // On a keyframe: from that keyframe.
    let mut resuming = hub.subscribe_resuming(key(), 1_000 + 5 * 40).unwrap();
    assert_eq!(video(&drain(&mut resuming)), (5..13).collect::<Vec<_>>());
    // Before anything the ring holds: at the cached GOP, like any viewer.
    let mut resuming = hub.subscribe_resuming(key(), 10).unwrap();
    assert_eq!(video(&drain(&mut resuming)), vec![10, 11, 12]);
}

/// `streamr_resume` comes from the network: any value starts a viewer at a keyframe the ring
/// holds (never mid-GOP, never past the live edge), and values from no time the stream has
/// reached start it where a plain viewer starts.
#[test]
fn a_hostile_resume_point_starts_at_a_keyframe_or_the_cached_gop() {
    let hub = RelayHub::default();
    let publisher = hub.publish(key()).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..13 {
        send_frame(&publisher, index);
    }
    let video = |seen: &[Seen]| media_indices(seen).0;
    for at in [
        0,
        1,
        u32::MAX,
        u32::MAX / 2,
        u32::MAX / 2 + 1,
        1_000 + 1_000_000,
    ] {
        let mut resuming = hub.subscribe_resuming(key(), at).unwrap();
        let seen = video(&drain(&mut resuming));
        assert!(
            seen == (0..13).collect::<Vec<_>>()
                || seen == (5..13).collect::<Vec<_>>()
                || seen == vec![10, 11, 12],
            "resume at {at}: {seen:?}"
        );
    }
    // Far ahead of the stream: the newest keyframe, as a plain viewer.
    let mut ahead = hub.subscribe_resuming(key(), 1_000 + 1_000_000).unwrap();
    assert_eq!(video(&drain(&mut ahead)), vec![10, 11, 12]);
}

#[test]
fn a_failover_resuming_from_the_upstream_loses_no_frame_even_past_its_newest_keyframe() {
    let upstream = RelayHub::default();
    let origin = upstream.publish(key()).unwrap();
    send_headers(&origin, 0, 1);
    for index in 0..12 {
        send_frame(&origin, index);
    }
    let hub = RelayHub::default();
    let mut viewer = hub.subscribe(key()).unwrap();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    for index in 0..8 {
        send_frame(&publisher, index);
    }
    // The new upstream is already past keyframe 10: its GOP cache would lose frames 8 and 9.
    publisher.rejoin_upstream();
    let at = publisher.resume_point().unwrap();
    assert_eq!(at, 1_000 + 7 * 40, "the last video frame relayed");
    let mut next = upstream.subscribe_resuming(key(), at).unwrap();
    let mut events = Vec::new();
    while next.try_recv_batch(&mut events, 64) > 0 {}
    for event in events {
        if let RelayEvent::Frame(frame) = event {
            publisher.send(frame.kind(), frame.timestamp(), frame.payload().clone());
        }
    }
    let (video, audio) = media_indices(&drain(&mut viewer));
    assert_eq!(video, (0..12).collect::<Vec<_>>(), "every frame once");
    assert_eq!(audio, (0..12).collect::<Vec<_>>(), "every frame once");
    assert_eq!(
        hub.last_upstream_gap(&key()),
        None,
        "the replay covered the switch"
    );
    assert_eq!(hub.publisher_timeline(&key()), Some(Timeline::Upstream));
    let local = hub
        .publish(StreamKey::parse("live", "local").unwrap())
        .unwrap();
    assert_eq!(
        local.resume_point(),
        None,
        "a local publisher resumes nothing"
    );
}

/// A rejoin resumes from the earlier track: audio relayed up to just before the newest video
/// frame pulls the point back to it, so a keyframe between the two cannot start the replay after
/// audio that was never relayed; a track stopped long ago does not.
#[test]
fn the_resume_point_is_the_earlier_tracks_unless_that_track_stopped() {
    let hub = RelayHub::default();
    let publisher = hub.publish_with(key(), Timeline::Upstream).unwrap();
    send_headers(&publisher, 0, 1);
    publisher.send(FrameKind::Video, 1_000, video(0, true));
    publisher.send(FrameKind::Audio, 1_000, audio(0));
    publisher.send(FrameKind::Audio, 1_023, audio(1));
    publisher.send(FrameKind::Video, 1_040, video(1, false));
    assert_eq!(publisher.resume_point(), Some(1_023), "audio trails video");
    publisher.send(FrameKind::Audio, 1_046, audio(2));
    assert_eq!(publisher.resume_point(), Some(1_040), "video trails audio");
    for index in 2..100 {
        publisher.send(
            FrameKind::Video,
            1_000 + index * 40,
            video(index, index % 5 == 0),
        );
    }
    assert_eq!(
        publisher.resume_point(),
        Some(1_000 + 99 * 40),
        "audio stopped seconds ago: the video's point"
    );
}
