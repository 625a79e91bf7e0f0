//! Pulling streams from upstream servers into a local [`RelayHub`]: the relay role of a friend
//! node.
//!
//! A viewer asking this node for a stream that is not published here calls
//! [`UpstreamPuller::ensure`]. Concurrent requests for one stream share a single pull; the pull
//! republishes the upstream's frames into the hub, so every local viewer (RTMP, HTTP-FLV, HLS)
//! is served from one upstream connection.
//!
//! A pull continues the upstream's timeline ([`Timeline::Upstream`]): timestamps are kept, so the
//! HLS segments cut here are byte-identical to the origin's and viewers can verify them against
//! the origin's hashes. When an upstream fails (an error, a closed connection, or silence in the
//! middle of its stream for [`UpstreamConfig::stall_timeout`]) the pull moves on to the next one
//! within the same publish: it asks the new upstream to resume at the keyframe at or before the
//! last frame relayed ([`RESUME_PARAM`]; a StreamrP2P node holds several seconds), the replay of
//! frames already relayed is dropped and local viewers continue without a gap, so the segment
//! open across the switch stays the origin's byte for byte. An upstream that cannot (another
//! server, or one whose ring no longer reaches back) replays its GOP cache: where that does not
//! cover what was missed, local viewers continue from the next keyframe. Only when every
//! upstream failed in a row do local viewers see the publisher leave.
//! With an [`UpstreamSource`] (a coordinator-built relay tree) the upstreams are asked for per
//! stream at the start of each round, the source is told which ones failed, and the pull asks
//! again at once when an upstream fails (going straight to the replacement it names, else on
//! down the list) and every [`UpstreamConfig::reassign_interval`]: when the first upstream it answers is
//! another than the one pulled from, the pull moves there the same way it fails over, so local
//! viewers keep playing. That periodic ask runs in a task of its own beside the frames, so a
//! slow answer never holds them up. The static list stays the fallback when the source knows none.
//! A pull stops once it has had neither a hub viewer (RTMP, HTTP-FLV) nor a request through
//! `ensure` (HLS players poll their playlist) for the idle timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::client::{ClientError, RtmpClient};
use crate::relay::{FrameKind, Publisher, RelayHub, StreamKey, Timeline};
use crate::rtmp::session::{ClientEvent, MediaKind};
use crate::rtmp::url::RtmpUrl;

/// Settings of an [`UpstreamPuller`].
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Upstream servers as `rtmp://host[:port]`, tried in order, then round again.
    pub upstreams: Vec<String>,
    /// A pull with no local viewers for this long stops.
    pub idle_timeout: Duration,
    /// Wait after every upstream in the list failed once, before trying again.
    pub retry_backoff: Duration,
    /// How often the pull checks for local viewers (and for a stalled upstream).
    pub idle_check_interval: Duration,
    /// An upstream that sent nothing for this long in the middle of its stream is taken for dead
    /// (a host that vanished closes no connection), and the pull moves on to the next.
    pub stall_timeout: Duration,
    /// Longest wait for an upstream to accept the connection and answer the RTMP handshake,
    /// connect and play; an unreachable or mute host is then skipped for the next one.
    pub connect_timeout: Duration,
    /// The query string each play request to an upstream carries (without `?`), made afresh
    /// for every connection: a relay's credentials for an origin that serves only relays.
    pub play_query: Option<PlayQuery>,
    /// With an [`UpstreamSource`], how often a running pull asks it again and follows a new
    /// first upstream.
    pub reassign_interval: Duration,
    /// Longest wait for an [`UpstreamSource`]'s answer: a pull starting (or starting over)
    /// uses the static list without one; a running pull's periodic ask, made beside its
    /// frames, is given up and made again an interval later.
    pub source_timeout: Duration,
}

/// Makes the query string of a pull's play request for a stream (see
/// [`UpstreamConfig::play_query`]).
#[derive(Clone)]
pub struct PlayQuery(Arc<dyn Fn(&StreamKey) -> String + Send + Sync>);

impl PlayQuery {
    /// A query maker calling `make` for every connection.
    pub fn new(make: impl Fn(&StreamKey) -> String + Send + Sync + 'static) -> Self {
        PlayQuery(Arc::new(make))
    }
}

