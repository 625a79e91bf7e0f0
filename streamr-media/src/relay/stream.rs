//! One relayed stream: the shared frame ring, the GOP cache and the current decoder configuration.
//!
//! The publisher appends each frame once; every viewer reads the same ring through its own cursor.
//! The ring keeps the current GOP (for new viewers) and the most recent frames within the largest
//! viewer budget (for viewers that are a little behind); older frames are released, so a stalled
//! viewer holds no memory beyond the batch it is writing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::flush::{GroupMask, ALL_GROUPS, FLUSH_GROUPS};
use super::frame::{is_node_notice, is_upstream_unpublished, Frame, FrameKind};
use super::stats::{StreamStats, ViewerCounters, ViewerStats};
use super::RelayConfig;
use crate::hls::is_timing_message;

/// The decoder configuration a viewer needs before its first frame: the latest metadata and
/// sequence headers.
#[derive(Debug, Default, Clone)]
pub(crate) struct StartBundle {
    pub(crate) metadata: Option<Arc<Frame>>,
    /// The HLS timing the origin chose (`onStreamrHlsTiming`, see
    /// [`HlsTiming`](crate::hls::HlsTiming)), kept beside `onMetaData`.
    pub(crate) hls_timing: Option<Arc<Frame>>,
    pub(crate) video_header: Option<Arc<Frame>>,
    pub(crate) audio_header: Option<Arc<Frame>>,
    /// The newest frame of each other configuration (see [`Frame::config_key`]): the sequence
    /// starts of Enhanced RTMP multitrack tracks beyond the default ones, multichannel
    /// configurations, video metadata; in the order first seen, at most
    /// [`MAX_TRACK_CONFIGS`].
    pub(crate) track_configs: Vec<Arc<Frame>>,
}

/// How many configuration frames besides the default sequence headers a stream keeps for
/// viewers joining later (a multitrack publisher sends one per track and kind; FLV track ids are
/// one byte): the oldest goes when a new key would exceed it.
pub(crate) const MAX_TRACK_CONFIGS: usize = 64;

impl StartBundle {
    pub(crate) fn frames(&self) -> impl Iterator<Item = &Arc<Frame>> {
        [
            &self.metadata,
            &self.hls_timing,
            &self.video_header,
            &self.audio_header,
        ]
        .into_iter()
        .flatten()
        .chain(self.track_configs.iter())
    }

    /// The configuration frame kept for `frame`'s key, if any.
    pub(crate) fn track_config(&self, frame: &Frame) -> Option<&Arc<Frame>> {
        let key = frame.config_key()?;
        self.track_configs
            .iter()
            .find(|kept| kept.config_key() == Some(key))
    }

    /// Keeps `frame` as the newest of its configuration key.
    fn keep_track_config(&mut self, frame: &Arc<Frame>) {
        let Some(key) = frame.config_key() else {
            return;
        };
        match self
            .track_configs
            .iter_mut()
            .find(|kept| kept.config_key() == Some(key))
        {
            Some(kept) => *kept = frame.clone(),
            None => {
                if self.track_configs.len() >= MAX_TRACK_CONFIGS {
                    self.track_configs.remove(0);
                }
                self.track_configs.push(frame.clone());
            }
        }
    }
}

/// What a ring slot holds.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A frame; `sync` is set when a viewer may start here (a video keyframe, or any audio frame
    /// of a stream without video) and holds the configuration valid at that point.
    Frame {
        frame: Arc<Frame>,
        sync: Option<Arc<StartBundle>>,
    },
    /// The publisher of this generation left.
    Ended,
}

/// One ring slot with the stream totals before it, so lag and drops are plain subtractions.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) generation: u64,
    pub(crate) frames_before: u64,
    pub(crate) bytes_before: u64,
    pub(crate) timestamp: u32,
    /// The first keyframe of a [`Timeline::Upstream`] publish: the start of the upstream's
    /// cached GOP, which a pull delivers in one go however old it is.
    pub(crate) upstream_cached: bool,
    pub(crate) slot: Slot,
}

