//! Helpers for the relay interop and hostile-input tests: an in-process server on port 0, real
//! peers (ffmpeg, ffprobe, rtmpdump, gst-launch-1.0) as child processes, an FLV probe, and a
//! small RTMP client over the library's sans-IO client session.
#![allow(dead_code, unused_imports)]

pub mod enhanced;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::rtmp::session::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use streamr_media::server::{RelayServer, RelayServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{timeout, Instant};

pub use streamr_test_support::{require_tool, wait_until};

/// Edge hooks: a player asking for a stream starts (or joins) its pull.
pub struct PullOnPlay(pub streamr_media::upstream::UpstreamPuller);

#[async_trait::async_trait]
impl streamr_media::server::RelayHooks for PullOnPlay {
    async fn authorize_play(
        &self,
        request: &streamr_media::server::StreamRequest,
    ) -> Result<(), streamr_media::server::Refusal> {
        self.0.ensure(&request.key);
        Ok(())
    }
}

/// Any free port on the loopback address.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An RTMP relay admitting every publisher and an HTTP server serving `config`, on one hub and
/// free loopback ports.
pub async fn start_relay_and_http(
    config: streamr_media::http::LiveHlsConfig,
) -> (RelayHub, RelayServer, streamr_media::http::HttpServer) {
    let hub = RelayHub::default();
    let rtmp = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(SocketAddr::from(([127, 0, 0, 1], 0))),
        std::sync::Arc::new(streamr_media::server::AllowAll),
        hub.clone(),
    )
    .await
    .expect("the relay starts");
    let http = streamr_media::http::HttpServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        hub.clone(),
        config,
    )
    .await
    .expect("the HTTP server starts");
    (hub, rtmp, http)
}

/// Starts a relay server on a free loopback port.
pub async fn start_server(mut config: RelayServerConfig) -> RelayServer {
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    RelayServer::start(config)
        .await
        .expect("bind a loopback port")
}

/// `rtmp://addr/app/name`.
pub fn rtmp_url(server: &RelayServer, app: &str, name: &str) -> String {
    format!("rtmp://{}/{app}/{name}", server.local_addr())
}

/// A command whose child is killed if the test ends first.
fn command(program: &str) -> Command {
    require_tool(program);
    let mut command = Command::new(program);
    command
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Publishes `seconds` of 640x360 25 fps H.264 (1 s GOPs) and AAC in real time with ffmpeg.
pub fn ffmpeg_publish(url: &str, seconds: u32) -> Child {
    command("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-f", "flv", url])
        .spawn()
        .expect("spawn ffmpeg publisher")
}

