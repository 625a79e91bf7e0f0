//! Hostile input against a running relay: each bad connection is closed alone, with a warn log
//! naming the peer and what was wrong, while a real ffmpeg publish and play go on.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use rand::RngCore;
use streamr_media::relay::StreamKey;
use streamr_media::server::RelayServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Log lines written by the server during this test binary.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

fn capture_logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
    .clone()
}

/// A chunk with a type 0 header on `csid` announcing `length` bytes of message `type_id`.
fn type0_header(csid: u8, length: u32, type_id: u8) -> Vec<u8> {
    let mut header = vec![csid, 0, 0, 0];
    header.extend_from_slice(&length.to_be_bytes()[1..]);
    header.push(type_id);
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

fn set_chunk_size(size: u32) -> Vec<u8> {
    let mut message = type0_header(2, 4, 1);
    message.extend_from_slice(&size.to_be_bytes());
    message
}

/// One hostile connection: what it sends and the words its close reason must contain.
struct Case {
    name: &'static str,
    handshake_first: bool,
    bytes: Vec<u8>,
    /// Close our write side after sending (a peer that vanishes).
    hang_up: bool,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let mut random = vec![0u8; 4096];
    rand::thread_rng().fill_bytes(&mut random);
    random[0] = 0x55; // never the RTMP version byte
    let mut partial_c1 = vec![3u8];
    partial_c1.extend(std::iter::repeat_n(7u8, 700));
    let mut too_long = type0_header(3, 0xFF_FFFF, 20);
    too_long.extend(std::iter::repeat_n(0u8, 1000));
    let mut orphan_continuation = vec![0xC5u8];
    orphan_continuation.extend(std::iter::repeat_n(0u8, 100));
    vec![
        Case {
            name: "random bytes",
            handshake_first: false,
            bytes: random,
            hang_up: false,
            reason: "version",
        },
        Case {
            name: "truncated handshake",
            handshake_first: false,
            bytes: partial_c1.clone(),
            hang_up: true,
            reason: "during the handshake",
        },
        Case {
            name: "stalled handshake",
            handshake_first: false,
            bytes: partial_c1,
            hang_up: false,
            reason: "no handshake",
        },
        Case {
            name: "chunk size 0",
            handshake_first: true,
            bytes: set_chunk_size(0),
            hang_up: false,
            reason: "Set Chunk Size to 0",
        },
        Case {
            name: "huge chunk size",
            handshake_first: true,
            bytes: set_chunk_size(0xFFFF_FFFF),
            hang_up: false,
            reason: "Set Chunk Size",
        },
        Case {
            name: "message over the length limit",
            handshake_first: true,
            bytes: too_long,
            hang_up: false,
            reason: "exceeds",
        },
        Case {
            name: "type 3 first chunk on an unknown chunk stream",
            handshake_first: true,
            bytes: orphan_continuation,
            hang_up: false,
            reason: "unknown chunk stream 5",
        },
    ]
}

/// Runs one case; returns our local address (the server's peer address for us).
async fn run_case(server: SocketAddr, case: &Case) -> SocketAddr {
    let mut socket = TcpStream::connect(server).await.expect("connect");
    let local = socket.local_addr().expect("local address");
    if case.handshake_first {
        raw_handshake(&mut socket).await;
    }
    // The server may close as soon as it has seen enough; a failed write is fine.
    let _ = socket.write_all(&case.bytes).await;
    if case.hang_up {
        let _ = socket.shutdown().await;
    }
    assert!(
        closed_by_server(&mut socket, Duration::from_secs(10)).await,
        "{}: the server kept the connection open",
        case.name
    );
    local
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn hostile_connections_close_alone_with_a_logged_reason_while_a_real_stream_goes_on() {
    let logs = capture_logs();
    let mut config = RelayServerConfig::default();
    config.max_message_size = 256 * 1024;
    config.handshake_timeout = Duration::from_secs(2);
    let server = start_server(config).await;
    let key = StreamKey::parse("live", "good").unwrap();
    let url = rtmp_url(&server, "live", "good");
    let scratch = Scratch::new();
    let out = scratch.path("played.flv");
    let player = ffmpeg_play(&url, &out);
    wait_for_viewers(server.hub(), &key, 1).await;
    let publisher = ffmpeg_publish(&url, 6);
    assert!(
        wait_until(Duration::from_secs(10), || server.hub().is_publishing(&key)).await,
        "ffmpeg never started publishing"
    );

    let cases = cases();
    let addr = server.local_addr();
    let peers = futures_util::future::join_all(cases.iter().map(|case| run_case(addr, case))).await;

    let (status, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg publish failed: {stderr}"
    );
    wait_for_publish_end(server.hub(), &key, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.shutdown().await;
    finish(player, Duration::from_secs(15)).await;
    assert_clean_recording(&out, 150, 3).await;

    let text = logs.text();
    for (case, peer) in cases.iter().zip(peers) {
        let line = text
            .lines()
            .find(|line| line.contains(&format!("peer={peer}")) && line.contains("closing"))
            .unwrap_or_else(|| panic!("{}: no close reason logged for {peer}:\n{text}", case.name));
        assert!(
            line.contains("WARN"),
            "{}: not a warning: {line}",
            case.name
        );
        assert!(
            line.contains(case.reason),
            "{}: reason should mention {:?}: {line}",
            case.name,
            case.reason
        );
    }
}
