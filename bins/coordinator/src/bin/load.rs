//! `streamr-coord-load`: heartbeat load (session-authenticated by default, or signed) against
//! an in-process coordinator, next to a bare axum hello endpoint measured in the same run as
//! the ceiling.
//!
//! Loopback only, bounded by request count and duration. Heartbeats are signed or sealed (each
//! node opens its session first) before the clock starts so the client's signing does not compete with the server being measured. The
//! two phases alternate for `--rounds` rounds, so that load from elsewhere on the machine hits
//! the ceiling and the heartbeats alike; the ratio is over all rounds.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser};
use serde_json::json;
use streamr_coord::wire::NodeRegistration;
use streamr_coord::wire::{SessionHeartbeatRequest, SignedNodeSessionAccept};
use streamr_coord::{connect, CoordConfig, Coordinator};
use streamr_coordinator::HttpClient;
use streamr_core::{KeyPair, NodeHandshake, NodeHeartbeat, NodeSession, Signed, StreamId};

/// Longest run allowed, seconds.
const MAX_DURATION_SECS: u64 = 60;
/// Most requests allowed per phase.
const MAX_REQUESTS: u64 = 1_000_000;

/// Load tool: measures an in-process coordinator's signed-heartbeat throughput and latency
/// against a hello-endpoint ceiling, on loopback.
#[derive(Debug, Parser)]
#[command(name = "streamr-coord-load", version)]
struct Args {
    /// A TOML file of settings whose keys are these long flag names; flags and variables
    /// override it.
    #[arg(long, env = "STREAMR_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Storage: `sqlite` (a temporary file), or a `postgres://` server URL (a temporary
    /// database is created on it and dropped afterwards).
    #[arg(long, env = "STREAMR_LOAD_DATABASE", default_value = "sqlite")]
    database: String,
    /// Requests per phase (the phase also stops at --duration).
    #[arg(long, env = "STREAMR_LOAD_REQUESTS", default_value_t = 20_000)]
    requests: u64,
    /// Longest phase (at most 60s).
    #[arg(long, env = "STREAMR_LOAD_DURATION", default_value = "10s",
          value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Deprecated: --duration in seconds.
    #[arg(long, hide = true)]
    duration_secs: Option<u64>,
    /// Concurrent keep-alive connections.
    #[arg(long, env = "STREAMR_LOAD_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Distinct nodes sending heartbeats.
    #[arg(long, env = "STREAMR_LOAD_NODES", default_value_t = 256)]
    nodes: usize,
    /// Rounds of (hello phase, heartbeat phase), alternating.
    #[arg(long, env = "STREAMR_LOAD_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// SQLite `synchronous` setting: `full` (durable across power loss, the default) or
    /// `normal` (durable across a process crash, not power loss).
    #[arg(long, env = "STREAMR_LOAD_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: String,
    /// Bytes each heartbeat claims as served (`0`: bare liveness heartbeats of an idle node).
    #[arg(long, env = "STREAMR_BYTES_SERVED", default_value_t = 1_500_000)]
    bytes_served: u64,
    /// Which heartbeats wait for their flush to disk before they are answered: `receipts`
    /// (those carrying receipts, the coordinator's default; the load tool sends none) or
    /// `always`.
    #[arg(long, env = "STREAMR_LOAD_HEARTBEAT_FLUSH", default_value = "receipts")]
    heartbeat_flush: String,
    /// How heartbeats are authenticated: `session` (each node opens a node session, then its
    /// heartbeats carry a MAC: what nodes do) or `signed` (an ed25519 signature each, as older
    /// nodes send).
    #[arg(long, env = "STREAMR_LOAD_AUTH", default_value = "session",
          value_parser = ["session", "signed"])]
    auth: String,
}

