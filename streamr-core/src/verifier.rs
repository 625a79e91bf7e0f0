//! Receipt verification: checks each viewer receipt against its session grant, the session's
//! previous receipt and the origin's content digests, and credits the bytes it adds.
//!
//! Signatures are checked in batches with `ed25519_dalek::verify_batch`; a failing batch falls
//! back to one-by-one checks to name the bad receipts.
//!
//! With [`VerifierConfig::supersede_older`] a call checks each session newest first: receipts are
//! cumulative, so once a session's newest valid receipt is accepted, its older receipts in the
//! same call are recorded as [`ReceiptRejection::Superseded`] without a signature check. That
//! saves most signature checks when nodes submit several receipts per session, and gives a node
//! exactly what it would get by submitting only that newest receipt (which it may always do).
//!
//! The verifier runs on the caller's thread; callers that want several cores shard sessions over
//! several verifiers (sessions are independent), as the settlement benchmark does.

use std::cmp::Reverse;
use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::content::SegmentDigestSource;
use crate::error::{ReceiptRejection, SignatureError};
use crate::grant::{SessionGrant, SignedGrant};
use crate::identity::{CoordinatorKey, NodeId, ViewerKey};
use crate::ids::{SessionId, StreamId};
use crate::receipt::SignedReceipt;
use crate::signed::CanonicalMessage;

/// How signatures are checked (batch is faster; one-by-one exists for comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignatureCheck {
    /// `verify_batch` over chunks of receipts.
    Batch,
    /// `verify_strict` per receipt.
    OneByOne,
}

/// Receipt verification limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierConfig {
    /// A segment acknowledged within this many ms of its publication counts as on time.
    pub on_time_lag_ms: u64,
    /// A segment acknowledged later than this after publication is stale: the receipt earns
    /// nothing.
    pub stale_after_ms: u64,
    /// Tolerated viewer clock lead over the verifier's clock.
    pub max_clock_lead_ms: u64,
    /// Receipts per `verify_batch` call.
    pub batch_size: usize,
    /// Batch or one-by-one signature checks.
    pub signature_check: SignatureCheck,
    /// Check each session's receipts newest first and record the older receipts of a session
    /// whose newer receipt was accepted in the same call as
    /// [`ReceiptRejection::Superseded`], without checking their signatures. Off by default:
    /// every receipt is then checked and, if valid, credited with its own increment.
    #[serde(default)]
    pub supersede_older: bool,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            on_time_lag_ms: 10_000,
            stale_after_ms: 60_000,
            max_clock_lead_ms: 5_000,
            batch_size: 256,
            signature_check: SignatureCheck::Batch,
            supersede_older: false,
        }
    }
}

/// Bytes a valid receipt added to its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    /// The session.
    pub session_id: SessionId,
    /// Bytes added since the previous accepted receipt.
    pub bytes: u64,
    /// Whether the acknowledged segment was fresh (within `on_time_lag_ms`).
    pub on_time: bool,
}

/// One session's verified usage within an epoch, drained by [`ReceiptVerifier::take_usage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    /// The session.
    pub session_id: SessionId,
    /// The serving node.
    pub node_id: NodeId,
    /// The viewer.
    pub viewer: ViewerKey,
    /// The stream.
    pub stream_id: StreamId,
    /// Bytes credited in the epoch.
    pub bytes: u64,
    /// Of which acknowledged on time.
    pub on_time_bytes: u64,
    /// Session bytes in total (the newest receipt's `bytes_total`).
    pub bytes_total: u64,
    /// When the session was granted, Unix ms.
    pub started_ms: u64,
    /// The newest accepted receipt's time, Unix ms.
    pub last_receipt_ms: u64,
    /// Where the span this epoch's bytes cover begins, Unix ms: the signing time of the
    /// session's newest receipt booked in an earlier epoch, or the grant's start if none. A
    /// receipt signed after a coordinator outage covers every byte since then, none of which
    /// an earlier epoch credited; the per-epoch bounds give the session room for that span.
    /// `None` in observations published before it was recorded: no room beyond the epoch (the
    /// old rules, so replay of those epochs is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_from_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct LastAccepted {
    seq: u64,
    bytes_total: u64,
    last_segment_seq: u64,
    t_ms: u64,
}

#[derive(Clone, Debug)]
struct SessionState {
    grant: SessionGrant,
    viewer_key: VerifyingKey,
    started_ms: u64,
    last: Option<LastAccepted>,
    /// The newest receipt's time when usage was last drained with new bytes (the grant's start
    /// before that): where the next drained usage's span begins.
    credited_until_ms: u64,
    epoch_bytes: u64,
    epoch_on_time_bytes: u64,
}

/// Verifies receipts for granted sessions and remembers each session's last accepted receipt.
#[derive(Clone, Debug, Default)]
pub struct ReceiptVerifier {
    config: VerifierConfig,
    sessions: HashMap<SessionId, SessionState>,
}

