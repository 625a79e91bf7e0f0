//! `GET /metrics` (Prometheus text format) and `GET /healthz` for operators.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use streamr_media::http::FlvCounters;
use streamr_media::relay::RelayHub;
use streamr_media::server::RtmpMetricsSource;
use streamr_media::upstream::{PullStatus, UpstreamPuller};
use streamr_net::ConnectionBudget;

/// Content type of the Prometheus text exposition format.
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the node's counters come from.
#[derive(Debug, Clone)]
pub(crate) struct NodeMetrics {
    pub(crate) rtmp: RtmpMetricsSource,
    pub(crate) http_budget: ConnectionBudget,
    /// Response body bytes written to HTTP clients.
    pub(crate) http_bytes_out: Arc<AtomicU64>,
    /// HLS segments cut since start.
    pub(crate) hls_segments: Arc<AtomicU64>,
    pub(crate) puller: Option<UpstreamPuller>,
    pub(crate) hub: RelayHub,
    /// The coordinator's last connect-back check of this node.
    pub(crate) reachability: crate::reachability::ReachabilitySlot,
    /// HTTP-FLV players streamed on raw connections.
    pub(crate) flv: Arc<FlvCounters>,
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{value}\""))
                .collect();
            let _ = write!(self.out, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

impl NodeMetrics {
    /// The exposition text of every counter now.
    pub(crate) fn render(&self) -> String {
        let rtmp = self.rtmp.read();
        let http = self.http_budget.stats();
        let streams = self.hub.all_stats();
        let pulls = self
            .puller
            .as_ref()
            .map(UpstreamPuller::totals)
            .unwrap_or_default();
        let mut out = String::with_capacity(4096);

        let mut f = family(
            &mut out,
            "streamr_connections_open",
            "gauge",
            "Connections open now, by protocol.",
        );
        f.sample(&[("protocol", "rtmp")], rtmp.connections_open);
        f.sample(&[("protocol", "http")], http.open);

        let mut f = family(
            &mut out,
            "streamr_connections_accepted_total",
            "counter",
            "Connections accepted, by protocol.",
        );
        f.sample(&[("protocol", "rtmp")], rtmp.connections_accepted);
        f.sample(&[("protocol", "http")], http.admitted);

        let mut f = family(
            &mut out,
            "streamr_connections_rejected_total",
            "counter",
            "Connections refused on accept, by protocol and reason.",
        );
        for (protocol, full, client) in [
            (
                "rtmp",
                rtmp.refused_connection_limit,
                rtmp.refused_client_limit,
            ),
            ("http", http.refused_full, http.refused_client),
        ] {
            f.sample(
                &[("protocol", protocol), ("reason", "connection_limit")],
                full,
            );
            f.sample(
                &[("protocol", protocol), ("reason", "client_limit")],
                client,
            );
        }

        let mut f = family(
            &mut out,
            "streamr_connections_closed_total",
            "counter",
            "Connections the server closed, by protocol and reason.",
        );
        for (reason, count) in &rtmp.closed {
            f.sample(&[("protocol", "rtmp"), ("reason", reason.as_str())], count);
        }

        family(
            &mut out,
            "streamr_publishers",
            "gauge",
            "RTMP publishers now.",
        )
        .sample(&[], rtmp.publishers);
        let mut f = family(
            &mut out,
            "streamr_players",
            "gauge",
            "Players now: RTMP connections playing, HTTP-FLV responses streaming, and all viewers of the relay (RTMP, HTTP-FLV).",
        );
        f.sample(&[("protocol", "rtmp")], rtmp.players);
        f.sample(
            &[("protocol", "http_flv")],
            self.flv.players.load(Ordering::Relaxed),
        );
        let viewers: usize = streams.iter().map(|s| s.viewers.len()).sum();
        f.sample(&[("protocol", "all")], viewers);
        family(
            &mut out,
            "streamr_streams",
            "gauge",
            "Streams live here now (published or pulled).",
        )
        .sample(&[], streams.iter().filter(|s| s.publishing).count());

        let mut f = family(
            &mut out,
            "streamr_bytes_received_total",
            "counter",
            "Bytes received from peers, by protocol.",
        );
        f.sample(&[("protocol", "rtmp")], rtmp.bytes_in);
        let mut f = family(
            &mut out,
            "streamr_bytes_sent_total",
            "counter",
            "Bytes sent to peers, by protocol (HTTP: response bodies).",
        );
        f.sample(&[("protocol", "rtmp")], rtmp.bytes_out);
        f.sample(
            &[("protocol", "http")],
            self.http_bytes_out.load(Ordering::Relaxed),
        );

        family(
            &mut out,
            "streamr_flv_bytes_shared_total",
            "counter",
            "HTTP-FLV body bytes sent with sendfile from a stream's shared in-memory file instead of copied per player.",
        )
        .sample(&[], self.flv.bytes_shared.load(Ordering::Relaxed));
        family(
            &mut out,
            "streamr_rtmp_bytes_shared_total",
            "counter",
            "RTMP frame bytes sent with sendfile from a stream's shared in-memory file instead of copied per player.",
        )
        .sample(&[], rtmp.bytes_shared);
        family(
            &mut out,
            "streamr_dropped_frames_total",
            "counter",
            "Frames players (RTMP, HTTP-FLV) skipped because they fell behind.",
        )
        .sample(
            &[],
            rtmp.frames_dropped + self.flv.frames_dropped.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "streamr_slow_viewer_skips_total",
            "counter",
            "Times a player (RTMP, HTTP-FLV) fell behind and skipped ahead to a keyframe.",
        )
        .sample(
            &[],
            rtmp.slow_viewer_skips + self.flv.slow_viewer_skips.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "streamr_upstream_pulls_total",
            "counter",
            "Upstream pulls started (relay role).",
        )
        .sample(&[], pulls.pulls);
        family(
            &mut out,
            "streamr_upstream_failovers_total",
            "counter",
            "Reconnections of a running pull to an upstream (relay role).",
        )
        .sample(&[], pulls.failovers);
        family(
            &mut out,
            "streamr_hls_segments_total",
            "counter",
            "HLS segments cut.",
        )
        .sample(&[], self.hls_segments.load(Ordering::Relaxed));
        out
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(metrics): State<Arc<NodeMetrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_PROMETHEUS),
        )],
        metrics.render(),
    )
        .into_response()
}

