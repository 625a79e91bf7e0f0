//! Epoch settlement: turns stored receipts and probes into `streamr_core::EpochInputs`, runs
//! the core settlement engine and writes its statement, ledger entries and planned payouts in
//! one transaction.
//!
//! The engine is a pure function of the published inputs, so a replica (or a restarted
//! process) rebuilds it by replaying every stored epoch, checking each statement hash against
//! the stored one.

use std::collections::{BTreeMap, BTreeSet};

use streamr_core::{
    operator_route_shares, Account, EpochInputs, EpochObservations, Evidence, FraudEngine,
    IssuedGrant, LedgerEntry, NetPrefix, NodeClaims, NodeId, NodeProfile, OperatorId,
    PayoutConfirmation, PayoutItem, PayoutSink, ProbeResult, ProbeSummary, ReceiptTally, SessionId,
    SessionUsage, Settlement, StreamId, Verdict, ViewerKey, ViewerProfile,
};

use super::WorkerError;
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::storage::{
    ActivityDelta, EvidenceRecord, LedgerEntryRecord, NodeRecord, PayoutRecord, ProbeRecord,
    SessionRecord, SettlementRecord, SettlementWrite,
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

/// The settlement and fraud engines and the last epoch they have applied.
#[derive(Debug)]
pub(crate) struct Settler {
    engine: Settlement,
    fraud: FraudEngine,
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
    /// Engines with no history.
    pub(crate) fn new(config: &crate::config::CoordConfig) -> Settler {
        Settler {
            engine: Settlement::new(),
            fraud: FraudEngine::new(config.fraud.clone()),
            last_epoch: None,
        }
    }

    /// Replays every stored settlement into fresh engines.
    pub(crate) async fn rebuild(state: &AppState) -> Result<Settler, WorkerError> {
        let mut settler = Settler::new(&state.config);
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
        // The fraud engine remembers viewer history: feed it what it assessed then.
        if !stored.observations_json.is_empty() {
            let observations: EpochObservations =
                serde_json::from_str(&stored.observations_json)
                    .map_err(|e| corrupt(stored.epoch, format!("observations: {e}")))?;
            self.fraud.assess(&observations);
        }
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

    /// Settles every epoch whose receipt deadline has passed (the grace period after its end,
    /// or after an outage that held its receipts back: [`crate::outages`]), after writing this
    /// process's batch of session heartbeats (other replicas write theirs within
    /// [`CoordConfig::heartbeat_totals_interval`](crate::CoordConfig::heartbeat_totals_interval),
    /// which the grace should exceed). Judges deadlines by the outages on record at this
    /// process's last note, and by that note's time (noting first unless it is at most a
    /// liveness interval old). Returns how many epochs this call settled (other
    /// replicas' settlements are replayed, not counted).
    pub(crate) async fn settle_due(&mut self, state: &AppState) -> Result<u32, WorkerError> {
        let config = &state.config;
        let (noted_ms, outages) = state
            .liveness
            .outages(
                config,
                state.storage.as_ref(),
                &crate::clock::SystemClock,
                &state.metrics,
                config.liveness_interval(),
            )
            .await?;
        if let Err(error) = state.write_heartbeat_totals().await {
            tracing::warn!(%error, "session heartbeat totals not written before settling");
        }
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
            if outages.receipt_deadline(config, next) >= noted_ms {
                return Ok(settled);
            }
            // Nothing is booked to the epoch once its inputs are read: a receipt accepted
            // before its deadline whose write comes after this goes to the next epoch.
            state.storage.close_epochs_through(next).await?;
            match self.settle_one(state, next).await {
                Ok(true) => {
                    settled += 1;
                    Metrics::inc(&state.metrics.epochs_settled_total);
                }
                // Another replica got there first: replay its work on the next turn.
                Ok(false) => {
                    Metrics::inc(&state.metrics.settlement_races_lost_total);
                    *self = Settler::rebuild(state).await?;
                }
                Err(err) => {
                    // The engine may hold the unsaved epoch: rebuild it from storage.
                    *self = Settler::rebuild(state).await?;
                    return Err(err);
                }
            }
        }
    }

    /// What the fraud rules look at for `epoch`, built from storage.
    pub(crate) async fn observations_for(
        &self,
        state: &AppState,
        epoch: i64,
    ) -> Result<EpochObservations, WorkerError> {
        let config = &state.config;
        let storage = &state.storage;
        let nodes = storage.list_nodes().await?;
        let bindings: BTreeMap<String, String> =
            storage.operator_bindings().await?.into_iter().collect();
        // Each node's prefix is the one its heartbeats last came from (newest first); the one
        // recorded at registration where no heartbeat was observed (a node on the
        // coordinator's own host).
        let mut observed: BTreeMap<String, String> = BTreeMap::new();
        for record in storage.node_prefixes().await? {
            observed.entry(record.node_id).or_insert(record.prefix);
        }
        let node_subnet = |node: &NodeRecord| {
            subnet(
                observed
                    .get(&node.id)
                    .map_or(node.subnet.as_str(), String::as_str),
            )
        };
        let mut profiles = Vec::new();
        for node in &nodes {
            let Ok(node_id) = node.id.parse::<NodeId>() else {
                continue;
            };
            let Some(operator) = operator_of(node, &bindings) else {
                continue;
            };
            let first_epoch = config.epoch_of(node.registered_at_ms).max(0);
            let epochs = epoch.saturating_sub(first_epoch).max(1);
            let earned = self
                .engine
                .balance(&node_id)
                .map_or(0, |b| b.cumulative_earned);
            profiles.push(NodeProfile {
                node_id,
                operator,
                subnet: node_subnet(node),
                first_epoch: to_u64(first_epoch),
                average_reward: earned / to_u64(epochs).max(1),
            });
        }

        let usage = storage.session_usage_for_epoch(epoch).await?;
        let mut viewers: BTreeMap<ViewerKey, ViewerProfile> = BTreeMap::new();
        let mut sessions = Vec::with_capacity(usage.len());
        let mut sessions_per_node: BTreeMap<String, u64> = BTreeMap::new();
        // Every stream's bitrate ceiling is what a grant allows; the engine measures each
        // stream's real bitrate from the epoch's receipts and uses that where it is lower.
        let mut bitrates: BTreeMap<StreamId, u64> = BTreeMap::new();
        let epoch_start = epoch.saturating_mul(config.epoch_length_ms());
        let epoch_end = epoch_start.saturating_add(config.epoch_length_ms());
        let mut grants: BTreeMap<SessionId, IssuedGrant> = BTreeMap::new();
        for record in storage
            .sessions_live_between(epoch_start, epoch_end)
            .await?
        {
            if let Some(grant) = issued_grant(&record, epoch_start, epoch_end) {
                bitrates.insert(grant.stream_id.clone(), config.grant_bytes_per_second);
                grants.insert(grant.session_id, grant);
            }
        }
        // The coordinator's own probe sessions go to the engine like viewers' sessions (the
        // node served them, and claims them), marked as probes by their grants: the engine
        // never pays them and never lets them bound unattested bytes.
        for row in &usage {
            let (Ok(session_id), Ok(node_id), Ok(viewer), Ok(stream_id)) = (
                row.session_id.parse::<SessionId>(),
                row.node_id.parse::<NodeId>(),
                row.viewer.parse::<ViewerKey>(),
                StreamId::new(row.stream_id.clone()),
            ) else {
                continue;
            };
            let credited = to_u64(row.bytes_total.saturating_sub(row.previous_total));
            if row.probe {
                // A probe whose grant the log missed (issued and expired around the epoch's
                // edge) is still a probe.
                grants
                    .entry(session_id)
                    .or_insert_with(|| IssuedGrant {
                        session_id,
                        node_id,
                        viewer,
                        stream_id: stream_id.clone(),
                        live_ms: 0,
                        probe: true,
                    })
                    .probe = true;
            } else {
                viewers.entry(viewer).or_insert_with(|| ViewerProfile {
                    viewer,
                    subnet: subnet(&row.viewer_subnet),
                    operator: None,
                });
            }
            *sessions_per_node.entry(row.node_id.clone()).or_default() += 1;
            bitrates.insert(stream_id.clone(), config.grant_bytes_per_second);
            sessions.push(SessionUsage {
                session_id,
                node_id,
                viewer,
                stream_id,
                // Receipts are cumulative: the epoch's credit is how far the session's total
                // moved, which no interleaving of concurrent submissions can inflate.
                bytes: credited,
                on_time_bytes: to_u64(row.on_time_bytes).min(credited),
                bytes_total: to_u64(row.bytes_total),
                started_ms: to_u64(row.started_ms),
                last_receipt_ms: to_u64(row.last_receipt_ms),
                // A receipt signed after an outage covers the span since the previous one.
                covers_from_ms: row.covers_from_ms.map(to_u64),
            });
        }

        // Receipts viewers posted to the coordinator directly are tallied apart from the ones
        // the node handed in: only the node's own can be held against it.
        let viewer_posted: BTreeMap<String, ReceiptTally> = storage
            .viewer_posted_for_epoch(epoch)
            .await?
            .iter()
            .map(|a| (a.node_id.clone(), tally(a)))
            .collect();
        let claims = storage
            .activity_for_epoch(epoch)
            .await?
            .into_iter()
            .filter_map(|a| {
                Some(NodeClaims {
                    node_id: a.node_id.parse().ok()?,
                    claimed_bytes: to_u64(a.claimed_bytes),
                    unattested_bytes: to_u64(a.unattested_bytes),
                    sessions: sessions_per_node.get(&a.node_id).copied().unwrap_or(0),
                    receipts: tally(&a),
                    viewer_posted: viewer_posted.get(&a.node_id).copied().unwrap_or_default(),
                    heartbeats: Some(to_u64(a.heartbeats)),
                })
            })
            .collect();

        let mut results: BTreeMap<String, Vec<ProbeResult>> = BTreeMap::new();
        for probe in storage.probes_for_epoch(epoch).await? {
            if let Some(result) = probe_result(&probe) {
                results
                    .entry(probe.node_id.clone())
                    .or_default()
                    .push(result);
            }
        }
        let probes = results
            .iter()
            .filter_map(|(id, r)| {
                Some((
                    id.parse::<NodeId>().ok()?,
                    ProbeSummary::from_results(&config.probe_policy, r),
                ))
            })
            .collect();

        // Each operator's expected share of sessions: its share of the routing weight of the
        // active nodes its probes found serving (routing offers no viewer to a node that
        // serves nothing).
        let probes: Vec<(NodeId, ProbeSummary)> = probes;
        let by_node: BTreeMap<String, &ProbeSummary> = probes
            .iter()
            .map(|(id, summary)| (id.to_string(), summary))
            .collect();
        // Nodes that served viewers (not the prober) verified bytes in the epoch.
        let serving: BTreeSet<String> = sessions
            .iter()
            .filter(|s| s.bytes > 0 && !grants.get(&s.session_id).is_some_and(|g| g.probe))
            .map(|s| s.node_id.to_string())
            .collect();
        let active: Vec<(OperatorId, Option<&ProbeSummary>, bool)> = nodes
            .iter()
            .filter(|n| n.active)
            .filter_map(|n| {
                Some((
                    operator_of(n, &bindings)?,
                    by_node.get(&n.id).copied(),
                    serving.contains(&n.id),
                ))
            })
            .collect();
        let operator_route_share_ppm = operator_route_shares(
            active
                .iter()
                .map(|(operator, probes, served)| (operator, *probes, *served)),
            config.router.newcomer_floor_ppm,
        );

        let window = i64::try_from(config.fraud.collusion_window_epochs).unwrap_or(i64::MAX);
        let by_id: BTreeMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut recently_penalized = Vec::new();
        for evidence in storage
            .evidence_between(epoch.saturating_sub(window), epoch)
            .await?
        {
            let penalized = serde_json::from_str::<Evidence>(&evidence.detail)
                .map(|e| matches!(e.verdict, Verdict::Penalize { .. }))
                .unwrap_or(false);
            if let (true, Some(node)) = (penalized, by_id.get(evidence.node_id.as_str())) {
                if let Some(operator) = operator_of(node, &bindings) {
                    recently_penalized.push((node_subnet(node), operator));
                }
            }
        }

        // What the probes took from each node without a receipt: the node reports it as
        // unattested (it cannot tell a probe from a viewer), and the engine nets it out.
        let probe_traffic = storage
            .probe_traffic_for_epoch(epoch)
            .await?
            .into_iter()
            .filter_map(|(node, bytes)| Some((node.parse::<NodeId>().ok()?, to_u64(bytes))))
            .collect();

        Ok(EpochObservations {
            epoch: to_u64(epoch),
            epoch_ms: to_u64(config.epoch_length_ms()),
            nodes: profiles,
            viewers: viewers.into_values().collect(),
            sessions,
            claims,
            probes,
            bitrates: bitrates.into_iter().collect(),
            operator_route_share_ppm,
            recently_penalized,
            grants: Some(grants.into_values().collect()),
            probe_traffic,
        })
    }

    async fn settle_one(&mut self, state: &AppState, epoch: i64) -> Result<bool, WorkerError> {
        let observations = self.observations_for(state, epoch).await?;
        let report = self.fraud.assess(&observations);
        let inputs = EpochInputs {
            epoch: to_u64(epoch),
            pool: state.config.reward_pool_per_epoch,
            config: state.config.settlement.clone(),
            nodes: report.node_inputs.clone(),
            penalties: report.penalties.clone(),
        };
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
                observations_json: to_json(&observations),
                settled_at_ms: now,
                settled_by: state.config.replica_id.clone(),
            },
            follows: self.last_epoch,
            entries,
            evidence: report
                .evidence
                .iter()
                .map(|e| EvidenceRecord {
                    epoch,
                    node_id: e.node_id.to_string(),
                    rule: e.rule.as_str().to_owned(),
                    detail: to_json(e),
                    created_at_ms: now,
                })
                .collect(),
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

/// The receipt outcomes an activity row counts.
fn tally(a: &ActivityDelta) -> ReceiptTally {
    ReceiptTally {
        submitted: to_u64(a.submitted),
        accepted: to_u64(a.accepted),
        forged: to_u64(a.forged),
        replayed: to_u64(a.replayed),
        beyond_grant: to_u64(a.beyond_grant),
        wrong_content: to_u64(a.wrong_content),
    }
}

/// The grant log entry of a stored session for the epoch `[epoch_start, epoch_end)`: live from
/// its issue to its expiry, clipped to the epoch. `None` for a row that does not parse.
fn issued_grant(record: &SessionRecord, epoch_start: i64, epoch_end: i64) -> Option<IssuedGrant> {
    let from = record.issued_at_ms.max(epoch_start);
    let to = record.expiry_ms.min(epoch_end);
    Some(IssuedGrant {
        session_id: record.session_id.parse().ok()?,
        node_id: record.node_id.parse().ok()?,
        viewer: record.viewer.parse().ok()?,
        stream_id: StreamId::new(record.stream_id.clone()).ok()?,
        live_ms: to_u64(to.saturating_sub(from)),
        probe: record.probe,
    })
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

/// The operator the rules group `node` under: the name it registered with (in its canonical
/// form) where it proved membership under the key that name is bound to now (`bindings`:
/// canonical name to key), else the node alone: a name is free text, and unrelated nodes share
/// the default one (see [`OperatorId::of_node`]). A node whose proof was by another key (one
/// that lost the name when bindings stored before names were canonical were merged) is not a
/// member.
fn operator_of(node: &NodeRecord, bindings: &BTreeMap<String, String>) -> Option<OperatorId> {
    let member = node
        .operator_key
        .as_ref()
        .filter(|key| {
            bindings.get(&streamr_core::canonical_operator_name(&node.operator)) == Some(*key)
        })
        .map(|_| node.operator.as_str());
    OperatorId::of_node(member, &node.id).ok()
}

/// The network a stored prefix string names: `a.b.c.0/24` or an IPv6 `x:y:z::/48` as observed
/// on connections; anything else (a host name from a URL, a local trial's own network per
/// participant, empty) a network of that name alone, so unknown hosts are never pooled together
/// by accident.
fn subnet(text: &str) -> NetPrefix {
    NetPrefix::parse(text).unwrap_or_else(|| NetPrefix::named(text))
}

/// JSON text of a value the settlement publishes (these types always serialise).
fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the API stores a local trial's networks.
    fn local_trial_subnet(kind: &str, who: &str) -> String {
        format!("local-trial/{kind}/{who}")
    }

    #[test]
    fn stored_prefixes_become_the_networks_the_rules_group_by() {
        assert_eq!(subnet("127.0.3.0/24").to_string(), "127.0.3.0/24");
        assert_eq!(subnet("2001:db8:9::/48").to_string(), "2001:db8:9::/48");
        // A local trial gives every node and viewer a network of its own: never pooled with
        // each other, nor with any address prefix.
        let (a, b) = (
            subnet(&local_trial_subnet("node", "a")),
            subnet(&local_trial_subnet("node", "b")),
        );
        assert_ne!(a, b);
        assert!(matches!(a, NetPrefix::Named(_)), "{a}");
        assert_eq!(a, subnet(&local_trial_subnet("node", "a")));
    }

    #[test]
    fn a_node_is_grouped_under_its_operator_name_only_when_it_proved_membership() {
        let node = NodeRecord {
            id: "ab".repeat(32),
            payout_address: "payout".into(),
            operator: "acme".into(),
            operator_key: None,
            subnet: "10.0.0".into(),
            rtmp_url: "rtmp://10.0.0.1:1935/live".into(),
            http_url: "http://10.0.0.1:8080".into(),
            registered_at_ms: 0,
            active: true,
            capacity_kbps: 10_000,
            last_nonce: -1,
            last_heartbeat_ms: None,
            status: "registered".into(),
            viewers: 0,
            bytes_served: 0,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
        };
        let bindings: BTreeMap<String, String> = [("acme".to_owned(), "cd".repeat(32))].into();
        // A name without the bound key's signature is free text: the node is its own operator.
        assert_eq!(
            operator_of(&node, &bindings).map(|o| o.to_string()),
            Some("ab".repeat(32))
        );
        let member = NodeRecord {
            operator_key: Some("cd".repeat(32)),
            ..node.clone()
        };
        assert_eq!(
            operator_of(&member, &bindings).map(|o| o.to_string()),
            Some("acme".into())
        );
        // However the name was written, it is one operator.
        let variant = NodeRecord {
            operator: " ACME ".into(),
            ..member.clone()
        };
        assert_eq!(
            operator_of(&variant, &bindings).map(|o| o.to_string()),
            Some("acme".into())
        );
        // A proof by a key the name is not bound to (any more) groups the node with no one.
        let other = NodeRecord {
            operator_key: Some("ef".repeat(32)),
            ..member
        };
        assert_eq!(
            operator_of(&other, &bindings).map(|o| o.to_string()),
            Some("ab".repeat(32))
        );
    }
}
