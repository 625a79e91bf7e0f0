-- What the fraud rules need per epoch: the viewer's /24, each node's claims and receipt
-- outcomes, and the observations every settlement was assessed on (for replay).
ALTER TABLE sessions ADD COLUMN viewer_subnet TEXT NOT NULL DEFAULT '';
ALTER TABLE settlements ADD COLUMN observations_json TEXT NOT NULL DEFAULT '';

CREATE TABLE node_epoch_activity (
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    heartbeats BIGINT NOT NULL,
    claimed_bytes BIGINT NOT NULL,
    submitted BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    forged BIGINT NOT NULL,
    replayed BIGINT NOT NULL,
    beyond_grant BIGINT NOT NULL,
    wrong_content BIGINT NOT NULL,
    PRIMARY KEY (node_id, epoch)
);
