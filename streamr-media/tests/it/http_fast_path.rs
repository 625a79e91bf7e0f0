//! The HLS fast path ([`MediaFastPath`]) answers every request with the same bytes as the
//! gated router behind it: the same request is sent to a server with the fast path and to one
//! with only [`gated_router`], both on one hub and one live HLS state, and the responses
//! (status line, headers in order, body; only `date` differs) are compared. Covered: playlists
//! (MPEG-TS, the `index.m3u8` alias, LL-HLS, multivariant), segments, parts, init sections,
//! token carry-over, refusals, per-grant byte counting, and a table of odd paths and queries
//! (traversal, encoded slashes and dots, empty segments, query junk) that must reach the same
//! 4xx. The same comparisons run against the direct loop ([`serve_direct`]), which answers
//! the fast path's GETs without hyper, plus what only a loop of its own can get wrong:
//! keep-alive sequences mixing its answers and hyper's, pipelined requests, a head split
//! across reads, HTTP/1.0, an oversize head, a head that never completes, and a client that
//! closes mid-body. In-process servers on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{gated_router, HttpState, LiveHls, LiveHlsConfig, MediaFastPath};
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::{
    PlayAdmission, PlayGate, Refusal, RelayHooks, RelayHub, RelayServer, RelayServerConfig,
    RtmpUrl, StreamRequest,
};
use streamr_net::http::{serve_direct, DirectGet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// `token=t0ken` plays, `token=count` plays counting its response bytes into `counted`, no
/// token is a 401 and another a 403.
struct Hooks {
    counted: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl RelayHooks for Hooks {
    async fn admit_play(&self, request: &StreamRequest) -> Result<PlayAdmission, Refusal> {
        match request
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("token="))
        {
            Some("t0ken") => Ok(PlayAdmission::default()),
            Some("count") => Ok(PlayAdmission::counting_into(self.counted.clone())),
            Some(_) => Err(Refusal::new("wrong token")),
            None => Err(Refusal::new("a token is required").unauthorized()),
        }
    }
}

/// Both servers over one live stream `live/demo`.
struct Pair {
    fast: SocketAddr,
    /// The fast path in front of a router answering everything with a 418.
    fast_only: SocketAddr,
    /// The fast path's dispatch in the direct loop, in front of the gated router.
    direct: SocketAddr,
    /// The direct loop in front of a router answering everything with a 418.
    direct_only: SocketAddr,
    general: SocketAddr,
    counted: Arc<AtomicU64>,
    stop: CancellationToken,
    rtmp: RelayServer,
}

async fn serve(app: impl streamr_net::http::HttpService, stop: &CancellationToken) -> SocketAddr {
    serve_within(app, None, streamr_net::HttpLimits::default(), stop).await
}

/// Serves `app` within `limits`, through the direct loop with `direct` if given.
async fn serve_within(
    app: impl streamr_net::http::HttpService,
    direct: Option<Arc<dyn DirectGet>>,
    limits: streamr_net::HttpLimits,
    stop: &CancellationToken,
) -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let stop = stop.clone();
    let stopped = async move { stop.cancelled().await };
    match direct {
        Some(direct) => tokio::spawn(serve_direct(
            listener,
            app,
            direct,
            limits.budget(),
            limits,
            stopped,
        )),
        None => tokio::spawn(streamr_net::http::serve(
            listener,
            app,
            limits.budget(),
            limits,
            stopped,
        )),
    };
    addr
}

async fn pair() -> Pair {
    pair_within(streamr_net::HttpLimits::default()).await
}

