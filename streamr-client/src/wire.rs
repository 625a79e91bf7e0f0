//! JSON request and response bodies of the HTTP API, and the signed node messages that only
//! the coordinator defines (registration and deregistration).

use serde::{Deserialize, Serialize};
use streamr_core::{
    CanonicalMessage, ContentDigest, NodeId, Signed, SignedGrant, SignedHeartbeat,
    SignedOriginClaim, SignedReceipt, SignedSegmentReport, StreamId,
};
use utoipa::ToSchema;

use crate::storage::{
    EvidenceRecord, LedgerEntryRecord, NodeRecord, PayoutRecord, SegmentRecord, SettlementRecord,
    StreamRecord,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRegistration {
    /// The node's public key.
    #[schema(value_type = crate::api::openapi::NodeIdSchema)]
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
}

impl CanonicalMessage for NodeRegistration {
    /// `REGISTRATION_TAG ‖ node_id(32) ‖ (len ‖ payout_address) ‖ (len ‖ operator) ‖
    /// (len ‖ rtmp_url) ‖ (len ‖ http_url) ‖ capacity_kbps(8) ‖ timestamp_ms(8)`, integers
    /// big-endian, as in `streamr_core::canonical`.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = REGISTRATION_TAG.to_vec();
        bytes.extend_from_slice(self.node_id.as_bytes());
        push_str(&mut bytes, &self.payout_address);
        push_str(&mut bytes, &self.operator);
        push_str(&mut bytes, &self.rtmp_url);
        push_str(&mut bytes, &self.http_url);
        bytes.extend_from_slice(&self.capacity_kbps.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        bytes
    }
}

/// A node's request to leave, signed with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeDeregistration {
    /// The node leaving.
    #[schema(value_type = crate::api::openapi::NodeIdSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreamRequest {
    /// The stream name the origin publishes under.
    #[schema(value_type = String)]
    pub id: StreamId,
    /// Human-readable title.
    #[serde(default)]
    pub title: String,
    /// The node allowed to act as the stream's origin (sign its segment reports). When
    /// omitted, the first node that signs a successful publish check is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::api::openapi::NodeIdSchema>)]
    pub origin_node: Option<NodeId>,
}

/// `POST /streams/{id}/origin` (admin): binds the stream to another origin node, or clears the
/// binding (`null`) so the next node that signs a successful publish check is bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOriginRequest {
    /// The node now allowed to act as the stream's origin; `None` clears the binding.
    #[schema(value_type = Option<crate::api::openapi::NodeIdSchema>)]
    pub origin_node: Option<NodeId>,
}

/// Answer to `POST /streams`: the stream key is shown once and never stored in clear.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateStreamResponse {
    /// The stream.
    pub stream: StreamRecord,
    /// The key the publisher presents to the origin.
    pub stream_key: String,
}

/// `POST /streams/{id}/publish-check`: the origin asks whether a publisher's key is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishCheckRequest {
    /// The key the publisher presented.
    pub stream_key: String,
    /// The asking origin's signed claim: binds the stream to that node when it has no origin
    /// yet, and is refused (403) when another node is bound. Without it the check only
    /// answers whether the key is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::api::openapi::SignedOriginClaimSchema>)]
    pub origin: Option<SignedOriginClaim>,
}

/// `POST /streams/{id}/segments` with the admin token: an operator reports a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentReport {
    /// Segment sequence number.
    pub sequence: u64,
    /// BLAKE3 hash of the segment bytes (`streamr_core::segment_hash`).
    #[schema(value_type = crate::api::openapi::DigestSchema)]
    pub hash: ContentDigest,
    /// When the origin published it, Unix milliseconds.
    pub published_ms: u64,
}

/// The body of `POST /streams/{id}/segments`: a report signed by the stream's origin node
/// (`{"body": {...}, "signature": ...}`), or a bare report sent with the admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SegmentReportRequest {
    /// Signed by the origin node bound to the stream.
    Signed(SignedSegmentReport),
    /// Unsigned; needs the admin bearer token.
    Admin(SegmentReport),
}

