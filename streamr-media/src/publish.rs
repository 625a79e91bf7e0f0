//! Real-time FLV publishing: an FLV file is read once, then its audio and video tags are sent to
//! an RTMP server paced by their timestamps, optionally looped with timestamps that keep
//! increasing, so a live stream exists without an encoder. The demo publishes the shipped sample
//! with it and the load tool publishes any file.
//!
//! ```no_run
//! # async fn run() -> Result<(), streamr_media::publish::PublishError> {
//! use streamr_media::publish::{publish_flv, FlvSource, PublishOptions};
//! use streamr_media::rtmp::url::RtmpUrl;
//!
//! let source = FlvSource::read("samples/sample.flv".as_ref())?;
//! let url = RtmpUrl::parse("rtmp://127.0.0.1:1935/live/cam").expect("a valid URL");
//! let report = publish_flv(&source, &url, &PublishOptions::once()).await?;
//! println!("sent {} tags", report.tags_sent);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::amf0::Amf0Value;
use crate::client::{ClientError, RtmpClient};
use crate::flv::tag::{classify, MediaKind as FlvMediaKind};
use crate::flv::{FlvError, FlvReader, FlvTag, FlvTagType};
use crate::rtmp::session::MediaKind;
use crate::rtmp::url::RtmpUrl;

/// Frame interval assumed when a file has fewer than two video frames (25 fps).
const DEFAULT_FRAME_INTERVAL_MS: u64 = 40;

/// Why an FLV file could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid FLV file.
    #[error("parsing {what}: {source}")]
    Parse {
        /// The file (or "FLV bytes" when parsed from memory).
        what: String,
        /// The FLV error, with its byte offset.
        #[source]
        source: FlvError,
    },
    /// The file holds no audio or video tag.
    #[error("{what} has no audio or video tags")]
    NoMedia {
        /// The file (or "FLV bytes").
        what: String,
    },
    /// The RTMP connection failed or the server refused the publish.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// One audio or video tag to send: its offset from the start of a loop and whether it is a
/// codec sequence header (sent in the first loop only; the server keeps it for late viewers).
#[derive(Debug, Clone)]
struct TimedTag {
    offset_ms: u64,
    kind: MediaKind,
    sequence_header: bool,
    tag: FlvTag,
}

/// The audio and video tags of an FLV file, ready to be published in real time.
#[derive(Debug, Clone)]
pub struct FlvSource {
    tags: Vec<TimedTag>,
    loop_ms: u64,
    bytes: u64,
}

impl FlvSource {
    /// Reads and parses the FLV file at `path`.
    pub fn read(path: &Path) -> Result<Self, PublishError> {
        let bytes = std::fs::read(path).map_err(|source| PublishError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_named(&bytes, &path.display().to_string())
    }

    /// Parses FLV bytes held in memory (an embedded sample, for instance).
    pub fn parse(bytes: &[u8]) -> Result<Self, PublishError> {
        Self::parse_named(bytes, "FLV bytes")
    }

    fn parse_named(bytes: &[u8], what: &str) -> Result<Self, PublishError> {
        let (_header, tags) = FlvReader::read_all(bytes).map_err(|source| PublishError::Parse {
            what: what.to_owned(),
            source,
        })?;
        let media: Vec<(MediaKind, FlvTag)> = tags
            .into_iter()
            .filter_map(|tag| match tag.tag_type {
                FlvTagType::Audio => Some((MediaKind::Audio, tag)),
                FlvTagType::Video => Some((MediaKind::Video, tag)),
                _ => None,
            })
            .collect();
        let (Some(first_ts), Some(last_ts)) = (
            media.iter().map(|(_, t)| t.timestamp).min(),
            media.iter().map(|(_, t)| t.timestamp).max(),
        ) else {
            return Err(PublishError::NoMedia {
                what: what.to_owned(),
            });
        };
        let video: Vec<u32> = media
            .iter()
            .filter(|(kind, _)| *kind == MediaKind::Video)
            .map(|(_, t)| t.timestamp)
            .collect();
        let frame_interval = video
            .windows(2)
            .filter_map(|pair| match pair {
                [a, b] if b > a => Some(u64::from(b - a)),
                _ => None,
            })
            .min()
            .unwrap_or(DEFAULT_FRAME_INTERVAL_MS);
        // One frame interval past the last tag, so the next loop neither repeats a timestamp nor
        // leaves a gap in the frame cadence.
        let loop_ms = u64::from(last_ts - first_ts) + frame_interval;
        let mut total = 0u64;
        let tags = media
            .into_iter()
            .map(|(kind, tag)| {
                total = total.saturating_add(tag.data.len() as u64);
                let flv_kind = match kind {
                    MediaKind::Audio => FlvMediaKind::Audio,
                    _ => FlvMediaKind::Video,
                };
                let sequence_header = classify(flv_kind, &tag.data)
                    .map(|info| info.is_sequence_header())
                    .unwrap_or(false);
                TimedTag {
                    offset_ms: u64::from(tag.timestamp - first_ts),
                    kind,
                    sequence_header,
                    tag,
                }
            })
            .collect();
        Ok(FlvSource {
            tags,
            loop_ms,
            bytes: total,
        })
    }

    /// How long one pass over the file lasts.
    pub fn loop_duration(&self) -> Duration {
        Duration::from_millis(self.loop_ms)
    }

    /// Audio and video tags in one pass.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Audio and video payload bytes in one pass.
    pub fn media_bytes(&self) -> u64 {
        self.bytes
    }

    /// Average media bitrate of one pass, in bits per second.
    pub fn bitrate_bps(&self) -> u64 {
        self.bytes.saturating_mul(8_000) / self.loop_ms.max(1)
    }
}

/// How [`publish_flv`] publishes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Start again from the beginning after the last tag, until stopped.
    pub looped: bool,
    /// Sent as `@setDataFrame("onMetaData", ..)` before the first frame.
    pub metadata: Option<Amf0Value>,
    /// A metadata field set to the wall-clock time (Unix milliseconds) at which stream
    /// timestamp 0 was due, so players can measure end-to-end latency.
    pub start_time_field: Option<String>,
    /// Cancelling it ends the publish politely after the tag being sent.
    pub stop: Option<CancellationToken>,
}

