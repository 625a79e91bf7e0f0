-- Bytes each node reported serving to viewers that sent no receipt, per epoch: paid at a
-- discount within probe-measured capacity, never held against receipts.
ALTER TABLE node_epoch_activity ADD COLUMN unattested_bytes BIGINT NOT NULL DEFAULT 0;
