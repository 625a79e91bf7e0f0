//! A relay's pull stops once its last viewer has left for the idle timeout, although the node's
//! own live HLS segmenter still follows the stream (it is an internal consumer, not a viewer).

use crate::common;

use common::Child;

use std::process::{Command, Stdio};
use std::time::Duration;

use streamr_node::{Node, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn an_idle_pull_stops() {
    let dir = tempfile::tempdir().unwrap();
    let local = || "127.0.0.1:0".parse().unwrap();
    let origin = Node::start(NodeConfig {
        rtmp_listen: local(),
        http_listen: local(),
        identity: dir.path().join("o.key"),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let relay = Node::start(NodeConfig {
        rtmp_listen: local(),
        http_listen: local(),
        identity: dir.path().join("r.key"),
        upstreams: vec![format!("rtmp://{}", origin.rtmp_addr())],
        pull_idle_timeout: Duration::from_secs(2),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let _publisher = Child(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x180:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "40"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .args(["-c:a", "aac", "-f", "flv"])
            .arg(format!("rtmp://{}/live/show", origin.rtmp_addr()))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg is required"),
    );
    wait_for("the origin to publish", || {
        origin.streams() == ["live/show"]
    })
    .await;
    let flv = format!("http://{}/live/show.flv", relay.http_addr());
    let mut player = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", &flv])
        .args(["-frames:v", "25", "-f", "null", "-"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is required");
    // Pulled while watched: the player holds the pull open until it has its frames.
    wait_for("the relay to pull while watched", || {
        relay.streams() == ["live/show"]
    })
    .await;
    let played = tokio::time::timeout(Duration::from_secs(60), player.wait())
        .await
        .expect("the player gets 25 frames within 60 s")
        .expect("ffmpeg runs");
    assert!(played.success());
    wait_for("the pull to stop after its viewers left", || {
        relay.streams().is_empty()
    })
    .await;
    relay.shutdown().await;
    origin.shutdown().await;
}

/// Waits for `condition` with a generous deadline (the machine may be loaded).
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 60 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
