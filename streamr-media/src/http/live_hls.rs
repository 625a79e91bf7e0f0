//! Live HLS for every published stream: a task per stream feeds relay frames into a segmenter and
//! keeps the playlist and segments in memory for the HTTP handlers.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::msn_map::{Batch, HeldPart, MsnMap, Refused};
use crate::flv::{FlvTag, FlvTagType};
use crate::hls::{
    render_multivariant, segment_bit_rates, BlockingState, HlsDirectory, HlsTiming, LivePlaylist,
    LlEvent, LlPackager, LlPackagerConfig, LlPlaylist, LlPlaylistConfig, OpenSegmentInfo,
    PlaylistConfig, Rendition, Segmenter, SegmenterConfig, SegmenterEvent, StreamTracks, Variant,
    MULTIVARIANT_NAME,
};
use crate::relay::{
    is_upstream_unpublished, FrameKind, RelayEvent, RelayHub, StreamKey, Timeline, UpstreamGap,
};
use crate::ts::TsError;

/// How long a relay holds back its first segments while it learns the origin's media sequence
/// numbers (from its first part cut); then it lists them under its own numbers and warns.
pub const LEARN_ORIGIN_NUMBERS_WITHIN: Duration = Duration::from_secs(8);

/// The origin's place of a part, as a relay learns it (see [`OriginNumbering`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginPartPlace {
    /// Media sequence number of the part's segment at the origin.
    pub msn: u64,
    /// The part's index in its segment.
    pub index: u32,
    /// The origin's numbering run the place belongs to, when known: chosen afresh whenever the
    /// origin's numbers start over (see [`OriginNumbering::origin_run`]).
    pub run: Option<u64>,
}

/// Where a relay learns the origin's media sequence numbers, so that it lists every segment
/// and part under the origin's number (and URI): the origin's place of the part of `key` whose
/// bytes hash (BLAKE3) to `part_hash`, waiting up to `wait` for the origin to report it; `None` when it
/// is not known. A node answers it from the origin's signed part reports.
pub trait OriginNumbering: Send + Sync + std::fmt::Debug {
    /// The origin's place of a part, by its hash.
    fn origin_place(
        &self,
        key: &StreamKey,
        part_hash: [u8; 32],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<OriginPartPlace>> + Send + 'static>>;

    /// The origin's numbering run of `key` in its newest report, when known without waiting.
    /// A relay that learned the origin's numbers in one run learns them again once this names
    /// another (the origin restarted or a standby took over, and its numbers started over even
    /// where the relay's stream went on without a break it could see). The default knows none.
    fn origin_run(&self, key: &StreamKey) -> Option<u64> {
        let _ = key;
        None
    }
}

/// Settings of live HLS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveHlsConfig {
    /// How segments are cut.
    pub segmenter: SegmenterConfig,
    /// Segments listed in each playlist (raised to the HLS minimum of 6 and 3 target durations).
    pub window_segments: usize,
    /// How long a stream whose publisher left waits for a republish before its playlist ends.
    pub republish_grace: Duration,
    /// How long an ended playlist and its segments stay available.
    pub ended_retention: Duration,
    /// How often the hub is checked for newly published streams.
    pub poll_interval: Duration,
    /// Also write playlists and segments under this directory, laid out like the URLs
    /// (`{app}/{stream}.m3u8`, `{app}/{stream}/{sequence}.ts`); segments that leave the playlist
    /// are deleted, and so are an ended stream's files once its playlist's retention
    /// ([`LiveHlsConfig::ended_retention`]) ran out. A segment is listed on disk only once it is
    /// completely written; when writing fails (a full disk), HTTP keeps serving from memory and
    /// the mirror catches up when writes succeed again.
    pub directory: Option<PathBuf>,
    /// The LL-HLS (fMP4/CMAF) rendition beside the MPEG-TS one, with its part target; `None`
    /// serves MPEG-TS only.
    pub low_latency: Option<LlPackagerConfig>,
    /// The MPEG-TS playlist's EXT-X-TARGETDURATION fixed at this many seconds, never broken
    /// whatever the GOPs (a GOP running past it is cut short in that rendition, see
    /// [`Segmenter::with_fixed_target_duration`]); `None` derives it from the stream's first
    /// GOPs, and later, longer GOPs are held to it alike ([`Segmenter::target_duration_secs`]).
    /// A relay takes its origin's instead, announced with the PART-TARGET
    /// ([`HlsTiming`]).
    pub ts_target_duration_secs: Option<u32>,
}

impl Default for LiveHlsConfig {
    fn default() -> Self {
        LiveHlsConfig {
            segmenter: SegmenterConfig::default(),
            window_segments: 6,
            republish_grace: Duration::from_secs(10),
            ended_retention: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            directory: None,
            low_latency: Some(LlPackagerConfig::default()),
            ts_target_duration_secs: None,
        }
    }
}

impl LiveHlsConfig {
    /// Sets the segment length aimed for and the longest segment allowed (see
    /// [`SegmenterConfig`]).
    pub fn with_segments(mut self, segment_duration: Duration, target_duration_secs: u32) -> Self {
        self.segmenter = SegmenterConfig {
            segment_duration_ms: u32::try_from(segment_duration.as_millis()).unwrap_or(u32::MAX),
            target_duration_secs,
        };
        self
    }

    /// Fixes the MPEG-TS playlist's target duration (whole seconds, rounded up; see
    /// [`LiveHlsConfig::ts_target_duration_secs`]), or derives it from the stream with `None`.
    pub fn with_ts_target_duration(mut self, target: Option<Duration>) -> Self {
        self.ts_target_duration_secs = target
            .filter(|target| !target.is_zero())
            .map(|target| u32::try_from(target.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX));
        self
    }

    /// Sets the longest segment allowed (whole seconds, rounded up, at least 1; see
    /// [`SegmenterConfig::target_duration_secs`]): GOPs up to it are cut whole, and the target
    /// duration derived from the stream's first GOPs may reach it.
    pub fn with_max_segment_duration(mut self, longest: Duration) -> Self {
        let secs = longest.as_secs_f64().ceil().max(1.0) as u64;
        self.segmenter.target_duration_secs = u32::try_from(secs).unwrap_or(u32::MAX);
        self
    }

    /// Mirrors playlists and segments into `directory` (see [`LiveHlsConfig::directory`]).
    pub fn with_directory(mut self, directory: impl Into<PathBuf>) -> Self {
        self.directory = Some(directory.into());
        self
    }

    /// Serves the LL-HLS rendition with partial segments of `part_target` (clamped to
    /// 100 ms..=2 s), or not at all with `None`.
    pub fn with_low_latency(mut self, part_target: Option<Duration>) -> Self {
        self.low_latency = part_target.map(|target| LlPackagerConfig {
            part_target_ms: u32::try_from(target.as_millis().clamp(100, 2_000)).unwrap_or(2_000),
        });
        self
    }

    /// Sets how long to wait for a republish and how long an ended playlist is kept.
    pub fn with_end_timing(mut self, republish_grace: Duration, ended_retention: Duration) -> Self {
        self.republish_grace = republish_grace;
        self.ended_retention = ended_retention;
        self
    }
}

/// A finished live segment, as announced on [`LiveHls::segment_notices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNotice {
    /// The stream.
    pub key: StreamKey,
    /// Media sequence number.
    pub sequence: u64,
    /// Stream timestamp of its first frame (ms), equal on every node.
    pub start_timestamp_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// BLAKE3 hash of the segment bytes.
    pub hash: blake3::Hash,
    /// Size in bytes.
    pub len: usize,
    /// The LL-HLS (fMP4) segment with the same sequence number, when that rendition is on.
    pub ll: Option<LlSegmentNotice>,
}

/// The fMP4 segment cut at the same frames as a [`SegmentNotice`]'s MPEG-TS segment. Its parts
/// are consecutive byte ranges of it, so a viewer that fetched the parts verifies the segment
/// hash over their concatenation, and each part against its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlSegmentNotice {
    /// BLAKE3 hash of the segment bytes (its parts, concatenated in order).
    pub hash: blake3::Hash,
    /// BLAKE3 hash of each part, in order.
    pub part_hashes: Vec<blake3::Hash>,
    /// Size in bytes.
    pub len: usize,
}

