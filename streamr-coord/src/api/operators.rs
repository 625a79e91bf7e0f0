//! Operator names' bindings to operator keys: rotation by the bound key's statement, and an
//! administrator's unbinding (see `streamr_core::operator`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use streamr_core::{canonical_operator_name, OperatorRotation, RotationRefusal};

use super::openapi::{ErrorSchema, OperatorRotationSchema};
use super::{Admin, Shared};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::wire::OperatorBindingInfo;

/// Path parameter of `/operators/{name}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct OperatorPath {
    /// Operator name (any spelling of it: it is taken in its canonical form).
    name: String,
}

/// Rebind an operator name to another key, by a statement signed with the key it is bound to.
///
/// After it, memberships signed by the old key are refused at registration (403
/// `operator_key_retired`), and nodes registered with them are no longer grouped under the
/// name: they register again with the new key's signature.
#[utoipa::path(post, path = "/operators/rotations", tag = "nodes", request_body = OperatorRotationSchema,
    responses(
        (status = 200, description = "The name's binding after the rotation", body = OperatorBindingInfo),
        (status = 400, description = "invalid_field: the name is nobody's (empty or the default), too long or not printable, or the new key is the old one", body = ErrorSchema),
        (status = 401, description = "bad_signature: not the old key's signature over the statement", body = ErrorSchema),
        (status = 404, description = "not_found: the name is not bound", body = ErrorSchema),
        (status = 409, description = "operator_key_not_bound: the name is bound to another key than the statement's old key; stale_operator_rotation: the sequence is not above the name's last accepted rotation (a replay)", body = ErrorSchema),
    ))]
pub(crate) async fn rotate(
    State(state): State<Shared>,
    ApiJson(rotation): ApiJson<OperatorRotation>,
) -> Result<Json<OperatorBindingInfo>, ApiError> {
    // The name comes from the request: held to a registration's limits before it is folded,
    // looked up or echoed in an error.
    super::nodes::check_text("operator", &rotation.operator, false)?;
    let name = canonical_operator_name(&rotation.operator);
    let not_found = || ApiError::NotFound {
        what: "operator name",
        id: name.clone(),
    };
    let bound = state
        .storage
        .operator_binding(&name)
        .await?
        .ok_or_else(not_found)?;
    let bound_key = bound.parse().map_err(|_| ApiError::OperatorKeyNotBound {
        name: name.clone(),
        operator_key: bound.clone(),
        old_key: rotation.old_key.to_string(),
    })?;
    let last = state.storage.last_operator_rotation(&name).await?;
    let sequence = i64::try_from(rotation.sequence).map_err(|_| ApiError::InvalidField {
        field: "sequence",
        reason: format!("must be at most {}", i64::MAX),
    })?;
    rotation
        .judge(&bound_key, u64::try_from(last).unwrap_or(0))
        .map_err(refusal)?;
    let (old_key, new_key) = (rotation.old_key.to_string(), rotation.new_key.to_string());
    let moved = state
        .storage
        .rotate_operator(&name, &old_key, &new_key, sequence, now_ms())
        .await?;
    if !moved {
        // Another rotation (or an unbinding) won meanwhile: judge again against what won.
        let bound = state
            .storage
            .operator_binding(&name)
            .await?
            .ok_or_else(not_found)?;
        let last = state.storage.last_operator_rotation(&name).await?;
        let bound_key = bound.parse().map_err(|_| ApiError::OperatorKeyNotBound {
            name: name.clone(),
            operator_key: bound.clone(),
            old_key: old_key.clone(),
        })?;
        rotation
            .judge(&bound_key, u64::try_from(last).unwrap_or(0))
            .map_err(refusal)?;
        return Err(ApiError::Conflict(format!(
            "operator name {name:?} changed while the rotation was applied; retry"
        )));
    }
    tracing::info!(operator = %name, %old_key, %new_key, sequence, "operator key rotated");
    Ok(Json(OperatorBindingInfo {
        operator: name,
        operator_key: rotation.new_key,
        rotation: rotation.sequence,
    }))
}

/// A rotation's refusal as the API answers it.
fn refusal(refusal: RotationRefusal) -> ApiError {
    match refusal {
        RotationRefusal::BadSignature => ApiError::BadSignature {
            what: "operator rotation",
        },
        RotationRefusal::Unbindable { name } => ApiError::InvalidField {
            field: "operator",
            reason: format!("operator name {name:?} is nobody's: it cannot be bound, nor rotated"),
        },
        RotationRefusal::SameKey => ApiError::InvalidField {
            field: "new_key",
            reason: "must differ from old_key".into(),
        },
        RotationRefusal::NotBound { name, bound, old } => ApiError::OperatorKeyNotBound {
            name,
            operator_key: bound.to_string(),
            old_key: old.to_string(),
        },
        RotationRefusal::Stale {
            name,
            sequence,
            last,
        } => ApiError::StaleOperatorRotation {
            name,
            sequence,
            last,
        },
        // Later refusals: a statement refused for a reason this version does not know.
        _ => ApiError::BadSignature {
            what: "operator rotation",
        },
    }
}

/// Unbind an operator name (admin): for a key that is lost, or leaked and used to rotate the
/// name away from its operator.
///
/// The next key that proves a node under the name binds it; its rotations stay recorded, so
/// an old rotation statement is still refused. Nodes registered under the name are no longer
/// grouped under it until they register again.
#[utoipa::path(delete, path = "/operators/{name}", tag = "nodes", security(("admin" = [])),
    params(OperatorPath),
    responses(
        (status = 204, description = "Unbound"),
        (status = 400, description = "invalid_field: the name is too long or not printable", body = ErrorSchema),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 404, description = "not_found: the name is not bound", body = ErrorSchema),
    ))]
pub(crate) async fn unbind(
    State(state): State<Shared>,
    _admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    super::nodes::check_text("name", &name, false)?;
    let name = canonical_operator_name(&name);
    if !state.storage.unbind_operator(&name).await? {
        return Err(ApiError::NotFound {
            what: "operator name",
            id: name,
        });
    }
    tracing::info!(operator = %name, "operator name unbound by an administrator");
    Ok(StatusCode::NO_CONTENT)
}
