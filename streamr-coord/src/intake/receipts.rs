//! Receipt intake: rebuilds each session's verifier state from storage and lets
//! `streamr_core::ReceiptVerifier` decide what every receipt earns.
//!
//! A receipt is booked to the epoch its viewer signed it in (`t_ms`), wherever and whenever it
//! is posted, so a node cannot move its receipts into epochs of its choosing. It is accepted
//! until [`CoordConfig::settlement_grace`](crate::CoordConfig::settlement_grace) after that
//! epoch ends (settlement waits as long). A receipt that missed that deadline but was signed
//! less than the accepted clock skew ago (in flight across the boundary while the grace is
//! shorter than a round trip) is booked to the epoch it arrives in; older ones, and receipts
//! signed further in the future than the clock skew, are refused with the reason. A node can
//! thus shift a receipt by at most the clock skew, never into an epoch of its choosing.
//!
//! A coordinator outage that began before an epoch's deadline moves it (and the epoch's
//! settlement) to a grace period after the outage ended (see [`crate::outages`]): receipts
//! nodes and viewers kept through it are booked where they were signed.

use std::collections::BTreeMap;

use streamr_core::{
    ContentDigest, NodeId, OriginDigests, ReceiptRejection, ReceiptTally, ReceiptVerifier,
    SegmentRecord as OriginSegment, SessionId, SignedGrant, SignedReceipt, StreamId,
};

use super::{IntakeError, ReceiptIntake};
use crate::metrics::Metrics;
use crate::outages::Outages;
use crate::storage::{ActivityDelta, ReceiptRecord, SessionRecord};
use crate::wire::{ReceiptRejected, ReceiptRejectionCode, ReceiptsOutcome};

/// Receipts that verified (ready to store), why the others did not, and each credited node's
/// receipt outcomes for the fraud rules.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    pub(crate) accepted: Vec<ReceiptRecord>,
    /// Each refused receipt's code and reason, in the order judged.
    pub(crate) rejected: Vec<ReceiptRejected>,
    pub(crate) tallies: BTreeMap<String, ReceiptTally>,
    /// Receipts refused because their epoch's deadline had passed.
    pub(crate) late: u64,
    /// Receipts refused because they were signed in the future.
    pub(crate) future: u64,
}

/// The answer to the node or viewer that handed receipts in: `accepted` of them newly stored,
/// and the codes and reasons of those `rejected`.
pub(crate) fn outcome(accepted: u64, rejected: Vec<ReceiptRejected>) -> ReceiptsOutcome {
    let mut outcome = ReceiptsOutcome {
        accepted,
        ..ReceiptsOutcome::default()
    };
    for ReceiptRejected { code, reason } in rejected {
        outcome.reject(code, reason);
    }
    outcome
}

/// Why a receipt is refused for its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimingRefusal {
    /// Its epoch's deadline passed, and it is older than the clock skew.
    Late(String),
    /// Signed further ahead than the clock skew.
    Future(String),
}

