//! A relay whose upstream dies in the middle of a segment and that fails over to another
//! upstream keeps cutting the origin's segments and LL-HLS parts byte for byte, the one open
//! across the switch included.
//!
//! By the time the relay reconnects, the new upstream may have published past its next
//! keyframe: its cached GOP then starts after the last frame the relay relayed, so replaying it
//! loses the frames in between and the open segment is none of the origin's. The relay asks the
//! new upstream to resume at the keyframe at or before its last frame
//! ([`RelayHub::subscribe_resuming`]), drops the overlap, and loses nothing.

use bytes::Bytes;
use streamr_media::flv::{FlvTag, FlvTagType};
use streamr_media::hls::{
    LlEvent, LlPackager, LlPackagerConfig, Segmenter, SegmenterConfig, SegmenterEvent,
};
use streamr_media::relay::{FrameKind, Publisher, RelayEvent, RelayHub, Subscription, Timeline};
use streamr_media::StreamKey;

fn key() -> StreamKey {
    StreamKey::parse("live", "show").expect("key")
}

fn kind(tag: &FlvTag) -> FrameKind {
    match tag.tag_type {
        FlvTagType::Audio => FrameKind::Audio,
        FlvTagType::Video => FrameKind::Video,
        _ => FrameKind::Metadata,
    }
}

fn is_keyframe(tag: &FlvTag) -> bool {
    tag.tag_type == FlvTagType::Video && tag.data.first().is_some_and(|b| b >> 4 == 1)
}

fn send(publisher: &Publisher, tags: &[FlvTag]) {
    for tag in tags {
        publisher.send(kind(tag), tag.timestamp, tag.data.clone());
    }
}

/// Sends `tags` on `publisher` one at a time, letting the other tasks run between.
async fn send_paced(publisher: &Publisher, tags: &[FlvTag]) {
    for tag in tags {
        send(publisher, std::slice::from_ref(tag));
        tokio::task::yield_now().await;
    }
}

/// Everything `subscription` has now, as tags.
fn drain(subscription: &mut Subscription) -> Vec<FlvTag> {
    let mut events = Vec::new();
    while subscription.try_recv_batch(&mut events, 64) > 0 {}
    events
        .into_iter()
        .filter_map(|event| match event {
            RelayEvent::Frame(frame) => Some(FlvTag {
                tag_type: match frame.kind() {
                    FrameKind::Audio => FlvTagType::Audio,
                    FrameKind::Video => FlvTagType::Video,
                    _ => FlvTagType::ScriptData,
                },
                timestamp: frame.timestamp(),
                stream_id: 0,
                data: frame.payload().clone(),
            }),
            _ => None,
        })
        .collect()
}

/// What a node's live HLS cuts from `tags`: the MPEG-TS segments it lists (start and hash)
/// and the LL-HLS parts it reports (hash).
#[derive(Debug, Default)]
struct Cut {
    segments: Vec<(u64, blake3::Hash)>,
    parts: Vec<blake3::Hash>,
    /// LL-HLS (fMP4) segments (hash).
    ll_segments: Vec<blake3::Hash>,
}

fn cut(tags: &[FlvTag], joining: bool) -> Cut {
    let config = SegmenterConfig {
        segment_duration_ms: 1_000,
        target_duration_secs: 4,
    };
    let segmenter = Segmenter::new(config);
    let mut segmenter = if joining {
        segmenter.joining_mid_stream()
    } else {
        segmenter
    };
    let mut packager = LlPackager::new(LlPackagerConfig::default());
    let mut out = Cut::default();
    for tag in tags {
        for event in segmenter.push(tag).expect("segmented") {
            if let SegmenterEvent::SegmentReady(segment) = event {
                out.segments
                    .push((segment.start_timestamp_ms, segment.hash));
            }
        }
        for event in packager
            .push(tag, segmenter.current_segment())
            .expect("packaged")
        {
            match event {
                LlEvent::PartReady(part) => out.parts.push(part.hash),
                LlEvent::SegmentReady(segment) => out.ll_segments.push(segment.hash),
                _ => {}
            }
        }
    }
    out
}

