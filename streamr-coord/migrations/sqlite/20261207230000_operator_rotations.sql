-- Operator key rotations. An operator name's binding moves to another key when the key it is
-- bound to signs a rotation statement (`streamr_core::OperatorRotation`) with a sequence above
-- every one accepted for the name before; the statements accepted are kept here, so an old
-- one played again is refused (also after an administrator unbound the name), and a
-- registration proving membership with a retired key is told so.
CREATE TABLE operator_key_rotations (
    name TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    old_key TEXT NOT NULL,
    new_key TEXT NOT NULL,
    rotated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (name, sequence)
);
CREATE INDEX operator_key_rotations_old_key ON operator_key_rotations (name, old_key);
