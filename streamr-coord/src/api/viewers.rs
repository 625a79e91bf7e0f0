//! Viewer routing (`/streams/{id}/play`) and receipts posted by viewers directly.
//!
//! Viewers cannot steer the pick. It is drawn with a seed of the viewer's key, the epoch, the
//! request's source prefix and a coordinator secret ([`Router::viewer_seed`]): asking again
//! draws the same number, and a new key or network is budgeted. Every granted request spends one
//! unit, plus one per node it excludes, of the epoch's grant budgets of its viewer key and of its
//! source prefixes (IPv4 /24; IPv6 /48 and /64), kept in the database so they hold across
//! replicas and restarts; a request over budget is refused with 429. A request that finds no
//! node spends nothing, so a viewer retrying while nodes come back is not charged for waiting.
//!
//! A viewer failing over carries its still-live grant (`previous=<session id>`, its node among
//! the excluded): that re-route is free, and ends the previous grant (its expiry becomes the
//! re-route time, which bounds what settlement allows it), so a viewer holds at most one live
//! grant per paid one. The claim is one conditional update in the database: a grant is carried
//! once, by one request on any replica, only by its own viewer for its own stream, and at most
//! [`MAX_FREE_REROUTES`] times along a chain of re-routes (a chain walks the nodes the router
//! picks, so an unbounded one would reach any node for one unit). Excluding a node the viewer
//! was not granted recently still costs its unit in a free re-route.
//!
//! Nodes are weighed by what the coordinator measured ([`Router::measured_candidate`]):
//! capacity proven by receipt-backed sessions (a newcomer starts with a few viewers), capped by
//! probe throughput and by the announcement; load is the sessions with recent receipts plus
//! recent grants without one (at most a few per source prefix, so a flood of junk grants from
//! one network cannot make a node look full), or the viewers the node announced if more. Nodes
//! already relaying the stream are preferred while one of them has room; then viewers spill
//! over to the other nodes.
//!
//! A viewer that failed on nodes names them (`exclude`); they are left out of its pick, and a
//! node that several distinct viewers holding a recent grant for it (by any replica: the grant
//! log is the sessions table) report within a short window, and that has not sent a heartbeat
//! for a few seconds, is treated as down until its next heartbeat. The reports and the down
//! marks are kept in the database (`route_reports`, `route_down`), like grants and budgets, so
//! replicas sharing it route the same request alike and a restart forgets nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::State;
use axum::Json;
use rand::RngCore;
use streamr_core::{
    LoadedCandidate, NodeId, NodeMeasurements, ProbeResult, ProbeSummary, RouteCandidate, Router,
    SessionGrant, SessionId, Signed, SourcePrefixes, StreamId, ViewerKey,
};

use super::nodes::count_receipts;
use super::openapi::{ErrorSchema, NodeIdSchema, ViewerKeySchema};
use super::streams::load_stream;
use super::streams::StreamPath;
use super::Shared;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, PeerIp};
use crate::intake::receipts;
use crate::metrics::Metrics;
use crate::storage::{
    BudgetCharge, FailureReportRecord, NodeDownRecord, NodeRecord, NodeSessionCounts, SessionRecord,
};
use crate::wire::{PlayResponse, ReceiptsOutcome, ReceiptsRequest};

/// Distinct viewers that must report a node failing within [`REPORT_WINDOW_MS`] before it is
/// treated as down.
const DEAD_REPORTS: usize = 3;
/// How long a viewer's report of a failing node counts.
pub(crate) const REPORT_WINDOW_MS: i64 = 30_000;
/// A node whose last heartbeat is this recent is not treated as down, whatever viewers report.
const FRESH_HEARTBEAT_MS: i64 = 5_000;
/// A viewer's report of a node counts only if it was granted a session on that node this
/// recently (by any replica: the grant log is the sessions table): only a viewer sent there can
/// have failed there.
const REPORTER_GRANT_WINDOW_MS: i64 = 600_000;
/// Most nodes one play request may exclude.
pub(crate) const MAX_EXCLUDED: usize = 16;
/// Most free re-routes along one chain of grants carried from a paid one.
pub(crate) const MAX_FREE_REROUTES: i64 = 8;

