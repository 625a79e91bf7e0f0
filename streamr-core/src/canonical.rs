//! The canonical byte encoding that signatures cover.
//!
//! JSON is for transport only; signatures are computed over this encoding, which is fixed and
//! independent of field order or whitespace:
//!
//! - a domain tag: ASCII `streamr/<kind>/v<layout version>` followed by one `0x00` byte, so a signature over
//!   one kind of message can never be replayed as another kind;
//! - then every field in declaration order: integers as big-endian fixed width (`u64`: 8 bytes),
//!   keys, digests and ids as their raw bytes (fixed width), strings as a big-endian `u32` byte
//!   length followed by their UTF-8 bytes.

/// Domain tag of a [`crate::SessionGrant`].
pub const GRANT_TAG: &[u8] = b"streamr/grant/v1\0";
/// Domain tag of a [`crate::ViewerReceipt`].
pub const RECEIPT_TAG: &[u8] = b"streamr/receipt/v1\0";
/// Domain tag of a [`crate::NodeHeartbeat`]; v2 added `unattested_bytes` to the signed layout.
pub const HEARTBEAT_TAG: &[u8] = b"streamr/heartbeat/v2\0";
/// Domain tag of an [`crate::OriginClaim`].
pub const ORIGIN_CLAIM_TAG: &[u8] = b"streamr/origin-claim/v1\0";
/// Domain tag of an [`crate::OriginSegmentReport`].
pub const SEGMENT_REPORT_TAG: &[u8] = b"streamr/segment-report/v1\0";
/// Domain tag of an [`crate::OriginSegmentReport`] that names its origin's run; v2 added `run`
/// to the signed layout (a report without one signs the v1 layout, unchanged).
pub const SEGMENT_REPORT_RUN_TAG: &[u8] = b"streamr/segment-report/v2\0";
/// Domain tag of an [`crate::OriginPartReport`].
pub const PART_REPORT_TAG: &[u8] = b"streamr/part-report/v1\0";
/// Domain tag of an [`crate::EpochStatement`] hash.
pub const STATEMENT_TAG: &[u8] = b"streamr/statement/v1\0";

/// Builds a canonical encoding field by field.
#[derive(Debug, Default)]
pub(crate) struct CanonicalWriter {
    bytes: Vec<u8>,
}

impl CanonicalWriter {
    /// Starts a message with its domain tag.
    pub(crate) fn new(tag: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(160);
        bytes.extend_from_slice(tag);
        Self { bytes }
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn fixed(mut self, value: &[u8]) -> Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// Writes a string with its length; strings are bounded well below `u32::MAX` by their
    /// constructors, and a longer one saturates the prefix (it can never be signed anyway).
    pub(crate) fn str(mut self, value: &str) -> Self {
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_tag_then_big_endian_fields() {
        let bytes = CanonicalWriter::new(b"t\0")
            .u64(1)
            .str("ab")
            .fixed(&[9, 9])
            .finish();
        assert_eq!(
            bytes,
            [b't', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, b'a', b'b', 9, 9]
        );
    }
}
