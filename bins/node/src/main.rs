//! `streamr-node`: the StreamrP2P friend node.
//!
//! Runs an RTMP origin/relay: encoders publish to `rtmp://<listen>/<app>/<key>`, players pull the
//! same URL. With `--upstream` the node relays streams from origins on demand; with
//! `--coordinator` it joins the network (see the `streamr_node` library). Logs go to stderr (`--log-format pretty|json`, level from `RUST_LOG`, default
//! `info`); Ctrl-C (or SIGTERM) shuts down gracefully.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};
use streamr_core::CoordinatorKey;
use streamr_node::nat::{NatConfig, NatMode};
use streamr_node::{
    CoordinatorConfig, HeartbeatAuthMode, HttpLimits, Node, NodeConfig, OriginPlay, RtmpLimits,
};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Who may play at an origin that joined a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OriginPlayArg {
    /// Only relays registered with the coordinator and viewers with a grant for this node.
    RelaysAndGranted,
    /// Anyone: viewers can bypass the friend nodes and their accounting.
    Public,
}

/// StreamrP2P friend node: an RTMP origin/relay that re-serves streams to viewers.
#[derive(Debug, Parser)]
#[command(name = "streamr-node", version, about)]
struct Args {
    /// A TOML file of settings whose keys are these long flag names (`http-listen =
    /// "0.0.0.0:8080"`); flags and variables override it.
    #[arg(long, env = "STREAMR_CONFIG")]
    config: Option<PathBuf>,

    /// Address the RTMP server listens on.
    #[arg(long, env = "STREAMR_RTMP_LISTEN", default_value = "127.0.0.1:1935")]
    rtmp_listen: SocketAddr,

    /// RTMP chunk size announced to and used towards peers (1..=2147483647).
    #[arg(long, env = "STREAMR_CHUNK_SIZE", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=0x7FFF_FFFF))]
    chunk_size: u32,

    /// Keep the current GOP so new viewers start at once (`--gop-cache false` to disable).
    #[arg(long, env = "STREAMR_GOP_CACHE", default_value_t = true, action = ArgAction::Set)]
    gop_cache: bool,

    /// Address the HTTP server (HLS `/{app}/{key}.m3u8`, HTTP-FLV `/{app}/{key}.flv`) listens on.
    #[arg(long, env = "STREAMR_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,

