//! The whole HTTP surface in one place: the API's and the dashboard's routes over the shared
//! state, with the middleware around them (body limit, per-IP rate limit, request counting,
//! JSON errors for unknown routes). [`crate::Coordinator::router`] serves it, and tests get
//! the same router from there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::Shared;

/// Builds the router over shared state.
pub(crate) fn router(state: Shared) -> Router {
    let max_body = state.config.max_body_bytes;
    // Built now, so a limit the document cannot place is logged at startup.
    state.openapi_document();
    crate::api::routes()
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
