//! Group commit for heartbeats: concurrent requests hand their writes to one task, which checks
//! their signatures together and stores whatever has queued up in a single transaction, so a
//! burst of heartbeats costs one batch signature check and one durable commit instead of one
//! each. Every request is still answered only after its own commit (or with its own error).
//!
//! The task works as a pipeline: while a batch commits, the heartbeats that arrive meanwhile
//! have their signatures checked and wait for the next commit. Where the storage allows more
//! than one commit in flight (PostgreSQL), the next batch starts before the previous one is
//! flushed; two batches in flight never share a node, so each node's heartbeats are stored in
//! the order they arrived and concurrent batches never wait on each other's rows.
//!
//! In front of the database sit two caches of this process: node keys already decompressed,
//! and each node's newest nonce this process has committed. A heartbeat whose nonce is not
//! above that is a replay and is refused without a database round trip; everything else is
//! decided by the database, which stays the authority when several replicas share it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ed25519_dalek::{Signature, VerifyingKey};
use streamr_core::{KnownSession, NodeId, NodeSessionId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{ApiError, StorageError};
use crate::storage::{HeartbeatWrite, Storage, StorageResult};

/// Heartbeats committed together at most.
const MAX_BATCH: usize = 512;
/// Heartbeats taken off the queue and checked at a time (bounds how long one check runs).
const CHECK_CHUNK: usize = 64;
/// Heartbeats waiting for the writer at most; senders wait beyond that (backpressure).
const QUEUE: usize = 4096;
/// Checked heartbeats waiting for a commit at most before the queue is left to fill.
const READY: usize = 2 * MAX_BATCH;
/// Entries each cache keeps at most; a full cache is emptied and refills.
const CACHE_ENTRIES: usize = 100_000;

/// What a queued heartbeat is answered with: the number of new receipts, or why it was refused.
type Outcome = Result<u64, ApiError>;

/// Where the writer commits its batches: the coordinator's [`Storage`], or a stand-in that
/// tests can make fail or slow down.
#[async_trait]
trait BatchStore: Send + Sync + 'static {
    /// How many batches may be committing at once.
    fn commits_in_flight(&self) -> usize;
    /// Stores `writes` in one transaction: an outcome per write, or an error when nothing
    /// was stored.
    async fn record(&self, writes: &[HeartbeatWrite]) -> StorageResult<Vec<StorageResult<u64>>>;
}

/// The coordinator's storage as the writer's [`BatchStore`].
struct StorageBatches(Arc<dyn Storage>);

#[async_trait]
impl BatchStore for StorageBatches {
    fn commits_in_flight(&self) -> usize {
        self.0.heartbeat_commits_in_flight()
    }

    async fn record(&self, writes: &[HeartbeatWrite]) -> StorageResult<Vec<StorageResult<u64>>> {
        self.0.record_heartbeats(writes).await
    }
}

/// A heartbeat signature still to be checked: the node's key, the canonical bytes it signed
/// and the signature.
#[derive(Debug)]
pub(crate) struct SignatureCheck {
    key: VerifyingKey,
    message: Vec<u8>,
    signature: Signature,
}

impl SignatureCheck {
    /// A check of `signature` over `message` by `key`.
    pub(crate) fn new(key: VerifyingKey, message: Vec<u8>, signature: Signature) -> Self {
        SignatureCheck {
            key,
            message,
            signature,
        }
    }

    /// Checks this signature alone, with ed25519's strict rules.
    pub(crate) fn verify_strict(&self) -> bool {
        self.key
            .verify_strict(&self.message, &self.signature)
            .is_ok()
    }
}