/// Which nodes routing treats as down, decided from the shared reports and marks alone, so
/// every replica reading the same rows decides alike, and the marks to write and lift.
#[derive(Debug, Default, PartialEq, Eq)]
struct DownDecision {
    /// Nodes treated as down until their next heartbeat.
    down: HashSet<String>,
    /// Nodes found down now, at their last heartbeat.
    mark: Vec<NodeDownRecord>,
    /// Nodes marked before that sent a heartbeat since (the heartbeat seen).
    lift: Vec<NodeDownRecord>,
}

/// How each of `nodes` stands at `now`: a mark is lifted by a heartbeat newer than the one it
/// was made at; distinct viewers' reports after the node's last heartbeat and within the
/// window, if enough and the heartbeat is not fresh, mark it.
fn decide_down(
    nodes: &[NodeRecord],
    reports: &[FailureReportRecord],
    marks: &[NodeDownRecord],
    now: i64,
) -> DownDecision {
    let marks: HashMap<&str, i64> = marks
        .iter()
        .map(|m| (m.node_id.as_str(), m.down_at_heartbeat_ms))
        .collect();
    let mut decision = DownDecision::default();
    for node in nodes {
        let heartbeat = node.last_heartbeat_ms.unwrap_or(i64::MIN);
        let mut marked = marks.get(node.id.as_str()).copied();
        if marked.is_some_and(|at| heartbeat > at) {
            // A heartbeat since: it is back, and earlier reports are answered.
            marked = None;
            decision.lift.push(NodeDownRecord {
                node_id: node.id.clone(),
                down_at_heartbeat_ms: heartbeat,
            });
        }
        if marked.is_none() {
            // Only reports after its last heartbeat and within the window speak against it.
            let reporters: HashSet<&str> = reports
                .iter()
                .filter(|r| r.node_id == node.id)
                .filter(|r| {
                    r.reported_at_ms > heartbeat
                        && now.saturating_sub(r.reported_at_ms) <= REPORT_WINDOW_MS
                })
                .map(|r| r.viewer.as_str())
                .collect();
            if reporters.len() >= DEAD_REPORTS && now.saturating_sub(heartbeat) > FRESH_HEARTBEAT_MS
            {
                marked = Some(heartbeat);
                decision.mark.push(NodeDownRecord {
                    node_id: node.id.clone(),
                    down_at_heartbeat_ms: heartbeat,
                });
            }
        }
        if marked.is_some() {
            decision.down.insert(node.id.clone());
        }
    }
    decision
}

/// The query of `GET /streams/{id}/play`: `viewer=<hex key>`, any number of
/// `exclude=<node id>` (repeated, or comma-separated) and at most one `previous=<session id>`.
#[derive(Debug)]
struct PlayParams {
    viewer: ViewerKey,
    exclude: Vec<NodeId>,
    previous: Option<SessionId>,
}

impl PlayParams {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut viewer = None;
        let mut exclude = Vec::new();
        let mut previous = None;
        for (name, value) in pairs {
            match name.as_str() {
                "previous" => set_once(&mut previous, "previous", value)?,
                "viewer" => set_once(&mut viewer, "viewer", value)?,
                "exclude" => {
                    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let node = part.parse::<NodeId>().map_err(|e| {
                            ApiError::InvalidQuery(format!(
                                "exclude: {part:?} is not a node id: {e}"
                            ))
                        })?;
                        exclude.push(node);
                    }
                }
                other => {
                    return Err(ApiError::InvalidQuery(format!(
                        "unknown parameter {other:?}"
                    )));
                }
            }
        }
        if exclude.len() > MAX_EXCLUDED {
            return Err(ApiError::InvalidQuery(format!(
                "exclude: at most {MAX_EXCLUDED} nodes"
            )));
        }
        let viewer =
            viewer.ok_or_else(|| ApiError::InvalidQuery("missing field `viewer`".into()))?;
        Ok(PlayParams {
            viewer,
            exclude,
            previous,
        })
    }
}