/// Answer to a segment report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SegmentReportResponse {
    /// The stored segment with its running digest.
    pub segment: SegmentRecord,
    /// `false` when the same report had been stored already.
    pub created: bool,
}

/// `POST /nodes/heartbeat`: a signed heartbeat and the receipts viewers gave the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The heartbeat, signed by the node.
    #[schema(value_type = crate::api::openapi::SignedHeartbeatSchema)]
    pub heartbeat: SignedHeartbeat,
    /// Viewer receipts (each signed by its viewer).
    #[serde(default)]
    #[schema(value_type = Vec<crate::api::openapi::SignedReceiptSchema>)]
    pub receipts: Vec<SignedReceipt>,
}

/// Answer to a heartbeat or a receipt upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReceiptsOutcome {
    /// Receipts newly stored.
    pub accepted: u64,
    /// Why each rejected receipt was rejected.
    pub rejected: Vec<String>,
}

/// `GET /nodes/{id}/reachability`: whether the coordinator could connect back to the
/// addresses a node advertises, and what its operator must forward when not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl ReachabilityReport {
    /// The report of `node` from its last check (of its current addresses, if any).
    pub fn of(
        node: &crate::storage::NodeRecord,
        checked: Option<crate::storage::ReachabilityRecord>,
        checks_enabled: bool,
    ) -> Self {
        let status = match &checked {
            None => "unchecked",
            Some(r) if r.reachable() => "reachable",
            Some(_) => "unreachable",
        };
        ReachabilityReport {
            node_id: node.id.clone(),
            checks_enabled,
            status: status.into(),
            rtmp_url: node.rtmp_url.clone(),
            http_url: node.http_url.clone(),
            rtmp_reachable: checked.as_ref().map(|r| r.rtmp_reachable),
            http_reachable: checked.as_ref().map(|r| r.http_reachable),
            rtmp_error: checked
                .as_ref()
                .map(|r| r.rtmp_error.clone())
                .unwrap_or_default(),
            http_error: checked
                .as_ref()
                .map(|r| r.http_error.clone())
                .unwrap_or_default(),
            checked_at_ms: checked.as_ref().map(|r| r.checked_at_ms),
            hint: checked
                .as_ref()
                .and_then(crate::workers::reachability::forward_hint),
        }
    }
}

/// `POST /receipts`: receipts posted by a viewer directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsRequest {
    /// Signed receipts.
    #[schema(value_type = Vec<crate::api::openapi::SignedReceiptSchema>)]
    pub receipts: Vec<SignedReceipt>,
}

/// Where to watch, and the grant that lets the node earn from it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlayResponse {
    /// The chosen node.
    #[schema(value_type = crate::api::openapi::NodeIdSchema)]
    pub node_id: NodeId,
    /// RTMP playback URL.
    pub rtmp_url: String,
    /// HTTP-FLV playback URL.
    pub http_flv_url: String,
    /// HLS playlist URL.
    pub hls_url: String,
    /// The coordinator-signed session grant.
    #[schema(value_type = crate::api::openapi::SignedGrantSchema)]
    pub grant: SignedGrant,
}

/// A node's earnings: its ledger and payouts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EarningsResponse {
    /// The node.
    pub node: NodeRecord,
    /// Sum of its ledger entries, micro-units.
    pub total: i64,
    /// Its ledger entries.
    pub entries: Vec<LedgerEntryRecord>,
    /// Its payouts.
    pub payouts: Vec<PayoutRecord>,
}

/// An epoch's statement: settlement, ledger entries and evidence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatementResponse {
    /// The settlement.
    pub settlement: SettlementRecord,
    /// Its ledger entries.
    pub entries: Vec<LedgerEntryRecord>,
    /// Fraud evidence found in the epoch.
    pub evidence: Vec<EvidenceRecord>,
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

/// Where a relay pulls a stream from: its parent first, then the parent's ancestors up to the
/// origin (fallbacks while the coordinator re-parents it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamResponse {
    /// The relay's tier: 1 under the origin, 2 under a tier-1 relay, and so on.
    pub depth: u32,
    /// Parent first, origin last.
    pub upstreams: Vec<UpstreamEntry>,
}
