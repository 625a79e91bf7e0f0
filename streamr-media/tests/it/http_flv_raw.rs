//! HTTP-FLV written on the raw connection: chunked for HTTP/1.1 clients, close-delimited for
//! HTTP/1.0 ones. ffprobe and GStreamer (souphttpsrc ! flvdemux) read it over HTTP, and both
//! read the close-delimited body too.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ffmpeg_publish, finish, require_tool};
use streamr_media::http::LiveHlsConfig;
use streamr_media::relay::StreamKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Sends `GET path` with `version` and reads for `read_for`: the response head (lower-cased)
/// and the raw body bytes received.
async fn raw_get(
    addr: SocketAddr,
    path: &str,
    version: &str,
    read_for: Duration,
) -> (String, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET {path} {version}\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + read_for;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&received[..split]).to_ascii_lowercase();
    (head, received[split + 4..].to_vec())
}

/// The payload of every complete chunk of a chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .expect("a hexadecimal chunk size");
        let start = line_end + 2;
        if size == 0 || body.len() < start + size + 2 {
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        assert_eq!(&body[start + size..start + size + 2], b"\r\n", "chunk end");
        body = &body[start + size + 2..];
    }
    out
}

async fn ffprobe_streams(input: &str) -> String {
    require_tool("ffprobe");
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000"])
        .args([
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
            input,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("ffprobe finished")
        .unwrap();
    assert!(output.status.success(), "ffprobe failed on {input}");
    let mut kinds: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .collect();
    kinds.sort();
    kinds.join(",")
}

/// GStreamer demuxes `source` (a souphttpsrc or filesrc description) with flvdemux and parses
/// its H.264 until `buffers` buffers were read.
async fn gstreamer_demuxes(source: &str) {
    require_tool("gst-launch-1.0");
    let pipeline = format!(
        "{source} num-buffers=40 ! flvdemux name=d d.video ! queue ! h264parse ! fakesink \
         d.audio ! queue ! aacparse ! fakesink"
    );
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = finish(child, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "GStreamer could not demux {source}: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg, ffprobe and gst-launch-1.0"]
async fn players_read_chunked_and_close_delimited_http_flv() {
    let (hub, rtmp, http) = common::start_relay_and_http(LiveHlsConfig::default()).await;
    let _publisher = ffmpeg_publish(&format!("rtmp://{}/live/raw", rtmp.local_addr()), 30);
    let key = StreamKey::parse("live", "raw").unwrap();
    for _ in 0..100 {
        if hub.is_publishing(&key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hub.is_publishing(&key), "the publisher never started");
    let addr = http.local_addr();
    let url = format!("http://{addr}/live/raw.flv");

    // HTTP/1.1: chunked, one chunk per batch, with CORS for browser players.
    let (head, body) = raw_get(
        addr,
        "/live/raw.flv",
        "HTTP/1.1",
        Duration::from_millis(1500),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: video/x-flv"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let flv = dechunk(&body);
    assert!(flv.starts_with(b"FLV\x01\x05"), "audio and video announced");
    assert!(flv.len() > 10_000, "the GOP cache and live frames arrive");

    // HTTP/1.0: no chunking; the body is the FLV stream itself, ended by the close.
    let (head, body) = raw_get(
        addr,
        "/live/raw.flv",
        "HTTP/1.0",
        Duration::from_millis(2500),
    )
    .await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.starts_with(b"FLV\x01\x05"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("close-delimited.flv");
    std::fs::write(&file, &body).unwrap();
    let file = file.display().to_string();

    let (over_http, from_file) = tokio::join!(ffprobe_streams(&url), ffprobe_streams(&file));
    assert_eq!(over_http, "audio,video");
    assert_eq!(from_file, "audio,video");
    gstreamer_demuxes(&format!("souphttpsrc location={url}")).await;
    gstreamer_demuxes(&format!("filesrc location={file}")).await;

    http.shutdown().await;
    rtmp.shutdown().await;
}
