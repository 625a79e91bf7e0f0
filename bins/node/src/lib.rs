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
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod accounting;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod gate;
mod held_heartbeat;
pub mod identity;
mod metrics;
pub mod nat;
mod network;
mod operator_key;
pub mod origin_gate;
mod origin_slots;
mod part_queue;
mod part_reports;
mod reachability;
mod relay_receipts;
pub mod relay_token;
mod report_queue;
/// The verifying viewer, now in `streamr-client`; this path keeps naming it.
pub use streamr_client::viewer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use streamr_client::client::{unix_ms, ClientError, CoordinatorClient, NodeAdvert};
use streamr_core::{CoordinatorKey, KeyPair, NodeId};
use streamr_media::http::{gated_router, HttpState, LiveHls, LiveHlsConfig, MediaFastPath};
use streamr_media::relay::{AdaptiveBatchConfig, BatchPolicy, RelayConfig, RelayHub};
use streamr_media::server::{spawn_adaptive_batching, PlayGate, RelayServer, RelayServerConfig};
use streamr_media::upstream::{PlayQuery, UpstreamConfig, UpstreamPuller};
pub use streamr_net::HttpLimits;
use streamr_tls::{CertificateFiles, HandshakeLimits, ServerTls, TlsError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use operator_key::OperatorKeyFile;

pub use identity::IdentityError;
pub use network::PinnedKeyError;
pub use origin_gate::{OriginPlay, OriginRefusal};
pub use report_queue::ReportQueueError;
pub use streamr_core::{GrantChecker, GrantRefusal};

/// How the node reaches the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Base URL, e.g. `http://coordinator:8090`.
    pub url: String,
    /// The coordinator's public key (it verifies session grants); when absent, the relay role
    /// asks the coordinator (`GET /coordinator`) at start.
    pub key: Option<CoordinatorKey>,
}

/// How the node authenticates its heartbeats to the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[non_exhaustive]
pub enum HeartbeatAuthMode {
    /// Under a node session: one signed handshake, then a MAC per heartbeat (cheaper for the
    /// coordinator); signed whenever no session can be had (an older coordinator, a
    /// coordinator key that does not check out).
    #[default]
    Session,
    /// Every heartbeat signed with the node key; no session is ever opened.
    Signed,
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
    /// The LL-HLS rendition's part target (`None`: MPEG-TS HLS only).
    pub ll_hls_part_target: Option<Duration>,
    /// The MPEG-TS HLS playlist's fixed target duration (`None`: from each stream's first GOPs).
    pub hls_target_duration: Option<Duration>,
    /// The longest HLS segment allowed, rounded up to whole seconds: a stream's GOPs up to it
    /// are cut whole (its target duration derived from them), longer ones are cut short.
    pub hls_max_segment_duration: Duration,
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
    /// The origin's segment report journal (reports wait there, on disk, until the coordinator
    /// takes them); `None`: beside the identity file, `<identity>.reports`.
    pub report_queue: Option<PathBuf>,
    /// Upstream origins (`rtmp://host:port`), tried in order; empty means the origin role.
    pub upstreams: Vec<String>,
    /// The coordinator, if the node joins the network.
    pub coordinator: Option<CoordinatorConfig>,
    /// Who runs the node (registration).
    pub operator: String,
    /// The file holding the operator's secret key (created on first start, mode 0600, like the
    /// identity): the node registers with its signature over the node id and `operator`, which
    /// binds the name to that key at the coordinator (the first key to claim a name keeps it).
    /// Copy the same file to every node of the operator. `None`: the node is its own operator.
    pub operator_key: Option<PathBuf>,
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
    /// How heartbeats are authenticated (default: under a node session).
    pub heartbeat_auth: HeartbeatAuthMode,
    /// A pull with no local viewers for this long stops.
    pub pull_idle_timeout: Duration,
    /// An upstream silent for this long in the middle of its stream is taken for dead.
    pub upstream_stall_timeout: Duration,
    /// How long an HTTP request waits for a pull to start delivering.
    pub pull_wait: Duration,
    /// How long a granted session may go without handing this node a receipt before its
    /// bytes are reported as unattested (players that cannot sign) rather than attested.
    /// Until then they wait, so a signing viewer's first bytes are never claimed twice.
    pub receipt_grace: Duration,
    /// A fixed batch delay: frames are held so viewers are woken (and written to) once per
    /// batch rather than per frame, less CPU per viewer for at most this much added latency (see
    /// [`streamr_media::relay::BatchPolicy`]; zero wakes viewers per video frame). `None`: the
    /// delay follows the node's CPU load up to [`NodeConfig::batch_delay_max`].
    pub batch_delay: Option<Duration>,
    /// Cap of the load-adaptive batch delay (see [`streamr_media::relay::AdaptiveBatch`]).
    pub batch_delay_max: Duration,
    /// Viewer writes per second per core above which the adaptive batch delay spaces the
    /// writes of the streams with the most viewers to stay within it, whatever the CPU load,
    /// shared out per stream (0: off; see [`AdaptiveBatchConfig::write_budget_per_core`] and
    /// [`AdaptiveBatchConfig::write_rate_delays`]).
    pub batch_write_budget: f64,
    /// Bytes a viewer's batch needs at most: the write-rate term holds a stream no longer
    /// than it takes to bring this many (0: no limit; see
    /// [`AdaptiveBatchConfig::max_batch_bytes`]).
    pub batch_max_bytes: u64,
    /// Wake each stream's viewers in staggered groups, each once per batch delay at a phase of
    /// its own (see [`streamr_media::relay::BatchPolicy::stagger`]; default off).
    pub batch_stagger: bool,
    /// Smallest batch of an HTTP-FLV player on a plain TCP connection sent with `sendfile` from
    /// its stream's shared in-memory file rather than copied in by a vectored write (0: never;
    /// see [`streamr_media::shared_bytes`]).
    pub flv_sendfile_min_bytes: usize,
    /// Smallest batch of an RTMP player on a plain TCP connection sent with `sendfile` from its
    /// stream's shared in-memory file of chunked frames (0: never; see
    /// [`streamr_media::shared_bytes`]).
    pub rtmp_sendfile_min_bytes: usize,
    /// RTMP connection limits and deadlines.
    pub rtmp_limits: RtmpLimits,
    /// HTTP connection limits and deadlines.
    pub http_limits: HttpLimits,
    /// Who may play at an origin that joined a coordinator (a standalone node, without a
    /// coordinator to ask, serves anyone).
    pub origin_play: OriginPlay,
    /// Port mappings on the LAN's router (UPnP-IGD) for listeners off loopback; a mapped
    /// listener is advertised at its external address unless `advertise_*` says otherwise.
    pub nat: nat::NatConfig,
    /// Reverse proxies in front of the HTTP listener: held to the connection total only.
    pub trusted_proxies: streamr_net::TrustedProxies,
}

