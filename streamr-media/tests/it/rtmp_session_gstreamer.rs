//! gstreamer's rtmp2sink (its own handshake and command order) publishes into a `ServerSession`
//! driven by a minimal tokio loop; the session must report the publish, metadata and every frame.

use std::process::Stdio;
use std::time::Duration;

use streamr_media::rtmp::session::{MediaKind, ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{timeout_at, Instant};

const FRAMES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs gst-launch-1.0"]
async fn rtmp2sink_publishes_into_the_server_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pipeline = format!(
        "videotestsrc num-buffers={FRAMES} ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! openh264enc ! h264parse ! flvmux streamable=true name=mux \
         ! rtmp2sink location=rtmp://127.0.0.1:{port}/live/key \
         audiotestsrc num-buffers=40 ! voaacenc ! aacparse ! mux."
    );
    let mut gst = tokio::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch-1.0 must be installed for the RTMP interop tests");
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("rtmp2sink connects")
        .unwrap();

    let mut session = ServerSession::new(ServerConfig::default());
    let (mut key, mut metadata, mut finished) = (None, false, false);
    let (mut video, mut audio) = (0, 0);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = match timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("rtmp2sink did not finish within 30 s"),
        };
        if n == 0 {
            break;
        }
        session.feed(&buf[..n]).unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::ConnectRequested { .. } => session.accept_connect().unwrap(),
                ServerEvent::PublishRequested {
                    stream_id,
                    stream_key,
                    ..
                } => {
                    key = Some(stream_key);
                    session.accept_publish(stream_id).unwrap();
                }
                ServerEvent::Metadata { .. } => metadata = true,
                ServerEvent::Media {
                    kind: MediaKind::Video,
                    payload,
                    ..
                } if payload.get(1) == Some(&1) => video += 1,
                ServerEvent::Media {
                    kind: MediaKind::Audio,
                    ..
                } => audio += 1,
                ServerEvent::PublishFinished { .. } => finished = true,
                _ => {}
            }
        }
        let out = session.take_output();
        if !out.is_empty() && socket.write_all(&out).await.is_err() {
            break;
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(10), gst.wait())
        .await
        .expect("gst-launch exits")
        .unwrap();
    assert!(status.success(), "gst-launch failed: {status}");
    assert_eq!(key.as_deref(), Some("key"));
    assert!(metadata, "onMetaData arrived");
    assert_eq!(video, FRAMES, "every H.264 frame arrived");
    assert!(audio > 0);
    assert!(finished, "FCUnpublish/deleteStream ended the publish");
}
