//! The hashes of LL-HLS partial segments an origin reports as it cuts them, signed by the
//! origin node, so a viewer can check each part before it plays it instead of a whole segment
//! later (the segment report, [`crate::OriginSegmentReport`], still carries every part hash
//! and binds receipts).
//!
//! A report names the node, the stream and the origin's numbering run inside the signed bytes;
//! within a run a part's place (`msn`, `index`) has one hash.

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, PART_REPORT_TAG};
use crate::error::SignatureError;
use crate::identity::NodeId;
use crate::ids::{ContentDigest, StreamId};
use crate::origin::check_skew;
use crate::signed::{CanonicalMessage, Signed};

/// Most parts one report may carry (an origin sends each part as it is cut, or a few together
/// after a delay).
pub const MAX_PARTS_PER_REPORT: usize = 32;

/// Largest part size a report may state, in bytes (a 2 s part of a 100 Mbit/s stream is 25 MB).
pub const MAX_PART_LEN: u64 = 64 * 1024 * 1024;

/// One partial segment an origin cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartHash {
    /// Media sequence number of the segment the part belongs to, in the origin's LL-HLS
    /// playlist.
    pub msn: u64,
    /// The part's index within its segment (0 = the first).
    pub index: u32,
    /// BLAKE3 hash of the part bytes ([`crate::segment_hash`]).
    pub hash: ContentDigest,
    /// Size of the part in bytes.
    pub len: u64,
    /// When the origin cut it, Unix milliseconds (the origin's clock).
    pub cut_ms: u64,
}

/// Parts of one stream an origin cut, signed by the origin node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginPartReport {
    /// The reporting origin node (its key verifies the signature).
    pub node_id: NodeId,
    /// The stream the parts belong to.
    pub stream_id: StreamId,
    /// The origin's numbering run: chosen at random whenever the origin's media sequence
    /// numbers start over, so positions repeat only across runs.
    pub run: u64,
    /// The parts, at most [`MAX_PARTS_PER_REPORT`].
    pub parts: Vec<PartHash>,
    /// Node clock when the report was signed, Unix milliseconds.
    pub timestamp_ms: u64,
}

impl CanonicalMessage for OriginPartReport {
    /// `PART_REPORT_TAG ‖ node_id(32) ‖ (len ‖ stream_id) ‖ run(8) ‖ timestamp_ms(8) ‖
    /// part count(8) ‖ per part: msn(8) ‖ index(8) ‖ hash(32) ‖ len(8) ‖ cut_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::new(PART_REPORT_TAG)
            .fixed(self.node_id.as_bytes())
            .str(self.stream_id.as_str())
            .u64(self.run)
            .u64(self.timestamp_ms)
            .u64(u64::try_from(self.parts.len()).unwrap_or(u64::MAX));
        for part in &self.parts {
            writer = writer
                .u64(part.msn)
                .u64(u64::from(part.index))
                .fixed(part.hash.as_bytes())
                .u64(part.len)
                .u64(part.cut_ms);
        }
        writer.finish()
    }
}

/// A part report signed by its origin node.
pub type SignedPartReport = Signed<OriginPartReport>;

impl Signed<OriginPartReport> {
    /// Checks the node's signature and that the timestamp lies within `max_skew_ms` of
    /// `now_ms`. Whether the signer is the stream's origin is the caller's check.
    pub fn verify(
        &self,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<&OriginPartReport, SignatureError> {
        let body = self.verify_with(&self.body.node_id.verifying_key()?)?;
        check_skew(body.timestamp_ms, now_ms, max_skew_ms)?;
        Ok(body)
    }
}

/// Why a part report that reached a viewer through a node is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartReportRefusal {
    /// Not signed by the key it names, or too old or too far ahead (a report replayed from an
    /// earlier run is stale).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Signed by a node that is not the stream's origin.
    #[error("the report is signed by {signer}, not by the stream's origin")]
    NotTheOrigin {
        /// The node that signed it.
        signer: NodeId,
    },
    /// A report of another stream.
    #[error("the report is for stream {0}, not this one")]
    OtherStream(StreamId),
}

