//! The viewer in LL-HLS mode against an in-process network (a coordinator on SQLite, an origin
//! node, friend nodes relaying it, the shipped sample published in a loop): it plays part by
//! part at the live edge, every part checked against the hash the origin reported as it cut it
//! before it is output; a friend serving altered parts gets none of them played.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::Network;
use streamr_client::viewer::{Viewer, ViewerConfig, ViewerStats};

/// Waits (at most 30 s) until `done` holds for the viewer's counters.
async fn wait_for(viewer: &Viewer, what: &str, done: impl Fn(&ViewerStats) -> bool) {
    let mut stats = viewer.watch_stats();
    let outcome = tokio::time::timeout(Duration::from_secs(30), stats.wait_for(|s| done(s))).await;
    assert!(matches!(outcome, Ok(Ok(_))), "{what}: {:?}", viewer.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_outputs_verified_parts_at_the_live_edge() {
    let network = Network::start(1, |segments| segments.iter().any(|s| s.ll.is_some())).await;
    let out = tempfile::NamedTempFile::new().expect("output file");
    let file = tokio::fs::File::create(out.path()).await.expect("output");
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, Some(Box::new(file))).expect("the viewer starts");
    // Two segments' worth of parts verified, and a whole segment chained into receipts.
    wait_for(&viewer, "parts and a segment verified", |s| {
        s.verified_parts >= 8 && s.verified_segments >= 1 && s.receipts_accepted >= 1
    })
    .await;
    // At the live edge: the part output last was the newest the node listed (or the one it
    // was producing), not one of a backlog; parts are 350 ms, segments several parts long.
    let mut behind = Vec::new();
    for _ in 0..5 {
        let parts = viewer.stats().parts;
        wait_for(&viewer, "another part", |s| s.parts > parts).await;
        behind.push(viewer.stats().last_part_behind);
    }
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(
        behind.iter().all(|b| b.is_some_and(|b| b <= 1)),
        "parts listed after the one output: {behind:?}"
    );
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    // Stopping (even while a part is being checked) is not a node failure.
    assert_eq!(stats.failovers, 0, "{stats:?}");
    // Every part output was checked first, against the origin's part report (not a segment
    // report a segment later).
    assert_eq!(stats.parts, stats.verified_parts, "{stats:?}");
    let wait = stats.part_check_wait;
    assert!(wait.max_cut_to_verified_ms.is_some(), "{stats:?}");
    let mean = wait.total / u32::try_from(stats.verified_parts.max(1)).unwrap_or(u32::MAX);
    println!(
        "part check: {} parts, wait mean {mean:?} max {:?}; origin cut to checked: last {:?} ms, \
         max {:?} ms",
        stats.verified_parts, wait.max, wait.last_cut_to_verified_ms, wait.max_cut_to_verified_ms
    );
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_parts, 0, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    // What a player reads: the init segment, then fMP4 fragments.
    let written = std::fs::read(out.path()).expect("the output");
    assert_eq!(
        written.get(4..8),
        Some(&b"ftyp"[..]),
        "starts with the init segment"
    );
    let fragments = written.windows(4).filter(|w| *w == b"moof").count();
    assert!(
        fragments as u64 >= stats.parts,
        "{fragments} fragments for {} parts",
        stats.parts
    );
    network.shutdown().await;
}

/// Marks what the tampering proxy puts at the end of every part it alters.
const TAMPERED: &[u8] = b"TAMPERED";

/// An HTTP proxy in front of a friend node that serves every LL-HLS part (`{msn}.{i}.m4s`)
/// with its last bytes replaced by [`TAMPERED`]: what a dishonest friend would serve. The
/// playlists and init segments pass unchanged.
struct TamperingProxy {
    addr: SocketAddr,
    target: Arc<OnceLock<SocketAddr>>,
    tampered: Arc<AtomicU64>,
}

impl TamperingProxy {
    async fn start() -> TamperingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let target: Arc<OnceLock<SocketAddr>> = Arc::default();
        let tampered: Arc<AtomicU64> = Arc::default();
        let http = reqwest::Client::new();
        let (to, count) = (target.clone(), tampered.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(proxy_one(socket, http.clone(), to.clone(), count.clone()));
            }
        });
        TamperingProxy {
            addr,
            target,
            tampered,
        }
    }
}

