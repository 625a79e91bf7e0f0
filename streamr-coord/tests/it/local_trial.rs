//! A local trial (`CoordConfig::local_trial`) is deliberate and visible: off by default,
//! announced in `GET /coordinator`, and while on, nodes sharing one host are not recorded as one
//! network (which would make every node a sybil cluster and every local viewer self-dealing).

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::KeyPair;

async fn subnets_of_two_nodes_on_one_host(config: CoordConfig) -> (bool, Vec<String>) {
    let db = TestDb::sqlite().await;
    let api = Client::new(Coordinator::new(config, db.storage().await));
    let (status, info) = api.get("/coordinator").await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let mut subnets = Vec::new();
    for seed in [1u8, 2] {
        let node = KeyPair::from_seed([seed; 32]);
        let (status, body) = api
            .post("/nodes", &registration(&node, "http://127.0.0.1:8080"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        subnets.push(body["subnet"].as_str().unwrap_or_default().to_owned());
    }
    (info["local_trial"] == json!(true), subnets)
}

#[tokio::test]
async fn a_local_trial_is_never_the_default_and_keeps_one_hosts_nodes_apart() {
    let (announced, subnets) = subnets_of_two_nodes_on_one_host(test_config()).await;
    assert!(!announced, "off by default");
    assert_eq!(subnets, vec!["127.0.0.0/24", "127.0.0.0/24"]);

    let mut config = test_config();
    config.local_trial = true;
    let (announced, subnets) = subnets_of_two_nodes_on_one_host(config).await;
    assert!(announced, "GET /coordinator says so");
    assert_ne!(subnets[0], subnets[1], "{subnets:?}");
    assert!(
        subnets.iter().all(|s| s.starts_with("local-trial/node/")),
        "{subnets:?}"
    );
}