impl Signed<OriginPartReport> {
    /// Checks a report any node may have passed on, as a viewer does before it trusts the
    /// places and hashes in it: signed by `origin` (the stream's bound origin, known from the
    /// coordinator) for `stream`, with a timestamp within `max_skew_ms` of `now_ms`. A node
    /// cannot forge such a report, move it to another stream, or replay an old run's report
    /// once it is stale; the order of parts within a run is the viewer's own check.
    pub fn verify_from_origin(
        &self,
        origin: &NodeId,
        stream: &StreamId,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<&OriginPartReport, PartReportRefusal> {
        if &self.body.node_id != origin {
            return Err(PartReportRefusal::NotTheOrigin {
                signer: self.body.node_id,
            });
        }
        if &self.body.stream_id != stream {
            return Err(PartReportRefusal::OtherStream(self.body.stream_id.clone()));
        }
        Ok(self.verify(now_ms, max_skew_ms)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::SEGMENT_REPORT_TAG;
    use crate::KeyPair;

    fn report() -> OriginPartReport {
        OriginPartReport {
            node_id: KeyPair::from_seed([7; 32]).node_id(),
            stream_id: StreamId::new("live").unwrap(),
            run: 11,
            parts: vec![PartHash {
                msn: 4,
                index: 2,
                hash: ContentDigest::from_bytes([1; 32]),
                len: 900,
                cut_ms: 990,
            }],
            timestamp_ms: 1_000,
        }
    }

    #[test]
    fn every_part_field_is_signed() {
        let node = KeyPair::from_seed([7; 32]);
        let signed = Signed::sign(report(), &node);
        assert!(signed.verify(1_000, 0).is_ok());
        let changes: [fn(&mut PartHash); 5] = [
            |p| p.msn += 1,
            |p| p.index += 1,
            |p| p.hash = ContentDigest::from_bytes([2; 32]),
            |p| p.len += 1,
            |p| p.cut_ms += 1,
        ];
        for change in changes {
            let mut altered = signed.clone();
            change(&mut altered.body.parts[0]);
            assert_eq!(
                altered.verify(1_000, 0).unwrap_err(),
                SignatureError::BadSignature
            );
        }
        let mut moved = signed.clone();
        moved.body.stream_id = StreamId::new("other").unwrap();
        assert_eq!(
            moved.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
        let mut rerun = signed;
        rerun.body.run = 12;
        assert!(rerun.verify(1_000, 0).is_err());
    }

    #[test]
    fn a_part_report_is_not_a_segment_report_and_stale_ones_are_refused() {
        let bytes = report().canonical_bytes();
        assert!(bytes.starts_with(PART_REPORT_TAG));
        assert!(!bytes.starts_with(SEGMENT_REPORT_TAG));
        assert_eq!(
            bytes.len(),
            PART_REPORT_TAG.len() + 32 + 4 + 4 + 8 + 8 + 8 + (8 + 8 + 32 + 8 + 8)
        );
        let signed = Signed::sign(report(), &KeyPair::from_seed([7; 32]));
        assert!(matches!(
            signed.verify(10_000, 5_000),
            Err(SignatureError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn a_relayed_report_counts_only_when_it_is_the_origins_for_this_stream_and_fresh() {
        let origin = KeyPair::from_seed([7; 32]);
        let friend = KeyPair::from_seed([8; 32]);
        let show = StreamId::new("live").unwrap();
        let signed = Signed::sign(report(), &origin);
        assert!(signed
            .verify_from_origin(&origin.node_id(), &show, 1_000, 5_000)
            .is_ok());
        // A friend's own report, however well signed, is not the origin's.
        let mut forged = report();
        forged.node_id = friend.node_id();
        let forged = Signed::sign(forged, &friend);
        assert_eq!(
            forged.verify_from_origin(&origin.node_id(), &show, 1_000, 5_000),
            Err(PartReportRefusal::NotTheOrigin {
                signer: friend.node_id()
            })
        );
        // The origin's report altered by a friend (another hash) no longer verifies.
        let mut altered = signed.clone();
        altered.body.parts[0].hash = ContentDigest::from_bytes([9; 32]);
        assert_eq!(
            altered.verify_from_origin(&origin.node_id(), &show, 1_000, 5_000),
            Err(PartReportRefusal::Signature(SignatureError::BadSignature))
        );
        // Another stream's report of the same origin.
        let other = StreamId::new("other").unwrap();
        assert!(matches!(
            signed.verify_from_origin(&origin.node_id(), &other, 1_000, 5_000),
            Err(PartReportRefusal::OtherStream(_))
        ));
        // Replayed long after (an old run's report): stale.
        assert!(matches!(
            signed.verify_from_origin(&origin.node_id(), &show, 600_000, 5_000),
            Err(PartReportRefusal::Signature(
                SignatureError::StaleTimestamp { .. }
            ))
        ));
    }
}
