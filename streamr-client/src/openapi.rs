//! Schema types for the OpenAPI document of the coordinator API (feature `openapi`).
//!
//! The wire types derive `utoipa::ToSchema`; the signed messages and hex identifiers that
//! `streamr_core` defines are described by the stand-in types here, each named as its JSON
//! appears in the document. The identifiers' schemas ([`NodeIdSchema`] and the others made by
//! `named_schema!`) are only names: the coordinator writes their JSON into its document from
//! the limits its parsers enforce.
#![allow(missing_docs, dead_code)]

use std::borrow::Cow;

use utoipa::openapi::{ObjectBuilder, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::wire::NodeRegistration;

/// A schema whose JSON is written in the coordinator's document; the derive only names it.
macro_rules! named_schema {
    ($(#[$meta:meta])* $type:ident, $name:literal) => {
        $(#[$meta])*
        pub struct $type;

        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().into()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(
    /// A node's ed25519 public key, hex.
    NodeIdSchema,
    "NodeId"
);
named_schema!(
    /// A viewer's ed25519 public key, hex.
    ViewerKeySchema,
    "ViewerKey"
);
named_schema!(
    /// The coordinator's ed25519 public key, hex.
    CoordinatorKeySchema,
    "CoordinatorKey"
);
named_schema!(
    /// An operator's ed25519 public key, hex.
    OperatorKeySchema,
    "OperatorKey"
);
named_schema!(
    /// A session id, hex.
    SessionIdSchema,
    "SessionId"
);
named_schema!(
    /// A node session's id, hex.
    NodeSessionIdSchema,
    "NodeSessionId"
);
named_schema!(
    /// An ephemeral X25519 public share, hex.
    KeyShareSchema,
    "KeyShare"
);
named_schema!(
    /// A heartbeat's MAC under its node session key, hex.
    HeartbeatMacSchema,
    "HeartbeatMac"
);
named_schema!(
    /// A BLAKE3 digest, hex.
    DigestSchema,
    "Digest"
);
named_schema!(
    /// An ed25519 signature, hex.
    SignatureSchema,
    "Signature"
);
named_schema!(
    /// A stream name inside a signed message (any text up to the length limit).
    StreamNameSchema,
    "StreamName"
);
named_schema!(
    /// An operator name (any text up to the length limit).
    OperatorSchema,
    "OperatorId"
);
named_schema!(
    /// A network prefix as the reward inputs carry it: the bytes of an IPv4 /24, an IPv6 /48 or a
    /// named network's hash.
    NetPrefixSchema,
    "NetPrefix"
);
named_schema!(
    /// One step of a Merkle proof: `["Left" | "Right", <digest>]`.
    MerkleStepSchema,
    "MerkleStep"
);

/// An operator's signature over a node id and its operator name
/// (`streamr_core::OperatorMembership`).
#[derive(ToSchema)]
#[schema(as = OperatorMembership)]
#[allow(dead_code)]
pub struct OperatorMembershipSchema {
    /// The operator's public key; the name is bound to the first key that proves a node.
    #[schema(value_type = OperatorKeySchema)]
    operator_key: (),
    /// Over `"streamr/operator-membership/v1" 0x00 ‖ operator_key ‖ (u32 length ‖ operator
    /// name) ‖ node_id`.
    #[schema(value_type = SignatureSchema)]
    signature: (),
}

/// An operator's statement, signed by the key its name is bound to, that the name is bound to
/// another key from now on (`streamr_core::OperatorRotation`).
#[derive(ToSchema)]
#[schema(as = OperatorRotation)]
#[allow(dead_code)]
pub struct OperatorRotationSchema {
    /// The operator name (judged in its canonical form: trimmed, NFKC, lower case).
    operator: String,
    /// The key the name is bound to now, which signs the statement.
    #[schema(value_type = OperatorKeySchema)]
    old_key: (),
    /// The key the name is to be bound to.
    #[schema(value_type = OperatorKeySchema)]
    new_key: (),
    /// Above every sequence of the name's earlier rotations (the first is 1).
    sequence: u64,
    /// The old key's signature over `"streamr/operator-rotation/v1" 0x00 ‖ old_key ‖ new_key
    /// ‖ sequence (u64) ‖ (u32 length ‖ canonical operator name)`.
    #[schema(value_type = SignatureSchema)]
    signature: (),
}

/// A node heartbeat (`streamr_core::NodeHeartbeat`).
#[derive(ToSchema)]
#[schema(as = NodeHeartbeat)]
#[allow(dead_code)]
pub struct NodeHeartbeatSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    /// Node clock, Unix milliseconds.
    timestamp_ms: u64,
    /// Above the last accepted one.
    nonce: u64,
    #[schema(value_type = Vec<StreamNameSchema>)]
    streams: (),
    viewers: u64,
    bytes_served: u64,
    unattested_bytes: u64,
    /// Per stream relayed from a relay tree, the node it pulls that stream from; optional
    /// (signed only when present).
    #[schema(value_type = Option<Vec<RelayUpstreamSchema>>)]
    upstreams: (),
    /// The node's claim totals in its current run, this heartbeat included; optional
    /// (signed only when present), sent to coordinators whose `GET /coordinator` says
    /// `heartbeat_claim_totals`.
    #[schema(value_type = Option<ClaimTotalsSchema>)]
    claim_totals: (),
}

/// A node's running claim totals (`streamr_core::ClaimTotals`).
#[derive(ToSchema)]
#[schema(as = ClaimTotals)]
#[allow(dead_code)]
pub struct ClaimTotalsSchema {
    /// The nonce of the run's first heartbeat.
    run: u64,
    /// Attested bytes claimed in the run.
    bytes_served: u64,
    /// Unattested bytes claimed in the run.
    unattested_bytes: u64,
}

/// A node session open (`streamr_core::NodeSessionOpen`).
#[derive(ToSchema)]
#[schema(as = NodeSessionOpen)]
#[allow(dead_code)]
pub struct NodeSessionOpenSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    /// Node clock, Unix milliseconds.
    timestamp_ms: u64,
    /// The node's ephemeral X25519 public share.
    #[schema(value_type = KeyShareSchema)]
    share: (),
}

/// A node session accept (`streamr_core::NodeSessionAccept`).
#[derive(ToSchema)]
#[schema(as = NodeSessionAccept)]
#[allow(dead_code)]
pub struct NodeSessionAcceptSchema {
    #[schema(value_type = NodeSessionIdSchema)]
    session_id: (),
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    /// The node's share, as its open carried it.
    #[schema(value_type = KeyShareSchema)]
    node_share: (),
    /// The coordinator's ephemeral X25519 public share.
    #[schema(value_type = KeyShareSchema)]
    coordinator_share: (),
    /// When the coordinator forgets the session (its clock, Unix milliseconds).
    expires_at_ms: u64,
}

/// Where a relay pulls one stream from (`streamr_core::RelayUpstream`).
#[derive(ToSchema)]
#[schema(as = RelayUpstream)]
#[allow(dead_code)]
pub struct RelayUpstreamSchema {
    #[schema(value_type = StreamNameSchema)]
    stream: (),
    #[schema(value_type = NodeIdSchema)]
    upstream: (),
}

/// A viewer receipt (`streamr_core::ViewerReceipt`).
#[derive(ToSchema)]
#[schema(as = ViewerReceipt)]
#[allow(dead_code)]
pub struct ViewerReceiptSchema {
    #[schema(value_type = SessionIdSchema)]
    session_id: (),
    seq: u64,
    bytes_total: u64,
    last_segment_seq: u64,
    #[schema(value_type = DigestSchema)]
    segments_digest: (),
    t_ms: u64,
}

/// An origin's claim on a stream (`streamr_core::OriginClaim`).
#[derive(ToSchema)]
#[schema(as = OriginClaim)]
#[allow(dead_code)]
pub struct OriginClaimSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = StreamNameSchema)]
    stream_id: (),
    timestamp_ms: u64,
}