/// What one or more phases measured.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Latency of every completed request, microseconds, sorted.
    latencies_us: Vec<u64>,
    errors: u64,
    /// Failed requests by cause (`503`, `409 replayed_nonce`, `transport`, ...).
    causes: std::collections::BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Figures {
    fn completed(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    fn per_second(&self) -> f64 {
        self.completed() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_us(&self, fraction: f64) -> u64 {
        percentile(&self.latencies_us, fraction)
    }

    /// Adds another phase's figures.
    fn absorb(&mut self, other: &Figures) {
        self.latencies_us.extend_from_slice(&other.latencies_us);
        self.latencies_us.sort_unstable();
        self.errors += other.errors;
        for (cause, count) in &other.causes {
            *self.causes.entry(cause.clone()).or_default() += count;
        }
        self.elapsed += other.elapsed;
    }
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied().unwrap_or(0)
}

/// Sends each connection's pre-built bodies in order (so a node's nonces arrive in order) and
/// records every latency.
async fn run_phase(
    addr: SocketAddr,
    path: &'static str,
    per_connection: Vec<Vec<Vec<u8>>>,
    deadline: Duration,
) -> anyhow::Result<Figures> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for bodies in per_connection {
        let mut client = HttpClient::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            let mut causes = std::collections::BTreeMap::<String, u64>::new();
            for body in bodies {
                if start.elapsed() >= deadline {
                    break;
                }
                let sent = Instant::now();
                match client.send_raw("POST", path, body).await {
                    Ok((200, _)) => latencies.push(sent.elapsed().as_micros() as u64),
                    Ok((status, body)) => {
                        *causes.entry(error_cause(status, &body)).or_default() += 1
                    }
                    Err(_) => *causes.entry("transport".into()).or_default() += 1,
                }
            }
            (latencies, causes)
        }));
    }
    let mut latencies = Vec::new();
    let mut causes = std::collections::BTreeMap::<String, u64>::new();
    for task in tasks {
        let (mut l, c) = task.await.context("load task")?;
        latencies.append(&mut l);
        for (cause, count) in c {
            *causes.entry(cause).or_default() += count;
        }
    }
    let errors = causes.values().sum();
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Figures {
        latencies_us: latencies,
        errors,
        causes,
        elapsed,
    })
}