/// An LL-HLS partial segment just cut, as announced on [`LiveHls::part_notices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartNotice {
    /// The stream.
    pub key: StreamKey,
    /// Media sequence number of the segment the part belongs to.
    pub sequence: u64,
    /// The part's index within its segment.
    pub index: u32,
    /// BLAKE3 hash of the part bytes.
    pub hash: blake3::Hash,
    /// Size in bytes.
    pub len: usize,
    /// When it was cut, Unix milliseconds.
    pub cut_ms: u64,
}

/// One stream's playlist as served.
#[derive(Debug)]
struct StreamHls {
    playlist: RwLock<PlaylistView>,
    /// Bumped on every playlist change, for handlers waiting for the first segment.
    version: watch::Sender<u64>,
    /// The playlist has ended (EXT-X-ENDLIST); a new publish starts a new playlist.
    ended: AtomicBool,
    /// Sequence number the next segment of this stream key gets.
    next_sequence: AtomicU64,
    /// The LL-HLS rendition, when enabled.
    ll: Option<LlState>,
    /// The multivariant playlist, once a segment is listed.
    multivariant: RwLock<Option<Bytes>>,
    /// MPEG-TS carries none of the stream's tracks (AV1 with Opus): its playlist is refused.
    mpeg_ts_empty: AtomicBool,
}

/// One stream's LL-HLS playlist as served, with its renderings cached.
#[derive(Debug)]
struct LlState {
    view: RwLock<LlView>,
    /// Bumped on every change, for blocking playlist and part requests.
    version: watch::Sender<u64>,
}

impl LlState {
    /// How long a blocking request is held: three of the playlist's target durations once the
    /// target is known (RFC 8216bis), at most `limit`.
    fn hold(&self, limit: Duration) -> Duration {
        let view = self.view.read().unwrap_or_else(PoisonError::into_inner);
        if !view.playlist.has_segments() {
            return limit;
        }
        let target = u64::from(view.playlist.config().target_duration_secs.max(1));
        limit.min(Duration::from_secs(3 * target))
    }
}

#[derive(Debug)]
struct LlView {
    playlist: LlPlaylist,
    full: Bytes,
    delta: Bytes,
}

#[derive(Debug)]
struct PlaylistView {
    playlist: LivePlaylist,
    rendered: Bytes,
    segments: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Inner {
    hub: RelayHub,
    config: LiveHlsConfig,
    streams: Mutex<HashMap<StreamKey, Arc<StreamHls>>>,
    /// Next media sequence per stream key, so a stream published again never goes back.
    next_sequence: Mutex<HashMap<StreamKey, u64>>,
    notices: broadcast::Sender<SegmentNotice>,
    part_notices: broadcast::Sender<PartNotice>,
    shutdown: CancellationToken,
    /// Where a relay learns the origin's numbers; without it a relay numbers its own.
    numbering: OnceLock<Arc<dyn OriginNumbering>>,
    /// The hub watcher was started ([`LiveHls::start_watching`]).
    watching: AtomicBool,
}

/// Live HLS for every stream of a [`RelayHub`]: starts a segmenter task when a stream is
/// published and serves its playlist and segments from memory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveHls {
    inner: Arc<Inner>,
}

/// What an LL-HLS playlist request finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlLookup {
    /// The rendered playlist (full or delta).
    Ready(Bytes),
    /// The stream has no complete segment yet, or the blocking request timed out.
    Pending,
    /// The request asks for a segment or part too far ahead of the live edge.
    TooFar,
    /// Neither published nor recently ended, or LL-HLS is off.
    Unknown,
}

/// What a blocking playlist request asks for: `_HLS_msn`, `_HLS_part`, `_HLS_skip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlRequest {
    /// Hold the response until this media sequence number is in the playlist.
    pub msn: Option<u64>,
    /// ... and this part of it.
    pub part: Option<u32>,
    /// Answer with a delta playlist (EXT-X-SKIP).
    pub skip: bool,
}

/// What a playlist request finds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaylistLookup {
    /// The rendered playlist.
    Ready(Bytes),
    /// The stream's codecs cannot be carried in MPEG-TS (AV1 with Opus): its MPEG-TS segments
    /// would hold only the stream tables, so the MPEG-TS playlist is not served; the LL-HLS
    /// (fMP4) and multivariant playlists are.
    NotCarried,
    /// The stream is being segmented but has no segment yet.
    Pending,
    /// Neither published nor recently ended.
    Unknown,
}

impl LiveHls {
    /// Starts watching `hub` for published streams. Stops when `shutdown` is cancelled.
    ///
    /// Its first look at the hub comes at once: a stream already published is segmented from
    /// then on, and what it cuts before the caller subscribes to
    /// [`LiveHls::segment_notices`] or sets [`LiveHls::set_origin_numbering`] is not announced
    /// there nor numbered so. A caller that needs either from the first segment on makes it
    /// with [`LiveHls::new`] and calls [`LiveHls::start_watching`] afterwards.
    pub fn start(hub: RelayHub, config: LiveHlsConfig, shutdown: CancellationToken) -> Self {
        let live = Self::new(hub, config, shutdown);
        live.start_watching();
        live
    }

    /// Live HLS for `hub` that segments only the streams asked for (a playlist request) until
    /// [`LiveHls::start_watching`]: subscribe to its notices and set its origin numbering
    /// first, and nothing it cuts goes unannounced. Stops when `shutdown` is cancelled.
    pub fn new(hub: RelayHub, config: LiveHlsConfig, shutdown: CancellationToken) -> Self {
        let (notices, _) = broadcast::channel(256);
        let (part_notices, _) = broadcast::channel(256);
        LiveHls {
            inner: Arc::new(Inner {
                hub,
                config,
                streams: Mutex::new(HashMap::new()),
                next_sequence: Mutex::new(HashMap::new()),
                notices,
                part_notices,
                shutdown,
                numbering: OnceLock::new(),
                watching: AtomicBool::new(false),
            }),
        }
    }

    /// Starts segmenting every stream published on the hub, those published already first
    /// (from their first keyframe still held); checked every
    /// [`LiveHlsConfig::poll_interval`]. Does nothing when called again.
    pub fn start_watching(&self) {
        if self.inner.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let watcher = self.clone();
        tokio::spawn(async move { watcher.watch().await });
    }

    /// Every finished segment of every stream, with its hash (for reporting to a coordinator).
    pub fn segment_notices(&self) -> broadcast::Receiver<SegmentNotice> {
        self.inner.notices.subscribe()
    }

    /// Every LL-HLS part of every stream as it is cut, with its hash (for reporting to a
    /// coordinator before viewers fetch it).
    pub fn part_notices(&self) -> broadcast::Receiver<PartNotice> {
        self.inner.part_notices.subscribe()
    }

    /// Relays learn the origin's media sequence numbers from `numbering` (set once; streams
    /// started before keep their own numbers). Returns false when one was set already.
    pub fn set_origin_numbering(&self, numbering: Arc<dyn OriginNumbering>) -> bool {
        self.inner.numbering.set(numbering).is_ok()
    }

    /// The settings.
    pub fn config(&self) -> &LiveHlsConfig {
        &self.inner.config
    }

    async fn watch(self) {
        let mut tick = tokio::time::interval(self.inner.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for stats in self.inner.hub.all_stats() {
                if stats.publishing {
                    self.ensure_started(&stats.key);
                }
            }
        }
    }