/// Encodes `seconds` of 640x360 25 fps H.264 (1 s GOPs) and AAC into an FLV file with ffmpeg.
pub async fn encode_test_file(path: &Path, seconds: u32) {
    let mut encoder = command("ffmpeg");
    encoder
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(path);
    let (status, stderr) = finish(
        encoder.spawn().expect("spawn ffmpeg"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        status.is_some_and(|s| s.success()),
        "encoding the test file failed: {stderr}"
    );
}

/// Publishes an H.264/AAC FLV file with gstreamer: flvdemux, parsers, flvmux and rtmp2sink.
/// (The H.264 is encoded by ffmpeg because x264enc is not part of the packages the test suite
/// installs.)
pub fn gstreamer_publish_file(source: &Path, url: &str) -> Child {
    let pipeline = format!(
        "filesrc location={} ! flvdemux name=demux \
         flvmux name=mux streamable=true ! rtmp2sink location={url} \
         demux.video ! queue ! h264parse ! mux.video \
         demux.audio ! queue ! aacparse ! mux.audio",
        source.display()
    );
    command("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .spawn()
        .expect("spawn gst-launch-1.0 publisher")
}

/// Plays `url` with ffmpeg into an FLV file (stream copy).
pub fn ffmpeg_play(url: &str, out: &Path) -> Child {
    command("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", url])
        .args(["-c", "copy", "-f", "flv", "-y"])
        .arg(out)
        .spawn()
        .expect("spawn ffmpeg player")
}

/// Plays `url` live with rtmpdump into an FLV file.
pub fn rtmpdump_play(url: &str, out: &Path) -> Child {
    command("rtmpdump")
        .args(["-q", "-v", "-r", url, "-o"])
        .arg(out)
        .spawn()
        .expect("spawn rtmpdump player")
}

/// Plays `url` with gstreamer's rtmp2src straight into a file.
pub fn gstreamer_play(url: &str, out: &Path) -> Child {
    command("gst-launch-1.0")
        .args([
            "-q",
            "rtmp2src",
            &format!("location={url}"),
            "!",
            "filesink",
        ])
        .arg(format!("location={}", out.display()))
        .spawn()
        .expect("spawn gst-launch-1.0 player")
}

/// Waits for a child to exit, killing it after `limit`; returns its stderr.
pub async fn finish(
    mut child: Child,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let mut stderr = child.stderr.take();
    let status = match timeout(limit, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let mut text = String::new();
    if let Some(stderr) = stderr.as_mut() {
        let _ = timeout(Duration::from_secs(2), stderr.read_to_string(&mut text)).await;
    }
    (status, text)
}

/// Waits until the hub counts `viewers` viewers on `key`.
pub async fn wait_for_viewers(hub: &RelayHub, key: &StreamKey, viewers: usize) {
    let ok = wait_until(Duration::from_secs(15), || {
        hub.stream_stats(key)
            .is_some_and(|s| s.viewers.len() >= viewers)
    })
    .await;
    assert!(ok, "{viewers} viewers never subscribed to {key}");
}

/// The viewers the hub counts on `key` now.
pub fn viewer_count(hub: &RelayHub, key: &StreamKey) -> usize {
    hub.stream_stats(key).map_or(0, |stats| stats.viewers.len())
}

/// Checks that one of `key`'s two viewers, which stopped reading at `stopped_at`, is closed
/// for its write deadline `deadline`: not before about that long, and not much after.
pub async fn assert_one_viewer_closed_a_deadline_after(
    hub: &RelayHub,
    key: &StreamKey,
    stopped_at: std::time::Instant,
    deadline: Duration,
) {
    assert_eq!(viewer_count(hub, key), 2, "both players subscribed");
    assert!(
        wait_until(deadline + Duration::from_secs(5), || viewer_count(hub, key)
            == 1)
        .await,
        "the stalled player was not closed"
    );
    let closed_after = stopped_at.elapsed();
    assert!(
        closed_after >= deadline * 9 / 10,
        "closed after only {closed_after:?}"
    );
    assert!(
        closed_after < deadline + Duration::from_secs(3),
        "closed only after {closed_after:?}"
    );
}

/// Checks that the other player, whose byte count is `received`, got more than 100 KB since
/// `received_then` (while a stalled one was being closed) and goes on getting bytes.
pub async fn assert_other_player_plays_on(
    received: &std::sync::atomic::AtomicU64,
    received_then: u64,
) {
    use std::sync::atomic::Ordering;
    let received_meanwhile = received.load(Ordering::Relaxed) - received_then;
    assert!(
        received_meanwhile > 100_000,
        "the other player got {received_meanwhile} bytes meanwhile"
    );
    let received_at_close = received.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(10), || {
            received.load(Ordering::Relaxed) > received_at_close + 200_000
        })
        .await,
        "the other player plays on"
    );
}

/// Waits until `key` has had a publisher and no longer has one.
pub async fn wait_for_publish_end(hub: &RelayHub, key: &StreamKey, limit: Duration) {
    let ok = wait_until(limit, || {
        hub.stream_stats(key)
            .is_some_and(|s| s.publish_count > 0 && !s.publishing)
    })
    .await;
    assert!(
        ok,
        "publish of {key} did not start and end within {limit:?}"
    );
}

/// What ffprobe says about a played file.
#[derive(Debug, Default)]
pub struct Probe {
    pub video_codec: String,
    pub audio_codec: String,
    pub width: u32,
    pub height: u32,
    pub video_frames: u32,
    pub first_video_packet_is_key: bool,
    /// Anything `ffmpeg -v error -i file -f null -` printed.
    pub decode_errors: String,
}

async fn output(program: &str, args: &[&str]) -> String {
    require_tool(program);
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// Probes `path` with ffprobe (streams, counted frames, first packet flags) and decodes it.
pub async fn probe(path: &Path) -> Probe {
    let file = path.to_str().expect("utf-8 temp path");
    let streams = output(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,nb_read_frames",
            "-of",
            "compact=p=0",
            file,
        ],
    )
    .await;
    let mut probe = Probe::default();
    for line in streams.lines() {
        let fields: std::collections::HashMap<&str, &str> =
            line.split('|').filter_map(|f| f.split_once('=')).collect();
        match fields.get("codec_type") {
            Some(&"video") => {
                probe.video_codec = fields.get("codec_name").unwrap_or(&"").to_string();
                probe.width = fields
                    .get("width")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                probe.height = fields
                    .get("height")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                probe.video_frames = fields
                    .get("nb_read_frames")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
            Some(&"audio") => {
                probe.audio_codec = fields.get("codec_name").unwrap_or(&"").to_string();
            }
            _ => {}
        }
    }
    let first_packet = output(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            file,
        ],
    )
    .await;
    probe.first_video_packet_is_key = first_packet.trim_start().starts_with('K');
    probe.decode_errors = output("ffmpeg", &["-v", "error", "-i", file, "-f", "null", "-"])
        .await
        .trim()
        .to_owned();
    probe
}

