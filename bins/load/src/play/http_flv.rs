//! HTTP-FLV player: one streaming GET, bytes counted as they arrive.

use std::sync::Arc;

use futures_util::StreamExt;

use super::flv_scan::FirstVideoTagScanner;
use crate::stats::{PlayerCounters, PlayerState};

/// Plays `url` until the server ends the response or `stop` fires.
pub async fn play(
    client: reqwest::Client,
    url: String,
    counters: Arc<PlayerCounters>,
) -> anyhow::Result<()> {
    let response = client.get(&url).send().await?.error_for_status()?;
    counters.set_state(PlayerState::Playing);
    let mut scanner = FirstVideoTagScanner::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        counters.add_bytes(chunk.len());
        if !counters.has_first_frame() && scanner.push(&chunk) {
            counters.first_frame();
        }
    }
    counters.set_state(PlayerState::Ended);
    Ok(())
}
