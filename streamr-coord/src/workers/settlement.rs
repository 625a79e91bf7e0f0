//! Epoch settlement: turns stored receipts and probes into `streamr_core::EpochInputs`, runs
//! the core settlement engine and writes its statement, ledger entries and planned payouts in
//! one transaction.
//!
//! The engine is a pure function of the published inputs, so a replica (or a restarted
//! process) rebuilds it by replaying every stored epoch, checking each statement hash against
//! the stored one.

use std::collections::BTreeMap;

use streamr_core::{
    Account, EpochInputs, LedgerEntry, NodeEpochInput, NodeId, OperatorId, PayoutConfirmation,
    PayoutItem, PayoutSink, ProbeResult, ProbeSummary, Settlement, Subnet24, PPM,
};

use super::WorkerError;
use crate::api::AppState;
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::storage::{
    LedgerEntryRecord, NodeRecord, PayoutRecord, ProbeRecord, SettlementRecord, SettlementWrite,
};

/// Settlements read per page while rebuilding the engine.
const REPLAY_PAGE: i64 = 500;

/// Confirms every planned payout without sending it: settlement only plans payouts; the payout
/// worker hands them to the real sink after they are stored.
#[derive(Debug, Default)]
struct PlannedPayouts {
    items: Vec<PayoutItem>,
}

impl PayoutSink for PlannedPayouts {
    fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String> {
        self.items.push(item.clone());
        Ok(PayoutConfirmation {
            node_id: item.node_id,
            cumulative_net: item.cumulative_net,
            transferred: item.net,
        })
    }
}