/// A refused request's status with the error code its JSON body names, if any.
fn error_cause(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

async fn start_hello() -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::post(|_body: axum::body::Bytes| async { "ok" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A temporary database for the run.
enum TempDatabase {
    /// The directory is removed when the value is dropped.
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        server: String,
        name: String,
        url: String,
    },
}

impl TempDatabase {
    async fn create(
        spec: &str,
        sqlite_synchronous: &str,
        heartbeat_flush: &str,
    ) -> anyhow::Result<TempDatabase> {
        if spec == "sqlite" {
            let dir = tempfile::tempdir()?;
            let url = format!(
                "sqlite://{}?synchronous={sqlite_synchronous}&heartbeat_flush={heartbeat_flush}",
                dir.path().join("load.db").display()
            );
            return Ok(TempDatabase::Sqlite { _dir: dir, url });
        }
        if !spec.starts_with("postgres") {
            bail!("--database must be `sqlite` or a postgres:// server URL");
        }
        use sqlx::Connection;
        let name = format!("streamr_load_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(spec).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        let base = spec.rsplit_once('/').map_or(spec, |(b, _)| b);
        let url = format!("{base}/{name}?heartbeat_flush={heartbeat_flush}");
        Ok(TempDatabase::Postgres {
            server: spec.to_owned(),
            name,
            url,
        })
    }

    fn url(&self) -> &str {
        match self {
            TempDatabase::Sqlite { url, .. } | TempDatabase::Postgres { url, .. } => url,
        }
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        if let TempDatabase::Postgres { server, name, .. } = self {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}

fn report(name: &str, figures: &Figures) {
    println!(
        "{name:<28} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} ok, {} errors, {:.1} s)",
        figures.per_second(),
        figures.percentile_us(0.50) as f64 / 1000.0,
        figures.percentile_us(0.99) as f64 / 1000.0,
        figures.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        figures.completed(),
        figures.errors,
        figures.elapsed.as_secs_f64(),
    );
    if !figures.causes.is_empty() {
        let causes: Vec<String> = figures
            .causes
            .iter()
            .map(|(cause, count)| format!("{count} × {cause}"))
            .collect();
        println!("{:<28} errors: {}", "", causes.join(", "));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv = streamr_net::cli::with_config_file(&Args::command(), std::env::args_os().collect())?;
    let args = Args::parse_from(argv);
    let duration = match args.duration_secs {
        Some(secs) => {
            eprintln!("--duration-secs is deprecated; use --duration {secs}s");
            Duration::from_secs(secs)
        }
        None => args.duration,
    };
    let requests = args.requests.clamp(1, MAX_REQUESTS);
    let deadline = duration.clamp(
        Duration::from_secs(1),
        Duration::from_secs(MAX_DURATION_SECS),
    );
    let connections = args.connections.clamp(1, 1024);
    let nodes = args.nodes.max(connections);

    let rounds = args.rounds.clamp(1, 20);
    let database = TempDatabase::create(
        &args.database,
        &args.sqlite_synchronous,
        &args.heartbeat_flush,
    )
    .await?;
    let storage = connect(database.url()).await?;
    let mut config = CoordConfig {
        admin_token: Some("load".into()),
        rate_limit: None,
        ..CoordConfig::default()
    };
    // Every connection comes from loopback: the per-client cap would refuse those beyond it.
    // The registration connection is closed before the phases, but the server may count it
    // (or a previous round's connection) until it sees the close: one more than the phase's.
    config.http.max_connections_per_client =
        config.http.max_connections_per_client.max(connections + 1);
    let coordinator = Coordinator::new(config, storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let coord_addr = listener.local_addr()?;
    let server = coordinator.clone();
    tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });

    // Register the nodes, then sign every heartbeat before the clock starts.
    let keys: Vec<KeyPair> = (0..nodes)
        .map(|_| KeyPair::generate(&mut rand::rngs::OsRng))
        .collect();
    let mut setup = HttpClient::connect(coord_addr).await?;
    for (i, key) in keys.iter().enumerate() {
        let registration = Signed::sign(
            NodeRegistration {
                operator_membership: None,
                node_id: key.node_id(),
                payout_address: format!("load-{i}"),
                operator: format!("load-operator-{i}"),
                rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
                http_url: format!("http://127.0.{}.{}:8080", i / 250, i % 250 + 1),
                capacity_kbps: 10_000,
                timestamp_ms: now_ms(),
            },
            key,
        );
        let (status, body) = setup.post("/nodes", &registration).await?;
        if status != 201 {
            bail!("registering node {i}: {status} {body}");
        }
    }
    let sessions: Vec<Option<NodeSession>> = if args.auth == "session" {
        let coordinator_key = coordinator.coordinator_key();
        let mut sessions = Vec::with_capacity(nodes);
        for (i, key) in keys.iter().enumerate() {
            let (handshake, open) = NodeHandshake::generate(key, &mut rand::rngs::OsRng, now_ms());
            let (status, body) = setup.post("/nodes/sessions", &open).await?;
            if status != 201 {
                bail!("opening node {i}'s session: {status} {body}");
            }
            let accept: SignedNodeSessionAccept = serde_json::from_value(body)?;
            sessions.push(Some(handshake.finish(&accept, &coordinator_key)?));
        }
        sessions
    } else {
        vec![None; nodes]
    };
    // Closed now: left open, it took one of the per-client connection slots the phases need.
    drop(setup);
    let stream = StreamId::new("load").context("stream id")?;
    let mut nonces = vec![0u64; nodes];
    let signed_at = now_ms();
    let mut heartbeat_rounds: Vec<Vec<Vec<Vec<u8>>>> = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut per_connection: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
        for n in 0..requests as usize {
            let node = n % nodes;
            let key = keys.get(node).context("node key")?;
            let nonce = nonces.get_mut(node).context("nonce")?;
            *nonce += 1;
            let heartbeat = NodeHeartbeat {
                node_id: key.node_id(),
                timestamp_ms: signed_at,
                nonce: *nonce,
                streams: vec![stream.clone()],
                viewers: 3,
                // A session heartbeat restates its session's running total.
                bytes_served: if args.auth == "session" {
                    args.bytes_served.saturating_mul(*nonce)
                } else {
                    args.bytes_served
                },
                unattested_bytes: 0,
                upstreams: Vec::new(),
                claim_totals: None,
            };
            let body = match sessions.get(node).and_then(Option::as_ref) {
                Some(session) => serde_json::to_vec(&SessionHeartbeatRequest::new(
                    session.seal(heartbeat),
                    Vec::new(),
                ))?,
                None => serde_json::to_vec(&json!({ "heartbeat": Signed::sign(heartbeat, key) }))?,
            };
            if let Some(bucket) = per_connection.get_mut(node % connections) {
                bucket.push(body);
            }
        }
        heartbeat_rounds.push(per_connection);
    }

    let hello_addr = start_hello().await?;
    let storage_name = if args.database == "sqlite" {
        format!(
            "SQLite (WAL, synchronous={}, heartbeat_flush={})",
            args.sqlite_synchronous, args.heartbeat_flush
        )
    } else {
        format!("PostgreSQL (heartbeat_flush={})", args.heartbeat_flush)
    };
    let (heartbeat_path, heartbeat_name) = if args.auth == "session" {
        ("/nodes/session-heartbeat", "session heartbeats")
    } else {
        ("/nodes/heartbeat", "signed heartbeats")
    };
    println!(
        "loopback, {connections} connections, {nodes} nodes, {} heartbeats, {rounds} rounds of up to {requests} requests or {} s per phase, storage {storage_name}",
        args.auth,
        deadline.as_secs(),
    );
    let mut hello = Figures::default();
    let mut heartbeats = Figures::default();
    for (round, per_connection) in heartbeat_rounds.into_iter().enumerate() {
        let hello_bodies = per_connection.clone();
        let hello_round = run_phase(hello_addr, "/hello", hello_bodies, deadline).await?;
        report(
            &format!("{}: axum hello (ceiling)", round + 1),
            &hello_round,
        );
        let heartbeat_round =
            run_phase(coord_addr, heartbeat_path, per_connection, deadline).await?;
        report(
            &format!("{}: {heartbeat_name}", round + 1),
            &heartbeat_round,
        );
        hello.absorb(&hello_round);
        heartbeats.absorb(&heartbeat_round);
    }
    report("all: axum hello (ceiling)", &hello);
    report(&format!("all: {heartbeat_name}"), &heartbeats);
    println!(
        "ratio: heartbeats/ceiling throughput {:.1} %, heartbeat p99 {:.2} ms (target >= 50 %, < 20 ms)",
        100.0 * heartbeats.per_second() / hello.per_second().max(1e-9),
        heartbeats.percentile_us(0.99) as f64 / 1000.0,
    );
    // Session heartbeats reach the database in periodic batches: the last one, now.
    coordinator.write_heartbeat_totals().await?;
    let stored = coordinator_stats(coord_addr).await?;
    println!("nodes online after the run: {stored}");
    database.drop_database().await?;
    Ok(())
}

async fn coordinator_stats(addr: SocketAddr) -> anyhow::Result<i64> {
    let mut client = HttpClient::connect(addr).await?;
    let (_, nodes) = client.get("/nodes").await?;
    Ok(nodes.as_array().map_or(0, |n| {
        n.iter().filter(|n| n["status"] == "online").count() as i64
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_tool_names_itself_and_documents_every_flag() {
        let command = Args::command();
        assert_eq!(command.get_name(), "streamr-coord-load");
        let about = command
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default();
        assert!(about.starts_with("Load tool"), "{about}");
        streamr_test_support::cli::assert_documented(
            &command,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md"),
        );
        let old = Args::try_parse_from(["streamr-coord-load", "--duration-secs", "5"]).unwrap();
        assert_eq!(old.duration_secs, Some(5));
    }
}
