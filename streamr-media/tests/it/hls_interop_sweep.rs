//! An interop sweep over streams a user may push that the repository has no sample for: ffmpeg
//! makes a few seconds of each (variable frame rate, no `onMetaData` at all, 1, 59.94 and
//! 120 fps, an odd resolution, High profile with B-frames, High 4:4:4, video only, audio-only
//! MP3, AAC at 22.05 kHz mono, HE-AAC when the build has an encoder for it, a GOP longer than
//! any segment may last, a keyframe on every frame), and each goes through an origin's live
//! HLS and a friend's that joins it mid-stream, as a relay's replay of its upstream's cached GOP
//! does. Checked: every version of every playlist (MPEG-TS and LL-HLS) keeps our checkers'
//! rules, every segment the friend lists has the origin's bytes, and every segment of both
//! renditions is read by ffprobe on its own without an error, starting with a keyframe.
//!
//! The media is made offline (not in real time) and the cases run side by side: the sweep
//! costs a few seconds.

use std::path::Path;
use std::process::Command;

use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::hls::{
    check_ll_playlist, LivePlaylist, LlEvent, LlHlsStream, LlPackagerConfig, LlSegment,
    PlaylistConfig, PlaylistHistory, Segment, SegmenterConfig, SegmenterEvent,
};
use streamr_test_support::require_tool;

/// One stream: its name, ffmpeg's input and encoding arguments, and whether it has video and
/// a track fMP4 carries.
struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    video: bool,
    fmp4: bool,
}

const VIDEO: [&str; 6] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
];
const AAC: [&str; 2] = ["-c:a", "aac"];

fn tone(rate: &str) -> Vec<&'static str> {
    let input = match rate {
        "22050" => "sine=frequency=440:sample_rate=22050",
        _ => "sine=frequency=440:sample_rate=44100",
    };
    vec!["-f", "lavfi", "-i", input]
}

fn picture(spec: &'static str) -> Vec<&'static str> {
    vec!["-f", "lavfi", "-i", spec]
}

fn cases() -> Vec<Case> {
    let av = |name, spec, seconds: &'static str, extra: &[&'static str]| {
        let mut args = picture(spec);
        args.extend(tone("44100"));
        args.extend(["-t", seconds]);
        args.extend(VIDEO);
        args.extend(extra);
        args.extend(AAC);
        Case {
            name,
            args,
            video: true,
            fmp4: true,
        }
    };
    let mut cases = vec![
        av(
            "variable frame rate",
            "testsrc2=size=160x90:rate=30",
            "6",
            &[
                "-vf",
                "select='lt(random(0)\\,0.55)'",
                "-fps_mode",
                "vfr",
                "-g",
                "30",
            ],
        ),
        av(
            "no onMetaData",
            "testsrc2=size=160x90:rate=30",
            "6",
            &["-g", "30", "-flvflags", "no_metadata"],
        ),
        av("1 fps", "testsrc2=size=160x90:rate=1", "10", &["-g", "2"]),
        av(
            "59.94 fps",
            "testsrc2=size=160x90:rate=60000/1001",
            "6",
            &["-g", "60"],
        ),
        av(
            "120 fps",
            "testsrc2=size=160x90:rate=120",
            "5",
            &["-g", "120"],
        ),
        av(
            "odd resolution",
            "testsrc2=size=202x114:rate=25",
            "6",
            &["-g", "50"],
        ),
        av(
            "GOP longer than a segment may last",
            "testsrc2=size=160x90:rate=10",
            "30",
            &["-g", "140", "-keyint_min", "140", "-sc_threshold", "0"],
        ),
        av(
            "a keyframe on every frame",
            "testsrc2=size=160x90:rate=30",
            "5",
            &["-g", "1"],
        ),
        av(
            "High profile with 3 B-frames",
            "testsrc2=size=160x90:rate=25",
            "6",
            &[
                "-preset",
                "medium",
                "-profile:v",
                "high",
                "-bf",
                "3",
                "-g",
                "50",
            ],
        ),
        av(
            "High 4:4:4",
            "testsrc2=size=160x90:rate=25",
            "6",
            &["-pix_fmt", "yuv444p", "-g", "50"],
        ),
    ];
    let mut video_only = picture("testsrc2=size=160x90:rate=25");
    video_only.extend(["-t", "6"]);
    video_only.extend(VIDEO);
    video_only.extend(["-g", "50"]);
    cases.push(Case {
        name: "video only",
        args: video_only,
        video: true,
        fmp4: true,
    });
    let mut mp3 = tone("44100");
    mp3.extend(["-t", "6", "-c:a", "libmp3lame", "-b:a", "64k"]);
    cases.push(Case {
        name: "audio-only MP3",
        args: mp3,
        video: false,
        fmp4: false,
    });
    let mut aac = tone("22050");
    aac.extend(["-t", "6", "-ac", "1"]);
    aac.extend(AAC);
    cases.push(Case {
        name: "audio-only AAC 22.05 kHz mono",
        args: aac,
        video: false,
        fmp4: true,
    });
    let encoders = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    if encoders.contains("libfdk_aac") {
        let mut he = tone("44100");
        he.extend(["-t", "6", "-c:a", "libfdk_aac", "-profile:a", "aac_he"]);
        cases.push(Case {
            name: "audio-only HE-AAC",
            args: he,
            video: false,
            fmp4: true,
        });
    } else {
        eprintln!("this ffmpeg has no HE-AAC encoder (libfdk_aac): that case is left out");
    }
    cases
}

