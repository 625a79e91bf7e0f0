//! Node registration, signed heartbeats, deregistration and probe reports.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use streamr_core::{
    CanonicalMessage, KnownSession, MacHeartbeat, NodeHeartbeat, NodeId, NodeSessionId,
    OperatorKey, OperatorMembership, OperatorRefusal, ProbeResult, SessionError, SignatureBytes,
    SignatureError, SignedReceipt, Subnet24,
};

use super::openapi::{
    ErrorSchema, ProbeResultSchema, SignedDeregistrationSchema, SignedNodeSessionAcceptSchema,
    SignedNodeSessionOpenSchema, SignedRegistrationSchema,
};
use super::streams::{to_i64, Limit};
use super::{Admin, Shared};
use crate::clock::now_ms;
use crate::error::{ApiError, StorageError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PeerIp};
use crate::heartbeat_writer::SignatureCheck;
use crate::intake::receipts;
use crate::metrics::Metrics;
use crate::session_totals::TotalsHeartbeat;
use crate::storage::{
    to_wire, ActivityDelta, ClaimRun, HeartbeatWrite, NodeRecord, NodeSessionRecord,
};
use crate::wire::{
    HeartbeatRequest, NodeInfo, NodeRegistration, ProbeInfo, ReceiptsOutcome,
    SessionHeartbeatRequest, SignedDeregistration, SignedNodeSessionAccept, SignedNodeSessionOpen,
    SignedRegistration, StatsInfo,
};

/// Longest text field of a registration, in characters.
pub(crate) const MAX_FIELD_LEN: usize = 512;
/// The registration's text fields as the OpenAPI document states them: no control characters
/// (what [`check_text`] refuses; the length is [`MAX_FIELD_LEN`]).
pub(crate) const TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// The registration's URLs as the OpenAPI document states them.
pub(crate) const URL_PATTERN: &str = r"^(rtmps?|https?)://[^\u0000-\u001F\u007F-\u009F]*$";

/// `{id}` of the node routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct NodePath {
    /// Node id: the node's ed25519 public key, hex.
    id: String,
}

/// Answer to a deregistration.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeregisterResponse {
    /// The node.
    pub(crate) node_id: String,
    /// Always `false`.
    pub(crate) active: bool,
}

fn signature_error(what: &'static str, error: SignatureError, limit_ms: i64) -> ApiError {
    match error {
        SignatureError::StaleTimestamp {
            timestamp_ms,
            skew_ms,
            ..
        } => ApiError::ClockSkew {
            timestamp_ms: i64::try_from(timestamp_ms).unwrap_or(i64::MAX),
            skew_ms: i64::try_from(skew_ms).unwrap_or(i64::MAX),
            limit_ms,
        },
        _ => ApiError::BadSignature { what },
    }
}

pub(crate) fn check_skew(state: &Shared, timestamp_ms: u64) -> Result<(), ApiError> {
    let limit_ms = i64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let timestamp = i64::try_from(timestamp_ms).unwrap_or(i64::MAX);
    let skew_ms = now_ms().saturating_sub(timestamp).saturating_abs();
    if skew_ms > limit_ms {
        return Err(ApiError::ClockSkew {
            timestamp_ms: timestamp,
            skew_ms,
            limit_ms,
        });
    }
    Ok(())
}

pub(crate) fn check_text(field: &'static str, value: &str, url: bool) -> Result<(), ApiError> {
    if value.is_empty()
        || value.chars().count() > MAX_FIELD_LEN
        || value.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidField {
            field,
            reason: format!("must be 1-{MAX_FIELD_LEN} printable characters"),
        });
    }
    if url
        && !(value.starts_with("rtmp://")
            || value.starts_with("rtmps://")
            || value.starts_with("http://")
            || value.starts_with("https://"))
    {
        return Err(ApiError::InvalidField {
            field,
            reason: "must be an rtmp://, rtmps://, http:// or https:// URL".into(),
        });
    }
    Ok(())
}

