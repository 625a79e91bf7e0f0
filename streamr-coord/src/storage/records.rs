//! Rows as the storage layer reads and writes them. Times are Unix milliseconds; amounts are
//! integer micro-units.

use serde::{Deserialize, Serialize};

/// A registered stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StreamRecord {
    /// Stream id (random, URL-safe).
    pub id: String,
    /// Human-readable title.
    pub title: String,
    /// BLAKE3 hash (hex) of the stream key; the key itself is never stored.
    #[serde(skip)]
    pub stream_key_hash: String,
    /// `live` or `ended`.
    pub status: String,
    /// When it was registered.
    pub created_at_ms: i64,
    /// When it ended, if it has.
    pub ended_at_ms: Option<i64>,
    /// The node (hex id) allowed to act as the stream's origin and sign its segment reports;
    /// `None` until set at creation or bound by the first signed publish check.
    #[serde(default)]
    pub origin_node: Option<String>,
}

/// A media segment hash reported by the origin, with the running digest up to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SegmentRecord {
    /// The stream.
    pub stream_id: String,
    /// Segment sequence number.
    pub sequence: i64,
    /// Hex hash of the segment bytes.
    pub hash: String,
    /// Hex running digest over the hashes of every segment up to this one.
    pub digest: String,
    /// When the origin published it.
    pub published_ms: i64,
    /// When the origin reported it.
    pub reported_at_ms: i64,
    /// The origin's run the segment was cut in, 16 hex digits, when its report names one (see
    /// `streamr_core::OriginSegmentReport::run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The LL-HLS (fMP4) rendition of this segment, when the origin serves it. Receipts over
    /// LL-HLS bind its `digest`; MPEG-TS receipts bind `digest` above.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll: Option<LlSegment>,
}

/// The fMP4 segment cut at the same frames as a [`SegmentRecord`]'s MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlSegment {
    /// Hex BLAKE3 hash of the fMP4 segment bytes (its parts, concatenated in order).
    pub hash: String,
    /// Hex running digest over the fMP4 hashes: chained like [`SegmentRecord::digest`], from
    /// the previous segment's LL digest (all zeros when it has none).
    pub digest: String,
    /// Hex BLAKE3 hash of each partial segment, in order.
    pub part_hashes: Vec<String>,
    /// Size of the fMP4 segment in bytes.
    pub len: i64,
}

/// An LL-HLS partial segment the origin reported as it cut it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PartRecord {
    /// The stream.
    pub stream_id: String,
    /// The origin's numbering run, 16 hex digits.
    pub run: String,
    /// Media sequence number of its segment in the origin's LL-HLS playlist.
    pub msn: i64,
    /// Its index in the segment.
    pub part_index: i64,
    /// Hex BLAKE3 hash of the part bytes.
    pub hash: String,
    /// Size in bytes.
    pub len: i64,
    /// When the origin cut it (the origin's clock).
    pub cut_ms: i64,
    /// When the coordinator stored it.
    pub reported_at_ms: i64,
}

/// What became of a batch of part reports (stored together or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartsStored {
    /// Stored; `created` of them were new (the others were stored with the same hash before).
    Stored {
        /// New rows.
        created: u64,
    },
    /// A place was stored with another hash: nothing of the batch is stored.
    Conflict {
        /// The media sequence number of the conflicting part.
        msn: i64,
        /// Its index.
        part_index: i64,
    },
}