/// Where a publisher's timestamps come from, declared when it starts publishing (see
/// [`RelayHub::publish_with`](super::RelayHub::publish_with)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeline {
    /// A publisher with its own clock, such as a streamer's encoder. When its timestamps lie
    /// before what the stream already relayed (an encoder restarting at zero), they are rebased
    /// to continue shortly after the last relayed frame; viewers see the publisher leave and come
    /// back, so HLS marks a discontinuity.
    #[default]
    Own,
    /// A pull continuing an upstream stream's timeline: a relay pulling from the origin or from
    /// another relay. Timestamps are kept, so segments cut here stay byte-identical to the
    /// upstream's. Frames already relayed (at or before the last relayed timestamp of their
    /// track, as a new upstream's GOP cache replays them; timed data messages count as a track
    /// of their own) are dropped; the stream resumes with the first frame that follows on
    /// without a gap, or else at the next keyframe. Metadata and sequence headers are passed on
    /// again only when they changed. An upstream timeline lying far behind what was relayed
    /// (the upstream restarted from zero) is treated as a new publisher's, after a publisher
    /// end and start, with the upstream's timestamps kept so HLS segments stay the upstream's.
    Upstream,
}

/// How far behind the last relayed frame an [`Timeline::Upstream`] publisher's first frames may
/// lie and still be taken for a replay of that timeline (a GOP cache), in milliseconds.
const REJOIN_WINDOW_MILLIS: u32 = 30_000;

/// Where one track of a [`Timeline::Upstream`] publisher stands relative to what was relayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Rejoin {
    /// Every frame is passed on.
    #[default]
    Joined,
    /// Frames at or before the last relayed one of the track are dropped. `covered` records that
    /// this connection sent a keyframe at or before it, so the frames after it follow on from
    /// what viewers already have.
    Pending { covered: bool },
}

/// A rejoin of a [`Timeline::Upstream`] publisher (a relay's pull that failed over or
/// reconnected) that may have lost frames: the new upstream's first frame on a track came after
/// the last one relayed there without replaying anything at or before it (it ignored the resume
/// point, or no longer had it), so the frames between, if any, were never relayed. Segments
/// cut across it may differ from the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamGap {
    /// Which (re)join of an upstream it was, counted over the stream's life (an upstream
    /// publish starting counts too): a new value is a new gap.
    pub rejoin: u64,
    /// The last timestamp relayed, on the first track found resuming past it, before it.
    pub after_ms: u32,
    /// The timestamp that track resumed at.
    pub resumed_ms: u32,
}

/// Furthest the last audio frame may trail the last video frame for a resume point to start
/// from it (see [`Stream::resume_point`]).
const RESUME_TRACK_SKEW_MS: u32 = 2_000;

/// What happens to a frame of a [`Timeline::Upstream`] publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Relayed with its own timestamp.
    Pass,
    /// Relayed, moved up to this timestamp so nothing goes backwards (changed configuration).
    At(u32),
    /// Already relayed, or not decodable before the next keyframe.
    Drop,
    /// The upstream's timeline restarted far behind: rebase it like a new publisher's.
    NewTimeline,
}

/// Timestamp rebasing so a republished stream continues where the previous publisher stopped.
#[derive(Debug, Default)]
struct Rebase {
    input_base: Option<u32>,
    output_base: u32,
}

/// The mutable state of a stream, behind one mutex held only for short appends and batch reads.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) ring: VecDeque<Entry>,
    /// Sequence number of `ring[0]`.
    pub(crate) front_seq: u64,
    pub(crate) total_frames: u64,
    pub(crate) total_bytes: u64,
    pub(crate) last_timestamp: u32,
    pub(crate) publishing: bool,
    pub(crate) generation: u64,
    /// Sequence number of the latest sync point still in the ring and within the GOP cache limit.
    pub(crate) latest_sync: Option<u64>,
    has_video: bool,
    headers: StartBundle,
    rebase: Rebase,
    publish_count: u64,
    /// The latest timestamp relayed on any track, where a republish continues.
    max_output_timestamp: Option<u32>,
    /// The current publisher's timeline.
    timeline: Timeline,
    /// The latest coded video and audio timestamps relayed, across publishers.
    last_video: Option<u32>,
    last_audio: Option<u32>,
    /// The latest timed data message ([`FrameKind::Data`]) timestamp relayed, across publishers.
    last_data: Option<u32>,
    /// Where each track of a [`Timeline::Upstream`] publisher stands.
    rejoin_video: Rejoin,
    rejoin_audio: Rejoin,
    /// Whether a rejoining [`Timeline::Upstream`] publisher's data messages may still be
    /// replays of what was relayed (see [`admit_data`]).
    rejoin_data: bool,
    /// Added to a [`Timeline::Upstream`] publisher's timestamps (zero: the upstream's own
    /// timestamps are kept).
    upstream_shift: u32,
    /// Rejoins of [`Timeline::Upstream`] publishers so far.
    rejoins: u64,
    /// The newest rejoin whose replay did not reach back to what was relayed (frames may be
    /// lost there).
    last_upstream_gap: Option<UpstreamGap>,
    /// Whether the current publish is a [`Timeline::Upstream`] one whose first keyframe has
    /// not come yet.
    upstream_cache_pending: bool,
    /// Where each of the node's own consumers (live HLS) reads, by subscription id: the ring
    /// keeps what they have not read yet, lag or not, within the ring's hard limits.
    pub(crate) internal_cursors: HashMap<u64, u64>,
    /// The run of frames the live viewers woken last read (see [`super::run`]).
    #[cfg(feature = "server")]
    pub(crate) shared_run: Option<Arc<super::run::FrameRun>>,
}

