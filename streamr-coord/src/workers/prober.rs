//! The probe runner that fetches from real nodes: a probe is a viewer, and a node cannot tell
//! it from one. Each probe uses a fresh viewer key and a grant shaped like every viewer's
//! (the same lifetime and byte allowance), is recorded as a session like a viewer's, and plays
//! like a player: usually HLS, fetching the playlist and then the two or three newest segments
//! in order (as players do when they join a live stream), signing a cumulative receipt for
//! each segment whose content it verified and posting it to the node, which forwards it like
//! any other; sometimes HTTP-FLV, reading the stream for a few seconds (and, like a plain
//! player, sending no receipt). When each node is probed again is drawn at random around the
//! probe interval.
//!
//! Probe sessions are marked `probe` in the coordinator's own session records, which nodes
//! never see: settlement leaves them unpaid.
//!
//! HLS probes measure time to first byte and the throughput sustained over all the segments
//! fetched. Each segment's BLAKE3 hash must equal one the origin reported for that stream.
//! Segments are matched by hash among the origin's recent reports, not by sequence number: a
//! node that started relaying mid-stream numbers its segments from its own start, while the
//! content of each segment (cut on the same timestamp grid) is byte-identical to the origin's.
//!
//! A probed segment is judged only once the origin's report of it can have arrived (see
//! [`judge`]): a node can only serve what the origin cut before the probe downloaded it, and
//! the origin delivers its reports in order (from its on-disk journal after a coordinator
//! outage), so once the coordinator holds a report of a segment the origin cut after the
//! download, every segment the node served is either among the reports or not the origin's.
//! Until then a segment matching no report is *not yet known*, neither passed nor failed:
//! the origin's report of the newest one may be in flight, or its backlog still arriving
//! after a coordinator outage. Such a probe is held and settled on a later round (its result
//! is recorded then), or dropped unjudged when the origin reports nothing past it for
//! [`PENDING_LIMIT`] (what the coordinator never heard of is no evidence against a node). The
//! bound is the prober's own clock, never a time or place the node claims (its
//! `EXT-X-PROGRAM-DATE-TIME` or media sequence), so stamping segments in the future buys a
//! lying node nothing: its segment is a mismatch as soon as the origin has reported one cut
//! after the download. The newest listed segment is judged once the node lists what follows
//! it (the prober polls the playlist again, as a player does): where the origin stopped (it was
//! restarted, or a relay's stream ended) a relay's open segment is cut short and never
//! reported, and the relay marks it with `EXT-X-DISCONTINUITY` (or `EXT-X-ENDLIST`) once the
//! stream goes on; only such a segment is spared (claiming discontinuities buys a lying node
//! little: the segments on either side of one are never picked). A segment that left the
//! playlist before the prober saw what followed it drops the probe without a verdict (an
//! honest relay's segment can leave its window during a slow probe round; a node renaming a
//! forged segment away gains no pass). A playlist that never goes
//! on does not shelter its newest segment: it is judged once the origin has gone on well past
//! the probe (see [`judge`]).
//! An HTTP-FLV probe checks that the node answers with an FLV stream; its
//! throughput follows the stream's bitrate, so it is not a capacity measurement and only its
//! failures are recorded.
//!
//! A stream whose origin reported nothing for [`REPORTS_CURRENT`] (not being published, or its
//! origin cut off from the coordinator) is not probed: nothing it served could be judged. Segments
//! cut at a publisher leave or start (next to an `EXT-X-DISCONTINUITY`, possibly partial on a
//! relay) are never picked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, NodeId, ProbeResult, SessionGrant, SessionId, Signed,
    SignedGrant, SignedReceipt, StreamId, ViewerReceipt,
};

use crate::grant_token;
use crate::storage::{NodeRecord, SegmentRecord, SessionRecord, Storage};
use crate::wire::ReceiptsRequest;
use crate::workers::ProbeRunner;

/// Origin segment reports a probed segment is compared with.
const RECENT_SEGMENTS: i64 = 60;
/// A stream is probed only while the origin's newest segment report is at most this old.
const REPORTS_CURRENT: Duration = Duration::from_secs(20);
/// Origin segment reports a held probe's segments are looked up in (the reports delivered
/// since the probe, a backlog included, are among them).
const PENDING_SEGMENTS: i64 = 600;
/// How far ahead of the coordinator's clock the origin's may run before a report it stamped
/// after a probe could be one it cut before it (the probe then waits that much longer).
const REPORT_CLOCK_SLACK_MS: i64 = 2_000;
/// How long a probe whose segments are not known yet is held for the origin's reports to move
/// past it; then it is dropped unjudged.
const PENDING_LIMIT: Duration = Duration::from_secs(120);
/// How far past a probe the origin's reports may move while the newest probed segment, matching
/// none of them, is still the last one the node lists; then it is judged (see [`judge`]). An
/// honest relay lists what follows a segment cut short within two target durations of the
/// origin going on (it may leave the new run's first segment out).
const OPEN_END_LIMIT_MS: i64 = 30_000;
/// Largest segment a probe downloads.
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// One HLS probe fetches this many segments at least and at most (fewer when fewer are listed).
const HLS_SEGMENTS: (usize, usize) = (2, 3);
/// By default, one probe in this many plays HTTP-FLV instead of HLS.
const FLV_ONE_IN: u32 = 4;
/// How long an HTTP-FLV probe reads, at least and at most, ms.
const FLV_WATCH_MS: (u64, u64) = (1_500, 4_000);
/// Most bytes an HTTP-FLV probe reads.
const MAX_FLV_BYTES: usize = 16 << 20;

