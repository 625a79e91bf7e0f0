//! Messages an origin node signs with its own key: the claim to be a stream's origin (made
//! with the publisher's stream check) and the segment hash reports viewers verify against.
//!
//! Both name the node and the stream inside the signed bytes, so a captured message can
//! neither be attributed to another node nor replayed to another stream, and both carry a
//! timestamp the coordinator checks against its skew window.

use serde::{Deserialize, Serialize};

use crate::canonical::{
    CanonicalWriter, ORIGIN_CLAIM_TAG, SEGMENT_REPORT_RUN_TAG, SEGMENT_REPORT_TAG,
};
use crate::error::SignatureError;
use crate::identity::NodeId;
use crate::ids::{ContentDigest, StreamId};
use crate::signed::{CanonicalMessage, Signed};

/// A node's statement that it is the origin a publisher is pushing `stream_id` to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginClaim {
    /// The origin node (its key verifies the signature).
    pub node_id: NodeId,
    /// The stream being published.
    pub stream_id: StreamId,
    /// Node clock, Unix milliseconds.
    pub timestamp_ms: u64,
}

impl CanonicalMessage for OriginClaim {
    /// `ORIGIN_CLAIM_TAG ‖ node_id(32) ‖ (len ‖ stream_id) ‖ timestamp_ms(8)`.
    fn canonical_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(ORIGIN_CLAIM_TAG)
            .fixed(self.node_id.as_bytes())
            .str(self.stream_id.as_str())
            .u64(self.timestamp_ms)
            .finish()
    }
}

/// An origin claim signed by its node.
pub type SignedOriginClaim = Signed<OriginClaim>;

/// The hash of one segment an origin published, signed by the origin node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSegmentReport {
    /// The reporting origin node (its key verifies the signature).
    pub node_id: NodeId,
    /// The stream the segment belongs to.
    pub stream_id: StreamId,
    /// Segment sequence number.
    pub sequence: u64,
    /// BLAKE3 hash of the segment bytes ([`crate::segment_hash`]).
    pub hash: ContentDigest,
    /// When the origin published the segment, Unix milliseconds.
    pub published_ms: u64,
    /// Node clock when the report was signed, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The LL-HLS (fMP4) segment with the same sequence number, when the origin serves that
    /// rendition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll: Option<LlSegmentHashes>,
    /// The origin's run the segment was cut in: chosen at random whenever the origin starts
    /// cutting a stream afresh (a restart, a standby taking over, its numbering starting over),
    /// so a report of another run than the one before it says the stream broke off after that
    /// one. Absent from an origin that predates it (then nobody knows where the stream broke
    /// off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
}

/// The hashes of the fMP4 segment an origin cut at the same frames as an MPEG-TS segment: the
/// segment is the concatenation of its parts, so a viewer that fetched the parts checks each
/// part against its hash and the segment against `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlSegmentHashes {
    /// BLAKE3 hash of the fMP4 segment bytes ([`crate::segment_hash`]).
    pub hash: ContentDigest,
    /// BLAKE3 hash of each partial segment, in order.
    pub part_hashes: Vec<ContentDigest>,
    /// Size of the segment in bytes.
    pub len: u64,
}

impl CanonicalMessage for OriginSegmentReport {
    /// `SEGMENT_REPORT_TAG ‖ node_id(32) ‖ (len ‖ stream_id) ‖ sequence(8) ‖ hash(32) ‖
    /// published_ms(8) ‖ timestamp_ms(8)`, then, only when `ll` is present,
    /// `ll.hash(32) ‖ ll.len(8) ‖ part count(8) ‖ part hashes(32 each)`: a report without the
    /// LL-HLS rendition signs the same bytes as before it existed. A report naming its `run`
    /// starts with `SEGMENT_REPORT_RUN_TAG` instead and has `run(8)` right after the node id;
    /// one without a run signs the v1 bytes above, so an older origin's reports verify as before
    /// and no report can be taken for the other layout.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = match self.run {
            Some(run) => CanonicalWriter::new(SEGMENT_REPORT_RUN_TAG)
                .fixed(self.node_id.as_bytes())
                .u64(run),
            None => CanonicalWriter::new(SEGMENT_REPORT_TAG).fixed(self.node_id.as_bytes()),
        };
        writer = writer
            .str(self.stream_id.as_str())
            .u64(self.sequence)
            .fixed(self.hash.as_bytes())
            .u64(self.published_ms)
            .u64(self.timestamp_ms);
        if let Some(ll) = &self.ll {
            writer = writer
                .fixed(ll.hash.as_bytes())
                .u64(ll.len)
                .u64(u64::try_from(ll.part_hashes.len()).unwrap_or(u64::MAX));
            for part in &ll.part_hashes {
                writer = writer.fixed(part.as_bytes());
            }
        }
        writer.finish()
    }
}

/// A segment report signed by its origin node.
pub type SignedSegmentReport = Signed<OriginSegmentReport>;

pub(crate) fn check_skew(
    timestamp_ms: u64,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), SignatureError> {
    let skew_ms = now_ms.abs_diff(timestamp_ms);
    if skew_ms > max_skew_ms {
        return Err(SignatureError::StaleTimestamp {
            timestamp_ms,
            skew_ms,
            limit_ms: max_skew_ms,
        });
    }
    Ok(())
}

impl Signed<OriginClaim> {
    /// Checks the node's signature and that the timestamp lies within `max_skew_ms` of
    /// `now_ms`.
    pub fn verify(&self, now_ms: u64, max_skew_ms: u64) -> Result<&OriginClaim, SignatureError> {
        let body = self.verify_with(&self.body.node_id.verifying_key()?)?;
        check_skew(body.timestamp_ms, now_ms, max_skew_ms)?;
        Ok(body)
    }
}

