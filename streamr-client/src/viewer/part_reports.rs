//! The origin's signed part reports as a node passes them on (`GET
//! /{app}/{stream}/part-reports`), checked by the viewer itself: the origin's signature (its key
//! from the coordinator's stream record), the stream, the run and the report's age. A part whose
//! hash such a report names is the origin's, at the place the report gives, without asking the
//! coordinator; a node cannot forge, alter or move a report, and a replayed one is stale or of
//! an older run.

use std::collections::{HashMap, VecDeque};

use streamr_core::{ContentDigest, NodeId, PartReportRefusal, SignedPartReport, StreamId};

/// A report older than this (by its signed timestamp, against the viewer's clock) is refused:
/// a node joining a viewer to the live edge passes on the last few seconds' reports, never
/// minutes-old ones.
pub(crate) const REPORT_MAX_AGE_MS: u64 = 60_000;

/// Parts remembered (about ten minutes at three parts a second); the oldest are forgotten.
const REMEMBERED_PARTS: usize = 2_048;

/// A part the origin reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedPart {
    /// The origin's numbering run, 16 hex digits (as the coordinator writes it).
    pub(crate) run: String,
    /// Media sequence number of its segment.
    pub(crate) msn: i64,
    /// Its index in the segment.
    pub(crate) index: i64,
    /// When the origin cut it, Unix milliseconds.
    pub(crate) cut_ms: i64,
}

/// Why a report passed on by a node was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReportRefused {
    /// Not the origin's, not this stream's, altered, or too old.
    #[error(transparent)]
    Refusal(#[from] PartReportRefusal),
    /// Of a run older than the newest one seen (an old run's report replayed).
    #[error("the report is of run {run:016x}, older than the run {current:016x} seen already")]
    OldRun {
        /// The report's run.
        run: u64,
        /// The newest run seen.
        current: u64,
    },
}

/// The parts of the origin's reports a viewer took, by hash.
#[derive(Debug)]
pub(crate) struct ReportedParts {
    origin: NodeId,
    stream: StreamId,
    /// The newest run and the newest timestamp of a report of it.
    run: Option<(u64, u64)>,
    /// The newest media sequence number of that run a report named.
    newest_msn: Option<i64>,
    by_hash: HashMap<ContentDigest, ReportedPart>,
    order: VecDeque<ContentDigest>,
}

impl ReportedParts {
    /// An empty index of `stream`'s reports signed by `origin`.
    pub(crate) fn new(origin: NodeId, stream: StreamId) -> Self {
        ReportedParts {
            origin,
            stream,
            run: None,
            newest_msn: None,
            by_hash: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes the parts of `signed` after checking it at `now_ms`; returns how many parts it
    /// named.
    pub(crate) fn add(
        &mut self,
        signed: &SignedPartReport,
        now_ms: u64,
    ) -> Result<usize, ReportRefused> {
        let body =
            signed.verify_from_origin(&self.origin, &self.stream, now_ms, REPORT_MAX_AGE_MS)?;
        match self.run {
            Some((run, newest)) if run != body.run && body.timestamp_ms <= newest => {
                return Err(ReportRefused::OldRun {
                    run: body.run,
                    current: run,
                });
            }
            Some((run, newest)) if run == body.run => {
                self.run = Some((run, newest.max(body.timestamp_ms)));
            }
            _ => {
                self.run = Some((body.run, body.timestamp_ms));
                self.newest_msn = None;
            }
        }
        let run = format!("{:016x}", body.run);
        for part in &body.parts {
            let place = ReportedPart {
                run: run.clone(),
                msn: i64::try_from(part.msn).unwrap_or(i64::MAX),
                index: i64::from(part.index),
                cut_ms: i64::try_from(part.cut_ms).unwrap_or(i64::MAX),
            };
            self.newest_msn = self.newest_msn.max(Some(place.msn));
            if self.by_hash.insert(part.hash, place).is_none() {
                self.order.push_back(part.hash);
            }
        }
        while self.order.len() > REMEMBERED_PARTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_hash.remove(&oldest);
            }
        }
        Ok(body.parts.len())
    }

    /// The newest segment (media sequence number) of the newest run a report named.
    pub(crate) fn newest_msn(&self) -> Option<i64> {
        self.newest_msn
    }

    /// The reported part whose bytes hash to `hash`, when its report is of the newest run.
    pub(crate) fn find(&self, hash: &ContentDigest) -> Option<ReportedPart> {
        let part = self.by_hash.get(hash)?;
        let current = self.run.map(|(run, _)| format!("{run:016x}"));
        (Some(&part.run) == current.as_ref()).then(|| part.clone())
    }
}

