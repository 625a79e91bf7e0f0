//! The LL-HLS rendition through a real coordinator (served on loopback, SQLite and PostgreSQL):
//! the origin's signed segment reports carry the fMP4 segment and part hashes, the segment list
//! viewers read returns them with their own running digest, and receipts signed over either
//! rendition are credited.

use crate::common;

use common::*;
use streamr_coord::client::{unix_ms, CoordinatorClient, NodeAdvert};
use streamr_coord::{connect, Coordinator};
use streamr_core::{
    segment_hash, ContentDigest, KeyPair, LlSegmentHashes, OriginSegmentReport, SegmentChain,
    Signed, StreamId, ViewerReceipt,
};

on_both_backends!(ll_hashes_are_stored_listed_and_bind_receipts);

/// Segment `sequence` in both renditions: the TS bytes and the fMP4 parts.
fn media(sequence: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let ts = format!("ts segment {sequence}").into_bytes();
    let parts = (0..3)
        .map(|part| format!("fmp4 segment {sequence} part {part}").into_bytes())
        .collect();
    (ts, parts)
}

fn report(origin: &KeyPair, sequence: u64) -> Signed<OriginSegmentReport> {
    let (ts, parts) = media(sequence);
    let whole = parts.concat();
    Signed::sign(
        OriginSegmentReport {
            node_id: origin.node_id(),
            stream_id: StreamId::new("show").expect("stream id"),
            sequence,
            hash: segment_hash(&ts),
            published_ms: unix_ms(),
            timestamp_ms: unix_ms(),
            ll: Some(LlSegmentHashes {
                hash: segment_hash(&whole),
                part_hashes: parts.iter().map(|part| segment_hash(part)).collect(),
                len: whole.len() as u64,
            }),
            run: None,
        },
        origin,
    )
}

async fn ll_hashes_are_stored_listed_and_bind_receipts(db: &TestDb) {
    let coordinator = Coordinator::new(test_config(), connect(db.url()).await.expect("storage"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = coordinator.spawn_serve(listener).expect("serve");
    let admin = CoordinatorClient::new(&server.url())
        .expect("client")
        .with_admin_token(ADMIN);
    let public = CoordinatorClient::new(&server.url()).expect("client");
    let created = admin
        .create_stream("show", "The show")
        .await
        .expect("stream");
    let origin = KeyPair::from_seed([21; 32]);
    assert!(public
        .publish_check_as_origin("show", &created.stream_key, &origin)
        .await
        .expect("publish check"));

    for sequence in 0..2 {
        let stored = public
            .report_segment_signed(&report(&origin, sequence))
            .await
            .expect("report");
        assert!(stored.created);
        assert!(
            stored.segment.ll.is_some(),
            "the answer carries the LL rendition"
        );
    }
    // The same report again is the same segment, LL rendition included.
    let again = public
        .report_segment_signed(&report(&origin, 1))
        .await
        .expect("report again");
    assert!(!again.created);

    // What viewers read: both renditions, each with its own chain.
    let mut segments = public.segments("show", 10).await.expect("segments");
    segments.reverse();
    assert_eq!(segments.len(), 2);
    let mut ts_chain = SegmentChain::genesis(0);
    let mut ll_chain = SegmentChain::genesis(0);
    for (segment, sequence) in segments.iter().zip(0u64..) {
        let (ts, parts) = media(sequence);
        assert_eq!(
            segment.digest,
            ts_chain.push(&segment_hash(&ts)).to_string()
        );
        let ll = segment.ll.as_ref().expect("LL rendition listed");
        assert_eq!(ll.hash, segment_hash(&parts.concat()).to_string());
        assert_eq!(
            ll.digest,
            ll_chain.push(&segment_hash(&parts.concat())).to_string()
        );
        let part_hashes: Vec<String> = parts
            .iter()
            .map(|part| segment_hash(part).to_string())
            .collect();
        assert_eq!(ll.part_hashes, part_hashes);
        assert_eq!(ll.len, parts.concat().len() as i64);
    }
    assert_eq!(again.segment.ll, segments[1].ll);

    // Receipts: one viewer played LL-HLS, one MPEG-TS, one signed something else.
    let node = KeyPair::from_seed([22; 32]);
    let advert = NodeAdvert {
        operator_membership: None,
        operator: "bob".into(),
        payout_address: "0xb0b".into(),
        rtmp_url: "rtmp://10.0.7.1:1935/live".into(),
        http_url: "http://10.0.7.1:8080".into(),
        capacity_kbps: 20_000,
    };
    public
        .register_node(&node, &advert)
        .await
        .expect("register");
    public
        .heartbeat(heartbeat(&node, 1, &["show"]), Vec::new())
        .await
        .expect("heartbeat");
    let ll_digest: ContentDigest = segments[1]
        .ll
        .as_ref()
        .expect("ll")
        .digest
        .parse()
        .expect("hex");
    let ts_digest: ContentDigest = segments[1].digest.parse().expect("hex");
    let fmp4_hash: ContentDigest = segments[1]
        .ll
        .as_ref()
        .expect("ll")
        .hash
        .parse()
        .expect("hex");
    let mut receipts = Vec::new();
    for (seed, digest) in [(23u8, ll_digest), (24, ts_digest), (25, fmp4_hash)] {
        let viewer = KeyPair::from_seed([seed; 32]);
        let play = public
            .play("show", &viewer.viewer_key())
            .await
            .expect("play");
        receipts.push(Signed::sign(
            ViewerReceipt {
                session_id: play.grant.body.session_id,
                seq: 1,
                bytes_total: 4_000,
                last_segment_seq: 1,
                segments_digest: digest,
                t_ms: unix_ms(),
            },
            &viewer,
        ));
    }
    let outcome = public
        .heartbeat(heartbeat(&node, 2, &["show"]), receipts)
        .await
        .expect("heartbeat with receipts");
    assert_eq!(outcome.accepted, 2, "{:?}", outcome.rejected);
    assert_eq!(outcome.rejected.len(), 1, "{:?}", outcome.rejected);
}
