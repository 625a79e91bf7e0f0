//! The node's side of the coordinator conversation: signed heartbeats carrying the viewers'
//! receipts, and the origin's segment hash reports.

use std::sync::Arc;
use std::time::Duration;

use streamr_coord::client::{unix_ms, CoordinatorClient};
use streamr_core::{ContentDigest, KeyPair, NodeHeartbeat, OriginSegmentReport, Signed, StreamId};
use streamr_media::http::SegmentNotice;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::gate::Gate;

/// Sends a signed heartbeat every `interval` until `stop`.
pub(crate) async fn heartbeats(
    client: CoordinatorClient,
    key: KeyPair,
    gate: Arc<Gate>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut nonce = 0u64;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stats = gate.hub.all_stats();
        let streams: Vec<StreamId> = stats
            .iter()
            .filter(|s| s.publishing)
            .filter_map(|s| StreamId::new(s.key.name.clone()).ok())
            .collect();
        // The node's own HLS segmenter subscribes as an internal consumer, so these are
        // viewers only.
        let viewers: usize = stats.iter().map(|s| s.viewers.len()).sum();
        let now = unix_ms();
        let served = gate.accounting.take(&stats, now);
        nonce = nonce.saturating_add(1).max(now);
        let heartbeat = Signed::sign(
            NodeHeartbeat {
                node_id: key.node_id(),
                timestamp_ms: now,
                nonce,
                streams,
                viewers: u64::try_from(viewers).unwrap_or(u64::MAX),
                bytes_served: served.attested,
                unattested_bytes: served.unattested,
            },
            &key,
        );
        let receipts = gate.take_receipts();
        let carried = receipts.len();
        match client.heartbeat(heartbeat, receipts.clone()).await {
            Ok(outcome) => {
                debug!(
                    receipts = carried,
                    accepted = outcome.accepted,
                    attested_bytes = served.attested,
                    unattested_bytes = served.unattested,
                    "heartbeat sent"
                );
                for reason in outcome.rejected {
                    warn!(%reason, "coordinator rejected a viewer receipt");
                }
            }
            Err(error) => {
                warn!(%error, "heartbeat failed; retrying next interval");
                gate.restore_receipts(receipts);
                gate.accounting.restore(served);
            }
        }
    }
}

/// Reports every segment the origin's live HLS cuts to the coordinator until `stop`, each
/// signed with the origin's node key (the coordinator accepts them from the stream's origin
/// node only).
pub(crate) async fn segment_reports(
    client: CoordinatorClient,
    key: KeyPair,
    mut notices: broadcast::Receiver<SegmentNotice>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return,
            notice = notices.recv() => notice,
        };
        let notice = match notice {
            Ok(notice) => notice,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "segment reports fell behind; some segments go unreported"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let stream_id = match StreamId::new(notice.key.name.as_str()) {
            Ok(stream_id) => stream_id,
            Err(error) => {
                warn!(stream = %notice.key, %error, "cannot report segments of this stream name");
                continue;
            }
        };
        let now = unix_ms();
        let report = Signed::sign(
            OriginSegmentReport {
                node_id: key.node_id(),
                stream_id,
                sequence: notice.sequence,
                hash: ContentDigest::from_bytes(*notice.hash.as_bytes()),
                published_ms: now,
                timestamp_ms: now,
            },
            &key,
        );
        match client.report_segment_signed(&report).await {
            Ok(_) => debug!(stream = %notice.key, sequence = notice.sequence, "segment reported"),
            Err(error) => {
                warn!(stream = %notice.key, sequence = notice.sequence, %error,
                    "cannot report a segment hash to the coordinator")
            }
        }
    }
}

/// Logs the outcome of leaving the network.
pub(crate) async fn deregister(client: &CoordinatorClient, key: &KeyPair) {
    match client.deregister_node(key).await {
        Ok(()) => info!(node = %key.node_id(), "deregistered from the coordinator"),
        Err(error) => warn!(%error, "cannot deregister from the coordinator"),
    }
}
