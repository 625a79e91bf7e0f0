-- Per node and epoch: the bytes the coordinator's probes took from the node that no receipt
-- acknowledged (HTTP-FLV reads, playlists, segments not judged yet). The node cannot tell a
-- probe from a viewer and reports them as unattested; settlement nets them out of its
-- unattested claim, so probe traffic is never paid.
CREATE TABLE probe_traffic (
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, epoch)
);