/// The prefix a node is capped by: the IPv4 /24 or IPv6 /48 of the address it connected from.
/// Only when that says nothing about its network (unknown, or loopback: a node on the
/// coordinator's own host, as in single-host tests and demos) the /24 its HTTP URL names, or
/// the loopback /24.
pub(crate) fn subnet_of(http_url: &str, peer: Option<IpAddr>) -> String {
    let peer = peer.map(|ip| ip.to_canonical());
    if let Some(ip) = peer.filter(|ip| !ip.is_loopback()) {
        return streamr_core::SourcePrefixes::of(ip).wide;
    }
    let host = http_url
        .split_once("://")
        .map_or(http_url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let ip = host.parse::<std::net::Ipv4Addr>().ok().or(match peer {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    });
    ip.map_or_else(|| host.to_owned(), |v4| Subnet24::of(v4).to_string())
}

/// In a local trial, the network recorded for `who` (a node or viewer key): one of its own
/// (see [`crate::CoordConfig::local_trial`]).
pub(crate) fn local_trial_subnet(kind: &str, who: &str) -> String {
    format!("local-trial/{kind}/{who}")
}

/// The operator key a registration proves its node a member of (hex), binding the operator
/// name (in its canonical form: case, width and spacing do not make another name) to it when
/// the name is free (the first key to prove a node under a name keeps it).
/// `None`: it proved none and the name is free (or the default), so the node is its own
/// operator. A registration naming a bound operator without that key's signature is refused
/// (403 `operator_name_bound`), and one with a bad signature (401 `bad_signature`).
async fn operator_membership(
    state: &Shared,
    registration: &NodeRegistration,
) -> Result<Option<String>, ApiError> {
    // Names are bound and looked up in their canonical form only: "Acme " is "acme".
    let canonical = streamr_core::canonical_operator_name(&registration.operator);
    let name = canonical.as_str();
    let proof = registration.operator_membership.as_ref();
    let refused = |bound: &str| ApiError::OperatorNameBound {
        name: name.to_owned(),
        operator_key: bound.to_owned(),
    };
    let judge = |bound: Option<&str>| -> Result<Option<OperatorKey>, ApiError> {
        let key = match bound.map(str::parse::<OperatorKey>) {
            // A stored key that does not parse is nobody's: the name stays refused.
            Some(Err(_)) => return Err(refused(bound.unwrap_or_default())),
            Some(Ok(key)) => Some(key),
            None => None,
        };
        OperatorMembership::judge(
            &registration.operator,
            &registration.node_id,
            proof,
            key.as_ref(),
        )
        .map_err(|refusal| match refusal {
            OperatorRefusal::NameBound { bound, .. } => refused(&bound.to_string()),
            _ => ApiError::BadSignature {
                what: "operator membership",
            },
        })
    };
    if name.is_empty() || name == streamr_core::UNNAMED_OPERATOR {
        return Ok(None);
    }
    let bound = state.storage.operator_binding(name).await?;
    let judged = match judge(bound.as_deref()) {
        Ok(judged) => judged,
        Err(refusal) => return Err(explain_refusal(state, name, proof, refusal).await),
    };
    let Some(key) = judged else {
        return Ok(None);
    };
    if bound.is_some() {
        return Ok(Some(key.to_string()));
    }
    // The name was free: bind it, and judge again by whichever key won should another
    // registration have bound it meanwhile.
    let bound = state
        .storage
        .bind_operator(name, &key.to_string(), now_ms())
        .await?;
    match judge(Some(&bound)) {
        Ok(judged) => Ok(judged.map(|key| key.to_string())),
        Err(refusal) => Err(explain_refusal(state, name, proof, refusal).await),
    }
}

/// `refusal` of a registration under the operator name `name` (canonical), or, where its
/// membership `proof` is by a key a rotation retired from the name, 403
/// `operator_key_retired` saying so (the node runs with the old key file).
async fn explain_refusal(
    state: &Shared,
    name: &str,
    proof: Option<&OperatorMembership>,
    refusal: ApiError,
) -> ApiError {
    let (ApiError::OperatorNameBound { operator_key, .. }, Some(proof)) = (&refusal, proof) else {
        return refusal;
    };
    let bound = operator_key.clone();
    let retired_key = proof.operator_key.to_string();
    match state.storage.operator_key_retired(name, &retired_key).await {
        Ok(Some(rotation)) => ApiError::OperatorKeyRetired {
            name: name.to_owned(),
            retired_key,
            rotation,
            operator_key: bound,
        },
        Ok(None) => refusal,
        Err(error) => error.into(),
    }
}

/// Register (or update) a node; the body is signed with the node key it registers.
#[utoipa::path(post, path = "/nodes", tag = "nodes", request_body = SignedRegistrationSchema,
    responses(
        (status = 201, description = "Registered", body = NodeInfo),
        (status = 200, description = "Updated", body = NodeInfo),
        (status = 401, description = "bad_signature (of the registration or its operator membership) or clock_skew", body = ErrorSchema),
        (status = 403, description = "operator_name_bound: the operator name is bound to an operator key the registration has no signature of; operator_key_retired: the membership is signed by a key a rotation retired from the name", body = ErrorSchema),
    ))]
