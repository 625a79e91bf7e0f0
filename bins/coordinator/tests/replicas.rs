//! Two coordinator processes on one PostgreSQL database: both take heartbeats and both run the
//! settlement worker, yet every epoch is settled exactly once and the ledger equals a replay of
//! the core engine.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_settle_each_epoch_once() {
    let db = PgDatabase::create().await;
    let flags = |replica: &'static str| {
        [
            "--epoch-ms",
            "50",
            "--settlement-grace-ms",
            "0",
            "--vesting-epochs",
            "0",
            "--worker-interval-ms",
            "5",
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
    let last_activity_epoch = (now_ms() / 50) as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

    // Each replica's own count of settlements it wrote brackets the rows naming it: no epoch
    // was written twice and none was counted without being written.
    for (process, replica) in [(&a, "replica-a"), (&b, "replica-b")] {
        let before = process.metric("streamr_epochs_settled_total").await;
        let rows = settled_by(&db.url, replica).await;
        let after = process.metric("streamr_epochs_settled_total").await;
        assert!(
            before <= rows && rows <= after,
            "{replica}: {before} <= {rows} <= {after}"
        );
    }
    drop(a);
    drop(b);

    let acknowledged: Vec<(String, u64)> = feeders
        .iter()
        .flat_map(|f| f.acknowledged.iter().cloned())
        .collect();
    let audit = audit(&db.url, &acknowledged).await;
    eprintln!("{audit:?}");
    assert!(audit.settlements > 50, "{audit:?}");
    assert_eq!(
        audit.settled_by.values().sum::<usize>(),
        audit.settlements,
        "every settlement names the one replica that wrote it"
    );
}
