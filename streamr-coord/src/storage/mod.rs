//! Durable state of the coordinator behind one async [`Storage`] trait, with SQLite and
//! PostgreSQL backends that share their queries.

mod claim_runs;
mod records;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;

pub use claim_runs::{count_claim, ClaimRun, CountedClaim};
pub(crate) use records::to_wire;
pub use records::LlSegment;
pub use records::{
    ActivityDelta, AliveNote, BudgetCharge, BudgetRefusal, EvidenceRecord, FailureReportRecord,
    HeartbeatWrite, HeldProbeRecord, LedgerEntryRecord, NodeDownRecord, NodeEpochTraffic,
    NodePrefixRecord, NodeRecord, NodeSessionCounts, NodeSessionRecord, NodeUsage, OutageRecord,
    PartRecord, PartsStored, PayoutRecord, PendingGrantCount, ProbeRecord, ReachabilityRecord,
    ReceiptRecord, RelayAssignmentRecord, RelayReportRecord, RelayReports, SegmentRecord,
    SessionHeartbeatTotals, SessionRecord, SessionTotalsWrite, SessionUsageRow, SettlementRecord,
    SettlementWrite, StatsRow, StoredSessionTotals, StreamRecord, Totals,
};
pub use sql::{HeartbeatFlush, PostgresStorage, SqliteStorage};

use crate::error::StorageError;

/// The result of one storage call.
pub type StorageResult<T> = Result<T, StorageError>;

