//! `GET /coordinator`: what nodes and viewers need to know about this coordinator before they
//! trust its grants.

use axum::extract::State;
use axum::Json;

use super::Shared;

pub use streamr_client::wire::CoordinatorInfo;

/// The coordinator's public key (verifies session grants), epoch length and relay fan-out.
#[utoipa::path(get, path = "/coordinator", tag = "operations", responses(
    (status = 200, description = "About this coordinator", body = CoordinatorInfo),
))]
pub(crate) async fn coordinator(State(state): State<Shared>) -> Json<CoordinatorInfo> {
    Json(CoordinatorInfo {
        coordinator_key: state.config.coordinator_key.coordinator_key(),
        epoch_length_ms: state.config.epoch_length_ms(),
        local_trial: state.config.local_trial,
        relay_fanout: Some(u32::try_from(state.config.relay_fanout.max(1)).unwrap_or(u32::MAX)),
        max_receipts_per_request: Some(
            u32::try_from(state.config.max_receipts_per_request).unwrap_or(u32::MAX),
        ),
        heartbeat_claim_totals: true,
    })
}
