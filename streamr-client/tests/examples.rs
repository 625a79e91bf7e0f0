//! Every program in `examples/` runs here against an in-process network (a coordinator on
//! SQLite, an origin node, a friend node relaying it, the shipped sample published in a loop),
//! so none rots.
#![allow(dead_code)] // the examples' `main`s

#[path = "../examples/verifying_viewer.rs"]
mod verifying_viewer;

mod common;

use std::time::Duration;

use common::Network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_viewer_verifies_segments_and_gets_its_receipts_accepted() {
    // The viewer is for a live stream on a running network: one friend node relaying the
    // origin (the coordinator routes viewers to friend nodes), a segment reported.
    let network = Network::start(1, |segments| !segments.is_empty()).await;
    let stats = verifying_viewer::watch(&network.server.url(), "show", 1, Duration::from_secs(30))
        .await
        .expect("the viewer ran");
    assert!(stats.verified_segments >= 1, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert!(stats.receipts_accepted >= 1, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");

    network.shutdown().await;
}
