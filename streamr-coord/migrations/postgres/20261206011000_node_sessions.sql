-- Node sessions: a node that proved its key in a signed handshake authenticates its heartbeats
-- with a MAC under the session key. Kept here (not in one process's memory) so any replica
-- accepts a session another replica opened; a row past its expiry is refused and purged.
CREATE TABLE node_sessions (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    key_hex TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX node_sessions_expiry ON node_sessions (expires_at_ms);
