//! ffmpeg publishes into a `ServerSession` driven by a minimal tokio loop (with a digest C1, so the
//! session answers with the complex handshake). The test checks what the session reports, and
//! with `STREAMR_RECORD_RTMP_CAPTURE=1` it also records the bytes ffmpeg sent to
//! `tests/data/rtmp/ffmpeg_publish.bin` (the seed corpus and benchmark input; see
//! `tests/data/rtmp/regenerate.sh`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use streamr_media::rtmp::session::{MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default, Debug)]
struct Seen {
    app: Option<String>,
    stream_key: Option<String>,
    metadata: bool,
    video: usize,
    audio: usize,
    finished: bool,
    last_video_timestamp: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn ffmpeg_publishes_into_the_server_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "2"])
        .args(["-c:v", "libx264", "-g", "25", "-c:a", "aac", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/key"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed for the RTMP interop tests");

    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("ffmpeg connects")
        .unwrap();
    let mut session = ServerSession::new(ServerConfig::default());
    let mut seen = Seen::default();
    let mut capture = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .expect("ffmpeg finishes within 30 s")
        {
            Ok(n) => n,
            // ffmpeg exiting with our last acknowledgements unread resets the connection
            // instead of closing it; what it sent before is checked below.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("reading from ffmpeg: {error}"),
        };
        if n == 0 {
            break;
        }
        capture.extend_from_slice(&buf[..n]);
        session.feed(&buf[..n]).unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::ConnectRequested { app, .. } => {
                    seen.app = Some(app);
                    session.accept_connect().unwrap();
                }
                ServerEvent::PublishRequested {
                    stream_id,
                    stream_key,
                    ..
                } => {
                    seen.stream_key = Some(stream_key);
                    session.accept_publish(stream_id).unwrap();
                }
                ServerEvent::Metadata { .. } => seen.metadata = true,
                ServerEvent::Media {
                    kind: MediaKind::Video,
                    timestamp,
                    ..
                } => {
                    seen.video += 1;
                    seen.last_video_timestamp = timestamp;
                }
                ServerEvent::Media {
                    kind: MediaKind::Audio,
                    ..
                } => seen.audio += 1,
                ServerEvent::PublishFinished { .. } => seen.finished = true,
                _ => {}
            }
        }
        let out = session.take_output();
        if !out.is_empty() && socket.write_all(&out).await.is_err() {
            break;
        }
    }
    let status = ffmpeg.wait().await.unwrap();
    assert!(status.success(), "ffmpeg failed: {status}");

    assert_eq!(seen.app.as_deref(), Some("live"));
    assert_eq!(seen.stream_key.as_deref(), Some("key"));
    assert!(seen.metadata, "onMetaData arrived");
    // 2 s at 25 fps plus the sequence header; AAC at 44.1 kHz is ~43 frames per second.
    assert!((45..=60).contains(&seen.video), "{seen:?}");
    assert!(seen.audio >= 80, "{seen:?}");
    assert!(
        (1800..=2200).contains(&seen.last_video_timestamp),
        "{seen:?}"
    );
    assert!(seen.finished, "FCUnpublish/deleteStream ended the publish");

    if std::env::var_os("STREAMR_RECORD_RTMP_CAPTURE").is_some() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtmp/ffmpeg_publish.bin");
        std::fs::write(&path, &capture).unwrap();
        eprintln!("wrote {} bytes to {}", capture.len(), path.display());
    }
}
