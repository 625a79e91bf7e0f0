//! Viewer routing (`/streams/{id}/play`) and receipts posted by viewers directly.
//!
//! Routing is load-aware: each live node is weighed by its spare capacity, counting the viewers
//! it reported at its last heartbeat plus the grants issued to it since, so concurrent viewers
//! spread out. Nodes already relaying the stream are preferred while one of them has room; then
//! viewers spill over to the other nodes. A viewer that failed on nodes names them (`exclude`);
//! they are left out of its pick, and a node that several distinct viewers holding a recent grant
//! for it report within a short window, and that has not sent a heartbeat for a few seconds, is
//! treated as down until its next heartbeat. Reports and recent grants are kept in memory by each
//! coordinator process: they steer picks only, and a restart merely forgets them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::extract::State;
use axum::Json;
use rand::RngCore;
use streamr_core::{
    LoadedCandidate, NodeId, ProbeResult, ProbeSummary, RouteCandidate, Router, SessionGrant,
    SessionId, Signed, StreamId, ViewerKey,
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
use crate::wire::{PlayResponse, ReceiptsOutcome, ReceiptsRequest};

/// Distinct viewers that must report a node failing within [`REPORT_WINDOW_MS`] before it is
/// treated as down.
const DEAD_REPORTS: usize = 3;
/// How long a viewer's report of a failing node counts.
const REPORT_WINDOW_MS: i64 = 30_000;
/// A node whose last heartbeat is this recent is not treated as down, whatever viewers report.
const FRESH_HEARTBEAT_MS: i64 = 5_000;
/// Grants count as a node's load until its next heartbeat reports its viewers, at most this long.
const GRANT_WINDOW_MS: i64 = 60_000;
/// Most reports kept per node (the newest).
const MAX_REPORTS_PER_NODE: usize = 64;
/// A viewer's report of a node counts only if it was granted a session on that node this
/// recently: only a viewer sent there can have failed there.
const REPORTER_GRANT_WINDOW_MS: i64 = 600_000;
/// Most recent grantees remembered per node (the newest).
const MAX_GRANTEES_PER_NODE: usize = 4_096;
/// Most nodes one play request may exclude.
const MAX_EXCLUDED: usize = 16;

/// What routing remembers between play requests: grants not yet reflected in a node's
/// heartbeat, and viewers' reports of failing nodes.
#[derive(Debug, Default)]
pub(crate) struct RouteMemory {
    nodes: Mutex<HashMap<String, NodeMemory>>,
}

#[derive(Debug, Default)]
struct NodeMemory {
    /// When grants to the node were issued, oldest first.
    grants: VecDeque<i64>,
    /// Viewers (keys, hex) granted a session on the node and when, oldest first.
    grantees: VecDeque<(i64, String)>,
    /// Viewers (keys, hex) that reported the node failing, and when.
    reports: Vec<(String, i64)>,
    /// The node's heartbeat timestamp when it was found down: down until a later heartbeat.
    down_at_heartbeat: Option<i64>,
}

impl NodeMemory {
    /// Forgets the grantees whose grant is too old for their reports to count.
    fn forget_grantees(&mut self, now: i64) {
        while self
            .grantees
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > REPORTER_GRANT_WINDOW_MS)
        {
            self.grantees.pop_front();
        }
    }
}

/// How routing sees one live node right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NodeView {
    /// Treated as down until its next heartbeat.
    down: bool,
    /// Grants issued to it since its last heartbeat (within [`GRANT_WINDOW_MS`]).
    recent_grants: u64,
}

