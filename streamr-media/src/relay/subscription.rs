//! A viewer's subscription: its cursor into the stream's shared ring and the slow-viewer policy.

use std::sync::Arc;

use tokio::sync::watch;

use super::frame::{Frame, FrameKind};
use super::hub::HubInner;
#[cfg(feature = "server")]
use super::run::FrameRun;
use super::stats::{ViewerCounters, ViewerStats};
use super::stream::{is_after, lock, Entry, Slot, Stream, StreamState, COUNTER};
use super::StreamKey;

/// Most shared RTMP stores one stream keeps (one per chunk size and message stream id; players
/// of our own and common clients share one).
#[cfg(feature = "server")]
pub(crate) const MAX_RTMP_STORES_PER_STREAM: usize = 2;

/// What [`Subscription::recv_shared`] received.
#[cfg(feature = "server")]
#[derive(Debug)]
pub(crate) enum Received {
    /// This many events were appended (none: the stream is gone).
    Events(usize),
    /// A run of frames shared with the viewers that stood at the same place.
    Run(Arc<FrameRun>),
}

/// What a viewer receives, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RelayEvent {
    /// A frame to send. After a start, a restart or a drop the viewer first gets the current
    /// metadata and sequence headers, then a keyframe.
    Frame(Arc<Frame>),
    /// A publisher started (or restarted) the stream; frames follow, starting with decoder
    /// configuration and a keyframe. Not sent for a publisher that was live when subscribing.
    PublisherStarted,
    /// The publisher left. The subscription stays valid: a republish on the same key resumes it
    /// with [`RelayEvent::PublisherStarted`].
    PublisherEnded,
}

/// Where the viewer is relative to the decodable stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Receiving every frame.
    Live,
    /// Waiting for a sync point; frames passed meanwhile count as drops when `after_lag`.
    AwaitSync { after_lag: bool },
}

/// One viewer of a stream, created by [`RelayHub::subscribe`](super::RelayHub::subscribe).
///
/// The viewer pulls at its own pace. Frames are shared `Arc<Frame>`s; nothing is copied per
/// viewer. A viewer that falls further behind than the configured budget skips to a keyframe
/// (whole GOP tails only) and the skipped frames and bytes are counted. Dropping the subscription
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<HubInner>,
    key: StreamKey,
    stream: Arc<Stream>,
    id: u64,
    counters: Arc<ViewerCounters>,
    head: watch::Receiver<u64>,
    cursor: u64,
    pos_frames: u64,
    pos_bytes: u64,
    /// Lag this viewer was handed rather than built up: how far its start (the cached GOP, a
    /// resume point) lay behind the newest frame when it subscribed, or the upstream's cached
    /// GOP it started on when a pull delivered that later, lowered to the least lag it has read
    /// at since. The lag budget applies on top of it, so a viewer joining a GOP older
    /// than the budget is not skipped for that GOP's age.
    handed_lag: Lag,
    phase: Phase,
    generation: u64,
    live: bool,
    /// Whether this is a viewer (counted in the stream's stats and viewer limit) rather than one
    /// of the node's own consumers.
    metered: bool,
    /// Whether node notices ([`Frame::is_node_notice`]) reach this subscriber.
    node_notices: bool,
}

/// How far behind the newest frame a viewer reads: payload bytes and milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lag {
    bytes: u64,
    millis: u32,
}

impl Lag {
    /// The lag of `entry` in `state`.
    fn of(state: &StreamState, entry: &Entry) -> Self {
        let (bytes, millis) = state.lag_of(entry);
        Lag { bytes, millis }
    }

    /// The smaller of both measures.
    fn min(self, other: Lag) -> Self {
        Lag {
            bytes: self.bytes.min(other.bytes),
            millis: self.millis.min(other.millis),
        }
    }

    /// The larger of both measures.
    fn max(self, other: Lag) -> Self {
        Lag {
            bytes: self.bytes.max(other.bytes),
            millis: self.millis.max(other.millis),
        }
    }
}

