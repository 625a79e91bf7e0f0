//! The relay tree (`POST /streams/{id}/upstream`): the coordinator tells each relaying node
//! where to pull a stream from, so the origin sends at most k copies however many friends
//! relay it.
//!
//! The origin feeds at most [`crate::CoordConfig::relay_fanout`] (k) relays; every other relay
//! hangs below the shallowest relay with room, so the depth grows as log_k of the relays. A
//! relay's room is k capped by the viewers its measured capacity allows (see
//! [`super::viewers`]); a relay whose probes pass too rarely has no room at all and stays a
//! leaf. Only parents are stored (`relay_assignments`): a relay that moves takes its subtree
//! along. A relay keeps its parent while the parent is live (heartbeat within
//! [`crate::CoordConfig::relay_liveness`]), not reported failed by the asking relay, and still
//! has room for it; otherwise it is re-parented when it next asks. A relay whose parent dies
//! asks at once, naming it failed (reports of a node in the reporter's chain are stored,
//! `relay_reports`, for the liveness). One report moves only its reporter, and only to a
//! parent with room (the reported relay keeps its slot): a lying child can neither churn its
//! siblings nor overfill the grandparent. The reported relay's children are all re-parented
//! in one decision (see [`Tree::rehome`]) once its failure is corroborated by evidence the
//! coordinator checks itself (its own heartbeat lacks the stream, the coordinator's probe of
//! it fails, or two relays below it of distinct /24s and operators report it: see
//! [`confirmed_failures`]) or it missed its heartbeats, when any relay below it asks. Relays'
//! heartbeats name where they really pull from, and the tree records them there (see
//! [`real_moves`]). Fan-outs are measured at
//! most every two seconds per process (liveness is checked at every ask). Parents are chosen under a
//! per-stream lock in the database, so replicas sharing it never overfill a parent.
//!
//! The answer lists the parent and then its ancestors up to the origin, each with a session
//! grant naming the asking node as the viewer: a relay is a viewer of its parent, admitted by
//! the same grant check, and when its parent dies it falls back up the chain at once while it
//! asks again.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::Json;
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

/// Longest chain walked from a relay to the origin; a longer one is taken for broken.
const MAX_DEPTH: usize = 64;
/// How long the relays' fan-outs (from the coordinator's measurements) are reused: asks come
/// every few seconds from every relay, and measuring scans the epoch's receipts and probes.
const FANOUT_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The stream's relay tree as stored, and who may be in it now.
pub(crate) struct Tree<'a> {
    /// The origin node (the root).
    pub(crate) origin: &'a str,
    /// Most relays the origin feeds.
    pub(crate) origin_fanout: usize,
    /// Live relays and how many children each may feed (0: leaf only).
    pub(crate) members: &'a HashMap<String, usize>,
    /// Each relay's parent.
    pub(crate) parents: HashMap<&'a str, &'a str>,
    /// Each node's /24 (`a.b.c`) and operator, where known: a relay is placed below a node of
    /// its own /24 or operator only when no other parent has room (that edge earns nothing).
    pub(crate) homes: &'a HashMap<String, Home>,
}

/// Where a node sits for the rewards: an edge between two nodes sharing either earns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Home {
    /// Its /24, `a.b.c`.
    pub(crate) subnet: String,
    /// Its operator.
    pub(crate) operator: String,
}

/// What a relay tree is built from, beside its assignments: see [`Tree`].
pub(crate) struct Layout<'a> {
    /// The origin node (the root).
    pub(crate) origin: &'a str,
    /// Most relays the origin feeds.
    pub(crate) origin_fanout: usize,
    /// Live relays and how many children each may feed.
    pub(crate) members: &'a HashMap<String, usize>,
    /// Each node's /24 and operator.
    pub(crate) homes: &'a HashMap<String, Home>,
}

/// No /24 or operator known for any node.
static NO_HOMES: std::sync::LazyLock<HashMap<String, Home>> =
    std::sync::LazyLock::new(HashMap::new);

impl<'a> Tree<'a> {
    pub(crate) fn new(
        origin: &'a str,
        origin_fanout: usize,
        members: &'a HashMap<String, usize>,
        assignments: &'a [RelayAssignmentRecord],
    ) -> Self {
        Tree {
            origin,
            origin_fanout,
            members,
            parents: assignments
                .iter()
                .map(|a| (a.node_id.as_str(), a.parent_id.as_str()))
                .collect(),
            homes: &NO_HOMES,
        }
    }

    /// The same tree knowing each node's /24 and operator.
    pub(crate) fn with_homes(mut self, homes: &'a HashMap<String, Home>) -> Self {
        self.homes = homes;
        self
    }

    /// Whether `a` and `b` are known to share a /24 or an operator.
    fn neighbours(&self, a: &str, b: &str) -> bool {
        match (self.homes.get(a), self.homes.get(b)) {
            (Some(a), Some(b)) => a.subnet == b.subnet || a.operator == b.operator,
            _ => false,
        }
    }