impl RouteMemory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, NodeMemory>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `viewer` failed to play from `node` at `now`, if this coordinator recently
    /// granted it a session there.
    fn report_failure(&self, node: &str, viewer: &str, now: i64) {
        let mut nodes = self.lock();
        let Some(memory) = nodes.get_mut(node) else {
            return;
        };
        memory.forget_grantees(now);
        if !memory.grantees.iter().any(|(_, who)| who == viewer) {
            return;
        }
        memory.reports.retain(|(who, _)| who != viewer);
        memory.reports.push((viewer.to_owned(), now));
        if memory.reports.len() > MAX_REPORTS_PER_NODE {
            memory.reports.remove(0);
        }
    }

    /// Records a grant to `viewer` on `node` issued at `now`.
    fn granted(&self, node: &str, viewer: &str, now: i64) {
        let mut nodes = self.lock();
        let memory = nodes.entry(node.to_owned()).or_default();
        memory.grants.push_back(now);
        memory.forget_grantees(now);
        memory.grantees.push_back((now, viewer.to_owned()));
        if memory.grantees.len() > MAX_GRANTEES_PER_NODE {
            memory.grantees.pop_front();
        }
    }

    /// How `node` stands at `now`; forgets what no longer counts.
    fn view(&self, node: &NodeRecord, now: i64) -> NodeView {
        let mut nodes = self.lock();
        let Some(memory) = nodes.get_mut(&node.id) else {
            return NodeView::default();
        };
        let heartbeat = node.last_heartbeat_ms.unwrap_or(i64::MIN);
        if memory.down_at_heartbeat.is_some_and(|at| heartbeat > at) {
            // A heartbeat since: it is back, and earlier reports are answered.
            memory.down_at_heartbeat = None;
        }
        // Only reports after its last heartbeat and within the window speak against it.
        memory
            .reports
            .retain(|(_, at)| *at > heartbeat && now.saturating_sub(*at) <= REPORT_WINDOW_MS);
        if memory.down_at_heartbeat.is_none()
            && memory.reports.len() >= DEAD_REPORTS
            && now.saturating_sub(heartbeat) > FRESH_HEARTBEAT_MS
        {
            memory.down_at_heartbeat = Some(heartbeat);
        }
        let since = heartbeat.max(now.saturating_sub(GRANT_WINDOW_MS));
        while memory.grants.front().is_some_and(|at| *at <= since) {
            memory.grants.pop_front();
        }
        NodeView {
            down: memory.down_at_heartbeat.is_some(),
            recent_grants: memory.grants.len() as u64,
        }
    }
}

/// The query of `GET /streams/{id}/play`: `viewer=<hex key>` and any number of
/// `exclude=<node id>` (repeated, or comma-separated).
#[derive(Debug)]
struct PlayParams {
    viewer: ViewerKey,
    exclude: Vec<NodeId>,
}

impl PlayParams {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut viewer = None;
        let mut exclude = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                "viewer" if viewer.is_some() => {
                    return Err(ApiError::InvalidQuery("viewer given twice".into()));
                }
                "viewer" => {
                    let key = value
                        .parse::<ViewerKey>()
                        .map_err(|e| ApiError::InvalidQuery(format!("viewer: {e}")))?;
                    viewer = Some(key);
                }
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
        Ok(PlayParams { viewer, exclude })
    }
}

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

