-- The relay tree (issue 14): the newest signed upstream request time accepted per relay and
-- stream. Kept here, not in one coordinator process, so a request replayed to another replica
-- (or after a restart) is refused too. Times older than twice the clock skew are forgotten:
-- the skew check refuses those requests anyway.
CREATE TABLE relay_request_times (
    node_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    newest_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, stream_id)
);
CREATE INDEX relay_request_times_by_time ON relay_request_times (newest_ms);
