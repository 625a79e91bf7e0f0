//! HLS segments of real x264 output with every kind of GOP: x264's default keyint of 250, short
//! (0.5 s) and long (10 s) GOPs, and irregular ones. Checked with ffprobe/ffmpeg: every segment
//! starts with a keyframe and decodes on its own, the playlist's target duration follows the GOP
//! and holds every segment, and ffmpeg reads the whole playlist without a single warning (the
//! continuity counters run on across segments).

use std::path::{Path, PathBuf};
use std::process::Command;

use streamr_media::flv::{FlvReader, FlvTag};
use streamr_media::hls::{
    HlsDirectory, HlsStream, ParsedPlaylist, PlaylistConfig, Segment, SegmenterConfig,
    SegmenterEvent,
};
use streamr_media::ts::{PAT_PID, PMT_PID};

/// Encodes `seconds` of 30 fps test video (and AAC audio) with x264 and the given extra
/// options into an FLV file.
fn encode(dir: &Path, name: &str, seconds: u32, x264: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=30:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=44100:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(x264)
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

fn read_tags(path: &Path) -> Vec<FlvTag> {
    FlvReader::read_all(&std::fs::read(path).unwrap())
        .unwrap()
        .1
}

/// Cuts the tags into a VOD playlist in `dir`, as live HLS would (target duration derived from
/// the stream), and returns the segments.
fn segment_into(dir: &Path, tags: &[FlvTag]) -> (HlsDirectory, Vec<Segment>) {
    let mut stream = HlsStream::new(
        SegmenterConfig::default(),
        PlaylistConfig {
            window_segments: None,
            ..PlaylistConfig::default()
        },
    );
    let mut segments = Vec::new();
    let mut collect = |events: Vec<SegmenterEvent>| {
        for event in events {
            if let SegmenterEvent::SegmentReady(segment) = event {
                segments.push(segment);
            }
        }
    };
    for tag in tags {
        collect(stream.push(tag).unwrap());
    }
    collect(stream.finish());
    let out = HlsDirectory::create(dir, "index.m3u8").unwrap();
    for segment in &segments {
        out.write_segment(segment).unwrap();
    }
    out.write_playlist(stream.playlist()).unwrap();
    (out, segments)
}

fn stderr_of(command: &mut Command) -> String {
    let output = command.output().expect("ffmpeg/ffprobe must be installed");
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every segment starts with an I-frame that ffprobe marks as a keyframe, and decodes alone
/// without a single error. One ffprobe per segment reads every packet's flags and decodes every
/// frame of every stream (`-show_frames` decodes video and audio as `ffmpeg -f null` would),
/// printing decoder errors to stderr.
fn assert_segments_start_with_keyframes(out: &HlsDirectory, segments: &[Segment]) {
    for segment in segments {
        let path = out.segment_path(segment.sequence);
        assert!(segment.starts_with_keyframe, "segment {}", segment.sequence);
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .arg("stream=index,codec_type:packet=stream_index,flags:frame=stream_index,key_frame,pict_type")
            .args(["-of", "compact"])
            .arg(&path)
            .output()
            .expect("ffprobe must be installed");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "ffprobe failed on segment {}: {stderr}",
            segment.sequence
        );
        assert_eq!(
            stderr.trim(),
            "",
            "segment {} does not decode on its own",
            segment.sequence
        );
        let probe = Probe::parse(&String::from_utf8_lossy(&output.stdout));
        let first_packet = probe.first("packet", "flags");
        assert!(
            first_packet.starts_with('K'),
            "segment {} starts with packet flags {first_packet:?}",
            segment.sequence
        );
        let first_frame = format!(
            "{},{}",
            probe.first("frame", "key_frame"),
            probe.first("frame", "pict_type")
        );
        assert!(
            first_frame.starts_with("1,I"),
            "segment {}: first frame {first_frame:?}",
            segment.sequence
        );
    }
}

/// ffprobe's `compact` output of one file: each line a section name and its `key=value` fields.
struct Probe {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Probe {
    fn parse(text: &str) -> Probe {
        let sections = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('|');
                let name = fields.next()?.to_owned();
                let fields = fields
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Some((name, fields))
            })
            .collect();
        Probe { sections }
    }

    fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The video stream's index (the first stream ffprobe reports as video).
    fn video_index(&self) -> String {
        self.sections
            .iter()
            .filter(|(name, _)| name == "stream")
            .find(|(_, f)| Self::field(f, "codec_type") == Some("video"))
            .and_then(|(_, f)| Self::field(f, "index"))
            .expect("a video stream")
            .to_owned()
    }

    /// `key` of the first `section` (packet or frame) of the video stream, in read order.
    fn first(&self, section: &str, key: &str) -> String {
        let video = self.video_index();
        self.sections
            .iter()
            .filter(|(name, f)| {
                name == section && Self::field(f, "stream_index") == Some(video.as_str())
            })
            .find_map(|(_, f)| Self::field(f, key))
            .unwrap_or_else(|| panic!("no video {section} with {key}"))
            .to_owned()
    }
}