/// A friend node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodeRecord {
    /// Node id: its ed25519 public key in hex.
    pub id: String,
    /// Where rewards are paid.
    pub payout_address: String,
    /// The operator name it registered with (shown; rewards are capped per operator only where
    /// it proved membership, see `operator_key`).
    pub operator: String,
    /// The operator key (hex) whose signature proved the node a member of `operator` at its
    /// registration, the key that name is bound to; `None`: it proved none, so it is its own
    /// operator for the operator cap and the collusion rule.
    #[serde(default)]
    #[sqlx(default)]
    pub operator_key: Option<String>,
    /// Its /24 as `a.b.c` (rewards are capped per /24).
    pub subnet: String,
    /// Base RTMP URL viewers play from, e.g. `rtmp://host:1935/live`.
    pub rtmp_url: String,
    /// Base HTTP URL for HTTP-FLV and HLS, e.g. `http://host:8080`.
    pub http_url: String,
    /// When it first registered.
    pub registered_at_ms: i64,
    /// Whether it takes part in routing and rewards.
    pub active: bool,
    /// Upload capacity it announced, in kbit/s.
    pub capacity_kbps: i64,
    /// The highest heartbeat nonce accepted (-1 before the first heartbeat).
    pub last_nonce: i64,
    /// The signed timestamp of its last accepted heartbeat.
    pub last_heartbeat_ms: Option<i64>,
    /// `registered`, `online` or `deregistered`.
    pub status: String,
    /// Viewers connected at its last heartbeat.
    pub viewers: i64,
    /// Bytes it claimed to serve in the interval before its last heartbeat.
    pub bytes_served: i64,
    /// JSON array of the stream ids it relays.
    pub streams_json: String,
    /// JSON array of `[stream, upstream node]` pairs: where its last heartbeat says it pulls
    /// each relayed stream from (`[]` when it said nothing).
    #[serde(default = "empty_json_array")]
    #[sqlx(default)]
    pub upstreams_json: String,
}

fn empty_json_array() -> String {
    "[]".into()
}

/// A session grant issued to a viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SessionRecord {
    /// Session id (hex).
    pub session_id: String,
    /// The stream.
    pub stream_id: String,
    /// The node that serves it.
    pub node_id: String,
    /// The viewer's public key (hex).
    pub viewer: String,
    /// Most bytes receipts may acknowledge.
    pub max_bytes: i64,
    /// End of the grant.
    pub expiry_ms: i64,
    /// When it was issued.
    pub issued_at_ms: i64,
    /// The signed grant as JSON.
    pub grant_json: String,
    /// The prefix the viewer asked from: its IPv4 /24 (`a.b.c.0/24`) or IPv6 /48
    /// (`2001:db8:1::/48`); empty when unknown.
    pub viewer_subnet: String,
    /// The viewer's IPv6 /64 (`2001:db8:1:2::/64`); empty for IPv4 or when unknown.
    #[serde(default)]
    #[sqlx(default)]
    pub viewer_prefix64: String,
    /// Opened by the coordinator's own probe: booked like a viewer's session, never paid.
    #[serde(default)]
    #[sqlx(default)]
    pub probe: bool,
}

/// A verified viewer receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReceiptRecord {
    /// The session (hex).
    pub session_id: String,
    /// Receipt sequence number within the session.
    pub seq: i64,
    /// The node that delivered.
    pub node_id: String,
    /// The stream delivered.
    pub stream_id: String,
    /// Cumulative bytes the viewer acknowledges in the session.
    pub bytes_total: i64,
    /// Bytes added since the session's previous accepted receipt.
    pub bytes_delta: i64,
    /// Of which acknowledged on time.
    pub on_time_bytes: i64,
    /// The newest segment acknowledged.
    pub last_segment_seq: i64,
    /// When the viewer signed it.
    pub t_ms: i64,
    /// The epoch it counts towards.
    pub epoch: i64,
    /// When the coordinator stored it.
    pub received_at_ms: i64,
    /// The signed receipt as JSON, kept as evidence.
    pub body: String,
}

/// Everything a verified heartbeat changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatWrite {
    /// The node.
    pub node_id: String,
    /// Its nonce; accepted only above the stored `last_nonce`.
    pub nonce: i64,
    /// The signed timestamp.
    pub timestamp_ms: i64,
    /// JSON array of relayed stream ids.
    pub streams_json: String,
    /// JSON array of `[stream, upstream node]` pairs (see [`NodeRecord::upstreams_json`]).
    pub upstreams_json: String,
    /// Viewers connected.
    pub viewers: i64,
    /// Bytes claimed since the previous heartbeat.
    pub bytes_served: i64,
    /// The run's claim totals, when the heartbeat carries them: then the activity's
    /// `claimed_bytes` and `unattested_bytes` are replaced, in the transaction that claims the
    /// nonce, by the part of these totals not counted before ([`super::count_claim`]).
    pub claim_totals: Option<super::ClaimRun>,
    /// Verified receipts carried by the heartbeat.
    pub receipts: Vec<ReceiptRecord>,
    /// What the heartbeat adds to the node's epoch activity.
    pub activity: ActivityDelta,
}

