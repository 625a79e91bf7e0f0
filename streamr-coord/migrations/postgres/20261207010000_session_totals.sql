-- Session heartbeats carry running totals per node session: the newest stored nonce and
-- totals of each session (written in periodic batches, so a heartbeat restates rather than
-- adds), and what the last write added to the node's epoch activity (`*_counted`, returned by
-- the write that computed it against the row it locked).
ALTER TABLE node_sessions ADD COLUMN last_nonce BIGINT NOT NULL DEFAULT -1;
ALTER TABLE node_sessions ADD COLUMN bytes_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE node_sessions ADD COLUMN unattested_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE node_sessions ADD COLUMN bytes_counted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE node_sessions ADD COLUMN unattested_counted BIGINT NOT NULL DEFAULT 0;