/// A relay's request for its place in a stream's relay tree (`wire::UpstreamRequest`).
#[derive(ToSchema)]
#[schema(as = UpstreamRequest)]
#[allow(dead_code)]
pub struct UpstreamRequestSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = StreamNameSchema)]
    stream_id: (),
    /// Node clock, Unix milliseconds.
    timestamp_ms: u64,
    /// Upstream nodes that failed the relay since it last asked.
    #[schema(value_type = Vec<NodeIdSchema>)]
    failed: (),
}

/// One upstream of a relay (`wire::UpstreamEntry`).
#[derive(ToSchema)]
#[schema(as = UpstreamEntry)]
#[allow(dead_code)]
pub struct UpstreamEntrySchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    /// `rtmp://host:port`, without app or stream.
    rtmp_base: String,
    /// The query to play with (`grant=<token>`).
    query: String,
    #[schema(value_type = SignedGrantSchema)]
    grant: (),
}

/// Where a relay pulls a stream from (`wire::UpstreamResponse`).
#[derive(ToSchema)]
#[schema(as = UpstreamResponse)]
#[allow(dead_code)]
pub struct UpstreamResponseSchema {
    /// 1 under the origin, 2 under a tier-1 relay, and so on.
    depth: u32,
    /// Parent first, origin last.
    #[schema(value_type = Vec<UpstreamEntrySchema>)]
    upstreams: (),
}

