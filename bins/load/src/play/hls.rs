//! HLS player: polls the media playlist like a live player and downloads every new segment.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use streamr_media::hls::ParsedPlaylist;

use crate::stats::{PlayerCounters, PlayerState};

/// How many segments behind the live edge a player starts (as common players do).
const START_SEGMENTS_FROM_EDGE: usize = 3;

/// Plays the live playlist at `url` until it ends or the task is cancelled.
pub async fn play(
    client: reqwest::Client,
    url: String,
    counters: Arc<PlayerCounters>,
) -> anyhow::Result<()> {
    let base = reqwest::Url::parse(&url)?;
    // Sequence number of the next segment to fetch; None until the first playlist.
    let mut next: Option<u64> = None;
    loop {
        let text = client
            .get(base.clone())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let playlist = ParsedPlaylist::parse(&text)?;
        counters.set_state(PlayerState::Playing);
        let edge = playlist
            .segments
            .len()
            .saturating_sub(START_SEGMENTS_FROM_EDGE);
        let start = *next.get_or_insert_with(|| {
            playlist
                .segments
                .get(edge)
                .map_or(playlist.media_sequence, |segment| segment.sequence)
        });
        for segment in playlist.segments.iter().filter(|s| s.sequence >= start) {
            if segment.gap {
                // EXT-X-GAP: no media to load.
                next = Some(segment.sequence.saturating_add(1));
                continue;
            }
            let mut body = client
                .get(base.join(&segment.uri)?)
                .send()
                .await?
                .error_for_status()?
                .bytes_stream();
            while let Some(chunk) = body.next().await {
                counters.add_bytes(chunk?.len());
            }
            // A segment starts with a keyframe, so a complete segment is a decodable frame.
            counters.first_frame();
            next = Some(segment.sequence.saturating_add(1));
        }
        if playlist.ended {
            counters.set_state(PlayerState::Ended);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(
            playlist.target_duration.saturating_mul(500),
        ))
        .await;
    }
}