impl StreamState {
    /// Sequence number the next appended entry gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.front_seq.saturating_add(self.ring.len() as u64)
    }

    /// The entry with sequence number `seq`, if still in the ring.
    pub(crate) fn get(&self, seq: u64) -> Option<&Entry> {
        let index = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        self.ring.get(index)
    }

    /// Bytes and milliseconds the entry `seq` is behind the newest frame.
    pub(crate) fn lag_of(&self, entry: &Entry) -> (u64, u32) {
        let bytes = self.total_bytes.saturating_sub(entry.bytes_before);
        // Timestamps wrap after ~49 days; a small negative difference means no lag.
        let millis = self.last_timestamp.wrapping_sub(entry.timestamp);
        let millis = if millis > u32::MAX / 2 { 0 } else { millis };
        (bytes, millis)
    }
}

/// A stream shared by its publisher, its viewers and the hub.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) state: Mutex<StreamState>,
    /// Carry the next sequence number, one per wake-up group ([`super::flush`]); each viewer
    /// waits on its group's for new entries.
    pub(crate) heads: [watch::Sender<u64>; FLUSH_GROUPS],
    pub(crate) viewers: Mutex<HashMap<u64, Arc<ViewerCounters>>>,
    /// Subscriptions of the node's own consumers (such as the HLS segmenter): they keep the
    /// stream known to the hub but are not viewers.
    pub(crate) internal_subscribers: AtomicU64,
    pub(crate) next_viewer_id: AtomicU64,
    /// Counters of viewers that left, so stream totals survive them.
    pub(crate) departed: Mutex<ViewerStats>,
    pub(crate) config: RelayConfig,
    /// The write-rate term's batch delay for this stream, in microseconds (see
    /// [`RelayHub::apply_write_rate`](super::RelayHub::apply_write_rate)); the hub's delay
    /// applies when it is longer.
    pub(crate) write_delay_micros: AtomicU64,
    /// Most staggered wake-up groups its publisher uses, from its viewers
    /// ([`super::flush::groups_for_viewers`], set with the write-rate delay; all until then).
    pub(crate) stagger_groups: AtomicU64,
    /// The stream's byte rate as the write-rate term last measured it
    /// ([`Stream::byte_rate`]).
    pub(crate) byte_rate: Mutex<ByteRate>,
    /// The stream's HTTP-FLV chunks, shared by its players' `sendfile`s.
    #[cfg(feature = "http")]
    pub(crate) shared_flv: crate::shared_bytes::SharedStore,
    /// The stream's RTMP chunked frames, one store per chunking key (nearly always one), shared
    /// by its RTMP players' `sendfile`s.
    #[cfg(feature = "server")]
    pub(crate) shared_rtmp: Mutex<
        Vec<(
            super::ChunkingKey,
            std::sync::Arc<crate::shared_bytes::SharedStore>,
        )>,
    >,
}

/// A stream's byte rate, smoothed over samples of its byte count.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ByteRate {
    /// The previous sample: when, and the bytes relayed by then.
    last: Option<(Instant, u64)>,
    /// Bytes a second, smoothed; `None` until two samples were taken.
    rate: Option<f64>,
}

/// Time constant of the byte-rate smoothing: long enough that a keyframe (a GOP's largest
/// frame, arriving all at once) does not swing the rate, short enough to follow a change of
/// bitrate within seconds.
const BYTE_RATE_SMOOTHING: Duration = Duration::from_secs(2);

