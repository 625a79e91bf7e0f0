//! RTMP player: handshake, connect, play; counts bytes, the first keyframe and hop latency.

use std::sync::Arc;

use streamr_media::flv::tag::{classify_video, TagInfo};
use streamr_media::rtmp::session::{ClientEvent, ClientRole, MediaKind};
use streamr_media::rtmp::url::RtmpUrl;

use crate::rtmp_client::RtmpConnection;
use crate::stats::{PlayerCounters, PlayerState};
use crate::PUBLISH_EPOCH_FIELD;

/// What a player tracks of the stream it receives.
#[derive(Default)]
struct PlayerView {
    /// Wall-clock time (ms since the Unix epoch) of the publisher's timestamp 0, when the
    /// publisher announced it in its metadata.
    publish_epoch_ms: Option<f64>,
}

impl PlayerView {
    fn on_event(&mut self, event: ClientEvent, counters: &PlayerCounters) {
        match event {
            ClientEvent::Metadata { metadata, .. } => {
                self.publish_epoch_ms = metadata
                    .property(PUBLISH_EPOCH_FIELD)
                    .and_then(|value| value.as_number());
            }
            ClientEvent::Media {
                kind: MediaKind::Video,
                timestamp,
                payload,
            } => {
                let info: Option<TagInfo> = classify_video(&payload).ok();
                if info.is_some_and(|info| info.is_coded_frame()) {
                    if !counters.has_first_frame() && info.is_some_and(|info| info.is_keyframe) {
                        counters.first_frame();
                    }
                    if let Some(epoch) = self.publish_epoch_ms {
                        let sent_at = epoch + f64::from(timestamp);
                        counters.add_latency_sample(crate::unix_ms() - sent_at);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Plays `url` until the server closes the connection.
pub async fn play(url: String, counters: Arc<PlayerCounters>) -> anyhow::Result<()> {
    let url = RtmpUrl::parse(&url)?;
    let mut view = PlayerView::default();
    let mut connection = RtmpConnection::open(&url, ClientRole::Play, |event| {
        view.on_event(event, &counters)
    })
    .await?;
    counters.set_state(PlayerState::Playing);
    loop {
        let n = connection.read_some().await?;
        if n == 0 {
            break;
        }
        counters.add_bytes(n);
        while let Some(event) = connection.session.poll_event() {
            view.on_event(event, &counters);
        }
        connection.flush().await?;
    }
    counters.set_state(PlayerState::Ended);
    Ok(())
}
