//! Response write deadlines and request head deadlines over loopback, on both HTTP paths:
//! hyper ([`serve`]) and the direct loop ([`serve_direct`]), its own answers and the requests
//! it hands to hyper. A client that stops reading a large response is closed at the write
//! deadline while one that reads slowly gets all of it, and a request head trickled across the
//! direct loop's 8 KiB limit (so hyper finishes reading it) is closed at one header deadline.
//! Limits with a zero deadline are refused at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Uri;
use axum::routing::get;
use axum::Router;
use streamr_net::http::{
    serve, serve_direct, DirectGet, DirectResponse, HttpLimits, InvalidLimits,
};
use streamr_net::ConnectionBudget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// Larger than what loopback's socket buffers hold (4 MiB of send buffer at most, and the
/// client's receive buffer is made small), so a client that stops reading stalls the writes.
const BIG: usize = 12 << 20;

/// The write deadline the tests configure.
const WRITE_TIMEOUT: Duration = Duration::from_millis(300);

fn big_body() -> Bytes {
    Bytes::from((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Answers `GET /big` itself; everything else goes to hyper.
struct Direct(Bytes);

impl DirectGet for Direct {
    fn get(&self, uri: &Uri, _peer: SocketAddr) -> Option<DirectResponse> {
        let body = self.0.clone();
        (uri.path() == "/big")
            .then(|| Box::pin(async move { axum::response::Response::new(Body::from(body)) }) as _)
    }
}

/// Which server, and which of its paths, a request takes.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// [`serve`]: hyper.
    Hyper,
    /// [`serve_direct`], answered by the direct loop.
    Direct,
    /// [`serve_direct`], handed to hyper.
    DirectToHyper,
}

const PATHS: [Path; 3] = [Path::Hyper, Path::Direct, Path::DirectToHyper];

impl Path {
    fn target(self) -> &'static str {
        match self {
            Path::Hyper | Path::Direct => "/big",
            Path::DirectToHyper => "/via-hyper",
        }
    }
}

/// Starts the server `path` needs; returns its address and budget.
async fn start(path: Path, limits: HttpLimits, body: Bytes) -> (SocketAddr, ConnectionBudget) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let budget = limits.budget();
    let routed = body.clone();
    let routed_too = body.clone();
    let router = Router::new()
        .route("/big", get(move || async move { routed }))
        .route("/via-hyper", get(move || async move { routed_too }))
        .route("/small", get(|| async { "small" }));
    let never = std::future::pending();
    match path {
        Path::Hyper => {
            tokio::spawn(serve(listener, router, budget.clone(), limits, never));
        }
        Path::Direct | Path::DirectToHyper => {
            let direct = Arc::new(Direct(body));
            tokio::spawn(serve_direct(
                listener,
                router,
                direct,
                budget.clone(),
                limits,
                never,
            ));
        }
    }
    (addr, budget)
}

/// A client with a small receive buffer, so that not reading stalls the server soon.
async fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

fn limits() -> HttpLimits {
    let mut limits = HttpLimits::default();
    limits.write_timeout = WRITE_TIMEOUT;
    limits
}

/// Waits until `budget` counts no open connection; how long that took.
async fn until_closed(budget: &ConnectionBudget, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if budget.stats().open == 0 {
            return Some(started.elapsed());
        }
        sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn stalled_client_is_closed(path: Path, body: Bytes) {
    let (addr, budget) = start(path, limits(), body).await;
    let mut client = small_window_client(addr).await;
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path.target());
    client.write_all(request.as_bytes()).await.unwrap();
    // The server accepts and fills the socket buffers at once; then nothing moves.
    sleep(Duration::from_millis(50)).await;
    assert_eq!(
        budget.stats().open,
        1,
        "{path:?}: the request is being answered"
    );
    let closed = until_closed(&budget, Duration::from_secs(5)).await;
    let closed = closed.unwrap_or_else(|| panic!("{path:?}: still open after 5 s"));
    assert!(
        closed < Duration::from_secs(2),
        "{path:?}: closed {closed:?} after the stall, deadline {WRITE_TIMEOUT:?}"
    );
    drop(client);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_write_deadline_on_every_path() {
    let body = big_body();
    let started = Instant::now();
    futures_util::future::join_all(
        PATHS
            .into_iter()
            .map(|path| stalled_client_is_closed(path, body.clone())),
    )
    .await;
    // Each was closed about one deadline after its stall (the three ran at once).
    assert!(started.elapsed() >= WRITE_TIMEOUT);
}

async fn slow_reader_gets_everything(path: Path, body: Bytes) {
    let (addr, budget) = start(path, limits(), body).await;
    let mut client = small_window_client(addr).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        path.target()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Reads in bursts of 1 MiB with a pause of half the deadline after each.
    let mut received = 0usize;
    let mut since_pause = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path:?}: stalled"))
            .unwrap_or_else(|error| panic!("{path:?}: closed after {received} bytes: {error}"));
        if n == 0 {
            break;
        }
        received += n;
        since_pause += n;
        if since_pause >= 1 << 20 {
            since_pause = 0;
            sleep(WRITE_TIMEOUT / 2).await;
        }
    }
    assert!(
        received > BIG,
        "{path:?}: {received} bytes, the body alone is {BIG}"
    );
    assert!(
        started.elapsed() > WRITE_TIMEOUT * 3,
        "{path:?}: the response took longer than the deadline"
    );
    drop(client);
    until_closed(&budget, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{path:?}: left open"));
}

