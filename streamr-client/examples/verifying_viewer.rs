//! A player that trusts no node: it asks a coordinator which friend node to watch a stream
//! from, plays the stream's HLS there, checks every segment against the hashes the origin
//! reported, and signs receipts for the bytes it verified (what the node is paid for).
//!
//! ```text
//! streamr demo &
//! cargo run -p streamr-client --example verifying_viewer -- http://127.0.0.1:8090 demo 3
//! ```

use std::time::Duration;

use streamr_client::viewer::{Viewer, ViewerConfig, ViewerError, ViewerStats};

/// Watches `stream` through the coordinator at `coordinator` until `segments` segments are
/// verified and a receipt was accepted, or `limit` passes; returns what the viewer saw.
pub async fn watch(
    coordinator: &str,
    stream: &str,
    segments: u64,
    limit: Duration,
) -> Result<ViewerStats, ViewerError> {
    // The viewer asks the coordinator for a node and a session grant, and asks again (naming
    // the node that failed it) when that node stops answering.
    let viewer = Viewer::start(ViewerConfig::new(coordinator, stream), None)?;
    let mut stats = viewer.watch_stats();
    let enough = stats.wait_for(|s| s.verified_segments >= segments && s.receipts_accepted > 0);
    let _ = tokio::time::timeout(limit, enough).await;
    viewer.stop().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let coordinator = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8090".into());
    let stream = args.next().unwrap_or_else(|| "demo".into());
    let segments = args.next().map_or(Ok(3), |n| n.parse())?;
    let stats = watch(&coordinator, &stream, segments, Duration::from_secs(120)).await?;
    println!(
        "viewer {}: {} segments verified ({} bytes, {} unverified) from {} node(s); \
         {} of {} receipts accepted",
        stats.viewer,
        stats.verified_segments,
        stats.verified_bytes,
        stats.unverified_segments,
        stats.nodes_used.len(),
        stats.receipts_accepted,
        stats.receipts_sent,
    );
    Ok(())
}