    /// Address the RTMPS server listens on (needs --tls-cert and --tls-key); it serves the
    /// same streams as RTMP, to publishers and players.
    #[arg(
        long,
        alias = "rtmps-bind",
        env = "STREAMR_RTMPS_LISTEN",
        requires = "tls_cert"
    )]
    rtmps_listen: Option<SocketAddr>,

    /// Address the HTTPS server listens on (needs --tls-cert and --tls-key); it serves what the
    /// HTTP server serves.
    #[arg(long, env = "STREAMR_HTTPS_LISTEN", requires = "tls_cert")]
    https_listen: Option<SocketAddr>,

    /// PEM certificate chain (leaf first) for RTMPS and HTTPS; replaced files are picked up
    /// without a restart.
    #[arg(long, env = "STREAMR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "STREAMR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// How often the certificate and key files are checked for a renewal (SIGHUP checks at once).
    #[arg(long, env = "STREAMR_TLS_RELOAD_INTERVAL", default_value = "60s",
          value_parser = streamr_net::cli::positive_duration)]
    tls_reload_interval: Duration,

    /// Also write live HLS playlists and segments under this directory (`{app}/{key}.m3u8`).
    #[arg(long, env = "STREAMR_HLS_DIR")]
    hls_dir: Option<std::path::PathBuf>,

    /// LL-HLS part target (clamped to 100ms..=2s): a stream's PART-TARGET is this, or is
    /// fitted to whole frames of its frame rate (one frame under ~3 fps), or is four times this
    /// (at most 2s) for a variable frame rate, as the frames of the node's first segment of the
    /// stream show (a relay takes its origin's); `0s` serves the MPEG-TS playlist only.
    #[arg(long, env = "STREAMR_LL_HLS_PART_TARGET", default_value = "350ms",
          value_parser = streamr_net::cli::bounded_duration)]
    ll_hls_part_target: Duration,

    /// The HLS playlists' EXT-X-TARGETDURATION (whole seconds), fixed so that no segment ever
    /// exceeds it: a GOP running past it is cut short, the frames up to the next keyframe are
    /// left out and the next segment marks a discontinuity (in LL-HLS too, which declares the
    /// same target; below the 4s segment length, segments are aimed at it instead). `0s`
    /// derives it from each stream's first GOPs (as short as the segments) and holds later,
    /// longer GOPs to it alike. A relay takes its origin's instead.
    #[arg(long, env = "STREAMR_HLS_TARGET_DURATION", default_value = "0s",
          value_parser = streamr_net::cli::bounded_duration)]
    hls_target_duration: Duration,

    /// The longest HLS segment allowed (whole seconds): GOPs up to it make whole segments (one
    /// per GOP when GOPs are longer than the 4s segment length) and set the target duration;
    /// a longer GOP is cut short, the frames up to its next keyframe left out of both
    /// renditions. Raise it for encoders with long keyframe intervals (`-g 600` at 30 fps
    /// makes 20s GOPs). A relay cuts its origin's announced target whole even above its own.
    #[arg(long, env = "STREAMR_HLS_MAX_SEGMENT_DURATION", default_value = "12s",
          value_parser = streamr_net::cli::positive_duration)]
    hls_max_segment_duration: Duration,

    /// File holding the node's secret key (created on first start, mode 0600; used only with
    /// --coordinator).
    #[arg(long, env = "STREAMR_IDENTITY", default_value = "streamr-node.key")]
    identity: PathBuf,

    /// Origin to pull streams from on demand (`rtmp://host:port`); repeat for failover.
    /// Without it the node is an origin.
    #[arg(long = "upstream", env = "STREAMR_UPSTREAMS", value_delimiter = ',')]
    upstreams: Vec<String>,

    /// Coordinator to join (`http://host:port`); without it the node runs standalone.
    #[arg(long, env = "STREAMR_COORDINATOR")]
    coordinator: Option<String>,

    /// The coordinator's PUBLIC key (hex, as `GET /coordinator` shows it), which verifies
    /// viewers' session grants; asked from the coordinator when not given. The node refuses to
    /// start when it differs from the coordinator's (`--coordinator-key` and
    /// STREAMR_COORDINATOR_KEY are older names for it).
    #[arg(
        long,
        alias = "coordinator-key",
        env = "STREAMR_COORDINATOR_PUBLIC_KEY"
    )]
    coordinator_public_key: Option<CoordinatorKey>,

    /// The origin's segment report journal: reports wait there, on disk, while the coordinator
    /// is unreachable (default: beside the identity file, `<identity>.reports`).
    #[arg(long, env = "STREAMR_REPORT_QUEUE")]
    report_queue: Option<PathBuf>,

    /// No longer used: the origin signs its segment reports with its node key. Accepted (and
    /// ignored, with a warning) so existing command lines keep working.
    #[arg(long, env = "STREAMR_COORDINATOR_TOKEN", hide = true)]
    coordinator_token: Option<String>,

    /// Who runs this node (sent when registering).
    #[arg(long, env = "STREAMR_OPERATOR", default_value = "anonymous")]
    operator: String,

    /// File holding the operator's secret key (created on first start, mode 0600; copy it to
    /// every node the operator runs). The node registers with the key's signature over its id
    /// and --operator; the coordinator binds the name to the first key that claims it and
    /// refuses the name to nodes without that key's signature. Without it the node is its own
    /// operator for the reward caps. Read again every heartbeat interval: after `streamr
    /// operator-rotation`, replace the file with the new key and the node registers with it,
    /// without a restart.
    #[arg(long, env = "STREAMR_OPERATOR_KEY")]
    operator_key: Option<PathBuf>,

    /// Where rewards are paid (sent when registering).
    #[arg(long, env = "STREAMR_PAYOUT_ADDRESS", default_value = "unset")]
    payout_address: String,

    /// Upload capacity in kbit/s (sent when registering).
    #[arg(long, env = "STREAMR_CAPACITY_KBPS", default_value_t = 10_000)]
    capacity_kbps: u64,

    /// RTMP base URL viewers are sent to (default `rtmp://<rtmp-listen>/live`).
    #[arg(long, env = "STREAMR_ADVERTISE_RTMP")]
    advertise_rtmp: Option<String>,

    /// HTTP base URL viewers are sent to (default `http://<http-listen>`).
    #[arg(long, env = "STREAMR_ADVERTISE_HTTP")]
    advertise_http: Option<String>,

    /// Time between heartbeats to the coordinator.
    #[arg(long, env = "STREAMR_HEARTBEAT_INTERVAL", default_value = "5s",
          value_parser = streamr_net::cli::positive_duration)]
    heartbeat_interval: Duration,

    /// How heartbeats are authenticated: under a node session (one signed handshake, then a
    /// cheap MAC per heartbeat; signed whenever no session can be had) or each signed with the
    /// node key (`signed`: no session is ever opened).
    #[arg(long, env = "STREAMR_HEARTBEAT_AUTH", value_enum,
          default_value_t = HeartbeatAuthMode::Session)]
    heartbeat_auth: HeartbeatAuthMode,

    /// An upstream (a relay's parent) that sends nothing for this long in the middle of its
    /// stream is taken for dead, and the relay asks the coordinator for another at once.
    #[arg(long, env = "STREAMR_UPSTREAM_STALL_TIMEOUT", default_value = "3s",
          value_parser = streamr_net::cli::positive_duration)]
    upstream_stall_timeout: Duration,

    /// A relay's pull of a stream that nobody here has watched or requested for this long
    /// stops (the next viewer starts it again).
    #[arg(long, env = "STREAMR_PULL_IDLE_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    pull_idle_timeout: Duration,

    /// How long a viewer's session may go without handing this node a receipt before its bytes
    /// are reported as unattested (players that cannot sign) instead of attested.
    #[arg(long, env = "STREAMR_RECEIPT_GRACE", default_value = "10s",
          value_parser = streamr_net::cli::positive_duration)]
    receipt_grace: Duration,

    /// A fixed batch delay: frames are held this long to wake each viewer once per batch rather
    /// than per frame, less CPU per viewer for at most that much added latency (0s: once per
    /// video frame). Unset (the default), the delay follows the node's CPU load.
    #[arg(long, env = "STREAMR_BATCH_DELAY", value_parser = streamr_net::cli::bounded_duration)]
    batch_delay: Option<Duration>,

    /// Cap of the load-adaptive batch delay (used when --batch-delay is unset): zero while the
    /// node uses at most 30 % of its cores, growing with its load above that (half the cap at
    /// 60 %), up to this (0s: no delay, once per video frame whatever the load).
    #[arg(long, env = "STREAMR_BATCH_DELAY_MAX", default_value = "280ms",
          value_parser = streamr_net::cli::bounded_duration)]
    batch_delay_max: Duration,

    /// Write budget of the load-adaptive batch delay (used when --batch-delay is unset), in
    /// viewer writes per second per core: once the viewers would get more, the writes of the
    /// streams with the most viewers are spaced to stay within it (up to --batch-delay-max),
    /// whatever the CPU load, while streams with few viewers keep a write per frame; 0 turns
    /// this off, leaving the delay to the CPU load alone (lowest latency, more CPU per viewer).
    #[arg(long, env = "STREAMR_BATCH_WRITE_BUDGET", default_value_t = streamr_node::DEFAULT_BATCH_WRITE_BUDGET)]
    batch_write_budget: f64,

    /// Bytes a viewer's batch needs at most (used when --batch-delay is unset): the write
    /// budget holds a stream's frames no longer than the stream takes to bring this many
    /// (a 3 Mbit/s stream about 260 ms at the default, a 232 kbit/s one up to
    /// --batch-delay-max): a high-bitrate stream's hop stays short, since every viewer woken
    /// at once takes its large write in turn, at some CPU (0: no limit).
    #[arg(long, env = "STREAMR_BATCH_MAX_BYTES", default_value_t = streamr_media::relay::AdaptiveBatchConfig::default().max_batch_bytes)]
    batch_max_bytes: u64,

    /// Wake a stream's viewers in staggered groups (one per 250 viewers and 25 ms of delay, at
    /// most 8), each once per batch delay at a phase of its own, instead of all at once when a
    /// batch's oldest frame waited the delay: one write per viewer per delay whatever the frame
    /// pattern, a frame still waits at most the delay, 15-20 ms less hop latency at 200 ms, for
    /// up to a third more CPU per player at 500-1000 players (`--batch-stagger true` to use).
    #[arg(long, env = "STREAMR_BATCH_STAGGER", default_value_t = false, action = ArgAction::Set)]
    batch_stagger: bool,

    /// HTTP-FLV players on plain TCP connections (Linux) get batches of at least this many
    /// bytes with sendfile from their stream's shared in-memory copy of its frames, instead of
    /// a copy per player; smaller batches, TLS players and other systems get vectored writes.
    /// 0 turns sendfile off.
    #[arg(long, env = "STREAMR_FLV_SENDFILE_MIN_BYTES", default_value_t = streamr_media::http::ZERO_COPY_MIN_BYTES)]
    flv_sendfile_min_bytes: usize,

    /// RTMP players on plain TCP connections (Linux) get batches of at least this many bytes
    /// with sendfile from their stream's shared in-memory copy of its chunked frames (after
    /// their own control messages), instead of a copy per player; smaller batches, RTMPS
    /// players and other systems get vectored writes. 0 turns sendfile off.
    #[arg(long, env = "STREAMR_RTMP_SENDFILE_MIN_BYTES", default_value_t = streamr_media::server::SENDFILE_MIN_BYTES)]
    rtmp_sendfile_min_bytes: usize,

    /// Most RTMP connections open at once (the RTMP budget; HTTP has its own).
    #[arg(long, env = "STREAMR_RTMP_MAX_CONNECTIONS", default_value_t = 4096)]
    rtmp_max_connections: usize,

    /// Most RTMP connections open at once from one client address (IPv6: one /64).
    #[arg(
        long,
        env = "STREAMR_RTMP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 128
    )]
    rtmp_max_connections_per_client: usize,

    /// An RTMP connection must finish the handshake and `connect` within this time.
    #[arg(long, env = "STREAMR_RTMP_HANDSHAKE_TIMEOUT", default_value = "10s",
          value_parser = streamr_net::cli::positive_duration)]
    rtmp_handshake_timeout: Duration,

    /// After `connect`, an RTMP connection must publish or play within this time.
    #[arg(long, env = "STREAMR_RTMP_SETUP_TIMEOUT", default_value = "10s",
          value_parser = streamr_net::cli::positive_duration)]
    rtmp_setup_timeout: Duration,

    /// A publisher sending nothing for this long is disconnected.
    #[arg(long, env = "STREAMR_RTMP_PUBLISHER_IDLE_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    rtmp_publisher_idle_timeout: Duration,

    /// A player of a stream that has had no publisher for this long is disconnected.
    #[arg(long, env = "STREAMR_RTMP_PLAY_WAIT_TIMEOUT", default_value = "5m",
          value_parser = streamr_net::cli::positive_duration)]
    rtmp_play_wait_timeout: Duration,

    /// An RTMP peer that takes no byte of what it is sent for this long is disconnected (a
    /// player that stopped reading); one that keeps reading is not, however long a batch takes.
    #[arg(long, env = "STREAMR_RTMP_WRITE_TIMEOUT", default_value = "20s",
          value_parser = streamr_net::cli::positive_duration)]
    rtmp_write_timeout: Duration,

    /// Most HTTP connections open at once (the HTTP budget; RTMP has its own).
    #[arg(long, env = "STREAMR_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    http_max_connections: usize,

    /// Most HTTP connections open at once from one client address (IPv6: one /64).
    #[arg(
        long,
        env = "STREAMR_HTTP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    http_max_connections_per_client: usize,

    /// Accept loops of the plain HTTP listener. Each runs on a thread of its own, polls the
    /// connections it accepted in one task and answers their HLS GETs itself: one loop (the
    /// default) serves them on one core at a time, the least CPU per request (over 10 000 HLS
    /// players at 232 kbit/s); more spread them over the cores.
    #[arg(long, env = "STREAMR_HTTP_ACCEPT_LOOPS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    http_accept_loops: u16,

    /// An HTTP request's head must arrive within this time (also the keep-alive idle limit).
    #[arg(long, env = "STREAMR_HTTP_HEADER_TIMEOUT", default_value = "10s",
          value_parser = streamr_net::cli::positive_duration)]
    http_header_timeout: Duration,

    /// An HTTP request body that delivers nothing for this long fails the request.
    #[arg(long, env = "STREAMR_HTTP_BODY_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    http_body_timeout: Duration,

    /// An HTTP response the client takes no byte of for this long closes the connection (a
    /// player that stopped reading); a long response lives as long as its bytes keep moving.
    /// HTTP-FLV players have the same deadline.
    #[arg(long, env = "STREAMR_HTTP_WRITE_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    http_write_timeout: Duration,

    /// Who may play at this node when it is an origin that joined a coordinator: only the
    /// network's relays and viewers with a grant (HLS, HTTP-FLV and RTMP alike), or anyone.
    #[arg(long, env = "STREAMR_ORIGIN_PLAY", value_enum,
          default_value_t = OriginPlayArg::RelaysAndGranted)]
    origin_play: OriginPlayArg,
    /// Map the listeners' TCP ports on the LAN's router with UPnP-IGD, else PCP or NAT-PMP
    /// (`auto`), logging the external address, or leave the router alone (`off`). Listeners on loopback are never
    /// mapped; a mapped listener is advertised at its external address unless --advertise-*
    /// says otherwise. Mappings are renewed and removed on shutdown.
    #[arg(long, env = "STREAMR_NAT", value_enum, default_value_t = NatMode::Auto)]
    nat: NatMode,

    /// Lease asked for each port mapping (renewed at half of it; at least 1s).
    #[arg(long, env = "STREAMR_NAT_LEASE", default_value = "1h",
          value_parser = nat_lease)]
    nat_lease: Duration,

    /// A reverse proxy (address or CIDR block) in front of the HTTP listener; repeatable, or
    /// comma-separated in STREAMR_TRUSTED_PROXIES. Many viewers share a proxy's address, so it
    /// is held to the HTTP connection total only, not to the per-client limit.
    #[arg(
        long = "trusted-proxy",
        env = "STREAMR_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<streamr_net::Cidr>,

    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "STREAMR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

