-- The LL-HLS (fMP4) rendition of a reported segment: cut at the same frames as the MPEG-TS
-- segment with the same sequence number. `digest` chains the fMP4 hashes the way
-- segments.digest chains the TS hashes, so a receipt signed over LL-HLS binds to it;
-- `part_hashes` is the parts' hex hashes, comma-separated, in order.
CREATE TABLE segment_ll (
    stream_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    hash TEXT NOT NULL,
    digest TEXT NOT NULL,
    part_hashes TEXT NOT NULL,
    len BIGINT NOT NULL,
    PRIMARY KEY (stream_id, sequence),
    FOREIGN KEY (stream_id, sequence) REFERENCES segments(stream_id, sequence)
);