impl std::fmt::Debug for PlayQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlayQuery(..)")
    }
}

/// Where a pull's upstreams come from when they are chosen per stream (a relay tree).
#[async_trait::async_trait]
pub trait UpstreamSource: Send + Sync + std::fmt::Debug + 'static {
    /// The upstreams to pull `key` from, best first, each `rtmp://host[:port]` optionally
    /// followed by `?query` (added to the play URL, e.g. a grant). `failed` are the upstreams
    /// (without their query) that failed this pull since the last call. Empty when the
    /// source knows none: the static list is used.
    async fn upstreams(&self, key: &StreamKey, failed: &[String]) -> Vec<String>;
}

/// Longest wait for an [`UpstreamSource`] asked right after an upstream failed; without an
/// answer the pull goes on down the list it has (the failed upstream's ancestors).
const FAILOVER_ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The play request's query parameter with which a pull failing over asks its next upstream to
/// resume after the frame it relayed last (a timestamp in milliseconds, see
/// [`Publisher::resume_point`]): a StreamrP2P node then starts it at the keyframe at or before
/// it ([`RelayHub::subscribe_resuming`]) rather than at its newest one, so no frame between
/// goes missing and the segments cut across the switch stay the origin's. Other servers ignore
/// it and replay their GOP cache.
pub const RESUME_PARAM: &str = "streamr_resume";

/// The resume timestamp a play request's query carries ([`RESUME_PARAM`]), if any.
pub fn resume_from_query(query: &str) -> Option<u32> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(RESUME_PARAM)?
            .strip_prefix('=')?
            .parse()
            .ok()
    })
}

/// `rtmp://host[:port]?query` → `rtmp://host[:port]`.
fn upstream_base(upstream: &str) -> &str {
    upstream.split_once('?').map_or(upstream, |(base, _)| base)
}

/// The play URL of `key` at `upstream` (its query, if any, after the stream name).
fn play_url(upstream: &str, key: &StreamKey) -> String {
    match upstream.split_once('?') {
        Some((base, query)) => format!("{base}/{}/{}?{query}", key.app, key.name),
        None => format!("{upstream}/{}/{}", key.app, key.name),
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            idle_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            idle_check_interval: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            play_query: None,
            reassign_interval: Duration::from_secs(5),
            source_timeout: Duration::from_secs(2),
        }
    }
}

impl UpstreamConfig {
    /// The same settings pulling from `upstreams` (`rtmp://host[:port]`), tried in order.
    pub fn with_upstreams(
        mut self,
        upstreams: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.upstreams = upstreams.into_iter().map(Into::into).collect();
        self
    }
}

/// What happened to one pull, as reported by [`UpstreamPuller::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStatus {
    /// The upstream currently (or last) pulled from.
    pub upstream: Option<String>,
    /// How many times the pull (re)connected to an upstream.
    pub connects: u64,
    /// The last upstream failure, if any.
    pub last_error: Option<String>,
    /// Whether the pull holds a live session with an upstream now (connected and playing);
    /// false between upstreams and while every upstream is failing.
    pub connected: bool,
}

/// One running pull: what it reports and when a viewer last asked for its stream.
#[derive(Debug)]
struct Pull {
    status: Mutex<PullStatus>,
    last_demand: Mutex<Instant>,
}

type Pulls = HashMap<StreamKey, Arc<Pull>>;

/// Totals over every pull a [`UpstreamPuller`] ran ([`UpstreamPuller::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullTotals {
    /// Pulls started.
    pub pulls: u64,
    /// Connections to an upstream after a pull's first (another upstream, or the same again).
    pub failovers: u64,
}

#[derive(Debug, Default)]
struct PullCounters {
    pulls: std::sync::atomic::AtomicU64,
    failovers: std::sync::atomic::AtomicU64,
}

/// Starts and tracks on-demand pulls of streams from upstream servers into a hub.
#[derive(Debug, Clone)]
pub struct UpstreamPuller {
    hub: RelayHub,
    config: Arc<UpstreamConfig>,
    pulls: Arc<Mutex<Pulls>>,
    counters: Arc<PullCounters>,
    source: Option<Arc<dyn UpstreamSource>>,
}

