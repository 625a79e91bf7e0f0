//! A stream key is shown once; an operator who lost it (or leaked it) rotates it with
//! `POST /streams/{id}/key`: the answer shows the new key, and the old one stops working. A
//! refused publish check says which refusal it was: unknown stream, wrong key, other origin.

use crate::common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use streamr_coord::client::{CoordinatorClient, PublishVerdict};
use streamr_coord::Coordinator;
use streamr_core::KeyPair;

/// The status of a publish check with `key`.
async fn check(api: &Client, key: &str) -> StatusCode {
    api.post("/streams/show/publish-check", &json!({ "stream_key": key }))
        .await
        .0
}

#[tokio::test]
async fn a_rotated_key_replaces_the_old_one_at_once() {
    let db = TestDb::sqlite().await;
    let api = Client::new(Coordinator::new(test_config(), db.storage().await));
    let (status, created) = api
        .post_admin("/streams", &json!({ "id": "show", "title": "keys" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let old_key = created["stream_key"].as_str().expect("key").to_owned();
    assert_eq!(check(&api, &old_key).await, StatusCode::OK);

    let (status, body) = api.post("/streams/show/key", &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "admin only: {body}");
    let (status, rotated) = api.post_admin("/streams/show/key", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["stream_key"].as_str().expect("key").to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(rotated["stream"]["id"], "show");

    assert_eq!(check(&api, &old_key).await, StatusCode::FORBIDDEN);
    assert_eq!(check(&api, &new_key).await, StatusCode::OK);
    let (status, body) = api.post_admin("/streams/nothing/key", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn a_refused_publisher_learns_which_refusal_it_met() {
    let db = TestDb::sqlite().await;
    let coordinator = Coordinator::new(test_config(), db.storage().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = coordinator.spawn_serve(listener).expect("serve");
    let client = CoordinatorClient::new(&server.url()).expect("client");
    let admin = client.clone().with_admin_token(ADMIN);
    let created = admin.create_stream("show", "keys").await.expect("created");
    let origin = KeyPair::from_seed([1; 32]);
    let other = KeyPair::from_seed([2; 32]);
    let verdict = |key: &'static str, stream_key: String, node: KeyPair| {
        let client = client.clone();
        async move {
            client
                .publish_verdict_as_origin(key, &stream_key, &node)
                .await
                .expect("asked")
        }
    };
    assert_eq!(
        verdict("show", created.stream_key.clone(), origin.clone()).await,
        PublishVerdict::Allowed
    );
    assert_eq!(
        verdict("show", "wrong".into(), origin.clone()).await,
        PublishVerdict::KeyRejected
    );
    assert_eq!(
        verdict("nothing", created.stream_key.clone(), origin.clone()).await,
        PublishVerdict::UnknownStream
    );
    assert!(matches!(
        verdict("show", created.stream_key.clone(), other).await,
        PublishVerdict::NotOrigin { reason } if reason.contains(&origin.node_id().to_string())
    ));
    server.shutdown().await.expect("served");
}