/// Whether the node serves the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// No answer yet.
    Unknown,
    /// It answered with reports (maybe none yet).
    Yes,
    /// It does not serve them (an older node): parts are looked up at the coordinator.
    No,
}

/// Longest wait asked of the node for the next report (as the coordinator's own long poll).
const NODE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a failed fetch waits before the next.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// The node's part reports of one session, followed by a background task (one long poll at a
/// time) until dropped.
#[derive(Debug)]
pub(crate) struct NodeReports {
    parts: std::sync::Arc<std::sync::Mutex<ReportedParts>>,
    updates: tokio::sync::watch::Receiver<(Served, u64)>,
    _stop: tokio_util::sync::DropGuard,
}

impl NodeReports {
    /// Follows `url` (the node's `part-reports` route, with the grant) for reports of `stream`
    /// signed by `origin`; `refused` counts reports that failed the checks.
    pub(crate) fn follow(
        http: reqwest::Client,
        url: reqwest::Url,
        origin: NodeId,
        stream: StreamId,
        refused: impl Fn(&ReportRefused) + Send + 'static,
    ) -> Self {
        let parts = std::sync::Arc::new(std::sync::Mutex::new(ReportedParts::new(origin, stream)));
        let (tx, updates) = tokio::sync::watch::channel((Served::Unknown, 0u64));
        let stop = tokio_util::sync::CancellationToken::new();
        let task_parts = parts.clone();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            let mut after = 0u64;
            loop {
                let mut asked = url.clone();
                asked
                    .query_pairs_mut()
                    .append_pair("after", &after.to_string())
                    .append_pair("wait_ms", &NODE_WAIT.as_millis().to_string());
                let request = http
                    .get(asked)
                    .timeout(NODE_WAIT + std::time::Duration::from_secs(5))
                    .send();
                let response = tokio::select! {
                    _ = task_stop.cancelled() => return,
                    response = request => response,
                };
                let page = match response {
                    Ok(response) if response.status().is_client_error() => {
                        if !not_here_yet(response).await {
                            tracing::debug!(
                                "the node serves no part reports; parts are looked up at the coordinator"
                            );
                            tx.send_modify(|(served, version)| {
                                *served = Served::No;
                                *version = version.wrapping_add(1);
                            });
                            return;
                        }
                        // Not pulled yet (it starts when the viewer asks for the playlist).
                        Err("the node does not carry the stream yet".to_owned())
                    }
                    Ok(response) if response.status().is_success() => {
                        match response.bytes().await {
                            Ok(body) => {
                                serde_json::from_slice::<crate::wire::PartReportsPage>(&body)
                                    .map_err(|error| error.to_string())
                            }
                            Err(error) => Err(error.to_string()),
                        }
                    }
                    Ok(response) => Err(format!("HTTP {}", response.status())),
                    Err(error) => Err(error.to_string()),
                };
                match page {
                    Ok(page) => {
                        let now = crate::client::unix_ms();
                        {
                            let mut parts = task_parts
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            for numbered in &page.reports {
                                if let Err(error) = parts.add(&numbered.report, now) {
                                    tracing::debug!(seq = numbered.seq, %error,
                                        "a part report from the node was refused");
                                    refused(&error);
                                }
                            }
                        }
                        // A cursor below ours: the node's numbering started over.
                        after = page.next;
                        tx.send_modify(|(served, version)| {
                            *served = Served::Yes;
                            *version = version.wrapping_add(1);
                        });
                    }
                    Err(error) => {
                        tracing::debug!(%error, "part reports from the node unavailable");
                        tokio::select! {
                            _ = task_stop.cancelled() => return,
                            _ = tokio::time::sleep(RETRY) => {}
                        }
                    }
                }
            }
        });
        NodeReports {
            parts,
            updates,
            _stop: stop.drop_guard(),
        }
    }

    /// The newest segment of the origin's current run a report named.
    pub(crate) fn newest_msn(&self) -> Option<i64> {
        self.parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .newest_msn()
    }

    /// The reported part whose bytes hash to `hash`, waiting until `deadline` for its report
    /// while the node may serve it. `Err` with whether the node serves reports at all when
    /// none came.
    pub(crate) async fn find(
        &mut self,
        hash: &ContentDigest,
        deadline: tokio::time::Instant,
    ) -> Result<ReportedPart, Served> {
        loop {
            let served = self.updates.borrow_and_update().0;
            if let Some(part) = self
                .parts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .find(hash)
            {
                return Ok(part);
            }
            if served == Served::No {
                return Err(served);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(served),
                changed = self.updates.changed() => if changed.is_err() { return Err(served) },
            }
        }
    }
}