/// Parses query parameter `name`'s `value` into `slot`; a parameter given twice is refused.
fn set_once<T>(slot: &mut Option<T>, name: &str, value: &str) -> Result<(), ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if slot.is_some() {
        return Err(ApiError::InvalidQuery(format!("{name} given twice")));
    }
    let parsed = value
        .parse()
        .map_err(|e| ApiError::InvalidQuery(format!("{name}: {e}")))?;
    *slot = Some(parsed);
    Ok(())
}

fn relays(node: &NodeRecord, stream_id: &str) -> bool {
    serde_json::from_str::<Vec<String>>(&node.streams_json)
        .map(|streams| streams.iter().any(|s| s == stream_id))
        .unwrap_or(false)
}

/// The secret routing seeds are keyed with: derived from the coordinator's key, so replicas
/// sharing the key draw alike and viewers cannot predict picks.
fn routing_secret(state: &Shared) -> [u8; 32] {
    blake3::derive_key(
        "streamr coordinator routing secret v1",
        &state.config.coordinator_key.seed(),
    )
}

/// `units` (one, plus one per excluded node, for a paid request) as a charge to each grant
/// budget: the viewer key's and each source prefix's (or the shared unknown-source budget).
fn budget_charges(
    state: &Shared,
    viewer: &ViewerKey,
    source: Option<&SourcePrefixes>,
    units: usize,
) -> Vec<BudgetCharge> {
    let budget = &state.config.grant_budget;
    let cost = i64::try_from(units).unwrap_or(i64::MAX);
    let charge = |scope: &str, subject: &str, limit: u32| BudgetCharge {
        scope: scope.to_owned(),
        subject: subject.to_owned(),
        cost,
        limit: i64::from(limit),
    };
    let mut charges = vec![charge("viewer", &viewer.to_string(), budget.per_viewer)];
    match source {
        Some(prefixes) => {
            for (scope, prefix) in prefixes.scoped() {
                let limit = match scope {
                    "ipv4/24" => budget.per_ipv4_24,
                    "ipv6/48" => budget.per_ipv6_48,
                    _ => budget.per_ipv6_64,
                };
                charges.push(charge(scope, prefix, limit));
            }
        }
        None => charges.push(charge("unknown", "", budget.per_unknown_source)),
    }
    charges
}

fn window_start(now: i64, window: std::time::Duration) -> i64 {
    now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
}

/// What the coordinator measured of every node, for routing: receipt-backed sessions over the
/// proving and live windows, unconfirmed recent grants (capped per source prefix) and the
/// sustained throughput of this epoch's passing probes.
pub(crate) async fn measurements(
    state: &Shared,
    nodes: &[&NodeRecord],
    epoch: i64,
    now: i64,
) -> Result<HashMap<String, (NodeMeasurements, u64)>, ApiError> {
    let config = &state.config;
    let counts: HashMap<String, NodeSessionCounts> = state
        .storage
        .session_counts_since(
            window_start(now, config.proving_window),
            window_start(now, config.live_window),
        )
        .await?
        .into_iter()
        .map(|c| (c.node_id.clone(), c))
        .collect();
    let mut pending: HashMap<String, u64> = HashMap::new();
    let per_prefix = config.router.pending_per_prefix;
    for row in state
        .storage
        .pending_grants_since(window_start(now, config.pending_window))
        .await?
    {
        let grants = u64::try_from(row.grants).unwrap_or(0).min(per_prefix);
        let total = pending.entry(row.node_id).or_default();
        *total = total.saturating_add(grants);
    }
    let mut probes: BTreeMap<String, Vec<ProbeResult>> = BTreeMap::new();
    for probe in state.storage.probes_for_epoch(epoch).await? {
        if let Some(result) = crate::workers::probe_result(&probe) {
            probes
                .entry(probe.node_id.clone())
                .or_default()
                .push(result);
        }
    }
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(nodes
        .iter()
        .map(|node| {
            let summary = probes
                .get(&node.id)
                .map(|results| ProbeSummary::from_results(&config.probe_policy, results));
            let sessions = counts.get(&node.id);
            let measured = NodeMeasurements {
                announced_capacity_kbps: to_u64(node.capacity_kbps),
                announced_viewers: to_u64(node.viewers),
                proven_sessions: sessions.map_or(0, |c| to_u64(c.proven_sessions)),
                live_sessions: sessions.map_or(0, |c| to_u64(c.live_sessions)),
                pending_grants: pending.get(&node.id).copied().unwrap_or(0),
                probed_bytes_per_s: summary
                    .filter(|s| s.passed > 0)
                    .map(|s| s.capacity_bytes_per_s),
            };
            let quality_ppm = summary.map_or(0, |s| s.availability_ppm());
            (node.id.clone(), (measured, quality_ppm))
        })
        .collect())
}