/// Picks a node with `streamr_core::Router` (weighing spare capacity, leaving out the nodes the
/// viewer excludes and those found down) and returns playback URLs and a signed grant.
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
    let excluded: Vec<String> = query.exclude.iter().map(NodeId::to_string).collect();
    let viewer = query.viewer.to_string();
    for node in live.iter().filter(|n| excluded.contains(&n.id)) {
        state.routes.report_failure(&node.id, &viewer, now);
    }
    let views: HashMap<&str, NodeView> = live
        .iter()
        .map(|n| (n.id.as_str(), state.routes.view(n, now)))
        .collect();
    let up: Vec<&NodeRecord> = live
        .iter()
        .filter(|n| !excluded.contains(&n.id))
        .filter(|n| !views.get(n.id.as_str()).is_some_and(|v| v.down))
        .collect();
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
    let router = &state.config.router;
    let loaded: Vec<(&NodeRecord, LoadedCandidate)> = up
        .iter()
        .filter_map(|n| {
            let node_id: NodeId = n.id.parse().ok()?;
            let quality_ppm = probes.get(&n.id).map_or(0, |results| {
                ProbeSummary::from_results(&state.config.probe_policy, results).availability_ppm()
            });
            let recent_grants = views.get(n.id.as_str()).map_or(0, |v| v.recent_grants);
            let candidate = LoadedCandidate {
                candidate: RouteCandidate {
                    node_id,
                    quality_ppm,
                },
                capacity_viewers: router
                    .viewer_capacity(u64::try_from(n.capacity_kbps).unwrap_or(0)),
                load_viewers: u64::try_from(n.viewers)
                    .unwrap_or(0)
                    .saturating_add(recent_grants),
            };
            Some((*n, candidate))
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
    let mut session_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_bytes);
    let session_id = SessionId::from_bytes(session_bytes);
    let seed = Router::session_seed(&epoch_seed(&state, epoch), &session_id);
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
            viewer_subnet: if state.config.local_trial {
                super::nodes::local_trial_subnet("viewer", &viewer.to_string())
            } else {
                peer.map_or_else(String::new, |ip| {
                    super::nodes::subnet_of(&format!("http://{ip}"), None)
                })
            },
        })
        .await?;
    state.routes.granted(&node.id, &viewer, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, last_heartbeat_ms: i64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            payout_address: String::new(),
            operator: String::new(),
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
        }
    }

    #[test]
    fn several_reports_take_a_silent_node_down_until_its_next_heartbeat() {
        let memory = RouteMemory::default();
        let silent = node("a", 1_000);
        for viewer in ["v1", "v2", "v3", "v4"] {
            memory.granted("a", viewer, 2_000);
        }
        // Viewers never sent there cannot report it.
        for viewer in ["x1", "x2", "x3"] {
            memory.report_failure("a", viewer, 10_000);
        }
        assert!(
            !memory.view(&silent, 10_000).down,
            "reporters without grants"
        );
        for viewer in ["v1", "v2", "v2"] {
            memory.report_failure("a", viewer, 10_000);
        }
        assert!(!memory.view(&silent, 10_000).down, "two distinct viewers");
        memory.report_failure("a", "v3", 10_000);
        assert!(memory.view(&silent, 10_000).down);
        // Reports expiring do not bring it back; only a heartbeat does.
        assert!(memory.view(&silent, 100_000).down);
        assert!(!memory.view(&node("a", 100_500), 101_000).down);
    }

    #[test]
    fn a_node_heard_from_recently_or_after_the_reports_stays_up() {
        let memory = RouteMemory::default();
        for viewer in ["v1", "v2", "v3"] {
            memory.granted("a", viewer, 2_000);
        }
        for viewer in ["v1", "v2", "v3"] {
            memory.report_failure("a", viewer, 10_000);
        }
        assert!(
            !memory.view(&node("a", 8_000), 10_000).down,
            "fresh heartbeat"
        );
        // A heartbeat after the reports answers them, however old it later gets.
        assert!(!memory.view(&node("a", 10_500), 20_000).down);
        // Reports older than the window no longer count.
        let memory = RouteMemory::default();
        for viewer in ["v1", "v2", "v3"] {
            memory.granted("a", viewer, 2_000);
        }
        for viewer in ["v1", "v2", "v3"] {
            memory.report_failure("a", viewer, 10_000);
        }
        assert!(
            !memory
                .view(&node("a", 0), 10_000 + REPORT_WINDOW_MS + 1)
                .down
        );
    }

    #[test]
    fn grants_count_as_load_until_the_next_heartbeat() {
        let memory = RouteMemory::default();
        for at in [5_000, 6_000, 7_000] {
            memory.granted("a", "v", at);
        }
        assert_eq!(memory.view(&node("a", 4_000), 8_000).recent_grants, 3);
        assert_eq!(memory.view(&node("a", 6_500), 8_000).recent_grants, 1);
        assert_eq!(
            memory
                .view(&node("a", 0), 7_000 + GRANT_WINDOW_MS)
                .recent_grants,
            0
        );
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
