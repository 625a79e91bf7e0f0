//! Earnings, epoch statements with Merkle proofs, payouts and the payout simulator.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use streamr_core::{
    split_pool, BalanceLeaf, ContentDigest, MerkleProof, MerkleTree, NodeEpochInput, RewardConfig,
    RewardSplit,
};

use super::nodes::NodePath;
use super::openapi::{
    BalanceLeafSchema, ErrorSchema, MerkleProofSchema, NodeEpochInputSchema, RewardConfigSchema,
    RewardSplitSchema,
};
use super::streams::Limit;
use super::{Admin, Shared};
use crate::error::{ApiError, StorageError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::storage::{PayoutRecord, SettlementRecord};
use crate::wire::{EarningsResponse, StatementResponse};

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
        node,
        total,
        entries,
        payouts,
    }))
}

/// Settled epochs, newest first.
#[utoipa::path(get, path = "/epochs", tag = "ledger", params(Limit),
    responses((status = 200, description = "Settlements", body = Vec<SettlementRecord>)))]
pub(crate) async fn list_epochs(
    State(state): State<Shared>,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<SettlementRecord>>, ApiError> {
    Ok(Json(state.storage.list_settlements(limit.value()).await?))
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
        settlement,
        entries,
        evidence,
    }))
}

/// A node's Merkle proof against an epoch's published root.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProofResponse {
    /// The epoch.
    pub epoch: i64,
    /// The root the proof leads to (hex).
    pub merkle_root: String,
    /// The node's leaf.
    #[schema(value_type = BalanceLeafSchema)]
    pub leaf: BalanceLeaf,
    /// The path from the leaf to the root.
    #[schema(value_type = MerkleProofSchema)]
    pub proof: MerkleProof,
}

impl ProofResponse {
    /// Whether the proof leads from the leaf to `published_root` (hex), the root the epoch's
    /// settlement published: an operator checks its balance without trusting this answer.
    pub fn verify(&self, published_root: &str) -> bool {
        match published_root.parse::<ContentDigest>() {
            Ok(root) => self.merkle_root == published_root && self.proof.verify(&root, &self.leaf),
            Err(_) => false,
        }
    }
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
        (status = 200, description = "Payouts", body = Vec<PayoutRecord>),
        (status = 401, description = "unauthorized", body = ErrorSchema),
    ))]
pub(crate) async fn pending_payouts(
    State(state): State<Shared>,
    _admin: Admin,
    ApiQuery(limit): ApiQuery<Limit>,
) -> Result<Json<Vec<PayoutRecord>>, ApiError> {
    Ok(Json(state.storage.pending_payouts(limit.value()).await?))
}

/// `POST /simulate`: the reward split on hypothetical inputs.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// The pool to split, micro-units.
    pub pool: u64,
    /// Hypothetical per-node contributions (each node once).
    #[schema(value_type = Vec<NodeEpochInputSchema>)]
    pub nodes: Vec<NodeEpochInput>,
    /// Reward parameters; the coordinator's own when absent.
    #[serde(default)]
    #[schema(value_type = Option<RewardConfigSchema>)]
    pub rewards: Option<RewardConfig>,
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
