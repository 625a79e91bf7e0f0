//! `GET /dashboard/data.json`: one read-only snapshot of what the dashboard shows, computed from
//! storage: live streams with their viewers and delivered bitrate, nodes with availability and
//! served bytes, fraud flags, earnings per epoch, payouts and the origin's offload over time.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use streamr_core::{BalanceLeaf, ProbeResult, ProbeSummary};

use crate::clock::now_ms;
use crate::error::ApiError;
use crate::state::Shared;
use crate::storage::{
    EvidenceRecord, NodeEpochTraffic, NodeRecord, PayoutRecord, ReceiptRecord, StreamRecord, Totals,
};

/// Receipts received this recently count a session as watching.
pub(crate) const VIEWER_WINDOW_MS: i64 = 30_000;
/// How far back the offload chart reaches.
pub(crate) const OFFLOAD_WINDOW_MS: i64 = 5 * 60_000;
/// Width of one offload bucket.
pub(crate) const OFFLOAD_BUCKET_MS: i64 = 10_000;
/// Most epochs read for receipts (short epochs would otherwise mean many queries).
const MAX_RECEIPT_EPOCHS: i64 = 64;
/// Settled epochs shown.
const EPOCHS_SHOWN: i64 = 12;

/// The whole dashboard snapshot.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    generated_at_ms: i64,
    current_epoch: i64,
    epoch_length_ms: i64,
    totals: Totals,
    streams: Vec<StreamRow>,
    /// The origins of live streams (origins do not register as friend nodes).
    origins: Vec<OriginRow>,
    nodes: Vec<NodeRow>,
    flags: Vec<EvidenceRecord>,
    epochs: Vec<EpochRow>,
    payouts: Vec<PayoutRecord>,
    offload: Vec<OffloadPoint>,
}

/// A live stream.
#[derive(Debug, Serialize)]
pub(crate) struct StreamRow {
    id: String,
    title: String,
    created_at_ms: i64,
    /// Sessions with a verified receipt in the last [`VIEWER_WINDOW_MS`].
    viewers: u64,
    /// Verified bits per second delivered to one viewer, averaged over the window.
    bitrate_bps: u64,
}

/// An origin node and the live streams bound to it.
#[derive(Debug, Serialize)]
pub(crate) struct OriginRow {
    /// The origin's node id.
    node_id: String,
    /// `reporting` (a segment report within the last [`ORIGIN_REPORTING_MS`]) or `silent`.
    status: &'static str,
    streams: Vec<OriginStream>,
}

/// A live stream at its origin.
#[derive(Debug, Serialize)]
pub(crate) struct OriginStream {
    id: String,
    /// Sequence and arrival of the newest segment report.
    last_sequence: Option<i64>,
    last_report_ms: Option<i64>,
}

/// An origin whose newest report is older than this is shown as silent (the prober stops
/// probing its streams then).
const ORIGIN_REPORTING_MS: i64 = 20_000;

/// Probe availability below this (ppm) makes a node red; below [`AMBER_BELOW_PPM`] amber.
const RED_BELOW_PPM: u64 = 500_000;
/// Probe availability below this (ppm) makes a node amber.
const AMBER_BELOW_PPM: u64 = 950_000;

/// A node's health light and why: green only when it heartbeats and its probes (which present
/// a grant like any viewer) pass; a node refusing grants, unreachable or serving wrong content
/// fails its probes.
/// `viewer_failures` counts viewers that reported failing to play at the node in the last 30 s
/// (a refused grant, or no answer) and asked for another node.
pub(crate) fn node_health(
    status: &str,
    availability_ppm: Option<u64>,
    probes: usize,
    viewer_failures: usize,
) -> (&'static str, String) {
    match status {
        "deregistered" => return ("red", "deregistered: not routed viewers".into()),
        "registered" => return ("amber", "registered, no heartbeat yet".into()),
        "silent" => return ("red", "no recent heartbeat: not routed viewers".into()),
        _ => {}
    }
    if viewer_failures > 0 {
        let light = if viewer_failures >= VIEWER_FAILURES_RED {
            "red"
        } else {
            "amber"
        };
        let viewers = if viewer_failures == 1 {
            "1 viewer".to_owned()
        } else {
            format!("{viewer_failures} viewers")
        };
        return (
            light,
            format!(
                "{viewers} could not play here in the last 30 s (grant refused or no answer) \
                 and moved to another node"
            ),
        );
    }
    let Some(ppm) = availability_ppm else {
        return (
            "amber",
            "online, not probed yet (grants and content unchecked)".into(),
        );
    };
    let passed = format!("{:.0} % of {probes} probes passed", ppm as f64 / 10_000.0);
    if ppm < RED_BELOW_PPM {
        (
            "red",
            format!(
                "{passed}: it refuses grants, cannot be reached or serves content the origin \
                 did not report"
            ),
        )
    } else if ppm < AMBER_BELOW_PPM {
        (
            "amber",
            format!("{passed}: some probes were refused, timed out or failed"),
        )
    } else {
        ("green", format!("online, {passed}"))
    }
}