/// Totals gathered during one batch, added to the shared counters once per batch.
#[derive(Debug, Default)]
struct BatchCounts {
    /// Events appended.
    events: usize,
    frames_out: u64,
    bytes_out: u64,
    frames_dropped: u64,
    bytes_dropped: u64,
}

/// Where a new subscription starts; wherever the ring does not reach, at the cached GOP, or
/// else at the next keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// The cached GOP.
    CachedGop,
    /// The newest sync point at or before this timestamp (see
    /// [`RelayHub::subscribe_resuming`](super::RelayHub::subscribe_resuming)).
    ResumeAt(u32),
    /// The oldest sync point of the current publish (see
    /// [`RelayHub::subscribe_internal_from_publish_start`](super::RelayHub::subscribe_internal_from_publish_start)).
    PublishStart,
}

impl Subscription {
    /// A subscription starting at `start`.
    pub(crate) fn new(
        hub: Arc<HubInner>,
        key: StreamKey,
        stream: Arc<Stream>,
        metered: bool,
        start: StartAt,
    ) -> Self {
        let id = stream.next_viewer_id.fetch_add(1, COUNTER);
        let counters = Arc::new(ViewerCounters::default());
        if metered {
            lock(&stream.viewers).insert(id, counters.clone());
        } else {
            stream.internal_subscribers.fetch_add(1, COUNTER);
        }
        let head = stream.heads[super::flush::group_of(id)].subscribe();
        let mut state = lock(&stream.state);
        // Start at the cached GOP when there is one, otherwise at the next keyframe.
        let start = match start {
            StartAt::CachedGop => None,
            StartAt::ResumeAt(at) => sync_at_or_before(&state, at),
            StartAt::PublishStart => first_sync_of_publish(&state),
        }
        .or(state.latest_sync);
        let (cursor, pos_frames, pos_bytes, handed_lag) =
            match start.and_then(|seq| state.get(seq).map(|entry| (seq, entry))) {
                Some((seq, entry)) if state.publishing => (
                    seq,
                    entry.frames_before,
                    entry.bytes_before,
                    Lag::of(&state, entry),
                ),
                _ => (
                    state.next_seq(),
                    state.total_frames,
                    state.total_bytes,
                    Lag::default(),
                ),
            };
        let generation = state.generation;
        let live = state.publishing;
        if !metered {
            state.internal_cursors.insert(id, cursor);
        }
        drop(state);
        Subscription {
            hub,
            key,
            stream,
            id,
            counters,
            head,
            cursor,
            pos_frames,
            pos_bytes,
            handed_lag,
            phase: Phase::AwaitSync { after_lag: false },
            generation,
            live,
            metered,
            node_notices: !metered,
        }
    }

    /// The stream this subscription follows.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// This viewer's id, unique within its stream (as in [`ViewerStats`](super::ViewerStats)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This viewer's counters so far.
    pub fn stats(&self) -> ViewerStats {
        self.counters.snapshot(self.id)
    }

    /// The stream's store of shared HTTP-FLV chunks (see [`crate::shared_bytes`]).
    #[cfg(feature = "http")]
    pub(crate) fn shared_flv(&self) -> &crate::shared_bytes::SharedStore {
        &self.stream.shared_flv
    }

    /// The stream's store of RTMP frames chunked with `key` (see [`crate::shared_bytes`]),
    /// made on first use; every player with the same key shares it. `None` once the stream has
    /// [`MAX_RTMP_STORES_PER_STREAM`] stores for other keys: a client choosing unusual chunk
    /// sizes or message stream ids then gets its frames by vectored writes, and cannot use up
    /// the process's in-memory files that every other player's sendfile relies on.
    #[cfg(feature = "server")]
    pub(crate) fn shared_rtmp(
        &self,
        key: super::ChunkingKey,
    ) -> Option<std::sync::Arc<crate::shared_bytes::SharedStore>> {
        let mut stores = super::stream::lock(&self.stream.shared_rtmp);
        if let Some((_, store)) = stores.iter().find(|(k, _)| *k == key) {
            return Some(store.clone());
        }
        if stores.len() >= MAX_RTMP_STORES_PER_STREAM {
            return None;
        }
        let store = std::sync::Arc::new(crate::shared_bytes::SharedStore::default());
        stores.push((key, store.clone()));
        Some(store)
    }

