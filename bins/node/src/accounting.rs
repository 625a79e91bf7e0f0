//! Bytes served per granted session, split into the two claims a heartbeat signs by
//! [`streamr_core::SessionAccounting`] (the same code the simulator runs; its docs say what is
//! attested and what unattested). This module only measures what each session was served.
//!
//! Where the bytes are counted:
//!
//! - HTTP (HLS playlists and segments, HTTP-FLV): the body of every successful response to a
//!   granted request, as it is handed to the connection, so a long-lived HTTP-FLV stream counts
//!   while it plays.
//! - RTMP: the relay hub's live per-viewer counters, read at each heartbeat, and the final
//!   counters when the play ends. A play is tied to its session by the peer address the grant
//!   was checked for. These are payload bytes: RTMP chunk headers are not counted.
//!
//! Limitation: the node sees only the receipts handed to it. A signing viewer that sends its
//! receipts to the coordinator instead is indistinguishable here from one that cannot sign, so
//! its bytes are reported as unattested (the coordinator nets them against the verified bytes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use streamr_core::{SessionAccounting, SessionGrant, SessionId};
use streamr_media::relay::{StreamKey, StreamStats, ViewerStats};

pub(crate) use streamr_core::Served;

/// What one session was served, as measured here.
#[derive(Debug)]
struct Counters {
    /// Bytes of HTTP responses, shared with the bodies still streaming.
    http: Arc<AtomicU64>,
    /// Bytes of RTMP plays still running, by viewer id (as last read from the hub).
    rtmp_playing: HashMap<u64, u64>,
    /// Bytes of RTMP plays that ended.
    rtmp_ended: u64,
}

impl Counters {
    fn served(&self) -> u64 {
        self.rtmp_playing
            .values()
            .fold(self.http.load(Ordering::Relaxed), |sum, bytes| {
                sum.saturating_add(*bytes)
            })
            .saturating_add(self.rtmp_ended)
    }

    /// A response is still streaming or a play still running.
    fn counting(&self) -> bool {
        Arc::strong_count(&self.http) > 1 || !self.rtmp_playing.is_empty()
    }
}

#[derive(Debug)]
struct State {
    core: SessionAccounting,
    counters: HashMap<SessionId, Counters>,
    /// RTMP connections whose grant was accepted, not yet playing, by peer address.
    rtmp_admitted: HashMap<SocketAddr, SessionId>,
    /// Running RTMP plays: (stream, viewer id) → session.
    rtmp_plays: HashMap<(StreamKey, u64), SessionId>,
}

/// The node's per-session byte accounting (see the module docs).
#[derive(Debug)]
pub(crate) struct Accounting {
    state: Mutex<State>,
}