/// The RTMP listener's connection budget and the deadline of each connection state. The RTMP
/// and HTTP budgets are separate, so a flood on one leaves the other's connections free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpLimits {
    /// Most RTMP connections open at once (default 4096).
    pub max_connections: usize,
    /// Most RTMP connections from one client address, IPv6 by /64 (default 128).
    pub max_connections_per_client: usize,
    /// Handshake and `connect` must be done within this time of accepting (default 10 s).
    pub handshake_timeout: Duration,
    /// After `connect` (or after a publish or play ended), publish or play must start within
    /// this time (default 10 s).
    pub setup_timeout: Duration,
    /// A publisher sending nothing for this long is closed (default 30 s).
    pub publisher_idle_timeout: Duration,
    /// A player of a stream with no publisher for this long is closed (default 5 min).
    pub play_wait_timeout: Duration,
    /// A peer that takes no byte of what it is sent for this long is closed, on progress: never
    /// while its bytes keep moving (default 20 s).
    pub write_timeout: Duration,
}

impl Default for RtmpLimits {
    fn default() -> Self {
        let server = RelayServerConfig::default();
        RtmpLimits {
            max_connections: 4096,
            max_connections_per_client: server.max_connections_per_client,
            handshake_timeout: server.handshake_timeout,
            setup_timeout: server.setup_timeout,
            publisher_idle_timeout: server.publisher_idle_timeout,
            play_wait_timeout: server.play_wait_timeout,
            write_timeout: server.write_timeout,
        }
    }
}

