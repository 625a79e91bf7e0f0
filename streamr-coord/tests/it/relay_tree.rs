//! The relay tree through the API (`POST /streams/{id}/upstream`), on SQLite and PostgreSQL:
//! the origin feeds at most k relays, the others hang below with bounded fan-out, a relay
//! that reports its parent failed (or whose parent stops sending heartbeats) is re-parented
//! with its subtree, every answer carries grants that name the relay as the viewer, a
//! second replica on the same database sees the same tree, and a request replayed to any
//! replica is refused.

use crate::common;

use std::collections::HashMap;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use streamr_coord::wire::NodeRegistration;
use streamr_coord::wire::UpstreamRequest;
use streamr_coord::{CoordConfig, Coordinator};
use streamr_core::{KeyPair, NodeHeartbeat, NodeId, RelayUpstream, Signed, StreamId};

on_both_backends!(
    relays_form_a_bounded_tree_and_move_when_their_parent_fails,
    a_silent_parent_loses_its_children,
    requests_must_be_signed_by_a_registered_node,
    a_request_replayed_to_another_replica_is_refused,
    request_times_are_accepted_once_across_replicas_and_forgotten_when_old,
    a_lying_child_cannot_move_its_siblings,
    a_parent_whose_heartbeat_lacks_the_stream_loses_its_children_on_one_report,
    a_relays_chain_and_its_parents_children_are_read_alone,
    a_relay_is_recorded_where_its_heartbeat_says_it_pulls_from,
    two_children_of_one_operator_cannot_evict_their_parent,
    a_report_is_confirmed_by_the_coordinators_own_probe_of_the_parent,
    a_group_of_two_slash_24s_and_two_operators_cannot_evict_a_parent_seen_serving,
    a_parent_up_but_not_serving_the_stream_loses_its_children_on_one_report,
    a_heartbeat_naming_too_many_upstreams_is_refused,
    a_returning_relay_rejoins_where_there_is_room_without_evicting_the_relay_in_its_slot,
    a_parent_whose_childs_receipts_show_it_unfed_loses_the_child_and_takes_no_new_one,
);

const K: usize = 2;

fn config() -> CoordConfig {
    config_k(K)
}

fn config_k(k: usize) -> CoordConfig {
    let mut config = test_config();
    config.relay_fanout = k;
    config.coordinator_key = KeyPair::from_seed([5; 32]);
    config
}

fn node(seed: u8) -> KeyPair {
    KeyPair::from_seed([seed; 32])
}

async fn heartbeat(api: &Client, node: &KeyPair, nonce: u64, age_ms: u64) {
    heartbeat_carrying(api, node, nonce, age_ms, &["show"]).await;
}

async fn heartbeat_carrying(
    api: &Client,
    node: &KeyPair,
    nonce: u64,
    age_ms: u64,
    streams: &[&str],
) {
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms() - age_ms,
            nonce,
            streams: streams
                .iter()
                .map(|s| StreamId::new(*s).expect("stream id"))
                .collect(),
            viewers: 0,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        },
        node,
    );
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": heartbeat }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An origin (seed 1) with stream `show` and `relays` registered relays (seeds 10..).
async fn setup(db: &TestDb, relays: u8) -> (Client, KeyPair, Vec<KeyPair>) {
    setup_k(db, relays, K).await
}

/// [`setup`] with the origin and every relay feeding at most `k`.
async fn setup_k(db: &TestDb, relays: u8, k: usize) -> (Client, KeyPair, Vec<KeyPair>) {
    setup_with(db, relays, config_k(k)).await
}

