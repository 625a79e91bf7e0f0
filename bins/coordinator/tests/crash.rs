//! Crash safety: the real coordinator is killed with SIGKILL while it settles a backlog of
//! epochs and pays out into a durable payout file; after a last restart nothing acknowledged is
//! lost, the ledger equals a replay of the core engine, and the payout file shows no node paid
//! twice although payouts were repeated after the crashes.
//!
//! On PostgreSQL every kill is shown to land inside a settlement transaction and between a
//! payout's transfer and its record: the test locks the payouts table, waits until the
//! coordinator's settlement insert and its payout update both wait for that lock, then kills.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const EPOCH_MS: &str = "40";

fn flags<'a>(payout_file: &'a str, worker_interval_ms: &'a str) -> [&'a str; 12] {
    [
        "--epoch-ms",
        EPOCH_MS,
        "--settlement-grace-ms",
        "0",
        // Each kill is an outage: the epochs it held back wait this long after the restart.
        "--outage-grace",
        "50ms",
        "--vesting-epochs",
        "0",
        "--worker-interval-ms",
        worker_interval_ms,
        "--payout-file",
        payout_file,
    ]
}

/// Feeds receipts across many short epochs with the workers idle, building a backlog of
/// unsettled epochs. Returns the feeders (with what was acknowledged).
async fn build_backlog(database: &str, addr: std::net::SocketAddr, payout: &str) -> Vec<Feeder> {
    let mut process = Process::start(database, addr, &flags(payout, "3600000")).await;
    let mut client = process.client().await;
    let mut feeders = seed(&mut client, 12, 2).await;
    let feed_until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < feed_until {
        for feeder in &mut feeders {
            assert!(
                feeder.beat(&mut client).await,
                "coordinator answers while idle"
            );
        }
    }
    process.kill_hard();
    feeders
}

async fn stored_settlements(database: &str) -> usize {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements")
        .len()
}

