//! The real `streamr-coordinator` binary under a bounded loopback flood of half-sent requests:
//! with fewer file handles than flood connections, `/healthz` keeps answering other clients and
//! the half-sent requests are closed by the header deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The coordinator process, killed when dropped.
struct Coordinator(std::process::Child);

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Whether `GET /healthz` answers 200 within 5 s.
async fn healthz(addr: SocketAddr) -> bool {
    let ask = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.ok()?;
        Some(response.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ask).await,
        Ok(Some(true))
    )
}

async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(server).await
}

/// Reads until the server closes the connection; whether it did before `deadline`.
async fn closed_by_server(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = vec![0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_keeps_answering_under_a_half_sent_request_flood() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_streamr-coordinator"))
        .args(["--listen", &addr.to_string(), "--database", &database])
        .args(["--http-max-connections", "400"])
        .args(["--http-max-connections-per-client", "100"])
        .args(["--http-header-timeout-ms", "3000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn streamr-coordinator");
    let _coordinator = Coordinator(child);
    let started = Instant::now() + Duration::from_secs(60);
    while !healthz(addr).await {
        assert!(Instant::now() < started, "the coordinator did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1500 half-sent requests from one address: more than the process's file handles.
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    let mut stalled = 0;
    for _ in 0..1500 {
        // A server that stopped accepting leaves connects hanging: stop flooding then.
        let connect = tokio::time::timeout(Duration::from_secs(2), connect_from(flooder, addr));
        let Ok(Ok(mut socket)) = connect.await else {
            stalled += 1;
            if stalled == 5 {
                break;
            }
            continue;
        };
        if socket
            .write_all(b"POST /heartbeats HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .is_ok()
        {
            held.push(socket);
        }
    }
    assert!(healthz(addr).await, "/healthz stopped answering");

    let deadline = Instant::now() + Duration::from_secs(60);
    for socket in &mut held {
        assert!(
            closed_by_server(socket, deadline).await,
            "a half-sent request was kept open"
        );
    }
    assert!(healthz(addr).await, "/healthz stopped answering");
}
