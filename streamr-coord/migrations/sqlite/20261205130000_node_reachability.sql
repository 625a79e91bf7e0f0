-- Whether each node can be reached from outside (issue 16, item 15): the coordinator connects
-- back to the RTMP and HTTP addresses a node advertises, when it registers and periodically.
-- A node found unreachable at the addresses it still advertises is never routed viewers.
CREATE TABLE node_reachability (
    node_id TEXT PRIMARY KEY,
    -- The addresses checked (a node that re-registers elsewhere is checked anew).
    rtmp_url TEXT NOT NULL,
    http_url TEXT NOT NULL,
    rtmp_reachable BOOLEAN NOT NULL,
    http_reachable BOOLEAN NOT NULL,
    -- Why a check failed (empty when it passed).
    rtmp_error TEXT NOT NULL DEFAULT '',
    http_error TEXT NOT NULL DEFAULT '',
    checked_at_ms BIGINT NOT NULL
);
