//! ffmpeg as a publisher and as a source of test files: a 320x180 25 fps H.264 test pattern
//! (one-second GOPs) with a 440 Hz AAC tone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Running;

/// The lavfi inputs: the test pattern and the tone.
fn test_pattern(command: &mut Command) -> &mut Command {
    command
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
}

/// The encoders: H.264 with a keyframe every second, and AAC.
fn encoders(command: &mut Command) -> &mut Command {
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-c:a",
        "aac",
    ])
}

/// ffmpeg publishing the test pattern to `url` (FLV over RTMP) in real time for `seconds`.
pub fn ffmpeg_publish(url: &str, seconds: u32) -> Running {
    ffmpeg_publish_from(url, seconds, 0)
}

/// [`ffmpeg_publish`] with timestamps starting at `start_seconds` instead of zero, as an encoder
/// that has been publishing for that long: a stream that already lies that far into its
/// timeline, without waiting for it in real time.
pub fn ffmpeg_publish_from(url: &str, seconds: u32, start_seconds: u32) -> Running {
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-re"]);
    test_pattern(&mut command).args(["-t", &seconds.to_string()]);
    encoders(&mut command);
    if start_seconds > 0 {
        command.args(["-output_ts_offset", &start_seconds.to_string()]);
    }
    command.args(["-f", "flv", url]);
    let child = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    Running(child)
}

/// Writes `seconds` of the test pattern to `dir/source.flv` and returns its path.
pub fn make_flv(dir: &Path, seconds: u32) -> PathBuf {
    let out = dir.join("source.flv");
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y"]);
    test_pattern(&mut command).args(["-t", &seconds.to_string()]);
    let status = encoders(&mut command)
        .arg(&out)
        .status()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    assert!(status.success(), "ffmpeg failed to generate the source");
    out
}

/// ffmpeg publishing to `url` (FLV over RTMP) in real time for `seconds`: a 320x240 25 fps
/// H.264 test pattern with B-frames (two in a row, one-second GOPs, yuv420p) and a 44.1 kHz
/// AAC tone at 64 kb/s, the shape of a camera encoder; ffmpeg's errors go to `stderr`.
pub fn ffmpeg_publish_with_b_frames(url: &str, seconds: u32, stderr: Stdio) -> Running {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=44100:duration={seconds}"
        ));
    encoders(&mut command)
        .args(["-bf", "2", "-pix_fmt", "yuv420p", "-b:a", "64k"])
        .args(["-f", "flv", url]);
    let child = command
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    Running(child)
}
