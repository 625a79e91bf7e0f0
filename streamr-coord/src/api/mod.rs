//! The HTTP API: the handlers and their routes, the admin check and the mapping of the
//! domain errors to HTTP answers. The shared state is [`crate::state`]'s; the router with the
//! dashboard and the middleware is composed in [`crate::router`].

pub(crate) mod info;
pub(crate) mod ledger;
mod nodes;
pub(crate) mod openapi;
mod operators;
mod ops;
mod parts;
mod streams;
mod tree;
pub(crate) mod viewers;

use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::error::{ApiError, StorageError};
use crate::intake::{IntakeError, ReceiptIntake};
pub(crate) use crate::state::{AppState, Shared};

impl AppState {
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

    /// Receipt intake over this state's configuration, storage and counters.
    pub(crate) fn intake(&self) -> ReceiptIntake<'_> {
        ReceiptIntake {
            config: &self.config,
            storage: self.storage.as_ref(),
            metrics: &self.metrics,
            liveness: &self.liveness,
            clock: &crate::clock::SystemClock,
        }
    }

    /// The OpenAPI document with this configuration's limits, built on first use.
    pub(crate) fn openapi_document(&self) -> &str {
        self.openapi.get_or_init(|| openapi::document(&self.config))
    }
}

/// Receipt intake's failures as HTTP answers: corrupt stored data and storage failures are
/// the server's (500), as any other storage failure.
impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        match error {
            IntakeError::Storage(source) => ApiError::Storage(source),
            IntakeError::Corrupt { what, detail } => {
                ApiError::Storage(StorageError::Corrupt { what, detail })
            }
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

/// The API's routes (without the dashboard and the middleware, which
/// [`crate::router::router`] adds).
pub(crate) fn routes() -> Router<Shared> {
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
        .route("/streams/{id}/parts", post(parts::report_parts))
        .route("/streams/{id}/parts/{hash}", get(parts::find_part))
        .route("/streams/{id}/part-reports", get(parts::part_reports))
        .route(
            "/streams/{id}/part-reports/stream",
            get(parts::stream_part_reports),
        )
        .route("/streams/{id}/stats", get(streams::stats))
        .route("/streams/{id}/play", get(viewers::play))
        .route("/streams/{id}/upstream", post(tree::upstream))
        .route("/receipts", post(viewers::post_receipts))
        .route("/nodes", post(nodes::register).get(nodes::list))
        .route("/nodes/heartbeat", post(nodes::heartbeat))
        .route("/nodes/sessions", post(nodes::open_session))
        .route("/nodes/session-heartbeat", post(nodes::session_heartbeat))
        .route("/nodes/deregister", post(nodes::deregister))
        .route("/nodes/{id}", get(nodes::get_one))
        .route("/nodes/{id}/stats", get(nodes::stats))
        .route("/nodes/{id}/reachability", get(nodes::reachability))
        .route("/nodes/{id}/earnings", get(ledger::earnings))
        .route("/nodes/{id}/payouts", get(ledger::node_payouts))
        .route("/probes", post(nodes::report_probe))
        .route("/operators/rotations", post(operators::rotate))
        .route("/operators/{name}", delete(operators::unbind))
        .route("/epochs", get(ledger::list_epochs))
        .route("/epochs/{epoch}", get(ledger::statement))
        .route("/epochs/{epoch}/proofs/{node_id}", get(ledger::proof))
        .route("/payouts/pending", get(ledger::pending_payouts))
        .route("/simulate", post(ledger::simulate))
}
