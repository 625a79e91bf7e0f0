//! JSON request and response bodies of the coordinator's HTTP API, and the signed node
//! messages that only the coordinator defines (registration and deregistration).
//!
//! These are the API's types, not the coordinator's database rows: the coordinator maps its
//! storage records to them, so the schema and the protocol can change apart. With the
//! `openapi` feature each derives `utoipa::ToSchema` under the name the API document has
//! always given it.

use serde::{Deserialize, Serialize};
use streamr_core::{
    BalanceLeaf, CanonicalMessage, ContentDigest, CoordinatorKey, HeartbeatMac, MacHeartbeat,
    MerkleProof, NodeEpochInput, NodeHeartbeat, NodeId, NodeSessionAccept, NodeSessionId,
    NodeSessionOpen, OperatorKey, OperatorMembership, RewardConfig, Signed, SignedGrant,
    SignedHeartbeat, SignedOriginClaim, SignedPartReport, SignedReceipt, SignedSegmentReport,
    StreamId,
};

/// Domain tag of a [`NodeRegistration`] signature.
pub const REGISTRATION_TAG: &[u8] = b"streamr/node-registration/v1\0";
/// Domain tag of a [`NodeDeregistration`] signature.
pub const DEREGISTRATION_TAG: &[u8] = b"streamr/node-deregistration/v1\0";

fn push_str(bytes: &mut Vec<u8>, value: &str) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(value.as_bytes());
}

/// A node's request to join, signed with the node key it registers (proof of possession).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRegistration {
    /// The node's public key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NodeIdSchema))]
    pub node_id: NodeId,
    /// Where rewards are paid.
    pub payout_address: String,
    /// Who runs the node.
    pub operator: String,
    /// Base RTMP URL viewers play from.
    pub rtmp_url: String,
    /// Base HTTP URL (HTTP-FLV, HLS).
    pub http_url: String,
    /// Upload capacity in kbit/s.
    pub capacity_kbps: u64,
    /// Node clock, Unix milliseconds (checked against the skew window).
    pub timestamp_ms: u64,
    /// The operator key's signature saying this node is one of `operator`'s
    /// (`streamr-node --operator-key`). The coordinator binds an operator name to the first key
    /// that proves a node under it and refuses (403 `operator_name_bound`) a registration naming
    /// a bound operator without that key's signature; a node without one is its own operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::OperatorMembershipSchema>))]
    pub operator_membership: Option<OperatorMembership>,
}

impl CanonicalMessage for NodeRegistration {
    /// `REGISTRATION_TAG ‖ node_id(32) ‖ (len ‖ payout_address) ‖ (len ‖ operator) ‖
    /// (len ‖ rtmp_url) ‖ (len ‖ http_url) ‖ capacity_kbps(8) ‖ timestamp_ms(8)`, then, only
    /// when the registration carries an operator membership, `operator_key(32) ‖ signature(64)`
    /// (so a registration without one signs what it always did), integers big-endian, as in
    /// `streamr_core::canonical`.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = REGISTRATION_TAG.to_vec();
        bytes.extend_from_slice(self.node_id.as_bytes());
        push_str(&mut bytes, &self.payout_address);
        push_str(&mut bytes, &self.operator);
        push_str(&mut bytes, &self.rtmp_url);
        push_str(&mut bytes, &self.http_url);
        bytes.extend_from_slice(&self.capacity_kbps.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        if let Some(membership) = &self.operator_membership {
            bytes.extend_from_slice(membership.operator_key.as_bytes());
            bytes.extend_from_slice(membership.signature.as_bytes());
        }
        bytes
    }
}

/// A node's request to leave, signed with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeDeregistration {
    /// The node leaving.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NodeIdSchema))]
    pub node_id: NodeId,
    /// Node clock, Unix milliseconds (checked against the skew window).
    pub timestamp_ms: u64,
}

impl CanonicalMessage for NodeDeregistration {
    /// `DEREGISTRATION_TAG ‖ node_id(32) ‖ timestamp_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = DEREGISTRATION_TAG.to_vec();
        bytes.extend_from_slice(self.node_id.as_bytes());
        bytes.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        bytes
    }
}

/// `POST /streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateStreamRequest {
    /// The stream name the origin publishes under.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: StreamId,
    /// Human-readable title.
    #[serde(default)]
    pub title: String,
    /// The node allowed to act as the stream's origin (sign its segment reports). When
    /// omitted, the first node that signs a successful publish check is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::NodeIdSchema>))]
    pub origin_node: Option<NodeId>,
}

/// `POST /streams/{id}/origin` (admin): binds the stream to another origin node, or clears the
/// binding (`null`) so the next node that signs a successful publish check is bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetOriginRequest {
    /// The node now allowed to act as the stream's origin; `None` clears the binding.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::NodeIdSchema>))]
    pub origin_node: Option<NodeId>,
}