    /// Starts segmenting `key` if it is published and not segmented yet. Returns its state.
    fn ensure_started(&self, key: &StreamKey) -> Option<Arc<StreamHls>> {
        let mut streams = lock(&self.inner.streams);
        let publishing = self.inner.hub.is_publishing(key);
        let mut first_sequence = lock(&self.inner.next_sequence)
            .get(key)
            .copied()
            .unwrap_or(0);
        if let Some(existing) = streams.get(key) {
            // An ended playlist stays served until its retention runs out, unless the stream is
            // published again: then a new playlist continues the media sequence.
            if !publishing || !existing.ended.load(Ordering::Acquire) {
                return Some(existing.clone());
            }
            first_sequence = existing.next_sequence.load(Ordering::Acquire);
        }
        if !publishing {
            return None;
        }
        // Read before subscribing: a gap recorded from here on is the subscription's to handle
        // (the task starts later, by when a burst of frames may have passed one).
        let upstream_gap_seen = self.inner.hub.last_upstream_gap(key).map(|gap| gap.rejoin);
        // An origin's segments start at the publish's first keyframe, however late (up to the
        // ring's reach) this started; a relay joins where its pull did and lists its segments
        // from the second on either way.
        let pulled = self.inner.hub.publisher_timeline(key) == Some(Timeline::Upstream);
        let subscription = if pulled {
            self.inner.hub.subscribe_internal(key.clone())
        } else {
            self.inner
                .hub
                .subscribe_internal_from_publish_start(key.clone())
        };
        let subscription = match subscription {
            Ok(subscription) => subscription,
            Err(error) => {
                debug!(%error, "live HLS could not subscribe");
                return None;
            }
        };
        let config = &self.inner.config;
        let playlist = LivePlaylist::new(PlaylistConfig {
            target_duration_secs: config.segmenter.target_duration_secs,
            window_segments: Some(config.window_segments),
            segment_uri_prefix: format!("{}/", key.name),
            ..PlaylistConfig::default()
        });
        let rendered = Bytes::from(playlist.render());
        let (version, _) = watch::channel(0);
        let ll = config.low_latency.map(|packager| {
            let playlist = LlPlaylist::new(LlPlaylistConfig {
                target_duration_secs: config.segmenter.target_duration_secs,
                part_target_ms: packager.part_target_ms,
                window_segments: config.window_segments,
                uri_prefix: String::new(),
            });
            let full = Bytes::from(playlist.render(false));
            LlState {
                view: RwLock::new(LlView {
                    playlist,
                    delta: full.clone(),
                    full,
                }),
                version: watch::channel(0).0,
            }
        });
        let state = Arc::new(StreamHls {
            playlist: RwLock::new(PlaylistView {
                playlist,
                rendered,
                segments: 0,
            }),
            version,
            ended: AtomicBool::new(false),
            next_sequence: AtomicU64::new(first_sequence),
            ll,
            multivariant: RwLock::new(None),
            mpeg_ts_empty: AtomicBool::new(false),
        });
        streams.insert(key.clone(), state.clone());
        drop(streams);
        info!(app = %key.app, stream = %key.name, "live HLS started");
        let directory = config
            .directory
            .as_ref()
            .map(|root| DirectoryWriter::start(root, key, first_sequence));
        // A relay pulling the stream joins it at its upstream's cached keyframe: the segment it
        // opens there may start after the upstream's, so it is not listed.
        let segmenter = Segmenter::with_first_sequence(config.segmenter, first_sequence);
        let segmenter = match config.ts_target_duration_secs {
            Some(secs) => segmenter.with_fixed_target_duration(secs),
            None => segmenter,
        };
        let segmenter = if pulled {
            segmenter.joining_mid_stream()
        } else {
            segmenter
        };
        let msn = if pulled && config.low_latency.is_some() && self.inner.numbering.get().is_some()
        {
            MsnMap::learning()
        } else {
            MsnMap::own()
        };
        let task = StreamTask {
            msn,
            live: self.clone(),
            key: key.clone(),
            state: state.clone(),
            segmenter,
            pulled,
            packager: config.low_latency.map(LlPackager::new),
            ll_completed: std::collections::VecDeque::new(),
            tracks: StreamTracks::new(),
            ll_sizes: std::collections::VecDeque::new(),
            directory,
            part_target_warned: false,
            logged_withdrawals: 0,
            gap_segments: std::collections::VecDeque::new(),
            timing_announced: false,
            upstream_gap_seen,
        };
        tokio::spawn(task.run(subscription));
        Some(state)
    }

    /// The playlist of `key`, starting live HLS when the stream is published but not yet
    /// segmented. Waits up to `wait` for a first segment.
    pub async fn playlist(&self, key: &StreamKey, wait: Duration) -> PlaylistLookup {
        let Some(state) = self.ensure_started(key) else {
            return PlaylistLookup::Unknown;
        };
        wait_for_playlist(&state, wait, |state| {
            let view = state
                .playlist
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if view.segments == 0 {
                None
            } else if state.mpeg_ts_empty.load(Ordering::Acquire) {
                Some(PlaylistLookup::NotCarried)
            } else {
                Some(PlaylistLookup::Ready(view.rendered.clone()))
            }
        })
        .await
    }

    /// The multivariant playlist of `key` (see [`render_multivariant`]), starting live HLS when
    /// the stream is published but not yet segmented. Waits up to `wait` for a first segment.
    pub async fn multivariant(&self, key: &StreamKey, wait: Duration) -> PlaylistLookup {
        let Some(state) = self.ensure_started(key) else {
            return PlaylistLookup::Unknown;
        };
        wait_for_playlist(&state, wait, |state| {
            let body = state.multivariant.read();
            let body = body.unwrap_or_else(PoisonError::into_inner);
            body.clone().map(PlaylistLookup::Ready)
        })
        .await
    }

