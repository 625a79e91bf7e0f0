//! Health, readiness, metrics, the OpenAPI document and coordinator-wide stats.

use std::fmt::Write as _;
use streamr_net::failure_log::Throttle;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::Shared;
use crate::error::ApiError;
use crate::wire::TotalsInfo;

use super::openapi::{HealthSchema, ReadinessSchema};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthSchema)))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Failed readiness checks: a load balancer asks every few seconds while the database is away.
static READINESS_FAILURES: Throttle = Throttle::new();

/// Readiness: storage answers (503 otherwise).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = ReadinessSchema),
    (status = 503, description = "Storage unreachable", body = ReadinessSchema),
))]
pub(crate) async fn readyz(State(state): State<Shared>) -> impl IntoResponse {
    match state.storage.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        ),
        Err(error) => {
            if READINESS_FAILURES
                .admit(std::time::Instant::now())
                .is_some()
            {
                tracing::warn!(%error, "readiness check failed (logged at most every 30s)");
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({ "status": "unavailable", "error": "storage_unreachable" }),
                ),
            )
        }
    }
}

/// Prometheus text exposition of counters and gauges.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String,
     content_type = "text/plain; version=0.0.4; charset=utf-8"),
))]
pub(crate) async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let totals = state.storage.totals().await.ok();
    let mut text = state.metrics.render(totals.as_ref());
    let _ = write!(
        text,
        "# HELP streamr_part_report_waiters Requests open now that wait for an LL-HLS part \
         report: part lookups with wait_ms, part-report long polls, streamed part-report \
         answers.\n# TYPE streamr_part_report_waiters gauge\nstreamr_part_report_waiters {}\n",
        state.recent_parts.waiters()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, description = "The OpenAPI 3.1 document", body = Object),
))]
pub(crate) async fn openapi(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_document().to_owned(),
    )
}

/// Coordinator-wide totals.
#[utoipa::path(get, path = "/stats", tag = "operations", responses(
    (status = 200, description = "Totals", body = TotalsInfo),
))]
pub(crate) async fn stats(State(state): State<Shared>) -> Result<Json<TotalsInfo>, ApiError> {
    Ok(Json(state.storage.totals().await?.into()))
}
