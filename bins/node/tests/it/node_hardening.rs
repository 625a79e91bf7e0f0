//! The `streamr-node` binary facing hostile peers over loopback: names that try to leave
//! `--hls-dir`, floods of idle RTMP connections and of half-sent HTTP requests, chunk headers
//! declaring huge messages. Legitimate publishers, players and `/healthz` keep getting through,
//! and `/metrics` reports what happened.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, ffmpeg_plays, ffmpeg_publish, Child};
use streamr_media::{RtmpClient, RtmpUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A running `streamr-node` binary and its addresses.
struct NodeProcess {
    _child: Child,
    pid: u32,
    rtmp: SocketAddr,
    http: SocketAddr,
}

/// Starts the node binary with `args`, under an open-file limit of `open_files`, and waits
/// until `/healthz` answers.
async fn start_node(args: &[&str], open_files: u32) -> NodeProcess {
    let (rtmp, http) = (free_addr(), free_addr());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_streamr-node"))
        .args(["--rtmp-listen", &rtmp.to_string()])
        .args(["--http-listen", &http.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = command.spawn().expect("start streamr-node");
    let pid = child.id();
    let node = NodeProcess {
        _child: Child(child),
        pid,
        rtmp,
        http,
    };
    eventually("the node to answer /healthz", || async {
        healthz(http).await.then_some(())
    })
    .await;
    node
}

/// Whether `GET /healthz` answers 200 within 5 s.
async fn healthz(http: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

async fn scrape(http: SocketAddr) -> String {
    reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the sample `series` (name and labels exactly as exposed) in `text`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// A TCP connection to `server` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(server).await
}

/// Reads until the server closes the connection; whether it did before `deadline`.
async fn closed_by_server(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The RTMP simple handshake (C0+C1, S0+S1+S2, C2).
async fn rtmp_handshake(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    socket.write_all(&c0c1).await?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    socket.read_exact(&mut s0s1s2).await?;
    socket.write_all(&s0s1s2[1..1 + 1536]).await
}

/// The chunked `connect` command for `app`.
fn rtmp_connect(app: &str) -> Vec<u8> {
    use streamr_media::amf0::Amf0Value;
    use streamr_media::rtmp::chunk::ChunkEncoder;
    use streamr_media::rtmp::message::{Command as RtmpCommand, RtmpMessage};
    use tokio_util::codec::Encoder;
    let connect = RtmpMessage::Command {
        command: RtmpCommand {
            name: "connect".into(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String(app.into())),
                ("tcUrl".into(), Amf0Value::String(format!("rtmp://x/{app}"))),
            ]),
            arguments: Vec::new(),
        },
        amf3: false,
    };
    let mut out = bytes::BytesMut::new();
    ChunkEncoder::new()
        .encode(connect.to_raw(3, 0, 0).unwrap(), &mut out)
        .unwrap();
    out.to_vec()
}

/// ffmpeg publishing its test pattern for `seconds` with the exact RTMP app and play path given.
fn ffmpeg_publish_as(rtmp: SocketAddr, app: &str, playpath: &str, seconds: u32) -> Child {
    let child = Command::new("timeout")
        .arg("60")
        .args(["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-f", "flv"])
        .args(["-rtmp_app", app, "-rtmp_playpath", playpath])
        .arg(format!("rtmp://{rtmp}/placeholder/placeholder"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is required (Debian package ffmpeg)");
    Child(child)
}

/// The status code the server answers a `GET` of `path`, sent byte for byte.
async fn raw_get_status(http: SocketAddr, path: &str) -> u16 {
    let mut socket = TcpStream::connect(http).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Every file and directory under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn names_that_leave_the_hls_dir_are_refused_and_write_nothing_outside() {
    let root = tempfile::tempdir().unwrap();
    // Deep enough that every escape below would still land inside `root`.
    let hls_dir = root.path().join("one/two/three/hls");
    std::fs::create_dir_all(&hls_dir).unwrap();
    let node = start_node(&["--hls-dir", hls_dir.to_str().unwrap()], 4096).await;

    // Real encoders sending real media under hostile names: the app and play path as ffmpeg
    // splits `rtmp://host/live/../../../x`, and each part on its own.
    let mut hostile: Vec<Child> = [
        ("live/..", "../../x"),
        ("live", "../../../x"),
        ("..", "x"),
        ("live", "..\\..\\x"),
    ]
    .into_iter()
    .map(|(app, path)| ffmpeg_publish_as(node.rtmp, app, path, 6))
    .collect();

    // A raw client asking for names that only a hand-written client sends.
    for (app, stream_key) in [
        ("live", "/"),
        ("live", "../../../x"),
        ("live", "a\u{0}b"),
        ("live", "a\nb"),
        ("..", "x"),
        ("", "x"),
    ] {
        let url = RtmpUrl {
            host: "127.0.0.1".into(),
            port: node.rtmp.port(),
            app: app.into(),
            stream_key: stream_key.into(),
        };
        assert!(
            RtmpClient::publish(&url).await.is_err(),
            "{app:?}/{stream_key:?}: publishing was accepted"
        );
    }

    // A legitimate stream beside them is mirrored to disk as usual.
    let _good = ffmpeg_publish(&format!("rtmp://{}/live/good", node.rtmp), 30);
    let playlist = hls_dir.join("live/good.m3u8");
    eventually("the legitimate stream's playlist on disk", || async {
        playlist.exists().then_some(())
    })
    .await;
    let mut statuses = Vec::new();
    for child in &mut hostile {
        statuses.push(
            eventually("a hostile ffmpeg to stop", || {
                let status = child.0.try_wait().ok().flatten();
                async move { status }
            })
            .await,
        );
    }

    for path in walk(root.path()) {
        assert!(
            path.starts_with(&hls_dir) || hls_dir.starts_with(&path),
            "{} was written outside --hls-dir",
            path.display()
        );
        let relative = path.strip_prefix(&hls_dir).unwrap_or(&path);
        assert!(
            relative == Path::new("live")
                || relative.starts_with("live/good")
                || relative == Path::new("live/good.m3u8")
                || hls_dir.starts_with(&path),
            "unexpected file {}",
            path.display()
        );
    }
    assert!(!Path::new("/.m3u8").exists());
    assert!(
        statuses.iter().all(|status| !status.success()),
        "a hostile publish was accepted"
    );

    // HTTP paths are checked the same way, escaped forms included (sent as raw bytes: an
    // HTTP client library would normalise them first).
    for path in [
        "/live/%2E%2E.m3u8",
        "/%2E%2E/x.m3u8",
        "/../x.m3u8",
        "/live/..%2F..%2Fx.flv",
        "/live/.hidden/1.ts",
        "/live/a%00b.m3u8",
    ] {
        assert_eq!(raw_get_status(node.http, path).await, 400, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn idle_rtmp_connections_neither_lock_out_publishers_nor_players_and_are_closed() {
    let node = start_node(
        &[
            "--rtmp-max-connections",
            "200",
            "--rtmp-max-connections-per-client",
            "40",
            "--rtmp-setup-timeout",
            "4s",
        ],
        4096,
    )
    .await;

    // Flooders on eight loopback addresses connect and then sit idle: 8 x 40 connections are
    // more than the node's 200, so the per-client share alone cannot protect the rest.
    let mut idle = Vec::new();
    for host in 2..10u8 {
        for _ in 0..40 {
            let Ok(mut socket) = connect_from(Ipv4Addr::new(127, 0, 0, host), node.rtmp).await
            else {
                continue;
            };
            if rtmp_handshake(&mut socket).await.is_err() {
                continue;
            }
            if socket.write_all(&rtmp_connect("live")).await.is_ok() {
                idle.push(socket);
            }
        }
    }
    let flooded = scrape(node.http).await;
    assert!(
        metric(
            &flooded,
            "streamr_connections_rejected_total{protocol=\"rtmp\",reason=\"connection_limit\"}"
        ) > 0.0,
        "the flood did not fill the RTMP budget"
    );

    // A real publisher and a real player get through: the idle connections time out.
    let publish_url = format!("rtmp://{}/live/show", node.rtmp);
    let mut publisher = ffmpeg_publish(&publish_url, 60);
    eventually("a publisher to get through the flood", || {
        let playing = ffmpeg_plays(&publish_url, 25);
        if !playing {
            // The publisher may have been refused while the budget was full; start it again.
            if publisher.0.try_wait().ok().flatten().is_some() {
                publisher = ffmpeg_publish(&publish_url, 60);
            }
        }
        async move { playing.then_some(()) }
    })
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    for socket in &mut idle {
        assert!(
            closed_by_server(socket, deadline).await,
            "an idle connection was kept open"
        );
    }
    let after = scrape(node.http).await;
    assert!(
        metric(
            &after,
            "streamr_connections_closed_total{protocol=\"rtmp\",reason=\"setup_timeout\"}"
        ) >= idle.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn healthz_and_rtmp_keep_answering_under_a_half_sent_request_flood() {
    // An open-file limit the flood alone would exhaust without connection budgets.
    let node = start_node(
        &[
            "--http-max-connections",
            "300",
            "--http-max-connections-per-client",
            "100",
            "--rtmp-max-connections",
            "200",
            "--http-header-timeout",
            "3s",
        ],
        1024,
    )
    .await;

    // 1500 half-sent requests from one address (a bounded slowloris).
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    let mut stalled = 0;
    for _ in 0..1500 {
        // A server that stopped accepting leaves connects hanging: stop flooding then.
        let connect =
            tokio::time::timeout(Duration::from_secs(2), connect_from(flooder, node.http));
        let Ok(Ok(mut socket)) = connect.await else {
            stalled += 1;
            if stalled == 5 {
                break;
            }
            continue;
        };
        if socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .is_ok()
        {
            held.push(socket);
        }
    }
    assert!(healthz(node.http).await, "/healthz stopped answering");
    let url = format!("rtmp://{}/live/during-flood", node.rtmp);
    let _publisher = ffmpeg_publish(&url, 30);
    eventually("RTMP to serve a player during the HTTP flood", || {
        let played = ffmpeg_plays(&url, 10);
        async move { played.then_some(()) }
    })
    .await;
    assert!(healthz(node.http).await, "/healthz stopped answering");

    let deadline = Instant::now() + Duration::from_secs(60);
    for socket in &mut held {
        assert!(
            closed_by_server(socket, deadline).await,
            "a half-sent request was kept open"
        );
    }
    let metrics = scrape(node.http).await;
    assert!(
        metric(
            &metrics,
            "streamr_connections_rejected_total{protocol=\"http\",reason=\"client_limit\"}"
        ) >= 1000.0
    );
}

/// The node's virtual memory size in bytes (`VmSize`).
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/PID/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_message_lengths_do_not_reserve_memory() {
    let node = start_node(&[], 4096).await;
    // Warm up: one full connection, so thread stacks and buffers of the first connection are
    // in the baseline.
    let mut warm = TcpStream::connect(node.rtmp).await.unwrap();
    rtmp_handshake(&mut warm).await.unwrap();
    let before = vm_size(node.pid);

    // 20 connections: the largest chunk size, then a chunk header declaring a message of
    // 16 MiB - 1 on each of 60 chunk streams, followed by 1 KiB of it.
    let mut attack = Vec::new();
    let mut set_chunk_size = vec![2u8, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    set_chunk_size.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    for _ in 0..20 {
        let mut socket = TcpStream::connect(node.rtmp).await.unwrap();
        rtmp_handshake(&mut socket).await.unwrap();
        socket.write_all(&set_chunk_size).await.unwrap();
        for csid in 3..=62u8 {
            let mut chunk = vec![csid, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
            chunk.extend(std::iter::repeat_n(0u8, 1024));
            socket.write_all(&chunk).await.unwrap();
        }
        attack.push(socket);
    }
    // The node has read everything once its received-bytes counter covers it.
    let sent = (20 * (1537 + 1536 + 16 + 60 * (12 + 1024))) as f64;
    eventually("the node to read the declared messages", || async {
        let received = metric(
            &scrape(node.http).await,
            "streamr_bytes_received_total{protocol=\"rtmp\"}",
        );
        (received >= sent).then_some(())
    })
    .await;
    let grown = vm_size(node.pid).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "20 connections that sent 1.2 MiB made the node reserve {} MiB",
        grown >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn metrics_report_real_traffic() {
    let hls = tempfile::tempdir().unwrap();
    let origin = start_node(&["--hls-dir", hls.path().to_str().unwrap()], 4096).await;
    let url = format!("rtmp://{}/live/show", origin.rtmp);
    let _publisher = ffmpeg_publish(&url, 60);
    eventually("an RTMP player to play", || {
        let played = ffmpeg_plays(&url, 25);
        async move { played.then_some(()) }
    })
    .await;
    let playlist_url = format!("http://{}/live/show.m3u8", origin.http);
    let segment = eventually("an HLS segment", || async {
        let playlist = reqwest::get(&playlist_url).await.ok()?.text().await.ok()?;
        playlist
            .lines()
            .find(|line| line.ends_with(".ts"))
            .map(str::to_owned)
    })
    .await;
    let segment_bytes = reqwest::get(format!("http://{}/live/{segment}", origin.http))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!segment_bytes.is_empty());

    // A relay pulls the stream from the origin for its own player.
    let upstream = format!("rtmp://{}", origin.rtmp);
    let relay = start_node(&["--upstream", &upstream], 4096).await;
    let relay_url = format!("rtmp://{}/live/show", relay.rtmp);
    eventually("a player of the relay to play", || {
        let played = ffmpeg_plays(&relay_url, 10);
        async move { played.then_some(()) }
    })
    .await;

    let text = scrape(origin.http).await;
    assert_eq!(metric(&text, "streamr_publishers"), 1.0);
    assert_eq!(metric(&text, "streamr_streams"), 1.0);
    assert!(
        metric(
            &text,
            "streamr_connections_accepted_total{protocol=\"rtmp\"}"
        ) >= 3.0
    );
    assert!(
        metric(
            &text,
            "streamr_connections_accepted_total{protocol=\"http\"}"
        ) >= 2.0
    );
    assert!(metric(&text, "streamr_bytes_received_total{protocol=\"rtmp\"}") > 100_000.0);
    assert!(metric(&text, "streamr_bytes_sent_total{protocol=\"rtmp\"}") > 10_000.0);
    assert!(
        metric(&text, "streamr_bytes_sent_total{protocol=\"http\"}") >= segment_bytes.len() as f64
    );
    assert!(metric(&text, "streamr_hls_segments_total") >= 1.0);
    for series in [
        "streamr_connections_open{protocol=\"rtmp\"}",
        "streamr_players{protocol=\"rtmp\"}",
        "streamr_dropped_frames_total",
        "streamr_slow_viewer_skips_total",
        "streamr_connections_closed_total{protocol=\"rtmp\",reason=\"handshake_timeout\"}",
        "streamr_connections_rejected_total{protocol=\"http\",reason=\"client_limit\"}",
    ] {
        assert!(metric(&text, series) >= 0.0);
    }
    let relayed = scrape(relay.http).await;
    assert!(metric(&relayed, "streamr_upstream_pulls_total") >= 1.0);
    assert_eq!(metric(&relayed, "streamr_upstream_failovers_total"), 0.0);
    assert!(metric(&relayed, "streamr_bytes_sent_total{protocol=\"rtmp\"}") > 10_000.0);
}
