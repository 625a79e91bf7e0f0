//! HLS segmenter and playlists: offline remux checked with ffprobe/ffmpeg, the playlist rules on
//! live output (window, sequence, discontinuities, end), and identical segments for nodes that
//! join mid-stream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use streamr_media::codec::AvcDecoderConfig;
use streamr_media::flv::tag::classify_video;
use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::hls::{
    HlsDirectory, HlsStream, LivePlaylist, ParsedPlaylist, PlaylistConfig, PlaylistHistory,
    Segment, Segmenter, SegmenterConfig, SegmenterEvent,
};
use streamr_media::ts::FlvTsMuxer;

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/media")
        .join(name)
}

fn read_tags(name: &str) -> Vec<FlvTag> {
    FlvReader::read_all(&std::fs::read(media(name)).unwrap())
        .unwrap()
        .1
}

fn segments_of(events: Vec<SegmenterEvent>) -> Vec<Segment> {
    events
        .into_iter()
        .filter_map(|e| match e {
            SegmenterEvent::SegmentReady(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn segment_all(config: SegmenterConfig, tags: &[FlvTag]) -> Vec<Segment> {
    let mut segmenter = Segmenter::new(config);
    let mut segments = Vec::new();
    for tag in tags {
        segments.extend(segments_of(segmenter.push(tag).unwrap()));
    }
    segments.extend(segments_of(segmenter.finish()));
    segments
}

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().expect("ffmpeg/ffprobe must be installed");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn is_keyframe(tag: &FlvTag) -> bool {
    tag.tag_type == FlvTagType::Video
        && classify_video(&tag.data)
            .map(|i| i.is_keyframe && i.is_coded_frame())
            .unwrap_or(false)
}

fn is_sequence_header(tag: &FlvTag) -> bool {
    FlvTsMuxer::classify(tag)
        .ok()
        .flatten()
        .is_some_and(|i| i.is_sequence_header())
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn offline_segments_start_with_idr_keep_timestamps_and_play_cleanly() {
    let tags = read_tags("av_bframes.flv");
    let config = SegmenterConfig {
        segment_duration_ms: 2_000,
        target_duration_secs: 4,
    };
    let segments = segment_all(config, &tags);
    assert_eq!(segments.len(), 5, "10 s in 2 s segments");
    let dir = tempfile::tempdir().unwrap();
    let out = HlsDirectory::create(dir.path(), "index.m3u8").unwrap();
    let mut playlist = LivePlaylist::new(PlaylistConfig {
        target_duration_secs: 4,
        window_segments: None,
        ..PlaylistConfig::default()
    });
    for segment in &segments {
        assert!(segment.starts_with_keyframe);
        assert_eq!(segment.hash, blake3::hash(&segment.bytes));
        out.write_segment(segment).unwrap();
        playlist.push(segment, false);
    }
    playlist.end();
    out.write_playlist(&playlist).unwrap();

    let parsed =
        ParsedPlaylist::parse(&std::fs::read_to_string(out.playlist_path()).unwrap()).unwrap();
    assert!(parsed.ended);
    assert!(
        (parsed.total_duration() - 10.0).abs() < 0.1,
        "{}",
        parsed.total_duration()
    );

    let mut last_dts = None;
    let mut reordered = false;
    for segment in &segments {
        let path = out.segment_path(segment.sequence);
        let packets = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts,dts,flags",
                "-of",
                "csv=p=0",
            ])
            .arg(&path));
        let rows: Vec<Vec<&str>> = packets
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').collect())
            .collect();
        assert!(
            rows[0][2].starts_with('K'),
            "segment {} does not start with a keyframe",
            segment.sequence
        );
        let mut pts_order = Vec::new();
        for row in &rows {
            let dts: u64 = row[1].parse().unwrap();
            assert!(last_dts.is_none_or(|last| dts > last), "DTS not increasing");
            last_dts = Some(dts);
            pts_order.push(row[0].parse::<u64>().unwrap());
        }
        reordered |= pts_order.windows(2).any(|w| w[1] < w[0]);
        let frames = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-read_intervals",
                "%+#1",
                "-show_entries",
                "frame=pict_type,key_frame",
                "-of",
                "csv=p=0",
            ])
            .arg(&path));
        assert!(
            frames.starts_with("1,I"),
            "first frame of segment {} is {frames}",
            segment.sequence
        );
    }
    assert!(reordered, "B-frame presentation order lost");
    let decode = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(out.playlist_path())
        .args(["-f", "null", "-"]));
    assert_eq!(
        decode.trim(),
        "",
        "ffmpeg reported errors playing the playlist"
    );
}