    /// Lets node notices ([`Frame::is_node_notice`], such as the origin's HLS timing) through
    /// to this subscriber, or leaves them out. A viewer gets none unless it is a relay that
    /// asked for them (players would take them for a stream of their own); the node's own
    /// consumers ([`RelayHub::subscribe_internal`](super::RelayHub::subscribe_internal)) get
    /// them unless told otherwise.
    pub fn set_node_notices(&mut self, wanted: bool) {
        self.node_notices = wanted;
    }

    /// Whether node notices reach this subscriber (see [`Subscription::set_node_notices`]).
    pub fn gets_node_notices(&self) -> bool {
        self.node_notices
    }

    /// Whether a publisher is live as far as this viewer has read.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Appends the available events to `out` without waiting and returns how many. Stops once
    /// `max_events` are reached, except that a start at a keyframe may add its few configuration
    /// frames beyond.
    ///
    /// A node's own consumer ([`RelayHub::subscribe_internal`](super::RelayHub::subscribe_internal),
    /// live HLS) never skips for lag: it gets everything the publisher delivered, such as a
    /// backlog after a stall that viewers skip, unless the ring's hard limits were exceeded.
    pub fn try_recv_batch(&mut self, out: &mut Vec<RelayEvent>, max_events: usize) -> usize {
        let stream = self.stream.clone();
        let mut state = lock(&stream.state);
        let counts = self.read_events(&mut state, out, max_events);
        drop(state);
        self.add_counts(&counts);
        counts.events
    }

    /// Waits until at least one event is available, then appends up to `max_events` to `out` and
    /// returns how many (at least one when `max_events > 0`).
    pub async fn recv_batch(&mut self, out: &mut Vec<RelayEvent>, max_events: usize) -> usize {
        self.recv_with(max_events, |this| {
            Some(this.try_recv_batch(out, max_events)).filter(|&received| received > 0)
        })
        .await
        .unwrap_or(0)
    }

    /// [`Subscription::recv_batch`], except that a live viewer standing where other viewers
    /// stood gets their [`FrameRun`] instead of its frames one by one (see [`super::run`]).
    #[cfg(feature = "server")]
    pub(crate) async fn recv_shared(
        &mut self,
        out: &mut Vec<RelayEvent>,
        max_events: usize,
    ) -> Received {
        self.recv_with(max_events, |this| {
            Some(this.try_recv_shared(out, max_events))
                .filter(|received| !matches!(received, Received::Events(0)))
        })
        .await
        .unwrap_or(Received::Events(0))
    }

    /// [`Subscription::try_recv_batch`], or a shared run as [`Subscription::recv_shared`]
    /// gives.
    #[cfg(feature = "server")]
    pub(crate) fn try_recv_shared(
        &mut self,
        out: &mut Vec<RelayEvent>,
        max_events: usize,
    ) -> Received {
        let stream = self.stream.clone();
        let mut state = lock(&stream.state);
        if let Some(run) = self.shared_run(&mut state, max_events) {
            drop(state);
            self.cursor = run.end;
            self.pos_frames = run.frames_after;
            self.pos_bytes = run.bytes_after;
            // A run reaches the head: this viewer caught up.
            self.handed_lag = Lag::default();
            self.add_counts(&BatchCounts {
                frames_out: run.frames().len() as u64,
                bytes_out: run.bytes_out,
                ..BatchCounts::default()
            });
            return Received::Run(run);
        }
        let counts = self.read_events(&mut state, out, max_events);
        drop(state);
        self.add_counts(&counts);
        Received::Events(counts.events)
    }

