//! Audio codecs in HLS: MP3 from real lame output is carried into the MPEG-TS segments as MPEG
//! audio (stream type 0x03 at 44.1 kHz, 0x04 at 22.05 kHz) and decodes cleanly in ffmpeg;
//! AAC in a channel layout only a program config element describes (6.1) keeps it in every ADTS
//! frame, so each segment decodes on its own; Speex and Nellymoser cannot be carried and are
//! reported, video still segmented.

use std::path::{Path, PathBuf};
use std::process::Command;

use streamr_media::flv::{FlvReader, FlvTag};
use streamr_media::hls::{
    HlsDirectory, HlsStream, PlaylistConfig, SegmenterConfig, SegmenterEvent,
};
use streamr_media::ts::{TsError, TS_PACKET_LEN};

fn encode(dir: &Path, name: &str, audio: &[&str], sample_rate: u32) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=12",
        ])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate={sample_rate}:duration=12"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(audio)
        .args(["-f", "flv"])
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

/// Segments the tags into `dir`; returns the directory and the errors the segmenter reported.
fn segment(dir: &Path, tags: &[FlvTag]) -> (HlsDirectory, Vec<TsError>, usize) {
    let mut stream = HlsStream::new(
        SegmenterConfig::default(),
        PlaylistConfig {
            window_segments: None,
            ..PlaylistConfig::default()
        },
    );
    let out = HlsDirectory::create(dir, "index.m3u8").unwrap();
    let mut errors = Vec::new();
    let mut count = 0;
    let mut write = |events: Vec<SegmenterEvent>| {
        for event in events {
            if let SegmenterEvent::SegmentReady(segment) = event {
                assert_eq!(segment.bytes.len() % TS_PACKET_LEN, 0);
                out.write_segment(&segment).unwrap();
                count += 1;
            }
        }
    };
    for tag in tags {
        match stream.push(tag) {
            Ok(events) => write(events),
            Err(error) => errors.push(error),
        }
    }
    write(stream.finish());
    out.write_playlist(stream.playlist()).unwrap();
    (out, errors, count)
}

/// `codec_name,sample_rate` of the first audio stream ffprobe finds in `path`.
fn probe_audio(path: &Path) -> String {
    probe_first_audio(path, "codec_name,sample_rate")
}

/// `entries` (ffprobe's stream fields, comma-separated) of the first audio stream ffprobe finds
/// in `path`, as CSV; empty when it finds none.
fn probe_first_audio(path: &Path, entries: &str) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args([
            "-show_entries",
            &format!("stream={entries}"),
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // MPEG-TS lists the stream under its program too.
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn decode_log(path: &Path) -> String {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// The PMT's stream type for the audio PID (0x101), read from the first segment.
fn audio_stream_type(segment: &[u8]) -> Option<u8> {
    let pmt = segment.chunks(TS_PACKET_LEN).nth(1)?;
    // header 4, pointer 1, table header 8, PCR PID 2, program info length 2, then entries.
    let entries = pmt.get(17..)?;
    entries
        .chunks(5)
        .take(2)
        .find(|e| e.len() == 5 && ((u16::from(e[1] & 0x1F) << 8) | u16::from(e[2])) == 0x101)
        .map(|e| e[0])
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn mp3_audio_is_carried_into_hls_as_mpeg_audio() {
    for (rate, stream_type) in [(44_100, 0x03), (22_050, 0x04)] {
        let dir = tempfile::tempdir().unwrap();
        let flv = encode(
            dir.path(),
            "mp3",
            &[
                "-c:a",
                "libmp3lame",
                "-b:a",
                "64k",
                "-ar",
                &rate.to_string(),
            ],
            rate,
        );
        let (out, errors, count) = segment(dir.path(), &read_tags(&flv));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(count >= 3);
        let first = std::fs::read(out.segment_path(0)).unwrap();
        assert_eq!(audio_stream_type(&first), Some(stream_type), "{rate} Hz");
        assert_eq!(probe_audio(&out.segment_path(1)), format!("mp3,{rate}"));
        assert_eq!(decode_log(&out.playlist_path()), "", "{rate} Hz");
    }
}

/// `codec_name,channels` of the first audio stream ffprobe finds in `path`.
fn probe_channels(path: &Path) -> String {
    probe_first_audio(path, "codec_name,channels")
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn aac_with_a_program_config_element_is_carried_into_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg's encoder describes 6.1 with channelConfiguration 0 and a program config element.
    let flv = encode(
        dir.path(),
        "aac61",
        &[
            "-c:a",
            "aac",
            "-af",
            "aformat=channel_layouts=6.1",
            "-ar",
            "48000",
        ],
        48_000,
    );
    let (out, errors, count) = segment(dir.path(), &read_tags(&flv));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(count >= 3);
    for index in 0..count as u64 {
        let path = out.segment_path(index);
        let first = std::fs::read(&path).unwrap();
        assert_eq!(audio_stream_type(&first), Some(0x0F), "segment {index}");
        // Each segment alone: the decoder learns the layout from its own frames.
        assert_eq!(probe_channels(&path), "aac,7", "segment {index}");
        assert_eq!(layout_warnings_aside(&path), "", "segment {index}");
    }
    assert_eq!(layout_warnings_aside(&out.playlist_path()), "");
}

/// [`decode_log`] without the line ffmpeg prints for any input whose channels a program config
/// element describes (the publisher's FLV too): "Guessed Channel Layout for Input Stream".
fn layout_warnings_aside(path: &Path) -> String {
    decode_log(path)
        .lines()
        .filter(|line| !line.starts_with("Guessed Channel Layout"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn speex_and_nellymoser_are_reported_and_left_out_while_video_is_segmented() {
    for (name, audio, rate) in [
        ("speex", ["-c:a", "libspeex", "-ar", "16000"], 16_000),
        ("nellymoser", ["-c:a", "nellymoser", "-ar", "44100"], 44_100),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let flv = encode(dir.path(), name, &audio, rate);
        let (out, errors, count) = segment(dir.path(), &read_tags(&flv));
        assert!(count >= 3, "{name}");
        assert!(!errors.is_empty(), "{name}: no error reported");
        assert!(
            errors
                .iter()
                .all(|e| matches!(e, TsError::UnsupportedCodec { .. })),
            "{name}: {errors:?}"
        );
        assert_eq!(probe_audio(&out.segment_path(1)), "", "{name}");
        assert_eq!(decode_log(&out.playlist_path()), "", "{name}");
    }
}
