//! # streamr-coord
//!
//! The StreamrP2P coordinator service: it registers streams and friend nodes, takes signed node
//! heartbeats and viewer receipts, routes viewers to nodes with signed session grants, settles
//! reward epochs into a double-entry ledger with Merkle statements, and hands payouts to a
//! payout sink. The economics (verification, routing, rewards, settlement) are
//! `streamr_core`'s; this crate stores their inputs and outputs and serves them over HTTP.
//!
//! Storage is SQLite (one file, the default) or PostgreSQL (shared by several replicas).
//!
//! Inside, each layer uses only the ones below it (checked by a unit test): `router` composes
//! `dashboard` and `api`; `api` uses `workers`, `intake` (receipt intake, a domain service with
//! its own error type) and `state` (what handlers and workers share); `workers` use `state`;
//! `intake` uses only storage, configuration and metrics. See `docs/architecture.md`.
//!
//! ```no_run
//! use streamr_coord::{connect, CoordConfig, Coordinator};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = connect("sqlite://streamr-coordinator.db").await?;
//! let config = CoordConfig {
//!     admin_token: Some("change me".into()),
//!     ..CoordConfig::default()
//! };
//! let coordinator = Coordinator::new(config, storage);
//! let workers = coordinator.spawn_workers();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
//! coordinator.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! workers.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod clock;
pub mod config;
mod dashboard;
pub mod error;
pub mod extract;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod heartbeat_writer;
mod intake;
#[cfg(test)]
mod layering;
pub mod metrics;
mod observed_prefixes;
mod outages;
mod rate_limit;
mod router;
mod session_totals;
mod session_vault;
mod state;
pub mod storage;
mod totals_writer;
pub mod workers;

// The API's wire types, its client and grant tokens live in `streamr-client`, which nodes and
// players use without the coordinator; these paths keep naming them here.
pub use streamr_client::{client, wire};
pub use streamr_core::grant_token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use streamr_core::{CoordinatorKey, PayoutSink, SimulatedPayoutSink};
use tokio::net::TcpListener;

pub use api::info::CoordinatorInfo;
pub use api::ledger::{NodePayouts, ProofResponse, SimulationRequest};
pub use clock::SystemClock;
pub use config::{CoordConfig, GrantBudget, InvalidConfig, RateLimit};
pub use error::{ApiError, StorageError};
pub use storage::{connect, PostgresStorage, SqliteStorage, Storage};
pub use workers::{ProbeRunner, WorkerError, Workers};

/// A coordinator: configuration, storage and counters, ready to serve HTTP and run workers.
#[derive(Clone)]
pub struct Coordinator {
    state: state::Shared,
    settler: workers::SharedSettler,
    sink: workers::SharedPayoutSink,
    probes: Option<Arc<dyn ProbeRunner>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator over `storage`, paying into an in-memory simulated chain until
    /// [`Coordinator::with_payout_sink`] names a real one.
    pub fn new(config: CoordConfig, storage: Arc<dyn Storage>) -> Self {
        Coordinator {
            settler: Arc::new(tokio::sync::Mutex::new(workers::Settler::new(&config))),
            state: Arc::new(state::AppState::new(config, storage)),
            sink: Arc::new(tokio::sync::Mutex::new(
                Box::new(SimulatedPayoutSink::new()),
            )),
            probes: None,
        }
    }

    /// Sends payouts to `sink` (it must pay only up to each item's cumulative total).
    pub fn with_payout_sink(mut self, sink: Box<dyn PayoutSink + Send>) -> Self {
        self.sink = Arc::new(tokio::sync::Mutex::new(sink));
        self
    }

    /// Runs `runner` against every active node each worker round.
    pub fn with_probe_runner(mut self, runner: Arc<dyn ProbeRunner>) -> Self {
        self.probes = Some(runner);
        self
    }

    /// Writes the session heartbeats this process holds in memory now, instead of at the
    /// next periodic write (call it on a graceful shutdown; a process that dies without it
    /// loses nothing a node reported: the node's next heartbeat restates its totals).
    pub async fn write_heartbeat_totals(&self) -> Result<(), StorageError> {
        self.state.write_heartbeat_totals().await
    }

    /// The public key that verifies the session grants this coordinator signs.
    pub fn coordinator_key(&self) -> CoordinatorKey {
        self.state.config.coordinator_key.coordinator_key()
    }