pub(crate) async fn register(
    State(state): State<Shared>,
    PeerIp(peer): PeerIp,
    ApiJson(signed): ApiJson<SignedRegistration>,
) -> Result<(StatusCode, Json<NodeInfo>), ApiError> {
    let key = signed
        .body
        .node_id
        .verifying_key()
        .map_err(|_| ApiError::BadSignature {
            what: "node registration",
        })?;
    let registration = signed
        .verify_with(&key)
        .map_err(|_| ApiError::BadSignature {
            what: "node registration",
        })?;
    check_skew(&state, registration.timestamp_ms)?;
    check_text("payout_address", &registration.payout_address, false)?;
    check_text("operator", &registration.operator, false)?;
    check_text("rtmp_url", &registration.rtmp_url, true)?;
    check_text("http_url", &registration.http_url, true)?;
    let operator_key = operator_membership(&state, registration).await?;
    let id = registration.node_id.to_string();
    let existing = state.storage.get_node(&id).await?;
    let node = NodeRecord {
        id: id.clone(),
        payout_address: registration.payout_address.clone(),
        operator: registration.operator.clone(),
        operator_key,
        subnet: if state.config.local_trial {
            local_trial_subnet("node", &id)
        } else {
            subnet_of(&registration.http_url, peer)
        },
        rtmp_url: registration.rtmp_url.trim_end_matches('/').to_owned(),
        http_url: registration.http_url.trim_end_matches('/').to_owned(),
        registered_at_ms: existing
            .as_ref()
            .map_or_else(now_ms, |n| n.registered_at_ms),
        active: true,
        capacity_kbps: to_i64("capacity_kbps", registration.capacity_kbps)?,
        last_nonce: -1,
        last_heartbeat_ms: None,
        status: "registered".into(),
        viewers: 0,
        bytes_served: 0,
        streams_json: "[]".into(),
        upstreams_json: "[]".into(),
    };
    state.storage.upsert_node(&node).await?;
    let stored = state.storage.get_node(&id).await?.unwrap_or(node);
    crate::workers::reachability::check_soon(&state, stored.clone());
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stored.into())))
}

/// `GET /nodes/{id}/reachability`: the last connect-back check of the node's advertised
/// addresses (what its operator must forward when it failed).
#[utoipa::path(get, path = "/nodes/{id}/reachability", tag = "nodes", params(NodePath),
    responses(
        (status = 200, description = "Reachability", body = crate::wire::ReachabilityReport),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn reachability(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<crate::wire::ReachabilityReport>, ApiError> {
    let node = state
        .storage
        .get_node(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "node",
            id: id.clone(),
        })?;
    let checked = state
        .storage
        .reachability()
        .await?
        .into_iter()
        .find(|r| r.node_id == id && r.is_for(&node));
    Ok(Json(crate::workers::reachability::report(
        &node,
        checked,
        state.config.reachability_interval.is_some(),
    )))
}

/// List nodes.
#[utoipa::path(get, path = "/nodes", tag = "nodes",
    responses((status = 200, description = "Nodes", body = Vec<NodeInfo>)))]
pub(crate) async fn list(State(state): State<Shared>) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(to_wire(state.storage.list_nodes().await?)))
}

/// One node.
#[utoipa::path(get, path = "/nodes/{id}", tag = "nodes", params(NodePath),
    responses(
        (status = 200, description = "The node", body = NodeInfo),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn get_one(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    state
        .storage
        .get_node(&id)
        .await?
        .map(|node| Json(node.into()))
        .ok_or(ApiError::NotFound { what: "node", id })
}

/// A signed heartbeat: skew window, nonce and signature are checked, then the node's state
/// and the receipts it carries are written in one transaction.
#[utoipa::path(post, path = "/nodes/heartbeat", tag = "nodes", request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Accepted; how each receipt fared", body = ReceiptsOutcome),
        (status = 401, description = "bad_signature or clock_skew", body = ErrorSchema),
        (status = 404, description = "unknown_node", body = ErrorSchema),
        (status = 409, description = "replayed_nonce", body = ErrorSchema),
    ))]