/// Viewers reporting a node failing within 30 s that make it red (routing treats it as down
/// from three, once its heartbeat is stale).
const VIEWER_FAILURES_RED: usize = 3;

/// Up to this many nodes, each row carries its rewards by stage.
const MAX_NODES_WITH_EARNINGS: usize = 50;

/// A node's rewards by stage, micro-units.
#[derive(Debug, Default, Serialize)]
pub(crate) struct NodeEarnings {
    unvested: i64,
    vested: i64,
    pending: i64,
    paid: i64,
}

/// A node as the dashboard lists it.
#[derive(Debug, Serialize)]
pub(crate) struct NodeRow {
    id: String,
    operator: String,
    http_url: String,
    status: String,
    active: bool,
    last_heartbeat_ms: Option<i64>,
    /// Viewers the node reported at its last heartbeat.
    viewers: i64,
    /// Bytes served to receipt-signing viewers, as of the last heartbeat.
    bytes_served: i64,
    /// This epoch's claims so far: bytes served to viewers that sign receipts, and to
    /// viewers that sent none (unattested).
    epoch_claimed_bytes: i64,
    epoch_unattested_bytes: i64,
    /// This epoch so far, by viewers' receipts wherever they were posted (what settlement
    /// pays for): bytes, sessions and distinct viewer keys, without probe traffic.
    epoch_verified_bytes: i64,
    epoch_verified_sessions: i64,
    epoch_verified_viewers: i64,
    /// The coordinator's probe traffic this epoch (never paid).
    epoch_probe_bytes: i64,
    /// Prefixes the node's heartbeats came from.
    observed_prefixes: Vec<String>,
    /// Share of this (or, before its first probe, the previous) epoch's probes passed, parts
    /// per million; `None` when neither probed the node.
    availability_ppm: Option<u64>,
    probes: usize,
    /// `green`, `amber` or `red` (see [`node_health`]), and why.
    health: &'static str,
    health_reason: String,
    /// Its rewards by stage (`GET /nodes/{id}/payouts` has the detail); `None` beyond
    /// [`MAX_NODES_WITH_EARNINGS`] nodes.
    earnings: Option<NodeEarnings>,
    streams: Vec<String>,
    /// Set when the coordinator could not connect back to the node's advertised addresses:
    /// which ports its operator must forward (no viewers are routed to it meanwhile).
    unreachable: Option<String>,
}

/// One settled epoch and what each node earned in it.
#[derive(Debug, Serialize)]
pub(crate) struct EpochRow {
    epoch: i64,
    merkle_root: String,
    pool: i64,
    distributed: i64,
    penalties: i64,
    settled_at_ms: i64,
    /// Node id → rewards less penalties booked in the epoch.
    earnings: BTreeMap<String, i64>,
    /// Node id → penalties booked in the epoch (only penalised nodes).
    penalised: BTreeMap<String, i64>,
    /// Nodes with a balance leaf in the epoch's statement (each has a Merkle proof).
    leaves: Vec<String>,
}

/// Origin offload in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct OffloadPoint {
    /// Bucket start.
    pub(crate) t_ms: i64,
    /// Verified bytes friend nodes delivered to viewers.
    pub(crate) viewer_bytes: i64,
    /// Estimated origin egress: one copy of the stream per friend node serving it.
    pub(crate) origin_bytes: i64,
    /// `1 - origin_bytes / viewer_bytes` in parts per million (0 when nothing was served).
    pub(crate) offload_ppm: u64,
}