    /// `node`'s ancestors, parent first and origin last, when every one of them is live and
    /// not in `failed`; `None` when the chain is broken (no parent, a dead or failed
    /// ancestor, a cycle).
    pub(crate) fn chain(&self, node: &str, failed: &HashSet<String>) -> Option<Vec<&'a str>> {
        let mut chain: Vec<&'a str> = Vec::new();
        let mut current = node;
        loop {
            let parent = *self.parents.get(current)?;
            if parent == self.origin {
                chain.push(parent);
                return Some(chain);
            }
            if parent == node
                || chain.contains(&parent)
                || !self.members.contains_key(parent)
                || failed.contains(parent)
                || chain.len() >= MAX_DEPTH
            {
                return None;
            }
            chain.push(parent);
            current = parent;
        }
    }

    fn fanout(&self, node: &str) -> usize {
        if node == self.origin {
            self.origin_fanout
        } else {
            self.members.get(node).copied().unwrap_or(0)
        }
    }

    /// Children of `parent`, oldest assignment first, `but` left out.
    fn children<'t>(
        &self,
        assignments: &'t [RelayAssignmentRecord],
        parent: &str,
        but: &str,
    ) -> Vec<&'t RelayAssignmentRecord> {
        let mut children: Vec<&RelayAssignmentRecord> = assignments
            .iter()
            .filter(|a| a.parent_id == parent && a.node_id != but)
            // Dead relays keep their rows (they return where they were) but hold no slot.
            .filter(|a| self.members.contains_key(&a.node_id))
            .collect();
        children
            .sort_by(|a, b| (a.assigned_at_ms, &a.node_id).cmp(&(b.assigned_at_ms, &b.node_id)));
        children
    }

    /// `node`'s stored ancestors, parent first, whatever their liveness (up to [`MAX_DEPTH`]).
    fn ancestry(&self, node: &str) -> Vec<&'a str> {
        let mut ancestry = Vec::new();
        let mut current = node;
        while let Some(&parent) = self.parents.get(current) {
            if ancestry.contains(&parent) || ancestry.len() >= MAX_DEPTH {
                break;
            }
            ancestry.push(parent);
            current = parent;
        }
        ancestry
    }

    /// The first of `node`'s ancestors (parent first, the origin never) that is dead (no
    /// heartbeat within the liveness) or in `failed`.
    fn gone_ancestor(&self, node: &str, failed: &HashSet<String>) -> Option<&'a str> {
        let mut current = node;
        for _ in 0..MAX_DEPTH {
            let parent = *self.parents.get(current)?;
            if parent == self.origin || parent == node {
                return None;
            }
            if !self.members.contains_key(parent) || failed.contains(parent) {
                return Some(parent);
            }
            current = parent;
        }
        None
    }

    /// The moves (`(relay, new parent)`) that follow `node`'s ask. When an ancestor of it is
    /// gone (missing heartbeats, or its failure `confirmed`: see [`confirmed_failures`]),
    /// every live child of that ancestor is re-parented in this one decision, oldest first,
    /// each under the shallowest healthy relay with room (see [`Tree::choose_parent`]) and
    /// taking its own subtree along; then `node` itself, if it still needs a parent. The
    /// children's subtrees keep their parents, so one ask heals the whole subtree of the dead
    /// relay. A node only `failed` (reported by `node` alone) moves `node` alone: `node` avoids
    /// it and may take its slot at its parent, while it and its other children stay, so a
    /// lying child can move nobody but itself.
    pub(crate) fn rehome(
        assignments: &[RelayAssignmentRecord],
        layout: &Layout<'_>,
        node: &str,
        failed: &HashSet<String>,
        confirmed: &HashSet<String>,
    ) -> Vec<(String, String)> {
        let (origin, origin_fanout, homes) = (layout.origin, layout.origin_fanout, layout.homes);
        // A relay whose failure is confirmed holds no slot at its parent (as a dead one does
        // not), so its children may take its place there.
        let mut members = layout.members.clone();
        members.retain(|relay, _| !confirmed.contains(relay));
        let members = &members;
        let mut working: Vec<RelayAssignmentRecord> = assignments.to_vec();
        let mut moves: Vec<(String, String)> = Vec::new();
        let mut apply = |working: &mut Vec<RelayAssignmentRecord>, relay: &str, parent: String| {
            match working.iter_mut().find(|a| a.node_id == relay) {
                Some(row) => {
                    row.parent_id.clone_from(&parent);
                    // Newest: it holds a slot after the parent's earlier children.
                    row.assigned_at_ms = i64::MAX;
                }
                None => working.push(RelayAssignmentRecord {
                    stream_id: String::new(),
                    node_id: relay.to_owned(),
                    parent_id: parent.clone(),
                    assigned_at_ms: i64::MAX,
                }),
            }
            moves.retain(|(moved, _)| moved != relay);
            moves.push((relay.to_owned(), parent));
        };
        let gone = Tree::new(origin, origin_fanout, members, &working)
            .with_homes(homes)
            .gone_ancestor(node, confirmed)
            .map(str::to_owned);
        if let Some(gone) = gone {
            let orphans: Vec<String> = Tree::new(origin, origin_fanout, members, &working)
                .with_homes(homes)
                .children(&working, &gone, "")
                .iter()
                .map(|a| a.node_id.clone())
                .collect();
            let mut avoid = confirmed.clone();
            avoid.insert(gone);
            for orphan in orphans {
                let chosen = Tree::new(origin, origin_fanout, members, &working)
                    .with_homes(homes)
                    .choose_parent(&working, &orphan, &avoid);
                if let Some(parent) = chosen {
                    apply(&mut working, &orphan, parent);
                }
            }
        }
        // What `node` alone reports keeps its slot at its parent: `node` avoids it, but may
        // not take its place there (that would overfill the parent by one on a lie), and a
        // move the report alone causes goes only where there is room.
        let avoid: HashSet<String> = failed.union(confirmed).cloned().collect();
        let tree = Tree::new(origin, origin_fanout, members, &working).with_homes(homes);
        let chosen = tree.choose_parent(&working, node, &avoid);
        let unconfirmed = failed.iter().any(|f| !confirmed.contains(f));
        let placed = tree.parents.contains_key(node);
        let chosen = chosen
            .filter(|parent| !(unconfirmed && placed) || tree.has_room(&working, parent, node));
        if let Some(parent) = chosen {
            apply(&mut working, node, parent);
        }
        moves
    }

    /// Whether `parent` feeds fewer live children than its fan-out, `node` not counted.
    fn has_room(&self, assignments: &[RelayAssignmentRecord], parent: &str, node: &str) -> bool {
        self.children(assignments, parent, node).len() < self.fanout(parent)
    }

    /// The parent `node` should have now, when it differs from the stored one (`None`: keep
    /// it). It keeps a parent whose chain is whole, that `failed` does not name and among
    /// whose oldest children (up to its fan-out) it is; otherwise it goes under the
    /// shallowest node with room that is not in its own subtree and, while another has room,
    /// not in its own /24 or operator (more room first, then by id: every replica chooses alike). With no
    /// room anywhere, under the origin. Costs O(relays × depth) over the tree in memory.
    pub(crate) fn choose_parent(
        &self,
        assignments: &[RelayAssignmentRecord],
        node: &str,
        failed: &HashSet<String>,
    ) -> Option<String> {
        if let Some(&parent) = self.parents.get(node) {
            let whole = self.chain(node, failed).is_some() && !failed.contains(parent);
            let within = self
                .children(assignments, parent, "")
                .iter()
                .take(self.fanout(parent))
                .any(|a| a.node_id == node);
            if whole && within {
                return None;
            }
        }
        // Own /24 or operator last, then shallowest, then most room, then by id: every replica alike.
        let mut best: Option<(bool, usize, std::cmp::Reverse<usize>, &str)> = None;
        let candidates =
            std::iter::once(self.origin).chain(self.members.keys().map(String::as_str));
        for candidate in candidates {
            if candidate == node || failed.contains(candidate) {
                continue;
            }
            let depth = if candidate == self.origin {
                0
            } else {
                match self.chain(candidate, failed) {
                    // Not below `node` itself: that would make a cycle.
                    Some(chain) if !chain.contains(&node) => chain.len(),
                    _ => continue,
                }
            };
            let fanout = self.fanout(candidate);
            if !self.has_room(assignments, candidate, node) {
                continue;
            }
            let neighbour = self.neighbours(node, candidate);
            let key = (neighbour, depth, std::cmp::Reverse(fanout), candidate);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let chosen = best.map_or(self.origin, |(_, _, _, id)| id);
        if self.parents.get(node) == Some(&chosen) {
            None
        } else {
            Some(chosen.to_owned())
        }
    }
}