    /// Waits until `read` reads something: calls it whenever the stream's head is past this
    /// viewer's cursor (or at once when `max_events` is 0, which reads nothing). `None` once
    /// `max_events` is 0 or the stream has ended.
    async fn recv_with<T>(
        &mut self,
        max_events: usize,
        mut read: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        loop {
            // Mark the head as seen before reading, so a frame pushed after the read wakes us.
            let announced = *self.head.borrow_and_update();
            // Nothing announced past what this viewer read: wait without locking the stream
            // (every viewer of it wakes at once, so that lock is the contended one).
            if self.cursor < announced || max_events == 0 {
                let received = read(self);
                if received.is_some() || max_events == 0 {
                    return received;
                }
            }
            if self.head.changed().await.is_err() {
                // The stream's sender lives as long as the stream; nothing more will come.
                return None;
            }
        }
    }

    /// The run this viewer reads next, when it is live, stands where the last run started, and
    /// that run still reaches the head; otherwise a new run from here (left in the stream for
    /// the viewers standing here too) when the entries up to the head make one.
    #[cfg(feature = "server")]
    fn shared_run(&self, state: &mut StreamState, max_events: usize) -> Option<Arc<FrameRun>> {
        if !self.metered || self.node_notices || self.phase != Phase::Live {
            return None;
        }
        if let Some(run) = &state.shared_run {
            if run.serves(state, self.cursor, self.generation, max_events) {
                return Some(run.clone());
            }
        }
        let run = FrameRun::read(state, self.cursor, self.generation, max_events, |entry| {
            self.is_over_budget(state, entry)
        })?;
        let run = Arc::new(run);
        state.shared_run = Some(run.clone());
        Some(run)
    }

    /// Appends the available events to `out`, up to `max_events` (see
    /// [`Subscription::try_recv_batch`]), and returns what they count for.
    fn read_events(
        &mut self,
        state: &mut StreamState,
        out: &mut Vec<RelayEvent>,
        max_events: usize,
    ) -> BatchCounts {
        let start = out.len();
        let mut counts = BatchCounts::default();
        while out.len().saturating_sub(start) < max_events {
            if self.cursor < state.front_seq {
                if !self.start_on_upstream_cache(state, out) {
                    self.skip_after_lag(state, out, &mut counts);
                }
                continue;
            }
            let Some(entry) = state.get(self.cursor) else {
                break;
            };
            if self.metered && self.phase == Phase::Live && self.is_over_budget(state, entry) {
                self.skip_after_lag(state, out, &mut counts);
                continue;
            }
            if entry.generation != self.generation {
                self.enter_generation(entry.generation, out);
            }
            self.consume(state, entry, out, &mut counts);
        }
        if !self.metered {
            state.internal_cursors.insert(self.id, self.cursor);
        }
        counts.events = out.len().saturating_sub(start);
        counts
    }

    /// Adds a batch's totals to this viewer's shared counters.
    fn add_counts(&self, counts: &BatchCounts) {
        self.counters
            .frames_out
            .fetch_add(counts.frames_out, COUNTER);
        self.counters.bytes_out.fetch_add(counts.bytes_out, COUNTER);
        if counts.frames_dropped > 0 || counts.bytes_dropped > 0 {
            self.counters
                .frames_dropped
                .fetch_add(counts.frames_dropped, COUNTER);
            self.counters
                .bytes_dropped
                .fetch_add(counts.bytes_dropped, COUNTER);
        }
    }

    /// Waits for and returns the next event.
    pub async fn recv(&mut self) -> Option<RelayEvent> {
        let mut out = Vec::with_capacity(1);
        self.recv_batch(&mut out, 1).await;
        out.pop()
    }

    /// Whether reading `entry` now puts this viewer over its lag budget: the configured budget
    /// on top of the lag it was handed at subscribe time (see `handed_lag`), so only lag it
    /// builds up by reading slower than the publisher counts.
    fn is_over_budget(&self, state: &StreamState, entry: &Entry) -> bool {
        let config = &self.stream.config;
        let lag = Lag::of(state, entry);
        let max_bytes = config
            .viewer_max_lag_bytes
            .saturating_add(self.handed_lag.bytes);
        let max_millis = config
            .viewer_max_lag
            .as_millis()
            .saturating_add(u128::from(self.handed_lag.millis));
        lag.bytes > max_bytes || u128::from(lag.millis) > max_millis
    }

