//! Settlement closes an epoch before it reads the epoch's inputs. A receipt, heartbeat or probe
//! result written for a closed epoch (one accepted before its deadline whose write came
//! later: a slow database, a replica cut off for a while) is booked to the first open epoch,
//! never to one whose inputs were read, so no accepted write is left out of every settlement.
//! Every scenario runs against SQLite and against a real PostgreSQL server.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sqlx::Connection;
use streamr_coord::storage::{
    ActivityDelta, HeartbeatWrite, NodeRecord, NodeSessionRecord, ProbeRecord, ReceiptRecord,
    SessionHeartbeatTotals, SessionTotalsWrite,
};
use streamr_coord::Storage;

on_both_backends!(
    writes_for_a_closed_epoch_are_booked_to_the_first_open_one,
    a_close_waits_for_writes_in_flight_and_writes_after_it_see_it,
    receipts_judged_against_one_stored_receipt_credit_the_session_once,
);

const NODE: &str = "node-fence";
const CLOSED: i64 = 7;

async fn node(storage: &dyn Storage) {
    storage
        .upsert_node(&NodeRecord {
            id: NODE.into(),
            payout_address: "payout".into(),
            operator: "operator".into(),
            operator_key: None,
            subnet: "10.1.2.0/24".into(),
            rtmp_url: "rtmp://10.1.2.3/live".into(),
            http_url: "http://10.1.2.3:8080".into(),
            registered_at_ms: 1,
            active: true,
            capacity_kbps: 10_000,
            last_nonce: 0,
            last_heartbeat_ms: None,
            status: "online".into(),
            viewers: 0,
            bytes_served: 0,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
        })
        .await
        .expect("node");
}

fn receipt(session: &str, seq: i64, epoch: i64) -> ReceiptRecord {
    ReceiptRecord {
        session_id: session.into(),
        seq,
        node_id: NODE.into(),
        stream_id: "show".into(),
        bytes_total: 1000 * seq,
        bytes_delta: 1000,
        on_time_bytes: 1000,
        last_segment_seq: seq,
        t_ms: epoch * 60_000 + seq,
        epoch,
        received_at_ms: epoch * 60_000 + seq,
        body: "{}".into(),
    }
}

fn activity(epoch: i64, heartbeats: i64, claimed: i64, accepted: i64) -> ActivityDelta {
    ActivityDelta {
        node_id: NODE.into(),
        epoch,
        heartbeats,
        claimed_bytes: claimed,
        unattested_bytes: claimed / 10,
        submitted: accepted,
        accepted,
        ..ActivityDelta::default()
    }
}

fn heartbeat(nonce: i64, receipts: Vec<ReceiptRecord>, epoch: i64) -> HeartbeatWrite {
    let accepted = receipts.len() as i64;
    HeartbeatWrite {
        node_id: NODE.into(),
        nonce,
        timestamp_ms: epoch * 60_000 + nonce,
        streams_json: "[]".into(),
        upstreams_json: "[]".into(),
        viewers: 1,
        bytes_served: 100 * nonce,
        claim_totals: None,
        receipts,
        activity: activity(epoch, 1, 100, accepted),
    }
}

fn probe(epoch: i64, at_ms: i64) -> ProbeRecord {
    ProbeRecord {
        node_id: NODE.into(),
        epoch,
        hash_ok: true,
        timed_out: false,
        ttfb_ms: 20,
        throughput_bytes_per_s: 1_000_000,
        probed_at_ms: at_ms,
    }
}

fn totals(nonce: i64, bytes: i64, epoch: i64) -> SessionTotalsWrite {
    SessionTotalsWrite {
        session_id: "node-session".into(),
        heartbeat: SessionHeartbeatTotals {
            node_id: NODE.into(),
            nonce,
            timestamp_ms: epoch * 60_000 + nonce,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
            viewers: 1,
            bytes_total: bytes,
            unattested_total: bytes / 10,
            epoch,
        },
        heartbeats: 1,
    }
}

/// One write of every kind that books to `epoch`; `n` keeps keys and nonces apart.
async fn write_everything(storage: &dyn Storage, epoch: i64, n: i64) {
    storage
        .insert_receipts(
            &[receipt("posted-by-node", n, epoch)],
            &[activity(epoch, 0, 0, 1)],
        )
        .await
        .expect("node's receipts");
    storage
        .insert_viewer_receipts(
            &[receipt("posted-by-viewer", n, epoch)],
            &[activity(epoch, 0, 0, 1)],
        )
        .await
        .expect("viewer's receipts");
    storage
        .insert_probe(&probe(epoch, epoch * 60_000 + n))
        .await
        .expect("probe");
    storage
        .add_probe_traffic(NODE, epoch, 100 * n)
        .await
        .expect("probe traffic");
    // Without receipts (one statement) and with them (a transaction).
    let outcomes = storage
        .record_heartbeats(&[heartbeat(10 * n, Vec::new(), epoch)])
        .await
        .expect("heartbeat");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let outcomes = storage
        .record_heartbeats(&[heartbeat(
            10 * n + 1,
            vec![receipt("in-heartbeat", n, epoch)],
            epoch,
        )])
        .await
        .expect("heartbeat with a receipt");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let stored = storage
        .record_session_totals(&[totals(10 * n + 2, 5000 * n, epoch)])
        .await
        .expect("session totals");
    assert_eq!(stored.len(), 1, "the session's totals are stored");
}