/// Which of `checks` hold. One batch equation is tried first; only if it fails is each
/// signature checked alone (strictly) to find the bad ones.
///
/// A batch that holds proves that every signature in it was made with its node's key.
/// `verify_batch` does not refuse the non-standard encodings `verify_strict` refuses (a
/// small-order `R`); only the key's holder can produce those, so they authenticate the node
/// all the same. Weak (small-order) keys, which could let one signature verify for many
/// messages, are refused in either path.
fn verify_all(checks: &[&SignatureCheck]) -> Vec<bool> {
    if checks.len() > 1 && checks.iter().all(|check| !check.key.is_weak()) {
        let messages: Vec<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<Signature> = checks.iter().map(|c| c.signature).collect();
        let keys: Vec<VerifyingKey> = checks.iter().map(|c| c.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks.iter().map(|check| check.verify_strict()).collect()
}

/// A heartbeat waiting for the writer.
struct Pending {
    write: HeartbeatWrite,
    /// `None` when the handler checked the signature itself.
    signature: Option<SignatureCheck>,
    reply: oneshot::Sender<Outcome>,
}

/// A heartbeat whose signature holds, waiting for a commit.
type Ready = (HeartbeatWrite, oneshot::Sender<Outcome>);

/// Bounded maps shared between the handlers and the writer.
#[derive(Debug, Default)]
struct Caches {
    /// Decompressed node keys.
    keys: Mutex<HashMap<NodeId, VerifyingKey>>,
    /// Per node, the newest nonce this process committed (never above the database's).
    nonces: Mutex<HashMap<String, i64>>,
    /// Node sessions this process opened or has read from the database (the database keeps
    /// them all, so another replica's sessions are found there).
    sessions: Mutex<HashMap<NodeSessionId, KnownSession>>,
}

fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl Caches {
    fn committed(&self, node_id: &str, nonce: i64) {
        let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        match nonces.get_mut(node_id) {
            Some(last) => *last = (*last).max(nonce),
            None => insert_bounded(&mut nonces, node_id.to_owned(), nonce),
        }
    }
}

/// The handle requests use to have a heartbeat written.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatWriter {
    queue: mpsc::Sender<Pending>,
    caches: Arc<Caches>,
}

impl HeartbeatWriter {
    /// Starts the writer task on the current runtime.
    pub(crate) fn spawn(storage: Arc<dyn Storage>) -> Self {
        Self::spawn_on(Arc::new(StorageBatches(storage)))
    }

    /// Starts the writer task over `store`.
    fn spawn_on(store: Arc<dyn BatchStore>) -> Self {
        let (queue, receiver) = mpsc::channel::<Pending>(QUEUE);
        let caches = Arc::new(Caches::default());
        tokio::spawn(run(store, receiver, caches.clone()));
        HeartbeatWriter { queue, caches }
    }

    /// The node's decompressed public key, from the cache when it was seen before.
    pub(crate) fn verifying_key(&self, node: &NodeId) -> Option<VerifyingKey> {
        let mut keys = self
            .caches
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(node) {
            return Some(*key);
        }
        let key = node.verifying_key().ok()?;
        insert_bounded(&mut keys, *node, key);
        Some(key)
    }

    /// A node session from this process's cache.
    pub(crate) fn session(&self, id: &NodeSessionId) -> Option<KnownSession> {
        self.caches
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Caches a node session (opened here or read from the database).
    pub(crate) fn remember_session(&self, id: NodeSessionId, session: KnownSession) {
        let mut sessions = self
            .caches
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        insert_bounded(&mut sessions, id, session);
    }

    /// Refuses a nonce not above the newest one this process committed for the node (the
    /// database would refuse it too); a nonce above it is left for the database to decide.
    pub(crate) fn check_not_replayed(&self, node_id: &str, nonce: i64) -> Result<(), ApiError> {
        let nonces = self
            .caches
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match nonces.get(node_id) {
            Some(&last) if nonce <= last => Err(ApiError::Storage(StorageError::ReplayedNonce {
                node_id: node_id.to_owned(),
                nonce,
                last,
            })),
            _ => Ok(()),
        }
    }

    /// Queues a write and waits until it is committed (or refused). With `signature`, the
    /// write is stored only if the signature holds; a bad one is answered with
    /// [`ApiError::BadSignature`] and nothing is written.
    pub(crate) async fn write(
        &self,
        write: HeartbeatWrite,
        signature: Option<SignatureCheck>,
    ) -> Outcome {
        let answer = self.submit(write, signature).await?;
        answer.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// Queues a write and returns where its outcome will arrive, without waiting for it.
    async fn submit(
        &self,
        write: HeartbeatWrite,
        signature: Option<SignatureCheck>,
    ) -> Result<oneshot::Receiver<Outcome>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                write,
                signature,
                reply,
            })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(answer)
    }
}

