//! Real-time FLV publisher for load tests: `streamr_media::publish` announcing the publish
//! start time in the metadata field the players measure latency against.

use std::path::Path;

use anyhow::Context;
use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
use streamr_media::rtmp::url::RtmpUrl;

use crate::PUBLISH_EPOCH_FIELD;

/// Publishes `file` to `url` in real time; loops when `looped`.
pub async fn publish_file(file: &Path, url: &str, looped: bool) -> anyhow::Result<()> {
    let source = FlvSource::read(file)?;
    let url = RtmpUrl::parse(url).with_context(|| format!("publish URL {url}"))?;
    let mut options = PublishOptions::once().with_start_time_field(PUBLISH_EPOCH_FIELD);
    options.looped = looped;
    publish_flv(&source, &url, &options).await?;
    Ok(())
}