/// The reported nodes whose failure is corroborated, so their whole subtree is re-homed:
/// - reported by two relays of distinct homes (neither their /24 nor their operator shared,
///   both known: see [`Home`]) that were below them when they reported (in their subtree
///   now, or placed at or after their report: moved by it; the handler stores only reports of
///   a node in the reporter's own chain per the coordinator's tree), so two nodes of one
///   operator or one /24 cannot evict an honest parent between them;
/// - or reported once and their own last heartbeat, sent after they took their place, does
///   not list the stream (`lacking`: node → the time of such a heartbeat);
/// - or reported once and the coordinator's own probe of them failed (`unreachable`).
///
/// Reports are those of the last relay liveness.
pub(crate) fn confirmed_failures(
    assignments: &[RelayAssignmentRecord],
    reports: &[RelayReportRecord],
    evidence: &Evidence<'_>,
) -> HashSet<String> {
    let Evidence {
        lacking,
        unreachable,
        homes,
    } = evidence;
    let rows: HashMap<&str, &RelayAssignmentRecord> = assignments
        .iter()
        .map(|a| (a.node_id.as_str(), a))
        .collect();
    let below = |reporter: &str, node: &str| {
        let mut current = reporter;
        for _ in 0..MAX_DEPTH {
            match rows.get(current) {
                Some(row) if row.parent_id == node => return true,
                Some(row) => current = row.parent_id.as_str(),
                None => return false,
            }
        }
        false
    };
    let mut reporters: HashMap<&str, HashSet<&str>> = HashMap::new();
    for report in reports {
        let was_below = below(&report.reporter_id, &report.node_id)
            || rows
                .get(report.reporter_id.as_str())
                .is_some_and(|row| row.assigned_at_ms >= report.reported_at_ms);
        if was_below {
            reporters
                .entry(report.node_id.as_str())
                .or_default()
                .insert(report.reporter_id.as_str());
        }
    }
    reporters
        .into_iter()
        .filter(|(node, by)| {
            let lacks = lacking.get(*node).is_some_and(|&heartbeat_ms| {
                rows.get(node)
                    .is_some_and(|row| heartbeat_ms > row.assigned_at_ms)
            });
            lacks || unreachable.contains(*node) || distinct_homes(by, homes)
        })
        .map(|(node, _)| node.to_owned())
        .collect()
}

/// What the coordinator knows itself about reported relays (see [`confirmed_failures`]).
pub(crate) struct Evidence<'a> {
    /// Relays whose own last heartbeat lacks the stream: node → that heartbeat's time.
    pub(crate) lacking: &'a HashMap<String, i64>,
    /// Relays the coordinator's own probe could not reach just now.
    pub(crate) unreachable: &'a HashSet<String>,
    /// Each node's /24 and operator.
    pub(crate) homes: &'a HashMap<String, Home>,
}

/// Whether two of `reporters` are known to share neither their /24 nor their operator.
fn distinct_homes(reporters: &HashSet<&str>, homes: &HashMap<String, Home>) -> bool {
    let known: Vec<&Home> = reporters.iter().filter_map(|r| homes.get(*r)).collect();
    known.iter().enumerate().any(|(i, a)| {
        known
            .iter()
            .skip(i + 1)
            .any(|b| a.subnet != b.subnet && a.operator != b.operator)
    })
}

