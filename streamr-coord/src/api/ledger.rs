//! Earnings, epoch statements with Merkle proofs, payouts and the payout simulator.

use axum::extract::State;
use axum::Json;
use streamr_core::{split_pool, BalanceLeaf, MerkleTree, RewardSplit};

use super::nodes::NodePath;
use super::openapi::{ErrorSchema, RewardSplitSchema};
use super::streams::Limit;
use super::{Admin, Shared};
use crate::error::{ApiError, StorageError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::storage::{to_wire, LedgerEntryRecord, PayoutRecord, SettlementRecord};
use crate::wire::{EarningsResponse, PayoutInfo, SettlementInfo, StatementResponse};

/// A node's ledger entries, total earned and payouts.
#[utoipa::path(get, path = "/nodes/{id}/earnings", tag = "ledger", params(NodePath),
    responses(
        (status = 200, description = "Earnings", body = EarningsResponse),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn earnings(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EarningsResponse>, ApiError> {
    let node = state
        .storage
        .get_node(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "node",
            id: id.clone(),
        })?;
    let entries = state.storage.ledger_for_node(&id).await?;
    let unvested = format!("unvested:{id}");
    let total = entries
        .iter()
        .filter(|e| e.kind == "reward" && e.credit == unvested)
        .map(|e| e.amount)
        .sum::<i64>()
        - entries
            .iter()
            .filter(|e| e.kind == "penalty" && e.debit == unvested)
            .map(|e| e.amount)
            .sum::<i64>();
    let payouts = state.storage.payouts_for_node(&id).await?;
    Ok(Json(EarningsResponse {
        node: node.into(),
        total,
        entries: to_wire(entries),
        payouts: to_wire(payouts),
    }))
}

pub use streamr_client::wire::{NodePayouts, ProofResponse, SimulationRequest};

/// The lifecycle of node `id` from its ledger entries and payouts (policy fields zero).
pub(crate) fn payouts_from_records(
    id: &str,
    payout_address: &str,
    entries: &[LedgerEntryRecord],
    payouts: Vec<PayoutRecord>,
) -> NodePayouts {
    let balance = |account: &str| {
        entries
            .iter()
            .map(|e| {
                let credit = if e.credit == account { e.amount } else { 0 };
                let debit = if e.debit == account { e.amount } else { 0 };
                credit.saturating_sub(debit)
            })
            .fold(0i64, i64::saturating_add)
    };
    let (unvested_account, vested_account) = (format!("unvested:{id}"), format!("vested:{id}"));
    let sum = |kind: &str, pick: &dyn Fn(&LedgerEntryRecord) -> bool| {
        entries
            .iter()
            .filter(|e| e.kind == kind && pick(e))
            .map(|e| e.amount)
            .fold(0i64, i64::saturating_add)
    };
    let earned = sum("reward", &|e| e.credit == unvested_account)
        .saturating_sub(sum("penalty", &|e| e.debit == unvested_account));
    let fees = sum("fee", &|e| e.debit == vested_account);
    let paid_out = balance(&format!("paid:{id}"));
    let paid = payouts
        .iter()
        .filter(|p| p.status == "sent")
        .map(|p| p.net)
        .fold(0i64, i64::saturating_add);
    NodePayouts {
        node_id: id.to_owned(),
        payout_address: payout_address.to_owned(),
        earned,
        unvested: balance(&unvested_account),
        vested: balance(&vested_account),
        pending: paid_out.saturating_sub(paid).max(0),
        paid,
        fees,
        threshold: 0,
        fee_fixed: 0,
        fee_ppm: 0,
        payouts: crate::storage::to_wire(payouts),
    }
}

/// Where a node's rewards are in their lifecycle, and every payout made to it.
#[utoipa::path(get, path = "/nodes/{id}/payouts", tag = "ledger", params(NodePath),
    responses(
        (status = 200, description = "Payout lifecycle", body = NodePayouts),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn node_payouts(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodePayouts>, ApiError> {
    Ok(Json(payouts_of(&state, &id).await?))
}

/// Node `id`'s [`NodePayouts`], with the coordinator's payout policy.
pub(crate) async fn payouts_of(state: &Shared, id: &str) -> Result<NodePayouts, ApiError> {
    let node = state
        .storage
        .get_node(id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "node",
            id: id.to_owned(),
        })?;
    let entries = state.storage.ledger_for_node(id).await?;
    let payouts = state.storage.payouts_for_node(id).await?;
    let mut lifecycle = payouts_from_records(id, &node.payout_address, &entries, payouts);
    let policy = &state.config.payouts;
    lifecycle.threshold = id
        .parse::<streamr_core::NodeId>()
        .ok()
        .and_then(|node| policy.thresholds.get(&node).copied())
        .unwrap_or(policy.default_threshold);
    lifecycle.fee_fixed = policy.fees.fixed;
    lifecycle.fee_ppm = policy.fees.proportional_ppm;
    Ok(lifecycle)
}

/// Settled epochs, newest first.
#[utoipa::path(get, path = "/epochs", tag = "ledger", params(Limit),
    responses((status = 200, description = "Settlements", body = Vec<SettlementInfo>)))]
pub(crate) async fn list_epochs(
    State(state): State<Shared>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<SettlementInfo>>, ApiError> {
    Ok(Json(to_wire(
        state.storage.list_settlements(limit.value()).await?,
    )))
}

async fn load_settlement(state: &Shared, epoch: i64) -> Result<SettlementRecord, ApiError> {
    state
        .storage
        .get_settlement(epoch)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "settled epoch",
            id: epoch.to_string(),
        })
}