pub(crate) async fn heartbeat(
    State(state): State<Shared>,
    PeerIp(peer): PeerIp,
    ApiJson(request): ApiJson<HeartbeatRequest>,
) -> Result<Json<ReceiptsOutcome>, ApiError> {
    let HeartbeatRequest {
        heartbeat,
        receipts,
    } = request;
    let result = accept_heartbeat(
        &state,
        &heartbeat.body,
        Some(heartbeat.signature),
        &receipts,
    )
    .await;
    answer_heartbeat(&state, &heartbeat.body.node_id, peer, result).await
}

/// Opens a node session: the node proves its key once (a signed open carrying an ephemeral
/// X25519 share); the coordinator answers with its own share, signed with the coordinator key,
/// and both derive the session key. The session is stored, so any replica sharing the
/// database accepts heartbeats under it until it expires.
#[utoipa::path(post, path = "/nodes/sessions", tag = "nodes",
    request_body = SignedNodeSessionOpenSchema,
    responses(
        (status = 201, description = "Opened", body = SignedNodeSessionAcceptSchema),
        (status = 400, description = "invalid_field: a low-order key share", body = ErrorSchema),
        (status = 401, description = "bad_signature or clock_skew", body = ErrorSchema),
        (status = 404, description = "unknown_node: not registered or deregistered", body = ErrorSchema),
    ))]
pub(crate) async fn open_session(
    State(state): State<Shared>,
    ApiJson(open): ApiJson<SignedNodeSessionOpen>,
) -> Result<(StatusCode, Json<SignedNodeSessionAccept>), ApiError> {
    use rand::RngCore;
    let now = now_ms();
    let now_u = u64::try_from(now).unwrap_or(0);
    let skew_ms = u64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
    let lifetime_ms =
        u64::try_from(state.config.node_session_lifetime.as_millis()).unwrap_or(u64::MAX);
    let expires_at_ms = now_u.saturating_add(lifetime_ms).min(i64::MAX as u64);
    let mut session_id = [0u8; 16];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (accept, key) = streamr_core::accept_open(
        &open,
        now_u,
        skew_ms,
        NodeSessionId::from_bytes(session_id),
        secret,
        expires_at_ms,
        &state.config.coordinator_key,
    )
    .map_err(|error| match error {
        SessionError::StaleOpen {
            timestamp_ms,
            skew_ms,
            ..
        } => ApiError::ClockSkew {
            timestamp_ms: i64::try_from(timestamp_ms).unwrap_or(i64::MAX),
            skew_ms: i64::try_from(skew_ms).unwrap_or(i64::MAX),
            limit_ms: i64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
        },
        SessionError::WeakShare => ApiError::InvalidField {
            field: "body.share",
            reason: "a low-order X25519 point: no secret could be agreed".into(),
        },
        _ => ApiError::BadSignature {
            what: "node session open",
        },
    })?;
    let node_id = open.body.node_id.to_string();
    if !state
        .storage
        .get_node(&node_id)
        .await?
        .is_some_and(|node| node.active)
    {
        return Err(ApiError::Storage(StorageError::UnknownNode { node_id }));
    }
    let expires = i64::try_from(expires_at_ms).unwrap_or(i64::MAX);
    let session = KnownSession {
        node_id: open.body.node_id,
        key,
        expires_at_ms,
    };
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Only the sealed key is stored: a copy of the database alone cannot forge heartbeats.
    let sealed_key = state
        .session_vault
        .seal(&accept.body.session_id, &session, nonce);
    state
        .storage
        .insert_node_session(
            &NodeSessionRecord {
                id: accept.body.session_id.to_string(),
                node_id,
                sealed_key,
                expires_at_ms: expires,
            },
            now,
        )
        .await?;
    state
        .heartbeat_writer()
        .remember_session(accept.body.session_id, session);
    Metrics::inc(&state.metrics.node_sessions_opened_total);
    Ok((StatusCode::CREATED, Json(accept)))
}

/// A heartbeat authenticated by its node session's MAC: the session is looked up (this
/// process's cache, else the database), must belong to the node the heartbeat names and not
/// be expired, and the MAC must hold. Its byte counts are the session's running totals: the
/// newest heartbeat of each session is kept in memory (nonce above the session's last, totals
/// not below) and written with the others every `heartbeat_totals_interval`; receipts it
/// carries are stored before it is answered.
#[utoipa::path(post, path = "/nodes/session-heartbeat", tag = "nodes",
    request_body = SessionHeartbeatRequest,
    responses(
        (status = 200, description = "Accepted; how each receipt fared", body = ReceiptsOutcome),
        (status = 400, description = "invalid_field: a running total below the session's last one", body = ErrorSchema),
        (status = 401, description = "unknown_session or session_expired (open a new session), bad_mac or clock_skew", body = ErrorSchema),
        (status = 403, description = "wrong_session_node: the session belongs to another node", body = ErrorSchema),
        (status = 404, description = "unknown_node", body = ErrorSchema),
        (status = 409, description = "replayed_nonce", body = ErrorSchema),
    ))]
