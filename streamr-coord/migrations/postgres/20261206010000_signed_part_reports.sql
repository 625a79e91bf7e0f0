-- The origin's signed part reports as it sent them, numbered per stream (seq 1, 2, ...): a node
-- serving LL-HLS fetches every report after its cursor once per stream and passes them to its
-- viewers, who check the origin's signature themselves. Kept as long as part_reports' rows.
CREATE TABLE signed_part_reports (
    stream_id TEXT NOT NULL REFERENCES streams(id),
    seq BIGINT NOT NULL,
    report TEXT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE INDEX signed_part_reports_by_age ON signed_part_reports (stream_id, reported_at_ms);