/// An epoch's statement: settlement (inputs, statement, Merkle root), ledger entries, fraud
/// evidence.
#[utoipa::path(get, path = "/epochs/{epoch}", tag = "ledger",
    params(("epoch" = i64, Path, description = "Epoch number.")),
    responses(
        (status = 200, description = "The statement", body = StatementResponse),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn statement(
    State(state): State<Shared>,
    ApiPath(epoch): ApiPath<i64>,
) -> Result<Json<StatementResponse>, ApiError> {
    let settlement = load_settlement(&state, epoch).await?;
    let entries = state.storage.ledger_for_epoch(epoch).await?;
    let evidence = state.storage.evidence_for_epoch(epoch).await?;
    Ok(Json(StatementResponse {
        settlement: settlement.into(),
        entries: to_wire(entries),
        evidence: to_wire(evidence),
    }))
}

/// A node's Merkle proof against the epoch's root.
#[utoipa::path(get, path = "/epochs/{epoch}/proofs/{node_id}", tag = "ledger",
    params(
        ("epoch" = i64, Path, description = "Epoch number."),
        ("node_id" = String, Path, description = "Node id, hex."),
    ),
    responses(
        (status = 200, description = "The proof", body = ProofResponse),
        (status = 404, description = "not_found", body = ErrorSchema),
    ))]
pub(crate) async fn proof(
    State(state): State<Shared>,
    ApiPath((epoch, node_id)): ApiPath<(i64, String)>,
) -> Result<Json<ProofResponse>, ApiError> {
    let settlement = load_settlement(&state, epoch).await?;
    let leaves: Vec<BalanceLeaf> = serde_json::from_str(&settlement.leaves_json).map_err(|e| {
        ApiError::Storage(StorageError::Corrupt {
            what: "merkle leaves",
            detail: format!("epoch {epoch}: {e}"),
        })
    })?;
    let not_found = || ApiError::NotFound {
        what: "node in epoch",
        id: format!("{node_id} @ {epoch}"),
    };
    let index = leaves
        .iter()
        .position(|leaf| leaf.node_id.to_string() == node_id)
        .ok_or_else(not_found)?;
    let tree = MerkleTree::build(&leaves);
    let proof = tree.proof(index).ok_or_else(not_found)?;
    let leaf = leaves.get(index).copied().ok_or_else(not_found)?;
    Ok(Json(ProofResponse {
        epoch,
        merkle_root: settlement.merkle_root,
        leaf,
        proof,
    }))
}