/// The position of the `n`th keyframe (from 0) among `tags`, and the timestamp of the video
/// frame three before it.
fn split_at_keyframe(tags: &[FlvTag], n: usize) -> (usize, u32) {
    let position = tags
        .iter()
        .enumerate()
        .filter(|(_, tag)| is_keyframe(tag))
        .nth(n)
        .map(|(at, _)| at)
        .expect("enough keyframes");
    let before = tags[..position]
        .iter()
        .filter(|tag| tag.tag_type == FlvTagType::Video)
        .rev()
        .nth(2)
        .expect("frames before the keyframe");
    (position, before.timestamp)
}

/// The relay had the origin's frames up to the video frame at `last_video` (in the order the
/// origin received them) when its upstream died; by the time it reconnects, the new upstream
/// has published up to `published` tags. Returns what the relay's viewers and live HLS got.
fn relay_across_a_failover(
    tags: &[FlvTag],
    last_video: u32,
    published: usize,
    resume: bool,
) -> Vec<FlvTag> {
    let upstream = RelayHub::default();
    let origin = upstream.publish(key()).expect("publish upstream");
    send(&origin, &tags[..published]);

    let relay = RelayHub::default();
    let mut hls = relay.subscribe_internal(key()).expect("subscribe");
    let pull = relay
        .publish_with(key(), Timeline::Upstream)
        .expect("publish relay");
    let relayed = tags
        .iter()
        .position(|tag| tag.tag_type == FlvTagType::Video && tag.timestamp == last_video)
        .expect("the last video frame relayed");
    send(&pull, &tags[..=relayed]);

    // The failover: reconnect to the new upstream and relay what it sends.
    pull.rejoin_upstream();
    let at = pull.resume_point();
    assert!(
        at.is_some_and(|at| at <= last_video && last_video - at <= 2_000),
        "the relay resumes at its last frame of the earlier track: {at:?}, last video {last_video}"
    );
    let mut next = match (resume, at) {
        (true, Some(at)) => upstream.subscribe_resuming(key(), at),
        _ => upstream.subscribe(key()),
    }
    .expect("play the new upstream");
    let replay = drain(&mut next);
    send(&pull, &replay);
    send(&origin, &tags[published..]);
    send(&pull, &drain(&mut next));
    drop(pull);
    drain(&mut hls)
}

#[test]
fn a_relay_failing_over_mid_segment_keeps_the_origins_segments_and_parts() {
    let tags = crate::common::sample_tags();
    let origin = cut(&tags, false);
    // The sample has a keyframe every 2 s (23, 2023, 4023 ms...), each starting a segment. The
    // upstream died three frames before the one at 6023 ms; the new upstream is 200 ms past it
    // when the relay reconnects, so its cached GOP starts after the relay's last frame.
    let (keyframe_at, last_video) = split_at_keyframe(&tags, 3);
    let keyframe_ms = tags[keyframe_at].timestamp;
    let published = tags
        .iter()
        .position(|tag| tag.timestamp > keyframe_ms + 200)
        .expect("the sample goes on");

    let gop_replay = relay_across_a_failover(&tags, last_video, published, false);
    let lost: Vec<u32> = tags
        .iter()
        .filter(|tag| tag.tag_type == FlvTagType::Video)
        .map(|tag| tag.timestamp)
        .filter(|ms| *ms > last_video && !gop_replay.iter().any(|t| t.timestamp == *ms))
        .collect();
    assert!(
        !lost.is_empty(),
        "the new upstream's cached GOP starts past the relay's last frame"
    );

    let resumed = relay_across_a_failover(&tags, last_video, published, true);
    let relay = cut(&resumed, true);
    let coded_video = |tags: &[FlvTag]| -> Vec<(u32, Bytes)> {
        tags.iter()
            .filter(|tag| tag.tag_type == FlvTagType::Video && tag.data.get(1) == Some(&1))
            .map(|tag| (tag.timestamp, tag.data.clone()))
            .collect()
    };
    let (origin_video, relay_video) = (coded_video(&tags), coded_video(&resumed));
    assert!(
        origin_video.ends_with(&relay_video),
        "every video frame once, in order, none missing"
    );
    // Every segment the relay lists is the origin's, none lost from its second on (its first
    // is cut where it joined and not listed).
    let first_listed = origin
        .segments
        .iter()
        .position(|s| s == &relay.segments[0])
        .expect("the relay's first listed segment is the origin's");
    assert_eq!(relay.segments[..], origin.segments[first_listed..]);
    let spanning = relay
        .segments
        .windows(2)
        .any(|w| w[0].0 <= u64::from(last_video) && u64::from(last_video) < w[1].0);
    assert!(spanning, "the segment open across the switch is listed");
    // LL-HLS: every part the relay reports is the origin's, the ones across the switch too.
    let first_part = origin
        .parts
        .iter()
        .position(|p| *p == relay.parts[0])
        .expect("the relay's first part is the origin's");
    assert_eq!(relay.parts[..], origin.parts[first_part..]);
}

