//! The registry of relayed streams: one publisher per key, any number of viewers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use super::flush::{groups_for_viewers, FlushSchedule};
use super::frame::FrameKind;
use super::stats::StreamStats;
use super::stream::{lock, Stream, Timeline, UpstreamGap};
use super::subscription::{StartAt, Subscription};
use super::{AdaptiveBatchConfig, BatchPolicy, RelayConfig};
use crate::name::{AppName, NameError, StreamName};

/// Identifies a stream: the RTMP application and stream name (the stream key). Both parts are
/// validated names, so a key is safe to build file paths and URLs from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The application, e.g. `live` in `rtmp://host/live/abc`.
    pub app: AppName,
    /// The stream name, e.g. `abc`, without any `?query`.
    pub name: StreamName,
}

impl StreamKey {
    /// A key for `app` and stream `name`.
    pub fn new(app: AppName, name: StreamName) -> Self {
        StreamKey { app, name }
    }

    /// Checks `app` and `name` (see [`crate::name`]) into a key.
    pub fn parse(app: &str, name: &str) -> Result<Self, NameError> {
        Ok(StreamKey {
            app: AppName::parse(app)?,
            name: StreamName::parse(name)?,
        })
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// Why the hub refused a publisher or a viewer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Another publisher is already live on this key.
    #[error("stream {key} already has a publisher")]
    StreamBusy {
        /// The contested stream.
        key: StreamKey,
    },
    /// The hub relays as many streams as its configuration allows.
    #[error("stream {key} refused: the relay already carries its limit of {limit} streams")]
    TooManyStreams {
        /// The refused stream.
        key: StreamKey,
        /// The configured limit.
        limit: usize,
    },
    /// The stream has as many viewers as the configuration allows.
    #[error("viewer of {key} refused: the stream already has its limit of {limit} viewers")]
    TooManyViewers {
        /// The stream.
        key: StreamKey,
        /// The configured limit.
        limit: usize,
    },
}

/// Shared state behind every [`RelayHub`] clone.
#[derive(Debug)]
pub(crate) struct HubInner {
    config: RelayConfig,
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    /// The batch delay now, in microseconds: [`BatchPolicy::delay`] unless
    /// [`RelayHub::set_batch_delay`] changed it.
    batch_delay_micros: AtomicU64,
}

impl HubInner {
    /// Forgets `stream` when nobody publishes or watches it any more.
    pub(crate) fn forget_if_idle(&self, key: &StreamKey, stream: &Arc<Stream>) {
        let mut streams = lock(&self.streams);
        if stream.is_idle() && streams.get(key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(key);
        }
    }

    fn stream(&self, key: &StreamKey) -> Result<Arc<Stream>, RelayError> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.get(key) {
            return Ok(stream.clone());
        }
        if streams.len() >= self.config.max_streams {
            return Err(RelayError::TooManyStreams {
                key: key.clone(),
                limit: self.config.max_streams,
            });
        }
        let stream = Arc::new(Stream::new(self.config.clone()));
        streams.insert(key.clone(), stream.clone());
        Ok(stream)
    }
}

/// The relay hub: streams keyed by [`StreamKey`], each with at most one [`Publisher`] and any
/// number of [`Subscription`]s. Cheap to clone; clones share the same streams, so the RTMP server
/// and the HTTP layer serve the same frames.
///
/// ```
/// use bytes::Bytes;
/// use streamr_media::relay::{FrameKind, RelayEvent, RelayHub, StreamKey};
///
/// let hub = RelayHub::default();
/// let key = StreamKey::parse("live", "demo").unwrap();
/// let publisher = hub.publish(key.clone()).unwrap();
/// let mut viewer = hub.subscribe(key).unwrap();
///
/// // An AVC keyframe: the viewer starts here.
/// publisher.send(FrameKind::Video, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65]));
/// let mut events = Vec::new();
/// viewer.try_recv_batch(&mut events, 16);
/// assert!(matches!(&events[..], [RelayEvent::Frame(f)] if f.is_video_keyframe()));
/// ```
#[derive(Debug, Clone)]
pub struct RelayHub {
    inner: Arc<HubInner>,
}

