//! What ffmpeg records when it plays a live stream: `-map 0 -t N` must end after N seconds
//! (nothing on the media stream may become an extra data stream that never ends) and hold N
//! seconds of media even when it joins mid-stream (the sequence headers carry the timeline of the
//! GOP they precede, not 0).

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use streamr_media::relay::StreamKey;
use streamr_media::server::RelayServerConfig;
use tokio::process::Command;

async fn ffprobe(path: &std::path::Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .await
        .expect("ffprobe must be installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_map_all_with_a_duration_ends_and_records_that_duration_mid_stream() {
    let server = common::start_server(RelayServerConfig::default()).await;
    let url = common::rtmp_url(&server, "live", "cam");
    let key = StreamKey::parse("live", "cam").unwrap();
    let _publisher = common::ffmpeg_publish(&url, 60);
    // Join mid-stream, past the first keyframes, as a viewer usually does.
    let joined = common::wait_until(Duration::from_secs(30), || {
        server
            .hub()
            .stream_stats(&key)
            .is_some_and(|s| s.publishing && s.frames_in > 2 * (25 + 43))
    })
    .await;
    assert!(joined, "the publisher never got 2 s in");

    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("played.flv");
    common::require_tool("ffmpeg");
    let player = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i", &url])
        .args(["-map", "0", "-t", "4", "-c", "copy", "-f", "flv", "-y"])
        .arg(&recording)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (status, stderr) = common::finish(player, Duration::from_secs(40)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg -map 0 -t 4 did not end by itself ({status:?}): {stderr}"
    );
    let streams = ffprobe(&recording, "stream=codec_type").await;
    let kinds: Vec<&str> = streams.lines().map(str::trim).collect();
    assert_eq!(kinds, ["video", "audio"], "streams in the recording");
    let duration: f64 = ffprobe(&recording, "format=duration")
        .await
        .parse()
        .expect("a duration");
    assert!(
        duration >= 3.9,
        "asked for 4 s, recorded {duration} s (headers stamped before the GOP?)"
    );
}
