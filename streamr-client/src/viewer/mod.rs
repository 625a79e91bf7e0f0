//! The viewer: asks the coordinator for a node and a session grant, plays the stream's HLS from
//! that node, checks every segment's BLAKE3 hash against the origin's hashes published by the
//! coordinator, and signs cumulative receipts (`streamr_core::ViewerReceipt`, bound to the
//! origin's digest chain) for the verified bytes. When its node stops answering it asks for
//! another node, naming the nodes it just failed on so the coordinator leaves them out (and,
//! when several viewers report the same node, stops routing to it), and carries on. The received MPEG-TS can be written anywhere a player reads
//! from (a file, stdout).
//!
//! ```no_run
//! use streamr_client::viewer::{Viewer, ViewerConfig};
//!
//! # async fn run() -> Result<(), streamr_client::viewer::ViewerError> {
//! let config = ViewerConfig::new("http://127.0.0.1:8090", "show");
//! let viewer = Viewer::start(config, Some(Box::new(tokio::io::stdout())))?;
//! tokio::time::sleep(std::time::Duration::from_secs(30)).await;
//! let stats = viewer.stop().await?;
//! eprintln!("{} verified bytes from {} node(s)", stats.verified_bytes, stats.nodes_used.len());
//! # Ok(())
//! # }
//! ```

mod ll;
mod ll_session;
pub mod origin;
mod part_order;
mod part_reports;
pub mod receipts;
mod resume;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use reqwest::Url;
use streamr_core::{segment_hash, KeyPair, NodeId, SessionId, SignedReceipt, ViewerKey};
use streamr_media::hls::ParsedPlaylist;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, CoordinatorClient};
use crate::grant_token;
use crate::wire::{PlayResponse, ReceiptsRequest};
use origin::OriginIndex;
use receipts::{SegmentCheck, SessionReceipts};
use resume::{DeliveredHistory, ResumePlan, RESUME_LOOKBACK};

/// How long the viewer keeps naming a node it failed on when asking for another.
const FAILED_NODE_MEMORY: Duration = Duration::from_secs(60);
/// Most failed nodes named in one request.
const MAX_EXCLUDED_NODES: usize = 8;
/// A pooled connection to a node idle for longer than this is not reused. A node closes a
/// keep-alive connection idle for its header timeout (10 s by default, at least a few seconds
/// in practice), and a request sent on one just as the node closes it fails before any answer.
/// The two coincide while the coordinator does not answer: the viewer then waits out a 10 s
/// coordinator timeout between two playlist fetches, and would give up a healthy node for the
/// failed fetch (and, with the coordinator away, find no other until it is back).
const NODE_CONNECTION_REUSE: Duration = Duration::from_secs(4);

/// The HTTP client for a viewer's requests to nodes.
fn node_http_client(request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .pool_idle_timeout(NODE_CONNECTION_REUSE)
        .build()
}

/// Where the viewer sends its signed receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReceiptDelivery {
    /// `POST /receipts` on the coordinator (works even after the node died); the serving node,
    /// which forwards them with its heartbeats, when the coordinator does not answer.
    #[default]
    Coordinator,
    /// `POST /receipts` on the serving node, which forwards them with its heartbeats; the
    /// coordinator is used when the node does not answer.
    Node,
}

/// How a viewer watches.
#[derive(Clone)]
#[non_exhaustive]
pub struct ViewerConfig {
    /// The coordinator's base URL (`http://host:port`).
    pub coordinator_url: String,
    /// The stream to watch.
    pub stream_id: String,
    /// The viewer's key; a fresh one is generated when `None`.
    pub key: Option<KeyPair>,
    /// How often the playlist is fetched.
    pub poll_interval: Duration,
    /// How often a receipt is signed and sent (when something new was verified).
    pub receipt_interval: Duration,
    /// Where receipts go.
    pub receipts: ReceiptDelivery,
    /// A node that delivers no new segment for this long is given up for another one.
    pub stall_timeout: Duration,
    /// How long the first segment from a newly routed node may take.
    pub start_timeout: Duration,
    /// How long a received segment waits for the origin's hash before it counts as unverified.
    pub verify_timeout: Duration,
    /// Timeout of each HTTP request to a node (a node's first playlist request may wait for
    /// its pull from the origin and a whole first segment).
    pub request_timeout: Duration,
    /// Plays the node's LL-HLS rendition (`{app}/{stream}/ll.m3u8`, fMP4) part by part, with
    /// blocking playlist reloads: each part is checked against the hash the origin reported as
    /// it cut it before it is written to the output, each completed segment against its fMP4
    /// hash, and receipts bind the fMP4 chain; the output is the init segment followed by the
    /// parts.
    pub low_latency: bool,
    /// LL-HLS: how long a fetched part waits for the origin's hash before it counts as not the
    /// origin's (it is not output and the node is given up). At most 5 s.
    pub part_verify_timeout: Duration,
}

impl std::fmt::Debug for ViewerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerConfig")
            .field("coordinator_url", &self.coordinator_url)
            .field("stream_id", &self.stream_id)
            .field("key", &self.key.as_ref().map(KeyPair::viewer_key))
            .field("receipts", &self.receipts)
            .finish_non_exhaustive()
    }
}

