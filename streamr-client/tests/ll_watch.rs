//! The viewer in LL-HLS mode against an in-process network (a coordinator on SQLite, an origin
//! node, friend nodes relaying it, the shipped sample published in a loop): it plays part by
//! part at the live edge, every part checked against the hash the origin reported as it cut it
//! before it is output (from the origin's signed part reports the node passes on, checked by
//! the viewer); a friend serving altered parts gets none of them played, whatever it does to
//! the reports.

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
    // report a segment later) ...
    assert_eq!(stats.parts, stats.verified_parts, "{stats:?}");
    // ... which the node passed on: the coordinator was not asked about each part.
    assert!(
        stats.parts_checked_by_coordinator <= 1 && stats.part_reports_refused == 0,
        "{stats:?}"
    );
    assert!(
        stats.parts_checked_by_report >= stats.verified_parts.saturating_sub(1),
        "{stats:?}"
    );
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

/// What a [`TamperingProxy`] does to the LL-HLS parts (`{msn}.{i}.m4s`) it serves.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Every part with its last bytes replaced by [`TAMPERED`].
    Tamper,
    /// The first `honest` parts as they are, then for each part asked the same part of the
    /// first segment asked: real origin parts played long ago (beyond what the viewer keeps of
    /// its history), served again out of place.
    Rewind { honest: u64 },
    /// Every part tampered with, and the origin's part reports the node passes on made to
    /// vouch for the tampered bytes as [`ReportLie`] says.
    TamperAndReport(ReportLie),
    /// The segment after the first part asked is listed with EXT-X-GAP, as a relay lists
    /// one its upstream's frames stopped following: the LL-HLS playlists list none of its
    /// parts and hint the next segment's first, and none of its files is served.
    Gap,
}

/// How a dishonest node's part reports vouch for its tampered parts.
#[derive(Debug, Clone, Copy)]
enum ReportLie {
    /// The origin's reports with each part's hash replaced by the tampered part's (the
    /// origin's signature kept).
    Alter,
    /// Reports naming the tampered parts, signed by the node's own key.
    SignOwn,
    /// No report at all (every long poll answered empty).
    Withhold,
}

/// An HTTP proxy in front of a friend node that serves LL-HLS parts as [`Misbehaviour`] says:
/// what a dishonest friend would serve. The playlists and init segments pass unchanged.
struct TamperingProxy {
    addr: SocketAddr,
    target: Arc<OnceLock<SocketAddr>>,
    /// Parts altered or served out of place.
    tampered: Arc<AtomicU64>,
}

impl TamperingProxy {
    async fn start() -> TamperingProxy {
        TamperingProxy::with(Misbehaviour::Tamper).await
    }

    async fn with(misbehaviour: Misbehaviour) -> TamperingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let target: Arc<OnceLock<SocketAddr>> = Arc::default();
        let tampered: Arc<AtomicU64> = Arc::default();
        let http = reqwest::Client::new();
        let (to, count) = (target.clone(), tampered.clone());
        let served: Arc<AtomicU64> = Arc::default();
        let first_msn: Arc<AtomicU64> = Arc::default();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(proxy_one(
                    socket,
                    http.clone(),
                    (to.clone(), misbehaviour),
                    (count.clone(), served.clone(), first_msn.clone()),
                ));
            }
        });
        TamperingProxy {
            addr,
            target,
            tampered,
        }
    }
}