/// `url` with the value of its `grant` query parameter elided: a grant is a bearer token, and
/// logs are read by more people than should hold one.
fn redacted(url: &str) -> String {
    match url.find("grant=") {
        Some(start) => {
            let value = start + "grant=".len();
            let end = url[value..].find('&').map_or(url.len(), |end| value + end);
            format!("{}…{}", &url[..value], &url[end..])
        }
        None => url.to_owned(),
    }
}

/// `error` and every cause under it ("error sending request" alone says nothing).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Probes nodes over HTTP like a viewer (see the module docs).
pub struct HttpProber {
    storage: Arc<dyn Storage>,
    coordinator_key: KeyPair,
    http: reqwest::Client,
    timeout: Duration,
    every: Duration,
    grant_ttl: Duration,
    grant_bytes_per_second: u64,
    flv_one_in: u32,
    next_due: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    pending: std::sync::Mutex<std::collections::HashMap<String, Pending>>,
}

/// Where a probed segment stands in the node's playlist, as far as the prober has seen (see
/// [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Another segment follows it with no `EXT-X-DISCONTINUITY` between: the node cut it
    /// where the origin cuts, so it is judged like any other.
    Closed,
    /// The last segment listed, the stream going on: the node has not said yet whether it was
    /// cut where the origin cuts.
    Open,
    /// Followed by `EXT-X-DISCONTINUITY`, or the last before `EXT-X-ENDLIST`: cut short where
    /// the stream broke off (an origin restarted, a relay's stream ended), which the origin never
    /// reports. Not judged when it matches no report.
    CutShort,
    /// No longer listed when the prober looked again, before it saw what followed: it cannot
    /// tell a segment cut short (an honest relay whose segment left its window while a slow
    /// probe round went round) from one renamed away. The probe is dropped without a verdict:
    /// it neither fails the node nor counts as passed.
    Gone,
}

/// Where the segment listed as `uri` stands in `playlist` (a media playlist); `None` when it is
/// not listed.
pub(crate) fn place_in(playlist: &str, uri: &str) -> Option<Place> {
    let mut lines = playlist.lines().map(str::trim);
    lines.find(|line| *line == uri)?;
    for line in lines {
        if line == "#EXT-X-DISCONTINUITY" || line == "#EXT-X-ENDLIST" {
            return Some(Place::CutShort);
        }
        if !line.is_empty() && !line.starts_with('#') {
            return Some(Place::Closed);
        }
    }
    Some(Place::Open)
}

/// What the origin's reports say of one probed segment (see [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The origin reported these bytes.
    Matched,
    /// No report matches yet, and the origin's reports have not moved past the probe: its
    /// report may still arrive. Neither passed nor failed.
    NotYetKnown,
    /// No report matches, the origin's reports moved past the probe, and the segment is still
    /// the open end of the node's playlist: whether it was cut short is known once the node
    /// lists what follows it (the prober looks again). Neither passed nor failed.
    Open,
    /// No report matches, and the origin has reported a segment it cut after the probe: not
    /// the origin's.
    Mismatch,
    /// A segment cut short where the stream broke off ([`Place::CutShort`]), matching no report
    /// once the reports moved past the probe: never reported by the origin. Not judged.
    Skipped,
    /// A segment that left the node's playlist before the prober saw what followed it
    /// ([`Place::Gone`]), matching no report once the reports moved past the probe: the whole
    /// probe is dropped without a verdict.
    Unjudgeable,
}

/// Whether the origin's reports have moved past a probe made at `probed_ms` (the
/// coordinator's clock): the newest reported segment was cut after it, allowing
/// [`REPORT_CLOCK_SLACK_MS`] for the origin's clock. Reports arrive in order, so every segment
/// the origin cut before the probe has been reported by then.
pub(crate) fn reported_past(origin: &[SegmentRecord], probed_ms: i64) -> bool {
    origin
        .iter()
        .map(|s| s.published_ms)
        .max()
        .is_some_and(|newest| newest >= probed_ms.saturating_add(REPORT_CLOCK_SLACK_MS))
}

