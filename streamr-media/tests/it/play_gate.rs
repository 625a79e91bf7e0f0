//! One play gate on every delivery path: the same hook refuses or admits RTMP, HTTP-FLV, HLS and
//! LL-HLS alike, an admitted token rides on the playlist's URIs, and a request for a stream the
//! edge does not have pulls it from the upstream on demand. In-process servers on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streamr_media::http::{HttpServer, LiveHlsConfig};
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_media::{
    PlayGate, Refusal, RelayHooks, RelayHub, RelayServer, RelayServerConfig, RtmpClient, RtmpUrl,
    StreamRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Plays need `?token=t0ken`; a missing token is a 401, a wrong one a 403.
struct TokenCheck;

#[async_trait::async_trait]
impl RelayHooks for TokenCheck {
    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        match request
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("token="))
        {
            Some("t0ken") => Ok(()),
            Some(_) => Err(Refusal::new(format!(
                "wrong token over {}",
                request.protocol
            ))),
            None => Err(Refusal::new("a token is required").unauthorized()),
        }
    }
}

/// An origin publishing the sample in a loop as `live/demo`.
struct Origin {
    server: RelayServer,
    stop: CancellationToken,
    publisher: JoinHandle<()>,
}

async fn origin() -> Origin {
    let server = RelayServer::start(RelayServerConfig::default().with_bind(loopback()))
        .await
        .expect("the origin starts");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.flv");
    let source = FlvSource::read(&sample).expect("the sample");
    let url = rtmp(&format!("rtmp://{}/live/demo", server.local_addr()));
    let stop = CancellationToken::new();
    let options = PublishOptions::looped(stop.clone());
    let publisher = tokio::spawn(async move {
        let _ = publish_flv(&source, &url, &options).await;
    });
    Origin {
        server,
        stop,
        publisher,
    }
}

impl Origin {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.publisher.await;
        self.server.shutdown().await;
    }
}

/// An edge of `upstream` behind [`TokenCheck`] on RTMP and HTTP, sharing one gate.
async fn edge(upstream: &str, pull_wait: Duration) -> (RelayServer, HttpServer, UpstreamPuller) {
    let hub = RelayHub::default();
    let config = UpstreamConfig::default().with_upstreams([upstream]);
    let puller = UpstreamPuller::new(hub.clone(), config);
    let gate = PlayGate::new(Arc::new(TokenCheck)).with_upstream(puller.clone(), pull_wait);
    let rtmp_config = RelayServerConfig::default().with_bind(loopback());
    let rtmp = RelayServer::start_on_hub(rtmp_config, Arc::new(gate.clone()), hub.clone())
        .await
        .expect("the edge's RTMP starts");
    let http = HttpServer::start_with_gate(loopback(), hub, LiveHlsConfig::default(), gate)
        .await
        .expect("the edge's HTTP starts");
    (rtmp, http, puller)
}

/// An edge of `origin`, a player waiting up to 5 s for its pull.
async fn edge_of(origin: &Origin) -> (RelayServer, HttpServer, UpstreamPuller) {
    let upstream = format!("rtmp://{}", origin.server.local_addr());
    edge(&upstream, Duration::from_secs(5)).await
}

/// Stops an edge's servers, then its origin.
async fn shut_down(http: HttpServer, rtmp_edge: RelayServer, origin: Origin) {
    http.shutdown().await;
    rtmp_edge.shutdown().await;
    origin.stop().await;
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn rtmp(text: &str) -> RtmpUrl {
    RtmpUrl::parse(text).expect("a valid RTMP URL")
}

/// An HTTP/1.0 response: status, head, and up to `limit` body bytes (within 10 s).
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn get(addr: SocketAddr, path: &str, limit: usize) -> Answer {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: edge\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head_end = response.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|at| response.len() >= (at + 4).saturating_add(limit)) {
            break;
        }
        match timeout(deadline - Instant::now(), socket.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(read)) => response.extend_from_slice(&buffer[..read]),
        }
    }
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..at]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let mut body = response.split_off(at + 4);
    body.truncate(limit);
    Answer { status, head, body }
}