#[test]
fn a_node_joining_mid_stream_cuts_identical_segments() {
    let tags = read_tags("av_bframes.flv");
    let config = SegmenterConfig {
        segment_duration_ms: 3_000,
        target_duration_secs: 6,
    };
    let full = segment_all(config, &tags);
    let headers: Vec<FlvTag> = tags
        .iter()
        .filter(|t| is_sequence_header(t))
        .cloned()
        .collect();
    assert_eq!(headers.len(), 2);
    let keyframes: Vec<usize> = (0..tags.len()).filter(|&i| is_keyframe(&tags[i])).collect();
    // Join at several keyframes, as a relay's GOP cache would deliver: headers, then the GOP.
    for &join in &keyframes[1..6] {
        let mut late_tags = headers.clone();
        late_tags.extend(
            tags[join..]
                .iter()
                .filter(|t| !is_sequence_header(t))
                .cloned(),
        );
        let mut joining = Segmenter::new(config).joining_mid_stream();
        let mut late = Vec::new();
        for tag in &late_tags {
            late.extend(segments_of(joining.push(tag).unwrap()));
        }
        late.extend(segments_of(joining.finish()));
        // The segment opened at the joining keyframe is cut but not listed: whether the stream's
        // own segment starts there depends on the keyframe before, which this node never saw.
        let joined_at = u64::from(tags[join].timestamp);
        let after = full
            .iter()
            .filter(|s| s.start_timestamp_ms > joined_at)
            .count();
        assert!(late.len() >= 2 && late.len() + 1 >= after);
        assert!(late[0].start_timestamp_ms > joined_at);
        assert_eq!(late[0].sequence, 0, "an unlisted segment takes no number");
        for segment in &late {
            let twin = full
                .iter()
                .find(|s| s.start_timestamp_ms == segment.start_timestamp_ms)
                .unwrap_or_else(|| {
                    panic!(
                        "no full-stream segment starts at {}",
                        segment.start_timestamp_ms
                    )
                });
            assert_eq!(
                twin.hash, segment.hash,
                "segment at {} ms differs",
                segment.start_timestamp_ms
            );
            assert_eq!(twin.bytes, segment.bytes);
            assert_eq!(twin.duration_ms, segment.duration_ms);
        }
    }
    // Segmenting twice gives identical bytes and hashes.
    let again = segment_all(config, &tags);
    assert_eq!(again, full);
}

/// Shifts every tag by `offset_ms`, as a long-running publisher's clock would be.
fn shifted(tags: &[FlvTag], offset_ms: u32) -> impl Iterator<Item = FlvTag> + '_ {
    tags.iter().map(move |t| FlvTag {
        timestamp: t.timestamp + offset_ms,
        ..t.clone()
    })
}

