//! Receipts a relay signs for what its parent in the relay tree delivered.
//!
//! The coordinator hands a relay, with its place in the tree, a session grant for each upstream
//! (its parent, then the parent's ancestors) naming the relay's own key as the viewer. The relay
//! cuts the same HLS segments as every tier (the origin's timeline), so it checks each segment it
//! cuts from the pulled feed against the origin's reported hashes, exactly as a viewer does, and
//! signs a cumulative receipt on the grant of the upstream it is pulling from. Receipts go to the
//! coordinator (`POST /receipts`), which credits them to that upstream. What the parent is paid
//! for them is bounded by what the relay's own subtree verifiably delivers (the
//! `relay_beyond_subtree` rule).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use streamr_client::client::{unix_ms, CoordinatorClient};
use streamr_core::{ContentDigest, KeyPair, SessionId, SignedGrant};
use streamr_media::http::SegmentNotice;
use streamr_media::upstream::UpstreamPuller;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::viewer::origin::OriginIndex;
use crate::viewer::receipts::{SegmentCheck, SessionReceipts};

/// Segments of one stream kept waiting for the origin's report of them; older ones are given
/// up (the origin never reported them: not its content, or its report was lost).
const MAX_PENDING: usize = 6;

/// The grants the relay tree issued this relay, per stream and upstream address.
#[derive(Debug, Default)]
pub(crate) struct EdgeGrants {
    by_upstream: Mutex<HashMap<(String, String), SignedGrant>>,
}

impl EdgeGrants {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), SignedGrant>> {
        self.by_upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the grant that admits this relay to `upstream` (its RTMP base) for `stream`.
    pub(crate) fn record(&self, stream: &str, upstream: &str, grant: SignedGrant) {
        self.lock()
            .insert((stream.to_owned(), upstream.to_owned()), grant);
    }

    /// The grant for pulling `stream` from `upstream`, while it is unexpired at `now_ms`.
    pub(crate) fn current(&self, stream: &str, upstream: &str, now_ms: u64) -> Option<SignedGrant> {
        self.lock()
            .get(&(stream.to_owned(), upstream.to_owned()))
            .filter(|grant| grant.body.expiry_ms > now_ms)
            .cloned()
    }
}

/// A segment the relay cut, waiting to be checked against the origin's reports.
#[derive(Debug, Clone, Copy)]
struct Cut {
    session: SessionId,
    hash: ContentDigest,
    len: usize,
}

/// The receipt state of every edge session and the origin's hashes of every relayed stream
/// (sans-IO: fed segments and origin reports, it returns receipts to post).
#[derive(Debug, Default)]
pub(crate) struct RelayReceipts {
    origins: HashMap<String, OriginIndex>,
    pending: HashMap<String, VecDeque<Cut>>,
    sessions: HashMap<SessionId, SessionReceipts>,
}

impl RelayReceipts {
    /// Queues a segment of `stream` the relay cut while pulling on the grant of `session`.
    pub(crate) fn cut(
        &mut self,
        stream: &str,
        session: SessionId,
        hash: ContentDigest,
        len: usize,
    ) {
        let queue = self.pending.entry(stream.to_owned()).or_default();
        queue.push_back(Cut { session, hash, len });
        while queue.len() > MAX_PENDING {
            if let Some(dropped) = queue.pop_front() {
                debug!(stream, hash = %dropped.hash, "the origin never reported a relayed segment");
            }
        }
    }

    /// Whether the oldest waiting segment of `stream` is unknown to the origin's index (a
    /// refresh from the coordinator may find it).
    pub(crate) fn needs_refresh(&self, stream: &str) -> bool {
        let Some(front) = self.pending.get(stream).and_then(VecDeque::front) else {
            return false;
        };
        self.origins
            .get(stream)
            .is_none_or(|index| index.find(&front.hash, None).is_none())
    }

    /// The origin's index of `stream`, to refresh.
    pub(crate) fn origin_mut(&mut self, stream: &str) -> &mut OriginIndex {
        self.origins.entry(stream.to_owned()).or_default()
    }

    /// Checks the waiting segments of `stream` the origin has reported, in order, and signs a
    /// receipt for each session that verified new bytes.
    pub(crate) fn receipts(
        &mut self,
        stream: &str,
        key: &KeyPair,
    ) -> Vec<streamr_core::SignedReceipt> {
        let Some(index) = self.origins.get(stream) else {
            return Vec::new();
        };
        let Some(queue) = self.pending.get_mut(stream) else {
            return Vec::new();
        };
        let mut touched: Vec<SessionId> = Vec::new();
        while let Some(front) = queue.front().copied() {
            if index.find(&front.hash, None).is_none() {
                break;
            }
            queue.pop_front();
            let session = self
                .sessions
                .entry(front.session)
                .or_insert_with(|| SessionReceipts::new(front.session));
            match session.check_hash(index, &front.hash, front.len) {
                SegmentCheck::Verified { .. } => {
                    if !touched.contains(&front.session) {
                        touched.push(front.session);
                    }
                }
                SegmentCheck::Unknown => {
                    debug!(stream, hash = %front.hash, "a relayed segment does not continue the origin's chain");
                }
            }
        }
        touched
            .iter()
            .filter_map(|id| self.sessions.get_mut(id)?.next_receipt(key))
            .collect()
    }

