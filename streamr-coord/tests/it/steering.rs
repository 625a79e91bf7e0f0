//! What a paying adversary can do to routing and receipt booking through the API, and why it
//! does not work: re-rolling `/play` or excluding nodes is budgeted per viewer key and source
//! prefix (in the database, so a second replica sees the same budget), a node announcing a huge
//! capacity gets no more viewers than it was measured to carry, a flood of junk grants does not
//! push honest viewers onto the attacker's node, and receipts are booked to the epoch they were
//! signed in and refused after its deadline — unless a coordinator outage held them back, when
//! they count where they were signed and their epoch waits for them. Every scenario runs
//! against SQLite and against a real PostgreSQL server (STREAMR_TEST_POSTGRES_URL).

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::storage::OutageRecord;
use streamr_coord::{CoordConfig, Coordinator, GrantBudget};
use streamr_core::{
    ContentDigest, KeyPair, ManualClock, NodeHeartbeat, SessionId, Signed, SignedGrant,
    SignedReceipt, StreamId, ViewerReceipt,
};

on_both_backends!(
    rerolling_and_excluding_cannot_reach_a_chosen_node_beyond_budget,
    ipv6_viewers_are_budgeted_by_48_and_64,
    a_false_capacity_announcement_does_not_capture_routing,
    a_junk_grant_flood_does_not_divert_honest_viewers,
    receipts_land_in_their_signature_epoch_and_late_ones_are_refused,
    receipts_an_outage_held_back_count_in_their_epoch_which_waits_for_them,
    concurrent_notes_after_an_outage_record_it_once,
    a_note_that_waited_for_the_database_is_timed_when_it_got_through,
    node_prefixes_come_from_observed_addresses,
    the_grant_log_lists_grants_live_in_a_window,
    fail_overs_carrying_the_previous_grant_spend_no_budget,
    faked_fail_overs_farm_no_grants,
);

/// The test configuration with hour-long epochs, so a scenario's budgets do not reset halfway.
fn hour_epochs() -> CoordConfig {
    CoordConfig {
        epoch_length: Duration::from_secs(3_600),
        ..test_config()
    }
}