impl Accounting {
    /// Accounting that waits `grace` of receipt silence before claiming bytes as unattested.
    pub(crate) fn new(grace: Duration) -> Self {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        Accounting {
            state: Mutex::new(State {
                core: SessionAccounting::new(grace_ms),
                counters: HashMap::new(),
                rtmp_admitted: HashMap::new(),
                rtmp_plays: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts (or continues) accounting the session `grant` opens; returns the counter its
    /// HTTP responses add to, or `None` when the table is full.
    pub(crate) fn open(&self, grant: &SessionGrant, now_ms: u64) -> Option<Arc<AtomicU64>> {
        let mut state = self.state();
        if let Some(counters) = state.counters.get(&grant.session_id) {
            return Some(counters.http.clone());
        }
        if !state.core.open(grant.session_id, grant.expiry_ms, now_ms) {
            return None;
        }
        let http = Arc::new(AtomicU64::new(0));
        state.counters.insert(
            grant.session_id,
            Counters {
                http: http.clone(),
                rtmp_playing: HashMap::new(),
                rtmp_ended: 0,
            },
        );
        Some(http)
    }

    /// Remembers that the RTMP connection from `peer` was admitted for `session`.
    pub(crate) fn rtmp_admitted(&self, peer: SocketAddr, session: SessionId) {
        let mut state = self.state();
        if state.counters.contains_key(&session)
            && state.rtmp_admitted.len() < streamr_core::MAX_ACCOUNTED_SESSIONS
        {
            state.rtmp_admitted.insert(peer, session);
        }
    }

    /// The admitted connection from `peer` plays `key` as the hub's viewer `viewer_id`.
    pub(crate) fn rtmp_started(&self, key: &StreamKey, peer: SocketAddr, viewer_id: u64) {
        let mut state = self.state();
        let Some(session) = state.rtmp_admitted.remove(&peer) else {
            return;
        };
        if let Some(counters) = state.counters.get_mut(&session) {
            counters.rtmp_playing.insert(viewer_id, 0);
            state.rtmp_plays.insert((key.clone(), viewer_id), session);
        }
    }

    /// The play of `key` by the hub's viewer `stats.id` ended with these final counters.
    pub(crate) fn rtmp_ended(&self, key: &StreamKey, peer: SocketAddr, stats: &ViewerStats) {
        let mut state = self.state();
        state.rtmp_admitted.remove(&peer);
        let Some(session) = state.rtmp_plays.remove(&(key.clone(), stats.id)) else {
            return;
        };
        if let Some(counters) = state.counters.get_mut(&session) {
            let live = counters.rtmp_playing.remove(&stats.id).unwrap_or(0);
            counters.rtmp_ended = counters
                .rtmp_ended
                .saturating_add(live.max(stats.bytes_out));
        }
    }

    /// The session's viewer handed over a receipt acknowledging `bytes_total` bytes.
    pub(crate) fn receipted(&self, session: &SessionId, bytes_total: u64, now_ms: u64) {
        self.state().core.receipted(*session, bytes_total, now_ms);
    }

    /// Reads the running RTMP plays' counters from `streams`, classifies what was served since
    /// the last call and is no longer pending, and hands over the totals for a heartbeat.
    pub(crate) fn take(&self, streams: &[StreamStats], now_ms: u64) -> Served {
        let mut state = self.state();
        let state = &mut *state;
        if !state.rtmp_plays.is_empty() {
            for stream in streams {
                for viewer in &stream.viewers {
                    let play = (stream.key.clone(), viewer.id);
                    let Some(session) = state.rtmp_plays.get(&play) else {
                        continue;
                    };
                    if let Some(counters) = state.counters.get_mut(session) {
                        let live = counters.rtmp_playing.entry(viewer.id).or_default();
                        *live = (*live).max(viewer.bytes_out);
                    }
                }
            }
        }
        for (session, counters) in &state.counters {
            state.core.served(*session, counters.served());
        }
        let counters = &state.counters;
        let served = state.core.take(now_ms, |session| {
            counters.get(session).is_some_and(Counters::counting)
        });
        let core = &state.core;
        state.counters.retain(|session, _| core.contains(session));
        let counters = &state.counters;
        state
            .rtmp_admitted
            .retain(|_, session| counters.contains_key(session));
        served
    }

    /// Puts back what a failed heartbeat could not deliver.
    pub(crate) fn restore(&self, served: Served) {
        self.state().core.restore(served);
    }
}

/// The most bytes of a response body handed to the connection (and counted) at once: a larger
/// data frame (an HLS segment) goes out as slices of it, shared, not copied, so a client that
/// leaves mid-segment is counted for about what the connection took.
const COUNTED_PIECE_BYTES: usize = 16 * 1024;

/// Wraps a response body so every byte handed to the connection is added to `counter`.
///
/// The body keeps its size hint, so a response of known length keeps its `content-length`.
pub(crate) fn counted(body: Body, counter: Arc<AtomicU64>) -> Body {
    Body::new(CountedBody {
        body,
        pending: Bytes::new(),
        counter,
    })
}

/// A response body that counts the data it yields, in pieces of at most
/// [`COUNTED_PIECE_BYTES`].
struct CountedBody {
    body: Body,
    /// The rest of the current data frame, not yet handed out.
    pending: Bytes,
    counter: Arc<AtomicU64>,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(COUNTED_PIECE_BYTES);
                let piece = self.pending.split_to(n);
                self.counter.fetch_add(n as u64, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    // Trailers carry no payload.
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.pending.len() as u64;
        let inner = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(pending));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::{KeyPair, StreamId};

    fn grant(session: u8, expiry_ms: u64) -> SessionGrant {
        SessionGrant {
            session_id: SessionId::from_bytes([session; 16]),
            viewer: KeyPair::from_seed([session; 32]).viewer_key(),
            node_id: KeyPair::from_seed([99; 32]).node_id(),
            stream_id: StreamId::new("show").unwrap(),
            max_bytes: 1 << 30,
            expiry_ms,
        }
    }

    fn served(attested: u64, unattested: u64) -> Served {
        Served {
            attested,
            unattested,
        }
    }

    #[test]
    fn bytes_wait_for_a_receipt_then_are_attested_or_unattested() {
        let accounting = Accounting::new(Duration::from_millis(4_000));
        let signing = grant(1, 100_000);
        let player = grant(2, 100_000);
        let signing_bytes = accounting.open(&signing, 1_000).unwrap();
        let player_bytes = accounting.open(&player, 1_000).unwrap();
        signing_bytes.fetch_add(700, Ordering::Relaxed);
        player_bytes.fetch_add(500, Ordering::Relaxed);
        // Within the grace period nothing is claimed yet.
        assert_eq!(accounting.take(&[], 3_000), served(0, 0));
        accounting.receipted(&signing.session_id, 700, 3_000);
        assert_eq!(accounting.take(&[], 4_000), served(700, 0));
        // The grace period is over: the silent session's bytes so far are unattested.
        assert_eq!(accounting.take(&[], 5_000), served(0, 500));
        signing_bytes.fetch_add(300, Ordering::Relaxed);
        player_bytes.fetch_add(200, Ordering::Relaxed);
        accounting.receipted(&signing.session_id, 1_000, 5_500);
        assert_eq!(accounting.take(&[], 6_000), served(300, 200));
        assert_eq!(accounting.take(&[], 7_000), served(0, 0));
        // Reopening a known session continues its counter.
        accounting
            .open(&player, 7_500)
            .unwrap()
            .fetch_add(50, Ordering::Relaxed);
        assert_eq!(accounting.take(&[], 8_000), served(0, 50));
    }

    #[test]
    fn a_failed_heartbeat_gives_its_claims_back() {
        let accounting = Accounting::new(Duration::ZERO);
        let session = grant(3, 100_000);
        accounting
            .open(&session, 0)
            .unwrap()
            .fetch_add(900, Ordering::Relaxed);
        let taken = accounting.take(&[], 10);
        assert_eq!(taken, served(0, 900));
        accounting.restore(taken);
        assert_eq!(accounting.take(&[], 20), served(0, 900));
        assert_eq!(accounting.take(&[], 30), served(0, 0));
    }

    #[test]
    fn rtmp_plays_count_live_then_final_bytes() {
        let accounting = Accounting::new(Duration::ZERO);
        let session = grant(4, 100_000);
        let key = StreamKey::parse("live", "show").unwrap();
        let peer: SocketAddr = "10.0.0.9:50000".parse().unwrap();
        accounting.open(&session, 0).unwrap();
        accounting.rtmp_admitted(peer, session.session_id);
        accounting.rtmp_started(&key, peer, 7);
        let stats = |bytes_out| StreamStats {
            key: key.clone(),
            publishing: true,
            publish_count: 1,
            frames_in: 0,
            bytes_in: 0,
            delivered: ViewerStats::default(),
            viewers: vec![
                ViewerStats {
                    id: 7,
                    bytes_out,
                    ..ViewerStats::default()
                },
                // Another viewer of the stream (not this session's) is not counted.
                ViewerStats {
                    id: 8,
                    bytes_out: 1 << 20,
                    ..ViewerStats::default()
                },
            ],
        };
        assert_eq!(accounting.take(&[stats(1_000)], 10), served(0, 1_000));
        assert_eq!(accounting.take(&[stats(1_500)], 20), served(0, 500));
        let last = ViewerStats {
            id: 7,
            bytes_out: 1_800,
            ..ViewerStats::default()
        };
        accounting.rtmp_ended(&key, peer, &last);
        assert_eq!(accounting.take(&[], 30), served(0, 300));
        assert_eq!(accounting.take(&[stats(5_000)], 40), served(0, 0));
    }

    #[test]
    fn expired_settled_sessions_are_forgotten() {
        let accounting = Accounting::new(Duration::ZERO);
        let session = grant(5, 1_000);
        let counter = accounting.open(&session, 0).unwrap();
        counter.fetch_add(10, Ordering::Relaxed);
        // A response still streaming keeps the session past its grant's expiry.
        assert_eq!(accounting.take(&[], 2_000), served(0, 10));
        counter.fetch_add(5, Ordering::Relaxed);
        assert_eq!(accounting.take(&[], 3_000), served(0, 5));
        drop(counter);
        assert_eq!(accounting.take(&[], 4_000), served(0, 0));
        let state = accounting.state();
        assert!(state.core.is_empty() && state.counters.is_empty());
    }

    #[tokio::test]
    async fn a_counted_body_counts_every_byte_it_yields() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = counted(Body::from(vec![7u8; 100_000]), counter.clone());
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|b| *b == 7));
        assert_eq!(counter.load(Ordering::Relaxed), 100_000);
    }

    #[tokio::test]
    async fn a_counted_body_keeps_its_length_and_hands_out_bounded_shared_pieces() {
        let counter = Arc::new(AtomicU64::new(0));
        let segment = Bytes::from((0..50_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let mut body = counted(Body::from(segment.clone()), counter.clone());
        // A known length stays known: the response keeps its content-length.
        assert_eq!(body.size_hint().exact(), Some(50_000));
        let mut pieces = vec![];
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let piece = frame.unwrap().into_data().unwrap();
            let counted_so_far = pieces.iter().map(Bytes::len).sum::<usize>() + piece.len();
            assert_eq!(counter.load(Ordering::Relaxed), counted_so_far as u64);
            pieces.push(piece);
        }
        assert_eq!(
            pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
            [16_384, 16_384, 16_384, 848]
        );
        // The pieces are slices of the frame, not copies of it.
        assert_eq!(pieces[1].as_ptr(), segment[16_384..].as_ptr());
        assert_eq!(pieces.concat(), segment);
        assert!(body.is_end_stream());
    }
}
