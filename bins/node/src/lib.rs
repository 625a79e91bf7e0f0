//! # streamr-node
//!
//! The StreamrP2P friend node as a library: an RTMP server with HTTP-FLV and live HLS beside
//! it, in one of two roles.
//!
//! - **Origin** (no upstreams): the streamer publishes here. With a coordinator configured,
//!   publishers must present the stream key the coordinator issued
//!   (`rtmp://origin/live/<stream>?key=<stream key>`), and every HLS segment's hash is reported
//!   to the coordinator as the origin's reference hash. Both are signed with the node key (no
//!   admin token): the signed check binds the stream to this node as its origin, and the
//!   coordinator accepts reports from that node only.
//! - **Relay** (one or more upstreams): viewers asking for a stream over RTMP, HTTP-FLV or HLS
//!   start (or join) a pull from the first working upstream. With a coordinator configured the
//!   node registers, sends signed heartbeats with the viewers' receipts, refuses viewers
//!   without a coordinator-signed session grant (`?grant=<token>`), and deregisters on
//!   shutdown.
//!
//! ```no_run
//! use streamr_node::{Node, NodeConfig};
//!
//! # async fn run() -> Result<(), streamr_node::NodeError> {
//! let config = NodeConfig {
//!     upstreams: vec!["rtmp://origin.example:1935".into()],
//!     ..NodeConfig::default()
//! };
//! let node = Node::start(config).await?;
//! println!("play rtmp://{}/live/<stream>", node.rtmp_addr());
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod accounting;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod gate;
pub mod grants;
pub mod identity;
mod network;
pub mod viewer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use streamr_coord::client::{ClientError, CoordinatorClient, NodeAdvert};
use streamr_core::{CoordinatorKey, KeyPair, NodeId};
use streamr_media::http::{router, HttpState, LiveHls, LiveHlsConfig};
use streamr_media::relay::{BatchPolicy, RelayConfig, RelayHub};
use streamr_media::server::{RelayServer, RelayServerConfig};
use streamr_media::upstream::{UpstreamConfig, UpstreamPuller};
use streamr_tls::{CertificateFiles, HandshakeLimits, ServerTls, TlsError, TlsListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use grants::{GrantChecker, GrantRefusal};
pub use identity::IdentityError;

/// How the node reaches the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Base URL, e.g. `http://coordinator:8090`.
    pub url: String,
    /// The coordinator's public key (it verifies session grants); when absent, the relay role
    /// asks the coordinator (`GET /coordinator`) at start.
    pub key: Option<CoordinatorKey>,
}

/// Everything a node needs to start. `Default` is a standalone origin on the usual local ports.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// RTMP listen address.
    pub rtmp_listen: SocketAddr,
    /// HTTP (HLS, HTTP-FLV, receipts) listen address.
    pub http_listen: SocketAddr,
    /// RTMP chunk size used towards peers.
    pub chunk_size: u32,
    /// Keep the current GOP so new viewers start at once.
    pub gop_cache: bool,
    /// Also write live HLS under this directory.
    pub hls_dir: Option<PathBuf>,
    /// RTMPS listen address (needs [`tls`](Self::tls)); serves the same streams as RTMP.
    pub rtmps_listen: Option<SocketAddr>,
    /// HTTPS listen address (needs [`tls`](Self::tls)); serves what the HTTP listener serves.
    pub https_listen: Option<SocketAddr>,
    /// The certificate and key (PEM files) RTMPS and HTTPS present.
    pub tls: Option<CertificateFiles>,
    /// How often the certificate files are checked for a renewal (at once on `SIGHUP`).
    pub tls_reload_interval: Duration,
    /// The file holding the node's secret key (created on first start, mode 0600); read only
    /// when a coordinator is configured (a standalone node uses a throwaway key).
    pub identity: PathBuf,
    /// Upstream origins (`rtmp://host:port`), tried in order; empty means the origin role.
    pub upstreams: Vec<String>,
    /// The coordinator, if the node joins the network.
    pub coordinator: Option<CoordinatorConfig>,
    /// Who runs the node (registration).
    pub operator: String,
    /// Where rewards are paid (registration).
    pub payout_address: String,
    /// Upload capacity in kbit/s (registration).
    pub capacity_kbps: u64,
    /// RTMP base URL advertised to viewers; default `rtmp://<rtmp address>/live`.
    pub advertise_rtmp: Option<String>,
    /// HTTP base URL advertised to viewers; default `http://<http address>`.
    pub advertise_http: Option<String>,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// A pull with no local viewers for this long stops.
    pub pull_idle_timeout: Duration,
    /// How long an HTTP request waits for a pull to start delivering.
    pub pull_wait: Duration,
    /// How long a granted session may go without handing this node a receipt before its
    /// bytes are reported as unattested (players that cannot sign) rather than attested.
    /// Until then they wait, so a signing viewer's first bytes are never claimed twice.
    pub receipt_grace: Duration,
    /// The longest frames are held so viewers are woken (and written to) once per batch rather
    /// than per frame: less CPU per viewer for at most this much added latency (see
    /// [`streamr_media::relay::BatchPolicy`]; zero wakes viewers per video frame).
    pub batch_delay: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            rtmp_listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            chunk_size: 4096,
            gop_cache: true,
            hls_dir: None,
            rtmps_listen: None,
            https_listen: None,
            tls: None,
            tls_reload_interval: Duration::from_secs(60),
            identity: PathBuf::from("streamr-node.key"),
            upstreams: Vec::new(),
            coordinator: None,
            operator: "anonymous".into(),
            payout_address: "unset".into(),
            capacity_kbps: 10_000,
            advertise_rtmp: None,
            advertise_http: None,
            heartbeat_interval: Duration::from_secs(5),
            pull_idle_timeout: Duration::from_secs(30),
            pull_wait: Duration::from_secs(5),
            receipt_grace: Duration::from_secs(10),
            batch_delay: BatchPolicy::default().delay,
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The identity file could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        /// `RTMP` or `HTTP`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the coordinator failed at start-up.
    #[error("coordinator: {0}")]
    Coordinator(#[from] ClientError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// An RTMPS or HTTPS listener was asked for without a certificate and key.
    #[error("{what} needs a TLS certificate and key")]
    TlsWithoutCertificate {
        /// `RTMPS` or `HTTPS`.
        what: &'static str,
    },
}