#[test]
fn live_playlist_keeps_its_rules_across_republish_and_end() {
    let tags = read_tags("av_bframes.flv");
    let config = SegmenterConfig {
        segment_duration_ms: 1_000,
        target_duration_secs: 2,
    };
    let mut stream = HlsStream::new(
        config,
        PlaylistConfig {
            segment_uri_prefix: "live/".into(),
            ..PlaylistConfig::default()
        },
    );
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    stream.set_program_date_time(start);
    let mut history = PlaylistHistory::new();
    let mut total_segments = 0usize;
    let mut observe =
        |stream: &HlsStream, events: &[SegmenterEvent], history: &mut PlaylistHistory| {
            let ready = events
                .iter()
                .filter(|e| matches!(e, SegmenterEvent::SegmentReady(_)))
                .count();
            if ready == 0 {
                return;
            }
            total_segments += ready;
            let parsed = history.observe(&stream.playlist().render()).unwrap();
            assert!(parsed.is_live() || parsed.ended);
            if total_segments >= 8 {
                parsed.check_window().unwrap();
            }
            assert!(parsed
                .segments
                .iter()
                .all(|s| s.uri.starts_with("live/") && s.program_date_time.is_some()));
        };
    // First publish, 10 s from t = 0.
    for tag in &tags {
        let events = stream.push(tag).unwrap();
        observe(&stream, &events, &mut history);
    }
    // The publisher reconnects; its clock restarts.
    let events = stream.discontinuity();
    observe(&stream, &events, &mut history);
    let text_before = stream.playlist().render();
    assert!(!text_before.contains("#EXT-X-DISCONTINUITY\n"));
    let (early, late): (Vec<&FlvTag>, Vec<&FlvTag>) =
        tags.iter().partition(|t| t.timestamp < 1_500);
    for tag in early {
        let events = stream.push(tag).unwrap();
        observe(&stream, &events, &mut history);
    }
    let text = stream.playlist().render();
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    for tag in late {
        let events = stream.push(tag).unwrap();
        observe(&stream, &events, &mut history);
    }
    let parsed = ParsedPlaylist::parse(&stream.playlist().render()).unwrap();
    assert_eq!(
        parsed.discontinuity_sequence, 1,
        "the discontinuity left the window"
    );
    // A third publish without notice (timestamps jump back) is detected from the clock.
    for tag in shifted(&tags, 0) {
        let events = stream.push(&tag).unwrap();
        observe(&stream, &events, &mut history);
    }
    // Keep publishing until both discontinuities left the window.
    for tag in shifted(&tags, 10_000) {
        let events = stream.push(&tag).unwrap();
        observe(&stream, &events, &mut history);
    }
    let parsed = ParsedPlaylist::parse(&stream.playlist().render()).unwrap();
    assert_eq!(
        parsed.discontinuity_sequence,
        2,
        "{}",
        stream.playlist().render()
    );
    assert!(parsed.media_sequence > 20);
    // Memory is bounded: old segments are gone, listed ones are served.
    assert!(stream.playlist().segment(0).is_none());
    for segment in &parsed.segments {
        assert!(stream.playlist().segment(segment.sequence).is_some());
    }
    let events = stream.finish();
    assert!(events.contains(&SegmenterEvent::Ended));
    observe(&stream, &events, &mut history);
    let ended = ParsedPlaylist::parse(&stream.playlist().render()).unwrap();
    assert!(ended.ended);
    assert!(stream
        .playlist()
        .render()
        .contains("#EXT-X-PROGRAM-DATE-TIME:2026-"));
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn audio_only_streams_are_cut_by_time() {
    let tags = read_tags("audio_only.flv");
    let config = SegmenterConfig {
        segment_duration_ms: 2_000,
        target_duration_secs: 3,
    };
    let segments = segment_all(config, &tags);
    // 8 s of audio in 2 s segments (the encoder's last frame may spill just past 8 s).
    assert!(
        (4..=5).contains(&segments.len()),
        "{} segments",
        segments.len()
    );
    for segment in &segments[..3] {
        assert!(
            (1_950..=2_050).contains(&segment.duration_ms),
            "{}",
            segment.duration_ms
        );
        assert!(
            segment.start_timestamp_ms % 2_000 < 30,
            "{}",
            segment.start_timestamp_ms
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = HlsDirectory::create(dir.path(), "audio.m3u8").unwrap();
    let mut playlist = LivePlaylist::new(PlaylistConfig {
        target_duration_secs: 3,
        window_segments: None,
        ..PlaylistConfig::default()
    });
    for segment in &segments {
        out.write_segment(segment).unwrap();
        playlist.push(segment, false);
    }
    playlist.end();
    out.write_playlist(&playlist).unwrap();
    let decode = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(out.playlist_path())
        .args(["-f", "null", "-"]));
    assert_eq!(decode.trim(), "");
}

#[test]
fn a_gop_longer_than_the_limit_ends_its_segment_and_resumes_at_the_next_keyframe() {
    // Keyframes every 2 s but segments limited to 1 s: a segment is never cut before a
    // non-keyframe; it ends where it reaches the limit and the next starts at a keyframe.
    let tags = read_tags("video_only.flv");
    let config = SegmenterConfig {
        segment_duration_ms: 1_000,
        target_duration_secs: 1,
    };
    let segments = segment_all(config, &tags);
    assert_eq!(segments.len(), 3, "one per keyframe");
    assert!(segments.iter().all(|s| s.starts_with_keyframe));
    assert!(segments.iter().skip(1).all(|s| s.discontinuity));
    assert!(
        segments.iter().all(|s| s.duration_ms <= 1_000),
        "EXTINF must round to <= 1"
    );
    let mut playlist = LivePlaylist::new(PlaylistConfig {
        target_duration_secs: 1,
        window_segments: None,
        ..PlaylistConfig::default()
    });
    for segment in &segments {
        playlist.push(segment, true);
    }
    ParsedPlaylist::parse(&playlist.render()).unwrap();
}

#[test]
fn a_codec_change_starts_a_discontinuous_segment() {
    let tags = read_tags("video_only.flv");
    let header = tags.iter().find(|t| is_sequence_header(t)).unwrap().clone();
    let mut config = AvcDecoderConfig::parse(&header.data[5..]).unwrap();
    config.level += 1;
    let mut body = header.data[..5].to_vec();
    body.extend_from_slice(&config.encode());
    let changed = FlvTag {
        timestamp: 3_000,
        data: Bytes::from(body),
        ..header.clone()
    };

    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut segments = Vec::new();
    for tag in tags.iter().filter(|t| t.timestamp < 3_000) {
        segments.extend(segments_of(segmenter.push(tag).unwrap()));
    }
    // The same configuration again changes nothing; a new one closes the segment.
    assert!(segmenter.push(&header).unwrap().is_empty());
    let closed = segments_of(segmenter.push(&changed).unwrap());
    assert_eq!(closed.len(), 1);
    assert!(!closed[0].discontinuity);
    segments.extend(closed);
    for tag in tags.iter().filter(|t| t.timestamp >= 3_000) {
        segments.extend(segments_of(segmenter.push(tag).unwrap()));
    }
    segments.extend(segments_of(segmenter.finish()));
    assert!(!segments[0].discontinuity);
    assert!(segments[1].discontinuity);
    assert_eq!(segments.iter().filter(|s| s.discontinuity).count(), 1);
}

mod hostile_timelines {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Real tags with a disturbed clock (pauses, jumps back and forward, tags dropped) and
        /// garbage tags mixed in: the segmenter never panics, segments are whole packets with
        /// consecutive sequence numbers, and every duration rounds to at most the target.
        #[test]
        fn disturbed_timelines_keep_the_playlist_rules(
            edits in proptest::collection::vec((0usize..400, -20_000i64..20_000, any::<bool>()), 0..12),
            garbage in proptest::collection::vec((0usize..400, proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
            target in 1u32..4,
        ) {
            let tags = read_tags("av_bframes.flv");
            let mut offset = 0i64;
            let mut disturbed = Vec::new();
            for (index, tag) in tags.iter().enumerate() {
                for (at, shift, drop) in &edits {
                    if *at == index {
                        offset += shift;
                        if *drop { continue; }
                    }
                }
                for (at, body) in &garbage {
                    if *at == index {
                        disturbed.push(FlvTag { data: Bytes::from(body.clone()), ..tag.clone() });
                    }
                }
                let timestamp = (i64::from(tag.timestamp) + offset).max(0) as u32;
                disturbed.push(FlvTag { timestamp, ..tag.clone() });
            }
            let config = SegmenterConfig { segment_duration_ms: target * 500, target_duration_secs: target };
            let mut segmenter = Segmenter::new(config);
            let mut segments = Vec::new();
            for tag in &disturbed {
                if let Ok(events) = segmenter.push(tag) {
                    segments.extend(segments_of(events));
                }
            }
            segments.extend(segments_of(segmenter.finish()));
            let mut playlist = LivePlaylist::new(PlaylistConfig { target_duration_secs: target, window_segments: None, ..PlaylistConfig::default() });
            for (i, segment) in segments.iter().enumerate() {
                prop_assert_eq!(segment.bytes.len() % 188, 0);
                prop_assert_eq!(segment.sequence, i as u64);
                playlist.push(segment, false);
            }
            playlist.end();
            let parsed = ParsedPlaylist::parse(&playlist.render());
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
        }
    }
}