pub(crate) async fn session_heartbeat(
    State(state): State<Shared>,
    PeerIp(peer): PeerIp,
    ApiJson(request): ApiJson<SessionHeartbeatRequest>,
) -> Result<Json<ReceiptsOutcome>, ApiError> {
    let (sealed, receipts) = request.into_parts();
    let result = match check_mac(&state, &sealed).await {
        Ok(()) => accept_session_heartbeat(&state, &sealed, &receipts).await,
        Err(error) => Err(error),
    };
    answer_heartbeat(&state, &sealed.heartbeat.node_id, peer, result).await
}

/// Finds the session `sealed` names and checks its MAC.
async fn check_mac(state: &Shared, sealed: &MacHeartbeat) -> Result<(), ApiError> {
    let writer = state.heartbeat_writer();
    let session = match writer.session(&sealed.session_id) {
        Some(session) => session,
        None => {
            let id = sealed.session_id.to_string();
            let record = state.storage.get_node_session(&id).await?.ok_or_else(|| {
                ApiError::UnknownSession {
                    session_id: id.clone(),
                }
            })?;
            let session = known_session(state, &sealed.session_id, &record).ok_or_else(|| {
                ApiError::UnknownSession {
                    session_id: id.clone(),
                }
            })?;
            writer.remember_session(sealed.session_id, session.clone());
            session
        }
    };
    let now = u64::try_from(now_ms()).unwrap_or(0);
    sealed
        .verify(&session, now)
        .map(|_| ())
        .map_err(|error| match error {
            SessionError::Expired {
                session_id,
                expires_at_ms,
                ..
            } => ApiError::SessionExpired {
                session_id: session_id.to_string(),
                expires_at_ms: i64::try_from(expires_at_ms).unwrap_or(i64::MAX),
            },
            SessionError::WrongNode {
                session_id,
                claimed,
                ..
            } => ApiError::WrongSessionNode {
                session_id: session_id.to_string(),
                node_id: claimed.to_string(),
            },
            _ => ApiError::BadMac {
                session_id: sealed.session_id.to_string(),
            },
        })
}

/// A stored session as the MAC check needs it, its key unsealed; `None` when the row is
/// malformed, was altered after sealing or was sealed under another coordinator key (the node
/// is told `unknown_session` and opens a new one).
fn known_session(
    state: &Shared,
    id: &NodeSessionId,
    record: &NodeSessionRecord,
) -> Option<KnownSession> {
    let node_id = record.node_id.parse().ok()?;
    let expires_at_ms = u64::try_from(record.expires_at_ms).unwrap_or(0);
    match state
        .session_vault
        .open(id, node_id, expires_at_ms, &record.sealed_key)
    {
        Ok(session) => Some(session),
        Err(error) => {
            Metrics::inc(&state.metrics.node_session_rows_refused_total);
            tracing::warn!(session = %id, node = %record.node_id, %error,
                "stored node session refused");
            None
        }
    }
}

/// Records where an accepted heartbeat came from and counts it.
async fn answer_heartbeat(
    state: &Shared,
    node: &NodeId,
    peer: Option<IpAddr>,
    result: Result<ReceiptsOutcome, ApiError>,
) -> Result<Json<ReceiptsOutcome>, ApiError> {
    if let (Ok(_), Some(peer)) = (&result, peer) {
        let node_id = node.to_string();
        // Only an accepted (authenticated, fresh) heartbeat tells where the node is.
        if let Err(error) = state
            .node_prefixes
            .observe(state.storage.as_ref(), &node_id, peer, now_ms())
            .await
        {
            tracing::warn!(node = %node_id, %error, "observed node prefix not recorded");
        }
    }
    let counter = if result.is_ok() {
        &state.metrics.heartbeats_accepted_total
    } else {
        &state.metrics.heartbeats_rejected_total
    };
    Metrics::inc(counter);
    result.map(Json)
}

/// The most streams (and relayed streams' upstreams) one heartbeat may list: a node serving
/// more is not a friend node, and each entry is stored and walked at every tree decision.
const MAX_HEARTBEAT_STREAMS: usize = 1024;

