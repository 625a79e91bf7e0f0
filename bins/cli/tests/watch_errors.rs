//! `streamr watch` fails loudly: an unreachable coordinator, a stream the coordinator does not
//! know, and a run that verified nothing each end with a message and a non-zero exit.

use std::process::{Command, Stdio};
use std::sync::Arc;

use streamr_coord::client::CoordinatorClient;
use streamr_coord::{connect, CoordConfig, Coordinator, Storage};

const ADMIN: &str = "watch-errors-admin";

/// Runs `streamr watch <stream> --coordinator <url> --duration <secs>`; exit code and stderr.
fn watch(stream: &str, coordinator: &str, secs: u32) -> (Option<i32>, String) {
    let output = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_streamr"))
        .args(["watch", stream, "--coordinator", coordinator])
        .args(["--duration", &secs.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("streamr runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_says_what_is_wrong_and_exits_non_zero() {
    // Nothing listens there.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let nowhere = format!("http://{unused}");
    let (code, stderr) = tokio::task::spawn_blocking(move || watch("show", &nowhere, 3))
        .await
        .expect("ran");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the coordinator"), "{stderr}");

    let dir = tempfile::tempdir().expect("temp dir");
    let storage: Arc<dyn Storage> = connect(&format!(
        "sqlite://{}",
        dir.path().join("coordinator.db").display()
    ))
    .await
    .expect("SQLite opens");
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = coordinator.spawn_serve(listener).expect("serve");
    let url = server.url();

    let unknown_url = url.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || watch("nosuch", &unknown_url, 3))
        .await
        .expect("ran");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("knows no stream \"nosuch\""), "{stderr}");

    // A known stream nobody publishes: nothing verified within the duration.
    CoordinatorClient::new(&url)
        .expect("client")
        .with_admin_token(ADMIN)
        .create_stream("quiet", "nobody publishes")
        .await
        .expect("created");
    let quiet_url = url.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || watch("quiet", &quiet_url, 3))
        .await
        .expect("ran");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no segment of quiet"), "{stderr}");
    server.shutdown().await.expect("served");
}