/// What a relay's live HLS lists after a failover.
#[derive(Debug, Default)]
struct Listed {
    /// The hashes of the LL-HLS parts its final playlist lists.
    parts: Vec<blake3::Hash>,
    /// How many LL-HLS segments are listed without parts (EXT-X-GAP ones included).
    without_parts: usize,
    /// The hashes of the segments listed without EXT-X-GAP, as served: MPEG-TS, then fMP4.
    ts_segments: Vec<blake3::Hash>,
    ll_segments: Vec<blake3::Hash>,
    /// The numbers of the segments listed with EXT-X-GAP: MPEG-TS, then LL-HLS.
    ts_gaps: Vec<u64>,
    ll_gaps: Vec<u64>,
    /// Files of the LL-HLS segments listed with EXT-X-GAP left in the directory mirror.
    gap_files_on_disk: Vec<String>,
    /// LL-HLS part files in the directory mirror.
    parts_on_disk: usize,
}

impl Listed {
    /// How many listed parts are none of the origin's.
    fn foreign_parts(&self, origin: &Cut) -> usize {
        self.parts
            .iter()
            .filter(|p| !origin.parts.contains(p))
            .count()
    }

    /// Whether every segment listed without EXT-X-GAP is the origin's, in both renditions.
    fn segments_are_the_origins(&self, origin: &Cut) -> bool {
        self.ts_segments
            .iter()
            .all(|s| origin.segments.iter().any(|(_, hash)| hash == s))
            && self
                .ll_segments
                .iter()
                .all(|s| origin.ll_segments.contains(s))
    }
}

/// Where the new upstream of the gap tests stands when the relay reconnects: 200 ms past the
/// sample's fourth keyframe (at `keyframe_at`), so its cached GOP starts there. The position
/// of the first tag it has not published.
fn published_past(tags: &[FlvTag], keyframe_at: usize) -> usize {
    let keyframe_ms = tags[keyframe_at].timestamp;
    tags.iter()
        .position(|tag| tag.timestamp > keyframe_ms + 200)
        .expect("the sample goes on")
}

/// A relay's live HLS (1 s segments, every one kept listed, mirrored to a directory) on a
/// `relay` hub pulling `key()`.
struct RelayHls {
    relay: RelayHub,
    live: streamr_media::http::LiveHls,
    shutdown: tokio_util::sync::CancellationToken,
    hls_dir: tempfile::TempDir,
    notices: tokio::sync::broadcast::Receiver<streamr_media::http::PartNotice>,
}

impl RelayHls {
    fn start(relay: RelayHub) -> Self {
        use std::time::Duration;
        use streamr_media::http::{LiveHls, LiveHlsConfig};

        let shutdown = tokio_util::sync::CancellationToken::new();
        let hls_dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = LiveHlsConfig::default()
            .with_segments(Duration::from_secs(1), 4)
            .with_end_timing(Duration::from_secs(30), Duration::from_secs(30))
            .with_directory(hls_dir.path());
        // Every segment stays listed.
        config.window_segments = 30;
        let live = LiveHls::start(relay.clone(), config, shutdown.clone());
        let notices = live.part_notices();
        RelayHls {
            relay,
            live,
            shutdown,
            hls_dir,
            notices,
        }
    }

