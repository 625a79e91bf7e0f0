//! The relay tree (`POST /streams/{id}/upstream`): the coordinator tells each relaying node
//! where to pull a stream from, so the origin sends at most k copies however many friends
//! relay it.
//!
//! The rules (layout by measured fan-out, re-parenting, failure confirmation, where a
//! heartbeat may place a relay) are [`streamr_core::tree`]'s, sans-IO, and the simulator runs
//! them too; this handler gathers what they read and stores what they decide. The origin feeds
//! at most [`crate::CoordConfig::relay_fanout`] (k) relays; a relay's room is k capped by the
//! viewers its measured capacity allows (see [`super::viewers`]), none when its probes pass
//! too rarely. Only parents are stored (`relay_assignments`): a relay that moves takes its
//! subtree along. A relay whose parent dies asks at once, naming it failed (reports of a node
//! in the reporter's chain are stored, `relay_reports`, for the liveness). Before deciding,
//! the coordinator checks every reported relay of the asker's chain itself
//! (`GET {http_url}/healthz?stream=…` within [`crate::CoordConfig::relay_probe_timeout`]: does
//! a live session feed it the stream?); a relay seen serving is never evicted by
//! its children's reports, one seen not serving loses its subtree at once. Fan-outs are
//! measured at most every two seconds per process (liveness is checked at every ask). Parents
//! are chosen under a per-stream lock in the database, so replicas sharing it never overfill a
//! parent.
//!
//! The answer lists the parent and then its ancestors, each with a session grant naming the
//! asking node as the viewer: a relay is a viewer of its parent, admitted by the same grant
//! check, and when its parent dies it falls back up the chain at once while it asks again. The
//! origin is named only to its own children (at most k), so no deeper relay falls back to it;
//! the origin itself admits at most k relays per stream (the node's origin gate), so its
//! egress stays at k copies in every state, re-parenting included.
//!
//! A parent's own answer that it serves is not taken for what its child got: the receipts the
//! child signs for what its parent delivered are. A relay a child reports whose receipts show
//! nothing delivered within the relay liveness takes no new child while the report stands
//! ([`streamr_core::tree::unfed_parents`]); the child leaves it, and it earns nothing for it.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::Json;
use streamr_core::tree::{
    decide, Ask, Assignment, Evidence, Home, Layout, ParentCheck, RealUpstream, Report, Tree,
    MAX_DEPTH,
};

/// Most `(child, parent)` report edges whose receipts one decision looks up; beyond them an
/// edge counts as delivering (the benefit of the doubt: no relay is closed unread).
const MAX_EDGE_LOOKUPS: usize = 32;
use streamr_core::{
    NodeId, ProbeResult, ProbeSummary, RouteCandidate, Signed, SignedGrant, ViewerKey,
};

use super::streams::load_stream;
use super::Shared;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::storage::{
    NodeRecord, RelayAssignmentRecord, RelayReportRecord, RelayReports, SessionRecord,
};
use crate::wire::{UpstreamEntry, UpstreamRequest, UpstreamResponse};

/// How long the relays' fan-outs (from the coordinator's measurements) are reused: asks come
/// every few seconds from every relay, and measuring scans the epoch's receipts and probes.
const FANOUT_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The stored tree as the rules of [`streamr_core::tree`] read it.
fn assignments_of(records: &[RelayAssignmentRecord]) -> Vec<Assignment> {
    records
        .iter()
        .map(|a| Assignment {
            node_id: a.node_id.clone(),
            parent_id: a.parent_id.clone(),
            assigned_at_ms: a.assigned_at_ms,
        })
        .collect()
}

/// The stored reports as the rules of [`streamr_core::tree`] read them.
fn reports_of(records: &[RelayReportRecord]) -> Vec<Report> {
    records
        .iter()
        .map(|r| Report {
            node_id: r.node_id.clone(),
            reporter_id: r.reporter_id.clone(),
            reported_at_ms: r.reported_at_ms,
        })
        .collect()
}