/// A session's state as stored: the newest nonce and totals a batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredSessionTotals {
    /// Newest stored nonce (`-1` before the first).
    pub nonce: i64,
    /// Stored running total of bytes served to viewers that sign receipts.
    pub bytes_total: i64,
    /// Stored running total of unattested bytes.
    pub unattested_total: i64,
}

/// One session heartbeat, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeartbeatTotals {
    /// The node.
    pub node_id: String,
    /// Its nonce.
    pub nonce: i64,
    /// The signed timestamp.
    pub timestamp_ms: i64,
    /// JSON array of relayed stream ids.
    pub streams_json: String,
    /// JSON array of `[stream, upstream node]` pairs.
    pub upstreams_json: String,
    /// Viewers connected.
    pub viewers: i64,
    /// Running total of attested bytes in this session.
    pub bytes_total: i64,
    /// Running total of unattested bytes in this session.
    pub unattested_total: i64,
    /// The epoch the coordinator received it in.
    pub epoch: i64,
}

/// A row for the writer: a session's newest heartbeat in one epoch, with how many heartbeats
/// it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTotalsWrite {
    /// The session.
    pub session_id: String,
    /// The newest heartbeat.
    pub heartbeat: SessionHeartbeatTotals,
    /// Heartbeats of the session this process accepted in that epoch since the last batch.
    pub heartbeats: i64,
}

/// Additions to one node's activity in one epoch (claims and receipt outcomes), summed by
/// storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ActivityDelta {
    /// The node.
    pub node_id: String,
    /// The epoch.
    pub epoch: i64,
    /// Heartbeats.
    pub heartbeats: i64,
    /// Bytes the node claimed to serve to viewers that sign receipts.
    pub claimed_bytes: i64,
    /// Bytes the node claimed to serve to viewers that sent no receipt (discounted and capped
    /// by probe capacity at settlement, never held against receipts).
    pub unattested_bytes: i64,
    /// Receipts submitted for it.
    pub submitted: i64,
    /// Accepted.
    pub accepted: i64,
    /// Forged (bad signature, unknown session, another node's session).
    pub forged: i64,
    /// Replayed or not monotonic.
    pub replayed: i64,
    /// Beyond the grant.
    pub beyond_grant: i64,
    /// Wrong, stale or unknown content.
    pub wrong_content: i64,
}

/// A session's verified usage in one epoch, summed from its receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SessionUsageRow {
    /// The session.
    pub session_id: String,
    /// The serving node.
    pub node_id: String,
    /// The viewer (hex key).
    pub viewer: String,
    /// The viewer's IPv4 /24 or IPv6 /48.
    pub viewer_subnet: String,
    /// The stream.
    pub stream_id: String,
    /// Bytes credited in the epoch.
    pub bytes: i64,
    /// Of which on time.
    pub on_time_bytes: i64,
    /// The newest receipt's cumulative bytes.
    pub bytes_total: i64,
    /// The session's cumulative bytes at the end of the previous epochs (0 if none).
    pub previous_total: i64,
    /// The signing time of the session's newest receipt booked in a previous epoch (its grant
    /// time if none): where the span the epoch's bytes cover begins.
    #[serde(default)]
    #[sqlx(default)]
    pub covers_from_ms: Option<i64>,
    /// When the session was granted.
    pub started_ms: i64,
    /// The newest receipt's time.
    pub last_receipt_ms: i64,
    /// A session of the coordinator's own probe: never paid.
    #[serde(default)]
    #[sqlx(default)]
    pub probe: bool,
}

/// A settled epoch: the published inputs, the closing statement and the Merkle leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SettlementRecord {
    /// The epoch.
    pub epoch: i64,
    /// Hash (hex) of the previous epoch's statement.
    pub previous_hash: String,
    /// Hash (hex) of this epoch's statement.
    pub statement_hash: String,
    /// Merkle root (hex) over every node's cumulative balances.
    pub merkle_root: String,
    /// Pool issued, micro-units.
    pub pool: i64,
    /// Rewards credited to nodes.
    pub distributed: i64,
    /// Penalties taken.
    pub penalties: i64,
    /// Rewards vested at the epoch's close.
    pub vested: i64,
    /// Number of Merkle leaves.
    pub leaf_count: i64,
    /// `streamr_core::EpochInputs` as JSON: enough for anyone to replay the settlement.
    pub inputs_json: String,
    /// `streamr_core::EpochStatement` as JSON.
    pub statement_json: String,
    /// The Merkle leaves (`streamr_core::BalanceLeaf`) as a JSON array.
    pub leaves_json: String,
    /// `streamr_core::EpochObservations` the fraud rules assessed, as JSON.
    pub observations_json: String,
    /// When it was settled.
    pub settled_at_ms: i64,
    /// Which replica settled it.
    pub settled_by: String,
}

