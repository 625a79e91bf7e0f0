//! The probe runner that fetches from real nodes: a probe is a viewer, and a node cannot tell it
//! from one. Each probe uses a fresh viewer key and a grant shaped like every viewer's (the same
//! lifetime and byte allowance), is recorded as a session like a viewer's, and plays like a player:
//! usually HLS, fetching the playlist and then the two or three newest segments in order (as
//! players do when they join a live stream), signing a cumulative receipt for each segment whose
//! content it verified and posting it to the node, which forwards it like any other; sometimes
//! HTTP-FLV, reading the stream for a few seconds (and, like a plain player, sending no receipt).
//! When each node is probed again is drawn at random around the probe interval.
//!
//! Probe sessions are marked `probe` in the coordinator's own session records, which nodes never
//! see: settlement leaves them unpaid.
//!
//! HLS probes measure time to first byte and the throughput sustained over all the segments
//! fetched. Each segment's BLAKE3 hash must equal one the origin reported for that stream. Segments
//! are matched by hash among the origin's recent reports, not by sequence number: a node that
//! started relaying mid-stream numbers its segments from its own start, while the content of each
//! segment (cut on the same timestamp grid) is byte-identical to the origin's.
//!
//! A probed segment is judged only once the origin's report of it can have arrived (the rule is
//! [`streamr_core::probe_judge`], which the simulator runs too): a node can only serve what the
//! origin cut before the probe downloaded it, and the origin delivers its reports in order (from
//! its on-disk journal after a coordinator outage), so once the coordinator holds a report of a
//! segment the origin cut after the download, every segment the node served is either among the
//! reports or not the origin's. Until then a segment matching no report is *not yet known*, neither
//! passed nor failed: the origin's report of the newest one may be in flight, or its backlog still
//! arriving after a coordinator outage. Such a probe is held and settled on a later round (its
//! result is recorded then), or dropped unjudged when the origin reports nothing past it for
//! [`HOLD_LIMIT_MS`](streamr_core::probe_judge::HOLD_LIMIT_MS) (what the coordinator never heard of
//! is no evidence against a node). The bound is the prober's own clock, never a time or place the
//! node claims (its `EXT-X-PROGRAM-DATE-TIME` or media sequence), so stamping segments in the
//! future buys a lying node nothing: its segment is a mismatch as soon as the origin has reported
//! one cut after the download. The newest listed segment is judged once the node lists what follows
//! it (the prober polls the playlist again, as a player does): where the origin stopped (it was
//! restarted, or a relay's stream ended) a relay's open segment is cut short and never reported,
//! and the relay marks it with `EXT-X-DISCONTINUITY` (or `EXT-X-ENDLIST`) once the stream goes on;
//! only such a segment is spared (claiming discontinuities buys a lying node little: the segments
//! on either side of one are never picked). A segment that left the playlist before the prober saw
//! what followed it drops the probe without a verdict (an honest relay's segment can leave its
//! window during a slow probe round; a node renaming a forged segment away gains no pass). A
//! playlist that never goes on does not shelter its newest segment: it is judged once the origin
//! has gone on well past the probe (see [`judge`]). Held probes are kept in storage: a coordinator
//! restart does not drop them, and any replica finishes one under a lease, so no two replicas judge
//! it. An HTTP-FLV probe checks that the node answers with an FLV stream; its throughput follows
//! the stream's bitrate, so it is not a capacity measurement and only its failures are recorded.
//!
//! A stream whose origin reported nothing for [`REPORTS_CURRENT`] (not being published, or its
//! origin cut off from the coordinator) is not probed: nothing it served could be judged. Segments
//! cut at a publisher leave or start (next to an `EXT-X-DISCONTINUITY`, possibly partial on a
//! relay) are never picked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use streamr_core::probe_judge::{
    judge, place_in, probe_candidates, HeldProbe, OriginReports, Place, ReportedSegment,
    SegmentVerdict, Settle,
};
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, NodeId, ProbeResult, SessionGrant, SessionId, Signed,
    SignedGrant, SignedReceipt, StreamId, ViewerReceipt,
};

use crate::grant_token;
use crate::storage::{HeldProbeRecord, NodeRecord, SegmentRecord, SessionRecord, Storage};
use crate::wire::ReceiptsRequest;
use crate::workers::ProbeRunner;

