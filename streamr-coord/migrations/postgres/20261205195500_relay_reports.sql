-- The relay tree (issue 14): relays' reports that they failed to pull a stream from a node
-- (their parent or an ancestor), the first per reporter within the relay liveness (a repeat
-- does not renew it). One report moves only its reporter; a node's subtree is re-homed when
-- two distinct relays below it report it (or its own heartbeat says it lacks the stream), so
-- a lying child cannot churn its siblings. Kept here so every replica counts the same
-- reports; older than the relay liveness, they are forgotten.
CREATE TABLE relay_reports (
    stream_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    reporter_id TEXT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, node_id, reporter_id)
);
CREATE INDEX relay_reports_by_time ON relay_reports (stream_id, reported_at_ms);