    /// The LL-HLS playlist of `key`, starting live HLS when the stream is published but not yet
    /// segmented. A blocking request (`msn`) waits for that segment or part up to three of the
    /// playlist's target durations (at most `wait`); a plain one waits up to `wait` for a first
    /// segment.
    pub async fn ll_playlist(
        &self,
        key: &StreamKey,
        request: LlRequest,
        wait: Duration,
    ) -> LlLookup {
        let Some(state) = self.ensure_started(key) else {
            return LlLookup::Unknown;
        };
        let Some(ll) = &state.ll else {
            return LlLookup::Unknown;
        };
        let mut version = ll.version.subscribe();
        let wait = match request.msn {
            Some(_) => ll.hold(wait),
            None => wait,
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let view = ll.view.read().unwrap_or_else(PoisonError::into_inner);
                if view.playlist.has_segments() {
                    let blocking = match request.msn {
                        Some(msn) => view.playlist.blocking_state(msn, request.part),
                        None => BlockingState::Ready,
                    };
                    match blocking {
                        BlockingState::Ready => {
                            return LlLookup::Ready(if request.skip {
                                view.delta.clone()
                            } else {
                                view.full.clone()
                            })
                        }
                        BlockingState::TooFar => return LlLookup::TooFar,
                        BlockingState::Wait => {}
                    }
                }
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => continue,
                _ => return LlLookup::Pending,
            }
        }
    }

    /// An LL-HLS file of `key`: `init-*.mp4`, `{msn}.m4s` or `{msn}.{part}.m4s`. A part that is
    /// the next one or two to come (a preload hint) is waited for up to three of the playlist's
    /// target durations (at most `wait`).
    pub async fn ll_file(&self, key: &StreamKey, name: &str, wait: Duration) -> Option<Bytes> {
        let state = lock(&self.inner.streams).get(key).cloned()?;
        let ll = state.ll.as_ref()?;
        if name.starts_with("init-") && name.ends_with(".mp4") {
            let view = ll.view.read().unwrap_or_else(PoisonError::into_inner);
            return view.playlist.init(name);
        }
        let stem = name.strip_suffix(".m4s")?;
        let (msn, part) = match stem.split_once('.') {
            Some((msn, part)) => (msn.parse::<u64>().ok()?, Some(part.parse::<u32>().ok()?)),
            None => (stem.parse::<u64>().ok()?, None),
        };
        let mut version = ll.version.subscribe();
        let deadline = tokio::time::Instant::now() + ll.hold(wait);
        loop {
            {
                let view = ll.view.read().unwrap_or_else(PoisonError::into_inner);
                let found = match part {
                    Some(part) => view.playlist.part(msn, part),
                    None => view.playlist.segment(msn),
                };
                if found.is_some() {
                    return found;
                }
                // Only the parts a preload hint may name are worth waiting for.
                let upcoming = match (part, view.playlist.next_part()) {
                    (Some(part), Some((next_msn, next_part))) => {
                        (msn == next_msn && part >= next_part && part <= next_part + 1)
                            || (msn == next_msn + 1 && part == 0)
                    }
                    _ => false,
                };
                if !upcoming || view.playlist.is_ended() {
                    return None;
                }
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Whether a playlist of `key` is served: the stream is segmented here, live or ended
    /// within [`LiveHlsConfig::ended_retention`]. What it lists is served from memory, so a
    /// request for it needs no pull to arrive first.
    pub fn has_playlist(&self, key: &StreamKey) -> bool {
        lock(&self.inner.streams).contains_key(key)
    }

    /// Segment `sequence` of `key`, while it is kept in memory.
    pub fn segment(&self, key: &StreamKey, sequence: u64) -> Option<Bytes> {
        let state = lock(&self.inner.streams).get(key).cloned()?;
        let view = state
            .playlist
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        view.playlist.segment(sequence)
    }

    /// Drops an ended stream's playlist unless a new publish replaced it; true when dropped.
    fn forget(&self, key: &StreamKey, state: &Arc<StreamHls>) -> bool {
        let mut streams = lock(&self.inner.streams);
        if !streams.get(key).is_some_and(|s| Arc::ptr_eq(s, state)) {
            return false;
        }
        streams.remove(key);
        let next_sequence = state.next_sequence.load(Ordering::Acquire);
        lock(&self.inner.next_sequence).insert(key.clone(), next_sequence);
        true
    }
}

/// What `ready` finds in `state`, checked again on every playlist change for up to `wait`;
/// [`PlaylistLookup::Pending`] when it finds nothing in time.
async fn wait_for_playlist(
    state: &StreamHls,
    wait: Duration,
    ready: impl Fn(&StreamHls) -> Option<PlaylistLookup>,
) -> PlaylistLookup {
    let mut version = state.version.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(found) = ready(state) {
            return found;
        }
        match tokio::time::timeout_at(deadline, version.changed()).await {
            Ok(Ok(())) => continue,
            _ => return PlaylistLookup::Pending,
        }
    }
}

/// What woke a stream task.
enum Wake {
    /// Frames (0: the subscription ended).
    Frames(usize),
    /// The answer to a lookup of the origin's place of a part.
    Learned(Option<OriginPartPlace>),
    /// The origin's numbers were not learned in time.
    LearnTimeout,
}

/// A pending lookup of the origin's place of a held part.
type PlaceLookup = Pin<Box<dyn Future<Output = Option<OriginPartPlace>> + Send + 'static>>;

/// A relay learning the origin's numbers: the lookup on its way, the part asked last, and
/// when it gives up.
#[derive(Default)]
struct Learning {
    lookup: Option<(HeldPart, PlaceLookup)>,
    asked: Option<HeldPart>,
    deadline: Option<tokio::time::Instant>,
}

impl Learning {
    /// Asks for the origin's place of the first held part, or (when that was not found) of
    /// the newest one once a newer part is held; the time limit runs from the first ask.
    fn ask(&mut self, msn: &MsnMap, key: &StreamKey, numbering: Option<&Arc<dyn OriginNumbering>>) {
        let Some(numbering) = numbering.filter(|_| msn.is_learning() && self.lookup.is_none())
        else {
            return;
        };
        let part = match self.asked {
            None => msn.first_part(),
            Some(asked) => msn.newest_part().filter(|newest| *newest != asked),
        };
        let Some(part) = part else {
            return;
        };
        let now = tokio::time::Instant::now();
        let deadline = *self
            .deadline
            .get_or_insert(now + LEARN_ORIGIN_NUMBERS_WITHIN);
        let wait = deadline.saturating_duration_since(now);
        self.asked = Some(part);
        self.lookup = Some((
            part,
            numbering.origin_place(key, *part.hash.as_bytes(), wait),
        ));
    }
}

/// Where the first frames of a new subscription sit on the wall clock.
#[derive(Debug, Default)]
struct ClockAnchor {
    set: bool,
    first: Option<u32>,
    newest: u32,
}

struct StreamTask {
    /// The origin's numbering (a relay), or the task's own.
    msn: MsnMap,
    live: LiveHls,
    key: StreamKey,
    state: Arc<StreamHls>,
    segmenter: Segmenter,
    /// The current publisher is a pull continuing an upstream's timeline (a relay).
    pulled: bool,
    packager: Option<LlPackager>,
    /// fMP4 segments completed before their MPEG-TS twin was announced.
    ll_completed: std::collections::VecDeque<(u64, LlSegmentNotice)>,
    /// The stream's tracks, for the multivariant playlist.
    tracks: StreamTracks,
    /// Size and duration (ms) of the newest fMP4 segments, for their bandwidth.
    ll_sizes: std::collections::VecDeque<(usize, u64)>,
    directory: Option<DirectoryWriter>,
    /// A segment listed without parts because its frames break the part rules was logged
    /// (once per stream).
    part_target_warned: bool,
    /// Parts withdrawn and logged where that was decided (after an upstream gap, or when the
    /// part target was fixed from the frame timing), still to be published.
    logged_withdrawals: usize,
    /// The newest segments listed with EXT-X-GAP (numbers as published), newest last.
    gap_segments: std::collections::VecDeque<u64>,
    /// The stream's HLS timing was announced to the viewers of this publish: by this node
    /// ([`StreamTask::announce_timing`]) or by its upstream (the relay then takes it).
    timing_announced: bool,
    /// The newest upstream gap ([`UpstreamGap::rejoin`]) recorded when the task subscribed:
    /// frames before it were never the task's.
    upstream_gap_seen: Option<u64>,
}

impl StreamTask {
    async fn run(mut self, mut subscription: crate::relay::Subscription) {
        let shutdown = self.live.inner.shutdown.clone();
        let grace = self.live.inner.config.republish_grace;
        let mut events = Vec::with_capacity(64);
        let mut ended_at: Option<tokio::time::Instant> = None;
        // The newest frame's timestamp, and (after a relay's pull ended) where it stopped.
        let mut last_timestamp: Option<u32> = None;
        let mut resumed_after: Option<u32> = None;
        let mut clock = ClockAnchor::default();
        let mut unsupported_warned = std::collections::HashSet::new();
        let mut learning = Learning::default();
        // The origin's run the numbers in use were learned in, and (while learning them again
        // after it changed) the run a learned place must belong to.
        let mut learned_run: Option<u64> = None;
        let mut awaited_run: Option<u64> = None;
        // The newest upstream gap seen, and one whose first frame is still to come (see
        // `after_upstream_gap`).
        let mut gaps_seen = self.upstream_gap_seen;
        let mut pending_gap: Option<UpstreamGap> = None;
        // Frames the subscription skipped, as last seen (see `after_lag_skip`).
        let mut frames_skipped = 0;
        loop {
            events.clear();
            learning.ask(&self.msn, &self.key, self.live.inner.numbering.get());
            let wake = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = async {
                    match ended_at {
                        Some(at) => tokio::time::sleep_until(at + grace).await,
                        None => std::future::pending().await,
                    }
                } => break,
                learned = async {
                    match learning.lookup.as_mut() {
                        Some((_, lookup)) => lookup.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => Wake::Learned(learned),
                _ = async {
                    match learning.deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::LearnTimeout,
                received = subscription.recv_batch(&mut events, 64) => Wake::Frames(received),
            };
            let received = match wake {
                Wake::Frames(received) => received,
                Wake::Learned(place) => {
                    let asked = learning.lookup.take().map(|(part, _)| part);
                    // After the origin's run changed, a part still of the old run does not
                    // tell the new numbers: the next ask is for a newer part.
                    let place = place.filter(|place| {
                        awaited_run.is_none_or(|run| place.run.is_none_or(|of| of == run))
                    });
                    if let (Some(part), Some(place)) = (asked, place) {
                        self.learned(part, place);
                        if !self.msn.is_learning() {
                            learning = Learning::default();
                            learned_run = place.run;
                            awaited_run = None;
                        }
                    }
                    continue;
                }
                Wake::LearnTimeout => {
                    learning = Learning::default();
                    self.stop_learning(
                        "the origin's report of the first parts did not come in time",
                    );
                    continue;
                }
            };
            if received == 0 {
                break;
            }
            if let Some(run) = self.origin_run_changed(learned_run) {
                info!(app = %self.key.app, stream = %self.key.name, run = format_args!("{run:016x}"),
                    "the origin's numbering run changed: learning its media sequence numbers again");
                self.msn.relearn();
                learning = Learning::default();
                learned_run = None;
                awaited_run = Some(run);
            }
            if self.pulled {
                // Recorded before the first frame after it was relayed: in this batch or a
                // later one.
                if let Some(gap) = self
                    .live
                    .inner
                    .hub
                    .last_upstream_gap(&self.key)
                    .filter(|gap| gaps_seen != Some(gap.rejoin))
                {
                    gaps_seen = Some(gap.rejoin);
                    pending_gap = Some(gap);
                }
            }
            // A skip comes before every frame of the batch it is in: the ring drops what a
            // consumer has not read only while nothing reads.
            let skipped = subscription.stats().frames_dropped;
            if skipped > frames_skipped {
                self.after_lag_skip(skipped - frames_skipped);
                frames_skipped = skipped;
            }
            if !clock.set {
                // A full batch means the cached GOP is still being replayed.
                self.anchor_clock(&mut clock, &events, received < 64);
            }
            for event in events.drain(..) {
                let outcome = match event {
                    RelayEvent::Frame(frame)
                        if frame.kind() == FrameKind::Metadata
                            && is_upstream_unpublished(frame.payload()) =>
                    {
                        if !self.pulled {
                            continue;
                        }
                        // The upstream's publisher left: the upstream ended its open segment
                        // and part after this frame (as an origin does below, when its
                        // publisher leaves), so this relay does too.
                        let closed = self.segmenter.discontinuity();
                        self.package(None);
                        closed
                    }
                    RelayEvent::Frame(frame) => {
                        let tag_type = match frame.kind() {
                            FrameKind::Audio => FlvTagType::Audio,
                            FrameKind::Video => FlvTagType::Video,
                            FrameKind::Metadata => FlvTagType::ScriptData,
                            // Timed data (captions, cue points) is left out of HLS: it would
                            // take ID3 timed metadata, which the segmenters do not write.
                            FrameKind::Data => continue,
                        };
                        let tag = FlvTag {
                            tag_type,
                            timestamp: frame.timestamp(),
                            stream_id: 0,
                            data: frame.payload().clone(),
                        };
                        if let Some(last) = resumed_after.filter(|_| frame.is_coded_media()) {
                            resumed_after = None;
                            if frame.timestamp() < last {
                                // Not a resumed pull but a new timeline (the upstream started
                                // over): the open segment and part end where the last pull
                                // stopped.
                                let closed = self.segmenter.discontinuity();
                                self.package(None);
                                self.apply(closed);
                                // The origin may have started its numbering over too.
                                if self.live.inner.numbering.get().is_some()
                                    && self.packager.is_some()
                                {
                                    self.msn.relearn();
                                    learning = Learning::default();
                                }
                            }
                        }
                        if let Some(gap) = pending_gap.filter(|gap| {
                            frame.is_coded_media() && frame.timestamp() >= gap.resumed_ms
                        }) {
                            pending_gap = None;
                            self.after_upstream_gap(gap);
                        }
                        if frame.is_coded_media() {
                            last_timestamp = Some(frame.timestamp());
                        }
                        if tag.tag_type == FlvTagType::ScriptData
                            && crate::hls::is_timing_message(&tag.data)
                        {
                            self.timing_announced = true;
                        }
                        self.tracks.push(&tag);
                        let pushed = self.segmenter.push(&tag);
                        self.package(Some(&tag));
                        self.announce_timing();
                        match pushed {
                            Ok(out) => out,
                            Err(TsError::UnsupportedCodec { kind, codec, .. }) => {
                                if unsupported_warned.insert(kind) {
                                    warn!(
                                        app = %self.key.app,
                                        stream = %self.key.name,
                                        ?kind,
                                        ?codec,
                                        "this codec cannot be carried in HLS (MPEG-TS): the stream's HLS output leaves it out (RTMP and HTTP-FLV viewers still get it)"
                                    );
                                }
                                continue;
                            }
                            Err(error) => {
                                debug!(%error, stream = %self.key.name, "frame not segmented");
                                continue;
                            }
                        }
                    }
                    RelayEvent::PublisherEnded if self.pulled => {
                        resumed_after = last_timestamp;
                        // A relay's pull that ends (its upstream switched, or was lost for a
                        // moment) is resumed where it stopped: the hub drops what the next
                        // pull replays and goes on with the frame that follows. Cutting the
                        // open segment and part here would list a part and a segment the
                        // origin never cut; they stay open, and are closed where the upstream
                        // closes them, or left unlisted and uncut when the stream ends.
                        ended_at = Some(tokio::time::Instant::now());
                        Vec::new()
                    }
                    RelayEvent::PublisherEnded => {
                        ended_at = Some(tokio::time::Instant::now());
                        // The segmenter first: it fixes the target duration both playlists use.
                        let closed = self.segmenter.discontinuity();
                        self.package(None);
                        closed
                    }
                    RelayEvent::PublisherStarted => {
                        ended_at = None;
                        // A new publish starts without the announcement: made again.
                        self.timing_announced = false;
                        self.announce_timing();
                        self.pulled = self.live.inner.hub.publisher_timeline(&self.key)
                            == Some(Timeline::Upstream);
                        Vec::new()
                    }
                };
                self.apply(outcome);
            }
        }
        drop(subscription);
        if self.msn.is_learning() {
            self.stop_learning("the stream ended");
        }
        // A relay (shutting down, or its pull gone for good) leaves its open segment unlisted
        // and its open part uncut: cut short here they would not be the segment and part the
        // origin cuts, and a viewer would be served bytes no origin report vouches for.
        let finished = if self.pulled {
            self.segmenter.finish_leaving_open_segment()
        } else {
            self.segmenter.finish()
        };
        if !self.pulled {
            self.package(None);
        }
        self.apply(finished);
        self.with_ll(|playlist| {
            playlist.end();
            true
        });
        self.mirror_ll(Vec::new(), Vec::new());
        self.state.ended.store(true, Ordering::Release);
        info!(app = %self.key.app, stream = %self.key.name, "live HLS ended");
        let retention = self.live.inner.config.ended_retention;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(retention) => {}
        }
        if self.live.forget(&self.key, &self.state) && !shutdown.is_cancelled() {
            if let Some(directory) = &self.directory {
                directory.send(DirectoryJob::RemoveAll);
            }
        }
    }

    /// Anchors EXT-X-PROGRAM-DATE-TIME once the subscriber caught up: a new subscriber's first
    /// batches replay the cached GOP, so when a batch is not full its newest frame is the one
    /// published now, and every segment's first frame is older (or newer) by their timestamp
    /// difference.
    fn anchor_clock(&self, clock: &mut ClockAnchor, events: &[RelayEvent], caught_up: bool) {
        for event in events {
            if let RelayEvent::Frame(frame) = event {
                if frame.is_coded_media() {
                    clock.first.get_or_insert(frame.timestamp());
                    clock.newest = clock.newest.max(frame.timestamp());
                }
            }
        }
        if clock.first.is_none() || !caught_up {
            return;
        }
        clock.set = true;
        // Each playlist stamps its next segment from that segment's own first frame: a relay's
        // first segment, cut but not listed, must not move the first one listed back by its
        // duration.
        let newest = u64::from(clock.newest);
        let now = SystemTime::now();
        self.with_playlist(|p| p.set_program_date_time_at(now, newest));
        self.with_ll(|p| {
            p.set_program_date_time_at(now, newest);
            true
        });
    }

    /// The relay's pull resumed after a failover or reconnect past a gap (`gap`, reached by
    /// the frame about to be segmented): the new upstream replayed nothing at or before what
    /// was relayed, so frames may be lost (it ignored `streamr_resume`, or the outage outlasted
    /// its ring), and what the open segment gets from here on is not the upstream's. Its LL-HLS
    /// parts from here on are not listed, and the segment is listed with EXT-X-GAP in both
    /// renditions (under its number, so the ones after it keep theirs): players skip it, and
    /// nothing of it is served, mirrored or announced.
    fn after_upstream_gap(&mut self, gap: UpstreamGap) {
        let open = self.segmenter.current_segment();
        let sequence = open.map(|s| s.sequence);
        warn!(
            app = %self.key.app,
            stream = %self.key.name,
            after_ms = gap.after_ms,
            resumed_ms = gap.resumed_ms,
            ?sequence,
            "this relay's pull resumed past frames its new upstream did not replay (it ignores streamr_resume, or the outage outlasted its ring): the open segment is not the origin's, and is listed as EXT-X-GAP"
        );
        self.withdraw_open_segment(open);
    }

    /// This node's live HLS fell so far behind the stream that the ring's hard limits dropped
    /// `skipped` frames it had not read (the task starved of CPU while frames kept coming): the
    /// frames up to the next keyframe are lost. A relay's open segment is then not the
    /// origin's, and is withdrawn as after an upstream gap. An origin's segments are the
    /// stream's own whatever they hold: they stay, with the hole.
    fn after_lag_skip(&mut self, skipped: u64) {
        let open = self.segmenter.current_segment();
        let sequence = open.map(|s| s.sequence);
        if !self.pulled {
            warn!(
                app = %self.key.app,
                stream = %self.key.name,
                skipped,
                ?sequence,
                "live HLS fell behind the stream beyond the ring's limits: the frames up to the next keyframe are not in its segments"
            );
            return;
        }
        warn!(
            app = %self.key.app,
            stream = %self.key.name,
            skipped,
            ?sequence,
            "this relay's live HLS fell behind the stream beyond the ring's limits and lost frames up to the next keyframe: the open segment is not the origin's, and is listed as EXT-X-GAP"
        );
        self.withdraw_open_segment(open);
    }

    /// Withdraws what the open segment (`open`) cut from here on: its LL-HLS parts are not
    /// listed, and a listed segment is marked EXT-X-GAP in both renditions.
    fn withdraw_open_segment(&mut self, open: Option<OpenSegmentInfo>) {
        if let Some(packager) = self.packager.as_mut() {
            let events = packager.withdraw_open_parts();
            if !events.is_empty() {
                self.logged_withdrawals += events
                    .iter()
                    .filter(|e| matches!(e, LlEvent::PartsWithdrawn { .. }))
                    .count();
                self.emit(Batch::Ll(events));
            }
        }
        // A segment not listed (a relay's first, cut where it joined) needs no mark.
        if let Some(open) = open.filter(|open| open.listed) {
            self.emit(Batch::Gap(open.sequence));
        }
    }

    /// Segment `sequence` (numbers final) is listed with EXT-X-GAP: marked in the LL-HLS
    /// playlist now (its entry is open), in the MPEG-TS one when it completes.
    fn publish_gap(&mut self, sequence: u64) {
        if self.gap_segments.len() >= 16 {
            self.gap_segments.pop_front();
        }
        self.gap_segments.push_back(sequence);
        self.with_ll(|playlist| playlist.mark_gap(sequence));
        // Its parts mirrored before the gap are no longer listed: deleted now, not when the
        // segment leaves the window.
        self.mirror_ll(Vec::new(), vec![sequence]);
    }

    /// Whether segment `sequence` (numbers final) is listed with EXT-X-GAP.
    fn is_gap(&self, sequence: u64) -> bool {
        self.gap_segments.contains(&sequence)
    }

    /// Feeds the LL-HLS packager the tag just given to the segmenter, or flushes it (`None`:
    /// the publisher left or the stream ends), and publishes what changed.
    /// Announces the HLS timing this node chose ([`HlsTiming`]) to the viewers of the
    /// stream, relays pulling it among them, once both targets are fixed, unless it was
    /// announced already (by an upstream, when this node relays).
    fn announce_timing(&mut self) {
        if self.timing_announced {
            return;
        }
        let Some(target_duration_secs) = self.segmenter.target_duration_secs() else {
            return;
        };
        let part_target_ms = match &self.packager {
            Some(packager) if !packager.part_target_fixed() => return,
            Some(packager) => Some(packager.part_target_ms()),
            None => None,
        };
        let timing = HlsTiming {
            part_target_ms,
            target_duration_secs,
        };
        if self.live.inner.hub.announce(&self.key, timing.encode()) {
            self.timing_announced = true;
            debug!(app = %self.key.app, stream = %self.key.name, ?timing, "HLS timing announced");
        }
    }

    fn package(&mut self, tag: Option<&FlvTag>) {
        let Some(packager) = self.packager.as_mut() else {
            return;
        };
        let before = (packager.part_target_fixed(), packager.part_target_ms());
        let outcome = match tag {
            Some(tag) => packager.push(tag, self.segmenter.current_segment()),
            None => packager.flush(),
        };
        let events = match outcome {
            Ok(events) => events,
            Err(error) => {
                debug!(%error, stream = %self.key.name, "frame not packaged for LL-HLS");
                return;
            }
        };
        let part_target_ms = packager.part_target_ms();
        if packager.part_target_fixed() && before != (true, part_target_ms) {
            let from_upstream = tag.is_some_and(|tag| {
                tag.tag_type == FlvTagType::ScriptData && crate::hls::is_timing_message(&tag.data)
            });
            // A segment not reported yet is reported withdrawn with its first part.
            let withdrawn = events
                .iter()
                .filter(|e| matches!(e, LlEvent::PartsWithdrawn { .. }))
                .count()
                + usize::from(packager.withdrawal_unreported());
            // The first segment's parts, cut for a provisional target, are withdrawn when the
            // frame timing fixes another: logged here, not as frames mistimed.
            self.logged_withdrawals += withdrawn;
            info!(
                app = %self.key.app,
                stream = %self.key.name,
                part_target_ms,
                first_segment_listed_whole = withdrawn > 0,
                from_upstream,
                "LL-HLS PART-TARGET fixed (from the upstream's announcement, or from the stream's frame timing)"
            );
        }
        self.emit(Batch::Ll(events));
    }

    /// Passes events on to the playlists, or holds them while the origin's numbers are learned.
    fn emit(&mut self, batch: Batch) {
        if let Some(batch) = self.msn.push(batch) {
            self.publish(batch);
        }
    }

    fn publish(&mut self, batch: Batch) {
        match batch {
            Batch::Ts(events) => self.publish_ts(events),
            Batch::Ll(events) => self.publish_ll(events),
            Batch::Gap(sequence) => self.publish_gap(sequence),
        }
    }

    /// The origin's new run, when this relay listed under the origin's numbers of run `learned`
    /// and the origin's reports now name another (only a relay cutting LL-HLS parts learns).
    fn origin_run_changed(&self, learned: Option<u64>) -> Option<u64> {
        let learned = learned?;
        if !self.pulled || self.packager.is_none() || self.msn.is_learning() {
            return None;
        }
        let now = self.live.inner.numbering.get()?.origin_run(&self.key)?;
        (now != learned).then_some(now)
    }

    /// The origin numbers `part` as `place`: the held events go out under its numbers.
    fn learned(&mut self, part: HeldPart, place: OriginPartPlace) {
        match self.msn.learned(part, place.msn, place.index) {
            Ok(batches) => {
                info!(app = %self.key.app, stream = %self.key.name, origin_msn = place.msn,
                    offset = self.msn.offset(), "listing segments under the origin's media sequence numbers");
                for batch in batches {
                    self.publish(batch);
                }
            }
            Err(Refused::NotLearning) => {}
            Err(refused) => {
                let why = match refused {
                    Refused::OtherIndex => "the origin's part sits at another index",
                    _ => "the origin's numbers went back below what is listed already",
                };
                self.stop_learning(why);
            }
        }
    }

    /// Lists what was held under the numbers in use (the relay's own unless learned before).
    fn stop_learning(&mut self, why: &str) {
        warn!(app = %self.key.app, stream = %self.key.name, reason = why, offset = self.msn.offset(),
            "cannot learn the origin's media sequence numbers: this relay's playlists number segments its own way, so a player failing over between nodes by _HLS_msn may land elsewhere");
        for batch in self.msn.give_up() {
            self.publish(batch);
        }
    }

    /// Announces LL-HLS events and applies them to the playlist (numbers final).
    fn publish_ll(&mut self, events: Vec<LlEvent>) {
        for event in &events {
            if let LlEvent::PartReady(part) = event {
                let cut_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                    });
                let _ = self.live.inner.part_notices.send(PartNotice {
                    key: self.key.clone(),
                    sequence: part.sequence,
                    index: part.index,
                    hash: part.hash,
                    len: part.bytes.len(),
                    cut_ms,
                });
            }
            if let LlEvent::SegmentReady(segment) = event {
                if self.ll_sizes.len() >= self.live.inner.config.window_segments.max(6) {
                    self.ll_sizes.pop_front();
                }
                self.ll_sizes
                    .push_back((segment.bytes.len(), segment.duration_ms));
                if self.ll_completed.len() >= 8 {
                    self.ll_completed.pop_front();
                }
                self.ll_completed.push_back((
                    segment.sequence,
                    LlSegmentNotice {
                        hash: segment.hash,
                        part_hashes: segment.part_hashes.clone(),
                        len: segment.bytes.len(),
                    },
                ));
            }
        }
        // TARGETDURATION is the segmenter's (derived from the first GOPs, fixed, or taken from
        // the origin's announcement, known when the first listed segment closes), PART-TARGET
        // the packager's (from the configuration and what every node receives before the first
        // frame, fixed when the first segment closes): every node declares the same.
        // Events held while a relay learned the origin's numbers are published later, from
        // the same packager (it outlives the stream's events).
        let part_target = self
            .packager
            .as_ref()
            .map_or(0, |packager| packager.part_target_ms());
        let mut withdrawn = None;
        for event in &events {
            if let LlEvent::PartsWithdrawn { sequence } = event {
                // Those after an upstream gap were logged there, and come in order.
                if self.logged_withdrawals > 0 {
                    self.logged_withdrawals -= 1;
                } else {
                    withdrawn.get_or_insert(*sequence);
                }
            }
        }
        if let Some(sequence) = withdrawn.filter(|_| !self.part_target_warned && part_target > 0) {
            self.part_target_warned = true;
            warn!(
                app = %self.key.app,
                stream = %self.key.name,
                sequence,
                part_target_ms = part_target,
                "the stream's frames are not timed as its onMetaData framerate declares (or it declares none): an LL-HLS segment whose parts would break PART-TARGET is listed without parts, so LL-HLS players wait for the whole segment there (logged once per stream)"
            );
        }
        let target_duration = self.segmenter.ll_target_duration_secs();
        self.with_ll(|playlist| {
            if part_target > 0 {
                playlist.set_part_target(part_target);
            }
            if let Some(secs) = target_duration {
                playlist.set_target_duration(secs);
            }
            for event in &events {
                playlist.apply(event);
            }
            true
        });
        if self.directory.is_some() {
            let files = events
                .iter()
                .filter(|event| match event {
                    // Nothing of a gap segment is mirrored.
                    LlEvent::PartReady(part) => !self.is_gap(part.sequence),
                    LlEvent::SegmentReady(segment) => !self.is_gap(segment.sequence),
                    _ => true,
                })
                .filter_map(|event| match event {
                    LlEvent::SegmentStarted { init, .. } => {
                        Some((init.name.clone(), init.bytes.clone()))
                    }
                    LlEvent::PartReady(part) => Some((
                        format!("{}.{}.m4s", part.sequence, part.index),
                        part.bytes.clone(),
                    )),
                    LlEvent::SegmentReady(segment) => {
                        Some((format!("{}.m4s", segment.sequence), segment.bytes.clone()))
                    }
                    LlEvent::PartsWithdrawn { .. } => None,
                })
                .collect();
            self.mirror_ll(files, Vec::new());
        }
    }

    /// Sends the LL-HLS rendition's new files and its playlist to the directory mirror, with
    /// the segments newly listed with EXT-X-GAP (`gaps`), whose files are deleted.
    fn mirror_ll(&self, files: Vec<(String, Bytes)>, gaps: Vec<u64>) {
        let (Some(directory), Some(ll)) = (&self.directory, &self.state.ll) else {
            return;
        };
        let view = ll.view.read().unwrap_or_else(PoisonError::into_inner);
        let playlist = view.playlist.has_segments().then(|| view.full.clone());
        let oldest = view.playlist.oldest_sequence();
        drop(view);
        directory.send(DirectoryJob::SyncLl(Box::new(LlMirrorJob {
            files,
            playlist,
            oldest,
            gaps,
        })));
    }

    /// Changes the LL-HLS playlist; when `change` returns true the cached renderings are
    /// refreshed and waiting requests woken.
    fn with_ll(&self, change: impl FnOnce(&mut LlPlaylist) -> bool) {
        let Some(ll) = &self.state.ll else {
            return;
        };
        {
            let mut view = ll.view.write().unwrap_or_else(PoisonError::into_inner);
            if !change(&mut view.playlist) {
                return;
            }
            view.full = Bytes::from(view.playlist.render(false));
            view.delta = Bytes::from(view.playlist.render(true));
        }
        ll.version.send_modify(|v| *v += 1);
    }

    fn with_playlist(&self, change: impl FnOnce(&mut LivePlaylist)) {
        let mut view = self
            .state
            .playlist
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut view.playlist);
    }

    /// Applies segmenter events to the served playlist and announces finished segments, once
    /// their numbers are final (see [`StreamTask::emit`]).
    fn apply(&mut self, events: Vec<SegmenterEvent>) {
        self.emit(Batch::Ts(events));
    }

    fn publish_ts(&mut self, events: Vec<SegmenterEvent>) {
        if events.is_empty() {
            return;
        }
        {
            let mut view = self
                .state
                .playlist
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for event in &events {
                match event {
                    SegmenterEvent::SegmentReady(segment) => {
                        if let Some(target) = self.segmenter.target_duration_secs() {
                            view.playlist.set_target_duration(target);
                        }
                        self.tracks
                            .segment_listed(segment.start_timestamp_ms, segment.duration_ms);
                        // RFC 8216: each EXTINF, rounded to the nearest second, at most the target.
                        if segment.duration_ms.saturating_add(499) / 1_000
                            > u64::from(view.playlist.target_duration_secs())
                        {
                            warn!(
                                stream = %self.key.name,
                                sequence = segment.sequence,
                                duration_ms = segment.duration_ms,
                                target = view.playlist.target_duration_secs(),
                                "a segment longer than EXT-X-TARGETDURATION"
                            );
                        }
                        view.playlist.push(segment, true);
                        view.segments += 1;
                        self.state
                            .next_sequence
                            .store(segment.sequence + 1, Ordering::Release);
                        let ll = self
                            .ll_completed
                            .iter()
                            .position(|(sequence, _)| *sequence == segment.sequence)
                            .and_then(|at| self.ll_completed.remove(at))
                            .map(|(_, notice)| notice);
                        if self.gap_segments.contains(&segment.sequence) {
                            // Listed with EXT-X-GAP: not served, mirrored nor announced.
                            view.playlist.mark_gap(segment.sequence);
                            continue;
                        }
                        let _ = self.live.inner.notices.send(SegmentNotice {
                            key: self.key.clone(),
                            sequence: segment.sequence,
                            start_timestamp_ms: segment.start_timestamp_ms,
                            duration_ms: segment.duration_ms,
                            hash: segment.hash,
                            len: segment.bytes.len(),
                            ll,
                        });
                    }
                    SegmenterEvent::Ended => view.playlist.end(),
                    SegmenterEvent::CodecLeftOut { kind, codec } => warn!(
                        app = %self.key.app,
                        stream = %self.key.name,
                        ?kind,
                        ?codec,
                        "this codec cannot be carried in MPEG-TS: the TS HLS rendition leaves it out; the LL-HLS (fMP4) rendition, RTMP and HTTP-FLV viewers get it"
                    ),
                }
            }
            let text = view.playlist.render();
            let mpeg_ts_empty = self.tracks.mpeg_ts_carries_nothing();
            self.state
                .mpeg_ts_empty
                .store(mpeg_ts_empty, Ordering::Release);
            if let Some(directory) = &self.directory {
                // Segments holding only the stream tables are not mirrored either.
                if !mpeg_ts_empty {
                    directory.send(DirectoryJob::Sync(Box::new(view.playlist.clone())));
                }
            }
            view.rendered = Bytes::from(text);
            if view.segments > 0 {
                self.update_multivariant(&view.playlist);
            }
        }
        self.state.version.send_modify(|v| *v += 1);
    }

    /// Renders the multivariant playlist: the LL-HLS rendition, then the MPEG-TS one, each only
    /// when it carries every track HLS can carry, with the bandwidth its listed segments took.
    fn update_multivariant(&self, ts_playlist: &LivePlaylist) {
        let target = ts_playlist.target_duration_secs();
        let mut variants = Vec::new();
        let mut variant = |uri: String, rendition: Rendition, sizes: &[(usize, u64)]| {
            let codecs = self.tracks.codecs(rendition)?;
            let (peak, average) = segment_bit_rates(sizes, target)?;
            variants.push(Variant {
                uri,
                bandwidth: peak,
                average_bandwidth: Some(average),
                codecs,
                resolution: self.tracks.resolution(),
                frame_rate: self.tracks.frame_rate(),
            });
            Some(())
        };
        if self.state.ll.is_some() {
            let sizes: Vec<(usize, u64)> = self.ll_sizes.iter().copied().collect();
            variant(
                crate::http::ll_hls::LL_PLAYLIST_NAME.to_owned(),
                Rendition::Fmp4,
                &sizes,
            );
        }
        let sizes: Vec<(usize, u64)> = ts_playlist
            .listed()
            .filter_map(|entry| Some((entry.bytes.as_ref()?.len(), entry.duration_ms)))
            .collect();
        variant(
            format!("../{}.m3u8", self.key.name),
            Rendition::MpegTs,
            &sizes,
        );
        if variants.is_empty() {
            return;
        }
        let body = Bytes::from(render_multivariant(&variants));
        if let Some(directory) = &self.directory {
            directory.send(DirectoryJob::Multivariant(body.clone()));
        }
        *self
            .state
            .multivariant
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(body);
    }
}