/// Answer to `POST /operators/rotations`: an operator name's binding after the rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorBindingInfo {
    /// The operator name, in its canonical form (`streamr_core::canonical_operator_name`).
    pub operator: String,
    /// The operator key the name is bound to now.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::OperatorKeySchema))]
    pub operator_key: OperatorKey,
    /// The sequence of the name's last accepted rotation.
    pub rotation: u64,
}

/// Answer to `POST /streams`: the stream key is shown once and never stored in clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateStreamResponse {
    /// The stream.
    pub stream: StreamInfo,
    /// The key the publisher presents to the origin.
    pub stream_key: String,
}

/// `POST /streams/{id}/publish-check`: the origin asks whether a publisher's key is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishCheckRequest {
    /// The key the publisher presented.
    pub stream_key: String,
    /// The asking origin's signed claim: binds the stream to that node when it has no origin
    /// yet, and is refused (403) when another node is bound. Without it the check only
    /// answers whether the key is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::SignedOriginClaimSchema>))]
    pub origin: Option<SignedOriginClaim>,
}

/// `POST /streams/{id}/segments` with the admin token: an operator reports a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SegmentReport {
    /// Segment sequence number.
    pub sequence: u64,
    /// BLAKE3 hash of the segment bytes (`streamr_core::segment_hash`).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DigestSchema))]
    pub hash: ContentDigest,
    /// When the origin published it, Unix milliseconds.
    pub published_ms: u64,
}

/// The body of `POST /streams/{id}/segments`: a report signed by the stream's origin node
/// (`{"body": {...}, "signature": ...}`), or a bare report sent with the admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SegmentReportRequest {
    /// Signed by the origin node bound to the stream (boxed: it is several times the size of
    /// the bare report).
    Signed(Box<SignedSegmentReport>),
    /// Unsigned; needs the admin bearer token.
    Admin(SegmentReport),
}

/// Answer to a segment report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentReportResponse {
    /// The stored segment with its running digest.
    pub segment: SegmentInfo,
    /// `false` when the same report had been stored already.
    pub created: bool,
}

/// `POST /streams/{id}/parts`: parts an origin cut, signed by the stream's origin node.
pub type PartReportRequest = SignedPartReport;

/// `POST /nodes/heartbeat`: a signed heartbeat and the receipts viewers gave the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The heartbeat, signed by the node.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedHeartbeatSchema))]
    pub heartbeat: SignedHeartbeat,
    /// Viewer receipts (each signed by its viewer).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::SignedReceiptSchema>))]
    pub receipts: Vec<SignedReceipt>,
}

/// `POST /nodes/sessions`: a node opens a session (its ephemeral X25519 share), signed with
/// its node key.
pub type SignedNodeSessionOpen = Signed<NodeSessionOpen>;

/// The answer to `POST /nodes/sessions`: the session id, both shares and the expiry, signed
/// with the coordinator key.
pub type SignedNodeSessionAccept = Signed<NodeSessionAccept>;

/// `POST /nodes/session-heartbeat`: a heartbeat authenticated by its node session's MAC, and
/// the receipts viewers gave the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionHeartbeatRequest {
    /// The session whose key made the MAC.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NodeSessionIdSchema))]
    pub session_id: NodeSessionId,
    /// The heartbeat.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NodeHeartbeatSchema))]
    pub heartbeat: NodeHeartbeat,
    /// Keyed BLAKE3 of the heartbeat's canonical bytes under the session key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::HeartbeatMacSchema))]
    pub mac: HeartbeatMac,
    /// Viewer receipts (each signed by its viewer).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::SignedReceiptSchema>))]
    pub receipts: Vec<SignedReceipt>,
}

impl SessionHeartbeatRequest {
    /// A sealed heartbeat with the receipts it carries.
    pub fn new(sealed: MacHeartbeat, receipts: Vec<SignedReceipt>) -> Self {
        SessionHeartbeatRequest {
            session_id: sealed.session_id,
            heartbeat: sealed.heartbeat,
            mac: sealed.mac,
            receipts,
        }
    }

    /// The sealed heartbeat and the receipts, apart.
    pub fn into_parts(self) -> (MacHeartbeat, Vec<SignedReceipt>) {
        (
            MacHeartbeat {
                session_id: self.session_id,
                heartbeat: self.heartbeat,
                mac: self.mac,
            },
            self.receipts,
        )
    }
}

/// Answer to a heartbeat or a receipt upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptsOutcome {
    /// Receipts newly stored.
    pub accepted: u64,
    /// Why each rejected receipt was rejected, in words (the `reason` of each of
    /// `rejections`, in the same order; kept for nodes and viewers that predate `rejections`).
    pub rejected: Vec<String>,
    /// Each rejected receipt's stable code and reason (absent from older coordinators'
    /// answers: [`ReceiptsOutcome::rejections`] reads either).
    #[serde(default)]
    pub rejections: Vec<ReceiptRejected>,
}

