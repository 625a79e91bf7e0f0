//! The `streamr-node` binary as a relay joining a coordinator: it keeps its key in the identity
//! file, learns the coordinator's key from it, registers and heartbeats, serves a routed viewer
//! with its grant, and deregisters when stopped with SIGTERM.

use crate::common;

use common::{eventually, Child};

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;

use streamr_coord::client::CoordinatorClient;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::KeyPair;
use streamr_node::{CoordinatorConfig, Node, NodeConfig};

const ADMIN: &str = "node-process-admin";

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn the_node_binary_joins_serves_a_granted_viewer_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let storage = common::sqlite_storage(dir.path()).await;
    let config = CoordConfig {
        admin_token: Some(ADMIN.into()),
        ..CoordConfig::default()
    };
    let coordinator = Coordinator::new(config, Arc::clone(&storage));
    // Served until the test ends (the handle is dropped).
    let server = common::serve_on_loopback(&coordinator).await;
    let url = server.url();
    let admin = CoordinatorClient::new(&url)
        .unwrap()
        .with_admin_token(ADMIN);
    let stream_key = admin.create_stream("show", "").await.unwrap().stream_key;

    let origin = Node::start(NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        identity: dir.path().join("origin.key"),
        coordinator: Some(CoordinatorConfig {
            url: url.clone(),
            key: None,
        }),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let _publisher = Child(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x180:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "30"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .args(["-c:a", "aac", "-f", "flv"])
            .arg(format!(
                "rtmp://{}/live/show?key={stream_key}",
                origin.rtmp_addr()
            ))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg is required"),
    );

    let identity = dir.path().join("relay.key");
    let (rtmp, http) = (free_addr(), free_addr());
    let mut relay = Child(
        Command::new(env!("CARGO_BIN_EXE_streamr-node"))
            .args(["--rtmp-listen", &rtmp, "--http-listen", &http])
            .arg("--identity")
            .arg(&identity)
            .args(["--upstream", &format!("rtmp://{}", origin.rtmp_addr())])
            .args(["--coordinator", &url])
            .args(["--operator", "bob", "--heartbeat-interval", "500ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
            .spawn()
            .expect("start streamr-node"),
    );

    let api = CoordinatorClient::new(&url).unwrap();
    let node = eventually("the relay process to register and heartbeat", || async {
        let nodes = api.nodes().await.ok()?;
        nodes
            .into_iter()
            .find(|n| n.operator == "bob" && n.last_heartbeat_ms.is_some())
    })
    .await;
    let seed = std::fs::read_to_string(&identity).unwrap();
    assert_eq!(
        KeyPair::from_seed_hex(seed.trim())
            .unwrap()
            .node_id()
            .to_string(),
        node.id,
        "the registered node id is the identity file's key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(node.http_url, format!("http://{http}"));

    let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
    let play = api.play("show", &viewer.viewer_key()).await.unwrap();
    assert_eq!(play.node_id.to_string(), node.id);
    let played = Command::new("timeout")
        .args(["20", "ffmpeg", "-v", "error", "-i", &play.http_flv_url])
        .args(["-frames:v", "25", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        played.status.success(),
        "the routed viewer plays HTTP-FLV from the process: {}\nnode log:\n{}",
        String::from_utf8_lossy(&played.stderr),
        std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default()
    );

    let pid = relay.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = eventually("the relay process to exit", || {
        let exited = relay.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    assert!(!api.node(&node.id).await.unwrap().active, "deregistered");
    // Logs written to a file are plain text: no terminal colour codes.
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap();
    assert!(log.contains("registered"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    origin.shutdown().await;
}
