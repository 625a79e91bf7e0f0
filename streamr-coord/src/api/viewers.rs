//! Viewer routing (`/streams/{id}/play`) and receipts posted by viewers directly.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use rand::RngCore;
use streamr_core::{
    NodeId, ProbeResult, ProbeSummary, RouteCandidate, Router, SessionGrant, SessionId, Signed,
    StreamId,
};

use super::nodes::count_receipts;
use super::streams::load_stream;
use super::Shared;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, PeerIp};
use crate::metrics::Metrics;
use crate::receipts;
use crate::storage::{NodeRecord, SessionRecord};
use crate::wire::{PlayQuery, PlayResponse, ReceiptsOutcome, ReceiptsRequest};

fn relays(node: &NodeRecord, stream_id: &str) -> bool {
    serde_json::from_str::<Vec<String>>(&node.streams_json)
        .map(|streams| streams.iter().any(|s| s == stream_id))
        .unwrap_or(false)
}

/// The routing seed of an epoch: derived from the coordinator's secret so viewers cannot
/// steer picks, and published with the epoch if picks need auditing.
fn epoch_seed(state: &Shared, epoch: i64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("streamr coordinator routing seed v1");
    hasher.update(&state.config.coordinator_key.seed());
    hasher.update(&epoch.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// Picks a node with `streamr_core::Router` and returns playback URLs and a signed grant.
pub(crate) async fn play(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    PeerIp(peer): PeerIp,
    ApiQuery(query): ApiQuery<PlayQuery>,
) -> Result<Json<PlayResponse>, ApiError> {
    let stream = load_stream(&state, &id).await?;
    if stream.status != "live" {
        return Err(ApiError::Conflict(format!("stream {id} has ended")));
    }
    let now = now_ms();
    let liveness = i64::try_from(state.config.node_liveness.as_millis()).unwrap_or(i64::MAX);
    let live: Vec<NodeRecord> = state
        .storage
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.active)
        .filter(|n| {
            n.last_heartbeat_ms
                .is_some_and(|t| now.saturating_sub(t) <= liveness)
        })
        .collect();
    let relaying: Vec<&NodeRecord> = live.iter().filter(|n| relays(n, &id)).collect();
    let eligible: Vec<&NodeRecord> = if relaying.is_empty() {
        live.iter().collect()
    } else {
        relaying
    };
    let epoch = state.config.epoch_of(now);
    let mut probes: BTreeMap<String, Vec<ProbeResult>> = BTreeMap::new();
    for probe in state.storage.probes_for_epoch(epoch).await? {
        if let Some(result) = crate::workers::probe_result(&probe) {
            probes
                .entry(probe.node_id.clone())
                .or_default()
                .push(result);
        }
    }
    let candidates: Vec<RouteCandidate> = eligible
        .iter()
        .filter_map(|n| {
            let node_id: NodeId = n.id.parse().ok()?;
            let quality_ppm = probes.get(&n.id).map_or(0, |results| {
                ProbeSummary::from_results(&state.config.probe_policy, results).availability_ppm()
            });
            Some(RouteCandidate {
                node_id,
                quality_ppm,
            })
        })
        .collect();
    let mut session_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_bytes);
    let session_id = SessionId::from_bytes(session_bytes);
    let seed = Router::session_seed(&epoch_seed(&state, epoch), &session_id);
    let node_id =
        state
            .config
            .router
            .pick(seed, &candidates)
            .ok_or_else(|| ApiError::NoNodeAvailable {
                stream_id: id.clone(),
            })?;
    let node = eligible
        .iter()
        .find(|n| n.id == node_id.to_string())
        .ok_or_else(|| ApiError::NoNodeAvailable {
            stream_id: id.clone(),
        })?;
    let ttl_ms = u64::try_from(state.config.grant_ttl.as_millis()).unwrap_or(u64::MAX);
    let grant = SessionGrant {
        session_id,
        viewer: query.viewer,
        node_id,
        stream_id: StreamId::new(stream.id.clone())
            .map_err(|e| ApiError::InvalidPath(e.to_string()))?,
        max_bytes: state
            .config
            .grant_bytes_per_second
            .saturating_mul(ttl_ms / 1000),
        expiry_ms: u64::try_from(now).unwrap_or(0).saturating_add(ttl_ms),
    };
    let signed = Signed::sign(grant, &state.config.coordinator_key);
    let grant_json = serde_json::to_string(&signed).map_err(|e| ApiError::InvalidField {
        field: "grant",
        reason: e.to_string(),
    })?;
    state
        .storage
        .create_session(&SessionRecord {
            session_id: session_id.to_string(),
            stream_id: stream.id.clone(),
            node_id: node.id.clone(),
            viewer: query.viewer.to_string(),
            max_bytes: i64::try_from(signed.body.max_bytes).unwrap_or(i64::MAX),
            expiry_ms: i64::try_from(signed.body.expiry_ms).unwrap_or(i64::MAX),
            issued_at_ms: now,
            grant_json,
            viewer_subnet: peer.map_or_else(String::new, |ip| {
                super::nodes::subnet_of(&format!("http://{ip}"), None)
            }),
        })
        .await?;
    Metrics::inc(&state.metrics.grants_issued_total);
    // The URLs carry the grant (`?grant=<token>`) so any player can present it to the node.
    let with_grant = |url: String| crate::grant_token::with_grant(&url, &signed);
    Ok(Json(PlayResponse {
        node_id,
        rtmp_url: with_grant(format!("{}/{}", node.rtmp_url, stream.id)),
        http_flv_url: with_grant(format!("{}/live/{}.flv", node.http_url, stream.id)),
        hls_url: with_grant(format!("{}/live/{}.m3u8", node.http_url, stream.id)),
        grant: signed,
    }))
}

/// Receipts a viewer posts itself; each credits the node its session was granted to.
pub(crate) async fn post_receipts(
    State(state): State<Shared>,
    ApiJson(request): ApiJson<ReceiptsRequest>,
) -> Result<Json<ReceiptsOutcome>, ApiError> {
    let limit = state.config.max_receipts_per_request;
    if request.receipts.is_empty() || request.receipts.len() > limit {
        return Err(ApiError::InvalidField {
            field: "receipts",
            reason: format!("between 1 and {limit} receipts per request"),
        });
    }
    let now = now_ms();
    let verified = receipts::verify(&state, None, &request.receipts, now).await?;
    let activity = verified.activity(state.config.epoch_of(now));
    let accepted = state
        .storage
        .insert_receipts(&verified.accepted, &activity)
        .await?;
    count_receipts(&state, accepted, verified.rejected.len());
    Ok(Json(ReceiptsOutcome {
        accepted,
        rejected: verified.rejected,
    }))
}