impl ReceiptsOutcome {
    /// Notes a rejected receipt: its code and reason, in both lists.
    pub fn reject(&mut self, code: ReceiptRejectionCode, reason: String) {
        self.rejected.push(reason.clone());
        self.rejections.push(ReceiptRejected { code, reason });
    }

    /// Every rejection with its code. An answer without codes (an older coordinator's) gives
    /// each reason the code [`ReceiptRejectionCode::Other`].
    pub fn rejections(&self) -> Vec<ReceiptRejected> {
        if self.rejections.is_empty() {
            self.rejected
                .iter()
                .map(|reason| ReceiptRejected {
                    code: ReceiptRejectionCode::Other,
                    reason: reason.clone(),
                })
                .collect()
        } else {
            self.rejections.clone()
        }
    }
}

/// One rejected receipt: what kind of rejection (a stable code to match on) and the reason in
/// words (for people; its wording may change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptRejected {
    /// The kind of rejection.
    pub code: ReceiptRejectionCode,
    /// The rejection in words, naming the session and receipt.
    pub reason: String,
}

/// Why a receipt earned nothing, as a stable snake_case code. New codes may be added: a
/// reader meets a code it does not know as [`ReceiptRejectionCode::Other`].
///
/// Three codes say nothing against whoever handed the receipt in
/// ([`ReceiptRejectionCode::is_expected`]): `duplicate`, `superseded` and `outdated`, which a
/// node sees after retries and coordinator outages in normal operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReceiptRejectionCode {
    /// No grant is known for the session (or, from a node, it serves no such session).
    UnknownSession,
    /// The session was granted to another node than the one handing the receipt in.
    WrongNode,
    /// The viewer's signature does not verify.
    BadSignature,
    /// The same receipt as the last accepted one, handed in again (a retry).
    Duplicate,
    /// A newer receipt of the session in the same submission was accepted instead.
    Superseded,
    /// A validly signed receipt older than the accepted one and consistent with it, as when a
    /// node hands in what it held through a coordinator outage after the viewer posted a
    /// newer one itself.
    Outdated,
    /// The sequence number was used already and the counts do not fit under the accepted
    /// receipt.
    Replayed,
    /// A cumulative field (bytes, segment, time) went backwards.
    NotMonotonic,
    /// Signed after the grant expired.
    Expired,
    /// Signed further ahead of the coordinator's clock than the allowed skew.
    FromTheFuture,
    /// Signed in an epoch whose receipt deadline has passed.
    Late,
    /// Acknowledges more bytes than the grant allows.
    BeyondGrant,
    /// The origin has no digest for the receipt's segment.
    UnknownSegment,
    /// The receipt's content digest differs from the origin's.
    ContentMismatch,
    /// The segment acknowledged was already too old when the receipt was signed.
    StaleContent,
    /// A code this build does not know (a newer coordinator's), or a reason an older
    /// coordinator gave without a code.
    #[serde(other)]
    Other,
}

impl ReceiptRejectionCode {
    /// The code as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptRejectionCode::UnknownSession => "unknown_session",
            ReceiptRejectionCode::WrongNode => "wrong_node",
            ReceiptRejectionCode::BadSignature => "bad_signature",
            ReceiptRejectionCode::Duplicate => "duplicate",
            ReceiptRejectionCode::Superseded => "superseded",
            ReceiptRejectionCode::Outdated => "outdated",
            ReceiptRejectionCode::Replayed => "replayed",
            ReceiptRejectionCode::NotMonotonic => "not_monotonic",
            ReceiptRejectionCode::Expired => "expired",
            ReceiptRejectionCode::FromTheFuture => "from_the_future",
            ReceiptRejectionCode::Late => "late",
            ReceiptRejectionCode::BeyondGrant => "beyond_grant",
            ReceiptRejectionCode::UnknownSegment => "unknown_segment",
            ReceiptRejectionCode::ContentMismatch => "content_mismatch",
            ReceiptRejectionCode::StaleContent => "stale_content",
            ReceiptRejectionCode::Other => "other",
        }
    }

    /// Whether the rejection is a normal consequence of retries or outages that says nothing
    /// against whoever handed the receipt in: a duplicate, superseded or outdated receipt.
    pub fn is_expected(self) -> bool {
        matches!(
            self,
            ReceiptRejectionCode::Duplicate
                | ReceiptRejectionCode::Superseded
                | ReceiptRejectionCode::Outdated
        )
    }
}

