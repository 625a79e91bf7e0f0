-- The relay tree (issue 14): each relaying node's parent for a stream, chosen by the
-- coordinator (the stream's origin node for the first tier, other relays below). Only the
-- parent is kept; depths are walked from it, so a re-parented node takes its subtree along.
CREATE TABLE relay_assignments (
    stream_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    assigned_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, node_id)
);
CREATE INDEX relay_assignments_by_parent ON relay_assignments (stream_id, parent_id);