    /// Moves a viewer that has not started yet (it waits for a keyframe to start on, not to
    /// resume on after a skip) to the cached keyframe when that is where an upstream's cached
    /// GOP starts, and returns whether it did. A relay's player that subscribed before its pull
    /// delivered anything would otherwise find the entries it waited at gone (older than the
    /// budget, as the upstream's GOP may be) and skip to the next keyframe, up to a GOP later.
    fn start_on_upstream_cache(&mut self, state: &StreamState, out: &mut Vec<RelayEvent>) -> bool {
        if self.phase != (Phase::AwaitSync { after_lag: false }) {
            return false;
        }
        let Some((seq, entry)) = state
            .latest_sync
            .and_then(|seq| state.get(seq).map(|entry| (seq, entry)))
            .filter(|(_, entry)| entry.upstream_cached)
        else {
            return false;
        };
        if entry.generation != self.generation {
            self.enter_generation(entry.generation, out);
        }
        self.cursor = seq;
        self.pos_frames = entry.frames_before;
        self.pos_bytes = entry.bytes_before;
        true
    }

    /// Jumps over the frames the viewer is too late for: to the newest keyframe when that one is
    /// within budget, otherwise to the head to wait for the next keyframe.
    fn skip_after_lag(
        &mut self,
        state: &StreamState,
        out: &mut Vec<RelayEvent>,
        counts: &mut BatchCounts,
    ) {
        let target = state
            .latest_sync
            .filter(|seq| *seq > self.cursor)
            .and_then(|seq| state.get(seq).map(|entry| (seq, entry)))
            .filter(|(_, entry)| !self.is_over_budget(state, entry));
        let (cursor, frames, bytes, generation, lag) = match target {
            Some((seq, entry)) => (
                seq,
                entry.frames_before,
                entry.bytes_before,
                entry.generation,
                Lag::of(state, entry),
            ),
            None => (
                state.next_seq(),
                state.total_frames,
                state.total_bytes,
                state.generation,
                Lag::default(),
            ),
        };
        self.handed_lag = self.handed_lag.min(lag);
        counts.frames_dropped = counts
            .frames_dropped
            .saturating_add(frames.saturating_sub(self.pos_frames));
        counts.bytes_dropped = counts
            .bytes_dropped
            .saturating_add(bytes.saturating_sub(self.pos_bytes));
        self.cursor = cursor;
        self.pos_frames = frames;
        self.pos_bytes = bytes;
        self.phase = Phase::AwaitSync { after_lag: true };
        if generation != self.generation {
            self.enter_generation(generation, out);
        }
        if target.is_none() && !state.publishing && self.live {
            out.push(RelayEvent::PublisherEnded);
            self.live = false;
        }
    }

    fn enter_generation(&mut self, generation: u64, out: &mut Vec<RelayEvent>) {
        if self.live {
            out.push(RelayEvent::PublisherEnded);
        }
        out.push(RelayEvent::PublisherStarted);
        self.generation = generation;
        self.live = true;
        if self.phase == Phase::Live {
            self.phase = Phase::AwaitSync { after_lag: false };
        }
    }

    fn consume(
        &mut self,
        state: &StreamState,
        entry: &Entry,
        out: &mut Vec<RelayEvent>,
        counts: &mut BatchCounts,
    ) {
        match &entry.slot {
            Slot::Ended => {
                if self.live {
                    out.push(RelayEvent::PublisherEnded);
                    self.live = false;
                }
                self.phase = Phase::AwaitSync { after_lag: false };
            }
            Slot::Frame { frame, sync } => {
                let size = frame.payload().len() as u64;
                match (self.phase, sync) {
                    (Phase::Live, _) => self.emit(frame, out, counts),
                    (Phase::AwaitSync { after_lag }, Some(bundle)) => {
                        if !after_lag && entry.upstream_cached {
                            // Starting on the upstream's cached GOP, delivered in one go: its
                            // age is not lag this viewer built up.
                            self.handed_lag = self.handed_lag.max(Lag::of(state, entry));
                        }
                        for header in bundle.frames() {
                            self.emit(&stamped_at(header, frame.timestamp()), out, counts);
                        }
                        self.emit(frame, out, counts);
                        self.phase = Phase::Live;
                    }
                    (Phase::AwaitSync { after_lag: true }, None) => {
                        counts.frames_dropped = counts.frames_dropped.saturating_add(1);
                        counts.bytes_dropped = counts.bytes_dropped.saturating_add(size);
                    }
                    (Phase::AwaitSync { after_lag: false }, None) => {}
                }
                self.pos_frames = entry.frames_before.saturating_add(1);
                self.pos_bytes = entry.bytes_before.saturating_add(size);
                self.handed_lag = self.handed_lag.min(Lag::of(state, entry));
            }
        }
        self.cursor = self.cursor.saturating_add(1);
    }