/// ffmpeg reads the whole playlist (video and audio) without a warning: no `Packet corrupt` at
/// segment boundaries, no missing parameter sets. Segment to segment, every media PID's
/// continuity counter goes on by one. (Each segment's one PAT and PMT start from 0: a
/// segment's bytes must not depend on how the node that cut it numbers its segments, since
/// viewers check them against the origin's hashes. A repeated table counter is a duplicate
/// packet, which ISO/IEC 13818-1 allows; nginx-rtmp writes its tables the same way.)
fn assert_playlist_reads_cleanly(out: &HlsDirectory, segments: &[Segment]) {
    const TABLE_PIDS: [u16; 2] = [PAT_PID, PMT_PID];
    let mut last: std::collections::BTreeMap<u16, u8> = std::collections::BTreeMap::new();
    for segment in segments {
        for packet in segment.bytes.chunks(188) {
            assert_eq!(packet[0], 0x47, "segment {}: sync byte", segment.sequence);
            let pid = u16::from(packet[1] & 0x1F) << 8 | u16::from(packet[2]);
            if packet[3] & 0x10 == 0 || TABLE_PIDS.contains(&pid) {
                continue; // No payload, so the counter does not move; or a table.
            }
            let cc = packet[3] & 0x0F;
            if let Some(previous) = last.insert(pid, cc) {
                assert_eq!(
                    cc,
                    (previous + 1) & 0x0F,
                    "segment {}: continuity of PID {pid:#x}",
                    segment.sequence
                );
            }
        }
    }
    assert!(last.len() >= 2, "video and audio seen: {last:?}");
    let log = stderr_of(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "warning", "-i"])
            .arg(out.playlist_path())
            .args(["-map", "0", "-f", "null", "-"]),
    );
    assert_eq!(log.trim(), "", "ffmpeg warned reading the playlist");
}

fn playlist(out: &HlsDirectory) -> ParsedPlaylist {
    ParsedPlaylist::parse(&std::fs::read_to_string(out.playlist_path()).unwrap()).unwrap()
}

