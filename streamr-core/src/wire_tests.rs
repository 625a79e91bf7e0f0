//! Round trips and signature checks for the signed wire types.

use proptest::prelude::*;

use crate::*;

fn grant_strategy() -> impl Strategy<Value = SessionGrant> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        "[a-z0-9/_-]{0,24}",
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(sid, viewer, node, stream, max_bytes, expiry_ms)| SessionGrant {
                session_id: SessionId::from_bytes(sid),
                viewer: ViewerKey::from_bytes(viewer),
                node_id: NodeId::from_bytes(node),
                stream_id: StreamId::new(stream).unwrap(),
                max_bytes,
                expiry_ms,
            },
        )
}

fn receipt_strategy() -> impl Strategy<Value = ViewerReceipt> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
    )
        .prop_map(
            |(sid, seq, bytes_total, last, digest, t_ms)| ViewerReceipt {
                session_id: SessionId::from_bytes(sid),
                seq,
                bytes_total,
                last_segment_seq: last,
                segments_digest: ContentDigest::from_bytes(digest),
                t_ms,
            },
        )
}

fn part_report_strategy() -> impl Strategy<Value = OriginPartReport> {
    let part = (
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(msn, index, hash, len, cut_ms)| PartHash {
            msn,
            index,
            hash: ContentDigest::from_bytes(hash),
            len,
            cut_ms,
        });
    (
        any::<[u8; 32]>(),
        "[a-z0-9._-]{1,24}",
        any::<u64>(),
        proptest::collection::vec(part, 0..=MAX_PARTS_PER_REPORT),
        any::<u64>(),
    )
        .prop_map(
            |(node, stream, run, parts, timestamp_ms)| OriginPartReport {
                node_id: NodeId::from_bytes(node),
                stream_id: StreamId::new(stream).unwrap(),
                run,
                parts,
                timestamp_ms,
            },
        )
}

fn heartbeat_strategy() -> impl Strategy<Value = NodeHeartbeat> {
    let relayed =
        ("[a-z0-9._-]{1,24}", any::<[u8; 32]>()).prop_map(|(stream, upstream)| RelayUpstream {
            stream: StreamId::new(stream).unwrap(),
            upstream: NodeId::from_bytes(upstream),
        });
    (
        (any::<u64>(), any::<u64>()),
        proptest::collection::vec("[a-z0-9._-]{1,24}", 0..4),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::collection::vec(relayed, 0..4),
    )
        .prop_map(
            |(
                (timestamp_ms, nonce),
                streams,
                (viewers, bytes_served, unattested_bytes),
                upstreams,
            )| {
                NodeHeartbeat {
                    node_id: NodeId::from_bytes([0; 32]),
                    timestamp_ms,
                    nonce,
                    streams: streams
                        .into_iter()
                        .map(|s| StreamId::new(s).unwrap())
                        .collect(),
                    viewers,
                    bytes_served,
                    unattested_bytes,
                    upstreams,
                    claim_totals: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_heartbeat_with_upstreams_round_trips_and_verifies(
        heartbeat in heartbeat_strategy(),
        seed in any::<[u8; 32]>(),
    ) {
        let key = KeyPair::from_seed(seed);
        let mut heartbeat = heartbeat;
        heartbeat.node_id = key.node_id();
        let signed = Signed::sign(heartbeat, &key);
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedHeartbeat = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.body.canonical_bytes(), signed.body.canonical_bytes());
        prop_assert!(back.verify(signed.body.timestamp_ms, 0).is_ok());
        // Without upstreams the JSON has no such field: what a node predating it sends.
        prop_assert_eq!(json.contains("\"upstreams\""), !signed.body.upstreams.is_empty());
    }

    #[test]
    fn signed_part_report_round_trips_and_verifies(
        report in part_report_strategy(),
        seed in any::<[u8; 32]>(),
    ) {
        let key = KeyPair::from_seed(seed);
        let mut report = report;
        report.node_id = key.node_id();
        let signed = Signed::sign(report, &key);
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedPartReport = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.body.canonical_bytes(), signed.body.canonical_bytes());
        prop_assert!(back.verify(signed.body.timestamp_ms, 0).is_ok());
    }

    #[test]
    fn signed_grant_round_trips_and_verifies(grant in grant_strategy(), seed in any::<[u8; 32]>()) {
        let key = KeyPair::from_seed(seed);
        let signed = Signed::sign(grant, &key);
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedGrant = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &signed);
        prop_assert!(back.verify(&key.coordinator_key()).is_ok());
    }

    #[test]
    fn any_field_change_breaks_a_receipt_signature(receipt in receipt_strategy(), bump in 0usize..5) {
        let key = KeyPair::from_seed([4; 32]);
        let signed = Signed::sign(receipt, &key);
        let json = serde_json::to_string(&signed).unwrap();
        let mut back: SignedReceipt = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &signed);
        let vk = key.viewer_key().verifying_key().unwrap();
        prop_assert!(back.verify_with(&vk).is_ok());
        let body = &mut back.body;
        match bump {
            0 => body.seq = body.seq.wrapping_add(1),
            1 => body.bytes_total = body.bytes_total.wrapping_add(1),
            2 => body.last_segment_seq = body.last_segment_seq.wrapping_add(1),
            3 => body.t_ms = body.t_ms.wrapping_add(1),
            _ => body.segments_digest = ContentDigest::from_bytes([0xAB; 32]),
        }
        if back.body != signed.body {
            prop_assert_eq!(back.verify_with(&vk), Err(SignatureError::BadSignature));
        }
    }
}