/// The writer task: keeps up to the storage's number of commits in flight with whatever has
/// arrived. Signatures are checked in chunks while commits run (a chunk as soon as it is full,
/// the rest when a commit is about to start), so the check overlaps the commit before it.
async fn run(
    storage: Arc<dyn BatchStore>,
    mut queue: mpsc::Receiver<Pending>,
    caches: Arc<Caches>,
) {
    let in_flight = storage.commits_in_flight().max(1);
    let mut unchecked: Vec<Pending> = Vec::with_capacity(CHECK_CHUNK);
    let mut ready: Vec<Ready> = Vec::new();
    let mut commits: JoinSet<Vec<String>> = JoinSet::new();
    // Nodes with a heartbeat in a committing batch, with how many batches hold them.
    let mut busy: HashMap<String, usize> = HashMap::new();
    let mut open = true;
    loop {
        if commits.len() < in_flight && !unchecked.is_empty() {
            check_signatures(&mut unchecked, &mut ready);
        }
        while commits.len() < in_flight && !ready.is_empty() {
            let batch = take_batch(&mut ready, &busy);
            if batch.is_empty() {
                break;
            }
            let nodes: Vec<String> = batch
                .iter()
                .map(|(write, _)| write.node_id.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for node in &nodes {
                *busy.entry(node.clone()).or_default() += 1;
            }
            commits.spawn(commit(storage.clone(), caches.clone(), batch, nodes));
        }
        if !open && unchecked.is_empty() && ready.is_empty() && commits.is_empty() {
            return;
        }
        tokio::select! {
            received = queue.recv_many(&mut unchecked, CHECK_CHUNK),
                if open && ready.len() + unchecked.len() < READY =>
            {
                if received == 0 {
                    open = false;
                } else if unchecked.len() >= CHECK_CHUNK {
                    check_signatures(&mut unchecked, &mut ready);
                }
            }
            Some(done) = commits.join_next(), if !commits.is_empty() => {
                match done {
                    Ok(nodes) => {
                        for node in nodes {
                            if let Some(count) = busy.get_mut(&node) {
                                *count -= 1;
                                if *count == 0 {
                                    busy.remove(&node);
                                }
                            }
                        }
                    }
                    // A failed commit task dropped its replies (its requests see the writer
                    // as stopped); which nodes it held is lost, so wait until nothing commits.
                    Err(_) if commits.is_empty() => busy.clear(),
                    Err(_) => {}
                }
            }
        }
    }
}

/// Checks the signatures of `incoming` in one batch; answers the bad ones and moves the rest
/// to `ready`.
fn check_signatures(incoming: &mut Vec<Pending>, ready: &mut Vec<Ready>) {
    let checks: Vec<&SignatureCheck> = incoming
        .iter()
        .filter_map(|pending| pending.signature.as_ref())
        .collect();
    let mut valid = verify_all(&checks).into_iter();
    for pending in incoming.drain(..) {
        let holds = pending.signature.is_none() || valid.next().unwrap_or(false);
        if holds {
            ready.push((pending.write, pending.reply));
        } else {
            let _ = pending
                .reply
                .send(Err(ApiError::BadSignature { what: "heartbeat" }));
        }
    }
}

/// Takes up to [`MAX_BATCH`] ready heartbeats in arrival order, leaving those of nodes that
/// have a batch committing (and so every later heartbeat of theirs) for a later batch.
fn take_batch(ready: &mut Vec<Ready>, busy: &HashMap<String, usize>) -> Vec<Ready> {
    if busy.is_empty() && ready.len() <= MAX_BATCH {
        return std::mem::take(ready);
    }
    let mut batch = Vec::new();
    let mut left = Vec::new();
    for entry in ready.drain(..) {
        if batch.len() < MAX_BATCH && !busy.contains_key(&entry.0.node_id) {
            batch.push(entry);
        } else {
            left.push(entry);
        }
    }
    *ready = left;
    batch
}

/// Stores one batch and answers each of its requests. Returns the batch's nodes.
async fn commit(
    storage: Arc<dyn BatchStore>,
    caches: Arc<Caches>,
    batch: Vec<Ready>,
    nodes: Vec<String>,
) -> Vec<String> {
    let (writes, replies): (Vec<HeartbeatWrite>, Vec<_>) = batch.into_iter().unzip();
    match storage.record(&writes).await {
        Ok(outcomes) => {
            for ((write, reply), outcome) in writes.iter().zip(replies).zip(outcomes) {
                if outcome.is_ok() {
                    caches.committed(&write.node_id, write.nonce);
                }
                let _ = reply.send(outcome.map_err(ApiError::Storage));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(ApiError::Storage(StorageError::Batch {
                    detail: message.clone(),
                })));
            }
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ActivityDelta, NodeRecord, SqliteStorage};
    use std::time::Duration;
    use streamr_core::{CanonicalMessage, KeyPair, NodeHeartbeat, Signed};

    fn write(node: &str, nonce: i64) -> HeartbeatWrite {
        HeartbeatWrite {
            node_id: node.to_owned(),
            nonce,
            timestamp_ms: 0,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
            viewers: 0,
            bytes_served: 0,
            claim_totals: None,
            receipts: Vec::new(),
            activity: ActivityDelta {
                node_id: node.to_owned(),
                heartbeats: 1,
                ..ActivityDelta::default()
            },
        }
    }

    /// A stand-in for the database: keeps each node's newest nonce and refuses one not above
    /// it, refuses every batch holding a heartbeat of `failing_node` (storing none of it),
    /// and counts batches and any two that held one node while committing at once.
    struct FakeStore {
        in_flight: usize,
        failing_node: Option<&'static str>,
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        newest: HashMap<String, i64>,
        stored: Vec<(String, i64)>,
        batches: usize,
        committing: HashSet<String>,
        shared_a_node: usize,
        most_at_once: usize,
        at_once: usize,
    }

    impl FakeStore {
        fn new(in_flight: usize, failing_node: Option<&'static str>) -> Arc<Self> {
            Arc::new(FakeStore {
                in_flight,
                failing_node,
                state: Mutex::default(),
            })
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }
    }

    #[async_trait]
    impl BatchStore for FakeStore {
        fn commits_in_flight(&self) -> usize {
            self.in_flight
        }

        async fn record(
            &self,
            writes: &[HeartbeatWrite],
        ) -> StorageResult<Vec<StorageResult<u64>>> {
            let nodes: HashSet<String> = writes.iter().map(|w| w.node_id.clone()).collect();
            {
                let mut state = self.state();
                state.batches += 1;
                state.at_once += 1;
                state.most_at_once = state.most_at_once.max(state.at_once);
                for node in &nodes {
                    if !state.committing.insert(node.clone()) {
                        state.shared_a_node += 1;
                    }
                }
            }
            // Long enough for the next batches to start while this one commits.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let mut state = self.state();
            state.at_once -= 1;
            for node in &nodes {
                state.committing.remove(node);
            }
            if let Some(failing) = self.failing_node.filter(|f| nodes.contains(*f)) {
                return Err(StorageError::Batch {
                    detail: format!("a heartbeat of {failing} broke the transaction"),
                });
            }
            let outcomes = writes
                .iter()
                .map(|w| {
                    let last = state.newest.get(&w.node_id).copied().unwrap_or(-1);
                    if w.nonce <= last {
                        return Err(StorageError::ReplayedNonce {
                            node_id: w.node_id.clone(),
                            nonce: w.nonce,
                            last,
                        });
                    }
                    state.newest.insert(w.node_id.clone(), w.nonce);
                    state.stored.push((w.node_id.clone(), w.nonce));
                    Ok(0)
                })
                .collect();
            Ok(outcomes)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_heartbeats_of_one_node_are_stored_in_nonce_order() {
        let store = FakeStore::new(4, None);
        let writer = HeartbeatWriter::spawn_on(store.clone());
        // Three nodes' heartbeats queued interleaved, none waiting for another's answer.
        let mut answers = Vec::new();
        for nonce in 1..=300 {
            for node in ["a", "b", "c"] {
                let answer = writer.submit(write(node, nonce), None).await.unwrap();
                answers.push((node, nonce, answer));
            }
        }
        for (node, nonce, answer) in answers {
            assert_eq!(answer.await.unwrap().unwrap(), 0, "{node} {nonce}");
        }
        let state = store.state();
        for node in ["a", "b", "c"] {
            let stored: Vec<i64> = state
                .stored
                .iter()
                .filter(|(n, _)| n == node)
                .map(|(_, nonce)| *nonce)
                .collect();
            assert_eq!(stored, (1..=300).collect::<Vec<_>>(), "node {node}");
        }
        assert!(state.batches > 1, "{} batches", state.batches);
        assert_eq!(
            state.shared_a_node, 0,
            "two committing batches held one node"
        );
        drop(state);
        // Every committed nonce is now refused without a round trip.
        assert!(writer.check_not_replayed("a", 300).is_err());
        assert!(writer.check_not_replayed("a", 301).is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_batch_answers_every_member_with_an_error_and_stores_none() {
        let store = FakeStore::new(1, Some("poison"));
        let writer = HeartbeatWriter::spawn_on(store.clone());
        // Queued before the writer task first runs: one batch.
        let mut answers = Vec::new();
        for (node, nonce) in [("a", 1), ("poison", 1), ("b", 1), ("a", 2)] {
            answers.push(writer.submit(write(node, nonce), None).await.unwrap());
        }
        for answer in answers {
            let outcome = answer.await.unwrap();
            assert!(
                matches!(outcome, Err(ApiError::Storage(StorageError::Batch { .. }))),
                "{outcome:?}"
            );
        }
        {
            let state = store.state();
            assert_eq!(state.batches, 1);
            assert!(state.stored.is_empty());
        }
        // Nothing of the batch counts as committed: the same heartbeats are taken again.
        assert!(writer.check_not_replayed("a", 1).is_ok());
        assert_eq!(writer.write(write("a", 1), None).await.unwrap(), 0);
        assert_eq!(writer.write(write("b", 1), None).await.unwrap(), 0);
        assert_eq!(store.state().stored, vec![("a".into(), 1), ("b".into(), 1)]);
    }

    fn node_record(key: &KeyPair) -> NodeRecord {
        NodeRecord {
            id: key.node_id().to_string(),
            payout_address: "payout".into(),
            operator: "operator".into(),
            operator_key: None,
            subnet: "10.0.0".into(),
            rtmp_url: "rtmp://10.0.0.1:1935/live".into(),
            http_url: "http://10.0.0.1:8080".into(),
            registered_at_ms: 0,
            active: true,
            capacity_kbps: 10_000,
            last_nonce: -1,
            last_heartbeat_ms: None,
            status: "registered".into(),
            viewers: 0,
            bytes_served: 0,
            streams_json: "[]".into(),
            upstreams_json: "[]".into(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_mixing_nodes_gives_each_heartbeat_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("mixed.db").display());
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&url).await.unwrap());
        let (a, b, forger, unknown) = (
            KeyPair::from_seed([1; 32]),
            KeyPair::from_seed([2; 32]),
            KeyPair::from_seed([3; 32]),
            KeyPair::from_seed([4; 32]),
        );
        for key in [&a, &b, &forger] {
            storage.upsert_node(&node_record(key)).await.unwrap();
        }
        let id = |key: &KeyPair| key.node_id().to_string();
        let writer = HeartbeatWriter::spawn(storage.clone());
        writer.write(write(&id(&a), 5), None).await.unwrap();

        // Queued before the writer task runs again: one batch.
        let queued = [
            (write(&id(&a), 3), None),
            (write(&id(&b), 1), None),
            (write(&id(&unknown), 1), None),
            (write(&id(&a), 6), None),
            (write(&id(&forger), 1), Some(check(3, 1, true))),
            (write(&id(&b), 2), None),
            (write(&id(&a), 6), None),
        ];
        let mut answers = Vec::new();
        for (queued, signature) in queued {
            answers.push(writer.submit(queued, signature).await.unwrap());
        }
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(_) => "ok",
                Err(ApiError::Storage(StorageError::ReplayedNonce { .. })) => "replayed",
                Err(ApiError::Storage(StorageError::UnknownNode { .. })) => "unknown",
                Err(ApiError::BadSignature { .. }) => "forged",
                Err(_) => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["replayed", "ok", "unknown", "ok", "forged", "ok", "replayed"],
            "{outcomes:?}"
        );
        let stored = |key: &KeyPair| {
            let storage = storage.clone();
            let id = id(key);
            async move { storage.get_node(&id).await.unwrap().map(|n| n.last_nonce) }
        };
        assert_eq!(stored(&a).await, Some(6));
        assert_eq!(stored(&b).await, Some(2));
        assert_eq!(stored(&forger).await, Some(-1));
        assert_eq!(stored(&unknown).await, None);
    }

    /// A batch of one heartbeat per node (SQLite's one-call path): each is claimed or refused
    /// on its own, and only the claimed ones add activity.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_of_distinct_nodes_counts_activity_of_claimed_heartbeats_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("round.db").display());
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&url).await.unwrap());
        let keys: Vec<KeyPair> = (1..=5).map(|i| KeyPair::from_seed([i; 32])).collect();
        let id = |i: usize| keys[i].node_id().to_string();
        for key in &keys[..4] {
            storage.upsert_node(&node_record(key)).await.unwrap();
        }
        assert!(storage.deregister_node(&id(3)).await.unwrap());
        let with_bytes = |node: String, nonce: i64| {
            let mut write = write(&node, nonce);
            write.bytes_served = 1_000;
            write.activity.claimed_bytes = 1_000;
            write
        };
        let writes = vec![
            with_bytes(id(0), 1),
            with_bytes(id(1), 1),
            with_bytes(id(2), 1),
            with_bytes(id(3), 1),
            with_bytes(id(4), 1),
        ];
        let outcomes = storage.record_heartbeats(&writes).await.unwrap();
        assert!(outcomes.iter().take(3).all(|o| o.is_ok()), "{outcomes:?}");
        for outcome in &outcomes[3..] {
            assert!(
                matches!(outcome, Err(StorageError::UnknownNode { .. })),
                "{outcomes:?}"
            );
        }
        // Node 0 again with its nonce, node 1 with an older one, node 2 with a newer one.
        let again = vec![with_bytes(id(0), 1), with_bytes(id(2), 2), {
            let mut older = with_bytes(id(1), 0);
            older.activity.claimed_bytes = 7;
            older
        }];
        let outcomes = storage.record_heartbeats(&again).await.unwrap();
        assert!(matches!(
            outcomes[0],
            Err(StorageError::ReplayedNonce { last: 1, .. })
        ));
        assert!(outcomes[1].is_ok(), "{outcomes:?}");
        assert!(matches!(
            outcomes[2],
            Err(StorageError::ReplayedNonce { last: 1, .. })
        ));
        let mut activity = storage.activity_for_epoch(0).await.unwrap();
        activity.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let mut expected = vec![(id(0), 1, 1_000), (id(1), 1, 1_000), (id(2), 2, 2_000)];
        expected.sort();
        let counted: Vec<(String, i64, i64)> = activity
            .into_iter()
            .map(|d| (d.node_id, d.heartbeats, d.claimed_bytes))
            .collect();
        assert_eq!(counted, expected);
        let stored = storage.get_node(&id(2)).await.unwrap().unwrap();
        assert_eq!((stored.last_nonce, stored.status.as_str()), (2, "online"));
    }

    fn check(seed: u8, nonce: u64, forge: bool) -> SignatureCheck {
        let key = KeyPair::from_seed([seed; 32]);
        let mut signed = Signed::sign(
            NodeHeartbeat {
                node_id: key.node_id(),
                timestamp_ms: 1,
                nonce,
                streams: Vec::new(),
                viewers: 0,
                bytes_served: 0,
                unattested_bytes: 0,
                upstreams: Vec::new(),
                claim_totals: None,
            },
            &key,
        );
        if forge {
            signed.body.viewers = 1;
        }
        SignatureCheck::new(
            signed.body.node_id.verifying_key().unwrap(),
            signed.body.canonical_bytes(),
            signed.signature.to_signature(),
        )
    }

    #[test]
    fn a_batch_names_exactly_its_bad_signatures() {
        let checks: Vec<SignatureCheck> = (1..=8).map(|i| check(i, 1, i == 3 || i == 7)).collect();
        let refs: Vec<&SignatureCheck> = checks.iter().collect();
        let valid = verify_all(&refs);
        let expected: Vec<bool> = (1..=8).map(|i| !(i == 3 || i == 7)).collect();
        assert_eq!(valid, expected);
        let good: Vec<SignatureCheck> = (1..=8).map(|i| check(i, 2, false)).collect();
        // Good signatures pass the batch equation itself, not only the one-by-one fallback.
        let messages: Vec<&[u8]> = good.iter().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<Signature> = good.iter().map(|c| c.signature).collect();
        let keys: Vec<VerifyingKey> = good.iter().map(|c| c.key).collect();
        assert!(ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok());
        assert_eq!(verify_all(&good.iter().collect::<Vec<_>>()), vec![true; 8]);
        assert_eq!(verify_all(&[&check(1, 3, true)]), vec![false]);
        assert_eq!(verify_all(&[]), Vec::<bool>::new());
    }

    #[test]
    fn batches_leave_busy_nodes_for_later_in_order() {
        let entry = |node: &str, nonce: i64| {
            let (reply, _) = oneshot::channel();
            let write = HeartbeatWrite {
                node_id: node.to_owned(),
                nonce,
                timestamp_ms: 0,
                streams_json: "[]".into(),
                upstreams_json: "[]".into(),
                viewers: 0,
                bytes_served: 0,
                claim_totals: None,
                receipts: Vec::new(),
                activity: ActivityDelta::default(),
            };
            (write, reply)
        };
        let mut ready = vec![entry("a", 1), entry("b", 1), entry("a", 2), entry("c", 1)];
        let busy = HashMap::from([("a".to_owned(), 1)]);
        let batch = take_batch(&mut ready, &busy);
        let taken: Vec<(&str, i64)> = batch
            .iter()
            .map(|(w, _)| (w.node_id.as_str(), w.nonce))
            .collect();
        assert_eq!(taken, vec![("b", 1), ("c", 1)]);
        let left: Vec<(&str, i64)> = ready
            .iter()
            .map(|(w, _)| (w.node_id.as_str(), w.nonce))
            .collect();
        assert_eq!(left, vec![("a", 1), ("a", 2)]);
        let rest = take_batch(&mut ready, &HashMap::new());
        assert_eq!(rest.len(), 2);
        assert!(ready.is_empty());
    }
}
