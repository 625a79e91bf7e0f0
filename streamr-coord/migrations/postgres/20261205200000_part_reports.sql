-- LL-HLS partial segments as the origin cut them, so a viewer checks each part before it plays
-- it (segment_ll keeps every part hash for good; these rows are kept only minutes). A part's
-- place is (stream, origin numbering run, msn, part_index); viewers look parts up by hash.
CREATE TABLE part_reports (
    stream_id TEXT NOT NULL REFERENCES streams(id),
    run TEXT NOT NULL,
    msn BIGINT NOT NULL,
    part_index BIGINT NOT NULL,
    hash TEXT NOT NULL,
    len BIGINT NOT NULL,
    cut_ms BIGINT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, run, msn, part_index)
);
CREATE INDEX part_reports_by_hash ON part_reports (stream_id, hash);
CREATE INDEX part_reports_by_age ON part_reports (stream_id, reported_at_ms);
