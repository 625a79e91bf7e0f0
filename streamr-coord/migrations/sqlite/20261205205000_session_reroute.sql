-- A viewer failing over carries its still-live grant to `/play` (`previous`): that re-route
-- ends the previous session (its expiry set to the re-route time) and is not charged to the grant
-- budgets. `rerouted_at_ms` marks a session already carried once (only one request, on any
-- replica, can claim it); `reroutes` counts the free re-routes of the chain that led to it.
ALTER TABLE sessions ADD COLUMN rerouted_at_ms INTEGER;
ALTER TABLE sessions ADD COLUMN reroutes INTEGER NOT NULL DEFAULT 0;