/// Where `node`'s last heartbeat says it pulls `stream` from, if it said.
pub(crate) fn reported_upstream(node: &NodeRecord, stream: &str) -> Option<RealUpstream> {
    let pairs: Vec<(String, String)> = serde_json::from_str(&node.upstreams_json).ok()?;
    let (_, upstream) = pairs.into_iter().find(|(s, _)| s == stream)?;
    Some(RealUpstream {
        upstream,
        heartbeat_ms: node.last_heartbeat_ms?,
    })
}

/// `rtmp://host:port/app` → `rtmp://host:port`.
fn rtmp_base(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// How many children each live relay may feed: the fan-out, capped by the viewers its
/// measured capacity allows; none when its probes this epoch pass too rarely.
async fn members(
    state: &Shared,
    relays: &[&NodeRecord],
    epoch: i64,
    now: i64,
) -> Result<HashMap<String, usize>, ApiError> {
    let config = &state.config;
    let measured = super::viewers::measurements(state, relays, epoch, now).await?;
    let mut probes: HashMap<String, Vec<ProbeResult>> = HashMap::new();
    for probe in state.storage.probes_for_epoch(epoch).await? {
        if let Some(result) = crate::workers::probe_result(&probe) {
            probes
                .entry(probe.node_id.clone())
                .or_default()
                .push(result);
        }
    }
    let mut members = HashMap::new();
    for relay in relays {
        let Ok(node_id) = relay.id.parse::<NodeId>() else {
            continue;
        };
        let poor = probes.get(&relay.id).is_some_and(|results| {
            ProbeSummary::from_results(&config.probe_policy, results).availability_ppm()
                < config.relay_min_availability_ppm
        });
        let capacity = measured.get(&relay.id).map_or(0, |(m, quality_ppm)| {
            let candidate = RouteCandidate {
                node_id,
                quality_ppm: *quality_ppm,
            };
            config
                .router
                .measured_candidate(candidate, m)
                .capacity_viewers
        });
        let fanout = if poor {
            0
        } else {
            usize::try_from(capacity)
                .unwrap_or(usize::MAX)
                .min(config.relay_fanout)
        };
        members.insert(relay.id.clone(), fanout);
    }
    Ok(members)
}

/// `POST /streams/{id}/upstream`: a relaying node's signed request for its place in the
/// stream's relay tree. Answers its parent and the parent's ancestors up to the origin, each
/// with a grant that admits the node there.
#[utoipa::path(post, path = "/streams/{id}/upstream", tag = "streams",
    params(("id" = String, Path, description = "The stream")),
    request_body = super::openapi::SignedUpstreamRequestSchema,
    responses(
        (status = 200, description = "The relay's upstreams", body = super::openapi::UpstreamResponseSchema),
        (status = 400, description = "invalid_field", body = super::openapi::ErrorSchema),
        (status = 401, description = "bad_signature or clock_skew", body = super::openapi::ErrorSchema),
        (status = 404, description = "not_found", body = super::openapi::ErrorSchema),
        (status = 409, description = "conflict: a replayed request, an ended stream", body = super::openapi::ErrorSchema),
    ))]