/// The case's FLV tags, made by ffmpeg.
fn generate(dir: &Path, case: &Case) -> Vec<FlvTag> {
    let path = dir.join(format!("{}.flv", case.name.replace(' ', "_")));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-nostdin"])
        .args(&case.args)
        .args(["-f", "flv"])
        .arg(&path)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}: ffmpeg failed: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&path).expect("ffmpeg's output");
    let mut reader = FlvReader::new();
    reader.push(&bytes);
    let mut tags = Vec::new();
    while let Ok(Some(tag)) = reader.next_tag() {
        tags.push(tag);
    }
    assert!(tags.len() > 10, "{}: {} tags", case.name, tags.len());
    tags
}

/// What a friend joining at tag `from` receives: the metadata and sequence headers sent
/// before it (as a relay's upstream sends them first), then the tags from there on.
fn joined_at(tags: &[FlvTag], from: usize) -> Vec<FlvTag> {
    let mut out: Vec<FlvTag> = tags[..from]
        .iter()
        .filter(|tag| {
            tag.tag_type == FlvTagType::ScriptData
                || tag.data.get(1) == Some(&0)
                    && (tag.tag_type == FlvTagType::Video && tag.data[0] & 0x0F == 7
                        || tag.tag_type == FlvTagType::Audio && tag.data[0] >> 4 == 10)
        })
        .cloned()
        .collect();
    out.extend_from_slice(&tags[from..]);
    out
}

/// Where a friend joins: the first video keyframe (any audio frame in an audio-only stream)
/// past a quarter of the stream, or the first keyframe when there is no later one.
fn join_point(tags: &[FlvTag], video: bool) -> usize {
    let last = tags.last().map_or(0, |t| t.timestamp);
    let starts = |tag: &FlvTag| {
        if video {
            tag.tag_type == FlvTagType::Video
                && tag.data.first().is_some_and(|b| b >> 4 == 1)
                && tag.data.get(1) == Some(&1)
        } else {
            tag.tag_type == FlvTagType::Audio && tag.data.get(1) != Some(&0)
        }
    };
    tags.iter()
        .position(|tag| starts(tag) && tag.timestamp * 4 >= last)
        .or_else(|| tags.iter().position(starts))
        .expect("a place to join")
}

/// What one node lists.
#[derive(Default)]
struct Listed {
    ts: Vec<Segment>,
    ll: Vec<LlSegment>,
    /// Segments listed without parts (their frames would break the part rules).
    without_parts: usize,
}

/// Cuts `tags` as a node's live HLS does, checking every playlist version.
fn node(name: &str, tags: &[FlvTag], joining: bool) -> Listed {
    let config = SegmenterConfig {
        segment_duration_ms: 2_000,
        target_duration_secs: 12,
    };
    let stream = LlHlsStream::new(config, LlPackagerConfig::default(), 6, "");
    let mut stream = if joining {
        stream.joining_mid_stream()
    } else {
        stream
    };
    let mut ts_playlist = LivePlaylist::new(PlaylistConfig {
        target_duration_secs: config.target_duration_secs,
        ..PlaylistConfig::default()
    });
    let mut history = PlaylistHistory::new();
    let mut listed = Listed::default();
    let mut outputs = Vec::new();
    for tag in tags {
        outputs.push(stream.push(tag).expect("packaged"));
        let output = outputs.last().expect("just pushed");
        if !output.ll.is_empty() && stream.playlist().has_segments() {
            let text = stream.playlist().render(false);
            let violations = check_ll_playlist(&text);
            assert!(violations.is_empty(), "{name}: {violations:#?}\n{text}");
        }
    }
    outputs.push(stream.finish().expect("finished"));
    for output in outputs {
        for event in output.ts {
            if let SegmenterEvent::SegmentReady(segment) = event {
                if let Some(target) = stream.segmenter().target_duration_secs() {
                    ts_playlist.set_target_duration(target);
                }
                ts_playlist.push(&segment, false);
                let text = ts_playlist.render();
                if let Err(violation) = history.observe(&text) {
                    panic!("{name}: MPEG-TS playlist: {violation}\n{text}");
                }
                listed.ts.push(segment);
            }
        }
        for event in output.ll {
            match event {
                LlEvent::SegmentReady(segment) => listed.ll.push(segment),
                LlEvent::PartsWithdrawn { .. } => listed.without_parts += 1,
                _ => {}
            }
        }
    }
    let text = stream.playlist().render(false);
    let violations = check_ll_playlist(&text);
    assert!(violations.is_empty(), "{name}: {violations:#?}\n{text}");
    listed
}

