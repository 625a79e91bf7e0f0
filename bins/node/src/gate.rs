//! The node's coordinator glue behind the media library's hooks: publish checks at the origin,
//! who may play at the origin, the grant check, the bytes served per session, and the receipts
//! viewers hand the node. The media library applies the same hooks to RTMP, HTTP-FLV and HLS
//! and runs the on-demand upstream pull ([`streamr_media::server::PlayGate`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use streamr_client::client::{unix_ms, CoordinatorClient, PublishVerdict};
use streamr_client::wire::{ReceiptRejectionCode, ReceiptsOutcome, ReceiptsRequest};
use streamr_core::{GrantChecker, GrantRefusal};
use streamr_core::{KeyPair, SessionGrant, SessionId, SignedReceipt};
use streamr_media::relay::{RelayHub, StreamKey};
use streamr_media::server::{
    PlayAdmission, Protocol, Refusal, RelayHooks, StreamEvent, StreamRequest,
};

use crate::accounting::Accounting;
use crate::origin_gate::{Admission, OriginGate, OriginRefusal};

/// Sessions kept for receipt checks; the oldest are forgotten beyond this.
const MAX_SESSIONS: usize = 100_000;

/// The origin's publish check: the coordinator, and the node key its origin claims are
/// signed with.
pub(crate) struct OriginCheck {
    pub(crate) client: CoordinatorClient,
    pub(crate) key: KeyPair,
}

impl std::fmt::Debug for OriginCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCheck")
            .field("client", &self.client)
            .field("node_id", &self.key.node_id())
            .finish()
    }
}

/// State shared by the hooks (RTMP and HTTP alike) and the heartbeat task.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) hub: RelayHub,
    pub(crate) grants: Option<GrantChecker>,
    /// The coordinator to ask about publishers' stream keys, and the node key that signs the
    /// origin claim sent with each check (origin role).
    pub(crate) publish_check: Option<OriginCheck>,
    /// Bytes served per granted session, for the heartbeats' claims.
    pub(crate) accounting: Accounting,
    /// Who may play at this origin (`None`: anyone; see [`OriginGate`]).
    pub(crate) origin_gate: Option<OriginGate>,
    sessions: Mutex<HashMap<SessionId, SessionGrant>>,
    receipts: Mutex<HashMap<SessionId, SignedReceipt>>,
}

/// A granted request: its session and the counter its HTTP response bytes add to (`None`
/// when the accounting table is full).
struct Admitted {
    session: SessionId,
    counter: Option<Arc<AtomicU64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    pub(crate) fn new(
        hub: RelayHub,
        grants: Option<GrantChecker>,
        publish_check: Option<OriginCheck>,
        receipt_grace: Duration,
    ) -> Self {
        Gate {
            hub,
            grants,
            publish_check,
            accounting: Accounting::new(receipt_grace),
            origin_gate: None,
            sessions: Mutex::default(),
            receipts: Mutex::default(),
        }
    }

    /// Serves only the network's relays and granted viewers at this origin.
    pub(crate) fn with_origin_gate(mut self, origin_gate: OriginGate) -> Self {
        self.origin_gate = Some(origin_gate);
        self
    }

    /// Admits a play at the origin when it is gated (anyone when it is not): a relay's RTMP
    /// play takes one of the stream's relay slots.
    async fn admit_at_origin(&self, request: &StreamRequest) -> Result<(), OriginRefusal> {
        let Some(origin_gate) = &self.origin_gate else {
            return Ok(());
        };
        let key = &request.key;
        match origin_gate
            .admit(&request.query, &key.name, unix_ms())
            .await?
        {
            Admission::Relay(node) => {
                if request.protocol == Protocol::Rtmp {
                    origin_gate.take_relay_slot(&key.name, node, request.peer)?;
                }
                tracing::debug!(stream = %key, relay = %node,
                    relays = origin_gate.slots.relays(&key.name), "relay admitted");
            }
            Admission::Viewer => {}
        }
        Ok(())
    }

    /// Checks the grant (when grants are enforced) and remembers the session it opens;
    /// `None` when grants are not enforced.
    fn admit(&self, query: &str, key: &StreamKey) -> Result<Option<Admitted>, GrantRefusal> {
        let Some(checker) = &self.grants else {
            return Ok(None);
        };
        let now = unix_ms();
        let grant = checker.check(query, &key.name, now)?;
        let counter = self.accounting.open(&grant, now);
        let session = grant.session_id;
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, grant| grant.expiry_ms > now);
        }
        if sessions.len() < MAX_SESSIONS {
            sessions.insert(grant.session_id, grant);
        }
        Ok(Some(Admitted { session, counter }))
    }

    /// Keeps the newest receipt per session for the next heartbeat. Receipts must come from
    /// the viewer of a session this node admitted.
    pub(crate) fn accept_receipts(&self, receipts: Vec<SignedReceipt>) -> ReceiptsOutcome {
        let mut outcome = ReceiptsOutcome::default();
        let sessions = lock(&self.sessions);
        let mut kept = lock(&self.receipts);
        for receipt in receipts {
            let session = receipt.body.session_id;
            let Some(grant) = sessions.get(&session) else {
                outcome.reject(
                    ReceiptRejectionCode::UnknownSession,
                    format!("session {session}: not served by this node"),
                );
                continue;
            };
            let verified = grant
                .viewer
                .verifying_key()
                .and_then(|key| receipt.verify_with(&key).map(|_| ()));
            if verified.is_err() {
                outcome.reject(
                    ReceiptRejectionCode::BadSignature,
                    format!("session {session}: not signed by its viewer"),
                );
                continue;
            }
            self.accounting
                .receipted(&session, receipt.body.bytes_total, unix_ms());
            match kept.get(&session).map(|old| old.body.seq) {
                Some(kept_seq) if kept_seq >= receipt.body.seq => {
                    let code = if kept_seq == receipt.body.seq {
                        ReceiptRejectionCode::Duplicate
                    } else {
                        ReceiptRejectionCode::Outdated
                    };
                    outcome.reject(
                        code,
                        format!("session {session}: not newer than the kept receipt"),
                    );
                }
                _ => {
                    kept.insert(session, receipt);
                    outcome.accepted += 1;
                }
            }
        }
        outcome
    }

    /// Hands over the receipts kept since the last call.
    pub(crate) fn take_receipts(&self) -> Vec<SignedReceipt> {
        lock(&self.receipts).drain().map(|(_, r)| r).collect()
    }

    /// Puts back receipts a failed heartbeat could not deliver (unless newer ones arrived).
    pub(crate) fn restore_receipts(&self, receipts: Vec<SignedReceipt>) {
        let mut kept = lock(&self.receipts);
        for receipt in receipts {
            kept.entry(receipt.body.session_id).or_insert(receipt);
        }
    }
}

