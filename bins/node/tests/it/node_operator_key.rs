//! `--operator-key`: nodes sharing an operator's key file register as members of its name (the
//! coordinator binds the name to the key and groups them under it); a node naming the same
//! operator without the key is refused the name.

use crate::common;

use std::time::Duration;

use common::eventually;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::KeyPair;
use streamr_node::{CoordinatorConfig, Node, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_an_operator_key_are_its_members_and_others_are_refused_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let secret = KeyPair::generate(&mut rand::rngs::OsRng);
    let config = CoordConfig {
        coordinator_key: secret.clone(),
        ..CoordConfig::default()
    };
    let server = common::serve_on_loopback(&Coordinator::new(config, storage.clone())).await;
    let relay = |name: &str, operator_key: Option<&str>| NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        identity: dir.path().join(format!("{name}.key")),
        upstreams: vec!["rtmp://127.0.0.1:9".into()],
        coordinator: Some(CoordinatorConfig {
            url: server.url(),
            key: Some(secret.coordinator_key()),
        }),
        operator: "acme".into(),
        operator_key: operator_key.map(|file| dir.path().join(file)),
        heartbeat_interval: Duration::from_millis(200),
        ..NodeConfig::default()
    };
    // The first node creates the operator key file; the second uses the same file.
    let first = Node::start(relay("a", Some("acme.key")))
        .await
        .expect("a starts");
    let second = Node::start(relay("b", Some("acme.key")))
        .await
        .expect("b starts");
    let acme = std::fs::read_to_string(dir.path().join("acme.key")).expect("operator key file");
    let acme = KeyPair::from_seed_hex(acme.trim()).expect("a seed");
    for node in [&first, &second] {
        let id = node.node_id().to_string();
        let storage = storage.clone();
        let key = eventually("the node to register as acme's", || {
            let (storage, id) = (storage.clone(), id.clone());
            async move { storage.get_node(&id).await.ok().flatten()?.operator_key }
        })
        .await;
        assert_eq!(key, acme.operator_key().to_string());
    }
    // A node naming "acme" without the key is refused: never registered.
    let squatter = Node::start(relay("c", None)).await.expect("c starts");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = storage
        .get_node(&squatter.node_id().to_string())
        .await
        .expect("get node");
    assert_eq!(stored, None);
}
