-- Shared routing state (issue 14): what viewers reported about failing nodes, kept here and
-- not in one coordinator process, so replicas on one database route alike and a restart
-- forgets nothing. (Grants are the sessions table; budgets are grant_budgets.)

-- A viewer's newest report that it failed to play from a node it had been granted.
CREATE TABLE route_reports (
    node_id TEXT NOT NULL,
    viewer TEXT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, viewer)
);
CREATE INDEX route_reports_by_time ON route_reports (reported_at_ms);

-- Nodes found down on viewers' reports: down until a heartbeat newer than the one they had
-- sent when found down.
CREATE TABLE route_down (
    node_id TEXT PRIMARY KEY,
    down_at_heartbeat_ms BIGINT NOT NULL
);
