//! # streamr-core
//!
//! The StreamrP2P domain model: identities, session grants and viewer receipts, verified
//! contribution accounting, fraud detection, rewards and the payout ledger. No I/O: storage and
//! clocks are traits that the embedding service implements.
//!
//! Where to start:
//!
//! - signed wire types: [`SessionGrant`], [`ViewerReceipt`], [`NodeHeartbeat`] in [`Signed`],
//!   over the canonical encoding of [`canonical`];
//! - [`SessionAccounting`] is a node's per-session split of served bytes into attested and
//!   unattested claims (the node and the simulator run it alike);
//! - [`GrantChecker`] checks the grant a viewer presents to a node (its URL form in
//!   [`grant_token`]);
//! - [`ReceiptVerifier`] checks receipts against grants and the origin's [`SegmentChain`];
//! - [`ProbeSummary`] (availability, capacity), [`probe_judge`] (when a probed segment is
//!   judged against the origin's reports, and the held-probe state machine) and [`Router`]
//!   (seeded, replayable routing);
//! - [`FraudEngine`] turns [`EpochObservations`] into reward inputs, evidence and penalties;
//! - [`Settlement`] splits the pool ([`split_pool`]), keeps the double-entry [`Ledger`], closes
//!   each epoch with an [`EpochStatement`] and a [`MerkleTree`], and pays through a
//!   [`PayoutSink`]; [`replay_epochs`] recomputes every statement from the published inputs;
//! - [`tree`] holds the relay tree's rules (placement, re-parenting, failure confirmation);
//! - [`SettlementStore`] and [`Clock`] are what a service implements.
//!
//! ```
//! use streamr_core::{
//!     ContentDigest, KeyPair, SessionGrant, SessionId, Signed, StreamId, ViewerReceipt,
//! };
//!
//! let coordinator = KeyPair::from_seed([1; 32]);
//! let viewer = KeyPair::from_seed([2; 32]);
//! let node = KeyPair::from_seed([3; 32]);
//! let grant = Signed::sign(
//!     SessionGrant {
//!         session_id: SessionId::from_bytes([9; 16]),
//!         viewer: viewer.viewer_key(),
//!         node_id: node.node_id(),
//!         stream_id: StreamId::new("live").unwrap(),
//!         max_bytes: 1 << 30,
//!         expiry_ms: 1_700_000_600_000,
//!     },
//!     &coordinator,
//! );
//! assert!(grant.verify(&coordinator.coordinator_key()).is_ok());
//!
//! let receipt = Signed::sign(
//!     ViewerReceipt {
//!         session_id: grant.body.session_id,
//!         seq: 1,
//!         bytes_total: 4_000_000,
//!         last_segment_seq: 10,
//!         segments_digest: ContentDigest::default(),
//!         t_ms: 1_700_000_010_000,
//!     },
//!     &viewer,
//! );
//! let json = serde_json::to_string(&receipt).unwrap();
//! let back: Signed<ViewerReceipt> = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, receipt);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod accounting;
mod apportion;
pub mod canonical;
mod content;
mod error;
mod fraud;
mod grant;
mod grant_check;
pub mod grant_token;
mod heartbeat;
mod identity;
mod ids;
mod ledger;
mod merkle;
pub mod node_session;
mod operator;
mod origin;
mod part_report;
mod payout;
pub mod probe_judge;
mod probes;
mod receipt;
mod rewards;
mod routing;
mod settlement;
mod signed;
mod statement;
mod traits;
pub mod tree;
mod verifier;

pub use accounting::{Served, SessionAccounting, MAX_ACCOUNTED_SESSIONS};
pub use content::{segment_hash, OriginDigests, SegmentChain, SegmentDigestSource, SegmentRecord};
pub use error::{LedgerError, ReceiptRejection, SettlementError, SignatureError};
pub use fraud::{
    net_unattested, operator_route_shares, EpochObservations, Evidence, FraudConfig, FraudEngine,
    FraudReport, IssuedGrant, NodeClaims, NodeProfile, PenaltyPolicy, ReceiptTally, RuleId,
    UnknownRule, Verdict, ViewerProfile,
};
pub use grant::{SessionGrant, SignedGrant};
pub use grant_check::{GrantChecker, GrantRefusal};
pub use heartbeat::{ClaimTotals, HeartbeatNonces, NodeHeartbeat, RelayUpstream, SignedHeartbeat};
pub use identity::{CoordinatorKey, KeyPair, NodeId, OperatorKey, SignatureBytes, ViewerKey};
pub use ids::{
    ContentDigest, NetPrefix, OperatorId, SessionId, StreamId, Subnet24, Subnet48, MAX_NAME_LEN,
    UNNAMED_OPERATOR,
};
pub use ledger::{Account, EntryKind, Ledger, LedgerEntry};
pub use merkle::{BalanceLeaf, MerkleProof, MerkleTree, Side};
pub use node_session::{
    accept_open, HeartbeatMac, KeyShare, KnownSession, MacHeartbeat, NodeHandshake, NodeSession,
    NodeSessionAccept, NodeSessionId, NodeSessionOpen, SessionError, SessionKey,
};
pub use operator::{
    canonical_operator_name, OperatorMembership, OperatorRefusal, OperatorRotation,
    RotationRefusal, OPERATOR_MEMBERSHIP_TAG, OPERATOR_ROTATION_TAG,
};
pub use origin::{
    LlSegmentHashes, OriginClaim, OriginSegmentReport, SignedOriginClaim, SignedSegmentReport,
};
pub use part_report::{
    OriginPartReport, PartHash, PartReportRefusal, SignedPartReport, MAX_PARTS_PER_REPORT,
    MAX_PART_LEN,
};
pub use payout::{
    FeeSchedule, PayoutConfirmation, PayoutItem, PayoutLifecycle, PayoutPolicy, PayoutSink,
    SimulatedChain, SimulatedPayoutSink,
};
pub use probes::{ProbePolicy, ProbeResult, ProbeSummary};
/// The operating system's random source (for [`NodeHandshake::generate`]).
pub use rand::rngs::OsRng;
pub use receipt::{SignedReceipt, ViewerReceipt};
pub use rewards::{
    node_weight, split_pool, NodeEpochInput, NodeReward, RewardConfig, RewardSplit, PPM,
};
pub use routing::{LoadedCandidate, NodeMeasurements, RouteCandidate, Router, SourcePrefixes};
pub use settlement::{
    replay_epochs, EpochInputs, EpochOutcome, NodeBalance, PenaltyOrder, Settlement,
    SettlementConfig,
};
pub use signed::{CanonicalMessage, Signed};
pub use statement::EpochStatement;
pub use traits::{Clock, ManualClock, SettlementStore};
pub use verifier::{Credit, ReceiptVerifier, SessionUsage, SignatureCheck, VerifierConfig};

#[cfg(test)]
mod settlement_tests;
#[cfg(test)]
mod wire_tests;