/// ffprobe reads `bytes` on its own without an error; with `video`, its first video frame is
/// a keyframe.
fn probe(dir: &Path, file: &str, bytes: &[u8], video: bool) {
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("written");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "frame=media_type,key_frame",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{file}: ffprobe: {stderr}"
    );
    let frames = String::from_utf8_lossy(&out.stdout);
    assert!(!frames.trim().is_empty(), "{file}: no frame decoded");
    if video {
        let first = frames.lines().find(|l| l.starts_with("video"));
        // `video,1` (and a trailing separator, for side data).
        assert!(
            first.is_some_and(|l| l.trim_end_matches(',') == "video,1"),
            "{file}: first video frame: {first:?}"
        );
    }
}

fn sweep(dir: &Path, case: &Case) {
    let tags = generate(dir, case);
    let origin = node(case.name, &tags, false);
    let friend_tags = joined_at(&tags, join_point(&tags, case.video));
    let friend = node(case.name, &friend_tags, true);
    assert!(
        origin.ts.len() >= 2,
        "{}: the origin listed {} segments",
        case.name,
        origin.ts.len()
    );
    assert!(
        !friend.ts.is_empty(),
        "{}: the friend listed nothing",
        case.name
    );
    for segment in &friend.ts {
        assert!(
            origin
                .ts
                .iter()
                .any(|o| o.start_timestamp_ms == segment.start_timestamp_ms
                    && o.hash == segment.hash),
            "{}: the friend's MPEG-TS segment at {} ms is none of the origin's",
            case.name,
            segment.start_timestamp_ms
        );
    }
    assert_eq!(!origin.ll.is_empty(), case.fmp4, "{}: fMP4", case.name);
    for segment in &friend.ll {
        assert!(
            origin
                .ll
                .iter()
                .any(|o| o.start_timestamp_ms == segment.start_timestamp_ms
                    && o.hash == segment.hash
                    && o.part_hashes == segment.part_hashes),
            "{}: the friend's fMP4 segment at {} ms is none of the origin's",
            case.name,
            segment.start_timestamp_ms
        );
    }
    eprintln!(
        "{}: {} MPEG-TS and {} fMP4 segments, {} of them without parts",
        case.name,
        origin.ts.len(),
        origin.ll.len(),
        origin.without_parts
    );
    let stem = case.name.replace(' ', "_");
    for segment in &origin.ts {
        assert!(
            !case.video || segment.starts_with_keyframe,
            "{}: segment {}",
            case.name,
            segment.sequence
        );
        probe(
            dir,
            &format!("{stem}-{}.ts", segment.sequence),
            &segment.bytes,
            case.video,
        );
    }
    for segment in &origin.ll {
        let mut bytes = segment.init.bytes.to_vec();
        bytes.extend_from_slice(&segment.bytes);
        probe(
            dir,
            &format!("{stem}-{}.mp4", segment.sequence),
            &bytes,
            case.video,
        );
    }
}

/// Runs one case, returning its failure.
fn run_case(dir: &Path, case: &Case) -> Option<String> {
    let panic =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sweep(dir, case))).err()?;
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    Some(format!("{}: {message}", case.name))
}