/// Polls `path` until its body contains `wanted` (within 20 s).
async fn poll_for(addr: SocketAddr, path: &str, wanted: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(addr, path, usize::MAX).await;
        if answer.status == 200 && answer.text().contains(wanted) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path}: {}", answer.text());
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refused_on_every_path_and_pulls_nothing() {
    let origin = origin().await;
    let (rtmp_edge, http, puller) = edge_of(&origin).await;
    let addr = http.local_addr();
    // An escaped file name is the same request (the router decodes it): it meets the same hook.
    for file in [
        "demo.m3u8",
        "demo/ll.m3u8",
        "demo/index.m3u8",
        "demo/3.ts",
        "demo.flv",
        "demo/3%2Ets",
        "demo/ll%2em3u8",
    ] {
        let wrong = get(addr, &format!("/live/{file}?token=guess"), usize::MAX).await;
        assert_eq!(wrong.status, 403, "{file}: {}", wrong.head);
        let body: serde_json::Value = serde_json::from_slice(&wrong.body).expect("a JSON body");
        assert_eq!(body["error"], "play_refused", "{file}");
        assert_eq!(body["stream"], "live/demo", "{file}");
        let protocol = if file.ends_with(".flv") {
            "http-flv"
        } else {
            "hls"
        };
        assert_eq!(body["message"], format!("wrong token over {protocol}"));
        let missing = get(addr, &format!("/live/{file}"), usize::MAX).await;
        assert_eq!(missing.status, 401, "{file}: {}", missing.head);
        assert!(missing.text().contains("a token is required"), "{file}");
    }
    let at = |query: &str| {
        rtmp(&format!(
            "rtmp://{}/live/demo{query}",
            rtmp_edge.local_addr()
        ))
    };
    assert!(RtmpClient::play(&at("?token=guess")).await.is_err());
    assert!(RtmpClient::play(&at("")).await.is_err());
    assert_eq!(puller.totals().pulls, 0, "a refused request starts no pull");
    // Names are checked before the hook: a path that is no stream name is a 400.
    // An escaped stream name or suffix is refused as a name, never let past the hook.
    for path in [
        "/live/..%2Fx.m3u8",
        "/live/demo%2Eflv",
        "/live/dem%6F.flv",
        "/live/demo%2Em3u8",
    ] {
        let escaped = get(addr, &format!("{path}?token=guess"), usize::MAX).await;
        assert_eq!(escaped.status, 400, "{path}: {}", escaped.head);
        let body: serde_json::Value = serde_json::from_slice(&escaped.body).expect("a JSON body");
        assert_eq!(body["error"], "invalid_name", "{path}");
    }
    shut_down(http, rtmp_edge, origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playlist_get_pulls_the_stream_and_its_uris_carry_the_token() {
    let origin = origin().await;
    let (rtmp_edge, http, puller) = edge_of(&origin).await;
    let addr = http.local_addr();
    // LL-HLS: the init section, parts and preload hint carry the token; delivery directives
    // of the request are not carried.
    let ll = poll_for(addr, "/live/demo/ll.m3u8?token=t0ken", "#EXT-X-PART:").await;
    assert_eq!(puller.totals().pulls, 1, "the GET started the pull");
    let ll = ll.text();
    for line in ll.lines().filter(|l| l.contains("URI=\"")) {
        assert!(
            line.contains("/live/demo/") && line.contains("?token=t0ken\""),
            "{line}"
        );
    }
    assert!(ll.contains("#EXT-X-MAP:URI=\"/live/demo/init-"), "{ll}");

    let playlist = poll_for(addr, "/live/demo.m3u8?token=t0ken", "#EXTINF").await;
    let uris: Vec<String> = playlist
        .text()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!uris.is_empty());
    for uri in &uris {
        assert!(
            uri.starts_with("/live/demo/") && uri.ends_with(".ts?token=t0ken"),
            "{uri}"
        );
    }
    let segment = get(addr, &uris[0], 188).await;
    assert_eq!(segment.status, 200, "{}", segment.head);
    assert_eq!(segment.body.first(), Some(&0x47), "an MPEG-TS packet");
    // The same URI without the token the playlist carried is refused.
    let bare = uris[0].split('?').next().expect("a path");
    assert_eq!(get(addr, bare, 0).await.status, 401);

    // An RTMP player with the token joins the same pull.
    let url = rtmp(&format!(
        "rtmp://{}/live/demo?token=t0ken",
        rtmp_edge.local_addr()
    ));
    RtmpClient::play(&url)
        .await
        .expect("the edge admits the token");
    assert_eq!(puller.totals().pulls, 1, "one pull serves every protocol");
    shut_down(http, rtmp_edge, origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_flv_get_for_a_missing_stream_waits_for_its_pull() {
    let origin = origin().await;
    let (rtmp_edge, http, puller) = edge_of(&origin).await;
    let flv = get(http.local_addr(), "/live/demo.flv?token=t0ken", 13).await;
    assert_eq!(flv.status, 200, "{}", flv.head);
    assert_eq!(&flv.body[..3], b"FLV", "the stream's FLV header");
    assert_eq!(puller.totals().pulls, 1);
    shut_down(http, rtmp_edge, origin).await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_saying_why() {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind(loopback()).expect("bind");
    let upstream = format!("rtmp://{}", closed.local_addr().expect("address"));
    drop(closed);
    let (rtmp_edge, http, _puller) = edge(&upstream, Duration::from_millis(500)).await;
    let answer = get(http.local_addr(), "/live/demo.m3u8?token=t0ken", usize::MAX).await;
    assert_eq!(answer.status, 503, "{}", answer.head);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("a JSON body");
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    http.shutdown().await;
    rtmp_edge.shutdown().await;
}
