//! `streamr_net::http::serve_direct` with several accept loops, each on a thread of its own:
//! every connection is served (directly, or by hyper on the caller's runtime), and shutdown
//! ends every loop, closing idle keep-alive connections and the listener (and, past the grace,
//! connections still mid-request).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use streamr_net::http::{serve_direct, DirectGet, DirectResponse, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Answers `GET /direct` with `direct`; the router behind it answers `/routed`.
struct Direct;

impl DirectGet for Direct {
    fn get(&self, uri: &Uri, _peer: SocketAddr) -> Option<DirectResponse> {
        (uri.path() == "/direct")
            .then(|| -> DirectResponse { Box::pin(async { "direct".into_response() }) })
    }
}

/// Sends `head` on `socket` and reads one response (`Content-Length` framed) from it.
async fn exchange(socket: &mut TcpStream, head: &str) -> String {
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
            .await
            .expect("answered in time")
            .unwrap();
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if read == 0 || text.ends_with("direct") || text.ends_with("routed") {
            return text;
        }
    }
}

async fn request(addr: SocketAddr, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    exchange(
        &mut socket,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// A `serve_direct` running on a loopback port.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `direct` in front of `router` with `limits` on a free loopback port.
    async fn start(router: Router, direct: Arc<dyn DirectGet>, limits: HttpLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_direct(
            listener,
            router,
            direct,
            limits.budget(),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Server { addr, stop, task }
    }

    /// Stops it and waits for `serve_direct` to return (`why` says when it should have).
    async fn stop(self, why: &str) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect(why)
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_loops_serve_every_connection_and_shutdown_ends_them_all() {
    let mut limits = HttpLimits::default();
    limits.accept_loops = 3;
    limits.shutdown_grace = Duration::from_secs(2);
    let router = Router::new().route("/routed", get(|| async { "routed" }));
    let server = Server::start(router, Arc::new(Direct), limits).await;
    let addr = server.addr;

    let answers = futures_util::future::join_all(
        (0..48).map(|i| request(addr, if i % 3 == 0 { "/routed" } else { "/direct" })),
    )
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert!(answer.starts_with("HTTP/1.1 200"), "{i}: {answer}");
        let body = if i % 3 == 0 { "routed" } else { "direct" };
        assert!(answer.ends_with(body), "{i}: {answer}");
    }
    // Kept-alive connections, one left idle after a direct answer, one with hyper.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut idle, "GET /direct HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.ends_with("direct"), "{answer}");
    let mut with_hyper = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut with_hyper, "GET /routed HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.ends_with("routed"), "{answer}");

    server.stop("stopped within the grace").await;
    for mut socket in [idle, with_hyper] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest))
            .await
            .expect("closed at shutdown");
        assert!(read.is_err() || rest.is_empty(), "{rest:?}");
    }
    // No loop accepts any more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..8 {
        assert!(TcpStream::connect(addr).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_shutdown_grace_the_loops_drop_their_connections() {
    let mut limits = HttpLimits::default();
    limits.accept_loops = 2;
    limits.header_read_timeout = Duration::from_secs(60);
    limits.shutdown_grace = Duration::from_millis(300);
    let server = Server::start(Router::new(), Arc::new(Direct), limits).await;
    let addr = server.addr;
    // Half a request head: its loop waits for the rest, through the shutdown.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /direct HTTP/1.1\r\n").await.unwrap();
    let answer = exchange(
        &mut TcpStream::connect(addr).await.unwrap(),
        "GET /direct HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("direct"), "{answer}");
    server.stop("stopped after the grace").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("dropped after the grace");
    assert!(read.is_err() || rest.is_empty(), "{rest:?}");
}

/// Answers `GET /spawns` with the runtime its spawned task ran on, after the loop's server stops:
/// the task must outlive the accept loop (a stream's segmenter or upstream pull a request started
/// goes on after the request, on the node's runtime, not on the loop's thread).
struct Spawns {
    ran_on: tokio::sync::mpsc::UnboundedSender<tokio::runtime::Id>,
}

impl DirectGet for Spawns {
    fn get(&self, uri: &Uri, _peer: SocketAddr) -> Option<DirectResponse> {
        let ran_on = self.ran_on.clone();
        (uri.path() == "/spawns").then(|| -> DirectResponse {
            Box::pin(async move {
                let answered_on = tokio::runtime::Handle::current().id();
                tokio::spawn(async move {
                    // Still running once the server (and its loop threads) stopped.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = ran_on.send(tokio::runtime::Handle::current().id());
                });
                format!("answered on {answered_on}").into_response()
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_direct_answer_spawns_runs_on_the_callers_runtime_and_outlives_the_loop() {
    let mut limits = HttpLimits::default();
    limits.shutdown_grace = Duration::from_millis(200);
    let (ran_on, mut runs) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::start(Router::new(), Arc::new(Spawns { ran_on }), limits).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /spawns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    server.stop("the server stops").await;
    let ran_on = tokio::time::timeout(Duration::from_secs(5), runs.recv())
        .await
        .expect("the spawned task ran to its end after the server stopped")
        .expect("a runtime id");
    assert_eq!(ran_on, tokio::runtime::Handle::current().id());
}
