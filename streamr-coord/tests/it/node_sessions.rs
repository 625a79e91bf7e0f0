//! Node sessions: a signed handshake, then heartbeats authenticated by the session's MAC.
//! Every scenario runs against SQLite and PostgreSQL; each attack gets its own 4xx error.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::{SessionHeartbeatRequest, SignedNodeSessionAccept};
use streamr_coord::Coordinator;
use streamr_core::{
    CoordinatorKey, KeyPair, KnownSession, MacHeartbeat, NodeHandshake, NodeHeartbeat, NodeSession,
    NodeSessionId, SessionKey, Signed,
};

on_both_backends!(
    a_session_opened_on_one_replica_authenticates_heartbeats_on_another_and_every_attack_is_refused,
    an_expired_session_is_refused_and_a_new_one_is_accepted,
    a_database_dump_holds_no_usable_session_key_and_altered_rows_are_refused,
);

async fn register(api: &Client, node: &KeyPair, i: usize) {
    let (status, body) = api
        .post(
            "/nodes",
            &registration(node, &format!("http://10.8.{i}.1:8080")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Opens a session for `node`; returns the answer's status and body, and the session when
/// the answer checks out against `coordinator`.
async fn open(
    api: &Client,
    node: &KeyPair,
    coordinator: &CoordinatorKey,
) -> (StatusCode, Value, Option<NodeSession>) {
    let (handshake, open) = NodeHandshake::generate(node, &mut rand::rngs::OsRng, now_ms());
    let (status, body) = api.post("/nodes/sessions", &open).await;
    let session = (status == StatusCode::CREATED).then(|| {
        let accept: SignedNodeSessionAccept =
            serde_json::from_value(body.clone()).expect("accept JSON");
        handshake
            .finish(&accept, coordinator)
            .expect("accept checks out")
    });
    (status, body, session)
}

fn beat(node: &KeyPair, nonce: u64) -> NodeHeartbeat {
    heartbeat(node, nonce, &["show"]).body
}

fn sealed(session: &NodeSession, heartbeat: NodeHeartbeat) -> Value {
    serde_json::to_value(SessionHeartbeatRequest::new(
        session.seal(heartbeat),
        Vec::new(),
    ))
    .expect("JSON")
}

async fn refused(api: &Client, body: &Value, status: StatusCode, code: &str) {
    let (got, answer) = api.post("/nodes/session-heartbeat", body).await;
    assert_eq!(got, status, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

/// Writes the session heartbeats `api`'s coordinator holds in memory.
async fn write_totals(api: &Client) {
    api.coordinator
        .write_heartbeat_totals()
        .await
        .expect("session totals written");
}

async fn last_nonce(api: &Client, node: &KeyPair) -> Value {
    let (_, stored) = api.get(&format!("/nodes/{}", node.node_id())).await;
    stored["last_nonce"].clone()
}

async fn a_session_opened_on_one_replica_authenticates_heartbeats_on_another_and_every_attack_is_refused(
    db: &TestDb,
) {
    // Replicas share the coordinator key (and the database).
    let config = test_config();
    let coordinator = Coordinator::new(config.clone(), db.storage().await);
    let key = coordinator.coordinator_key();
    let first = Client::new(coordinator);
    let second = Client::new(Coordinator::new(config, db.storage().await));
    let (a, b) = (KeyPair::from_seed([31; 32]), KeyPair::from_seed([32; 32]));
    register(&first, &a, 1).await;
    register(&first, &b, 2).await;

    let (status, body, session) = open(&first, &a, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = session.expect("session");
    // Accepted by the replica that did not open it (the session is in the database).
    let first_beat = sealed(&session, beat(&a, 1));
    let (status, body) = second.post("/nodes/session-heartbeat", &first_beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Session heartbeats are written in periodic batches; this one's batch, now.
    write_totals(&second).await;
    assert_eq!(last_nonce(&first, &a).await, json!(1));
    let (_, stored) = first.get(&format!("/nodes/{}", a.node_id())).await;
    assert_eq!(stored["status"], "online");

    // Replayed, on either replica.
    for api in [&first, &second] {
        refused(api, &first_beat, StatusCode::CONFLICT, "replayed_nonce").await;
    }
    // Altered after sealing.
    let mut altered = sealed(&session, beat(&a, 2));
    altered["heartbeat"]["bytes_served"] = json!(1_000_000);
    refused(&first, &altered, StatusCode::UNAUTHORIZED, "bad_mac").await;
    // A MAC made by another session of the same node, under this session's id.
    let (_, _, other) = open(&second, &a, &key).await;
    let other = other.expect("second session");
    let mut crossed = sealed(&other, beat(&a, 2));
    crossed["session_id"] = json!(session.id().to_string());
    refused(&first, &crossed, StatusCode::UNAUTHORIZED, "bad_mac").await;
    // Node A's session used for node B.
    let for_b = sealed(&session, beat(&b, 2));
    refused(&second, &for_b, StatusCode::FORBIDDEN, "wrong_session_node").await;
    assert_eq!(last_nonce(&first, &b).await, json!(-1));
    // A session id the coordinator never opened.
    let mut unknown = sealed(&session, beat(&a, 2));
    unknown["session_id"] = json!(NodeSessionId::from_bytes([9; 16]).to_string());
    refused(
        &second,
        &unknown,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;
    // A stale heartbeat under a good session.
    let mut stale = beat(&a, 2);
    stale.timestamp_ms -= 120_000;
    refused(
        &first,
        &sealed(&session, stale),
        StatusCode::UNAUTHORIZED,
        "clock_skew",
    )
    .await;

    // Forged opens: signed by another key in A's name, and one for a node never registered.
    let impostor = KeyPair::from_seed([33; 32]);
    let (_, mut forged) = NodeHandshake::generate(&impostor, &mut rand::rngs::OsRng, now_ms());
    forged.body.node_id = a.node_id();
    let (status, body) = first.post("/nodes/sessions", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature");
    let (status, body, _) = open(&first, &impostor, &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_node");
    // A stale open.
    let (_, stale_open) = NodeHandshake::generate(&a, &mut rand::rngs::OsRng, now_ms() - 120_000);
    let (status, body) = first.post("/nodes/sessions", &stale_open).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "clock_skew");

    // Both sessions keep working, in nonce order, and signed heartbeats stay accepted.
    let (status, body) = first
        .post("/nodes/session-heartbeat", &sealed(&other, beat(&a, 2)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = first
        .post(
            "/nodes/heartbeat",
            &json!({ "heartbeat": heartbeat(&a, 3, &[]) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = second
        .post("/nodes/session-heartbeat", &sealed(&session, beat(&a, 4)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    write_totals(&first).await;
    write_totals(&second).await;
    assert_eq!(last_nonce(&second, &a).await, json!(4));
    let signed_replay = json!({ "heartbeat": Signed::sign(beat(&a, 4), &a) });
    let (status, body) = first.post("/nodes/heartbeat", &signed_replay).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn an_expired_session_is_refused_and_a_new_one_is_accepted(db: &TestDb) {
    let normal_config = test_config();
    let mut config = normal_config.clone();
    config.node_session_lifetime = Duration::ZERO;
    let short = Coordinator::new(config, db.storage().await);
    let short_key = short.coordinator_key();
    let short = Client::new(short);
    let node = KeyPair::from_seed([34; 32]);
    register(&short, &node, 4).await;
    let (status, body, session) = open(&short, &node, &short_key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expired = sealed(&session.expect("session"), beat(&node, 1));
    refused(
        &short,
        &expired,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    )
    .await;
    // Another replica (sharing the coordinator key) reads the same expiry from the database.
    let normal = Coordinator::new(normal_config, db.storage().await);
    let key = normal.coordinator_key();
    let normal = Client::new(normal);
    refused(
        &normal,
        &expired,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    )
    .await;
    assert_eq!(last_nonce(&normal, &node).await, json!(-1));
    // The node opens a new session and the same heartbeat goes through: nothing lost.
    let (status, body, session) = open(&normal, &node, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = normal
        .post(
            "/nodes/session-heartbeat",
            &sealed(&session.expect("session"), beat(&node, 1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    write_totals(&normal).await;
    assert_eq!(last_nonce(&normal, &node).await, json!(1));
}

/// A replica that shares the database and `config` (so the coordinator key), with nothing
/// cached.
async fn replica(config: &streamr_coord::CoordConfig, db: &TestDb) -> Client {
    Client::new(Coordinator::new(config.clone(), db.storage().await))
}

/// Every row of `node_sessions`, each column as text, read straight from the database (what a
/// backup, a read replica or a leaked dump holds).
async fn dump_node_sessions(db: &TestDb) -> Vec<[String; 4]> {
    const DUMP: &str = "SELECT id, node_id, sealed_key, CAST(expires_at_ms AS TEXT) \
                        FROM node_sessions ORDER BY id";
    let rows: Vec<(String, String, String, String)> = match db {
        TestDb::Sqlite(..) => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.expect("sqlite");
            sqlx::query_as(DUMP).fetch_all(&pool).await.expect("dump")
        }
        TestDb::Postgres(..) => {
            let pool = sqlx::PgPool::connect(db.url()).await.expect("postgres");
            sqlx::query_as(DUMP).fetch_all(&pool).await.expect("dump")
        }
    };
    rows.into_iter().map(|(a, b, c, d)| [a, b, c, d]).collect()
}

/// Runs one statement straight on the database (an attacker who can write to it).
async fn execute(db: &TestDb, statement: &str) {
    let affected = match db {
        TestDb::Sqlite(..) => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.expect("sqlite");
            sqlx::query(statement)
                .execute(&pool)
                .await
                .expect("statement")
                .rows_affected()
        }
        TestDb::Postgres(..) => {
            let pool = sqlx::PgPool::connect(db.url()).await.expect("postgres");
            sqlx::query(statement)
                .execute(&pool)
                .await
                .expect("statement")
                .rows_affected()
        }
    };
    assert_eq!(affected, 1, "{statement}");
}

/// Every 32-byte string a dump's text holds: each window of its bytes, and of the bytes its
/// hex (at either alignment) decodes to.
fn key_candidates(text: &str) -> Vec<[u8; 32]> {
    let mut sources = vec![text.as_bytes().to_vec()];
    for start in 0..2.min(text.len()) {
        let hex_text = &text[start..];
        let even = &hex_text[..hex_text.len() - hex_text.len() % 2];
        if let Ok(bytes) = hex::decode(even) {
            sources.push(bytes);
        }
    }
    sources
        .iter()
        .flat_map(|bytes| bytes.windows(32))
        .map(|window| window.try_into().expect("32 bytes"))
        .collect()
}

async fn a_database_dump_holds_no_usable_session_key_and_altered_rows_are_refused(db: &TestDb) {
    let config = test_config();
    let opener = Coordinator::new(config.clone(), db.storage().await);
    let key = opener.coordinator_key();
    let opener = Client::new(opener);
    let (a, b) = (KeyPair::from_seed([35; 32]), KeyPair::from_seed([36; 32]));
    register(&opener, &a, 5).await;
    register(&opener, &b, 6).await;
    let (_, _, session_a) = open(&opener, &a, &key).await;
    let (_, _, session_b) = open(&opener, &b, &key).await;
    let (session_a, session_b) = (session_a.expect("session"), session_b.expect("session"));

    // No string in the dump verifies a MAC of the node's heartbeats: not raw, not hex.
    let dump = dump_node_sessions(db).await;
    assert_eq!(dump.len(), 2);
    let beat_a: MacHeartbeat = session_a.seal(beat(&a, 1));
    let now = now_ms();
    let mut tried = 0;
    for candidate in dump.iter().flatten().flat_map(|text| key_candidates(text)) {
        tried += 1;
        let stolen = KnownSession {
            node_id: a.node_id(),
            key: SessionKey::from_bytes(candidate),
            expires_at_ms: u64::MAX,
        };
        assert!(
            beat_a.verify(&stolen, now).is_err(),
            "a usable key in the dump"
        );
    }
    assert!(tried > 100, "the dump was searched ({tried} candidates)");

    // Yet a replica that did not open the session opens its sealed key and accepts it.
    let (status, body) = replica(&config, db)
        .await
        .post("/nodes/session-heartbeat", &sealed(&session_a, beat(&a, 1)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A replica under another coordinator key cannot open it: the node is told to re-open.
    let mut stranger = test_config();
    stranger.coordinator_key = KeyPair::from_seed([37; 32]);
    let stranger = Client::new(Coordinator::new(stranger, db.storage().await));
    refused(
        &stranger,
        &sealed(&session_a, beat(&a, 2)),
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;

    // Rows altered in the database are refused by a replica reading them afresh.
    let (id_a, id_b) = (session_a.id().to_string(), session_b.id().to_string());
    // A longer life.
    execute(
        db,
        &format!(
            "UPDATE node_sessions SET expires_at_ms = expires_at_ms + 86400000 WHERE id = '{id_a}'"
        ),
    )
    .await;
    refused(
        &replica(&config, db).await,
        &sealed(&session_a, beat(&a, 2)),
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;
    // Node B's sealed key moved into node A's row.
    let row = |id: &str| dump.iter().find(|row| row[0] == id).expect("row").clone();
    let ([.., expires_a], [.., sealed_b, _]) = (row(&id_a), row(&id_b));
    execute(
        db,
        &format!(
            "UPDATE node_sessions SET sealed_key = '{sealed_b}', expires_at_ms = {expires_a} \
             WHERE id = '{id_a}'"
        ),
    )
    .await;
    let mut moved = sealed(&session_b, beat(&a, 2));
    moved["session_id"] = json!(id_a);
    refused(
        &replica(&config, db).await,
        &moved,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;
    // Node B's row handed to node A (B's own sealed key, A named as its node).
    execute(
        db,
        &format!(
            "UPDATE node_sessions SET node_id = '{}' WHERE id = '{id_b}'",
            a.node_id()
        ),
    )
    .await;
    refused(
        &replica(&config, db).await,
        &sealed(&session_b, beat(&a, 2)),
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    )
    .await;
    // The node opens a new session and goes on: nothing lost.
    let (status, body, renewed) = open(&opener, &a, &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let other_replica = replica(&config, db).await;
    let (status, body) = other_replica
        .post(
            "/nodes/session-heartbeat",
            &sealed(&renewed.expect("session"), beat(&a, 2)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    write_totals(&other_replica).await;
    assert_eq!(last_nonce(&opener, &a).await, json!(2));
}
