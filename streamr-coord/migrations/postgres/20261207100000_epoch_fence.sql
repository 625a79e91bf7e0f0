-- The newest epoch closed to new bookings (one row, absent until the first close). Settlement
-- closes an epoch before it reads the epoch's receipts, activity and probes; a receipt,
-- heartbeat or probe result written afterwards for a closed epoch is booked to the first open
-- one instead (see streamr_coord::Storage::close_epochs_through), so nothing reaches an epoch
-- once its inputs were read, and nothing accepted is left out of every settlement.
CREATE TABLE epoch_fence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    closed_through BIGINT NOT NULL
);
-- A database settled before the fence existed: its settled epochs are closed.
INSERT INTO epoch_fence (id, closed_through)
    SELECT 1, epoch FROM settlements ORDER BY epoch DESC LIMIT 1;