pub(crate) async fn upstream(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiJson(signed): ApiJson<Signed<UpstreamRequest>>,
) -> Result<Json<UpstreamResponse>, ApiError> {
    let what = "upstream request";
    let key = signed
        .body
        .node_id
        .verifying_key()
        .map_err(|_| ApiError::BadSignature { what })?;
    let request = signed
        .verify_with(&key)
        .map_err(|_| ApiError::BadSignature { what })?;
    super::nodes::check_skew(&state, request.timestamp_ms)?;
    if request.stream_id.as_str() != id {
        return Err(ApiError::InvalidField {
            field: "stream_id",
            reason: "must be the stream of the path".into(),
        });
    }
    let node = request.node_id.to_string();
    let registered = state.storage.get_node(&node).await?;
    if !registered.is_some_and(|n| n.active) {
        return Err(ApiError::NotFound {
            what: "node",
            id: node,
        });
    }
    // The signed time is within the clock skew, so a captured request could be replayed
    // within that window: the database keeps each relay's newest time per stream, shared by
    // every replica, and refuses any time not after it.
    let timestamp_ms = i64::try_from(request.timestamp_ms).map_err(|_| ApiError::InvalidField {
        field: "timestamp_ms",
        reason: "out of range".into(),
    })?;
    if !state
        .storage
        .accept_upstream_request(&node, &id, timestamp_ms)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "upstream request of node {node} for stream {id} replayed: its time \
             {timestamp_ms} is not after the last accepted one"
        )));
    }
    let stream = load_stream(&state, &id).await?;
    if stream.status != "live" {
        return Err(ApiError::Conflict(format!("stream {id} has ended")));
    }
    let origin = stream
        .origin_node
        .clone()
        .ok_or_else(|| ApiError::Conflict(format!("stream {id} has no origin node yet")))?;
    if origin == node {
        return Err(ApiError::Conflict(
            "the origin does not pull its stream".into(),
        ));
    }
    let now = now_ms();
    let liveness = i64::try_from(state.config.relay_liveness.as_millis()).unwrap_or(i64::MAX);
    let fanouts = measured_fanouts(&state, now).await?;
    let failed: HashSet<String> = request.failed.iter().map(NodeId::to_string).collect();
    if failed.is_empty() {
        let place = Place {
            stream: &id,
            node: &node,
            origin: &origin,
            now,
            liveness,
        };
        if let Some(chain) = kept_chain(&state, &place, &fanouts).await? {
            let depth = chain.len();
            let chain: Vec<NodeRecord> = chain
                .into_iter()
                .filter(|n| depth == 1 || n.id != origin)
                .collect();
            return answer(&state, &stream.id, &request.node_id, &chain, depth, now).await;
        }
    }
    let nodes = state.storage.list_nodes().await?;
    let relays: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.active && n.id != origin)
        .filter(|n| {
            // The asking node is alive: it asks.
            n.id == node
                || n.last_heartbeat_ms
                    .is_some_and(|t| now.saturating_sub(t) <= liveness)
        })
        .collect();
    // A relay registered since the last measurement starts with room for one child.
    let members: HashMap<String, usize> = relays
        .iter()
        .map(|n| (n.id.clone(), fanouts.get(&n.id).copied().unwrap_or(1)))
        .collect();
    let fanout = state.config.relay_fanout.max(1);
    // Relays whose own last heartbeat says they lack the stream: one report of them suffices.
    let lacking: HashMap<String, i64> = relays
        .iter()
        .filter(|n| !carries(n, &id))
        .filter_map(|n| Some((n.id.clone(), n.last_heartbeat_ms?)))
        .collect();
    let homes: HashMap<String, Home> = nodes
        .iter()
        .map(|n| {
            let home = Home {
                subnet: n.subnet.clone(),
                // One operator however its name is spelt: its nodes never corroborate each
                // other.
                operator: streamr_core::canonical_operator_name(&n.operator),
            };
            (n.id.clone(), home)
        })
        .collect();
    // Only a report of a node in the reporter's own chain, per the coordinator's tree, is
    // stored (it can corroborate); the reporter avoids whatever it reports either way.
    let self_check = state.config.relay_probe_timeout.is_some();
    let max_rows = i64::try_from(MAX_DEPTH).unwrap_or(i64::MAX);
    let own_chain: HashSet<String> = if failed.is_empty() && !self_check {
        HashSet::new()
    } else {
        state
            .storage
            .relay_chain(&id, &node, max_rows)
            .await?
            .into_iter()
            .map(|row| row.parent_id)
            .collect()
    };
    let reported: Vec<String> = failed
        .iter()
        .filter(|f| own_chain.contains(*f))
        .cloned()
        .collect();
    // The coordinator checks for itself every relay of the asker's chain that is reported,
    // by this ask or lately by others: with checks on, children's reports alone confirm
    // nothing it did not check (see `confirmed_failures`).
    let lately = state
        .storage
        .relay_reports_since(&id, now.saturating_sub(liveness))
        .await?;
    let to_check: Vec<String> = if self_check {
        let mut to_check = reported.clone();
        let mut others: Vec<String> = lately
            .iter()
            .map(|r| r.node_id.clone())
            .filter(|n| own_chain.contains(n) && !to_check.contains(n))
            .collect();
        others.sort();
        others.dedup();
        to_check.extend(others);
        to_check.retain(|n| *n != origin);
        to_check
    } else {
        Vec::new()
    };
    let checked = check_reported(&state, &nodes, &id, &to_check).await;
    let edges: Vec<(String, String)> = reported
        .iter()
        .map(|f| (node.clone(), f.clone()))
        .chain(lately.into_iter().map(|r| (r.reporter_id, r.node_id)))
        // The origin is never closed to new children (see `decide`): nothing to read.
        .filter(|(_, parent)| *parent != origin)
        .collect();
    let delivered = delivered_edges(&state, &id, edges, now, liveness).await?;
    let reports = RelayReports {
        reporter_id: node.clone(),
        failed: reported,
        since_ms: now.saturating_sub(liveness),
    };
    let real = real_upstreams(&state, &id, &relays, now).await?;
    let grace_ms = liveness / 3;
    // Decided in a task of its own: a relay that gave up waiting (its ask has a deadline of
    // 1-2 s) still finds the decision stored when it asks again, instead of a rolled-back one.
    let decision = {
        let (storage, id, origin, members, node, failed) = (
            state.storage.clone(),
            id.clone(),
            origin.clone(),
            members.clone(),
            node.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            storage
                .assign_relay_parents(&id, now, &reports, &|assignments, reports| {
                    let ask = Ask {
                        node: &node,
                        failed: &failed,
                        layout: Layout {
                            origin: &origin,
                            origin_fanout: fanout,
                            members: &members,
                            homes: &homes,
                        },
                        evidence: Evidence {
                            lacking: &lacking,
                            checked: &checked,
                            self_check,
                            homes: &homes,
                        },
                        real: &real,
                        grace_ms,
                        now_ms: now,
                        delivered: &delivered,
                    };
                    decide(&assignments_of(assignments), &reports_of(reports), &ask)
                })
                .await
        })
    };
    let assignments = decision.await.map_err(|error| {
        ApiError::Conflict(format!("the relay tree decision did not complete: {error}"))
    })??;
    let assignments = assignments_of(&assignments);
    let tree = Tree::new(&origin, fanout, &members, &assignments);
    // The failed ancestors are still in the chain when they are the only way up: the relay
    // learns its new parent first. The origin is named only to the relays it feeds (its
    // children, at most k): a deeper relay whose ancestors all fail asks again rather than
    // pull from the origin, so the origin never sends more than k copies. A relay left
    // without a place (none was free) is answered no upstream and asks again.
    let chain = tree.chain(&node, &HashSet::new()).unwrap_or_default();
    let depth = chain.len();
    let chain: Vec<NodeRecord> = chain
        .iter()
        .filter(|upstream| depth == 1 || **upstream != origin)
        .filter_map(|upstream| nodes.iter().find(|n| n.id == *upstream).cloned())
        .collect();
    answer(&state, &stream.id, &request.node_id, &chain, depth, now).await
}