/// The verdict on a segment hashing to `hash` that a probe finished downloading at
/// `probed_ms`, standing at `place` in the node's playlist, given the origin's reports:
/// matched when one carries that hash, else not yet known until the reports moved past the
/// probe ([`reported_past`]), else a mismatch. Only the probe's own time bounds the wait, never
/// anything the node claims.
///
/// The exceptions are at the end of the node's playlist. Where the origin stopped (it was
/// killed and restarted, a relay's stream ended) a relay's open segment is cut short and never
/// reported, and the relay marks that with `EXT-X-DISCONTINUITY` only once the stream goes on;
/// the origin's reports cannot tell it apart (a restarted origin may cut again within one
/// segment's time). So an unmatched segment that was the last listed is judged only once the
/// node has listed what follows it: a mismatch when a segment follows plainly, left unjudged
/// ([`Verdict::Skipped`]) when it was cut short ([`Place::CutShort`]), and the probe dropped
/// without a verdict ([`Verdict::Unjudgeable`]) when the segment left the playlist before the
/// prober saw what followed it ([`Place::Gone`]). One still listed last
/// ([`Verdict::Open`]) is a mismatch once the origin has reported a segment cut
/// [`OPEN_END_LIMIT_MS`] after the probe: by then an honest node has listed what follows it,
/// so a node whose playlist stays put cannot hold a forged newest segment unjudged.
pub(crate) fn judge(hash: &str, place: Place, probed_ms: i64, origin: &[SegmentRecord]) -> Verdict {
    if origin.iter().any(|s| s.hash == hash) {
        return Verdict::Matched;
    }
    if !reported_past(origin, probed_ms) {
        return Verdict::NotYetKnown;
    }
    match place {
        Place::Closed => Verdict::Mismatch,
        Place::CutShort => Verdict::Skipped,
        Place::Gone => Verdict::Unjudgeable,
        Place::Open if reported_past(origin, probed_ms.saturating_add(OPEN_END_LIMIT_MS)) => {
            Verdict::Mismatch
        }
        Place::Open => Verdict::Open,
    }
}

/// A probe held until the origin's reports can judge the segments it could not match yet.
#[derive(Debug)]
struct Pending {
    stream: String,
    /// When the probe finished downloading (unix ms, the coordinator's clock).
    probed_ms: i64,
    /// Hashes of the segments not known yet, each with where it stands in the node's playlist.
    unknown: Vec<(String, Place)>,
    /// The node's playlist (with the probe's grant) and the newest probed segment's URI as
    /// listed there: looked at again while that segment is [`Place::Open`].
    playlist_url: String,
    newest_uri: String,
    /// The probe's result, its segments so far all matched.
    result: ProbeResult,
    since: Instant,
}

impl std::fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProber")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why one probe could not complete (logged; the probe counts as timed out). URLs are shown
/// without their grant token, and a request error with its causes.
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    #[error("GET {}: {}", redacted(.url), error_chain(.source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {}: HTTP {status}", redacted(.url))]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("playlist {} lists no segment", redacted(.url))]
    EmptyPlaylist { url: String },
    #[error("segment {} is larger than {MAX_SEGMENT_BYTES} bytes", redacted(.url))]
    TooLarge { url: String },
    #[error("GET {}: not an FLV stream", redacted(.url))]
    NotFlv { url: String },
    #[error("recording the probe session: {0}")]
    Session(String),
}

struct Fetched {
    bytes: Vec<u8>,
    ttfb: Duration,
    total: Duration,
}

/// What an HLS probe fetched: the segments, oldest first, and where the newest stands in the
/// node's playlist.
struct ProbedPlaylist {
    fetched: Vec<Fetched>,
    newest_place: Place,
    newest_uri: String,
    playlist_url: String,
}

impl HttpProber {
    /// A prober reading streams and origin hashes from `storage`, recording its sessions there
    /// and signing its grants with `coordinator_key` (the key nodes verify grants with). Each
    /// request times out after 10 s; each node is probed about every 30 s (see
    /// [`HttpProber::every`]); grants are shaped like those of the default configuration (see
    /// [`HttpProber::grants_like`]).
    pub fn new(storage: Arc<dyn Storage>, coordinator_key: KeyPair) -> Self {
        Self::with_timeout(storage, coordinator_key, Duration::from_secs(10))
    }

    /// As [`HttpProber::new`] with another per-request timeout.
    pub fn with_timeout(
        storage: Arc<dyn Storage>,
        coordinator_key: KeyPair,
        timeout: Duration,
    ) -> Self {
        let defaults = crate::CoordConfig::default();
        HttpProber {
            storage,
            coordinator_key,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            timeout,
            every: Duration::from_secs(30),
            grant_ttl: defaults.grant_ttl,
            grant_bytes_per_second: defaults.grant_bytes_per_second,
            flv_one_in: FLV_ONE_IN,
            next_due: std::sync::Mutex::default(),
            pending: std::sync::Mutex::default(),
        }
    }

    /// Probes each node about once per `every` (default 30 s; each wait drawn between half and
    /// one and a half times it, so nodes cannot predict probes), however often the worker
    /// round runs.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Shapes probe grants like the grants `config` gives viewers (lifetime and bytes per
    /// second), so a node cannot tell probes by their grants.
    pub fn grants_like(mut self, config: &crate::CoordConfig) -> Self {
        self.grant_ttl = config.grant_ttl;
        self.grant_bytes_per_second = config.grant_bytes_per_second;
        self
    }