impl Default for RelayHub {
    fn default() -> Self {
        RelayHub::new(RelayConfig::default())
    }
}

impl RelayHub {
    /// A hub with the given configuration.
    pub fn new(config: RelayConfig) -> Self {
        RelayHub {
            inner: Arc::new(HubInner {
                batch_delay_micros: AtomicU64::new(micros(config.batch.delay)),
                config,
                streams: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// Sets the batch delay of every publisher of this hub from now on (it starts at
    /// [`BatchPolicy::delay`]); [`BatchPolicy::max_delay`] still caps it. Load-adaptive batching
    /// ([`AdaptiveBatch`](super::AdaptiveBatch)) calls this with each new delay.
    pub fn set_batch_delay(&self, delay: Duration) {
        self.inner
            .batch_delay_micros
            .store(micros(delay), Ordering::Relaxed);
    }

    /// Sets each stream's write-rate batch delay from its viewers now
    /// ([`AdaptiveBatchConfig::write_rate_delays`] on a node of `cores` cores), so a stream
    /// with many viewers batches while a small one beside it does not, and the staggered
    /// groups its viewers are woken in (one per 250 viewers, see [`BatchPolicy::stagger`]).
    /// A stream's delay is at most the time it takes to bring
    /// [`AdaptiveBatchConfig::max_batch_bytes`] at its byte rate (measured between calls), so a
    /// high-bitrate stream is not held past the point where its batches stop saving CPU.
    /// A stream's publisher
    /// waits the longer of this and the hub's delay ([`RelayHub::set_batch_delay`]). Returns
    /// the longest of them (zero with the term off). Load-adaptive batching calls this with
    /// each load sample.
    pub fn apply_write_rate(&self, config: &AdaptiveBatchConfig, cores: f64) -> Duration {
        self.apply_write_rate_at(config, cores, Instant::now())
    }

    /// [`RelayHub::apply_write_rate`] with the streams' byte counts sampled at `now`: each
    /// stream's delay is also capped by its byte rate
    /// ([`AdaptiveBatchConfig::byte_rate_cap`], smoothed over samples a few seconds long).
    pub(crate) fn apply_write_rate_at(
        &self,
        config: &AdaptiveBatchConfig,
        cores: f64,
        now: Instant,
    ) -> Duration {
        let streams: Vec<_> = lock(&self.inner.streams).values().cloned().collect();
        let viewers: Vec<usize> = streams
            .iter()
            .map(|stream| lock(&stream.viewers).len())
            .collect();
        let mut delays = config.write_rate_delays(&viewers, cores);
        for ((stream, delay), viewers) in streams.iter().zip(&mut delays).zip(&viewers) {
            let rate = stream.byte_rate(now).unwrap_or(f64::NAN);
            *delay = (*delay).min(config.byte_rate_cap(rate));
            stream
                .write_delay_micros
                .store(micros(*delay), Ordering::Relaxed);
            stream
                .stagger_groups
                .store(groups_for_viewers(*viewers) as u64, Ordering::Relaxed);
        }
        delays.into_iter().max().unwrap_or_default()
    }

    /// The batch delay now (see [`RelayHub::set_batch_delay`]).
    pub fn batch_delay(&self) -> Duration {
        Duration::from_micros(self.inner.batch_delay_micros.load(Ordering::Relaxed))
    }

    /// Starts publishing `key`. Viewers already subscribed (waiting, or left by an earlier
    /// publisher) resume with this publisher's sequence headers and first keyframe.
    pub fn publish(&self, key: StreamKey) -> Result<Publisher, RelayError> {
        self.publish_with(key, Timeline::Own)
    }

    /// Starts publishing `key` like [`RelayHub::publish`], with timestamps that follow
    /// `timeline`: [`Timeline::Upstream`] for a pull continuing an upstream's stream.
    pub fn publish_with(
        &self,
        key: StreamKey,
        timeline: Timeline,
    ) -> Result<Publisher, RelayError> {
        let stream = self.inner.stream(&key)?;
        if !stream.begin_publish(timeline) {
            return Err(RelayError::StreamBusy { key });
        }
        Ok(Publisher {
            hub: self.inner.clone(),
            key,
            stream,
            batch: self.inner.config.batch,
            has_video: AtomicBool::new(false),
            held: FlushSchedule::new(Instant::now(), self.inner.config.batch.stagger),
        })
    }

    /// Subscribes a viewer to `key`, published or not yet. With the GOP cache on, a viewer of a
    /// live stream immediately gets metadata, sequence headers and the current GOP from its
    /// keyframe; otherwise it starts at the next keyframe. It gets no node notices
    /// ([`Frame::is_node_notice`](super::Frame::is_node_notice)) unless it is a relay that asked for them
    /// ([`Subscription::set_node_notices`]).
    pub fn subscribe(&self, key: StreamKey) -> Result<Subscription, RelayError> {
        self.subscribe_viewer(key, StartAt::CachedGop)
    }

    /// Subscribes a viewer that already has this stream's frames up to timestamp `at`: a relay
    /// whose upstream failed, reconnecting here to continue (see
    /// [`Publisher::resume_point`]). It starts at the newest keyframe (the newest frame of an
    /// audio-only stream) at or before `at` still held, so what it receives overlaps what it
    /// relayed, and the relay drops the overlap and goes on without losing a frame; when the
    /// ring no longer reaches back that far, at the cached GOP like any viewer.
    pub fn subscribe_resuming(&self, key: StreamKey, at: u32) -> Result<Subscription, RelayError> {
        self.subscribe_viewer(key, StartAt::ResumeAt(at))
    }

    fn subscribe_viewer(&self, key: StreamKey, start: StartAt) -> Result<Subscription, RelayError> {
        let stream = self.inner.stream(&key)?;
        let viewers = lock(&stream.viewers).len();
        if viewers >= self.inner.config.max_viewers_per_stream {
            self.inner.forget_if_idle(&key, &stream);
            return Err(RelayError::TooManyViewers {
                key,
                limit: self.inner.config.max_viewers_per_stream,
            });
        }
        Ok(Subscription::new(
            self.inner.clone(),
            key,
            stream,
            true,
            start,
        ))
    }

    /// Subscribes one of the node's own consumers (such as the live HLS segmenter) to `key`. It
    /// receives exactly what a viewer would, but it is not a viewer: it is left out of the
    /// stream's viewer stats, delivered bytes and viewer limit, so bandwidth claims and idle
    /// detection (an upstream pull stops when no viewer is left) see only real viewers. It keeps
    /// the stream known to the hub, so a republish reaches it.
    pub fn subscribe_internal(&self, key: StreamKey) -> Result<Subscription, RelayError> {
        self.subscribe_own(key, StartAt::CachedGop)
    }

    /// [`RelayHub::subscribe_internal`], starting at the oldest keyframe (any frame of an
    /// audio-only stream) of the current publish the ring still holds rather than at the cached
    /// GOP: a consumer started a moment after the publish (live HLS) gets it from its first
    /// keyframe, whether the GOP cache is off or the stream's newest keyframe came since.
    pub fn subscribe_internal_from_publish_start(
        &self,
        key: StreamKey,
    ) -> Result<Subscription, RelayError> {
        self.subscribe_own(key, StartAt::PublishStart)
    }

    fn subscribe_own(&self, key: StreamKey, start: StartAt) -> Result<Subscription, RelayError> {
        let stream = self.inner.stream(&key)?;
        Ok(Subscription::new(
            self.inner.clone(),
            key,
            stream,
            false,
            start,
        ))
    }

    /// Whether `key` has a live publisher.
    pub fn is_publishing(&self, key: &StreamKey) -> bool {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.is_some_and(|stream| lock(&stream.state).publishing)
    }

    /// Relays a data message of this node's own on `key` beside its publisher's frames, at the
    /// newest timestamp relayed: the HLS timing the node chose for the stream
    /// ([`HlsTiming`](crate::hls::HlsTiming)), which subscribers that join later get before
    /// their first frame too (kept beside `onMetaData`, until the next publish). It is a node
    /// notice ([`Frame::is_node_notice`](super::Frame::is_node_notice)): only the node's own consumers and relays that asked
    /// for notices get it, never players. False when nobody publishes `key`.
    pub fn announce(&self, key: &StreamKey, payload: Bytes) -> bool {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.is_some_and(|stream| stream.announce(payload))
    }

    /// The timeline of `key`'s current publisher, when it has one: [`Timeline::Upstream`] on a
    /// relay pulling the stream, whose consumers join it mid-stream.
    pub fn publisher_timeline(&self, key: &StreamKey) -> Option<Timeline> {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.and_then(|stream| stream.publisher_timeline())
    }

    /// The newest rejoin of `key`'s pull (a [`Timeline::Upstream`] publisher failing over or
    /// reconnecting) whose new upstream replayed nothing at or before what was relayed, so
    /// frames between may be lost (see [`UpstreamGap`]). Recorded before the first frame after
    /// it is relayed.
    pub fn last_upstream_gap(&self, key: &StreamKey) -> Option<UpstreamGap> {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.and_then(|stream| stream.last_upstream_gap())
    }

    /// Viewers of every stream now (the node's own consumers, such as live HLS, not counted).
    pub fn viewer_count(&self) -> usize {
        let streams: Vec<_> = lock(&self.inner.streams).values().cloned().collect();
        streams
            .iter()
            .map(|stream| lock(&stream.viewers).len())
            .sum()
    }

    /// Counters of one stream, if the hub knows it.
    pub fn stream_stats(&self, key: &StreamKey) -> Option<StreamStats> {
        let stream = lock(&self.inner.streams).get(key).cloned()?;
        Some(stream.stats(key.clone()))
    }

    /// Counters of every stream the hub knows, sorted by key.
    pub fn all_stats(&self) -> Vec<StreamStats> {
        let streams: Vec<_> = lock(&self.inner.streams)
            .iter()
            .map(|(key, stream)| (key.clone(), stream.clone()))
            .collect();
        let mut stats: Vec<_> = streams
            .into_iter()
            .map(|(key, stream)| stream.stats(key))
            .collect();
        stats.sort_by(|a, b| a.key.cmp(&b.key));
        stats
    }
}

/// The publishing side of a stream. Dropping it ends the publish and tells the viewers.
#[derive(Debug)]
pub struct Publisher {
    hub: Arc<HubInner>,
    key: StreamKey,
    stream: Arc<Stream>,
    batch: BatchPolicy,
    /// Whether the stream carried video, so audio may wait for the next video frame.
    has_video: AtomicBool,
    /// Frames appended by [`Publisher::send_batched`] that each wake-up group of viewers was
    /// not woken for yet, and when each group is due.
    held: FlushSchedule,
}

impl Publisher {
    /// The published stream.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Relays one audio, video, metadata or timed data message (`timestamp` in milliseconds).
    /// The payload is shared with every viewer, never copied. Metadata is the AMF0 `onMetaData`
    /// data without the `@setDataFrame` prefix; timed data ([`FrameKind::Data`]) any other data
    /// message as [`timed_data`](super::timed_data) gives it (a node notice sent as timed data
    /// is dropped).
    pub fn send(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        self.note_kind(kind);
        self.stream.push(kind, timestamp, payload);
    }

    /// Relays one message like [`Publisher::send`] without waking the viewers yet: they see it
    /// at the next [`Publisher::notify`] (or `send`, or the end of the publish). Waking every
    /// viewer once for several frames saves a task wake-up and a socket write per viewer for each
    /// frame held back.
    pub fn append(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        self.note_kind(kind);
        self.stream.append(kind, timestamp, payload);
    }

    fn note_kind(&self, kind: FrameKind) {
        if kind == FrameKind::Video {
            self.has_video.store(true, Ordering::Relaxed);
        }
    }

    /// Wakes the viewers to every message appended so far.
    pub fn notify(&self) {
        self.stream.notify();
    }

    /// Relays one message received at `now`, waking the viewers once per batch of messages as
    /// the hub's [`BatchPolicy`] says rather than once per message: the batch goes out once it
    /// holds a video frame or metadata (any message, for a stream without video) and its oldest
    /// message waited the batch delay (the hub's, or the stream's write-rate delay when longer:
    /// [`RelayHub::apply_write_rate`]), and in any case once that one waited
    /// [`BatchPolicy::max_delay`]. Audio between video frames rides along with the next video
    /// frame. With [`BatchPolicy::stagger`], the viewers are woken in groups instead, each on a
    /// grid of its own phase, once per delay (see that field). The caller calls
    /// [`Publisher::flush_if_due`] after each message (or each read of several) and when
    /// [`Publisher::flush_deadline`] passes.
    pub fn send_batched(&mut self, kind: FrameKind, timestamp: u32, payload: Bytes, now: Instant) {
        self.append(kind, timestamp, payload);
        let closing = kind != FrameKind::Audio || !self.has_video.load(Ordering::Relaxed);
        self.held.hold(now, closing);
    }

    /// The batch delay in force for this stream: the hub's, or the stream's write-rate delay
    /// when longer.
    fn delay(&self) -> Duration {
        Duration::from_micros(
            self.hub
                .batch_delay_micros
                .load(Ordering::Relaxed)
                .max(self.stream.write_delay_micros.load(Ordering::Relaxed)),
        )
    }

    /// When the messages held by [`Publisher::send_batched`] are due to go to (a group of) the
    /// viewers, if any are held.
    pub fn flush_deadline(&self) -> Option<Instant> {
        if !self.held.is_holding() {
            return None;
        }
        let mut held = self.held.clone();
        held.set_max_groups(self.stagger_groups());
        held.deadline(self.delay(), self.batch.max_delay)
    }

    /// Most staggered groups the stream's viewers are woken in now.
    fn stagger_groups(&self) -> usize {
        let groups = self.stream.stagger_groups.load(Ordering::Relaxed);
        usize::try_from(groups).unwrap_or(usize::MAX)
    }

    /// Wakes the viewers whose held messages are due at `now`.
    pub fn flush_if_due(&mut self, now: Instant) {
        if self.held.is_holding() {
            let groups = self.stagger_groups();
            self.held.set_max_groups(groups);
            let due = self.held.take_due(now, self.delay(), self.batch.max_delay);
            self.stream.notify_groups(due);
        }
    }

    /// Wakes the viewers to every held message now.
    pub fn flush(&mut self) {
        let holding = self.held.take_all();
        self.stream.notify_groups(holding);
    }

    /// Ends a [`Timeline::Upstream`] publish because the upstream's publisher left (its stream
    /// ended there), not because the pull was lost: after the last frame, the node's own
    /// consumers and relays pulling from here are told so by
    /// [`UPSTREAM_UNPUBLISHED_NOTICE`](super::UPSTREAM_UNPUBLISHED_NOTICE), and live HLS ends
    /// its open segment and part where the upstream's did. Dropping a publisher ends a publish
    /// without it (a pull lost: what was open continues when the pull resumes).
    pub fn end_upstream_publish(mut self) {
        self.flush();
        self.stream
            .announce(super::frame::upstream_unpublished_notice());
    }

    /// Announces that a [`Timeline::Upstream`] publisher reconnected to an upstream of the same
    /// stream: the frames it replays that were already relayed are dropped, and viewers continue
    /// without seeing the publisher leave.
    pub fn rejoin_upstream(&self) {
        self.stream.rejoin();
    }

    /// Where a [`Timeline::Upstream`] publisher asks its next upstream to resume after a
    /// failover: the timestamp of the newest frame relayed on the track viewers start on (video
    /// when there is video), on the upstream's timeline, which the next upstream passes to
    /// [`RelayHub::subscribe_resuming`]. `None` for a local publisher or before any frame.
    pub fn resume_point(&self) -> Option<u32> {
        self.stream.resume_point()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stream.end_publish();
        self.hub.forget_if_idle(&self.key, &self.stream);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