/// One line of the double-entry ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LedgerEntryRecord {
    /// Position in the ledger, from 0.
    pub idx: i64,
    /// The epoch it belongs to.
    pub epoch: i64,
    /// Why: funding, reward, vesting, penalty, fee or payout.
    pub kind: String,
    /// Account debited, e.g. `reward pool`.
    pub debit: String,
    /// Account credited, e.g. `unvested:<node>`.
    pub credit: String,
    /// The node whose account it touches, if any.
    pub node_id: Option<String>,
    /// Micro-units moved.
    pub amount: i64,
}

/// Fraud evidence found for a node in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EvidenceRecord {
    /// The epoch.
    pub epoch: i64,
    /// The node.
    pub node_id: String,
    /// The rule that fired.
    pub rule: String,
    /// JSON detail.
    pub detail: String,
    /// When it was recorded.
    pub created_at_ms: i64,
}

/// A payout of vested rewards, planned at an epoch's settlement and then handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PayoutRecord {
    /// The node.
    pub node_id: String,
    /// The node's total net payouts after this one (the sink's idempotency key).
    pub cumulative_net: i64,
    /// The epoch whose settlement planned it.
    pub epoch: i64,
    /// Where it is paid.
    pub payout_address: String,
    /// Vested micro-units released.
    pub gross: i64,
    /// Fees withheld.
    pub fees: i64,
    /// What the node receives.
    pub net: i64,
    /// `pending` or `sent`.
    pub status: String,
    /// What the sink reported once sent.
    pub sink_reference: Option<String>,
    /// Last change.
    pub updated_at_ms: i64,
}

/// Everything one epoch's settlement writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementWrite {
    /// The settlement row.
    pub settlement: SettlementRecord,
    /// The last settled epoch this settlement follows (`None` for the first); if storage holds
    /// another, the write is refused because the caller's view is stale.
    pub follows: Option<i64>,
    /// Ledger entries the settlement and its payouts made.
    pub entries: Vec<LedgerEntryRecord>,
    /// Fraud evidence.
    pub evidence: Vec<EvidenceRecord>,
    /// Payouts to hand to the payout sink.
    pub payouts: Vec<PayoutRecord>,
}

/// A node's verified delivery in one epoch, summed from its receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodeUsage {
    /// The node.
    pub node_id: String,
    /// Bytes credited by receipts.
    pub bytes: i64,
    /// Of which acknowledged on time.
    pub on_time_bytes: i64,
    /// Distinct sessions.
    pub sessions: i64,
}

/// One minute of delivery for a stream or node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StatsRow {
    /// Minute index (Unix milliseconds / 60000).
    pub minute: i64,
    /// Bytes acknowledged by receipts.
    pub bytes: i64,
    /// Number of receipts.
    pub receipts: i64,
}

/// Coordinator-wide counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Streams currently live.
    pub live_streams: i64,
    /// Active nodes.
    pub active_nodes: i64,
    /// Receipts stored.
    pub receipts: i64,
    /// Settled epochs.
    pub settled_epochs: i64,
    /// Micro-units paid out to nodes (net).
    pub paid_out: i64,
}

/// One probe of a node: the seam through which the probe runner reports availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProbeRecord {
    /// The node probed.
    pub node_id: String,
    /// The epoch it counts towards.
    pub epoch: i64,
    /// The fetched segment's hash matched the origin's.
    pub hash_ok: bool,
    /// No response within the probe deadline.
    pub timed_out: bool,
    /// Time to first byte, ms.
    pub ttfb_ms: i64,
    /// Measured throughput, bytes per second.
    pub throughput_bytes_per_s: i64,
    /// When it ran.
    pub probed_at_ms: i64,
}

