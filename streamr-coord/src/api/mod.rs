//! The HTTP API: routes, shared state and the middleware around them (body limit, per-IP rate
//! limit, request counting, JSON errors for unknown routes).

pub(crate) mod info;
pub(crate) mod ledger;
mod nodes;
pub(crate) mod openapi;
mod ops;
mod streams;
mod tree;
pub(crate) mod viewers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::CoordConfig;
use crate::error::ApiError;
use crate::heartbeat_writer::HeartbeatWriter;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::storage::Storage;
use crate::workers::Settler;

/// State shared by every handler and worker.
pub(crate) struct AppState {
    pub(crate) config: CoordConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) metrics: Metrics,
    pub(crate) settler: tokio::sync::Mutex<Settler>,
    /// The network prefixes nodes' heartbeats came from, as last written to storage.
    pub(crate) node_prefixes: crate::observed_prefixes::ObservedPrefixes,
    /// The relays' measured fan-outs, reused for a moment by the relay tree.
    pub(crate) relay_fanouts: tree::FanoutCache,
    heartbeat_writer: std::sync::OnceLock<HeartbeatWriter>,
    limiter: Option<RateLimiter>,
    admin_token_hash: Option<blake3::Hash>,
    /// The OpenAPI document, with this configuration's limits.
    openapi: String,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn new(config: CoordConfig, storage: Arc<dyn Storage>) -> Self {
        let admin_token_hash = config
            .admin_token
            .as_deref()
            .map(|token| blake3::hash(token.as_bytes()));
        AppState {
            openapi: openapi::document(&config),
            limiter: config.rate_limit.map(RateLimiter::new),
            settler: tokio::sync::Mutex::new(Settler::new(&config)),
            node_prefixes: crate::observed_prefixes::ObservedPrefixes::default(),
            relay_fanouts: tree::FanoutCache::default(),
            config,
            storage,
            metrics: Metrics::default(),
            heartbeat_writer: std::sync::OnceLock::new(),
            admin_token_hash,
        }
    }

    /// The group-commit writer, started on first use (inside the runtime).
    pub(crate) fn heartbeat_writer(&self) -> &HeartbeatWriter {
        self.heartbeat_writer
            .get_or_init(|| HeartbeatWriter::spawn(self.storage.clone()))
    }

    /// Checks `Authorization: Bearer <admin token>` (compared by hash in constant time).
    pub(crate) fn require_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let expected = self.admin_token_hash.ok_or(ApiError::Unauthorized)?;
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        if blake3::hash(presented.as_bytes()) == expected {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// An admin request: `Authorization: Bearer <admin token>` was presented. Extracted before the
/// path and the body, so a request without the token is answered 401 whatever else is wrong
/// with it.
pub(crate) struct Admin;

impl axum::extract::FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        state.require_admin(&parts.headers).map(|()| Admin)
    }
}

/// Builds the router over shared state.
pub(crate) fn router(state: Shared) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/stats", get(ops::stats))
        .route("/coordinator", get(info::coordinator))
        .route("/streams", post(streams::create).get(streams::list))
        .route("/streams/{id}", get(streams::get_one))
        .route("/streams/{id}/end", post(streams::end))
        .route("/streams/{id}/origin", post(streams::set_origin))
        .route("/streams/{id}/key", post(streams::rotate_key))
        .route("/streams/{id}/publish-check", post(streams::publish_check))
        .route(
            "/streams/{id}/segments",
            post(streams::report_segment).get(streams::list_segments),
        )
        .route("/streams/{id}/stats", get(streams::stats))
        .route("/streams/{id}/play", get(viewers::play))
        .route("/streams/{id}/upstream", post(tree::upstream))
        .route("/receipts", post(viewers::post_receipts))
        .route("/nodes", post(nodes::register).get(nodes::list))
        .route("/nodes/heartbeat", post(nodes::heartbeat))
        .route("/nodes/deregister", post(nodes::deregister))
        .route("/nodes/{id}", get(nodes::get_one))
        .route("/nodes/{id}/stats", get(nodes::stats))
        .route("/nodes/{id}/reachability", get(nodes::reachability))
        .route("/nodes/{id}/earnings", get(ledger::earnings))
        .route("/nodes/{id}/payouts", get(ledger::node_payouts))
        .route("/probes", post(nodes::report_probe))
        .route("/epochs", get(ledger::list_epochs))
        .route("/epochs/{epoch}", get(ledger::statement))
        .route("/epochs/{epoch}/proofs/{node_id}", get(ledger::proof))
        .route("/payouts/pending", get(ledger::pending_payouts))
        .route("/simulate", post(ledger::simulate))
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_and_limit,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound {
        what: "route",
        id: format!("{} {}", request.method(), request.uri().path()),
    }
}

/// Refuses clients over their rate, then counts the answer by status class.
/// The client address is the TCP peer's, or behind a trusted reverse proxy the one its
/// forwarding headers name; handlers get it as [`streamr_net::ClientIp`].
async fn count_and_limit(
    State(state): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let ip = match peer {
        Some(peer) => {
            let client =
                streamr_net::client_ip(peer, request.headers(), &state.config.trusted_proxies);
            request
                .extensions_mut()
                .insert(streamr_net::ClientIp(client));
            client
        }
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let metrics = &state.metrics;
    Metrics::inc(&metrics.http_requests_total);
    if let Some(limiter) = &state.limiter {
        if !limiter.allow(ip) {
            Metrics::inc(&metrics.rate_limited_total);
            Metrics::inc(&metrics.http_client_errors_total);
            return ApiError::RateLimited.into_response();
        }
    }
    let response = next.run(request).await;
    if response.status().is_client_error() {
        Metrics::inc(&metrics.http_client_errors_total);
    } else if response.status().is_server_error() {
        Metrics::inc(&metrics.http_server_errors_total);
    }
    response
}