/// Answers one request (then closes the connection) with the target's answer, parts altered
/// or moved as `misbehaviour` says; `served` counts the parts asked for and `first_msn` keeps
/// the first one's media sequence number plus one (0: none asked yet).
async fn proxy_one(
    mut socket: tokio::net::TcpStream,
    http: reqwest::Client,
    (target, misbehaviour): (Arc<OnceLock<SocketAddr>>, Misbehaviour),
    (tampered, served, first_msn): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>),
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
    let (dir, file) = {
        let bare = path.split('?').next().unwrap_or("");
        bare.rsplit_once('/').unwrap_or(("", bare))
    };
    let part: Option<(u64, &str)> = file
        .strip_suffix(".m4s")
        .and_then(|name| name.split_once('.'))
        .and_then(|(msn, index)| Some((msn.parse().ok()?, index)));
    if let (Misbehaviour::TamperAndReport(lie), Some(query)) = (misbehaviour, path.split_once('?'))
    {
        if file == "part-reports" {
            let page = lying_reports(&http, *target, dir, query.1, lie).await;
            tampered.fetch_add(1, Ordering::Relaxed);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                page.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&page).await;
            let _ = socket.shutdown().await;
            return;
        }
    }
    if let Misbehaviour::Gap = misbehaviour {
        if let Some((msn, _)) = part {
            let _ = first_msn.compare_exchange(0, msn + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        let gap = first_msn
            .load(Ordering::Relaxed)
            .checked_sub(1)
            .map(|first| first + 1);
        let whole = file
            .strip_suffix(".m4s")
            .and_then(|n| n.parse::<u64>().ok());
        if gap.is_some_and(|gap| part.map(|p| p.0).or(whole) == Some(gap)) {
            tampered.fetch_add(1, Ordering::Relaxed);
            let _ = socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = socket.shutdown().await;
            return;
        }
    }
    let mut asked = path.to_owned();
    if let (Some((msn, index)), Misbehaviour::Rewind { honest }) = (part, misbehaviour) {
        // The first part asked is the first the viewer plays: its msn is kept (plus one).
        let _ = first_msn.compare_exchange(0, msn + 1, Ordering::Relaxed, Ordering::Relaxed);
        let first = first_msn.load(Ordering::Relaxed) - 1;
        if served.fetch_add(1, Ordering::Relaxed) >= honest {
            let query = path
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            asked = format!("{dir}/{first}.{index}.m4s{query}");
            tampered.fetch_add(1, Ordering::Relaxed);
        }
    }
    let Ok(response) = http.get(format!("http://{target}{asked}")).send().await else {
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
    let tamper = matches!(
        misbehaviour,
        Misbehaviour::Tamper | Misbehaviour::TamperAndReport(_)
    );
    if tamper && part.is_some() && status.is_success() && body.len() >= TAMPERED.len() {
        let at = body.len() - TAMPERED.len();
        body[at..].copy_from_slice(TAMPERED);
        tampered.fetch_add(1, Ordering::Relaxed);
    }
    let gap = first_msn
        .load(Ordering::Relaxed)
        .checked_sub(1)
        .map(|first| first + 1);
    if let (Misbehaviour::Gap, Some(gap), true) = (misbehaviour, gap, file.ends_with(".m3u8")) {
        let listed = listed_as_gap(&String::from_utf8_lossy(&body), gap).into_bytes();
        if listed != body {
            tampered.fetch_add(1, Ordering::Relaxed);
        }
        body = listed;
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

/// An LL-HLS playlist with segment `gap` listed as a relay lists one across an upstream gap:
/// no part of it, EXT-X-GAP before its EXTINF once complete, and while it is open a preload
/// hint naming the next segment's first part.
fn listed_as_gap(playlist: &str, gap: u64) -> String {
    let of_gap = |line: &str| {
        line.split("URI=\"")
            .nth(1)
            .is_some_and(|uri| uri.starts_with(&format!("{gap}.")))
    };
    let mut lines: Vec<String> = Vec::new();
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-PART:") && of_gap(line) {
            continue;
        }
        if line.starts_with("#EXT-X-PRELOAD-HINT:") && of_gap(line) {
            lines.push(format!(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.0.m4s\"",
                gap + 1
            ));
            continue;
        }
        if line.starts_with(&format!("{gap}.m4s")) {
            if let Some(extinf) = lines.iter().rposition(|l| l.starts_with("#EXTINF")) {
                lines.insert(extinf, "#EXT-X-GAP".to_owned());
            }
        }
        lines.push(line.to_owned());
    }
    lines.join("\n") + "\n"
}

/// `bytes` as the tampering proxy serves them.
fn tampered(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= TAMPERED.len() {
        let at = bytes.len() - TAMPERED.len();
        bytes[at..].copy_from_slice(TAMPERED);
    }
    bytes
}

/// The node's page of part reports (`query` asked of `{dir}/part-reports`), made to vouch for
/// the tampered parts as `lie` says: each reported part is fetched from the node (same place:
/// relays number parts as the origin does) and tampered with as the proxy serves it.
async fn lying_reports(
    http: &reqwest::Client,
    target: SocketAddr,
    dir: &str,
    query: &str,
    lie: ReportLie,
) -> Vec<u8> {
    use streamr_client::wire::PartReportsPage;
    let after: u64 = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|after| after.parse().ok())
        .unwrap_or(0);
    if let ReportLie::Withhold = lie {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return serde_json::to_vec(&PartReportsPage {
            reports: vec![],
            next: after,
        })
        .expect("json");
    }
    let grant = query
        .split('&')
        .find(|pair| pair.starts_with("grant="))
        .unwrap_or("");
    let real = http
        .get(format!("http://{target}{dir}/part-reports?{query}"))
        .send()
        .await;
    let mut page = match real {
        Ok(response) => response
            .bytes()
            .await
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .unwrap_or(PartReportsPage {
                reports: vec![],
                next: after,
            }),
        Err(_) => PartReportsPage {
            reports: vec![],
            next: after,
        },
    };
    let own = streamr_core::KeyPair::from_seed([99; 32]);
    for numbered in &mut page.reports {
        let mut body = numbered.report.body.clone();
        for part in &mut body.parts {
            let url = format!(
                "http://{target}{dir}/{}.{}.m4s?{grant}",
                part.msn, part.index
            );
            if let Ok(response) = http.get(url).send().await {
                if response.status().is_success() {
                    if let Ok(bytes) = response.bytes().await {
                        part.hash = streamr_core::segment_hash(&tampered(bytes.to_vec()));
                    }
                }
            }
        }
        numbered.report = match lie {
            ReportLie::Alter => streamr_core::Signed {
                body,
                signature: numbered.report.signature,
            },
            _ => {
                body.node_id = own.node_id();
                streamr_core::Signed::sign(body, &own)
            }
        };
    }
    serde_json::to_vec(&page).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_refuses_part_reports_a_node_altered_forged_or_withheld() {
    let lies = [ReportLie::Alter, ReportLie::SignOwn, ReportLie::Withhold];
    let mut proxies = Vec::new();
    for lie in lies {
        proxies.push(TamperingProxy::with(Misbehaviour::TamperAndReport(lie)).await);
    }
    let advertised: Vec<Option<String>> = proxies
        .iter()
        .map(|proxy| Some(format!("http://{}", proxy.addr)))
        .collect();
    let mut network = Network::start_with(&advertised, |segments| {
        segments.iter().any(|s| s.ll.is_some())
    })
    .await;
    for (proxy, friend) in proxies.iter().zip(&network.friends) {
        proxy
            .target
            .set(friend.http_addr())
            .expect("the proxy's target is set once");
    }
    let out = tempfile::NamedTempFile::new().expect("output file");
    let file = tokio::fs::File::create(out.path()).await.expect("output");
    let mut config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    config.part_verify_timeout = Duration::from_secs(1);
    let viewer = Viewer::start(config, Some(Box::new(file))).expect("the viewer starts");
    // Each dishonest friend in turn: its reports vouching for its tampered parts are refused
    // (or never come), the coordinator knows no such part, the part is not played and the
    // node is given up.
    wait_for(&viewer, "every dishonest friend given up", |s| {
        s.failovers >= 3 && s.unverified_parts >= 3
    })
    .await;
    let stats = viewer.stats();
    assert_eq!(stats.parts, 0, "{stats:?}");
    assert_eq!(stats.verified_parts, 0, "{stats:?}");
    assert!(stats.part_reports_refused >= 1, "{stats:?}");
    let used: std::collections::BTreeSet<_> = stats.nodes_used.iter().collect();
    assert_eq!(used.len(), 3, "each dishonest friend was tried: {stats:?}");
    // An honest friend joins: its parts pass on the origin's reports it passes on.
    let honest = network.add_friend(None).await.node_id();
    wait_for(&viewer, "parts from the honest friend", |s| {
        s.verified_parts >= 6 && s.node == Some(honest)
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(
        stats.parts_checked_by_report >= 1,
        "the honest node's reports were used: {stats:?}"
    );
    for proxy in &proxies {
        assert!(proxy.tampered.load(Ordering::Relaxed) >= 1, "{stats:?}");
    }
    let written = std::fs::read(out.path()).expect("the output");
    assert!(
        !written.windows(TAMPERED.len()).any(|w| w == TAMPERED),
        "a tampered part reached the output ({} bytes written, {stats:?})",
        written.len()
    );
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_plays_on_across_a_gap_segment() {
    let proxy = TamperingProxy::with(Misbehaviour::Gap).await;
    let network = Network::start_with(&[Some(format!("http://{}", proxy.addr))], |segments| {
        segments.iter().any(|s| s.ll.is_some())
    })
    .await;
    proxy
        .target
        .set(network.friends[0].http_addr())
        .expect("the proxy's target is set once");
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, None).expect("the viewer starts");
    wait_for(&viewer, "a first part", |s| s.last_part.is_some()).await;
    let first = viewer.stats().last_part.map_or(0, |(msn, _)| msn);
    // The node lists the next segment with EXT-X-GAP: the viewer goes on with the parts of
    // the segment after it, from the same node.
    let gap = first + 1;
    wait_for(&viewer, "parts after the gap", |s| {
        s.last_part
            .is_some_and(|(msn, index)| msn > gap + 1 || msn == gap + 1 && index >= 1)
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    println!("across a gap: {stats:?}");
    assert!(
        proxy.tampered.load(Ordering::Relaxed) >= 1,
        "the gap segment was listed"
    );
    assert_eq!(stats.failovers, 0, "{stats:?}");
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    assert_eq!(stats.parts, stats.verified_parts, "{stats:?}");
    network.shutdown().await;
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

/// The `mfhd` sequence numbers of the fMP4 fragments in `bytes`, in order.
fn fragment_sequence_numbers(bytes: &[u8]) -> Vec<u32> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"mfhd")
        .filter_map(|(at, _)| {
            let field = bytes.get(at + 8..at + 12)?;
            Some(u32::from_be_bytes(field.try_into().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_never_plays_an_older_part_served_in_place_of_a_new_one() {
    let proxy = TamperingProxy::with(Misbehaviour::Rewind { honest: 60 }).await;
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
    wait_for(&viewer, "parts played from the dishonest friend", |s| {
        s.verified_parts >= 50
    })
    .await;
    // Then real origin parts again, from the first segment played, once sixty were played
    // (more than the viewer remembers): the first one out of place is refused and the node
    // given up.
    wait_for(&viewer, "an older part refused", |s| {
        s.unverified_parts >= 1 && s.failovers >= 1
    })
    .await;
    assert_eq!(viewer.stats().nodes_used.first(), Some(&dishonest));
    let honest = network.add_friend(None).await.node_id();
    wait_for(&viewer, "parts from the honest friend", |s| {
        s.verified_parts >= 6 && s.node == Some(honest)
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(proxy.tampered.load(Ordering::Relaxed) >= 1, "{stats:?}");
    // What reached the output is in the origin's order: every fragment after the one before.
    let written = std::fs::read(out.path()).expect("the output");
    let sequence = fragment_sequence_numbers(&written);
    assert!(
        sequence.len() as u64 >= stats.parts,
        "{sequence:?} for {stats:?}"
    );
    assert!(
        sequence.windows(2).all(|w| w[0] < w[1]),
        "fragments out of order in the output: {sequence:?}"
    );
    network.shutdown().await;
}

/// The parts an LL-HLS playlist lists, by file name (path and query left out), oldest first, and its
/// EXT-X-MEDIA-SEQUENCE.
fn listed_parts(playlist: &str) -> (u64, Vec<String>) {
    let msn = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let parts = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter(|l| !l.contains("GAP=YES"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .map(|uri| {
            let path = uri.split('?').next().unwrap_or(uri);
            path.rsplit('/').next().unwrap_or(path).to_owned()
        })
        .collect();
    (msn, parts)
}

/// `GET url` (at most 30 s of 404/503 while the node starts pulling): the body.
async fn fetch_ok(http: &reqwest::Client, url: &str) -> bytes::Bytes {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = http.get(url).send().await.expect("the node answers");
        if response.status().is_success() {
            return response.bytes().await.expect("a body");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url}: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `{msn}.{index}.m4s` as numbers.
fn place_of(uri: &str) -> (u64, u32) {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    let mut fields = name.trim_end_matches(".m4s").split('.');
    let msn = fields.next().and_then(|n| n.parse().ok());
    let index = fields.next().and_then(|n| n.parse().ok());
    let (Some(msn), Some(index)) = (msn, index) else {
        panic!("not a part URI: {uri}");
    };
    (msn, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_friends_list_every_part_under_the_origins_number() {
    let network = Network::start(2, |segments| segments.iter().any(|s| s.ll.is_some())).await;
    let http = reqwest::Client::new();
    // The friends start pulling when asked; their first listed parts come a GOP or two later.
    for friend in &network.friends {
        fetch_ok(&http, &network.grant_url(friend, "ll.m3u8")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut compared = vec![0usize; network.friends.len()];
    while compared.iter().any(|n| *n < 4) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few parts listed by both the origin and each friend: {compared:?}"
        );
        for (at, friend) in network.friends.iter().enumerate() {
            let text = fetch_ok(&http, &network.grant_url(friend, "ll.m3u8")).await;
            let (_, friend_parts) = listed_parts(&String::from_utf8_lossy(&text));
            let text = fetch_ok(&http, &network.grant_url(&network.origin, "ll.m3u8")).await;
            let (_, origin_parts) = listed_parts(&String::from_utf8_lossy(&text));
            let common: Vec<&String> = friend_parts
                .iter()
                .filter(|uri| origin_parts.contains(uri))
                .collect();
            // Everything the friend lists beyond its first segments is listed by the origin.
            if let Some(newest_common) = common.last() {
                let (newest_msn, _) = place_of(newest_common);
                assert!(
                    friend_parts
                        .iter()
                        .all(|uri| common.contains(&uri) || place_of(uri).0 > newest_msn),
                    "friend {at} lists parts the origin lists under other numbers: \
                     {friend_parts:?} against {origin_parts:?}"
                );
            }
            for uri in &common {
                let theirs = fetch_ok(&http, &network.grant_url(friend, uri)).await;
                let ours = fetch_ok(&http, &network.grant_url(&network.origin, uri)).await;
                assert_eq!(
                    streamr_core::segment_hash(&theirs),
                    streamr_core::segment_hash(&ours),
                    "part {uri} differs between the origin and friend {at}"
                );
            }
            compared[at] = compared[at].max(common.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A player fails over from the origin to each friend with a blocking reload for the part
    // after the last one it played there: the friend holds it and lists it under the same
    // number, with the same bytes.
    for friend in &network.friends {
        let text = fetch_ok(&http, &network.grant_url(&network.origin, "ll.m3u8")).await;
        let (_, origin_parts) = listed_parts(&String::from_utf8_lossy(&text));
        let last = origin_parts.last().expect("the origin lists parts");
        let (msn, index) = place_of(last);
        let played = fetch_ok(&http, &network.grant_url(&network.origin, last)).await;
        let path = format!("ll.m3u8?_HLS_msn={msn}&_HLS_part={}", index + 1);
        let text = fetch_ok(&http, &network.grant_url(friend, &path)).await;
        let (_, friend_parts) = listed_parts(&String::from_utf8_lossy(&text));
        let at = friend_parts
            .iter()
            .position(|uri| uri == last)
            .expect("the friend lists the part played last under its number");
        let next = friend_parts
            .get(at + 1)
            .expect("the blocking reload returned once the next part was listed");
        assert!(
            *next == format!("{msn}.{}.m4s", index + 1) || *next == format!("{}.0.m4s", msn + 1),
            "{next} does not follow {last}"
        );
        let theirs = fetch_ok(&http, &network.grant_url(friend, last)).await;
        assert_eq!(theirs, played, "the part played last is the same part");
        let theirs = fetch_ok(&http, &network.grant_url(friend, next)).await;
        let ours = fetch_ok(&http, &network.grant_url(&network.origin, next)).await;
        assert_eq!(theirs, ours, "the next part is the origin's next part");
    }
    network.shutdown().await;
}