/// Work for a stream's directory mirror, done in order on a blocking thread.
enum DirectoryJob {
    /// Bring the directory up to this playlist: its segments, then the playlist file, then
    /// deleting segments that left it.
    Sync(Box<LivePlaylist>),
    /// Write the LL-HLS rendition's new files, then its playlist, then delete the files of
    /// segments it no longer keeps.
    SyncLl(Box<LlMirrorJob>),
    /// Write the multivariant playlist.
    Multivariant(Bytes),
    /// The stream's playlist was dropped: delete its files.
    RemoveAll,
}

/// The LL-HLS rendition's changes for the directory mirror.
struct LlMirrorJob {
    /// New files: init segments, parts and segments, by file name.
    files: Vec<(String, Bytes)>,
    /// The full playlist, once it lists a segment.
    playlist: Option<Bytes>,
    /// The oldest segment the playlist keeps: files of older ones are deleted.
    oldest: Option<u64>,
    /// Segments now listed with EXT-X-GAP: their files (parts written before the gap) are
    /// deleted, as the playlist lists none of them.
    gaps: Vec<u64>,
}

/// Writes one stream's playlist and segments to disk off the async workers, in order.
struct DirectoryWriter {
    jobs: std::sync::mpsc::Sender<DirectoryJob>,
}

