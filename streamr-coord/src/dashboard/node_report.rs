//! `GET /nodes/{id}/report`: the numbers settlement uses for one node, per epoch, so its
//! operator (and the dashboard) can see what the node will be paid for and why: bytes verified
//! by viewers' receipts wherever they were posted, the attested and unattested bytes it
//! claimed, the outcomes of the receipts it handed in (and, apart, of those viewers posted
//! themselves), the coordinator's probe traffic (never paid), what it earned
//! and every rule that cut something, with the rule's evidence. Also the network prefixes its
//! heartbeats came from, which per-prefix and per-operator caps use.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::clock::now_ms;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::Shared;
use crate::storage::{ActivityDelta, NodeEpochTraffic, NodePrefixRecord};

/// Epochs a report covers: the current one and this many before it.
const EPOCHS_BACK: i64 = 5;

/// One node's report.
#[derive(Debug, Serialize)]
pub(crate) struct NodeReport {
    node_id: String,
    generated_at_ms: i64,
    current_epoch: i64,
    /// Prefixes (IPv4 /24, IPv6 /48) the node's heartbeats came from, newest first.
    observed_prefixes: Vec<NodePrefixRecord>,
    /// Whether viewers can reach the node's advertised addresses, and which port to forward
    /// when not.
    reachability: crate::wire::ReachabilityReport,
    /// Newest epoch first.
    epochs: Vec<NodeEpochReport>,
    /// Its rewards by stage (unvested, vested, pending, paid, fees) and every payout.
    payouts: crate::api::ledger::NodePayouts,
}

/// What settlement sees of one node in one epoch.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct NodeEpochReport {
    pub(crate) epoch: i64,
    /// Whether the epoch is settled (its numbers are final).
    pub(crate) settled: bool,
    /// Bytes viewers' receipts acknowledged for this node (posted by the node or by viewers),
    /// without probe traffic.
    pub(crate) verified_bytes: i64,
    /// Viewer sessions and distinct viewer keys with receipts.
    pub(crate) verified_sessions: i64,
    pub(crate) verified_viewers: i64,
    /// Bytes the node claimed serving to receipt-signing viewers, and to viewers without
    /// receipts (unattested).
    pub(crate) claimed_attested_bytes: i64,
    pub(crate) claimed_unattested_bytes: i64,
    /// The coordinator's probe traffic acknowledged by receipts: never paid.
    pub(crate) probe_bytes: i64,
    pub(crate) probe_sessions: i64,
    /// Receipts the node handed in, and how they ended.
    pub(crate) receipts: ReceiptOutcomes,
    /// Receipts viewers posted to the coordinator themselves for the node's sessions, and how
    /// they ended: the viewers' doing, never held against the node.
    pub(crate) viewer_posted: ReceiptOutcomes,
    /// Rewards and penalties booked to the node at settlement (micro-units).
    pub(crate) rewarded: i64,
    pub(crate) penalised: i64,
    /// Every rule that fired for the node, with its evidence.
    pub(crate) cuts: Vec<Cut>,
}

/// Receipt outcomes booked to a node in an epoch.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct ReceiptOutcomes {
    submitted: i64,
    accepted: i64,
    forged: i64,
    replayed: i64,
    beyond_grant: i64,
    wrong_content: i64,
}

impl ReceiptOutcomes {
    fn of(activity: &ActivityDelta) -> Self {
        ReceiptOutcomes {
            submitted: activity.submitted,
            accepted: activity.accepted,
            forged: activity.forged,
            replayed: activity.replayed,
            beyond_grant: activity.beyond_grant,
            wrong_content: activity.wrong_content,
        }
    }
}

/// A rule that cut something, and its evidence as recorded at settlement.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Cut {
    rule: String,
    evidence: serde_json::Value,
}

/// One node's report for one epoch, from storage.
pub(crate) async fn epoch_report(
    state: &Shared,
    node_id: &str,
    epoch: i64,
) -> Result<NodeEpochReport, ApiError> {
    let storage = &state.storage;
    let mut report = NodeEpochReport {
        epoch,
        settled: storage.get_settlement(epoch).await?.is_some(),
        ..NodeEpochReport::default()
    };
    if let Some(traffic) = storage
        .traffic_for_epoch(epoch)
        .await?
        .into_iter()
        .find(|t| t.node_id == node_id)
    {
        let NodeEpochTraffic {
            verified_bytes,
            sessions,
            viewers,
            probe_bytes,
            probe_sessions,
            ..
        } = traffic;
        report.verified_bytes = verified_bytes;
        report.verified_sessions = sessions;
        report.verified_viewers = viewers;
        report.probe_bytes = probe_bytes;
        report.probe_sessions = probe_sessions;
    }
    if let Some(activity) = storage
        .activity_for_epoch(epoch)
        .await?
        .into_iter()
        .find(|a| a.node_id == node_id)
    {
        report.claimed_attested_bytes = activity.claimed_bytes;
        report.claimed_unattested_bytes = activity.unattested_bytes;
        report.receipts = ReceiptOutcomes::of(&activity);
    }
    if let Some(posted) = storage
        .viewer_posted_for_epoch(epoch)
        .await?
        .into_iter()
        .find(|a| a.node_id == node_id)
    {
        report.viewer_posted = ReceiptOutcomes::of(&posted);
    }
    if report.settled {
        for entry in storage.ledger_for_epoch(epoch).await? {
            if entry.node_id.as_deref() != Some(node_id) {
                continue;
            }
            match entry.kind.as_str() {
                "reward" => report.rewarded = report.rewarded.saturating_add(entry.amount),
                "penalty" => report.penalised = report.penalised.saturating_add(entry.amount),
                _ => {}
            }
        }
        report.cuts = storage
            .evidence_for_epoch(epoch)
            .await?
            .into_iter()
            .filter(|e| e.node_id == node_id)
            .map(|e| Cut {
                evidence: serde_json::from_str(&e.detail)
                    .unwrap_or(serde_json::Value::String(e.detail)),
                rule: e.rule,
            })
            .collect();
    }
    Ok(report)
}

/// `GET /nodes/{id}/report`: the current epoch and the five before it.
pub(crate) async fn report(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeReport>, ApiError> {
    let Some(node) = state.storage.get_node(&id).await? else {
        return Err(ApiError::NotFound { what: "node", id });
    };
    let checked = state
        .storage
        .reachability()
        .await?
        .into_iter()
        .find(|r| r.node_id == id && r.is_for(&node));
    let reachability = crate::workers::reachability::report(
        &node,
        checked,
        state.config.reachability_interval.is_some(),
    );
    let now = now_ms();
    let current_epoch = state.config.epoch_of(now);
    let mut epochs = Vec::new();
    for epoch in (current_epoch.saturating_sub(EPOCHS_BACK)..=current_epoch).rev() {
        if epoch < 0 {
            continue;
        }
        epochs.push(epoch_report(&state, &id, epoch).await?);
    }
    let observed_prefixes = state
        .storage
        .node_prefixes()
        .await?
        .into_iter()
        .filter(|p| p.node_id == id)
        .collect();
    let payouts = crate::api::ledger::payouts_of(&state, &id).await?;
    Ok(Json(NodeReport {
        payouts,
        node_id: id,
        generated_at_ms: now,
        current_epoch,
        observed_prefixes,
        reachability,
        epochs,
    }))
}