/// Starts nodes.
#[derive(Debug, Clone, Copy)]
pub struct Node;

/// A running node; [`RunningNode::shutdown`] stops it (and deregisters it).
pub struct RunningNode {
    node_id: NodeId,
    rtmp: RelayServer,
    rtmps: Option<RelayServer>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    http_task: JoinHandle<()>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    leave: Option<(CoordinatorClient, KeyPair)>,
}

impl Node {
    /// Loads (or creates) the identity, binds both listeners, joins the coordinator when one is
    /// configured, and serves until [`RunningNode::shutdown`].
    pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        // A standalone node needs no lasting identity, and writes no key file.
        let key = if config.coordinator.is_some() {
            identity::load_or_create(&config.identity)?
        } else {
            KeyPair::generate(&mut rand::rngs::OsRng)
        };
        let tls = match &config.tls {
            Some(files) => Some(ServerTls::load(files.clone())?),
            None => None,
        };
        for (wanted, what) in [
            (config.rtmps_listen.is_some(), "RTMPS"),
            (config.https_listen.is_some(), "HTTPS"),
        ] {
            if wanted && tls.is_none() {
                return Err(NodeError::TlsWithoutCertificate { what });
            }
        }
        let relay_role = !config.upstreams.is_empty();
        let client = match &config.coordinator {
            Some(coordinator) => Some(CoordinatorClient::new(&coordinator.url)?),
            None => None,
        };
        let grants = match (&config.coordinator, &client, relay_role) {
            (Some(coordinator), Some(client), true) => {
                let coordinator_key = match coordinator.key {
                    Some(key) => key,
                    None => client.coordinator_info().await?.coordinator_key,
                };
                Some(GrantChecker::new(coordinator_key, key.node_id()))
            }
            _ => None,
        };

        let mut relay = RelayConfig::default();
        relay.gop_cache = config.gop_cache;
        // The delay is also the cap: no frame, audio included, waits longer.
        relay.batch = BatchPolicy::new(config.batch_delay, config.batch_delay);
        let mut server_config = RelayServerConfig::default()
            .with_bind(config.rtmp_listen)
            .with_relay(relay);
        server_config.chunk_size = config.chunk_size;
        let hub = RelayHub::new(server_config.relay.clone());
        let puller = relay_role.then(|| {
            UpstreamPuller::new(
                hub.clone(),
                UpstreamConfig {
                    upstreams: config.upstreams.clone(),
                    idle_timeout: config.pull_idle_timeout,
                    ..UpstreamConfig::default()
                },
            )
        });
        let gate = Arc::new(gate::Gate::new(
            hub.clone(),
            puller,
            grants,
            client
                .clone()
                .filter(|_| !relay_role)
                .map(|client| gate::OriginCheck {
                    client,
                    key: key.clone(),
                }),
            config.pull_wait,
            config.receipt_grace,
        ));

        let rtmp = RelayServer::start_on_hub(
            server_config.clone(),
            Arc::new(gate::NodeHooks(gate.clone())),
            hub.clone(),
        )
        .await
        .map_err(|source| NodeError::Listen {
            what: "RTMP",
            addr: config.rtmp_listen,
            source,
        })?;
        let rtmps = match (config.rtmps_listen, &tls) {
            (Some(addr), Some(tls)) => Some(
                RelayServer::start_tls_on_hub(
                    server_config.with_bind(addr),
                    Arc::new(gate::NodeHooks(gate.clone())),
                    hub.clone(),
                    tls.acceptor(streamr_tls::NO_ALPN),
                )
                .await
                .map_err(|source| NodeError::Listen {
                    what: "RTMPS",
                    addr,
                    source,
                })?,
            ),
            _ => None,
        };