impl DirectoryWriter {
    fn start(root: &std::path::Path, key: &StreamKey, first_sequence: u64) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel();
        let app_dir = root.join(&key.app);
        let segments_dir = app_dir.join(&key.name);
        let playlist_path = app_dir.join(format!("{}.m3u8", key.name));
        let stream = key.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut mirror = DirectoryMirror {
                segments_dir,
                playlist_path,
                directory: None,
                on_disk: std::collections::BTreeSet::new(),
                removed_below: first_sequence,
                ll_on_disk: std::collections::BTreeSet::new(),
                failing: false,
                stream,
            };
            for job in queue {
                match job {
                    DirectoryJob::Sync(playlist) => mirror.sync(&playlist),
                    DirectoryJob::SyncLl(job) => mirror.sync_ll(&job),
                    DirectoryJob::Multivariant(body) => mirror.write_multivariant(&body),
                    DirectoryJob::RemoveAll => mirror.remove_all(),
                }
            }
        });
        DirectoryWriter { jobs }
    }

    fn send(&self, job: DirectoryJob) {
        // The writer thread lives as long as this sender.
        let _ = self.jobs.send(job);
    }
}

/// The on-disk copy of one stream's playlist.
struct DirectoryMirror {
    segments_dir: PathBuf,
    playlist_path: PathBuf,
    /// Created on first use, and again after a failure.
    directory: Option<HlsDirectory>,
    /// Segments completely written.
    on_disk: std::collections::BTreeSet<u64>,
    /// Segments below this were deleted.
    removed_below: u64,
    /// LL-HLS files completely written, by name.
    ll_on_disk: std::collections::BTreeSet<String>,
    /// The last sync failed: the on-disk playlist is behind the served one.
    failing: bool,
    stream: crate::name::StreamName,
}