/// The settlement engine and the last epoch it has applied.
#[derive(Debug, Default)]
pub(crate) struct Settler {
    engine: Settlement,
    last_epoch: Option<i64>,
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(epoch: i64, detail: impl Into<String>) -> WorkerError {
    WorkerError::CorruptHistory {
        epoch,
        detail: detail.into(),
    }
}

fn account_node(account: &Account) -> Option<NodeId> {
    match account {
        Account::Unvested(node) | Account::Vested(node) | Account::PaidOut(node) => Some(*node),
        _ => None,
    }
}

fn entry_record(entry: &LedgerEntry) -> LedgerEntryRecord {
    let kind = serde_json::to_value(entry.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", entry.kind));
    LedgerEntryRecord {
        idx: to_i64(entry.index),
        epoch: to_i64(entry.epoch),
        kind,
        debit: entry.from.to_string(),
        credit: entry.to.to_string(),
        node_id: account_node(&entry.to)
            .or_else(|| account_node(&entry.from))
            .map(|n| n.to_string()),
        amount: to_i64(entry.amount),
    }
}

impl Settler {
    /// Replays every stored settlement into a fresh engine.
    pub(crate) async fn rebuild(state: &AppState) -> Result<Settler, WorkerError> {
        let mut settler = Settler::default();
        let mut from = i64::MIN;
        loop {
            let page = state.storage.settlements_from(from, REPLAY_PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.epoch.saturating_add(1);
            for stored in &page {
                settler.replay(state, stored)?;
            }
            if i64::try_from(page.len()).unwrap_or(0) < REPLAY_PAGE {
                break;
            }
        }
        Ok(settler)
    }

    fn replay(&mut self, state: &AppState, stored: &SettlementRecord) -> Result<(), WorkerError> {
        let inputs: EpochInputs = serde_json::from_str(&stored.inputs_json)
            .map_err(|e| corrupt(stored.epoch, format!("inputs: {e}")))?;
        let outcome =
            self.engine
                .settle_epoch(&inputs)
                .map_err(|source| WorkerError::Settlement {
                    epoch: stored.epoch,
                    source,
                })?;
        let mut planned = PlannedPayouts::default();
        self.engine
            .pay_out(inputs.epoch, &state.config.payouts, &mut planned)
            .map_err(|source| WorkerError::Settlement {
                epoch: stored.epoch,
                source,
            })?;
        let hash = outcome.statement.hash().to_string();
        if hash != stored.statement_hash {
            return Err(corrupt(
                stored.epoch,
                format!(
                    "replayed statement hash {hash} differs from stored {}",
                    stored.statement_hash
                ),
            ));
        }
        self.last_epoch = Some(stored.epoch);
        Ok(())
    }

    /// Settles every epoch that ended more than the grace period ago. Returns how many epochs
    /// this call settled (other replicas' settlements are replayed, not counted).
    pub(crate) async fn settle_due(&mut self, state: &AppState) -> Result<u32, WorkerError> {
        let config = &state.config;
        let grace = i64::try_from(config.settlement_grace.as_millis()).unwrap_or(0);
        let open_epoch = config.epoch_of(now_ms().saturating_sub(grace));
        let mut settled = 0;
        loop {
            let stored_last = state.storage.last_settled_epoch().await?;
            if stored_last != self.last_epoch {
                *self = Settler::rebuild(state).await?;
            }
            let next = match self.last_epoch {
                Some(last) => last.saturating_add(1),
                None => match state.storage.first_activity_epoch().await? {
                    Some(first) => first,
                    None => return Ok(settled),
                },
            };
            if next >= open_epoch {
                return Ok(settled);
            }
            match self.settle_one(state, next).await {
                Ok(true) => {
                    settled += 1;
                    Metrics::inc(&state.metrics.epochs_settled_total);
                }
                // Another replica got there first: replay its work on the next turn.
                Ok(false) => *self = Settler::rebuild(state).await?,
                Err(err) => {
                    // The engine may hold the unsaved epoch: rebuild it from storage.
                    *self = Settler::rebuild(state).await?;
                    return Err(err);
                }
            }
        }
    }

    /// The published inputs of `epoch`, built from stored receipts and probes.
    pub(crate) async fn inputs_for(
        state: &AppState,
        epoch: i64,
    ) -> Result<EpochInputs, WorkerError> {
        let usage = state.storage.usage_for_epoch(epoch).await?;
        let probes = state.storage.probes_for_epoch(epoch).await?;
        let nodes: BTreeMap<String, NodeRecord> = state
            .storage
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut results: BTreeMap<&str, Vec<ProbeResult>> = BTreeMap::new();
        for probe in &probes {
            if let Some(result) = probe_result(probe) {
                results
                    .entry(probe.node_id.as_str())
                    .or_default()
                    .push(result);
            }
        }
        let summaries: BTreeMap<&str, ProbeSummary> = results
            .iter()
            .map(|(id, r)| {
                (
                    *id,
                    ProbeSummary::from_results(&state.config.probe_policy, r),
                )
            })
            .collect();
        let epoch_ms = u64::try_from(state.config.epoch_length_ms()).unwrap_or(0);
        let mut inputs = Vec::new();
        let mut ids: Vec<&str> = usage.iter().map(|u| u.node_id.as_str()).collect();
        ids.extend(summaries.keys().copied());
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let Ok(node_id) = id.parse::<NodeId>() else {
                continue;
            };
            let node = nodes.get(id);
            let used = usage.iter().find(|u| u.node_id == id);
            let summary = summaries.get(id).copied().unwrap_or_default();
            let operator = node
                .and_then(|n| OperatorId::new(n.operator.clone()).ok())
                .or_else(|| OperatorId::new(id).ok());
            let Some(operator) = operator else { continue };
            inputs.push(NodeEpochInput {
                node_id,
                operator,
                subnet: node.map_or(Subnet24([0, 0, 0]), |n| subnet(&n.subnet)),
                verified_bytes: used.map_or(0, |u| to_u64(u.bytes)),
                on_time_bytes: used.map_or(0, |u| to_u64(u.on_time_bytes)),
                flagged_bytes: 0,
                availability_ppm: summary.availability_ppm(),
                unattested_bytes: 0,
                probe_capacity_bytes: summary.capacity_bytes(epoch_ms),
                probation_ppm: PPM,
            });
        }
        Ok(EpochInputs {
            epoch: to_u64(epoch),
            pool: config_pool(state),
            config: state.config.settlement.clone(),
            nodes: inputs,
            penalties: Vec::new(),
        })
    }

    async fn settle_one(&mut self, state: &AppState, epoch: i64) -> Result<bool, WorkerError> {
        let inputs = Settler::inputs_for(state, epoch).await?;
        let outcome = self
            .engine
            .settle_epoch(&inputs)
            .map_err(|source| WorkerError::Settlement { epoch, source })?;
        let mut planned = PlannedPayouts::default();
        self.engine
            .pay_out(inputs.epoch, &state.config.payouts, &mut planned)
            .map_err(|source| WorkerError::Settlement { epoch, source })?;
        let entries: Vec<LedgerEntryRecord> = self
            .engine
            .ledger()
            .entries()
            .get(outcome.first_entry..)
            .unwrap_or_default()
            .iter()
            .map(entry_record)
            .collect();
        let now = now_ms();
        let mut payouts = Vec::with_capacity(planned.items.len());
        for item in &planned.items {
            let node_id = item.node_id.to_string();
            let payout_address = state
                .storage
                .get_node(&node_id)
                .await?
                .map(|n| n.payout_address)
                .unwrap_or_default();
            payouts.push(PayoutRecord {
                node_id,
                cumulative_net: to_i64(item.cumulative_net),
                epoch,
                payout_address,
                gross: to_i64(item.gross),
                fees: to_i64(item.fixed_fee.saturating_add(item.proportional_fee)),
                net: to_i64(item.net),
                status: "pending".into(),
                sink_reference: None,
                updated_at_ms: now,
            });
        }
        let statement = &outcome.statement;
        let write = SettlementWrite {
            settlement: SettlementRecord {
                epoch,
                previous_hash: statement.previous_hash.to_string(),
                statement_hash: statement.hash().to_string(),
                merkle_root: statement.merkle_root.to_string(),
                pool: to_i64(statement.pool),
                distributed: to_i64(statement.distributed),
                penalties: to_i64(statement.penalties),
                vested: to_i64(statement.vested),
                leaf_count: to_i64(statement.leaf_count),
                inputs_json: to_json(&inputs),
                statement_json: to_json(statement),
                leaves_json: to_json(&outcome.leaves),
                settled_at_ms: now,
                settled_by: state.config.replica_id.clone(),
            },
            follows: self.last_epoch,
            entries,
            evidence: Vec::new(),
            payouts,
        };
        if state.storage.settle_epoch(&write).await? {
            self.last_epoch = Some(epoch);
            tracing::info!(
                epoch,
                distributed = statement.distributed,
                merkle_root = %statement.merkle_root,
                "epoch settled"
            );
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// The core probe result a stored probe row holds.
pub(crate) fn probe_result(probe: &ProbeRecord) -> Option<ProbeResult> {
    Some(ProbeResult {
        node_id: probe.node_id.parse().ok()?,
        hash_ok: probe.hash_ok,
        timed_out: probe.timed_out,
        ttfb_ms: to_u64(probe.ttfb_ms),
        throughput_bytes_per_s: to_u64(probe.throughput_bytes_per_s),
    })
}

fn config_pool(state: &AppState) -> u64 {
    state.config.reward_pool_per_epoch
}

/// Parses `a.b.c.0/24` (as stored) back into a [`Subnet24`]; anything else maps to a /24 of its
/// own derived from a hash, so unknown hosts are never pooled together by accident.
fn subnet(text: &str) -> Subnet24 {
    let prefix = text.strip_suffix(".0/24").unwrap_or_default();
    let octets: Vec<u8> = prefix.split('.').filter_map(|p| p.parse().ok()).collect();
    match octets.as_slice() {
        [a, b, c] => Subnet24([*a, *b, *c]),
        _ => {
            let hash = blake3::hash(text.as_bytes());
            let bytes = hash.as_bytes();
            Subnet24([bytes[0], bytes[1], bytes[2]])
        }
    }
}

/// JSON text of a value the settlement publishes (these types always serialise).
fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