/// Picks a node with `streamr_core::Router` (measured
/// capacity and load, leaving out the nodes the viewer excludes and those found down) and
/// returns playback URLs and a signed grant, spending the request's grant budget once a node is
/// found (a free re-route spends nothing; see the module docs).
///
/// Each playback URL carries the grant as `?grant=<token>`. A node that three distinct viewers
/// granted a session on it in the last 10 minutes report (`exclude`) within 30 s, and that has
/// not sent a heartbeat for 5 s, is treated as down until its next heartbeat.
#[utoipa::path(get, path = "/streams/{id}/play", tag = "viewers",
    params(
        StreamPath,
        ("viewer" = ViewerKeySchema, Query, description = "The viewer's ed25519 public key, hex."),
        ("exclude" = Option<Vec<NodeIdSchema>>, Query, style = Form, explode,
         description = "Nodes the viewer just failed to play from, left out of this pick; \
                        repeat the parameter (ids may also be separated by commas)."),
        ("previous" = Option<String>, Query,
         description = "Fail-over: the session id (hex) of the viewer's still-live grant for \
                        this stream, whose node is excluded. The re-route is not charged to \
                        the grant budgets and ends that grant; a grant is carried once."),
    ),
    responses(
        (status = 200, description = "Where to play, and the grant", body = PlayResponse),
        (status = 404, description = "not_found", body = ErrorSchema),
        (status = 409, description = "conflict: the stream has ended", body = ErrorSchema),
        (status = 429, description = "grant_budget_spent or rate_limited", body = ErrorSchema),
        (status = 503, description = "no_node_available", body = ErrorSchema),
    ))]