async fn pair_within(limits: streamr_net::HttpLimits) -> Pair {
    let hub = RelayHub::default();
    let counted = Arc::new(AtomicU64::new(0));
    let gate = PlayGate::new(Arc::new(Hooks {
        counted: counted.clone(),
    }));
    let rtmp = RelayServer::start_on_hub(
        RelayServerConfig::default().with_bind(loopback()),
        Arc::new(PlayGate::default()),
        hub.clone(),
    )
    .await
    .expect("RTMP starts");
    let stop = CancellationToken::new();
    let hls = LiveHls::start(hub.clone(), LiveHlsConfig::default(), stop.clone());
    let state = HttpState::new(hub, hls);
    let general = serve_within(
        gated_router(state.clone(), gate.clone()),
        None,
        limits,
        &stop,
    )
    .await;
    let app = MediaFastPath::new(
        gated_router(state.clone(), gate.clone()),
        state.clone(),
        gate.clone(),
    );
    let direct = serve_within(app.clone(), Some(app.direct()), limits, &stop).await;
    let fast = serve(
        MediaFastPath::new(
            gated_router(state.clone(), gate.clone()),
            state.clone(),
            gate.clone(),
        ),
        &stop,
    )
    .await;
    let teapot = axum::Router::new().fallback(|| async { axum::http::StatusCode::IM_A_TEAPOT });
    let fast_only = MediaFastPath::new(teapot, state, gate);
    let direct_only =
        serve_within(fast_only.clone(), Some(fast_only.direct()), limits, &stop).await;
    let fast_only = serve(fast_only, &stop).await;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv");
    let source = FlvSource::read(&sample).expect("the sample");
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/demo", rtmp.local_addr())).expect("URL");
    let options = PublishOptions::looped(stop.clone());
    tokio::spawn(async move {
        let _ = publish_flv(&source, &url, &options).await;
    });
    Pair {
        fast,
        fast_only,
        direct,
        direct_only,
        general,
        counted,
        stop,
        rtmp,
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The raw response to `method path` with `extra` header lines (HTTP/1.1, connection close),
/// its `date` header line removed.
async fn raw(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: node\r\n{extra}Connection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
        .await
        .expect("a response within 10 s")
        .expect("read");
    without_date(&response)
}

/// `response` (one response or several in a row) without its `date` header lines.
fn without_date(response: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.len());
    let mut rest = response;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = &rest[..at + 2];
        if !line.to_ascii_lowercase().starts_with(b"date: ") {
            out.extend_from_slice(line);
        }
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// The first segment URI of a playlist response.
fn first_segment_uri(playlist: &[u8]) -> String {
    body(playlist)
        .lines()
        .find(|line| !line.starts_with('#') && !line.is_empty())
        .expect("a segment URI")
        .to_owned()
}

fn status(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn body(response: &[u8]) -> String {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |at| at + 4);
    String::from_utf8_lossy(&response[at..]).into_owned()
}

impl Pair {
    /// The request to the router, the fast path and the direct loop; a live playlist may change
    /// between them, so a differing set is asked again (a few times) before it counts as
    /// different.
    async fn same(&self, method: &str, path: &str, extra: &str) -> Vec<u8> {
        let mut last = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let general = raw(self.general, method, path, extra).await;
            let fast = raw(self.fast, method, path, extra).await;
            let direct = raw(self.direct, method, path, extra).await;
            if general == fast && general == direct {
                return fast;
            }
            last = (general, fast, direct);
        }
        panic!(
            "{method} {path}: the fast path answered\n{}\nthe direct loop\n{}\nthe router\n{}",
            String::from_utf8_lossy(&last.1),
            String::from_utf8_lossy(&last.2),
            String::from_utf8_lossy(&last.0)
        );
    }

    /// `requests` on one connection each to the router and to the direct loop, one after
    /// another (each sent once the previous response is in) or all at once (`pipelined`);
    /// the responses both ways, compared (asked again a few times if a playlist changed).
    async fn same_sequence(&self, requests: &[String], pipelined: bool) -> Vec<u8> {
        let mut last = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let general = exchange(self.general, requests, pipelined).await;
            let direct = exchange(self.direct, requests, pipelined).await;
            if general == direct {
                return direct;
            }
            last = (general, direct);
        }
        panic!(
            "{requests:?}: the direct loop answered\n{}\nthe router\n{}",
            String::from_utf8_lossy(&last.1),
            String::from_utf8_lossy(&last.0)
        );
    }

    /// GETs `path` until it is a 200 whose body contains `wanted` (within 20 s).
    async fn poll_for(&self, path: &str, wanted: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = raw(self.fast, "GET", path, "").await;
            if status(&response) == 200 && body(&response).contains(wanted) {
                return response;
            }
            assert!(Instant::now() < deadline, "{path}: {}", body(&response));
            sleep(Duration::from_millis(200)).await;
        }
    }

    async fn shut_down(self) {
        self.stop.cancel();
        self.rtmp.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_answers_every_hls_request_with_the_routers_bytes() {
    let pair = pair().await;
    let ll = pair
        .poll_for("/live/demo/ll.m3u8?token=t0ken", "#EXT-X-PART:")
        .await;
    let playlist = pair
        .poll_for("/live/demo.m3u8?token=t0ken", "#EXTINF")
        .await;
    let segment = first_segment_uri(&playlist);
    let ll_body = body(&ll);
    let uri_of = |tag: &str| {
        ll_body
            .lines()
            .find(|line| line.starts_with(tag))
            .and_then(|line| line.split("URI=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{tag} in {ll_body}"))
    };
    let init = uri_of("#EXT-X-MAP:");
    let part = uri_of("#EXT-X-PART:");
    assert!(segment.contains("?token=t0ken"), "{segment}");

    for origin in ["", "Origin: http://player.example\r\n"] {
        for path in [
            "/live/demo.m3u8?token=t0ken",
            "/live/demo/index.m3u8?token=t0ken",
            "/live/demo/ll.m3u8?token=t0ken",
            "/live/demo/master.m3u8?token=t0ken",
            "/live/demo.m3u8?token=t0ken&grant=g&_HLS_msn=1",
            segment.as_str(),
            init.as_str(),
            part.as_str(),
        ] {
            let response = pair.same("GET", path, origin).await;
            assert_eq!(status(&response), 200, "{path}");
            // The fast path served it, not the router behind it.
            let fast_only = raw(pair.fast_only, "GET", path, origin).await;
            assert_eq!(status(&fast_only), 200, "{path}");
            let direct_only = raw(pair.direct_only, "GET", path, origin).await;
            assert_eq!(direct_only, fast_only, "{path}");
            // Requests the fast path leaves to the router, for completeness.
            pair.same("HEAD", path, origin).await;
            pair.same("OPTIONS", path, origin).await;
        }
    }
    // A blocking LL-HLS request for the next part: both wait for the same part.
    let next_msn: u64 = ll_body
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|msn| msn.trim().parse().ok())
        .expect("a media sequence");
    let blocking = format!("/live/demo/ll.m3u8?token=t0ken&_HLS_msn={next_msn}&_HLS_part=0");
    assert_eq!(status(&pair.same("GET", &blocking, "").await), 200);

    // Per-grant counting: both count the same bytes for the same segment.
    let counted_segment = segment.replace("token=t0ken", "token=count");
    let before = pair.counted.load(Ordering::Relaxed);
    let response = raw(pair.general, "GET", &counted_segment, "").await;
    let by_router = pair.counted.load(Ordering::Relaxed) - before;
    let fast_response = raw(pair.fast, "GET", &counted_segment, "").await;
    let by_fast = pair.counted.load(Ordering::Relaxed) - before - by_router;
    let direct_response = raw(pair.direct, "GET", &counted_segment, "").await;
    let by_direct = pair.counted.load(Ordering::Relaxed) - before - by_router - by_fast;
    assert_eq!(response, fast_response);
    assert_eq!(response, direct_response);
    assert!(by_router > 0);
    assert_eq!(by_router, by_fast);
    assert_eq!(by_router, by_direct);
    pair.same("GET", "/live/demo.m3u8?token=count", "").await;
    pair.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_reach_the_same_answer_both_ways() {
    let pair = pair().await;
    pair.poll_for("/live/demo.m3u8?token=t0ken", "#EXTINF")
        .await;
    let pieces = [
        "live",
        "demo",
        "..",
        ".",
        "",
        "%2E%2E",
        "a%2Fb",
        "demo%2Em3u8",
        "demo.m3u8",
        "demo.flv",
        "index.m3u8",
        "ll.m3u8",
        "master.m3u8",
        "1.ts",
        "x.ts",
        "-1.ts",
        "1%2Ets",
        "99.9.m4s",
        "init-zz.mp4",
        "part-reports",
        "demo.m3u8.ts",
        "%zz",
    ];
    let queries = [
        "",
        "?",
        "?token=t0ken",
        "?token=bad",
        "?token=t0ken&token=bad",
        "?&&==&token=t0ken",
        "?token=t0ken&_HLS_msn=x",
        "?token=t0ken&_HLS_part=1",
        "?token=t0ken&junk=%zz#frag",
    ];
    let mut paths = vec![];
    for a in pieces {
        paths.push(format!("/{a}"));
        for b in pieces {
            paths.push(format!("/{a}/{b}"));
            if a == "live" || a.is_empty() {
                for c in pieces {
                    paths.push(format!("/{a}/{b}/{c}"));
                }
            }
        }
    }
    paths.extend(["//live/demo.m3u8".into(), "/live/demo.m3u8/".into()]);
    let mut seen = [0usize; 6];
    for (n, path) in paths.iter().enumerate() {
        // Every path with one of the queries, in turn.
        let query = queries[n % queries.len()];
        let response = pair.same("GET", &format!("{path}{query}"), "").await;
        seen[usize::from(status(&response) / 100)] += 1;
    }
    // The table reaches successes and client errors alike.
    assert!(seen[2] > 0 && seen[4] > 100, "{seen:?}");
    pair.shut_down().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response from `socket` (bytes past it stay in `buf`); `head_only` for the answer
/// to a `HEAD`. What was read if the connection ends first.
async fn read_response(socket: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Vec<u8> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|length| length.trim().parse::<usize>().ok());
            let total = match (head_only, length) {
                (true, _) => Some(end + 4),
                (false, Some(length)) => Some(end + 4 + length),
                (false, None) if head.contains("transfer-encoding: chunked") => {
                    find(&buf[end..], b"\r\n0\r\n\r\n").map(|at| end + at + 7)
                }
                (false, None) => None,
            };
            if let Some(total) = total.filter(|&total| total <= buf.len()) {
                return buf.drain(..total).collect();
            }
        }
        let mut chunk = [0u8; 16384];
        match timeout(Duration::from_secs(10), socket.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return std::mem::take(buf),
            Err(_) => panic!(
                "no complete response within 10 s: {}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

/// `requests` on one connection to `addr`, each sent once the previous answer is in or all
/// at once (`pipelined`); everything read until the server closed, `date` lines removed.
async fn exchange(addr: SocketAddr, requests: &[String], pipelined: bool) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    let mut buf = Vec::new();
    if pipelined {
        // The server may close before reading everything (an oversize head).
        let _ = socket.write_all(requests.concat().as_bytes()).await;
    } else {
        for request in requests {
            if socket.write_all(request.as_bytes()).await.is_err() {
                break;
            }
            let response = read_response(&mut socket, &mut buf, request.starts_with("HEAD ")).await;
            out.extend_from_slice(&response);
        }
    }
    let mut rest = Vec::new();
    let _ = timeout(Duration::from_secs(10), socket.read_to_end(&mut rest))
        .await
        .expect("the server closes within 10 s");
    out.extend_from_slice(&buf);
    out.extend_from_slice(&rest);
    without_date(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_loop_keeps_connections_and_hands_the_rest_to_hyper() {
    let mut limits = streamr_net::HttpLimits::default();
    limits.header_read_timeout = Duration::from_millis(500);
    // Several accept loops on one listener: each connection is served whole by the one that
    // accepted it, hand-overs to hyper included.
    limits.accept_loops = 3;
    let pair = pair_within(limits).await;
    let playlist = pair
        .poll_for("/live/demo.m3u8?token=t0ken", "#EXTINF")
        .await;
    let segment = first_segment_uri(&playlist);
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: node\r\n{extra}\r\n");
    let master = "/live/demo/master.m3u8?token=t0ken";
    let close = "Connection: close\r\n";
    let sequences = [
        // Media GETs only, then the same after a request for hyper, which keeps the rest.
        vec![get(&segment, ""), get(master, ""), get(&segment, close)],
        vec![
            get(&segment, ""),
            format!("HEAD {master} HTTP/1.1\r\nHost: node\r\n\r\n"),
            get(&segment, ""),
            get("/live/demo/x.ts?token=t0ken", close),
        ],
        vec![get("/nope", ""), get(&segment, close)],
        // A refusal, keep-alive asked for explicitly, a close among other tokens.
        vec![
            get("/live/demo/1.ts", ""),
            get(&segment, "Connection: keep-alive\r\n"),
            get(master, "Connection: keep-alive, close\r\n"),
        ],
        // HTTP/1.0: closed after one response unless kept alive; a body hyper must skip.
        vec![format!("GET {segment} HTTP/1.0\r\n\r\n")],
        vec![
            format!("GET {segment} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            get(master, close),
        ],
        vec![
            format!("GET {master} HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            get(&segment, close),
        ],
        // A head longer than the direct loop reads (hyper serves it), and one hyper refuses.
        vec![
            get(&segment, &format!("X-Big: {}\r\n", "a".repeat(20_000))),
            get(master, close),
        ],
        vec![get(
            &segment,
            &format!("X-Big: {}\r\n{close}", "a".repeat(1_000_000)),
        )],
        // Idle after a kept-alive response: closed at the head deadline.
        vec![get(&segment, "")],
        // A head that never completes: closed at the deadline.
        vec!["GET /live/demo.m3u8 HTTP/1.1\r\nHost: no".to_owned()],
    ];
    for requests in &sequences {
        let response = pair.same_sequence(requests, false).await;
        assert!(
            status(&response) != 0 || requests.len() == 1,
            "{requests:?}"
        );
        pair.same_sequence(requests, true).await;
    }

    // A head split across reads.
    let request = get(&segment, close);
    let split = |addr: SocketAddr| {
        let request = request.clone();
        async move {
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            for piece in [&request[..7], &request[7..30], &request[30..]] {
                socket.write_all(piece.as_bytes()).await.expect("send");
                sleep(Duration::from_millis(30)).await;
            }
            let mut response = Vec::new();
            socket.read_to_end(&mut response).await.expect("read");
            without_date(&response)
        }
    };
    let (general, direct) = (split(pair.general).await, split(pair.direct).await);
    assert_eq!(status(&direct), 200);
    assert_eq!(general, direct);

    // A client closing mid-body costs the server nothing but that connection.
    for _ in 0..3 {
        let mut socket = TcpStream::connect(pair.direct).await.expect("connect");
        socket
            .write_all(get(&segment, "").as_bytes())
            .await
            .expect("send");
        let mut first = [0u8; 100];
        socket
            .read_exact(&mut first)
            .await
            .expect("a response starts");
        drop(socket);
    }
    let after = raw(pair.direct, "GET", &segment, "").await;
    assert_eq!(status(&after), 200);
    pair.shut_down().await;
}