/// Payouts not yet handed to the payout sink.
#[utoipa::path(get, path = "/payouts/pending", tag = "ledger", security(("admin" = [])),
    params(Limit),
    responses(
        (status = 200, description = "Payouts", body = Vec<PayoutInfo>),
        (status = 401, description = "unauthorized", body = ErrorSchema),
    ))]
pub(crate) async fn pending_payouts(
    State(state): State<Shared>,
    _admin: Admin,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<PayoutInfo>>, ApiError> {
    Ok(Json(to_wire(
        state.storage.pending_payouts(limit.value()).await?,
    )))
}

/// Most nodes one simulation may name.
pub(crate) const MAX_SIMULATED_NODES: usize = 10_000;

/// The reward split on hypothetical inputs.
#[utoipa::path(post, path = "/simulate", tag = "ledger", request_body = SimulationRequest,
    responses((status = 200, description = "The split", body = RewardSplitSchema)))]
pub(crate) async fn simulate(
    State(state): State<Shared>,
    ApiJson(request): ApiJson<SimulationRequest>,
) -> Result<Json<RewardSplit>, ApiError> {
    if request.nodes.len() > MAX_SIMULATED_NODES {
        return Err(ApiError::InvalidField {
            field: "nodes",
            reason: format!("at most {MAX_SIMULATED_NODES} nodes"),
        });
    }
    let mut ids: Vec<_> = request.nodes.iter().map(|n| n.node_id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|pair| pair.first() == pair.get(1)) {
        return Err(ApiError::InvalidField {
            field: "nodes",
            reason: "a node is listed twice".into(),
        });
    }
    let rewards = request
        .rewards
        .unwrap_or_else(|| state.config.settlement.rewards.clone());
    Ok(Json(split_pool(request.pool, &request.nodes, &rewards)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, debit: &str, credit: &str, amount: i64) -> LedgerEntryRecord {
        LedgerEntryRecord {
            idx: 0,
            epoch: 0,
            kind: kind.into(),
            debit: debit.into(),
            credit: credit.into(),
            node_id: Some("n".into()),
            amount,
        }
    }

    fn payout(net: i64, status: &str) -> PayoutRecord {
        PayoutRecord {
            node_id: "n".into(),
            cumulative_net: net,
            epoch: 0,
            payout_address: "0xn".into(),
            gross: net + 9,
            fees: 9,
            net,
            status: status.into(),
            sink_reference: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn the_lifecycle_splits_earnings_into_stages_that_add_up() {
        let entries = [
            entry("reward", "reward pool", "unvested:n", 600),
            entry("reward", "reward pool", "unvested:n", 400),
            entry("penalty", "unvested:n", "penalties", 50),
            entry("vesting", "unvested:n", "vested:n", 500),
            entry("fee", "vested:n", "fees", 9),
            entry("payout", "vested:n", "paid:n", 391),
            entry("fee", "vested:n", "fees", 2),
            entry("payout", "vested:n", "paid:n", 48),
            // Another node's entries do not count.
            entry("reward", "reward pool", "unvested:m", 999),
        ];
        let lifecycle = payouts_from_records(
            "n",
            "0xn",
            &entries,
            vec![payout(48, "pending"), payout(391, "sent")],
        );
        assert_eq!(
            (
                lifecycle.earned,
                lifecycle.unvested,
                lifecycle.vested,
                lifecycle.pending,
                lifecycle.paid,
                lifecycle.fees
            ),
            (950, 450, 50, 48, 391, 11)
        );
        assert!(lifecycle.is_conserved());
        assert_eq!(lifecycle.payouts.len(), 2, "sent payouts are listed too");
    }
}