/// A coordinator over `db` with stream `show`.
async fn coordinator(db: &TestDb, config: CoordConfig) -> Client {
    let api = Client::new(Coordinator::new(config, db.storage().await));
    let (status, body) = api
        .post_admin("/streams", &json!({ "id": "show", "title": "test" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api
}

/// Registers a node announcing `capacity_kbps` and sends a heartbeat relaying `show` to
/// `viewers` viewers.
async fn add_node(api: &Client, seed: u8, capacity_kbps: u64, viewers: u64) -> KeyPair {
    let node = KeyPair::from_seed([seed; 32]);
    let mut registration = registration(&node, &format!("http://10.0.{seed}.1:8080"));
    registration.body.capacity_kbps = capacity_kbps;
    let registration = Signed::sign(registration.body, &node);
    let (status, body) = api.post("/nodes", &registration).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce: 1,
            streams: vec![StreamId::new("show").expect("stream id")],
            viewers,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        &node,
    );
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": heartbeat }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    node
}

fn viewer_key(tag: u32) -> KeyPair {
    let mut seed = [77u8; 32];
    seed[..4].copy_from_slice(&tag.to_be_bytes());
    KeyPair::from_seed(seed)
}

/// `/play` for viewer `tag` from `peer`, excluding `exclude`.
async fn play(api: &Client, tag: u32, peer: IpAddr, exclude: &[&KeyPair]) -> (StatusCode, Value) {
    let exclude: String = exclude
        .iter()
        .map(|n| format!("&exclude={}", n.node_id()))
        .collect();
    api.get_from(
        &format!(
            "/streams/show/play?viewer={}{exclude}",
            viewer_key(tag).viewer_key()
        ),
        peer,
    )
    .await
}

/// A fail-over of viewer `tag`: `/play` carrying its grant `previous`, excluding `exclude`.
async fn reroute(
    api: &Client,
    tag: u32,
    peer: IpAddr,
    previous: &str,
    exclude: &[String],
) -> (StatusCode, Value) {
    let exclude: String = exclude.iter().map(|n| format!("&exclude={n}")).collect();
    api.get_from(
        &format!(
            "/streams/show/play?viewer={}&previous={previous}{exclude}",
            viewer_key(tag).viewer_key()
        ),
        peer,
    )
    .await
}

fn session_of(body: &Value) -> String {
    body["grant"]["body"]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned()
}

/// A distinct /24 for honest viewer `i`.
fn honest_peer(i: u32) -> IpAddr {
    let [_, _, high, low] = i.to_be_bytes();
    IpAddr::from([172, 16 + high, low, 9])
}

fn node_of(body: &Value) -> String {
    body["node_id"].as_str().expect("node id").to_owned()
}

async fn rerolling_and_excluding_cannot_reach_a_chosen_node_beyond_budget(db: &TestDb) {
    let config = CoordConfig {
        grant_budget: GrantBudget {
            per_viewer: 6,
            per_ipv4_24: 24,
            ..GrantBudget::default()
        },
        ..hour_epochs()
    };
    let api = coordinator(db, config.clone()).await;
    let nodes: Vec<KeyPair> = [
        add_node(&api, 1, 50_000, 0).await,
        add_node(&api, 2, 50_000, 0).await,
        add_node(&api, 3, 50_000, 0).await,
        add_node(&api, 4, 50_000, 0).await,
    ]
    .into();
    let target = nodes[0].node_id().to_string();
    let attacker: IpAddr = [198, 51, 100, 7].into();

    // One key re-asking: its viewer budget runs out after 6 requests.
    for _ in 0..6 {
        let (status, body) = play(&api, 1, attacker, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = play(&api, 1, attacker, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "grant_budget_spent", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("viewer")),
        "{body}"
    );

    // Excluding every other node reaches the target for sure, but costs one unit per excluded
    // node: 4 units a grant. A second replica on the same database shares the budget.
    let replica = Client::new(Coordinator::new(config, db.storage().await));
    let others: Vec<&KeyPair> = nodes[1..].iter().collect();
    let mut on_target = 0;
    let mut tag = 100;
    loop {
        let via = if tag % 2 == 0 { &api } else { &replica };
        let (status, body) = play(via, tag, attacker, &others).await;
        tag += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "grant_budget_spent", "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("ipv4/24 198.51.100.0/24")),
                "{body}"
            );
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(node_of(&body), target);
        on_target += 1;
        assert!(tag < 200, "the prefix budget never ran out");
    }
    // 24 units per /24: 6 spent re-asking, 18 left buy 4 requests of 4 units.
    assert_eq!(on_target, 4);
    // Fresh keys from the same /24 get the 2 units left, and nothing more, however they ask.
    let mut granted = 0;
    for tag in 300..310 {
        let (status, body) = play(&replica, tag, attacker, &[]).await;
        match status {
            StatusCode::OK => granted += 1,
            _ => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}"),
        }
    }
    assert_eq!(granted, 2);
    // Another network's viewers are not affected.
    let (status, body) = play(&api, 400, honest_peer(1), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn ipv6_viewers_are_budgeted_by_48_and_64(db: &TestDb) {
    let config = CoordConfig {
        grant_budget: GrantBudget {
            per_ipv6_48: 5,
            per_ipv6_64: 3,
            ..GrantBudget::default()
        },
        ..hour_epochs()
    };
    let api = coordinator(db, config).await;
    add_node(&api, 1, 50_000, 0).await;
    let lan_a: IpAddr = "2001:db8:7:a::10".parse().expect("address");
    let lan_b: IpAddr = "2001:db8:7:b::20".parse().expect("address");
    let mut tag = 0;
    let mut ask = |peer| {
        tag += 1;
        let api = &api;
        async move { play(api, tag, peer, &[]).await }
    };
    for _ in 0..3 {
        assert_eq!(ask(lan_a).await.0, StatusCode::OK);
    }
    let (status, body) = ask(lan_a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ipv6/64 2001:db8:7:a::/64")),
        "{body}"
    );
    // Another /64 of the same /48 has its own /64 budget but shares the /48's.
    let (status, body) = ask(lan_b).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["grant"]["body"]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    assert_eq!(ask(lan_b).await.0, StatusCode::OK);
    let (status, body) = ask(lan_b).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ipv6/48 2001:db8:7::/48")),
        "{body}"
    );
    // The session records both prefixes, for the per-prefix caps of settlement.
    let stored = db
        .storage()
        .await
        .get_session(&session)
        .await
        .expect("read")
        .expect("session stored");
    assert_eq!(stored.viewer_subnet, "2001:db8:7::/48");
    assert_eq!(stored.viewer_prefix64, "2001:db8:7:b::/64");
    assert!(!stored.probe);
}

async fn a_false_capacity_announcement_does_not_capture_routing(db: &TestDb) {
    let api = coordinator(db, hour_epochs()).await;
    let honest = [
        add_node(&api, 1, 25_000, 1).await,
        add_node(&api, 2, 25_000, 1).await,
        add_node(&api, 3, 25_000, 1).await,
    ];
    // 48 Gbit/s and not a single viewer: the announcement that took 94.6 % of new sessions.
    let liar = add_node(&api, 9, 48_000_000, 0).await.node_id().to_string();
    let mut to_liar = 0;
    for i in 0..60 {
        let (status, body) = play(&api, i, honest_peer(i), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if node_of(&body) == liar {
            to_liar += 1;
        }
    }
    // Four nodes measured alike: a fair share is 15 of 60.
    assert!(to_liar <= 24, "the liar got {to_liar} of 60 viewers");
    assert_eq!(honest.len(), 3);
}

async fn a_junk_grant_flood_does_not_divert_honest_viewers(db: &TestDb) {
    let config = CoordConfig {
        grant_budget: GrantBudget {
            per_ipv4_24: 400,
            ..GrantBudget::default()
        },
        ..hour_epochs()
    };
    let api = coordinator(db, config).await;
    let honest = [
        add_node(&api, 1, 25_000, 1).await,
        add_node(&api, 2, 25_000, 1).await,
    ];
    let attacker_node = add_node(&api, 9, 25_000, 0).await;
    let attacker_id = attacker_node.node_id().to_string();
    // The attacker asks for grants it never uses, from fresh keys, steering them away from its
    // own node, until its network's budget is spent.
    let flood_from: IpAddr = [203, 0, 113, 50].into();
    let mut junk = 0;
    for tag in 10_000..11_000 {
        let (status, body) = play(&api, tag, flood_from, &[&attacker_node]).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_ne!(node_of(&body), attacker_id);
        junk += 1;
    }
    assert_eq!(junk, 200, "400 units at 2 a request");
    // Honest viewers arriving now are spread as if the flood had not happened.
    let mut to_attacker = 0;
    for i in 0..45 {
        let (status, body) = play(&api, i, honest_peer(i), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if node_of(&body) == attacker_id {
            to_attacker += 1;
        }
    }
    // A fair share is 15 of 45; the flood alone would have sent nearly all of them there.
    assert!(
        to_attacker <= 24,
        "{to_attacker} of 45 honest viewers went to the attacker"
    );
    assert_eq!(honest.len(), 2);
}

async fn receipts_land_in_their_signature_epoch_and_late_ones_are_refused(db: &TestDb) {
    let config = CoordConfig {
        epoch_length: Duration::from_secs(2),
        settlement_grace: Duration::from_millis(1_500),
        // Receipts in flight for longer than this past their deadline are late.
        max_clock_skew: Duration::from_secs(1),
        ..test_config()
    };
    let epoch_ms = config.epoch_length.as_millis() as u64;
    let Granted {
        api,
        digests,
        node,
        viewer,
        grant,
    } = granted_session(db, config.clone()).await;
    let session: SessionId = grant.body.session_id;
    let receipt = |seq: u64, bytes_total: u64, segment: usize| {
        Signed::sign(
            ViewerReceipt {
                session_id: session,
                seq,
                bytes_total,
                last_segment_seq: segment as u64,
                segments_digest: digests[segment],
                t_ms: now_ms(),
            },
            &viewer,
        )
    };

    // Signed in one epoch, posted in the next (before the deadline): booked where it was signed.
    let first = receipt(1, 1_000, 0);
    let signed_epoch = (first.body.t_ms / epoch_ms) as i64;
    wait_until(epoch_end(&config, first.body.t_ms)).await;
    let (status, outcome) = api.post("/receipts", &json!({ "receipts": [first] })).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let storage = db.storage().await;
    let booked = storage
        .receipts_for_epoch(signed_epoch)
        .await
        .expect("receipts");
    assert_eq!(booked.len(), 1, "booked to the epoch it was signed in");
    // That epoch is not settled before its deadline, so the receipt still counts in it.
    assert_eq!(api.coordinator.settle_due().await.expect("settle"), 0);

    // Held past its epoch's deadline: refused with the reason, by either path, and counted.
    let held = receipt(2, 2_000, 1);
    wait_until(epoch_end(&config, held.body.t_ms) + config.settlement_grace.as_millis() as u64)
        .await;
    let (status, outcome) = api.post("/receipts", &json!({ "receipts": [held] })).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], 0, "{outcome}");
    assert!(
        outcome["rejected"][0]
            .as_str()
            .is_some_and(|r| r.contains("late")),
        "{outcome}"
    );
    let outcome = hand_in(&api, &node, 0, &held).await;
    assert_eq!(outcome["accepted"], 0, "{outcome}");
    assert!(
        outcome["rejected"][0]
            .as_str()
            .is_some_and(|r| r.contains("late")),
        "{outcome}"
    );
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("streamr_receipts_late_total 2")),
        "{metrics}"
    );
    // Signed beyond the clock skew in the future: refused too (no booking into chosen epochs).
    let mut future = receipt(3, 3_000, 2);
    future.body.t_ms = now_ms() + 10 * epoch_ms + config.max_clock_skew.as_millis() as u64;
    let future = Signed::sign(future.body, &viewer);
    let (_, outcome) = api
        .post("/receipts", &json!({ "receipts": [future] }))
        .await;
    assert_eq!(outcome["accepted"], 0, "{outcome}");
    assert!(
        outcome["rejected"][0]
            .as_str()
            .is_some_and(|r| r.contains("future")),
        "{outcome}"
    );
    let stored: usize = {
        let mut total = 0;
        for epoch in signed_epoch..signed_epoch + 20 {
            total += storage.receipts_for_epoch(epoch).await.expect("read").len();
        }
        total
    };
    assert_eq!(stored, 1, "only the timely receipt is stored");
}

