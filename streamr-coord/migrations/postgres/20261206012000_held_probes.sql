-- Probes whose segments the origin's reports could not judge yet (see streamr_core::probe_judge):
-- kept here so a coordinator restart does not drop them and any replica can finish them. A
-- replica works on one only under a lease (lease_until_ms in the future), taken and released
-- with conditional updates, so no two replicas judge one probe.
CREATE TABLE held_probes (
    probe_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    state_json TEXT NOT NULL,
    held_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX held_probes_by_node ON held_probes (node_id, held_ms);
