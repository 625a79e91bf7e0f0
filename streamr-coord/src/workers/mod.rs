//! Background workers: epoch settlement, payouts, per-minute stats and probe scheduling. Each
//! runs as a tokio task until the shutdown signal, and every iteration is safe to repeat.

mod prober;
pub(crate) mod reachability;
mod settlement;

use std::sync::Arc;

use streamr_core::{NodeId, PayoutItem, PayoutSink, ProbeResult, SettlementError};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

pub use prober::HttpProber;
pub(crate) use settlement::{probe_result, Settler};

use crate::clock::now_ms;
use crate::error::StorageError;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::storage::NodeRecord;
use streamr_net::failure_log::{Failing, FailureRun, RunEnded, REPEAT_EVERY};

/// Why a worker iteration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The core settlement engine refused an epoch.
    #[error("settling epoch {epoch}: {source}")]
    Settlement {
        /// The epoch.
        epoch: i64,
        /// The engine's reason.
        #[source]
        source: SettlementError,
    },
    /// Stored settlement history does not replay to what was stored.
    #[error("stored settlement of epoch {epoch} is inconsistent: {detail}")]
    CorruptHistory {
        /// The epoch.
        epoch: i64,
        /// What differed.
        detail: String,
    },
    /// The payout sink refused a payout.
    #[error("payout sink refused {node_id} (cumulative {cumulative_net}): {reason}")]
    PayoutRefused {
        /// The node.
        node_id: String,
        /// The payout's cumulative total.
        cumulative_net: i64,
        /// The sink's reason.
        reason: String,
    },
}

/// Where the probe runner plugs in: the scheduler asks it to probe each active node once per
/// worker round and records the results. [`HttpProber`] probes real nodes over HTTP.
#[async_trait::async_trait]
pub trait ProbeRunner: Send + Sync + 'static {
    /// Probes one node; `None` means it was not probed this round.
    async fn probe(&self, node: &NodeRecord) -> Option<ProbeResult>;

    /// Hands over the bytes the probes since the last call took from nodes that no receipt
    /// acknowledged (HTTP-FLV reads, playlists, segments not judged yet), by node id. A node
    /// cannot tell a probe from a viewer and reports them as unattested; settlement nets them
    /// out of its unattested claim. None by default.
    fn take_unreceipted(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// A payout sink shared by the payout worker.
pub type SharedPayoutSink = Arc<Mutex<Box<dyn PayoutSink + Send>>>;

/// The settlement engines, shared by the settlement worker and explicit settling: one
/// settles at a time.
pub(crate) type SharedSettler = Arc<Mutex<Settler>>;

/// Handles to the running workers.
#[derive(Debug)]
pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Signals every worker to stop and waits for them to finish their current iteration.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub(crate) fn spawn(
    state: Shared,
    settler: SharedSettler,
    sink: SharedPayoutSink,
    probes: Option<Arc<dyn ProbeRunner>>,
) -> Workers {
    let (shutdown, signal) = watch::channel(false);
    let mut tasks = Vec::new();
    let settle_state = state.clone();
    tasks.push(every_tick(
        signal.clone(),
        state.clone(),
        "settlement",
        move || {
            let state = settle_state.clone();
            let settler = settler.clone();
            async move { settle_round(&state, &settler).await }
        },
    ));
    if !state.config.outage_grace.is_zero() {
        let alive_state = state.clone();
        tasks.push(every_period(
            signal.clone(),
            state.clone(),
            "liveness",
            state.config.liveness_interval(),
            move || {
                let state = alive_state.clone();
                async move { note_alive(&state).await }
            },
        ));
    }
    let pay_state = state.clone();
    tasks.push(every_tick(
        signal.clone(),
        state.clone(),
        "payouts",
        move || {
            let state = pay_state.clone();
            let sink = sink.clone();
            async move { pay_round(&state, &sink).await.map(|_| ()) }
        },
    ));
    let stats_state = state.clone();
    tasks.push(every_tick(
        signal.clone(),
        state.clone(),
        "stats",
        move || {
            let state = stats_state.clone();
            async move { stats_round(&state).await }
        },
    ));
    let requests_state = state.clone();
    tasks.push(every_tick(
        signal.clone(),
        state.clone(),
        "upstream request times",
        move || {
            let state = requests_state.clone();
            async move { forget_upstream_requests(&state).await }
        },
    ));
    if state.config.reachability_interval.is_some() {
        let reach_state = state.clone();
        let client = reachability::client();
        tasks.push(every_tick(
            signal.clone(),
            state.clone(),
            "reachability",
            move || {
                let state = reach_state.clone();
                let client = client.clone();
                async move { reachability::reachability_round(&state, &client).await }
            },
        ));
    }
    if let Some(runner) = probes {
        let probe_state = state.clone();
        tasks.push(every_tick(signal, state, "probes", move || {
            let state = probe_state.clone();
            let runner = runner.clone();
            async move { probe_round(&state, runner.as_ref()).await }
        }));
    }
    Workers { shutdown, tasks }
}

/// Runs `round` every worker interval until `signal` says stop.
fn every_tick<F, Fut>(
    signal: watch::Receiver<bool>,
    state: Shared,
    name: &'static str,
    round: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), WorkerError>> + Send,
{
    let period = state.config.worker_interval;
    every_period(signal, state, name, period, round)
}

/// Runs `round` every `period` until `signal` says stop.
fn every_period<F, Fut>(
    mut signal: watch::Receiver<bool>,
    state: Shared,
    name: &'static str,
    period: std::time::Duration,
    mut round: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), WorkerError>> + Send,
{
    tokio::spawn(async move {
        // A zero period would panic here (workers may start before `serve` validates the
        // config), a tiny one spin.
        let period = period.max(std::time::Duration::from_millis(10));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = FailureRun::default();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = signal.changed() => break,
            }
            if *signal.borrow() {
                break;
            }
            let outcome = round().await;
            let now = std::time::Instant::now();
            let error = match outcome {
                Ok(()) => {
                    if let Some(RunEnded { failures, lasted }) = failures.succeeded(now) {
                        tracing::info!(
                            worker = name,
                            failed_rounds = failures,
                            failed_for_s = lasted.as_secs(),
                            "worker rounds succeed again"
                        );
                    }
                    continue;
                }
                Err(error) => error,
            };
            Metrics::inc(&state.metrics.worker_errors_total);
            match failures.failed(now) {
                Failing::Started => tracing::warn!(
                    worker = name,
                    %error,
                    "worker round failed (while its rounds keep failing, it says so every {}s)",
                    REPEAT_EVERY.as_secs()
                ),
                Failing::Continuing { failures, lasted } => tracing::warn!(
                    worker = name,
                    %error,
                    failed_rounds = failures,
                    failing_for_s = lasted.as_secs(),
                    "worker rounds still fail"
                ),
                Failing::Quiet => {
                    tracing::debug!(worker = name, %error, "worker round failed")
                }
            }
        }
        tracing::debug!(worker = name, "worker stopped");
    })
}