pub(crate) async fn play(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    PeerIp(peer): PeerIp,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<PlayResponse>, ApiError> {
    let query = PlayParams::parse(&pairs)?;
    let stream = load_stream(&state, &id).await?;
    if stream.status != "live" {
        return Err(ApiError::Conflict(format!("stream {id} has ended")));
    }
    let now = now_ms();
    let epoch = state.config.epoch_of(now);
    let mut excluded: Vec<String> = query.exclude.iter().map(NodeId::to_string).collect();
    excluded.sort();
    excluded.dedup();
    let source = peer.map(SourcePrefixes::of);
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
    let viewer = query.viewer.to_string();
    let mut granted = Vec::new();
    if !excluded.is_empty() {
        // Only a viewer sent to a node can have failed there.
        granted = state
            .storage
            .nodes_granted_to_viewer(&viewer, now.saturating_sub(REPORTER_GRANT_WINDOW_MS))
            .await?;
        let reported: Vec<String> = live
            .iter()
            .filter(|n| excluded.contains(&n.id) && granted.contains(&n.id))
            .map(|n| n.id.clone())
            .collect();
        if !reported.is_empty() {
            state
                .storage
                .record_failure_reports(
                    &viewer,
                    &reported,
                    now,
                    now.saturating_sub(REPORT_WINDOW_MS),
                )
                .await?;
        }
    }
    // Reports and marks live in the database: every replica sees the same ones.
    let (reports, marks) = state
        .storage
        .route_state(now.saturating_sub(REPORT_WINDOW_MS))
        .await?;
    let decision = decide_down(&live, &reports, &marks, now);
    state
        .storage
        .update_route_down(&decision.mark, &decision.lift)
        .await?;
    // Nodes the connect-back check found unreachable from outside: viewers could not connect.
    let unreachable = crate::workers::reachability::unreachable_nodes(&state).await?;
    let up: Vec<&NodeRecord> = live
        .iter()
        .filter(|n| !excluded.contains(&n.id))
        .filter(|n| !unreachable.contains(&n.id))
        .filter(|n| !decision.down.contains(&n.id))
        .collect();
    let measured = measurements(&state, &up, epoch, now).await?;
    let router = &state.config.router;
    let loaded: Vec<(&NodeRecord, LoadedCandidate)> = up
        .iter()
        .filter_map(|n| {
            let node_id: NodeId = n.id.parse().ok()?;
            let (measurements, quality_ppm) = measured.get(&n.id)?;
            let candidate = RouteCandidate {
                node_id,
                quality_ppm: *quality_ppm,
            };
            Some((*n, router.measured_candidate(candidate, measurements)))
        })
        .collect();
    // Nodes already relaying the stream serve it at no extra cost upstream: they are preferred
    // while one of them has room. Once they are all full, every node is a candidate, so new
    // viewers spill over to nodes that start pulling instead of piling onto the relaying ones.
    let has_room = |c: &LoadedCandidate| c.load_viewers < c.capacity_viewers;
    let relaying_with_room = loaded.iter().any(|(n, c)| relays(n, &id) && has_room(c));
    let (eligible, candidates): (Vec<&NodeRecord>, Vec<LoadedCandidate>) = loaded
        .into_iter()
        .filter(|(n, _)| !relaying_with_room || relays(n, &id))
        .unzip();
    let source_prefix = source.as_ref().map_or("", |s| s.wide.as_str());
    let seed = Router::viewer_seed(&routing_secret(&state), epoch, &query.viewer, source_prefix);
    let node_id =
        router
            .pick_loaded(seed, &candidates)
            .ok_or_else(|| ApiError::NoNodeAvailable {
                stream_id: id.clone(),
            })?;
    let node = eligible
        .iter()
        .find(|n| n.id == node_id.to_string())
        .ok_or_else(|| ApiError::NoNodeAvailable {
            stream_id: id.clone(),
        })?;
    let reroutes = match reroute(&state, &query, &stream.id, &excluded, now).await? {
        Some(reroutes) => {
            // Free, but excluding a node it was never sent to still steers: one unit each.
            let unsent = excluded.iter().filter(|n| !granted.contains(n)).count();
            if unsent > 0 {
                let charges = budget_charges(&state, &query.viewer, source.as_ref(), unsent);
                spend(&state, epoch, &charges).await?;
            }
            Some(reroutes)
        }
        None => {
            let units = excluded.len().saturating_add(1);
            let charges = budget_charges(&state, &query.viewer, source.as_ref(), units);
            spend(&state, epoch, &charges).await?;
            None
        }
    };
    let (session_id, signed, grant_json) =
        sign_grant(&state, query.viewer, node_id, &stream.id, now)?;
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
            viewer_subnet: if state.config.local_trial {
                super::nodes::local_trial_subnet("viewer", &viewer.to_string())
            } else {
                source.as_ref().map_or_else(String::new, |s| s.wide.clone())
            },
            viewer_prefix64: if state.config.local_trial {
                super::nodes::local_trial_subnet("viewer", &viewer.to_string())
            } else {
                source
                    .as_ref()
                    .and_then(|s| s.narrow.clone())
                    .unwrap_or_default()
            },
            probe: false,
        })
        .await?;
    if let Some(reroutes) = reroutes {
        state
            .storage
            .set_session_reroutes(&session_id.to_string(), reroutes)
            .await?;
    }
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

