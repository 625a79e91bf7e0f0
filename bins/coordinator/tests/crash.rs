//! Crash safety: the real coordinator is killed with SIGKILL again and again while it settles a
//! backlog of epochs and pays out; after a last restart nothing acknowledged is lost, the
//! ledger equals a replay of the core engine, and no payout is made twice.

mod common;

use std::time::Duration;

use common::*;

async fn kill_during_settlement(database: &str) {
    // Phase 1: feed receipts across many short epochs with the workers idle, building a
    // backlog of unsettled epochs.
    let idle = [
        "--epoch-ms",
        "40",
        "--settlement-grace-ms",
        "0",
        "--vesting-epochs",
        "0",
        "--worker-interval-ms",
        "3600000",
    ];
    let busy = [
        "--epoch-ms",
        "40",
        "--settlement-grace-ms",
        "0",
        "--vesting-epochs",
        "0",
        "--worker-interval-ms",
        "5",
    ];
    let addr = free_port();
    let mut process = Process::start(database, addr, &idle).await;
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

    // Phase 2: restart with busy workers and kill -9 at varying points of the settlement.
    let mut kills = 0;
    for delay_ms in [60u64, 150, 35, 240, 90, 15, 180, 120] {
        let process = Process::start(database, addr, &busy).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        drop(process); // SIGKILL
        kills += 1;
    }

    // Phase 3: a last restart catches up; wait until the backlog is settled.
    let process = Process::start(database, addr, &busy).await;
    let mut client = process.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let last_activity_epoch = (common::now_ms() / 40) as i64;
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
    drop(process);

    let acknowledged: Vec<(String, u64)> = feeders
        .iter()
        .flat_map(|f| f.acknowledged.iter().cloned())
        .collect();
    let audit = audit(database, &acknowledged).await;
    assert!(kills > 0);
    assert!(audit.settlements > 40, "{audit:?}");
    assert!(
        audit.ledger_entries > audit.settlements && audit.payouts > 0,
        "epochs paid rewards, vesting and payouts: {audit:?}"
    );
    assert!(audit.receipts >= acknowledged.len(), "{audit:?}");
    eprintln!("after {kills} kills: {audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_during_settlement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}", dir.path().join("coordinator.db").display());
    kill_during_settlement(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_kill_during_settlement() {
    let db = PgDatabase::create().await;
    kill_during_settlement(&db.url).await;
}