impl DirectoryMirror {
    fn sync(&mut self, playlist: &LivePlaylist) {
        let result = self.try_sync(playlist);
        self.report(result);
    }

    fn write_multivariant(&mut self, body: &Bytes) {
        let result = self
            .directory()
            .and_then(|directory| directory.write_file(MULTIVARIANT_NAME, body));
        self.report(result);
    }

    fn sync_ll(&mut self, job: &LlMirrorJob) {
        let result = self.try_sync_ll(job);
        self.report(result);
    }

    /// Writes the new LL-HLS files, then the playlist (so it lists only complete files), then
    /// deletes the files of segments older than the oldest kept and of segments listed with
    /// EXT-X-GAP.
    fn try_sync_ll(&mut self, job: &LlMirrorJob) -> Result<(), crate::hls::HlsWriteError> {
        let directory = self.directory()?;
        for (name, bytes) in &job.files {
            if self.ll_on_disk.contains(name) {
                continue;
            }
            directory.write_file(name, bytes)?;
            self.ll_on_disk.insert(name.clone());
        }
        if let Some(playlist) = &job.playlist {
            directory.write_file(crate::http::ll_hls::LL_PLAYLIST_NAME, playlist)?;
        }
        let msn = |name: &str| name.split('.').next().and_then(|n| n.parse::<u64>().ok());
        let unlisted: Vec<String> = self
            .ll_on_disk
            .iter()
            .filter(|name| {
                msn(name).is_some_and(|msn| {
                    job.oldest.is_some_and(|oldest| msn < oldest) || job.gaps.contains(&msn)
                })
            })
            .cloned()
            .collect();
        for name in unlisted {
            directory.remove_file(&name)?;
            self.ll_on_disk.remove(&name);
        }
        Ok(())
    }

