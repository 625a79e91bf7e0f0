-- Coordinator schema (SQLite). Times are Unix milliseconds; amounts are integer micro-units.
CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stream_key_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER
);

CREATE TABLE segments (
    stream_id TEXT NOT NULL REFERENCES streams(id),
    sequence INTEGER NOT NULL,
    hash TEXT NOT NULL,
    digest TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    PRIMARY KEY (stream_id, sequence)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    payout_address TEXT NOT NULL,
    operator TEXT NOT NULL,
    subnet TEXT NOT NULL,
    rtmp_url TEXT NOT NULL,
    http_url TEXT NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    active BOOLEAN NOT NULL,
    capacity_kbps INTEGER NOT NULL,
    last_nonce INTEGER NOT NULL,
    last_heartbeat_ms INTEGER,
    status TEXT NOT NULL,
    viewers INTEGER NOT NULL,
    bytes_served INTEGER NOT NULL,
    streams_json TEXT NOT NULL
);

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    viewer TEXT NOT NULL,
    max_bytes INTEGER NOT NULL,
    expiry_ms INTEGER NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    grant_json TEXT NOT NULL
);

CREATE TABLE receipts (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    bytes_total INTEGER NOT NULL,
    bytes_delta INTEGER NOT NULL,
    on_time_bytes INTEGER NOT NULL,
    last_segment_seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX receipts_by_epoch ON receipts (epoch);
CREATE INDEX receipts_by_received ON receipts (received_at_ms);

CREATE TABLE settlements (
    epoch INTEGER PRIMARY KEY,
    previous_hash TEXT NOT NULL,
    statement_hash TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    pool INTEGER NOT NULL,
    distributed INTEGER NOT NULL,
    penalties INTEGER NOT NULL,
    vested INTEGER NOT NULL,
    leaf_count INTEGER NOT NULL,
    inputs_json TEXT NOT NULL,
    statement_json TEXT NOT NULL,
    leaves_json TEXT NOT NULL,
    settled_at_ms INTEGER NOT NULL,
    settled_by TEXT NOT NULL
);

-- One row per entry of the double-entry ledger; idx is the ledger position, so an entry can
-- never be written twice.
CREATE TABLE ledger_entries (
    idx INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    node_id TEXT,
    amount INTEGER NOT NULL
);
CREATE INDEX ledger_entries_by_node ON ledger_entries (node_id);
CREATE INDEX ledger_entries_by_epoch ON ledger_entries (epoch);

CREATE TABLE fraud_evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (epoch, node_id, rule)
);

-- A payout is identified by the node's cumulative net total after it, which is also the
-- payout sink's idempotency key.
CREATE TABLE payouts (
    node_id TEXT NOT NULL,
    cumulative_net INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    payout_address TEXT NOT NULL,
    gross INTEGER NOT NULL,
    fees INTEGER NOT NULL,
    net INTEGER NOT NULL,
    status TEXT NOT NULL,
    sink_reference TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (node_id, cumulative_net)
);
CREATE INDEX payouts_by_epoch ON payouts (epoch);

CREATE TABLE minute_stats (
    minute INTEGER NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    receipts INTEGER NOT NULL,
    PRIMARY KEY (minute, subject_kind, subject_id)
);

CREATE TABLE probe_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    hash_ok BOOLEAN NOT NULL,
    timed_out BOOLEAN NOT NULL,
    ttfb_ms INTEGER NOT NULL,
    throughput_bytes_per_s INTEGER NOT NULL,
    probed_at_ms INTEGER NOT NULL
);
CREATE INDEX probe_results_by_epoch ON probe_results (epoch, node_id);
