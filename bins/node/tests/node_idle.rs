//! A relay's pull stops once its last viewer has left for the idle timeout, although the node's
//! own live HLS segmenter still follows the stream (it is an internal consumer, not a viewer).

mod common;

use common::Child;

use std::process::{Command, Stdio};
use std::time::Duration;

use streamr_node::{Node, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flv = format!("http://{}/live/show.flv", relay.http_addr());
    let played = Command::new("timeout")
        .args(["20", "ffmpeg", "-v", "error", "-i", &flv])
        .args(["-frames:v", "25", "-f", "null", "-"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(played.success());
    assert_eq!(relay.streams(), ["live/show"], "pulled while watched");
    let mut stopped = false;
    for _ in 0..50 {
        if relay.streams().is_empty() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stopped, "the pull did not stop after its viewers left");
    relay.shutdown().await;
    origin.shutdown().await;
}