#[test]
fn a_grant_signature_cannot_pass_as_a_receipt_signature() {
    let key = KeyPair::from_seed([5; 32]);
    let grant = SessionGrant {
        session_id: SessionId::from_bytes([1; 16]),
        viewer: key.viewer_key(),
        node_id: key.node_id(),
        stream_id: StreamId::new("s").unwrap(),
        max_bytes: 1,
        expiry_ms: 2,
    };
    let signed = Signed::sign(grant, &key);
    let forged = Signed {
        body: ViewerReceipt {
            session_id: SessionId::from_bytes([1; 16]),
            seq: 0,
            bytes_total: 0,
            last_segment_seq: 0,
            segments_digest: ContentDigest::default(),
            t_ms: 0,
        },
        signature: signed.signature,
    };
    let vk = key.viewer_key().verifying_key().unwrap();
    assert_eq!(forged.verify_with(&vk), Err(SignatureError::BadSignature));
    assert!(signed.verify(&key.coordinator_key()).is_ok());
    let other = KeyPair::from_seed([6; 32]);
    assert_eq!(
        signed.verify(&other.coordinator_key()),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn heartbeat_checks_skew_and_nonce() {
    let node = KeyPair::from_seed([8; 32]);
    let beat = |nonce, timestamp_ms| {
        Signed::sign(
            NodeHeartbeat {
                node_id: node.node_id(),
                timestamp_ms,
                nonce,
                streams: vec![StreamId::new("live").unwrap()],
                viewers: 3,
                bytes_served: 1000,
                unattested_bytes: 250,
                upstreams: Vec::new(),
                claim_totals: None,
            },
            &node,
        )
    };
    let mut nonces = HeartbeatNonces::default();
    assert!(nonces.accept(&beat(1, 10_000), 10_500, 5_000).is_ok());
    assert!(matches!(
        nonces.accept(&beat(1, 10_000), 10_500, 5_000),
        Err(SignatureError::ReplayedNonce {
            nonce: 1,
            last: 1,
            ..
        })
    ));
    assert!(matches!(
        nonces.accept(&beat(2, 1_000), 10_500, 5_000),
        Err(SignatureError::StaleTimestamp { skew_ms: 9_500, .. })
    ));
    let mut tampered = beat(3, 10_000);
    tampered.body.bytes_served = 1 << 40;
    assert_eq!(
        nonces.accept(&tampered, 10_500, 5_000).unwrap_err(),
        SignatureError::BadSignature
    );
    let mut tampered = beat(3, 10_000);
    tampered.body.unattested_bytes = 1 << 40;
    assert_eq!(
        nonces.accept(&tampered, 10_500, 5_000).unwrap_err(),
        SignatureError::BadSignature
    );
    let json = serde_json::to_string(&beat(4, 10_000)).unwrap();
    let back: SignedHeartbeat = serde_json::from_str(&json).unwrap();
    assert!(nonces.accept(&back, 10_500, 5_000).is_ok());
}
