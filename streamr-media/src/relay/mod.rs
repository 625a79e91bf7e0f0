//! Relay fan-out: one publisher per stream key, many viewers, shared frames, GOP cache, slow-viewer policy.
//!
//! A [`RelayHub`] holds the streams. A [`Publisher`] appends each received message once as a
//! reference-counted [`Frame`]; every [`Subscription`] reads the same frames at its own pace:
//!
//! - **GOP cache**: a new viewer of a live stream starts with metadata, sequence headers and the
//!   current GOP from its keyframe, so playback starts at once on a decodable picture.
//! - **Bounded lag**: a viewer that falls further behind than [`RelayConfig::viewer_max_lag_bytes`]
//!   or [`RelayConfig::viewer_max_lag`] skips to a keyframe (sequence headers are resent) and the
//!   skipped frames and bytes are counted. The publisher and other viewers never wait for it.
//!   The budget counts lag the viewer builds up: the age of the cached GOP it starts with (a GOP
//!   may be longer than the budget), or of the upstream's cached GOP a relay's pull delivers
//!   after the viewer asked, is allowed on top, down to the least lag it has read at.
//! - **Republish**: when the publisher leaves, viewers get [`RelayEvent::PublisherEnded`] and stay
//!   subscribed; a new publisher on the same key resumes them with its own sequence headers.
//! - **Timed data**: data messages other than `onMetaData` (captions, cue points:
//!   [`FrameKind::Data`]) go to the viewers live, in order with the media; they are not kept for
//!   viewers joining later, who get those relayed since their keyframe.
//! - **Chunk once**: [`Frame::chunked`] caches the RTMP wire form per chunk size, shared by every
//!   connection that uses it.
//!
//! The hub does no I/O; the tokio server in [`crate::server`] and the HTTP layer drive it.

mod adaptive;
mod flush;
pub(crate) mod frame;
mod hub;
#[cfg(feature = "server")]
pub(crate) mod run;
mod stats;
mod stream;
pub(crate) mod subscription;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream_tests;

use std::time::Duration;

pub use adaptive::{AdaptiveBatch, AdaptiveBatchConfig};
pub use frame::{
    is_node_notice, is_upstream_unpublished, timed_data, ChunkingKey, Frame, FrameKind,
    NODE_NOTICE_PREFIX, UPSTREAM_UNPUBLISHED_NOTICE,
};
pub use hub::{Publisher, RelayError, RelayHub, StreamKey};
pub use stats::{StreamStats, ViewerStats};
pub use stream::{Timeline, UpstreamGap};
pub use subscription::{RelayEvent, Subscription};

/// Limits and policies of a [`RelayHub`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Keep the current GOP so new viewers start at once on its keyframe (default on).
    pub gop_cache: bool,
    /// A GOP larger than this is not cached; new viewers then wait for the next keyframe.
    pub gop_cache_max_bytes: u64,
    /// A viewer further behind the newest frame than this many payload bytes skips ahead (on
    /// top of the lag of the cached GOP it started with, until it has caught up on it).
    pub viewer_max_lag_bytes: u64,
    /// A viewer further behind the newest frame than this media duration skips ahead (on top
    /// of the age of the cached GOP it started with, until it has caught up on it).
    pub viewer_max_lag: Duration,
    /// Upper bound on frames kept per stream, whatever their size.
    pub ring_max_entries: usize,
    /// Most streams the hub relays at once.
    pub max_streams: usize,
    /// Most viewers per stream.
    pub max_viewers_per_stream: usize,
    /// How [`Publisher::send_batched`] batches wake-ups of the viewers.
    pub batch: BatchPolicy,
}

/// How long a publisher holds frames before waking its viewers for them
/// ([`Publisher::send_batched`]).
///
/// Every wake-up costs each viewer a task wake-up and a socket write, whose kernel cost (TCP
/// transmit, and on loopback the receiver's processing too) dominates a relay's CPU time. Waking
/// viewers once per batch of frames instead of once per frame divides that cost by the frames per
/// batch, for at most `delay` more latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchPolicy {
    /// A batch holding a video frame or metadata (any frame, for a stream without video) goes
    /// out once its oldest frame waited this long (default 50 ms; zero: at once, so viewers are
    /// woken about once per video frame).
    pub delay: Duration,
    /// Longest any frame is held, whatever follows (default 50 ms: the relay's latency cap), for
    /// example audio while video pauses.
    pub max_delay: Duration,
    /// Wake the viewers in staggered groups (default off): each group once per `delay` on a grid
    /// of its own phase, instead of every viewer when the batch's oldest frame waited `delay`.
    /// Each viewer then gets one write per `delay` whatever the frame pattern, a frame still
    /// waits at most `delay`, and the node's writes (and its players' reads) are spread over the
    /// interval instead of coming in one burst per batch. One group per 25 ms of delay, at most
    /// eight, and with load-adaptive batching
    /// ([`RelayHub::apply_write_rate`]) at most one per 250
    /// viewers of the stream: each group's wake-up costs the node some thread wake-ups.
    pub stagger: bool,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(50),
            stagger: false,
        }
    }
}

impl BatchPolicy {
    /// Holds a batch until its oldest frame waited `delay`, and any frame at most `max_delay`.
    pub fn new(delay: Duration, max_delay: Duration) -> Self {
        BatchPolicy {
            delay,
            max_delay,
            stagger: false,
        }
    }

    /// Wakes the viewers in staggered groups (see [`BatchPolicy::stagger`]).
    pub fn with_stagger(mut self, stagger: bool) -> Self {
        self.stagger = stagger;
        self
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            gop_cache: true,
            gop_cache_max_bytes: 32 * 1024 * 1024,
            viewer_max_lag_bytes: 16 * 1024 * 1024,
            viewer_max_lag: Duration::from_secs(10),
            ring_max_entries: 65_536,
            max_streams: 4096,
            max_viewers_per_stream: 100_000,
            batch: BatchPolicy::default(),
        }
    }
}

impl RelayConfig {
    /// Turns the GOP cache on or off.
    pub fn with_gop_cache(mut self, on: bool) -> Self {
        self.gop_cache = on;
        self
    }

    /// Sets how publishers batch wake-ups of their viewers.
    pub fn with_batch(mut self, batch: BatchPolicy) -> Self {
        self.batch = batch;
        self
    }

    /// Sets the viewer lag budget in payload bytes and media duration.
    pub fn with_viewer_max_lag(mut self, bytes: u64, duration: Duration) -> Self {
        self.viewer_max_lag_bytes = bytes;
        self.viewer_max_lag = duration;
        self
    }
}
