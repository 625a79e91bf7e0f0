//! `GET /metrics` (Prometheus text format) and `GET /healthz` for operators.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
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

/// `GET /healthz`: the node is up and serving HTTP; with a coordinator, also whether the
/// coordinator could reach it from outside (`reachability`: `reachable`, `unreachable` with a
/// `hint` naming the ports to forward, or `unchecked`).
pub(crate) async fn healthz(State(metrics): State<Arc<NodeMetrics>>) -> Response {
    let report = metrics
        .reachability
        .read()
        .ok()
        .and_then(|guard| guard.clone());
    match report {
        Some(report) => Json(serde_json::json!({
            "status": "ok",
            "reachability": report.status,
            "hint": report.hint,
            "rtmp_url": report.rtmp_url,
            "http_url": report.http_url,
        }))
        .into_response(),
        None => Json(serde_json::json!({ "status": "ok" })).into_response(),
    }
}
