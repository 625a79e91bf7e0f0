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
use streamr_media::upstream::UpstreamPuller;
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
    /// A stream name: answer whether the node carries it with media arriving.
    stream: Option<String>,
    /// How long to wait for a frame of `stream` to arrive, ms (at most [`MAX_MEDIA_WAIT`]).
    wait_ms: Option<u64>,
}

/// Longest a `/healthz?stream=…` waits for a frame.
const MAX_MEDIA_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How often that wait looks at the stream's frame counter.
const MEDIA_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// `GET /healthz`: the node is up and serving HTTP; with a coordinator, also whether the
/// coordinator could reach it from outside (`reachability`: `reachable`, `unreachable` with a
/// `hint` naming the ports to forward, or `unchecked`).
///
/// With `?stream=NAME` (and `wait_ms`, default 0, at most 2000) it also answers whether the node
/// serves that stream now: `serving` is true when a publisher or upstream pull feeds it and a
/// new frame arrived within `wait_ms` (a live stream sends one every few tens of
/// milliseconds), false otherwise. The coordinator asks this of a relay whose child reports it
/// failed: a process that is up but does not carry the stream is not taken for serving.
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
        let wait = std::time::Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_MEDIA_WAIT);
        let serving = serves(&metrics.hub, &stream, wait).await;
        body["stream"] = serde_json::Value::String(stream);
        body["serving"] = serde_json::Value::Bool(serving);
    }
    Json(body).into_response()
}

/// Whether `hub` carries a stream named `stream` (any app) with a publisher or pull feeding
/// it and a frame arriving within `wait` (with no wait: any frame received at all).
async fn serves(hub: &RelayHub, stream: &str, wait: std::time::Duration) -> bool {
    let Some(stats) = hub
        .all_stats()
        .into_iter()
        .find(|s| s.publishing && s.key.name.as_str() == stream)
    else {
        return false;
    };
    if wait.is_zero() {
        return stats.frames_in > 0;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::time::sleep(MEDIA_POLL.min(wait)).await;
        match hub.stream_stats(&stats.key) {
            Some(now) if now.publishing && now.frames_in > stats.frames_in => return true,
            Some(now) if now.publishing => {}
            _ => return false,
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use streamr_media::relay::{FrameKind, RelayConfig, StreamKey};

    use super::*;

    /// What the coordinator's check of a reported relay sees: a stream serves while frames
    /// arrive, not merely while the process is up or the stream is known.
    #[tokio::test]
    async fn a_stream_serves_only_while_a_publisher_feeds_it_frames() {
        let hub = RelayHub::new(RelayConfig::default());
        let wait = Duration::from_millis(300);
        assert!(!serves(&hub, "show", wait).await, "unknown stream");
        let key = StreamKey::parse("live", "show").expect("key");
        let publisher = hub.publish(key).expect("publish");
        // Published but silent: up, not serving.
        assert!(!serves(&hub, "show", wait).await, "no frame arrives");
        // Frames arriving every 20 ms: serving, found within the wait.
        let feeding = tokio::spawn(async move {
            for t in 0u32.. {
                publisher.send(FrameKind::Audio, t * 20, Bytes::from_static(&[0xaf, 1, 0]));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(serves(&hub, "show", wait).await);
        assert!(!serves(&hub, "other", wait).await, "another stream");
        feeding.abort();
        let _ = feeding.await;
        // The publisher gone: not serving.
        assert!(!serves(&hub, "show", wait).await);
    }
}