/// The most bytes one heartbeat may claim, as a signed heartbeat's count or a session's
/// running total: 1 PiB, beyond what any node serves in a session's lifetime. The epoch's
/// activity adds these up in 64-bit columns; without a bound, two claims near `i64::MAX`
/// would overflow the sum and fail the whole batch they are written in, other nodes' rows
/// included.
pub(crate) const MAX_HEARTBEAT_BYTES: u64 = 1 << 50;

/// A byte count a heartbeat claims, refused above [`MAX_HEARTBEAT_BYTES`].
fn claimed_bytes(field: &'static str, value: u64) -> Result<i64, ApiError> {
    if value > MAX_HEARTBEAT_BYTES {
        return Err(ApiError::InvalidField {
            field,
            reason: format!("{value} is more than a heartbeat may claim ({MAX_HEARTBEAT_BYTES})"),
        });
    }
    to_i64(field, value)
}

/// The checks every heartbeat passes first: how many receipts and streams it carries, and its
/// timestamp within the skew window. Returns the coordinator's time.
fn check_heartbeat_limits(
    state: &Shared,
    body: &NodeHeartbeat,
    receipts: usize,
) -> Result<i64, ApiError> {
    let limit = state.config.max_receipts_per_request;
    if receipts > limit {
        return Err(ApiError::InvalidField {
            field: "receipts",
            reason: format!("at most {limit} receipts per heartbeat"),
        });
    }
    for (field, count) in [
        ("heartbeat.streams", body.streams.len()),
        ("heartbeat.upstreams", body.upstreams.len()),
    ] {
        if count > MAX_HEARTBEAT_STREAMS {
            return Err(ApiError::InvalidField {
                field,
                reason: format!("at most {MAX_HEARTBEAT_STREAMS} per heartbeat"),
            });
        }
    }
    let now = now_ms();
    let skew_ms = u64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
    let limit_ms = i64::try_from(skew_ms).unwrap_or(i64::MAX);
    let skew = u64::try_from(now).unwrap_or(0).abs_diff(body.timestamp_ms);
    if skew > skew_ms {
        return Err(signature_error(
            "heartbeat",
            SignatureError::StaleTimestamp {
                timestamp_ms: body.timestamp_ms,
                skew_ms: skew,
                limit_ms: skew_ms,
            },
            limit_ms,
        ));
    }
    Ok(now)
}

/// A session heartbeat (its MAC checked): its running totals go to the in-memory table,
/// written to the database in periodic batches ([`crate::totals_writer`]); the receipts it
/// carries (if any) are verified and stored before it is answered, with no claim of bytes
/// (the totals carry those).
async fn accept_session_heartbeat(
    state: &Shared,
    sealed: &MacHeartbeat,
    receipts_in: &[SignedReceipt],
) -> Result<ReceiptsOutcome, ApiError> {
    let body = &sealed.heartbeat;
    let now = check_heartbeat_limits(state, body, receipts_in.len())?;
    let node_id = body.node_id.to_string();
    let epoch = state.config.epoch_of(now);
    let streams: Vec<&str> = body.streams.iter().map(|s| s.as_str()).collect();
    let upstreams: Vec<(&str, String)> = body
        .upstreams
        .iter()
        .map(|u| (u.stream.as_str(), u.upstream.to_string()))
        .collect();
    let totals = TotalsHeartbeat {
        node_id: node_id.clone(),
        nonce: to_i64("nonce", body.nonce)?,
        timestamp_ms: to_i64("timestamp_ms", body.timestamp_ms)?,
        streams_json: serde_json::to_string(&streams).unwrap_or_else(|_| "[]".into()),
        upstreams_json: serde_json::to_string(&upstreams).unwrap_or_else(|_| "[]".into()),
        viewers: to_i64("viewers", body.viewers)?,
        bytes_total: claimed_bytes("bytes_served", body.bytes_served)?,
        unattested_total: claimed_bytes("unattested_bytes", body.unattested_bytes)?,
        epoch,
    };
    let table = state.totals_writer();
    table.check(&sealed.session_id, &totals, now).await?;
    let outcome = if receipts_in.is_empty() {
        ReceiptsOutcome::default()
    } else {
        let verified =
            receipts::verify(&state.intake(), Some(body.node_id), receipts_in, now).await?;
        let activity = verified
            .tallies
            .get(&node_id)
            .map(|tally| receipts::tally_delta(&node_id, epoch, tally))
            .unwrap_or_else(|| ActivityDelta {
                node_id: node_id.clone(),
                epoch,
                ..ActivityDelta::default()
            });
        let write = HeartbeatWrite {
            node_id: node_id.clone(),
            nonce: totals.nonce,
            timestamp_ms: totals.timestamp_ms,
            streams_json: totals.streams_json.clone(),
            upstreams_json: totals.upstreams_json.clone(),
            viewers: totals.viewers,
            bytes_served: 0,
            claim_totals: None,
            receipts: verified.accepted,
            activity,
        };
        let accepted = state.heartbeat_writer().write(write, None).await?;
        count_receipts(state, accepted, verified.rejected.len());
        receipts::outcome(accepted, verified.rejected)
    };
    table.accept(&sealed.session_id, totals, now).await?;
    Ok(outcome)
}