fn max_duration_ms(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| s.duration_ms).max().unwrap()
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn x264_default_keyint_gives_one_segment_per_gop_each_starting_with_a_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    // No -g: x264's default keyint 250, 8.33 s at 30 fps; no scene cuts in a test pattern.
    let flv = encode(dir.path(), "keyint250", 60, &[]);
    let (out, segments) = segment_into(dir.path(), &read_tags(&flv));
    assert!(segments.len() >= 7, "{} segments", segments.len());
    for segment in &segments[..segments.len() - 1] {
        assert!(
            (8_300..=8_367).contains(&segment.duration_ms),
            "segment {} lasts {} ms, not one GOP",
            segment.sequence,
            segment.duration_ms
        );
    }
    let parsed = playlist(&out);
    assert_eq!(parsed.target_duration, 9, "ceil(8.33 s)");
    assert_segments_start_with_keyframes(&out, &segments);
    assert_playlist_reads_cleanly(&out, &segments);
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn half_second_gops_make_four_second_segments_and_a_clean_minute_of_playlist() {
    let dir = tempfile::tempdir().unwrap();
    let flv = encode(dir.path(), "gop05", 60, &["-g", "15"]);
    let (out, segments) = segment_into(dir.path(), &read_tags(&flv));
    assert_eq!(segments.len(), 15, "60 s in 4 s segments");
    for segment in &segments[..segments.len() - 1] {
        assert!(
            (3_950..=4_050).contains(&segment.duration_ms),
            "segment {} lasts {} ms",
            segment.sequence,
            segment.duration_ms
        );
    }
    assert_eq!(playlist(&out).target_duration, 4);
    assert_segments_start_with_keyframes(&out, &segments);
    assert_playlist_reads_cleanly(&out, &segments);
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn ten_second_gops_are_never_split() {
    let dir = tempfile::tempdir().unwrap();
    let flv = encode(dir.path(), "gop10", 40, &["-g", "300"]);
    let (out, segments) = segment_into(dir.path(), &read_tags(&flv));
    assert_eq!(segments.len(), 4, "one segment per 10 s GOP");
    let parsed = playlist(&out);
    assert_eq!(parsed.target_duration, 10);
    assert_segments_start_with_keyframes(&out, &segments);
    assert_playlist_reads_cleanly(&out, &segments);
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn irregular_gops_realign_on_the_grid_after_a_long_gop() {
    let dir = tempfile::tempdir().unwrap();
    // Keyframes at irregular times (GOPs from 0.5 s to 9 s), none in between.
    let keyframes = "0,1,2,3,4,5,6,7,8,12,12.5,21.5,22,24,26,28,30,34,38,39,40";
    let flv = encode(
        dir.path(),
        "irregular",
        44,
        &[
            "-g",
            "600",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            keyframes,
        ],
    );
    let tags = read_tags(&flv);
    let (out, segments) = segment_into(dir.path(), &tags);
    let first = segments[0].start_timestamp_ms;
    let starts: Vec<u64> = segments
        .iter()
        .map(|s| s.start_timestamp_ms - first)
        .collect();
    // Cuts at the first keyframe at or after each 4 s step: the 9 s GOP from 12.5 s stays whole
    // in one segment, and cutting realigns on the grid right after it.
    assert_eq!(
        starts,
        [0, 4_000, 8_000, 12_000, 21_500, 24_000, 28_000, 34_000, 38_000, 40_000],
        "segment starts"
    );
    // The first GOPs were regular (1 s): the declared target is 4, and the 9 s GOP is held to
    // it (its segment ends with the last frame whose media ends within 4.499 s, the rest of
    // the GOP left out and the next segment discontinuous), so every EXTINF rounds to at
    // most 4.
    let longest = max_duration_ms(&segments);
    assert!(
        (4_499 - 34..=4_499).contains(&longest),
        "{longest} ms: 30 fps"
    );
    assert!(
        segments[4].discontinuity,
        "the segment after the 9 s GOP follows a gap"
    );
    assert_segments_start_with_keyframes(&out, &segments);
    assert_playlist_reads_cleanly(&out, &segments);
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn scene_cut_gops_declare_a_target_duration_that_holds_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Keyframes about every 2 s with extra ones at "scene cuts": the first segment is 4 s of
    // irregular GOPs, later ones run up to a GOP past 4 s.
    let keyframes = "0,1.4,2,4,5.9,7.9,9.9,11.9,12.5,13.9,15.9,17.9,19.9,21.9,23.9";
    let flv = encode(
        dir.path(),
        "scenecut",
        26,
        &[
            "-g",
            "600",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            keyframes,
        ],
    );
    let (out, segments) = segment_into(dir.path(), &read_tags(&flv));
    let parsed = playlist(&out);
    assert!(
        max_duration_ms(&segments) > 5_000,
        "a segment of more than 5 s"
    );
    assert_eq!(parsed.target_duration, 6, "4 s plus the longest GOP");
    for segment in &parsed.segments {
        assert!(segment.duration.round() <= 6.0, "{segment:?}");
    }
    assert_segments_start_with_keyframes(&out, &segments);
    assert_playlist_reads_cleanly(&out, &segments);
}
