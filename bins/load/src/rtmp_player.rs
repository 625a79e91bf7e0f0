//! RTMP player: handshake, connect, play; counts bytes, the first keyframe and hop latency.

use std::sync::Arc;

use streamr_media::client::RtmpClient;
use streamr_media::flv::tag::classify_video;
use streamr_media::rtmp::session::{ClientEvent, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;

use crate::stamp::read_stamp;
use crate::stats::{PlayerCounters, PlayerState};
use crate::PUBLISH_EPOCH_FIELD;

/// Plays `url` until the server closes the connection.
pub async fn play(url: String, counters: Arc<PlayerCounters>) -> anyhow::Result<()> {
    let url = RtmpUrl::parse(&url)?;
    let mut client = RtmpClient::play(&url).await?;
    counters.set_state(PlayerState::Playing);
    // Wall-clock time (ms since the Unix epoch) of the publisher's timestamp 0, when the
    // publisher announced it in its metadata.
    let mut publish_epoch_ms: Option<f64> = None;
    // A server with a GOP cache starts a player with frames of the current GOP from the past;
    // hop latency counts from the next keyframe on, when the player is live.
    let mut keyframes = 0u32;
    let mut counted = 0;
    while let Some(event) = client.next_event().await? {
        let received = client.bytes_received();
        counters.add_bytes((received - counted) as usize);
        counted = received;
        match event {
            ClientEvent::Metadata { metadata, .. } => {
                publish_epoch_ms = metadata
                    .property(PUBLISH_EPOCH_FIELD)
                    .and_then(|value| value.as_number());
            }
            ClientEvent::Media {
                kind: MediaKind::Video,
                timestamp,
                payload,
            } => {
                let Ok(info) = classify_video(&payload) else {
                    continue;
                };
                if !info.is_coded_frame() {
                    continue;
                }
                if counters.has_first_frame() {
                    counters.video_frame();
                }
                if info.is_keyframe {
                    keyframes = keyframes.saturating_add(1);
                    if !counters.has_first_frame() {
                        counters.first_frame();
                    }
                }
                if keyframes < 2 {
                    continue;
                }
                // The frame's own stamp survives servers that rebase timestamps; without one,
                // the publish start time plus the timestamp.
                if let Some(stamp) = read_stamp(&payload) {
                    counters.add_latency_sample(crate::unix_ms() - stamp as f64 / 1000.0);
                } else if let Some(epoch) = publish_epoch_ms {
                    counters.add_latency_sample(crate::unix_ms() - (epoch + f64::from(timestamp)));
                }
            }
            _ => {}
        }
    }
    counters.set_state(PlayerState::Ended);
    Ok(())
}