/// A probe held until the origin's reports can judge it (table `held_probes`): what the
/// prober needs to finish it, as JSON, and the lease under which one replica works on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct HeldProbeRecord {
    /// Random id of the probe.
    pub probe_id: String,
    /// The node probed.
    pub node_id: String,
    /// The prober's state of the probe (JSON).
    pub state_json: String,
    /// When it was first held, unix ms.
    pub held_ms: i64,
    /// Until when a replica works on it, unix ms; 0 (or past) when no one does. A claim sets
    /// it, and only the claim holding that value may update or finish the probe.
    pub lease_until_ms: i64,
}

/// One charge against a grant budget: `cost` units of what `subject` (a viewer key or a source
/// prefix, in `scope`) may spend per epoch, `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetCharge {
    /// `viewer`, `ipv4/24`, `ipv6/48` or `ipv6/64`.
    pub scope: String,
    /// The viewer key (hex) or the prefix.
    pub subject: String,
    /// Units this request spends.
    pub cost: i64,
    /// Units the subject may spend in the epoch.
    pub limit: i64,
}

/// A charge that would have taken its subject over its limit (nothing was spent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRefusal {
    /// The scope of the exhausted budget.
    pub scope: String,
    /// Its subject.
    pub subject: String,
    /// Units spent before this request.
    pub spent: i64,
    /// Units this request would have spent.
    pub cost: i64,
    /// The epoch's limit.
    pub limit: i64,
}

/// Receipt-backed sessions of one node over the routing windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodeSessionCounts {
    /// The node.
    pub node_id: String,
    /// Distinct sessions with a receipt received in the proving window.
    pub proven_sessions: i64,
    /// Distinct sessions with a receipt received in the live window.
    pub live_sessions: i64,
}

/// Grants to one node from one source prefix that no receipt has confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PendingGrantCount {
    /// The node granted.
    pub node_id: String,
    /// The viewers' IPv4 /24 or IPv6 /48.
    pub viewer_subnet: String,
    /// Grants.
    pub grants: i64,
}

/// A network prefix a node's heartbeats came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodePrefixRecord {
    /// The node.
    pub node_id: String,
    /// Its IPv4 /24 or IPv6 /48 as observed on the connection.
    pub prefix: String,
    /// First heartbeat from it.
    pub first_seen_ms: i64,
    /// Latest heartbeat from it.
    pub last_seen_ms: i64,
    /// Heartbeats from it.
    pub heartbeats: i64,
}

/// A stretch in which no coordinator process noted itself up for longer than the outage gap:
/// from the last note before it to the first after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OutageRecord {
    /// The last note before it, Unix ms.
    pub started_ms: i64,
    /// The first note after it, Unix ms.
    pub ended_ms: i64,
}

/// What a process noting itself up ([`crate::Storage::note_alive`]) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliveNote {
    /// When the note was made (Unix ms): read once it held the liveness record.
    pub at_ms: i64,
    /// The outage this note recorded, if the silence before it was one.
    pub recorded: Option<OutageRecord>,
    /// The outages on record that ended at or after the time asked for, oldest first.
    pub outages: Vec<OutageRecord>,
}

/// The outcome of the coordinator's last connect-back check of a node's advertised addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReachabilityRecord {
    /// The node.
    pub node_id: String,
    /// The RTMP URL checked.
    pub rtmp_url: String,
    /// The HTTP URL checked.
    pub http_url: String,
    /// Whether an RTMP handshake completed at `rtmp_url` from outside.
    pub rtmp_reachable: bool,
    /// Whether `GET /healthz` at `http_url` answered from outside.
    pub http_reachable: bool,
    /// Why the RTMP check failed (empty when it passed).
    pub rtmp_error: String,
    /// Why the HTTP check failed (empty when it passed).
    pub http_error: String,
    /// When the check ran.
    pub checked_at_ms: i64,
}

impl ReachabilityRecord {
    /// Both advertised addresses answered.
    pub fn reachable(&self) -> bool {
        self.rtmp_reachable && self.http_reachable
    }