async fn receipts_an_outage_held_back_count_in_their_epoch_which_waits_for_them(db: &TestDb) {
    let config = CoordConfig {
        epoch_length: Duration::from_secs(2),
        settlement_grace: Duration::from_millis(300),
        outage_grace: Duration::from_millis(1_500),
        // Silences over a second (`MIN_OUTAGE_GAP`; three liveness notes and the settlement
        // grace are shorter) are outages.
        worker_interval: Duration::from_millis(100),
        max_clock_skew: Duration::from_secs(1),
        ..test_config()
    };
    let Granted {
        api,
        digests,
        node,
        viewer,
        grant,
    } = granted_session(db, config.clone()).await;
    let held = Signed::sign(
        ViewerReceipt {
            session_id: grant.body.session_id,
            seq: 1,
            bytes_total: 1_000,
            last_segment_seq: 0,
            segments_digest: digests[0],
            t_ms: now_ms(),
        },
        &viewer,
    );
    let signed_epoch = config.epoch_of(held.body.t_ms as i64);
    // Up: settling notes the coordinator alive. Then down until its epoch's deadline (end plus
    // the settlement grace) is well past: nothing runs, nothing notes.
    api.coordinator.settle_due().await.expect("settle");
    let deadline = epoch_end(&config, held.body.t_ms) + config.settlement_grace.as_millis() as u64;
    wait_until(deadline + 1_200).await;

    // Back: the node hands in the receipt it kept, with its next heartbeat.
    let outcome = hand_in(&api, &node, 1_000, &held).await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    let storage = db.storage().await;
    let booked = storage
        .receipts_for_epoch(signed_epoch)
        .await
        .expect("receipts");
    assert_eq!(booked.len(), 1, "booked to the epoch it was signed in");

    // The epoch waits the outage grace for the rest of what was held back.
    api.coordinator.settle_due().await.expect("settle");
    assert!(storage
        .get_settlement(signed_epoch)
        .await
        .expect("storage")
        .is_none());
    tokio::time::sleep(config.outage_grace).await;
    while storage
        .get_settlement(signed_epoch)
        .await
        .expect("storage")
        .is_none()
    {
        api.coordinator.settle_due().await.expect("settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settlement = storage
        .get_settlement(signed_epoch)
        .await
        .expect("storage")
        .expect("settled");
    let inputs: streamr_core::EpochInputs =
        serde_json::from_str(&settlement.inputs_json).expect("inputs");
    let input = inputs
        .nodes
        .iter()
        .find(|n| n.node_id == node.node_id())
        .expect("the node's input");
    assert_eq!(input.verified_bytes, 1_000, "{input:?}");
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("streamr_receipts_late_total 0")),
        "{metrics}"
    );
    // Counted (more than once: with no liveness worker here, the test's pauses are outages).
    let outages = metrics.as_str().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("streamr_coordinator_outages_total "))
            .and_then(|n| n.parse::<u64>().ok())
    });
    assert!(outages.is_some_and(|n| n >= 1), "{metrics}");
}

