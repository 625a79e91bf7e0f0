//! `streamr_net::http::serve` over loopback: slow request heads are closed at the deadline,
//! connections over a client's budget get a 503, and requests carry the peer address.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use streamr_net::http::{serve, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

async fn start(limits: HttpLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    tokio::spawn(serve(
        listener,
        router,
        limits.budget(),
        limits,
        std::future::pending(),
    ));
    addr
}

async fn read_all(socket: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut response = Vec::new();
    tokio::time::timeout(limit, socket.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn a_slow_request_head_is_closed_at_the_deadline() {
    let mut limits = HttpLimits::default();
    limits.header_read_timeout = Duration::from_millis(500);
    let addr = start(limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_all(&mut slow, Duration::from_secs(30)).await;
    assert!(answer.is_some(), "the connection was kept open");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_client_over_its_budget_gets_503_and_others_are_served() {
    let mut limits = HttpLimits::default();
    limits.max_connections_per_client = 2;
    let addr = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The server counts a connection once it has accepted it; a request on each proves that.
    for socket in &mut held {
        socket
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 256];
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    }
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let answer = read_all(&mut refused, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"));

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    other
        .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut other, Duration::from_secs(30)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("127.0.0.2"), "{answer}");
}