impl std::fmt::Display for ReceiptRejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&streamr_core::ReceiptRejection> for ReceiptRejectionCode {
    fn from(rejection: &streamr_core::ReceiptRejection) -> Self {
        use streamr_core::ReceiptRejection as R;
        match rejection {
            R::UnknownSession { .. } => ReceiptRejectionCode::UnknownSession,
            R::WrongNode { .. } => ReceiptRejectionCode::WrongNode,
            R::BadSignature { .. } => ReceiptRejectionCode::BadSignature,
            R::Duplicate { .. } => ReceiptRejectionCode::Duplicate,
            R::Superseded { .. } => ReceiptRejectionCode::Superseded,
            R::Outdated { .. } => ReceiptRejectionCode::Outdated,
            R::Replayed { .. } => ReceiptRejectionCode::Replayed,
            R::NotMonotonic { .. } => ReceiptRejectionCode::NotMonotonic,
            R::Expired { .. } => ReceiptRejectionCode::Expired,
            R::FromTheFuture { .. } => ReceiptRejectionCode::FromTheFuture,
            R::BeyondGrant { .. } => ReceiptRejectionCode::BeyondGrant,
            R::UnknownSegment { .. } => ReceiptRejectionCode::UnknownSegment,
            R::ContentMismatch { .. } => ReceiptRejectionCode::ContentMismatch,
            R::StaleContent { .. } => ReceiptRejectionCode::StaleContent,
            _ => ReceiptRejectionCode::Other,
        }
    }
}

impl From<&streamr_core::ReceiptRejection> for ReceiptRejected {
    fn from(rejection: &streamr_core::ReceiptRejection) -> Self {
        ReceiptRejected {
            code: rejection.into(),
            reason: rejection.to_string(),
        }
    }
}

/// `GET /nodes/{id}/reachability`: whether the coordinator could connect back to the
/// addresses a node advertises, and what its operator must forward when not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachabilityReport {
    /// The node.
    pub node_id: String,
    /// Whether the coordinator checks reachability at all.
    pub checks_enabled: bool,
    /// `reachable`, `unreachable` or `unchecked` (no check of the current addresses yet).
    pub status: String,
    /// The advertised RTMP URL.
    pub rtmp_url: String,
    /// The advertised HTTP URL.
    pub http_url: String,
    /// The RTMP check's outcome (`None` before the first check).
    pub rtmp_reachable: Option<bool>,
    /// The HTTP check's outcome (`None` before the first check).
    pub http_reachable: Option<bool>,
    /// Why the RTMP check failed (empty when it passed).
    pub rtmp_error: String,
    /// Why the HTTP check failed (empty when it passed).
    pub http_error: String,
    /// When the last check ran.
    pub checked_at_ms: Option<i64>,
    /// What the operator must do, e.g. which ports to forward (`None` when reachable).
    pub hint: Option<String>,
}

/// `POST /receipts`: receipts posted by a viewer directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReceiptsRequest {
    /// Signed receipts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::SignedReceiptSchema>))]
    pub receipts: Vec<SignedReceipt>,
}

/// Where to watch, and the grant that lets the node earn from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlayResponse {
    /// The chosen node.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::NodeIdSchema))]
    pub node_id: NodeId,
    /// RTMP playback URL.
    pub rtmp_url: String,
    /// HTTP-FLV playback URL.
    pub http_flv_url: String,
    /// HLS playlist URL.
    pub hls_url: String,
    /// The coordinator-signed session grant.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedGrantSchema))]
    pub grant: SignedGrant,
}

/// A node's earnings: its ledger and payouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EarningsResponse {
    /// The node.
    pub node: NodeInfo,
    /// Sum of its ledger entries, micro-units.
    pub total: i64,
    /// Its ledger entries.
    pub entries: Vec<LedgerEntryInfo>,
    /// Its payouts.
    pub payouts: Vec<PayoutInfo>,
}

/// An epoch's statement: settlement, ledger entries and evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementResponse {
    /// The settlement.
    pub settlement: SettlementInfo,
    /// Its ledger entries.
    pub entries: Vec<LedgerEntryInfo>,
    /// Fraud evidence found in the epoch.
    pub evidence: Vec<EvidenceInfo>,
}

/// The node request types re-exported for clients.
pub type SignedRegistration = Signed<NodeRegistration>;
/// A signed deregistration.
pub type SignedDeregistration = Signed<NodeDeregistration>;

/// Domain tag of an [`UpstreamRequest`] signature.
pub const UPSTREAM_REQUEST_TAG: &[u8] = b"streamr/upstream-request/v1\0";

/// A relaying node asks where to pull a stream from (its place in the relay tree), signed
/// with its key; `failed` names upstreams that just failed it (its parent), to be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRequest {
    /// The node asking.
    pub node_id: NodeId,
    /// The stream it wants.
    pub stream_id: StreamId,
    /// Node clock, Unix milliseconds (checked against the skew window).
    pub timestamp_ms: u64,
    /// Upstream nodes that failed it since it last asked.
    #[serde(default)]
    pub failed: Vec<NodeId>,
}