/// Default of [`NodeConfig::batch_write_budget`]: viewer writes per second per core. Measured
/// against SRS 7 (docs/benchmarks.md, issue 17): a write's fixed cost dominates a player's CPU
/// at live bitrates, so waking every viewer per video frame (30 writes a second) costs more
/// per viewer than SRS's merged writes. This budget starts spacing writes at 40 viewers per
/// core (a write each 40 ms) and gives 500 viewers on 2 cores a write each 250 ms (about
/// 130 ms hop p50 at 232 kbit/s against SRS's 175-190 ms, 1.9-2.0 times less CPU per player
/// than SRS's default); from about 560 viewers on 2 cores the spacing reaches the cap
/// ([`NodeConfig::batch_delay_max`], 280 ms), or for a high-bitrate stream the time it takes
/// to bring [`NodeConfig::batch_max_bytes`].
pub const DEFAULT_BATCH_WRITE_BUDGET: f64 = 1000.0;

/// File handles kept beyond the connection budgets (logs, HLS files, databases, upstreams).
const SPARE_FILE_HANDLES: u64 = 256;

/// Raises the open-file limit as far as allowed so both connection budgets fit in it, and says
/// so when they do not (then a flood could starve the other listener of file handles).
fn fit_file_handles(rtmp: usize, http: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let needed = (rtmp as u64)
        .saturating_add(http as u64)
        .saturating_add(SPARE_FILE_HANDLES);
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return;
    }
    let raised = limit.maximum.map_or(needed, |max| max.min(needed));
    if raised > current {
        let wanted = Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, wanted).is_ok() {
            info!(from = current, to = raised, "raised the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < needed {
        warn!(
            open_files = now,
            rtmp_connections = rtmp,
            http_connections = http,
            "the open-file limit is below the RTMP and HTTP connection budgets; raise it \
             (ulimit -n, LimitNOFILE=) or lower --rtmp-max-connections / --http-max-connections"
        );
    }
}

/// The shortest port-mapping lease [`NodeConfig::validate`] accepts: leases are whole seconds,
/// and a zero one asks the router for a permanent mapping (UPnP) or removes it (PCP, NAT-PMP).
pub const MIN_NAT_LEASE: Duration = Duration::from_secs(1);

impl NodeConfig {
    /// Checks the durations that cannot be zero (or below [`streamr_net::MIN_DEADLINE`]): every
    /// RTMP and HTTP deadline, the heartbeat and certificate-check periods, the pull and
    /// upstream timeouts, the pull wait and the receipt grace, and (with port mapping on) the
    /// NAT lease (at least [`MIN_NAT_LEASE`]) and router search timeout. [`Node::start`]
    /// refuses a configuration that fails this. Zero stays valid where it means something: a
    /// fixed batch delay of zero (a write per video frame), an adaptive batch delay capped at
    /// zero, no LL-HLS part target, no fixed HLS target duration.
    pub fn validate(&self) -> Result<(), NodeError> {
        let floor = streamr_net::MIN_DEADLINE;
        let limits = &self.rtmp_limits;
        let http = &self.http_limits;
        let mut settings = vec![
            (
                "rtmp_limits.handshake_timeout",
                limits.handshake_timeout,
                floor,
            ),
            ("rtmp_limits.setup_timeout", limits.setup_timeout, floor),
            (
                "rtmp_limits.publisher_idle_timeout",
                limits.publisher_idle_timeout,
                floor,
            ),
            (
                "rtmp_limits.play_wait_timeout",
                limits.play_wait_timeout,
                floor,
            ),
            ("rtmp_limits.write_timeout", limits.write_timeout, floor),
            (
                "http_limits.header_read_timeout",
                http.header_read_timeout,
                floor,
            ),
            ("http_limits.body_timeout", http.body_timeout, floor),
            ("http_limits.write_timeout", http.write_timeout, floor),
            ("tls_reload_interval", self.tls_reload_interval, floor),
            ("heartbeat_interval", self.heartbeat_interval, floor),
            ("pull_idle_timeout", self.pull_idle_timeout, floor),
            ("upstream_stall_timeout", self.upstream_stall_timeout, floor),
            ("pull_wait", self.pull_wait, floor),
            ("receipt_grace", self.receipt_grace, floor),
        ];
        if self.nat.mode != nat::NatMode::Off {
            settings.push(("nat.lease", self.nat.lease, MIN_NAT_LEASE));
            settings.push(("nat.search_timeout", self.nat.search_timeout, floor));
        }
        for (setting, value, min) in settings {
            if value < min {
                return Err(NodeError::TooShort {
                    setting,
                    value,
                    min,
                });
            }
        }
        Ok(())
    }

