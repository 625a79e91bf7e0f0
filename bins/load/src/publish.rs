//! Real-time FLV publisher for load tests: sends an FLV file's audio and video paced by their
//! timestamps, looped with timestamps that keep increasing. It announces the publish start time
//! in the metadata field the players measure latency against, and stamps every coded video frame
//! with its send time ([`crate::stamp`]) so latency can be read through servers that rebase
//! timestamps.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use streamr_media::flv::{FlvReader, FlvTagType};
use streamr_media::rtmp::session::MediaKind;
use streamr_media::rtmp::url::RtmpUrl;
use streamr_media::{Amf0Value, RtmpClient};
use tokio::time::Instant;

use crate::stamp::stamp_video;
use crate::PUBLISH_EPOCH_FIELD;

/// Whether an FLV audio or video body is decoder configuration (sent once, not per loop).
fn is_sequence_header(kind: MediaKind, body: &[u8]) -> bool {
    match kind {
        // AVC or HEVC (codec 7 or 12) with packet type 0.
        MediaKind::Video => {
            matches!(body.first().map(|b| b & 0x0f), Some(7 | 12)) && body.get(1) == Some(&0)
        }
        // AAC (sound format 10) with packet type 0.
        _ => body.first().map(|b| b >> 4) == Some(10) && body.get(1) == Some(&0),
    }
}

/// Publishes `file` to `url` in real time; loops when `looped`.
pub async fn publish_file(file: &Path, url: &str, looped: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (_header, tags) = FlvReader::read_all(&bytes).context("parsing the FLV file")?;
    let media: Vec<(MediaKind, u32, bytes::Bytes)> = tags
        .into_iter()
        .filter_map(|tag| match tag.tag_type {
            FlvTagType::Audio => Some((MediaKind::Audio, tag.timestamp, tag.data)),
            FlvTagType::Video => Some((MediaKind::Video, tag.timestamp, tag.data)),
            _ => None,
        })
        .collect();
    anyhow::ensure!(
        !media.is_empty(),
        "{} has no audio or video",
        file.display()
    );
    let first = media.iter().map(|m| m.1).min().unwrap_or(0);
    let last = media.iter().map(|m| m.1).max().unwrap_or(0);
    // One frame interval past the last tag, so a loop does not repeat a timestamp.
    let loop_ms = u64::from(last - first) + 33;
    let url = RtmpUrl::parse(url).with_context(|| format!("publish URL {url}"))?;
    let mut client = RtmpClient::publish(&url).await?;
    let started = Instant::now();
    client
        .send_metadata(Amf0Value::EcmaArray(vec![(
            PUBLISH_EPOCH_FIELD.to_owned(),
            Amf0Value::Number(crate::unix_ms()),
        )]))
        .await?;
    let mut pass = 0u64;
    loop {
        let base = pass.saturating_mul(loop_ms);
        for (kind, timestamp, body) in &media {
            if pass > 0 && is_sequence_header(*kind, body) {
                continue;
            }
            let offset = base + u64::from(timestamp - first);
            tokio::time::sleep_until(started + Duration::from_millis(offset)).await;
            let payload = match kind {
                MediaKind::Video => stamp_video(body, (crate::unix_ms() * 1000.0) as u64),
                _ => body.clone(),
            };
            // RTMP timestamps wrap at 2^32 ms; the truncation is the protocol's.
            client.send_media(*kind, offset as u32, payload).await?;
        }
        pass += 1;
        if !looped {
            break;
        }
    }
    client.close().await?;
    Ok(())
}
