-- Routing that viewers cannot steer (issue 11).
--
-- Sessions the coordinator's own probes opened: their receipts are booked like any viewer's
-- (so a node cannot tell them apart) but settlement never pays them.
ALTER TABLE sessions ADD COLUMN probe BOOLEAN NOT NULL DEFAULT FALSE;
-- The viewer's IPv6 /64 (empty for IPv4); `viewer_subnet` holds its IPv4 /24 or IPv6 /48.
ALTER TABLE sessions ADD COLUMN viewer_prefix64 TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_by_issued ON sessions (issued_at_ms);
CREATE INDEX sessions_by_viewer ON sessions (viewer, issued_at_ms);

-- What each viewer key and each source prefix spent on grants in an epoch (one unit per
-- play request plus one per node it excluded). Kept here, not in a process, so the budget
-- holds across replicas and restarts.
CREATE TABLE grant_budgets (
    epoch BIGINT NOT NULL,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    spent BIGINT NOT NULL,
    PRIMARY KEY (epoch, scope, subject)
);

-- The network prefixes each node's heartbeats came from (observed, not announced): what
-- per-operator and per-prefix caps key on.
CREATE TABLE node_prefixes (
    node_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    heartbeats BIGINT NOT NULL,
    PRIMARY KEY (node_id, prefix)
);

-- Outcomes of receipts viewers posted to the coordinator themselves, per node they credit and
-- epoch: kept apart from node_epoch_activity (what the node handed in) because a viewer's
-- receipts are the viewer's doing, never evidence against the node.
CREATE TABLE viewer_posted_activity (
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    submitted BIGINT NOT NULL DEFAULT 0,
    accepted BIGINT NOT NULL DEFAULT 0,
    forged BIGINT NOT NULL DEFAULT 0,
    replayed BIGINT NOT NULL DEFAULT 0,
    beyond_grant BIGINT NOT NULL DEFAULT 0,
    wrong_content BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, epoch)
);
