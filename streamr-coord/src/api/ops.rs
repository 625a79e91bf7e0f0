//! Health, readiness, metrics, the OpenAPI document and coordinator-wide stats.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::Shared;
use crate::error::ApiError;
use crate::storage::Totals;

/// The OpenAPI 3.1 document, kept beside the routes it describes.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(state): State<Shared>) -> impl IntoResponse {
    match state.storage.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        ),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({ "status": "unavailable", "error": "storage_unreachable" }),
                ),
            )
        }
    }
}

pub(crate) async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let totals = state.storage.totals().await.ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(totals.as_ref()),
    )
}

pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub(crate) async fn stats(State(state): State<Shared>) -> Result<Json<Totals>, ApiError> {
    Ok(Json(state.storage.totals().await?))
}
