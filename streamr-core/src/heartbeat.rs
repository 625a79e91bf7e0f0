//! Signed node heartbeats: liveness and self-reported load. A heartbeat proves only that the
//! node's key is online; rewards never depend on it (probes measure availability).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, HEARTBEAT_TAG};
use crate::error::SignatureError;
use crate::identity::NodeId;
use crate::ids::StreamId;
use crate::signed::{CanonicalMessage, Signed};

/// A node's periodic report, signed with the node's own key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    /// The reporting node (its key verifies the signature).
    pub node_id: NodeId,
    /// Node clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Strictly increasing per node; blocks replay of a captured heartbeat.
    pub nonce: u64,
    /// Streams the node currently relays.
    pub streams: Vec<StreamId>,
    /// Viewers currently connected.
    pub viewers: u64,
    /// Bytes the node says it served to sessions whose viewers sign receipts: the attested
    /// claim, checked against those receipts by the fraud rules. In a signed heartbeat, the
    /// bytes since the node's previous heartbeat; in a node session's heartbeat
    /// ([`crate::MacHeartbeat`]), the running total since the session opened (never lower
    /// than the session's previous one), so a heartbeat the coordinator lost is restated.
    pub bytes_served: u64,
    /// Bytes the node says it served to sessions that sent no receipt (players that cannot
    /// sign, such as ffplay or VLC), counted as `bytes_served` is (since the previous heartbeat
    /// when signed, a running total under a node session). Never checked against receipts;
    /// rewards cap them by probe-measured capacity and pay them at a discount.
    pub unattested_bytes: u64,
    /// Per stream it relays from a relay tree, the node it actually pulls that stream from
    /// now (a tree parent, an ancestor it fell back to, or the origin). Optional on the wire:
    /// heartbeats of nodes that predate it (or relay from static upstreams only) leave it out,
    /// and their signed bytes are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<RelayUpstream>,
    /// What the node has claimed in all of its current run, this heartbeat included: lets
    /// the coordinator count a claim once however often the node sends it (a claim put back
    /// after a lost answer and sent again under a new nonce restates the same totals).
    /// Optional on the wire: heartbeats of nodes that predate it leave it out, sign the bytes
    /// they signed before, and have their `bytes_served` counted as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_totals: Option<ClaimTotals>,
}

/// A node's running claim totals in a signed heartbeat ([`NodeHeartbeat::claim_totals`]).
///
/// A run is the life of one node process, with both totals starting at zero. A heartbeat's
/// nonce names it, taken while nothing of the run has been counted: the first counted
/// heartbeat's nonce is above every nonce the coordinator took before, so a later run has a
/// larger name than an earlier one. Each heartbeat adds its `bytes_served` and `unattested_bytes` to the totals
/// it carries, so the coordinator counts the part of a claim above what it has counted of the
/// run, and a claim it has counted adds nothing when restated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimTotals {
    /// The run's name: the nonce of one of its heartbeats, taken before any claim of the
    /// run was counted.
    pub run: u64,
    /// Attested bytes claimed in the run, this heartbeat's `bytes_served` included.
    pub bytes_served: u64,
    /// Unattested bytes claimed in the run, this heartbeat's `unattested_bytes` included.
    pub unattested_bytes: u64,
}

/// Where a relay pulls one stream from, as its heartbeat reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayUpstream {
    /// The relayed stream.
    pub stream: StreamId,
    /// The node it pulls the stream from.
    pub upstream: NodeId,
}

impl CanonicalMessage for NodeHeartbeat {
    /// `HEARTBEAT_TAG ‖ node_id(32) ‖ timestamp_ms(8) ‖ nonce(8) ‖ count(8) ‖ (len ‖ stream)* ‖
    /// viewers(8) ‖ bytes_served(8) ‖ unattested_bytes(8)`, then, only when `upstreams` is not
    /// empty or `claim_totals` is present, `count(8) ‖ (len ‖ stream ‖ upstream(32))*`, then,
    /// only when `claim_totals` is present, `run(8) ‖ bytes_served(8) ‖ unattested_bytes(8)`:
    /// a heartbeat without either field signs the bytes it signed before the fields existed,
    /// and the count fixes where the upstreams end, so no two heartbeats sign the same bytes.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::new(HEARTBEAT_TAG)
            .fixed(self.node_id.as_bytes())
            .u64(self.timestamp_ms)
            .u64(self.nonce)
            .u64(self.streams.len() as u64);
        for stream in &self.streams {
            writer = writer.str(stream.as_str());
        }
        writer = writer
            .u64(self.viewers)
            .u64(self.bytes_served)
            .u64(self.unattested_bytes);
        if !self.upstreams.is_empty() || self.claim_totals.is_some() {
            writer = writer.u64(self.upstreams.len() as u64);
            for relayed in &self.upstreams {
                writer = writer
                    .str(relayed.stream.as_str())
                    .fixed(relayed.upstream.as_bytes());
            }
        }
        if let Some(totals) = &self.claim_totals {
            writer = writer
                .u64(totals.run)
                .u64(totals.bytes_served)
                .u64(totals.unattested_bytes);
        }
        writer.finish()
    }
}

/// A heartbeat signed by its node.
pub type SignedHeartbeat = Signed<NodeHeartbeat>;