impl CanonicalMessage for UpstreamRequest {
    /// `UPSTREAM_REQUEST_TAG ‖ node_id(32) ‖ (len ‖ stream_id) ‖ timestamp_ms(8) ‖ count(4) ‖
    /// failed node ids(32 each)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = UPSTREAM_REQUEST_TAG.to_vec();
        bytes.extend_from_slice(self.node_id.as_bytes());
        push_str(&mut bytes, self.stream_id.as_str());
        bytes.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        let count = u32::try_from(self.failed.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&count.to_be_bytes());
        for node in &self.failed {
            bytes.extend_from_slice(node.as_bytes());
        }
        bytes
    }
}

/// One upstream of a relay: a node to pull from and the grant that admits the relay there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamEntry {
    /// The node to pull from.
    pub node_id: NodeId,
    /// Its RTMP base URL (`rtmp://host:port`), without app or stream.
    pub rtmp_base: String,
    /// The query to play with (`grant=<token>`): the relay is a viewer of its parent.
    pub query: String,
    /// The grant itself.
    pub grant: SignedGrant,
}

/// Where a relay pulls a stream from: its parent first, then the parent's ancestors
/// (fallbacks while the coordinator re-parents it). The origin is named only to its own
/// children (depth 1): no deeper relay falls back to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamResponse {
    /// The relay's tier: 1 under the origin, 2 under a tier-1 relay, and so on.
    pub depth: u32,
    /// Parent first; the origin only when it is the parent. Empty when no place was free:
    /// the relay asks again.
    pub upstreams: Vec<UpstreamEntry>,
}

/// Answer to `GET /coordinator`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoordinatorInfo {
    /// The public key that verifies the session grants this coordinator signs.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::CoordinatorKeySchema))]
    pub coordinator_key: CoordinatorKey,
    /// Length of a reward epoch, milliseconds.
    pub epoch_length_ms: i64,
    /// The coordinator runs a local trial: not a network to earn real money on.
    #[serde(default)]
    pub local_trial: bool,
    /// Most relays an origin feeds per stream in the relay tree (k): an origin admits no more
    /// (absent from older coordinators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_fanout: Option<u32>,
    /// Most receipts one request may carry: a heartbeat's, or a viewer's `POST /receipts`. A
    /// node holding more sends them in further heartbeats (absent from older coordinators:
    /// nodes then send at most 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_receipts_per_request: Option<u32>,
    /// Whether signed heartbeats may carry the node's run claim totals
    /// (`streamr_core::NodeHeartbeat::claim_totals`), by which a claim sent again under a
    /// new nonce is counted once. Older coordinators leave it out (false): they would not
    /// verify the signature over the field, so nodes send heartbeats without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heartbeat_claim_totals: bool,
}

/// A registered stream (`GET /streams/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = StreamRecord))]
pub struct StreamInfo {
    /// Stream id (random, URL-safe).
    pub id: String,
    /// Human-readable title.
    pub title: String,
    /// `live` or `ended`.
    pub status: String,
    /// When it was registered.
    pub created_at_ms: i64,
    /// When it ended, if it has.
    pub ended_at_ms: Option<i64>,
    /// The node (hex id) allowed to act as the stream's origin and sign its segment reports;
    /// `None` until set at creation or bound by the first signed publish check.
    #[serde(default)]
    pub origin_node: Option<String>,
}

/// A media segment hash reported by the origin, with the running digest up to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SegmentRecord))]
pub struct SegmentInfo {
    /// The stream.
    pub stream_id: String,
    /// Segment sequence number.
    pub sequence: i64,
    /// Hex hash of the segment bytes.
    pub hash: String,
    /// Hex running digest over the hashes of every segment up to this one.
    pub digest: String,
    /// When the origin published it.
    pub published_ms: i64,
    /// When the origin reported it.
    pub reported_at_ms: i64,
    /// The LL-HLS (fMP4) rendition of this segment, when the origin serves it. Receipts over
    /// LL-HLS bind its `digest`; MPEG-TS receipts bind `digest` above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll: Option<LlSegmentInfo>,
}

/// The fMP4 segment cut at the same frames as a [`SegmentInfo`]'s MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = LlSegment))]
pub struct LlSegmentInfo {
    /// Hex BLAKE3 hash of the fMP4 segment bytes (its parts, concatenated in order).
    pub hash: String,
    /// Hex running digest over the fMP4 hashes: chained like [`SegmentInfo::digest`], from
    /// the previous segment's LL digest (all zeros when it has none).
    pub digest: String,
    /// Hex BLAKE3 hash of each partial segment, in order.
    pub part_hashes: Vec<String>,
    /// Size of the fMP4 segment in bytes.
    pub len: i64,
}