impl ByteRate {
    /// Adds the sample `total_bytes` relayed by `now`; returns the smoothed rate in bytes a
    /// second, `None` until two samples at different instants were seen.
    pub(crate) fn sample(&mut self, now: Instant, total_bytes: u64) -> Option<f64> {
        if let Some((then, before)) = self.last {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            if elapsed <= 0.0 {
                return self.rate;
            }
            let instant = total_bytes.saturating_sub(before) as f64 / elapsed;
            let weight = 1.0 - (-elapsed / BYTE_RATE_SMOOTHING.as_secs_f64()).exp();
            self.rate = Some(match self.rate {
                Some(rate) => rate + (instant - rate) * weight,
                None => instant,
            });
        }
        self.last = Some((now, total_bytes));
        self.rate
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: relay state stays
/// consistent between statements, so a panic elsewhere must not take every viewer down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Stream {
    /// Samples the bytes the stream relayed by `now` and returns its smoothed byte rate
    /// ([`ByteRate::sample`]).
    pub(crate) fn byte_rate(&self, now: Instant) -> Option<f64> {
        let total = lock(&self.state).total_bytes;
        lock(&self.byte_rate).sample(now, total)
    }

    pub(crate) fn new(config: RelayConfig) -> Self {
        Stream {
            state: Mutex::new(StreamState::default()),
            heads: std::array::from_fn(|_| watch::Sender::new(0)),
            viewers: Mutex::new(HashMap::new()),
            internal_subscribers: AtomicU64::new(0),
            next_viewer_id: AtomicU64::new(0),
            departed: Mutex::new(ViewerStats::default()),
            config,
            write_delay_micros: AtomicU64::new(0),
            stagger_groups: AtomicU64::new(FLUSH_GROUPS as u64),
            byte_rate: Mutex::new(ByteRate::default()),
            #[cfg(feature = "http")]
            shared_flv: crate::shared_bytes::SharedStore::default(),
            #[cfg(feature = "server")]
            shared_rtmp: Mutex::new(Vec::new()),
        }
    }

    /// The newest rejoin of a [`Timeline::Upstream`] publisher that may have lost frames.
    pub(crate) fn last_upstream_gap(&self) -> Option<UpstreamGap> {
        lock(&self.state).last_upstream_gap
    }

    /// The current publisher's timeline, while one is publishing.
    pub(crate) fn publisher_timeline(&self) -> Option<Timeline> {
        let state = lock(&self.state);
        state.publishing.then_some(state.timeline)
    }

    /// Marks the stream as published by a new publisher whose timestamps follow `timeline`; false
    /// if one is already publishing.
    pub(crate) fn begin_publish(&self, timeline: Timeline) -> bool {
        let mut state = lock(&self.state);
        if state.publishing {
            return false;
        }
        state.publishing = true;
        state.generation = state.generation.wrapping_add(1);
        state.publish_count = state.publish_count.saturating_add(1);
        state.rebase = Rebase::default();
        state.headers = StartBundle::default();
        state.has_video = false;
        state.latest_sync = None;
        state.timeline = timeline;
        state.rejoin_video = Rejoin::Joined;
        state.rejoin_audio = Rejoin::Joined;
        state.rejoin_data = false;
        state.upstream_shift = 0;
        state.upstream_cache_pending = timeline == Timeline::Upstream;
        if timeline == Timeline::Upstream {
            start_rejoin(&mut state);
        }
        true
    }

    /// The current [`Timeline::Upstream`] publisher reconnected (to the same or another upstream
    /// of the same stream): its next frames replay part of what was relayed, which is dropped.
    /// Viewers stay on the same publish and see no gap when the replay covers it.
    pub(crate) fn rejoin(&self) {
        let mut state = lock(&self.state);
        if state.publishing && state.timeline == Timeline::Upstream {
            start_rejoin(&mut state);
        }
    }

    /// Where a [`Timeline::Upstream`] publisher reconnecting to an upstream asks it to resume
    /// (see [`RelayHub::subscribe_resuming`](super::RelayHub::subscribe_resuming)): the newest
    /// frame relayed on the track that starts viewers (video when the stream has video, else
    /// audio), or the newest audio frame when that trails it by at most
    /// [`RESUME_TRACK_SKEW_MS`], on the upstream's timeline. `None` before any such frame.
    pub(crate) fn resume_point(&self) -> Option<u32> {
        let state = lock(&self.state);
        if !state.publishing || state.timeline != Timeline::Upstream {
            return None;
        }
        match (state.last_video, state.last_audio) {
            // The earlier track's last frame, so the upstream replays from a keyframe at or
            // before both and neither track loses the frames between (audio relayed up to a
            // little before the newest video frame would otherwise start after a keyframe that
            // falls between them). A track far behind (stopped) does not pull the point back.
            (Some(video), Some(audio))
                if is_after(video, audio) && video.wrapping_sub(audio) <= RESUME_TRACK_SKEW_MS =>
            {
                Some(audio)
            }
            (Some(video), _) => Some(video),
            (None, audio) => audio,
        }
    }

    /// Marks the end of the current publish and tells the viewers.
    pub(crate) fn end_publish(&self) {
        let next = {
            let mut state = lock(&self.state);
            if !state.publishing {
                return;
            }
            state.publishing = false;
            self.push_ended(&mut state);
            state.next_seq()
        };
        self.announce_head(next, ALL_GROUPS);
    }

    /// Appends the end of the current generation for the viewers.
    fn push_ended(&self, state: &mut StreamState) {
        state.latest_sync = None;
        let entry = Entry {
            generation: state.generation,
            frames_before: state.total_frames,
            bytes_before: state.total_bytes,
            timestamp: state.last_timestamp,
            upstream_cached: false,
            slot: Slot::Ended,
        };
        state.ring.push_back(entry);
        self.evict(state);
    }

    /// Appends one frame from the publisher and wakes the viewers.
    pub(crate) fn push(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        self.append(kind, timestamp, payload);
        self.notify();
    }

    /// Wakes the viewers to every entry appended so far.
    pub(crate) fn notify(&self) {
        self.notify_groups(ALL_GROUPS);
    }

    /// Wakes the viewers of the wake-up groups in `groups` to every entry appended so far.
    pub(crate) fn notify_groups(&self, groups: GroupMask) {
        if groups == 0 {
            return;
        }
        let next = lock(&self.state).next_seq();
        self.announce_head(next, groups);
    }

    fn announce_head(&self, next: u64, groups: GroupMask) {
        for (group, head) in self.heads.iter().enumerate() {
            if groups & (1 << group) != 0 {
                head.send_replace(next);
            }
        }
    }

    /// Appends one frame from the publisher without waking the viewers; [`Stream::notify`] does,
    /// so a publisher can wake them once for several frames.
    pub(crate) fn append(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        if kind == FrameKind::Data && is_node_notice(&payload) {
            // Node notices enter a stream only as this node's own announcements or from an
            // upstream node (as metadata), never as a publisher's timed data.
            return;
        }
        {
            let mut state = lock(&self.state);
            let frame = match state.timeline {
                Timeline::Own => Frame::new(kind, rebase(&mut state, timestamp), payload),
                Timeline::Upstream => {
                    let shifted = timestamp.wrapping_add(state.upstream_shift);
                    let frame = Frame::new(kind, shifted, payload);
                    match admit_upstream(&mut state, &frame) {
                        Admit::Pass => frame,
                        Admit::At(timestamp) => {
                            Frame::new(kind, timestamp, frame.payload().clone())
                        }
                        Admit::Drop => return,
                        Admit::NewTimeline => {
                            // The upstream restarted (an origin restart, or a standby origin
                            // taking over): viewers see the publisher leave and a new one
                            // start, as for any publisher whose clock restarted. Its timestamps
                            // are kept, so the HLS segments cut here stay the upstream's byte
                            // for byte (viewers verify them against the origin's hashes), and
                            // the tracks start over, so a later failover's replay of the new
                            // timeline is still recognised and dropped.
                            self.push_ended(&mut state);
                            state.generation = state.generation.wrapping_add(1);
                            state.upstream_shift = 0;
                            state.max_output_timestamp = None;
                            state.last_video = None;
                            state.last_audio = None;
                            state.last_data = None;
                            state.rejoin_video = Rejoin::Joined;
                            state.rejoin_audio = Rejoin::Joined;
                            state.rejoin_data = false;
                            Frame::new(kind, timestamp, frame.payload().clone())
                        }
                    }
                }
            };
            self.store(&mut state, frame);
        }
    }

    /// Appends a data message of this node's own (see [`RelayHub::announce`](super::RelayHub::announce))
    /// at the newest timestamp relayed and wakes the viewers; false when nobody publishes.
    pub(crate) fn announce(&self, payload: Bytes) -> bool {
        {
            let mut state = lock(&self.state);
            if !state.publishing {
                return false;
            }
            let timestamp = state.max_output_timestamp.unwrap_or(state.last_timestamp);
            self.store(
                &mut state,
                Frame::new(FrameKind::Metadata, timestamp, payload),
            );
        }
        self.notify();
        true
    }

    /// Puts one admitted frame into the ring and the start bundle.
    fn store(&self, state: &mut StreamState, frame: Frame) {
        let timestamp = frame.timestamp();
        note_output(state, &frame);
        let frame = Arc::new(frame);
        let size = frame.payload().len() as u64;
        state.headers.keep_track_config(&frame);
        match frame.kind() {
            FrameKind::Metadata if is_timing_message(frame.payload()) => {
                state.headers.hls_timing = Some(frame.clone());
            }
            // Said once, where it happened: never part of what a later viewer starts with.
            FrameKind::Metadata if is_upstream_unpublished(frame.payload()) => {}
            FrameKind::Metadata => state.headers.metadata = Some(frame.clone()),
            FrameKind::Video => {
                state.has_video = true;
                if frame.is_sequence_header() {
                    state.headers.video_header = Some(frame.clone());
                }
            }
            FrameKind::Audio => {
                if frame.is_sequence_header() {
                    state.headers.audio_header = Some(frame.clone());
                }
            }
            // Timed data goes to whoever is watching when it is relayed, in order with the
            // media around it: never to the start bundle, and never a sync point. A viewer
            // joining at the cached GOP gets the data messages relayed since its keyframe, as a
            // recording cut at that keyframe holds them.
            FrameKind::Data => {}
        }
        let is_sync = frame.is_video_keyframe()
            || (frame.kind() == FrameKind::Audio && !state.has_video && frame.is_coded_media());
        let sync = is_sync.then(|| Arc::new(state.headers.clone()));
        let upstream_cached = is_sync && std::mem::take(&mut state.upstream_cache_pending);
        let seq = state.next_seq();
        let entry = Entry {
            generation: state.generation,
            frames_before: state.total_frames,
            bytes_before: state.total_bytes,
            timestamp,
            upstream_cached,
            slot: Slot::Frame { frame, sync },
        };
        state.ring.push_back(entry);
        state.total_frames = state.total_frames.saturating_add(1);
        state.total_bytes = state.total_bytes.saturating_add(size);
        state.last_timestamp = timestamp;
        if is_sync {
            state.latest_sync = Some(seq);
        }
        self.evict(state);
    }

    /// Releases ring entries no viewer may still need: older than the current GOP (or the GOP
    /// cache limit) and beyond every viewer's lag budget.
    fn evict(&self, state: &mut StreamState) {
        let config = &self.config;
        // Stop caching a GOP that outgrew its limit; new viewers then wait for the next keyframe.
        if let Some(sync) = state.latest_sync {
            let too_big = match state.get(sync) {
                Some(entry) => {
                    !config.gop_cache
                        || state.total_bytes.saturating_sub(entry.bytes_before)
                            > config.gop_cache_max_bytes
                }
                None => true,
            };
            if too_big {
                state.latest_sync = None;
            }
        }
        let held_from = state.internal_cursors.values().min().copied();
        while let Some(front) = state.ring.front() {
            let front_seq = state.front_seq;
            if state.latest_sync.is_some_and(|sync| sync <= front_seq) {
                break;
            }
            let (lag_bytes, lag_millis) = state.lag_of(front);
            let within_ring = state.ring.len() <= config.ring_max_entries;
            let within_budget = lag_bytes <= config.viewer_max_lag_bytes
                && u64::from(lag_millis) <= duration_millis(config.viewer_max_lag);
            if within_budget && within_ring {
                break;
            }
            // A node's own consumer still needs it (a publisher's backlog after a stall, say):
            // keep it, as long as it stays within twice the byte budget.
            let held = held_from.is_some_and(|cursor| cursor <= front_seq);
            if held && within_ring && lag_bytes <= config.viewer_max_lag_bytes.saturating_mul(2) {
                break;
            }
            state.ring.pop_front();
            state.front_seq = state.front_seq.saturating_add(1);
        }
    }

    pub(crate) fn stats(&self, key: super::StreamKey) -> StreamStats {
        let state = lock(&self.state);
        let viewers: Vec<ViewerStats> = lock(&self.viewers)
            .iter()
            .map(|(id, counters)| counters.snapshot(*id))
            .collect();
        let mut delivered = *lock(&self.departed);
        for viewer in &viewers {
            delivered.accumulate(viewer);
        }
        StreamStats {
            key,
            publishing: state.publishing,
            publish_count: state.publish_count,
            frames_in: state.total_frames,
            bytes_in: state.total_bytes,
            delivered,
            viewers,
        }
    }

    /// True when nobody publishes, watches or consumes internally, so the hub may forget the
    /// stream.
    pub(crate) fn is_idle(&self) -> bool {
        !lock(&self.state).publishing
            && lock(&self.viewers).is_empty()
            && self.internal_subscribers.load(COUNTER) == 0
    }
}

fn duration_millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Gap left between the last frame of a publisher and the first of the next one, so audio and
/// video of the new publisher both start after everything relayed before.
const REPUBLISH_GAP_MILLIS: u32 = 100;

/// Maps a publisher timestamp onto the stream's timeline: unchanged for the first publish and for
/// a republish whose timeline already lies past everything relayed (a relay pulling the same
/// origin stream again, whose timestamps, and so HLS segments, must stay the origin's); otherwise
/// continuing shortly after the latest relayed frame (of any track). Wrapping on purpose: RTMP
/// timestamps are 32-bit milliseconds that wrap.
fn rebase(state: &mut StreamState, timestamp: u32) -> u32 {
    let input_base = match state.rebase.input_base {
        Some(base) => base,
        None => {
            state.rebase.input_base = Some(timestamp);
            state.rebase.output_base = match state.max_output_timestamp {
                Some(max) if is_after(timestamp, max.wrapping_add(REPUBLISH_GAP_MILLIS)) => {
                    timestamp
                }
                Some(max) => max.wrapping_add(REPUBLISH_GAP_MILLIS),
                None => timestamp,
            };
            timestamp
        }
    };
    state
        .rebase
        .output_base
        .wrapping_add(timestamp.wrapping_sub(input_base))
}

/// How far past the newest coded frame relayed a frame that is not coded media (a data message,
/// metadata) may move the stream's newest relayed timestamp, in milliseconds.
const NON_MEDIA_LEAD_MILLIS: u32 = 10_000;

/// Records a frame about to be relayed: the latest timestamp overall (a timed data message
/// counts: a republish continues after it, so the players' data track never goes backwards),
/// per coded track, and of the data messages. A frame that is not coded media moves the latest
/// timestamp overall at most [`NON_MEDIA_LEAD_MILLIS`] past the media: a data message stamped
/// far ahead of them (an encoder's bug, or a publisher's doing) must not carry a republish, or
/// this node's own notices, that far ahead.
fn note_output(state: &mut StreamState, frame: &Frame) {
    let timestamp = frame.timestamp();
    let later = |last: Option<u32>, timestamp: u32| match last {
        Some(last) if !is_after(timestamp, last) => Some(last),
        _ => Some(timestamp),
    };
    let newest_media = match (state.last_video, state.last_audio) {
        (Some(video), Some(audio)) => Some(if is_after(video, audio) { video } else { audio }),
        (video, audio) => video.or(audio),
    };
    let bound = newest_media
        .filter(|_| !frame.is_coded_media())
        .map(|media| media.wrapping_add(NON_MEDIA_LEAD_MILLIS))
        .filter(|bound| is_after(timestamp, *bound));
    state.max_output_timestamp = later(state.max_output_timestamp, bound.unwrap_or(timestamp));
    match frame.kind() {
        FrameKind::Video if frame.is_coded_media() => {
            state.last_video = later(state.last_video, timestamp)
        }
        FrameKind::Audio if frame.is_coded_media() => {
            state.last_audio = later(state.last_audio, timestamp)
        }
        FrameKind::Data => state.last_data = later(state.last_data, timestamp),
        FrameKind::Video | FrameKind::Audio | FrameKind::Metadata => {}
    }
}

/// Makes every track that was relayed before wait for the frames past what was relayed.
fn start_rejoin(state: &mut StreamState) {
    state.rejoins = state.rejoins.saturating_add(1);
    let pending = |last: Option<u32>| match last {
        Some(_) => Rejoin::Pending { covered: false },
        None => Rejoin::Joined,
    };
    state.rejoin_video = pending(state.last_video);
    state.rejoin_audio = pending(state.last_audio);
    state.rejoin_data = state.max_output_timestamp.is_some();
}

/// Decides what happens to a frame of a [`Timeline::Upstream`] publisher (see there).
fn admit_upstream(state: &mut StreamState, frame: &Frame) -> Admit {
    let timestamp = frame.timestamp();
    if frame.kind() == FrameKind::Data {
        return admit_data(state, timestamp);
    }
    let rejoining = state.rejoin_video != Rejoin::Joined || state.rejoin_audio != Rejoin::Joined;
    if !frame.is_coded_media() && rejoining {
        // The new connection's configuration and whatever else it replays.
        let current = match frame.kind() {
            _ if frame.config_key().is_some() => state.headers.track_config(frame),
            FrameKind::Metadata if is_timing_message(frame.payload()) => {
                state.headers.hls_timing.as_ref()
            }
            FrameKind::Metadata => state.headers.metadata.as_ref(),
            FrameKind::Video if frame.is_sequence_header() => state.headers.video_header.as_ref(),
            FrameKind::Audio if frame.is_sequence_header() => state.headers.audio_header.as_ref(),
            FrameKind::Video | FrameKind::Audio | FrameKind::Data => None,
        };
        if current.is_some_and(|current| current.payload() == frame.payload()) {
            return Admit::Drop;
        }
        // Changed configuration goes on, never before what was already relayed.
        return match state.max_output_timestamp {
            Some(max) if !is_after(timestamp, max) => Admit::At(max),
            _ => Admit::Pass,
        };
    }
    let (last, rejoin) = match frame.kind() {
        _ if !frame.is_coded_media() => return Admit::Pass,
        FrameKind::Video => (state.last_video, &mut state.rejoin_video),
        FrameKind::Audio => (state.last_audio, &mut state.rejoin_audio),
        FrameKind::Metadata | FrameKind::Data => return Admit::Pass,
    };
    let Rejoin::Pending { covered } = *rejoin else {
        return Admit::Pass;
    };
    let Some(last) = last else {
        // Nothing relayed on this track yet: nothing to repeat.
        *rejoin = Rejoin::Joined;
        return Admit::Pass;
    };
    if is_after(last, timestamp) {
        if last.wrapping_sub(timestamp) > REJOIN_WINDOW_MILLIS {
            return Admit::NewTimeline;
        }
        // A replayed keyframe (any audio frame: each decodes alone) at or before the last
        // relayed frame: what follows it continues what was relayed without a gap.
        if frame.is_video_keyframe() || frame.kind() == FrameKind::Audio {
            *rejoin = Rejoin::Pending { covered: true };
        }
        return Admit::Drop;
    }
    // The first frame past what was relayed: it follows on when this connection replayed the
    // GOP it belongs to (audio frames always decode alone); otherwise wait for a keyframe.
    if frame.kind() == FrameKind::Audio || covered || frame.is_video_keyframe() {
        *rejoin = Rejoin::Joined;
        let rejoin = state.rejoins;
        if !covered
            && state
                .last_upstream_gap
                .is_none_or(|gap| gap.rejoin != rejoin)
        {
            // Nothing at or before the last relayed frame was replayed: frames may be lost.
            state.last_upstream_gap = Some(UpstreamGap {
                rejoin,
                after_ms: last,
                resumed_ms: timestamp,
            });
        }
        Admit::Pass
    } else {
        Admit::Drop
    }
}

/// Decides what happens to a timed data message ([`FrameKind::Data`]) of a
/// [`Timeline::Upstream`] publisher. While its media tracks rejoin, the new upstream replays
/// what it holds from a keyframe on, data messages among the frames, in the order it relayed
/// them: a data message at or before the last one relayed is such a replay and is dropped; the
/// first one past it is new (whatever was relayed came before it in that order), and it and all
/// later ones pass with their own timestamps. One lying more than the rejoin window behind what
/// was relayed is dropped too: stale, or the first of an upstream timeline that restarted, which
/// its media then start anew. Data messages never start a new timeline or report a gap: they
/// are sparse, so a replay holding none tells nothing.
fn admit_data(state: &mut StreamState, timestamp: u32) -> Admit {
    let media_rejoining =
        state.rejoin_video != Rejoin::Joined || state.rejoin_audio != Rejoin::Joined;
    if !state.rejoin_data || !media_rejoining {
        // Once the media tracks follow on, the replay is over.
        state.rejoin_data = false;
        return Admit::Pass;
    }
    let far_behind = state.max_output_timestamp.is_some_and(|max| {
        is_after(max, timestamp) && max.wrapping_sub(timestamp) > REJOIN_WINDOW_MILLIS
    });
    let replayed = state
        .last_data
        .is_some_and(|last| is_after(last, timestamp));
    if far_behind || replayed {
        return Admit::Drop;
    }
    state.rejoin_data = false;
    Admit::Pass
}

/// Whether the 32-bit wrapping timestamp `a` is at or after `b` (within half the range).
pub(crate) fn is_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < u32::MAX / 2
}

/// Ordering used for counters: they are statistics, not synchronisation.
pub(crate) const COUNTER: Ordering = Ordering::Relaxed;
