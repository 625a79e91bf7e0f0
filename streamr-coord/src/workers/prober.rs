//! The probe runner that fetches from real nodes: a probe is a viewer. For each node it picks
//! a live stream (one the node relays, else the newest live one), mints a session grant for
//! itself, fetches the node's HLS playlist and one random segment listed in it, and measures
//! time to first byte and throughput. The segment's BLAKE3 hash must equal one the origin
//! reported for that stream recently.
//!
//! Segments are matched by hash among the origin's recent reports, not by sequence number: a
//! node that started relaying mid-stream numbers its segments from its own start, while the
//! content of each segment (cut on the same timestamp grid) is byte-identical to the origin's.
//! A relay cuts a segment about when the origin does, so the origin's report of the newest one
//! may arrive while the probe downloads it: a segment matching none of the reports read before
//! the download is checked again against the reports read after it.
//!
//! A probe judges only what the origin has reported: while the origin's newest report is older
//! than [`REPORTS_CURRENT`] (its reports are still arriving after a coordinator outage, or the
//! stream is not being published) no probe is made, and segments cut at a publisher leave or
//! start (next to an `EXT-X-DISCONTINUITY`, possibly partial on a relay) are never picked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::RngCore;
use streamr_core::{
    segment_hash, KeyPair, NodeId, ProbeResult, SessionGrant, SessionId, Signed, StreamId,
};

use crate::grant_token;
use crate::storage::{NodeRecord, Storage};
use crate::workers::ProbeRunner;

/// Origin segment reports a probed segment is compared with.
const RECENT_SEGMENTS: i64 = 60;
/// A stream is probed only while the origin's newest segment report is at most this old.
const REPORTS_CURRENT: Duration = Duration::from_secs(20);
/// Largest segment a probe downloads.
const MAX_SEGMENT_BYTES: usize = 64 << 20;

/// Probes nodes over HTTP like a viewer (see the module docs).
pub struct HttpProber {
    storage: Arc<dyn Storage>,
    coordinator_key: KeyPair,
    probe_key: KeyPair,
    http: reqwest::Client,
    timeout: Duration,
    every: Duration,
    last_probed: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl std::fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProber")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why one probe could not complete (logged; the probe counts as timed out).
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("playlist {url} lists no segment")]
    EmptyPlaylist { url: String },
    #[error("segment {url} is larger than {MAX_SEGMENT_BYTES} bytes")]
    TooLarge { url: String },
}

struct Fetched {
    bytes: Vec<u8>,
    ttfb: Duration,
    total: Duration,
}

impl HttpProber {
    /// A prober reading streams and origin hashes from `storage` and signing its grants with
    /// `coordinator_key` (the key nodes verify grants with). Each request times out after 10 s;
    /// each node is probed at most every 30 s (see [`HttpProber::every`]).
    pub fn new(storage: Arc<dyn Storage>, coordinator_key: KeyPair) -> Self {
        Self::with_timeout(storage, coordinator_key, Duration::from_secs(10))
    }

    /// As [`HttpProber::new`] with another per-request timeout.
    pub fn with_timeout(
        storage: Arc<dyn Storage>,
        coordinator_key: KeyPair,
        timeout: Duration,
    ) -> Self {
        HttpProber {
            storage,
            coordinator_key,
            probe_key: KeyPair::generate(&mut rand::rngs::OsRng),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            timeout,
            every: Duration::from_secs(30),
            last_probed: std::sync::Mutex::default(),
        }
    }

    /// Probes each node at most once per `every` (default 30 s), however often the worker
    /// round runs.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Whether `node` is due for a probe now (and marks it probed).
    fn due(&self, node: &str) -> bool {
        let mut last = self
            .last_probed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last
            .get(node)
            .is_some_and(|at| now.duration_since(*at) < self.every)
        {
            return false;
        }
        last.insert(node.to_owned(), now);
        true
    }