/// A segment report signed by the origin (`streamr_core::OriginSegmentReport`).
#[derive(ToSchema)]
#[schema(as = OriginSegmentReport)]
#[allow(dead_code)]
pub struct OriginSegmentReportSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = StreamNameSchema)]
    stream_id: (),
    sequence: u64,
    #[schema(value_type = DigestSchema)]
    hash: (),
    published_ms: u64,
    timestamp_ms: u64,
    /// The LL-HLS (fMP4) segment with the same sequence number, when the origin serves that
    /// rendition; signed after the other fields only when present.
    #[schema(value_type = Option<LlSegmentHashesSchema>)]
    ll: (),
    /// The origin's run the segment was cut in, chosen at random whenever the origin starts
    /// cutting the stream afresh: a report of another run than the one before it says the
    /// stream broke off after that one. When present the report signs the
    /// `streamr/segment-report/v2` layout, with `run` after the node id; absent from older
    /// origins.
    run: Option<u64>,
}

/// The fMP4 segment's hashes in a segment report (`streamr_core::LlSegmentHashes`).
#[derive(ToSchema)]
#[schema(as = LlSegmentHashes)]
#[allow(dead_code)]
pub struct LlSegmentHashesSchema {
    /// BLAKE3 hash of the fMP4 segment bytes (its parts, concatenated in order).
    #[schema(value_type = DigestSchema)]
    hash: (),
    /// BLAKE3 hash of each partial segment, in order.
    #[schema(value_type = Vec<DigestSchema>)]
    part_hashes: (),
    /// Size of the segment in bytes.
    len: u64,
}

/// Parts an origin cut (`streamr_core::OriginPartReport`).
#[derive(ToSchema)]
#[schema(as = OriginPartReport)]
#[allow(dead_code)]
pub struct OriginPartReportSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = StreamNameSchema)]
    stream_id: (),
    /// The origin's numbering run (random; positions repeat only across runs).
    run: u64,
    /// The parts, in the order they were cut.
    #[schema(value_type = Vec<PartHashSchema>)]
    parts: (),
    timestamp_ms: u64,
}

/// One part in a part report (`streamr_core::PartHash`).
#[derive(ToSchema)]
#[schema(as = PartHash)]
#[allow(dead_code)]
pub struct PartHashSchema {
    /// Media sequence number of its segment in the origin's LL-HLS playlist.
    msn: u64,
    /// Its index in the segment.
    index: u32,
    /// BLAKE3 hash of the part bytes.
    #[schema(value_type = DigestSchema)]
    hash: (),
    /// Size in bytes.
    len: u64,
    /// When the origin cut it, Unix milliseconds.
    cut_ms: u64,
}

/// A session grant (`streamr_core::SessionGrant`).
#[derive(ToSchema)]
#[schema(as = SessionGrant)]
#[allow(dead_code)]
pub struct SessionGrantSchema {
    #[schema(value_type = SessionIdSchema)]
    session_id: (),
    #[schema(value_type = ViewerKeySchema)]
    viewer: (),
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = StreamNameSchema)]
    stream_id: (),
    max_bytes: u64,
    expiry_ms: u64,
}

/// Defines the `{"body": ..., "signature": ...}` schema of one signed message.
macro_rules! signed_schema {
    ($type:ident, $name:ident, $body:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(ToSchema)]
        #[schema(as = $name)]
        #[allow(dead_code)]
        pub struct $type {
            /// The signed message.
            body: $body,
            #[schema(value_type = SignatureSchema)]
            signature: (),
        }
    };
}