/// Origin segment reports a probed segment is compared with.
const RECENT_SEGMENTS: i64 = 60;
/// A stream is probed only while the origin's newest segment report is at most this old.
const REPORTS_CURRENT: Duration = Duration::from_secs(20);
/// Origin segment reports a held probe's segments are looked up in (the reports delivered
/// since the probe, a backlog included, are among them).
const PENDING_SEGMENTS: i64 = 600;
/// How long one replica may work on a held probe before another may take it over (it fetches
/// one playlist, at most the request timeout, and reads the reports).
const HELD_LEASE_MS: i64 = 60_000;
/// How long the list of nodes with a held probe is reused before it is read again (the prober
/// is asked about every node each worker round; one read serves the round).
const HELD_NODES_FRESH: Duration = Duration::from_millis(500);
/// Held probes older than this are forgotten when another is held: their node is no longer
/// probed (a held probe is otherwise settled or dropped within
/// [`streamr_core::probe_judge::HOLD_LIMIT_MS`]).
const HELD_FORGET_MS: i64 = 600_000;
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
    /// The nodes with a held probe (in storage, any replica's) and when that was read.
    held_nodes: std::sync::Mutex<Option<(Instant, std::collections::HashSet<String>)>>,
    /// Bytes taken from nodes that no receipt acknowledged, by node id, not yet handed over
    /// (see [`ProbeRunner::take_unreceipted`]).
    unreceipted: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// What the prober keeps of a held probe (JSON in [`HeldProbeRecord::state_json`]): the core's
/// judging state and what it needs to finish the probe.
#[derive(Debug, Serialize, Deserialize)]
struct HeldState {
    stream: String,
    /// The node's playlist (with the probe's grant) and the newest probed segment's URI as
    /// listed there: looked at again while that segment is [`Place::Open`].
    playlist_url: String,
    newest_uri: String,
    /// The probe's result, its segments so far all matched.
    result: ProbeResult,
    /// The segments not judged yet.
    probe: HeldProbe,
}

