-- Coordinator schema (PostgreSQL). Times are Unix milliseconds; amounts are integer micro-units.
CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stream_key_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT
);

CREATE TABLE segments (
    stream_id TEXT NOT NULL REFERENCES streams(id),
    sequence BIGINT NOT NULL,
    hash TEXT NOT NULL,
    digest TEXT NOT NULL,
    published_ms BIGINT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, sequence)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    payout_address TEXT NOT NULL,
    operator TEXT NOT NULL,
    subnet TEXT NOT NULL,
    rtmp_url TEXT NOT NULL,
    http_url TEXT NOT NULL,
    registered_at_ms BIGINT NOT NULL,
    active BOOLEAN NOT NULL,
    capacity_kbps BIGINT NOT NULL,
    last_nonce BIGINT NOT NULL,
    last_heartbeat_ms BIGINT,
    status TEXT NOT NULL,
    viewers BIGINT NOT NULL,
    bytes_served BIGINT NOT NULL,
    streams_json TEXT NOT NULL
);

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    viewer TEXT NOT NULL,
    max_bytes BIGINT NOT NULL,
    expiry_ms BIGINT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    grant_json TEXT NOT NULL
);

CREATE TABLE receipts (
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    bytes_total BIGINT NOT NULL,
    bytes_delta BIGINT NOT NULL,
    on_time_bytes BIGINT NOT NULL,
    last_segment_seq BIGINT NOT NULL,
    t_ms BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX receipts_by_epoch ON receipts (epoch);
CREATE INDEX receipts_by_received ON receipts (received_at_ms);

CREATE TABLE settlements (
    epoch BIGINT PRIMARY KEY,
    previous_hash TEXT NOT NULL,
    statement_hash TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    pool BIGINT NOT NULL,
    distributed BIGINT NOT NULL,
    penalties BIGINT NOT NULL,
    vested BIGINT NOT NULL,
    leaf_count BIGINT NOT NULL,
    inputs_json TEXT NOT NULL,
    statement_json TEXT NOT NULL,
    leaves_json TEXT NOT NULL,
    settled_at_ms BIGINT NOT NULL,
    settled_by TEXT NOT NULL
);

-- One row per entry of the double-entry ledger; idx is the ledger position, so an entry can
-- never be written twice.
CREATE TABLE ledger_entries (
    idx BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    kind TEXT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    node_id TEXT,
    amount BIGINT NOT NULL
);
CREATE INDEX ledger_entries_by_node ON ledger_entries (node_id);
CREATE INDEX ledger_entries_by_epoch ON ledger_entries (epoch);

CREATE TABLE fraud_evidence (
    id BIGSERIAL PRIMARY KEY,
    epoch BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (epoch, node_id, rule)
);

-- A payout is identified by the node's cumulative net total after it, which is also the
-- payout sink's idempotency key.
CREATE TABLE payouts (
    node_id TEXT NOT NULL,
    cumulative_net BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    payout_address TEXT NOT NULL,
    gross BIGINT NOT NULL,
    fees BIGINT NOT NULL,
    net BIGINT NOT NULL,
    status TEXT NOT NULL,
    sink_reference TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, cumulative_net)
);
CREATE INDEX payouts_by_epoch ON payouts (epoch);

CREATE TABLE minute_stats (
    minute BIGINT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    receipts BIGINT NOT NULL,
    PRIMARY KEY (minute, subject_kind, subject_id)
);

CREATE TABLE probe_results (
    id BIGSERIAL PRIMARY KEY,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    hash_ok BOOLEAN NOT NULL,
    timed_out BOOLEAN NOT NULL,
    ttfb_ms BIGINT NOT NULL,
    throughput_bytes_per_s BIGINT NOT NULL,
    probed_at_ms BIGINT NOT NULL
);
CREATE INDEX probe_results_by_epoch ON probe_results (epoch, node_id);