/// What settlement reads for an epoch, in a comparable form.
#[derive(Debug, PartialEq)]
struct Inputs {
    activity: Vec<ActivityDelta>,
    viewer_posted: Vec<ActivityDelta>,
    receipts: Vec<(String, i64)>,
    probes: Vec<i64>,
    probe_traffic: Vec<(String, i64)>,
}

async fn inputs(storage: &dyn Storage, epoch: i64) -> Inputs {
    let mut receipts: Vec<(String, i64)> = storage
        .receipts_for_epoch(epoch)
        .await
        .expect("receipts")
        .into_iter()
        .map(|r| (r.session_id, r.seq))
        .collect();
    receipts.sort();
    Inputs {
        activity: storage.activity_for_epoch(epoch).await.expect("activity"),
        viewer_posted: storage
            .viewer_posted_for_epoch(epoch)
            .await
            .expect("viewer posted"),
        receipts,
        probes: storage
            .probes_for_epoch(epoch)
            .await
            .expect("probes")
            .into_iter()
            .map(|p| p.probed_at_ms)
            .collect(),
        probe_traffic: storage
            .probe_traffic_for_epoch(epoch)
            .await
            .expect("probe traffic"),
    }
}

async fn writes_for_a_closed_epoch_are_booked_to_the_first_open_one(db: &TestDb) {
    let storage = db.storage().await;
    let storage = storage.as_ref();
    node(storage).await;
    storage
        .insert_node_session(
            &NodeSessionRecord {
                id: "node-session".into(),
                node_id: NODE.into(),
                sealed_key: "sealed".into(),
                expires_at_ms: i64::MAX,
            },
            0,
        )
        .await
        .expect("node session");
    assert_eq!(storage.closed_through().await.expect("fence"), None);
    write_everything(storage, CLOSED, 1).await;
    let settled = inputs(storage, CLOSED).await;
    assert_eq!(settled.receipts.len(), 3, "{settled:?}");
    assert_eq!(settled.probes.len(), 1);
    assert_eq!(settled.probe_traffic, [(NODE.to_owned(), 100)]);

    storage.close_epochs_through(CLOSED).await.expect("close");
    assert_eq!(storage.closed_through().await.expect("fence"), Some(CLOSED));
    // Closing an earlier epoch leaves the fence where it is.
    storage
        .close_epochs_through(CLOSED - 3)
        .await
        .expect("close");
    assert_eq!(storage.closed_through().await.expect("fence"), Some(CLOSED));

    // Everything written now for the closed epoch, or for one before it, lands in the next.
    write_everything(storage, CLOSED, 2).await;
    write_everything(storage, CLOSED - 2, 3).await;
    // Rows of a closed and the open epoch in one batch become one row.
    storage
        .insert_receipts(
            &[],
            &[
                activity(CLOSED - 1, 1, 7, 0),
                activity(CLOSED, 1, 11, 0),
                activity(CLOSED + 1, 1, 13, 0),
            ],
        )
        .await
        .expect("mixed epochs");

    assert_eq!(
        inputs(storage, CLOSED).await,
        settled,
        "nothing reaches a closed epoch"
    );
    let open = inputs(storage, CLOSED + 1).await;
    assert_eq!(open.receipts.len(), 6, "{open:?}");
    assert_eq!(open.probes.len(), 2);
    // A node's probe traffic of an epoch adds up in one row.
    assert_eq!(open.probe_traffic, [(NODE.to_owned(), 200 + 300)]);
    let [activity] = open.activity.as_slice() else {
        panic!("one activity row: {:?}", open.activity);
    };
    // Per write_everything: two heartbeats and one session totals row (3 heartbeats), four
    // receipts accepted from the node; its claims: 100 + 100 + the totals' growth.
    assert_eq!(activity.heartbeats, 2 * 3 + 3, "{activity:?}");
    assert_eq!(activity.accepted, 2 * 2, "{activity:?}");
    assert_eq!(
        activity.claimed_bytes,
        2 * 200 + (10_000 - 5000) + (15_000 - 10_000) + 7 + 11 + 13,
        "{activity:?}"
    );
    let [posted] = open.viewer_posted.as_slice() else {
        panic!("one viewer-posted row: {:?}", open.viewer_posted);
    };
    assert_eq!(posted.accepted, 2);
}

