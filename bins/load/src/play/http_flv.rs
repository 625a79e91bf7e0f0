//! HTTP-FLV player: one streaming GET, bytes counted as they arrive, hop latency read from the
//! publisher's stamps in the video frames.

use std::sync::Arc;

use futures_util::StreamExt;

use super::flv_scan::FlvScanner;
use crate::stamp::LatencyProbe;
use crate::stats::{PlayerCounters, PlayerState};

/// Plays `url` until the server ends the response or `stop` fires.
pub async fn play(
    client: reqwest::Client,
    url: String,
    counters: Arc<PlayerCounters>,
) -> anyhow::Result<()> {
    let response = client.get(&url).send().await?.error_for_status()?;
    counters.set_state(PlayerState::Playing);
    let mut scanner = FlvScanner::default();
    let mut probe = LatencyProbe::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        counters.add_bytes(chunk.len());
        let first = scanner.push(&chunk, |prefix| {
            if let Some(latency_ms) = probe.video(prefix) {
                counters.add_latency_sample(latency_ms);
            }
        });
        if first && !counters.has_first_frame() {
            counters.first_frame();
        }
    }
    counters.set_state(PlayerState::Ended);
    Ok(())
}
