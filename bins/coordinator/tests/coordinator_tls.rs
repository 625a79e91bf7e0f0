//! The `streamr-coordinator` binary over HTTPS with real clients: curl and the coordinator
//! client (reqwest with rustls) verify its certificate against a test CA and use the API; plain
//! HTTP gets no answer; a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use streamr_coord::client::{CoordinatorClient, NodeAdvert};
use streamr_core::KeyPair;
use streamr_tls::testing::{served_leaf, TestPki};
use tokio::time::Instant;

const ADMIN: &str = "tls-test-admin";

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

/// curl `url` verifying the server against `ca`: the HTTP status and body, or `None` when
/// curl could not complete the exchange.
fn curl(url: &str, ca: &Path) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .arg(url)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n')?;
    Some((status.trim().parse().ok()?, body.to_owned()))
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs curl"]
async fn the_api_is_served_over_https_and_renewed_certificates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(dir.path()).unwrap();
    let first = pki.issue().unwrap();
    let files = pki.files();
    let ca = pki.ca_file();
    let addr = free_addr();
    let _coordinator = Coordinator(
        Command::new(env!("CARGO_BIN_EXE_streamr-coordinator"))
            .args(["--listen", &addr.to_string()])
            .arg("--database")
            .arg(format!("sqlite://{}", dir.path().join("c.db").display()))
            .args(["--admin-token", ADMIN, "--probe-interval-secs", "0"])
            .args(["--reachability-interval", "off"])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .args(["--tls-reload-ms", "200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("coordinator.log")).unwrap())
            .spawn()
            .expect("start streamr-coordinator"),
    );
    let url = format!("https://127.0.0.1:{}", addr.port());

    let (status, body) = eventually("curl to reach /healthz over HTTPS", || async {
        curl(&format!("{url}/healthz"), &ca)
    })
    .await;
    assert_eq!(status, 200, "healthz: {body}");
    assert_eq!(served_leaf(addr, pki.ca_der()).await, Some(first.clone()));
    assert!(
        curl(&format!("http://127.0.0.1:{}/healthz", addr.port()), &ca)
            .is_none_or(|(status, _)| status != 200),
        "plain HTTP is not served on the HTTPS port"
    );

    // The coordinator client (reqwest with rustls) trusts the CA through SSL_CERT_FILE, as a
    // node with a private CA would.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let admin = CoordinatorClient::new(&url)
        .unwrap()
        .with_admin_token(ADMIN);
    admin
        .create_stream("show", "")
        .await
        .expect("create a stream over HTTPS");
    let node = KeyPair::generate(&mut rand::rngs::OsRng);
    admin
        .register_node(
            &node,
            &NodeAdvert {
                operator_membership: None,
                operator: "alice".into(),
                payout_address: "alice-wallet".into(),
                rtmp_url: "rtmps://127.0.0.1:1936/live".into(),
                http_url: "https://127.0.0.1:8443".into(),
                capacity_kbps: 10_000,
            },
        )
        .await
        .expect("register a node over HTTPS");
    let (status, nodes) = curl(&format!("{url}/nodes"), &ca).expect("curl lists the nodes");
    assert_eq!(status, 200);
    assert!(nodes.contains("alice"), "nodes: {nodes}");

    let renewed = pki.issue().unwrap();
    eventually("the renewed certificate", || async {
        (served_leaf(addr, pki.ca_der()).await? == renewed).then_some(())
    })
    .await;
    let (status, _) = curl(&format!("{url}/healthz"), &ca).expect("curl after the renewal");
    assert_eq!(status, 200);
}