/// The RTMP side: publish checks (origin), grants and pulls (relay).
#[derive(Debug, Clone)]
pub(crate) struct NodeHooks(pub(crate) std::sync::Arc<Gate>);

#[async_trait]
impl RelayHooks for NodeHooks {
    async fn authorize_publish(&self, request: &StreamRequest) -> Result<(), Refusal> {
        let Some(OriginCheck {
            client,
            key: node_key,
        }) = &self.0.publish_check
        else {
            return Ok(());
        };
        let stream_key = request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("key="))
            .unwrap_or_default();
        match client
            .publish_verdict_as_origin(&request.key.name, stream_key, node_key)
            .await
        {
            Ok(PublishVerdict::Allowed) => Ok(()),
            Ok(refused) => {
                let reason = match refused {
                    PublishVerdict::UnknownStream => {
                        "the coordinator has no such stream (create it with POST /streams)".into()
                    }
                    PublishVerdict::NotOrigin { reason } => {
                        format!("this node is not the stream's origin: {reason}")
                    }
                    _ => "wrong stream key (or the stream has ended)".to_owned(),
                };
                tracing::warn!(stream = %request.key, peer = %request.peer, %reason,
                    "publish refused");
                Err(Refusal::new(reason))
            }
            Err(error) => {
                tracing::warn!(stream = %request.key, peer = %request.peer, %error,
                    "cannot ask the coordinator about a publisher; refusing it");
                Err(Refusal::new(
                    "the coordinator cannot be reached to check the key",
                ))
            }
        }
    }

    /// Admits a play on any protocol: the origin's relays-and-granted check, then the grant.
    /// An RTMP play is tied to its session through the events; an HTTP response counts its
    /// bytes into the session's counter.
    async fn admit_play(&self, request: &StreamRequest) -> Result<PlayAdmission, Refusal> {
        if let Err(refusal) = self.0.admit_at_origin(request).await {
            tracing::info!(stream = %request.key, peer = %request.peer,
                protocol = %request.protocol, %refusal, "play at the origin refused");
            return Err(Refusal::new(refusal.to_string()).with_code("origin_play_refused"));
        }
        match self.0.admit(&request.query, &request.key) {
            Err(refusal) => {
                tracing::info!(stream = %request.key, peer = %request.peer,
                    protocol = %request.protocol, %refusal, "play refused");
                Err(Refusal::new(refusal.to_string()).with_code("grant_refused"))
            }
            Ok(Some(admitted)) if request.protocol == Protocol::Rtmp => {
                self.0
                    .accounting
                    .rtmp_admitted(request.peer, admitted.session);
                Ok(PlayAdmission::default())
            }
            Ok(Some(Admitted {
                counter: Some(counter),
                ..
            })) => Ok(PlayAdmission::counting_into(counter)),
            Ok(_) => Ok(PlayAdmission::default()),
        }
    }

    async fn authorize_play(&self, request: &StreamRequest) -> Result<(), Refusal> {
        self.admit_play(request).await.map(|_| ())
    }

    /// Ties RTMP plays to their sessions for the byte accounting.
    async fn on_event(&self, event: StreamEvent) {
        match event {
            StreamEvent::PlayStarted {
                key,
                peer,
                viewer_id,
            } => {
                if let Some(origin_gate) = &self.0.origin_gate {
                    origin_gate.slots.started(&key.name, peer);
                }
                self.0.accounting.rtmp_started(&key, peer, viewer_id);
            }
            StreamEvent::PlayEnded { key, peer, stats } => {
                if let Some(origin_gate) = &self.0.origin_gate {
                    origin_gate.slots.ended(&key.name, peer);
                }
                self.0.accounting.rtmp_ended(&key, peer, &stats);
            }
            _ => {}
        }
    }
}

/// `POST /receipts`: viewer-signed cumulative receipts, kept for the next heartbeat.
pub(crate) async fn post_receipts(
    State(gate): State<std::sync::Arc<Gate>>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<ReceiptsRequest>(&body) {
        Ok(request) => Json(gate.accept_receipts(request.receipts)).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "invalid_json",
                "message": format!("expected {{\"receipts\": [signed receipts]}}: {error}"),
            })),
        )
            .into_response(),
    }
}