signed_schema!(
    SignedHeartbeatSchema,
    SignedHeartbeat,
    NodeHeartbeatSchema,
    "A heartbeat signed by its node."
);
signed_schema!(
    SignedNodeSessionOpenSchema,
    SignedNodeSessionOpen,
    NodeSessionOpenSchema,
    "A node session open signed with the node's key."
);
signed_schema!(
    SignedNodeSessionAcceptSchema,
    SignedNodeSessionAccept,
    NodeSessionAcceptSchema,
    "A node session accept signed with the coordinator's key."
);
signed_schema!(
    SignedUpstreamRequestSchema,
    SignedUpstreamRequest,
    UpstreamRequestSchema,
    "An upstream request signed by its relay node."
);
signed_schema!(
    SignedReceiptSchema,
    SignedReceipt,
    ViewerReceiptSchema,
    "A receipt signed by its viewer."
);
signed_schema!(
    SignedOriginClaimSchema,
    SignedOriginClaim,
    OriginClaimSchema,
    "An origin claim signed by the origin node."
);
signed_schema!(
    SignedSegmentReportSchema,
    SignedSegmentReport,
    OriginSegmentReportSchema,
    "A segment report signed by the stream's origin node."
);
signed_schema!(
    SignedPartReportSchema,
    SignedPartReport,
    OriginPartReportSchema,
    "A part report signed by the stream's origin node."
);
signed_schema!(
    SignedGrantSchema,
    SignedGrant,
    SessionGrantSchema,
    "A session grant signed by the coordinator."
);
signed_schema!(
    SignedRegistrationSchema,
    SignedRegistration,
    NodeRegistration,
    "A registration signed with the node key it registers."
);
signed_schema!(
    SignedDeregistrationSchema,
    SignedDeregistration,
    crate::wire::NodeDeregistration,
    "A deregistration signed with the node's key."
);

/// The body of `POST /streams/{id}/segments` (`crate::wire::SegmentReportRequest`).
#[derive(ToSchema)]
#[schema(as = SegmentReportRequest)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SegmentReportRequestSchema {
    /// Signed by the origin node bound to the stream.
    Signed(SignedSegmentReportSchema),
    /// Unsigned; needs the admin bearer token.
    Admin(crate::wire::SegmentReport),
}

/// A probe's measurement (`streamr_core::ProbeResult`).
#[derive(ToSchema)]
#[schema(as = ProbeResult)]
#[allow(dead_code)]
pub struct ProbeResultSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    hash_ok: bool,
    timed_out: bool,
    ttfb_ms: u64,
    throughput_bytes_per_s: u64,
}

/// One node's contribution to an epoch (`streamr_core::NodeEpochInput`).
#[derive(ToSchema)]
#[schema(as = NodeEpochInput)]
#[allow(dead_code)]
pub struct NodeEpochInputSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    #[schema(value_type = OperatorSchema)]
    operator: (),
    #[schema(value_type = NetPrefixSchema)]
    subnet: (),
    verified_bytes: u64,
    on_time_bytes: u64,
    flagged_bytes: u64,
    availability_ppm: u64,
    unattested_bytes: u64,
    probe_capacity_bytes: u64,
    probation_ppm: u64,
}

/// Reward parameters (`streamr_core::RewardConfig`).
#[derive(ToSchema)]
#[schema(as = RewardConfig)]
#[allow(dead_code)]
pub struct RewardConfigSchema {
    unattested_discount_ppm: u64,
    operator_cap_ppm: u64,
    subnet_cap_ppm: u64,
    /// Water-fills a capped group around members another cap froze lower; absent (false) in
    /// the inputs of epochs settled before it existed.
    refill_capped_groups: Option<bool>,
}

/// A node's share of a pool (`streamr_core::NodeReward`).
#[derive(ToSchema)]
#[schema(as = NodeReward)]
#[allow(dead_code)]
pub struct NodeRewardSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    weight: u128,
    amount: u64,
}

/// The split of a pool (`streamr_core::RewardSplit`).
#[derive(ToSchema)]
#[schema(as = RewardSplit)]
#[allow(dead_code)]
pub struct RewardSplitSchema {
    rewards: Vec<NodeRewardSchema>,
    unallocated: u64,
    capped_groups: Vec<String>,
}

/// A node's cumulative totals, a Merkle leaf (`streamr_core::BalanceLeaf`).
#[derive(ToSchema)]
#[schema(as = BalanceLeaf)]
#[allow(dead_code)]
pub struct BalanceLeafSchema {
    #[schema(value_type = NodeIdSchema)]
    node_id: (),
    cumulative_earned: u64,
    cumulative_vested: u64,
}

/// The path from a leaf to the root (`streamr_core::MerkleProof`).
#[derive(ToSchema)]
#[schema(as = MerkleProof)]
#[allow(dead_code)]
pub struct MerkleProofSchema {
    #[schema(value_type = Vec<MerkleStepSchema>)]
    siblings: (),
}