/// What a relay's last heartbeat says it pulls a stream from (see
/// [`crate::storage::NodeRecord::upstreams_json`]): the upstream node and the heartbeat's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RealUpstream {
    /// The node it pulls from.
    pub(crate) upstream: String,
    /// The signed time of the heartbeat that said so.
    pub(crate) heartbeat_ms: i64,
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

/// The moves that record relays where they really pull from: each relay in `real` whose
/// stored parent differs from the upstream its heartbeat names, when that heartbeat was sent
/// more than `grace_ms` after the stored assignment (a heartbeat sent sooner may predate the
/// relay's switch), the named upstream is the origin or a live relay, and it is not in the
/// relay's own subtree. `real` holds only upstreams the coordinator itself granted the relay
/// for the stream (the handler checks the grants), so a heartbeat cannot place a relay
/// anywhere it was never sent. A relay recorded below a parent is its newest child: it holds
/// a slot there only while the parent has room, and otherwise moves at its next ask, so the
/// fan-out budgets count the relays parents really feed and no honest child is displaced.
pub(crate) fn real_moves(
    assignments: &[RelayAssignmentRecord],
    layout: &Layout<'_>,
    real: &HashMap<String, RealUpstream>,
    grace_ms: i64,
) -> Vec<(String, String)> {
    let tree = Tree::new(
        layout.origin,
        layout.origin_fanout,
        layout.members,
        assignments,
    );
    let mut moves: Vec<(String, String)> = Vec::new();
    let mut relays: Vec<&String> = real.keys().collect();
    relays.sort();
    for relay in relays {
        let Some(reported) = real.get(relay) else {
            continue;
        };
        let Some(row) = assignments.iter().find(|a| &a.node_id == relay) else {
            continue;
        };
        let upstream = reported.upstream.as_str();
        if row.parent_id == upstream
            || reported.heartbeat_ms <= row.assigned_at_ms.saturating_add(grace_ms)
            || upstream == relay.as_str()
        {
            continue;
        }
        let known = upstream == layout.origin || layout.members.contains_key(upstream);
        // Not below the relay itself: the upstream's own stored chain must not pass it.
        let below_itself = tree.ancestry(upstream).iter().any(|a| a == relay);
        if known && !below_itself {
            moves.push((relay.clone(), upstream.to_owned()));
        }
    }
    moves
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
            return answer(&state, &stream.id, &request.node_id, &chain, now).await;
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
                operator: n.operator.clone(),
            };
            (n.id.clone(), home)
        })
        .collect();
    // Only a report of a node in the reporter's own chain, per the coordinator's tree, is
    // stored (it can corroborate); the reporter avoids whatever it reports either way.
    let max_rows = i64::try_from(MAX_DEPTH).unwrap_or(i64::MAX);
    let own_chain: HashSet<String> = if failed.is_empty() {
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
    let unreachable = probe_reported(&state, &nodes, &reported).await;
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
                    // The asker keeps avoiding what it reported lately, not only this time.
                    let own: HashSet<String> = reports
                        .iter()
                        .filter(|r| r.reporter_id == node)
                        .map(|r| r.node_id.clone())
                        .chain(failed.iter().cloned())
                        .collect();
                    let evidence = Evidence {
                        lacking: &lacking,
                        unreachable: &unreachable,
                        homes: &homes,
                    };
                    let confirmed = confirmed_failures(assignments, reports, &evidence);
                    let layout = Layout {
                        origin: &origin,
                        origin_fanout: fanout,
                        members: &members,
                        homes: &homes,
                    };
                    // First where relays really are, then the asker's decision on that tree.
                    let mut moves = real_moves(assignments, &layout, &real, grace_ms);
                    let mut working = assignments.to_vec();
                    for (relay, parent) in &moves {
                        if let Some(row) = working.iter_mut().find(|a| &a.node_id == relay) {
                            row.parent_id.clone_from(parent);
                            row.assigned_at_ms = now;
                        }
                    }
                    let decided = Tree::rehome(&working, &layout, &node, &own, &confirmed);
                    moves.retain(|(relay, _)| !decided.iter().any(|(moved, _)| moved == relay));
                    moves.extend(decided);
                    moves
                })
                .await
        })
    };
    let assignments = decision.await.map_err(|error| {
        ApiError::Conflict(format!("the relay tree decision did not complete: {error}"))
    })??;
    let tree = Tree::new(&origin, fanout, &members, &assignments);
    // The failed ancestors are still in the chain when they are the only way up: the relay
    // learns its new parent first, and the origin is always last.
    let chain = tree
        .chain(&node, &HashSet::new())
        .unwrap_or_else(|| vec![origin.as_str()]);
    let chain: Vec<NodeRecord> = chain
        .iter()
        .filter_map(|upstream| nodes.iter().find(|n| n.id == *upstream).cloned())
        .collect();
    answer(&state, &stream.id, &request.node_id, &chain, now).await
}

/// The reported nodes the coordinator's own check finds down: no success from
/// `GET {http_url}/healthz` within [`crate::CoordConfig::relay_probe_timeout`] (none checked
/// when that is unset). Colluding reporters cannot fake this: the coordinator asks the node.
async fn probe_reported(
    state: &Shared,
    nodes: &[NodeRecord],
    reported: &[String],
) -> HashSet<String> {
    let Some(timeout) = state.config.relay_probe_timeout else {
        return HashSet::new();
    };
    // One client for every check: building one costs far more than a refused connect.
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let Some(client) = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()
    }) else {
        return HashSet::new();
    };
    // Usually one node (the reporter's parent); a few at most.
    let mut down = HashSet::new();
    for id in reported.iter().take(4) {
        let Some(record) = nodes.iter().find(|n| &n.id == id) else {
            continue;
        };
        let url = format!("{}/healthz", record.http_url.trim_end_matches('/'));
        let up = client
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success());
        if !up {
            down.insert(id.clone());
        }
    }
    down
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