#[tokio::test]
async fn a_slow_client_that_keeps_reading_gets_the_whole_response_on_every_path() {
    let body = big_body();
    futures_util::future::join_all(
        PATHS
            .into_iter()
            .map(|path| slow_reader_gets_everything(path, body.clone())),
    )
    .await;
}

#[tokio::test]
async fn a_head_trickled_across_the_direct_limit_is_closed_at_one_header_deadline() {
    let header_read_timeout = Duration::from_millis(600);
    let mut limits = limits();
    limits.header_read_timeout = header_read_timeout;
    let (addr, _budget) = start(Path::Direct, limits, Bytes::new()).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // 8150 bytes at once, then 10 every 40 ms: the head passes the direct loop's 8 KiB about
    // 200 ms in, and hyper reads the rest.
    let mut head = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(8150, b'a');
    client.write_all(&head).await.unwrap();
    let (mut reader, mut writer) = client.into_split();
    let trickle = tokio::spawn(async move {
        loop {
            sleep(Duration::from_millis(40)).await;
            if writer.write_all(b"aaaaaaaaaa").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("closed within 5 s");
    trickle.abort();
    assert!(
        closed >= header_read_timeout - Duration::from_millis(50),
        "closed after {closed:?}, before the deadline"
    );
    // Not a second deadline from the handoff (about 800 ms).
    assert!(
        closed < header_read_timeout + Duration::from_millis(150),
        "closed after {closed:?}, deadline {header_read_timeout:?}"
    );
}

#[tokio::test]
async fn after_a_handoff_each_later_head_has_a_full_header_deadline() {
    let header_read_timeout = Duration::from_millis(400);
    let mut limits = limits();
    limits.header_read_timeout = header_read_timeout;
    let (addr, _budget) = start(Path::Direct, limits, Bytes::new()).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    // The first head, which hyper answers, completes 250 ms in: within its deadline (400 ms).
    sleep(Duration::from_millis(250)).await;
    client
        .write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = client.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The second head completes 300 ms after the first response: past the first head's
    // deadline, within its own.
    sleep(Duration::from_millis(150)).await;
    client
        .write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    sleep(Duration::from_millis(150)).await;
    client
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = timeout(Duration::from_secs(5), async {
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    })
    .await
    .expect("answered");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn limits_with_a_zero_deadline_are_refused_at_start() {
    for setting in ["header_read_timeout", "body_timeout", "write_timeout"] {
        let mut limits = HttpLimits::default();
        match setting {
            "header_read_timeout" => limits.header_read_timeout = Duration::ZERO,
            "body_timeout" => limits.body_timeout = Duration::from_micros(500),
            _ => limits.write_timeout = Duration::ZERO,
        }
        let refusal = limits.validate().unwrap_err();
        assert_eq!(refusal.setting, setting);
        assert!(refusal.to_string().contains(setting), "{refusal}");
        assert!(refusal.to_string().contains("at least 1ms"), "{refusal}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let served = timeout(
            Duration::from_secs(5),
            serve(
                listener,
                router,
                limits.budget(),
                limits,
                std::future::pending(),
            ),
        )
        .await
        .expect("serve refuses at once");
        let error = served.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains(setting), "{error}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let served = timeout(
            Duration::from_secs(5),
            serve_direct(
                listener,
                router,
                Arc::new(Direct(Bytes::new())),
                limits.budget(),
                limits,
                std::future::pending(),
            ),
        )
        .await
        .expect("serve_direct refuses at once");
        assert_eq!(served.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    }
    assert_eq!(HttpLimits::default().validate(), Ok(()));
    let mut at_floor = HttpLimits::default();
    at_floor.write_timeout = Duration::from_millis(1);
    at_floor.shutdown_grace = Duration::ZERO;
    assert_eq!(at_floor.validate(), Ok::<(), InvalidLimits>(()));
}