async fn concurrent_notes_after_an_outage_record_it_once(db: &TestDb) {
    let storage = db.storage().await;
    let gap = 5_000;
    let note = |now: i64, since: i64| {
        let storage = storage.clone();
        let clock = ManualClock::new(u64::try_from(now).expect("a time after 1970"));
        async move { storage.note_alive(&clock, gap, since).await.expect("note") }
    };
    assert_eq!(note(1_000, 0).await.outages, []);
    assert_eq!(note(4_000, 0).await.outages, []);
    // A silence of 16 s: every replica coming back notes at once; one outage is recorded,
    // from the last note before it.
    let notes: Vec<_> = (0..8).map(|i| tokio::spawn(note(20_000 + i, 0))).collect();
    let mut recorded = 0;
    for note in notes {
        let note = note.await.expect("task");
        assert!(note.outages.len() <= 1, "{note:?}");
        recorded += usize::from(note.recorded.is_some());
    }
    assert_eq!(recorded, 1, "exactly one of the notes recorded the outage");
    let outages = note(21_000, 0).await.outages;
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert_eq!(outages[0].started_ms, 4_000);
    assert!(
        (20_000..20_008).contains(&outages[0].ended_ms),
        "{outages:?}"
    );
    // Read back from when they ended.
    assert_eq!(note(21_500, 20_008).await.outages, []);
}

