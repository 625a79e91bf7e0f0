-- What the fraud rules need per epoch: the viewer's /24, each node's claims and receipt
-- outcomes, and the observations every settlement was assessed on (for replay).
ALTER TABLE sessions ADD COLUMN viewer_subnet TEXT NOT NULL DEFAULT '';
ALTER TABLE settlements ADD COLUMN observations_json TEXT NOT NULL DEFAULT '';

CREATE TABLE node_epoch_activity (
    node_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    heartbeats INTEGER NOT NULL,
    claimed_bytes INTEGER NOT NULL,
    submitted INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    forged INTEGER NOT NULL,
    replayed INTEGER NOT NULL,
    beyond_grant INTEGER NOT NULL,
    wrong_content INTEGER NOT NULL,
    PRIMARY KEY (node_id, epoch)
);