/// Answer to a part report (`POST /streams/{id}/parts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartReportResponse {
    /// Parts in the report.
    pub parts: u64,
    /// Of them, parts not stored before (the others were reported with the same hash).
    pub created: u64,
}

/// A partial segment the origin reported as it cut it (`GET /streams/{id}/parts/{hash}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PartRecord))]
pub struct PartInfo {
    /// The origin's numbering run, 16 hex digits.
    pub run: String,
    /// Media sequence number of its segment in the origin's LL-HLS playlist.
    pub msn: i64,
    /// Its index in the segment.
    pub index: i64,
    /// Hex BLAKE3 hash of the part bytes.
    pub hash: String,
    /// Size in bytes.
    pub len: i64,
    /// When the origin cut it, Unix milliseconds (the origin's clock).
    pub cut_ms: i64,
    /// When the coordinator stored the report, Unix milliseconds.
    pub reported_at_ms: i64,
}

/// One signed part report with its number in the stream's sequence of reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NumberedPartReport {
    /// The report's number: 1 for the stream's first, one more for each report after.
    pub seq: u64,
    /// The report exactly as the origin signed it: whoever passes it on cannot alter it.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedPartReportSchema))]
    pub report: SignedPartReport,
}

/// The origin's signed part reports after a cursor (`GET /streams/{id}/part-reports` at the
/// coordinator, `GET /{app}/{stream}/part-reports` at a node serving LL-HLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartReportsPage {
    /// The reports numbered above the cursor, oldest first (only the newest when there were
    /// more than a page: older ones are behind the live edge).
    pub reports: Vec<NumberedPartReport>,
    /// The cursor to ask with next: the newest report's number, or the cursor asked with when
    /// there was none.
    pub next: u64,
}

/// A friend node (`GET /nodes/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = NodeRecord))]
pub struct NodeInfo {
    /// Node id: its ed25519 public key in hex.
    pub id: String,
    /// Where rewards are paid.
    pub payout_address: String,
    /// The operator running it (rewards are capped per operator).
    pub operator: String,
    /// Its /24 as `a.b.c` (rewards are capped per /24).
    pub subnet: String,
    /// Base RTMP URL viewers play from, e.g. `rtmp://host:1935/live`.
    pub rtmp_url: String,
    /// Base HTTP URL for HTTP-FLV and HLS, e.g. `http://host:8080`.
    pub http_url: String,
    /// When it first registered.
    pub registered_at_ms: i64,
    /// Whether it takes part in routing and rewards.
    pub active: bool,
    /// Upload capacity it announced, in kbit/s.
    pub capacity_kbps: i64,
    /// The highest heartbeat nonce accepted (-1 before the first heartbeat).
    pub last_nonce: i64,
    /// The signed timestamp of its last accepted heartbeat.
    pub last_heartbeat_ms: Option<i64>,
    /// `registered`, `online` or `deregistered`.
    pub status: String,
    /// Viewers connected at its last heartbeat.
    pub viewers: i64,
    /// Bytes it claimed to serve in the interval before its last heartbeat.
    pub bytes_served: i64,
    /// JSON array of the stream ids it relays.
    pub streams_json: String,
}

/// A settled epoch: the published inputs, the closing statement and the Merkle leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SettlementRecord))]
pub struct SettlementInfo {
    /// The epoch.
    pub epoch: i64,
    /// Hash (hex) of the previous epoch's statement.
    pub previous_hash: String,
    /// Hash (hex) of this epoch's statement.
    pub statement_hash: String,
    /// Merkle root (hex) over every node's cumulative balances.
    pub merkle_root: String,
    /// Pool issued, micro-units.
    pub pool: i64,
    /// Rewards credited to nodes.
    pub distributed: i64,
    /// Penalties taken.
    pub penalties: i64,
    /// Rewards vested at the epoch's close.
    pub vested: i64,
    /// Number of Merkle leaves.
    pub leaf_count: i64,
    /// `streamr_core::EpochInputs` as JSON: enough for anyone to replay the settlement.
    pub inputs_json: String,
    /// `streamr_core::EpochStatement` as JSON.
    pub statement_json: String,
    /// The Merkle leaves (`streamr_core::BalanceLeaf`) as a JSON array.
    pub leaves_json: String,
    /// `streamr_core::EpochObservations` the fraud rules assessed, as JSON.
    pub observations_json: String,
    /// When it was settled.
    pub settled_at_ms: i64,
    /// Which replica settled it.
    pub settled_by: String,
}

