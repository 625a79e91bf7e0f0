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

use ed25519_dalek::{Signature, VerifyingKey};
use streamr_core::NodeId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{ApiError, StorageError};
use crate::storage::{HeartbeatWrite, Storage};

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
        let (queue, receiver) = mpsc::channel::<Pending>(QUEUE);
        let caches = Arc::new(Caches::default());
        tokio::spawn(run(storage, receiver, caches.clone()));
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
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                write,
                signature,
                reply,
            })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        answer.await.map_err(|_| StorageError::WriterStopped)?
    }
}

/// The writer task: keeps up to the storage's number of commits in flight with whatever has
/// arrived. Signatures are checked in chunks while commits run (a chunk as soon as it is full,
/// the rest when a commit is about to start), so the check overlaps the commit before it.
async fn run(storage: Arc<dyn Storage>, mut queue: mpsc::Receiver<Pending>, caches: Arc<Caches>) {
    let in_flight = storage.heartbeat_commits_in_flight().max(1);
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
    storage: Arc<dyn Storage>,
    caches: Arc<Caches>,
    batch: Vec<Ready>,
    nodes: Vec<String>,
) -> Vec<String> {
    let (writes, replies): (Vec<HeartbeatWrite>, Vec<_>) = batch.into_iter().unzip();
    match storage.record_heartbeats(&writes).await {
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
    use crate::storage::ActivityDelta;
    use streamr_core::{CanonicalMessage, KeyPair, NodeHeartbeat, Signed};

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
                viewers: 0,
                bytes_served: 0,
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
