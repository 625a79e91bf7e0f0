-- Node session keys are stored sealed (ChaCha20-Poly1305 under a key derived from the
-- coordinator's secret key, bound to the row's id, node and expiry), never readable: a dump
-- of this table alone lets no one forge heartbeats. Rows of the earlier layout held the key in
-- clear; they are dropped, not converted. A node whose session is gone is refused with
-- unknown_session and opens a new one at once, so no heartbeat is lost.
DROP TABLE node_sessions;
CREATE TABLE node_sessions (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    sealed_key TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX node_sessions_expiry ON node_sessions (expires_at_ms);
