//! Real-time FLV publisher: reads a file once, then sends its tags paced by their timestamps,
//! looping with timestamps that keep increasing, so no encoder is needed for a load test.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use streamr_media::amf0::Amf0Value;
use streamr_media::client::RtmpClient;
use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::rtmp::session::MediaKind;
use streamr_media::rtmp::url::RtmpUrl;
use tokio::time::Instant;

use crate::PUBLISH_EPOCH_FIELD;

/// Publishes `file` to `url` in real time; loops when `looped`.
pub async fn publish_file(file: &Path, url: &str, looped: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (_header, tags) =
        FlvReader::read_all(&bytes).with_context(|| format!("parsing {}", file.display()))?;
    let url = RtmpUrl::parse(url)?;
    let media: Vec<&FlvTag> = tags
        .iter()
        .filter(|tag| matches!(tag.tag_type, FlvTagType::Audio | FlvTagType::Video))
        .collect();
    anyhow::ensure!(
        !media.is_empty(),
        "{} has no audio or video tags",
        file.display()
    );
    let first_ts = media.iter().map(|t| t.timestamp).min().unwrap_or(0);
    let last_ts = media.iter().map(|t| t.timestamp).max().unwrap_or(0);
    // One frame interval past the last tag, so the next loop does not repeat a timestamp.
    let loop_length = u64::from(last_ts - first_ts) + 40;

    let mut client = RtmpClient::publish(&url).await?;
    let started = Instant::now();
    client
        .send_metadata(Amf0Value::EcmaArray(vec![(
            PUBLISH_EPOCH_FIELD.into(),
            Amf0Value::Number(crate::unix_ms()),
        )]))
        .await?;
    tracing::info!(%url, tags = media.len(), loop_ms = loop_length, "publishing");

    let mut loop_index: u64 = 0;
    loop {
        for tag in &media {
            let offset_ms = loop_index * loop_length + u64::from(tag.timestamp - first_ts);
            tokio::time::sleep_until(started + Duration::from_millis(offset_ms)).await;
            let kind = match tag.tag_type {
                FlvTagType::Audio => MediaKind::Audio,
                _ => MediaKind::Video,
            };
            // RTMP timestamps wrap at 2^32 ms (49 days); the truncation is the protocol's.
            client
                .send_media(kind, offset_ms as u32, tag.data.clone())
                .await?;
        }
        if !looped {
            break;
        }
        loop_index += 1;
    }
    client.close().await?;
    Ok(())
}
