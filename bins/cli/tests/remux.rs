//! `streamr remux` end to end: a real FLV in, a playlist and segments ffmpeg plays cleanly out.

use std::path::Path;
use std::process::Command;

use streamr_media::hls::ParsedPlaylist;

fn input() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../streamr-media/tests/data/media/av_bframes.flv")
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn remux_writes_a_vod_playlist_that_ffmpeg_plays() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hls");
    let status = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["remux", "--segment-duration", "2", "--target-duration", "4"])
        .arg(input())
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("wrote 5 segments"));

    let text = std::fs::read_to_string(out.join("index.m3u8")).unwrap();
    let playlist = ParsedPlaylist::parse(&text).unwrap();
    assert!(playlist.ended);
    assert_eq!(playlist.playlist_type.as_deref(), Some("VOD"));
    // Derived from the 1 s GOPs: 2 s segments, at most the 4 s limit.
    assert_eq!(playlist.target_duration, 2);
    assert!((playlist.total_duration() - 10.0).abs() < 0.1);
    for segment in &playlist.segments {
        assert!(out.join(&segment.uri).is_file(), "{} missing", segment.uri);
    }
    let decode = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(out.join("index.m3u8"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    assert_eq!(String::from_utf8_lossy(&decode.stderr).trim(), "");
}

#[test]
fn remux_rejects_a_missing_file_and_bad_durations() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["remux", "/nonexistent/in.flv"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/in.flv"));

    let bad = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .args(["remux", "--segment-duration", "9", "--target-duration", "4"])
        .arg(input())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--segment-duration"));
}

#[test]
fn remux_reports_the_offset_of_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(input()).unwrap();
    bytes[13] = 0x07; // first tag type: not audio, video or script
    let corrupt = dir.path().join("corrupt.flv");
    std::fs::write(&corrupt, &bytes).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .arg("remux")
        .arg(&corrupt)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown FLV tag type 7 at offset 13"));
}

#[test]
#[ignore = "interop: needs ffmpeg"]
fn remux_ts_streams_the_same_bytes_as_the_library_and_ffmpeg_decodes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    let run = Command::new(env!("CARGO_BIN_EXE_streamr"))
        .arg("remux-ts")
        .arg(input())
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read(&out).unwrap();
    let expected = streamr_media::ts::remux_flv_to_ts(&std::fs::read(input()).unwrap()).unwrap();
    assert!(
        written == expected,
        "streamed output differs from the in-memory remux"
    );
    let decode = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    assert_eq!(String::from_utf8_lossy(&decode.stderr).trim(), "");
}
