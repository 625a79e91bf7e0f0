//! `GET /coordinator`: what nodes and viewers need to know about this coordinator before they
//! trust its grants.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use streamr_core::CoordinatorKey;

use super::Shared;

/// Answer to `GET /coordinator`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoordinatorInfo {
    /// The public key that verifies the session grants this coordinator signs.
    #[schema(value_type = super::openapi::CoordinatorKeySchema)]
    pub coordinator_key: CoordinatorKey,
    /// Length of a reward epoch, milliseconds.
    pub epoch_length_ms: i64,
    /// The coordinator runs a local trial (see [`crate::CoordConfig::local_trial`]): not a
    /// network to earn real money on.
    #[serde(default)]
    pub local_trial: bool,
}

/// The coordinator's public key (verifies session grants) and epoch length.
#[utoipa::path(get, path = "/coordinator", tag = "operations", responses(
    (status = 200, description = "About this coordinator", body = CoordinatorInfo),
))]
pub(crate) async fn coordinator(State(state): State<Shared>) -> Json<CoordinatorInfo> {
    Json(CoordinatorInfo {
        coordinator_key: state.config.coordinator_key.coordinator_key(),
        epoch_length_ms: state.config.epoch_length_ms(),
        local_trial: state.config.local_trial,
    })
}