/// The query of `GET /healthz`: with `stream`, whether the node serves that stream now.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct HealthQuery {
    /// A stream name: answer whether the node carries it over a live session.
    stream: Option<String>,
    /// How long to wait for such a session (a relay between two upstreams), ms (at most
    /// [`MAX_SESSION_WAIT`]).
    wait_ms: Option<u64>,
}

/// Longest a `/healthz?stream=…` waits for a live session.
const MAX_SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How often that wait looks again.
const SESSION_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// `GET /healthz`: the node is up and serving HTTP; with a coordinator, also whether the
/// coordinator could reach it from outside (`reachability`: `reachable`, `unreachable` with a
/// `hint` naming the ports to forward, or `unchecked`).
///
/// With `?stream=NAME` (and `wait_ms`, default 0, at most 2000) it also answers whether the node
/// serves that stream now: `serving` is true while a live session feeds it (a publisher
/// connected here, or a relay's pull connected to an upstream) that has delivered media,
/// waiting up to `wait_ms` for one (a relay between two upstreams); false otherwise. No new
/// frame is needed within the wait, so a stream with sparse frames (audio only, slides) still
/// reads as served. The coordinator asks this of a relay whose child reports it failed: a
/// process that is up but does not carry the stream is not taken for serving (what the child
/// was really delivered is judged from its receipts, not from this answer).
pub(crate) async fn healthz(
    State(metrics): State<Arc<NodeMetrics>>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": "invalid_query",
                    "message": rejection.body_text(),
                })),
            )
                .into_response()
        }
    };
    let report = metrics
        .reachability
        .read()
        .ok()
        .and_then(|guard| guard.clone());
    let mut body = match report {
        Some(report) => serde_json::json!({
            "status": "ok",
            "reachability": report.status,
            "hint": report.hint,
            "rtmp_url": report.rtmp_url,
            "http_url": report.http_url,
        }),
        None => serde_json::json!({ "status": "ok" }),
    };
    if let Some(stream) = query.stream {
        let wait =
            std::time::Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_SESSION_WAIT);
        let serving = serves(&metrics.hub, metrics.puller.as_ref(), &stream, wait).await;
        body["stream"] = serde_json::Value::String(stream);
        body["serving"] = serde_json::Value::Bool(serving);
    }
    Json(body).into_response()
}

/// Whether `hub` carries a stream named `stream` (any app) over a live session, waiting up to
/// `wait` for one (see [`session_live`]).
async fn serves(
    hub: &RelayHub,
    puller: Option<&UpstreamPuller>,
    stream: &str,
    wait: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let live = hub
            .all_stats()
            .iter()
            .filter(|s| s.key.name.as_str() == stream)
            .any(|s| session_live(s, puller.and_then(|p| p.status(&s.key)).as_ref()));
        if live || tokio::time::Instant::now() >= deadline {
            return live;
        }
        tokio::time::sleep(SESSION_POLL.min(wait)).await;
    }
}

/// Whether a stream is fed by a live session: published here (a local publisher, or a relay's
/// pull that keeps its publish across upstreams) with media received, and, when pulled
/// (`pull`), connected to an upstream now. Not whether a frame arrived lately: a live session
/// of a stream with sparse frames serves it.
fn session_live(stats: &streamr_media::relay::StreamStats, pull: Option<&PullStatus>) -> bool {
    stats.publishing && stats.frames_in > 0 && pull.is_none_or(|pull| pull.connected)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use streamr_media::relay::{FrameKind, RelayConfig, StreamKey};

    use super::*;

    /// What the coordinator's check of a reported relay sees: a stream serves while a live
    /// session feeds it, however sparse its frames, not merely while the process is up or the
    /// stream is known.
    #[tokio::test]
    async fn a_stream_serves_while_a_live_session_feeds_it_however_sparse_its_frames() {
        let hub = RelayHub::new(RelayConfig::default());
        let wait = Duration::from_millis(300);
        assert!(!serves(&hub, None, "show", wait).await, "unknown stream");
        let key = StreamKey::parse("live", "show").expect("key");
        let publisher = hub.publish(key.clone()).expect("publish");
        // Published but nothing received yet: nothing to serve.
        assert!(!serves(&hub, None, "show", wait).await, "no media yet");
        // One frame, then silence far longer than the wait: still a live session.
        publisher.send(FrameKind::Audio, 0, Bytes::from_static(&[0xaf, 1, 0]));
        tokio::time::sleep(wait * 2).await;
        assert!(
            serves(&hub, None, "show", wait).await,
            "a sparse stream serves"
        );
        assert!(!serves(&hub, None, "other", wait).await, "another stream");
        // A relay's pull between two upstreams does not serve; connected again, it does.
        let stats = hub.stream_stats(&key).expect("stats");
        let mut pull = PullStatus {
            upstream: Some("rtmp://parent:1935".into()),
            ..PullStatus::default()
        };
        assert!(!session_live(&stats, Some(&pull)));
        pull.connected = true;
        assert!(session_live(&stats, Some(&pull)));
        // The publisher gone: not serving.
        drop(publisher);
        assert!(!serves(&hub, None, "show", wait).await);
    }
}