/// The epoch `receipt` is booked to when it arrives at `now_ms`, or why it is refused. The
/// outage record is needed only for a receipt past its epoch's fixed deadline
/// ([`past_fixed_deadline`]); `None` reads as no outage.
fn booking_epoch(
    config: &crate::CoordConfig,
    outages: Option<&Outages>,
    receipt: &SignedReceipt,
    now_ms: i64,
) -> Result<i64, TimingRefusal> {
    let signed_at = i64::try_from(receipt.body.t_ms).unwrap_or(i64::MAX);
    let skew = i64::try_from(config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let session = receipt.body.session_id;
    let seq = receipt.body.seq;
    if signed_at > now_ms.saturating_add(skew) {
        return Err(TimingRefusal::Future(format!(
            "session {session} receipt {seq}: signed at {signed_at}, {} ms in the future \
             (limit {skew} ms)",
            signed_at.saturating_sub(now_ms)
        )));
    }
    let epoch = config.epoch_of(signed_at);
    let deadline = outages.map_or_else(
        || config.receipt_deadline_of(epoch),
        |outages| outages.receipt_deadline(config, epoch),
    );
    if now_ms <= deadline {
        return Ok(epoch);
    }
    if now_ms.saturating_sub(signed_at) <= skew {
        return Ok(config.epoch_of(now_ms));
    }
    Err(TimingRefusal::Late(format!(
        "session {session} receipt {seq}: late: signed in epoch {epoch}, whose receipts were \
         due by {deadline}"
    )))
}

/// Whether `receipt`, arriving at `now_ms`, missed its epoch's deadline as fixed by the
/// configuration alone (before any outage moved it).
fn past_fixed_deadline(config: &crate::CoordConfig, receipt: &SignedReceipt, now_ms: i64) -> bool {
    let signed_at = i64::try_from(receipt.body.t_ms).unwrap_or(i64::MAX);
    now_ms > config.receipt_deadline_of(config.epoch_of(signed_at))
}

impl Verified {
    /// The tallies as activity rows of `epoch`.
    pub(crate) fn activity(&self, epoch: i64) -> Vec<ActivityDelta> {
        self.tallies
            .iter()
            .map(|(node_id, tally)| tally_delta(node_id, epoch, tally))
            .collect()
    }
}

/// One node's receipt outcomes as an activity row.
pub(crate) fn tally_delta(node_id: &str, epoch: i64, tally: &ReceiptTally) -> ActivityDelta {
    ActivityDelta {
        node_id: node_id.to_owned(),
        epoch,
        heartbeats: 0,
        claimed_bytes: 0,
        unattested_bytes: 0,
        submitted: clamp_i64(tally.submitted),
        accepted: clamp_i64(tally.accepted),
        forged: clamp_i64(tally.forged),
        replayed: clamp_i64(tally.replayed),
        beyond_grant: clamp_i64(tally.beyond_grant),
        wrong_content: clamp_i64(tally.wrong_content),
    }
}

fn corrupt(what: &'static str, detail: impl Into<String>) -> IntakeError {
    IntakeError::Corrupt {
        what,
        detail: detail.into(),
    }
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Verifies `receipts` submitted by `node` (a heartbeat) or by viewers (`None`: each session's
/// own node is credited). Stored state is read, nothing is written.
pub(crate) async fn verify(
    state: &ReceiptIntake<'_>,
    node: Option<NodeId>,
    receipts: &[SignedReceipt],
    now_ms: i64,
) -> Result<Verified, IntakeError> {
    let mut by_session: BTreeMap<SessionId, Vec<SignedReceipt>> = BTreeMap::new();
    for receipt in receipts {
        by_session
            .entry(receipt.body.session_id)
            .or_default()
            .push(receipt.clone());
    }
    let mut out = Verified::default();
    let now = u64::try_from(now_ms).unwrap_or(0);
    // Read only when needed: almost every receipt arrives before its fixed deadline.
    let outages = if receipts
        .iter()
        .any(|receipt| past_fixed_deadline(state.config, receipt, now_ms))
    {
        let (_, outages) = state
            .liveness
            .outages(
                state.config,
                state.storage,
                state.clock,
                state.metrics,
                state.config.outage_gap(),
            )
            .await?;
        Some(outages)
    } else {
        None
    };
    for (session_id, mut batch) in by_session {
        batch.retain(|receipt| {
            match booking_epoch(state.config, outages.as_deref(), receipt, now_ms) {
                Ok(_) => true,
                Err(refusal) => {
                    let (code, reason) = match refusal {
                        TimingRefusal::Late(reason) => {
                            out.late += 1;
                            Metrics::inc(&state.metrics.receipts_late_total);
                            (ReceiptRejectionCode::Late, reason)
                        }
                        TimingRefusal::Future(reason) => {
                            out.future += 1;
                            Metrics::inc(&state.metrics.receipts_future_total);
                            (ReceiptRejectionCode::FromTheFuture, reason)
                        }
                    };
                    out.rejected.push(ReceiptRejected { code, reason });
                    false
                }
            }
        });
        if batch.is_empty() {
            continue;
        }
        batch.sort_by_key(|r| r.body.seq);
        let Some(session) = state.storage.get_session(&session_id.to_string()).await? else {
            if let Some(node) = node {
                let tally = out.tallies.entry(node.to_string()).or_default();
                for receipt in &batch {
                    tally.record(&Err(ReceiptRejection::UnknownSession {
                        session: receipt.body.session_id,
                    }));
                }
            }
            out.rejected.extend(batch.iter().map(|r| {
                ReceiptRejected::from(&ReceiptRejection::UnknownSession {
                    session: r.body.session_id,
                })
            }));
            continue;
        };
        let grant: SignedGrant = serde_json::from_str(&session.grant_json)
            .map_err(|e| corrupt("session grant", format!("{session_id}: {e}")))?;
        let credited_node = node.unwrap_or(grant.body.node_id);
        let stream_id = grant.body.stream_id.clone();
        let mut verifier = ReceiptVerifier::new(state.config.verifier.clone());
        let started = u64::try_from(session.issued_at_ms).unwrap_or(0);
        verifier
            .admit_grant(grant.body.clone(), started)
            .map_err(|e| corrupt("session grant", format!("{session_id}: {e}")))?;
        let previous = state.storage.latest_receipt(&session.session_id).await?;
        let previous_receipt: Option<SignedReceipt> = previous
            .as_ref()
            .map(|p| serde_json::from_str(&p.body))
            .transpose()
            .map_err(|e| corrupt("receipt", format!("{session_id}: {e}")))?;
        let mut content = OriginDigests::new();
        let wanted = batch
            .iter()
            .chain(previous_receipt.iter())
            .map(|r| (r.body.last_segment_seq, r.body.segments_digest));
        load_segments(state, &stream_id, wanted, &mut content).await?;
        if let Some(previous_receipt) = &previous_receipt {
            // Replaying the stored receipt restores the session's last accepted state.
            let replay = verifier.verify_batch(
                &grant.body.node_id,
                std::slice::from_ref(previous_receipt),
                &content,
                now,
            );
            if let Some(Err(rejection)) = replay.first() {
                tracing::warn!(session = %session_id, %rejection, "stored receipt no longer verifies");
            }
        }
        let outcomes = verifier.verify_batch(&credited_node, &batch, &content, now);
        let tally = out.tallies.entry(credited_node.to_string()).or_default();
        for outcome in &outcomes {
            tally.record(outcome);
        }
        for (receipt, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Ok(credit) => out.accepted.push(record(
                    state,
                    outages.as_deref(),
                    &session,
                    receipt,
                    credit.bytes,
                    credit.on_time,
                    now_ms,
                )?),
                Err(rejection) => out.rejected.push(ReceiptRejected::from(&rejection)),
            }
        }
    }
    Ok(out)
}

/// Loads the origin's digest for each `(sequence, digest the receipt claims)`. A segment has
/// the MPEG-TS chain's digest and, when the origin serves LL-HLS, the fMP4 chain's: a viewer
/// signs over the rendition it played, so the one a receipt claims is the one it is checked
/// against (the TS digest when it claims neither, which then fails as a content mismatch).
/// One session's receipts for the same segment name one rendition.
async fn load_segments(
    state: &ReceiptIntake<'_>,
    stream: &StreamId,
    wanted: impl Iterator<Item = (u64, ContentDigest)>,
    content: &mut OriginDigests,
) -> Result<(), IntakeError> {
    let mut claims: BTreeMap<u64, Vec<ContentDigest>> = BTreeMap::new();
    for (seq, claimed) in wanted {
        claims.entry(seq).or_default().push(claimed);
    }
    for (seq, claimed) in claims {
        let Ok(sequence) = i64::try_from(seq) else {
            continue;
        };
        if let Some(segment) = state.storage.get_segment(stream.as_str(), sequence).await? {
            let parse = |digest: &str| {
                digest
                    .parse::<ContentDigest>()
                    .map_err(|_| corrupt("segment digest", format!("{stream} #{sequence}")))
            };
            let mut digest = parse(&segment.digest)?;
            if !claimed.contains(&digest) {
                let renditions = state
                    .storage
                    .list_segments_ll(stream.as_str(), sequence, sequence)
                    .await?;
                if let Some((_, ll)) = renditions.first() {
                    let ll_digest = parse(&ll.digest)?;
                    if claimed.contains(&ll_digest) {
                        digest = ll_digest;
                    }
                }
            }
            content.insert(
                stream.clone(),
                seq,
                OriginSegment {
                    digest,
                    published_ms: u64::try_from(segment.published_ms).unwrap_or(0),
                },
            );
        }
    }
    Ok(())
}

fn record(
    state: &ReceiptIntake<'_>,
    outages: Option<&Outages>,
    session: &SessionRecord,
    receipt: &SignedReceipt,
    bytes: u64,
    on_time: bool,
    now_ms: i64,
) -> Result<ReceiptRecord, IntakeError> {
    let body = serde_json::to_string(receipt).map_err(|e| corrupt("receipt", e.to_string()))?;
    let bytes_delta = clamp_i64(bytes);
    Ok(ReceiptRecord {
        session_id: session.session_id.clone(),
        seq: clamp_i64(receipt.body.seq),
        node_id: session.node_id.clone(),
        stream_id: session.stream_id.clone(),
        bytes_total: clamp_i64(receipt.body.bytes_total),
        bytes_delta,
        on_time_bytes: if on_time { bytes_delta } else { 0 },
        last_segment_seq: clamp_i64(receipt.body.last_segment_seq),
        t_ms: clamp_i64(receipt.body.t_ms),
        // Booked to the epoch the viewer signed it in, not the one it arrived in (see the
        // module docs for a receipt in flight across the deadline).
        epoch: booking_epoch(state.config, outages, receipt, now_ms)
            .unwrap_or_else(|_| state.config.epoch_of(now_ms)),
        received_at_ms: now_ms,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use streamr_core::{ContentDigest, KeyPair, Signed, ViewerReceipt};

    fn signed_at(t_ms: u64) -> SignedReceipt {
        Signed::sign(
            ViewerReceipt {
                session_id: SessionId::from_bytes([1; 16]),
                seq: 1,
                bytes_total: 1,
                last_segment_seq: 0,
                segments_digest: ContentDigest::from_bytes([0; 32]),
                t_ms,
            },
            &KeyPair::from_seed([2; 32]),
        )
    }

    #[test]
    fn receipts_are_booked_where_signed_until_the_deadline() {
        let config = crate::CoordConfig {
            epoch_length: Duration::from_secs(10),
            settlement_grace: Duration::from_secs(3),
            max_clock_skew: Duration::from_secs(1),
            ..crate::CoordConfig::default()
        };
        // Signed in epoch 0 (0..10 s), due by 13 s.
        assert_eq!(
            booking_epoch(&config, None, &signed_at(9_000), 9_500),
            Ok(0)
        );
        assert_eq!(
            booking_epoch(&config, None, &signed_at(9_000), 13_000),
            Ok(0)
        );
        assert!(matches!(
            booking_epoch(&config, None, &signed_at(9_000), 13_001),
            Err(TimingRefusal::Late(_))
        ));
        // Past the deadline but signed within the clock skew: in flight, booked on arrival.
        let short = crate::CoordConfig {
            settlement_grace: Duration::ZERO,
            ..config.clone()
        };
        assert_eq!(
            booking_epoch(&short, None, &signed_at(9_990), 10_050),
            Ok(1)
        );
        assert!(matches!(
            booking_epoch(&short, None, &signed_at(8_000), 10_050),
            Err(TimingRefusal::Late(_))
        ));
        // The coordinator was down from 12 s (before the deadline) to 40 s: the epoch takes
        // what was held back until the outage grace after that, and is settled no sooner.
        let outages = Outages::new(vec![crate::storage::OutageRecord {
            started_ms: 12_000,
            ended_ms: 40_000,
        }]);
        let grace = config.outage_grace.as_millis() as i64;
        let held = signed_at(9_000);
        assert_eq!(
            booking_epoch(&config, Some(&outages), &held, 40_000 + grace),
            Ok(0)
        );
        assert!(matches!(
            booking_epoch(&config, Some(&outages), &held, 40_001 + grace),
            Err(TimingRefusal::Late(_))
        ));
        // From the future beyond the skew.
        assert_eq!(
            booking_epoch(&config, None, &signed_at(10_900), 10_000),
            Ok(1)
        );
        assert!(matches!(
            booking_epoch(&config, None, &signed_at(11_001), 10_000),
            Err(TimingRefusal::Future(_))
        ));
    }
}