/// Everything the coordinator keeps. Each method is one transaction: it either happens
/// entirely or not at all.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// How many heartbeat batches may be committing at once: one where the database has a
    /// single writer (SQLite), more where batches can execute while another waits for its
    /// commit to be flushed (PostgreSQL). Batches that commit together never share a node.
    fn heartbeat_commits_in_flight(&self) -> usize {
        1
    }

    /// Checks that the database answers.
    async fn ping(&self) -> StorageResult<()>;

    /// Stores a new stream.
    async fn create_stream(&self, stream: &StreamRecord) -> StorageResult<()>;
    /// All streams, newest first, at most `limit`.
    async fn list_streams(&self, limit: i64) -> StorageResult<Vec<StreamRecord>>;
    /// One stream by id.
    async fn get_stream(&self, id: &str) -> StorageResult<Option<StreamRecord>>;
    /// Marks a stream ended and forgets its part reports; returns the updated stream, or
    /// `None` if it does not exist.
    async fn end_stream(&self, id: &str, now_ms: i64) -> StorageResult<Option<StreamRecord>>;
    /// Makes `node_id` the stream's origin unless one is bound already (atomically), and
    /// returns the origin bound afterwards (`None` when the stream does not exist).
    async fn bind_origin(&self, id: &str, node_id: &str) -> StorageResult<Option<String>>;
    /// The operator key (hex) the operator name `name` is bound to, if any. `name` is an
    /// operator name in its canonical form (`streamr_core::canonical_operator_name`), the only
    /// form names are bound in.
    async fn operator_binding(&self, name: &str) -> StorageResult<Option<String>>;
    /// Moves the binding of the operator name `name` from `old_key` to `new_key` (hex) as
    /// rotation `sequence`, atomically and only if the name is bound to `old_key` now and no
    /// rotation of the name with this sequence or a later one was accepted before (so of two
    /// replicas accepting rotations at once, one wins, and a replayed statement changes
    /// nothing); records the rotation. Whether it moved.
    async fn rotate_operator(
        &self,
        name: &str,
        old_key: &str,
        new_key: &str,
        sequence: i64,
        now_ms: i64,
    ) -> StorageResult<bool>;
    /// The sequence of the last rotation accepted for the operator name `name` (0 for none).
    async fn last_operator_rotation(&self, name: &str) -> StorageResult<i64>;
    /// The sequence of the last rotation that retired `operator_key` (hex) from the operator
    /// name `name`, if one did.
    async fn operator_key_retired(
        &self,
        name: &str,
        operator_key: &str,
    ) -> StorageResult<Option<i64>>;
    /// Removes the binding of the operator name `name` (an administrator's act: the next key
    /// that proves a node under it binds it); its rotations stay recorded. Whether it was
    /// bound.
    async fn unbind_operator(&self, name: &str) -> StorageResult<bool>;
    /// Every bound operator name (canonical) with its operator key (hex), by name.
    async fn operator_bindings(&self) -> StorageResult<Vec<(String, String)>>;
    /// Binds the operator name `name` to `operator_key` (hex) unless it is bound already
    /// (atomically: of two registrations binding it at once, one wins), and returns the key it
    /// is bound to afterwards.
    async fn bind_operator(
        &self,
        name: &str,
        operator_key: &str,
        now_ms: i64,
    ) -> StorageResult<String>;
    /// Sets (or, with `None`, clears) the stream's origin node whatever was bound before, and
    /// returns the updated stream (`None` when it does not exist). An operator's re-binding,
    /// for example after the origin's key changed.
    async fn set_origin(
        &self,
        id: &str,
        node_id: Option<&str>,
    ) -> StorageResult<Option<StreamRecord>>;
    /// Replaces the stream's key hash (a rotated stream key) and returns the updated stream
    /// (`None` when it does not exist).
    async fn set_stream_key_hash(
        &self,
        id: &str,
        stream_key_hash: &str,
    ) -> StorageResult<Option<StreamRecord>>;
    /// Stores a segment hash. Reporting the same hash twice is a no-op (returns `false`);
    /// reporting another hash for a stored sequence number is [`StorageError::ConflictingSegment`].
    async fn insert_segment(&self, segment: &SegmentRecord) -> StorageResult<bool>;
    /// One segment of a stream.
    async fn get_segment(
        &self,
        stream_id: &str,
        sequence: i64,
    ) -> StorageResult<Option<SegmentRecord>>;
    /// The latest segments of a stream, newest first, at most `limit`.
    async fn list_segments(&self, stream_id: &str, limit: i64)
        -> StorageResult<Vec<SegmentRecord>>;
    /// Stores the LL-HLS rendition of stored segment `sequence`. Storing it again is a no-op
    /// (returns `false`); the first report of a sequence number wins, as its TS hash does.
    async fn insert_segment_ll(
        &self,
        stream_id: &str,
        sequence: i64,
        ll: &LlSegment,
    ) -> StorageResult<bool>;
    /// The LL-HLS renditions stored for segments `from..=to` of a stream, by sequence number.
    async fn list_segments_ll(
        &self,
        stream_id: &str,
        from: i64,
        to: i64,
    ) -> StorageResult<Vec<(i64, LlSegment)>>;

    /// Stores the parts of one part report in one transaction, then forgets the stream's parts
    /// reported before `forget_before_ms` (they are only looked up while live). A part whose
    /// place (stream, run, msn, index) is stored with another hash stores nothing of the batch
    /// ([`PartsStored::Conflict`]); the same hash again is a no-op. With `signed`, the signed
    /// report as the origin sent it (JSON) is stored in the same transaction under the
    /// stream's next report number when any part was new (see
    /// [`Storage::part_reports_after`]).
    async fn insert_parts(
        &self,
        parts: &[PartRecord],
        signed: Option<&str>,
        forget_before_ms: i64,
    ) -> StorageResult<PartsStored>;
    /// The newest part of `stream_id` whose bytes hash to `hash` (hex).
    async fn find_part(&self, stream_id: &str, hash: &str) -> StorageResult<Option<PartRecord>>;
    /// The signed part reports of `stream_id` numbered above `after`, at most `limit` of the
    /// newest, oldest first, as `(number, report JSON)`. Numbers start at 1 and rise by one per
    /// stored report of the stream.
    async fn part_reports_after(
        &self,
        stream_id: &str,
        after: i64,
        limit: i64,
    ) -> StorageResult<Vec<(i64, String)>>;

    /// Registers a node or, if its key is known, updates its addresses and reactivates it.
    async fn upsert_node(&self, node: &NodeRecord) -> StorageResult<()>;
    /// One node by id (its hex public key).
    async fn get_node(&self, id: &str) -> StorageResult<Option<NodeRecord>>;
    /// All nodes, active or not.
    async fn list_nodes(&self) -> StorageResult<Vec<NodeRecord>>;
    /// Marks a node inactive; returns `false` if it does not exist.
    async fn deregister_node(&self, id: &str) -> StorageResult<bool>;
    /// Records a verified heartbeat: raises the node's `last_nonce` (a nonce not above it is
    /// [`StorageError::ReplayedNonce`] and nothing is written), updates its status and stores
    /// the receipts it carried. Returns how many receipts were new.
    async fn record_heartbeat(&self, heartbeat: &HeartbeatWrite) -> StorageResult<u64> {
        let mut outcomes = self
            .record_heartbeats(std::slice::from_ref(heartbeat))
            .await?;
        outcomes.pop().unwrap_or(Ok(0))
    }
    /// Stores a newly opened node session, and forgets every session that expired before
    /// `forget_before_ms`.
    async fn insert_node_session(
        &self,
        session: &NodeSessionRecord,
        forget_before_ms: i64,
    ) -> StorageResult<()>;
    /// A node session by id, expired or not (the caller checks the expiry).
    async fn get_node_session(&self, id: &str) -> StorageResult<Option<NodeSessionRecord>>;
    /// A node session's stored heartbeat totals, with its node, if the session exists and its
    /// node is registered and active.
    async fn session_totals(
        &self,
        session_id: &str,
    ) -> StorageResult<Option<(String, StoredSessionTotals)>>;
    /// Writes a round of session heartbeats (at most one row per session) in one statement:
    /// each row whose nonce is above its session's stored one, whose totals are not below the
    /// stored ones and whose node is active raises the stored totals, adds the difference to
    /// its node's activity in the row's epoch, and updates the node's liveness (if its nonce
    /// is the node's newest). Returns the sessions whose rows were stored.
    async fn record_session_totals(
        &self,
        rows: &[SessionTotalsWrite],
    ) -> StorageResult<std::collections::HashSet<String>>;
    /// Records several heartbeats in one transaction (one commit, at most one flush: see
    /// [`HeartbeatFlush`]). Each gets its own outcome: a replayed or unknown-node heartbeat
    /// writes nothing and does not affect the others. The outer error means nothing was
    /// written.
    async fn record_heartbeats(
        &self,
        heartbeats: &[HeartbeatWrite],
    ) -> StorageResult<Vec<StorageResult<u64>>>;

    /// Stores an issued session grant.
    async fn create_session(&self, session: &SessionRecord) -> StorageResult<()>;
    /// One session by id.
    async fn get_session(&self, session_id: &str) -> StorageResult<Option<SessionRecord>>;
    /// The session's accepted receipt with the highest sequence number.
    async fn latest_receipt(&self, session_id: &str) -> StorageResult<Option<ReceiptRecord>>;
    /// Stores verified receipts and adds `activity` to the nodes' epoch activity, in one
    /// transaction; a receipt whose (session, seq) is stored already is ignored. Returns how
    /// many receipts were new.
    async fn insert_receipts(
        &self,
        receipts: &[ReceiptRecord],
        activity: &[ActivityDelta],
    ) -> StorageResult<u64>;
    /// Stores verified receipts that viewers posted themselves and adds `outcomes` (receipt
    /// outcomes only) to the viewer-posted tallies of the nodes they credit, in one
    /// transaction; a receipt whose (session, seq) is stored already is ignored. Returns how
    /// many receipts were new.
    async fn insert_viewer_receipts(
        &self,
        receipts: &[ReceiptRecord],
        outcomes: &[ActivityDelta],
    ) -> StorageResult<u64>;
    /// Every node's tallies of receipts viewers posted themselves in an epoch (claims and
    /// heartbeats are 0).
    async fn viewer_posted_for_epoch(&self, epoch: i64) -> StorageResult<Vec<ActivityDelta>>;
    /// Every node's activity in an epoch.
    async fn activity_for_epoch(&self, epoch: i64) -> StorageResult<Vec<ActivityDelta>>;
    /// Every session's verified usage in an epoch.
    async fn session_usage_for_epoch(&self, epoch: i64) -> StorageResult<Vec<SessionUsageRow>>;
    /// Fraud evidence of epochs in `[from_epoch, to_epoch)`.
    async fn evidence_between(
        &self,
        from_epoch: i64,
        to_epoch: i64,
    ) -> StorageResult<Vec<EvidenceRecord>>;
    /// Every receipt of an epoch.
    async fn receipts_for_epoch(&self, epoch: i64) -> StorageResult<Vec<ReceiptRecord>>;
    /// Epochs before `before_epoch` that have receipts but no settlement, oldest first.
    async fn unsettled_epochs(&self, before_epoch: i64) -> StorageResult<Vec<i64>>;

    /// Stores a probe result.
    async fn insert_probe(&self, probe: &ProbeRecord) -> StorageResult<()>;
    /// Every probe result of an epoch.
    async fn probes_for_epoch(&self, epoch: i64) -> StorageResult<Vec<ProbeRecord>>;
    /// Adds `bytes` to the probe traffic no receipt acknowledged that `node_id` served in
    /// `epoch` (booked to the first open epoch when `epoch` is closed).
    async fn add_probe_traffic(&self, node_id: &str, epoch: i64, bytes: i64) -> StorageResult<()>;
    /// Every node's unacknowledged probe traffic in an epoch: (node, bytes).
    async fn probe_traffic_for_epoch(&self, epoch: i64) -> StorageResult<Vec<(String, i64)>>;

    /// Stores a held probe (unleased) and forgets those held before `forget_before_ms` (their
    /// node stopped being probed: deregistered or inactive).
    async fn hold_probe(&self, probe: &HeldProbeRecord, forget_before_ms: i64)
        -> StorageResult<()>;
    /// Takes the lease of `node_id`'s oldest held probe that no replica works on at `now_ms`,
    /// until `lease_until_ms`: `Ok(Some)` with it, `Ok(None)` when there is none free. Two
    /// replicas never both get one probe while its lease lasts.
    async fn claim_held_probe(
        &self,
        node_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StorageResult<Option<HeldProbeRecord>>;
    /// Whether `node_id` has a held probe, leased or not.
    async fn has_held_probe(&self, node_id: &str) -> StorageResult<bool>;
    /// The nodes that have a held probe, leased or not.
    async fn held_probe_nodes(&self) -> StorageResult<Vec<String>>;
    /// Stores a held probe's new state and gives its lease up, if the lease taken as
    /// `lease_until_ms` is still the caller's; returns whether it was.
    async fn release_held_probe(
        &self,
        probe_id: &str,
        lease_until_ms: i64,
        state_json: &str,
    ) -> StorageResult<bool>;
    /// Deletes a held probe once judged (or dropped), if the lease taken as `lease_until_ms` is
    /// still the caller's; returns whether it was (only then may its verdict be recorded).
    async fn finish_held_probe(&self, probe_id: &str, lease_until_ms: i64) -> StorageResult<bool>;

    /// Each node's verified delivery to viewers in an epoch (the coordinator's probe sessions
    /// left out).
    async fn usage_for_epoch(&self, epoch: i64) -> StorageResult<Vec<NodeUsage>>;
    /// The earliest epoch with any receipt or probe.
    async fn first_activity_epoch(&self) -> StorageResult<Option<i64>>;

    /// Closes every epoch up to `epoch` to new bookings, before settlement reads its inputs:
    /// returns once every write that could still book a receipt, activity or probe result to
    /// those epochs has committed, and a write that comes later books it to the first open epoch
    /// instead (receipts and activity are never left out of every settlement, whatever their
    /// write waited for). Closing an epoch again, or one before the newest closed, changes
    /// nothing.
    async fn close_epochs_through(&self, epoch: i64) -> StorageResult<()>;
    /// The newest epoch closed to new bookings ([`Storage::close_epochs_through`]).
    async fn closed_through(&self) -> StorageResult<Option<i64>>;

    /// Writes an epoch's settlement, its ledger entries, fraud evidence and planned payouts in
    /// one transaction, under a lease so that concurrent replicas settle each epoch once.
    /// Returns `false` (writing nothing) if the epoch is settled already or the last settled
    /// epoch is not `write.follows`.
    async fn settle_epoch(&self, write: &SettlementWrite) -> StorageResult<bool>;
    /// The newest settled epoch.
    async fn last_settled_epoch(&self) -> StorageResult<Option<i64>>;
    /// The settlement of an epoch.
    async fn get_settlement(&self, epoch: i64) -> StorageResult<Option<SettlementRecord>>;
    /// Settlements in epoch order from `from_epoch` on, at most `limit`.
    async fn settlements_from(
        &self,
        from_epoch: i64,
        limit: i64,
    ) -> StorageResult<Vec<SettlementRecord>>;
    /// Settlements, newest first, at most `limit`.
    async fn list_settlements(&self, limit: i64) -> StorageResult<Vec<SettlementRecord>>;
    /// The ledger entries of an epoch in ledger order.
    async fn ledger_for_epoch(&self, epoch: i64) -> StorageResult<Vec<LedgerEntryRecord>>;
    /// The ledger entries touching a node's accounts, in ledger order.
    async fn ledger_for_node(&self, node_id: &str) -> StorageResult<Vec<LedgerEntryRecord>>;
    /// Number of ledger entries.
    async fn ledger_len(&self) -> StorageResult<i64>;
    /// Fraud evidence of an epoch.
    async fn evidence_for_epoch(&self, epoch: i64) -> StorageResult<Vec<EvidenceRecord>>;

    /// Payouts planned at an epoch's settlement.
    async fn payouts_for_epoch(&self, epoch: i64) -> StorageResult<Vec<PayoutRecord>>;
    /// Payouts still waiting for the payout sink, oldest first.
    async fn pending_payouts(&self, limit: i64) -> StorageResult<Vec<PayoutRecord>>;
    /// Payouts of a node, newest first.
    async fn payouts_for_node(&self, node_id: &str) -> StorageResult<Vec<PayoutRecord>>;
    /// Marks a payout as sent with the sink's reference; returns `false` if it was not pending.
    async fn mark_payout_sent(
        &self,
        node_id: &str,
        cumulative_net: i64,
        reference: &str,
        now_ms: i64,
    ) -> StorageResult<bool>;

    /// Aggregates receipts received in `[from_ms, to_ms)` into per-minute rows per stream
    /// and per node (recomputing rows that exist).
    async fn aggregate_minute_stats(&self, from_ms: i64, to_ms: i64) -> StorageResult<()>;
    /// Per-minute rows of one subject (`"stream"` or `"node"`), newest first.
    async fn minute_stats(
        &self,
        subject_kind: &str,
        subject_id: &str,
        limit: i64,
    ) -> StorageResult<Vec<StatsRow>>;
    /// Counts across the whole coordinator.
    async fn totals(&self) -> StorageResult<Totals>;

    /// Spends every charge of one play request against the epoch's grant budgets, in one
    /// transaction: all of them, or (returning the first charge that would exceed its limit)
    /// none.
    async fn spend_grant_budget(
        &self,
        epoch: i64,
        charges: &[BudgetCharge],
    ) -> StorageResult<Option<BudgetRefusal>>;
    /// Per node, the distinct sessions with a receipt received since `proven_since_ms` and
    /// since `live_since_ms`.
    async fn session_counts_since(
        &self,
        proven_since_ms: i64,
        live_since_ms: i64,
    ) -> StorageResult<Vec<NodeSessionCounts>>;
    /// Grants issued since `since_ms` that have no receipt yet, per node and viewer prefix.
    async fn pending_grants_since(&self, since_ms: i64) -> StorageResult<Vec<PendingGrantCount>>;
    /// Notes a heartbeat of `node_id` from `prefix` at `now_ms`.
    async fn record_node_prefix(
        &self,
        node_id: &str,
        prefix: &str,
        now_ms: i64,
    ) -> StorageResult<()>;
    /// The prefixes nodes' heartbeats came from, most recent first.
    async fn node_prefixes(&self) -> StorageResult<Vec<NodePrefixRecord>>;
    /// Notes that a coordinator process is up, at the time `clock` reads once the note holds
    /// the liveness record (after waiting for a connection and for other processes' notes, so
    /// a note that waited through an outage is timed after it, not before). When no process
    /// noted itself up in the `outage_gap_ms` before (and one ever did), records that stretch
    /// as an outage, in the same transaction. Returns the note's time, that outage, if any,
    /// and the outages on record that ended at or after `since_ms`, oldest first.
    async fn note_alive(
        &self,
        clock: &dyn streamr_core::Clock,
        outage_gap_ms: i64,
        since_ms: i64,
    ) -> StorageResult<AliveNote>;
    /// The grant log of a time window: every session (viewers' and probes') whose grant was
    /// live at some time in `[from_ms, to_ms)`, oldest first. What settlement bounds
    /// unattested bytes by (bitrate × each grant's live time in the epoch).
    async fn sessions_live_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> StorageResult<Vec<SessionRecord>>;
    /// The nodes `viewer` (hex key) was granted a session on since `since_ms`.
    async fn nodes_granted_to_viewer(
        &self,
        viewer: &str,
        since_ms: i64,
    ) -> StorageResult<Vec<String>>;
    /// Claims session `session_id` for a free re-route at `now_ms`: if it is still live, was
    /// never claimed and came from fewer than `max_reroutes` free re-routes, it is marked
    /// claimed and ended (its expiry set to `now_ms`) in one statement, so one request on any
    /// replica wins; returns how many free re-routes led to it. `None` when it cannot be
    /// claimed.
    async fn claim_reroute(
        &self,
        session_id: &str,
        now_ms: i64,
        max_reroutes: i64,
    ) -> StorageResult<Option<i64>>;
    /// Notes that session `session_id` was granted by free re-route number `reroutes` of its
    /// chain.
    async fn set_session_reroutes(&self, session_id: &str, reroutes: i64) -> StorageResult<()>;
    /// Per node, the receipt-verified bytes of an epoch, viewers' and probes' apart.
    async fn traffic_for_epoch(&self, epoch: i64) -> StorageResult<Vec<NodeEpochTraffic>>;

    /// Stores the outcome of a connect-back check, replacing the node's previous one.
    async fn record_reachability(&self, record: &ReachabilityRecord) -> StorageResult<()>;
    /// The last connect-back check of every node checked so far.
    async fn reachability(&self) -> StorageResult<Vec<ReachabilityRecord>>;
    /// Records, in one transaction, that `viewer` (hex key) failed to play from each of
    /// `nodes` at `now_ms` (one report per node and viewer: the newest), and forgets every
    /// report older than `forget_before_ms`.
    async fn record_failure_reports(
        &self,
        viewer: &str,
        nodes: &[String],
        now_ms: i64,
        forget_before_ms: i64,
    ) -> StorageResult<()>;
    /// What routing knows of failing nodes: the reports made since `since_ms` and the nodes
    /// found down.
    async fn route_state(
        &self,
        since_ms: i64,
    ) -> StorageResult<(Vec<FailureReportRecord>, Vec<NodeDownRecord>)>;
    /// The newest session granted to `viewer` (hex key) on `node_id` for `stream_id` that
    /// was issued at or after `issued_since_ms`: a relay's grant on its parent, reused while
    /// it is fresh instead of issuing one at every ask.
    async fn latest_session_of(
        &self,
        viewer: &str,
        node_id: &str,
        stream_id: &str,
        issued_since_ms: i64,
    ) -> StorageResult<Option<SessionRecord>>;
    /// The stream's relay tree as stored: every relay's parent, by relay id.
    async fn relay_tree(&self, stream_id: &str) -> StorageResult<Vec<RelayAssignmentRecord>>;
    /// `node_id`'s row in the stream's relay tree, then its parent's, and so on up to a row
    /// whose parent has none (the origin's children), at most `max_rows`: one indexed lookup
    /// per tier (a recursive query), however many relays the tree holds.
    async fn relay_chain(
        &self,
        stream_id: &str,
        node_id: &str,
        max_rows: i64,
    ) -> StorageResult<Vec<RelayAssignmentRecord>>;
    /// The rows of `parent_id`'s children in the stream's relay tree, oldest assignment first
    /// (then by id), from the index by parent.
    async fn relay_children(
        &self,
        stream_id: &str,
        parent_id: &str,
    ) -> StorageResult<Vec<RelayAssignmentRecord>>;
    /// The stream's relay failure reports made since `since_ms`.
    async fn relay_reports_since(
        &self,
        stream_id: &str,
        since_ms: i64,
    ) -> StorageResult<Vec<RelayReportRecord>>;
    /// Under a per-stream lock (a PostgreSQL advisory lock; SQLite's single writer): forgets
    /// the stream's reports older than `reports.since_ms`, stores `reports` (the asking relay's
    /// report of each failed node at `now_ms`, unless it reported that node since), reads the stream's relay tree and its
    /// remaining reports, lets `choose` move relays (`(node, new parent)` pairs, stored at
    /// `now_ms` in the same transaction: the children of a dead relay re-parented in one
    /// decision; a move to [`streamr_core::tree::FORGOTTEN`] deletes the relay's row) and
    /// returns the tree afterwards. Replicas choosing at once take turns, so
    /// fan-out bounds hold across them.
    async fn assign_relay_parents(
        &self,
        stream_id: &str,
        now_ms: i64,
        reports: &RelayReports,
        choose: &(dyn for<'t> Fn(
            &'t [RelayAssignmentRecord],
            &'t [RelayReportRecord],
        ) -> Vec<(String, String)>
              + Send
              + Sync),
    ) -> StorageResult<Vec<RelayAssignmentRecord>>;
    /// Accepts `timestamp_ms` as `node_id`'s newest upstream request for `stream_id` when it
    /// is after the newest accepted one (or the first): one conditional upsert, so of two
    /// replicas accepting the same time at once exactly one succeeds. `false`: a replay.
    async fn accept_upstream_request(
        &self,
        node_id: &str,
        stream_id: &str,
        timestamp_ms: i64,
    ) -> StorageResult<bool>;
    /// Forgets the upstream request times older than `before_ms` (requests that old fail the
    /// clock-skew check anyway); returns how many.
    async fn forget_upstream_requests(&self, before_ms: i64) -> StorageResult<u64>;
    /// Marks nodes down (a node marked already keeps its mark) and lifts the marks of nodes
    /// that sent a heartbeat newer than the one they were marked at, in one transaction.
    async fn update_route_down(
        &self,
        mark: &[NodeDownRecord],
        lift: &[NodeDownRecord],
    ) -> StorageResult<()>;
}

/// Opens the backend a database URL names: `sqlite://path` (created if missing, WAL,
/// `synchronous=FULL` unless the URL adds `?synchronous=normal`) or `postgres://...`.
/// On either, `?heartbeat_flush=always` makes every heartbeat wait for its flush to disk
/// (by default only those carrying receipts do: [`HeartbeatFlush`]).
/// Migrations run before this returns.
pub async fn connect(url: &str) -> StorageResult<Arc<dyn Storage>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStorage::open(url).await?))
    } else {
        Err(StorageError::UnsupportedUrl {
            url: url.to_owned(),
        })
    }
}