impl ReceiptVerifier {
    /// A verifier with no sessions.
    pub fn new(config: VerifierConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
        }
    }

    /// Checks the coordinator's signature on `grant` and admits its session, started at
    /// `started_ms`.
    pub fn admit_signed_grant(
        &mut self,
        grant: &SignedGrant,
        coordinator: &CoordinatorKey,
        started_ms: u64,
    ) -> Result<(), SignatureError> {
        let body = grant.verify(coordinator)?;
        self.admit_grant(body.clone(), started_ms)
    }

    /// Admits a grant the caller issued itself (no signature check). Fails only when the
    /// viewer key is not a valid public key.
    pub fn admit_grant(
        &mut self,
        grant: SessionGrant,
        started_ms: u64,
    ) -> Result<(), SignatureError> {
        let viewer_key = grant.viewer.verifying_key()?;
        self.sessions.insert(
            grant.session_id,
            SessionState {
                grant,
                viewer_key,
                started_ms,
                last: None,
                credited_until_ms: started_ms,
                epoch_bytes: 0,
                epoch_on_time_bytes: 0,
            },
        );
        Ok(())
    }

    /// Changes how many receipts one `verify_batch` call checks at most.
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.config.batch_size = batch_size.max(1);
    }

    /// Turns [`VerifierConfig::supersede_older`] on or off.
    pub fn set_supersede_older(&mut self, supersede_older: bool) {
        self.config.supersede_older = supersede_older;
    }

    /// Number of sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Verifies `receipts` submitted by `node` at `now_ms`; returns one outcome per receipt, in
    /// order. Accepted receipts update their session (so a replay of any of them is rejected).
    ///
    /// Without [`VerifierConfig::supersede_older`] receipts are checked in the order given. With
    /// it, each session's receipts newer than its last accepted one are tried newest first: the
    /// first that passes every check is accepted and credited with all bytes since the last
    /// accepted receipt, the older ones are superseded, and the newer ones keep the reason they
    /// failed. Receipts not newer than the last accepted one are checked fully and rejected as
    /// duplicates or replays, as without the option.
    pub fn verify_batch(
        &mut self,
        node: &NodeId,
        receipts: &[SignedReceipt],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let items: Vec<(NodeId, &SignedReceipt)> = receipts.iter().map(|r| (*node, r)).collect();
        self.verify_items(&items, content, now_ms)
    }

    /// Like [`Self::verify_batch`] for receipts from many nodes at once, each paired with the
    /// node that submitted it: larger signature batches verify faster.
    pub fn verify_submissions(
        &mut self,
        submissions: &[(NodeId, SignedReceipt)],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let items: Vec<(NodeId, &SignedReceipt)> =
            submissions.iter().map(|(node, r)| (*node, r)).collect();
        self.verify_items(&items, content, now_ms)
    }

    fn verify_items(
        &mut self,
        items: &[(NodeId, &SignedReceipt)],
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Vec<Result<Credit, ReceiptRejection>> {
        let mut outcomes: Vec<Result<Credit, ReceiptRejection>> = items
            .iter()
            .map(|(node, r)| self.check_grant(node, r).map(|_| placeholder(r)))
            .collect();
        let granted: Vec<usize> = (0..items.len())
            .filter(|&i| outcomes.get(i).is_some_and(Result::is_ok))
            .collect();
        if self.config.supersede_older {
            self.verify_newest_first(items, granted, content, now_ms, &mut outcomes);
        } else {
            self.check_and_apply(items, &granted, content, now_ms, &mut outcomes);
        }
        outcomes
    }

    /// Checks the signatures of `indices`, then applies the valid ones in the order given.
    fn check_and_apply(
        &mut self,
        items: &[(NodeId, &SignedReceipt)],
        indices: &[usize],
        content: &impl SegmentDigestSource,
        now_ms: u64,
        outcomes: &mut [Result<Credit, ReceiptRejection>],
    ) {
        self.check_signatures(items, indices, outcomes);
        for &i in indices {
            if let (Some(outcome), Some((_, receipt))) = (outcomes.get_mut(i), items.get(i)) {
                if outcome.is_ok() {
                    *outcome = self.apply(receipt, content, now_ms);
                }
            }
        }
    }

    /// The [`VerifierConfig::supersede_older`] path over the granted receipts `granted`.
    fn verify_newest_first(
        &mut self,
        items: &[(NodeId, &SignedReceipt)],
        granted: Vec<usize>,
        content: &impl SegmentDigestSource,
        now_ms: u64,
        outcomes: &mut [Result<Credit, ReceiptRejection>],
    ) {
        let body = |i: usize| items.get(i).map(|(_, r)| &r.body);
        // Receipts not newer than the session's last accepted one can only be rejected
        // (duplicate, outdated or replay); check them fully, against the state before this call.
        let mut stale = Vec::new();
        let mut fresh = Vec::with_capacity(granted.len());
        for i in granted {
            let Some(r) = body(i) else { continue };
            let last_seq = self
                .sessions
                .get(&r.session_id)
                .and_then(|s| s.last)
                .map(|l| l.seq);
            if last_seq.is_some_and(|last| r.seq <= last) {
                stale.push(i);
            } else {
                fresh.push(i);
            }
        }
        self.check_and_apply(items, &stale, content, now_ms, outcomes);

        // One queue per session (in session order), newest first; among equal sequence numbers,
        // the first submitted first.
        let session = |i: usize| body(i).map(|r| r.session_id);
        fresh.sort_unstable_by_key(|&i| (body(i).map(|r| (r.session_id, Reverse(r.seq))), i));
        let mut queues: Vec<_> = fresh
            .chunk_by(|&a, &b| session(a) == session(b))
            .map(|queue| queue.iter().copied())
            .collect();
        // Each round tries the next candidate of every session without an accepted receipt.
        let mut leftover = Vec::new();
        let mut round: Vec<(usize, usize)> = queues
            .iter_mut()
            .enumerate()
            .filter_map(|(q, queue)| Some((q, queue.next()?)))
            .collect();
        while !round.is_empty() {
            let indices: Vec<usize> = round.iter().map(|&(_, i)| i).collect();
            self.check_signatures(items, &indices, outcomes);
            let mut next_round = Vec::new();
            for (q, i) in round {
                let (Some((_, receipt)), Some(queue)) = (items.get(i), queues.get_mut(q)) else {
                    continue;
                };
                if let Some(outcome) = outcomes.get_mut(i) {
                    if outcome.is_ok() {
                        *outcome = self.apply(receipt, content, now_ms);
                    }
                }
                if !outcomes.get(i).is_some_and(Result::is_ok) {
                    if let Some(next) = queue.next() {
                        next_round.push((q, next));
                    }
                    continue;
                }
                let accepted = &receipt.body;
                for older in queue.by_ref() {
                    match (body(older), outcomes.get_mut(older)) {
                        (Some(r), Some(o)) if r.seq < accepted.seq => {
                            *o = Err(ReceiptRejection::Superseded {
                                session: r.session_id,
                                seq: r.seq,
                                by: accepted.seq,
                            });
                        }
                        // Same sequence number as the accepted receipt: a duplicate or a
                        // conflicting receipt, checked fully below.
                        _ => leftover.push(older),
                    }
                }
            }
            round = next_round;
        }
        leftover.sort_unstable();
        self.check_and_apply(items, &leftover, content, now_ms, outcomes);
    }

    /// Drains every session's usage since the previous call (sessions without new bytes are
    /// skipped), sorted by session id.
    pub fn take_usage(&mut self) -> Vec<SessionUsage> {
        let mut usage: Vec<SessionUsage> = self
            .sessions
            .values_mut()
            .filter(|s| s.epoch_bytes > 0)
            .map(|s| {
                let last = s
                    .last
                    .map_or((0, s.started_ms), |l| (l.bytes_total, l.t_ms));
                let entry = SessionUsage {
                    session_id: s.grant.session_id,
                    node_id: s.grant.node_id,
                    viewer: s.grant.viewer,
                    stream_id: s.grant.stream_id.clone(),
                    bytes: s.epoch_bytes,
                    on_time_bytes: s.epoch_on_time_bytes,
                    bytes_total: last.0,
                    started_ms: s.started_ms,
                    last_receipt_ms: last.1,
                    covers_from_ms: Some(s.credited_until_ms),
                };
                s.credited_until_ms = last.1;
                s.epoch_bytes = 0;
                s.epoch_on_time_bytes = 0;
                entry
            })
            .collect();
        usage.sort_by_key(|u| u.session_id);
        usage
    }

    /// Forgets sessions whose grant expired before `before_ms` (call after [`Self::take_usage`]).
    pub fn prune_expired(&mut self, before_ms: u64) {
        self.sessions.retain(|_, s| s.grant.expiry_ms >= before_ms);
    }

    fn check_grant(&self, node: &NodeId, receipt: &SignedReceipt) -> Result<(), ReceiptRejection> {
        let session = receipt.body.session_id;
        let state = self
            .sessions
            .get(&session)
            .ok_or(ReceiptRejection::UnknownSession { session })?;
        if state.grant.node_id != *node {
            return Err(ReceiptRejection::WrongNode {
                session,
                granted: state.grant.node_id,
                claimed: *node,
            });
        }
        Ok(())
    }

    /// Checks the signatures of the receipts at `candidates` (all with a granted session),
    /// marking the bad ones in `outcomes`.
    fn check_signatures(
        &self,
        items: &[(NodeId, &SignedReceipt)],
        candidates: &[usize],
        outcomes: &mut [Result<Credit, ReceiptRejection>],
    ) {
        let chunk = self.config.batch_size.max(1);
        for indices in candidates.chunks(chunk) {
            let mut checked = Vec::with_capacity(indices.len());
            let mut messages = Vec::with_capacity(indices.len());
            let mut signatures = Vec::with_capacity(indices.len());
            let mut keys = Vec::with_capacity(indices.len());
            for &i in indices {
                let Some((receipt, state)) = items
                    .get(i)
                    .and_then(|(_, r)| Some((*r, self.sessions.get(&r.body.session_id)?)))
                else {
                    continue;
                };
                checked.push(i);
                messages.push(receipt.body.canonical_bytes());
                signatures.push(receipt.signature.to_signature());
                keys.push(state.viewer_key);
            }
            let batch_ok = self.config.signature_check == SignatureCheck::Batch && {
                let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
            };
            if batch_ok {
                continue;
            }
            for (k, &i) in checked.iter().enumerate() {
                let valid = match (messages.get(k), signatures.get(k), keys.get(k)) {
                    (Some(m), Some(s), Some(key)) => key.verify_strict(m, s).is_ok(),
                    _ => false,
                };
                if !valid {
                    if let (Some(outcome), Some((_, receipt))) = (outcomes.get_mut(i), items.get(i))
                    {
                        *outcome = Err(ReceiptRejection::BadSignature {
                            session: receipt.body.session_id,
                            seq: receipt.body.seq,
                        });
                    }
                }
            }
        }
    }

    fn apply(
        &mut self,
        receipt: &SignedReceipt,
        content: &impl SegmentDigestSource,
        now_ms: u64,
    ) -> Result<Credit, ReceiptRejection> {
        let r = &receipt.body;
        let session = r.session_id;
        let config = &self.config;
        let state = self
            .sessions
            .get_mut(&session)
            .ok_or(ReceiptRejection::UnknownSession { session })?;
        let previous = state.last;
        if let Some(last) = previous {
            if r.seq == last.seq && r.bytes_total == last.bytes_total {
                return Err(ReceiptRejection::Duplicate {
                    session,
                    seq: r.seq,
                });
            }
            if r.seq < last.seq
                && r.bytes_total <= last.bytes_total
                && r.last_segment_seq <= last.last_segment_seq
                && r.t_ms <= last.t_ms
            {
                return Err(ReceiptRejection::Outdated {
                    session,
                    seq: r.seq,
                    last_seq: last.seq,
                });
            }
            if r.seq <= last.seq {
                return Err(ReceiptRejection::Replayed {
                    session,
                    seq: r.seq,
                    last_seq: last.seq,
                });
            }
            for (field, before, now) in [
                ("bytes_total", last.bytes_total, r.bytes_total),
                (
                    "last_segment_seq",
                    last.last_segment_seq,
                    r.last_segment_seq,
                ),
                ("t_ms", last.t_ms, r.t_ms),
            ] {
                if now < before {
                    return Err(ReceiptRejection::NotMonotonic {
                        session,
                        seq: r.seq,
                        field,
                        previous: before,
                        received: now,
                    });
                }
            }
        }
        if r.t_ms > state.grant.expiry_ms {
            return Err(ReceiptRejection::Expired {
                session,
                t_ms: r.t_ms,
                expiry_ms: state.grant.expiry_ms,
            });
        }
        if r.t_ms > now_ms.saturating_add(config.max_clock_lead_ms) {
            return Err(ReceiptRejection::FromTheFuture {
                session,
                t_ms: r.t_ms,
                now_ms,
            });
        }
        if r.bytes_total > state.grant.max_bytes {
            return Err(ReceiptRejection::BeyondGrant {
                session,
                bytes_total: r.bytes_total,
                max_bytes: state.grant.max_bytes,
            });
        }
        let segment = content
            .segment(&state.grant.stream_id, r.last_segment_seq)
            .ok_or(ReceiptRejection::UnknownSegment {
                session,
                segment_seq: r.last_segment_seq,
            })?;
        if segment.digest != r.segments_digest {
            return Err(ReceiptRejection::ContentMismatch {
                session,
                segment_seq: r.last_segment_seq,
            });
        }
        let lag_ms = r.t_ms.saturating_sub(segment.published_ms);
        if lag_ms > config.stale_after_ms {
            return Err(ReceiptRejection::StaleContent {
                session,
                segment_seq: r.last_segment_seq,
                lag_ms,
                limit_ms: config.stale_after_ms,
            });
        }
        let bytes = r
            .bytes_total
            .saturating_sub(previous.map_or(0, |l| l.bytes_total));
        let on_time = lag_ms <= config.on_time_lag_ms;
        state.last = Some(LastAccepted {
            seq: r.seq,
            bytes_total: r.bytes_total,
            last_segment_seq: r.last_segment_seq,
            t_ms: r.t_ms,
        });
        state.epoch_bytes = state.epoch_bytes.saturating_add(bytes);
        if on_time {
            state.epoch_on_time_bytes = state.epoch_on_time_bytes.saturating_add(bytes);
        }
        Ok(Credit {
            session_id: session,
            bytes,
            on_time,
        })
    }
}

