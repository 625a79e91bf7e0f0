//! `streamr-coordinator`: the StreamrP2P reference coordinator.
//!
//! `streamr-coordinator` alone starts on 127.0.0.1:8090 with a SQLite database in the working
//! directory; `--database postgres://...` shares one PostgreSQL database between replicas.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, ValueEnum};
use rand::RngCore;
use streamr_coord::workers::HttpProber;
use streamr_coord::{connect, CoordConfig, Coordinator, RateLimit};
use streamr_coordinator::FilePayoutSink;
use streamr_core::KeyPair;

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The StreamrP2P coordinator: streams, nodes, heartbeats, routing, receipts, rewards, payouts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A TOML file of settings whose keys are these long flag names (`epoch = "60s"`);
    /// flags and variables override it.
    #[arg(long, env = "STREAMR_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address the HTTP API listens on.
    #[arg(long, env = "STREAMR_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// PEM certificate chain (leaf first): with --tls-key, --listen serves HTTPS. Replaced
    /// files are picked up without a restart.
    #[arg(long, env = "STREAMR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "STREAMR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How often the certificate and key files are checked for a renewal (SIGHUP checks at
    /// once).
    #[arg(long, env = "STREAMR_TLS_RELOAD_INTERVAL", default_value = "60s",
          value_parser = streamr_net::cli::positive_duration)]
    tls_reload_interval: Duration,
    /// Deprecated: --tls-reload-interval in seconds.
    #[arg(long, env = "STREAMR_TLS_RELOAD_SECS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_secs: Option<u64>,
    /// Deprecated: --tls-reload-interval in milliseconds.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_ms: Option<u64>,
    /// Database URL: sqlite://FILE (created if missing) or postgres://USER@HOST/DB
    /// (`?sslmode=require` or `verify-full&sslrootcert=CA.pem` for TLS).
    #[arg(
        long,
        env = "STREAMR_DATABASE_URL",
        default_value = "sqlite://streamr-coordinator.db"
    )]
    database: String,
    /// Bearer token for admin endpoints; generated and logged once when absent.
    #[arg(long, env = "STREAMR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// SECRET hex seed of the key that signs session grants and seals stored node session keys
    /// (replicas must share it; keep it on coordinator machines only); generated when absent. Nodes pin the matching PUBLIC key
    /// (`GET /coordinator`, logged at start) with their `--coordinator-public-key`.
    /// `--coordinator-key` and STREAMR_COORDINATOR_KEY are older names for it.
    #[arg(
        long,
        alias = "coordinator-key",
        env = "STREAMR_COORDINATOR_SECRET_KEY",
        hide_env_values = true
    )]
    coordinator_secret_key: Option<String>,
    /// Length of a reward epoch.
    #[arg(long, env = "STREAMR_EPOCH", default_value = "1h",
          value_parser = streamr_net::cli::positive_duration)]
    epoch: Duration,
    /// Deprecated: --epoch in seconds.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    epoch_secs: Option<u64>,
    /// Deprecated: --epoch in milliseconds.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    epoch_ms: Option<u64>,
    /// Wait this long after an epoch ends before settling it (also the receipts' deadline;
    /// 0s settles it as soon as it ends, taking no later receipts for it).
    #[arg(long, env = "STREAMR_SETTLEMENT_GRACE", default_value = "5s",
          value_parser = streamr_net::cli::bounded_duration)]
    settlement_grace: Duration,
    /// Deprecated: --settlement-grace in milliseconds.
    #[arg(long, hide = true)]
    settlement_grace_ms: Option<u64>,
    /// After the coordinator was down across an epoch's receipt deadline, how long nodes and
    /// viewers have once it is back to hand in that epoch's receipts (it is settled no
    /// sooner; 0s: an epoch's deadline never moves).
    #[arg(long, env = "STREAMR_OUTAGE_GRACE", default_value = "1m",
          value_parser = streamr_net::cli::bounded_duration)]
    outage_grace: Duration,
    /// Epochs a reward waits before it vests.
    #[arg(long, env = "STREAMR_VESTING_EPOCHS", default_value_t = 168)]
    vesting_epochs: u64,
    /// Micro-units distributed per epoch.
    #[arg(long, env = "STREAMR_REWARD_POOL", default_value_t = 1_000_000_000)]
    reward_pool: u64,
    /// How often the workers run.
    #[arg(long, env = "STREAMR_WORKER_INTERVAL", default_value = "1s",
          value_parser = streamr_net::cli::positive_duration)]
    worker_interval: Duration,
    /// Deprecated: --worker-interval in milliseconds.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    worker_interval_ms: Option<u64>,
    /// Probe each live node over HTTP at most this often (`off` or 0 disables probing).
    #[arg(long, env = "STREAMR_PROBE_INTERVAL", default_value = "30s",
          value_parser = duration_or_off)]
    probe_interval: Duration,
    /// Deprecated: --probe-interval in seconds.
    #[arg(long, hide = true)]
    probe_interval_secs: Option<u64>,
    /// Requests per second allowed per client IP (0 disables the limit).
    #[arg(long, env = "STREAMR_RATE_LIMIT", default_value_t = 200)]
    rate_limit: u32,
    /// Burst allowed per client IP.
    #[arg(long, env = "STREAMR_RATE_BURST", default_value_t = 400)]
    rate_burst: u32,
    /// Smallest vested amount paid out to a node, micro-units (smaller amounts wait until more
    /// vests).
    #[arg(long, env = "STREAMR_PAYOUT_THRESHOLD", default_value_t = 0)]
    payout_threshold: u64,
    /// Fee withheld from every payout, micro-units (e.g. the rail's transfer cost).
    #[arg(long, env = "STREAMR_PAYOUT_FEE", default_value_t = 0)]
    payout_fee: u64,
    /// Fee withheld from every payout in proportion to it, parts per million (10000 = 1 %).
    #[arg(long, env = "STREAMR_PAYOUT_FEE_PPM", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    payout_fee_ppm: u64,
    /// Pay into this append-only file instead of the in-memory simulated payout sink: it survives
    /// restarts, and replicas on one host may share it (each payout locks it).
    #[arg(long, env = "STREAMR_PAYOUT_FILE")]
    payout_file: Option<std::path::PathBuf>,
    /// Most HTTP connections open at once.
    #[arg(long, env = "STREAMR_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    http_max_connections: usize,
    /// Most HTTP connections open at once from one client address (IPv6: one /64).
    #[arg(
        long,
        env = "STREAMR_HTTP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    http_max_connections_per_client: usize,
    /// A request's head must arrive within this time (also the keep-alive idle limit).
    #[arg(long, env = "STREAMR_HTTP_HEADER_TIMEOUT", default_value = "10s",
          value_parser = streamr_net::cli::positive_duration)]
    http_header_timeout: Duration,
    /// Deprecated: --http-header-timeout in milliseconds.
    #[arg(long, env = "STREAMR_HTTP_HEADER_TIMEOUT_MS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    http_header_timeout_ms: Option<u64>,
    /// A request body that delivers nothing for this long fails the request.
    #[arg(long, env = "STREAMR_HTTP_BODY_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    http_body_timeout: Duration,
    /// Deprecated: --http-body-timeout in milliseconds.
    #[arg(long, env = "STREAMR_HTTP_BODY_TIMEOUT_MS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    http_body_timeout_ms: Option<u64>,
    /// A response the client takes no byte of for this long closes the connection.
    #[arg(long, env = "STREAMR_HTTP_WRITE_TIMEOUT", default_value = "30s",
          value_parser = streamr_net::cli::positive_duration)]
    http_write_timeout: Duration,
    /// Run a one-host or one-LAN trial: every node and viewer counts as a network of its own,
    /// so sharing an address is not taken for self-dealing or a sybil cluster. Never for a
    /// public network; announced in the log and in `GET /coordinator`.
    #[arg(long, env = "STREAMR_LOCAL_TRIAL")]
    local_trial: bool,
    /// Check this often (and when a node registers) whether each node's advertised RTMP and
    /// HTTP addresses answer from here; unreachable nodes get no viewers. `off` (or 0)
    /// disables the checks, e.g. for nodes advertising placeholder addresses.
    #[arg(
        long,
        env = "STREAMR_REACHABILITY_INTERVAL",
        default_value = "60s",
        value_parser = duration_or_off
    )]
    reachability_interval: Duration,
    /// A reachability check that gets no answer within this time fails.
    #[arg(
        long,
        env = "STREAMR_REACHABILITY_TIMEOUT",
        default_value = "3s",
        value_parser = streamr_net::cli::positive_duration
    )]
    reachability_timeout: Duration,
    /// A reverse proxy (address or CIDR block) in front of the coordinator; repeatable, or
    /// comma-separated in STREAMR_TRUSTED_PROXIES. Only for requests from these is the client
    /// address taken from `Forwarded` / `X-Forwarded-For` (rate limit, grant budgets, node
    /// prefixes), and only these may hold more connections than one client.
    #[arg(
        long = "trusted-proxy",
        env = "STREAMR_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<streamr_net::Cidr>,
    /// How long a node session lasts: a node proves its key once in a signed handshake, then
    /// authenticates its heartbeats with the session's MAC until it expires (nodes open the
    /// next one a minute before). Shorter bounds how long a key taken from a replica's memory
    /// is any use; every renewal costs one signature check and one database row.
    #[arg(long, env = "STREAMR_NODE_SESSION_LIFETIME", default_value = "1h",
          value_parser = streamr_net::cli::positive_duration)]
    node_session_lifetime: Duration,
    /// How often the session heartbeats held in memory (each session's running totals,
    /// liveness and load) are written to the database in one batch. Routing sees liveness up
    /// to this late; a heartbeat replayed to another replica can pass there within about
    /// twice this, and changes nothing stored.
    #[arg(long, env = "STREAMR_HEARTBEAT_TOTALS_INTERVAL", default_value = "1s",
          value_parser = streamr_net::cli::positive_duration)]
    heartbeat_totals_interval: Duration,
    /// Name recorded on the settlements this replica writes.
    #[arg(long, env = "STREAMR_REPLICA_ID")]
    replica_id: Option<String>,
    /// Relay tree: most relays the origin feeds directly, and most children one relay feeds.
    /// Origins learn it from the coordinator and admit no more relays per stream.
    #[arg(long, env = "STREAMR_RELAY_FANOUT", default_value_t = 4)]
    relay_fanout: usize,
    /// Relay tree: a parent silent (no heartbeat) this long is taken for dead and its
    /// children re-parented.
    #[arg(long, env = "STREAMR_RELAY_LIVENESS", value_parser = streamr_net::cli::positive_duration,
        default_value = "15s")]
    relay_liveness: Duration,
    /// Relay tree: when a relay reports its upstream failed, the coordinator asks that node
    /// itself (`/healthz?stream=…`) whether a live session feeds it the stream; not
    /// serving (or no answer) within this time re-homes its whole subtree, serving keeps it
    /// whatever its children report (`0s`: no check; reports then need relays of distinct
    /// /24s and operators). Kept under the relays' 1 s wait for an answer after a failure.
    #[arg(long, env = "STREAMR_RELAY_PROBE_TIMEOUT", value_parser = streamr_net::cli::bounded_duration,
        default_value = "500ms")]
    relay_probe_timeout: Duration,
    /// Log line format (on stderr; colour only on a terminal); the level comes from RUST_LOG
    /// (default `info`).
    #[arg(long, env = "STREAMR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

