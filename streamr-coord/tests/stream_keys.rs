//! A stream key is shown once; an operator who lost it (or leaked it) rotates it with
//! `POST /streams/{id}/key`: the answer shows the new key, and the old one stops working.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use streamr_coord::Coordinator;

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
