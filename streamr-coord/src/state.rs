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
use crate::storage::Storage;

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
    /// Each client address's request budget, when the configuration sets a rate.
    pub(crate) limiter: Option<RateLimiter>,
    /// The admin token's hash, compared with the presented token's.
    pub(crate) admin_token_hash: Option<blake3::Hash>,
    /// The OpenAPI document with this configuration's limits, built by the HTTP layer when
    /// it composes the router.
    pub(crate) openapi: OnceLock<String>,
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
            limiter: config.rate_limit.map(RateLimiter::new),
            node_prefixes: ObservedPrefixes::default(),
            relay_fanouts: FanoutCache::default(),
            config,
            storage,
            metrics: Metrics::default(),
            heartbeat_writer: OnceLock::new(),
            admin_token_hash,
            openapi: OnceLock::new(),
        }
    }

    /// The group-commit writer, started on first use (inside the runtime).
    pub(crate) fn heartbeat_writer(&self) -> &HeartbeatWriter {
        self.heartbeat_writer
            .get_or_init(|| HeartbeatWriter::spawn(self.storage.clone()))
    }
}

/// Each relay's fan-out (how many children it may feed), as measured.
pub(crate) type Fanouts = std::sync::Arc<HashMap<String, usize>>;

/// The relays' fan-outs as last measured by this process, and when.
#[derive(Debug, Default)]
pub(crate) struct FanoutCache {
    pub(crate) measured: tokio::sync::Mutex<Option<(std::time::Instant, Fanouts)>>,
}