    /// Hashes of the origin's recent segments of `stream`.
    async fn origin_hashes(&self, stream: &str) -> Option<Vec<String>> {
        let segments = self
            .storage
            .list_segments(stream, RECENT_SEGMENTS)
            .await
            .ok()?;
        Some(segments.into_iter().map(|s| s.hash).collect())
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

    fn grant(&self, node_id: NodeId, stream: &str) -> Option<String> {
        let mut session = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut session);
        let expiry_ms = crate::client::unix_ms().saturating_add(60_000);
        let grant = SessionGrant {
            session_id: SessionId::from_bytes(session),
            viewer: self.probe_key.viewer_key(),
            node_id,
            stream_id: StreamId::new(stream).ok()?,
            max_bytes: MAX_SEGMENT_BYTES as u64 * 2,
            expiry_ms,
        };
        Some(grant_token::encode(&Signed::sign(
            grant,
            &self.coordinator_key,
        )))
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

    /// Fetches the playlist and one random segment; returns the segment, or `None` when the
    /// playlist lists a single segment (see below).
    async fn fetch_segment(
        &self,
        node: &NodeRecord,
        stream: &str,
        token: &str,
    ) -> Result<Option<Fetched>, ProbeFailure> {
        let base = node.http_url.trim_end_matches('/');
        let playlist_url = format!("{base}/live/{stream}.m3u8?grant={token}");
        let playlist = self.fetch(&playlist_url).await?;
        let text = String::from_utf8_lossy(&playlist.bytes);
        let segments = probe_candidates(&text);
        // A node listing nothing probeable yet is not probed now (a node that keeps listing one
        // segment is never probed, so its availability stays 0).
        if segments.len() <= 1 {
            return Ok(None);
        }
        let candidates = segments.get(1..).unwrap_or_default();
        let chosen =
            candidates
                .choose(&mut rand::thread_rng())
                .ok_or(ProbeFailure::EmptyPlaylist {
                    url: playlist_url.clone(),
                })?;
        let mut url = if chosen.starts_with("http://") || chosen.starts_with("https://") {
            (*chosen).to_owned()
        } else if chosen.starts_with('/') {
            format!("{base}{chosen}")
        } else {
            format!("{base}/live/{chosen}")
        };
        if !url.contains("grant=") {
            url = grant_token::with_grant_token(&url, token);
        }
        self.fetch(&url).await.map(Some)
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
        if !self.due(&node.id) {
            return None;
        }
        let stream = self.stream_for(node).await?;
        if !self.reports_current(&stream).await {
            tracing::debug!(node = %node.id, %stream, "the origin's segment reports are not current; not probing");
            return None;
        }
        let origin = self.origin_hashes(&stream).await?;
        if origin.is_empty() {
            return None;
        }
        let token = self.grant(node_id, &stream)?;
        match self.fetch_segment(node, &stream, &token).await {
            Ok(None) => None,
            Ok(Some(fetched)) => {
                let hash = segment_hash(&fetched.bytes).to_string();
                let secs = fetched.total.as_secs_f64().max(0.000_001);
                let throughput = (fetched.bytes.len() as f64 / secs) as u64;
                let hash_ok = origin.contains(&hash)
                    || self
                        .origin_hashes(&stream)
                        .await
                        .is_some_and(|reported| reported.contains(&hash));
                if !hash_ok {
                    tracing::warn!(node = %node.id, %stream, %hash, "probed segment matches no origin hash");
                }
                Some(ProbeResult {
                    node_id,
                    hash_ok,
                    timed_out: false,
                    ttfb_ms: u64::try_from(fetched.ttfb.as_millis()).unwrap_or(u64::MAX),
                    throughput_bytes_per_s: throughput,
                })
            }
            Err(failure) => {
                tracing::info!(node = %node.id, %stream, %failure, "probe failed");
                Some(ProbeResult {
                    node_id,
                    hash_ok: false,
                    timed_out: true,
                    ttfb_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                    throughput_bytes_per_s: 0,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::probe_candidates;

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