impl Signed<OriginSegmentReport> {
    /// Checks the node's signature and that the timestamp lies within `max_skew_ms` of
    /// `now_ms`. Whether the signer is the stream's origin is the caller's check.
    pub fn verify(
        &self,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<&OriginSegmentReport, SignatureError> {
        let body = self.verify_with(&self.body.node_id.verifying_key()?)?;
        check_skew(body.timestamp_ms, now_ms, max_skew_ms)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    fn report(stream: &str) -> OriginSegmentReport {
        OriginSegmentReport {
            node_id: KeyPair::from_seed([7; 32]).node_id(),
            stream_id: StreamId::new(stream).unwrap(),
            sequence: 3,
            hash: ContentDigest::from_bytes([1; 32]),
            published_ms: 900,
            timestamp_ms: 1_000,
            ll: None,
            run: None,
        }
    }

    #[test]
    fn the_run_is_signed_and_a_report_without_it_keeps_its_bytes() {
        let plain = report("live");
        let mut with_run = plain.clone();
        with_run.run = Some(0x0123_4567_89ab_cdef);
        let bytes = with_run.canonical_bytes();
        assert!(bytes.starts_with(b"streamr/segment-report/v2\0"));
        assert_eq!(bytes.len(), plain.canonical_bytes().len() + 8);
        let run_at = SEGMENT_REPORT_RUN_TAG.len() + 32;
        assert_eq!(
            &bytes[run_at..run_at + 8],
            &0x0123_4567_89ab_cdef_u64.to_be_bytes()
        );
        // The JSON of a report without a run is unchanged, and one with it carries it.
        assert!(!serde_json::to_string(&plain).unwrap().contains("\"run\""));
        let json = serde_json::to_string(&with_run).unwrap();
        assert_eq!(
            serde_json::from_str::<OriginSegmentReport>(&json).unwrap(),
            with_run
        );
        let node = KeyPair::from_seed([7; 32]);
        let signed = Signed::sign(with_run, &node);
        assert!(signed.verify(1_000, 0).is_ok());
        // Another run, or the run taken away (an older origin's layout), breaks the signature.
        for run in [Some(1), None] {
            let mut moved = signed.clone();
            moved.body.run = run;
            assert_eq!(
                moved.verify(1_000, 0).unwrap_err(),
                SignatureError::BadSignature
            );
        }
    }

    #[test]
    fn ll_hashes_are_signed_and_a_report_without_them_keeps_its_bytes() {
        let plain = report("live");
        let mut with_ll = plain.clone();
        with_ll.ll = Some(LlSegmentHashes {
            hash: ContentDigest::from_bytes([2; 32]),
            part_hashes: vec![ContentDigest::from_bytes([3; 32]); 2],
            len: 4_000,
        });
        let bytes = with_ll.canonical_bytes();
        assert!(bytes.starts_with(&plain.canonical_bytes()));
        assert_eq!(
            bytes.len(),
            plain.canonical_bytes().len() + 32 + 8 + 8 + 2 * 32
        );
        // The JSON of a report without LL hashes is unchanged too.
        assert!(!serde_json::to_string(&plain).unwrap().contains("\"ll\""));
        let node = KeyPair::from_seed([7; 32]);
        let mut signed = Signed::sign(with_ll, &node);
        assert!(signed.verify(1_000, 0).is_ok());
        if let Some(ll) = signed.body.ll.as_mut() {
            ll.part_hashes[1] = ContentDigest::from_bytes([4; 32]);
        }
        assert_eq!(
            signed.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
    }

    #[test]
    fn canonical_bytes_are_tagged_and_name_the_stream() {
        let bytes = report("live").canonical_bytes();
        assert!(bytes.starts_with(b"streamr/segment-report/v1\0"));
        let after_node = &bytes[SEGMENT_REPORT_TAG.len() + 32..];
        assert_eq!(&after_node[..8], &[0, 0, 0, 4, b'l', b'i', b'v', b'e']);
        assert_eq!(&bytes[bytes.len() - 8..], &1_000u64.to_be_bytes());
        assert_ne!(
            report("live").canonical_bytes(),
            report("other").canonical_bytes()
        );
    }

    #[test]
    fn a_report_moved_to_another_stream_no_longer_verifies() {
        let node = KeyPair::from_seed([7; 32]);
        let mut signed = Signed::sign(report("live"), &node);
        assert!(signed.verify(1_000, 0).is_ok());
        signed.body.stream_id = StreamId::new("other").unwrap();
        assert_eq!(
            signed.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
    }

    #[test]
    fn stale_reports_and_claims_are_refused() {
        let node = KeyPair::from_seed([7; 32]);
        let signed = Signed::sign(report("live"), &node);
        assert!(matches!(
            signed.verify(10_000, 5_000),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        let claim = Signed::sign(
            OriginClaim {
                node_id: node.node_id(),
                stream_id: StreamId::new("live").unwrap(),
                timestamp_ms: 1_000,
            },
            &node,
        );
        assert!(claim.verify(1_500, 1_000).is_ok());
        assert!(claim.verify(9_000, 1_000).is_err());
    }

    #[test]
    fn a_claim_is_not_a_segment_report() {
        let claim = OriginClaim {
            node_id: KeyPair::from_seed([7; 32]).node_id(),
            stream_id: StreamId::new("live").unwrap(),
            timestamp_ms: 1_000,
        };
        assert!(claim.canonical_bytes().starts_with(ORIGIN_CLAIM_TAG));
        assert!(!report("live")
            .canonical_bytes()
            .starts_with(ORIGIN_CLAIM_TAG));
    }
}
