//! Support for the process-level tests: start the real `streamr-coordinator` binary, drive it
//! over HTTP, and check the stored ledger against a replay of the core settlement engine.

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;
use streamr_coord::wire::NodeRegistration;
use streamr_coordinator::{read_transfers, HttpClient};
use streamr_core::{
    segment_hash, ContentDigest, EpochInputs, KeyPair, NodeHeartbeat, PayoutConfirmation,
    PayoutItem, PayoutPolicy, PayoutSink, ProbeResult, SessionId, Settlement, Signed, StreamId,
    ViewerReceipt,
};

pub const ADMIN: &str = "process-test-admin";
/// Shared by every process so grants verify across replicas and restarts.
pub const COORDINATOR_SEED: &str =
    "1111111111111111111111111111111111111111111111111111111111111111";

/// A free loopback address (the coordinator listens on it).
pub use streamr_test_support::free_addr as free_port;
pub use streamr_test_support::now_ms;
pub use streamr_test_support::postgres::PgDatabase;

/// A running coordinator process; killed with SIGKILL when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts the binary and waits until /healthz answers.
    pub async fn start(database: &str, addr: SocketAddr, extra: &[&str]) -> Process {
        let child = streamr_test_support::our_binary(env!("CARGO_BIN_EXE_streamr-coordinator"))
            .args(["--listen", &addr.to_string(), "--database", database])
            .args([
                "--admin-token",
                ADMIN,
                "--coordinator-secret-key",
                COORDINATOR_SEED,
            ])
            .args(["--rate-limit", "0", "--log-format", "json"])
            // Test nodes advertise placeholder addresses nobody may connect to.
            .args(["--reachability-interval", "off"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn streamr-coordinator");
        let mut process = Process { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut client) = HttpClient::connect(addr).await {
                if matches!(client.get("/healthz").await, Ok((200, _))) {
                    return process;
                }
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("coordinator exited during start: {status}");
            }
            assert!(Instant::now() < deadline, "coordinator did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> HttpClient {
        HttpClient::connect(self.addr)
            .await
            .expect("connect")
            .with_bearer(ADMIN)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A counter from /metrics.
    pub async fn metric(&self, name: &str) -> u64 {
        let (_, body) = self.client().await.get("/metrics").await.expect("metrics");
        let text = body.as_str().expect("text").to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A node and the sessions of viewers it serves: produces heartbeats carrying fresh receipts.
pub struct Feeder {
    pub node: KeyPair,
    pub nonce: u64,
    pub sessions: Vec<(SessionId, KeyPair, u64, u64)>, // session, viewer, seq, bytes_total
    pub digest: ContentDigest,
    /// (session id hex, seq) of every receipt the coordinator acknowledged.
    pub acknowledged: Vec<(String, u64)>,
}

/// Registers a stream with one segment, `nodes` nodes with probes, and `viewers` viewer
/// sessions per node.
pub async fn seed(client: &mut HttpClient, nodes: u8, viewers: u8) -> Vec<Feeder> {
    let (status, body) = client
        .post("/streams", &json!({ "id": "crash", "title": "crash test" }))
        .await
        .expect("create stream");
    assert_eq!(status, 201, "{body}");
    let (status, body) = client
        .post(
            "/streams/crash/segments",
            &json!({ "sequence": 0, "hash": segment_hash(b"segment"), "published_ms": now_ms() + 3_600_000 }),
        )
        .await
        .expect("segment");
    assert_eq!(status, 201, "{body}");
    let digest: ContentDigest = body["segment"]["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("hex");
    let mut feeders = Vec::new();
    for n in 0..nodes {
        let node = KeyPair::from_seed([n.wrapping_add(100); 32]);
        let registration = Signed::sign(
            NodeRegistration {
                operator_membership: None,
                node_id: node.node_id(),
                payout_address: format!("addr-{n}"),
                operator: format!("operator-{n}"),
                rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
                http_url: format!("http://10.{n}.0.1:8080"),
                capacity_kbps: 10_000,
                timestamp_ms: now_ms(),
            },
            &node,
        );
        let (status, body) = client
            .post("/nodes", &registration)
            .await
            .expect("register");
        assert_eq!(status, 201, "{body}");
        feeders.push(Feeder {
            node,
            nonce: 0,
            sessions: Vec::new(),
            digest,
            acknowledged: Vec::new(),
        });
    }
    for feeder in &mut feeders {
        feeder.beat(client).await;
    }
    // Every node needs a live heartbeat before viewers are routed; sessions land where the
    // router sends them, so collect grants and hand each to the feeder of its node.
    let total_viewers = u16::from(nodes) * u16::from(viewers);
    for v in 0..total_viewers {
        let viewer = KeyPair::from_seed({
            let mut seed = [7u8; 32];
            seed[..2].copy_from_slice(&v.to_be_bytes());
            seed
        });
        let (status, play) = client
            .get(&format!(
                "/streams/crash/play?viewer={}",
                viewer.viewer_key()
            ))
            .await
            .expect("play");
        assert_eq!(status, 200, "{play}");
        let node_id = play["node_id"].as_str().expect("node").to_owned();
        let session: SessionId = play["grant"]["body"]["session_id"]
            .as_str()
            .expect("session")
            .parse()
            .expect("hex");
        if let Some(feeder) = feeders
            .iter_mut()
            .find(|f| f.node.node_id().to_string() == node_id)
        {
            feeder.sessions.push((session, viewer, 0, 0));
        }
    }
    feeders
}

impl Feeder {
    pub fn next_heartbeat(&mut self) -> Value {
        self.nonce += 1;
        let heartbeat = Signed::sign(
            NodeHeartbeat {
                node_id: self.node.node_id(),
                timestamp_ms: now_ms(),
                nonce: self.nonce,
                streams: vec![StreamId::new("crash").expect("id")],
                viewers: self.sessions.len() as u64,
                bytes_served: 0,
                unattested_bytes: 0,
                upstreams: Vec::new(),
                claim_totals: None,
            },
            &self.node,
        );
        let digest = self.digest;
        let receipts: Vec<_> = self
            .sessions
            .iter_mut()
            .map(|(session, viewer, seq, bytes)| {
                *seq += 1;
                // Far below the 2 MB/s the fraud rules allow a stream at the pace this loop runs.
                *bytes += 10_000;
                Signed::sign(
                    ViewerReceipt {
                        session_id: *session,
                        seq: *seq,
                        bytes_total: *bytes,
                        last_segment_seq: 0,
                        segments_digest: digest,
                        t_ms: now_ms(),
                    },
                    viewer,
                )
            })
            .collect();
        json!({ "heartbeat": heartbeat, "receipts": receipts })
    }

    /// Reports a passed probe of this node (so it is available in the current epoch), then
    /// sends one heartbeat with a receipt per session; records what was acknowledged.
    pub async fn beat(&mut self, client: &mut HttpClient) -> bool {
        let probe = ProbeResult {
            node_id: self.node.node_id(),
            hash_ok: true,
            timed_out: false,
            ttfb_ms: 50,
            throughput_bytes_per_s: 10_000_000,
        };
        match client.post("/probes", &probe).await {
            Ok((201, _)) => {}
            Ok((status, answer)) => panic!("probe refused: {status} {answer}"),
            Err(_) => return false,
        }
        let body = self.next_heartbeat();
        match client.post("/nodes/heartbeat", &body).await {
            Ok((200, answer)) => {
                assert_eq!(answer["rejected"], json!([]), "{answer}");
                for receipt in body["receipts"].as_array().into_iter().flatten() {
                    let session = receipt["body"]["session_id"].as_str().unwrap_or_default();
                    let seq = receipt["body"]["seq"].as_u64().unwrap_or_default();
                    self.acknowledged.push((session.to_owned(), seq));
                }
                true
            }
            Ok((status, answer)) => panic!("heartbeat refused: {status} {answer}"),
            Err(_) => false,
        }
    }
}

/// Collects the planned payouts, as the coordinator's settlement does.
#[derive(Default)]
struct Planned;

impl PayoutSink for Planned {
    fn pay(&mut self, item: &PayoutItem) -> Result<PayoutConfirmation, String> {
        Ok(PayoutConfirmation {
            node_id: item.node_id,
            cumulative_net: item.cumulative_net,
            transferred: item.net,
        })
    }
}

/// What the stored history looks like once checked.
#[derive(Debug)]
pub struct Audit {
    pub settlements: usize,
    pub ledger_entries: usize,
    pub receipts: usize,
    pub payouts: usize,
    pub settled_by: BTreeMap<String, usize>,
}

/// Checks the stored history: settled epochs are consecutive and chained, every stored
/// statement and ledger entry equals a replay of the core engine over the stored inputs (none
/// lost, none extra), every acknowledged receipt is stored, and no payout appears twice.
pub async fn audit(database: &str, acknowledged: &[(String, u64)]) -> Audit {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    let settlements = storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements");
    let mut engine = Settlement::new();
    let mut previous: Option<(i64, String)> = None;
    let mut settled_by = BTreeMap::new();
    let mut stored_entries = Vec::new();
    let mut paid: BTreeMap<String, i64> = BTreeMap::new();
    let mut payouts = 0;
    for row in &settlements {
        let inputs: EpochInputs = serde_json::from_str(&row.inputs_json).expect("inputs");
        *settled_by.entry(row.settled_by.clone()).or_insert(0) += 1;
        if let Some((last_epoch, last_hash)) = &previous {
            assert_eq!(row.epoch, last_epoch + 1, "settled epochs have no gap");
            assert_eq!(&row.previous_hash, last_hash, "statements are chained");
        }
        let outcome = engine.settle_epoch(&inputs).expect("stored inputs replay");
        engine
            .pay_out(inputs.epoch, &PayoutPolicy::default(), &mut Planned)
            .expect("payout replay");
        assert_eq!(
            outcome.statement.hash().to_string(),
            row.statement_hash,
            "epoch {}",
            row.epoch
        );
        previous = Some((row.epoch, row.statement_hash.clone()));
        for entry in storage.ledger_for_epoch(row.epoch).await.expect("ledger") {
            stored_entries.push((entry.idx, entry.epoch, entry.amount));
        }
        for payout in storage.payouts_for_epoch(row.epoch).await.expect("payouts") {
            payouts += 1;
            let total = paid.entry(payout.node_id.clone()).or_insert(0);
            *total += payout.net;
            assert_eq!(
                *total, payout.cumulative_net,
                "each payout adds exactly once to the node's total"
            );
        }
    }
    let expected_entries: Vec<(i64, i64, i64)> = engine
        .ledger()
        .entries()
        .iter()
        .map(|e| (e.index as i64, e.epoch as i64, e.amount as i64))
        .collect();
    assert_eq!(
        stored_entries, expected_entries,
        "stored ledger equals the replayed ledger"
    );

    let mut stored_receipts = std::collections::BTreeSet::new();
    if let (Some(first), Some((last, _))) = (
        storage.first_activity_epoch().await.expect("first epoch"),
        previous.as_ref(),
    ) {
        for epoch in first..=*last {
            for receipt in storage.receipts_for_epoch(epoch).await.expect("receipts") {
                stored_receipts.insert((receipt.session_id, receipt.seq));
            }
        }
    }
    for (session, seq) in acknowledged {
        assert!(
            stored_receipts.contains(&(session.clone(), *seq as i64)),
            "acknowledged receipt {session}#{seq} is stored and settled"
        );
    }
    Audit {
        settlements: settlements.len(),
        ledger_entries: stored_entries.len(),
        receipts: stored_receipts.len(),
        payouts,
        settled_by,
    }
}

/// How many stored settlements name `replica` as their writer.
pub async fn settled_by(database: &str, replica: &str) -> u64 {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements")
        .iter()
        .filter(|s| s.settled_by == replica)
        .count() as u64
}

/// Waits until no payout is pending any more (the payout worker has caught up).
pub async fn wait_for_no_pending_payouts(database: &str) {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !storage
        .pending_payouts(1)
        .await
        .expect("pending payouts")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "payouts still pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the shared payout file shows.
#[derive(Debug)]
pub struct PayoutFileAudit {
    /// Transfers recorded.
    pub transfers: usize,
    /// Micro-units transferred in total.
    pub transferred: u64,
    /// Transfers per replica that sent them.
    pub by_replica: BTreeMap<String, usize>,
}

/// Checks the payout file against the stored payouts once none is pending: for every node the
/// sink transferred exactly what the sent payouts promised, each transfer moving the node's
/// total from its previous value to its new one. A payout paid twice (across replicas or after a
/// crash) makes the transferred sum exceed the stored sum.
pub async fn audit_payout_file(database: &str, path: &Path) -> PayoutFileAudit {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    let mut promised: BTreeMap<String, i64> = BTreeMap::new();
    for settlement in storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements")
    {
        for payout in storage
            .payouts_for_epoch(settlement.epoch)
            .await
            .expect("payouts")
        {
            assert_eq!(payout.status, "sent", "{payout:?}");
            *promised.entry(payout.node_id).or_insert(0) += payout.net;
        }
    }
    let transfers = read_transfers(path).expect("payout file");
    let mut paid: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_replica = BTreeMap::new();
    for transfer in &transfers {
        let total = paid.entry(transfer.node_id.clone()).or_insert(0);
        assert_eq!(
            *total + transfer.transferred,
            transfer.cumulative_net,
            "each transfer moves its node's total from the previous one: {transfer:?}"
        );
        *total = transfer.cumulative_net;
        *by_replica.entry(transfer.replica.clone()).or_insert(0) += 1;
    }
    let promised: BTreeMap<String, u64> = promised
        .into_iter()
        .map(|(node, net)| (node, u64::try_from(net).expect("net is positive")))
        .collect();
    assert_eq!(
        paid, promised,
        "the sink paid each node exactly what its stored payouts promised"
    );
    PayoutFileAudit {
        transfers: transfers.len(),
        transferred: paid.values().sum(),
        by_replica,
    }
}

/// A connection of the test's own to the PostgreSQL database at `url`.
pub async fn pg_connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"))
}

/// Waits until `count` other sessions of this database wait for a lock and match `condition`
/// (SQL over `pg_stat_activity a`). On a deadline, panics listing the sessions.
pub async fn wait_for_lock_waiters(conn: &mut sqlx::PgConnection, condition: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Inside a transaction the activity view is a snapshot taken once: take a fresh one.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *conn)
            .await
            .expect("clear statistics snapshot");
        let (waiting,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM pg_stat_activity a WHERE a.datname = current_database() \
             AND a.pid <> pg_backend_pid() AND a.wait_event_type = 'Lock' AND ({condition})"
        ))
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_activity");
        if waiting >= count {
            return;
        }
        if Instant::now() > deadline {
            let sessions: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT state, wait_event_type || ':' || wait_event, LEFT(query, 60) \
                 FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid()",
            )
            .fetch_all(&mut *conn)
            .await
            .expect("pg_stat_activity");
            panic!("{count} sessions never waited where {condition}; sessions: {sessions:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A session waiting for a lock on `table` (a condition for [`wait_for_lock_waiters`]).
pub fn waits_for_table(table: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted \
         AND l.relation = '{table}'::regclass)"
    )
}

/// Ends every other session of this database, as the death of their process would: a
/// statement they had sent but not finished never commits.
pub async fn end_other_sessions(conn: &mut sqlx::PgConnection) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *conn)
    .await
    .expect("terminate sessions");
}

/// The advisory lock key that serialises settlement writers (streamr-coord's storage).
pub const SETTLEMENT_LOCK_KEY: i64 = 0x5354_524d_5345_5454;
