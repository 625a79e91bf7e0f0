//! The node's side of the coordinator conversation: heartbeats carrying the viewers'
//! receipts (authenticated by a node session's MAC, or signed where the coordinator offers no
//! sessions), the origin's segment hash reports (queued durably, delivered in order), and a
//! relay's place in each stream's relay tree ([`TreeSource`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use streamr_client::client::{unix_ms, ClientError, CoordinatorClient, NodeAdvert};
use streamr_client::wire::{CoordinatorInfo, ReceiptsOutcome};
use streamr_core::{
    ClaimTotals, ContentDigest, CoordinatorKey, KeyPair, NodeHeartbeat, NodeSession,
    OriginSegmentReport, RelayUpstream, Served, Signed, SignedReceipt, StreamId,
};
use streamr_media::http::{OriginNumbering, OriginPartPlace, PartNotice, SegmentNotice};
use streamr_media::upstream::UpstreamPuller;
use streamr_net::failure_log::{Failing, FailureRun, RunEnded, REPEAT_EVERY};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::gate::Gate;
use crate::part_queue::{PartBatch, PartQueue};
use crate::report_queue::{
    chain_sequence, placement_after, DurableQueue, QueuedReport, ReportQueueError, RunPlacement,
};
use crate::HeartbeatAuthMode;
use streamr_core::GrantChecker;

/// The pinned coordinator key does not match the key the coordinator serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinnedKeyError {
    /// The value pinned is the coordinator's secret seed, not its public key.
    #[error(
        "--coordinator-public-key holds the coordinator's SECRET seed, not its public key: \
         replace it with the public key {public} and remove the secret from this machine"
    )]
    SecretGiven {
        /// The public key the coordinator serves (what belongs there).
        public: CoordinatorKey,
    },
    /// The pinned key is another coordinator's key.
    #[error(
        "--coordinator-public-key {pinned} is not the key of this coordinator ({served}): every \
         viewer's grant would be refused; fix the pinned key or the coordinator URL"
    )]
    Mismatch {
        /// The key pinned on this node.
        pinned: CoordinatorKey,
        /// The key the coordinator serves at `GET /coordinator`.
        served: CoordinatorKey,
    },
}

/// Checks the key pinned on this node (if any) against the key the coordinator serves.
pub(crate) fn check_pinned_key(
    pinned: Option<CoordinatorKey>,
    served: CoordinatorKey,
) -> Result<(), PinnedKeyError> {
    let Some(pinned) = pinned else {
        return Ok(());
    };
    if pinned == served {
        return Ok(());
    }
    if KeyPair::from_seed(*pinned.as_bytes()).coordinator_key() == served {
        return Err(PinnedKeyError::SecretGiven { public: served });
    }
    Err(PinnedKeyError::Mismatch { pinned, served })
}

/// Where a relay learns the origin's media sequence numbers: the coordinator's record of the
/// origin's signed part reports, asked by a part's hash (`GET /streams/{id}/parts/{hash}`).
/// The place is the origin's own (its report is signed and bound to the stream's origin), so
/// no upstream, however deep in the tree, can move a relay's numbering.
#[derive(Debug, Clone)]
pub(crate) struct CoordinatorNumbering {
    pub(crate) client: CoordinatorClient,
}

impl OriginNumbering for CoordinatorNumbering {
    fn origin_place(
        &self,
        key: &streamr_media::StreamKey,
        part_hash: [u8; 32],
        wait: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<OriginPartPlace>> + Send>> {
        let client = self.client.clone();
        let stream = key.name.to_string();
        Box::pin(async move {
            let hash = ContentDigest::from_bytes(part_hash);
            // The coordinator holds a lookup at most 5 s.
            let wait = wait.min(Duration::from_secs(5));
            match client.part(&stream, &hash, wait).await {
                Ok(part) => Some(OriginPartPlace {
                    msn: u64::try_from(part.msn).ok()?,
                    index: u32::try_from(part.index).ok()?,
                    run: u64::from_str_radix(&part.run, 16).ok(),
                }),
                Err(error) => {
                    debug!(%stream, %error, "the origin's place of a part is not known");
                    // Not a busy loop when the coordinator fails at once: the next ask waits
                    // for a newer part anyway.
                    None
                }
            }
        })
    }
}

/// A relay's upstreams from the coordinator's relay tree: its parent and the parent's
/// ancestors (each with the grant that admits this node there), then the static `--upstream`
/// list as the fallback (and for the origin, which registers no address) only where the
/// relay may pull from the origin: when the tree places it below the origin, or when the
/// coordinator gave no place at all. A deeper relay whose tree upstreams all fail asks again
/// instead of pulling from the origin (which admits at most k relays per stream).
pub(crate) struct TreeSource {
    pub(crate) client: CoordinatorClient,
    pub(crate) key: KeyPair,
    /// The static list.
    pub(crate) fallback: Vec<String>,
    /// Which node each upstream address the coordinator named belongs to.
    pub(crate) known: Mutex<HashMap<String, streamr_core::NodeId>>,
    /// The grant of each upstream, for the receipts this relay signs for what it delivered.
    pub(crate) edges: Arc<crate::relay_receipts::EdgeGrants>,
}

impl std::fmt::Debug for TreeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeSource")
            .field("client", &self.client)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl streamr_media::upstream::UpstreamSource for TreeSource {
    async fn upstreams(
        &self,
        key: &streamr_media::relay::StreamKey,
        failed: &[String],
    ) -> Vec<String> {
        let failed: Vec<streamr_core::NodeId> = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            failed
                .iter()
                .filter_map(|u| known.get(u).copied())
                .collect()
        };
        let mut list = Vec::new();
        let mut below_origin = true;
        match self.client.upstream(&key.name, &self.key, &failed).await {
            Ok(answer) => {
                below_origin = answer.depth <= 1 || answer.upstreams.is_empty();
                let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                for upstream in answer.upstreams {
                    known.insert(upstream.rtmp_base.clone(), upstream.node_id);
                    self.edges.record(
                        key.name.as_str(),
                        &upstream.rtmp_base,
                        upstream.grant.clone(),
                    );
                    list.push(format!("{}?{}", upstream.rtmp_base, upstream.query));
                }
                debug!(stream = %key, depth = answer.depth, parents = list.len(),
                    "relay tree place");
            }
            Err(error) => {
                debug!(stream = %key, %error, "no relay tree place; using the static upstreams");
            }
        }
        for upstream in self.fallback.iter().filter(|_| below_origin) {
            if !list
                .iter()
                .any(|u| u.split('?').next() == Some(upstream.as_str()))
            {
                list.push(upstream.clone());
            }
        }
        list
    }
}

/// What a relay needs to join the coordinator.
pub(crate) struct Join {
    pub(crate) client: CoordinatorClient,
    pub(crate) key: KeyPair,
    pub(crate) advert: NodeAdvert,
    /// The coordinator key pinned on this node, if any.
    pub(crate) pinned: Option<CoordinatorKey>,
    /// The grant checker to give the coordinator's key once known.
    pub(crate) grants: Option<GrantChecker>,
    /// Set once registered (so shutdown deregisters).
    pub(crate) joined: Arc<AtomicBool>,
    /// Where the coordinator's reachability report on this node is kept.
    pub(crate) reachability: crate::reachability::ReachabilitySlot,
    /// A relay's pulls and the grants of its tree upstreams: which node each relayed stream
    /// comes from, for the heartbeats.
    pub(crate) pulls: Option<(UpstreamPuller, Arc<crate::relay_receipts::EdgeGrants>)>,
    /// Whether heartbeats go under a node session or signed.
    pub(crate) heartbeat_auth: HeartbeatAuthMode,
    /// Where a signed heartbeat whose answer never came is kept until it is settled.
    pub(crate) held_heartbeat: std::path::PathBuf,
    /// The operator key file (`--operator-key`), read again before each registration and
    /// every heartbeat interval once joined: a replaced file registers the node again.
    pub(crate) operator_key: Option<crate::operator_key::OperatorKeyFile>,
}

/// The longest pause between attempts to reach the coordinator while joining.
const MAX_JOIN_PAUSE: Duration = Duration::from_secs(10);