/// Answers one request (then closes the connection) with the target's answer, parts altered.
async fn proxy_one(
    mut socket: tokio::net::TcpStream,
    http: reqwest::Client,
    target: Arc<OnceLock<SocketAddr>>,
    tampered: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let Some(path) = head.split_whitespace().nth(1) else {
        return;
    };
    let Some(target) = target.get() else {
        return;
    };
    let Ok(response) = http.get(format!("http://{target}{path}")).send().await else {
        return;
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let Ok(body) = response.bytes().await else {
        return;
    };
    let mut body = body.to_vec();
    let file = path
        .split('?')
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("");
    let is_part = file.ends_with(".m4s") && file.matches('.').count() == 2;
    if is_part && status.is_success() && body.len() >= TAMPERED.len() {
        let at = body.len() - TAMPERED.len();
        body[at..].copy_from_slice(TAMPERED);
        tampered.fetch_add(1, Ordering::Relaxed);
    }
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Status"),
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&body).await;
    let _ = socket.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_never_outputs_a_tampered_part_and_fails_over() {
    let proxy = TamperingProxy::start().await;
    let mut network = Network::start_with(&[Some(format!("http://{}", proxy.addr))], |segments| {
        segments.iter().any(|s| s.ll.is_some())
    })
    .await;
    let dishonest = network.friends[0].node_id();
    proxy
        .target
        .set(network.friends[0].http_addr())
        .expect("the proxy's target is set once");
    let out = tempfile::NamedTempFile::new().expect("output file");
    let file = tokio::fs::File::create(out.path()).await.expect("output");
    let mut config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    config.part_verify_timeout = Duration::from_secs(1);
    let viewer = Viewer::start(config, Some(Box::new(file))).expect("the viewer starts");
    // The only friend serves altered parts: the first one is refused and the node given up.
    wait_for(&viewer, "a tampered part refused", |s| {
        s.unverified_parts >= 1 && s.failovers >= 1
    })
    .await;
    assert_eq!(viewer.stats().parts, 0, "{:?}", viewer.stats());
    assert_eq!(viewer.stats().nodes_used.first(), Some(&dishonest));
    // An honest friend joins: the viewer plays from it.
    let honest = network.add_friend(None).await.node_id();
    wait_for(&viewer, "parts from the honest friend", |s| {
        s.verified_parts >= 6 && s.node == Some(honest)
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(proxy.tampered.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.parts, stats.verified_parts, "{stats:?}");
    assert!(stats.unverified_parts >= 1, "{stats:?}");
    let written = std::fs::read(out.path()).expect("the output");
    assert!(
        !written.windows(TAMPERED.len()).any(|w| w == TAMPERED),
        "a tampered part reached the output ({} bytes written, {stats:?})",
        written.len()
    );
    let fragments = written.windows(4).filter(|w| *w == b"moof").count();
    assert!(
        fragments as u64 >= stats.parts,
        "{fragments} fragments for {} parts",
        stats.parts
    );
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_failing_over_to_a_cold_friend_gets_only_verified_parts() {
    let mut network = Network::start(2, |segments| segments.iter().any(|s| s.ll.is_some())).await;
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, None).expect("the viewer starts");
    wait_for(&viewer, "parts verified at the first node", |s| {
        s.verified_parts >= 4 && s.node.is_some()
    })
    .await;
    let serving = viewer.stats().node.expect("a serving node");
    // The friend serving the viewer goes away: the viewer is routed to a node that has not
    // pulled the stream yet (the other friend, which starts pulling now) or to the origin.
    let at = network
        .friends
        .iter()
        .position(|friend| friend.node_id() == serving)
        .expect("the viewer is routed to a friend");
    network.friends.remove(at).shutdown().await;
    let before = viewer.stats().verified_parts;
    wait_for(&viewer, "parts verified after the failover", |s| {
        s.failovers >= 1
            && s.node.is_some_and(|node| node != serving)
            && s.verified_parts >= before + 8
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(stats.nodes_used.len() >= 2, "{stats:?}");
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    network.shutdown().await;
}