/// Restarts until the backlog is settled and every payout sent, then checks the history and
/// the payout file.
async fn catch_up_and_audit(
    database: &str,
    addr: std::net::SocketAddr,
    payout_file: &Path,
    feeders: &[Feeder],
) -> (Audit, PayoutFileAudit) {
    let payout = payout_file.to_str().expect("UTF-8 path");
    let process = Process::start(database, addr, &flags(payout, "5")).await;
    let mut client = process.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let last_activity_epoch = (now_ms() / 40) as i64;
    loop {
        let (_, epochs) = client.get("/epochs?limit=1").await.expect("epochs");
        let newest = epochs[0]["epoch"].as_i64().unwrap_or(-1);
        if newest > last_activity_epoch {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog not settled in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_no_pending_payouts(database).await;
    drop(process);

    let acknowledged: Vec<(String, u64)> = feeders
        .iter()
        .flat_map(|f| f.acknowledged.iter().cloned())
        .collect();
    let audit = audit(database, &acknowledged).await;
    let paid = audit_payout_file(database, payout_file).await;
    assert!(audit.settlements > 40, "{audit:?}");
    assert!(
        audit.ledger_entries > audit.settlements && audit.payouts > 0,
        "epochs paid rewards, vesting and payouts: {audit:?}"
    );
    assert!(audit.receipts >= acknowledged.len(), "{audit:?}");
    (audit, paid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_during_settlement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}", dir.path().join("coordinator.db").display());
    let payout_file = dir.path().join("payouts");
    let payout = payout_file.to_str().expect("UTF-8 path");
    let addr = free_port();
    let feeders = build_backlog(&database, addr, payout).await;

    // Restart with busy workers and kill -9 as soon as the stored settlements show the
    // backlog being worked through: each kill lands part-way through it.
    let mut kills = 0;
    let mut settled = stored_settlements(&database).await;
    for _ in 0..6 {
        let process = Process::start(&database, addr, &flags(payout, "5")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = stored_settlements(&database).await;
            if now > settled {
                settled = now;
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no settlement made");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(process); // SIGKILL
        kills += 1;
    }

    let (audit, paid) = catch_up_and_audit(&database, addr, &payout_file, &feeders).await;
    eprintln!("after {kills} kills mid-backlog: {audit:?} {paid:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs PostgreSQL (STREAMR_TEST_POSTGRES_URL)"]
async fn postgres_survives_kill_inside_settlement_and_payout() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    // The payout file's directory is missing at first: payouts are refused and stay pending
    // while settlements go on, so there are payouts to interrupt later.
    let payout_file = dir.path().join("chain").join("payouts");
    let payout = payout_file.to_str().expect("UTF-8 path");
    let addr = free_port();
    let feeders = build_backlog(&db.url, addr, payout).await;
    let storage = streamr_coord::connect(&db.url)
        .await
        .expect("open database");
    {
        let _process = Process::start(&db.url, addr, &flags(payout, "5")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // Kill as soon as one payout waits, leaving most of the backlog unsettled.
        while storage
            .pending_payouts(1)
            .await
            .expect("pending payouts")
            .is_empty()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "payouts never pending"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } // SIGKILL
    std::fs::create_dir(dir.path().join("chain")).expect("payout directory");
    eprintln!(
        "backlog: epochs {:?}..{}",
        storage.first_activity_epoch().await,
        now_ms() / 40
    );

    let mut repeated = 0;
    for round in 0..4 {
        let mut lock = pg_connect(&db.url).await;
        sqlx::query("BEGIN")
            .execute(&mut lock)
            .await
            .expect("begin");
        sqlx::query("LOCK TABLE payouts IN SHARE MODE")
            .execute(&mut lock)
            .await
            .expect("lock payouts");
        eprintln!(
            "round {round}: {} settlements stored",
            stored_settlements(&db.url).await
        );
        let process = Process::start(&db.url, addr, &flags(payout, "5")).await;
        // Inside a settlement: its transaction has written the statement and ledger entries
        // and waits to insert the planned payouts. Between a transfer and its record: the
        // payout worker has paid the sink and waits to mark the payout sent.
        // (A transaction with an id has written rows: the settlement row and its ledger.)
        let payouts = waits_for_table("payouts");
        wait_for_lock_waiters(
            &mut lock,
            &format!("{payouts} AND a.backend_xid IS NOT NULL"),
            1,
        )
        .await;
        wait_for_lock_waiters(
            &mut lock,
            &format!("{payouts} AND a.query LIKE 'UPDATE payouts%'"),
            1,
        )
        .await;
        drop(process); // SIGKILL
        end_other_sessions(&mut lock).await;
        sqlx::query("ROLLBACK")
            .execute(&mut lock)
            .await
            .expect("release payouts");

        let (orphans,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM ledger_entries WHERE epoch > \
             (SELECT COALESCE(MAX(epoch), -1) FROM settlements)",
        )
        .fetch_one(&mut lock)
        .await
        .expect("ledger entries");
        assert_eq!(
            orphans, 0,
            "round {round}: the interrupted settlement left no ledger entry behind"
        );
        // The interrupted payout: transferred by the sink, still pending in the database.
        let transfers = streamr_coordinator::read_transfers(&payout_file).expect("payout file");
        let pending = storage.pending_payouts(100).await.expect("pending payouts");
        let paid_but_pending = pending.iter().any(|payout| {
            transfers.iter().any(|t| {
                t.node_id == payout.node_id
                    && i64::try_from(t.cumulative_net).ok() == Some(payout.cumulative_net)
            })
        });
        assert!(
            paid_but_pending,
            "round {round}: a payout was transferred but not recorded when the kill landed"
        );
        repeated += 1;
    }

    let (audit, paid) = catch_up_and_audit(&db.url, addr, &payout_file, &feeders).await;
    eprintln!(
        "{repeated} kills inside a settlement and between a transfer and its record: {audit:?} {paid:?}"
    );
}