/// Spends `charges` of `epoch`'s grant budgets, or refuses with 429 (spending nothing).
async fn spend(state: &Shared, epoch: i64, charges: &[BudgetCharge]) -> Result<(), ApiError> {
    match state.storage.spend_grant_budget(epoch, charges).await? {
        None => Ok(()),
        Some(refusal) => {
            Metrics::inc(&state.metrics.grants_over_budget_total);
            Err(ApiError::GrantBudgetSpent {
                scope: refusal.scope,
                subject: refusal.subject,
                spent: refusal.spent,
                cost: refusal.cost,
                limit: refusal.limit,
            })
        }
    }
}

/// Claims the request's `previous` grant for a free re-route: it must be the same viewer's, for
/// the same stream, its node excluded, still live and never carried before (checked and ended
/// in one database update, so one request on any replica wins). Returns the number the new
/// grant gets in its chain of free re-routes; `None` when the request pays.
async fn reroute(
    state: &Shared,
    query: &PlayParams,
    stream_id: &str,
    excluded: &[String],
    now: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(previous) = query.previous else {
        return Ok(None);
    };
    let previous = previous.to_string();
    let Some(session) = state.storage.get_session(&previous).await? else {
        return Ok(None);
    };
    let carried = session.viewer == query.viewer.to_string()
        && session.stream_id == stream_id
        && !session.probe
        && excluded.contains(&session.node_id);
    if !carried {
        return Ok(None);
    }
    let claimed = state
        .storage
        .claim_reroute(&previous, now, MAX_FREE_REROUTES)
        .await?;
    Ok(claimed.map(|reroutes| reroutes.saturating_add(1)))
}

/// Receipts a viewer posts itself; each credits the node its session was granted to. Their
/// outcomes are tallied apart from the receipts nodes hand in (see
/// [`crate::storage::Storage::viewer_posted_for_epoch`]).
#[utoipa::path(post, path = "/receipts", tag = "viewers", request_body = ReceiptsRequest,
    responses((status = 200, description = "How each receipt fared", body = ReceiptsOutcome)))]
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
    let verified = receipts::verify(&state.intake(), None, &request.receipts, now).await?;
    // A viewer's own receipts are the viewer's doing: their outcomes are kept apart from what
    // the node handed in, so a hostile viewer cannot make an honest node look like a forger.
    let outcomes = verified.activity(state.config.epoch_of(now));
    let accepted = state
        .storage
        .insert_viewer_receipts(&verified.accepted, &outcomes)
        .await?;
    count_receipts(&state, accepted, verified.rejected.len());
    Ok(Json(receipts::outcome(accepted, verified.rejected)))
}