/// Of `edges` (`(child, parent)`, as reports name them), those whose child's own signed
/// receipts show the parent delivered it the stream within the last `window_ms`: the newest
/// receipt on the child's newest grant at the parent (issued within a grant's lifetime) was
/// signed since. Two indexed reads per distinct edge, at most [`MAX_EDGE_LOOKUPS`] edges
/// (the rest count as delivering).
async fn delivered_edges(
    state: &Shared,
    stream: &str,
    mut edges: Vec<(String, String)>,
    now: i64,
    window_ms: i64,
) -> Result<HashSet<(String, String)>, ApiError> {
    edges.sort();
    edges.dedup();
    let ttl = i64::try_from(state.config.grant_ttl.as_millis()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window_ms);
    let mut delivered = HashSet::new();
    for (index, (child, parent)) in edges.into_iter().enumerate() {
        let fed = if index >= MAX_EDGE_LOOKUPS {
            true
        } else {
            match state
                .storage
                .latest_session_of(&child, &parent, stream, now.saturating_sub(ttl))
                .await?
            {
                Some(session) => state
                    .storage
                    .latest_receipt(&session.session_id)
                    .await?
                    .is_some_and(|receipt| receipt.t_ms >= since),
                None => false,
            }
        };
        if fed {
            delivered.insert((child, parent));
        }
    }
    Ok(delivered)
}

