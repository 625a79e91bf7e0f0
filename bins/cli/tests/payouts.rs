//! `streamr payouts --node ID` against a real coordinator: the stages, the policy the
//! coordinator was started with, `--json`, and a clear error with a non-zero exit for a node
//! the coordinator does not know.

use std::process::{Command, Stdio};
use std::sync::Arc;

use streamr_coord::client::{CoordinatorClient, NodeAdvert};
use streamr_coord::{connect, CoordConfig, Coordinator, NodePayouts, Storage};
use streamr_core::KeyPair;

/// Runs `streamr payouts --node <node> --coordinator <url> [extra]`; exit code, stdout, stderr.
fn payouts(node: &str, coordinator: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_streamr"))
        .args(["payouts", "--node", node, "--coordinator", coordinator])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("streamr runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_shows_a_nodes_stages_and_the_coordinators_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage: Arc<dyn Storage> = connect(&format!(
        "sqlite://{}",
        dir.path().join("coordinator.db").display()
    ))
    .await
    .expect("SQLite opens");
    let mut config = CoordConfig::default();
    config.payouts.default_threshold = 5_000_000;
    config.payouts.fees.fixed = 1_000;
    config.payouts.fees.proportional_ppm = 2_500;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = Coordinator::new(config, storage)
        .spawn_serve(listener)
        .expect("serve");
    let url = server.url();
    let node = KeyPair::from_seed([31; 32]);
    CoordinatorClient::new(&url)
        .expect("client")
        .register_node(
            &node,
            &NodeAdvert {
                operator_membership: None,
                operator: "alice".into(),
                payout_address: "0xa11ce".into(),
                rtmp_url: "rtmp://10.0.31.1:1935/live".into(),
                http_url: "http://10.0.31.1:8080".into(),
                capacity_kbps: 10_000,
            },
        )
        .await
        .expect("registered");
    let id = node.node_id().to_string();

    let (run_id, run_url) = (id.clone(), url.clone());
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || payouts(&run_id, &run_url, &[]))
            .await
            .expect("ran");
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        id.as_str(),
        "0xa11ce",
        "threshold 5.000000, fee 0.001000 + 2500 ppm",
        "no payouts yet",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    for stage in ["earned", "unvested", "vested", "pending", "paid", "fees"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(stage) && l.contains(" 0.000000 ")),
            "{stage} missing:\n{stdout}"
        );
    }

    let (run_id, run_url) = (id.clone(), url.clone());
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || payouts(&run_id, &run_url, &["--json"]))
            .await
            .expect("ran");
    assert_eq!(code, Some(0), "{stderr}");
    let parsed: NodePayouts = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!((parsed.threshold, parsed.fee_ppm), (5_000_000, 2_500));
    assert!(parsed.is_conserved());

    let stranger = KeyPair::from_seed([32; 32]).node_id().to_string();
    let run_url = url.clone();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || payouts(&stranger, &run_url, &[]))
        .await
        .expect("ran");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("payouts"), "{stderr}");
    assert!(
        stderr.contains("404") || stderr.contains("not_found"),
        "{stderr}"
    );
    server.shutdown().await.expect("served");
}