/// One line of the double-entry ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = LedgerEntryRecord))]
pub struct LedgerEntryInfo {
    /// Position in the ledger, from 0.
    pub idx: i64,
    /// The epoch it belongs to.
    pub epoch: i64,
    /// Why: funding, reward, vesting, penalty, fee or payout.
    pub kind: String,
    /// Account debited, e.g. `reward pool`.
    pub debit: String,
    /// Account credited, e.g. `unvested:<node>`.
    pub credit: String,
    /// The node whose account it touches, if any.
    pub node_id: Option<String>,
    /// Micro-units moved.
    pub amount: i64,
}

/// Fraud evidence found for a node in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = EvidenceRecord))]
pub struct EvidenceInfo {
    /// The epoch.
    pub epoch: i64,
    /// The node.
    pub node_id: String,
    /// The rule that fired.
    pub rule: String,
    /// JSON detail.
    pub detail: String,
    /// When it was recorded.
    pub created_at_ms: i64,
}

/// A payout of vested rewards, planned at an epoch's settlement and then handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PayoutRecord))]
pub struct PayoutInfo {
    /// The node.
    pub node_id: String,
    /// The node's total net payouts after this one (the sink's idempotency key).
    pub cumulative_net: i64,
    /// The epoch whose settlement planned it.
    pub epoch: i64,
    /// Where it is paid.
    pub payout_address: String,
    /// Vested micro-units released.
    pub gross: i64,
    /// Fees withheld.
    pub fees: i64,
    /// What the node receives.
    pub net: i64,
    /// `pending` or `sent`.
    pub status: String,
    /// What the sink reported once sent.
    pub sink_reference: Option<String>,
    /// Last change.
    pub updated_at_ms: i64,
}

/// One probe of a node, as recorded (`POST /probes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ProbeRecord))]
pub struct ProbeInfo {
    /// The node probed.
    pub node_id: String,
    /// The epoch it counts towards.
    pub epoch: i64,
    /// The fetched segment's hash matched the origin's.
    pub hash_ok: bool,
    /// No response within the probe deadline.
    pub timed_out: bool,
    /// Time to first byte, ms.
    pub ttfb_ms: i64,
    /// Measured throughput, bytes per second.
    pub throughput_bytes_per_s: i64,
    /// When it ran.
    pub probed_at_ms: i64,
}

/// One minute of delivery for a stream or node (`GET /streams/{id}/stats`,
/// `GET /nodes/{id}/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = StatsRow))]
pub struct StatsInfo {
    /// Minute index (Unix milliseconds / 60000).
    pub minute: i64,
    /// Bytes acknowledged by receipts.
    pub bytes: i64,
    /// Number of receipts.
    pub receipts: i64,
}

/// Coordinator-wide counts (`GET /stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Totals))]
pub struct TotalsInfo {
    /// Streams currently live.
    pub live_streams: i64,
    /// Active nodes.
    pub active_nodes: i64,
    /// Receipts stored.
    pub receipts: i64,
    /// Settled epochs.
    pub settled_epochs: i64,
    /// Micro-units paid out to nodes (net).
    pub paid_out: i64,
}

/// `GET /nodes/{id}/payouts`: where a node's rewards are in their lifecycle (micro-units),
/// the payout policy that applies to it, and every payout planned for it, pending or sent.
///
/// `earned == unvested + vested + pending + paid + fees`: every micro-unit credited (less
/// penalties) is in exactly one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodePayouts {
    /// The node.
    pub node_id: String,
    /// Where it is paid.
    pub payout_address: String,
    /// Rewards credited minus penalties taken.
    pub earned: i64,
    /// Still vesting (penalties take from here).
    pub unvested: i64,
    /// Vested and payable, waiting to reach the threshold (and exceed the fees).
    pub vested: i64,
    /// Planned payouts the payout sink has not confirmed yet, net of fees.
    pub pending: i64,
    /// Confirmed by the payout sink, net of fees.
    pub paid: i64,
    /// Fees withheld from its payouts.
    pub fees: i64,
    /// The smallest vested amount paid out to this node.
    pub threshold: u64,
    /// Fee per payout, micro-units.
    pub fee_fixed: u64,
    /// Fee in proportion to each payout, ppm.
    pub fee_ppm: u64,
    /// Every payout of the node, newest first, pending and sent.
    pub payouts: Vec<PayoutInfo>,
}

impl NodePayouts {
    /// Whether every micro-unit earned is in exactly one stage.
    pub fn is_conserved(&self) -> bool {
        [
            self.unvested,
            self.vested,
            self.pending,
            self.paid,
            self.fees,
        ]
        .iter()
        .map(|v| i128::from(*v))
        .sum::<i128>()
            == i128::from(self.earned)
    }
}

/// A node's Merkle proof against an epoch's published root.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProofResponse {
    /// The epoch.
    pub epoch: i64,
    /// The root the proof leads to (hex).
    pub merkle_root: String,
    /// The node's leaf.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::BalanceLeafSchema))]
    pub leaf: BalanceLeaf,
    /// The path from the leaf to the root.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::MerkleProofSchema))]
    pub proof: MerkleProof,
}