    /// Whether this check is about the addresses `node` advertises now.
    pub fn is_for(&self, node: &NodeRecord) -> bool {
        self.rtmp_url == node.rtmp_url && self.http_url == node.http_url
    }
}

/// Receipt-verified traffic of one node in one epoch, split into viewers' and probes'.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodeEpochTraffic {
    /// The node.
    pub node_id: String,
    /// Bytes viewers' receipts acknowledged (wherever they were posted).
    pub verified_bytes: i64,
    /// Distinct viewer sessions with receipts.
    pub sessions: i64,
    /// Distinct viewer keys with receipts.
    pub viewers: i64,
    /// Bytes the coordinator's probes acknowledged (never paid).
    pub probe_bytes: i64,
    /// Probe sessions with receipts.
    pub probe_sessions: i64,
}

/// A viewer's newest report that it failed to play from a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FailureReportRecord {
    /// The node reported.
    pub node_id: String,
    /// The reporting viewer's key (hex).
    pub viewer: String,
    /// When it reported.
    pub reported_at_ms: i64,
}

/// A node routing treats as down until its next heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NodeDownRecord {
    /// The node.
    pub node_id: String,
    /// The timestamp of its last heartbeat when it was found down: a newer one brings it back.
    pub down_at_heartbeat_ms: i64,
}

/// A relaying node's parent in a stream's relay tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RelayAssignmentRecord {
    /// The stream.
    pub stream_id: String,
    /// The relaying node.
    pub node_id: String,
    /// The node it pulls the stream from (the origin node or another relay).
    pub parent_id: String,
    /// When it was assigned this parent.
    pub assigned_at_ms: i64,
}

/// A relay's report that it failed to pull a stream from a node of its chain (its first
/// within the relay liveness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RelayReportRecord {
    /// The stream.
    pub stream_id: String,
    /// The node reported failed.
    pub node_id: String,
    /// The relay that reported it.
    pub reporter_id: String,
    /// When it reported it.
    pub reported_at_ms: i64,
}

/// What one upstream request reports, stored with its tree decision
/// ([`crate::Storage::assign_relay_parents`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReports {
    /// The asking relay.
    pub reporter_id: String,
    /// The nodes it failed to pull from since its last request.
    pub failed: Vec<String>,
    /// Reports older than this are forgotten and not returned.
    pub since_ms: i64,
}

// What the API sends of each row: the wire types are `streamr_client`'s, so the schema here and
// the protocol can change apart.

impl From<StreamRecord> for streamr_client::wire::StreamInfo {
    fn from(row: StreamRecord) -> Self {
        streamr_client::wire::StreamInfo {
            id: row.id,
            title: row.title,
            status: row.status,
            created_at_ms: row.created_at_ms,
            ended_at_ms: row.ended_at_ms,
            origin_node: row.origin_node,
        }
    }
}

impl From<LlSegment> for streamr_client::wire::LlSegmentInfo {
    fn from(row: LlSegment) -> Self {
        streamr_client::wire::LlSegmentInfo {
            hash: row.hash,
            digest: row.digest,
            part_hashes: row.part_hashes,
            len: row.len,
        }
    }
}

impl From<SegmentRecord> for streamr_client::wire::SegmentInfo {
    fn from(row: SegmentRecord) -> Self {
        streamr_client::wire::SegmentInfo {
            stream_id: row.stream_id,
            sequence: row.sequence,
            hash: row.hash,
            digest: row.digest,
            published_ms: row.published_ms,
            reported_at_ms: row.reported_at_ms,
            ll: row.ll.map(Into::into),
        }
    }
}

impl From<PartRecord> for streamr_client::wire::PartInfo {
    fn from(row: PartRecord) -> Self {
        streamr_client::wire::PartInfo {
            run: row.run,
            msn: row.msn,
            index: row.part_index,
            hash: row.hash,
            len: row.len,
            cut_ms: row.cut_ms,
            reported_at_ms: row.reported_at_ms,
        }
    }
}

impl From<NodeRecord> for streamr_client::wire::NodeInfo {
    fn from(row: NodeRecord) -> Self {
        streamr_client::wire::NodeInfo {
            id: row.id,
            payout_address: row.payout_address,
            operator: row.operator,
            subnet: row.subnet,
            rtmp_url: row.rtmp_url,
            http_url: row.http_url,
            registered_at_ms: row.registered_at_ms,
            active: row.active,
            capacity_kbps: row.capacity_kbps,
            last_nonce: row.last_nonce,
            last_heartbeat_ms: row.last_heartbeat_ms,
            status: row.status,
            viewers: row.viewers,
            bytes_served: row.bytes_served,
            streams_json: row.streams_json,
        }
    }
}

