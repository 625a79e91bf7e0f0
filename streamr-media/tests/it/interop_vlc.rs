//! VLC (`cvlc`, from Debian's vlc-bin and vlc-plugin-base) plays what a node serves over RTMP,
//! HTTP-FLV and HLS. Each run decodes the stream (to VLC's dummy outputs) and records what its
//! demuxer read to a file that ffprobe then checks; VLC may log no error about the stream (its
//! HLS reader checks the MPEG-TS continuity counters of every table across segments).

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use streamr_media::http::LiveHlsConfig;
use streamr_media::relay::StreamKey;
use tokio::process::{Child, Command};

/// Seconds each VLC plays.
const PLAY_SECONDS: u32 = 6;

/// Starts `cvlc` playing `url` for [`PLAY_SECONDS`], decoding to dummy outputs and writing what
/// it demuxed to `recording` (MPEG-TS). VLC refuses to run as root, so as root it runs as
/// `nobody`; its home is `home`, which it may write.
fn vlc(url: &str, recording: &Path, home: &Path) -> Child {
    require_tool("cvlc");
    let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut command = if as_root {
        require_tool("runuser");
        let mut command = Command::new("runuser");
        command.args(["-u", "nobody", "--", "env"]);
        command.arg(format!("HOME={}", home.display()));
        command.arg("cvlc");
        command
    } else {
        let mut command = Command::new("cvlc");
        command.env("HOME", home);
        command
    };
    command
        .args(["-I", "dummy", "-vv", "--vout=dummy", "--aout=dummy"])
        .arg(format!("--run-time={PLAY_SECONDS}"))
        .arg("--sout")
        .arg(format!(
            "#duplicate{{dst=display,dst=std{{access=file,mux=ts,dst={}}}}}",
            recording.display()
        ))
        .args([url, "vlc://quit"])
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cvlc")
}

/// The errors VLC logged, less those about its own interfaces (no D-Bus, no hotkeys, no
/// display in a test) and its PSI reader's note of a repeated table: each HLS segment carries
/// its own PAT and PMT with counter 0 (its bytes may not depend on the node's numbering, see
/// `hls_gops`), which ISO/IEC 13818-1 allows as a duplicate packet and libdvbpsi logs as
/// `TS duplicate` before dropping the copy, as it does for nginx-rtmp's segments.
fn stream_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" error: ") && !line.contains("interface"))
        .filter(|line| {
            !(line.contains("TS duplicate (received 0, expected 1)")
                && (line.ends_with("for PID 0") || line.ends_with("for PID 4096")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg, ffprobe and cvlc"]
async fn vlc_plays_rtmp_http_flv_and_hls_without_an_error() {
    let config = LiveHlsConfig::default().with_segments(Duration::from_secs(1), 4);
    let (hub, rtmp, http) = start_relay_and_http(config).await;
    let mut notices = http.hls().segment_notices();
    let _publisher = ffmpeg_publish(&rtmp_url(&rtmp, "live", "vlc"), 40);
    let key = StreamKey::parse("live", "vlc").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || hub.is_publishing(&key)).await,
        "the publisher never started"
    );
    // A live HLS player starts a few segments from the end: let there be some.
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(15), notices.recv())
            .await
            .expect("a segment within 15 s")
            .expect("segment notices");
    }

    let scratch = Scratch::new();
    let home = scratch.path("home");
    std::fs::create_dir(&home).unwrap();
    for dir in [home.as_path(), home.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let http_base = format!("http://{}/live", http.local_addr());
    let players = [
        ("rtmp", rtmp_url(&rtmp, "live", "vlc")),
        ("http-flv", format!("{http_base}/vlc.flv")),
        ("hls", format!("{http_base}/vlc.m3u8")),
    ]
    .map(|(name, url)| {
        let recording = scratch.path(&format!("{name}.ts"));
        let child = vlc(&url, &recording, &home);
        (name, recording, child)
    });
    for (name, recording, child) in players {
        let (status, log) = finish(child, Duration::from_secs(60)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "VLC failed on {name}: {log}"
        );
        let errors = stream_errors(&log);
        assert!(
            errors.is_empty(),
            "VLC logged errors on {name}: {errors:#?}"
        );
        assert!(recording.exists(), "VLC recorded nothing of {name}: {log}");
        let probe = probe(&recording).await;
        assert_eq!(probe.video_codec, "h264", "{name}: {probe:?}");
        assert_eq!(probe.audio_codec, "aac", "{name}: {probe:?}");
        assert_eq!((probe.width, probe.height), (640, 360), "{name}");
        // 25 fps for PLAY_SECONDS, less VLC's start-up: at least half of it.
        assert!(
            probe.video_frames >= 25 * PLAY_SECONDS / 2,
            "{name}: {} video frames",
            probe.video_frames
        );
        for stream in ["v", "a"] {
            let lost = undecodable_packets(&recording, stream).await;
            assert!(
                lost.is_empty(),
                "{name}: packets of stream {stream} VLC read that do not decode (pts): {lost:?}"
            );
        }
    }
}

/// The timestamps of `stream`'s packets (`v` or `a`) in `path` that decode to no frame, the
/// last packet left out: VLC, stopped by `--run-time`, may write its last audio frame cut short
/// (ffmpeg's own recording of the same stream decodes to the end).
async fn undecodable_packets(path: &Path, stream: &str) -> Vec<String> {
    let pts_of = |section: &'static str| {
        let path = path.to_owned();
        async move {
            let output = Command::new("ffprobe")
                .args(["-v", "quiet", "-select_streams", stream, "-show_entries"])
                .arg(format!("{section}=pts"))
                .args(["-of", "csv=p=0"])
                .arg(&path)
                .output()
                .await
                .expect("run ffprobe");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| line.split(',').next().unwrap_or_default().to_owned())
                .filter(|pts| !pts.is_empty())
                .collect::<Vec<String>>()
        }
    };
    let mut packets = pts_of("packet").await;
    let frames: std::collections::HashSet<String> = pts_of("frame").await.into_iter().collect();
    assert!(!packets.is_empty(), "no packets of stream {stream}");
    packets.pop();
    packets.retain(|pts| !frames.contains(pts));
    packets
}
