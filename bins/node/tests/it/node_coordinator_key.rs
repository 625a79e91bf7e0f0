//! A relay's pinned coordinator key is checked against `GET /coordinator` at start: the
//! coordinator's secret seed given in its place, or another coordinator's key, stops the
//! `streamr-node` process with a non-zero exit and a message saying what to fix; the right key
//! lets it join.

use crate::common;

use std::process::{Command, Stdio};

use common::eventually;
use streamr_coord::client::CoordinatorClient;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::KeyPair;

/// Runs a relay pinned to `key` until it exits (or a minute passes); its exit code and stderr.
fn relay_with_key(dir: &std::path::Path, coordinator: &str, key: &str) -> (Option<i32>, String) {
    let output = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_streamr-node"))
        .args([
            "--rtmp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--upstream", "rtmp://127.0.0.1:9"])
        .args(["--coordinator", coordinator])
        .args(["--coordinator-public-key", key])
        .arg("--identity")
        .arg(dir.join("relay.key"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("streamr-node runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pinned_key_stops_the_node_and_says_what_to_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let secret = KeyPair::generate(&mut rand::rngs::OsRng);
    let config = CoordConfig {
        coordinator_key: secret.clone(),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, storage);
    let server = common::serve_on_loopback(&coordinator).await;
    let url = server.url();

    let seed = hex::encode(secret.seed());
    let (code, stderr) = {
        let (dir, url) = (dir.path().to_owned(), url.clone());
        tokio::task::spawn_blocking(move || relay_with_key(&dir, &url, &seed))
            .await
            .expect("ran")
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("SECRET seed"), "{stderr}");
    assert!(
        stderr.contains(&secret.coordinator_key().to_string()),
        "names the public key to use: {stderr}"
    );

    let other = KeyPair::generate(&mut rand::rngs::OsRng)
        .coordinator_key()
        .to_string();
    let (code, stderr) = {
        let (dir, url) = (dir.path().to_owned(), url.clone());
        tokio::task::spawn_blocking(move || relay_with_key(&dir, &url, &other))
            .await
            .expect("ran")
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("is not the key of this coordinator"),
        "{stderr}"
    );

    // The right key: the node runs and joins.
    let mut relay = common::Child(
        Command::new(env!("CARGO_BIN_EXE_streamr-node"))
            .args([
                "--rtmp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(["--upstream", "rtmp://127.0.0.1:9"])
            .args(["--coordinator", &url])
            .args([
                "--coordinator-public-key",
                &secret.coordinator_key().to_string(),
            ])
            .args(["--operator", "pinned"])
            .arg("--identity")
            .arg(dir.path().join("relay.key"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("streamr-node starts"),
    );
    let client = CoordinatorClient::new(&url).expect("client");
    eventually("the relay with the right key to join", || async {
        let nodes = client.nodes().await.ok()?;
        nodes.iter().any(|n| n.operator == "pinned").then_some(())
    })
    .await;
    assert!(relay.0.try_wait().expect("status").is_none());
    drop(relay);
    server.shutdown().await.expect("served");
}
