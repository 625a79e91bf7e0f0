//! What every handler and worker shares: the configuration, the storage handle, the counters
//! and the caches in front of storage.
//!
//! This module sits below the HTTP API, the workers and the dashboard: they all read it and it
//! imports none of them, nor receipt intake (see the layering in the crate docs).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::config::CoordConfig;
use crate::heartbeat_writer::HeartbeatWriter;
use crate::metrics::Metrics;
use crate::observed_prefixes::ObservedPrefixes;
use crate::rate_limit::RateLimiter;
use crate::session_vault::SessionVault;
use crate::storage::{PartRecord, Storage};
use crate::totals_writer::TotalsWriter;

/// Most streamed part-report answers a coordinator keeps open at once (each holds a task and
/// a connection for up to a minute); beyond, nodes are told `busy` and use the long poll.
pub(crate) const MAX_REPORT_STREAMS: usize = 1024;

/// State shared by every handler and worker.
pub(crate) struct AppState {
    pub(crate) config: CoordConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) metrics: Metrics,
    /// The network prefixes nodes' heartbeats came from, as last written to storage.
    pub(crate) node_prefixes: ObservedPrefixes,
    /// The relays' measured fan-outs, reused for a moment by the relay tree.
    pub(crate) relay_fanouts: FanoutCache,
    heartbeat_writer: OnceLock<HeartbeatWriter>,
    totals_writer: OnceLock<Arc<TotalsWriter>>,
    /// Each client address's request budget, when the configuration sets a rate.
    pub(crate) limiter: Option<RateLimiter>,
    /// The admin token's hash, compared with the presented token's.
    pub(crate) admin_token_hash: Option<blake3::Hash>,
    /// The OpenAPI document with this configuration's limits, built by the HTTP layer when
    /// it composes the router.
    pub(crate) openapi: OnceLock<String>,
    /// The part hashes reported to this process lately, for viewers waiting for one.
    pub(crate) recent_parts: RecentParts,
    /// Seals node session keys before they are stored (under the coordinator key).
    pub(crate) session_vault: SessionVault,
    /// Permits of the streamed part-report answers open at once
    /// (`GET /streams/{id}/part-reports/stream`).
    pub(crate) report_streams: Arc<tokio::sync::Semaphore>,
    /// True while the server serving the API stops (from the moment it stops accepting until
    /// it returns): requests waiting for something (part lookups, long polls, streamed
    /// answers) end at once instead of holding the stop up. See [`until_stopping`].
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// When this process last noted itself up, and the outages on record then.
    pub(crate) liveness: crate::outages::Liveness,
}

/// The state as handlers and workers hold it.
pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn new(config: CoordConfig, storage: Arc<dyn Storage>) -> Self {
        let admin_token_hash = config
            .admin_token
            .as_deref()
            .map(|token| blake3::hash(token.as_bytes()));
        AppState {
            session_vault: SessionVault::new(&config.coordinator_key),
            limiter: config.rate_limit.map(RateLimiter::new),
            node_prefixes: ObservedPrefixes::default(),
            relay_fanouts: FanoutCache::default(),
            config,
            storage,
            metrics: Metrics::default(),
            heartbeat_writer: OnceLock::new(),
            totals_writer: OnceLock::new(),
            admin_token_hash,
            openapi: OnceLock::new(),
            recent_parts: RecentParts::default(),
            report_streams: Arc::new(tokio::sync::Semaphore::new(MAX_REPORT_STREAMS)),
            stopping: tokio::sync::watch::Sender::new(false),
            liveness: crate::outages::Liveness::default(),
        }
    }

    /// The group-commit writer, started on first use (inside the runtime).
    pub(crate) fn heartbeat_writer(&self) -> &HeartbeatWriter {
        self.heartbeat_writer
            .get_or_init(|| HeartbeatWriter::spawn(self.storage.clone()))
    }

    /// The session heartbeats' in-memory table and its periodic writer, started on first use
    /// (inside the runtime).
    pub(crate) fn totals_writer(&self) -> &TotalsWriter {
        self.totals_writer.get_or_init(|| {
            TotalsWriter::spawn(self.storage.clone(), self.config.heartbeat_totals_interval)
        })
    }

    /// Writes the session heartbeats held in memory now (nothing when none was received).
    pub(crate) async fn write_heartbeat_totals(&self) -> crate::storage::StorageResult<()> {
        match self.totals_writer.get() {
            Some(writer) => writer.write_now().await,
            None => Ok(()),
        }
    }
}

