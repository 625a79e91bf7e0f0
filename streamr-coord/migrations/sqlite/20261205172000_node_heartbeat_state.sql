-- What heartbeats change, one narrow row per node, so that a batch of heartbeats writes few
-- pages instead of rewriting wide `nodes` rows. `nodes` keeps what registration sets; its
-- last_nonce stays the floor a heartbeat's nonce must exceed (nodes heartbeated before this
-- migration have their state copied here).
CREATE TABLE node_heartbeat_state (
    node_id TEXT PRIMARY KEY,
    last_nonce INTEGER NOT NULL,
    last_heartbeat_ms INTEGER NOT NULL,
    viewers INTEGER NOT NULL,
    bytes_served INTEGER NOT NULL,
    streams_json TEXT NOT NULL,
    -- Heartbeated since it last registered (registration clears it).
    online BOOLEAN NOT NULL DEFAULT 0
);

INSERT INTO node_heartbeat_state
    (node_id, last_nonce, last_heartbeat_ms, viewers, bytes_served, streams_json, online)
SELECT id, last_nonce, last_heartbeat_ms, viewers, bytes_served, streams_json, status = 'online'
FROM nodes WHERE last_heartbeat_ms IS NOT NULL;
