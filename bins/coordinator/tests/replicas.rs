//! Two coordinator processes on one PostgreSQL database and one payout file: both take
//! heartbeats and both run the settlement and payout workers, they are made to race for the
//! same epoch, yet every epoch is settled exactly once, the ledger equals a replay of the core
//! engine, and the shared sink paid every node exactly what the stored payouts promise.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs PostgreSQL (STREAMR_TEST_POSTGRES_URL)"]
async fn two_replicas_settle_each_epoch_once() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let payout_file = dir.path().join("payouts");
    let payout_path = payout_file.to_str().expect("UTF-8 path");
    let flags = |replica: &'static str| {
        [
            "--payout-file",
            payout_path,
            "--epoch-ms",
            "50",
            "--settlement-grace-ms",
            "0",
            "--vesting-epochs",
            "0",
            "--worker-interval-ms",
            "5",
            // A liveness note held up past the outage gap on a loaded machine is taken for an
            // outage; with the default grace (a minute) the epochs after it would outlast the
            // test's wait for them.
            "--outage-grace",
            "2s",
            "--replica-id",
            replica,
        ]
    };
    let a = Process::start(&db.url, free_port(), &flags("replica-a")).await;
    let b = Process::start(&db.url, free_port(), &flags("replica-b")).await;
    let mut client_a = a.client().await;
    let mut client_b = b.client().await;
    let mut feeders = seed(&mut client_a, 8, 2).await;

    let feed_until = tokio::time::Instant::now() + Duration::from_millis(3000);
    let mut turn = 0usize;
    while tokio::time::Instant::now() < feed_until {
        for feeder in &mut feeders {
            let client = if turn % 2 == 0 {
                &mut client_a
            } else {
                &mut client_b
            };
            turn += 1;
            assert!(feeder.beat(client).await, "both replicas take heartbeats");
        }
    }
    // Make both replicas compute the same epoch: hold the settlement writers' lock until both
    // wait for it, then let them go. One stores the epoch, the other loses the race.
    let mut lock = pg_connect(&db.url).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SETTLEMENT_LOCK_KEY)
        .execute(&mut lock)
        .await
        .expect("take the settlement lock");
    wait_for_lock_waiters(&mut lock, "a.wait_event = 'advisory'", 2).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SETTLEMENT_LOCK_KEY)
        .execute(&mut lock)
        .await
        .expect("release the settlement lock");

    let last_activity_epoch = (now_ms() / 50) as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, epochs) = client_b.get("/epochs?limit=1").await.expect("epochs");
        if epochs[0]["epoch"].as_i64().unwrap_or(-1) > last_activity_epoch {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "epochs not settled in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_no_pending_payouts(&db.url).await;

    // Each replica's own count of settlements it wrote brackets the rows naming it: no epoch
    // was written twice and none was counted without being written.
    let mut races_lost = 0;
    let mut settled_rows = 0;
    for (process, replica) in [(&a, "replica-a"), (&b, "replica-b")] {
        let before = process.metric("streamr_epochs_settled_total").await;
        let rows = settled_by(&db.url, replica).await;
        let after = process.metric("streamr_epochs_settled_total").await;
        assert!(
            before <= rows && rows <= after,
            "{replica}: {before} <= {rows} <= {after}"
        );
        settled_rows += rows;
        races_lost += process.metric("streamr_settlement_races_lost_total").await;
    }
    // Which replica wins the later epochs is up to the scheduler (on a loaded machine one
    // may win them all); that both computed the same epoch and one lost the race is not.
    assert!(settled_rows > 0, "no replica settled an epoch");
    assert!(races_lost > 0, "the replicas raced for an epoch");
    drop(a);
    drop(b);

    let acknowledged: Vec<(String, u64)> = feeders
        .iter()
        .flat_map(|f| f.acknowledged.iter().cloned())
        .collect();
    let audit = audit(&db.url, &acknowledged).await;
    let paid = audit_payout_file(&db.url, &payout_file).await;
    eprintln!("{audit:?} {paid:?} races lost: {races_lost}");
    assert!(audit.settlements > 50, "{audit:?}");
    assert!(
        paid.by_replica.len() == 2 && paid.transferred > 0,
        "both replicas paid through the shared sink: {paid:?}"
    );
}
