-- Where each relay's last heartbeat says it pulls each relayed stream from: a JSON array of
-- `[stream, upstream node]` pairs, reconciled with the relay tree (nodes predating the field
-- send none: `[]`).
ALTER TABLE node_heartbeat_state ADD COLUMN upstreams_json TEXT NOT NULL DEFAULT '[]';
