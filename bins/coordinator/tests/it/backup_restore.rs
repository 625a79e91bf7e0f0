//! Backup and restore: `scripts/backup.sh` copies a running coordinator's database (SQLite and
//! PostgreSQL) and a node key file part-way through a run, with epochs still unsettled;
//! `scripts/restore.sh` restores them into a fresh database and key directory. The original
//! and a coordinator started on the restored copy then settle the remaining epochs and the next
//! one, and both hold the same statements (hash, Merkle root, inputs, leaves) and ledger.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use streamr_coord::storage::{LedgerEntryRecord, SettlementRecord};

const EPOCH_MS: u64 = 200;

fn flags(replica: &str) -> Vec<String> {
    [
        "--epoch-ms",
        &EPOCH_MS.to_string(),
        // Epochs settle 3 s after they end: when feeding stops, the last ones are unsettled
        // until the backup is taken, even when the machine is loaded (with 1.5 s a slow
        // pg_dump on a busy machine once let settlement catch up before the copy).
        "--settlement-grace-ms",
        "3000",
        // The restored copy's coordinator finds the stretch since the backup an outage: the
        // epochs it covered wait this long for receipts held back through it.
        "--outage-grace",
        "500ms",
        "--vesting-epochs",
        "2",
        "--worker-interval-ms",
        "20",
        "--probe-interval-secs",
        "0",
        "--replica-id",
        replica,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

fn run_script(name: &str, args: &[&str]) {
    let output = Command::new(script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The settlements up to `last_epoch` with their ledger entries, without who settled them
/// and when.
async fn settled_history(
    database: &str,
    last_epoch: i64,
) -> Vec<(SettlementRecord, Vec<LedgerEntryRecord>)> {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    let mut history = Vec::new();
    for mut row in storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements")
    {
        if row.epoch > last_epoch {
            break;
        }
        row.settled_at_ms = 0;
        row.settled_by = String::new();
        let ledger = storage.ledger_for_epoch(row.epoch).await.expect("ledger");
        history.push((row, ledger));
    }
    history
}

async fn newest_settled(database: &str) -> i64 {
    let storage = streamr_coord::connect(database)
        .await
        .expect("open database");
    let rows = storage
        .settlements_from(i64::MIN, 1_000_000)
        .await
        .expect("settlements");
    rows.last().map_or(i64::MIN, |row| row.epoch)
}

/// Runs `process` until its database holds a settlement of `epoch`.
async fn wait_until_settled(database: &str, epoch: i64, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while newest_settled(database).await < epoch {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{who}: epoch {epoch} not settled in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Feeds the coordinator on `original`, backs it up while it runs, restores the backup into
/// `restored`, lets both settle the rest and the next epoch, and compares them.
async fn backup_mid_run_and_restore(original: &str, restored: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let backup = dir.path().join("backup");
    let key_file = dir.path().join("streamr-node.key");
    let key: [u8; 32] = rand::random();
    std::fs::write(&key_file, key).expect("write a node key");

    let process = Process::start(original, free_port(), &as_strs(&flags("original"))).await;
    let mut client = process.client().await;
    let mut feeders = seed(&mut client, 6, 2).await;
    let feed_until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < feed_until {
        for feeder in &mut feeders {
            assert!(feeder.beat(&mut client).await, "coordinator answers");
        }
    }
    let last_activity_epoch = (now_ms() / EPOCH_MS) as i64;
    let next_epoch = last_activity_epoch + 1;

    run_script(
        "backup.sh",
        &[
            original,
            backup.to_str().expect("UTF-8 path"),
            key_file.to_str().expect("UTF-8 path"),
        ],
    );
    wait_until_settled(original, next_epoch, "original").await;
    drop(process);

    let keys = dir.path().join("restored-keys");
    run_script(
        "restore.sh",
        &[
            backup.to_str().expect("UTF-8 path"),
            restored,
            keys.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(
        std::fs::read(keys.join("streamr-node.key")).expect("restored key"),
        key,
        "the node key comes back byte for byte"
    );
    // A second restore into the now-used database is refused and changes nothing.
    let again = Command::new(script("restore.sh"))
        .args([backup.to_str().expect("UTF-8 path"), restored])
        .output()
        .expect("run restore.sh");
    assert!(
        !again.status.success(),
        "restore.sh refuses a database that is not fresh"
    );
    let settled_in_backup = newest_settled(restored).await;
    assert!(
        settled_in_backup < last_activity_epoch,
        "the backup was taken mid-run, with epochs left to settle \
         (backup settled up to {settled_in_backup}, activity until {last_activity_epoch})"
    );

    let process = Process::start(restored, free_port(), &as_strs(&flags("restored"))).await;
    wait_until_settled(restored, next_epoch, "restored").await;
    drop(process);

    let expected = settled_history(original, next_epoch).await;
    let actual = settled_history(restored, next_epoch).await;
    assert!(
        expected.len() > 3 && expected.iter().any(|(row, _)| row.distributed > 0),
        "the run settled epochs with rewards: {} settlements",
        expected.len()
    );
    assert_eq!(expected.len(), actual.len(), "same epochs settled");
    for ((want, want_ledger), (got, got_ledger)) in expected.iter().zip(&actual) {
        assert_eq!(want, got, "epoch {}: the same statement", want.epoch);
        assert_eq!(
            want_ledger, got_ledger,
            "epoch {}: the same ledger entries",
            want.epoch
        );
    }
    eprintln!(
        "backup held settlements up to epoch {settled_in_backup}; both settled epochs {}..={next_epoch} \
         identically (root {})",
        expected.first().map_or(0, |(row, _)| row.epoch),
        expected.last().map_or("", |(row, _)| row.merkle_root.as_str()),
    );
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs bash and sqlite3 (scripts/backup.sh)"]
async fn sqlite_backup_mid_run_restores_and_settles_identically() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let original = format!("sqlite://{}", dir.path().join("original.db").display());
    let restored = format!("sqlite://{}", dir.path().join("restored.db").display());
    backup_mid_run_and_restore(&original, &restored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs PostgreSQL, pg_dump and psql (scripts/backup.sh)"]
async fn postgres_backup_mid_run_restores_and_settles_identically() {
    let original = PgDatabase::create().await;
    let restored = PgDatabase::create().await;
    backup_mid_run_and_restore(&original.url, &restored.url).await;
}