    /// Waits until live HLS has packaged everything: no part for a while, long enough that a
    /// packager slowed by a busy machine (a full test run beside a build) is not taken for one
    /// that is done.
    async fn settle(&mut self) {
        use std::time::Duration;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(1500), self.notices.recv()).await
        {}
    }

    /// What both playlists list now, checked against the HLS rules; a segment listed with
    /// EXT-X-GAP is not served.
    async fn listed(mut self) -> Listed {
        use std::time::Duration;
        use streamr_media::hls::{check_ll_playlist, ParsedPlaylist};
        use streamr_media::http::{LlLookup, LlRequest, PlaylistLookup};

        self.settle().await;
        let live = &self.live;
        let LlLookup::Ready(playlist) = live
            .ll_playlist(&key(), LlRequest::default(), Duration::ZERO)
            .await
        else {
            panic!("an LL-HLS playlist");
        };
        let playlist = String::from_utf8(playlist.to_vec()).expect("text");
        assert_eq!(check_ll_playlist(&playlist), vec![], "{playlist}");
        let mut listed = Listed::default();
        let mut parts = Vec::new();
        for line in playlist.lines() {
            let Some(uri) = line
                .strip_prefix("#EXT-X-PART:")
                .and_then(|attrs| attrs.split("URI=\"").nth(1))
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            let bytes = live
                .ll_file(&key(), uri, Duration::ZERO)
                .await
                .expect("a listed part is served");
            parts.push(blake3::hash(&bytes));
        }
        // Segments listed without parts: an EXTINF with no EXT-X-PART since the one before. Parts
        // are listed for the last three target durations only (RFC 8216bis 4.4.4.9): a segment
        // before the first part listed counts only when it is a GAP segment (its parts were
        // withdrawn), not when its parts aged out of that window.
        let mut without_parts = 0;
        let mut parts_since = 0;
        let mut any_part = false;
        let mut gap = false;
        for line in playlist.lines() {
            if line.starts_with("#EXT-X-PART:") {
                parts_since += 1;
                any_part = true;
            } else if line == "#EXT-X-GAP" {
                gap = true;
            } else if line.starts_with("#EXTINF:") {
                if parts_since == 0 && (any_part || std::mem::take(&mut gap)) {
                    without_parts += 1;
                }
                gap = false;
                parts_since = 0;
            }
        }
        // LL-HLS segments: a GAP one is not served, the others are.
        let mut gap = false;
        let mut msn = playlist
            .lines()
            .find_map(|line| line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("EXT-X-MEDIA-SEQUENCE");
        for line in playlist.lines() {
            if line == "#EXT-X-GAP" {
                gap = true;
            } else if !line.starts_with('#') && !line.is_empty() {
                assert_eq!(line, format!("{msn}.m4s"), "numbered in order");
                let served = live.ll_file(&key(), line, Duration::ZERO).await;
                if std::mem::take(&mut gap) {
                    assert_eq!(served, None, "a GAP segment is not served");
                    listed.ll_gaps.push(msn);
                } else {
                    listed
                        .ll_segments
                        .push(blake3::hash(&served.expect("a listed segment is served")));
                }
                msn += 1;
            }
        }
        // The directory mirror keeps no file of a GAP segment (parts written before the gap
        // included) once the playlist lists it so; it writes on its own thread.
        let mirror = self.hls_dir.path().join("live").join("show");
        let files_on_disk = || -> Vec<String> {
            std::fs::read_dir(&mirror)
                .map(|dir| {
                    dir.filter_map(|entry| entry.ok())
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let of_gaps = |files: &[String]| -> Vec<String> {
            files
                .iter()
                .filter(|name| {
                    name.ends_with(".m4s")
                        && name
                            .split('.')
                            .next()
                            .and_then(|msn| msn.parse::<u64>().ok())
                            .is_some_and(|msn| listed.ll_gaps.contains(&msn))
                })
                .cloned()
                .collect()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut files = files_on_disk();
        while !of_gaps(&files).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            files = files_on_disk();
        }
        listed.gap_files_on_disk = of_gaps(&files);
        listed.parts_on_disk = files
            .iter()
            .filter(|name| name.ends_with(".m4s") && name.matches('.').count() == 2)
            .count();
        // MPEG-TS.
        let PlaylistLookup::Ready(ts) = live.playlist(&key(), Duration::ZERO).await else {
            panic!("an MPEG-TS playlist");
        };
        let ts = ParsedPlaylist::parse(std::str::from_utf8(&ts).expect("text")).expect("valid");
        for segment in &ts.segments {
            let served = live.segment(&key(), segment.sequence);
            if segment.gap {
                assert_eq!(served, None, "a GAP segment is not served");
                listed.ts_gaps.push(segment.sequence);
            } else {
                listed
                    .ts_segments
                    .push(blake3::hash(&served.expect("a listed segment is served")));
            }
        }
        self.shutdown.cancel();
        listed.parts = parts;
        listed.without_parts = without_parts;
        listed
    }
}

/// What a relay's live HLS lists after the failover of [`relay_across_a_failover`] (its
/// upstream honouring `streamr_resume` when `resume`).
async fn listed_after_a_failover(
    tags: &[FlvTag],
    last_video: u32,
    published: usize,
    resume: bool,
) -> Listed {
    use futures_util::FutureExt;
    use std::time::Duration;

    let upstream = RelayHub::default();
    let origin = upstream.publish(key()).expect("publish upstream");
    send(&origin, &tags[..published]);

    let hls = RelayHls::start(RelayHub::default());
    let pull = hls
        .relay
        .publish_with(key(), Timeline::Upstream)
        .expect("publish relay");
    // Starts live HLS without waiting: its task runs when this one next waits (on one
    // thread, after the whole failover) or at once on another.
    let _ = hls.live.playlist(&key(), Duration::ZERO).now_or_never();
    let relayed = tags
        .iter()
        .position(|tag| tag.tag_type == FlvTagType::Video && tag.timestamp == last_video)
        .expect("the last video frame relayed");
    send(&pull, &tags[..=relayed]);
    pull.rejoin_upstream();
    let at = pull.resume_point().expect("a resume point");
    let mut next = if resume {
        upstream.subscribe_resuming(key(), at)
    } else {
        upstream.subscribe(key())
    }
    .expect("play the new upstream");
    send(&pull, &drain(&mut next));
    send(&origin, &tags[published..]);
    send(&pull, &drain(&mut next));
    let listed = hls.listed().await;
    drop(pull);
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_resuming_past_a_gap_lists_no_part_the_origin_did_not_cut() {
    let tags = crate::common::sample_tags();
    let origin = cut(&tags, false);
    let (keyframe_at, _) = split_at_keyframe(&tags, 3);
    let published = published_past(&tags, keyframe_at);
    // The relay lost its upstream `lost` video frames before the keyframe (and the audio
    // between). The new upstream ignores the resume point: its cached GOP starts at that
    // keyframe, past the relay's last frame, and the frames between are lost. The open
    // segment's parts from there on are not the origin's: they are not listed, whether or not
    // they keep the part rules (one frame lost keeps them).
    for lost in [1usize, 2] {
        let last_video = tags[..keyframe_at]
            .iter()
            .filter(|tag| tag.tag_type == FlvTagType::Video)
            .rev()
            .nth(lost)
            .expect("frames before the keyframe")
            .timestamp;
        let listed = listed_after_a_failover(&tags, last_video, published, false).await;
        assert!(
            listed.parts.len() >= 8,
            "{} parts listed",
            listed.parts.len()
        );
        assert_eq!(
            listed.foreign_parts(&origin),
            0,
            "{lost} frames lost: parts none of the origin's"
        );
        assert_eq!(
            listed.without_parts, 1,
            "{lost} frames lost: the segment open across the gap"
        );
        // That segment is listed with EXT-X-GAP in both renditions, under the same number;
        // every other segment listed is the origin's.
        assert_eq!(listed.ts_gaps.len(), 1, "{lost} frames lost: {listed:?}");
        assert_eq!(listed.ts_gaps, listed.ll_gaps);
        // The GAP segment's parts mirrored before the gap are deleted as it is marked; the
        // listed parts stay.
        assert_eq!(listed.gap_files_on_disk, Vec::<String>::new());
        assert!(listed.parts_on_disk >= 8, "{listed:?}");
        assert!(listed.ts_segments.len() >= 2, "{listed:?}");
        assert!(listed.ll_segments.len() >= 2, "{listed:?}");
        assert!(listed.segments_are_the_origins(&origin), "{listed:?}");

        // With resumption nothing is lost and nothing left out.
        let listed = listed_after_a_failover(&tags, last_video, published, true).await;
        assert_eq!(listed.foreign_parts(&origin), 0);
        assert_eq!(listed.without_parts, 0);
        assert_eq!((listed.ts_gaps.len(), listed.ll_gaps.len()), (0, 0));
        assert!(listed.segments_are_the_origins(&origin), "{listed:?}");
    }
}

/// The gap test above with live HLS started but not yet run when the gap comes: on one thread,
/// every frame (the gap included) is relayed before its task first reads.
#[tokio::test(flavor = "current_thread")]
async fn a_gap_relayed_before_live_hls_first_ran_is_still_its_gap() {
    let tags = crate::common::sample_tags();
    let origin = cut(&tags, false);
    let (keyframe_at, last_video) = split_at_keyframe(&tags, 3);
    let published = published_past(&tags, keyframe_at);
    let listed = listed_after_a_failover(&tags, last_video, published, false).await;
    assert_eq!(listed.foreign_parts(&origin), 0, "{listed:?}");
    assert_eq!(listed.ts_gaps.len(), 1, "{listed:?}");
    assert_eq!(listed.ts_gaps, listed.ll_gaps);
}

/// A relay whose live HLS fell so far behind a burst of frames that the ring dropped what it
/// had not read (its task starved of CPU) lists no segment or part of the origin's numbers
/// with other bytes: the segment open across the skip is listed with EXT-X-GAP, and the
/// segments after it are the origin's again.
#[tokio::test(flavor = "current_thread")]
async fn a_relay_whose_live_hls_fell_behind_the_ring_lists_only_the_origins_bytes() {
    use std::time::Duration;
    use streamr_media::relay::RelayConfig;

    let tags = crate::common::sample_tags();
    let origin = cut(&tags, false);
    let at_ms = |ms: u32| {
        tags.iter()
            .position(|tag| tag.timestamp >= ms)
            .expect("the sample goes on")
    };
    // About 48 KB a second; its own consumer may trail by twice the byte budget (about 0.8 s).
    let config = RelayConfig::default().with_viewer_max_lag(20_000, Duration::from_secs(10));
    let mut hls = RelayHls::start(RelayHub::new(config));
    let pull = hls
        .relay
        .publish_with(key(), Timeline::Upstream)
        .expect("publish relay");
    let _ = hls.live.playlist(&key(), Duration::ZERO).await;
    // Live HLS reads the first 3 s as they come (the segment from 2023 ms is open, with parts
    // listed)...
    send_paced(&pull, &tags[..at_ms(3_000)]).await;
    hls.settle().await;
    // ...then 1.3 s arrive while it does not run, and the ring drops what it had not read: it
    // goes on at the keyframe at 4023 ms.
    send(&pull, &tags[at_ms(3_000)..at_ms(4_300)]);
    send_paced(&pull, &tags[at_ms(4_300)..]).await;
    let listed = hls.listed().await;
    drop(pull);
    assert_eq!(listed.foreign_parts(&origin), 0, "{listed:?}");
    assert!(listed.parts.len() >= 4, "{listed:?}");
    assert_eq!(listed.ts_gaps.len(), 1, "{listed:?}");
    assert_eq!(listed.ts_gaps, listed.ll_gaps);
    assert!(listed.segments_are_the_origins(&origin), "{listed:?}");
}