impl ViewerConfig {
    /// A viewer of `stream_id` routed by the coordinator at `coordinator_url`, with defaults
    /// suited to segments of a few seconds.
    pub fn new(coordinator_url: impl Into<String>, stream_id: impl Into<String>) -> Self {
        ViewerConfig {
            coordinator_url: coordinator_url.into(),
            stream_id: stream_id.into(),
            key: None,
            poll_interval: Duration::from_millis(500),
            receipt_interval: Duration::from_secs(2),
            receipts: ReceiptDelivery::Coordinator,
            stall_timeout: Duration::from_secs(12),
            start_timeout: Duration::from_secs(20),
            verify_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            low_latency: false,
            part_verify_timeout: Duration::from_secs(3),
        }
    }

    /// Plays the LL-HLS (fMP4) rendition instead of MPEG-TS (see [`Self::low_latency`]).
    pub fn with_low_latency(mut self, low_latency: bool) -> Self {
        self.low_latency = low_latency;
        self
    }

    /// Uses `key` as the viewer's identity.
    pub fn with_key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Sends receipts to `delivery`.
    pub fn with_receipts(mut self, delivery: ReceiptDelivery) -> Self {
        self.receipts = delivery;
        self
    }
}

/// Why a viewer could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewerError {
    /// The coordinator URL is unusable.
    #[error("coordinator: {0}")]
    Coordinator(#[from] ClientError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// Writing the received stream failed.
    #[error("writing the stream to the output: {0}")]
    Output(#[source] std::io::Error),
    /// The viewer task panicked or was aborted.
    #[error("the viewer task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// What a viewer has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViewerStats {
    /// The viewer's public key.
    pub viewer: ViewerKey,
    /// The node currently serving, if any.
    pub node: Option<NodeId>,
    /// Every node that served this viewer, in order (a node appears again after a switch back).
    pub nodes_used: Vec<NodeId>,
    /// Sessions (grants) obtained from the coordinator.
    pub sessions: u32,
    /// Times the viewer gave up a node that stopped answering.
    pub failovers: u32,
    /// Segments received.
    pub segments: u64,
    /// Bytes received (all segments).
    pub bytes: u64,
    /// Segments whose hash matched the origin's.
    pub verified_segments: u64,
    /// Bytes of those segments.
    pub verified_bytes: u64,
    /// Verified bytes by the node that served them.
    pub verified_bytes_by_node: BTreeMap<NodeId, u64>,
    /// Segments the origin never reported (stale, altered or partial content).
    pub unverified_segments: u64,
    /// LL-HLS: parts written to the output (each checked against the origin's part hash
    /// first).
    pub parts: u64,
    /// LL-HLS: parts whose hash matched one the origin reported as it cut them.
    pub verified_parts: u64,
    /// LL-HLS: parts the origin did not report within [`ViewerConfig::part_verify_timeout`]:
    /// not output, and the node was given up for another one.
    pub unverified_parts: u64,
    /// LL-HLS: how long checking a part took, from having its bytes to knowing the origin's
    /// hash matches: the newest, the longest and the sum over [`Self::verified_parts`].
    pub part_check_wait: PartCheckWait,
    /// LL-HLS: verified parts whose origin place came from a signed part report the node
    /// passed on (checked here: origin key, stream, run, age), without asking the coordinator.
    pub parts_checked_by_report: u64,
    /// LL-HLS: part reports the node passed on that failed those checks (forged, altered,
    /// another stream's, stale, or of an older run); none of their parts is taken from them.
    pub part_reports_refused: u64,
    /// LL-HLS: parts checked by asking the coordinator (a node serving no part reports, or a
    /// part whose report did not arrive in time).
    pub parts_checked_by_coordinator: u64,
    /// LL-HLS: parts not after the newest verified before: served again after they were played
    /// (not output a second time) or found late in their segment.
    pub repeated_parts: u64,
    /// LL-HLS: origin parts the viewer never got between consecutive verified ones (counted
    /// within a segment and across to the next).
    pub skipped_parts: u64,
    /// LL-HLS: the newest part written to the output, as the serving node's media sequence
    /// number and part index (the position in its playlist).
    pub last_part: Option<(u64, u32)>,
    /// LL-HLS: how many parts the node listed after the newest part written to the output,
    /// in the playlist that announced it (0: it was the newest, or the preload-hinted part the
    /// node was producing): how far behind the live edge the viewer plays, in parts.
    pub last_part_behind: Option<u32>,
    /// The origin's sequence number of the newest verified segment.
    pub last_verified_sequence: Option<u64>,
    /// Origin segments the viewer never got, between the first and the newest it verified.
    pub skipped_segments: u64,
    /// Verified segments whose origin sequence was not after the newest verified before (media
    /// played twice).
    pub repeated_segments: u64,
    /// Sessions after a fail-over that found the last delivered segment on the new node and
    /// carried on right after it.
    pub resumes_matched: u32,
    /// Sessions after a fail-over that did not find it and started at the newest segment.
    pub resumes_unmatched: u32,
    /// Receipts sent.
    pub receipts_sent: u64,
    /// Receipts the coordinator (or node) accepted.
    pub receipts_accepted: u64,
    /// Receipts refused, with the reasons given.
    pub receipts_rejected: Vec<String>,
    /// From start to the first segment in hand (the first frame a player could show).
    pub startup: Option<Duration>,
    /// From giving up a node to the next segment from another one, the last time it happened.
    pub last_failover_gap: Option<Duration>,
    /// The newest problem met (routing refused, node unreachable...).
    pub last_error: Option<String>,
}

impl ViewerStats {
    fn new(viewer: ViewerKey) -> Self {
        ViewerStats {
            viewer,
            node: None,
            nodes_used: Vec::new(),
            sessions: 0,
            failovers: 0,
            segments: 0,
            bytes: 0,
            verified_segments: 0,
            verified_bytes: 0,
            verified_bytes_by_node: BTreeMap::new(),
            unverified_segments: 0,
            parts: 0,
            verified_parts: 0,
            unverified_parts: 0,
            parts_checked_by_report: 0,
            part_reports_refused: 0,
            parts_checked_by_coordinator: 0,
            part_check_wait: PartCheckWait::default(),
            repeated_parts: 0,
            skipped_parts: 0,
            last_part: None,
            last_part_behind: None,
            last_verified_sequence: None,
            skipped_segments: 0,
            repeated_segments: 0,
            resumes_matched: 0,
            resumes_unmatched: 0,
            receipts_sent: 0,
            receipts_accepted: 0,
            receipts_rejected: Vec::new(),
            startup: None,
            last_failover_gap: None,
            last_error: None,
        }
    }
}

/// LL-HLS: what checking parts against the origin's hashes added to their playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PartCheckWait {
    /// The newest part's wait, from having its bytes to knowing they are the origin's.
    pub last: Option<Duration>,
    /// The longest such wait.
    pub max: Duration,
    /// All such waits added up (divide by the verified parts for the mean).
    pub total: Duration,
    /// The newest part's age when it was known to be the origin's: from the origin cutting it
    /// (its clock) to this viewer having checked it (this viewer's clock), in milliseconds.
    pub last_cut_to_verified_ms: Option<i64>,
    /// The largest such age.
    pub max_cut_to_verified_ms: Option<i64>,
}