impl From<SettlementRecord> for streamr_client::wire::SettlementInfo {
    fn from(row: SettlementRecord) -> Self {
        streamr_client::wire::SettlementInfo {
            epoch: row.epoch,
            previous_hash: row.previous_hash,
            statement_hash: row.statement_hash,
            merkle_root: row.merkle_root,
            pool: row.pool,
            distributed: row.distributed,
            penalties: row.penalties,
            vested: row.vested,
            leaf_count: row.leaf_count,
            inputs_json: row.inputs_json,
            statement_json: row.statement_json,
            leaves_json: row.leaves_json,
            observations_json: row.observations_json,
            settled_at_ms: row.settled_at_ms,
            settled_by: row.settled_by,
        }
    }
}

impl From<LedgerEntryRecord> for streamr_client::wire::LedgerEntryInfo {
    fn from(row: LedgerEntryRecord) -> Self {
        streamr_client::wire::LedgerEntryInfo {
            idx: row.idx,
            epoch: row.epoch,
            kind: row.kind,
            debit: row.debit,
            credit: row.credit,
            node_id: row.node_id,
            amount: row.amount,
        }
    }
}

impl From<EvidenceRecord> for streamr_client::wire::EvidenceInfo {
    fn from(row: EvidenceRecord) -> Self {
        streamr_client::wire::EvidenceInfo {
            epoch: row.epoch,
            node_id: row.node_id,
            rule: row.rule,
            detail: row.detail,
            created_at_ms: row.created_at_ms,
        }
    }
}

impl From<PayoutRecord> for streamr_client::wire::PayoutInfo {
    fn from(row: PayoutRecord) -> Self {
        streamr_client::wire::PayoutInfo {
            node_id: row.node_id,
            cumulative_net: row.cumulative_net,
            epoch: row.epoch,
            payout_address: row.payout_address,
            gross: row.gross,
            fees: row.fees,
            net: row.net,
            status: row.status,
            sink_reference: row.sink_reference,
            updated_at_ms: row.updated_at_ms,
        }
    }
}

impl From<ProbeRecord> for streamr_client::wire::ProbeInfo {
    fn from(row: ProbeRecord) -> Self {
        streamr_client::wire::ProbeInfo {
            node_id: row.node_id,
            epoch: row.epoch,
            hash_ok: row.hash_ok,
            timed_out: row.timed_out,
            ttfb_ms: row.ttfb_ms,
            throughput_bytes_per_s: row.throughput_bytes_per_s,
            probed_at_ms: row.probed_at_ms,
        }
    }
}

impl From<StatsRow> for streamr_client::wire::StatsInfo {
    fn from(row: StatsRow) -> Self {
        streamr_client::wire::StatsInfo {
            minute: row.minute,
            bytes: row.bytes,
            receipts: row.receipts,
        }
    }
}

impl From<Totals> for streamr_client::wire::TotalsInfo {
    fn from(totals: Totals) -> Self {
        streamr_client::wire::TotalsInfo {
            live_streams: totals.live_streams,
            active_nodes: totals.active_nodes,
            receipts: totals.receipts,
            settled_epochs: totals.settled_epochs,
            paid_out: totals.paid_out,
        }
    }
}

/// Converts rows to what the API sends of them.
pub(crate) fn to_wire<R, W: From<R>>(rows: Vec<R>) -> Vec<W> {
    rows.into_iter().map(W::from).collect()
}

/// A node session the coordinator opened (see [`streamr_core::node_session`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeSessionRecord {
    /// Session id, 32 hex digits.
    pub id: String,
    /// The node that opened it (hex public key).
    pub node_id: String,
    /// The session key sealed under the coordinator key (ChaCha20-Poly1305, bound to this
    /// row's id, node and expiry), hex: never the key itself.
    pub sealed_key: String,
    /// When it expires (coordinator clock, Unix milliseconds).
    pub expires_at_ms: i64,
}