impl Signed<NodeHeartbeat> {
    /// Checks the node's signature and that the timestamp lies within `max_skew_ms` of `now_ms`.
    /// Nonce replay needs state: see [`HeartbeatNonces`].
    pub fn verify(&self, now_ms: u64, max_skew_ms: u64) -> Result<&NodeHeartbeat, SignatureError> {
        let body = self.verify_with(&self.body.node_id.verifying_key()?)?;
        let skew_ms = now_ms.abs_diff(body.timestamp_ms);
        if skew_ms > max_skew_ms {
            return Err(SignatureError::StaleTimestamp {
                timestamp_ms: body.timestamp_ms,
                skew_ms,
                limit_ms: max_skew_ms,
            });
        }
        Ok(body)
    }
}

/// The highest heartbeat nonce accepted per node (the coordinator persists it).
#[derive(Clone, Debug, Default)]
pub struct HeartbeatNonces {
    last: HashMap<NodeId, u64>,
}

impl HeartbeatNonces {
    /// Verifies signature and freshness, then that the nonce is above the last accepted one,
    /// and records it.
    pub fn accept<'a>(
        &mut self,
        heartbeat: &'a SignedHeartbeat,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<&'a NodeHeartbeat, SignatureError> {
        let body = heartbeat.verify(now_ms, max_skew_ms)?;
        if let Some(&last) = self.last.get(&body.node_id) {
            if body.nonce <= last {
                return Err(SignatureError::ReplayedNonce {
                    node: body.node_id,
                    nonce: body.nonce,
                    last,
                });
            }
        }
        self.last.insert(body.node_id, body.nonce);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    fn heartbeat() -> NodeHeartbeat {
        NodeHeartbeat {
            node_id: KeyPair::from_seed([5; 32]).node_id(),
            timestamp_ms: 1_000,
            nonce: 2,
            streams: vec![StreamId::new("live").unwrap()],
            viewers: 3,
            bytes_served: 4_000,
            unattested_bytes: 5_000,
            upstreams: Vec::new(),
            claim_totals: None,
        }
    }

    #[test]
    fn canonical_bytes_end_with_the_attested_then_unattested_claim() {
        let bytes = heartbeat().canonical_bytes();
        assert!(bytes.starts_with(b"streamr/heartbeat/v2\0"));
        let tail = &bytes[bytes.len() - 24..];
        assert_eq!(&tail[..8], &3u64.to_be_bytes());
        assert_eq!(&tail[8..16], &4_000u64.to_be_bytes());
        assert_eq!(&tail[16..], &5_000u64.to_be_bytes());
    }

    #[test]
    fn the_signature_covers_unattested_bytes() {
        let node = KeyPair::from_seed([5; 32]);
        let mut signed = Signed::sign(heartbeat(), &node);
        assert!(signed.verify(1_000, 0).is_ok());
        signed.body.unattested_bytes += 1;
        assert_eq!(
            signed.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
        // Moving bytes between the two claims changes the signed bytes as well.
        let mut moved = heartbeat();
        moved.bytes_served = 5_000;
        moved.unattested_bytes = 4_000;
        assert_ne!(moved.canonical_bytes(), heartbeat().canonical_bytes());
    }

    #[test]
    fn upstreams_are_signed_and_a_heartbeat_without_them_signs_the_old_bytes() {
        let node = KeyPair::from_seed([5; 32]);
        let old = heartbeat().canonical_bytes();
        // The old layout ends with the unattested claim.
        assert_eq!(&old[old.len() - 8..], &5_000u64.to_be_bytes());
        let mut relaying = heartbeat();
        relaying.upstreams = vec![RelayUpstream {
            stream: StreamId::new("live").unwrap(),
            upstream: KeyPair::from_seed([6; 32]).node_id(),
        }];
        assert!(relaying.canonical_bytes().starts_with(&old));
        let mut signed = Signed::sign(relaying, &node);
        assert!(signed.verify(1_000, 0).is_ok());
        signed.body.upstreams[0].upstream = KeyPair::from_seed([7; 32]).node_id();
        assert_eq!(
            signed.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
        // Dropping the field from a signed heartbeat breaks its signature too.
        signed.body.upstreams.clear();
        assert!(signed.verify(1_000, 0).is_err());
        // JSON without the field parses (old nodes), and an empty list is left out.
        let json = serde_json::to_string(&heartbeat()).unwrap();
        assert!(!json.contains("upstreams"));
        assert_eq!(
            serde_json::from_str::<NodeHeartbeat>(&json).unwrap(),
            heartbeat()
        );
    }

    #[test]
    fn claim_totals_are_signed_and_cannot_pass_for_upstreams() {
        let node = KeyPair::from_seed([5; 32]);
        let old = heartbeat().canonical_bytes();
        let mut claiming = heartbeat();
        claiming.claim_totals = Some(ClaimTotals {
            run: 1,
            bytes_served: 4_000,
            unattested_bytes: 5_000,
        });
        let bytes = claiming.canonical_bytes();
        assert!(bytes.starts_with(&old));
        // An empty upstream count, then the totals.
        assert_eq!(bytes.len(), old.len() + 32);
        assert_eq!(&bytes[old.len()..old.len() + 8], &0u64.to_be_bytes());
        let mut signed = Signed::sign(claiming, &node);
        assert!(signed.verify(1_000, 0).is_ok());
        if let Some(totals) = signed.body.claim_totals.as_mut() {
            totals.bytes_served += 1;
        }
        assert_eq!(
            signed.verify(1_000, 0).unwrap_err(),
            SignatureError::BadSignature
        );
        signed.body.claim_totals = None;
        assert!(signed.verify(1_000, 0).is_err());
        let json = serde_json::to_string(&heartbeat()).unwrap();
        assert!(!json.contains("claim_totals"));
    }
}