/// A running viewer. Dropping it leaves the viewer running until its task ends; call
/// [`Viewer::stop`] to end it.
#[derive(Debug)]
pub struct Viewer {
    stats: watch::Receiver<ViewerStats>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ViewerError>>,
}

/// The output the received MPEG-TS is written to.
pub type ViewerOutput = Box<dyn AsyncWrite + Send + Sync + Unpin>;

impl Viewer {
    /// Starts watching in a background task; segments are written to `output` when given.
    pub fn start(
        config: ViewerConfig,
        output: Option<ViewerOutput>,
    ) -> Result<Viewer, ViewerError> {
        let coordinator = CoordinatorClient::new(&config.coordinator_url)?;
        let http = node_http_client(config.request_timeout).map_err(ViewerError::Http)?;
        let key = config
            .key
            .clone()
            .unwrap_or_else(|| KeyPair::generate(&mut rand::rngs::OsRng));
        let (stats_tx, stats) = watch::channel(ViewerStats::new(key.viewer_key()));
        let stop = CancellationToken::new();
        let run = Run::new(
            config,
            coordinator,
            http,
            key,
            stats_tx,
            stop.clone(),
            output,
        );
        let task = tokio::spawn(run.run());
        Ok(Viewer { stats, stop, task })
    }

    /// A snapshot of the viewer's counters.
    pub fn stats(&self) -> ViewerStats {
        self.stats.borrow().clone()
    }

    /// A receiver that sees every update of the counters.
    pub fn watch_stats(&self) -> watch::Receiver<ViewerStats> {
        self.stats.clone()
    }

    /// True once the viewer stopped by itself (the stream ended or the output failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the viewer (sending a last receipt) and returns its final counters.
    pub async fn stop(self) -> Result<ViewerStats, ViewerError> {
        self.stop.cancel();
        self.task.await.map_err(ViewerError::Task)??;
        let stats = self.stats.borrow().clone();
        Ok(stats)
    }
}

/// How one node session ended.
enum SessionEnd {
    /// Asked to stop.
    Stopped,
    /// The node stopped answering or delivering.
    NodeFailed(String),
    /// The playlist ended (the publisher left for good).
    StreamEnded,
}

/// A segment received but not yet checked against the origin.
struct Pending {
    node: NodeId,
    hash: streamr_core::ContentDigest,
    len: usize,
    received: Instant,
    /// When it was received, unix ms (compared with the origin's report times).
    received_ms: u64,
}

/// Most received segments kept waiting for the origin's hashes; beyond it the oldest is judged.
const MAX_PENDING: usize = 10_000;

/// Receipts per `POST /receipts` (well within what nodes and the coordinator take).
const RECEIPTS_PER_POST: usize = 64;

/// Receipts kept for a later attempt while neither the node nor the coordinator takes them:
/// a backlog of two hours at one receipt a minute, for several sessions.
const MAX_UNSENT_RECEIPTS: usize = 1_024;

/// How often kept receipts are offered to the coordinator again.
const UNSENT_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// When a session started and when it last sent a receipt.
struct SessionClock {
    started: Instant,
    last_receipt: Instant,
}

impl SessionClock {
    fn new() -> Self {
        let now = Instant::now();
        SessionClock {
            started: now,
            last_receipt: now,
        }
    }
}