/// Viewers and per-viewer bitrate of each stream from receipts received in `[from_ms, to_ms)`.
pub(crate) fn stream_activity(
    receipts: &[ReceiptRecord],
    from_ms: i64,
    to_ms: i64,
) -> BTreeMap<String, (u64, u64)> {
    let mut per_stream: BTreeMap<&str, (BTreeSet<&str>, i64)> = BTreeMap::new();
    for r in receipts
        .iter()
        .filter(|r| r.received_at_ms >= from_ms && r.received_at_ms < to_ms)
    {
        let entry = per_stream.entry(&r.stream_id).or_default();
        entry.0.insert(&r.session_id);
        entry.1 = entry.1.saturating_add(r.bytes_delta.max(0));
    }
    let seconds = u64::try_from((to_ms - from_ms).max(1_000) / 1_000).unwrap_or(1);
    per_stream
        .into_iter()
        .map(|(stream, (sessions, bytes))| {
            let viewers = sessions.len() as u64;
            let bits = u64::try_from(bytes).unwrap_or(0).saturating_mul(8);
            let bitrate = bits / seconds / viewers.max(1);
            (stream.to_owned(), (viewers, bitrate))
        })
        .collect()
}

/// Offload per bucket of `bucket_ms` from `from_ms` to `to_ms`: viewer bytes against an
/// origin that sends each serving friend node one copy (the largest session's bytes in the
/// bucket, per stream).
pub(crate) fn offload_series(
    receipts: &[ReceiptRecord],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Vec<OffloadPoint> {
    let bucket_ms = bucket_ms.max(1);
    let start = from_ms - from_ms.rem_euclid(bucket_ms);
    let mut buckets: BTreeMap<i64, Vec<&ReceiptRecord>> = BTreeMap::new();
    let mut t = start;
    while t < to_ms {
        buckets.insert(t, Vec::new());
        t += bucket_ms;
    }
    for r in receipts
        .iter()
        .filter(|r| r.received_at_ms >= start && r.received_at_ms < to_ms)
    {
        let key = r.received_at_ms - r.received_at_ms.rem_euclid(bucket_ms);
        buckets.entry(key).or_default().push(r);
    }
    buckets
        .into_iter()
        .map(|(t_ms, rows)| {
            let viewer_bytes: i64 = rows.iter().map(|r| r.bytes_delta.max(0)).sum();
            let mut per_session: BTreeMap<(&str, &str), i64> = BTreeMap::new();
            let mut nodes_per_stream: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for r in &rows {
                *per_session
                    .entry((&r.stream_id, &r.session_id))
                    .or_default() += r.bytes_delta.max(0);
                nodes_per_stream
                    .entry(&r.stream_id)
                    .or_default()
                    .insert(&r.node_id);
            }
            let origin_bytes: i64 = nodes_per_stream
                .iter()
                .map(|(stream, nodes)| {
                    let copy = per_session
                        .iter()
                        .filter(|((s, _), _)| s == stream)
                        .map(|(_, bytes)| *bytes)
                        .max()
                        .unwrap_or(0);
                    copy.saturating_mul(nodes.len() as i64)
                })
                .sum();
            let offload_ppm = if viewer_bytes > 0 && origin_bytes < viewer_bytes {
                let saved = i128::from(viewer_bytes - origin_bytes);
                u64::try_from(saved * 1_000_000 / i128::from(viewer_bytes)).unwrap_or(0)
            } else {
                0
            };
            OffloadPoint {
                t_ms,
                viewer_bytes,
                origin_bytes,
                offload_ppm,
            }
        })
        .collect()
}

/// `deregistered`, `registered` (no heartbeat yet), `online` (heartbeat within the liveness
/// window, so routable) or `silent`.
fn node_status(node: &NodeRecord, now_ms: i64, liveness_ms: i64) -> &'static str {
    match node.last_heartbeat_ms {
        _ if !node.active => "deregistered",
        None => "registered",
        Some(t) if now_ms.saturating_sub(t) <= liveness_ms => "online",
        Some(_) => "silent",
    }
}