#[test]
#[ignore = "interop: needs ffmpeg and ffprobe"]
fn streams_without_a_sample_go_through_an_origin_and_a_friend_cleanly() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases = cases();
    // Two at a time: the machine running the suite has two cores.
    let dir = dir.path();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = [0, 1]
            .into_iter()
            .map(|half| {
                let cases = &cases;
                scope.spawn(move || {
                    cases
                        .iter()
                        .skip(half)
                        .step_by(2)
                        .filter_map(|case| run_case(dir, case))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a sweep thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// How long ffprobe reads the video in `bytes` to last, in milliseconds: from its first
/// packet's presentation time to the end of its last.
fn probed_video_span_ms(dir: &Path, file: &str, bytes: &[u8]) -> u64 {
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("written");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().parse::<f64>());
            Some((fields.next()?.ok()?, fields.next()?.ok()?))
        })
        .collect();
    assert!(!packets.is_empty(), "{file}: no video packet: {text:?}");
    let first = packets.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let end = packets
        .iter()
        .map(|p| p.0 + p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    ((end - first) * 1_000.0).round() as u64
}

#[test]
#[ignore = "interop: needs ffmpeg and ffprobe"]
fn a_forward_timestamp_jump_goes_through_an_origin_and_a_friend_cleanly() {
    // 12 s of 25 fps video in 2 s GOPs with AAC, made by ffmpeg; from 6 s on the timestamps
    // are 30 s later, as a publisher whose clock jumped forward sends them (the audio reaches
    // the jump first). A friend joins at the second keyframe, before the jump.
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir = dir.path();
    let mut args = picture("testsrc2=size=160x90:rate=25");
    args.extend(tone("44100"));
    args.extend(["-t", "12"]);
    args.extend(VIDEO);
    args.extend(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"]);
    args.extend(AAC);
    let case = Case {
        name: "forward jump",
        args,
        video: true,
        fmp4: true,
    };
    let mut tags = generate(dir, &case);
    for tag in &mut tags {
        if tag.timestamp >= 6_000 {
            tag.timestamp += 30_000;
        }
    }
    let is_keyframe = |tag: &FlvTag| {
        tag.tag_type == FlvTagType::Video
            && tag.data.first().is_some_and(|b| b >> 4 == 1)
            && tag.data.get(1) == Some(&1)
    };
    // ffmpeg starts the video a frame of audio in: keyframes at 23 ms, 2.023 s, ...
    let keyframes: Vec<u64> = tags
        .iter()
        .filter(|tag| is_keyframe(tag))
        .map(|tag| u64::from(tag.timestamp))
        .collect();
    assert_eq!(keyframes.len(), 6, "{keyframes:?}");
    let second_keyframe = tags
        .iter()
        .position(|tag| is_keyframe(tag) && u64::from(tag.timestamp) == keyframes[1])
        .expect("a second keyframe");
    let origin = node(case.name, &tags, false);
    let friend = node(case.name, &joined_at(&tags, second_keyframe), true);
    let cuts = |segments: &[Segment]| -> Vec<(u64, u64, bool)> {
        segments
            .iter()
            .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity))
            .collect()
    };
    // One segment per GOP, each lasting its 2 s, the first after the jump discontinuous.
    let expected: Vec<(u64, u64, bool)> = keyframes
        .iter()
        .map(|&at| (at, 2_000, at == keyframes[3]))
        .collect();
    assert_eq!(cuts(&origin.ts), expected);
    let ll: Vec<(u64, u64, bool)> = origin
        .ll
        .iter()
        .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity))
        .collect();
    assert_eq!(ll, expected);
    // The friend lists the origin's segments from the one after its first on, the jump's too.
    let ts_bytes = |segments: &[Segment]| -> Vec<(u64, u64, bool, blake3::Hash)> {
        segments
            .iter()
            .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity, s.hash))
            .collect()
    };
    assert_eq!(ts_bytes(&friend.ts), ts_bytes(&origin.ts[2..]));
    let ll_bytes = |segments: &[LlSegment]| -> Vec<(u64, blake3::Hash, Vec<blake3::Hash>)> {
        segments
            .iter()
            .map(|s| (s.start_timestamp_ms, s.hash, s.part_hashes.clone()))
            .collect()
    };
    assert_eq!(ll_bytes(&friend.ll), ll_bytes(&origin.ll[2..]));
    // ffprobe decodes each segment and reads its video as long as its EXTINF says.
    let check = |file: String, bytes: &[u8], duration_ms: u64| {
        probe(dir, &file, bytes, true);
        let probed = probed_video_span_ms(dir, &file, bytes);
        assert!(
            probed.abs_diff(duration_ms) <= 100,
            "{file}: ffprobe reads {probed} ms, EXTINF {duration_ms} ms"
        );
        eprintln!("{file}: EXTINF {duration_ms} ms, ffprobe {probed} ms");
    };
    for segment in &origin.ts {
        let file = format!("jump-{}.ts", segment.sequence);
        check(file, &segment.bytes, segment.duration_ms);
    }
    for segment in &origin.ll {
        let mut bytes = segment.init.bytes.to_vec();
        bytes.extend_from_slice(&segment.bytes);
        let file = format!("jump-{}.mp4", segment.sequence);
        check(file, &bytes, segment.duration_ms);
    }
}