/// Completes once `stopping` (a receiver of [`AppState::stopping`]) says the server stops, at
/// once when it already does: what a waiting handler selects on beside what it waits for.
pub(crate) async fn until_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    // The sender lives in the state the handler holds, so this only ends on a stop; the
    // borrow of the value is let go of at once.
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Each relay's fan-out (how many children it may feed), as measured.
pub(crate) type Fanouts = std::sync::Arc<HashMap<String, usize>>;

/// The relays' fan-outs as last measured by this process, and when.
#[derive(Debug, Default)]
pub(crate) struct FanoutCache {
    pub(crate) measured: tokio::sync::Mutex<Option<(std::time::Instant, Fanouts)>>,
}

/// Most parts [`RecentParts`] holds (about three minutes of 50 streams at three parts a
/// second); older ones are found in storage.
pub(crate) const RECENT_PARTS: usize = 32_768;

/// The parts reported to this process lately, by stream and hash, and a version bumped on
/// every report: a viewer waiting for a part's hash wakes when parts are stored and looks
/// here, not in storage. Bounded: the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct RecentParts {
    parts: std::sync::Mutex<RecentPartsInner>,
    version: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct RecentPartsInner {
    by_hash: HashMap<(String, String), PartRecord>,
    order: std::collections::VecDeque<(String, String)>,
    /// Reports stored by this process, per stream (for waiters on one stream's reports).
    reports: HashMap<String, u64>,
}

impl Default for RecentParts {
    fn default() -> Self {
        RecentParts {
            parts: std::sync::Mutex::default(),
            version: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl RecentParts {
    /// Remembers stored parts and wakes the waiting viewers.
    pub(crate) fn record(&self, parts: &[PartRecord]) {
        {
            let mut inner = self
                .parts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(first) = parts.first() {
                let count = inner.reports.entry(first.stream_id.clone()).or_default();
                *count = count.wrapping_add(1);
            }
            for part in parts {
                let key = (part.stream_id.clone(), part.hash.clone());
                if inner.by_hash.insert(key.clone(), part.clone()).is_none() {
                    inner.order.push_back(key);
                }
            }
            while inner.order.len() > RECENT_PARTS {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.by_hash.remove(&oldest);
                }
            }
        }
        self.version
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// The part of `stream_id` whose bytes hash to `hash`, when reported lately.
    pub(crate) fn find(&self, stream_id: &str, hash: &str) -> Option<PartRecord> {
        self.parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_hash
            .get(&(stream_id.to_owned(), hash.to_owned()))
            .cloned()
    }

    /// Forgets every part of `stream_id` (the stream ended).
    pub(crate) fn forget_stream(&self, stream_id: &str) {
        let mut inner = self
            .parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.by_hash.retain(|(stream, _), _| stream != stream_id);
        inner.reports.remove(stream_id);
        inner.order.retain(|(stream, _)| stream != stream_id);
    }

    /// How many reports of `stream_id` this process stored (it changes when one is stored).
    pub(crate) fn reports_of(&self, stream_id: &str) -> u64 {
        self.parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reports
            .get(stream_id)
            .copied()
            .unwrap_or_default()
    }

    /// A receiver that sees every [`RecentParts::record`].
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Requests holding a [`RecentParts::subscribe`] receiver now: the part lookups, long polls
    /// and streamed answers waiting for a report (and, for a moment, those answering at once).
    pub(crate) fn waiters(&self) -> usize {
        self.version.receiver_count()
    }
}