/// [`setup`] with `config`. Every node is in its own /24 with its own operator.
async fn setup_with(
    db: &TestDb,
    relays: u8,
    config: CoordConfig,
) -> (Client, KeyPair, Vec<KeyPair>) {
    let api = Client::new(Coordinator::new(config, db.storage().await));
    let origin = node(1);
    let mut relay_keys = Vec::new();
    for (index, key) in std::iter::once(&origin)
        .chain((0..relays).map(|i| node(10 + i)).collect::<Vec<_>>().iter())
        .enumerate()
    {
        let url = format!("http://127.0.{}.1:8080", index + 1);
        let (status, body) = api.post("/nodes", &registration(key, &url)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        heartbeat(&api, key, 1, 0).await;
        if index > 0 {
            relay_keys.push(key.clone());
        }
    }
    let (status, body) = api
        .post_admin(
            "/streams",
            &json!({ "id": "show", "title": "t", "origin_node": origin.node_id() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (api, origin, relay_keys)
}

/// A request time after every earlier one (the coordinator refuses a request time it saw).
fn fresh_ms() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |last| Some((last + 1).max(now)),
        )
        .unwrap_or(0);
    (previous + 1).max(now)
}

async fn ask(api: &Client, relay: &KeyPair, failed: &[NodeId]) -> (StatusCode, Value) {
    let request = UpstreamRequest {
        node_id: relay.node_id(),
        stream_id: StreamId::new("show").expect("stream id"),
        timestamp_ms: fresh_ms(),
        failed: failed.to_vec(),
    };
    api.post("/streams/show/upstream", &Signed::sign(request, relay))
        .await
}

/// The relay's chain of node ids (parent first), up to the origin (seed 1). The answer names
/// the origin only to its own children: a deeper relay is answered its ancestors below it.
async fn chain(api: &Client, relay: &KeyPair, failed: &[NodeId]) -> Vec<String> {
    let (status, body) = ask(api, relay, failed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let upstreams = body["upstreams"].as_array().expect("upstreams");
    let depth = body["depth"].as_u64().expect("depth");
    let origin = node(1).node_id();
    let names_origin = upstreams.iter().any(|u| u["node_id"] == json!(origin));
    if depth == 1 {
        assert_eq!(upstreams.len(), 1, "{body}");
        assert!(
            names_origin,
            "a tier-1 relay is answered the origin: {body}"
        );
    } else {
        assert_eq!(upstreams.len() as u64 + 1, depth, "{body}");
        assert!(
            !names_origin,
            "a deeper relay is not answered the origin: {body}"
        );
    }
    for upstream in upstreams {
        // Each carries a grant naming the relay as the viewer of that node.
        assert_eq!(upstream["grant"]["body"]["viewer"], json!(relay.node_id()));
        assert_eq!(upstream["grant"]["body"]["node_id"], upstream["node_id"]);
        assert!(upstream["query"]
            .as_str()
            .is_some_and(|q| q.starts_with("grant=")));
        assert_eq!(upstream["rtmp_base"], "rtmp://127.0.0.1:1935");
    }
    upstreams
        .iter()
        .map(|u| u["node_id"].as_str().expect("id").to_owned())
        .chain((depth > 1).then(|| origin.to_string()))
        .collect()
}

async fn relays_form_a_bounded_tree_and_move_when_their_parent_fails(db: &TestDb) {
    let (api, origin, relays) = setup(db, 10).await;
    let origin_id = origin.node_id().to_string();
    let mut chains: HashMap<String, Vec<String>> = HashMap::new();
    for relay in &relays {
        let chain = chain(&api, relay, &[]).await;
        assert_eq!(chain.last(), Some(&origin_id), "the origin is the root");
        chains.insert(relay.node_id().to_string(), chain);
    }
    let parent_counts = |chains: &HashMap<String, Vec<String>>| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for chain in chains.values() {
            *counts.entry(chain[0].clone()).or_default() += 1;
        }
        counts
    };
    let counts = parent_counts(&chains);
    assert_eq!(
        counts.get(&origin_id),
        Some(&K),
        "the origin feeds k relays"
    );
    assert!(counts.values().all(|c| *c <= K), "{counts:?}");
    // 2 + 4 + 8 ≥ 10: three tiers.
    let depth = chains.values().map(Vec::len).max();
    assert_eq!(depth, Some(3));
    // Asking again hands out the same grants (no new session at every ask).
    let grants = |body: &Value| -> Vec<Value> {
        body["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .map(|u| u["grant"]["body"]["session_id"].clone())
            .collect()
    };
    let (_, first) = ask(&api, &relays[5], &[]).await;
    let (_, again) = ask(&api, &relays[5], &[]).await;
    assert_eq!(grants(&first), grants(&again));
    // Asking again keeps the place.
    for relay in &relays {
        assert_eq!(
            chain(&api, relay, &[]).await,
            chains[&relay.node_id().to_string()]
        );
    }

    // A tier-2 relay reports its parent failed: it moves elsewhere, and its children's
    // chains follow it (the subtree moves along).
    let (mover, old_chain) = chains
        .iter()
        .find(|(id, chain)| {
            chain.len() == 2 && chains.values().any(|c| c.len() == 3 && &c[0] == *id)
        })
        .map(|(id, chain)| (id.clone(), chain.clone()))
        .expect("a tier-2 relay with children");
    let mover_key = relays
        .iter()
        .find(|r| r.node_id().to_string() == mover)
        .expect("key");
    let failed: NodeId = old_chain[0].parse().expect("node id");
    let new_chain = chain(&api, mover_key, &[failed]).await;
    assert_ne!(new_chain[0], old_chain[0]);
    assert!(!new_chain.contains(&old_chain[0]));
    let child = chains
        .iter()
        .find(|(_, c)| c.len() == 3 && c[0] == mover)
        .map(|(id, _)| id.clone())
        .expect("child");
    let child_key = relays
        .iter()
        .find(|r| r.node_id().to_string() == child)
        .expect("key");
    let child_chain = chain(&api, child_key, &[]).await;
    assert_eq!(child_chain[0], mover, "the child keeps its parent");
    assert_eq!(child_chain[1..], new_chain[..], "and follows it");

    // A second replica on the same database sees the same tree.
    let replica = Client::new(Coordinator::new(config(), db.storage().await));
    assert_eq!(chain(&replica, child_key, &[]).await, child_chain);
}

async fn a_silent_parent_loses_its_children(db: &TestDb) {
    let (api, origin, relays) = setup(db, 4).await;
    let mut chains = Vec::new();
    for relay in &relays {
        chains.push(chain(&api, relay, &[]).await);
    }
    // Relays 0 and 1 fill the origin; 2 and 3 hang below them.
    let deep = chains
        .iter()
        .position(|c| c.len() == 2)
        .expect("a tier-2 relay");
    let parent = chains[deep][0].clone();
    // Its parent's heartbeat gets old (older than the relay liveness): the others keep
    // sending theirs.
    for (index, relay) in relays.iter().enumerate() {
        let age = if relay.node_id().to_string() == parent {
            20_000
        } else {
            0
        };
        heartbeat(&api, relay, 2 + index as u64, age).await;
    }
    let moved = chain(&api, &relays[deep], &[]).await;
    assert!(!moved.contains(&parent), "{moved:?}");
    assert_eq!(moved.last(), Some(&origin.node_id().to_string()));
}

async fn requests_must_be_signed_by_a_registered_node(db: &TestDb) {
    let (api, origin, relays) = setup(db, 1).await;
    // Signed by another key than the one it names.
    let request = UpstreamRequest {
        node_id: relays[0].node_id(),
        stream_id: StreamId::new("show").expect("stream id"),
        timestamp_ms: now_ms(),
        failed: Vec::new(),
    };
    let (status, body) = api
        .post("/streams/show/upstream", &Signed::sign(request, &node(99)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // An unregistered node.
    let (status, body) = ask(&api, &node(98), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The origin does not pull.
    let (status, body) = ask(&api, &origin, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A captured request sent again (to move the relay off its parent by replaying a report
    // that it failed, or to harvest its grants) is refused; the relay's next request is not.
    let request = Signed::sign(
        UpstreamRequest {
            node_id: relays[0].node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            timestamp_ms: fresh_ms(),
            failed: vec![origin.node_id()],
        },
        &relays[0],
    );
    let (status, body) = api.post("/streams/show/upstream", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.post("/streams/show/upstream", &request).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("replayed"), "{body}");
    let (status, body) = ask(&api, &relays[0], &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_request_replayed_to_another_replica_is_refused(db: &TestDb) {
    let (api, origin, relays) = setup(db, 1).await;
    let replica = Client::new(Coordinator::new(config(), db.storage().await));
    let request = Signed::sign(
        UpstreamRequest {
            node_id: relays[0].node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            timestamp_ms: fresh_ms(),
            failed: vec![origin.node_id()],
        },
        &relays[0],
    );
    let (status, body) = api.post("/streams/show/upstream", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = replica.post("/streams/show/upstream", &request).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("replayed"), "{body}");
    // A restarted coordinator remembers it too.
    let restarted = Client::new(Coordinator::new(config(), db.storage().await));
    let (status, body) = restarted.post("/streams/show/upstream", &request).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The same request sent to both replicas at once: one of them takes it.
    let request = Signed::sign(
        UpstreamRequest {
            node_id: relays[0].node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            timestamp_ms: fresh_ms(),
            failed: Vec::new(),
        },
        &relays[0],
    );
    let (first, second) = tokio::join!(
        api.post("/streams/show/upstream", &request),
        replica.post("/streams/show/upstream", &request)
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{first:?} {second:?}"
    );
}

async fn request_times_are_accepted_once_across_replicas_and_forgotten_when_old(db: &TestDb) {
    let (one, two) = (db.storage().await, db.storage().await);
    assert!(one
        .accept_upstream_request("relay", "show", 1_000)
        .await
        .expect("accepts"));
    // Not after the newest: refused on either replica.
    for storage in [&one, &two] {
        for time in [999, 1_000] {
            assert!(!storage
                .accept_upstream_request("relay", "show", time)
                .await
                .expect("answers"));
        }
    }
    // Another stream or relay has its own time.
    assert!(two
        .accept_upstream_request("relay", "other", 1_000)
        .await
        .expect("accepts"));
    assert!(two
        .accept_upstream_request("other", "show", 1_000)
        .await
        .expect("accepts"));
    // Both replicas accept the same newer time at once: exactly one wins, every round.
    for time in 1_001..1_021 {
        let (a, b) = tokio::join!(
            one.accept_upstream_request("relay", "show", time),
            two.accept_upstream_request("relay", "show", time)
        );
        let wins = [a.expect("answers"), b.expect("answers")];
        assert_eq!(
            wins.iter().filter(|won| **won).count(),
            1,
            "at {time}: {wins:?}"
        );
    }
    // Old times are forgotten; after that the same time is new again (the skew check
    // refuses such a request before its time is looked at).
    assert_eq!(
        one.forget_upstream_requests(1_010).await.expect("forgets"),
        2
    );
    assert!(one
        .accept_upstream_request("other", "show", 1_000)
        .await
        .expect("accepts"));
    assert!(!one
        .accept_upstream_request("relay", "show", 1_020)
        .await
        .expect("answers"));
}

/// Each relay's stored parent, read from the database (no relay asks).
async fn stored_parents(db: &TestDb) -> HashMap<String, String> {
    let tree = db.storage().await.relay_tree("show").await.expect("tree");
    tree.into_iter().map(|a| (a.node_id, a.parent_id)).collect()
}

/// With k = 3 and six relays: a tier-1 relay with three children, and those children.
async fn family(db: &TestDb) -> (Client, Vec<KeyPair>, KeyPair, Vec<KeyPair>) {
    family_with(db, config_k(3)).await
}

/// [`family`] with `config` (k = 3).
async fn family_with(
    db: &TestDb,
    config: CoordConfig,
) -> (Client, Vec<KeyPair>, KeyPair, Vec<KeyPair>) {
    let (api, _origin, relays) = setup_with(db, 6, config).await;
    for relay in &relays {
        chain(&api, relay, &[]).await;
    }
    let parents = stored_parents(db).await;
    let parent = relays
        .iter()
        .find(|r| {
            let id = r.node_id().to_string();
            parents.values().filter(|p| **p == id).count() == 3
        })
        .cloned()
        .unwrap_or_else(|| panic!("a relay with three children: {parents:?}"));
    let children: Vec<KeyPair> = relays
        .iter()
        .filter(|r| parents.get(&r.node_id().to_string()) == Some(&parent.node_id().to_string()))
        .cloned()
        .collect();
    (api, relays, parent, children)
}

async fn a_lying_child_cannot_move_its_siblings(db: &TestDb) {
    let (api, _relays, parent, children) = family(db).await;
    let parent_id = parent.node_id().to_string();
    let (liar, siblings) = children.split_first().expect("children");
    // The liar says its healthy parent failed, twice: it moves, and only it.
    for _ in 0..2 {
        let moved = chain(&api, liar, &[parent.node_id()]).await;
        assert!(!moved.contains(&parent_id), "{moved:?}");
        let parents = stored_parents(db).await;
        for sibling in siblings {
            assert_eq!(parents[&sibling.node_id().to_string()], parent_id);
            assert_eq!(chain(&api, sibling, &[]).await[0], parent_id);
        }
    }
    // Its next ask, reporting nothing, does not send it back below the parent it reported.
    assert!(!chain(&api, liar, &[]).await.contains(&parent_id));
    // A second child reporting the same parent corroborates it: the third child is
    // re-homed with it, without asking.
    let (second, third) = (&siblings[0], &siblings[1]);
    let moved = chain(&api, second, &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    let parents = stored_parents(db).await;
    assert_ne!(
        parents[&third.node_id().to_string()],
        parent_id,
        "{parents:?}"
    );
}

async fn a_parent_whose_heartbeat_lacks_the_stream_loses_its_children_on_one_report(db: &TestDb) {
    let (api, _relays, parent, children) = family(db).await;
    let parent_id = parent.node_id().to_string();
    // The parent's own heartbeat, after it took its place, no longer lists the stream.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    heartbeat_carrying(&api, &parent, 2, 0, &[]).await;
    let moved = chain(&api, &children[0], &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    let parents = stored_parents(db).await;
    for child in &children {
        assert_ne!(
            parents[&child.node_id().to_string()],
            parent_id,
            "every child left: {parents:?}"
        );
    }
}

async fn a_relays_chain_and_its_parents_children_are_read_alone(db: &TestDb) {
    let (api, origin, relays) = setup(db, 10).await;
    for relay in &relays {
        chain(&api, relay, &[]).await;
    }
    let storage = db.storage().await;
    let tree = storage.relay_tree("show").await.expect("tree");
    let parent_of: HashMap<&str, &str> = tree
        .iter()
        .map(|a| (a.node_id.as_str(), a.parent_id.as_str()))
        .collect();
    let origin_id = origin.node_id().to_string();
    for relay in &relays {
        let id = relay.node_id().to_string();
        // The rows from the relay up to the origin's child, as walking the whole tree gives.
        let mut walked = Vec::new();
        let mut current = id.as_str();
        while let Some(parent) = parent_of.get(current) {
            walked.push((current.to_owned(), (*parent).to_owned()));
            if *parent == origin_id {
                break;
            }
            current = parent;
        }
        let rows = storage.relay_chain("show", &id, 64).await.expect("chain");
        let read: Vec<(String, String)> =
            rows.into_iter().map(|a| (a.node_id, a.parent_id)).collect();
        assert_eq!(read, walked);
        // Bounded: only as many rows as asked for.
        assert_eq!(
            storage
                .relay_chain("show", &id, 1)
                .await
                .expect("chain")
                .len(),
            1
        );
        // The parent's children, oldest first.
        let parent = parent_of[id.as_str()];
        let mut expected: Vec<_> = tree.iter().filter(|a| a.parent_id == parent).collect();
        expected
            .sort_by(|a, b| (a.assigned_at_ms, &a.node_id).cmp(&(b.assigned_at_ms, &b.node_id)));
        let children = storage
            .relay_children("show", parent)
            .await
            .expect("children");
        assert_eq!(children.iter().collect::<Vec<_>>(), expected);
        // And the answer names exactly that chain.
        let answered = chain(&api, relay, &[]).await;
        assert_eq!(
            answered,
            walked
                .iter()
                .map(|(_, parent)| parent.clone())
                .collect::<Vec<_>>()
        );
    }
    assert!(storage
        .relay_chain("show", "nobody", 64)
        .await
        .expect("chain")
        .is_empty());
}

/// A heartbeat of `node` sent `ahead_ms` in the future (within the clock skew) saying it pulls
/// `show` from `upstream`.
async fn heartbeat_pulling_from(api: &Client, node: &KeyPair, nonce: u64, upstream: NodeId) {
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            // Past the grace after its placement (a third of the 15 s relay liveness).
            timestamp_ms: now_ms() + 6_000,
            nonce,
            streams: vec![StreamId::new("show").expect("stream id")],
            viewers: 0,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: vec![RelayUpstream {
                stream: StreamId::new("show").expect("stream id"),
                upstream,
            }],
            claim_totals: None,
        },
        node,
    );
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": heartbeat }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A node's heartbeat is network input: one listing more upstreams (or streams) than any
/// friend node relays gets a 400 and changes nothing, however the node signs it.
async fn a_heartbeat_naming_too_many_upstreams_is_refused(db: &TestDb) {
    let (api, _origin, relays) = setup(db, 1).await;
    let node = &relays[0];
    let upstream = KeyPair::from_seed([99; 32]).node_id();
    let heartbeat = Signed::sign(
        NodeHeartbeat {
            node_id: node.node_id(),
            timestamp_ms: now_ms(),
            nonce: 10,
            streams: vec![StreamId::new("show").expect("stream id")],
            viewers: 0,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: (0..1025)
                .map(|i| RelayUpstream {
                    stream: StreamId::new(format!("s{i}")).expect("stream id"),
                    upstream,
                })
                .collect(),
            claim_totals: None,
        },
        node,
    );
    let (status, body) = api
        .post("/nodes/heartbeat", &json!({ "heartbeat": heartbeat }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("heartbeat.upstreams"), "{body}");
    // The node's next honest heartbeat (same nonce) is still taken: nothing was claimed.
    heartbeat_carrying(&api, node, 10, 0, &["show"]).await;
}

async fn a_relay_is_recorded_where_its_heartbeat_says_it_pulls_from(db: &TestDb) {
    // k = 3, six relays: a tier-1 parent with three children, the other two tier-1 relays
    // with room.
    let (api, relays, parent, children) = family(db).await;
    let parent_id = parent.node_id().to_string();
    let mover = &children[0];
    let mover_id = mover.node_id().to_string();
    let elsewhere = relays
        .iter()
        .find(|r| {
            let id = r.node_id().to_string();
            id != parent_id && !children.iter().any(|c| c.node_id() == r.node_id())
        })
        .expect("another tier-1 relay")
        .clone();
    let elsewhere_id = elsewhere.node_id().to_string();
    // A decision moved the mover below `elsewhere`, but its answer never arrived (the ask
    // timed out): the relay still pulls from its old parent.
    let storage = db.storage().await;
    let reports = streamr_coord::storage::RelayReports {
        reporter_id: mover_id.clone(),
        failed: Vec::new(),
        since_ms: 0,
    };
    let (moved, to) = (mover_id.clone(), elsewhere_id.clone());
    storage
        .assign_relay_parents("show", now_ms() as i64, &reports, &move |_, _| {
            vec![(moved.clone(), to.clone())]
        })
        .await
        .expect("move");
    assert_eq!(stored_parents(db).await[&mover_id], elsewhere_id);
    // A heartbeat naming a node it was never granted is not believed.
    let stranger = children[1].node_id();
    heartbeat_pulling_from(&api, mover, 10, stranger).await;
    let asked = chain(&api, mover, &[]).await;
    assert_eq!(asked[0], elsewhere_id, "{asked:?}");
    // Its heartbeat says where it really pulls from: it is recorded there, and that is
    // where the coordinator leaves it (its old slot is still free), so its next answer
    // matches what it does.
    heartbeat_pulling_from(&api, mover, 11, parent.node_id()).await;
    let asked = chain(&api, mover, &[]).await;
    assert_eq!(asked[0], parent_id, "{asked:?}");
    let parents = stored_parents(db).await;
    assert_eq!(parents[&mover_id], parent_id);
    // The budgets count real children: the parent feeds its three, `elsewhere` none of them.
    assert_eq!(parents.values().filter(|p| **p == parent_id).count(), 3);
}

/// Re-registers `node` under `operator` at `http_url`.
async fn reregister(api: &Client, node: &KeyPair, operator: &str, http_url: &str) {
    let registration = Signed::sign(
        NodeRegistration {
            operator_membership: None,
            node_id: node.node_id(),
            payout_address: format!("payout-{}", node.node_id()),
            operator: operator.into(),
            rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
            http_url: http_url.into(),
            capacity_kbps: 50_000,
            timestamp_ms: now_ms(),
        },
        node,
    );
    let (status, body) = api.post("/nodes", &registration).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The attack: one operator runs two relays that the tree places below an honest parent;
/// both report the parent failed, so that it loses its children (and what it earns relaying
/// to them). Two reports corroborate only from distinct /24s and operators.
async fn two_children_of_one_operator_cannot_evict_their_parent(db: &TestDb) {
    let (api, _relays, parent, children) = family(db).await;
    let parent_id = parent.node_id().to_string();
    let (first, second, honest) = (&children[0], &children[1], &children[2]);
    // Two /24s, one operator.
    reregister(&api, first, "mallory", "http://198.51.100.7:8080").await;
    reregister(&api, second, "mallory", "http://203.0.113.9:8080").await;
    for (nonce, node) in [(5, first), (5, second)] {
        heartbeat(&api, node, nonce, 0).await;
    }
    for colluder in [first, second] {
        let moved = chain(&api, colluder, &[parent.node_id()]).await;
        assert!(!moved.contains(&parent_id), "{moved:?}");
    }
    let parents = stored_parents(db).await;
    assert_eq!(
        parents[&honest.node_id().to_string()],
        parent_id,
        "the honest child stays: {parents:?}"
    );
    assert_eq!(chain(&api, honest, &[]).await[0], parent_id);
    // The honest child (its own /24 and operator) reporting it too corroborates it.
    let moved = chain(&api, honest, &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
}

/// A tiny node answering `GET /healthz`; returns its base URL.
async fn healthy_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

async fn a_report_is_confirmed_by_the_coordinators_own_probe_of_the_parent(db: &TestDb) {
    let mut config = config_k(3);
    config.relay_probe_timeout = Some(std::time::Duration::from_millis(500));
    let (api, _relays, parent, children) = family_with(db, config).await;
    let parent_id = parent.node_id().to_string();
    // The parent answers the coordinator: one report moves only its reporter.
    reregister(&api, &parent, "operator-parent", &healthy_node().await).await;
    heartbeat(&api, &parent, 5, 0).await;
    let moved = chain(&api, &children[0], &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    let parents = stored_parents(db).await;
    for sibling in &children[1..] {
        assert_eq!(parents[&sibling.node_id().to_string()], parent_id);
    }
    // It stops answering (its address refuses connections): the next single report is
    // confirmed by the coordinator's own probe, and every child leaves it at once.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    reregister(&api, &parent, "operator-parent", &dead).await;
    heartbeat(&api, &parent, 6, 0).await;
    let moved = chain(&api, &children[1], &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    let parents = stored_parents(db).await;
    for child in &children {
        assert_ne!(
            parents[&child.node_id().to_string()],
            parent_id,
            "{parents:?}"
        );
    }
}

/// A tiny node answering `GET /healthz?stream=…` as a node does: `serving` is `serving` for the
/// stream `show`, false for any other. Returns its base URL.
async fn node_serving(serving: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app =
        axum::Router::new().route(
            "/healthz",
            axum::routing::get(
                move |axum::extract::Query(query): axum::extract::Query<
                    HashMap<String, String>,
                >| async move {
                    let mut body = json!({ "status": "ok" });
                    if let Some(stream) = query.get("stream") {
                        body["stream"] = json!(stream);
                        body["serving"] = json!(serving && stream == "show");
                    }
                    axum::Json(body)
                },
            ),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

/// The attack the /24-and-operator rule left open: a group holding two /24s and two
/// operators gets two relays below one honest parent and both report it failed. The
/// coordinator checks the parent itself, sees it serving the stream, and believes neither:
/// each reporter moves alone, the honest sibling keeps its parent.
async fn a_group_of_two_slash_24s_and_two_operators_cannot_evict_a_parent_seen_serving(
    db: &TestDb,
) {
    let mut config = config_k(3);
    config.relay_probe_timeout = Some(std::time::Duration::from_millis(500));
    let (api, _relays, parent, children) = family_with(db, config).await;
    let parent_id = parent.node_id().to_string();
    reregister(&api, &parent, "operator-parent", &node_serving(true).await).await;
    heartbeat(&api, &parent, 5, 0).await;
    let (first, second, honest) = (&children[0], &children[1], &children[2]);
    // Two /24s and two operators: what the rule of distinct homes accepts.
    reregister(&api, first, "mallory", "http://198.51.100.7:8080").await;
    reregister(&api, second, "trudy", "http://203.0.113.9:8080").await;
    for node in [first, second] {
        heartbeat(&api, node, 5, 0).await;
    }
    for colluder in [first, second] {
        let moved = chain(&api, colluder, &[parent.node_id()]).await;
        assert!(!moved.contains(&parent_id), "{moved:?}");
    }
    let parents = stored_parents(db).await;
    assert_eq!(
        parents[&honest.node_id().to_string()],
        parent_id,
        "the honest child stays: {parents:?}"
    );
    // Its own asks keep it there, with the reports standing.
    assert_eq!(chain(&api, honest, &[]).await[0], parent_id);
    assert_eq!(
        stored_parents(db).await[&honest.node_id().to_string()],
        parent_id
    );
}

/// A parent whose process is up (`/healthz` answers) but that does not serve the stream is
/// found out by the coordinator's own check: one report moves every child at once.
async fn a_parent_up_but_not_serving_the_stream_loses_its_children_on_one_report(db: &TestDb) {
    let mut config = config_k(3);
    config.relay_probe_timeout = Some(std::time::Duration::from_millis(500));
    let (api, _relays, parent, children) = family_with(db, config).await;
    let parent_id = parent.node_id().to_string();
    reregister(&api, &parent, "operator-parent", &node_serving(false).await).await;
    heartbeat(&api, &parent, 5, 0).await;
    let moved = chain(&api, &children[0], &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    let parents = stored_parents(db).await;
    for child in &children {
        assert_ne!(
            parents[&child.node_id().to_string()],
            parent_id,
            "every child left: {parents:?}"
        );
    }
}

/// The flap: a tier-1 relay goes silent, its child takes its slot at the origin, and it comes
/// back. It rejoins as a new child where there is room; the relay now serving in its old slot
/// keeps it, at its own asks too, and the origin still feeds k.
async fn a_returning_relay_rejoins_where_there_is_room_without_evicting_the_relay_in_its_slot(
    db: &TestDb,
) {
    let (api, origin, relays) = setup(db, 4).await;
    let origin_id = origin.node_id().to_string();
    for relay in &relays {
        chain(&api, relay, &[]).await;
    }
    let parents = stored_parents(db).await;
    let under = |parent: &str| -> Vec<KeyPair> {
        relays
            .iter()
            .filter(|r| parents.get(&r.node_id().to_string()).map(String::as_str) == Some(parent))
            .cloned()
            .collect()
    };
    let (gone, orphan) = under(&origin_id)
        .into_iter()
        .find_map(|tier1| {
            let child = under(&tier1.node_id().to_string()).into_iter().next()?;
            Some((tier1, child))
        })
        .expect("a tier-1 relay with a child");
    let gone_id = gone.node_id().to_string();
    // The tier-1 relay misses its heartbeats (older than the liveness); its child asks.
    for (index, relay) in relays.iter().enumerate() {
        let age = if relay.node_id() == gone.node_id() {
            20_000
        } else {
            0
        };
        heartbeat(&api, relay, 10 + index as u64, age).await;
    }
    let moved = chain(&api, &orphan, &[gone.node_id()]).await;
    assert!(!moved.contains(&gone_id), "{moved:?}");
    // One of its children took its slot at the origin (the oldest: not necessarily the asker).
    let taker = {
        let now = stored_parents(db).await;
        relays
            .iter()
            .find(|r| {
                let id = r.node_id().to_string();
                now.get(&id) == Some(&origin_id) && parents.get(&id) == Some(&gone_id)
            })
            .cloned()
            .unwrap_or_else(|| panic!("a child of the gone relay under the origin: {now:?}"))
    };
    let taker_id = taker.node_id().to_string();
    // Back: a fresh heartbeat and an ask. The origin is full, so it goes below a relay.
    heartbeat(&api, &gone, 30, 0).await;
    let back = chain(&api, &gone, &[]).await;
    assert!(back.len() >= 2, "rejoined below a relay: {back:?}");
    let now = stored_parents(db).await;
    assert_eq!(now[&taker_id], origin_id);
    assert_ne!(now[&gone_id], origin_id);
    // The relay in the slot keeps it at its next ask, and the origin feeds k.
    assert_eq!(chain(&api, &taker, &[]).await, vec![origin_id.clone()]);
    let fed = stored_parents(db)
        .await
        .values()
        .filter(|p| **p == origin_id)
        .count();
    assert_eq!(fed, K);
}

/// The attack: a parent answers the coordinator's check that it serves the stream but does
/// not feed its child. The child's receipts (none for the parent lately) are the evidence the
/// parent cannot make alone: the child leaves it, earns it nothing, its siblings stay, and
/// no new relay is placed below it while the report stands, where one would go otherwise.
async fn a_parent_whose_childs_receipts_show_it_unfed_loses_the_child_and_takes_no_new_one(
    db: &TestDb,
) {
    let mut config = config_k(3);
    config.relay_probe_timeout = Some(std::time::Duration::from_millis(500));
    let (api, relays, parent, children) = family_with(db, config).await;
    let parent_id = parent.node_id().to_string();
    reregister(&api, &parent, "operator-parent", &node_serving(true).await).await;
    heartbeat(&api, &parent, 5, 0).await;
    let (starved, siblings) = children.split_first().expect("children");
    let moved = chain(&api, starved, &[parent.node_id()]).await;
    assert!(!moved.contains(&parent_id), "{moved:?}");
    // Six newcomers: the tier-1 relays' free slots (the parent's two among them) would take
    // them all; the parent takes none.
    let mut newcomers = Vec::new();
    for seed in 40..46u8 {
        let key = node(seed);
        let url = format!("http://127.0.{}.1:8080", seed);
        let (status, body) = api.post("/nodes", &registration(&key, &url)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        heartbeat(&api, &key, 1, 0).await;
        newcomers.push(key);
    }
    for key in &newcomers {
        let placed = chain(&api, key, &[]).await;
        assert_ne!(placed[0], parent_id, "a newcomer below the unfed parent");
    }
    let parents = stored_parents(db).await;
    for sibling in siblings {
        assert_eq!(parents[&sibling.node_id().to_string()], parent_id);
    }
    assert!(
        relays
            .iter()
            .all(|r| parents.contains_key(&r.node_id().to_string())),
        "{parents:?}"
    );
    // It earns nothing for the child: no receipt of the child's on any grant at the parent.
    let storage = db.storage().await;
    let session = storage
        .latest_session_of(&starved.node_id().to_string(), &parent_id, "show", 0)
        .await
        .expect("session lookup")
        .expect("the child was granted its parent");
    assert!(storage
        .latest_receipt(&session.session_id)
        .await
        .expect("receipt lookup")
        .is_none());
}