    fn directory(&mut self) -> Result<HlsDirectory, crate::hls::HlsWriteError> {
        Ok(match &self.directory {
            Some(directory) => directory.clone(),
            None => {
                let created = HlsDirectory::create_split(&self.segments_dir, &self.playlist_path)?;
                self.directory = Some(created.clone());
                created
            }
        })
    }

    fn report(&mut self, result: Result<(), crate::hls::HlsWriteError>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                info!(stream = %self.stream, "HLS directory mirror writes again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                warn!(%error, stream = %self.stream, "HLS directory mirror write failed; serving from memory, the on-disk playlist stays at its last complete state until writes succeed");
            }
            Err(error) => debug!(%error, "HLS directory mirror still failing"),
        }
    }

    /// Writes the listed segments not on disk yet, then the playlist (so it lists only complete
    /// files), then deletes segments the playlist no longer keeps.
    fn try_sync(&mut self, playlist: &LivePlaylist) -> Result<(), crate::hls::HlsWriteError> {
        let directory = self.directory()?;
        for entry in playlist.listed() {
            if self.on_disk.contains(&entry.sequence) {
                continue;
            }
            let Some(bytes) = &entry.bytes else {
                continue;
            };
            directory.write_segment_bytes(entry.sequence, bytes)?;
            self.on_disk.insert(entry.sequence);
        }
        directory.write_playlist(playlist)?;
        if let Some(oldest) = playlist.oldest_kept() {
            while self.removed_below < oldest {
                directory.remove_segment(self.removed_below)?;
                self.on_disk.remove(&self.removed_below);
                self.removed_below += 1;
            }
        }
        Ok(())
    }

    fn remove_all(&mut self) {
        let Some(directory) = &self.directory else {
            return;
        };
        match directory.remove_all() {
            Ok(()) => {
                info!(stream = %self.stream, "HLS directory mirror removed the ended stream's files")
            }
            Err(error) => {
                warn!(%error, stream = %self.stream, "HLS directory mirror could not remove an ended stream's files")
            }
        }
        self.on_disk.clear();
        self.ll_on_disk.clear();
    }
}