    /// Forgets sessions whose grants are no longer in use.
    pub(crate) fn retain_sessions(&mut self, live: impl Fn(&SessionId) -> bool) {
        self.sessions.retain(|id, _| live(id));
    }
}

/// Signs receipts for the segments the relay cuts from its upstreams until `stop`, posting them
/// to the coordinator.
pub(crate) async fn sign_relay_receipts(
    client: CoordinatorClient,
    key: KeyPair,
    puller: UpstreamPuller,
    edges: Arc<EdgeGrants>,
    mut notices: broadcast::Receiver<SegmentNotice>,
    stop: CancellationToken,
) {
    let mut state = RelayReceipts::default();
    let mut sessions_in_use: HashMap<SessionId, u64> = HashMap::new();
    loop {
        let Some(notice) = crate::network::next_segment_notice(&mut notices, &stop, |missed| {
            warn!(missed, "relay receipts fell behind the segmenter")
        })
        .await
        else {
            return;
        };
        let stream = notice.key.name.as_str().to_owned();
        let Some(upstream) = puller.status(&notice.key).and_then(|s| s.upstream) else {
            continue;
        };
        let now = unix_ms();
        let Some(grant) = edges.current(&stream, &upstream, now) else {
            // A static upstream (no grant): nothing to sign for.
            continue;
        };
        sessions_in_use.insert(grant.body.session_id, grant.body.expiry_ms);
        state.cut(
            &stream,
            grant.body.session_id,
            ContentDigest::from_bytes(*notice.hash.as_bytes()),
            notice.len,
        );
        if state.needs_refresh(&stream) {
            if let Err(error) = state.origin_mut(&stream).refresh(&client, &stream).await {
                debug!(%stream, %error, "cannot fetch the origin's segment hashes");
            }
        }
        let receipts = state.receipts(&stream, &key);
        if !receipts.is_empty() {
            if let Err(error) = client.post_receipts(receipts).await {
                debug!(%stream, %error, "relay receipts not delivered");
            }
        }
        sessions_in_use.retain(|_, expiry| *expiry > now);
        state.retain_sessions(|id| sessions_in_use.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use streamr_core::{
        segment_hash, OriginDigests, ReceiptVerifier, SegmentChain, SegmentRecord, SessionGrant,
        StreamId, VerifierConfig,
    };

    use super::*;

    #[test]
    fn segments_wait_for_the_origins_report_then_verify_on_the_edges_grant() {
        let stream = StreamId::new("show").expect("valid id");
        let relay = KeyPair::from_seed([5; 32]);
        let parent = KeyPair::from_seed([6; 32]).node_id();
        let session = SessionId::from_bytes([7; 16]);
        let segments: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1_000 + usize::from(i)]).collect();
        let mut chain = SegmentChain::genesis(0);
        let mut digests = OriginDigests::new();
        let mut reported = Vec::new();
        for (seq, bytes) in segments.iter().enumerate() {
            let hash = segment_hash(bytes);
            let digest = chain.push(&hash);
            reported.push((seq as u64, hash, digest));
            digests.insert(
                stream.clone(),
                seq as u64,
                SegmentRecord {
                    digest,
                    published_ms: unix_ms(),
                },
            );
        }
        let mut state = RelayReceipts::default();
        // The relay cut segments 0 and 1 before the origin's reports reached the coordinator.
        for bytes in &segments[..2] {
            state.cut("show", session, segment_hash(bytes), bytes.len());
        }
        assert!(state.needs_refresh("show"));
        assert!(state.receipts("show", &relay).is_empty());
        for &(seq, hash, digest) in &reported[..3] {
            state.origin_mut("show").insert(seq, hash, digest);
        }
        state.cut(
            "show",
            session,
            segment_hash(&segments[2]),
            segments[2].len(),
        );
        // Altered bytes the origin never sent wait, and are given up, never receipted.
        state.cut("show", session, segment_hash(b"not the origin's"), 9);
        let receipts = state.receipts("show", &relay);
        assert_eq!(receipts.len(), 1, "one cumulative receipt per session");
        let total: usize = segments[..3].iter().map(Vec::len).sum();
        assert_eq!(receipts[0].body.bytes_total, total as u64);
        assert_eq!(receipts[0].body.last_segment_seq, 2);
        assert!(state.needs_refresh("show"));
        // The coordinator accepts it for the parent on the edge's grant, naming the relay.
        let mut verifier = ReceiptVerifier::new(VerifierConfig::default());
        verifier
            .admit_grant(
                SessionGrant {
                    session_id: session,
                    viewer: relay.viewer_key(),
                    node_id: parent,
                    stream_id: stream,
                    max_bytes: 1 << 30,
                    expiry_ms: unix_ms() + 60_000,
                },
                unix_ms(),
            )
            .expect("grant admitted");
        let outcomes = verifier.verify_batch(&parent, &receipts, &digests, unix_ms());
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
}
