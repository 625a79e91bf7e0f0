//! Real players (rtmpdump/librtmp and ffmpeg, each with its own handshake and command order) play
//! a stream from a `ServerSession` driven by a minimal tokio loop; what they record must hold
//! every frame we sent. ffmpeg, when playing, sends a digest C1 and drops the connection unless
//! our S1 digest and S2 signature verify, so its test also checks the complex handshake against an
//! independent implementation.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use streamr_media::rtmp::session::{MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{timeout_at, Instant};

/// Metadata body and media of the recorded ffmpeg publish, replayed through a server session.
fn recorded_stream() -> (Bytes, Vec<(MediaKind, u32, Bytes)>) {
    let capture = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtmp/ffmpeg_publish.bin"),
    )
    .unwrap();
    let (events, result) = ServerSession::replay_accepting_all(&capture);
    result.unwrap();
    let mut metadata = None;
    let mut media = Vec::new();
    for event in events {
        match event {
            ServerEvent::Metadata { payload, .. } => metadata = Some(payload),
            ServerEvent::Media {
                kind,
                timestamp,
                payload,
                ..
            } => media.push((kind, timestamp, payload)),
            _ => {}
        }
    }
    (metadata.expect("capture has metadata"), media)
}

/// Serves the recorded stream to the player started by `player` (given the URL and the output
/// path) and checks the file it wrote with ffprobe.
async fn serve_recording_to(player: &str, args: impl Fn(&str, &std::path::Path) -> Vec<String>) {
    let (metadata, media) = recorded_stream();
    let frames = media
        .iter()
        .filter(|m| m.0 == MediaKind::Video && m.2.get(1) == Some(&1))
        .count();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("played.flv");
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let mut child = tokio::process::Command::new(player)
        .args(args(&url, &output))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{player} must be installed for the RTMP interop tests: {e}"));
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .unwrap_or_else(|_| panic!("{player} connects"))
        .unwrap();

    let mut session = ServerSession::new(ServerConfig::default());
    let mut pending_media = Some((metadata, media));
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = match timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("{player} did not finish within 30 s"),
        };
        if n == 0 {
            break;
        }
        session.feed(&buf[..n]).unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::ConnectRequested { .. } => session.accept_connect().unwrap(),
                ServerEvent::PlayRequested {
                    stream_id,
                    stream_key,
                    ..
                } => {
                    assert_eq!(stream_key, "key");
                    session.accept_play(stream_id).unwrap();
                    let (metadata, media) = pending_media.take().expect("one play");
                    session
                        .send_media(stream_id, MediaKind::Data, 0, metadata)
                        .unwrap();
                    for (kind, timestamp, payload) in media {
                        session
                            .send_media(stream_id, kind, timestamp, payload)
                            .unwrap();
                    }
                    session.notify_unpublished(stream_id).unwrap();
                }
                _ => {}
            }
        }
        let out = session.take_output();
        if !out.is_empty() && socket.write_all(&out).await.is_err() {
            break;
        }
        if pending_media.is_none() && !session.has_output() {
            // Everything is written; players stop at Stream EOF / UnpublishNotify.
            socket.shutdown().await.ok();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=codec_name,width,nb_read_packets", "-of", "csv=p=0"])
        .arg(&output)
        .output()
        .expect("ffprobe must be installed");
    let text = String::from_utf8_lossy(&probe.stdout);
    let video = text
        .lines()
        .find(|l| l.starts_with("h264"))
        .unwrap_or_else(|| panic!("{player}: no h264 stream in {text:?}"));
    assert!(
        text.lines().any(|l| l.starts_with("aac")),
        "{player}: {text}"
    );
    let fields: Vec<&str> = video.split(',').collect();
    assert_eq!(fields.get(1), Some(&"320"), "{video}");
    let packets: usize = fields.last().unwrap().trim().parse().unwrap();
    assert_eq!(packets, frames, "{player} recorded every frame: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs rtmpdump and ffprobe"]
async fn rtmpdump_plays_what_the_server_session_sends() {
    serve_recording_to("rtmpdump", |url, output| {
        vec![
            "-q".into(),
            "--live".into(),
            "-r".into(),
            url.into(),
            "-o".into(),
            output.display().to_string(),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_plays_what_the_server_session_sends() {
    serve_recording_to("ffmpeg", |url, output| {
        [
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            url,
            "-c",
            "copy",
            "-f",
            "flv",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([output.display().to_string()])
        .collect()
    })
    .await;
}