fn placeholder(receipt: &SignedReceipt) -> Credit {
    Credit {
        session_id: receipt.body.session_id,
        bytes: 0,
        on_time: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{OriginDigests, SegmentChain, SegmentRecord};
    use crate::identity::KeyPair;
    use crate::ids::ContentDigest;
    use crate::receipt::ViewerReceipt;
    use crate::signed::Signed;
    use proptest::prelude::*;

    const T0: u64 = 1_000_000;

    struct Fixture {
        verifier: ReceiptVerifier,
        origin: OriginDigests,
        digests: Vec<ContentDigest>,
        viewer: KeyPair,
        node: NodeId,
        session: SessionId,
    }

    /// 100 segments published 2 s apart from T0; one session granted for 1 MB until T0 + 300 s.
    fn fixture(check: SignatureCheck) -> Fixture {
        let stream = StreamId::new("live").unwrap();
        let mut chain = SegmentChain::genesis(0);
        let mut origin = OriginDigests::new();
        let mut digests = Vec::new();
        for seq in 0..100u64 {
            let digest = chain.push(&crate::segment_hash(&seq.to_be_bytes()));
            digests.push(digest);
            origin.insert(
                stream.clone(),
                seq,
                SegmentRecord {
                    digest,
                    published_ms: T0 + seq * 2_000,
                },
            );
        }
        let coordinator = KeyPair::from_seed([1; 32]);
        let viewer = KeyPair::from_seed([2; 32]);
        let node = KeyPair::from_seed([3; 32]).node_id();
        let session = SessionId::from_bytes([7; 16]);
        let grant = Signed::sign(
            SessionGrant {
                session_id: session,
                viewer: viewer.viewer_key(),
                node_id: node,
                stream_id: stream,
                max_bytes: 1_000_000,
                expiry_ms: T0 + 300_000,
            },
            &coordinator,
        );
        let mut verifier = ReceiptVerifier::new(VerifierConfig {
            signature_check: check,
            batch_size: 4,
            ..VerifierConfig::default()
        });
        verifier
            .admit_signed_grant(&grant, &coordinator.coordinator_key(), T0)
            .unwrap();
        Fixture {
            verifier,
            origin,
            digests,
            viewer,
            node,
            session,
        }
    }

    impl Fixture {
        /// A receipt acknowledging segment `segment` one second after its publication.
        fn receipt(&self, seq: u64, bytes_total: u64, segment: u64) -> SignedReceipt {
            Signed::sign(
                ViewerReceipt {
                    session_id: self.session,
                    seq,
                    bytes_total,
                    last_segment_seq: segment,
                    segments_digest: self.digests[segment as usize],
                    t_ms: T0 + segment * 2_000 + 1_000,
                },
                &self.viewer,
            )
        }

        fn submit(&mut self, receipts: &[SignedReceipt]) -> Vec<Result<Credit, ReceiptRejection>> {
            let node = self.node;
            self.verifier
                .verify_batch(&node, receipts, &self.origin, T0 + 1_000_000)
        }

        /// A receipt whose body was changed after signing: its signature does not verify.
        fn forged(&self, seq: u64, bytes_total: u64, segment: u64) -> SignedReceipt {
            let mut r = self.receipt(seq, bytes_total - 1, segment);
            r.body.bytes_total = bytes_total;
            r
        }

        fn usage_bytes(&mut self) -> u64 {
            self.verifier.take_usage().iter().map(|u| u.bytes).sum()
        }
    }

    /// The fixture with [`VerifierConfig::supersede_older`] on.
    fn newest_first() -> Fixture {
        let mut f = fixture(SignatureCheck::Batch);
        f.verifier.set_supersede_older(true);
        f
    }

    fn tally(outcomes: &[Result<Credit, ReceiptRejection>]) -> crate::ReceiptTally {
        let mut tally = crate::ReceiptTally::default();
        outcomes.iter().for_each(|o| tally.record(o));
        tally
    }

    fn superseded(session: SessionId, seq: u64, by: u64) -> Result<Credit, ReceiptRejection> {
        Err(ReceiptRejection::Superseded { session, seq, by })
    }

    #[test]
    fn the_newest_receipt_supersedes_older_ones_and_nothing_counts_twice() {
        let mut f = newest_first();
        let session = f.session;
        let receipts: Vec<_> = (1..=4).map(|i| f.receipt(i, i * 1000, i)).collect();
        let outcomes = f.submit(&receipts);
        assert_eq!(
            outcomes,
            [
                superseded(session, 1, 4),
                superseded(session, 2, 4),
                superseded(session, 3, 4),
                Ok(Credit {
                    session_id: session,
                    bytes: 4000,
                    on_time: true
                }),
            ]
        );
        let t = tally(&outcomes);
        assert_eq!(
            (t.submitted, t.accepted, t.forged, t.replayed),
            (4, 1, 0, 0)
        );
        assert_eq!(f.usage_bytes(), 4000);

        // The same receipts again: none is superseded now, all are older than the last accepted
        // (the viewer's own, so outdated: nothing against the node).
        let again = f.submit(&receipts);
        assert_eq!(
            again[3],
            Err(ReceiptRejection::Duplicate { session, seq: 4 })
        );
        for (seq, outcome) in (1..=3).zip(&again) {
            assert_eq!(
                *outcome,
                Err(ReceiptRejection::Outdated {
                    session,
                    seq,
                    last_seq: 4
                })
            );
        }
        assert_eq!(tally(&again).replayed, 0);
        // Then a newer one, submitted with the older ones (out of order): only its increment.
        let mut next = receipts.clone();
        next.insert(1, f.receipt(6, 6500, 6));
        next.push(f.receipt(5, 5000, 5));
        let outcomes = f.submit(&next);
        assert_eq!(outcomes[1].as_ref().map(|c| c.bytes), Ok(2500));
        assert_eq!(outcomes[5], superseded(session, 5, 6));
        assert_eq!(tally(&outcomes).accepted, 1);
        assert_eq!(f.usage_bytes(), 2500);
    }

    #[test]
    fn a_forged_newest_receipt_falls_back_to_the_newest_valid_one() {
        let mut f = newest_first();
        let session = f.session;
        let mut receipts: Vec<_> = (1..=3).map(|i| f.receipt(i, i * 1000, i)).collect();
        receipts.push(f.forged(4, 900_000, 4));
        let mut wrong_content = f.receipt(5, 950_000, 5);
        wrong_content.body.segments_digest = f.digests[4];
        receipts.push(Signed::sign(wrong_content.body, &f.viewer));
        let outcomes = f.submit(&receipts);
        assert_eq!(
            outcomes,
            [
                superseded(session, 1, 3),
                superseded(session, 2, 3),
                Ok(Credit {
                    session_id: session,
                    bytes: 3000,
                    on_time: true
                }),
                Err(ReceiptRejection::BadSignature { session, seq: 4 }),
                Err(ReceiptRejection::ContentMismatch {
                    session,
                    segment_seq: 5
                }),
            ]
        );
        let t = tally(&outcomes);
        assert_eq!((t.accepted, t.forged, t.wrong_content), (1, 1, 1));
        assert_eq!(f.usage_bytes(), 3000);

        // Every receipt forged: nothing is credited and each one is named.
        let forged: Vec<_> = (6..=8).map(|i| f.forged(i, i * 1000, i)).collect();
        let outcomes = f.submit(&forged);
        assert_eq!(tally(&outcomes).forged, 3);
        assert_eq!(f.usage_bytes(), 0);
    }

    #[test]
    fn replayed_receipts_are_checked_in_full_and_rejected() {
        let mut f = newest_first();
        let session = f.session;
        let receipts: Vec<_> = (1..=3).map(|i| f.receipt(i, i * 1000, i)).collect();
        assert!(f.submit(&receipts)[2].is_ok());
        // An older receipt as the viewer signed it: outdated, not held against the node.
        assert_eq!(
            f.submit(&receipts[1..2]),
            [Err(ReceiptRejection::Outdated {
                session,
                seq: 2,
                last_seq: 3
            })]
        );
        // An older sequence number the viewer signed with more bytes than it acknowledged
        // since: it does not fit under the accepted receipt, a replay.
        let over = f.receipt(2, 3500, 2);
        assert_eq!(
            f.submit(&[over]),
            [Err(ReceiptRejection::Replayed {
                session,
                seq: 2,
                last_seq: 3
            })]
        );
        // An old receipt altered by the node is still caught as forged, not as a replay.
        let altered = f.forged(2, 2500, 2);
        assert_eq!(
            f.submit(&[altered, f.receipt(4, 4000, 4)]),
            [
                Err(ReceiptRejection::BadSignature { session, seq: 2 }),
                Ok(Credit {
                    session_id: session,
                    bytes: 1000,
                    on_time: true
                }),
            ]
        );
        // Two different receipts with the newest sequence number: the first one submitted wins,
        // the other one is a replay.
        let first = f.receipt(5, 5000, 5);
        let conflicting = f.receipt(5, 5500, 5);
        let outcomes = f.submit(&[first, conflicting]);
        assert_eq!(outcomes[0].as_ref().map(|c| c.bytes), Ok(1000));
        assert!(matches!(
            outcomes[1],
            Err(ReceiptRejection::Replayed { seq: 5, .. })
        ));
        assert_eq!(f.usage_bytes(), 5000);
    }

    #[test]
    fn non_monotonic_receipts_across_submissions_are_rejected() {
        let mut f = newest_first();
        let session = f.session;
        assert!(f.submit(&[f.receipt(1, 1000, 1), f.receipt(2, 3000, 2)])[1].is_ok());
        assert!(matches!(
            f.submit(&[f.receipt(3, 2000, 3)])[0],
            Err(ReceiptRejection::NotMonotonic {
                field: "bytes_total",
                previous: 3000,
                received: 2000,
                ..
            })
        ));
        // A newest receipt that goes backwards against the last accepted one falls back to the
        // next newest.
        let outcomes = f.submit(&[f.receipt(4, 4000, 4), f.receipt(5, 2900, 5)]);
        assert!(matches!(
            outcomes[1],
            Err(ReceiptRejection::NotMonotonic {
                field: "bytes_total",
                ..
            })
        ));
        assert_eq!(
            outcomes[0],
            Ok(Credit {
                session_id: session,
                bytes: 1000,
                on_time: true
            })
        );
        assert_eq!(f.usage_bytes(), 4000);
        assert_eq!(tally(&outcomes).replayed, 1);
    }

    #[test]
    fn cumulative_receipts_credit_their_increments() {
        let mut f = fixture(SignatureCheck::Batch);
        let receipts = [
            f.receipt(1, 1000, 1),
            f.receipt(2, 5000, 3),
            f.receipt(3, 5000, 4),
        ];
        let credits: Vec<u64> = f
            .submit(&receipts)
            .into_iter()
            .map(|o| o.unwrap().bytes)
            .collect();
        assert_eq!(credits, [1000, 4000, 0]);
        let usage = f.verifier.take_usage();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].bytes, usage[0].on_time_bytes), (5000, 5000));
        assert!(f.verifier.take_usage().is_empty());
    }

    #[test]
    fn each_violation_is_rejected_with_its_reason() {
        let mut f = fixture(SignatureCheck::Batch);
        assert!(f.submit(&[f.receipt(5, 1000, 5)])[0].is_ok());
        let session = f.session;

        assert_eq!(
            f.submit(&[f.receipt(5, 1000, 5)])[0],
            Err(ReceiptRejection::Duplicate { session, seq: 5 })
        );
        let replay = f.submit(&[f.receipt(5, 2000, 6)]);
        assert_eq!(
            replay[0],
            Err(ReceiptRejection::Replayed {
                session,
                seq: 5,
                last_seq: 5
            })
        );
        let backwards = f.submit(&[f.receipt(6, 500, 6)]);
        assert!(matches!(
            backwards[0],
            Err(ReceiptRejection::NotMonotonic {
                field: "bytes_total",
                ..
            })
        ));
        let beyond = f.submit(&[f.receipt(7, 1_000_001, 7)]);
        assert!(matches!(
            beyond[0],
            Err(ReceiptRejection::BeyondGrant { .. })
        ));

        let mut wrong = f.receipt(8, 2000, 8);
        wrong.body.segments_digest = f.digests[7];
        let wrong = Signed::sign(wrong.body, &f.viewer);
        assert!(matches!(
            f.submit(&[wrong])[0],
            Err(ReceiptRejection::ContentMismatch { segment_seq: 8, .. })
        ));

        let mut stale = f.receipt(9, 2000, 9).body;
        stale.t_ms += 61_000;
        assert!(matches!(
            f.submit(&[Signed::sign(stale, &f.viewer)])[0],
            Err(ReceiptRejection::StaleContent { lag_ms: 62_000, .. })
        ));

        let mut late = f.receipt(10, 2000, 99).body;
        late.t_ms = T0 + 300_001;
        assert!(matches!(
            f.submit(&[Signed::sign(late, &f.viewer)])[0],
            Err(ReceiptRejection::Expired { .. })
        ));

        let mut forged = f.receipt(11, 2000, 11);
        forged.body.bytes_total = 900_000;
        assert_eq!(
            f.submit(&[forged])[0],
            Err(ReceiptRejection::BadSignature { session, seq: 11 })
        );

        let other = KeyPair::from_seed([9; 32]).node_id();
        let r = f.receipt(12, 3000, 12);
        let origin = f.origin.clone();
        assert!(matches!(
            f.verifier.verify_batch(&other, &[r], &origin, T0)[0],
            Err(ReceiptRejection::WrongNode { .. })
        ));
        let mut unknown = f.receipt(13, 3000, 13).body;
        unknown.session_id = SessionId::from_bytes([0; 16]);
        assert!(matches!(
            f.submit(&[Signed::sign(unknown, &f.viewer)])[0],
            Err(ReceiptRejection::UnknownSession { .. })
        ));
        // After all that, only the first receipt's bytes were credited.
        assert_eq!(f.verifier.take_usage()[0].bytes, 1000);
    }

    #[test]
    fn a_bad_signature_inside_a_batch_is_singled_out() {
        let mut batch = fixture(SignatureCheck::Batch);
        let mut single = fixture(SignatureCheck::OneByOne);
        let mut receipts: Vec<_> = (1..=10).map(|i| batch.receipt(i, i * 100, i)).collect();
        receipts[6].body.bytes_total += 1;
        let a = batch.submit(&receipts);
        let b = single.submit(&receipts);
        assert_eq!(a, b);
        let rejected: Vec<usize> = a
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(rejected, [6]);

        // The same receipts submitted through the many-node entry point, one by another node.
        let mut many = fixture(SignatureCheck::Batch);
        let stranger = KeyPair::from_seed([9; 32]).node_id();
        let submissions: Vec<(NodeId, SignedReceipt)> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| (if i == 2 { stranger } else { many.node }, r.clone()))
            .collect();
        let origin = many.origin.clone();
        let c = many
            .verifier
            .verify_submissions(&submissions, &origin, T0 + 1_000_000);
        assert!(matches!(c[2], Err(ReceiptRejection::WrongNode { .. })));
        assert!(matches!(c[6], Err(ReceiptRejection::BadSignature { .. })));
        assert_eq!(c.iter().filter(|o| o.is_ok()).count(), 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Honest receipts, some forged, split over submissions in any order: newest first
        /// credits exactly what checking every receipt in order credits (the newest genuine
        /// receipt's `bytes_total`), accepts at most one receipt per submission, and names every
        /// forged receipt newer than the accepted one.
        #[test]
        fn newest_first_credits_what_checking_every_receipt_credits(
            receipts in proptest::collection::vec((1u64..5_000, any::<bool>(), 0usize..3), 1..16),
            shuffle_seed in any::<u64>(),
        ) {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut every = fixture(SignatureCheck::Batch);
            let mut newest = newest_first();
            let mut total = 0;
            let mut genuine_total = 0;
            let mut credited_total = 0;
            let mut submissions = vec![Vec::new(); 3];
            for (i, (inc, forged, submission)) in receipts.iter().enumerate() {
                total += inc;
                let seq = i as u64 + 1;
                let r = if *forged {
                    every.forged(seq, total, seq)
                } else {
                    genuine_total = total;
                    every.receipt(seq, total, seq)
                };
                submissions[*submission].push(r);
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(shuffle_seed);
            for submission in &mut submissions {
                submission.shuffle(&mut rng);
                every.submit(submission);
                let outcomes = newest.submit(submission);
                let accepted: Vec<u64> = submission
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.is_ok())
                    .map(|(r, _)| r.body.seq)
                    .collect();
                prop_assert!(accepted.len() <= 1);
                let credited: u64 = outcomes.iter().flatten().map(|c| c.bytes).sum();
                prop_assert_eq!(credited, newest.usage_bytes());
                credited_total += credited;
                for (r, o) in submission.iter().zip(&outcomes) {
                    let is_forged = receipts[r.body.seq as usize - 1].1;
                    if let Err(ReceiptRejection::Superseded { by, .. }) = o {
                        prop_assert_eq!(Some(by), accepted.first());
                        prop_assert!(r.body.seq < *by);
                    } else if is_forged {
                        prop_assert!(
                            matches!(o, Err(ReceiptRejection::BadSignature { .. })),
                            "{:?}",
                            o
                        );
                    }
                }
            }
            prop_assert_eq!(every.usage_bytes(), genuine_total);
            let last = newest.verifier.sessions.get(&newest.session).and_then(|s| s.last);
            prop_assert_eq!(last.map_or(0, |l| l.bytes_total), genuine_total);
            prop_assert_eq!(credited_total, genuine_total);
        }

        /// However accepted receipts are resubmitted (reordered, duplicated), the session is never
        /// credited more than the newest receipt's `bytes_total`.
        #[test]
        fn receipts_cannot_be_replayed(
            increments in proptest::collection::vec(1u64..5_000, 1..12),
            replays in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        ) {
            let mut f = fixture(SignatureCheck::Batch);
            let mut total = 0;
            let receipts: Vec<_> = increments
                .iter()
                .enumerate()
                .map(|(i, inc)| {
                    total += inc;
                    f.receipt(i as u64 + 1, total, i as u64 + 1)
                })
                .collect();
            prop_assert!(f.submit(&receipts).iter().all(Result::is_ok));
            let again: Vec<_> = replays.iter().map(|ix| ix.get(&receipts).clone()).collect();
            for outcome in f.submit(&again) {
                let is_replay = matches!(
                    outcome,
                    Err(ReceiptRejection::Replayed { .. }
                        | ReceiptRejection::Outdated { .. }
                        | ReceiptRejection::Duplicate { .. })
                );
                prop_assert!(is_replay);
            }
            prop_assert_eq!(f.verifier.take_usage()[0].bytes, total);
        }
    }
}
