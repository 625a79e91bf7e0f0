-- The origin's run each segment was cut in (16 hex digits), when its report names one: a segment
-- of another run than the one before it on the chain says the origin's stream broke off between
-- them, which the prober's judge reads (streamr_core::probe_judge). NULL for reports of origins
-- that predate runs, and for operators' unsigned reports.
ALTER TABLE segments ADD COLUMN run TEXT;
