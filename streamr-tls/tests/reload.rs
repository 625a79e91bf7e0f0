//! A real rustls client against an axum server behind [`TlsListener`]: it is served the
//! certificate from the files, sees the new one after the files are swapped, keeps the old one
//! while the new pair does not match, and a client stalled in its handshake holds up nobody.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use streamr_tls::testing::TestPki;
use streamr_tls::{HandshakeLimits, ServerTls, TlsListener, HTTP_ALPN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(tls: &ServerTls, limits: HandshakeLimits) -> Server {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, tls.acceptor(HTTP_ALPN), limits).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let stop = CancellationToken::new();
    let _reloader = tls.spawn_reloader(Duration::from_millis(50), stop.clone());
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let until = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
    });
    Server { addr, stop }
}

/// Connects trusting only `ca`, asks for `/hello`, and returns the leaf certificate the
/// server presented and the response.
async fn fetch(addr: SocketAddr, ca: &[u8]) -> (Vec<u8>, String) {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test CA's certificate");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    (leaf, String::from_utf8_lossy(&response).into_owned())
}

/// Waits (up to a minute) until a new connection is served `expected`.
async fn until_served(addr: SocketAddr, ca: &[u8], expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (leaf, response) = fetch(addr, ca).await;
        assert!(response.ends_with("hello"), "response: {response}");
        if leaf == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn swapped_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    let tls = ServerTls::load(pki.files()).unwrap();
    let server = serve(&tls, HandshakeLimits::default()).await;

    let (leaf, response) = fetch(server.addr, &pki.ca_der()).await;
    assert_eq!(leaf, first, "the certificate from the files is served");
    assert!(response.starts_with("HTTP/1.1 200"), "response: {response}");

    let second = pki.issue().unwrap();
    assert_ne!(first, second);
    until_served(server.addr, &pki.ca_der(), &second).await;
    assert_eq!(tls.certificate().chain()[0].to_vec(), second);
}

#[tokio::test]
async fn a_key_that_does_not_match_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    let tls = ServerTls::load(pki.files()).unwrap();
    let files = pki.files();
    let first_key = std::fs::read(&files.key).unwrap();

    // A new certificate lands before its key: the pair does not match and is refused.
    let _second = pki.issue().unwrap();
    std::fs::write(&files.key, &first_key).unwrap();
    let refused = tls.certificate().reload_if_changed();
    assert!(
        matches!(refused, Err(streamr_tls::TlsError::Mismatch { .. })),
        "a mismatched pair is refused: {refused:?}"
    );
    assert_eq!(tls.certificate().chain()[0].to_vec(), first);
    assert!(
        !tls.certificate().reload_if_changed().unwrap(),
        "the same refused files are not retried until they change"
    );

    let server = serve(&tls, HandshakeLimits::default()).await;
    let (leaf, _) = fetch(server.addr, &pki.ca_der()).await;
    assert_eq!(leaf, first, "the previous certificate stays in service");

    // The key arrives: the pair is complete and goes into service.
    let third = pki.issue().unwrap();
    until_served(server.addr, &pki.ca_der(), &third).await;
}

#[tokio::test]
async fn a_client_stalled_in_the_handshake_holds_up_nobody_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    let tls = ServerTls::load(pki.files()).unwrap();
    let limits = HandshakeLimits {
        timeout: Duration::from_millis(500),
        ..HandshakeLimits::default()
    };
    let server = serve(&tls, limits).await;

    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let (leaf, response) = fetch(server.addr, &pki.ca_der()).await;
    assert_eq!(leaf, first);
    assert!(response.ends_with("hello"));

    // The silent client is closed once its handshake deadline passes.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled handshake is closed: {closed:?}"
    );
}
