//! Error types, one per layer.

use crate::identity::NodeId;

/// Why a key, a signature or a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A hex field did not decode to the expected number of bytes.
    #[error("{what}: expected {expected_bytes} bytes as hex")]
    MalformedHex {
        /// Which field (e.g. `"node id"`).
        what: &'static str,
        /// How many bytes it must hold.
        expected_bytes: usize,
    },
    /// Bytes that are not a valid ed25519 public key.
    #[error("{what} is not a valid ed25519 public key")]
    InvalidPublicKey {
        /// Which key.
        what: &'static str,
    },
    /// The signature does not match the message and key.
    #[error("signature does not verify")]
    BadSignature,
    /// A heartbeat's timestamp is too far from the verifier's clock.
    #[error(
        "heartbeat timestamp {timestamp_ms} ms is {skew_ms} ms from now (limit {limit_ms} ms)"
    )]
    StaleTimestamp {
        /// The signed timestamp.
        timestamp_ms: u64,
        /// Its distance to the verifier's clock.
        skew_ms: u64,
        /// The allowed distance.
        limit_ms: u64,
    },
    /// A heartbeat's nonce is not above the last one accepted from that node.
    #[error("heartbeat nonce {nonce} from {node} replayed (last accepted {last})")]
    ReplayedNonce {
        /// The node.
        node: NodeId,
        /// The nonce received.
        nonce: u64,
        /// The highest nonce accepted before.
        last: u64,
    },
    /// A string field exceeds its length limit.
    #[error("{what} is {len} bytes long (limit {limit})")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a viewer receipt earned nothing. Every variant names the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptRejection {
    /// No grant is known for the session.
    #[error("session {session}: no grant")]
    UnknownSession {
        /// The session.
        session: crate::SessionId,
    },
    /// The session was granted to another node.
    #[error("session {session}: granted to {granted}, claimed by {claimed}")]
    WrongNode {
        /// The session.
        session: crate::SessionId,
        /// The node in the grant.
        granted: NodeId,
        /// The node that submitted the receipt.
        claimed: NodeId,
    },
    /// The viewer's signature does not verify.
    #[error("session {session} receipt {seq}: bad viewer signature")]
    BadSignature {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
    },
    /// The same receipt as the last accepted one (a harmless resubmission, e.g. a retry).
    #[error("session {session}: receipt {seq} submitted again")]
    Duplicate {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
    },
    /// A newer receipt of the same session was accepted in the same submission and carries these
    /// bytes (receipts are cumulative), so this one earns nothing and was not checked further.
    #[error("session {session}: receipt {seq} superseded by receipt {by}")]
    Superseded {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// The sequence number of the newer receipt accepted instead.
        by: u64,
    },
    /// An older receipt of the session than the last accepted one, and consistent with it (no
    /// cumulative field above it): the viewer's own receipt handed in after a newer one, as when
    /// a node delivers what it held through a coordinator outage after the viewer posted its
    /// next receipt itself. It earns nothing, and says nothing against whoever handed it in.
    #[error("session {session}: receipt {seq} is older than the accepted receipt {last_seq}")]
    Outdated {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// The last accepted sequence number.
        last_seq: u64,
    },
    /// A receipt with this or a higher sequence number was already accepted, and this one does
    /// not fit under it (the same sequence number with other counts, or counts above the
    /// accepted receipt's).
    #[error("session {session}: receipt {seq} replayed (last accepted {last_seq})")]
    Replayed {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// The last accepted sequence number.
        last_seq: u64,
    },
    /// A cumulative field went backwards.
    #[error("session {session} receipt {seq}: {field} went from {previous} to {received}")]
    NotMonotonic {
        /// The session.
        session: crate::SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// `"bytes_total"`, `"last_segment_seq"` or `"t_ms"`.
        field: &'static str,
        /// The last accepted value.
        previous: u64,
        /// The value received.
        received: u64,
    },
    /// Signed after the grant expired.
    #[error("session {session}: receipt at {t_ms} ms after grant expiry {expiry_ms} ms")]
    Expired {
        /// The session.
        session: crate::SessionId,
        /// The receipt time.
        t_ms: u64,
        /// The grant's expiry.
        expiry_ms: u64,
    },
    /// Signed later than the verifier's clock allows.
    #[error("session {session}: receipt at {t_ms} ms is ahead of now {now_ms} ms")]
    FromTheFuture {
        /// The session.
        session: crate::SessionId,
        /// The receipt time.
        t_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// Acknowledges more bytes than the grant allows.
    #[error("session {session}: {bytes_total} bytes beyond the grant's {max_bytes}")]
    BeyondGrant {
        /// The session.
        session: crate::SessionId,
        /// The receipt's cumulative bytes.
        bytes_total: u64,
        /// The grant's limit.
        max_bytes: u64,
    },
    /// The origin has no digest for the receipt's segment.
    #[error("session {session}: origin has no segment {segment_seq}")]
    UnknownSegment {
        /// The session.
        session: crate::SessionId,
        /// The receipt's last segment.
        segment_seq: u64,
    },
    /// The receipt's digest differs from the origin's: wrong content was served.
    #[error(
        "session {session}: content digest differs from the origin's at segment {segment_seq}"
    )]
    ContentMismatch {
        /// The session.
        session: crate::SessionId,
        /// The receipt's last segment.
        segment_seq: u64,
    },
    /// The segment acknowledged was already old when the receipt was signed: stale content.
    #[error("session {session}: segment {segment_seq} was {lag_ms} ms old (limit {limit_ms} ms)")]
    StaleContent {
        /// The session.
        session: crate::SessionId,
        /// The receipt's last segment.
        segment_seq: u64,
        /// Receipt time minus the segment's publication time.
        lag_ms: u64,
        /// The limit.
        limit_ms: u64,
    },
}

/// Why a ledger transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The source account holds less than the amount.
    #[error("{account}: balance {balance} is below the transfer of {amount}")]
    InsufficientBalance {
        /// The account debited.
        account: crate::Account,
        /// Its balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
    /// A balance or total would exceed `u64::MAX` micro-units.
    #[error("{account}: balance would overflow")]
    Overflow {
        /// The account credited.
        account: crate::Account,
    },
}

/// Why an epoch could not be settled or paid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettlementError {
    /// Epochs must be settled in order without gaps.
    #[error("epoch {got} cannot follow epoch {previous}")]
    EpochOutOfOrder {
        /// The last settled epoch.
        previous: u64,
        /// The epoch offered.
        got: u64,
    },
    /// A node appears twice in one epoch's inputs.
    #[error("epoch {epoch}: node {node} listed twice")]
    DuplicateNode {
        /// The epoch.
        epoch: u64,
        /// The node.
        node: NodeId,
    },
    /// A ledger transfer failed.
    #[error("epoch {epoch}: {source}")]
    Ledger {
        /// The epoch.
        epoch: u64,
        /// The ledger's reason.
        #[source]
        source: LedgerError,
    },
    /// The payout sink refused a payout.
    #[error("payout to {node} refused: {reason}")]
    PayoutRefused {
        /// The node.
        node: NodeId,
        /// The sink's reason.
        reason: String,
    },
    /// A payout confirmation does not match its instruction.
    #[error("payout confirmation for {node} is for cumulative {confirmed}, expected {expected}")]
    PayoutMismatch {
        /// The node.
        node: NodeId,
        /// The cumulative net amount confirmed.
        confirmed: u64,
        /// The cumulative net amount instructed.
        expected: u64,
    },
}
