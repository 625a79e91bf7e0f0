//! HTTP-FLV announces the tracks a stream has: ffmpeg plays an audio-only and a video-only
//! stream published with ffmpeg over RTMP (it waits for every track the FLV header announces).

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use streamr_media::http::LiveHlsConfig;
use streamr_media::relay::StreamKey;
use tokio::process::Command;

async fn play_streams(url: &str) -> (Option<std::process::ExitStatus>, String) {
    let child = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000"])
        .args(["-show_entries", "stream=codec_type", "-of", "csv=p=0", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffprobe must be installed");
    match tokio::time::timeout(Duration::from_secs(40), child.wait_with_output()).await {
        Ok(Ok(output)) => (
            Some(output.status),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ),
        _ => (None, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_reads_audio_only_and_video_only_streams_over_http_flv() {
    let (hub, rtmp, http) = common::start_relay_and_http(LiveHlsConfig::default()).await;
    for (name, inputs, expected) in [
        (
            "audio",
            vec![
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=60",
                "-c:a",
                "aac",
            ],
            "audio",
        ),
        (
            "video",
            vec![
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25:duration=60",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
            ],
            "video",
        ),
    ] {
        let mut publisher = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re"])
            .args(&inputs)
            .args(["-f", "flv"])
            .arg(format!("rtmp://{}/live/{name}", rtmp.local_addr()))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg must be installed");
        let key = StreamKey::parse("live", name).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !hub
            .stream_stats(&key)
            .is_some_and(|s| s.publishing && s.frames_in > 30)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never published"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("http://{}/live/{name}.flv", http.local_addr());
        let (status, streams) = play_streams(&url).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "ffprobe could not read the {name}-only stream ({status:?})"
        );
        assert_eq!(streams, expected, "{name}-only stream");
        let _ = publisher.kill().await;
    }
}
