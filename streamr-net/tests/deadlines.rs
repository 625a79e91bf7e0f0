//! Response write deadlines and request head deadlines over loopback, on both HTTP paths:
//! hyper ([`serve`]) and the direct loop ([`serve_direct`]), its own answers and the requests
//! it hands to hyper. A client that stops reading a large response is closed at the write
//! deadline while one that reads slowly gets all of it, and a request head trickled across the
//! direct loop's 8 KiB limit (so hyper finishes reading it) is closed at one header deadline.
//! Over TLS ([`serve_tls`]) a client that stops reading is closed at the write deadline too,
//! while another keeps being served. Limits with a zero deadline are refused at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Uri;
use axum::routing::get;
use axum::Router;
use streamr_net::http::{
    serve, serve_direct, serve_tls, DirectGet, DirectResponse, HttpLimits, InvalidLimits,
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

/// Waits until `budget` counts at most `open` open connections; how long that took.
async fn until_open(budget: &ConnectionBudget, open: usize, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if budget.stats().open <= open {
            return Some(started.elapsed());
        }
        sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Waits until `budget` counts no open connection; how long that took.
async fn until_closed(budget: &ConnectionBudget, limit: Duration) -> Option<Duration> {
    until_open(budget, 0, limit).await
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

/// The write deadline of the slow-reader test: ten of its reader's pauses, so a machine busy
/// enough to stretch a pause several times over still keeps the reader inside it.
const SLOW_READER_WRITE_TIMEOUT: Duration = Duration::from_millis(1500);

async fn slow_reader_gets_everything(path: Path, body: Bytes) {
    let mut limits = limits();
    limits.write_timeout = SLOW_READER_WRITE_TIMEOUT;
    let (addr, budget) = start(path, limits, body).await;
    let mut client = small_window_client(addr).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        path.target()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Reads in bursts of 1 MiB with a pause of a tenth of the deadline after each: twelve
    // pauses, so the whole response takes longer than one deadline.
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
            sleep(SLOW_READER_WRITE_TIMEOUT / 10).await;
        }
    }
    assert!(
        received > BIG,
        "{path:?}: {received} bytes, the body alone is {BIG}"
    );
    assert!(
        started.elapsed() > SLOW_READER_WRITE_TIMEOUT,
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

/// [`big_body`] streamed in 64 KiB chunks (so the server takes the next one only once it has
/// room for it), telling `dropped` when it is dropped: when its connection ends, or once all
/// of it was taken.
fn chunked_big_body(dropped: tokio::sync::oneshot::Sender<Instant>) -> Body {
    use futures_util::StreamExt;
    struct OnDrop(Option<tokio::sync::oneshot::Sender<Instant>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(dropped) = self.0.take() {
                let _ = dropped.send(Instant::now());
            }
        }
    }
    let on_drop = OnDrop(Some(dropped));
    let body = big_body();
    let chunks = (0..BIG)
        .step_by(64 * 1024)
        .map(move |start| body.slice(start..(start + 64 * 1024).min(BIG)));
    Body::from_stream(futures_util::stream::iter(chunks).map(move |chunk| {
        let _ = &on_drop;
        Ok::<_, std::convert::Infallible>(chunk)
    }))
}

/// A TLS server ([`serve_tls`]) with a certificate from a throwaway CA, serving [`big_body`]
/// at `/big` and [`chunked_big_body`] at `/watched` (once: `watched` hears when its body is
/// dropped), and a client config trusting only that CA.
struct TlsServer {
    addr: SocketAddr,
    budget: ConnectionBudget,
    client: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

async fn start_tls(
    limits: HttpLimits,
    watched: tokio::sync::oneshot::Sender<Instant>,
) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = streamr_tls::testing::TestPki::new(dir.path()).unwrap();
    pki.issue().unwrap();
    let tls = streamr_tls::ServerTls::load(pki.files()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = big_body();
    let watched = Arc::new(std::sync::Mutex::new(Some(watched)));
    let router = Router::new()
        .route("/big", get(move || async move { body }))
        .route(
            "/watched",
            get(move || {
                let dropped = watched.lock().unwrap().take().expect("one request");
                async move { chunked_big_body(dropped) }
            }),
        );
    let budget = limits.budget();
    tokio::spawn(serve_tls(
        listener,
        router,
        budget.clone(),
        limits,
        tls.acceptor(streamr_tls::HTTP_ALPN),
        Duration::from_secs(5),
        std::future::pending(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pki.ca_der()))
        .unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsServer {
        addr,
        budget,
        client: tokio_rustls::TlsConnector::from(Arc::new(config)),
        _dir: dir,
    }
}

impl TlsServer {
    /// A TLS client (with a small receive window) that completed its handshake and asked for
    /// `path`.
    async fn get(&self, path: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = small_window_client(self.addr).await;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = self.client.connect(name, tcp).await.expect("TLS handshake");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        tls
    }
}

#[tokio::test]
async fn over_tls_a_client_that_stops_reading_is_closed_at_the_write_deadline() {
    let write_timeout = Duration::from_millis(600);
    let mut limits = HttpLimits::default();
    limits.write_timeout = write_timeout;
    let (watched, dropped) = tokio::sync::oneshot::channel();
    let server = start_tls(limits, watched).await;
    let asked = Instant::now();
    // Never reads: the server fills the socket buffers, then its writes stall until the
    // deadline ends the connection, dropping the rest of the response.
    let stalled = server.get("/watched").await;
    // Reads all of its response, pausing half the deadline after each MiB: longer than the
    // deadline in all, never that long without taking a byte.
    let mut reader = server.get("/big").await;
    assert_eq!(server.budget.stats().open, 2);
    let read_all = async {
        let mut received = 0usize;
        let mut since_pause = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = timeout(Duration::from_secs(5), reader.read(&mut buf))
                .await
                .expect("the reading client stalled")
                .unwrap_or_else(|error| panic!("closed after {received} bytes: {error}"));
            if n == 0 {
                return (received, asked.elapsed());
            }
            received += n;
            since_pause += n;
            if since_pause >= 1 << 20 {
                since_pause = 0;
                sleep(write_timeout / 2).await;
            }
        }
    };
    let stalled_closed = async {
        let dropped = timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the stalled response was dropped within 10 s")
            .unwrap();
        // With its connection: the reader's alone is left open.
        until_open(&server.budget, 1, Duration::from_secs(1))
            .await
            .expect("the stalled connection closed with its response");
        dropped - asked
    };
    let ((received, read_in), closed) = tokio::join!(read_all, stalled_closed);
    assert!(received > BIG, "{received} bytes, the body alone is {BIG}");
    assert!(
        closed >= write_timeout,
        "closed {closed:?} after the request, before the deadline {write_timeout:?}"
    );
    assert!(
        closed < Duration::from_secs(3),
        "closed {closed:?} after the request, deadline {write_timeout:?}"
    );
    assert!(
        read_in > closed,
        "the reading client ({read_in:?}) was served past the stalled one's close ({closed:?})"
    );
    drop(stalled);
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