impl Args {
    /// Takes the deprecated spellings (`--epoch-secs`, `--epoch-ms`, ...) that scripts may still
    /// pass, with a warning naming the new flag; a deprecated flag given wins over the new
    /// flag's default.
    fn apply_deprecated(&mut self) {
        fn warn(old: &str, new: &str, value: Duration) {
            tracing::warn!(
                "--{old} is deprecated; use --{new} {}",
                humantime::format_duration(value)
            );
        }
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        for (old, value) in [
            ("epoch-secs", self.epoch_secs.map(secs)),
            ("epoch-ms", self.epoch_ms.map(ms)),
        ] {
            if let Some(value) = value {
                warn(old, "epoch", value);
                self.epoch = value;
            }
        }
        let renames: [(&str, &str, Option<Duration>, &mut Duration); 4] = [
            (
                "settlement-grace-ms",
                "settlement-grace",
                self.settlement_grace_ms.map(ms),
                &mut self.settlement_grace,
            ),
            (
                "worker-interval-ms",
                "worker-interval",
                self.worker_interval_ms.map(ms),
                &mut self.worker_interval,
            ),
            (
                "http-header-timeout-ms",
                "http-header-timeout",
                self.http_header_timeout_ms.map(ms),
                &mut self.http_header_timeout,
            ),
            (
                "http-body-timeout-ms",
                "http-body-timeout",
                self.http_body_timeout_ms.map(ms),
                &mut self.http_body_timeout,
            ),
        ];
        for (old, new, value, target) in renames {
            if let Some(value) = value {
                warn(old, new, value);
                *target = value;
            }
        }
        for (old, value) in [
            ("tls-reload-secs", self.tls_reload_secs.map(secs)),
            ("tls-reload-ms", self.tls_reload_ms.map(ms)),
        ] {
            if let Some(value) = value {
                warn(old, "tls-reload-interval", value);
                self.tls_reload_interval = value;
            }
        }
        if let Some(value) = self.probe_interval_secs {
            warn("probe-interval-secs", "probe-interval", secs(value));
            self.probe_interval = secs(value);
        }
    }
}