/// Whether a 4xx from the node's part-report route is its `stream_not_here` (a node serving
/// reports for a stream it has not started pulling yet), not a node without the route. Reads
/// the body.
async fn not_here_yet(response: reqwest::Response) -> bool {
    if response.status() != reqwest::StatusCode::NOT_FOUND {
        return false;
    }
    let Ok(body) = response.bytes().await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|body| body["error"] == "stream_not_here")
}

/// The node's part-report route beside the MPEG-TS playlist `hls_url`
/// (`/{app}/{stream}.m3u8` → `/{app}/{stream}/part-reports`), keeping its query (the grant).
pub(crate) fn reports_url(hls_url: &reqwest::Url) -> Option<reqwest::Url> {
    let base = hls_url.path().strip_suffix(".m3u8")?;
    let mut url = hls_url.clone();
    url.set_path(&format!("{base}/part-reports"));
    Some(url)
}

#[cfg(test)]
mod tests {
    use streamr_core::{KeyPair, OriginPartReport, PartHash, SignatureError, Signed};

    use super::*;

    fn report(origin: &KeyPair, run: u64, msn: u64, hash: u8, at: u64) -> SignedPartReport {
        Signed::sign(
            OriginPartReport {
                node_id: origin.node_id(),
                stream_id: StreamId::new("show").unwrap(),
                run,
                parts: vec![PartHash {
                    msn,
                    index: 0,
                    hash: ContentDigest::from_bytes([hash; 32]),
                    len: 100,
                    cut_ms: at,
                }],
                timestamp_ms: at,
            },
            origin,
        )
    }

    fn digest(byte: u8) -> ContentDigest {
        ContentDigest::from_bytes([byte; 32])
    }

    #[test]
    fn only_the_origins_fresh_unaltered_reports_of_this_stream_and_run_place_parts() {
        let origin = KeyPair::from_seed([7; 32]);
        let node = KeyPair::from_seed([8; 32]);
        let mut parts = ReportedParts::new(origin.node_id(), StreamId::new("show").unwrap());
        let now = 1_000_000;
        assert_eq!(parts.add(&report(&origin, 5, 10, 1, now), now), Ok(1));
        assert_eq!(parts.find(&digest(1)).map(|p| p.msn), Some(10));

        // A node's own report, however well signed.
        let mut forged = report(&node, 5, 11, 2, now);
        assert!(matches!(
            parts.add(&forged, now),
            Err(ReportRefused::Refusal(
                PartReportRefusal::NotTheOrigin { .. }
            ))
        ));
        // ... or claiming the origin's id.
        forged.body.node_id = origin.node_id();
        assert_eq!(
            parts.add(&forged, now),
            Err(ReportRefused::Refusal(PartReportRefusal::Signature(
                SignatureError::BadSignature
            )))
        );
        // The origin's report with another hash put in.
        let mut altered = report(&origin, 5, 11, 3, now);
        altered.body.parts[0].hash = digest(4);
        assert!(parts.add(&altered, now).is_err());
        // Another stream's report of the same origin.
        let mut other = report(&origin, 5, 11, 5, now);
        other.body.stream_id = StreamId::new("other").unwrap();
        let other = Signed::sign(other.body, &origin);
        assert!(matches!(
            parts.add(&other, now),
            Err(ReportRefused::Refusal(PartReportRefusal::OtherStream(_)))
        ));
        // Replayed minutes later.
        let old = report(&origin, 5, 3, 6, now - 5 * 60_000);
        assert!(matches!(
            parts.add(&old, now),
            Err(ReportRefused::Refusal(PartReportRefusal::Signature(
                SignatureError::StaleTimestamp { .. }
            )))
        ));
        for hash in [2, 3, 4, 5, 6] {
            assert_eq!(parts.find(&digest(hash)), None, "hash {hash}");
        }

        // The origin restarts its numbering: a new run, newer, is taken ...
        assert_eq!(parts.add(&report(&origin, 9, 0, 7, now + 100), now), Ok(1));
        assert_eq!(parts.find(&digest(7)).map(|p| p.msn), Some(0));
        // ... the old run's parts no longer place anything ...
        assert_eq!(parts.find(&digest(1)), None);
        // ... and a report of the old run, replayed while still fresh, is refused.
        assert_eq!(
            parts.add(&report(&origin, 5, 12, 8, now + 50), now + 200),
            Err(ReportRefused::OldRun { run: 5, current: 9 })
        );
        assert_eq!(parts.find(&digest(8)), None);
    }
}
