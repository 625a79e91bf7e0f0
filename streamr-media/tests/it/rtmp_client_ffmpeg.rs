//! The client session against ffmpeg acting as an RTMP server (`-listen 1`): pulling a stream
//! ffmpeg serves, and pushing a recorded publish into an ffmpeg that records it.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use streamr_media::rtmp::session::{
    ClientConfig, ClientEvent, ClientRole, ClientSession, MediaKind, PublishMode, ServerEvent,
    ServerSession,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect_with_retry(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => return stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("ffmpeg never listened on {port}: {e}"),
        }
    }
}

/// Writes whatever the session queued.
async fn flush(socket: &mut TcpStream, client: &mut ClientSession) {
    let out = client.take_output();
    if !out.is_empty() {
        socket.write_all(&out).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn client_pulls_a_stream_ffmpeg_serves() {
    let port = free_port();
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "2"])
        .args(["-c:v", "libx264", "-g", "25", "-c:a", "aac", "-f", "flv"])
        .args(["-listen", "1"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed for the RTMP interop tests");
    let mut socket = connect_with_retry(port).await;
    let mut client = ClientSession::new(ClientConfig::new(
        &format!("127.0.0.1:{port}"),
        "live",
        "key",
        ClientRole::Play,
    ));
    flush(&mut socket, &mut client).await;

    let mut play_started = false;
    let mut metadata = None;
    let mut video = Vec::new();
    let mut audio = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = timeout_at(deadline, socket.read(&mut buf))
            .await
            .expect("ffmpeg finishes within 30 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        client.feed(&buf[..n]).unwrap();
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::PlayStarted => play_started = true,
                ClientEvent::Metadata { metadata: m, .. } => metadata = Some(m),
                ClientEvent::Media {
                    kind: MediaKind::Video,
                    payload,
                    ..
                } => video.push(payload),
                ClientEvent::Media {
                    kind: MediaKind::Audio,
                    ..
                } => audio += 1,
                ClientEvent::Rejected { command, status } => {
                    panic!("{command} refused: {status:?}")
                }
                _ => {}
            }
        }
        flush(&mut socket, &mut client).await;
    }
    let _ = ffmpeg.wait().await;

    assert!(play_started, "NetStream.Play.Start");
    let metadata = metadata.expect("onMetaData");
    assert_eq!(
        metadata.property("width").and_then(|w| w.as_number()),
        Some(320.0)
    );
    // The first video message is the AVC sequence header (keyframe, AVCPacketType 0).
    assert_eq!(video.first().map(|v| (v[0], v[1])), Some((0x17, 0)));
    assert!(video.len() >= 40, "{} video messages", video.len());
    assert!(audio >= 60, "{audio} audio messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn client_pushes_a_recorded_publish_into_ffmpeg() {
    // Real H.264/AAC frames: replay the recorded ffmpeg publish through a server session.
    let capture = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtmp/ffmpeg_publish.bin"),
    )
    .unwrap();
    let (events, result) = ServerSession::replay_accepting_all(&capture);
    result.unwrap();
    let mut metadata = None;
    let mut media: Vec<(MediaKind, u32, Bytes)> = Vec::new();
    for event in events {
        match event {
            ServerEvent::Metadata { metadata: m, .. } => metadata = Some(m),
            ServerEvent::Media {
                kind,
                timestamp,
                payload,
                ..
            } => media.push((kind, timestamp, payload)),
            _ => {}
        }
    }
    // Video frames proper (AVCPacketType 1), not the sequence header or end of sequence.
    let sent_frames = media
        .iter()
        .filter(|m| m.0 == MediaKind::Video && m.2.get(1) == Some(&1))
        .count();

    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("received.flv");
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&output)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed for the RTMP interop tests");
    let mut socket = connect_with_retry(port).await;
    let mut client = ClientSession::new(ClientConfig::new(
        &format!("127.0.0.1:{port}"),
        "live",
        "key",
        ClientRole::Publish(PublishMode::Live),
    ));
    flush(&mut socket, &mut client).await;
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.is_active() {
        let n = timeout_at(deadline, socket.read(&mut buf))
            .await
            .expect("ffmpeg accepts the publish within 20 s")
            .unwrap();
        assert!(n > 0, "ffmpeg closed before NetStream.Publish.Start");
        client.feed(&buf[..n]).unwrap();
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Rejected { command, status } = event {
                panic!("{command} refused: {status:?}");
            }
        }
        flush(&mut socket, &mut client).await;
    }
    client
        .send_metadata(metadata.expect("capture has metadata"))
        .unwrap();
    for (kind, timestamp, payload) in media {
        client.send_media(kind, timestamp, payload).unwrap();
    }
    client.close().unwrap();
    flush(&mut socket, &mut client).await;
    socket.shutdown().await.unwrap();
    drop(socket);
    let status = tokio::time::timeout(Duration::from_secs(20), ffmpeg.wait())
        .await
        .expect("ffmpeg exits after the publisher leaves")
        .unwrap();
    assert!(status.success(), "ffmpeg failed: {status}");

    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=codec_name,width,nb_read_packets", "-of", "csv=p=0"])
        .arg(&output)
        .output()
        .expect("ffprobe must be installed");
    let text = String::from_utf8_lossy(&probe.stdout);
    let video_line = text
        .lines()
        .find(|l| l.starts_with("h264"))
        .unwrap_or_else(|| panic!("no h264 stream in {text}"));
    assert!(text.lines().any(|l| l.starts_with("aac")), "{text}");
    let fields: Vec<&str> = video_line.split(',').collect();
    assert_eq!(fields.get(1), Some(&"320"), "{video_line}");
    let packets: usize = fields.last().unwrap().trim().parse().unwrap();
    assert_eq!(packets, sent_frames, "every frame arrives: {text}");
}