fn streams_of(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Receipts of the epochs from `from_ms` to `now_ms` (at most the newest
/// [`MAX_RECEIPT_EPOCHS`]), received at or after `from_ms`.
pub(crate) async fn recent_receipts(
    state: &Shared,
    from_ms: i64,
    now_ms: i64,
) -> Result<Vec<ReceiptRecord>, ApiError> {
    let current = state.config.epoch_of(now_ms);
    let first = state
        .config
        .epoch_of(from_ms)
        .max(current - MAX_RECEIPT_EPOCHS + 1);
    let mut receipts = Vec::new();
    for epoch in first..=current {
        receipts.extend(
            state
                .storage
                .receipts_for_epoch(epoch)
                .await?
                .into_iter()
                .filter(|r| r.received_at_ms >= from_ms),
        );
    }
    Ok(receipts)
}

/// Builds the snapshot.
pub(crate) async fn data(State(state): State<Shared>) -> Result<Json<Overview>, ApiError> {
    let storage = &state.storage;
    let config = &state.config;
    let now = now_ms();
    // Distinct viewers per node that reported failing to play there within routing's window.
    let (reports, _) = storage
        .route_state(now.saturating_sub(crate::api::viewers::REPORT_WINDOW_MS))
        .await?;
    let mut reporters: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for report in &reports {
        reporters
            .entry(report.node_id.as_str())
            .or_default()
            .insert(report.viewer.as_str());
    }
    let current_epoch = config.epoch_of(now);
    let liveness_ms = i64::try_from(config.node_liveness.as_millis()).unwrap_or(i64::MAX);

    let receipts = recent_receipts(&state, now - OFFLOAD_WINDOW_MS, now).await?;
    let activity = stream_activity(&receipts, now - VIEWER_WINDOW_MS, now);
    let offload = offload_series(&receipts, now - OFFLOAD_WINDOW_MS, now, OFFLOAD_BUCKET_MS);

    let live: Vec<StreamRecord> = storage
        .list_streams(100)
        .await?
        .into_iter()
        .filter(|s| s.status == "live")
        .collect();
    let mut by_origin: BTreeMap<String, Vec<OriginStream>> = BTreeMap::new();
    for stream in &live {
        let Some(origin) = &stream.origin_node else {
            continue;
        };
        let newest = storage
            .list_segments(&stream.id, 1)
            .await?
            .into_iter()
            .next();
        by_origin
            .entry(origin.clone())
            .or_default()
            .push(OriginStream {
                id: stream.id.clone(),
                last_sequence: newest.as_ref().map(|s| s.sequence),
                last_report_ms: newest.map(|s| s.reported_at_ms),
            });
    }
    let origins = by_origin
        .into_iter()
        .map(|(node_id, streams)| {
            let reporting = streams.iter().any(|s| {
                s.last_report_ms
                    .is_some_and(|t| now.saturating_sub(t) <= ORIGIN_REPORTING_MS)
            });
            OriginRow {
                node_id,
                status: if reporting { "reporting" } else { "silent" },
                streams,
            }
        })
        .collect();
    let streams = live
        .into_iter()
        .map(|s: StreamRecord| {
            let (viewers, bitrate_bps) = activity.get(&s.id).copied().unwrap_or((0, 0));
            StreamRow {
                id: s.id,
                title: s.title,
                created_at_ms: s.created_at_ms,
                viewers,
                bitrate_bps,
            }
        })
        .collect();

    // Availability over this epoch's probes, or the previous epoch's for a node not yet
    // probed in this one (short epochs may end before every node is probed).
    let mut probes: BTreeMap<String, Vec<ProbeResult>> = BTreeMap::new();
    let mut previous: BTreeMap<String, Vec<ProbeResult>> = BTreeMap::new();
    for (epoch, into) in [
        (current_epoch, &mut probes),
        (current_epoch - 1, &mut previous),
    ] {
        for probe in storage.probes_for_epoch(epoch).await? {
            if let Some(result) = crate::workers::probe_result(&probe) {
                into.entry(probe.node_id).or_default().push(result);
            }
        }
    }
    for (node, results) in previous {
        probes.entry(node).or_insert(results);
    }
    let claims: BTreeMap<String, (i64, i64)> = storage
        .activity_for_epoch(current_epoch)
        .await?
        .into_iter()
        .map(|a| (a.node_id, (a.claimed_bytes, a.unattested_bytes)))
        .collect();
    let traffic: BTreeMap<String, NodeEpochTraffic> = storage
        .traffic_for_epoch(current_epoch)
        .await?
        .into_iter()
        .map(|t| (t.node_id.clone(), t))
        .collect();
    let mut prefixes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in storage.node_prefixes().await? {
        prefixes
            .entry(prefix.node_id)
            .or_default()
            .push(prefix.prefix);
    }
    let mut unreachable: BTreeMap<String, String> = BTreeMap::new();
    if config.reachability_interval.is_some() {
        let listed = storage.list_nodes().await?;
        for record in storage.reachability().await? {
            let current = listed
                .iter()
                .any(|n| n.id == record.node_id && record.is_for(n));
            if let (true, Some(hint)) =
                (current, crate::workers::reachability::forward_hint(&record))
            {
                unreachable.insert(record.node_id, hint);
            }
        }
    }
    let mut nodes: Vec<NodeRow> = storage
        .list_nodes()
        .await?
        .into_iter()
        .map(|n| {
            let traffic = traffic.get(&n.id).cloned().unwrap_or_default();
            let observed_prefixes = prefixes.remove(&n.id).unwrap_or_default();
            let results = probes.get(&n.id);
            let status = node_status(&n, now, liveness_ms).to_owned();
            let (epoch_claimed_bytes, epoch_unattested_bytes) =
                claims.get(&n.id).copied().unwrap_or((0, 0));
            let availability_ppm = results
                .map(|r| ProbeSummary::from_results(&config.probe_policy, r).availability_ppm());
            let probes = results.map_or(0, Vec::len);
            let failures = reporters
                .get(n.id.as_str())
                .map_or(0, |viewers| viewers.len());
            let unreachable = unreachable.remove(&n.id);
            let (health, health_reason) = match &unreachable {
                Some(hint) => ("red", hint.clone()),
                None => node_health(&status, availability_ppm, probes, failures),
            };
            NodeRow {
                availability_ppm,
                probes,
                health,
                health_reason,
                earnings: None,
                streams: streams_of(&n.streams_json),
                unreachable,
                id: n.id,
                operator: n.operator,
                http_url: n.http_url,
                status,
                active: n.active,
                last_heartbeat_ms: n.last_heartbeat_ms,
                viewers: n.viewers,
                bytes_served: n.bytes_served,
                epoch_claimed_bytes,
                epoch_unattested_bytes,
                epoch_verified_bytes: traffic.verified_bytes,
                epoch_verified_sessions: traffic.sessions,
                epoch_verified_viewers: traffic.viewers,
                epoch_probe_bytes: traffic.probe_bytes,
                observed_prefixes,
            }
        })
        .collect();
    // Each node's stages take a read of its whole ledger history: only for small networks.
    let with_earnings = nodes.len() <= MAX_NODES_WITH_EARNINGS;
    for node in nodes.iter_mut().filter(|_| with_earnings) {
        let lifecycle = crate::api::ledger::payouts_of(&state, &node.id).await?;
        node.earnings = Some(NodeEarnings {
            unvested: lifecycle.unvested,
            vested: lifecycle.vested,
            pending: lifecycle.pending,
            paid: lifecycle.paid,
        });
    }

    let mut epochs = Vec::new();
    let mut flags = Vec::new();
    let mut payouts = Vec::new();
    for settlement in storage.list_settlements(EPOCHS_SHOWN).await? {
        let mut earnings: BTreeMap<String, i64> = BTreeMap::new();
        let mut penalised: BTreeMap<String, i64> = BTreeMap::new();
        for entry in storage.ledger_for_epoch(settlement.epoch).await? {
            let Some(node) = entry.node_id else { continue };
            let signed = match entry.kind.as_str() {
                "reward" => entry.amount,
                "penalty" => {
                    *penalised.entry(node.clone()).or_default() += entry.amount;
                    -entry.amount
                }
                _ => continue,
            };
            *earnings.entry(node).or_default() += signed;
        }
        flags.extend(storage.evidence_for_epoch(settlement.epoch).await?);
        payouts.extend(storage.payouts_for_epoch(settlement.epoch).await?);
        let leaves = serde_json::from_str::<Vec<BalanceLeaf>>(&settlement.leaves_json)
            .map(|leaves| leaves.iter().map(|l| l.node_id.to_string()).collect())
            .unwrap_or_default();
        epochs.push(EpochRow {
            epoch: settlement.epoch,
            merkle_root: settlement.merkle_root,
            pool: settlement.pool,
            distributed: settlement.distributed,
            penalties: settlement.penalties,
            settled_at_ms: settlement.settled_at_ms,
            earnings,
            penalised,
            leaves,
        });
    }

    Ok(Json(Overview {
        generated_at_ms: now,
        current_epoch,
        epoch_length_ms: config.epoch_length_ms(),
        totals: storage.totals().await?,
        streams,
        origins,
        nodes,
        flags,
        epochs,
        payouts,
        offload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(stream: &str, session: &str, node: &str, at: i64, bytes: i64) -> ReceiptRecord {
        ReceiptRecord {
            session_id: session.into(),
            seq: 1,
            node_id: node.into(),
            stream_id: stream.into(),
            bytes_total: bytes,
            bytes_delta: bytes,
            on_time_bytes: bytes,
            last_segment_seq: 0,
            t_ms: at,
            epoch: 0,
            received_at_ms: at,
            body: String::new(),
        }
    }

    #[test]
    fn a_node_is_green_only_online_with_passing_probes() {
        let health = |status, ppm, probes| node_health(status, ppm, probes, 0).0;
        assert_eq!(health("online", Some(1_000_000), 4), "green");
        assert_eq!(health("online", Some(960_000), 25), "green");
        // Refusing every grant fails every probe.
        let (light, reason) = node_health("online", Some(0), 3, 0);
        assert_eq!(light, "red");
        assert!(reason.contains("0 % of 3 probes passed"), "{reason}");
        assert!(reason.contains("refuses grants"), "{reason}");
        assert_eq!(health("online", Some(750_000), 4), "amber");
        assert_eq!(health("online", None, 0), "amber");
        assert_eq!(health("registered", None, 0), "amber");
        assert_eq!(health("silent", Some(1_000_000), 4), "red");
        assert_eq!(health("deregistered", Some(1_000_000), 4), "red");
        // Viewers that could not play there (e.g. their grant was refused) say so.
        let (light, reason) = node_health("online", Some(1_000_000), 4, 1);
        assert_eq!(light, "amber");
        assert!(
            reason.starts_with("1 viewer could not play here"),
            "{reason}"
        );
        assert_eq!(node_health("online", Some(1_000_000), 4, 3).0, "red");
    }

    #[test]
    fn viewers_are_sessions_in_the_window_and_bitrate_is_per_viewer() {
        let receipts = [
            receipt("show", "a", "n1", 1_000, 125_000),
            receipt("show", "b", "n2", 2_000, 125_000),
            receipt("show", "a", "n1", 5_000, 125_000),
            receipt("show", "old", "n1", -5_000, 999_999),
        ];
        let activity = stream_activity(&receipts, 0, 10_000);
        // 375 kB in 10 s over two viewers: 150 kbit/s each.
        assert_eq!(activity.get("show"), Some(&(2, 150_000)));
    }

    #[test]
    fn offload_counts_one_origin_copy_per_serving_node() {
        let receipts = [
            receipt("show", "a", "n1", 0, 100),
            receipt("show", "b", "n1", 1, 100),
            receipt("show", "c", "n1", 2, 100),
            receipt("show", "d", "n2", 3, 100),
            receipt("show", "e", "n1", 10, 100),
        ];
        let series = offload_series(&receipts, 0, 20, 10);
        assert_eq!(series.len(), 2);
        // Four viewers, two nodes: the origin sent two copies instead of four.
        assert_eq!(series[0].viewer_bytes, 400);
        assert_eq!(series[0].origin_bytes, 200);
        assert_eq!(series[0].offload_ppm, 500_000);
        // One viewer on one node saves nothing.
        assert_eq!(series[1].offload_ppm, 0);
    }
}