/// `--nat-lease`: leases are whole seconds, and a zero one would ask the router for a
/// permanent mapping (UPnP) or remove it (PCP, NAT-PMP).
fn nat_lease(value: &str) -> Result<Duration, String> {
    streamr_net::cli::duration_at_least(value, streamr_node::MIN_NAT_LEASE)
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal, never into files, pipes or journald.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The process's requests to stop (Ctrl-C, or SIGTERM on Unix), listened for from the moment
/// it is made: one that comes while the node is still starting is kept, and the node stops
/// cleanly as soon as it is up, rather than being killed half-started.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    /// Starts listening (within the runtime).
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignal {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignal {}
    }

    /// Resolves when the process is asked to stop; never where no signal could be listened for.
    async fn requested(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(self.interrupt) => {},
                _ = next(self.terminate) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Args {
    fn into_config(self) -> NodeConfig {
        let mut http_limits = HttpLimits::default();
        http_limits.max_connections = self.http_max_connections;
        http_limits.max_connections_per_client = self.http_max_connections_per_client;
        http_limits.header_read_timeout = self.http_header_timeout;
        http_limits.body_timeout = self.http_body_timeout;
        http_limits.write_timeout = self.http_write_timeout;
        http_limits.accept_loops = usize::from(self.http_accept_loops);
        NodeConfig {
            rtmp_listen: self.rtmp_listen,
            http_listen: self.http_listen,
            chunk_size: self.chunk_size,
            gop_cache: self.gop_cache,
            hls_dir: self.hls_dir,
            ll_hls_part_target: Some(self.ll_hls_part_target).filter(|target| !target.is_zero()),
            hls_target_duration: Some(self.hls_target_duration).filter(|target| !target.is_zero()),
            hls_max_segment_duration: self.hls_max_segment_duration,
            rtmps_listen: self.rtmps_listen,
            https_listen: self.https_listen,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| streamr_tls::CertificateFiles::new(cert, key)),
            tls_reload_interval: self.tls_reload_interval,
            identity: self.identity,
            report_queue: self.report_queue,
            upstreams: self.upstreams,
            coordinator: self.coordinator.map(|url| CoordinatorConfig {
                url,
                key: self.coordinator_public_key,
            }),
            operator: self.operator,
            operator_key: self.operator_key,
            payout_address: self.payout_address,
            capacity_kbps: self.capacity_kbps,
            advertise_rtmp: self.advertise_rtmp,
            advertise_http: self.advertise_http,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_auth: self.heartbeat_auth,
            upstream_stall_timeout: self.upstream_stall_timeout,
            pull_idle_timeout: self.pull_idle_timeout,
            receipt_grace: self.receipt_grace,
            batch_delay: self.batch_delay,
            batch_delay_max: self.batch_delay_max,
            batch_write_budget: self.batch_write_budget,
            batch_max_bytes: self.batch_max_bytes,
            batch_stagger: self.batch_stagger,
            flv_sendfile_min_bytes: self.flv_sendfile_min_bytes,
            rtmp_sendfile_min_bytes: self.rtmp_sendfile_min_bytes,
            rtmp_limits: RtmpLimits {
                max_connections: self.rtmp_max_connections,
                max_connections_per_client: self.rtmp_max_connections_per_client,
                handshake_timeout: self.rtmp_handshake_timeout,
                setup_timeout: self.rtmp_setup_timeout,
                publisher_idle_timeout: self.rtmp_publisher_idle_timeout,
                play_wait_timeout: self.rtmp_play_wait_timeout,
                write_timeout: self.rtmp_write_timeout,
            },
            http_limits,
            origin_play: match self.origin_play {
                OriginPlayArg::RelaysAndGranted => OriginPlay::RelaysAndGranted,
                OriginPlayArg::Public => OriginPlay::Public,
            },
            trusted_proxies: streamr_net::TrustedProxies::new(self.trusted_proxies),
            nat: NatConfig {
                mode: self.nat,
                lease: self.nat_lease,
                ..NatConfig::default()
            },
            ..NodeConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv = streamr_net::cli::with_config_file(&Args::command(), std::env::args_os().collect())?;
    let mut args = Args::parse_from(argv);
    init_logging(args.log_format);
    let shutdown = ShutdownSignal::listen();
    if args.coordinator_public_key.is_none() {
        if let Ok(old) = std::env::var("STREAMR_COORDINATOR_KEY") {
            warn!("STREAMR_COORDINATOR_KEY is the old name of STREAMR_COORDINATOR_PUBLIC_KEY");
            args.coordinator_public_key = Some(old.trim().parse().map_err(|error| {
                anyhow::anyhow!("STREAMR_COORDINATOR_KEY is not a public key: {error}")
            })?);
        }
    }
    if args.coordinator_token.is_some() {
        warn!(
            "--coordinator-token is no longer used and is ignored: the origin signs its segment \
             reports with its node key; remove the flag and keep the admin token off this machine"
        );
    }
    let networked = args.coordinator.is_some();
    let origin = args.upstreams.is_empty();
    let origin_play = args.origin_play;
    let node = Node::start(args.into_config()).await?;
    if networked && origin {
        info!(
            "publish to rtmp://{0}/live/<stream>?key=<stream key> (OBS: Server rtmp://{0}/live, \
             Stream Key <stream>?key=<stream key>)",
            node.rtmp_addr()
        );
        match origin_play {
            OriginPlayArg::RelaysAndGranted => info!(
                "this origin serves only the network's relays and viewers with a grant \
                 (--origin-play public serves anyone)"
            ),
            OriginPlayArg::Public => warn!(
                "--origin-play public: anyone may play at this origin, bypassing the friend \
                 nodes and their accounting"
            ),
        }
    } else if networked {
        info!(
            "viewers get play URLs (with a grant) from the coordinator: GET /streams/<stream>/play"
        );
    } else {
        info!(
            "publish to rtmp://{0}/live/<stream>; HLS at http://{1}/live/<stream>.m3u8, HTTP-FLV at http://{1}/live/<stream>.flv",
            node.rtmp_addr(),
            node.http_addr()
        );
    }
    if let Some(addr) = node.rtmps_addr() {
        info!("RTMP over TLS at rtmps://{addr}/live/<stream>");
    }
    if let Some(addr) = node.https_addr() {
        info!("HLS and HTTP-FLV over TLS at https://{addr}/live/<stream>.m3u8 (.flv)");
    }
    shutdown.requested().await;
    info!("shutting down");
    node.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_its_variable_and_its_row_in_the_docs() {
        let command = Args::command();
        streamr_test_support::cli::assert_documented(
            &command,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md"),
        );
    }

    #[test]
    fn durations_that_cannot_be_zero_are_refused_naming_the_flag() {
        // Zero means something for these: no LL-HLS, a derived target duration, a write per
        // video frame, no adaptive delay.
        let zero_allowed = [
            "--ll-hls-part-target",
            "--hls-target-duration",
            "--batch-delay",
            "--batch-delay-max",
        ];
        streamr_test_support::cli::assert_zero_durations_refused(
            &Args::command(),
            &zero_allowed,
            &[
                "--http-write-timeout",
                "--http-header-timeout",
                "--http-body-timeout",
                "--rtmp-write-timeout",
                "--heartbeat-interval",
                "--receipt-grace",
                "--tls-reload-interval",
                "--nat-lease",
            ],
        );
        let error = Args::try_parse_from(["streamr-node", "--http-write-timeout", "0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--http-write-timeout"), "{error}");
        assert!(error.contains("at least 1ms"), "{error}");
        let error = Args::try_parse_from(["streamr-node", "--nat-lease", "500ms"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("at least 1s"), "{error}");
        let config = Args::try_parse_from([
            "streamr-node",
            "--http-write-timeout",
            "1ms",
            "--batch-delay",
            "0s",
            "--batch-delay-max",
            "0s",
        ])
        .unwrap()
        .into_config();
        assert_eq!(config.http_limits.write_timeout, Duration::from_millis(1));
        assert_eq!(config.batch_delay, Some(Duration::ZERO));
        assert_eq!(config.batch_delay_max, Duration::ZERO);
        assert!(config.validate().is_ok());
        assert!(Args::try_parse_from(["streamr-node"])
            .unwrap()
            .into_config()
            .validate()
            .is_ok());
    }

    #[test]
    fn nat_and_proxies_have_flags_and_variables() {
        let args = Args::try_parse_from(["streamr-node"]).unwrap();
        assert_eq!(args.nat, NatMode::Auto, "mapping is on by default");
        let args = Args::try_parse_from([
            "streamr-node",
            "--nat",
            "off",
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.1",
        ])
        .unwrap();
        assert_eq!(args.nat, NatMode::Off);
        assert_eq!(args.trusted_proxies.len(), 2);
    }

    #[test]
    fn defaults_match_the_documented_node() {
        let args = Args::try_parse_from(["streamr-node"]).unwrap();
        assert_eq!(args.rtmp_listen, "127.0.0.1:1935".parse().unwrap());
        assert_eq!(args.http_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.hls_dir, None);
        assert_eq!(args.ll_hls_part_target, Duration::from_millis(350));
        assert_eq!(args.chunk_size, 4096);
        assert!(args.gop_cache);
        assert!(!args.batch_stagger);
        assert_eq!(args.log_format, LogFormat::Pretty);
        let config = args.into_config();
        assert_eq!(config.ll_hls_part_target, Some(Duration::from_millis(350)));
        assert!(config.upstreams.is_empty() && config.coordinator.is_none());
        assert_eq!(config.rtmp_limits, RtmpLimits::default());
        assert_eq!(config.http_limits, HttpLimits::default());
        assert_eq!(config.identity, PathBuf::from("streamr-node.key"));
        assert_eq!(config.origin_play, OriginPlay::RelaysAndGranted);
        let public = Args::try_parse_from(["streamr-node", "--origin-play", "public"]).unwrap();
        assert_eq!(public.into_config().origin_play, OriginPlay::Public);
        assert!(Args::try_parse_from(["streamr-node", "--origin-play", "all"]).is_err());
    }

    #[test]
    fn hls_target_duration_is_derived_unless_given() {
        let derived = Args::try_parse_from(["streamr-node"]).unwrap();
        assert_eq!(derived.into_config().hls_target_duration, None);
        let fixed = Args::try_parse_from(["streamr-node", "--hls-target-duration", "6s"]).unwrap();
        assert_eq!(
            fixed.into_config().hls_target_duration,
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn hls_max_segment_duration_is_12s_unless_raised() {
        let default = Args::try_parse_from(["streamr-node"]).unwrap();
        assert_eq!(
            default.into_config().hls_max_segment_duration,
            Duration::from_secs(12)
        );
        let raised =
            Args::try_parse_from(["streamr-node", "--hls-max-segment-duration", "30s"]).unwrap();
        assert_eq!(
            raised.into_config().hls_max_segment_duration,
            Duration::from_secs(30)
        );
        assert!(
            Args::try_parse_from(["streamr-node", "--hls-max-segment-duration", "0s"]).is_err()
        );
    }

    #[test]
    fn ll_hls_part_target_zero_turns_the_rendition_off() {
        let off = Args::try_parse_from(["streamr-node", "--ll-hls-part-target", "0s"]).unwrap();
        assert_eq!(off.into_config().ll_hls_part_target, None);
        let short =
            Args::try_parse_from(["streamr-node", "--ll-hls-part-target", "200ms"]).unwrap();
        assert_eq!(
            short.into_config().ll_hls_part_target,
            Some(Duration::from_millis(200))
        );
        assert!(Args::try_parse_from(["streamr-node", "--ll-hls-part-target", "fast"]).is_err());
    }

    #[test]
    fn network_flags_reach_the_node_config() {
        let key = "11".repeat(32);
        let args = Args::try_parse_from([
            "streamr-node",
            "--upstream",
            "rtmp://a:1935",
            "--upstream",
            "rtmp://b:1935",
            "--coordinator",
            "http://c:8090",
            "--coordinator-public-key",
            &key,
            "--heartbeat-interval",
            "2s",
            "--receipt-grace",
            "6s",
            "--batch-delay",
            "40ms",
        ])
        .unwrap();
        let config = args.into_config();
        assert_eq!(config.upstreams, ["rtmp://a:1935", "rtmp://b:1935"]);
        let coordinator = config.coordinator.unwrap();
        assert_eq!(coordinator.url, "http://c:8090");
        assert_eq!(coordinator.key.unwrap().to_string(), key);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.heartbeat_auth, HeartbeatAuthMode::Session);
        let signed = Args::try_parse_from(["streamr-node", "--heartbeat-auth", "signed"]).unwrap();
        assert_eq!(
            signed.into_config().heartbeat_auth,
            HeartbeatAuthMode::Signed
        );
        assert!(Args::try_parse_from(["streamr-node", "--heartbeat-auth", "mac"]).is_err());
        assert_eq!(config.receipt_grace, Duration::from_secs(6));
        assert_eq!(config.batch_delay, Some(Duration::from_millis(40)));
        assert_eq!(config.batch_delay_max, Duration::from_millis(280));
        assert_eq!(config.batch_max_bytes, 96 * 1024);
        assert!(Args::try_parse_from(["streamr-node", "--coordinator-key", "zz"]).is_err());
        // The older flag name still works.
        let old = Args::try_parse_from(["streamr-node", "--coordinator-key", &key]).unwrap();
        assert_eq!(old.coordinator_public_key.unwrap().to_string(), key);
    }

    #[test]
    fn tls_flags_reach_the_node_config() {
        let args = Args::try_parse_from([
            "streamr-node",
            "--rtmps-bind",
            "127.0.0.1:1936",
            "--https-listen",
            "127.0.0.1:8443",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
            "--tls-reload-interval",
            "5s",
        ])
        .unwrap();
        let config = args.into_config();
        assert_eq!(config.rtmps_listen, Some("127.0.0.1:1936".parse().unwrap()));
        assert_eq!(config.https_listen, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(
            config.tls,
            Some(streamr_tls::CertificateFiles::new("cert.pem", "key.pem"))
        );
        assert_eq!(config.tls_reload_interval, Duration::from_secs(5));
    }

    #[test]
    fn flags_override_defaults_and_bad_values_are_refused() {
        let args = Args::try_parse_from([
            "streamr-node",
            "--rtmp-listen",
            "0.0.0.0:19350",
            "--chunk-size",
            "60000",
            "--gop-cache",
            "false",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(args.rtmp_listen.port(), 19350);
        assert_eq!(args.chunk_size, 60000);
        assert!(!args.gop_cache);
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["streamr-node", "--chunk-size", "0"]).is_err());
        let config = Args::try_parse_from([
            "streamr-node",
            "--rtmp-max-connections",
            "100",
            "--rtmp-setup-timeout",
            "3s",
            "--http-max-connections-per-client",
            "7",
            "--http-header-timeout",
            "2s",
            "--http-write-timeout",
            "45s",
        ])
        .unwrap()
        .into_config();
        assert_eq!(config.rtmp_limits.max_connections, 100);
        assert_eq!(config.rtmp_limits.setup_timeout, Duration::from_secs(3));
        assert_eq!(config.http_limits.max_connections_per_client, 7);
        assert_eq!(
            config.http_limits.header_read_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(config.http_limits.write_timeout, Duration::from_secs(45));
        assert!(
            Args::try_parse_from(["streamr-node", "--rtmps-listen", "127.0.0.1:1936"]).is_err()
        );
        assert!(Args::try_parse_from(["streamr-node", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["streamr-node", "--rtmp-listen", "nowhere"]).is_err());
    }
}