/// Learns (and checks) the coordinator's key and registers, retrying until the coordinator
/// answers; then sends heartbeats until `stop`. A node whose pinned key is not the
/// coordinator's never joins: it logs why at every attempt.
pub(crate) async fn join_then_heartbeat(
    mut join: Join,
    gate: Arc<Gate>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(250);
    let mut attempts: u32 = 0;
    let coordinator = loop {
        attempts = attempts.saturating_add(1);
        match try_join(&mut join).await {
            Ok(info) => break info,
            Err(reason) => {
                if attempts == 1 || pause == MAX_JOIN_PAUSE {
                    error!(coordinator = join.client.base_url(), %reason,
                        "not joined to the coordinator yet; retrying");
                } else {
                    debug!(%reason, "joining the coordinator failed again");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_JOIN_PAUSE);
    };
    join.joined.store(true, Ordering::Release);
    info!(node = %join.key.node_id(), coordinator = join.client.base_url(), "registered");
    let watcher = tokio::spawn(crate::reachability::watch(
        join.client.clone(),
        join.key.node_id().to_string(),
        join.reachability.clone(),
        stop.clone(),
    ));
    let follower = join.operator_key.take().map(|file| {
        tokio::spawn(crate::operator_key::follow(
            join.client.clone(),
            join.key.clone(),
            join.advert.clone(),
            file,
            interval,
            stop.clone(),
        ))
    });
    let mut auth = HeartbeatAuth::new(
        join.client.clone(),
        join.key.clone(),
        coordinator.coordinator_key,
    );
    auth.sessions = join.heartbeat_auth == HeartbeatAuthMode::Session;
    auth.keep_held_in(crate::held_heartbeat::HeldHeartbeatFile::new(
        join.held_heartbeat,
        join.key.node_id(),
    ));
    auth.receipt_batch = ReceiptBatch::new(coordinator.max_receipts_per_request);
    auth.claim_totals = coordinator.heartbeat_claim_totals;
    if !auth.sessions {
        info!("heartbeats are signed (--heartbeat-auth signed): no node session is opened");
    }
    heartbeats(auth, gate, join.pulls, interval, stop).await;
    let _ = watcher.await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
}

/// Registers (with the key the operator key file holds now); returns what the coordinator says
/// about itself (its key checked against the pinned one). A membership refused as signed by a
/// retired operator key is logged as an error, and the node registers as its own operator
/// until the file holds the new key (the registration after the file changes is the
/// follower's, [`crate::operator_key::follow`]).
async fn try_join(join: &mut Join) -> Result<CoordinatorInfo, String> {
    let info = join
        .client
        .coordinator_info()
        .await
        .map_err(|e| e.to_string())?;
    check_pinned_key(join.pinned, info.coordinator_key).map_err(|e| e.to_string())?;
    if info.local_trial {
        warn!(
            coordinator = join.client.base_url(),
            "the coordinator runs a LOCAL TRIAL (--local-trial): a test network, not one to earn on"
        );
    }
    if let Some(grants) = &join.grants {
        if grants.set_key(info.coordinator_key) {
            info!(coordinator_key = %info.coordinator_key, "learnt the coordinator's key; checking viewers' grants");
        }
    }
    if let Some(file) = &mut join.operator_key {
        file.refresh(&mut join.advert);
    }
    match join.client.register_node(&join.key, &join.advert).await {
        Ok(_) => Ok(info),
        Err(error) if crate::operator_key::key_retired(&error) => {
            if let Some(file) = &join.operator_key {
                file.log_retired(&error);
            }
            join.client
                .register_node(
                    &join.key,
                    &crate::operator_key::as_own_operator(&join.advert),
                )
                .await
                .map(|_| info)
                .map_err(|e| e.to_string())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// How long before a node session's expiry the node opens the next one.
const SESSION_RENEW_MARGIN_MS: u64 = 60_000;
/// After the coordinator refused to open sessions (an older coordinator without them), how
/// long the node sends signed heartbeats before it asks again.
const SESSION_RETRY_MS: u64 = 300_000;

/// How the node authenticates its heartbeats: by a node session's MAC (opened with a signed
/// handshake, renewed before it expires and opened again whenever the coordinator has
/// forgotten it), or by its signature when no session can be had. A heartbeat refused because
/// the coordinator forgot the session is sent again at once under a new one.
pub(crate) struct HeartbeatAuth {
    client: CoordinatorClient,
    key: KeyPair,
    coordinator: CoordinatorKey,
    session: Option<NodeSession>,
    /// No session is asked for before this time (node clock, Unix milliseconds).
    retry_at_ms: u64,
    /// Whether sessions are used at all (`--heartbeat-auth session`); off, every heartbeat is
    /// signed.
    sessions: bool,
    /// The current session's running totals (attested, unattested bytes) as its last
    /// accepted heartbeat stated them: each heartbeat restates them with its own bytes added,
    /// so one the coordinator lost is restated by the next.
    session_totals: (u64, u64),
    /// How many receipts one heartbeat carries.
    receipt_batch: ReceiptBatch,
    /// A signed heartbeat with claims whose answer never came (a timeout, a dropped
    /// connection, a 5xx): the coordinator may have counted it. It is sent again, unchanged,
    /// before anything else, and its claims go nowhere else until an answer says whether
    /// it counted (see [`HeartbeatAuth::confirm_unanswered`]).
    unanswered: Option<Signed<NodeHeartbeat>>,
    /// Where the held heartbeat is kept on disk while there is one, so that a restart sends
    /// it again (see [`HeartbeatAuth::keep_held_in`]); `None`: in memory only.
    held_file: Option<crate::held_heartbeat::HeldHeartbeatFile>,
    /// The nonce of the held heartbeat the file holds now (`None`: no file).
    held_on_disk: Option<u64>,
    /// Claims of a held heartbeat that turned out not to be counted: the next signed
    /// heartbeat adds them to its own until one is accepted.
    returned: Served,
    /// Whether signed heartbeats carry claim totals: only to a coordinator that says it
    /// takes them ([`CoordinatorInfo::heartbeat_claim_totals`]); an older one would not
    /// verify a signature over them.
    claim_totals: bool,
    /// The run its signed heartbeats' claim totals name: the nonce of the latest heartbeat
    /// built before one carrying the name was accepted or may have been (held unanswered),
    /// so the name is a nonce the coordinator took, above every earlier run's name whatever
    /// the node's clock did across a restart.
    claim_run: Option<u64>,
    /// Whether a heartbeat naming [`Self::claim_run`] was accepted or may have been: the
    /// name is kept from then on.
    run_named: bool,
    /// What the run's signed heartbeats claimed and the coordinator is known to have
    /// counted: each signed heartbeat carries these plus its own claims, so a claim sent
    /// again under a new nonce restates totals the coordinator has counted already.
    run_totals: Served,
    /// The current run of failed heartbeats: logged as it starts, every
    /// [`REPEAT_EVERY`](streamr_net::failure_log::REPEAT_EVERY) while it lasts and as it ends, not
    /// once per heartbeat through a long coordinator outage.
    failures: FailureRun,
}

/// Receipts per heartbeat when the coordinator does not say (older coordinators): their
/// default limit.
const DEFAULT_MAX_RECEIPTS: usize = 256;

/// How many receipts one heartbeat carries: the coordinator's limit (`GET /coordinator`),
/// halved whenever the coordinator refuses a heartbeat for carrying too many anyway (a
/// coordinator that publishes no limit and takes fewer than [`DEFAULT_MAX_RECEIPTS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReceiptBatch {
    size: usize,
    /// Whether a refusal has halved it (logged at warn the first time only).
    halved: bool,
}

impl Default for ReceiptBatch {
    fn default() -> Self {
        ReceiptBatch::new(None)
    }
}

impl ReceiptBatch {
    /// Batches of the coordinator's `limit` (at least one receipt), or of
    /// [`DEFAULT_MAX_RECEIPTS`] when it publishes none.
    pub(crate) fn new(limit: Option<u32>) -> Self {
        let size = limit.map_or(DEFAULT_MAX_RECEIPTS, |limit| {
            usize::try_from(limit).unwrap_or(usize::MAX)
        });
        ReceiptBatch {
            size: size.max(1),
            halved: false,
        }
    }

    /// The most receipts the next heartbeat carries.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// A heartbeat carrying `carried` receipts was refused for carrying too many: the next
    /// ones carry at most half as many. False when one receipt was refused (nothing to
    /// halve).
    fn refused(&mut self, carried: usize) -> bool {
        if carried <= 1 {
            return false;
        }
        let size = (carried / 2).min(self.size).max(1);
        if self.halved {
            debug!(carried, size, "receipts refused again; halving the batch");
        } else {
            warn!(
                carried,
                size,
                "the coordinator refuses heartbeats carrying this many receipts although it \
                 did not say so; sending fewer per heartbeat (logged once)"
            );
        }
        self.halved = true;
        self.size = size;
        true
    }
}

/// Whether the coordinator refused a heartbeat for the number of receipts it carried (the
/// `receipts` field, or a body too large). Coordinators that name no field in their error body
/// are read by their message.
fn too_many_receipts(error: &ClientError) -> bool {
    match error {
        ClientError::Status {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..
        } => true,
        ClientError::Status {
            status: StatusCode::BAD_REQUEST,
            body: Some(body),
            ..
        } => {
            body.error == "invalid_field"
                && match &body.field {
                    Some(field) => field == "receipts",
                    None => body.message.starts_with("invalid field receipts:"),
                }
        }
        _ => false,
    }
}

/// Whether a session heartbeat was refused because of the session itself (forgotten, expired,
/// another session's key): a new session fixes it.
fn session_refused(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some("unknown_session" | "session_expired" | "bad_mac" | "wrong_session_node")
    )
}

impl HeartbeatAuth {
    pub(crate) fn new(
        client: CoordinatorClient,
        key: KeyPair,
        coordinator: CoordinatorKey,
    ) -> Self {
        HeartbeatAuth {
            client,
            key,
            coordinator,
            session: None,
            retry_at_ms: 0,
            sessions: true,
            session_totals: (0, 0),
            unanswered: None,
            held_file: None,
            held_on_disk: None,
            returned: Served::default(),
            claim_totals: false,
            claim_run: None,
            run_named: false,
            run_totals: Served::default(),
            receipt_batch: ReceiptBatch::default(),
            failures: FailureRun::default(),
        }
    }

    /// A usable session: the current one, or a new one when there is none or it ends soon.
    async fn session(&mut self, now_ms: u64) -> Option<NodeSession> {
        if let Some(session) = &self.session {
            if session.expires_at_ms() > now_ms.saturating_add(SESSION_RENEW_MARGIN_MS) {
                return Some(session.clone());
            }
        }
        self.session = None;
        if !self.sessions || now_ms < self.retry_at_ms {
            return None;
        }
        match self
            .client
            .open_node_session(&self.key, &self.coordinator)
            .await
        {
            Ok(session) => {
                debug!(session = %session.id(), "node session opened");
                self.session = Some(session.clone());
                self.session_totals = (0, 0);
                Some(session)
            }
            Err(error) => {
                // An older coordinator has no sessions (404/405 on the route): ask again
                // later. Anything else (a network error, a restart) is retried next beat.
                if matches!(error, ClientError::Handshake { .. }) {
                    warn!(%error, "the coordinator's session answer does not check out; heartbeats stay signed");
                    self.retry_at_ms = now_ms.saturating_add(SESSION_RETRY_MS);
                } else if matches!(
                    error.status(),
                    Some(StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
                ) && error.code() != Some("unknown_node")
                {
                    info!(%error, "the coordinator opens no node sessions; heartbeats stay signed");
                    self.retry_at_ms = now_ms.saturating_add(SESSION_RETRY_MS);
                } else {
                    debug!(%error, "node session not opened; this heartbeat is signed");
                }
                None
            }
        }
    }

    /// Keeps the held heartbeat in `file` from now on, and holds the one an earlier run left
    /// there (sent again, unchanged, before the next heartbeat).
    pub(crate) fn keep_held_in(&mut self, file: crate::held_heartbeat::HeldHeartbeatFile) {
        if let Some(held) = file.load() {
            info!(
                nonce = held.body.nonce,
                file = %file.path().display(),
                "a heartbeat whose answer never came before the restart is sent again"
            );
            self.held_on_disk = Some(held.body.nonce);
            self.unanswered = Some(held);
        }
        self.held_file = Some(file);
    }

    /// Brings the held heartbeat file in line with the held heartbeat: written when one is
    /// held, removed once it is settled. A failure is logged; the heartbeat stays held in
    /// memory.
    fn sync_held_file(&mut self) {
        let Some(file) = &self.held_file else {
            return;
        };
        let nonce = self.unanswered.as_ref().map(|held| held.body.nonce);
        if nonce == self.held_on_disk {
            return;
        }
        let written = match &self.unanswered {
            Some(held) => file.store(held),
            None => file.clear(),
        };
        match written {
            Ok(()) => self.held_on_disk = nonce,
            Err(error) => warn!(
                file = %file.path().display(),
                %error,
                "cannot keep the held heartbeat on disk; a restart would lose its claims"
            ),
        }
    }

    /// [`HeartbeatAuth::send_unsynced`], the held heartbeat file brought in line after.
    async fn send(
        &mut self,
        heartbeat: NodeHeartbeat,
        receipts: Vec<SignedReceipt>,
    ) -> Result<ReceiptsOutcome, ClientError> {
        let answer = self.send_unsynced(heartbeat, receipts).await;
        self.sync_held_file();
        answer
    }

    /// Sends `heartbeat` (whose byte counts are what was served since the previous one) with
    /// `receipts`: under the node session when there is one, its byte counts added to the
    /// session's running totals (opening another and sending again when the coordinator
    /// forgot it), else signed, with the byte counts as they are. A heartbeat that fails
    /// leaves the totals as they were: its byte counts are the caller's to claim again.
    async fn send_unsynced(
        &mut self,
        heartbeat: NodeHeartbeat,
        receipts: Vec<SignedReceipt>,
    ) -> Result<ReceiptsOutcome, ClientError> {
        let now = unix_ms();
        // A signed heartbeat claims bytes since the previous one, so a claim the coordinator
        // counted without answering must not be claimed again in a new heartbeat: an
        // unanswered one is settled first, and what turned out uncounted is added here.
        let mut heartbeat = heartbeat;
        if let Some(claims) = self.confirm_unanswered().await? {
            add_claims(&mut self.returned, claims);
        }
        heartbeat.bytes_served = heartbeat
            .bytes_served
            .saturating_add(self.returned.attested);
        heartbeat.unattested_bytes = heartbeat
            .unattested_bytes
            .saturating_add(self.returned.unattested);
        for attempt in 0..2 {
            let Some(session) = self.session(now).await else {
                break;
            };
            let totals = session_totals_after(self.session_totals, &heartbeat);
            let restated = NodeHeartbeat {
                bytes_served: totals.0,
                unattested_bytes: totals.1,
                ..heartbeat.clone()
            };
            match self
                .client
                .session_heartbeat(&session, restated, receipts.clone())
                .await
            {
                Err(error) if session_refused(&error) => {
                    debug!(%error, attempt, "node session refused; opening a new one");
                    self.session = None;
                }
                answer => {
                    // Counted in the totals once accepted. A failed heartbeat's counts go back
                    // to the caller and into the next heartbeat, whose totals restate them:
                    // counted once even when the coordinator stored the failed one after all.
                    if answer.is_ok() {
                        self.session_totals = totals;
                        self.returned = Served::default();
                    }
                    return answer;
                }
            }
        }
        // Without an answer this one may have been counted: held, to be settled first.
        let claims = heartbeat.bytes_served != 0 || heartbeat.unattested_bytes != 0;
        if self.claim_totals {
            heartbeat.claim_totals = Some(self.claim_totals_with(&heartbeat));
        }
        let totals = heartbeat.claim_totals;
        let signed = Signed::sign(heartbeat, &self.key);
        let answer = self.client.heartbeat(signed.clone(), receipts).await;
        match &answer {
            Ok(_) => {
                self.returned = Served::default();
                if let Some(totals) = totals {
                    self.run_named = true;
                    self.counted(totals);
                }
            }
            Err(error) if claims && unanswered(error) => {
                // The held heartbeat carries the returned claims now.
                self.returned = Served::default();
                // It may have been counted under this run's name: the name stays.
                self.run_named |= totals.is_some();
                self.unanswered = Some(signed);
            }
            // Refused: the returned claims wait for the next heartbeat (the caller takes
            // back the rest of this one's).
            Err(_) => {}
        }
        answer
    }

    /// The run totals a signed heartbeat carries: those counted so far with its own claims
    /// added.
    fn claim_totals_with(&mut self, heartbeat: &NodeHeartbeat) -> ClaimTotals {
        if !self.run_named {
            self.claim_run = Some(heartbeat.nonce);
        }
        let run = *self.claim_run.get_or_insert(heartbeat.nonce);
        ClaimTotals {
            run,
            bytes_served: self
                .run_totals
                .attested
                .saturating_add(heartbeat.bytes_served),
            unattested_bytes: self
                .run_totals
                .unattested
                .saturating_add(heartbeat.unattested_bytes),
        }
    }

    /// Records that the coordinator counted a signed heartbeat carrying `totals`.
    fn counted(&mut self, totals: ClaimTotals) {
        if Some(totals.run) == self.claim_run {
            self.run_totals = Served {
                attested: self.run_totals.attested.max(totals.bytes_served),
                unattested: self.run_totals.unattested.max(totals.unattested_bytes),
            };
        }
    }

    /// Records that the held heartbeat `held` was counted.
    fn held_counted(&mut self, held: &Signed<NodeHeartbeat>) {
        if let Some(totals) = held.body.claim_totals {
            self.counted(totals);
        }
    }

    /// Whether this heartbeat's claims are held for sending again unchanged (the last send of
    /// a signed heartbeat with claims got no answer): the caller must not claim them again.
    fn holds_claims_of(&self, nonce: u64) -> bool {
        self.unanswered
            .as_ref()
            .is_some_and(|held| held.body.nonce == nonce)
    }

    /// Settles the held unanswered heartbeat, if any, by sending it again unchanged: accepted
    /// now, or refused as a replay of its nonce (it was counted the first time), its claims
    /// are done with. Refused otherwise (e.g. too old by now to be taken), the node's stored
    /// nonce decides: at or above the held one, it was counted; below, its claims are
    /// returned, to be claimed by the next heartbeat. Unanswered again, it stays held and the
    /// error is returned (nothing new is sent meanwhile).
    async fn confirm_unanswered(&mut self) -> Result<Option<Served>, ClientError> {
        let Some(held) = self.unanswered.take() else {
            return Ok(None);
        };
        match self.client.heartbeat(held.clone(), Vec::new()).await {
            Ok(_) => {
                self.held_counted(&held);
                Ok(None)
            }
            Err(error) if error.code() == Some("replayed_nonce") => {
                debug!(
                    nonce = held.body.nonce,
                    "an unanswered heartbeat had been counted; its claims are not repeated"
                );
                self.held_counted(&held);
                Ok(None)
            }
            Err(error) if unanswered(&error) => {
                self.unanswered = Some(held);
                Err(error)
            }
            Err(refused) => {
                // Refused for something else (by now older than the clock skew allowed): the
                // node's stored nonce says whether the first send was counted.
                let node = match self.client.node(&held.body.node_id.to_string()).await {
                    Ok(node) => node,
                    Err(error) => {
                        self.unanswered = Some(held);
                        return Err(error);
                    }
                };
                let counted = u64::try_from(node.last_nonce).is_ok_and(|n| n >= held.body.nonce);
                if counted {
                    self.held_counted(&held);
                }
                debug!(
                    %refused,
                    nonce = held.body.nonce,
                    counted,
                    "an unanswered heartbeat could not be sent again; its claims were counted \
                     if the coordinator holds its nonce, else the next heartbeat claims them"
                );
                Ok((!counted).then_some(Served {
                    attested: held.body.bytes_served,
                    unattested: held.body.unattested_bytes,
                }))
            }
        }
    }
}

/// Adds `more` to `claims`.
fn add_claims(claims: &mut Served, more: Served) {
    claims.attested = claims.attested.saturating_add(more.attested);
    claims.unattested = claims.unattested.saturating_add(more.unattested);
}

/// Whether a heartbeat may have been counted although its answer says it failed: no answer at
/// all (a timeout, a dropped connection) or a server error.
fn unanswered(error: &ClientError) -> bool {
    error.status().is_none_or(|status| status.is_server_error())
}

/// A session's running totals once `heartbeat`'s byte counts (since the previous heartbeat)
/// are added.
fn session_totals_after(totals: (u64, u64), heartbeat: &NodeHeartbeat) -> (u64, u64) {
    (
        totals.0.saturating_add(heartbeat.bytes_served),
        totals.1.saturating_add(heartbeat.unattested_bytes),
    )
}

/// The node each relayed stream is pulled from now, where it is a relay tree upstream (one
/// the coordinator granted: a static `--upstream` names no node and is left out).
fn pulled_from(
    pulls: Option<&(UpstreamPuller, Arc<crate::relay_receipts::EdgeGrants>)>,
    streams: &[&streamr_media::relay::StreamKey],
    now_ms: u64,
) -> Vec<RelayUpstream> {
    let Some((puller, edges)) = pulls else {
        return Vec::new();
    };
    streams
        .iter()
        .filter_map(|key| {
            let upstream = puller.status(key)?.upstream?;
            let grant = edges.current(key.name.as_str(), &upstream, now_ms)?;
            Some(RelayUpstream {
                stream: StreamId::new(key.name.clone()).ok()?,
                upstream: grant.body.node_id,
            })
        })
        .collect()
}

/// The most heartbeats one tick sends beyond the first, to deliver the receipts the first had
/// no room for; what is left waits for the next tick.
const MAX_EXTRA_HEARTBEATS: usize = 16;

/// Sends a heartbeat every `interval` until `stop`: the claims and the receipts queued since
/// the previous one, in as many heartbeats as the coordinator's receipt limit asks (see
/// [`send_beats`]).
pub(crate) async fn heartbeats(
    mut auth: HeartbeatAuth,
    gate: Arc<Gate>,
    pulls: Option<(UpstreamPuller, Arc<crate::relay_receipts::EdgeGrants>)>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut nonce = 0u64;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stats = gate.hub.all_stats();
        let streams: Vec<StreamId> = stats
            .iter()
            .filter(|s| s.publishing)
            .filter_map(|s| StreamId::new(s.key.name.clone()).ok())
            .collect();
        // The node's own HLS segmenter subscribes as an internal consumer, so these are
        // viewers only.
        let viewers: usize = stats.iter().map(|s| s.viewers.len()).sum();
        let now = unix_ms();
        let relayed: Vec<&streamr_media::relay::StreamKey> = stats
            .iter()
            .filter(|s| s.publishing)
            .map(|s| &s.key)
            .collect();
        let upstreams = pulled_from(pulls.as_ref(), &relayed, now);
        let served = gate.accounting.take(&stats, now);
        nonce = nonce.saturating_add(1).max(now);
        let heartbeat = NodeHeartbeat {
            node_id: auth.key.node_id(),
            timestamp_ms: now,
            nonce,
            streams,
            viewers: u64::try_from(viewers).unwrap_or(u64::MAX),
            bytes_served: served.attested,
            unattested_bytes: served.unattested,
            upstreams,
            claim_totals: None,
        };
        let receipts = gate.take_receipts();
        send_beats(&mut auth, &gate, heartbeat, receipts, &mut nonce).await;
    }
}

/// Sends one tick's heartbeats. The first claims `heartbeat`'s bytes and carries as many of
/// `receipts` as one heartbeat may, oldest signed first (a receipt near its epoch's end goes
/// before the epoch's deadline); while receipts are left, up to [`MAX_EXTRA_HEARTBEATS`] more
/// carry the rest with fresh nonces and claim nothing (a claim is a delta; under a session
/// they restate its totals). A heartbeat refused for carrying too many receipts is sent again
/// with half as many (and its claims). What no heartbeat delivered, receipts and claims, goes
/// back to the gate for the next tick, except the claims of a signed heartbeat that got no
/// answer: the coordinator may have counted them, so that heartbeat is held and sent again
/// unchanged first ([`HeartbeatAuth::confirm_unanswered`]) instead of its claims being
/// claimed again by a new one.
async fn send_beats(
    auth: &mut HeartbeatAuth,
    gate: &Gate,
    heartbeat: NodeHeartbeat,
    mut receipts: Vec<SignedReceipt>,
    nonce: &mut u64,
) {
    receipts.sort_by_key(|receipt| receipt.body.t_ms);
    let mut waiting = std::collections::VecDeque::from(receipts);
    let mut claims = Served {
        attested: heartbeat.bytes_served,
        unattested: heartbeat.unattested_bytes,
    };
    let mut sent = 0;
    while sent <= MAX_EXTRA_HEARTBEATS && (sent == 0 || !waiting.is_empty()) {
        if sent > 0 {
            *nonce = nonce.saturating_add(1).max(unix_ms());
        }
        let beat = NodeHeartbeat {
            timestamp_ms: if sent == 0 {
                heartbeat.timestamp_ms
            } else {
                unix_ms()
            },
            nonce: *nonce,
            bytes_served: claims.attested,
            unattested_bytes: claims.unattested,
            ..heartbeat.clone()
        };
        sent += 1;
        let carried: Vec<SignedReceipt> = waiting
            .drain(..waiting.len().min(auth.receipt_batch.size()))
            .collect();
        let count = carried.len();
        match auth.send(beat, carried.clone()).await {
            Ok(outcome) => {
                if let Some(RunEnded { failures, lasted }) =
                    auth.failures.succeeded(std::time::Instant::now())
                {
                    info!(
                        failed_heartbeats = failures,
                        failed_for_s = lasted.as_secs(),
                        "heartbeats reach the coordinator again"
                    );
                }
                debug!(
                    receipts = count,
                    accepted = outcome.accepted,
                    attested_bytes = claims.attested,
                    unattested_bytes = claims.unattested,
                    "heartbeat sent"
                );
                log_rejections(&outcome);
                claims = Served::default();
            }
            Err(error) => {
                for receipt in carried.into_iter().rev() {
                    waiting.push_front(receipt);
                }
                if auth.holds_claims_of(*nonce) {
                    // Sent again unchanged before the next heartbeat, not claimed again.
                    claims = Served::default();
                }
                if too_many_receipts(&error) && auth.receipt_batch.refused(count) {
                    continue;
                }
                match auth.failures.failed(std::time::Instant::now()) {
                    Failing::Started => warn!(
                        %error,
                        "heartbeat failed; retrying every interval (while heartbeats keep \
                         failing, logged again every {}s)",
                        REPEAT_EVERY.as_secs()
                    ),
                    Failing::Continuing { failures, lasted } => warn!(
                        %error,
                        failed_heartbeats = failures,
                        failing_for_s = lasted.as_secs(),
                        "heartbeats still fail; retrying every interval"
                    ),
                    Failing::Quiet => {
                        debug!(%error, "heartbeat failed again")
                    }
                }
                break;
            }
        }
    }
    if !waiting.is_empty() {
        debug!(
            waiting = waiting.len(),
            "receipts left for the next heartbeat"
        );
        gate.restore_receipts(waiting.into());
    }
    if claims != Served::default() {
        gate.accounting.restore(claims);
    }
}

/// The origin's segment reports: queued durably as the live HLS cuts segments, delivered to the
/// coordinator in order (see [`crate::report_queue`]).
pub(crate) struct SegmentReporter {
    queue: Mutex<DurableQueue>,
    queued: Notify,
}

impl SegmentReporter {
    /// Opens (or creates) the journal at `path`.
    pub(crate) fn open(path: &std::path::Path) -> Result<Arc<Self>, ReportQueueError> {
        Ok(Arc::new(SegmentReporter {
            queue: Mutex::new(DurableQueue::open(path)?),
            queued: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DurableQueue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The next segment notice; `None` once `stop` is cancelled or the segmenter is gone. Notices
/// missed because the receiver fell behind are skipped after `on_lag` is told how many.
pub(crate) async fn next_segment_notice(
    notices: &mut broadcast::Receiver<SegmentNotice>,
    stop: &CancellationToken,
    on_lag: impl Fn(u64),
) -> Option<SegmentNotice> {
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return None,
            notice = notices.recv() => notice,
        };
        match notice {
            Ok(notice) => return Some(notice),
            Err(broadcast::error::RecvError::Lagged(missed)) => on_lag(missed),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Queues every segment the origin's live HLS cuts until `stop`. Each stream's segments form a
/// run, and a new run starts whenever the segmenter's numbering starts over.
pub(crate) async fn queue_segments(
    reporter: Arc<SegmentReporter>,
    mut notices: broadcast::Receiver<SegmentNotice>,
    stop: CancellationToken,
) {
    // Per stream: the current run and the last sequence number queued in it.
    let mut runs: HashMap<String, (u64, u64)> = HashMap::new();
    loop {
        let Some(notice) = next_segment_notice(&mut notices, &stop, |missed| {
            error!(
                missed,
                "segment reports fell behind; some segments go unreported"
            )
        })
        .await
        else {
            return;
        };
        let stream = notice.key.name.as_str().to_owned();
        let run = match runs.get(&stream) {
            Some((run, last)) if notice.sequence > *last => *run,
            _ => rand::random::<u64>(),
        };
        runs.insert(stream.clone(), (run, notice.sequence));
        let queued = {
            let mut queue = reporter.lock();
            let dropped = queue.state().dropped();
            let queued = queue.push(
                &stream,
                run,
                notice.sequence,
                notice.hash.to_hex().to_string(),
                notice.ll.as_ref().map(ll_hashes),
                unix_ms(),
            );
            let lost = queue.state().dropped().saturating_sub(dropped);
            if lost > 0 {
                error!(
                    lost,
                    limit = crate::report_queue::MAX_QUEUED,
                    "the segment report queue is full; its oldest reports are dropped"
                );
            }
            queued
        };
        match queued {
            Ok(()) => reporter.queued.notify_one(),
            Err(error) => error!(stream = %notice.key, sequence = notice.sequence, %error,
                "cannot queue a segment report; this segment goes unreported"),
        }
    }
}

/// The fMP4 segment's hashes as the coordinator takes them.
fn ll_hashes(notice: &streamr_media::http::LlSegmentNotice) -> streamr_core::LlSegmentHashes {
    streamr_core::LlSegmentHashes {
        hash: ContentDigest::from_bytes(*notice.hash.as_bytes()),
        part_hashes: notice
            .part_hashes
            .iter()
            .map(|hash| ContentDigest::from_bytes(*hash.as_bytes()))
            .collect(),
        len: u64::try_from(notice.len).unwrap_or(u64::MAX),
    }
}

/// Reports every LL-HLS part the origin cuts to the coordinator as it is cut, until `stop`,
/// so viewers can check each part before they play it. Parts cut while a report is on its
/// way go together in the next one ([`PartQueue`]). Not journalled: a part is worth reporting
/// only while viewers fetch it (its hash also reaches the coordinator with its segment's
/// report).
pub(crate) async fn report_parts(
    client: CoordinatorClient,
    key: KeyPair,
    mut notices: broadcast::Receiver<PartNotice>,
    stop: CancellationToken,
) {
    let mut queue = PartQueue::default();
    let mut pause = Duration::from_millis(100);
    let mut failing = false;
    // Streams whose part reports were refused since their last accepted one: logged once.
    let mut refused: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let waited = tokio::select! {
            _ = stop.cancelled() => return,
            notice = notices.recv() => Some(notice),
            _ = tokio::time::sleep(pause), if failing => None,
        };
        let mut received = Vec::new();
        match waited {
            Some(Ok(notice)) => received.push(notice),
            Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                warn!(missed, "part reports fell behind; some parts go unreported");
            }
            Some(Err(broadcast::error::RecvError::Closed)) => return,
            None => {}
        }
        while let Ok(notice) = notices.try_recv() {
            received.push(notice);
        }
        let mut dropped = 0;
        for notice in received {
            let part = streamr_core::PartHash {
                msn: notice.sequence,
                index: notice.index,
                hash: ContentDigest::from_bytes(*notice.hash.as_bytes()),
                len: u64::try_from(notice.len).unwrap_or(u64::MAX),
                cut_ms: notice.cut_ms,
            };
            dropped += queue.push(notice.key.name.as_str(), part, rand::random::<u64>);
        }
        if dropped > 0 {
            debug!(
                dropped,
                "part reports waited too long for the coordinator; the oldest are dropped"
            );
        }
        failing = false;
        while let Some(batch) = queue.next_batch() {
            let sent = batch.parts.len();
            let stream = batch.stream.clone();
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = send_parts(&client, &key, batch) => outcome,
            };
            match outcome {
                Delivery::Accepted => {
                    queue.done(sent);
                    pause = Duration::from_millis(100);
                    refused.remove(&stream);
                }
                Delivery::Retry(reason) => {
                    debug!(%reason, waiting = queue.len(), "part report not delivered; retrying");
                    failing = true;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    break;
                }
                Delivery::ChainMoved => {
                    error!(stream = %stream, parts = sent,
                        "the coordinator holds other hashes for these parts; dropping the report");
                    queue.done(sent);
                }
                Delivery::Refused(reason) => {
                    if refused.insert(stream.clone()) {
                        error!(stream = %stream, %reason,
                            "the coordinator refuses this stream's part reports; LL-HLS viewers \
                             cannot check its parts (logged once until one is accepted)");
                    } else {
                        debug!(stream = %stream, parts = sent, %reason, "part report refused");
                    }
                    queue.done(sent);
                }
            }
        }
    }
}

/// Signs and sends one part report.
async fn send_parts(client: &CoordinatorClient, key: &KeyPair, batch: PartBatch) -> Delivery {
    let PartBatch { stream, run, parts } = batch;
    let stream_id = match StreamId::new(&stream) {
        Ok(stream_id) => stream_id,
        Err(error) => return Delivery::Refused(format!("unusable stream name: {error}")),
    };
    let signed = Signed::sign(
        streamr_core::OriginPartReport {
            node_id: key.node_id(),
            stream_id,
            run,
            parts,
            timestamp_ms: unix_ms(),
        },
        key,
    );
    match client.report_parts_signed(&signed).await {
        Ok(_) => Delivery::Accepted,
        Err(error) => classify(error),
    }
}

/// What became of one delivery attempt.
enum Delivery {
    /// The coordinator holds the report.
    Accepted,
    /// The coordinator's chain already has another segment at that place: the run is placed
    /// again after the newest segment.
    ChainMoved,
    /// Refused for good (unknown stream, not the origin...): dropped.
    Refused(String),
    /// Not delivered now (coordinator unreachable, overloaded, clocks apart): tried again.
    Retry(String),
}

/// The longest pause between delivery attempts while the coordinator is unreachable.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Delivers the queued segment reports to the coordinator, oldest first, until `stop`. Each is
/// signed when sent (so a report queued through an outage is not refused as stale).
pub(crate) async fn deliver_segments(
    client: CoordinatorClient,
    key: KeyPair,
    reporter: Arc<SegmentReporter>,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(250);
    let mut failures = FailureRun::default();
    loop {
        let front = reporter.lock().state().front().cloned();
        let Some(report) = front else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = reporter.queued.notified() => continue,
            }
        };
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = deliver(&client, &key, &reporter, &report) => outcome,
        };
        let finished = match outcome {
            Delivery::Accepted => {
                if let Some(RunEnded { failures, lasted }) =
                    failures.succeeded(std::time::Instant::now())
                {
                    info!(
                        failed_attempts = failures,
                        failed_for_s = lasted.as_secs(),
                        waiting = reporter.lock().state().len().saturating_sub(1),
                        "the coordinator takes segment reports again"
                    );
                }
                pause = Duration::from_millis(250);
                debug!(stream = %report.stream, sequence = report.local_sequence, "segment reported");
                true
            }
            Delivery::ChainMoved => {
                warn!(stream = %report.stream, "the coordinator's chain moved on; placing this run after its newest segment");
                if let Err(error) = reporter.lock().unplace(&report.stream, report.run) {
                    error!(%error, "cannot record a segment report run");
                }
                false
            }
            Delivery::Refused(reason) => {
                error!(stream = %report.stream, sequence = report.local_sequence, %reason,
                    "the coordinator refused a segment report; dropping it");
                true
            }
            Delivery::Retry(reason) => {
                match failures.failed(std::time::Instant::now()) {
                    Failing::Started => {
                        warn!(%reason, "cannot deliver segment reports; they are kept on disk and sent when the coordinator answers")
                    }
                    Failing::Continuing { failures, lasted } => warn!(
                        %reason,
                        failed_attempts = failures,
                        failing_for_s = lasted.as_secs(),
                        waiting = reporter.lock().state().len(),
                        "segment reports still cannot be delivered; kept on disk"
                    ),
                    Failing::Quiet => {
                        debug!(%reason, "segment report delivery failed again")
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                false
            }
        };
        if finished {
            if let Err(error) = reporter.lock().done(report.id) {
                error!(%error, "cannot record a delivered segment report");
            }
        }
    }
}

/// Places `report`'s run on the chain when needed, then signs and sends it.
async fn deliver(
    client: &CoordinatorClient,
    key: &KeyPair,
    reporter: &SegmentReporter,
    report: &QueuedReport,
) -> Delivery {
    let stream_id = match StreamId::new(&report.stream) {
        Ok(stream_id) => stream_id,
        Err(error) => return Delivery::Refused(format!("unusable stream name: {error}")),
    };
    let hash: ContentDigest = match report.hash.parse() {
        Ok(hash) => hash,
        Err(_) => return Delivery::Refused(format!("unreadable hash {:?}", report.hash)),
    };
    let placed = reporter
        .lock()
        .state()
        .placement(&report.stream, report.run);
    let placement = match placed {
        Some(placement) => placement,
        None => {
            let newest = match client.segments(&report.stream, 1).await {
                Ok(records) => records.first().map(|record| record.sequence),
                Err(error) => return classify(error),
            };
            let Some(offset) = placement_after(newest, report.local_sequence) else {
                return Delivery::Refused(format!(
                    "segment {} cannot follow the chain's newest segment {newest:?}",
                    report.local_sequence
                ));
            };
            if let Err(error) = reporter.lock().place(&report.stream, report.run, offset) {
                return Delivery::Retry(error.to_string());
            }
            info!(stream = %report.stream, newest_on_chain = ?newest,
                first_sequence = report.local_sequence.saturating_add_signed(offset),
                "segment reports continue the stream's chain");
            RunPlacement { offset }
        }
    };
    let Some(sequence) = chain_sequence(report, placement) else {
        return Delivery::Refused(format!(
            "segment {} has no place on the chain",
            report.local_sequence
        ));
    };
    let now = unix_ms();
    let signed = Signed::sign(
        OriginSegmentReport {
            node_id: key.node_id(),
            stream_id,
            sequence,
            hash,
            published_ms: report.published_ms,
            timestamp_ms: now,
            ll: report.ll.clone(),
            run: Some(report.run),
        },
        key,
    );
    match client.report_segment_signed(&signed).await {
        Ok(_) => Delivery::Accepted,
        Err(error) => classify(error),
    }
}

/// Sorts a failed request into "try again" and "drop".
fn classify(error: ClientError) -> Delivery {
    let reason = error.to_string();
    match error.status() {
        None => Delivery::Retry(reason),
        Some(StatusCode::CONFLICT) => Delivery::ChainMoved,
        Some(status)
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || error.code() == Some("clock_skew") =>
        {
            Delivery::Retry(reason)
        }
        Some(_) => Delivery::Refused(reason),
    }
}

/// Logs the outcome of leaving the network.
pub(crate) async fn deregister(client: &CoordinatorClient, key: &KeyPair) {
    match client.deregister_node(key).await {
        Ok(()) => info!(node = %key.node_id(), "deregistered from the coordinator"),
        Err(error) => warn!(%error, "cannot deregister from the coordinator"),
    }
}

/// Logs the receipts the coordinator refused from a heartbeat, each with its code. Refusals
/// that are normal after a retry or a coordinator outage (a receipt the coordinator already
/// holds, or an older one of a session it holds a newer receipt of: see
/// [`streamr_client::wire::ReceiptRejectionCode::is_expected`]) are logged at debug; every other refusal means
/// receipts were lost or something is wrong, and is a warning.
fn log_rejections(outcome: &ReceiptsOutcome) {
    for rejected in outcome.rejections() {
        if rejected.code.is_expected() {
            debug!(
                code = %rejected.code,
                reason = %rejected.reason,
                "coordinator already held a newer or the same viewer receipt"
            );
        } else {
            warn!(
                code = %rejected.code,
                reason = %rejected.reason,
                "coordinator rejected a viewer receipt"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_client::wire::ReceiptRejectionCode;

    /// What `log_rejections` logs for `outcome`, one line per event, without colours.
    fn logged(outcome: &ReceiptsOutcome) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log_rejections(outcome));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn an_outdated_receipt_is_logged_at_debug_and_a_real_rejection_warns_with_its_code() {
        let mut outcome = ReceiptsOutcome::default();
        outcome.reject(
            ReceiptRejectionCode::Outdated,
            "session 01: receipt 1 is older than the accepted receipt 2".into(),
        );
        outcome.reject(
            ReceiptRejectionCode::ContentMismatch,
            "session 02: content digest differs from the origin's at segment 7".into(),
        );
        let lines = logged(&outcome);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("DEBUG"), "{lines:?}");
        assert!(lines[0].contains("code=outdated"), "{lines:?}");
        assert!(lines[1].starts_with(" WARN"), "{lines:?}");
        assert!(lines[1].contains("code=content_mismatch"), "{lines:?}");
    }

    #[test]
    fn an_older_coordinators_uncoded_rejection_still_warns() {
        let old: ReceiptsOutcome =
            serde_json::from_str(r#"{"accepted":0,"rejected":["session 01: no grant"]}"#).unwrap();
        let lines = logged(&old);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(" WARN"), "{lines:?}");
        assert!(lines[0].contains("code=other"), "{lines:?}");
    }

    #[test]
    fn a_pinned_key_must_be_the_coordinators_public_key() {
        let coordinator = KeyPair::from_seed([5; 32]);
        let public = coordinator.coordinator_key();
        assert_eq!(check_pinned_key(None, public), Ok(()));
        assert_eq!(check_pinned_key(Some(public), public), Ok(()));
        let secret_as_key = CoordinatorKey::from_bytes(coordinator.seed());
        assert_eq!(
            check_pinned_key(Some(secret_as_key), public),
            Err(PinnedKeyError::SecretGiven { public })
        );
        let other = KeyPair::from_seed([6; 32]).coordinator_key();
        assert_eq!(
            check_pinned_key(Some(other), public),
            Err(PinnedKeyError::Mismatch {
                pinned: other,
                served: public
            })
        );
    }

    /// The admin token of the test coordinators.
    const ADMIN: &str = "network-test-admin";

    /// A coordinator on loopback with its own SQLite database.
    async fn coordinator() -> (
        streamr_coord::ServeHandle,
        Arc<dyn streamr_coord::storage::Storage>,
        CoordinatorKey,
        tempfile::TempDir,
    ) {
        coordinator_taking(streamr_coord::CoordConfig::default().max_receipts_per_request).await
    }

    /// A coordinator on loopback taking at most `max_receipts` receipts per request.
    async fn coordinator_taking(
        max_receipts: usize,
    ) -> (
        streamr_coord::ServeHandle,
        Arc<dyn streamr_coord::storage::Storage>,
        CoordinatorKey,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let storage = streamr_coord::connect(&url).await.unwrap();
        let config = streamr_coord::CoordConfig {
            rate_limit: None,
            heartbeat_totals_interval: Duration::from_millis(50),
            max_receipts_per_request: max_receipts,
            admin_token: Some(ADMIN.into()),
            ..streamr_coord::CoordConfig::default()
        };
        let key = config.coordinator_key.coordinator_key();
        let coordinator = streamr_coord::Coordinator::new(config, storage.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (
            coordinator.spawn_serve(listener).unwrap(),
            storage,
            key,
            dir,
        )
    }

    /// What the tests' nodes register: operator "op", loopback URLs, `capacity_kbps`.
    fn advert(capacity_kbps: u64) -> NodeAdvert {
        NodeAdvert {
            operator_membership: None,
            operator: "op".into(),
            payout_address: "0xop".into(),
            rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
            http_url: "http://127.0.0.1:8080".into(),
            capacity_kbps,
        }
    }

    /// A gate over an empty hub, checking grants from `coordinator_key` for `node`.
    fn gate_of(coordinator_key: CoordinatorKey, node: &KeyPair) -> Gate {
        let hub = streamr_media::relay::RelayHub::new(streamr_media::relay::RelayConfig::default());
        Gate::new(
            hub,
            Some(GrantChecker::new(coordinator_key, node.node_id())),
            None,
            Duration::from_secs(10),
        )
    }

    fn beat(key: &KeyPair, nonce: u64) -> NodeHeartbeat {
        NodeHeartbeat {
            node_id: key.node_id(),
            timestamp_ms: unix_ms(),
            nonce,
            streams: Vec::new(),
            viewers: 0,
            bytes_served: 0,
            unattested_bytes: 0,
            upstreams: Vec::new(),
            claim_totals: None,
        }
    }

    #[tokio::test]
    async fn heartbeats_go_by_session_and_a_forgotten_session_is_replaced_without_losing_one() {
        let (server, storage, coordinator_key, _dir) = coordinator().await;
        let (other, _, other_key, _other_dir) = coordinator().await;
        let node = KeyPair::from_seed([41; 32]);
        let advert = advert(1_000);
        let client = CoordinatorClient::new(&server.url()).unwrap();
        let other_client = CoordinatorClient::new(&other.url()).unwrap();
        for c in [&client, &other_client] {
            c.register_node(&node, &advert).await.unwrap();
        }
        // Session heartbeats reach the database in the coordinator's periodic batch: wait
        // (bounded) for the nonce the batch stores.
        let nonce_stored = |expected: i64| {
            let storage = storage.clone();
            let node_id = node.node_id().to_string();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let stored = storage
                        .get_node(&node_id)
                        .await
                        .unwrap()
                        .unwrap()
                        .last_nonce;
                    if stored == expected || std::time::Instant::now() > deadline {
                        return stored;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.send(beat(&node, 1), Vec::new()).await.unwrap();
        let first = auth
            .session
            .as_ref()
            .map(NodeSession::id)
            .expect("a session");
        assert_eq!(nonce_stored(1).await, 1);
        auth.send(beat(&node, 2), Vec::new()).await.unwrap();
        assert_eq!(auth.session.as_ref().map(NodeSession::id), Some(first));
        assert_eq!(nonce_stored(2).await, 2);
        // A session this coordinator never saw (as after it lost its database): refused with
        // unknown_session, a new session is opened and the same heartbeat is stored.
        let foreign = other_client
            .open_node_session(&node, &other_key)
            .await
            .unwrap();
        auth.session = Some(foreign.clone());
        auth.send(beat(&node, 3), Vec::new()).await.unwrap();
        let renewed = auth
            .session
            .as_ref()
            .map(NodeSession::id)
            .expect("a session");
        assert!(renewed != first && renewed != foreign.id());
        assert_eq!(nonce_stored(3).await, 3);
        // A coordinator key the node does not trust: no session, the heartbeat goes signed
        // (and no session is asked for again soon).
        let mut distrusting = HeartbeatAuth::new(
            CoordinatorClient::new(&server.url()).unwrap(),
            node.clone(),
            other_key,
        );
        distrusting.send(beat(&node, 4), Vec::new()).await.unwrap();
        assert!(distrusting.session.is_none());
        assert!(distrusting.retry_at_ms > unix_ms());
        assert_eq!(nonce_stored(4).await, 4);
        // Sessions turned off (--heartbeat-auth signed): signed, and no session is opened.
        let mut signed_only = HeartbeatAuth::new(
            CoordinatorClient::new(&server.url()).unwrap(),
            node.clone(),
            coordinator_key,
        );
        signed_only.sessions = false;
        signed_only.send(beat(&node, 5), Vec::new()).await.unwrap();
        assert!(signed_only.session.is_none());
        assert_eq!(nonce_stored(5).await, 5);
    }

    #[test]
    fn the_receipt_batch_follows_the_coordinator_and_halves_when_refused() {
        assert_eq!(ReceiptBatch::new(None).size(), DEFAULT_MAX_RECEIPTS);
        assert_eq!(ReceiptBatch::new(Some(4)).size(), 4);
        assert_eq!(ReceiptBatch::new(Some(0)).size(), 1);
        let mut batch = ReceiptBatch::new(None);
        // Refused carrying fewer than the batch: half of what it carried.
        assert!(batch.refused(11));
        assert_eq!(batch.size(), 5);
        assert!(batch.refused(5));
        assert_eq!(batch.size(), 2);
        assert!(batch.refused(2));
        assert_eq!(batch.size(), 1);
        // One receipt refused: nothing to halve.
        assert!(!batch.refused(1));
        assert_eq!(batch.size(), 1);
    }

    #[test]
    fn only_the_receipts_field_or_a_body_too_large_reads_as_too_many_receipts() {
        let named = |status: StatusCode, error: &str, field: Option<&str>, message: &str| {
            ClientError::Status {
                method: reqwest::Method::POST,
                url: "http://c/nodes/heartbeat".into(),
                status,
                body: Some(Box::new(streamr_client::client::ErrorBody {
                    error: error.into(),
                    field: field.map(str::to_owned),
                    message: message.into(),
                })),
                raw: String::new(),
            }
        };
        let refusal =
            |status: StatusCode, error: &str, message: &str| named(status, error, None, message);
        assert!(too_many_receipts(&refusal(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "invalid field receipts: at most 4 receipts per heartbeat"
        )));
        // A named field decides, whatever the message says.
        assert!(too_many_receipts(&named(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("receipts"),
            "at most 4"
        )));
        assert!(!too_many_receipts(&named(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("heartbeat.streams"),
            "invalid field receipts: worded to mislead"
        )));
        assert!(too_many_receipts(&refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body too large"
        )));
        assert!(!too_many_receipts(&refusal(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "invalid field bytes_served: 3 is below the session's total 5"
        )));
        assert!(!too_many_receipts(&refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "invalid field receipts:"
        )));
    }

    /// Viewers with a session each at `node`, their receipts queued in `gate`: `sessions`
    /// plays of the stream `show` (whose origin reported segment 0), each served and
    /// acknowledged a distinct number of bytes. Returns the sessions and the bytes served.
    async fn queue_receipts(
        client: &CoordinatorClient,
        node: &KeyPair,
        gate: &Arc<Gate>,
        sessions: u8,
    ) -> (Vec<streamr_core::SessionId>, u64) {
        use streamr_media::server::{Protocol, RelayHooks, StreamRequest};
        let admin = client.clone().with_admin_token(ADMIN);
        let created = admin.create_stream("show", "The show").await.unwrap();
        let origin = KeyPair::from_seed([42; 32]);
        assert!(client
            .publish_check_as_origin("show", &created.stream_key, &origin)
            .await
            .unwrap());
        let segment = client
            .report_segment_signed(&Signed::sign(
                OriginSegmentReport {
                    node_id: origin.node_id(),
                    stream_id: StreamId::new("show").unwrap(),
                    sequence: 0,
                    hash: streamr_core::segment_hash(b"segment zero"),
                    published_ms: unix_ms(),
                    timestamp_ms: unix_ms(),
                    ll: None,
                    run: None,
                },
                &origin,
            ))
            .await
            .unwrap();
        // Listed as serving the stream, so the viewers are routed to it.
        let mut listed = beat(node, 1);
        listed.streams = vec![StreamId::new("show").unwrap()];
        client
            .heartbeat(Signed::sign(listed, node), Vec::new())
            .await
            .unwrap();
        let hooks = crate::gate::NodeHooks(gate.clone());
        let key = streamr_media::relay::StreamKey::parse("live", "show").unwrap();
        let mut ids = Vec::new();
        let mut served = 0;
        for i in 0..sessions {
            let viewer = KeyPair::from_seed([100 + i; 32]);
            let play = client.play("show", &viewer.viewer_key()).await.unwrap();
            assert_eq!(play.node_id, node.node_id());
            let (_, query) = play.hls_url.split_once('?').unwrap();
            let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(i)));
            hooks
                .admit_play(&StreamRequest::new(key.clone(), query, peer, Protocol::Hls))
                .await
                .unwrap();
            let bytes = 1_000 + u64::from(i);
            gate.accounting
                .open(&play.grant.body, unix_ms())
                .unwrap()
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            let receipt = Signed::sign(
                streamr_core::ViewerReceipt {
                    session_id: play.grant.body.session_id,
                    seq: 1,
                    bytes_total: bytes,
                    last_segment_seq: 0,
                    segments_digest: segment.segment.digest.parse().unwrap(),
                    t_ms: unix_ms(),
                },
                &viewer,
            );
            assert_eq!(gate.accept_receipts(vec![receipt]).accepted, 1);
            ids.push(play.grant.body.session_id);
            served += bytes;
        }
        (ids, served)
    }

    /// A node holding more receipts than one heartbeat may carry delivers them all in one
    /// tick's heartbeats, and its claim is counted once: under `mode`, with the receipt limit
    /// the coordinator publishes (`published`, else none: the node finds it by refusals).
    async fn receipts_beyond_the_limit_are_all_delivered(mode: HeartbeatAuthMode, published: bool) {
        let (server, storage, coordinator_key, _dir) = coordinator_taking(4).await;
        let client = CoordinatorClient::new(&server.url()).unwrap();
        let node = KeyPair::from_seed([43; 32]);
        let advert = advert(100_000);
        client.register_node(&node, &advert).await.unwrap();
        let info = client.coordinator_info().await.unwrap();
        assert_eq!(info.max_receipts_per_request, Some(4));
        let gate = Arc::new(gate_of(coordinator_key, &node));
        let (sessions, served) = queue_receipts(&client, &node, &gate, 11).await;
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.sessions = mode == HeartbeatAuthMode::Session;
        // As a joining node does: signed heartbeats carry claim totals, receipts or not.
        auth.claim_totals = info.heartbeat_claim_totals;
        if published {
            auth.receipt_batch = ReceiptBatch::new(info.max_receipts_per_request);
        }
        let stop = CancellationToken::new();
        let beating = tokio::spawn(heartbeats(
            auth,
            gate.clone(),
            None,
            Duration::from_millis(100),
            stop.clone(),
        ));
        let node_id = node.node_id().to_string();
        let claimed = || {
            let storage = storage.clone();
            let node_id = node_id.clone();
            async move {
                let now = i64::try_from(unix_ms()).unwrap();
                let epoch = streamr_coord::CoordConfig::default().epoch_of(now);
                let mut claimed = (0, 0);
                for epoch in [epoch - 1, epoch] {
                    for row in storage.activity_for_epoch(epoch).await.unwrap() {
                        if row.node_id == node_id {
                            claimed.0 += row.claimed_bytes;
                            claimed.1 += row.unattested_bytes;
                        }
                    }
                }
                claimed
            }
        };
        let expected = (i64::try_from(served).unwrap(), 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut stored = 0;
            for session in &sessions {
                if storage
                    .latest_receipt(&session.to_string())
                    .await
                    .unwrap()
                    .is_some()
                {
                    stored += 1;
                }
            }
            if stored == sessions.len() && claimed().await == expected {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{mode:?}: {stored} of {} receipts stored, claimed {:?} of {expected:?}",
                sessions.len(),
                claimed().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gate.take_receipts().is_empty(), "nothing left queued");
        // Further heartbeats claim nothing new: the bytes stay counted once.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(claimed().await, expected, "{mode:?}");
        stop.cancel();
        beating.await.unwrap();
        // Under the mode asked for: a node session opened, or none.
        let metrics = reqwest::get(format!("{}/metrics", server.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let opened = metrics
            .lines()
            .find_map(|line| line.strip_prefix("streamr_node_sessions_opened_total "))
            .and_then(|count| count.trim().parse::<u64>().ok());
        assert_eq!(
            opened.map(|count| count > 0),
            Some(mode == HeartbeatAuthMode::Session),
            "{mode:?}: {opened:?}"
        );
    }

    /// A client of `server` through [`losing_the_first_answer`].
    async fn client_losing_the_first_answer(
        server: &streamr_coord::ServeHandle,
    ) -> CoordinatorClient {
        let upstream: std::net::SocketAddr = server
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let proxy = losing_the_first_answer(upstream).await;
        CoordinatorClient::new(&format!("http://{proxy}")).unwrap()
    }

    /// A proxy to `upstream` that loses the answer to the first request it carries: it
    /// forwards the request, and closes the connection the moment the answer starts (so the
    /// request was handled, and committed, upstream). Later connections go through.
    async fn losing_the_first_answer(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                if std::mem::take(&mut first) {
                    tokio::spawn(async move {
                        let (mut request, _) = inbound.split();
                        let (mut answer, mut to_upstream) = outbound.split();
                        let mut byte = [0u8; 1];
                        tokio::select! {
                            _ = tokio::io::copy(&mut request, &mut to_upstream) => {}
                            _ = answer.read(&mut byte) => {}
                        }
                    });
                } else {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
            }
        });
        address
    }

    /// What the coordinator counted as `node`'s attested claims this epoch and the last.
    async fn attested_claims(storage: &dyn streamr_coord::storage::Storage, node: &KeyPair) -> i64 {
        let now = i64::try_from(unix_ms()).unwrap();
        let epoch = streamr_coord::CoordConfig::default().epoch_of(now);
        let mut claimed = 0;
        for epoch in [epoch - 1, epoch] {
            for row in storage.activity_for_epoch(epoch).await.unwrap() {
                if row.node_id == node.node_id().to_string() {
                    claimed += row.claimed_bytes;
                }
            }
        }
        claimed
    }

    /// A signed heartbeat the coordinator counted but whose answer was lost is sent again
    /// unchanged (refused as a replay, so not counted twice), and the next heartbeat claims
    /// only what was served since.
    #[tokio::test]
    async fn a_signed_claim_whose_answer_was_lost_is_counted_once() {
        let (server, storage, coordinator_key, _dir) = coordinator_taking(4).await;
        let node = KeyPair::from_seed([45; 32]);
        let advert = advert(100_000);
        let direct = CoordinatorClient::new(&server.url()).unwrap();
        direct.register_node(&node, &advert).await.unwrap();
        let client = client_losing_the_first_answer(&server).await;
        let gate = gate_of(coordinator_key, &node);
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.sessions = false;

        // The first tick claims 1000 bytes: counted, but its answer is lost.
        let mut nonce = unix_ms();
        let first = NodeHeartbeat {
            bytes_served: 1_000,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, first, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_000);

        // The next tick: 500 bytes served since, and whatever the first left to claim.
        let left = gate.accounting.take(&[], unix_ms());
        nonce += 1;
        let second = NodeHeartbeat {
            bytes_served: 500 + left.attested,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, second, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_500);
        assert!(auth.unanswered.is_none());
    }

    /// A signed heartbeat whose answer never came is kept on disk: a node restarted before it
    /// was settled sends it again, so its claims are counted, once, and the file is removed
    /// once the coordinator answered.
    #[tokio::test]
    async fn a_held_heartbeat_outlives_a_restart_and_is_counted_once() {
        let (server, storage, coordinator_key, dir) = coordinator_taking(4).await;
        let node = KeyPair::from_seed([47; 32]);
        let advert = advert(100_000);
        let direct = CoordinatorClient::new(&server.url()).unwrap();
        direct.register_node(&node, &advert).await.unwrap();
        let path = dir.path().join("node.heartbeat");
        let run = |client: CoordinatorClient| {
            let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
            auth.sessions = false;
            auth.keep_held_in(crate::held_heartbeat::HeldHeartbeatFile::new(
                path.clone(),
                node.node_id(),
            ));
            auth
        };
        // The coordinator cannot be reached: the claim is held, on disk too.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut first = run(CoordinatorClient::new(&format!("http://{closed}")).unwrap());
        let nonce = unix_ms();
        let claim = NodeHeartbeat {
            bytes_served: 1_000,
            ..beat(&node, nonce)
        };
        assert!(first.send(claim, Vec::new()).await.is_err());
        assert!(first.holds_claims_of(nonce));
        assert!(path.exists());
        drop(first);

        // Restarted: the held heartbeat goes first, then the new one.
        let mut second = run(direct.clone());
        assert!(second.holds_claims_of(nonce));
        second
            .send(beat(&node, nonce + 1), Vec::new())
            .await
            .unwrap();
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_000);
        assert!(!path.exists());
        drop(second);

        // Nothing is held after it: another restart claims nothing again.
        let mut third = run(direct);
        assert!(!third.holds_claims_of(nonce));
        third
            .send(beat(&node, nonce + 2), Vec::new())
            .await
            .unwrap();
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_000);
    }

    /// The run is named by a heartbeat's nonce until one carrying the name is accepted (or
    /// may have been), then kept: a restarted node whose clock went back, so that its first
    /// heartbeat is refused (its nonce below the earlier run's), names its run afresh with
    /// the heartbeat that is taken, and its claims count.
    #[tokio::test]
    async fn a_run_refused_at_first_is_named_by_the_heartbeat_taken() {
        let (server, storage, coordinator_key, _dir) = coordinator_taking(4).await;
        let node = KeyPair::from_seed([48; 32]);
        let advert = advert(100_000);
        let client = CoordinatorClient::new(&server.url()).unwrap();
        client.register_node(&node, &advert).await.unwrap();
        // The earlier run, its clock ahead: counted 300 bytes.
        let now = unix_ms();
        let earlier = now + 1_000;
        let mut previous = NodeHeartbeat {
            bytes_served: 300,
            ..beat(&node, earlier)
        };
        previous.claim_totals = Some(ClaimTotals {
            run: earlier,
            bytes_served: 300,
            unattested_bytes: 0,
        });
        client
            .heartbeat(Signed::sign(previous, &node), Vec::new())
            .await
            .unwrap();
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 300);

        let gate = gate_of(coordinator_key, &node);
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.sessions = false;
        auth.claim_totals = true;
        // The restarted node's first heartbeat: refused, its nonce below the earlier run's.
        let mut nonce = now;
        let first = NodeHeartbeat {
            bytes_served: 100,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, first, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 300);
        // The next, above it, carries the returned claim and 50 bytes more: all counted.
        let left = gate.accounting.take(&[], unix_ms());
        nonce = earlier + 1_000;
        let next = NodeHeartbeat {
            bytes_served: 50 + left.attested,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, next, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 450);
    }

    /// Signed heartbeats carry the run's claim totals to a coordinator that takes them, so
    /// a claim sent again under a new nonce (as a node that dropped its held heartbeat, or
    /// one built before nodes held them, does) is counted once: the totals restate what the
    /// coordinator counted, and only the bytes served since add to it.
    #[tokio::test]
    async fn a_claim_sent_again_under_a_new_nonce_is_counted_once_by_its_run_totals() {
        let (server, storage, coordinator_key, _dir) = coordinator_taking(4).await;
        let node = KeyPair::from_seed([47; 32]);
        let advert = advert(100_000);
        let direct = CoordinatorClient::new(&server.url()).unwrap();
        direct.register_node(&node, &advert).await.unwrap();
        let info = direct.coordinator_info().await.unwrap();
        assert!(info.heartbeat_claim_totals);
        let client = client_losing_the_first_answer(&server).await;
        let gate = gate_of(coordinator_key, &node);
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.sessions = false;
        auth.claim_totals = info.heartbeat_claim_totals;

        // The first tick claims 1000 bytes: counted, but its answer is lost.
        let mut nonce = unix_ms();
        let first = NodeHeartbeat {
            bytes_served: 1_000,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, first, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_000);

        // The held heartbeat is dropped and its claim put back: the next tick claims it again
        // with the 500 bytes served since, under a new nonce.
        let held = auth
            .unanswered
            .take()
            .expect("the unanswered heartbeat is held");
        nonce += 1;
        let again = NodeHeartbeat {
            bytes_served: 500 + held.body.bytes_served,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, again, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_500);

        // A genuinely new claim still counts.
        nonce += 1;
        let next = NodeHeartbeat {
            bytes_served: 200,
            ..beat(&node, nonce)
        };
        send_beats(&mut auth, &gate, next, Vec::new(), &mut nonce).await;
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 1_700);
    }

    /// A held unanswered heartbeat that can no longer be sent (older than the clock skew the
    /// coordinator allows) is settled by the node's stored nonce: claimed again only when
    /// the coordinator never counted it.
    #[tokio::test]
    async fn a_held_heartbeat_too_old_to_send_again_is_claimed_again_only_if_not_counted() {
        let (server, storage, coordinator_key, _dir) = coordinator_taking(4).await;
        let node = KeyPair::from_seed([46; 32]);
        let advert = advert(100_000);
        let client = CoordinatorClient::new(&server.url()).unwrap();
        client.register_node(&node, &advert).await.unwrap();
        let mut auth = HeartbeatAuth::new(client, node.clone(), coordinator_key);
        auth.sessions = false;
        let stale = |nonce: u64| {
            Signed::sign(
                NodeHeartbeat {
                    timestamp_ms: unix_ms() - 3_600_000,
                    bytes_served: 700,
                    ..beat(&node, nonce)
                },
                &node,
            )
        };

        // Never counted: its 700 bytes go into the next heartbeat.
        let base = unix_ms();
        auth.unanswered = Some(stale(base));
        let next = beat(&node, base + 1);
        auth.send(next, Vec::new()).await.unwrap();
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 700);

        // The coordinator holds a nonce at or above it (the first send was counted): not
        // claimed again.
        auth.unanswered = Some(stale(base + 1));
        auth.send(beat(&node, base + 2), Vec::new()).await.unwrap();
        assert_eq!(attested_claims(storage.as_ref(), &node).await, 700);
        assert!(auth.unanswered.is_none());
    }

    #[tokio::test]
    async fn session_heartbeats_deliver_more_receipts_than_one_may_carry() {
        receipts_beyond_the_limit_are_all_delivered(HeartbeatAuthMode::Session, true).await;
    }

    #[tokio::test]
    async fn signed_heartbeats_deliver_more_receipts_than_one_may_carry() {
        receipts_beyond_the_limit_are_all_delivered(HeartbeatAuthMode::Signed, true).await;
    }

    #[tokio::test]
    async fn a_coordinator_refusing_more_receipts_than_it_said_gets_smaller_batches() {
        receipts_beyond_the_limit_are_all_delivered(HeartbeatAuthMode::Session, false).await;
        receipts_beyond_the_limit_are_all_delivered(HeartbeatAuthMode::Signed, false).await;
    }
}