/// The coordinator's own check of each of `reported` (at most four; none when
/// [`crate::CoordConfig::relay_probe_timeout`] is unset), all at once:
/// `GET {http_url}/healthz?stream={stream}&wait_ms=…` within the timeout. The node answers
/// whether a live session (its publisher, or its pull from an upstream) feeds the stream,
/// waiting up to `wait_ms` for one (see the node's `/healthz`): `serving: true` is [`ParentCheck::Serving`]; `serving: false`, an error status,
/// a refused connection or no answer in time is [`ParentCheck::NotServing`]; a success
/// without `serving` (a node too old to know the question) is [`ParentCheck::Unknown`].
/// Colluding reporters cannot fake this: the coordinator asks the node. A dead node refuses
/// the connection at once, so re-parenting after a real death is not slowed.
async fn check_reported(
    state: &Shared,
    nodes: &[NodeRecord],
    stream: &str,
    reported: &[String],
) -> HashMap<String, ParentCheck> {
    let mut checked = HashMap::new();
    let Some(timeout) = state.config.relay_probe_timeout else {
        return checked;
    };
    // One client for every check: building one costs far more than a refused connect.
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let Some(client) = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()
    }) else {
        return checked;
    };
    // The node may wait for a session for three quarters of the deadline, leaving the rest
    // for the round trip.
    let wait_ms = (timeout.as_millis() * 3 / 4).max(1);
    let mut checks = tokio::task::JoinSet::new();
    // Usually one node (the reporter's parent); a few at most.
    for id in reported.iter().take(4) {
        let Some(record) = nodes.iter().find(|n| &n.id == id) else {
            continue;
        };
        let url = format!("{}/healthz", record.http_url.trim_end_matches('/'));
        let request = client
            .get(&url)
            .query(&[
                ("stream", stream.to_owned()),
                ("wait_ms", wait_ms.to_string()),
            ])
            .timeout(timeout);
        let id = id.clone();
        checks.spawn(async move {
            let check = match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    let body = answer.bytes().await.ok();
                    let body =
                        body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                    match body {
                        Some(body) => {
                            match body.get("serving").and_then(serde_json::Value::as_bool) {
                                Some(true) => ParentCheck::Serving,
                                Some(false) => ParentCheck::NotServing,
                                None => ParentCheck::Unknown,
                            }
                        }
                        // Up, but not the node's JSON: it cannot say.
                        None => ParentCheck::Unknown,
                    }
                }
                _ => ParentCheck::NotServing,
            };
            (id, check)
        });
    }
    while let Some(done) = checks.join_next().await {
        if let Ok((id, check)) = done {
            checked.insert(id, check);
        }
    }
    checked
}

/// Where the stream's `relays` really pull it from, per their last heartbeats, for those
/// whose stored parent differs: only upstreams the coordinator granted them for the stream
/// within a grant's lifetime (their chain, now or lately), so a heartbeat cannot name any
/// other node. Costs one tree read, and one grant lookup per relay not where it is stored.
async fn real_upstreams(
    state: &Shared,
    stream: &str,
    relays: &[&NodeRecord],
    now: i64,
) -> Result<HashMap<String, RealUpstream>, ApiError> {
    let reported: Vec<(&NodeRecord, RealUpstream)> = relays
        .iter()
        .filter_map(|n| Some((*n, reported_upstream(n, stream)?)))
        .collect();
    if reported.is_empty() {
        return Ok(HashMap::new());
    }
    let stored: HashMap<String, String> = state
        .storage
        .relay_tree(stream)
        .await?
        .into_iter()
        .map(|a| (a.node_id, a.parent_id))
        .collect();
    let ttl = i64::try_from(state.config.grant_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut real = HashMap::new();
    for (relay, upstream) in reported {
        if stored
            .get(&relay.id)
            .is_none_or(|parent| *parent == upstream.upstream)
        {
            continue;
        }
        let granted = state
            .storage
            .latest_session_of(
                &relay.id,
                &upstream.upstream,
                stream,
                now.saturating_sub(ttl),
            )
            .await?
            .is_some();
        if granted {
            real.insert(relay.id.clone(), upstream);
        }
    }
    Ok(real)
}

/// Where an asking relay is: what [`kept_chain`] looks at.
struct Place<'p> {
    stream: &'p str,
    node: &'p str,
    origin: &'p str,
    now: i64,
    liveness: i64,
}

