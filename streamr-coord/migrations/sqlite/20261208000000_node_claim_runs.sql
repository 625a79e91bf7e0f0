-- Per node, the claim totals of its latest run counted from signed heartbeats that carry
-- them (`claim_totals`): a heartbeat adds only the part of its totals above these, in the
-- transaction that claims its nonce, so a claim sent again under a new nonce counts once.
CREATE TABLE node_claim_runs (
    node_id TEXT PRIMARY KEY,
    run BIGINT NOT NULL,
    bytes_total BIGINT NOT NULL,
    unattested_total BIGINT NOT NULL
);