/// A connection holding the liveness record the way a stalled database or another replica's
/// note in progress does, until [`LivenessHolder::release`].
enum LivenessHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LivenessHolder {
    async fn take(db: &TestDb) -> LivenessHolder {
        use sqlx::Connection as _;
        match db {
            TestDb::Sqlite(..) => {
                let mut connection = sqlx::SqliteConnection::connect(db.url())
                    .await
                    .expect("connect");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut connection)
                    .await
                    .expect("write lock");
                LivenessHolder::Sqlite(connection)
            }
            TestDb::Postgres(..) => {
                let mut connection = sqlx::PgConnection::connect(db.url())
                    .await
                    .expect("connect");
                sqlx::query("BEGIN")
                    .execute(&mut connection)
                    .await
                    .expect("begin");
                sqlx::query("SELECT alive_ms FROM coordinator_liveness WHERE id = 1 FOR UPDATE")
                    .execute(&mut connection)
                    .await
                    .expect("row lock");
                LivenessHolder::Postgres(connection)
            }
        }
    }

    async fn release(self) {
        match self {
            LivenessHolder::Sqlite(mut connection) => {
                sqlx::query("COMMIT")
                    .execute(&mut connection)
                    .await
                    .expect("commit");
            }
            LivenessHolder::Postgres(mut connection) => {
                sqlx::query("COMMIT")
                    .execute(&mut connection)
                    .await
                    .expect("commit");
            }
        }
    }
}