    /// Where the origin keeps its segment report journal.
    pub fn report_queue_path(&self) -> PathBuf {
        self.report_queue
            .clone()
            .unwrap_or_else(|| self.identity.with_extension("reports"))
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            rtmp_listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            chunk_size: 4096,
            gop_cache: true,
            hls_dir: None,
            ll_hls_part_target: Some(Duration::from_millis(350)),
            hls_target_duration: None,
            hls_max_segment_duration: Duration::from_secs(12),
            rtmps_listen: None,
            https_listen: None,
            tls: None,
            tls_reload_interval: Duration::from_secs(60),
            identity: PathBuf::from("streamr-node.key"),
            report_queue: None,
            upstreams: Vec::new(),
            coordinator: None,
            operator: "anonymous".into(),
            operator_key: None,
            payout_address: "unset".into(),
            capacity_kbps: 10_000,
            advertise_rtmp: None,
            advertise_http: None,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_auth: HeartbeatAuthMode::Session,
            pull_idle_timeout: Duration::from_secs(30),
            upstream_stall_timeout: Duration::from_secs(3),
            pull_wait: Duration::from_secs(5),
            receipt_grace: Duration::from_secs(10),
            batch_delay: None,
            batch_delay_max: AdaptiveBatchConfig::default().max_delay,
            batch_write_budget: DEFAULT_BATCH_WRITE_BUDGET,
            batch_max_bytes: AdaptiveBatchConfig::default().max_batch_bytes,
            batch_stagger: false,
            flv_sendfile_min_bytes: streamr_media::http::ZERO_COPY_MIN_BYTES,
            rtmp_sendfile_min_bytes: streamr_media::server::SENDFILE_MIN_BYTES,
            rtmp_limits: RtmpLimits::default(),
            http_limits: HttpLimits::default(),
            origin_play: OriginPlay::default(),
            nat: nat::NatConfig::default(),
            trusted_proxies: streamr_net::TrustedProxies::default(),
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
    /// The pinned coordinator key is not the key the coordinator serves.
    #[error(transparent)]
    CoordinatorKey(#[from] network::PinnedKeyError),
    /// The origin's segment report journal could not be opened.
    #[error(transparent)]
    ReportQueue(#[from] report_queue::ReportQueueError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// An RTMPS or HTTPS listener was asked for without a certificate and key.
    #[error("{what} needs a TLS certificate and key")]
    TlsWithoutCertificate {
        /// `RTMPS` or `HTTPS`.
        what: &'static str,
    },
    /// A deadline, period or window of the [`NodeConfig`] is too short to work (zero above
    /// all); see [`NodeConfig::validate`].
    #[error(
        "{setting} of {value:?} is too short: it must be at least {min:?} (zero does not turn \
         it off)"
    )]
    TooShort {
        /// The [`NodeConfig`] field (`http_limits.write_timeout`, `heartbeat_interval`, ...).
        setting: &'static str,
        /// Its value.
        value: Duration,
        /// The shortest it may be.
        min: Duration,
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
    /// The coordinator to leave on shutdown, once the node joined it.
    leave: Option<(
        CoordinatorClient,
        KeyPair,
        Arc<std::sync::atomic::AtomicBool>,
    )>,
    /// Port mappings on the router, removed on shutdown.
    port_mappings: Option<nat::PortMappings>,
}

impl Node {
    /// Loads (or creates) the identity, binds both listeners, joins the coordinator when one is
    /// configured, and serves until [`RunningNode::shutdown`].
    pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        config.validate()?;
        // A standalone node needs no lasting identity, and writes no key file.
        let key = if config.coordinator.is_some() {
            identity::load_or_create(&config.identity)?
        } else {
            KeyPair::generate(&mut rand::rngs::OsRng)
        };
        let (operator_key, operator_membership) = match (&config.operator_key, &config.coordinator)
        {
            (Some(path), Some(_)) => {
                let (file, membership) =
                    OperatorKeyFile::open(path, &config.operator, key.node_id())?;
                (Some(file), Some(membership))
            }
            _ => (None, None),
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
        // A relay checks its pinned key against the coordinator's when it can reach it now; when
        // it cannot, it starts anyway and checks (and joins) once the coordinator answers.
        let gated_origin = !relay_role && config.origin_play == OriginPlay::RelaysAndGranted;
        let mut learn_key = None;
        // The origin admits as many relays per stream as the coordinator's tree fan-out.
        let mut relay_fanout = None;
        let mut learn_fanout = false;
        let checker = match (&config.coordinator, &client, relay_role || gated_origin) {
            (Some(coordinator), Some(client), true) => {
                let checker = GrantChecker::awaiting_key(key.node_id());
                match client.coordinator_info().await {
                    Ok(info) => {
                        let served = info.coordinator_key;
                        network::check_pinned_key(coordinator.key, served)?;
                        checker.set_key(served);
                        relay_fanout = info.relay_fanout;
                    }
                    Err(error) if error.status().is_none() => {
                        warn!(coordinator = client.base_url(), %error,
                            "the coordinator is unreachable; serving what this node can and \
                             joining when it answers");
                        learn_fanout = gated_origin;
                        if let Some(pinned) = coordinator.key {
                            checker.set_key(pinned);
                        } else if gated_origin {
                            learn_key = Some(checker.clone());
                        }
                    }
                    Err(error) => return Err(error.into()),
                }
                Some(checker)
            }
            _ => None,
        };
        let (grants, origin_grants) = match checker {
            Some(checker) if relay_role => (Some(checker), None),
            checker => (None, checker),
        };
        let reporter = match (&client, relay_role) {
            (Some(_), false) => Some(network::SegmentReporter::open(&config.report_queue_path())?),
            _ => None,
        };

        let mut relay = RelayConfig::default();
        relay.gop_cache = config.gop_cache;
        // A fixed delay is also the cap: no frame, audio included, waits longer. An adaptive one
        // starts at zero and never exceeds its cap.
        relay.batch = match config.batch_delay {
            Some(delay) => BatchPolicy::new(delay, delay),
            None => BatchPolicy::new(Duration::ZERO, config.batch_delay_max),
        }
        .with_stagger(config.batch_stagger);
        let mut server_config = RelayServerConfig::default()
            .with_bind(config.rtmp_listen)
            .with_relay(relay);
        server_config.chunk_size = config.chunk_size;
        server_config.sendfile_min_bytes =
            (config.rtmp_sendfile_min_bytes > 0).then_some(config.rtmp_sendfile_min_bytes);
        let rtmp_limits = config.rtmp_limits;
        server_config.max_connections = rtmp_limits.max_connections;
        server_config.max_connections_per_client = rtmp_limits.max_connections_per_client;
        server_config.handshake_timeout = rtmp_limits.handshake_timeout;
        server_config.setup_timeout = rtmp_limits.setup_timeout;
        server_config.publisher_idle_timeout = rtmp_limits.publisher_idle_timeout;
        server_config.play_wait_timeout = rtmp_limits.play_wait_timeout;
        server_config.write_timeout = rtmp_limits.write_timeout;
        fit_file_handles(
            rtmp_limits.max_connections,
            config.http_limits.max_connections,
        );
        let hub = RelayHub::new(server_config.relay.clone());
        let edge_grants = Arc::new(relay_receipts::EdgeGrants::default());
        let puller = relay_role.then(|| {
            let puller = UpstreamPuller::new(
                hub.clone(),
                UpstreamConfig {
                    upstreams: config.upstreams.clone(),
                    idle_timeout: config.pull_idle_timeout,
                    stall_timeout: config.upstream_stall_timeout,
                    // A networked relay proves itself to origins serving only relays.
                    play_query: client.is_some().then(|| {
                        let key = key.clone();
                        PlayQuery::new(move |stream| {
                            format!(
                                "{}={}",
                                relay_token::RELAY_PARAM,
                                relay_token::make(&key, &stream.name, unix_ms())
                            )
                        })
                    }),
                    ..UpstreamConfig::default()
                },
            );
            // With a coordinator, the relay tree names the upstreams first.
            match &client {
                Some(client) => puller.with_source(Arc::new(network::TreeSource {
                    client: client.clone(),
                    key: key.clone(),
                    fallback: config.upstreams.clone(),
                    known: std::sync::Mutex::default(),
                    edges: edge_grants.clone(),
                })),
                None => puller,
            }
        });
        let origin_gate = client
            .clone()
            .zip(origin_grants)
            .map(|(client, grants)| origin_gate::OriginGate::new(client, grants));
        let origin_slots = origin_gate.as_ref().map(|gate| gate.slots.clone());
        if let (Some(slots), Some(fanout)) = (&origin_slots, relay_fanout) {
            slots.set_cap(usize::try_from(fanout).unwrap_or(usize::MAX));
        }
        let gate = gate::Gate::new(
            hub.clone(),
            grants,
            client
                .clone()
                .filter(|_| !relay_role)
                .map(|client| gate::OriginCheck {
                    client,
                    key: key.clone(),
                }),
            config.receipt_grace,
        );
        let gate = Arc::new(match origin_gate {
            Some(origin_gate) => gate.with_origin_gate(origin_gate),
            None => gate,
        });
        // One gate for every delivery path: the node's hooks, then the pull (relay role).
        let play_gate = PlayGate::new(Arc::new(gate::NodeHooks(gate.clone())));
        let play_gate = match &puller {
            Some(puller) => play_gate.with_upstream(puller.clone(), config.pull_wait),
            None => play_gate,
        };

        let rtmp = RelayServer::start_on_hub(
            server_config.clone(),
            Arc::new(play_gate.clone()),
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
                    Arc::new(play_gate.clone()),
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
        let mut hls_config = LiveHlsConfig::default()
            .with_low_latency(config.ll_hls_part_target)
            .with_ts_target_duration(config.hls_target_duration)
            .with_max_segment_duration(config.hls_max_segment_duration);
        if let Some(dir) = &config.hls_dir {
            hls_config = hls_config.with_directory(dir);
        }
        // Watching the hub starts once the notices are subscribed to and the origin numbering
        // is set: a stream published before (the RTMP server listens already) is then reported
        // and numbered from its first segment.
        let hls = LiveHls::new(hub.clone(), hls_config, stop.clone());
        // The origin's signed part reports, one coordinator fetch per stream: for viewers, and
        // for a relay to list segments under the origin's media sequence numbers.
        let report_relay = client.as_ref().map(|client| {
            let relay = part_reports::PartReportRelay::new(Arc::new(client.clone()), stop.clone());
            hls.set_origin_numbering(Arc::new(part_reports::ReportNumbering {
                relay: relay.clone(),
                fallback: Arc::new(network::CoordinatorNumbering {
                    client: client.clone(),
                }),
            }));
            relay
        });
        let notices = hls.segment_notices();
        let part_notices = hls.part_notices();
        let http_budget = config
            .http_limits
            .budget()
            .trusting(config.trusted_proxies.clone());
        let media_state = HttpState::new(hub.clone(), hls.clone())
            .with_shutdown(stop.clone())
            .with_write_timeout(config.http_limits.write_timeout)
            .with_flv_sendfile_min(
                (config.flv_sendfile_min_bytes > 0).then_some(config.flv_sendfile_min_bytes),
            );
        let node_metrics = Arc::new(metrics::NodeMetrics {
            flv: media_state.flv_counters(),
            rtmp: rtmp.metrics_source(),
            http_budget: http_budget.clone(),
            http_bytes_out: Arc::default(),
            hls_segments: Arc::default(),
            puller: puller.clone(),
            hub: hub.clone(),
            reachability: Arc::default(),
        });
        let mut tasks = vec![];
        if config.batch_delay.is_none() {
            tasks.push(spawn_adaptive_batching(
                hub.clone(),
                AdaptiveBatchConfig::with_max_delay(config.batch_delay_max)
                    .with_write_budget(config.batch_write_budget)
                    .with_max_batch_bytes(config.batch_max_bytes),
                stop.clone(),
            ));
        }
        tasks.push(tokio::spawn(count_segments(
            hls.segment_notices(),
            node_metrics.hls_segments.clone(),
            stop.clone(),
        )));
        hls.start_watching();
        drop(hls);
        let operations = axum::Router::new()
            .route("/metrics", get(metrics::metrics))
            .route("/healthz", get(metrics::healthz))
            .with_state(node_metrics.clone());
        // Viewers get the origin's signed part reports here.
        let reports = report_relay.map(|relay| part_reports::ReportRoute {
            relay,
            hub: hub.clone(),
        });
        let app = http_app(
            gate.clone(),
            play_gate.clone(),
            media_state.clone(),
            reports,
        )
        .merge(operations)
        .layer(axum::middleware::from_fn_with_state(
            node_metrics.http_bytes_out.clone(),
            count_response_bytes,
        ));
        // HLS GETs skip the routers above: the same gate, handlers, headers and counters.
        let bytes_out = node_metrics.http_bytes_out.clone();
        let app = MediaFastPath::new(app, media_state, play_gate).with_response_map(
            move |response: axum::response::Response| {
                let (parts, body) = response.into_parts();
                axum::response::Response::from_parts(
                    parts,
                    accounting::counted(body, bytes_out.clone()),
                )
            },
        );
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
                https_addr = Some(tcp.local_addr().map_err(listen_error)?);
                let app = app.clone();
                let https_stop = stop.clone();
                // HTTPS shares the HTTP budget and deadlines: one pool of HTTP connections.
                let served = streamr_net::http::serve_tls(
                    tcp,
                    app,
                    http_budget.clone(),
                    config.http_limits,
                    tls.acceptor(streamr_tls::HTTP_ALPN),
                    HandshakeLimits::default().timeout,
                    async move { https_stop.cancelled().await },
                );
                tasks.push(tokio::spawn(async move {
                    let served = served.await;
                    if let Err(error) = served {
                        warn!(%error, "HTTPS server stopped");
                    }
                }));
            }
        }
        let http_stop = stop.clone();
        let http_limits = config.http_limits;
        // Plain HTTP answers HLS GETs in its own loop, without hyper (HTTPS goes through hyper).
        let direct = app.direct();
        let http_task = tokio::spawn(async move {
            let served = streamr_net::http::serve_direct(
                listener,
                app,
                direct,
                http_budget,
                http_limits,
                async move { http_stop.cancelled().await },
            )
            .await;
            if let Err(error) = served {
                warn!(%error, "HTTP server stopped");
            }
        });

        if let (true, Some(client)) = (learn_key.is_some() || learn_fanout, &client) {
            tasks.push(tokio::spawn(origin_gate::learn_coordinator_key(
                client.clone(),
                learn_key,
                origin_slots.clone(),
                stop.clone(),
            )));
        }
        let mut listeners = vec![
            nat::Listener {
                what: "RTMP",
                addr: rtmp.local_addr(),
            },
            nat::Listener {
                what: "HTTP",
                addr: http_addr,
            },
        ];
        if let Some(rtmps) = &rtmps {
            listeners.push(nat::Listener {
                what: "RTMPS",
                addr: rtmps.local_addr(),
            });
        }
        if let Some(addr) = https_addr {
            listeners.push(nat::Listener {
                what: "HTTPS",
                addr,
            });
        }
        let port_mappings = nat::map_ports(config.nat, &listeners).await;
        let mapped = |what: &str| port_mappings.as_ref().and_then(|m| m.external(what));
        let mut leave = None;
        if let Some(client) = client {
            if relay_role {
                let advert = NodeAdvert {
                    operator: config.operator.clone(),
                    payout_address: config.payout_address.clone(),
                    rtmp_url: config
                        .advertise_rtmp
                        .clone()
                        .or_else(|| mapped("RTMP").map(|a| format!("rtmp://{a}/live")))
                        .unwrap_or_else(|| format!("rtmp://{}/live", rtmp.local_addr())),
                    http_url: config
                        .advertise_http
                        .clone()
                        .or_else(|| mapped("HTTP").map(|a| format!("http://{a}")))
                        .unwrap_or_else(|| format!("http://{http_addr}")),
                    capacity_kbps: config.capacity_kbps,
                    operator_membership,
                };
                let joined = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let join = network::Join {
                    client: client.clone(),
                    key: key.clone(),
                    advert,
                    pinned: config.coordinator.as_ref().and_then(|c| c.key),
                    grants: gate.grants.clone(),
                    joined: joined.clone(),
                    reachability: node_metrics.reachability.clone(),
                    pulls: puller.clone().map(|puller| (puller, edge_grants.clone())),
                    heartbeat_auth: config.heartbeat_auth,
                    operator_key,
                    held_heartbeat: config.identity.with_extension("heartbeat"),
                };
                if let Some(puller) = puller {
                    tasks.push(tokio::spawn(relay_receipts::sign_relay_receipts(
                        client.clone(),
                        key.clone(),
                        puller,
                        edge_grants,
                        notices,
                        stop.clone(),
                    )));
                }
                tasks.push(tokio::spawn(network::join_then_heartbeat(
                    join,
                    gate.clone(),
                    config.heartbeat_interval,
                    stop.clone(),
                )));
                leave = Some((client, key.clone(), joined));
            } else if let Some(reporter) = reporter {
                tasks.push(tokio::spawn(network::queue_segments(
                    reporter.clone(),
                    notices,
                    stop.clone(),
                )));
                tasks.push(tokio::spawn(network::report_parts(
                    client.clone(),
                    key.clone(),
                    part_notices,
                    stop.clone(),
                )));
                tasks.push(tokio::spawn(network::deliver_segments(
                    client,
                    key.clone(),
                    reporter,
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
            origin_play = if gate.origin_gate.is_some() {
                "relays and granted viewers"
            } else if gate.grants.is_some() {
                "granted viewers"
            } else {
                "anyone"
            },
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
            port_mappings,
        })
    }
}

/// Counts the HLS segments cut, for `/metrics`.
async fn count_segments(
    mut notices: tokio::sync::broadcast::Receiver<streamr_media::http::SegmentNotice>,
    count: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = notices.recv() => received,
        };
        let cut = match received {
            Ok(_) => 1,
            Err(RecvError::Lagged(missed)) => missed,
            Err(RecvError::Closed) => return,
        };
        count.fetch_add(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Adds every response body's bytes to `counter`, for `/metrics`.
async fn count_response_bytes(
    axum::extract::State(counter): axum::extract::State<Arc<std::sync::atomic::AtomicU64>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // A handler that writes its response on the raw connection (HTTP-FLV) counts here too.
    request
        .extensions_mut()
        .get_or_insert_default::<streamr_media::http::ResponseByteCounters>()
        .push(counter.clone());
    let (parts, body) = next.run(request).await.into_parts();
    axum::response::Response::from_parts(parts, accounting::counted(body, counter))
}

/// The node's HTTP app: `POST /receipts`, with a coordinator `GET
/// /{app}/{stream}/part-reports` (the origin's signed part reports, see [`part_reports`]), and
/// the media routes behind the play gate.
fn http_app(
    gate: Arc<gate::Gate>,
    play_gate: PlayGate,
    media: HttpState,
    reports: Option<part_reports::ReportRoute>,
) -> axum::Router {
    let mut app = axum::Router::new()
        .route("/receipts", post(gate::post_receipts))
        .with_state(gate);
    if let Some(reports) = reports {
        app = app.merge(
            axum::Router::new()
                .route("/{app}/{stream}/part-reports", get(part_reports::serve))
                .with_state(reports),
        );
    }
    app.fallback_service(gated_router(media, play_gate))
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("node_id", &self.node_id)
            .field("rtmp_addr", &self.rtmp.local_addr())
            .field("http_addr", &self.http_addr)
            .field(
                "joined",
                &self.leave.as_ref().is_some_and(|(_, _, joined)| {
                    joined.load(std::sync::atomic::Ordering::Acquire)
                }),
            )
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
        if let Some((client, key, joined)) = &self.leave {
            if joined.load(std::sync::atomic::Ordering::Acquire) {
                network::deregister(client, key).await;
            }
        }
        if let Some(mappings) = self.port_mappings {
            mappings.remove().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_deadlines_and_periods_are_invalid_where_zero_means_nothing() {
        assert!(NodeConfig::default().validate().is_ok());
        // Zero means something here: a write per frame, no adaptive delay, no LL-HLS.
        let meaningful_zeros = NodeConfig {
            batch_delay: Some(Duration::ZERO),
            batch_delay_max: Duration::ZERO,
            ll_hls_part_target: None,
            nat: nat::NatConfig {
                mode: nat::NatMode::Off,
                lease: Duration::ZERO,
                ..nat::NatConfig::default()
            },
            ..NodeConfig::default()
        };
        assert!(meaningful_zeros.validate().is_ok());
        let mut config = NodeConfig::default();
        config.http_limits.write_timeout = Duration::ZERO;
        let error = config.validate().unwrap_err();
        assert!(matches!(
            error,
            NodeError::TooShort {
                setting: "http_limits.write_timeout",
                ..
            }
        ));
        assert!(
            error.to_string().contains("http_limits.write_timeout"),
            "{error}"
        );
        let config = NodeConfig {
            heartbeat_interval: Duration::from_micros(10),
            ..NodeConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("heartbeat_interval"));
        let mut config = NodeConfig::default();
        config.nat.lease = Duration::from_millis(500);
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("nat.lease"), "{error}");
    }

    #[tokio::test]
    async fn start_refuses_an_invalid_config_before_binding_anything() {
        let mut config = NodeConfig {
            rtmp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nat: nat::NatConfig {
                mode: nat::NatMode::Off,
                ..nat::NatConfig::default()
            },
            ..NodeConfig::default()
        };
        config.rtmp_limits.write_timeout = Duration::ZERO;
        let error = Node::start(config).await.expect_err("refused");
        assert!(
            error.to_string().contains("rtmp_limits.write_timeout"),
            "{error}"
        );
    }
}