impl PublishOptions {
    /// Publish the file once.
    pub fn once() -> Self {
        Self::default()
    }

    /// Publish the file in a loop until `stop` is cancelled or the connection fails.
    pub fn looped(stop: CancellationToken) -> Self {
        PublishOptions {
            looped: true,
            stop: Some(stop),
            ..Self::default()
        }
    }

    /// Sends `metadata` before the first frame.
    pub fn with_metadata(mut self, metadata: Amf0Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Announces the wall-clock start time in metadata field `field`.
    pub fn with_start_time_field(mut self, field: impl Into<String>) -> Self {
        self.start_time_field = Some(field.into());
        self
    }
}

/// The metadata to send first: the caller's, with the start time field added when asked for.
fn start_metadata(options: &PublishOptions) -> Option<Amf0Value> {
    let Some(field) = &options.start_time_field else {
        return options.metadata.clone();
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1_000.0);
    let mut entries = match options.metadata.clone() {
        Some(Amf0Value::EcmaArray(entries)) | Some(Amf0Value::Object(entries)) => entries,
        _ => Vec::new(),
    };
    entries.push((field.clone(), Amf0Value::Number(now_ms)));
    Some(Amf0Value::EcmaArray(entries))
}

/// What a finished publish sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReport {
    /// Complete passes over the file.
    pub loops_completed: u64,
    /// Audio and video tags sent.
    pub tags_sent: u64,
    /// Audio and video payload bytes sent.
    pub media_bytes_sent: u64,
}

/// Publishes `source` to `url` in real time: each tag is sent when its timestamp is due, and in a
/// loop each pass continues the timeline of the previous one. Returns when the file has been
/// sent once (not looped), or when `options.stop` is cancelled.
pub async fn publish_flv(
    source: &FlvSource,
    url: &RtmpUrl,
    options: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    let mut client = RtmpClient::publish(url).await?;
    let started = Instant::now();
    if let Some(metadata) = start_metadata(options) {
        client.send_metadata(metadata).await?;
    }
    tracing::info!(%url, tags = source.tags.len(), loop_ms = source.loop_ms, "publishing FLV");
    let stop = options.stop.clone().unwrap_or_default();
    let mut report = PublishReport {
        loops_completed: 0,
        tags_sent: 0,
        media_bytes_sent: 0,
    };
    'passes: loop {
        let base = report.loops_completed.saturating_mul(source.loop_ms);
        for timed in &source.tags {
            if timed.sequence_header && report.loops_completed > 0 {
                continue;
            }
            let offset_ms = base.saturating_add(timed.offset_ms);
            tokio::select! {
                _ = stop.cancelled() => break 'passes,
                _ = tokio::time::sleep_until(started + Duration::from_millis(offset_ms)) => {}
            }
            // RTMP timestamps wrap at 2^32 ms (49 days); the truncation is the protocol's.
            client
                .send_media(timed.kind, offset_ms as u32, timed.tag.data.clone())
                .await?;
            report.tags_sent += 1;
            report.media_bytes_sent = report
                .media_bytes_sent
                .saturating_add(timed.tag.data.len() as u64);
        }
        report.loops_completed += 1;
        if !options.looped || stop.is_cancelled() {
            break;
        }
    }
    client.close().await?;
    Ok(report)
}