/// A note begun while the database did not answer, and through only after it was back 15 s
/// later, is timed when it got through: one outage is recorded, from the last note before
/// the stop to the first after it. (Timed when it began, it claimed the process up through
/// part of the stop, and the next note recorded the rest as an outage of its own.)
async fn a_note_that_waited_for_the_database_is_timed_when_it_got_through(db: &TestDb) {
    let storage = db.storage().await;
    let gap = 5_000;
    let clock = ManualClock::new(1_000);
    let note = storage.note_alive(&clock, gap, 0).await.expect("note");
    assert_eq!((note.at_ms, note.recorded), (1_000, None));

    let holder = LivenessHolder::take(db).await;
    clock.set(10_000);
    let back = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock.set(25_000);
        holder.release().await;
    };
    let (stalled, ()) = tokio::join!(storage.note_alive(&clock, gap, 0), back);
    let stalled = stalled.expect("the stalled note");
    let outage = OutageRecord {
        started_ms: 1_000,
        ended_ms: 25_000,
    };
    assert_eq!(stalled.at_ms, 25_000, "{stalled:?}");
    assert_eq!(stalled.recorded, Some(outage));

    clock.set(26_000);
    let next = storage.note_alive(&clock, gap, 0).await.expect("note");
    assert_eq!(next.recorded, None, "{next:?}");
    assert_eq!(next.outages, [outage]);
}

/// A coordinator over `db` with three segments of `show` reported, a node relaying it, and a
/// session granted to viewer 1 on it.
struct Granted {
    api: Client,
    digests: Vec<ContentDigest>,
    node: KeyPair,
    viewer: KeyPair,
    grant: SignedGrant,
}

async fn granted_session(db: &TestDb, config: CoordConfig) -> Granted {
    let api = coordinator(db, config).await;
    let digests = report_segments(&api, "show", 3).await;
    let node = add_node(&api, 1, 50_000, 1).await;
    let (status, body) = play(&api, 1, honest_peer(1), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grant: SignedGrant = serde_json::from_value(body["grant"].clone()).expect("grant");
    Granted {
        api,
        digests,
        node,
        viewer: viewer_key(1),
        grant,
    }
}

/// `node`'s heartbeat (nonce 2) claiming `bytes_served` and handing in `receipt`; the answer.
async fn hand_in(
    api: &Client,
    node: &KeyPair,
    bytes_served: u64,
    receipt: &SignedReceipt,
) -> Value {
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce: 2,
            streams: vec![StreamId::new("show").expect("stream id")],
            viewers: 1,
            bytes_served,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    );
    let (status, outcome) = api
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat, "receipts": [receipt] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    outcome
}

/// The end (Unix ms) of the epoch containing `t_ms`.
fn epoch_end(config: &CoordConfig, t_ms: u64) -> u64 {
    let length = config.epoch_length.as_millis() as u64;
    (t_ms / length + 1) * length
}

/// Sleeps until the clock reads past `t_ms`.
async fn wait_until(t_ms: u64) {
    let now = now_ms();
    if t_ms >= now {
        tokio::time::sleep(Duration::from_millis(t_ms - now + 20)).await;
    }
}