    /// The HTTP API as an axum router (without client addresses: every caller shares one
    /// rate-limit bucket unless served by [`Coordinator::serve`]).
    pub fn router(&self) -> axum::Router {
        router::router(self.state.clone())
    }

    /// Serves the API on `listener` until `shutdown` completes, then drains open requests.
    /// Request heads and bodies have deadlines and connections a budget
    /// ([`CoordConfig::http`]), so slow or half-sent requests cannot hold every file handle.
    ///
    /// Requests that wait for something end at once when `shutdown` completes, so a stop
    /// takes no longer than the requests doing work: part lookups (`wait_ms`) answer what
    /// storage holds (503 `shutting_down` when nothing), part-report long polls answer the
    /// reports stored by then, and streamed part-report answers write those and their closing
    /// line. Every request answered before the stop was handled whole (a stored report stays
    /// stored). The stop ends the waits of every server of this coordinator (its clones
    /// included) until this one returns.
    ///
    /// A configuration that fails [`CoordConfig::validate`] is refused at once
    /// ([`std::io::ErrorKind::InvalidInput`]).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.state.config.validate()?;
        let limits = self.state.config.http;
        let budget = limits
            .budget()
            .trusting(self.state.config.trusted_proxies.clone());
        let shutdown = self.ending_waits(shutdown);
        let served =
            streamr_net::http::serve(listener, self.router(), budget, limits, shutdown).await;
        self.state.stopping.send_replace(false);
        served
    }

    /// `shutdown`, then the signal that ends waiting requests (see [`Coordinator::serve`]).
    fn ending_waits(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let state = self.state.clone();
        async move {
            shutdown.await;
            state.stopping.send_replace(true);
        }
    }

    /// Serves the API over HTTPS on `listener` until `shutdown` completes, then drains open
    /// requests (waiting ones end at once, as with [`Coordinator::serve`]): every connection
    /// first completes a TLS handshake with `acceptor` (within `handshakes`' deadline,
    /// concurrently, so a stalled client holds up nobody). Refuses an invalid configuration
    /// as [`serve`](Self::serve) does.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        acceptor: streamr_tls::TlsAcceptor,
        handshakes: streamr_tls::HandshakeLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.state.config.validate()?;
        let limits = self.state.config.http;
        let served = streamr_net::http::serve_tls(
            listener,
            self.router(),
            limits
                .budget()
                .trusting(self.state.config.trusted_proxies.clone()),
            limits,
            acceptor,
            handshakes.timeout,
            self.ending_waits(shutdown),
        )
        .await;
        self.state.stopping.send_replace(false);
        served
    }

    /// Serves the API on `listener` in a background task until the returned handle is shut down
    /// or dropped: what an application (or a test) that embeds a coordinator beside other
    /// services needs. Refuses an invalid configuration ([`CoordConfig::validate`]) at once.
    pub fn spawn_serve(&self, listener: TcpListener) -> std::io::Result<ServeHandle> {
        self.state.config.validate()?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let coordinator = self.clone();
        let task = tokio::spawn(async move {
            coordinator
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(ServeHandle {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Starts the settlement, payout, stats and (if configured) probe workers.
    pub fn spawn_workers(&self) -> Workers {
        workers::spawn(
            self.state.clone(),
            self.settler.clone(),
            self.sink.clone(),
            self.probes.clone(),
        )
    }

    /// Settles every epoch that is due now, as the settlement worker does each round.
    /// Returns how many epochs this call settled.
    pub async fn settle_due(&self) -> Result<u32, WorkerError> {
        let mut settler = self.settler.lock().await;
        settler.settle_due(&self.state).await
    }

    /// Hands pending payouts to the payout sink, as the payout worker does each round.
    /// Returns how many were sent.
    pub async fn pay_pending(&self) -> Result<u32, WorkerError> {
        workers::pay_round(&self.state, &self.sink).await
    }
}

/// A coordinator serving in the background ([`Coordinator::spawn_serve`]). Dropping the handle
/// stops the server; [`ServeHandle::shutdown`] also waits for open requests to drain.
#[derive(Debug)]
pub struct ServeHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ServeHandle {
    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, drains open requests and returns how serving ended.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
