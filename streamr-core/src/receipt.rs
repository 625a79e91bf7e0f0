//! Viewer receipts: cumulative, monotonic acknowledgements of bytes and content received.

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, RECEIPT_TAG};
use crate::ids::{ContentDigest, SessionId};
use crate::signed::{CanonicalMessage, Signed};

/// What a viewer acknowledges at time `t_ms`: in total `bytes_total` bytes received in the
/// session, up to segment `last_segment_seq`, whose running digest over every segment hash
/// received so far is `segments_digest` (see [`crate::SegmentChain`]).
///
/// Receipts are cumulative: each one replaces the previous, so losing some costs nothing and a
/// node can only ever be credited `bytes_total` of the newest valid receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerReceipt {
    /// The granted session.
    pub session_id: SessionId,
    /// Receipt sequence number within the session, strictly increasing.
    pub seq: u64,
    /// Bytes received in the whole session so far.
    pub bytes_total: u64,
    /// The newest media segment received.
    pub last_segment_seq: u64,
    /// The running digest over the hashes of segments up to `last_segment_seq`.
    pub segments_digest: ContentDigest,
    /// When the viewer signed, Unix milliseconds.
    pub t_ms: u64,
}

impl CanonicalMessage for ViewerReceipt {
    /// `RECEIPT_TAG ‖ session_id(16) ‖ seq(8) ‖ bytes_total(8) ‖ last_segment_seq(8) ‖
    /// segments_digest(32) ‖ t_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(RECEIPT_TAG)
            .fixed(self.session_id.as_bytes())
            .u64(self.seq)
            .u64(self.bytes_total)
            .u64(self.last_segment_seq)
            .fixed(self.segments_digest.as_bytes())
            .u64(self.t_ms)
            .finish()
    }
}

/// A receipt signed by the viewer named in its session's grant.
pub type SignedReceipt = Signed<ViewerReceipt>;