/// Checks what is cheap on the request path (size, skew window, a nonce this process has seen
/// committed). With `signature` (a signed heartbeat), a heartbeat without receipts has its
/// signature left to the writer, which checks a whole batch at once, and one with receipts has
/// it checked here, before its receipts are looked at. Without, the caller has authenticated
/// the heartbeat already. (Session heartbeats go by [`accept_session_heartbeat`].)
async fn accept_heartbeat(
    state: &Shared,
    body: &NodeHeartbeat,
    signature: Option<SignatureBytes>,
    receipts_in: &[SignedReceipt],
) -> Result<ReceiptsOutcome, ApiError> {
    let now = check_heartbeat_limits(state, body, receipts_in.len())?;
    let writer = state.heartbeat_writer();
    let node_id = body.node_id.to_string();
    let nonce = to_i64("nonce", body.nonce)?;
    writer.check_not_replayed(&node_id, nonce)?;
    let check = match signature {
        Some(signature) => {
            let key = writer
                .verifying_key(&body.node_id)
                .ok_or(ApiError::BadSignature { what: "heartbeat" })?;
            Some(SignatureCheck::new(
                key,
                body.canonical_bytes(),
                signature.to_signature(),
            ))
        }
        None => None,
    };
    let streams: Vec<&str> = body.streams.iter().map(|s| s.as_str()).collect();
    let upstreams: Vec<(&str, String)> = body
        .upstreams
        .iter()
        .map(|u| (u.stream.as_str(), u.upstream.to_string()))
        .collect();
    let unattested_bytes = claimed_bytes("unattested_bytes", body.unattested_bytes)?;
    let claim_totals = match &body.claim_totals {
        // A run is named by the nonce of one of its heartbeats, so never above a later one's:
        // a larger name would make every later run of the node count nothing.
        Some(totals) if totals.run > body.nonce => {
            return Err(ApiError::InvalidField {
                field: "claim_totals.run",
                reason: format!(
                    "{} is above the heartbeat's nonce {}",
                    totals.run, body.nonce
                ),
            })
        }
        Some(totals) => Some(ClaimRun {
            run: to_i64("claim_totals.run", totals.run)?,
            bytes_total: claimed_bytes("claim_totals.bytes_served", totals.bytes_served)?,
            unattested_total: claimed_bytes(
                "claim_totals.unattested_bytes",
                totals.unattested_bytes,
            )?,
        }),
        None => None,
    };
    let write_base = HeartbeatWrite {
        node_id: node_id.clone(),
        nonce,
        timestamp_ms: to_i64("timestamp_ms", body.timestamp_ms)?,
        streams_json: serde_json::to_string(&streams).unwrap_or_else(|_| "[]".into()),
        upstreams_json: serde_json::to_string(&upstreams).unwrap_or_else(|_| "[]".into()),
        viewers: to_i64("viewers", body.viewers)?,
        bytes_served: claimed_bytes("bytes_served", body.bytes_served)?,
        claim_totals,
        receipts: Vec::new(),
        activity: ActivityDelta::default(),
    };
    let (verified, pending_check) = if receipts_in.is_empty() {
        (receipts::Verified::default(), check)
    } else {
        if check.as_ref().is_some_and(|check| !check.verify_strict()) {
            return Err(ApiError::BadSignature { what: "heartbeat" });
        }
        let verified =
            receipts::verify(&state.intake(), Some(body.node_id), receipts_in, now).await?;
        (verified, None)
    };
    let mut activity = verified
        .tallies
        .get(&node_id)
        .map(|tally| receipts::tally_delta(&node_id, state.config.epoch_of(now), tally))
        .unwrap_or_else(|| ActivityDelta {
            node_id: node_id.clone(),
            epoch: state.config.epoch_of(now),
            ..ActivityDelta::default()
        });
    activity.heartbeats = 1;
    activity.claimed_bytes = write_base.bytes_served;
    activity.unattested_bytes = unattested_bytes;
    let write = HeartbeatWrite {
        receipts: verified.accepted,
        activity,
        ..write_base
    };
    let accepted = writer.write(write, pending_check).await?;
    count_receipts(state, accepted, verified.rejected.len());
    Ok(receipts::outcome(accepted, verified.rejected))
}