/// The origin's reports as the judge reads them: hash, place on the chain and the origin's run
/// (a run that does not read as 16 hex digits counts as none named).
fn origin_reports(records: &[SegmentRecord]) -> OriginReports {
    records
        .iter()
        .filter_map(|s| {
            Some(ReportedSegment {
                hash: s.hash.parse::<ContentDigest>().ok()?,
                sequence: u64::try_from(s.sequence).ok()?,
                published_ms: u64::try_from(s.published_ms).ok()?,
                run: s
                    .run
                    .as_deref()
                    .and_then(|run| u64::from_str_radix(run, 16).ok()),
            })
        })
        .collect()
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
    /// The playlist's size, bytes.
    playlist_bytes: usize,
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
            held_nodes: std::sync::Mutex::default(),
            unreceipted: std::sync::Mutex::default(),
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
            playlist_bytes: playlist.bytes.len(),
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
    /// Returns whether the node answered.
    async fn send_receipt(&self, node: &NodeRecord, receipt: SignedReceipt) -> bool {
        let url = format!("{}/receipts", node.http_url.trim_end_matches('/'));
        let request = ReceiptsRequest {
            receipts: vec![receipt],
        };
        let Ok(body) = serde_json::to_vec(&request) else {
            return false;
        };
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(node = %node.id, %error, "probe receipt not delivered");
                false
            }
        }
    }

    /// Notes `bytes` the node served a probe that no receipt acknowledged: the node reports
    /// them as unattested, and settlement nets them out (probe traffic is never paid).
    fn note_unreceipted(&self, node: &NodeRecord, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut unreceipted = self
            .unreceipted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sum = unreceipted.entry(node.id.clone()).or_default();
        *sum = sum.saturating_add(bytes);
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
            Ok(probed) if probed.fetched.is_empty() => {
                self.note_unreceipted(node, probed.playlist_bytes as u64);
                return None;
            }
            Ok(probed) => probed,
            Err(failure) => {
                tracing::info!(node = %node.id, %stream, %failure, "probe failed");
                return Some(self.timed_out(node_id));
            }
        };
        // Every segment was cut by the origin before it was downloaded; judge each against the
        // reports read before and after the download (the report of the newest one may have
        // arrived meanwhile).
        let probed_ms = crate::client::unix_ms();
        let mut records = origin.to_vec();
        records.extend(self.origin_segments(stream).await.unwrap_or_default());
        let reports = origin_reports(&records);
        let mut segments = Vec::new();
        let mut bytes_total = 0u64;
        let mut receipt_seq = 0u64;
        let mut acknowledged = 0u64;
        let mut download = Duration::ZERO;
        let fetched = &probed.fetched;
        let newest = fetched.len().saturating_sub(1);
        for (index, segment) in fetched.iter().enumerate() {
            download += segment.total;
            let digest = segment_hash(&segment.bytes);
            let place = if index == newest {
                probed.newest_place
            } else {
                Place::Closed
            };
            segments.push((digest, place));
            // Only what the origin reported is acknowledged; what it has not reported yet is no
            // evidence against the node (viewers' receipts cover it).
            if judge(&digest, place, probed_ms, &reports) != SegmentVerdict::Matched {
                continue;
            }
            let hash = digest.to_string();
            let Some(matched) = records.iter().find(|s| s.hash == hash) else {
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
            if self.send_receipt(node, Signed::sign(receipt, viewer)).await {
                acknowledged = bytes_total;
            }
        }
        let bytes: usize = fetched.iter().map(|f| f.bytes.len()).sum();
        self.note_unreceipted(
            node,
            ((probed.playlist_bytes + bytes) as u64).saturating_sub(acknowledged),
        );
        let secs = download.as_secs_f64().max(0.000_001);
        let ttfb = fetched.first().map_or(Duration::ZERO, |f| f.ttfb);
        let mut result = ProbeResult {
            node_id,
            hash_ok: true,
            timed_out: false,
            ttfb_ms: u64::try_from(ttfb.as_millis()).unwrap_or(u64::MAX),
            throughput_bytes_per_s: (bytes as f64 / secs) as u64,
        };
        let mut probe = HeldProbe::new(probed_ms, probed_ms, segments);
        match probe.settle(&reports, probed_ms) {
            Settle::Hold => {}
            Settle::Fail => {
                tracing::warn!(node = %node.id, %stream, "probed segment matches no origin hash");
                result.hash_ok = false;
                return Some(result);
            }
            Settle::Dropped(reason) => {
                tracing::info!(node = %node.id, %stream, ?reason, "probe dropped unjudged");
                return None;
            }
            _ => return Some(result),
        }
        tracing::debug!(node = %node.id, %stream, unknown = probe.segments.len(),
            "probed segments not reported yet; the probe waits for the origin's reports");
        self.hold(
            node,
            HeldState {
                stream: stream.to_owned(),
                playlist_url: probed.playlist_url,
                newest_uri: probed.newest_uri,
                result,
                probe,
            },
        )
        .await;
        None
    }

    /// Keeps a held probe in storage, where any replica can finish it.
    async fn hold(&self, node: &NodeRecord, held: HeldState) {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let now = i64::try_from(crate::client::unix_ms()).unwrap_or(i64::MAX);
        let record = HeldProbeRecord {
            probe_id: hex::encode(id),
            node_id: node.id.clone(),
            state_json: serde_json::to_string(&held).unwrap_or_default(),
            held_ms: i64::try_from(held.probe.held_ms).unwrap_or(i64::MAX),
            lease_until_ms: 0,
        };
        if let Err(error) = self
            .storage
            .hold_probe(&record, now.saturating_sub(HELD_FORGET_MS))
            .await
        {
            tracing::warn!(node = %node.id, %error, "the held probe could not be stored; dropped unjudged");
            return;
        }
        if let Some((_, nodes)) = self
            .held_nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            nodes.insert(node.id.clone());
        }
    }

    /// Settles `node`'s held probe if the origin's reports now can: `Some` with its result
    /// (passed when every held segment was reported since, failed once the reports moved past
    /// the probe without them). `held` is whether a probe is still held (the node is not
    /// probed again meanwhile), here or under another replica's lease. While the newest probed
    /// segment is the last one the node lists, its playlist is fetched again (as a player polls
    /// it) to see what follows it.
    async fn settle_pending(&self, node: &NodeRecord) -> (Option<ProbeResult>, bool) {
        match self.has_held(&node.id).await {
            Ok(false) => return (None, false),
            Ok(true) => {}
            Err(error) => {
                tracing::warn!(node = %node.id, %error, "held probes could not be read; not probing");
                return (None, true);
            }
        }
        let now = i64::try_from(crate::client::unix_ms()).unwrap_or(i64::MAX);
        let lease = now.saturating_add(HELD_LEASE_MS);
        let claimed = match self.storage.claim_held_probe(&node.id, now, lease).await {
            Ok(Some(claimed)) => claimed,
            // Another replica works on it.
            Ok(None) => return (None, true),
            Err(error) => {
                tracing::warn!(node = %node.id, %error, "a held probe could not be claimed");
                return (None, true);
            }
        };
        let Ok(mut held) = serde_json::from_str::<HeldState>(&claimed.state_json) else {
            tracing::warn!(node = %node.id, "a held probe's stored state is unreadable; dropped unjudged");
            self.finish_held(node, &claimed).await;
            return (None, false);
        };
        if held.probe.wants_playlist() {
            match self.fetch(&held.playlist_url).await {
                Ok(playlist) => {
                    self.note_unreceipted(node, playlist.bytes.len() as u64);
                    let text = String::from_utf8_lossy(&playlist.bytes);
                    held.probe.relisted(place_in(&text, &held.newest_uri));
                }
                Err(failure) => {
                    tracing::debug!(node = %node.id, stream = %held.stream, %failure,
                        "the held probe's playlist could not be fetched again; tried next round");
                }
            }
        }
        let records = self
            .storage
            .list_segments(&held.stream, PENDING_SEGMENTS)
            .await
            .unwrap_or_default();
        let settled = held
            .probe
            .settle(&origin_reports(&records), crate::client::unix_ms());
        if settled == Settle::Hold {
            let state = serde_json::to_string(&held).unwrap_or_default();
            let kept = self
                .storage
                .release_held_probe(&claimed.probe_id, claimed.lease_until_ms, &state)
                .await;
            if let Err(error) = kept {
                tracing::warn!(node = %node.id, %error, "a held probe could not be kept");
            }
            return (None, true);
        }
        // Only the replica whose lease deleted the probe records its verdict.
        if !self.finish_held(node, &claimed).await {
            return (None, false);
        }
        match settled {
            Settle::Pass => (Some(held.result), false),
            Settle::Fail => {
                tracing::warn!(node = %node.id, stream = %held.stream,
                    "probed segment matches no origin hash");
                held.result.hash_ok = false;
                (Some(held.result), false)
            }
            Settle::Dropped(reason) => {
                tracing::info!(node = %node.id, stream = %held.stream, ?reason,
                    "a held probe is dropped unjudged");
                (None, false)
            }
            _ => (None, false),
        }
    }

    /// Whether `node` has a held probe, from one read of the held probes' nodes per
    /// [`HELD_NODES_FRESH`].
    async fn has_held(&self, node: &str) -> Result<bool, crate::error::StorageError> {
        let lock = || {
            self.held_nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((read, nodes)) = lock().as_ref() {
            if read.elapsed() < HELD_NODES_FRESH {
                return Ok(nodes.contains(node));
            }
        }
        let nodes: std::collections::HashSet<String> =
            self.storage.held_probe_nodes().await?.into_iter().collect();
        let held = nodes.contains(node);
        *lock() = Some((Instant::now(), nodes));
        Ok(held)
    }

    /// Deletes a held probe under the lease `claimed` took; whether it was still this
    /// replica's (only then may its verdict be recorded).
    async fn finish_held(&self, node: &NodeRecord, claimed: &HeldProbeRecord) -> bool {
        match self
            .storage
            .finish_held_probe(&claimed.probe_id, claimed.lease_until_ms)
            .await
        {
            Ok(mine) => {
                // The next round reads whether another of its probes is held.
                *self
                    .held_nodes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                mine
            }
            Err(error) => {
                tracing::warn!(node = %node.id, %error, "a held probe could not be finished");
                false
            }
        }
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
        let mut read = 0;
        let watched = self.watch_flv(&url, watch, &mut read).await;
        // A plain player's read: no receipt acknowledges any of it.
        self.note_unreceipted(node, read as u64);
        match watched {
            Ok(()) => None,
            Err(failure) => {
                tracing::info!(node = %node.id, %stream, %failure, "FLV probe failed");
                Some(self.timed_out(node_id))
            }
        }
    }

    /// Reads the FLV stream at `url` for `watch`, counting the bytes read into `read`.
    async fn watch_flv(
        &self,
        url: &str,
        watch: Duration,
        read: &mut usize,
    ) -> Result<(), ProbeFailure> {
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
        while started.elapsed() < watch && *read < MAX_FLV_BYTES {
            let left = watch.saturating_sub(started.elapsed());
            let chunk = match tokio::time::timeout(left, response.chunk()).await {
                Err(_) => break,
                Ok(chunk) => chunk.map_err(http)?,
            };
            let Some(chunk) = chunk else { break };
            if head.len() < 3 {
                head.extend(chunk.iter().take(3 - head.len()));
            }
            *read = read.saturating_add(chunk.len());
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

#[async_trait::async_trait]
impl ProbeRunner for HttpProber {
    fn take_unreceipted(&self) -> Vec<(String, u64)> {
        std::mem::take(
            &mut *self
                .unreceipted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_iter()
        .collect()
    }

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
    use super::{redacted, ProbeFailure};

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
}