        let stop = CancellationToken::new();
        let listen_error = |source| NodeError::Listen {
            what: "HTTP",
            addr: config.http_listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(listen_error)?;
        let http_addr = listener.local_addr().map_err(listen_error)?;
        let mut hls_config = LiveHlsConfig::default();
        if let Some(dir) = &config.hls_dir {
            hls_config = hls_config.with_directory(dir);
        }
        let hls = LiveHls::start(hub.clone(), hls_config, stop.clone());
        let notices = hls.segment_notices();
        let app = http_app(gate.clone(), router(HttpState::new(hub.clone(), hls)));
        let mut tasks = Vec::new();
        let mut https_addr = None;
        if let Some(tls) = &tls {
            tasks.push(tls.spawn_reloader(config.tls_reload_interval, stop.clone()));
            if let Some(addr) = config.https_listen {
                let listen_error = |source| NodeError::Listen {
                    what: "HTTPS",
                    addr,
                    source,
                };
                let tcp = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(listen_error)?;
                let listener = TlsListener::new(
                    tcp,
                    tls.acceptor(streamr_tls::HTTP_ALPN),
                    HandshakeLimits::default(),
                )
                .map_err(listen_error)?;
                https_addr =
                    Some(axum::serve::Listener::local_addr(&listener).map_err(listen_error)?);
                let app = app.clone();
                let https_stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { https_stop.cancelled().await })
                        .await;
                    if let Err(error) = served {
                        warn!(%error, "HTTPS server stopped");
                    }
                }));
            }
        }
        let http_stop = stop.clone();
        let http_task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await;
            if let Err(error) = served {
                warn!(%error, "HTTP server stopped");
            }
        });

        let mut leave = None;
        if let Some(client) = client {
            if relay_role {
                let advert = NodeAdvert {
                    operator: config.operator.clone(),
                    payout_address: config.payout_address.clone(),
                    rtmp_url: config
                        .advertise_rtmp
                        .clone()
                        .unwrap_or_else(|| format!("rtmp://{}/live", rtmp.local_addr())),
                    http_url: config
                        .advertise_http
                        .clone()
                        .unwrap_or_else(|| format!("http://{http_addr}")),
                    capacity_kbps: config.capacity_kbps,
                };
                client.register_node(&key, &advert).await?;
                info!(node = %key.node_id(), coordinator = client.base_url(), "registered");
                tasks.push(tokio::spawn(network::heartbeats(
                    client.clone(),
                    key.clone(),
                    gate.clone(),
                    config.heartbeat_interval,
                    stop.clone(),
                )));
                leave = Some((client, key.clone()));
            } else {
                tasks.push(tokio::spawn(network::segment_reports(
                    client,
                    key.clone(),
                    notices,
                    stop.clone(),
                )));
            }
        }
        info!(
            node = %key.node_id(),
            rtmp = %rtmp.local_addr(),
            rtmps = ?rtmps.as_ref().map(RelayServer::local_addr),
            http = %http_addr,
            https = ?https_addr,
            role = if relay_role { "relay" } else { "origin" },
            "streamr-node running"
        );
        Ok(RunningNode {
            node_id: key.node_id(),
            rtmp,
            rtmps,
            http_addr,
            https_addr,
            http_task,
            stop,
            tasks,
            leave,
        })
    }
}

/// The node's HTTP app: `POST /receipts`, and the media routes behind the grant gate.
fn http_app(gate: Arc<gate::Gate>, media: axum::Router) -> axum::Router {
    axum::Router::new()
        .route("/receipts", post(gate::post_receipts))
        .with_state(gate.clone())
        .fallback_service(media)
        .layer(axum::middleware::from_fn_with_state(gate, gate::http_gate))
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("node_id", &self.node_id)
            .field("rtmp_addr", &self.rtmp.local_addr())
            .field("http_addr", &self.http_addr)
            .field("registered", &self.leave.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningNode {
    /// The node's identity.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The RTMP listen address.
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp.local_addr()
    }

    /// The streams available here now (`app/name`, published locally or pulled), sorted.
    pub fn streams(&self) -> Vec<String> {
        self.rtmp
            .hub()
            .all_stats()
            .into_iter()
            .filter(|stats| stats.publishing)
            .map(|stats| format!("{}/{}", stats.key.app, stats.key.name))
            .collect()
    }

    /// The HTTP listen address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The RTMPS listen address, when RTMPS is served.
    pub fn rtmps_addr(&self) -> Option<SocketAddr> {
        self.rtmps.as_ref().map(RelayServer::local_addr)
    }

    /// The HTTPS listen address, when HTTPS is served.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Deregisters (when registered), then stops serving and every background task.
    pub async fn shutdown(self) {
        if let Some((client, key)) = &self.leave {
            network::deregister(client, key).await;
        }
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.rtmp.shutdown().await;
        if let Some(rtmps) = self.rtmps {
            rtmps.shutdown().await;
        }
        if let Err(error) = self.http_task.await {
            warn!(%error, "HTTP server task ended abnormally");
        }
    }
}