impl UpstreamPuller {
    /// A puller feeding `hub` from `config.upstreams`.
    pub fn new(hub: RelayHub, config: UpstreamConfig) -> Self {
        Self {
            hub,
            config: Arc::new(config),
            pulls: Arc::default(),
            counters: Arc::default(),
            source: None,
        }
    }

    /// Asks `source` for each stream's upstreams before the static list (see
    /// [`UpstreamSource`]).
    pub fn with_source(mut self, source: Arc<dyn UpstreamSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The upstreams of one round: the source's (told what failed), else the static list.
    async fn round_upstreams(&self, key: &StreamKey, failed: &mut Vec<String>) -> Vec<String> {
        if let Some(source) = &self.source {
            let asked =
                tokio::time::timeout(self.config.source_timeout, source.upstreams(key, failed))
                    .await;
            if let Ok(list) = asked {
                failed.clear();
                if !list.is_empty() {
                    return list;
                }
            }
        }
        self.config.upstreams.clone()
    }

    /// Makes sure `key` is available in the hub: does nothing when it is published locally,
    /// records the demand when it is already being pulled (keeping the pull from going idle),
    /// otherwise starts a pull task (on the current tokio runtime). Returns whether a new pull
    /// started. Call it on every viewer request, including HLS playlist and segment requests.
    pub fn ensure(&self, key: &StreamKey) -> bool {
        if self.config.upstreams.is_empty() && self.source.is_none() {
            return false;
        }
        let state = {
            let mut pulls = lock(&self.pulls);
            if let Some(pull) = pulls.get(key) {
                *lock(&pull.last_demand) = Instant::now();
                return false;
            }
            if self.hub.is_publishing(key) {
                return false;
            }
            let state = Arc::new(Pull {
                status: Mutex::new(PullStatus::default()),
                last_demand: Mutex::new(Instant::now()),
            });
            pulls.insert(key.clone(), state.clone());
            state
        };
        self.counters
            .pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let puller = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            puller.run_pull(&key, &state).await;
            lock(&puller.pulls).remove(&key);
            tracing::info!(stream = %key, "upstream pull stopped");
        });
        true
    }

    /// Pulls started and failovers so far, over every stream.
    pub fn totals(&self) -> PullTotals {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        PullTotals {
            pulls: load(&self.counters.pulls),
            failovers: load(&self.counters.failovers),
        }
    }

    /// Whether `key` is being pulled now.
    pub fn is_pulling(&self, key: &StreamKey) -> bool {
        lock(&self.pulls).contains_key(key)
    }

    /// The status of the pull of `key`, if one runs.
    pub fn status(&self, key: &StreamKey) -> Option<PullStatus> {
        let state = lock(&self.pulls).get(key).cloned()?;
        let status = lock(&state.status).clone();
        Some(status)
    }

    async fn run_pull(&self, key: &StreamKey, state: &Pull) {
        let mut idle_since: Option<Instant> = None;
        // Kept across upstreams, so a failover continues the same publish here.
        let mut publisher: Option<Publisher> = None;
        // Upstreams that failed since the source was last asked.
        let mut failed: Vec<String> = Vec::new();
        // A reassignment the source answered while pulling: the next round's list.
        let mut next: Option<Vec<String>> = None;
        loop {
            let mut received = false;
            let upstreams = match next.take() {
                Some(list) => list,
                None => self.round_upstreams(key, &mut failed).await,
            };
            for upstream in &upstreams {
                if self.is_idle(key, state, &mut idle_since) {
                    return;
                }
                // Logged without the query: it may carry credentials.
                let base = upstream_base(upstream).to_owned();
                let shown = format!("{base}/{}/{}", key.app, key.name);
                let mut play = play_url(upstream, key);
                if let Some(PlayQuery(make)) = &self.config.play_query {
                    play.push(if play.contains('?') { '&' } else { '?' });
                    play.push_str(&make(key));
                }
                // A failover: the next upstream resumes after what was relayed, not at its
                // newest keyframe, which may lie past it.
                if let Some(at) = publisher.as_ref().and_then(Publisher::resume_point) {
                    play.push(if play.contains('?') { '&' } else { '?' });
                    play.push_str(&format!("{RESUME_PARAM}={at}"));
                }
                let url = match RtmpUrl::parse(&play) {
                    Ok(url) => url,
                    Err(error) => {
                        tracing::warn!(upstream = %base, %error, "unusable upstream address");
                        continue;
                    }
                };
                {
                    let mut status = lock(&state.status);
                    status.upstream = Some(base.clone());
                    status.connects += 1;
                    if status.connects > 1 {
                        self.counters
                            .failovers
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                let pulled = self
                    .pull_from(
                        &url,
                        key,
                        state,
                        (&mut idle_since, &mut publisher, &mut received),
                        &failed,
                    )
                    .await;
                let upstream_failed = !matches!(pulled, Ok(PullEnd::Idle | PullEnd::Reassigned(_)));
                if upstream_failed {
                    failed.push(base.clone());
                }
                match pulled {
                    Ok(PullEnd::Idle) => return,
                    Ok(PullEnd::Reassigned(list)) => {
                        tracing::info!(stream = %key, url = %shown, "reassigned to another upstream");
                        next = Some(list);
                        break;
                    }
                    Ok(PullEnd::UpstreamClosed) => {
                        tracing::info!(stream = %key, url = %shown, "upstream closed; trying the next");
                    }
                    Ok(PullEnd::ConnectTimedOut) => {
                        tracing::warn!(stream = %key, url = %shown, "upstream did not answer; trying the next");
                        lock(&state.status).last_error = Some(format!(
                            "{shown} did not answer within {:?}",
                            self.config.connect_timeout
                        ));
                    }
                    Ok(PullEnd::Stalled) => {
                        tracing::warn!(stream = %key, url = %shown, "upstream stalled; trying the next");
                        lock(&state.status).last_error = Some(format!(
                            "{shown} sent nothing for {:?}",
                            self.config.stall_timeout
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(stream = %key, url = %shown, %error, "upstream failed; trying the next");
                        lock(&state.status).last_error = Some(error.to_string());
                    }
                }
                // A parent that dies mid-stream: its replacement is asked for at once (only
                // then, so upstreams failing at connect do not keep the source busy).
                if upstream_failed && received {
                    if let Some(list) = self.replacement(key, &base, &mut failed).await {
                        tracing::info!(stream = %key, failed = %shown, "the source named a new upstream at once");
                        next = Some(list);
                        break;
                    }
                }
            }
            if received || next.is_some() {
                // An upstream delivered this round: fail over to the first one again at once.
                continue;
            }
            // Every upstream failed in a row: local viewers learn that the stream is gone.
            publisher = None;
            if self.is_idle(key, state, &mut idle_since) {
                return;
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// Pulls from one upstream into `publisher` (publishing when there is none) until it fails,
    /// closes or the stream goes idle here; sets `received` once a frame arrived.
    async fn pull_from(
        &self,
        url: &RtmpUrl,
        key: &StreamKey,
        state: &Pull,
        (idle_since, publisher, received): (
            &mut Option<Instant>,
            &mut Option<Publisher>,
            &mut bool,
        ),
        failed: &[String],
    ) -> Result<PullEnd, ClientError> {
        let Ok(connected) =
            tokio::time::timeout(self.config.connect_timeout, RtmpClient::pull(url)).await
        else {
            return Ok(PullEnd::ConnectTimedOut);
        };
        let mut client = connected?;
        tracing::info!(stream = %key, upstream = %url.tc_url(), "pulling from upstream");
        lock(&state.status).connected = true;
        if let Some(publisher) = publisher.as_ref() {
            // A failover: this upstream replays part of what was relayed.
            publisher.rejoin_upstream();
        }
        let end = self
            .relay_from(
                &mut client,
                url,
                key,
                state,
                (idle_since, publisher, received),
                failed,
            )
            .await;
        lock(&state.status).connected = false;
        // Frames held for the next batch go out now, not when the next upstream delivers.
        if let Some(publisher) = publisher.as_mut() {
            publisher.flush();
        }
        end
    }

    /// Relays what `client` receives into `publisher` until the upstream fails, closes or the
    /// stream goes idle here. Viewers are woken once per batch of frames (see
    /// [`Publisher::send_batched`]), as for a local publisher.
    async fn relay_from(
        &self,
        client: &mut RtmpClient,
        url: &RtmpUrl,
        key: &StreamKey,
        state: &Pull,
        (idle_since, publisher, received): (
            &mut Option<Instant>,
            &mut Option<Publisher>,
            &mut bool,
        ),
        failed: &[String],
    ) -> Result<PullEnd, ClientError> {
        let mut check = tokio::time::interval(self.config.idle_check_interval);
        // Asked in a task of its own, so a slow answer never holds up the frames: this loop
        // only switches when a new first upstream arrives.
        let mut reassignment = self.source.clone().map(|source| {
            AbortOnDropHandle::new(tokio::spawn(watch_reassignment(
                source,
                key.clone(),
                (url.host.clone(), url.port),
                failed.to_vec(),
                (self.config.reassign_interval, self.config.source_timeout),
            )))
        });
        // When the last frame arrived, while the upstream's stream is live.
        let mut last_frame: Option<Instant> = None;
        loop {
            let flush_deadline = publisher
                .as_ref()
                .and_then(Publisher::flush_deadline)
                .map(Instant::from_std);
            let event = tokio::select! {
                event = client.next_event() => event?,
                _ = tokio::time::sleep_until(flush_deadline.unwrap_or_else(Instant::now)),
                    if flush_deadline.is_some() =>
                {
                    if let Some(publisher) = publisher.as_mut() {
                        publisher.flush_if_due(std::time::Instant::now());
                    }
                    continue;
                }
                _ = check.tick() => {
                    if self.is_idle(key, state, idle_since) {
                        return Ok(PullEnd::Idle);
                    }
                    if last_frame.is_some_and(|at| at.elapsed() >= self.config.stall_timeout) {
                        return Ok(PullEnd::Stalled);
                    }
                    continue;
                }
                list = next_reassignment(&mut reassignment) => {
                    match list {
                        Some(list) => return Ok(PullEnd::Reassigned(list)),
                        // The task ended without an answer (it panicked): no more asks.
                        None => reassignment = None,
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                return Ok(PullEnd::UpstreamClosed);
            };
            let frame = match event {
                ClientEvent::Media {
                    kind: MediaKind::Audio,
                    timestamp,
                    payload,
                } => Some((FrameKind::Audio, timestamp, payload)),
                ClientEvent::Media {
                    kind: MediaKind::Video,
                    timestamp,
                    payload,
                } => Some((FrameKind::Video, timestamp, payload)),
                ClientEvent::Metadata {
                    timestamp, payload, ..
                } => Some((FrameKind::Metadata, timestamp, payload)),
                // The HLS timing the origin chose, passed on so that this node and those
                // pulling from it cut as the origin does.
                ClientEvent::Media {
                    kind: MediaKind::Data,
                    timestamp,
                    payload,
                } if crate::hls::is_timing_message(&payload) => {
                    Some((FrameKind::Metadata, timestamp, payload))
                }
                // Timed data (captions, cue points) passes on, in order with the media; other
                // node notices, which this node does not know, do not.
                ClientEvent::Media {
                    kind: MediaKind::Data,
                    timestamp,
                    payload,
                } => crate::relay::timed_data(payload)
                    .map(|payload| (FrameKind::Data, timestamp, payload)),
                // The upstream's publisher left: local viewers are told, and resume with the
                // next publish.
                ClientEvent::StreamEnded => {
                    if let Some(ended) = publisher.take() {
                        ended.end_upstream_publish();
                    }
                    // Silence is expected until the upstream's publisher is back.
                    last_frame = None;
                    None
                }
                _ => None,
            };
            if let Some((kind, timestamp, payload)) = frame {
                *received = true;
                last_frame = Some(Instant::now());
                if publisher.is_none() {
                    match self.hub.publish_with(key.clone(), Timeline::Upstream) {
                        Ok(new) => *publisher = Some(new),
                        // Published locally meanwhile: the local publisher wins.
                        Err(_busy) => return Ok(PullEnd::Idle),
                    }
                }
                if let Some(publisher) = publisher.as_mut() {
                    let now = std::time::Instant::now();
                    publisher.send_batched(kind, timestamp, payload, now);
                    publisher.flush_if_due(now);
                }
            }
        }
    }

    /// Asks the source at once after `dead` failed (reported with the other upstreams in
    /// `failed`): its list when it names a first upstream other than `dead`, so the pull goes
    /// straight to the replacement instead of the next ancestor; `None` (keep going down the
    /// current list) without a source, an answer within [`FAILOVER_ASK_TIMEOUT`] or a new
    /// first upstream.
    async fn replacement(
        &self,
        key: &StreamKey,
        dead: &str,
        failed: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        let source = self.source.as_ref()?;
        let list = tokio::time::timeout(FAILOVER_ASK_TIMEOUT, source.upstreams(key, failed))
            .await
            .ok()?;
        failed.clear();
        let first = list.first()?;
        (upstream_base(first) != dead).then_some(list)
    }

    /// Whether nobody has watched or requested `key` here for the idle timeout.
    fn is_idle(&self, key: &StreamKey, pull: &Pull, idle_since: &mut Option<Instant>) -> bool {
        let viewers = self
            .hub
            .stream_stats(key)
            .map_or(0, |stats| stats.viewers.len());
        if viewers > 0 {
            *idle_since = None;
            return false;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        let last_activity = since.max(*lock(&pull.last_demand));
        last_activity.elapsed() >= self.config.idle_timeout
    }
}

/// Asks `source` for `key`'s upstreams every `interval` while a pull relays from `current`
/// (host and port), in a task of its own; returns the list once it starts with another
/// upstream. `failed` is told with the first answered ask only. An ask without an answer
/// within `timeout` is given up, and the next one comes an interval later.
async fn watch_reassignment(
    source: Arc<dyn UpstreamSource>,
    key: StreamKey,
    current: (String, u16),
    mut failed: Vec<String>,
    (interval, timeout): (Duration, Duration),
) -> Vec<String> {
    let mut asks = tokio::time::interval_at(Instant::now() + interval, interval);
    asks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        asks.tick().await;
        let Ok(list) = tokio::time::timeout(timeout, source.upstreams(&key, &failed)).await else {
            continue;
        };
        failed.clear();
        let Some(first) = list.first() else {
            continue;
        };
        let same = RtmpUrl::parse(&play_url(first, &key))
            .is_ok_and(|next| (next.host.as_str(), next.port) == (current.0.as_str(), current.1));
        if !same {
            return list;
        }
    }
}

/// The list a pull's reassignment task answered; `None` once the task is gone without one,
/// pending forever without a task.
async fn next_reassignment(
    task: &mut Option<AbortOnDropHandle<Vec<String>>>,
) -> Option<Vec<String>> {
    match task {
        Some(task) => task.await.ok(),
        None => std::future::pending().await,
    }
}

/// Why a pull from one upstream ended without an error.
enum PullEnd {
    /// No local viewers for the idle timeout (or the stream is now published locally).
    Idle,
    /// The upstream closed the connection.
    UpstreamClosed,
    /// The upstream went silent in the middle of its stream.
    Stalled,
    /// The upstream did not complete connect and play within the connect timeout.
    ConnectTimedOut,
    /// The source assigned another upstream: the pull moves to the first of this list.
    Reassigned(Vec<String>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstreams_query_goes_after_the_stream_name() {
        let key = StreamKey::parse("live", "show").unwrap();
        assert_eq!(
            play_url("rtmp://h:1935?grant=ab", &key),
            "rtmp://h:1935/live/show?grant=ab"
        );
        assert_eq!(play_url("rtmp://h", &key), "rtmp://h/live/show");
        assert_eq!(upstream_base("rtmp://h:1935?grant=ab"), "rtmp://h:1935");
        let url = RtmpUrl::parse(&play_url("rtmp://h:1935?grant=ab", &key)).unwrap();
        assert_eq!((url.host.as_str(), url.port), ("h", 1935));
    }

    #[test]
    fn a_play_query_carries_the_resume_point() {
        assert_eq!(
            resume_from_query("grant=ab&streamr_resume=5903"),
            Some(5903)
        );
        assert_eq!(resume_from_query("streamr_resume=0"), Some(0));
        assert_eq!(resume_from_query("grant=ab"), None);
        assert_eq!(resume_from_query("streamr_resume=-1"), None);
        assert_eq!(resume_from_query("streamr_resumed=5"), None);
    }
}