/// A fresh session grant admitting `viewer` to `stream` on `node_id` for the configured
/// lifetime and byte budget, signed by the coordinator: its session id, the signed grant and
/// its JSON (as stored with the session).
pub(crate) fn sign_grant(
    state: &Shared,
    viewer: ViewerKey,
    node_id: NodeId,
    stream: &str,
    now: i64,
) -> Result<(SessionId, Signed<SessionGrant>, String), ApiError> {
    let mut session_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_bytes);
    let session_id = SessionId::from_bytes(session_bytes);
    let ttl_ms = u64::try_from(state.config.grant_ttl.as_millis()).unwrap_or(u64::MAX);
    let grant = SessionGrant {
        session_id,
        viewer,
        node_id,
        stream_id: StreamId::new(stream).map_err(|e| ApiError::InvalidPath(e.to_string()))?,
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
    Ok((session_id, signed, grant_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, last_heartbeat_ms: i64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            payout_address: String::new(),
            operator: String::new(),
            operator_key: None,
            subnet: String::new(),
            rtmp_url: String::new(),
            http_url: String::new(),
            registered_at_ms: 0,
            active: true,
            capacity_kbps: 10_000,
            last_nonce: 1,
            last_heartbeat_ms: Some(last_heartbeat_ms),
            status: "online".into(),
            viewers: 0,
            bytes_served: 0,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
        }
    }

    /// The shared rows as a test keeps them: what the storage would hold.
    #[derive(Default)]
    struct Rows {
        reports: Vec<FailureReportRecord>,
        marks: Vec<NodeDownRecord>,
    }

    impl Rows {
        fn report(&mut self, node: &str, viewer: &str, now: i64) {
            self.reports
                .retain(|r| !(r.node_id == node && r.viewer == viewer));
            self.reports.push(FailureReportRecord {
                node_id: node.into(),
                viewer: viewer.into(),
                reported_at_ms: now,
            });
        }

        /// Decides as `play` does and applies the marks as the storage would.
        fn down(&mut self, node: &NodeRecord, now: i64) -> bool {
            let decision = decide_down(std::slice::from_ref(node), &self.reports, &self.marks, now);
            for lift in &decision.lift {
                self.marks.retain(|m| {
                    !(m.node_id == lift.node_id
                        && m.down_at_heartbeat_ms < lift.down_at_heartbeat_ms)
                });
            }
            for mark in decision.mark {
                if !self.marks.iter().any(|m| m.node_id == mark.node_id) {
                    self.marks.push(mark);
                }
            }
            decision.down.contains(&node.id)
        }
    }

    #[test]
    fn several_reports_take_a_silent_node_down_until_its_next_heartbeat() {
        let mut rows = Rows::default();
        let silent = node("a", 1_000);
        for viewer in ["v1", "v2", "v2"] {
            rows.report("a", viewer, 10_000);
        }
        assert!(!rows.down(&silent, 10_000), "two distinct viewers");
        rows.report("a", "v3", 10_000);
        assert!(rows.down(&silent, 10_000));
        // Reports expiring do not bring it back; only a heartbeat does.
        assert!(rows.down(&silent, 100_000));
        assert!(!rows.down(&node("a", 100_500), 101_000));
    }

    #[test]
    fn a_node_heard_from_recently_or_after_the_reports_stays_up() {
        let mut rows = Rows::default();
        for viewer in ["v1", "v2", "v3"] {
            rows.report("a", viewer, 10_000);
        }
        assert!(!rows.down(&node("a", 8_000), 10_000), "fresh heartbeat");
        // A heartbeat after the reports answers them, however old it later gets.
        assert!(!rows.down(&node("a", 10_500), 20_000));
        // Reports older than the window no longer count.
        let mut rows = Rows::default();
        for viewer in ["v1", "v2", "v3"] {
            rows.report("a", viewer, 10_000);
        }
        assert!(!rows.down(&node("a", 0), 10_000 + REPORT_WINDOW_MS + 1));
    }

    #[test]
    fn the_decision_depends_on_the_rows_alone() {
        let mut rows = Rows::default();
        for viewer in ["v1", "v2", "v3"] {
            rows.report("a", viewer, 10_000);
        }
        let nodes = [node("a", 1_000), node("b", 1_000)];
        let first = decide_down(&nodes, &rows.reports, &rows.marks, 10_000);
        let again = decide_down(&nodes, &rows.reports, &rows.marks, 10_000);
        assert_eq!(first, again);
        assert_eq!(first.down, HashSet::from(["a".to_owned()]));
    }

    #[test]
    fn play_parameters_take_repeated_and_comma_separated_exclusions() {
        let viewer = streamr_core::KeyPair::from_seed([1; 32]).viewer_key();
        let a = streamr_core::KeyPair::from_seed([2; 32]).node_id();
        let b = streamr_core::KeyPair::from_seed([3; 32]).node_id();
        let pairs = |list: &[(&str, String)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let params = PlayParams::parse(&pairs(&[
            ("viewer", viewer.to_string()),
            ("exclude", a.to_string()),
            ("exclude", format!("{b}, {a}")),
        ]))
        .expect("valid");
        assert_eq!(params.viewer, viewer);
        assert_eq!(params.exclude, vec![a, b, a]);
        for bad in [
            pairs(&[("exclude", a.to_string())]),
            pairs(&[("viewer", viewer.to_string()), ("exclude", "x".into())]),
            pairs(&[("viewer", viewer.to_string()), ("other", "1".into())]),
        ] {
            assert!(matches!(
                PlayParams::parse(&bad),
                Err(ApiError::InvalidQuery(_))
            ));
        }
    }
}