/// Asserts a played file is a clean H.264/AAC 640x360 recording starting on a keyframe with
/// `expected_frames` video frames (within `tolerance`).
pub async fn assert_clean_recording(path: &Path, expected_frames: u32, tolerance: u32) {
    let probe = probe(path).await;
    let who = path.display();
    assert_eq!(probe.video_codec, "h264", "{who}: {probe:?}");
    assert_eq!(probe.audio_codec, "aac", "{who}: {probe:?}");
    assert_eq!((probe.width, probe.height), (640, 360), "{who}");
    assert!(
        probe.first_video_packet_is_key,
        "{who} does not start on a keyframe"
    );
    assert!(
        probe.video_frames.abs_diff(expected_frames) <= tolerance,
        "{who}: {} video frames, expected {expected_frames} ± {tolerance}",
        probe.video_frames
    );
    assert!(
        probe.decode_errors.is_empty(),
        "{who} decode errors: {}",
        probe.decode_errors
    );
}

/// A temporary directory and file names inside it.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A minimal RTMP client over the library's sans-IO client session.
pub struct TestClient {
    pub socket: TcpStream,
    pub session: ClientSession,
}

impl TestClient {
    /// Connects and drives the session until it is active (`Ok`) or the server refuses
    /// (`Err` with the refused status code).
    pub async fn start(
        addr: SocketAddr,
        app: &str,
        key: &str,
        role: ClientRole,
    ) -> Result<TestClient, String> {
        let socket = TcpStream::connect(addr).await.expect("connect");
        TestClient::start_on(socket, addr, app, key, role).await
    }

    /// Like [`TestClient::start`] on an already connected socket.
    pub async fn start_on(
        socket: TcpStream,
        addr: SocketAddr,
        app: &str,
        key: &str,
        role: ClientRole,
    ) -> Result<TestClient, String> {
        let config = ClientConfig::new(&addr.to_string(), app, key, role);
        let mut client = TestClient {
            socket,
            session: ClientSession::new(config),
        };
        let mut buffer = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            client.flush().await;
            while let Some(event) = client.session.poll_event() {
                match event {
                    ClientEvent::PublishStarted | ClientEvent::PlayStarted => return Ok(client),
                    ClientEvent::Rejected { status, .. } => return Err(status.code),
                    _ => {}
                }
            }
            let read = tokio::time::timeout_at(deadline, client.socket.read(&mut buffer))
                .await
                .expect("server answers within 10 s")
                .expect("read from server");
            assert!(read > 0, "server closed the connection during setup");
            client
                .session
                .feed(&buffer[..read])
                .expect("valid server bytes");
        }
    }

    /// Writes whatever the session queued.
    pub async fn flush(&mut self) {
        if self.session.has_output() {
            let output = self.session.take_output();
            self.socket
                .write_all(&output)
                .await
                .expect("write to server");
        }
    }
}

/// Does a plain RTMP handshake (C0+C1, reads S0+S1+S2, sends C2) on a raw socket.
pub async fn raw_handshake(socket: &mut TcpStream) {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    socket.write_all(&c0c1).await.expect("send C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    socket.read_exact(&mut s0s1s2).await.expect("read S0+S1+S2");
    // C2 echoes S1.
    socket
        .write_all(&s0s1s2[1..1 + 1536])
        .await
        .expect("send C2");
}

/// Reads until the server closes the connection; true when it did within `limit`.
pub async fn closed_by_server(socket: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Publishes `tag` on `client` as the media it is.
pub async fn send_tag(
    client: &mut streamr_media::client::RtmpClient,
    tag: &streamr_media::flv::FlvTag,
) {
    let kind = match tag.tag_type {
        streamr_media::flv::FlvTagType::Audio => streamr_media::rtmp::session::MediaKind::Audio,
        _ => streamr_media::rtmp::session::MediaKind::Video,
    };
    client
        .send_media(kind, tag.timestamp, tag.data.clone())
        .await
        .unwrap();
}

/// The shipped sample's (`samples/sample.flv`) FLV tags, in file order.
pub fn sample_tags() -> Vec<streamr_media::flv::FlvTag> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv");
    let mut reader = streamr_media::flv::FlvReader::new();
    reader.push(&std::fs::read(path).expect("the sample"));
    let mut tags = Vec::new();
    while let Ok(Some(tag)) = reader.next_tag() {
        tags.push(tag);
    }
    tags
}

/// A video tag body of `size` bytes: a keyframe or an inter frame (AVC NALU), filled with 0x5a.
pub fn video_payload(keyframe: bool, size: usize) -> bytes::Bytes {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.resize(size, 0x5a);
    bytes::Bytes::from(body)
}

/// Publishes about 1 MB/s on `publisher` (20 KB video frames every 20 ms from timestamp 20, a
/// keyframe every second) until `stop` is cancelled; the publisher then leaves.
pub fn spawn_megabyte_publisher(
    publisher: streamr_media::relay::Publisher,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use streamr_media::relay::FrameKind;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 1u32.. {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            publisher.send(FrameKind::Video, i * 20, video_payload(i % 50 == 0, 20_000));
        }
    })
}

/// Reads `stream` to its end (or a read error) on a task of its own, adding each read's length
/// to `received`; the task returns the bytes read.
pub fn spawn_counting_reader<R>(
    mut stream: R,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut body = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return body,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    })
}