    /// Plays HTTP-FLV in one probe out of `one_in` (default 4), HLS in the others; 0 never
    /// plays HTTP-FLV, 1 always does.
    pub fn flv_one_in(mut self, one_in: u32) -> Self {
        self.flv_one_in = one_in;
        self
    }

    /// Whether `node` is due for a probe now; if so, draws when it is due next.
    fn due(&self, node: &str) -> bool {
        let mut next_due = self
            .next_due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if next_due.get(node).is_some_and(|at| now < *at) {
            return false;
        }
        let wait = self.every.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        next_due.insert(node.to_owned(), now + wait);
        true
    }

    /// The origin's recent segments of `stream`.
    async fn origin_segments(&self, stream: &str) -> Option<Vec<SegmentRecord>> {
        self.storage
            .list_segments(stream, RECENT_SEGMENTS)
            .await
            .ok()
    }

    /// Whether the origin's reports of `stream` are current: its newest segment was cut within
    /// [`REPORTS_CURRENT`]. Otherwise a node's newer segments could not be matched yet.
    async fn reports_current(&self, stream: &str) -> bool {
        let Ok(newest) = self.storage.list_segments(stream, 1).await else {
            return false;
        };
        let now = i64::try_from(crate::client::unix_ms()).unwrap_or(i64::MAX);
        let limit = i64::try_from(REPORTS_CURRENT.as_millis()).unwrap_or(i64::MAX);
        newest
            .first()
            .is_some_and(|segment| now.saturating_sub(segment.published_ms) <= limit)
    }

    /// The stream to probe `node` on: one it relays, else the newest live stream.
    async fn stream_for(&self, node: &NodeRecord) -> Option<String> {
        let relayed: Vec<String> = serde_json::from_str(&node.streams_json).unwrap_or_default();
        if let Some(stream) = relayed.choose(&mut rand::thread_rng()) {
            return Some(stream.clone());
        }
        let streams = self.storage.list_streams(20).await.ok()?;
        streams
            .into_iter()
            .find(|s| s.status == "live")
            .map(|s| s.id)
    }