/// A connection of its own, outside the storage's pools, holding a transaction open.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    /// Opens a transaction that reads the fence and writes a probe result for `epoch`, as a
    /// booking write does, and leaves it open.
    async fn write_in_flight(db: &TestDb, epoch: i64) -> Raw {
        let insert = "INSERT INTO probe_results (node_id, epoch, hash_ok, timed_out, ttfb_ms, \
                      throughput_bytes_per_s, probed_at_ms) VALUES ('node-fence', $1, TRUE, \
                      FALSE, 1, 1, 1)";
        match db {
            TestDb::Sqlite(..) => {
                let mut c = sqlx::SqliteConnection::connect(db.url())
                    .await
                    .expect("connect");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .expect("begin");
                sqlx::query(&insert.replace('$', "?"))
                    .bind(epoch)
                    .execute(&mut c)
                    .await
                    .expect("write");
                Raw::Sqlite(c)
            }
            TestDb::Postgres(_) => {
                let mut c = sqlx::PgConnection::connect(db.url())
                    .await
                    .expect("connect");
                sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
                sqlx::query("SELECT closed_through FROM epoch_fence")
                    .execute(&mut c)
                    .await
                    .expect("read the fence");
                sqlx::query(insert)
                    .bind(epoch)
                    .execute(&mut c)
                    .await
                    .expect("write");
                Raw::Postgres(c)
            }
        }
    }

    async fn commit(self) {
        match self {
            Raw::Sqlite(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop),
            Raw::Postgres(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop),
        }
        .expect("commit");
    }
}

async fn a_close_waits_for_writes_in_flight_and_writes_after_it_see_it(db: &TestDb) {
    let storage: Arc<dyn Storage> = db.storage().await;
    node(storage.as_ref()).await;
    let in_flight = Raw::write_in_flight(db, CLOSED).await;

    let closing = tokio::spawn({
        let storage = storage.clone();
        async move { storage.close_epochs_through(CLOSED).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !closing.is_finished(),
        "the close waits for the write in flight"
    );
    // PostgreSQL queues a write that starts now behind the close; it must then read the
    // new fence. (SQLite's writers take turns in no set order once the lock is free.)
    let queued = matches!(db, TestDb::Postgres(_)).then(|| {
        let storage = storage.clone();
        tokio::spawn(async move { storage.insert_probe(&probe(CLOSED, 2)).await })
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Some(queued) = &queued {
        assert!(!queued.is_finished(), "a write waits for the close");
    }
    in_flight.commit().await;
    closing.await.expect("join").expect("close");
    if let Some(queued) = queued {
        queued.await.expect("join").expect("queued write");
    }
    storage
        .insert_probe(&probe(CLOSED, 3))
        .await
        .expect("later write");

    let closed = inputs(storage.as_ref(), CLOSED).await;
    assert_eq!(
        closed.probes,
        vec![1],
        "the write in flight is in the closed epoch, whose inputs are read after the close"
    );
    let mut open = inputs(storage.as_ref(), CLOSED + 1).await.probes;
    open.sort();
    let expected = if matches!(db, TestDb::Postgres(_)) {
        vec![2, 3]
    } else {
        vec![3]
    };
    assert_eq!(
        open, expected,
        "writes after the close go to the open epoch"
    );
}

/// Two requests carrying receipts of one session judged at once (a node's heartbeat handing in
/// the receipt it held through a coordinator outage, the viewer posting its next one itself;
/// or every request queued while the coordinator was frozen, served together when it resumes)
/// are each verified against the same stored receipt, so each states its increment from it.
/// Whichever is written first, the session's bytes are credited once: the newest receipt's
/// total, not the overlap of the two twice.
async fn receipts_judged_against_one_stored_receipt_credit_the_session_once(db: &TestDb) {
    let storage = db.storage().await;
    node(storage.as_ref()).await;
    let epoch = 3;
    // Receipt n states 1000 × n bytes; 2 and 3 were each judged against receipt 1.
    let judged = |session: &str, seq: i64| ReceiptRecord {
        bytes_delta: 1000 * (seq - 1),
        on_time_bytes: 1000 * (seq - 1),
        ..receipt(session, seq, epoch)
    };
    for (session, order) in [("newer-first", [3, 2]), ("older-first", [2, 3])] {
        storage
            .insert_receipts(&[receipt(session, 1, epoch)], &[])
            .await
            .expect("first receipt");
        for seq in order {
            storage
                .insert_receipts(&[judged(session, seq)], &[])
                .await
                .expect("receipt");
        }
    }
    let booked = storage.receipts_for_epoch(epoch).await.expect("receipts");
    for session in ["newer-first", "older-first"] {
        let of_session = booked.iter().filter(|r| r.session_id == session);
        let (bytes, on_time) = of_session.fold((0, 0), |(bytes, on_time), r| {
            (bytes + r.bytes_delta, on_time + r.on_time_bytes)
        });
        assert_eq!(
            (bytes, on_time),
            (3000, 3000),
            "session {session}: {:?}",
            booked
                .iter()
                .map(|r| (&r.session_id, r.seq, r.bytes_delta))
                .collect::<Vec<_>>()
        );
    }
}