async fn node_prefixes_come_from_observed_addresses(db: &TestDb) {
    let api = coordinator(db, hour_epochs()).await;
    let node = KeyPair::from_seed([5; 32]);
    // The URL names one network; the node connects from another (IPv6): the observed one
    // counts.
    let home: IpAddr = "2001:db8:42:1::9".parse().expect("address");
    let registration = registration(&node, "http://10.9.9.9:8080");
    let (status, body) = api
        .raw_from(
            "POST",
            "/nodes",
            serde_json::to_vec(&registration).expect("json"),
            false,
            Some(home),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["subnet"], "2001:db8:42::/48", "{body}");
    for (nonce, peer) in [(1, home), (2, home), (3, IpAddr::from([192, 0, 2, 44]))] {
        let heartbeat = heartbeat(&node, nonce, &["show"]);
        let (status, body) = api
            .raw_from(
                "POST",
                "/nodes/heartbeat",
                serde_json::to_vec(&json!({ "heartbeat": heartbeat })).expect("json"),
                false,
                Some(peer),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // A heartbeat that is refused (a replayed nonce) says nothing about where the node is.
    let replay = heartbeat(&node, 3, &["show"]);
    let (status, _) = api
        .raw_from(
            "POST",
            "/nodes/heartbeat",
            serde_json::to_vec(&json!({ "heartbeat": replay })).expect("json"),
            false,
            Some(IpAddr::from([198, 18, 0, 1])),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut prefixes: Vec<String> = db
        .storage()
        .await
        .node_prefixes()
        .await
        .expect("prefixes")
        .into_iter()
        .filter(|p| p.node_id == node.node_id().to_string())
        .map(|p| p.prefix)
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, ["192.0.2.0/24", "2001:db8:42::/48"]);
}

async fn the_grant_log_lists_grants_live_in_a_window(db: &TestDb) {
    let api = coordinator(db, hour_epochs()).await;
    add_node(&api, 1, 50_000, 0).await;
    let before = now_ms() as i64;
    let (status, body) = play(&api, 1, honest_peer(1), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["grant"]["body"]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let storage = db.storage().await;
    let live = storage
        .sessions_live_between(before, before + 1_000_000)
        .await
        .expect("grant log");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].session_id, session);
    assert!(!live[0].probe);
    // A window that ends before the grant was issued, or starts after it expired, has none.
    assert!(storage
        .sessions_live_between(before - 10_000, before - 1)
        .await
        .expect("grant log")
        .is_empty());
    let expiry = live[0].expiry_ms;
    assert!(storage
        .sessions_live_between(expiry, expiry + 1_000)
        .await
        .expect("grant log")
        .is_empty());
}

/// Hour-long epochs and `per_viewer` units per viewer key.
fn viewer_budget(per_viewer: u32) -> CoordConfig {
    CoordConfig {
        grant_budget: GrantBudget {
            per_viewer,
            ..GrantBudget::default()
        },
        ..hour_epochs()
    }
}

/// The grants issued since `since` that are live now (a re-route ends the grant it carries).
async fn live_sessions(db: &TestDb, since: i64) -> Vec<String> {
    let now = now_ms() as i64;
    db.storage()
        .await
        .sessions_live_between(now, now + 1)
        .await
        .expect("grant log")
        .into_iter()
        .filter(|s| s.issued_at_ms >= since)
        .map(|s| s.session_id)
        .collect()
}

async fn fail_overs_carrying_the_previous_grant_spend_no_budget(db: &TestDb) {
    // One unit per viewer: only the first grant is paid.
    let config = viewer_budget(1);
    let api = coordinator(db, config.clone()).await;
    let replica = Client::new(Coordinator::new(config, db.storage().await));
    let mut nodes = Vec::new();
    for seed in 1..=8 {
        nodes.push(add_node(&api, seed, 50_000, 0).await);
    }
    let peer = honest_peer(7);
    let before = now_ms() as i64;
    let (status, body) = play(&api, 1, peer, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut previous = session_of(&body);
    let mut failed = vec![node_of(&body)];
    // Seven fail-overs in a row, like `streamr watch` excluding every node that failed it,
    // alternating replicas: each is routed to a node not failed yet, and none is charged.
    for round in 0..7 {
        let via = if round % 2 == 0 { &replica } else { &api };
        let (status, body) = reroute(via, 1, peer, &previous, &failed).await;
        assert_eq!(status, StatusCode::OK, "fail-over {round}: {body}");
        let node = node_of(&body);
        assert!(!failed.contains(&node), "routed back to a failed node");
        failed.push(node);
        previous = session_of(&body);
    }
    // Every earlier grant of the chain ended at its re-route: one live grant is left.
    assert_eq!(live_sessions(db, before).await, vec![previous.clone()]);
    // With every node failed nothing is found, and the retries that find nothing are free: the
    // grant is still there to carry once a node joins.
    for _ in 0..3 {
        let (status, body) = reroute(&api, 1, peer, &previous, &failed).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    let back = add_node(&api, 9, 50_000, 0).await;
    let (status, body) = reroute(&api, 1, peer, &previous, &failed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(node_of(&body), back.node_id().to_string());
    // The budget was spent once, by the first grant: a fresh request is refused.
    let (status, body) = play(&api, 1, peer, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "grant_budget_spent", "{body}");
}

async fn faked_fail_overs_farm_no_grants(db: &TestDb) {
    let config = viewer_budget(3);
    let api = coordinator(db, config).await;
    let mut nodes = Vec::new();
    for seed in 1..=12 {
        nodes.push(add_node(&api, seed, 50_000, 0).await);
    }
    let farmer: IpAddr = [198, 51, 100, 9].into();
    let (status, body) = play(&api, 1, farmer, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = session_of(&body);
    let first_node = node_of(&body);
    let (status, body) = reroute(&api, 1, farmer, &first, std::slice::from_ref(&first_node)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let carried = session_of(&body);
    let carried_node = node_of(&body);
    // Carrying the same grant again is a paid request (one unit, one per exclusion): 1 + 2 of 3.
    let (status, body) = reroute(&api, 1, farmer, &first, std::slice::from_ref(&first_node)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = reroute(&api, 1, farmer, &first, std::slice::from_ref(&first_node)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "grant_budget_spent", "{body}");

    // Another key presenting that viewer's grant, or a grant whose node it does not exclude,
    // pays: 2 + 1 units of 3, then nothing is left.
    let (status, body) = reroute(
        &api,
        2,
        farmer,
        &carried,
        std::slice::from_ref(&carried_node),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other = session_of(&body);
    let (status, body) = reroute(&api, 2, farmer, &other, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = play(&api, 2, farmer, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // Excluding nodes it was never sent to still costs their units in a free re-route.
    let (status, body) = play(&api, 3, farmer, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let granted = session_of(&body);
    let sent = node_of(&body);
    let mut exclude: Vec<String> = nodes
        .iter()
        .map(|n| n.node_id().to_string())
        .filter(|n| *n != sent)
        .take(3)
        .collect();
    exclude.push(sent);
    let (status, body) = reroute(&api, 3, farmer, &granted, &exclude).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // A chain of faked fail-overs holds one live grant at a time, and ends after
    // MAX_FREE_REROUTES (8) free re-routes: the next one is paid, and one unit is left.
    let before = now_ms() as i64;
    let (status, body) = play(&api, 4, farmer, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut previous = session_of(&body);
    let mut node = node_of(&body);
    for round in 0..8 {
        let (status, body) = reroute(&api, 4, farmer, &previous, std::slice::from_ref(&node)).await;
        assert_eq!(status, StatusCode::OK, "free re-route {round}: {body}");
        previous = session_of(&body);
        node = node_of(&body);
        assert_eq!(live_sessions(db, before).await, vec![previous.clone()]);
    }
    let (status, body) = reroute(&api, 4, farmer, &previous, std::slice::from_ref(&node)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = play(&api, 4, farmer, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}
