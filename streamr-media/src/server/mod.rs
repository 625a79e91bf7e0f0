//! The tokio RTMP server that drives the sans-IO sessions and the relay.
//!
//! Each accepted connection runs one task that feeds the socket's bytes to a
//! [`ServerSession`](crate::rtmp::session::ServerSession), hands publishers' frames to the
//! [`RelayHub`] and writes players' frames from their subscription in batched vectored writes.
//! A connection that sends something malformed is closed alone, with a `warn` log naming the peer
//! and the error.
//!
//! ```no_run
//! use streamr_media::server::{RelayServer, RelayServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = RelayServer::start(RelayServerConfig::default()).await?;
//! println!("RTMP on rtmp://{}/live/<key>", server.local_addr());
//! tokio::signal::ctrl_c().await?;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod adaptive;
mod config;
mod connection;
mod gate;
mod hooks;
mod metrics;
mod writer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use adaptive::spawn_adaptive_batching;
pub use config::{InvalidDeadline, RelayServerConfig, MIN_DEADLINE, SENDFILE_MIN_BYTES};
pub use connection::ConnectionError;
pub use gate::{PlayGate, StreamWait};
pub use hooks::{
    AllowAll, PlayAdmission, Protocol, Refusal, RefusalKind, RelayHooks, StreamEvent, StreamRequest,
};
pub use metrics::{CloseReason, RtmpMetrics};
#[cfg(feature = "http")]
pub(crate) use writer::{release_burst_room, WriteQueue, KEEP_BETWEEN_BATCHES};

use crate::relay::RelayHub;
use metrics::ServerCounters;
use streamr_net::{BudgetLimits, ConnectionBudget};

/// What every connection task shares.
struct Shared {
    config: RelayServerConfig,
    hub: RelayHub,
    hooks: Arc<dyn RelayHooks>,
    budget: ConnectionBudget,
    counters: ServerCounters,
    /// Set for an RTMPS server: every connection starts with a TLS handshake.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running RTMP relay server. Dropping it does not stop it; call
/// [`shutdown`](RelayServer::shutdown) (or cancel its [`shutdown_token`](RelayServer::shutdown_token)).
#[derive(Debug)]
pub struct RelayServer {
    local_addr: SocketAddr,
    hub: RelayHub,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// Reads a running [`RelayServer`]'s counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct RtmpMetricsSource(Arc<Shared>);

impl RtmpMetricsSource {
    /// The server's counters now.
    pub fn read(&self) -> RtmpMetrics {
        self.0.counters.snapshot(&self.0.budget.stats())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RelayServer {
    /// Binds `config.bind` and starts serving with allow-all hooks.
    pub async fn start(config: RelayServerConfig) -> io::Result<RelayServer> {
        RelayServer::start_with_hooks(config, Arc::new(AllowAll)).await
    }

    /// Binds `config.bind` and starts serving, asking `hooks` to authorize publishers and players
    /// and telling it about stream lifecycle events.
    pub async fn start_with_hooks(
        config: RelayServerConfig,
        hooks: Arc<dyn RelayHooks>,
    ) -> io::Result<RelayServer> {
        let hub = RelayHub::new(config.relay.clone());
        RelayServer::start_on_hub(config, hooks, hub).await
    }

    /// Like [`start_with_hooks`](RelayServer::start_with_hooks), relaying through an existing hub
    /// (for example one an HTTP server also serves from). The hub's own configuration applies.
    pub async fn start_on_hub(
        config: RelayServerConfig,
        hooks: Arc<dyn RelayHooks>,
        hub: RelayHub,
    ) -> io::Result<RelayServer> {
        RelayServer::start_serving(config, hooks, hub, None).await
    }

    /// Like [`start_on_hub`](RelayServer::start_on_hub), serving RTMPS: each connection is a
    /// TLS handshake with `acceptor` (within [`RelayServerConfig::handshake_timeout`]), then
    /// RTMP inside it. An RTMP and an RTMPS server on one hub serve the same streams.
    pub async fn start_tls_on_hub(
        config: RelayServerConfig,
        hooks: Arc<dyn RelayHooks>,
        hub: RelayHub,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> io::Result<RelayServer> {
        RelayServer::start_serving(config, hooks, hub, Some(acceptor)).await
    }

    async fn start_serving(
        config: RelayServerConfig,
        hooks: Arc<dyn RelayHooks>,
        hub: RelayHub,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<RelayServer> {
        config.validate()?;
        let listener = bind_listener(&config)?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let budget = ConnectionBudget::new(BudgetLimits {
            max_connections: config.max_connections,
            max_per_client: config.max_connections_per_client,
        });
        let shared = Arc::new(Shared {
            config,
            hub: hub.clone(),
            hooks,
            budget,
            counters: ServerCounters::default(),
            tls,
        });
        let scheme = if shared.tls.is_some() {
            "RTMPS"
        } else {
            "RTMP"
        };
        info!(%local_addr, "{scheme} relay listening");
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
        Ok(RelayServer {
            local_addr,
            hub,
            shared,
            shutdown,
            task,
        })
    }

    /// The server's counters now: connections, refusals and closes by reason, publishers,
    /// players, bytes and slow-viewer skips.
    pub fn metrics(&self) -> RtmpMetrics {
        self.metrics_source().read()
    }

    /// A handle that reads [`RelayServer::metrics`] from elsewhere (an HTTP `/metrics` route).
    pub fn metrics_source(&self) -> RtmpMetricsSource {
        RtmpMetricsSource(self.shared.clone())
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The relay hub, so other front ends (HTTP-FLV, HLS) can serve the same streams.
    pub fn hub(&self) -> &RelayHub {
        &self.hub
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every connection and waits for their tasks to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(err) = self.task.await {
            warn!(error = %err, "RTMP accept loop ended abnormally");
        }
    }
}

/// Binds the listening socket; accepted connections inherit its send buffer size.
fn bind_listener(config: &RelayServerConfig) -> io::Result<TcpListener> {
    let socket = if config.bind.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Some(size) = config.send_buffer_size {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(config.bind)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Per-connection accept errors (aborted handshakes, fd pressure) are transient.
                warn!(error = %err, "accepting an RTMP connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let permit = match shared.budget.try_admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                debug!(%peer, %refusal, "refusing RTMP connection");
                continue;
            }
        };
        if let Err(err) = socket.set_nodelay(true) {
            debug!(%peer, error = %err, "could not disable Nagle's algorithm");
        }
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let result = match &shared.tls {
                Some(acceptor) => {
                    connection::serve_tls(socket, peer, &shared, acceptor, shutdown).await
                }
                None => connection::serve(socket, peer, &shared, shutdown).await,
            };
            drop(permit);
            match result {
                Ok(()) => debug!(%peer, "RTMP connection closed"),
                Err(err) => {
                    if let Some(reason) = metrics::CloseReason::of(&err) {
                        shared.counters.closed(reason);
                    }
                    warn!(%peer, error = %err, "closing RTMP connection")
                }
            }
        });
    }
    debug!("RTMP accept loop stopped; waiting for connections to close");
    while connections.join_next().await.is_some() {}
}