struct Run {
    config: ViewerConfig,
    coordinator: CoordinatorClient,
    http: reqwest::Client,
    key: KeyPair,
    stats: watch::Sender<ViewerStats>,
    stop: CancellationToken,
    output: Option<ViewerOutput>,
    index: OriginIndex,
    /// The segments delivered last, to resume after them on another node.
    delivered: DeliveredHistory,
    /// LL-HLS: the parts delivered last, to resume after them on another node.
    delivered_parts: DeliveredHistory,
    /// LL-HLS: the origin place of the last part the coordinator confirmed, which the next
    /// confirmed part must follow.
    part_order: part_order::PartOrder,
    /// LL-HLS: the init segment (by its URI's path) last written to the output.
    init_written: Option<String>,
    /// LL-HLS: the stream's origin node as the coordinator names it (asked once; `Some(None)`
    /// when it names none).
    origin_node: Option<Option<NodeId>>,
    /// LL-HLS: the origin's part reports the serving node passes on, this session.
    node_reports: Option<part_reports::NodeReports>,
    /// LL-HLS: when the origin's segment hashes were last refreshed for a waiting part.
    index_refreshed: Option<Instant>,
    started: Instant,
    /// Receipts neither the node nor the coordinator took (both away), oldest first: handed
    /// to the coordinator with the next ones, or while waiting for it to route.
    unsent: Vec<SignedReceipt>,
    /// When handing in `unsent` was last tried.
    unsent_tried: Option<Instant>,
}

impl Run {
    /// A run that has routed nothing yet.
    fn new(
        config: ViewerConfig,
        coordinator: CoordinatorClient,
        http: reqwest::Client,
        key: KeyPair,
        stats: watch::Sender<ViewerStats>,
        stop: CancellationToken,
        output: Option<ViewerOutput>,
    ) -> Run {
        Run {
            index: OriginIndex::for_rendition(config.low_latency),
            init_written: None,
            config,
            coordinator,
            http,
            key,
            stats,
            stop,
            output,
            delivered: DeliveredHistory::default(),
            delivered_parts: DeliveredHistory::of_parts(),
            part_order: part_order::PartOrder::default(),
            origin_node: None,
            node_reports: None,
            index_refreshed: None,
            started: Instant::now(),
            unsent: Vec::new(),
            unsent_tried: None,
        }
    }