/// The asking relay's upstreams (parent first, origin last) when it keeps its place, read
/// with targeted queries: its chain (one indexed row per tier), its parent's children (at
/// most the fan-out, unless overfilled), the stream's recent failure reports and the chain's
/// node records. An ask that keeps its place, the steady state, so costs O(depth + fan-out)
/// rows whatever the tree's size; `None` (decide under the lock, reading the whole tree:
/// O(relays × depth)) when anything may move it: a broken or dead chain, a report about its
/// chain or by it, or no slot among its parent's oldest live children.
async fn kept_chain(
    state: &Shared,
    place: &Place<'_>,
    fanouts: &HashMap<String, usize>,
) -> Result<Option<Vec<NodeRecord>>, ApiError> {
    let storage = &state.storage;
    let max_rows = i64::try_from(MAX_DEPTH).unwrap_or(i64::MAX);
    let rows = storage
        .relay_chain(place.stream, place.node, max_rows)
        .await?;
    let mut expected = place.node;
    let mut ancestors: Vec<&str> = Vec::new();
    for row in &rows {
        if row.node_id != expected || ancestors.contains(&row.parent_id.as_str()) {
            return Ok(None);
        }
        ancestors.push(&row.parent_id);
        if row.parent_id == place.origin {
            break;
        }
        expected = &row.parent_id;
    }
    let (Some(&parent), Some(&root)) = (ancestors.first(), ancestors.last()) else {
        return Ok(None);
    };
    if root != place.origin {
        return Ok(None);
    }
    // Its own heartbeat names another upstream, well after it was placed: decide.
    if let Some(record) = storage.get_node(place.node).await? {
        let placed_at = rows.first().map_or(i64::MAX, |row| row.assigned_at_ms);
        if reported_upstream(&record, place.stream).is_some_and(|real| {
            real.upstream != parent
                && real.heartbeat_ms > placed_at.saturating_add(place.liveness / 3)
        }) {
            return Ok(None);
        }
    }
    let reports = storage
        .relay_reports_since(place.stream, place.now.saturating_sub(place.liveness))
        .await?;
    if reports
        .iter()
        .any(|r| r.reporter_id == place.node || ancestors.contains(&r.node_id.as_str()))
    {
        return Ok(None);
    }
    let live = |record: &Option<NodeRecord>| {
        record.as_ref().is_some_and(|n| {
            n.active
                && n.last_heartbeat_ms
                    .is_some_and(|t| place.now.saturating_sub(t) <= place.liveness)
        })
    };
    let mut chain = Vec::with_capacity(ancestors.len());
    for ancestor in &ancestors {
        let record = storage.get_node(ancestor).await?;
        if *ancestor != place.origin && !live(&record) {
            return Ok(None);
        }
        match record {
            Some(record) => chain.push(record),
            None => return Ok(None),
        }
    }
    // Its slot: among the parent's oldest live children, up to the parent's fan-out.
    let room = if parent == place.origin {
        state.config.relay_fanout.max(1)
    } else {
        fanouts.get(parent).copied().unwrap_or(1)
    };
    let mut ahead = 0;
    for child in storage.relay_children(place.stream, parent).await? {
        if child.node_id == place.node {
            return Ok((ahead < room).then_some(chain));
        }
        if live(&storage.get_node(&child.node_id).await?) {
            ahead += 1;
            if ahead >= room {
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// The relays' fan-outs as measured (see [`members`]), shared by the asks of
/// [`FANOUT_REUSE`]: measuring reads every active node and the epoch's receipts and probes.
async fn measured_fanouts(state: &Shared, now: i64) -> Result<crate::state::Fanouts, ApiError> {
    // One measurement at a time; concurrent asks wait for it and share it.
    let mut cache = state.relay_fanouts.measured.lock().await;
    match cache.as_ref() {
        Some((at, fanouts)) if at.elapsed() < FANOUT_REUSE => Ok(fanouts.clone()),
        _ => {
            let nodes = state.storage.list_nodes().await?;
            let active: Vec<&NodeRecord> = nodes.iter().filter(|n| n.active).collect();
            let epoch = state.config.epoch_of(now);
            let fanouts = std::sync::Arc::new(members(state, &active, epoch, now).await?);
            *cache = Some((std::time::Instant::now(), fanouts.clone()));
            Ok(fanouts)
        }
    }
}

/// The answer naming `chain` (parent first), each with a grant for `relay`, `depth` tiers
/// below the origin.
async fn answer(
    state: &Shared,
    stream: &str,
    relay: &NodeId,
    chain: &[NodeRecord],
    depth: usize,
    now: i64,
) -> Result<Json<UpstreamResponse>, ApiError> {
    let mut upstreams = Vec::with_capacity(chain.len());
    for upstream in chain {
        upstreams.push(grant_upstream(state, stream, relay, upstream, now).await?);
    }
    Ok(Json(UpstreamResponse {
        depth: u32::try_from(depth).unwrap_or(u32::MAX),
        upstreams,
    }))
}

/// Whether `node`'s last heartbeat lists `stream` (an unreadable list counts as listing it:
/// no evidence against the node).
fn carries(node: &NodeRecord, stream: &str) -> bool {
    serde_json::from_str::<Vec<String>>(&node.streams_json)
        .map_or(true, |streams| streams.iter().any(|s| s == stream))
}

/// A grant for `relay` to pull `stream` from `upstream`, recorded like a viewer's.
async fn grant_upstream(
    state: &Shared,
    stream: &str,
    relay: &NodeId,
    upstream: &NodeRecord,
    now: i64,
) -> Result<UpstreamEntry, ApiError> {
    let node_id: NodeId = upstream
        .id
        .parse()
        .map_err(|_| ApiError::Conflict(format!("node {} has no valid id", upstream.id)))?;
    // A grant issued less than half its lifetime ago is handed out again: relays ask every
    // few seconds, and a new session each time would only grow the grant log.
    let ttl = i64::try_from(state.config.grant_ttl.as_millis()).unwrap_or(i64::MAX);
    let reusable = state
        .storage
        .latest_session_of(
            &relay.to_string(),
            &upstream.id,
            stream,
            now.saturating_sub(ttl / 2),
        )
        .await?
        .and_then(|session| serde_json::from_str::<SignedGrant>(&session.grant_json).ok());
    if let Some(signed) = reusable {
        return Ok(upstream_entry(node_id, upstream, signed));
    }
    let (session_id, signed, grant_json) = super::viewers::sign_grant(
        state,
        ViewerKey::from_bytes(*relay.as_bytes()),
        node_id,
        stream,
        now,
    )?;
    let relay_subnet = super::nodes::local_trial_subnet("relay", &relay.to_string());
    state
        .storage
        .create_session(&SessionRecord {
            session_id: session_id.to_string(),
            stream_id: stream.to_owned(),
            node_id: upstream.id.clone(),
            viewer: relay.to_string(),
            max_bytes: i64::try_from(signed.body.max_bytes).unwrap_or(i64::MAX),
            expiry_ms: i64::try_from(signed.body.expiry_ms).unwrap_or(i64::MAX),
            issued_at_ms: now,
            grant_json,
            viewer_subnet: relay_subnet.clone(),
            viewer_prefix64: relay_subnet,
            probe: false,
        })
        .await?;
    Ok(upstream_entry(node_id, upstream, signed))
}

fn upstream_entry(node_id: NodeId, upstream: &NodeRecord, signed: SignedGrant) -> UpstreamEntry {
    UpstreamEntry {
        node_id,
        rtmp_base: rtmp_base(&upstream.rtmp_url),
        query: format!(
            "{}={}",
            crate::grant_token::GRANT_PARAM,
            crate::grant_token::encode(&signed)
        ),
        grant: signed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_urls_lose_their_app() {
        assert_eq!(
            rtmp_base("rtmp://127.0.0.1:1935/live"),
            "rtmp://127.0.0.1:1935"
        );
        assert_eq!(rtmp_base("rtmps://h"), "rtmps://h");
    }
}