impl ProofResponse {
    /// Whether the proof leads from the leaf to `published_root` (hex), the root the epoch's
    /// settlement published: an operator checks its balance without trusting this answer.
    pub fn verify(&self, published_root: &str) -> bool {
        match published_root.parse::<ContentDigest>() {
            Ok(root) => self.merkle_root == published_root && self.proof.verify(&root, &self.leaf),
            Err(_) => false,
        }
    }
}

/// `POST /simulate`: the reward split on hypothetical inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// The pool to split, micro-units.
    pub pool: u64,
    /// Hypothetical per-node contributions (each node once).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::NodeEpochInputSchema>))]
    pub nodes: Vec<NodeEpochInput>,
    /// Reward parameters; the coordinator's own when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::RewardConfigSchema>))]
    pub rewards: Option<RewardConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamr_core::KeyPair;

    #[test]
    fn rejection_codes_are_stable_snake_case_and_unknown_ones_read_as_other() {
        let session = streamr_core::SessionId::from_bytes([1; 16]);
        let outdated = streamr_core::ReceiptRejection::Outdated {
            session,
            seq: 1,
            last_seq: 2,
        };
        let mut outcome = ReceiptsOutcome::default();
        let rejected = ReceiptRejected::from(&outdated);
        outcome.reject(rejected.code, rejected.reason);
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["rejections"][0]["code"], "outdated");
        assert_eq!(json["rejected"][0], outdated.to_string());
        for code in [
            ReceiptRejectionCode::FromTheFuture,
            ReceiptRejectionCode::ContentMismatch,
            ReceiptRejectionCode::Late,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        let newer: ReceiptRejected =
            serde_json::from_str(r#"{"code":"some_new_code","reason":"why"}"#).unwrap();
        assert_eq!(newer.code, ReceiptRejectionCode::Other);
    }

    #[test]
    fn an_older_coordinators_answer_without_codes_still_parses() {
        let old: ReceiptsOutcome =
            serde_json::from_str(r#"{"accepted":1,"rejected":["session 01: no grant"]}"#).unwrap();
        assert!(old.rejections.is_empty());
        let read = old.rejections();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].code, ReceiptRejectionCode::Other);
        assert_eq!(read[0].reason, "session 01: no grant");
        // And an older node reads a new answer: the reasons are where they were.
        let mut new = ReceiptsOutcome::default();
        new.reject(ReceiptRejectionCode::Late, "late".into());
        #[derive(Deserialize)]
        struct OldOutcome {
            rejected: Vec<String>,
        }
        let read: OldOutcome = serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(read.rejected, ["late"]);
    }

    #[test]
    fn only_duplicate_superseded_and_outdated_are_expected() {
        use ReceiptRejectionCode as C;
        for code in [C::Duplicate, C::Superseded, C::Outdated] {
            assert!(code.is_expected(), "{code}");
        }
        for code in [
            C::Replayed,
            C::BadSignature,
            C::ContentMismatch,
            C::Late,
            C::Other,
        ] {
            assert!(!code.is_expected(), "{code}");
        }
    }

    fn registration(node: &KeyPair) -> NodeRegistration {
        NodeRegistration {
            node_id: node.node_id(),
            payout_address: "0xa11ce".into(),
            operator: "acme".into(),
            rtmp_url: "rtmp://node.example/live".into(),
            http_url: "http://node.example".into(),
            capacity_kbps: 20_000,
            timestamp_ms: 1_700_000_000_000,
            operator_membership: None,
        }
    }

    #[test]
    fn the_node_signs_its_operator_membership_and_nothing_changes_without_one() {
        let node = KeyPair::from_seed([1; 32]);
        let acme = KeyPair::from_seed([2; 32]);
        let plain = registration(&node);
        // Without a membership the signed bytes are what they always were (ending in the
        // timestamp), so registrations of nodes without an operator key still verify.
        assert!(plain
            .canonical_bytes()
            .ends_with(&plain.timestamp_ms.to_be_bytes()));
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("membership"));
        let member = NodeRegistration {
            operator_membership: Some(OperatorMembership::sign(&acme, "acme", &node.node_id())),
            ..registration(&node)
        };
        let signed = Signed::sign(member, &node);
        let key = node.node_id().verifying_key().unwrap();
        assert!(signed.verify_with(&key).is_ok());
        // Stripping the membership (or swapping it) breaks the node's signature.
        let mut stripped = signed.clone();
        stripped.body.operator_membership = None;
        assert!(stripped.verify_with(&key).is_err());
        let json = serde_json::to_string(&signed).unwrap();
        let back: Signed<NodeRegistration> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
    }
}