    async fn run(mut self) -> Result<(), ViewerError> {
        // Nodes that failed recently, oldest first.
        let mut failed: VecDeque<(NodeId, Instant)> = VecDeque::new();
        let mut failed_at: Option<Instant> = None;
        // The grant of the node that failed last, carried so the fail-over costs no budget.
        let mut previous: Option<SessionId> = None;
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            while failed
                .front()
                .is_some_and(|(_, at)| at.elapsed() > FAILED_NODE_MEMORY)
            {
                failed.pop_front();
            }
            let exclude: Vec<NodeId> = failed.iter().map(|(node, _)| *node).collect();
            let play = match self.route(&exclude, previous.take()).await {
                Some(play) => play,
                None => return Ok(()),
            };
            self.stats.send_modify(|s| {
                s.sessions += 1;
                s.node = Some(play.node_id);
                s.nodes_used.push(play.node_id);
            });
            tracing::info!(node = %play.node_id, stream = %self.config.stream_id, "watching");
            let end = if self.config.low_latency {
                self.ll_session(&play, failed_at).await?
            } else {
                self.session(&play, failed_at).await?
            };
            match end {
                SessionEnd::Stopped | SessionEnd::StreamEnded => return Ok(()),
                SessionEnd::NodeFailed(reason) => {
                    tracing::warn!(node = %play.node_id, %reason, "node failed; asking for another");
                    failed.retain(|(node, _)| *node != play.node_id);
                    failed.push_back((play.node_id, Instant::now()));
                    if failed.len() > MAX_EXCLUDED_NODES {
                        failed.pop_front();
                    }
                    failed_at = Some(Instant::now());
                    previous = Some(play.grant.body.session_id);
                    self.stats.send_modify(|s| {
                        s.failovers += 1;
                        s.node = None;
                        s.last_error = Some(format!("node {}: {reason}", play.node_id));
                    });
                }
            }
        }
    }

    /// Asks the coordinator for a node other than those in `exclude` (nodes that just failed,
    /// which may still look alive to the coordinator for a while) until it names one, carrying
    /// `previous` (the grant of the node that just failed). `None` when stopped.
    async fn route(
        &mut self,
        exclude: &[NodeId],
        previous: Option<SessionId>,
    ) -> Option<PlayResponse> {
        let mut attempts: u32 = 0;
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            attempts += 1;
            // After many attempts take whatever comes: a failed node may have come back.
            let exclude = if attempts > 20 { &[][..] } else { exclude };
            self.retry_unsent().await;
            match self.request_play(exclude, previous).await {
                Ok(play) => return Some(play),
                Err(error) => {
                    tracing::debug!(%error, "routing failed");
                    self.stats.send_modify(|s| s.last_error = Some(error));
                }
            }
            let pause = if attempts < 5 { 100 } else { 500 };
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            }
        }
    }

    /// `GET /streams/{id}/play`, leaving out the nodes in `exclude` and carrying `previous`.
    async fn request_play(
        &self,
        exclude: &[NodeId],
        previous: Option<SessionId>,
    ) -> Result<PlayResponse, String> {
        self.coordinator
            .fail_over(
                &self.config.stream_id,
                &self.key.viewer_key(),
                exclude,
                previous,
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Plays from the node `play` names until it fails, the stream ends or the viewer stops.
    async fn session(
        &mut self,
        play: &PlayResponse,
        failed_at: Option<Instant>,
    ) -> Result<SessionEnd, ViewerError> {
        let playlist_url = match Url::parse(&grant_token::with_grant(&play.hls_url, &play.grant)) {
            Ok(url) if self.config.low_latency => low_latency_url(url),
            Ok(url) => url,
            Err(error) => return Ok(SessionEnd::NodeFailed(format!("bad HLS URL: {error}"))),
        };
        let token = grant_token::encode(&play.grant);
        let mut receipts = SessionReceipts::new(play.grant.body.session_id);
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut next_sequence: Option<u64> = None;
        let mut clock = SessionClock::new();
        let mut last_progress: Option<Instant> = None;
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                _ = self.stop.cancelled() => break SessionEnd::Stopped,
                _ = poll.tick() => {}
            }
            match self.fetch_playlist(&playlist_url).await {
                Ok(Some((playlist, map_uri))) => {
                    let newest = playlist.segments.last().map(|s| s.sequence);
                    let mut failure = None;
                    if let Some(uri) = map_uri {
                        if let Err(reason) = self.write_init(&playlist_url, &uri, &token).await {
                            failure = Some(reason);
                        }
                    }
                    let resuming = next_sequence.is_none() && !self.delivered.is_empty();
                    if let Some(newest) = newest.filter(|_| resuming) {
                        // After a fail-over: carry on right after the last delivered segment.
                        next_sequence = Some(newest.saturating_add(1));
                        match self.resume(&playlist, &playlist_url, &token).await {
                            Ok(segments) => {
                                for bytes in segments {
                                    self.deliver(
                                        play.node_id,
                                        bytes,
                                        &mut pending,
                                        failed_at,
                                        &mut last_progress,
                                    )
                                    .await?;
                                }
                            }
                            Err(reason) => failure = Some(reason),
                        }
                    }
                    // Nothing more from a node that just failed to answer.
                    let listed = if failure.is_none() {
                        &playlist.segments[..]
                    } else {
                        &[]
                    };
                    for segment in listed {
                        // Start at the newest segment: the lowest latency and the quickest start.
                        let wanted = match next_sequence {
                            Some(next) => segment.sequence >= next,
                            None => Some(segment.sequence) == newest,
                        };
                        if !wanted {
                            continue;
                        }
                        if segment.gap {
                            // EXT-X-GAP: no media to load; playback goes on with the next.
                            next_sequence = Some(segment.sequence + 1);
                            continue;
                        }
                        let url = match playlist_url.join(&segment.uri) {
                            Ok(url) => with_token(url, &token),
                            Err(error) => {
                                tracing::debug!(%error, uri = %segment.uri, "bad segment URI");
                                continue;
                            }
                        };
                        next_sequence = Some(segment.sequence + 1);
                        let bytes = match self.fetch(&url).await {
                            Ok(Some(bytes)) => bytes,
                            // Left the node's window already: skip it.
                            Ok(None) => continue,
                            Err(reason) => {
                                failure = Some(reason);
                                break;
                            }
                        };
                        self.deliver(
                            play.node_id,
                            bytes,
                            &mut pending,
                            failed_at,
                            &mut last_progress,
                        )
                        .await?;
                    }
                    if let Some(reason) = failure {
                        self.verify_pending(&mut pending, &mut receipts, false)
                            .await;
                        break SessionEnd::NodeFailed(reason);
                    }
                    let all_played = match (newest, next_sequence) {
                        (Some(newest), Some(next)) => next > newest,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                    if playlist.ended && all_played {
                        break SessionEnd::StreamEnded;
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    self.verify_pending(&mut pending, &mut receipts, false)
                        .await;
                    break SessionEnd::NodeFailed(reason);
                }
            }
            self.verify_pending(&mut pending, &mut receipts, false)
                .await;
            if self
                .end_round(play, &mut receipts, &mut clock, last_progress)
                .await
            {
                break SessionEnd::NodeFailed("no new segment".into());
            }
        };
        self.end_session(play, &end, &mut pending, &mut receipts)
            .await;
        Ok(end)
    }

    /// The end of each round of a session loop: sends a receipt when one is due; true when the
    /// node stalled (no progress for the stall timeout, or none at all for the start timeout).
    async fn end_round(
        &mut self,
        play: &PlayResponse,
        receipts: &mut SessionReceipts,
        clock: &mut SessionClock,
        last_progress: Option<Instant>,
    ) -> bool {
        if clock.last_receipt.elapsed() >= self.config.receipt_interval {
            self.send_receipt(play, receipts).await;
            clock.last_receipt = Instant::now();
        }
        match last_progress {
            Some(at) => at.elapsed() > self.config.stall_timeout,
            None => clock.started.elapsed() > self.config.start_timeout,
        }
    }

    /// Leaves a session: unless the node failed (its pending media may still be judged on the
    /// next node), judges what is pending for good, then acknowledges what was verified.
    async fn end_session(
        &mut self,
        play: &PlayResponse,
        end: &SessionEnd,
        pending: &mut VecDeque<Pending>,
        receipts: &mut SessionReceipts,
    ) {
        if !matches!(end, SessionEnd::NodeFailed(_)) {
            self.verify_pending(pending, receipts, true).await;
        }
        self.send_receipt(play, receipts).await;
    }

    /// The segments to deliver first on a node taken over after a fail-over: those after the
    /// last delivered one, found by content among the newest [`RESUME_LOOKBACK`] listed, oldest
    /// first; only the newest when none of them was delivered. `Err` when the node does not
    /// answer.
    async fn resume(
        &mut self,
        playlist: &ParsedPlaylist,
        playlist_url: &Url,
        token: &str,
    ) -> Result<Vec<bytes::Bytes>, String> {
        let mut fetched: Vec<(streamr_core::ContentDigest, bytes::Bytes)> = Vec::new();
        let loadable = playlist
            .segments
            .iter()
            .rev()
            .filter(|segment| !segment.gap);
        for segment in loadable.take(RESUME_LOOKBACK) {
            let Ok(url) = playlist_url.join(&segment.uri) else {
                break;
            };
            // A segment gone from the node's window: the older ones are gone too.
            let Some(bytes) = self.fetch(&with_token(url, token)).await? else {
                break;
            };
            let hash = segment_hash(&bytes);
            fetched.push((hash, bytes));
            if self.delivered.contains(&hash) {
                break;
            }
        }
        let hashes: Vec<_> = fetched.iter().map(|(hash, _)| *hash).collect();
        match resume::plan(&self.delivered, &hashes) {
            ResumePlan::After(position) => {
                fetched.truncate(position);
                self.stats.send_modify(|s| s.resumes_matched += 1);
            }
            ResumePlan::NewestOnly => {
                fetched.truncate(1);
                tracing::info!(
                    "last delivered segment not found on the new node; starting at its newest"
                );
                self.stats.send_modify(|s| s.resumes_unmatched += 1);
            }
        }
        Ok(fetched.into_iter().rev().map(|(_, bytes)| bytes).collect())
    }

    /// Hands a received segment to the output and queues it for verification.
    async fn deliver(
        &mut self,
        node: NodeId,
        bytes: bytes::Bytes,
        pending: &mut VecDeque<Pending>,
        failed_at: Option<Instant>,
        last_progress: &mut Option<Instant>,
    ) -> Result<(), ViewerError> {
        let now = Instant::now();
        if let Some(failed) = failed_at.filter(|_| last_progress.is_none()) {
            self.stats
                .send_modify(|s| s.last_failover_gap = Some(now - failed));
        }
        *last_progress = Some(now);
        let startup = self.started.elapsed();
        self.stats.send_modify(|s| {
            s.segments += 1;
            s.bytes += bytes.len() as u64;
            s.startup.get_or_insert(startup);
        });
        let hash = segment_hash(&bytes);
        self.delivered.record(hash);
        pending.push_back(Pending {
            node,
            hash,
            len: bytes.len(),
            received: now,
            received_ms: crate::client::unix_ms(),
        });
        if let Some(output) = self.output.as_mut() {
            output
                .write_all(&bytes)
                .await
                .map_err(ViewerError::Output)?;
            output.flush().await.map_err(ViewerError::Output)?;
        }
        Ok(())
    }

    /// LL-HLS: writes the init segment `uri` names to the output before the media segments
    /// that need it (once, and again only when it changes: new codec parameters). Its name
    /// carries its hash, so the same name is the same bytes.
    async fn write_init(
        &mut self,
        playlist_url: &Url,
        uri: &str,
        token: &str,
    ) -> Result<(), String> {
        let url = match playlist_url.join(uri) {
            Ok(url) => with_token(url, token),
            Err(error) => return Err(format!("bad init segment URI {uri:?}: {error}")),
        };
        if self.output.is_none() || self.init_written.as_deref() == Some(url.path()) {
            return Ok(());
        }
        let Some(bytes) = self.fetch(&url).await? else {
            return Ok(());
        };
        if let Some(output) = self.output.as_mut() {
            output
                .write_all(&bytes)
                .await
                .map_err(|e| format!("writing the init segment: {e}"))?;
        }
        self.init_written = Some(url.path().to_owned());
        Ok(())
    }

    /// `Ok(None)` while the node has no segment yet (404), `Err` when it does not answer. With
    /// the playlist, the URI of its init segment (`EXT-X-MAP`, LL-HLS) when it has one.
    async fn fetch_playlist(
        &self,
        url: &Url,
    ) -> Result<Option<(ParsedPlaylist, Option<String>)>, String> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("playlist: {e}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(format!("playlist: HTTP {}", response.status()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| format!("playlist: {e}"))?;
        let map_uri = text.lines().find_map(|line| {
            let attributes = line.strip_prefix("#EXT-X-MAP:")?;
            let (_, rest) = attributes.split_once("URI=\"")?;
            rest.split_once('"').map(|(uri, _)| uri.to_owned())
        });
        ParsedPlaylist::parse(&text)
            .map(|playlist| Some((playlist, map_uri)))
            .map_err(|e| format!("playlist: {e}"))
    }

    /// A segment's bytes; `Ok(None)` when the node no longer has it (404).
    async fn fetch(&self, url: &Url) -> Result<Option<bytes::Bytes>, String> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("segment: {e}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(format!(
                "segment {}: HTTP {}",
                url.path(),
                response.status()
            ));
        }
        response
            .bytes()
            .await
            .map(Some)
            .map_err(|e| format!("segment: {e}"))
    }

    /// Checks received segments against the origin's hashes, in order. A segment the origin
    /// has not reported waits up to `verify_timeout` (or not at all when `last`), and as long
    /// as the coordinator cannot be asked.
    async fn verify_pending(
        &mut self,
        pending: &mut VecDeque<Pending>,
        receipts: &mut SessionReceipts,
        last: bool,
    ) {
        let mut refreshed = false;
        while let Some(front) = pending.front() {
            let expected = receipts.next_expected();
            let known = self
                .index
                .find(&front.hash, expected)
                .is_some_and(|origin| expected.is_none_or(|expected| origin.sequence >= expected));
            if !known && !refreshed {
                refreshed = true;
                if let Err(error) = self
                    .index
                    .refresh(&self.coordinator, &self.config.stream_id)
                    .await
                {
                    // The coordinator is unreachable: what it has not told yet is not held
                    // against the segments; they wait until it answers.
                    tracing::debug!(%error, "origin hashes unavailable");
                    if !last {
                        return;
                    }
                }
            }
            let (node, hash, len, received, received_ms) = (
                front.node,
                front.hash,
                front.len,
                front.received,
                front.received_ms,
            );
            match receipts.check_hash(&self.index, &hash, len) {
                SegmentCheck::Verified { sequence } => {
                    self.stats.send_modify(|s| {
                        if let Some(last) = s.last_verified_sequence {
                            s.skipped_segments = s
                                .skipped_segments
                                .saturating_add(sequence.saturating_sub(last.saturating_add(1)));
                            if sequence <= last {
                                s.repeated_segments += 1;
                            }
                        }
                        s.last_verified_sequence = Some(
                            s.last_verified_sequence
                                .map_or(sequence, |last| last.max(sequence)),
                        );
                        s.verified_segments += 1;
                        s.verified_bytes += len as u64;
                        *s.verified_bytes_by_node.entry(node).or_default() += len as u64;
                    });
                }
                SegmentCheck::Unknown => {
                    // Unverified only once the origin's reports moved past it: while they are
                    // late (the coordinator was away, its backlog is arriving) it waits.
                    let judged = received.elapsed() >= self.config.verify_timeout
                        && self.index.reported_since(received_ms);
                    if !last && !judged && pending.len() <= MAX_PENDING {
                        return;
                    }
                    tracing::debug!(hash = %hash, "segment not from the origin");
                    self.stats.send_modify(|s| s.unverified_segments += 1);
                }
            }
            pending.pop_front();
        }
    }

    /// Signs what the session verified since its last receipt and hands the receipt in, with
    /// those kept from earlier attempts.
    async fn send_receipt(&mut self, play: &PlayResponse, receipts: &mut SessionReceipts) {
        let fresh: Vec<SignedReceipt> = receipts.next_receipt(&self.key).into_iter().collect();
        self.retry_unsent().await;
        for chunk in fresh.chunks(RECEIPTS_PER_POST) {
            let outcome = match self.config.receipts {
                ReceiptDelivery::Node => match self.post_to_node(play, chunk).await {
                    Ok(outcome) => Ok(outcome),
                    Err(_) => self.coordinator.post_receipts(chunk.to_vec()).await,
                },
                ReceiptDelivery::Coordinator => {
                    match self.coordinator.post_receipts(chunk.to_vec()).await {
                        Ok(outcome) => Ok(outcome),
                        // The coordinator is away: the node keeps the receipts and hands them
                        // in with its first heartbeat that gets through (a session's last
                        // receipt is not lost with the outage).
                        Err(error) => match self.post_to_node(play, chunk).await {
                            Ok(outcome) => Ok(outcome),
                            Err(_) => Err(error),
                        },
                    }
                }
            };
            if outcome.is_err() {
                self.keep_unsent(chunk);
            }
            self.record_outcome(chunk.len(), outcome.map_err(|e| e.to_string()));
        }
    }

    /// Hands the receipts no one took before to the coordinator (each session's own node is
    /// credited); they stay kept while it is away.
    async fn retry_unsent(&mut self) {
        if self
            .unsent_tried
            .is_some_and(|at| at.elapsed() < UNSENT_RETRY_INTERVAL)
        {
            return;
        }
        self.unsent_tried = (!self.unsent.is_empty()).then(Instant::now);
        while !self.unsent.is_empty() {
            let take = self.unsent.len().min(RECEIPTS_PER_POST);
            let chunk: Vec<SignedReceipt> = self.unsent.drain(..take).collect();
            match self.coordinator.post_receipts(chunk.clone()).await {
                Ok(outcome) => self.record_outcome(0, Ok(outcome)),
                Err(error) => {
                    // Back in front, in order, for the next attempt.
                    self.unsent.splice(..0, chunk);
                    self.record_outcome(0, Err(error.to_string()));
                    return;
                }
            }
        }
    }

    /// Keeps receipts neither the node nor the coordinator took, for [`Self::retry_unsent`]:
    /// at most [`MAX_UNSENT_RECEIPTS`], the oldest dropped first (receipts are cumulative, so
    /// a session's newest one acknowledges what the dropped ones did, booked later).
    fn keep_unsent(&mut self, receipts: &[SignedReceipt]) {
        self.unsent.extend_from_slice(receipts);
        let excess = self.unsent.len().saturating_sub(MAX_UNSENT_RECEIPTS);
        self.unsent.drain(..excess);
    }

    /// Counts `sent` receipts handed in and what came of a post.
    fn record_outcome(&self, sent: usize, outcome: Result<crate::wire::ReceiptsOutcome, String>) {
        self.stats.send_modify(|s| {
            s.receipts_sent += sent as u64;
            match outcome {
                Ok(outcome) => {
                    s.receipts_accepted += outcome.accepted;
                    s.receipts_rejected.extend(outcome.rejected);
                }
                Err(error) => s.last_error = Some(format!("receipt: {error}")),
            }
        });
    }

    /// `POST /receipts` on the node's HTTP listener.
    async fn post_to_node(
        &self,
        play: &PlayResponse,
        receipts: &[SignedReceipt],
    ) -> Result<crate::wire::ReceiptsOutcome, String> {
        let mut url = Url::parse(&play.http_flv_url).map_err(|e| e.to_string())?;
        url.set_path("/receipts");
        url.set_query(None);
        let body = serde_json::to_vec(&ReceiptsRequest {
            receipts: receipts.to_vec(),
        })
        .map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

/// `url` with `grant=<token>` in its query (segment requests carry the grant too).
/// The LL-HLS playlist beside a node's MPEG-TS playlist: `/{app}/{stream}.m3u8` becomes
/// `/{app}/{stream}/ll.m3u8` (the query, carrying the grant, is kept).
fn low_latency_url(mut url: Url) -> Url {
    if let Some(base) = url.path().strip_suffix(".m3u8") {
        let path = format!("{base}/ll.m3u8");
        url.set_path(&path);
    }
    url
}

fn with_token(mut url: Url, token: &str) -> Url {
    if !url.query_pairs().any(|(name, _)| name == "grant") {
        url.query_pairs_mut().append_pair("grant", token);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A viewer's run routed by the coordinator at `url`, as `Viewer::start` builds it.
    fn run_against(url: &str) -> Run {
        let config = ViewerConfig::new(url, "show");
        let key = KeyPair::from_seed([3; 32]);
        let (stats, _) = watch::channel(ViewerStats::new(key.viewer_key()));
        let coordinator = CoordinatorClient::new(url).expect("client");
        let http = node_http_client(config.request_timeout).expect("http client");
        Run::new(
            config,
            coordinator,
            http,
            key,
            stats,
            CancellationToken::new(),
            None,
        )
    }

    fn receipt(key: &KeyPair, seq: u64) -> SignedReceipt {
        streamr_core::Signed::sign(
            streamr_core::ViewerReceipt {
                session_id: SessionId::from_bytes([1; 16]),
                seq,
                bytes_total: seq * 1_000,
                last_segment_seq: seq,
                segments_digest: streamr_core::ContentDigest::from_bytes([0; 32]),
                t_ms: 1_800_000_000_000 + seq,
            },
            key,
        )
    }

    #[tokio::test]
    async fn receipts_no_one_took_are_kept_and_handed_in_once_the_coordinator_answers() {
        // The coordinator is away (nothing listens on its port).
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("address"));
        drop(closed);
        let mut run = run_against(&url);
        let key = KeyPair::from_seed([4; 32]);
        let all: Vec<SignedReceipt> = (1..=MAX_UNSENT_RECEIPTS as u64 + 10)
            .map(|seq| receipt(&key, seq))
            .collect();
        run.keep_unsent(&all);
        // Bounded, the oldest dropped first (the newer ones are cumulative).
        assert_eq!(run.unsent.len(), MAX_UNSENT_RECEIPTS);
        assert_eq!(run.unsent.first().map(|r| r.body.seq), Some(11));
        run.retry_unsent().await;
        assert_eq!(
            run.unsent.len(),
            MAX_UNSENT_RECEIPTS,
            "kept while it is away"
        );
        assert_eq!(run.unsent.first().map(|r| r.body.seq), Some(11), "in order");

        // Back: every kept receipt is handed in, in posts of at most RECEIPTS_PER_POST.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let mut received = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 65_536];
                let body = loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => request.extend_from_slice(buf.get(..n).unwrap_or_default()),
                    }
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break Some(request[end + 4..end + 4 + length].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let posted: ReceiptsRequest = serde_json::from_slice(&body).expect("receipts");
                let answer = format!("{{\"accepted\":{},\"rejected\":[]}}", posted.receipts.len());
                received.push(posted.receipts.len());
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                if received.iter().sum::<usize>() >= MAX_UNSENT_RECEIPTS {
                    return received;
                }
            }
            received
        });
        run.coordinator = CoordinatorClient::new(&url).expect("client");
        run.unsent_tried = None;
        run.retry_unsent().await;
        assert!(run.unsent.is_empty());
        let posts = server.await.expect("server");
        assert_eq!(posts.iter().sum::<usize>(), MAX_UNSENT_RECEIPTS);
        assert!(posts.iter().all(|&n| n <= RECEIPTS_PER_POST), "{posts:?}");
        assert_eq!(
            run.stats.borrow().receipts_accepted,
            MAX_UNSENT_RECEIPTS as u64
        );
    }

    /// Reads one request head from `socket`; false once the peer closed it.
    async fn read_head(socket: &mut tokio::net::TcpStream) -> bool {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
        true
    }

    /// A node whose keep-alive timer fires as the viewer's next request on the connection
    /// arrives (it answers a connection's first request and closes it at the second): a viewer
    /// that paused longer than it may reuse a connection asks on a new one and is answered.
    #[tokio::test]
    async fn a_connection_idle_past_the_reuse_limit_is_not_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if read_head(&mut socket).await {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        // The next request on this connection meets the node's close.
                        read_head(&mut socket).await;
                    }
                });
            }
        });
        let http = node_http_client(Duration::from_secs(5)).expect("client");
        let url = format!("http://{addr}/live/show.m3u8");
        let first = http.get(&url).send().await.expect("first request");
        assert_eq!(first.text().await.expect("body"), "ok");
        tokio::time::sleep(NODE_CONNECTION_REUSE + Duration::from_millis(300)).await;
        let second = http.get(&url).send().await;
        assert!(
            second.is_ok(),
            "a request after a pause went to a connection the node was closing: {second:?}"
        );
    }
}