    /// Hands `frame` to the subscriber, unless it is a node notice this one does not get.
    fn emit(&self, frame: &Arc<Frame>, out: &mut Vec<RelayEvent>, counts: &mut BatchCounts) {
        if self.node_notices || !frame.is_node_notice() {
            emit(frame, out, counts);
        }
    }
}

/// The newest sync point of the current publish still in the ring whose timestamp is at or
/// before `at`: where a subscriber that already has the frames up to `at` resumes, so that
/// what it receives overlaps what it has instead of leaving a gap.
fn sync_at_or_before(state: &StreamState, at: u32) -> Option<u64> {
    if !state.publishing {
        return None;
    }
    for seq in (state.front_seq..state.next_seq()).rev() {
        let entry = state.get(seq)?;
        if entry.generation != state.generation {
            return None;
        }
        if let Slot::Frame {
            frame,
            sync: Some(_),
        } = &entry.slot
        {
            if is_after(at, frame.timestamp()) {
                return Some(seq);
            }
        }
    }
    None
}

/// The oldest sync point of the current publish still in the ring.
fn first_sync_of_publish(state: &StreamState) -> Option<u64> {
    if !state.publishing {
        return None;
    }
    (state.front_seq..state.next_seq()).find(|&seq| {
        state.get(seq).is_some_and(|entry| {
            entry.generation == state.generation
                && matches!(&entry.slot, Slot::Frame { sync: Some(_), .. })
        })
    })
}

/// A start bundle's frame as a joining viewer gets it: sequence headers stamped with the
/// timestamp of the keyframe they precede, so the viewer's timeline starts where its media does
/// (as nginx-rtmp does), and metadata stamped 0, where ffmpeg's FLV demuxer expects it (metadata
/// with another timestamp becomes an extra subtitle stream that never ends). The shared frame
/// is reused when it already has that timestamp.
fn stamped_at(header: &Arc<Frame>, keyframe_timestamp: u32) -> Arc<Frame> {
    let timestamp = match header.kind() {
        FrameKind::Metadata => 0,
        FrameKind::Audio | FrameKind::Video => keyframe_timestamp,
        // Never part of a start bundle; kept as relayed.
        FrameKind::Data => header.timestamp(),
    };
    if header.timestamp() == timestamp {
        header.clone()
    } else {
        Arc::new(Frame::new(
            header.kind(),
            timestamp,
            header.payload().clone(),
        ))
    }
}

fn emit(frame: &Arc<Frame>, out: &mut Vec<RelayEvent>, counts: &mut BatchCounts) {
    counts.frames_out = counts.frames_out.saturating_add(1);
    counts.bytes_out = counts
        .bytes_out
        .saturating_add(frame.payload().len() as u64);
    out.push(RelayEvent::Frame(frame.clone()));
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.metered {
            lock(&self.stream.state).internal_cursors.remove(&self.id);
            self.stream.internal_subscribers.fetch_sub(1, COUNTER);
        } else if let Some(counters) = lock(&self.stream.viewers).remove(&self.id) {
            lock(&self.stream.departed).accumulate(&counters.snapshot(0));
        }
        self.hub.forget_if_idle(&self.key, &self.stream);
    }
}
