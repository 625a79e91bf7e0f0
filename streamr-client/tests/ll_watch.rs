//! The viewer in LL-HLS mode against an in-process network (a coordinator on SQLite, an origin
//! node, friend nodes relaying it, the shipped sample published in a loop): it plays part by
//! part at the live edge, every part checked against the origin's part hashes.

mod common;

use std::time::Duration;

use common::Network;
use streamr_client::viewer::{Viewer, ViewerConfig, ViewerStats};

/// Waits (at most 30 s) until `done` holds for the viewer's counters.
async fn wait_for(viewer: &Viewer, what: &str, done: impl Fn(&ViewerStats) -> bool) {
    let mut stats = viewer.watch_stats();
    let outcome = tokio::time::timeout(Duration::from_secs(30), stats.wait_for(|s| done(s))).await;
    assert!(matches!(outcome, Ok(Ok(_))), "{what}: {:?}", viewer.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_outputs_verified_parts_at_the_live_edge() {
    let network = Network::start(1, |segments| segments.iter().any(|s| s.ll.is_some())).await;
    let out = tempfile::NamedTempFile::new().expect("output file");
    let file = tokio::fs::File::create(out.path()).await.expect("output");
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, Some(Box::new(file))).expect("the viewer starts");
    // Two segments' worth of parts verified, and a whole segment chained into receipts.
    wait_for(&viewer, "parts and a segment verified", |s| {
        s.verified_parts >= 8 && s.verified_segments >= 1 && s.receipts_accepted >= 1
    })
    .await;
    // At the live edge: the part output last was the newest the node listed (or the one it
    // was producing), not one of a backlog; parts are 350 ms, segments several parts long.
    let mut behind = Vec::new();
    for _ in 0..5 {
        let parts = viewer.stats().parts;
        wait_for(&viewer, "another part", |s| s.parts > parts).await;
        behind.push(viewer.stats().last_part_behind);
    }
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(
        behind.iter().all(|b| b.is_some_and(|b| b <= 1)),
        "parts listed after the one output: {behind:?}"
    );
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_segments, 0, "{stats:?}");
    assert_eq!(stats.repeated_parts, 0, "{stats:?}");
    assert!(stats.receipts_rejected.is_empty(), "{stats:?}");
    // What a player reads: the init segment, then fMP4 fragments.
    let written = std::fs::read(out.path()).expect("the output");
    assert_eq!(
        written.get(4..8),
        Some(&b"ftyp"[..]),
        "starts with the init segment"
    );
    let fragments = written.windows(4).filter(|w| *w == b"moof").count();
    assert!(
        fragments as u64 >= stats.parts,
        "{fragments} fragments for {} parts",
        stats.parts
    );
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_viewer_failing_over_to_a_cold_friend_gets_only_verified_parts() {
    let mut network = Network::start(2, |segments| segments.iter().any(|s| s.ll.is_some())).await;
    let config = ViewerConfig::new(network.server.url(), "show").with_low_latency(true);
    let viewer = Viewer::start(config, None).expect("the viewer starts");
    wait_for(&viewer, "parts verified at the first node", |s| {
        s.verified_parts >= 4 && s.node.is_some()
    })
    .await;
    let serving = viewer.stats().node.expect("a serving node");
    // The friend serving the viewer goes away: the viewer is routed to a node that has not
    // pulled the stream yet (the other friend, which starts pulling now) or to the origin.
    let at = network
        .friends
        .iter()
        .position(|friend| friend.node_id() == serving)
        .expect("the viewer is routed to a friend");
    network.friends.remove(at).shutdown().await;
    let before = viewer.stats().verified_parts;
    wait_for(&viewer, "parts verified after the failover", |s| {
        s.failovers >= 1
            && s.node.is_some_and(|node| node != serving)
            && s.verified_parts >= before + 8
    })
    .await;
    let stats = viewer.stop().await.expect("the viewer stops");
    assert!(stats.nodes_used.len() >= 2, "{stats:?}");
    assert_eq!(stats.unverified_parts, 0, "{stats:?}");
    assert_eq!(stats.unverified_segments, 0, "{stats:?}");
    network.shutdown().await;
}
