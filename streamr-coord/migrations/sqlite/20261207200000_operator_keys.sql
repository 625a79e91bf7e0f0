-- Operator names bound to operator keys. An operator name is bound to the first operator key
-- that proves a node under it (the key's signature over the node id and the name); a later
-- registration naming it without that key's signature is refused. The operator cap and the
-- collusion rule's route shares group a node under its name only when it proved membership
-- (`nodes.operator_key` set); otherwise the node is its own operator.
CREATE TABLE operator_bindings (
    name TEXT PRIMARY KEY,
    operator_key TEXT NOT NULL,
    bound_at_ms BIGINT NOT NULL
);
ALTER TABLE nodes ADD COLUMN operator_key TEXT;