/// Notes this process up (see [`crate::outages`]).
async fn note_alive(state: &Shared) -> Result<(), WorkerError> {
    state
        .liveness
        .outages(
            &state.config,
            state.storage.as_ref(),
            &crate::clock::SystemClock,
            &state.metrics,
            std::time::Duration::ZERO,
        )
        .await?;
    Ok(())
}

async fn settle_round(state: &Shared, settler: &SharedSettler) -> Result<(), WorkerError> {
    let mut settler = settler.lock().await;
    settler.settle_due(state).await.map(|_| ())
}

/// Hands every pending payout to the sink. The sink pays only up to each payout's cumulative
/// total, so repeating a payout after a crash never pays twice.
pub(crate) async fn pay_round(state: &Shared, sink: &SharedPayoutSink) -> Result<u32, WorkerError> {
    let pending = state.storage.pending_payouts(100).await?;
    let mut sent = 0;
    for payout in pending {
        let Ok(node_id) = payout.node_id.parse::<NodeId>() else {
            tracing::warn!(node = %payout.node_id, "payout for an unparsable node id skipped");
            continue;
        };
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let item = PayoutItem {
            node_id,
            gross: to_u64(payout.gross),
            fixed_fee: to_u64(payout.fees),
            proportional_fee: 0,
            net: to_u64(payout.net),
            cumulative_net: to_u64(payout.cumulative_net),
        };
        let confirmation = {
            let mut sink = sink.lock().await;
            sink.pay(&item)
        }
        .map_err(|reason| WorkerError::PayoutRefused {
            node_id: payout.node_id.clone(),
            cumulative_net: payout.cumulative_net,
            reason,
        })?;
        let reference = format!(
            "cumulative_net={} transferred={}",
            confirmation.cumulative_net, confirmation.transferred
        );
        if state
            .storage
            .mark_payout_sent(&payout.node_id, payout.cumulative_net, &reference, now_ms())
            .await?
        {
            sent += 1;
            Metrics::inc(&state.metrics.payouts_sent_total);
        }
    }
    Ok(sent)
}

/// Recomputes the per-minute rows of the last two minutes (the current one is still filling).
async fn stats_round(state: &Shared) -> Result<(), WorkerError> {
    let minute = now_ms().div_euclid(60_000);
    let from = minute.saturating_sub(1).saturating_mul(60_000);
    let to = minute.saturating_add(1).saturating_mul(60_000);
    state.storage.aggregate_minute_stats(from, to).await?;
    Ok(())
}

/// Forgets the relays' upstream request times older than twice the clock skew: a request
/// that old is refused by the skew check before its time is looked at.
async fn forget_upstream_requests(state: &Shared) -> Result<(), WorkerError> {
    let skew = i64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms().saturating_sub(skew.saturating_mul(2));
    state.storage.forget_upstream_requests(before).await?;
    Ok(())
}

async fn probe_round(state: &Shared, runner: &dyn ProbeRunner) -> Result<(), WorkerError> {
    for node in state.storage.list_nodes().await? {
        if !node.active {
            continue;
        }
        if let Some(result) = runner.probe(&node).await {
            let record = probe_record(state, &result, now_ms());
            state.storage.insert_probe(&record).await?;
        }
        let epoch = state.config.epoch_of(now_ms());
        for (node_id, bytes) in runner.take_unreceipted() {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            state
                .storage
                .add_probe_traffic(&node_id, epoch, bytes)
                .await?;
        }
    }
    Ok(())
}

/// The row a core probe result is stored as.
pub(crate) fn probe_record(
    state: &Shared,
    result: &ProbeResult,
    now_ms: i64,
) -> crate::storage::ProbeRecord {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    crate::storage::ProbeRecord {
        node_id: result.node_id.to_string(),
        epoch: state.config.epoch_of(now_ms),
        hash_ok: result.hash_ok,
        timed_out: result.timed_out,
        ttfb_ms: clamp(result.ttfb_ms),
        throughput_bytes_per_s: clamp(result.throughput_bytes_per_s),
        probed_at_ms: now_ms,
    }
}
