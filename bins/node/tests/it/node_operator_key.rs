//! `--operator-key`: nodes sharing an operator's key file register as members of its name (the
//! coordinator binds the name to the key and groups them under it); a node naming the same
//! operator without the key is refused the name. After a rotation, a node picks up the new key
//! file without a restart.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Child};
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{KeyPair, OperatorRotation};
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

/// After `streamr operator-rotation`, a running node whose operator key file is replaced with
/// the new key registers again under it without a restart. A node started with the retired key
/// logs an error naming its file and what to do, registers as its own operator meanwhile, and
/// joins the operator once its file holds the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_operator_key_file_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = common::sqlite_storage(dir.path()).await;
    let server =
        common::serve_on_loopback(&Coordinator::new(CoordConfig::default(), storage.clone())).await;
    let operator_key_of = |id: String| {
        let storage = storage.clone();
        async move {
            let node = storage.get_node(&id).await.ok().flatten()?;
            Some((node.operator, node.operator_key))
        }
    };
    let old_file = dir.path().join("acme.key");
    let running = Node::start(NodeConfig {
        rtmp_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        identity: dir.path().join("running.key"),
        upstreams: vec!["rtmp://127.0.0.1:9".into()],
        coordinator: Some(CoordinatorConfig {
            url: server.url(),
            key: None,
        }),
        operator: "acme".into(),
        operator_key: Some(old_file.clone()),
        heartbeat_interval: Duration::from_millis(200),
        ..NodeConfig::default()
    })
    .await
    .expect("the node starts");
    let running_id = running.node_id().to_string();
    let registered = eventually("the node to register as acme's", || {
        let found = operator_key_of(running_id.clone());
        async move { found.await.and_then(|(_, key)| key) }
    })
    .await;
    let old = std::fs::read_to_string(&old_file).expect("operator key file");
    let old = KeyPair::from_seed_hex(old.trim()).expect("a seed");
    assert_eq!(registered, old.operator_key().to_string());

    // The operator rotates to a new key.
    let new = KeyPair::from_seed([0x7e; 32]);
    let answer = reqwest::Client::new()
        .post(format!("{}/operators/rotations", server.url()))
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&OperatorRotation::sign(&old, "acme", new.operator_key(), 1))
                .expect("a JSON statement"),
        )
        .send()
        .await
        .expect("rotation sent");
    assert_eq!(answer.status(), reqwest::StatusCode::OK);

    // A node (the binary) started with a copy of the retired key file.
    let stale_file = dir.path().join("stale-acme.key");
    std::fs::copy(&old_file, &stale_file).expect("copy of the old key file");
    let identity = dir.path().join("stale.key");
    let log = dir.path().join("stale.log");
    let _stale = Child(
        Command::new(env!("CARGO_BIN_EXE_streamr-node"))
            .args([
                "--rtmp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--identity")
            .arg(&identity)
            .args(["--upstream", "rtmp://127.0.0.1:9"])
            .args(["--coordinator", &server.url()])
            .args(["--operator", "acme", "--heartbeat-interval", "200ms"])
            .arg("--operator-key")
            .arg(&stale_file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the node binary starts"),
    );
    let stale_id = eventually("the node binary's identity", || {
        let identity = identity.clone();
        async move {
            let seed = std::fs::read_to_string(identity).ok()?;
            Some(
                KeyPair::from_seed_hex(seed.trim())
                    .ok()?
                    .node_id()
                    .to_string(),
            )
        }
    })
    .await;
    // Registered as its own operator, its error naming the file and what to do.
    let (operator, key) = eventually("the stale node to register as its own operator", || {
        operator_key_of(stale_id.clone())
    })
    .await;
    assert_eq!((operator.as_str(), key), ("anonymous", None));
    let logged = std::fs::read_to_string(&log).expect("log");
    let line = logged
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("retired by a rotation"))
        .unwrap_or_else(|| panic!("no error about the retired key in:\n{logged}"));
    assert!(
        line.contains(&stale_file.display().to_string())
            && line.contains("streamr operator-rotation"),
        "{line}"
    );
    // The running node is still registered with the retired key's proof: nothing told it.
    let (_, key) = operator_key_of(running_id.clone()).await.expect("a record");
    assert_eq!(key, Some(old.operator_key().to_string()));

    // The operator puts the new key file in place of the old one on both machines.
    for file in [&old_file, &stale_file] {
        std::fs::write(file, format!("{}\n", hex::encode(new.seed()))).expect("new key file");
    }
    let new_key = new.operator_key().to_string();
    for id in [&running_id, &stale_id] {
        eventually("the node to register again with the new key", || {
            let (found, new_key) = (operator_key_of(id.clone()), new_key.clone());
            async move {
                let (operator, key) = found.await?;
                (operator == "acme" && key.as_deref() == Some(new_key.as_str())).then_some(())
            }
        })
        .await;
    }
    running.shutdown().await;
}
