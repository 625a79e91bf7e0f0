//! `streamr-coordinator`: the StreamrP2P reference coordinator.
//!
//! `streamr-coordinator` alone starts on 127.0.0.1:8090 with a SQLite database in the working
//! directory; `--database postgres://...` shares one PostgreSQL database between replicas.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
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
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// PEM certificate chain (leaf first): with --tls-key, --listen serves HTTPS. Replaced
    /// files are picked up without a restart.
    #[arg(long, env = "STREAMR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "STREAMR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How often the certificate and key files are checked for a renewal, seconds (SIGHUP
    /// checks at once).
    #[arg(long, env = "STREAMR_TLS_RELOAD_SECS", default_value_t = 60)]
    tls_reload_secs: u64,
    /// How often the certificate and key files are checked for a renewal in milliseconds
    /// (overrides --tls-reload-secs; for tests).
    #[arg(long, hide = true)]
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
    /// SECRET hex seed of the key that signs session grants (replicas must share it; keep it on
    /// coordinator machines only); generated when absent. Nodes pin the matching PUBLIC key
    /// (`GET /coordinator`, logged at start) with their `--coordinator-public-key`.
    /// `--coordinator-key` and STREAMR_COORDINATOR_KEY are older names for it.
    #[arg(
        long,
        alias = "coordinator-key",
        env = "STREAMR_COORDINATOR_SECRET_KEY",
        hide_env_values = true
    )]
    coordinator_secret_key: Option<String>,
    /// Length of a reward epoch, seconds.
    #[arg(long, default_value_t = 3600)]
    epoch_secs: u64,
    /// Length of a reward epoch in milliseconds (overrides --epoch-secs; for tests and demos).
    #[arg(long)]
    epoch_ms: Option<u64>,
    /// Wait this long after an epoch ends before settling it, milliseconds.
    #[arg(long, default_value_t = 5000)]
    settlement_grace_ms: u64,
    /// Epochs a reward waits before it vests.
    #[arg(long, default_value_t = 168)]
    vesting_epochs: u64,
    /// Micro-units distributed per epoch.
    #[arg(long, default_value_t = 1_000_000_000)]
    reward_pool: u64,
    /// How often the workers run, milliseconds.
    #[arg(long, default_value_t = 1000)]
    worker_interval_ms: u64,
    /// Probe each live node over HTTP at most this often, seconds (0 disables probing).
    #[arg(long, default_value_t = 30)]
    probe_interval_secs: u64,
    /// Requests per second allowed per client IP (0 disables the limit).
    #[arg(long, default_value_t = 200)]
    rate_limit: u32,
    /// Burst allowed per client IP.
    #[arg(long, default_value_t = 400)]
    rate_burst: u32,
    /// Pay into this append-only file instead of the in-memory simulated chain: it survives
    /// restarts, and replicas on one host may share it (each payout locks it).
    #[arg(long)]
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
    /// A request's head must arrive within this many milliseconds (also the keep-alive idle
    /// limit).
    #[arg(long, env = "STREAMR_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// A request body that delivers nothing for this many milliseconds fails the request.
    #[arg(long, env = "STREAMR_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    http_body_timeout_ms: u64,
    /// Run a one-host or one-LAN trial: every node and viewer counts as a network of its own,
    /// so sharing an address is not taken for self-dealing or a sybil cluster. Never for a
    /// public network; announced in the log and in `GET /coordinator`.
    #[arg(long, env = "STREAMR_LOCAL_TRIAL")]
    local_trial: bool,
    /// Name recorded on the settlements this replica writes.
    #[arg(long)]
    replica_id: Option<String>,
    /// Relay tree: most relays the origin feeds directly, and most children one relay feeds.
    #[arg(long, env = "STREAMR_RELAY_FANOUT", default_value_t = 4)]
    relay_fanout: usize,
    /// Relay tree: a parent silent (no heartbeat) this long is taken for dead and its
    /// children re-parented.
    #[arg(long, env = "STREAMR_RELAY_LIVENESS", value_parser = humantime::parse_duration,
        default_value = "15s")]
    relay_liveness: Duration,
    /// Log line format (on stderr; colour only on a terminal); the level comes from RUST_LOG
    /// (default `info`).
    #[arg(long, env = "STREAMR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
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
    let args = Args::parse();
    init_tracing(args.log_format);

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
        epoch_length: args.epoch_ms.map_or_else(
            || Duration::from_secs(args.epoch_secs.max(1)),
            |ms| Duration::from_millis(ms.max(1)),
        ),
        settlement_grace: Duration::from_millis(args.settlement_grace_ms),
        reward_pool_per_epoch: args.reward_pool,
        worker_interval: Duration::from_millis(args.worker_interval_ms.max(10)),
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
    config.http.max_connections = args.http_max_connections;
    config.http.max_connections_per_client = args.http_max_connections_per_client;
    config.http.header_read_timeout = Duration::from_millis(args.http_header_timeout_ms);
    config.http.body_timeout = Duration::from_millis(args.http_body_timeout_ms);
    config.local_trial = args.local_trial;
    config.relay_fanout = args.relay_fanout.max(1);
    config.relay_liveness = args.relay_liveness;
    if args.local_trial {
        tracing::warn!(
            "LOCAL TRIAL MODE (--local-trial): every node and viewer counts as a network of its \
             own, so the self-dealing, sybil-cluster and whitewashing rules cannot see shared \
             addresses. For trials on one host or one LAN only; never run a public network so"
        );
    }

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
    }
    if args.probe_interval_secs > 0 {
        let prober = HttpProber::new(storage, probe_key)
            .every(Duration::from_secs(args.probe_interval_secs));
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
            let reload_every = args.tls_reload_ms.map_or_else(
                || Duration::from_secs(args.tls_reload_secs.max(1)),
                Duration::from_millis,
            );
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
}