    /// A grant for a fresh viewer key, shaped like a viewer's, recorded as a probe session.
    async fn open_session(
        &self,
        node: &NodeRecord,
        node_id: NodeId,
        stream: &str,
        viewer: &KeyPair,
    ) -> Result<Option<SignedGrant>, ProbeFailure> {
        let Ok(stream_id) = StreamId::new(stream) else {
            return Ok(None);
        };
        let mut session = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut session);
        let now = crate::client::unix_ms();
        let ttl_ms = u64::try_from(self.grant_ttl.as_millis()).unwrap_or(u64::MAX);
        let grant = SessionGrant {
            session_id: SessionId::from_bytes(session),
            viewer: viewer.viewer_key(),
            node_id,
            stream_id,
            max_bytes: self.grant_bytes_per_second.saturating_mul(ttl_ms / 1000),
            expiry_ms: now.saturating_add(ttl_ms),
        };
        let signed = Signed::sign(grant, &self.coordinator_key);
        let grant_json =
            serde_json::to_string(&signed).map_err(|e| ProbeFailure::Session(e.to_string()))?;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.storage
            .create_session(&SessionRecord {
                session_id: signed.body.session_id.to_string(),
                stream_id: stream.to_owned(),
                node_id: node.id.clone(),
                viewer: signed.body.viewer.to_string(),
                max_bytes: clamp(signed.body.max_bytes),
                expiry_ms: clamp(signed.body.expiry_ms),
                issued_at_ms: clamp(now),
                grant_json,
                viewer_subnet: String::new(),
                viewer_prefix64: String::new(),
                probe: true,
            })
            .await
            .map_err(|e| ProbeFailure::Session(e.to_string()))?;
        Ok(Some(signed))
    }

    async fn fetch(&self, url: &str) -> Result<Fetched, ProbeFailure> {
        let started = Instant::now();
        let http = |source| ProbeFailure::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = self.http.get(url).send().await.map_err(http)?;
        let ttfb = started.elapsed();
        if !response.status().is_success() {
            return Err(ProbeFailure::Status {
                url: url.to_owned(),
                status: response.status(),
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if bytes.len() + chunk.len() > MAX_SEGMENT_BYTES {
                return Err(ProbeFailure::TooLarge {
                    url: url.to_owned(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            ttfb,
            total: started.elapsed(),
        })
    }

    /// Fetches the playlist and then its newest two or three segments in order; returns them,
    /// or an empty list when the playlist lists a single segment (see below).
    async fn fetch_segments(
        &self,
        node: &NodeRecord,
        stream: &str,
        token: &str,
    ) -> Result<ProbedPlaylist, ProbeFailure> {
        let base = node.http_url.trim_end_matches('/');
        let playlist_url = format!("{base}/live/{stream}.m3u8?grant={token}");
        let playlist = self.fetch(&playlist_url).await?;
        let text = String::from_utf8_lossy(&playlist.bytes);
        let segments = probe_candidates(&text);
        let mut probed = ProbedPlaylist {
            fetched: Vec::new(),
            newest_place: Place::Closed,
            newest_uri: String::new(),
            playlist_url: playlist_url.clone(),
        };
        // A node listing nothing probeable yet is not probed now (a node that keeps listing one
        // segment is never probed, so its availability stays 0).
        if segments.len() <= 1 {
            return Ok(probed);
        }
        let candidates = segments.get(1..).unwrap_or_default();
        if candidates.is_empty() {
            return Err(ProbeFailure::EmptyPlaylist {
                url: playlist_url.clone(),
            });
        }
        let wanted = rand::thread_rng().gen_range(HLS_SEGMENTS.0..=HLS_SEGMENTS.1);
        let newest = candidates
            .get(candidates.len().saturating_sub(wanted)..)
            .unwrap_or_default();
        if let Some(uri) = newest.last() {
            probed.newest_uri = (*uri).to_owned();
            probed.newest_place = place_in(&text, uri).unwrap_or(Place::Closed);
        }
        for uri in newest {
            let mut url = if uri.starts_with("http://") || uri.starts_with("https://") {
                (*uri).to_owned()
            } else if uri.starts_with('/') {
                format!("{base}{uri}")
            } else {
                format!("{base}/live/{uri}")
            };
            if !url.contains("grant=") {
                url = grant_token::with_grant_token(&url, token);
            }
            probed.fetched.push(self.fetch(&url).await?);
        }
        Ok(probed)
    }

    /// Posts a receipt to the node, as a viewer does; the node forwards it with its heartbeat.
    async fn send_receipt(&self, node: &NodeRecord, receipt: SignedReceipt) {
        let url = format!("{}/receipts", node.http_url.trim_end_matches('/'));
        let request = ReceiptsRequest {
            receipts: vec![receipt],
        };
        let Ok(body) = serde_json::to_vec(&request) else {
            return;
        };
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        if let Err(error) = sent {
            tracing::debug!(node = %node.id, %error, "probe receipt not delivered");
        }
    }

    /// An HLS probe: fetches segments, checks each against the origin and acknowledges the
    /// verified ones with receipts.
    async fn probe_hls(
        &self,
        node: &NodeRecord,
        node_id: NodeId,
        stream: &str,
        origin: &[SegmentRecord],
        viewer: &KeyPair,
        grant: &SignedGrant,
    ) -> Option<ProbeResult> {
        let token = grant_token::encode(grant);
        let probed = match self.fetch_segments(node, stream, &token).await {
            Ok(probed) if probed.fetched.is_empty() => return None,
            Ok(probed) => probed,
            Err(failure) => {
                tracing::info!(node = %node.id, %stream, %failure, "probe failed");
                return Some(self.timed_out(node_id));
            }
        };
        // Every segment was cut by the origin before it was downloaded; judge each against the
        // reports read before and after the download (the report of the newest one may have
        // arrived meanwhile).
        let probed_ms = i64::try_from(crate::client::unix_ms()).unwrap_or(i64::MAX);
        let mut reports = origin.to_vec();
        reports.extend(self.origin_segments(stream).await.unwrap_or_default());
        let mut hash_ok = true;
        let mut unknown = Vec::new();
        let mut bytes_total = 0u64;
        let mut receipt_seq = 0u64;
        let mut download = Duration::ZERO;
        let fetched = &probed.fetched;
        let newest = fetched.len().saturating_sub(1);
        for (index, segment) in fetched.iter().enumerate() {
            download += segment.total;
            let hash = segment_hash(&segment.bytes).to_string();
            let place = if index == newest {
                probed.newest_place
            } else {
                Place::Closed
            };
            match judge(&hash, place, probed_ms, &reports) {
                Verdict::Matched => {}
                Verdict::NotYetKnown | Verdict::Open => {
                    // What the coordinator has not heard of yet is no evidence against the
                    // node: neither judged nor acknowledged now (viewers' receipts cover it).
                    unknown.push((hash, place));
                    continue;
                }
                // A segment is [`Place::Gone`] only when the prober looks again.
                Verdict::Skipped | Verdict::Unjudgeable => continue,
                Verdict::Mismatch => {
                    tracing::warn!(node = %node.id, %stream, %hash, "probed segment matches no origin hash");
                    hash_ok = false;
                    continue;
                }
            }
            let Some(matched) = reports.iter().find(|s| s.hash == hash) else {
                continue;
            };
            bytes_total = bytes_total.saturating_add(segment.bytes.len() as u64);
            let (Ok(last_segment_seq), Ok(segments_digest)) = (
                u64::try_from(matched.sequence),
                matched.digest.parse::<ContentDigest>(),
            ) else {
                continue;
            };
            receipt_seq += 1;
            let receipt = ViewerReceipt {
                session_id: grant.body.session_id,
                seq: receipt_seq,
                bytes_total,
                last_segment_seq,
                segments_digest,
                t_ms: crate::client::unix_ms(),
            };
            self.send_receipt(node, Signed::sign(receipt, viewer)).await;
        }
        let bytes: usize = fetched.iter().map(|f| f.bytes.len()).sum();
        let secs = download.as_secs_f64().max(0.000_001);
        let ttfb = fetched.first().map_or(Duration::ZERO, |f| f.ttfb);
        let result = ProbeResult {
            node_id,
            hash_ok,
            timed_out: false,
            ttfb_ms: u64::try_from(ttfb.as_millis()).unwrap_or(u64::MAX),
            throughput_bytes_per_s: (bytes as f64 / secs) as u64,
        };
        if !hash_ok || unknown.is_empty() {
            return Some(result);
        }
        tracing::debug!(node = %node.id, %stream, unknown = unknown.len(),
            "probed segments not reported yet; the probe waits for the origin's reports");
        self.lock_pending().insert(
            node.id.clone(),
            Pending {
                stream: stream.to_owned(),
                probed_ms,
                unknown,
                playlist_url: probed.playlist_url,
                newest_uri: probed.newest_uri,
                result,
                since: Instant::now(),
            },
        );
        None
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Settles `node`'s held probe if the origin's reports now can: `Some` with its result
    /// (passed when every held segment was reported since, failed once the reports moved past
    /// the probe without them). `held` is whether a probe is still held (the node is not
    /// probed again meanwhile). While the newest probed segment is the last one the node lists,
    /// its playlist is fetched again (as a player polls it) to see what follows it.
    async fn settle_pending(&self, node: &NodeRecord) -> (Option<ProbeResult>, bool) {
        let Some(mut held) = self.lock_pending().remove(&node.id) else {
            return (None, false);
        };
        if held.unknown.iter().any(|(_, place)| *place == Place::Open) {
            match self.fetch(&held.playlist_url).await {
                Ok(playlist) => {
                    let text = String::from_utf8_lossy(&playlist.bytes);
                    // A segment no longer listed left before the prober saw what followed it
                    // (see [`Place::Gone`]).
                    let place = place_in(&text, &held.newest_uri).unwrap_or(Place::Gone);
                    for (_, open) in held.unknown.iter_mut().filter(|(_, p)| *p == Place::Open) {
                        *open = place;
                    }
                }
                Err(failure) => {
                    tracing::debug!(node = %node.id, stream = %held.stream, %failure,
                        "the held probe's playlist could not be fetched again; tried next round");
                }
            }
        }
        let reports = self
            .storage
            .list_segments(&held.stream, PENDING_SEGMENTS)
            .await
            .unwrap_or_default();
        let mut failed = false;
        let mut unjudgeable = false;
        held.unknown.retain(|(hash, place)| {
            match judge(hash, *place, held.probed_ms, &reports) {
                Verdict::Matched => false,
                Verdict::Unjudgeable => {
                    unjudgeable = true;
                    false
                }
                Verdict::NotYetKnown | Verdict::Open => true,
                Verdict::Skipped => {
                    tracing::debug!(node = %node.id, stream = %held.stream, %hash,
                        "the probed node's segment cut short where the stream broke off was never reported; not judged");
                    false
                }
                Verdict::Mismatch => {
                    tracing::warn!(node = %node.id, stream = %held.stream, %hash, ?place,
                        "probed segment matches no origin hash");
                    failed = true;
                    false
                }
            }
        });
        if failed {
            held.result.hash_ok = false;
            return (Some(held.result), false);
        }
        if unjudgeable {
            tracing::info!(node = %node.id, stream = %held.stream,
                "the probed node's newest segment left its playlist before what followed it was seen; the probe is dropped unjudged");
            return (None, false);
        }
        if held.unknown.is_empty() {
            return (Some(held.result), false);
        }
        if held.since.elapsed() >= PENDING_LIMIT {
            tracing::info!(node = %node.id, stream = %held.stream,
                "the origin reported nothing past a held probe; dropped unjudged");
            return (None, false);
        }
        self.lock_pending().insert(node.id.clone(), held);
        (None, true)
    }

    /// An HTTP-FLV probe: reads the stream for a few seconds. Only a failure is a result (see
    /// the module docs).
    async fn probe_flv(
        &self,
        node: &NodeRecord,
        node_id: NodeId,
        stream: &str,
        grant: &SignedGrant,
    ) -> Option<ProbeResult> {
        let token = grant_token::encode(grant);
        let base = node.http_url.trim_end_matches('/');
        let url = format!("{base}/live/{stream}.flv?grant={token}");
        let watch =
            Duration::from_millis(rand::thread_rng().gen_range(FLV_WATCH_MS.0..=FLV_WATCH_MS.1));
        match self.watch_flv(&url, watch).await {
            Ok(()) => None,
            Err(failure) => {
                tracing::info!(node = %node.id, %stream, %failure, "FLV probe failed");
                Some(self.timed_out(node_id))
            }
        }
    }

    async fn watch_flv(&self, url: &str, watch: Duration) -> Result<(), ProbeFailure> {
        let started = Instant::now();
        let http = |source| ProbeFailure::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = self.http.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(ProbeFailure::Status {
                url: url.to_owned(),
                status: response.status(),
            });
        }
        let mut head: Vec<u8> = Vec::new();
        let mut read = 0usize;
        while started.elapsed() < watch && read < MAX_FLV_BYTES {
            let left = watch.saturating_sub(started.elapsed());
            let chunk = match tokio::time::timeout(left, response.chunk()).await {
                Err(_) => break,
                Ok(chunk) => chunk.map_err(http)?,
            };
            let Some(chunk) = chunk else { break };
            if head.len() < 3 {
                head.extend(chunk.iter().take(3 - head.len()));
            }
            read = read.saturating_add(chunk.len());
        }
        if head.as_slice() != b"FLV" {
            return Err(ProbeFailure::NotFlv {
                url: url.to_owned(),
            });
        }
        Ok(())
    }

    fn timed_out(&self, node_id: NodeId) -> ProbeResult {
        ProbeResult {
            node_id,
            hash_ok: false,
            timed_out: true,
            ttfb_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            throughput_bytes_per_s: 0,
        }
    }
}

/// The segment URIs of a media playlist a probe may pick from, oldest first, as `None` for a
/// listed segment it must not pick: the oldest one, which may leave the node's window before it
/// is fetched (and on a node that joined mid-stream is the partial first segment, which no
/// origin segment equals), and the segments on either side of an `EXT-X-DISCONTINUITY` (cut
/// where a publisher left or started: partial on a relay, never reported by the origin). The
/// caller skips the first entry.
fn probe_candidates(playlist: &str) -> Vec<&str> {
    let mut listed: Vec<(&str, bool)> = Vec::new();
    let mut discontinuity = false;
    let mut before_discontinuity = Vec::new();
    for line in playlist.lines().map(str::trim) {
        if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
            if let Some(index) = listed.len().checked_sub(1) {
                before_discontinuity.push(index);
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            listed.push((line, discontinuity));
            discontinuity = false;
        }
    }
    for index in before_discontinuity {
        if let Some(entry) = listed.get_mut(index) {
            entry.1 = true;
        }
    }
    // The oldest stays first (the caller never picks it); the others next to a discontinuity
    // are left out.
    let mut candidates: Vec<&str> = listed.iter().take(1).map(|(uri, _)| *uri).collect();
    candidates.extend(
        listed
            .iter()
            .skip(1)
            .filter(|(_, near_discontinuity)| !near_discontinuity)
            .map(|(uri, _)| *uri),
    );
    candidates
}

#[async_trait::async_trait]
impl ProbeRunner for HttpProber {
    async fn probe(&self, node: &NodeRecord) -> Option<ProbeResult> {
        let node_id: NodeId = node.id.parse().ok()?;
        match self.settle_pending(node).await {
            (Some(result), _) => return Some(result),
            (None, true) => return None,
            (None, false) => {}
        }
        if !self.due(&node.id) {
            return None;
        }
        let stream = self.stream_for(node).await?;
        if !self.reports_current(&stream).await {
            tracing::debug!(node = %node.id, %stream, "the origin's segment reports are not current; not probing");
            return None;
        }
        let origin = self.origin_segments(&stream).await?;
        if origin.is_empty() {
            return None;
        }
        let viewer = KeyPair::generate(&mut rand::rngs::OsRng);
        let grant = match self.open_session(node, node_id, &stream, &viewer).await {
            Ok(grant) => grant?,
            Err(failure) => {
                tracing::warn!(node = %node.id, %failure, "probe not started");
                return None;
            }
        };
        let flv = self.flv_one_in > 0 && rand::thread_rng().gen_ratio(1, self.flv_one_in);
        if flv {
            self.probe_flv(node, node_id, &stream, &grant).await
        } else {
            self.probe_hls(node, node_id, &stream, &origin, &viewer, &grant)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Place::{Closed, CutShort, Gone, Open};
    use super::{
        judge, place_in, probe_candidates, redacted, ProbeFailure, Verdict, OPEN_END_LIMIT_MS,
        REPORT_CLOCK_SLACK_MS,
    };
    use crate::storage::SegmentRecord;

    fn report(sequence: i64, hash: &str, published_ms: i64) -> SegmentRecord {
        SegmentRecord {
            stream_id: "show".into(),
            sequence,
            hash: hash.into(),
            digest: String::new(),
            published_ms,
            // Delivered from the origin's journal long after it was cut.
            reported_at_ms: published_ms + 60_000,
            ll: None,
        }
    }

    #[test]
    fn a_segment_is_judged_only_once_the_origin_reported_past_the_probe() {
        // A backlog: the origin's reports so far stop 12 s before the probe; it cut a segment
        // every 2 s meanwhile, the relay serves the newest ones ("h8", "h9").
        let probed = 100_000;
        let cut = |i: i64| 80_000 + i * 2_000;
        let mut reports: Vec<_> = (0..5)
            .map(|i| report(i, &format!("h{i}"), cut(i)))
            .collect();
        assert_eq!(judge("h3", Closed, probed, &reports), Verdict::Matched);
        assert_eq!(judge("h9", Open, probed, &reports), Verdict::NotYetKnown);
        // The backlog arrives, up to a segment cut as the probe ended (within the clock slack):
        // still not known what else the relay may serve.
        reports.extend((5..9).map(|i| report(i, &format!("h{i}"), cut(i))));
        assert_eq!(judge("h8", Closed, probed, &reports), Verdict::Matched);
        assert_eq!(judge("h9", Open, probed, &reports), Verdict::NotYetKnown);
        reports.push(report(9, "h9", cut(9)));
        reports.push(report(10, "h10", cut(10)));
        assert_eq!(judge("h9", Open, probed, &reports), Verdict::Matched);
        assert_eq!(
            judge("forged", Open, probed, &reports),
            Verdict::NotYetKnown
        );
        // The origin reported a segment it cut after the probe: a segment no report carries is a
        // mismatch; at the playlist's open end it waits for what the node lists next, and one
        // cut short where the stream broke off is left unjudged.
        assert!(cut(11) >= probed + REPORT_CLOCK_SLACK_MS);
        reports.push(report(11, "h11", cut(11)));
        assert_eq!(judge("forged", Closed, probed, &reports), Verdict::Mismatch);
        assert_eq!(judge("forged", Open, probed, &reports), Verdict::Open);
        assert_eq!(
            judge("forged", CutShort, probed, &reports),
            Verdict::Skipped
        );
        assert_eq!(
            judge("forged", Gone, probed, &reports),
            Verdict::Unjudgeable
        );
        // A playlist that never goes on: judged once the origin went on long enough.
        let stuck = probed + OPEN_END_LIMIT_MS + REPORT_CLOCK_SLACK_MS;
        reports.push(report(12, "h12", stuck - 1));
        assert_eq!(judge("forged", Open, probed, &reports), Verdict::Open);
        reports.push(report(13, "h13", stuck));
        assert_eq!(judge("forged", Open, probed, &reports), Verdict::Mismatch);
        assert_eq!(
            judge("forged", CutShort, probed, &reports),
            Verdict::Skipped
        );
        // No reports at all: nothing can be judged.
        assert_eq!(judge("forged", Open, probed, &[]), Verdict::NotYetKnown);
        assert_eq!(judge("forged", Closed, probed, &[]), Verdict::NotYetKnown);
    }

    #[test]
    fn where_a_segment_stands_in_a_playlist() {
        let open = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nshow/1.ts\n\
                    #EXTINF:0.12,\nshow/2.ts\n";
        assert_eq!(place_in(open, "show/2.ts"), Some(Open));
        assert_eq!(place_in(open, "show/1.ts"), Some(Closed));
        assert_eq!(place_in(open, "show/9.ts"), None);
        let restarted = format!("{open}#EXT-X-DISCONTINUITY\n#EXTINF:4.0,\nshow/3.ts\n");
        assert_eq!(place_in(&restarted, "show/2.ts"), Some(CutShort));
        assert_eq!(place_in(&restarted, "show/3.ts"), Some(Open));
        let went_on = format!(
            "{open}#EXT-X-PROGRAM-DATE-TIME:2026-12-05T23:00:00.000Z\n\
                               #EXTINF:4.0,\nshow/3.ts\n"
        );
        assert_eq!(place_in(&went_on, "show/2.ts"), Some(Closed));
        let ended = format!("{open}#EXT-X-ENDLIST\n");
        assert_eq!(place_in(&ended, "show/2.ts"), Some(CutShort));
    }

    #[test]
    fn probe_failures_never_show_a_grant_token() {
        assert_eq!(
            redacted("http://n:8080/live/s.m3u8?grant=SECRET.TOKEN&x=1"),
            "http://n:8080/live/s.m3u8?grant=…&x=1"
        );
        assert_eq!(
            redacted("http://n/live/7.ts?grant=SECRET"),
            "http://n/live/7.ts?grant=…"
        );
        assert_eq!(redacted("http://n/live/7.ts"), "http://n/live/7.ts");
        let failure = ProbeFailure::NotFlv {
            url: "http://n/live/s.flv?grant=SECRET".into(),
        };
        assert!(!failure.to_string().contains("SECRET"), "{failure}");
    }

    #[test]
    fn segments_next_to_a_discontinuity_are_never_probed() {
        let playlist = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:4.0,\n3.ts\n#EXTINF:4.0,\n4.ts\n\
                        #EXTINF:1.2,\n5.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:4.0,\n6.ts\n\
                        #EXTINF:4.0,\n7.ts\n#EXTINF:4.0,\n8.ts\n";
        assert_eq!(
            probe_candidates(playlist),
            vec!["3.ts", "4.ts", "7.ts", "8.ts"]
        );
        let plain = "#EXTM3U\n#EXTINF:4.0,\na.ts\n#EXTINF:4.0,\nb.ts\n";
        assert_eq!(probe_candidates(plain), vec!["a.ts", "b.ts"]);
    }
}