pub(crate) fn count_receipts(state: &Shared, accepted: u64, rejected: usize) {
    use std::sync::atomic::Ordering;
    let metrics = &state.metrics;
    metrics
        .receipts_accepted_total
        .fetch_add(accepted, Ordering::Relaxed);
    metrics.receipts_rejected_total.fetch_add(
        u64::try_from(rejected).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// A node leaves; signed with its key.
#[utoipa::path(post, path = "/nodes/deregister", tag = "nodes",
    request_body = SignedDeregistrationSchema,
    responses(
        (status = 200, description = "Deregistered", body = DeregisterResponse),
        (status = 401, description = "bad_signature or clock_skew", body = ErrorSchema),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn deregister(
    State(state): State<Shared>,
    ApiJson(signed): ApiJson<SignedDeregistration>,
) -> Result<Json<DeregisterResponse>, ApiError> {
    let key = signed
        .body
        .node_id
        .verifying_key()
        .map_err(|_| ApiError::BadSignature {
            what: "node deregistration",
        })?;
    let body = signed
        .verify_with(&key)
        .map_err(|_| ApiError::BadSignature {
            what: "node deregistration",
        })?;
    check_skew(&state, body.timestamp_ms)?;
    let id = body.node_id.to_string();
    if state.storage.deregister_node(&id).await? {
        Ok(Json(DeregisterResponse {
            node_id: id,
            active: false,
        }))
    } else {
        Err(ApiError::NotFound { what: "node", id })
    }
}

/// The probe runner's seam: records a probe result (admin token).
#[utoipa::path(post, path = "/probes", tag = "nodes", security(("admin" = [])),
    request_body = ProbeResultSchema,
    responses(
        (status = 201, description = "Recorded", body = ProbeInfo),
        (status = 401, description = "unauthorized", body = ErrorSchema),
        (status = 404, description = "not_found: no such node", body = ErrorSchema),
    ))]
pub(crate) async fn report_probe(
    State(state): State<Shared>,
    _admin: Admin,
    ApiJson(result): ApiJson<ProbeResult>,
) -> Result<(StatusCode, Json<ProbeInfo>), ApiError> {
    let id = result.node_id.to_string();
    if state.storage.get_node(&id).await?.is_none() {
        return Err(ApiError::NotFound { what: "node", id });
    }
    let probe = crate::workers::probe_record(&state, &result, now_ms());
    state.storage.insert_probe(&probe).await?;
    Ok((StatusCode::CREATED, Json(probe.into())))
}

/// Per-minute delivery of a node.
#[utoipa::path(get, path = "/nodes/{id}/stats", tag = "nodes", params(NodePath, Limit),
    responses((status = 200, description = "Per-minute rows", body = Vec<StatsInfo>)))]
pub(crate) async fn stats(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<StatsInfo>>, ApiError> {
    Ok(Json(to_wire(
        state
            .storage
            .minute_stats("node", &id, limit.value())
            .await?,
    )))
}

#[cfg(test)]
mod tests {
    use super::subnet_of;

    #[test]
    fn subnet_comes_from_the_url_host_or_the_peer() {
        assert_eq!(subnet_of("http://10.1.2.3:8080/x", None), "10.1.2.0/24");
        assert_eq!(
            subnet_of("http://node.example:8080", Some([192, 168, 7, 9].into())),
            "192.168.7.0/24"
        );
        // The observed address wins over what the URL says...
        assert_eq!(
            subnet_of("http://10.1.2.3:8080", Some([192, 168, 7, 9].into())),
            "192.168.7.0/24"
        );
        // ...unless it is loopback, which says nothing about the node's network.
        assert_eq!(
            subnet_of("http://10.1.2.3:8080", Some([127, 0, 0, 1].into())),
            "10.1.2.0/24"
        );
        assert_eq!(
            subnet_of("http://node.example:8080", Some([127, 0, 0, 1].into())),
            "127.0.0.0/24"
        );
        assert_eq!(
            subnet_of(
                "http://node.example:8080",
                Some("2001:db8:5:6::1".parse().unwrap())
            ),
            "2001:db8:5::/48"
        );
    }
}