/// How long before a node session expires a node opens the next one (the node's
/// `SESSION_RENEW_MARGIN_MS`).
const NODE_SESSION_RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A humantime duration (`60s`, `250ms`), or `off`: zero, which turns the thing off.
fn duration_or_off(value: &str) -> Result<Duration, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    streamr_net::cli::bounded_duration(value)
}

/// `None` for a zero (`off`) interval.
fn unless_off(interval: Duration) -> Option<Duration> {
    (!interval.is_zero()).then_some(interval)
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    // sqlx reports PostgreSQL's notices (a migration's "already exists, skipping") at INFO.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// File handles kept beyond the HTTP connection budget (database, logs, certificates, probes).
const SPARE_FILE_HANDLES: u64 = 256;

/// Raises the open-file limit's soft value to its hard one, as far as the kernel allows, and
/// logs the result; warns when the HTTP connection budget does not fit in it (then a flood
/// could take the file handles the database and the workers need).
fn raise_open_file_limit(http_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let soft = |limit: &Rlimit| limit.current.unwrap_or(u64::MAX);
    if before.current != before.maximum {
        let wanted = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, wanted) {
            tracing::warn!(%error, "could not raise the open-file limit to its hard limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(
        from = soft(&before),
        to = soft(&now),
        hard = now.maximum.unwrap_or(u64::MAX),
        "open-file limit"
    );
    let needed = (http_connections as u64).saturating_add(SPARE_FILE_HANDLES);
    if soft(&now) < needed {
        tracing::warn!(
            open_files = soft(&now),
            http_connections,
            "the open-file limit is below the HTTP connection budget; raise it (ulimit -n, \
             LimitNOFILE=) or lower --http-max-connections"
        );
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: draining requests and stopping workers");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv = streamr_net::cli::with_config_file(&Args::command(), std::env::args_os().collect())?;
    let mut args = Args::parse_from(argv);
    init_tracing(args.log_format);
    args.apply_deprecated();

    raise_open_file_limit(args.http_max_connections);

    let admin_token = match args.admin_token {
        Some(token) if !token.is_empty() => token,
        _ => {
            let token = random_hex(24);
            tracing::warn!(
                admin_token = %token,
                "no admin token given (--admin-token or STREAMR_ADMIN_TOKEN); generated one for this run"
            );
            token
        }
    };
    let secret = args.coordinator_secret_key.clone().or_else(|| {
        let old = std::env::var("STREAMR_COORDINATOR_KEY").ok()?;
        tracing::warn!(
            "STREAMR_COORDINATOR_KEY is the old name of STREAMR_COORDINATOR_SECRET_KEY; rename it"
        );
        Some(old)
    });
    let coordinator_key = match &secret {
        Some(seed) => KeyPair::from_seed_hex(seed.trim())
            .context("--coordinator-secret-key must be 64 hex characters (the secret seed)")?,
        None => {
            let key = KeyPair::generate(&mut rand::rngs::OsRng);
            tracing::warn!(
                "no coordinator secret key given (--coordinator-secret-key or \
                 STREAMR_COORDINATOR_SECRET_KEY); grants are signed with a key generated for this run"
            );
            key
        }
    };
    let mut config = CoordConfig {
        admin_token: Some(admin_token),
        coordinator_key,
        epoch_length: args.epoch.max(Duration::from_millis(1)),
        settlement_grace: args.settlement_grace,
        outage_grace: args.outage_grace,
        reward_pool_per_epoch: args.reward_pool,
        worker_interval: args.worker_interval.max(Duration::from_millis(10)),
        rate_limit: (args.rate_limit > 0).then_some(RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst.max(1),
        }),
        ..CoordConfig::default()
    };
    if let Some(replica_id) = args.replica_id {
        config.replica_id = replica_id;
    }
    config.settlement.vesting_epochs = args.vesting_epochs;
    config.payouts.default_threshold = args.payout_threshold;
    config.payouts.fees.fixed = args.payout_fee;
    config.payouts.fees.proportional_ppm = args.payout_fee_ppm;
    config.http.max_connections = args.http_max_connections;
    config.http.max_connections_per_client = args.http_max_connections_per_client;
    config.http.header_read_timeout = args.http_header_timeout;
    config.http.body_timeout = args.http_body_timeout;
    config.http.write_timeout = args.http_write_timeout;
    config.local_trial = args.local_trial;
    config.reachability_interval = unless_off(args.reachability_interval);
    config.reachability_timeout = args.reachability_timeout;
    config.trusted_proxies = streamr_net::TrustedProxies::new(args.trusted_proxies.clone());
    config.relay_fanout = args.relay_fanout.max(1);
    config.node_session_lifetime = args.node_session_lifetime;
    config.heartbeat_totals_interval = args.heartbeat_totals_interval;
    if config.settlement_grace <= config.heartbeat_totals_interval {
        tracing::warn!(
            interval = %humantime::format_duration(config.heartbeat_totals_interval),
            "--heartbeat-totals-interval is not below the settlement grace: another replica's \
             batch of an epoch's last session heartbeats may land after the epoch is settled"
        );
    }
    if args.node_session_lifetime <= NODE_SESSION_RENEW_MARGIN {
        tracing::warn!(
            lifetime = %humantime::format_duration(args.node_session_lifetime),
            "--node-session-lifetime is not above the minute before expiry at which nodes open \
             the next session: every heartbeat will open a new one"
        );
    }
    config.relay_liveness = args.relay_liveness;
    config.relay_probe_timeout =
        (!args.relay_probe_timeout.is_zero()).then_some(args.relay_probe_timeout);
    if args.local_trial {
        tracing::warn!(
            "LOCAL TRIAL MODE (--local-trial): every node and viewer counts as a network of its \
             own, so the self-dealing, sybil-cluster and whitewashing rules cannot see shared \
             addresses. For trials on one host or one LAN only; never run a public network so"
        );
    }

    // The flags refuse what cannot work; this also covers what main derives from them, before
    // the database is opened or a worker started.
    config.validate().context("invalid settings")?;

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            streamr_tls::ServerTls::load(streamr_tls::CertificateFiles::new(cert, key))
                .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    let storage = connect(&args.database)
        .await
        .with_context(|| format!("opening database {}", args.database))?;
    let probe_key = config.coordinator_key.clone();
    let replica_id = config.replica_id.clone();
    let mut coordinator = Coordinator::new(config, storage.clone());
    if let Some(path) = &args.payout_file {
        tracing::info!(path = %path.display(), "payouts go to the payout file");
        coordinator = coordinator.with_payout_sink(Box::new(FilePayoutSink::new(path, replica_id)));
    } else {
        tracing::warn!(
            "payouts go to SimulatedPayoutSink, an in-memory SIMULATED payment rail: nothing is \
             paid and its record is lost at exit (--payout-file keeps a durable file; a real \
             rail is a PayoutSink, see docs/operators.md)"
        );
    }
    tracing::info!(
        threshold = args.payout_threshold,
        fee = args.payout_fee,
        fee_ppm = args.payout_fee_ppm,
        "payout policy"
    );
    if let Some(every) = unless_off(args.probe_interval) {
        let prober = HttpProber::new(storage, probe_key).every(every);
        coordinator = coordinator.with_probe_runner(std::sync::Arc::new(prober));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(
        listen = %local,
        scheme = if tls.is_some() { "https" } else { "http" },
        database = %args.database,
        coordinator_public_key = %coordinator.coordinator_key(),
        "coordinator ready (nodes may pin this public key with --coordinator-public-key)"
    );
    let workers = coordinator.spawn_workers();
    match tls {
        Some(tls) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let reload_every = args.tls_reload_interval.max(Duration::from_millis(10));
            let reloader = tls.spawn_reloader(reload_every, stop.clone());
            let acceptor = tls.acceptor(streamr_tls::HTTP_ALPN);
            let limits = streamr_tls::HandshakeLimits::default();
            let served = coordinator
                .serve_tls(listener, acceptor, limits, shutdown_signal())
                .await;
            stop.cancel();
            let _ = reloader.await;
            served.context("serving HTTPS")?;
        }
        None => coordinator
            .serve(listener, shutdown_signal())
            .await
            .context("serving HTTP")?,
    }
    workers.shutdown().await;
    // A graceful stop writes the session heartbeats still in memory (a crash loses nothing
    // either: each node's next heartbeat restates its totals).
    if let Err(error) = coordinator.write_heartbeat_totals().await {
        tracing::warn!(%error, "session heartbeat totals not written at shutdown");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_flag_has_its_own_name_and_keeps_the_old_one() {
        let seed = "22".repeat(32);
        let new = Args::try_parse_from(["streamr-coordinator", "--coordinator-secret-key", &seed])
            .unwrap();
        assert_eq!(new.coordinator_secret_key.as_deref(), Some(seed.as_str()));
        let old =
            Args::try_parse_from(["streamr-coordinator", "--coordinator-key", &seed]).unwrap();
        assert_eq!(old.coordinator_secret_key.as_deref(), Some(seed.as_str()));
        assert!(!old.local_trial, "a local trial is never the default");
        let trial = Args::try_parse_from(["streamr-coordinator", "--local-trial"]).unwrap();
        assert!(trial.local_trial);
    }

    #[test]
    fn durations_that_cannot_be_zero_are_refused_naming_the_flag() {
        // Zero means something for these: settle at once, fixed deadlines whatever happened,
        // no probes, no reachability checks, no relay probe.
        let zero_allowed = [
            "--settlement-grace",
            "--outage-grace",
            "--probe-interval",
            "--reachability-interval",
            "--relay-probe-timeout",
        ];
        streamr_test_support::cli::assert_zero_durations_refused(
            &Args::command(),
            &zero_allowed,
            &[
                "--epoch",
                "--worker-interval",
                "--http-write-timeout",
                "--http-header-timeout",
                "--http-body-timeout",
                "--tls-reload-interval",
                "--reachability-timeout",
                "--node-session-lifetime",
                "--heartbeat-totals-interval",
                "--relay-liveness",
            ],
        );
        let error = Args::try_parse_from(["streamr-coordinator", "--http-write-timeout", "0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--http-write-timeout"), "{error}");
        assert!(error.contains("at least 1ms"), "{error}");
        // The deprecated spellings cannot be zero either.
        for flag in [
            "--epoch-secs",
            "--epoch-ms",
            "--worker-interval-ms",
            "--http-header-timeout-ms",
            "--http-body-timeout-ms",
            "--tls-reload-secs",
            "--tls-reload-ms",
        ] {
            let error = Args::try_parse_from(["streamr-coordinator", flag, "0"])
                .unwrap_err()
                .to_string();
            assert!(error.contains(flag), "{error}");
            assert!(Args::try_parse_from(["streamr-coordinator", flag, "1"]).is_ok());
        }
        // `off` is zero where zero is documented.
        let off = Args::try_parse_from([
            "streamr-coordinator",
            "--probe-interval",
            "off",
            "--relay-probe-timeout",
            "0s",
            "--settlement-grace",
            "0s",
        ])
        .unwrap();
        assert_eq!(unless_off(off.probe_interval), None);
        assert_eq!(off.relay_probe_timeout, Duration::ZERO);
        assert_eq!(off.settlement_grace, Duration::ZERO);
        assert!(
            Args::try_parse_from(["streamr-coordinator", "--probe-interval", "2years"]).is_err()
        );
    }

    #[test]
    fn payout_threshold_and_fees_are_flags() {
        let args = Args::try_parse_from(["streamr-coordinator"]).unwrap();
        assert_eq!(
            (args.payout_threshold, args.payout_fee, args.payout_fee_ppm),
            (0, 0, 0)
        );
        let args = Args::try_parse_from([
            "streamr-coordinator",
            "--payout-threshold",
            "5000000",
            "--payout-fee",
            "1000",
            "--payout-fee-ppm",
            "2500",
        ])
        .unwrap();
        assert_eq!(
            (args.payout_threshold, args.payout_fee, args.payout_fee_ppm),
            (5_000_000, 1_000, 2_500)
        );
        assert!(
            Args::try_parse_from(["streamr-coordinator", "--payout-fee-ppm", "1000001"]).is_err()
        );
    }

    #[test]
    fn every_flag_has_its_variable_and_its_row_in_the_docs() {
        let command = Args::command();
        streamr_test_support::cli::assert_documented(
            &command,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md"),
        );
    }

    #[test]
    fn durations_are_humantime_and_the_old_spellings_still_work() {
        let mut args = Args::try_parse_from([
            "streamr-coordinator",
            "--epoch",
            "60s",
            "--settlement-grace",
            "250ms",
        ])
        .unwrap();
        args.apply_deprecated();
        assert_eq!(args.epoch, Duration::from_secs(60));
        assert_eq!(args.settlement_grace, Duration::from_millis(250));
        let mut old = Args::try_parse_from([
            "streamr-coordinator",
            "--epoch-ms",
            "500",
            "--settlement-grace-ms",
            "100",
            "--probe-interval-secs",
            "0",
            "--worker-interval-ms",
            "20",
        ])
        .unwrap();
        old.apply_deprecated();
        assert_eq!(old.epoch, Duration::from_millis(500));
        assert_eq!(old.settlement_grace, Duration::from_millis(100));
        assert_eq!(unless_off(old.probe_interval), None);
        assert_eq!(old.worker_interval, Duration::from_millis(20));
        let off = Args::try_parse_from(["streamr-coordinator", "--reachability-interval", "off"])
            .unwrap();
        assert_eq!(unless_off(off.reachability_interval), None);
        let proxies = Args::try_parse_from([
            "streamr-coordinator",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap();
        assert_eq!(proxies.trusted_proxies.len(), 2);
        let defaults = Args::try_parse_from(["streamr-coordinator"]).unwrap();
        assert_eq!(defaults.node_session_lifetime, Duration::from_secs(3600));
        let sessions =
            Args::try_parse_from(["streamr-coordinator", "--node-session-lifetime", "15m"])
                .unwrap();
        assert_eq!(sessions.node_session_lifetime, Duration::from_secs(900));
    }

    #[test]
    fn a_config_file_fills_in_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("coordinator.toml");
        std::fs::write(
            &file,
            "epoch = \"2m\"\nrate-limit = 7\nlocal-trial = true\ntrusted-proxy = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let argv = ["streamr-coordinator", "--rate-limit", "9", "--config"]
            .iter()
            .map(std::ffi::OsString::from)
            .chain([file.clone().into_os_string()])
            .collect();
        let argv = streamr_net::cli::with_config_file(&Args::command(), argv).unwrap();
        let args = Args::try_parse_from(argv).unwrap();
        assert_eq!(args.epoch, Duration::from_secs(120));
        assert_eq!(args.rate_limit, 9, "the flag beats the file");
        assert!(args.local_trial);
        assert_eq!(args.trusted_proxies.len(), 1);
    }
}