/// The answer naming `chain` (parent first, origin last), each with a grant for `relay`.
async fn answer(
    state: &Shared,
    stream: &str,
    relay: &NodeId,
    chain: &[NodeRecord],
    now: i64,
) -> Result<Json<UpstreamResponse>, ApiError> {
    let mut upstreams = Vec::with_capacity(chain.len());
    for upstream in chain {
        upstreams.push(grant_upstream(state, stream, relay, upstream, now).await?);
    }
    Ok(Json(UpstreamResponse {
        depth: u32::try_from(chain.len()).unwrap_or(u32::MAX),
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

    fn layout(k: usize, members: &HashMap<String, usize>) -> Layout<'_> {
        Layout {
            origin: "o",
            origin_fanout: k,
            members,
            homes: &NO_HOMES,
        }
    }

    fn assign(node: &str, parent: &str, at: i64) -> RelayAssignmentRecord {
        RelayAssignmentRecord {
            stream_id: "s".into(),
            node_id: node.into(),
            parent_id: parent.into(),
            assigned_at_ms: at,
        }
    }

    /// Adds relays one by one as `choose_parent` places them; returns the assignments.
    fn grow(
        members: &HashMap<String, usize>,
        order: &[String],
        k: usize,
    ) -> Vec<RelayAssignmentRecord> {
        let mut assignments: Vec<RelayAssignmentRecord> = Vec::new();
        for (at, node) in order.iter().enumerate() {
            let tree = Tree::new("o", k, members, &assignments);
            if let Some(parent) = tree.choose_parent(&assignments, node, &HashSet::new()) {
                let at = i64::try_from(at).unwrap_or(0);
                assignments.retain(|a| &a.node_id != node);
                assignments.push(assign(node, &parent, at));
            }
        }
        assignments
    }

    #[test]
    fn the_origin_feeds_k_relays_and_depth_grows_as_log_k() {
        let names: Vec<String> = (0..100).map(|i| format!("r{i:03}")).collect();
        let members: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 4)).collect();
        let assignments = grow(&members, &names, 4);
        let tree = Tree::new("o", 4, &members, &assignments);
        let under_origin = assignments.iter().filter(|a| a.parent_id == "o").count();
        assert_eq!(under_origin, 4);
        let depth = names
            .iter()
            .map(|n| tree.chain(n, &HashSet::new()).expect("whole chain").len())
            .max()
            .unwrap_or(0);
        // 4 + 16 + 64 = 84 relays fit in three tiers; 100 need a fourth.
        assert_eq!(depth, 4);
        for name in &names {
            let children = assignments.iter().filter(|a| &a.parent_id == name).count();
            assert!(children <= 4, "{name} feeds {children}");
        }
    }

    #[test]
    fn poor_relays_stay_leaves_and_a_dead_parent_is_replaced_with_its_subtree_kept() {
        let mut members: HashMap<String, usize> = ["a", "b", "c"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        members.insert("poor".into(), 0);
        let order: Vec<String> = ["poor", "a", "b", "c"]
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let assignments = grow(&members, &order, 2);
        // poor and a under the origin; b and c under a (poor feeds nobody).
        let parent = |n: &str| {
            assignments
                .iter()
                .find(|a| a.node_id == n)
                .map(|a| a.parent_id.clone())
        };
        assert_eq!(parent("poor").as_deref(), Some("o"));
        assert_eq!(parent("b").as_deref(), Some("a"));
        assert_eq!(parent("c").as_deref(), Some("a"));
        // a dies: b is re-parented (under the origin, where poor leaves a slot after a).
        members.remove("a");
        let tree = Tree::new("o", 2, &members, &assignments);
        assert_eq!(tree.chain("b", &HashSet::new()), None);
        assert_eq!(
            tree.choose_parent(&assignments, "b", &HashSet::new())
                .as_deref(),
            Some("o")
        );
        // A relay reporting its parent failed moves although the parent looks live.
        members.insert("a".into(), 2);
        let tree = Tree::new("o", 2, &members, &assignments);
        assert_eq!(tree.choose_parent(&assignments, "b", &HashSet::new()), None);
        let failed = HashSet::from(["a".to_owned()]);
        let moved = tree.choose_parent(&assignments, "b", &failed);
        assert!(
            moved.is_some() && moved.as_deref() != Some("a"),
            "{moved:?}"
        );
    }

    /// Applies `moves` to `assignments` as the storage does.
    fn apply(assignments: &mut Vec<RelayAssignmentRecord>, moves: &[(String, String)], at: i64) {
        for (node, parent) in moves {
            assignments.retain(|a| &a.node_id != node);
            assignments.push(assign(node, parent, at));
        }
    }

    #[test]
    fn a_dead_inner_relays_whole_subtree_is_rehomed_in_one_decision_under_healthy_relays() {
        let names: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        let mut members: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 2)).collect();
        // Tiers of k = 2: r00 r01 | r02..r05 | r06..r11 (r09..r11 still have room).
        let mut assignments = grow(&members, &names, 2);
        let parent_of = |assignments: &[RelayAssignmentRecord], n: &str| {
            assignments
                .iter()
                .find(|a| a.node_id == n)
                .map(|a| a.parent_id.clone())
        };
        let victim = parent_of(&assignments, "r06").expect("r06 placed");
        assert_ne!(victim, "o");
        let orphans: Vec<String> = assignments
            .iter()
            .filter(|a| a.parent_id == victim)
            .map(|a| a.node_id.clone())
            .collect();
        assert_eq!(orphans.len(), 2, "{assignments:?}");
        // A leaf below an orphan: it keeps its parent and goes along.
        apply(&mut assignments, &[("leaf".into(), orphans[0].clone())], 50);
        members.insert("leaf".into(), 2);

        // The victim misses its heartbeats; the leaf asks first (nothing failed for it).
        members.remove(&victim);
        let none = HashSet::new();
        let moves = Tree::rehome(&assignments, &layout(2, &members), "leaf", &none, &none);
        let moved: HashSet<&str> = moves.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            moved,
            orphans.iter().map(String::as_str).collect(),
            "both of the victim's children move at once, the leaf stays: {moves:?}"
        );
        apply(&mut assignments, &moves, 100);
        let tree = Tree::new("o", 2, &members, &assignments);
        for (node, parent) in &moves {
            assert_ne!(parent, "o", "the full origin is not taken: {moves:?}");
            assert!(
                members.get(parent).is_some_and(|&room| room > 0),
                "{parent}"
            );
            assert!(
                tree.chain(node, &HashSet::new()).is_some(),
                "{node} has a whole chain"
            );
        }
        assert_eq!(
            parent_of(&assignments, "leaf").as_deref(),
            Some(orphans[0].as_str())
        );
        assert!(tree.chain("leaf", &HashSet::new()).is_some());
        for name in members.keys().map(String::as_str).chain(["o"]) {
            let children = tree.children(&assignments, name, "").len();
            assert!(children <= 2, "{name} feeds {children}");
        }
        // The next ask changes nothing: the decision was whole.
        for orphan in &orphans {
            assert!(
                Tree::rehome(&assignments, &layout(2, &members), orphan, &none, &none).is_empty()
            );
        }
    }

    #[test]
    fn one_childs_report_moves_only_that_child_a_confirmed_one_moves_its_siblings_too() {
        let members: HashMap<String, usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        let assignments = vec![
            assign("a", "o", 0),
            assign("d", "o", 1),
            assign("b", "a", 2),
            assign("c", "a", 3),
        ];
        let failed = HashSet::from(["a".to_owned()]);
        // a still heartbeats; b alone says its pull from a broke: b leaves a for a parent
        // with room (d: a keeps its slot at the full origin), and c stays (b may be lying).
        let moves = Tree::rehome(
            &assignments,
            &layout(2, &members),
            "b",
            &failed,
            &HashSet::new(),
        );
        assert_eq!(moves, vec![("b".to_owned(), "d".to_owned())]);
        // Confirmed (another child reported a too, or a's heartbeat lacks the stream): b and
        // c both leave a in one decision; b takes a's slot, c goes below b.
        let moves = Tree::rehome(&assignments, &layout(2, &members), "b", &failed, &failed);
        assert_eq!(
            moves,
            vec![
                ("b".to_owned(), "o".to_owned()),
                ("c".to_owned(), "b".to_owned())
            ]
        );
    }

    /// The attack: a child says its healthy parent failed, so that it takes the parent's
    /// slot at the grandparent (a shallower, better paid place), overfilling it by one.
    #[test]
    fn a_lying_child_cannot_take_its_reported_parents_slot_at_the_grandparent() {
        let members: HashMap<String, usize> = ["a", "b", "c"]
            .iter()
            .map(|n| ((*n).to_owned(), 1))
            .collect();
        // A chain of fan-out 1: o → a → b → c. b still heartbeats; c says its pull broke.
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "a", 1),
            assign("c", "b", 2),
        ];
        let failed = HashSet::from(["b".to_owned()]);
        let none = HashSet::new();
        // Unconfirmed: a is full with b, and there is no room anywhere else: c keeps its
        // place (it avoids b in its own pulls) until the failure is confirmed.
        assert!(Tree::rehome(&assignments, &layout(1, &members), "c", &failed, &none).is_empty());
        // Confirmed (b's heartbeat lacks the stream, a probe found it down, or children of
        // distinct homes report it): b holds no slot, and c takes it at once.
        let moves = Tree::rehome(&assignments, &layout(1, &members), "c", &failed, &failed);
        assert_eq!(moves, vec![("c".to_owned(), "a".to_owned())]);
        // With room elsewhere (d under the origin), the liar goes there, not to a.
        let mut wider = members.clone();
        wider.insert("d".into(), 1);
        let mut with_d = assignments.clone();
        with_d.push(assign("d", "o", 3));
        let moves = Tree::rehome(&with_d, &layout(2, &wider), "c", &failed, &none);
        assert_eq!(moves, vec![("c".to_owned(), "d".to_owned())]);
    }

    proptest::proptest! {
        /// Fan-out bounds hold against any report: whatever relays a child names failed
        /// (unconfirmed), no parent ends up feeding more live children than its fan-out
        /// unless it already did.
        #[test]
        fn no_report_overfills_a_parent(
            fanouts in proptest::collection::vec(0usize..4, 2..14),
            k in 1usize..4,
            reporter in 0usize..14,
            reported in proptest::collection::vec(0usize..14, 1..3),
        ) {
            let names: Vec<String> = (0..fanouts.len()).map(|i| format!("r{i:02}")).collect();
            let members: HashMap<String, usize> =
                names.iter().cloned().zip(fanouts.iter().copied()).collect();
            let assignments = grow(&members, &names, k);
            let node = &names[reporter % names.len()];
            let failed: HashSet<String> =
                reported.iter().map(|i| names[i % names.len()].clone()).collect();
            let none = HashSet::new();
            let count = |assignments: &[RelayAssignmentRecord], parent: &str| {
                assignments
                    .iter()
                    .filter(|a| a.parent_id == parent && members.contains_key(&a.node_id))
                    .count()
            };
            let moves = Tree::rehome(&assignments, &layout(k, &members), node, &failed, &none);
            let mut after = assignments.clone();
            apply(&mut after, &moves, 100);
            for parent in names.iter().map(String::as_str).chain(["o"]) {
                let bound = if parent == "o" { k } else { members[parent] };
                let before = count(&assignments, parent);
                let now = count(&after, parent);
                proptest::prop_assert!(
                    now <= bound.max(before),
                    "{parent} feeds {now} > {bound} (before {before}) after {moves:?}"
                );
            }
        }
    }

    fn report(node: &str, reporter: &str, at: i64) -> RelayReportRecord {
        RelayReportRecord {
            stream_id: "s".into(),
            node_id: node.into(),
            reporter_id: reporter.into(),
            reported_at_ms: at,
        }
    }

    /// Every node in its own /24 with its own operator.
    fn distinct_homes_of(nodes: &[&str]) -> HashMap<String, Home> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let home = Home {
                    subnet: format!("10.0.{i}"),
                    operator: format!("op-{n}"),
                };
                ((*n).to_owned(), home)
            })
            .collect()
    }

    /// `confirmed_failures` with only `lacking` and `homes` as evidence.
    fn confirmed_by(
        assignments: &[RelayAssignmentRecord],
        reports: &[RelayReportRecord],
        lacking: &HashMap<String, i64>,
        homes: &HashMap<String, Home>,
    ) -> HashSet<String> {
        let evidence = Evidence {
            lacking,
            unreachable: &HashSet::new(),
            homes,
        };
        confirmed_failures(assignments, reports, &evidence)
    }

    #[test]
    fn a_failure_is_confirmed_by_two_reporters_below_it_or_its_own_heartbeat() {
        // o → p → {x, y, z}; q elsewhere under o.
        let assignments = vec![
            assign("p", "o", 0),
            assign("q", "o", 1),
            assign("x", "p", 2),
            assign("y", "p", 3),
            assign("z", "p", 4),
        ];
        let none = HashMap::new();
        let homes = distinct_homes_of(&["o", "p", "q", "x", "y", "z"]);
        let confirmed = |reports: &[RelayReportRecord], lacking: &HashMap<String, i64>| {
            confirmed_by(&assignments, reports, lacking, &homes)
        };
        let p = HashSet::from(["p".to_owned()]);
        // One reporter, however often: not confirmed.
        assert!(confirmed(&[report("p", "x", 10)], &none).is_empty());
        // Two below p: confirmed.
        assert_eq!(
            confirmed(&[report("p", "x", 10), report("p", "y", 11)], &none),
            p
        );
        // A relay not below p (nor moved by its report) does not count.
        assert!(confirmed(&[report("p", "x", 10), report("p", "q", 11)], &none).is_empty());
        // A reporter that moved away at its report still counts (it was below p then)...
        let mut moved = assignments.clone();
        apply(&mut moved, &[("x".into(), "q".into())], 10);
        let reports = [report("p", "x", 10), report("p", "y", 11)];
        assert_eq!(confirmed_by(&moved, &reports, &none, &homes), p);
        // ...but not for a report made later from its new place.
        let reports = [report("p", "x", 12), report("p", "y", 13)];
        assert!(confirmed_by(&moved, &reports, &none, &homes).is_empty());
        // One report and p's own heartbeat, after it took its place, lacking the stream.
        let lacking = HashMap::from([("p".to_owned(), 5)]);
        assert_eq!(confirmed(&[report("p", "x", 10)], &lacking), p);
        // A heartbeat from before it took its place says nothing.
        let stale = HashMap::from([("p".to_owned(), 0)]);
        assert!(confirmed(&[report("p", "x", 10)], &stale).is_empty());
        // One report and the coordinator's own probe of p failing.
        let evidence = Evidence {
            lacking: &none,
            unreachable: &p,
            homes: &homes,
        };
        assert_eq!(
            confirmed_failures(&assignments, &[report("p", "x", 10)], &evidence),
            p
        );
    }

    /// The attack: two nodes of one operator (or one /24) get placed below an honest parent
    /// and both report it failed, evicting it and its other children from the tree (and from
    /// what they earn as relays). Two reporters corroborate only from distinct homes.
    #[test]
    fn two_colluding_children_of_one_operator_or_slash_24_cannot_confirm_a_false_failure() {
        // o → p → {x, y, z}.
        let assignments = vec![
            assign("p", "o", 0),
            assign("x", "p", 2),
            assign("y", "p", 3),
            assign("z", "p", 4),
        ];
        let home = |subnet: &str, operator: &str| Home {
            subnet: subnet.into(),
            operator: operator.into(),
        };
        let none = HashMap::new();
        let both = [report("p", "x", 10), report("p", "y", 11)];
        let with = |x: Home, y: Home| {
            let mut homes = distinct_homes_of(&["o", "p", "z"]);
            homes.insert("x".into(), x);
            homes.insert("y".into(), y);
            confirmed_by(&assignments, &both, &none, &homes)
        };
        // One operator on two /24s: not confirmed.
        assert!(with(home("10.1.1", "evil"), home("10.2.2", "evil")).is_empty());
        // Two operators on one /24: not confirmed.
        assert!(with(home("10.1.1", "evil-a"), home("10.1.1", "evil-b")).is_empty());
        // A reporter whose home is unknown proves nothing.
        let mut homes = distinct_homes_of(&["o", "p", "x"]);
        homes.remove("x");
        assert!(confirmed_by(&assignments, &both, &none, &homes).is_empty());
        // Distinct /24s and operators: confirmed.
        assert_eq!(
            with(home("10.1.1", "a"), home("10.2.2", "b")),
            HashSet::from(["p".to_owned()])
        );
        // A third reporter of a distinct home with one of a colluding pair: confirmed.
        let mut homes = distinct_homes_of(&["o", "p", "z"]);
        homes.insert("x".into(), home("10.1.1", "evil"));
        homes.insert("y".into(), home("10.2.2", "evil"));
        let three = [
            report("p", "x", 10),
            report("p", "y", 11),
            report("p", "z", 12),
        ];
        assert_eq!(
            confirmed_by(&assignments, &three, &none, &homes),
            HashSet::from(["p".to_owned()])
        );
    }

    #[test]
    fn a_relay_is_recorded_where_its_heartbeat_says_it_pulls_from() {
        let members: HashMap<String, usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ((*n).to_owned(), 2))
            .collect();
        // o → {a, b}; a → c; c → d. d was moved below c at 100, but its answer was lost and
        // it still pulls from a (its old parent, an ancestor it holds a grant for).
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "o", 1),
            assign("c", "a", 2),
            assign("d", "c", 100),
        ];
        let real = |upstream: &str, at: i64| {
            HashMap::from([(
                "d".to_owned(),
                RealUpstream {
                    upstream: upstream.into(),
                    heartbeat_ms: at,
                },
            )])
        };
        let layout = layout(2, &members);
        // Recorded below a, once its heartbeat is well after the move.
        assert_eq!(
            real_moves(&assignments, &layout, &real("a", 200), 50),
            vec![("d".to_owned(), "a".to_owned())]
        );
        // A heartbeat within the grace may predate the switch: nothing moves.
        assert!(real_moves(&assignments, &layout, &real("a", 140), 50).is_empty());
        // Where it is stored already, or an unknown node, or below itself: nothing moves.
        assert!(real_moves(&assignments, &layout, &real("c", 200), 50).is_empty());
        assert!(real_moves(&assignments, &layout, &real("stranger", 200), 50).is_empty());
        let mut below = assignments.clone();
        below.push(assign("e", "d", 101));
        let mut with_e = members.clone();
        with_e.insert("e".into(), 2);
        assert!(real_moves(
            &below,
            &super::tests::layout(2, &with_e),
            &real("e", 200),
            50
        )
        .is_empty());
        // The budgets count it at a, as its newest child: a full parent's older children keep
        // their slots, and d (beyond a's fan-out) moves at its next ask.
        let mut recorded = assignments.clone();
        apply(&mut recorded, &[("d".into(), "a".into())], 200);
        let mut full = recorded.clone();
        full.push(assign("f", "a", 150));
        let mut with_f = members.clone();
        with_f.insert("f".into(), 2);
        let tree = Tree::new("o", 2, &with_f, &full);
        assert_eq!(tree.children(&full, "a", "").len(), 3);
        let moved = tree.choose_parent(&full, "d", &HashSet::new());
        assert!(
            moved.is_some() && moved.as_deref() != Some("a"),
            "{moved:?}"
        );
        assert_eq!(tree.choose_parent(&full, "f", &HashSet::new()), None);
        assert_eq!(tree.choose_parent(&full, "c", &HashSet::new()), None);
    }

    #[test]
    fn a_relay_goes_below_a_node_of_its_own_slash_24_or_operator_only_when_no_other_has_room() {
        let members: HashMap<String, usize> = ["a", "b", "c", "x"]
            .iter()
            .map(|n| ((*n).to_owned(), 1))
            .collect();
        let home = |subnet: &str, operator: &str| Home {
            subnet: subnet.into(),
            operator: operator.into(),
        };
        let homes: HashMap<String, Home> = [
            ("o", home("192.0.2", "op-o")),
            ("a", home("10.0.0", "op-a")),
            ("b", home("10.0.1", "op-x")),
            ("c", home("10.0.2", "op-c")),
            ("x", home("10.0.0", "op-x")),
        ]
        .into_iter()
        .map(|(n, h)| (n.to_owned(), h))
        .collect();
        let assignments = vec![
            assign("a", "o", 0),
            assign("b", "o", 1),
            assign("c", "o", 2),
        ];
        // a and b come first by id, but a shares x's /24 and b its operator: x goes below c.
        let tree = Tree::new("o", 3, &members, &assignments).with_homes(&homes);
        assert_eq!(
            tree.choose_parent(&assignments, "x", &HashSet::new())
                .as_deref(),
            Some("c")
        );
        // c is full: a neighbour is still better than no room.
        let mut full = assignments.clone();
        full.push(assign("y", "c", 3));
        let mut members = members.clone();
        members.insert("y".into(), 0);
        let tree = Tree::new("o", 3, &members, &full).with_homes(&homes);
        assert_eq!(
            tree.choose_parent(&full, "x", &HashSet::new()).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_relay_never_goes_below_its_own_subtree() {
        let members: HashMap<String, usize> = ["a", "b", "x"]
            .iter()
            .map(|n| ((*n).to_owned(), 4))
            .collect();
        // The origin is full (fan-out 1, taken by x); b is a's child.
        let assignments = vec![
            assign("x", "o", 0),
            assign("a", "o", 1),
            assign("b", "a", 2),
        ];
        let tree = Tree::new("o", 1, &members, &assignments);
        // a is beyond the origin's fan-out: it must move, but not under b.
        let moved = tree.choose_parent(&assignments, "a", &HashSet::new());
        assert_ne!(moved.as_deref(), Some("b"));
    }

    #[test]
    fn rtmp_urls_lose_their_app() {
        assert_eq!(
            rtmp_base("rtmp://127.0.0.1:1935/live"),
            "rtmp://127.0.0.1:1935"
        );
        assert_eq!(rtmp_base("rtmps://h"), "rtmps://h");
    }
}
